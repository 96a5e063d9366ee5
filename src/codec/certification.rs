//! Stored events of labour competence certification: request, assessment,
//! award, denial.

use prost::Message;

use super::{days, pb, unknown_event_type, CodecError, Fields};
use crate::domain::{CertificationRoute, Event, Sector};

/// Encodes a certification event (see [`super::encode`], which sends only those here).
pub(super) fn encode(event: &Event) -> Vec<u8> {
    match event {
        Event::CertificationRequested {
            certification_id,
            on,
            route,
            sector,
        } => pb::CertificationRequested {
            certification_id: *certification_id,
            on_days: days(*on),
            route: route.as_str().to_owned(),
            sector: sector.as_str().to_owned(),
        }
        .encode_to_vec(),
        Event::CertificationAssessed {
            certification_id,
            on,
            passed,
        } => pb::CertificationAssessed {
            certification_id: *certification_id,
            on_days: days(*on),
            passed: *passed,
        }
        .encode_to_vec(),
        Event::CertificationAwarded {
            certification_id,
            on,
            standard_code,
            issuing_body,
        } => pb::CertificationAwarded {
            certification_id: *certification_id,
            on_days: days(*on),
            standard_code: standard_code.clone(),
            issuing_body: issuing_body.clone(),
        }
        .encode_to_vec(),
        Event::CertificationDenied {
            certification_id,
            on,
            reason,
        } => pb::CertificationDenied {
            certification_id: *certification_id,
            on_days: days(*on),
            reason: reason.clone(),
        }
        .encode_to_vec(),
        other => unreachable!("{} is not a certification event", other.event_type()),
    }
}

/// Decodes a certification event (see [`super::decode`], which sends only those here).
pub(super) fn decode(event_type: &str, payload: &[u8]) -> Result<Event, CodecError> {
    Ok(match event_type {
        "CertificationRequested" => {
            let m = pb::CertificationRequested::decode(payload)?;
            let f = Fields("CertificationRequested");
            Event::CertificationRequested {
                certification_id: m.certification_id,
                on: f.date("on_days", m.on_days)?,
                route: f.code("route", &m.route, CertificationRoute::parse)?,
                sector: f.code("sector", &m.sector, Sector::parse)?,
            }
        }
        "CertificationAssessed" => {
            let m = pb::CertificationAssessed::decode(payload)?;
            let f = Fields("CertificationAssessed");
            Event::CertificationAssessed {
                certification_id: m.certification_id,
                on: f.date("on_days", m.on_days)?,
                passed: m.passed,
            }
        }
        "CertificationAwarded" => {
            let m = pb::CertificationAwarded::decode(payload)?;
            let f = Fields("CertificationAwarded");
            Event::CertificationAwarded {
                certification_id: m.certification_id,
                on: f.date("on_days", m.on_days)?,
                standard_code: m.standard_code,
                issuing_body: m.issuing_body,
            }
        }
        "CertificationDenied" => {
            let m = pb::CertificationDenied::decode(payload)?;
            let f = Fields("CertificationDenied");
            Event::CertificationDenied {
                certification_id: m.certification_id,
                on: f.date("on_days", m.on_days)?,
                reason: m.reason,
            }
        }
        other => return Err(unknown_event_type(other)),
    })
}
