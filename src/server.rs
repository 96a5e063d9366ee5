//! `registry serve`: opens the log and serves gRPC until interrupted.
//!
//! Start-up order: open the store and verify the tail of the chain (a broken
//! log is refused), load the master key, start the writer, then listen.
//! Shutdown (SIGINT/SIGTERM): stop accepting connections, finish in-flight
//! requests, stop the writer and flush.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::api::CaseworkerService;
use crate::cases::Cases;
use crate::limits::GRPC_CONCURRENCY_PER_CONNECTION;
use crate::log::{Log, SyncMode, WriterConfig};
use crate::pii::{KeyStore, MasterKey};

/// Environment variable holding the master key (64 hex digits).
pub const MASTER_KEY_ENV: &str = "REGISTRY_MASTER_KEY";

/// Why the server refused to start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Plaintext (no TLS) on this non-loopback address without
    /// `insecure_plaintext`.
    #[error(
        "refusing to serve plaintext on {0}, which is not a loopback address: \
         give --tls-cert and --tls-key (and --tls-client-ca for mutual TLS), \
         or --insecure-plaintext-on-network to force it \
         (config file: tls.cert and tls.key, or insecure_plaintext_on_network = true)"
    )]
    PlaintextOffLoopback(SocketAddr),
    /// No master key file and no `$REGISTRY_MASTER_KEY`, and the development
    /// key is not allowed (`allow_development_master_key` is false).
    #[error(
        "no master key: set master_key_file (--master-key-file, REGISTRY_MASTER_KEY_FILE) \
         or {MASTER_KEY_ENV} (64 hex digits); allow_development_master_key is false, so no \
         development key is created (create a key with: registry keys generate --out master.key)"
    )]
    NoMasterKey,
    /// A cluster node could not listen on its Raft address.
    #[error("binding the Raft address {address}: {source}")]
    RaftBind {
        /// This node's `raft` address from the cluster file.
        address: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Fail-stop: the tail verifier found this break in the chain while
    /// serving; the server drained and exited.
    #[error("stopped serving: the log failed verification while open: {0}")]
    BrokenWhileOpen(crate::log::Broken),
    /// Fail-stop: the writer stopped taking appends (the reason given:
    /// a storage error, a dead case-file follower); the server drained and
    /// exited.
    #[error("stopped serving: the log writer stopped taking appends: {0}")]
    WriterStopped(String),
    /// A fail-stop, after which closing the store failed too.
    #[error("{stop} (closing the store also failed: {close})")]
    StoppedAndCloseFailed {
        /// The fail-stop ([`ServeError::BrokenWhileOpen`] or
        /// [`ServeError::WriterStopped`]).
        stop: Box<ServeError>,
        /// Why closing the store then failed.
        close: crate::log::StoreError,
    },
    /// An I/O error at start-up: binding the gRPC listener, starting the
    /// disk guard, or the statistics and worklist followers' threads.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A TLS file of the server could not be read.
    #[error(transparent)]
    Tls(#[from] crate::auth::tls::TlsError),
    /// The access file could not be created or loaded.
    #[error(transparent)]
    Access(#[from] crate::auth::access_file::AccessError),
    /// The master key could not be loaded (or the development key created),
    /// or the person-key store could not be opened with it.
    #[error(transparent)]
    MasterKey(#[from] crate::pii::PiiError),
    /// The log could not be opened (including a tail that fails verification).
    #[error(transparent)]
    Open(#[from] crate::log::OpenError),
    /// Stopping the writer and flushing the store at shutdown failed.
    #[error(transparent)]
    Close(#[from] crate::log::StoreError),
    /// The case service could not start (e.g. recording the genesis policy
    /// instruments).
    #[error(transparent)]
    Cases(#[from] crate::cases::CaseError),
    /// The cluster file could not be loaded.
    #[error(transparent)]
    ClusterFile(#[from] crate::cluster::file::ClusterFileError),
    /// The cluster (Raft) could not start or stop.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The audit part (Merkle tree, signing key, first checkpoint) could
    /// not start.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// The gRPC reflection service could not be built.
    #[error(transparent)]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed (TLS set-up, serving).
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    /// A blocking task (opening, closing the store) panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// What `registry serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The data directory: the sled store, and by default the master key,
    /// access file, admin token and audit signing key.
    pub data_dir: PathBuf,
    /// The gRPC address [`serve`] binds (`listen`, `--listen`).
    pub listen: SocketAddr,
    /// How a group commit is made durable before appends are acknowledged.
    pub sync: SyncMode,
    /// Master key file; default: `$REGISTRY_MASTER_KEY`, else a development
    /// key in `<data_dir>/master.key`, created on first start (if allowed).
    pub master_key_file: Option<PathBuf>,
    /// Without a master key file or `$REGISTRY_MASTER_KEY`: use (and create)
    /// the development key (true, the default), or refuse to start.
    pub allow_development_master_key: bool,
    /// The access file (tokens, certificate principals); default
    /// `<data_dir>/access.json`. Created on first start with one admin
    /// token, written to `<data_dir>/admin.token` (mode 0600).
    pub access_file: Option<PathBuf>,
    /// TLS (and mutual TLS with a client CA); `None`: plaintext, allowed
    /// only on a loopback address unless `insecure_plaintext` is set.
    pub tls: Option<crate::auth::tls::ServerTls>,
    /// Serve plaintext on a non-loopback address (never in production).
    pub insecure_plaintext: bool,
    /// The Prometheus endpoint (`GET /metrics`); `None`: not served (the
    /// default here; `registry serve` defaults to `127.0.0.1:9464`).
    pub metrics_listen: Option<SocketAddr>,
    /// Allow a non-loopback `metrics_listen`.
    pub metrics_on_network: bool,
    /// Free disk space kept in reserve, in MiB (0: none): see
    /// [`crate::log::Log::guard_disk`].
    pub disk_reserve_mib: u64,
    /// Audit signing key, origin and checkpoint interval.
    pub audit: crate::audit::AuditConfig,
    /// The cluster file (docs/CLUSTER.md); `None`: a single node.
    pub cluster: Option<PathBuf>,
}

impl ServeConfig {
    /// Plaintext on `listen`, default master key, catalog and access file.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> ServeConfig {
        ServeConfig {
            data_dir,
            listen,
            sync: SyncMode::Fdatasync,
            master_key_file: None,
            allow_development_master_key: true,
            access_file: None,
            tls: None,
            insecure_plaintext: false,
            metrics_listen: None,
            metrics_on_network: false,
            disk_reserve_mib: crate::limits::DISK_RESERVE_MIB_DEFAULT,
            audit: crate::audit::AuditConfig::default(),
            cluster: None,
        }
    }

    /// The access file in use.
    pub fn access_file(&self) -> PathBuf {
        self.access_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("access.json"))
    }
}

/// What serving on `listen` means for the transport policy (plaintext only
/// on loopback unless forced).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TLS is configured (mutual TLS too when a client CA is).
    Tls,
    /// Plaintext on a loopback address (development; warned about).
    PlaintextLoopback,
    /// Plaintext on a network address, forced by `insecure_plaintext`.
    PlaintextForced,
}

/// The transport `config` gives on `listen`, or why it is refused.
pub fn transport_policy(config: &ServeConfig, listen: SocketAddr) -> Result<Transport, ServeError> {
    if config.tls.is_some() {
        return Ok(Transport::Tls);
    }
    if crate::auth::tls::is_loopback(&listen) {
        return Ok(Transport::PlaintextLoopback);
    }
    if config.insecure_plaintext {
        return Ok(Transport::PlaintextForced);
    }
    Err(ServeError::PlaintextOffLoopback(listen))
}

/// Refuses plaintext on a non-loopback address unless forced; warns about plaintext.
pub fn check_transport(config: &ServeConfig, listen: SocketAddr) -> Result<(), ServeError> {
    match transport_policy(config, listen)? {
        Transport::Tls => {}
        Transport::PlaintextLoopback => {
            tracing::warn!(%listen, "serving PLAINTEXT gRPC on a loopback address (development only; use --tls-cert/--tls-key)");
        }
        Transport::PlaintextForced => {
            tracing::warn!(%listen, "serving PLAINTEXT gRPC on a network address: credentials and personal data cross the network unencrypted");
        }
    }
    Ok(())
}

/// Refuses to start without a master key when the development key is not allowed.
pub fn check_master_key_source(config: &ServeConfig) -> Result<(), ServeError> {
    if config.master_key_file.is_some()
        || std::env::var_os(MASTER_KEY_ENV).is_some()
        || config.allow_development_master_key
    {
        return Ok(());
    }
    Err(ServeError::NoMasterKey)
}

/// Opens the access file, creating it with a bootstrap admin token on first start.
pub fn open_access(config: &ServeConfig) -> Result<crate::auth::AccessControl, ServeError> {
    let path = config.access_file();
    let token_out = config.data_dir.join("admin.token");
    if crate::auth::access_file::bootstrap(&path, &token_out)? {
        tracing::warn!(
            access_file = %path.display(),
            token_file = %token_out.display(),
            "ACCESS FILE CREATED with one admin token (in the token file, mode 0600): \
             use it to create the principals' tokens, then revoke it and delete the file"
        );
    }
    Ok(crate::auth::AccessControl::open(&path)?)
}

/// Everything an open registry holds: the log and the case service.
///
/// Field order matters: `cases` holds an appender, and dropping `log` waits
/// for the writer, which stops only when every appender is gone. Fields drop
/// in declaration order, so `cases` goes first.
pub struct Opened {
    /// The case service (holds an appender of `log`).
    pub cases: Cases,
    /// The open log: store, writer and tail verifier.
    pub log: Log,
}

/// Loads the master key: a named file, the environment, or a development key.
pub fn load_master_key(file: Option<&PathBuf>, data_dir: &std::path::Path) -> Result<MasterKey, ServeError> {
    if let Some(path) = file {
        return Ok(MasterKey::load(path)?);
    }
    if std::env::var_os(MASTER_KEY_ENV).is_some() {
        return Ok(MasterKey::from_env(MASTER_KEY_ENV)?);
    }
    let path = data_dir.join("master.key");
    let (key, created) = MasterKey::load_or_create_dev(&path)?;
    if created {
        tracing::warn!(
            path = %path.display(),
            "DEVELOPMENT MASTER KEY CREATED next to the data: personal data is only as safe as this file. \
             In production pass --master-key-file or set REGISTRY_MASTER_KEY"
        );
    } else {
        tracing::warn!(path = %path.display(), "using the development master key stored next to the data");
    }
    Ok(key)
}

/// Opens the log (verifying its tail) and the case service, and records the
/// genesis policy instruments in a store without a policy stream. Blocking
/// (not on a runtime thread).
pub fn open(data_dir: &std::path::Path, sync: SyncMode, master: MasterKey) -> Result<Opened, ServeError> {
    let log = Log::open(data_dir, WriterConfig { sync })?;
    let keys = KeyStore::open(log.store().db(), master)?;
    let cases = Cases::new(log.appender(), log.store().clone(), keys)?;
    cases.ensure_policy_genesis()?;
    Ok(Opened { cases, log })
}

/// Opens a cluster node's log (its writer proposes through the cluster,
/// started next) and case service. The genesis policy instruments are
/// recorded by whichever node leads first (`record_genesis_when_leading`).
pub fn open_cluster_node(
    data_dir: &std::path::Path,
    sync: SyncMode,
    master: MasterKey,
) -> Result<Opened, ServeError> {
    let log = Log::open_replicated(data_dir, WriterConfig { sync })?;
    // Person keys and the document index write through the cluster once it runs.
    log.store().side_slot().expect_replication();
    let mut keys = KeyStore::open(log.store().db(), master)?;
    keys.replicate_with(log.store().side_slot().clone());
    let cases = Cases::new(log.appender(), log.store().clone(), keys)?;
    Ok(Opened { cases, log })
}

/// On a cluster node: records the genesis policy instruments once this
/// node leads, unless the policy stream exists (written by another leader
/// and replicated here). Retries every half second until one of the two.
async fn record_genesis_when_leading(cases: Cases) {
    loop {
        let c = cases.clone();
        match tokio::task::spawn_blocking(move || c.ensure_policy_genesis()).await {
            Ok(Ok(())) => return,
            Ok(Err(crate::cases::CaseError::NotLeader { .. } | crate::cases::CaseError::Unavailable(_))) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "recording the genesis policy instruments failed");
                return;
            }
            Err(_) => return,
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Runs the service until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    // serve_on checks the transport (plaintext only on loopback) before anything else.
    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    serve_on(config, listener, shutdown).await
}

/// Runs the service on a bound listener until `shutdown` resolves (tests use this).
pub async fn serve_on(
    config: ServeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    check_transport(&config, listener.local_addr()?)?;
    let tls = config.tls.as_ref().map(|t| t.config()).transpose()?;
    check_master_key_source(&config)?;
    let master = load_master_key(config.master_key_file.as_ref(), &config.data_dir)?;
    let (data_dir, sync) = (config.data_dir.clone(), config.sync);
    let Some(cluster_file) = &config.cluster else {
        let opened = tokio::task::spawn_blocking(move || open(&data_dir, sync, master)).await??;
        return run(config, listener, opened, tls, None, shutdown).await;
    };
    let file = crate::cluster::ClusterFile::load(cluster_file)?;
    let raft_listener = tokio::net::TcpListener::bind(&file.me().raft)
        .await
        .map_err(|source| ServeError::RaftBind {
            address: file.me().raft.clone(),
            source,
        })?;
    let opened = tokio::task::spawn_blocking(move || open_cluster_node(&data_dir, sync, master)).await??;
    let cluster = crate::cluster::Cluster::start(&opened.log, &file, raft_listener).await?;
    tokio::spawn(record_genesis_when_leading(opened.cases.clone()));
    run(config, listener, opened, tls, Some(cluster), shutdown).await
}

/// Serves a registry opened by [`open`] (whose data
/// directory is `config.data_dir`) on a bound listener until `shutdown`
/// resolves, or until the tail verifier finds a break; then stops the writer
/// and flushes. The master key of `config` is unused:
/// `opened` already holds them. Tests use this to keep a handle on the store
/// of a running server.
pub async fn serve_opened(
    config: ServeConfig,
    listener: tokio::net::TcpListener,
    opened: Opened,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    check_transport(&config, listener.local_addr()?)?;
    let tls = config.tls.as_ref().map(|t| t.config()).transpose()?;
    run(config, listener, opened, tls, None, shutdown).await
}

async fn run(
    config: ServeConfig,
    listener: tokio::net::TcpListener,
    opened: Opened,
    tls: Option<tonic::transport::ServerTlsConfig>,
    cluster: Option<crate::cluster::Cluster>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let access = std::sync::Arc::new(open_access(&config)?);
    let cluster_raft = cluster.as_ref().map(|c| c.raft.clone());
    let mut opened = opened;
    if config.disk_reserve_mib > 0 {
        let every = std::time::Duration::from_millis(crate::limits::DISK_CHECK_INTERVAL_MS);
        opened.log.guard_disk(config.disk_reserve_mib << 20, every)?;
    }
    // Fail-stop: a break the tail verifier finds while serving, or a writer
    // that stopped taking appends (storage error, dead case-file follower),
    // drains the server and ends it with an error (a non-zero exit), so a
    // supervisor restarts it: a broken log is never served, and a writer
    // that refuses everything is not left running behind a live process.
    let mut broken = opened.log.broken();
    let mut writer_failed = opened.log.writer_failed();
    let shutdown = {
        let (mut broken, mut writer_failed) = (broken.clone(), writer_failed.clone());
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = broken.wait_for(|b| b.is_some()) => {}
                _ = writer_failed.wait_for(|f| f.is_some()) => {}
            }
        }
    };
    // Audit: catch the Merkle tree up, sign a checkpoint, start the follower and the checkpointer.
    let audit = crate::audit::runtime::start(&opened.log, config.audit.clone()).await?;
    // A cluster node cosigns the leader's checkpoints, and collects
    // cosignatures on its own while it leads (docs/AUDIT.md §2b).
    let (cosign_task, cosigner_vkey) = match &cluster {
        Some(c) => {
            let checkpointer = audit.audit().checkpointer.clone();
            let _ = c.checkpointer.set(checkpointer.clone());
            let cosigner = std::sync::Arc::new(crate::cluster::cosign::NodeCosigner::new(
                checkpointer.clone(),
                c.me,
            ));
            let vkey = cosigner.vkey();
            tracing::info!(cosigner_vkey = %vkey, "cosigner key of this node");
            crate::cluster::cosign::install(&c.cosigner, cosigner);
            let task = tokio::spawn(crate::cluster::cosign::collect(
                c.raft.clone(),
                checkpointer,
                c.peer_tls.clone(),
                config.audit.checkpoint_interval,
            ));
            (Some(task), Some(vkey))
        }
        None => (None, None),
    };
    // Statistics: the follower loads the projection and catches it up while
    // cases are already served (a large store takes seconds); Statistics
    // answers UNAVAILABLE and its health says NOT_SERVING until then.
    let stats = crate::projection::start(&opened.log)?;
    let stats_slot = stats.slot();
    let stats_loaded = stats_slot
        .wait_loaded(std::time::Duration::from_millis(
            crate::limits::PROJECTION_LOAD_WAIT_AT_START_MS,
        ))
        .await;
    if !stats_loaded {
        tracing::info!("statistics projection still loading; serving cases meanwhile");
    }
    // Worklists: the follower catches up and follows; UNAVAILABLE until then.
    let worklists = crate::worklist::start(&opened.log)?;
    let (stats_for_metrics, worklists_for_metrics) = (stats.slot(), worklists.status());
    let metrics = crate::metrics::start(
        &config,
        &opened.log,
        &opened.cases,
        &access,
        audit.audit(),
        stats_for_metrics,
        worklists_for_metrics,
    )
    .await?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<crate::api::pb::caseworker_server::CaseworkerServer<CaseworkerService>>()
        .await;
    health_reporter
        .set_serving::<crate::api::import::ImportServer<crate::api::import::ImportService>>()
        .await;
    health_reporter
        .set_serving::<crate::api::pb::audit_server::AuditServer<crate::api::audit::AuditService>>()
        .await;
    type StatsServer = crate::api::statistics::StatisticsServer<crate::api::statistics::StatisticsService>;
    if stats_loaded {
        health_reporter.set_serving::<StatsServer>().await;
    } else {
        health_reporter.set_not_serving::<StatsServer>().await;
    }
    type WorklistsServer = crate::api::worklists::WorklistsServer<crate::api::worklists::WorklistService>;
    health_reporter.set_not_serving::<WorklistsServer>().await;
    // From now on the statuses follow the writer, the disk and the
    // statistics and worklist followers.
    let health_keeper = tokio::spawn(keep_health_true(
        health_reporter.clone(),
        broken.clone(),
        writer_failed.clone(),
        opened.log.disk(),
        stats_slot,
        worklists.status(),
        cluster_raft.clone(),
    ));
    health_reporter
        .set_serving::<crate::api::pb::admin_server::AdminServer<crate::api::admin::AdminService>>()
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    // Reflection in both protocol versions: grpc.reflection.v1 and the
    // v1alpha that many clients (grpcio-reflection, older grpcurl) speak.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder().build_v1()?;
    let reflection_v1alpha = reflection_builder().build_v1alpha()?;
    tracing::info!(listen = %listener.local_addr()?, data_dir = %config.data_dir.display(), tls = tls.is_some(), "serving");
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .concurrency_limit_per_connection(GRPC_CONCURRENCY_PER_CONNECTION)
        .layer(metrics.rpc_layer())
        .layer(crate::api::wire_errors::WireErrorLayer::default())
        .layer(crate::auth::AuthLayer::access(access.clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(CaseworkerService::new(opened.cases.clone()).into_server())
        .add_service(
            crate::api::import::ImportService::new(CaseworkerService::new(opened.cases.clone()))
                .into_server(),
        )
        .add_service(
            crate::api::policy::PolicyService::new(opened.cases.clone(), worklists.projection())
                .into_server(),
        )
        .add_service(
            crate::api::audit::AuditService::new(audit.audit().clone(), opened.log.subscribe_head())
                .into_server(),
        )
        .add_service(
            crate::api::statistics::StatisticsService::with_slot(
                stats.slot(),
                crate::projection::SuppressionRules::default(),
            )
            .with_releases(audit.audit().clone())
            .with_worklists(crate::api::worklists::WorklistService::new(
                worklists.projection(),
                worklists.status(),
            ))
            .into_server(),
        )
        .add_service(
            crate::api::worklists::WorklistService::new(worklists.projection(), worklists.status())
                .into_server(),
        )
        .add_service(
            crate::api::admin::AdminService::new(
                access,
                opened.cases.clone(),
                audit.audit().checkpointer.clone(),
            )
            .with_cluster(cluster_raft.clone(), cosigner_vkey)
            .into_server(),
        )
        .serve_with_incoming_shutdown(
            // Accepted sockets do not inherit the builder's tcp_nodelay (tonic ignores it
            // for a given listener): without TCP_NODELAY, Nagle holds back the
            // response's last small frame until the client's delayed ACK, ~40 ms per RPC.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    // The keeper holds the statistics slot (and through it the store): stop it first.
    health_keeper.abort();
    let _ = health_keeper.await;
    audit.shutdown().await;
    stats.shutdown().await;
    worklists.shutdown().await;
    metrics.shutdown().await;
    if let Some(task) = cosign_task {
        task.abort();
    }
    if let Some(cluster) = cluster {
        tracing::info!("shutting down: stopping Raft");
        cluster.shutdown().await;
    }
    drop(cluster_raft);
    tracing::info!("shutting down: stopping the writer and flushing");
    let Opened { log, cases } = opened;
    drop(cases);
    let closed = tokio::task::spawn_blocking(move || log.shutdown()).await?;
    // A fail-stop is reported as such, whatever closing the store then says
    // (after a storage error the final flush usually fails too).
    let fail_stop = match (
        broken.borrow_and_update().clone(),
        writer_failed.borrow_and_update().clone(),
    ) {
        (Some(b), _) => Some(ServeError::BrokenWhileOpen(b)),
        (None, Some(reason)) => Some(ServeError::WriterStopped(reason)),
        (None, None) => None,
    };
    match (fail_stop, closed) {
        (Some(stop), Ok(())) => Err(stop),
        (Some(stop), Err(close)) => Err(ServeError::StoppedAndCloseFailed {
            stop: Box::new(stop),
            close,
        }),
        (None, closed) => Ok(closed?),
    }
}

/// Keeps the health service true to what each service can do, every
/// [`crate::limits::HEALTH_CHECK_INTERVAL_MS`]:
/// - `""` (liveness): SERVING until a fail-stop begins (a broken log, a
///   writer that stopped), then NOT_SERVING while the server drains and exits;
/// - Caseworker and Import (readiness to serve cases): NOT_SERVING while the
///   writer refuses appends (fail-stop, or free disk under the reserve, which
///   resumes on its own once space is freed), and on a cluster node that
///   does not lead;
/// - Statistics: SERVING only while its projection is loaded and following
///   the log (NOT_SERVING while loading, after a failed load, or once its
///   follower stopped, on an error or a panic: stale numbers are not served);
/// - Worklists: SERVING only once its follower caught up to the head seen at
///   start and while it still follows (NOT_SERVING before, and for good once
///   it stopped).
async fn keep_health_true(
    reporter: tonic_health::server::HealthReporter,
    broken: tokio::sync::watch::Receiver<Option<crate::log::Broken>>,
    writer_failed: tokio::sync::watch::Receiver<Option<String>>,
    disk: tokio::sync::watch::Receiver<crate::log::disk::DiskState>,
    stats: std::sync::Arc<crate::projection::ProjectionSlot>,
    worklists: std::sync::Arc<crate::worklist::FollowerStatus>,
    cluster: Option<crate::cluster::types::Raft>,
) {
    use tonic_health::ServingStatus::{NotServing, Serving};
    type Cases = crate::api::pb::caseworker_server::CaseworkerServer<CaseworkerService>;
    type Import = crate::api::import::ImportServer<crate::api::import::ImportService>;
    type Stats = crate::api::statistics::StatisticsServer<crate::api::statistics::StatisticsService>;
    type Lists = crate::api::worklists::WorklistsServer<crate::api::worklists::WorklistService>;
    let name = |n: &str| n.to_string();
    let names = [
        name(""),
        name(<Cases as tonic::server::NamedService>::NAME),
        name(<Import as tonic::server::NamedService>::NAME),
        name(<Stats as tonic::server::NamedService>::NAME),
        name(<Lists as tonic::server::NamedService>::NAME),
    ];
    let mut last: [Option<tonic_health::ServingStatus>; 5] = [None; 5];
    loop {
        let alive = broken.borrow().is_none() && writer_failed.borrow().is_none();
        // On a cluster node, only the leader takes writes: a follower's
        // Caseworker and Import are NOT_SERVING, so a load balancer that
        // follows readiness sends them to the leader (docs/CLUSTER.md).
        let leads = cluster.as_ref().is_none_or(|raft| {
            let s = crate::cluster::status_of(raft);
            s.leader == Some(s.node_id)
        });
        let cases = alive && !disk.borrow().low && leads;
        let stats_ok = matches!(stats.state(), crate::projection::SlotState::Ready(_));
        let lists_ok = worklists.ready() && worklists.failed().is_none();
        let now = [alive, cases, cases, stats_ok, lists_ok].map(|ok| if ok { Serving } else { NotServing });
        for i in 0..names.len() {
            if last[i] != Some(now[i]) {
                if last[i].is_some() {
                    tracing::warn!(service = %names[i], status = ?now[i], "health changed");
                }
                reporter.set_service_status(&names[i], now[i]).await;
                last[i] = Some(now[i]);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(
            crate::limits::HEALTH_CHECK_INTERVAL_MS,
        ))
        .await;
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called (inside the runtime), not when the future is first polled: tonic
/// may answer a first request (a health check queued while the store was
/// opening) before it polls its shutdown future, and a SIGTERM sent in
/// between would otherwise meet the default action and kill the process.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    let (int, term) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! { _ = wait(int) => {}, _ = wait(term) => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
