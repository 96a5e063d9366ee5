//! Worklist pages, scopes and privacy over a real server on 127.0.0.1:
//! page tokens return every item exactly once in list order; a principal
//! limited to departments sees only those; bad tokens and filters are
//! INVALID_ARGUMENT naming the field; items carry no personal data.

mod common;
mod worklist_support;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use prost::Message;
use registry::api::pb;
use registry::auth::access_file::{self, Grant};
use registry::auth::Role;
use tonic::Code;
use worklist_support::{call, list_all, request, wait_for, worklists, Kind};

/// Registers a person living in `municipality` and schedules an appointment
/// on `appointment_on` at `site`; returns the case id and the last seq.
async fn scheduled(
    c: &mut Client,
    n: usize,
    municipality: &str,
    appointment_on: &str,
    site: &str,
) -> (String, u64) {
    let p = person(
        "PERSONA",
        "DE PRUEBA",
        "1990-03-04",
        &[(pb::DocumentType::VenezuelanCedula, &format!("V-8{n:07}"))],
    );
    let mut r = register_request(p, "2023-04-01");
    r.department = municipality[..2].to_string();
    r.municipality = municipality.to_string();
    let mut t = Tracker::registered(&ok(c.register_person(req(r)).await));
    t.pre_register(c, "2023-04-02").await;
    let r = ok(c
        .schedule_biometrics(req(pb::ScheduleBiometricsRequest {
            header: t.next("2023-04-03"),
            appointment_on: appointment_on.into(),
            site: site.into(),
        }))
        .await);
    t.step(&r, "BIOMETRICS_SCHEDULED", &["BiometricAppointmentScheduled"]);
    (t.case_id, t.last_seq)
}

