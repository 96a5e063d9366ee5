//! The single writer: group commit with durable acknowledgement.
//!
//! One dedicated OS thread owns the head (sequence, hash). Requests arrive over
//! a bounded channel; the writer drains up to a bounded batch, checks each
//! request on its own (validation, idempotency, expected version), assigns
//! sequence numbers and stream versions, chains the hashes, writes the whole
//! batch to sled in one transaction, makes it durable, and only then answers
//! each request. A rejected request gets its own error and does not fail the
//! others. After a storage error the writer stops accepting appends (fail-stop):
//! its in-memory head may no longer match the disk, and only a restart, which
//! verifies the tail, may decide what is there.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;
use tokio::sync::{mpsc, oneshot, watch};

use super::record::{chain_hash, Actor, Hash, Record};
use super::store::{stream_key, Head, IdempotencyEntry, Store, StoreError, SyncMode, META_HEAD};
use crate::limits::*;

/// The optimistic-concurrency condition of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds.
    Any,
    /// The stream must not exist yet (it has no events).
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's current version (its number of events) must be exactly n.
    Exact(u64),
}

/// One event to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Event type name.
    pub event_type: String,
    /// Prost-encoded body, personal fields already sealed.
    pub payload: Vec<u8>,
}

/// A request to append one or more events to one stream, atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRequest {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    /// Idempotency key: a retry with the same id gets the original answer.
    pub request_id: String,
    pub actor: Actor,
    pub events: Vec<NewEvent>,
}

/// What an accepted append wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub first_seq: u64,
    pub last_seq: u64,
    /// Stream version of the first event (1-based).
    pub first_version: u64,
    /// Stream version of the last event: the stream's version after the append.
    pub last_version: u64,
    pub recorded_at_us: i64,
    /// True when this was a retry of an earlier request and nothing new was written.
    pub deduplicated: bool,
}

/// Why an append was refused. Nothing of a refused request is written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{field} exceeds the limit of {limit}")]
    TooLarge { field: &'static str, limit: usize },
    #[error("version conflict on stream {stream_id}: expected {expected:?}, current version is {actual}")]
    VersionConflict {
        stream_id: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("request id {request_id} was already used for a different request")]
    IdempotencyMismatch { request_id: String },
    #[error("the log writer is unavailable: {0}")]
    Unavailable(String),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> AppendError {
    AppendError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn check_token(field: &'static str, value: &str, max: usize) -> Result<(), AppendError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(AppendError::TooLarge { field, limit: max });
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(field, "must be printable ASCII without spaces"));
    }
    Ok(())
}

impl AppendRequest {
    /// Checks every field against its limit. The writer calls it again before writing.
    pub fn validate(&self) -> Result<(), AppendError> {
        check_token("stream_id", &self.stream_id, STREAM_ID_BYTES_MAX)?;
        if !self
            .stream_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        {
            return Err(invalid("stream_id", "allowed characters are A-Z a-z 0-9 . _ : -"));
        }
        check_token("request_id", &self.request_id, REQUEST_ID_BYTES_MAX)?;
        check_token("actor.user_id", &self.actor.user_id, ACTOR_FIELD_BYTES_MAX)?;
        check_token("actor.office", &self.actor.office, ACTOR_FIELD_BYTES_MAX)?;
        if self.events.is_empty() {
            return Err(invalid("events", "at least one event is required"));
        }
        if self.events.len() > REQUEST_EVENTS_MAX {
            return Err(AppendError::TooLarge {
                field: "events",
                limit: REQUEST_EVENTS_MAX,
            });
        }
        let mut total = 0usize;
        for e in &self.events {
            check_token("event_type", &e.event_type, EVENT_TYPE_BYTES_MAX)?;
            if e.payload.len() > EVENT_PAYLOAD_BYTES_MAX {
                return Err(AppendError::TooLarge {
                    field: "payload",
                    limit: EVENT_PAYLOAD_BYTES_MAX,
                });
            }
            total += e.payload.len();
        }
        if total > REQUEST_PAYLOAD_BYTES_MAX {
            return Err(AppendError::TooLarge {
                field: "events",
                limit: REQUEST_PAYLOAD_BYTES_MAX,
            });
        }
        if let ExpectedVersion::Exact(0) = self.expected {
            return Err(invalid(
                "expected_version",
                "an exact version is at least 1; use NoStream",
            ));
        }
        Ok(())
    }

