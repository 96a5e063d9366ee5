//! Stored events of family links between cases: recorded and ended.

use prost::Message;

use super::{days, pb, unknown_event_type, CodecError, Fields};
use crate::domain::{Event, LinkEndReason, LinkEvidence, LinkRole};

/// Encodes a family link event (see [`super::encode`], which sends only those here).
pub(super) fn encode(event: &Event) -> Vec<u8> {
    match event {
        Event::FamilyLinkRecorded {
            on,
            link_id,
            role,
            other_case_id,
            evidence,
        } => pb::FamilyLinkRecorded {
            on_days: days(*on),
            link_id: link_id.clone(),
            role: role.as_str().to_owned(),
            other_case_id: other_case_id.clone(),
            evidence: evidence.as_str().to_owned(),
        }
        .encode_to_vec(),
        Event::FamilyLinkEnded {
            on,
            link_id,
            role,
            reason,
        } => pb::FamilyLinkEnded {
            on_days: days(*on),
            link_id: link_id.clone(),
            role: role.as_str().to_owned(),
            reason: reason.as_str().to_owned(),
        }
        .encode_to_vec(),
        other => unreachable!("{} is not a family link event", other.event_type()),
    }
}

/// Decodes a family link event (see [`super::decode`], which sends only those here).
pub(super) fn decode(event_type: &str, payload: &[u8]) -> Result<Event, CodecError> {
    Ok(match event_type {
        "FamilyLinkRecorded" => {
            let m = pb::FamilyLinkRecorded::decode(payload)?;
            let f = Fields("FamilyLinkRecorded");
            Event::FamilyLinkRecorded {
                on: f.date("on_days", m.on_days)?,
                link_id: m.link_id,
                role: f.code("role", &m.role, LinkRole::parse)?,
                other_case_id: m.other_case_id,
                evidence: f.code("evidence", &m.evidence, LinkEvidence::parse)?,
            }
        }
        "FamilyLinkEnded" => {
            let m = pb::FamilyLinkEnded::decode(payload)?;
            let f = Fields("FamilyLinkEnded");
            Event::FamilyLinkEnded {
                on: f.date("on_days", m.on_days)?,
                link_id: m.link_id,
                role: f.code("role", &m.role, LinkRole::parse)?,
                reason: f.code("reason", &m.reason, LinkEndReason::parse)?,
            }
        }
        other => return Err(unknown_event_type(other)),
    })
}
