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

/// Who may call a command, as the command table says (`by CaseWork` or
/// `by Supervisor`).
#[derive(Clone, Copy)]
enum Who {
    CaseWork,
    Supervisor,
}

/// Every command's RPC with who may call it, from the command table.
macro_rules! command_methods {
    ({} $($group:ident [$(($name:ident $rpc:ident $request:ident $who:ident))*])*) => {
        const COMMAND_METHODS: &[(&str, Who)] = &[$($((stringify!($name), Who::$who),)*)*];
    };
}

crate::domain::vocabulary::command_table!(wire => command_methods);

/// How many command RPCs `who` may call, plus `extra`.
const fn count(who: Who, extra: usize) -> usize {
    let mut n = extra;
    let mut i = 0;
    while i < COMMAND_METHODS.len() {
        if COMMAND_METHODS[i].1 as u8 == who as u8 {
            n += 1;
        }
        i += 1;
    }
    n
}

/// `extra`, then the command RPCs `who` may call (`N` is their [`count`]).
const fn methods<const N: usize>(who: Who, extra: &[&'static str]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut n = 0;
    while n < extra.len() {
        out[n] = extra[n];
        n += 1;
    }
    let mut i = 0;
    while i < COMMAND_METHODS.len() {
        if COMMAND_METHODS[i].1 as u8 == who as u8 {
            out[n] = COMMAND_METHODS[i].0;
            n += 1;
        }
        i += 1;
    }
    out
}

/// The Caseworker methods that are not commands and are reserved to
/// supervisors: the subject report (it opens the person's data and every
/// access to it for handing over).
const SUPERVISOR_READS: &[&str] = &["GetSubjectReport"];

/// Caseworker methods reserved to supervisors: the commands the command
/// table gives `by Supervisor` (decisions, cancellations, appeals,
/// certification awards, erasure; extending and answering a data subject's
/// request), and `SUPERVISOR_READS`.
pub const SUPERVISOR_METHODS: &[&str] =
    &methods::<{ count(Who::Supervisor, SUPERVISOR_READS.len()) }>(Who::Supervisor, SUPERVISOR_READS);

/// The Caseworker methods that are not commands and are open to
/// caseworkers and supervisors.
const CASE_WORK_READS: &[&str] = &["GetCase", "FindCasesByDocument", "ListCaseEvents", "ListChannels"];

/// Caseworker methods open to caseworkers and supervisors: the commands the
/// command table gives `by CaseWork`, and `CASE_WORK_READS`. Every method
/// of the service is in this list or in [`SUPERVISOR_METHODS`]: a method
/// added to the proto and to neither is refused to everyone (fail closed),
/// and the access-matrix test, which reads the served descriptors, says which.
pub const CASE_WORK_METHODS: &[&str] =
    &methods::<{ count(Who::CaseWork, CASE_WORK_READS.len()) }>(Who::CaseWork, CASE_WORK_READS);

/// The methods of the other services, each listed (fail closed likewise).
const HEALTH_METHODS: &[&str] = &["Check", "Watch"];
const REFLECTION_METHODS: &[&str] = &["ServerReflectionInfo"];
const IMPORT_METHODS: &[&str] = &["ImportCases"];
const STATISTICS_METHODS: &[&str] = &[
    "Caseload",
    "Series",
    "Funnel",
    "Certifications",
    "ExpiringPermits",
    "Release",
    "WorklistCounts",
];
const WORKLIST_METHODS: &[&str] = &["ListWorklist"];
const AUDIT_METHODS: &[&str] = &[
    "GetInclusionProof",
    "GetConsistencyProof",
    "GetEvents",
    "VerifyLog",
    "TailLog",
    "GetReceipt",
    "ListKeyHandovers",
];
const ADMIN_METHODS: &[&str] = &[
    "AddToken",
    "RevokeToken",
    "ListTokens",
    "RotateMasterKey",
    "Backup",
    "ClusterStatus",
    "ClusterAddMember",
    "ClusterRemoveMember",
];

/// The access rule of a method path (`/package.Service/Method`). Every
/// method of every service is named here; anything else is
/// [`Access::Unknown`], refused to everyone.
pub fn access(path: &str) -> Access {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return Access::Unknown;
    };
    match service {
        "grpc.health.v1.Health" if HEALTH_METHODS.contains(&method) => Access::Public,
        "grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection"
            if REFLECTION_METHODS.contains(&method) =>
        {
            Access::Authenticated
        }
        "regularization.v1.Caseworker" if SUPERVISOR_METHODS.contains(&method) => Access::Roles(DECISIONS),
        "regularization.v1.Caseworker" if CASE_WORK_METHODS.contains(&method) => Access::Roles(CASE_WORK),
        "regularization.v1.Import" if IMPORT_METHODS.contains(&method) => Access::Roles(DECISIONS),
        "regularization.v1.Statistics" if STATISTICS_METHODS.contains(&method) => Access::Roles(STATISTICS),
        // Worklists hold codes and dates only; department scopes apply.
        "regularization.v1.Worklists" if WORKLIST_METHODS.contains(&method) => Access::Roles(CASE_WORK),
        // GetCheckpoint is open to admins (who sign checkpoints on demand);
        // the rest of the audit service is for auditors.
        "regularization.v1.Audit" if method == "GetCheckpoint" => Access::Roles(AUDIT),
        "regularization.v1.Audit" if AUDIT_METHODS.contains(&method) => Access::Roles(AUDIT_ONLY),
        "regularization.v1.Admin" if ADMIN_METHODS.contains(&method) => Access::Roles(ADMIN),
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
    fn health_is_public_and_reflection_needs_credentials() {
        for m in HEALTH_METHODS {
            assert_eq!(access(&format!("/grpc.health.v1.Health/{m}")), Access::Public);
        }
        for s in [
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            assert_eq!(
                access(&format!("/{s}/ServerReflectionInfo")),
                Access::Authenticated
            );
        }
    }

    #[test]
    fn unknown_paths_are_refused() {
        for p in [
            "",
            "/",
            "/x",
            "/regularization.v1.Nope/Get",
            "regularization.v1.Caseworker/GetCase",
            // A method of a known service that is not listed: refused to everyone.
            "/regularization.v1.Caseworker/DeleteEverything",
            "/regularization.v1.Admin/Nope",
            "/regularization.v1.Audit/Nope",
            "/regularization.v1.Statistics/Nope",
            "/regularization.v1.Policy/Nope",
            "/grpc.health.v1.Health/Nope",
            "/grpc.reflection.v1.ServerReflection/Nope",
            "/grpc.reflection.v1alpha.ServerReflection/Nope",
        ] {
            assert_eq!(access(p), Access::Unknown, "{p}");
        }
    }
}
