//! The append-only, BLAKE3 hash-chained event log on sled.
//!
//! - [`record`]: the stored record format and the chain hash.
//! - [`chunk`]: the records of a group commit as one sled value.
//! - [`casefile`]: one value per stream (version, events, requests), and
//!   the follower that writes them behind the writer.
//! - [`store`]: the sled layout (store format v2) and every read.
//! - [`writer`]: the single writer thread (group commit, durable acknowledgement).
//! - [`verify`]: chain and case-file verification.
//! - [`v1`], [`migrate`]: the previous store format, and its conversion.
//!
//! [`Log`] ties them together: opening verifies the tail of the chain and
//! replays the case files the follower had not written, then starts the
//! writer, the case-file follower and the tail verifier, which re-reads what
//! the writer committed and advances the verified position while the log is open.

pub mod apply;
pub mod casefile;
pub mod chunk;
pub mod disk;
pub mod follow;
pub mod load;
pub mod migrate;
pub mod record;
pub mod side;
pub mod store;
pub mod v1;
pub mod verify;
pub mod writer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

pub use apply::{push_record, split_records, Applier, ApplyError};
pub use record::{Actor, Hash, Record};
pub use side::{Side, SideSet, SideWrite};
pub use store::{Head, Store, StoreError, StoredEvent, SyncMode};
pub use verify::{Broken, VerifyError};
pub use writer::{
    AppendError, AppendRequest, Appended, ExpectedVersion, NewEvent, ProposedBatch, Proposer, ProposerSlot,
    WriterConfig,
};

use casefile::CaseFileUpdate;

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store could not be opened or read (including a store of another
    /// format, [`StoreError::Format`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The start-up verification found the chain broken: the log is not served.
    #[error("refusing to serve a broken log: {0}")]
    Broken(Broken),
}

impl From<VerifyError> for OpenError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Broken(b) => OpenError::Broken(b),
            VerifyError::Store(s) => OpenError::Store(s),
        }
    }
}

/// An open log: a store everyone may read, a handle to its one writer, and
/// the tail verifier.
pub struct Log {
    store: Store,
    /// Commits records into the store (the writer's on a single node, the
    /// cluster's state machine's on a cluster node).
    applier: Arc<Mutex<Applier>>,
    /// A cluster node's writer proposes through what is set here.
    proposer: Option<ProposerSlot>,
    tx: Option<mpsc::Sender<writer::Job>>,
    head_rx: watch::Receiver<Head>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The case-file follower: it stops once the writer (its only sender) has.
    follower: Option<std::thread::JoinHandle<Result<(), StoreError>>>,
    tail: Arc<TailVerifier>,
    /// Dropping the sender stops the verifier thread.
    verifier: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
    /// Why the writer stopped taking appends (storage error, broken log,
    /// dead case-file follower): set once, never cleared until restart.
    writer_failed: watch::Receiver<Option<String>>,
    /// Free disk space; the writer refuses appends while it is low.
    disk: watch::Sender<disk::DiskState>,
    /// The disk guard thread, if started; dropping the sender stops it.
    disk_guard: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

/// Re-reads what the writer committed since the verified position (chain
/// links and hashes, time order, request parts, index entries) and advances
/// `meta/verified`, so that a start-up only has to check what a crash left
/// behind, not everything appended since the previous start. A break stops
/// the writer (every later append is refused) and is announced on `broken`;
/// the server stops serving on it.
struct TailVerifier {
    store: Store,
    /// The verified position; the lock also serializes steps.
    verified: Mutex<Head>,
    broken: watch::Sender<Option<Broken>>,
}

impl TailVerifier {
    /// Verifies from the verified position to the published head and
    /// advances it. The new position reaches disk with the writer's next
    /// flush (or at close).
    fn step(&self) -> Result<verify::ChainReport, VerifyError> {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = self.broken.borrow().clone() {
            return Err(b.into());
        }
        let head = self.store.head()?;
        let from = *verified;
        if head.seq <= from.seq {
            return Ok(verify::ChainReport {
                events: 0,
                head: from,
                elapsed: Duration::ZERO,
            });
        }
        let checked = verify::verify_range(&self.store, from, head.seq).and_then(|report| {
            if report.head.hash != head.hash {
                return Err(
                    Broken::at(head.seq, "chain hash differs from the head the writer published").into(),
                );
            }
            verify::verify_tail_case_files(&self.store, from.seq, head.seq)?;
            Ok(report)
        });
        match checked {
            Ok(report) => {
                self.store.set_verified_unflushed(head)?;
                *verified = head;
                Ok(report)
            }
            Err(VerifyError::Broken(b)) => {
                tracing::error!(seq = b.seq, reason = %b.reason, "the log failed verification while open; appends stop");
                self.broken.send_replace(Some(b.clone()));
                Err(b.into())
            }
            Err(e) => Err(e),
        }
    }
}

/// A cheap, cloneable handle for appending (one per task or client).
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<writer::Job>,
    metrics: crate::metrics::log::LogMetrics,
    /// A cluster node's proposer (for [`Appender::check_leader`]).
    proposer: Option<ProposerSlot>,
}

