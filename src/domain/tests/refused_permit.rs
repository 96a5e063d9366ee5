//! Refused permit and card steps, with the exact rejection and the state in it.

use super::*;

#[test]
fn delivering_before_printing_is_refused() {
    let case = Case::etpv_at(Stage::PermitIssued);
    assert_eq!(
        case.reject(Command::DeliverCard { on: d("2021-08-06") }),
        illegal("DeliverCard", "PERMIT_ISSUED", "the card was never printed")
    );
}

#[test]
fn issuing_a_permit_on_a_denied_application_is_refused() {
    let mut case = Case::etpv_at(Stage::UnderReview);
    case.run(Command::Deny {
        on: d("2021-08-01"),
        reason: DenialReason::FalseInformation,
    });
    let issue = Command::IssuePermit {
        on: d("2021-08-02"),
        permit_number: sealed(2),
        valid_until: None,
    };
    assert_eq!(
        case.reject(issue),
        illegal("IssuePermit", "DENIED", "the application was denied")
    );
}

#[test]
fn issuing_a_second_permit_is_refused() {
    let case = Case::etpv_at(Stage::CardDelivered);
    let issue = Command::IssuePermit {
        on: d("2021-10-01"),
        permit_number: sealed(2),
        valid_until: None,
    };
    assert_eq!(
        case.reject(issue),
        illegal("IssuePermit", "CARD_DELIVERED", "a permit was already issued")
    );
}

#[test]
fn a_duplicate_before_delivery_is_refused() {
    let case = Case::etpv_at(Stage::CardPrinted);
    let duplicate = Command::RequestDuplicate {
        on: d("2021-08-11"),
        cause: DuplicateCause::Loss,
    };
    assert_eq!(
        case.reject(duplicate),
        illegal(
            "RequestDuplicate",
            "CARD_PRINTED",
            "the card was not delivered yet"
        )
    );
    let case = Case::etpv_at(Stage::CardDelivered);
    let issue = Command::IssueDuplicate { on: d("2021-09-02") };
    assert_eq!(
        case.reject(issue),
        illegal("IssueDuplicate", "CARD_DELIVERED", "no duplicate was requested")
    );
}

#[test]
fn extending_a_non_extendable_channel_is_refused() {
    let case = Case::etpv_at(Stage::CardDelivered);
    let extend = Command::ExtendValidity {
        on: d("2022-01-01"),
        valid_until: d("2031-12-31"),
    };
    assert_eq!(
        case.reject(extend),
        illegal(
            "ExtendValidity",
            "CARD_DELIVERED",
            "ETPV permits are not extendable"
        )
    );
}

#[test]
fn an_interim_certificate_after_delivery_is_refused() {
    let case = Case::etpv_at(Stage::CardDelivered);
    let interim = Command::IssueInterimCertificate {
        on: d("2021-09-02"),
        valid_until: d("2021-10-01"),
    };
    assert_eq!(
        case.reject(interim),
        illegal(
            "IssueInterimCertificate",
            "CARD_DELIVERED",
            "the card was already delivered"
        )
    );
}

#[test]
fn interim_certificates_respect_their_channel_limits() {
    let mut case = Case::etpv_at(Stage::Approved);
    let long = Command::IssueInterimCertificate {
        on: d("2021-08-02"),
        valid_until: d("2021-12-31"),
    };
    assert_eq!(
        case.reject(long),
        invalid(
            "valid_until",
            "an interim certificate lasts until 2021-10-31 at most"
        )
    );
    case.run(Command::IssueInterimCertificate {
        on: d("2021-08-02"),
        valid_until: d("2021-09-30"),
    });
    let second = Command::IssueInterimCertificate {
        on: d("2021-08-03"),
        valid_until: d("2021-09-30"),
    };
    assert_eq!(
        case.reject(second),
        illegal(
            "IssueInterimCertificate",
            "APPROVED",
            "an interim certificate valid until 2021-09-30 exists; extend it"
        )
    );
    let fresh = Case::etpv_at(Stage::Approved);
    let extend = Command::ExtendInterimCertificate {
        on: d("2021-08-02"),
        valid_until: d("2021-09-30"),
    };
    assert_eq!(
        fresh.reject(extend),
        illegal(
            "ExtendInterimCertificate",
            "APPROVED",
            "no interim certificate was issued"
        )
    );
}

#[test]
fn permit_validity_is_checked_against_the_channel() {
    let case = Case::etpv_at(Stage::Approved);
    let issue = |until: &str| Command::IssuePermit {
        on: d("2021-08-05"),
        permit_number: sealed(2),
        valid_until: Some(d(until)),
    };
    assert_eq!(
        case.reject(issue("2021-08-04")),
        invalid("valid_until", "2021-08-04 is not after the issue date 2021-08-05")
    );
    assert_eq!(
        case.reject(issue("2031-06-01")),
        invalid(
            "valid_until",
            "2031-06-01 is beyond ETPV's validity end 2031-05-30"
        )
    );
    assert!(Case::etpv_at(Stage::Approved)
        .try_run(issue("2030-01-01"), TODAY)
        .is_ok());
}

