//! The statistics projection on real sled stores written by `registry
//! simulate`: its counts equal the generator's tally; incremental
//! application with restarts equals a rebuild and a replay; a restart in the
//! middle of catching up loses and double-counts nothing; a gap in the log
//! is an error naming the seq; point-in-time answers equal an independent
//! replay with the domain's own fold.

#[path = "support/chunks.rs"]
mod chunks;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use registry::codec;
use registry::domain::{person_status, CaseState, Date, Event};
use registry::log::Store;
use registry::projection::{
    caseload, certifications, replay, AsOf, CaseloadQuery, Dim, Engine, Filter, SuppressionRules,
};
use registry::simulate::{self, SimulateOptions, Tally, TODAY};

const PERSONS: u64 = 3_000;
const SEED: u64 = 7;

struct Simulated {
    dir: tempfile::TempDir,
    tally: Tally,
}

fn simulated() -> &'static Simulated {
    static S: OnceLock<Simulated> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let report = simulate::run(&SimulateOptions::new(PERSONS, SEED, dir.path())).unwrap();
        assert_eq!(report.tally.rejected, 0, "{:?}", report.rejections);
        // Let sled release its lock before copies are taken.
        std::thread::sleep(Duration::from_millis(300));
        Simulated {
            dir,
            tally: report.tally,
        }
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A private copy of the simulated store.
fn store_copy() -> (tempfile::TempDir, Store) {
    let s = simulated();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(s.dir.path(), dir.path());
    let store = open_store(dir.path());
    (dir, store)
}

fn open_store(dir: &Path) -> Store {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(dir) {
            Ok(s) => return s,
            Err(e) if e.to_string().contains("lock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("open: {e}"),
        }
    }
}

fn by(
    state: &registry::projection::ProjectionState,
    dims: &[Dim],
    filters: &[&str],
) -> BTreeMap<String, u64> {
    let q = CaseloadQuery {
        by: dims.to_vec(),
        filters: filters.iter().map(|f| Filter::parse(f).unwrap()).collect(),
        published: false,
    };
    let t = caseload(state, &q, &SuppressionRules::default()).unwrap();
    t.rows
        .into_iter()
        .map(|r| (r.values.join("/"), r.count.unwrap()))
        .collect()
}

fn total(state: &registry::projection::ProjectionState, filters: &[&str]) -> u64 {
    let q = CaseloadQuery {
        by: vec![],
        filters: filters.iter().map(|f| Filter::parse(f).unwrap()).collect(),
        published: false,
    };
    caseload(state, &q, &SuppressionRules::default())
        .unwrap()
        .total
        .unwrap()
}

