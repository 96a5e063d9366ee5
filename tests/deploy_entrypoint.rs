//! The container image's entrypoint (deploy/container/entrypoint.sh), run
//! with bash against the built binary, as the image runs it: environment
//! variables (read by `registry serve` itself), secret files found by name,
//! or a mounted config file (REGISTRY_CONFIG) configure the server; the
//! `healthcheck` mode (the image's HEALTHCHECK) and `registry health` say
//! SERVING only while the server serves; SIGTERM ends it with exit 0; a
//! stopped address fails the check. The image itself is not built here (no
//! container engine on the test machine): deploy/README.md.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

const BIN: &str = env!("CARGO_BIN_EXE_registry");

fn entrypoint() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/container/entrypoint.sh")
}

/// A port free on loopback a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `bash entrypoint.sh ARGS` with a clean environment plus `env`.
fn entrypoint_command(env: &[(&str, String)], args: &[&str]) -> Command {
    let mut command = Command::new("bash");
    command
        .arg(entrypoint())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REGISTRY_BIN", BIN);
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Starts the server through the entrypoint; its output goes to files in `logs`.
fn start(env: &[(&str, String)], logs: &Path) -> Child {
    entrypoint_command(env, &[])
        .stdin(Stdio::null())
        .stdout(File::create(logs.join("stdout")).unwrap())
        .stderr(File::create(logs.join("stderr")).unwrap())
        .spawn()
        .expect("start the entrypoint")
}

fn stderr_of(logs: &Path) -> String {
    std::fs::read_to_string(logs.join("stderr")).unwrap_or_default()
}

/// `registry health ARGS`.
fn health(args: &[&str]) -> Output {
    Command::new(BIN).arg("health").args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Runs `check` until it reports SERVING (exit 0), failing if the server exits first.
fn wait_serving(server: &mut Child, logs: &Path, check: impl Fn() -> Output) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            panic!(
                "the server exited ({status}) before serving:\n{}",
                stderr_of(logs)
            );
        }
        let output = check();
        if output.status.success() {
            return output;
        }
        assert!(
            Instant::now() < deadline,
            "not SERVING after 120 s: {output:?}\n{}",
            stderr_of(logs)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends SIGTERM and waits (at most 60 s) for the exit status.
fn terminate(server: &mut Child) -> ExitStatus {
    let sent = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            panic!("the server did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn generate_master_key(path: &Path) {
    let out = Command::new(BIN)
        .args(["keys", "generate", "--out"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "keys generate: {out:?}");
}

/// The environment of a server on 127.0.0.1:`port` over `dir`/data.
fn base_env(dir: &Path, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("REGISTRY_DATA_DIR", dir.join("data").display().to_string()),
        ("REGISTRY_LISTEN", format!("127.0.0.1:{port}")),
        ("REGISTRY_SECRETS_DIR", dir.join("secrets").display().to_string()),
        ("REGISTRY_SYNC", "flush".into()),
        ("REGISTRY_METRICS_LISTEN", "off".into()),
        ("REGISTRY_LOG_FORMAT", "json".into()),
    ]
}

#[test]
fn serves_from_environment_reports_health_and_stops_with_exit_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    generate_master_key(&key);
    let port = free_port();
    let target = format!("http://127.0.0.1:{port}");
    let mut env = base_env(dir.path(), port);
    env.push(("REGISTRY_MASTER_KEY_FILE", key.display().to_string()));
    env.push(("REGISTRY_DISK_RESERVE_MIB", "1".into()));

    let mut server = start(&env, dir.path());
    let live = wait_serving(&mut server, dir.path(), || health(&["--target", &target]));
    assert_eq!(stdout(&live), "SERVING");

    let ready = health(&["--target", &target, "--service", "regularization.v1.Caseworker"]);
    assert!(ready.status.success(), "readiness: {ready:?}");
    assert_eq!(stdout(&ready), "SERVING");

    // The image's HEALTHCHECK: the entrypoint's own mode, from the same environment.
    let check = entrypoint_command(&env, &["healthcheck"]).output().unwrap();
    assert!(check.status.success(), "healthcheck: {check:?}");
    assert_eq!(stdout(&check), "SERVING");
    let check = entrypoint_command(&env, &["healthcheck", "regularization.v1.Import"])
        .output()
        .unwrap();
    assert!(check.status.success(), "healthcheck Import: {check:?}");

    // A service the server does not know is not SERVING.
    let unknown = health(&["--target", &target, "--service", "regularization.v1.Nothing"]);
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    assert_eq!(stdout(&unknown), "SERVICE_UNKNOWN");

    let status = terminate(&mut server);
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        stderr_of(dir.path())
    );
    let logs = stderr_of(dir.path());
    assert!(logs.contains("shutting down"), "{logs}");
    // The settings reached the server: the store and the access file are in the data directory.
    assert!(dir.path().join("data/db").exists());
    assert!(dir.path().join("data/access.json").exists());
    assert!(
        !dir.path().join("data/master.key").exists(),
        "a development key was created despite the master key file"
    );

    // The address is stopped: the check fails, with no status on stdout.
    let down = health(&["--target", &target, "--timeout", "2"]);
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert_eq!(stdout(&down), "");
    let down = entrypoint_command(&env, &["healthcheck"]).output().unwrap();
    assert_eq!(down.status.code(), Some(1), "{down:?}");

    // A first argument that is not a flag runs that command: verify the stopped store.
    let verify = entrypoint_command(&env, &["verify", "--data-dir", &env[0].1])
        .output()
        .unwrap();
    assert!(verify.status.success(), "verify: {verify:?}");
    assert!(stdout(&verify).starts_with("ok: "), "{verify:?}");
}

#[test]
fn health_of_an_address_nobody_serves_fails() {
    let port = free_port();
    let down = health(&["--target", &format!("http://127.0.0.1:{port}"), "--timeout", "2"]);
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert_eq!(stdout(&down), "");
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("cannot connect"),
        "{down:?}"
    );
}