#[test]
fn abandoning_a_card_too_early_or_after_delivery_is_refused() {
    let case = Case::etpv_at(Stage::CardPrinted);
    assert_eq!(
        case.reject(Command::AbandonCard { on: d("2021-11-07") }),
        rule(
            "AbandonCard",
            "CARD_PRINTED",
            "CARD_COLLECTION_PERIOD",
            "on",
            "the card was printed on 2021-08-10; it may be declared abandoned from 2021-11-08"
        )
    );
    let case = Case::etpv_at(Stage::CardDelivered);
    assert_eq!(
        case.reject(Command::AbandonCard { on: d("2022-01-01") }),
        illegal("AbandonCard", "CARD_DELIVERED", "the card was delivered")
    );
}

#[test]
fn card_commands_on_a_channel_without_cards_are_refused() {
    let mut case = Case::new();
    case.today = d("2025-12-31");
    case.run(register_on(d("2025-01-06")));
    case.run(Command::PreRegister {
        on: d("2025-01-06"),
        channel: ch("VISA_V"),
        basis: EligibilityBasis::Other,
    });
    for command in [
        Command::ScheduleBiometrics {
            on: d("2025-01-06"),
            appointment_on: d("2025-01-07"),
            site: "S".into(),
        },
        Command::RecordBiometricCapture {
            on: d("2025-01-07"),
            site: "S".into(),
            operator: "O".into(),
            biometric_ref: [3; 32],
        },
        Command::Approve { on: d("2025-01-08") },
    ] {
        case.run(command);
    }
    let interim = Command::IssueInterimCertificate {
        on: d("2025-01-08"),
        valid_until: d("2025-02-01"),
    };
    assert_eq!(
        case.reject(interim),
        illegal(
            "IssueInterimCertificate",
            "APPROVED",
            "VISA_V issues no interim certificates"
        )
    );
    case.run(Command::IssuePermit {
        on: d("2025-01-09"),
        permit_number: sealed(6),
        valid_until: None,
    });
    assert_eq!(
        case.reject(Command::PrintCard { on: d("2025-01-10") }),
        illegal("PrintCard", "PERMIT_ISSUED", "VISA_V permits have no card")
    );
}

#[test]
fn cancelling_needs_an_active_permit_and_a_proper_ground() {
    let case = Case::etpv_at(Stage::CardDelivered);
    let uncollected = Command::CancelPermit {
        on: d("2022-01-01"),
        ground: CancellationGround::UncollectedCard,
    };
    assert_eq!(
        case.reject(uncollected),
        invalid("ground", "an uncollected card is declared through AbandonCard")
    );
    let late = Command::CancelPermit {
        on: d("2031-06-01"),
        ground: CancellationGround::SecurityRisk,
    };
    assert_eq!(
        case.reject_on(late, d("2031-07-01")),
        illegal(
            "CancelPermit",
            "CARD_DELIVERED",
            "the permit expired on 2031-05-30"
        )
    );
    let mut cancelled = Case::etpv_at(Stage::CardDelivered);
    let ground = CancellationGround::AbsenceOver180Days;
    cancelled.run(Command::CancelPermit {
        on: d("2022-01-01"),
        ground,
    });
    assert_eq!(
        cancelled.reject(Command::CancelPermit {
            on: d("2022-01-02"),
            ground
        }),
        illegal("CancelPermit", "PERMIT_CANCELLED", "the permit was cancelled")
    );
    let registered = Case::registered();
    assert_eq!(
        registered.reject(Command::CancelPermit {
            on: d("2022-01-02"),
            ground
        }),
        illegal("CancelPermit", "REGISTERED", "no permit is held")
    );
}

#[test]
fn a_visa_while_an_application_is_in_process_is_refused() {
    let case = Case::etpv_at(Stage::Approved);
    let visa = Command::SupersedeByVisa {
        on: d("2021-08-02"),
        visa_number: sealed(5),
        valid_until: None,
    };
    assert_eq!(
        case.reject(visa),
        illegal(
            "SupersedeByVisa",
            "APPROVED",
            "application 1 is in process; decide or withdraw it first"
        )
    );
    let case = Case::registered();
    let ended = Command::SupersedeByVisa {
        on: d("2022-01-01"),
        visa_number: sealed(5),
        valid_until: Some(d("2022-01-01")),
    };
    assert_eq!(
        case.reject(ended),
        invalid("valid_until", "2022-01-01 is not after 2022-01-01")
    );
}

#[test]
fn a_new_application_while_a_visa_is_valid_is_refused() {
    let mut case = Case::registered();
    let valid_until = Some(d("2023-01-01"));
    case.run(Command::SupersedeByVisa {
        on: d("2022-01-01"),
        visa_number: sealed(5),
        valid_until,
    });
    let pre = |on: &str| Command::PreRegister {
        on: d(on),
        channel: ch("ETPV"),
        basis: EligibilityBasis::Pep,
    };
    assert_eq!(
        case.reject(pre("2022-06-01")),
        illegal(
            "PreRegister",
            "SUPERSEDED_BY_VISA",
            "the person holds a visa valid until 2023-01-01"
        )
    );
    assert!(
        case.try_run(pre("2023-01-02"), TODAY).is_ok(),
        "once the visa ended"
    );
}
