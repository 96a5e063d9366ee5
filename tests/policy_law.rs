//! The law in the log, through a real server: instruments recorded as
//! events of the `policy` stream, commands decided under the rules in force
//! on their business date, events citing the policy version, retries and
//! replays deciding as the original did after an amendment.

mod common;
mod worklist_support;

use common::*;
use registry::api::pb;
use registry::api::pb::policy_client::PolicyClient;
use tonic::transport::Channel;
use tonic::Code;

async fn policy_client(server: &TestServer) -> PolicyClient<Channel> {
    let channel = Channel::from_shared(server.target())
        .unwrap()
        .connect()
        .await
        .unwrap();
    PolicyClient::new(channel)
}

fn instrument(id: &str, on: &str) -> pb::PolicyInstrument {
    pb::PolicyInstrument {
        id: id.into(),
        kind: "RESOLUCION".into(),
        number: id.split('-').nth(1).unwrap_or("1").into(),
        issuer: "MIGRACION_COLOMBIA".into(),
        signed_on: on.into(),
        effective_on: on.into(),
        title: "Prorroga la ventana del PEP-Tutor".into(),
    }
}

/// The current rules of PEP_TUTOR as JSON `{"channels": [...]}`, with its
/// window closing on `closes_on`.
async fn pep_tutor_closing(p: &mut PolicyClient<Channel>, closes_on: &str) -> String {
    let list = ok(p
        .list_policies(as_role("admin", pb::ListPoliciesRequest {}))
        .await);
    let entry = list
        .entries
        .iter()
        .find(|e| e.instrument.as_ref().unwrap().id == "RES-2451-2025")
        .expect("the genesis holds Res. 2451/2025");
    let mut rules: serde_json::Value = serde_json::from_str(&entry.rules_json).unwrap();
    rules["channels"][0]["windows"][0]["closes_on"] = closes_on.into();
    rules.to_string()
}

async fn pre_register_tutor(
    c: &mut Client,
    t: &Tracker,
    on: &str,
) -> Result<tonic::Response<pb::CommandResult>, tonic::Status> {
    c.pre_register(req(pb::PreRegisterRequest {
        header: t.next(on),
        channel: "PEP_TUTOR".into(),
        basis: pb::EligibilityBasis::GuardianOfMinor as i32,
    }))
    .await
}