impl Log {
    /// Opens the store in `dir`, verifies the chain from the last verified
    /// position to the head, and starts the writer and the tail verifier
    /// (every [`crate::limits::TAIL_VERIFY_INTERVAL_MS`]).
    pub fn open(dir: &std::path::Path, config: WriterConfig) -> Result<Log, OpenError> {
        let every = Duration::from_millis(crate::limits::TAIL_VERIFY_INTERVAL_MS);
        Log::open_with(dir, config, Some(every))
    }

    /// Like [`Log::open`], with the tail verifier's interval; `None` runs no
    /// verifier thread (the tail is then verified by [`Log::verify_tail`] and
    /// at close).
    pub fn open_with(
        dir: &std::path::Path,
        config: WriterConfig,
        verify_every: Option<Duration>,
    ) -> Result<Log, OpenError> {
        Log::open_node(dir, config, verify_every, false)
    }

    /// Opens the store of a cluster node: like [`Log::open`], with a writer
    /// that proposes its batches through the [`Proposer`] given later with
    /// [`Log::set_proposer`] (appends are refused as unavailable until then);
    /// the cluster's state machine applies them through [`Log::applier`].
    pub fn open_replicated(dir: &std::path::Path, config: WriterConfig) -> Result<Log, OpenError> {
        let every = Duration::from_millis(crate::limits::TAIL_VERIFY_INTERVAL_MS);
        Log::open_node(dir, config, Some(every), true)
    }

