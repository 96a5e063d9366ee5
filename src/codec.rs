//! The stored-event codec: domain [`Event`]s to and from the bytes the log keeps.
//!
//! The log stores each event as a pair `(event_type, payload)`. The
//! `event_type` is [`Event::event_type`] (one of
//! [`EVENT_TYPES`](crate::domain::EVENT_TYPES)); the payload
//! is the protobuf encoding (prost) of the message of the same name in
//! `proto/regularization/v1/events.proto`, package `regularization.events.v1`,
//! which documents every field for auditors. Field by field:
//!
//! - dates are `int32` days since 1970-01-01 (fields ending `_days`); an
//!   optional date is a proto3 `optional int32`;
//! - closed vocabularies ([`Sex`], [`DenialReason`], ...) are their stable
//!   string codes (`as_str`/`parse`), never protobuf enums, so the stored bytes
//!   do not depend on enum numbering; document kinds are a `repeated string`;
//! - sealed personal data is opaque `bytes` (fields ending `_sealed`), the
//!   biometric reference 32 `bytes`;
//! - DIVIPOLA codes are numbers: department `uint32` (two digits), municipality
//!   `uint32` (five digits); narrow integers (`u8`, `u16`) travel as `uint32`.
//!
//! The prost structs are private to this module and mapped by hand: the domain
//! never depends on generated code, and the mapping is the one place where the
//! stored format meets the domain types.
//!
//! **Stored events must stay decodable forever.** The log is append-only and
//! hash-chained, so a payload written today is read again at every replay for
//! as long as the registry exists. A released field therefore never changes
//! number, type or meaning, and is never removed; the format grows only by new
//! fields (whose zero value, which old payloads decode to, must have a safe
//! meaning) or new event types. A change that cannot be expressed that way
//! gets a new message and an upcaster from the old one in [`decode`], keeping
//! the old decoder.
//!
//! [`decode`] checks that every field is representable in the domain types:
//! known codes, dates inside 0001-01-01..=9999-12-31, existing DIVIPOLA codes,
//! integers that fit their width, a 32-byte biometric reference, well-formed
//! channel and country codes. A field that fails names itself (by its proto
//! name) in [`CodecError::InvalidField`]. It does not re-check the business
//! rules `decide` applied when the event was recorded (the log is the truth,
//! and rules change), so `decode(encode(e)) == e` holds for every [`Event`].
//! Unknown protobuf fields are ignored, as protobuf requires. Decoding never
//! panics, whatever the bytes.

use prost::Message;

use crate::domain::{
    CancellationGround, CertificationRoute, ChannelCode, CountryCode, Date, DenialReason, Department,
    DocumentType, DuplicateCause, EligibilityBasis, Event, ExitKind, LinkEndReason, LinkEvidence, LinkRole,
    Municipality, PermitType, Sealed, Sector, Sex, SubjectRequestKind,
};

/// The generated messages of `regularization.events.v1` (private: only this
/// module sees prost types).
#[allow(missing_docs, clippy::all)]
mod pb {
    tonic::include_proto!("regularization.events.v1");
}

/// Most characters of an unknown event type kept in [`CodecError::UnknownEventType`].
const EVENT_TYPE_CHARS_MAX: usize = 64;

/// Why a stored event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The event type is not one this version knows (truncated to 64 characters).
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    /// The payload is not a valid protobuf message of the event type.
    #[error("malformed event payload: {0}")]
    Prost(#[from] prost::DecodeError),
    /// A field decoded but its value is not valid (unknown code, date out of
    /// range, unknown DIVIPOLA code, wrong length, integer too large).
    #[error("invalid field {field} in stored {event_type} event")]
    InvalidField {
        /// The event type being decoded.
        event_type: &'static str,
        /// The proto field name (`sex`, `on_days`, ...).
        field: &'static str,
    },
}

/// Encodes `event` for the log: its type name and its protobuf payload.
pub fn encode(event: &Event) -> (&'static str, Vec<u8>) {
    let payload = match event {
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
        Event::BiometricAppointmentScheduled {
            on,
            appointment_on,
            site,
        } => pb::BiometricAppointmentScheduled {
            on_days: days(*on),
            appointment_on_days: days(*appointment_on),
            site: site.clone(),
        }
        .encode_to_vec(),
        Event::BiometricAppointmentMissed { on } => {
            pb::BiometricAppointmentMissed { on_days: days(*on) }.encode_to_vec()
        }
        Event::BiometricsCaptured {
            on,
            site,
            operator,
            biometric_ref,
        } => pb::BiometricsCaptured {
            on_days: days(*on),
            site: site.clone(),
            operator: operator.clone(),
            biometric_ref: biometric_ref.to_vec(),
        }
        .encode_to_vec(),
        Event::InformationRequested { on, reason } => pb::InformationRequested {
            on_days: days(*on),
            reason: reason.clone(),
        }
        .encode_to_vec(),
        Event::InformationReceived { on } => pb::InformationReceived { on_days: days(*on) }.encode_to_vec(),
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
        Event::Withdrawn { on } => pb::Withdrawn { on_days: days(*on) }.encode_to_vec(),
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
    };
    (event.event_type(), payload)
}

