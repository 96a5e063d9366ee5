//! Per-event receipts: a C2SP tlog-proof file, checkable offline.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the leaf data: the record bytes exactly as stored>
//! index <leaf index = seq - 1>
//! <base64 hash>            (inclusion proof, leaf's sibling first, zero or more lines)
//!
//! <the signed checkpoint note, verbatim>
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::checkpoint::{Checkpoint, NoteError, Verifier};
use super::merkle::{self, leaf_hash, Hash, ProofError};
use crate::limits::AUDIT_RECEIPT_BYTES_MAX;
use crate::log::record::{split_stored, Record};

/// First line of a receipt.
pub const RECEIPT_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Why a receipt does not check out.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// The text is not a receipt of this registry (too large, a missing or
    /// bad line); the text says which.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// The checkpoint note does not parse or is not signed by the trusted
    /// key (or key chain).
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] NoteError),
    /// The record's leaf hash does not lead through the proof to the
    /// checkpoint's root.
    #[error("inclusion proof of index {index} in checkpoint size {size}: {source}")]
    Proof {
        /// The receipt's leaf index (seq - 1).
        index: u64,
        /// The checkpoint's tree size.
        size: u64,
        /// Where the proof fails.
        #[source]
        source: ProofError,
    },
    /// The record's own seq field is not the receipt's index + 1.
    #[error("the record in the receipt says seq {found}, the receipt's index says seq {expected}")]
    SeqMismatch {
        /// The seq the index names (index + 1).
        expected: u64,
        /// The seq the record says.
        found: u64,
    },
    /// The record bytes (proved included) do not decode as a v1 record.
    #[error("the record in the receipt is not a valid v1 record: {0}")]
    BadRecord(String),
}

/// A parsed (not yet verified) receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The leaf index of the record (its seq - 1).
    pub index: u64,
    /// The record, exactly as stored (sealed fields stay sealed).
    pub record: Vec<u8>,
    /// The inclusion proof of the record's leaf in the checkpoint's tree.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note the proof leads to.
    pub checkpoint_note: String,
}

/// What a verified receipt proves.
#[derive(Clone, Debug)]
pub struct ReceiptReport {
    /// The record's seq.
    pub seq: u64,
    /// The checkpoint whose root the record is included in.
    pub checkpoint: Checkpoint,
    /// The record's event type.
    pub event_type: String,
    /// The record's stream (case) id.
    pub stream_id: String,
    /// When the writer recorded it (Unix microseconds).
    pub recorded_at_us: i64,
    /// Hashes in the inclusion proof.
    pub proof_len: usize,
}

