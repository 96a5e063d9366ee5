//! Department scopes, the access events written for personal-data reads,
//! and master-key rotation, over a real server on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;
use registry::api::pb;
use registry::auth::access_file::{self, Grant};
use registry::auth::Role;
use tonic::Code;

/// A token for a principal limited to `departments`.
async fn scoped_token(server: &TestServer, role: Role, departments: &[u8]) -> String {
    let new = access_file::add_token(
        &server.access_file(),
        &Grant {
            principal: "u-scoped".into(),
            role,
            office: "BOG-NORTE".into(),
            departments: departments.to_vec(),
            expires_at: None,
        },
    )
    .unwrap();
    // The server reloads a changed access file within a quarter second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    new.token
}

fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn in_antioquia(given: &str, cedula: &str) -> pb::RegisterPersonRequest {
    let mut r = register_request(
        person(
            given,
            "PRUEBA",
            "1990-01-01",
            &[(pb::DocumentType::VenezuelanCedula, cedula)],
        ),
        "2022-03-01",
    );
    r.department = "05".into();
    r.municipality = "05001".into();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_caseworker_acts_and_reads_only_inside_its_departments() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let bogota_only = scoped_token(&server, Role::Caseworker, &[11]).await;
    // A case in Antioquia (05), recorded by an unscoped supervisor.
    let outside = ok(c.register_person(req(in_antioquia("ANTONIA", "V81000001"))).await);
    // Registering in Bogotá (11) is inside the scope; in Antioquia it is not.
    let inside = ok(c
        .register_person(with_token(
            &bogota_only,
            register_request(
                person(
                    "BERTA",
                    "PRUEBA",
                    "1990-01-01",
                    &[(pb::DocumentType::VenezuelanCedula, "V81000002")],
                ),
                "2022-03-01",
            ),
        ))
        .await);
    let s = fails(
        c.register_person(with_token(&bogota_only, in_antioquia("CLARA", "V81000003")))
            .await,
        Code::PermissionDenied,
    );
    assert!(s.message().contains("scope"), "{}", s.message());
    // Reads: inside served; outside and missing refused alike (existence not revealed).
    let case = ok(c
        .get_case(with_token(&bogota_only, get_case_request(&inside.case_id)))
        .await);
    assert_eq!(case.person.unwrap().given_names, "BERTA");
    let outside_answer = fails(
        c.get_case(with_token(&bogota_only, get_case_request(&outside.case_id)))
            .await,
        Code::PermissionDenied,
    );
    let missing_answer = fails(
        c.get_case(with_token(
            &bogota_only,
            get_case_request("C-0000000000000000dead"),
        ))
        .await,
        Code::PermissionDenied,
    );
    assert_eq!(outside_answer.message(), missing_answer.message());
    let list = |id: &str| pb::ListCaseEventsRequest {
        case_id: id.to_string(),
        from_version: 0,
        limit: 0,
    };
    fails(
        c.list_case_events(with_token(&bogota_only, list(&outside.case_id)))
            .await,
        Code::PermissionDenied,
    );
    ok(
        c.list_case_events(with_token(&bogota_only, list(&inside.case_id)))
            .await,
    );
    // A look-up by document finds only cases inside the scope.
    let find = |number: &str| pb::FindCasesByDocumentRequest {
        document: Some(pb::IdentityDocument {
            r#type: pb::DocumentType::VenezuelanCedula as i32,
            number: number.to_string(),
        }),
        purpose: "DEDUPLICATION".into(),
    };
    let found = ok(c
        .find_cases_by_document(with_token(&bogota_only, find("V81000001")))
        .await);
    assert!(found.case_ids.is_empty(), "a case outside the scope is not found");
    let found = ok(c
        .find_cases_by_document(with_token(&bogota_only, find("V81000002")))
        .await);
    assert_eq!(found.case_ids, vec![inside.case_id.clone()]);
    // Commands: on a case outside, refused; moving a case out of the scope, refused.
    fails(
        c.pre_register(with_token(
            &bogota_only,
            pb::PreRegisterRequest {
                header: header(&outside.case_id, 1, "2022-03-02"),
                channel: "ETPV".into(),
                basis: pb::EligibilityBasis::Pip as i32,
            },
        ))
        .await,
        Code::PermissionDenied,
    );
    fails(
        c.update_residence(with_token(
            &bogota_only,
            pb::UpdateResidenceRequest {
                header: header(&inside.case_id, 1, "2022-03-02"),
                department: "05".into(),
                municipality: "05001".into(),
            },
        ))
        .await,
        Code::PermissionDenied,
    );
    // Nothing refused was recorded: both cases are still at version 1.
    assert_eq!(get_case(&mut c, &outside.case_id).await.version, 1);
    assert_eq!(get_case(&mut c, &inside.case_id).await.version, 1);
    server.stop().await;
}

