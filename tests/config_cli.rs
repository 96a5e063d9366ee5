//! The configuration of `registry serve` through the real binary: `registry
//! config check` (precedence file < environment < flag, with the source of
//! every value; unknown keys and wrong types refused naming the key and the
//! file; invalid TLS files reported; the printed configuration read back as
//! a file gives the same configuration) and a real `registry serve` started
//! from a config file, answering a health check where the layers put it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_registry");

/// `registry ARGS` with a clean environment plus `env`.
fn registry(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn check(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all = vec!["config", "check"];
    all.extend_from_slice(args);
    registry(&all, env).output().unwrap()
}

fn check_json(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Value) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = check(&all, env);
    let json: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"));
    (out.status.code(), json)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The setting `key` of a JSON report: (value, source kind, source detail).
fn setting(report: &Value, key: &str) -> (Value, String, String) {
    let s = report["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no setting {key}"));
    let source = &s["source"];
    let kind = source["kind"].as_str().unwrap().to_string();
    let detail = match kind.as_str() {
        "file" => source["file"].as_str().unwrap().to_string(),
        "env" => source["variable"].as_str().unwrap().to_string(),
        "flag" => source["flag"].as_str().unwrap().to_string(),
        _ => String::new(),
    };
    (s["value"].clone(), kind, detail)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn generate_master_key(path: &Path) {
    let out = registry(&["keys", "generate", "--out", s(path)], &[])
        .output()
        .unwrap();
    assert!(out.status.success(), "keys generate: {out:?}");
}

/// A self-signed certificate for localhost and its key.
fn write_tls(dir: &Path) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    set_mode(&k, 0o600);
    (c, k)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn file_then_environment_then_flag_win_with_their_sources() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("registry.toml");
    let (file_data, env_data) = (dir.path().join("file-data"), dir.path().join("env-data"));
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:7001\"\ndata_dir = \"{}\"\ndisk_reserve_mib = 11\nsync = \"flush\"\n",
            s(&file_data)
        ),
    )
    .unwrap();
    let file = s(&config);

    // The file over the defaults.
    let (code, r) = check_json(&["--config", file], &[]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(
        setting(&r, "listen"),
        ("127.0.0.1:7001".into(), "file".into(), file.into())
    );
    assert_eq!(
        setting(&r, "data_dir"),
        (s(&file_data).into(), "file".into(), file.into())
    );
    assert_eq!(
        setting(&r, "disk_reserve_mib"),
        (11.into(), "file".into(), file.into())
    );
    assert_eq!(
        setting(&r, "sled_cache_mib"),
        (256.into(), "default".into(), String::new())
    );
    assert_eq!(r["config_file"]["path"], file);
    assert_eq!(r["config_file"]["given_by"], "flag");

    // The environment over the file; the file named by REGISTRY_CONFIG.
    let env = [
        ("REGISTRY_CONFIG", file),
        ("REGISTRY_LISTEN", "127.0.0.1:7002"),
        ("REGISTRY_DATA_DIR", s(&env_data)),
        ("REGISTRY_DISK_RESERVE_MIB", "22"),
    ];
    let (_, r) = check_json(&[], &env);
    assert_eq!(
        setting(&r, "listen"),
        ("127.0.0.1:7002".into(), "env".into(), "REGISTRY_LISTEN".into())
    );
    assert_eq!(
        setting(&r, "data_dir"),
        (s(&env_data).into(), "env".into(), "REGISTRY_DATA_DIR".into())
    );
    assert_eq!(
        setting(&r, "disk_reserve_mib"),
        (22.into(), "env".into(), "REGISTRY_DISK_RESERVE_MIB".into())
    );
    assert_eq!(setting(&r, "sync"), ("flush".into(), "file".into(), file.into()));
    assert_eq!(r["config_file"]["given_by"], "env");

    // Flags over both.
    let data = dir.path().join("data");
    let (code, r) = check_json(
        &[
            "--listen",
            "127.0.0.1:7003",
            "--data-dir",
            s(&data),
            "--disk-reserve-mib",
            "1",
        ],
        &env,
    );
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["valid"], true);
    assert_eq!(
        setting(&r, "listen"),
        ("127.0.0.1:7003".into(), "flag".into(), "--listen".into())
    );
    assert_eq!(
        setting(&r, "data_dir"),
        (s(&data).into(), "flag".into(), "--data-dir".into())
    );
    assert_eq!(
        setting(&r, "disk_reserve_mib"),
        (1.into(), "flag".into(), "--disk-reserve-mib".into())
    );
    assert_eq!(setting(&r, "sync"), ("flush".into(), "file".into(), file.into()));
    // No directory was created by the checks.
    for d in [&file_data, &env_data, &data] {
        assert!(!d.exists(), "{}", d.display());
    }

    // The text report names the same sources.
    let out = check(&["--listen", "127.0.0.1:7003", "--data-dir", s(&data)], &env);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("config file: {file} (REGISTRY_CONFIG)")),
        "{text}"
    );
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no line for {key}: {text}"))
            .to_string()
    };
    assert!(line("listen").ends_with("# flag --listen"), "{text}");
    assert!(
        line("disk_reserve_mib").ends_with("# env REGISTRY_DISK_RESERVE_MIB"),
        "{text}"
    );
    assert!(line("sync").ends_with(&format!("# file {file}")), "{text}");
    assert!(line("log_format").ends_with("# default"), "{text}");
    assert!(text.ends_with("ok: the configuration is valid\n"), "{text}");
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("registry.toml");
    let data = dir.path().join("data");
    let file = s(&config);

    std::fs::write(&config, "[tls]\ncert = \"/x\"\ncertfile = \"/y\"\n").unwrap();
    let out = check(&["--config", file], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).contains(&format!(
            "error: tls.certfile: unknown key `certfile` in [tls] (known: cert, key, client_ca, client_cert_required) (file {file})"
        )),
        "{out:?}"
    );
    // serve refuses it the same way, before creating anything.
    let out = registry(&["serve", "--config", file, "--data-dir", s(&data)], &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls.certfile: unknown key"), "{stderr}");
    assert!(!data.exists());

    std::fs::write(&config, "disk_reserve_mib = \"plenty\"\n").unwrap();
    let out = check(&["--config", file], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).contains(&format!(
            "error: disk_reserve_mib: invalid type: found string \"plenty\", expected u64 (file {file})"
        )),
        "{out:?}"
    );

    std::fs::write(&config, "[metrics]\nlisten = \"everywhere\"\n").unwrap();
    let (code, r) = check_json(&["--config", file], &[]);
    assert_eq!(code, Some(1));
    assert_eq!(r["valid"], false);
    let message = r["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("metrics.listen: invalid value"), "{message}");
    assert!(message.ends_with(&format!("(file {file})")), "{message}");

    // A variable of the wrong type is named too.
    let out = check(&[], &[("REGISTRY_METRICS_ON_NETWORK", "sure")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).contains("error: metrics.on_network: invalid type: found string \"sure\", expected a boolean (env REGISTRY_METRICS_ON_NETWORK)"),
        "{out:?}"
    );

    // A config file that does not exist.
    let out = check(&["--config", s(&dir.path().join("absent.toml"))], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("absent.toml (--config)"), "{out:?}");
}

