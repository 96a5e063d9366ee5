//! Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes,
//! signed with Ed25519; the checkpoint history; the rule that the log never
//! signs two inconsistent checkpoints.
//!
//! Note text (body), each line ending in `\n`:
//! ```text
//! <origin>
//! <tree size, decimal, no leading zeros>
//! <base64 (RFC 4648 §4, padded) of the 32-byte root>
//! ```
//! then an empty line and one line per signature:
//! `— <key name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>`
//! (U+2014 em dash, space). The signature covers the body bytes, final `\n`
//! included. Key id = first 4 bytes of `SHA-256(key name || 0x0A || 0x01 || public key)`.
//! Verifier key (vkey): `<key name>+<key id, 8 lower-case hex>+<base64(0x01 || public key)>`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::handover::{cosign, sign_handover, Handover, KeyChain, TREE_KEY_HANDOVERS};
use super::merkle::{self, Hash};
use super::tree::{MerkleTree, TreeError};
use crate::limits::{AUDIT_NOTE_BYTES_MAX, AUDIT_NOTE_SIGNATURES_MAX};

/// The default origin (log identity and key name).
pub const DEFAULT_ORIGIN: &str = "registry.local/regularization-log";
/// Signature type byte of Ed25519 in C2SP signed notes.
pub const SIG_TYPE_ED25519: u8 = 0x01;
/// Sled tree of issued checkpoints: size u64 BE -> signed note text.
pub const TREE_CHECKPOINTS: &str = "checkpoints";
/// File name of the signing key inside the data directory.
pub const KEY_FILE_NAME: &str = "audit-signing.key";
const EM_DASH_PREFIX: &str = "\u{2014} ";

/// Errors of notes, keys and checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// A verifier key (vkey) or key name that does not parse, or whose key
    /// id does not match its name and key; the text says what is wrong.
    #[error("malformed verifier key: {0}")]
    BadVerifierKey(String),
    /// A signing key file that does not parse or holds the key of another
    /// origin, or a key that could not be generated; the text says why.
    #[error("malformed signing key file: {0}")]
    BadSigningKey(String),
    /// A note that does not split into a body and well-formed signature
    /// lines (too large, no blank line, bad signature line), or stored
    /// checkpoint or hand-over bytes that cannot be read as a note.
    #[error("malformed note: {0}")]
    Malformed(String),
    /// A note body that is not a checkpoint body (origin line, decimal tree
    /// size, base64 32-byte root); the text names the faulty line.
    #[error("malformed checkpoint body: {0}")]
    BadCheckpoint(String),
    /// The note carries no signature line of the expected key.
    #[error("no signature by key {name}+{key_id} on the note (signed by: {found})")]
    NoSignature {
        /// Name of the expected key.
        name: String,
        /// Key id of the expected key, 8 hex digits.
        key_id: String,
        /// The keys whose signature lines the note does carry
        /// (`name+keyid`, comma-separated), or `nobody`.
        found: String,
    },
    /// The note has a signature line of the expected key, but it does not
    /// verify (strict Ed25519) over the body.
    #[error("the signature by {name}+{key_id} does not verify: forged or the note was altered")]
    BadSignature {
        /// Name of the key.
        name: String,
        /// Key id of the key, 8 hex digits.
        key_id: String,
    },
    /// A checkpoint's origin line differs from the name of the key that
    /// signed it.
    #[error("checkpoint origin {found:?} is not the expected {expected:?}")]
    WrongOrigin {
        /// The verifying key's name.
        expected: String,
        /// The checkpoint's origin line.
        found: String,
    },
    /// A key hand-over note is invalid, or does not link up with the chain
    /// or the store.
    #[error("key hand-over #{number}: {reason}")]
    Handover {
        /// Position of the hand-over in the chain, 1-based.
        number: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint verifies under a key of the chain, but its tree size is
    /// outside the sizes the hand-overs let that key sign.
    #[error(
        "the checkpoint at size {size} is signed by {key}, which the key hand-overs allow for sizes {range} only"
    )]
    OutsideKeyRange {
        /// The checkpoint's tree size.
        size: u64,
        /// The vkey of the key that signed it.
        key: String,
        /// The sizes that key may sign, e.g. `0..=10` or `10 and above`.
        range: String,
    },
    /// A checkpoint at the tree size of a hand-over has a different root
    /// than the hand-over names.
    #[error("the checkpoint at size {size} has root {found}, but the key hand-over at that size names root {expected}")]
    HandoverRoot {
        /// The tree size of the checkpoint and the hand-over.
        size: u64,
        /// The checkpoint's root, hex.
        found: String,
        /// The root the hand-over names, hex.
        expected: String,
    },
    /// Reading or writing a key file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Errors of issuing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A note, key or hand-over failed to parse or verify (for a stored
    /// checkpoint: it does not verify under the store's key chain).
    #[error(transparent)]
    Note(#[from] NoteError),
    /// Reading the Merkle tree (root or consistency proof) failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The sled trees of checkpoints or hand-overs failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// Signing was refused: the tree at the new size is not consistent with
    /// the latest checkpoint (smaller, or the consistency proof fails).
    #[error("refusing to sign size {new}: not consistent with the checkpoint at size {old}: {reason}")]
    Inconsistent {
        /// Tree size of the latest checkpoint.
        old: u64,
        /// Tree size that was to be signed.
        new: u64,
        /// Why the two are not consistent.
        reason: String,
    },
    /// No checkpoint was issued at exactly this tree size.
    #[error("no checkpoint at size {0}")]
    NotFound(u64),
    /// The signing key does not fit the store: not the key its hand-overs
    /// end with, already handed over, or (for a hand-over) a new key that
    /// is the current one or has another origin.
    #[error("audit key: {0}")]
    WrongKey(String),
}

