//! Stored events of the data subject's requests: receipt, extension, answer.

use prost::Message;

use super::{days, pb, unknown_event_type, CodecError, Fields};
use crate::domain::{Event, SubjectRequestKind};

/// Encodes a subject request event (see [`super::encode`], which sends only those here).
pub(super) fn encode(event: &Event) -> Vec<u8> {
    match event {
        Event::SubjectRequestReceived {
            subject_request_id,
            on,
            kind,
            due_on,
        } => pb::SubjectRequestReceived {
            subject_request_id: *subject_request_id,
            on_days: days(*on),
            kind: kind.as_str().to_owned(),
            due_on_days: days(*due_on),
        }
        .encode_to_vec(),
        Event::SubjectRequestExtended {
            subject_request_id,
            on,
            reason,
            due_on,
        } => pb::SubjectRequestExtended {
            subject_request_id: *subject_request_id,
            on_days: days(*on),
            reason: reason.clone(),
            due_on_days: days(*due_on),
        }
        .encode_to_vec(),
        Event::SubjectRequestAnswered {
            subject_request_id,
            on,
            outcome,
        } => pb::SubjectRequestAnswered {
            subject_request_id: *subject_request_id,
            on_days: days(*on),
            outcome: outcome.clone(),
        }
        .encode_to_vec(),
        other => unreachable!("{} is not a subject request event", other.event_type()),
    }
}

/// Decodes a subject request event (see [`super::decode`], which sends only those here).
pub(super) fn decode(event_type: &str, payload: &[u8]) -> Result<Event, CodecError> {
    Ok(match event_type {
        "SubjectRequestReceived" => {
            let m = pb::SubjectRequestReceived::decode(payload)?;
            let f = Fields("SubjectRequestReceived");
            Event::SubjectRequestReceived {
                subject_request_id: m.subject_request_id,
                on: f.date("on_days", m.on_days)?,
                kind: f.code("kind", &m.kind, SubjectRequestKind::parse)?,
                due_on: f.date("due_on_days", m.due_on_days)?,
            }
        }
        "SubjectRequestExtended" => {
            let m = pb::SubjectRequestExtended::decode(payload)?;
            let f = Fields("SubjectRequestExtended");
            Event::SubjectRequestExtended {
                subject_request_id: m.subject_request_id,
                on: f.date("on_days", m.on_days)?,
                reason: m.reason,
                due_on: f.date("due_on_days", m.due_on_days)?,
            }
        }
        "SubjectRequestAnswered" => {
            let m = pb::SubjectRequestAnswered::decode(payload)?;
            let f = Fields("SubjectRequestAnswered");
            Event::SubjectRequestAnswered {
                subject_request_id: m.subject_request_id,
                on: f.date("on_days", m.on_days)?,
                outcome: m.outcome,
            }
        }
        other => return Err(unknown_event_type(other)),
    })
}
