//! Tampering with a stopped store through sled directly, each case on a fresh
//! copy of one log: `registry verify` and `verify_full` must name the first bad
//! seq, and `Log::open` must refuse a store tampered past its verified position.

use std::path::{Path, PathBuf};
use std::process::Command;

use registry::log::record::{chain_hash, split_stored, Record};
use registry::log::verify::{verify_at_startup_with, verify_full, Broken, VerifyError};
use registry::log::{
    Actor, AppendRequest, ExpectedVersion, Log, NewEvent, OpenError, Store, SyncMode, WriterConfig,
};
use tempfile::TempDir;

#[path = "support/retry.rs"]
mod retry;
use retry::retry_while_locked;

const HEAD: u64 = 200;
/// The fixture is built in two runs; the second `Log::open` verified 1..=100.
/// Its run verifies the rest while open and at close, so the fixture then
/// sets `meta/verified` back to 100, as a crash right after that start would
/// have left it.
const VERIFIED: u64 = 100;
/// A request ends exactly here, so a cut after it leaves only whole requests.
const BOUNDARY: u64 = 195;

fn open(dir: &Path) -> Result<Log, OpenError> {
    let config = WriterConfig {
        sync: SyncMode::Fdatasync,
    };
    retry_while_locked(|| Log::open(dir, config))
}

/// Appends requests of 1-3 events over 5 streams until the head is `until`;
/// returns the (first seq, parts) of each request.
fn append_until(log: &Log, until: u64, requests: &mut Vec<(u64, u16)>) {
    let app = log.appender();
    while log.store().head().unwrap().seq < until {
        let i = requests.len();
        let head = log.store().head().unwrap().seq;
        let parts = [1u64, 2, 3, 1, 3, 2][i % 6].min(until - head) as u16;
        let req = AppendRequest {
            stream_id: format!("case-{}", i % 5),
            expected: ExpectedVersion::Any,
            request_id: format!("req-{i}"),
            actor: Actor {
                user_id: "u-17".into(),
                office: "BOG".into(),
            },
            events: (0..parts)
                .map(|p| NewEvent {
                    event_type: "CaseNoted".into(),
                    payload: format!("request {i} part {p}: sealed body").into_bytes(),
                })
                .collect(),
        };
        let a = app.append_blocking(req).unwrap();
        requests.push((a.first_seq, parts));
    }
}

