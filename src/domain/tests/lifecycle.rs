//! The ETPV lifecycle and its branches.

use super::*;

#[test]
fn ppt_lifecycle_runs_from_registration_to_a_delivered_card() {
    let mut case = Case::new();
    assert_eq!(case.state_name(), "NO_CASE");
    case.run(register_on(d("2021-06-01")));
    assert_eq!(case.state_name(), "REGISTERED");
    let expected = [
        ("PreRegistered", "PRE_REGISTERED"),
        ("SurveyCompleted", "PRE_REGISTERED"),
        ("BiometricAppointmentScheduled", "BIOMETRICS_SCHEDULED"),
        ("BiometricsCaptured", "UNDER_REVIEW"),
        ("Approved", "APPROVED"),
        ("PermitIssued", "PERMIT_ISSUED"),
        ("CardPrinted", "CARD_PRINTED"),
        ("CardDelivered", "CARD_DELIVERED"),
    ];
    for (command, (event_type, state)) in etpv_happy_path().into_iter().zip(expected) {
        let events = case.run(command);
        assert_eq!(types(&events), [event_type]);
        assert_eq!(case.state_name(), state);
    }
    let permit = case.state.permit().unwrap();
    assert_eq!(permit.permit_type, PermitType::Ppt);
    assert_eq!(
        permit.valid_until,
        d("2031-05-30"),
        "ETPV's fixed end, from the catalog"
    );
    assert_eq!(permit.card, CardState::Delivered);
    assert_eq!(permit.number, Some(sealed(2)));
    assert_eq!(case.state.channel(), Some(ch("ETPV")));
    assert_eq!(case.state.application().unwrap().id, 1);
    assert_eq!(
        case.state.application().unwrap().survey.unwrap().sector,
        Some(Sector::Commerce)
    );
    assert_eq!(
        case.state.milestones(),
        Milestones {
            pre_registered_on: Some(d("2021-06-01")),
            biometrics_on: Some(d("2021-06-20")),
            decided_on: Some(d("2021-08-01")),
            issued_on: Some(d("2021-08-05")),
            printed_on: Some(d("2021-08-10")),
            delivered_on: Some(d("2021-09-01")),
        }
    );
    assert_eq!(
        case.state.decision_due(&case.catalog),
        Some(d("2021-09-18")),
        "90 days after capture"
    );
    assert_eq!(person_status(&case.state, TODAY), PersonStatus::RegularPpt);
    assert_eq!(case.state.events_applied(), 9);
}

#[test]
fn missed_appointments_are_counted_and_rescheduled() {
    let mut case = Case::etpv_at(Stage::BiometricsScheduled);
    case.run(Command::RecordMissedAppointment { on: d("2021-06-20") });
    assert_eq!(case.state_name(), "APPOINTMENT_MISSED");
    let site = "BOG-CALLE-100".to_string();
    case.run(Command::ScheduleBiometrics {
        on: d("2021-06-21"),
        appointment_on: d("2021-07-01"),
        site,
    });
    case.run(Command::RecordMissedAppointment { on: d("2021-07-01") });
    assert_eq!(case.state.missed_appointments(), 2);
    let site = "BOG-CALLE-100".to_string();
    case.run(Command::ScheduleBiometrics {
        on: d("2021-07-02"),
        appointment_on: d("2021-07-09"),
        site,
    });
    let app = case.state.application().unwrap();
    assert_eq!(app.first_scheduled_on, Some(d("2021-06-03")));
    assert_eq!(app.appointment_on, Some(d("2021-07-09")));
    assert_eq!(case.state_name(), "BIOMETRICS_SCHEDULED");
}

