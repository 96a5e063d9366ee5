//! The layering: defaults < file < environment < flags, and the errors.

use std::ffi::OsString;
use std::io::Write;

use super::*;

fn env(vars: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
    vars.iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect::<Vec<_>>()
        .into_iter()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn args_with(config: &tempfile::NamedTempFile) -> ServeArgs {
    ServeArgs {
        config: Some(config.path().to_path_buf()),
        ..ServeArgs::default()
    }
}

#[test]
fn defaults_alone_are_the_documented_ones() {
    let loaded = load_from(&ServeArgs::default(), &GlobalArgs::default(), env(&[])).unwrap();
    assert_eq!(loaded.settings, Settings::default());
    assert_eq!(loaded.settings.listen.to_string(), "127.0.0.1:50051");
    assert_eq!(loaded.settings.data_dir, PathBuf::from("./registry-data"));
    assert_eq!(loaded.settings.disk_reserve_mib, 1024);
    assert_eq!(loaded.settings.sled_cache_mib, 256);
    assert_eq!(loaded.settings.metrics.listen.to_string(), "127.0.0.1:9464");
    assert!(loaded.settings.allow_development_master_key);
    for k in KEYS {
        assert_eq!(loaded.source(k.path), Source::Default, "{}", k.path);
    }
    assert!(loaded.file.is_none());
}

#[test]
fn file_then_env_then_flag_each_override_the_layer_below() {
    let f = file(
        r#"
        listen = "127.0.0.1:7001"
        data_dir = "/srv/from-file"
        disk_reserve_mib = 11
        sync = "flush"
        [tls]
        client_cert_required = true
        [audit]
        checkpoint_interval_secs = 60
        "#,
    );
    let path = f.path().to_path_buf();
    // File only.
    let l = load_from(&args_with(&f), &GlobalArgs::default(), env(&[])).unwrap();
    assert_eq!(l.settings.listen.to_string(), "127.0.0.1:7001");
    assert_eq!(l.settings.data_dir, PathBuf::from("/srv/from-file"));
    assert_eq!(l.settings.disk_reserve_mib, 11);
    assert_eq!(l.settings.sync, SyncMode::Flush);
    assert!(l.settings.tls.client_cert_required);
    assert_eq!(l.settings.audit.checkpoint_interval_secs, 60);
    assert_eq!(l.source("listen"), Source::File(path.clone()));
    assert_eq!(l.source("tls.client_cert_required"), Source::File(path.clone()));
    assert_eq!(l.source("log_format"), Source::Default);

    // The environment over the file.
    let vars = [
        ("REGISTRY_LISTEN", "127.0.0.1:7002"),
        ("REGISTRY_DATA_DIR", "/srv/from-env"),
        ("REGISTRY_DISK_RESERVE_MIB", "22"),
        ("REGISTRY_TLS_CLIENT_CERT_REQUIRED", "false"),
        ("REGISTRY_AUDIT_CHECKPOINT_INTERVAL_SECS", "90"),
        ("REGISTRY_METRICS_LISTEN", "off"),
    ];
    let l = load_from(&args_with(&f), &GlobalArgs::default(), env(&vars)).unwrap();
    assert_eq!(l.settings.listen.to_string(), "127.0.0.1:7002");
    assert_eq!(l.settings.data_dir, PathBuf::from("/srv/from-env"));
    assert_eq!(l.settings.disk_reserve_mib, 22);
    assert!(!l.settings.tls.client_cert_required);
    assert_eq!(l.settings.audit.checkpoint_interval_secs, 90);
    assert_eq!(l.settings.metrics.listen, Listen::Off);
    assert_eq!(
        l.settings.sync,
        SyncMode::Flush,
        "not in the environment: the file's"
    );
    assert_eq!(l.source("listen"), Source::Env("REGISTRY_LISTEN".into()));
    assert_eq!(
        l.source("audit.checkpoint_interval_secs"),
        Source::Env("REGISTRY_AUDIT_CHECKPOINT_INTERVAL_SECS".into())
    );
    assert_eq!(l.source("sync"), Source::File(path.clone()));

    // Flags over both; a flag not given changes nothing.
    let args = ServeArgs {
        listen: Some("127.0.0.1:7003".parse().unwrap()),
        data_dir: Some("/srv/from-flag".into()),
        disk_reserve_mib: Some(33),
        tls_client_cert_required: Some(true),
        ..args_with(&f)
    };
    let globals = GlobalArgs {
        log_format: Some(LogFormat::Json),
        sled_cache_mib: Some(64),
    };
    let l = load_from(&args, &globals, env(&vars)).unwrap();
    assert_eq!(l.settings.listen.to_string(), "127.0.0.1:7003");
    assert_eq!(l.settings.data_dir, PathBuf::from("/srv/from-flag"));
    assert_eq!(l.settings.disk_reserve_mib, 33);
    assert!(l.settings.tls.client_cert_required);
    assert_eq!(l.settings.log_format, LogFormat::Json);
    assert_eq!(l.settings.sled_cache_mib, 64);
    assert_eq!(l.settings.audit.checkpoint_interval_secs, 90, "the variable's");
    assert_eq!(l.settings.sync, SyncMode::Flush, "the file's");
    assert_eq!(l.source("listen"), Source::Flag("--listen"));
    assert_eq!(l.source("data_dir"), Source::Flag("--data-dir"));
    assert_eq!(l.source("log_format"), Source::Flag("--log-format"));
    assert_eq!(
        l.source("metrics.listen"),
        Source::Env("REGISTRY_METRICS_LISTEN".into())
    );
}

#[test]
fn config_file_from_the_variable_and_the_flag_wins_over_it() {
    let a = file("listen = \"127.0.0.1:7101\"\n");
    let b = file("listen = \"127.0.0.1:7102\"\n");
    let a_path = a.path().to_str().unwrap().to_string();
    let l = load_from(
        &ServeArgs::default(),
        &GlobalArgs::default(),
        env(&[("REGISTRY_CONFIG", &a_path)]),
    )
    .unwrap();
    assert_eq!(l.settings.listen.to_string(), "127.0.0.1:7101");
    assert_eq!(l.file, Some((a.path().to_path_buf(), FileOrigin::Env)));
    let l = load_from(
        &args_with(&b),
        &GlobalArgs::default(),
        env(&[("REGISTRY_CONFIG", &a_path)]),
    )
    .unwrap();
    assert_eq!(l.settings.listen.to_string(), "127.0.0.1:7102");
    assert_eq!(l.file, Some((b.path().to_path_buf(), FileOrigin::Flag)));
}

#[test]
fn a_missing_config_file_is_an_error_naming_it() {
    let args = ServeArgs {
        config: Some("/nonexistent/registry.toml".into()),
        ..ServeArgs::default()
    };
    let e = load_from(&args, &GlobalArgs::default(), env(&[])).unwrap_err().0;
    assert!(
        e.contains("config file /nonexistent/registry.toml (--config)"),
        "{e}"
    );
}

#[test]
fn unknown_keys_are_refused_naming_the_key_and_the_file() {
    let f = file("listen = \"127.0.0.1:7001\"\nlisten_addr = \"x\"\n");
    let e = load_from(&args_with(&f), &GlobalArgs::default(), env(&[]))
        .unwrap_err()
        .0;
    assert!(e.starts_with("listen_addr: unknown key `listen_addr`"), "{e}");
    assert!(e.contains(&f.path().display().to_string()), "{e}");

    let f = file("[tls]\ncert = \"/a\"\ncertificate = \"/b\"\n");
    let e = load_from(&args_with(&f), &GlobalArgs::default(), env(&[]))
        .unwrap_err()
        .0;
    assert!(
        e.starts_with("tls.certificate: unknown key `certificate` in [tls]"),
        "{e}"
    );
    assert!(e.contains(&f.path().display().to_string()), "{e}");

    let f = file("[tsl]\ncert = \"/a\"\n");
    let e = load_from(&args_with(&f), &GlobalArgs::default(), env(&[]))
        .unwrap_err()
        .0;
    assert!(e.starts_with("tsl: unknown key `tsl`"), "{e}");
}

#[test]
fn wrong_types_are_refused_naming_the_key_and_the_source() {
    let f = file("disk_reserve_mib = \"lots\"\n");
    let e = load_from(&args_with(&f), &GlobalArgs::default(), env(&[]))
        .unwrap_err()
        .0;
    assert!(e.starts_with("disk_reserve_mib: invalid type"), "{e}");
    assert!(e.contains(&format!("(file {})", f.path().display())), "{e}");

    for (text, key) in [
        ("listen = 50051\n", "listen"),
        ("listen = \"localhost\"\n", "listen"),
        ("sync = \"fsync\"\n", "sync"),
        ("[metrics]\nlisten = \"nowhere\"\n", "metrics.listen"),
        (
            "[tls]\nclient_cert_required = \"yes\"\n",
            "tls.client_cert_required",
        ),
        ("disk_reserve_mib = -1\n", "disk_reserve_mib"),
        ("tls = \"on\"\n", "tls"),
    ] {
        let f = file(text);
        let e = load_from(&args_with(&f), &GlobalArgs::default(), env(&[]))
            .unwrap_err()
            .0;
        assert!(e.starts_with(&format!("{key}: ")), "{text}: {e}");
        assert!(e.contains(&f.path().display().to_string()), "{text}: {e}");
    }

    let e = load_from(
        &ServeArgs::default(),
        &GlobalArgs::default(),
        env(&[("REGISTRY_DISK_RESERVE_MIB", "lots")]),
    )
    .unwrap_err()
    .0;
    assert!(e.starts_with("disk_reserve_mib: invalid type"), "{e}");
    assert!(e.contains("(env REGISTRY_DISK_RESERVE_MIB)"), "{e}");

    let f = file("listen = [\n");
    let e = load_from(&args_with(&f), &GlobalArgs::default(), env(&[]))
        .unwrap_err()
        .0;
    assert!(
        e.contains(&f.path().display().to_string()),
        "a file that does not parse: {e}"
    );
}

#[test]
fn environment_reads_only_the_keys_variables() {
    let vars = [
        ("REGISTRY_MASTER_KEY", "00"),
        ("REGISTRY_TOKEN", "rgt_x"),
        ("REGISTRY_SECRETS_DIR", "/run/secrets/registry"),
        ("REGISTRY_LISTN", "127.0.0.1:1"),
        ("REGISTRY_TLS__CERT", "/a"),
        ("REGISTRY_TLS_CERT", ""),
        ("OTHER_LISTEN", "127.0.0.1:2"),
    ];
    let l = load_from(&ServeArgs::default(), &GlobalArgs::default(), env(&vars)).unwrap();
    assert_eq!(l.settings, Settings::default(), "no variable here is a setting");
    assert_eq!(
        l.ignored_env,
        vec!["REGISTRY_LISTN".to_string(), "REGISTRY_TLS__CERT".to_string()]
    );
}

#[test]
fn every_key_has_one_variable_and_is_in_the_schema() {
    let mut names: Vec<String> = KEYS.iter().map(Key::env).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), KEYS.len());
    // Every key of the schema is listed (Option keys set, so they serialize).
    let s = Settings {
        master_key_file: Some("/k".into()),
        access_file: Some("/a".into()),
        cluster: Some("/cluster.toml".into()),
        tls: TlsSettings {
            cert: Some("/c".into()),
            key: Some("/k".into()),
            client_ca: Some("/ca".into()),
            client_cert_required: true,
        },
        audit: AuditSettings {
            key_file: Some("/a".into()),
            origin: Some("o".into()),
            ..AuditSettings::default()
        },
        ..Settings::default()
    };
    let json = serde_json::to_value(&s).unwrap();
    let mut schema = Vec::new();
    for (k, v) in json.as_object().unwrap() {
        match v.as_object() {
            Some(section) => schema.extend(section.keys().map(|sub| format!("{k}.{sub}"))),
            None => schema.push(k.clone()),
        }
    }
    schema.sort();
    let mut listed: Vec<String> = KEYS.iter().map(|k| k.path.to_string()).collect();
    listed.sort();
    assert_eq!(schema, listed);
}

