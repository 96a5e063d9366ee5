//! The sled layout of the log (store format v2) and every read of it.
//!
//! Tree `log` (keys big-endian, so sled's byte order is numeric order):
//! - `c` || first seq u64 -> a chunk: the records of one group commit, or
//!   a capped part of it ([`super::chunk`]);
//! - `h` -> head: seq u64 || hash of the last committed record;
//! - `s` || stream id -> the stream's case file ([`super::casefile`]);
//! - `k` -> the position (seq u64 || hash) the persisted case files cover.
//!
//! Tree `meta`: `format` (u32, 2), and the positions verification writes:
//! `verified`, `opened_at` (seq u64 || hash each), `closed` (empty; present
//! iff the last run stopped cleanly).
//!
//! Only the writer ([`super::writer`]) writes chunks and the head, one group
//! commit in one `apply_batch`; only the case-file follower writes case
//! files and `k`; only verification writes `meta`'s positions.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::casefile::{CaseFile, CaseFiles, RequestMark};
use super::chunk::{Chunk, ChunkError};
use super::record::{DecodeError, Hash, Record, GENESIS_PREV_HASH, HASH_LEN};
use crate::limits::READ_PAGE_EVENTS_MAX;

/// Name of the sled tree holding chunks, the head and case files (module doc).
pub const TREE_LOG: &str = "log";
pub(crate) const TREE_META: &str = "meta";
pub(crate) const CHUNK_PREFIX: u8 = b'c';
pub(crate) const HEAD_KEY: &[u8] = b"h";
pub(crate) const META_FORMAT: &[u8] = b"format";
pub(crate) const META_VERIFIED: &[u8] = b"verified";
pub(crate) const META_OPENED_AT: &[u8] = b"opened_at";
pub(crate) const META_CLOSED: &[u8] = b"closed";
/// The store format this build reads and writes (`meta/format`).
pub const STORE_FORMAT: u32 = 2;

/// How an acknowledged append is made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// sled `flush()` and then `fdatasync` of sled's data file: survives power
    /// loss on disks with volatile caches. The default.
    Fdatasync,
    /// sled `flush()` only (sled uses `sync_file_range`, which may leave data
    /// in a volatile disk cache). Survives a process crash, not always a power cut.
    Flush,
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O or its own corruption check).
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// Outside sled: a file-system operation failed (directories, files,
    /// threads), or an operation was refused with a reason (the applier
    /// stopped earlier, a copy's destination not empty).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A record inside a well-formed chunk does not decode.
    #[error("corrupt record at seq {seq}: {source}")]
    Corrupt {
        /// The record's seq.
        seq: u64,
        /// Why it does not decode.
        source: DecodeError,
    },
    /// A chunk value is not a well-formed chunk.
    #[error("corrupt chunk at seq {seq}: {source}")]
    CorruptChunk {
        /// The chunk's key: the seq of its first record.
        seq: u64,
        /// What is wrong with it.
        source: ChunkError,
    },
    /// A key or value beside the records (head, chunk key, case file) is
    /// malformed or contradicts the log; names what.
    #[error("corrupt metadata: {0}")]
    CorruptMeta(&'static str),
    /// No chunk holds a seq at or below the head.
    #[error("gap in the log: seq {seq} is missing below the head")]
    Missing {
        /// The first seq not found.
        seq: u64,
    },
    /// The directory holds a store of another format (v1, an unknown
    /// format, or a log without a format marker), or a store where none
    /// may be; the message says what to do.
    #[error("{0}")]
    Format(String),
}

/// One event read back from the log, with its chain hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// The decoded record.
    pub record: Record,
    /// The chain hash stored with it.
    pub hash: Hash,
}

/// The last committed position of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Sequence number of the last record; 0 for an empty log.
    pub seq: u64,
    /// Its chain hash; [`GENESIS_PREV_HASH`] for an empty log.
    pub hash: Hash,
}

impl Head {
    /// The head of an empty log: seq 0, [`GENESIS_PREV_HASH`].
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: GENESIS_PREV_HASH,
    };

    pub(crate) fn to_bytes(self) -> [u8; 8 + HASH_LEN] {
        let mut out = [0u8; 8 + HASH_LEN];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..].copy_from_slice(&self.hash);
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Head, StoreError> {
        if bytes.len() != 8 + HASH_LEN {
            return Err(StoreError::CorruptMeta("head has the wrong length"));
        }
        Ok(Head {
            seq: u64::from_be_bytes(bytes[..8].try_into().expect("8")),
            hash: bytes[8..].try_into().expect("32"),
        })
    }
}

