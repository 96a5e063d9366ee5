//! Snapshots of a cluster node's state machine (docs/CLUSTER.md,
//! "Snapshots"): one file, `migreg-snapshot/1`, holding the store as of a
//! Raft log index: every record up to the head at that index, the
//! replicated side trees (person keys, document index) at that index, the
//! Raft position and membership, and the building node's latest signed
//! checkpoint. Once a snapshot exists the Raft log before it is purged, so
//! records are no longer held twice, and a new or lagging node whose
//! entries were purged receives the file instead.
//!
//! Layout: `MIGREGSN`, the format version (u32, big-endian), then frames
//! (a u32 big-endian length and a postcard `Frame`): one `Header`, every
//! side-tree entry, the records in batches, one `End`; then the BLAKE3 of
//! every byte before it (32 bytes).
//!
//! A received file is used only after it verified as a whole
//! ([`verify`]): its BLAKE3; every record linked to the one before from
//! the genesis, with the seq after it; the last one hashing to the head the
//! header names; the checkpoint's signature (under the key the cluster file
//! pins for the building member, or else the key the header names) and its
//! Merkle root equal to the root of the records up to its size. Installing
//! ([`install`]) then appends to this node's store only the records after
//! its own head, through the same chain check as replicated entries, and
//! fails if its head is not in the snapshot's chain.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::trees::REPLICATED_TREES;
use super::types::{decode, encode, LogId, Member, NodeId};
use crate::audit::checkpoint::{Checkpointer, Verifier};
use crate::audit::merkle::{leaf_hash, Frontier};
use crate::log::record::{chain_hash, peek_chain_fields, split_stored, GENESIS_PREV_HASH};
use crate::log::{Applier, Head};

/// The magic bytes a snapshot file starts with.
pub const MAGIC: &[u8; 8] = b"MIGREGSN";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// The node's current snapshot, in the snapshot directory.
pub const CURRENT_FILE: &str = "current.snap";
/// The snapshot directory inside a node's data directory.
pub const DIR: &str = "snapshots";
/// The largest frame a reader accepts.
pub const FRAME_MAX: usize = 16 * 1024 * 1024;
/// Records per `Records` frame and per batch applied while installing.
pub const RECORDS_PER_FRAME: usize = 4_096;
/// Bytes of records per frame (a frame is closed at whichever comes first).
pub const RECORD_BYTES_PER_FRAME: usize = 4 * 1024 * 1024;

/// The Raft membership a snapshot carries.
pub type Membership = openraft::StoredMembership<NodeId, Member>;

/// Why a snapshot could not be built, read, verified or installed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading, writing or syncing the snapshot file failed.
    #[error("snapshot i/o on {path}: {source}")]
    Io {
        /// The snapshot file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a valid snapshot, or does not verify; the message says where.
    #[error("snapshot {path}: {reason}")]
    Invalid {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
    /// This node's store does not continue into the snapshot's chain.
    #[error("this node's store is not a prefix of the snapshot's log: {0}")]
    Diverged(String),
    /// This node's store could not be read or written while building or
    /// installing (a sled error, a stopped node, nothing applied yet, side
    /// trees replaced during the build, signing the checkpoint); the text
    /// says what.
    #[error("snapshot: {0}")]
    Store(String),
}

/// The first frame: what the snapshot is of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The Raft entry the snapshot reflects (everything up to it applied).
    pub last_log_id: Option<LogId>,
    /// The membership as of that entry.
    pub membership: Membership,
    /// The store's head at that entry.
    pub head_seq: u64,
    /// The chain hash of that head (of record `head_seq`).
    pub head_hash: [u8; 32],
    /// The node that built the snapshot.
    pub built_by: NodeId,
    /// Its latest signed checkpoint (a C2SP signed note) when it built the
    /// snapshot; its size is at most `head_seq`.
    pub checkpoint: String,
    /// The verifier key the checkpoint is signed with.
    pub signed_by: String,
}

