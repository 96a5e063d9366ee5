//! The single writer: group commit with durable acknowledgement.
//!
//! One dedicated OS thread owns the head (sequence, hash). Requests arrive over
//! a bounded channel; the writer drains up to a bounded batch, checks each
//! request on its own (validation, idempotency within its stream, expected
//! version, the stream's event limit), assigns sequence numbers and stream
//! versions, chains the hashes, writes the batch's chunks and the head to
//! sled in one `apply_batch`, makes it durable, makes the changed case files
//! visible, publishes the head, hands the case files to their follower, and
//! only then answers each request. A rejected request gets its own error and does not fail the
//! others. After a storage error the writer stops accepting appends (fail-stop):
//! its in-memory head may no longer match the disk, and only a restart, which
//! verifies the tail, may decide what is there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, oneshot, watch};

use super::apply::{push_record, Applier};
use super::casefile::CaseFile;
use super::chunk::ChunkBuilder;
use super::record::{chain_hash, Actor, Hash, RecordView};
use super::side::{Side, SideSet, SideTrees, SideWrite};
use super::store::{Head, Store, StoreError, StoredEvent, SyncMode};
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

impl ExpectedVersion {
    /// Whether a stream at version `current` (its number of events) meets the condition.
    pub fn admits(self, current: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::StreamExists => current > 0,
            ExpectedVersion::Exact(n) => current == n,
        }
    }
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
    /// The stream appended to (a case id, or a stream such as `policy`):
    /// 1 to [`STREAM_ID_BYTES_MAX`] bytes of `A-Z a-z 0-9 . _ : -`.
    pub stream_id: String,
    /// The condition the stream's current version must meet.
    pub expected: ExpectedVersion,
    /// Idempotency key: a retry with the same id gets the original answer.
    pub request_id: String,
    /// Who records the events (recorded in every one of them).
    pub actor: Actor,
    /// The events, in stream order: 1 to [`REQUEST_EVENTS_MAX`], all or
    /// none of them appended.
    pub events: Vec<NewEvent>,
}

/// What an accepted append wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Log seq of the first event appended to this stream (1-based).
    pub first_seq: u64,
    /// Log seq of the last; the events in between are consecutive.
    pub last_seq: u64,
    /// Stream version of the first event (1-based).
    pub first_version: u64,
    /// Stream version of the last event: the stream's version after the append.
    pub last_version: u64,
    /// When the writer recorded the events (all the same): UTC
    /// microseconds since the Unix epoch.
    pub recorded_at_us: i64,
    /// True when this was a retry of an earlier request and nothing new was written.
    pub deduplicated: bool,
}

