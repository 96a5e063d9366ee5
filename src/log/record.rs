//! The stored record: a versioned, length-prefixed binary format, and the chain hash.
//!
//! The byte layout is specified in `docs/LOG_FORMAT.md`; this file is its only
//! implementation. A record is encoded exactly once, by the writer, and every
//! later hash is computed over the bytes as stored: nothing is re-encoded to hash.

use crate::limits::{
    ACTOR_FIELD_BYTES_MAX, EVENT_PAYLOAD_BYTES_MAX, EVENT_TYPE_BYTES_MAX, REQUEST_EVENTS_MAX,
    REQUEST_ID_BYTES_MAX, STREAM_ID_BYTES_MAX,
};

/// The only record format version this build writes and reads.
pub const RECORD_FORMAT_V1: u8 = 1;
/// Length of a BLAKE3 hash.
pub const HASH_LEN: usize = 32;
/// A chain hash.
pub type Hash = [u8; HASH_LEN];
/// The previous hash of the first record (sequence 1).
pub const GENESIS_PREV_HASH: Hash = [0u8; HASH_LEN];
/// Domain-separation prefix of the chain hash, so that no other BLAKE3 use in
/// the registry (Merkle leaves, blind indexes) can produce a colliding input.
pub const CHAIN_HASH_PREFIX: &[u8] = b"migreg.chain.v1\0";

/// Fixed-size head of a v1 record: version, seq, recorded_at, stream_version, part, parts.
const FIXED_HEAD_LEN: usize = 1 + 8 + 8 + 8 + 2 + 2;

/// Who recorded an event: the user and the office they work for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Actor {
    /// Stable user identifier (not a name).
    pub user_id: String,
    /// Office (e.g. a regional Migración Colombia centre) the user acted for.
    pub office: String,
}

/// One event as it is stored in the log, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Global position in the log; the first record is 1.
    pub seq: u64,
    /// When the writer recorded it: UTC microseconds since the Unix epoch.
    /// Non-decreasing along the log.
    pub recorded_at_us: i64,
    /// The stream (case) the event belongs to.
    pub stream_id: String,
    /// Position inside its stream; the first event of a stream is 1.
    pub stream_version: u64,
    /// Index of this event inside the request that appended it (0-based).
    pub part: u16,
    /// Number of events the request appended (all or none are in the log).
    pub parts: u16,
    /// Event type name, e.g. `PermitIssued`.
    pub event_type: String,
    /// Who recorded it.
    pub actor: Actor,
    /// The idempotency key of the request that appended it.
    pub request_id: String,
    /// The prost-encoded event body; personal fields inside are already sealed.
    pub payload: Vec<u8>,
    /// Chain hash of the previous record ([`GENESIS_PREV_HASH`] for seq 1).
    pub prev_hash: Hash,
}

impl RecordView<'_> {
    /// Length of the encoded record.
    pub(crate) fn encoded_len(&self) -> usize {
        FIXED_HEAD_LEN
            + 5 * 2
            + self.stream_id.len()
            + self.event_type.len()
            + self.user_id.len()
            + self.office.len()
            + self.request_id.len()
            + 4
            + self.payload.len()
            + HASH_LEN
    }

    /// Appends the v1 encoding to `out`. Callers validate field lengths
    /// first (see [`crate::log::AppendRequest::validate`]); this asserts them.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        assert!(self.stream_id.len() <= STREAM_ID_BYTES_MAX);
        assert!(self.event_type.len() <= EVENT_TYPE_BYTES_MAX);
        assert!(self.user_id.len() <= ACTOR_FIELD_BYTES_MAX);
        assert!(self.office.len() <= ACTOR_FIELD_BYTES_MAX);
        assert!(self.request_id.len() <= REQUEST_ID_BYTES_MAX);
        assert!(self.payload.len() <= EVENT_PAYLOAD_BYTES_MAX);
        assert!(self.part < self.parts && self.parts as usize <= REQUEST_EVENTS_MAX);
        let start = out.len();
        out.reserve(self.encoded_len());
        out.push(RECORD_FORMAT_V1);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.recorded_at_us.to_be_bytes());
        out.extend_from_slice(&self.stream_version.to_be_bytes());
        out.extend_from_slice(&self.part.to_be_bytes());
        out.extend_from_slice(&self.parts.to_be_bytes());
        for field in [
            self.stream_id,
            self.event_type,
            self.user_id,
            self.office,
            self.request_id,
        ] {
            out.extend_from_slice(&(field.len() as u16).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(self.payload);
        out.extend_from_slice(&self.prev_hash);
        debug_assert_eq!(out.len() - start, self.encoded_len());
    }
}