impl Header {
    /// The snapshot's id in openraft's metadata.
    pub fn id(&self) -> String {
        let (term, index) = self.last_log_id.map_or((0, 0), |l| (l.leader_id.term, l.index));
        format!("{term}-{index}-{}", self.head_seq)
    }

    /// openraft's metadata of the snapshot.
    pub fn meta(&self) -> openraft::SnapshotMeta<NodeId, Member> {
        openraft::SnapshotMeta {
            last_log_id: self.last_log_id,
            last_membership: self.membership.clone(),
            snapshot_id: self.id(),
        }
    }
}

/// One frame of a snapshot file.
#[derive(Debug, Serialize, Deserialize)]
enum Frame {
    Header(Header),
    /// A side-tree entry: the tree's index in [`REPLICATED_TREES`], key, value.
    Tree {
        tree: u8,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Consecutive records, each length-prefixed (u32 big-endian).
    Records(Vec<u8>),
    /// The end: how many tree entries and records came before.
    End {
        tree_entries: u64,
        records: u64,
    },
}

/// What a snapshot build needs while it reads the side trees without
/// holding the applier: every tree write records the entry's value before
/// its first change since the build began (`before_write`, called by
/// src/cluster/trees.rs before it writes), so the build emits the trees as
/// they were at its Raft entry while entries keep being applied.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Option<CaptureState>>>);

/// An entry's value before its first change during a build (`None`:
/// absent), whether the build had read past its key by then, and whether
/// the build emitted this value.
type BeforeImage = (Option<Vec<u8>>, bool, bool);

#[derive(Default)]
struct CaptureState {
    /// Per tree, the last key the build has read, and whether it finished the tree.
    cursor: Vec<Option<Vec<u8>>>,
    done: Vec<bool>,
    /// (tree, key) -> the value before the first change since the build
    /// began, whether the build had read past that key by then, and
    /// whether the build emitted this value.
    before: HashMap<(usize, Vec<u8>), BeforeImage>,
    /// Set when the trees were replaced wholesale (a snapshot installed):
    /// the build starts again.
    invalid: bool,
}

impl Capture {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<CaptureState>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `key`'s current value (read by `current`) if a build is
    /// reading the trees and this is the key's first change since it began.
    pub fn before_write<E>(
        &self,
        tree: usize,
        key: &[u8],
        current: impl FnOnce() -> Result<Option<Vec<u8>>, E>,
    ) -> Result<(), E> {
        let mut guard = self.lock();
        let Some(state) = guard.as_mut() else {
            return Ok(());
        };
        if state.before.contains_key(&(tree, key.to_vec())) {
            return Ok(());
        }
        let passed = state.done.get(tree).copied().unwrap_or(false)
            || state
                .cursor
                .get(tree)
                .and_then(|c| c.as_deref())
                .is_some_and(|c| key <= c);
        let value = current()?;
        state.before.insert((tree, key.to_vec()), (value, passed, false));
        Ok(())
    }

    /// The trees are being replaced (a snapshot install): a build in progress starts again.
    pub fn invalidate(&self) {
        if let Some(state) = self.lock().as_mut() {
            state.invalid = true;
        }
    }

    fn begin(&self) {
        *self.lock() = Some(CaptureState {
            cursor: vec![None; REPLICATED_TREES.len()],
            done: vec![false; REPLICATED_TREES.len()],
            ..CaptureState::default()
        });
    }

    fn end(&self) {
        *self.lock() = None;
    }

    /// The value to emit for `key` read as `live` from tree `tree` (its
    /// value at the build's entry), advancing the build's cursor.
    fn at_start(&self, tree: usize, key: &[u8], live: Vec<u8>) -> Option<Vec<u8>> {
        let mut guard = self.lock();
        let state = guard.as_mut().expect("a build is capturing");
        state.cursor[tree] = Some(key.to_vec());
        match state.before.get_mut(&(tree, key.to_vec())) {
            Some((value, _, emitted)) => {
                *emitted = true;
                value.clone()
            }
            None => Some(live),
        }
    }

