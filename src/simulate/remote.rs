//! `registry simulate --target`: the same deterministic caseload as the
//! direct mode, sent to a running server through the gRPC API.
//!
//! `clients` tokio tasks (caseworker front-ends) take persons in turn. In the
//! RPC mode each runs a person's commands in order, one Caseworker RPC per
//! command, passing the case id and version each answer returns. In the
//! import mode (`--import`) each sends person after person as one
//! `ImportCaseHistory` on an `Import.ImportCases` client stream. A stream
//! carries a bounded number of histories, adapted so that it takes a few
//! seconds (the server's deadline, 30 s, applies to a whole stream); then the
//! client opens the next one. A stream cut by a transient failure (the
//! deadline, a lost connection) is sent again: request ids make that safe.
//!
//! Request ids are those of the direct mode (`sim-{seed}-{i}-{step}`), so
//! case ids are identical and running again appends nothing. Business dates
//! are the plan's (decided against [`TODAY`] by the generator).
//!
//! The generator's [`Tally`] is computed here, without the server: each plan
//! is decided and folded locally by the pure domain rules on [`TODAY`],
//! exactly as the case service decides it. In the RPC mode the event types
//! of every answer are checked against that local decision. At the end the
//! server's `Statistics.Caseload` (as of [`TODAY`], by status and by
//! department x status) is polled until it reflects the last log position
//! this run saw, and compared with the tally exactly.
//!
//! Only counts, codes, indexes and status messages (which name fields and
//! states, never values) leave this module.

use crate::progress::Progress;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use super::{plan_person, request_id, wire, PersonPlan, SimulateError, Tally, TODAY};
use crate::api::pb;
use crate::api::pb::caseworker_client::CaseworkerClient;
use crate::api::pb::import_client::ImportClient;
use crate::api::pb::statistics_client::StatisticsClient;
use crate::client::{connect, AuthChannel, ClientOptions};
use crate::domain::{person_status, CaseState, ChannelCatalog, Event};

/// Default number of concurrent clients.
pub const DEFAULT_CLIENTS: usize = 64;
/// Most clients accepted.
pub const CLIENTS_MAX: usize = 4096;
/// Default number of HTTP/2 connections the clients share (measured: see
/// the `simulate --target` figures in the commit history / report).
pub const DEFAULT_CONNECTIONS: usize = 4;
/// Seconds a client keeps sending histories into one import stream before
/// closing it (the server's deadline for a whole stream is 30 s).
pub const IMPORT_STREAM_SECS: u64 = 5;
/// The duration an import stream aims at: the number of histories per
/// stream doubles while streams take under half of it and halves when they
/// take over twice it (a stream must finish within the server's 30 s).
const IMPORT_STREAM_TARGET: Duration = Duration::from_secs(4);
/// Histories per import stream: first, fewest and most.
const IMPORT_BATCH_START: usize = 32;
const IMPORT_BATCH_MIN: usize = 4;
const IMPORT_BATCH_MAX: usize = 2048;
/// Histories a client queues ahead of its import stream.
const IMPORT_QUEUE_HISTORIES: usize = 8;
/// Attempts of one RPC, one import stream or one history on a transient
/// failure (see [`transient`]), with doubling back-off.
const ATTEMPTS_MAX: u32 = 6;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Interval between two polls of the statistics projection's position.
const STATS_POLL: Duration = Duration::from_millis(250);
/// Example messages kept per kind (rejections, disagreements).
const EXAMPLES_KEPT: usize = 10;
/// The actor sent in metadata when the options name none (ignored by an
/// authenticating server, which records the principal).
pub const DEFAULT_ACTOR: (&str, &str) = ("sim-caseworker", "SIM-REMOTE");

/// What to send, and where.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    pub persons: u64,
    pub seed: u64,
    /// Target and credentials of the caseworker (and import) calls.
    pub client: ClientOptions,
    /// Credentials of the statistics check (default: those of `client`).
    pub stats_client: ClientOptions,
    /// Concurrent clients (tokio tasks).
    pub clients: usize,
    /// HTTP/2 connections the clients share (client `k` uses connection `k % connections`).
    pub connections: usize,
    /// Send each person as one history on `Import.ImportCases` streams.
    pub import: bool,
    /// How long to wait for the statistics projection to reach the run's last position.
    pub stats_timeout: Duration,
    /// Draw a progress bar on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
}