/// The intact log every case starts from: 200 events, verified up to 100.
struct Fixture {
    _tmp: TempDir,
    dir: PathBuf,
    requests: Vec<(u64, u16)>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("intact");
    let mut requests = Vec::new();
    append_until(&open(&dir).unwrap(), VERIFIED, &mut requests);
    let log = open(&dir).unwrap();
    append_until(&log, BOUNDARY, &mut requests);
    append_until(&log, HEAD, &mut requests);
    log.shutdown().unwrap();
    let store = retry_while_locked(|| Store::open(&dir)).unwrap();
    assert_eq!(
        store.verified().unwrap().seq,
        HEAD,
        "a clean stop leaves the whole log verified"
    );
    drop(store);
    let db = retry_while_locked(|| registry::log::store::sled_config(&dir).open()).unwrap();
    let mut mark = VERIFIED.to_be_bytes().to_vec();
    mark.extend_from_slice(&split_stored(&value(&db, VERIFIED)).unwrap().1);
    db.open_tree("meta").unwrap().insert("verified", mark).unwrap();
    db.flush().unwrap();
    drop(db);
    Fixture {
        _tmp: tmp,
        dir,
        requests,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl Fixture {
    /// A fresh copy of the intact log, changed by `tamper` on the raw sled trees.
    fn tampered(&self, name: &str, tamper: impl FnOnce(&sled::Db)) -> PathBuf {
        let dir = self.dir.with_file_name(name);
        copy_dir(&self.dir, &dir);
        let db = retry_while_locked(|| registry::log::store::sled_config(&dir).open()).unwrap();
        tamper(&db);
        db.flush().unwrap();
        drop(db);
        dir
    }
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn value(db: &sled::Db, seq: u64) -> Vec<u8> {
    db.open_tree("events")
        .unwrap()
        .get(key(seq))
        .unwrap()
        .unwrap()
        .to_vec()
}

/// Flips one byte in the middle of the payload of `seq`; the stored hash is left alone.
fn flip_payload_byte(db: &sled::Db, seq: u64) -> Vec<u8> {
    let mut v = value(db, seq);
    let (record, _) = split_stored(&v).unwrap();
    let payload_len = Record::decode(record).unwrap().payload.len();
    // Record layout ends with payload || prev_hash(32); the stored value adds hash(32).
    let offset = v.len() - 64 - payload_len / 2 - 1;
    v[offset] ^= 0x01;
    db.open_tree("events")
        .unwrap()
        .insert(key(seq), v.clone())
        .unwrap();
    v
}

/// Runs `registry verify` and returns its exit code and stdout.
fn registry_verify(dir: &Path) -> (i32, String) {
    let out = retry_while_locked(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_registry"))
            .args(["verify", "--data-dir"])
            .arg(dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(2) if stderr.contains("could not acquire lock") => Err(stderr),
            _ => Ok(out),
        }
    })
    .expect("registry verify could open the store");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// Both the binary and `verify_full` report exactly `broken at seq {seq}: {reason}`.
fn assert_broken(dir: &Path, seq: u64, reason: &str) {
    let (code, stdout) = registry_verify(dir);
    assert_eq!(
        (code, stdout.as_str()),
        (1, format!("broken at seq {seq}: {reason}\n").as_str())
    );
    let store = retry_while_locked(|| Store::open(dir)).unwrap();
    match verify_full(&store, &mut |_, _| {}) {
        Err(VerifyError::Broken(b)) => assert_eq!(
            b,
            Broken {
                seq,
                reason: reason.into()
            }
        ),
        other => panic!("expected broken at seq {seq}, got {other:?}"),
    }
    drop(store);
}

/// `Log::open` refuses the store and names the first bad seq, and the
/// start-up check finds the same break whether it checks the indexes of the
/// tail by scanning the index trees or by one read per entry.
fn assert_open_refused(dir: &Path, seq: u64, reason: &str) {
    let store = retry_while_locked(|| Store::open(dir)).unwrap();
    for merge in [true, false] {
        match verify_at_startup_with(&store, Some(merge)) {
            Err(VerifyError::Broken(b)) => assert_eq!(
                b,
                Broken {
                    seq,
                    reason: reason.into()
                },
                "merge = {merge}"
            ),
            other => panic!("merge = {merge}: expected broken at seq {seq}, got {other:?}"),
        }
    }
    drop(store);
    match open(dir) {
        Err(OpenError::Broken(b)) => {
            assert_eq!(
                b,
                Broken {
                    seq,
                    reason: reason.into()
                }
            );
            let message = OpenError::Broken(b).to_string();
            assert!(message.contains(&format!("broken at seq {seq}")), "{message}");
        }
        Err(other) => panic!("expected a broken log at seq {seq}, got {other}"),
        Ok(_) => panic!("Log::open accepted a log tampered at seq {seq}"),
    }
}

#[test]
fn intact_copy_verifies_with_exit_code_zero() {
    let f = fixture();
    let dir = f.tampered("untouched", |_| {});
    let (code, stdout) = registry_verify(&dir);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.starts_with(&format!("ok: {HEAD} events, head seq {HEAD} hash ")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("({HEAD} stream entries, {} requests)", f.requests.len())),
        "{stdout}"
    );
    assert!(open(&dir).is_ok(), "an intact copy opens");
}

#[test]
fn flipped_payload_byte_is_a_hash_mismatch_at_that_seq() {
    let f = fixture();
    let dir = f.tampered("flip-57", |db| {
        flip_payload_byte(db, 57);
    });
    assert_broken(&dir, 57, "hash mismatch");
}

#[test]
fn removed_record_is_reported_missing_at_its_seq() {
    let f = fixture();
    let dir = f.tampered("remove-100", |db| {
        db.open_tree("events").unwrap().remove(key(100)).unwrap();
    });
    assert_broken(&dir, 100, "record missing (next record is seq 101)");
}

#[test]
fn swapped_records_are_reported_at_the_first_of_them() {
    let f = fixture();
    let dir = f.tampered("swap-120", |db| {
        let (a, b) = (value(db, 120), value(db, 121));
        let events = db.open_tree("events").unwrap();
        events.insert(key(120), b).unwrap();
        events.insert(key(121), a).unwrap();
    });
    assert_broken(&dir, 120, "record says seq 121");
}

#[test]
fn truncated_tail_is_detected_against_the_head_metadata() {
    let f = fixture();
    let ends_request = |seq: u64| {
        f.requests
            .iter()
            .any(|&(first, parts)| first + parts as u64 - 1 == seq)
    };
    assert!(ends_request(BOUNDARY));
    let cut = |name: &str, keep: u64| {
        f.tampered(name, |db| {
            for seq in keep + 1..=HEAD {
                db.open_tree("events").unwrap().remove(key(seq)).unwrap();
            }
        })
    };
    let dir = cut("cut-195", BOUNDARY);
    assert_broken(&dir, 196, "log ends at seq 195 but head metadata says 200");
    assert_open_refused(&dir, 196, "log ends at seq 195 but head metadata says 200");

    // Cutting inside a multi-event request is reported as that request cut short.
    let &(first, parts) = f
        .requests
        .iter()
        .rev()
        .find(|&&(s, p)| p == 3 && s > VERIFIED)
        .unwrap();
    let dir = cut("cut-inside", first);
    assert_broken(
        &dir,
        first + 1,
        &format!("request cut short: {} events missing", parts - 1),
    );
}

#[test]
fn rehashed_record_breaks_the_link_to_the_next() {
    let f = fixture();
    let rehash = |db: &sled::Db, seq: u64| {
        let mut v = flip_payload_byte(db, seq);
        let prev = split_stored(&value(db, seq - 1)).unwrap().1;
        let record_len = v.len() - 32;
        let hash = chain_hash(&prev, &v[..record_len]);
        v[record_len..].copy_from_slice(&hash);
        db.open_tree("events").unwrap().insert(key(seq), v).unwrap();
    };
    let dir = f.tampered("rehash-80", |db| rehash(db, 80));
    assert_broken(&dir, 81, "previous-hash link mismatch");
    let dir = f.tampered("rehash-last", |db| rehash(db, HEAD));
    assert_broken(&dir, HEAD, "head metadata hash differs from the chain");
    assert_open_refused(&dir, HEAD, "head metadata hash differs from the chain");
}

/// The key of `stream_id` at `version` in the `streams` tree.
fn stream_key(stream_id: &str, version: u64) -> Vec<u8> {
    let mut k = vec![stream_id.len() as u8];
    k.extend_from_slice(stream_id.as_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn seq_of(db: &sled::Db, stream_id: &str, version: u64) -> u64 {
    let v = db
        .open_tree("streams")
        .unwrap()
        .get(stream_key(stream_id, version))
        .unwrap()
        .unwrap();
    u64::from_be_bytes(v.as_ref().try_into().unwrap())
}

#[test]
fn deleted_stream_index_entry_is_detected() {
    let f = fixture();
    let mut after_hole = 0;
    let dir = f.tampered("stream-hole", |db| {
        after_hole = seq_of(db, "case-2", 3);
        db.open_tree("streams")
            .unwrap()
            .remove(stream_key("case-2", 2))
            .unwrap();
    });
    assert_broken(
        &dir,
        after_hole,
        "stream index: stream version 3 where 2 was expected",
    );

    let mut removed = 0;
    let dir = f.tampered("stream-last", |db| {
        let streams = db.open_tree("streams").unwrap();
        let (k, v) = streams
            .scan_prefix(&stream_key("case-4", 0)[..7])
            .next_back()
            .unwrap()
            .unwrap();
        removed = u64::from_be_bytes(v.as_ref().try_into().unwrap());
        streams.remove(k).unwrap();
    });
    assert_broken(&dir, removed, "stream index: no entry for this event");

    // Two entries trade places: each names an event of another stream.
    let (mut a, mut b) = (0, 0);
    let dir = f.tampered("stream-swapped", |db| {
        let streams = db.open_tree("streams").unwrap();
        a = seq_of(db, "case-1", 2);
        b = seq_of(db, "case-3", 1);
        streams.insert(stream_key("case-1", 2), &b.to_be_bytes()).unwrap();
        streams.insert(stream_key("case-3", 1), &a.to_be_bytes()).unwrap();
    });
    assert_ne!(a, b);
    assert_broken(
        &dir,
        b,
        "stream index: entry names a different stream or version than the event",
    );
}

#[test]
fn deleted_request_index_entry_is_detected() {
    let f = fixture();
    let dir = f.tampered("request-gone", |db| {
        db.open_tree("requests").unwrap().remove("req-3").unwrap();
    });
    assert_broken(
        &dir,
        f.requests[3].0,
        "request index: no entry for this event's request",
    );

    // An entry that names the right first seq but the wrong count.
    let i = 4;
    let dir = f.tampered("request-count", |db| {
        let requests = db.open_tree("requests").unwrap();
        let mut v = requests.get(format!("req-{i}")).unwrap().unwrap().to_vec();
        v[41] ^= 0x01; // low byte of the big-endian u16 count
        requests.insert(format!("req-{i}"), v).unwrap();
    });
    assert_broken(
        &dir,
        f.requests[i].0,
        "request index: entry does not match the events of its request",
    );
}

#[test]
fn open_refuses_a_store_tampered_after_the_verified_position() {
    let f = fixture();
    let dir = f.tampered("open-flip-150", |db| {
        flip_payload_byte(db, 150);
    });
    assert_open_refused(&dir, 150, "hash mismatch");
    // Refusing to open changed nothing: the offline check still sees the same break.
    assert_broken(&dir, 150, "hash mismatch");

    let dir = f.tampered("open-remove-160", |db| {
        db.open_tree("events").unwrap().remove(key(160)).unwrap();
    });
    assert_open_refused(&dir, 160, "record missing (next record is seq 161)");

    let mut seq = 0;
    let dir = f.tampered("open-stream-entry", |db| {
        let version = db
            .open_tree("streams")
            .unwrap()
            .scan_prefix(&stream_key("case-1", 0)[..7])
            .count() as u64;
        seq = seq_of(db, "case-1", version);
        db.open_tree("streams")
            .unwrap()
            .remove(stream_key("case-1", version))
            .unwrap();
    });
    assert!(seq > VERIFIED);
    assert_open_refused(&dir, seq, "stream index: no entry for this event");

    let i = f.requests.len() - 3;
    let first_seq = f.requests[i].0;
    assert!(first_seq > VERIFIED);
    let dir = f.tampered("open-request-entry", |db| {
        db.open_tree("requests")
            .unwrap()
            .remove(format!("req-{i}"))
            .unwrap();
    });
    assert_open_refused(
        &dir,
        first_seq,
        "request index: no entry for this event's request",
    );
}

/// Rewrites record `seq` with `change` and re-chains every later record and
/// `meta/head`, as a forger who recomputes the hashes would: only the checks
/// on the records' meaning can catch it.
fn rewrite_and_rechain(db: &sled::Db, seq: u64, change: impl FnOnce(&mut Record)) {
    let events = db.open_tree("events").unwrap();
    let mut prev = split_stored(&value(db, seq - 1)).unwrap().1;
    let mut change = Some(change);
    for s in seq..=HEAD {
        let stored = value(db, s);
        let mut record = Record::decode(split_stored(&stored).unwrap().0).unwrap();
        if let Some(change) = change.take() {
            change(&mut record);
        }
        record.prev_hash = prev;
        let mut bytes = record.encode();
        prev = chain_hash(&prev, &bytes);
        bytes.extend_from_slice(&prev);
        events.insert(key(s), bytes).unwrap();
    }
    let mut head = HEAD.to_be_bytes().to_vec();
    head.extend_from_slice(&prev);
    db.open_tree("meta").unwrap().insert("head", head).unwrap();
}

#[test]
fn rechained_forgeries_are_caught_by_the_checks_on_time_and_parts() {
    let f = fixture();
    let dir = f.tampered("time-backwards", |db| {
        let earlier = Record::decode(split_stored(&value(db, 129)).unwrap().0).unwrap();
        rewrite_and_rechain(db, 130, |r| r.recorded_at_us = earlier.recorded_at_us - 1);
    });
    assert_broken(&dir, 130, "recorded_at goes backwards");
    assert_open_refused(&dir, 130, "recorded_at goes backwards");

    let &(first, _) = f.requests.iter().find(|&&(s, p)| p == 3 && s > VERIFIED).unwrap();
    let dir = f.tampered("part-skipped", |db| {
        rewrite_and_rechain(db, first, |r| r.part = 1)
    });
    assert_broken(&dir, first, "part 1 of 3 without the parts before it");
    assert_open_refused(&dir, first, "part 1 of 3 without the parts before it");

    let dir = f.tampered("parts-changed", |db| {
        rewrite_and_rechain(db, first + 1, |r| r.parts = 2)
    });
    assert_broken(&dir, first + 1, "request cut short: 2 of 3 events missing");
}
