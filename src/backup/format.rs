//! The backup directory (docs/BACKUP.md): one sub-directory per
//! generation, `gen-000001` (full) then `gen-000002`, ... (incremental),
//! each holding the log records after the previous generation up to a
//! signed checkpoint, the person-key entries those records need, the access
//! file, and a manifest that binds them together and to the previous
//! generation.

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audit::merkle::{leaf_hash, Frontier, Hash};
use crate::log::record::{chain_hash, peek_chain_fields, GENESIS_PREV_HASH};
use crate::pii::hex;

/// The value of `format` in every manifest this build writes and reads.
pub const FORMAT: &str = "migreg-backup/1";
/// The generation's [`Manifest`], JSON; names and digests every other file.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The generation's records, in the audit export format
/// ([`crate::audit::export`]).
pub const LOG_FILE: &str = "log.export";
/// The person-key entries those records need, as stored ([`KeysWriter`]).
pub const KEYS_FILE: &str = "keys.bin";
/// The server's access file, byte for byte.
pub const ACCESS_FILE: &str = "access.json";
/// The signed checkpoint (C2SP signed note) of size `last_seq`.
pub const CHECKPOINT_FILE: &str = "checkpoint.txt";
/// Every audit key hand-over note the store held, in order (empty when the
/// key was never rotated).
pub const HANDOVERS_FILE: &str = "handovers.txt";
/// Generation directories: `gen-` and six digits.
pub const GENERATION_PREFIX: &str = "gen-";

/// The first 8 bytes of `keys.bin`.
pub const KEYS_MAGIC: &[u8; 8] = b"MIGREGKY";
/// The `keys.bin` format version this build writes and reads (header bytes 8..12).
pub const KEYS_VERSION: u32 = 1;
/// Bytes of the `keys.bin` header: magic, version, entry count (u64),
/// 4 reserved zeros.
pub const KEYS_HEADER_LEN: usize = 24;
/// The longest key-entry value (a wrapped key is 81 bytes).
const KEY_VALUE_MAX: usize = 1024;

/// A backup that cannot be read, or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading, writing or syncing a file or directory of the backup failed.
    #[error("i/o on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The backup is not what it must be; the message names the generation, file and what is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The hand-over notes of `handovers.txt` do not lead on from the
    /// trusted verifier key.
    #[error("the key hand-overs do not verify from the trusted key: {0}")]
    KeyChain(#[source] crate::audit::checkpoint::NoteError),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `full` (from seq 1) or `incremental` (after the previous generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Generation 1: the records from seq 1.
    Full,
    /// A later generation: the records after the previous generation's `last_seq`.
    Incremental,
}

/// Size and BLAKE3 of one file of a generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// The file's size.
    pub bytes: u64,
    /// The file's BLAKE3, hex.
    pub blake3: String,
}

/// One complete subtree of the Merkle frontier after `last_seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subtree {
    /// The subtree's height (it covers 2^level leaves).
    pub level: u8,
    /// The subtree's hash, hex.
    pub hash: String,
}

/// `manifest.json` of a generation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The backup format's name and version.
    pub format: String,
    /// The generation's number (1 for the first).
    pub generation: u32,
    /// Full or incremental.
    pub kind: Kind,
    /// When the client finished writing it (RFC 3339, UTC).
    pub created_at: String,
    /// The records held: `first_seq..=last_seq` (empty when first_seq > last_seq).
    pub first_seq: u64,
    /// The last record held (the checkpoint's size).
    pub last_seq: u64,
    /// Chain hash of record `first_seq - 1` (zeros for a full backup).
    pub prev_hash: String,
    /// Chain hash of record `last_seq`.
    pub last_hash: String,
    /// The checkpoint in `checkpoint.txt` commits to `last_seq` records with this root.
    pub checkpoint_root: String,
    /// The log's origin (the checkpoint's first line).
    pub origin: String,
    /// The audit verifier key trusted for this backup: the checkpoint
    /// verified with it, or with the key it handed over to through the notes
    /// in `handovers.txt`. The same in every generation.
    pub verifier_key: String,
    /// The Merkle frontier after `last_seq`: lets the next generation check
    /// its checkpoint's root without reading this one's records.
    pub frontier: Vec<Subtree>,
    /// Ids (hex) of the master keys wrapping the entries of `keys.bin`.
    pub master_key_ids: Vec<String>,
    /// Entries in `keys.bin`.
    pub keys: u64,
    /// BLAKE3 (hex) of the previous generation's `manifest.json`; absent for generation 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_manifest: Option<String>,
    /// Every other file of the generation.
    pub files: BTreeMap<String, FileDigest>,
}

