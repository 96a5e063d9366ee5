//! Walking the log and proving it intact.
//!
//! The chain walk recomputes every link from the bytes as stored. The index
//! check proves the stream and request indexes agree with the events: every
//! event has exactly one stream entry naming its stream and version, every
//! request's first event has its request entry, every stream's versions run
//! 1..=n without a hole, and no entry points outside the log. Over a long
//! range it is a merge (fingerprints gathered during the chain walk, then
//! one sequential scan of each index tree); over a short tail, one random
//! read per entry.

use std::time::{Duration, Instant};

use super::record::{chain_hash, peek_chain_fields, split_stored, Hash, Record};
use super::store::{decode_stored, stream_key, u64_from, Head, IdempotencyEntry, Store, StoreError};

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
    pub(crate) fn at(seq: u64, reason: impl Into<String>) -> Broken {
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
    let head = walk_chain(store, from, None, None, progress)?;
    check_meta_head(store, head)?;
    Ok(ChainReport {
        events: head.seq - from.seq,
        head,
        elapsed: started.elapsed(),
    })
}

/// Walks the chain from `from` through `to` exactly, without looking past it
/// (the running tail verifier: records after the published head may be
/// committed but not yet published, and the head metadata may be ahead).
pub(crate) fn verify_range(store: &Store, from: Head, to: u64) -> Result<ChainReport, VerifyError> {
    let started = Instant::now();
    let head = walk_chain(store, from, Some(to), None, &mut |_| {})?;
    Ok(ChainReport {
        events: head.seq - from.seq,
        head,
        elapsed: started.elapsed(),
    })
}

