//! The gRPC boundary: tonic services, request metadata, conversions and the
//! mapping of errors to statuses. Prost types do not go past this module.

pub mod admin;
pub mod audit;
mod convert;
mod family;
pub mod import;
pub mod statistics;
pub mod status;
pub mod subject;
pub mod wire_errors;
pub mod worklists;

use tonic::{Request, Response, Status};

use crate::cases::{CaseError, Cases, CommandContext, PendingCommand};
use crate::clock::today;
use crate::domain::{Command, Date};
use crate::limits::{CASE_EVENTS_PAGE_DEFAULT, CASE_EVENTS_PAGE_MAX, REQUEST_ID_BYTES_MAX};

/// Generated code of the `regularization.v1` package.
pub mod policy;

pub mod pb {
    tonic::include_proto!("regularization.v1");
}

/// The file descriptor set of every package, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("registry_descriptor");

/// Legacy metadata key of the acting user: ignored by the server (the actor
/// of every event is the authenticated principal); kept for old clients.
pub const ACTOR_USER_HEADER: &str = "x-actor-user";
/// Legacy metadata key of the acting office: ignored, like [`ACTOR_USER_HEADER`].
pub const ACTOR_OFFICE_HEADER: &str = "x-actor-office";

/// The caseworker service.
#[derive(Clone)]
pub struct CaseworkerService {
    cases: Cases,
}

impl CaseworkerService {
    pub fn new(cases: Cases) -> Self {
        CaseworkerService { cases }
    }

    /// Wraps the service for tonic.
    pub fn into_server(self) -> pb::caseworker_server::CaseworkerServer<Self> {
        pb::caseworker_server::CaseworkerServer::new(self)
            .max_decoding_message_size(crate::limits::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(crate::limits::GRPC_RESPONSE_BYTES_MAX)
    }

    /// Runs a command whose request carries a header: `build` turns the
    /// message (and its validated business date) into a pending command.
    async fn command<M: HasHeader>(
        &self,
        request: Request<M>,
        build: impl FnOnce(M, Date, Date) -> Result<PendingCommand, CaseError>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let principal = crate::auth::principal(&request)?;
        let message = request.into_inner();
        let header = message
            .header()
            .cloned()
            .ok_or_else(|| status::invalid_argument("header", "required"))?;
        check_request_id(&header.request_id)?;
        let today = today();
        let on = convert::business_date(&header.on, today)?;
        let pending = build(message, on, today)?;
        let ctx = CommandContext {
            request_id: header.request_id,
            case_id: (!header.case_id.is_empty()).then_some(header.case_id),
            expected_version: header.expected_version,
            actor: principal.actor(),
            today,
            departments: principal.departments.clone(),
        };
        let outcome = self.cases.execute(ctx, pending).await?;
        Ok(Response::new(pb::CommandResult {
            case_id: outcome.case_id,
            version: outcome.appended.last_version,
            first_seq: outcome.appended.first_seq,
            last_seq: outcome.appended.last_seq,
            recorded_at_us: outcome.appended.recorded_at_us,
            deduplicated: outcome.appended.deduplicated,
            stage: outcome.state.state_name().to_string(),
            status: convert::status(crate::domain::person_status(&outcome.state, today)),
            event_types: outcome.event_types.iter().map(|t| t.to_string()).collect(),
            stage_code: convert::stage_code(&outcome.state),
        }))
    }

    /// Reads a case (identity opened) for `principal`: a scoped caller
    /// gets the same PERMISSION_DENIED for a case outside its departments
    /// and for a missing one. Records nothing: the caller records the access.
    async fn read_in_scope(
        &self,
        principal: &crate::auth::Principal,
        case_id: &str,
    ) -> Result<crate::cases::CaseView, Status> {
        let cases = self.cases.clone();
        let id = case_id.to_string();
        let view = match tokio::task::spawn_blocking(move || cases.get_case(&id))
            .await
            .map_err(|_| Status::internal("internal error"))?
        {
            Ok(view) => view,
            // A scoped caller learns nothing about cases outside its scope, not even existence.
            Err(CaseError::NotFound(_)) if !principal.departments.is_empty() => {
                return Err(crate::auth::out_of_scope())
            }
            Err(e) => return Err(e.into()),
        };
        if !crate::cases::in_scope(&principal.departments, view.state.department()) {
            return Err(crate::auth::out_of_scope());
        }
        Ok(view)
    }

    /// A command that carries nothing beyond its header and date.
    async fn simple(
        &self,
        request: Request<pb::SimpleStepRequest>,
        make: fn(Date) -> Command,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.command(request, |_, on, _| Ok(PendingCommand::Plain(make(on))))
            .await
    }
}

/// Requests that carry a [`pb::CommandHeader`].
trait HasHeader: Send + 'static {
    fn header(&self) -> Option<&pb::CommandHeader>;
}

