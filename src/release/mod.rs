//! Statistics releases for the regional exchange (docs/RELEASES.md): the
//! published tables of one log position in SDMX-CSV 2.0 with an SDMX-JSON
//! structure per table, the codebook, and a manifest that names every file
//! with its BLAKE3 digest and size, the log position and the signed
//! checkpoint, itself signed with the registry's audit key as a C2SP signed
//! note.
//!
//! - [`tables`]: which tables, their identities, the disclosure rule across tables.
//! - [`sdmx`]: the data and structure files, written and read back.
//! - [`verify`]: `registry release verify`.
//! - [`combine`]: `registry release combine` (regional totals).
//!
//! Invariants: only [`build`] signs, and only a release it built itself at
//! a checkpoint the store signed (never a hash given by a caller); the
//! bytes depend only on the log up to that position and the key (no clock:
//! the one time written, `prepared`, is the recorded time of the release's
//! last event), so a release is reproduced byte for byte from its seq.

pub mod combine;
pub mod sdmx;
pub mod tables;
pub mod verify;

use serde_json::{json, Value};

use crate::audit::Audit;
use crate::projection::{replay, AsOf, SuppressionRules};

/// `format` of every manifest.
pub const FORMAT: &str = "registry-statistics-release/1";
/// The second line of a release note's body (never a decimal number, never
/// `key-handover v1`: a release note is never a checkpoint or a hand-over).
pub const NOTE_TAG: &str = "statistics-release v1";
/// File name of the manifest: every other file with its BLAKE3 digest and
/// size, the log position and the signed checkpoint.
pub const MANIFEST: &str = "manifest.json";
/// File name of the signed note over the manifest's digest ([`note_body`]).
pub const NOTE: &str = "release.note";
/// File name of the codebook: tables, dimensions, codes and the disclosure rule.
pub const CODEBOOK: &str = "codebook.json";

/// Why a release could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// No position was asked for and the store has no signed checkpoint.
    #[error("no checkpoint has been signed yet (a server signs one at start; `registry audit checkpoint` on a stopped store)")]
    NoCheckpoint,
    /// No checkpoint was signed at the tree size asked for (`as_of_seq`).
    #[error("as_of_seq: no checkpoint was signed at tree size {0}; a release is built at the size of a signed checkpoint")]
    NoCheckpointAt(u64),
    /// The checkpoint was signed by an audit key handed over since; the
    /// current key signs releases only over its own checkpoints.
    #[error("the checkpoint at size {size} was signed by {signed_by}, a key handed over since: releases are signed by the current key over checkpoints of the current key")]
    EarlierKey {
        /// The checkpoint's tree size.
        size: u64,
        /// The verifier key (vkey) that signed it.
        signed_by: String,
    },
    /// The checkpoint is of the empty log.
    #[error("the checkpoint is at size 0: an empty log has no statistics to release")]
    Empty,
    /// Anything else (reading the checkpoints or the log, replaying,
    /// building the tables); the text says what.
    #[error("{0}")]
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> ReleaseError {
    ReleaseError::Internal(e.to_string())
}

/// A release: its files (sorted by name) and the position it reflects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// The log position the release reflects (its checkpoint's size).
    pub seq: u64,
    /// Its files (name, content), sorted by name.
    pub files: Vec<(String, Vec<u8>)>,
}

/// The body of a release note: four lines, each ending in `\n`.
pub fn note_body(origin: &str, seq: u64, manifest: &[u8]) -> String {
    format!(
        "{origin}\n{NOTE_TAG}\nseq {seq}\nmanifest {}\n",
        blake3::hash(manifest).to_hex()
    )
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).expect("JSON values serialize");
    b.push(b'\n');
    b
}