/// What one request appended to its stream, found by its request id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestEntry {
    /// Sequence number of the request's first event.
    pub first_seq: u64,
    /// Number of events it appended.
    pub count: u16,
    /// Stream version of its first event.
    pub first_version: u64,
    /// When it was recorded.
    pub recorded_at_us: i64,
}

/// Key of the chunk whose first record is `seq`.
pub(crate) fn chunk_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = CHUNK_PREFIX;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The first seq of a chunk key, or `None` for a key that is not a chunk's.
pub(crate) fn chunk_first_seq(key: &[u8]) -> Option<u64> {
    (key.len() == 9 && key[0] == CHUNK_PREFIX).then(|| u64::from_be_bytes(key[1..].try_into().expect("8")))
}

/// The opened store: read access for everyone, write access for the writer only.
#[derive(Clone)]
pub struct Store {
    /// The sled database (every tree of the store).
    pub(crate) db: sled::Db,
    /// Tree `log`: chunks, head, case files and their position.
    pub(crate) log: sled::Tree,
    /// Tree `meta`: format, verified position, open and close marks.
    pub(crate) meta: sled::Tree,
    /// The case files of recent commits not yet written by the follower.
    pub(crate) case_files: Arc<CaseFiles>,
    /// The head readers may see: set at open from the head key, then by the
    /// writer after each commit is applied and durable. Every read is bounded by it.
    published: Arc<RwLock<Head>>,
    /// Signalled after every publish, for [`Store::wait_published`].
    published_signal: Arc<(std::sync::Mutex<()>, std::sync::Condvar)>,
    dir: PathBuf,
    /// Group commits and appends, for the metrics endpoint.
    metrics: crate::metrics::log::LogMetrics,
    /// How the side trees (person keys, document index) write: locally, or
    /// through the cluster on a cluster node.
    side: super::side::SideSlot,
}