impl RemoteOptions {
    /// `persons` of `seed` to `client.target`, default clients and
    /// connections, RPC mode, no progress bar.
    pub fn new(persons: u64, seed: u64, client: ClientOptions) -> RemoteOptions {
        RemoteOptions {
            persons,
            seed,
            stats_client: client.clone(),
            client,
            clients: DEFAULT_CLIENTS,
            connections: DEFAULT_CONNECTIONS,
            import: false,
            stats_timeout: Duration::from_secs(600),
            progress: false,
        }
    }
}

/// Refusals counted by gRPC code, with the first few messages.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rejections {
    pub total: u64,
    /// Code name (`INVALID_ARGUMENT` ...) -> count.
    pub by_code: BTreeMap<String, u64>,
    /// Up to 10 examples: person index, step, command, code and message.
    pub examples: Vec<String>,
}

impl Rejections {
    fn add(&mut self, code: &str, example: impl FnOnce() -> String) {
        self.total += 1;
        *self.by_code.entry(code.to_string()).or_insert(0) += 1;
        if self.examples.len() < EXAMPLES_KEPT {
            self.examples.push(example());
        }
    }

    fn merge(&mut self, other: Rejections) {
        self.total += other.total;
        for (k, v) in other.by_code {
            *self.by_code.entry(k).or_insert(0) += v;
        }
        self.examples.extend(other.examples);
    }
}

/// The comparison of the server's statistics with the tally.
#[derive(Clone, Debug, Serialize)]
pub struct StatisticsCheck {
    /// The log position (seq) both answers reflect.
    pub position_seq: u64,
    /// The position the run waited for (its last seq).
    pub waited_for_seq: u64,
    pub waited_secs: f64,
    /// One line per differing count; empty when everything matches.
    pub differences: Vec<String>,
}

impl StatisticsCheck {
    pub fn matched(&self) -> bool {
        self.differences.is_empty()
    }
}

/// What a run through gRPC did.
#[derive(Clone, Debug)]
pub struct RemoteReport {
    pub persons: u64,
    pub seed: u64,
    pub target: String,
    pub import: bool,
    pub clients: usize,
    pub connections: usize,
    /// The generator's tally (decided locally; independent of the server).
    pub tally: Tally,
    /// Commands sent (in histories, in the import mode).
    pub commands: u64,
    /// Events the server recorded for this run.
    pub appended_events: u64,
    /// Commands the server recognised as retries of recorded requests.
    pub deduplicated_commands: u64,
    /// Import mode: commands skipped after a rejection in their history.
    pub skipped_commands: u64,
    /// Transient failures retried (RPCs or whole import streams).
    pub retries: u64,
    /// The highest log position any answer named.
    pub last_seq: u64,
    pub elapsed: Duration,
    pub rejections: Rejections,
    /// RPC mode: answers whose event types differ from the local decision
    /// (counted by command name in `by_code`).
    pub disagreements: Rejections,
    /// `None` when the statistics were not checked (no command accepted).
    pub statistics: Option<StatisticsCheck>,
}

