//! The `Worklists` gRPC service (`proto/regularization/v1/worklist.proto`):
//! validation (INVALID_ARGUMENT with BadRequest details naming the field),
//! department scope, page tokens, and the query on a blocking thread.

use std::sync::Arc;

use base64::Engine as _;
use tonic::{Request, Response, Status};

use super::pb;
use crate::domain::{Date, Department, Municipality, Stage, DEPARTMENTS};
use crate::limits::{
    WORKLIST_HORIZON_DAYS_DEFAULT, WORKLIST_HORIZON_DAYS_MAX, WORKLIST_PAGE_SIZE_DEFAULT,
    WORKLIST_PAGE_SIZE_MAX,
};
use crate::worklist::engine::{FollowerStatus, Worklists};
use crate::worklist::facts::Kind;
use crate::worklist::index::{Item, Suffix, SUFFIX_LEN};
use crate::worklist::query::{own_window, page, Query};

pub use pb::worklists_server::WorklistsServer;

/// Why a `Worklists` call failed (mapped to statuses in `api::status`).
#[derive(Debug, thiserror::Error)]
pub enum WorklistServiceError {
    /// A request field out of range: INVALID_ARGUMENT with a BadRequest
    /// naming `field`.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The request field, as named on the wire (e.g. `page_size`).
        field: &'static str,
        /// What is wrong with it, for the caller.
        reason: String,
    },
    /// The department asked for is outside the caller's scope
    /// (PERMISSION_DENIED).
    #[error("the department asked for is not within the departments of your scope")]
    OutOfScope,
    /// The projection's follower stopped (INTERNAL).
    #[error("the worklist projection stopped ({0}); an operator must run rebuild-projections")]
    Stopped(String),
    /// The projection is still catching up after start-up (UNAVAILABLE).
    #[error("the worklist projection is still catching up after start-up; retry shortly")]
    CatchingUp,
    /// The projection could not be opened (INTERNAL).
    #[error("the worklist projection could not be opened")]
    NotOpened,
    /// The query's blocking task panicked or was cancelled (INTERNAL).
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
    /// The query failed (INTERNAL; logged, not told to the caller).
    #[error("the worklist query failed")]
    Query(#[source] crate::projection::ProjectionError),
}

fn invalid_argument(field: &'static str, reason: &str) -> WorklistServiceError {
    WorklistServiceError::Invalid {
        field,
        reason: reason.to_string(),
    }
}

/// The service over the worklist projection and its follower's status.
#[derive(Clone)]
pub struct WorklistService {
    worklists: Option<Arc<Worklists>>,
    status: Arc<FollowerStatus>,
}

impl WorklistService {
    /// Over a projection (`None`: it could not be opened; every call is
    /// INTERNAL with `status`'s reason).
    pub fn new(worklists: Option<Arc<Worklists>>, status: Arc<FollowerStatus>) -> WorklistService {
        WorklistService { worklists, status }
    }