impl Store {
    /// Opens (or creates) the store in `dir`. Refuses a store of another
    /// format (a v1 store names the command that converts it).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        let db = open_db(dir)?;
        advise_random_reads(&dir.join("db"));
        let meta = db.open_tree(TREE_META)?;
        check_format(&db, &meta, dir)?;
        let log = db.open_tree(TREE_LOG)?;
        let head = match log.get(HEAD_KEY)? {
            Some(v) => Head::from_bytes(&v)?,
            None => Head::EMPTY,
        };
        Ok(Store {
            published: Arc::new(RwLock::new(head)),
            published_signal: Arc::new((std::sync::Mutex::new(()), std::sync::Condvar::new())),
            case_files: Arc::new(CaseFiles::new(log.clone())),
            log,
            meta,
            db,
            dir: dir.to_path_buf(),
            metrics: Default::default(),
            side: Default::default(),
        })
    }

    /// How the side trees of this store write (see [`super::side`]).
    pub fn side_slot(&self) -> &super::side::SideSlot {
        &self.side
    }

    /// What the writer and the appenders record (group commits, appends).
    pub fn metrics(&self) -> &crate::metrics::log::LogMetrics {
        &self.metrics
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sled database, for other components that keep their own trees
    /// (projections, audit). They never write the log's trees.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The last committed, durable head: everything up to it is readable.
    pub fn head(&self) -> Result<Head, StoreError> {
        Ok(*self.published.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Blocks until the published head reaches `seq` or `timeout` passes;
    /// returns whether it did. A commit whose case files are visible
    /// (durable, about to be published) is waited for this way.
    pub fn wait_published(&self, seq: u64, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let (lock, signal) = &*self.published_signal;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.head().map(|h| h.seq >= seq).unwrap_or(false) {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            guard = signal
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The head as recorded in the `log` tree (verification compares it with the chain).
    pub fn meta_head(&self) -> Result<Head, StoreError> {
        match self.log.get(HEAD_KEY)? {
            Some(v) => Head::from_bytes(&v),
            None => Ok(Head::EMPTY),
        }
    }

    /// Called by the writer once a commit is applied and durable.
    pub(crate) fn publish(&self, head: Head) {
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = head;
        let (lock, signal) = &*self.published_signal;
        drop(lock.lock().unwrap_or_else(|p| p.into_inner()));
        signal.notify_all();
    }

    /// The position up to which the chain and case files were last verified.
    pub fn verified(&self) -> Result<Head, StoreError> {
        self.meta_position(META_VERIFIED)
    }

    /// The position the case files written to sled cover (the rest is
    /// replayed from the log at start-up).
    pub fn case_files_at(&self) -> Result<Head, StoreError> {
        self.case_files.persisted_at()
    }

    fn meta_position(&self, key: &[u8]) -> Result<Head, StoreError> {
        match self.meta.get(key)? {
            Some(v) => Head::from_bytes(&v),
            None => Ok(Head::EMPTY),
        }
    }

    /// Where the start-up check must begin. After a clean stop: the verified
    /// position (the previous run verified everything it appended). After an
    /// unclean stop (no `meta/closed`): the position verified when that run
    /// started, because sled's recovery replays everything written since its
    /// last open, so all of it is re-checked, not just the last second.
    pub fn startup_check_from(&self) -> Result<Head, StoreError> {
        let verified = self.verified()?;
        if self.meta.get(META_CLOSED)?.is_some() || self.meta.get(META_OPENED_AT)?.is_none() {
            return Ok(verified);
        }
        let opened_at = self.meta_position(META_OPENED_AT)?;
        Ok(if opened_at.seq < verified.seq {
            opened_at
        } else {
            verified
        })
    }

    /// Records a start: everything up to `head` is verified, and the run is
    /// open (not cleanly closed) until [`Store::set_closed`]; durable before
    /// the writer starts.
    pub(crate) fn set_opened(&self, head: Head) -> Result<(), StoreError> {
        self.meta.remove(META_CLOSED)?;
        self.set_verified(head)
    }

    /// Records a clean stop, after the last append was verified (the caller flushes).
    pub(crate) fn set_closed(&self) -> Result<(), StoreError> {
        self.meta.insert(META_CLOSED, &[][..])?;
        Ok(())
    }

    /// Everything up to `head` is verified, including what a run since
    /// `opened_at` appended (a start-up or a full verification passed); durable.
    pub(crate) fn set_verified(&self, head: Head) -> Result<(), StoreError> {
        self.set_verified_unflushed(head)?;
        self.meta.insert(META_OPENED_AT, &head.to_bytes()[..])?;
        self.db.flush()?;
        Ok(())
    }

    /// Records the verified position; it reaches disk with the next flush
    /// (the writer flushes every group commit). Losing it in a crash only
    /// means the next start checks a little more.
    pub(crate) fn set_verified_unflushed(&self, head: Head) -> Result<(), StoreError> {
        self.meta.insert(META_VERIFIED, &head.to_bytes()[..])?;
        Ok(())
    }

    /// The chunk holding `seq`, whatever the published head (for the writer
    /// and verification): one range lookup.
    pub(crate) fn chunk_of(&self, seq: u64) -> Result<Option<(u64, Chunk<sled::IVec>)>, StoreError> {
        if seq == 0 {
            return Ok(None);
        }
        let Some(kv) = self.log.range(chunk_key(0)..=chunk_key(seq)).next_back() else {
            return Ok(None);
        };
        let (k, v) = kv?;
        let first = chunk_first_seq(&k).ok_or(StoreError::CorruptMeta("chunk key"))?;
        let chunk = Chunk::parse(v).map_err(|source| StoreError::CorruptChunk { seq: first, source })?;
        if seq >= first + chunk.len() as u64 {
            return Ok(None);
        }
        Ok(Some((first, chunk)))
    }

    /// One event by sequence number, whatever the published head.
    pub(crate) fn get_unpublished(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        match self.chunk_of(seq)? {
            Some((first, chunk)) => decode_entry(&chunk, first, seq).map(Some),
            None => Ok(None),
        }
    }

    /// One event by sequence number (none past the published head).
    pub fn get(&self, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
        if seq > self.head()?.seq {
            return Ok(None);
        }
        self.get_unpublished(seq)
    }

    /// Entries `from..=to` exactly as stored (record bytes || hash), chunk
    /// by chunk, whatever the published head: for auditors' walks and
    /// exports, which check seqs, links and hashes themselves. Each item
    /// carries the seq its position in the log gives it (a chunk's key plus
    /// the entry's index), so a missing chunk shows as a jump.
    pub fn raw_range(&self, from: u64, to: u64) -> RawEntries {
        let start = match self.chunk_of(from.max(1)) {
            Ok(Some((first, _))) => first,
            _ => from.max(1),
        };
        RawEntries {
            iter: self.log.range(chunk_key(start)..=chunk_key(to)),
            from: from.max(1),
            to,
            current: None,
            failed: false,
        }
    }

    /// One entry exactly as stored (record bytes || hash), whatever the published head.
    pub fn raw_get(&self, seq: u64) -> Result<Option<RawEntry>, StoreError> {
        Ok(self
            .chunk_of(seq)?
            .map(|(first, chunk)| RawEntry::new(chunk, (seq - first) as usize)))
    }

    /// The seq of the last record in the chunks (whatever the head key says).
    pub fn last_stored_seq(&self) -> Result<u64, StoreError> {
        match self.log.range(chunk_key(0)..=chunk_key(u64::MAX)).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                let first = chunk_first_seq(&k).ok_or(StoreError::CorruptMeta("chunk key"))?;
                let chunk =
                    Chunk::parse(v).map_err(|source| StoreError::CorruptChunk { seq: first, source })?;
                Ok(first + chunk.len() as u64 - 1)
            }
            None => Ok(0),
        }
    }

    /// The stream's case file, including every durable commit.
    pub(crate) fn case_file(&self, stream_id: &str) -> Result<Option<Arc<CaseFile>>, StoreError> {
        self.case_files.get(stream_id)
    }

    /// The current version of a stream (number of its events up to the
    /// published head; 0 if none).
    pub fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        let head = self.head()?.seq;
        Ok(self
            .case_file(stream_id)?
            .map(|cf| cf.version_at(head))
            .unwrap_or(0))
    }

    /// Events of one stream in order, starting at `from_version` (1-based),
    /// at most `max` of them (capped by [`READ_PAGE_EVENTS_MAX`]).
    pub fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let max = max.min(READ_PAGE_EVENTS_MAX);
        let head = self.head()?.seq;
        let Some(cf) = self.case_file(stream_id)? else {
            return Ok(Vec::new());
        };
        let from = from_version.max(1) as usize - 1;
        let seqs: Vec<u64> = cf
            .seqs
            .iter()
            .skip(from)
            .take(max)
            .copied()
            .take_while(|&s| s <= head)
            .collect();
        let events = self.get_many(&seqs)?;
        for (i, ev) in events.iter().enumerate() {
            if ev.record.stream_id != stream_id || ev.record.stream_version != (from + i + 1) as u64 {
                return Err(StoreError::CorruptMeta(
                    "case file names an event of another stream or version",
                ));
            }
        }
        Ok(events)
    }

    /// Events by ascending seq, reading each chunk once.
    pub(crate) fn get_many(&self, seqs: &[u64]) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::with_capacity(seqs.len());
        let mut current: Option<(u64, Chunk<sled::IVec>)> = None;
        for &seq in seqs {
            let hit = matches!(&current, Some((first, c)) if seq >= *first && seq < first + c.len() as u64);
            if !hit {
                current = Some(
                    self.chunk_of(seq)?
                        .ok_or(StoreError::CorruptMeta("case file points past the log"))?,
                );
            }
            let (first, chunk) = current.as_ref().expect("set above");
            out.push(decode_entry(chunk, *first, seq)?);
        }
        Ok(out)
    }

    /// A page of the global log from `from_seq` (inclusive), at most `max` events
    /// (capped by [`READ_PAGE_EVENTS_MAX`]), never past the committed head.
    pub fn read_all(&self, from_seq: u64, max: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let max = max.min(READ_PAGE_EVENTS_MAX);
        let head = self.head()?.seq;
        let from = from_seq.max(1);
        if from > head {
            return Ok(Vec::new());
        }
        let to = head.min(from + max as u64 - 1);
        let mut out = Vec::with_capacity((to - from + 1) as usize);
        self.for_each_chunk(from, to, |first, chunk| {
            let lo = from.max(first);
            let hi = to.min(first + chunk.len() as u64 - 1);
            // A chunk missing before this one is a gap: named by its first seq.
            let next = from + out.len() as u64;
            if lo > next {
                return Err(StoreError::Missing { seq: next });
            }
            if lo < next {
                return Err(StoreError::CorruptMeta("chunks overlap"));
            }
            for seq in lo..=hi {
                out.push(decode_entry(chunk, first, seq)?);
            }
            Ok(())
        })?;
        if out.len() as u64 != to - from + 1 {
            return Err(StoreError::Missing {
                seq: from + out.len() as u64,
            });
        }
        Ok(out)
    }

    /// Calls `f` with every chunk that holds a record in `from..=to`, in seq order.
    pub(crate) fn for_each_chunk(
        &self,
        from: u64,
        to: u64,
        mut f: impl FnMut(u64, &Chunk<sled::IVec>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let start = match self.chunk_of(from)? {
            Some((first, _)) => first,
            None => from,
        };
        for kv in self.log.range(chunk_key(start)..=chunk_key(to)) {
            let (k, v) = kv?;
            let first = chunk_first_seq(&k).ok_or(StoreError::CorruptMeta("chunk key"))?;
            let chunk = Chunk::parse(v).map_err(|source| StoreError::CorruptChunk { seq: first, source })?;
            f(first, &chunk)?;
        }
        Ok(())
    }

    /// Every record `from..=to` in seq order, chunk by chunk (a sequential
    /// read of the log); a gap is an error naming the missing seq.
    pub(crate) fn for_each_record(
        &self,
        from: u64,
        to: u64,
        mut f: impl FnMut(&Record) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let from = from.max(1);
        if from > to {
            return Ok(());
        }
        let mut next = from;
        self.for_each_chunk(from, to, |first, chunk| {
            let lo = from.max(first);
            let hi = to.min(first + chunk.len() as u64 - 1);
            if lo > next {
                return Err(StoreError::Missing { seq: next });
            }
            for seq in lo..=hi {
                f(&decode_entry(chunk, first, seq)?.record)?;
            }
            next = hi + 1;
            Ok(())
        })?;
        if next <= to {
            return Err(StoreError::Missing { seq: next });
        }
        Ok(())
    }

    /// What a request id appended to a stream, if it was seen there
    /// (request ids are scoped to their stream). Confirmed against the
    /// record, so a tag collision is never taken for the request. Looks at
    /// every durable commit, published or not: a caller compares
    /// `first_seq` with [`Store::head`].
    pub fn request_entry(
        &self,
        stream_id: &str,
        request_id: &str,
    ) -> Result<Option<RequestEntry>, StoreError> {
        let Some(cf) = self.case_file(stream_id)? else {
            return Ok(None);
        };
        Ok(self
            .request_in(&cf, request_id)?
            .map(|(mark, first)| RequestEntry {
                first_seq: first.record.seq,
                count: first.record.parts,
                first_version: mark.first_version,
                recorded_at_us: first.record.recorded_at_us,
            }))
    }

    /// The request with this id in a case file, and its first event: a
    /// matching tag confirmed against the record's request id (a tag
    /// collision is another request). Whatever the published head.
    pub(crate) fn request_in(
        &self,
        cf: &CaseFile,
        request_id: &str,
    ) -> Result<Option<(RequestMark, StoredEvent)>, StoreError> {
        for mark in cf.requests_tagged(request_id) {
            let seq = *cf
                .seqs
                .get(mark.first_version as usize - 1)
                .ok_or(StoreError::CorruptMeta("request names a version past its stream"))?;
            let first = self
                .get_unpublished(seq)?
                .ok_or(StoreError::CorruptMeta("case file points past the log"))?;
            if first.record.request_id == request_id {
                return Ok(Some((mark, first)));
            }
        }
        Ok(None)
    }

    /// Bytes sled reports for the store on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Makes everything written so far durable according to `mode`.
    pub(crate) fn sync(&self, mode: SyncMode, data_file: Option<&std::fs::File>) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        self.db.flush()?;
        self.metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        if mode == SyncMode::Fdatasync {
            if let Some(f) = data_file {
                let started = std::time::Instant::now();
                f.sync_data()?;
                self.metrics
                    .fdatasync_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    /// Opens sled's data file for `fdatasync` (sled 0.34 keeps one file, `db`).
    pub(crate) fn open_data_file(&self) -> Result<std::fs::File, StoreError> {
        Ok(std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join("db"))?)
    }
}

/// One stored entry (record bytes || hash), borrowed from its chunk's value.
#[derive(Clone, Debug)]
pub struct RawEntry {
    chunk: Chunk<sled::IVec>,
    index: usize,
}

impl RawEntry {
    fn new(chunk: Chunk<sled::IVec>, index: usize) -> RawEntry {
        RawEntry { chunk, index }
    }
}

impl std::ops::Deref for RawEntry {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.chunk.entry_bytes(self.index)
    }
}

