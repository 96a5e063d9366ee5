//! Identity sealing: a person's identifying data in clear, sealed with the
//! person's key into the command before the domain decides, and the key of
//! a case being registered.

use serde::{Deserialize, Serialize};

use super::{CaseError, Cases, PendingCommand};
use crate::domain::{Command, Sealed};
use crate::pii::{self, DataKey, NewKey, PiiError};

/// Field context of the sealed identity.
pub const FIELD_IDENTITY: &str = "identity";
/// Field context of a sealed permit number.
pub const FIELD_PERMIT_NUMBER: &str = "permit_number";
/// Field context of a sealed visa number.
pub const FIELD_VISA_NUMBER: &str = "visa_number";

/// An identity document in clear, only ever held in memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityDocument {
    /// Stored code of the [`DocumentType`](crate::domain::DocumentType).
    pub doc_type: String,
    /// The document number, normalized (`pii::normalize`).
    pub number: String,
}

/// A person's identifying data in clear. Sealed as JSON with the person's key
/// before it reaches the log; never logged (`Debug` is redacted).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Identity {
    /// Given names, trimmed.
    pub given_names: String,
    /// Family names, trimmed.
    pub family_names: String,
    /// ISO date.
    pub birth_date: String,
    /// Identity documents presented (at least one, no two alike).
    pub documents: Vec<IdentityDocument>,
    /// Phone number (may be empty).
    pub phone: String,
    /// E-mail address (may be empty).
    pub email: String,
    /// Postal address (may be empty).
    pub address: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity(<{} documents, redacted>)", self.documents.len())
    }
}

/// The key a registration seals with.
pub(super) enum RegistrationKey {
    /// Stored already: a retry, or an earlier attempt's key no event used.
    Held(DataKey),
    /// Made for this attempt: stored with its events (a side write), or never.
    New(NewKey),
}

impl RegistrationKey {
    pub(super) fn key(&self) -> &DataKey {
        match self {
            RegistrationKey::Held(k) => k,
            RegistrationKey::New(n) => &n.key,
        }
    }
}

impl Cases {
    /// The key of a case being registered: made for the first attempt and
    /// stored with its events, so a refused registration leaves no key; a
    /// retry (or a copy racing the original, told so by the writer) finds
    /// it. An erased case's key never comes back.
    pub(super) fn registration_key(&self, case_id: &str) -> Result<RegistrationKey, CaseError> {
        let keys = &self.shared.keys;
        if let Some(k) = keys.get(case_id)? {
            return Ok(RegistrationKey::Held(k));
        }
        match keys.new_key(case_id) {
            Ok(n) => Ok(RegistrationKey::New(n)),
            Err(PiiError::AlreadyExists) => {
                keys.get(case_id)?
                    .map(RegistrationKey::Held)
                    .ok_or(CaseError::RegistrationErased {
                        case_id: case_id.to_string(),
                    })
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Seals the clear personal fields of a pending command into its domain command.
pub(super) fn seal_pending(
    pending: PendingCommand,
    key: Option<&DataKey>,
    case_id: &str,
    request_id: &str,
    documents: &mut Vec<IdentityDocument>,
) -> Result<Command, CaseError> {
    let seal = |field: &str, bytes: &[u8]| -> Option<Sealed> {
        key.map(|k| Sealed(pii::seal_for_request(k, case_id, field, request_id, bytes)))
    };
    // Without a key (erased person) the domain gets an empty value and refuses
    // the command as carrying personal data for an erased person.
    let sealed_or_empty = |field: &str, bytes: &[u8]| seal(field, bytes).unwrap_or(Sealed(Vec::new()));
    Ok(match pending {
        PendingCommand::Plain(c) => c,
        PendingCommand::Register {
            identity,
            mut command,
        }
        | PendingCommand::UpdatePersonalData {
            identity,
            mut command,
        } => {
            let json = zeroize::Zeroizing::new(serde_json::to_vec(&identity).map_err(CaseError::from)?);
            let sealed = sealed_or_empty(FIELD_IDENTITY, &json);
            match &mut command {
                Command::RegisterPerson { identity: slot, .. }
                | Command::UpdatePersonalData { identity: slot, .. } => *slot = sealed,
                _ => return Err(CaseError::invariant("identity for a command without one")),
            }
            documents.extend(identity.documents.iter().cloned());
            command
        }
        PendingCommand::IssuePermit {
            permit_number,
            mut command,
        } => {
            if let Command::IssuePermit {
                permit_number: slot, ..
            } = &mut command
            {
                *slot = sealed_or_empty(FIELD_PERMIT_NUMBER, permit_number.as_bytes());
            }
            command
        }
        PendingCommand::SupersedeByVisa {
            visa_number,
            mut command,
        } => {
            if let Command::SupersedeByVisa {
                visa_number: slot, ..
            } = &mut command
            {
                *slot = sealed_or_empty(FIELD_VISA_NUMBER, visa_number.as_bytes());
            }
            command
        }
    })
}
