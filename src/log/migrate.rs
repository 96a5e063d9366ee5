//! `registry migrate-store`: converts a stopped v1 store into store format v2.
//!
//! The records are copied byte for byte (so every record hash, Merkle leaf,
//! signed checkpoint and receipt stays valid) into chunks of at most
//! [`CHUNK_EVENTS_MAX`](crate::limits::CHUNK_EVENTS_MAX) records; every link of the chain is re-checked on the
//! way, so a broken v1 log is never carried over. Case files are built from
//! the records. Every other tree (Merkle tiles, checkpoints, statistics,
//! person keys, document reservations) is copied key by key, and the data
//! directory's other files (access file, keys, tokens) alongside. The new
//! store is then recorded as verified up to its head.

use std::path::Path;
use std::time::{Duration, Instant};

use super::load::LogLoader;
use super::record::split_stored;
use super::store::{sled_config, Head, Store, StoreError, TREE_LOG, TREE_META};
use super::v1::{self, TREE_EVENTS, TREE_REQUESTS, TREE_STREAMS};
use super::verify::{Broken, VerifyError};

/// What a migration did.
#[derive(Debug, Clone, Copy)]
pub struct MigrateReport {
    /// The head of the log (the same in both stores).
    pub head: Head,
    /// Chunks written.
    pub chunks: u64,
    /// Case files written.
    pub case_files: u64,
    /// Other trees copied, and their entries.
    pub trees: usize,
    /// Entries of those trees.
    pub tree_entries: u64,
    /// Other files of the data directory copied.
    pub files: usize,
    /// Time the migration took.
    pub elapsed: Duration,
}

/// Why a migration failed. Nothing is written to the source.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Reading the source or writing the new store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The v1 log is broken (a record missing, undecodable, or not linked
    /// to the one before, or a head that does not match): the migration stops.
    #[error("the v1 log is broken, nothing was converted: {0}")]
    Broken(Broken),
    /// The directories do not allow a migration (no source store, the
    /// source is not v1, the destination not empty); the reason.
    #[error("{0}")]
    Refused(String),
}

impl From<sled::Error> for MigrateError {
    fn from(e: sled::Error) -> Self {
        MigrateError::Store(StoreError::Sled(e))
    }
}

impl From<VerifyError> for MigrateError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Broken(b) => MigrateError::Broken(b),
            VerifyError::Store(e) => MigrateError::Store(e),
        }
    }
}

/// Records converted between progress reports.
const PROGRESS_EVERY: u64 = 16_384;

/// Converts the stopped v1 store in `from` into a new v2 store in `to`
/// (which must not exist or be empty). `progress` is called with the
/// number of records converted so far.
pub fn migrate_store(
    from: &Path,
    to: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<MigrateReport, MigrateError> {
    let started = Instant::now();
    if !from.join("db").exists() {
        return Err(MigrateError::Refused(format!("no store in {}", from.display())));
    }
    if to.exists() && std::fs::read_dir(to).map_err(StoreError::Io)?.next().is_some() {
        return Err(MigrateError::Refused(format!(
            "{} exists and is not empty",
            to.display()
        )));
    }
    let source = sled_config(from).open()?;
    if !v1::is_v1(&source)? {
        return Err(MigrateError::Refused(format!(
            "the store in {} is not a v1 store (nothing to migrate)",
            from.display()
        )));
    }
    let src_meta = source.open_tree("meta")?;
    let meta_head = match src_meta.get(v1::META_HEAD_V1)? {
        Some(v) => Head::from_bytes(&v)?,
        None => Head::EMPTY,
    };
    std::fs::create_dir_all(to).map_err(StoreError::Io)?;
    // Creates the v2 store (format marker) and closes it again.
    drop(Store::open(to)?);
    let target = super::store::open_db(to)?;
    let log = target.open_tree(TREE_LOG)?;
    let meta = target.open_tree(TREE_META)?;
    let loader = convert_log(
        &source.open_tree(TREE_EVENTS)?,
        LogLoader::new(log.clone()),
        progress,
    )?;
    let head = loader.head();
    if head != meta_head {
        return Err(MigrateError::Broken(Broken::at(
            meta_head.seq.min(head.seq) + 1,
            format!(
                "v1 log ends at seq {} but its head metadata says {}",
                head.seq, meta_head.seq
            ),
        )));
    }
    let loaded = loader.finish()?;
    let (chunks, case_files) = (loaded.chunks, loaded.case_files);

    let mut trees = 0;
    let mut tree_entries = 0;
    for name in source.tree_names() {
        let skip = [TREE_EVENTS, TREE_STREAMS, TREE_REQUESTS, TREE_META, TREE_LOG];
        if name.as_ref() == b"__sled__default" || skip.iter().any(|s| s.as_bytes() == name.as_ref()) {
            continue;
        }
        let (src, dst) = (source.open_tree(&name)?, target.open_tree(&name)?);
        let mut batch = sled::Batch::default();
        for kv in src.iter() {
            let (k, v) = kv?;
            batch.insert(k, v);
            tree_entries += 1;
            if tree_entries % 10_000 == 0 {
                dst.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        dst.apply_batch(batch)?;
        trees += 1;
    }
    super::load::mark_verified(&meta, head)?;
    target.flush()?;
    // Every handle of both databases goes, so that sled releases their locks.
    drop((meta, log, target, src_meta, source));
    let mut copied = 0;
    for entry in std::fs::read_dir(from).map_err(StoreError::Io)? {
        let entry = entry.map_err(StoreError::Io)?;
        let name = entry.file_name();
        let sled_own = matches!(name.to_str(), Some("db" | "conf" | "blobs"))
            || name.to_string_lossy().starts_with("snap.");
        if entry.file_type().map_err(StoreError::Io)?.is_file() && !sled_own {
            std::fs::copy(entry.path(), to.join(&name)).map_err(StoreError::Io)?;
            copied += 1;
        }
    }
    // sled replays everything written since its last open at the next open:
    // paid here, not by the service's first start.
    drop(Store::open(to)?);
    Ok(MigrateReport {
        head,
        chunks,
        case_files,
        trees,
        tree_entries,
        files: copied,
        elapsed: started.elapsed(),
    })
}

/// Pushes the v1 `events` tree, in key order, into `loader` (which checks
/// every link); returns it, ready to finish.
fn convert_log(
    events: &sled::Tree,
    mut loader: LogLoader,
    progress: &mut dyn FnMut(u64),
) -> Result<LogLoader, MigrateError> {
    for kv in events.iter() {
        let (k, v) = kv?;
        let seq = loader.head().seq + 1;
        let key = u64::from_be_bytes(
            k.as_ref()
                .try_into()
                .map_err(|_| StoreError::CorruptMeta("v1 event key"))?,
        );
        if key != seq {
            return Err(MigrateError::Broken(Broken::at(
                seq,
                format!("record missing (next record is seq {key})"),
            )));
        }
        let (record, hash) =
            split_stored(&v).map_err(|e| MigrateError::Broken(Broken::at(seq, e.to_string())))?;
        loader.push(seq, record, &hash)?;
        if seq % PROGRESS_EVERY == 0 {
            progress(seq);
        }
    }
    progress(loader.head().seq);
    Ok(loader)
}
