//! Tampering with a stopped store (format v2) through sled directly, each
//! case on a fresh copy of one log: `registry verify` and `verify_full` must
//! name the first bad seq, and `Log::open` must refuse a store tampered past
//! its verified position, whether its start-up check of the case files is
//! the merge or the per-event lookup.

use std::path::{Path, PathBuf};
use std::process::Command;

use registry::log::record::{chain_hash, Record};
use registry::log::verify::{verify_at_startup_with, verify_full, Broken, VerifyError};
use registry::log::{
    Actor, AppendRequest, ExpectedVersion, Log, NewEvent, OpenError, Store, SyncMode, WriterConfig,
};
use tempfile::TempDir;

#[path = "support/chunks.rs"]
mod chunks;
#[path = "support/retry.rs"]
mod retry;
use chunks::{chunk_key, chunk_of, entry, flip_payload_byte, put_entry, record_and_hash, remove_entries};
use retry::retry_while_locked;

const HEAD: u64 = 200;
/// The fixture is built in two runs; the second `Log::open` verified 1..=100.
/// Its run verifies the rest while open and at close, so the fixture then
/// sets `meta/verified` back to 100, as a crash right after that start would
/// have left it.
const VERIFIED: u64 = 100;
/// A request ends exactly here, so a cut after it leaves only whole requests.
const BOUNDARY: u64 = 195;
/// The request appended once the head reaches this spans two chunks.
const BIG_AT: u64 = 150;

fn open(dir: &Path) -> Result<Log, OpenError> {
    let config = WriterConfig {
        sync: SyncMode::Fdatasync,
    };
    retry_while_locked(|| Log::open(dir, config))
}

/// One request of the fixture.
#[derive(Clone, Debug)]
struct Req {
    first: u64,
    parts: u16,
    stream: String,
}

fn request(i: usize, stream: String, payloads: Vec<Vec<u8>>) -> AppendRequest {
    AppendRequest {
        stream_id: stream,
        expected: ExpectedVersion::Any,
        request_id: format!("req-{i}"),
        actor: Actor {
            user_id: "u-17".into(),
            office: "BOG".into(),
        },
        events: payloads
            .into_iter()
            .map(|payload| NewEvent {
                event_type: "CaseNoted".into(),
                payload,
            })
            .collect(),
    }
}

fn send(log: &Log, req: AppendRequest, requests: &mut Vec<Req>) {
    let a = log.appender().append_blocking(req.clone()).unwrap();
    requests.push(Req {
        first: a.first_seq,
        parts: req.events.len() as u16,
        stream: req.stream_id,
    });
}

/// Appends requests of 1-3 events over 5 streams until the head is `until`
/// (one request per group commit, so one chunk per request).
fn append_until(log: &Log, until: u64, requests: &mut Vec<Req>) {
    while log.store().head().unwrap().seq < until {
        let i = requests.len();
        let head = log.store().head().unwrap().seq;
        let parts = [1u64, 2, 3, 1, 3, 2][i % 6].min(until - head) as u16;
        let payloads = (0..parts)
            .map(|p| format!("request {i} part {p}: sealed body").into_bytes())
            .collect();
        send(log, request(i, format!("case-{}", i % 5), payloads), requests);
    }
}