/// A CA and a server certificate for `localhost`, written as the secret
/// files the image reads: tls.crt, tls.key, ca.crt.
fn write_tls_secrets(secrets: &Path) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "registry test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(secrets.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(secrets.join("tls.key"), key.serialize_pem()).unwrap();
    std::fs::write(secrets.join("ca.crt"), ca.pem()).unwrap();
}

#[test]
fn secret_files_by_their_default_names_give_tls_and_the_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    generate_master_key(&secrets.join("master.key"));
    write_tls_secrets(&secrets);
    let port = free_port();
    let env = base_env(dir.path(), port);

    let mut server = start(&env, dir.path());
    let check = wait_serving(&mut server, dir.path(), || {
        entrypoint_command(&env, &["healthcheck"]).output().unwrap()
    });
    assert_eq!(stdout(&check), "SERVING");
    assert!(
        stderr_of(dir.path()).contains("\"tls\":true"),
        "{}",
        stderr_of(dir.path())
    );

    let https = format!("https://127.0.0.1:{port}");
    let ca = secrets.join("ca.crt").display().to_string();
    let ready = health(&[
        "--target",
        &https,
        "--tls-ca",
        &ca,
        "--tls-domain",
        "localhost",
        "--service",
        "regularization.v1.Caseworker",
    ]);
    assert!(ready.status.success(), "readiness over TLS: {ready:?}");
    // Without the CA, or in plaintext, the check fails.
    let no_ca = health(&["--target", &https]);
    assert_eq!(no_ca.status.code(), Some(1), "{no_ca:?}");
    let plain = health(&["--target", &format!("http://127.0.0.1:{port}"), "--timeout", "3"]);
    assert_eq!(plain.status.code(), Some(1), "{plain:?}");

    let status = terminate(&mut server);
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        stderr_of(dir.path())
    );
    assert!(!dir.path().join("data/master.key").exists());
}

