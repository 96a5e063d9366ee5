//! The `registry` command: a thin CLI over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

/// sled and the decode paths allocate per record; mimalloc is markedly faster
/// than glibc malloc there (measured: see the closing notes / BENCHMARKS).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod health_cli;

use registry::config::LogFormat;
use registry::hex::encode as hex;
use registry::log::verify::{verify_full, VerifyError};
use registry::log::{Store, SyncMode};
use registry::progress::Progress;

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
    Serve(registry::config::ServeArgs),
    /// The configuration of `serve`.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Who may call: bearer tokens and client-certificate principals (the access file).
    Access {
        #[command(subcommand)]
        what: registry::auth::cli::AccessCommand,
    },
    /// Master keys: generate, rotate (re-wrap every person key) on a stopped store.
    Keys {
        #[command(subcommand)]
        what: registry::auth::cli::KeysCommand,
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
        what: registry::cluster::cli::ClusterCommand,
    },
    /// Auditors: checkpoints, receipts, offline verification (docs/AUDIT.md).
    Audit {
        #[command(subcommand)]
        what: registry::audit::cli::AuditCommand,
    },
    /// Write a binary export of the log (format in docs/AUDIT.md).
    Export(registry::audit::cli::ExportArgs),
    /// Write a deterministic synthetic caseload through the case service
    /// (`--data-dir`), or send it to a running server through gRPC
    /// (`--target`); counts only on output.
    Simulate {
        /// Number of persons (cases).
        #[arg(long)]
        persons: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Direct mode: the store to write (service stopped).
        #[arg(long, required_unless_present = "target", conflicts_with = "target")]
        data_dir: Option<PathBuf>,
        /// Direct mode: worker threads; each runs one person's case start to finish [default: 8].
        #[arg(long)]
        threads: Option<usize>,
        /// Direct mode: durability of appends [default: flush].
        #[arg(long, value_enum)]
        sync: Option<SyncMode>,
        /// Direct mode: master key file (as for `serve`).
        #[arg(long)]
        master_key_file: Option<PathBuf>,
        /// Also write the report as JSON to this file (direct mode: the tally;
        /// target mode: the run's counts, rejections, statistics check and tally).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Target mode: the server, `http://host:port` (a cluster: its nodes,
        /// comma-separated; calls follow the leader). Persons are sent by
        /// concurrent clients, one Caseworker RPC per command (or, with
        /// `--import`, one history per person on Import streams); at the end
        /// the server's statistics are compared with the generator's tally.
        #[arg(long)]
        target: Option<String>,
        /// Target mode: concurrent clients [default: 64].
        #[arg(long)]
        clients: Option<usize>,
        /// Target mode: HTTP/2 connections the clients share, at most --clients [default: 4].
        #[arg(long)]
        connections: Option<usize>,
        /// Target mode: bearer token file (default: $REGISTRY_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Target mode: token file for the Statistics check (default: --token-file).
        #[arg(long)]
        stats_token_file: Option<PathBuf>,
        /// Target mode: send each person's plan as one history on Import.ImportCases streams.
        #[arg(long)]
        import: bool,
        /// Target mode: seconds to wait for the statistics to reach the run's last log position [default: 600].
        #[arg(long)]
        stats_timeout: Option<u64>,
    },
    /// Ask a running server's gRPC health service about one service: exit 0
    /// only when it is SERVING (container health checks, exec probes).
    Health(health_cli::HealthArgs),
    /// Online backup of a running server (Admin/Backup) into a backup
    /// directory: a full generation first, then incremental ones; everything
    /// received is verified against the server's signed checkpoint (docs/BACKUP.md).
    Backup(registry::backup::BackupArgs),
    /// Verify a backup directory and rebuild a store from it (or, with
    /// --check, only verify it): refuses a backup whose files, chain, roots
    /// or checkpoint signatures do not verify, naming what is wrong.
    Restore(registry::backup::RestoreArgs),
    /// A mixed workload against a running server: throughput, latency percentiles, gRPC codes.
    LoadTest(registry::loadtest::LoadTestArgs),
    /// Statistics: the caseload, a series, the funnel, certifications or
    /// permits expiring, from a stopped store or a running server, as text,
    /// CSV with a Table Schema, or JSON (docs/STATISTICS.md).
    Stats(registry::projection::cli::StatsArgs),
    /// A statistics release for the regional exchange: the published tables
    /// in SDMX-CSV 2.0 with their structures, the codebook and a manifest
    /// signed with the audit key, at one signed checkpoint (docs/RELEASES.md).
    Publish(registry::release::cli::PublishArgs),
    /// The legal instruments in the log (Policy service): list them, record
    /// one from a JSON file (alias: import), or preview what one would change.
    Policy(registry::policy_cli::PolicyArgs),
    /// Statistics releases: verify one, combine several into regional totals.
    Release {
        #[command(subcommand)]
        what: registry::release::cli::ReleaseCommand,
    },
    /// Drop the statistics and worklist projections and rebuild them from the empty state.
    RebuildProjections(registry::projection::cli::RebuildArgs),
    /// Measurements (figures, not tests).
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load the settings of `serve` as it would (same file, variables and
    /// flags) and check everything it would refuse at start, without starting
    /// anything: print every setting with its source (default, file, env,
    /// flag; paths only, no secret), warnings and errors. Exit 0 if valid, 1
    /// if not.
    Check(registry::config::check::CheckArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Merkle tree: append cost, proof generation, offline export verification.
    Audit(registry::audit::cli::BenchAuditArgs),
    /// Statistics projection: rebuild rate, query latency, memory.
    Stats(registry::projection::cli::BenchStatsArgs),
    /// Worklist projection: build rate, list sizes, page latency with and without filters.
    Worklists(registry::worklist::cli::BenchWorklistsArgs),
    /// sled key layouts of the log side by side: events/s, ratio to raw, disk, RSS, p99 commit.
    Layouts(registry::bench_layouts::BenchLayoutsArgs),
    /// A cluster snapshot of a stopped store: build, verify, install into an empty store, vs. a raw scan.
    Snapshot {
        #[arg(long)]
        data_dir: PathBuf,
        /// Scratch directory (deleted and recreated): the snapshot file and the installed store.
        #[arg(long, default_value = "./bench-snapshot")]
        scratch: PathBuf,
    },
    /// A stopped store's full verification vs. one sequential scan + BLAKE3 of the same records.
    Verify {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Durable appends through the writer vs. the raw sled batch limit; verification vs. raw scan.
    Log {
        /// Scratch directory (deleted and recreated).
        #[arg(long, default_value = "./bench-data")]
        dir: PathBuf,
        #[arg(long, default_value_t = 300)]
        payload_bytes: usize,
        /// Seconds per concurrency level.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrency levels.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        appenders: Vec<usize>,
        #[arg(long, value_enum, default_value_t = SyncMode::Fdatasync)]
        sync: SyncMode,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let globals = registry::config::GlobalArgs {
        log_format: cli.log_format,
        sled_cache_mib: cli.sled_cache_mib,
    };
    let result = match cli.command {
        Command::Serve(args) => serve(&args, &globals),
        // No logging: the report is the output.
        Command::Config {
            what: ConfigCommand::Check(args),
        } => Ok(registry::config::check::run(&args, &globals)),
        command => {
            init_tracing(cli.log_format.unwrap_or_default());
            registry::log::store::set_sled_tuning(registry::log::store::SledTuning {
                cache_mib: cli
                    .sled_cache_mib
                    .unwrap_or(registry::log::store::SLED_CACHE_MIB_DEFAULT),
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

/// `registry serve`: the layered settings, checked as `registry config
/// check` checks them, then the service until SIGINT/SIGTERM.
fn serve(
    args: &registry::config::ServeArgs,
    globals: &registry::config::GlobalArgs,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let loaded = registry::config::load(args, globals)?;
    init_tracing(loaded.settings.log_format);
    registry::log::store::set_sled_tuning(registry::log::store::SledTuning {
        cache_mib: loaded.settings.sled_cache_mib,
    });
    if let Some((path, _)) = &loaded.file {
        tracing::info!(config_file = %path.display(), "settings from the config file, REGISTRY_* variables and flags");
    }
    for name in &loaded.ignored_env {
        tracing::warn!(variable = %name, "set, but not a configuration key: ignored");
    }
    let report = registry::config::check::check_before_start(&loaded);
    if let Some(refusal) = report.refusal() {
        return Err(refusal.into());
    }
    let config = loaded.serve_config();
    // sled reads run on the blocking pool; they are short and mostly
    // CPU-bound, so a few dozen threads suffice: the cap keeps a burst
    // of requests from growing the pool (and its memory) to hundreds.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(registry::limits::BLOCKING_THREADS_MAX)
        .build()?;
    runtime.block_on(registry::server::serve(config))?;
    Ok(ExitCode::SUCCESS)
}

fn run(command: Command) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        Command::Serve(_) | Command::Config { .. } => unreachable!("handled in main"),
        Command::Access { what } => registry::auth::cli::run_access(what),
        Command::Keys { what } => registry::auth::cli::run_keys(what),
        Command::Verify {
            data_dir,
            checkpoint,
            key,
            handovers,
        } => {
            let chain = verify(&data_dir)?;
            match checkpoint {
                None => Ok(chain),
                Some(cp) => {
                    registry::audit::cli::verify_checkpoint(&data_dir, &cp, key.as_deref(), &handovers, chain)
                }
            }
        }
        Command::CopyStore { from, to } => copy_store(&from, &to),
        Command::MigrateStore { from, to } => migrate_store(&from, &to),
        Command::Cluster { what } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(registry::cluster::cli::run(what))
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Audit { what } => registry::audit::cli::run_audit(what),
        Command::Export(args) => registry::audit::cli::run_export(args),
        Command::Bench {
            what: BenchCommand::Audit(args),
        } => registry::audit::cli::run_bench(args),
        Command::LoadTest(args) => registry::loadtest::run_cli(args),
        Command::Health(args) => Ok(health_cli::run(args)),
        Command::Backup(args) => Ok(registry::backup::run_backup(args)),
        Command::Restore(args) => Ok(registry::backup::run_restore(args)),
        Command::Stats(args) => registry::projection::cli::stats(&args).map(|()| ExitCode::SUCCESS),
        Command::Publish(args) => registry::release::cli::publish(&args),
        Command::Policy(args) => registry::policy_cli::run(&args),
        Command::Release { what } => registry::release::cli::run(&what),
        Command::RebuildProjections(args) => registry::projection::cli::rebuild(&args)
            .and_then(|()| registry::worklist::cli::rebuild(&args.data_dir))
            .map(|()| ExitCode::SUCCESS),
        Command::Bench {
            what: BenchCommand::Snapshot { data_dir, scratch },
        } => registry::cluster::bench::run(&data_dir, &scratch).map(|()| ExitCode::SUCCESS),
        Command::Bench {
            what: BenchCommand::Verify { data_dir },
        } => registry::bench::run_verify_bench(&data_dir).map(|()| ExitCode::SUCCESS),
        Command::Bench {
            what: BenchCommand::Stats(args),
        } => registry::projection::cli::bench(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench {
            what: BenchCommand::Worklists(args),
        } => registry::worklist::cli::bench(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench {
            what: BenchCommand::Layouts(args),
        } => registry::bench_layouts::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Simulate {
            persons,
            seed,
            data_dir,
            threads,
            sync,
            master_key_file,
            json,
            target,
            clients,
            connections,
            token_file,
            stats_token_file,
            import,
            stats_timeout,
        } => {
            if let Some(target) = target {
                let direct_only = [
                    ("--threads", threads.is_some()),
                    ("--sync", sync.is_some()),
                    ("--master-key-file", master_key_file.is_some()),
                ];
                if let Some((flag, _)) = direct_only.iter().find(|(_, given)| *given) {
                    return Err(format!("{flag} applies to --data-dir only").into());
                }
                let clients = clients.unwrap_or(registry::simulate::remote::DEFAULT_CLIENTS);
                let connections = connections.unwrap_or(registry::simulate::remote::DEFAULT_CONNECTIONS);
                let stats_timeout = stats_timeout.unwrap_or(600);
                let client = registry::client::ClientOptions::new(&target, token_file.as_deref())?;
                let stats_client = match &stats_token_file {
                    Some(path) => registry::client::ClientOptions::new(&target, Some(path))?,
                    None => client.clone(),
                };
                let options = registry::simulate::remote::RemoteOptions {
                    stats_client,
                    clients,
                    connections: connections.min(clients),
                    import,
                    stats_timeout: Duration::from_secs(stats_timeout),
                    progress: true,
                    ..registry::simulate::remote::RemoteOptions::new(persons, seed, client)
                };
                let runtime = tokio::runtime::Runtime::new()?;
                let report = runtime.block_on(registry::simulate::remote::run_remote(&options))?;
                print!("{}", report.summary());
                if let Some(path) = json {
                    report.write_json(&path)?;
                }
                return Ok(if report.clean() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            let target_only = [
                ("--clients", clients.is_some()),
                ("--connections", connections.is_some()),
                ("--token-file", token_file.is_some()),
                ("--stats-token-file", stats_token_file.is_some()),
                ("--import", import),
                ("--stats-timeout", stats_timeout.is_some()),
            ];
            if let Some((flag, _)) = target_only.iter().find(|(_, given)| *given) {
                return Err(format!("{flag} applies to --target only").into());
            }
            let data_dir = data_dir.ok_or("--data-dir or --target is required")?;
            let report = registry::simulate::run(&registry::simulate::SimulateOptions {
                threads: threads.unwrap_or(registry::simulate::DEFAULT_THREADS),
                sync: sync.unwrap_or(SyncMode::Flush),
                master_key_file,
                progress: true,
                ..registry::simulate::SimulateOptions::new(persons, seed, data_dir)
            })?;
            print!("{}", report.summary());
            if let Some(path) = json {
                report.write_json(&path)?;
            }
            let clean = report.tally.rejected == 0 && report.tally.status_mismatches == 0;
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Bench {
            what:
                BenchCommand::Log {
                    dir,
                    payload_bytes,
                    seconds,
                    appenders,
                    sync,
                },
        } => {
            let _ = std::fs::remove_dir_all(&dir);
            registry::bench::run_log_bench(&registry::bench::LogBenchOptions {
                dir: dir.clone(),
                payload_bytes,
                duration: Duration::from_secs(seconds),
                appenders,
                sync,
            })?;
            let _ = std::fs::remove_dir_all(&dir);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn migrate_store(from: &Path, to: &Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template(
        "migrating: {pos} records {per_sec}",
    )?);
    let progress = Progress::new(bar, "migrate-store records");
    let result = registry::log::migrate::migrate_store(from, to, &mut |n| progress.bar().set_position(n));
    drop(progress);
    match result {
        Ok(report) => {
            println!(
                "migrated {} records into {} chunks and {} case files, {} other trees ({} entries), {} other files in {:.1}s; head seq {} hash {}; next: registry verify --data-dir {}",
                report.head.seq,
                report.chunks,
                report.case_files,
                report.trees,
                report.tree_entries,
                report.files,
                report.elapsed.as_secs_f64(),
                report.head.seq,
                hex(&report.head.hash),
                to.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(registry::log::migrate::MigrateError::Broken(b)) => {
            println!("{b}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

fn copy_store(from: &Path, to: &Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template(
        "copying {pos} entries {per_sec}",
    )?);
    let progress = Progress::new(bar, "copy-store entries");
    let report = registry::log::store::copy_store(from, to, &mut |n| progress.bar().set_position(n))?;
    drop(progress);
    println!(
        "copied {} trees, {} entries, {} other files in {:.1}s (reopening the copy: {:.1}s); digest {} read from the source and again from the copy; next: registry verify --data-dir {}",
        report.trees,
        report.entries,
        report.files,
        started.elapsed().as_secs_f64(),
        report.reopen.as_secs_f64(),
        hex(&report.digest),
        to.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(data_dir: &Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if !data_dir.join("db").exists() {
        return Err(format!("no store in {}", data_dir.display()).into());
    }
    let store = Store::open(data_dir)?;
    let total = store.head()?.seq;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:8} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")?
            .progress_chars("=> "),
    );
    let progress = Progress::new(bar, "verify");
    let started = Instant::now();
    let result = verify_full(&store, &mut |phase, n| {
        progress.bar().set_message(phase.to_string());
        progress.bar().set_position(n);
    });
    drop(progress);
    match result {
        Ok((chain, index)) => {
            let rate = chain.events as f64 / chain.elapsed.as_secs_f64().max(1e-9);
            println!(
                "ok: {} events, head seq {} hash {}, chain {:.0} events/s, case files checked ({} case files, {} stream entries, {} requests) in {:.2}s, total {:.2}s",
                chain.events,
                chain.head.seq,
                hex(&chain.head.hash),
                rate,
                index.case_files,
                index.stream_entries,
                index.request_entries,
                index.elapsed.as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Broken(b)) => {
            println!("{b}");
            Ok(ExitCode::from(1))
        }
        Err(VerifyError::Store(e)) => Err(e.into()),
    }
}
