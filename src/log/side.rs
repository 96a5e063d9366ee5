//! The side trees beside the log that a cluster replicates with it: the
//! wrapped person keys and the document index. On a single node a
//! [`SideTree`] writes sled directly; on a cluster node every write is a
//! conditional tree write proposed to the cluster (src/cluster/trees.rs),
//! applied on every node in log order, so a promoted node holds every key
//! and reservation. Reads are always local.
//!
//! The writes a command makes with its events (a registration's new person
//! key, the documents it reserves) do not go through a [`SideTree`]: they
//! travel with the append as [`SideWrite`]s, decided by the writer against
//! the trees and the batches in flight, and land with the records, in the
//! same group commit (single node) or the same Raft entry (cluster). A
//! [`SideTree`] write is for what happens after the events (releases,
//! erasure) and for offline tools.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use sled::{CompareAndSwapError, IVec};

use crate::cluster::trees::TreeWriteError;

/// One conditional write: `(key, the value it must hold, the new value)`;
/// `None` means absent (as a condition) or remove (as a new value).
pub type CasOp = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

/// A side tree that appends may write with their events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Side {
    /// `person_keys`: each case's data key, wrapped by the master key.
    PersonKeys,
    /// `documents`: the document look-up index (blind index -> case).
    Documents,
}

impl Side {
    /// The sled tree it names.
    pub const fn tree_name(self) -> &'static str {
        match self {
            Side::PersonKeys => crate::pii::keystore::TREE_NAME,
            Side::Documents => crate::cases::TREE_DOCUMENTS,
        }
    }

    /// Both, in the order [`SideTrees`] holds them.
    pub const ALL: [Side; 2] = [Side::PersonKeys, Side::Documents];

    fn index(self) -> usize {
        self as usize
    }
}

/// A write an append makes with its events: `key` of `tree` is set to
/// `value` if it holds `expect` (`None`: absent) when the writer stages the
/// append, counting the appends staged before it; otherwise the append is
/// refused with [`super::AppendError::SideConflict`] and nothing is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideWrite {
    /// The side tree written.
    pub tree: Side,
    /// The key: a case id (`person_keys`) or a document's blind index (`documents`).
    pub key: Vec<u8>,
    /// The value the key must hold when staged; `None`: it must be absent.
    pub expect: Option<Vec<u8>>,
    /// The new value: a wrapped data key, or a reservation (case id ||
    /// reserved-at microseconds, u64 big-endian).
    pub value: Vec<u8>,
}

/// A write decided by the leader's writer, as the cluster's log carries it:
/// every node applies it with the entry's records, unconditionally (the
/// condition held at that point of the log, which every node reaches the same).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SideSet {
    /// The side tree written.
    pub tree: Side,
    /// The key, as in the [`SideWrite`] it was decided from.
    pub key: Vec<u8>,
    /// The value every node sets it to.
    pub value: Vec<u8>,
}

/// The side trees of a store, opened once.
#[derive(Clone)]
pub struct SideTrees([sled::Tree; 2]);

impl SideTrees {
    /// Opens (creating if missing) both side trees of `db`.
    pub fn open(db: &sled::Db) -> sled::Result<SideTrees> {
        Ok(SideTrees([
            db.open_tree(Side::PersonKeys.tree_name())?,
            db.open_tree(Side::Documents.tree_name())?,
        ]))
    }

    /// The sled tree of `side`.
    pub fn tree(&self, side: Side) -> &sled::Tree {
        &self.0[side.index()]
    }

    /// Writes `sets`, one `apply_batch` per tree. `before` is called with
    /// each key first (a snapshot being built records the value it replaces).
    pub fn apply(
        &self,
        sets: &[SideSet],
        mut before: impl FnMut(usize, &sled::Tree, &[u8]) -> sled::Result<()>,
    ) -> sled::Result<()> {
        if sets.is_empty() {
            return Ok(());
        }
        let mut batches = [sled::Batch::default(), sled::Batch::default()];
        for set in sets {
            let i = set.tree.index();
            before(i, &self.0[i], &set.key)?;
            batches[i].insert(set.key.as_slice(), set.value.as_slice());
        }
        for (tree, batch) in self.0.iter().zip(batches) {
            tree.apply_batch(batch)?;
        }
        Ok(())
    }
}

