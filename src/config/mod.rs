//! The configuration of `registry serve` (and `registry config check`),
//! layered by figment, lowest to highest:
//!
//! 1. built-in defaults;
//! 2. the config file (TOML; `--config FILE`, else `$REGISTRY_CONFIG`, else
//!    none), every key optional, an unknown key or a wrong type refused with
//!    the key and the file named;
//! 3. environment variables: `REGISTRY_` followed by the key's path in upper
//!    case, a section's name and the key joined by `_` (`listen` is
//!    `REGISTRY_LISTEN`, `tls.cert` is `REGISTRY_TLS_CERT`); only the names
//!    in [`KEYS`] are read (other `REGISTRY_*` variables are no keys), an
//!    empty value counts as unset;
//! 4. command-line flags, only those given (no flag has a clap default).
//!
//! One function, [`load`], builds the settings for both commands; [`check`]
//! validates them as `serve` would at start, without starting anything
//! (`serve` runs the same checks first, but for the access file and the
//! audit key, which it reads after opening the store).
//! deploy/registry.toml is the commented example with every key.
//!
//! `REGISTRY_MASTER_KEY` (the key itself, 64 hex digits) is not a setting:
//! as before, it is read only when no `master_key_file` is set in any layer.

pub mod check;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use crate::log::SyncMode;
use crate::metrics::listen::Listen;

/// Environment variable naming the config file (below `--config`).
pub const CONFIG_ENV: &str = "REGISTRY_CONFIG";

/// `REGISTRY_*` variables that are read by something else and are no
/// settings: not reported as ignored by `config check`.
pub const OTHER_ENV: &[&str] = &[
    CONFIG_ENV,
    crate::server::MASTER_KEY_ENV,
    crate::client::TOKEN_ENV,
    // The container entrypoint's own (deploy/container/entrypoint.sh).
    "REGISTRY_BIN",
    "REGISTRY_SECRETS_DIR",
    "REGISTRY_HEALTH_TLS_CA",
    "REGISTRY_HEALTH_TLS_DOMAIN",
    "REGISTRY_HEALTH_CLIENT_CERT",
    "REGISTRY_HEALTH_CLIENT_KEY",
    "REGISTRY_HEALTH_TIMEOUT_SECS",
];

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (tracing's default format).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The value type of a key, for reading it from an environment variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Taken verbatim (paths, addresses, names).
    Text,
    /// `true` or `false`.
    Bool,
    /// A whole number.
    Number,
}

/// One setting: its path in the file, its flag.
#[derive(Debug)]
pub struct Key {
    /// `section.name` or `name`.
    pub path: &'static str,
    /// The `registry serve` flag.
    pub flag: &'static str,
    kind: Kind,
}

impl Key {
    /// The environment variable: `REGISTRY_` + the path in upper case, `.` -> `_`.
    pub fn env(&self) -> String {
        env_name(self.path)
    }
}

const fn key(path: &'static str, flag: &'static str, kind: Kind) -> Key {
    Key { path, flag, kind }
}

/// Every setting, in the order of deploy/registry.toml.
pub const KEYS: &[Key] = &[
    key("data_dir", "--data-dir", Kind::Text),
    key("listen", "--listen", Kind::Text),
    key("sync", "--sync", Kind::Text),
    key("disk_reserve_mib", "--disk-reserve-mib", Kind::Number),
    key("sled_cache_mib", "--sled-cache-mib", Kind::Number),
    key("log_format", "--log-format", Kind::Text),
    key("master_key_file", "--master-key-file", Kind::Text),
    key(
        "allow_development_master_key",
        "--allow-development-master-key",
        Kind::Bool,
    ),
    key("access_file", "--access-file", Kind::Text),
    key("cluster", "--cluster", Kind::Text),
    key(
        "insecure_plaintext_on_network",
        "--insecure-plaintext-on-network",
        Kind::Bool,
    ),
    key("tls.cert", "--tls-cert", Kind::Text),
    key("tls.key", "--tls-key", Kind::Text),
    key("tls.client_ca", "--tls-client-ca", Kind::Text),
    key(
        "tls.client_cert_required",
        "--tls-client-cert-required",
        Kind::Bool,
    ),
    key("metrics.listen", "--metrics-listen", Kind::Text),
    key("metrics.on_network", "--metrics-on-network", Kind::Bool),
    key("audit.key_file", "--audit-key-file", Kind::Text),
    key("audit.origin", "--audit-origin", Kind::Text),
    key(
        "audit.checkpoint_interval_secs",
        "--checkpoint-interval-secs",
        Kind::Number,
    ),
];