/// Iterator of [`Store::raw_range`].
pub struct RawEntries {
    iter: sled::Iter,
    from: u64,
    to: u64,
    /// The chunk being read: its first seq, the chunk, the next index.
    current: Option<(u64, Chunk<sled::IVec>, usize)>,
    failed: bool,
}

impl Iterator for RawEntries {
    type Item = Result<(u64, RawEntry), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if let Some((first, chunk, i)) = &mut self.current {
                if *i < chunk.len() {
                    let seq = *first + *i as u64;
                    let entry = RawEntry::new(chunk.clone(), *i);
                    *i += 1;
                    if seq < self.from {
                        continue;
                    }
                    if seq > self.to {
                        self.failed = true;
                        return None;
                    }
                    return Some(Ok((seq, entry)));
                }
            }
            let kv = match self.iter.next()? {
                Ok(kv) => kv,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e.into()));
                }
            };
            let Some(first) = chunk_first_seq(&kv.0) else {
                self.failed = true;
                return Some(Err(StoreError::CorruptMeta("chunk key")));
            };
            match Chunk::parse(kv.1) {
                Ok(chunk) => self.current = Some((first, chunk, 0)),
                Err(source) => {
                    self.failed = true;
                    return Some(Err(StoreError::CorruptChunk { seq: first, source }));
                }
            }
        }
    }
}