/// The cluster's side of the replicated trees (implemented in src/cluster/).
pub trait TreeReplicator: Send + Sync {
    /// Proposes one atomic write to `tree` and waits until this node applied
    /// it: `Ok(Ok(()))` applied, `Ok(Err(i))` condition `i` did not hold
    /// (nothing written), `Err` not written (no leader, no majority).
    fn write(&self, tree: &str, ops: Vec<CasOp>) -> Result<Result<(), usize>, TreeWriteError>;
    /// Sets `key` to `value` in `tree` on every node, whatever it holds.
    fn write_unconditional(
        &self,
        tree: &str,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<Result<(), usize>, TreeWriteError>;
}

/// Where a cluster node's side trees find their replicator.
#[derive(Clone, Default)]
pub struct SideSlot {
    replicator: Arc<OnceLock<Arc<dyn TreeReplicator>>>,
    /// Set on a cluster node: writes are refused until the replicator is there.
    replicated: Arc<AtomicBool>,
}

impl SideSlot {
    /// Marks the store as a cluster node's: side writes wait for the replicator.
    pub fn expect_replication(&self) {
        self.replicated.store(true, Ordering::SeqCst);
    }

    /// Gives the side trees their replicator (once).
    pub fn set(&self, replicator: Arc<dyn TreeReplicator>) -> bool {
        self.replicated.store(true, Ordering::SeqCst);
        self.replicator.set(replicator).is_ok()
    }
}

/// The error a side write the cluster did not confirm becomes (sled's
/// error type, which callers already carry): see [`unconfirmed`].
/// `reason` stays the I/O error's inner error (a [`TreeWriteError`] keeps its type).
fn unavailable(reason: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> sled::Error {
    sled::Error::Io(std::io::Error::new(std::io::ErrorKind::NotConnected, reason))
}

/// The reason, when `e` is a replicated side write the cluster did not
/// confirm (no leader, no majority, the cluster starting): the request may
/// be retried. `None` for a storage error.
pub fn unconfirmed(e: &sled::Error) -> Option<String> {
    match e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::NotConnected => Some(io.to_string()),
        _ => None,
    }
}

/// A side tree: local reads, writes local or replicated (see the module doc).
#[derive(Clone)]
pub struct SideTree {
    name: &'static str,
    tree: sled::Tree,
    slot: SideSlot,
}

impl SideTree {
    /// Over the local `tree` named `name` (the name the cluster replicates
    /// it under); `slot` gives it the replicator on a cluster node
    /// (`SideSlot::default()`: writes stay local).
    pub fn new(name: &'static str, tree: sled::Tree, slot: SideSlot) -> SideTree {
        SideTree { name, tree, slot }
    }

    /// The local tree (reads, and offline tools on a stopped store).
    pub fn local(&self) -> &sled::Tree {
        &self.tree
    }

    /// Reads `key` from the local tree (never through the cluster).
    pub fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        self.tree.get(key)
    }

    fn replicator(&self) -> sled::Result<Option<Arc<dyn TreeReplicator>>> {
        match self.slot.replicator.get() {
            Some(r) => Ok(Some(r.clone())),
            None if self.slot.replicated.load(Ordering::SeqCst) => {
                Err(unavailable("the cluster is starting: side writes wait for it"))
            }
            None => Ok(None),
        }
    }

    /// Like sled's `compare_and_swap`, replicated on a cluster node.
    pub fn compare_and_swap(
        &self,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<Vec<u8>>,
    ) -> sled::Result<Result<(), CompareAndSwapError>> {
        let Some(r) = self.replicator()? else {
            return self.tree.compare_and_swap(key, old, new);
        };
        let op = (key.to_vec(), old.map(<[u8]>::to_vec), new.clone());
        match r.write(self.name, vec![op]).map_err(unavailable)? {
            Ok(()) => Ok(Ok(())),
            Err(_) => Ok(Err(CompareAndSwapError {
                current: self.tree.get(key)?,
                proposed: new.map(IVec::from),
            })),
        }
    }

    /// Like sled's `insert` (returns the previous value), replicated on a
    /// cluster node as an unconditional write (an erasure's tombstone must
    /// reach every node, whatever each holds: wrapped keys differ between
    /// nodes whose master keys were rotated separately). The previous value
    /// is this node's, read just before.
    pub fn insert(&self, key: &[u8], value: Vec<u8>) -> sled::Result<Option<IVec>> {
        let Some(r) = self.replicator()? else {
            return self.tree.insert(key, value);
        };
        let previous = self.tree.get(key)?;
        match r
            .write_unconditional(self.name, key.to_vec(), value)
            .map_err(unavailable)?
        {
            Ok(()) => Ok(previous),
            Err(_) => Err(unavailable("the cluster refused an unconditional write")),
        }
    }

    /// Makes this node's writes durable (a replicated write is durable once
    /// the cluster applied it: it is in the Raft log of a majority).
    pub fn flush(&self) -> sled::Result<()> {
        self.tree.flush().map(|_| ())
    }
}
