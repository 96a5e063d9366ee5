//! The Merkle tree over the log, persisted in sled and grown incrementally.
//!
//! Trees:
//! - `merkle_nodes`: key `level u8 || index u64 BE` -> the 32-byte hash of the
//!   complete, aligned subtree covering leaves `[index << level, (index+1) << level)`.
//!   Level 0 holds the leaf hashes. Only complete subtrees are stored, so an
//!   entry never changes once written.
//! - `merkle_meta`: `size` -> u64 BE, the number of leaves in the tree.
//!
//! One [`MerkleTree::append_leaves`] writes the new leaves, every ancestor
//! they complete and the new size in one sled transaction over both trees.
//! Roots and proofs for any size `<=` the current size read `O(log n)` stored
//! hashes per range (at most `O(log² n)` for a proof); nothing is re-hashed.
//!
//! The follower ([`MerkleTree::catch_up`], [`spawn_follower`]) reads the log's
//! records in order from `size + 1` to the committed head, proving it sees
//! every seq with no gap and that each record links to the previous one.

use std::sync::{Arc, Mutex};

use sled::Transactional;

use super::merkle::{self, empty_root, leaf_hash, node_hash, Hash, NodeSource, ProofError};
use crate::limits::AUDIT_FOLLOW_BATCH_EVENTS;
use crate::log::record::{chain_hash, peek_chain_fields, split_stored, GENESIS_PREV_HASH};
use crate::log::Store;

pub const TREE_MERKLE_NODES: &str = "merkle_nodes";
pub const TREE_MERKLE_META: &str = "merkle_meta";
pub const META_SIZE: &[u8] = b"size";

/// Errors of the persisted tree and its follower.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("store: {0}")]
    Store(#[from] crate::log::StoreError),
    #[error("merkle tree metadata is corrupt: {0}")]
    Corrupt(String),
    #[error("log follower: expected seq {expected}, found {found}")]
    Gap { expected: u64, found: u64 },
    #[error("log follower: record at seq {seq}: {reason}")]
    BadRecord { seq: u64, reason: String },
    #[error("the merkle tree has {tree} leaves but the log only {log} events: the log lost events the tree had seen")]
    LogBehindTree { tree: u64, log: u64 },
    #[error("merkle tree size changed underneath (expected {expected}, found {found}): two writers?")]
    ConcurrentWriter { expected: u64, found: u64 },
    #[error(transparent)]
    Proof(#[from] ProofError),
}

fn node_key(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

struct State {
    size: u64,
    /// `frontier[l]`: the complete subtree at level `l` still waiting for its
    /// right sibling (exists exactly when bit `l` of `size` is set).
    frontier: Vec<Option<Hash>>,
}

/// The persisted, incremental Merkle tree. Cheap to clone.
#[derive(Clone)]
pub struct MerkleTree {
    nodes: sled::Tree,
    meta: sled::Tree,
    state: Arc<Mutex<State>>,
}

impl MerkleTree {
    /// Opens (or creates) the tree's sled trees in `db`.
    pub fn open(db: &sled::Db) -> Result<MerkleTree, TreeError> {
        let nodes = db.open_tree(TREE_MERKLE_NODES)?;
        let meta = db.open_tree(TREE_MERKLE_META)?;
        let size = read_size(&meta)?;
        let mut frontier = vec![None; 64];
        for (level, slot) in frontier.iter_mut().enumerate() {
            if size >> level & 1 == 1 {
                let index = (size >> level) - 1;
                let v = nodes.get(node_key(level as u8, index))?.ok_or_else(|| {
                    TreeError::Corrupt(format!(
                        "missing complete subtree level {level} index {index} (size {size})"
                    ))
                })?;
                *slot = Some(to_hash(&v)?);
            }
        }
        Ok(MerkleTree {
            nodes,
            meta,
            state: Arc::new(Mutex::new(State { size, frontier })),
        })
    }

    /// Number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.state.lock().expect("tree state").size
    }

    /// Appends leaf hashes (leaves `size .. size + leaves.len()`), their completed
    /// ancestors and the new size in one sled transaction. Returns the new size.
    pub fn append_leaves(&self, leaves: &[Hash]) -> Result<u64, TreeError> {
        let mut state = self.state.lock().expect("tree state");
        if leaves.is_empty() {
            return Ok(state.size);
        }
        let on_disk = read_size(&self.meta)?;
        if on_disk != state.size {
            return Err(TreeError::ConcurrentWriter {
                expected: state.size,
                found: on_disk,
            });
        }
        let mut frontier = state.frontier.clone();
        let mut size = state.size;
        let mut batch = sled::Batch::default();
        for leaf in leaves {
            let index = size;
            batch.insert(&node_key(0, index)[..], &leaf[..]);
            let mut carry = *leaf;
            let mut level = 0usize;
            // While this node is a right child, combine with the waiting left sibling.
            while (index >> level) & 1 == 1 {
                let left = frontier[level].take().ok_or_else(|| {
                    TreeError::Corrupt(format!("frontier has no left sibling at level {level}"))
                })?;
                carry = node_hash(&left, &carry);
                level += 1;
                batch.insert(&node_key(level as u8, index >> level)[..], &carry[..]);
            }
            frontier[level] = Some(carry);
            size += 1;
        }
        let size_bytes = size.to_be_bytes();
        (&self.nodes, &self.meta)
            .transaction(|(nodes, meta)| {
                nodes.apply_batch(&batch)?;
                meta.insert(META_SIZE, &size_bytes[..])?;
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Storage(s) => TreeError::Sled(s),
                sled::transaction::TransactionError::Abort(()) => {
                    TreeError::Corrupt("transaction aborted".into())
                }
            })?;
        state.size = size;
        state.frontier = frontier;
        Ok(size)
    }

    /// The root of the first `size` leaves (`size <=` the tree's size).
    pub fn root(&self, size: u64) -> Result<Hash, TreeError> {
        self.check(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        Ok(merkle::root(self, size)?)
    }

    /// The leaf hash at `index` (0-based).
    pub fn leaf(&self, index: u64) -> Result<Hash, TreeError> {
        self.check(index + 1)?;
        Ok(self.complete(0, index)?)
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
        self.check(size)?;
        Ok(merkle::inclusion_proof(self, index, size)?)
    }

    /// Consistency proof from size `old` to size `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, TreeError> {
        self.check(new)?;
        Ok(merkle::consistency_proof(self, old, new)?)
    }

    fn check(&self, size: u64) -> Result<(), TreeError> {
        let have = self.size();
        if size > have {
            return Err(ProofError::SizeNotAvailable {
                requested: size,
                available: have,
            }
            .into());
        }
        Ok(())
    }

    /// Brings the tree up to the log's committed head: reads every record
    /// from `size + 1` in order, checks there is no gap, that each record's
    /// seq field matches its key, that it links to the previous record and
    /// that its stored chain hash is right, and appends its leaf hash.
    /// Returns the new size.
    pub fn catch_up(&self, store: &Store) -> Result<u64, TreeError> {
        self.catch_up_with(store, &mut |_| {})
    }

    /// [`MerkleTree::catch_up`] with a progress callback (called with the size after each batch).
    pub fn catch_up_with(&self, store: &Store, progress: &mut dyn FnMut(u64)) -> Result<u64, TreeError> {
        let head = store.head()?.seq;
        let mut size = self.size();
        if head < size {
            return Err(TreeError::LogBehindTree {
                tree: size,
                log: head,
            });
        }
        if head == size {
            return Ok(size);
        }
        let mut prev = if size == 0 {
            GENESIS_PREV_HASH
        } else {
            match store.events.get(size.to_be_bytes())? {
                Some(v) => {
                    split_stored(&v)
                        .map_err(|e| TreeError::BadRecord {
                            seq: size,
                            reason: e.to_string(),
                        })?
                        .1
                }
                None => {
                    return Err(TreeError::LogBehindTree {
                        tree: size,
                        log: size - 1,
                    })
                }
            }
        };
        let mut leaves = Vec::with_capacity(AUDIT_FOLLOW_BATCH_EVENTS);
        let mut expected = size + 1;
        for kv in store.events.range(expected.to_be_bytes()..=head.to_be_bytes()) {
            let (k, v) = kv?;
            let seq = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| TreeError::Corrupt("event key is not 8 bytes".into()))?,
            );
            if seq != expected {
                return Err(TreeError::Gap { expected, found: seq });
            }
            let bad = |reason: String| TreeError::BadRecord { seq, reason };
            let (record, stored_hash) = split_stored(&v).map_err(|e| bad(e.to_string()))?;
            let (seq_field, prev_field) = peek_chain_fields(record).map_err(|e| bad(e.to_string()))?;
            if seq_field != seq {
                return Err(bad(format!("record says seq {seq_field}")));
            }
            if prev_field != prev {
                return Err(bad("previous-hash link mismatch".into()));
            }
            if chain_hash(&prev, record) != stored_hash {
                return Err(bad("chain hash mismatch".into()));
            }
            prev = stored_hash;
            leaves.push(leaf_hash(record));
            expected += 1;
            if leaves.len() == AUDIT_FOLLOW_BATCH_EVENTS {
                size = self.append_leaves(&leaves)?;
                leaves.clear();
                progress(size);
            }
        }
        if expected != head + 1 {
            return Err(TreeError::Gap {
                expected,
                found: head + 1,
            });
        }
        if !leaves.is_empty() {
            size = self.append_leaves(&leaves)?;
            progress(size);
        }
        Ok(size)
    }
}