    /// Finishes tree `tree`: the entries it held at the build's entry that
    /// were removed before the build read them.
    fn finish_tree(&self, tree: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut guard = self.lock();
        let state = guard.as_mut().expect("a build is capturing");
        state.done[tree] = true;
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = state
            .before
            .iter()
            .filter(|((t, _), (value, passed, emitted))| *t == tree && value.is_some() && !passed && !emitted)
            .map(|((_, k), (value, _, _))| (k.clone(), value.clone().expect("filtered")))
            .collect();
        out.sort();
        out
    }

    fn invalid(&self) -> bool {
        self.lock().as_ref().is_some_and(|s| s.invalid)
    }
}

/// Whether a side-tree entry belongs to this node alone and never travels
/// in a snapshot: the reserved `__` ids of the person-key tree (the
/// blind-index key, wrapped under this node's master key with its own nonce).
pub fn node_local(tree: usize, key: &[u8]) -> bool {
    REPLICATED_TREES.get(tree) == Some(&crate::pii::keystore::TREE_NAME) && key.starts_with(b"__")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn store_err(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Store(e.to_string())
}

/// A snapshot file being read or written (`io`), with the hash of every
/// byte through it so far.
struct Hashed<T> {
    io: T,
    hasher: blake3::Hasher,
    path: PathBuf,
}

impl<T> Hashed<T> {
    fn new(io: T, path: &Path) -> Hashed<T> {
        Hashed {
            io,
            hasher: blake3::Hasher::new(),
            path: path.to_path_buf(),
        }
    }
}

/// Writes frames, hashing every byte.
type FrameWriter = Hashed<BufWriter<std::fs::File>>;

impl FrameWriter {
    fn create(path: &Path) -> Result<FrameWriter, SnapshotError> {
        let file = std::fs::File::create(path).map_err(io(path))?;
        let mut w = FrameWriter::new(BufWriter::with_capacity(1 << 20, file), path);
        w.raw(MAGIC)?;
        w.raw(&VERSION.to_be_bytes())?;
        Ok(w)
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.hasher.update(bytes);
        self.io.write_all(bytes).map_err(io(&self.path))
    }

    fn frame(&mut self, frame: &Frame) -> Result<(), SnapshotError> {
        let bytes = encode(frame).map_err(|e| invalid(&self.path, e.to_string()))?;
        if bytes.len() > FRAME_MAX {
            return Err(invalid(&self.path, "a frame is larger than the frame limit"));
        }
        self.raw(&(bytes.len() as u32).to_be_bytes())?;
        self.raw(&bytes)
    }

    /// Writes the trailer, syncs and closes the file.
    fn finish(mut self) -> Result<(), SnapshotError> {
        let digest = self.hasher.finalize();
        self.io.write_all(digest.as_bytes()).map_err(io(&self.path))?;
        let file = self.io.into_inner().map_err(|e| io(&self.path)(e.into_error()))?;
        file.sync_all().map_err(io(&self.path))
    }
}

/// Reads frames, hashing every byte; checks the trailer at the end.
type FrameReader = Hashed<BufReader<std::fs::File>>;

impl FrameReader {
    fn open(path: &Path) -> Result<FrameReader, SnapshotError> {
        let file = std::fs::File::open(path).map_err(io(path))?;
        FrameReader::from_file(file, path)
    }

    fn from_file(file: std::fs::File, path: &Path) -> Result<FrameReader, SnapshotError> {
        let mut r = FrameReader::new(BufReader::with_capacity(1 << 20, file), path);
        let mut magic = [0u8; 12];
        r.exact(&mut magic)?;
        if &magic[..8] != MAGIC {
            return Err(invalid(path, "not a snapshot file (magic)"));
        }
        let version = u32::from_be_bytes(magic[8..].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(invalid(
                path,
                format!("format version {version}, this build reads {VERSION}"),
            ));
        }
        Ok(r)
    }

    /// Reads `buf` whole; an early end of file is `truncated` (what the error says).
    fn read_whole(&mut self, buf: &mut [u8], truncated: &str) -> Result<(), SnapshotError> {
        self.io.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                invalid(&self.path, truncated)
            } else {
                io(&self.path)(e)
            }
        })
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        self.read_whole(buf, "the file is truncated")?;
        self.hasher.update(buf);
        Ok(())
    }

    /// The first frame, which must be the header.
    fn header(&mut self) -> Result<Header, SnapshotError> {
        match self.frame()? {
            Frame::Header(h) => Ok(h),
            _ => Err(invalid(&self.path, "the first frame is not the header")),
        }
    }

    fn frame(&mut self) -> Result<Frame, SnapshotError> {
        let mut len = [0u8; 4];
        self.exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > FRAME_MAX {
            return Err(invalid(
                &self.path,
                format!("a frame of {len} bytes is over the limit"),
            ));
        }
        let mut buf = vec![0u8; len];
        self.exact(&mut buf)?;
        decode(&buf).map_err(|e| invalid(&self.path, format!("an undecodable frame: {e}")))
    }

    /// Reads the trailer and checks it is the BLAKE3 of everything before, and the end of the file.
    fn finish(mut self) -> Result<(), SnapshotError> {
        let expected = self.hasher.finalize();
        let mut trailer = [0u8; 32];
        self.read_whole(&mut trailer, "the file is truncated (no trailer)")?;
        if &trailer != expected.as_bytes() {
            return Err(invalid(
                &self.path,
                "the file's BLAKE3 does not match its trailer",
            ));
        }
        let mut rest = [0u8; 1];
        match self.io.read(&mut rest).map_err(io(&self.path))? {
            0 => Ok(()),
            _ => Err(invalid(&self.path, "bytes after the trailer")),
        }
    }
}

