//! `registry simulate --target` against a real server: the caseload sent
//! through the gRPC API (single RPCs, or `--import` streams) is the one the
//! direct mode writes for the same seed (same cases, same events in the same
//! versions, same request ids, same tally), the command's own statistics
//! check passes, running again appends nothing, and a server holding more
//! than the run's caseload makes the check fail with exit code 1.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use registry::api::pb;
use registry::domain::{Event, Sealed};
use registry::log::Store;
use registry::simulate;
use serde_json::Value;

const PERSONS: u64 = 2_000;

fn registry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(args)
        .env_remove("REGISTRY_TOKEN")
        .env_remove("REGISTRY_MASTER_KEY")
        .output()
        .expect("run registry")
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read json")).expect("parse json")
}

#[track_caller]
fn success(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The direct mode's run of `seed` into a fresh directory: (dir, tally JSON).
fn direct(seed: u64) -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tally = dir.path().join("tally.json");
    let (persons, seed_text) = (PERSONS.to_string(), seed.to_string());
    let args = [
        "simulate",
        "--persons",
        &persons,
        "--seed",
        &seed_text,
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
        tally.to_str().unwrap(),
    ];
    success(&registry(&args));
    let tally = json(&tally);
    (dir, tally)
}

/// `simulate --target` of `seed` with `persons`; returns the exit output and the JSON report.
fn remote(
    server: &TestServer,
    seed: u64,
    persons: u64,
    import: bool,
    dir: &Path,
    name: &str,
) -> (Output, Value) {
    let report = dir.join(format!("{name}.json"));
    let token = server.token_file("supervisor");
    let stats_token = server.token_file("statistician");
    let (target, persons, seed) = (server.target(), persons.to_string(), seed.to_string());
    let mut args = vec![
        "simulate",
        "--target",
        &target,
        "--persons",
        &persons,
        "--seed",
        &seed,
        "--clients",
        "8",
        "--token-file",
        token.to_str().unwrap(),
        "--stats-token-file",
        stats_token.to_str().unwrap(),
        "--stats-timeout",
        "30",
        "--json",
        report.to_str().unwrap(),
    ];
    if import {
        args.push("--import");
    }
    let out = registry(&args);
    let value = if report.exists() {
        json(&report)
    } else {
        Value::Null
    };
    (out, value)
}

/// An event with its sealed fields emptied (sealed bytes differ between
/// stores: other keys); everything else must be equal.
fn unsealed(mut e: Event) -> Event {
    match &mut e {
        Event::PersonRegistered { identity, .. } | Event::PersonalDataUpdated { identity, .. } => {
            *identity = Sealed(Vec::new())
        }
        Event::PermitIssued { permit_number, .. } => *permit_number = Sealed(Vec::new()),
        Event::SupersededByVisa { visa_number, .. } => *visa_number = Sealed(Vec::new()),
        _ => {}
    }
    e
}

/// Per case of the caseload: (version, event type, request id, event
/// without its sealed bytes) of every event.
fn cases(store: &Store, seed: u64) -> Vec<Vec<(u64, String, String, Event)>> {
    (0..PERSONS)
        .map(|i| {
            store
                .read_stream(&simulate::case_id(seed, i), 1, 1000)
                .expect("read stream")
                .into_iter()
                .map(|e| {
                    let event =
                        registry::codec::decode(&e.record.event_type, &e.record.payload).expect("decode");
                    (
                        e.record.stream_version,
                        e.record.event_type,
                        e.record.request_id,
                        unsealed(event),
                    )
                })
                .collect()
        })
        .collect()
}