impl RemoteReport {
    pub fn events_per_second(&self) -> f64 {
        self.appended_events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Whether everything went as the generator planned: no rejection, no
    /// disagreement, the generator's own checks clean, and the statistics match.
    pub fn clean(&self) -> bool {
        self.rejections.total == 0
            && self.disagreements.total == 0
            && self.tally.rejected == 0
            && self.tally.status_mismatches == 0
            && self.statistics.as_ref().is_none_or(StatisticsCheck::matched)
    }

    /// The end-of-run summary (counts, codes and status messages only).
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let secs = self.elapsed.as_secs_f64();
        let _ = writeln!(
            out,
            "simulated {} persons through {} ({}, {} clients over {} connections, seed {}): \
             {} commands, {} events appended, {} commands deduplicated, {} skipped, {} retries, \
             last seq {}, {:.2}s, {:.0} events/s, {:.0} commands/s, {:.0} persons/s",
            self.persons,
            self.target,
            if self.import {
                "import streams"
            } else {
                "single RPCs"
            },
            self.clients,
            self.connections,
            self.seed,
            self.commands,
            self.appended_events,
            self.deduplicated_commands,
            self.skipped_commands,
            self.retries,
            self.last_seq,
            secs,
            self.events_per_second(),
            self.commands as f64 / secs.max(1e-9),
            self.persons as f64 / secs.max(1e-9),
        );
        out.push_str(&self.tally.table());
        let mut section = |title: &str, r: &Rejections| {
            if r.total == 0 {
                return;
            }
            let codes: Vec<String> = r.by_code.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(out, "{title}: {} ({})", r.total, codes.join(", "));
            for e in &r.examples {
                let _ = writeln!(out, "  {e}");
            }
        };
        section("rejections", &self.rejections);
        section(
            "answers whose event types differ from the local decision",
            &self.disagreements,
        );
        match &self.statistics {
            None => {
                let _ = writeln!(out, "statistics not checked: no command was accepted");
            }
            Some(s) if s.matched() => {
                let _ = writeln!(
                    out,
                    "statistics match the generator's tally (Caseload as of {TODAY} at log seq {}, waited {:.1}s)",
                    s.position_seq, s.waited_secs
                );
            }
            Some(s) => {
                let _ = writeln!(
                    out,
                    "statistics DIFFER from the generator's tally (Caseload as of {TODAY} at log seq {}; \
                     this run's last seq {}):",
                    s.position_seq, s.waited_for_seq
                );
                for d in &s.differences {
                    let _ = writeln!(out, "  {d}");
                }
            }
        }
        out
    }

    /// The report as JSON (counts, codes and status messages; never credentials).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": if self.import { "import" } else { "rpc" },
            "target": self.target,
            "persons": self.persons,
            "seed": self.seed,
            "clients": self.clients,
            "connections": self.connections,
            "commands": self.commands,
            "appended_events": self.appended_events,
            "deduplicated_commands": self.deduplicated_commands,
            "skipped_commands": self.skipped_commands,
            "retries": self.retries,
            "last_seq": self.last_seq,
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "events_per_second": self.events_per_second(),
            "rejections": self.rejections,
            "disagreements": serde_json::json!({
                "total": self.disagreements.total,
                "by_command": self.disagreements.by_code,
                "examples": self.disagreements.examples,
            }),
            "statistics": self.statistics.as_ref().map(|s| serde_json::json!({
                "matched": s.matched(),
                "position_seq": s.position_seq,
                "waited_for_seq": s.waited_for_seq,
                "waited_secs": s.waited_secs,
                "differences": s.differences,
            })),
            "clean": self.clean(),
            "tally": self.tally,
        })
    }

    /// Writes [`RemoteReport::to_json`] to `path`.
    pub fn write_json(&self, path: &std::path::Path) -> Result<(), SimulateError> {
        let write_error = |reason: String| SimulateError::Write {
            path: path.to_path_buf(),
            reason,
        };
        let json = serde_json::to_string_pretty(&self.to_json()).map_err(|e| write_error(e.to_string()))?;
        std::fs::write(path, json + "\n").map_err(|e| write_error(e.to_string()))
    }
}

/// The generator's expectation for one plan: each command decided on
/// [`TODAY`] against the locally folded case, as the case service decides
/// it (sealed fields are placeholders; no rule reads them). Counts into
/// `tally` exactly what the direct mode counts; returns the event types of
/// each accepted step.
pub fn expect(plan: &PersonPlan, catalog: &ChannelCatalog, tally: &mut Tally) -> Vec<Vec<&'static str>> {
    let mut state = CaseState::default();
    let mut steps = Vec::with_capacity(plan.commands.len());
    for p in &plan.commands {
        tally.commands += 1;
        match state.decide(&p.command, TODAY, catalog) {
            Ok(events) => {
                let types: Vec<&'static str> = events.iter().map(Event::event_type).collect();
                tally.count_events(types.iter().copied());
                for e in &events {
                    state.apply(e);
                }
                steps.push(types);
            }
            Err(_) => {
                tally.rejected += 1;
                break;
            }
        }
    }
    let derived = (!steps.is_empty()).then(|| person_status(&state, TODAY));
    if !steps.is_empty() {
        tally.count_case(&state, TODAY);
    }
    tally.count_intended(plan.intended, derived);
    steps
}

