//! Case files: one sled value per stream with its version, where its events
//! are, and the requests that appended them.
//!
//! A case file is derived from the log: everything in it can be recomputed
//! from the records. It is therefore kept out of the append's critical path
//! (one random sled key per commit would halve the writer's rate and add
//! 1.5x of disk: ../shared/STORE-MEASUREMENTS.md). The writer keeps the case
//! files it changed in memory (`CaseFiles`'s recent map) from the moment
//! their commit is durable; the case-file follower (`run_follower`) writes
//! them to sled in large batches, together with the position they cover
//! (`cases_at`), and only then drops them from memory. After a crash, the
//! start-up replays the log after `cases_at` into the recent map and checks
//! every event's stream version on the way (docs/LOG_FORMAT.md).
//!
//! Encoding (all varints are LEB128, unsigned):
//! ```text
//! case file = format u8 (0x01) || n varint || n seqs || r varint || r requests
//! seqs      = seq of version 1, then for each next version the difference to the previous seq (> 0)
//! request   = first_version (the first one absolute, then the difference to the previous, > 0)
//!             || tag (8 bytes: BLAKE3("migreg.request-tag.v2\0" || request id)[..8])
//! ```

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::store::{Head, StoreError};
use crate::limits::{CASE_FILES_FLUSH_FILES_MAX, CASE_FILES_FLUSH_INTERVAL_MS, STREAM_EVENTS_MAX};

/// The only case-file format this build writes and reads.
pub const CASE_FILE_FORMAT_V1: u8 = 1;
/// Key prefix of case files in the `log` tree.
pub(crate) const CASE_FILE_PREFIX: u8 = b's';
/// Key of the position the persisted case files cover, in the `log` tree.
pub(crate) const CASES_AT_KEY: &[u8] = b"k";

/// A request recorded in a case file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestMark {
    /// Stream version of the request's first event.
    pub first_version: u64,
    /// [`request_tag`] of its request id.
    pub tag: [u8; 8],
}

/// One stream's case file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaseFile {
    /// The seq of each event, in version order (version = index + 1).
    pub seqs: Vec<u64>,
    /// The requests that appended them, in version order.
    pub requests: Vec<RequestMark>,
}

/// The 8-byte tag of a request id in case files. A tag that matches is
/// confirmed against the request id of the record it points to, so a
/// collision can never make two requests one.
pub fn request_tag(request_id: &str) -> [u8; 8] {
    let mut h = blake3::Hasher::new();
    h.update(b"migreg.request-tag.v2\0");
    h.update(request_id.as_bytes());
    h.finalize().as_bytes()[..8].try_into().expect("8 bytes")
}

/// Key of a stream's case file.
pub(crate) fn case_file_key(stream_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + stream_id.len());
    k.push(CASE_FILE_PREFIX);
    k.extend_from_slice(stream_id.as_bytes());
    k
}

impl CaseFile {
    /// The stream's version: its number of events.
    pub fn version(&self) -> u64 {
        self.seqs.len() as u64
    }

    /// Number of events at or before `head` (the version a reader may see).
    pub fn version_at(&self, head: u64) -> u64 {
        self.seqs.partition_point(|&s| s <= head) as u64
    }

    /// Records one event (the writer and the replay call it in seq order).
    /// `part` is the event's index in its request.
    pub fn push(&mut self, seq: u64, part: u16, request_id: &str) {
        if part == 0 {
            self.requests.push(RequestMark {
                first_version: self.version() + 1,
                tag: request_tag(request_id),
            });
        }
        self.seqs.push(seq);
    }