impl Manifest {
    /// The `last_hash` field decoded (`Invalid` unless 64 hex digits).
    pub fn last_hash(&self) -> Result<Hash, BackupError> {
        decode_hash(&self.last_hash, "last_hash")
    }

    /// The `prev_hash` field decoded (`Invalid` unless 64 hex digits).
    pub fn prev_hash(&self) -> Result<Hash, BackupError> {
        decode_hash(&self.prev_hash, "prev_hash")
    }

    /// The `frontier` field as a [`Frontier`] of `last_seq` leaves, ready
    /// to continue with the next generation's records (`Invalid` when a hash
    /// is not hex or the levels do not fit `last_seq`).
    pub fn frontier(&self) -> Result<Frontier, BackupError> {
        let subtrees = self
            .frontier
            .iter()
            .map(|s| Ok((s.level, decode_hash(&s.hash, "frontier")?)))
            .collect::<Result<Vec<_>, BackupError>>()?;
        Frontier::resume(self.last_seq, subtrees)
            .map_err(|e| BackupError::Invalid(format!("generation {}: frontier: {e}", self.generation)))
    }

    /// Sets the `frontier` field from `f` (its subtrees, largest first,
    /// hashes in hex).
    pub fn set_frontier(&mut self, f: &Frontier) {
        self.frontier = f
            .subtrees()
            .iter()
            .map(|(level, h)| Subtree {
                level: *level,
                hash: hex::encode(h),
            })
            .collect();
    }
}

/// A 32-byte hash from the 64 hex digits of manifest field `field`
/// (named in the `Invalid` error otherwise).
pub fn decode_hash(text: &str, field: &str) -> Result<Hash, BackupError> {
    let mut out = [0u8; 32];
    if hex::decode_32(text.as_bytes(), &mut out) {
        Ok(out)
    } else {
        Err(BackupError::Invalid(format!(
            "manifest field {field}: not 64 hex digits"
        )))
    }
}

/// The directory name of generation `n`.
pub fn generation_dir(root: &Path, n: u32) -> PathBuf {
    root.join(format!("{GENERATION_PREFIX}{n:06}"))
}

/// A generation found in a backup directory.
#[derive(Clone, Debug)]
pub struct Generation {
    /// The generation's directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// BLAKE3 of its manifest file.
    pub manifest_digest: String,
}

