//! Which role may call which gRPC method. Deny by default: a method not in
//! this table is refused to everyone (a test checks that every method of
//! every service in the descriptor set is listed here).

use super::Role;
use Role::*;

/// Who may call a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed (health checks for load balancers).
    Public,
    /// Any authenticated principal (server reflection: no data).
    Authenticated,
    /// Only these roles.
    Roles(&'static [Role]),
    /// Not a known method: refused.
    Unknown,
}

const CASE_WORK: &[Role] = &[Caseworker, Supervisor];
const DECISIONS: &[Role] = &[Supervisor];
const STATISTICS: &[Role] = &[Statistician];
const AUDIT: &[Role] = &[Auditor, Admin];
const AUDIT_ONLY: &[Role] = &[Auditor];
const ADMIN: &[Role] = &[Admin];

/// Caseworker methods reserved to supervisors: decisions, cancellations,
/// appeals, certification awards, erasure; extending and answering a data
/// subject's request and the subject report (it opens the person's data and
/// every access to it for handing over).
pub const SUPERVISOR_METHODS: &[&str] = &[
    "Approve",
    "Deny",
    "DecideAppeal",
    "CancelPermit",
    "AbandonCard",
    "AwardCertification",
    "DenyCertification",
    "ErasePerson",
    "ExtendSubjectRequest",
    "AnswerSubjectRequest",
    "GetSubjectReport",
];

/// The access rule of a method path (`/package.Service/Method`).
pub fn access(path: &str) -> Access {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return Access::Unknown;
    };
    match service {
        "grpc.health.v1.Health" => Access::Public,
        "grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection" => {
            Access::Authenticated
        }
        "regularization.v1.Caseworker" => {
            if SUPERVISOR_METHODS.contains(&method) {
                Access::Roles(DECISIONS)
            } else {
                Access::Roles(CASE_WORK)
            }
        }
        "regularization.v1.Import" => Access::Roles(DECISIONS),
        "regularization.v1.Statistics" => Access::Roles(STATISTICS),
        // Worklists hold codes and dates only; department scopes apply.
        "regularization.v1.Worklists" => Access::Roles(CASE_WORK),
        // GetCheckpoint is open to admins (who sign checkpoints on demand);
        // the rest of the audit service is for auditors.
        "regularization.v1.Audit" if method == "GetCheckpoint" => Access::Roles(AUDIT),
        "regularization.v1.Audit" => Access::Roles(AUDIT_ONLY),
        "regularization.v1.Admin" => Access::Roles(ADMIN),
        "regularization.v1.Policy" => match method {
            "RecordPolicy" | "PreviewPolicy" => Access::Roles(ADMIN),
            "ListPolicies" | "GetPolicy" => Access::Authenticated,
            _ => Access::Unknown,
        },
        _ => Access::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_for_supervisors_only() {
        for m in SUPERVISOR_METHODS {
            assert_eq!(
                access(&format!("/regularization.v1.Caseworker/{m}")),
                Access::Roles(&[Supervisor])
            );
        }
        assert_eq!(
            access("/regularization.v1.Caseworker/GetCase"),
            Access::Roles(&[Caseworker, Supervisor])
        );
    }

    #[test]
    fn unknown_paths_are_refused() {
        for p in [
            "",
            "/",
            "/x",
            "/regularization.v1.Nope/Get",
            "regularization.v1.Caseworker/GetCase",
        ] {
            assert_eq!(access(p), Access::Unknown, "{p}");
        }
    }
}