async fn statistics(server: &TestServer, at_least_seq: u64) -> pb::CaseloadResponse {
    let channel = registry::client::connect(&server.options("statistician"), Duration::from_secs(10))
        .await
        .unwrap();
    let mut s = pb::statistics_client::StatisticsClient::new(channel);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let a = s
            .caseload(pb::CaseloadRequest {
                by: vec!["status".into(), "department".into()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if a.position.as_ref().is_some_and(|p| p.seq >= at_least_seq) {
            return a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the projection did not reach seq {at_least_seq}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_reads_append_access_events_that_verify_and_leave_statistics_unchanged() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let t = register(&mut c, "DIANA", "V82000001", "2022-03-01").await;
    let before = statistics(&server, t.last_seq).await;
    // Two reads by the caseworker role, one look-up by document (found), one not found.
    let mut r = as_role("caseworker", get_case_request(&t.case_id));
    r.get_mut().purpose = "APPEAL_REVIEW".into();
    ok(c.get_case(r).await);
    ok(c.get_case(as_role("caseworker", get_case_request(&t.case_id)))
        .await);
    let find = |number: &str| pb::FindCasesByDocumentRequest {
        document: Some(pb::IdentityDocument {
            r#type: pb::DocumentType::VenezuelanCedula as i32,
            number: number.to_string(),
        }),
        purpose: "DEDUPLICATION".into(),
    };
    assert_eq!(
        ok(c.find_cases_by_document(req(find("V82000001"))).await).case_ids,
        vec![t.case_id.clone()]
    );
    assert!(ok(c.find_cases_by_document(req(find("V82999999"))).await)
        .case_ids
        .is_empty());
    // A purpose must be a code: free text (where a name could go) is refused, and nothing is read.
    let mut r = as_role("caseworker", get_case_request(&t.case_id));
    r.get_mut().purpose = "checking Diana".into();
    invalid(c.get_case(r).await, "purpose");
    // Reads of the access stream through the case API are refused.
    invalid(
        c.get_case(req(get_case_request(&format!("access:{}", t.case_id))))
            .await,
        "case_id",
    );
    // Statistics count the same after the reads, at a position past them.
    let after = statistics(&server, t.last_seq + 4).await;
    assert_eq!(after.position.as_ref().unwrap().seq, t.last_seq + 4);
    assert_eq!(
        (before.cells, before.total),
        (after.cells, after.total),
        "access events change no statistic"
    );
    drop(c);
    let tmp = server.stop().await;
    let data = tmp.path().join("data");
    let store = open_store(&data);
    let events = store.read_all(t.last_seq + 1, 100).unwrap();
    assert_eq!(events.len(), 4, "one access event per personal-data read");
    let decoded: Vec<_> = events
        .iter()
        .map(|ev| {
            assert_eq!(ev.record.event_type, registry::cases::ACCESS_EVENT_TYPE);
            let (case_id, operation, purpose, role, credential) =
                registry::codec::decode_access(&ev.record.payload).unwrap();
            (
                ev.record.stream_id.clone(),
                ev.record.actor.user_id.clone(),
                case_id,
                operation,
                purpose,
                role,
                credential,
            )
        })
        .collect();
    let stream = format!("access:{}", t.case_id);
    let cw = test_principal("caseworker");
    let expected = vec![
        (
            stream.clone(),
            cw.clone(),
            t.case_id.clone(),
            "GetCase",
            "APPEAL_REVIEW",
            "caseworker",
            "tok-test-caseworker",
        ),
        (
            stream.clone(),
            cw,
            t.case_id.clone(),
            "GetCase",
            "REVIEW",
            "caseworker",
            "tok-test-caseworker",
        ),
        (
            stream,
            ACTOR_USER.to_string(),
            t.case_id.clone(),
            "FindCasesByDocument",
            "DEDUPLICATION",
            "supervisor",
            "tok-test-supervisor",
        ),
        (
            "access:none:<id>".to_string(),
            ACTOR_USER.to_string(),
            String::new(),
            "FindCasesByDocument",
            "DEDUPLICATION",
            "supervisor",
            "tok-test-supervisor",
        ),
    ];
    let expected: Vec<_> = expected
        .into_iter()
        .map(|(a, b, c, d, e, f, g)| {
            (
                a,
                b,
                c,
                d.to_string(),
                e.to_string(),
                f.to_string(),
                g.to_string(),
            )
        })
        .collect();
    // A look-up that found nothing is recorded in a stream of its own:
    // `access:none:` and 32 hex digits.
    let mut decoded = decoded;
    let mut none_streams = Vec::new();
    for d in decoded.iter_mut() {
        if let Some(id) = d.0.strip_prefix("access:none:") {
            assert!(
                id.len() == 32
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{}",
                d.0
            );
            none_streams.push(std::mem::replace(&mut d.0, "access:none:<id>".into()));
        }
    }
    assert_eq!(decoded, expected);
    assert_eq!(none_streams.len(), 1);
    assert_eq!(store.stream_version(&none_streams[0]).unwrap(), 1);
    // No personal data in the access events.
    for ev in &events {
        assert!(
            !contains_bytes(&ev.record.payload, b"DIANA")
                && !contains_bytes(&ev.record.payload, b"V82000001")
        );
    }
    drop(store);
    // The chain, with the access events, verifies.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_keeps_every_case_readable_and_erased_persons_erased() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut kept = Vec::new();
    for i in 0..5 {
        kept.push(
            register(
                &mut c,
                &format!("PERSONA{i}"),
                &format!("V8300000{i}"),
                "2022-03-01",
            )
            .await,
        );
    }
    let mut gone = register(&mut c, "ERASMO", "V83999999", "2022-03-01").await;
    let r = ok(c
        .erase_person(req(pb::ErasePersonRequest {
            header: gone.next("2022-03-02"),
            legal_basis: "LEY_1581_ART_8".into(),
        }))
        .await);
    gone.step(&r, "REGISTERED", &["PersonErased"]);
    let head_before = r.last_seq;
    let new_key = server.access_file().with_file_name("new-master.key");
    registry::pii::MasterKey::create_file(&new_key).unwrap();

    let channel = tonic::transport::Channel::from_shared(server.target())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = pb::admin_client::AdminClient::new(channel);
    // Only an admin may rotate; a bad path is named.
    let s = admin
        .rotate_master_key(as_role(
            "supervisor",
            pb::RotateMasterKeyRequest {
                new_key_file: new_key.display().to_string(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied);
    invalid(
        admin
            .rotate_master_key(as_role(
                "admin",
                pb::RotateMasterKeyRequest {
                    new_key_file: "/nonexistent/key".into(),
                },
            ))
            .await,
        "new_key_file",
    );
    let rotated = ok(admin
        .rotate_master_key(as_role(
            "admin",
            pb::RotateMasterKeyRequest {
                new_key_file: new_key.display().to_string(),
            },
        ))
        .await);
    assert_eq!(
        rotated.rewrapped, 5,
        "the five live persons' keys (the erased one has a tombstone)"
    );
    let new_id = registry::pii::MasterKey::load(&new_key).unwrap().key_id_hex();
    assert_eq!(rotated.master_key_id, new_id);
    for (i, t) in kept.iter().enumerate() {
        assert_eq!(
            get_case(&mut c, &t.case_id).await.person.unwrap().given_names,
            format!("PERSONA{i}")
        );
    }
    let erased = get_case(&mut c, &gone.case_id).await;
    assert!(erased.erased && erased.person.is_none());
    drop((c, admin));
    let tmp = server.stop().await;
    let data = tmp.path().join("data");
    {
        let store = open_store(&data);
        // No event was touched: the log holds what it held, plus the reads' access events.
        for ev in store.read_all(head_before + 1, 100).unwrap() {
            assert_eq!(ev.record.event_type, registry::cases::ACCESS_EVENT_TYPE);
        }
        // The old key no longer opens the store; the new one does, and the erased key stays gone.
        let old = registry::pii::MasterKey::load(tmp.path().join("master.key")).unwrap();
        assert!(
            registry::pii::KeyStore::open(store.db(), old).is_err(),
            "the old master key is refused"
        );
        let keys =
            registry::pii::KeyStore::open(store.db(), registry::pii::MasterKey::load(&new_key).unwrap())
                .unwrap();
        assert!(keys.get(&gone.case_id).unwrap().is_none());
        for t in &kept {
            assert!(keys.get(&t.case_id).unwrap().is_some());
        }
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
