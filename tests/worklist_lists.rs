//! Cases driven through the Caseworker API enter each worklist with the
//! dates the law and the channel set, and leave it when they move on; over a
//! real server on 127.0.0.1 with a real sled directory.

mod common;
mod worklist_support;

use common::*;
use registry::api::pb;
use worklist_support::{items_of, worklists, Kind};

/// The one item of `case` in `kind` on `reference` (asserting there is exactly one).
async fn one(
    w: &mut worklist_support::Worklists,
    kind: Kind,
    reference: &str,
    t: &Tracker,
) -> pb::WorklistItem {
    let items = items_of(w, kind, reference, &t.case_id, t.last_seq).await;
    assert_eq!(
        items.len(),
        1,
        "{kind:?} on {reference} holds the case once: {items:?}"
    );
    items.into_iter().next().unwrap()
}

/// Asserts `case` is not in `kind` on `reference`.
async fn absent(w: &mut worklist_support::Worklists, kind: Kind, reference: &str, t: &Tracker) {
    let items = items_of(w, kind, reference, &t.case_id, t.last_seq).await;
    assert!(
        items.is_empty(),
        "{kind:?} on {reference} should not hold the case: {items:?}"
    );
}

fn stage(name: &str) -> i32 {
    pb::CaseStage::from_str_name(&format!("CASE_STAGE_{name}")).expect("stage") as i32
}

