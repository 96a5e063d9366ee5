//! The data subject's rights (Ley 1581 de 2012) through a real server on
//! 127.0.0.1 with a real sled directory: the subject report (their events,
//! their data, every access with who, office, when and why; nothing of
//! another case), its role, and queries and claims with deadlines in
//! Colombian business days, extended once, listed in the worklists until
//! answered.

mod common;
mod worklist_support;

use common::*;
use prost::Message;
use registry::api::pb;
use tonic::Code;
use tonic_types::StatusExt;
use worklist_support::{items_of, worklists, Kind};

fn report_request(case_id: &str, purpose: &str) -> pb::GetSubjectReportRequest {
    pb::GetSubjectReportRequest {
        case_id: case_id.into(),
        purpose: purpose.into(),
    }
}

fn receive(t: &Tracker, on: &str, kind: pb::SubjectRequestKind) -> pb::ReceiveSubjectRequestRequest {
    pb::ReceiveSubjectRequestRequest {
        header: t.next(on),
        kind: kind as i32,
    }
}

fn extend(t: &Tracker, on: &str, id: u32) -> pb::ExtendSubjectRequestRequest {
    pb::ExtendSubjectRequestRequest {
        header: t.next(on),
        subject_request_id: id,
        reason: "REQUEST_VOLUME".into(),
    }
}

fn answer(t: &Tracker, on: &str, id: u32) -> pb::AnswerSubjectRequestRequest {
    pb::AnswerSubjectRequestRequest {
        header: t.next(on),
        subject_request_id: id,
        outcome: "REPORT_DELIVERED".into(),
    }
}