macro_rules! has_header {
    ($($t:ty),* $(,)?) => {
        $(impl HasHeader for $t {
            fn header(&self) -> Option<&pb::CommandHeader> {
                self.header.as_ref()
            }
        })*
    };
}

has_header!(
    pb::SimpleStepRequest,
    pb::RegisterPersonRequest,
    pb::PreRegisterRequest,
    pb::CompleteSurveyRequest,
    pb::ScheduleBiometricsRequest,
    pb::RecordBiometricCaptureRequest,
    pb::RequestInformationRequest,
    pb::DenyRequest,
    pb::DecideAppealRequest,
    pb::IssuePermitRequest,
    pb::InterimCertificateRequest,
    pb::RequestDuplicateRequest,
    pb::ExtendValidityRequest,
    pb::CancelPermitRequest,
    pb::SupersedeByVisaRequest,
    pb::UpdatePersonalDataRequest,
    pb::UpdateResidenceRequest,
    pb::RequestCertificationRequest,
    pb::AssessCertificationRequest,
    pb::AwardCertificationRequest,
    pb::DenyCertificationRequest,
    pb::RecordExitRequest,
    pb::ErasePersonRequest,
    pb::ReceiveSubjectRequestRequest,
    pb::ExtendSubjectRequestRequest,
    pb::AnswerSubjectRequestRequest,
);

type CommandResponse = Result<Response<pb::CommandResult>, Status>;

