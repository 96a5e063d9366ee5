//! `registry config check`, and the checks `registry serve` runs on its
//! settings before it starts: everything serve would refuse at start that
//! can be known without opening the store (the running server holds its
//! lock) or binding an address. Reports name keys and paths, never the
//! content of a secret.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;

use super::{GlobalArgs, Loaded, ServeArgs, Source, KEYS};
use crate::metrics::listen::Listen;

/// `registry config check`
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// Output: the effective settings with their sources, then warnings and errors.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// The settings flags of `registry serve`, checked as `serve` would load them.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// How `registry config check` prints its report (`--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Lines for a terminal: each setting with its source, then warnings and errors.
    Text,
    /// One pretty-printed JSON object (`valid`, settings, warnings, errors).
    Json,
}

/// A problem (or a warning) with one setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key (`tls.cert`), or an environment variable's name.
    pub key: String,
    /// What is wrong, and what to do.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct Report {
    /// What serve would refuse: the configuration is invalid.
    pub errors: Vec<Problem>,
    /// Allowed, but worth an operator's attention.
    pub warnings: Vec<Problem>,
    /// Where the master key comes from (a path or a variable's name, never the key).
    pub master_key: String,
}

impl Report {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(Problem {
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn warn(&mut self, key: &str, message: impl Into<String>) {
        self.warnings.push(Problem {
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// The refusal of `registry serve`, if any error was found.
    pub fn refusal(&self) -> Option<String> {
        if self.errors.is_empty() {
            return None;
        }
        let lines: Vec<String> = self.errors.iter().map(|p| format!("  {p}")).collect();
        Some(format!(
            "invalid configuration (registry config check shows every setting and its source):\n{}",
            lines.join("\n")
        ))
    }
}

/// Runs every check on the loaded settings (`registry config check`).
pub fn check(loaded: &Loaded) -> Report {
    run_checks(loaded, true)
}

/// The checks `registry serve` runs before it starts: all but those of the
/// access file and the audit signing key, which serve reads only after it
/// has opened and verified the store (so that, e.g., a store of an old
/// format is named as such first) and refuses there.
pub fn check_before_start(loaded: &Loaded) -> Report {
    run_checks(loaded, false)
}

fn run_checks(loaded: &Loaded, store_files: bool) -> Report {
    let mut r = Report::default();
    let s = &loaded.settings;
    let config = loaded.serve_config();

    check_data_dir(&mut r, &s.data_dir);

    // Transport: plaintext only on loopback unless forced; TLS files usable.
    check_tls(&mut r, s);
    // With both TLS files set, TLS is on (their problems are reported above).
    if s.tls.cert.is_none() || s.tls.key.is_none() {
        match crate::server::transport_policy(&config, s.listen) {
            Ok(crate::server::Transport::PlaintextForced) => r.warn(
                "insecure_plaintext_on_network",
                format!(
                    "plaintext gRPC on {}, a network address: credentials and personal data cross the network unencrypted",
                    s.listen
                ),
            ),
            Ok(_) => {}
            Err(e) => r.error("listen", e.to_string()),
        }
    }

    check_master_key(&mut r, loaded);

    if let Some(path) = &s.cluster {
        if let Err(e) = crate::cluster::ClusterFile::load(path) {
            r.error("cluster", e.to_string());
        }
    }

    if store_files {
        check_access_file(&mut r, loaded);
        check_audit(&mut r, s);
    } else if s.audit.checkpoint_interval_secs == 0 {
        r.error("audit.checkpoint_interval_secs", "must be at least 1");
    }

    if let Listen::On(addr) = s.metrics.listen {
        if let Err(e) = crate::metrics::listen::check_listen(addr, s.metrics.on_network) {
            r.error("metrics.listen", e.to_string());
        }
        let same_ip =
            addr.ip() == s.listen.ip() || addr.ip().is_unspecified() || s.listen.ip().is_unspecified();
        if addr.port() != 0 && addr.port() == s.listen.port() && same_ip {
            r.error(
                "metrics.listen",
                format!(
                    "{addr} takes the port of listen ({}): give it another port",
                    s.listen
                ),
            );
        }
    }

    if s.disk_reserve_mib > u64::MAX >> 20 {
        r.error(
            "disk_reserve_mib",
            format!(
                "{} MiB is more than any disk (at most {})",
                s.disk_reserve_mib,
                u64::MAX >> 20
            ),
        );
    } else if s.disk_reserve_mib > 0 {
        if let Some(dir) = existing_ancestor(&s.data_dir) {
            if let Ok((free, _)) = crate::log::disk::space(&dir) {
                if free < s.disk_reserve_mib << 20 {
                    r.warn(
                        "disk_reserve_mib",
                        format!(
                            "{} MiB free on the filesystem of {}, under the reserve of {} MiB: \
                             appends would be refused (Caseworker NOT_SERVING) until space is freed",
                            free >> 20,
                            dir.display(),
                            s.disk_reserve_mib
                        ),
                    );
                }
            }
        }
    }

    for name in &loaded.ignored_env {
        r.warn(
            name,
            "set, but not a configuration key: ignored (`registry config check` lists the keys' variables)",
        );
    }
    r
}

/// The path itself if it exists, else its nearest existing ancestor.
fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    loop {
        if p.as_os_str().is_empty() {
            p = PathBuf::from(".");
        }
        if p.exists() {
            return Some(p);
        }
        if !p.pop() {
            return None;
        }
    }
}

/// Whether this process may create files in `dir`.
fn writable_dir(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path; access(2) only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

fn check_data_dir(r: &mut Report, dir: &Path) {
    if dir.exists() {
        if !dir.is_dir() {
            r.error("data_dir", format!("{}: not a directory", dir.display()));
        } else if !writable_dir(dir) {
            r.error(
                "data_dir",
                format!("{}: not writable by this user", dir.display()),
            );
        }
        return;
    }
    match existing_ancestor(dir) {
        Some(a) if a.is_dir() && writable_dir(&a) => {}
        Some(a) => r.error(
            "data_dir",
            format!(
                "{} does not exist and cannot be created: {} is not a writable directory",
                dir.display(),
                a.display()
            ),
        ),
        None => r.error("data_dir", format!("{}: cannot be created", dir.display())),
    }
}

/// Warns when a secret file is readable or writable by group or others.
fn check_mode(r: &mut Report, key: &str, path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            r.warn(
                key,
                format!(
                    "{}: mode {mode:04o}: the {what} is readable or writable by group or others; use 0600 \
                     (or 0440 for a group that is only the service's)",
                    path.display()
                ),
            );
        }
    }
}

/// The PEM blocks of `data` labelled `label` (suffix match) that parse.
fn pem_blocks(data: &[u8], label_suffix: &str) -> Vec<x509_parser::pem::Pem> {
    x509_parser::pem::Pem::iter_from_buffer(data)
        .filter_map(Result::ok)
        .filter(|p| p.label.ends_with(label_suffix))
        .collect()
}

fn read_file(r: &mut Report, key: &str, path: &Path) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(data) => Some(data),
        Err(e) => {
            r.error(key, format!("{}: {e}", path.display()));
            None
        }
    }
}

fn check_certificates(r: &mut Report, key: &str, path: &Path, data: &[u8]) -> bool {
    let pems = pem_blocks(data, "CERTIFICATE");
    let parsed: Vec<_> = pems
        .iter()
        .filter_map(|p| p.parse_x509().ok().map(|c| c.validity().not_after))
        .collect();
    if parsed.is_empty() || parsed.len() != pems.len() {
        r.error(
            key,
            format!(
                "{}: not a PEM certificate (chain): no parsable CERTIFICATE block",
                path.display()
            ),
        );
        return false;
    }
    if key == "tls.cert" && parsed[0].timestamp() < crate::auth::access_file::now_s() as i64 {
        r.warn(
            key,
            format!("{}: the certificate expired on {}", path.display(), parsed[0]),
        );
    }
    true
}

fn check_tls(r: &mut Report, s: &super::Settings) {
    let t = &s.tls;
    match (&t.cert, &t.key) {
        (Some(_), None) => r.error("tls.cert", "set without tls.key: TLS needs both"),
        (None, Some(_)) => r.error("tls.key", "set without tls.cert: TLS needs both"),
        _ => {}
    }
    if t.client_ca.is_some() && t.cert.is_none() {
        r.error("tls.client_ca", "mutual TLS needs tls.cert and tls.key");
    }
    if t.client_cert_required && t.client_ca.is_none() {
        r.error(
            "tls.client_cert_required",
            "needs tls.client_ca (the CA that signs client certificates)",
        );
    }
    let (Some(cert), Some(key)) = (&t.cert, &t.key) else {
        return;
    };
    let before = r.errors.len();
    if let Some(data) = read_file(r, "tls.cert", cert) {
        check_certificates(r, "tls.cert", cert, &data);
    }
    if let Some(data) = read_file(r, "tls.key", key) {
        if pem_blocks(&data, "PRIVATE KEY").is_empty() {
            r.error(
                "tls.key",
                format!("{}: not a PEM private key: no PRIVATE KEY block", key.display()),
            );
        }
        check_mode(r, "tls.key", key, "TLS private key");
    }
    if let Some(ca) = &t.client_ca {
        if let Some(data) = read_file(r, "tls.client_ca", ca) {
            check_certificates(r, "tls.client_ca", ca, &data);
        }
    }
    if r.errors.len() > before {
        return;
    }
    // What serve does with them: rustls checks the key, that it matches the
    // certificate, and the client CA.
    let tls = crate::auth::tls::ServerTls {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: t.client_ca.clone(),
        client_cert_required: t.client_cert_required,
    };
    let result = tls.config().map_err(|e| e.to_string()).and_then(|c| {
        tonic::transport::Server::builder()
            .tls_config(c)
            .map(|_| ())
            .map_err(|e| chain(&e))
    });
    if let Err(e) = result {
        r.error(
            "tls.key",
            format!("TLS refused with {} and {}: {e}", cert.display(), key.display()),
        );
    }
}

/// An error and its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn check_master_key(r: &mut Report, loaded: &Loaded) {
    let s = &loaded.settings;
    let env_set = std::env::var_os(crate::server::MASTER_KEY_ENV).is_some();
    if let Some(path) = &s.master_key_file {
        r.master_key = format!("file {}", path.display());
        match crate::pii::MasterKey::load(path) {
            Ok(_) => check_mode(r, "master_key_file", path, "master key"),
            Err(e) => r.error("master_key_file", format!("{}: {e}", path.display())),
        }
        if env_set {
            r.warn(
                crate::server::MASTER_KEY_ENV,
                "set, but master_key_file takes precedence: the variable is ignored",
            );
        }
    } else if env_set {
        r.master_key = format!(
            "environment variable {} (content not shown)",
            crate::server::MASTER_KEY_ENV
        );
        if let Err(e) = crate::pii::MasterKey::from_env(crate::server::MASTER_KEY_ENV) {
            r.error(crate::server::MASTER_KEY_ENV, e.to_string());
        }
    } else if s.allow_development_master_key {
        let path = s.data_dir.join("master.key");
        let state = if path.exists() {
            if let Err(e) = crate::pii::MasterKey::load(&path) {
                r.error(
                    "master_key_file",
                    format!("development key {}: {e}", path.display()),
                );
            }
            "exists"
        } else {
            "created at the first start"
        };
        r.master_key = format!("development key {} ({state})", path.display());
        r.warn(
            "master_key_file",
            format!(
                "not set: the development master key {} is used, next to the data it protects; \
                 set master_key_file in production (and allow_development_master_key = false)",
                path.display()
            ),
        );
    } else {
        r.master_key = "none".to_string();
        if let Err(e) = crate::server::check_master_key_source(&loaded.serve_config()) {
            r.error("master_key_file", e.to_string());
        }
    }
}

