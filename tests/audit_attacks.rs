//! Attacks on a real sled log (store format 2: records in chunks, case files), each detected by the real `registry` binary and
//! reported with where: one byte changed, an event removed, the tail cut off,
//! a rewritten and re-chained tail, forged and wrong-key checkpoints, an
//! altered receipt proof, an altered export. Plus the happy paths.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use registry::log::record::chain_hash;
use registry::log::{Actor, AppendRequest, ExpectedVersion, Log, NewEvent, Store, SyncMode, WriterConfig};

const EVENTS: u64 = 50;

#[path = "support/chunks.rs"]
mod chunks;

fn registry(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run registry");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A log of `EVENTS` single-event requests over 5 streams.
fn make_log(dir: &Path) {
    let log = Log::open(
        dir,
        WriterConfig {
            sync: SyncMode::Flush,
        },
    )
    .unwrap();
    let app = log.appender();
    let mut versions = [0u64; 5];
    for i in 0..EVENTS {
        let st = (i % 5) as usize;
        let v = versions[st];
        let r = app
            .append_blocking(AppendRequest {
                stream_id: format!("case-{st}"),
                expected: if v == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(v)
                },
                request_id: format!("req-{i}"),
                actor: Actor {
                    user_id: "u1".into(),
                    office: "BOG".into(),
                },
                events: vec![NewEvent {
                    event_type: if i % 7 == 0 { "PermitIssued" } else { "Step" }.into(),
                    payload: format!("sealed-payload-{i:04}").into_bytes(),
                }],
            })
            .unwrap();
        versions[st] = r.last_version;
    }
    drop(app);
    log.shutdown().unwrap();
}

struct Fixture {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    vkey: String,
    cp: PathBuf,
    root: PathBuf,
}

/// A log, its verifier key and a checkpoint at `EVENTS`.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_log(&data);
    let (code, vkey, err) = registry(&["audit", "key", "--data-dir", s(&data)]);
    assert_eq!(code, 0, "{err}");
    let cp = tmp.path().join("cp.txt");
    let (code, out, err) = registry(&["audit", "checkpoint", "--data-dir", s(&data), "--out", s(&cp)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("\n{EVENTS}\n")), "{out}");
    let root = tmp.path().to_path_buf();
    Fixture {
        data,
        vkey: vkey.trim().to_string(),
        cp,
        root,
        _tmp: tmp,
    }
}

/// Rewrites stored entries (record || hash, in their chunks) through
/// `f(seq, entry) -> Option<new entry>` (None removes the record; the others
/// keep their seqs), then sets the head key to the last record.
fn tamper(data: &Path, f: impl Fn(u64, &[u8]) -> Option<Vec<u8>>) {
    let store = Store::open(data).unwrap();
    let db = store.db();
    let mut removed = Vec::new();
    for seq in 1..=EVENTS {
        let v = chunks::entry(db, seq);
        match f(seq, &v) {
            Some(nv) if nv != v => chunks::put_entry(db, seq, nv),
            Some(_) => {}
            None => removed.push(seq),
        }
    }
    chunks::remove_entries(db, |seq| removed.contains(&seq));
    let (first, entries) = chunks::chunks(db).pop().unwrap();
    let last = entries.last().unwrap();
    let hash: [u8; 32] = last[last.len() - 32..].try_into().unwrap();
    chunks::set_head(db, first + entries.len() as u64 - 1, &hash);
    db.flush().unwrap();
}