/// Reads every complete generation of `root` (ignoring `*.partial`
/// directories, which a backup interrupted before it finished leaves) and
/// checks that they form one chain: numbered from 1 without gaps, each
/// starting right after the previous one with its hash, naming the previous
/// manifest's digest, and signed by the same verifier key. File contents are
/// not read here (see [`check_file`]).
pub fn read_generations(root: &Path) -> Result<Vec<Generation>, BackupError> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io(root))? {
        let entry = entry.map_err(io(root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_prefix(GENERATION_PREFIX) else {
            continue;
        };
        if n.ends_with(".partial") {
            continue;
        }
        let n: u32 = n
            .parse()
            .map_err(|_| BackupError::Invalid(format!("{name}: not a generation directory name")))?;
        numbers.push(n);
    }
    numbers.sort_unstable();
    let mut out: Vec<Generation> = Vec::with_capacity(numbers.len());
    for (i, n) in numbers.into_iter().enumerate() {
        let want = i as u32 + 1;
        if n != want {
            return Err(BackupError::Invalid(format!(
                "generation {want} is missing (found {}{n:06} after it)",
                GENERATION_PREFIX
            )));
        }
        let dir = generation_dir(root, n);
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| BackupError::Invalid(format!("generation {n}: {MANIFEST_FILE}: {e}")))?;
        let bad = |what: String| BackupError::Invalid(format!("generation {n}: {what}"));
        if manifest.format != FORMAT {
            return Err(bad(format!(
                "format {:?}, this build reads {FORMAT:?}",
                manifest.format
            )));
        }
        if manifest.generation != n {
            return Err(bad(format!(
                "the manifest says generation {}",
                manifest.generation
            )));
        }
        match out.last() {
            None => {
                if manifest.kind != Kind::Full
                    || manifest.first_seq != 1
                    || manifest.prev_hash()? != GENESIS_PREV_HASH
                {
                    return Err(bad("the first generation is not a full backup from seq 1".into()));
                }
                if manifest.previous_manifest.is_some() {
                    return Err(bad("the first generation names a previous manifest".into()));
                }
            }
            Some(prev) => {
                let p = &prev.manifest;
                if manifest.kind != Kind::Incremental {
                    return Err(bad("a generation after the first must be incremental".into()));
                }
                if manifest.first_seq != p.last_seq + 1 || manifest.prev_hash != p.last_hash {
                    return Err(bad(format!(
                        "starts at seq {} after hash {}, but generation {} ends at seq {} with hash {}",
                        manifest.first_seq, manifest.prev_hash, p.generation, p.last_seq, p.last_hash
                    )));
                }
                if manifest.previous_manifest.as_deref() != Some(prev.manifest_digest.as_str()) {
                    return Err(bad(format!(
                        "names previous manifest {:?}, but generation {}'s manifest has BLAKE3 {}",
                        manifest.previous_manifest, p.generation, prev.manifest_digest
                    )));
                }
                if manifest.verifier_key != p.verifier_key {
                    return Err(bad(format!(
                        "its checkpoint verifier key {:?} differs from generation {}'s {:?}",
                        manifest.verifier_key, p.generation, p.verifier_key
                    )));
                }
            }
        }
        if manifest.last_seq + 1 < manifest.first_seq {
            return Err(bad("last_seq is before first_seq - 1".into()));
        }
        out.push(Generation {
            dir,
            manifest_digest: blake3::hash(&bytes).to_hex().to_string(),
            manifest,
        });
    }
    Ok(out)
}

/// BLAKE3 and size of a file, read back from disk.
pub fn digest_file(path: &Path) -> Result<FileDigest, BackupError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = blake3::Hasher::new();
    let bytes = std::io::copy(&mut BufReader::with_capacity(1 << 20, file), &mut hasher).map_err(io(path))?;
    Ok(FileDigest {
        bytes,
        blake3: hasher.finalize().to_hex().to_string(),
    })
}

/// Checks a generation's file against its manifest.
pub fn check_file(g: &Generation, name: &str) -> Result<PathBuf, BackupError> {
    let n = g.manifest.generation;
    let want = g
        .manifest
        .files
        .get(name)
        .ok_or_else(|| BackupError::Invalid(format!("generation {n}: the manifest lists no {name}")))?;
    let path = g.dir.join(name);
    let got = digest_file(&path)?;
    if &got != want {
        return Err(BackupError::Invalid(format!(
            "generation {n}: {name} has {} bytes with BLAKE3 {}, the manifest says {} bytes with BLAKE3 {}: \
             the file was changed or damaged",
            got.bytes, got.blake3, want.bytes, want.blake3
        )));
    }
    Ok(path)
}

