//! The derived status, one test per status and per precedence rule.

use super::*;

#[test]
fn a_registered_person_without_application_is_irregular() {
    assert_eq!(status(&Case::registered(), "2021-06-01"), PersonStatus::Irregular);
    assert_eq!(
        person_status(&CaseState::default(), TODAY),
        PersonStatus::Irregular,
        "no case"
    );
}

#[test]
fn undecided_and_approved_applications_are_in_process() {
    for stage in [
        Stage::PreRegistered,
        Stage::BiometricsScheduled,
        Stage::UnderReview,
        Stage::Approved,
    ] {
        assert_eq!(
            status(&Case::etpv_at(stage), "2021-08-01"),
            PersonStatus::InProcess,
            "{stage}"
        );
    }
    let mut missed = Case::etpv_at(Stage::BiometricsScheduled);
    missed.run(Command::RecordMissedAppointment { on: d("2021-06-20") });
    assert_eq!(status(&missed, "2021-06-20"), PersonStatus::InProcess);
    let mut required = Case::etpv_at(Stage::UnderReview);
    required.run(Command::RequestInformation {
        on: d("2021-07-01"),
        reason: "DOC".into(),
    });
    assert_eq!(status(&required, "2021-07-01"), PersonStatus::InProcess);
}

#[test]
fn a_denial_is_in_process_until_its_appeal_window_closes_or_while_appealed() {
    let mut case = Case::etpv_at(Stage::UnderReview);
    case.run(Command::Deny {
        on: d("2021-08-01"),
        reason: DenialReason::CriminalRecord,
    });
    // The window is 10 business days: it closes on Friday 2021-08-13.
    assert_eq!(status(&case, "2021-08-13"), PersonStatus::InProcess);
    assert_eq!(status(&case, "2021-08-14"), PersonStatus::Irregular);
    case.run(Command::FileAppeal { on: d("2021-08-10") });
    assert_eq!(
        status(&case, "2021-12-01"),
        PersonStatus::InProcess,
        "an appeal keeps it in process"
    );
    case.run(Command::DecideAppeal {
        on: d("2021-12-01"),
        upheld: false,
    });
    assert_eq!(status(&case, "2021-12-01"), PersonStatus::Irregular);
}

#[test]
fn withdrawn_applications_leave_the_person_irregular() {
    let mut case = Case::etpv_at(Stage::PreRegistered);
    case.run(Command::Withdraw { on: d("2021-06-10") });
    assert_eq!(status(&case, "2021-06-10"), PersonStatus::Irregular);
}

#[test]
fn an_active_ppt_is_regular_from_issue_until_it_expires() {
    let issued = Case::etpv_at(Stage::PermitIssued);
    assert_eq!(
        status(&issued, "2021-08-05"),
        PersonStatus::RegularPpt,
        "issued, card not yet printed"
    );
    let delivered = Case::etpv_at(Stage::CardDelivered);
    assert_eq!(status(&delivered, "2031-05-30"), PersonStatus::RegularPpt);
    assert_eq!(
        status(&delivered, "2031-05-31"),
        PersonStatus::Irregular,
        "expired"
    );
}

#[test]
fn a_cancelled_permit_leaves_the_person_irregular() {
    let mut case = Case::etpv_at(Stage::CardDelivered);
    case.run(Command::CancelPermit {
        on: d("2022-01-01"),
        ground: CancellationGround::ExpulsionOrDeportation,
    });
    assert_eq!(status(&case, "2022-01-01"), PersonStatus::Irregular);
}

#[test]
fn other_permit_types_give_their_own_statuses() {
    let build = |channel: &str, basis, from: &str| {
        let from = d(from);
        let mut case = Case::new().without_linked_rules();
        case.today = d("2026-01-01");
        case.run(register_on(from));
        case.run(Command::PreRegister {
            on: from,
            channel: ch(channel),
            basis,
        });
        let site = "S".to_string();
        case.run(Command::ScheduleBiometrics {
            on: from,
            appointment_on: from,
            site,
        });
        let capture = Command::RecordBiometricCapture {
            on: from,
            site: "S".into(),
            operator: "O".into(),
            biometric_ref: [2; 32],
        };
        case.run(capture);
        case.run(Command::Approve { on: from });
        case.run(Command::IssuePermit {
            on: from,
            permit_number: sealed(1),
            valid_until: None,
        });
        case
    };
    let tutor = build("PEP_TUTOR", EligibilityBasis::GuardianOfMinor, "2025-09-15");
    assert_eq!(status(&tutor, "2025-12-01"), PersonStatus::RegularPepTutor);
    let visa_v = build("VISA_V", EligibilityBasis::RegularEntry2021To2023, "2025-02-01");
    assert_eq!(status(&visa_v, "2025-12-01"), PersonStatus::RegularOther);
    let sc2 = build("SC2", EligibilityBasis::Sc2AsylumSeeker, "2025-07-15");
    assert_eq!(status(&sc2, "2025-12-01"), PersonStatus::RegularOther);
    assert_eq!(
        status(&sc2, "2026-01-16"),
        PersonStatus::Irregular,
        "six months, not extended"
    );
}

#[test]
fn a_valid_visa_is_regular_visa_and_an_expired_one_is_irregular() {
    let mut case = Case::etpv_at(Stage::CardDelivered);
    let valid_until = Some(d("2027-01-01"));
    case.run(Command::SupersedeByVisa {
        on: d("2024-01-01"),
        visa_number: sealed(7),
        valid_until,
    });
    assert_eq!(status(&case, "2027-01-01"), PersonStatus::RegularVisa);
    assert_eq!(
        status(&case, "2027-01-02"),
        PersonStatus::Irregular,
        "the PPT it replaced does not revive"
    );
}

#[test]
fn exits_come_before_everything() {
    for (kind, expected) in [
        (ExitKind::Departed, PersonStatus::Departed),
        (ExitKind::Nationalized, PersonStatus::Nationalized),
        (ExitKind::Deceased, PersonStatus::Deceased),
    ] {
        let mut case = Case::etpv_at(Stage::CardDelivered);
        case.run(Command::RecordExit {
            on: d("2022-01-01"),
            kind,
            destination: None,
        });
        assert_eq!(status(&case, "2022-01-01"), expected);
        let mut pending = Case::etpv_at(Stage::PreRegistered);
        pending.run(Command::RecordExit {
            on: d("2021-06-02"),
            kind,
            destination: None,
        });
        assert_eq!(status(&pending, "2021-06-02"), expected);
    }
}