/// Reads a snapshot's header (the first frame) without verifying the rest.
pub fn read_header(path: &Path) -> Result<Header, SnapshotError> {
    header_of(FrameReader::open(path)?)
}

fn header_of(mut r: FrameReader) -> Result<Header, SnapshotError> {
    r.header()
}

/// Opens the node's current snapshot, if it has one: its header and the
/// file (positioned at its start), read from the same open file so a
/// snapshot published meanwhile cannot mix with it.
pub fn open_current(dir: &Path) -> Result<Option<(Header, std::fs::File)>, SnapshotError> {
    let path = dir.join(CURRENT_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let reader = file.try_clone().map_err(io(&path))?;
    let header = header_of(FrameReader::from_file(reader, &path)?)?;
    use std::io::Seek;
    let mut file = file;
    file.seek(std::io::SeekFrom::Start(0)).map_err(io(&path))?;
    Ok(Some((header, file)))
}

/// Makes the finished snapshot at `path` the node's current one (a rename
/// in the snapshot directory, synced), unless the current one is of a later
/// Raft entry already (then `path` is removed). Returns the current header.
pub fn publish(dir: &Path, path: &Path, header: &Header) -> Result<Header, SnapshotError> {
    static PUBLISH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = PUBLISH.lock().unwrap_or_else(|p| p.into_inner());
    let current = dir.join(CURRENT_FILE);
    if current.exists() {
        if let Ok(existing) = read_header(&current) {
            if existing.last_log_id >= header.last_log_id {
                let _ = std::fs::remove_file(path);
                return Ok(existing);
            }
        }
    }
    std::fs::rename(path, &current).map_err(io(&current))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(header.clone())
}

/// Removes what an interrupted build or transfer left in the snapshot directory.
pub fn clean(dir: &Path) -> Result<(), SnapshotError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".partial") {
            std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    Ok(())
}

/// A fresh file name in the snapshot directory (`<what>-<time>.partial`).
pub fn partial_path(dir: &Path, what: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!("{what}-{}-{n}.partial", crate::clock::now_us()))
}

