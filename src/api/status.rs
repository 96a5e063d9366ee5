//! The one boundary where errors become gRPC statuses.
//!
//! Validation -> INVALID_ARGUMENT naming the field (google.rpc.BadRequest
//! details); illegal transition -> FAILED_PRECONDITION naming the state;
//! version conflict -> ABORTED; unknown case -> NOT_FOUND; duplicate
//! document or reused request id -> ALREADY_EXISTS; limits ->
//! RESOURCE_EXHAUSTED; internal errors are logged and returned without details.
//! Messages never carry personal data: they name fields, states and codes.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::cases::CaseError;
use crate::domain::Rejection;

/// INVALID_ARGUMENT naming one field.
pub fn invalid_argument(field: &str, reason: &str) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("invalid {field}: {reason}"),
        ErrorDetails::with_bad_request_violation(field, reason),
    )
}

impl From<CaseError> for Status {
    fn from(e: CaseError) -> Status {
        match e {
            CaseError::Invalid { field, reason } => invalid_argument(field, &reason),
            CaseError::Rejected(r) => match r {
                // The domain's business date is the wire's header.on.
                Rejection::Invalid { field: "on", reason } => invalid_argument("header.on", &reason),
                Rejection::Invalid { field, reason } => invalid_argument(field, &reason),
                Rejection::IllegalTransition { .. } | Rejection::Erased { .. } => {
                    Status::failed_precondition(r.to_string())
                }
                Rejection::CaseAlreadyExists => Status::already_exists(r.to_string()),
                Rejection::NoSuchCase => Status::not_found(r.to_string()),
            },
            CaseError::NotFound(_) => Status::not_found("case not found"),
            CaseError::OutOfScope => crate::auth::out_of_scope(),
            CaseError::VersionConflict { .. } => Status::aborted(e.to_string()),
            CaseError::DocumentTaken | CaseError::RequestIdReused => Status::already_exists(e.to_string()),
            CaseError::TooLarge { .. } => Status::resource_exhausted(e.to_string()),
            CaseError::Unavailable(_) => {
                tracing::error!(error = %e, "request failed: service unavailable");
                Status::unavailable("the registry cannot record changes right now")
            }
            CaseError::Internal(_) => {
                tracing::error!(error = %e, "request failed: internal error");
                Status::internal("internal error")
            }
        }
    }
}
