//! Checking a log against a checkpoint: the log must contain the
//! checkpoint's tree (its size <= the log's) and reproduce its root from the
//! records as stored. Catches truncation and rewritten (re-chained) tails,
//! which a chain walk alone cannot.

use std::time::{Duration, Instant};

use super::checkpoint::Checkpoint;
use super::merkle::{leaf_hash, Frontier, Hash};
use super::tree::MerkleTree;
use crate::log::record::split_stored;
use crate::log::Store;

/// The log does not contain the checkpoint's tree.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    /// The log holds fewer events than the checkpoint's size: its tail was
    /// cut off.
    #[error(
        "checkpoint mismatch: the log has {log_size} events but the checkpoint commits to {checkpoint_size}: \
         events {first_missing}..={checkpoint_size} were cut off",
        first_missing = log_size + 1
    )]
    Truncated {
        /// Events in the log: its head seq (or its last stored key, if lower).
        log_size: u64,
        /// Events the checkpoint commits to.
        checkpoint_size: u64,
    },
    /// The log is long enough but its first `size` records hash to another
    /// root: events were rewritten.
    #[error("checkpoint mismatch: {0}")]
    RootDiffers(RootDiffers),
    /// A record within the checkpoint's size is missing or not a stored
    /// record (bad framing).
    #[error("broken at seq {seq}: {reason}")]
    Broken {
        /// The seq of the missing or unreadable record.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the store failed (the text is the store's error).
    #[error("store: {0}")]
    Store(String),
}

/// The roots differ: where, as precisely as the evidence allows.
#[derive(Debug)]
pub struct RootDiffers {
    /// The checkpoint's tree size (events `1..=size` were hashed).
    pub size: u64,
    /// The root recomputed from the log's records.
    pub computed: Hash,
    /// The root the checkpoint commits to.
    pub expected: Hash,
    /// The first seq whose record no longer hashes to the leaf the persisted
    /// Merkle tree recorded when the checkpoint was signed (when that tree is
    /// still there and agrees with the checkpoint).
    pub first_differing_seq: Option<u64>,
}

impl std::fmt::Display for RootDiffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the Merkle root of log events 1..={} is {}, the checkpoint says {}: events within 1..={} were rewritten",
            self.size,
            crate::hex::encode(&self.computed),
            crate::hex::encode(&self.expected),
            self.size
        )?;
        if let Some(seq) = self.first_differing_seq {
            write!(
                f,
                "; the first altered event is seq {seq} (its record no longer matches the leaf the Merkle tree recorded)"
            )?;
        }
        Ok(())
    }
}

/// What a successful check covered.
#[derive(Clone, Debug)]
pub struct Matched {
    /// The checkpoint's tree size.
    pub checkpoint_size: u64,
    /// The log's size (head seq) when checked.
    pub log_size: u64,
    /// The root both agree on.
    pub root: Hash,
    /// Time the check took.
    pub elapsed: Duration,
}

/// Recomputes the Merkle root of log events `1..=size` from the records as
/// stored (one pass, O(log n) memory), checking the keys run without a gap.
pub fn recompute_root(store: &Store, size: u64, progress: &mut dyn FnMut(u64)) -> Result<Hash, Mismatch> {
    let mut f = Frontier::new();
    if size == 0 {
        return Ok(f.root());
    }
    let mut expected = 1u64;
    for kv in store.raw_range(1u64, size) {
        let (seq, v) = kv.map_err(|e| Mismatch::Store(e.to_string()))?;

        if seq != expected {
            return Err(Mismatch::Broken {
                seq: expected,
                reason: format!("record missing (next record is seq {seq})"),
            });
        }
        let (record, _) = split_stored(&v).map_err(|e| Mismatch::Broken {
            seq,
            reason: e.to_string(),
        })?;
        f.push(leaf_hash(record));
        if seq % 65_536 == 0 {
            progress(seq);
        }
        expected += 1;
    }
    if expected != size + 1 {
        return Err(Mismatch::Broken {
            seq: expected,
            reason: "record missing".into(),
        });
    }
    Ok(f.root())
}

