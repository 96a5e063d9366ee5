//! The `registry` command: its arguments (clap) and their handlers, one file
//! per command family; `main.rs` only calls [`main`]. What a command runs
//! lives in the library's modules (`serve` builds the server in `server.rs`).
//!
//! - [`serve`]: `registry serve` and `registry config check`.
//! - [`store`]: `registry verify`, `copy-store`, `migrate-store`.
//! - [`access`]: `registry access` and `registry keys`.
//! - [`cluster`]: `registry cluster`.
//! - [`audit`]: `registry audit`, `registry export`, `registry verify --checkpoint`.
//! - [`stats`]: `registry stats` (with `--target`: [`stats::remote`]),
//!   `registry rebuild-projections`.
//! - [`release`]: `registry publish`, `registry release`.
//! - [`policy`]: `registry policy`.
//! - [`health`]: `registry health`.
//! - [`simulate`]: `registry simulate`.
//! - [`bench`](mod@bench): `registry bench` (with [`worklists`] for `bench worklists`).
//!
//! Elsewhere, for now: the flags of `serve` and `config check`
//! (`config::ServeArgs`, `config::check::CheckArgs`, layered with the
//! settings), `registry backup` and `restore` (`backup/`), `registry
//! load-test` (`loadtest/`) and `registry bench layouts` (`bench_layouts.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::LogFormat;
use crate::log::SyncMode;

pub mod access;
pub mod audit;
pub mod bench;
pub mod cluster;
pub mod health;
pub mod policy;
pub mod release;
pub mod serve;
pub mod simulate;
pub mod stats;
pub mod store;
pub mod worklists;

/// An error of a command, printed as `error: …` (exit 2).
pub type BoxError = Box<dyn std::error::Error>;
/// The result of a command: its exit code, or an error printed as `error: …` (exit 2).
pub type CliResult = Result<ExitCode, BoxError>;

/// How an acknowledged append is made durable: the flag `--sync`, read into
/// the store's [`SyncMode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncArg {
    /// sled `flush()` and then `fdatasync` of sled's data file: survives power
    /// loss on disks with volatile caches. The default.
    Fdatasync,
    /// sled `flush()` only (sled uses `sync_file_range`, which may leave data
    /// in a volatile disk cache). Survives a process crash, not always a power cut.
    Flush,
}

impl From<SyncArg> for SyncMode {
    fn from(s: SyncArg) -> SyncMode {
        match s {
            SyncArg::Fdatasync => SyncMode::Fdatasync,
            SyncArg::Flush => SyncMode::Flush,
        }
    }
}

