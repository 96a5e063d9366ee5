//! Planned domain commands -> Caseworker API requests: the inverse of
//! `src/api/convert.rs`, for sending a simulated caseload through gRPC.
//!
//! A planned command's sealed fields are placeholders; the clear values come
//! from the plan (identity, permit and visa numbers), as in the direct mode.
//! Each command becomes an [`ImportCommand`](pb::ImportCommand) variant,
//! which names the RPC that takes it: the single-RPC mode calls that RPC,
//! the import mode streams the variants. Values only travel in requests;
//! nothing here logs them.

use crate::api::pb;
use crate::api::pb::import_command::Command as Cmd;
use crate::cases::Identity;
use crate::domain::{Command, Date};

use super::PersonPlan;

/// A domain code without a wire enum value (a mapping bug, never input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no wire value {prefix}{code}")]
pub struct WireError {
    prefix: &'static str,
    code: String,
}

/// The wire enum value of a domain code (`from_str_name(prefix + code)`).
fn wire<E: Into<i32>>(
    prefix: &'static str,
    code: &str,
    from_str_name: fn(&str) -> Option<E>,
) -> Result<i32, WireError> {
    from_str_name(&format!("{prefix}{code}"))
        .map(Into::into)
        .ok_or_else(|| WireError {
            prefix,
            code: code.to_string(),
        })
}

fn date(d: Date) -> String {
    d.to_string()
}

fn optional_date(d: Option<Date>) -> String {
    d.map(date).unwrap_or_default()
}

/// The wire form of a clear identity.
pub fn personal_data(identity: &Identity) -> Result<pb::PersonalData, WireError> {
    Ok(pb::PersonalData {
        given_names: identity.given_names.clone(),
        family_names: identity.family_names.clone(),
        birth_date: identity.birth_date.clone(),
        documents: identity
            .documents
            .iter()
            .map(|d| {
                Ok(pb::IdentityDocument {
                    r#type: wire("DOCUMENT_TYPE_", &d.doc_type, pb::DocumentType::from_str_name)?,
                    number: d.number.clone(),
                })
            })
            .collect::<Result<_, WireError>>()?,
        phone: identity.phone.clone(),
        email: identity.email.clone(),
        address: identity.address.clone(),
    })
}

