//! The `regularization.v1.Audit` gRPC service over a real server: checkpoints,
//! proofs that verify against them, events as stored, VerifyLog, TailLog,
//! receipts, and error codes.

mod common;

use std::time::Duration;

use registry::api::pb;
use registry::api::pb::audit_client::AuditClient;
use registry::audit::checkpoint::Verifier;
use registry::audit::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use registry::audit::receipt::Receipt;
use registry::log::SyncMode;
use registry::server::{serve_on, ServeConfig};
use tonic::Code;

fn h(v: &[u8]) -> Hash {
    v.try_into().expect("32-byte hash")
}

/// A real caseload (the server decodes events at start-up), written through
/// the case service with the given master key. Returns the head seq.
fn make_log(dir: &std::path::Path, key_file: &std::path::Path) -> u64 {
    let report = registry::simulate::run(&registry::simulate::SimulateOptions {
        threads: 2,
        sync: SyncMode::Flush,
        master_key_file: Some(key_file.to_path_buf()),
        progress: false,
        ..registry::simulate::SimulateOptions::new(6, 7, dir)
    })
    .unwrap();
    report.head_seq
}

#[test]
fn audit_service_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key_file = tmp.path().join("master.key");
    std::fs::write(&key_file, format!("{}\n", "11".repeat(32))).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let events = make_log(&data, &key_file);
    assert!(events >= 20, "caseload too small: {events}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let access_file = tmp.path().join("access.json");
    common::write_test_access_file(&access_file);
    let mut config = ServeConfig::new(data.clone(), addr);
    config.sync = SyncMode::Flush;
    config.master_key_file = Some(key_file);
    config.access_file = Some(access_file);
    let server = std::thread::spawn(move || {
        let srt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        srt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            serve_on(config, listener, async move {
                let _ = stop_rx.await;
            })
            .await
            .map_err(|e| e.to_string())
        })
    });
    let server = rt.block_on(async move {
        let mut client = None;
        for _ in 0..100 {
            let options = registry::client::ClientOptions {
                target: format!("http://{addr}"),
                token: Some(common::test_token("auditor")),
                ..Default::default()
            };
            match registry::client::connect(&options, Duration::ZERO).await {
                Ok(c) => {
                    client = Some(AuditClient::new(c));
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let mut c = client.expect("server up");
        tokio::time::sleep(Duration::from_millis(50)).await;
        if server.is_finished() {
            panic!("server stopped: {:?}", server.join());
        }

        // Checkpoint at start-up covers the whole log and verifies with the served key.
        let cp = c
            .get_checkpoint(pb::GetCheckpointRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cp.tree_size, events);
        let v = Verifier::parse(&cp.verifier_key).unwrap();
        let parsed = v.verify_checkpoint(&cp.note).unwrap();
        assert_eq!(parsed.root.to_vec(), cp.root_hash);
        let at = c
            .get_checkpoint(pb::GetCheckpointRequest {
                tree_size: Some(events),
                sign_now: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(at.note, cp.note);
        let e = c
            .get_checkpoint(pb::GetCheckpointRequest {
                tree_size: Some(7),
                sign_now: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);

        // Events exactly as stored; inclusion proofs verify against the checkpoint.
        let page = c
            .get_events(pb::GetEventsRequest {
                from_seq: 1,
                limit: 1000,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.events.len() as u64, events);
        assert_eq!(page.head_seq, events);
        for ev in &page.events {
            let p = c
                .get_inclusion_proof(pb::GetInclusionProofRequest {
                    seq: ev.seq,
                    tree_size: 0,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(p.leaf_hash, leaf_hash(&ev.record).to_vec());
            let hashes: Vec<Hash> = p.hashes.iter().map(|x| h(x)).collect();
            verify_inclusion(&leaf_hash(&ev.record), ev.seq - 1, events, &hashes, &parsed.root).unwrap();
        }
        // Consistency between every earlier size and the checkpoint.
        for m in 0..=events {
            let p = c
                .get_consistency_proof(pb::GetConsistencyProofRequest {
                    from_size: m,
                    to_size: events,
                })
                .await
                .unwrap()
                .into_inner();
            let hashes: Vec<Hash> = p.hashes.iter().map(|x| h(x)).collect();
            verify_consistency(m, events, &h(&p.from_root), &parsed.root, &hashes).unwrap();
        }

        // Errors name fields / use the right codes.
        let e = c
            .get_inclusion_proof(pb::GetInclusionProofRequest { seq: 0, tree_size: 5 })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let e = c
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                seq: 3,
                tree_size: events + 10,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        let e = c
            .get_events(pb::GetEventsRequest {
                from_seq: 1,
                limit: 1001,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let e = c
            .get_consistency_proof(pb::GetConsistencyProofRequest {
                from_size: 9,
                to_size: 3,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);

        // A receipt checks offline.
        let r = c
            .get_receipt(pb::GetReceiptRequest { seq: 17 })
            .await
            .unwrap()
            .into_inner();
        let rep = Receipt::parse(&r.text).unwrap().verify(&v).unwrap();
        assert_eq!(rep.seq, 17);

        // VerifyLog streams a final OK result.
        let mut stream = c.verify_log(pb::VerifyLogRequest {}).await.unwrap().into_inner();
        let mut last = None;
        while let Some(msg) = stream.message().await.unwrap() {
            last = Some(msg);
        }
        let last = last.unwrap();
        assert_eq!(last.phase, "done");
        let res = last.result.unwrap();
        assert!(res.ok, "{res:?}");
        assert!(res.tree_matches);
        assert_eq!(res.events, events);
        assert_eq!(res.root_hash, cp.root_hash);

        // TailLog from a position sends the stored records in order, then waits.
        let mut tail = c
            .tail_log(pb::TailLogRequest { from_seq: events - 9 })
            .await
            .unwrap()
            .into_inner();
        for seq in events - 9..=events {
            let ev = tail.message().await.unwrap().unwrap();
            assert_eq!(ev.seq, seq);
            assert_eq!(ev.record, page.events[seq as usize - 1].record);
        }
        let waited = tokio::time::timeout(Duration::from_millis(300), tail.message()).await;
        assert!(waited.is_err(), "the tail stays open waiting for new events");
        drop(tail);

        let _ = stop_tx.send(());
        server
    });
    server.join().unwrap().unwrap();
}
