//! `registry backup`: asks a running server for a backup (`Admin/Backup`)
//! and writes it as the next generation of a backup directory, checking
//! everything it receives before the generation counts: the checkpoint's
//! signature (with the pinned verifier key, or the one the backup already
//! uses), every record's chain link and hash, the continuity with the
//! previous generation, and the Merkle root of all records against the
//! signed checkpoint. A generation is written as `gen-NNNNNN.partial` and
//! renamed into place only once complete and synced: an interrupted backup
//! leaves no generation behind.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use super::format::ChainError;
use super::format::{
    self, check_file, digest_file, generation_dir, io, read_generations, sync_dir, BackupError,
    ChainFollower, KeysWriter, Kind, Manifest, ACCESS_FILE, CHECKPOINT_FILE, FORMAT, HANDOVERS_FILE,
    KEYS_FILE, LOG_FILE, MANIFEST_FILE,
};
use crate::api::pb;
use crate::audit::checkpoint::{NoteError, Verifier};
use crate::audit::export::{ExportError, ExportWriter};
use crate::audit::merkle::Frontier;
use crate::client::{connect, ClientOptions};
use crate::log::record::{split_stored, GENESIS_PREV_HASH};
use crate::pii::hex;

/// Why `registry backup` wrote no generation.
#[derive(Debug, thiserror::Error)]
pub enum BackupClientError {
    /// The backup directory does not read or check (the previous
    /// generations, their files), or a file of the new one cannot be written.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The server could not be reached.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// Creating, reading, renaming or removing in the backup directory.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, and to which path.
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The pinned verifier key (the `--key` file) differs from the one the
    /// backup's generations were checked with.
    #[error("the pinned verifier key differs from the one generation {generation} was checked with ({key})")]
    PinnedKeyDiffers {
        /// The latest generation.
        generation: u32,
        /// The verifier key its manifest names.
        key: String,
    },
    /// The server refused the `Backup` call (e.g. another backup is running,
    /// or the previous generation does not continue its log).
    #[error("Backup refused: {:?}: {}", .0.code(), .0.message())]
    Refused(tonic::Status),
    /// The server's backup stream ended with an error.
    #[error("the backup stream failed: {:?}: {}", .0.code(), .0.message())]
    Stream(tonic::Status),
    /// The verifier key (pinned, the backup's, or the server's) does not parse.
    #[error("verifier key: {0}")]
    VerifierKey(#[source] NoteError),
    /// The server's first key hand-over note does not parse (a first
    /// generation without `--key` trusts the key it starts from).
    #[error("the server's first key hand-over: {0}")]
    FirstHandover(#[source] NoteError),
    /// The checkpoint the server signed does not verify under the trusted
    /// key chain.
    #[error("the server's checkpoint does not verify: {0}")]
    Checkpoint(#[source] NoteError),
    /// A stored record the server sent does not split into a record and
    /// its chain hash.
    #[error("seq {seq}: {source}")]
    Record {
        /// The record's seq.
        seq: u64,
        /// What is wrong with it.
        source: crate::log::record::DecodeError,
    },
    /// A person-key entry the server sent is not a valid stored entry.
    #[error("key entry {id}: {source}")]
    KeyEntry {
        /// The entry's id (a case id, or the blind-index key's).
        id: String,
        /// What is wrong with it.
        source: crate::pii::PiiError,
    },
    /// A record the server sent does not continue the chain.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Writing `log.export` failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The manifest could not be encoded.
    #[error(transparent)]
    Manifest(#[from] serde_json::Error),
    /// The server sent something else than the backup it announced.
    #[error("{0}")]
    Protocol(String),
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> BackupClientError {
    move |source| BackupClientError::Io { what, source }
}

/// What one `registry backup` wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The generation's number (1 for the first).
    pub generation: u32,
    /// Full or incremental.
    pub kind: Kind,
    /// The first record the generation holds.
    pub first_seq: u64,
    /// The last record it holds (the checkpoint's size).
    pub last_seq: u64,
    /// Records written.
    pub records: u64,
    /// Key entries written.
    pub keys: u64,
    /// Bytes of the generation's files.
    pub bytes: u64,
    /// Time the backup took.
    pub elapsed: Duration,
    /// No new record and the same access file: nothing was written.
    pub up_to_date: bool,
}

/// Takes the next generation of the backup in `out` from the server.
/// `pinned` is the verifier key the checkpoint must verify with (the one
/// auditors publish); without it the first generation trusts the key the
/// server sends, and later ones the key of the first.
pub async fn backup(
    options: &ClientOptions,
    out: &Path,
    pinned: Option<&str>,
) -> Result<BackupReport, BackupClientError> {
    let started = Instant::now();
    std::fs::create_dir_all(out).map_err(io_err(format!("cannot create {}", out.display())))?;
    let generations = read_generations(out)?;
    remove_partials(out)?;
    let previous = generations.last();
    if let Some(prev) = previous {
        // The generation this one continues must be intact.
        for name in prev.manifest.files.keys() {
            check_file(prev, name)?;
        }
    }
    let verifier_key = match (pinned, previous) {
        (Some(k), Some(prev)) if k.trim() != prev.manifest.verifier_key => {
            return Err(BackupClientError::PinnedKeyDiffers {
                generation: prev.manifest.generation,
                key: prev.manifest.verifier_key.clone(),
            })
        }
        (Some(k), _) => Some(k.trim().to_string()),
        (None, Some(prev)) => Some(prev.manifest.verifier_key.clone()),
        (None, None) => None,
    };
    let (after_seq, after_hash, frontier) = match previous {
        Some(p) => (
            p.manifest.last_seq,
            p.manifest.last_hash()?,
            p.manifest.frontier()?,
        ),
        None => (0, GENESIS_PREV_HASH, Frontier::new()),
    };
    let channel = connect(options, Duration::from_secs(5)).await?;
    let mut client = pb::admin_client::AdminClient::new(channel)
        .max_decoding_message_size(crate::limits::GRPC_RESPONSE_BYTES_MAX);
    let request = pb::BackupRequest {
        after_seq,
        after_hash: if after_seq == 0 {
            Vec::new()
        } else {
            after_hash.to_vec()
        },
    };
    let mut stream = client
        .backup(request)
        .await
        .map_err(BackupClientError::Refused)?
        .into_inner();
    let next = |m: Result<Option<pb::BackupPart>, tonic::Status>| -> Result<pb::backup_part::Part, BackupClientError> {
        match m {
            Ok(Some(pb::BackupPart { part: Some(p) })) => Ok(p),
            Ok(Some(_)) => Err(protocol("the server sent an empty backup part")),
            Ok(None) => Err(protocol(
                "the server ended the backup stream before its end: the backup is incomplete",
            )),
            Err(s) => Err(BackupClientError::Stream(s)),
        }
    };
    let start = match next(stream.message().await)? {
        pb::backup_part::Part::Start(s) => s,
        _ => return Err(protocol("the backup stream does not begin with its start")),
    };
    // The trusted key: the pinned one, else the backup's, else (a first
    // generation without --key) the one the key hand-overs start from, or
    // the server's own when it never rotated.
    let trusted = match (&verifier_key, start.key_handovers.first()) {
        (Some(k), _) => Verifier::parse(k).map_err(BackupClientError::VerifierKey)?,
        (None, Some(first)) => {
            crate::audit::checkpoint::first_old_key(first).map_err(BackupClientError::FirstHandover)?
        }
        (None, None) => Verifier::parse(&start.verifier_key).map_err(BackupClientError::VerifierKey)?,
    };
    let handovers_text: String = start.key_handovers.concat();
    let chain = format::key_chain(&trusted, &handovers_text)?;
    let (checkpoint, _) = chain
        .verify_checkpoint(&start.checkpoint)
        .map_err(BackupClientError::Checkpoint)?;
    let verifier = trusted;
    if start.first_seq != after_seq + 1 || start.last_seq != checkpoint.size || start.last_seq < after_seq {
        return Err(BackupClientError::Protocol(format!(
            "the server announces seq {}..={} with a checkpoint of size {}; the backup needs {}.. up to the checkpoint",
            start.first_seq,
            start.last_seq,
            checkpoint.size,
            after_seq + 1
        )));
    }
    let previous_access = match previous {
        Some(p) => Some(std::fs::read(p.dir.join(ACCESS_FILE)).map_err(io_err(ACCESS_FILE.to_string()))?),
        None => None,
    };
    if start.last_seq == after_seq && previous_access.as_deref() == Some(&start.access_file[..]) {
        // Drain the stream (keys of no stream, the end) and write nothing.
        loop {
            if let pb::backup_part::Part::End(_) = next(stream.message().await)? {
                break;
            }
        }
        return Ok(BackupReport {
            generation: previous.map_or(0, |p| p.manifest.generation),
            kind: Kind::Incremental,
            first_seq: start.first_seq,
            last_seq: start.last_seq,
            records: 0,
            keys: 0,
            bytes: 0,
            elapsed: started.elapsed(),
            up_to_date: true,
        });
    }

    let generation = previous.map_or(1, |p| p.manifest.generation + 1);
    let final_dir = generation_dir(out, generation);
    let dir = final_dir.with_extension("partial");
    std::fs::create_dir_all(&dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    let count = start.last_seq - after_seq;
    let mut log = ExportWriter::create(&dir.join(LOG_FILE), start.first_seq, count)?;
    let mut chain = ChainFollower::after(after_seq, after_hash, frontier);
    let mut keys = KeysWriter::create(&dir.join(KEYS_FILE))?;
    let mut master_ids = BTreeSet::new();
    let mut records = 0u64;
    let end = loop {
        match next(stream.message().await)? {
            pb::backup_part::Part::Records(r) => {
                if r.first_seq != chain.seq + 1 {
                    return Err(BackupClientError::Protocol(format!(
                        "records from seq {} where {} was expected",
                        r.first_seq,
                        chain.seq + 1
                    )));
                }
                for (i, entry) in r.entries.iter().enumerate() {
                    let seq = r.first_seq + i as u64;
                    if seq > start.last_seq {
                        return Err(BackupClientError::Protocol(format!(
                            "the server sent seq {seq}, beyond its checkpoint"
                        )));
                    }
                    let (record, hash) =
                        split_stored(entry).map_err(|source| BackupClientError::Record { seq, source })?;
                    chain.push(seq, record, &hash)?;
                    log.push(seq, record, &hash)?;
                    records += 1;
                }
            }
            pb::backup_part::Part::Keys(k) => {
                for key in &k.keys {
                    let master =
                        crate::pii::check_raw_entry(key.id.as_bytes(), &key.value).map_err(|source| {
                            BackupClientError::KeyEntry {
                                id: key.id.clone(),
                                source,
                            }
                        })?;
                    if let Some(m) = master {
                        master_ids.insert(hex::encode(&m));
                    }
                    keys.push(key.id.as_bytes(), &key.value)?;
                }
            }
            pb::backup_part::Part::End(e) => break e,
            pb::backup_part::Part::Start(_) => return Err(protocol("a second start in the backup stream")),
        }
    };
    if chain.seq != start.last_seq || end.records != records {
        return Err(BackupClientError::Protocol(format!(
            "the stream ended after seq {} ({} records), the server announced seq {} ({} records)",
            chain.seq, records, start.last_seq, end.records
        )));
    }
    let root = chain.frontier.root();
    if root != checkpoint.root {
        return Err(BackupClientError::Protocol(format!(
            "the Merkle root of records 1..={} is {}, the signed checkpoint says {}: \
             the records sent are not those the server signed",
            checkpoint.size,
            crate::hex::encode(&root),
            crate::hex::encode(&checkpoint.root)
        )));
    }
    log.finish()?;
    let key_count = keys.finish()?;
    if key_count != end.keys {
        return Err(BackupClientError::Protocol(format!(
            "{key_count} key entries received, the server announced {}",
            end.keys
        )));
    }
    write_synced(&dir.join(ACCESS_FILE), &start.access_file)?;
    write_synced(&dir.join(CHECKPOINT_FILE), start.checkpoint.as_bytes())?;
    write_synced(&dir.join(HANDOVERS_FILE), handovers_text.as_bytes())?;
    let mut files = std::collections::BTreeMap::new();
    let mut bytes = 0;
    for name in [LOG_FILE, KEYS_FILE, ACCESS_FILE, CHECKPOINT_FILE, HANDOVERS_FILE] {
        let d = digest_file(&dir.join(name))?;
        bytes += d.bytes;
        files.insert(name.to_string(), d);
    }
    let mut manifest = Manifest {
        format: FORMAT.into(),
        generation,
        kind: if generation == 1 {
            Kind::Full
        } else {
            Kind::Incremental
        },
        created_at: jiff::Timestamp::now().to_string(),
        first_seq: start.first_seq,
        last_seq: start.last_seq,
        prev_hash: hex::encode(&after_hash),
        last_hash: hex::encode(&chain.hash),
        checkpoint_root: hex::encode(&checkpoint.root),
        origin: checkpoint.origin.clone(),
        verifier_key: verifier.vkey(),
        frontier: Vec::new(),
        master_key_ids: master_ids.into_iter().collect(),
        keys: key_count,
        previous_manifest: previous.map(|p| p.manifest_digest.clone()),
        files,
    };
    manifest.set_frontier(&chain.frontier);
    let json = serde_json::to_vec_pretty(&manifest)?;
    write_synced(&dir.join(MANIFEST_FILE), &json)?;
    sync_dir(&dir)?;
    std::fs::rename(&dir, &final_dir).map_err(io_err(format!("cannot rename {}", dir.display())))?;
    sync_dir(out)?;
    Ok(BackupReport {
        generation,
        kind: manifest.kind,
        first_seq: start.first_seq,
        last_seq: start.last_seq,
        records,
        keys: key_count,
        bytes: bytes + json.len() as u64,
        elapsed: started.elapsed(),
        up_to_date: false,
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Removes what an interrupted backup left (`gen-*.partial`).
fn remove_partials(out: &Path) -> Result<(), BackupClientError> {
    for entry in std::fs::read_dir(out).map_err(io_err(out.display().to_string()))? {
        let entry = entry.map_err(io_err(out.display().to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(format::GENERATION_PREFIX) && name.ends_with(".partial") {
            std::fs::remove_dir_all(entry.path()).map_err(io_err(format!("cannot remove {name}")))?;
        }
    }
    Ok(())
}

fn protocol(what: &str) -> BackupClientError {
    BackupClientError::Protocol(what.to_string())
}