#[test]
fn counts_match_the_generator_tally_exactly() {
    let tally = &simulated().tally;
    let (_dir, store) = store_copy();
    let mut engine = Engine::open(&store, "proj_t_tally", TODAY).unwrap();
    let c = engine.catch_up().unwrap();
    assert_eq!(c.position.seq, store.head().unwrap().seq);
    assert_eq!(c.position.hash, store.head().unwrap().hash);
    let state = engine.state();
    assert_eq!(state.cube_date(), TODAY);
    assert_eq!(total(state, &[]), tally.persons);
    assert_eq!(by(state, &[Dim::Status], &[]), tally.status);
    assert_eq!(by(state, &[Dim::Department], &[]), tally.department);
    assert_eq!(by(state, &[Dim::Sex], &[]), tally.sex);
    assert_eq!(by(state, &[Dim::AgeBand], &[]), tally.age_band);
    assert_eq!(total(state, &["minor=true"]), tally.minors);
    // Status by department (2-D) equals the tally's nested map.
    let mut nested: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (k, n) in by(state, &[Dim::Department, Dim::Status], &[]) {
        let (d, s) = k.split_once('/').unwrap();
        nested.entry(d.into()).or_default().insert(s.into(), n);
    }
    assert_eq!(nested, tally.status_by_department);
    let rules = SuppressionRules::default();
    let flat = |p: registry::projection::Points| -> BTreeMap<String, u64> {
        p.points
            .into_iter()
            .map(|p| (p.label, p.count.unwrap()))
            .collect()
    };
    assert_eq!(
        flat(certifications(state, false, true, false, false, &rules)),
        tally.certifications_by_sector
    );
    assert_eq!(
        flat(certifications(state, true, false, false, false, &rules)),
        tally.certifications_by_route
    );
    assert_eq!(
        flat(certifications(state, false, false, true, false, &rules)),
        tally.certifications_by_stage
    );
    // Monthly series add up to the events of their type.
    let ev = |t: &str| tally.events_by_type.get(t).copied().unwrap_or(0);
    let sum = |m: registry::projection::Metric| state.series(m).map(|(_, n)| n).sum::<u64>();
    use registry::projection::Metric;
    assert_eq!(sum(Metric::PreRegistrations), ev("PreRegistered"));
    assert_eq!(sum(Metric::PermitsIssued), ev("PermitIssued"));
    assert_eq!(sum(Metric::BiometricCaptures), ev("BiometricsCaptured"));
    assert_eq!(sum(Metric::DecisionsDenied), ev("Denied"));
    assert_eq!(sum(Metric::CardsDelivered), ev("CardDelivered"));
    assert_eq!(sum(Metric::Cancellations), ev("PermitCancelled"));
    assert_eq!(sum(Metric::Erasures), ev("PersonErased"));
    // Funnel is monotone.
    let f = state.funnel();
    for w in f.windows(2) {
        assert!(w[0].1 >= w[1].1, "{f:?}");
    }
    // Shares against DOMAIN.md (Feb 2024 table) within 3 percentage points.
    let share = |s: &str| *tally.status.get(s).unwrap_or(&0) as f64 * 100.0 / tally.persons as f64;
    for (s, expected) in [("REGULAR_PPT", 67.7), ("IN_PROCESS", 12.6), ("IRREGULAR", 17.1)] {
        assert!(
            (share(s) - expected).abs() < 3.0,
            "{s}: {} vs {expected}",
            share(s)
        );
    }
}

/// Everything a state answers, at `TODAY`.
fn summary_at_today(
    state: &registry::projection::ProjectionState,
) -> registry::projection::state::StateSummary {
    let mut s = state.clone();
    s.set_cube_date(TODAY);
    s.summary()
}

static TREE_N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn shared_store() -> &'static Store {
    static S: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    &S.get_or_init(store_copy).1
}

