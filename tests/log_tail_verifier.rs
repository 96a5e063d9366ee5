//! The tail verifier: while the log is open it re-reads what the writer
//! committed and advances the verified position, so a start-up after a clean
//! stop has nothing left to check; a break it finds stops every later append.

use std::path::Path;
use std::time::{Duration, Instant};

use registry::log::verify::{Broken, VerifyError};
use registry::log::{AppendError, AppendRequest, Log, OpenError, Store, SyncMode, WriterConfig};

#[path = "support/chunks.rs"]
mod chunks;
#[path = "support/requests.rs"]
mod requests;
#[path = "support/retry.rs"]
mod retry;
use retry::retry_while_locked;

const CONFIG: WriterConfig = WriterConfig {
    sync: SyncMode::Fdatasync,
};

fn open_with(dir: &Path, every: Option<Duration>) -> Result<Log, OpenError> {
    retry_while_locked(|| Log::open_with(dir, CONFIG, every))
}

fn request(i: usize) -> AppendRequest {
    requests::noted(i, 7)
}

fn append(log: &Log, range: std::ops::Range<usize>) -> Result<u64, AppendError> {
    let app = log.appender();
    let mut last = 0;
    for i in range {
        last = app.append_blocking(request(i))?.last_seq;
    }
    Ok(last)
}

fn persisted_verified(dir: &Path) -> u64 {
    let store = retry_while_locked(|| Store::open(dir)).unwrap();
    let seq = store.verified().unwrap().seq;
    drop(store);
    seq
}

/// Waits (at most 30 s) until the verifier thread has verified up to `head`.
fn wait_verified(log: &Log, head: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.verified().seq < head {
        assert!(
            Instant::now() < deadline,
            "verified {} never reached head {head}",
            log.verified().seq
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn verified_position_follows_the_head_while_open() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open_with(tmp.path(), Some(Duration::from_millis(20))).unwrap();
    let head = append(&log, 0..60).unwrap();
    assert!(head >= 60);
    wait_verified(&log, head);
    assert_eq!(log.verified(), log.store().head().unwrap());
    // More appends: the position keeps following.
    let head = append(&log, 60..90).unwrap();
    wait_verified(&log, head);
    assert!(log.broken().borrow().is_none());
    log.shutdown().unwrap();
    assert_eq!(persisted_verified(tmp.path()), head);
}

#[test]
fn a_clean_stop_leaves_nothing_for_the_next_start_to_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open_with(tmp.path(), None).unwrap();
    let head = append(&log, 0..25).unwrap();
    // No verifier thread: nothing advanced the position yet.
    assert_eq!(log.verified().seq, 0);
    log.shutdown().unwrap();
    assert_eq!(persisted_verified(tmp.path()), head);
    let log = open_with(tmp.path(), None).unwrap();
    assert_eq!(log.verified().seq, head);
    // The reopened log appends on top of the verified head.
    let head2 = append(&log, 25..30).unwrap();
    assert_eq!(log.verify_tail().unwrap().events, head2 - head);
    assert_eq!(log.verified().seq, head2);
}

#[test]
fn a_break_found_while_open_stops_appends_and_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open_with(tmp.path(), None).unwrap();
    append(&log, 0..5).unwrap();
    let verified = log.verify_tail().unwrap().head.seq;
    let head = append(&log, 5..20).unwrap();
    let target = verified + 3;
    assert!(target < head);
    // Someone with access to the running store rewrites a committed record
    // in its chunk.
    chunks::flip_payload_byte(log.store().db(), target);

    let expected = Broken {
        seq: target,
        reason: "hash mismatch".into(),
    };
    match log.verify_tail() {
        Err(VerifyError::Broken(b)) => assert_eq!(b, expected),
        other => panic!("expected the break at {target}, got {other:?}"),
    }
    assert_eq!(log.broken().borrow().clone(), Some(expected.clone()));
    // The position did not move past the break.
    assert_eq!(log.verified().seq, verified);
    match append(&log, 20..21) {
        Err(AppendError::Unavailable(msg)) => {
            assert!(
                msg.contains(&format!("failed verification at seq {target}")),
                "{msg}"
            )
        }
        other => panic!("an append after the break must be refused, got {other:?}"),
    }
    assert_eq!(
        log.store().head().unwrap().seq,
        head,
        "nothing was appended after the break"
    );
    log.shutdown().unwrap();
    assert_eq!(persisted_verified(tmp.path()), verified);
    match open_with(tmp.path(), None) {
        Err(OpenError::Broken(b)) => assert_eq!(b, expected),
        Err(other) => panic!("expected the break at {target}, got {other}"),
        Ok(_) => panic!("the next start accepted the broken log"),
    }
}

#[test]
fn the_verifier_thread_finds_a_break_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open_with(tmp.path(), Some(Duration::from_millis(50))).unwrap();
    append(&log, 0..10).unwrap();
    let app = log.appender();
    // Flip a payload byte, in its chunk, of a freshly appended record.
    // `verified()` waits for a step in progress, so if it is still before the
    // record after the flip, the thread's next step must see it. If the
    // thread got there first, put the record back and try with the next request.
    let db = log.store().db();
    let mut tampered = None;
    for i in 10..40 {
        let seq = app.append_blocking(request(i)).unwrap().last_seq;
        let original = chunks::entry(db, seq);
        chunks::flip_payload_byte(db, seq);
        if log.verified().seq < seq {
            tampered = Some(seq);
            break;
        }
        chunks::put_entry(db, seq, original);
    }
    let seq = tampered.expect("the verifier thread checked every request before it could be tampered with");
    let mut broken = log.broken();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let found = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), broken.wait_for(|b| b.is_some()))
            .await
            .expect("the verifier thread reports the break")
            .expect("sender alive")
            .clone()
    });
    assert_eq!(
        found,
        Some(Broken {
            seq,
            reason: "hash mismatch".into()
        })
    );
    assert!(log.verified().seq < seq);
    assert!(matches!(append(&log, 40..41), Err(AppendError::Unavailable(_))));
}

#[test]
fn a_start_after_an_unclean_stop_rechecks_everything_that_run_appended() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open_with(tmp.path(), None).unwrap();
    let first_run = append(&log, 0..10).unwrap();
    log.shutdown().unwrap();
    let log = open_with(tmp.path(), None).unwrap();
    let second_run = append(&log, 10..30).unwrap();
    log.verify_tail().unwrap();
    assert_eq!(log.verified().seq, second_run);
    log.shutdown().unwrap();
    // The second run verified everything it appended; now make its stop look
    // like a crash (no `closed` marker) and change one event it appended.
    let target = first_run + 5;
    assert!(target < second_run);
    let db = retry_while_locked(|| registry::log::store::sled_config(tmp.path()).open()).unwrap();
    let meta = db.open_tree("meta").unwrap();
    assert!(
        meta.get("closed").unwrap().is_some(),
        "a clean stop leaves the marker"
    );
    meta.remove("closed").unwrap();
    chunks::flip_payload_byte(&db, target);
    db.flush().unwrap();
    drop((meta, db));
    let store = retry_while_locked(|| Store::open(tmp.path())).unwrap();
    assert_eq!(store.startup_check_from().unwrap().seq, first_run);
    drop(store);
    match open_with(tmp.path(), None) {
        Err(OpenError::Broken(b)) => assert_eq!(
            b,
            Broken {
                seq: target,
                reason: "hash mismatch".into()
            }
        ),
        Err(other) => panic!("expected the break at {target}, got {other}"),
        Ok(_) => panic!("a start after an unclean stop must re-check what that run appended"),
    }
}
