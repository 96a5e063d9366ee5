//! The audit commands of the `registry` CLI: `registry audit ...`,
//! `registry export`, `registry verify --checkpoint`, `registry bench audit`.
//!
//! Exit codes: 0 verified / done; 1 verification failed (the message says
//! what and where); 2 usage or I/O error (printed by `main`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::audit::checkpoint::{stored_handovers, NoteError, NoteSigner, Verifier, KEY_FILE_NAME};
use crate::audit::export::{verify_export_with_heads, write_export, ExportError};
use crate::audit::handover::{now_utc, split_notes, KeyChain};
use crate::audit::receipt::Receipt;
use crate::audit::tree::MerkleTree;
use crate::audit::verify::check_log_against_checkpoint;
use crate::audit::{Audit, AuditConfig, AuditError};
use crate::hex::encode as hex;
use crate::log::{Store, StoreError};

use super::CliResult;

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
        /// The store's data directory.
        #[arg(long, default_value = "./registry-data")]
        data_dir: PathBuf,
        /// Which signing key and origin.
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Catch the Merkle tree up with the log and sign a checkpoint for the
    /// current size (service stopped). Prints the signed note.
    Checkpoint {
        /// The store's data directory.
        #[arg(long, default_value = "./registry-data")]
        data_dir: PathBuf,
        /// Also write the note to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Which signing key and origin.
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Write the receipt (C2SP tlog-proof) of one event (service stopped).
    Prove {
        /// The store's data directory.
        #[arg(long, default_value = "./registry-data")]
        data_dir: PathBuf,
        /// The event's sequence number.
        #[arg(long)]
        seq: u64,
        /// Receipt file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Which signing key and origin.
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Check a receipt offline: signature, inclusion proof, record.
    CheckReceipt {
        /// The receipt file (as `registry audit prove` writes it).
        file: PathBuf,
        /// Verifier key `<name>+<id>+<base64>`, or a file holding it.
        #[arg(long)]
        key: String,
        /// Key hand-over notes (files, each holding one or more, in order) that
        /// lead from --key to the key that signed the receipt's checkpoint.
        #[arg(long)]
        handovers: Vec<PathBuf>,
    },
    /// Verify an export offline against a signed checkpoint.
    VerifyExport {
        /// The export file (as `registry export` writes it).
        file: PathBuf,
        /// Signed checkpoint file.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Verifier key `<name>+<id>+<base64>`, or a file holding it.
        #[arg(long)]
        key: String,
        /// Key hand-over notes (files, in order) from --key to the checkpoint's
        /// key; their tree roots are recomputed from the export too.
        #[arg(long)]
        handovers: Vec<PathBuf>,
    },
    /// Create a new audit signing key file (mode 0600; refuses an existing
    /// file) and print its verifier key. Give it to `rotate-key --new-key-file`.
    NewKey {
        /// Key file to create.
        #[arg(long)]
        out: PathBuf,
        /// Key name = log origin; it must be the log's origin to take over a log.
        #[arg(long, default_value = crate::audit::checkpoint::DEFAULT_ORIGIN)]
        origin: String,
    },
    /// Hand the log's checkpoints over to a new signing key (service
    /// stopped): signs a checkpoint at the current size with the old key,
    /// records a hand-over note signed by both keys in the store and adds the
    /// new key's signature to that checkpoint. Then serve with the new key.
    RotateKey {
        /// The store's data directory.
        #[arg(long, default_value = "./registry-data")]
        data_dir: PathBuf,
        /// The old (current) key: --audit-key-file, default DATA_DIR/audit-signing.key.
        #[command(flatten)]
        keys: KeyArgs,
        /// The new key file (see `registry audit new-key`); it must exist.
        #[arg(long)]
        new_key_file: PathBuf,
        /// Also write the hand-over note to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the store's key hand-over notes, oldest first, one after the
    /// other (service stopped; online: Audit.ListKeyHandovers). Each is
    /// verified under both its keys first.
    Handovers {
        /// The store's data directory.
        #[arg(long, default_value = "./registry-data")]
        data_dir: PathBuf,
        /// Write them to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a chain of key hand-overs offline from a key you trust: each
    /// must hand over from the key before it and be signed by both keys.
    /// Prints each step and the key the chain ends with.
    VerifyHandovers {
        /// Files of hand-over notes, in order (each may hold several).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The verifier key you trust (vkey or a file holding it).
        #[arg(long)]
        key: String,
        /// Fail unless the chain ends with this verifier key (the new key as
        /// the operator announced it out of band).
        #[arg(long)]
        expect_key: Option<String>,
    },
}

/// `registry export`
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The data directory of the store to export.
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

/// Why a store, a verifier key or hand-over files named on the command
/// line cannot be used (a usage or I/O error: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum AuditCliError {
    /// No store in the directory (shown).
    #[error("no store in {}", .0.display())]
    NoStore(PathBuf),
    /// The store does not open.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file holding the verifier key cannot be read.
    #[error(transparent)]
    KeyFile(std::io::Error),
    /// The verifier key does not parse.
    #[error(transparent)]
    Key(#[from] NoteError),
    /// A hand-over file cannot be read.
    #[error("{}: {source}", file.display())]
    HandoverFile {
        /// The file.
        file: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// A hand-over file (shown) holds no hand-over note.
    #[error("{}: no hand-over note in the file", .0.display())]
    NoHandover(PathBuf),
    /// The tail of the log does not verify: nothing is signed.
    #[error("refusing to sign: {0}")]
    RefusingToSign(#[source] crate::log::VerifyError),
    /// The audit state (key, Merkle tree, checkpoints) does not open.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

fn open_store(data_dir: &Path) -> Result<Store, AuditCliError> {
    if !data_dir.join("db").exists() {
        return Err(AuditCliError::NoStore(data_dir.to_path_buf()));
    }
    Ok(Store::open(data_dir)?)
}

/// Reads a verifier key given inline or as a file.
pub fn load_verifier(key: &str) -> Result<Verifier, AuditCliError> {
    let path = Path::new(key);
    let text = if path.is_file() {
        std::fs::read_to_string(path).map_err(AuditCliError::KeyFile)?
    } else {
        key.to_string()
    };
    Ok(Verifier::parse(text.trim())?)
}

/// Reads hand-over notes from files (each holding one or more), in order.
pub fn read_handover_files(files: &[PathBuf]) -> Result<Vec<String>, AuditCliError> {
    let mut notes = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|source| AuditCliError::HandoverFile {
            file: f.clone(),
            source,
        })?;
        let found = split_notes(&text);
        if found.is_empty() {
            return Err(AuditCliError::NoHandover(f.clone()));
        }
        notes.extend(found);
    }
    Ok(notes)
}

/// The chain from a trusted key through hand-over notes. The outer error is
/// a usage or I/O error; the inner one a rejected hand-over.
fn load_chain(key: &str, handovers: &[PathBuf]) -> Result<Result<KeyChain, NoteError>, AuditCliError> {
    let verifier = load_verifier(key)?;
    let notes = read_handover_files(handovers)?;
    Ok(KeyChain::follow_from(verifier, &notes))
}

/// Opens the store, verifies the tail of the chain (as start-up does) and
/// catches the Merkle tree up. Refuses a broken log.
fn open_audit(data_dir: &Path, keys: &KeyArgs) -> Result<Audit, AuditCliError> {
    let store = open_store(data_dir)?;
    crate::log::verify::verify_at_startup(&store).map_err(AuditCliError::RefusingToSign)?;
    Ok(Audit::open(&store, &keys.config(), true)?)
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
            let receipt = crate::audit::receipt::build(&audit.store, &audit.tree, seq, &cp)
                .map_err(|e| e.to_string())?;
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
        AuditCommand::CheckReceipt { file, key, handovers } => {
            let chain = match load_chain(&key, &handovers)? {
                Ok(c) => c,
                Err(e) => {
                    println!("receipt REJECTED: {e}");
                    return Ok(ExitCode::from(1));
                }
            };
            let text = std::fs::read_to_string(&file)?;
            let result = Receipt::parse(&text).and_then(|r| r.verify_chain(&chain));
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
            handovers,
        } => {
            let note = std::fs::read_to_string(&checkpoint)?;
            let verified = load_chain(&key, &handovers)?.and_then(|chain| {
                let (cp, by) = chain.verify_checkpoint(&note)?;
                let heads: Vec<_> = chain.handovers().iter().map(|h| (h.size, h.root)).collect();
                Ok((cp, by.vkey(), heads))
            });
            let (cp, signed_by, heads) = match verified {
                Ok(v) => v,
                Err(e) => {
                    println!("checkpoint REJECTED: {e}");
                    return Ok(ExitCode::from(1));
                }
            };
            let f = std::fs::File::open(&file)?;
            match verify_export_with_heads(f, Some(&cp), &heads, &mut |_| {}) {
                Ok(rep) => {
                    let last = rep.first_seq + rep.count - 1;
                    if rep.first_seq == 1 {
                        let via = if heads.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " (key {signed_by}, reached through {} key hand-over(s); {} hand-over root(s) recomputed and matched)",
                                heads.len(),
                                rep.heads_checked
                            )
                        };
                        println!(
                            "ok: export seq 1..={last} ({} records): every chain link verified, last hash {}; \
                             Merkle root at checkpoint size {} matches the signed checkpoint of {}{via} ({:.0} events/s)",
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
        AuditCommand::NewKey { out, origin } => {
            if out.exists() {
                return Err(format!("{} exists: refusing to overwrite a key", out.display()).into());
            }
            let (signer, _) = NoteSigner::load_or_create(&out, Some(&origin), true)?;
            println!("{}", signer.verifier().vkey());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::RotateKey {
            data_dir,
            keys,
            new_key_file,
            out,
        } => {
            let (new, _) = NoteSigner::load_or_create(&new_key_file, None, false)
                .map_err(|e| format!("--new-key-file {}: {e}", new_key_file.display()))?;
            let audit = open_audit(&data_dir, &keys)?;
            let (h, _) = audit
                .checkpointer
                .hand_over(&new, &now_utc())
                .map_err(|e| format!("key rotation refused: {e}"))?;
            print!("{}", h.note);
            if let Some(out) = out {
                std::fs::write(out, &h.note)?;
            }
            eprintln!(
                "the log's audit key was handed over at tree size {}: {} -> {}; the checkpoint at size {} \
                 is now signed by both keys. Serve with --audit-key-file {} from now on.",
                h.size,
                h.old.vkey(),
                h.new.vkey(),
                h.size,
                new_key_file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Handovers { data_dir, out } => {
            let store = open_store(&data_dir)?;
            let notes = stored_handovers(store.db()).map_err(|e| e.to_string())?;
            // Verified under both keys, from the first one's old key.
            let chain = crate::audit::checkpoint::handover_chain(&notes)
                .map_err(|e| format!("the store's hand-overs do not verify: {e}"))?;
            let text: String = notes.concat();
            match out {
                Some(path) => std::fs::write(&path, &text)?,
                None => print!("{text}"),
            }
            match chain {
                None => eprintln!("no key hand-over: this log has always had one audit key"),
                Some(c) => eprintln!(
                    "{} key hand-over(s), each signed by both its keys; the current key is {}",
                    c.handovers().len(),
                    c.current().vkey()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::VerifyHandovers {
            files,
            key,
            expect_key,
        } => {
            let expected = expect_key.as_deref().map(load_verifier).transpose()?;
            let chain = match load_chain(&key, &files)? {
                Ok(c) => c,
                Err(e) => {
                    println!("hand-overs REJECTED: {e}");
                    return Ok(ExitCode::from(1));
                }
            };
            for (i, h) in chain.handovers().iter().enumerate() {
                println!(
                    "hand-over #{} at tree size {} (root {}, signed at {} by the signers' clock): {} -> {}: both signatures verify",
                    i + 1,
                    h.size,
                    hex(&h.root),
                    h.time,
                    h.old.vkey(),
                    h.new.vkey()
                );
            }
            let current = chain.current().vkey();
            if let Some(exp) = expected {
                if exp.vkey() != current {
                    println!(
                        "hand-overs REJECTED: the chain ends with key {current}, not the expected {}",
                        exp.vkey()
                    );
                    return Ok(ExitCode::from(1));
                }
            }
            println!(
                "ok: {} hand-over(s) from {}; checkpoints of size {} and above are signed by {current}",
                chain.handovers().len(),
                load_verifier(&key)?.vkey(),
                chain.epochs().last().expect("one epoch").from
            );
            Ok(ExitCode::SUCCESS)
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

/// `registry verify --checkpoint FILE [--key VKEY] [--handovers F..]`: after
/// the chain walk (whose exit code is `chain`), checks the checkpoint's
/// signature (with `key`, else the data directory's own key, and the key
/// hand-overs from `handovers`, else the store's own), that the log holds the
/// checkpoint's tree, and that it reproduces every hand-over's root.
pub fn verify_checkpoint(
    data_dir: &Path,
    checkpoint: &Path,
    key: Option<&str>,
    handovers: &[PathBuf],
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
    let store = open_store(data_dir)?;
    let notes = if handovers.is_empty() {
        stored_handovers(store.db()).map_err(|e| e.to_string())?
    } else {
        read_handover_files(handovers)?
    };
    let verified = KeyChain::follow_from(verifier, &notes).and_then(|keys| {
        let (cp, _) = keys.verify_checkpoint(&note)?;
        Ok((cp, keys))
    });
    let (cp, keys) = match verified {
        Ok(v) => v,
        Err(e) => {
            println!("checkpoint REJECTED: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let tree = MerkleTree::open(store.db()).ok();
    match check_log_against_checkpoint(&store, &cp, tree.as_ref(), &mut |_| {}) {
        Ok(m) => {
            for (i, h) in keys.handovers().iter().enumerate() {
                if h.size > m.log_size {
                    println!(
                        "key hand-over #{} names tree size {}, but the log holds {} events: events {}..={} were cut off",
                        i + 1,
                        h.size,
                        m.log_size,
                        m.log_size + 1,
                        h.size
                    );
                    return Ok(ExitCode::from(1));
                }
                let root = crate::audit::verify::recompute_root(&store, h.size, &mut |_| {})
                    .map_err(|e| e.to_string())?;
                if root != h.root {
                    println!(
                        "key hand-over #{} REJECTED: the log's root at size {} is {}, the hand-over names {}",
                        i + 1,
                        h.size,
                        hex(&root),
                        hex(&h.root)
                    );
                    return Ok(ExitCode::from(1));
                }
            }
            let via = if keys.handovers().is_empty() {
                String::new()
            } else {
                format!(
                    "; {} key hand-over(s) verified and their roots reproduced",
                    keys.handovers().len()
                )
            };
            println!(
                "ok: the log ({} events) contains the checkpoint's tree: size {} root {} ({}, {:.2}s){via}",
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
    crate::audit::bench::run(&args)?;
    Ok(ExitCode::SUCCESS)
}
