//! `registry simulate`: a deterministic synthetic caseload written through
//! the same case service and writer as the gRPC API.
//!
//! - [`generator`]: person `i` of seed `s` as a plan of commands, from
//!   `(s, i)` alone (DOMAIN.md "A realistic synthetic caseload").
//! - [`tally`]: the generator's count of what it wrote ([`Tally`]).
//! - [`rng`]: the seeded PRNG.
//! - [`remote`]: the same caseload sent to a running server through gRPC
//!   (`registry simulate --target`, single RPCs or import streams), checked
//!   against the server's statistics.
//! - [`wire`]: planned commands -> Caseworker API requests.
//!
//! [`run`] opens the store, starts `threads` workers that take persons in
//! turn and run each person's commands start to finish with
//! [`Cases::execute_blocking`] (so the writer's group commit batches the
//! workers' appends), and tallies each final state. Request ids are
//! `sim-{seed}-{i}-{step}`, so running the same simulation again on the same
//! directory appends nothing: every command is a deduplicated retry. Every
//! command is decided on [`TODAY`] (2025-12-31), and statuses are derived on
//! that date.
//!
//! Only counts leave this module: the summary and the JSON tally never hold
//! names or document numbers, and rejection messages hold codes and dates.

pub mod generator;
pub mod remote;
pub mod rng;
pub mod tally;
pub mod wire;

use crate::progress::Progress;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cases::{case_id_for_request, CaseError, Cases, CommandContext, PendingCommand};
use crate::domain::{person_status, Command};
use crate::log::SyncMode;
use crate::server::{load_master_key, open, Opened};

pub use generator::{plan_person, PersonPlan, PlannedCommand, TODAY};
pub use tally::Tally;

/// Default number of worker threads.
pub const DEFAULT_THREADS: usize = 8;
/// Most worker threads accepted.
pub const THREADS_MAX: usize = 512;
/// Rejection messages kept in the report.
const REJECTIONS_KEPT: usize = 10;

/// What to simulate, and where.
#[derive(Clone, Debug)]
pub struct SimulateOptions {
    /// Persons to simulate (indexes `0..persons`).
    pub persons: u64,
    /// The seed: the same seed and persons give the same caseload.
    pub seed: u64,
    /// The store to write into (created if missing).
    pub data_dir: PathBuf,
    /// Worker threads (each runs one person's case at a time).
    pub threads: usize,
    /// How group commits reach disk.
    pub sync: SyncMode,
    /// Master key file; default as `registry serve` (`$REGISTRY_MASTER_KEY`,
    /// else the development key in `DATA_DIR/master.key`).
    pub master_key_file: Option<PathBuf>,
    /// Draw a progress bar on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
}

impl SimulateOptions {
    /// `persons` of `seed` into `data_dir`, default threads, `flush` sync, no progress bar.
    pub fn new(persons: u64, seed: u64, data_dir: impl Into<PathBuf>) -> SimulateOptions {
        SimulateOptions {
            persons,
            seed,
            data_dir: data_dir.into(),
            threads: DEFAULT_THREADS,
            sync: SyncMode::Flush,
            master_key_file: None,
            progress: false,
        }
    }
}

