//! Online backup and verified restore (docs/BACKUP.md).
//!
//! - [`service`]: the server side of `Admin/Backup`, a consistent snapshot
//!   streamed while serving (the log up to a freshly signed checkpoint, the
//!   person-key entries, the access file).
//! - [`client`]: `registry backup`, which checks what it receives and
//!   writes it as the next generation of a backup directory.
//! - [`restore`]: `registry restore`, which verifies a backup directory and
//!   rebuilds a store from it.
//! - [`format`](mod@format): the directory, the manifest and the keys file.

pub mod client;
pub mod format;
pub mod restore;
pub mod service;

use std::path::PathBuf;
use std::process::ExitCode;

/// `registry backup`
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The running server: `http://host:port`, or `https://host:port` (then --tls-ca).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub target: String,
    /// The backup directory: created if missing; each run adds a generation
    /// (the first is full, the next ones hold only what follows).
    #[arg(long)]
    pub out: PathBuf,
    /// File holding the admin's bearer token (default: $REGISTRY_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// File holding the audit verifier key (vkey) the server's checkpoint must
    /// verify with, as auditors publish it. Without it, the first generation
    /// trusts the key the server sends and later ones the first one's.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// TLS settings for reaching the server.
    #[command(flatten)]
    pub tls: crate::client::TlsArgs,
}

/// `registry restore`
#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup directory (written by `registry backup`).
    #[arg(long)]
    pub from: PathBuf,
    /// The new data directory (must not exist or be empty). Without it
    /// (--check), the backup is only verified.
    #[arg(long, required_unless_present = "check")]
    pub to: Option<PathBuf>,
    /// Only verify the backup; write nothing.
    #[arg(long, conflicts_with = "to")]
    pub check: bool,
    /// File holding the audit verifier key (vkey) the backup's checkpoints must verify with.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The master key that wrapped the backup's person keys (default:
    /// $REGISTRY_MASTER_KEY). Needed to rebuild the document index; never in a backup.
    #[arg(long)]
    pub master_key_file: Option<PathBuf>,
}

/// Why `registry backup` or `registry restore` failed.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    /// The file of `--key` cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The client's token or TLS settings.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// The async runtime does not start.
    #[error(transparent)]
    Runtime(std::io::Error),
    /// The backup failed.
    #[error(transparent)]
    Backup(#[from] client::BackupClientError),
    /// The master key does not load.
    #[error("master key: {0}")]
    MasterKey(#[source] crate::pii::PiiError),
    /// A restore into a directory without a master key.
    #[error(
        "name the master key with --master-key-file or {}: a backup never holds it",
        crate::server::MASTER_KEY_ENV
    )]
    NoMasterKey,
    /// The backup does not verify, or the restore failed.
    #[error(transparent)]
    Restore(#[from] format::BackupError),
}

fn read_key(path: &Option<PathBuf>) -> Result<Option<String>, CommandError> {
    path.as_ref()
        .map(|p| {
            std::fs::read_to_string(p).map_err(|source| CommandError::ReadKey {
                path: p.clone(),
                source,
            })
        })
        .transpose()
}

/// Runs `registry backup`.
pub fn run_backup(args: BackupArgs) -> ExitCode {
    let result = (|| -> Result<client::BackupReport, CommandError> {
        let pinned = read_key(&args.key)?;
        let mut options = crate::client::ClientOptions::new(&args.target, args.token_file.as_deref())?;
        options.tls = args.tls.for_target(&args.target)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(CommandError::Runtime)?;
        Ok(runtime.block_on(client::backup(&options, &args.out, pinned.as_deref()))?)
    })();
    match result {
        Ok(r) if r.up_to_date => {
            println!(
                "up to date: generation {} already holds every record up to the server's checkpoint (seq {}); nothing written",
                r.generation, r.last_seq
            );
            ExitCode::SUCCESS
        }
        Ok(r) => {
            println!(
                "ok: generation {} ({:?}) seq {}..={}: {} records, {} key entries, {} bytes in {:.2}s ({:.0} records/s)",
                r.generation,
                r.kind,
                r.first_seq,
                r.last_seq,
                r.records,
                r.keys,
                r.bytes,
                r.elapsed.as_secs_f64(),
                r.records as f64 / r.elapsed.as_secs_f64().max(1e-9)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: backup failed, no generation written: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs `registry restore`.
pub fn run_restore(args: RestoreArgs) -> ExitCode {
    let result = (|| -> Result<restore::RestoreReport, CommandError> {
        let pinned = read_key(&args.key)?;
        let mut last = std::time::Instant::now();
        let mut progress = |phase: &str, n: u64| {
            if last.elapsed().as_secs() >= 5 {
                eprintln!("restore: {phase} {n}");
                last = std::time::Instant::now();
            }
        };
        let target = match &args.to {
            None => None,
            Some(dir) => {
                let master = match &args.master_key_file {
                    Some(path) => crate::pii::MasterKey::load(path).map_err(CommandError::MasterKey)?,
                    None if std::env::var_os(crate::server::MASTER_KEY_ENV).is_some() => {
                        crate::pii::MasterKey::from_env(crate::server::MASTER_KEY_ENV)
                            .map_err(CommandError::MasterKey)?
                    }
                    None => return Err(CommandError::NoMasterKey),
                };
                Some(restore::RestoreTarget { dir, master })
            }
        };
        Ok(restore::restore(
            &args.from,
            target,
            pinned.as_deref(),
            &mut progress,
        )?)
    })();
    match result {
        Ok(r) => {
            let head = r.head.unwrap_or(crate::log::Head::EMPTY);
            if args.check {
                println!(
                    "ok: the backup verifies: {} generations, {} records (head seq {} hash {}), {} key entries, \
                     every checkpoint signed and matching",
                    r.generations,
                    r.records,
                    head.seq,
                    crate::hex::encode(&head.hash),
                    r.keys
                );
            } else {
                println!(
                    "ok: restored {} generations into {}: {} records (head seq {} hash {}), {} case files, \
                     {} key entries ({} unused keys left out), {} documents indexed; verified against the last \
                     checkpoint; {:.2}s (verify+load log {:.2}s, keys {:.2}s, derived {:.2}s: {})",
                    r.generations,
                    args.to.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                    r.records,
                    head.seq,
                    crate::hex::encode(&head.hash),
                    r.case_files,
                    r.keys,
                    r.keys_dropped,
                    r.documents,
                    r.elapsed.as_secs_f64(),
                    r.verify.as_secs_f64(),
                    r.load.as_secs_f64(),
                    r.derive.as_secs_f64(),
                    r.derived
                        .iter()
                        .map(|(name, t)| format!("{name} {:.2}s", t.as_secs_f64()))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                println!("checkpoint:\n{}", r.checkpoint.trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