/// Builds a snapshot of the node's state into `path` (synced). It holds
/// the applier only while it reads the position, head and checkpoint and
/// starts `capture`; it then reads the side trees while entries keep being
/// applied, taking each changed entry's value as it was at the snapshot's
/// entry from `capture`. The records up to the head never change. If the
/// trees were replaced meanwhile (a snapshot installed), it starts again.
/// `position` is the Raft position to record; `None` reads the store's
/// applied position (a cluster node).
pub fn build(
    applier: &std::sync::Mutex<Applier>,
    db: &sled::Db,
    checkpointer: &Checkpointer,
    built_by: NodeId,
    path: &Path,
    position: Option<(Option<LogId>, Membership)>,
    capture: &Capture,
) -> Result<Header, SnapshotError> {
    const ATTEMPTS: usize = 3;
    let source = Source {
        applier,
        db,
        checkpointer,
        built_by,
        capture,
    };
    for attempt in 1..=ATTEMPTS {
        let built = build_once(&source, path, position.clone());
        capture.end();
        match built {
            Err(SnapshotError::Store(reason)) if reason == TREES_REPLACED && attempt < ATTEMPTS => {
                tracing::info!("snapshot: the side trees were replaced during the build; building again");
            }
            other => return other,
        }
    }
    Err(SnapshotError::Store(TREES_REPLACED.into()))
}

const TREES_REPLACED: &str = "the side trees were replaced during the build";

/// What a build reads (see [`build`]).
struct Source<'a> {
    applier: &'a std::sync::Mutex<Applier>,
    db: &'a sled::Db,
    checkpointer: &'a Checkpointer,
    built_by: NodeId,
    capture: &'a Capture,
}

fn build_once(
    source: &Source<'_>,
    path: &Path,
    position: Option<(Option<LogId>, Membership)>,
) -> Result<Header, SnapshotError> {
    let Source {
        applier,
        db,
        checkpointer,
        built_by,
        capture,
    } = *source;
    let mut w = FrameWriter::create(path)?;
    let header;
    {
        let a = applier.lock().unwrap_or_else(|p| p.into_inner());
        let locked_at = std::time::Instant::now();
        if let Some(reason) = a.failed() {
            return Err(SnapshotError::Store(format!("this node has stopped: {reason}")));
        }
        let (last_log_id, membership) = match position {
            Some(p) => p,
            None => {
                let stored = a
                    .get_extra(super::state_machine::APPLIED_KEY)
                    .map_err(store_err)?
                    .ok_or_else(|| SnapshotError::Store("nothing applied yet".into()))?;
                decode::<(Option<LogId>, Membership)>(&stored).map_err(store_err)?
            }
        };
        let head = a.head();
        // The position the snapshot reflects is durable before the
        // snapshot exists, so no purge behind it can outrun it in a crash.
        a.sync().map_err(store_err)?;
        let signed = checkpointer.checkpoint_now().map_err(store_err)?;
        if signed.checkpoint.size > head.seq {
            return Err(SnapshotError::Store(format!(
                "the checkpoint (size {}) is past the head (seq {})",
                signed.checkpoint.size, head.seq
            )));
        }
        header = Header {
            last_log_id,
            membership,
            head_seq: head.seq,
            head_hash: head.hash,
            built_by,
            checkpoint: signed.note,
            signed_by: signed.signed_by,
        };
        // From here on every tree write records what it replaces.
        capture.begin();
        tracing::info!(
            paused_ms = locked_at.elapsed().as_millis() as u64,
            "snapshot: position and checkpoint read; applying resumes while the side trees are read"
        );
    }
    w.frame(&Frame::Header(header.clone()))?;
    let mut tree_entries = 0u64;
    for (i, name) in REPLICATED_TREES.iter().enumerate() {
        let tree = db.open_tree(name).map_err(store_err)?;
        for kv in tree.iter() {
            let (k, v) = kv.map_err(store_err)?;
            if node_local(i, &k) {
                continue;
            }
            if let Some(value) = capture.at_start(i, &k, v.to_vec()) {
                w.frame(&Frame::Tree {
                    tree: i as u8,
                    key: k.to_vec(),
                    value,
                })?;
                tree_entries += 1;
            }
        }
        for (key, value) in capture.finish_tree(i) {
            if node_local(i, &key) {
                continue;
            }
            w.frame(&Frame::Tree {
                tree: i as u8,
                key,
                value,
            })?;
            tree_entries += 1;
        }
    }
    if capture.invalid() {
        return Err(SnapshotError::Store(TREES_REPLACED.into()));
    }
    capture.end();
    let store = applier.lock().unwrap_or_else(|p| p.into_inner()).store().clone();
    let mut batch = Vec::new();
    let mut in_batch = 0usize;
    let mut records = 0u64;
    for kv in store.raw_range(1, header.head_seq) {
        let (seq, entry) = kv.map_err(store_err)?;
        let (record, _) =
            split_stored(&entry).map_err(|e| SnapshotError::Store(format!("record {seq}: {e}")))?;
        if seq != records + 1 {
            return Err(SnapshotError::Store(format!(
                "the store is missing record {}",
                records + 1
            )));
        }
        crate::log::push_record(&mut batch, record);
        in_batch += 1;
        records += 1;
        if in_batch >= RECORDS_PER_FRAME || batch.len() >= RECORD_BYTES_PER_FRAME {
            w.frame(&Frame::Records(std::mem::take(&mut batch)))?;
            in_batch = 0;
        }
    }
    if !batch.is_empty() {
        w.frame(&Frame::Records(batch))?;
    }
    if records != header.head_seq {
        return Err(SnapshotError::Store(format!(
            "the store holds {records} records, its head is at {}",
            header.head_seq
        )));
    }
    w.frame(&Frame::End {
        tree_entries,
        records,
    })?;
    w.finish()?;
    Ok(header)
}