    /// BLAKE3 of the request's canonical content: what makes two requests with
    /// one id "the same request".
    pub fn fingerprint(&self) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(b"migreg.request.v1\0");
        let mut field = |b: &[u8]| {
            h.update(&(b.len() as u64).to_be_bytes());
            h.update(b);
        };
        field(self.stream_id.as_bytes());
        let (tag, n) = match self.expected {
            ExpectedVersion::Any => (0u8, 0),
            ExpectedVersion::NoStream => (1, 0),
            ExpectedVersion::StreamExists => (2, 0),
            ExpectedVersion::Exact(n) => (3, n),
        };
        field(&[tag]);
        field(&n.to_be_bytes());
        field(self.actor.user_id.as_bytes());
        field(self.actor.office.as_bytes());
        for e in &self.events {
            field(e.event_type.as_bytes());
            field(&e.payload);
        }
        *h.finalize().as_bytes()
    }
}

pub(crate) struct Job {
    pub req: AppendRequest,
    pub reply: oneshot::Sender<Result<Appended, AppendError>>,
}

/// Configuration of the writer.
#[derive(Clone, Copy, Debug)]
pub struct WriterConfig {
    pub sync: SyncMode,
}

/// Spawns the writer thread. It runs until every sender is dropped, then
/// drains what is queued and exits.
pub(crate) fn spawn(
    store: Store,
    config: WriterConfig,
    head: Head,
    head_tx: watch::Sender<Head>,
    halt: watch::Receiver<Option<super::Broken>>,
) -> Result<(mpsc::Sender<Job>, std::thread::JoinHandle<()>), StoreError> {
    let last_recorded_at_us = match store.get(head.seq)? {
        Some(ev) => ev.record.recorded_at_us,
        None => 0,
    };
    let data_file = match config.sync {
        SyncMode::Fdatasync => Some(store.open_data_file()?),
        SyncMode::Flush => None,
    };
    let (tx, rx) = mpsc::channel(QUEUE_REQUESTS_MAX);
    let mut writer = Writer {
        store,
        config,
        head,
        last_recorded_at_us,
        head_tx,
        data_file,
        failed: None,
        halt,
        versions: HashMap::new(),
    };
    let handle = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || writer.run(rx))?;
    Ok((tx, handle))
}

struct Writer {
    store: Store,
    config: WriterConfig,
    head: Head,
    last_recorded_at_us: i64,
    head_tx: watch::Sender<Head>,
    data_file: Option<std::fs::File>,
    /// Set after a storage error: every later append is refused.
    failed: Option<String>,
    /// Set by the tail verifier when the log fails verification: every
    /// later append is refused too (nothing is chained onto a broken log).
    halt: watch::Receiver<Option<super::Broken>>,
    /// Current versions of recently written streams, so that the expected-version
    /// check rarely reads the index. Holds only committed versions; bounded by
    /// [`STREAM_VERSION_CACHE_MAX`] (cleared when full).
    versions: HashMap<String, u64>,
}

