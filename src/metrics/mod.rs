//! The Prometheus endpoint of `registry serve` (`--metrics-listen`, default
//! `127.0.0.1:9464`): `GET /metrics` in the Prometheus text format (0.0.4).
//!
//! One [`prometheus_client`] registry per server (no global state), holding:
//! - counters and histograms the components own and update as they run
//!   (the log's group commits and appends: [`log::LogMetrics`]; RPCs:
//!   [`rpc::RpcLayer`]; authentication refusals; access events; case-state
//!   cache look-ups; checkpoints signed), registered as shared handles;
//! - gauges computed at each scrape from positions the components already
//!   keep ([`Metrics::refresh`]): head, followers' lags, writer and
//!   verification state, store size, free disk.
//!
//! Privacy: every label value is a fixed word from a table in the code (a
//! method name, a status code, a refusal reason, an operation, a follower);
//! nothing from a request (case id, request id, principal, token, purpose)
//! is ever a label or a value. Every metric name is listed in README.md ("Metrics").

mod http;
pub mod listen;
pub mod log;
pub mod rpc;

use std::sync::Arc;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub use prometheus_client::metrics::counter::Counter;
pub use rpc::{RpcLayer, RpcMetrics};

use crate::log::{Broken, Store};

/// Why the metrics endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A non-loopback address without `metrics.on_network`.
    #[error(
        "refusing to serve metrics on {0}, which is not a loopback address: \
         set metrics.on_network (--metrics-on-network) to serve them there (plain HTTP), \
         or metrics.listen = \"off\""
    )]
    NotLoopback(std::net::SocketAddr),
    /// The address could not be bound.
    #[error("metrics endpoint: cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for (`metrics.listen`).
        addr: std::net::SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The server's TLS certificate could not be read.
    #[error("TLS certificate {}: {source}", path.display())]
    CertificateUnreadable {
        /// The server's PEM certificate file.
        path: std::path::PathBuf,
        /// The error reading it.
        source: std::io::Error,
    },
    /// The server's TLS certificate file holds no parsable certificate.
    #[error("TLS certificate {}: no parsable certificate", path.display())]
    CertificateUnparsable {
        /// The server's PEM certificate file.
        path: std::path::PathBuf,
    },
    /// The worklist tree (read for the worklist gauges) could not be opened.
    #[error(transparent)]
    Store(#[from] sled::Error),
    /// The HTTP endpoint could not start.
    #[error(transparent)]
    Serve(std::io::Error),
}

/// A counter by one fixed-word label (`operation`, `reason`).
pub type LabelledCounter = Family<[(&'static str, &'static str); 1], Counter>;
/// Access events recorded, by operation (`GetCase`, `FindCasesByDocument`).
pub type OperationCounter = LabelledCounter;
/// Refused calls, by reason.
pub type ReasonCounter = LabelledCounter;

type FollowerLabel = [(&'static str, &'static str); 1];
type GaugeF64 = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The followers whose lag is reported (label `follower`).
pub const FOLLOWERS: [&str; 5] = ["tail_verifier", "case_files", "merkle", "statistics", "worklists"];

/// What the scrape-time gauges are read from.
pub struct Sources {
    /// The store: head, trees and disk.
    pub store: Store,
    /// Why the writer stopped taking appends, once it has.
    pub writer_failed: watch::Receiver<Option<String>>,
    /// The tail verifier's break, if it found one.
    pub broken: watch::Receiver<Option<Broken>>,
    /// The Merkle tree (its size is the follower's position) and the checkpoints.
    pub audit: Option<crate::audit::Audit>,
    /// The statistics projection (its position, once loaded).
    pub statistics: Option<Arc<crate::projection::engine::ProjectionSlot>>,
    /// The worklist follower's status; its position is the checkpoint in its tree.
    pub worklists: Option<(Arc<crate::worklist::FollowerStatus>, sled::Tree)>,
}

/// Gauges set at each scrape.
#[derive(Default)]
struct Gauges {
    head_seq: Gauge,
    writer_up: Gauge,
    broken: Gauge,
    lag_events: Family<FollowerLabel, Gauge>,
    lag_seconds: Family<FollowerLabel, GaugeF64>,
    follower_up: Family<FollowerLabel, Gauge>,
    checkpoint_size: Gauge,
    store_bytes: Gauge,
    disk_free: Gauge,
    disk_total: Gauge,
    cert_not_after: Gauge,
}

/// The registry of one server and what its gauges are read from.
pub struct Metrics {
    registry: Registry,
    gauges: Gauges,
    sources: Sources,
    rpc: RpcMetrics,
}

