//! The Policy service: legal instruments recorded in the `policy` stream,
//! and the channels in force on a date (docs/POLICY.md).

use tonic::{Request, Response, Status};

use super::pb;
use super::status::invalid_argument;
use crate::cases::{CaseError, Cases};
use crate::domain::{Date, Instrument, InstrumentKind, PolicyEvent, PolicyRules};
use crate::limits::POLICY_RULES_JSON_BYTES_MAX;

/// The policy service.
#[derive(Clone)]
pub struct PolicyService {
    cases: Cases,
    /// The worklist projection (the dry run counts over its facts).
    worklists: Option<std::sync::Arc<crate::worklist::Worklists>>,
}

impl PolicyService {
    /// A policy service over `cases`; `worklists` is the worklist
    /// projection a dry run counts over (`None` if it could not be opened).
    pub fn new(cases: Cases, worklists: Option<std::sync::Arc<crate::worklist::Worklists>>) -> PolicyService {
        PolicyService { cases, worklists }
    }

    /// Wraps the service for tonic (messages at most
    /// [`crate::limits::GRPC_MESSAGE_BYTES_MAX`] in,
    /// [`crate::limits::GRPC_RESPONSE_BYTES_MAX`] out).
    pub fn into_server(self) -> pb::policy_server::PolicyServer<Self> {
        pb::policy_server::PolicyServer::new(self)
            .max_decoding_message_size(crate::limits::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(crate::limits::GRPC_RESPONSE_BYTES_MAX)
    }
}

fn date(text: &str, field: &'static str) -> Result<Date, Status> {
    Date::parse(text).ok_or_else(|| invalid_argument(field, "expected a date YYYY-MM-DD"))
}

fn instrument(m: Option<pb::PolicyInstrument>) -> Result<Instrument, Status> {
    let m = m.ok_or_else(|| invalid_argument("instrument", "required"))?;
    Ok(Instrument {
        kind: InstrumentKind::parse(&m.kind).ok_or_else(|| {
            invalid_argument("instrument.kind", "one of LEY, DECRETO, RESOLUCION, CIRCULAR")
        })?,
        signed_on: date(&m.signed_on, "instrument.signed_on")?,
        effective_on: date(&m.effective_on, "instrument.effective_on")?,
        id: m.id,
        number: m.number,
        issuer: m.issuer,
        title: m.title,
    })
}

fn instrument_pb(i: &Instrument) -> pb::PolicyInstrument {
    pb::PolicyInstrument {
        id: i.id.clone(),
        kind: i.kind.as_str().to_string(),
        number: i.number.clone(),
        issuer: i.issuer.clone(),
        signed_on: i.signed_on.to_string(),
        effective_on: i.effective_on.to_string(),
        title: i.title.clone(),
    }
}

fn rules(json: &str) -> Result<PolicyRules, Status> {
    if json.is_empty() {
        return Err(invalid_argument("rules_json", "required"));
    }
    if json.len() > POLICY_RULES_JSON_BYTES_MAX {
        return Err(super::status::limit_exceeded(
            "rules_json",
            &format!("at most {POLICY_RULES_JSON_BYTES_MAX} bytes"),
        ));
    }
    PolicyRules::from_json(json.as_bytes()).map_err(|e| invalid_argument("rules_json", &e.to_string()))
}

/// The event a request records.
fn event(m: &pb::RecordPolicyRequest) -> Result<PolicyEvent, Status> {
    let instrument = instrument(m.instrument.clone())?;
    let no = |field: &str, what: &str| -> Result<(), Status> {
        match what.is_empty() {
            true => Ok(()),
            false => Err(invalid_argument(field, "not allowed for this action")),
        }
    };
    let target = |t: &str| match t {
        "" => Err(invalid_argument(
            "target",
            "required: the id of the instrument amended or repealed",
        )),
        t => Ok(t.to_string()),
    };
    match pb::PolicyAction::try_from(m.action) {
        Ok(pb::PolicyAction::Adopt) => {
            no("target", &m.target)?;
            Ok(PolicyEvent::Adopted {
                instrument,
                legal_basis: m.legal_basis.clone(),
                rules: rules(&m.rules_json)?,
            })
        }
        Ok(pb::PolicyAction::Amend) => {
            no("legal_basis", &m.legal_basis)?;
            Ok(PolicyEvent::Amended {
                instrument,
                amends: target(&m.target)?,
                rules: rules(&m.rules_json)?,
            })
        }
        Ok(pb::PolicyAction::Repeal) => {
            no("legal_basis", &m.legal_basis)?;
            no("rules_json", &m.rules_json)?;
            Ok(PolicyEvent::Repealed {
                instrument,
                repeals: target(&m.target)?,
            })
        }
        _ => Err(invalid_argument("action", "one of ADOPT, AMEND, REPEAL")),
    }
}

fn action(e: &PolicyEvent) -> pb::PolicyAction {
    match e {
        PolicyEvent::Adopted { .. } => pb::PolicyAction::Adopt,
        PolicyEvent::Amended { .. } => pb::PolicyAction::Amend,
        PolicyEvent::Repealed { .. } => pb::PolicyAction::Repeal,
    }
}

#[tonic::async_trait]
impl pb::policy_server::Policy for PolicyService {
    async fn record_policy(
        &self,
        r: Request<pb::RecordPolicyRequest>,
    ) -> Result<Response<pb::RecordPolicyResponse>, Status> {
        let (principal, m) = crate::auth::caller(r)?;
        let event = event(&m)?;
        let hash = event
            .rules()
            .map(|r| blake3::hash(&r.to_json()).to_hex().to_string())
            .unwrap_or_default();
        let appended = self
            .cases
            .record_policy(&m.request_id, principal.actor(), vec![event])
            .await
            .map_err(Status::from)?;
        tracing::info!(
            seq = appended.first_seq,
            deduplicated = appended.deduplicated,
            "policy recorded"
        );
        Ok(Response::new(pb::RecordPolicyResponse {
            seq: appended.first_seq,
            rules_blake3: hash,
            deduplicated: appended.deduplicated,
        }))
    }

