//! `registry load-test`: a mixed workload against a running server, with
//! latency percentiles and gRPC codes per operation.
//!
//! - [`mix`]: the operation kinds and their weights (`--mix`).
//! - [`workload`]: each operation as RPCs, and the cases they act on.
//! - [`report`]: histograms, codes, the table and the JSON report.
//!
//! Existing cases: with `--sim-seed S --sim-persons N` the tool knows the
//! caseload `registry simulate --seed S --persons N` wrote (person `i`'s
//! case id from its registration request id `sim-S-i-0`, its documents from
//! `plan_person(S, i)`), without reading the store. Without them it first
//! registers a working set of its own (`--working-set`, default 1,000). Cases
//! it registers during the run join the pool.
//!
//! Closed loop (default): `--clients` tasks, each sending its next operation
//! when the previous one answered. Open loop (`--rate R`): operations are
//! scheduled every 1/R s from the start; an operation's latency runs from
//! its *intended* time, so a slow server is not hidden by a tool that waits
//! (coordinated omission); at most `--clients` operations are outstanding,
//! and an operation scheduled when all are busy is dropped and counted.
//!
//! The warm-up (`--warmup`, default 2 s) runs the same workload unmeasured.
//! Operations that start (closed loop) or are scheduled (open loop) in the
//! measured window are measured, whatever their answer; the run waits for
//! the ones still outstanding at its end.
//!
//! Credentials: one set of HTTP/2 connections per principal: `--token-file`
//! (caseworker or supervisor) for the Caseworker service,
//! `--stats-token-file` (statistician) for Statistics, `--audit-token-file`
//! (auditor) for Audit, the latter two defaulting to the first, which
//! defaults to `$REGISTRY_TOKEN`. Client `c` uses connection `c mod
//! connections` of each (default: one connection per 8 clients).

pub mod mix;
pub mod report;
pub mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::api::pb;
use crate::client::{connect, ClientOptions};
use crate::simulate::rng::{mix64, Rng};
pub use mix::{Mix, MixError, OpKind};
pub use report::Report;
use report::{OpenLoop, Recorder};
use workload::{CasePool, Ctx, Slot};

/// Most clients (closed loop) or outstanding operations (open loop).
pub const CLIENTS_MAX: usize = 4_096;
/// Most HTTP/2 connections per principal.
pub const CONNECTIONS_MAX: usize = 256;
/// Clients per connection by default.
pub const CLIENTS_PER_CONNECTION: usize = 8;
/// Longest measured duration.
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 3600);
/// Longest warm-up.
pub const WARMUP_MAX: Duration = Duration::from_secs(600);
/// Highest open-loop rate, operations per second.
pub const RATE_MAX: f64 = 1_000_000.0;
/// Largest working set registered at set-up.
pub const WORKING_SET_MAX: u64 = 100_000;
/// Longest per-RPC deadline.
pub const TIMEOUT_MAX: Duration = Duration::from_secs(300);
/// An open-loop operation sent later than this after its intended time is "late".
pub const LATE_THRESHOLD: Duration = Duration::from_millis(10);
/// How long to wait for the server to accept connections.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// Actor metadata the tool sends (until the server authenticates principals).
pub const ACTOR: (&str, &str) = ("loadtest", "BOG-CENTRO");