/// Checks (or, for a new store, records) `meta/format`.
fn check_format(db: &sled::Db, meta: &sled::Tree, dir: &Path) -> Result<(), StoreError> {
    match meta.get(META_FORMAT)? {
        Some(v) if v.as_ref() == STORE_FORMAT.to_be_bytes() => Ok(()),
        Some(v) => Err(StoreError::Format(format!(
            "the store in {} has format {} and this build reads format {STORE_FORMAT} only",
            dir.display(),
            v.as_ref()
                .try_into()
                .map(u32::from_be_bytes)
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "(unreadable)".into()),
        ))),
        None if super::v1::is_v1(db)? => Err(StoreError::Format(format!(
            "the store in {} has format 1 (trees `events`, `streams`, `requests`); this build reads format {STORE_FORMAT}: \
             stop the service and run `registry migrate-store --from {} --to NEW_DIR`, then serve NEW_DIR",
            dir.display(),
            dir.display()
        ))),
        None => {
            if db.tree_names().iter().any(|n| n.as_ref() == TREE_LOG.as_bytes()) && !db.open_tree(TREE_LOG)?.is_empty() {
                return Err(StoreError::Format(format!(
                    "the store in {} has a log but no format marker",
                    dir.display()
                )));
            }
            meta.insert(META_FORMAT, &STORE_FORMAT.to_be_bytes()[..])?;
            db.flush()?;
            Ok(())
        }
    }
}

