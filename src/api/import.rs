//! The `Import` service (`proto/regularization/v1/import.proto`): case
//! histories migrated from a legacy system, streamed by the client.
//!
//! Every command of a history goes through the [`CaseworkerService`] handler
//! of its single RPC, with the stream's request metadata and extensions, so
//! validation, idempotency by request id, authorization and durability are
//! exactly those of the Caseworker API. A history runs in order on one task;
//! up to [`IMPORT_HISTORIES_IN_FLIGHT_MAX`] histories of a stream run at
//! once. A rejected command stops its history, never the stream.
//!
//! The summary holds counts, codes, indexes and legacy references (codes
//! checked for their charset), never personal data: rejection messages are
//! the single RPC's status messages, which name fields and states only.

use std::sync::Arc;

use tokio::task::JoinSet;
use tonic::metadata::MetadataMap;
use tonic::{Code, Extensions, Request, Response, Status, Streaming};
use tonic_types::StatusExt;

use super::pb;
use super::pb::caseworker_server::Caseworker;
use super::pb::import_command::Command as Cmd;
use super::CaseworkerService;
use crate::limits::{
    IMPORT_HISTORIES_IN_FLIGHT_MAX, IMPORT_HISTORY_COMMANDS_MAX, IMPORT_LEGACY_REF_BYTES_MAX,
    IMPORT_REJECTIONS_REPORTED_MAX,
};

pub use pb::import_server::ImportServer;

/// The import service: a front of the caseworker service.
#[derive(Clone)]
pub struct ImportService {
    caseworker: CaseworkerService,
}

impl ImportService {
    /// An import service whose commands run through `caseworker`.
    pub fn new(caseworker: CaseworkerService) -> ImportService {
        ImportService { caseworker }
    }

    /// Wraps the service for tonic (each history message at most
    /// [`crate::limits::GRPC_MESSAGE_BYTES_MAX`] encoded).
    pub fn into_server(self) -> ImportServer<ImportService> {
        ImportServer::new(self)
            .max_decoding_message_size(crate::limits::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(crate::limits::GRPC_RESPONSE_BYTES_MAX)
    }
}

/// [`command_name`], [`header_mut`] and [`dispatch`] from the command
/// table: every command of one case is an `ImportCommand` field named after
/// its RPC, whose request message it carries.
macro_rules! import_commands {
    ({} one_case [$(($name:ident $rpc:ident $request:ident $who:ident))*] two_cases $two:tt) => {
        /// The name of a command as in `ImportCommand` (used in rejections).
        pub fn command_name(c: &Cmd) -> &'static str {
            match c {
                $(Cmd::$name(_) => stringify!($rpc),)*
            }
        }

        /// The header slot of a command's request message.
        pub fn header_mut(c: &mut Cmd) -> &mut Option<pb::CommandHeader> {
            match c {
                $(Cmd::$name(m) => &mut m.header,)*
            }
        }

        /// Runs one command through the handler of its single RPC.
        async fn dispatch(svc: &CaseworkerService, caller: &Caller, c: Cmd) -> Result<pb::CommandResult, Status> {
            match c {
                $(Cmd::$name(m) => svc.$rpc(caller.request(m)).await.map(Response::into_inner),)*
            }
        }
    };
}

crate::domain::vocabulary::command_table!(wire => import_commands);

/// The stream's request metadata and extensions, given to every inner request.
struct Caller {
    metadata: MetadataMap,
    extensions: Extensions,
}

impl Caller {
    fn request<M>(&self, message: M) -> Request<M> {
        Request::from_parts(self.metadata.clone(), self.extensions.clone(), message)
    }
}

/// Whether a legacy reference is acceptable (empty is).
fn legacy_ref_ok(r: &str) -> bool {
    r.len() <= IMPORT_LEGACY_REF_BYTES_MAX
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b))
}

/// What one history did.
#[derive(Default)]
struct HistoryOutcome {
    applied: u64,
    deduplicated: u64,
    skipped: u64,
    events: u64,
    last_seq: u64,
    rejection: Option<pb::ImportRejection>,
}

