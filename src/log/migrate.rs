//! `registry migrate-store`: converts a stopped v1 store into store format v2.
//!
//! The records are copied byte for byte (so every record hash, Merkle leaf,
//! signed checkpoint and receipt stays valid) into chunks of at most
//! [`CHUNK_EVENTS_MAX`] records; every link of the chain is re-checked on the
//! way, so a broken v1 log is never carried over. Case files are built from
//! the records. Every other tree (Merkle tiles, checkpoints, statistics,
//! person keys, document reservations) is copied key by key, and the data
//! directory's other files (access file, keys, tokens) alongside. The new
//! store is then recorded as verified up to its head.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::casefile::{case_file_key, CaseFile, CASES_AT_KEY};
use super::chunk::ChunkBuilder;
use super::record::{peek_chain_fields, split_stored, Record};
use super::store::{chunk_key, sled_config, Head, Store, StoreError, HEAD_KEY, TREE_LOG, TREE_META};
use super::v1::{self, TREE_EVENTS, TREE_REQUESTS, TREE_STREAMS};
use super::verify::Broken;

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
    pub tree_entries: u64,
    /// Other files of the data directory copied.
    pub files: usize,
    pub elapsed: Duration,
}

/// Why a migration failed. Nothing is written to the source.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the v1 log is broken, nothing was converted: {0}")]
    Broken(Broken),
    #[error("{0}")]
    Refused(String),
}

impl From<sled::Error> for MigrateError {
    fn from(e: sled::Error) -> Self {
        MigrateError::Store(StoreError::Sled(e))
    }
}

/// Chunks written per sled batch during a migration.
const CHUNKS_PER_BATCH: usize = 64;
/// Case files written per sled batch (in key order).
const CASE_FILES_PER_BATCH: usize = 10_000;

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

    let (head, chunks, files) = convert_log(&source.open_tree(TREE_EVENTS)?, &log, progress)?;
    if head != meta_head {
        return Err(MigrateError::Broken(Broken::at(
            meta_head.seq.min(head.seq) + 1,
            format!(
                "v1 log ends at seq {} but its head metadata says {}",
                head.seq, meta_head.seq
            ),
        )));
    }
    let case_files = write_case_files(&log, files, head)?;
    log.insert(HEAD_KEY, &head.to_bytes()[..])?;

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
    // Verified while converting: the first start has nothing to check.
    let meta = target.open_tree(TREE_META)?;
    for key in [super::store::META_VERIFIED, super::store::META_OPENED_AT] {
        meta.insert(key, &head.to_bytes()[..])?;
    }
    meta.insert(super::store::META_CLOSED, &[][..])?;
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

/// Copies the v1 `events` tree into chunks, checking every link; returns
/// the head, the number of chunks and every stream's case file.
fn convert_log(
    events: &sled::Tree,
    log: &sled::Tree,
    progress: &mut dyn FnMut(u64),
) -> Result<(Head, u64, HashMap<String, CaseFile>), MigrateError> {
    let mut head = Head::EMPTY;
    let mut files: HashMap<String, CaseFile> = HashMap::new();
    let mut builder = ChunkBuilder::default();
    let mut pending = 0usize;
    let mut chunks = 0u64;
    let flush = |builder: ChunkBuilder, chunks: &mut u64| -> Result<(), MigrateError> {
        let mut batch = sled::Batch::default();
        for (first, value) in builder.finish() {
            batch.insert(&chunk_key(first)[..], value);
            *chunks += 1;
        }
        log.apply_batch(batch)?;
        Ok(())
    };
    for kv in events.iter() {
        let (k, v) = kv?;
        let seq = head.seq + 1;
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
        let broken = |reason: String| MigrateError::Broken(Broken::at(seq, reason));
        let (record, hash) = split_stored(&v).map_err(|e| broken(e.to_string()))?;
        let (seq_field, prev) = peek_chain_fields(record).map_err(|e| broken(e.to_string()))?;
        if seq_field != seq || prev != head.hash || super::record::chain_hash(&head.hash, record) != hash {
            return Err(broken("the chain does not verify here".into()));
        }
        let r = Record::decode(record).map_err(|e| broken(e.to_string()))?;
        let cf = files.entry(r.stream_id.clone()).or_default();
        if r.stream_version != cf.version() + 1 {
            return Err(broken(format!(
                "stream version {} where {} was expected",
                r.stream_version,
                cf.version() + 1
            )));
        }
        cf.push(seq, r.part, &r.request_id);
        builder.push(seq, record, &hash);
        head = Head { seq, hash };
        pending += 1;
        if pending == CHUNKS_PER_BATCH * crate::limits::CHUNK_EVENTS_MAX {
            flush(std::mem::take(&mut builder), &mut chunks)?;
            pending = 0;
            progress(seq);
        }
    }
    if !builder.is_empty() {
        flush(builder, &mut chunks)?;
    }
    progress(head.seq);
    Ok((head, chunks, files))
}

/// Writes every case file in key order, with the position they cover.
fn write_case_files(
    log: &sled::Tree,
    files: HashMap<String, CaseFile>,
    head: Head,
) -> Result<u64, MigrateError> {
    let mut files: Vec<(String, CaseFile)> = files.into_iter().collect();
    files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let count = files.len() as u64;
    for part in files.chunks(CASE_FILES_PER_BATCH) {
        let mut batch = sled::Batch::default();
        for (id, cf) in part {
            batch.insert(case_file_key(id), cf.encode());
        }
        log.apply_batch(batch)?;
    }
    log.insert(CASES_AT_KEY, &head.to_bytes()[..])?;
    Ok(count)
}
