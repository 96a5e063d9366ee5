//! Stored events of the application: pre-registration, the survey, requests
//! for information, withdrawal.

use prost::Message;

use super::{days, pb, unknown_event_type, CodecError, Fields};
use crate::domain::{ChannelCode, EligibilityBasis, Event, Sector};

/// Encodes an application event (see [`super::encode`], which sends only those here).
pub(super) fn encode(event: &Event) -> Vec<u8> {
    match event {
        Event::PreRegistered {
            application_id,
            channel,
            basis,
            applied_on,
        } => pb::PreRegistered {
            application_id: *application_id,
            channel: channel.as_str().to_owned(),
            basis: basis.as_str().to_owned(),
            applied_on_days: days(*applied_on),
        }
        .encode_to_vec(),
        Event::SurveyCompleted {
            on,
            household_size,
            employed,
            sector,
        } => pb::SurveyCompleted {
            on_days: days(*on),
            household_size: u32::from(*household_size),
            employed: *employed,
            sector: sector.map(|s| s.as_str().to_owned()),
        }
        .encode_to_vec(),
        Event::InformationRequested { on, reason } => pb::InformationRequested {
            on_days: days(*on),
            reason: reason.clone(),
        }
        .encode_to_vec(),
        Event::InformationReceived { on } => pb::InformationReceived { on_days: days(*on) }.encode_to_vec(),
        Event::Withdrawn { on } => pb::Withdrawn { on_days: days(*on) }.encode_to_vec(),
        other => unreachable!("{} is not an application event", other.event_type()),
    }
}

/// Decodes an application event (see [`super::decode`], which sends only those here).
pub(super) fn decode(event_type: &str, payload: &[u8]) -> Result<Event, CodecError> {
    Ok(match event_type {
        "PreRegistered" => {
            let m = pb::PreRegistered::decode(payload)?;
            let f = Fields("PreRegistered");
            Event::PreRegistered {
                application_id: m.application_id,
                channel: f.code("channel", &m.channel, ChannelCode::parse)?,
                basis: f.code("basis", &m.basis, EligibilityBasis::parse)?,
                applied_on: f.date("applied_on_days", m.applied_on_days)?,
            }
        }
        "SurveyCompleted" => {
            let m = pb::SurveyCompleted::decode(payload)?;
            let f = Fields("SurveyCompleted");
            Event::SurveyCompleted {
                on: f.date("on_days", m.on_days)?,
                household_size: f.narrow("household_size", m.household_size)?,
                employed: m.employed,
                sector: m
                    .sector
                    .map(|code| f.code("sector", &code, Sector::parse))
                    .transpose()?,
            }
        }
        "InformationRequested" => {
            let m = pb::InformationRequested::decode(payload)?;
            let f = Fields("InformationRequested");
            Event::InformationRequested {
                on: f.date("on_days", m.on_days)?,
                reason: m.reason,
            }
        }
        "InformationReceived" => {
            let m = pb::InformationReceived::decode(payload)?;
            let f = Fields("InformationReceived");
            Event::InformationReceived {
                on: f.date("on_days", m.on_days)?,
            }
        }
        "Withdrawn" => {
            let m = pb::Withdrawn::decode(payload)?;
            let f = Fields("Withdrawn");
            Event::Withdrawn {
                on: f.date("on_days", m.on_days)?,
            }
        }
        other => return Err(unknown_event_type(other)),
    })
}
