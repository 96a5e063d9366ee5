//! The Raft log in the node's own sled store: tree `raft_log` (entry index,
//! big-endian -> postcard entry) and tree `raft_meta` (vote, committed,
//! last purged). sled keeps one log for every tree, so one flush makes an
//! append durable together with everything applied before it.

// openraft's StorageError (224 bytes) is what its storage traits return.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError, Vote};

use super::types::{decode, encode, LogId, NodeId, StorageError, TypeConfig};
use crate::log::Applier;

/// The sled tree of Raft log entries, keyed by index (big-endian u64),
/// values postcard-encoded.
pub const TREE_RAFT_LOG: &str = "raft_log";
/// The sled tree of Raft metadata: the vote, the committed and the purged
/// log ids.
pub const TREE_RAFT_META: &str = "raft_meta";
const META_VOTE: &[u8] = b"vote";
const META_COMMITTED: &[u8] = b"committed";
const META_PURGED: &[u8] = b"purged";

type Entry = openraft::Entry<TypeConfig>;

/// The Raft log of one node (cheap to clone: the reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
    /// Makes writes durable under the store's sync mode.
    applier: Arc<Mutex<Applier>>,
}

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageIOError::new(subject, verb, openraft::AnyError::new(&e)).into()
}

/// Why a read or write of the Raft log or its metadata failed (turned into
/// openraft's [`StorageError`] by [`logs_err`] and the vote methods).
#[derive(Debug, thiserror::Error)]
enum LogStoreError {
    /// sled failed.
    #[error(transparent)]
    Sled(#[from] sled::Error),
    /// An entry or a metadata value does not encode or decode (postcard).
    #[error(transparent)]
    Codec(#[from] postcard::Error),
    /// Making the writes durable failed.
    #[error(transparent)]
    Sync(#[from] crate::log::StoreError),
    /// A key of the `raft_log` tree that is not a big-endian u64.
    #[error("a Raft log key is not 8 bytes")]
    KeyLength,
    /// An entry whose log id's index is not its key.
    #[error("a Raft log entry is stored under another index")]
    MisplacedEntry,
}

fn logs_err(verb: ErrorVerb) -> impl Fn(LogStoreError) -> StorageError {
    move |e| {
        let e = std::io::Error::other(e.to_string());
        io_err(ErrorSubject::Logs, verb, e)
    }
}

impl LogStore {
    /// Opens (creating if missing) the Raft log trees in `db`; `applier`
    /// makes its writes durable under the store's sync mode.
    pub fn open(db: &sled::Db, applier: Arc<Mutex<Applier>>) -> Result<LogStore, sled::Error> {
        Ok(LogStore {
            log: db.open_tree(TREE_RAFT_LOG)?,
            meta: db.open_tree(TREE_RAFT_META)?,
            applier,
        })
    }

    /// Whether the log holds no entry and no vote (a node that never joined a cluster).
    pub fn is_pristine(&self) -> Result<bool, sled::Error> {
        Ok(self.log.is_empty()
            && self.meta.get(META_VOTE)?.is_none()
            && self.meta.get(META_PURGED)?.is_none())
    }

    fn sync(&self) -> Result<(), LogStoreError> {
        let applier = self.applier.lock().unwrap_or_else(|p| p.into_inner());
        Ok(applier.sync()?)
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, LogStoreError> {
        match self.meta.get(key)? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), LogStoreError> {
        self.meta.insert(key, encode(value)?)?;
        Ok(())
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, LogStoreError> {
        match self.log.last()? {
            Some((_, v)) => Ok(Some(decode::<Entry>(&v)?.log_id)),
            None => Ok(None),
        }
    }

    fn read_range(&self, start: u64, end_exclusive: Option<u64>) -> Result<Vec<Entry>, LogStoreError> {
        let mut out = Vec::new();
        let from = start.to_be_bytes();
        let iter = match end_exclusive {
            Some(end) => self.log.range(from..end.to_be_bytes()),
            None => self.log.range(from..),
        };
        for item in iter {
            let (k, v) = item?;
            let entry: Entry = decode(&v)?;
            let index = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| LogStoreError::KeyLength)?);
            if entry.log_id.index != index {
                return Err(LogStoreError::MisplacedEntry);
            }
            out.push(entry);
        }
        Ok(out)
    }

    fn remove_range(&self, from: u64, to_inclusive: Option<u64>) -> Result<(), LogStoreError> {
        let mut batch = sled::Batch::default();
        let start = from.to_be_bytes();
        let keys: Vec<sled::IVec> = match to_inclusive {
            Some(to) => self
                .log
                .range(start..=to.to_be_bytes())
                .keys()
                .collect::<Result<_, _>>()?,
            None => self.log.range(start..).keys().collect::<Result<_, _>>()?,
        };
        for k in keys {
            batch.remove(k);
        }
        self.log.apply_batch(batch)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => *x + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => Some(*x + 1),
            Bound::Excluded(x) => Some(*x),
            Bound::Unbounded => None,
        };
        self.read_range(start, end).map_err(logs_err(ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged: Option<LogId> = self.get_meta(META_PURGED).map_err(logs_err(ErrorVerb::Read))?;
        let last = self.last_entry_id().map_err(logs_err(ErrorVerb::Read))?;
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let saved = self.put_meta(META_VOTE, vote).and_then(|()| self.sync());
        saved.map_err(|e| {
            io_err(
                ErrorSubject::Vote,
                ErrorVerb::Write,
                std::io::Error::other(e.to_string()),
            )
        })
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(META_VOTE).map_err(|e| {
            io_err(
                ErrorSubject::Vote,
                ErrorVerb::Read,
                std::io::Error::other(e.to_string()),
            )
        })
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Made durable by the next append's flush; a lost one is re-learnt from the leader.
        self.put_meta(META_COMMITTED, &committed)
            .map_err(logs_err(ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let c: Option<Option<LogId>> = self.get_meta(META_COMMITTED).map_err(logs_err(ErrorVerb::Read))?;
        Ok(c.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let write = || -> Result<(), LogStoreError> {
            let mut batch = sled::Batch::default();
            for entry in entries {
                batch.insert(&entry.log_id.index.to_be_bytes()[..], encode(&entry)?);
            }
            self.log.apply_batch(batch)?;
            self.sync()
        };
        let result = write();
        let io = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(io);
        result.map_err(logs_err(ErrorVerb::Write))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.remove_range(log_id.index, None)
            .and_then(|()| self.sync())
            .map_err(logs_err(ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_meta(META_PURGED, &log_id)
            .and_then(|()| self.remove_range(0, Some(log_id.index)))
            .map_err(logs_err(ErrorVerb::Delete))
    }
}