/// What [`verify`] found.
#[derive(Debug)]
pub struct Verified {
    /// The snapshot's header frame.
    pub header: Header,
    /// The size of the checkpoint the records were checked against.
    pub checkpoint_size: u64,
    /// Records in the file (seq 1 to the header's `head_seq`).
    pub records: u64,
    /// Side-tree entries in the file (person keys, document index).
    pub tree_entries: u64,
}

fn split_records<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<&'a [u8]>, SnapshotError> {
    crate::log::split_records(bytes).map_err(|e| invalid(path, e))
}

/// Verifies a whole snapshot file (see the module doc). `pinned` is the
/// cluster file's `audit_vkey` per member: when it names the building
/// member, the checkpoint must be signed with that key.
pub fn verify(path: &Path, pinned: &BTreeMap<NodeId, String>) -> Result<Verified, SnapshotError> {
    let mut r = FrameReader::open(path)?;
    let header = r.header()?;
    if let Some(vkey) = pinned.get(&header.built_by) {
        if vkey.trim() != header.signed_by.trim() {
            return Err(invalid(
                path,
                format!(
                    "its checkpoint is signed with {}, the cluster file pins {vkey} for node {}",
                    header.signed_by, header.built_by
                ),
            ));
        }
    }
    let verifier = Verifier::parse(&header.signed_by)
        .map_err(|e| invalid(path, format!("the checkpoint's verifier key: {e}")))?;
    let checkpoint = verifier
        .verify_checkpoint(&header.checkpoint)
        .map_err(|e| invalid(path, format!("the checkpoint does not verify: {e}")))?;
    if checkpoint.size > header.head_seq {
        return Err(invalid(path, "the checkpoint is past the snapshot's head"));
    }
    let mut frontier = Frontier::new();
    let mut head = Head {
        seq: 0,
        hash: GENESIS_PREV_HASH,
    };
    let mut tree_entries = 0u64;
    let mut root_checked = checkpoint.size == 0;
    if checkpoint.size == 0 && checkpoint.root != frontier.root() {
        return Err(invalid(
            path,
            "the empty checkpoint's root is not the empty tree's",
        ));
    }
    let end = loop {
        match r.frame()? {
            Frame::Header(_) => return Err(invalid(path, "a second header")),
            Frame::Tree { tree, key, .. } => {
                if head.seq > 0
                    || usize::from(tree) >= REPLICATED_TREES.len()
                    || node_local(usize::from(tree), &key)
                {
                    return Err(invalid(
                        path,
                        "a tree entry out of place, of an unknown tree, or of a node-local key",
                    ));
                }
                tree_entries += 1;
            }
            Frame::Records(bytes) => {
                for record in split_records(path, &bytes)? {
                    let (seq, prev) = peek_chain_fields(record)
                        .map_err(|e| invalid(path, format!("record {}: {e}", head.seq + 1)))?;
                    if seq != head.seq + 1 {
                        return Err(invalid(
                            path,
                            format!("record seq {seq} follows seq {}", head.seq),
                        ));
                    }
                    if prev != head.hash {
                        return Err(invalid(
                            path,
                            format!("record {seq} does not link to record {}", head.seq),
                        ));
                    }
                    head = Head {
                        seq,
                        hash: chain_hash(&head.hash, record),
                    };
                    if seq <= checkpoint.size {
                        frontier.push(leaf_hash(record));
                        if seq == checkpoint.size {
                            if frontier.root() != checkpoint.root {
                                return Err(invalid(
                                    path,
                                    format!("the records' Merkle root at size {seq} is not the checkpoint's"),
                                ));
                            }
                            root_checked = true;
                        }
                    }
                }
            }
            Frame::End {
                tree_entries: t,
                records,
            } => break (t, records),
        }
    };
    if end != (tree_entries, head.seq) {
        return Err(invalid(path, "the end frame's counts do not match the content"));
    }
    if !root_checked {
        return Err(invalid(path, "the records end before the checkpoint's size"));
    }
    if head.seq != header.head_seq || head.hash != header.head_hash {
        return Err(invalid(
            path,
            format!(
                "the records end at seq {} with another hash than the header's head (seq {})",
                head.seq, header.head_seq
            ),
        ));
    }
    r.finish()?;
    Ok(Verified {
        header,
        checkpoint_size: checkpoint.size,
        records: head.seq,
        tree_entries,
    })
}