    /// Requests whose tag matches `request_id` (almost always none or one).
    pub fn requests_tagged<'a>(&'a self, request_id: &str) -> impl Iterator<Item = RequestMark> + 'a {
        let tag = request_tag(request_id);
        self.requests.iter().copied().filter(move |r| r.tag == tag)
    }

    /// Encodes the case file.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.seqs.len() * 3 + self.requests.len() * 10);
        out.push(CASE_FILE_FORMAT_V1);
        put_varint(&mut out, self.seqs.len() as u64);
        let mut prev = 0;
        for &s in &self.seqs {
            put_varint(&mut out, s - prev);
            prev = s;
        }
        put_varint(&mut out, self.requests.len() as u64);
        let mut prev = 0;
        for r in &self.requests {
            put_varint(&mut out, r.first_version - prev);
            prev = r.first_version;
            out.extend_from_slice(&r.tag);
        }
        out
    }

    /// Decodes a case file, checking that seqs and request versions strictly
    /// increase and stay within the stream's events.
    pub fn decode(bytes: &[u8]) -> Result<CaseFile, &'static str> {
        let mut r = bytes;
        let format = take_u8(&mut r)?;
        if format != CASE_FILE_FORMAT_V1 {
            return Err("unknown case file format");
        }
        let n = take_varint(&mut r)?;
        if n == 0 || n > STREAM_EVENTS_MAX as u64 {
            return Err("impossible number of events");
        }
        let mut seqs = Vec::with_capacity(n as usize);
        let mut prev = 0u64;
        for _ in 0..n {
            let d = take_varint(&mut r)?;
            if d == 0 {
                return Err("seqs do not increase");
            }
            prev = prev.checked_add(d).ok_or("seq overflows")?;
            seqs.push(prev);
        }
        let m = take_varint(&mut r)?;
        if m == 0 || m > n {
            return Err("impossible number of requests");
        }
        let mut requests = Vec::with_capacity(m as usize);
        let mut prev = 0u64;
        for _ in 0..m {
            let d = take_varint(&mut r)?;
            if d == 0 {
                return Err("request versions do not increase");
            }
            prev = prev.checked_add(d).ok_or("request version overflows")?;
            if prev > n {
                return Err("request names a version past the stream");
            }
            if r.len() < 8 {
                return Err("truncated");
            }
            let (tag, rest) = r.split_at(8);
            r = rest;
            requests.push(RequestMark {
                first_version: prev,
                tag: tag.try_into().expect("8 bytes"),
            });
        }
        if requests[0].first_version != 1 {
            return Err("the first request does not start at version 1");
        }
        if !r.is_empty() {
            return Err("trailing bytes");
        }
        Ok(CaseFile { seqs, requests })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_u8(r: &mut &[u8]) -> Result<u8, &'static str> {
    let (&b, rest) = r.split_first().ok_or("truncated")?;
    *r = rest;
    Ok(b)
}

fn take_varint(r: &mut &[u8]) -> Result<u64, &'static str> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = take_u8(r)?;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long")
}

/// Case files as readers and the writer see them: the ones changed since the
/// follower last wrote (in memory, complete), else the one in sled.
pub(crate) struct CaseFiles {
    tree: sled::Tree,
    recent: RwLock<HashMap<String, Arc<CaseFile>>>,
}

impl CaseFiles {
    pub(crate) fn new(tree: sled::Tree) -> CaseFiles {
        CaseFiles {
            tree,
            recent: RwLock::new(HashMap::new()),
        }
    }

