//! Walking the log and proving it intact.
//!
//! The chain walk recomputes every link from the bytes as stored, chunk by
//! chunk. The case-file check proves the case files agree with the events:
//! every event up to the position the case files cover is named by exactly
//! one case file, at its stream and version; every request's first event is
//! named by one request mark of its stream; every stream's versions run
//! 1..=n. Events after that position are replayed onto the case files, which
//! proves their versions continue without a hole. Over a long range the
//! check is a merge (fingerprints gathered during the chain walk, then one
//! scan of the case files); over a short tail, one lookup per event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::casefile::{request_tag, CaseFile, CASE_FILE_PREFIX};
use super::chunk::ChunkError;
use super::record::{chain_hash, peek_chain_fields, Hash, RecordView};
use super::store::{chunk_first_seq, chunk_key, Head, Store, StoreError};

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
    /// The log is broken: where, and why.
    #[error(transparent)]
    Broken(#[from] Broken),
    /// The store could not be read.
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
    /// Time the walk took.
    pub elapsed: Duration,
}

/// What a case-file check covered.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexReport {
    /// Case files read.
    pub case_files: u64,
    /// Events the case files name (persisted ones, plus those replayed onto them).
    pub stream_entries: u64,
    /// Request marks (one per request).
    pub request_entries: u64,
    /// Time the check took.
    pub elapsed: Duration,
}

/// Offsets in a v1 record (see docs/LOG_FORMAT.md).
const OFF_RECORDED_AT: usize = 9;
const OFF_PART: usize = 25;

/// Walks the chain from `from` (an already trusted position) to the last
/// chunk, then checks that the head key names the same position.
/// `progress` is called with the last checked seq every 65,536 records.
pub fn verify_chain(
    store: &Store,
    from: Head,
    progress: &mut dyn FnMut(u64),
) -> Result<ChainReport, VerifyError> {
    let started = Instant::now();
    let head = walk_chain_split(store, from, last_seq(store)?, None, progress)?;
    check_meta_head(store, head)?;
    Ok(ChainReport {
        events: head.seq - from.seq,
        head,
        elapsed: started.elapsed(),
    })
}

/// Walks the chain from `from` through `to` exactly, without looking past it
/// (the running tail verifier: records after the published head may be
/// committed but not yet published, and the head key may be ahead).
pub(crate) fn verify_range(store: &Store, from: Head, to: u64) -> Result<ChainReport, VerifyError> {
    let started = Instant::now();
    let head = walk_chain(store, from, Some(to), None, &mut |_| {})?;
    Ok(ChainReport {
        events: head.seq - from.seq,
        head,
        elapsed: started.elapsed(),
    })
}

/// The chain walk: every record after `from`, through `to` (or to the last
/// chunk), recomputed from its stored bytes. With `expect`, also records
/// what the case files must say of each event up to `expect.to`.
fn walk_chain(
    store: &Store,
    from: Head,
    to: Option<u64>,
    expect: Option<&mut IndexExpectations>,
    progress: &mut dyn FnMut(u64),
) -> Result<Head, VerifyError> {
    let start = walk_start(store, from, true)?;
    walk_from(store, start, to, expect, progress, true)
}

/// Where a walk starts: the position after which it checks, and what it
/// must know of the record there (its time, and the parts of its request
/// still to come).
struct WalkStart {
    walk: Walk,
    from: Head,
    /// The first key of the chunk holding `from` (1 for an empty start).
    chunk: u64,
}

