//! `registry bench`: measurements (figures, not tests).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::{CliResult, SyncArg};

/// What `registry bench` measures (one subcommand per measurement).
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Merkle tree: append cost, proof generation, offline export verification.
    Audit(super::audit::BenchAuditArgs),
    /// Statistics projection: rebuild rate, query latency, memory.
    Stats(super::stats::BenchStatsArgs),
    /// Worklist projection: build rate, list sizes, page latency with and without filters.
    Worklists(super::worklists::BenchWorklistsArgs),
    /// sled key layouts of the log side by side: events/s, ratio to raw, disk, RSS, p99 commit.
    Layouts(crate::bench_layouts::BenchLayoutsArgs),
    /// A cluster snapshot of a stopped store: build, verify, install into an empty store, vs. a raw scan.
    Snapshot {
        /// The stopped store to snapshot (gains its Merkle tree and an audit key if missing).
        #[arg(long)]
        data_dir: PathBuf,
        /// Scratch directory (deleted and recreated): the snapshot file and the installed store.
        #[arg(long, default_value = "./bench-snapshot")]
        scratch: PathBuf,
    },
    /// A stopped store's full verification vs. one sequential scan + BLAKE3 of the same records.
    Verify {
        /// The stopped store to scan and verify (read only).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Durable appends through the writer vs. the raw sled batch limit; verification vs. raw scan.
    Log {
        /// Scratch directory (deleted and recreated).
        #[arg(long, default_value = "./bench-data")]
        dir: PathBuf,
        /// Payload bytes per appended event.
        #[arg(long, default_value_t = 300)]
        payload_bytes: usize,
        /// Seconds per concurrency level.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrency levels.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        appenders: Vec<usize>,
        /// Durability of each commit, for the writer and the raw limit alike.
        #[arg(long, value_enum, default_value_t = SyncArg::Fdatasync)]
        sync: SyncArg,
    },
}

/// Runs `registry bench …`.
pub fn run(command: BenchCommand) -> CliResult {
    match command {
        BenchCommand::Audit(args) => super::audit::run_bench(args),
        BenchCommand::Snapshot { data_dir, scratch } => {
            crate::cluster::bench::run(&data_dir, &scratch)?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Verify { data_dir } => {
            crate::bench::run_verify_bench(&data_dir).map(|()| ExitCode::SUCCESS)
        }
        BenchCommand::Stats(args) => super::stats::bench(&args).map(|()| ExitCode::SUCCESS),
        BenchCommand::Worklists(args) => super::worklists::bench(&args).map(|()| ExitCode::SUCCESS),
        BenchCommand::Layouts(args) => {
            crate::bench_layouts::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Log {
            dir,
            payload_bytes,
            seconds,
            appenders,
            sync,
        } => {
            let _ = std::fs::remove_dir_all(&dir);
            crate::bench::run_log_bench(&crate::bench::LogBenchOptions {
                dir: dir.clone(),
                payload_bytes,
                duration: Duration::from_secs(seconds),
                appenders,
                sync: sync.into(),
            })?;
            let _ = std::fs::remove_dir_all(&dir);
            Ok(ExitCode::SUCCESS)
        }
    }
}
