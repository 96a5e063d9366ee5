//! Audit signing-key hand-overs: how the log changes its checkpoint key while
//! every checkpoint it ever issued stays verifiable (docs/AUDIT.md §2a).
//!
//! A hand-over is a C2SP signed note whose body is, each line ending in `\n`:
//! ```text
//! <origin>
//! key-handover v1
//! size <tree size, decimal, no leading zeros>
//! root <base64 of the 32-byte root MTH(D[size])>
//! old <vkey of the key handing over>
//! new <vkey of the key taking over>
//! time <UTC time of signing, YYYY-MM-DDTHH:MM:SSZ>
//! ```
//! signed by BOTH keys (two signature lines, old key first). The second line
//! is not a decimal number, so a hand-over can never be read as a checkpoint
//! and a checkpoint never as a hand-over.
//!
//! A [`KeyChain`] starts from one trusted verifier key and follows hand-overs
//! in order; it gives each key the range of tree sizes it may sign
//! checkpoints for: the first key `0..=s1`, the key introduced at `s1` from
//! `s1` to the next hand-over's size, the last key from its hand-over on.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::checkpoint::{split_note, Checkpoint, NoteError, NoteSigner, Verifier};
use super::merkle::Hash;

/// Second line of a hand-over body (also its format version).
pub const HANDOVER_TAG: &str = "key-handover v1";
/// Sled tree of key hand-overs: number u64 BE (1, 2, ...) -> signed note text.
pub const TREE_KEY_HANDOVERS: &str = "key_handovers";
/// Format of the `time` line.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// A verified key hand-over.
#[derive(Clone, Debug)]
pub struct Handover {
    /// The log's origin (both keys sign its checkpoints).
    pub origin: String,
    /// The tree size at which the new key takes over (its checkpoint at this
    /// size is signed by both keys).
    pub size: u64,
    /// The root of the tree of that size.
    pub root: Hash,
    /// The key handing over.
    pub old: Verifier,
    /// The key taking over.
    pub new: Verifier,
    /// When the signers say they signed it (a claim of the signers, see docs/AUDIT.md).
    pub time: String,
    /// The signed note, verbatim.
    pub note: String,
}

/// The body of a hand-over (see the module documentation).
pub fn handover_body(
    origin: &str,
    size: u64,
    root: &Hash,
    old: &Verifier,
    new: &Verifier,
    time: &str,
) -> String {
    format!(
        "{origin}\n{HANDOVER_TAG}\nsize {size}\nroot {}\nold {}\nnew {}\ntime {time}\n",
        B64.encode(root),
        old.vkey(),
        new.vkey()
    )
}

/// The current UTC time in the `time` line's format.
pub fn now_utc() -> String {
    jiff::Timestamp::now().strftime(TIME_FORMAT).to_string()
}

/// Signs a hand-over from `old` to `new` at tree size `size` with root `root`:
/// the body signed by the old key, then by the new key.
pub fn sign_handover(old: &NoteSigner, new: &NoteSigner, size: u64, root: &Hash, time: &str) -> String {
    let body = handover_body(&old.name, size, root, old.verifier(), new.verifier(), time);
    cosign(&old.sign_body(&body), new)
}

/// Adds `signer`'s signature line to a signed note (C2SP signed notes may
/// carry several). The existing lines are kept byte for byte.
pub fn cosign(note: &str, signer: &NoteSigner) -> String {
    let (body, _) = split_note(note).expect("a note this process signed");
    let extra = signer.sign_body(body);
    let line = extra.rsplit_once("\n\n").expect("signed note").1;
    format!("{note}{line}")
}