/// A read of personal data, to be recorded before the data is returned: the
/// content of an access event (`PersonalDataAccessed`, see
/// [`crate::cases::ACCESS_EVENT_TYPE`]). Defined here, beside its encoding,
/// so that the codec does not depend on the case service.
#[derive(Clone, Debug)]
pub struct AccessRecord {
    /// The case whose personal data is returned (for a look-up that found
    /// nothing: empty, recorded in a stream of its own, `access:none:<32 hex digits>`).
    pub case_id: String,
    /// The RPC: `GetCase`, `FindCasesByDocument`.
    pub operation: &'static str,
    /// The purpose code the caller gave.
    pub purpose: String,
    /// The caller's role.
    pub role: String,
    /// Token id or certificate identity the caller authenticated with.
    pub credential: String,
}

/// Encodes an access event's payload.
pub fn encode_access(record: &AccessRecord) -> Vec<u8> {
    pb::PersonalDataAccessed {
        case_id: record.case_id.clone(),
        operation: record.operation.to_string(),
        purpose: record.purpose.clone(),
        role: record.role.clone(),
        credential: record.credential.clone(),
    }
    .encode_to_vec()
}

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
        other => {
            return Err(CodecError::UnknownEventType(
                other.chars().take(EVENT_TYPE_CHARS_MAX).collect(),
            ))
        }
    })
}

/// A decoded access event: (case id, operation, purpose, role, credential).
pub fn decode_access(payload: &[u8]) -> Result<(String, String, String, String, String), CodecError> {
    let m = pb::PersonalDataAccessed::decode(payload)?;
    Ok((m.case_id, m.operation, m.purpose, m.role, m.credential))
}