/// Reads the record at `from`. `trusted`: `from.hash` is a verified hash the
/// stored one must equal; otherwise `from.hash` is ignored and the stored
/// hash is taken (the part of a split walk, checked by the part before it).
fn walk_start(store: &Store, from: Head, trusted: bool) -> Result<WalkStart, VerifyError> {
    let mut walk = Walk {
        head: from,
        last_time: i64::MIN,
        open_request: None,
    };
    if from.seq == 0 {
        return Ok(WalkStart { walk, from, chunk: 1 });
    }
    let (first, chunk) = store
        .chunk_of(from.seq)
        .map_err(|e| broken_chunk(from.seq, e))?
        .ok_or_else(|| Broken::at(from.seq, "record missing"))?;
    let (record, hash) = chunk
        .entry((from.seq - first) as usize)
        .map_err(|e| Broken::at(from.seq, e.to_string()))?;
    if trusted && hash != from.hash {
        return Err(Broken::at(from.seq, "hash differs from the last verified hash").into());
    }
    if record.len() < OFF_PART + 4 {
        return Err(Broken::at(from.seq, "record truncated").into());
    }
    walk.head.hash = hash;
    walk.last_time = i64::from_be_bytes(
        record[OFF_RECORDED_AT..OFF_RECORDED_AT + 8]
            .try_into()
            .expect("8"),
    );
    let part = u16::from_be_bytes(record[OFF_PART..OFF_PART + 2].try_into().expect("2"));
    let parts = u16::from_be_bytes(record[OFF_PART + 2..OFF_PART + 4].try_into().expect("2"));
    if part + 1 < parts {
        walk.open_request = Some((parts - part - 1, parts));
    }
    Ok(WalkStart {
        walk,
        from: walk.head,
        chunk: first,
    })
}

/// The chain walk from a start, through `to` (or to the last chunk).
fn walk_from(
    store: &Store,
    start: WalkStart,
    to: Option<u64>,
    mut expect: Option<&mut IndexExpectations>,
    progress: &mut dyn FnMut(u64),
    at_end: bool,
) -> Result<Head, VerifyError> {
    let WalkStart {
        mut walk,
        from,
        chunk: start,
    } = start;
    let end = chunk_key(to.unwrap_or(u64::MAX));
    for kv in store.log.range(chunk_key(start)..=end) {
        let (k, v) = kv?;
        let Some(first) = chunk_first_seq(&k) else {
            return Err(Broken::at(walk.head.seq + 1, "malformed chunk key").into());
        };
        let chunk = super::chunk::Chunk::parse(v).map_err(|e| {
            let at = match e {
                ChunkError::BadOffset(i) => first + i as u64,
                _ => first,
            };
            Broken::at(at.max(walk.head.seq + 1), format!("malformed chunk: {e}"))
        })?;
        for i in 0..chunk.len() {
            let seq = first + i as u64;
            if seq <= from.seq {
                continue;
            }
            if to.is_some_and(|to| seq > to) {
                break;
            }
            let expect_seq = walk.head.seq + 1;
            if seq != expect_seq {
                return Err(
                    Broken::at(expect_seq, format!("record missing (next record is seq {seq})")).into(),
                );
            }
            let (record, stored_hash) = chunk.entry(i).map_err(|e| Broken::at(seq, e.to_string()))?;
            walk.check(seq, record, stored_hash)?;
            if let Some(expect) = expect.as_deref_mut() {
                if seq <= expect.to {
                    let view = RecordView::parse(record).map_err(|e| Broken::at(seq, e.to_string()))?;
                    expect.push(&view);
                }
            }
            if seq & 0xFFFF == 0 {
                progress(seq);
            }
        }
    }
    // A part of a split walk may end inside a request: the next part goes on with it.
    if let (Some((remaining, _)), true) = (walk.open_request, at_end) {
        return Err(Broken::at(
            walk.head.seq + 1,
            format!("request cut short: {remaining} events missing"),
        )
        .into());
    }
    if let Some(to) = to {
        if walk.head.seq != to {
            return Err(Broken::at(walk.head.seq + 1, "record missing").into());
        }
    }
    Ok(walk.head)
}