#[tokio::test]
async fn a_command_is_decided_under_the_rules_in_force_and_cites_them() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut p = policy_client(&server).await;

    // A new store starts with the genesis instruments, in log order.
    let list = ok(p
        .list_policies(as_role("auditor", pb::ListPoliciesRequest {}))
        .await);
    let ids: Vec<&str> = list
        .entries
        .iter()
        .map(|e| e.instrument.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "RES-971-2021",
            "RES-2451-2025",
            "RES-12509-2024",
            "DECRETO-1067-2015"
        ]
    );
    assert_eq!(list.policy_version, genesis_events());
    let genesis_version = list.policy_version;

    // PEP-Tutor closed on 2026-04-30: an application on 2026-06-01 is refused.
    let mut t = register_guardian(&mut c, "LUZ", "V41000001", "2026-05-30").await;
    let s = precondition(pre_register_tutor(&mut c, &t, "2026-06-01").await, "REGISTERED");
    assert!(
        s.message().contains("PEP_TUTOR closed on 2026-04-30"),
        "{}",
        s.message()
    );

    // A resolution extends the window to 2026-10-31 from 2026-05-15.
    let rules_json = pep_tutor_closing(&mut p, "2026-10-31").await;
    let amend = pb::RecordPolicyRequest {
        request_id: request_id("amend"),
        action: pb::PolicyAction::Amend as i32,
        instrument: Some(instrument("RES-3100-2026", "2026-05-15")),
        legal_basis: String::new(),
        target: "RES-2451-2025".into(),
        rules_json: rules_json.clone(),
    };
    // Only an admin records law.
    fails(
        p.record_policy(as_role("supervisor", amend.clone())).await,
        Code::PermissionDenied,
    );
    let recorded = ok(p.record_policy(as_role("admin", amend.clone())).await);
    assert!(!recorded.deduplicated);
    assert_eq!(
        recorded.rules_blake3,
        blake3::hash(recorded_rules(&mut p, recorded.seq).await.as_bytes())
            .to_hex()
            .to_string()
    );
    // A retry gets the original's answer; the same id with other content is refused.
    let again = ok(p.record_policy(as_role("admin", amend.clone())).await);
    assert_eq!((again.seq, again.deduplicated), (recorded.seq, true));
    let mut other = amend.clone();
    other.instrument.as_mut().unwrap().title = "otra".into();
    fails(
        p.record_policy(as_role("admin", other)).await,
        Code::AlreadyExists,
    );

    // The same command on the same case is now accepted, citing the amendment.
    let r = ok(pre_register_tutor(&mut c, &t, "2026-06-01").await);
    t.step(&r, "PRE_REGISTERED", &["PreRegistered"]);
    let store_dir = server.data_dir.clone();
    // An application dated before the amendment took effect is still decided
    // under the old rules (in force on its business date).
    let mut u = register_guardian(&mut c, "MAR", "V41000002", "2026-05-01").await;
    let s = precondition(pre_register_tutor(&mut c, &u, "2026-05-10").await, "REGISTERED");
    assert!(
        s.message().contains("PEP_TUTOR closed on 2026-04-30"),
        "{}",
        s.message()
    );
    let r = ok(pre_register_tutor(&mut c, &u, "2026-05-20").await);
    u.step(&r, "PRE_REGISTERED", &["PreRegistered"]);

    // GetPolicy answers as of a date and as of a version.
    let now = ok(p
        .get_policy(as_role(
            "caseworker",
            pb::GetPolicyRequest {
                on: "2026-06-01".into(),
                as_of_seq: 0,
            },
        ))
        .await);
    let tutor = now.channels.iter().find(|ch| ch.code == "PEP_TUTOR").unwrap();
    assert_eq!(
        (tutor.closes_on.as_str(), tutor.instrument.as_str()),
        ("2026-10-31", "RES-3100-2026")
    );
    assert_eq!(tutor.policy_seq, recorded.seq);
    let then = ok(p
        .get_policy(as_role(
            "caseworker",
            pb::GetPolicyRequest {
                on: "2026-06-01".into(),
                as_of_seq: genesis_version,
            },
        ))
        .await);
    let tutor = then.channels.iter().find(|ch| ch.code == "PEP_TUTOR").unwrap();
    assert_eq!(
        (tutor.closes_on.as_str(), tutor.instrument.as_str()),
        ("2026-04-30", "RES-2451-2025")
    );
    // ListChannels follows the policy in force on the day asked.
    let channels = ok(c
        .list_channels(as_role(
            "caseworker",
            pb::ListChannelsRequest {
                on: "2026-06-01".into(),
            },
        ))
        .await);
    let tutor = channels
        .channels
        .iter()
        .find(|ch| ch.code == "PEP_TUTOR")
        .unwrap();
    assert_eq!(tutor.closes_on, "2026-10-31");
    let early = ok(c
        .list_channels(as_role(
            "caseworker",
            pb::ListChannelsRequest {
                on: "2024-01-01".into(),
            },
        ))
        .await);
    assert!(early
        .channels
        .iter()
        .all(|ch| ch.code != "VISA_V" && ch.code != "PEP_TUTOR"));

    // Bad input names its field and records nothing.
    let bad = pb::RecordPolicyRequest {
        request_id: request_id("bad"),
        action: pb::PolicyAction::Amend as i32,
        instrument: Some(instrument("RES-3101-2026", "2026-05-15")),
        legal_basis: String::new(),
        target: "RES-404-1999".into(),
        rules_json,
    };
    invalid(p.record_policy(as_role("admin", bad)).await, "amends");

    drop((c, p));
    let server_dir = server.stop().await;
    // The log cites the policy version each event was decided under, and a
    // replay of the policy stream reproduces each decision's rules.
    let store = open_store(&store_dir);
    let book = registry::cases::load_policy(&store).unwrap();
    assert_eq!(book.version(), recorded.seq);
    let events = store.read_stream(&t.case_id, 1, 100).unwrap();
    let pre = events
        .iter()
        .find(|e| e.record.event_type == "PreRegistered")
        .unwrap();
    assert_eq!(
        registry::codec::policy_citation(&pre.record.payload).unwrap(),
        recorded.seq
    );
    let reg = &events[0];
    assert_eq!(
        registry::codec::policy_citation(&reg.record.payload).unwrap(),
        genesis_version
    );
    let d = registry::domain::Date::parse("2026-06-01").unwrap();
    let code = registry::domain::ChannelCode::parse("PEP_TUTOR").unwrap();
    assert!(book
        .catalog_on(d, recorded.seq)
        .get(code)
        .unwrap()
        .check_window(d, false)
        .is_ok());
    assert!(book
        .catalog_on(d, genesis_version)
        .get(code)
        .unwrap()
        .check_window(d, false)
        .is_err());
    drop(store);
    // The policy stream verifies with the chain like every other stream.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["verify", "--data-dir"])
        .arg(&store_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(server_dir);
}

