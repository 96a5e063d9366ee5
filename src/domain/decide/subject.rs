//! A data subject's requests under Ley 1581 de 2012: queries (art. 14) and
//! claims (art. 15), with their answer deadlines in Colombian business days
//! ([`calendar`](crate::domain::calendar)).
//!
//! They are accepted in every stage, after an exit (heirs may ask: art. 20)
//! and after erasure (an erasure is itself the answer to a claim; the
//! person may still ask what is held and who consulted it). None carries
//! personal data: kind, dates and codes only.

use super::require_code;
use crate::domain::calendar::add_business_days;
use crate::domain::case::CaseState;
use crate::domain::command::Command;
use crate::domain::error::Rejection;
use crate::domain::event::Event;
use crate::domain::records::SubjectRequest;

/// Most subject requests one case records (a bound on the case's state,
/// far above what a person files: the law entitles them to one free query
/// a month).
pub const SUBJECT_REQUESTS_MAX: usize = 100;

impl CaseState {
    pub(super) fn decide_subject_request(&self, command: &Command) -> Result<Vec<Event>, Rejection> {
        let name = command.name();
        match command {
            Command::ReceiveSubjectRequest { on, kind } => {
                if self.subject_requests.len() >= SUBJECT_REQUESTS_MAX {
                    let reason = format!("a case records at most {SUBJECT_REQUESTS_MAX} subject requests");
                    return Err(self.rule(name, "SUBJECT_REQUESTS_MAX", "kind", reason));
                }
                Ok(vec![Event::SubjectRequestReceived {
                    subject_request_id: self.subject_requests.len() as u32 + 1,
                    on: *on,
                    kind: *kind,
                    due_on: add_business_days(*on, kind.answer_business_days()),
                }])
            }
            Command::ExtendSubjectRequest {
                subject_request_id,
                on,
                reason,
            } => {
                let request = self.open_subject_request(name, *subject_request_id)?;
                if let Some(extended_on) = request.extended_on {
                    let why = format!(
                        "subject request {subject_request_id} was already extended on {extended_on} \
                         (the law allows one extension)"
                    );
                    return Err(self.rule(name, "EXTENSION_ONCE", "subject_request_id", why));
                }
                if *on > request.due_on {
                    let why = format!(
                        "the extension must be given by the end of the first term, {}",
                        request.due_on
                    );
                    return Err(self.rule(name, "SUBJECT_REQUEST_DUE", "on", why));
                }
                require_code("reason", reason)?;
                Ok(vec![Event::SubjectRequestExtended {
                    subject_request_id: *subject_request_id,
                    on: *on,
                    reason: reason.clone(),
                    due_on: add_business_days(request.due_on, request.kind.extension_business_days()),
                }])
            }
            Command::AnswerSubjectRequest {
                subject_request_id,
                on,
                outcome,
            } => {
                self.open_subject_request(name, *subject_request_id)?;
                require_code("outcome", outcome)?;
                Ok(vec![Event::SubjectRequestAnswered {
                    subject_request_id: *subject_request_id,
                    on: *on,
                    outcome: outcome.clone(),
                }])
            }
            _ => Err(self.illegal(name, "not a subject request command")),
        }
    }

    /// The request `id`, refused when unknown (the field) or already answered (a rule).
    fn open_subject_request(&self, command: &'static str, id: u32) -> Result<&SubjectRequest, Rejection> {
        let request = self.subject_requests.iter().find(|r| r.id == id).ok_or_else(|| {
            Rejection::invalid(
                "subject_request_id",
                format!("no subject request {id} in this case"),
            )
        })?;
        if let Some(answered_on) = request.answered_on {
            let why = format!("subject request {id} was answered on {answered_on}");
            return Err(self.rule(command, "SUBJECT_REQUEST_ANSWERED", "subject_request_id", why));
        }
        Ok(request)
    }
}
