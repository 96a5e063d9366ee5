//! Access events (`PersonalDataAccessed`): a read of personal data, recorded
//! in `access:<case id>` before the data is returned.

use prost::Message;

use super::{pb, CodecError};

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

/// A decoded access event: (case id, operation, purpose, role, credential).
pub fn decode_access(payload: &[u8]) -> Result<(String, String, String, String, String), CodecError> {
    let m = pb::PersonalDataAccessed::decode(payload)?;
    Ok((m.case_id, m.operation, m.purpose, m.role, m.credential))
}
