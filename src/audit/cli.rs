//! The audit commands of the `registry` CLI: `registry audit ...`,
//! `registry export`, `registry verify --checkpoint`, `registry bench audit`.
//!
//! Exit codes: 0 verified / done; 1 verification failed (the message says
//! what and where); 2 usage or I/O error (printed by `main`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::checkpoint::{Verifier, KEY_FILE_NAME};
use super::export::{verify_export, write_export, ExportError};
use super::merkle::hex;
use super::receipt::Receipt;
use super::tree::MerkleTree;
use super::verify::check_log_against_checkpoint;
use super::{Audit, AuditConfig, AuditError};
use crate::log::Store;

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// Which signing key and origin (for commands that sign).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KeyArgs {
    /// Audit signing key file. A file given here must exist; without the flag
    /// the key is DATA_DIR/audit-signing.key, created there if it is missing
    /// (a new key cannot sign for checkpoints made with another one).
    #[arg(long)]
    pub audit_key_file: Option<PathBuf>,
    /// Log origin (checkpoint origin line and key name) of a new key; an
    /// existing key must have this name. Default: registry.local/regularization-log.
    #[arg(long)]
    pub origin: Option<String>,
}

impl KeyArgs {
    fn config(&self) -> AuditConfig {
        AuditConfig {
            key_file: self.audit_key_file.clone(),
            origin: self.origin.clone(),
            ..AuditConfig::default()
        }
    }
}