fn check_access_file(r: &mut Report, loaded: &Loaded) {
    let s = &loaded.settings;
    let path = s
        .access_file
        .clone()
        .unwrap_or_else(|| s.data_dir.join("access.json"));
    if path.exists() {
        if let Err(e) = crate::auth::access_file::AccessFile::load(&path) {
            r.error("access_file", e.to_string());
        }
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(&path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o022 != 0 {
                r.warn(
                    "access_file",
                    format!(
                        "{}: mode {mode:04o}: writable by group or others, who could grant themselves access; use 0600",
                        path.display()
                    ),
                );
            }
        }
    } else if s.access_file.is_some() {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if parent != s.data_dir && !parent.is_dir() {
            r.error(
                "access_file",
                format!(
                    "{} does not exist and its directory {} does not either (the first start creates the file, not the directory)",
                    path.display(),
                    parent.display()
                ),
            );
        }
    }
}

fn check_audit(r: &mut Report, s: &super::Settings) {
    if s.audit.checkpoint_interval_secs == 0 {
        r.error("audit.checkpoint_interval_secs", "must be at least 1");
    }
    let (path, named) = match &s.audit.key_file {
        Some(p) => (p.clone(), true),
        None => (s.data_dir.join(crate::audit::checkpoint::KEY_FILE_NAME), false),
    };
    if !named && !path.exists() {
        return; // created at the first start
    }
    let key = if named { "audit.key_file" } else { "audit.origin" };
    match crate::audit::checkpoint::NoteSigner::load_or_create(&path, s.audit.origin.as_deref(), false) {
        Ok(_) => check_mode(r, "audit.key_file", &path, "audit signing key"),
        Err(e) => {
            let text = e.to_string();
            let key = if text.contains("is for origin") {
                "audit.origin"
            } else {
                key
            };
            let text = if text.contains(&path.display().to_string()) {
                text
            } else {
                format!("{}: {text}", path.display())
            };
            r.error(key, text);
        }
    }
}

