//! `registry publish`, `registry release verify`, `registry release combine`:
//! the clap arguments and handlers.

use super::BoxError;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::api::pb;
use crate::audit::checkpoint::Verifier;
use crate::projection::SuppressionRules;
use crate::release::verify::{verify_dir, Verified, VerifyError};
use crate::release::{Release, NOTE};

/// `registry publish`: a statistics release from a running server (its
/// Statistics.Release RPC, a statistician's token) or a stopped store and
/// its audit key, written into a new directory.
#[derive(Clone, Debug, clap::Args)]
pub struct PublishArgs {
    /// A running server, `http://host:port` or `https://host:port`.
    #[arg(long, required_unless_present = "data_dir", conflicts_with = "data_dir")]
    pub target: Option<String>,
    /// A stopped store: the release is built and signed here, with its audit key.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: the audit signing key (default DATA_DIR/audit-signing.key).
    #[arg(long, requires = "data_dir")]
    pub audit_key_file: Option<PathBuf>,
    /// With --target: the token and TLS settings.
    #[command(flatten)]
    pub remote: super::stats::RemoteArgs,
    /// Build the release at this log position: the tree size of a signed
    /// checkpoint (default: the latest checkpoint). The same seq always
    /// gives the same bytes.
    #[arg(long)]
    pub as_of_seq: Option<u64>,
    /// The directory to write (must not exist, or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Verify what was written with this verifier key (vkey or a file holding it).
    #[arg(long)]
    pub key: Option<String>,
}

/// `registry release ...`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ReleaseCommand {
    /// Verify a release directory: signature, manifest, checkpoint, every
    /// file's size and BLAKE3, no file missing or added, the tables against
    /// their structures, thresholds, identities and the disclosure rule.
    Verify {
        /// The release directory.
        dir: PathBuf,
        /// The registry's verifier key (vkey or a file holding it), obtained out of band.
        #[arg(long)]
        key: String,
    },
    /// Verify several releases (one per registry) and write regional totals
    /// by status, citing each source.
    Combine {
        /// The release directories, one per registry.
        #[arg(required = true, num_args = 1..)]
        dirs: Vec<PathBuf>,
        /// Trusted verifier keys (vkey or file), repeatable; each release is
        /// verified with the key named as its origin.
        #[arg(long)]
        key: Vec<String>,
        /// A file of trusted vkeys, one a line (blank lines and lines starting with # skipped).
        #[arg(long)]
        keys: Option<PathBuf>,
        /// The directory to write (must not exist, or be empty).
        #[arg(long)]
        out: PathBuf,
    },
}

/// How long to keep trying to connect.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Runs `registry publish`.
pub fn publish(args: &PublishArgs) -> Result<ExitCode, BoxError> {
    if args.as_of_seq == Some(0) {
        return Err("--as-of-seq: must be at least 1 (the size of a signed checkpoint)".into());
    }
    let release = match (&args.target, &args.data_dir) {
        (Some(target), _) => {
            let options = args.remote.options(target)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(fetch(&options, args.as_of_seq))?
        }
        (None, Some(dir)) => offline(dir, args.audit_key_file.as_ref(), args.as_of_seq)?,
        (None, None) => return Err("--target or --data-dir: one is required".into()),
    };
    crate::release::write_dir(&release, &args.out)?;
    println!(
        "wrote release at seq {} ({} files) into {}",
        release.seq,
        release.files.len(),
        args.out.display()
    );
    if let Some(key) = &args.key {
        return verify_cli(&args.out, key);
    }
    Ok(ExitCode::SUCCESS)
}

async fn fetch(options: &crate::client::ClientOptions, as_of_seq: Option<u64>) -> Result<Release, BoxError> {
    let channel = crate::client::connect(options, CONNECT_WAIT).await?;
    let mut client = pb::statistics_client::StatisticsClient::new(channel)
        .max_decoding_message_size(crate::limits::GRPC_RESPONSE_BYTES_MAX);
    let r = client
        .release(pb::ReleaseRequest {
            as_of_seq: as_of_seq.unwrap_or(0),
        })
        .await
        .map_err(|s| {
            format!(
                "Statistics/Release at {}: {:?}: {}",
                options.target,
                s.code(),
                s.message()
            )
        })?
        .into_inner();
    Ok(Release {
        seq: r.seq,
        files: r.files.into_iter().map(|f| (f.name, f.content)).collect(),
    })
}