impl Metrics {
    /// A registry over `sources`, with the log's metrics and, if there is an
    /// audit, the count of checkpoints signed. Metric names get the prefix `registry_`.
    pub fn new(sources: Sources) -> Metrics {
        let mut registry = Registry::with_prefix("registry");
        let gauges = Gauges::default();
        let rpc = RpcMetrics::default();
        let r = &mut registry;
        r.register(
            "rpc_calls",
            "Finished RPCs by service, method and gRPC status code",
            rpc.calls.clone(),
        );
        r.register(
            "rpc_duration_seconds",
            "RPC duration (until the response ends) by service, method and code",
            rpc.seconds.clone(),
        );
        sources.store.metrics().register(r);
        r.register(
            "log_head_seq",
            "Sequence number of the last durable event",
            gauges.head_seq.clone(),
        );
        r.register(
            "writer_up",
            "1 while the log writer takes appends; 0 once it stopped (restart needed)",
            gauges.writer_up.clone(),
        );
        r.register(
            "log_verification_broken",
            "1 once the tail verifier found a break in the chain (appends stop)",
            gauges.broken.clone(),
        );
        r.register(
            "follower_lag_events",
            "Events the follower has not applied yet (head seq - its position)",
            gauges.lag_events.clone(),
        );
        r.register(
            "follower_lag_seconds",
            "Age of the oldest event the follower has not applied (0 when caught up)",
            gauges.lag_seconds.clone(),
        );
        r.register(
            "follower_up",
            "1 while the follower runs; 0 once it stopped on an error",
            gauges.follower_up.clone(),
        );
        r.register(
            "store_size_bytes",
            "Bytes allocated to the files of the data directory (du)",
            gauges.store_bytes.clone(),
        );
        r.register(
            "disk_free_bytes",
            "Bytes available on the data directory's filesystem",
            gauges.disk_free.clone(),
        );
        r.register(
            "disk_total_bytes",
            "Size of the data directory's filesystem",
            gauges.disk_total.clone(),
        );
        if let Some(audit) = &sources.audit {
            r.register(
                "checkpoints_signed",
                "Checkpoints signed by this process",
                audit.checkpointer.signed_counter(),
            );
            r.register(
                "checkpoint_latest_size",
                "Tree size of the latest signed checkpoint",
                gauges.checkpoint_size.clone(),
            );
        }
        Metrics {
            registry,
            gauges,
            sources,
            rpc,
        }
    }

    /// The RPC layer to install (outermost) on the gRPC server.
    pub fn rpc_layer(&self) -> RpcLayer {
        RpcLayer::new(rpc::Rpc {
            metrics: self.rpc.clone(),
        })
    }

    /// Registers the case service's counters: cache look-ups and access events.
    pub fn register_cases(&mut self, cases: &crate::cases::Cases) {
        let (hits, misses, access) = cases.metrics();
        let r = &mut self.registry;
        r.register(
            "case_cache_hits",
            "Case-state cache look-ups that found the case",
            hits,
        );
        r.register(
            "case_cache_misses",
            "Case-state cache look-ups that did not",
            misses,
        );
        r.register(
            "access_events",
            "Access events recorded (reads of personal data), by operation",
            access,
        );
    }

    /// Registers the refusals of the access layer, by reason.
    pub fn register_access(&mut self, access: &crate::auth::AccessControl) {
        self.registry.register(
            "auth_failures",
            "Calls refused by the access layer, by reason (missing, malformed, token_unknown, \
             token_expired, token_revoked, certificate_unregistered, role, unknown_method)",
            access.refusals(),
        );
    }

    /// Registers the expiry (notAfter, Unix seconds) of the server's TLS
    /// certificate (the first of its PEM chain).
    pub fn register_certificate(&mut self, cert_pem: &std::path::Path) -> Result<(), MetricsError> {
        let pem = std::fs::read(cert_pem).map_err(|source| MetricsError::CertificateUnreadable {
            path: cert_pem.to_path_buf(),
            source,
        })?;
        let not_after = certificate_not_after(&pem).ok_or_else(|| MetricsError::CertificateUnparsable {
            path: cert_pem.to_path_buf(),
        })?;
        self.gauges.cert_not_after.set(not_after);
        self.registry.register(
            "tls_certificate_not_after_seconds",
            "Expiry of the server's TLS certificate (Unix seconds)",
            self.gauges.cert_not_after.clone(),
        );
        Ok(())
    }

