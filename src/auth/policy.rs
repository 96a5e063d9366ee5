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

/// Caseworker methods open to caseworkers and supervisors. Every method of
/// the service is in this list or in [`SUPERVISOR_METHODS`]: a method added
/// to the proto and to neither is refused to everyone (fail closed), and
/// the access-matrix test, which reads the served descriptors, says which.
pub const CASE_WORK_METHODS: &[&str] = &[
    "RegisterPerson",
    "PreRegister",
    "CompleteSurvey",
    "ScheduleBiometrics",
    "RecordMissedAppointment",
    "RecordBiometricCapture",
    "RequestInformation",
    "ReceiveInformation",
    "FileAppeal",
    "Withdraw",
    "IssuePermit",
    "PrintCard",
    "DeliverCard",
    "IssueInterimCertificate",
    "ExtendInterimCertificate",
    "RequestDuplicate",
    "IssueDuplicate",
    "ExtendValidity",
    "SupersedeByVisa",
    "UpdatePersonalData",
    "UpdateResidence",
    "RequestCertification",
    "AssessCertification",
    "RecordExit",
    "GetCase",
    "FindCasesByDocument",
    "ListCaseEvents",
    "ListChannels",
    "ReceiveSubjectRequest",
    "RecordFamilyLink",
    "EndFamilyLink",
];

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