/// Follows a chain of records: each must come next, link to the one before
/// and carry its own chain hash; the Merkle frontier grows with them.
pub struct ChainFollower {
    /// The last seq followed (0: none).
    pub seq: u64,
    /// The chain hash of that record (the genesis hash when none).
    pub hash: Hash,
    /// The Merkle frontier over the records followed.
    pub frontier: Frontier,
}

/// Why a record does not continue a [`ChainFollower`]'s chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// Not the next seq.
    #[error("seq {seq} where {expected} was expected")]
    OutOfOrder {
        /// The seq given.
        seq: u64,
        /// The seq that comes next (the last followed + 1).
        expected: u64,
    },
    /// The record's chain fields cannot be read.
    #[error("seq {seq}: {source}")]
    Undecodable {
        /// The record's position in the chain.
        seq: u64,
        /// Why its chain fields cannot be read.
        source: crate::log::record::DecodeError,
    },
    /// The record names another seq than its position.
    #[error("seq {seq}: the record says seq {recorded}")]
    SeqMismatch {
        /// The record's position in the chain.
        seq: u64,
        /// The seq the record's own field says.
        recorded: u64,
    },
    /// The record's previous hash is not the chain hash before it.
    #[error("seq {seq}: previous-hash link mismatch (this record or the one before was altered)")]
    LinkMismatch {
        /// The record's position in the chain.
        seq: u64,
    },
    /// The stored chain hash is not the one the record's bytes give.
    #[error("seq {seq}: chain hash mismatch: the record bytes were altered")]
    HashMismatch {
        /// The record's position in the chain.
        seq: u64,
    },
}

impl ChainFollower {
    /// Continues after record `seq` with chain hash `hash` and `frontier` (of `seq` leaves).
    pub fn after(seq: u64, hash: Hash, frontier: Frontier) -> ChainFollower {
        ChainFollower { seq, hash, frontier }
    }

    /// Follows record `seq` (its bytes and stored chain hash): it must be
    /// the next seq, say so itself, link to the last chain hash and carry
    /// the right chain hash. Then its leaf joins the frontier. On an error
    /// nothing changes.
    pub fn push(&mut self, seq: u64, record: &[u8], stored: &Hash) -> Result<(), ChainError> {
        if seq != self.seq + 1 {
            return Err(ChainError::OutOfOrder {
                seq,
                expected: self.seq + 1,
            });
        }
        let (seq_field, prev) =
            peek_chain_fields(record).map_err(|source| ChainError::Undecodable { seq, source })?;
        if seq_field != seq {
            return Err(ChainError::SeqMismatch {
                seq,
                recorded: seq_field,
            });
        }
        if prev != self.hash {
            return Err(ChainError::LinkMismatch { seq });
        }
        let h = chain_hash(&self.hash, record);
        if &h != stored {
            return Err(ChainError::HashMismatch { seq });
        }
        self.frontier.push(leaf_hash(record));
        self.seq = seq;
        self.hash = h;
        Ok(())
    }
}

/// Writes `keys.bin`: header (magic, version, count, reserved), then entries
/// `id_len u16 | id | value_len u16 | value`.
pub struct KeysWriter {
    w: BufWriter<std::fs::File>,
    path: PathBuf,
    count: u64,
}

impl KeysWriter {
    /// Creates (or truncates) `path` with a zeroed header; [`KeysWriter::finish`]
    /// writes the real one.
    pub fn create(path: &Path) -> Result<KeysWriter, BackupError> {
        let file = std::fs::File::create(path).map_err(io(path))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(&[0u8; KEYS_HEADER_LEN]).map_err(io(path))?;
        Ok(KeysWriter {
            w,
            path: path.to_path_buf(),
            count: 0,
        })
    }

