//! `registry serve`: opens the log and serves gRPC until interrupted.
//!
//! Start-up order: open the store and verify the tail of the chain (a broken
//! log is refused), start the writer, then listen. Shutdown (SIGINT/SIGTERM):
//! stop accepting connections, finish in-flight requests, stop the writer and
//! flush.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::log::{Log, SyncMode, WriterConfig};

/// What `registry serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub sync: SyncMode,
}

/// Runs the service until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<(), Box<dyn std::error::Error>> {
    let data_dir = config.data_dir.clone();
    let sync = config.sync;
    let log = tokio::task::spawn_blocking(move || Log::open(&data_dir, WriterConfig { sync })).await??;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, data_dir = %config.data_dir.display(), "serving");
    tonic::transport::Server::builder()
        .add_service(health_service)
        .serve_with_incoming_shutdown(tokio_stream_listener(listener), shutdown_signal())
        .await?;
    tracing::info!("shutting down: stopping the writer and flushing");
    tokio::task::spawn_blocking(move || log.shutdown()).await??;
    Ok(())
}

fn tokio_stream_listener(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