/// `registry load-test`.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadTestArgs {
    /// The server, `http://host:port`; for a cluster, its nodes as a
    /// comma-separated list (calls follow the leader: docs/CLUSTER.md).
    #[arg(long)]
    pub target: String,
    /// Concurrent clients (closed loop), or the cap on outstanding operations (open loop).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Measured duration, e.g. 30s, 2m, 500ms.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Unmeasured warm-up before it.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// Open loop: total operations per second, at fixed intervals.
    #[arg(long)]
    pub rate: Option<f64>,
    /// HTTP/2 connections per principal (default: one per 8 clients).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Bearer token of the caseworker/supervisor principal (default: $REGISTRY_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Bearer token of the statistician principal (default: --token-file).
    #[arg(long)]
    pub stats_token_file: Option<PathBuf>,
    /// Bearer token of the auditor principal (default: --token-file).
    #[arg(long)]
    pub audit_token_file: Option<PathBuf>,
    /// Seed of the `registry simulate` run that filled the store.
    #[arg(long, requires = "sim_persons")]
    pub sim_seed: Option<u64>,
    /// Persons of that run.
    #[arg(long, requires = "sim_seed")]
    pub sim_persons: Option<u64>,
    /// Without --sim-*: cases to register before the run and act on.
    #[arg(long, default_value_t = 1_000)]
    pub working_set: u64,
    /// Weights, e.g. command=25,register=5,read=35,lookup=15,stats=10,proof=10 (kinds not named: 0).
    #[arg(long, default_value_t = Mix::default())]
    pub mix: Mix,
    /// Deadline of each RPC.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Seed of the tool's random choices (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Why an option of `registry load-test` is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// A duration whose number part does not parse.
    #[error("{text:?}: expected a number and a unit (ms, s, m, h)")]
    NotANumber {
        /// The duration as given.
        text: String,
        /// Why its number part is not a number.
        source: std::num::ParseFloatError,
    },
    /// A duration with a unit other than `ms`, `s`, `m` or `h`.
    #[error("{text:?}: unknown unit {unit:?} (ms, s, m, h)")]
    Unit {
        /// The duration as given.
        text: String,
        /// The unit found after the number.
        unit: String,
    },
    /// A duration that is not finite or longer than 366 days (the text as given).
    #[error("{0:?}: out of range")]
    OutOfRange(String),
    /// A flag outside its bounds (`bound` reads after "must be").
    #[error("{flag} must be {bound}")]
    Bound {
        /// The flag, with its dashes (`--clients`).
        flag: &'static str,
        /// The allowed values, e.g. `1..=4096`.
        bound: String,
    },
}

fn bound(flag: &'static str, bound: String) -> ArgError {
    ArgError::Bound { flag, bound }
}

/// Parses `500ms`, `3s`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, ArgError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|source| ArgError::NotANumber {
        text: text.to_string(),
        source,
    })?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(ArgError::Unit {
                text: text.to_string(),
                unit: unit.to_string(),
            })
        }
    };
    if !seconds.is_finite() || seconds > 366.0 * 86_400.0 {
        return Err(ArgError::OutOfRange(text.to_string()));
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl LoadTestArgs {
    /// Checks every bound; returns the connection count.
    pub fn validate(&self) -> Result<usize, ArgError> {
        if self.clients == 0 || self.clients > CLIENTS_MAX {
            return Err(bound("--clients", format!("1..={CLIENTS_MAX}")));
        }
        if self.duration < Duration::from_millis(100) || self.duration > DURATION_MAX {
            return Err(bound(
                "--duration",
                format!("100ms..={}h", DURATION_MAX.as_secs() / 3600),
            ));
        }
        if self.warmup > WARMUP_MAX {
            return Err(bound("--warmup", format!("at most {}s", WARMUP_MAX.as_secs())));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0 && rate <= RATE_MAX) {
                return Err(bound("--rate", format!("in (0, {RATE_MAX}]")));
            }
        }
        if self.timeout < Duration::from_millis(10) || self.timeout > TIMEOUT_MAX {
            return Err(bound("--timeout", format!("10ms..={}s", TIMEOUT_MAX.as_secs())));
        }
        if let Some(n) = self.sim_persons {
            if n == 0 || n > crate::simulate::generator::PERSONS_MAX {
                return Err(bound(
                    "--sim-persons",
                    format!("1..={}", crate::simulate::generator::PERSONS_MAX),
                ));
            }
        } else if self.working_set == 0 || self.working_set > WORKING_SET_MAX {
            return Err(bound("--working-set", format!("1..={WORKING_SET_MAX}")));
        }
        let connections = self
            .connections
            .unwrap_or_else(|| self.clients.div_ceil(CLIENTS_PER_CONNECTION));
        if connections == 0 || connections > CONNECTIONS_MAX {
            return Err(bound("--connections", format!("1..={CONNECTIONS_MAX}")));
        }
        Ok(connections.min(self.clients))
    }
}

