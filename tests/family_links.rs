//! Family links through a real server on 127.0.0.1 with a real sled
//! directory: a link is recorded on both cases in one group commit (or on
//! neither), bad links are refused naming the field or rule and change
//! nothing, retries and racing copies get the original's answer, PEP-Tutor
//! takes the guardian of a minor who held a PPT on 2023-12-31 and nobody
//! else, statistics count minors with and without a linked guardian, and no
//! name or document of one case shows in the other's GetCase.

mod common;

use std::time::{Duration, Instant};

use common::*;
use prost::Message;
use registry::api::pb;
use registry::api::pb::statistics_client::StatisticsClient;
use tonic::Code;
use tonic_types::StatusExt;

/// Registers a minor born in March 2012 and takes them through ETPV to a
/// PPT issued on `issued_on` (after `approved_on`).
async fn minor_with_ppt(
    c: &mut Client,
    given: &str,
    cedula: &str,
    approved_on: &str,
    issued_on: &str,
) -> Tracker {
    let p = person(
        given,
        "MENOR RUIZ",
        "2012-03-10",
        &[(pb::DocumentType::VenezuelanCedula, cedula)],
    );
    let mut t = Tracker::registered(&ok(c
        .register_person(req(register_request(p, "2021-06-01")))
        .await));
    t.pre_register(c, "2021-06-02").await;
    t.schedule(c, "2021-06-03", "2021-06-10").await;
    t.capture(c, "2021-06-10").await;
    t.approve(c, approved_on).await;
    t.issue_permit(c, issued_on, &format!("PPT-{cedula}")).await;
    t
}

fn link_request(g: &Tracker, m: &Tracker, evidence: pb::LinkEvidence) -> pb::RecordFamilyLinkRequest {
    pb::RecordFamilyLinkRequest {
        header: g.next("2025-09-02"),
        role: pb::FamilyLinkRole::GuardianOf as i32,
        other_case_id: m.case_id.clone(),
        other_expected_version: m.version,
        evidence: evidence as i32,
    }
}

/// Asserts FAILED_PRECONDITION with the rule `code` (ErrorInfo reason).
#[track_caller]
fn rule<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>, code: &str) {
    let s = fails(result, Code::FailedPrecondition);
    let info = s.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, code, "{}", s.message());
}

