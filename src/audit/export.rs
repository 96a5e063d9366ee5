//! Binary exports of the log and their offline verification.
//!
//! Format (all integers big-endian), specified in docs/AUDIT.md:
//! ```text
//! header, 32 bytes:
//!   magic      8   "MIGREGEX"
//!   version    4   u32 = 1
//!   first_seq  8   u64, seq of the first record (>= 1)
//!   count      8   u64, number of records that follow
//!   reserved   4   u32 = 0
//! then `count` times:
//!   seq        8   u64 (first_seq, first_seq + 1, ...)
//!   length     4   u32, L = length of the record bytes
//!   record     L   the record bytes exactly as stored (docs/LOG_FORMAT.md), prev_hash included
//!   hash      32   the record's chain hash as stored
//! end of file right after the last record.
//! ```

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::checkpoint::Checkpoint;
use super::merkle::{leaf_hash, Frontier, Hash};
use crate::limits::AUDIT_EXPORT_RECORD_BYTES_MAX;
use crate::log::record::{chain_hash, peek_chain_fields, split_stored, GENESIS_PREV_HASH, HASH_LEN};
use crate::log::Store;

/// The first 8 bytes of every export file.
pub const EXPORT_MAGIC: &[u8; 8] = b"MIGREGEX";
/// The format version this code writes and reads (header bytes 8..12).
pub const EXPORT_VERSION: u32 = 1;
/// Bytes of the header: magic, version, first seq, count, 4 reserved zeros.
pub const EXPORT_HEADER_LEN: usize = 32;

/// Why an export could not be written or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the export, or creating, writing, syncing or renaming the
    /// export file, failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The store's head could not be read.
    #[error("store: {0}")]
    Store(#[from] crate::log::StoreError),
    /// Reading a record from the store failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// The file is not an export this code reads: short or bad header
    /// (magic, version, first seq 0, reserved bytes), or trailing bytes.
    #[error("not an export: {0}")]
    Format(String),
    /// A record is missing, out of order, cut short, too long or altered
    /// (framing, seq, time order, previous-hash link or chain hash).
    #[error("export broken at seq {seq} (record {position} of the file): {reason}")]
    Broken {
        /// The seq the broken entry should have.
        seq: u64,
        /// Its position in the file, 1-based.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// The records asked for cannot be exported (an empty range, or a
    /// first seq of 0); the text says why.
    #[error("{0}")]
    Range(String),
    /// The export's Merkle root differs from the given checkpoint's or from
    /// a key hand-over's tree head, or the export stops short of the
    /// checkpoint's size.
    #[error("checkpoint mismatch: {0}")]
    Checkpoint(String),
}

/// What `write_export` wrote.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    /// The seq of the first record.
    pub first_seq: u64,
    /// Records written.
    pub count: u64,
    /// Bytes of the export file.
    pub bytes: u64,
}

/// Writes records `from..=to` (to defaults to the head) of a stopped or
/// running store to `out`, exactly as stored.
pub fn write_export(
    store: &Store,
    from: u64,
    to: Option<u64>,
    out: &Path,
) -> Result<ExportSummary, ExportError> {
    let head = store.head()?.seq;
    let from = from.max(1);
    let to = to.unwrap_or(head).min(head);
    if from > to {
        return Err(ExportError::Range(format!(
            "nothing to export: from {from} to {to} (log head is {head})"
        )));
    }
    let mut w = ExportWriter::create(out, from, to - from + 1)?;
    for kv in store.raw_range(from, to) {
        let (seq, v) = kv?;
        let (record, hash) = split_stored(&v).map_err(|e| ExportError::Broken {
            seq,
            position: seq.saturating_sub(from),
            reason: e.to_string(),
        })?;
        w.push(seq, record, &hash)?;
    }
    w.finish()
}

/// Writes an export file: the header, then entries pushed in seq order;
/// the file appears under its name only when [`finish`](Self::finish)
/// found every announced record and synced it (until then it is
/// `<name>.partial`).
pub struct ExportWriter {
    w: BufWriter<std::fs::File>,
    tmp: std::path::PathBuf,
    out: std::path::PathBuf,
    first_seq: u64,
    count: u64,
    written: u64,
    bytes: u64,
}

