//! Stored events of decisions: approval, denial and appeal.

use prost::Message;

use super::{days, pb, unknown_event_type, CodecError, Fields};
use crate::domain::{DenialReason, Event};

/// Encodes a decision event (see [`super::encode`], which sends only those here).
pub(super) fn encode(event: &Event) -> Vec<u8> {
    match event {
        Event::Approved { on } => pb::Approved { on_days: days(*on) }.encode_to_vec(),
        Event::Denied {
            on,
            reason,
            appeal_until,
        } => pb::Denied {
            on_days: days(*on),
            reason: reason.as_str().to_owned(),
            appeal_until_days: days(*appeal_until),
        }
        .encode_to_vec(),
        Event::AppealFiled { on } => pb::AppealFiled { on_days: days(*on) }.encode_to_vec(),
        Event::AppealDecided { on, upheld } => pb::AppealDecided {
            on_days: days(*on),
            upheld: *upheld,
        }
        .encode_to_vec(),
        other => unreachable!("{} is not a decision event", other.event_type()),
    }
}

/// Decodes a decision event (see [`super::decode`], which sends only those here).
pub(super) fn decode(event_type: &str, payload: &[u8]) -> Result<Event, CodecError> {
    Ok(match event_type {
        "Approved" => {
            let m = pb::Approved::decode(payload)?;
            let f = Fields("Approved");
            Event::Approved {
                on: f.date("on_days", m.on_days)?,
            }
        }
        "Denied" => {
            let m = pb::Denied::decode(payload)?;
            let f = Fields("Denied");
            Event::Denied {
                on: f.date("on_days", m.on_days)?,
                reason: f.code("reason", &m.reason, DenialReason::parse)?,
                appeal_until: f.date("appeal_until_days", m.appeal_until_days)?,
            }
        }
        "AppealFiled" => {
            let m = pb::AppealFiled::decode(payload)?;
            let f = Fields("AppealFiled");
            Event::AppealFiled {
                on: f.date("on_days", m.on_days)?,
            }
        }
        "AppealDecided" => {
            let m = pb::AppealDecided::decode(payload)?;
            let f = Fields("AppealDecided");
            Event::AppealDecided {
                on: f.date("on_days", m.on_days)?,
                upheld: m.upheld,
            }
        }
        other => return Err(unknown_event_type(other)),
    })
}