/// Asserts FAILED_PRECONDITION with the rule `code` (ErrorInfo reason).
#[track_caller]
fn rule<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>, code: &str) {
    let s = fails(result, Code::FailedPrecondition);
    let info = s.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, code, "{}", s.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_holds_the_persons_events_and_every_access_and_nothing_of_another_case() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut t = register(&mut c, "ROSALBA", "V-61000001", "2023-03-01").await;
    t.pre_register(&mut c, "2023-03-02").await;
    t.schedule(&mut c, "2023-03-03", "2023-03-10").await;
    let other = register(&mut c, "OTHERPERSONQX", "V-61000002", "2023-03-01").await;
    let r = ok(c
        .receive_subject_request(as_role(
            "caseworker",
            receive(&t, "2025-03-14", pb::SubjectRequestKind::Query),
        ))
        .await);
    t.step(&r, "BIOMETRICS_SCHEDULED", &["SubjectRequestReceived"]);

    // Reads of the person's data: by a supervisor, a look-up by document by
    // a caseworker; and reads of the other person (not in this report).
    let read = ok(c
        .get_case(req(pb::GetCaseRequest {
            case_id: t.case_id.clone(),
            purpose: "REVIEW".into(),
        }))
        .await);
    assert_eq!(read.subject_requests.len(), 1);
    let found = ok(c
        .find_cases_by_document(as_role(
            "caseworker",
            pb::FindCasesByDocumentRequest {
                document: Some(pb::IdentityDocument {
                    r#type: pb::DocumentType::VenezuelanCedula as i32,
                    number: "V61000001".into(),
                }),
                purpose: "CITIZEN_REQUEST".into(),
            },
        ))
        .await);
    assert_eq!(found.case_ids, [t.case_id.clone()]);
    ok(c.get_case(req(get_case_request(&other.case_id))).await);

    // Bad input is refused naming the field and records no access.
    invalid(
        c.get_subject_report(req(report_request(&t.case_id, ""))).await,
        "purpose",
    );
    invalid(
        c.get_subject_report(req(report_request("", "SAR"))).await,
        "case_id",
    );
    fails(
        c.get_subject_report(req(report_request("C-00000000000000000000", "SAR")))
            .await,
        Code::NotFound,
    );

    let report = ok(c
        .get_subject_report(req(report_request(&t.case_id, "SUBJECT_ACCESS_REQUEST")))
        .await);
    assert_eq!(report.case_id, t.case_id);
    assert_eq!(report.version, t.version);
    let person = report.person.as_ref().expect("the person's own data, opened");
    assert_eq!(person.given_names, "ROSALBA");
    assert_eq!(person.documents[0].number, "V61000001");
    assert!(!report.erased);
    // Every event, in order, as codes, with the stage after it.
    let types: Vec<&str> = report.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "PersonRegistered",
            "PreRegistered",
            "BiometricAppointmentScheduled",
            "SubjectRequestReceived"
        ]
    );
    let stages: Vec<&str> = report.events.iter().map(|e| e.stage_after.as_str()).collect();
    assert_eq!(
        stages,
        [
            "REGISTERED",
            "PRE_REGISTERED",
            "BIOMETRICS_SCHEDULED",
            "BIOMETRICS_SCHEDULED"
        ]
    );
    let versions: Vec<u64> = report.events.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    let field = |event: usize, name: &str| {
        report.events[event]
            .fields
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("field {name} of event {event}"))
            .value
            .clone()
    };
    assert_eq!(field(0, "identity"), "SEALED");
    assert_eq!(field(0, "sex"), "F");
    assert_eq!(field(0, "municipality"), "11001");
    assert_eq!(field(1, "channel"), "ETPV");
    assert_eq!(field(2, "appointment_on"), "2023-03-10");
    assert_eq!(field(3, "kind"), "QUERY");
    assert_eq!(field(3, "due_on"), "2025-03-31");
    assert_eq!(report.events[0].on, "2023-03-01");
    assert_eq!(report.events[0].office, ACTOR_OFFICE);
    assert_eq!(report.subject_requests.len(), 1);
    assert_eq!(report.subject_requests[0].due_on, "2025-03-31");

    // Every access: who, office, role, when, why, how; the report's own last.
    let accesses: Vec<(&str, &str, &str, &str, &str)> = report
        .accesses
        .iter()
        .map(|a| {
            (
                a.user.as_str(),
                a.office.as_str(),
                a.role.as_str(),
                a.operation.as_str(),
                a.purpose.as_str(),
            )
        })
        .collect();
    let caseworker = test_principal("caseworker");
    assert_eq!(
        accesses,
        [
            (ACTOR_USER, ACTOR_OFFICE, "supervisor", "GetCase", "REVIEW"),
            (
                caseworker.as_str(),
                ACTOR_OFFICE,
                "caseworker",
                "FindCasesByDocument",
                "CITIZEN_REQUEST"
            ),
            (
                ACTOR_USER,
                ACTOR_OFFICE,
                "supervisor",
                "GetSubjectReport",
                "SUBJECT_ACCESS_REQUEST"
            ),
        ]
    );
    assert_eq!(report.accesses[2].seq, report.access_seq);
    let mut previous = (0, 0);
    for a in &report.accesses {
        assert!(
            a.seq > previous.0 && a.recorded_at_us >= previous.1,
            "in log order: {a:?}"
        );
        assert!(a.recorded_at_us > 1_700_000_000_000_000, "a real time: {a:?}");
        previous = (a.seq, a.recorded_at_us);
    }

    // Nothing of the other person: not their case id, not their name.
    let bytes = report.encode_to_vec();
    for needle in [other.case_id.as_str(), "OTHERPERSONQX", "61000002"] {
        assert!(
            !contains_bytes(&bytes, needle.as_bytes()),
            "the report holds {needle}"
        );
    }
    // Positive control of the scan.
    assert!(contains_bytes(&bytes, b"ROSALBA"));

    // A second report shows the first one's access too.
    let again = ok(c
        .get_subject_report(req(report_request(&t.case_id, "SUBJECT_ACCESS_REQUEST")))
        .await);
    assert_eq!(again.accesses.len(), 4);
    assert_eq!(again.accesses[2].seq, report.access_seq);
    assert!(again.access_seq > report.access_seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caseworker_is_refused_the_report_and_the_answers() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut t = register(&mut c, "MARIELA", "V-62000001", "2025-03-03").await;
    let r = ok(c
        .receive_subject_request(as_role(
            "caseworker",
            receive(&t, "2025-03-04", pb::SubjectRequestKind::Claim),
        ))
        .await);
    t.step(&r, "REGISTERED", &["SubjectRequestReceived"]);
    fails(
        c.get_subject_report(as_role("caseworker", report_request(&t.case_id, "SAR")))
            .await,
        Code::PermissionDenied,
    );
    fails(
        c.extend_subject_request(as_role("caseworker", extend(&t, "2025-03-05", 1)))
            .await,
        Code::PermissionDenied,
    );
    fails(
        c.answer_subject_request(as_role("caseworker", answer(&t, "2025-03-05", 1)))
            .await,
        Code::PermissionDenied,
    );
    for role in ["statistician", "auditor", "admin"] {
        fails(
            c.get_subject_report(as_role(role, report_request(&t.case_id, "SAR")))
                .await,
            Code::PermissionDenied,
        );
    }
    // None of the refusals was recorded as an access.
    let report = ok(c.get_subject_report(req(report_request(&t.case_id, "SAR"))).await);
    assert_eq!(report.accesses.len(), 1, "{:?}", report.accesses);
    assert_eq!(report.accesses[0].operation, "GetSubjectReport");
    assert_eq!(report.events.len() as u64, t.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_count_business_days_across_holidays_extend_once_and_leave_the_worklist_when_answered() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut w = worklists(&server).await;
    let mut t = register(&mut c, "DILIA", "V-63000001", "2025-06-02").await;

    invalid(
        c.receive_subject_request(req(receive(
            &t,
            "2025-06-27",
            pb::SubjectRequestKind::Unspecified,
        )))
        .await,
        "kind",
    );
    // Friday 27 June 2025; Monday 30 June is a holiday (Sacred Heart, Saints
    // Peter and Paul): a query's 10th business day is Monday 14 July; a
    // claim's 15th is Monday 21 July (Sunday 20 July does not move).
    let query = receive(&t, "2025-06-27", pb::SubjectRequestKind::Query);
    let r = ok(c.receive_subject_request(req(query.clone())).await);
    t.step(&r, "REGISTERED", &["SubjectRequestReceived"]);
    // A retry gets the original's answer and records nothing.
    let retry = ok(c.receive_subject_request(req(query)).await);
    assert!(retry.deduplicated);
    assert_eq!(retry.version, t.version);
    let r = ok(c
        .receive_subject_request(req(receive(&t, "2025-06-27", pb::SubjectRequestKind::Claim)))
        .await);
    t.step(&r, "REGISTERED", &["SubjectRequestReceived"]);
    let case = get_case(&mut c, &t.case_id).await;
    let due: Vec<(u32, &str, &str)> = case
        .subject_requests
        .iter()
        .map(|r| (r.subject_request_id, r.received_on.as_str(), r.due_on.as_str()))
        .collect();
    assert_eq!(
        due,
        [(1, "2025-06-27", "2025-07-14"), (2, "2025-06-27", "2025-07-21")]
    );
    let answer_step = case
        .next_steps
        .iter()
        .find(|s| s.command == "AnswerSubjectRequest")
        .expect("an open request can be answered");
    assert_eq!(answer_step.until, "2025-07-14");

    // The worklist: both, by due date, whatever the reference date.
    let items = items_of(
        &mut w,
        Kind::SubjectRequestsDue,
        "2025-06-30",
        &t.case_id,
        t.last_seq,
    )
    .await;
    let listed: Vec<(u32, &str, &str, &str)> = items
        .iter()
        .map(|i| {
            (
                i.subject_request_id,
                i.date.as_str(),
                i.due_on.as_str(),
                i.since.as_str(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (1, "2025-07-14", "2025-07-14", "2025-06-27"),
            (2, "2025-07-21", "2025-07-21", "2025-06-27")
        ]
    );
    assert!(items
        .iter()
        .all(|i| i.certification_id == 0 && i.department == "11"));

    // Extended on its last day: 5 more business days from Tuesday 15 July.
    let r = ok(c.extend_subject_request(req(extend(&t, "2025-07-14", 1))).await);
    t.step(&r, "REGISTERED", &["SubjectRequestExtended"]);
    // Once only.
    rule(
        c.extend_subject_request(req(extend(&t, "2025-07-15", 1))).await,
        "EXTENSION_ONCE",
    );
    // The claim's first term ended on 21 July: too late to extend it.
    rule(
        c.extend_subject_request(req(extend(&t, "2025-07-22", 2))).await,
        "SUBJECT_REQUEST_DUE",
    );
    invalid(
        c.extend_subject_request(req(extend(&t, "2025-07-15", 3))).await,
        "subject_request_id",
    );
    invalid(
        c.extend_subject_request(req(extend(&t, "2025-07-15", 0))).await,
        "subject_request_id",
    );
    let mut bad_reason = extend(&t, "2025-07-15", 1);
    bad_reason.reason = "too busy".into();
    invalid(c.extend_subject_request(req(bad_reason)).await, "reason");
    let items = items_of(
        &mut w,
        Kind::SubjectRequestsDue,
        "2025-07-15",
        &t.case_id,
        t.last_seq,
    )
    .await;
    let listed: Vec<(u32, &str)> = items
        .iter()
        .map(|i| (i.subject_request_id, i.due_on.as_str()))
        .collect();
    assert_eq!(listed, [(1, "2025-07-21"), (2, "2025-07-21")]);

    // Answered: it leaves the list; a second answer is refused, a retry is not.
    let first = answer(&t, "2025-07-18", 1);
    let r = ok(c.answer_subject_request(req(first.clone())).await);
    t.step(&r, "REGISTERED", &["SubjectRequestAnswered"]);
    assert!(ok(c.answer_subject_request(req(first)).await).deduplicated);
    rule(
        c.answer_subject_request(req(answer(&t, "2025-07-18", 1))).await,
        "SUBJECT_REQUEST_ANSWERED",
    );
    let items = items_of(
        &mut w,
        Kind::SubjectRequestsDue,
        "2025-07-18",
        &t.case_id,
        t.last_seq,
    )
    .await;
    let listed: Vec<u32> = items.iter().map(|i| i.subject_request_id).collect();
    assert_eq!(listed, [2]);
    // A late answer is recorded as such.
    let r = ok(c.answer_subject_request(req(answer(&t, "2025-07-23", 2))).await);
    t.step(&r, "REGISTERED", &["SubjectRequestAnswered"]);
    assert!(items_of(
        &mut w,
        Kind::SubjectRequestsDue,
        "2025-07-23",
        &t.case_id,
        t.last_seq
    )
    .await
    .is_empty());
    let case = get_case(&mut c, &t.case_id).await;
    let closed: Vec<(&str, &str, &str, &str)> = case
        .subject_requests
        .iter()
        .map(|r| {
            (
                r.due_on.as_str(),
                r.extended_on.as_str(),
                r.answered_on.as_str(),
                r.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        closed,
        [
            ("2025-07-21", "2025-07-14", "2025-07-18", "REPORT_DELIVERED"),
            ("2025-07-21", "", "2025-07-23", "REPORT_DELIVERED")
        ]
    );
    assert!(!case
        .next_steps
        .iter()
        .any(|s| s.command == "AnswerSubjectRequest"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_stay_open_to_an_erased_person_and_on_the_worklist() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut w = worklists(&server).await;
    let mut t = register(&mut c, "NEREIDA", "V-64000001", "2024-03-01").await;
    // A claim for deletion, received on Friday 22 March 2024 (Holy Week:
    // 25 March, 28 and 29 March are holidays): due on the 15th business day.
    let r = ok(c
        .receive_subject_request(req(receive(&t, "2024-03-22", pb::SubjectRequestKind::Claim)))
        .await);
    t.step(&r, "REGISTERED", &["SubjectRequestReceived"]);
    let r = ok(c
        .erase_person(req(pb::ErasePersonRequest {
            header: t.next("2024-04-05"),
            legal_basis: "LEY_1581_ART_15".into(),
        }))
        .await);
    t.step(&r, "REGISTERED", &["PersonErased"]);
    let items = items_of(
        &mut w,
        Kind::SubjectRequestsDue,
        "2024-04-05",
        &t.case_id,
        t.last_seq,
    )
    .await;
    assert_eq!(items.len(), 1, "still awaiting its answer: {items:?}");
    // 26, 27 Mar, 1..5 Apr, 8..12 Apr, 15..17 Apr: the 15th is 17 April.
    assert_eq!(items[0].due_on, "2024-04-17");
    let erased = pb::AnswerSubjectRequestRequest {
        outcome: "ERASED".into(),
        ..answer(&t, "2024-04-05", 1)
    };
    let r = ok(c.answer_subject_request(req(erased)).await);
    t.step(&r, "REGISTERED", &["SubjectRequestAnswered"]);
    assert!(items_of(
        &mut w,
        Kind::SubjectRequestsDue,
        "2024-04-05",
        &t.case_id,
        t.last_seq
    )
    .await
    .is_empty());
    // The erased person may still ask what is held: the report has no identity.
    let r = ok(c
        .receive_subject_request(req(receive(&t, "2024-04-08", pb::SubjectRequestKind::Query)))
        .await);
    t.step(&r, "REGISTERED", &["SubjectRequestReceived"]);
    let report = ok(c.get_subject_report(req(report_request(&t.case_id, "SAR"))).await);
    assert!(report.erased);
    assert_eq!(report.erased_on, "2024-04-05");
    assert!(report.person.is_none());
    assert_eq!(report.events.len() as u64, t.version);
    assert!(!contains_bytes(&report.encode_to_vec(), b"NEREIDA"));
}