impl ExportWriter {
    /// Starts an export of `count` records from `first_seq` (>= 1).
    pub fn create(out: &Path, first_seq: u64, count: u64) -> Result<ExportWriter, ExportError> {
        if first_seq == 0 {
            return Err(ExportError::Range("an export starts at seq 1 or later".into()));
        }
        let tmp = out.with_extension("partial");
        let file = std::fs::File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; EXPORT_HEADER_LEN];
        header[..8].copy_from_slice(EXPORT_MAGIC);
        header[8..12].copy_from_slice(&EXPORT_VERSION.to_be_bytes());
        header[12..20].copy_from_slice(&first_seq.to_be_bytes());
        header[20..28].copy_from_slice(&count.to_be_bytes());
        w.write_all(&header)?;
        Ok(ExportWriter {
            w,
            tmp,
            out: out.to_path_buf(),
            first_seq,
            count,
            written: 0,
            bytes: EXPORT_HEADER_LEN as u64,
        })
    }

    /// Appends the next record; `seq` must be the next one announced.
    pub fn push(&mut self, seq: u64, record: &[u8], hash: &Hash) -> Result<(), ExportError> {
        let expected = self.first_seq + self.written;
        if self.written == self.count {
            return Err(ExportError::Broken {
                seq,
                position: self.written + 1,
                reason: format!("more records than the {} announced", self.count),
            });
        }
        if seq != expected {
            return Err(ExportError::Broken {
                seq: expected,
                position: self.written + 1,
                reason: format!("record missing in the log (next record is seq {seq})"),
            });
        }
        self.w.write_all(&seq.to_be_bytes())?;
        self.w.write_all(&(record.len() as u32).to_be_bytes())?;
        self.w.write_all(record)?;
        self.w.write_all(hash)?;
        self.bytes += 8 + 4 + record.len() as u64 + HASH_LEN as u64;
        self.written += 1;
        Ok(())
    }

    /// Checks that every announced record was written, syncs, and renames
    /// the file into place.
    pub fn finish(self) -> Result<ExportSummary, ExportError> {
        if self.written != self.count {
            return Err(ExportError::Broken {
                seq: self.first_seq + self.written,
                position: self.written + 1,
                reason: "record missing in the log".into(),
            });
        }
        let file = self.w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.out)?;
        Ok(ExportSummary {
            first_seq: self.first_seq,
            count: self.count,
            bytes: self.bytes,
        })
    }
}

/// One entry of an export: `(seq, record bytes, stored chain hash)`.
pub type ExportEntry<'a> = (u64, &'a [u8], Hash);

/// Reads an export entry by entry, checking its framing (header, seq
/// fields, lengths, no trailing bytes) but not the chain: that is the
/// caller's (see [`verify_export`]).
pub struct ExportReader<R: Read> {
    r: BufReader<R>,
    first_seq: u64,
    count: u64,
    read: u64,
    buf: Vec<u8>,
}

impl<R: Read> ExportReader<R> {
    /// Reads and checks the header.
    pub fn new(r: R) -> Result<ExportReader<R>, ExportError> {
        let mut r = BufReader::with_capacity(1 << 20, r);
        let mut header = [0u8; EXPORT_HEADER_LEN];
        r.read_exact(&mut header)
            .map_err(|_| ExportError::Format("shorter than the 32-byte header".into()))?;
        if &header[..8] != EXPORT_MAGIC {
            return Err(ExportError::Format("bad magic (expected MIGREGEX)".into()));
        }
        let version = u32::from_be_bytes(header[8..12].try_into().expect("4"));
        if version != EXPORT_VERSION {
            return Err(ExportError::Format(format!("unknown export version {version}")));
        }
        let first_seq = u64::from_be_bytes(header[12..20].try_into().expect("8"));
        let count = u64::from_be_bytes(header[20..28].try_into().expect("8"));
        if first_seq == 0 {
            return Err(ExportError::Format("first seq is 0 (the log starts at 1)".into()));
        }
        if header[28..32] != [0; 4] {
            return Err(ExportError::Format("reserved header bytes are not zero".into()));
        }
        Ok(ExportReader {
            r,
            first_seq,
            count,
            read: 0,
            buf: Vec::with_capacity(4096),
        })
    }