#[tonic::async_trait]
impl pb::caseworker_server::Caseworker for CaseworkerService {
    async fn register_person(&self, r: Request<pb::RegisterPersonRequest>) -> CommandResponse {
        self.command(r, convert::register).await
    }
    async fn pre_register(&self, r: Request<pb::PreRegisterRequest>) -> CommandResponse {
        self.command(r, |m, on, _| convert::pre_register(m, on)).await
    }
    async fn complete_survey(&self, r: Request<pb::CompleteSurveyRequest>) -> CommandResponse {
        self.command(r, |m, on, _| convert::complete_survey(m, on)).await
    }
    async fn schedule_biometrics(&self, r: Request<pb::ScheduleBiometricsRequest>) -> CommandResponse {
        self.command(r, |m, on, _| convert::schedule_biometrics(m, on))
            .await
    }
    async fn record_missed_appointment(&self, r: Request<pb::SimpleStepRequest>) -> CommandResponse {
        self.simple(r, |on| Command::RecordMissedAppointment { on }).await
    }
    async fn record_biometric_capture(
        &self,
        r: Request<pb::RecordBiometricCaptureRequest>,
    ) -> CommandResponse {
        self.command(r, |m, on, _| convert::biometric_capture(m, on))
            .await
    }
    async fn request_information(&self, r: Request<pb::RequestInformationRequest>) -> CommandResponse {
        self.command(r, |m, on, _| convert::request_information(m, on))
            .await
    }
    async fn receive_information(&self, r: Request<pb::SimpleStepRequest>) -> CommandResponse {
        self.simple(r, |on| Command::ReceiveInformation { on }).await
    }
    async fn approve(&self, r: Request<pb::SimpleStepRequest>) -> CommandResponse {
        self.simple(r, |on| Command::Approve { on }).await
    }
    async fn deny(&self, r: Request<pb::DenyRequest>) -> CommandResponse {
        self.command(r, |m, on, _| convert::deny(m, on)).await
    }
    async fn file_appeal(&self, r: Request<pb::SimpleStepRequest>) -> CommandResponse {
        self.simple(r, |on| Command::FileAppeal { on }).await
    }
    async fn decide_appeal(&self, r: Request<pb::DecideAppealRequest>) -> CommandResponse {
        self.command(r, |m, on, _| {
            Ok(PendingCommand::Plain(Command::DecideAppeal {
                on,
                upheld: m.upheld,
            }))
        })
        .await
    }
    async fn withdraw(&self, r: Request<pb::SimpleStepRequest>) -> CommandResponse {
        self.simple(r, |on| Command::Withdraw { on }).await
    }
    async fn issue_permit(&self, r: Request<pb::IssuePermitRequest>) -> CommandResponse {
        self.command(r, |m, on, _| convert::issue_permit(m, on)).await
    }
    async fn print_card(&self, r: Request<pb::SimpleStepRequest>) -> CommandResponse {
        self.simple(r, |on| Command::PrintCard { on }).await
    }
    async fn deliver_card(&self, r: Request<pb::SimpleStepRequest>) -> CommandResponse {
        self.simple(r, |on| Command::DeliverCard { on }).await
    }
    async fn abandon_card(&self, r: Request<pb::SimpleStepRequest>) -> CommandResponse {
        self.simple(r, |on| Command::AbandonCard { on }).await
    }
    async fn issue_interim_certificate(&self, r: Request<pb::InterimCertificateRequest>) -> CommandResponse {
        self.command(r, |m, on, _| {
            Ok(PendingCommand::Plain(Command::IssueInterimCertificate {
                on,
                valid_until: convert::interim(&m)?,
            }))
        })
        .await
    }
    async fn extend_interim_certificate(&self, r: Request<pb::InterimCertificateRequest>) -> CommandResponse {
        self.command(r, |m, on, _| {
            Ok(PendingCommand::Plain(Command::ExtendInterimCertificate {
                on,
                valid_until: convert::interim(&m)?,
            }))
        })
        .await
    }
    async fn request_duplicate(&self, r: Request<pb::RequestDuplicateRequest>) -> CommandResponse {
        self.command(r, |m, on, _| {
            Ok(PendingCommand::Plain(Command::RequestDuplicate {
                on,
                cause: convert::duplicate_cause(&m)?,
            }))
        })
        .await
    }
    async fn issue_duplicate(&self, r: Request<pb::SimpleStepRequest>) -> CommandResponse {
        self.simple(r, |on| Command::IssueDuplicate { on }).await
    }
    async fn extend_validity(&self, r: Request<pb::ExtendValidityRequest>) -> CommandResponse {
        self.command(r, |m, on, _| {
            let valid_until = convert::date(&m.valid_until, "valid_until")?;
            Ok(PendingCommand::Plain(Command::ExtendValidity { on, valid_until }))
        })
        .await
    }
    async fn cancel_permit(&self, r: Request<pb::CancelPermitRequest>) -> CommandResponse {
        self.command(r, |m, on, _| {
            Ok(PendingCommand::Plain(Command::CancelPermit {
                on,
                ground: convert::cancellation_ground(&m)?,
            }))
        })
        .await
    }
    async fn supersede_by_visa(&self, r: Request<pb::SupersedeByVisaRequest>) -> CommandResponse {
        self.command(r, |m, on, _| convert::supersede_by_visa(m, on))
            .await
    }
    async fn update_personal_data(&self, r: Request<pb::UpdatePersonalDataRequest>) -> CommandResponse {
        self.command(r, convert::update_personal_data).await
    }
    async fn update_residence(&self, r: Request<pb::UpdateResidenceRequest>) -> CommandResponse {
        self.command(r, |m, on, _| convert::update_residence(m, on)).await
    }
    async fn request_certification(&self, r: Request<pb::RequestCertificationRequest>) -> CommandResponse {
        self.command(r, |m, on, _| convert::request_certification(m, on))
            .await
    }
    async fn assess_certification(&self, r: Request<pb::AssessCertificationRequest>) -> CommandResponse {
        self.command(r, |m, on, _| {
            Ok(PendingCommand::Plain(Command::AssessCertification {
                certification_id: convert::certification_id(m.certification_id)?,
                on,
                passed: m.passed,
            }))
        })
        .await
    }
    async fn award_certification(&self, r: Request<pb::AwardCertificationRequest>) -> CommandResponse {
        self.command(r, |m, on, _| convert::award_certification(m, on))
            .await
    }
    async fn deny_certification(&self, r: Request<pb::DenyCertificationRequest>) -> CommandResponse {
        self.command(r, |m, on, _| convert::deny_certification(m, on))
            .await
    }
    async fn record_exit(&self, r: Request<pb::RecordExitRequest>) -> CommandResponse {
        self.command(r, |m, on, _| {
            Ok(PendingCommand::Plain(Command::RecordExit {
                on,
                kind: convert::exit_kind(&m)?,
                destination: convert::exit_destination(&m)?,
            }))
        })
        .await
    }
    async fn erase_person(&self, r: Request<pb::ErasePersonRequest>) -> CommandResponse {
        self.command(r, |m, on, _| {
            Ok(PendingCommand::Plain(Command::ErasePerson {
                on,
                legal_basis: convert::legal_basis(&m)?,
            }))
        })
        .await
    }