    fn open_node(
        dir: &std::path::Path,
        config: WriterConfig,
        verify_every: Option<Duration>,
        replicated: bool,
    ) -> Result<Log, OpenError> {
        let store = Store::open(dir)?;
        let verify::Startup { report, replayed } = verify::verify_at_startup(&store)?;
        tracing::info!(
            head_seq = report.head.seq,
            verified_now = report.events,
            case_files_replayed = replayed.len(),
            elapsed_ms = report.elapsed.as_millis() as u64,
            "log opened; tail verified"
        );
        // The case files the follower had not written when the last run
        // stopped: in memory now, and written by the follower first.
        let replayed: Vec<_> = replayed.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        store.case_files.install(&replayed);
        let (follower_tx, follower_rx) = std::sync::mpsc::sync_channel(crate::limits::CASE_FILES_QUEUE_MAX);
        if !replayed.is_empty() {
            let _ = follower_tx.send(CaseFileUpdate {
                upto: report.head,
                files: replayed,
            });
        }
        let files = store.case_files.clone();
        let follower = std::thread::Builder::new()
            .name("log-case-files".into())
            .spawn(move || {
                let result = casefile::run_follower(files, follower_rx);
                if let Err(e) = &result {
                    tracing::error!(error = %e, "the case-file follower stopped on a storage error");
                }
                result
            })
            .map_err(StoreError::Io)?;
        let (head_tx, head_rx) = watch::channel(report.head);
        // One channel: the tail verifier announces a break on `broken`; the
        // writer reads it as `Signals::broken` and refuses every later append.
        let (broken, broken_rx) = watch::channel(None);
        let (failed_tx, writer_failed) = watch::channel(None);
        let (disk, disk_rx) = watch::channel(disk::DiskState::default());
        let signals = writer::Signals {
            broken: broken_rx,
            disk: disk_rx,
        };
        let applier = Arc::new(Mutex::new(Applier::new(
            store.clone(),
            config.sync,
            report.head,
            head_tx,
            follower_tx,
            failed_tx,
        )?));
        let proposer: Option<ProposerSlot> = replicated.then(Default::default);
        let (tx, thread) = writer::spawn(
            store.clone(),
            report.head,
            applier.clone(),
            proposer.clone(),
            signals,
        )?;
        let tail = Arc::new(TailVerifier {
            store: store.clone(),
            verified: Mutex::new(report.head),
            broken,
        });
        let verifier = match verify_every {
            Some(every) => {
                let (stop, stopped) = std::sync::mpsc::channel::<()>();
                let tail = tail.clone();
                let handle = std::thread::Builder::new()
                    .name("log-verifier".into())
                    .spawn(move || {
                        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                            match tail.step() {
                                Ok(_) => {}
                                Err(VerifyError::Broken(_)) => break,
                                Err(VerifyError::Store(e)) => {
                                    tracing::warn!(error = %e, "tail verification could not read the log; retrying")
                                }
                            }
                        }
                    })
                    .map_err(StoreError::Io)?;
                Some((stop, handle))
            }
            None => None,
        };
        Ok(Log {
            store,
            applier,
            proposer,
            tx: Some(tx),
            head_rx,
            thread: Some(thread),
            follower: Some(follower),
            tail,
            verifier,
            writer_failed,
            disk,
            disk_guard: None,
        })
    }

    /// The applier: a cluster node's state machine applies committed records through it.
    pub fn applier(&self) -> Arc<Mutex<Applier>> {
        self.applier.clone()
    }

    /// Gives a replicated writer (opened with `WriterConfig::replicated`)
    /// its proposer; appends are refused as unavailable until then. Returns
    /// false for a single node's writer, or when one was set already.
    pub fn set_proposer(&self, proposer: Arc<dyn Proposer>) -> bool {
        self.proposer
            .as_ref()
            .is_some_and(|slot| slot.set(proposer).is_ok())
    }

    /// Why the writer stopped taking appends, once it has (it then refuses
    /// every append until the service restarts).
    pub fn writer_failed(&self) -> watch::Receiver<Option<String>> {
        self.writer_failed.clone()
    }

    /// Starts measuring the store's free disk space every `every`: while it
    /// is under `reserve_bytes` the writer refuses appends (UNAVAILABLE,
    /// nothing written) and resumes once space is freed. Without a guard the
    /// writer never refuses for space (tools, tests).
    pub fn guard_disk(&mut self, reserve_bytes: u64, every: Duration) -> std::io::Result<()> {
        if self.disk_guard.is_some() {
            return Ok(());
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (dir, state) = (self.store.dir().to_path_buf(), self.disk.clone());
        let handle = std::thread::Builder::new()
            .name("log-disk-guard".into())
            .spawn(move || disk::guard(dir, reserve_bytes, every, state, stopped))?;
        self.disk_guard = Some((stop, handle));
        Ok(())
    }

    /// The free disk space as last measured by the guard (all zero without one).
    pub fn disk(&self) -> watch::Receiver<disk::DiskState> {
        self.disk.subscribe()
    }

    /// Verifies what was committed since the verified position now and
    /// advances it (the verifier thread does this on its own every interval).
    pub fn verify_tail(&self) -> Result<verify::ChainReport, VerifyError> {
        self.tail.step()
    }

    /// The position up to which the log has been verified.
    pub fn verified(&self) -> Head {
        *self.tail.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Announces the break the tail verifier found, if any (then appends stop).
    pub fn broken(&self) -> watch::Receiver<Option<Broken>> {
        self.tail.broken.subscribe()
    }

    /// Read access to the log.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A handle for appending.
    pub fn appender(&self) -> Appender {
        Appender {
            tx: self.tx.clone().expect("log is open"),
            metrics: self.store.metrics().clone(),
            proposer: self.proposer.clone(),
        }
    }

    /// Follows the committed (durable) head: changes after each group commit.
    pub fn subscribe_head(&self) -> watch::Receiver<Head> {
        self.head_rx.clone()
    }

    /// Stops accepting appends, lets the writer finish what is queued, and
    /// flushes. Appenders still held elsewhere keep the writer alive until dropped.
    pub fn shutdown(mut self) -> Result<(), StoreError> {
        self.close()
    }

    fn close(&mut self) -> Result<(), StoreError> {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // The writer dropped its sender: the follower writes what it holds and stops.
        if let Some(follower) = self.follower.take() {
            match follower.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "the case-file follower failed"),
                Err(_) => tracing::error!("the case-file follower panicked"),
            }
        }
        if let Some((stop, handle)) = self.verifier.take() {
            drop(stop);
            let _ = handle.join();
        }
        if let Some((stop, handle)) = self.disk_guard.take() {
            drop(stop);
            let _ = handle.join();
        }
        // Verify what the writer committed last, so that the next start
        // after a clean stop has nothing left to check.
        match self.tail.step() {
            Ok(_) => self.store.set_closed()?,
            Err(VerifyError::Broken(_)) => {}
            Err(VerifyError::Store(e)) => tracing::warn!(error = %e, "final tail verification failed"),
        }
        self.store.db().flush()?;
        Ok(())
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "flush on close failed");
        }
    }
}

