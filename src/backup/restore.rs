//! `registry restore`: rebuilds a store from a backup directory, refusing a
//! backup that does not verify (naming the generation, the file and what
//! is wrong): every file against its manifest digest, every checkpoint's
//! signature with the backup's (or a pinned) verifier key, every chain link
//! and hash, the continuity between generations and each generation's
//! Merkle root against its signed checkpoint. The log is written byte for
//! byte; case files, the document index, the Merkle tiles, statistics and
//! worklists are derived from it; the backup's checkpoints become the new
//! store's checkpoint history, so the server's no-fork rule continues from
//! them. Finally the written store is read back and verified against the
//! last checkpoint.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::format::{
    check_file, read_generations, read_keys, BackupError, ChainFollower, Generation, ACCESS_FILE,
    CHECKPOINT_FILE, HANDOVERS_FILE, KEYS_FILE, LOG_FILE,
};
use crate::audit::checkpoint::{Checkpoint, Verifier, TREE_CHECKPOINTS};
use crate::audit::export::ExportReader;
use crate::audit::merkle::{self, Frontier};
use crate::log::load::{mark_verified, LogLoader};
use crate::log::record::GENESIS_PREV_HASH;
use crate::log::store::{open_db, TREE_LOG, TREE_META};
use crate::log::{Head, Store};
use crate::pii::{check_raw_entry, MasterKey, BLIND_INDEX_ID};

/// What a restore (or a check) found and did.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Generations verified (and restored).
    pub generations: u32,
    /// The restored log's head (`None`: nothing restored).
    pub head: Option<Head>,
    /// Records verified (and restored).
    pub records: u64,
    /// The last generation's checkpoint (the signed note).
    pub checkpoint: String,
    /// Person keys restored.
    pub keys: u64,
    /// Active keys of cases without any event up to the checkpoint (keys of
    /// registrations still in flight when the backup was taken): not restored.
    pub keys_dropped: u64,
    /// Case files written.
    pub case_files: u64,
    /// Entries of the document index rebuilt.
    pub documents: u64,
    /// Time spent verifying the generations.
    pub verify: Duration,
    /// Time spent loading the log.
    pub load: Duration,
    /// Time spent building the derived parts (index, tiles, projections).
    pub derive: Duration,
    /// The derived parts, each: (name, time), in the order they were built.
    pub derived: Vec<(&'static str, Duration)>,
    /// Time the whole restore took.
    pub elapsed: Duration,
}

/// Where a restore writes, and with which master key.
pub struct RestoreTarget<'a> {
    /// The data directory to create (must not exist or be empty).
    pub dir: &'a Path,
    /// The master key the restore works with (the key entries are wrapped by it).
    pub master: MasterKey,
}

fn invalid(msg: String) -> BackupError {
    BackupError::Invalid(msg)
}

/// Refuses generation `n` when what it holds (a count and a hash) is not
/// what its manifest says; `template` names both with four `{}`: the count
/// and hash held, then the manifest's.
fn disagrees(n: u32, template: &str, have: (u64, &[u8; 32]), want: (u64, &str)) -> Result<(), BackupError> {
    let have_hex = crate::hex::encode(have.1);
    if have.0 == want.0 && have_hex == want.1 {
        return Ok(());
    }
    let values = [
        have.0.to_string(),
        have_hex,
        want.0.to_string(),
        want.1.to_string(),
    ];
    let message = values
        .iter()
        .fold(template.to_string(), |m, v| m.replacen("{}", v, 1));
    Err(invalid(format!("generation {n}: {message}")))
}

