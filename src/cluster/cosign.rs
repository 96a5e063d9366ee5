//! Cosigned checkpoints (docs/AUDIT.md §2b): every follower cosigns the
//! leader's checkpoints (C2SP tlog-cosignature v1, src/audit/cosign.rs)
//! after checking that its own Merkle tree, built from its own replicated
//! and chain-checked log, has the same root at that size. The leader
//! collects the cosignatures and stores them on its checkpoint, so the
//! checkpoint Audit/GetCheckpoint serves shows which replicas hold the same
//! log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::network::Cosigner;
use super::types::Raft;
use crate::audit::checkpoint::{Checkpoint, Checkpointer, NoteError};

/// How long a follower waits for its own tree to reach the checkpoint's size.
pub const COSIGN_CATCH_UP_MS: u64 = 3_000;

/// Why this node does not cosign a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    /// The note, or the checkpoint in its body, does not parse.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The checkpoint's origin is not this node's audit origin.
    #[error("the checkpoint is of the log {theirs:?}, this node's is {ours:?}")]
    OtherLog {
        /// The checkpoint's origin line.
        theirs: String,
        /// This node's origin (its signing key's name).
        ours: String,
    },
    /// This node's tree did not reach the checkpoint's size within
    /// [`COSIGN_CATCH_UP_MS`].
    #[error("this node's tree has {leaves} leaves, the checkpoint {size}: not caught up")]
    NotCaughtUp {
        /// This node's tree size when it gave up.
        leaves: u64,
        /// The checkpoint's tree size.
        size: u64,
    },
    /// This node's root at the checkpoint's size could not be read.
    #[error(transparent)]
    Tree(#[from] crate::audit::tree::TreeError),
    /// This node's tree has another root at this size than the checkpoint.
    #[error("this node's log has another root at size {0}: not cosigned")]
    OtherRoot(u64),
}

/// This node as a cosigner.
pub struct NodeCosigner {
    /// This node's checkpointer: its signing key (which also cosigns) and
    /// its Merkle tree, checked against each checkpoint.
    pub checkpointer: Checkpointer,
    /// Its cosigner name (`<origin>/node-<id>`).
    pub name: String,
}

impl NodeCosigner {
    /// The cosigner of node `node`, named `<origin>/node-<id>` after its
    /// checkpointer's key.
    pub fn new(checkpointer: Checkpointer, node: u64) -> NodeCosigner {
        let name = crate::audit::cosign::cosigner_name(&checkpointer.signer().name, node);
        NodeCosigner { checkpointer, name }
    }

    /// The cosigner's verifier key (what an auditor configures).
    pub fn vkey(&self) -> String {
        self.checkpointer.signer().cosigner_vkey(&self.name)
    }
}

impl Cosigner for NodeCosigner {
    fn cosign(&self, note: &str) -> Result<String, CosignError> {
        let body = crate::audit::cosign::note_body(note)?;
        let cp = Checkpoint::parse_body(body)?;
        let origin = &self.checkpointer.signer().name;
        if &cp.origin != origin {
            return Err(CosignError::OtherLog {
                theirs: cp.origin,
                ours: origin.clone(),
            });
        }
        let tree = self.checkpointer.tree();
        let deadline = Instant::now() + Duration::from_millis(COSIGN_CATCH_UP_MS);
        while tree.size() < cp.size {
            if Instant::now() >= deadline {
                return Err(CosignError::NotCaughtUp {
                    leaves: tree.size(),
                    size: cp.size,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let root = tree.root(cp.size)?;
        if root != cp.root {
            tracing::error!(
                size = cp.size,
                "the leader's checkpoint root differs from this node's tree: not cosigned"
            );
            return Err(CosignError::OtherRoot(cp.size));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(self.checkpointer.signer().cosign_body(&self.name, body, now))
    }
}

/// On the leader, every `every`: asks each other member to cosign the
/// latest checkpoint and stores the cosignatures it gets on it. Runs until
/// the task is aborted.
pub async fn collect(
    raft: Raft,
    checkpointer: Checkpointer,
    tls: Option<tonic::transport::ClientTlsConfig>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let status = super::status_of(&raft);
        if status.leader != Some(status.node_id) {
            continue;
        }
        let c = checkpointer.clone();
        let Ok(Ok(Some(latest))) = tokio::task::spawn_blocking(move || c.latest()).await else {
            continue;
        };
        let origin = checkpointer.signer().name.clone();
        let mut lines = Vec::new();
        for (id, member) in &status.members {
            if *id == status.node_id {
                continue;
            }
            let name = crate::audit::cosign::cosigner_name(&origin, *id);
            if latest.note.contains(&format!("\u{2014} {name} ")) {
                continue;
            }
            match super::network::request_cosignature(member, tls.clone(), &latest.note).await {
                Ok(line) => lines.push(line),
                Err(e) => {
                    tracing::warn!(node = id, size = latest.checkpoint.size, error = %e, "no cosignature")
                }
            }
        }
        if lines.is_empty() {
            continue;
        }
        let c = checkpointer.clone();
        let size = latest.checkpoint.size;
        match tokio::task::spawn_blocking(move || c.add_cosignatures(size, &lines)).await {
            Ok(Ok(_)) => tracing::debug!(size, "checkpoint cosigned"),
            Ok(Err(e)) => tracing::warn!(size, error = %e, "storing cosignatures failed"),
            Err(_) => {}
        }
    }
}

/// Gives the Raft service this node's cosigner.
pub fn install(slot: &super::network::CosignerSlot, cosigner: Arc<NodeCosigner>) {
    let _ = slot.set(cosigner);
}
