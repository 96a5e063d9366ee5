//! `registry migrate-store`: a store of format 1 (trees `events`, `streams`,
//! `requests`, written here by `V1FixtureWriter` the way the v1 writer did,
//! with a Merkle tree and a signed checkpoint over it) converted into store
//! format 2. The new store verifies, has the v1 head and every record byte
//! for byte, the same stream versions, recognises retries of the v1
//! requests, and still contains the checkpoint's tree. A v1 store is
//! refused by the server and `Log::open` with a message naming the
//! command; the command refuses a source that is not v1 and a target that
//! is not empty.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use registry::audit::checkpoint::{Checkpointer, NoteSigner, KEY_FILE_NAME};
use registry::audit::tree::MerkleTree;
use registry::audit::verify::check_log_against_checkpoint;
use registry::log::migrate::{migrate_store, MigrateError};
use registry::log::store::sled_config;
use registry::log::v1::V1FixtureWriter;
use registry::log::verify::verify_full;
use registry::log::{
    Actor, AppendError, AppendRequest, Appended, ExpectedVersion, Head, Log, NewEvent, OpenError, Store,
    SyncMode, WriterConfig,
};

#[path = "support/chunks.rs"]
mod chunks;
#[path = "support/retry.rs"]
mod retry;
use retry::retry_while_locked;

const STREAMS: usize = 7;
const REQUESTS: usize = 130;

fn config() -> WriterConfig {
    WriterConfig {
        sync: SyncMode::Fdatasync,
    }
}

/// Request `i` of the v1 fixture: 1 to 4 events on `case-<i mod 7>`; every
/// fourth one with an exact expected version, the others any.
fn v1_request(i: usize, versions: &HashMap<String, u64>) -> AppendRequest {
    let stream_id = format!("case-{}", i % STREAMS);
    let current = versions.get(&stream_id).copied().unwrap_or(0);
    let expected = match (i % 4, current) {
        (0, 0) => ExpectedVersion::NoStream,
        (0, n) => ExpectedVersion::Exact(n),
        _ => ExpectedVersion::Any,
    };
    AppendRequest {
        stream_id,
        expected,
        request_id: format!("v1-req-{i}"),
        actor: Actor {
            user_id: format!("u-{}", i % 3),
            office: ["BOG", "MDE"][i % 2].into(),
        },
        events: (0..1 + (i * 5) % 4)
            .map(|p| NewEvent {
                event_type: format!("Step{p}"),
                payload: format!("v1 request {i} part {p}: sealed")
                    .repeat(1 + i % 5)
                    .into_bytes(),
            })
            .collect(),
    }
}

/// RFC 9162 Merkle tree hash with BLAKE3, written here from docs/AUDIT.md:
/// leaf `H(0x00 || record)`, node `H(0x01 || left || right)`.
fn mth(records: &[Vec<u8>]) -> [u8; 32] {
    match records.len() {
        0 => *blake3::hash(b"").as_bytes(),
        1 => {
            let mut h = blake3::Hasher::new();
            h.update(&[0]).update(&records[0]);
            *h.finalize().as_bytes()
        }
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            let (l, r) = (mth(&records[..k]), mth(&records[k..]));
            let mut h = blake3::Hasher::new();
            h.update(&[1]).update(&l).update(&r);
            *h.finalize().as_bytes()
        }
    }
}

/// The v1 trees as they were before the migration, read straight from sled.
struct V1Trees {
    /// `events`: record || hash, by seq - 1.
    entries: Vec<Vec<u8>>,
    /// `streams`: the seq of each version, per stream.
    streams: HashMap<String, Vec<u64>>,
    /// `requests`: (first seq, count, first version, recorded_at) per request id.
    requests: HashMap<String, (u64, u16, u64, i64)>,
    /// `meta/head`.
    head: Vec<u8>,
    /// Another component's tree.
    person_keys: Vec<(Vec<u8>, Vec<u8>)>,
}

