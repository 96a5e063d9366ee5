//! The audit part of `registry serve`: the audit state opened over the log,
//! the Merkle tree follower and the periodic checkpointer (the `Audit` gRPC
//! service over it is `api/audit.rs`).

use std::time::Duration;

use tokio::sync::watch;

use super::tree::spawn_follower;
use super::{Audit, AuditConfig, AuditError};
use crate::log::Log;

/// The audit part of a running server: the audit state, the follower and the checkpointer.
pub struct AuditRuntime {
    audit: Audit,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Opens the audit state over the log (catching the tree up and signing a
/// checkpoint if the tree grew since the last one), then starts the follower
/// and the periodic checkpointer.
pub async fn start(log: &Log, config: AuditConfig) -> Result<AuditRuntime, AuditError> {
    let store = log.store().clone();
    let interval = config.checkpoint_interval;
    let audit = tokio::task::spawn_blocking(move || -> Result<Audit, AuditError> {
        let audit = Audit::open(&store, &config, true)?;
        let cp = audit.checkpointer.checkpoint_now()?;
        tracing::info!(
            tree_size = cp.checkpoint.size,
            vkey = %audit.checkpointer.signer().verifier().vkey(),
            "audit: merkle tree caught up, checkpoint signed"
        );
        Ok(audit)
    })
    .await
    .map_err(AuditError::from)??;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (size_tx, size_rx) = watch::channel(audit.tree.size());
    let follower = spawn_follower(
        audit.tree.clone(),
        audit.store.clone(),
        log.subscribe_head(),
        size_tx,
        stop_rx.clone(),
    );
    let checkpointer = spawn_checkpointer(audit.clone(), interval, size_rx, stop_rx);
    Ok(AuditRuntime {
        audit,
        stop_tx,
        tasks: vec![follower, checkpointer],
    })
}

fn spawn_checkpointer(
    audit: Audit,
    interval: Duration,
    size_rx: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let size = *size_rx.borrow();
            let a = audit.clone();
            let r = tokio::task::spawn_blocking(move || -> Result<Option<u64>, AuditError> {
                let latest = a.checkpointer.latest()?.map(|c| c.checkpoint.size);
                if latest.is_some_and(|l| l >= size) {
                    return Ok(None);
                }
                Ok(Some(a.checkpointer.checkpoint_now()?.checkpoint.size))
            })
            .await;
            match r {
                Ok(Ok(Some(size))) => tracing::info!(tree_size = size, "audit: periodic checkpoint signed"),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "audit: periodic checkpoint failed"),
                Err(e) => tracing::error!(error = %e, "audit: checkpoint task failed"),
            }
        }
    })
}

impl AuditRuntime {
    /// The audit state (served by `api::audit::AuditService`).
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Stops the follower and the checkpointer, catches the tree up one last
    /// time and signs a final checkpoint if the tree grew.
    pub async fn shutdown(self) {
        let _ = self.stop_tx.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let audit = self.audit.clone();
        let r = tokio::task::spawn_blocking(move || -> Result<u64, AuditError> {
            audit.tree.catch_up(&audit.store)?;
            Ok(audit.checkpointer.checkpoint_now()?.checkpoint.size)
        })
        .await;
        match r {
            Ok(Ok(size)) => tracing::info!(tree_size = size, "audit: final checkpoint"),
            Ok(Err(e)) => tracing::error!(error = %e, "audit: final checkpoint failed"),
            Err(e) => tracing::error!(error = %e, "audit: final checkpoint task failed"),
        }
    }
}