#[test]
fn invalid_tls_files_and_policies_are_reported_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_file = dir.path().join("master.key");
    generate_master_key(&key_file);
    let (cert, key) = write_tls(dir.path());
    let base = [
        "--data-dir",
        s(&data),
        "--master-key-file",
        s(&key_file),
        "--listen",
        "0.0.0.0:50051",
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        check_json(&args, &[])
    };
    let errors = |r: &Value| -> Vec<(String, String)> {
        r["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["key"].as_str().unwrap().to_string(),
                    e["message"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };

    // Valid TLS on a network address.
    let (code, r) = run(&["--tls-cert", s(&cert), "--tls-key", s(&key)]);
    assert_eq!(code, Some(0), "{r}");

    // Plaintext on a network address.
    let (code, r) = run(&[]);
    assert_eq!(code, Some(1));
    let e = errors(&r);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "listen");
    assert!(
        e[0].1.starts_with("refusing to serve plaintext on 0.0.0.0:50051"),
        "{e:?}"
    );

    // A certificate file that is not PEM.
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let (code, r) = run(&["--tls-cert", s(&garbage), "--tls-key", s(&key)]);
    assert_eq!(code, Some(1));
    let e = errors(&r);
    assert_eq!(e[0].0, "tls.cert", "{e:?}");
    assert!(e[0].1.contains("garbage.crt: not a PEM certificate"), "{e:?}");

    // A key that is not the certificate's.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, other_key) = write_tls(&other);
    let (code, r) = run(&["--tls-cert", s(&cert), "--tls-key", s(&other_key)]);
    assert_eq!(code, Some(1));
    let e = errors(&r);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "tls.key", "{e:?}");
    assert!(e[0].1.starts_with("TLS refused with"), "{e:?}");

    // A missing key file; a key without a certificate.
    let (code, r) = run(&[
        "--tls-cert",
        s(&cert),
        "--tls-key",
        s(&dir.path().join("absent.key")),
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(errors(&r)[0].0, "tls.key");
    let (code, r) = run(&["--tls-key", s(&key)]);
    assert_eq!(code, Some(1));
    assert!(
        errors(&r)
            .iter()
            .any(|(k, m)| k == "tls.key" && m.contains("without tls.cert")),
        "{r}"
    );

    // Metrics on a network address without the flag; with it.
    let tls = ["--tls-cert", s(&cert), "--tls-key", s(&key)];
    let mut args = tls.to_vec();
    args.extend_from_slice(&["--metrics-listen", "0.0.0.0:9464"]);
    let (code, r) = run(&args);
    assert_eq!(code, Some(1));
    assert_eq!(errors(&r)[0].0, "metrics.listen");
    args.push("--metrics-on-network");
    let (code, r) = run(&args);
    assert_eq!(code, Some(0), "{r}");

    // A master key file that is not a key; a loose mode is a warning only.
    let bad_key = dir.path().join("bad.key");
    std::fs::write(&bad_key, "0123\n").unwrap();
    let mut args = vec!["--data-dir", s(&data), "--master-key-file", s(&bad_key)];
    args.extend_from_slice(&tls);
    let (code, r) = check_json(&args, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(errors(&r)[0].0, "master_key_file");
    set_mode(&key, 0o644);
    let (code, r) = run(&tls);
    assert_eq!(code, Some(0), "{r}");
    let warnings = r["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w["key"] == "tls.key" && w["message"].as_str().unwrap().contains("mode 0644")),
        "{r}"
    );
    // No secret is printed: the key files' content is nowhere in the report.
    let master = std::fs::read_to_string(&key_file).unwrap();
    let text = stdout(&check(&base, &[]));
    assert!(!text.contains(master.trim()), "{text}");

    // No master key at all, and the development key refused.
    let (code, r) = check_json(
        &["--data-dir", s(&data), "--allow-development-master-key=false"],
        &[],
    );
    assert_eq!(code, Some(1));
    assert_eq!(errors(&r)[0].0, "master_key_file");
    assert!(errors(&r)[0].1.starts_with("no master key"), "{r}");
    // REGISTRY_MASTER_KEY (the key itself) still serves as before, unprinted.
    let hex = "ab".repeat(32);
    let (code, r) = check_json(
        &["--data-dir", s(&data), "--allow-development-master-key=false"],
        &[("REGISTRY_MASTER_KEY", &hex)],
    );
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(
        r["master_key"],
        "environment variable REGISTRY_MASTER_KEY (content not shown)"
    );
    assert!(!r.to_string().contains(&hex));
}

/// A TOML document from the JSON report's settings (null: left out).
fn toml_from_report(r: &Value) -> String {
    let mut top = String::new();
    let mut sections: std::collections::BTreeMap<String, String> = Default::default();
    for s in r["settings"].as_array().unwrap() {
        if s["value"].is_null() {
            continue;
        }
        let key = s["key"].as_str().unwrap();
        let line = format!("{} = {}\n", key.rsplit('.').next().unwrap(), s["value"]);
        match key.split_once('.') {
            Some((section, _)) => sections.entry(section.to_string()).or_default().push_str(&line),
            None => top.push_str(&line),
        }
    }
    for (name, body) in sections {
        top.push_str(&format!("[{name}]\n{body}"));
    }
    top
}

#[test]
fn a_valid_configuration_round_trips_through_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let master = secrets.join("master.key");
    generate_master_key(&master);
    let (cert, key) = write_tls(&secrets);
    // An audit key made by the tool that makes them.
    let audit_dir = dir.path().join("audit");
    let out = registry(&["audit", "key", "--data-dir", s(&audit_dir)], &[])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let audit_key = audit_dir.join("audit-signing.key");
    let config = dir.path().join("registry.toml");
    std::fs::write(
        &config,
        format!(
            r#"
data_dir = "{data}"
listen = "0.0.0.0:50051"
sync = "flush"
disk_reserve_mib = 1
sled_cache_mib = 64
log_format = "json"
master_key_file = "{master}"
allow_development_master_key = false
access_file = "{access}"
insecure_plaintext_on_network = false
[tls]
cert = "{cert}"
key = "{key}"
client_ca = "{cert}"
client_cert_required = true
[metrics]
listen = "127.0.0.1:9464"
on_network = false
[audit]
key_file = "{audit_key}"
checkpoint_interval_secs = 30
"#,
            data = s(&dir.path().join("data")),
            master = s(&master),
            access = s(&dir.path().join("data/access.json")),
            cert = s(&cert),
            key = s(&key),
            audit_key = s(&audit_key),
        ),
    )
    .unwrap();
    let (code, first) = check_json(&["--config", s(&config)], &[]);
    assert_eq!(code, Some(0), "{first}");
    for setting in first["settings"].as_array().unwrap() {
        if setting["value"].is_null() {
            // A single node: no cluster file; the origin defaults at run time.
            assert!(
                setting["key"] == "audit.origin" || setting["key"] == "cluster",
                "only the origin and the cluster file are unset: {setting}"
            );
            continue;
        }
        assert_eq!(setting["source"]["kind"], "file", "{setting}");
    }
    assert_eq!(first["master_key"], format!("file {}", s(&master)));

    // The report, written back as a file, is the same configuration.
    let again = dir.path().join("again.toml");
    std::fs::write(&again, toml_from_report(&first)).unwrap();
    let (code, second) = check_json(&["--config", s(&again)], &[]);
    assert_eq!(code, Some(0), "{second}");
    let values = |r: &Value| -> Vec<(Value, Value)> {
        r["settings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["key"].clone(), s["value"].clone()))
            .collect()
    };
    assert_eq!(values(&first), values(&second));

    // The shipped example names a key in /run/credentials: with the paths
    // replaced by these files it is valid too.
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/registry.toml"))
        .unwrap()
        .replace("/var/lib/registry", s(&dir.path().join("data")))
        .replace("/run/credentials/registry.service/master.key", s(&master))
        .replace("/run/credentials/registry.service/tls.crt", s(&cert))
        .replace("/run/credentials/registry.service/tls.key", s(&key))
        .replace(
            "/run/credentials/registry.service/audit-signing.key",
            s(&audit_key),
        );
    let example_file = dir.path().join("example.toml");
    std::fs::write(&example_file, example).unwrap();
    let out = check(&["--config", s(&example_file), "--disk-reserve-mib", "1"], &[]);
    assert!(out.status.success(), "{out:?}");
}

/// A port free on loopback a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn health(target: &str) -> Output {
    registry(&["health", "--target", target, "--timeout", "2"], &[])
        .output()
        .unwrap()
}

fn terminate(server: &mut Child) -> std::process::ExitStatus {
    let sent = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
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

#[test]
fn serve_runs_from_a_config_file_where_the_layers_put_it() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.key");
    generate_master_key(&master);
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    let config = dir.path().join("registry.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:{file_port}\"\nsync = \"flush\"\ndisk_reserve_mib = 1\n\
             master_key_file = \"{}\"\nallow_development_master_key = false\nlog_format = \"json\"\n\
             [metrics]\nlisten = \"off\"\n",
            s(&dir.path().join("file-data")),
            s(&master)
        ),
    )
    .unwrap();
    let env_data = dir.path().join("env-data");
    let logs = dir.path().join("stderr");

    // File: everything; the environment: the data directory and the address; a flag: the address.
    let mut server = registry(
        &["serve", "--listen", &format!("127.0.0.1:{flag_port}")],
        &[
            ("REGISTRY_CONFIG", s(&config)),
            ("REGISTRY_DATA_DIR", s(&env_data)),
            ("REGISTRY_LISTEN", &format!("127.0.0.1:{env_port}")),
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(File::create(&logs).unwrap())
    .spawn()
    .unwrap();
    let target = format!("http://127.0.0.1:{flag_port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            panic!(
                "the server exited ({status}):\n{}",
                std::fs::read_to_string(&logs).unwrap()
            );
        }
        let out = health(&target);
        if out.status.success() {
            assert_eq!(stdout(&out).trim(), "SERVING");
            break;
        }
        assert!(Instant::now() < deadline, "not serving: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nobody on the file's or the environment's address.
    for port in [file_port, env_port] {
        let out = health(&format!("http://127.0.0.1:{port}"));
        assert_eq!(out.status.code(), Some(1), "{out:?}");
    }
    let status = terminate(&mut server);
    let stderr = std::fs::read_to_string(&logs).unwrap();
    assert!(status.success(), "{status}\n{stderr}");
    // JSON logs (the file's log_format), the store where the environment put it.
    assert!(stderr.lines().all(|l| l.starts_with('{')), "{stderr}");
    assert!(env_data.join("db").exists());
    assert!(!dir.path().join("file-data").exists());
    assert!(!env_data.join("master.key").exists());
}

#[test]
fn unknown_registry_variables_are_reported_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = check(
        &["--data-dir", s(&data)],
        &[("REGISTRY_LISTN", "0.0.0.0:1"), ("REGISTRY_TOKEN", "rgt_secret")],
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("warning: REGISTRY_LISTN: set, but not a configuration key: ignored"),
        "{text}"
    );
    assert!(
        !text.contains("REGISTRY_TOKEN"),
        "a variable of another tool is not reported: {text}"
    );
    assert!(!text.contains("rgt_secret"), "{text}");
    assert!(
        text.contains("listen                         = \"127.0.0.1:50051\""),
        "{text}"
    );
}