/// Decodes record `seq` of a chunk whose first record is `first`, checking
/// that the record says the seq its position says.
pub(crate) fn decode_entry<V: AsRef<[u8]>>(
    chunk: &Chunk<V>,
    first: u64,
    seq: u64,
) -> Result<StoredEvent, StoreError> {
    let i = (seq - first) as usize;
    let (bytes, hash) = chunk
        .entry(i)
        .map_err(|source| StoreError::CorruptChunk { seq, source })?;
    let record = Record::decode(bytes).map_err(|source| StoreError::Corrupt { seq, source })?;
    if record.seq != seq {
        return Err(StoreError::CorruptChunk {
            seq,
            source: ChunkError::BadOffset(i),
        });
    }
    Ok(StoredEvent { record, hash })
}

/// sled's segment size for new stores: 8 MiB instead of sled's 512 KiB.
/// After every open, sled 0.34's first `stabilize` deactivates every segment
/// of the file and, for each, counts the free and inactive segments of the
/// whole file: quadratic in the number of segments. On the 45 GB full
/// caseload (88,000 segments of 512 KiB) that blocked every write for ~50 s
/// after each start (BENCHMARKS.md); 8 MiB segments make it ~250x cheaper.
pub(crate) const SEGMENT_SIZE: usize = 8 * 1024 * 1024;

/// The sled configuration of the store in `dir`. Tools and tests that open
/// a store's sled directory directly must use it too: sled refuses to open a
/// store with another segment size than the one it was created with.
pub fn sled_config(dir: &Path) -> sled::Config {
    let tuning = *SLED_TUNING.get_or_init(SledTuning::default);
    sled::Config::new()
        .path(dir)
        .cache_capacity(tuning.cache_mib * 1024 * 1024)
        .segment_size(segment_size_for(dir))
        .flush_every_ms(Some(500))
}

/// sled's page cache, in MiB, unless the command line says otherwise.
pub const SLED_CACHE_MIB_DEFAULT: u64 = 256;

/// The sled settings a process uses for every store it opens (set once,
/// from the command line, before any store is opened). sled 0.34's
/// `snapshot_after_ops` is a deprecated no-op, so recovery has no knob here:
/// sled writes its page-table snapshot when a store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SledTuning {
    /// sled's page cache, in MiB (`--sled-cache-mib`).
    pub cache_mib: u64,
}

impl Default for SledTuning {
    fn default() -> SledTuning {
        SledTuning {
            cache_mib: SLED_CACHE_MIB_DEFAULT,
        }
    }
}

static SLED_TUNING: std::sync::OnceLock<SledTuning> = std::sync::OnceLock::new();

/// Sets the sled settings of this process; the first call wins (a store
/// opened before it uses the defaults).
pub fn set_sled_tuning(tuning: SledTuning) {
    let _ = SLED_TUNING.set(tuning);
}

/// Opens the sled db in `dir` with [`sled_config`]. sled 0.34 may hold its
/// file lock for a moment after a previous handle in this process closed
/// (sled issues #1234, #1289): retried for up to 5 s.
pub(crate) fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    let config = sled_config(dir);
    let mut attempts = 0;
    loop {
        match config.open() {
            // sled reports a taken lock as an error of kind `Other` whose
            // message names the lock (the `WouldBlock` is only inside it).
            Err(sled::Error::Io(e))
                if (e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("could not acquire lock"))
                    && attempts < crate::limits::STORE_LOCK_RETRIES =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(
                    crate::limits::STORE_LOCK_RETRY_MS,
                ));
            }
            other => return Ok(other?),
        }
    }
}