async fn recorded_rules(p: &mut PolicyClient<Channel>, seq: u64) -> String {
    let list = ok(p
        .list_policies(as_role("admin", pb::ListPoliciesRequest {}))
        .await);
    list.entries
        .into_iter()
        .find(|e| e.seq == seq)
        .unwrap()
        .rules_json
}

#[tokio::test]
async fn a_retry_after_an_amendment_gets_the_original_answer() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut p = policy_client(&server).await;
    let t = register_guardian(&mut c, "SOL", "V42000001", "2026-01-10").await;
    let pre = pb::PreRegisterRequest {
        header: t.next("2026-02-01"),
        channel: "PEP_TUTOR".into(),
        basis: pb::EligibilityBasis::GuardianOfMinor as i32,
    };
    let original = ok(c.pre_register(req(pre.clone())).await);
    // A resolution repeals PEP-Tutor from 2026-01-15: a new application on
    // 2026-02-01 would now be refused ...
    let repeal = pb::RecordPolicyRequest {
        request_id: request_id("repeal"),
        action: pb::PolicyAction::Repeal as i32,
        instrument: Some(instrument("RES-3200-2026", "2026-01-15")),
        legal_basis: String::new(),
        target: "RES-2451-2025".into(),
        rules_json: String::new(),
    };
    ok(p.record_policy(as_role("admin", repeal)).await);
    let u = register_guardian(&mut c, "RIO", "V42000002", "2026-01-10").await;
    let s = precondition(pre_register_tutor(&mut c, &u, "2026-02-01").await, "REGISTERED");
    assert!(
        s.message().contains("repealed by RES-3200-2026"),
        "{}",
        s.message()
    );
    // ... but the retry of the original is decided as it was, and answered
    // with the original's seqs.
    let retry = ok(c.pre_register(req(pre)).await);
    assert!(retry.deduplicated);
    assert_eq!(
        (retry.first_seq, retry.version),
        (original.first_seq, original.version)
    );
}

/// An ETPV case whose card is awaited, with an interim certificate valid
/// until `valid_until`; returns its tracker and the certificate's seq.
async fn awaiting_card_with_interim(
    c: &mut Client,
    given: &str,
    cedula: &str,
    valid_until: &str,
) -> (Tracker, u64) {
    let mut t = register(c, given, cedula, "2023-01-05").await;
    t.pre_register(c, "2023-01-06").await;
    t.schedule(c, "2023-01-07", "2023-01-08").await;
    t.capture(c, "2023-01-08").await;
    t.approve(c, "2023-01-09").await;
    t.issue_permit(c, "2023-01-10", &format!("PPT-{cedula}")).await;
    let r = ok(c
        .issue_interim_certificate(req(pb::InterimCertificateRequest {
            header: t.next("2023-01-11"),
            valid_until: valid_until.into(),
        }))
        .await);
    t.step(&r, "PERMIT_ISSUED", &["InterimCertificateIssued"]);
    (t, r.last_seq)
}