/// The intact log every case starts from: 200 events over 6 streams, one
/// request spanning two chunks, verified up to 100.
struct Fixture {
    _tmp: TempDir,
    dir: PathBuf,
    requests: Vec<Req>,
    /// The request whose three 60 KiB events take two chunks.
    big: Req,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("intact");
    let mut requests = Vec::new();
    append_until(&open(&dir).unwrap(), VERIFIED, &mut requests);
    let log = open(&dir).unwrap();
    append_until(&log, BIG_AT, &mut requests);
    let i = requests.len();
    let big = request(
        i,
        "case-big".into(),
        (0..3u8).map(|p| vec![p; 60 * 1024]).collect(),
    );
    send(&log, big, &mut requests);
    let big = requests[i].clone();
    append_until(&log, BOUNDARY, &mut requests);
    append_until(&log, HEAD, &mut requests);
    log.shutdown().unwrap();
    let store = retry_while_locked(|| Store::open(&dir)).unwrap();
    assert_eq!(
        store.verified().unwrap().seq,
        HEAD,
        "a clean stop leaves the whole log verified"
    );
    assert_eq!(
        store.case_files_at().unwrap().seq,
        HEAD,
        "a clean stop leaves every case file written"
    );
    drop(store);
    let db = retry_while_locked(|| registry::log::store::sled_config(&dir).open()).unwrap();
    // One chunk per request, except the big one: two events, then one.
    for r in requests.iter().filter(|r| r.first != big.first) {
        let (first, entries) = chunk_of(&db, r.first);
        assert_eq!((first, entries.len()), (r.first, r.parts as usize), "{r:?}");
    }
    assert_eq!(chunk_of(&db, big.first + 1).0, big.first);
    assert_eq!(
        chunk_of(&db, big.first + 2),
        (big.first + 2, vec![entry(&db, big.first + 2)])
    );
    let mark = chunks::position_bytes(VERIFIED, &record_and_hash(&db, VERIFIED).1);
    db.open_tree("meta").unwrap().insert("verified", mark).unwrap();
    db.flush().unwrap();
    drop(db);
    Fixture {
        _tmp: tmp,
        dir,
        requests,
        big,
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
    /// A fresh copy of the intact log.
    fn copy(&self, name: &str) -> PathBuf {
        let dir = self.dir.with_file_name(name);
        copy_dir(&self.dir, &dir);
        dir
    }

    /// A fresh copy of the intact log, changed by `tamper` on the raw sled trees.
    fn tampered(&self, name: &str, tamper: impl FnOnce(&sled::Db)) -> PathBuf {
        let dir = self.copy(name);
        tamper_in(&dir, tamper);
        dir
    }

    /// The last request of `parts` events that starts after `after`.
    fn last_with(&self, parts: u16, after: u64) -> Req {
        self.requests
            .iter()
            .rev()
            .find(|r| r.parts == parts && r.first > after && r.stream != "case-big")
            .unwrap()
            .clone()
    }

    /// The first request of `parts` events that starts after `after`.
    fn first_with(&self, parts: u16, after: u64) -> Req {
        self.requests
            .iter()
            .find(|r| r.parts == parts && r.first > after && r.stream != "case-big")
            .unwrap()
            .clone()
    }
}

fn tamper_in(dir: &Path, tamper: impl FnOnce(&sled::Db)) {
    let db = retry_while_locked(|| registry::log::store::sled_config(dir).open()).unwrap();
    tamper(&db);
    db.flush().unwrap();
}

fn log_tree(db: &sled::Db) -> sled::Tree {
    db.open_tree("log").unwrap()
}

/// Runs the real binary; returns its exit code and stdout.
fn registry(args: &[&str], dir: &Path) -> (i32, String) {
    let out = retry_while_locked(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_registry"))
            .args(args)
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(2) if stderr.contains("could not acquire lock") => Err(stderr),
            _ => Ok(out),
        }
    })
    .expect("registry could open the store");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
    )
}

fn registry_verify(dir: &Path) -> (i32, String) {
    registry(&["verify"], dir)
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
/// start-up check finds the same break whether it checks the case files of
/// the tail by one scan of every case file or by one lookup per event.
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
    let dir = f.copy("untouched");
    let (code, stdout) = registry_verify(&dir);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.starts_with(&format!("ok: {HEAD} events, head seq {HEAD} hash ")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "(6 case files, {HEAD} stream entries, {} requests)",
            f.requests.len()
        )),
        "{stdout}"
    );
    for merge in [true, false] {
        let dir = f.copy(&format!("untouched-{merge}"));
        let store = retry_while_locked(|| Store::open(&dir)).unwrap();
        let startup = verify_at_startup_with(&store, Some(merge)).expect("an intact copy passes");
        assert_eq!(
            (startup.report.events, startup.report.head.seq),
            (HEAD - VERIFIED, HEAD)
        );
        assert!(startup.replayed.is_empty(), "every case file was written");
    }
    assert!(open(&dir).is_ok(), "an intact copy opens");
}