/// The environment variable of a key path.
pub fn env_name(path: &str) -> String {
    format!("REGISTRY_{}", path.replace('.', "_").to_ascii_uppercase())
}

/// The key of a path, if there is one.
pub fn find_key(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// The settings of `registry serve`: the schema of the config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The store's directory.
    pub data_dir: PathBuf,
    /// gRPC address.
    pub listen: SocketAddr,
    /// How an acknowledged append is made durable.
    pub sync: SyncMode,
    /// Free disk (MiB) kept in reserve on the store's filesystem; 0: none.
    pub disk_reserve_mib: u64,
    /// sled's page cache, MiB.
    pub sled_cache_mib: u64,
    /// Format of the server's log lines (`--log-format`).
    pub log_format: LogFormat,
    /// Master key file (64 hex digits); unset: `$REGISTRY_MASTER_KEY`, else
    /// the development key (if allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<PathBuf>,
    /// Without a master key (file or `$REGISTRY_MASTER_KEY`): create and use
    /// a development key in `DATA_DIR/master.key` (true), or refuse to start.
    pub allow_development_master_key: bool,
    /// The access file; unset: `DATA_DIR/access.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_file: Option<PathBuf>,
    /// The cluster file (docs/CLUSTER.md); unset: a single node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<PathBuf>,
    /// Plaintext gRPC on a non-loopback address (never in production).
    pub insecure_plaintext_on_network: bool,
    /// `[tls]`: the server's certificate and client CA.
    pub tls: TlsSettings,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsSettings,
    /// `[audit]`: the signing key, origin and checkpoint interval.
    pub audit: AuditSettings,
}

/// `[tls]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain of the server; unset: plaintext.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key of the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// PEM CA certificate(s) that sign client certificates; enables mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// With a client CA: whether a client certificate is required (else bearer tokens may be used instead).
    pub client_cert_required: bool,
}

/// `[metrics]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// An address, or `off`.
    pub listen: Listen,
    /// Serve metrics (plain HTTP) on a non-loopback address too.
    pub on_network: bool,
}

/// `[audit]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Signing key; unset: `DATA_DIR/audit-signing.key`, created on first start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Log origin (checkpoint origin line, name of a new key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Seconds between periodic checkpoints.
    pub checkpoint_interval_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./registry-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            sync: SyncMode::Fdatasync,
            disk_reserve_mib: crate::limits::DISK_RESERVE_MIB_DEFAULT,
            sled_cache_mib: crate::log::store::SLED_CACHE_MIB_DEFAULT,
            log_format: LogFormat::Text,
            master_key_file: None,
            allow_development_master_key: true,
            access_file: None,
            cluster: None,
            insecure_plaintext_on_network: false,
            tls: TlsSettings::default(),
            metrics: MetricsSettings::default(),
            audit: AuditSettings::default(),
        }
    }
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: Listen::On(
                crate::metrics::listen::DEFAULT_LISTEN
                    .parse()
                    .expect("the default metrics address parses"),
            ),
            on_network: false,
        }
    }
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            key_file: None,
            origin: None,
            checkpoint_interval_secs: crate::limits::AUDIT_CHECKPOINT_INTERVAL_SECS_DEFAULT,
        }
    }
}

