//! The policy stream's events (instruments adopted, amended, repealed) and
//! the citation of the policy version a case event was decided under.

use prost::Message;

use super::{days, pb, unknown_event_type, CodecError, Fields};

/// Appends the policy citation (field 900, `PolicyCitation`) to an encoded
/// case event: `payload` then decodes as its own message (which ignores the
/// unknown field) and as `PolicyCitation`. Version 0 appends nothing.
pub fn cite_policy(payload: &mut Vec<u8>, policy_seq: u64) {
    if policy_seq != 0 {
        pb::PolicyCitation { policy_seq }
            .encode(payload)
            .expect("a Vec grows as needed");
    }
}

/// The policy version a stored case event cites (0: none).
pub fn policy_citation(payload: &[u8]) -> Result<u64, CodecError> {
    Ok(pb::PolicyCitation::decode(payload)?.policy_seq)
}

/// Whether `event_type` is an event of the policy stream.
pub fn is_policy_event(event_type: &str) -> bool {
    crate::domain::policy::POLICY_EVENT_TYPES.contains(&event_type)
}

fn instrument_pb(i: &crate::domain::Instrument) -> pb::Instrument {
    pb::Instrument {
        id: i.id.clone(),
        kind: i.kind.as_str().to_string(),
        number: i.number.clone(),
        issuer: i.issuer.clone(),
        signed_on_days: days(i.signed_on),
        effective_on_days: days(i.effective_on),
        title: i.title.clone(),
    }
}

/// Encodes a policy event: (event type, payload).
pub fn encode_policy(event: &crate::domain::PolicyEvent) -> (&'static str, Vec<u8>) {
    use crate::domain::PolicyEvent as P;
    let payload = match event {
        P::Adopted {
            instrument,
            legal_basis,
            rules,
        } => {
            let json = rules.to_json();
            pb::PolicyAdopted {
                instrument: Some(instrument_pb(instrument)),
                legal_basis: legal_basis.clone(),
                rules_blake3: blake3::hash(&json).as_bytes().to_vec(),
                rules_json: json,
            }
            .encode_to_vec()
        }
        P::Amended {
            instrument,
            amends,
            rules,
        } => {
            let json = rules.to_json();
            pb::PolicyAmended {
                instrument: Some(instrument_pb(instrument)),
                amends: amends.clone(),
                rules_blake3: blake3::hash(&json).as_bytes().to_vec(),
                rules_json: json,
            }
            .encode_to_vec()
        }
        P::Repealed { instrument, repeals } => pb::PolicyRepealed {
            instrument: Some(instrument_pb(instrument)),
            repeals: repeals.clone(),
        }
        .encode_to_vec(),
    };
    (event.event_type(), payload)
}

/// Decodes a policy event, checking the rules' content hash and that the
/// rules are well formed.
pub fn decode_policy(event_type: &str, payload: &[u8]) -> Result<crate::domain::PolicyEvent, CodecError> {
    use crate::domain::{Instrument, InstrumentKind, PolicyEvent as P, PolicyRules};
    let instrument = |f: Fields, m: Option<pb::Instrument>| -> Result<Instrument, CodecError> {
        let m = m.ok_or_else(|| f.invalid("instrument"))?;
        Ok(Instrument {
            kind: f.code("instrument.kind", &m.kind, InstrumentKind::parse)?,
            signed_on: f.date("instrument.signed_on_days", m.signed_on_days)?,
            effective_on: f.date("instrument.effective_on_days", m.effective_on_days)?,
            id: m.id,
            number: m.number,
            issuer: m.issuer,
            title: m.title,
        })
    };
    let rules = |f: Fields, json: &[u8], hash: &[u8]| -> Result<PolicyRules, CodecError> {
        if blake3::hash(json).as_bytes()[..] != *hash {
            return Err(f.invalid("rules_blake3"));
        }
        PolicyRules::from_json(json).map_err(|_| f.invalid("rules_json"))
    };
    Ok(match event_type {
        "PolicyAdopted" => {
            let m = pb::PolicyAdopted::decode(payload)?;
            let f = Fields("PolicyAdopted");
            P::Adopted {
                instrument: instrument(f, m.instrument)?,
                legal_basis: m.legal_basis,
                rules: rules(f, &m.rules_json, &m.rules_blake3)?,
            }
        }
        "PolicyAmended" => {
            let m = pb::PolicyAmended::decode(payload)?;
            let f = Fields("PolicyAmended");
            P::Amended {
                instrument: instrument(f, m.instrument)?,
                amends: m.amends,
                rules: rules(f, &m.rules_json, &m.rules_blake3)?,
            }
        }
        "PolicyRepealed" => {
            let m = pb::PolicyRepealed::decode(payload)?;
            let f = Fields("PolicyRepealed");
            P::Repealed {
                instrument: instrument(f, m.instrument)?,
                repeals: m.repeals,
            }
        }
        other => return Err(unknown_event_type(other)),
    })
}
