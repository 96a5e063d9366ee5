//! `registry bench snapshot` (BENCHMARKS.md): a snapshot of a stopped
//! store built, verified and installed into an empty store, each step
//! timed, against the raw limit measured in the same run (one sequential
//! scan of the store's chunks with BLAKE3 of each record).

use std::path::Path;
use std::time::Instant;

use super::snapshot::{self, Membership, SnapshotError};
use super::state_machine::APPLIED_KEY;
use super::types::encode;
use crate::log::record::{chain_hash, split_stored};
use crate::log::{Log, SyncMode, WriterConfig};

/// Why `registry bench snapshot` stopped.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotBenchError {
    /// Clearing or creating the scratch directory, or reading the
    /// snapshot file's size, failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The source store or the installed store could not be opened.
    #[error(transparent)]
    Open(#[from] crate::log::OpenError),
    /// Reading or closing a store failed.
    #[error(transparent)]
    Store(#[from] crate::log::StoreError),
    /// A stored record of the source does not split into record and hash.
    #[error(transparent)]
    Decode(#[from] crate::log::record::DecodeError),
    /// The source's Merkle tree or audit key could not be set up.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// Building, verifying or installing the snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The Raft position written with the install could not be encoded.
    #[error(transparent)]
    Encode(#[from] postcard::Error),
    /// After the install, the new store's head (seq or hash) is not the
    /// snapshot's.
    #[error("the installed store's head differs from the snapshot's")]
    HeadDiffers,
}

/// Runs the benchmark on the stopped store `data_dir`; `scratch` (deleted
/// and recreated) holds the snapshot file and the installed store. The
/// source store gains its Merkle tree (if it had none) and an audit key.
pub fn run(data_dir: &Path, scratch: &Path) -> Result<(), SnapshotBenchError> {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch)?;
    }
    std::fs::create_dir_all(scratch)?;
    let config = WriterConfig {
        sync: SyncMode::Flush,
    };
    let source = Log::open_replicated(data_dir, config)?;
    let head = source.store().head()?;
    println!(
        "source: {} events, store {} bytes",
        head.seq,
        source.store().size_on_disk()?
    );

    let started = Instant::now();
    let mut n = 0u64;
    let mut acc = [0u8; 32];
    for kv in source.store().raw_range(1, head.seq) {
        let (_, v) = kv?;
        let (record, _) = split_stored(&v)?;
        acc = chain_hash(&acc, record);
        n += 1;
    }
    std::hint::black_box(acc);
    let raw = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
    println!("raw limit: scan of the chunks + BLAKE3 of each record: {raw:.0} events/s");

    let started = Instant::now();
    let audit = crate::audit::Audit::open(source.store(), &crate::audit::AuditConfig::default(), true)?;
    println!(
        "merkle tree caught up to {} leaves in {:.1} s (a node keeps it current; not part of a snapshot)",
        audit.tree.size(),
        started.elapsed().as_secs_f64()
    );

    let file = scratch.join("bench.snap");
    let started = Instant::now();
    let header = snapshot::build(
        &source.applier(),
        source.store().db(),
        &audit.checkpointer,
        1,
        &file,
        Some((None, Membership::default())),
        &snapshot::Capture::default(),
    )?;
    let build_s = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&file)?.len();
    println!(
        "build: {} events, {bytes} bytes in {build_s:.1} s ({:.0} events/s, {:.0} MB/s; ratio to raw {:.2})",
        header.head_seq,
        header.head_seq as f64 / build_s,
        bytes as f64 / build_s / 1e6,
        header.head_seq as f64 / build_s / raw
    );

    let started = Instant::now();
    let verified = snapshot::verify(&file, &Default::default())?;
    let verify_s = started.elapsed().as_secs_f64();
    println!(
        "verify: {} records, {} tree entries, checkpoint size {} in {verify_s:.1} s ({:.0} events/s; ratio to raw {:.2})",
        verified.records,
        verified.tree_entries,
        verified.checkpoint_size,
        verified.records as f64 / verify_s,
        verified.records as f64 / verify_s / raw
    );
    drop(audit);
    source.shutdown()?;

    let target_dir = scratch.join("installed");
    let target = Log::open_replicated(&target_dir, config)?;
    let position = encode(&(header.last_log_id, &header.membership))?;
    let started = Instant::now();
    snapshot::install(
        &file,
        &target.applier(),
        target.store().db(),
        (APPLIED_KEY, position),
    )?;
    let install_s = started.elapsed().as_secs_f64();
    let installed = target.store().head()?;
    println!(
        "install into an empty store: {} events in {install_s:.1} s ({:.0} events/s; ratio to raw {:.2}); heads equal: {}",
        installed.seq,
        installed.seq as f64 / install_s,
        installed.seq as f64 / install_s / raw,
        installed.seq == header.head_seq && installed.hash == header.head_hash
    );
    println!(
        "a new node's snapshot path without the transfer: verify + install = {:.1} s",
        verify_s + install_s
    );
    target.shutdown()?;
    if installed.seq != header.head_seq || installed.hash != header.head_hash {
        return Err(SnapshotBenchError::HeadDiffers);
    }
    Ok(())
}
