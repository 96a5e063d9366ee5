//! The one boundary where errors become gRPC statuses.
//!
//! Every status a program may act on carries google.rpc details (see
//! caseworker.proto, "Errors"):
//! - INVALID_ARGUMENT: `BadRequest` naming the request field;
//! - FAILED_PRECONDITION: `PreconditionFailure` (type = the rule, or `STAGE`
//!   / `PERSON_ERASED`; subject = the request field or `case`) and
//!   `ErrorInfo` (reason, and metadata: `stage`, `command`, `rule`,
//!   `erased_on` where they apply);
//! - ALREADY_EXISTS: `ErrorInfo.reason` `DOCUMENT_REGISTERED`,
//!   `REQUEST_ID_REUSED`, `REQUEST_FROM_OTHER_PRINCIPAL` or `CASE_EXISTS`;
//! - ABORTED: `ErrorInfo` `VERSION_CONFLICT` with `expected` and `actual`;
//! - RESOURCE_EXHAUSTED: `QuotaFailure` naming the field and its limit;
//! - NOT_FOUND: `ErrorInfo` `CASE_NOT_FOUND`.
//!
//! Internal errors are logged and returned without details. Messages never
//! carry personal data: they name fields, states, rules and codes.
//!
//! The `Audit`, `Statistics` and `Worklists` services have typed errors of
//! their own ([`AuditServiceError`], [`StatisticsError`],
//! [`WorklistServiceError`]); their statuses are built here too, at the end
//! of this file.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::audit::AuditServiceError;
use super::statistics::StatisticsError;
use super::worklists::WorklistServiceError;
use crate::audit::AuditError;
use crate::cases::CaseError;
use crate::domain::Rejection;
use crate::release::ReleaseError;

/// `ErrorInfo.domain` of every error this service describes.
pub const ERROR_DOMAIN: &str = "regularization.v1";

/// INVALID_ARGUMENT naming one field.
pub fn invalid_argument(field: &str, reason: &str) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("invalid {field}: {reason}"),
        ErrorDetails::with_bad_request_violation(field, reason),
    )
}

/// RESOURCE_EXHAUSTED naming the field (or request part) over its limit.
pub fn limit_exceeded(subject: &str, description: &str) -> Status {
    let mut details = ErrorDetails::with_quota_failure_violation(subject, description);
    details.set_error_info("LIMIT_EXCEEDED", ERROR_DOMAIN, meta(&[("field", subject)]));
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("{subject}: {description}"),
        details,
    )
}

/// FAILED_PRECONDITION outside the case rules (for example a backup that
/// does not continue this server's log): `reason` is both the
/// `PreconditionFailure` type and the `ErrorInfo` reason.
pub fn failed_precondition(reason: &str, subject: &str, description: &str) -> Status {
    precondition(
        format!("{subject}: {description}"),
        reason,
        subject,
        description,
        &[],
    )
}

/// Response metadata naming the cluster leader's client address.
pub const LEADER_METADATA: &str = "x-registry-leader";

/// UNAVAILABLE from a cluster node that does not lead (docs/CLUSTER.md):
/// `ErrorInfo` `NOT_LEADER` with `leader` (the leader's client address,
/// empty while unknown), the same address in the response metadata
/// `x-registry-leader`, and a `RetryInfo` of 100 ms. Nothing was written.
pub fn not_leader(leader: Option<&str>) -> Status {
    let leader = leader.unwrap_or("");
    let mut details = ErrorDetails::with_error_info("NOT_LEADER", ERROR_DOMAIN, meta(&[("leader", leader)]));
    details.set_retry_info(Some(std::time::Duration::from_millis(100)));
    let message = match leader {
        "" => "this node is not the cluster's leader and no leader is known yet; retry".to_string(),
        l => format!("this node is not the cluster's leader; send writes to {l}"),
    };
    let mut status = Status::with_error_details(Code::Unavailable, message, details);
    if let Ok(v) = leader.parse() {
        if !leader.is_empty() {
            status.metadata_mut().insert(LEADER_METADATA, v);
        }
    }
    status
}

/// A status with only an `ErrorInfo` detail.
fn with_info(code: Code, message: String, reason: &str, metadata: &[(&str, &str)]) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, meta(metadata)),
    )
}

/// FAILED_PRECONDITION with a `PreconditionFailure` violation and an `ErrorInfo`.
fn precondition(
    message: String,
    kind: &str,
    subject: &str,
    description: &str,
    metadata: &[(&str, &str)],
) -> Status {
    let mut details = ErrorDetails::with_precondition_failure_violation(kind, subject, description);
    details.set_error_info(kind, ERROR_DOMAIN, meta(metadata));
    Status::with_error_details(Code::FailedPrecondition, message, details)
}

fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The request field a domain field name stands for. The domain names what
/// it checks (`on`, `birth_year`); the wire's field paths differ for a few.
pub fn wire_field(domain_field: &str) -> &str {
    match domain_field {
        "on" => "header.on",
        "birth_year" | "birth_month" => "person.birth_date",
        "documents" => "person.documents",
        "identity" => "person",
        other => other,
    }
}