impl Appender {
    /// On a cluster node: `NotLeader` (with the leader's client address when
    /// known) unless this node leads, so a command is refused before it
    /// reserves or creates anything; `Unavailable` while the cluster starts.
    /// Always `Ok` on a single node. Does not block.
    pub fn check_leader(&self) -> Result<(), AppendError> {
        match &self.proposer {
            None => Ok(()),
            Some(slot) => match slot.get() {
                Some(p) => p.leader(),
                None => Err(AppendError::Unavailable("the cluster is starting".into())),
            },
        }
    }

    /// Appends and waits until the events are durable (or refused).
    /// Waits for queue space when the writer is saturated (back-pressure).
    pub async fn append(&self, req: AppendRequest) -> Result<Appended, AppendError> {
        self.append_with(req, Vec::new()).await
    }

    /// Like [`Appender::append`], for threads outside the async runtime.
    /// Panics if called from inside an async context.
    pub fn append_blocking(&self, req: AppendRequest) -> Result<Appended, AppendError> {
        self.append_with_blocking(req, Vec::new())
    }

    /// Appends with side writes (a registration's person key, the documents
    /// a command reserves), written with the events or not at all; refused
    /// with [`AppendError::SideConflict`] when one's condition fails.
    pub async fn append_with(
        &self,
        req: AppendRequest,
        side: Vec<SideWrite>,
    ) -> Result<Appended, AppendError> {
        let result = self.send(vec![req], side).await.map(first);
        self.metrics.append_done(&result);
        result
    }

    /// Like [`Appender::append_with`], for threads outside the async runtime.
    pub fn append_with_blocking(
        &self,
        req: AppendRequest,
        side: Vec<SideWrite>,
    ) -> Result<Appended, AppendError> {
        let result = self.send_blocking(vec![req], side).map(first);
        self.metrics.append_done(&result);
        result
    }

    /// Appends one request to several streams (a family link: its two
    /// cases) atomically: every stream's events are written in one group
    /// commit, each under its own expected version, or none is. The
    /// streams share the request id and actor; a retry gets the original's
    /// answers (one per stream, in request order) when every stream holds
    /// the request, and a request id held by only some of them is refused
    /// ([`AppendError::IdempotencyMismatch`]).
    pub async fn append_many(&self, reqs: Vec<AppendRequest>) -> Result<Vec<Appended>, AppendError> {
        let result = self.send(reqs, Vec::new()).await;
        self.metrics.append_done(&spanned(&result));
        result
    }

    /// Like [`Appender::append_many`], for threads outside the async runtime.
    pub fn append_many_blocking(&self, reqs: Vec<AppendRequest>) -> Result<Vec<Appended>, AppendError> {
        let result = self.send_blocking(reqs, Vec::new());
        self.metrics.append_done(&spanned(&result));
        result
    }

    async fn send(
        &self,
        reqs: Vec<AppendRequest>,
        side: Vec<SideWrite>,
    ) -> Result<Vec<Appended>, AppendError> {
        let (job, answer) = job(reqs, side)?;
        self.tx.send(job).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    fn send_blocking(
        &self,
        reqs: Vec<AppendRequest>,
        side: Vec<SideWrite>,
    ) -> Result<Vec<Appended>, AppendError> {
        let (job, answer) = job(reqs, side)?;
        self.tx.blocking_send(job).map_err(|_| closed())?;
        answer.blocking_recv().map_err(|_| closed())?
    }
}

/// Where a job's answer comes (one entry per stream, in request order).
type JobAnswer = oneshot::Receiver<Result<Vec<Appended>, AppendError>>;

/// A checked job for the writer and where its answer will come.
fn job(reqs: Vec<AppendRequest>, side: Vec<SideWrite>) -> Result<(writer::Job, JobAnswer), AppendError> {
    writer::validate_parts(&reqs)?;
    let (reply, answer) = oneshot::channel();
    Ok((writer::Job { reqs, side, reply }, answer))
}

/// A multi-stream answer as one span of seqs, for the metrics (the parts
/// of one commit are contiguous).
fn spanned(result: &Result<Vec<Appended>, AppendError>) -> Result<Appended, AppendError> {
    match result {
        Ok(a) => Ok(Appended {
            last_seq: a.last().map_or(a[0].last_seq, |l| l.last_seq),
            ..a[0]
        }),
        Err(e) => Err(e.clone()),
    }
}

/// The answer of a one-stream append (the writer answers one entry per stream).
fn first(mut appended: Vec<Appended>) -> Appended {
    appended.swap_remove(0)
}

fn closed() -> AppendError {
    AppendError::Unavailable("the log writer has stopped".into())
}
