//! Why a command or a read failed, before the API maps it to a gRPC status.

use crate::codec::CodecError;
use crate::domain::Rejection;
use crate::log::{AppendError, ExpectedVersion, StoreError};
use crate::pii::PiiError;

/// Why a command or read failed, before it is mapped to a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// A request field is malformed or out of range (INVALID_ARGUMENT).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The request field at fault, as the wire names it.
        field: &'static str,
        /// Why, without the value when it is personal data.
        reason: String,
    },
    /// The domain rules refused the command (its stage, a rule, a field).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// No case has this id (the id is echoed: case ids are not personal data).
    #[error("case {0} not found")]
    NotFound(String),
    /// The request's `expected_version` is not the case's (ABORTED).
    #[error("version conflict: expected {expected}, the case is at version {actual}")]
    VersionConflict {
        /// The version the request expected.
        expected: u64,
        /// The case's version now.
        actual: u64,
    },
    /// An identity document of the request is held by another case.
    #[error("identity document already registered to another case")]
    DocumentTaken,
    /// The request id was used before for a different request.
    #[error("request id already used for a different request on this case")]
    RequestIdReused,
    /// A retry whose original was recorded by another principal.
    #[error("this request was already recorded on this case by another principal")]
    RequestFromOtherPrincipal,
    /// A retried registration whose case was since erased: nothing is left
    /// to compare it with.
    #[error(
        "this request id registered case {case_id}, whose identifying data was since erased: \
         the registration cannot be compared with the original or repeated"
    )]
    RegistrationErased {
        /// The case the original registration opened.
        case_id: String,
    },
    /// A field or the case exceeds a limit of `limits.rs`.
    #[error("{field} exceeds the limit of {limit}")]
    TooLarge {
        /// What is too large (a request field, or `case` for a full stream).
        field: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The case is outside the caller's departments, answered as if it
    /// might not exist (PERMISSION_DENIED).
    #[error("the case is outside the caller's departments (or does not exist)")]
    OutOfScope,
    /// The registry cannot record now (writer stopped, disk reserve, no
    /// cluster majority); a retry with the same request id is safe.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A cluster node that does not lead; writes go to the leader.
    #[error("this node is not the cluster's leader")]
    NotLeader {
        /// The leader's client address, when known.
        leader: Option<String>,
    },
    /// A fault of the registry itself, not of the request: answered
    /// INTERNAL without detail; the cause is logged (it never holds
    /// personal data: stores, codecs and keys name seqs and fields only).
    #[error("internal error: {0}")]
    Internal(#[source] InternalError),
}

/// What failed inside the registry, with the typed error it came from.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    /// The log store (a read, a corrupt entry).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sled tree outside the log (keys, document index).
    #[error(transparent)]
    Sled(sled::Error),
    /// Sealing or opening personal data, or the key store.
    #[error(transparent)]
    Pii(PiiError),
    /// A stored event that does not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Serializing an identity to seal it.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A blocking-pool task that panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// The operating system's random numbers.
    #[error(transparent)]
    Random(#[from] getrandom::Error),
    /// Stored or derived data that breaks an invariant this code relies on
    /// (what, and where: a seq, a field name).
    #[error("{0}")]
    Invariant(String),
}

impl CaseError {
    /// An `InternalError::Invariant`: `what` broke an invariant.
    pub fn invariant(what: impl Into<String>) -> CaseError {
        CaseError::Internal(InternalError::Invariant(what.into()))
    }
}

impl<E: Into<InternalError>> From<E> for CaseError {
    fn from(e: E) -> CaseError {
        CaseError::Internal(e.into())
    }
}

impl CaseError {
    /// A [`CaseError::Invalid`] naming `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> CaseError {
        CaseError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<AppendError> for CaseError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Invalid { field, reason } => CaseError::Invalid { field, reason },
            AppendError::TooLarge { field, limit } => CaseError::TooLarge { field, limit },
            AppendError::VersionConflict { expected, actual, .. } => CaseError::VersionConflict {
                expected: match expected {
                    ExpectedVersion::Exact(n) => n,
                    _ => 0,
                },
                actual,
            },
            AppendError::IdempotencyMismatch { .. } => CaseError::RequestIdReused,
            AppendError::StreamFull { limit, .. } => CaseError::TooLarge { field: "case", limit },
            AppendError::Unavailable(m) => CaseError::Unavailable(m),
            AppendError::NotLeader { leader } => CaseError::NotLeader { leader },
            // Cases prepares again on a side conflict; one left after that
            // (racing commands, again and again) asks the caller to retry.
            AppendError::SideConflict { .. } => CaseError::Unavailable(
                "concurrent commands changed this case's documents or key; retry with the same request id"
                    .into(),
            ),
        }
    }
}

impl From<PiiError> for CaseError {
    fn from(e: PiiError) -> Self {
        match e {
            PiiError::InvalidDocument { reason } => CaseError::invalid("document.number", reason),
            PiiError::Sled(e) => e.into(),
            other => CaseError::Internal(InternalError::Pii(other)),
        }
    }
}

impl From<sled::Error> for CaseError {
    fn from(e: sled::Error) -> Self {
        match crate::log::side::unconfirmed(&e) {
            // A replicated side write the cluster did not confirm (no leader, no majority).
            Some(reason) => CaseError::Unavailable(reason),
            None => CaseError::Internal(InternalError::Sled(e)),
        }
    }
}