#[test]
fn a_flag_can_turn_off_what_the_file_turns_on() {
    let f = file("insecure_plaintext_on_network = true\n[metrics]\non_network = true\n");
    let args = ServeArgs {
        insecure_plaintext_on_network: Some(false),
        ..args_with(&f)
    };
    let l = load_from(&args, &GlobalArgs::default(), env(&[])).unwrap();
    assert!(!l.settings.insecure_plaintext_on_network);
    assert!(l.settings.metrics.on_network);
}

#[test]
fn serve_config_carries_every_setting() {
    let f = file(
        r#"
        data_dir = "/d"
        listen = "0.0.0.0:50051"
        master_key_file = "/k"
        allow_development_master_key = false
        access_file = "/acc.json"
        insecure_plaintext_on_network = true
        disk_reserve_mib = 5
        [tls]
        cert = "/c"
        key = "/k2"
        client_ca = "/ca"
        client_cert_required = true
        [metrics]
        listen = "0.0.0.0:9464"
        on_network = true
        [audit]
        key_file = "/ak"
        origin = "example.gov/registry"
        checkpoint_interval_secs = 7
        "#,
    );
    let c = load_from(&args_with(&f), &GlobalArgs::default(), env(&[]))
        .unwrap()
        .serve_config();
    assert_eq!(c.data_dir, PathBuf::from("/d"));
    assert_eq!(c.listen.to_string(), "0.0.0.0:50051");
    assert_eq!(c.master_key_file, Some("/k".into()));
    assert!(!c.allow_development_master_key);
    assert_eq!(c.access_file, Some("/acc.json".into()));
    assert!(c.insecure_plaintext);
    assert_eq!(c.disk_reserve_mib, 5);
    let tls = c.tls.unwrap();
    assert_eq!(
        (tls.cert, tls.key, tls.client_ca, tls.client_cert_required),
        ("/c".into(), "/k2".into(), Some("/ca".into()), true)
    );
    assert_eq!(c.metrics_listen, Some("0.0.0.0:9464".parse().unwrap()));
    assert!(c.metrics_on_network);
    assert_eq!(c.audit.key_file, Some("/ak".into()));
    assert_eq!(c.audit.origin.as_deref(), Some("example.gov/registry"));
    assert_eq!(c.audit.checkpoint_interval, std::time::Duration::from_secs(7));
}

#[test]
fn the_shipped_example_loads_and_sets_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/registry.toml");
    let args = ServeArgs {
        config: Some(path.clone()),
        ..ServeArgs::default()
    };
    let l = load_from(&args, &GlobalArgs::default(), env(&[])).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for k in KEYS {
        // Every key is in the example, set or commented out.
        let name = k.path.rsplit('.').next().unwrap();
        assert!(
            text.lines().any(|l| {
                let l = l.trim_start_matches('#').trim_start();
                l.starts_with(&format!("{name} =")) || l.starts_with(&format!("{name}="))
            }),
            "{} is not in deploy/registry.toml",
            k.path
        );
    }
    assert!(!l.settings.allow_development_master_key);
    assert!(l.settings.tls.cert.is_some());
}
