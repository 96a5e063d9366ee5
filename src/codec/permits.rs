//! Stored events of the permit: issue, card, interim certificate, duplicates,
//! validity, cancellation, visa.

use prost::Message;

use super::{days, pb, unknown_event_type, CodecError, Fields};
use crate::domain::{CancellationGround, DuplicateCause, Event, PermitType, Sealed};

/// Encodes a permit event (see [`super::encode`], which sends only those here).
pub(super) fn encode(event: &Event) -> Vec<u8> {
    match event {
        Event::PermitIssued {
            on,
            permit_type,
            permit_number,
            valid_until,
        } => pb::PermitIssued {
            on_days: days(*on),
            permit_type: permit_type.as_str().to_owned(),
            permit_number_sealed: permit_number.0.clone(),
            valid_until_days: days(*valid_until),
        }
        .encode_to_vec(),
        Event::CardPrinted { on } => pb::CardPrinted { on_days: days(*on) }.encode_to_vec(),
        Event::CardDelivered { on } => pb::CardDelivered { on_days: days(*on) }.encode_to_vec(),
        Event::CardAbandoned { on } => pb::CardAbandoned { on_days: days(*on) }.encode_to_vec(),
        Event::InterimCertificateIssued { on, valid_until } => pb::InterimCertificateIssued {
            on_days: days(*on),
            valid_until_days: days(*valid_until),
        }
        .encode_to_vec(),
        Event::InterimCertificateExtended { on, valid_until } => pb::InterimCertificateExtended {
            on_days: days(*on),
            valid_until_days: days(*valid_until),
        }
        .encode_to_vec(),
        Event::DuplicateRequested { on, cause } => pb::DuplicateRequested {
            on_days: days(*on),
            cause: cause.as_str().to_owned(),
        }
        .encode_to_vec(),
        Event::DuplicateIssued { on } => pb::DuplicateIssued { on_days: days(*on) }.encode_to_vec(),
        Event::ValidityExtended { on, valid_until } => pb::ValidityExtended {
            on_days: days(*on),
            valid_until_days: days(*valid_until),
        }
        .encode_to_vec(),
        Event::PermitCancelled { on, ground } => pb::PermitCancelled {
            on_days: days(*on),
            ground: ground.as_str().to_owned(),
        }
        .encode_to_vec(),
        Event::SupersededByVisa {
            on,
            visa_number,
            valid_until,
        } => pb::SupersededByVisa {
            on_days: days(*on),
            visa_number_sealed: visa_number.0.clone(),
            valid_until_days: valid_until.map(days),
        }
        .encode_to_vec(),
        other => unreachable!("{} is not a permit event", other.event_type()),
    }
}

/// Decodes a permit event (see [`super::decode`], which sends only those here).
pub(super) fn decode(event_type: &str, payload: &[u8]) -> Result<Event, CodecError> {
    Ok(match event_type {
        "PermitIssued" => {
            let m = pb::PermitIssued::decode(payload)?;
            let f = Fields("PermitIssued");
            Event::PermitIssued {
                on: f.date("on_days", m.on_days)?,
                permit_type: f.code("permit_type", &m.permit_type, PermitType::parse)?,
                permit_number: Sealed(m.permit_number_sealed),
                valid_until: f.date("valid_until_days", m.valid_until_days)?,
            }
        }
        "CardPrinted" => {
            let m = pb::CardPrinted::decode(payload)?;
            let f = Fields("CardPrinted");
            Event::CardPrinted {
                on: f.date("on_days", m.on_days)?,
            }
        }
        "CardDelivered" => {
            let m = pb::CardDelivered::decode(payload)?;
            let f = Fields("CardDelivered");
            Event::CardDelivered {
                on: f.date("on_days", m.on_days)?,
            }
        }
        "CardAbandoned" => {
            let m = pb::CardAbandoned::decode(payload)?;
            let f = Fields("CardAbandoned");
            Event::CardAbandoned {
                on: f.date("on_days", m.on_days)?,
            }
        }
        "InterimCertificateIssued" => {
            let m = pb::InterimCertificateIssued::decode(payload)?;
            let f = Fields("InterimCertificateIssued");
            Event::InterimCertificateIssued {
                on: f.date("on_days", m.on_days)?,
                valid_until: f.date("valid_until_days", m.valid_until_days)?,
            }
        }
        "InterimCertificateExtended" => {
            let m = pb::InterimCertificateExtended::decode(payload)?;
            let f = Fields("InterimCertificateExtended");
            Event::InterimCertificateExtended {
                on: f.date("on_days", m.on_days)?,
                valid_until: f.date("valid_until_days", m.valid_until_days)?,
            }
        }
        "DuplicateRequested" => {
            let m = pb::DuplicateRequested::decode(payload)?;
            let f = Fields("DuplicateRequested");
            Event::DuplicateRequested {
                on: f.date("on_days", m.on_days)?,
                cause: f.code("cause", &m.cause, DuplicateCause::parse)?,
            }
        }
        "DuplicateIssued" => {
            let m = pb::DuplicateIssued::decode(payload)?;
            let f = Fields("DuplicateIssued");
            Event::DuplicateIssued {
                on: f.date("on_days", m.on_days)?,
            }
        }
        "ValidityExtended" => {
            let m = pb::ValidityExtended::decode(payload)?;
            let f = Fields("ValidityExtended");
            Event::ValidityExtended {
                on: f.date("on_days", m.on_days)?,
                valid_until: f.date("valid_until_days", m.valid_until_days)?,
            }
        }
        "PermitCancelled" => {
            let m = pb::PermitCancelled::decode(payload)?;
            let f = Fields("PermitCancelled");
            Event::PermitCancelled {
                on: f.date("on_days", m.on_days)?,
                ground: f.code("ground", &m.ground, CancellationGround::parse)?,
            }
        }
        "SupersededByVisa" => {
            let m = pb::SupersededByVisa::decode(payload)?;
            let f = Fields("SupersededByVisa");
            Event::SupersededByVisa {
                on: f.date("on_days", m.on_days)?,
                visa_number: Sealed(m.visa_number_sealed),
                valid_until: m
                    .valid_until_days
                    .map(|d| f.date("valid_until_days", d))
                    .transpose()?,
            }
        }
        other => return Err(unknown_event_type(other)),
    })
}
