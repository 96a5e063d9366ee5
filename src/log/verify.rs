//! Walking the log and proving it intact.
//!
//! The chain walk recomputes every link from the bytes as stored. The index
//! walk proves the stream and request indexes agree with the events: every
//! index entry names an event that carries the same stream, version and
//! request, every stream's versions run 1..=n without a hole, and there are
//! exactly as many stream entries as events.

use std::time::{Duration, Instant};

use super::record::{chain_hash, peek_chain_fields, split_stored, Hash, Record};
use super::store::{decode_stored, u64_from, Head, IdempotencyEntry, Store, StoreError};

/// The first place the log is not what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broken at seq {seq}: {reason}")]
pub struct Broken {
    /// The first bad sequence number.
    pub seq: u64,
    /// What is wrong there.
    pub reason: String,
}

impl Broken {
    fn at(seq: u64, reason: impl Into<String>) -> Broken {
        Broken {
            seq,
            reason: reason.into(),
        }
    }
}

/// Either the log is broken, or it could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Broken(#[from] Broken),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sled::Error> for VerifyError {
    fn from(e: sled::Error) -> Self {
        VerifyError::Store(StoreError::Sled(e))
    }
}

/// What a chain walk covered.
#[derive(Debug, Clone, Copy)]
pub struct ChainReport {
    /// Records checked in this walk.
    pub events: u64,
    /// The head the walk ended at.
    pub head: Head,
    pub elapsed: Duration,
}

/// What an index walk covered.
#[derive(Debug, Clone, Copy)]
pub struct IndexReport {
    pub stream_entries: u64,
    pub request_entries: u64,
    pub elapsed: Duration,
}

/// Offsets in a v1 record (see docs/LOG_FORMAT.md).
const OFF_RECORDED_AT: usize = 9;
const OFF_PART: usize = 25;

/// Walks the chain from `from` (an already trusted position) to the end of the
/// `events` tree, then checks that the head metadata names the same position.
/// `progress` is called with the last checked seq every 65,536 records.
pub fn verify_chain(
    store: &Store,
    from: Head,
    progress: &mut dyn FnMut(u64),
) -> Result<ChainReport, VerifyError> {
    let started = Instant::now();
    let mut head = from;
    let mut last_time = i64::MIN;
    // Parts still expected of the current request: (remaining, parts).
    let mut open_request: Option<(u16, u16)> = None;
    if from.seq > 0 {
        let ev = store
            .get(from.seq)?
            .ok_or_else(|| Broken::at(from.seq, "record missing"))?;
        if ev.hash != from.hash {
            return Err(Broken::at(from.seq, "hash differs from the last verified hash").into());
        }
        last_time = ev.record.recorded_at_us;
    }
    for kv in store.events.range((from.seq + 1).to_be_bytes()..) {
        let (k, v) = kv?;
        let key = u64_from(&k, "event key")?;
        let expect = head.seq + 1;
        if key != expect {
            return Err(Broken::at(expect, format!("record missing (next record is seq {key})")).into());
        }
        let (record, stored_hash) = split_stored(&v).map_err(|e| Broken::at(key, e.to_string()))?;
        let (seq_field, prev) = peek_chain_fields(record).map_err(|e| Broken::at(key, e.to_string()))?;
        if seq_field != key {
            return Err(Broken::at(key, format!("record says seq {seq_field}")).into());
        }
        if prev != head.hash {
            return Err(Broken::at(key, "previous-hash link mismatch").into());
        }
        let hash = chain_hash(&head.hash, record);
        if hash != stored_hash {
            return Err(Broken::at(key, "hash mismatch").into());
        }
        let time = i64::from_be_bytes(
            record[OFF_RECORDED_AT..OFF_RECORDED_AT + 8]
                .try_into()
                .expect("8"),
        );
        if time < last_time {
            return Err(Broken::at(key, "recorded_at goes backwards").into());
        }
        last_time = time;
        let part = u16::from_be_bytes(record[OFF_PART..OFF_PART + 2].try_into().expect("2"));
        let parts = u16::from_be_bytes(record[OFF_PART + 2..OFF_PART + 4].try_into().expect("2"));
        open_request = check_parts(key, open_request, part, parts)?;
        head = Head { seq: key, hash };
        if key & 0xFFFF == 0 {
            progress(key);
        }
    }
    if let Some((remaining, _)) = open_request {
        return Err(Broken::at(
            head.seq + 1,
            format!("request cut short: {remaining} events missing"),
        )
        .into());
    }
    let meta = store.meta_head()?;
    if meta.seq != head.seq {
        return Err(Broken::at(
            meta.seq.min(head.seq) + 1,
            format!("log ends at seq {} but head metadata says {}", head.seq, meta.seq),
        )
        .into());
    }
    if meta.hash != head.hash {
        return Err(Broken::at(head.seq, "head metadata hash differs from the chain").into());
    }
    Ok(ChainReport {
        events: head.seq - from.seq,
        head,
        elapsed: started.elapsed(),
    })
}

