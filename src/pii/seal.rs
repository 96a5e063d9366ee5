//! Per-person data keys and sealing of personal-data fields.
//!
//! Sealed blob format (version 1):
//!
//! ```text
//! 0x01 || nonce (24 bytes, synthetic: seal_for_request) || XChaCha20-Poly1305 ciphertext || tag (16 bytes)
//! AAD = "migreg sealed field v1" || 0x01
//!       || u32be(len(case_id)) || case_id || u32be(len(field_context)) || field_context
//! ```
//!
//! The AAD binds the blob to one case and one field: moving it to another
//! case or field makes `open` fail. Lengths are prefixed so that no two
//! (case id, field) pairs share an AAD.

use std::fmt;

use serde::de::DeserializeOwned;
use zeroize::{Zeroize, Zeroizing};

use super::crypto::{self, NONCE_LEN, TAG_LEN};
use super::error::{PiiError, Result};

/// Version byte of sealed blobs.
pub const SEALED_VERSION: u8 = 1;
/// Bytes a sealed blob adds to its plaintext (version, nonce, tag).
pub const SEALED_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

const FIELD_AAD_PREFIX: &[u8] = b"migreg sealed field v1";

/// A person's 32-byte data key. Wiped from memory on drop; `Debug` prints
/// nothing of it. Not `Clone`: fetch it again from the `KeyStore` instead.
pub struct DataKey {
    bytes: [u8; 32],
}

impl DataKey {
    /// A fresh random data key.
    ///
    /// # Panics
    /// If the operating system's random source fails.
    pub fn generate() -> DataKey {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).expect("operating system random source failed");
        DataKey { bytes }
    }

    pub(super) fn from_bytes(bytes: [u8; 32]) -> DataKey {
        DataKey { bytes }
    }

    pub(super) fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for DataKey {}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

fn field_aad(case_id: &str, field_context: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(FIELD_AAD_PREFIX.len() + 9 + case_id.len() + field_context.len());
    aad.extend_from_slice(FIELD_AAD_PREFIX);
    aad.push(SEALED_VERSION);
    for part in [case_id.as_bytes(), field_context.as_bytes()] {
        let len = u32::try_from(part.len()).expect("case id or field context longer than 4 GiB");
        aad.extend_from_slice(&len.to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

/// The sealed blob: version, nonce, ciphertext (AAD binds case and field).
fn seal_with_nonce(
    key: &DataKey,
    case_id: &str,
    field_context: &str,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> Vec<u8> {
    let ct = crypto::encrypt(
        key.as_bytes(),
        nonce,
        &field_aad(case_id, field_context),
        plaintext,
    );
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    out.push(SEALED_VERSION);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    out
}

/// Seals `plaintext` for one case and one field with the person's data key,
/// with a synthetic nonce derived from the key, the case, the field, the
/// request id and the plaintext (an SIV construction): a retried
/// request seals to the same bytes, so the log's idempotency check sees the
/// retry as the same request. Equal blobs reveal only that the same request
/// sealed the same value for the same field of the same person.
pub fn seal_for_request(
    key: &DataKey,
    case_id: &str,
    field_context: &str,
    request_id: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    let nonce_key = blake3::derive_key("migreg seal nonce v1", key.as_bytes());
    let mut h = blake3::Hasher::new_keyed(&nonce_key);
    for part in [
        case_id.as_bytes(),
        field_context.as_bytes(),
        request_id.as_bytes(),
        plaintext,
    ] {
        h.update(&(part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&h.finalize().as_bytes()[..NONCE_LEN]);
    seal_with_nonce(key, case_id, field_context, &nonce, plaintext)
}

/// Opens a blob made by [`seal_for_request`] for the same key, case id and field context.
/// Any tampering, a wrong key, case id or field gives [`PiiError::Corrupt`].
/// The caller owns the plaintext: wipe it (e.g. `zeroize::Zeroizing`) after use.
pub fn open(key: &DataKey, case_id: &str, field_context: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() < SEALED_OVERHEAD {
        return Err(PiiError::Corrupt {
            what: "sealed field is truncated",
        });
    }
    if sealed[0] != SEALED_VERSION {
        return Err(PiiError::Corrupt {
            what: "sealed field has an unknown format version",
        });
    }
    let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
    crypto::decrypt(key.as_bytes(), nonce, &field_aad(case_id, field_context), ct).ok_or(PiiError::Corrupt {
        what: "sealed field failed authentication (tampered, wrong key, wrong case or wrong field)",
    })
}

/// Opens a sealed JSON value (sealed by [`seal_for_request`]) and deserializes it (the JSON text is
/// wiped after use).
pub fn open_json<T: DeserializeOwned>(
    key: &DataKey,
    case_id: &str,
    field_context: &str,
    sealed: &[u8],
) -> Result<T> {
    let json = Zeroizing::new(open(key, case_id, field_context, sealed)?);
    serde_json::from_slice(&json).map_err(|_| PiiError::Json)
}