/// Changes the last payload byte of `target` and re-chains every later
/// record; the head key, the case files' position and the verified
/// positions are rewritten to the new hash, as a careful forger would.
fn rewrite_and_rechain(data: &Path, target: u64) {
    let store = Store::open(data).unwrap();
    let db = store.db();
    let mut prev = [0u8; 32];
    for seq in 1..=EVENTS {
        let v = chunks::entry(db, seq);
        let mut record = v[..v.len() - 32].to_vec();
        if seq >= target {
            let n = record.len();
            if seq == target {
                record[n - 33] ^= 0x01; // last payload byte (just before prev_hash)
            }
            record[n - 32..].copy_from_slice(&prev);
        }
        let h = chain_hash(&prev, &record);
        if seq >= target {
            let mut nv = record.clone();
            nv.extend_from_slice(&h);
            chunks::put_entry(db, seq, nv);
        }
        prev = h;
    }
    let head = chunks::position_bytes(EVENTS, &prev);
    chunks::set_head(db, EVENTS, &prev);
    db.open_tree("log").unwrap().insert("k", head.clone()).unwrap();
    let meta = db.open_tree("meta").unwrap();
    meta.insert(b"verified", head.clone()).unwrap();
    meta.insert(b"opened_at", head).unwrap();
    db.flush().unwrap();
}