/// The events of one request are contiguous: part 0..parts in order.
fn check_parts(
    seq: u64,
    open: Option<(u16, u16)>,
    part: u16,
    parts: u16,
) -> Result<Option<(u16, u16)>, Broken> {
    if parts == 0 || part >= parts {
        return Err(Broken::at(seq, format!("part {part} of {parts} is impossible")));
    }
    match open {
        None if part == 0 => Ok((parts > 1).then_some((parts - 1, parts))),
        None => Err(Broken::at(
            seq,
            format!("part {part} of {parts} without the parts before it"),
        )),
        Some((remaining, n)) if n == parts && part == n - remaining => {
            Ok((remaining > 1).then_some((remaining - 1, n)))
        }
        Some((remaining, n)) => Err(Broken::at(
            seq,
            format!("request cut short: {remaining} of {n} events missing"),
        )),
    }
}

/// Proves the `streams` and `requests` indexes agree with the events.
pub fn verify_indexes(
    store: &Store,
    head: Head,
    progress: &mut dyn FnMut(u64),
) -> Result<IndexReport, VerifyError> {
    let started = Instant::now();
    let mut entries = 0u64;
    let mut current: Option<(Vec<u8>, u64)> = None;
    for kv in store.streams.iter() {
        let (k, v) = kv?;
        let seq = u64_from(&v, "stream index value")?;
        let bad =
            |reason: String| -> VerifyError { Broken::at(seq, format!("stream index: {reason}")).into() };
        if k.len() < 10 || k[0] as usize + 9 != k.len() {
            return Err(bad("malformed key".into()));
        }
        let (prefix, version) = k.split_at(k.len() - 8);
        let version = u64_from(version, "stream version")?;
        let expected_version = match &current {
            Some((p, v)) if p.as_slice() == prefix => v + 1,
            _ => 1,
        };
        if version != expected_version {
            return Err(bad(format!(
                "stream version {version} where {expected_version} was expected"
            )));
        }
        if seq == 0 || seq > head.seq {
            return Err(bad("points outside the log".into()));
        }
        let ev = store
            .get(seq)
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("event missing".into()))?;
        if ev.record.stream_id.as_bytes() != &prefix[1..] || ev.record.stream_version != version {
            return Err(bad(
                "entry names a different stream or version than the event".into()
            ));
        }
        current = Some((prefix.to_vec(), version));
        entries += 1;
        if entries & 0xFFFF == 0 {
            progress(entries);
        }
    }
    if entries != head.seq {
        return Err(Broken::at(
            head.seq,
            format!("stream index has {entries} entries for {} events", head.seq),
        )
        .into());
    }
    let mut requests = 0u64;
    let mut covered = 0u64;
    for kv in store.requests.iter() {
        let (k, v) = kv?;
        let entry = IdempotencyEntry::from_bytes(&v)?;
        let bad = |reason: &str| -> VerifyError {
            Broken::at(entry.first_seq, format!("request index: {reason}")).into()
        };
        for i in 0..entry.count as u64 {
            let ev = store
                .get(entry.first_seq + i)?
                .ok_or_else(|| bad("event missing"))?;
            let r: &Record = &ev.record;
            if r.request_id.as_bytes() != &k[..] || r.part as u64 != i || r.parts != entry.count {
                return Err(bad("entry does not match the events of its request"));
            }
        }
        covered += entry.count as u64;
        requests += 1;
    }
    if covered != head.seq {
        return Err(Broken::at(
            head.seq,
            format!("request index covers {covered} events of {}", head.seq),
        )
        .into());
    }
    Ok(IndexReport {
        stream_entries: entries,
        request_entries: requests,
        elapsed: started.elapsed(),
    })
}

/// Checks the index entries of the events after `from` (used at start-up for the tail).
fn verify_tail_indexes(store: &Store, from: u64) -> Result<(), VerifyError> {
    for kv in store.events.range((from + 1).to_be_bytes()..) {
        let (k, v) = kv?;
        let seq = u64_from(&k, "event key")?;
        let r = decode_stored(seq, &v)
            .map_err(|e| Broken::at(seq, e.to_string()))?
            .record;
        let key = super::store::stream_key(&r.stream_id, r.stream_version);
        match store.streams.get(key)? {
            Some(s) if u64_from(&s, "stream index value")? == seq => {}
            _ => return Err(Broken::at(seq, "stream index entry missing or wrong").into()),
        }
        if r.part == 0 {
            let entry = store.idempotency_entry(&r.request_id)?;
            if entry.map(|e| (e.first_seq, e.count)) != Some((seq, r.parts)) {
                return Err(Broken::at(seq, "request index entry missing or wrong").into());
            }
        }
    }
    Ok(())
}

/// Start-up check: verifies the chain from the last verified position to the
/// head, and the index entries of those events, then records the new verified
/// position. The service refuses to serve a log that fails it.
pub fn verify_at_startup(store: &Store) -> Result<ChainReport, VerifyError> {
    let from = store.verified()?;
    let report = verify_chain(store, from, &mut |_| {})?;
    verify_tail_indexes(store, from.seq)?;
    if report.head != from {
        store.set_verified(report.head)?;
    }
    Ok(report)
}

/// Full verification of a stopped store: the whole chain and both indexes.
pub fn verify_full(
    store: &Store,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(ChainReport, IndexReport), VerifyError> {
    let chain = verify_chain(store, Head::EMPTY, &mut |n| progress("chain", n))?;
    let index = verify_indexes(store, chain.head, &mut |n| progress("indexes", n))?;
    Ok((chain, index))
}

/// Hex of a hash, for reports.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