/// Why a load test could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadTestError {
    /// An option outside its bounds ([`LoadTestArgs::validate`]).
    #[error("invalid option: {0}")]
    Invalid(#[source] ArgError),
    /// The target or a token file could not make client options.
    #[error("invalid option: {0}")]
    Options(#[source] crate::client::ClientError),
    /// A connection to the server failed (after retrying while it starts).
    #[error("{0}")]
    Connect(#[source] crate::client::ClientError),
    /// Preparing the case pool failed: a set-up task died, or no
    /// registration succeeded (the first error's code and message).
    #[error("set-up: {0}")]
    Setup(String),
    /// The tokio runtime could not be built.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The report could not be serialized as JSON (`--json`).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Runs `registry load-test` from the command line: prints the report;
/// exit 1 when the server answered INTERNAL, UNKNOWN or DATA_LOSS or a
/// proof did not verify.
pub fn run_cli(args: LoadTestArgs) -> Result<ExitCode, LoadTestError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(if report.server_faults() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Connects, prepares the case pool, runs the workload and reports.
pub async fn run(args: &LoadTestArgs) -> Result<Report, LoadTestError> {
    let connections = args.validate().map_err(LoadTestError::Invalid)?;
    let options = |file: Option<&PathBuf>| -> Result<ClientOptions, LoadTestError> {
        let mut o =
            ClientOptions::new(&args.target, file.map(PathBuf::as_path)).map_err(LoadTestError::Options)?;
        o.actor = Some((ACTOR.0.into(), ACTOR.1.into()));
        Ok(o)
    };
    let caseworker = options(args.token_file.as_ref())?;
    let statistician = options(args.stats_token_file.as_ref().or(args.token_file.as_ref()))?;
    let auditor = options(args.audit_token_file.as_ref().or(args.token_file.as_ref()))?;
    let mut slots = Vec::with_capacity(connections);
    for _ in 0..connections {
        let max = crate::limits::GRPC_RESPONSE_BYTES_MAX;
        slots.push(Slot {
            caseworker: pb::caseworker_client::CaseworkerClient::new(
                connect(&caseworker, CONNECT_WAIT)
                    .await
                    .map_err(LoadTestError::Connect)?,
            )
            .max_decoding_message_size(max),
            statistics: pb::statistics_client::StatisticsClient::new(
                connect(&statistician, CONNECT_WAIT)
                    .await
                    .map_err(LoadTestError::Connect)?,
            )
            .max_decoding_message_size(max),
            audit: pb::audit_client::AuditClient::new(
                connect(&auditor, CONNECT_WAIT)
                    .await
                    .map_err(LoadTestError::Connect)?,
            )
            .max_decoding_message_size(max),
        });
    }
    let seed = args.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        mix64(t ^ u64::from(std::process::id()).rotate_left(32))
    });
    let simulated = args.sim_seed.zip(args.sim_persons);
    let ctx = Arc::new(Ctx {
        slots,
        pool: CasePool::new(simulated),
        rec: Recorder::default(),
        // Request ids must not repeat across runs: the clock, not --seed.
        run_id: format!(
            "{:016x}",
            mix64(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
                    ^ u64::from(std::process::id())
            )
        ),
        timeout: args.timeout,
        next_request: AtomicU64::new(0),
    });

    let setup_started = Instant::now();
    let setup_registered = match simulated {
        Some(_) => 0,
        None => setup(&ctx, args.working_set, args.clients, seed).await?,
    };
    let setup_s = if simulated.is_some() {
        0.0
    } else {
        setup_started.elapsed().as_secs_f64()
    };
    let case_pool = ctx.pool.len();
    tracing::info!(
        clients = args.clients,
        connections,
        cases = case_pool,
        "warming up for {:.1} s, then measuring for {:.1} s",
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64()
    );

    let start = Instant::now();
    let warm_end = start + args.warmup;
    let end = warm_end + args.duration;
    let open_loop = match args.rate {
        None => {
            closed_loop(&ctx, args, seed, warm_end, end).await;
            None
        }
        Some(rate) => Some(open_loop(&ctx, args, seed, rate, start, warm_end, end).await),
    };

    let seconds = args.duration.as_secs_f64();
    let (operations, rpcs, total) = ctx.rec.rows(seconds);
    let rec = &ctx.rec;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Ok(Report {
        target: args.target.clone(),
        mode: if args.rate.is_some() { "open" } else { "closed" },
        clients: args.clients,
        connections,
        duration_s: seconds,
        warmup_s: args.warmup.as_secs_f64(),
        mix: OpKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), args.mix.weight(*k)))
            .collect(),
        cases: match simulated {
            Some((s, n)) => format!("simulated caseload, seed {s}, {n} persons"),
            None => format!("a working set of {} registered by the tool", args.working_set),
        },
        case_pool,
        setup_registered,
        setup_s,
        operations,
        rpcs,
        total,
        open_loop,
        appended_events: load(&rec.appended_events),
        access_events: load(&rec.access_events),
        registered_cases: load(&rec.registered),
        lookup_hits: load(&rec.lookup_hits),
        lookup_misses: load(&rec.lookup_misses),
        proofs_verified: load(&rec.proofs_verified),
        proofs_invalid: load(&rec.proofs_invalid),
        proofs_empty_tree: load(&rec.proofs_empty_tree),
        command_retries: load(&rec.command_retries),
        commands_on_exited: load(&rec.commands_on_exited),
    })
}