fn read_v1(dir: &Path) -> V1Trees {
    let db = retry_while_locked(|| sled_config(dir).open()).unwrap();
    let be = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap());
    let mut entries = Vec::new();
    for (i, kv) in db.open_tree("events").unwrap().iter().enumerate() {
        let (k, v) = kv.unwrap();
        assert_eq!(be(&k), i as u64 + 1);
        entries.push(v.to_vec());
    }
    let mut streams: HashMap<String, Vec<u64>> = HashMap::new();
    for kv in db.open_tree("streams").unwrap().iter() {
        let (k, v) = kv.unwrap();
        let n = k[0] as usize;
        let stream = String::from_utf8(k[1..1 + n].to_vec()).unwrap();
        let seqs = streams.entry(stream).or_default();
        assert_eq!(be(&k[1 + n..]), seqs.len() as u64 + 1);
        seqs.push(be(&v));
    }
    let mut requests = HashMap::new();
    for kv in db.open_tree("requests").unwrap().iter() {
        let (k, v) = kv.unwrap();
        let count = u16::from_be_bytes(v[40..42].try_into().unwrap());
        requests.insert(
            String::from_utf8(k.to_vec()).unwrap(),
            (be(&v[32..40]), count, be(&v[42..50]), be(&v[50..58]) as i64),
        );
    }
    let head = db
        .open_tree("meta")
        .unwrap()
        .get("head")
        .unwrap()
        .unwrap()
        .to_vec();
    let person_keys = db
        .open_tree("person_keys")
        .unwrap()
        .iter()
        .map(|kv| kv.unwrap())
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    V1Trees {
        entries,
        streams,
        requests,
        head,
        person_keys,
    }
}

/// A v1 store: `REQUESTS` requests (some retried) over `STREAMS` streams,
/// a Merkle tree over its records and a checkpoint signed with the data
/// directory's audit key, another component's tree and an access file.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    v1: PathBuf,
    /// Every accepted request and the answer the v1 writer gave it.
    sent: Vec<(AppendRequest, Appended)>,
    head: Head,
    /// The checkpoint note, also in `<root>/checkpoint.txt`.
    note: String,
    trees: V1Trees,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let v1 = root.join("v1");
    let mut w = V1FixtureWriter::create(&v1).unwrap();
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut sent = Vec::new();
    let mut at = 1_767_225_600_000_000i64;
    let mut spanned = false;
    for i in 0..REQUESTS {
        let mut req = v1_request(i, &versions);
        if !spanned && (241..=255).contains(&w.head().seq) {
            // Sixteen events across seq 256 | 257, where the first chunk ends.
            req.events = (0..16u8)
                .map(|p| NewEvent {
                    event_type: "Scan".into(),
                    payload: vec![p; 100],
                })
                .collect();
            spanned = true;
        }
        at += (i % 3) as i64 * 250; // some requests share a timestamp
        let a = w.append(&req, at).unwrap();
        assert!(!a.deduplicated);
        versions.insert(req.stream_id.clone(), a.last_version);
        if i % 10 == 3 {
            // A v1 retry: the original answer, nothing written.
            assert_eq!(
                w.append(&req, at + 1).unwrap(),
                Appended {
                    deduplicated: true,
                    ..a
                }
            );
        }
        sent.push((req, a));
    }
    assert!(spanned);
    let head = w.head();
    assert!(head.seq > 250, "a few hundred events: {}", head.seq);
    // The audit part of a v1 store: a Merkle tree over the records and a
    // checkpoint signed with the key in the data directory.
    let db = w.db().clone();
    let leaves: Vec<[u8; 32]> = db
        .open_tree("events")
        .unwrap()
        .iter()
        .map(|kv| {
            let v = kv.unwrap().1;
            registry::audit::merkle::leaf_hash(&v[..v.len() - 32])
        })
        .collect();
    let tree = MerkleTree::open(&db).unwrap();
    assert_eq!(tree.append_leaves(&leaves).unwrap(), head.seq);
    let (signer, created) = NoteSigner::load_or_create(&v1.join(KEY_FILE_NAME), None, true).unwrap();
    assert!(created);
    let cp = Checkpointer::open(&db, tree, signer)
        .unwrap()
        .checkpoint_now()
        .unwrap();
    assert_eq!(cp.checkpoint.size, head.seq);
    std::fs::write(root.join("checkpoint.txt"), &cp.note).unwrap();
    let keys = db.open_tree("person_keys").unwrap();
    for i in 0..5u8 {
        keys.insert(format!("C-{i}"), vec![i; 40]).unwrap();
    }
    db.flush().unwrap();
    drop((keys, db, w));
    std::fs::write(v1.join("access.json"), b"{\"principals\":[]}").unwrap();
    let trees = read_v1(&v1);
    assert_eq!(trees.entries.len() as u64, head.seq);
    let records: Vec<Vec<u8>> = trees.entries.iter().map(|e| e[..e.len() - 32].to_vec()).collect();
    assert_eq!(
        cp.checkpoint.root,
        mth(&records),
        "the checkpoint commits to the v1 records"
    );
    Fixture {
        _tmp: tmp,
        root,
        v1,
        sent,
        head,
        note: cp.note,
        trees,
    }
}