/// Why a hand-over body does not parse (see the module documentation); the
/// reason of a [`NoteError::Handover`].
#[derive(Debug, thiserror::Error)]
enum BodyError {
    /// The body does not end in `\n`.
    #[error("the body does not end in a newline")]
    NoFinalNewline,
    /// The first line is empty.
    #[error("empty origin line")]
    EmptyOrigin,
    /// The second line (shown, if any) is not [`HANDOVER_TAG`].
    #[error("second line is {0:?}, not {HANDOVER_TAG:?}: not a key hand-over")]
    NotAHandover(Option<String>),
    /// The body ends before the line `name`.
    #[error("missing the {0} line")]
    MissingLine(&'static str),
    /// A line is not `name ...`.
    #[error("expected a line `{name} ...`, found {line:?}")]
    WrongLine {
        /// The line expected.
        name: &'static str,
        /// The line found.
        line: String,
    },
    /// The size is not canonical decimal.
    #[error("the size is not a decimal number without leading zeros")]
    SizeNotDecimal,
    /// The size does not fit in a `u64`.
    #[error("the size does not fit in 64 bits")]
    SizeTooLarge,
    /// The root is not base64.
    #[error("the root is not base64")]
    RootNotBase64,
    /// The root does not decode to 32 bytes.
    #[error("the root is not 32 bytes")]
    RootLength,
    /// The `old` line is not a vkey.
    #[error("old key: {0}")]
    OldKey(#[source] NoteError),
    /// The `new` line is not a vkey.
    #[error("new key: {0}")]
    NewKey(#[source] NoteError),
    /// The time (shown) is not `YYYY-MM-DDTHH:MM:SSZ`.
    #[error("the time {0:?} is not YYYY-MM-DDTHH:MM:SSZ")]
    TimeFormat(String),
    /// The time (shown) parses but is not written canonically.
    #[error("the time {0:?} is not in canonical form")]
    TimeNotCanonical(String),
    /// A line (shown) after the `time` line.
    #[error("unexpected line after time: {0:?}")]
    ExtraLine(String),
}

fn field<'a>(line: Option<&'a str>, name: &'static str) -> Result<&'a str, BodyError> {
    let line = line.ok_or(BodyError::MissingLine(name))?;
    line.strip_prefix(name)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| BodyError::WrongLine {
            name,
            line: line.to_string(),
        })
}

/// The body's fields, not yet checked against any key.
struct Body {
    origin: String,
    size: u64,
    root: Hash,
    old: Verifier,
    new: Verifier,
    time: String,
}

fn parse_body(body: &str) -> Result<Body, BodyError> {
    let text = body.strip_suffix('\n').ok_or(BodyError::NoFinalNewline)?;
    let mut lines = text.split('\n');
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or(BodyError::EmptyOrigin)?;
    match lines.next() {
        Some(HANDOVER_TAG) => {}
        other => return Err(BodyError::NotAHandover(other.map(str::to_string))),
    }
    let size_text = field(lines.next(), "size")?;
    if size_text.is_empty()
        || !size_text.bytes().all(|b| b.is_ascii_digit())
        || (size_text.len() > 1 && size_text.starts_with('0'))
    {
        return Err(BodyError::SizeNotDecimal);
    }
    let size: u64 = size_text.parse().map_err(|_| BodyError::SizeTooLarge)?;
    let root = B64
        .decode(field(lines.next(), "root")?)
        .map_err(|_| BodyError::RootNotBase64)?;
    let root: Hash = root.try_into().map_err(|_| BodyError::RootLength)?;
    let old = Verifier::parse(field(lines.next(), "old")?).map_err(BodyError::OldKey)?;
    let new = Verifier::parse(field(lines.next(), "new")?).map_err(BodyError::NewKey)?;
    let time = field(lines.next(), "time")?;
    let parsed = jiff::civil::DateTime::strptime(TIME_FORMAT, time)
        .map_err(|_| BodyError::TimeFormat(time.to_string()))?;
    if parsed.strftime(TIME_FORMAT).to_string() != time {
        return Err(BodyError::TimeNotCanonical(time.to_string()));
    }
    if let Some(extra) = lines.next() {
        return Err(BodyError::ExtraLine(extra.to_string()));
    }
    Ok(Body {
        origin: origin.to_string(),
        size,
        root,
        old,
        new,
        time: time.to_string(),
    })
}

/// The vkey named as `old` in a hand-over note, without verifying anything
/// (to find where a chain starts).
fn named_keys(note: &str) -> Option<(String, String)> {
    let (body, _) = split_note(note).ok()?;
    let b = parse_body(body).ok()?;
    Some((b.old.vkey(), b.new.vkey()))
}

impl Handover {
    /// Verifies a hand-over note that must hand over from `expected_old`:
    /// body format, key names equal to the origin, two different keys, and
    /// a valid signature by each. `number` (1-based) names it in errors.
    pub fn verify(note: &str, expected_old: &Verifier, number: usize) -> Result<Handover, NoteError> {
        let bad = |reason: String| NoteError::Handover { number, reason };
        let (body, _) = split_note(note).map_err(|e| bad(e.to_string()))?;
        let b = parse_body(body).map_err(|e| bad(e.to_string()))?;
        if b.old.vkey() != expected_old.vkey() {
            return Err(bad(format!(
                "it hands over from key {}, but the key at this point of the chain is {}",
                b.old.vkey(),
                expected_old.vkey()
            )));
        }
        if b.origin != b.old.name || b.new.name != b.old.name {
            return Err(bad(format!(
                "origin {:?}, old key name {:?} and new key name {:?} must all be equal",
                b.origin, b.old.name, b.new.name
            )));
        }
        if b.new.vkey() == b.old.vkey() {
            return Err(bad("the old and new keys are the same key".into()));
        }
        b.old
            .open_note(note)
            .map_err(|e| bad(format!("not signed by the old key: {e}")))?;
        b.new
            .open_note(note)
            .map_err(|e| bad(format!("not signed by the new key: {e}")))?;
        Ok(Handover {
            origin: b.origin,
            size: b.size,
            root: b.root,
            old: b.old,
            new: b.new,
            time: b.time,
            note: note.to_string(),
        })
    }
}

/// Splits a file of hand-over notes written one after the other (as
/// `registry audit handovers` writes them) into notes. Blank lines between
/// notes are allowed. A note's body must not contain a blank line.
pub fn split_notes(text: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let mut current = String::new();
    let mut in_signatures = false;
    for line in text.split_inclusive('\n') {
        if in_signatures && !line.starts_with('\u{2014}') {
            notes.push(std::mem::take(&mut current));
            in_signatures = false;
        }
        if current.is_empty() && line.trim().is_empty() {
            continue;
        }
        if !in_signatures && line == "\n" {
            in_signatures = true;
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() {
        notes.push(current);
    }
    notes
}

/// One key of a chain and the tree sizes it signs checkpoints for.
#[derive(Clone, Debug)]
pub struct Epoch {
    /// The key.
    pub verifier: Verifier,
    /// First size (0 for the trusted key).
    pub from: u64,
    /// Last size (None: the current key).
    pub to: Option<u64>,
}

impl Epoch {
    fn covers(&self, size: u64) -> bool {
        self.from <= size && self.to.is_none_or(|t| size <= t)
    }

    fn range(&self) -> String {
        match self.to {
            Some(t) => format!("{}..={t}", self.from),
            None => format!("{} and above", self.from),
        }
    }
}

/// A trusted key and the hand-overs that follow it.
#[derive(Clone, Debug)]
pub struct KeyChain {
    epochs: Vec<Epoch>,
    handovers: Vec<Handover>,
}

impl KeyChain {
    /// A chain of one key (no hand-over): it signs every size.
    pub fn single(trusted: Verifier) -> KeyChain {
        KeyChain {
            epochs: vec![Epoch {
                verifier: trusted,
                from: 0,
                to: None,
            }],
            handovers: Vec::new(),
        }
    }

    /// Follows `notes` in order from `trusted`: each must hand over from the
    /// key the previous one handed over to (the first from `trusted`), be
    /// signed by both keys, and not go back in tree size.
    pub fn follow(trusted: Verifier, notes: &[String]) -> Result<KeyChain, NoteError> {
        let mut chain = KeyChain::single(trusted);
        for (i, note) in notes.iter().enumerate() {
            let current = chain.current().clone();
            let h = Handover::verify(note, &current, i + 1)?;
            let last = chain.epochs.last_mut().expect("one epoch");
            if h.size < last.from {
                return Err(NoteError::Handover {
                    number: i + 1,
                    reason: format!(
                        "its size {} is below the size {} of the hand-over before it",
                        h.size, last.from
                    ),
                });
            }
            last.to = Some(h.size);
            chain.epochs.push(Epoch {
                verifier: h.new.clone(),
                from: h.size,
                to: None,
            });
            chain.handovers.push(h);
        }
        Ok(chain)
    }

    /// Like [`KeyChain::follow`], but `notes` may begin with hand-overs from
    /// before `trusted` (a store's or a server's full list): the chain starts
    /// at the first hand-over whose old key is `trusted`; when `trusted` is
    /// the last hand-over's new key, the chain has no hand-over. Otherwise
    /// every note is followed (and the first one is refused if it does not
    /// hand over from `trusted`).
    pub fn follow_from(trusted: Verifier, notes: &[String]) -> Result<KeyChain, NoteError> {
        let vkey = trusted.vkey();
        let keys: Vec<Option<(String, String)>> = notes.iter().map(|n| named_keys(n)).collect();
        if let Some(start) = keys
            .iter()
            .position(|k| k.as_ref().is_some_and(|(old, _)| *old == vkey))
        {
            return KeyChain::follow(trusted, &notes[start..]);
        }
        if keys
            .last()
            .is_some_and(|k| k.as_ref().is_some_and(|(_, new)| *new == vkey))
        {
            return Ok(KeyChain::single(trusted));
        }
        KeyChain::follow(trusted, notes)
    }

    /// The key the chain ends with (the one that signs new checkpoints).
    pub fn current(&self) -> &Verifier {
        &self.epochs.last().expect("one epoch").verifier
    }

    /// The chain's keys in order with the tree sizes each signs: the
    /// trusted key first, the current key last (never empty).
    pub fn epochs(&self) -> &[Epoch] {
        &self.epochs
    }

    /// The verified hand-overs in chain order (one fewer than the epochs).
    pub fn handovers(&self) -> &[Handover] {
        &self.handovers
    }

    /// Verifies a signed checkpoint under the chain: it must be signed by a
    /// key whose range holds its size (the newest such key is tried first),
    /// its origin must be the key name, and at the size of a hand-over its
    /// root must be the one the hand-over names. Returns the checkpoint and
    /// the key that verified it.
    pub fn verify_checkpoint(&self, note: &str) -> Result<(Checkpoint, &Verifier), NoteError> {
        let (body, _) = split_note(note)?;
        let size = Checkpoint::parse_body(body)?.size;
        let mut first_err = None;
        for epoch in self.epochs.iter().rev().filter(|e| e.covers(size)) {
            match epoch.verifier.verify_checkpoint(note) {
                Ok(cp) => {
                    for h in self.handovers.iter().filter(|h| h.size == cp.size) {
                        if h.root != cp.root {
                            return Err(NoteError::HandoverRoot {
                                size: cp.size,
                                found: crate::hex::encode(&cp.root),
                                expected: crate::hex::encode(&h.root),
                            });
                        }
                    }
                    return Ok((cp, &epoch.verifier));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // Signed by a key of the chain outside its range?
        for epoch in self.epochs.iter().filter(|e| !e.covers(size)) {
            if epoch.verifier.verify_checkpoint(note).is_ok() {
                return Err(NoteError::OutsideKeyRange {
                    size,
                    key: epoch.verifier.vkey(),
                    range: epoch.range(),
                });
            }
        }
        Err(first_err.expect("some epoch covers every size"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "example.org/log";

    fn keys() -> (NoteSigner, NoteSigner) {
        (
            NoteSigner::generate(ORIGIN).unwrap(),
            NoteSigner::generate(ORIGIN).unwrap(),
        )
    }

    fn cp(signer: &NoteSigner, size: u64, root: Hash) -> String {
        signer.sign_checkpoint(&Checkpoint {
            origin: ORIGIN.into(),
            size,
            root,
        })
    }

    #[test]
    fn chain_accepts_each_key_in_its_range_only() {
        let (a, b) = keys();
        let h = sign_handover(&a, &b, 10, &[7; 32], "2026-01-02T03:04:05Z");
        let chain = KeyChain::follow(a.verifier().clone(), std::slice::from_ref(&h)).unwrap();
        assert_eq!(chain.current().vkey(), b.verifier().vkey());
        // Old key below and at the hand-over, new key at and above it.
        assert!(chain.verify_checkpoint(&cp(&a, 5, [1; 32])).is_ok());
        assert!(chain.verify_checkpoint(&cp(&a, 10, [7; 32])).is_ok());
        let (c, by) = chain.verify_checkpoint(&cp(&b, 10, [7; 32])).unwrap();
        assert_eq!((c.size, by.vkey()), (10, b.verifier().vkey()));
        assert!(chain.verify_checkpoint(&cp(&b, 11, [2; 32])).is_ok());
        // Retired key past its hand-over; new key before it.
        let e = chain.verify_checkpoint(&cp(&a, 11, [2; 32])).unwrap_err();
        assert!(matches!(e, NoteError::OutsideKeyRange { size: 11, .. }), "{e}");
        let e = chain.verify_checkpoint(&cp(&b, 9, [2; 32])).unwrap_err();
        assert!(matches!(e, NoteError::OutsideKeyRange { size: 9, .. }), "{e}");
        // At the hand-over size the root must be the hand-over's.
        let e = chain.verify_checkpoint(&cp(&b, 10, [8; 32])).unwrap_err();
        assert!(matches!(e, NoteError::HandoverRoot { size: 10, .. }), "{e}");
    }

    #[test]
    fn a_handover_needs_both_signatures_and_the_right_old_key() {
        let (a, b) = keys();
        let root = [3; 32];
        let body = handover_body(
            ORIGIN,
            4,
            &root,
            a.verifier(),
            b.verifier(),
            "2026-01-02T03:04:05Z",
        );
        // Signed by the new key only (an attacker holding only the new key).
        let only_new = b.sign_body(&body);
        let e = Handover::verify(&only_new, a.verifier(), 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hand-over #1") && e.contains("not signed by the old key"),
            "{e}"
        );
        // Signed by the old key only.
        let only_old = a.sign_body(&body);
        let e = Handover::verify(&only_old, a.verifier(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not signed by the new key"), "{e}");
        // Both: accepted; from another key: refused.
        let both = cosign(&only_old, &b);
        assert_eq!(Handover::verify(&both, a.verifier(), 1).unwrap().size, 4);
        let e = Handover::verify(&both, b.verifier(), 2).unwrap_err().to_string();
        assert!(
            e.contains("hand-over #2") && e.contains("hands over from key"),
            "{e}"
        );
        // Any body change breaks both signatures.
        let tampered = both.replacen("size 4\n", "size 5\n", 1);
        let e = Handover::verify(&tampered, a.verifier(), 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not signed by the old key") && e.contains("does not verify"),
            "{e}"
        );
        // Not a checkpoint, and a checkpoint is not a hand-over.
        assert!(Checkpoint::parse_body(&body).is_err());
        let e = Handover::verify(&cp(&a, 4, root), a.verifier(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a key hand-over"), "{e}");
    }

    #[test]
    fn chains_of_two_and_files_of_notes() {
        let (a, b) = keys();
        let c = NoteSigner::generate(ORIGIN).unwrap();
        let h1 = sign_handover(&a, &b, 3, &[1; 32], "2026-01-02T03:04:05Z");
        let h2 = sign_handover(&b, &c, 8, &[2; 32], "2026-02-02T03:04:05Z");
        let file = format!("{h1}\n{h2}");
        let notes = split_notes(&file);
        assert_eq!(notes, vec![h1.clone(), h2.clone()]);
        let chain = KeyChain::follow(a.verifier().clone(), &notes).unwrap();
        assert_eq!(chain.current().vkey(), c.verifier().vkey());
        assert!(chain.verify_checkpoint(&cp(&b, 5, [0; 32])).is_ok());
        assert!(chain.verify_checkpoint(&cp(&b, 9, [0; 32])).is_err());
        // From the middle key the chain starts at the second hand-over.
        let from_b = KeyChain::follow_from(b.verifier().clone(), &notes).unwrap();
        assert_eq!(from_b.handovers().len(), 1);
        assert!(from_b.verify_checkpoint(&cp(&a, 2, [0; 32])).is_err());
        let from_c = KeyChain::follow_from(c.verifier().clone(), &notes).unwrap();
        assert!(from_c.handovers().is_empty());
        // Out of order: refused.
        let e = KeyChain::follow(b.verifier().clone(), &[h2, h1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("hand-over #2"), "{e}");
        let back = sign_handover(&b, &c, 2, &[2; 32], "2026-02-02T03:04:05Z");
        let e = KeyChain::follow(a.verifier().clone(), &[notes[0].clone(), back])
            .unwrap_err()
            .to_string();
        assert!(e.contains("below the size 3"), "{e}");
    }
}