/// The flags of `registry serve` (and `registry config check`). None has a
/// default here: a flag not given leaves the value of the lower layers.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Config file (TOML; deploy/registry.toml lists every key). Default:
    /// $REGISTRY_CONFIG, else none. Precedence: defaults < file <
    /// REGISTRY_* variables < flags.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Store directory [default: ./registry-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC address [default: 127.0.0.1:50051].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// How an acknowledged append is made durable [default: fdatasync].
    #[arg(long, value_enum)]
    pub sync: Option<crate::cli::SyncArg>,
    /// Free disk space (MiB) kept in reserve on the store's filesystem:
    /// below it appends are refused (UNAVAILABLE, nothing written) and
    /// Caseworker/Import report NOT_SERVING, until space is freed. 0: no
    /// reserve [default: 1024].
    #[arg(long, value_name = "N")]
    pub disk_reserve_mib: Option<u64>,
    /// Master key file (64 hex digits). Default: $REGISTRY_MASTER_KEY, else a
    /// development key created in DATA_DIR/master.key (with a warning) unless
    /// --allow-development-master-key=false.
    #[arg(long, value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Without a master key (file or $REGISTRY_MASTER_KEY): create and use a
    /// development key in DATA_DIR/master.key (true), or refuse to start
    /// (false) [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_development_master_key: Option<bool>,
    /// Access file (tokens, certificate principals). Default DATA_DIR/access.json,
    /// created on first start with one admin token in DATA_DIR/admin.token.
    #[arg(long, value_name = "FILE")]
    pub access_file: Option<PathBuf>,
    /// Run as a node of a replicated cluster described by FILE (node id,
    /// members' Raft and client addresses, node TLS): docs/CLUSTER.md.
    /// Unset: a single node.
    #[arg(long, value_name = "FILE")]
    pub cluster: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address. Insecure: never in production.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure_plaintext_on_network: Option<bool>,
    /// PEM certificate chain of the server: enables TLS (with --tls-key).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the server.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA that signs client certificates: enables mutual TLS.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: refuse connections without a client certificate
    /// (default: optional, so bearer tokens work over TLS too).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_client_cert_required: Option<bool>,
    /// Address of the Prometheus endpoint (`GET /metrics`, plain HTTP), or
    /// `off`. A non-loopback address needs --metrics-on-network [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR|off", value_parser = crate::metrics::listen::parse_listen)]
    pub metrics_listen: Option<Listen>,
    /// Serve the metrics endpoint on a non-loopback address (plain HTTP: put
    /// it on a private network; metrics carry no personal data).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub metrics_on_network: Option<bool>,
    /// Audit signing key file (default DATA_DIR/audit-signing.key, created on
    /// first start); a named file must exist.
    #[arg(long, value_name = "FILE")]
    pub audit_key_file: Option<PathBuf>,
    /// Log origin: checkpoint origin line and key name of a new key.
    #[arg(long, value_name = "ORIGIN")]
    pub audit_origin: Option<String>,
    /// Seconds between periodic checkpoints (signed only if the tree grew) [default: 60].
    #[arg(long, value_name = "SECS")]
    pub checkpoint_interval_secs: Option<u64>,
}

/// The global flags that are settings too (`registry --log-format json serve`).
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalArgs {
    /// `--log-format`, if given.
    pub log_format: Option<LogFormat>,
    /// `--sled-cache-mib`, if given.
    pub sled_cache_mib: Option<u64>,
}

/// A configuration that could not be loaded: names the key and where its
/// value came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Where the config file came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOrigin {
    /// The `--config` flag.
    Flag,
    /// The `REGISTRY_CONFIG` variable ([`CONFIG_ENV`]).
    Env,
}

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The config file at this path.
    File(PathBuf),
    /// The environment variable of this name (`REGISTRY_*`).
    Env(String),
    /// The command-line flag of this name (`--listen`).
    Flag(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// The layered configuration: the settings and where each came from.
#[derive(Debug)]
pub struct Loaded {
    /// The settings in force.
    pub settings: Settings,
    /// The config file, if one was given, and by what.
    pub file: Option<(PathBuf, FileOrigin)>,
    figment: Figment,
    /// `REGISTRY_*` variables set that are no setting (names only).
    pub ignored_env: Vec<String>,
}

const DEFAULT_NAME: &str = "built-in default";
const ENV_NAME: &str = "environment variable";
const FLAG_NAME: &str = "command-line flag";

impl Loaded {
    /// The source of the value of `path` (a key of [`KEYS`]).
    pub fn source(&self, path: &str) -> Source {
        let Some(md) = self.figment.find_metadata(path) else {
            return Source::Default;
        };
        source_of(md, path)
    }

    /// The configuration `registry serve` runs with. Assumes [`check`]
    /// found no problem (a TLS key without a certificate is ignored here).
    pub fn serve_config(&self) -> crate::server::ServeConfig {
        let s = &self.settings;
        let mut config = crate::server::ServeConfig::new(s.data_dir.clone(), s.listen);
        config.sync = s.sync;
        config.master_key_file = s.master_key_file.clone();
        config.allow_development_master_key = s.allow_development_master_key;
        config.access_file = s.access_file.clone();
        config.cluster = s.cluster.clone();
        config.disk_reserve_mib = s.disk_reserve_mib;
        config.insecure_plaintext = s.insecure_plaintext_on_network;
        config.tls = match (&s.tls.cert, &s.tls.key) {
            (Some(cert), Some(key)) => Some(crate::auth::tls::ServerTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: s.tls.client_ca.clone(),
                client_cert_required: s.tls.client_cert_required,
            }),
            _ => None,
        };
        config.metrics_listen = match s.metrics.listen {
            Listen::Off => None,
            Listen::On(addr) => Some(addr),
        };
        config.metrics_on_network = s.metrics.on_network;
        config.audit = crate::audit::AuditConfig {
            key_file: s.audit.key_file.clone(),
            origin: s.audit.origin.clone(),
            checkpoint_interval: std::time::Duration::from_secs(s.audit.checkpoint_interval_secs),
        };
        config
    }
}

