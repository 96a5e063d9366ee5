//! Why a command or a read failed, before the API maps it to a gRPC status.

use crate::codec;
use crate::domain::Rejection;
use crate::log::{AppendError, ExpectedVersion};
use crate::pii::PiiError;

/// Why a command or read failed, before it is mapped to a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("case {0} not found")]
    NotFound(String),
    #[error("version conflict: expected {expected}, the case is at version {actual}")]
    VersionConflict { expected: u64, actual: u64 },
    #[error("identity document already registered to another case")]
    DocumentTaken,
    #[error("request id already used for a different request on this case")]
    RequestIdReused,
    #[error("this request was already recorded on this case by another principal")]
    RequestFromOtherPrincipal,
    #[error(
        "this request id registered case {case_id}, whose identifying data was since erased: \
         the registration cannot be compared with the original or repeated"
    )]
    RegistrationErased { case_id: String },
    #[error("{field} exceeds the limit of {limit}")]
    TooLarge { field: &'static str, limit: usize },
    #[error("the case is outside the caller's departments (or does not exist)")]
    OutOfScope,
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A cluster node that does not lead; writes go to the leader.
    #[error("this node is not the cluster's leader")]
    NotLeader { leader: Option<String> },
    #[error("internal error: {0}")]
    Internal(String),
}

impl CaseError {
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

impl From<crate::log::StoreError> for CaseError {
    fn from(e: crate::log::StoreError) -> Self {
        CaseError::Internal(e.to_string())
    }
}

impl From<PiiError> for CaseError {
    fn from(e: PiiError) -> Self {
        match e {
            PiiError::InvalidDocument { reason } => CaseError::invalid("document.number", reason),
            PiiError::Sled(e) => e.into(),
            other => CaseError::Internal(other.to_string()),
        }
    }
}

impl From<sled::Error> for CaseError {
    fn from(e: sled::Error) -> Self {
        match crate::log::side::unconfirmed(&e) {
            // A replicated side write the cluster did not confirm (no leader, no majority).
            Some(reason) => CaseError::Unavailable(reason),
            None => CaseError::Internal(e.to_string()),
        }
    }
}

impl From<codec::CodecError> for CaseError {
    fn from(e: codec::CodecError) -> Self {
        CaseError::Internal(e.to_string())
    }
}