#[test]
fn refuses_to_start_without_a_master_key() {
    // The entrypoint sets REGISTRY_ALLOW_DEVELOPMENT_MASTER_KEY=false: the
    // server refuses to start, before it creates anything.
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(dir.path(), free_port());
    let out = entrypoint_command(&env, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("master_key_file: no master key"), "{out:?}");
    assert!(!dir.path().join("data").exists(), "nothing may be created");

    // A named key file that is missing is an error too, not a fallback.
    let mut env = base_env(dir.path(), free_port());
    let absent = dir.path().join("absent.key").display().to_string();
    env.push(("REGISTRY_MASTER_KEY_FILE", absent.clone()));
    let out = entrypoint_command(&env, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("master_key_file: {absent}: ")),
        "{out:?}"
    );
    assert!(!dir.path().join("data").exists());

    // REGISTRY_ALLOW_DEVELOPMENT_MASTER_KEY=true lets the server create a development key.
    let port = free_port();
    let mut env = base_env(dir.path(), port);
    env.push(("REGISTRY_ALLOW_DEVELOPMENT_MASTER_KEY", "true".into()));
    let mut server = start(&env, dir.path());
    let target = format!("http://127.0.0.1:{port}");
    wait_serving(&mut server, dir.path(), || health(&["--target", &target]));
    let status = terminate(&mut server);
    assert!(status.success(), "{status}\n{}", stderr_of(dir.path()));
    assert!(dir.path().join("data/master.key").exists());
}

#[test]
fn a_mounted_config_file_is_read_by_the_server_and_not_overridden() {
    // With REGISTRY_CONFIG the entrypoint adds nothing: the file sets the
    // data directory and address; a master.key in the secrets directory is
    // not picked up by name (the file names another key).
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("master.key"), "not a key\n").unwrap();
    let key = dir.path().join("file.key");
    generate_master_key(&key);
    let port = free_port();
    let config = dir.path().join("registry.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:{port}\"\nsync = \"flush\"\nmaster_key_file = {:?}\n\
             allow_development_master_key = false\nlog_format = \"json\"\n[metrics]\nlisten = \"off\"\n",
            dir.path().join("from-file").display().to_string(),
            key.display().to_string(),
        ),
    )
    .unwrap();
    let env = vec![
        ("REGISTRY_CONFIG", config.display().to_string()),
        ("REGISTRY_SECRETS_DIR", secrets.display().to_string()),
    ];
    let mut server = start(&env, dir.path());
    let target = format!("http://127.0.0.1:{port}");
    let live = wait_serving(&mut server, dir.path(), || health(&["--target", &target]));
    assert_eq!(stdout(&live), "SERVING");
    let status = terminate(&mut server);
    assert!(status.success(), "{status}\n{}", stderr_of(dir.path()));
    assert!(dir.path().join("from-file/db").exists());
    assert!(!dir.path().join("from-file/master.key").exists());
    assert!(
        stderr_of(dir.path()).contains("\"config_file\""),
        "{}",
        stderr_of(dir.path())
    );
}

#[test]
fn plaintext_off_loopback_is_refused_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    generate_master_key(&key);
    let mut env = base_env(dir.path(), 0);
    env[1].1 = format!("0.0.0.0:{}", free_port());
    env.push(("REGISTRY_MASTER_KEY_FILE", key.display().to_string()));
    let out = entrypoint_command(&env, &[]).output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to serve plaintext"),
        "{out:?}"
    );
}

#[test]
fn config_check_through_the_entrypoint_sees_what_serve_would() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    generate_master_key(&secrets.join("master.key"));
    write_tls_secrets(&secrets);
    let env = base_env(dir.path(), free_port());
    let out = entrypoint_command(&env, &["config", "check", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let setting = |key: &str| {
        report["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap()
            .clone()
    };
    // Secret files found by name, and the image's defaults, as variables.
    let master = setting("master_key_file");
    assert_eq!(master["value"], secrets.join("master.key").display().to_string());
    assert_eq!(master["source"]["variable"], "REGISTRY_MASTER_KEY_FILE");
    assert_eq!(
        setting("tls.cert")["value"],
        secrets.join("tls.crt").display().to_string()
    );
    let dev = setting("allow_development_master_key");
    assert_eq!(dev["value"], false);
    assert_eq!(dev["source"]["variable"], "REGISTRY_ALLOW_DEVELOPMENT_MASTER_KEY");
    assert_eq!(setting("sync")["value"], "flush");
    assert!(!dir.path().join("data").exists(), "a check creates nothing");

    // Without the master key: what serve would refuse, named.
    std::fs::remove_file(secrets.join("master.key")).unwrap();
    let out = entrypoint_command(&env, &["config", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).contains("error: master_key_file: no master key"),
        "{out:?}"
    );
}
