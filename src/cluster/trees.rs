//! The side trees that replicate with the log on a cluster node: the
//! wrapped person keys and the document index. A [`TreeWrite`] is applied
//! on every node in one sled transaction with the applied Raft position,
//! all or none, only if each of its conditions holds; the answer is the
//! same on every node, since every node applied the same entries before it.

use openraft::error::{ClientWriteError, RaftError};

use super::snapshot::Capture;
use super::types::{Applied, Member, NodeId, TreeWrite};
use crate::log::side::Side;
use crate::log::store::TREE_LOG;

/// The trees a [`TreeWrite`] may name.
/// In the order of [`crate::log::side::Side::ALL`] (snapshots name a tree by its index here).
pub const REPLICATED_TREES: [&str; 2] = [Side::PersonKeys.tree_name(), Side::Documents.tree_name()];

/// Why a replicated tree write was not written.
#[derive(Debug, thiserror::Error)]
pub enum TreeWriteError {
    /// The write names a tree (given) that is not in [`REPLICATED_TREES`].
    #[error("tree {0} does not replicate")]
    NotReplicated(String),
    /// Reading or writing the trees on this node failed.
    #[error(transparent)]
    Sled(#[from] sled::Error),
    /// This node does not lead; the leader's client address, when known.
    #[error("this node is not the cluster's leader; send writes to {}", .0.as_deref().unwrap_or("the leader"))]
    NotLeader(Option<String>),
    /// Raft did not commit the write (other than for leadership).
    #[error("the cluster did not confirm the write: {0}")]
    Unconfirmed(#[source] Box<RaftError<NodeId, ClientWriteError<NodeId, Member>>>),
    /// No majority confirmed the write within
    /// [`PROPOSE_TIMEOUT_MS`](super::PROPOSE_TIMEOUT_MS); its outcome is unknown.
    #[error("no majority confirmed the write within {} ms", super::PROPOSE_TIMEOUT_MS)]
    Timeout,
    /// Applying the entry answered something else than a tree write's
    /// outcome (this answer).
    #[error("the cluster answered a tree write with {0:?}")]
    Answer(Applied),
}

fn index_of(tree: &str) -> Option<usize> {
    REPLICATED_TREES.iter().position(|t| *t == tree)
}

/// Checks that a write names only replicated trees.
pub fn check(write: &TreeWrite) -> Result<(), TreeWriteError> {
    for (tree, _, _) in write.expect.iter().chain(&write.set) {
        if index_of(tree).is_none() {
            return Err(TreeWriteError::NotReplicated(tree.clone()));
        }
    }
    Ok(())
}

/// Applies `write` with the applied position `extra` (a key of the `log`
/// tree): `Ok(Err(i))` when condition `i` failed (then only the position is
/// written). Only the state machine writes these trees on a cluster node,
/// one entry at a time, so the conditions are read and the values written
/// without a sled transaction: the new values first, the position last. A
/// crash in between applies the entry again after the restart: its writes
/// are then already there, and only the answer (to a client gone with the
/// crash) can differ.
///
/// While a snapshot reads the trees, each entry's value before its first
/// change is handed to `capture` first (see [`Capture`]).
pub fn apply(
    db: &sled::Db,
    write: &TreeWrite,
    extra: (&[u8], Vec<u8>),
    capture: &Capture,
) -> Result<Result<(), usize>, TreeWriteError> {
    check(write)?;
    let log = db.open_tree(TREE_LOG)?;
    let trees = [
        db.open_tree(REPLICATED_TREES[0])?,
        db.open_tree(REPLICATED_TREES[1])?,
    ];
    let mut outcome = Ok(());
    for (i, (tree, key, want)) in write.expect.iter().enumerate() {
        let have = trees[index_of(tree).expect("checked")].get(key.as_slice())?;
        if have.as_deref() != want.as_deref() {
            outcome = Err(i);
            break;
        }
    }
    if outcome.is_ok() {
        let mut batches = [sled::Batch::default(), sled::Batch::default()];
        for (tree, key, value) in &write.set {
            let i = index_of(tree).expect("checked");
            capture.before_write(i, key, || {
                trees[i].get(key.as_slice()).map(|v| v.map(|v| v.to_vec()))
            })?;
            let b = &mut batches[i];
            match value {
                Some(v) => b.insert(key.as_slice(), v.as_slice()),
                None => b.remove(key.as_slice()),
            }
        }
        for (tree, batch) in trees.iter().zip(batches) {
            tree.apply_batch(batch)?;
        }
    }
    log.insert(extra.0, extra.1)?;
    Ok(outcome)
}
