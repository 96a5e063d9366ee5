//! Chunks: the records of one group commit (or a capped part of it) as one
//! sled value, keyed by the seq of its first record.
//!
//! sled's cost is per key written, almost regardless of its size
//! (../shared/STORE-MEASUREMENTS.md, `registry bench layouts`): one value per
//! commit instead of one key per event is what makes the log's append path
//! cheap. The layout is specified in docs/LOG_FORMAT.md; this file is its
//! only implementation.
//!
//! ```text
//! chunk  = format u8 (0x01) || count u16 || count x offset u32 || entries
//! entry  = record bytes || chain hash (32)
//! ```
//! `offset[i]` is where entry i starts, from the start of the value; entry i
//! ends where entry i + 1 starts (the last one at the end of the value).
//! The records of a chunk have consecutive seqs, the first equal to the key.

use super::record::{split_stored, DecodeError, Hash};
use crate::limits::{CHUNK_BYTES_TARGET, CHUNK_EVENTS_MAX};

/// The only chunk format this build writes and reads.
pub const CHUNK_FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 1 + 2;

/// Why a chunk value is not a well-formed chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The first byte names a format other than [`CHUNK_FORMAT_V1`] (the byte).
    #[error("unknown chunk format {0}")]
    UnknownFormat(u8),
    /// The value ends inside its header or offset table.
    #[error("chunk truncated")]
    Truncated,
    /// The record count is 0 or over [`CHUNK_EVENTS_MAX`] (the count).
    #[error("chunk holds {0} records (1..={CHUNK_EVENTS_MAX} allowed)")]
    BadCount(usize),
    /// Entry `i`'s offset is not right after the table (the first), not past
    /// the previous entry's, or not inside the value (the index `i`, 0-based).
    #[error("chunk entry {0} has an impossible offset")]
    BadOffset(usize),
    /// Entry `i` (0-based) is too short to hold a record and its hash.
    #[error("chunk entry {0}: {1}")]
    Entry(usize, DecodeError),
}

/// A chunk as read from sled: a view over its bytes.
#[derive(Clone, Debug)]
pub struct Chunk<V: AsRef<[u8]>> {
    bytes: V,
    count: usize,
}

impl<V: AsRef<[u8]>> Chunk<V> {
    /// Checks the header and the offset table (not the records: the chain
    /// walk checks those).
    pub fn parse(bytes: V) -> Result<Chunk<V>, ChunkError> {
        let b = bytes.as_ref();
        if b.len() < HEADER_LEN {
            return Err(ChunkError::Truncated);
        }
        if b[0] != CHUNK_FORMAT_V1 {
            return Err(ChunkError::UnknownFormat(b[0]));
        }
        let count = u16::from_be_bytes([b[1], b[2]]) as usize;
        if count == 0 || count > CHUNK_EVENTS_MAX {
            return Err(ChunkError::BadCount(count));
        }
        let table_end = HEADER_LEN + 4 * count;
        if b.len() < table_end {
            return Err(ChunkError::Truncated);
        }
        let chunk = Chunk { bytes, count };
        // Entries are contiguous: the first starts after the table, and
        // each one starts where the previous one ended.
        let mut prev = table_end;
        for i in 0..count {
            let off = chunk.offset(i);
            let bad = if i == 0 { off != table_end } else { off <= prev };
            if bad || off >= chunk.bytes.as_ref().len() {
                return Err(ChunkError::BadOffset(i));
            }
            prev = off;
        }
        Ok(chunk)
    }

    fn offset(&self, i: usize) -> usize {
        let at = HEADER_LEN + 4 * i;
        u32::from_be_bytes(self.bytes.as_ref()[at..at + 4].try_into().expect("4 bytes")) as usize
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.count
    }

    /// A chunk is never empty; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Entry `i` (record bytes and stored hash).
    pub fn entry(&self, i: usize) -> Result<(&[u8], Hash), ChunkError> {
        split_stored(self.entry_bytes(i)).map_err(|e| ChunkError::Entry(i, e))
    }

    /// Bytes of entry `i` (record || hash), as stored.
    pub fn entry_bytes(&self, i: usize) -> &[u8] {
        let b = self.bytes.as_ref();
        let start = self.offset(i);
        let end = if i + 1 < self.count {
            self.offset(i + 1)
        } else {
            b.len()
        };
        &b[start..end]
    }
}

/// Builds the chunks of one group commit: closes a chunk when it holds
/// [`CHUNK_EVENTS_MAX`] records or the next record would take it past
/// [`CHUNK_BYTES_TARGET`].
#[derive(Default)]
pub(crate) struct ChunkBuilder {
    /// Finished chunks: (first seq, value).
    done: Vec<(u64, Vec<u8>)>,
    /// Entries of the open chunk: the entries' bytes and where each starts.
    open_first: u64,
    open_entries: Vec<u8>,
    open_offsets: Vec<usize>,
    /// The first and the last seq pushed: every push is the last + 1.
    seqs: Option<(u64, u64)>,
}

impl ChunkBuilder {
    /// Appends one record (already encoded, its hash after it) with seq `seq`.
    pub(crate) fn push(&mut self, seq: u64, record: &[u8], hash: &Hash) {
        let entry_len = record.len() + hash.len();
        let full = self.open_offsets.len() == CHUNK_EVENTS_MAX
            || (!self.open_offsets.is_empty() && self.open_entries.len() + entry_len > CHUNK_BYTES_TARGET);
        if full {
            self.close();
        }
        if self.open_offsets.is_empty() {
            self.open_first = seq;
        }
        self.seqs = match self.seqs {
            None => Some((seq, seq)),
            Some((first, last)) => {
                assert_eq!(seq, last + 1, "the records of a group commit are dense");
                Some((first, seq))
            }
        };
        debug_assert_eq!(seq, self.open_first + self.open_offsets.len() as u64);
        self.open_offsets.push(self.open_entries.len());
        self.open_entries.extend_from_slice(record);
        self.open_entries.extend_from_slice(hash);
    }