#[track_caller]
fn check(item: &pb::WorklistItem, stage_name: &str, date: &str, due_on: &str, since: &str) {
    assert_eq!(item.stage, stage(stage_name), "stage of {item:?}");
    assert_eq!(item.date, date, "list date of {item:?}");
    assert_eq!(item.due_on, due_on, "due date of {item:?}");
    assert_eq!(item.since, since, "since of {item:?}");
    assert_eq!(item.department, "11");
    assert_eq!(item.municipality, "11001");
    assert_eq!(item.office, ACTOR_OFFICE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_enters_each_list_with_its_dates_and_leaves_it_when_it_moves_on() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut w = worklists(&server).await;
    let mut t = register(&mut c, "ANA", "V-70000001", "2023-05-01").await;
    t.pre_register(&mut c, "2023-05-02").await;

    // An appointment: listed on its day, at its site.
    t.schedule(&mut c, "2023-05-03", "2023-06-10").await;
    let item = one(&mut w, Kind::Appointments, "", &t).await;
    check(&item, "BIOMETRICS_SCHEDULED", "2023-06-10", "", "2023-05-03");
    assert_eq!(item.site, "BOG-01");
    assert_eq!(item.channel, "ETPV");
    absent(&mut w, Kind::MissedAppointments, "", &t).await;

    // Missed: leaves the appointments, waits to be rescheduled.
    let r = ok(c
        .record_missed_appointment(req(simple(&t.case_id, t.version, "2023-06-10")))
        .await);
    t.step(&r, "APPOINTMENT_MISSED", &["BiometricAppointmentMissed"]);
    absent(&mut w, Kind::Appointments, "", &t).await;
    let item = one(&mut w, Kind::MissedAppointments, "", &t).await;
    check(&item, "APPOINTMENT_MISSED", "2023-06-10", "", "2023-06-10");
    assert_eq!(item.site, "BOG-01", "the missed appointment's site");

    // Rescheduled: back on the appointments, on the new day.
    t.schedule(&mut c, "2023-06-12", "2023-07-01").await;
    absent(&mut w, Kind::MissedAppointments, "", &t).await;
    let item = one(&mut w, Kind::Appointments, "", &t).await;
    check(&item, "BIOMETRICS_SCHEDULED", "2023-07-01", "", "2023-06-12");

    // Captured: awaiting a decision, due 90 days later (ETPV decision_days).
    t.capture(&mut c, "2023-07-01").await;
    absent(&mut w, Kind::Appointments, "", &t).await;
    let item = one(&mut w, Kind::AwaitingDecision, "", &t).await;
    check(&item, "UNDER_REVIEW", "2023-07-01", "2023-09-29", "2023-07-01");
    absent(&mut w, Kind::DecisionOverdue, "2023-09-29", &t).await;
    let item = one(&mut w, Kind::DecisionOverdue, "2023-09-30", &t).await;
    check(&item, "UNDER_REVIEW", "2023-09-29", "2023-09-29", "2023-07-01");

    // Denied: leaves the decisions, appealable until the window closes (10
    // business days after Monday 2023-10-02; Monday 16 October, Diversity
    // Day moved from Thursday 12, does not count: Tuesday 2023-10-17).
    let r = ok(c
        .deny(req(pb::DenyRequest {
            header: t.next("2023-10-02"),
            reason: pb::DenialReason::CriminalRecord as i32,
        }))
        .await);
    t.step(&r, "DENIED", &["Denied"]);
    absent(&mut w, Kind::AwaitingDecision, "", &t).await;
    absent(&mut w, Kind::DecisionOverdue, "2023-10-05", &t).await;
    let item = one(&mut w, Kind::AppealableDenials, "2023-10-05", &t).await;
    check(&item, "DENIED", "2023-10-17", "2023-10-17", "2023-10-02");
    one(&mut w, Kind::AppealableDenials, "2023-10-17", &t).await;
    absent(&mut w, Kind::AppealableDenials, "2023-10-18", &t).await;

    // Appealed: awaiting the appeal's decision, due two months after filing.
    let r = ok(c
        .file_appeal(req(simple(&t.case_id, t.version, "2023-10-10")))
        .await);
    t.step(&r, "APPEAL_FILED", &["AppealFiled"]);
    absent(&mut w, Kind::AppealableDenials, "2023-10-05", &t).await;
    let item = one(&mut w, Kind::AppealsAwaitingDecision, "", &t).await;
    check(&item, "APPEAL_FILED", "2023-10-10", "2023-12-10", "2023-10-10");

    // Appeal upheld: approved, off the appeals.
    let r = ok(c
        .decide_appeal(req(pb::DecideAppealRequest {
            header: t.next("2023-11-01"),
            upheld: true,
        }))
        .await);
    t.step(&r, "APPROVED", &["AppealDecided"]);
    absent(&mut w, Kind::AppealsAwaitingDecision, "", &t).await;

    // An interim certificate while the card is awaited: expiring within the horizon.
    let r = ok(c
        .issue_interim_certificate(req(pb::InterimCertificateRequest {
            header: t.next("2023-11-02"),
            valid_until: "2024-01-15".into(),
        }))
        .await);
    t.step(&r, "APPROVED", &["InterimCertificateIssued"]);
    let item = one(&mut w, Kind::InterimExpiring, "2024-01-01", &t).await;
    check(&item, "APPROVED", "2024-01-15", "2024-01-15", "2023-11-02");
    absent(&mut w, Kind::InterimExpiring, "2023-12-01", &t).await;
    absent(&mut w, Kind::InterimExpiring, "2024-01-16", &t).await;

    // Permit issued (valid to 2031-05-30): expiring in the month before that.
    t.issue_permit(&mut c, "2023-11-20", "PPT-0000001").await;
    let item = one(&mut w, Kind::PermitsExpiring, "2031-05-01", &t).await;
    check(&item, "PERMIT_ISSUED", "2031-05-30", "2031-05-30", "2023-11-20");
    absent(&mut w, Kind::PermitsExpiring, "2031-04-29", &t).await;
    one(&mut w, Kind::InterimExpiring, "2024-01-01", &t).await;

    // Card printed: awaiting delivery; abandonable 90 days after printing.
    t.print(&mut c, "2023-11-25").await;
    let item = one(&mut w, Kind::CardsAwaitingDelivery, "", &t).await;
    check(&item, "CARD_PRINTED", "2023-11-25", "2024-02-23", "2023-11-25");
    let item = one(&mut w, Kind::CardsNearAbandonment, "2024-02-01", &t).await;
    check(&item, "CARD_PRINTED", "2024-02-23", "2024-02-23", "2023-11-25");
    absent(&mut w, Kind::CardsNearAbandonment, "2024-01-01", &t).await;
    one(&mut w, Kind::CardsNearAbandonment, "2024-06-01", &t).await;

    // Delivered: off the card lists and the interim certificates; the permit stays.
    t.deliver(&mut c, "2023-12-01").await;
    absent(&mut w, Kind::CardsAwaitingDelivery, "", &t).await;
    absent(&mut w, Kind::CardsNearAbandonment, "2024-06-01", &t).await;
    absent(&mut w, Kind::InterimExpiring, "2024-01-01", &t).await;
    let item = one(&mut w, Kind::PermitsExpiring, "2031-05-01", &t).await;
    assert_eq!(item.stage, stage("CARD_DELIVERED"));

    // A certification awaits its assessment, then leaves.
    let r = ok(c
        .request_certification(req(pb::RequestCertificationRequest {
            header: t.next("2023-12-05"),
            route: pb::CertificationRoute::SenaCompetency as i32,
            sector: pb::Sector::Commerce as i32,
        }))
        .await);
    t.step(&r, "CARD_DELIVERED", &["CertificationRequested"]);
    let item = one(&mut w, Kind::CertificationsAwaitingAssessment, "", &t).await;
    check(&item, "CARD_DELIVERED", "2023-12-05", "", "2023-12-05");
    assert_eq!(item.certification_id, 1);
    let r = ok(c
        .assess_certification(req(pb::AssessCertificationRequest {
            header: t.next("2023-12-10"),
            certification_id: 1,
            passed: true,
        }))
        .await);
    t.step(&r, "CARD_DELIVERED", &["CertificationAssessed"]);
    absent(&mut w, Kind::CertificationsAwaitingAssessment, "", &t).await;

    // The person moves: the item follows the residence.
    let r = ok(c
        .update_residence(req(pb::UpdateResidenceRequest {
            header: t.next("2024-01-10"),
            department: "05".into(),
            municipality: "05001".into(),
        }))
        .await);
    t.step(&r, "CARD_DELIVERED", &["ResidenceUpdated"]);
    let item = one(&mut w, Kind::PermitsExpiring, "2031-05-01", &t).await;
    assert_eq!(
        (item.department.as_str(), item.municipality.as_str()),
        ("05", "05001")
    );

    // An exit ends every list.
    let r = ok(c
        .record_exit(req(pb::RecordExitRequest {
            header: t.next("2024-02-01"),
            kind: pb::ExitKind::Departed as i32,
            destination: String::new(),
        }))
        .await);
    t.step(&r, "EXITED", &["ExitRecorded"]);
    absent(&mut w, Kind::PermitsExpiring, "2031-05-01", &t).await;

    drop((c, w));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn information_required_stays_awaiting_a_decision_and_a_withdrawal_leaves() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut w = worklists(&server).await;
    let mut t = register(&mut c, "BEA", "V-70000002", "2023-05-01").await;
    t.pre_register(&mut c, "2023-05-02").await;
    t.schedule(&mut c, "2023-05-03", "2023-05-20").await;
    t.capture(&mut c, "2023-05-20").await;
    let r = ok(c
        .request_information(req(pb::RequestInformationRequest {
            header: t.next("2023-06-01"),
            reason: "DOC_MISMATCH".into(),
        }))
        .await);
    t.step(&r, "INFORMATION_REQUIRED", &["InformationRequested"]);
    let item = one(&mut w, Kind::AwaitingDecision, "", &t).await;
    check(
        &item,
        "INFORMATION_REQUIRED",
        "2023-05-20",
        "2023-08-18",
        "2023-05-20",
    );
    // The stage filter selects it, another stage does not.
    let mut r = worklist_support::request(Kind::AwaitingDecision, "");
    r.stage = stage("INFORMATION_REQUIRED");
    let (items, _) = worklist_support::list_all(&mut w, "caseworker", &r).await;
    assert!(items.iter().any(|i| i.case_id == t.case_id));
    r.stage = stage("UNDER_REVIEW");
    let (items, _) = worklist_support::list_all(&mut w, "caseworker", &r).await;
    assert!(items.iter().all(|i| i.case_id != t.case_id));

    let r = ok(c.withdraw(req(simple(&t.case_id, t.version, "2023-06-05"))).await);
    t.step(&r, "WITHDRAWN", &["Withdrawn"]);
    absent(&mut w, Kind::AwaitingDecision, "", &t).await;
    absent(&mut w, Kind::DecisionOverdue, "2024-01-01", &t).await;
    drop((c, w));
    server.stop().await;
}