/// Builds and signs the release at the checkpoint of size `as_of_seq`
/// (`None`: the latest checkpoint) from the store's log. Blocking: replays
/// the log up to that position.
pub fn build(
    audit: &Audit,
    as_of_seq: Option<u64>,
    rules: &SuppressionRules,
) -> Result<Release, ReleaseError> {
    let cps = &audit.checkpointer;
    let cp = match as_of_seq {
        None => cps
            .latest()
            .map_err(internal)?
            .ok_or(ReleaseError::NoCheckpoint)?,
        Some(n) => cps.at(n).map_err(|e| match e {
            crate::audit::checkpoint::CheckpointError::NotFound(_) => ReleaseError::NoCheckpointAt(n),
            e => internal(e),
        })?,
    };
    let signer = cps.signer();
    if cp.signed_by != signer.verifier().vkey() {
        return Err(ReleaseError::EarlierKey {
            size: cp.checkpoint.size,
            signed_by: cp.signed_by,
        });
    }
    let seq = cp.checkpoint.size;
    if seq == 0 {
        return Err(ReleaseError::Empty);
    }
    let state = replay(&audit.store, AsOf::Seq(seq, None)).map_err(internal)?;
    if state.position().seq != seq {
        return Err(internal(format!(
            "the log replayed to seq {} instead of {seq}",
            state.position().seq
        )));
    }
    let last = audit.store.read_all(seq, 1).map_err(internal)?;
    let recorded_us = last
        .first()
        .filter(|e| e.record.seq == seq)
        .ok_or_else(|| internal(format!("event {seq} is missing")))?
        .record
        .recorded_at_us;
    let prepared = jiff::Timestamp::from_microsecond(recorded_us)
        .map_err(internal)?
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let (tables, department) = tables::build(&state, rules).map_err(internal)?;
    let mut codebook = crate::projection::export::codebook(&department, rules);
    let origin = signer.name.clone();
    let obj = codebook.as_object_mut().expect("the codebook is an object");
    obj.remove("table");
    obj.remove("columns");
    obj.insert(
        "tables".into(),
        json!(tables
            .iter()
            .map(|t| json!({
                "id": t.spec.id,
                "description": t.spec.description,
                "data": format!("{}.csv", t.spec.stem),
                "structure": format!("{}.structure.json", t.spec.stem),
                "dimensions": t.spec.dims.iter().map(|(d, cb)| json!({"column": d, "codebook": cb})).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>()),
    );
    obj.insert("origin".into(), origin.clone().into());
    obj.insert(
        "identities".into(),
        json!(tables::identities(&tables)
            .map_err(internal)?
            .iter()
            .map(|i| i.name.clone())
            .collect::<Vec<_>>()),
    );
    obj.insert("release_disclosure_rule".into(), RELEASE_RULE.into());
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for t in &tables {
        files.push((
            format!("{}.csv", t.spec.stem),
            sdmx::write_csv(t).map_err(internal)?,
        ));
        files.push((
            format!("{}.structure.json", t.spec.stem),
            pretty(&sdmx::structure(t, &codebook, &prepared)),
        ));
    }
    files.push((CODEBOOK.into(), pretty(&codebook)));
    files.sort();
    let manifest = json!({
        "format": FORMAT,
        "origin": origin,
        "log_position": {"seq": seq, "hash": state.position().hash_hex()},
        "checkpoint": cp.note,
        "reference_date": state.cube_date().to_string(),
        "prepared": prepared,
        "disclosure_control": {"min_cell": rules.min_cell, "min_cell_sensitive": rules.min_cell_sensitive},
        "tables": tables.iter().map(|t| json!({
            "id": t.spec.id,
            "data": format!("{}.csv", t.spec.stem),
            "structure": format!("{}.structure.json", t.spec.stem),
        })).collect::<Vec<_>>(),
        "files": files.iter().map(|(name, bytes)| json!({
            "name": name,
            "size": bytes.len(),
            "blake3": blake3::hash(bytes).to_hex().to_string(),
        })).collect::<Vec<_>>(),
    });
    let manifest = pretty(&manifest);
    let note = signer.sign_body(&note_body(&origin, seq, &manifest));
    files.push((MANIFEST.into(), manifest));
    files.push((NOTE.into(), note.into_bytes()));
    files.sort();
    Ok(Release { seq, files })
}

/// The disclosure rule across the tables of a release (codebook).
pub const RELEASE_RULE: &str = "Each table is suppressed on its own (disclosure_control); then, across tables, \
no identity of the release may have exactly one suppressed cell: where one has, the smallest published non-zero \
term (else the total) is suppressed too, until none has. A suppressed cell always holds at least 1.";

/// Why [`write_dir`] wrote no release (or only part of one).
#[derive(Debug, thiserror::Error)]
pub enum WriteDirError {
    /// The output directory cannot be read or created.
    #[error("--out {}: {source}", dir.display())]
    Directory {
        /// The directory given (`--out`).
        dir: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The output directory holds files already.
    #[error("--out {}: the directory is not empty", .0.display())]
    NotEmpty(std::path::PathBuf),
    /// A release file name that is not a plain file name.
    #[error("refusing the file name {0:?}: not a plain file name")]
    FileName(String),
    /// A release file cannot be written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file's path in the output directory.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// Writes a release into `dir`, which must not exist or be empty.
pub fn write_dir(release: &Release, dir: &std::path::Path) -> Result<(), WriteDirError> {
    let directory = |source| WriteDirError::Directory {
        dir: dir.to_path_buf(),
        source,
    };
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(directory)?;
        if entries.next().is_some() {
            return Err(WriteDirError::NotEmpty(dir.to_path_buf()));
        }
    }
    std::fs::create_dir_all(dir).map_err(directory)?;
    for (name, bytes) in &release.files {
        if name.contains('/') || name.contains('\\') || name.starts_with('.') || name.is_empty() {
            return Err(WriteDirError::FileName(name.clone()));
        }
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| WriteDirError::File { path, source })?;
    }
    Ok(())
}
