//! `registry release verify DIR --key VKEY` (docs/RELEASES.md §6): the
//! release note's signature, the manifest it signs, the checkpoint, every
//! file's size and digest, no file missing or unlisted, every table read
//! back against its structure, the thresholds, the identities and the
//! disclosure rule across tables. The first failure is reported, naming
//! the file and, for a table, its row and cell.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::tables::{self, DataTable, TABLES};
use super::{sdmx, FORMAT, MANIFEST, NOTE, NOTE_TAG};
use crate::audit::checkpoint::{NoteError, Verifier};
use crate::projection::export::ObsStatus;

/// A verified release: what `combine` cites and sums.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The registry (log origin) the release comes from.
    pub origin: String,
    /// The audit key that signed it (vkey).
    pub verifier_key: String,
    /// The log position the release reflects (its checkpoint's size).
    pub seq: u64,
    /// The chain hash at `seq`, hex.
    pub log_hash: String,
    /// The date the release counts on.
    pub reference_date: String,
    /// The signed checkpoint text.
    pub checkpoint: String,
    /// The release note text.
    pub note: String,
    /// BLAKE3 of manifest.json, hex.
    pub manifest_blake3: String,
    /// The tables, as read back.
    pub tables: Vec<DataTable>,
    /// Files of the release: those the manifest lists, the manifest and the note.
    pub files: usize,
    /// Identities between tables checked.
    pub identities: usize,
}

impl Verified {
    /// The release's table with this id (e.g. `CASELOAD_STATUS`), if any.
    pub fn table(&self, id: &str) -> Option<&DataTable> {
        self.tables.iter().find(|t| t.spec.id == id)
    }
}

