//! End-to-end privacy: personal data never reaches the disk in clear, and an
//! erasure makes a person's identifying data unrecoverable while the case's
//! history stays and the log still verifies.

mod common;

use common::*;
use registry::api::pb;
use tonic::Code;

use pb::DocumentType as Doc;

/// Every form of the personal strings to look for: as sent, normalized, in
/// parts, in other cases.
fn variants(strings: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for s in strings {
        for v in [s.to_string(), s.to_uppercase(), s.to_lowercase()] {
            if !out.contains(&v) {
                out.push(v);
            }
        }
        let title: String = s
            .split(' ')
            .map(|w| {
                let mut cs = w.chars();
                match cs.next() {
                    Some(f) => f.to_uppercase().collect::<String>() + &cs.as_str().to_lowercase(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        if !out.contains(&title) {
            out.push(title);
        }
    }
    out
}

#[tokio::test]
async fn no_personal_data_reaches_any_file_of_the_data_directory() {
    let server = TestServer::start().await;
    let mut c = server.client().await;

    let zuleima = pb::PersonalData {
        phone: "+57 310 987 6543".into(),
        email: "zuleima.testnameqx@example.org".into(),
        address: "Calle 99 # 88-77 Barrio Qxtestbarrio".into(),
        ..person(
            "ZULEIMA",
            "TESTNAMEQX",
            "1987-11-23",
            &[(Doc::VenezuelanCedula, "v-99.887.766")],
        )
    };
    let registration = register_request(zuleima.clone(), "2022-03-01");
    let registration_rid = registration.header.as_ref().unwrap().request_id.clone();
    let mut t = Tracker::registered(&ok(c.register_person(req(registration.clone())).await));
    // A retry and a refused duplicate registration carry the same data.
    assert!(ok(c.register_person(req(registration)).await).deduplicated);
    fails(
        c.register_person(req(register_request(zuleima.clone(), "2022-03-01")))
            .await,
        Code::AlreadyExists,
    );
    t.pre_register(&mut c, "2022-03-02").await;
    t.schedule(&mut c, "2022-03-03", "2022-03-10").await;
    t.capture(&mut c, "2022-03-10").await;
    t.approve(&mut c, "2022-04-01").await;
    t.issue_permit(&mut c, "2022-04-02", "PPTQX778899").await;
    t.print(&mut c, "2022-04-03").await;
    t.deliver(&mut c, "2022-04-04").await;
    let mut updated = zuleima.clone();
    updated.given_names = "ZULEIMA ESTHERQX".into();
    updated.documents.push(pb::IdentityDocument {
        r#type: Doc::Passport as i32,
        number: "QX5566778".into(),
    });
    let r = ok(c
        .update_personal_data(req(pb::UpdatePersonalDataRequest {
            header: t.next("2022-05-01"),
            person: Some(updated),
        }))
        .await);
    t.step(&r, "CARD_DELIVERED", &["PersonalDataUpdated"]);
    // A refused update (bad e-mail) carrying the name.
    let mut bad = zuleima.clone();
    bad.email = "zuleima at testnameqx".into();
    let s = invalid(
        c.update_personal_data(req(pb::UpdatePersonalDataRequest {
            header: t.next("2022-05-02"),
            person: Some(bad),
        }))
        .await,
        "person.email",
    );
    assert!(
        !s.message().to_lowercase().contains("zuleima") && !s.message().contains("testnameqx"),
        "error messages never quote personal data: {}",
        s.message()
    );
    // Reads and look-ups.
    let case = get_case(&mut c, &t.case_id).await;
    assert_eq!(case.person.as_ref().unwrap().family_names, "TESTNAMEQX");
    assert_eq!(case.permit.as_ref().unwrap().permit_number, "PPTQX778899");
    for (kind, number) in [
        (Doc::VenezuelanCedula, "V99887766"),
        (Doc::Passport, "qx-5566778"),
    ] {
        let found = ok(c
            .find_cases_by_document(req(pb::FindCasesByDocumentRequest {
                document: Some(pb::IdentityDocument {
                    r#type: kind as i32,
                    number: number.into(),
                }),
                purpose: "REVIEW".into(),
            }))
            .await);
        assert_eq!(found.case_ids, vec![t.case_id.clone()]);
    }
    drop(c);
    let tmp = server.stop().await;

    let needles = variants(&[
        "ZULEIMA TESTNAMEQX",
        "ZULEIMA",
        "TESTNAMEQX",
        "ESTHERQX",
        "V99887766",
        "99887766",
        "v-99.887.766",
        "99.887.766",
        "QX5566778",
        "PPTQX778899",
        "1987-11-23",
        "+57 310 987 6543",
        "3109876543",
        "zuleima.testnameqx@example.org",
        "Qxtestbarrio",
    ]);
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let files = files_under(&tmp.path().join("data"));
    assert!(files.len() > 1, "the data directory holds the store: {files:?}");
    // Positive control: what is recorded in clear (request ids, actors) is found.
    let control = find_plaintext(&tmp.path().join("data"), &[&registration_rid, ACTOR_USER]);
    for needle in [registration_rid.as_str(), ACTOR_USER] {
        assert!(
            control.iter().any(|(n, _)| n == needle),
            "the scan sees the store's bytes: {needle} not found"
        );
    }
    let found = find_plaintext(&tmp.path().join("data"), &needles);
    assert!(
        found.is_empty(),
        "personal data found in clear on disk: {found:?}"
    );
}

#[tokio::test]
async fn erasure_keeps_the_history_but_makes_the_identity_unrecoverable() {
    let server = TestServer::start().await;
    let mut c = server.client().await;

    let p = pb::PersonalData {
        phone: "+57 311 000 1122".into(),
        ..person(
            "YOLANDA",
            "ERASEDQX",
            "1979-06-30",
            &[(Doc::VenezuelanCedula, "V11223344"), (Doc::Passport, "EQX123456")],
        )
    };
    let mut t = Tracker::registered(&ok(c
        .register_person(req(register_request(p, "2022-03-01")))
        .await));
    t.pre_register(&mut c, "2022-03-02").await;
    t.schedule(&mut c, "2022-03-03", "2022-03-10").await;
    t.capture(&mut c, "2022-03-10").await;
    t.approve(&mut c, "2022-04-01").await;
    t.issue_permit(&mut c, "2022-04-02", "PPTEQX7788").await;
    t.print(&mut c, "2022-04-03").await;
    t.deliver(&mut c, "2022-04-04").await;
    let before = get_case(&mut c, &t.case_id).await;
    assert!(!before.erased);

    let r = ok(c
        .erase_person(req(pb::ErasePersonRequest {
            header: t.next("2022-06-01"),
            legal_basis: "LEY_1581_ART_8".into(),
        }))
        .await);
    t.step(&r, "CARD_DELIVERED", &["PersonErased"]);
    assert_eq!(
        r.status,
        pb::PersonStatus::RegularPpt as i32,
        "erasure does not change the person's status"
    );

    let after = get_case(&mut c, &t.case_id).await;
    assert!(after.erased);
    assert!(after.person.is_none(), "no identifying data after erasure");
    assert_eq!(after.version, t.version);
    assert_eq!(after.stage, "CARD_DELIVERED");
    assert_eq!(after.status, pb::PersonStatus::RegularPpt as i32);
    let permit = after.permit.as_ref().expect("the permit record stays");
    assert_eq!(permit.permit_number, "", "the permit number is personal data");
    assert_eq!(permit.card_state, "DELIVERED");
    assert_eq!(permit.valid_until, "2031-05-30");
    // Non-identifying facts stay for statistics.
    assert_eq!((after.birth_year, after.birth_month), (1979, 6));
    assert_eq!(after.sex, pb::Sex::F as i32);
    assert_eq!(after.department, "11");
    assert_eq!(after.application.as_ref().unwrap().channel, "ETPV");
    // The history is all there, the erasure last.
    assert_eq!(after.history.len(), before.history.len() + 1);
    assert_eq!(&after.history[..before.history.len()], &before.history[..]);
    assert_eq!(after.history.last().unwrap().event_type, "PersonErased");
    let page = ok(c
        .list_case_events(req(pb::ListCaseEventsRequest {
            case_id: t.case_id.clone(),
            from_version: 0,
            limit: 0,
        }))
        .await);
    assert_eq!(page.events, after.history);

    // Look-ups no longer find the person.
    for (kind, number) in [(Doc::VenezuelanCedula, "V11223344"), (Doc::Passport, "EQX123456")] {
        let found = ok(c
            .find_cases_by_document(req(pb::FindCasesByDocumentRequest {
                document: Some(pb::IdentityDocument {
                    r#type: kind as i32,
                    number: number.into(),
                }),
                purpose: "REVIEW".into(),
            }))
            .await);
        assert!(found.case_ids.is_empty(), "{kind:?}: {:?}", found.case_ids);
    }
    // Identifying data cannot come back.
    let s = fails(
        c.update_personal_data(req(pb::UpdatePersonalDataRequest {
            header: t.next("2022-06-02"),
            person: Some(person(
                "YOLANDA",
                "ERASEDQX",
                "1979-06-30",
                &[(Doc::VenezuelanCedula, "V11223344")],
            )),
        }))
        .await,
        Code::FailedPrecondition,
    );
    assert!(s.message().contains("erased"), "{}", s.message());
    assert!(!s.message().contains("YOLANDA"), "{}", s.message());
    t.unchanged(&mut c).await;
    precondition(
        c.erase_person(req(pb::ErasePersonRequest {
            header: t.next("2022-06-02"),
            legal_basis: "LEY_1581_ART_8".into(),
        }))
        .await,
        "CARD_DELIVERED",
    );
    t.unchanged(&mut c).await;
    // The case records only how it ends: no new step of its process, but
    // its permit can still be cancelled.
    fails(
        c.update_residence(req(pb::UpdateResidenceRequest {
            header: t.next("2022-06-03"),
            department: "76".into(),
            municipality: "76001".into(),
        }))
        .await,
        Code::FailedPrecondition,
    );
    t.unchanged(&mut c).await;
    let r = ok(c
        .cancel_permit(req(pb::CancelPermitRequest {
            header: t.next("2022-06-04"),
            ground: pb::CancellationGround::Other as i32,
        }))
        .await);
    t.step(&r, "PERMIT_CANCELLED", &["PermitCancelled"]);
    // The released documents may be registered again (by someone else).
    let other = ok(c
        .register_person(req(register_request(
            person(
                "OTRA",
                "PERSONA",
                "1990-01-01",
                &[(Doc::VenezuelanCedula, "V11223344")],
            ),
            "2022-06-05",
        )))
        .await);
    assert_ne!(other.case_id, t.case_id);
    let case_id = t.case_id.clone();
    drop(c);
    let tmp = server.stop().await;

    // The reopened store verifies end to end, and the person's key is gone.
    let data = tmp.path().join("data");
    let store = open_store(&data);
    assert_eq!(store.head().unwrap().seq, other.last_seq);
    let (chain, _index) = registry::log::verify::verify_full(&store, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("the log must verify after an erasure: {e}"));
    assert_eq!(chain.head.seq, other.last_seq);
    let master = registry::pii::MasterKey::load(tmp.path().join("master.key")).unwrap();
    let keys = registry::pii::KeyStore::open(store.db(), master).unwrap();
    assert!(
        keys.get(&case_id).unwrap().is_none(),
        "the erased person's key is destroyed"
    );
    assert!(keys.get(&other.case_id).unwrap().is_some());
    drop(keys);
    drop(store);

    let needles = variants(&[
        "YOLANDA",
        "ERASEDQX",
        "V11223344",
        "11223344",
        "EQX123456",
        "PPTEQX7788",
        "1979-06-30",
        "3110001122",
        "+57 311 000 1122",
    ]);
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let found = find_plaintext(&tmp.path().join("data"), &needles);
    assert!(
        found.is_empty(),
        "personal data found in clear on disk: {found:?}"
    );
}

/// The retry rule ("returns the original result") cannot hold after an
/// erasure: the retry would have to be sealed again with the destroyed key
/// to be compared. The registry refuses it, and an erased key never returns.
#[tokio::test]
async fn a_registration_retried_after_erasure_is_refused_and_the_key_stays_destroyed() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let registration = register_request(
        person("URSULA", "RETRYQX", "1980-02-02", &[(Doc::Passport, "URQX0001")]),
        "2022-03-01",
    );
    let first = ok(c.register_person(req(registration.clone())).await);
    let mut t = Tracker::registered(&first);
    let r = ok(c
        .erase_person(req(pb::ErasePersonRequest {
            header: t.next("2022-03-02"),
            legal_basis: "LEY_1581_ART_8".into(),
        }))
        .await);
    t.step(&r, "REGISTERED", &["PersonErased"]);
    for _ in 0..2 {
        let s = fails(
            c.register_person(req(registration.clone())).await,
            Code::FailedPrecondition,
        );
        assert!(s.message().contains("erased"), "{}", s.message());
        t.unchanged(&mut c).await;
    }
    let case = get_case(&mut c, &t.case_id).await;
    assert!(case.erased && case.person.is_none());
    let case_id = t.case_id.clone();
    drop(c);
    let tmp = server.stop().await;
    let store = open_store(&tmp.path().join("data"));
    let master = registry::pii::MasterKey::load(tmp.path().join("master.key")).unwrap();
    let keys = registry::pii::KeyStore::open(store.db(), master).unwrap();
    assert!(keys.get(&case_id).unwrap().is_none(), "no key was created again");
    // Nothing but access events (the reads of the case) came after the erasure.
    let head = store.head().unwrap().seq;
    let later = store.read_all(t.last_seq + 1, 1000).unwrap();
    assert_eq!(later.len() as u64, head - t.last_seq);
    for ev in later {
        assert_eq!(
            ev.record.event_type,
            registry::cases::ACCESS_EVENT_TYPE,
            "seq {}",
            ev.record.seq
        );
    }
}
