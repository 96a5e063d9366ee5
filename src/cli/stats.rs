//! `registry stats`, `registry rebuild-projections` and `registry bench stats`:
//! the clap arguments and handlers. With `--target`, [`remote`] asks a
//! running server.

pub mod remote;

use super::BoxError;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::domain::Date;
use crate::log::Store;
use crate::projection::engine::{replay, AsOf, Engine, TREE};
use crate::projection::export::{self, LongTable, TableKind};
use crate::projection::query::{caseload, CaseloadQuery, Dim, Filter, QueryError};
use crate::projection::state::Metric;
use crate::projection::state::ProjectionState;
use crate::projection::suppress::SuppressionRules;

/// Output formats of `registry stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text columns, to standard output only.
    Table,
    /// CSV; with `--out`, a Frictionless Table Schema beside it.
    Csv,
    /// Pretty-printed JSON.
    Json,
    /// Apache Parquet (needs `--out`).
    Parquet,
}

/// `registry stats`: a statistic from a stopped store (`--data-dir`) or a
/// running server (`--target`), as text, CSV (with a Table Schema), JSON or
/// Parquet.
#[derive(Clone, Debug, clap::Args)]
pub struct StatsArgs {
    /// A stopped store (its persisted projection is caught up first).
    #[arg(long, required_unless_present = "target", conflicts_with = "target")]
    pub data_dir: Option<PathBuf>,
    /// A running server, `http://host:port` or `https://host:port`: asks its
    /// Statistics service (a statistician's token).
    #[arg(long)]
    pub target: Option<String>,
    /// With --target: the token and TLS settings.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The statistic.
    #[arg(long, value_enum, default_value_t = TableKind::Caseload)]
    pub table: TableKind,
    /// Caseload: count statuses and ages on this date (YYYY-MM-DD). Default:
    /// today (Colombia), or the latest business date in the log if later
    /// (offline); today in Colombia (server). A date before the latest
    /// business date replays the log up to it.
    #[arg(long)]
    pub as_of: Option<String>,
    /// Caseload: replay the log up to this seq (statuses on --as-of, else on
    /// the latest business date up to there).
    #[arg(long)]
    pub as_of_seq: Option<u64>,
    /// Breakdown dimensions. Caseload (up to 3): status, department,
    /// municipality, sex, age_band, minor, channel, permit_type, nationality.
    /// Series (up to 2): department, sex, age_band, channel, status.
    /// Certifications: route, sector, stage.
    #[arg(long, value_delimiter = ',')]
    pub by: Vec<String>,
    /// Caseload filters DIM=VALUE[|VALUE..] (repeatable), e.g. status=IRREGULAR minor=true.
    #[arg(long)]
    pub filter: Vec<String>,
    /// Series: the metric (REGISTRATIONS, PRE_REGISTRATIONS, BIOMETRIC_CAPTURES,
    /// DECISIONS_APPROVED, DECISIONS_DENIED, PERMITS_ISSUED, CARDS_DELIVERED,
    /// CANCELLATIONS, ERASURES).
    #[arg(long)]
    pub metric: Option<String>,
    /// Series and expiring permits: first month, YYYY-MM.
    #[arg(long)]
    pub from_month: Option<String>,
    /// Series and expiring permits: last month, YYYY-MM.
    #[arg(long)]
    pub to_month: Option<String>,
    /// Apply disclosure control (small-cell and secondary suppression).
    #[arg(long)]
    pub published: bool,
    /// Smallest published cell (offline only: a server applies its own).
    #[arg(long, default_value_t = crate::limits::STATS_MIN_CELL)]
    pub min_cell: u64,
    /// Smallest published cell involving minors or a municipality (offline only).
    #[arg(long, default_value_t = crate::limits::STATS_MIN_CELL_SENSITIVE)]
    pub min_cell_sensitive: u64,
    /// The output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the table to this file instead of standard output (required
    /// for parquet), with `<stem>.codebook.json` beside it, and for CSV
    /// `<stem>.schema.json` (Frictionless Table Schema); `<stem>` is the file
    /// name without its extension.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A checked `registry stats` question.
#[derive(Clone, Debug)]
pub struct Question {
    /// The statistic asked for.
    pub kind: TableKind,
    /// The date to count on (`None`: today, or the latest business date
    /// applied if later).
    pub as_of: Option<Date>,
    /// The log position to replay up to (`None`: no replay, the projection).
    pub as_of_seq: Option<u64>,
    /// Caseload: the breakdown and filters.
    pub caseload: CaseloadQuery,
    /// Certifications: the breakdown, in the order route, sector, stage.
    /// Series: up to two dimensions, in the order asked.
    pub breakdown: Vec<&'static str>,
    /// Series: the metric counted.
    pub metric: Option<Metric>,
    /// Month indexes and their text.
    pub from: Option<(u32, String)>,
    /// The last month asked for (index and text).
    pub to: Option<(u32, String)>,
    /// Apply disclosure control.
    pub published: bool,
}

/// Why the arguments of `registry stats` do not make a [`Question`]; the
/// message names the flag.
#[derive(Debug, thiserror::Error)]
pub enum QuestionError {
    /// A flag (named) that only a caseload question takes.
    #[error("{0}: only for --table caseload (the other tables reflect the log position)")]
    CaseloadOnly(&'static str),
    /// `--as-of` with a table that reflects the log position.
    #[error("--as-of: only for --table caseload or worklists (the other tables reflect the log position)")]
    AsOfTable,
    /// `--as-of` (shown) is not a date.
    #[error("--as-of: not a date: {0:?}")]
    AsOfDate(String),
    /// `--as-of-seq 0`.
    #[error("--as-of-seq: must be at least 1")]
    AsOfSeqZero,
    /// A caseload dimension (shown) that does not exist.
    #[error("--by: unknown dimension {0:?}")]
    UnknownDimension(String),
    /// A dimension (shown) that certifications do not break down by.
    #[error("--by: {0:?} is not a certifications dimension (route, sector, stage)")]
    NotACertificationsDimension(String),
    /// A series breakdown that is refused.
    #[error("--by: {0}")]
    SeriesBreakdown(#[source] QueryError),
    /// `--by` with a table (named) that has no breakdown.
    #[error("--by: --table {} has no breakdown", .0.as_str().replace('_', "-"))]
    NoBreakdown(TableKind),
    /// A `--filter` that does not parse.
    #[error("--filter: {0}")]
    Filter(#[source] QueryError),
    /// A `--metric` (shown, shortened) that does not exist.
    #[error("--metric: unknown metric {0:?}")]
    UnknownMetric(String),
    /// A series question without `--metric`.
    #[error("--metric: required for --table series")]
    MetricRequired,
    /// `--metric` with a table other than the series.
    #[error("--metric: only for --table series")]
    MetricNotSeries,
    /// `--from-month` or `--to-month` with a table that has no months.
    #[error("--from-month/--to-month: only for --table series or expiring-permits")]
    MonthsNotAllowed,
    /// A month flag whose value (shown, shortened) is not `YYYY-MM`.
    #[error("{flag}: expected YYYY-MM, got {text:?}")]
    Month {
        /// The flag.
        flag: &'static str,
        /// Its value, shortened.
        text: String,
    },
    /// A caseload breakdown and filters that do not go together.
    #[error("--{0}")]
    Caseload(#[source] QueryError),
    /// Thresholds with `--target`.
    #[error("--min-cell/--min-cell-sensitive: not with --target (the server applies its own thresholds)")]
    ThresholdsWithTarget,
    /// `--out` with `--format table`.
    #[error("--out: needs --format csv, json or parquet")]
    OutNeedsFormat,
    /// `--format parquet` without `--out`.
    #[error("--format parquet: needs --out FILE (Parquet is a binary file)")]
    ParquetNeedsOut,
}

/// The first characters of a value echoed in an error message.
fn echoed(text: &str) -> String {
    text.chars().take(crate::limits::ECHOED_VALUE_CHARS_MAX).collect()
}

fn month_arg(flag: &'static str, text: &Option<String>) -> Result<Option<(u32, String)>, QuestionError> {
    let Some(t) = text else { return Ok(None) };
    let d = Date::parse(&format!("{t}-01"))
        .filter(|_| t.len() == 7)
        .ok_or_else(|| QuestionError::Month {
            flag,
            text: echoed(t),
        })?;
    Ok(Some((crate::projection::month_index(d), t.clone())))
}

impl Question {
    /// Checks the arguments; errors name the flag.
    pub fn from_args(args: &StatsArgs) -> Result<Question, QuestionError> {
        let kind = args.table;
        let caseload_only = |flag: &'static str, given: bool| {
            if given && kind != TableKind::Caseload {
                Err(QuestionError::CaseloadOnly(flag))
            } else {
                Ok(())
            }
        };
        if args.as_of.is_some() && !matches!(kind, TableKind::Caseload | TableKind::Worklists) {
            return Err(QuestionError::AsOfTable);
        }
        caseload_only("--as-of-seq", args.as_of_seq.is_some())?;
        caseload_only("--filter", !args.filter.is_empty())?;
        let as_of = match &args.as_of {
            Some(t) => Some(Date::parse(t).ok_or_else(|| QuestionError::AsOfDate(t.clone()))?),
            None => None,
        };
        if args.as_of_seq == Some(0) {
            return Err(QuestionError::AsOfSeqZero);
        }
        let by: Vec<&str> = args
            .by
            .iter()
            .map(|d| d.trim())
            .filter(|d| !d.is_empty())
            .collect();
        let mut dims = Vec::new();
        let mut breakdown = Vec::new();
        match kind {
            TableKind::Caseload => {
                for d in &by {
                    dims.push(Dim::parse(d).ok_or_else(|| QuestionError::UnknownDimension(d.to_string()))?);
                }
            }
            TableKind::Certifications => {
                for d in &by {
                    if !["route", "sector", "stage"].contains(d) {
                        return Err(QuestionError::NotACertificationsDimension(d.to_string()));
                    }
                }
                breakdown = ["route", "sector", "stage"]
                    .into_iter()
                    .filter(|d| by.contains(d))
                    .collect();
            }
            TableKind::Series => {
                breakdown = crate::projection::series_breakdown(
                    &by.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                )
                .map_err(QuestionError::SeriesBreakdown)?;
            }
            _ if !by.is_empty() => return Err(QuestionError::NoBreakdown(kind)),
            _ => {}
        }
        let filters = args
            .filter
            .iter()
            .map(|f| Filter::parse(f).map_err(QuestionError::Filter))
            .collect::<Result<Vec<_>, _>>()?;
        let metric = match (&args.metric, kind) {
            (Some(m), TableKind::Series) => {
                Some(Metric::parse(m).ok_or_else(|| QuestionError::UnknownMetric(echoed(m)))?)
            }
            (None, TableKind::Series) => return Err(QuestionError::MetricRequired),
            (Some(_), _) => return Err(QuestionError::MetricNotSeries),
            (None, _) => None,
        };
        let months_allowed = matches!(kind, TableKind::Series | TableKind::ExpiringPermits);
        if !months_allowed && (args.from_month.is_some() || args.to_month.is_some()) {
            return Err(QuestionError::MonthsNotAllowed);
        }
        let from = month_arg("--from-month", &args.from_month)?;
        let to = month_arg("--to-month", &args.to_month)?;
        let caseload = CaseloadQuery {
            by: dims,
            filters,
            published: args.published,
        };
        crate::projection::query::validate(&caseload).map_err(QuestionError::Caseload)?;
        if args.target.is_some()
            && (args.min_cell != crate::limits::STATS_MIN_CELL
                || args.min_cell_sensitive != crate::limits::STATS_MIN_CELL_SENSITIVE)
        {
            return Err(QuestionError::ThresholdsWithTarget);
        }
        if args.out.is_some() && args.format == Format::Table {
            return Err(QuestionError::OutNeedsFormat);
        }
        if args.out.is_none() && args.format == Format::Parquet {
            return Err(QuestionError::ParquetNeedsOut);
        }
        Ok(Question {
            kind,
            as_of,
            as_of_seq: args.as_of_seq,
            caseload,
            breakdown,
            metric,
            from,
            to,
            published: args.published,
        })
    }
}

/// `registry rebuild-projections`.
#[derive(Clone, Debug, clap::Args)]
pub struct RebuildArgs {
    /// The store's data directory.
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// `registry bench stats`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchStatsArgs {
    /// Store to measure; simulated first with --persons if it has no events.
    #[arg(long, default_value = "./bench-stats-data")]
    pub data_dir: PathBuf,
    /// Persons to simulate when the store is empty.
    #[arg(long, default_value_t = 50_000)]
    pub persons: u64,
    /// Queries per measured kind.
    #[arg(long, default_value_t = 2_000)]
    pub queries: usize,
    /// Concurrent appenders for the projection-lag measurement.
    #[arg(long, default_value_t = 32)]
    pub lag_appenders: usize,
    /// Skip the projection-lag measurement (it appends the whole store
    /// again into a second log: hours at the full caseload).
    #[arg(long)]
    pub no_lag: bool,
}

fn open_store(dir: &Path) -> Result<Store, BoxError> {
    if !dir.join("db").exists() {
        return Err(format!("no store in {}", dir.display()).into());
    }
    Ok(Store::open(dir)?)
}

/// Opens and catches up the persisted projection of a stopped store.
pub fn open_caught_up(store: &Store, cube_date: Date) -> Result<Engine, BoxError> {
    let mut engine = Engine::open(store, TREE, cube_date)?;
    engine.catch_up()?;
    Ok(engine)
}

/// The state answering "as of": the persisted projection (moved to the
/// date) when the date is on or after every business date applied, else a
/// replay.
pub fn state_as_of(
    store: &Store,
    as_of: Option<Date>,
    as_of_seq: Option<u64>,
) -> Result<ProjectionState, BoxError> {
    if let Some(seq) = as_of_seq {
        return Ok(replay(store, AsOf::Seq(seq, as_of))?);
    }
    let engine = open_caught_up(store, Date::MIN)?;
    let latest = engine.state().max_on();
    let date = match as_of {
        Some(d) => d,
        None => crate::clock::today().max(latest.unwrap_or(Date::MIN)),
    };
    if latest.is_some_and(|l| date < l) {
        if let Some(state) = engine.state().month_end_state(date) {
            return Ok(state);
        }
        return Ok(replay(store, AsOf::Date(date))?);
    }
    let mut state = engine.state().clone();
    state.set_cube_date(date);
    Ok(state)
}

/// The credentials and TLS settings of a `--target` (`registry stats`,
/// `registry publish`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RemoteArgs {
    /// With --target: bearer token file (default: $REGISTRY_TOKEN).
    #[arg(long, requires = "target")]
    pub token_file: Option<PathBuf>,
    /// With an https --target: PEM CA certificate that signs the server's certificate.
    #[arg(long, requires = "target")]
    pub tls_ca: Option<PathBuf>,
    /// Server name to verify in its certificate (default: the target's host).
    #[arg(long, requires = "tls_ca")]
    pub tls_domain: Option<String>,
    /// PEM client certificate, for a server that requires one.
    #[arg(long, requires_all = ["tls_ca", "tls_client_key"])]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of --tls-client-cert.
    #[arg(long, requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
}

impl RemoteArgs {
    /// Client options for `target` with the token file (else
    /// `$REGISTRY_TOKEN`) and, for https, the CA, the name to verify and a
    /// client identity.
    pub fn options(&self, target: &str) -> Result<crate::client::ClientOptions, BoxError> {
        if target.starts_with("https://") && self.tls_ca.is_none() {
            return Err(format!(
                "--tls-ca: {target} is an https target: name the CA that signs its certificate"
            )
            .into());
        }
        let mut options = crate::client::ClientOptions::new(target, self.token_file.as_deref())?;
        options.tls = self.tls_ca.as_ref().map(|ca| crate::auth::tls::ClientTls {
            ca: Some(ca.clone()),
            identity: self.tls_client_cert.clone().zip(self.tls_client_key.clone()),
            domain: self.tls_domain.clone(),
        });
        Ok(options)
    }
}

/// Runs `registry stats`.
pub fn stats(args: &StatsArgs) -> Result<(), BoxError> {
    let q = Question::from_args(args)?;
    let rules = SuppressionRules {
        min_cell: args.min_cell,
        min_cell_sensitive: args.min_cell_sensitive,
    };
    let table = match (&args.target, &args.data_dir) {
        (Some(target), _) => {
            let options = args.remote.options(target)?;
            remote::fetch(&options, &q)?
        }
        (None, Some(dir)) => offline(dir, &q, &rules)?,
        (None, None) => return Err("--data-dir or --target: one is required".into()),
    };
    let (body, schema) = match args.format {
        Format::Table => (export::to_text(&table).into_bytes(), None),
        Format::Csv => (export::to_csv(&table)?, Some(export::table_schema(&table))),
        Format::Json => {
            let mut b = serde_json::to_vec_pretty(&export::to_json(&table))?;
            b.push(b'\n');
            (b, None)
        }
        Format::Parquet => (export::to_parquet(&table)?, None),
    };
    match &args.out {
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&body)?;
        }
        Some(path) => {
            let write = |p: &Path, bytes: &[u8]| {
                std::fs::write(p, bytes).map_err(|e| format!("--out: cannot write {}: {e}", p.display()))
            };
            write(path, &body)?;
            let mut written = vec![path.clone()];
            let beside = |suffix: &str| {
                let stem = path
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                path.with_file_name(format!("{stem}.{suffix}"))
            };
            if let Some(schema) = schema {
                let p = beside("schema.json");
                write(&p, &pretty(&schema)?)?;
                written.push(p);
            }
            let p = beside("codebook.json");
            write(&p, &pretty(&export::codebook(&table, &rules))?)?;
            written.push(p);
            for p in written {
                println!("wrote {}", p.display());
            }
        }
    }
    Ok(())
}

fn pretty(v: &serde_json::Value) -> Result<Vec<u8>, BoxError> {
    let mut b = serde_json::to_vec_pretty(v)?;
    b.push(b'\n');
    Ok(b)
}

/// Answers a question from a stopped store.
pub fn offline(dir: &Path, q: &Question, rules: &SuppressionRules) -> Result<LongTable, BoxError> {
    let store = open_store(dir)?;
    if q.kind == TableKind::Worklists {
        let lists = crate::worklist::Worklists::open(&store)?;
        lists.catch_up(None, &mut |_| {})?;
        let reference = q.as_of.unwrap_or_else(crate::clock::today);
        let (counts, position) =
            crate::worklist::query::counts(&lists, reference, crate::limits::WORKLIST_HORIZON_DAYS_DEFAULT)?;
        return Ok(export::from_worklists(
            &counts,
            reference,
            position.seq,
            position.hash_hex(),
            q.published,
            rules,
        ));
    }
    if q.kind == TableKind::Caseload {
        let state = state_as_of(&store, q.as_of, q.as_of_seq)?;
        let table = caseload(&state, &q.caseload, rules)?;
        return Ok(export::from_caseload(&table, &q.caseload.filters));
    }
    let state = state_as_of(&store, None, None)?;
    let (from, to) = (q.from.as_ref().map(|m| m.0), q.to.as_ref().map(|m| m.0));
    let p = q.published;
    let points = match q.kind {
        TableKind::Series => {
            let metric = q.metric.ok_or("--metric: required for --table series")?;
            crate::projection::series_by(&state, metric, &q.breakdown, from, to, p, rules)
        }
        TableKind::Funnel => crate::projection::funnel(&state, p, rules),
        TableKind::ExpiringPermits => crate::projection::expiring(&state, from, to, p, rules),
        _ => {
            let has = |d: &str| q.breakdown.contains(&d);
            crate::projection::certifications(&state, has("route"), has("sector"), has("stage"), p, rules)
        }
    };
    Ok(export::from_points(q.kind, &points, &q.breakdown, from, to, p))
}

/// Runs `registry rebuild-projections`: drops the projection and rebuilds
/// it from the empty state.
pub fn rebuild(args: &RebuildArgs) -> Result<(), BoxError> {
    let store = open_store(&args.data_dir)?;
    let bar = indicatif::ProgressBar::new(store.head()?.seq);
    bar.set_style(
        indicatif::ProgressStyle::with_template("rebuild [{bar:40}] {pos}/{len} {per_sec} eta {eta}")?
            .progress_chars("=> "),
    );
    let progress = crate::progress::Progress::new(bar, "rebuild-projections events");
    let c = crate::projection::rebuild_store_reporting(&store, &mut |seq| progress.bar().set_position(seq))?;
    drop(progress);
    println!(
        "rebuilt statistics projection: {} events in {:.2}s ({:.0} events/s), {} batches, position seq {} hash {}",
        c.0.events,
        c.0.elapsed.as_secs_f64(),
        c.0.events_per_second(),
        c.0.batches,
        c.0.position.seq,
        c.0.position.hash_hex()
    );
    Ok(())
}

fn vm_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs `registry bench stats`.
pub fn bench(args: &BenchStatsArgs) -> Result<(), BoxError> {
    let has_events = args.data_dir.join("db").exists() && {
        let s = Store::open(&args.data_dir)?;
        let h = s.head()?.seq;
        drop(s);
        h > 0
    };
    if !has_events {
        println!(
            "simulating {} persons into {} ...",
            args.persons,
            args.data_dir.display()
        );
        let r = crate::simulate::run(&crate::simulate::SimulateOptions::new(
            args.persons,
            1,
            args.data_dir.clone(),
        ))?;
        println!(
            "simulated: {} events, {:.1}s",
            r.appended_events,
            r.elapsed.as_secs_f64()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let store = open_store_retrying(&args.data_dir)?;
    let rss_before = vm_rss_kib().unwrap_or(0);
    let (c, mut engine) = crate::projection::rebuild_store(&store)?;
    let rss_after = vm_rss_kib().unwrap_or(0);
    let cases = engine.state().cases();
    println!(
        "rebuild: {} events, {} cases in {:.2}s = {:.0} events/s (persisted in {} batches of <= {})",
        c.events,
        cases,
        c.elapsed.as_secs_f64(),
        c.events_per_second(),
        c.batches,
        crate::limits::PROJECTION_BATCH_EVENTS
    );
    // Replay only (in memory, no persistence): the point-in-time cost.
    let started = Instant::now();
    let replayed = replay(&store, AsOf::Seq(u64::MAX, None))?;
    let replay_secs = started.elapsed().as_secs_f64();
    println!(
        "in-memory replay (point-in-time cost): {} events in {:.2}s = {:.0} events/s",
        c.events,
        replay_secs,
        c.events as f64 / replay_secs.max(1e-9)
    );
    drop(replayed);
    // The same replay keeping month-end snapshots: their cost on a rebuild.
    let started = Instant::now();
    let mut with = ProjectionState::with_snapshots(crate::simulate::TODAY);
    loop {
        let page = crate::log::follow::read_page(
            &store,
            with.position().into(),
            crate::limits::READ_PAGE_EVENTS_MAX,
        )?;
        if page.is_empty() {
            break;
        }
        for ev in &page {
            with.apply_stored(ev)?;
        }
        with.flush_snapshots();
    }
    let with_secs = started.elapsed().as_secs_f64();
    println!(
        "in-memory replay keeping month-end snapshots: {:.2}s = {:.0} events/s ({:.2}x the replay without)",
        with_secs,
        c.events as f64 / with_secs.max(1e-9),
        with_secs / replay_secs.max(1e-9)
    );
    drop(with);
    bench_month_ends(&store, engine.state(), args.queries)?;
    engine.state_mut().set_cube_date(crate::simulate::TODAY);
    let state = engine.state();
    let rules = SuppressionRules::default();
    let queries: [(&str, CaseloadQuery); 3] = [
        (
            "caseload by status",
            CaseloadQuery {
                by: vec![Dim::Status],
                ..Default::default()
            },
        ),
        (
            "irregular minors by department (filter + 1 dim)",
            CaseloadQuery {
                by: vec![Dim::Department],
                filters: vec![Filter::parse("status=IRREGULAR")?, Filter::parse("minor=true")?],
                published: false,
            },
        ),
        (
            "2-dim breakdown department x status, published",
            CaseloadQuery {
                by: vec![Dim::Department, Dim::Status],
                filters: vec![],
                published: true,
            },
        ),
    ];
    println!(
        "cube: {} distinct cells for {} cases (query cost follows cells, not persons)",
        state.cube().len(),
        cases
    );
    for (name, q) in &queries {
        let mut times = Vec::with_capacity(args.queries);
        for _ in 0..args.queries {
            let t = Instant::now();
            let table = caseload(state, q, &rules)?;
            std::hint::black_box(&table);
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "query {name}: p50 {:.1} us, p99 {:.1} us, max {:.1} us ({} queries)",
            percentile(&times, 0.5).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6,
            times.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
            args.queries
        );
    }
    let series_cells = state.series_cells.len();
    let stored: usize = store
        .db()
        .open_tree(TREE)?
        .scan_prefix(b"s")
        .map(|kv| kv.map(|(k, v)| k.len() + v.len()).unwrap_or(0))
        .sum();
    let events_counted: usize = state.series.values().map(|n| *n as usize).sum();
    println!(
        "series broken down: {series_cells} cells (metric, month, department, sex, age band, channel, status) \
         for {events_counted} events counted: ~{:.1} MiB in memory, {:.1} MiB stored",
        (series_cells * crate::projection::state::SERIES_CELL_BYTES) as f64 / 1048576.0,
        stored as f64 / 1048576.0
    );
    let est = state.memory_bytes();
    println!(
        "memory: estimate {:.1} MiB ({:.0} bytes/case); VmRSS {:.1} MiB before rebuild, {:.1} MiB after (includes sled cache)",
        est as f64 / 1048576.0,
        est as f64 / cases.max(1) as f64,
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    let per_case = est as f64 / cases.max(1) as f64;
    let events_per_case = c.events as f64 / cases.max(1) as f64;
    if !args.no_lag {
        measure_lag(&store, &args.data_dir.with_extension("lag"), args.lag_appenders)?;
    }
    println!(
        "extrapolation to 2.8M persons (linear in cases; cells grow with distinct combinations only): \
         facts ~{:.0} MiB, rebuild of ~{:.1}M events ~{:.0}s at the measured rate",
        per_case * 2.8e6 / 1048576.0,
        events_per_case * 2.8,
        events_per_case * 2.8e6 / c.events_per_second().max(1.0)
    );
    Ok(())
}

/// "As of a past month-end": answered from the snapshot (p50/p99 of the
/// whole answer: the snapshot copied out of the state, then two
/// breakdowns), against one replay of the log to that date.
fn bench_month_ends(store: &Store, state: &ProjectionState, queries: usize) -> Result<(), BoxError> {
    let months: Vec<u32> = state.snapshot_months().collect();
    let cells: usize = months
        .iter()
        .map(|m| {
            state
                .month_end_state(crate::projection::state::month_end(*m))
                .map_or(0, |s| s.cube().len())
        })
        .sum();
    println!(
        "month-end snapshots: {} months, {} cells in all ({:.0} per month)",
        months.len(),
        cells,
        cells as f64 / months.len().max(1) as f64
    );
    let Some(&mid) = months.get(months.len() / 2) else {
        return Ok(());
    };
    let d = crate::projection::state::month_end(mid);
    let rules = SuppressionRules::default();
    let q = CaseloadQuery {
        by: vec![Dim::Department, Dim::Status],
        filters: vec![],
        published: true,
    };
    let mut times = Vec::with_capacity(queries);
    for _ in 0..queries.max(1) {
        let t = Instant::now();
        let s = state.month_end_state(d).ok_or("no snapshot")?;
        std::hint::black_box(caseload(&s, &q, &rules)?);
        times.push(t.elapsed());
    }
    times.sort();
    let t = Instant::now();
    let replayed = replay(store, AsOf::Date(d))?;
    std::hint::black_box(caseload(&replayed, &q, &rules)?);
    println!(
        "as of month-end {d} (department x status, published): snapshot p50 {:.2} ms, p99 {:.2} ms; replay {:.2} s",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Projection lag under a sustained append load: the source store's events
/// are appended again into a fresh log by `appenders` concurrent appenders
/// (each case's events in order, by one appender), durably, while the
/// projection follower runs; the lag (head seq minus projected seq) is
/// sampled every 10 ms.
fn measure_lag(source: &Store, dir: &Path, appenders: usize) -> Result<(), BoxError> {
    use crate::log::{AppendRequest, ExpectedVersion, Log, NewEvent, WriterConfig};
    let appenders = appenders.max(1);
    let _ = std::fs::remove_dir_all(dir);
    let mut work: Vec<Vec<AppendRequest>> = vec![Vec::new(); appenders];
    let mut from = 1;
    loop {
        let page = source.read_all(from, crate::limits::READ_PAGE_EVENTS_MAX)?;
        let Some(last) = page.last() else { break };
        from = last.record.seq + 1;
        for ev in page {
            let r = ev.record;
            let lane = (blake3::hash(r.stream_id.as_bytes()).as_bytes()[0] as usize) % appenders;
            work[lane].push(AppendRequest {
                stream_id: r.stream_id,
                expected: ExpectedVersion::Any,
                request_id: format!("lag-{}", r.seq),
                actor: r.actor,
                events: vec![NewEvent {
                    event_type: r.event_type,
                    payload: r.payload,
                }],
            });
        }
    }
    let total: usize = work.iter().map(Vec::len).sum();
    let log = Log::open(
        dir,
        WriterConfig {
            sync: crate::log::SyncMode::Fdatasync,
        },
    )?;
    let engine = Engine::open(
        log.store(),
        crate::projection::engine::TREE,
        crate::clock::today(),
    )?;
    let shared: crate::projection::engine::Shared = std::sync::Arc::new(std::sync::RwLock::new(engine));
    let follower = crate::projection::engine::Follower::spawn(shared.clone(), log.subscribe_head(), false)?;
    let started = Instant::now();
    let threads: Vec<_> = work
        .into_iter()
        .map(|reqs| {
            let appender = log.appender();
            std::thread::spawn(move || {
                for req in reqs {
                    appender.append_blocking(req).expect("lag bench append");
                }
            })
        })
        .collect();
    let mut lags: Vec<u64> = Vec::new();
    while threads.iter().any(|t| !t.is_finished()) {
        std::thread::sleep(Duration::from_millis(10));
        let head = log.store().head()?.seq;
        let projected = shared
            .read()
            .map_err(|_| "projection lock poisoned")?
            .state()
            .position
            .seq;
        lags.push(head.saturating_sub(projected));
    }
    for t in threads {
        t.join().map_err(|_| "appender thread panicked")?;
    }
    let append_secs = started.elapsed().as_secs_f64();
    let head = log.store().head()?.seq;
    let drain_started = Instant::now();
    while shared
        .read()
        .map_err(|_| "projection lock poisoned")?
        .state()
        .position
        .seq
        < head
    {
        if let Some(e) = follower.error() {
            return Err(e.into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let drain_ms = drain_started.elapsed().as_secs_f64() * 1e3;
    follower.stop();
    drop(shared);
    log.shutdown()?;
    let _ = std::fs::remove_dir_all(dir);
    lags.sort_unstable();
    let at = |q: f64| {
        lags.get(((lags.len() as f64 * q) as usize).min(lags.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let rate = total as f64 / append_secs.max(1e-9);
    println!(
        "lag under load: {total} events appended durably by {appenders} appenders at {rate:.0} events/s; \
         projection lag p50 {} p99 {} max {} events (~{:.1} ms at that rate); caught up {drain_ms:.1} ms after the last append",
        at(0.5),
        at(0.99),
        lags.last().copied().unwrap_or(0),
        at(0.99) as f64 / rate.max(1.0) * 1e3,
    );
    Ok(())
}

fn open_store_retrying(dir: &Path) -> Result<Store, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(dir) {
            Ok(s) => return Ok(s),
            Err(e) if e.to_string().contains("lock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(e.into()),
        }
    }
}
