//! Blind indexes: look-ups by document number through a keyed BLAKE3 hash of
//! the normalized number, never the number itself.
//!
//! The index key is derived once, at the first [`KeyStore::open`] of a store,
//! as `blake3::derive_key("migreg blind index v1", master)`, and stored in
//! the key store wrapped like a person key under the reserved id
//! `"__blind_index__"`. Master-key rotation re-wraps it, so index values stay
//! stable across rotations and the look-up index never needs a rebuild.
//!
//! [`KeyStore::open`]: super::KeyStore::open

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use super::error::{PiiError, Result};

/// BLAKE3 derive-key context of the blind-index key.
pub(super) const BLIND_INDEX_CONTEXT: &str = "migreg blind index v1";

/// Longest normalized document number accepted.
pub const MAX_DOCUMENT_NUMBER_LEN: usize = crate::limits::DOCUMENT_NUMBER_CHARS_MAX;
/// Longest document type accepted.
pub const MAX_DOCUMENT_TYPE_LEN: usize = crate::limits::DOCUMENT_TYPE_CHARS_MAX;
/// Longest raw input accepted before normalization (guards against huge input).
const MAX_RAW_LEN: usize = 256;

/// Normalizes a document number: trims, uppercases (ASCII), removes spaces
/// (any whitespace), dots and dashes; rejects an empty result, any other
/// character (only ASCII letters and digits remain), or more than 32 chars.
///
/// `doc_type` is validated too (see [`normalize_doc_type`]) so that a bad
/// type is rejected before any number is processed.
///
/// The error never quotes the input.
pub fn normalize(doc_type: &str, number: &str) -> Result<String> {
    normalize_doc_type(doc_type)?;
    normalize_number(number)
}

/// Normalizes a document type: trims and uppercases; accepts 1 to 32 ASCII
/// letters, digits, `_` or `-` (so `"ppt"` and `"PPT"` are the same type).
pub fn normalize_doc_type(doc_type: &str) -> Result<String> {
    let t = doc_type.trim();
    if t.is_empty() {
        return Err(PiiError::InvalidDocument {
            reason: "document type is empty",
        });
    }
    if t.len() > MAX_DOCUMENT_TYPE_LEN {
        return Err(PiiError::InvalidDocument {
            reason: "document type is longer than 32 characters",
        });
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(PiiError::InvalidDocument {
            reason: "document type may hold only ASCII letters, digits, '_' and '-'",
        });
    }
    Ok(t.to_ascii_uppercase())
}

fn normalize_number(number: &str) -> Result<String> {
    if number.len() > MAX_RAW_LEN {
        return Err(PiiError::InvalidDocument {
            reason: "document number is far too long",
        });
    }
    let mut out = String::with_capacity(number.len());
    for c in number.trim().chars() {
        if c.is_whitespace() || c == '.' || c == '-' {
            continue;
        }
        if !c.is_ascii_alphanumeric() {
            out.zeroize();
            return Err(PiiError::InvalidDocument {
                reason:
                    "document number may hold only ASCII letters and digits (besides spaces, dots, dashes)",
            });
        }
        out.push(c.to_ascii_uppercase());
    }
    if out.is_empty() {
        return Err(PiiError::InvalidDocument {
            reason: "document number is empty",
        });
    }
    if out.len() > MAX_DOCUMENT_NUMBER_LEN {
        out.zeroize();
        return Err(PiiError::InvalidDocument {
            reason: "document number is longer than 32 characters after normalization",
        });
    }
    Ok(out)
}

/// Computes blind-index values with a secret 32-byte key. Obtain it from
/// [`KeyStore::blind_indexer`](super::KeyStore::blind_indexer). The key is
/// wiped on drop; `Debug` prints nothing of it.
pub struct BlindIndexer {
    key: [u8; 32],
}

impl BlindIndexer {
    pub(super) fn from_key(key: [u8; 32]) -> BlindIndexer {
        BlindIndexer { key }
    }

    /// `BLAKE3-keyed(index key, DOC_TYPE || 0x00 || normalized number)`, where
    /// DOC_TYPE is the normalized (upper-case) document type.
    /// Errors if either the type or the number is rejected by normalization.
    pub fn index(&self, doc_type: &str, number: &str) -> Result<[u8; 32]> {
        let doc_type = normalize_doc_type(doc_type)?;
        let number = Zeroizing::new(normalize_number(number)?);
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(doc_type.as_bytes());
        hasher.update(&[0u8]);
        hasher.update(number.as_bytes());
        Ok(*hasher.finalize().as_bytes())
    }
}

impl Drop for BlindIndexer {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for BlindIndexer {}

impl fmt::Debug for BlindIndexer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndexer(..)")
    }
}