/// Installs a verified snapshot into this node's store: appends the
/// records after this node's head through the applier's chain check (the
/// record at this node's head must be this node's), replaces the side
/// trees, and writes the Raft position last (`position`: the key and value
/// of the applied position). A crash part-way leaves records beyond the
/// applied position, which the next install (or the entries that follow)
/// skips as already present.
pub fn install(
    path: &Path,
    applier: &std::sync::Mutex<Applier>,
    db: &sled::Db,
    position: (&[u8], Vec<u8>),
) -> Result<Header, SnapshotError> {
    let mut r = FrameReader::open(path)?;
    let header = r.header()?;
    let mut a = applier.lock().unwrap_or_else(|p| p.into_inner());
    let ours = a.head();
    if ours.seq > header.head_seq {
        return Err(SnapshotError::Diverged(format!(
            "this node holds {} records, the snapshot {}",
            ours.seq, header.head_seq
        )));
    }
    // The side trees are replaced as their entries are read (the position,
    // written last, is what makes the install count); node-local entries stay.
    let trees: Vec<sled::Tree> = REPLICATED_TREES
        .iter()
        .map(|name| db.open_tree(name))
        .collect::<Result<_, _>>()
        .map_err(store_err)?;
    for (i, tree) in trees.iter().enumerate() {
        for key in tree.iter().keys() {
            let key = key.map_err(store_err)?;
            if !node_local(i, &key) {
                tree.remove(key).map_err(store_err)?;
            }
        }
    }
    let mut head = Head {
        seq: 0,
        hash: GENESIS_PREV_HASH,
    };
    loop {
        match r.frame()? {
            Frame::Header(_) => return Err(invalid(path, "a second header")),
            Frame::Tree { tree, key, value } => {
                if node_local(usize::from(tree), &key) {
                    return Err(invalid(path, "a node-local key in the snapshot"));
                }
                trees
                    .get(usize::from(tree))
                    .ok_or_else(|| invalid(path, "a tree entry of an unknown tree"))?
                    .insert(key, value)
                    .map_err(store_err)?;
            }
            Frame::Records(bytes) => {
                let mut pending = Vec::new();
                let mut pending_head = head;
                for record in split_records(path, &bytes)? {
                    let (seq, _) = peek_chain_fields(record).map_err(|e| invalid(path, e.to_string()))?;
                    let hash = chain_hash(&head.hash, record);
                    head = Head { seq, hash };
                    if seq < ours.seq {
                        continue;
                    }
                    if seq == ours.seq {
                        if hash != ours.hash {
                            return Err(SnapshotError::Diverged(format!(
                                "this node's record {seq} differs from the snapshot's"
                            )));
                        }
                        continue;
                    }
                    crate::log::push_record(&mut pending, record);
                    pending_head = head;
                }
                if !pending.is_empty() {
                    a.apply_records(&pending, pending_head, &[], false)
                        .map_err(|e| match e {
                            crate::log::ApplyError::Diverged(m) => SnapshotError::Diverged(m),
                            other => store_err(other),
                        })?;
                }
            }
            Frame::End { .. } => break,
        }
    }
    if head.seq != header.head_seq || head.hash != header.head_hash {
        return Err(invalid(path, "the records do not end at the header's head"));
    }
    r.finish()?;
    a.put_extra(&[(position.0, position.1)]).map_err(store_err)?;
    a.sync().map_err(store_err)?;
    Ok(header)
}