    async fn receive_subject_request(&self, r: Request<pb::ReceiveSubjectRequestRequest>) -> CommandResponse {
        self.command(r, |m, on, _| subject::receive(m, on)).await
    }
    async fn extend_subject_request(&self, r: Request<pb::ExtendSubjectRequestRequest>) -> CommandResponse {
        self.command(r, |m, on, _| subject::extend(m, on)).await
    }
    async fn answer_subject_request(&self, r: Request<pb::AnswerSubjectRequestRequest>) -> CommandResponse {
        self.command(r, |m, on, _| subject::answer(m, on)).await
    }

    async fn record_family_link(
        &self,
        r: Request<pb::RecordFamilyLinkRequest>,
    ) -> Result<Response<pb::FamilyLinkResult>, Status> {
        self.record_family_link_rpc(r).await
    }
    async fn end_family_link(
        &self,
        r: Request<pb::EndFamilyLinkRequest>,
    ) -> Result<Response<pb::FamilyLinkResult>, Status> {
        self.end_family_link_rpc(r).await
    }

    async fn get_subject_report(
        &self,
        r: Request<pb::GetSubjectReportRequest>,
    ) -> Result<Response<pb::SubjectReport>, Status> {
        let principal = crate::auth::principal(&r)?;
        let m = r.into_inner();
        let purpose = convert::purpose(&m.purpose)?;
        let case_id = case_id_field(&m.case_id)?;
        let view = self.read_in_scope(&principal, &case_id).await?;
        // The report opens personal data: its access is recorded (durably)
        // first, and is then part of the access log it shows.
        let appended = self
            .cases
            .record_access(
                principal.actor(),
                access_record(&principal, case_id.clone(), "GetSubjectReport", purpose),
            )
            .await?;
        let cases = self.cases.clone();
        let accesses = tokio::task::spawn_blocking(move || cases.access_log(&case_id))
            .await
            .map_err(|_| Status::internal("internal error"))??;
        Ok(Response::new(subject::report(
            view,
            accesses,
            appended.last_seq,
            today(),
        )))
    }

    async fn list_channels(
        &self,
        r: Request<pb::ListChannelsRequest>,
    ) -> Result<Response<pb::ListChannelsResponse>, Status> {
        let m = r.into_inner();
        let on = match m.on.as_str() {
            "" => today(),
            text => convert::date(text, "on").map_err(Status::from)?,
        };
        let channels = self
            .cases
            .catalog_on(on)
            .channels()
            .iter()
            .map(|c| convert::channel(c, on))
            .collect();
        Ok(Response::new(pb::ListChannelsResponse { channels }))
    }

    async fn get_case(&self, r: Request<pb::GetCaseRequest>) -> Result<Response<pb::Case>, Status> {
        let principal = crate::auth::principal(&r)?;
        let m = r.into_inner();
        let purpose = convert::purpose(&m.purpose)?;
        let case_id = case_id_field(&m.case_id)?;
        let view = self.read_in_scope(&principal, &case_id).await?;
        // The read of personal data is recorded (durably) before the data leaves.
        self.cases
            .record_access(
                principal.actor(),
                access_record(&principal, case_id, "GetCase", purpose),
            )
            .await?;
        Ok(Response::new(convert::case(view, today(), &self.cases.policy())))
    }

    async fn find_cases_by_document(
        &self,
        r: Request<pb::FindCasesByDocumentRequest>,
    ) -> Result<Response<pb::FindCasesByDocumentResponse>, Status> {
        let principal = crate::auth::principal(&r)?;
        let m = r.into_inner();
        let purpose = convert::purpose(&m.purpose)?;
        let (doc_type, number) = convert::document_query(m.document)?;
        let cases = self.cases.clone();
        let departments = principal.departments.clone();
        let found = tokio::task::spawn_blocking(move || -> Result<Option<String>, CaseError> {
            let Some(case_id) = cases.find_by_document(&doc_type, &number)? else {
                return Ok(None);
            };
            if departments.is_empty() {
                return Ok(Some(case_id));
            }
            // A scoped caller sees only cases inside its departments.
            Ok(crate::cases::in_scope(&departments, cases.department(&case_id)?).then_some(case_id))
        })
        .await
        .map_err(|_| Status::internal("internal error"))??;
        // A look-up by document is a read of personal data, found or not.
        let case_id = found.clone().unwrap_or_default();
        self.cases
            .record_access(
                principal.actor(),
                access_record(&principal, case_id, "FindCasesByDocument", purpose),
            )
            .await?;
        Ok(Response::new(pb::FindCasesByDocumentResponse {
            case_ids: found.into_iter().collect(),
        }))
    }