/// Why a stored record could not be decoded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The first byte names a record format other than v1 (the byte).
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    /// The bytes end inside the named field (or the stored value is shorter
    /// than a record and its hash).
    #[error("record truncated while reading {0}")]
    Truncated(&'static str),
    /// The named text field is not UTF-8.
    #[error("field {0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// Bytes left after the previous-hash field (their count).
    #[error("{0} trailing bytes after the record")]
    TrailingBytes(usize),
    /// The named field's length prefix is over its limit ([`crate::limits`]).
    #[error("field {0} exceeds its limit")]
    TooLong(&'static str),
    /// `part` is not below `parts`, or `parts` is over the events a request
    /// may append: no writer writes such a record.
    #[error("part {part} of {parts}: a request has 1..=16 parts, numbered from 0")]
    BadPart {
        /// The record's `part` field (0-based index in its request).
        part: u16,
        /// The record's `parts` field (events of its request).
        parts: u16,
    },
}

impl Record {
    /// Encodes the record in format v1. Callers validate field lengths first
    /// (see [`crate::log::AppendRequest::validate`]); this asserts them.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.as_view().encode_into(&mut out);
        out
    }

    /// The record's fields, borrowed.
    pub(crate) fn as_view(&self) -> RecordView<'_> {
        RecordView {
            seq: self.seq,
            recorded_at_us: self.recorded_at_us,
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            part: self.part,
            parts: self.parts,
            event_type: &self.event_type,
            user_id: &self.actor.user_id,
            office: &self.actor.office,
            request_id: &self.request_id,
            payload: &self.payload,
            prev_hash: self.prev_hash,
        }
    }

    /// Decodes a v1 record (without the trailing stored hash).
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        let v = RecordView::parse(bytes)?;
        Ok(Record {
            seq: v.seq,
            recorded_at_us: v.recorded_at_us,
            stream_id: v.stream_id.to_string(),
            stream_version: v.stream_version,
            part: v.part,
            parts: v.parts,
            event_type: v.event_type.to_string(),
            actor: Actor {
                user_id: v.user_id.to_string(),
                office: v.office.to_string(),
            },
            request_id: v.request_id.to_string(),
            payload: v.payload.to_vec(),
            prev_hash: v.prev_hash,
        })
    }
}

/// A v1 record's fields, borrowed: parsed from stored bytes with the same
/// checks as [`Record::decode`] and without copying (verification reads
/// every record of the log this way), or built by the writer from a
/// request and encoded without first copying its payloads into a [`Record`].
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    /// Global position in the log; the first record is 1.
    pub seq: u64,
    /// When the writer recorded it (Unix microseconds); non-decreasing along the log.
    pub recorded_at_us: i64,
    /// The stream (case) the event belongs to.
    pub stream_id: &'a str,
    /// Position inside its stream; the first event of a stream is 1.
    pub stream_version: u64,
    /// Index of this event inside the request that appended it (0-based).
    pub part: u16,
    /// Number of events the request appended (all or none are in the log).
    pub parts: u16,
    /// Event type name, e.g. `PermitIssued`.
    pub event_type: &'a str,
    /// The actor's user id.
    pub user_id: &'a str,
    /// The actor's office.
    pub office: &'a str,
    /// The idempotency key of the request that appended it.
    pub request_id: &'a str,
    /// The prost-encoded event body; personal fields inside are already sealed.
    pub payload: &'a [u8],
    /// Chain hash of the previous record ([`GENESIS_PREV_HASH`] for seq 1).
    pub prev_hash: Hash,
}

