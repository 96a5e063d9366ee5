//! Error type of the personal-data module.
//!
//! No variant carries plaintext, key material or a document number: every
//! message is either fixed text or a non-secret key id, so an error can be
//! logged or returned to a client as it is.

/// Errors of the personal-data module.
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    /// The underlying sled store failed.
    #[error("key store: {0}")]
    Sled(#[from] sled::Error),

    /// Reading or writing a key file failed.
    #[error("key file i/o: {0}")]
    Io(#[from] std::io::Error),

    /// The master key file or variable does not hold exactly 64 hex digits.
    #[error("invalid master key material: {reason}")]
    BadKeyFile {
        /// What is wrong with it (fixed text, never the material).
        reason: &'static str,
    },

    /// A wrapped key was wrapped by a master key other than the ones this
    /// store holds. Key ids are BLAKE3-derived fingerprints, not secrets.
    #[error("wrong master key: entry was wrapped by master key id {stored_id}, this store holds {held_ids}")]
    WrongMasterKey {
        /// Key id (16 hex digits) of the master key that wrapped the entry.
        stored_id: String,
        /// Key ids of the master keys held: the current one, and the
        /// previous one during a rotation (`"<id> and <id>"`).
        held_ids: String,
    },

    /// The person's data key was destroyed (crypto-shredded).
    #[error("personal data erased: the person's data key was destroyed")]
    Erased,

    /// No data key exists for this case id.
    #[error("no data key for this case id")]
    NotFound,

    /// A wrapped key or sealed blob failed authentication or is malformed:
    /// tampered, truncated, sealed for another case or field, or a wrong key.
    #[error("corrupt or unauthentic data: {what}")]
    Corrupt {
        /// What failed (fixed text naming the kind of data, e.g. "wrapped
        /// key failed authentication").
        what: &'static str,
    },

    /// A document number (or document type) was rejected by normalization.
    #[error("invalid document: {reason}")]
    InvalidDocument {
        /// Which rule the type or number breaks (fixed text).
        reason: &'static str,
    },

    /// A case id is empty, too long, not printable ASCII, or reserved.
    #[error("invalid case id: {reason}")]
    InvalidCaseId {
        /// Which rule the id breaks (fixed text).
        reason: &'static str,
    },

    /// A data key already exists (or was erased) for this case id.
    #[error("a data key already exists (or was erased) for this case id")]
    AlreadyExists,

    /// A master-key rotation to another key failed midway; retry it with the
    /// same new key before rotating to a different one.
    #[error("a master key rotation to another key is unfinished; retry it with the same new key")]
    RotationInProgress,

    /// A JSON value could not be encoded or decoded. The serde_json message
    /// is dropped on purpose: it can quote the (plaintext) input.
    #[error("sealed JSON field could not be encoded or decoded as the expected type")]
    Json,
}

/// Result alias of the personal-data module.
pub type Result<T, E = PiiError> = std::result::Result<T, E>;
