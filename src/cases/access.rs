//! The access log: every read of a case's personal data is recorded, before
//! the data is returned, as an access event in `access:<case id>`; the data
//! subject's report reads them back.

use super::{CaseError, Cases};
use crate::codec;
pub use crate::codec::AccessRecord;
use crate::log::{Actor, AppendRequest, Appended, ExpectedVersion, NewEvent};

/// Stream id prefix of access events: `access:<case id>` holds who read
/// that case's personal data, when and why. Never a case id.
pub const ACCESS_STREAM_PREFIX: &str = "access:";
/// Event type of an access event (not a case event: projections skip it).
pub const ACCESS_EVENT_TYPE: &str = "PersonalDataAccessed";

/// One recorded read of a case's personal data (an access event of
/// `access:<case id>`), as the data subject's report shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessEntry {
    /// The access event's seq in the log.
    pub seq: u64,
    /// When it was recorded (Unix microseconds).
    pub recorded_at_us: i64,
    /// The principal who read: user id and office (staff, never the subject).
    pub user: String,
    /// The reader's office.
    pub office: String,
    /// The reader's role.
    pub role: String,
    /// What was read: the RPC (`GetCase`, `FindCasesByDocument`, ...).
    pub operation: String,
    /// The purpose the reader stated.
    pub purpose: String,
}

impl Cases {
    /// Appends an access event (durably) to `access:<case id>`; the caller
    /// returns the personal data only after this succeeded.
    pub async fn record_access(&self, actor: Actor, record: AccessRecord) -> Result<Appended, CaseError> {
        let payload = codec::encode_access(&record);
        let mut id = [0u8; 16];
        getrandom::getrandom(&mut id).map_err(CaseError::from)?;
        let id = crate::hex::encode(&id);
        // A look-up that found nothing gets a stream of its own: a stream
        // holds at most STREAM_EVENTS_MAX events, and these have no case.
        let stream_id = if record.case_id.is_empty() {
            format!("{ACCESS_STREAM_PREFIX}none:{id}")
        } else {
            format!("{ACCESS_STREAM_PREFIX}{}", record.case_id)
        };
        let request = AppendRequest {
            stream_id,
            expected: ExpectedVersion::Any,
            request_id: format!("access-{id}"),
            actor,
            events: vec![NewEvent {
                event_type: ACCESS_EVENT_TYPE.to_string(),
                payload,
            }],
        };
        let appended = self.shared.appender.append(request).await?;
        (self.shared.access_events)
            .get_or_create(&[("operation", record.operation)])
            .inc();
        Ok(appended)
    }

    /// Every access event recorded on a case (`access:<case id>`), oldest
    /// first: who read its personal data, when, how and why. The stream
    /// holds at most `STREAM_EVENTS_MAX` events, read in pages.
    pub fn access_log(&self, case_id: &str) -> Result<Vec<AccessEntry>, CaseError> {
        let stream = format!("{ACCESS_STREAM_PREFIX}{case_id}");
        let mut out = Vec::new();
        loop {
            let from = out.len() as u64 + 1;
            let page = self
                .shared
                .store
                .read_stream(&stream, from, crate::limits::READ_PAGE_EVENTS_MAX)?;
            if page.is_empty() {
                return Ok(out);
            }
            for ev in page {
                let r = ev.record;
                if r.event_type != ACCESS_EVENT_TYPE {
                    return Err(CaseError::invariant(format!(
                        "seq {}: not an access event",
                        r.seq
                    )));
                }
                let (_, operation, purpose, role, _) = codec::decode_access(&r.payload)?;
                out.push(AccessEntry {
                    seq: r.seq,
                    recorded_at_us: r.recorded_at_us,
                    user: r.actor.user_id,
                    office: r.actor.office,
                    role,
                    operation,
                    purpose,
                });
            }
        }
    }
}