fn registry(args: &[&str]) -> (i32, String, String) {
    let out = retry_while_locked(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_registry"))
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if stderr.contains("could not acquire lock") {
            Err(stderr)
        } else {
            Ok(out)
        }
    })
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_migrated_store_has_the_v1_records_head_versions_requests_and_checkpoint() {
    let f = fixture();
    let v2 = f.root.join("v2");
    let mut progress = Vec::new();
    let report = migrate_store(&f.v1, &v2, &mut |n| progress.push(n)).unwrap();
    assert_eq!(report.head, f.head);
    assert_eq!(progress.last(), Some(&f.head.seq));
    assert_eq!(report.case_files, STREAMS as u64);
    assert_eq!(report.files, 2, "the access file and the audit key");
    assert_eq!(
        std::fs::read(v2.join("access.json")).unwrap(),
        b"{\"principals\":[]}"
    );
    assert_eq!(
        std::fs::read(v2.join(KEY_FILE_NAME)).unwrap(),
        std::fs::read(f.v1.join(KEY_FILE_NAME)).unwrap()
    );

    // The layout: chunks of at most 256 records, keys without a hole, one
    // case file per stream, `h` and `k` at the v1 head.
    {
        let db = retry_while_locked(|| sled_config(&v2).open()).unwrap();
        let layout = chunks::chunks(&db);
        let mut next = 1;
        for (first, entries) in &layout {
            assert_eq!(*first, next);
            assert!((1..=256).contains(&entries.len()));
            next += entries.len() as u64;
        }
        assert_eq!(next, f.head.seq + 1);
        assert!(layout.len() >= 2);
        let boundary = layout[1].0;
        assert!(
            f.sent
                .iter()
                .any(|(_, a)| a.first_seq < boundary && a.last_seq >= boundary),
            "a request spans the first chunk boundary"
        );
        assert_eq!(chunks::head(&db), (f.head.seq, f.head.hash));
        assert_eq!(chunks::case_files_at(&db), (f.head.seq, f.head.hash));
        for (stream, seqs) in &f.trees.streams {
            assert_eq!(&chunks::case_file(&db, stream).unwrap().seqs, seqs, "{stream}");
        }
        let keys: Vec<(Vec<u8>, Vec<u8>)> = db
            .open_tree("person_keys")
            .unwrap()
            .iter()
            .map(|kv| kv.unwrap())
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(keys, f.trees.person_keys, "other trees are copied");
        for v1_tree in ["events", "streams", "requests"] {
            assert!(!db.tree_names().iter().any(|n| n.as_ref() == v1_tree.as_bytes()));
        }
    }

    let store = retry_while_locked(|| Store::open(&v2)).unwrap();
    assert_eq!(store.head().unwrap(), f.head);
    assert_eq!(store.verified().unwrap(), f.head, "recorded as verified");
    let (chain, index) = verify_full(&store, &mut |_, _| {}).expect("the migrated store verifies");
    assert_eq!((chain.events, chain.head), (f.head.seq, f.head));
    assert_eq!(
        (index.case_files, index.stream_entries, index.request_entries),
        (STREAMS as u64, f.head.seq, REQUESTS as u64)
    );
    // Every record byte for byte, with its hash.
    let raw: Vec<Vec<u8>> = store
        .raw_range(1, f.head.seq)
        .map(|kv| {
            let (seq, e) = kv.unwrap();
            assert_eq!(store.raw_get(seq).unwrap().unwrap().to_vec(), e.to_vec());
            e.to_vec()
        })
        .collect();
    assert!(raw == f.trees.entries, "the records are the v1 bytes");
    let mut head = f.head.seq.to_be_bytes().to_vec();
    head.extend_from_slice(&f.head.hash);
    assert_eq!(head, f.trees.head);
    // Stream versions and reads.
    for (stream, seqs) in &f.trees.streams {
        assert_eq!(store.stream_version(stream).unwrap(), seqs.len() as u64);
        let read: Vec<u64> = store
            .read_stream(stream, 1, 10_000)
            .unwrap()
            .iter()
            .map(|e| e.record.seq)
            .collect();
        assert_eq!(&read, seqs, "{stream}");
    }
    // Every v1 request, found on its stream.
    for (req, a) in &f.sent {
        let e = store
            .request_entry(&req.stream_id, &req.request_id)
            .unwrap()
            .unwrap();
        let v1 = f.trees.requests[&req.request_id];
        assert_eq!((e.first_seq, e.count, e.first_version, e.recorded_at_us), v1);
        assert_eq!(
            (e.first_seq, e.first_version, e.recorded_at_us),
            (a.first_seq, a.first_version, a.recorded_at_us)
        );
    }
    // The log contains the checkpoint's tree, recomputed from the records,
    // and the copied Merkle tree is the one the checkpoint was signed over.
    let signer = NoteSigner::load_or_create(&v2.join(KEY_FILE_NAME), None, false)
        .unwrap()
        .0;
    let cp = signer.verifier().verify_checkpoint(&f.note).unwrap();
    let tree = MerkleTree::open(store.db()).unwrap();
    assert_eq!((tree.size(), tree.root(cp.size).unwrap()), (cp.size, cp.root));
    let matched = check_log_against_checkpoint(&store, &cp, Some(&tree), &mut |_| {}).unwrap();
    assert_eq!((matched.checkpoint_size, matched.root), (f.head.seq, cp.root));
    drop((tree, store));

    // Served: retries of the v1 requests get the v1 answers, the chain goes on.
    let log = retry_while_locked(|| Log::open(&v2, config())).unwrap();
    let app = log.appender();
    for (req, a) in f.sent.iter().step_by(9) {
        let again = app.append_blocking(req.clone()).unwrap();
        assert_eq!(
            again,
            Appended {
                deduplicated: true,
                ..*a
            },
            "{}",
            req.request_id
        );
        // Request ids are scoped to their stream now: with other content on
        // the same stream, refused.
        let mut other = req.clone();
        other.events[0].payload.push(b'!');
        assert_eq!(
            app.append_blocking(other),
            Err(AppendError::IdempotencyMismatch {
                request_id: req.request_id.clone()
            })
        );
    }
    assert_eq!(log.store().head().unwrap(), f.head);
    let (req, _) = &f.sent[0];
    let next = app
        .append_blocking(AppendRequest {
            request_id: "after-migration".into(),
            expected: ExpectedVersion::Exact(f.trees.streams[&req.stream_id].len() as u64),
            ..req.clone()
        })
        .unwrap();
    assert_eq!(next.first_seq, f.head.seq + 1);
    assert_eq!(
        next.first_version,
        f.trees.streams[&req.stream_id].len() as u64 + 1
    );
    let ev = log.store().get(next.first_seq).unwrap().unwrap();
    assert_eq!(ev.record.prev_hash, f.head.hash);
    drop(app);
    log.shutdown().unwrap();
    let store = retry_while_locked(|| Store::open(&v2)).unwrap();
    verify_full(&store, &mut |_, _| {}).expect("intact after appending");
    let matched = check_log_against_checkpoint(&store, &cp, None, &mut |_| {}).unwrap();
    assert_eq!(matched.log_size, next.last_seq);
}

