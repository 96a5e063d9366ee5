//! End-to-end: the server's own life cycle around the caseworker API —
//! dropping an opened registry (what happens to `serve_on`'s state on any
//! error after the store is opened, or when its future is cancelled) must not
//! hang the process.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use registry::api::pb;
use registry::log::SyncMode;
use registry::server::{serve_on, ServeConfig};

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