fn offline(dir: &Path, key_file: Option<&PathBuf>, as_of_seq: Option<u64>) -> Result<Release, BoxError> {
    if !dir.join("db").exists() {
        return Err(format!("--data-dir: no store in {}", dir.display()).into());
    }
    let key = key_file
        .cloned()
        .unwrap_or_else(|| dir.join(crate::audit::checkpoint::KEY_FILE_NAME));
    if !key.is_file() {
        return Err(format!(
            "--audit-key-file: {} does not exist: the release is signed with the store's audit signing key",
            key.display()
        )
        .into());
    }
    let store = crate::log::Store::open(dir)?;
    let config = crate::audit::AuditConfig {
        key_file: key_file.cloned(),
        ..Default::default()
    };
    let audit = crate::audit::Audit::open(&store, &config, false)?;
    Ok(crate::release::build(
        &audit,
        as_of_seq,
        &SuppressionRules::default(),
    )?)
}

/// A `--key` that is not a verifier key (inline or in a file).
#[derive(Debug, thiserror::Error)]
#[error("--key: {0}")]
struct KeyArgError(#[source] super::audit::AuditCliError);

fn load_key(key: &str) -> Result<Verifier, KeyArgError> {
    super::audit::load_verifier(key).map_err(KeyArgError)
}

fn verify_cli(dir: &Path, key: &str) -> Result<ExitCode, BoxError> {
    let key = load_key(key)?;
    match verify_dir(dir, &key) {
        Ok(v) => {
            let cells: usize = v.tables.iter().map(|t| t.rows.len()).sum();
            let hidden: usize = v
                .tables
                .iter()
                .map(|t| t.rows.iter().filter(|r| r.value.is_none()).count())
                .sum();
            println!(
                "release OK: origin {}, seq {}, reference date {}, {} files, {} tables, {} cells ({} suppressed), {} identities hold",
                v.origin,
                v.seq,
                v.reference_date,
                v.files,
                v.tables.len(),
                cells,
                hidden,
                v.identities
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("release REJECTED: {}: {e}", dir.display());
            Ok(ExitCode::from(1))
        }
    }
}

/// Runs `registry release ...`.
pub fn run(command: &ReleaseCommand) -> Result<ExitCode, BoxError> {
    match command {
        ReleaseCommand::Verify { dir, key } => verify_cli(dir, key),
        ReleaseCommand::Combine { dirs, key, keys, out } => {
            let mut trusted = Vec::new();
            for k in key {
                trusted.push(load_key(k)?);
            }
            if let Some(path) = keys {
                let text =
                    std::fs::read_to_string(path).map_err(|e| format!("--keys {}: {e}", path.display()))?;
                for (i, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    trusted.push(
                        Verifier::parse(line)
                            .map_err(|e| format!("--keys {} line {}: {e}", path.display(), i + 1))?,
                    );
                }
            }
            if trusted.is_empty() {
                return Err("--key or --keys: the verifier keys of the sources are required".into());
            }
            let mut sources: Vec<Verified> = Vec::new();
            for dir in dirs {
                match verify_source(dir, &trusted) {
                    Ok(v) => sources.push(v),
                    Err(e) => {
                        eprintln!("release REJECTED: {}: {e}", dir.display());
                        return Ok(ExitCode::from(1));
                    }
                }
            }
            let files = crate::release::combine::files(&sources)?;
            crate::release::write_dir(
                &Release {
                    seq: 0,
                    files: files.clone(),
                },
                out,
            )?;
            for s in &sources {
                println!("source {} at seq {}: verified", s.origin, s.seq);
            }
            println!("wrote {} files into {}", files.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Why a source of `release combine` is rejected.
#[derive(Debug, thiserror::Error)]
enum SourceError {
    /// The release note cannot be read.
    #[error("{NOTE}: {0}")]
    ReadNote(#[source] std::io::Error),
    /// No trusted key is named as the note's origin (shown).
    #[error("{NOTE}: no trusted key is named {0:?}")]
    NoTrustedKey(String),
    /// The release does not verify with that key.
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

/// Verifies a source with the trusted key named as the release note's
/// origin (the note's first line).
fn verify_source(dir: &Path, trusted: &[Verifier]) -> Result<Verified, SourceError> {
    let note = std::fs::read_to_string(dir.join(NOTE)).map_err(SourceError::ReadNote)?;
    let origin = note.lines().next().unwrap_or_default();
    let key = trusted
        .iter()
        .find(|k| k.name == origin)
        .ok_or_else(|| SourceError::NoTrustedKey(origin.to_string()))?;
    Ok(verify_dir(dir, key)?)
}
