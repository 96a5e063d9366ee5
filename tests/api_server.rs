//! End-to-end: the server's own life cycle around the caseworker API —
//! dropping an opened registry (what happens to `serve_on`'s state on any
//! error after the store is opened, or when its future is cancelled) must not
//! hang the process; a stopped server restarts on its data; a break found
//! while serving stops the server.

#[path = "support/chunks.rs"]
mod chunks;
mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use registry::api::pb;
use registry::log::SyncMode;
use registry::server::{serve_on, serve_opened, ServeConfig};

const DROP_MAX: Duration = Duration::from_secs(10);

/// `server::Opened { log, cases }` drops `log` first: `Log::drop` joins the
/// writer thread, which only stops once every `Appender` is gone, and
/// `cases` (dropped second) still holds one. So dropping an `Opened` blocks
/// forever: `serve_on` hangs instead of returning an error raised after the
/// store is opened (audit start-up, reflection, serve errors), and a
/// cancelled `serve_on` future hangs the runtime holding it.
#[test]
fn dropping_an_opened_registry_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let opened = registry::server::open(
            &dir,
            SyncMode::Flush,
            registry::pii::MasterKey::from_bytes([7; 32]),
        )
        .expect("open the registry");
        drop(opened);
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(DROP_MAX).is_ok(),
        "drop(Opened) did not return within {DROP_MAX:?}"
    );
}

/// The same through the public entry point: a cancelled `serve_on` future
/// must be dropped promptly (it hangs whether cancelled while opening the
/// store, after 5 ms, or while serving, after 300 ms).
#[test]
fn cancelling_serve_on_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("master.key");
    std::fs::write(&key_file, MASTER_KEY_HEX).unwrap();
    let data_dir = tmp.path().join("data");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut config = ServeConfig::new(data_dir, listener.local_addr().unwrap());
            config.sync = SyncMode::Flush;
            config.master_key_file = Some(key_file);
            let server = tokio::spawn(async move {
                serve_on(config, listener, std::future::pending())
                    .await
                    .map_err(|e| e.to_string())
            });
            // Let it get into opening the store, then cancel it.
            tokio::time::sleep(Duration::from_millis(5)).await;
            server.abort();
            let _ = server.await;
        });
        drop(rt);
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(DROP_MAX).is_ok(),
        "a cancelled serve_on did not let its runtime shut down within {DROP_MAX:?}"
    );
}

/// A server stopped through its shutdown future stops promptly, also with a
/// client still connected, and serves the same data after a restart.
#[tokio::test]
async fn a_stopped_server_restarts_on_its_data() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let t = register(&mut c, "VALERIA", "V93000001", "2022-03-01").await;
    let tmp = server.stop().await;
    drop(c);

    // Restart on the same directory and master key.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = ServeConfig::new(tmp.path().join("data"), addr);
    config.sync = SyncMode::Flush;
    config.master_key_file = Some(tmp.path().join("master.key"));
    config.access_file = Some(tmp.path().join("access.json"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve_on(config, listener, async move {
            let _ = stop_rx.await;
        })
        .await
        .map_err(|e| e.to_string())
    });
    let mut c = CaseworkerClient::connect(format!("http://{addr}")).await.unwrap();
    let case = ok(c.get_case(req(get_case_request(&t.case_id))).await);
    assert_eq!(case.version, 1);
    assert_eq!(case.person.unwrap().given_names, "VALERIA");
    let r = ok(c
        .pre_register(req(pb::PreRegisterRequest {
            header: header(&t.case_id, 1, "2022-03-02"),
            channel: "ETPV".into(),
            basis: pb::EligibilityBasis::Pip as i32,
        }))
        .await);
    // seq t.last_seq + 1 is the access event of the read above.
    assert_eq!((r.version, r.first_seq), (2, t.last_seq + 2));
    drop(c);
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the restarted server stops")
        .unwrap()
        .expect("clean exit");
}

/// Someone with write access to the running store rewrites a record the
/// server just committed. The tail verifier's next step (every second) finds
/// the break; the server stops serving (its future returns an error naming
/// the break), clients get UNAVAILABLE, nothing is appended after it, and the
/// next start refuses the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_found_while_serving_stops_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let access_file = tmp.path().join("access.json");
    write_test_access_file(&access_file);
    let key = || registry::pii::MasterKey::from_bytes([7; 32]);
    let dir = data_dir.clone();
    let opened = tokio::task::spawn_blocking(move || {
        registry::server::open(&dir, SyncMode::Flush, key()).map_err(|e| e.to_string())
    })
    .await
    .unwrap()
    .expect("open the registry");
    // The attacker's handle on the same sled database.
    let store = opened.log.store().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = ServeConfig::new(data_dir.clone(), addr);
    config.sync = SyncMode::Flush;
    config.access_file = Some(access_file);
    let server = tokio::spawn(async move {
        serve_opened(config, listener, opened, std::future::pending())
            .await
            .map_err(|e| e.to_string())
    });
    let mut c = CaseworkerClient::connect(format!("http://{addr}")).await.unwrap();

    // Flip a payload byte of the record just committed. If a verifier step
    // already read it before the flip, that step passes it (the verified
    // position moves past it without a break): put it back and try again.
    let mut tampered = None;
    for i in 0..30 {
        let t = register(&mut c, "VALERIA", &format!("V93{i:06}"), "2022-03-01").await;
        let seq = t.last_seq;
        let original = chunks::entry(store.db(), seq);
        chunks::flip_payload_byte(store.db(), seq);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if server.is_finished() {
                tampered = Some(seq);
                break;
            }
            if store.verified().unwrap().seq >= seq {
                chunks::put_entry(store.db(), seq, original);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server neither stopped nor verified seq {seq} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if tampered.is_some() {
            break;
        }
    }
    let seq = tampered.expect("the verifier checked every record before it could be rewritten");
    let stopped = server.await.unwrap();
    let message = stopped.expect_err("a server that found a break must not exit cleanly");
    assert!(
        message.contains("failed verification while open")
            && message.contains(&format!("broken at seq {seq}: hash mismatch")),
        "{message}"
    );
    let after = c.get_case(req(get_case_request("any"))).await;
    assert_eq!(
        after.expect_err("a stopped server answers nothing").code(),
        tonic::Code::Unavailable
    );
    assert_eq!(
        store.head().unwrap().seq,
        seq,
        "nothing was appended after the break"
    );
    drop(store);

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match registry::server::open(&data_dir, SyncMode::Flush, key()) {
            Ok(_) => panic!("the next start accepted the broken log"),
            Err(e) if e.to_string().contains("refusing to serve a broken log") => {
                assert!(e.to_string().contains(&format!("broken at seq {seq}")), "{e}");
                break;
            }
            // sled's file lock is released a moment after the last handle.
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("expected the start to refuse the broken log, got {e}"),
        }
    }
}