    /// Wraps the service for tonic (messages at most
    /// [`crate::limits::GRPC_MESSAGE_BYTES_MAX`] in,
    /// [`crate::limits::GRPC_RESPONSE_BYTES_MAX`] out).
    pub fn into_server(self) -> WorklistsServer<WorklistService> {
        WorklistsServer::new(self)
            .max_decoding_message_size(crate::limits::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(crate::limits::GRPC_RESPONSE_BYTES_MAX)
    }

    /// The projection, or why it cannot answer (UNAVAILABLE while it
    /// catches up, INTERNAL once stopped or unopened).
    pub(crate) fn worklists(&self) -> Result<&Arc<Worklists>, WorklistServiceError> {
        if let Some(e) = self.status.failed() {
            return Err(WorklistServiceError::Stopped(e.to_string()));
        }
        match &self.worklists {
            Some(w) if self.status.ready() => Ok(w),
            Some(_) => Err(WorklistServiceError::CatchingUp),
            None => Err(WorklistServiceError::NotOpened),
        }
    }
}

/// A page token: format, kind, a fingerprint of the filters, the window
/// of the first page and the position after which the next page starts.
struct Token {
    kind: u8,
    fingerprint: [u8; 8],
    from: Option<Date>,
    to: Option<Date>,
    after: Suffix,
}

const TOKEN_FORMAT: u8 = 1;
const TOKEN_LEN: usize = 1 + 1 + 8 + 4 + 4 + SUFFIX_LEN;

impl Token {
    fn encode(&self) -> String {
        let mut b = Vec::with_capacity(TOKEN_LEN);
        b.push(TOKEN_FORMAT);
        b.push(self.kind);
        b.extend_from_slice(&self.fingerprint);
        for d in [self.from, self.to] {
            b.extend_from_slice(&d.map_or([0; 4], crate::projection::facts::date_bytes));
        }
        b.extend_from_slice(&self.after);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    fn decode(text: &str) -> Option<Token> {
        if text.len() > 2 * TOKEN_LEN {
            return None;
        }
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        if b.len() != TOKEN_LEN || b[0] != TOKEN_FORMAT {
            return None;
        }
        let date = |s: &[u8]| -> Option<Option<Date>> {
            if s == [0; 4] {
                Some(None)
            } else {
                crate::projection::facts::date_from(s).map(Some)
            }
        };
        Some(Token {
            kind: b[1],
            fingerprint: b[2..10].try_into().ok()?,
            from: date(&b[10..14])?,
            to: date(&b[14..18])?,
            after: b[18..].try_into().ok()?,
        })
    }
}

/// The fields a token is bound to (every filter, not the page size).
fn fingerprint(r: &pb::ListWorklistRequest) -> [u8; 8] {
    let mut h = blake3::Hasher::new_derive_key("migreg worklist page token v1");
    for field in [
        r.department.as_str(),
        r.municipality.as_str(),
        r.office.as_str(),
        r.site.as_str(),
        r.date_from.as_str(),
        r.date_to.as_str(),
        r.reference_date.as_str(),
    ] {
        h.update(&(field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    }
    h.update(&r.kind.to_le_bytes());
    h.update(&r.stage.to_le_bytes());
    h.update(&r.horizon_days.to_le_bytes());
    h.finalize().as_bytes()[..8].try_into().expect("8")
}

fn date_field(field: &'static str, text: &str) -> Result<Option<Date>, WorklistServiceError> {
    if text.is_empty() {
        return Ok(None);
    }
    Date::parse(text)
        .map(Some)
        .ok_or_else(|| invalid_argument(field, "expected a date YYYY-MM-DD"))
}

fn code_field(field: &'static str, text: &str) -> Result<Option<String>, WorklistServiceError> {
    if text.is_empty() {
        return Ok(None);
    }
    if !crate::auth::valid_code(text) {
        return Err(invalid_argument(
            field,
            "1..64 printable characters without spaces",
        ));
    }
    Ok(Some(text.to_string()))
}

/// The intersection of two windows.
fn intersect(
    a: (Option<Date>, Option<Date>),
    b: (Option<Date>, Option<Date>),
) -> (Option<Date>, Option<Date>) {
    let from = match (a.0, b.0) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    let to = match (a.1, b.1) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    (from, to)
}

fn stage_of(value: i32) -> Result<Option<Stage>, WorklistServiceError> {
    let stage = pb::CaseStage::try_from(value).map_err(|_| invalid_argument("stage", "unknown stage"))?;
    if stage == pb::CaseStage::Unspecified {
        return Ok(None);
    }
    let name = stage.as_str_name().trim_start_matches("CASE_STAGE_");
    Stage::parse(name)
        .map(Some)
        .ok_or_else(|| invalid_argument("stage", "unknown stage"))
}

fn stage_value(stage: Stage) -> i32 {
    pb::CaseStage::from_str_name(&format!("CASE_STAGE_{}", stage.as_str()))
        .map_or(pb::CaseStage::Unspecified as i32, |s| s as i32)
}

fn date_text(d: Option<Date>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

/// The wire form of an item: codes and dates only.
pub fn item_to_pb(item: &Item) -> pb::WorklistItem {
    pb::WorklistItem {
        case_id: item.case_id.clone(),
        stage: stage_value(item.stage),
        date: item.date.to_string(),
        due_on: date_text(item.due_on),
        since: date_text(item.since),
        site: item.site.clone(),
        office: item.office.clone(),
        department: format!("{:02}", item.department),
        municipality: format!("{:05}", item.municipality),
        certification_id: match item.kind {
            Kind::CertificationsAwaitingAssessment => item.certification,
            _ => 0,
        },
        subject_request_id: match item.kind {
            Kind::SubjectRequestsDue => item.certification,
            _ => 0,
        },
        channel: item.channel.map(|c| c.as_str().to_string()).unwrap_or_default(),
    }
}

/// The departments a query scans: the filter's, within the caller's
/// scope (`scope` empty: every department).
fn departments(
    r: &pb::ListWorklistRequest,
    scope: &[u8],
) -> Result<(Vec<u8>, Option<u32>), WorklistServiceError> {
    let department = match r.department.as_str() {
        "" => None,
        d => Some(
            Department::parse(d)
                .ok_or_else(|| {
                    invalid_argument("department", "expected a DIVIPOLA department code (\"11\")")
                })?
                .code(),
        ),
    };
    let municipality = match r.municipality.as_str() {
        "" => None,
        m => Some(Municipality::parse(m).ok_or_else(|| {
            invalid_argument(
                "municipality",
                "expected a DIVIPOLA municipality code (\"11001\")",
            )
        })?),
    };
    let from_municipality = municipality.map(|m| m.department().code());
    if let (Some(d), Some(m)) = (department, from_municipality) {
        if d != m {
            return Err(invalid_argument(
                "municipality",
                "not inside the department given",
            ));
        }
    }
    let wanted = department.or(from_municipality);
    let in_scope = |d: u8| scope.is_empty() || scope.contains(&d);
    let list = match wanted {
        Some(d) if !in_scope(d) => {
            return Err(WorklistServiceError::OutOfScope);
        }
        Some(d) => vec![d],
        None if scope.is_empty() => DEPARTMENTS.iter().map(|&(c, _)| c).collect(),
        None => scope.to_vec(),
    };
    Ok((list, municipality.map(|m| m.code())))
}

#[tonic::async_trait]
impl pb::worklists_server::Worklists for WorklistService {
    async fn list_worklist(
        &self,
        request: Request<pb::ListWorklistRequest>,
    ) -> Result<Response<pb::ListWorklistResponse>, Status> {
        let principal = crate::auth::principal(&request)?;
        let r = request.into_inner();
        let kind = u8::try_from(r.kind)
            .ok()
            .and_then(Kind::from_u8)
            .ok_or_else(|| invalid_argument("kind", "one of the WorklistKind values, not UNSPECIFIED"))?;
        let (departments, municipality) = departments(&r, &principal.departments)?;
        let office = code_field("office", &r.office)?;
        let site = code_field("site", &r.site)?;
        let stage = stage_of(r.stage)?;
        let date_from = date_field("date_from", &r.date_from)?;
        let date_to = date_field("date_to", &r.date_to)?;
        if let (Some(f), Some(t)) = (date_from, date_to) {
            if t < f {
                return Err(invalid_argument("date_to", "before date_from").into());
            }
        }
        let reference = date_field("reference_date", &r.reference_date)?.unwrap_or_else(crate::clock::today);
        let horizon = match r.horizon_days {
            0 => WORKLIST_HORIZON_DAYS_DEFAULT,
            h if h <= WORKLIST_HORIZON_DAYS_MAX => h,
            _ => {
                let reason = format!("at most {WORKLIST_HORIZON_DAYS_MAX} days");
                return Err(invalid_argument("horizon_days", &reason).into());
            }
        };
        let page_size = match r.page_size {
            0 => WORKLIST_PAGE_SIZE_DEFAULT,
            n if n <= WORKLIST_PAGE_SIZE_MAX => n,
            _ => {
                let reason = format!("1..={WORKLIST_PAGE_SIZE_MAX} (0: {WORKLIST_PAGE_SIZE_DEFAULT})");
                return Err(invalid_argument("page_size", &reason).into());
            }
        };
        let fp = fingerprint(&r);
        let (window, after) = if r.page_token.is_empty() {
            (
                intersect(own_window(kind, reference, horizon), (date_from, date_to)),
                None,
            )
        } else {
            let t = Token::decode(&r.page_token)
                .ok_or_else(|| invalid_argument("page_token", "not a page token of this service"))?;
            if t.kind != kind as u8 || t.fingerprint != fp {
                return Err(invalid_argument(
                    "page_token",
                    "issued for another list or other filters; repeat the request that returned it",
                )
                .into());
            }
            ((t.from, t.to), Some(t.after))
        };
        let worklists = self.worklists()?.clone();
        let q = Query {
            kind,
            departments,
            municipality,
            office,
            stage,
            site,
            from: window.0,
            to: window.1,
            after,
            page_size: page_size as usize,
        };
        let (p, head) = tokio::task::spawn_blocking(move || {
            let p = page(&worklists, &q)?;
            let head = worklists.store().head()?.seq;
            Ok::<_, crate::projection::ProjectionError>((p, head))
        })
        .await
        .map_err(WorklistServiceError::Task)?
        .map_err(WorklistServiceError::Query)?;
        let next_page_token = p
            .next
            .map(|after| {
                Token {
                    kind: kind as u8,
                    fingerprint: fp,
                    from: window.0,
                    to: window.1,
                    after,
                }
                .encode()
            })
            .unwrap_or_default();
        Ok(Response::new(pb::ListWorklistResponse {
            kind: r.kind,
            items: p.items.iter().map(item_to_pb).collect(),
            next_page_token,
            position: Some(pb::LogPosition {
                seq: p.position.seq,
                hash: p.position.hash_hex(),
            }),
            log_head_seq: head,
            window_from: date_text(window.0),
            window_to: date_text(window.1),
            reference_date: reference.to_string(),
        }))
    }
}
