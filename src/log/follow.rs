//! The verified reader the followers of the log share: the Merkle tree
//! (`audit/tree.rs`), the statistics projection and the worklists. A
//! follower holds a position, the seq of the last record it took and that
//! record's chain hash ([`Head`]; seq 0 and the genesis hash before the
//! first). From there every record must have the next seq and link to the
//! hash before it ([`check_next`]), and a read that ends before the head is
//! a gap. A follower stops on any of these, naming the seq: it never skips.
//! Each follower keeps its own error words; the checks are these.

use super::record::{peek_chain_fields, split_stored, Hash, HASH_LEN};
use super::store::{RawEntries, RawEntry};
use super::{Head, Store, StoreError, StoredEvent};

/// A record that does not continue the position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Break {
    /// The next record has another seq than the position's + 1.
    #[error("expected seq {expected}, found seq {found}")]
    Gap {
        /// The position's seq + 1.
        expected: u64,
        /// The seq the record has.
        found: u64,
    },
    /// Record `seq`'s previous hash is not the hash of seq `prev`.
    #[error("seq {seq} does not link to the hash of seq {prev}")]
    Link {
        /// The record's seq.
        seq: u64,
        /// The position's seq.
        prev: u64,
    },
}

/// Checks that a record (`seq`, `prev_hash`) comes right after `position`:
/// the next seq, linked to the position's hash.
pub fn check_next(position: Head, seq: u64, prev_hash: &Hash) -> Result<(), Break> {
    let expected = position.seq + 1;
    if seq != expected {
        return Err(Break::Gap { expected, found: seq });
    }
    if *prev_hash != position.hash {
        return Err(Break::Link {
            seq,
            prev: position.seq,
        });
    }
    Ok(())
}

/// Why no page could be read after a position.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The head is past the position, yet nothing follows it.
    #[error("gap in the log: seq {expected} is missing (head is {head})")]
    Missing {
        /// The position's seq + 1.
        expected: u64,
        /// The head read before the page.
        head: u64,
    },
    /// The position is past the head: a different log.
    #[error("position {position} is past the head {head}")]
    Ahead {
        /// The position's seq.
        position: u64,
        /// The head read before the page.
        head: u64,
    },
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads the page after `position` (at most `max` decoded records), checking
/// that it starts right after it when the head is past it: an empty page
/// before the head is a gap, a position past the head another log. Each
/// record of the page is then checked with [`check_next`] as the follower
/// takes it (a break stops it there, after the records before it).
pub fn read_page(store: &Store, position: Head, max: usize) -> Result<Vec<StoredEvent>, PageError> {
    // The head is read before the page: the writer publishes a new head at
    // any moment, and a head read after an empty page may already be past
    // it (a false gap). The page reads up to a head at least this one.
    let head = store.head()?.seq;
    let page = store.read_all(position.seq + 1, max)?;
    if page.is_empty() {
        if head > position.seq {
            return Err(PageError::Missing {
                expected: position.seq + 1,
                head,
            });
        }
        if head < position.seq {
            return Err(PageError::Ahead {
                position: position.seq,
                head,
            });
        }
    }
    Ok(page)
}

/// Why a raw record could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// The record does not continue the position.
    #[error(transparent)]
    Break(Break),
    /// The range ended before `to`: seq `expected` is missing.
    #[error("seq {expected} is missing (the range ends at {to})")]
    Short {
        /// The first seq not read.
        expected: u64,
        /// The end of the range.
        to: u64,
    },
    /// The stored bytes of record `seq` are not a record with its hash.
    #[error("record at seq {seq}: {reason}")]
    Malformed {
        /// The record's seq (its key).
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// Record `seq` (its key) says another seq.
    #[error("record at seq {seq} says seq {field}")]
    SeqField {
        /// The record's seq (its key).
        seq: u64,
        /// The seq written in the record.
        field: u64,
    },
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A record as stored, taken in order by [`RawRecords`].
#[derive(Clone, Debug)]
pub struct RawRecord {
    /// Its seq.
    pub seq: u64,
    /// The previous record's chain hash (the position's: checked).
    pub prev_hash: Hash,
    /// The chain hash stored with it (not recomputed here).
    pub hash: Hash,
    value: RawEntry,
}

impl RawRecord {
    /// The record's bytes as stored (what the chain hash covers after the previous hash).
    pub fn record(&self) -> &[u8] {
        &self.value[..self.value.len() - HASH_LEN]
    }
}

/// The records after `position` up to `to`, as stored (undecoded): for a
/// follower that hashes the bytes (the Merkle tree). Each is checked on the
/// way: its key is the next seq, its bytes split into a record and a hash,
/// the record's own seq is its key and it links to the previous hash
/// ([`check_next`]). A range that ends before `to` is a gap
/// ([`RawError::Short`]). The walk ends at the first error.
pub fn raw_records(store: &Store, position: Head, to: u64) -> RawRecords {
    RawRecords {
        entries: store.raw_range(position.seq + 1, to),
        position,
        to,
        done: false,
    }
}

/// The iterator of [`raw_records`].
pub struct RawRecords {
    entries: RawEntries,
    position: Head,
    to: u64,
    done: bool,
}

impl RawRecords {
    fn take(&mut self, seq: u64, value: RawEntry) -> Result<RawRecord, RawError> {
        let expected = self.position.seq + 1;
        if seq != expected {
            return Err(RawError::Break(Break::Gap { expected, found: seq }));
        }
        let malformed = |reason: String| RawError::Malformed { seq, reason };
        let (record, hash) = split_stored(&value).map_err(|e| malformed(e.to_string()))?;
        let (seq_field, prev_hash) = peek_chain_fields(record).map_err(|e| malformed(e.to_string()))?;
        if seq_field != seq {
            return Err(RawError::SeqField {
                seq,
                field: seq_field,
            });
        }
        check_next(self.position, seq, &prev_hash).map_err(RawError::Break)?;
        self.position = Head { seq, hash };
        Ok(RawRecord {
            seq,
            prev_hash,
            hash,
            value,
        })
    }
}

impl Iterator for RawRecords {
    type Item = Result<RawRecord, RawError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = match self.entries.next() {
            Some(Ok((seq, value))) => self.take(seq, value),
            Some(Err(e)) => Err(e.into()),
            None => {
                self.done = true;
                let expected = self.position.seq + 1;
                return (expected != self.to + 1).then_some(Err(RawError::Short {
                    expected,
                    to: self.to,
                }));
            }
        };
        self.done = result.is_err();
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Head = Head {
        seq: 7,
        hash: [7u8; 32],
    };

    #[test]
    fn the_next_record_links_to_the_position() {
        assert_eq!(check_next(AT, 8, &[7u8; 32]), Ok(()));
        assert_eq!(check_next(Head::EMPTY, 1, &Head::EMPTY.hash), Ok(()));
    }

    #[test]
    fn another_seq_is_a_gap_and_another_hash_a_broken_link() {
        assert_eq!(
            check_next(AT, 9, &[7u8; 32]),
            Err(Break::Gap {
                expected: 8,
                found: 9
            })
        );
        assert_eq!(
            check_next(AT, 7, &[7u8; 32]),
            Err(Break::Gap {
                expected: 8,
                found: 7
            })
        );
        assert_eq!(
            check_next(AT, 8, &[6u8; 32]),
            Err(Break::Link { seq: 8, prev: 7 })
        );
    }
}