    /// The header's first seq (>= 1): the seq of the first entry.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// The header's record count: entries the file announces.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The next entry `(seq, record bytes, stored hash)`; `None` after the
    /// last one (then the file must end).
    pub fn next_entry(&mut self) -> Result<Option<ExportEntry<'_>>, ExportError> {
        let i = self.read;
        let count = self.count;
        if i == count {
            let mut extra = [0u8; 1];
            if self.r.read(&mut extra)? != 0 {
                return Err(ExportError::Format(format!(
                    "trailing bytes after the {count} records"
                )));
            }
            return Ok(None);
        }
        let seq = self.first_seq + i;
        let broken = |reason: String| ExportError::Broken {
            seq,
            position: i + 1,
            reason,
        };
        let mut fixed = [0u8; 12];
        self.r
            .read_exact(&mut fixed)
            .map_err(|_| broken(format!("the file ends after {i} of {count} records")))?;
        let seq_field = u64::from_be_bytes(fixed[..8].try_into().expect("8"));
        if seq_field != seq {
            return Err(broken(format!(
                "the entry says seq {seq_field} (a record removed or reordered)"
            )));
        }
        let len = u32::from_be_bytes(fixed[8..].try_into().expect("4")) as usize;
        if len > AUDIT_EXPORT_RECORD_BYTES_MAX {
            return Err(broken(format!("record length {len} exceeds the limit")));
        }
        self.buf.resize(len + HASH_LEN, 0);
        self.r
            .read_exact(&mut self.buf)
            .map_err(|_| broken("the file ends inside the record".into()))?;
        self.read += 1;
        let (record, stored) = self.buf.split_at(len);
        Ok(Some((seq, record, stored.try_into().expect("32"))))
    }
}

/// What a verified export proved.
#[derive(Clone, Debug)]
pub struct ExportReport {
    /// The seq of the first record.
    pub first_seq: u64,
    /// Records verified.
    pub count: u64,
    /// The prev_hash of the first record: the genesis zeros when the export
    /// starts at seq 1, otherwise taken as given (not checkable from the export).
    pub first_prev_hash: Hash,
    /// The chain hash of the last record.
    pub last_hash: Hash,
    /// When the export starts at seq 1: the Merkle root over all its records.
    pub root: Option<Hash>,
    /// When a checkpoint was given and the export starts at 1: its size (root matched).
    pub checkpoint_checked: Option<u64>,
    /// Tree heads of key hand-overs whose root was recomputed and matched
    /// (export from seq 1 covering their size).
    pub heads_checked: usize,
    /// Time the verification took.
    pub elapsed: Duration,
}

