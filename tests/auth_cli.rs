//! The administration commands through the real binary: `registry access
//! token add/revoke/list` against a running server's access file, and
//! `registry keys generate/rotate` on a stopped store.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use registry::api::pb;
use tonic::Code;

fn registry(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(args)
        .output()
        .expect("run registry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_added_by_the_command_works_at_once_and_stops_working_when_revoked() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let access = server.access_file();
    let dir = access.parent().unwrap().to_path_buf();
    let token_file = dir.join("cw.token");
    let out = registry(&[
        "access",
        "token",
        "add",
        "--access-file",
        access.to_str().unwrap(),
        "--principal",
        "u-cli-0001",
        "--role",
        "caseworker",
        "--office",
        "MED-01",
        "--department",
        "05",
        "--out",
        token_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    assert!(token.starts_with("rgt_"));
    assert!(
        !std::fs::read_to_string(&access).unwrap().contains(&token),
        "only the hash is stored"
    );
    let id = String::from_utf8_lossy(&out.stderr)
        .split_whitespace()
        .find(|w| w.starts_with("tok-"))
        .expect("the command names the token id")
        .to_string();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let list = |token: &str| {
        let mut r = tonic::Request::new(pb::ListCaseEventsRequest {
            case_id: "C-00000000000000000000".into(),
            from_version: 0,
            limit: 0,
        });
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    // Scoped to Antioquia: a missing case is PERMISSION_DENIED (not NOT_FOUND) — the token is accepted.
    assert_eq!(
        c.list_case_events(list(&token)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let listed = registry(&[
        "access",
        "token",
        "list",
        "--access-file",
        access.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains(&id) && text.contains("u-cli-0001") && text.contains("05"),
        "{text}"
    );
    assert!(!text.contains(&token));
    let out = registry(&[
        "access",
        "token",
        "revoke",
        "--access-file",
        access.to_str().unwrap(),
        "--id",
        &id,
    ]);
    assert!(out.status.success());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        c.list_case_events(list(&token)).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let listed = registry(&[
        "access",
        "token",
        "list",
        "--access-file",
        access.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("revoked"));
    // Bad input: an unknown role or department is refused and the file unchanged.
    let before = std::fs::read(&access).unwrap();
    for bad in [
        ["--role", "boss", "--department", "05"],
        ["--role", "caseworker", "--department", "12"],
    ] {
        let out = registry(&[
            "access",
            "token",
            "add",
            "--access-file",
            access.to_str().unwrap(),
            "--principal",
            "u-x",
            "--office",
            "X",
            bad[0],
            bad[1],
            bad[2],
            bad[3],
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(bad[0]) || err.contains(bad[2]), "{err}");
    }
    assert_eq!(std::fs::read(&access).unwrap(), before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_rewraps_a_stopped_store_and_the_server_then_needs_the_new_key() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let t = register(&mut c, "ROTA", "V85000001", "2022-03-01").await;
    drop(c);
    let tmp = server.stop().await;
    let data = tmp.path().join("data");
    let old = tmp.path().join("master.key");
    let new = tmp.path().join("new.key");
    let out = registry(&["keys", "generate", "--out", new.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = registry(&["keys", "generate", "--out", new.to_str().unwrap()]);
    assert!(!out.status.success(), "generate refuses to overwrite a key");
    let out = registry(&[
        "keys",
        "rotate",
        "--data-dir",
        data.to_str().unwrap(),
        "--master-key-file",
        old.to_str().unwrap(),
        "--new-key-file",
        new.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 keys re-wrapped"));
    let store = open_store(&data);
    let head = store.head().unwrap().seq;
    assert_eq!(head, t.last_seq, "no event was written or changed");
    assert!(
        registry::pii::KeyStore::open(store.db(), registry::pii::MasterKey::load(&old).unwrap()).is_err()
    );
    let keys =
        registry::pii::KeyStore::open(store.db(), registry::pii::MasterKey::load(&new).unwrap()).unwrap();
    assert!(keys.get(&t.case_id).unwrap().is_some());
}