/// Registers the working set with `clients` concurrent registrations.
async fn setup(ctx: &Arc<Ctx>, working_set: u64, clients: usize, seed: u64) -> Result<u64, LoadTestError> {
    tracing::info!(cases = working_set, "registering the working set");
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients.min(working_set as usize) {
        let (ctx, next) = (ctx.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::for_person(seed ^ 0x5345_5455_5000, c as u64);
            let (mut ok, mut first_error) = (0u64, None);
            while next.fetch_add(1, Ordering::Relaxed) < working_set {
                match ctx
                    .register(&ctx.slots[c % ctx.slots.len()], &mut rng, false)
                    .await
                {
                    (tonic::Code::Ok, _) => ok += 1,
                    (code, status) => {
                        first_error.get_or_insert_with(|| {
                            format!(
                                "{}: {}",
                                report::code_name(code),
                                status.map(|s| s.message().to_string()).unwrap_or_default()
                            )
                        });
                    }
                }
            }
            (ok, first_error)
        }));
    }
    let (mut ok, mut first_error) = (0, None);
    for t in tasks {
        let (n, e) = t.await.map_err(|e| LoadTestError::Setup(e.to_string()))?;
        ok += n;
        if first_error.is_none() {
            first_error = e;
        }
    }
    match first_error {
        None => Ok(ok),
        Some(e) if ok == 0 => Err(LoadTestError::Setup(format!(
            "no registration succeeded; first error {e}"
        ))),
        Some(e) => {
            tracing::warn!(registered = ok, of = working_set, first_error = %e, "some set-up registrations failed");
            Ok(ok)
        }
    }
}

/// `clients` tasks, each sending its next operation when the previous one answered.
async fn closed_loop(ctx: &Arc<Ctx>, args: &LoadTestArgs, seed: u64, warm_end: Instant, end: Instant) {
    let mut tasks = Vec::with_capacity(args.clients);
    for c in 0..args.clients {
        let ctx = ctx.clone();
        let mix = args.mix;
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::for_person(seed, c as u64);
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let measured = started >= warm_end;
                let kind = mix.pick(rng.next_u64());
                let code = ctx.run(c, kind, &mut rng, measured).await;
                if measured {
                    ctx.rec.op(kind, started.elapsed(), code);
                }
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "a client task failed");
        }
    }
}

