//! A chain walk split into parts walked side by side (long walks at
//! start-up and in `registry verify`) finds exactly the breaks one walk
//! finds: the same first bad seq and reason, wherever the break lies
//! relative to the parts' boundaries and to multi-event requests.

#[path = "support/chunks.rs"]
mod chunks;
#[path = "support/requests.rs"]
mod requests;
#[path = "support/retry.rs"]
mod retry;

use registry::log::verify::{force_split_walks, verify_full, Broken, VerifyError};
use registry::log::{Log, Store, SyncMode, WriterConfig};
use retry::retry_while_locked;

const REQUESTS: usize = 1_500;

fn build(dir: &std::path::Path) -> u64 {
    let log = Log::open_with(
        dir,
        WriterConfig {
            sync: SyncMode::Flush,
        },
        None,
    )
    .unwrap();
    let appender = log.appender();
    let mut last = 0;
    for i in 0..REQUESTS {
        last = appender.append_blocking(requests::noted(i, 40)).unwrap().last_seq;
    }
    drop(appender);
    log.shutdown().unwrap();
    last
}

/// The verdict of a full verification with every walk split into `parts`.
fn verdict(dir: &std::path::Path, parts: usize) -> Result<u64, Broken> {
    force_split_walks(parts);
    let store = retry_while_locked(|| Store::open(dir)).unwrap();
    let result = match verify_full(&store, &mut |_, _| {}) {
        Ok((chain, _)) => Ok(chain.head.seq),
        Err(VerifyError::Broken(b)) => Err(b),
        Err(VerifyError::Store(e)) => panic!("store error: {e}"),
    };
    force_split_walks(0);
    result
}

#[test]
fn a_split_walk_finds_the_break_one_walk_finds() {
    let tmp = tempfile::tempdir().unwrap();
    let head = build(tmp.path());
    assert!(
        head > REQUESTS as u64 + REQUESTS as u64 / 2,
        "requests of 1 to 3 events"
    );
    for parts in [1, 2, 3, 4] {
        assert_eq!(
            verdict(tmp.path(), parts),
            Ok(head),
            "an intact log passes in {parts} parts"
        );
    }
    // Breaks at the first record, around the boundaries of 2, 3 and 4
    // parts (head/2, head/3, head/4 and their neighbours), and at the end.
    let mut targets = vec![1, 2, head - 1, head];
    for k in [2, 3, 4] {
        for d in [0, 1, 2] {
            targets.push(head / k + d);
        }
    }
    targets.sort_unstable();
    targets.dedup();
    for target in targets {
        let copies = tempfile::tempdir().unwrap();
        // A failed attempt (sled's lock still held) leaves a partial copy: each attempt gets its own directory.
        let mut attempt = 0;
        let copy = retry_while_locked(|| {
            attempt += 1;
            let to = copies.path().join(attempt.to_string());
            registry::log::store::copy_store(tmp.path(), &to, &mut |_| {}).map(|_| to)
        })
        .unwrap();
        let copy = copy.as_path();
        {
            let db = retry_while_locked(|| registry::log::store::sled_config(copy).open()).unwrap();
            chunks::flip_payload_byte(&db, target);
            db.flush().unwrap();
        }
        let one = verdict(copy, 1);
        assert_eq!(
            one,
            Err(Broken {
                seq: target,
                reason: "hash mismatch".into()
            }),
            "one walk names the flipped record"
        );
        for parts in [2, 3, 4] {
            assert_eq!(verdict(copy, parts), one, "{parts} parts, break at {target}");
        }
    }
}