/// Verifies the backup in `from` and, with a target, restores it there.
/// `pinned` is the verifier key the checkpoints must verify with.
pub fn restore(
    from: &Path,
    target: Option<RestoreTarget<'_>>,
    pinned: Option<&str>,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<RestoreReport, BackupError> {
    let started = Instant::now();
    let generations = read_generations(from)?;
    let Some(first) = generations.first() else {
        return Err(invalid(format!(
            "{}: no backup generation (gen-000001) found",
            from.display()
        )));
    };
    let key = pinned.unwrap_or(&first.manifest.verifier_key).trim().to_string();
    if key != first.manifest.verifier_key {
        return Err(invalid(format!(
            "the backup's checkpoints are signed by {}, not by the pinned verifier key",
            first.manifest.verifier_key
        )));
    }
    let verifier = Verifier::parse(&key).map_err(|e| invalid(format!("verifier key: {e}")))?;
    let mut checkpoints = Vec::with_capacity(generations.len());
    // The hand-over notes of the latest generation read so far (each
    // generation's list extends the one before).
    let mut handovers: Vec<String> = Vec::new();
    for g in &generations {
        for name in g.manifest.files.keys() {
            check_file(g, name)?;
        }
        for name in [LOG_FILE, KEYS_FILE, ACCESS_FILE, CHECKPOINT_FILE, HANDOVERS_FILE] {
            if !g.manifest.files.contains_key(name) {
                return Err(invalid(format!(
                    "generation {}: the manifest lists no {name}",
                    g.manifest.generation
                )));
            }
        }
        checkpoints.push(check_checkpoint(g, &verifier, &mut handovers)?);
    }
    let mut report = RestoreReport {
        generations: generations.len() as u32,
        ..Default::default()
    };
    let verify_started = Instant::now();

    let target = match target {
        None => {
            // Check only: walk every generation's records.
            let mut chain = ChainFollower::after(0, GENESIS_PREV_HASH, Frontier::new());
            for (g, cp) in generations.iter().zip(&checkpoints) {
                read_generation_log(g, cp, &mut chain, &mut |_, _, _| Ok(()), progress)?;
            }
            report.records = chain.seq;
            report.head = Some(Head {
                seq: chain.seq,
                hash: chain.hash,
            });
            report.checkpoint = checkpoints
                .last()
                .map(|(_, note)| note.clone())
                .unwrap_or_default();
            for g in &generations {
                report.keys += read_keys(&g.dir.join(KEYS_FILE), |id, value| {
                    check_raw_entry(id, value)
                        .map(|_| ())
                        .map_err(|e| invalid(format!("generation {}: key entry: {e}", g.manifest.generation)))
                })?;
            }
            report.verify = verify_started.elapsed();
            report.elapsed = started.elapsed();
            return Ok(report);
        }
        Some(t) => t,
    };

    let to = target.dir;
    if to.exists()
        && std::fs::read_dir(to)
            .map_err(super::format::io(to))?
            .next()
            .is_some()
    {
        return Err(invalid(format!(
            "{} exists and is not empty: restore into a new directory",
            to.display()
        )));
    }
    std::fs::create_dir_all(to).map_err(super::format::io(to))?;
    let result = write_store(
        to,
        target.master,
        &generations,
        &checkpoints,
        &handovers,
        &mut report,
        progress,
    );
    if result.is_err() {
        // A refused or failed restore leaves the target as it found it: empty.
        if let Ok(entries) = std::fs::read_dir(to) {
            for entry in entries.flatten() {
                let _ = if entry.path().is_dir() {
                    std::fs::remove_dir_all(entry.path())
                } else {
                    std::fs::remove_file(entry.path())
                };
            }
        }
    }
    result?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Writes the verified backup into the empty directory `to`, derives
/// everything else, and reads it back against the last checkpoint.
fn write_store(
    to: &Path,
    master: MasterKey,
    generations: &[Generation],
    checkpoints: &[(Checkpoint, String)],
    handovers: &[String],
    report: &mut RestoreReport,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(), BackupError> {
    let verify_started = Instant::now();
    // Creates the store (format marker) and closes it again.
    drop(Store::open(to).map_err(store_err)?);
    {
        let db = open_db(to).map_err(store_err)?;
        let meta = db.open_tree(TREE_META).map_err(sled_err)?;
        let mut loader = LogLoader::new(db.open_tree(TREE_LOG).map_err(sled_err)?);
        let mut chain = ChainFollower::after(0, GENESIS_PREV_HASH, Frontier::new());
        for (g, cp) in generations.iter().zip(checkpoints) {
            read_generation_log(
                g,
                cp,
                &mut chain,
                &mut |seq, record, hash| {
                    loader
                        .push(seq, record, hash)
                        .map_err(|e| invalid(format!("generation {}: {e}", g.manifest.generation)))
                },
                progress,
            )?;
        }
        let loaded = loader.finish().map_err(store_err)?;
        report.records = loaded.head.seq;
        report.case_files = loaded.case_files;
        report.head = Some(loaded.head);
        report.verify = verify_started.elapsed();

        let load_started = Instant::now();
        let person_keys = db.open_tree(crate::pii::keystore::TREE_NAME).map_err(sled_err)?;
        let log = db.open_tree(TREE_LOG).map_err(sled_err)?;
        let mut dropped = 0u64;
        for g in generations {
            let mut batch = sled::Batch::default();
            let mut n = 0usize;
            report.keys += read_keys(&g.dir.join(KEYS_FILE), |id, value| {
                let master = check_raw_entry(id, value)
                    .map_err(|e| invalid(format!("generation {}: key entry: {e}", g.manifest.generation)))?;
                // An active key of a case with no event up to the checkpoint
                // seals nothing in the restored log.
                if master.is_some() && id != BLIND_INDEX_ID.as_bytes() {
                    let case_file = crate::log::casefile::case_file_key(&String::from_utf8_lossy(id));
                    if !log.contains_key(case_file).map_err(sled_err)? {
                        dropped += 1;
                        return Ok(());
                    }
                }
                batch.insert(id, value);
                n += 1;
                if n % 10_000 == 0 {
                    person_keys
                        .apply_batch(std::mem::take(&mut batch))
                        .map_err(sled_err)?;
                }
                Ok(())
            })?;
            person_keys.apply_batch(batch).map_err(sled_err)?;
            progress("keys", report.keys);
        }
        report.keys_dropped = dropped;
        if !person_keys.contains_key(BLIND_INDEX_ID).map_err(sled_err)? {
            return Err(invalid("the backup holds no blind-index key entry".into()));
        }
        let history = db.open_tree(TREE_CHECKPOINTS).map_err(sled_err)?;
        for (cp, note) in checkpoints {
            history
                .insert(cp.size.to_be_bytes(), note.as_bytes())
                .map_err(sled_err)?;
        }
        let handover_tree = db
            .open_tree(crate::audit::handover::TREE_KEY_HANDOVERS)
            .map_err(sled_err)?;
        for (i, note) in handovers.iter().enumerate() {
            handover_tree
                .insert((i as u64 + 1).to_be_bytes(), note.as_bytes())
                .map_err(sled_err)?;
        }
        report.checkpoint = checkpoints
            .last()
            .map(|(_, note)| note.clone())
            .unwrap_or_default();
        mark_verified(&meta, loaded.head).map_err(store_err)?;
        db.flush().map_err(sled_err)?;
        report.load = load_started.elapsed();
    }

    // Everything derived from the log, with the master key.
    let derive_started = Instant::now();
    let store = Store::open(to).map_err(store_err)?;
    let keys = crate::pii::KeyStore::open(store.db(), master)
        .map_err(|e| invalid(format!("the master key does not open the backup's keys: {e}")))?;
    let mut phase = Instant::now();
    let mut done = |report: &mut RestoreReport, name: &'static str| {
        report.derived.push((name, phase.elapsed()));
        phase = Instant::now();
    };
    let docs = crate::cases::rebuild_document_index(&store, &keys, &mut |n| progress("documents", n))
        .map_err(|e| invalid(format!("document index: {e}")))?;
    report.documents = docs.documents;
    done(report, "documents");
    let tree =
        crate::audit::tree::MerkleTree::open(store.db()).map_err(|e| invalid(format!("Merkle tree: {e}")))?;
    tree.catch_up_with(&store, &mut |n| progress("merkle", n))
        .map_err(|e| invalid(format!("Merkle tree: {e}")))?;
    done(report, "merkle");
    crate::projection::rebuild_store_reporting(&store, &mut |n| progress("statistics", n))
        .map_err(|e| invalid(format!("statistics: {e}")))?;
    done(report, "statistics");
    crate::worklist::rebuild_store(&store, &mut |n| progress("worklists", n))
        .map_err(|e| invalid(format!("worklists: {e}")))?;
    done(report, "worklists");
    // Read back what was written and check it against the last checkpoint.
    let head = store.head().map_err(store_err)?;
    let walk = crate::audit::verify::walk_log(&store, head, &mut |n| progress("verify", n))
        .map_err(|e| invalid(format!("the restored store does not verify: {e}")))?;
    let (last_cp, _) = checkpoints.last().expect("one generation");
    if head.seq != last_cp.size || walk.root != last_cp.root {
        return Err(invalid(format!(
            "the restored store (seq {}, root {}) differs from the last checkpoint (size {}, root {})",
            head.seq,
            crate::hex::encode(&walk.root),
            last_cp.size,
            crate::hex::encode(&last_cp.root)
        )));
    }
    done(report, "verify");
    store.db().flush().map_err(sled_err)?;
    drop((keys, tree, store));
    let access = generations.last().expect("one generation").dir.join(ACCESS_FILE);
    let access_to: PathBuf = to.join("access.json");
    std::fs::copy(&access, &access_to).map_err(super::format::io(&access_to))?;
    set_private(&access_to)?;
    report.derive = derive_started.elapsed();
    Ok(())
}

fn set_private(path: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(super::format::io(path))
}

fn store_err(e: crate::log::StoreError) -> BackupError {
    invalid(format!("store: {e}"))
}

fn sled_err(e: sled::Error) -> BackupError {
    invalid(format!("store: {e}"))
}

/// Verifies a generation's checkpoint: signature (by the trusted key, or
/// the key its hand-overs lead to), size and root as the manifest says.
/// `handovers` holds the previous generation's notes; this generation's
/// must extend them, and replace them.
fn check_checkpoint(
    g: &Generation,
    verifier: &Verifier,
    handovers: &mut Vec<String>,
) -> Result<(Checkpoint, String), BackupError> {
    let n = g.manifest.generation;
    let path = g.dir.join(HANDOVERS_FILE);
    let text = std::fs::read_to_string(&path).map_err(super::format::io(&path))?;
    let chain =
        super::format::key_chain(verifier, &text).map_err(|e| invalid(format!("generation {n}: {e}")))?;
    let notes = crate::audit::handover::split_notes(&text);
    if !notes.starts_with(handovers) {
        return Err(invalid(format!(
            "generation {n}: its key hand-overs do not extend those of the generation before"
        )));
    }
    *handovers = notes;
    let path = g.dir.join(CHECKPOINT_FILE);
    let note = std::fs::read_to_string(&path).map_err(super::format::io(&path))?;
    let (cp, _) = chain
        .verify_checkpoint(&note)
        .map_err(|e| invalid(format!("generation {n}: {CHECKPOINT_FILE} does not verify: {e}")))?;
    disagrees(
        n,
        "the checkpoint commits to {} records with root {}, the manifest says {} with root {}",
        (cp.size, &cp.root),
        (g.manifest.last_seq, &g.manifest.checkpoint_root),
    )?;
    Ok((cp, note))
}

/// Receives each verified record `(seq, bytes, chain hash)`.
type RecordSink<'a> = dyn FnMut(u64, &[u8], &merkle::Hash) -> Result<(), BackupError> + 'a;

/// Reads a generation's records through `chain` (which checks every link)
/// into `each`, and checks the generation's end against its manifest and
/// its checkpoint.
fn read_generation_log(
    g: &Generation,
    (cp, _): &(Checkpoint, String),
    chain: &mut ChainFollower,
    each: &mut RecordSink<'_>,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(), BackupError> {
    let n = g.manifest.generation;
    let path = g.dir.join(LOG_FILE);
    let file = std::fs::File::open(&path).map_err(super::format::io(&path))?;
    let mut reader =
        ExportReader::new(file).map_err(|e| invalid(format!("generation {n}: {LOG_FILE}: {e}")))?;
    let count = g.manifest.last_seq + 1 - g.manifest.first_seq;
    if reader.first_seq() != g.manifest.first_seq || reader.count() != count {
        return Err(invalid(format!(
            "generation {n}: {LOG_FILE} holds {} records from seq {}, the manifest says {count} from seq {}",
            reader.count(),
            reader.first_seq(),
            g.manifest.first_seq
        )));
    }
    while let Some((seq, record, hash)) = reader
        .next_entry()
        .map_err(|e| invalid(format!("generation {n}: {LOG_FILE}: {e}")))?
    {
        chain
            .push(seq, record, &hash)
            .map_err(|e| invalid(format!("generation {n}: {LOG_FILE}: {e}")))?;
        each(seq, record, &hash)?;
        if seq % 65_536 == 0 {
            progress("records", seq);
        }
    }
    progress("records", chain.seq);
    disagrees(
        n,
        "its records end at seq {} with hash {}, the manifest says seq {} with hash {}",
        (chain.seq, &chain.hash),
        (g.manifest.last_seq, &g.manifest.last_hash),
    )?;
    let root = chain.frontier.root();
    if root != cp.root {
        return Err(invalid(format!(
            "generation {n}: the Merkle root of records 1..={} is {}, its signed checkpoint says {}: \
             the records differ from what the server signed",
            cp.size,
            crate::hex::encode(&root),
            crate::hex::encode(&cp.root)
        )));
    }
    let manifest_frontier = g.manifest.frontier()?;
    if manifest_frontier.subtrees() != chain.frontier.subtrees() {
        return Err(invalid(format!(
            "generation {n}: the manifest's frontier differs from its records"
        )));
    }
    Ok(())
}