/// What [`copy_store`] copied.
#[derive(Debug, Clone, Copy)]
pub struct CopyReport {
    /// Trees copied.
    pub trees: usize,
    /// Entries copied, over every tree.
    pub entries: u64,
    /// Other files of the data directory copied.
    pub files: usize,
    /// BLAKE3 over every tree's name and its keys and values in order: the
    /// same computed from the source while copying and from the copy after
    /// it was written and flushed.
    pub digest: [u8; 32],
    /// How long reopening the copy took (sled's replay of the copy, paid
    /// here rather than at the service's first start).
    pub reopen: std::time::Duration,
}

/// How many trees [`copy_store`] copies at once. Reading a store larger
/// than memory is bound by the latency of sled's one-node reads, not by
/// the disk's bandwidth; the three big trees (`events`, `streams`,
/// `requests`) copied side by side keep several reads in flight.
const COPY_THREADS: usize = 4;

/// Copies the stopped store in `from` into the new directory `to`, every
/// tree key by key and value by value (nothing is re-encoded: every record,
/// hash and index entry is the same bytes), with this build's sled
/// configuration, so a store created with an older segment size gets the
/// current one. The other files of the data directory (access file, keys,
/// tokens) are copied alongside. Refuses a `to` that exists and is not
/// empty. Each tree's digest is computed from the source as it is read,
/// and again from the copy once it is flushed; they must be equal.
/// `progress` is called with the number of entries copied so far.
pub fn copy_store(from: &Path, to: &Path, progress: &mut dyn FnMut(u64)) -> Result<CopyReport, StoreError> {
    if !from.join("db").exists() {
        return Err(StoreError::Io(std::io::Error::other(format!(
            "no store in {}",
            from.display()
        ))));
    }
    if to.exists() && std::fs::read_dir(to)?.next().is_some() {
        return Err(StoreError::Io(std::io::Error::other(format!(
            "{} exists and is not empty",
            to.display()
        ))));
    }
    let source = sled_config(from).open()?;
    advise_random_reads(&from.join("db"));
    std::fs::create_dir_all(to)?;
    let target = sled_config(to).open()?;
    let names = source.tree_names();
    let entries = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    // Copy, then read the copy back, each over a pool of COPY_THREADS.
    let copied = on_pool(&names, &entries, &failed, progress, |name, counter| {
        copy_tree(&source, &target, name, counter, &failed)
    })?;
    target.flush()?;
    // sled 0.34 writes its page-table snapshot when it opens a store, and an
    // open replays every segment written since the last snapshot: reopened
    // here, the copy's first start as a service is quick instead of paying
    // for the whole copy.
    drop(target);
    let reopened = std::time::Instant::now();
    let target = open_db(to)?;
    let reopen = reopened.elapsed();
    let reread = AtomicU64::new(0);
    let written = on_pool(&names, &reread, &failed, &mut |_| {}, |name, counter| {
        tree_digest(&target.open_tree(name)?, name, counter)
    })?;
    let mut all = blake3::Hasher::new();
    for ((name, a), b) in names.iter().zip(&copied).zip(&written) {
        if a != b {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "the copy of tree {} differs from the source",
                String::from_utf8_lossy(name)
            ))));
        }
        all.update(a);
    }
    let mut files = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let sled_own = matches!(name.to_str(), Some("db" | "conf" | "blobs"))
            || name.to_string_lossy().starts_with("snap.");
        if entry.file_type()?.is_file() && !sled_own {
            std::fs::copy(entry.path(), to.join(&name))?;
            files += 1;
        }
    }
    Ok(CopyReport {
        trees: names.len(),
        entries: entries.into_inner(),
        files,
        digest: *all.finalize().as_bytes(),
        reopen,
    })
}