#[test]
fn a_v1_store_is_refused_naming_migrate_store_and_the_binary_migrates_and_verifies_it() {
    let f = fixture();
    let named = |message: &str| {
        assert!(message.contains("format 1"), "{message}");
        assert!(message.contains("registry migrate-store"), "{message}");
    };
    match retry_while_locked(|| Log::open(&f.v1, config())) {
        Err(OpenError::Store(e)) => named(&e.to_string()),
        Err(e) => panic!("expected a format error, got {e}"),
        Ok(_) => panic!("Log::open accepted a v1 store"),
    }
    let key = registry::pii::MasterKey::from_bytes([7; 32]);
    match registry::server::open(&f.v1, SyncMode::Flush, key) {
        Err(e) => named(&e.to_string()),
        Ok(_) => panic!("the server opened a v1 store"),
    }
    let master_key = f.root.join("master.key");
    std::fs::write(&master_key, format!("{}\n", "ab".repeat(32))).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&master_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (code, out, err) = registry(&[
        "serve",
        "--data-dir",
        s(&f.v1),
        "--listen",
        "127.0.0.1:0",
        "--master-key-file",
        s(&master_key),
    ]);
    assert_eq!(code, 2, "{out}{err}");
    named(&err);
    let (code, out, err) = registry(&["verify", "--data-dir", s(&f.v1)]);
    assert_eq!(code, 2, "{out}{err}");
    named(&err);

    let v2 = f.root.join("v2");
    let (code, out, err) = registry(&["migrate-store", "--from", s(&f.v1), "--to", s(&v2)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("migrated {} records into ", f.head.seq)),
        "{out}"
    );
    assert!(out.contains(&format!("{STREAMS} case files")), "{out}");
    let (code, out, err) = registry(&["verify", "--data-dir", s(&v2)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!(
            "ok: {0} events, head seq {0} hash {1}",
            f.head.seq,
            hex(&f.head.hash)
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "({STREAMS} case files, {} stream entries, {REQUESTS} requests)",
            f.head.seq
        )),
        "{out}"
    );
    // The checkpoint signed over the v1 store, checked with the copied key.
    let cp = f.root.join("checkpoint.txt");
    let (code, out, err) = registry(&["verify", "--data-dir", s(&v2), "--checkpoint", s(&cp)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("contains the checkpoint's tree"), "{out}");
    // The source is left as it was: still v1, still refused.
    assert_eq!(read_v1(&f.v1).entries, f.trees.entries);
    assert!(matches!(
        retry_while_locked(|| Log::open(&f.v1, config())),
        Err(OpenError::Store(_))
    ));
}

#[test]
fn migrate_store_refuses_a_source_that_is_not_v1_and_a_target_that_is_not_empty() {
    let f = fixture();
    let files = |dir: &Path| -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    // A target that is not empty is left as it was.
    let busy = f.root.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), b"keep").unwrap();
    match retry_while_locked(|| migrate_store(&f.v1, &busy, &mut |_| {})) {
        Err(MigrateError::Refused(m)) => assert!(m.contains("exists and is not empty"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (code, out, err) = registry(&["migrate-store", "--from", s(&f.v1), "--to", s(&busy)]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("exists and is not empty"), "{err}");
    assert_eq!(files(&busy), vec![std::ffi::OsString::from("keep.txt")]);

    // A v2 store is not migrated again.
    let v2 = f.root.join("v2");
    retry_while_locked(|| migrate_store(&f.v1, &v2, &mut |_| {})).unwrap();
    let again = f.root.join("again");
    // (sled may hold the lock of a store just closed for a moment: retried.)
    match retry_while_locked(|| migrate_store(&v2, &again, &mut |_| {})) {
        Err(MigrateError::Refused(m)) => assert!(m.contains("is not a v1 store"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (code, out, err) = registry(&["migrate-store", "--from", s(&v2), "--to", s(&again)]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("is not a v1 store"), "{err}");
    assert!(!again.exists() || files(&again).is_empty());
    // Neither is a new store written by this build, nor a directory without a store.
    let fresh = f.root.join("fresh");
    drop(retry_while_locked(|| Log::open(&fresh, config())).unwrap());
    assert!(matches!(
        retry_while_locked(|| migrate_store(&fresh, &again, &mut |_| {})),
        Err(MigrateError::Refused(m)) if m.contains("is not a v1 store")
    ));
    let nothing = f.root.join("nothing");
    std::fs::create_dir_all(&nothing).unwrap();
    assert!(matches!(
        migrate_store(&nothing, &again, &mut |_| {}),
        Err(MigrateError::Refused(m)) if m.contains("no store in")
    ));
    // The v2 store is untouched by the refusals.
    let store = retry_while_locked(|| Store::open(&v2)).unwrap();
    assert_eq!(store.head().unwrap(), f.head);
}

#[test]
fn a_broken_v1_log_is_not_converted() {
    let f = fixture();
    const BAD: u64 = 123;
    {
        let db = retry_while_locked(|| sled_config(&f.v1).open()).unwrap();
        let events = db.open_tree("events").unwrap();
        let mut v = events.get(BAD.to_be_bytes()).unwrap().unwrap().to_vec();
        let at = v.len() - 64 - 2; // inside the payload
        v[at] ^= 0x01;
        events.insert(BAD.to_be_bytes(), v).unwrap();
        db.flush().unwrap();
    }
    let v2 = f.root.join("v2");
    match migrate_store(&f.v1, &v2, &mut |_| {}) {
        Err(MigrateError::Broken(b)) => assert_eq!(b.seq, BAD, "{b}"),
        other => panic!("expected the break at {BAD}, got {other:?}"),
    }
    let v2b = f.root.join("v2b");
    let (code, out, err) = registry(&["migrate-store", "--from", s(&f.v1), "--to", s(&v2b)]);
    assert_eq!(code, 1, "{err}");
    assert!(out.starts_with(&format!("broken at seq {BAD}: ")), "{out}");
}
