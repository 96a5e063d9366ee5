//! Building a store's log from records that were chained elsewhere: a v1
//! store being migrated (`registry migrate-store`) or a backup being
//! restored (`registry restore`). The records are written byte for byte
//! into chunks (so every record hash, Merkle leaf, signed checkpoint and
//! receipt stays valid), every link of the chain and every stream version
//! is checked on the way, and case files are built from the records: a
//! broken log is never carried over.

use std::collections::HashMap;

use super::casefile::{case_file_key, CaseFile, CASES_AT_KEY};
use super::chunk::ChunkBuilder;
use super::record::{chain_hash, peek_chain_fields, Hash, Record};
use super::store::{chunk_key, Head, StoreError, HEAD_KEY, META_CLOSED, META_OPENED_AT, META_VERIFIED};
use super::verify::{Broken, VerifyError};

/// Chunks written per sled batch.
const CHUNKS_PER_BATCH: usize = 64;
/// Case files written per sled batch (in key order).
const CASE_FILES_PER_BATCH: usize = 10_000;

/// Appends checked records to an empty `log` tree.
pub(crate) struct LogLoader {
    log: sled::Tree,
    head: Head,
    files: HashMap<String, CaseFile>,
    builder: ChunkBuilder,
    pending: usize,
    chunks: u64,
}

/// What a load wrote.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loaded {
    /// The head after the load.
    pub head: Head,
    /// Chunks written.
    pub chunks: u64,
    /// Case files written.
    pub case_files: u64,
}

impl LogLoader {
    pub(crate) fn new(log: sled::Tree) -> LogLoader {
        LogLoader {
            log,
            head: Head::EMPTY,
            files: HashMap::new(),
            builder: ChunkBuilder::default(),
            pending: 0,
            chunks: 0,
        }
    }

    /// The last record pushed.
    pub(crate) fn head(&self) -> Head {
        self.head
    }

    /// Appends the record `seq` (the next one) whose stored chain hash is
    /// `hash`, after checking its seq, its link, its hash, its encoding and
    /// its stream version.
    pub(crate) fn push(&mut self, seq: u64, record: &[u8], hash: &Hash) -> Result<(), VerifyError> {
        let broken = |reason: String| VerifyError::Broken(Broken::at(seq, reason));
        if seq != self.head.seq + 1 {
            return Err(broken(format!(
                "record missing (expected seq {}, got {seq})",
                self.head.seq + 1
            )));
        }
        let (seq_field, prev) = peek_chain_fields(record).map_err(|e| broken(e.to_string()))?;
        if seq_field != seq {
            return Err(broken(format!("the record says seq {seq_field}")));
        }
        if prev != self.head.hash {
            return Err(broken(
                "previous-hash link mismatch (this record or the one before was altered)".into(),
            ));
        }
        if chain_hash(&self.head.hash, record) != *hash {
            return Err(broken(
                "chain hash mismatch: the record bytes were altered".into(),
            ));
        }
        let r = Record::decode(record).map_err(|e| broken(e.to_string()))?;
        let cf = self.files.entry(r.stream_id.clone()).or_default();
        if r.stream_version != cf.version() + 1 {
            return Err(broken(format!(
                "stream version {} where {} was expected",
                r.stream_version,
                cf.version() + 1
            )));
        }
        cf.push(seq, r.part, &r.request_id);
        self.builder.push(seq, record, hash);
        self.head = Head { seq, hash: *hash };
        self.pending += 1;
        if self.pending == CHUNKS_PER_BATCH * crate::limits::CHUNK_EVENTS_MAX {
            self.flush_chunks()?;
        }
        Ok(())
    }

    fn flush_chunks(&mut self) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (first, value) in std::mem::take(&mut self.builder).finish() {
            batch.insert(&chunk_key(first)[..], value);
            self.chunks += 1;
        }
        self.log.apply_batch(batch)?;
        self.pending = 0;
        Ok(())
    }

    /// Writes the last chunks, every case file (in key order) and the head.
    /// Does not flush.
    pub(crate) fn finish(mut self) -> Result<Loaded, StoreError> {
        if !self.builder.is_empty() {
            self.flush_chunks()?;
        }
        let mut files: Vec<(String, CaseFile)> = std::mem::take(&mut self.files).into_iter().collect();
        files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let case_files = files.len() as u64;
        for part in files.chunks(CASE_FILES_PER_BATCH) {
            let mut batch = sled::Batch::default();
            for (id, cf) in part {
                batch.insert(case_file_key(id), cf.encode());
            }
            self.log.apply_batch(batch)?;
        }
        let head = self.head.to_bytes();
        self.log.insert(CASES_AT_KEY, &head[..])?;
        self.log.insert(HEAD_KEY, &head[..])?;
        Ok(Loaded {
            head: self.head,
            chunks: self.chunks,
            case_files,
        })
    }
}

/// Records a loaded store as verified up to `head` and cleanly closed (every
/// link was checked on the way in: the first start has nothing to check).
/// The caller writes this last, once everything else of the store is in.
pub(crate) fn mark_verified(meta: &sled::Tree, head: Head) -> Result<(), StoreError> {
    let head = head.to_bytes();
    for key in [META_VERIFIED, META_OPENED_AT] {
        meta.insert(key, &head[..])?;
    }
    meta.insert(META_CLOSED, &[][..])?;
    Ok(())
}