/// Runs `work` on every tree name over COPY_THREADS threads; returns the
/// results in the order of `names`, or the first error. `progress` sees
/// `counter` every 200 ms.
fn on_pool(
    names: &[sled::IVec],
    counter: &AtomicU64,
    failed: &AtomicBool,
    progress: &mut dyn FnMut(u64),
    work: impl Fn(&sled::IVec, &AtomicU64) -> Result<[u8; 32], StoreError> + Sync,
) -> Result<Vec<[u8; 32]>, StoreError> {
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<[u8; 32]>>> = names.iter().map(|_| Mutex::new(None)).collect();
    let first_error: Mutex<Option<StoreError>> = Mutex::new(None);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..COPY_THREADS.min(names.len()))
            .map(|_| {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= names.len() || failed.load(Ordering::SeqCst) {
                        return;
                    }
                    match work(&names[i], counter) {
                        Ok(digest) => *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(digest),
                        Err(e) => {
                            // Recorded before `failed` is set, so the error a
                            // worker stopped by `failed` reports never wins.
                            first_error
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                            failed.store(true, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        while !workers.iter().all(|w| w.is_finished()) {
            progress(counter.load(Ordering::Relaxed));
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        progress(counter.load(Ordering::Relaxed));
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut out = Vec::with_capacity(names.len());
    for (slot, name) in results.into_iter().zip(names) {
        match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(digest) => out.push(digest),
            None => {
                return Err(StoreError::Io(std::io::Error::other(format!(
                    "tree {} was not processed",
                    String::from_utf8_lossy(name)
                ))))
            }
        }
    }
    Ok(out)
}

fn digest_start(name: &[u8]) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    h.update(b"migreg.copy-store.tree.v1\0");
    h.update(&(name.len() as u64).to_le_bytes()).update(name);
    h
}

fn digest_entry(h: &mut blake3::Hasher, k: &[u8], v: &[u8]) {
    h.update(&(k.len() as u64).to_le_bytes()).update(k);
    h.update(&(v.len() as u64).to_le_bytes()).update(v);
}

/// Copies one tree in batches of 10,000 entries; returns its digest.
fn copy_tree(
    source: &sled::Db,
    target: &sled::Db,
    name: &[u8],
    counter: &AtomicU64,
    failed: &AtomicBool,
) -> Result<[u8; 32], StoreError> {
    let (src, dst) = (source.open_tree(name)?, target.open_tree(name)?);
    let mut digest = digest_start(name);
    let mut batch = sled::Batch::default();
    let mut in_batch = 0u64;
    for kv in src.iter() {
        let (k, v) = kv?;
        digest_entry(&mut digest, &k, &v);
        batch.insert(k, v);
        in_batch += 1;
        if in_batch == crate::limits::COPY_STORE_BATCH_ENTRIES {
            dst.apply_batch(std::mem::take(&mut batch))?;
            counter.fetch_add(in_batch, Ordering::Relaxed);
            in_batch = 0;
            if failed.load(Ordering::SeqCst) {
                return Err(StoreError::Io(std::io::Error::other("copy stopped")));
            }
        }
    }
    dst.apply_batch(batch)?;
    counter.fetch_add(in_batch, Ordering::Relaxed);
    Ok(*digest.finalize().as_bytes())
}

fn tree_digest(tree: &sled::Tree, name: &[u8], counter: &AtomicU64) -> Result<[u8; 32], StoreError> {
    let mut digest = digest_start(name);
    for kv in tree.iter() {
        let (k, v) = kv?;
        digest_entry(&mut digest, &k, &v);
        counter.fetch_add(1, Ordering::Relaxed);
    }
    Ok(*digest.finalize().as_bytes())
}

/// The segment size of the store in `dir`: the one its sled `conf` file
/// records (sled refuses to open a store with another), or [`SEGMENT_SIZE`]
/// for a new store.
fn segment_size_for(dir: &Path) -> usize {
    std::fs::read(dir.join("conf"))
        .ok()
        .and_then(|bytes| {
            String::from_utf8_lossy(&bytes)
                .lines()
                .find_map(|l| l.strip_prefix("segment_size: ")?.trim().parse::<usize>().ok())
        })
        .unwrap_or(SEGMENT_SIZE)
}

/// Tells the kernel that sled's data file is read at random (once sled has
/// opened it and replayed its log sequentially). sled reads one node with one
/// small `pread`; with the device's readahead on (8 MiB on this project's
/// benchmark VM, 128 KiB on common distributions) each of those reads pulls
/// far more from disk than it needs and evicts useful pages, which is what
/// dominated case reads once the store outgrew memory (BENCHMARKS.md). sled
/// does not expose its file descriptor, so this finds it in `/proc/self/fd`;
/// best effort: without it, reads are only slower.
fn advise_random_reads(data_file: &Path) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(target) = std::fs::canonicalize(data_file) else {
            return;
        };
        let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
            return;
        };
        let mut advised = 0;
        for entry in fds.flatten() {
            let Ok(link) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if link.as_os_str().as_bytes() != target.as_os_str().as_bytes() {
                continue;
            }
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            // SAFETY: posix_fadvise only sets an access-pattern hint on an open
            // descriptor; it reads and writes no memory of ours.
            if unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_RANDOM) } == 0 {
                advised += 1;
            }
        }
        tracing::debug!(descriptors = advised, "advised random access on the data file");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = data_file;
}