#[test]
fn information_round_trip_returns_to_review() {
    let mut case = Case::etpv_at(Stage::UnderReview);
    case.run(Command::RequestInformation {
        on: d("2021-07-01"),
        reason: "DOC_MISMATCH".into(),
    });
    assert_eq!(case.state_name(), "INFORMATION_REQUIRED");
    case.run(Command::ReceiveInformation { on: d("2021-07-10") });
    assert_eq!(case.state_name(), "UNDER_REVIEW");
    assert_eq!(case.state.application().unwrap().information_requests, 1);
    case.run(Command::Approve { on: d("2021-07-20") });
    assert_eq!(case.state_name(), "APPROVED");
}

#[test]
fn upheld_appeal_approves_the_application() {
    let mut case = Case::etpv_at(Stage::UnderReview);
    let events = case.run(Command::Deny {
        on: d("2021-08-01"),
        reason: DenialReason::Annotation,
    });
    assert_eq!(
        events,
        [Event::Denied {
            on: d("2021-08-01"),
            reason: DenialReason::Annotation,
            // Ten business days after Sunday 2021-08-01: 2-6 and 9-13 August.
            appeal_until: d("2021-08-13")
        }]
    );
    case.run(Command::FileAppeal { on: d("2021-08-13") });
    assert_eq!(case.state_name(), "APPEAL_FILED");
    case.run(Command::DecideAppeal {
        on: d("2021-09-01"),
        upheld: true,
    });
    assert_eq!(case.state_name(), "APPROVED");
    let app = case.state.application().unwrap();
    assert_eq!(
        app.appeal,
        Some(AppealDecision {
            on: d("2021-09-01"),
            upheld: true
        })
    );
    assert_eq!(app.decided_on, Some(d("2021-09-01")));
    case.run(Command::IssuePermit {
        on: d("2021-09-02"),
        permit_number: sealed(3),
        valid_until: None,
    });
    assert_eq!(case.state_name(), "PERMIT_ISSUED");
}

#[test]
fn rejected_appeal_makes_the_denial_final_and_allows_a_new_application() {
    let mut case = Case::etpv_at(Stage::UnderReview);
    case.run(Command::Deny {
        on: d("2021-08-01"),
        reason: DenialReason::CriminalRecord,
    });
    case.run(Command::FileAppeal { on: d("2021-08-05") });
    case.run(Command::DecideAppeal {
        on: d("2021-09-01"),
        upheld: false,
    });
    assert_eq!(case.state_name(), "DENIED_FINAL");
    let events = case.run(Command::PreRegister {
        on: d("2021-10-01"),
        channel: ch("ETPV"),
        basis: EligibilityBasis::IrregularOn20210131,
    });
    assert_eq!(
        events,
        [Event::PreRegistered {
            application_id: 2,
            channel: ch("ETPV"),
            basis: EligibilityBasis::IrregularOn20210131,
            applied_on: d("2021-10-01"),
        }]
    );
    assert_eq!(case.state.applications(), 2);
    assert_eq!(
        case.state.missed_appointments(),
        0,
        "counts restart with the new application"
    );
}

#[test]
fn abandoning_an_uncollected_card_also_cancels_the_permit() {
    let mut case = Case::etpv_at(Stage::CardPrinted);
    let events = case.run(Command::AbandonCard { on: d("2021-11-08") });
    assert_eq!(
        events,
        [
            Event::CardAbandoned { on: d("2021-11-08") },
            Event::PermitCancelled {
                on: d("2021-11-08"),
                ground: CancellationGround::UncollectedCard
            },
        ]
    );
    assert_eq!(case.state_name(), "PERMIT_CANCELLED");
    let permit = case.state.permit().unwrap();
    assert_eq!(permit.card, CardState::Abandoned);
    assert_eq!(
        permit.cancelled,
        Some(Cancellation {
            on: d("2021-11-08"),
            ground: CancellationGround::UncollectedCard
        })
    );
    assert_eq!(status(&case, "2021-11-08"), PersonStatus::Irregular);
}