/// The part of a batch that will be written.
#[derive(Default)]
struct Staged {
    events: sled::Batch,
    streams: sled::Batch,
    requests: sled::Batch,
    replies: Vec<(oneshot::Sender<Result<Appended, AppendError>>, Appended)>,
    /// Stream versions including this batch's appends.
    versions: HashMap<String, u64>,
    /// Request ids accepted in this batch: fingerprint and result.
    request_ids: HashMap<String, (Hash, Appended)>,
    event_count: usize,
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Job>) {
        let mut carry: Option<Job> = None;
        loop {
            let first = match carry.take() {
                Some(job) => job,
                None => match rx.blocking_recv() {
                    Some(job) => job,
                    None => break,
                },
            };
            let mut jobs = vec![first];
            let mut events = jobs[0].req.events.len();
            while jobs.len() < BATCH_REQUESTS_MAX {
                match rx.try_recv() {
                    Ok(job) if events + job.req.events.len() > BATCH_EVENTS_MAX => {
                        carry = Some(job);
                        break;
                    }
                    Ok(job) => {
                        events += job.req.events.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.process(jobs);
        }
        tracing::debug!(head_seq = self.head.seq, "log writer stopped");
    }

    fn process(&mut self, jobs: Vec<Job>) {
        if self.failed.is_none() {
            if let Some(b) = self.halt.borrow().as_ref() {
                tracing::error!(
                    seq = b.seq,
                    "the log failed verification; the writer stops accepting appends"
                );
                self.failed = Some(format!(
                    "the log failed verification at seq {}; the service must be stopped and the store examined",
                    b.seq
                ));
            }
        }
        if let Some(reason) = &self.failed {
            for job in jobs {
                let _ = job.reply.send(Err(AppendError::Unavailable(reason.clone())));
            }
            return;
        }
        let start_head = self.head;
        let recorded_at_us = now_us().max(self.last_recorded_at_us);
        let mut staged = Staged::default();
        // Version conflicts may name a version written by this very batch:
        // they are answered only once that write is durable and published, so
        // a client that re-reads at once sees the version it was told about.
        let mut conflicts = Vec::new();
        for job in jobs {
            match self.stage(&job.req, recorded_at_us, &mut staged) {
                Outcome::Staged(appended) => staged.replies.push((job.reply, appended)),
                Outcome::Answer(Err(conflict @ AppendError::VersionConflict { .. })) => {
                    conflicts.push((job.reply, conflict))
                }
                Outcome::Answer(result) => {
                    let _ = job.reply.send(result);
                }
            }
        }
        if staged.event_count == 0 {
            // Only retries of already-durable requests: answer them.
            for (reply, appended) in staged.replies {
                let _ = reply.send(Ok(appended));
            }
            for (reply, conflict) in conflicts {
                let _ = reply.send(Err(conflict));
            }
            return;
        }
        match self.commit(&staged) {
            Ok(()) => {
                self.last_recorded_at_us = recorded_at_us;
                self.store.publish(self.head);
                if self.versions.len() + staged.versions.len() > STREAM_VERSION_CACHE_MAX {
                    self.versions.clear();
                }
                self.versions.extend(staged.versions.drain());
                let _ = self.head_tx.send(self.head);
                tracing::trace!(
                    events = staged.event_count,
                    head_seq = self.head.seq,
                    "group commit"
                );
                for (reply, appended) in staged.replies {
                    let _ = reply.send(Ok(appended));
                }
                for (reply, conflict) in conflicts {
                    let _ = reply.send(Err(conflict));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, from_seq = start_head.seq + 1, "group commit failed; the writer stops accepting appends");
                let reason = "a storage error stopped the log writer; restart the service".to_string();
                self.failed = Some(reason.clone());
                self.head = start_head;
                // A conflict may have been decided against the batch that failed.
                for reply in staged
                    .replies
                    .into_iter()
                    .map(|(r, _)| r)
                    .chain(conflicts.into_iter().map(|(r, _)| r))
                {
                    let _ = reply.send(Err(AppendError::Unavailable(reason.clone())));
                }
            }
        }
    }

    /// Checks one request and, if accepted, stages its events.
    fn stage(&mut self, req: &AppendRequest, recorded_at_us: i64, staged: &mut Staged) -> Outcome {
        match self.try_stage(req, recorded_at_us, staged) {
            Ok(appended) => Outcome::Staged(appended),
            Err(answer) => Outcome::Answer(answer),
        }
    }

    /// `Ok`: staged for this commit. `Err`: the answer to give now.
    fn try_stage(
        &mut self,
        req: &AppendRequest,
        recorded_at_us: i64,
        staged: &mut Staged,
    ) -> Result<Appended, Result<Appended, AppendError>> {
        req.validate().map_err(Err)?;
        let fingerprint = req.fingerprint();
        let mismatch = || {
            Err(AppendError::IdempotencyMismatch {
                request_id: req.request_id.clone(),
            })
        };
        if let Some((fp, appended)) = staged.request_ids.get(&req.request_id) {
            if *fp != fingerprint {
                return Err(mismatch());
            }
            return Ok(Appended {
                deduplicated: true,
                ..*appended
            });
        }
        let storage = |e: StoreError| {
            tracing::error!(error = %e, "reading the log while staging an append");
            Err(AppendError::Unavailable("storage read failed".into()))
        };
        if let Some(entry) = self.store.idempotency_entry(&req.request_id).map_err(storage)? {
            if entry.fingerprint != fingerprint {
                return Err(mismatch());
            }
            let count = entry.count as u64;
            return Err(Ok(Appended {
                first_seq: entry.first_seq,
                last_seq: entry.first_seq + count - 1,
                first_version: entry.first_version,
                last_version: entry.first_version + count - 1,
                recorded_at_us: entry.recorded_at_us,
                deduplicated: true,
            }));
        }
        let current = match staged
            .versions
            .get(&req.stream_id)
            .or_else(|| self.versions.get(&req.stream_id))
        {
            Some(v) => *v,
            None => self
                .store
                .stream_version_unpublished(&req.stream_id)
                .map_err(storage)?,
        };
        let ok = match req.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::StreamExists => current > 0,
            ExpectedVersion::Exact(n) => current == n,
        };
        if !ok {
            return Err(Err(AppendError::VersionConflict {
                stream_id: req.stream_id.clone(),
                expected: req.expected,
                actual: current,
            }));
        }
        let parts = req.events.len() as u16;
        let first_seq = self.head.seq + 1;
        for (i, ev) in req.events.iter().enumerate() {
            let record = Record {
                seq: self.head.seq + 1,
                recorded_at_us,
                stream_id: req.stream_id.clone(),
                stream_version: current + 1 + i as u64,
                part: i as u16,
                parts,
                event_type: ev.event_type.clone(),
                actor: req.actor.clone(),
                request_id: req.request_id.clone(),
                payload: ev.payload.clone(),
                prev_hash: self.head.hash,
            };
            let mut value = record.encode();
            let hash = chain_hash(&self.head.hash, &value);
            value.extend_from_slice(&hash);
            staged.events.insert(&record.seq.to_be_bytes(), value);
            staged.streams.insert(
                stream_key(&req.stream_id, record.stream_version),
                &record.seq.to_be_bytes(),
            );
            self.head = Head {
                seq: record.seq,
                hash,
            };
        }
        let appended = Appended {
            first_seq,
            last_seq: self.head.seq,
            first_version: current + 1,
            last_version: current + parts as u64,
            recorded_at_us,
            deduplicated: false,
        };
        let entry = IdempotencyEntry {
            fingerprint,
            first_seq,
            count: parts,
            first_version: appended.first_version,
            recorded_at_us,
        };
        staged
            .requests
            .insert(req.request_id.as_bytes(), entry.to_bytes());
        staged
            .versions
            .insert(req.stream_id.clone(), appended.last_version);
        staged
            .request_ids
            .insert(req.request_id.clone(), (fingerprint, appended));
        staged.event_count += parts as usize;
        Ok(appended)
    }

    /// Writes the staged batch to all four trees atomically, then makes it durable.
    fn commit(&self, staged: &Staged) -> Result<(), StoreError> {
        let head = self.head.to_bytes();
        let s = &self.store;
        (&s.events, &s.streams, &s.requests, &s.meta)
            .transaction(|(events, streams, requests, meta)| {
                events.apply_batch(&staged.events)?;
                streams.apply_batch(&staged.streams)?;
                requests.apply_batch(&staged.requests)?;
                meta.insert(META_HEAD, &head[..])?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
                sled::transaction::TransactionError::Abort(()) => {
                    StoreError::CorruptMeta("transaction aborted")
                }
            })?;
        self.store.sync(self.config.sync, self.data_file.as_ref())
    }
}

/// What the writer does with one request of a batch.
enum Outcome {
    /// Its events are in the batch; answer after the commit.
    Staged(Appended),
    /// Answer now: refused, or a retry of a request that is already durable.
    Answer(Result<Appended, AppendError>),
}

/// Now, in UTC microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