/// Checks that the log holds the checkpoint's tree. `tree`, when given, is
/// the persisted Merkle tree, used only to say *where* a rewritten log first
/// differs (never to decide whether it matches: that is recomputed from the records).
pub fn check_log_against_checkpoint(
    store: &Store,
    cp: &Checkpoint,
    tree: Option<&MerkleTree>,
    progress: &mut dyn FnMut(u64),
) -> Result<Matched, Mismatch> {
    let started = Instant::now();
    let log_size = store.head().map_err(|e| Mismatch::Store(e.to_string()))?.seq;
    let last_key = store
        .last_stored_seq()
        .map_err(|e| Mismatch::Store(e.to_string()))?;
    let log_size = log_size.min(last_key);
    if cp.size > log_size {
        return Err(Mismatch::Truncated {
            log_size,
            checkpoint_size: cp.size,
        });
    }
    let root = recompute_root(store, cp.size, progress)?;
    if root != cp.root {
        let first_differing_seq = tree.and_then(|t| first_differing_leaf(store, t, cp));
        return Err(Mismatch::RootDiffers(RootDiffers {
            size: cp.size,
            computed: root,
            expected: cp.root,
            first_differing_seq,
        }));
    }
    Ok(Matched {
        checkpoint_size: cp.size,
        log_size,
        root,
        elapsed: started.elapsed(),
    })
}

/// When the persisted tree still agrees with the checkpoint, the first seq
/// whose record's leaf hash differs from the tree's leaf.
fn first_differing_leaf(store: &Store, tree: &MerkleTree, cp: &Checkpoint) -> Option<u64> {
    if tree.size() < cp.size || tree.root(cp.size).ok()? != cp.root {
        return None;
    }
    for kv in store.raw_range(1u64, cp.size) {
        let (seq, v) = kv.ok()?;
        let (record, _) = split_stored(&v).ok()?;
        if tree.leaf(seq - 1).ok()? != leaf_hash(record) {
            return Some(seq);
        }
    }
    None
}

/// What a full walk of a log prefix found.
#[derive(Clone, Debug)]
pub struct Walk {
    /// Events walked.
    pub events: u64,
    /// The chain hash of the last event walked.
    pub head_hash: Hash,
    /// The Merkle root of the events walked.
    pub root: Hash,
    /// Time the walk took.
    pub elapsed: Duration,
}

/// Walks log events `1..=upto.seq` (a snapshot of the head, so it can run on
/// a live log) in one pass: keys without a gap, each record's seq field, every
/// previous-hash link, every stored chain hash recomputed, and the Merkle
/// root recomputed from the records. The last hash must be `upto.hash`.
pub fn walk_log(
    store: &Store,
    upto: crate::log::Head,
    progress: &mut dyn FnMut(u64),
) -> Result<Walk, Mismatch> {
    use crate::log::record::{chain_hash, peek_chain_fields, GENESIS_PREV_HASH};
    let started = Instant::now();
    let mut f = Frontier::new();
    let mut prev = GENESIS_PREV_HASH;
    let mut expected = 1u64;
    if upto.seq > 0 {
        for kv in store.raw_range(1u64, upto.seq) {
            let (seq, v) = kv.map_err(|e| Mismatch::Store(e.to_string()))?;

            let broken = |reason: String| Mismatch::Broken { seq, reason };
            if seq != expected {
                return Err(Mismatch::Broken {
                    seq: expected,
                    reason: format!("record missing (next record is seq {seq})"),
                });
            }
            let (record, stored) = split_stored(&v).map_err(|e| broken(e.to_string()))?;
            let (seq_field, prev_field) = peek_chain_fields(record).map_err(|e| broken(e.to_string()))?;
            if seq_field != seq {
                return Err(broken(format!("record says seq {seq_field}")));
            }
            if prev_field != prev {
                return Err(broken("previous-hash link mismatch".into()));
            }
            let h = chain_hash(&prev, record);
            if h != stored {
                return Err(broken("hash mismatch".into()));
            }
            prev = h;
            f.push(leaf_hash(record));
            if seq % 65_536 == 0 {
                progress(seq);
            }
            expected += 1;
        }
    }
    if expected != upto.seq + 1 {
        return Err(Mismatch::Broken {
            seq: expected,
            reason: "record missing".into(),
        });
    }
    if prev != upto.hash {
        return Err(Mismatch::Broken {
            seq: upto.seq,
            reason: "head metadata hash differs from the chain".into(),
        });
    }
    Ok(Walk {
        events: upto.seq,
        head_hash: prev,
        root: f.root(),
        elapsed: started.elapsed(),
    })
}