    async fn list_policies(
        &self,
        _r: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let book = self.cases.policy();
        let entries = book
            .entries()
            .iter()
            .map(|e| {
                let json = e.event.rules().map(|r| r.to_json()).unwrap_or_default();
                pb::PolicyEntry {
                    seq: e.seq,
                    action: action(&e.event) as i32,
                    instrument: Some(instrument_pb(e.event.instrument())),
                    legal_basis: match &e.event {
                        PolicyEvent::Adopted { legal_basis, .. } => legal_basis.clone(),
                        _ => String::new(),
                    },
                    target: e.event.target().unwrap_or_default().to_string(),
                    rules_blake3: if json.is_empty() {
                        String::new()
                    } else {
                        blake3::hash(&json).to_hex().to_string()
                    },
                    rules_json: String::from_utf8(json).unwrap_or_default(),
                    repealed_by: match &e.event {
                        PolicyEvent::Repealed { .. } => String::new(),
                        ev => book
                            .repealed_by(&ev.instrument().id)
                            .map(|r| r.event.instrument().id.clone())
                            .unwrap_or_default(),
                    },
                }
            })
            .collect();
        Ok(Response::new(pb::ListPoliciesResponse {
            entries,
            policy_version: book.version(),
        }))
    }

    async fn preview_policy(
        &self,
        r: Request<pb::RecordPolicyRequest>,
    ) -> Result<Response<pb::PreviewPolicyResponse>, Status> {
        let m = r.into_inner();
        let event = event(&m)?;
        let current = self.cases.policy();
        let mut next = (*current).clone();
        next.check(&event).map_err(|e| Status::from(CaseError::from(e)))?;
        next.apply(current.version() + 1, event);
        let Some(worklists) = self.worklists.clone() else {
            return Err(Status::unavailable(
                "the worklist projection is not open (see health)",
            ));
        };
        let today = crate::clock::today();
        let p = tokio::task::spawn_blocking(move || worklists.preview(&current, &next, today))
            .await
            .map_err(|_| Status::internal("internal error"))?
            .map_err(|e| {
                tracing::error!(error = %e, "policy dry run failed");
                Status::internal("internal error")
            })?;
        Ok(Response::new(pb::PreviewPolicyResponse {
            position_seq: p.position_seq,
            cases: p.cases,
            without_application: p.without_application,
            interim_certificates_extended: p.interim_certificates_extended,
            decision_deadlines_moved: p.decision_deadlines_moved,
            channels_opening: p.channels_opening,
            channels_closing: p.channels_closing,
        }))
    }

    async fn get_policy(
        &self,
        r: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::GetPolicyResponse>, Status> {
        let m = r.into_inner();
        let on = match m.on.as_str() {
            "" => crate::clock::today(),
            text => date(text, "on")?,
        };
        let book = self.cases.policy();
        let version = match m.as_of_seq {
            0 => book.version(),
            seq if seq > book.version() => {
                return Err(invalid_argument(
                    "as_of_seq",
                    &format!("after the current policy version {}", book.version()),
                ))
            }
            seq => seq,
        };
        let catalog = book.catalog_on(on, version);
        Ok(Response::new(pb::GetPolicyResponse {
            on: on.to_string(),
            policy_version: book.as_of(version).version(),
            channels: catalog
                .channels()
                .iter()
                .map(|c| super::convert::channel(c, on))
                .collect(),
        }))
    }
}

impl From<crate::domain::policy::PolicyError> for CaseError {
    fn from(e: crate::domain::policy::PolicyError) -> CaseError {
        CaseError::invalid(e.field, e.reason)
    }
}
