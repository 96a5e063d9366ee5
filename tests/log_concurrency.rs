//! Concurrent appends through the single writer: optimistic concurrency on one
//! stream, contiguous versions across many streams, idempotent retries and
//! per-request refusals inside one group commit.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use registry::log::verify::{verify_full, ChainReport, IndexReport};
use registry::log::{
    Actor, AppendError, AppendRequest, Appended, Appender, ExpectedVersion, Log, NewEvent, Store,
    StoredEvent, SyncMode, WriterConfig,
};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

#[path = "support/retry.rs"]
mod retry;
use retry::retry_while_locked;

fn open(dir: &Path) -> Log {
    Log::open(
        dir,
        WriterConfig {
            sync: SyncMode::Fdatasync,
        },
    )
    .expect("open log")
}

/// `verify_full` of the stopped store. While a log is open, its case-file
/// follower writes case files and their position at any moment, and
/// `verify_full` (for stopped stores) does not read the two consistently.
fn verify_stopped(log: Log, dir: &Path) -> (ChainReport, IndexReport) {
    log.shutdown().unwrap();
    let store = retry_while_locked(|| Store::open(dir)).unwrap();
    verify_full(&store, &mut |_, _| {}).expect("intact")
}

fn request(stream_id: &str, expected: ExpectedVersion, request_id: &str, events: usize) -> AppendRequest {
    AppendRequest {
        stream_id: stream_id.into(),
        expected,
        request_id: request_id.into(),
        actor: Actor {
            user_id: "u-17".into(),
            office: "BOG".into(),
        },
        events: (0..events)
            .map(|i| NewEvent {
                event_type: format!("Step{i}"),
                payload: format!("{request_id}/{i}").into_bytes(),
            })
            .collect(),
    }
}

/// Sends every request from its own task, all released together by a barrier,
/// and returns the results in the order of `reqs`.
async fn append_all(app: &Appender, reqs: Vec<AppendRequest>) -> Vec<Result<Appended, AppendError>> {
    let barrier = Arc::new(Barrier::new(reqs.len()));
    let mut set = JoinSet::new();
    let n = reqs.len();
    for (i, req) in reqs.into_iter().enumerate() {
        let (app, barrier) = (app.clone(), barrier.clone());
        set.spawn(async move {
            barrier.wait().await;
            (i, app.append(req).await)
        });
    }
    let mut out: Vec<Option<Result<Appended, AppendError>>> = vec![None; n];
    while let Some(joined) = set.join_next().await {
        let (i, result) = joined.expect("task");
        out[i] = Some(result);
    }
    out.into_iter().map(|r| r.expect("every task answered")).collect()
}

fn head_seq(log: &Log) -> u64 {
    log.store().head().unwrap().seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_with_the_same_exact_version_admit_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    app.append(request("case-1", ExpectedVersion::NoStream, "seed", 1))
        .await
        .unwrap();
    let mut version = 1u64;
    for round in 0..5 {
        let before = head_seq(&log);
        let expected = ExpectedVersion::Exact(version);
        let reqs = (0..32)
            .map(|t| request("case-1", expected, &format!("r{round}-t{t}"), 1 + t % 2))
            .collect();
        let results = append_all(&app, reqs).await;
        let winners: Vec<&Appended> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let won = *winners[0];
        assert_eq!((won.first_seq, won.first_version), (before + 1, version + 1));
        assert!(!won.deduplicated);
        let conflict = Err(AppendError::VersionConflict {
            stream_id: "case-1".into(),
            expected,
            actual: won.last_version,
        });
        let losers = results.iter().filter(|r| r.is_err());
        assert!(losers.clone().all(|r| *r == conflict), "{results:?}");
        assert_eq!(losers.count(), 31);
        assert_eq!(head_seq(&log), won.last_seq);
        assert_eq!(log.store().stream_version("case-1").unwrap(), won.last_version);
        version = won.last_version;
    }
}