/// Codes worth retrying: the request may not have been processed (the
/// server's deadline cancels a call with CANCELLED), or was refused because
/// its original was still being committed (ABORTED). Retrying is safe: the
/// request ids make every command idempotent.
fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted | Code::Unknown
    )
}

/// Codes that stop the run (after the retries): the service or the
/// credentials, not this person's data, are at fault.
fn fatal(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::Unauthenticated
            | Code::Unimplemented
            | Code::DataLoss
    )
}

fn code_name(code: Code) -> String {
    // `Code::description` is prose; the proto enum name is the stable code.
    format!("{code:?}").chars().fold(String::new(), |mut s, c| {
        if c.is_uppercase() && !s.is_empty() {
            s.push('_');
        }
        s.push(c.to_ascii_uppercase());
        s
    })
}

struct Shared {
    persons: u64,
    seed: u64,
    catalog: ChannelCatalog,
    next: AtomicU64,
    /// Events appended so far (progress only).
    events: AtomicU64,
    stop: AtomicBool,
    fatal: Mutex<Option<String>>,
    bar: indicatif::ProgressBar,
}

impl Shared {
    /// The next person to run, or `None` when all are taken or the run stops.
    fn take(&self) -> Option<u64> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        (index < self.persons).then_some(index)
    }

    fn fail(&self, message: String) {
        self.stop.store(true, Ordering::Relaxed);
        let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        fatal.get_or_insert(message);
    }
}

#[derive(Default)]
struct ClientOutput {
    tally: Tally,
    commands: u64,
    appended: u64,
    deduplicated: u64,
    skipped: u64,
    retries: u64,
    last_seq: u64,
    rejections: Rejections,
    disagreements: Rejections,
}

/// Runs the caseload against `opts.client.target` and checks the statistics.
pub async fn run_remote(opts: &RemoteOptions) -> Result<RemoteReport, SimulateError> {
    if opts.persons > super::generator::PERSONS_MAX {
        return Err(SimulateError::Invalid(format!(
            "at most {} persons per seed",
            super::generator::PERSONS_MAX
        )));
    }
    if opts.clients == 0 || opts.clients > CLIENTS_MAX {
        return Err(SimulateError::Invalid(format!(
            "clients must be 1..={CLIENTS_MAX}"
        )));
    }
    if opts.connections == 0 || opts.connections > opts.clients {
        return Err(SimulateError::Invalid("connections must be 1..=clients".into()));
    }
    let mut client_options = opts.client.clone();
    if client_options.actor.is_none() {
        client_options.actor = Some((DEFAULT_ACTOR.0.into(), DEFAULT_ACTOR.1.into()));
    }
    let mut channels = Vec::with_capacity(opts.connections);
    for _ in 0..opts.connections {
        channels.push(
            connect(&client_options, Duration::from_secs(10))
                .await
                .map_err(SimulateError::Connect)?,
        );
    }
    let progress = progress_bar(opts);
    let bar = progress.bar().clone();
    let shared = Arc::new(Shared {
        persons: opts.persons,
        seed: opts.seed,
        catalog: ChannelCatalog::builtin(),
        next: AtomicU64::new(0),
        events: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        fatal: Mutex::new(None),
        bar: bar.clone(),
    });
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..opts.clients {
        let channel = channels[k % channels.len()].clone();
        let shared = shared.clone();
        if opts.import {
            tasks.spawn(import_client(shared, ImportClient::new(channel)));
        } else {
            tasks.spawn(rpc_client(shared, CaseworkerClient::new(channel)));
        }
    }
    let ticker = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let events = shared.events.load(Ordering::Relaxed);
                let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-3);
                shared
                    .bar
                    .set_message(format!("{events} events  {rate:.0} events/s"));
            }
        })
    };
    let mut outputs = Vec::with_capacity(opts.clients);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(out) => outputs.push(out),
            Err(e) => shared.fail(format!("a client task failed: {e}")),
        }
    }
    ticker.abort();
    let elapsed = started.elapsed();
    drop(progress);
    drop(channels);
    if let Some(message) = shared.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(SimulateError::Service(message));
    }

    let mut report = RemoteReport {
        persons: opts.persons,
        seed: opts.seed,
        target: opts.client.target.clone(),
        import: opts.import,
        clients: opts.clients,
        connections: opts.connections,
        tally: Tally::default(),
        commands: 0,
        appended_events: 0,
        deduplicated_commands: 0,
        skipped_commands: 0,
        retries: 0,
        last_seq: 0,
        elapsed,
        rejections: Rejections::default(),
        disagreements: Rejections::default(),
        statistics: None,
    };
    for out in outputs {
        report.tally.merge(&out.tally);
        report.commands += out.commands;
        report.appended_events += out.appended;
        report.deduplicated_commands += out.deduplicated;
        report.skipped_commands += out.skipped;
        report.retries += out.retries;
        report.last_seq = report.last_seq.max(out.last_seq);
        report.rejections.merge(out.rejections);
        report.disagreements.merge(out.disagreements);
    }
    for r in [&mut report.rejections, &mut report.disagreements] {
        r.examples.sort();
        r.examples.truncate(EXAMPLES_KEPT);
    }
    if report.last_seq > 0 {
        report.statistics = Some(check_statistics(opts, &report.tally, report.last_seq).await?);
    }
    Ok(report)
}