    /// Reads every scrape-time gauge from its source. Blocking (sled reads, statvfs).
    pub fn refresh(&self) {
        let g = &self.gauges;
        let s = &self.sources;
        let store = &s.store;
        let head = store.head().map(|h| h.seq).unwrap_or(0);
        g.head_seq.set(head as i64);
        g.writer_up.set(i64::from(s.writer_failed.borrow().is_none()));
        let broken = s.broken.borrow().is_some();
        g.broken.set(i64::from(broken));
        let now_us = crate::clock::now_us();
        let lag = |follower: &'static str, position: Option<u64>| {
            let label = [("follower", follower)];
            let Some(pos) = position else {
                g.lag_events.remove(&label);
                g.lag_seconds.remove(&label);
                return;
            };
            let behind = head.saturating_sub(pos);
            g.lag_events.get_or_create(&label).set(behind as i64);
            // The age of the oldest event not yet applied.
            let seconds = match behind {
                0 => 0.0,
                _ => match store.get(pos + 1) {
                    Ok(Some(ev)) => (now_us - ev.record.recorded_at_us).max(0) as f64 / 1e6,
                    _ => 0.0,
                },
            };
            g.lag_seconds.get_or_create(&label).set(seconds);
        };
        let up = |follower: &'static str, running: bool| {
            g.follower_up
                .get_or_create(&[("follower", follower)])
                .set(i64::from(running));
        };
        lag("tail_verifier", store.verified().ok().map(|h| h.seq));
        up("tail_verifier", !broken);
        lag("case_files", store.case_files.persisted_at().ok().map(|h| h.seq));
        if let Some(audit) = &s.audit {
            lag("merkle", Some(audit.tree.size()));
            if let Ok(Some(size)) = audit.checkpointer.latest_size() {
                g.checkpoint_size.set(size as i64);
            }
        }
        if let Some(slot) = &s.statistics {
            use crate::projection::engine::SlotState;
            match slot.state() {
                SlotState::Ready(shared) => {
                    let pos = shared
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .state()
                        .position
                        .seq;
                    lag("statistics", Some(pos));
                    up("statistics", true);
                }
                // Loading: the position is not known yet.
                SlotState::Loading => {
                    lag("statistics", None);
                    up("statistics", true);
                }
                SlotState::Failed(_) | SlotState::Stopped(_) => {
                    lag("statistics", None);
                    up("statistics", false);
                }
            }
        }
        if let Some((status, tree)) = &s.worklists {
            let pos = match tree.get(crate::worklist::index::KEY_CHECKPOINT) {
                Ok(Some(v)) => crate::log::Head::from_bytes(&v).ok().map(|h| h.seq),
                Ok(None) => Some(0),
                Err(_) => None,
            };
            lag("worklists", pos);
            up("worklists", status.failed().is_none());
        }
        g.store_bytes.set(allocated_bytes(store.dir()) as i64);
        if let Ok((free, total)) = crate::log::disk::space(store.dir()) {
            g.disk_free.set(free as i64);
            g.disk_total.set(total as i64);
        }
    }

    /// Refreshes the gauges and encodes the registry (Prometheus text 0.0.4). Blocking.
    pub fn render(&self) -> String {
        self.refresh();
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// Bytes allocated on disk to the files under `dir` (as `du` counts them:
/// sled's files are sparse at first). Unreadable entries count 0.
fn allocated_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => allocated_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// The notAfter (Unix seconds) of the first certificate in a PEM file.
fn certificate_not_after(pem: &[u8]) -> Option<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The metrics of a running server: the registry, and the HTTP endpoint if
/// one is listening.
pub struct Running {
    metrics: Arc<Metrics>,
    server: Option<http::Endpoint>,
}

impl Running {
    /// Serves `metrics` on `listener` (none: metrics are counted but not served).
    pub fn start(metrics: Metrics, listener: Option<tokio::net::TcpListener>) -> std::io::Result<Running> {
        let metrics = Arc::new(metrics);
        let server = match listener {
            Some(l) => Some(http::Endpoint::start(l, metrics.clone())?),
            None => None,
        };
        Ok(Running { metrics, server })
    }

    /// The RPC layer to install (outermost) on the gRPC server.
    pub fn rpc_layer(&self) -> RpcLayer {
        self.metrics.rpc_layer()
    }

    /// Where the endpoint listens, if it does.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(|s| s.addr)
    }

    /// Stops the endpoint.
    pub async fn shutdown(self) {
        if let Some(s) = self.server {
            s.stop().await;
        }
    }
}

/// Builds the registry of a server about to serve and starts its endpoint
/// (`config.metrics_listen`; plaintext HTTP, so only on loopback unless
/// `config.metrics_on_network`).
pub async fn start(
    config: &crate::server::ServeConfig,
    log: &crate::log::Log,
    cases: &crate::cases::Cases,
    access: &crate::auth::AccessControl,
    audit: &crate::audit::Audit,
    statistics: Arc<crate::projection::engine::ProjectionSlot>,
    worklists: Arc<crate::worklist::FollowerStatus>,
) -> Result<Running, MetricsError> {
    let listener = match config.metrics_listen {
        None => None,
        Some(addr) => {
            listen::check_listen(addr, config.metrics_on_network)?;
            Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| MetricsError::Listen { addr, source })?,
            )
        }
    };
    let worklist_tree = log.store().db().open_tree(crate::worklist::TREE)?;
    let mut metrics = Metrics::new(Sources {
        store: log.store().clone(),
        writer_failed: log.writer_failed(),
        broken: log.broken(),
        audit: Some(audit.clone()),
        statistics: Some(statistics),
        worklists: Some((worklists, worklist_tree)),
    });
    metrics.register_cases(cases);
    metrics.register_access(access);
    if let Some(tls) = &config.tls {
        metrics.register_certificate(&tls.cert)?;
    }
    let running = Running::start(metrics, listener).map_err(MetricsError::Serve)?;
    if let Some(addr) = running.local_addr() {
        tracing::info!(%addr, "metrics endpoint: GET /metrics");
    }
    Ok(running)
}