/// `registry audit ...`
#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Print the verifier key (vkey) of the log's signing key (creates the key if missing).
    Key {
        #[arg(long, default_value = "./registry-data")]
        data_dir: PathBuf,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Catch the Merkle tree up with the log and sign a checkpoint for the
    /// current size (service stopped). Prints the signed note.
    Checkpoint {
        #[arg(long, default_value = "./registry-data")]
        data_dir: PathBuf,
        /// Also write the note to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Write the receipt (C2SP tlog-proof) of one event (service stopped).
    Prove {
        #[arg(long, default_value = "./registry-data")]
        data_dir: PathBuf,
        /// The event's sequence number.
        #[arg(long)]
        seq: u64,
        /// Receipt file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Check a receipt offline: signature, inclusion proof, record.
    CheckReceipt {
        file: PathBuf,
        /// Verifier key `<name>+<id>+<base64>`, or a file holding it.
        #[arg(long)]
        key: String,
    },
    /// Verify an export offline against a signed checkpoint.
    VerifyExport {
        file: PathBuf,
        /// Signed checkpoint file.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Verifier key `<name>+<id>+<base64>`, or a file holding it.
        #[arg(long)]
        key: String,
    },
}

/// `registry export`
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[arg(long, default_value = "./registry-data")]
    pub data_dir: PathBuf,
    /// Export file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// First seq (default 1).
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// Last seq (default: the head).
    #[arg(long)]
    pub to: Option<u64>,
}

/// `registry bench audit`
#[derive(clap::Args, Debug)]
pub struct BenchAuditArgs {
    /// Leaves in the synthetic tree.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Scratch directory (deleted and recreated).
    #[arg(long, default_value = "./bench-audit")]
    pub dir: PathBuf,
    /// Proofs sampled for the timing figures.
    #[arg(long, default_value_t = 10_000)]
    pub samples: usize,
    /// An export to verify (default: a synthetic in-memory export of 1M records of ~400 bytes).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Records of the synthetic export.
    #[arg(long, default_value_t = 1_000_000)]
    pub export_records: u64,
    /// Seconds per append measurement (with and without the Merkle follower).
    #[arg(long, default_value_t = 5)]
    pub append_seconds: u64,
}

fn open_store(data_dir: &Path) -> Result<Store, Box<dyn std::error::Error>> {
    if !data_dir.join("db").exists() {
        return Err(format!("no store in {}", data_dir.display()).into());
    }
    Ok(Store::open(data_dir)?)
}

/// Reads a verifier key given inline or as a file.
pub fn load_verifier(key: &str) -> Result<Verifier, Box<dyn std::error::Error>> {
    let path = Path::new(key);
    let text = if path.is_file() {
        std::fs::read_to_string(path)?
    } else {
        key.to_string()
    };
    Ok(Verifier::parse(text.trim())?)
}

/// Opens the store, verifies the tail of the chain (as start-up does) and
/// catches the Merkle tree up. Refuses a broken log.
fn open_audit(data_dir: &Path, keys: &KeyArgs) -> Result<Audit, Box<dyn std::error::Error>> {
    let store = open_store(data_dir)?;
    crate::log::verify::verify_at_startup(&store).map_err(|e| format!("refusing to sign: {e}"))?;
    Ok(Audit::open(&store, &keys.config(), true).map_err(|e: AuditError| e.to_string())?)
}

/// Runs `registry audit ...`.
pub fn run_audit(cmd: AuditCommand) -> CliResult {
    match cmd {
        AuditCommand::Key { data_dir, keys } => {
            let signer = keys.config().load_signer(&data_dir, true)?;
            println!("{}", signer.verifier().vkey());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint { data_dir, out, keys } => {
            let audit = open_audit(&data_dir, &keys)?;
            let cp = audit.checkpointer.checkpoint_now().map_err(|e| e.to_string())?;
            print!("{}", cp.note);
            if let Some(out) = out {
                std::fs::write(out, &cp.note)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prove {
            data_dir,
            seq,
            out,
            keys,
        } => {
            let audit = open_audit(&data_dir, &keys)?;
            if seq == 0 || seq > audit.tree.size() {
                return Err(format!("--seq {seq} is not in the log (1..={})", audit.tree.size()).into());
            }
            let cp = match audit.checkpointer.latest().map_err(|e| e.to_string())? {
                Some(cp) if cp.checkpoint.size >= seq => cp,
                _ => audit.checkpointer.checkpoint_now().map_err(|e| e.to_string())?,
            };
            let receipt =
                super::receipt::build(&audit.store, &audit.tree, seq, &cp).map_err(|e| e.to_string())?;
            let text = receipt.to_text();
            match out {
                Some(path) => {
                    std::fs::write(&path, &text)?;
                    eprintln!(
                        "receipt of seq {seq} in checkpoint size {} written to {}",
                        cp.checkpoint.size,
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::CheckReceipt { file, key } => {
            let verifier = load_verifier(&key)?;
            let text = std::fs::read_to_string(&file)?;
            let result = Receipt::parse(&text).and_then(|r| r.verify(&verifier));
            match result {
                Ok(rep) => {
                    println!(
                        "ok: event seq {} ({} in stream {}, recorded_at_us {}) is included in the checkpoint of {} at size {} (root {}, {} proof hashes)",
                        rep.seq,
                        rep.event_type,
                        rep.stream_id,
                        rep.recorded_at_us,
                        rep.checkpoint.origin,
                        rep.checkpoint.size,
                        hex(&rep.checkpoint.root),
                        rep.proof_len
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("receipt REJECTED: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::VerifyExport {
            file,
            checkpoint,
            key,
        } => {
            let verifier = load_verifier(&key)?;
            let note = std::fs::read_to_string(&checkpoint)?;
            let cp = match verifier.verify_checkpoint(&note) {
                Ok(cp) => cp,
                Err(e) => {
                    println!("checkpoint REJECTED: {e}");
                    return Ok(ExitCode::from(1));
                }
            };
            let f = std::fs::File::open(&file)?;
            match verify_export(f, Some(&cp), &mut |_| {}) {
                Ok(rep) => {
                    let last = rep.first_seq + rep.count - 1;
                    if rep.first_seq == 1 {
                        println!(
                            "ok: export seq 1..={last} ({} records): every chain link verified, last hash {}; \
                             Merkle root at checkpoint size {} matches the signed checkpoint of {} ({:.0} events/s)",
                            rep.count,
                            hex(&rep.last_hash),
                            cp.size,
                            cp.origin,
                            rep.events_per_sec()
                        );
                    } else {
                        println!(
                            "ok (partial): export seq {}..={last} ({} records): chain links verified from the first \
                             record's prev_hash {} (taken as given), last hash {}; the Merkle root was NOT checked \
                             against the checkpoint (size {}) because the export does not start at seq 1 ({:.0} events/s)",
                            rep.first_seq,
                            rep.count,
                            hex(&rep.first_prev_hash),
                            hex(&rep.last_hash),
                            cp.size,
                            rep.events_per_sec()
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(
                    e @ (ExportError::Broken { .. } | ExportError::Checkpoint(_) | ExportError::Format(_)),
                ) => {
                    println!("export REJECTED: {e}");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Runs `registry export`.
pub fn run_export(args: ExportArgs) -> CliResult {
    let store = open_store(&args.data_dir)?;
    let s = write_export(&store, args.from, args.to, &args.out)?;
    println!(
        "exported seq {}..={} ({} records, {} bytes) to {}",
        s.first_seq,
        s.first_seq + s.count - 1,
        s.count,
        s.bytes,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `registry verify --checkpoint FILE [--key VKEY]`: after the chain walk
/// (whose exit code is `chain`), checks the checkpoint's signature (with
/// `key`, else the data directory's own key) and that the log holds the
/// checkpoint's tree.
pub fn verify_checkpoint(
    data_dir: &Path,
    checkpoint: &Path,
    key: Option<&str>,
    chain: ExitCode,
) -> CliResult {
    let verifier = match key {
        Some(k) => load_verifier(k)?,
        None => {
            let path = data_dir.join(KEY_FILE_NAME);
            if !path.exists() {
                return Err(format!(
                    "no --key given and no {} to take the verifier key from",
                    path.display()
                )
                .into());
            }
            AuditConfig::default()
                .load_signer(data_dir, false)?
                .verifier()
                .clone()
        }
    };
    let note = std::fs::read_to_string(checkpoint)?;
    let cp = match verifier.verify_checkpoint(&note) {
        Ok(cp) => cp,
        Err(e) => {
            println!("checkpoint REJECTED: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let store = open_store(data_dir)?;
    let tree = MerkleTree::open(store.db()).ok();
    match check_log_against_checkpoint(&store, &cp, tree.as_ref(), &mut |_| {}) {
        Ok(m) => {
            println!(
                "ok: the log ({} events) contains the checkpoint's tree: size {} root {} ({}, {:.2}s)",
                m.log_size,
                m.checkpoint_size,
                hex(&m.root),
                cp.origin,
                m.elapsed.as_secs_f64()
            );
            Ok(chain)
        }
        Err(e) => {
            println!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Runs `registry bench audit`.
pub fn run_bench(args: BenchAuditArgs) -> CliResult {
    super::bench::run(&args)?;
    Ok(ExitCode::SUCCESS)
}
