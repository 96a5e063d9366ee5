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

pub mod policy;

/// Generated code of the `regularization.v1` package.
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
    /// A caseworker service over the case service `cases`.
    pub fn new(cases: Cases) -> Self {
        CaseworkerService { cases }
    }

    /// Wraps the service for tonic.
    pub fn into_server(self) -> pb::caseworker_server::CaseworkerServer<Self> {
        pb::caseworker_server::CaseworkerServer::new(self)
            .max_decoding_message_size(crate::limits::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(crate::limits::GRPC_RESPONSE_BYTES_MAX)
    }

    /// Runs a command whose request carries a header (`header` reads it):
    /// `build` turns the message, its validated business date and today
    /// into a pending command.
    async fn command<M: Send + 'static>(
        &self,
        request: Request<M>,
        header: fn(&M) -> Option<&pb::CommandHeader>,
        build: impl FnOnce(M, Date, Date) -> Result<PendingCommand, CaseError>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let principal = crate::auth::principal(&request)?;
        let message = request.into_inner();
        let (ctx, on) = command_context(&principal, header(&message).cloned())?;
        let today = ctx.today;
        let pending = build(message, on, today)?;
        let outcome = self.cases.execute(ctx, pending).await?;
        Ok(Response::new(command_result(
            outcome.case_id,
            &outcome.appended,
            &outcome.state,
            &outcome.event_types,
            today,
        )))
    }

    /// A read of one case's personal data by the caller of `r`, for the
    /// purpose and of the case its message names: the case read in scope,
    /// then its access recorded (durably) before anything of it is answered.
    async fn read_personal<M: PersonalRead>(
        &self,
        r: Request<M>,
        operation: &'static str,
    ) -> Result<(crate::cases::CaseView, crate::log::Appended), Status> {
        let (principal, m) = crate::auth::caller(r)?;
        let (purpose, case_id) = m.purpose_and_case();
        let purpose = convert::purpose(purpose)?;
        let case_id = case_id_field(case_id)?;
        let view = self.read_in_scope(&principal, &case_id).await?;
        let appended = self
            .cases
            .record_access(
                principal.actor(),
                access_record(&principal, case_id, operation, purpose),
            )
            .await?;
        Ok((view, appended))
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
}

/// The Caseworker handler of every command, generated from the command
/// table: a command of one case runs through [`CaseworkerService::command`]
/// with its converter (`convert::<rpc>`; a `SimpleStepRequest` carries only
/// the date), a command of two cases through its `family::<rpc>`. The other
/// RPCs, given in braces as `(method Request Response)`, run the function of
/// the same name below.
macro_rules! caseworker_service {
    (
        { $(($read:ident $read_request:ident $read_response:ident))* }
        one_case [$(($name:ident $rpc:ident $request:ident $who:ident))*]
        two_cases [$(($name2:ident $rpc2:ident $request2:ident $who2:ident))*]
    ) => {
        #[tonic::async_trait]
        impl pb::caseworker_server::Caseworker for CaseworkerService {
            $(
                async fn $rpc(&self, r: Request<pb::$request>) -> CommandResponse {
                    self.command(r, |m| m.header.as_ref(), converter!($request, $name, $rpc)).await
                }
            )*
            $(
                async fn $rpc2(&self, r: Request<pb::$request2>) -> Result<Response<pb::FamilyLinkResult>, Status> {
                    family::$rpc2(self, r).await
                }
            )*
            $(
                async fn $read(&self, r: Request<pb::$read_request>) -> Result<Response<pb::$read_response>, Status> {
                    $read(self, r).await
                }
            )*
        }
    };
}

/// The converter of a command of one case (see [`caseworker_service!`]).
macro_rules! converter {
    (SimpleStepRequest, $name:ident, $rpc:ident) => {
        |_, on, _| Ok(PendingCommand::Plain(Command::$name { on }))
    };
    ($request:ident, $name:ident, $rpc:ident) => {
        convert::$rpc
    };
}

type CommandResponse = Result<Response<pb::CommandResult>, Status>;

crate::domain::vocabulary::command_table!(wire => caseworker_service {
    (get_subject_report GetSubjectReportRequest SubjectReport)
    (list_channels ListChannelsRequest ListChannelsResponse)
    (get_case GetCaseRequest Case)
    (find_cases_by_document FindCasesByDocumentRequest FindCasesByDocumentResponse)
    (list_case_events ListCaseEventsRequest ListCaseEventsResponse)
});