/// The request of one planned command, under `header`, with the plan's
/// clear values in the sealed slots.
pub fn request(command: &Command, plan: &PersonPlan, header: pb::CommandHeader) -> Result<Cmd, WireError> {
    let header = Some(header);
    let header_only = |header| pb::SimpleStepRequest { header };
    Ok(match command {
        Command::RegisterPerson {
            sex,
            nationality,
            department,
            municipality,
            ..
        } => Cmd::RegisterPerson(pb::RegisterPersonRequest {
            header,
            person: Some(personal_data(&plan.identity)?),
            sex: wire("SEX_", sex.as_str(), pb::Sex::from_str_name)?,
            nationality: nationality.as_str().to_string(),
            department: department.to_string(),
            municipality: municipality.to_string(),
        }),
        Command::PreRegister { channel, basis, .. } => Cmd::PreRegister(pb::PreRegisterRequest {
            header,
            channel: channel.as_str().to_string(),
            basis: wire(
                "ELIGIBILITY_BASIS_",
                basis.as_str(),
                pb::EligibilityBasis::from_str_name,
            )?,
        }),
        Command::CompleteSurvey {
            household_size,
            employed,
            sector,
            ..
        } => Cmd::CompleteSurvey(pb::CompleteSurveyRequest {
            header,
            household_size: u32::from(*household_size),
            employed: *employed,
            sector: match sector {
                Some(s) => wire("SECTOR_", s.as_str(), pb::Sector::from_str_name)?,
                None => 0,
            },
        }),
        Command::ScheduleBiometrics {
            appointment_on, site, ..
        } => Cmd::ScheduleBiometrics(pb::ScheduleBiometricsRequest {
            header,
            appointment_on: date(*appointment_on),
            site: site.clone(),
        }),
        Command::RecordMissedAppointment { .. } => Cmd::RecordMissedAppointment(header_only(header)),
        Command::RecordBiometricCapture {
            site,
            operator,
            biometric_ref,
            ..
        } => Cmd::RecordBiometricCapture(pb::RecordBiometricCaptureRequest {
            header,
            site: site.clone(),
            operator: operator.clone(),
            biometric_ref: biometric_ref.to_vec(),
        }),
        Command::RequestInformation { reason, .. } => {
            Cmd::RequestInformation(pb::RequestInformationRequest {
                header,
                reason: reason.clone(),
            })
        }
        Command::ReceiveInformation { .. } => Cmd::ReceiveInformation(header_only(header)),
        Command::Approve { .. } => Cmd::Approve(header_only(header)),
        Command::Deny { reason, .. } => Cmd::Deny(pb::DenyRequest {
            header,
            reason: wire("DENIAL_REASON_", reason.as_str(), pb::DenialReason::from_str_name)?,
        }),
        Command::FileAppeal { .. } => Cmd::FileAppeal(header_only(header)),
        Command::DecideAppeal { upheld, .. } => Cmd::DecideAppeal(pb::DecideAppealRequest {
            header,
            upheld: *upheld,
        }),
        Command::Withdraw { .. } => Cmd::Withdraw(header_only(header)),
        Command::IssuePermit { valid_until, .. } => Cmd::IssuePermit(pb::IssuePermitRequest {
            header,
            permit_number: plan.permit_number.clone(),
            valid_until: optional_date(*valid_until),
        }),
        Command::PrintCard { .. } => Cmd::PrintCard(header_only(header)),
        Command::DeliverCard { .. } => Cmd::DeliverCard(header_only(header)),
        Command::AbandonCard { .. } => Cmd::AbandonCard(header_only(header)),
        Command::IssueInterimCertificate { valid_until, .. } => {
            Cmd::IssueInterimCertificate(pb::InterimCertificateRequest {
                header,
                valid_until: date(*valid_until),
            })
        }
        Command::ExtendInterimCertificate { valid_until, .. } => {
            Cmd::ExtendInterimCertificate(pb::InterimCertificateRequest {
                header,
                valid_until: date(*valid_until),
            })
        }
        Command::RequestDuplicate { cause, .. } => Cmd::RequestDuplicate(pb::RequestDuplicateRequest {
            header,
            cause: wire(
                "DUPLICATE_CAUSE_",
                cause.as_str(),
                pb::DuplicateCause::from_str_name,
            )?,
        }),
        Command::IssueDuplicate { .. } => Cmd::IssueDuplicate(header_only(header)),
        Command::ExtendValidity { valid_until, .. } => Cmd::ExtendValidity(pb::ExtendValidityRequest {
            header,
            valid_until: date(*valid_until),
        }),
        Command::CancelPermit { ground, .. } => Cmd::CancelPermit(pb::CancelPermitRequest {
            header,
            ground: wire(
                "CANCELLATION_GROUND_",
                ground.as_str(),
                pb::CancellationGround::from_str_name,
            )?,
        }),
        Command::SupersedeByVisa { valid_until, .. } => Cmd::SupersedeByVisa(pb::SupersedeByVisaRequest {
            header,
            visa_number: plan.visa_number.clone(),
            valid_until: optional_date(*valid_until),
        }),
        Command::UpdatePersonalData { .. } => Cmd::UpdatePersonalData(pb::UpdatePersonalDataRequest {
            header,
            person: Some(personal_data(&plan.identity)?),
        }),
        Command::UpdateResidence {
            department,
            municipality,
            ..
        } => Cmd::UpdateResidence(pb::UpdateResidenceRequest {
            header,
            department: department.to_string(),
            municipality: municipality.to_string(),
        }),
        Command::RequestCertification { route, sector, .. } => {
            Cmd::RequestCertification(pb::RequestCertificationRequest {
                header,
                route: wire(
                    "CERTIFICATION_ROUTE_",
                    route.as_str(),
                    pb::CertificationRoute::from_str_name,
                )?,
                sector: wire("SECTOR_", sector.as_str(), pb::Sector::from_str_name)?,
            })
        }
        Command::AssessCertification {
            certification_id,
            passed,
            ..
        } => Cmd::AssessCertification(pb::AssessCertificationRequest {
            header,
            certification_id: *certification_id,
            passed: *passed,
        }),
        Command::AwardCertification {
            certification_id,
            standard_code,
            issuing_body,
            ..
        } => Cmd::AwardCertification(pb::AwardCertificationRequest {
            header,
            certification_id: *certification_id,
            standard_code: standard_code.clone(),
            issuing_body: issuing_body.clone(),
        }),
        Command::DenyCertification {
            certification_id,
            reason,
            ..
        } => Cmd::DenyCertification(pb::DenyCertificationRequest {
            header,
            certification_id: *certification_id,
            reason: reason.clone(),
        }),
        Command::RecordExit {
            kind, destination, ..
        } => Cmd::RecordExit(pb::RecordExitRequest {
            header,
            kind: wire("EXIT_KIND_", kind.as_str(), pb::ExitKind::from_str_name)?,
            destination: destination.map(|c| c.as_str().to_string()).unwrap_or_default(),
        }),
        Command::ErasePerson { legal_basis, .. } => Cmd::ErasePerson(pb::ErasePersonRequest {
            header,
            legal_basis: legal_basis.clone(),
        }),
        Command::ReceiveSubjectRequest { kind, .. } => {
            Cmd::ReceiveSubjectRequest(pb::ReceiveSubjectRequestRequest {
                header,
                kind: wire(
                    "SUBJECT_REQUEST_KIND_",
                    kind.as_str(),
                    pb::SubjectRequestKind::from_str_name,
                )?,
            })
        }
        Command::ExtendSubjectRequest {
            subject_request_id,
            reason,
            ..
        } => Cmd::ExtendSubjectRequest(pb::ExtendSubjectRequestRequest {
            header,
            subject_request_id: *subject_request_id,
            reason: reason.clone(),
        }),
        Command::AnswerSubjectRequest {
            subject_request_id,
            outcome,
            ..
        } => Cmd::AnswerSubjectRequest(pb::AnswerSubjectRequestRequest {
            header,
            subject_request_id: *subject_request_id,
            outcome: outcome.clone(),
        }),
        // A command no plan holds: the two cases' commands (an import
        // history is one case's), or one the simulator does not plan.
        other => {
            return Err(WireError {
                prefix: "",
                code: other.name().to_string(),
            })
        }
    })
}