/// A tree head: the body of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (the signing key's name).
    pub origin: String,
    /// Tree size: the events `1..=size` it commits to.
    pub size: u64,
    /// The Merkle root of those events.
    pub root: Hash,
}

impl Checkpoint {
    /// The note body: three lines, each ending in `\n`.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// Parses a note body (extension lines after the third are allowed and ignored).
    pub fn parse_body(body: &str) -> Result<Checkpoint, NoteError> {
        let bad = |m: &str| NoteError::BadCheckpoint(m.to_string());
        let body = body
            .strip_suffix('\n')
            .ok_or_else(|| bad("body does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("empty origin line"))?;
        let size_line = lines.next().ok_or_else(|| bad("missing tree size line"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(bad("tree size is not a decimal number without leading zeros"));
        }
        let size: u64 = size_line
            .parse()
            .map_err(|_| bad("tree size does not fit in 64 bits"))?;
        let root_line = lines.next().ok_or_else(|| bad("missing root hash line"))?;
        let root = B64
            .decode(root_line)
            .map_err(|_| bad("root hash is not base64"))?;
        let root: Hash = root.try_into().map_err(|_| bad("root hash is not 32 bytes"))?;
        if lines.any(|l| l.is_empty()) {
            return Err(bad("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

/// C2SP key id of an Ed25519 key: `SHA-256(name || 0x0A || 0x01 || key)[..4]`.
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, SIG_TYPE_ED25519]);
    h.update(public);
    h.finalize()[..4].try_into().expect("4 bytes")
}

/// A key name that is empty or holds a space or a `+` (shown).
#[derive(Debug, thiserror::Error)]
#[error("key name {0:?} must be non-empty without spaces or '+'")]
struct BadKeyName(String);

fn check_name(name: &str) -> Result<(), BadKeyName> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(BadKeyName(name.to_string()));
    }
    Ok(())
}

/// Verifies notes signed by one Ed25519 key.
#[derive(Clone, Debug)]
pub struct Verifier {
    /// The key's name (the note's signature line names it).
    pub name: String,
    /// The C2SP key id: the first 4 bytes of SHA-256 over name, type and key.
    pub key_id: [u8; 4],
    key: VerifyingKey,
}

impl Verifier {
    /// A verifier of `key` under the key name `name` (non-empty, without
    /// spaces or `+`); computes the key id.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Verifier, NoteError> {
        check_name(name).map_err(|e| NoteError::BadVerifierKey(e.to_string()))?;
        Ok(Verifier {
            name: name.to_string(),
            key_id: key_id(name, key.as_bytes()),
            key,
        })
    }

    /// Parses a vkey `<name>+<8 hex key id>+<base64(0x01 || key)>`.
    pub fn parse(vkey: &str) -> Result<Verifier, NoteError> {
        let bad = |m: &str| NoteError::BadVerifierKey(m.to_string());
        let vkey = vkey.trim();
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<key id hex>+<base64 key>"));
        };
        check_name(name).map_err(|e| NoteError::BadVerifierKey(e.to_string()))?;
        if id_hex.len() != 8 {
            return Err(bad("key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id_hex, 16).map_err(|_| bad("key id is not hex"))?;
        let raw = B64.decode(key_b64).map_err(|_| bad("key is not base64"))?;
        if raw.len() != 33 || raw[0] != SIG_TYPE_ED25519 {
            return Err(bad("key is not 0x01 followed by a 32-byte Ed25519 public key"));
        }
        let public: [u8; 32] = raw[1..].try_into().expect("32");
        let key = VerifyingKey::from_bytes(&public).map_err(|_| bad("not a valid Ed25519 public key"))?;
        let v = Verifier::new(name, key)?;
        if v.key_id != id.to_be_bytes() {
            return Err(bad("key id does not match the name and key"));
        }
        Ok(v)
    }

    /// The vkey string.
    pub fn vkey(&self) -> String {
        let mut raw = vec![SIG_TYPE_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            crate::hex::encode(&self.key_id),
            B64.encode(raw)
        )
    }

    fn id_string(&self) -> String {
        crate::hex::encode(&self.key_id)
    }

    /// Verifies a signed note and returns its body. Every signature line is
    /// parsed; the first line with this key's name and key id must verify
    /// (strict Ed25519); lines of other keys are ignored.
    pub fn open_note<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let (body, sigs) = split_note(note)?;
        let mut found = Vec::new();
        for line in &sigs {
            if line.name == self.name && line.key_id == self.key_id {
                let sig = ed25519_dalek::Signature::from_bytes(&line.signature);
                return match self.key.verify_strict(body.as_bytes(), &sig) {
                    Ok(()) => Ok(body),
                    Err(_) => Err(NoteError::BadSignature {
                        name: self.name.clone(),
                        key_id: self.id_string(),
                    }),
                };
            }
            found.push(format!("{}+{}", line.name, crate::hex::encode(&line.key_id)));
        }
        Err(NoteError::NoSignature {
            name: self.name.clone(),
            key_id: self.id_string(),
            found: if found.is_empty() {
                "nobody".into()
            } else {
                found.join(", ")
            },
        })
    }

    /// Verifies a signed checkpoint: signature, body format, and origin == key name.
    pub fn verify_checkpoint(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let body = self.open_note(note)?;
        let cp = Checkpoint::parse_body(body)?;
        if cp.origin != self.name {
            return Err(NoteError::WrongOrigin {
                expected: self.name.clone(),
                found: cp.origin,
            });
        }
        Ok(cp)
    }
}

pub(crate) struct SigLine {
    name: String,
    key_id: [u8; 4],
    signature: [u8; 64],
}

/// Splits a note into its body (ending in `\n`) and parsed signature lines.
pub(crate) fn split_note(note: &str) -> Result<(&str, Vec<SigLine>), NoteError> {
    let bad = |m: &str| NoteError::Malformed(m.to_string());
    if note.len() > AUDIT_NOTE_BYTES_MAX {
        return Err(bad("note too large"));
    }
    if !note.ends_with('\n') {
        return Err(bad("note does not end in a newline"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| bad("no blank line before the signatures"))?;
    let body = &note[..split + 1];
    let sig_text = &note[split + 2..];
    if body.len() <= 1 {
        return Err(bad("empty body"));
    }
    let mut sigs = Vec::new();
    for line in sig_text.strip_suffix('\n').unwrap_or(sig_text).split('\n') {
        let rest = line
            .strip_prefix(EM_DASH_PREFIX)
            .ok_or_else(|| bad("signature line does not start with an em dash and a space"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| bad("signature line has no signature"))?;
        check_name(name).map_err(|e| NoteError::Malformed(e.to_string()))?;
        let raw = B64.decode(b64).map_err(|_| bad("signature is not base64"))?;
        if raw.len() < 5 {
            return Err(bad("signature too short"));
        }
        let key_id: [u8; 4] = raw[..4].try_into().expect("4");
        // Signatures of other types/lengths are kept out: only Ed25519 (64 bytes) is known here.
        if raw.len() != 4 + 64 {
            sigs.push(SigLine {
                name: format!("{name} (non-Ed25519)"),
                key_id,
                signature: [0; 64],
            });
            continue;
        }
        sigs.push(SigLine {
            name: name.to_string(),
            key_id,
            signature: raw[4..].try_into().expect("64"),
        });
        if sigs.len() > AUDIT_NOTE_SIGNATURES_MAX {
            return Err(bad("too many signature lines"));
        }
    }
    if sigs.is_empty() {
        return Err(bad("no signature lines"));
    }
    Ok((body, sigs))
}

/// The log's signing key and its name (the origin).
pub struct NoteSigner {
    /// The key's name: the origin of the log's checkpoints.
    pub name: String,
    key: SigningKey,
    verifier: Verifier,
}

impl NoteSigner {
    /// A signer with `key` under the name `name` (non-empty, without spaces
    /// or `+`), which is also the origin of the checkpoints it signs.
    pub fn new(name: &str, key: SigningKey) -> Result<NoteSigner, NoteError> {
        let verifier = Verifier::new(name, key.verifying_key())?;
        Ok(NoteSigner {
            name: name.to_string(),
            key,
            verifier,
        })
    }

    /// A fresh key from the OS random source.
    pub fn generate(name: &str) -> Result<NoteSigner, NoteError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)
            .map_err(|e| NoteError::BadSigningKey(format!("random source: {e}")))?;
        let key = SigningKey::from_bytes(&seed);
        zeroize::Zeroize::zeroize(&mut seed);
        NoteSigner::new(name, key)
    }

    /// The verifier of this key (its public half), e.g. for its vkey.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The key file text: `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || 32-byte seed)>`
    /// (the Go `note` signer key encoding).
    pub fn to_key_file(&self) -> String {
        let mut raw = vec![SIG_TYPE_ED25519];
        raw.extend_from_slice(&self.key.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}\n",
            self.name,
            crate::hex::encode(&self.verifier.key_id),
            B64.encode(&raw)
        )
    }

    /// Parses key file text as written by [`NoteSigner::to_key_file`]; the
    /// key id in it must match the name and key.
    pub fn parse_key_file(text: &str) -> Result<NoteSigner, NoteError> {
        let bad = |m: &str| NoteError::BadSigningKey(m.to_string());
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("does not start with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected PRIVATE+KEY+<name>+<key id>+<base64 key>"));
        };
        let raw = B64.decode(b64).map_err(|_| bad("key is not base64"))?;
        if raw.len() != 33 || raw[0] != SIG_TYPE_ED25519 {
            return Err(bad("key is not 0x01 followed by a 32-byte Ed25519 seed"));
        }
        let seed: [u8; 32] = raw[1..].try_into().expect("32");
        let signer = NoteSigner::new(name, SigningKey::from_bytes(&seed))?;
        if crate::hex::encode(&signer.verifier.key_id) != id_hex {
            return Err(bad("key id does not match the key"));
        }
        Ok(signer)
    }

    /// Loads the key in `path`, or creates it there (mode 0600) when `create`
    /// is true and the file does not exist. A key whose name differs from
    /// `origin` (when given) is refused.
    pub fn load_or_create(
        path: &Path,
        origin: Option<&str>,
        create: bool,
    ) -> Result<(NoteSigner, bool), NoteError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let signer = NoteSigner::parse_key_file(&text)?;
                if let Some(o) = origin {
                    if o != signer.name {
                        return Err(NoteError::BadSigningKey(format!(
                            "the key in {} is for origin {:?}, not {:?}",
                            path.display(),
                            signer.name,
                            o
                        )));
                    }
                }
                Ok((signer, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let signer = NoteSigner::generate(origin.unwrap_or(DEFAULT_ORIGIN))?;
                write_private(path, signer.to_key_file().as_bytes())?;
                Ok((signer, true))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Signs a note body (which must end in `\n` and have no blank line).
    pub fn sign_body(&self, body: &str) -> String {
        debug_assert!(body.ends_with('\n') && !body.contains("\n\n"));
        let sig = self.key.sign(body.as_bytes());
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.verifier.key_id);
        raw.extend_from_slice(&sig.to_bytes());
        format!("{body}\n{EM_DASH_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }

    /// Signs a checkpoint: its body followed by this key's signature line.
    pub fn sign_checkpoint(&self, cp: &Checkpoint) -> String {
        self.sign_body(&cp.body())
    }

    /// A C2SP cosignature/v1 line of this key under the cosigner name
    /// `cosigner`, over a checkpoint's note body, at `time` (src/audit/cosign.rs).
    pub fn cosign_body(&self, cosigner: &str, body: &str, time: u64) -> String {
        super::cosign::sign(&self.key, cosigner, body, time)
    }

    /// The cosigner verifier key of this key under the name `cosigner`.
    pub fn cosigner_vkey(&self, cosigner: &str) -> String {
        super::cosign::vkey(cosigner, &self.key.verifying_key())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A checkpoint and its signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The tree head.
    pub checkpoint: Checkpoint,
    /// The signed note, as text.
    pub note: String,
    /// The vkey of the key that verified it (after a key rotation, checkpoints
    /// before the hand-over are signed by an earlier key).
    pub signed_by: String,
}

/// Issues checkpoints over a [`MerkleTree`] and keeps their history.
#[derive(Clone)]
pub struct Checkpointer {
    tree: MerkleTree,
    history: sled::Tree,
    handovers: sled::Tree,
    signer: Arc<NoteSigner>,
    /// The store's keys: the first key, then one per hand-over, the last
    /// being `signer`'s. Replaced when this process hands over.
    chain: Arc<Mutex<KeyChain>>,
    lock: Arc<Mutex<()>>,
    /// Checkpoints signed by this process (metrics).
    signed: crate::metrics::Counter,
}

/// Reads the hand-over notes stored in `db` (tree `key_handovers`), in order.
pub fn stored_handovers(db: &sled::Db) -> Result<Vec<String>, CheckpointError> {
    let tree = db.open_tree(TREE_KEY_HANDOVERS)?;
    let mut notes = Vec::new();
    for kv in tree.iter() {
        let (k, v) = kv?;
        let number = u64::from_be_bytes(
            k.as_ref()
                .try_into()
                .map_err(|_| NoteError::Malformed(format!("{TREE_KEY_HANDOVERS}: a key is not 8 bytes")))?,
        );
        if number != notes.len() as u64 + 1 {
            return Err(NoteError::Handover {
                number: notes.len() + 1,
                reason: format!("missing from the store (the next stored one is #{number})"),
            }
            .into());
        }
        let note = String::from_utf8(v.to_vec()).map_err(|_| NoteError::Handover {
            number: notes.len() + 1,
            reason: "the stored note is not UTF-8".into(),
        })?;
        notes.push(note);
    }
    Ok(notes)
}

/// The key chain of a store: the stored hand-overs followed from the first
/// one's old key (each verified under both its keys). Without hand-overs:
/// `own` alone.
pub fn store_chain(db: &sled::Db, own: &Verifier) -> Result<KeyChain, CheckpointError> {
    Ok(handover_chain(&stored_handovers(db)?)?.unwrap_or_else(|| KeyChain::single(own.clone())))
}

/// The chain of a list of hand-overs followed from the first one's old key
/// (None without hand-overs). This checks that they link up and are signed
/// by both keys, not that the first key is one to trust.
pub fn handover_chain(notes: &[String]) -> Result<Option<KeyChain>, NoteError> {
    match notes.first() {
        None => Ok(None),
        Some(n) => Ok(Some(KeyChain::follow(first_old_key(n)?, notes)?)),
    }
}

/// The `old` key named by the first hand-over note, read without checking
/// any signature: the key a chain of those hand-overs starts from. Errors
/// name the note as hand-over #1.
pub fn first_old_key(note: &str) -> Result<Verifier, NoteError> {
    let (body, _) = split_note(note)?;
    let line = body
        .lines()
        .find_map(|l| l.strip_prefix("old "))
        .ok_or_else(|| NoteError::Handover {
            number: 1,
            reason: "no `old` line".into(),
        })?;
    Verifier::parse(line).map_err(|e| NoteError::Handover {
        number: 1,
        reason: format!("old key: {e}"),
    })
}

impl Checkpointer {
    /// Opens the history with the key that signs from now on. The store's
    /// key chain must end with `signer`'s key, and the latest checkpoint
    /// must verify under the chain; otherwise the store is refused, naming
    /// the key it expects.
    pub fn open(
        db: &sled::Db,
        tree: MerkleTree,
        signer: NoteSigner,
    ) -> Result<Checkpointer, CheckpointError> {
        let chain = store_chain(db, signer.verifier())?;
        if chain.current().vkey() != signer.verifier().vkey() {
            return Err(CheckpointError::WrongKey(format!(
                "after {} key hand-over(s) this store's audit key is {}, but the key given is {}: \
                 start with the key the latest hand-over names (`registry audit handovers`)",
                chain.handovers().len(),
                chain.current().vkey(),
                signer.verifier().vkey()
            )));
        }
        let cp = Checkpointer {
            tree,
            history: db.open_tree(TREE_CHECKPOINTS)?,
            handovers: db.open_tree(TREE_KEY_HANDOVERS)?,
            signer: Arc::new(signer),
            chain: Arc::new(Mutex::new(chain)),
            lock: Arc::new(Mutex::new(())),
            signed: Default::default(),
        };
        if let Err(e) = cp.latest() {
            return Err(CheckpointError::WrongKey(format!(
                "the latest stored checkpoint does not verify under this store's keys: {e}. \
                 A store's audit key changes only through `registry audit rotate-key`, \
                 which needs the old key"
            )));
        }
        Ok(cp)
    }

    /// The count of checkpoints this process signed, shared with the metrics registry.
    pub fn signed_counter(&self) -> crate::metrics::Counter {
        self.signed.clone()
    }

    /// The size of the latest issued checkpoint (its key; no signature check).
    pub fn latest_size(&self) -> Result<Option<u64>, CheckpointError> {
        Ok(self
            .history
            .last()?
            .and_then(|(k, _)| Some(u64::from_be_bytes(k.as_ref().try_into().ok()?))))
    }

    /// The key that signs this store's new checkpoints.
    pub fn signer(&self) -> &NoteSigner {
        &self.signer
    }

    /// The Merkle tree over the log's events that the checkpoints commit to.
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// The store's key chain (first key, hand-overs, current key).
    pub fn chain(&self) -> KeyChain {
        self.chain.lock().expect("key chain lock").clone()
    }

    /// The latest issued checkpoint, verified under the store's key chain.
    pub fn latest(&self) -> Result<Option<SignedCheckpoint>, CheckpointError> {
        match self.history.last()? {
            None => Ok(None),
            Some((_, v)) => Ok(Some(self.decode(&v)?)),
        }
    }

    /// Adds cosignature lines to the checkpoint issued at `size` (lines it
    /// already carries are not repeated; the note's body and earlier lines
    /// are kept byte for byte). Returns the note as stored.
    pub fn add_cosignatures(&self, size: u64, lines: &[String]) -> Result<SignedCheckpoint, CheckpointError> {
        let _guard = self.lock.lock().expect("checkpointer lock");
        let current = self.at(size)?;
        let mut note = current.note.clone();
        for line in lines {
            if !line.ends_with('\n') || line.matches('\n').count() != 1 || note.contains(line.as_str()) {
                continue;
            }
            note.push_str(line);
        }
        if note == current.note {
            return Ok(current);
        }
        let stored = self.decode(note.as_bytes())?;
        self.history.insert(size.to_be_bytes(), note.as_bytes())?;
        self.history.flush()?;
        Ok(stored)
    }

    /// The checkpoint issued at exactly `size`.
    pub fn at(&self, size: u64) -> Result<SignedCheckpoint, CheckpointError> {
        match self.history.get(size.to_be_bytes())? {
            None => Err(CheckpointError::NotFound(size)),
            Some(v) => self.decode(&v),
        }
    }

    /// The earliest issued checkpoint whose size is `>= size`.
    pub fn covering(&self, size: u64) -> Result<Option<SignedCheckpoint>, CheckpointError> {
        match self.history.range(size.to_be_bytes()..).next() {
            None => Ok(None),
            Some(kv) => Ok(Some(self.decode(&kv?.1)?)),
        }
    }

    fn decode(&self, v: &[u8]) -> Result<SignedCheckpoint, CheckpointError> {
        let note = std::str::from_utf8(v)
            .map_err(|_| NoteError::Malformed("stored checkpoint is not UTF-8".into()))?
            .to_string();
        let chain = self.chain.lock().expect("key chain lock");
        let (checkpoint, by) = chain.verify_checkpoint(&note)?;
        let signed_by = by.vkey();
        Ok(SignedCheckpoint {
            checkpoint,
            note,
            signed_by,
        })
    }

    /// Signs a checkpoint at the tree's current size, unless the latest one
    /// already has that size (then it is returned). Before signing, a
    /// consistency proof from the latest checkpoint to the new size is
    /// generated from the tree and verified against the latest checkpoint's
    /// root: the log never signs two inconsistent checkpoints.
    pub fn checkpoint_now(&self) -> Result<SignedCheckpoint, CheckpointError> {
        let _guard = self.lock.lock().expect("checkpointer lock");
        self.checkpoint_locked()
    }

    fn checkpoint_locked(&self) -> Result<SignedCheckpoint, CheckpointError> {
        let current = self.chain.lock().expect("key chain lock").current().vkey();
        if current != self.signer.verifier().vkey() {
            return Err(CheckpointError::WrongKey(format!(
                "this store's audit key is now {current}: the key {} was handed over and signs no more",
                self.signer.verifier().vkey()
            )));
        }
        let size = self.tree.size();
        let root = self.tree.root(size)?;
        if let Some(latest) = self.latest()? {
            let old = latest.checkpoint.size;
            if old == size && latest.checkpoint.root == root {
                return Ok(latest);
            }
            if old > size {
                return Err(CheckpointError::Inconsistent {
                    old,
                    new: size,
                    reason: "the tree is smaller than the latest checkpoint".into(),
                });
            }
            let proof = self.tree.consistency_proof(old, size)?;
            merkle::verify_consistency(old, size, &latest.checkpoint.root, &root, &proof).map_err(|e| {
                CheckpointError::Inconsistent {
                    old,
                    new: size,
                    reason: e.to_string(),
                }
            })?;
        }
        let checkpoint = Checkpoint {
            origin: self.signer.name.clone(),
            size,
            root,
        };
        let note = self.signer.sign_checkpoint(&checkpoint);
        self.history.insert(size.to_be_bytes(), note.as_bytes())?;
        self.history.flush()?;
        self.signed.inc();
        Ok(SignedCheckpoint {
            checkpoint,
            note,
            signed_by: self.signer.verifier().vkey(),
        })
    }

    /// Hands the log over from this checkpointer's key to `new`: signs (with
    /// the current key, after the usual consistency check) a checkpoint at
    /// the tree's current size `s`, then writes in one sled transaction the
    /// hand-over note (signed by both keys) as the next entry of tree
    /// `key_handovers` and the checkpoint at `s` with the new key's signature
    /// line added (the old key's line kept byte for byte). From then on the
    /// store is served with `new`; this checkpointer must not sign again.
    pub fn hand_over(
        &self,
        new: &NoteSigner,
        time: &str,
    ) -> Result<(Handover, SignedCheckpoint), CheckpointError> {
        let _guard = self.lock.lock().expect("checkpointer lock");
        if new.name != self.signer.name {
            return Err(CheckpointError::WrongKey(format!(
                "the new key is for origin {:?}, the log's origin is {:?}: the origin cannot change",
                new.name, self.signer.name
            )));
        }
        if new.verifier().vkey() == self.signer.verifier().vkey() {
            return Err(CheckpointError::WrongKey("the new key is the current key".into()));
        }
        let latest = self.checkpoint_locked()?;
        let (size, root) = (latest.checkpoint.size, latest.checkpoint.root);
        let note = sign_handover(&self.signer, new, size, &root, time);
        let mut chain = self.chain.lock().expect("key chain lock");
        let number = chain.handovers().len() as u64 + 1;
        let mut notes: Vec<String> = chain.handovers().iter().map(|h| h.note.clone()).collect();
        notes.push(note.clone());
        let first = chain.epochs()[0].verifier.clone();
        let next = KeyChain::follow(first, &notes)?;
        let handover = next.handovers().last().expect("the new hand-over").clone();
        // The checkpoint at `size`: the note as stored (every line kept), plus the new key's line.
        let cosigned = cosign(&latest.note, new);
        use sled::Transactional;
        (&self.history, &self.handovers)
            .transaction(|(history, handovers)| {
                handovers.insert(&number.to_be_bytes(), note.as_bytes())?;
                history.insert(&size.to_be_bytes(), cosigned.as_bytes())?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => CheckpointError::Sled(e),
                sled::transaction::TransactionError::Abort(()) => {
                    CheckpointError::Sled(sled::Error::Unsupported("transaction aborted".into()))
                }
            })?;
        self.history.flush()?;
        self.handovers.flush()?;
        *chain = next;
        Ok((
            handover,
            SignedCheckpoint {
                checkpoint: latest.checkpoint,
                note: cosigned,
                signed_by: new.verifier().vkey(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_vkey_roundtrip() {
        let s = NoteSigner::generate("example.com/log").unwrap();
        let v = Verifier::parse(&s.verifier().vkey()).unwrap();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 7,
            root: [3; 32],
        };
        let note = s.sign_checkpoint(&cp);
        assert_eq!(v.verify_checkpoint(&note).unwrap(), cp);
        let tampered = note.replacen("\n7\n", "\n8\n", 1);
        assert!(matches!(
            v.verify_checkpoint(&tampered),
            Err(NoteError::BadSignature { .. })
        ));
        let other = NoteSigner::generate("example.com/log").unwrap();
        assert!(matches!(
            other.verifier().verify_checkpoint(&note),
            Err(NoteError::NoSignature { .. })
        ));
        let again = NoteSigner::parse_key_file(&s.to_key_file()).unwrap();
        assert_eq!(again.verifier().vkey(), s.verifier().vkey());
    }

    #[test]
    fn key_id_matches_c2sp_formula() {
        // SHA-256("a" || 0x0A || 0x01 || 32 zero bytes)[..4], computed independently.
        let mut input = b"a\n\x01".to_vec();
        input.extend_from_slice(&[0; 32]);
        let want: [u8; 4] = Sha256::digest(&input)[..4].try_into().unwrap();
        assert_eq!(key_id("a", &[0; 32]), want);
    }
}