fn source_of(md: &Metadata, path: &str) -> Source {
    if md.name == DEFAULT_NAME {
        Source::Default
    } else if md.name == ENV_NAME {
        Source::Env(env_name(path))
    } else if md.name == FLAG_NAME {
        Source::Flag(find_key(path).map_or("?", |k| k.flag))
    } else {
        match md.source.as_ref().and_then(|s| s.file_path()) {
            Some(p) => Source::File(p.to_path_buf()),
            None => Source::Default,
        }
    }
}

/// A provider with the data of another and our own name for it.
struct Named {
    name: &'static str,
    data: Dict,
}

impl Provider for Named {
    fn metadata(&self) -> Metadata {
        let name = self.name;
        Metadata::named(name).interpolater(move |_, keys| {
            let path = keys.join(".");
            match name {
                ENV_NAME => env_name(&path),
                FLAG_NAME => find_key(&path).map_or(path, |k| k.flag.to_string()),
                _ => path,
            }
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

/// Puts `value` at the dotted `path` of `dict`.
fn insert(dict: &mut Dict, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            dict.insert(path.to_string(), value);
        }
        Some((section, rest)) => {
            let entry = dict
                .entry(section.to_string())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// The settings given as `REGISTRY_*` variables in `vars`, and the names of
/// the `REGISTRY_*` variables that are no settings.
fn env_layer(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<(Dict, Vec<String>), ConfigError> {
    let mut dict = Dict::new();
    let mut ignored = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("REGISTRY_") {
            continue;
        }
        let Some(key) = KEYS.iter().find(|k| k.env() == name) else {
            if !OTHER_ENV.contains(&name) {
                ignored.push(name.to_string());
            }
            continue;
        };
        let value = value
            .into_string()
            .map_err(|_| ConfigError(format!("{}: {name} is not valid UTF-8", key.path)))?;
        if value.trim().is_empty() {
            continue;
        }
        let value = match key.kind {
            Kind::Text => Value::from(value),
            // `true`/`false` and numbers become typed values; anything else
            // stays a string and is refused by the type, naming the variable.
            Kind::Bool | Kind::Number => value.parse::<Value>().expect("infallible"),
        };
        insert(&mut dict, key.path, value);
    }
    ignored.sort();
    Ok((dict, ignored))
}

fn text(path: &Path, flag: &str) -> Result<Value, ConfigError> {
    path.to_str()
        .map(Value::from)
        .ok_or_else(|| ConfigError(format!("{flag}: the path is not valid UTF-8")))
}

/// The settings given as flags.
fn flag_layer(args: &ServeArgs, globals: &GlobalArgs) -> Result<Dict, ConfigError> {
    let mut v: Vec<(&str, Value)> = Vec::new();
    let path =
        |key: &'static str, p: &Option<PathBuf>, v: &mut Vec<(&str, Value)>| -> Result<(), ConfigError> {
            if let Some(p) = p {
                v.push((key, text(p, find_key(key).map_or(key, |k| k.flag))?));
            }
            Ok(())
        };
    path("data_dir", &args.data_dir, &mut v)?;
    path("master_key_file", &args.master_key_file, &mut v)?;
    path("access_file", &args.access_file, &mut v)?;
    path("cluster", &args.cluster, &mut v)?;
    path("tls.cert", &args.tls_cert, &mut v)?;
    path("tls.key", &args.tls_key, &mut v)?;
    path("tls.client_ca", &args.tls_client_ca, &mut v)?;
    path("audit.key_file", &args.audit_key_file, &mut v)?;
    if let Some(a) = args.listen {
        v.push(("listen", Value::from(a.to_string())));
    }
    if let Some(s) = args.sync {
        v.push(("sync", serialize(&SyncMode::from(s))));
    }
    if let Some(n) = args.disk_reserve_mib {
        v.push(("disk_reserve_mib", Value::from(n)));
    }
    if let Some(n) = globals.sled_cache_mib {
        v.push(("sled_cache_mib", Value::from(n)));
    }
    if let Some(f) = globals.log_format {
        v.push(("log_format", serialize(&f)));
    }
    let bools = [
        ("allow_development_master_key", args.allow_development_master_key),
        (
            "insecure_plaintext_on_network",
            args.insecure_plaintext_on_network,
        ),
        ("tls.client_cert_required", args.tls_client_cert_required),
        ("metrics.on_network", args.metrics_on_network),
    ];
    for (key, b) in bools {
        if let Some(b) = b {
            v.push((key, Value::from(b)));
        }
    }
    if let Some(l) = args.metrics_listen {
        v.push(("metrics.listen", serialize(&l)));
    }
    if let Some(o) = &args.audit_origin {
        v.push(("audit.origin", Value::from(o.clone())));
    }
    if let Some(n) = args.checkpoint_interval_secs {
        v.push(("audit.checkpoint_interval_secs", Value::from(n)));
    }
    let mut dict = Dict::new();
    for (key, value) in v {
        insert(&mut dict, key, value);
    }
    Ok(dict)
}

/// A value as figment holds it (enums and addresses as their text).
fn serialize<T: Serialize>(value: &T) -> Value {
    Value::serialize(value).expect("settings values serialize")
}

/// Builds the settings from the defaults, the config file (`args.config`,
/// else `$REGISTRY_CONFIG`), the `REGISTRY_*` environment variables and the
/// flags given, each layer overriding the ones before it.
pub fn load(args: &ServeArgs, globals: &GlobalArgs) -> Result<Loaded, ConfigError> {
    load_from(args, globals, std::env::vars_os())
}

/// [`load`] with the environment given (tests).
pub fn load_from(
    args: &ServeArgs,
    globals: &GlobalArgs,
    env: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Loaded, ConfigError> {
    let env: Vec<_> = env.collect();
    let file = match &args.config {
        Some(p) => Some((p.clone(), FileOrigin::Flag)),
        None => env
            .iter()
            .find(|(k, v)| k == CONFIG_ENV && !v.is_empty())
            .map(|(_, v)| (PathBuf::from(v), FileOrigin::Env)),
    };
    let defaults = match Value::serialize(Settings::default()) {
        Ok(Value::Dict(_, d)) => d,
        _ => unreachable!("the default settings serialize to a table"),
    };
    let mut figment = Figment::new().merge(Named {
        name: DEFAULT_NAME,
        data: defaults,
    });
    if let Some((path, origin)) = &file {
        let named_by = match origin {
            FileOrigin::Flag => "--config".to_string(),
            FileOrigin::Env => CONFIG_ENV.to_string(),
        };
        let meta = std::fs::metadata(path)
            .map_err(|e| ConfigError(format!("config file {} ({named_by}): {e}", path.display())))?;
        if !meta.is_file() {
            return Err(ConfigError(format!(
                "config file {} ({named_by}): not a regular file",
                path.display()
            )));
        }
        use figment::providers::Format;
        figment = figment.merge(figment::providers::Toml::file_exact(path));
    }
    let (env_dict, ignored_env) = env_layer(env.into_iter())?;
    figment = figment.merge(Named {
        name: ENV_NAME,
        data: env_dict,
    });
    figment = figment.merge(Named {
        name: FLAG_NAME,
        data: flag_layer(args, globals)?,
    });
    let settings: Settings = figment.extract().map_err(|e| describe(e, &figment))?;
    Ok(Loaded {
        settings,
        file,
        figment,
        ignored_env,
    })
}

/// A figment error as `KEY: problem (SOURCE)`, one line per error.
fn describe(errors: figment::Error, figment: &Figment) -> ConfigError {
    let lines: Vec<String> = errors
        .into_iter()
        .map(|e| {
            // figment's path of an unknown field ends with the field.
            let mut parts = e.path.clone();
            if let figment::error::Kind::UnknownField(field, _) = &e.kind {
                if parts.last() != Some(field) {
                    parts.push(field.clone());
                }
            }
            let path = parts.join(".");
            let section = parts[..parts.len().saturating_sub(1)].join(".");
            let source = match figment.find_metadata(&path).or(e.metadata.as_ref()) {
                Some(md) => match source_of(md, &path) {
                    Source::Default => match md.source.as_ref() {
                        // A file that does not parse.
                        Some(s) => format!("file {s}"),
                        None => md.name.to_string(),
                    },
                    other => other.to_string(),
                },
                None => "unknown source".to_string(),
            };
            let problem = match &e.kind {
                figment::error::Kind::UnknownField(field, expected) => format!(
                    "unknown key `{field}`{} (known: {})",
                    match section.is_empty() {
                        true => String::new(),
                        false => format!(" in [{section}]"),
                    },
                    expected.join(", ")
                ),
                // A TOML syntax error spans lines (with a code excerpt): one line.
                kind => kind
                    .to_string()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.contains('|'))
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            if path.is_empty() {
                format!("{problem} ({source})")
            } else {
                format!("{path}: {problem} ({source})")
            }
        })
        .collect();
    ConfigError(lines.join("\n"))
}

#[cfg(test)]
mod tests;