fn rejection(
    index: u64,
    legacy_ref: &str,
    command: Option<(u32, &'static str)>,
    status: &Status,
) -> pb::ImportRejection {
    let field = if status.code() == Code::InvalidArgument {
        status
            .get_details_bad_request()
            .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
            .unwrap_or_default()
    } else {
        String::new()
    };
    pb::ImportRejection {
        history_index: index,
        legacy_ref: legacy_ref.to_string(),
        command_index: command.map(|c| c.0),
        command: command.map(|c| c.1).unwrap_or_default().to_string(),
        code: status.code() as i32,
        message: status.message().to_string(),
        field,
    }
}

/// Imports one history: its commands in order, stopping at the first rejection.
async fn import_history(
    svc: CaseworkerService,
    caller: Arc<Caller>,
    index: u64,
    history: pb::ImportCaseHistory,
) -> HistoryOutcome {
    let mut out = HistoryOutcome::default();
    let total = history.commands.len() as u64;
    let refuse = |out: &mut HistoryOutcome, legacy_ref: &str, field: &str, reason: &str| {
        out.skipped = total;
        out.rejection = Some(rejection(
            index,
            legacy_ref,
            None,
            &super::status::invalid_argument(field, reason),
        ));
    };
    if !legacy_ref_ok(&history.legacy_ref) {
        // Not echoed: an invalid reference might hold anything.
        refuse(
            &mut out,
            "",
            "legacy_ref",
            "at most 64 characters of A-Z a-z 0-9 . _ : / -",
        );
        return out;
    }
    let legacy_ref = history.legacy_ref;
    if history.commands.is_empty() {
        refuse(
            &mut out,
            &legacy_ref,
            "commands",
            "at least one command is required",
        );
        return out;
    }
    if history.commands.len() > IMPORT_HISTORY_COMMANDS_MAX {
        refuse(
            &mut out,
            &legacy_ref,
            "commands",
            &format!("at most {IMPORT_HISTORY_COMMANDS_MAX} commands per history"),
        );
        return out;
    }
    // The case of the history and its version after the previous command.
    let mut case: Option<(String, u64)> = None;
    for (k, command) in history.commands.into_iter().enumerate() {
        let remaining = total - k as u64 - 1;
        let stop = |out: &mut HistoryOutcome, name: &'static str, status: &Status| {
            out.skipped += remaining;
            out.rejection = Some(rejection(index, &legacy_ref, Some((k as u32, name)), status));
        };
        let Some(mut c) = command.command else {
            stop(
                &mut out,
                "",
                &super::status::invalid_argument("command", "required: one of the Caseworker commands"),
            );
            break;
        };
        let name = command_name(&c);
        let registering = matches!(c, Cmd::RegisterPerson(_));
        if registering && k > 0 {
            stop(
                &mut out,
                name,
                &super::status::invalid_argument(
                    "register_person",
                    "a registration must be the first command of its history",
                ),
            );
            break;
        }
        if let (Some(h), Some((case_id, version))) = (header_mut(&mut c).as_mut(), &case) {
            if h.case_id.is_empty() {
                h.case_id = case_id.clone();
                if h.expected_version == 0 {
                    h.expected_version = *version;
                }
            } else if h.case_id != *case_id {
                stop(
                    &mut out,
                    name,
                    &super::status::invalid_argument(
                        "header.case_id",
                        "differs from the case of the history's previous commands",
                    ),
                );
                break;
            }
        }
        match dispatch(&svc, &caller, c).await {
            Ok(r) => {
                if r.deduplicated {
                    out.deduplicated += 1;
                } else {
                    out.applied += 1;
                    out.events += r.last_seq + 1 - r.first_seq;
                }
                out.last_seq = out.last_seq.max(r.last_seq);
                case = Some((r.case_id, r.version));
            }
            Err(status) => {
                stop(&mut out, name, &status);
                break;
            }
        }
    }
    out
}

/// The running summary of a stream.
#[derive(Default)]
struct Summary {
    s: pb::ImportSummary,
}

impl Summary {
    fn absorb(&mut self, out: HistoryOutcome) {
        let s = &mut self.s;
        s.commands_applied += out.applied;
        s.commands_deduplicated += out.deduplicated;
        s.commands_skipped += out.skipped;
        s.events_appended += out.events;
        s.last_seq = s.last_seq.max(out.last_seq);
        match out.rejection {
            None => s.histories_imported += 1,
            Some(r) => {
                s.histories_rejected += 1;
                s.rejections_total += 1;
                s.rejections.push(r);
                // Keep those of the lowest history indexes, whatever the completion order.
                if s.rejections.len() >= 2 * IMPORT_REJECTIONS_REPORTED_MAX {
                    self.trim();
                }
            }
        }
    }

    fn trim(&mut self) {
        self.s.rejections.sort_by_key(|r| r.history_index);
        self.s.rejections.truncate(IMPORT_REJECTIONS_REPORTED_MAX);
    }

    fn finish(mut self) -> pb::ImportSummary {
        self.trim();
        self.s
    }
}

fn absorb_joined(
    summary: &mut Summary,
    joined: Result<HistoryOutcome, tokio::task::JoinError>,
) -> Result<(), Status> {
    match joined {
        Ok(out) => {
            summary.absorb(out);
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "an import history task failed");
            Err(Status::internal("internal error"))
        }
    }
}

#[tonic::async_trait]
impl pb::import_server::Import for ImportService {
    async fn import_cases(
        &self,
        request: Request<Streaming<pb::ImportCaseHistory>>,
    ) -> Result<Response<pb::ImportSummary>, Status> {
        let (metadata, extensions, mut stream) = request.into_parts();
        let caller = Arc::new(Caller { metadata, extensions });
        let mut summary = Summary::default();
        let mut tasks: JoinSet<HistoryOutcome> = JoinSet::new();
        let mut index = 0u64;
        let mut failure: Option<Status> = None;
        loop {
            while tasks.len() >= IMPORT_HISTORIES_IN_FLIGHT_MAX {
                if let Some(joined) = tasks.join_next().await {
                    absorb_joined(&mut summary, joined)?;
                }
            }
            match stream.message().await {
                Ok(Some(history)) => {
                    summary.s.histories_received += 1;
                    tasks.spawn(import_history(
                        self.caseworker.clone(),
                        caller.clone(),
                        index,
                        history,
                    ));
                    index += 1;
                }
                Ok(None) => break,
                Err(status) => {
                    failure = Some(status);
                    break;
                }
            }
        }
        // Histories already started finish (their commands are durable appends).
        while let Some(joined) = tasks.join_next().await {
            absorb_joined(&mut summary, joined)?;
        }
        let summary = summary.finish();
        tracing::info!(
            histories = summary.histories_received,
            imported = summary.histories_imported,
            rejected = summary.histories_rejected,
            applied = summary.commands_applied,
            deduplicated = summary.commands_deduplicated,
            events = summary.events_appended,
            "import stream done"
        );
        if let Some(status) = failure {
            tracing::warn!(code = ?status.code(), histories = summary.histories_received, "import stream failed");
            return Err(Status::new(
                status.code(),
                format!(
                    "the stream failed after {} histories (those were processed): {}",
                    summary.histories_received,
                    status.message()
                ),
            ));
        }
        Ok(Response::new(summary))
    }
}