#[derive(Parser)]
#[command(
    name = "registry",
    version,
    about = "System of record for migrant regularization cases"
)]
struct Cli {
    /// Log output format [default: text; for `serve`: the setting `log_format`].
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// sled's page cache for the store, in MiB (every command that opens a
    /// store) [default: 256; for `serve`: the setting `sled_cache_mib`].
    #[arg(long, global = true)]
    sled_cache_mib: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service. Settings: built-in defaults < config file
    /// (--config, $REGISTRY_CONFIG) < REGISTRY_* variables < flags
    /// (README.md, "Configuration"; deploy/registry.toml).
    Serve(crate::config::ServeArgs),
    /// The configuration of `serve`.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Who may call: bearer tokens and client-certificate principals (the access file).
    Access {
        #[command(subcommand)]
        what: access::AccessCommand,
    },
    /// Master keys: generate, rotate (re-wrap every person key) on a stopped store.
    Keys {
        #[command(subcommand)]
        what: access::KeysCommand,
    },
    /// Verify a stopped store: every chain link, sequence contiguity and the indexes.
    Verify {
        #[arg(long, default_value = "./registry-data")]
        data_dir: PathBuf,
        /// Also check the log against this signed checkpoint: the log must contain
        /// its tree and reproduce its root (catches truncation and rewritten tails).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Verifier key for the checkpoint (vkey or a file holding it); default: the data directory's key.
        #[arg(long, requires = "checkpoint")]
        key: Option<String>,
        /// Key hand-over notes (files, in order) from the key to the one that
        /// signed the checkpoint; default: the store's own hand-overs (each
        /// verified under both its keys, starting from the key). Their tree
        /// roots are recomputed from the log too.
        #[arg(long, requires = "checkpoint")]
        handovers: Vec<PathBuf>,
    },
    /// Copy a stopped store into a new directory with this build's storage
    /// settings (e.g. sled's 8 MiB segments for a store created with 512 KiB),
    /// every record and index entry byte for byte; then run `verify` on it.
    CopyStore {
        #[arg(long)]
        from: PathBuf,
        /// A new (or empty) directory.
        #[arg(long)]
        to: PathBuf,
    },
    /// Convert a stopped store of format v1 into store format v2 in a new
    /// directory: records byte for byte (every hash, proof and checkpoint
    /// stays valid), the chain re-checked on the way, every other tree and
    /// file copied; then run `verify` on it and serve it.
    MigrateStore {
        #[arg(long)]
        from: PathBuf,
        /// A new (or empty) directory.
        #[arg(long)]
        to: PathBuf,
    },
    /// A replicated cluster's state as one node sees it (docs/CLUSTER.md).
    Cluster {
        #[command(subcommand)]
        what: cluster::ClusterCommand,
    },
    /// Auditors: checkpoints, receipts, offline verification (docs/AUDIT.md).
    Audit {
        #[command(subcommand)]
        what: audit::AuditCommand,
    },
    /// Write a binary export of the log (format in docs/AUDIT.md).
    Export(audit::ExportArgs),
    /// Write a deterministic synthetic caseload through the case service
    /// (`--data-dir`), or send it to a running server through gRPC
    /// (`--target`); counts only on output.
    Simulate(simulate::SimulateArgs),
    /// Ask a running server's gRPC health service about one service: exit 0
    /// only when it is SERVING (container health checks, exec probes).
    Health(health::HealthArgs),
    /// Online backup of a running server (Admin/Backup) into a backup
    /// directory: a full generation first, then incremental ones; everything
    /// received is verified against the server's signed checkpoint (docs/BACKUP.md).
    Backup(crate::backup::BackupArgs),
    /// Verify a backup directory and rebuild a store from it (or, with
    /// --check, only verify it): refuses a backup whose files, chain, roots
    /// or checkpoint signatures do not verify, naming what is wrong.
    Restore(crate::backup::RestoreArgs),
    /// A mixed workload against a running server: throughput, latency percentiles, gRPC codes.
    LoadTest(crate::loadtest::LoadTestArgs),
    /// Statistics: the caseload, a series, the funnel, certifications or
    /// permits expiring, from a stopped store or a running server, as text,
    /// CSV with a Table Schema, or JSON (docs/STATISTICS.md).
    Stats(stats::StatsArgs),
    /// A statistics release for the regional exchange: the published tables
    /// in SDMX-CSV 2.0 with their structures, the codebook and a manifest
    /// signed with the audit key, at one signed checkpoint (docs/RELEASES.md).
    Publish(release::PublishArgs),
    /// The legal instruments in the log (Policy service): list them, record
    /// one from a JSON file (alias: import), or preview what one would change.
    Policy(policy::PolicyArgs),
    /// Statistics releases: verify one, combine several into regional totals.
    Release {
        #[command(subcommand)]
        what: release::ReleaseCommand,
    },
    /// Drop the statistics and worklist projections and rebuild them from the empty state.
    RebuildProjections(stats::RebuildArgs),
    /// Measurements (figures, not tests).
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load the settings of `serve` as it would (same file, variables and
    /// flags) and check everything it would refuse at start, without starting
    /// anything: print every setting with its source (default, file, env,
    /// flag; paths only, no secret), warnings and errors. Exit 0 if valid, 1
    /// if not.
    Check(crate::config::check::CheckArgs),
}

/// Parses the command line and runs the command; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let globals = crate::config::GlobalArgs {
        log_format: cli.log_format,
        sled_cache_mib: cli.sled_cache_mib,
    };
    let result = match cli.command {
        Command::Serve(args) => serve::serve(&args, &globals),
        // No logging: the report is the output.
        Command::Config {
            what: ConfigCommand::Check(args),
        } => Ok(crate::config::check::run(&args, &globals)),
        command => {
            init_tracing(cli.log_format.unwrap_or_default());
            crate::log::store::set_sled_tuning(crate::log::store::SledTuning {
                cache_mib: cli
                    .sled_cache_mib
                    .unwrap_or(crate::log::store::SLED_CACHE_MIB_DEFAULT),
            });
            run(command)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Logging to stderr, filtered by `RUST_LOG` (default: info, openraft warnings).
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(command: Command) -> CliResult {
    match command {
        Command::Serve(_) | Command::Config { .. } => unreachable!("handled in main"),
        Command::Access { what } => access::run_access(what),
        Command::Keys { what } => access::run_keys(what),
        Command::Verify {
            data_dir,
            checkpoint,
            key,
            handovers,
        } => {
            let chain = store::verify(&data_dir)?;
            match checkpoint {
                None => Ok(chain),
                Some(cp) => audit::verify_checkpoint(&data_dir, &cp, key.as_deref(), &handovers, chain),
            }
        }
        Command::CopyStore { from, to } => store::copy_store(&from, &to),
        Command::MigrateStore { from, to } => store::migrate_store(&from, &to),
        Command::Cluster { what } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(cluster::run(what)).map(|()| ExitCode::SUCCESS)
        }
        Command::Audit { what } => audit::run_audit(what),
        Command::Export(args) => audit::run_export(args),
        Command::LoadTest(args) => Ok(crate::loadtest::run_cli(args)?),
        Command::Health(args) => Ok(health::run(args)),
        Command::Backup(args) => Ok(crate::backup::run_backup(args)),
        Command::Restore(args) => Ok(crate::backup::run_restore(args)),
        Command::Stats(args) => stats::stats(&args).map(|()| ExitCode::SUCCESS),
        Command::Publish(args) => release::publish(&args),
        Command::Policy(args) => policy::run(&args),
        Command::Release { what } => release::run(&what),
        Command::RebuildProjections(args) => stats::rebuild(&args)
            .and_then(|()| worklists::rebuild(&args.data_dir))
            .map(|()| ExitCode::SUCCESS),
        Command::Simulate(args) => simulate::run(args),
        Command::Bench { what } => bench::run(what),
    }
}
