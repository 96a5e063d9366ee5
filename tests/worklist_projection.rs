//! The worklist projection as a follower of the log: applied in small steps
//! with restarts it equals a rebuild, and both equal the domain's own fold
//! of every case; a server restart keeps it (checkpoint), it catches up on
//! events appended while it was down, and a rebuild answers the same; a
//! broken link or a checkpoint past the head stops it, naming the seq.

mod common;
mod worklist_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{open_store, TestServer, MASTER_KEY_HEX};
use registry::domain::{CaseState, ChannelCatalog, Date, Event, Stage};
use registry::log::Store;
use registry::projection::ProjectionError;
use registry::simulate::{self, SimulateOptions};
use registry::worklist::index::{decode_item, Item, TREE};
use registry::worklist::{Kind, Worklists};

/// Every key and value of the worklists' tree.
fn snapshot(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let tree = store.db().open_tree(TREE).unwrap();
    tree.iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// Every index entry, decoded.
fn items(store: &Store) -> Vec<Item> {
    snapshot(store)
        .iter()
        .filter(|(k, _)| k.first() == Some(&b'i'))
        .map(|(k, v)| decode_item(k, v).expect("an index entry decodes"))
        .collect()
}

fn simulate_into(dir: &Path, persons: u64, seed: u64, key_file: Option<&Path>) {
    let mut opts = SimulateOptions::new(persons, seed, dir);
    opts.master_key_file = key_file.map(Path::to_path_buf);
    let report = simulate::run(&opts).unwrap();
    assert_eq!(report.tally.rejected, 0, "{:?}", report.rejections);
    std::thread::sleep(Duration::from_millis(300));
}

/// The (list, date, due, stage) entries the domain's own fold of each case
/// says it holds, for the lists whose dates the domain state keeps.
fn expected_from_domain(store: &Store) -> BTreeMap<(String, u8), (Date, Option<Date>, Stage)> {
    let catalog = ChannelCatalog::builtin();
    let mut streams: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    let mut from = 1;
    loop {
        let page = store.read_all(from, 10_000).unwrap();
        let Some(last) = page.last() else { break };
        from = last.record.seq + 1;
        for ev in page {
            let r = ev.record;
            if r.event_type == registry::cases::ACCESS_EVENT_TYPE
                || registry::codec::is_policy_event(&r.event_type)
            {
                continue;
            }
            let event = registry::codec::decode(&r.event_type, &r.payload).unwrap();
            streams.entry(r.stream_id).or_default().push(event);
        }
    }
    let mut out = BTreeMap::new();
    for (id, events) in streams {
        let s = CaseState::from_events(&events);
        if !s.exists() || s.exit().is_some() || s.is_erased() {
            continue;
        }
        let stage = s.stage();
        let app = s.application();
        let mut put = |kind: Kind, date: Option<Date>, due: Option<Date>| {
            if let Some(date) = date {
                out.insert((id.clone(), kind as u8), (date, due, stage));
            }
        };
        match stage {
            Stage::BiometricsScheduled => put(Kind::Appointments, app.and_then(|a| a.appointment_on), None),
            Stage::UnderReview | Stage::InformationRequired => {
                let due = s.decision_due(&catalog);
                put(Kind::AwaitingDecision, app.and_then(|a| a.biometrics_on), due);
                put(Kind::DecisionOverdue, due, due);
            }
            Stage::Denied => {
                let until = app.and_then(|a| a.denial).map(|d| d.appeal_until);
                put(Kind::AppealableDenials, until, until);
            }
            Stage::CardPrinted => {
                let printed = s.permit().and_then(|p| p.last_printed_on);
                let due = printed.map(|d| d.add_days(90));
                put(Kind::CardsAwaitingDelivery, printed, due);
                put(Kind::CardsNearAbandonment, due, due);
            }
            _ => {}
        }
        if stage.is_in(&Stage::PERMIT_HELD) {
            let until = s.permit().map(|p| p.valid_until);
            put(Kind::PermitsExpiring, until, until);
        }
    }
    out
}

#[test]
fn steps_with_restarts_equal_a_rebuild_and_the_domain_fold() {
    let dir = tempfile::tempdir().unwrap();
    simulate_into(dir.path(), 2_000, 7, None);
    let store = open_store(dir.path());
    let head = store.head().unwrap().seq;
    assert!(head > 10_000, "a caseload of some size: {head} events");

    // Small steps, reopening the projection (a restart) every few steps.
    let mut steps = 0;
    loop {
        let w = Worklists::open(&store).unwrap();
        let mut applied = 0;
        for _ in 0..3 {
            applied += w.step(997, None).unwrap();
            steps += 1;
        }
        if applied == 0 {
            assert_eq!(w.position().seq, head);
            break;
        }
    }
    assert!(steps as u64 >= head / 997, "{steps} steps");
    let incremental = snapshot(&store);

    let c = registry::worklist::rebuild_store(&store, &mut |_| {}).unwrap();
    assert_eq!(c.events, head);
    assert_eq!(c.position.seq, head);
    assert_eq!(
        snapshot(&store),
        incremental,
        "a rebuild equals the incremental projection"
    );

    // The lists whose dates the domain state keeps equal its fold.
    let expected = expected_from_domain(&store);
    let checked: BTreeMap<(String, u8), (Date, Option<Date>, Stage)> = items(&store)
        .into_iter()
        .filter(|i| {
            matches!(
                i.kind,
                Kind::Appointments
                    | Kind::AwaitingDecision
                    | Kind::DecisionOverdue
                    | Kind::AppealableDenials
                    | Kind::CardsAwaitingDelivery
                    | Kind::CardsNearAbandonment
                    | Kind::PermitsExpiring
            )
        })
        .map(|i| ((i.case_id, i.kind as u8), (i.date, i.due_on, i.stage)))
        .collect();
    assert_eq!(checked.len(), expected.len());
    assert_eq!(checked, expected);
    for kind in [
        Kind::Appointments,
        Kind::AwaitingDecision,
        Kind::CardsAwaitingDelivery,
        Kind::PermitsExpiring,
    ] {
        assert!(
            expected.keys().any(|(_, k)| *k == kind as u8),
            "the caseload puts someone on {kind:?}"
        );
    }
}

#[test]
fn a_broken_link_or_a_checkpoint_past_the_head_stops_the_projection_naming_the_seq() {
    let dir = tempfile::tempdir().unwrap();
    simulate_into(dir.path(), 50, 3, None);
    let store = open_store(dir.path());
    let w = Worklists::open(&store).unwrap();
    assert_eq!(w.step(100, None).unwrap(), 100);
    drop(w);
    let tree = store.db().open_tree(TREE).unwrap();
    let good = tree.get(b"m:checkpoint").unwrap().unwrap().to_vec();

    // The checkpoint names seq 100 with another hash: seq 101 does not link to it.
    let mut bad = good.clone();
    bad[8] ^= 0xff;
    tree.insert(b"m:checkpoint", bad).unwrap();
    let w = Worklists::open(&store).unwrap();
    let e = w.step(100, None).unwrap_err();
    assert!(matches!(e, ProjectionError::Apply(_)), "{e}");
    assert!(e.to_string().contains("chain broken at seq 101"), "{e}");
    assert_eq!(w.position().seq, 100, "nothing applied past the break");

    // A checkpoint past the head: a different log.
    let mut ahead = good.clone();
    ahead[..8].copy_from_slice(&(store.head().unwrap().seq + 5).to_be_bytes());
    tree.insert(b"m:checkpoint", ahead).unwrap();
    let w = Worklists::open(&store).unwrap();
    let e = w.step(100, None).unwrap_err();
    assert!(matches!(e, ProjectionError::Ahead { .. }), "{e}");

    // Restored, it resumes from seq 101.
    tree.insert(b"m:checkpoint", good).unwrap();
    let w = Worklists::open(&store).unwrap();
    assert_eq!(w.step(10, None).unwrap(), 10);
    assert_eq!(w.position().seq, 110);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_projection_which_catches_up_on_events_appended_meanwhile_and_equals_a_rebuild() {
    let references = ["2025-12-31", "2031-05-15"];
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut w = worklist_support::worklists(&server).await;
    let mut t = common::register(&mut c, "CARLA", "V-71000001", "2023-05-01").await;
    t.pre_register(&mut c, "2023-05-02").await;
    t.schedule(&mut c, "2023-05-03", "2023-06-10").await;
    worklist_support::wait_for(&mut w, t.last_seq).await;
    let mut before = Vec::new();
    for r in references {
        before.push(worklist_support::all_lists(&mut w, r).await);
    }
    drop((c, w));
    let data_dir = server.data_dir.clone();
    let tmp = server.stop().await;

    // Stopped: the checkpoint covers the whole log.
    let store = open_store(&data_dir);
    let head = store.head().unwrap().seq;
    let checkpoint = store
        .db()
        .open_tree(TREE)
        .unwrap()
        .get(b"m:checkpoint")
        .unwrap()
        .unwrap();
    assert_eq!(u64::from_be_bytes(checkpoint[..8].try_into().unwrap()), head);
    drop(store);

    // Restarted: the same answers, at the same position.
    let server = TestServer::start_on(&data_dir).await;
    let mut w = worklist_support::worklists(&server).await;
    for (r, b) in references.iter().zip(&before) {
        assert_eq!(
            &worklist_support::all_lists(&mut w, r).await,
            b,
            "after a restart, on {r}"
        );
    }
    let page = worklist_support::call(
        &mut w,
        "supervisor",
        &worklist_support::request(worklist_support::Kind::Appointments, ""),
    )
    .await
    .unwrap();
    assert_eq!(page.position.unwrap().seq, head);
    drop(w);
    server.stop().await;

    // Events appended while no server (and no follower) runs.
    let key_file = tmp.path().join("master.key");
    std::fs::write(&key_file, format!("{MASTER_KEY_HEX}\n")).unwrap();
    simulate_into(&data_dir, 400, 11, Some(&key_file));
    let new_head = open_store(&data_dir).head().unwrap().seq;
    assert!(new_head > head + 1_000);

    // The follower catches up before serving (UNAVAILABLE meanwhile).
    let server = TestServer::start_on(&data_dir).await;
    let mut w = worklist_support::worklists(&server).await;
    let mut caught_up = Vec::new();
    for r in references {
        caught_up.push(worklist_support::all_lists(&mut w, r).await);
    }
    let page = worklist_support::call(
        &mut w,
        "supervisor",
        &worklist_support::request(worklist_support::Kind::Appointments, ""),
    )
    .await
    .unwrap();
    assert_eq!(
        page.position.unwrap().seq,
        new_head,
        "caught up to the head seen at start"
    );
    assert!(
        caught_up
            .iter()
            .map(|l| l.iter().map(|(_, i)| i.len()).sum::<usize>())
            .sum::<usize>()
            > before
                .iter()
                .map(|l| l.iter().map(|(_, i)| i.len()).sum::<usize>())
                .sum::<usize>(),
        "the simulated cases are listed"
    );
    drop(w);
    server.stop().await;

    // A rebuild from the log answers the same.
    let store = open_store(&data_dir);
    registry::worklist::rebuild_store(&store, &mut |_| {}).unwrap();
    drop(store);
    std::thread::sleep(Duration::from_millis(200));
    let server = TestServer::start_on(&data_dir).await;
    let mut w = worklist_support::worklists(&server).await;
    for (r, expected) in references.iter().zip(&caught_up) {
        assert_eq!(
            &worklist_support::all_lists(&mut w, r).await,
            expected,
            "a rebuild, on {r}"
        );
    }
    drop(w);
    server.stop().await;
    drop(tmp);
}