/// The effective value of `path` as JSON (null when not set).
fn value_of(settings: &serde_json::Value, path: &str) -> serde_json::Value {
    let mut v = settings;
    for part in path.split('.') {
        match v.get(part) {
            Some(next) => v = next,
            None => return serde_json::Value::Null,
        }
    }
    v.clone()
}

fn source_json(source: &Source) -> serde_json::Value {
    match source {
        Source::Default => json!({"kind": "default"}),
        Source::File(p) => json!({"kind": "file", "file": p.display().to_string()}),
        Source::Env(v) => json!({"kind": "env", "variable": v}),
        Source::Flag(f) => json!({"kind": "flag", "flag": f}),
    }
}

fn problems_json(problems: &[Problem]) -> serde_json::Value {
    problems
        .iter()
        .map(|p| json!({"key": p.key, "message": p.message}))
        .collect()
}

/// The report as text: the config file, every setting with its value and
/// source, the master key's source, warnings, errors, and a verdict.
pub fn render_text(loaded: &Loaded, report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    match &loaded.file {
        Some((p, origin)) => {
            let by = match origin {
                super::FileOrigin::Flag => "--config",
                super::FileOrigin::Env => super::CONFIG_ENV,
            };
            let _ = writeln!(out, "config file: {} ({by})", p.display());
        }
        None => {
            let _ = writeln!(out, "config file: none");
        }
    }
    let settings = serde_json::to_value(&loaded.settings).expect("settings serialize");
    let width = KEYS.iter().map(|k| k.path.len()).max().unwrap_or(0);
    for key in KEYS {
        let value = match value_of(&settings, key.path) {
            serde_json::Value::Null => "(not set)".to_string(),
            v => v.to_string(),
        };
        let _ = writeln!(
            out,
            "{:width$} = {value:40} # {}",
            key.path,
            loaded.source(key.path)
        );
    }
    let _ = writeln!(out, "master key: {}", report.master_key);
    for w in &report.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    for e in &report.errors {
        let _ = writeln!(out, "error: {e}");
    }
    if report.errors.is_empty() {
        let _ = writeln!(out, "ok: the configuration is valid");
    } else {
        let _ = writeln!(out, "invalid: {} error(s)", report.errors.len());
    }
    out
}