/// Why a release does not verify: the first failure, naming the file and,
/// for a table, its row and cell.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file the verification needs (the note, the manifest, a table's
    /// data or structure file) cannot be read.
    #[error("{name}: cannot read: {source}")]
    Read {
        /// The file's name in the release directory.
        name: String,
        /// The read error.
        source: std::io::Error,
    },
    /// A file the manifest lists cannot be read (to check its size and
    /// digest).
    #[error("{name}: listed in {MANIFEST} but cannot be read: {source}")]
    ReadListed {
        /// The file's name as the manifest lists it.
        name: String,
        /// The read error.
        source: std::io::Error,
    },
    /// The release directory cannot be listed (to find unlisted files).
    #[error("{}: {source}", dir.display())]
    Dir {
        /// The release directory.
        dir: PathBuf,
        /// The error listing it.
        source: std::io::Error,
    },
    /// The release note does not verify under the given key.
    #[error("{NOTE}: {0}")]
    Note(#[source] NoteError),
    /// The manifest is not JSON.
    #[error("{MANIFEST}: not JSON: {0}")]
    ManifestJson(#[source] serde_json::Error),
    /// The checkpoint in the manifest does not verify under the given key.
    #[error("{MANIFEST}: checkpoint: {0}")]
    Checkpoint(#[source] NoteError),
    /// A table's data or structure file that does not read back.
    #[error("{file}: {source}")]
    Table {
        /// The file's name in the release directory.
        file: String,
        /// Why it does not read back against its structure.
        source: Box<sdmx::SdmxError>,
    },
    /// The identities between the tables read back do not hold (or a
    /// table they need is missing).
    #[error("tables: {0}")]
    Tables(#[from] tables::TablesError),
    /// A field of the manifest that is missing (or null).
    #[error("{MANIFEST}: field {0} is missing")]
    FieldMissing(&'static str),
    /// A field of the manifest that is not a string.
    #[error("{MANIFEST}: field {0} is not a string")]
    FieldNotString(&'static str),
    /// The release note's body is not a release body.
    #[error("{NOTE}: {0}")]
    NoteBody(#[from] NoteBodyError),
    /// A table whose rows do not hold against its structure or the
    /// disclosure threshold.
    #[error("{file}: {source}")]
    TableRows {
        /// The table's data file.
        file: String,
        /// The first row that does not hold.
        source: TableRowError,
    },
    /// A check that failed; the message names the file (and row, cell).
    #[error("{0}")]
    Refused(String),
}

/// Why a release note's body is not `<origin>`, `statistics-release v1`,
/// `seq <N>`, `manifest <64 hex>`, each ending in `\n`.
#[derive(Debug, thiserror::Error)]
pub enum NoteBodyError {
    /// The body does not end in `\n`.
    #[error("the body does not end in a newline")]
    NoFinalNewline,
    /// The body has another number of lines than four.
    #[error("the body does not have exactly four lines")]
    LineCount,
    /// The second line (shown) is not [`NOTE_TAG`].
    #[error("the second line is {0:?}, not {NOTE_TAG:?}")]
    Tag(String),
    /// The third line is not `seq <decimal>`.
    #[error("the third line is not `seq <decimal>`")]
    Seq,
    /// The fourth line is not `manifest <64 lower-case hex digits>`.
    #[error("the fourth line is not `manifest <64 lower-case hex digits>`")]
    Manifest,
}

/// The first row of a table that does not hold against its structure or
/// the disclosure threshold; `row` is the CSV line (the header is line 1).
#[derive(Debug, thiserror::Error)]
pub enum TableRowError {
    /// A code that is not in the structure's codelist (months: not `YYYY-MM`).
    #[error("row {row} ({cell}): {dim} {code:?} is not a code of the table's structure")]
    NotACode {
        /// The CSV line.
        row: usize,
        /// The row's cell, described by its codes.
        cell: String,
        /// The dimension.
        dim: &'static str,
        /// The code found.
        code: String,
    },
    /// A published count under the threshold.
    #[error(
        "row {row} ({cell}): OBS_VALUE {value} is published, but disclosure control hides counts under {min_cell}"
    )]
    UnderThreshold {
        /// The CSV line.
        row: usize,
        /// The row's cell, described by its codes.
        cell: String,
        /// The count published.
        value: u64,
        /// The smallest count the manifest allows to publish.
        min_cell: u64,
    },
}

impl From<String> for VerifyError {
    fn from(message: String) -> VerifyError {
        VerifyError::Refused(message)
    }
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, VerifyError> {
    std::fs::read(dir.join(name)).map_err(|source| VerifyError::Read {
        name: name.to_string(),
        source,
    })
}

fn field<'a>(v: &'a Value, name: &'static str) -> Result<&'a Value, VerifyError> {
    v.get(name)
        .filter(|x| !x.is_null())
        .ok_or(VerifyError::FieldMissing(name))
}

fn str_field<'a>(v: &'a Value, name: &'static str) -> Result<&'a str, VerifyError> {
    field(v, name)?.as_str().ok_or(VerifyError::FieldNotString(name))
}

/// Parses a release note body: `<origin>`, `statistics-release v1`,
/// `seq <N>`, `manifest <64 hex>`, each ending in `\n`, nothing else.
fn parse_body(body: &str) -> Result<(String, u64, String), NoteBodyError> {
    let lines: Vec<&str> = body
        .strip_suffix('\n')
        .ok_or(NoteBodyError::NoFinalNewline)?
        .split('\n')
        .collect();
    let [origin, tag, seq, manifest] = lines[..] else {
        return Err(NoteBodyError::LineCount);
    };
    if tag != NOTE_TAG {
        return Err(NoteBodyError::Tag(tag.to_string()));
    }
    let seq = seq
        .strip_prefix("seq ")
        .filter(|s| {
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (*s == "0" || !s.starts_with('0'))
        })
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(NoteBodyError::Seq)?;
    let manifest = manifest
        .strip_prefix("manifest ")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or(NoteBodyError::Manifest)?;
    Ok((origin.to_string(), seq, manifest.to_string()))
}

/// Verifies the release in `dir` with the verifier key `key`.
pub fn verify_dir(dir: &Path, key: &Verifier) -> Result<Verified, VerifyError> {
    // 1. The note: signed by the key, a release body.
    let note_bytes = read(dir, NOTE)?;
    let note = String::from_utf8(note_bytes).map_err(|_| format!("{NOTE}: not UTF-8"))?;
    let body = key.open_note(&note).map_err(VerifyError::Note)?;
    let (origin, seq, manifest_hash) = parse_body(body)?;
    if origin != key.name {
        return Err(format!(
            "{NOTE}: the origin line is {origin:?}, but the key is named {:?}",
            key.name
        )
        .into());
    }
    // 2. The manifest it signs.
    let manifest_bytes = read(dir, MANIFEST)?;
    let actual = blake3::hash(&manifest_bytes).to_hex().to_string();
    if actual != manifest_hash {
        return Err(format!("{MANIFEST}: BLAKE3 is {actual}, but {NOTE} signs {manifest_hash}").into());
    }
    let m: Value = serde_json::from_slice(&manifest_bytes).map_err(VerifyError::ManifestJson)?;
    if str_field(&m, "format")? != FORMAT {
        return Err(format!("{MANIFEST}: format is not {FORMAT:?}").into());
    }
    if str_field(&m, "origin")? != origin {
        return Err(format!("{MANIFEST}: origin differs from {NOTE}'s").into());
    }
    let position = field(&m, "log_position")?;
    if position["seq"].as_u64() != Some(seq) {
        return Err(format!("{MANIFEST}: log_position.seq differs from {NOTE}'s seq {seq}").into());
    }
    let log_hash = position["hash"]
        .as_str()
        .ok_or_else(|| format!("{MANIFEST}: log_position.hash is missing"))?
        .to_string();
    // 3. The checkpoint: signed by the same key, at the release's position.
    let checkpoint = str_field(&m, "checkpoint")?.to_string();
    let cp = key
        .verify_checkpoint(&checkpoint)
        .map_err(VerifyError::Checkpoint)?;
    if cp.size != seq {
        return Err(format!(
            "{MANIFEST}: the checkpoint's tree size is {}, but the release is at seq {seq}",
            cp.size
        )
        .into());
    }
    // 4. Files: each listed one present with its size and digest; nothing else.
    let files = field(&m, "files")?
        .as_array()
        .ok_or_else(|| format!("{MANIFEST}: files is not a list"))?;
    let mut listed = BTreeSet::new();
    for f in files {
        let name = f["name"]
            .as_str()
            .filter(|n| !n.is_empty() && !n.contains('/') && !n.contains('\\') && !n.starts_with('.'))
            .ok_or_else(|| format!("{MANIFEST}: a file entry has no plain name"))?;
        if name == MANIFEST || name == NOTE || !listed.insert(name.to_string()) {
            return Err(format!("{MANIFEST}: {name} is listed twice or is the manifest or note").into());
        }
        let bytes = std::fs::read(dir.join(name)).map_err(|source| VerifyError::ReadListed {
            name: name.to_string(),
            source,
        })?;
        if f["size"].as_u64() != Some(bytes.len() as u64) {
            return Err(format!("{name}: {} bytes, the manifest says {}", bytes.len(), f["size"]).into());
        }
        let digest = blake3::hash(&bytes).to_hex().to_string();
        if f["blake3"].as_str() != Some(digest.as_str()) {
            return Err(format!("{name}: BLAKE3 is {digest}, the manifest says {}", f["blake3"]).into());
        }
    }
    let mut present = BTreeSet::new();
    let dir_error = |source| VerifyError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    for e in std::fs::read_dir(dir).map_err(dir_error)? {
        let e = e.map_err(dir_error)?;
        present.insert(e.file_name().to_string_lossy().into_owned());
    }
    for name in &present {
        if name != MANIFEST && name != NOTE && !listed.contains(name) {
            return Err(format!("{name}: in the directory but not listed in {MANIFEST}").into());
        }
    }
    // 5. Tables: exactly the release's, each read back against its structure.
    let listed_tables = field(&m, "tables")?
        .as_array()
        .ok_or_else(|| format!("{MANIFEST}: tables is not a list"))?;
    let ids: Vec<&str> = listed_tables.iter().filter_map(|t| t["id"].as_str()).collect();
    let expected: Vec<&str> = TABLES.iter().map(|t| t.id).collect();
    if ids != expected {
        return Err(format!("{MANIFEST}: tables are {ids:?}, expected {expected:?}").into());
    }
    let min_cell = field(&m, "disclosure_control")?["min_cell"]
        .as_u64()
        .ok_or_else(|| format!("{MANIFEST}: disclosure_control.min_cell is missing"))?;
    let mut tables_read = Vec::new();
    for (entry, spec) in listed_tables.iter().zip(TABLES.iter()) {
        let data = entry["data"].as_str().unwrap_or_default();
        let structure = entry["structure"].as_str().unwrap_or_default();
        for name in [data, structure] {
            if !listed.contains(name) {
                return Err(format!(
                    "{MANIFEST}: table {} names {name:?}, which is not a listed file",
                    spec.id
                )
                .into());
            }
        }
        let st = sdmx::read_structure(&read(dir, structure)?).map_err(|e| VerifyError::Table {
            file: structure.to_string(),
            source: Box::new(e),
        })?;
        let dims: Vec<&str> = spec.dims.iter().map(|(d, _)| *d).collect();
        if st.dataflow != spec.id || st.dims != dims {
            return Err(format!(
                "{structure}: dataflow {} with dimensions {:?}, expected {} with {dims:?}",
                st.dataflow, st.dims, spec.id
            )
            .into());
        }
        let t = sdmx::read_csv(spec, &read(dir, data)?).map_err(|e| VerifyError::Table {
            file: data.to_string(),
            source: Box::new(e),
        })?;
        check_table(&t, &st, min_cell).map_err(|source| VerifyError::TableRows {
            file: data.to_string(),
            source,
        })?;
        tables_read.push(t);
    }
    // 6. Identities and the disclosure rule across tables.
    let identities = tables::identities(&tables_read)?;
    tables::check_identities(&tables_read, &identities)?;
    if let Some((c, name)) = tables::first_recoverable(&tables_read, &identities) {
        let t = &tables_read[c.table];
        return Err(format!(
            "{}.csv: row {} ({}): suppressed, but identity {name} has no other suppressed cell, so it can be recovered",
            t.spec.stem,
            c.row + 2,
            t.describe(c.row)
        ).into());
    }
    Ok(Verified {
        origin,
        verifier_key: key.vkey(),
        seq,
        log_hash,
        reference_date: str_field(&m, "reference_date")?.to_string(),
        checkpoint,
        note,
        manifest_blake3: manifest_hash,
        tables: tables_read,
        files: listed.len() + 2,
        identities: identities.len(),
    })
}

/// Codes against the structure's codelists (months as `YYYY-MM`), and no
/// published count under the threshold.
fn check_table(t: &DataTable, st: &sdmx::ParsedStructure, min_cell: u64) -> Result<(), TableRowError> {
    for (i, r) in t.rows.iter().enumerate() {
        for ((dim, _), code) in t.spec.dims.iter().zip(&r.key) {
            let ok = match st.codes.get(*dim) {
                Some(list) => list.contains(code),
                None => crate::domain::Date::parse(&format!("{code}-01")).is_some() && code.len() == 7,
            };
            if !ok {
                return Err(TableRowError::NotACode {
                    row: i + 2,
                    cell: t.describe(i),
                    dim,
                    code: code.clone(),
                });
            }
        }
        if r.obs_status() == ObsStatus::Observed && r.value.is_some_and(|v| v < min_cell) {
            return Err(TableRowError::UnderThreshold {
                row: i + 2,
                cell: t.describe(i),
                value: r.value.unwrap_or(0),
                min_cell,
            });
        }
    }
    Ok(())
}