/// The chain walk: every record after `from`, through `to` (or to the end of
/// the tree), recomputed from its stored bytes. With `expect`, also records
/// what the index entries of each event must say.
fn walk_chain(
    store: &Store,
    from: Head,
    to: Option<u64>,
    mut expect: Option<&mut IndexExpectations>,
    progress: &mut dyn FnMut(u64),
) -> Result<Head, VerifyError> {
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
    let range = match to {
        Some(to) => store
            .events
            .range((from.seq + 1).to_be_bytes()..=to.to_be_bytes()),
        None => store.events.range((from.seq + 1).to_be_bytes()..),
    };
    for kv in range {
        let (k, v) = kv?;
        let key = u64_from(&k, "event key")?;
        let expect_seq = head.seq + 1;
        if key != expect_seq {
            return Err(Broken::at(expect_seq, format!("record missing (next record is seq {key})")).into());
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
        if let Some(expect) = expect.as_deref_mut() {
            let decoded = Record::decode(record).map_err(|e| Broken::at(key, e.to_string()))?;
            expect.push(&decoded);
        }
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
    if let Some(to) = to {
        if head.seq != to {
            return Err(Broken::at(head.seq + 1, "record missing").into());
        }
    }
    Ok(head)
}

/// The head metadata must name the position the chain ends at.
fn check_meta_head(store: &Store, head: Head) -> Result<(), VerifyError> {
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
    Ok(())
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

/// What the index entries of each event in `(from, from + len]` must say,
/// as keyed 32-bit fingerprints (8 bytes per event, plus two bits), so that
/// each index tree can be checked in one sequential scan instead of one
/// random read per event. The key is drawn at random for each check, so a
/// forger cannot aim for a colliding fingerprint; an honest mismatch passes
/// unnoticed with probability 2^-32.
pub(crate) struct IndexExpectations {
    from: u64,
    key: [u8; 32],
    /// Per event: fingerprint of its `streams` key (stream id, version).
    streams: Vec<u32>,
    /// Per event: fingerprint of (request id, parts) for a request's first
    /// event, of a value no entry can produce for the others.
    requests: Vec<u32>,
    /// Per event: is it the first event of its request (one entry expected)?
    firsts: Bits,
}

impl IndexExpectations {
    pub(crate) fn new(from: u64, capacity: u64) -> Result<IndexExpectations, StoreError> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        let capacity = capacity.min(u32::MAX as u64) as usize;
        Ok(IndexExpectations {
            from,
            key,
            streams: Vec::with_capacity(capacity),
            requests: Vec::with_capacity(capacity),
            firsts: Bits::new(capacity),
        })
    }

    fn fingerprint(&self, tag: u8, a: &[u8], b: &[u8]) -> u32 {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&[tag]);
        h.update(a);
        h.update(b);
        u32::from_le_bytes(h.finalize().as_bytes()[..4].try_into().expect("4"))
    }

    /// Records the next event (the walk calls it in seq order).
    fn push(&mut self, r: &Record) {
        debug_assert_eq!(r.seq, self.from + self.streams.len() as u64 + 1);
        let stream = self.fingerprint(b's', &stream_key(&r.stream_id, r.stream_version), &[]);
        let request = if r.part == 0 {
            self.firsts.set(self.streams.len());
            self.fingerprint(b'r', &r.parts.to_be_bytes(), r.request_id.as_bytes())
        } else {
            self.fingerprint(b'p', &r.part.to_be_bytes(), r.request_id.as_bytes())
        };
        self.streams.push(stream);
        self.requests.push(request);
    }

    /// Index of `seq` in the vectors, if it is in the checked range.
    fn slot(&self, seq: u64) -> Option<usize> {
        (seq > self.from && seq - self.from <= self.streams.len() as u64)
            .then(|| (seq - self.from - 1) as usize)
    }
}

/// A fixed-size bit set.
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Bits {
        Bits(vec![0; len.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        if i / 64 >= self.0.len() {
            self.0.resize(i / 64 + 1, 0);
        }
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// Proves the `streams` and `requests` indexes agree with the events whose
/// expectations were recorded by the chain walk (the whole log, or the tail
/// after the verified position), `to` being the end of the log: one
/// sequential scan of each index tree.
///
/// Over the whole tree: every stream's versions run 1..=n without a hole and
/// no entry points outside the log. For each event of the checked range:
/// exactly one stream entry names it and carries its stream and version, and
/// a request's first event has the entry of its request id, with its count.
fn check_indexes(
    store: &Store,
    expect: &IndexExpectations,
    to: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<IndexReport, VerifyError> {
    let started = Instant::now();
    // The two scans are independent and mostly wait for the disk: run them
    // side by side. A break in the stream index is reported first, as a
    // sequential check would.
    let (streams, requests) = std::thread::scope(|scope| {
        let requests = scope.spawn(|| check_requests(store, expect, to));
        let streams = check_streams(store, expect, to, progress);
        let requests = requests
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (streams, requests)
    });
    Ok(IndexReport {
        stream_entries: streams?,
        request_entries: requests?,
        elapsed: started.elapsed(),
    })
}

/// The `streams` half of [`check_indexes`]: returns the number of entries.
fn check_streams(
    store: &Store,
    expect: &IndexExpectations,
    to: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, VerifyError> {
    let len = expect.streams.len();
    let mut seen = Bits::new(len);
    let mut entries = 0u64;
    let mut current: Option<(Vec<u8>, u64)> = None;
    for kv in store.streams.iter() {
        let (k, v) = kv?;
        let seq = u64_from(&v, "stream index value")?;
        let bad = |reason: &str| -> VerifyError { Broken::at(seq, format!("stream index: {reason}")).into() };
        if k.len() < 10 || k[0] as usize + 9 != k.len() {
            return Err(bad("malformed key"));
        }
        let (prefix, version) = k.split_at(k.len() - 8);
        let version = u64_from(version, "stream version")?;
        let expected_version = match &current {
            Some((p, v)) if p.as_slice() == prefix => v + 1,
            _ => 1,
        };
        if version != expected_version {
            return Err(bad(&format!(
                "stream version {version} where {expected_version} was expected"
            )));
        }
        if seq == 0 || seq > to {
            return Err(bad("points outside the log"));
        }
        if let Some(i) = expect.slot(seq) {
            if expect.streams[i] != expect.fingerprint(b's', &k, &[]) {
                return Err(bad("entry names a different stream or version than the event"));
            }
            if seen.get(i) {
                return Err(bad("two entries name this event"));
            }
            seen.set(i);
        }
        match &mut current {
            Some((p, v)) if p.as_slice() == prefix => *v = version,
            _ => current = Some((prefix.to_vec(), version)),
        }
        entries += 1;
        if entries & 0xFFFF == 0 {
            progress(entries);
        }
    }
    if let Some(i) = (0..len).find(|&i| !seen.get(i)) {
        return Err(Broken::at(
            expect.from + 1 + i as u64,
            "stream index: no entry for this event",
        )
        .into());
    }
    Ok(entries)
}

/// The `requests` half of [`check_indexes`]: returns the number of entries.
fn check_requests(store: &Store, expect: &IndexExpectations, to: u64) -> Result<u64, VerifyError> {
    let len = expect.streams.len();
    let mut seen = Bits::new(len);
    let mut requests = 0u64;
    for kv in store.requests.iter() {
        let (k, v) = kv?;
        let entry = IdempotencyEntry::from_bytes(&v)?;
        let bad = |reason: &str| -> VerifyError {
            Broken::at(entry.first_seq, format!("request index: {reason}")).into()
        };
        if entry.first_seq == 0 || entry.first_seq > to || entry.count == 0 {
            return Err(bad("points outside the log"));
        }
        if let Some(i) = expect.slot(entry.first_seq) {
            if expect.requests[i] != expect.fingerprint(b'r', &entry.count.to_be_bytes(), &k) {
                return Err(bad("entry does not match the events of its request"));
            }
            if seen.get(i) {
                return Err(bad("two entries name this request"));
            }
            seen.set(i);
        }
        requests += 1;
    }
    if let Some(i) = (0..len).find(|&i| expect.firsts.get(i) && !seen.get(i)) {
        return Err(Broken::at(
            expect.from + 1 + i as u64,
            "request index: no entry for this event's request",
        )
        .into());
    }
    Ok(requests)
}

/// Checks the index entries of the events in `(from, to]` with one random
/// read per entry: for a short tail, cheaper than scanning both trees.
pub(crate) fn verify_tail_indexes(store: &Store, from: u64, to: u64) -> Result<(), VerifyError> {
    for kv in store.events.range((from + 1).to_be_bytes()..=to.to_be_bytes()) {
        let (k, v) = kv?;
        let seq = u64_from(&k, "event key")?;
        let r = decode_stored(seq, &v)
            .map_err(|e| Broken::at(seq, e.to_string()))?
            .record;
        let key = stream_key(&r.stream_id, r.stream_version);
        match store.streams.get(key)? {
            Some(s) if u64_from(&s, "stream index value")? == seq => {}
            _ => return Err(Broken::at(seq, "stream index: no entry for this event").into()),
        }
        if r.part == 0 {
            let entry = store.idempotency_entry(&r.request_id)?;
            if entry.map(|e| (e.first_seq, e.count)) != Some((seq, r.parts)) {
                return Err(Broken::at(seq, "request index: no entry for this event's request").into());
            }
        }
    }
    Ok(())
}

/// A tail at least this long, and at least 1/[`MERGE_TAIL_FRACTION`] of the
/// log, has its index entries checked by scanning the index trees rather
/// than by one random read per event (which thrashes once the trees outgrow
/// memory: 24.6M random reads did not finish in 30 minutes on a 45 GB store).
const MERGE_TAIL_MIN: u64 = 65_536;
const MERGE_TAIL_FRACTION: u64 = 16;

/// Start-up check: verifies the chain from [`Store::startup_check_from`] to
/// the head, and the index entries of those events, then records the start
/// (verified position, and the run open until a clean stop). The service
/// refuses to serve a log that fails it. While the service runs, the tail
/// verifier keeps the verified position close to the head, so after a clean
/// stop this covers nothing; after a crash, everything that run appended.
pub fn verify_at_startup(store: &Store) -> Result<ChainReport, VerifyError> {
    verify_at_startup_with(store, None)
}

/// [`verify_at_startup`] with the index check forced to the merge (`Some(true)`)
/// or to random reads (`Some(false)`); `None` chooses by the tail's length.
/// Both must find the same breaks (tests run both).
#[doc(hidden)]
pub fn verify_at_startup_with(store: &Store, merge: Option<bool>) -> Result<ChainReport, VerifyError> {
    let started = Instant::now();
    let from = store.startup_check_from()?;
    let tail = store.meta_head()?.seq.saturating_sub(from.seq);
    let merge = merge.unwrap_or(tail >= MERGE_TAIL_MIN && tail * MERGE_TAIL_FRACTION >= from.seq + tail);
    let mut expect = if merge {
        Some(IndexExpectations::new(from.seq, tail)?)
    } else {
        None
    };
    let head = walk_chain(store, from, None, expect.as_mut(), &mut |_| {})?;
    check_meta_head(store, head)?;
    match &expect {
        Some(expect) => {
            check_indexes(store, expect, head.seq, &mut |_| {})?;
        }
        None => verify_tail_indexes(store, from.seq, head.seq)?,
    }
    store.set_opened(head)?;
    Ok(ChainReport {
        events: head.seq - from.seq,
        head,
        elapsed: started.elapsed(),
    })
}

/// Full verification of a stopped store: the whole chain and both indexes.
/// When it passes, the verified position moves to the head, so the next
/// start-up has nothing left to check (e.g. after a bulk import).
pub fn verify_full(
    store: &Store,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(ChainReport, IndexReport), VerifyError> {
    let started = Instant::now();
    let mut expect = IndexExpectations::new(0, store.meta_head()?.seq)?;
    let head = walk_chain(store, Head::EMPTY, None, Some(&mut expect), &mut |n| {
        progress("chain", n)
    })?;
    check_meta_head(store, head)?;
    let chain = ChainReport {
        events: head.seq,
        head,
        elapsed: started.elapsed(),
    };
    let index = check_indexes(store, &expect, head.seq, &mut |n| progress("indexes", n))?;
    if store.verified()?.seq < head.seq {
        store.set_verified(head)?;
    }
    Ok((chain, index))
}

/// Hex of a hash, for reports.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
