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
//! are the plan's (decided against [`TODAY`](super::TODAY) by the generator).
//!
//! The generator's [`Tally`] is computed here, without the server: each plan
//! is decided and folded locally by the pure domain rules on [`TODAY`](super::TODAY),
//! exactly as the case service decides it. In the RPC mode the event types
//! of every answer are checked against that local decision. At the end the
//! server's `Statistics.Caseload` (as of [`TODAY`](super::TODAY), by status and by
//! department x status) is polled until it reflects the last log position
//! this run saw, and compared with the tally exactly.
//!
//! Only counts, codes, indexes and status messages (which name fields and
//! states, never values) leave this module.
//!
//! Files: `rpc` (the RPC mode and the local decision), `import` (the
//! import mode), `statistics` (the check against `Statistics.Caseload`),
//! `report` (what a run did).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::Code;

use super::{request_id, ServiceFailure, SimulateError, Tally};
use crate::api::pb;
use crate::api::pb::caseworker_client::CaseworkerClient;
use crate::api::pb::import_client::ImportClient;
use crate::client::{connect, ClientOptions};
use crate::domain::ChannelCatalog;

mod import;
mod report;
mod rpc;
mod statistics;
#[cfg(test)]
mod tests;

pub use report::{Rejections, RemoteReport};
pub use rpc::expect;
pub use statistics::StatisticsCheck;

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
/// Attempts of one RPC, one import stream or one history on a transient
/// failure (see [`transient`]), with doubling back-off.
const ATTEMPTS_MAX: u32 = 6;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Example messages kept per kind (rejections, disagreements).
const EXAMPLES_KEPT: usize = 10;
/// The actor sent in metadata when the options name none (ignored by an
/// authenticating server, which records the principal).
pub const DEFAULT_ACTOR: (&str, &str) = ("sim-caseworker", "SIM-REMOTE");

/// What to send, and where.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// Persons to send (indexes `0..persons`).
    pub persons: u64,
    /// The seed: the same seed and persons give the same caseload.
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

pub(super) fn code_name(code: Code) -> String {
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
    catalog: ChannelCatalog,
    run: super::Run,
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
    let progress = super::progress_bar(opts.progress, opts.persons);
    let shared = Arc::new(Shared {
        catalog: ChannelCatalog::builtin(),
        run: super::Run::new(opts.seed, opts.persons, progress.bar().clone()),
    });
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..opts.clients {
        let channel = channels[k % channels.len()].clone();
        let shared = shared.clone();
        if opts.import {
            tasks.spawn(import::import_client(shared, ImportClient::new(channel)));
        } else {
            tasks.spawn(rpc::rpc_client(shared, CaseworkerClient::new(channel)));
        }
    }
    let ticker = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                shared.run.show_rate(started);
            }
        })
    };
    let mut outputs = Vec::with_capacity(opts.clients);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(out) => outputs.push(out),
            Err(e) => shared.run.fail(ServiceFailure::Task(e)),
        }
    }
    ticker.abort();
    let elapsed = started.elapsed();
    drop(progress);
    drop(channels);
    if let Some(failure) = shared.run.take_fatal() {
        return Err(SimulateError::Service(failure));
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
        report.statistics = Some(statistics::check_statistics(opts, &report.tally, report.last_seq).await?);
    }
    Ok(report)
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
        request_id: request_id(shared.run.seed, index, step),
        case_id: case_id.to_string(),
        expected_version: version,
        on,
    }
}
