//! The other channels: their rules come from the catalog.

use super::*;

/// An application through `channel` from pre-registration to an issued permit.
fn issued_through(channel: &str, basis: EligibilityBasis, from: Date) -> Case {
    let mut case = Case::new().without_linked_rules();
    case.today = from.add_days(30).max(TODAY);
    case.run(register_on(from));
    case.run(Command::PreRegister {
        on: from,
        channel: ch(channel),
        basis,
    });
    let site = "SITE-1".to_string();
    case.run(Command::ScheduleBiometrics {
        on: from,
        appointment_on: from.add_days(3),
        site,
    });
    case.run(Command::RecordBiometricCapture {
        on: from.add_days(3),
        site: "SITE-1".into(),
        operator: "OP-1".into(),
        biometric_ref: [1; 32],
    });
    case.run(Command::Approve {
        on: from.add_days(10),
    });
    case.run(Command::IssuePermit {
        on: from.add_days(10),
        permit_number: sealed(9),
        valid_until: None,
    });
    case
}

#[test]
fn sc2_safe_conduct_is_extended_up_to_the_channels_maximum() {
    let mut case = issued_through("SC2", EligibilityBasis::Sc2AsylumSeeker, d("2021-01-04"));
    assert_eq!(
        case.state.permit().unwrap().valid_until,
        d("2021-07-14"),
        "6 months from issue"
    );
    assert_eq!(status(&case, "2021-02-01"), PersonStatus::RegularOther);
    let far = d("2030-01-01");
    for n in 1..=8u8 {
        let current = case.state.permit().unwrap().valid_until;
        let command = Command::ExtendValidity {
            on: current.add_days(-10),
            valid_until: current.add_months(6),
        };
        case.try_run(command, far).unwrap();
        assert_eq!(case.state.permit().unwrap().extensions, n);
    }
    let current = case.state.permit().unwrap().valid_until;
    assert_eq!(current, d("2025-07-14"));
    let ninth = Command::ExtendValidity {
        on: current.add_days(-10),
        valid_until: current.add_months(6),
    };
    assert_eq!(
        case.reject_on(ninth, far),
        Rejection::IllegalTransition {
            command: "ExtendValidity",
            state: "PERMIT_ISSUED",
            reason: "already extended 8 times (SC2 allows 8)".into(),
        }
    );
}

#[test]
fn sc2_extension_is_limited_to_one_validity_period() {
    let case = issued_through("SC2", EligibilityBasis::Sc2AsylumSeeker, d("2021-01-04"));
    let too_far = Command::ExtendValidity {
        on: d("2021-07-01"),
        valid_until: d("2022-01-15"),
    };
    assert_eq!(
        case.reject(too_far),
        Rejection::Invalid {
            field: "valid_until",
            reason: "one extension reaches 2022-01-14 at most".into()
        }
    );
    let not_later = Command::ExtendValidity {
        on: d("2021-07-01"),
        valid_until: d("2021-07-14"),
    };
    assert_eq!(
        case.reject(not_later),
        Rejection::Invalid {
            field: "valid_until",
            reason: "must be after the current end 2021-07-14".into()
        }
    );
}

#[test]
fn visa_v_is_granted_once_per_person() {
    let mut case = issued_through("VISA_V", EligibilityBasis::Other, d("2025-01-06"));
    let permit = case.state.permit().unwrap();
    assert_eq!(
        (permit.permit_type, permit.valid_until),
        (PermitType::VisaV, d("2027-01-16"))
    );
    assert_eq!(person_status(&case.state, TODAY), PersonStatus::RegularOther);
    case.run(Command::CancelPermit {
        on: d("2025-03-01"),
        ground: CancellationGround::FalseInformation,
    });
    let again = Command::PreRegister {
        on: d("2025-04-01"),
        channel: ch("VISA_V"),
        basis: EligibilityBasis::Other,
    };
    assert_eq!(
        case.reject(again),
        Rejection::RuleViolated {
            command: "PreRegister",
            state: "PERMIT_CANCELLED",
            rule: "ONCE_PER_PERSON",
            field: "channel",
            reason: "a VISA_V permit is granted once per person and was already held".into(),
        }
    );
    let sc2 = Command::PreRegister {
        on: d("2025-04-01"),
        channel: ch("SC2"),
        basis: EligibilityBasis::Sc2AsylumSeeker,
    };
    assert_eq!(
        types(&case.run(sc2)),
        ["PreRegistered"],
        "another channel stays open"
    );
}

#[test]
fn pep_tutor_takes_its_window_basis_and_validity_from_the_catalog() {
    let today = d("2025-10-01");
    let mut case = Case::new().without_linked_rules();
    case.today = today;
    case.run(register_on(d("2025-08-01")));
    let early = Command::PreRegister {
        on: d("2025-08-31"),
        channel: ch("PEP_TUTOR"),
        basis: EligibilityBasis::GuardianOfMinor,
    };
    assert_eq!(
        case.reject_on(early, today),
        rule(
            "PreRegister",
            "REGISTERED",
            "CHANNEL_WINDOW",
            "on",
            "PEP_TUTOR opens on 2025-09-01"
        )
    );
    let wrong_basis = Command::PreRegister {
        on: d("2025-09-01"),
        channel: ch("PEP_TUTOR"),
        basis: EligibilityBasis::Pep,
    };
    assert_eq!(
        case.reject_on(wrong_basis, today),
        Rejection::Invalid {
            field: "basis",
            reason: "PEP_TUTOR does not accept basis PEP".into()
        }
    );
    let tutor = issued_through("PEP_TUTOR", EligibilityBasis::GuardianOfMinor, d("2025-09-01"));
    let permit = tutor.state.permit().unwrap();
    assert_eq!(
        (permit.permit_type, permit.valid_until),
        (PermitType::PepTutor, d("2031-05-30"))
    );
    assert_eq!(status(&tutor, "2025-09-11"), PersonStatus::RegularPepTutor);
}

#[test]
fn minors_may_pre_register_for_etpv_after_adults_closed() {
    let on = d("2024-01-10");
    let mut minor = Case::new();
    minor.run(register_born(on, 2012, 3));
    let pre = Command::PreRegister {
        on,
        channel: ch("ETPV"),
        basis: EligibilityBasis::IrregularOn20210131,
    };
    assert_eq!(types(&minor.run(pre.clone())), ["PreRegistered"]);
    let mut adult = Case::new();
    adult.run(register_born(on, 2005, 12));
    assert_eq!(
        adult.reject(pre),
        rule(
            "PreRegister",
            "REGISTERED",
            "CHANNEL_WINDOW",
            "on",
            "ETPV closed on 2023-11-24"
        )
    );
    let mut young = Case::new();
    young.today = d("2031-07-01");
    young.run(register_born(d("2031-06-01"), 2020, 1));
    let late = Command::PreRegister {
        on: d("2031-06-01"),
        channel: ch("ETPV"),
        basis: EligibilityBasis::Pep,
    };
    assert_eq!(
        young.reject(late),
        rule(
            "PreRegister",
            "REGISTERED",
            "CHANNEL_WINDOW",
            "on",
            "ETPV closed on 2023-11-24, and for minors on 2031-05-30"
        )
    );
}
