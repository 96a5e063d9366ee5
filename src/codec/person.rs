//! Stored events of the person: registration, rectification of personal data,
//! residence, exit from the country and erasure.

use prost::Message;

use super::{days, document_codes, pb, unknown_event_type, CodecError, Fields};
use crate::domain::{CountryCode, Event, ExitKind, Sealed, Sex};

/// Encodes a person event (see [`super::encode`], which sends only those here).
pub(super) fn encode(event: &Event) -> Vec<u8> {
    match event {
        Event::PersonRegistered {
            on,
            identity,
            sex,
            birth_year,
            birth_month,
            nationality,
            department,
            municipality,
            documents,
        } => pb::PersonRegistered {
            on_days: days(*on),
            identity_sealed: identity.0.clone(),
            sex: sex.as_str().to_owned(),
            birth_year: u32::from(*birth_year),
            birth_month: u32::from(*birth_month),
            nationality: nationality.as_str().to_owned(),
            department: u32::from(department.code()),
            municipality: municipality.code(),
            documents: document_codes(documents),
        }
        .encode_to_vec(),
        Event::PersonalDataUpdated {
            on,
            identity,
            documents,
        } => pb::PersonalDataUpdated {
            on_days: days(*on),
            identity_sealed: identity.0.clone(),
            documents: document_codes(documents),
        }
        .encode_to_vec(),
        Event::ResidenceUpdated {
            on,
            department,
            municipality,
        } => pb::ResidenceUpdated {
            on_days: days(*on),
            department: u32::from(department.code()),
            municipality: municipality.code(),
        }
        .encode_to_vec(),
        Event::ExitRecorded {
            on,
            kind,
            destination,
        } => pb::ExitRecorded {
            on_days: days(*on),
            kind: kind.as_str().to_owned(),
            destination: destination.map(|c| c.as_str().to_owned()).unwrap_or_default(),
        }
        .encode_to_vec(),
        Event::PersonErased { on, legal_basis } => pb::PersonErased {
            on_days: days(*on),
            legal_basis: legal_basis.clone(),
        }
        .encode_to_vec(),
        other => unreachable!("{} is not a person event", other.event_type()),
    }
}

/// Decodes a person event (see [`super::decode`], which sends only those here).
pub(super) fn decode(event_type: &str, payload: &[u8]) -> Result<Event, CodecError> {
    Ok(match event_type {
        "PersonRegistered" => {
            let m = pb::PersonRegistered::decode(payload)?;
            let f = Fields("PersonRegistered");
            Event::PersonRegistered {
                on: f.date("on_days", m.on_days)?,
                identity: Sealed(m.identity_sealed),
                sex: f.code("sex", &m.sex, Sex::parse)?,
                birth_year: f.narrow("birth_year", m.birth_year)?,
                birth_month: f.narrow("birth_month", m.birth_month)?,
                nationality: f.code("nationality", &m.nationality, CountryCode::from_log)?,
                department: f.department("department", m.department)?,
                municipality: f.municipality("municipality", m.municipality)?,
                documents: f.documents("documents", &m.documents)?,
            }
        }
        "PersonalDataUpdated" => {
            let m = pb::PersonalDataUpdated::decode(payload)?;
            let f = Fields("PersonalDataUpdated");
            Event::PersonalDataUpdated {
                on: f.date("on_days", m.on_days)?,
                identity: Sealed(m.identity_sealed),
                documents: f.documents("documents", &m.documents)?,
            }
        }
        "ResidenceUpdated" => {
            let m = pb::ResidenceUpdated::decode(payload)?;
            let f = Fields("ResidenceUpdated");
            Event::ResidenceUpdated {
                on: f.date("on_days", m.on_days)?,
                department: f.department("department", m.department)?,
                municipality: f.municipality("municipality", m.municipality)?,
            }
        }
        "ExitRecorded" => {
            let m = pb::ExitRecorded::decode(payload)?;
            let f = Fields("ExitRecorded");
            Event::ExitRecorded {
                on: f.date("on_days", m.on_days)?,
                kind: f.code("kind", &m.kind, ExitKind::parse)?,
                destination: if m.destination.is_empty() {
                    None
                } else {
                    Some(f.code("destination", &m.destination, CountryCode::from_log)?)
                },
            }
        }
        "PersonErased" => {
            let m = pb::PersonErased::decode(payload)?;
            let f = Fields("PersonErased");
            Event::PersonErased {
                on: f.date("on_days", m.on_days)?,
                legal_basis: m.legal_basis,
            }
        }
        other => return Err(unknown_event_type(other)),
    })
}
