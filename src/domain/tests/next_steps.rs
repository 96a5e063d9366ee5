//! `CaseState::next_steps`: what a case accepts next, with the dates rules set.

use super::*;
use crate::domain::next::NextStep;

fn names(steps: &[NextStep]) -> Vec<&'static str> {
    steps.iter().map(|s| s.command).collect()
}

fn step<'a>(steps: &'a [NextStep], command: &str) -> &'a NextStep {
    steps
        .iter()
        .find(|s| s.command == command)
        .unwrap_or_else(|| panic!("{command} not among {:?}", names(steps)))
}

#[test]
fn a_scheduled_appointment_lists_capture_and_the_missed_appointment_from_its_day() {
    let case = Case::etpv_at(Stage::BiometricsScheduled);
    let steps = case.state.next_steps(d("2021-06-10"), &case.catalog);
    let listed = names(&steps);
    for expected in [
        "ScheduleBiometrics",
        "RecordBiometricCapture",
        "Withdraw",
        "RecordMissedAppointment",
    ] {
        assert!(listed.contains(&expected), "{expected} missing from {listed:?}");
    }
    for refused in ["Approve", "Deny", "IssuePermit", "PrintCard", "PreRegister"] {
        assert!(!listed.contains(&refused), "{refused} listed: {listed:?}");
    }
    assert_eq!(
        step(&steps, "RecordMissedAppointment").earliest_on,
        Some(d("2021-06-20")),
        "a missed appointment is recorded from its day"
    );
    // Every listed command without an earliest date is accepted today with these fields or others.
    assert_eq!(step(&steps, "Withdraw").earliest_on, None);
}

#[test]
fn a_denial_lists_the_appeal_until_the_end_of_its_window() {
    let mut case = Case::etpv_at(Stage::UnderReview);
    case.run(Command::Deny {
        on: d("2021-07-01"),
        reason: DenialReason::Ineligible,
    });
    let steps = case.state.next_steps(d("2021-07-02"), &case.catalog);
    let appeal = step(&steps, "FileAppeal");
    // ETPV: 10 business days after Thursday 2021-07-01; Monday 2021-07-05
    // (Saints Peter and Paul, moved from Tuesday 29 June) does not count.
    assert_eq!(
        appeal.until,
        Some(d("2021-07-16")),
        "ETPV: 10 business days to appeal"
    );
    assert!(!names(&steps).contains(&"Approve"));
}

#[test]
fn a_printed_card_may_be_abandoned_only_after_its_collection_period() {
    let case = Case::etpv_at(Stage::CardPrinted);
    let steps = case.state.next_steps(d("2021-08-20"), &case.catalog);
    assert_eq!(step(&steps, "AbandonCard").earliest_on, Some(d("2021-11-08")));
    assert!(names(&steps).contains(&"DeliverCard"));
}

#[test]
fn an_erased_case_lists_only_its_closing_steps_and_the_persons_requests() {
    let mut case = Case::etpv_at(Stage::CardDelivered);
    case.run(Command::ErasePerson {
        on: d("2022-01-03"),
        legal_basis: "LEY_1581_2012".into(),
    });
    let steps = case.state.next_steps(d("2022-01-04"), &case.catalog);
    assert_eq!(
        names(&steps),
        ["CancelPermit", "RecordExit", "ReceiveSubjectRequest"]
    );
}

#[test]
fn a_case_that_does_not_exist_accepts_nothing_listed() {
    let case = Case::new();
    assert!(case.state.next_steps(TODAY, &case.catalog).is_empty());
}
