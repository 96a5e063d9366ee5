//! The Raft type configuration of a registry cluster and what its log carries.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's id in the cluster file (1, 2, 3, …).
pub type NodeId = u64;

/// A member's addresses, as the cluster file gives them and the Raft
/// membership stores them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Where other nodes reach its Raft service.
    pub raft: String,
    /// Where clients reach its gRPC API (a follower names the leader's).
    pub api: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} api={}", self.raft, self.api)
    }
}

/// An entry of the cluster's log (besides openraft's blank and membership entries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A group commit chained by the leader's writer: each record's bytes,
    /// length-prefixed, and the head after them. Every node checks the
    /// chain links against its own head before applying. `side`: the side
    /// writes its appends make (a registration's person key, reserved
    /// documents), decided by the leader's writer and applied on every
    /// node with the records.
    Append {
        /// Each record's bytes, length-prefixed (see
        /// [`crate::log::apply::Applier::apply_records`]).
        records: Vec<u8>,
        /// The seq of the log's head after the batch.
        head_seq: u64,
        /// The chain hash of that head.
        head_hash: [u8; 32],
        /// The side writes of the batch's appends, in order.
        side: Vec<crate::log::SideSet>,
    },
    /// Writes to the replicated side trees (person keys, document index),
    /// all or none: applied only if every condition holds.
    Trees(TreeWrite),
}

/// A conditional, atomic write to the side trees that replicate with the
/// log (see [`crate::cluster::trees`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeWrite {
    /// (tree, key, the value it must hold: `None` = absent).
    pub expect: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
    /// (tree, key, the new value: `None` = remove).
    pub set: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
}

/// What applying an entry answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// A blank or membership entry.
    #[default]
    Nothing,
    /// An append: the head after it.
    Appended {
        /// The seq of this node's head after applying it.
        head_seq: u64,
    },
    /// A tree write: applied, or refused because the condition at this index failed.
    Trees(Result<(), usize>),
}

openraft::declare_raft_types!(
    /// The registry's Raft types.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of a node.
pub type Raft = openraft::Raft<TypeConfig>;
/// A Raft log id.
pub type LogId = openraft::LogId<NodeId>;
/// A Raft storage error.
pub type StorageError = openraft::StorageError<NodeId>;

/// postcard (serde's compact binary format), the encoding of the Raft
/// log's entries and of node-to-node messages.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

/// Decodes what [`encode`] wrote.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}