/// Time spent in one kind of command (wall time of `execute_blocking`,
/// including the wait for the group commit).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CommandTiming {
    /// The command's name.
    pub command: String,
    /// Commands of that kind executed.
    pub count: u64,
    /// Their total time.
    pub total: Duration,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct SimulateReport {
    /// Persons simulated.
    pub persons: u64,
    /// The seed.
    pub seed: u64,
    /// Worker threads used.
    pub threads: usize,
    /// How group commits reached disk.
    pub sync: SyncMode,
    /// The caseload's counts (deterministic for a seed and a number of persons).
    pub tally: Tally,
    /// Events newly written by this run (0 when re-running on the same directory).
    pub appended_events: u64,
    /// Commands that were retries of already recorded requests.
    pub deduplicated_commands: u64,
    /// The log's head sequence after the run.
    pub head_seq: u64,
    /// Time the run took.
    pub elapsed: Duration,
    /// Time in the case service by command, most expensive first.
    pub timings: Vec<CommandTiming>,
    /// Time spent generating plans (all threads).
    pub planning: Duration,
    /// The first few rejections (codes and dates only).
    pub rejections: Vec<String>,
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// An option out of range (persons, threads, clients, connections);
    /// the text gives the allowed range.
    #[error("invalid option: {0}")]
    Invalid(String),
    /// The master key or the store in the data directory could not be
    /// opened (direct runs; a held sled lock is retried for 10 s first).
    #[error("opening the store: {0}")]
    Open(String),
    /// The case service failed in a way that stops the run: the first such
    /// failure.
    #[error("the case service failed: {0}")]
    Service(#[source] ServiceFailure),
    /// Reading the final log head or shutting the store down failed
    /// (direct runs).
    #[error("closing the store: {0}")]
    Close(String),
    /// A remote run could not connect to the server.
    #[error("connecting: {0}")]
    Connect(#[source] crate::client::ClientError),
    /// A remote run's statistics check failed: a `Caseload` call failed or
    /// the projection did not reach the run's last log position in time.
    #[error("checking the statistics: {0}")]
    Statistics(String),
    /// A JSON report could not be serialized or written.
    #[error("writing {path}: {reason}")]
    Write {
        /// The report file.
        path: PathBuf,
        /// The serialization or I/O error, as text.
        reason: String,
    },
}

/// The failure that stopped a run (direct or remote): the first one a
/// worker met. Its message names the person, the step and the command, and
/// only codes and status messages (never values).
#[derive(Debug, thiserror::Error)]
pub enum ServiceFailure {
    /// The case service failed on a step (store unavailable, internal error).
    #[error("person {index} step {step} {command}: {message}")]
    Step {
        /// The person's index.
        index: u64,
        /// The step of the person's plan.
        step: usize,
        /// The command's name.
        command: &'static str,
        /// What the case service said.
        message: String,
    },
    /// A planned command has no wire form (a mapping bug, never input).
    #[error("person {index} step {step} {command}: {source}")]
    Wire {
        /// The person's index.
        index: u64,
        /// The step of the person's plan.
        step: usize,
        /// The command's name.
        command: &'static str,
        /// The domain code without a wire value.
        source: wire::WireError,
    },
    /// An RPC failed with a code that stops the run, after `attempts` attempts.
    #[error(
        "person {index} step {step} {command}: {} {message} (after {attempts} attempts)",
        remote::code_name(*.code)
    )]
    Rpc {
        /// The person's index.
        index: u64,
        /// The step of the person's plan.
        step: usize,
        /// The command's name.
        command: &'static str,
        /// The status code of the last attempt.
        code: tonic::Code,
        /// The status message of the last attempt.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// An import stream failed with a code that stops the run, after
    /// `attempts` attempts.
    #[error(
        "import stream of {persons} persons: {} {message} (after {attempts} attempts)",
        remote::code_name(*.code)
    )]
    ImportStream {
        /// Persons sent on the stream.
        persons: usize,
        /// The status code of the last attempt.
        code: tonic::Code,
        /// The status message of the last attempt.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A client task panicked or was cancelled.
    #[error("a client task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// The request id of step `step` of person `index`.
pub fn request_id(seed: u64, index: u64, step: usize) -> String {
    format!("sim-{seed}-{index}-{step}")
}

/// The case id of person `index` (derived from its registration's request id).
pub fn case_id(seed: u64, index: u64) -> String {
    case_id_for_request(&request_id(seed, index, 0))
}

/// Runs a simulation (blocking; not from inside an async runtime).
pub fn run(opts: &SimulateOptions) -> Result<SimulateReport, SimulateError> {
    if opts.persons > generator::PERSONS_MAX {
        return Err(SimulateError::Invalid(format!(
            "at most {} persons per seed",
            generator::PERSONS_MAX
        )));
    }
    if opts.threads == 0 || opts.threads > THREADS_MAX {
        return Err(SimulateError::Invalid(format!(
            "threads must be 1..={THREADS_MAX}"
        )));
    }
    let Opened { log, cases } = open_retrying(opts)?;
    let progress = progress_bar(opts.progress, opts.persons);
    let shared = Shared {
        cases,
        run: Run::new(opts.seed, opts.persons, progress.bar().clone()),
    };
    let started = Instant::now();
    let outputs: Vec<WorkerOutput> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..opts.threads).map(|_| s.spawn(|| worker(&shared))).collect();
        while !handles.iter().all(|h| h.is_finished()) {
            shared.run.show_rate(started);
            std::thread::sleep(Duration::from_millis(200));
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = started.elapsed();
    drop(progress);
    let Shared { cases, run } = shared;
    drop(cases);
    let head_seq = log
        .store()
        .head()
        .map_err(|e| SimulateError::Close(e.to_string()))?
        .seq;
    log.shutdown().map_err(|e| SimulateError::Close(e.to_string()))?;
    if let Some(failure) = run.take_fatal() {
        return Err(SimulateError::Service(failure));
    }

    let mut tally = Tally::default();
    let (mut appended_events, mut deduplicated_commands) = (0, 0);
    let mut timings: BTreeMap<&'static str, CommandTiming> = BTreeMap::new();
    let mut planning = Duration::ZERO;
    let mut rejections = Vec::new();
    for out in outputs {
        tally.merge(&out.tally);
        appended_events += out.appended;
        deduplicated_commands += out.deduplicated;
        planning += out.planning;
        for (name, t) in out.timings {
            let entry = timings.entry(name).or_insert_with(|| CommandTiming {
                command: name.to_string(),
                ..CommandTiming::default()
            });
            entry.count += t.count;
            entry.total += t.total;
        }
        rejections.extend(out.rejections);
    }
    rejections.sort();
    rejections.truncate(REJECTIONS_KEPT);
    let mut timings: Vec<CommandTiming> = timings.into_values().collect();
    timings.sort_by_key(|t| std::cmp::Reverse(t.total));
    Ok(SimulateReport {
        persons: opts.persons,
        seed: opts.seed,
        threads: opts.threads,
        sync: opts.sync,
        tally,
        appended_events,
        deduplicated_commands,
        head_seq,
        elapsed,
        timings,
        planning,
        rejections,
    })
}

/// Opens the store, retrying while sled's file lock is still held by a
/// handle that is closing (sled 0.34 releases it asynchronously).
fn open_retrying(opts: &SimulateOptions) -> Result<Opened, SimulateError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let master = load_master_key(opts.master_key_file.as_ref(), &opts.data_dir)
            .map_err(|e| SimulateError::Open(e.to_string()))?;
        match open(&opts.data_dir, opts.sync, master) {
            Ok(opened) => return Ok(opened),
            Err(e) => {
                let message = e.to_string();
                if message.contains("could not acquire lock") && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                return Err(SimulateError::Open(message));
            }
        }
    }
}