/// A walk over at least this many records is split over several threads.
const SPLIT_WALK_MIN: u64 = 1 << 20;
/// Threads of a split walk, at most.
const SPLIT_WALK_THREADS_MAX: usize = 4;
/// Tests force every walk of this process into this many parts (0: by length).
static SPLIT_PARTS_FORCED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Splits every later chain walk of this process into `parts` parts
/// whatever its length (0 restores the default: split only long walks),
/// so tests can prove a split walk finds the breaks one walk finds.
#[doc(hidden)]
pub fn force_split_walks(parts: usize) {
    SPLIT_PARTS_FORCED.store(parts, std::sync::atomic::Ordering::Relaxed);
}

/// [`walk_chain`] from `from` through `to`, split into contiguous parts
/// walked side by side. Part i starts after the record that ends part
/// i - 1, taking that record's stored hash as its previous hash; part i - 1
/// proves that stored hash by recomputing it, so the chain is checked
/// link by link as in one walk. The first break of the lowest part that
/// breaks is the first break of the log. With `expect`, each part gathers
/// its own expectations, appended in order.
fn walk_chain_split(
    store: &Store,
    from: Head,
    to: u64,
    expect: Option<&mut IndexExpectations>,
    progress: &mut dyn FnMut(u64),
) -> Result<Head, VerifyError> {
    let len = to.saturating_sub(from.seq);
    let threads = match SPLIT_PARTS_FORCED.load(std::sync::atomic::Ordering::Relaxed) {
        0 if len < SPLIT_WALK_MIN => 1,
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(SPLIT_WALK_THREADS_MAX),
        forced => forced,
    };
    if threads < 2 || len < threads as u64 {
        return walk_chain(store, from, Some(to), expect, progress);
    }
    let bounds: Vec<u64> = (0..=threads as u64)
        .map(|i| from.seq + len * i / threads as u64)
        .collect();
    let key = expect.as_ref().map(|e| e.key);
    let expect_to = expect.as_ref().map(|e| e.to).unwrap_or(0);
    let results: Vec<Result<(Head, Option<IndexExpectations>), VerifyError>> = std::thread::scope(|scope| {
        let parts: Vec<_> = (0..threads)
            .map(|i| {
                let (lo, hi) = (bounds[i], bounds[i + 1]);
                scope.spawn(
                    move || -> Result<(Head, Option<IndexExpectations>), VerifyError> {
                        let start = if i == 0 {
                            walk_start(store, from, true)?
                        } else {
                            walk_start(
                                store,
                                Head {
                                    seq: lo,
                                    hash: [0; 32],
                                },
                                false,
                            )?
                        };
                        let mut part_expect =
                            key.map(|key| IndexExpectations::with_key(key, lo, expect_to.max(lo)));
                        let last = i + 1 == threads;
                        let head =
                            walk_from(store, start, Some(hi), part_expect.as_mut(), &mut |_| {}, last)?;
                        Ok((head, part_expect))
                    },
                )
            })
            .collect();
        parts
            .into_iter()
            .map(|p| p.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let mut head = from;
    let mut expect = expect;
    for result in results {
        let (part_head, part_expect) = result?;
        if let (Some(all), Some(part)) = (expect.as_deref_mut(), part_expect) {
            all.append(part);
        }
        head = part_head;
        progress(head.seq);
    }
    Ok(head)
}

/// The last seq the chunks hold (a malformed last chunk is a break).
fn last_seq(store: &Store) -> Result<u64, VerifyError> {
    store.last_stored_seq().map_err(|e| broken_chunk(0, e))
}

fn broken_chunk(seq: u64, e: StoreError) -> VerifyError {
    match e {
        StoreError::CorruptChunk { seq: s, source } => {
            Broken::at(s.max(seq), format!("malformed chunk: {source}")).into()
        }
        other => other.into(),
    }
}

/// The state of a chain walk.
#[derive(Clone, Copy)]
struct Walk {
    head: Head,
    last_time: i64,
    /// Parts still expected of the current request: (remaining, parts).
    open_request: Option<(u16, u16)>,
}

impl Walk {
    /// Checks record `seq` (its bytes and stored hash) against the walk so far.
    fn check(&mut self, seq: u64, record: &[u8], stored_hash: Hash) -> Result<(), Broken> {
        let (seq_field, prev) = peek_chain_fields(record).map_err(|e| Broken::at(seq, e.to_string()))?;
        if seq_field != seq {
            return Err(Broken::at(seq, format!("record says seq {seq_field}")));
        }
        if prev != self.head.hash {
            return Err(Broken::at(seq, "previous-hash link mismatch"));
        }
        let hash = chain_hash(&self.head.hash, record);
        if hash != stored_hash {
            return Err(Broken::at(seq, "hash mismatch"));
        }
        let time = i64::from_be_bytes(
            record[OFF_RECORDED_AT..OFF_RECORDED_AT + 8]
                .try_into()
                .expect("8"),
        );
        if time < self.last_time {
            return Err(Broken::at(seq, "recorded_at goes backwards"));
        }
        self.last_time = time;
        let part = u16::from_be_bytes(record[OFF_PART..OFF_PART + 2].try_into().expect("2"));
        let parts = u16::from_be_bytes(record[OFF_PART + 2..OFF_PART + 4].try_into().expect("2"));
        self.open_request = check_parts(seq, self.open_request, part, parts)?;
        self.head = Head { seq, hash };
        Ok(())
    }
}

/// The head key must name the position the chain ends at.
fn check_meta_head(store: &Store, head: Head) -> Result<(), VerifyError> {
    let meta = store.meta_head()?;
    if meta.seq != head.seq {
        return Err(Broken::at(
            meta.seq.min(head.seq) + 1,
            format!("log ends at seq {} but the head key says {}", head.seq, meta.seq),
        )
        .into());
    }
    if meta.hash != head.hash {
        return Err(Broken::at(head.seq, "the head key's hash differs from the chain").into());
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

/// What the case files must say of each event in `(from, to]`, as keyed
/// 32-bit fingerprints (8 bytes per event, plus a bit), so that the case
/// files can be checked in one scan instead of one lookup per event. The
/// key is drawn at random for each check, so a forger cannot aim for a
/// colliding fingerprint; an honest mismatch passes unnoticed with
/// probability 2^-32.
pub(crate) struct IndexExpectations {
    from: u64,
    /// The last event the persisted case files cover.
    to: u64,
    key: [u8; 32],
    /// Per event: fingerprint of (stream id, version).
    streams: Vec<u32>,
    /// Per event: for a request's first event, fingerprint of (stream id,
    /// version, request tag); for the others, of a value no mark produces.
    requests: Vec<u32>,
    /// Per event: is it the first event of its request (one mark expected)?
    firsts: Bits,
}

impl IndexExpectations {
    pub(crate) fn new(from: u64, to: u64) -> Result<IndexExpectations, StoreError> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        let capacity = to.saturating_sub(from).min(u32::MAX as u64) as usize;
        Ok(IndexExpectations {
            from,
            to,
            key,
            streams: Vec::with_capacity(capacity),
            requests: Vec::with_capacity(capacity),
            firsts: Bits::new(capacity),
        })
    }

    /// Expectations for a part of a split walk, with the whole walk's key.
    fn with_key(key: [u8; 32], from: u64, to: u64) -> IndexExpectations {
        IndexExpectations {
            from,
            to,
            key,
            streams: Vec::new(),
            requests: Vec::new(),
            firsts: Bits::new(0),
        }
    }

    /// Appends the expectations of the part that follows this one.
    fn append(&mut self, next: IndexExpectations) {
        if next.streams.is_empty() {
            return;
        }
        debug_assert_eq!(next.from, self.from + self.streams.len() as u64);
        let base = self.streams.len();
        for i in 0..next.streams.len() {
            if next.firsts.get(i) {
                self.firsts.set(base + i);
            }
        }
        self.streams.extend(next.streams);
        self.requests.extend(next.requests);
    }

    fn fingerprint(&self, tag: u8, stream: &str, version: u64, extra: &[u8]) -> u32 {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&[tag]);
        h.update(&(stream.len() as u64).to_be_bytes());
        h.update(stream.as_bytes());
        h.update(&version.to_be_bytes());
        h.update(extra);
        u32::from_le_bytes(h.finalize().as_bytes()[..4].try_into().expect("4"))
    }

    /// Records the next event (the walk calls it in seq order).
    fn push(&mut self, r: &RecordView<'_>) {
        debug_assert_eq!(r.seq, self.from + self.streams.len() as u64 + 1);
        let stream = self.fingerprint(b's', r.stream_id, r.stream_version, &[]);
        let request = if r.part == 0 {
            self.firsts.set(self.streams.len());
            self.fingerprint(b'r', r.stream_id, r.stream_version, &request_tag(r.request_id))
        } else {
            self.fingerprint(b'p', r.stream_id, r.stream_version, &[])
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

/// Proves the persisted case files agree with the events whose
/// expectations the chain walk recorded: one scan of every case file.
/// Over every case file: seqs and request versions increase, and nothing
/// is named past the position the case files cover. For each event of the
/// checked range: exactly one case file names it at its stream and
/// version, and a request's first event has its request's mark.
fn check_case_files(
    store: &Store,
    expect: &IndexExpectations,
    progress: &mut dyn FnMut(u64),
) -> Result<IndexReport, VerifyError> {
    let started = Instant::now();
    let len = expect.streams.len();
    let (mut seen, mut seen_requests) = (Bits::new(len), Bits::new(len));
    let mut report = IndexReport::default();
    for kv in store.log.scan_prefix([CASE_FILE_PREFIX]) {
        let (k, v) = kv?;
        let stream = std::str::from_utf8(&k[1..])
            .map_err(|_| Broken::at(expect.from + 1, "case file: key is not UTF-8"))?;
        let cf = CaseFile::decode(&v)
            .map_err(|e| Broken::at(expect.from + 1, format!("case file of {stream}: {e}")))?;
        let bad = |seq: u64, reason: &str| -> VerifyError {
            Broken::at(seq, format!("case file: {reason}")).into()
        };
        for (i, &seq) in cf.seqs.iter().enumerate() {
            if seq > expect.to {
                return Err(bad(seq, "names an event past the position the case files cover"));
            }
            if let Some(s) = expect.slot(seq) {
                if expect.streams[s] != expect.fingerprint(b's', stream, i as u64 + 1, &[]) {
                    return Err(bad(seq, "names a different stream or version than the event"));
                }
                if seen.get(s) {
                    return Err(bad(seq, "two case files name this event"));
                }
                seen.set(s);
            }
        }
        for mark in &cf.requests {
            let seq = cf.seqs[mark.first_version as usize - 1];
            if let Some(s) = expect.slot(seq) {
                if expect.requests[s] != expect.fingerprint(b'r', stream, mark.first_version, &mark.tag) {
                    return Err(bad(seq, "request mark does not match the events of its request"));
                }
                seen_requests.set(s);
            }
        }
        report.case_files += 1;
        report.stream_entries += cf.seqs.len() as u64;
        report.request_entries += cf.requests.len() as u64;
        if report.case_files & 0xFFFF == 0 {
            progress(report.case_files);
        }
    }
    if let Some(i) = (0..len).find(|&i| !seen.get(i)) {
        return Err(Broken::at(
            expect.from + 1 + i as u64,
            "case file: no case file names this event",
        )
        .into());
    }
    if let Some(i) = (0..len).find(|&i| expect.firsts.get(i) && !seen_requests.get(i)) {
        return Err(Broken::at(
            expect.from + 1 + i as u64,
            "case file: no request mark for this event's request",
        )
        .into());
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Checks that every event in `(from, to]` is where its stream's case file
/// (in memory or persisted) says, with one lookup per event: for a short tail.
pub(crate) fn verify_tail_case_files(store: &Store, from: u64, to: u64) -> Result<(), VerifyError> {
    if from >= to {
        return Ok(());
    }
    let mut files: HashMap<String, std::sync::Arc<CaseFile>> = HashMap::new();
    let mut result = Ok(());
    store.for_each_chunk(from + 1, to, |first, chunk| {
        for i in 0..chunk.len() {
            let seq = first + i as u64;
            if seq <= from || seq > to || result.is_err() {
                continue;
            }
            let r = super::store::decode_entry(chunk, first, seq)?.record;
            let cf = match files.get(&r.stream_id) {
                Some(cf) => cf.clone(),
                None => {
                    let cf = match store.case_file(&r.stream_id) {
                        Ok(cf) => cf.unwrap_or_default(),
                        // A case file that does not decode is a break, named as the merge names it.
                        Err(StoreError::CorruptMeta(reason)) => {
                            result = Err(Broken::at(
                                from + 1,
                                format!("case file of {}: {reason}", r.stream_id),
                            ));
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    files.insert(r.stream_id.clone(), cf.clone());
                    cf
                }
            };
            let at = r.stream_version as usize;
            if at == 0 || cf.seqs.get(at - 1) != Some(&seq) {
                result = Err(Broken::at(seq, "case file: no case file names this event"));
            } else if r.part == 0
                && !cf
                    .requests_tagged(&r.request_id)
                    .any(|m| m.first_version == r.stream_version)
            {
                result = Err(Broken::at(
                    seq,
                    "case file: no request mark for this event's request",
                ));
            }
        }
        Ok(())
    })?;
    Ok(result?)
}

/// Replays the events in `(at, to]` onto the persisted case files: each
/// event's stream version must be its case file's version plus one, and
/// `at` must be a position of the chain. Returns the case files the replay
/// changed (the start-up makes them the writer's in-memory case files).
pub(crate) fn replay_case_files(
    store: &Store,
    at: Head,
    to: Head,
) -> Result<HashMap<String, CaseFile>, VerifyError> {
    if at.seq > to.seq {
        return Err(Broken::at(to.seq + 1, "the case files cover events past the head").into());
    }
    if at.seq > 0 {
        let ev = store
            .get_unpublished(at.seq)?
            .ok_or_else(|| Broken::at(at.seq, "record missing"))?;
        if ev.hash != at.hash {
            return Err(Broken::at(
                at.seq,
                "the case files cover a position whose hash differs from the chain",
            )
            .into());
        }
    }
    let mut files: HashMap<String, CaseFile> = HashMap::new();
    if at.seq == to.seq {
        return Ok(files);
    }
    let mut result = Ok(());
    store.for_each_chunk(at.seq + 1, to.seq, |first, chunk| {
        for i in 0..chunk.len() {
            let seq = first + i as u64;
            if seq <= at.seq || seq > to.seq || result.is_err() {
                continue;
            }
            let r = super::store::decode_entry(chunk, first, seq)?.record;
            if !files.contains_key(&r.stream_id) {
                let cf = store.case_files.get_persisted(&r.stream_id)?.unwrap_or_default();
                files.insert(r.stream_id.clone(), cf);
            }
            let cf = files.get_mut(&r.stream_id).expect("inserted above");
            if r.stream_version != cf.version() + 1 {
                result = Err(Broken::at(
                    seq,
                    format!(
                        "stream version {} where {} was expected",
                        r.stream_version,
                        cf.version() + 1
                    ),
                ));
                continue;
            }
            cf.push(seq, r.part, &r.request_id);
        }
        Ok(())
    })?;
    result?;
    Ok(files)
}

/// A tail at least this long, and at least 1/[`MERGE_TAIL_FRACTION`] of the
/// log, has its case files checked by one scan of every case file rather
/// than by one lookup per event (which thrashes once they outgrow memory).
const MERGE_TAIL_MIN: u64 = 65_536;
const MERGE_TAIL_FRACTION: u64 = 16;

/// What the start-up check found: the chain report and the case files
/// replayed from the log after the position the persisted ones cover.
#[derive(Debug)]
pub struct Startup {
    /// The chain check of the tail.
    pub report: ChainReport,
    /// Case files replayed from the log after the persisted position, by stream.
    pub replayed: HashMap<String, CaseFile>,
}

/// Start-up check: verifies the chain from [`Store::startup_check_from`] to
/// the head and the case files of those events, replays the events after
/// the persisted case files' position, then records the start (verified
/// position, and the run open until a clean stop). The service refuses to
/// serve a log that fails it. While the service runs, the tail verifier
/// keeps the verified position close to the head, so after a clean stop
/// this covers nothing; after a crash, everything that run appended.
pub fn verify_at_startup(store: &Store) -> Result<Startup, VerifyError> {
    verify_at_startup_with(store, None)
}

/// [`verify_at_startup`] with the case-file check forced to the merge
/// (`Some(true)`) or to lookups (`Some(false)`); `None` chooses by the
/// tail's length. Both must find the same breaks (tests run both).
#[doc(hidden)]
pub fn verify_at_startup_with(store: &Store, merge: Option<bool>) -> Result<Startup, VerifyError> {
    let started = Instant::now();
    let from = store.startup_check_from()?;
    let cases_at = store.case_files_at()?;
    let tail = store.meta_head()?.seq.saturating_sub(from.seq);
    let merge = merge.unwrap_or(tail >= MERGE_TAIL_MIN && tail * MERGE_TAIL_FRACTION >= from.seq + tail);
    let mut expect = if merge {
        Some(IndexExpectations::new(from.seq, cases_at.seq.max(from.seq))?)
    } else {
        None
    };
    let head = walk_chain_split(store, from, last_seq(store)?, expect.as_mut(), &mut |_| {})?;
    check_meta_head(store, head)?;
    let replayed = replay_case_files(store, cases_at, head)?;
    match &expect {
        Some(expect) => {
            check_case_files(store, expect, &mut |_| {})?;
        }
        None => verify_tail_case_files(store, from.seq, cases_at.seq.max(from.seq))?,
    }
    store.set_opened(head)?;
    Ok(Startup {
        report: ChainReport {
            events: head.seq - from.seq,
            head,
            elapsed: started.elapsed(),
        },
        replayed,
    })
}

/// Full verification of a stopped store: the whole chain and every case
/// file. When it passes, the verified position moves to the head, so the
/// next start-up has nothing left to check (e.g. after a migration).
pub fn verify_full(
    store: &Store,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(ChainReport, IndexReport), VerifyError> {
    let started = Instant::now();
    let cases_at = store.case_files_at()?;
    let mut expect = IndexExpectations::new(0, cases_at.seq)?;
    let head = walk_chain_split(
        store,
        Head::EMPTY,
        last_seq(store)?,
        Some(&mut expect),
        &mut |n| progress("chain", n),
    )?;
    check_meta_head(store, head)?;
    let chain = ChainReport {
        events: head.seq,
        head,
        elapsed: started.elapsed(),
    };
    let replayed = replay_case_files(store, cases_at, head)?;
    let mut index = check_case_files(store, &expect, &mut |n| progress("case files", n))?;
    index.stream_entries += head.seq - cases_at.seq;
    index.request_entries += replayed
        .values()
        .map(|cf| {
            cf.requests
                .iter()
                .filter(|m| cf.seqs[m.first_version as usize - 1] > cases_at.seq)
                .count() as u64
        })
        .sum::<u64>();
    if store.verified()?.seq < head.seq {
        store.set_verified(head)?;
    }
    Ok((chain, index))
}