fn pep_tutor(t: &Tracker, on: &str) -> pb::PreRegisterRequest {
    pb::PreRegisterRequest {
        header: t.next(on),
        channel: "PEP_TUTOR".into(),
        basis: pb::EligibilityBasis::GuardianOfMinor as i32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_is_on_both_cases_in_one_commit_and_retries_change_nothing() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut g = register(&mut c, "GUARDIANA", "V-62000001", "2023-03-01").await;
    let mut m = minor_with_ppt(&mut c, "NINALINKED", "V-62000002", "2021-07-01", "2021-07-02").await;

    let request = link_request(&g, &m, pb::LinkEvidence::ActaIcbf);
    let r = ok(c.record_family_link(req(request.clone())).await);
    let (mine, theirs) = (r.result.clone().unwrap(), r.other.clone().unwrap());
    assert!(
        r.link_id.starts_with("L-") && r.link_id.len() == 22,
        "{}",
        r.link_id
    );
    g.step(&mine, "REGISTERED", &["FamilyLinkRecorded"]);
    m.step(&theirs, "PERMIT_ISSUED", &["FamilyLinkRecorded"]);
    // One group commit: the two events are adjacent in the log.
    assert_eq!(theirs.first_seq, mine.last_seq + 1);
    assert_eq!(theirs.recorded_at_us, mine.recorded_at_us);

    // Both cases show the link, each with its own role and the other's id.
    let gc = get_case(&mut c, &g.case_id).await;
    let mc = get_case(&mut c, &m.case_id).await;
    assert_eq!(gc.family_links.len(), 1);
    let (gl, ml) = (&gc.family_links[0], &mc.family_links[0]);
    assert_eq!(
        (gl.role, gl.other_case_id.as_str(), gl.evidence, gl.since.as_str()),
        (
            pb::FamilyLinkRole::GuardianOf as i32,
            m.case_id.as_str(),
            pb::LinkEvidence::ActaIcbf as i32,
            "2025-09-02"
        )
    );
    assert_eq!(
        (ml.role, ml.other_case_id.as_str(), ml.link_id.as_str()),
        (
            pb::FamilyLinkRole::WardOf as i32,
            g.case_id.as_str(),
            r.link_id.as_str()
        )
    );
    // No name or document crosses: the other's are nowhere in a case read.
    let (gbytes, mbytes) = (gc.encode_to_vec(), mc.encode_to_vec());
    for needle in ["NINALINKED", "MENOR RUIZ", "V62000002", "PPT-V-62000002"] {
        assert!(
            !contains_bytes(&gbytes, needle.as_bytes()),
            "{needle} in the guardian's case"
        );
    }
    for needle in ["GUARDIANA", "PRUEBA LOPEZ", "V62000001"] {
        assert!(
            !contains_bytes(&mbytes, needle.as_bytes()),
            "{needle} in the minor's case"
        );
    }
    assert!(gc.next_steps.iter().any(|s| s.command == "EndFamilyLink"));

    // A retry gets the original's answer and records nothing; so do copies
    // that race each other.
    let head = mc.history.last().unwrap().seq;
    let again = ok(c.record_family_link(req(request.clone())).await);
    assert_eq!(again.link_id, r.link_id);
    let (a, b) = (again.result.unwrap(), again.other.unwrap());
    assert!(a.deduplicated && b.deduplicated);
    assert_eq!((a.first_seq, b.first_seq), (mine.first_seq, theirs.first_seq));
    let end = pb::EndFamilyLinkRequest {
        header: m.next("2025-09-03"),
        link_id: r.link_id.clone(),
        other_expected_version: 0,
        reason: pb::LinkEndReason::RecordedInError as i32,
    };
    let copies: Vec<_> = (0..4)
        .map(|_| {
            let mut c = c.clone();
            let end = end.clone();
            tokio::spawn(async move { c.end_family_link(req(end)).await })
        })
        .collect();
    let mut answers = Vec::new();
    for copy in copies {
        answers.push(ok(copy.await.unwrap()));
    }
    let firsts: Vec<u64> = answers
        .iter()
        .map(|a| a.result.as_ref().unwrap().first_seq)
        .collect();
    assert!(firsts.iter().all(|s| *s == firsts[0]), "{firsts:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|a| !a.result.as_ref().unwrap().deduplicated)
            .count(),
        1
    );
    let ended = answers
        .iter()
        .find(|a| !a.result.as_ref().unwrap().deduplicated)
        .unwrap();
    assert!(ended.result.as_ref().unwrap().first_seq > head);
    assert_eq!(
        ended.other.as_ref().unwrap().first_seq,
        ended.result.as_ref().unwrap().last_seq + 1
    );
    m.step(
        ended.result.as_ref().unwrap(),
        "PERMIT_ISSUED",
        &["FamilyLinkEnded"],
    );
    g.step(ended.other.as_ref().unwrap(), "REGISTERED", &["FamilyLinkEnded"]);
    assert!(get_case(&mut c, &g.case_id).await.family_links.is_empty());
    assert!(get_case(&mut c, &m.case_id).await.family_links.is_empty());
    rule(
        c.end_family_link(req(pb::EndFamilyLinkRequest {
            header: m.next("2025-09-03"),
            ..end.clone()
        }))
        .await,
        "FAMILY_LINK_ENDED",
    );
    g.unchanged(&mut c).await;
    m.unchanged(&mut c).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_links_are_refused_naming_the_field_or_rule_and_change_nothing() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut g = register(&mut c, "GUARDIANB", "V-63000001", "2023-03-01").await;
    let m = minor_with_ppt(&mut c, "NINAB", "V-63000002", "2021-07-01", "2021-07-02").await;
    let adult = register(&mut c, "ADULTOB", "V-63000003", "2023-03-01").await;

    let with = |f: &dyn Fn(&mut pb::RecordFamilyLinkRequest)| {
        let mut r = link_request(&g, &m, pb::LinkEvidence::ActaIcbf);
        f(&mut r);
        req(r)
    };
    invalid(
        c.record_family_link(with(&|r| r.other_case_id = g.case_id.clone()))
            .await,
        "other_case_id",
    );
    invalid(
        c.record_family_link(with(&|r| r.other_case_id = String::new()))
            .await,
        "other_case_id",
    );
    invalid(
        c.record_family_link(with(&|r| r.other_case_id = "C-00000000000000000000".into()))
            .await,
        "other_case_id",
    );
    invalid(c.record_family_link(with(&|r| r.evidence = 0)).await, "evidence");
    invalid(c.record_family_link(with(&|r| r.evidence = 99)).await, "evidence");
    invalid(
        c.record_family_link(with(&|r| {
            r.evidence = pb::LinkEvidence::RegistroCivilMatrimonio as i32
        }))
        .await,
        "evidence",
    );
    invalid(
        c.record_family_link(with(&|r| r.role = pb::FamilyLinkRole::WardOf as i32))
            .await,
        "role",
    );
    fails(
        c.record_family_link(with(&|r| r.other_expected_version = 99))
            .await,
        Code::Aborted,
    );
    // An adult cannot be a ward.
    let mut to_adult = link_request(&g, &adult, pb::LinkEvidence::SentenciaJudicial);
    to_adult.other_case_id = adult.case_id.clone();
    rule(c.record_family_link(req(to_adult)).await, "FAMILY_LINK_AGE");
    g.unchanged(&mut c).await;
    m.unchanged(&mut c).await;

    // A duplicate of an active link of the same kind.
    let first = ok(c
        .record_family_link(req(link_request(&g, &m, pb::LinkEvidence::ActaIcbf)))
        .await);
    g.step(
        first.result.as_ref().unwrap(),
        "REGISTERED",
        &["FamilyLinkRecorded"],
    );
    let mut m = m;
    m.step(
        first.other.as_ref().unwrap(),
        "PERMIT_ISSUED",
        &["FamilyLinkRecorded"],
    );
    rule(
        c.record_family_link(req(link_request(&g, &m, pb::LinkEvidence::SentenciaJudicial)))
            .await,
        "FAMILY_LINK_DUPLICATE",
    );
    // An erased case takes no new link (and is named as the other case).
    let mut erased = register(&mut c, "BORRADA", "V-63000004", "2023-03-01").await;
    let r = ok(c
        .erase_person(req(pb::ErasePersonRequest {
            header: erased.next("2025-09-01"),
            legal_basis: "LEY_1581_2012_ART_8".into(),
        }))
        .await);
    erased.step(&r, "REGISTERED", &["PersonErased"]);
    let mut to_erased = link_request(&g, &erased, pb::LinkEvidence::SentenciaJudicial);
    to_erased.role = pb::FamilyLinkRole::ParentOf as i32;
    to_erased.evidence = pb::LinkEvidence::SentenciaJudicial as i32;
    let s = fails(
        c.record_family_link(req(to_erased)).await,
        Code::FailedPrecondition,
    );
    assert_eq!(
        s.get_details_error_info().unwrap().reason,
        "FAMILY_LINK_CASE_ERASED"
    );
    g.unchanged(&mut c).await;
    m.unchanged(&mut c).await;
    erased.unchanged(&mut c).await;

    // A caseworker may record links; a statistician may not.
    fails(
        c.record_family_link(as_role(
            "statistician",
            link_request(&g, &m, pb::LinkEvidence::ActaIcbf),
        ))
        .await,
        Code::PermissionDenied,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pep_tutor_takes_the_guardian_of_a_minor_who_held_a_ppt_on_2023_12_31_and_statistics_count_it() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    // A guardian linked to a minor who held a PPT on 2023-12-31.
    let mut g = register(&mut c, "TUTORA", "V-64000001", "2023-03-01").await;
    let mut m = minor_with_ppt(&mut c, "NINAPPT", "V-64000002", "2021-07-01", "2021-07-02").await;
    let r = ok(c
        .record_family_link(req(link_request(
            &g,
            &m,
            pb::LinkEvidence::RegistroCivilNacimiento,
        )))
        .await);
    g.step(r.result.as_ref().unwrap(), "REGISTERED", &["FamilyLinkRecorded"]);
    m.step(
        r.other.as_ref().unwrap(),
        "PERMIT_ISSUED",
        &["FamilyLinkRecorded"],
    );
    let application = pep_tutor(&g, "2025-09-05");
    let accepted = ok(c.pre_register(req(application.clone())).await);
    g.step(&accepted, "PRE_REGISTERED", &["PreRegistered"]);

    // The rule is data, shown with the channel.
    let channels = ok(c
        .list_channels(req(pb::ListChannelsRequest {
            on: "2025-09-05".into(),
        }))
        .await);
    let tutor = channels
        .channels
        .iter()
        .find(|ch| ch.code == "PEP_TUTOR")
        .unwrap();
    assert_eq!(
        (
            tutor.linked_permit_role.as_str(),
            tutor.linked_permit_type.as_str(),
            tutor.linked_permit_held_on.as_str()
        ),
        ("GUARDIAN_OF", "PPT", "2023-12-31")
    );

    // Without a link: refused.
    let alone = register(&mut c, "SOLA", "V-64000003", "2023-03-01").await;
    rule(
        c.pre_register(req(pep_tutor(&alone, "2025-09-05"))).await,
        "PEP_TUTOR_NO_ELIGIBLE_MINOR",
    );
    alone.unchanged(&mut c).await;

    // Linked to a minor whose PPT came after 2023-12-31 (approved and issued in 2024): refused.
    let mut late_g = register(&mut c, "TARDIA", "V-64000004", "2023-03-01").await;
    let mut late_m = minor_with_ppt(&mut c, "NINATARDE", "V-64000005", "2024-01-20", "2024-02-01").await;
    let r = ok(c
        .record_family_link(req(link_request(
            &late_g,
            &late_m,
            pb::LinkEvidence::SentenciaJudicial,
        )))
        .await);
    late_g.step(r.result.as_ref().unwrap(), "REGISTERED", &["FamilyLinkRecorded"]);
    late_m.step(
        r.other.as_ref().unwrap(),
        "PERMIT_ISSUED",
        &["FamilyLinkRecorded"],
    );
    let refused = c.pre_register(req(pep_tutor(&late_g, "2025-09-05"))).await;
    let s = fails(refused, Code::FailedPrecondition);
    assert!(s.message().contains("2023-12-31"), "{}", s.message());
    assert_eq!(
        s.get_details_error_info().unwrap().reason,
        "PEP_TUTOR_NO_ELIGIBLE_MINOR"
    );
    late_g.unchanged(&mut c).await;
    // A retry of the accepted application gets its original answer (the
    // linked minor is read as it stood before the original).
    let again = ok(c.pre_register(req(application)).await);
    assert!(again.deduplicated);
    assert_eq!(
        (again.first_seq, again.version),
        (accepted.first_seq, accepted.version)
    );

    // Statistics: minors by status and guardian.
    let unlinked = minor_with_ppt(&mut c, "NINASOLA", "V-64000006", "2021-07-01", "2021-07-02").await;
    let last_seq = unlinked.last_seq;
    let channel = registry::client::connect(&server.options("statistician"), Duration::from_secs(10))
        .await
        .unwrap();
    let mut s = StatisticsClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let a = s
            .caseload(pb::CaseloadRequest {
                by: vec!["status".into(), "guardian".into()],
                filters: vec![pb::DimensionFilter {
                    dimension: "minor".into(),
                    values: vec!["true".into()],
                }],
                ..Default::default()
            })
            .await
            .expect("caseload")
            .into_inner();
        if a.position.as_ref().is_some_and(|p| p.seq >= last_seq) || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer.dimensions, ["status", "guardian"]);
    let cells: Vec<(Vec<String>, u64)> = answer.cells.iter().map(|c| (c.values.clone(), c.count)).collect();
    assert_eq!(
        cells,
        [
            (vec!["REGULAR_PPT".to_string(), "NONE".to_string()], 1),
            (vec!["REGULAR_PPT".to_string(), "LINKED".to_string()], 2),
        ]
    );
    server.stop().await;
}