impl ExportReport {
    /// Records verified per second of [`ExportReport::elapsed`].
    pub fn events_per_sec(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Verifies an export read from `r`: every chain link recomputed from the
/// bytes; seq fields, key order and count; and, when it starts at seq 1, the
/// Merkle root at `checkpoint.size` (the export must cover it) against the
/// checkpoint's root. The checkpoint's signature is the caller's business
/// (see [`super::checkpoint::Verifier::verify_checkpoint`]).
pub fn verify_export<R: Read>(
    r: R,
    checkpoint: Option<&Checkpoint>,
    progress: &mut dyn FnMut(u64),
) -> Result<ExportReport, ExportError> {
    verify_export_with_heads(r, checkpoint, &[], progress)
}

/// [`verify_export`], also recomputing the root at the size of each of
/// `heads` (size, root named by a key hand-over) that the export covers
/// when it starts at seq 1.
pub fn verify_export_with_heads<R: Read>(
    r: R,
    checkpoint: Option<&Checkpoint>,
    heads: &[(u64, Hash)],
    progress: &mut dyn FnMut(u64),
) -> Result<ExportReport, ExportError> {
    let mut heads_checked = 0usize;
    let check_heads = |size: u64, root: &Hash, checked: &mut usize| -> Result<(), ExportError> {
        for (s, r) in heads.iter().filter(|(s, _)| *s == size) {
            if r != root {
                return Err(ExportError::Checkpoint(format!(
                    "the Merkle root of export records 1..={s} is {}, the key hand-over at size {s} names {}",
                    crate::hex::encode(root),
                    crate::hex::encode(r)
                )));
            }
            *checked += 1;
        }
        Ok(())
    };
    let started = Instant::now();
    let mut reader = ExportReader::new(r)?;
    let (first_seq, count) = (reader.first_seq(), reader.count());
    if let Some(cp) = checkpoint {
        if first_seq == 1 && cp.size > count {
            return Err(ExportError::Checkpoint(format!(
                "the export holds seq 1..={count} but the checkpoint commits to {} events: \
                 events {}..={} are missing from the export (cut off?)",
                cp.size,
                count + 1,
                cp.size
            )));
        }
    }
    let mut frontier = if first_seq == 1 {
        Some(Frontier::new())
    } else {
        None
    };
    let mut checkpoint_checked = None;
    if let (Some(cp), Some(f)) = (checkpoint, frontier.as_ref()) {
        if cp.size == 0 {
            check_root(cp, &f.root())?;
            checkpoint_checked = Some(0);
        }
    }
    if let Some(f) = frontier.as_ref() {
        check_heads(0, &f.root(), &mut heads_checked)?;
    }
    let mut prev: Option<Hash> = if first_seq == 1 {
        Some(GENESIS_PREV_HASH)
    } else {
        None
    };
    let mut first_prev_hash = GENESIS_PREV_HASH;
    let mut last_hash = GENESIS_PREV_HASH;
    let mut last_time = i64::MIN;
    while let Some((seq, record, stored)) = reader.next_entry()? {
        let i = seq - first_seq;
        let broken = |reason: String| ExportError::Broken {
            seq,
            position: i + 1,
            reason,
        };
        let (rec_seq, rec_prev) = peek_chain_fields(record).map_err(|e| broken(e.to_string()))?;
        if rec_seq != seq {
            return Err(broken(format!("the record says seq {rec_seq}")));
        }
        if record.len() >= 17 {
            let t = i64::from_be_bytes(record[9..17].try_into().expect("8"));
            if t < last_time {
                return Err(broken("recorded_at goes backwards".into()));
            }
            last_time = t;
        }
        let p = match prev {
            Some(p) => {
                if rec_prev != p {
                    return Err(broken(
                        "previous-hash link mismatch (this record or the one before was altered)".into(),
                    ));
                }
                p
            }
            None => {
                first_prev_hash = rec_prev;
                rec_prev
            }
        };
        let h = chain_hash(&p, record);
        if h != stored {
            return Err(broken(
                "chain hash mismatch: the record bytes were altered".into(),
            ));
        }
        prev = Some(h);
        last_hash = h;
        if let Some(f) = frontier.as_mut() {
            f.push(leaf_hash(record));
            if heads.iter().any(|(s, _)| *s == f.size()) {
                check_heads(f.size(), &f.root(), &mut heads_checked)?;
            }
            if let Some(cp) = checkpoint {
                if f.size() == cp.size {
                    check_root(cp, &f.root())?;
                    checkpoint_checked = Some(cp.size);
                }
            }
        }
        if (i + 1) % 65_536 == 0 {
            progress(i + 1);
        }
    }
    progress(count);
    Ok(ExportReport {
        first_seq,
        count,
        first_prev_hash,
        last_hash,
        root: frontier.map(|f| f.root()),
        checkpoint_checked,
        heads_checked,
        elapsed: started.elapsed(),
    })
}

fn check_root(cp: &Checkpoint, root: &Hash) -> Result<(), ExportError> {
    if root != &cp.root {
        return Err(ExportError::Checkpoint(format!(
            "the Merkle root of export records 1..={} is {}, the checkpoint says {}: \
             the export (or the log it came from) differs from what was signed",
            cp.size,
            crate::hex::encode(root),
            crate::hex::encode(&cp.root)
        )));
    }
    Ok(())
}