#[test]
fn a_flipped_byte_inside_a_chunk_is_a_hash_mismatch_at_that_seq() {
    let f = fixture();
    let r = f.first_with(3, 0);
    assert!(r.first + 2 < VERIFIED);
    let dir = f.tampered("flip-middle", |db| {
        flip_payload_byte(db, r.first + 1);
    });
    assert_broken(&dir, r.first + 1, "hash mismatch");
    let dir = f.tampered("flip-last", |db| {
        flip_payload_byte(db, r.first + 2);
    });
    assert_broken(&dir, r.first + 2, "hash mismatch");
    // The second chunk of the request that spans two.
    let dir = f.tampered("flip-big", |db| {
        flip_payload_byte(db, f.big.first + 2);
    });
    assert_broken(&dir, f.big.first + 2, "hash mismatch");
    // A changed offset table: the chunk cannot say where entry 2 is.
    let dir = f.tampered("offset-table", |db| {
        let log = log_tree(db);
        let mut v = log.get(chunk_key(r.first)).unwrap().unwrap().to_vec();
        v[3 + 4 * 2..3 + 4 * 3].copy_from_slice(&u32::MAX.to_be_bytes());
        log.insert(chunk_key(r.first), v).unwrap();
    });
    assert_broken(
        &dir,
        r.first + 2,
        "malformed chunk: chunk entry 2 has an impossible offset",
    );
}

#[test]
fn a_removed_chunk_is_reported_missing_at_its_first_seq() {
    let f = fixture();
    let r = f.first_with(2, 50);
    let dir = f.tampered("remove-chunk", |db| {
        let gone = log_tree(db).remove(chunk_key(r.first)).unwrap().unwrap();
        assert_eq!(chunks::parse_chunk(&gone).len(), 2);
    });
    assert_broken(
        &dir,
        r.first,
        &format!("record missing (next record is seq {})", r.first + 2),
    );
    // One record taken out of the middle of a chunk (the rest keep their seqs).
    let r = f.first_with(3, 50);
    let dir = f.tampered("remove-one", |db| remove_entries(db, |s| s == r.first + 1));
    assert_broken(
        &dir,
        r.first + 1,
        &format!("record missing (next record is seq {})", r.first + 2),
    );
}

#[test]
fn swapped_chunks_are_reported_at_the_first_of_them() {
    let f = fixture();
    let i = f.requests.iter().position(|r| r.first > 110).unwrap();
    let (a, b) = (f.requests[i].clone(), f.requests[i + 1].clone());
    assert_ne!(a.parts, b.parts);
    let dir = f.tampered("swap-chunks", |db| {
        let log = log_tree(db);
        let va = log.get(chunk_key(a.first)).unwrap().unwrap();
        let vb = log.get(chunk_key(b.first)).unwrap().unwrap();
        log.insert(chunk_key(a.first), vb).unwrap();
        log.insert(chunk_key(b.first), va).unwrap();
    });
    let reason = format!("record says seq {}", b.first);
    assert_broken(&dir, a.first, &reason);
    assert_open_refused(&dir, a.first, &reason);
}