    async fn list_case_events(
        &self,
        r: Request<pb::ListCaseEventsRequest>,
    ) -> Result<Response<pb::ListCaseEventsResponse>, Status> {
        let principal = crate::auth::principal(&r)?;
        let m = r.into_inner();
        let case_id = case_id_field(&m.case_id)?;
        let limit = match m.limit {
            0 => CASE_EVENTS_PAGE_DEFAULT,
            1..=CASE_EVENTS_PAGE_MAX => m.limit as usize,
            _ => {
                let reason = format!("must be 1..{CASE_EVENTS_PAGE_MAX}");
                return Err(status::invalid_argument("limit", &reason));
            }
        };
        let from = m.from_version.max(1);
        let cases = self.cases.clone();
        let departments = principal.departments.clone();
        let page = tokio::task::spawn_blocking(move || -> Result<_, CaseError> {
            let store = cases.store();
            if store.stream_version(&case_id)? == 0 {
                return Err(if departments.is_empty() {
                    CaseError::NotFound(case_id)
                } else {
                    CaseError::OutOfScope
                });
            }
            if !departments.is_empty() && !crate::cases::in_scope(&departments, cases.department(&case_id)?) {
                return Err(CaseError::OutOfScope);
            }
            let events = store.read_stream(&case_id, from, limit + 1)?;
            let mut out = Vec::with_capacity(events.len());
            for ev in events {
                let e = crate::codec::decode(&ev.record.event_type, &ev.record.payload)?;
                out.push(convert::event_summary(&ev, &e));
            }
            Ok(out)
        })
        .await
        .map_err(|_| Status::internal("internal error"))??;
        let mut events = page;
        let next_version = if events.len() > limit {
            events.pop().map(|e| e.version).unwrap_or(0)
        } else {
            0
        };
        Ok(Response::new(pb::ListCaseEventsResponse { events, next_version }))
    }
}

/// The access event of a personal-data read by `principal`.
fn access_record(
    principal: &crate::auth::Principal,
    case_id: String,
    operation: &'static str,
    purpose: String,
) -> crate::cases::AccessRecord {
    crate::cases::AccessRecord {
        case_id,
        operation,
        purpose,
        role: principal.role.to_string(),
        credential: match &principal.credential {
            crate::auth::Credential::Token { token_id } => token_id.clone(),
            crate::auth::Credential::Certificate { identity } => format!("cert:{identity}"),
        },
    }
}

/// A request id: 1..=[`REQUEST_ID_BYTES_MAX`] printable ASCII characters without spaces.
fn check_request_id(rid: &str) -> Result<(), Status> {
    if rid.is_empty() || rid.len() > REQUEST_ID_BYTES_MAX || !rid.bytes().all(|b| b.is_ascii_graphic()) {
        let reason = format!("1..{REQUEST_ID_BYTES_MAX} printable characters without spaces");
        return Err(status::invalid_argument("header.request_id", &reason));
    }
    Ok(())
}

/// A case id given in a command field (`other_case_id`).
fn case_id_field_named(id: &str, field: &'static str) -> Result<String, CaseError> {
    if id.is_empty() {
        return Err(CaseError::invalid(field, "required"));
    }
    if id.len() > crate::limits::STREAM_ID_BYTES_MAX
        || id.starts_with(crate::cases::ACCESS_STREAM_PREFIX)
        || id == crate::domain::POLICY_STREAM
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(CaseError::invalid(field, "not a case id"));
    }
    Ok(id.to_string())
}

fn case_id_field(id: &str) -> Result<String, Status> {
    if id.is_empty() {
        return Err(status::invalid_argument("case_id", "required"));
    }
    if id.len() > crate::limits::STREAM_ID_BYTES_MAX
        || id.starts_with(crate::cases::ACCESS_STREAM_PREFIX)
        || id == crate::domain::POLICY_STREAM
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        return Err(status::invalid_argument("case_id", "not a case id"));
    }
    Ok(id.to_string())
}