/// 30 appointments in Bogotá (11) and 12 in Medellín (05) over three days
/// and two sites; returns (case id, department) and the last seq.
async fn caseload(c: &mut Client) -> (Vec<(String, &'static str)>, u64) {
    let mut cases = Vec::new();
    let mut last = 0;
    for n in 0..42 {
        let (municipality, department) = if n % 7 < 2 {
            ("05001", "05")
        } else {
            ("11001", "11")
        };
        let day = ["2023-05-10", "2023-05-11", "2023-05-12"][n % 3];
        let site = if n % 2 == 0 { "SITE-A" } else { "SITE-B" };
        let (id, seq) = scheduled(c, n, municipality, day, site).await;
        cases.push((id, department));
        last = seq;
    }
    (cases, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_tokens_return_every_item_exactly_once_in_list_order() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut w = worklists(&server).await;
    let (cases, last) = caseload(&mut c).await;
    wait_for(&mut w, last).await;

    let mut r = request(Kind::Appointments, "");
    r.page_size = 5;
    let (items, seq) = list_all(&mut w, "caseworker", &r).await;
    assert!(seq >= last);
    assert_eq!(items.len(), cases.len(), "every appointment once");
    let ids: BTreeSet<&str> = items.iter().map(|i| i.case_id.as_str()).collect();
    assert_eq!(ids.len(), cases.len(), "no item twice");
    assert_eq!(ids, cases.iter().map(|(id, _)| id.as_str()).collect());
    let dates: Vec<&str> = items.iter().map(|i| i.date.as_str()).collect();
    assert!(
        dates.windows(2).all(|w| w[0] <= w[1]),
        "ordered by date: {dates:?}"
    );

    // One day at one site: the date window and the site filter.
    let mut r = request(Kind::Appointments, "");
    r.date_from = "2023-05-11".into();
    r.date_to = "2023-05-11".into();
    r.site = "SITE-A".into();
    r.page_size = 3;
    let (items, _) = list_all(&mut w, "caseworker", &r).await;
    let expected = (0..42).filter(|n| n % 3 == 1 && n % 2 == 0).count();
    assert_eq!(items.len(), expected);
    assert!(items.iter().all(|i| i.date == "2023-05-11" && i.site == "SITE-A"));

    // A department and a municipality.
    let mut r = request(Kind::Appointments, "");
    r.department = "05".into();
    r.page_size = 4;
    let (items, _) = list_all(&mut w, "caseworker", &r).await;
    assert_eq!(items.len(), cases.iter().filter(|(_, d)| *d == "05").count());
    assert!(items
        .iter()
        .all(|i| i.department == "05" && i.municipality == "05001"));
    let mut r = request(Kind::Appointments, "");
    r.municipality = "11001".into();
    let (items, _) = list_all(&mut w, "caseworker", &r).await;
    assert_eq!(items.len(), cases.iter().filter(|(_, d)| *d == "11").count());

    // An office filter: every case was recorded by the test office.
    let mut r = request(Kind::Appointments, "");
    r.office = "ELSEWHERE".into();
    assert!(list_all(&mut w, "caseworker", &r).await.0.is_empty());
    r.office = ACTOR_OFFICE.into();
    assert_eq!(list_all(&mut w, "caseworker", &r).await.0.len(), cases.len());

    // A page that reaches the end has no token.
    let mut r = request(Kind::Appointments, "");
    r.page_size = 1000;
    let page = call(&mut w, "supervisor", &r).await.unwrap();
    assert_eq!(page.items.len(), cases.len());
    assert!(page.next_page_token.is_empty());
    assert!(page.log_head_seq >= page.position.unwrap().seq);
    drop((c, w));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_limited_to_departments_sees_only_their_items() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut w = worklists(&server).await;
    let (cases, last) = caseload(&mut c).await;
    wait_for(&mut w, last).await;
    let scoped = access_file::add_token(
        &server.access_file(),
        &Grant {
            principal: "u-medellin".into(),
            role: Role::Caseworker,
            office: "MED-CENTRO".into(),
            departments: vec![5],
            expires_at: None,
        },
    )
    .unwrap();
    // The server reloads a changed access file within a quarter second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let as_scoped = |m: pb::ListWorklistRequest| {
        let mut r = tonic::Request::new(m);
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", scoped.token).parse().unwrap(),
        );
        r
    };
    let mut r = request(Kind::Appointments, "");
    r.page_size = 3;
    let mut seen = Vec::new();
    loop {
        let page = w.list_worklist(as_scoped(r.clone())).await.unwrap().into_inner();
        seen.extend(page.items);
        if page.next_page_token.is_empty() {
            break;
        }
        r.page_token = page.next_page_token;
    }
    assert_eq!(seen.len(), cases.iter().filter(|(_, d)| *d == "05").count());
    assert!(seen.iter().all(|i| i.department == "05"));

    // Asking for another department (or one of its municipalities) is refused.
    let mut r = request(Kind::Appointments, "");
    r.department = "11".into();
    let s = w.list_worklist(as_scoped(r)).await.unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied);
    let mut r = request(Kind::Appointments, "");
    r.municipality = "11001".into();
    let s = w.list_worklist(as_scoped(r)).await.unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied);

    // Unscoped supervisors see every department.
    let (all, _) = list_all(&mut w, "supervisor", &request(Kind::Appointments, "")).await;
    assert_eq!(all.len(), cases.len());
    // Roles without case work are refused.
    for role in ["statistician", "auditor", "admin"] {
        let s = call(&mut w, role, &request(Kind::Appointments, ""))
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::PermissionDenied, "{role}");
    }
    drop((c, w));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_filters_are_invalid_arguments_naming_the_field() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut w = worklists(&server).await;
    let (_, last) = caseload(&mut c).await;
    wait_for(&mut w, last).await;
    let mut first = request(Kind::Appointments, "");
    first.page_size = 2;
    let page = call(&mut w, "caseworker", &first).await.unwrap();
    let token = page.next_page_token.clone();
    assert!(!token.is_empty());

    let wrong = |f: &dyn Fn(&mut pb::ListWorklistRequest)| {
        let mut r = first.clone();
        r.page_token = token.clone();
        f(&mut r);
        r
    };
    let cases: Vec<(&str, pb::ListWorklistRequest)> = vec![
        ("page_token", wrong(&|r| r.page_token = "not a token".into())),
        ("page_token", wrong(&|r| r.page_token = "AAAA".into())),
        ("page_token", wrong(&|r| r.page_token.push('x'))),
        ("page_token", wrong(&|r| r.kind = Kind::MissedAppointments as i32)),
        ("page_token", wrong(&|r| r.department = "11".into())),
        ("page_token", wrong(&|r| r.date_to = "2023-05-11".into())),
        ("page_size", wrong(&|r| r.page_size = 1001)),
        ("kind", wrong(&|r| r.kind = 0)),
        ("kind", wrong(&|r| r.kind = 99)),
        ("department", wrong(&|r| r.department = "1".into())),
        ("municipality", wrong(&|r| r.municipality = "11000".into())),
        (
            "municipality",
            wrong(&|r| {
                r.department = "05".into();
                r.municipality = "11001".into();
            }),
        ),
        ("date_from", wrong(&|r| r.date_from = "2023-02-30".into())),
        (
            "date_to",
            wrong(&|r| {
                r.date_from = "2023-05-12".into();
                r.date_to = "2023-05-11".into();
            }),
        ),
        (
            "reference_date",
            wrong(&|r| r.reference_date = "yesterday".into()),
        ),
        ("horizon_days", wrong(&|r| r.horizon_days = 367)),
        ("stage", wrong(&|r| r.stage = 999)),
        ("office", wrong(&|r| r.office = "BOG CENTRO".into())),
    ];
    for (field, r) in cases {
        let result = w.list_worklist(as_role("caseworker", r.clone())).await;
        invalid(result, field);
    }
    // The same token with the page size changed continues the list.
    let mut r = first.clone();
    r.page_token = token;
    r.page_size = 1000;
    let rest = call(&mut w, "caseworker", &r).await.unwrap();
    assert_eq!(rest.items.len() + 2, 42);
    drop((c, w));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_carry_no_personal_data() {
    // The item message has only codes and dates, by construction ...
    let set = prost_types::FileDescriptorSet::decode(registry::api::FILE_DESCRIPTOR_SET).unwrap();
    let item = set
        .file
        .iter()
        .flat_map(|f| f.message_type.iter())
        .find(|m| m.name() == "WorklistItem")
        .expect("WorklistItem in the descriptor set");
    let fields: BTreeSet<&str> = item.field.iter().map(|f| f.name()).collect();
    let allowed: BTreeSet<&str> = [
        "case_id",
        "stage",
        "date",
        "due_on",
        "since",
        "site",
        "office",
        "department",
        "municipality",
        "certification_id",
        "channel",
        "subject_request_id",
    ]
    .into();
    assert_eq!(
        fields, allowed,
        "a WorklistItem field was added: is it personal data?"
    );

    // ... and no answer carries a person's names, documents or birth date.
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut w = worklists(&server).await;
    let p = person(
        "ZENOBIA",
        "QUIRPA XANTOS",
        "1979-11-23",
        &[(pb::DocumentType::VenezuelanCedula, "V-93571111")],
    );
    let mut t = Tracker::registered(&ok(c
        .register_person(req(register_request(p, "2023-03-01")))
        .await));
    t.pre_register(&mut c, "2023-03-02").await;
    t.schedule(&mut c, "2023-03-03", "2023-03-20").await;
    t.capture(&mut c, "2023-03-20").await;
    t.approve(&mut c, "2023-03-25").await;
    t.issue_permit(&mut c, "2023-03-26", "PPT-93571111").await;
    t.print(&mut c, "2023-03-27").await;
    wait_for(&mut w, t.last_seq).await;
    let needles = ["ZENOBIA", "QUIRPA", "XANTOS", "93571111", "1979-11-23"];
    let mut seen = 0;
    for kind in 1..=11 {
        let kind = Kind::try_from(kind).unwrap();
        for reference in ["", "2023-04-01", "2031-05-15"] {
            let page = call(&mut w, "supervisor", &request(kind, reference))
                .await
                .unwrap();
            seen += page.items.iter().filter(|i| i.case_id == t.case_id).count();
            let bytes = page.encode_to_vec();
            let text = format!("{page:?}");
            for n in needles {
                assert!(!contains_bytes(&bytes, n.as_bytes()), "{n} in a {kind:?} answer");
                assert!(!text.contains(n), "{n} in a {kind:?} answer");
            }
        }
    }
    assert!(seen >= 3, "the case was listed (cards, permits): {seen}");
    drop((c, w));
    server.stop().await;
}