    fn close(&mut self) {
        if self.open_offsets.is_empty() {
            return;
        }
        let count = self.open_offsets.len();
        let table_end = HEADER_LEN + 4 * count;
        let mut value = Vec::with_capacity(table_end + self.open_entries.len());
        value.push(CHUNK_FORMAT_V1);
        value.extend_from_slice(&(count as u16).to_be_bytes());
        for off in &self.open_offsets {
            value.extend_from_slice(&((table_end + off) as u32).to_be_bytes());
        }
        value.extend_from_slice(&self.open_entries);
        self.done.push((self.open_first, value));
        self.open_entries.clear();
        self.open_offsets.clear();
    }

    /// The finished chunks, in seq order.
    pub(crate) fn finish(mut self) -> Vec<(u64, Vec<u8>)> {
        self.close();
        self.done
    }

    /// Whether nothing was pushed.
    pub(crate) fn is_empty(&self) -> bool {
        self.seqs.is_none()
    }

    /// The first and the last seq pushed, if any (every seq between them was).
    pub(crate) fn seqs(&self) -> Option<(u64, u64)> {
        self.seqs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, len: usize) -> (Vec<u8>, Hash) {
        let mut record = vec![n; len];
        record[0] = super::super::record::RECORD_FORMAT_V1;
        (record, [n; 32])
    }

    #[test]
    fn a_builder_knows_the_dense_seqs_it_holds() {
        let mut b = ChunkBuilder::default();
        assert!(b.is_empty());
        assert_eq!(b.seqs(), None);
        for seq in 41..=41 + CHUNK_EVENTS_MAX as u64 {
            let (record, hash) = entry(1, 16);
            b.push(seq, &record, &hash);
        }
        assert_eq!(b.seqs(), Some((41, 41 + CHUNK_EVENTS_MAX as u64)));
        assert_eq!(b.finish().len(), 2, "one chunk closed at CHUNK_EVENTS_MAX");
    }

    #[test]
    #[should_panic(expected = "the records of a group commit are dense")]
    fn a_gap_in_a_group_commit_is_refused() {
        let mut b = ChunkBuilder::default();
        // Across a chunk boundary too: the second chunk's first record must
        // follow the first chunk's last.
        for seq in 1..=CHUNK_EVENTS_MAX as u64 {
            let (record, hash) = entry(1, 16);
            b.push(seq, &record, &hash);
        }
        let (record, hash) = entry(2, 16);
        b.push(CHUNK_EVENTS_MAX as u64 + 2, &record, &hash);
    }

    #[test]
    fn a_built_chunk_reads_back_every_entry() {
        let mut b = ChunkBuilder::default();
        let entries: Vec<_> = (0..10u8).map(|i| entry(i, 100 + i as usize)).collect();
        for (i, (r, h)) in entries.iter().enumerate() {
            b.push(7 + i as u64, r, h);
        }
        let chunks = b.finish();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].0, 7);
        let c = Chunk::parse(&chunks[0].1[..]).expect("parse");
        assert_eq!(c.len(), 10);
        for (i, (r, h)) in entries.iter().enumerate() {
            let (record, hash) = c.entry(i).expect("entry");
            assert_eq!(record, &r[..]);
            assert_eq!(&hash, h);
        }
    }

    #[test]
    fn a_commit_larger_than_the_caps_spans_several_chunks() {
        let mut b = ChunkBuilder::default();
        for i in 0..(CHUNK_EVENTS_MAX as u64 + 3) {
            let (r, h) = entry(1, 80);
            b.push(1 + i, &r, &h);
        }
        let (r, h) = entry(2, CHUNK_BYTES_TARGET);
        b.push(CHUNK_EVENTS_MAX as u64 + 4, &r, &h);
        let chunks = b.finish();
        let firsts: Vec<u64> = chunks.iter().map(|c| c.0).collect();
        assert_eq!(
            firsts,
            vec![1, CHUNK_EVENTS_MAX as u64 + 1, CHUNK_EVENTS_MAX as u64 + 4]
        );
        assert_eq!(Chunk::parse(&chunks[1].1[..]).expect("parse").len(), 3);
        assert_eq!(Chunk::parse(&chunks[2].1[..]).expect("parse").len(), 1);
    }

    #[test]
    fn malformed_chunks_are_refused() {
        let mut b = ChunkBuilder::default();
        let (r, h) = entry(1, 80);
        b.push(1, &r, &h);
        b.push(2, &r, &h);
        let good = b.finish().remove(0).1;
        assert!(Chunk::parse(&good[..]).is_ok());
        let mut bad_format = good.clone();
        bad_format[0] = 9;
        assert_eq!(
            Chunk::parse(&bad_format[..]).unwrap_err(),
            ChunkError::UnknownFormat(9)
        );
        let mut zero = good.clone();
        zero[1..3].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(Chunk::parse(&zero[..]).unwrap_err(), ChunkError::BadCount(0));
        let mut far = good.clone();
        far[7..11].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Chunk::parse(&far[..]).unwrap_err(), ChunkError::BadOffset(1));
        assert_eq!(Chunk::parse(&good[..5]).unwrap_err(), ChunkError::Truncated);
    }
}
