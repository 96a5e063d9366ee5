//! `registry simulate`: the deterministic synthetic caseload, written through
//! the case service into a stopped store (`--data-dir`) or sent to a running
//! server (`--target`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::{CliResult, SyncArg};
use crate::log::SyncMode;

/// The flags of `registry simulate` (the subcommand's help is that of the
/// `Simulate` variant in `cli/mod.rs`, which overrides this comment).
#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Number of persons (cases).
    #[arg(long)]
    pub persons: u64,
    /// Seed of the caseload: the same seed and persons give the same
    /// caseload and the same request ids, so a rerun is answered as a retry.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Direct mode: the store to write (service stopped).
    #[arg(long, required_unless_present = "target", conflicts_with = "target")]
    pub data_dir: Option<PathBuf>,
    /// Direct mode: worker threads; each runs one person's case start to finish [default: 8].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Direct mode: durability of appends [default: flush].
    #[arg(long, value_enum)]
    pub sync: Option<SyncArg>,
    /// Direct mode: master key file (as for `serve`).
    #[arg(long)]
    pub master_key_file: Option<PathBuf>,
    /// Also write the report as JSON to this file (direct mode: the tally;
    /// target mode: the run's counts, rejections, statistics check and tally).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Target mode: the server, `http://host:port` (a cluster: its nodes,
    /// comma-separated; calls follow the leader). Persons are sent by
    /// concurrent clients, one Caseworker RPC per command (or, with
    /// `--import`, one history per person on Import streams); at the end
    /// the server's statistics are compared with the generator's tally.
    #[arg(long)]
    pub target: Option<String>,
    /// Target mode: concurrent clients [default: 64].
    #[arg(long)]
    pub clients: Option<usize>,
    /// Target mode: HTTP/2 connections the clients share, at most --clients [default: 4].
    #[arg(long)]
    pub connections: Option<usize>,
    /// Target mode: bearer token file (default: $REGISTRY_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Target mode: token file for the Statistics check (default: --token-file).
    #[arg(long)]
    pub stats_token_file: Option<PathBuf>,
    /// Target mode: send each person's plan as one history on Import.ImportCases streams.
    #[arg(long)]
    pub import: bool,
    /// Target mode: seconds to wait for the statistics to reach the run's last log position [default: 600].
    #[arg(long)]
    pub stats_timeout: Option<u64>,
}

/// Runs `registry simulate`: exit 1 when a command was rejected or a
/// status differs (direct), or when the run or its statistics check was not
/// clean (target).
pub fn run(args: SimulateArgs) -> CliResult {
    let SimulateArgs {
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
    } = args;
    if let Some(target) = target {
        let direct_only = [
            ("--threads", threads.is_some()),
            ("--sync", sync.is_some()),
            ("--master-key-file", master_key_file.is_some()),
        ];
        if let Some((flag, _)) = direct_only.iter().find(|(_, given)| *given) {
            return Err(format!("{flag} applies to --data-dir only").into());
        }
        let clients = clients.unwrap_or(crate::simulate::remote::DEFAULT_CLIENTS);
        let connections = connections.unwrap_or(crate::simulate::remote::DEFAULT_CONNECTIONS);
        let stats_timeout = stats_timeout.unwrap_or(600);
        let client = crate::client::ClientOptions::new(&target, token_file.as_deref())?;
        let stats_client = match &stats_token_file {
            Some(path) => crate::client::ClientOptions::new(&target, Some(path))?,
            None => client.clone(),
        };
        let options = crate::simulate::remote::RemoteOptions {
            stats_client,
            clients,
            connections: connections.min(clients),
            import,
            stats_timeout: Duration::from_secs(stats_timeout),
            progress: true,
            ..crate::simulate::remote::RemoteOptions::new(persons, seed, client)
        };
        let runtime = tokio::runtime::Runtime::new()?;
        let report = runtime.block_on(crate::simulate::remote::run_remote(&options))?;
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
    let report = crate::simulate::run(&crate::simulate::SimulateOptions {
        threads: threads.unwrap_or(crate::simulate::DEFAULT_THREADS),
        sync: sync.map_or(SyncMode::Flush, SyncMode::from),
        master_key_file,
        progress: true,
        ..crate::simulate::SimulateOptions::new(persons, seed, data_dir)
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
