//! Checkpoint cosignatures of a cluster's nodes: C2SP tlog-cosignature v1
//! (Ed25519, `cosignature/v1`). Each node of a replicated cluster cosigns
//! the leader's checkpoints after checking that its own log, replicated and
//! chain-checked, has the same Merkle root at that size; an auditor who
//! holds each node's cosigner key sees that every replica holds the same
//! log (docs/AUDIT.md §2b).
//!
//! - Cosigner name: the node's audit key name (the log's origin) followed by
//!   `/node-<id>`; key: the node's audit signing key.
//! - Key ID: `SHA-256(name || 0x0A || 0x04 || public key)[..4]`; verifier
//!   key (vkey): `<name>+<key id hex>+<base64(0x04 || public key)>`.
//! - Signed message: `cosignature/v1\n` `time <t>\n` and the checkpoint's
//!   note body (up to and including its last newline, no signature lines).
//! - Signature line: `— <name> base64(key ID || t as u64 big-endian ||
//!   Ed25519 signature)`, appended after the note's other signature lines.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::checkpoint::{Checkpoint, NoteError};

/// The signature type byte of a cosignature/v1 key.
pub const SIG_TYPE_COSIGNATURE_V1: u8 = 0x04;
const EM_DASH_PREFIX: &str = "\u{2014} ";

/// Key ID of a cosigner key.
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, SIG_TYPE_COSIGNATURE_V1]);
    h.update(public);
    h.finalize()[..4].try_into().expect("4 bytes")
}

/// The cosigner name of cluster node `node` of the log `origin`.
pub fn cosigner_name(origin: &str, node: u64) -> String {
    format!("{origin}/node-{node}")
}

/// The verifier key of a cosigner.
pub fn vkey(name: &str, public: &VerifyingKey) -> String {
    let mut raw = vec![SIG_TYPE_COSIGNATURE_V1];
    raw.extend_from_slice(public.as_bytes());
    format!(
        "{name}+{}+{}",
        crate::hex::encode(&key_id(name, public.as_bytes())),
        B64.encode(raw)
    )
}

fn message(body: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{body}")
}

/// The cosignature line (ending in `\n`) of `name`'s key over a note body at `time`.
pub fn sign(key: &SigningKey, name: &str, body: &str, time: u64) -> String {
    let sig = key.sign(message(body, time).as_bytes());
    let mut raw = Vec::with_capacity(4 + 8 + 64);
    raw.extend_from_slice(&key_id(name, key.verifying_key().as_bytes()));
    raw.extend_from_slice(&time.to_be_bytes());
    raw.extend_from_slice(&sig.to_bytes());
    format!("{EM_DASH_PREFIX}{name} {}\n", B64.encode(raw))
}

/// The body of a signed note (up to and including the newline before the blank line).
pub fn note_body(note: &str) -> Result<&str, NoteError> {
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| NoteError::Malformed("no blank line before the signatures".into()))?;
    Ok(&note[..split + 1])
}

/// Checks that `note` carries a valid cosignature of the cosigner `vkey`;
/// returns the checkpoint and the cosignature's time. Lines of other keys
/// are ignored.
pub fn verify(note: &str, vkey: &str) -> Result<(Checkpoint, u64), NoteError> {
    let bad = |m: &str| NoteError::Malformed(m.to_string());
    let mut parts = vkey.trim().splitn(3, '+');
    let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("cosigner key: expected <name>+<key id>+<base64 key>"));
    };
    let raw = B64.decode(b64).map_err(|_| bad("cosigner key: not base64"))?;
    if raw.len() != 33 || raw[0] != SIG_TYPE_COSIGNATURE_V1 {
        return Err(bad("cosigner key: not 0x04 followed by a 32-byte Ed25519 key"));
    }
    let public: [u8; 32] = raw[1..].try_into().expect("32");
    let id = key_id(name, &public);
    if crate::hex::encode(&id) != id_hex {
        return Err(bad("cosigner key: the key id does not match the key"));
    }
    let key = VerifyingKey::from_bytes(&public).map_err(|_| bad("cosigner key: not an Ed25519 key"))?;
    let body = note_body(note)?;
    let checkpoint = Checkpoint::parse_body(body)?;
    let lines = &note[body.len() + 1..];
    for line in lines.lines() {
        let Some((line_name, sig)) = line.strip_prefix(EM_DASH_PREFIX).and_then(|l| l.split_once(' ')) else {
            continue;
        };
        if line_name != name {
            continue;
        }
        let Ok(raw) = B64.decode(sig) else { continue };
        if raw.len() != 4 + 8 + 64 || raw[..4] != id {
            continue;
        }
        let time = u64::from_be_bytes(raw[4..12].try_into().expect("8"));
        let signature = Signature::from_bytes(&raw[12..].try_into().expect("64"));
        key.verify_strict(message(body, time).as_bytes(), &signature)
            .map_err(|_| NoteError::BadSignature {
                name: name.to_string(),
                key_id: id_hex.to_string(),
            })?;
        return Ok((checkpoint, time));
    }
    Err(bad("no cosignature of this cosigner on the note"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cosignature_verifies_with_its_key_only_and_over_the_body_only() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let other = SigningKey::from_bytes(&[6; 32]);
        let name = cosigner_name("example.org/log", 2);
        let note = "example.org/log\n7\nAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n\n\u{2014} example.org/log AAAAAAAA\n";
        let body = note_body(note).unwrap();
        let cosigned = format!("{note}{}", sign(&key, &name, body, 1_700_000_000));
        let (cp, time) = verify(&cosigned, &vkey(&name, &key.verifying_key())).unwrap();
        assert_eq!((cp.size, time), (7, 1_700_000_000));
        assert!(verify(&cosigned, &vkey(&name, &other.verifying_key())).is_err());
        let tampered = cosigned.replacen("\n7\n", "\n8\n", 1);
        assert!(verify(&tampered, &vkey(&name, &key.verifying_key())).is_err());
    }
}