#[test]
fn happy_path_checkpoint_receipt_export_and_verify() {
    let fx = fixture();
    let (code, out, err) = registry(&["verify", "--data-dir", s(&fx.data), "--checkpoint", s(&fx.cp)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("contains the checkpoint's tree"), "{out}");
    // Receipt of a permit event.
    let receipt = fx.root.join("r.tlog-proof");
    let (code, _, err) = registry(&[
        "audit",
        "prove",
        "--data-dir",
        s(&fx.data),
        "--seq",
        "15",
        "--out",
        s(&receipt),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&receipt).unwrap();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
    assert!(text.contains("\nindex 14\n"), "{text}");
    let (code, out, _) = registry(&["audit", "check-receipt", s(&receipt), "--key", &fx.vkey]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: event seq 15 (PermitIssued"), "{out}");
    // Export and offline verification.
    let export = fx.root.join("log.export");
    let (code, out, err) = registry(&["export", "--data-dir", s(&fx.data), "--out", s(&export)]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = registry(&[
        "audit",
        "verify-export",
        s(&export),
        "--checkpoint",
        s(&fx.cp),
        "--key",
        &fx.vkey,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("matches the signed checkpoint"), "{out}");
    // A range export verifies its chain and says the root was not checked.
    let part = fx.root.join("part.export");
    let (code, _, err) = registry(&[
        "export",
        "--data-dir",
        s(&fx.data),
        "--out",
        s(&part),
        "--from",
        "10",
        "--to",
        "20",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = registry(&[
        "audit",
        "verify-export",
        s(&part),
        "--checkpoint",
        s(&fx.cp),
        "--key",
        &fx.vkey,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok (partial)") && out.contains("taken as given"),
        "{out}"
    );
    // Checkpointing again without growth returns the same checkpoint (no new signature needed).
    let (code, out, _) = registry(&["audit", "checkpoint", "--data-dir", s(&fx.data)]);
    assert_eq!(code, 0);
    assert_eq!(out, std::fs::read_to_string(&fx.cp).unwrap());
}

#[test]
fn one_byte_changed_is_reported_at_its_seq() {
    let fx = fixture();
    tamper(&fx.data, |seq, v| {
        let mut v = v.to_vec();
        if seq == 20 {
            let n = v.len();
            v[n - 70] ^= 0x20; // inside the payload
        }
        Some(v)
    });
    let (code, out, _) = registry(&["verify", "--data-dir", s(&fx.data)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("broken at seq 20"), "{out}");
}

#[test]
fn removed_event_is_reported_at_its_seq() {
    let fx = fixture();
    tamper(&fx.data, |seq, v| (seq != 30).then(|| v.to_vec()));
    let (code, out, _) = registry(&["verify", "--data-dir", s(&fx.data)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("broken at seq 30: record missing"), "{out}");
}

#[test]
fn cut_off_tail_passes_the_chain_walk_but_not_an_earlier_checkpoint() {
    let fx = fixture();
    tamper(&fx.data, |seq, v| (seq <= 40).then(|| v.to_vec()));
    // A careful attacker also drops the removed events from the case files
    // and moves the case files' position to the new head.
    {
        let store = Store::open(&fx.data).unwrap();
        let db = store.db();
        for st in 0..5 {
            let stream = format!("case-{st}");
            let mut cf = chunks::case_file(db, &stream).unwrap();
            cf.seqs.retain(|&seq| seq <= 40);
            let n = cf.seqs.len() as u64;
            cf.requests.retain(|&(version, _)| version <= n);
            chunks::put_case_file(db, &stream, &cf);
        }
        let (seq, hash) = chunks::head(db);
        assert_eq!(seq, 40);
        db.open_tree("log")
            .unwrap()
            .insert("k", chunks::position_bytes(seq, &hash))
            .unwrap();
        db.flush().unwrap();
    }
    // The chain alone cannot tell.
    let (code, out, _) = registry(&["verify", "--data-dir", s(&fx.data)]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = registry(&[
        "verify",
        "--data-dir",
        s(&fx.data),
        "--checkpoint",
        s(&fx.cp),
        "--key",
        &fx.vkey,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("events 41..=50 were cut off"), "{out}");
}

#[test]
fn rewritten_and_rechained_tail_is_caught_by_the_merkle_root() {
    let fx = fixture();
    rewrite_and_rechain(&fx.data, 25);
    let (code, out, _) = registry(&["verify", "--data-dir", s(&fx.data)]);
    assert_eq!(code, 0, "the chain walk cannot see a re-chained tail: {out}");
    let (code, out, _) = registry(&["verify", "--data-dir", s(&fx.data), "--checkpoint", s(&fx.cp)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint mismatch"), "{out}");
    assert!(out.contains("the first altered event is seq 25"), "{out}");
    // An export of the rewritten log fails the offline check too.
    let export = fx.root.join("rewritten.export");
    let (code, _, err) = registry(&["export", "--data-dir", s(&fx.data), "--out", s(&export)]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = registry(&[
        "audit",
        "verify-export",
        s(&export),
        "--checkpoint",
        s(&fx.cp),
        "--key",
        &fx.vkey,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint mismatch"), "{out}");
    // Signing again signs nothing new: the tree still holds the leaves it
    // checked when they were appended, so the latest checkpoint is returned as is.
    let (code, out, err) = registry(&["audit", "checkpoint", "--data-dir", s(&fx.data)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, std::fs::read_to_string(&fx.cp).unwrap());
}

#[test]
fn forged_and_wrong_key_checkpoints_are_rejected() {
    let fx = fixture();
    let note = std::fs::read_to_string(&fx.cp).unwrap();
    // Forged signature: one bit of the signature flipped.
    let (body, sig_line) = note.rsplit_once("\n\n").unwrap();
    let (prefix, b64) = sig_line.trim_end().rsplit_once(' ').unwrap();
    let mut raw = B64.decode(b64).unwrap();
    raw[10] ^= 0x01;
    let forged = format!("{body}\n\n{prefix} {}\n", B64.encode(&raw));
    let forged_path = fx.root.join("forged.txt");
    std::fs::write(&forged_path, &forged).unwrap();
    let (code, out, _) = registry(&[
        "verify",
        "--data-dir",
        s(&fx.data),
        "--checkpoint",
        s(&forged_path),
        "--key",
        &fx.vkey,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not verify"), "{out}");
    // Altered body (a larger size) under the real signature.
    let altered = note.replacen(&format!("\n{EVENTS}\n"), &format!("\n{}\n", EVENTS + 1), 1);
    let altered_path = fx.root.join("altered.txt");
    std::fs::write(&altered_path, &altered).unwrap();
    let export = fx.root.join("e.export");
    registry(&["export", "--data-dir", s(&fx.data), "--out", s(&export)]);
    let (code, out, _) = registry(&[
        "audit",
        "verify-export",
        s(&export),
        "--checkpoint",
        s(&altered_path),
        "--key",
        &fx.vkey,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("checkpoint REJECTED") && out.contains("does not verify"),
        "{out}"
    );
    // Signed with another key (same origin): the verifier finds no signature of its key.
    let other = fx.root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (_, other_vkey, _) = registry(&["audit", "key", "--data-dir", s(&other)]);
    let (code, out, _) = registry(&[
        "audit",
        "verify-export",
        s(&export),
        "--checkpoint",
        s(&fx.cp),
        "--key",
        other_vkey.trim(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no signature by key"), "{out}");
}

#[test]
fn receipt_with_one_proof_hash_altered_is_rejected() {
    let fx = fixture();
    let receipt = fx.root.join("r.tlog-proof");
    let (code, _, err) = registry(&[
        "audit",
        "prove",
        "--data-dir",
        s(&fx.data),
        "--seq",
        "33",
        "--out",
        s(&receipt),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&receipt).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let proof_lines: Vec<usize> = (3..lines.len()).take_while(|&i| !lines[i].is_empty()).collect();
    assert!(proof_lines.len() >= 5, "a 50-leaf proof has 5 or 6 hashes");
    for &i in &proof_lines {
        let mut raw = B64.decode(lines[i]).unwrap();
        raw[0] ^= 0x80;
        let mut altered: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        altered[i] = B64.encode(&raw);
        let path = fx.root.join(format!("bad-{i}.tlog-proof"));
        std::fs::write(&path, altered.join("\n") + "\n").unwrap();
        let (code, out, _) = registry(&["audit", "check-receipt", s(&path), "--key", &fx.vkey]);
        assert_eq!(code, 1, "altered proof line {i} accepted: {out}");
        assert!(
            out.contains("receipt REJECTED") && out.contains("differs"),
            "{out}"
        );
    }
    // The record bytes altered: rejected as well.
    let mut altered: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut rec = B64.decode(lines[1].strip_prefix("extra ").unwrap()).unwrap();
    rec[40] ^= 1;
    altered[1] = format!("extra {}", B64.encode(&rec));
    let path = fx.root.join("bad-record.tlog-proof");
    std::fs::write(&path, altered.join("\n") + "\n").unwrap();
    let (code, out, _) = registry(&["audit", "check-receipt", s(&path), "--key", &fx.vkey]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn export_with_a_record_altered_or_removed_is_rejected_with_where() {
    let fx = fixture();
    let export = fx.root.join("log.export");
    let (code, _, err) = registry(&["export", "--data-dir", s(&fx.data), "--out", s(&export)]);
    assert_eq!(code, 0, "{err}");
    let bytes = std::fs::read(&export).unwrap();
    // Locate entry of seq 12.
    let mut off = 32usize;
    let mut entries = Vec::new();
    while off < bytes.len() {
        let len = u32::from_be_bytes(bytes[off + 8..off + 12].try_into().unwrap()) as usize;
        entries.push((off, len));
        off += 12 + len + 32;
    }
    assert_eq!(entries.len() as u64, EVENTS);
    let (o, len) = entries[11];
    let mut altered = bytes.clone();
    altered[o + 12 + len - 40] ^= 0x04; // a payload byte of seq 12
    let path = fx.root.join("altered.export");
    std::fs::write(&path, &altered).unwrap();
    let (code, out, _) = registry(&[
        "audit",
        "verify-export",
        s(&path),
        "--checkpoint",
        s(&fx.cp),
        "--key",
        &fx.vkey,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("export broken at seq 12 (record 12 of the file)"),
        "{out}"
    );
    // An entry removed (and the count fixed up): the seq sequence breaks there.
    let (o, len) = entries[29];
    let mut removed = bytes[..o].to_vec();
    removed.extend_from_slice(&bytes[o + 12 + len + 32..]);
    removed[20..28].copy_from_slice(&(EVENTS - 1).to_be_bytes());
    let path = fx.root.join("removed.export");
    std::fs::write(&path, &removed).unwrap();
    let (code, out, _) = registry(&[
        "audit",
        "verify-export",
        s(&path),
        "--checkpoint",
        s(&fx.cp),
        "--key",
        &fx.vkey,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cut off") || out.contains("seq 30"), "{out}");
    // The file truncated: reported.
    let path = fx.root.join("short.export");
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let (code, out, _) = registry(&[
        "audit",
        "verify-export",
        s(&path),
        "--checkpoint",
        s(&fx.cp),
        "--key",
        &fx.vkey,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("seq 50"), "{out}");
}