fn progress_bar(opts: &RemoteOptions) -> Progress {
    if !opts.progress {
        return Progress::off();
    }
    let bar = indicatif::ProgressBar::new(opts.persons);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} persons  {msg}  eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    Progress::new(bar, "simulate persons")
}

/// The header of step `step` of person `index`.
fn header(
    shared: &Shared,
    index: u64,
    step: usize,
    case_id: &str,
    version: u64,
    on: String,
) -> pb::CommandHeader {
    pb::CommandHeader {
        request_id: request_id(shared.seed, index, step),
        case_id: case_id.to_string(),
        expected_version: version,
        on,
    }
}

/// One caseworker front-end: persons in turn, one RPC per command.
async fn rpc_client(shared: Arc<Shared>, mut client: CaseworkerClient<AuthChannel>) -> ClientOutput {
    let mut out = ClientOutput::default();
    while let Some(index) = shared.take() {
        if let Err(message) = rpc_person(&shared, &mut client, index, &mut out).await {
            shared.fail(message);
            break;
        }
        shared.bar.inc(1);
    }
    out
}

/// Runs one person's plan; `Err` only when the run must stop.
async fn rpc_person(
    shared: &Shared,
    client: &mut CaseworkerClient<AuthChannel>,
    index: u64,
    out: &mut ClientOutput,
) -> Result<(), String> {
    let plan = plan_person(shared.seed, index);
    let expected = expect(&plan, &shared.catalog, &mut out.tally);
    let mut case_id = String::new();
    let mut version = 0;
    for (step, p) in plan.commands.iter().enumerate() {
        let name = p.command.name();
        let h = header(shared, index, step, &case_id, version, p.command.on().to_string());
        let command = wire::request(&p.command, &plan, h)
            .map_err(|e| format!("person {index} step {step} {name}: {e}"))?;
        out.commands += 1;
        let mut attempt = 1;
        let result = loop {
            match wire::call(client, command.clone()).await {
                Err(s) if transient(s.code()) && attempt < ATTEMPTS_MAX => {
                    out.retries += 1;
                    tokio::time::sleep(BACKOFF_FIRST * 2u32.pow(attempt - 1)).await;
                    attempt += 1;
                }
                other => break other,
            }
        };
        match result {
            Ok(r) => {
                if r.deduplicated {
                    out.deduplicated += 1;
                } else {
                    let n = r.last_seq + 1 - r.first_seq;
                    out.appended += n;
                    shared.events.fetch_add(n, Ordering::Relaxed);
                }
                out.last_seq = out.last_seq.max(r.last_seq);
                let agrees = expected
                    .get(step)
                    .is_some_and(|t| t.iter().copied().eq(r.event_types.iter().map(String::as_str)));
                if !agrees {
                    out.disagreements.add(name, || {
                        format!(
                            "person {index} step {step} {name}: the server recorded {:?}, the generator decided {:?}",
                            r.event_types,
                            expected.get(step)
                        )
                    });
                }
                version = r.version;
                case_id = r.case_id;
            }
            Err(s) if fatal(s.code()) => {
                return Err(format!(
                    "person {index} step {step} {name}: {} {} (after {attempt} attempts)",
                    code_name(s.code()),
                    s.message()
                ));
            }
            Err(s) => {
                out.rejections.add(&code_name(s.code()), || {
                    format!(
                        "person {index} step {step} {name}: {} {}",
                        code_name(s.code()),
                        s.message()
                    )
                });
                break;
            }
        }
    }
    Ok(())
}