// The Caseworker RPCs that are not commands: reads and the subject report.

/// A request for one case's personal data (see
/// [`CaseworkerService::read_personal`]).
trait PersonalRead: Send {
    /// The purpose and the case it names, as sent.
    fn purpose_and_case(&self) -> (&str, &str);
}

macro_rules! personal_read {
    ($($request:ident)*) => {
        $(
            impl PersonalRead for pb::$request {
                fn purpose_and_case(&self) -> (&str, &str) {
                    (&self.purpose, &self.case_id)
                }
            }
        )*
    };
}

personal_read!(GetSubjectReportRequest GetCaseRequest);

async fn get_subject_report(
    svc: &CaseworkerService,
    r: Request<pb::GetSubjectReportRequest>,
) -> Result<Response<pb::SubjectReport>, Status> {
    // The report opens personal data: its access is recorded (durably)
    // first, and is then part of the access log it shows.
    let (view, appended) = svc.read_personal(r, "GetSubjectReport").await?;
    let cases = svc.cases.clone();
    let case_id = view.case_id.clone();
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
    svc: &CaseworkerService,
    r: Request<pb::ListChannelsRequest>,
) -> Result<Response<pb::ListChannelsResponse>, Status> {
    let m = r.into_inner();
    let on = match m.on.as_str() {
        "" => today(),
        text => convert::date(text, "on").map_err(Status::from)?,
    };
    let channels = svc
        .cases
        .catalog_on(on)
        .channels()
        .iter()
        .map(|c| convert::channel(c, on))
        .collect();
    Ok(Response::new(pb::ListChannelsResponse { channels }))
}

async fn get_case(
    svc: &CaseworkerService,
    r: Request<pb::GetCaseRequest>,
) -> Result<Response<pb::Case>, Status> {
    // The read of personal data is recorded (durably) before the data leaves.
    let (view, _) = svc.read_personal(r, "GetCase").await?;
    Ok(Response::new(convert::case(view, today(), &svc.cases.policy())))
}

async fn find_cases_by_document(
    svc: &CaseworkerService,
    r: Request<pb::FindCasesByDocumentRequest>,
) -> Result<Response<pb::FindCasesByDocumentResponse>, Status> {
    let (principal, m) = crate::auth::caller(r)?;
    let purpose = convert::purpose(&m.purpose)?;
    let (doc_type, number) = convert::document_query(m.document)?;
    let cases = svc.cases.clone();
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
    svc.cases
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
    svc: &CaseworkerService,
    r: Request<pb::ListCaseEventsRequest>,
) -> Result<Response<pb::ListCaseEventsResponse>, Status> {
    let (principal, m) = crate::auth::caller(r)?;
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
    let cases = svc.cases.clone();
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

/// The checks of a command's header, in order (present, request id,
/// business date): the command's context and its business date.
fn command_context(
    principal: &crate::auth::Principal,
    header: Option<pb::CommandHeader>,
) -> Result<(CommandContext, Date), Status> {
    let header = header.ok_or_else(|| status::invalid_argument("header", "required"))?;
    check_request_id(&header.request_id)?;
    let today = today();
    let on = convert::business_date(&header.on, today)?;
    let ctx = CommandContext {
        request_id: header.request_id,
        case_id: (!header.case_id.is_empty()).then_some(header.case_id),
        expected_version: header.expected_version,
        actor: principal.actor(),
        today,
        departments: principal.departments.clone(),
    };
    Ok((ctx, on))
}

/// The answer of a command on one case: where its events went and the
/// case after them.
fn command_result(
    case_id: String,
    appended: &crate::log::Appended,
    state: &crate::domain::CaseState,
    event_types: &[&str],
    today: Date,
) -> pb::CommandResult {
    pb::CommandResult {
        case_id,
        version: appended.last_version,
        first_seq: appended.first_seq,
        last_seq: appended.last_seq,
        recorded_at_us: appended.recorded_at_us,
        deduplicated: appended.deduplicated,
        stage: state.state_name().to_string(),
        status: convert::status(crate::domain::person_status(state, today)),
        event_types: event_types.iter().map(|t| t.to_string()).collect(),
        stage_code: convert::stage_code(state),
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

/// A case id given in the request's `case_id` field.
fn case_id_field(id: &str) -> Result<String, Status> {
    case_id_field_named(id, "case_id").map_err(Status::from)
}