fn rebuilt_summary() -> &'static registry::projection::state::StateSummary {
    static S: OnceLock<registry::projection::state::StateSummary> = OnceLock::new();
    S.get_or_init(|| {
        let store = shared_store();
        let mut e = Engine::open(store, "proj_t_rebuild", TODAY).unwrap();
        e.catch_up().unwrap();
        summary_at_today(e.state())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Incremental application in random chunks, with a restart (reopen from
    /// the persisted checkpoint) after every chunk, equals a rebuild; and at
    /// every chunk boundary equals an in-memory replay up to that seq.
    #[test]
    fn incremental_with_restarts_equals_rebuild_and_replay(
        cuts in prop::collection::vec(0.0f64..1.0, 1..4),
        batch in 1usize..5000,
    ) {
        let store = shared_store();
        let head = store.head().unwrap().seq;
        let tree = format!("proj_t_inc{}", TREE_N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut bounds: Vec<u64> = cuts.iter().map(|c| (c * head as f64) as u64).collect();
        bounds.sort();
        bounds.push(head);
        for (i, b) in bounds.iter().enumerate() {
            let mut e = Engine::open(store, &tree, TODAY).unwrap();
            e.catch_up_limited(Some(*b), batch, None).unwrap();
            prop_assert_eq!(e.state().position().seq, *b);
            if i == 0 {
                let r = replay(store, AsOf::Seq(*b, Some(TODAY))).unwrap();
                prop_assert!(summary_at_today(e.state()) == summary_at_today(&r), "differs from replay at {}", b);
            }
            drop(e);
        }
        let e = Engine::open(store, &tree, TODAY).unwrap();
        prop_assert!(&summary_at_today(e.state()) == rebuilt_summary());
    }
}

#[test]
fn restart_in_the_middle_of_catching_up_loses_and_double_counts_nothing() {
    let store = shared_store();
    // Stop after two persisted batches.
    let mut e = Engine::open(store, "proj_t_restart", TODAY).unwrap();
    let c = e.catch_up_limited(None, 1000, Some(2)).unwrap();
    assert_eq!(c.position.seq, 2000);
    // Apply more events in memory without persisting them (a crash before
    // the batch is written), then "crash".
    let page = store.read_all(2001, 500).unwrap();
    for ev in &page {
        e.state_mut().apply_stored(ev).unwrap();
    }
    assert_eq!(e.state().position().seq, 2500);
    drop(e);
    let mut e = Engine::open(store, "proj_t_restart", TODAY).unwrap();
    assert_eq!(
        e.state().position().seq,
        2000,
        "resumes at the durable checkpoint"
    );
    e.catch_up().unwrap();
    assert!(&summary_at_today(e.state()) == rebuilt_summary());
}

#[test]
fn a_gap_in_the_log_is_an_error_naming_the_seq() {
    let s = simulated();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(s.dir.path(), dir.path());
    let missing: u64 = 1234;
    {
        let db = registry::log::store::sled_config(dir.path()).open().unwrap();
        // Taken out of its chunk; the records around it keep their seqs.
        assert!(chunks::entry(&db, missing).len() > 64, "seq {missing} is stored");
        chunks::remove_entries(&db, |seq| seq == missing);
        db.flush().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let store = open_store(dir.path());
    let mut e = Engine::open(&store, "proj_t_gap", TODAY).unwrap();
    let err = e.catch_up().unwrap_err().to_string();
    assert!(err.contains(&format!("seq {missing} is missing")), "{err}");
    assert!(err.contains("gap"), "{err}");
    // It stopped right before the gap, durably.
    drop(e);
    let e = Engine::open(&store, "proj_t_gap", TODAY).unwrap();
    assert!(e.state().position().seq < missing);
    assert!(
        e.state().position().seq >= missing.saturating_sub(registry::limits::PROJECTION_BATCH_EVENTS as u64)
    );
    let err = replay(&store, AsOf::Date(TODAY)).unwrap_err().to_string();
    assert!(err.contains(&format!("seq {missing} is missing")), "{err}");
    // A missing last event (nothing after it) is a gap too: on a fresh copy.
    let head = store.head().unwrap().seq;
    drop(e);
    drop(store);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(s.dir.path(), dir.path());
    {
        let db = registry::log::store::sled_config(dir.path()).open().unwrap();
        chunks::remove_entries(&db, |seq| seq == head);
        db.flush().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let store = open_store(dir.path());
    assert_eq!(store.head().unwrap().seq, head, "the head key still names it");
    let err = replay(&store, AsOf::Seq(head, None)).unwrap_err().to_string();
    assert!(err.contains("gap"), "{err}");
    assert!(err.contains(&format!("seq {head} is missing")), "{err}");
    assert!(replay(&store, AsOf::Seq(head - 1, None)).is_ok());
}

#[test]
fn point_in_time_equals_an_independent_replay_with_the_domain() {
    let store = shared_store();
    for d in [
        Date::new(2022, 3, 16).unwrap(),
        Date::new(2023, 12, 31).unwrap(),
        Date::new(2025, 6, 30).unwrap(),
    ] {
        let state = replay(store, AsOf::Date(d)).unwrap();
        assert_eq!(state.position().seq, store.head().unwrap().seq);
        // Independent: fold each case's events with business date <= d.
        let mut cases: HashMap<String, CaseState> = HashMap::new();
        let mut from = 1;
        loop {
            let page = store.read_all(from, 10_000).unwrap();
            if page.is_empty() {
                break;
            }
            for ev in &page {
                if codec::is_policy_event(&ev.record.event_type) {
                    continue;
                }
                let event: Event = codec::decode(&ev.record.event_type, &ev.record.payload).unwrap();
                if event.on() <= d {
                    cases
                        .entry(ev.record.stream_id.clone())
                        .or_default()
                        .apply(&event);
                }
            }
            from = page.last().unwrap().record.seq + 1;
        }
        let mut status: BTreeMap<String, u64> = BTreeMap::new();
        let mut dept_band: BTreeMap<String, u64> = BTreeMap::new();
        for c in cases.values().filter(|c| c.exists()) {
            *status.entry(person_status(c, d).as_str().into()).or_default() += 1;
            let p = c.person().unwrap();
            *dept_band
                .entry(format!("{}/{}", p.department, p.age_band_on(d).as_str()))
                .or_default() += 1;
        }
        assert_eq!(by(&state, &[Dim::Status], &[]), status, "on {d}");
        assert_eq!(
            by(&state, &[Dim::Department, Dim::AgeBand], &[]),
            dept_band,
            "on {d}"
        );
    }
}

/// A copy of the simulated store, opened as a running log (writer and head watch).
fn log_copy() -> (tempfile::TempDir, registry::log::Log) {
    let (dir, store) = store_copy();
    drop(store);
    std::thread::sleep(Duration::from_millis(200));
    let log = registry::log::Log::open(
        dir.path(),
        registry::log::WriterConfig {
            sync: registry::log::SyncMode::Flush,
        },
    )
    .unwrap();
    (dir, log)
}

#[test]
fn the_follower_catches_up_and_every_answer_names_its_position() {
    let (_dir, log) = log_copy();
    let head = log.store().head().unwrap();
    let engine = Engine::open(log.store(), "proj_t_follow", TODAY).unwrap();
    let shared = Arc::new(RwLock::new(engine));
    let follower =
        registry::projection::Follower::spawn(shared.clone(), log.subscribe_head(), false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.read().unwrap().state().position().seq < head.seq {
        assert!(Instant::now() < deadline, "follower too slow");
        assert!(follower.error().is_none(), "{:?}", follower.error());
        std::thread::sleep(Duration::from_millis(20));
    }
    let q = CaseloadQuery {
        by: vec![Dim::Status],
        ..Default::default()
    };
    let t = caseload(shared.read().unwrap().state(), &q, &SuppressionRules::default()).unwrap();
    assert_eq!(t.seq, head.seq);
    assert_eq!(t.hash, registry::hex::encode(&head.hash));
    follower.stop();
    // The follower persists at most every 500 ms while following, and what
    // it applied since at its stop: a reopened projection starts at the head.
    let reopened = Engine::open(log.store(), "proj_t_follow", TODAY).unwrap();
    assert_eq!(reopened.state().position().seq, head.seq);
    assert!(&summary_at_today(reopened.state()) == rebuilt_summary());
    drop(reopened);
    drop(shared);
    log.shutdown().unwrap();
}

#[test]
fn a_loading_follower_publishes_the_projection_only_once_caught_up_and_gives_up_quietly_when_stopped() {
    use registry::projection::{Follower, ProjectionSlot, SlotState};
    let (_dir, log) = log_copy();
    let head = log.store().head().unwrap();
    // A projection persisted halfway: the loader reads its facts, then applies the rest.
    {
        let mut e = Engine::open(log.store(), "proj_t_load", TODAY).unwrap();
        e.catch_up_limited(Some(head.seq / 2), 10_000, None).unwrap();
        assert_eq!(e.state().position().seq, head.seq / 2);
    }
    let slot = Arc::new(ProjectionSlot::default());
    let follower = Follower::spawn_loading(
        log.store().clone(),
        "proj_t_load",
        slot.clone(),
        log.subscribe_head(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match slot.state() {
            SlotState::Loading => {
                assert!(Instant::now() < deadline, "loading too slow");
                std::thread::sleep(Duration::from_millis(5));
            }
            SlotState::Failed(e) | SlotState::Stopped(e) => panic!("loading failed: {e}"),
            SlotState::Ready(shared) => {
                // Published only at the head it saw when it started, never halfway.
                let e = shared.read().unwrap();
                assert_eq!(e.state().position().seq, head.seq);
                assert!(&summary_at_today(e.state()) == rebuilt_summary());
                break;
            }
        }
    }
    assert!(follower.error().is_none());
    follower.stop();

    // Stopped at once: it either finished first or gave up, and never reports a failure.
    let slot = Arc::new(ProjectionSlot::default());
    let follower = Follower::spawn_loading(
        log.store().clone(),
        "proj_t_load_2",
        slot.clone(),
        log.subscribe_head(),
    )
    .unwrap();
    follower.stop();
    assert!(!matches!(slot.state(), SlotState::Failed(_)));
    log.shutdown().unwrap();
}

#[test]
fn a_dated_breakdown_from_the_cube_alone_equals_the_whole_state_moved_to_that_date() {
    let store = shared_store();
    let mut e = Engine::open(store, "proj_t_cube_only", TODAY).unwrap();
    e.catch_up().unwrap();
    for d in ["2021-06-30", "2023-01-01", "2024-07-15", "2025-12-31"] {
        let d = Date::parse(d).unwrap();
        let light = e.state().cube_only_at(d);
        let mut moved = e.state().clone();
        moved.set_cube_date(d);
        assert_eq!(light.cube_date(), d);
        assert_eq!(light.position(), moved.position());
        for dims in [
            vec![Dim::Status],
            vec![Dim::Department, Dim::AgeBand],
            vec![Dim::Channel, Dim::PermitType, Dim::Minor],
            vec![Dim::Municipality, Dim::Sex],
        ] {
            assert_eq!(by(&light, &dims, &[]), by(&moved, &dims, &[]), "{dims:?} on {d}");
        }
        assert_eq!(
            by(&light, &[Dim::Status], &["channel=NONE"]),
            by(&moved, &[Dim::Status], &["channel=NONE"]),
            "on {d}"
        );
    }
}

/// The facts load reads the case-key space in slices on several threads:
/// a case at every first key byte, including both ends and every slice
/// boundary, is loaded exactly once.
#[test]
fn loading_reads_every_slice_of_the_case_key_space_once() {
    let store = shared_store();
    let tree = store.db().open_tree("proj_t_slices").unwrap();
    let facts = registry::projection::CaseFacts::default().encode();
    for first in 0..=255u8 {
        for last in [0u8, 0xff] {
            let mut key = [last; 17];
            key[0] = b'c';
            key[1] = first;
            tree.insert(key, &facts[..]).unwrap();
        }
    }
    // Not case facts: other prefixes around 'c' are not loaded as cases.
    tree.insert(b"b-not-a-case", &b"x"[..]).unwrap();
    tree.insert(b"d-not-a-case", &b"x"[..]).unwrap();
    let e = Engine::open(store, "proj_t_slices", TODAY).unwrap();
    assert_eq!(e.state().cases(), 512);
}

#[test]
fn a_corrupt_fact_in_any_slice_fails_the_load_naming_it() {
    let store = shared_store();
    let tree = store.db().open_tree("proj_t_slices_corrupt").unwrap();
    let facts = registry::projection::CaseFacts::default().encode();
    for first in 0..=255u8 {
        let mut key = [7u8; 17];
        key[0] = b'c';
        key[1] = first;
        tree.insert(key, &facts[..]).unwrap();
    }
    let mut bad = [7u8; 17];
    bad[0] = b'c';
    bad[1] = 0xfe;
    tree.insert(bad, &b"short"[..]).unwrap();
    let err = Engine::open(store, "proj_t_slices_corrupt", TODAY)
        .err()
        .expect("a corrupt fact fails the load");
    assert!(err.to_string().contains("case facts"), "{err}");
}

/// Events appended right before the follower stops are applied and
/// persisted at the stop, so the next start re-applies nothing.
#[test]
fn a_stopping_follower_applies_and_persists_up_to_the_head() {
    use registry::log::{Actor, AppendRequest, ExpectedVersion, NewEvent};
    let (_dir, log) = log_copy();
    let head = log.store().head().unwrap();
    let mut engine = Engine::open(log.store(), "proj_t_stop", TODAY).unwrap();
    engine.catch_up().unwrap();
    assert_eq!(engine.state().position().seq, head.seq);
    let shared = Arc::new(RwLock::new(engine));
    let follower =
        registry::projection::Follower::spawn(shared.clone(), log.subscribe_head(), false).unwrap();
    let record = registry::cases::AccessRecord {
        case_id: "C-00000000000000000000".into(),
        operation: "GetCase",
        purpose: "TEST".into(),
        role: "caseworker".into(),
        credential: "test".into(),
    };
    let mut last = head.seq;
    for i in 0..50 {
        last = log
            .appender()
            .append_blocking(AppendRequest {
                stream_id: "access:C-00000000000000000000".into(),
                expected: ExpectedVersion::Any,
                request_id: format!("stop-test-{i}"),
                actor: Actor {
                    user_id: "test".into(),
                    office: "TEST".into(),
                },
                events: vec![NewEvent {
                    event_type: registry::cases::ACCESS_EVENT_TYPE.into(),
                    payload: codec::encode_access(&record),
                }],
            })
            .unwrap()
            .last_seq;
    }
    follower.stop();
    assert!(last > head.seq);
    let reopened = Engine::open(log.store(), "proj_t_stop", TODAY).unwrap();
    assert_eq!(reopened.state().position().seq, last);
    drop(reopened);
    drop(shared);
    log.shutdown().unwrap();
}

/// Month-end snapshots: kept up to date event by event (the simulated log is
/// written person by person, so most events are dated before month-ends
/// already snapshotted), persisted with the checkpoint and reloaded after a
/// restart, they answer "as of month-end D" exactly as a replay of the whole
/// log to D does.
#[test]
fn month_end_snapshots_equal_a_replay_to_that_date_across_restarts() {
    use registry::projection::state::{month_end, month_index};
    let store = shared_store();
    let head = store.head().unwrap().seq;
    for b in [head / 3, head * 2 / 3, head] {
        let mut e = Engine::open(store, "proj_t_snap", TODAY).unwrap();
        e.catch_up_limited(Some(b), 997, None).unwrap();
        drop(e);
    }
    let e = Engine::open(store, "proj_t_snap", TODAY).unwrap();
    assert_eq!(e.state().position().seq, head);
    let max_on = e.state().max_on().unwrap();
    let months: Vec<u32> = e.state().snapshot_months().collect();
    let (first, last) = (months[0], *months.last().unwrap());
    assert_eq!(
        months,
        (first..=last).collect::<Vec<_>>(),
        "one per month, none missing"
    );
    assert_eq!(
        last + 1,
        month_index(max_on),
        "up to the month before the latest date"
    );
    // The snapshots agree with a replay on both sides of a restart: compare a
    // spread of months, the first, the last, and one before any event.
    let mut sample: Vec<u32> = (first..=last).step_by(7).collect();
    sample.extend([last, first - 1]);
    for m in sample {
        let d = month_end(m);
        let snap = e
            .state()
            .month_end_state(d)
            .expect("a snapshot answers a past month-end");
        let replayed = replay(store, AsOf::Date(d)).unwrap();
        assert_eq!(snap.cube_date(), d);
        for dims in [
            vec![Dim::Status],
            vec![Dim::Department, Dim::AgeBand],
            vec![Dim::Channel, Dim::PermitType, Dim::Minor],
            vec![Dim::Municipality, Dim::Sex],
        ] {
            assert_eq!(
                by(&snap, &dims, &[]),
                by(&replayed, &dims, &[]),
                "{dims:?} on {d}"
            );
        }
        assert_eq!(total(&snap, &[]), total(&replayed, &[]), "total on {d}");
    }
    // Not a month-end, or a date the facts answer: no snapshot.
    assert!(e
        .state()
        .month_end_state(month_end(first + 3).add_days(-1))
        .is_none());
    assert!(e.state().month_end_state(max_on).is_none());
    // The same as a projection built in one go.
    let mut fresh = Engine::open(store, "proj_t_snap_one_go", TODAY).unwrap();
    fresh.catch_up().unwrap();
    for m in [first, (first + last) / 2, last] {
        let d = month_end(m);
        let a = e.state().month_end_state(d).unwrap();
        let b = fresh.state().month_end_state(d).unwrap();
        assert_eq!(
            by(&a, &[Dim::Municipality, Dim::Status], &[]),
            by(&b, &[Dim::Municipality, Dim::Status], &[])
        );
    }
}

/// A projection persisted in the previous format (version 1, no month-end
/// snapshots) is rebuilt from the log when opened, snapshots included.
#[test]
fn a_projection_of_the_previous_format_is_rebuilt_from_the_log_when_opened() {
    let store = shared_store();
    let mut e = Engine::open(store, "proj_t_v1", TODAY).unwrap();
    e.catch_up_limited(Some(1000), 1000, None).unwrap();
    drop(e);
    let tree = store.db().open_tree("proj_t_v1").unwrap();
    tree.insert(b"m:version", &[1u8][..]).unwrap();
    drop(tree);
    let e = Engine::open(store, "proj_t_v1", TODAY).unwrap();
    assert_eq!(e.state().position().seq, 0, "dropped, to be rebuilt from the log");
    assert_eq!(e.state().cases(), 0);
    drop(e);
    let mut e = Engine::open(store, "proj_t_v1", TODAY).unwrap();
    e.catch_up().unwrap();
    assert!(e.state().snapshot_months().count() > 12);
    assert!(&summary_at_today(e.state()) == rebuilt_summary());
}