#[tokio::test]
async fn a_general_measure_is_one_event_whose_effect_reads_derive() {
    use worklist_support::{wait_for, worklists, Kind};
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut p = policy_client(&server).await;
    let mut w = worklists(&server).await;
    // Two certificates: one still valid on 2023-03-01, one expired before.
    let (reached, _) = awaiting_card_with_interim(&mut c, "ROSA", "V43000001", "2023-03-15").await;
    let (expired, seq) = awaiting_card_with_interim(&mut c, "PAZ", "V43000002", "2023-02-20").await;
    let mut near = worklist_support::request(Kind::InterimExpiring, "2023-01-12");
    near.horizon_days = 90;
    let listed = |items: &[pb::WorklistItem], case_id: &str| {
        items
            .iter()
            .find(|i| i.case_id == case_id)
            .map(|i| i.due_on.clone())
    };
    wait_for(&mut w, seq).await;
    let (items, _) = worklist_support::list_all(&mut w, "supervisor", &near).await;
    assert_eq!(listed(&items, &reached.case_id).as_deref(), Some("2023-03-15"));

    let measure = pb::RecordPolicyRequest {
        request_id: request_id("measure"),
        action: pb::PolicyAction::Adopt as i32,
        instrument: Some(instrument("RES-7000-2023", "2023-03-01")),
        legal_basis: "RES-971-2021".into(),
        target: String::new(),
        rules_json:
            r#"{"measures": [{"kind": "EXTEND_INTERIM_CERTIFICATES", "channel": "ETPV", "months": 6}]}"#
                .into(),
    };
    // The dry run counts what the measure would change, and records nothing.
    let head_before = ok(p
        .list_policies(as_role("admin", pb::ListPoliciesRequest {}))
        .await)
    .policy_version;
    let preview = ok(p.preview_policy(as_role("admin", measure.clone())).await);
    assert_eq!(preview.position_seq, seq);
    assert_eq!(preview.interim_certificates_extended, 1, "{preview:?}");
    assert_eq!(preview.cases, 2);
    fails(
        p.preview_policy(as_role("supervisor", measure.clone())).await,
        Code::PermissionDenied,
    );
    assert_eq!(
        ok(p.list_policies(as_role("admin", pb::ListPoliciesRequest {}))
            .await)
        .policy_version,
        head_before
    );

    // One event for everyone.
    let recorded = ok(p.record_policy(as_role("admin", measure)).await);
    assert_eq!(recorded.seq, seq + 1, "the measure is one event");
    let case = get_case(&mut c, &reached.case_id).await;
    let permit = case.permit.unwrap();
    assert_eq!(permit.interim_valid_until, "2023-09-15");
    assert_eq!(permit.interim_valid_until_recorded, "2023-03-15");
    assert_eq!(permit.interim_extended_by, ["RES-7000-2023"]);
    let case = get_case(&mut c, &expired.case_id).await;
    let permit = case.permit.unwrap();
    assert_eq!(permit.interim_valid_until, "2023-02-20");
    assert!(permit.interim_extended_by.is_empty());
    // The worklist derives the new date from the same event.
    wait_for(&mut w, recorded.seq).await;
    let (items, _) = worklist_support::list_all(&mut w, "supervisor", &near).await;
    assert_eq!(
        listed(&items, &reached.case_id),
        None,
        "no longer expiring in the window"
    );
    assert_eq!(listed(&items, &expired.case_id).as_deref(), Some("2023-02-20"));
    let mut far = worklist_support::request(Kind::InterimExpiring, "2023-09-01");
    far.horizon_days = 30;
    let (items, _) = worklist_support::list_all(&mut w, "supervisor", &far).await;
    let item = items
        .iter()
        .find(|i| i.case_id == reached.case_id)
        .expect("listed at its new date");
    assert_eq!(item.due_on, "2023-09-15");
    // The events of each case are untouched: the effect is derived.
    let store_dir = server.data_dir.clone();
    drop((c, p, w));
    let _tmp = server.stop().await;
    let store = open_store(&store_dir);
    // After the measure, only the two reads' access events were recorded.
    let after = store.read_all(recorded.seq + 1, 100).unwrap();
    assert_eq!(after.len(), 2);
    assert!(after
        .iter()
        .all(|e| e.record.event_type == registry::cases::ACCESS_EVENT_TYPE));
    assert_eq!(
        store.read_stream(&reached.case_id, 1, 100).unwrap().len() as u64,
        reached.version
    );
}

#[tokio::test]
async fn the_command_line_lists_previews_and_records_an_instrument_from_a_file() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("res.json");
    std::fs::write(
        &file,
        r#"{"request_id": "res-5000-2026", "action": "REPEAL",
            "instrument": {"id": "RES-5000-2026", "kind": "RESOLUCION", "number": "5000",
                           "issuer": "CANCILLERIA", "signed_on": "2026-02-01",
                           "effective_on": "2026-02-01", "title": "Deroga la visa V"},
            "target": "RES-12509-2024"}"#,
    )
    .unwrap();
    let registry = |args: &[&str], role: &str| {
        let token = server.token_file(role);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_registry"))
            .arg("policy")
            .args(["--target", &server.target(), "--token-file"])
            .arg(&token)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let f = file.to_str().unwrap();
    let (ok_, out, err) = registry(&["preview", f], "admin");
    assert!(ok_, "{err}");
    assert!(out.contains("0 interim certificates extended"), "{out}");
    let (ok_, _, err) = registry(&["record", f], "caseworker");
    assert!(!ok_ && err.contains("PermissionDenied"), "{err}");
    let (ok_, out, err) = registry(&["import", f], "admin");
    assert!(ok_, "{err}");
    let seq = genesis_events() + 1;
    assert!(out.contains(&format!("recorded at seq {seq}")), "{out}");
    let (ok_, out, _) = registry(&["record", f], "admin");
    assert!(ok_ && out.contains("a retry"), "{out}");
    let (ok_, out, err) = registry(&["list"], "auditor");
    assert!(ok_, "{err}");
    assert!(out.contains(&format!("policy version {seq}")), "{out}");
    assert!(
        out.contains("RES-12509-2024") && out.contains("repealed by RES-5000-2026"),
        "{out}"
    );
    // A file that is not an instrument is refused, naming the file.
    std::fs::write(&file, r#"{"action": "ADOPT"}"#).unwrap();
    let (ok_, _, err) = registry(&["record", f], "admin");
    assert!(!ok_ && err.contains("res.json"), "{err}");
}