/// A client told "version conflict" re-reads the stream at once: it must see
/// the version the conflict names, so the conflict is answered only after the
/// winning write of the same group commit is durable and published.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_conflict_is_answered_only_once_the_winning_write_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    app.append(request("case-2", ExpectedVersion::NoStream, "seed", 1))
        .await
        .unwrap();
    let mut version = 1u64;
    let mut conflicts = 0;
    for round in 0..10 {
        let barrier = Arc::new(Barrier::new(32));
        let mut set = JoinSet::new();
        for t in 0..32 {
            let (app, barrier, store) = (app.clone(), barrier.clone(), log.store().clone());
            let req = request(
                "case-2",
                ExpectedVersion::Exact(version),
                &format!("v{round}-t{t}"),
                1,
            );
            set.spawn(async move {
                barrier.wait().await;
                let result = app.append(req).await;
                let seen = store.stream_version("case-2").unwrap();
                (result, seen)
            });
        }
        let mut next = version;
        while let Some(joined) = set.join_next().await {
            match joined.expect("task") {
                (Ok(a), _) => next = a.last_version,
                (Err(AppendError::VersionConflict { actual, .. }), seen) => {
                    conflicts += 1;
                    assert!(
                        seen >= actual,
                        "round {round}: conflict names version {actual} while readers still see {seen}"
                    );
                }
                (Err(e), _) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(next, version + 1, "round {round}: one winner");
        version = next;
    }
    assert_eq!(conflicts, 310);
}

/// The events of each request are contiguous and in part order, in the whole log.
fn assert_requests_contiguous(all: &[StoredEvent]) {
    let mut i = 0;
    while i < all.len() {
        let first = &all[i].record;
        assert_eq!(first.part, 0, "seq {} starts a request", first.seq);
        for p in 0..first.parts {
            let r = &all[i + p as usize].record;
            assert_eq!(
                (r.request_id.as_str(), r.part, r.parts),
                (first.request_id.as_str(), p, first.parts)
            );
        }
        i += first.parts as usize;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_to_many_streams_keep_each_stream_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    let mut set = JoinSet::new();
    for t in 0..32usize {
        let app = app.clone();
        set.spawn(async move {
            let stream = format!("case-{}", t % 8);
            let mut acked = Vec::new();
            for i in 0..15usize {
                let req = request(
                    &stream,
                    ExpectedVersion::Any,
                    &format!("t{t}-{i}"),
                    1 + (t + i) % 3,
                );
                acked.push((req.clone(), app.append(req).await.expect("append")));
            }
            acked
        });
    }
    let mut acked: Vec<(AppendRequest, Appended)> = Vec::new();
    while let Some(task) = set.join_next().await {
        let mine = task.unwrap();
        for w in mine.windows(2) {
            assert!(
                w[0].1.last_seq < w[1].1.first_seq,
                "one task's appends keep their order"
            );
        }
        acked.extend(mine);
    }
    let total: u64 = acked.iter().map(|(r, _)| r.events.len() as u64).sum();
    assert_eq!(head_seq(&log), total);
    let all = log.store().read_all(1, 10_000).unwrap();
    assert_eq!(all.len() as u64, total);
    assert_requests_contiguous(&all);
    for (req, a) in &acked {
        for (i, ev) in req.events.iter().enumerate() {
            let r = &all[(a.first_seq - 1) as usize + i].record;
            assert_eq!((&r.request_id, &r.stream_id), (&req.request_id, &req.stream_id));
            assert_eq!(
                (r.stream_version, &r.payload),
                (a.first_version + i as u64, &ev.payload)
            );
        }
    }
    let mut per_stream: HashMap<String, u64> = HashMap::new();
    for ev in &all {
        let v = per_stream.entry(ev.record.stream_id.clone()).or_insert(0);
        *v += 1;
        assert_eq!(ev.record.stream_version, *v, "seq {}", ev.record.seq);
    }
    for (stream, n) in &per_stream {
        let read = log.store().read_stream(stream, 1, 10_000).unwrap();
        let versions: Vec<u64> = read.iter().map(|e| e.record.stream_version).collect();
        assert_eq!(versions, (1..=*n).collect::<Vec<_>>());
        assert_eq!(log.store().stream_version(stream).unwrap(), *n);
    }
    drop(app);
    let (chain, index) = verify_stopped(log, dir.path());
    assert_eq!((chain.events, index.request_entries), (total, acked.len() as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_with_the_same_request_id_returns_the_original_answer_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    app.append(request("case-0", ExpectedVersion::NoStream, "other", 1))
        .await
        .unwrap();
    let req = request("case-1", ExpectedVersion::NoStream, "r1", 3);
    let original = app.append(req.clone()).await.unwrap();
    assert_eq!(
        (original.first_seq, original.last_seq, original.deduplicated),
        (2, 4, false)
    );
    let head = log.store().head().unwrap();
    let again = app.append(req.clone()).await.unwrap();
    assert_eq!(
        again,
        Appended {
            deduplicated: true,
            ..original
        }
    );
    assert_eq!(log.store().head().unwrap(), head);
    // The stream moves on; the retry still gets the original answer, not a conflict.
    app.append(request("case-1", ExpectedVersion::Exact(3), "r2", 1))
        .await
        .unwrap();
    let late = app.append(req.clone()).await.unwrap();
    assert_eq!(
        late,
        Appended {
            deduplicated: true,
            ..original
        }
    );
    assert_eq!(head_seq(&log), 5);
    assert_eq!(log.store().stream_version("case-1").unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_copies_of_one_request_are_appended_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    let mut same_batch = 0;
    for round in 0..20 {
        let before = head_seq(&log);
        let req = request(
            &format!("case-{round}"),
            ExpectedVersion::NoStream,
            &format!("r{round}"),
            2,
        );
        let marker = request("case-marker", ExpectedVersion::Any, &format!("m{round}"), 1);
        let (a, b, m) = tokio::join!(
            app.append(req.clone()),
            app.append(req.clone()),
            app.append(marker)
        );
        let (a, b, m) = (a.unwrap(), b.unwrap(), m.unwrap());
        assert!(
            a.deduplicated ^ b.deduplicated,
            "exactly one copy is the original"
        );
        let (original, copy) = if a.deduplicated { (b, a) } else { (a, b) };
        assert_eq!(
            copy,
            Appended {
                deduplicated: true,
                ..original
            }
        );
        assert_eq!(head_seq(&log), before + 3);
        let entry = log
            .store()
            .request_entry(&req.stream_id, &req.request_id)
            .unwrap()
            .unwrap();
        assert_eq!((entry.first_seq, entry.count), (original.first_seq, 2));
        let events = log.store().read_stream(&req.stream_id, 1, 10).unwrap();
        assert_eq!(events.len(), 2);
        same_batch += usize::from(m.recorded_at_us == original.recorded_at_us);
    }
    // Copies sent in one poll land in one group commit almost always; the in-batch
    // path is the one this test is about, so insist it was taken at least once.
    assert!(same_batch > 0, "no round put both copies into one group commit");
    let many = request("case-many", ExpectedVersion::NoStream, "r-many", 3);
    let results = append_all(&app, vec![many; 16]).await;
    let fresh: Vec<&Appended> = results
        .iter()
        .map(|r| r.as_ref().unwrap())
        .filter(|a| !a.deduplicated)
        .collect();
    assert_eq!(fresh.len(), 1);
    for r in &results {
        assert_eq!(
            r.as_ref().unwrap(),
            &Appended {
                deduplicated: r.as_ref().unwrap().deduplicated,
                ..*fresh[0]
            }
        );
    }
    assert_eq!(log.store().stream_version("case-many").unwrap(), 3);
    drop(app);
    verify_stopped(log, dir.path());
}

/// An answer about a request, accepted or a retry deduplicated, is given only
/// once the events it names are durable and published. Copies of one request
/// are sent staggered, so that some land in the original's group commit and
/// some in later ones. A writer that applies the next batch while the
/// previous one syncs (tried: see BENCHMARKS.md) must make those wait for the
/// original's sync; answering them at once fails this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_is_answered_only_once_the_original_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    let mut early = Vec::new();
    let mut copies = 0;
    for round in 0..20u64 {
        let req = request(
            &format!("case-{round}"),
            ExpectedVersion::NoStream,
            &format!("retry-{round}"),
            2,
        );
        // Each copy goes with a filler request beside it, so that group
        // commits follow each other closely.
        let mut set = JoinSet::new();
        for t in 0..16u64 {
            let filler = request(
                &format!("filler-{round}-{t}"),
                ExpectedVersion::Any,
                &format!("f{round}-{t}"),
                1,
            );
            for sent in [req.clone(), filler] {
                let (app, store) = (app.clone(), log.store().clone());
                set.spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_micros(150 * t)).await;
                    let a = app.append(sent).await.unwrap();
                    (a, store.head().unwrap().seq)
                });
            }
        }
        while let Some(joined) = set.join_next().await {
            let (a, seen) = joined.expect("task");
            copies += usize::from(a.deduplicated);
            if seen < a.last_seq {
                early.push((round, a.last_seq, seen, a.deduplicated));
            }
        }
    }
    assert!(
        early.is_empty(),
        "answered before published (round, last_seq, head seen, deduplicated): {early:?}"
    );
    assert_eq!(copies, 20 * 15, "every copy but the first was deduplicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_with_another_expected_version_gets_the_original_answer() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    let req = request("case-1", ExpectedVersion::NoStream, "r1", 2);
    let original = app.append(req.clone()).await.unwrap();
    let head = log.store().head().unwrap();
    // The expected version is not part of a request's content: sent again
    // with another one, it is a retry and gets the original answer.
    for expected in [
        ExpectedVersion::Any,
        ExpectedVersion::Exact(2),
        ExpectedVersion::StreamExists,
    ] {
        let again = AppendRequest {
            expected,
            ..req.clone()
        };
        assert_eq!(
            app.append(again).await,
            Ok(Appended {
                deduplicated: true,
                ..original
            })
        );
    }
    assert_eq!(log.store().head().unwrap(), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_request_id_on_another_stream_is_another_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    let req = request("case-1", ExpectedVersion::NoStream, "r1", 2);
    let original = app.append(req.clone()).await.unwrap();
    // Request ids belong to their stream: the same id on another stream is
    // another request, with the same content or not.
    for (stream, payload) in [("case-2", b"same".as_slice()), ("case-3", b"other".as_slice())] {
        let mut elsewhere = req.clone();
        elsewhere.stream_id = stream.into();
        if payload == b"other" {
            elsewhere.events[1].payload.push(0);
        }
        let before = head_seq(&log);
        let a = app.append(elsewhere).await.unwrap();
        assert_eq!(
            (a.first_seq, a.last_seq, a.first_version, a.deduplicated),
            (before + 1, before + 2, 1, false),
            "{stream}"
        );
        let entry = log.store().request_entry(stream, "r1").unwrap().unwrap();
        assert_eq!((entry.first_seq, entry.count), (before + 1, 2));
    }
    let entry = log.store().request_entry("case-1", "r1").unwrap().unwrap();
    assert_eq!((entry.first_seq, entry.count), (original.first_seq, 2));
    assert_eq!(log.store().stream_version("case-1").unwrap(), 2);
    // ... and each is retried on its own stream.
    let retry = AppendRequest {
        stream_id: "case-2".into(),
        ..req.clone()
    };
    let entry = log.store().request_entry("case-2", "r1").unwrap().unwrap();
    let again = app.append(retry).await.unwrap();
    assert_eq!((again.first_seq, again.deduplicated), (entry.first_seq, true));
    assert_eq!(
        app.append(req).await,
        Ok(Appended {
            deduplicated: true,
            ..original
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_request_id_with_different_content_on_its_stream_is_refused_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    let req = request("case-1", ExpectedVersion::NoStream, "r1", 2);
    app.append(req.clone()).await.unwrap();
    let head = log.store().head().unwrap();
    let mismatch = Err(AppendError::IdempotencyMismatch {
        request_id: "r1".into(),
    });
    let variants: [fn(&mut AppendRequest); 5] = [
        |r| r.events[1].payload.push(0),
        |r| r.events[0].event_type = "Other".into(),
        |r| r.events.truncate(1),
        |r| r.actor.office = "MDE".into(),
        |r| r.actor.user_id = "u-18".into(),
    ];
    for change in &variants {
        let mut other = req.clone();
        change(&mut other);
        assert_eq!(app.append(other).await, mismatch);
    }
    assert_eq!(log.store().head().unwrap(), head);

    // Two different requests under one new id at once: one wins, the other is refused.
    for round in 0..10 {
        let id = format!("race-{round}");
        let a = request("case-a", ExpectedVersion::Any, &id, 1);
        let mut b = a.clone();
        b.events[0].payload = b"different".to_vec();
        let before = head_seq(&log);
        let results = append_all(&app, vec![a.clone(), b.clone()]).await;
        let ok: Vec<usize> = (0..2).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(ok.len(), 1, "{results:?}");
        let loser = 1 - ok[0];
        assert_eq!(
            results[loser],
            Err(AppendError::IdempotencyMismatch {
                request_id: id.clone()
            })
        );
        assert_eq!(head_seq(&log), before + 1);
        let stored = log.store().get(before + 1).unwrap().unwrap().record;
        let winner = if ok[0] == 0 { &a } else { &b };
        assert_eq!(stored.payload, winner.events[0].payload);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_request_in_a_batch_does_not_fail_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    app.append(request("case-x", ExpectedVersion::NoStream, "x1", 1))
        .await
        .unwrap();
    let existing = request("case-y", ExpectedVersion::NoStream, "y1", 1);
    let existing_ack = app.append(existing.clone()).await.unwrap();
    let mut one_batch_rounds = 0;
    for round in 0..10 {
        let before = head_seq(&log);
        let mut reqs: Vec<AppendRequest> = (0..12)
            .map(|i| {
                request(
                    &format!("case-{round}-{i}"),
                    ExpectedVersion::NoStream,
                    &format!("ok-{round}-{i}"),
                    1 + i % 3,
                )
            })
            .collect();
        let mut changed = existing.clone();
        changed.events[0].payload = b"changed".to_vec();
        reqs.push(request(
            "case-x",
            ExpectedVersion::NoStream,
            &format!("conflict-{round}"),
            1,
        ));
        reqs.push(changed);
        reqs.push(existing.clone());
        reqs.push(request(
            "case/bad",
            ExpectedVersion::Any,
            &format!("bad-{round}"),
            1,
        ));
        let results = append_all(&app, reqs.clone()).await;
        let accepted: u64 = reqs[..12].iter().map(|r| r.events.len() as u64).sum();
        let valid: Vec<&Appended> = results[..12]
            .iter()
            .map(|r| r.as_ref().expect("valid request accepted"))
            .collect();
        let mut seqs = Vec::new();
        for a in &valid {
            assert_eq!((a.first_version, a.deduplicated), (1, false));
            seqs.extend(a.first_seq..=a.last_seq);
        }
        seqs.sort_unstable();
        one_batch_rounds += usize::from(valid.iter().all(|a| a.recorded_at_us == valid[0].recorded_at_us));
        assert_eq!(seqs, (before + 1..=before + accepted).collect::<Vec<_>>());
        assert_eq!(
            results[12],
            Err(AppendError::VersionConflict {
                stream_id: "case-x".into(),
                expected: ExpectedVersion::NoStream,
                actual: 1
            })
        );
        assert_eq!(
            results[13],
            Err(AppendError::IdempotencyMismatch {
                request_id: "y1".into()
            })
        );
        assert_eq!(
            results[14],
            Ok(Appended {
                deduplicated: true,
                ..existing_ack
            })
        );
        assert!(matches!(
            results[15],
            Err(AppendError::Invalid {
                field: "stream_id",
                ..
            })
        ));
        assert_eq!(head_seq(&log), before + accepted);
    }
    // Requests released together share a group commit most rounds (one recorded_at per commit).
    assert!(
        one_batch_rounds > 0,
        "no round put the valid requests into one group commit"
    );
    assert_eq!(log.store().stream_version("case-x").unwrap(), 1);
    assert_eq!(log.store().stream_version("case-y").unwrap(), 1);
    drop(app);
    verify_stopped(log, dir.path());
}

/// sled applies a batch's writes one key at a time: a reader must never see
/// a head whose events are not all readable yet, nor a stream version (case
/// file) naming events past what it can read. Readers run flat out during
/// 16-way appends.
#[test]
fn readers_during_appends_see_every_event_up_to_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let store = log.store().clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut checks = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let head = store.head().unwrap();
                if head.seq > 0 {
                    let ev = store.get(head.seq).unwrap();
                    assert!(
                        ev.is_some(),
                        "head {} names an event that is not readable",
                        head.seq
                    );
                    assert_eq!(ev.unwrap().hash, head.hash);
                }
                let page = store.read_all(head.seq.saturating_sub(50).max(1), 100).unwrap();
                for w in page.windows(2) {
                    assert_eq!(w[1].record.seq, w[0].record.seq + 1, "read_all is contiguous");
                }
                let stream = format!("reader-{}", checks % 16);
                let version = store.stream_version(&stream).unwrap();
                let events = store.read_stream(&stream, 1, 10_000).unwrap();
                assert!(
                    events.len() as u64 >= version,
                    "stream {stream}: version {version}, {} readable",
                    events.len()
                );
                checks += 1;
            }
            checks
        })
    };
    let appenders: Vec<_> = (0..16)
        .map(|t| {
            let appender = log.appender();
            std::thread::spawn(move || {
                for n in 0..150 {
                    let req = request(
                        &format!("reader-{t}"),
                        ExpectedVersion::Any,
                        &format!("reader-{t}-{n}"),
                        1 + n % 3,
                    );
                    appender.append_blocking(req).unwrap();
                }
            })
        })
        .collect();
    for a in appenders {
        a.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let checks = reader.join().expect("reader saw a consistent log");
    assert!(checks > 0);
    assert_eq!(
        store.head().unwrap().seq,
        (0..150).map(|n| 1 + n % 3).sum::<u64>() * 16
    );
}