#[test]
fn a_cut_tail_is_caught_by_the_head_key_and_then_by_the_case_files() {
    let f = fixture();
    assert!(f
        .requests
        .iter()
        .any(|r| r.first + r.parts as u64 - 1 == BOUNDARY));
    // The last chunks removed, the head key left alone.
    let dir = f.tampered("cut-195", |db| remove_entries(db, |s| s > BOUNDARY));
    let reason = "log ends at seq 195 but the head key says 200";
    assert_broken(&dir, BOUNDARY + 1, reason);
    assert_open_refused(&dir, BOUNDARY + 1, reason);

    // ... and the head key rewritten to the new last record: the case files
    // still name the events cut off.
    let dir = f.tampered("cut-195-head", |db| {
        remove_entries(db, |s| s > BOUNDARY);
        chunks::set_head(db, BOUNDARY, &record_and_hash(db, BOUNDARY).1);
    });
    let reason = "the case files cover events past the head";
    assert_broken(&dir, BOUNDARY + 1, reason);
    assert_open_refused(&dir, BOUNDARY + 1, reason);

    // Cut at the chunk boundary inside the request that spans two chunks.
    let cut = f.big.first + 1;
    let dir = f.tampered("cut-big", |db| {
        remove_entries(db, |s| s > cut);
        chunks::set_head(db, cut, &record_and_hash(db, cut).1);
    });
    let reason = "request cut short: 1 events missing";
    assert_broken(&dir, cut + 1, reason);
    assert_open_refused(&dir, cut + 1, reason);

    // Cut inside a chunk: a three-event request keeps its first event.
    let r = f.last_with(3, VERIFIED);
    let dir = f.tampered("cut-inside", |db| remove_entries(db, |s| s > r.first));
    assert_broken(&dir, r.first + 1, "request cut short: 2 events missing");
}

/// Flips a payload byte of `seq` and recomputes its own stored hash.
fn rehash(db: &sled::Db, seq: u64) {
    let mut e = flip_payload_byte(db, seq);
    let prev = record_and_hash(db, seq - 1).1;
    let record_len = e.len() - 32;
    let hash = chain_hash(&prev, &e[..record_len]);
    e[record_len..].copy_from_slice(&hash);
    put_entry(db, seq, e);
}

#[test]
fn rehashed_record_breaks_the_link_to_the_next() {
    let f = fixture();
    let dir = f.tampered("rehash-80", |db| rehash(db, 80));
    assert_broken(&dir, 81, "previous-hash link mismatch");
    let dir = f.tampered("rehash-last", |db| rehash(db, HEAD));
    let reason = "the head key's hash differs from the chain";
    assert_broken(&dir, HEAD, reason);
    assert_open_refused(&dir, HEAD, reason);
}

/// Rewrites record `seq` with `change` and re-chains every later record and
/// the head key, as a forger who recomputes the hashes would; returns the
/// new head hash.
fn rewrite_and_rechain(db: &sled::Db, seq: u64, change: impl FnOnce(&mut Record)) -> [u8; 32] {
    let mut prev = record_and_hash(db, seq - 1).1;
    let mut change = Some(change);
    for s in seq..=HEAD {
        let mut record = Record::decode(&record_and_hash(db, s).0).unwrap();
        if let Some(change) = change.take() {
            change(&mut record);
        }
        record.prev_hash = prev;
        let mut bytes = record.encode();
        prev = chain_hash(&prev, &bytes);
        bytes.extend_from_slice(&prev);
        put_entry(db, s, bytes);
    }
    chunks::set_head(db, HEAD, &prev);
    prev
}

#[test]
fn rechained_forgeries_are_caught_by_the_checks_on_time_and_parts() {
    let f = fixture();
    let dir = f.tampered("time-backwards", |db| {
        let earlier = Record::decode(&record_and_hash(db, 129).0).unwrap();
        rewrite_and_rechain(db, 130, |r| r.recorded_at_us = earlier.recorded_at_us - 1);
    });
    assert_broken(&dir, 130, "recorded_at goes backwards");
    assert_open_refused(&dir, 130, "recorded_at goes backwards");

    let r = f.first_with(3, VERIFIED);
    let dir = f.tampered("part-skipped", |db| {
        rewrite_and_rechain(db, r.first, |r| r.part = 1);
    });
    assert_broken(&dir, r.first, "part 1 of 3 without the parts before it");
    assert_open_refused(&dir, r.first, "part 1 of 3 without the parts before it");

    let dir = f.tampered("parts-changed", |db| {
        rewrite_and_rechain(db, r.first + 1, |r| r.parts = 2);
    });
    assert_broken(&dir, r.first + 1, "request cut short: 2 of 3 events missing");
}