    /// The stream's case file including every durable commit (`None`: no events).
    pub(crate) fn get(&self, stream_id: &str) -> Result<Option<Arc<CaseFile>>, StoreError> {
        if let Some(cf) = self
            .recent
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream_id)
        {
            return Ok(Some(cf.clone()));
        }
        self.get_persisted(stream_id).map(|cf| cf.map(Arc::new))
    }

    /// The case file as the follower last wrote it.
    pub(crate) fn get_persisted(&self, stream_id: &str) -> Result<Option<CaseFile>, StoreError> {
        match self.tree.get(case_file_key(stream_id))? {
            Some(v) => CaseFile::decode(&v).map(Some).map_err(StoreError::CorruptMeta),
            None => Ok(None),
        }
    }

    /// Makes the case files of a durable commit visible (the writer, before it publishes the head).
    pub(crate) fn install(&self, files: &[(String, Arc<CaseFile>)]) {
        let mut recent = self.recent.write().unwrap_or_else(|p| p.into_inner());
        for (id, cf) in files {
            recent.insert(id.clone(), cf.clone());
        }
    }

    /// Forgets the in-memory copies that the follower has written, unless
    /// they changed again since.
    fn forget_persisted(&self, written: &HashMap<String, Arc<CaseFile>>) {
        let mut recent = self.recent.write().unwrap_or_else(|p| p.into_inner());
        for (id, cf) in written {
            if recent.get(id).is_some_and(|r| r.version() <= cf.version()) {
                recent.remove(id);
            }
        }
    }

    /// The position the persisted case files cover.
    pub(crate) fn persisted_at(&self) -> Result<Head, StoreError> {
        match self.tree.get(CASES_AT_KEY)? {
            Some(v) => Head::from_bytes(&v),
            None => Ok(Head::EMPTY),
        }
    }

    /// Writes case files and the position they cover in one sled batch,
    /// then forgets their in-memory copies.
    fn write(&self, files: &HashMap<String, Arc<CaseFile>>, upto: Head) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (id, cf) in files {
            batch.insert(case_file_key(id), cf.encode());
        }
        batch.insert(CASES_AT_KEY, &upto.to_bytes()[..]);
        self.tree.apply_batch(batch)?;
        self.forget_persisted(files);
        Ok(())
    }
}

/// What one durable group commit changed, for the case-file follower.
pub(crate) struct CaseFileUpdate {
    /// The head after the commit.
    pub upto: Head,
    /// The case files it changed, as they are after it.
    pub files: Vec<(String, Arc<CaseFile>)>,
}

/// The case-file follower: gathers the writer's updates and writes them in
/// one batch every [`CASE_FILES_FLUSH_INTERVAL_MS`] (or once
/// [`CASE_FILES_FLUSH_FILES_MAX`] are waiting); writes what is left when the
/// writer closes the channel. The batch is not synced: the writer's next
/// flush carries it, and a crash only means the next start replays more.
/// Returns the first storage error (the writer then refuses appends).
pub(crate) fn run_follower(
    files: Arc<CaseFiles>,
    updates: std::sync::mpsc::Receiver<CaseFileUpdate>,
) -> Result<(), StoreError> {
    let every = Duration::from_millis(CASE_FILES_FLUSH_INTERVAL_MS);
    let mut pending: HashMap<String, Arc<CaseFile>> = HashMap::new();
    let mut upto: Option<Head> = None;
    let mut since = Instant::now();
    loop {
        let wait = every.saturating_sub(since.elapsed());
        let closed = match updates.recv_timeout(wait) {
            Ok(update) => {
                if pending.is_empty() {
                    since = Instant::now();
                }
                pending.extend(update.files);
                upto = Some(update.upto);
                false
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => true,
        };
        let due = since.elapsed() >= every || pending.len() >= CASE_FILES_FLUSH_FILES_MAX || closed;
        if due {
            if let Some(at) = upto.take() {
                files.write(&pending, at)?;
                pending.clear();
            }
            since = Instant::now();
        }
        if closed {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_file_round_trips() {
        let mut cf = CaseFile::default();
        cf.push(5, 0, "r-1");
        cf.push(6, 1, "r-1");
        cf.push(900_000, 0, "r-2");
        cf.push(1u64 << 40, 0, "r-3");
        let back = CaseFile::decode(&cf.encode()).expect("decode");
        assert_eq!(back, cf);
        assert_eq!(back.version(), 4);
        assert_eq!(back.version_at(6), 2);
        assert_eq!(
            back.requests_tagged("r-2")
                .map(|r| r.first_version)
                .collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!(back.requests_tagged("r-9").count(), 0);
    }

    #[test]
    fn malformed_case_files_are_refused() {
        let mut cf = CaseFile::default();
        cf.push(5, 0, "r-1");
        let good = cf.encode();
        assert!(CaseFile::decode(&good).is_ok());
        assert!(CaseFile::decode(&good[..good.len() - 1]).is_err());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(CaseFile::decode(&trailing).is_err());
        let mut format = good.clone();
        format[0] = 2;
        assert!(CaseFile::decode(&format).is_err());
        // A zero delta: seqs that do not increase.
        assert!(CaseFile::decode(&[1, 2, 5, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