/// [`call`] from the command table: the client method of a command's RPC.
macro_rules! client_calls {
    ({} one_case [$(($name:ident $rpc:ident $request:ident $who:ident))*] two_cases $two:tt) => {
        /// Calls the single RPC that takes `c`.
        pub async fn call(
            client: &mut pb::caseworker_client::CaseworkerClient<crate::client::AuthChannel>,
            c: Cmd,
        ) -> Result<pb::CommandResult, tonic::Status> {
            let r = match c {
                $(Cmd::$name(m) => client.$rpc(m).await,)*
            };
            r.map(tonic::Response::into_inner)
        }
    };
}

crate::domain::vocabulary::command_table!(wire => client_calls);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::{plan_person, request_id};

    /// Every command of a few thousand plans maps, and the enum codes
    /// round-trip (the wire value's name ends with the domain code).
    #[test]
    fn planned_commands_map_to_requests() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..3_000 {
            let plan = plan_person(11, i);
            for (step, p) in plan.commands.iter().enumerate() {
                let header = pb::CommandHeader {
                    request_id: request_id(11, i, step),
                    case_id: String::new(),
                    expected_version: 0,
                    on: p.command.on().to_string(),
                };
                let c = request(&p.command, &plan, header).expect("maps");
                seen.insert(crate::api::import::command_name(&c));
                if let Cmd::RegisterPerson(m) = &c {
                    let person = m.person.as_ref().expect("person");
                    assert_eq!(person.documents.len(), plan.identity.documents.len());
                    assert!(person.documents.iter().all(|d| d.r#type != 0));
                    assert_ne!(m.sex, 0);
                }
            }
        }
        assert!(seen.len() >= 20, "the plans exercise most commands: {seen:?}");
        assert_eq!(
            wire("SEX_", "Q", pb::Sex::from_str_name),
            Err(WireError {
                prefix: "SEX_",
                code: "Q".into()
            })
        );
    }
}