/// A forger who rewrites a payload and re-chains the tail must also rewrite
/// every position that holds the old hash (`k`, `meta/verified`,
/// `meta/opened_at`); then only a signed checkpoint taken before shows it.
#[test]
fn a_rewritten_tail_with_recomputed_hashes_is_caught_only_by_a_checkpoint() {
    let f = fixture();
    let dir = f.copy("rechained");
    let (code, _) = registry(&["audit", "key"], &dir);
    assert_eq!(code, 0);
    let cp = dir.with_file_name("rechained.checkpoint");
    let (code, note) = registry(&["audit", "checkpoint", "--out", cp.to_str().unwrap()], &dir);
    assert_eq!(code, 0, "{note}");
    assert!(note.contains(&format!("\n{HEAD}\n")), "{note}");
    const TARGET: u64 = 150;
    let change = |r: &mut Record| {
        let n = r.payload.len();
        r.payload[n - 1] ^= 0x01;
    };

    // Re-chained, the head key rewritten, but not `k`: its hash gives it away.
    let naive = f.copy("rechained-naive");
    tamper_in(&naive, |db| {
        rewrite_and_rechain(db, TARGET, change);
    });
    assert_broken(
        &naive,
        HEAD,
        "the case files cover a position whose hash differs from the chain",
    );

    tamper_in(&dir, |db| {
        let hash = rewrite_and_rechain(db, TARGET, change);
        let position = chunks::position_bytes(HEAD, &hash);
        log_tree(db).insert("k", position.clone()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("verified", position.clone()).unwrap();
        meta.insert("opened_at", position).unwrap();
    });
    let (code, stdout) = registry_verify(&dir);
    assert_eq!(code, 0, "the chain and the case files cannot tell: {stdout}");
    let (code, stdout) = registry(&["verify", "--checkpoint", cp.to_str().unwrap()], &dir);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("checkpoint mismatch"), "{stdout}");
    assert!(
        stdout.contains(&format!("the first altered event is seq {TARGET}")),
        "{stdout}"
    );
    assert!(open(&dir).is_ok(), "the start-up check cannot tell either");
}

/// The seqs of a stream, from the records (not from its case file).
fn seqs_of(db: &sled::Db, stream: &str) -> Vec<u64> {
    (1..=HEAD)
        .filter(|&s| Record::decode(&record_and_hash(db, s).0).unwrap().stream_id == stream)
        .collect()
}