    /// Appends one entry: a `person_keys` id (a case id, or the blind-index
    /// key's) and its value as stored (at most 1024 bytes).
    pub fn push(&mut self, id: &[u8], value: &[u8]) -> Result<(), BackupError> {
        if id.len() > u16::MAX as usize || value.len() > KEY_VALUE_MAX {
            return Err(BackupError::Invalid("a key entry is too long".into()));
        }
        let path = self.path.clone();
        self.w
            .write_all(&(id.len() as u16).to_be_bytes())
            .map_err(io(&path))?;
        self.w.write_all(id).map_err(io(&path))?;
        self.w
            .write_all(&(value.len() as u16).to_be_bytes())
            .map_err(io(&path))?;
        self.w.write_all(value).map_err(io(&path))?;
        self.count += 1;
        Ok(())
    }

    /// Writes the header with the count and syncs; returns the count.
    pub fn finish(self) -> Result<u64, BackupError> {
        use std::io::{Seek, SeekFrom};
        let path = self.path;
        let mut file = self.w.into_inner().map_err(|e| BackupError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        let mut header = [0u8; KEYS_HEADER_LEN];
        header[..8].copy_from_slice(KEYS_MAGIC);
        header[8..12].copy_from_slice(&KEYS_VERSION.to_be_bytes());
        header[12..20].copy_from_slice(&self.count.to_be_bytes());
        file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
        file.write_all(&header).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        Ok(self.count)
    }
}

/// Reads every entry of a `keys.bin`, checking its framing.
pub fn read_keys(
    path: &Path,
    mut each: impl FnMut(&[u8], &[u8]) -> Result<(), BackupError>,
) -> Result<u64, BackupError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let bad = |what: &str| BackupError::Invalid(format!("{}: {what}", path.display()));
    let mut header = [0u8; KEYS_HEADER_LEN];
    r.read_exact(&mut header)
        .map_err(|_| bad("shorter than its header"))?;
    if &header[..8] != KEYS_MAGIC {
        return Err(bad("bad magic (expected MIGREGKY)"));
    }
    if u32::from_be_bytes(header[8..12].try_into().expect("4")) != KEYS_VERSION {
        return Err(bad("unknown keys file version"));
    }
    if header[20..24] != [0; 4] {
        return Err(bad("reserved header bytes are not zero"));
    }
    let count = u64::from_be_bytes(header[12..20].try_into().expect("8"));
    let mut id = Vec::new();
    let mut value = Vec::new();
    for _ in 0..count {
        let mut len = [0u8; 2];
        r.read_exact(&mut len)
            .map_err(|_| bad("the file ends inside an entry"))?;
        id.resize(u16::from_be_bytes(len) as usize, 0);
        r.read_exact(&mut id)
            .map_err(|_| bad("the file ends inside an entry"))?;
        r.read_exact(&mut len)
            .map_err(|_| bad("the file ends inside an entry"))?;
        let n = u16::from_be_bytes(len) as usize;
        if n > KEY_VALUE_MAX {
            return Err(bad("a key entry value is too long"));
        }
        value.resize(n, 0);
        r.read_exact(&mut value)
            .map_err(|_| bad("the file ends inside an entry"))?;
        each(&id, &value)?;
    }
    let mut extra = [0u8; 1];
    if r.read(&mut extra).map_err(io(path))? != 0 {
        return Err(bad("trailing bytes after the last entry"));
    }
    Ok(count)
}

/// Fsyncs a directory (so a rename or a new file in it is durable).
pub fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// The key chain of a generation: its hand-over notes (`handovers.txt`,
/// empty when the key was never rotated) followed from the trusted key.
pub fn key_chain(
    trusted: &crate::audit::checkpoint::Verifier,
    notes_text: &str,
) -> Result<crate::audit::handover::KeyChain, BackupError> {
    let notes = crate::audit::handover::split_notes(notes_text);
    crate::audit::handover::KeyChain::follow_from(trusted.clone(), &notes).map_err(BackupError::KeyChain)
}