/// Operations at fixed intervals of 1/rate from `start`, at most `clients` outstanding.
async fn open_loop(
    ctx: &Arc<Ctx>,
    args: &LoadTestArgs,
    seed: u64,
    rate: f64,
    start: Instant,
    warm_end: Instant,
    end: Instant,
) -> OpenLoop {
    let permits = Arc::new(Semaphore::new(args.clients));
    let mut choices = Rng::for_person(seed, u64::MAX);
    let (mut scheduled, mut sent, mut dropped, mut late) = (0u64, 0u64, 0u64, 0u64);
    let mut k: u64 = 0;
    let at = |k: u64| start + Duration::from_secs_f64(k as f64 / rate);
    let mut next = at(0);
    while next < end {
        let now = Instant::now();
        while next <= now && next < end {
            let intended = next;
            let measured = intended >= warm_end;
            let kind = args.mix.pick(choices.next_u64());
            scheduled += u64::from(measured);
            match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    if measured {
                        sent += 1;
                        late += u64::from(now.duration_since(intended) > LATE_THRESHOLD);
                    }
                    let ctx = ctx.clone();
                    let slot = k as usize;
                    tokio::spawn(async move {
                        let mut rng = Rng::for_person(seed ^ 0x4f50_454e, k);
                        let code = ctx.run(slot, kind, &mut rng, measured).await;
                        if measured {
                            ctx.rec.op(kind, intended.elapsed(), code);
                        }
                        drop(permit);
                    });
                }
                Err(_) => dropped += u64::from(measured),
            }
            k += 1;
            next = at(k);
        }
        if next < end {
            tokio::time::sleep_until(next.into()).await;
        }
    }
    // Wait for every outstanding operation.
    let all = u32::try_from(args.clients).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    OpenLoop {
        rate,
        scheduled,
        sent,
        dropped,
        late,
        late_threshold_ms: LATE_THRESHOLD.as_millis() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "s", "3x", "-1s", "1e400", "9999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    fn args() -> LoadTestArgs {
        LoadTestArgs {
            target: "http://127.0.0.1:1".into(),
            clients: 64,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            rate: None,
            connections: None,
            token_file: None,
            stats_token_file: None,
            audit_token_file: None,
            sim_seed: None,
            sim_persons: None,
            working_set: 1_000,
            mix: Mix::default(),
            timeout: Duration::from_secs(30),
            seed: None,
            json: false,
        }
    }

    #[test]
    fn every_size_is_bounded_and_connections_default_to_one_per_eight_clients() {
        assert_eq!(args().validate(), Ok(8));
        assert_eq!(LoadTestArgs { clients: 3, ..args() }.validate(), Ok(1));
        assert_eq!(
            LoadTestArgs {
                clients: 2,
                connections: Some(5),
                ..args()
            }
            .validate(),
            Ok(2)
        );
        let bad = [
            LoadTestArgs { clients: 0, ..args() },
            LoadTestArgs {
                clients: CLIENTS_MAX + 1,
                ..args()
            },
            LoadTestArgs {
                duration: Duration::from_secs(2 * 86_400),
                ..args()
            },
            LoadTestArgs {
                warmup: Duration::from_secs(3_600),
                ..args()
            },
            LoadTestArgs {
                rate: Some(0.0),
                ..args()
            },
            LoadTestArgs {
                rate: Some(f64::NAN),
                ..args()
            },
            LoadTestArgs {
                rate: Some(2e6),
                ..args()
            },
            LoadTestArgs {
                connections: Some(0),
                ..args()
            },
            LoadTestArgs {
                connections: Some(CONNECTIONS_MAX + 1),
                ..args()
            },
            LoadTestArgs {
                working_set: 0,
                ..args()
            },
            LoadTestArgs {
                working_set: WORKING_SET_MAX + 1,
                ..args()
            },
            LoadTestArgs {
                sim_seed: Some(1),
                sim_persons: Some(0),
                ..args()
            },
            LoadTestArgs {
                timeout: Duration::ZERO,
                ..args()
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?} should be refused");
        }
    }
}
