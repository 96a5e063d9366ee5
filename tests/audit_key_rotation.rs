//! Rotation of the audit signing key through the real `registry` binary
//! (docs/AUDIT.md §2a, deploy/runbooks/audit-key-rotation.md): a hand-over
//! signed by both keys, a server started with the new key that keeps signing
//! consistent checkpoints, old checkpoints and receipts still verifiable with
//! the old key, new ones with the old key plus the hand-over; and the
//! refusals: an unrelated key, the old key after the rotation, a hand-over
//! fabricated with the new key alone, tampered hand-overs, a retired key
//! signing past its hand-over.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use registry::api::pb;
use registry::api::pb::audit_client::AuditClient;
use registry::audit::checkpoint::{Checkpoint, NoteSigner, Verifier};
use registry::audit::handover::{handover_body, sign_handover, KeyChain};
use registry::audit::merkle::{verify_consistency, Hash};
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_registry");

fn registry(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
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

/// Runs the binary and requires exit 0; returns standard output.
fn ok(args: &[&str]) -> String {
    let (code, out, err) = registry(args);
    assert_eq!(code, 0, "registry {args:?}: {out}{err}");
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn h(v: &[u8]) -> Hash {
    v.try_into().expect("32-byte hash")
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    master_key: PathBuf,
    old_vkey: String,
    new_vkey: String,
    new_key: PathBuf,
    /// A checkpoint and a receipt issued with the old key before the rotation.
    cp_old: PathBuf,
    receipt_old: PathBuf,
    /// The hand-over note `rotate-key --out` wrote.
    handover: PathBuf,
    /// The tree size of the hand-over.
    size: u64,
}

/// A real caseload (6 persons, through the case service), a checkpoint and
/// a receipt signed with the store's first key, a new key, then
/// `registry audit rotate-key`.
fn rotated() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let data = root.join("data");
    let master_key = root.join("master.key");
    std::fs::write(&master_key, format!("{}\n", common::MASTER_KEY_HEX)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&master_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    ok(&[
        "simulate",
        "--persons",
        "6",
        "--seed",
        "7",
        "--threads",
        "2",
        "--data-dir",
        s(&data),
        "--master-key-file",
        s(&master_key),
    ]);
    let old_vkey = ok(&["audit", "key", "--data-dir", s(&data)]).trim().to_string();
    let cp_old = root.join("cp-old.txt");
    ok(&["audit", "checkpoint", "--data-dir", s(&data), "--out", s(&cp_old)]);
    let receipt_old = root.join("receipt-old.txt");
    ok(&[
        "audit",
        "prove",
        "--data-dir",
        s(&data),
        "--seq",
        "3",
        "--out",
        s(&receipt_old),
    ]);

    let new_key = root.join("keys/new-audit.key");
    let new_vkey = ok(&["audit", "new-key", "--out", s(&new_key)]).trim().to_string();
    assert_ne!(new_vkey, old_vkey);
    // new-key never overwrites a key.
    let (code, _, err) = registry(&["audit", "new-key", "--out", s(&new_key)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refusing to overwrite"), "{err}");

    let handover = root.join("handover-1.txt");
    let (code, out, err) = registry(&[
        "audit",
        "rotate-key",
        "--data-dir",
        s(&data),
        "--new-key-file",
        s(&new_key),
        "--out",
        s(&handover),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let note = std::fs::read_to_string(&handover).unwrap();
    assert_eq!(out, note);
    assert!(err.contains("handed over at tree size"), "{err}");
    let lines: Vec<&str> = note.lines().collect();
    assert_eq!(lines[0], "registry.local/regularization-log");
    assert_eq!(lines[1], "key-handover v1");
    assert_eq!(lines[4], format!("old {old_vkey}"));
    assert_eq!(lines[5], format!("new {new_vkey}"));
    assert!(lines[6].starts_with("time 20"), "{note}");
    assert_eq!(lines[7], "");
    assert_eq!(lines.len(), 10, "two signature lines: {note}");
    let size: u64 = lines[2].strip_prefix("size ").unwrap().parse().unwrap();
    let cp_old_size: u64 = std::fs::read_to_string(&cp_old)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        size, cp_old_size,
        "no event between the checkpoint and the rotation"
    );
    Fixture {
        _tmp: tmp,
        root,
        data,
        master_key,
        old_vkey,
        new_vkey,
        new_key,
        cp_old,
        receipt_old,
        handover,
        size,
    }
}

/// `registry serve` over the fixture's store with `audit_key` (None: the default key path).
fn serve(fx: &Fixture, port: u16, audit_key: Option<&Path>) -> Child {
    let access = fx.root.join("access.json");
    common::write_test_access_file(&access);
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--data-dir",
        s(&fx.data),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--sync",
        "flush",
        "--master-key-file",
        s(&fx.master_key),
        "--access-file",
        s(&access),
        "--metrics-listen",
        "off",
    ]);
    if let Some(k) = audit_key {
        cmd.args(["--audit-key-file", s(k)]);
    }
    cmd.env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn registry serve")
}

fn stop(mut child: Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "server exit: {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the server did not stop within 30 s of SIGTERM");
}

/// A server that must refuse to start: its exit code and standard error.
fn refused(fx: &Fixture, audit_key: Option<&Path>) -> String {
    let mut child = serve(fx, common::free_port(), audit_key);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            assert_eq!(status.code(), Some(2), "{err}");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started with a key it should refuse");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn connect(port: u16, child: &mut Child) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("the server exited ({status}): {err}");
        }
        if let Ok(ch) = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
        {
            let mut a = AuditClient::new(ch.clone());
            if a.get_checkpoint(common::as_role("auditor", pb::GetCheckpointRequest::default()))
                .await
                .is_ok()
            {
                return ch;
            }
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn rotate_then_serve_with_the_new_key_and_verify_across_the_rotation() {
    let fx = rotated();
    let old = Verifier::parse(&fx.old_vkey).unwrap();
    let new = Verifier::parse(&fx.new_vkey).unwrap();
    let note = std::fs::read_to_string(&fx.handover).unwrap();

    // The store lists its hand-over.
    let (code, listed, err) = registry(&["audit", "handovers", "--data-dir", s(&fx.data)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(listed, note);
    assert!(
        err.contains("1 key hand-over(s)") && err.contains(&fx.new_vkey),
        "{err}"
    );
    // The chain verifies from the old key and ends with the new one.
    let out = ok(&[
        "audit",
        "verify-handovers",
        s(&fx.handover),
        "--key",
        &fx.old_vkey,
        "--expect-key",
        &fx.new_vkey,
    ]);
    assert!(out.contains("both signatures verify"), "{out}");
    assert!(
        out.contains(&format!("ok: 1 hand-over(s) from {}", fx.old_vkey)),
        "{out}"
    );

    // The old key (the default key file) no longer starts the server, nor does an unrelated key.
    let err = refused(&fx, None);
    assert!(
        err.contains("this store's audit key is") && err.contains(&fx.new_vkey),
        "{err}"
    );
    let unrelated = fx.root.join("unrelated.key");
    ok(&["audit", "new-key", "--out", s(&unrelated)]);
    let err = refused(&fx, Some(&unrelated));
    assert!(err.contains("this store's audit key is"), "{err}");

    // The new key serves.
    let port = common::free_port();
    let mut child = serve(&fx, port, Some(&fx.new_key));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (cp_new_note, receipt_new, cp_rot_note) = rt.block_on(async {
        let ch = connect(port, &mut child).await;
        let mut audit = AuditClient::new(ch.clone());
        let mut cases = common::CaseworkerClient::new(ch);
        // The hand-over over gRPC.
        let list = audit
            .list_key_handovers(common::as_role("auditor", pb::ListKeyHandoversRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.current_verifier_key, fx.new_vkey);
        assert_eq!(list.handovers.len(), 1);
        let ho = &list.handovers[0];
        assert_eq!(ho.note, note);
        assert_eq!(
            (ho.tree_size, ho.old_verifier_key.as_str()),
            (fx.size, fx.old_vkey.as_str())
        );
        // The checkpoint at the hand-over size is signed by both keys.
        let at = audit
            .get_checkpoint(common::as_role(
                "auditor",
                pb::GetCheckpointRequest {
                    tree_size: Some(fx.size),
                    sign_now: false,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(old.verify_checkpoint(&at.note).unwrap().size, fx.size);
        assert_eq!(new.verify_checkpoint(&at.note).unwrap().size, fx.size);
        assert_eq!(at.verifier_key, fx.new_vkey);
        // New events, then a checkpoint signed now by the new key.
        common::register(&mut cases, "ANA", "V41000001", "2022-03-01").await;
        common::register(&mut cases, "BETO", "V41000002", "2022-03-01").await;
        let mut cp = None;
        for _ in 0..100 {
            let c = audit
                .get_checkpoint(common::as_role(
                    "admin",
                    pb::GetCheckpointRequest {
                        tree_size: None,
                        sign_now: true,
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            if c.tree_size > fx.size {
                cp = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cp = cp.expect("a checkpoint past the rotation");
        assert_eq!(cp.verifier_key, fx.new_vkey);
        let parsed = new.verify_checkpoint(&cp.note).unwrap();
        assert!(
            old.verify_checkpoint(&cp.note).is_err(),
            "only the new key signs now"
        );
        // Consistency across the rotation: from the old key's checkpoint to the new key's.
        let cp_old = old
            .verify_checkpoint(&std::fs::read_to_string(&fx.cp_old).unwrap())
            .unwrap();
        for (from, from_root) in [
            (cp_old.size, cp_old.root),
            (0, registry::audit::merkle::empty_root()),
        ] {
            let proof = audit
                .get_consistency_proof(common::as_role(
                    "auditor",
                    pb::GetConsistencyProofRequest {
                        from_size: from,
                        to_size: parsed.size,
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            let hashes: Vec<Hash> = proof.hashes.iter().map(|x| h(x)).collect();
            assert_eq!(h(&proof.from_root), from_root);
            verify_consistency(from, parsed.size, &from_root, &parsed.root, &hashes).unwrap();
        }
        // A receipt of the new key.
        let r = audit
            .get_receipt(common::as_role("auditor", pb::GetReceiptRequest { seq: 2 }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.tree_size, parsed.size);
        (cp.note, r.text, at.note)
    });
    stop(child);
    // A restart with the new key accepts its own history again.
    let port = common::free_port();
    let mut child = serve(&fx, port, Some(&fx.new_key));
    rt.block_on(async {
        connect(port, &mut child).await;
    });
    stop(child);

    let cp_new = fx.root.join("cp-new.txt");
    std::fs::write(&cp_new, &cp_new_note).unwrap();
    let cp_rot = fx.root.join("cp-rotation.txt");
    std::fs::write(&cp_rot, &cp_rot_note).unwrap();
    let receipt_new_path = fx.root.join("receipt-new.txt");
    std::fs::write(&receipt_new_path, &receipt_new).unwrap();

    // Old receipt and checkpoint: the old key alone, as before.
    let out = ok(&[
        "audit",
        "check-receipt",
        s(&fx.receipt_old),
        "--key",
        &fx.old_vkey,
    ]);
    assert!(out.starts_with("ok: event seq 3"), "{out}");
    let out = ok(&[
        "verify",
        "--data-dir",
        s(&fx.data),
        "--checkpoint",
        s(&fx.cp_old),
        "--key",
        &fx.old_vkey,
    ]);
    assert!(out.contains("contains the checkpoint's tree"), "{out}");
    // New receipt: refused with the old key alone, accepted with the hand-over, or with the new key.
    let (code, out, _) = registry(&[
        "audit",
        "check-receipt",
        s(&receipt_new_path),
        "--key",
        &fx.old_vkey,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("REJECTED") && out.contains("no signature by key"),
        "{out}"
    );
    let out = ok(&[
        "audit",
        "check-receipt",
        s(&receipt_new_path),
        "--key",
        &fx.old_vkey,
        "--handovers",
        s(&fx.handover),
    ]);
    assert!(out.starts_with("ok: event seq 2"), "{out}");
    ok(&[
        "audit",
        "check-receipt",
        s(&receipt_new_path),
        "--key",
        &fx.new_vkey,
    ]);
    // The store against the new checkpoint from the old key: the store's own
    // hand-over is followed and its root recomputed from the log.
    let out = ok(&[
        "verify",
        "--data-dir",
        s(&fx.data),
        "--checkpoint",
        s(&cp_new),
        "--key",
        &fx.old_vkey,
    ]);
    assert!(
        out.contains("1 key hand-over(s) verified and their roots reproduced"),
        "{out}"
    );
    // An export, offline: the old checkpoint with the old key; the new one
    // with the old key and the hand-over (its root recomputed from the export too).
    let export = fx.root.join("log.export");
    ok(&["export", "--data-dir", s(&fx.data), "--out", s(&export)]);
    let out = ok(&[
        "audit",
        "verify-export",
        s(&export),
        "--checkpoint",
        s(&fx.cp_old),
        "--key",
        &fx.old_vkey,
    ]);
    assert!(out.contains("matches the signed checkpoint"), "{out}");
    for cp in [&cp_new, &cp_rot] {
        let (code, out, _) = registry(&[
            "audit",
            "verify-export",
            s(&export),
            "--checkpoint",
            s(cp),
            "--key",
            &fx.old_vkey,
        ]);
        if cp == &cp_new {
            assert_eq!(code, 1, "{out}");
            assert!(out.contains("no signature by key"), "{out}");
        } else {
            // At the hand-over size the checkpoint carries the old key's signature too.
            assert_eq!(code, 0, "{out}");
        }
        let out = ok(&[
            "audit",
            "verify-export",
            s(&export),
            "--checkpoint",
            s(cp),
            "--key",
            &fx.old_vkey,
            "--handovers",
            s(&fx.handover),
        ]);
        assert!(
            out.contains("reached through 1 key hand-over(s); 1 hand-over root(s) recomputed and matched"),
            "{out}"
        );
    }
}

#[test]
fn a_key_that_is_not_the_stores_cannot_hand_over_and_tampered_handovers_are_refused() {
    let fx = rotated();
    let note = std::fs::read_to_string(&fx.handover).unwrap();
    let old_signer =
        NoteSigner::parse_key_file(&std::fs::read_to_string(fx.data.join("audit-signing.key")).unwrap())
            .unwrap();
    let new_signer = NoteSigner::parse_key_file(&std::fs::read_to_string(&fx.new_key).unwrap()).unwrap();

    // Rotating again from the retired key, or from a key the store never had: refused.
    let attacker = fx.root.join("attacker.key");
    let attacker_vkey = ok(&["audit", "new-key", "--out", s(&attacker)])
        .trim()
        .to_string();
    for from in [fx.data.join("audit-signing.key"), attacker.clone()] {
        let (code, out, err) = registry(&[
            "audit",
            "rotate-key",
            "--data-dir",
            s(&fx.data),
            "--audit-key-file",
            s(&from),
            "--new-key-file",
            s(&attacker),
        ]);
        assert_eq!(code, 2, "{out}{err}");
        assert!(
            err.contains("this store's audit key is") && err.contains(&fx.new_vkey),
            "{err}"
        );
    }
    let (_, listed, _) = registry(&["audit", "handovers", "--data-dir", s(&fx.data)]);
    assert_eq!(listed, note, "nothing was recorded by the refused rotations");

    // Tampered hand-overs, each refused by the offline verifier naming what is wrong.
    let check = |name: &str, text: &str, key: &str, want: &[&str]| {
        let path = fx.root.join(name);
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = registry(&["audit", "verify-handovers", s(&path), "--key", key]);
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(
            out.starts_with("hand-overs REJECTED: key hand-over #1: "),
            "{name}: {out}"
        );
        for w in want {
            assert!(out.contains(w), "{name}: expected {w:?} in {out}");
        }
    };
    let size_line = format!("\nsize {}\n", fx.size);
    check(
        "size.txt",
        &note.replacen(&size_line, &format!("\nsize {}\n", fx.size + 1), 1),
        &fx.old_vkey,
        &["not signed by the old key", "does not verify"],
    );
    let mut lines: Vec<&str> = note.lines().collect();
    let new_line = lines.pop().unwrap();
    let old_line = lines.pop().unwrap();
    check(
        "no-new-sig.txt",
        &format!("{}\n{old_line}\n", lines.join("\n")),
        &fx.old_vkey,
        &["not signed by the new key", "no signature by key"],
    );
    check(
        "no-old-sig.txt",
        &format!("{}\n{new_line}\n", lines.join("\n")),
        &fx.old_vkey,
        &["not signed by the old key", "no signature by key"],
    );
    check(
        "other-chain.txt",
        &note,
        &attacker_vkey,
        &["hands over from key", "but the key at this point of the chain is"],
    );
    // An attacker holding only the new key writes their own hand-over from
    // the old key to a key of theirs: the old key's signature is missing.
    let forged_body = handover_body(
        &old_signer.name,
        fx.size,
        &[0; 32],
        old_signer.verifier(),
        new_signer.verifier(),
        "2030-01-01T00:00:00Z",
    );
    check(
        "forged.txt",
        &new_signer.sign_body(&forged_body),
        &fx.old_vkey,
        &["not signed by the old key", "no signature by key"],
    );
    // The chain ends with another key than the one announced.
    let (code, out, _) = registry(&[
        "audit",
        "verify-handovers",
        s(&fx.handover),
        "--key",
        &fx.old_vkey,
        "--expect-key",
        &attacker_vkey,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REJECTED: the chain ends with key"), "{out}");

    // The retired key signs past its hand-over (e.g. it leaked): not accepted through the chain.
    let late = old_signer.sign_checkpoint(&Checkpoint {
        origin: old_signer.name.clone(),
        size: fx.size + 5,
        root: [9; 32],
    });
    let late_path = fx.root.join("late.txt");
    std::fs::write(&late_path, late).unwrap();
    let export = fx.root.join("log.export");
    ok(&["export", "--data-dir", s(&fx.data), "--out", s(&export)]);
    let (code, out, _) = registry(&[
        "audit",
        "verify-export",
        s(&export),
        "--checkpoint",
        s(&late_path),
        "--key",
        &fx.old_vkey,
        "--handovers",
        s(&fx.handover),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "is signed by {}, which the key hand-overs allow for sizes 0..={} only",
            fx.old_vkey, fx.size
        )),
        "{out}"
    );
}

#[test]
fn a_handover_fabricated_with_the_new_key_alone_is_refused_by_the_store() {
    let fx = rotated();
    // A second store whose only key is the old one, and an attacker who can
    // write into it and holds the key they want to hand over to, not the old key.
    let other = fx.root.join("other");
    ok(&[
        "simulate",
        "--persons",
        "2",
        "--seed",
        "3",
        "--threads",
        "1",
        "--data-dir",
        s(&other),
        "--master-key-file",
        s(&fx.master_key),
    ]);
    let cp = fx.root.join("other-cp.txt");
    ok(&["audit", "checkpoint", "--data-dir", s(&other), "--out", s(&cp)]);
    let old = NoteSigner::parse_key_file(&std::fs::read_to_string(other.join("audit-signing.key")).unwrap())
        .unwrap();
    let attacker_file = fx.root.join("attacker.key");
    ok(&["audit", "new-key", "--out", s(&attacker_file)]);
    let attacker = NoteSigner::parse_key_file(&std::fs::read_to_string(&attacker_file).unwrap()).unwrap();
    let cp_text = std::fs::read_to_string(&cp).unwrap();
    let parsed = old.verifier().verify_checkpoint(&cp_text).unwrap();
    {
        let db = common::open_store(&other);
        let body = handover_body(
            &old.name,
            parsed.size,
            &parsed.root,
            old.verifier(),
            attacker.verifier(),
            "2030-01-01T00:00:00Z",
        );
        db.db()
            .open_tree("key_handovers")
            .unwrap()
            .insert(1u64.to_be_bytes(), attacker.sign_body(&body).as_bytes())
            .unwrap();
        db.db().flush().unwrap();
    }
    for args in [
        vec![
            "audit",
            "checkpoint",
            "--data-dir",
            s(&other),
            "--audit-key-file",
            s(&attacker_file),
        ],
        vec!["audit", "handovers", "--data-dir", s(&other)],
    ] {
        let (code, out, err) = registry(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("key hand-over #1: not signed by the old key"),
            "{args:?}: {err}"
        );
    }
    // A genuine hand-over (both keys) in a chain object for comparison: accepted.
    let genuine = sign_handover(&old, &attacker, parsed.size, &parsed.root, "2030-01-01T00:00:00Z");
    assert!(KeyChain::follow(old.verifier().clone(), &[genuine]).is_ok());
}