impl From<Rejection> for Status {
    fn from(r: Rejection) -> Status {
        let message = r.to_string();
        match r {
            Rejection::Invalid { field, reason } => invalid_argument(wire_field(field), &reason),
            Rejection::IllegalTransition {
                command,
                state,
                reason,
            } => precondition(
                message,
                "STAGE",
                "case",
                &reason,
                &[("stage", state), ("command", command)],
            ),
            Rejection::RuleViolated {
                command,
                state,
                rule,
                field,
                reason,
            } => {
                let field = wire_field(field);
                let mut details = ErrorDetails::with_precondition_failure_violation(rule, field, &reason);
                details.set_error_info(
                    rule,
                    ERROR_DOMAIN,
                    meta(&[("stage", state), ("command", command), ("field", field)]),
                );
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            Rejection::Erased { command, erased_on } => {
                let on = erased_on.to_string();
                precondition(
                    message,
                    "PERSON_ERASED",
                    "case",
                    "the person's identifying data was erased; only closing steps remain",
                    &[("command", command), ("erased_on", &on)],
                )
            }
            Rejection::CaseAlreadyExists => with_info(Code::AlreadyExists, message, "CASE_EXISTS", &[]),
            Rejection::NoSuchCase => with_info(Code::NotFound, message, "CASE_NOT_FOUND", &[]),
        }
    }
}

impl From<CaseError> for Status {
    fn from(e: CaseError) -> Status {
        let message = e.to_string();
        match e {
            CaseError::Invalid { field, reason } => invalid_argument(field, &reason),
            CaseError::Rejected(r) => r.into(),
            CaseError::NotFound(_) => {
                with_info(Code::NotFound, "case not found".into(), "CASE_NOT_FOUND", &[])
            }
            CaseError::OutOfScope => crate::auth::out_of_scope(),
            CaseError::VersionConflict { expected, actual } => with_info(
                Code::Aborted,
                message,
                "VERSION_CONFLICT",
                &[
                    ("expected", &expected.to_string()),
                    ("actual", &actual.to_string()),
                ],
            ),
            CaseError::DocumentTaken => with_info(Code::AlreadyExists, message, "DOCUMENT_REGISTERED", &[]),
            CaseError::RequestIdReused => with_info(Code::AlreadyExists, message, "REQUEST_ID_REUSED", &[]),
            CaseError::RequestFromOtherPrincipal => {
                with_info(Code::AlreadyExists, message, "REQUEST_FROM_OTHER_PRINCIPAL", &[])
            }
            CaseError::RegistrationErased { case_id } => precondition(
                message,
                "PERSON_ERASED",
                "case",
                "the registration's person was erased",
                &[("command", "RegisterPerson"), ("case_id", &case_id)],
            ),
            CaseError::TooLarge { field, limit } => {
                limit_exceeded(field, &format!("exceeds the limit of {limit}"))
            }
            CaseError::Unavailable(_) => {
                tracing::error!(error = %e, "request failed: service unavailable");
                Status::unavailable("the registry cannot record changes right now")
            }
            CaseError::NotLeader { leader } => not_leader(leader.as_deref()),
            CaseError::Internal(_) => {
                tracing::error!(error = %e, "request failed: internal error");
                Status::internal("internal error")
            }
        }
    }
}

impl From<AuditError> for Status {
    fn from(e: AuditError) -> Status {
        match e {
            AuditError::InvalidArgument { field, reason } => invalid_argument(field, &reason),
            AuditError::NotFound(m) => Status::not_found(m),
            AuditError::FailedPrecondition(m) => Status::failed_precondition(m),
            AuditError::Internal(m) => {
                tracing::error!(error = %m, "audit service internal error");
                Status::internal(m.to_string())
            }
        }
    }
}

impl From<AuditServiceError> for Status {
    fn from(e: AuditServiceError) -> Status {
        let message = e.to_string();
        match e {
            AuditServiceError::Audit(e) => e.into(),
            AuditServiceError::SignNowNotAdmin => Status::permission_denied(message),
            AuditServiceError::TooManyVerifyRuns | AuditServiceError::TooManyTailStreams => {
                Status::resource_exhausted(message)
            }
            AuditServiceError::Task(_)
            | AuditServiceError::TailTask(_)
            | AuditServiceError::TailMissing(_) => Status::internal(message),
        }
    }
}

impl From<ReleaseError> for Status {
    fn from(e: ReleaseError) -> Status {
        match e {
            ReleaseError::NoCheckpoint | ReleaseError::NoCheckpointAt(_) => Status::not_found(e.to_string()),
            ReleaseError::EarlierKey { .. } | ReleaseError::Empty => {
                Status::failed_precondition(e.to_string())
            }
            ReleaseError::Internal(m) => Status::internal(m),
        }
    }
}

impl From<StatisticsError> for Status {
    fn from(e: StatisticsError) -> Status {
        let message = e.to_string();
        match e {
            StatisticsError::Invalid { field, reason } => invalid_argument(field, &reason),
            StatisticsError::Loading | StatisticsError::Stopped(_) | StatisticsError::Replay(_) => {
                Status::unavailable(message)
            }
            StatisticsError::LoadFailed(_)
            | StatisticsError::Task(_)
            | StatisticsError::WorklistCounts(_) => Status::internal(message),
            StatisticsError::NoWorklists | StatisticsError::NoReleases => Status::unimplemented(message),
            StatisticsError::ReleaseBusy => Status::resource_exhausted(message),
            StatisticsError::Worklists(e) => e.into(),
            StatisticsError::Release(e) => e.into(),
        }
    }
}

impl From<WorklistServiceError> for Status {
    fn from(e: WorklistServiceError) -> Status {
        let message = e.to_string();
        match e {
            WorklistServiceError::Invalid { field, reason } => invalid_argument(field, &reason),
            WorklistServiceError::OutOfScope => Status::permission_denied(message),
            WorklistServiceError::CatchingUp => Status::unavailable(message),
            WorklistServiceError::Stopped(_)
            | WorklistServiceError::NotOpened
            | WorklistServiceError::Task(_) => Status::internal(message),
            WorklistServiceError::Query(e) => {
                tracing::error!(error = %e, "worklist query failed");
                Status::internal(message)
            }
        }
    }
}