#[test]
fn a_duplicate_reprints_the_card_which_must_be_delivered_again() {
    let mut case = Case::etpv_at(Stage::CardDelivered);
    case.run(Command::RequestDuplicate {
        on: d("2022-01-10"),
        cause: DuplicateCause::Theft,
    });
    assert_eq!(case.state_name(), "DUPLICATE_REQUESTED");
    case.run(Command::IssueDuplicate { on: d("2022-01-20") });
    assert_eq!(case.state_name(), "CARD_PRINTED");
    assert_eq!(case.state.duplicates(), 1);
    case.run(Command::DeliverCard { on: d("2022-02-01") });
    let permit = case.state.permit().unwrap();
    assert_eq!(
        permit.delivered_on,
        Some(d("2021-09-01")),
        "the funnel keeps the first delivery"
    );
    assert_eq!(permit.last_printed_on, Some(d("2022-01-20")));
    assert_eq!(permit.duplicate_cause, Some(DuplicateCause::Theft));
    assert_eq!(case.state_name(), "CARD_DELIVERED");
}

#[test]
fn interim_certificate_covers_the_wait_for_the_card() {
    let mut case = Case::etpv_at(Stage::Approved);
    case.run(Command::IssueInterimCertificate {
        on: d("2021-08-02"),
        valid_until: d("2021-10-31"),
    });
    case.run(Command::IssuePermit {
        on: d("2021-08-05"),
        permit_number: sealed(2),
        valid_until: None,
    });
    case.run(Command::ExtendInterimCertificate {
        on: d("2021-10-01"),
        valid_until: d("2021-12-15"),
    });
    let interim = *case.state.interim_certificate().unwrap();
    assert_eq!(
        interim,
        Interim {
            issued_on: d("2021-08-02"),
            valid_until: d("2021-12-15"),
            extensions: 1
        }
    );
    assert_eq!(
        case.state_name(),
        "PERMIT_ISSUED",
        "interim certificates do not move the stage"
    );
}

#[test]
fn a_withdrawn_application_can_be_followed_by_another() {
    let mut case = Case::etpv_at(Stage::PreRegistered);
    case.run(Command::Withdraw { on: d("2021-07-01") });
    assert_eq!(case.state_name(), "WITHDRAWN");
    assert_eq!(
        case.state.application().unwrap().withdrawn_on,
        Some(d("2021-07-01"))
    );
    case.run(Command::PreRegister {
        on: d("2021-08-01"),
        channel: ch("ETPV"),
        basis: EligibilityBasis::Pep,
    });
    assert_eq!(
        (case.state_name(), case.state.applications()),
        ("PRE_REGISTERED", 2)
    );
}

#[test]
fn a_visa_supersedes_an_active_permit() {
    let mut case = Case::etpv_at(Stage::CardDelivered);
    case.run(Command::SupersedeByVisa {
        on: d("2024-05-01"),
        visa_number: sealed(5),
        valid_until: None,
    });
    assert_eq!(case.state_name(), "SUPERSEDED_BY_VISA");
    assert_eq!(case.state.permit().unwrap().superseded_on, Some(d("2024-05-01")));
    assert_eq!(person_status(&case.state, TODAY), PersonStatus::RegularVisa);
    let cancel = Command::CancelPermit {
        on: d("2024-06-01"),
        ground: CancellationGround::CriminalRecord,
    };
    assert_eq!(
        case.reject(cancel),
        Rejection::IllegalTransition {
            command: "CancelPermit",
            state: "SUPERSEDED_BY_VISA",
            reason: "the permit was superseded by a visa".into(),
        }
    );
}

#[test]
fn a_visa_can_be_recorded_for_a_person_without_permit() {
    let mut case = Case::registered();
    let valid_until = Some(d("2026-01-01"));
    case.run(Command::SupersedeByVisa {
        on: d("2022-01-01"),
        visa_number: sealed(5),
        valid_until,
    });
    assert_eq!(status(&case, "2025-12-31"), PersonStatus::RegularVisa);
    assert_eq!(status(&case, "2026-01-02"), PersonStatus::Irregular);
    assert!(case.state.permit().is_none());
}