#[test]
fn tampered_case_files_are_named_by_the_first_event_they_fail() {
    let f = fixture();
    // A case file removed: its stream's first event is named by none.
    let mut first = 0;
    let dir = f.tampered("case-file-gone", |db| {
        first = seqs_of(db, "case-4")[0];
        chunks::remove_case_file(db, "case-4");
    });
    assert_broken(&dir, first, "case file: no case file names this event");

    // A case file that ends one event early.
    let mut last = 0;
    let dir = f.tampered("case-file-short", |db| {
        let mut cf = chunks::case_file(db, "case-3").unwrap();
        last = cf.seqs.pop().unwrap();
        let n = cf.seqs.len() as u64;
        cf.requests.retain(|&(v, _)| v <= n);
        chunks::put_case_file(db, "case-3", &cf);
    });
    assert_broken(&dir, last, "case file: no case file names this event");

    // A case file naming an event of another stream at one of its versions.
    let mut wrong = 0;
    let dir = f.tampered("case-file-wrong-seq", |db| {
        let mut cf = chunks::case_file(db, "case-1").unwrap();
        assert_eq!(cf.seqs, seqs_of(db, "case-1"));
        let i = (1..cf.seqs.len())
            .find(|&i| cf.seqs.get(i + 1).is_none_or(|&next| next > cf.seqs[i] + 1))
            .unwrap();
        wrong = cf.seqs[i] + 1;
        assert!(wrong <= HEAD);
        cf.seqs[i] = wrong;
        chunks::put_case_file(db, "case-1", &cf);
    });
    assert_broken(
        &dir,
        wrong,
        "case file: names a different stream or version than the event",
    );

    // A request's mark removed, or carrying another request's tag.
    let (i, r) = f
        .requests
        .iter()
        .enumerate()
        .skip(10)
        .find(|(_, r)| r.stream == "case-2")
        .unwrap();
    let version_of = |db: &sled::Db| {
        Record::decode(&record_and_hash(db, r.first).0)
            .unwrap()
            .stream_version
    };
    let dir = f.tampered("mark-gone", |db| {
        let mut cf = chunks::case_file(db, "case-2").unwrap();
        let v = version_of(db);
        let before = cf.requests.len();
        cf.requests.retain(|&(first, _)| first != v);
        assert_eq!(cf.requests.len(), before - 1);
        chunks::put_case_file(db, "case-2", &cf);
    });
    assert_broken(
        &dir,
        r.first,
        "case file: no request mark for this event's request",
    );
    let dir = f.tampered("mark-other-tag", |db| {
        let mut cf = chunks::case_file(db, "case-2").unwrap();
        let v = version_of(db);
        let mark = cf.requests.iter_mut().find(|(first, _)| *first == v).unwrap();
        assert_eq!(mark.1, chunks::request_tag(&format!("req-{i}")));
        mark.1 = chunks::request_tag(&format!("req-{}", i + 1));
        chunks::put_case_file(db, "case-2", &cf);
    });
    assert_broken(
        &dir,
        r.first,
        "case file: request mark does not match the events of its request",
    );

    // The position the case files cover, with a hash the chain never had.
    let dir = f.tampered("cases-at", |db| {
        log_tree(db)
            .insert("k", chunks::position_bytes(HEAD, &[9; 32]))
            .unwrap();
    });
    let reason = "the case files cover a position whose hash differs from the chain";
    assert_broken(&dir, HEAD, reason);
    assert_open_refused(&dir, HEAD, reason);
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

    let r = f.first_with(2, 150);
    let dir = f.tampered("open-remove-chunk", |db| {
        log_tree(db).remove(chunk_key(r.first)).unwrap().unwrap();
    });
    assert_open_refused(
        &dir,
        r.first,
        &format!("record missing (next record is seq {})", r.first + 2),
    );

    // A case file that does not decode: named at the first seq checked.
    let dir = f.tampered("open-case-file-undecodable", |db| {
        let log = log_tree(db);
        let mut v = log.get("scase-big").unwrap().unwrap().to_vec();
        v.push(0);
        log.insert("scase-big", v).unwrap();
    });
    let reason = "case file of case-big: trailing bytes";
    assert_broken(&dir, 1, reason);
    assert_open_refused(&dir, VERIFIED + 1, reason);

    // case-big has one request, after the verified position.
    let dir = f.tampered("open-case-file-gone", |db| {
        chunks::remove_case_file(db, "case-big");
    });
    assert_open_refused(&dir, f.big.first, "case file: no case file names this event");

    let mut seq = 0;
    let dir = f.tampered("open-case-file-short", |db| {
        let mut cf = chunks::case_file(db, "case-1").unwrap();
        seq = cf.seqs.pop().unwrap();
        let n = cf.seqs.len() as u64;
        cf.requests.retain(|&(v, _)| v <= n);
        chunks::put_case_file(db, "case-1", &cf);
    });
    assert!(seq > VERIFIED);
    assert_open_refused(&dir, seq, "case file: no case file names this event");

    let r = f.last_with(2, VERIFIED);
    let dir = f.tampered("open-mark-gone", |db| {
        let mut cf = chunks::case_file(db, &r.stream).unwrap();
        let v = Record::decode(&record_and_hash(db, r.first).0)
            .unwrap()
            .stream_version;
        cf.requests.retain(|&(first, _)| first != v);
        chunks::put_case_file(db, &r.stream, &cf);
    });
    assert_open_refused(
        &dir,
        r.first,
        "case file: no request mark for this event's request",
    );
}