/// Why an append was refused. Nothing of a refused request is written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// A field of the request is malformed (empty, bad characters, an
    /// exact version 0, a stream twice in one append).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, e.g. `stream_id`, `actor.office`, `events`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A field, or the request, is over a limit of [`crate::limits`].
    #[error("{field} exceeds the limit of {limit}")]
    TooLarge {
        /// The field (`stream_id`, `payload`, `events`, `streams`,
        /// `side writes`, ...).
        field: &'static str,
        /// The limit, in bytes for identifiers and payloads (`events`:
        /// the request's total payload bytes, or its event count).
        limit: usize,
    },
    /// The stream's version does not meet the request's [`ExpectedVersion`].
    #[error("version conflict on stream {stream_id}: expected {expected:?}, current version is {actual}")]
    VersionConflict {
        /// The stream.
        stream_id: String,
        /// The request's condition.
        expected: ExpectedVersion,
        /// The stream's version when the append was staged.
        actual: u64,
    },
    /// The request id is already on the stream for a request with another
    /// actor, event types or payloads (or on only some of the append's streams).
    #[error("request id {request_id} was already used for a different request")]
    IdempotencyMismatch {
        /// The request id reused.
        request_id: String,
    },
    /// A [`SideWrite`]'s condition did not hold (the key holds another
    /// value, counting the appends staged before): `index` into the
    /// append's side writes. Answered once the batches it was decided
    /// against are durable, so a caller that reads again sees why.
    #[error("side write {index} of the append found its key changed")]
    SideConflict {
        /// Index of the side write in the append's list (0-based).
        index: usize,
    },
    /// The append would take the stream past [`STREAM_EVENTS_MAX`] events.
    #[error("stream {stream_id} holds the most events a stream may hold ({limit})")]
    StreamFull {
        /// The stream.
        stream_id: String,
        /// The most events a stream may hold.
        limit: usize,
    },
    /// Nothing was written: the writer stopped (storage error, broken log,
    /// shutdown), free disk space is under the reserve, or the cluster is
    /// starting. The reason says which, and what to do.
    #[error("the log writer is unavailable: {0}")]
    Unavailable(String),
    /// A cluster node that does not lead: writes go to the leader, whose
    /// client address is given when known.
    #[error("this node is not the cluster's leader; send writes to {}", leader.as_deref().unwrap_or("the leader (not known yet)"))]
    NotLeader {
        /// The leader's client API address, when this node knows it.
        leader: Option<String>,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> AppendError {
    AppendError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Checks an identifier (stream, request, user, office, event type): 1 to
/// `max` bytes of printable ASCII without spaces.
fn check_identifier(field: &'static str, value: &str, max: usize) -> Result<(), AppendError> {
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
        check_identifier("stream_id", &self.stream_id, STREAM_ID_BYTES_MAX)?;
        if !self
            .stream_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        {
            return Err(invalid("stream_id", "allowed characters are A-Z a-z 0-9 . _ : -"));
        }
        check_identifier("request_id", &self.request_id, REQUEST_ID_BYTES_MAX)?;
        check_identifier("actor.user_id", &self.actor.user_id, ACTOR_FIELD_BYTES_MAX)?;
        check_identifier("actor.office", &self.actor.office, ACTOR_FIELD_BYTES_MAX)?;
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
            check_identifier("event_type", &e.event_type, EVENT_TYPE_BYTES_MAX)?;
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

    /// What makes two requests with one id on one stream "the same
    /// request": the actor, and each event's type and payload (see
    /// [`content_fingerprint`]).
    pub fn fingerprint(&self) -> Hash {
        content_fingerprint(
            &self.actor,
            self.events
                .iter()
                .map(|e| (e.event_type.as_str(), e.payload.as_slice())),
        )
    }
}

/// BLAKE3 over a request's content: `"migreg.request.v2\0"`, then the actor's
/// user id and office and each event's type and payload, each preceded by its
/// length (u64 big-endian). Computed for a new request and for the records an
/// earlier request with the same id appended, so a retry is recognised from
/// the log itself, with nothing else stored.
pub fn content_fingerprint<'a>(actor: &Actor, events: impl Iterator<Item = (&'a str, &'a [u8])>) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"migreg.request.v2\0");
    let mut field = |b: &[u8]| {
        h.update(&(b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(actor.user_id.as_bytes());
    field(actor.office.as_bytes());
    for (event_type, payload) in events {
        field(event_type.as_bytes());
        field(payload);
    }
    *h.finalize().as_bytes()
}

/// One append: a request on one stream, or one request on several streams
/// (at most [`APPEND_STREAMS_MAX`], distinct, with one request id and one
/// actor) that is written all or none, in one group commit, each stream
/// under its own expected version. The answer has one entry per stream, in
/// request order.
pub(crate) struct Job {
    pub reqs: Vec<AppendRequest>,
    /// Written with the events, all or none (see [`SideWrite`]); a retry
    /// of a request already in the log writes none.
    pub side: Vec<SideWrite>,
    pub reply: Reply,
}

/// Where a job's answer goes: one entry per stream, in request order.
pub(crate) type Reply = oneshot::Sender<Result<Vec<Appended>, AppendError>>;

impl Job {
    fn events(&self) -> usize {
        self.reqs.iter().map(|r| r.events.len()).sum()
    }
}

/// Checks the parts of a multi-stream append against each other: 1 to
/// [`APPEND_STREAMS_MAX`] requests, each valid, on distinct streams, with
/// one request id and one actor.
pub fn validate_parts(reqs: &[AppendRequest]) -> Result<(), AppendError> {
    if reqs.is_empty() {
        return Err(invalid("streams", "at least one stream is required"));
    }
    if reqs.len() > APPEND_STREAMS_MAX {
        return Err(AppendError::TooLarge {
            field: "streams",
            limit: APPEND_STREAMS_MAX,
        });
    }
    for (i, r) in reqs.iter().enumerate() {
        r.validate()?;
        if reqs[..i].iter().any(|o| o.stream_id == r.stream_id) {
            return Err(invalid("stream_id", "a stream appears twice in one append"));
        }
        if r.request_id != reqs[0].request_id || r.actor != reqs[0].actor {
            return Err(invalid(
                "request_id",
                "the streams of one append share its request id and actor",
            ));
        }
    }
    Ok(())
}

/// How one part of an append stands against the log and the batch.
enum Part {
    /// The stream already holds this request id: the content fingerprint of
    /// what it holds, the answer a retry gets, and whether it is in this batch.
    Seen(Hash, Appended, bool),
    /// A new request on the stream: its case file and version.
    Fresh(CaseFile, u64),
}

/// Configuration of the writer.
#[derive(Clone, Copy, Debug)]
pub struct WriterConfig {
    /// How each group commit is made durable before appends are answered.
    pub sync: SyncMode,
}

/// A batch the leader's writer chained, for the cluster to replicate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposedBatch {
    /// Each record's bytes, length-prefixed (see [`super::apply::Applier::apply_records`]).
    pub records: Vec<u8>,
    /// The head after the batch.
    pub head: Head,
    /// The side writes its appends make, in order.
    pub side: Vec<SideSet>,
}

/// The cluster's side of a replicated writer (implemented in src/cluster/).
pub trait Proposer: Send + Sync {
    /// Waits (briefly) until this node may chain new records: it leads and
    /// has applied every entry of earlier terms, so the store's head is the
    /// cluster's. Otherwise `NotLeader` (with the leader's address when
    /// known) or `Unavailable`.
    fn ready(&self) -> Result<(), AppendError>;
    /// Without waiting: `Ok` if this node leads now, else `NotLeader`.
    fn leader(&self) -> Result<(), AppendError>;
    /// Hands a batch to the cluster, in order, without waiting; the
    /// proposal completes once a majority holds it and this node applied
    /// it. An error after the proposal leaves the outcome unknown: the
    /// client's retry with the same request id gets the answer.
    fn propose(&self, batch: ProposedBatch) -> Result<Box<dyn PendingProposal>, AppendError>;
}

/// A proposal in flight.
pub trait PendingProposal: Send {
    /// Its outcome, if known now.
    fn try_done(&mut self) -> Option<Result<(), AppendError>>;
    /// Waits for its outcome; `Unavailable` (outcome unknown) after `timeout`.
    fn wait(&mut self, timeout: std::time::Duration) -> Result<(), AppendError>;
}

/// Most batches a cluster leader's writer has in flight: it chains the next
/// batch onto the one before while that one is being replicated.
pub const PROPOSALS_IN_FLIGHT_MAX: usize = 8;
/// How long a proposal may take before its clients are answered UNAVAILABLE.
pub const PROPOSAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A batch proposed to the cluster, not yet answered.
struct InFlight {
    no: u64,
    pending: Box<dyn PendingProposal>,
    replies: Vec<(Reply, Vec<Appended>)>,
    conflicts: Vec<(Reply, AppendError)>,
    /// (stream, request id) of every request it holds.
    ids: Vec<(String, String)>,
    events: usize,
    started: std::time::Instant,
    recorded_at_us: i64,
}

/// Where a replicated writer finds its proposer once the cluster started.
pub type ProposerSlot = Arc<OnceLock<Arc<dyn Proposer>>>;

/// What the writer watches and announces besides its queue.
pub(crate) struct Signals {
    /// Set by the tail verifier when the log fails verification.
    pub broken: watch::Receiver<Option<super::Broken>>,
    /// Free disk space: appends are refused while it is low.
    pub disk: watch::Receiver<super::disk::DiskState>,
}

/// Spawns the writer thread. It runs until every sender is dropped, then
/// drains what is queued and exits.
pub(crate) fn spawn(
    store: Store,
    head: Head,
    applier: Arc<Mutex<Applier>>,
    proposer: Option<ProposerSlot>,
    signals: Signals,
) -> Result<(mpsc::Sender<Job>, std::thread::JoinHandle<()>), StoreError> {
    let last_recorded_at_us = match store.get_unpublished(head.seq)? {
        Some(ev) => ev.record.recorded_at_us,
        None => 0,
    };
    let (tx, rx) = mpsc::channel(QUEUE_REQUESTS_MAX);
    let side_trees = SideTrees::open(store.db())?;
    let mut writer = Writer {
        store,
        side_trees,
        side_overlay: HashMap::new(),
        head,
        last_recorded_at_us,
        applier,
        proposer,
        inflight: Default::default(),
        overlay: HashMap::new(),
        inflight_ids: Default::default(),
        batch_no: 0,
        need_ready: true,
        failed: None,
        signals,
    };
    let handle = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || writer.run(rx))?;
    Ok((tx, handle))
}

struct Writer {
    store: Store,
    /// The trees side writes go to (see [`SideWrite`]).
    side_trees: SideTrees,
    /// The side values the batches in flight write (with the number of the
    /// batch that last wrote each): side conditions read these first.
    side_overlay: HashMap<(Side, Vec<u8>), (Vec<u8>, u64)>,
    /// The head this writer chains onto (a replicated writer re-reads it
    /// from the store before each batch: the cluster may have moved it).
    head: Head,
    last_recorded_at_us: i64,
    /// Commits batches (single node) and announces why writes stopped.
    applier: Arc<Mutex<Applier>>,
    /// Set for a cluster node: batches are proposed, not committed here.
    proposer: Option<ProposerSlot>,
    /// A cluster leader's proposals in flight, oldest first.
    inflight: std::collections::VecDeque<InFlight>,
    /// The case files as the batches in flight leave them (with the number
    /// of the batch that last changed each): staging reads these first.
    overlay: HashMap<String, (CaseFile, u64)>,
    /// (stream, request id) of the requests in flight.
    inflight_ids: std::collections::HashSet<(String, String)>,
    batch_no: u64,
    /// After a failed or unknown proposal: wait until this node may chain
    /// again (every entry of its Raft log applied) and re-read the head.
    need_ready: bool,
    /// Set after a storage error: every later append is refused.
    failed: Option<String>,
    /// The tail verifier's break (every later append is refused too:
    /// nothing is chained onto a broken log) and the free disk space.
    signals: Signals,
}

/// The part of a batch that will be written.
#[derive(Default)]
struct Staged {
    chunks: ChunkBuilder,
    /// The records, length-prefixed, when the batch is to be proposed.
    records: Option<Vec<u8>>,
    replies: Vec<(Reply, Vec<Appended>)>,
    /// Case files changed by this batch, as they are after it.
    files: HashMap<String, CaseFile>,
    /// Requests accepted in this batch, by (stream, request id): content
    /// fingerprint and result.
    request_ids: HashMap<(String, String), (Hash, Appended)>,
    event_count: usize,
    /// The side writes of the staged appends, in order.
    side: Vec<SideSet>,
    /// The side values they leave, for the conditions of later appends.
    side_values: HashMap<(Side, Vec<u8>), Vec<u8>>,
}

/// What the writer decided about one request of a batch.
enum Outcome {
    /// Its events are in the batch; answer after the commit.
    Staged(Vec<Appended>),
    /// A version conflict: answered once the batch is published, since the
    /// version it names may be written by this very batch.
    Conflict(AppendError),
    /// Answer now: refused, or a retry of a request that is already durable.
    Answer(Result<Vec<Appended>, AppendError>),
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Job>) {
        let mut carry: Option<Job> = None;
        loop {
            let first = match carry.take() {
                Some(job) => job,
                None if self.inflight.is_empty() => match rx.blocking_recv() {
                    Some(job) => job,
                    None => break,
                },
                // Proposals in flight: take what is queued, else answer the oldest.
                None => match rx.try_recv() {
                    Ok(job) => job,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.complete_oldest();
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                },
            };
            let mut events = first.events();
            let mut jobs = vec![first];
            while jobs.len() < BATCH_REQUESTS_MAX {
                match rx.try_recv() {
                    Ok(job) if events + job.events() > BATCH_EVENTS_MAX => {
                        carry = Some(job);
                        break;
                    }
                    Ok(job) => {
                        events += job.events();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.process(jobs);
            self.complete_finished();
        }
        self.drain_inflight();
        self.applier.lock().unwrap_or_else(|p| p.into_inner()).close();
        tracing::debug!(head_seq = self.head.seq, "log writer stopped");
    }

    fn applier(&self) -> std::sync::MutexGuard<'_, Applier> {
        self.applier.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// For a cluster node: the proposer, once this node may chain records
    /// (leading, every earlier entry applied), with the head re-read from
    /// the store; otherwise the answer every job of the batch gets.
    fn replicated_ready(&mut self) -> Result<Option<Arc<dyn Proposer>>, AppendError> {
        let Some(slot) = &self.proposer else {
            return Ok(None);
        };
        let Some(proposer) = slot.get().cloned() else {
            return Err(AppendError::Unavailable("the cluster is starting".into()));
        };
        if !self.need_ready && !self.inflight.is_empty() {
            // Pipelining: chain onto the batches in flight.
            return Ok(Some(proposer));
        }
        if !self.inflight.is_empty() {
            self.drain_inflight();
        }
        proposer.ready()?;
        self.need_ready = false;
        self.overlay.clear();
        self.side_overlay.clear();
        let head = self.applier().head();
        if head != self.head {
            self.head = head;
            if let Ok(Some(ev)) = self.store.get_unpublished(head.seq) {
                self.last_recorded_at_us = self.last_recorded_at_us.max(ev.record.recorded_at_us);
            }
        }
        Ok(Some(proposer))
    }

    /// Answers the proposals in flight whose outcome is known, oldest first.
    fn complete_finished(&mut self) {
        while let Some(front) = self.inflight.front_mut() {
            match front.pending.try_done() {
                Some(result) => {
                    let done = self.inflight.pop_front().expect("front");
                    self.finish_proposal(done, result);
                }
                None => break,
            }
        }
    }

    /// Waits for the oldest proposal in flight and answers it.
    fn complete_oldest(&mut self) {
        if let Some(mut oldest) = self.inflight.pop_front() {
            let result = oldest.pending.wait(PROPOSAL_TIMEOUT);
            self.finish_proposal(oldest, result);
        }
    }

    /// Waits for every proposal in flight and answers each.
    fn drain_inflight(&mut self) {
        while !self.inflight.is_empty() {
            self.complete_oldest();
        }
    }

    fn finish_proposal(&mut self, done: InFlight, result: Result<(), AppendError>) {
        for id in &done.ids {
            self.inflight_ids.remove(id);
        }
        self.overlay.retain(|_, (_, no)| *no != done.no);
        self.side_overlay.retain(|_, (_, no)| *no != done.no);
        match result {
            Ok(()) => {
                self.store
                    .metrics()
                    .commit_done(done.events, done.replies.len(), done.started.elapsed());
                self.last_recorded_at_us = self.last_recorded_at_us.max(done.recorded_at_us);
                for (reply, appended) in done.replies {
                    let _ = reply.send(Ok(appended));
                }
                for (reply, conflict) in done.conflicts {
                    let _ = reply.send(Err(conflict));
                }
            }
            Err(e) => {
                // Unknown outcome: the later batches chained onto this one
                // stand or fall with it in the log; each is answered by its
                // own outcome, and nothing new is chained until this node
                // has applied its whole Raft log (then the head is re-read).
                self.need_ready = true;
                self.overlay.clear();
                self.side_overlay.clear();
                for reply in done
                    .replies
                    .into_iter()
                    .map(|(r, _)| r)
                    .chain(done.conflicts.into_iter().map(|(r, _)| r))
                {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    fn process(&mut self, jobs: Vec<Job>) {
        if self.failed.is_none() {
            let reason = self.applier().failed();
            if reason.is_some() {
                self.failed = reason;
            }
        }
        if self.failed.is_none() {
            let broken = self.signals.broken.borrow().as_ref().map(|b| b.seq);
            if let Some(seq) = broken {
                tracing::error!(
                    seq,
                    "the log failed verification; the writer stops accepting appends"
                );
                self.fail(format!(
                    "the log failed verification at seq {seq}; the service must be stopped and the store examined"
                ));
            }
        }
        if let Some(reason) = &self.failed {
            for job in jobs {
                let _ = job.reply.send(Err(AppendError::Unavailable(reason.clone())));
            }
            return;
        }
        if self.signals.disk.borrow().low {
            // Nothing is written: the request may be retried once space is freed.
            for job in jobs {
                let reason = "free disk space is under the reserve; retry once space is freed";
                let _ = job.reply.send(Err(AppendError::Unavailable(reason.into())));
            }
            return;
        }
        if !self.inflight_ids.is_empty()
            && jobs.iter().any(|j| {
                j.reqs.iter().any(|r| {
                    self.inflight_ids
                        .contains(&(r.stream_id.clone(), r.request_id.clone()))
                })
            })
        {
            // A copy of a request in flight: answer it from the log once its original is.
            self.drain_inflight();
        }
        let proposer = match self.replicated_ready() {
            Ok(p) => p,
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
                return;
            }
        };
        let start_head = self.head;
        let recorded_at_us = now_us().max(self.last_recorded_at_us);
        let mut staged = Staged {
            records: proposer.is_some().then(Vec::new),
            ..Staged::default()
        };
        let mut conflicts = Vec::new();
        for job in jobs {
            match self.stage(job.reqs, job.side, recorded_at_us, &mut staged) {
                Outcome::Staged(appended) => staged.replies.push((job.reply, appended)),
                Outcome::Conflict(conflict) => conflicts.push((job.reply, conflict)),
                Outcome::Answer(result) => {
                    let _ = job.reply.send(result);
                }
            }
        }
        if staged.event_count == 0 {
            // Only retries of already-durable requests and refusals: answer them.
            for (reply, appended) in staged.replies {
                let _ = reply.send(Ok(appended));
            }
            match self.inflight.back_mut() {
                // A conflict decided against a batch in flight is answered with it.
                Some(last) => last.conflicts.extend(conflicts),
                None => {
                    for (reply, conflict) in conflicts {
                        let _ = reply.send(Err(conflict));
                    }
                }
            }
            return;
        }
        let Staged {
            chunks,
            records,
            replies,
            files,
            event_count,
            request_ids,
            side,
            side_values,
        } = staged;
        let started = std::time::Instant::now();
        let committed = match (&proposer, records) {
            (Some(proposer), Some(records)) => {
                let batch = ProposedBatch {
                    records,
                    head: self.head,
                    side,
                };
                match proposer.propose(batch) {
                    Ok(pending) => {
                        self.batch_no += 1;
                        let no = self.batch_no;
                        for (stream, file) in files {
                            self.overlay.insert(stream, (file, no));
                        }
                        for (key, value) in side_values {
                            self.side_overlay.insert(key, (value, no));
                        }
                        let ids: Vec<(String, String)> = request_ids.into_keys().collect();
                        self.inflight_ids.extend(ids.iter().cloned());
                        self.inflight.push_back(InFlight {
                            no,
                            pending,
                            replies,
                            conflicts,
                            ids,
                            events: event_count,
                            started,
                            recorded_at_us,
                        });
                        if self.inflight.len() >= PROPOSALS_IN_FLIGHT_MAX {
                            self.complete_oldest();
                        }
                        return;
                    }
                    Err(e) => {
                        // Not proposed: nothing of this batch is in the log.
                        self.need_ready = true;
                        Err(e)
                    }
                }
            }
            _ => {
                let head = self.head;
                // The side writes first: a crash before the records' commit
                // leaves a key or reservation no event uses, which the next
                // registration of that case (or document, once stale) takes over.
                let side_written = self.side_trees.apply(&side, |_, _, _| Ok(()));
                if let Err(e) = &side_written {
                    tracing::error!(error = %e, "writing an append's side writes failed; writes stop");
                    self.applier()
                        .fail("a storage error stopped the log writer; restart the service".into());
                }
                side_written
                    .map_err(StoreError::from)
                    .and_then(|()| self.applier().commit(head, chunks, files, &[], true))
                    .map_err(|_| {
                        AppendError::Unavailable(
                            "a storage error stopped the log writer; restart the service".into(),
                        )
                    })
            }
        };
        match committed {
            Ok(()) => {
                self.store
                    .metrics()
                    .commit_done(event_count, replies.len(), started.elapsed());
                self.last_recorded_at_us = recorded_at_us;
                tracing::trace!(events = event_count, head_seq = self.head.seq, "group commit");
                for (reply, appended) in replies {
                    let _ = reply.send(Ok(appended));
                }
                for (reply, conflict) in conflicts {
                    let _ = reply.send(Err(conflict));
                }
            }
            Err(e) => {
                self.head = start_head;
                if proposer.is_none() {
                    // The applier logged the storage error and announced the stop.
                    self.failed = Some(e.to_string());
                }
                // A conflict may have been decided against the batch that failed.
                for reply in replies
                    .into_iter()
                    .map(|(r, _)| r)
                    .chain(conflicts.into_iter().map(|(r, _)| r))
                {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Stops taking appends for good (until restart) and announces why.
    fn fail(&mut self, reason: String) {
        self.applier().fail(reason.clone());
        self.failed = Some(reason);
    }

    /// Checks one append (one stream, or one request on several streams)
    /// and, if every part is accepted, stages the events of all of them;
    /// otherwise stages nothing.
    fn stage(
        &mut self,
        reqs: Vec<AppendRequest>,
        side: Vec<SideWrite>,
        recorded_at_us: i64,
        staged: &mut Staged,
    ) -> Outcome {
        if let Err(e) = validate_parts(&reqs) {
            return Outcome::Answer(Err(e));
        }
        let mismatch = |req: &AppendRequest| {
            Outcome::Answer(Err(AppendError::IdempotencyMismatch {
                request_id: req.request_id.clone(),
            }))
        };
        if side.len() > APPEND_SIDE_WRITES_MAX {
            return Outcome::Answer(Err(AppendError::TooLarge {
                field: "side writes",
                limit: APPEND_SIDE_WRITES_MAX,
            }));
        }
        let mut parts = Vec::with_capacity(reqs.len());
        for req in &reqs {
            match self.examine(req, staged) {
                Ok(Part::Seen(fp, _, _)) if fp != req.fingerprint() => {
                    // A copy of a registration racing its original sealed
                    // with a key of its own: its key's condition fails, and
                    // the caller, told so once the original is durable,
                    // seals again with the original's key.
                    return match self.side_conflict(&side, staged) {
                        Ok(Some(conflict)) => Outcome::Conflict(conflict),
                        Ok(None) => mismatch(req),
                        Err(outcome) => outcome,
                    };
                }
                Ok(part) => parts.push(part),
                Err(outcome) => return outcome,
            }
        }
        let seen = parts.iter().filter(|p| matches!(p, Part::Seen(..))).count();
        if seen == parts.len() {
            // A retry: every stream holds this request already.
            let in_batch = parts.iter().any(|p| matches!(p, Part::Seen(_, _, true)));
            let answers = parts
                .into_iter()
                .filter_map(|p| match p {
                    Part::Seen(_, appended, _) => Some(appended),
                    Part::Fresh(..) => None,
                })
                .collect();
            return match in_batch {
                true => Outcome::Staged(answers),
                false => Outcome::Answer(Ok(answers)),
            };
        }
        if seen > 0 {
            // Some streams hold this request id, others not: another request.
            return mismatch(&reqs[0]);
        }
        for (req, part) in reqs.iter().zip(&parts) {
            let Part::Fresh(_, current) = part else { continue };
            if !req.expected.admits(*current) {
                return Outcome::Conflict(AppendError::VersionConflict {
                    stream_id: req.stream_id.clone(),
                    expected: req.expected,
                    actual: *current,
                });
            }
            if *current as usize + req.events.len() > STREAM_EVENTS_MAX {
                return Outcome::Answer(Err(AppendError::StreamFull {
                    stream_id: req.stream_id.clone(),
                    limit: STREAM_EVENTS_MAX,
                }));
            }
        }
        match self.side_conflict(&side, staged) {
            Ok(None) => {}
            Ok(Some(conflict)) => return Outcome::Conflict(conflict),
            Err(outcome) => return outcome,
        }
        for w in side {
            staged
                .side_values
                .insert((w.tree, w.key.clone()), w.value.clone());
            staged.side.push(SideSet {
                tree: w.tree,
                key: w.key,
                value: w.value,
            });
        }
        let mut answers = Vec::with_capacity(reqs.len());
        for (req, part) in reqs.into_iter().zip(parts) {
            let Part::Fresh(file, current) = part else {
                continue;
            };
            answers.push(self.write_part(req, file, current, recorded_at_us, staged));
        }
        Outcome::Staged(answers)
    }

    /// The first of `side` whose condition does not hold against the trees
    /// as the batches in flight and this one leave them.
    fn side_conflict(&self, side: &[SideWrite], staged: &Staged) -> Result<Option<AppendError>, Outcome> {
        for (index, w) in side.iter().enumerate() {
            let key = (w.tree, w.key.clone());
            let holds = match staged
                .side_values
                .get(&key)
                .or_else(|| self.side_overlay.get(&key).map(|(v, _)| v))
            {
                Some(v) => w.expect.as_deref() == Some(v.as_slice()),
                None => match self.side_trees.tree(w.tree).get(&w.key) {
                    Ok(v) => v.as_deref() == w.expect.as_deref(),
                    Err(e) => {
                        tracing::error!(error = %e, "reading a side tree while staging an append");
                        return Err(Outcome::Answer(Err(AppendError::Unavailable(
                            "storage read failed".into(),
                        ))));
                    }
                },
            };
            if !holds {
                return Ok(Some(AppendError::SideConflict { index }));
            }
        }
        Ok(None)
    }

    /// Where one part stands: a request id the stream (or the batch) already
    /// holds, or a new request with the stream's case file and version.
    fn examine(&self, req: &AppendRequest, staged: &Staged) -> Result<Part, Outcome> {
        let key = (req.stream_id.clone(), req.request_id.clone());
        if let Some((fp, appended)) = staged.request_ids.get(&key) {
            let appended = Appended {
                deduplicated: true,
                ..*appended
            };
            return Ok(Part::Seen(*fp, appended, true));
        }
        let storage = |e: StoreError| {
            tracing::error!(error = %e, "reading the log while staging an append");
            Outcome::Answer(Err(AppendError::Unavailable("storage read failed".into())))
        };
        let file = match staged
            .files
            .get(&req.stream_id)
            .or_else(|| self.overlay.get(&req.stream_id).map(|(f, _)| f))
        {
            Some(f) => f.clone(),
            None => match self.store.case_file(&req.stream_id) {
                Ok(f) => f.map(|f| (*f).clone()).unwrap_or_default(),
                Err(e) => return Err(storage(e)),
            },
        };
        match self.earlier_request(&file, &req.request_id) {
            Ok(Some((fp, appended))) => Ok(Part::Seen(fp, appended, false)),
            Ok(None) => {
                let current = file.version();
                Ok(Part::Fresh(file, current))
            }
            Err(e) => Err(storage(e)),
        }
    }

    /// Stages the events of one checked part after the head.
    fn write_part(
        &mut self,
        req: AppendRequest,
        mut file: CaseFile,
        current: u64,
        recorded_at_us: i64,
        staged: &mut Staged,
    ) -> Appended {
        let fingerprint = req.fingerprint();
        let parts = req.events.len() as u16;
        let first_seq = self.head.seq + 1;
        assert_eq!(
            file.version(),
            current,
            "a part is staged on the version it was checked against"
        );
        let mut bytes = Vec::new();
        for (i, ev) in req.events.iter().enumerate() {
            let view = RecordView {
                seq: self.head.seq + 1,
                recorded_at_us,
                stream_id: &req.stream_id,
                stream_version: current + 1 + i as u64,
                part: i as u16,
                parts,
                event_type: &ev.event_type,
                user_id: &req.actor.user_id,
                office: &req.actor.office,
                request_id: &req.request_id,
                payload: &ev.payload,
                prev_hash: self.head.hash,
            };
            bytes.clear();
            view.encode_into(&mut bytes);
            let hash = chain_hash(&self.head.hash, &bytes);
            match &mut staged.records {
                Some(records) => push_record(records, &bytes),
                None => staged.chunks.push(view.seq, &bytes, &hash),
            }
            file.push(view.seq, view.part, &req.request_id);
            self.head = Head { seq: view.seq, hash };
        }
        assert_eq!(
            file.version(),
            current + u64::from(parts),
            "one stream version an event"
        );
        let appended = Appended {
            first_seq,
            last_seq: self.head.seq,
            first_version: current + 1,
            last_version: current + parts as u64,
            recorded_at_us,
            deduplicated: false,
        };
        staged.event_count += parts as usize;
        let key = (req.stream_id.clone(), req.request_id);
        staged.files.insert(req.stream_id, file);
        staged.request_ids.insert(key, (fingerprint, appended));
        appended
    }

    /// The request with this id that an earlier commit appended to the
    /// stream, with the content fingerprint of its records and the answer a
    /// retry gets; `None` if the stream never saw the id.
    fn earlier_request(
        &self,
        file: &CaseFile,
        request_id: &str,
    ) -> Result<Option<(Hash, Appended)>, StoreError> {
        let Some((mark, first)) = self.store.request_in(file, request_id)? else {
            return Ok(None);
        };
        let count = first.record.parts as usize;
        let idx = mark.first_version as usize - 1;
        let seqs = file.seqs.get(idx..idx + count).ok_or(StoreError::CorruptMeta(
            "a request's events are missing from its case file",
        ))?;
        let events: Vec<StoredEvent> = self.store.get_many(seqs)?;
        let fp = content_fingerprint(
            &first.record.actor,
            events
                .iter()
                .map(|e| (e.record.event_type.as_str(), e.record.payload.as_slice())),
        );
        Ok(Some((
            fp,
            Appended {
                first_seq: first.record.seq,
                last_seq: seqs[seqs.len() - 1],
                first_version: mark.first_version,
                last_version: mark.first_version + count as u64 - 1,
                recorded_at_us: first.record.recorded_at_us,
                deduplicated: true,
            },
        )))
    }
}

pub use crate::clock::now_us;