impl Receipt {
    /// The receipt file's text: header, `extra` (the record, base64),
    /// `index`, one base64 proof hash a line, a blank line, the checkpoint
    /// note. [`Receipt::parse`] reads it back.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.record.len() * 4 / 3 + 64 * self.proof.len() + 512);
        s.push_str(RECEIPT_HEADER);
        s.push('\n');
        s.push_str("extra ");
        s.push_str(&B64.encode(&self.record));
        s.push('\n');
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint_note);
        s
    }

    /// Parses a receipt file (at most [`AUDIT_RECEIPT_BYTES_MAX`] bytes)
    /// without verifying anything: see [`Receipt::verify`].
    pub fn parse(text: &str) -> Result<Receipt, ReceiptError> {
        let bad = |m: &str| ReceiptError::Malformed(m.to_string());
        if text.len() > AUDIT_RECEIPT_BYTES_MAX {
            return Err(bad("receipt too large"));
        }
        let (head, note) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(RECEIPT_HEADER) {
            return Err(bad("first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or_else(|| bad("missing index line"))?;
        let record = match line.strip_prefix("extra ") {
            Some(b64) => {
                let r = B64.decode(b64).map_err(|_| bad("extra data is not base64"))?;
                line = lines.next().ok_or_else(|| bad("missing index line"))?;
                r
            }
            None => {
                return Err(bad(
                    "missing extra line: this registry's receipts carry the record bytes",
                ))
            }
        };
        let idx = line
            .strip_prefix("index ")
            .ok_or_else(|| bad("missing index line"))?;
        if idx.is_empty()
            || !idx.bytes().all(|b| b.is_ascii_digit())
            || (idx.len() > 1 && idx.starts_with('0'))
        {
            return Err(bad("index is not a decimal number without leading zeros"));
        }
        let index: u64 = idx.parse().map_err(|_| bad("index does not fit in 64 bits"))?;
        let mut proof = Vec::new();
        for (i, l) in lines.enumerate() {
            let h = B64
                .decode(l)
                .map_err(|_| ReceiptError::Malformed(format!("proof line {} is not base64", i + 1)))?;
            proof.push(h.try_into().map_err(|_| {
                ReceiptError::Malformed(format!("proof line {} is not a 32-byte hash", i + 1))
            })?);
        }
        Ok(Receipt {
            index,
            record,
            proof,
            checkpoint_note: note.to_string(),
        })
    }

    /// Verifies the checkpoint's signature, the record's leaf hash through
    /// every step of the inclusion proof to the checkpoint's root, and that
    /// the record's own seq field matches the index.
    pub fn verify(&self, key: &Verifier) -> Result<ReceiptReport, ReceiptError> {
        self.verify_chain(&super::handover::KeyChain::single(key.clone()))
    }

    /// [`Receipt::verify`] with the checkpoint verified under a key chain
    /// (a trusted key and the hand-overs after it).
    pub fn verify_chain(&self, chain: &super::handover::KeyChain) -> Result<ReceiptReport, ReceiptError> {
        let (checkpoint, _) = chain.verify_checkpoint(&self.checkpoint_note)?;
        let leaf = leaf_hash(&self.record);
        merkle::verify_inclusion(&leaf, self.index, checkpoint.size, &self.proof, &checkpoint.root).map_err(
            |source| ReceiptError::Proof {
                index: self.index,
                size: checkpoint.size,
                source,
            },
        )?;
        let record = Record::decode(&self.record).map_err(|e| ReceiptError::BadRecord(e.to_string()))?;
        if record.seq != self.index + 1 {
            return Err(ReceiptError::SeqMismatch {
                expected: self.index + 1,
                found: record.seq,
            });
        }
        Ok(ReceiptReport {
            seq: record.seq,
            checkpoint,
            event_type: record.event_type,
            stream_id: record.stream_id,
            recorded_at_us: record.recorded_at_us,
            proof_len: self.proof.len(),
        })
    }
}

/// Builds the receipt of `seq` against a signed checkpoint (whose size must be >= seq),
/// reading the record bytes as stored and the proof from the persisted tree.
pub fn build(
    store: &crate::log::Store,
    tree: &super::tree::MerkleTree,
    seq: u64,
    checkpoint: &super::checkpoint::SignedCheckpoint,
) -> Result<Receipt, super::AuditError> {
    let size = checkpoint.checkpoint.size;
    if seq == 0 || seq > size {
        return Err(super::AuditError::InvalidArgument {
            field: "seq",
            reason: format!("seq {seq} is not in the checkpoint of size {size}"),
        });
    }
    let value = store
        .raw_get(seq)
        .map_err(super::AuditError::from)?
        .ok_or(super::AuditError::NotFound(format!("no event at seq {seq}")))?;
    let (record, _) =
        split_stored(&value).map_err(|e| super::AuditError::invariant(format!("seq {seq}: {e}")))?;
    let proof = tree.inclusion_proof(seq - 1, size)?;
    // Never hand out a receipt that does not verify.
    let root = tree.root(size)?;
    if root != checkpoint.checkpoint.root {
        return Err(super::AuditError::invariant(format!(
            "the tree's root at size {size} differs from the signed checkpoint"
        )));
    }
    merkle::verify_inclusion(&leaf_hash(record), seq - 1, size, &proof, &root).map_err(|e| {
        super::AuditError::invariant(format!("stored record at seq {seq} is not the tree's leaf: {e}"))
    })?;
    Ok(Receipt {
        index: seq - 1,
        record: record.to_vec(),
        proof,
        checkpoint_note: checkpoint.note.clone(),
    })
}