/// Person `index` as an import history: every command's case id left empty
/// (the server continues the history's case and version).
fn history(shared: &Shared, index: u64, plan: &PersonPlan) -> Result<pb::ImportCaseHistory, String> {
    let mut commands = Vec::with_capacity(plan.commands.len());
    for (step, p) in plan.commands.iter().enumerate() {
        let h = header(shared, index, step, "", 0, p.command.on().to_string());
        let c = wire::request(&p.command, plan, h)
            .map_err(|e| format!("person {index} step {step} {}: {e}", p.command.name()))?;
        commands.push(pb::ImportCommand { command: Some(c) });
    }
    Ok(pb::ImportCaseHistory {
        legacy_ref: format!("sim-{}-{index}", shared.seed),
        commands,
    })
}

/// One migration client: persons in turn, as histories on consecutive streams.
async fn import_client(shared: Arc<Shared>, mut client: ImportClient<AuthChannel>) -> ClientOutput {
    let mut out = ClientOutput::default();
    if let Err(message) = import_streams(&shared, &mut client, &mut out).await {
        shared.fail(message);
    }
    out
}

async fn import_streams(
    shared: &Shared,
    client: &mut ImportClient<AuthChannel>,
    out: &mut ClientOutput,
) -> Result<(), String> {
    // Persons sent again: those of a stream that failed on a transient error,
    // and those whose history was refused with a transient code.
    let mut resend: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
    let mut attempts: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
    let mut batch = IMPORT_BATCH_START;
    let mut stream_failures = 0;
    let mut exhausted = false;
    loop {
        if exhausted && resend.is_empty() {
            return Ok(());
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::ImportCaseHistory>(IMPORT_QUEUE_HISTORIES);
        let again: Vec<u64> = resend.drain(..resend.len().min(batch)).collect();
        let (tally, commands) = (&mut out.tally, &mut out.commands);
        let producer = async move {
            let started = Instant::now();
            let mut sent: Vec<u64> = Vec::new();
            let mut none_left = false;
            let mut again = again.into_iter();
            while sent.len() < batch {
                let (index, plan) = if let Some(index) = again.next() {
                    (index, plan_person(shared.seed, index))
                } else if started.elapsed() >= Duration::from_secs(IMPORT_STREAM_SECS) {
                    break;
                } else if let Some(index) = shared.take() {
                    let plan = plan_person(shared.seed, index);
                    expect(&plan, &shared.catalog, tally);
                    *commands += plan.commands.len() as u64;
                    (index, plan)
                } else {
                    none_left = true;
                    break;
                };
                let h = history(shared, index, &plan)?;
                sent.push(index);
                if tx.send(h).await.is_err() {
                    // The call ended early (it failed): the rest goes with it.
                    sent.extend(again.by_ref());
                    break;
                }
            }
            Ok::<_, String>((sent, none_left))
        };
        let started = Instant::now();
        let call = client.import_cases(ReceiverStream::new(rx));
        let (produced, result) = tokio::join!(producer, call);
        let (sent, none_left) = produced?;
        exhausted |= none_left;
        if sent.is_empty() {
            continue;
        }
        match result {
            Ok(summary) => {
                let s = summary.into_inner();
                stream_failures = 0;
                // Keep a stream well within the server's deadline.
                let took = started.elapsed();
                if took < IMPORT_STREAM_TARGET / 2 {
                    batch = (batch * 2).min(IMPORT_BATCH_MAX);
                } else if took > IMPORT_STREAM_TARGET * 2 {
                    batch = (batch / 2).max(IMPORT_BATCH_MIN);
                }
                out.appended += s.events_appended;
                out.deduplicated += s.commands_deduplicated;
                out.skipped += s.commands_skipped;
                out.last_seq = out.last_seq.max(s.last_seq);
                shared.events.fetch_add(s.events_appended, Ordering::Relaxed);
                let mut requeued = 0;
                let listed = s.rejections.len() as u64;
                for r in s.rejections {
                    let code = Code::from_i32(r.code);
                    let person = sent.get(r.history_index as usize).copied();
                    if let Some(person) = person.filter(|_| transient(code)) {
                        let n = attempts.entry(person).or_insert(1);
                        if *n < ATTEMPTS_MAX {
                            *n += 1;
                            out.retries += 1;
                            resend.push_back(person);
                            requeued += 1;
                            continue;
                        }
                    }
                    let name = code_name(code);
                    out.rejections.add(&name, || {
                        let step = r.command_index.map_or("-".to_string(), |k| k.to_string());
                        let who = person.map_or("?".to_string(), |p| p.to_string());
                        format!("person {who} step {step} {}: {name} {}", r.command, r.message)
                    });
                }
                let unlisted = s.rejections_total.saturating_sub(listed);
                if unlisted > 0 {
                    // The server lists the first ones only; their codes are unknown.
                    out.rejections.total += unlisted;
                    *out.rejections
                        .by_code
                        .entry("NOT_LISTED_BY_THE_SERVER".into())
                        .or_insert(0) += unlisted;
                }
                shared.bar.inc(sent.len() as u64 - requeued);
            }
            Err(s) if transient(s.code()) && stream_failures + 1 < ATTEMPTS_MAX => {
                stream_failures += 1;
                out.retries += 1;
                batch = (batch / 4).max(IMPORT_BATCH_MIN);
                tokio::time::sleep(BACKOFF_FIRST * 2u32.pow(stream_failures - 1)).await;
                resend.extend(sent);
            }
            Err(s) => {
                return Err(format!(
                    "import stream of {} persons: {} {} (after {} attempts)",
                    sent.len(),
                    code_name(s.code()),
                    s.message(),
                    stream_failures + 1
                ));
            }
        }
    }
}

/// Adds a line to `differences` for every key whose counts differ.
fn compare(
    differences: &mut Vec<String>,
    what: &str,
    server: &BTreeMap<String, u64>,
    ours: &BTreeMap<String, u64>,
) {
    let keys: std::collections::BTreeSet<&String> = server.keys().chain(ours.keys()).collect();
    for key in keys {
        let (s, o) = (
            server.get(key).copied().unwrap_or(0),
            ours.get(key).copied().unwrap_or(0),
        );
        if s != o {
            differences.push(format!("{what} {key}: statistics {s}, tally {o}"));
        }
    }
}

/// Polls `Statistics.Caseload` until it reflects `last_seq`, then compares
/// the counts by status and by department x status with `tally`.
async fn check_statistics(
    opts: &RemoteOptions,
    tally: &Tally,
    last_seq: u64,
) -> Result<StatisticsCheck, SimulateError> {
    let channel = connect(&opts.stats_client, Duration::from_secs(10))
        .await
        .map_err(SimulateError::Connect)?;
    let mut stats =
        StatisticsClient::new(channel).max_decoding_message_size(crate::limits::GRPC_RESPONSE_BYTES_MAX);
    let started = Instant::now();
    let deadline = started + opts.stats_timeout;
    let query = |by: &[&str]| pb::CaseloadRequest {
        by: by.iter().map(|d| d.to_string()).collect(),
        filters: Vec::new(),
        as_of_date: TODAY.to_string(),
        as_of_seq: 0,
        published: false,
    };
    let position = |r: &pb::CaseloadResponse| r.position.as_ref().map_or(0, |p| p.seq);
    let statistics_error = |e: tonic::Status| {
        SimulateError::Statistics(format!("Caseload: {} {}", code_name(e.code()), e.message()))
    };
    // Wait with the cheap question (the total on the projection's own date,
    // no replay), then ask the dated breakdowns.
    let total_now = pb::CaseloadRequest {
        by: Vec::new(),
        filters: Vec::new(),
        as_of_date: String::new(),
        as_of_seq: 0,
        published: false,
    };
    let (by_status, by_department) = loop {
        let now = match stats.caseload(total_now.clone()).await {
            Ok(r) => r.into_inner(),
            // A server that just started answers UNAVAILABLE while its
            // projection loads: wait for it like for a lagging one.
            Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(STATS_POLL).await;
                continue;
            }
            Err(e) => return Err(statistics_error(e)),
        };
        if position(&now) < last_seq {
            if Instant::now() >= deadline {
                return Err(SimulateError::Statistics(format!(
                    "the statistics projection did not reach log seq {last_seq} within {}s (it is at seq {})",
                    opts.stats_timeout.as_secs(),
                    position(&now)
                )));
            }
            tokio::time::sleep(STATS_POLL).await;
            continue;
        }
        let a = stats
            .caseload(query(&["status"]))
            .await
            .map_err(statistics_error)?
            .into_inner();
        let b = stats
            .caseload(query(&["department", "status"]))
            .await
            .map_err(statistics_error)?
            .into_inner();
        if position(&a) == position(&b) && position(&a) >= last_seq {
            break (a, b);
        }
        // The log moved between the answers: ask again.
    };
    let mut differences = Vec::new();
    let position_seq = position(&by_status);
    if position_seq != last_seq {
        differences.push(format!(
            "log position: the statistics reflect seq {position_seq}, this run's last event is seq {last_seq} \
             (the log holds events of other runs)"
        ));
    }
    if by_status.total != tally.persons || by_status.total_suppressed {
        differences.push(format!(
            "persons: statistics {}, tally {}",
            by_status.total, tally.persons
        ));
    }
    let cells = |r: &pb::CaseloadResponse| -> BTreeMap<String, u64> {
        r.cells.iter().map(|c| (c.values.join("/"), c.count)).collect()
    };
    compare(&mut differences, "status", &cells(&by_status), &tally.status);
    let mut departments: BTreeMap<String, u64> = BTreeMap::new();
    for c in &by_department.cells {
        if let Some(d) = c.values.first() {
            *departments.entry(d.clone()).or_insert(0) += c.count;
        }
    }
    compare(&mut differences, "department", &departments, &tally.department);
    let ours: BTreeMap<String, u64> = tally
        .status_by_department
        .iter()
        .flat_map(|(d, statuses)| statuses.iter().map(move |(s, n)| (format!("{d}/{s}"), *n)))
        .collect();
    compare(
        &mut differences,
        "department/status",
        &cells(&by_department),
        &ours,
    );
    if by_status
        .cells
        .iter()
        .chain(&by_department.cells)
        .any(|c| c.suppressed)
    {
        differences.push("a cell is suppressed although published = false was asked".into());
    }
    Ok(StatisticsCheck {
        position_seq,
        waited_for_seq: last_seq,
        waited_secs: started.elapsed().as_secs_f64(),
        differences,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_the_proto_enum_names() {
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::DataLoss), "DATA_LOSS");
    }

    #[test]
    fn the_local_decision_counts_like_the_direct_mode() {
        let catalog = ChannelCatalog::builtin();
        let mut tally = Tally::default();
        for i in 0..500 {
            let plan = plan_person(3, i);
            let steps = expect(&plan, &catalog, &mut tally);
            assert_eq!(
                steps.len(),
                plan.commands.len(),
                "person {i}: every step accepted"
            );
            assert_eq!(steps[0], ["PersonRegistered"]);
        }
        assert_eq!(tally.persons, 500);
        assert_eq!(tally.rejected, 0);
        assert_eq!(tally.status_mismatches, 0);
        assert_eq!(tally.events, tally.events_by_type.values().sum::<u64>());
    }
}