impl NodeSource for MerkleTree {
    fn complete(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        match self.nodes.get(node_key(level, index)) {
            Ok(Some(v)) => to_hash(&v).map_err(|e| ProofError::Storage(e.to_string())),
            Ok(None) => Err(ProofError::Storage(format!(
                "merkle_nodes has no subtree at level {level} index {index}"
            ))),
            Err(e) => Err(ProofError::Storage(e.to_string())),
        }
    }
}

fn read_size(meta: &sled::Tree) -> Result<u64, TreeError> {
    match meta.get(META_SIZE)? {
        None => Ok(0),
        Some(v) => Ok(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
            TreeError::Corrupt("merkle_meta/size is not 8 bytes".into())
        })?)),
    }
}

fn to_hash(v: &[u8]) -> Result<Hash, TreeError> {
    v.try_into()
        .map_err(|_| TreeError::Corrupt(format!("stored node hash has {} bytes, not 32", v.len())))
}

/// Follows the log: catches up whenever the durable head moves, until `stop`
/// turns true or the head channel closes. Publishes the tree size on `size_tx`.
/// A follower error is logged and retried after a pause (the tree never
/// appends a leaf it could not check).
pub fn spawn_follower(
    tree: MerkleTree,
    store: Store,
    mut head_rx: tokio::sync::watch::Receiver<crate::log::Head>,
    size_tx: tokio::sync::watch::Sender<u64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (t, s) = (tree.clone(), store.clone());
            match tokio::task::spawn_blocking(move || t.catch_up(&s)).await {
                Ok(Ok(size)) => {
                    size_tx.send_if_modified(|cur| {
                        let changed = *cur != size;
                        *cur = size;
                        changed
                    });
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "merkle follower failed; retrying in 5 s");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => continue,
                        _ = stop.changed() => return,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "merkle follower task panicked");
                    return;
                }
            }
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                r = head_rx.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
        }
    })
}