/// The report as JSON.
pub fn render_json(loaded: &Loaded, report: &Report) -> serde_json::Value {
    let settings = serde_json::to_value(&loaded.settings).expect("settings serialize");
    let keys: Vec<serde_json::Value> = KEYS
        .iter()
        .map(|k| {
            json!({
                "key": k.path,
                "value": value_of(&settings, k.path),
                "source": source_json(&loaded.source(k.path)),
                "env": k.env(),
                "flag": k.flag,
            })
        })
        .collect();
    json!({
        "valid": report.errors.is_empty(),
        "config_file": loaded.file.as_ref().map(|(p, o)| json!({"path": p.display().to_string(), "given_by": o})),
        "settings": keys,
        "master_key": report.master_key,
        "warnings": problems_json(&report.warnings),
        "errors": problems_json(&report.errors),
    })
}

/// `registry config check`: exit 0 when valid, 1 otherwise (the output
/// names every problem's key).
pub fn run(args: &CheckArgs, globals: &GlobalArgs) -> ExitCode {
    let loaded = match super::load(&args.serve, globals) {
        Ok(l) => l,
        Err(e) => {
            match args.format {
                ReportFormat::Text => {
                    for line in e.0.lines() {
                        println!("error: {line}");
                    }
                    println!("invalid: the configuration does not load");
                }
                ReportFormat::Json => {
                    let errors: Vec<_> = e.0.lines().map(|l| json!({"message": l})).collect();
                    println!("{}", json!({"valid": false, "errors": errors}));
                }
            }
            return ExitCode::from(1);
        }
    };
    let report = check(&loaded);
    match args.format {
        ReportFormat::Text => print!("{}", render_text(&loaded, &report)),
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&render_json(&loaded, &report)).expect("JSON")
        ),
    }
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
