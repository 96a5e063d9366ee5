//! End-to-end with an independent client: the Python client in
//! `clients/python/lifecycle.py` (stubs generated from the proto by
//! grpc_tools) runs a case against the real server.
//!
//! Needs `target/pyenv` (created by `.ci/run` from
//! `clients/python/requirements.txt`). Without it the test is skipped with a
//! notice, except in CI (env `CI` set), where it fails.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const PYTHON_RUN_MAX: Duration = Duration::from_secs(120);

#[tokio::test]
async fn python_client_runs_a_case_against_the_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/pyenv/bin/python");
    let script = root.join("clients/python/lifecycle.py");
    assert!(script.exists(), "{} is missing", script.display());
    if !python.exists() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{} is missing: CI must create it (python3 -m venv target/pyenv && \
                 target/pyenv/bin/pip install -r clients/python/requirements.txt)",
                python.display()
            );
        }
        eprintln!(
            "notice: skipping the Python client test: {} not found. Create it with \
             `python3 -m venv target/pyenv && target/pyenv/bin/pip install -r clients/python/requirements.txt`",
            python.display()
        );
        return;
    }

    let server = TestServer::start().await;
    // The server must be serving before the client's 20 s readiness wait starts.
    drop(server.client().await);
    let address = server.address();
    let token = server.token("supervisor");
    let out_dir = tempfile::tempdir().expect("temp dir");
    let (stdout_path, stderr_path) = (out_dir.path().join("stdout"), out_dir.path().join("stderr"));
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(&address)
            .current_dir(root)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("REGISTRY_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("start the Python client");
        let deadline = Instant::now() + PYTHON_RUN_MAX;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the Python client") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the Python client ran longer than {PYTHON_RUN_MAX:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (
            status,
            std::fs::read_to_string(&stdout_path).unwrap_or_default(),
            std::fs::read_to_string(&stderr_path).unwrap_or_default(),
        )
    })
    .await
    .expect("the Python client runner");
    server.stop().await;

    let summary = stdout
        .lines()
        .find(|l| l.starts_with("python client: "))
        .unwrap_or_else(|| panic!("no summary line\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    assert!(
        status.success(),
        "the Python client failed ({status}): {summary}\nstderr:\n{stderr}"
    );
    let passed: u32 = summary
        .trim_start_matches("python client: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("malformed summary: {summary}"));
    assert!(summary.ends_with(", 0 failed"), "{summary}\nstderr:\n{stderr}");
    assert!(passed >= 40, "the client ran its checks: {summary}");
}