/// The sealed values the server holds are the plan's: names, birth date,
/// documents, contact data and the permit number, read back with GetCase.
async fn personal_data_is_the_plans(server: &TestServer, seed: u64) {
    let channel =
        registry::client::connect(&server.options("supervisor"), std::time::Duration::from_secs(10))
            .await
            .expect("connect");
    let mut c = pb::caseworker_client::CaseworkerClient::new(channel);
    let mut permits = 0;
    for i in 0..40 {
        let plan = simulate::plan_person(seed, i);
        let case = c
            .get_case(get_case_request(&simulate::case_id(seed, i)))
            .await
            .expect("get case")
            .into_inner();
        let p = case.person.expect("identity");
        let id = &plan.identity;
        assert_eq!(
            (&p.given_names, &p.family_names, &p.birth_date),
            (&id.given_names, &id.family_names, &id.birth_date),
            "person {i}"
        );
        assert_eq!(
            (&p.phone, &p.email, &p.address),
            (&id.phone, &id.email, &id.address)
        );
        let docs: Vec<(String, String)> = p
            .documents
            .iter()
            .map(|d| {
                let t = pb::DocumentType::try_from(d.r#type).unwrap().as_str_name();
                (
                    t.trim_start_matches("DOCUMENT_TYPE_").to_string(),
                    d.number.clone(),
                )
            })
            .collect();
        let planned: Vec<(String, String)> = id
            .documents
            .iter()
            .map(|d| (d.doc_type.clone(), d.number.clone()))
            .collect();
        assert_eq!(docs, planned, "person {i}");
        if let Some(permit) = case.permit {
            assert_eq!(permit.permit_number, plan.permit_number, "person {i}");
            permits += 1;
        }
    }
    assert!(permits > 10, "the sample holds permits ({permits})");
}

/// The remote run against a fresh server, checked against the direct mode.
fn same_caseload_as_the_direct_mode(seed: u64, import: bool) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestServer::start());
    let work = tempfile::tempdir().unwrap();
    let (direct_dir, direct_tally) = direct(seed);
    let events = direct_tally["events"].as_u64().unwrap();
    let commands = direct_tally["commands"].as_u64().unwrap();

    // First run: everything appended, no rejection, statistics equal to the tally.
    let (out, report) = remote(&server, seed, PERSONS, import, work.path(), "first");
    let stdout = success(&out);
    assert!(
        stdout.contains("statistics match the generator's tally"),
        "{stdout}"
    );
    assert_eq!(report["mode"], if import { "import" } else { "rpc" });
    assert_eq!(report["clean"], true);
    assert_eq!(report["appended_events"].as_u64(), Some(events), "{report}");
    assert_eq!(report["last_seq"].as_u64(), Some(genesis_events() + events));
    assert_eq!(report["commands"].as_u64(), Some(commands));
    assert_eq!(report["deduplicated_commands"], 0);
    assert_eq!(report["rejections"]["total"], 0, "{}", report["rejections"]);
    assert_eq!(report["disagreements"]["total"], 0);
    assert_eq!(report["statistics"]["matched"], true);
    assert_eq!(
        report["statistics"]["position_seq"].as_u64(),
        Some(genesis_events() + events)
    );
    assert_eq!(
        report["tally"], direct_tally,
        "the generator's tally is the direct mode's"
    );
    assert_eq!(report["tally"]["persons"].as_u64(), Some(PERSONS));

    // Again, in the other mode (so that each mode re-runs in one of the two
    // tests): every command is a deduplicated retry.
    let name = "other-mode";
    let (out, report) = remote(&server, seed, PERSONS, !import, work.path(), name);
    success(&out);
    assert_eq!(report["appended_events"], 0, "{name}: {report}");
    assert_eq!(report["deduplicated_commands"].as_u64(), Some(commands), "{name}");
    assert_eq!(
        report["last_seq"].as_u64(),
        Some(genesis_events() + events),
        "{name}"
    );
    assert_eq!(report["statistics"]["matched"], true, "{name}");

    // A run of another seed on the same server: the statistics now hold
    // more than that run's tally, and the command says so and fails.
    let (out, report) = remote(&server, seed + 1000, 30, import, work.path(), "other-seed");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("statistics DIFFER"), "{stdout}");
    assert!(
        stdout.contains(&format!("persons: statistics {}, tally 30", PERSONS + 30)),
        "{stdout}"
    );
    assert_eq!(report["statistics"]["matched"], false);
    assert_eq!(report["clean"], false);
    let other_events = report["appended_events"].as_u64().unwrap();
    assert!(other_events > 0);

    rt.block_on(personal_data_is_the_plans(&server, seed));

    // The log holds exactly what the direct mode wrote, case by case.
    let data_dir = server.data_dir.clone();
    let _tmp = rt.block_on(server.stop());
    let remote_store = open_store(&data_dir);
    let direct_store = open_store(&direct_dir.path().join("data"));
    // Besides the caseloads, the remote log holds only the access events of
    // the personal-data reads made above.
    let mut access_events = 0u64;
    let mut from = 1;
    loop {
        let page = remote_store.read_all(from, 10_000).unwrap();
        let Some(last) = page.last() else { break };
        from = last.record.seq + 1;
        access_events += page
            .iter()
            .filter(|e| e.record.event_type == registry::cases::ACCESS_EVENT_TYPE)
            .count() as u64;
    }
    assert!(access_events > 0, "the reads above were recorded");
    assert_eq!(
        remote_store.head().unwrap().seq,
        genesis_events() + events + other_events + access_events
    );
    assert_eq!(direct_store.head().unwrap().seq, genesis_events() + events);
    let (a, b) = (cases(&remote_store, seed), cases(&direct_store, seed));
    assert_eq!(a.iter().map(Vec::len).sum::<usize>() as u64, events);
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert_eq!(a, b, "person {i}");
    }
}

#[test]
fn single_rpcs_write_the_direct_modes_caseload_and_reruns_append_nothing() {
    same_caseload_as_the_direct_mode(5, false);
}

#[test]
fn import_streams_write_the_direct_modes_caseload_and_reruns_append_nothing() {
    same_caseload_as_the_direct_mode(6, true);
}
