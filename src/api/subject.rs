//! The data subject's rights (Ley 1581 de 2012) at the boundary: the
//! request commands' conversion and the subject report
//! (`Caseworker.GetSubjectReport`, docs/SUBJECT_RIGHTS.md).
//!
//! The report holds one person's data only: their case's events (as codes),
//! their identifying data opened, their requests, and the staff reads of
//! their data (user id, office, role, operation, purpose, time). Nothing in
//! it is read from another case's stream.

use super::convert::{identity_pb, opt_date};
use super::pb;
use crate::cases::{AccessEntry, CaseError, CaseView, PendingCommand};
use crate::domain::{Command, Date, Event, Stage, SubjectRequest, SubjectRequestKind};

/// The value a sealed field shows in the report: its content is opened once,
/// in the report's `person`, `permit_number` and `visa_number`.
pub const SEALED_FIELD_VALUE: &str = "SEALED";
/// Event fields that hold sealed personal data.
const SEALED_FIELDS: [&str; 3] = ["identity", "permit_number", "visa_number"];

pub(super) fn receive_subject_request(
    m: pb::ReceiveSubjectRequestRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    let kind = pb::SubjectRequestKind::try_from(m.kind)
        .ok()
        .and_then(|k| SubjectRequestKind::parse(k.as_str_name().trim_start_matches("SUBJECT_REQUEST_KIND_")))
        .ok_or_else(|| CaseError::invalid("kind", "required: QUERY or CLAIM"))?;
    Ok(PendingCommand::Plain(Command::ReceiveSubjectRequest { on, kind }))
}

pub(super) fn extend_subject_request(
    m: pb::ExtendSubjectRequestRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::ExtendSubjectRequest {
        subject_request_id: request_id(m.subject_request_id)?,
        on,
        reason: super::convert::code(&m.reason, "reason")?,
    }))
}

pub(super) fn answer_subject_request(
    m: pb::AnswerSubjectRequestRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::AnswerSubjectRequest {
        subject_request_id: request_id(m.subject_request_id)?,
        on,
        outcome: super::convert::code(&m.outcome, "outcome")?,
    }))
}

fn request_id(id: u32) -> Result<u32, CaseError> {
    if id == 0 {
        return Err(CaseError::invalid("subject_request_id", "required"));
    }
    Ok(id)
}

/// The wire form of a subject request.
pub(super) fn subject_request(r: &SubjectRequest) -> pb::SubjectRequest {
    pb::SubjectRequest {
        subject_request_id: r.id,
        kind: pb::SubjectRequestKind::from_str_name(&format!("SUBJECT_REQUEST_KIND_{}", r.kind.as_str()))
            .map_or(0, |k| k as i32),
        received_on: r.received_on.to_string(),
        due_on: r.due_on.to_string(),
        extended_on: opt_date(r.extended_on),
        extension_reason: r.extension_reason.clone().unwrap_or_default(),
        answered_on: opt_date(r.answered_on),
        outcome: r.outcome.clone().unwrap_or_default(),
    }
}

/// The report of one case: `view` as read (identity opened unless erased),
/// `accesses` read after this report's own access event (seq `access_seq`).
pub(super) fn report(
    view: CaseView,
    accesses: Vec<AccessEntry>,
    access_seq: u64,
    today: Date,
) -> pb::SubjectReport {
    let s = &view.state;
    let mut stage = Stage::default();
    let events = view
        .events
        .iter()
        .map(|(ev, e)| {
            stage = stage.after(e);
            let r = &ev.record;
            pb::SubjectEvent {
                version: r.stream_version,
                seq: r.seq,
                event_type: r.event_type.clone(),
                on: e.on().to_string(),
                stage_after: stage.as_str().to_string(),
                recorded_at_us: r.recorded_at_us,
                office: r.actor.office.clone(),
                fields: event_fields(e),
            }
        })
        .collect();
    pb::SubjectReport {
        case_id: view.case_id.clone(),
        version: view.version,
        produced_on: today.to_string(),
        person: view.identity.as_ref().map(identity_pb),
        erased: s.is_erased(),
        erased_on: opt_date(s.erased_on()),
        permit_number: view.permit_number.clone().unwrap_or_default(),
        visa_number: view.visa_number.clone().unwrap_or_default(),
        events,
        subject_requests: s.subject_requests().iter().map(subject_request).collect(),
        accesses: accesses
            .into_iter()
            .map(|a| pb::DataAccess {
                seq: a.seq,
                recorded_at_us: a.recorded_at_us,
                user: a.user,
                office: a.office,
                role: a.role,
                operation: a.operation,
                purpose: a.purpose,
            })
            .collect(),
        access_seq,
    }
}

/// An event's fields as (name, value) codes, in name order; sealed fields
/// read [`SEALED_FIELD_VALUE`].
pub fn event_fields(event: &Event) -> Vec<pb::EventField> {
    let Ok(serde_json::Value::Object(outer)) = serde_json::to_value(event) else {
        return Vec::new();
    };
    let Some((_, serde_json::Value::Object(fields))) = outer.into_iter().next() else {
        return Vec::new();
    };
    fields
        .into_iter()
        .map(|(name, value)| {
            let value = if SEALED_FIELDS.contains(&name.as_str()) {
                SEALED_FIELD_VALUE.to_string()
            } else {
                text(&value)
            };
            pb::EventField { name, value }
        })
        .collect()
}

fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CountryCode, DocumentType, Sealed, Sex};

    fn fields(event: &Event) -> Vec<(String, String)> {
        event_fields(event)
            .into_iter()
            .map(|f| (f.name, f.value))
            .collect()
    }

    #[test]
    fn fields_are_codes_and_sealed_fields_are_not_shown() {
        let registered = Event::PersonRegistered {
            on: Date::parse("2025-03-04").unwrap(),
            identity: Sealed(vec![0xde, 0xad, 0xbe, 0xef]),
            sex: Sex::Female,
            birth_year: 1990,
            birth_month: 7,
            nationality: CountryCode::VEN,
            department: crate::domain::Department::parse("11").unwrap(),
            municipality: crate::domain::Municipality::parse("11001").unwrap(),
            documents: vec![DocumentType::Passport, DocumentType::Rumv],
        };
        let got = fields(&registered);
        let pairs: Vec<(&str, &str)> = got.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("birth_month", "7"),
                ("birth_year", "1990"),
                ("department", "11"),
                ("documents", "PASSPORT,RUMV"),
                ("identity", SEALED_FIELD_VALUE),
                ("municipality", "11001"),
                ("nationality", "VEN"),
                ("on", "2025-03-04"),
                ("sex", "F"),
            ]
        );
        let received = Event::SubjectRequestReceived {
            subject_request_id: 2,
            on: Date::parse("2025-06-27").unwrap(),
            kind: SubjectRequestKind::Query,
            due_on: Date::parse("2025-07-14").unwrap(),
        };
        assert_eq!(
            fields(&received),
            [
                ("due_on".to_string(), "2025-07-14".to_string()),
                ("kind".into(), "QUERY".into()),
                ("on".into(), "2025-06-27".into()),
                ("subject_request_id".into(), "2".into()),
            ]
        );
    }
}
