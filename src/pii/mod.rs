//! Personal-data protection: crypto-shredding, sealed fields, blind indexes.
//!
//! * Each person (case id) has a random 32-byte [`DataKey`], stored in the
//!   sled tree `person_keys` wrapped (XChaCha20-Poly1305) by the
//!   [`MasterKey`]; see [`KeyStore`].
//! * Identifying fields are [`seal_for_request()`]ed with that key before they enter the
//!   event log; the log hashes the sealed bytes. [`KeyStore::erase`] destroys
//!   the key: the data becomes unrecoverable while every hash, proof and
//!   checkpoint still verifies.
//! * Document numbers are looked up through a [`BlindIndexer`] (keyed BLAKE3
//!   of the normalized number), never stored in clear.
//! * No error or tracing line of this module holds plaintext, key material or
//!   document numbers; `Debug` of key types prints nothing secret.
//!
//! On-disk formats are documented in [`keystore`] (wrapped keys, tombstones)
//! and [`seal`](mod@seal) (sealed fields).

mod blind;
mod crypto;
mod error;
pub(crate) use crate::hex;
pub mod keystore;
mod master;
pub mod seal;

#[cfg(test)]
mod tests;

pub use blind::{
    normalize, normalize_doc_type, BlindIndexer, MAX_DOCUMENT_NUMBER_LEN, MAX_DOCUMENT_TYPE_LEN,
};
pub use error::{PiiError, Result};
pub use keystore::{check_raw_entry, validate_case_id, KeyStatus, KeyStore, NewKey, BLIND_INDEX_ID};
pub use master::{MasterKey, KEY_ID_LEN};
pub use seal::{open, open_json, seal_for_request, DataKey};
