//! Store format v1, kept to convert old stores (`registry migrate-store`)
//! and to make v1 fixtures for the migration's tests.
//!
//! v1 kept four trees: `events` (seq -> record || hash), `streams`
//! (len(stream id) u8 || stream id || version -> seq), `requests` (request id
//! -> fingerprint (32) || first seq || count u16 || first version ||
//! recorded_at), and `meta/head`. The record bytes and the chain are the same
//! in v1 and v2; only where they are kept changed.

use std::path::Path;

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::record::{chain_hash, Hash, Record};
use super::store::{sled_config, Head, StoreError};
use super::writer::{AppendError, AppendRequest, Appended, ExpectedVersion};

pub(crate) const TREE_EVENTS: &str = "events";
pub(crate) const TREE_STREAMS: &str = "streams";
pub(crate) const TREE_REQUESTS: &str = "requests";
pub(crate) const META_HEAD_V1: &[u8] = b"head";

/// Whether `db` is a v1 store: it has an `events` tree with records, or a
/// v1 head in `meta`.
pub(crate) fn is_v1(db: &sled::Db) -> Result<bool, StoreError> {
    let names = db.tree_names();
    let has = |name: &str| names.iter().any(|n| n.as_ref() == name.as_bytes());
    if has(TREE_EVENTS) && !db.open_tree(TREE_EVENTS)?.is_empty() {
        return Ok(true);
    }
    Ok(has("meta") && db.open_tree("meta")?.get(META_HEAD_V1)?.is_some())
}

fn stream_key(stream_id: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + stream_id.len() + 8);
    k.push(stream_id.len() as u8);
    k.extend_from_slice(stream_id.as_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// Writes a v1 store the way the v1 writer did (records, stream index,
/// request index and head in one four-tree transaction per request), so
/// that tests can migrate a store of the previous format. Not a service:
/// one thread, no group commit, flushed after every request.
pub struct V1FixtureWriter {
    db: sled::Db,
    events: sled::Tree,
    streams: sled::Tree,
    requests: sled::Tree,
    meta: sled::Tree,
    head: Head,
}

impl V1FixtureWriter {
    /// Creates a new v1 store in `dir` (which must not hold a store).
    pub fn create(dir: &Path) -> Result<V1FixtureWriter, StoreError> {
        std::fs::create_dir_all(dir)?;
        let db = sled_config(dir).open()?;
        if !db.open_tree(TREE_EVENTS)?.is_empty() {
            return Err(StoreError::Format(format!(
                "{} already holds a store",
                dir.display()
            )));
        }
        Ok(V1FixtureWriter {
            events: db.open_tree(TREE_EVENTS)?,
            streams: db.open_tree(TREE_STREAMS)?,
            requests: db.open_tree(TREE_REQUESTS)?,
            meta: db.open_tree("meta")?,
            db,
            head: Head::EMPTY,
        })
    }

    /// The sled database (to add the other trees a v1 store held).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The head so far.
    pub fn head(&self) -> Head {
        self.head
    }

    /// Appends one request with v1's rules: global request ids (a reused id
    /// with the same fingerprint gets the original answer), expected version.
    pub fn append(&mut self, req: &AppendRequest, recorded_at_us: i64) -> Result<Appended, AppendError> {
        req.validate()?;
        let storage = |e: sled::Error| AppendError::Unavailable(e.to_string());
        let fingerprint = v1_fingerprint(req);
        if let Some(v) = self.requests.get(req.request_id.as_bytes()).map_err(storage)? {
            if v[..32] != fingerprint {
                return Err(AppendError::IdempotencyMismatch {
                    request_id: req.request_id.clone(),
                });
            }
            let u = |r: std::ops::Range<usize>| u64::from_be_bytes(v[r].try_into().expect("8"));
            let count = u16::from_be_bytes(v[40..42].try_into().expect("2")) as u64;
            let (first_seq, first_version) = (u(32..40), u(42..50));
            return Ok(Appended {
                first_seq,
                last_seq: first_seq + count - 1,
                first_version,
                last_version: first_version + count - 1,
                recorded_at_us: u(50..58) as i64,
                deduplicated: true,
            });
        }
        let mut prefix = stream_key(&req.stream_id, 0);
        prefix.truncate(prefix.len() - 8);
        let current = match self.streams.scan_prefix(&prefix).next_back() {
            Some(kv) => {
                let (k, _) = kv.map_err(storage)?;
                u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8"))
            }
            None => 0,
        };
        if !req.expected.admits(current) {
            return Err(AppendError::VersionConflict {
                stream_id: req.stream_id.clone(),
                expected: req.expected,
                actual: current,
            });
        }
        let (mut events, mut streams) = (sled::Batch::default(), sled::Batch::default());
        let first_seq = self.head.seq + 1;
        let mut head = self.head;
        for (i, ev) in req.events.iter().enumerate() {
            let record = Record {
                seq: head.seq + 1,
                recorded_at_us,
                stream_id: req.stream_id.clone(),
                stream_version: current + 1 + i as u64,
                part: i as u16,
                parts: req.events.len() as u16,
                event_type: ev.event_type.clone(),
                actor: req.actor.clone(),
                request_id: req.request_id.clone(),
                payload: ev.payload.clone(),
                prev_hash: head.hash,
            };
            let mut value = record.encode();
            let hash = chain_hash(&head.hash, &value);
            value.extend_from_slice(&hash);
            events.insert(&record.seq.to_be_bytes(), value);
            streams.insert(
                stream_key(&req.stream_id, record.stream_version),
                &record.seq.to_be_bytes(),
            );
            head = Head {
                seq: record.seq,
                hash,
            };
        }
        let count = req.events.len() as u16;
        let mut entry = fingerprint.to_vec();
        entry.extend_from_slice(&first_seq.to_be_bytes());
        entry.extend_from_slice(&count.to_be_bytes());
        entry.extend_from_slice(&(current + 1).to_be_bytes());
        entry.extend_from_slice(&recorded_at_us.to_be_bytes());
        let head_bytes = head.to_bytes();
        (&self.events, &self.streams, &self.requests, &self.meta)
            .transaction(|(e, s, r, m)| {
                e.apply_batch(&events)?;
                s.apply_batch(&streams)?;
                r.insert(req.request_id.as_bytes(), entry.clone())?;
                m.insert(META_HEAD_V1, &head_bytes[..])?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| AppendError::Unavailable(format!("{e:?}")))?;
        self.db.flush().map_err(storage)?;
        self.head = head;
        Ok(Appended {
            first_seq,
            last_seq: head.seq,
            first_version: current + 1,
            last_version: current + count as u64,
            recorded_at_us,
            deduplicated: false,
        })
    }
}

/// v1's request fingerprint (docs/LOG_FORMAT.md of format v1).
fn v1_fingerprint(req: &AppendRequest) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"migreg.request.v1\0");
    let mut field = |b: &[u8]| {
        h.update(&(b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(req.stream_id.as_bytes());
    let (tag, n) = match req.expected {
        ExpectedVersion::Any => (0u8, 0),
        ExpectedVersion::NoStream => (1, 0),
        ExpectedVersion::StreamExists => (2, 0),
        ExpectedVersion::Exact(n) => (3, n),
    };
    field(&[tag]);
    field(&n.to_be_bytes());
    field(req.actor.user_id.as_bytes());
    field(req.actor.office.as_bytes());
    for e in &req.events {
        field(e.event_type.as_bytes());
        field(&e.payload);
    }
    *h.finalize().as_bytes()
}
