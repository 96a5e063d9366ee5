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

#[test]
fn the_cases_own_certifications_requests_and_links_are_probed() {
    let mut case = Case::etpv_at(Stage::CardDelivered);
    let listed = |case: &Case| names(&case.state.next_steps(d("2022-01-20"), &case.catalog));
    for absent in [
        "AssessCertification",
        "ExtendSubjectRequest",
        "AnswerSubjectRequest",
        "EndFamilyLink",
    ] {
        assert!(
            !listed(&case).contains(&absent),
            "{absent} listed without its record"
        );
    }
    case.run(Command::RequestCertification {
        on: d("2022-01-10"),
        route: CertificationRoute::SenaCompetency,
        sector: Sector::Construction,
    });
    case.run(Command::ReceiveSubjectRequest {
        on: d("2022-01-11"),
        kind: SubjectRequestKind::Query,
    });
    case.state.apply(&Event::FamilyLinkRecorded {
        on: d("2022-01-12"),
        link_id: "L-0123456789ABCDEF0123".into(),
        role: LinkRole::ParentOf,
        other_case_id: "C-OTHER".into(),
        evidence: LinkEvidence::CivilBirthRegistry,
    });
    let now = listed(&case);
    for present in [
        "AssessCertification",
        "ExtendSubjectRequest",
        "AnswerSubjectRequest",
        "EndFamilyLink",
    ] {
        assert!(now.contains(&present), "{present} missing from {now:?}");
    }
    let steps = case.state.next_steps(d("2022-01-20"), &case.catalog);
    assert!(
        step(&steps, "AnswerSubjectRequest").until.is_some(),
        "a request's answer is due"
    );
    case.state.apply(&Event::FamilyLinkEnded {
        on: d("2022-01-19"),
        link_id: "L-0123456789ABCDEF0123".into(),
        role: LinkRole::ParentOf,
        reason: LinkEndReason::RecordedInError,
    });
    assert!(
        !listed(&case).contains(&"EndFamilyLink"),
        "an ended link accepts nothing more"
    );
}

#[test]
fn a_field_refused_for_every_value_it_can_take_is_not_listed() {
    // An application in review: PreRegister is tried with every channel and
    // basis (some pairs refused as Invalid), and a new application is
    // blocked, so no value lifts the refusal.
    let case = Case::etpv_at(Stage::UnderReview);
    let steps = case.state.next_steps(d("2021-07-01"), &case.catalog);
    assert!(!names(&steps).contains(&"PreRegister"), "{:?}", names(&steps));
    assert!(names(&steps).contains(&"Withdraw"));
}
