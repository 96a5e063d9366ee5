//! End to end (issue 18): a follower that dies in a running server makes
//! its service say so, and nothing else.
//!
//! The faults are ones a follower really meets, through its own code
//! paths, not a hook: its persisted state disagrees with the log.
//! - Statistics: the projection's checkpoint names a hash that is not the
//!   log's at that position (damaged, or a projection of another log). The
//!   checkpoint is at the head, so the projection loads; the follower meets
//!   the damage when it applies the next event (its prev_hash does not
//!   link to the checkpoint) and stops.
//! - Worklists: the persisted facts of one case are damaged. The follower
//!   reads a case's facts only when an event of that case arrives, so it
//!   catches up and serves, and stops at the next command on that case.
//!
//! Then, in the running server: the service's health is NOT_SERVING and its
//! RPCs refuse to answer (Statistics UNAVAILABLE, Worklists INTERNAL: both
//! name the stop, no stale answer), while liveness, Caseworker and the
//! other follower's service stay SERVING and commands and reads still work.
//! (A follower thread that panics is reported the same way: unit tests in
//! src/projection/engine.rs.)

mod common;
mod worklist_support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use registry::api::pb;
use registry::api::pb::statistics_client::StatisticsClient;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use worklist_support::{request, wait_for, worklists, Kind};

const CASES: &str = "regularization.v1.Caseworker";
const STATS: &str = "regularization.v1.Statistics";
const LISTS: &str = "regularization.v1.Worklists";

/// Waits (at most 20 s) until `service`'s health is `wanted`.
async fn health_becomes(server: &TestServer, service: &str, wanted: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = server.health(service).await;
        if now == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service} health stayed {now:?}, not {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn statistics(server: &TestServer) -> StatisticsClient<registry::client::AuthChannel> {
    let channel = registry::client::connect(&server.options("statistician"), Duration::from_secs(10))
        .await
        .unwrap();
    StatisticsClient::new(channel)
}

fn caseload_by_status() -> pb::CaseloadRequest {
    pb::CaseloadRequest {
        by: vec!["status".into()],
        ..Default::default()
    }
}

/// Rewrites one value of a stopped store's tree `tree` with `damage`.
fn damage(data_dir: &Path, tree: &str, key: &[u8], damage: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let store = open_store(data_dir);
    let t = store.db().open_tree(tree).unwrap();
    let mut value = t
        .get(key)
        .unwrap()
        .unwrap_or_else(|| panic!("no {key:?} in {tree}"))
        .to_vec();
    let before = value.clone();
    damage(&mut value);
    assert_ne!(value, before);
    t.insert(key, value).unwrap();
    t.flush().unwrap();
    before
}

/// The head seq of a stopped store.
fn head(data_dir: &Path) -> u64 {
    open_store(data_dir).head().unwrap().seq
}

/// Everything else still works while one follower is dead.
async fn everything_else_serves(server: &TestServer, c: &mut Client, other: &str, cedula: &str) {
    assert_eq!(server.health("").await, ServingStatus::Serving, "liveness");
    assert_eq!(server.health(CASES).await, ServingStatus::Serving, "readiness");
    assert_eq!(server.health(other).await, ServingStatus::Serving, "{other}");
    let t = register(c, "OTRA", cedula, "2022-03-01").await;
    assert_eq!(get_case(c, &t.case_id).await.version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statistics_follower_that_stops_in_a_running_server_makes_statistics_not_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start_on(&data).await;
    let mut c = server.client().await;
    let mut t = register(&mut c, "ANA", "V61000001", "2022-03-01").await;
    t.pre_register(&mut c, "2022-03-02").await;
    server.statistics_serving().await;
    drop(c);
    server.stop().await;

    // The projection was persisted at the head when the server stopped.
    let key = b"m:checkpoint";
    let checkpoint = damage(&data, registry::projection::TREE, key, |v| v[8] ^= 0x01);
    assert_eq!(
        u64::from_be_bytes(checkpoint[..8].try_into().unwrap()),
        head(&data),
        "the statistics checkpoint is at the head"
    );

    let server = TestServer::start_on(&data).await;
    let mut c = server.client().await;
    let mut s = statistics(&server).await;
    // Loaded: nothing to apply yet, so the damage is not met yet.
    server.statistics_serving().await;
    s.caseload(caseload_by_status())
        .await
        .expect("serving before the fault");

    // The next event: the follower finds it does not link to its checkpoint, and stops.
    t.schedule(&mut c, "2022-03-03", "2022-03-10").await;
    health_becomes(&server, STATS, ServingStatus::NotServing).await;
    let refused = s.caseload(caseload_by_status()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{}", refused.message());
    assert!(
        refused.message().contains("stopped following the log") && refused.message().contains("chain broken"),
        "{}",
        refused.message()
    );
    let refused = s
        .series(pb::SeriesRequest {
            metric: "REGISTRATIONS".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{}", refused.message());

    everything_else_serves(&server, &mut c, LISTS, "V61000002").await;
    t.capture(&mut c, "2022-03-10").await;
    // Stopped for good: more events do not bring it back.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.health(STATS).await, ServingStatus::NotServing);
    drop((c, s));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worklist_follower_that_stops_in_a_running_server_makes_worklists_not_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start_on(&data).await;
    let mut c = server.client().await;
    let mut t = register(&mut c, "BEA", "V62000001", "2022-03-01").await;
    t.pre_register(&mut c, "2022-03-02").await;
    t.schedule(&mut c, "2022-03-03", "2022-03-10").await;
    let mut w = worklists(&server).await;
    wait_for(&mut w, t.last_seq).await;
    drop((c, w));
    server.stop().await;

    // The persisted facts of case `t`, cut short by a byte.
    let key = registry::worklist::index::facts_key(registry::projection::state::case_key(&t.case_id));
    damage(&data, registry::worklist::TREE, &key, |v| {
        v.pop();
    });

    let server = TestServer::start_on(&data).await;
    let mut c = server.client().await;
    let mut w = worklists(&server).await;
    // Caught up (no event of that case to apply): serving.
    let appointments = request(Kind::Appointments, "2022-03-10");
    let listed = worklist_support::call(&mut w, "supervisor", &appointments)
        .await
        .expect("serving before the fault");
    assert!(listed.items.iter().any(|i| i.case_id == t.case_id));
    health_becomes(&server, LISTS, ServingStatus::Serving).await;

    // The next event of that case: its facts do not decode, the follower stops.
    t.capture(&mut c, "2022-03-10").await;
    health_becomes(&server, LISTS, ServingStatus::NotServing).await;
    let refused = w
        .list_worklist(as_role("supervisor", appointments.clone()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Internal, "{}", refused.message());
    assert!(
        refused.message().contains("worklist projection stopped")
            && refused.message().contains("worklist facts"),
        "{}",
        refused.message()
    );

    everything_else_serves(&server, &mut c, STATS, "V62000002").await;
    t.approve(&mut c, "2022-04-01").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.health(LISTS).await, ServingStatus::NotServing);
    drop((c, w));
    server.stop().await;
}