/// The progress bar of a run of `persons` persons (direct or remote), or
/// none when `shown` is false.
fn progress_bar(shown: bool, persons: u64) -> Progress {
    if !shown {
        return Progress::off();
    }
    let bar = indicatif::ProgressBar::new(persons);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} persons  {msg}  eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    Progress::new(bar, "simulate persons")
}

struct Shared {
    cases: Cases,
    run: Run,
}

/// What the workers of a run (direct or remote) share: the persons still to
/// take, the events appended, the progress bar, and the failure that
/// stopped the run, if any.
struct Run {
    seed: u64,
    persons: u64,
    next: AtomicU64,
    /// Events appended so far (progress only).
    events: AtomicU64,
    stop: AtomicBool,
    fatal: Mutex<Option<ServiceFailure>>,
    bar: indicatif::ProgressBar,
}

impl Run {
    fn new(seed: u64, persons: u64, bar: indicatif::ProgressBar) -> Run {
        Run {
            seed,
            persons,
            next: AtomicU64::new(0),
            events: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            fatal: Mutex::new(None),
            bar,
        }
    }

    /// The next person to run, or `None` when all are taken or the run stops.
    fn take(&self) -> Option<u64> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        (index < self.persons).then_some(index)
    }

    /// Stops the run on a failure of the service; the first one is kept.
    fn fail(&self, failure: ServiceFailure) {
        self.stop.store(true, Ordering::Relaxed);
        let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        fatal.get_or_insert(failure);
    }

    /// The failure that stopped the run, if any.
    fn take_fatal(&self) -> Option<ServiceFailure> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Shows the events appended since `started`, and their rate.
    fn show_rate(&self, started: Instant) {
        let events = self.events.load(Ordering::Relaxed);
        let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-3);
        self.bar
            .set_message(format!("{events} events  {rate:.0} events/s"));
    }
}

#[derive(Default)]
struct WorkerOutput {
    tally: Tally,
    appended: u64,
    deduplicated: u64,
    timings: BTreeMap<&'static str, CommandTiming>,
    planning: Duration,
    rejections: Vec<String>,
}

fn worker(shared: &Shared) -> WorkerOutput {
    let mut out = WorkerOutput::default();
    while let Some(index) = shared.run.take() {
        if let Err(failure) = run_person(shared, index, &mut out) {
            shared.run.fail(failure);
            break;
        }
        shared.run.bar.inc(1);
    }
    out
}