/// Decodes a stored event from its type name and protobuf payload, checking
/// every field (see the module documentation). Never panics.
pub fn decode(event_type: &str, payload: &[u8]) -> Result<Event, CodecError> {
    let event = match event_type {
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
        "BiometricAppointmentScheduled" => {
            let m = pb::BiometricAppointmentScheduled::decode(payload)?;
            let f = Fields("BiometricAppointmentScheduled");
            Event::BiometricAppointmentScheduled {
                on: f.date("on_days", m.on_days)?,
                appointment_on: f.date("appointment_on_days", m.appointment_on_days)?,
                site: m.site,
            }
        }
        "BiometricAppointmentMissed" => {
            let m = pb::BiometricAppointmentMissed::decode(payload)?;
            let f = Fields("BiometricAppointmentMissed");
            Event::BiometricAppointmentMissed {
                on: f.date("on_days", m.on_days)?,
            }
        }
        "BiometricsCaptured" => {
            let m = pb::BiometricsCaptured::decode(payload)?;
            let f = Fields("BiometricsCaptured");
            Event::BiometricsCaptured {
                on: f.date("on_days", m.on_days)?,
                site: m.site,
                operator: m.operator,
                biometric_ref: <[u8; 32]>::try_from(m.biometric_ref.as_slice())
                    .map_err(|_| f.invalid("biometric_ref"))?,
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
        "Withdrawn" => {
            let m = pb::Withdrawn::decode(payload)?;
            let f = Fields("Withdrawn");
            Event::Withdrawn {
                on: f.date("on_days", m.on_days)?,
            }
        }
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
        unknown => {
            return Err(CodecError::UnknownEventType(
                unknown.chars().take(EVENT_TYPE_CHARS_MAX).collect(),
            ))
        }
    };
    Ok(event)
}

/// A date as stored: days since 1970-01-01. Every [`Date`] (years 1..=9999)
/// is within about ±3.7 million days, so the cast never truncates.
fn days(date: Date) -> i32 {
    date.days_since_epoch() as i32
}

fn document_codes(documents: &[DocumentType]) -> Vec<String> {
    documents.iter().map(|d| d.as_str().to_owned()).collect()
}

/// Field checks for one event type: each failure names the event type and the field.
#[derive(Clone, Copy)]
struct Fields(&'static str);

impl Fields {
    fn invalid(self, field: &'static str) -> CodecError {
        CodecError::InvalidField {
            event_type: self.0,
            field,
        }
    }

    fn date(self, field: &'static str, days: i32) -> Result<Date, CodecError> {
        Date::from_days(i64::from(days)).ok_or_else(|| self.invalid(field))
    }

    fn code<T>(self, field: &'static str, code: &str, parse: fn(&str) -> Option<T>) -> Result<T, CodecError> {
        parse(code).ok_or_else(|| self.invalid(field))
    }

    /// A `uint32` holding a narrower domain integer (`u8`, `u16`).
    fn narrow<T: TryFrom<u32>>(self, field: &'static str, value: u32) -> Result<T, CodecError> {
        T::try_from(value).map_err(|_| self.invalid(field))
    }

    fn department(self, field: &'static str, code: u32) -> Result<Department, CodecError> {
        u8::try_from(code)
            .ok()
            .and_then(Department::new)
            .ok_or_else(|| self.invalid(field))
    }

    /// Form only: a code accepted under an earlier DIVIPOLA list still decodes.
    fn municipality(self, field: &'static str, code: u32) -> Result<Municipality, CodecError> {
        Municipality::from_log(code).ok_or_else(|| self.invalid(field))
    }

    fn documents(self, field: &'static str, codes: &[String]) -> Result<Vec<DocumentType>, CodecError> {
        codes
            .iter()
            .map(|code| self.code(field, code, DocumentType::parse))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EVENT_TYPES;
    use proptest::prelude::*;

    /// A policy event recorded before channels stated how their appeal
    /// window is counted decodes to calendar days, and is written again
    /// byte for byte (same content hash): an old log replays unchanged.
    #[test]
    fn policy_rules_written_before_the_appeal_count_decode_to_calendar_days() {
        use crate::domain::{DayCount, PolicyBook};
        let genesis = PolicyBook::genesis().remove(0);
        let (event_type, payload) = encode_policy(&genesis);
        let mut m = pb::PolicyAdopted::decode(&payload[..]).unwrap();
        let json = String::from_utf8(m.rules_json.clone()).unwrap();
        let old = json.replace(r#","appeal_window_count":"BUSINESS""#, "");
        assert_ne!(old, json);
        m.rules_blake3 = blake3::hash(old.as_bytes()).as_bytes().to_vec();
        m.rules_json = old.into_bytes();
        let old_payload = m.encode_to_vec();
        let decoded = decode_policy(event_type, &old_payload).unwrap();
        let etpv = &decoded.rules().unwrap().channels[0];
        assert_eq!(etpv.appeal_window_count, DayCount::Calendar);
        assert_eq!(
            etpv.appeal_until(Date::parse("2025-04-11").unwrap()),
            Date::parse("2025-04-21").unwrap()
        );
        assert_eq!(encode_policy(&decoded).1, old_payload);
    }

    fn d(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    fn sealed(tag: u8, len: usize) -> Sealed {
        Sealed((0..len).map(|i| tag ^ (i as u8).wrapping_mul(31)).collect())
    }

    fn department(code: u8) -> Department {
        Department::new(code).unwrap()
    }

    fn municipality(code: u32) -> Municipality {
        Municipality::from_log(code).unwrap()
    }

    /// One realistic event of every type, in [`EVENT_TYPES`] order: a PPT
    /// case through ETPV from registration to erasure.
    fn samples() -> Vec<Event> {
        vec![
            Event::PersonRegistered {
                on: d("2021-05-05"),
                identity: sealed(0x11, 180),
                sex: Sex::Female,
                birth_year: 1992,
                birth_month: 7,
                nationality: CountryCode::VEN,
                department: department(54),
                municipality: municipality(54001),
                documents: vec![DocumentType::VenezuelanCedula, DocumentType::Pep],
            },
            Event::PreRegistered {
                application_id: 1,
                channel: ChannelCode::parse("ETPV").unwrap(),
                basis: EligibilityBasis::Pep,
                applied_on: d("2021-05-05"),
            },
            Event::SurveyCompleted {
                on: d("2021-05-06"),
                household_size: 4,
                employed: true,
                sector: Some(Sector::HospitalityTourism),
            },
            Event::BiometricAppointmentScheduled {
                on: d("2021-05-06"),
                appointment_on: d("2021-06-15"),
                site: "CUC-CC-VENTURA".to_owned(),
            },
            Event::BiometricAppointmentMissed { on: d("2021-06-15") },
            Event::BiometricsCaptured {
                on: d("2021-07-02"),
                site: "CUC-CC-VENTURA".to_owned(),
                operator: "OP-00417".to_owned(),
                biometric_ref: *blake3::hash(b"enrolment 7741").as_bytes(),
            },
            Event::InformationRequested {
                on: d("2021-08-10"),
                reason: "DOCUMENT_ILLEGIBLE".to_owned(),
            },
            Event::InformationReceived { on: d("2021-08-20") },
            Event::Approved { on: d("2021-10-01") },
            Event::Denied {
                on: d("2021-10-01"),
                reason: DenialReason::Annotation,
                appeal_until: d("2021-10-11"),
            },
            Event::AppealFiled { on: d("2021-10-08") },
            Event::AppealDecided {
                on: d("2021-11-02"),
                upheld: true,
            },
            Event::Withdrawn { on: d("2021-11-03") },
            Event::PermitIssued {
                on: d("2021-11-15"),
                permit_type: PermitType::Ppt,
                permit_number: sealed(0x22, 48),
                valid_until: d("2031-05-30"),
            },
            Event::CardPrinted { on: d("2021-12-01") },
            Event::CardDelivered { on: d("2022-01-20") },
            Event::CardAbandoned { on: d("2022-07-01") },
            Event::InterimCertificateIssued {
                on: d("2021-11-15"),
                valid_until: d("2022-02-13"),
            },
            Event::InterimCertificateExtended {
                on: d("2022-02-10"),
                valid_until: d("2022-05-14"),
            },
            Event::DuplicateRequested {
                on: d("2023-03-03"),
                cause: DuplicateCause::Theft,
            },
            Event::DuplicateIssued { on: d("2023-03-20") },
            Event::ValidityExtended {
                on: d("2031-01-10"),
                valid_until: d("2033-05-30"),
            },
            Event::PermitCancelled {
                on: d("2024-02-29"),
                ground: CancellationGround::AbsenceOver180Days,
            },
            Event::SupersededByVisa {
                on: d("2024-06-01"),
                visa_number: sealed(0x33, 40),
                valid_until: Some(d("2029-06-01")),
            },
            Event::PersonalDataUpdated {
                on: d("2024-07-01"),
                identity: sealed(0x44, 212),
                documents: vec![
                    DocumentType::Passport,
                    DocumentType::Ppt,
                    DocumentType::CedulaExtranjeria,
                ],
            },
            Event::ResidenceUpdated {
                on: d("2024-08-15"),
                department: department(5),
                municipality: municipality(5001),
            },
            Event::CertificationRequested {
                certification_id: 1,
                on: d("2024-09-01"),
                route: CertificationRoute::SenaCompetency,
                sector: Sector::Construction,
            },
            Event::CertificationAssessed {
                certification_id: 1,
                on: d("2024-10-01"),
                passed: true,
            },
            Event::CertificationAwarded {
                certification_id: 1,
                on: d("2024-10-15"),
                standard_code: "NCL-280201051".to_owned(),
                issuing_body: "SENA".to_owned(),
            },
            Event::CertificationDenied {
                certification_id: 2,
                on: d("2024-11-05"),
                reason: "ASSESSMENT_FAILED".to_owned(),
            },
            Event::ExitRecorded {
                on: d("2026-01-10"),
                kind: ExitKind::Nationalized,
                destination: None,
            },
            Event::PersonErased {
                on: d("2026-02-01"),
                legal_basis: "LEY_1581_2012_ART_8".to_owned(),
            },
            Event::SubjectRequestReceived {
                subject_request_id: 1,
                on: d("2026-02-02"),
                kind: SubjectRequestKind::Claim,
                due_on: d("2026-02-23"),
            },
            Event::SubjectRequestExtended {
                subject_request_id: 1,
                on: d("2026-02-20"),
                reason: "VOLUME".to_owned(),
                due_on: d("2026-03-05"),
            },
            Event::SubjectRequestAnswered {
                subject_request_id: 1,
                on: d("2026-03-04"),
                outcome: "RECTIFIED".to_owned(),
            },
            Event::FamilyLinkRecorded {
                on: d("2025-09-02"),
                link_id: "L-0123456789abcdef0123".to_owned(),
                role: LinkRole::WardOf,
                other_case_id: "C-00112233445566778899".to_owned(),
                evidence: LinkEvidence::IcbfAct,
            },
            Event::FamilyLinkEnded {
                on: d("2025-09-03"),
                link_id: "L-0123456789abcdef0123".to_owned(),
                role: LinkRole::WardOf,
                reason: LinkEndReason::RecordedInError,
            },
        ]
    }

    /// Boundary values: extreme dates, empty and absent collections, every
    /// code of some vocabularies, largest integers.
    fn edge_samples() -> Vec<Event> {
        let mut events = vec![
            Event::PersonRegistered {
                on: Date::MIN,
                identity: Sealed(Vec::new()),
                sex: Sex::Unspecified,
                birth_year: u16::MAX,
                birth_month: u8::MAX,
                nationality: CountryCode::from_log("ZZZ").unwrap(),
                department: department(99),
                municipality: municipality(99_999),
                documents: DocumentType::ALL.to_vec(),
            },
            Event::PersonRegistered {
                on: Date::MAX,
                identity: sealed(0x55, 16 * 1024),
                sex: Sex::Male,
                birth_year: 0,
                birth_month: 0,
                nationality: CountryCode::VEN,
                department: department(11),
                municipality: municipality(11001),
                documents: Vec::new(),
            },
            Event::PreRegistered {
                application_id: u32::MAX,
                channel: ChannelCode::parse("A_VERY_LONG_COD").unwrap(),
                basis: EligibilityBasis::IrregularOn20210131,
                applied_on: d("1969-12-31"),
            },
            Event::SurveyCompleted {
                on: d("1970-01-01"),
                household_size: 0,
                employed: false,
                sector: None,
            },
            Event::SurveyCompleted {
                on: d("2000-02-29"),
                household_size: u8::MAX,
                employed: true,
                sector: Some(Sector::Other),
            },
            Event::BiometricsCaptured {
                on: Date::MAX,
                site: String::new(),
                operator: "ñ".to_owned(),
                biometric_ref: [0; 32],
            },
            Event::SupersededByVisa {
                on: Date::MIN,
                visa_number: Sealed(vec![0]),
                valid_until: None,
            },
            Event::SupersededByVisa {
                on: d("2024-06-01"),
                visa_number: sealed(0x66, 3),
                valid_until: Some(d("1970-01-01")),
            },
            Event::AppealDecided {
                on: Date::MAX,
                upheld: false,
            },
            Event::CertificationAssessed {
                certification_id: 0,
                on: Date::MIN,
                passed: false,
            },
        ];
        events.extend(DenialReason::ALL.iter().map(|&reason| Event::Denied {
            on: d("2022-01-01"),
            reason,
            appeal_until: d("2022-01-11"),
        }));
        events.extend(
            CancellationGround::ALL
                .iter()
                .map(|&ground| Event::PermitCancelled {
                    on: d("2022-01-01"),
                    ground,
                }),
        );
        events.extend(PermitType::ALL.iter().map(|&permit_type| Event::PermitIssued {
            on: d("2022-01-01"),
            permit_type,
            permit_number: sealed(0x77, 20),
            valid_until: d("2024-01-01"),
        }));
        events.extend(EligibilityBasis::ALL.iter().map(|&basis| Event::PreRegistered {
            application_id: 2,
            channel: ChannelCode::parse("PEP_TUTOR").unwrap(),
            basis,
            applied_on: d("2023-07-01"),
        }));
        events.extend(ExitKind::ALL.iter().map(|&kind| Event::ExitRecorded {
            on: d("2025-01-01"),
            kind,
            destination: (kind == ExitKind::Departed).then(|| CountryCode::parse("PER").unwrap()),
        }));
        events.extend(
            DuplicateCause::ALL
                .iter()
                .map(|&cause| Event::DuplicateRequested {
                    on: d("2025-01-01"),
                    cause,
                }),
        );
        events.extend(CertificationRoute::ALL.iter().flat_map(|&route| {
            Sector::ALL
                .iter()
                .map(move |&sector| Event::CertificationRequested {
                    certification_id: 3,
                    on: d("2025-01-01"),
                    route,
                    sector,
                })
        }));
        events
    }

    fn assert_round_trip(event: &Event) {
        let (event_type, payload) = encode(event);
        assert_eq!(event_type, event.event_type());
        assert_eq!(decode(event_type, &payload).as_ref(), Ok(event), "{event:?}");
    }

    #[test]
    fn every_event_type_round_trips() {
        let events = samples();
        let types: Vec<&str> = events.iter().map(Event::event_type).collect();
        assert_eq!(types, EVENT_TYPES, "one sample per event type, in order");
        for event in &events {
            assert_round_trip(event);
        }
    }

    #[test]
    fn boundary_values_round_trip() {
        for event in &edge_samples() {
            assert_round_trip(event);
        }
    }

    #[test]
    fn payloads_are_protobuf_not_json() {
        let (_, payload) = encode(&samples()[0]);
        // Field 1 (on_days), varint: tag byte 0x08.
        assert_eq!(payload[0], 0x08);
        assert!(serde_json::from_slice::<serde_json::Value>(&payload).is_err());
    }

    /// Pins the stored bytes: a change here breaks every stored event, so it
    /// is never the fix for a failing test (see the module documentation).
    #[test]
    fn stored_bytes_are_stable() {
        let person = Event::PersonRegistered {
            on: d("2021-05-05"),
            identity: Sealed(vec![0xde, 0xad]),
            sex: Sex::Female,
            birth_year: 1992,
            birth_month: 7,
            nationality: CountryCode::VEN,
            department: department(5),
            municipality: municipality(5001),
            documents: vec![DocumentType::Passport, DocumentType::Rumv],
        };
        let expected: &[u8] = &[
            0x08, 0xc0, 0x92, 0x01, // on_days = 18_752 (2021-05-05)
            0x12, 0x02, 0xde, 0xad, // identity_sealed
            0x1a, 0x01, b'F', // sex
            0x20, 0xc8, 0x0f, // birth_year = 1992
            0x28, 0x07, // birth_month = 7
            0x32, 0x03, b'V', b'E', b'N', // nationality
            0x38, 0x05, // department = 5
            0x40, 0x89, 0x27, // municipality = 5001
            0x4a, 0x08, b'P', b'A', b'S', b'S', b'P', b'O', b'R', b'T', // documents[0]
            0x4a, 0x04, b'R', b'U', b'M', b'V', // documents[1]
        ];
        assert_eq!(encode(&person), ("PersonRegistered", expected.to_vec()));
        assert_eq!(decode("PersonRegistered", expected), Ok(person));

        // An absent optional date is absent from the bytes; 1970-01-01 is present as 0.
        let no_end = Event::SupersededByVisa {
            on: d("1970-01-02"),
            visa_number: Sealed(vec![7]),
            valid_until: None,
        };
        assert_eq!(encode(&no_end).1, [0x08, 0x01, 0x12, 0x01, 0x07]);
        let epoch_end = Event::SupersededByVisa {
            on: d("1970-01-02"),
            visa_number: Sealed(vec![7]),
            valid_until: Some(d("1970-01-01")),
        };
        assert_eq!(encode(&epoch_end).1, [0x08, 0x01, 0x12, 0x01, 0x07, 0x18, 0x00]);

        // Dates before 1970 are negative int32 varints (ten bytes).
        let (_, payload) = encode(&Event::Approved { on: Date::MIN });
        assert_eq!(
            decode("Approved", &payload),
            Ok(Event::Approved { on: Date::MIN })
        );
        assert_eq!(
            pb::Approved::decode(payload.as_slice()).unwrap().on_days,
            -719_162
        );
        let (_, payload) = encode(&Event::Approved { on: Date::MAX });
        assert_eq!(
            pb::Approved::decode(payload.as_slice()).unwrap().on_days,
            2_932_896
        );
    }

    #[test]
    fn unknown_event_type_is_refused() {
        assert_eq!(
            decode("PermitRevoked", &[]),
            Err(CodecError::UnknownEventType("PermitRevoked".to_owned()))
        );
        assert!(matches!(
            decode("approved", &[0x08, 0x01]),
            Err(CodecError::UnknownEventType(_))
        ));
        assert!(matches!(decode("", &[]), Err(CodecError::UnknownEventType(t)) if t.is_empty()));
        let long = "X".repeat(10_000);
        let Err(CodecError::UnknownEventType(kept)) = decode(&long, &[]) else {
            panic!("expected UnknownEventType");
        };
        assert_eq!(kept.len(), EVENT_TYPE_CHARS_MAX);
    }

    #[test]
    fn unknown_sex_code_names_the_field() {
        let (_, payload) = encode(&samples()[0]);
        let mut message = pb::PersonRegistered::decode(payload.as_slice()).unwrap();
        message.sex = "Q".to_owned();
        let err = decode("PersonRegistered", &message.encode_to_vec()).unwrap_err();
        assert_eq!(
            err,
            CodecError::InvalidField {
                event_type: "PersonRegistered",
                field: "sex"
            }
        );
        assert_eq!(
            err.to_string(),
            "invalid field sex in stored PersonRegistered event"
        );
    }

    /// Decodes `message` as `event_type` and returns the field it was refused for.
    fn refused_field(event_type: &str, message: &impl Message) -> &'static str {
        match decode(event_type, &message.encode_to_vec()) {
            Err(CodecError::InvalidField {
                event_type: reported,
                field,
            }) => {
                assert_eq!(reported, event_type);
                field
            }
            other => panic!("{event_type}: expected InvalidField, got {other:?}"),
        }
    }

    #[test]
    fn invalid_stored_values_name_their_field() {
        let (_, payload) = encode(&samples()[0]);
        let person = pb::PersonRegistered::decode(payload.as_slice()).unwrap();
        let with = |change: fn(&mut pb::PersonRegistered)| {
            let mut message = person.clone();
            change(&mut message);
            refused_field("PersonRegistered", &message)
        };
        assert_eq!(with(|m| m.sex = String::new()), "sex");
        assert_eq!(with(|m| m.sex = "f".to_owned()), "sex");
        assert_eq!(with(|m| m.on_days = 2_932_897), "on_days");
        assert_eq!(with(|m| m.on_days = -719_163), "on_days");
        assert_eq!(with(|m| m.on_days = i32::MIN), "on_days");
        assert_eq!(with(|m| m.birth_year = 65_536), "birth_year");
        assert_eq!(with(|m| m.birth_month = 256), "birth_month");
        assert_eq!(with(|m| m.nationality = "VE".to_owned()), "nationality");
        assert_eq!(with(|m| m.department = 12), "department");
        assert_eq!(with(|m| m.department = 0), "department");
        assert_eq!(with(|m| m.department = 256 + 5), "department");
        assert_eq!(with(|m| m.municipality = 12_001), "municipality");
        assert_eq!(with(|m| m.municipality = 5_000), "municipality");
        assert_eq!(with(|m| m.municipality = 0), "municipality");
        assert_eq!(with(|m| m.municipality = 105_001), "municipality");
        assert_eq!(with(|m| m.documents.push("passport".to_owned())), "documents");

        let pre = pb::PreRegistered {
            application_id: 1,
            channel: "etpv".to_owned(),
            basis: "PEP".to_owned(),
            applied_on_days: 18_692,
        };
        assert_eq!(refused_field("PreRegistered", &pre), "channel");
        let pre = pb::PreRegistered {
            channel: "ETPV".to_owned(),
            basis: "PEP-FF".to_owned(),
            ..pre
        };
        assert_eq!(refused_field("PreRegistered", &pre), "basis");

        let survey = pb::SurveyCompleted {
            on_days: 18_693,
            household_size: 300,
            employed: false,
            sector: None,
        };
        assert_eq!(refused_field("SurveyCompleted", &survey), "household_size");
        let survey = pb::SurveyCompleted {
            household_size: 3,
            employed: true,
            sector: Some(String::new()),
            ..survey
        };
        assert_eq!(refused_field("SurveyCompleted", &survey), "sector");

        let captured = pb::BiometricsCaptured {
            on_days: 18_700,
            site: "S".to_owned(),
            operator: "O".to_owned(),
            biometric_ref: vec![1; 31],
        };
        assert_eq!(refused_field("BiometricsCaptured", &captured), "biometric_ref");
        let captured = pb::BiometricsCaptured {
            biometric_ref: vec![1; 33],
            ..captured
        };
        assert_eq!(refused_field("BiometricsCaptured", &captured), "biometric_ref");

        let visa = pb::SupersededByVisa {
            on_days: 19_875,
            visa_number_sealed: vec![1, 2, 3],
            valid_until_days: Some(i32::MAX),
        };
        assert_eq!(refused_field("SupersededByVisa", &visa), "valid_until_days");

        let denied = pb::Denied {
            on_days: 18_901,
            reason: "CRIMINAL_RECORD".to_owned(),
            appeal_until_days: -800_000,
        };
        assert_eq!(refused_field("Denied", &denied), "appeal_until_days");
        let residence = pb::ResidenceUpdated {
            on_days: 19_950,
            department: 5,
            municipality: 5_000,
        };
        assert_eq!(refused_field("ResidenceUpdated", &residence), "municipality");
        let certification = pb::CertificationRequested {
            certification_id: 1,
            on_days: 19_967,
            route: "SENA_COMPETENCY".to_owned(),
            sector: "MINING".to_owned(),
        };
        assert_eq!(refused_field("CertificationRequested", &certification), "sector");
        let exit = pb::ExitRecorded {
            on_days: 20_463,
            kind: "EMIGRATED".to_owned(),
            destination: String::new(),
        };
        assert_eq!(refused_field("ExitRecorded", &exit), "kind");
        let exit = pb::ExitRecorded {
            on_days: 20_463,
            kind: "DEPARTED".to_owned(),
            destination: "peru".to_owned(),
        };
        assert_eq!(refused_field("ExitRecorded", &exit), "destination");
        let permit = pb::PermitIssued {
            on_days: 18_946,
            permit_type: "PEP".to_owned(),
            permit_number_sealed: vec![9],
            valid_until_days: 22_429,
        };
        assert_eq!(refused_field("PermitIssued", &permit), "permit_type");
    }

    #[test]
    fn malformed_payload_is_a_prost_error() {
        // Field 1 announced as a varint that never ends.
        assert!(matches!(
            decode("Approved", &[0x08, 0xff]),
            Err(CodecError::Prost(_))
        ));
        // Field 2 announced as 5 bytes of sealed data, 1 present.
        assert!(matches!(
            decode("PersonRegistered", &[0x12, 0x05, 0x00]),
            Err(CodecError::Prost(_))
        ));
        // sex (field 3) with wire type varint instead of length-delimited.
        assert!(matches!(
            decode("PersonRegistered", &[0x18, 0x01]),
            Err(CodecError::Prost(_))
        ));
        // sex as invalid UTF-8.
        assert!(matches!(
            decode("PersonRegistered", &[0x1a, 0x01, 0xff]),
            Err(CodecError::Prost(_))
        ));
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_fields_read_as_zero() {
        // A future writer's field 15 (varint) is skipped by this reader.
        let payload = [0x08, 0x01, 0x78, 0x2a];
        let on = d("1970-01-02");
        assert_eq!(decode("Approved", &payload), Ok(Event::Approved { on }));
        // An empty payload is every field at its zero value: 1970-01-01 for a date.
        assert_eq!(
            decode("CardPrinted", &[]),
            Ok(Event::CardPrinted { on: d("1970-01-01") })
        );
        // ... and an empty code, which no vocabulary holds.
        assert!(matches!(
            decode("Denied", &[]),
            Err(CodecError::InvalidField { field: "reason", .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Arbitrary bytes under every event type never panic, and whatever
        /// decodes is an event of that type that round-trips.
        #[test]
        fn arbitrary_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            for event_type in EVENT_TYPES {
                if let Ok(event) = decode(event_type, &payload) {
                    prop_assert_eq!(event.event_type(), event_type);
                    let (again_type, again) = encode(&event);
                    prop_assert_eq!(decode(again_type, &again), Ok(event));
                }
            }
        }

        /// Well-formed protobuf with arbitrary field values never panics
        /// either: the checks, not the wire format, decide.
        #[test]
        fn arbitrary_field_values_never_panic(
            on_days in any::<i32>(),
            numbers in proptest::array::uniform4(any::<u32>()),
            text in "[A-Z0-9_]{0,20}",
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let person = pb::PersonRegistered {
                on_days,
                identity_sealed: bytes.clone(),
                sex: text.clone(),
                birth_year: numbers[0],
                birth_month: numbers[1],
                nationality: text.clone(),
                department: numbers[2],
                municipality: numbers[3],
                documents: vec![text.clone()],
            };
            let visa = pb::SupersededByVisa {
                on_days,
                visa_number_sealed: bytes.clone(),
                valid_until_days: Some(on_days.wrapping_add(numbers[0] as i32)),
            };
            let captured = pb::BiometricsCaptured {
                on_days,
                site: text.clone(),
                operator: text.clone(),
                biometric_ref: bytes,
            };
            let payloads = [person.encode_to_vec(), visa.encode_to_vec(), captured.encode_to_vec()];
            for event_type in EVENT_TYPES {
                for payload in &payloads {
                    if let Ok(event) = decode(event_type, payload) {
                        let (again_type, again) = encode(&event);
                        prop_assert_eq!(decode(again_type, &again), Ok(event));
                    }
                }
            }
        }

        /// Every representable date survives the stored form.
        #[test]
        fn dates_round_trip(days in -719_162i64..=2_932_896) {
            let on = Date::from_days(days).unwrap();
            let (_, payload) = encode(&Event::Approved { on });
            prop_assert_eq!(decode("Approved", &payload), Ok(Event::Approved { on }));
        }
    }
}