impl<'a> RecordView<'a> {
    /// Parses a v1 record (without the trailing stored hash).
    pub fn parse(bytes: &'a [u8]) -> Result<RecordView<'a>, DecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8("version")?;
        if version != RECORD_FORMAT_V1 {
            return Err(DecodeError::UnknownVersion(version));
        }
        let seq = r.u64("seq")?;
        let recorded_at_us = r.u64("recorded_at_us")? as i64;
        let stream_version = r.u64("stream_version")?;
        let part = r.u16("part")?;
        let parts = r.u16("parts")?;
        // What the writer can never write is not a record (`encode_into` asserts the same).
        if part >= parts || parts as usize > REQUEST_EVENTS_MAX {
            return Err(DecodeError::BadPart { part, parts });
        }
        let stream_id = r.str("stream_id", STREAM_ID_BYTES_MAX)?;
        let event_type = r.str("event_type", EVENT_TYPE_BYTES_MAX)?;
        let user_id = r.str("actor.user_id", ACTOR_FIELD_BYTES_MAX)?;
        let office = r.str("actor.office", ACTOR_FIELD_BYTES_MAX)?;
        let request_id = r.str("request_id", REQUEST_ID_BYTES_MAX)?;
        let payload_len = r.u32("payload_len")? as usize;
        if payload_len > EVENT_PAYLOAD_BYTES_MAX {
            return Err(DecodeError::TooLong("payload"));
        }
        let payload = r.take("payload", payload_len)?;
        let prev_hash: Hash = r.take("prev_hash", HASH_LEN)?.try_into().expect("32 bytes");
        if r.pos != bytes.len() {
            return Err(DecodeError::TrailingBytes(bytes.len() - r.pos));
        }
        Ok(RecordView {
            seq,
            recorded_at_us,
            stream_id,
            stream_version,
            part,
            parts,
            event_type,
            user_id,
            office,
            request_id,
            payload,
            prev_hash,
        })
    }
}

/// hash(n) = BLAKE3(CHAIN_HASH_PREFIX || hash(n-1) || record bytes of n as stored).
pub fn chain_hash(prev: &Hash, record_bytes: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(CHAIN_HASH_PREFIX);
    h.update(prev);
    h.update(record_bytes);
    *h.finalize().as_bytes()
}

/// Splits a stored value (record bytes || 32-byte hash) into its two parts.
pub fn split_stored(value: &[u8]) -> Result<(&[u8], Hash), DecodeError> {
    if value.len() < FIXED_HEAD_LEN + HASH_LEN * 2 {
        return Err(DecodeError::Truncated("stored value"));
    }
    let (record, hash) = value.split_at(value.len() - HASH_LEN);
    Ok((record, hash.try_into().expect("32 bytes")))
}

/// Reads the fields the chain walk needs without decoding the whole record:
/// format version, seq and the previous hash (the last 32 bytes of the record).
pub fn peek_chain_fields(record: &[u8]) -> Result<(u64, Hash), DecodeError> {
    if record.len() < FIXED_HEAD_LEN + HASH_LEN {
        return Err(DecodeError::Truncated("record"));
    }
    if record[0] != RECORD_FORMAT_V1 {
        return Err(DecodeError::UnknownVersion(record[0]));
    }
    let seq = u64::from_be_bytes(record[1..9].try_into().expect("8 bytes"));
    let prev = record[record.len() - HASH_LEN..].try_into().expect("32 bytes");
    Ok((seq, prev))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated(field))?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated(field))?;
        self.pos = end;
        Ok(slice)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(field, 1)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take(field, 2)?.try_into().expect("2")))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(field, 4)?.try_into().expect("4")))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take(field, 8)?.try_into().expect("8")))
    }
    fn str(&mut self, field: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        let len = self.u16(field)? as usize;
        if len > max {
            return Err(DecodeError::TooLong(field));
        }
        let raw = self.take(field, len)?;
        std::str::from_utf8(raw).map_err(|_| DecodeError::NotUtf8(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            seq: 7,
            recorded_at_us: 1_700_000_000_000_000,
            stream_id: "case-1".into(),
            stream_version: 2,
            part: 0,
            parts: 1,
            event_type: "PermitIssued".into(),
            actor: Actor {
                user_id: "u1".into(),
                office: "BOG".into(),
            },
            request_id: "r1".into(),
            payload: vec![1, 2, 3],
            prev_hash: [9; 32],
        }
    }

    #[test]
    fn encode_then_decode_is_identity() {
        let r = sample();
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn peek_reads_seq_and_prev_hash() {
        let bytes = sample().encode();
        assert_eq!(peek_chain_fields(&bytes).unwrap(), (7, [9; 32]));
    }

    #[test]
    fn unknown_version_and_truncation_are_rejected() {
        let mut bytes = sample().encode();
        bytes[0] = 2;
        assert_eq!(Record::decode(&bytes), Err(DecodeError::UnknownVersion(2)));
        let bytes = sample().encode();
        assert!(matches!(
            Record::decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated(_))
        ));
    }

    #[test]
    fn chain_hash_depends_on_prev_and_bytes() {
        let b = sample().encode();
        assert_ne!(chain_hash(&[0; 32], &b), chain_hash(&[1; 32], &b));
        let mut b2 = b.clone();
        b2[20] ^= 1;
        assert_ne!(chain_hash(&[0; 32], &b), chain_hash(&[0; 32], &b2));
    }
}