/// Runs one person's plan; `Err` only for a failure of the service itself
/// (store unavailable, internal error), which stops the simulation.
fn run_person(shared: &Shared, index: u64, out: &mut WorkerOutput) -> Result<(), ServiceFailure> {
    let planned_at = Instant::now();
    let mut plan = plan_person(shared.run.seed, index);
    out.planning += planned_at.elapsed();
    let mut case_id: Option<String> = None;
    let mut version = 0;
    let mut final_state = None;
    let commands = std::mem::take(&mut plan.commands);
    for (step, PlannedCommand { command, actor }) in commands.into_iter().enumerate() {
        let name = command.name();
        let ctx = CommandContext {
            request_id: request_id(shared.run.seed, index, step),
            case_id: case_id.clone(),
            expected_version: version,
            actor,
            today: TODAY,
            departments: Vec::new(),
        };
        let pending = match command {
            c @ Command::RegisterPerson { .. } => PendingCommand::Register {
                identity: plan.identity.clone(),
                command: c,
            },
            c @ Command::IssuePermit { .. } => PendingCommand::IssuePermit {
                permit_number: plan.permit_number.clone(),
                command: c,
            },
            c @ Command::SupersedeByVisa { .. } => PendingCommand::SupersedeByVisa {
                visa_number: plan.visa_number.clone(),
                command: c,
            },
            c => PendingCommand::Plain(c),
        };
        let started = Instant::now();
        let result = shared.cases.execute_blocking(ctx, pending);
        let timing = out.timings.entry(name).or_insert_with(|| CommandTiming {
            command: name.to_string(),
            ..CommandTiming::default()
        });
        timing.count += 1;
        timing.total += started.elapsed();
        out.tally.commands += 1;
        match result {
            Ok(outcome) => {
                let a = outcome.appended;
                if a.deduplicated {
                    out.deduplicated += 1;
                } else {
                    out.appended += a.last_seq - a.first_seq + 1;
                }
                shared
                    .run
                    .events
                    .fetch_add(outcome.event_types.len() as u64, Ordering::Relaxed);
                out.tally.count_events(outcome.event_types.iter().copied());
                version = a.last_version;
                case_id = Some(outcome.case_id);
                final_state = Some(outcome.state);
            }
            Err(CaseError::Unavailable(message)) => {
                return Err(ServiceFailure::Step {
                    index,
                    step,
                    command: name,
                    message,
                });
            }
            Err(CaseError::Internal(e)) => {
                return Err(ServiceFailure::Step {
                    index,
                    step,
                    command: name,
                    message: e.to_string(),
                });
            }
            Err(e) => {
                out.tally.rejected += 1;
                if out.rejections.len() < REJECTIONS_KEPT {
                    out.rejections
                        .push(format!("person {index} step {step} {name}: {e}"));
                }
                break;
            }
        }
    }
    let derived = final_state.as_ref().map(|s| person_status(s, TODAY));
    if let Some(state) = &final_state {
        out.tally.count_case(state, TODAY);
    }
    out.tally.count_intended(plan.intended, derived);
    Ok(())
}

impl SimulateReport {
    /// Events per second written by this run.
    pub fn events_per_second(&self) -> f64 {
        self.appended_events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The end-of-run summary: throughput, the tally as a table, and where
    /// the time went. Counts only.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let secs = self.elapsed.as_secs_f64();
        let _ = writeln!(
            out,
            "simulated {} persons (seed {}, {} threads, sync {:?}): {} events written, {} commands deduplicated, \
             head seq {}, {:.2}s, {:.0} events/s, {:.0} persons/s",
            self.persons,
            self.seed,
            self.threads,
            self.sync,
            self.appended_events,
            self.deduplicated_commands,
            self.head_seq,
            secs,
            self.events_per_second(),
            self.persons as f64 / secs.max(1e-9)
        );
        out.push_str(&self.tally.table());
        let busy: Duration = self.timings.iter().map(|t| t.total).sum();
        let _ = writeln!(
            out,
            "time in the case service by command (wall time incl. group commit; {:.1}s over all threads; planning {:.2}s)",
            busy.as_secs_f64(),
            self.planning.as_secs_f64()
        );
        for t in &self.timings {
            let _ = writeln!(
                out,
                "  {:<28} {:>9} x {:>8.3} ms = {:>8.2}s {:>5.1}%",
                t.command,
                t.count,
                t.total.as_secs_f64() * 1e3 / t.count.max(1) as f64,
                t.total.as_secs_f64(),
                tally::percent(t.total.as_nanos() as u64, busy.as_nanos() as u64)
            );
        }
        if !self.rejections.is_empty() {
            let _ = writeln!(out, "rejections ({} in all; first ones):", self.tally.rejected);
            for r in &self.rejections {
                let _ = writeln!(out, "  {r}");
            }
        }
        out
    }

    /// Writes the tally as JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), SimulateError> {
        let write_error = |reason: String| SimulateError::Write {
            path: path.to_path_buf(),
            reason,
        };
        let json = serde_json::to_string_pretty(&self.tally).map_err(|e| write_error(e.to_string()))?;
        std::fs::write(path, json + "\n").map_err(|e| write_error(e.to_string()))
    }
}