/// The snapshot directory of a store.
pub fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads tree 0 the way `build_once` does, while `change` runs after
    /// the `after`-th entry read, and returns what the build emits.
    fn read_with_changes(
        tree: &sled::Tree,
        capture: &Capture,
        after: usize,
        change: impl FnOnce(),
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        let mut change = Some(change);
        for (n, kv) in tree.iter().enumerate() {
            if n == after {
                (change.take().unwrap())();
            }
            let (k, v) = kv.unwrap();
            if let Some(value) = capture.at_start(0, &k, v.to_vec()) {
                out.push((k.to_vec(), value));
            }
        }
        out.extend(capture.finish_tree(0));
        out.sort();
        out
    }

    #[test]
    fn the_trees_are_read_as_they_were_when_the_build_began() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        for k in ["a", "b", "c", "e"] {
            tree.insert(k, k.to_uppercase().as_bytes()).unwrap();
        }
        let at_start: Vec<(Vec<u8>, Vec<u8>)> = tree
            .iter()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        let capture = Capture::default();
        capture.begin();
        // Tree writes as trees::apply makes them: the before-image first.
        let write = |key: &str, value: Option<&str>| {
            capture
                .before_write(0, key.as_bytes(), || tree.get(key).map(|v| v.map(|v| v.to_vec())))
                .unwrap();
            match value {
                Some(v) => tree.insert(key, v.as_bytes()).map(|_| ()).unwrap(),
                None => tree.remove(key).map(|_| ()).unwrap(),
            }
        };
        let emitted = read_with_changes(&tree, &capture, 1, || {
            write("a", Some("a2")); // already read
            write("b", Some("b2")); // not read yet: changed
            write("c", None); // not read yet: removed
            write("d", Some("d1")); // not there at the start: inserted
            write("e", Some("e2"));
            write("e", None); // changed, then removed
        });
        capture.end();
        assert_eq!(emitted, at_start);
        // And the live tree moved on.
        assert_eq!(tree.get("b").unwrap().unwrap().as_ref(), b"b2");
        assert!(tree.get("c").unwrap().is_none() && tree.get("d").unwrap().is_some());
    }

    #[test]
    fn an_install_during_a_build_makes_it_start_again() {
        let capture = Capture::default();
        capture.begin();
        assert!(!capture.invalid());
        capture.invalidate();
        assert!(capture.invalid());
        capture.end();
        // Without a build, nothing is recorded.
        capture.invalidate();
        assert!(!capture.invalid());
        capture
            .before_write(0, b"k", || -> Result<_, ()> {
                panic!("no build: nothing is read")
            })
            .unwrap();
    }

    #[test]
    fn records_split_and_refuse_truncation() {
        let mut b = Vec::new();
        crate::log::push_record(&mut b, b"abc");
        crate::log::push_record(&mut b, b"");
        let p = Path::new("x");
        assert_eq!(split_records(p, &b).unwrap(), vec![&b"abc"[..], &b""[..]]);
        assert!(split_records(p, &b[..5]).is_err());
    }
}
