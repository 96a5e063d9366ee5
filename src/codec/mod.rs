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
//! - closed vocabularies ([`Sex`](crate::domain::Sex),
//!   [`DenialReason`](crate::domain::DenialReason), ...) are their stable
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
//!
//! [`encode`] and [`decode`] are generated from the event table
//! (`event_table!`, `domain/vocabulary.rs`), which names
//! each event field's proto field; the value itself is converted by the
//! field type's `Stored` implementation (`stored.rs`).
//! Fields are decoded in the row's order, so the first invalid one is the
//! one named. The policy stream's events are in `policy`, access events in
//! `access`.

use prost::Message;

use crate::domain::{Date, Department, DocumentType, Event, Municipality};
use stored::Stored;

mod access;
mod policy;
mod stored;

#[cfg(test)]
mod tests;

pub use access::{decode_access, encode_access, AccessRecord};
pub use policy::{cite_policy, decode_policy, encode_policy, is_policy_event, policy_citation};

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

/// Generates [`encode`] and [`decode`] from the rows of the event table:
/// each event is the message of its name, each field the proto field its
/// row names.
macro_rules! define_codec {
    ($(
        $(#[$meta:meta])*
        $name:ident ($date:ident) { $( $(#[$fmeta:meta])* $field:ident : $ty:ty => $stored:ident ),* $(,)? }
    )*) => {
        /// Encodes `event` for the log: its type name and its protobuf payload.
        pub fn encode(event: &Event) -> (&'static str, Vec<u8>) {
            let payload = match event {
                $(Event::$name { $($field),* } => pb::$name {
                    $($stored: Stored::store($field)),*
                }
                .encode_to_vec(),)*
            };
            (event.event_type(), payload)
        }

        /// Decodes a stored event from its type name and protobuf payload, checking
        /// every field (see the module documentation). Never panics.
        pub fn decode(event_type: &str, payload: &[u8]) -> Result<Event, CodecError> {
            match event_type {
                $(stringify!($name) => {
                    let m = pb::$name::decode(payload)?;
                    let f = Fields(stringify!($name));
                    Ok(Event::$name {
                        $($field: Stored::load(f, stringify!($stored), m.$stored)?),*
                    })
                })*
                unknown => Err(unknown_event_type(unknown)),
            }
        }
    };
}

crate::domain::vocabulary::event_table!(define_codec);

/// The error for an event type this version does not know (its name
/// truncated to [`EVENT_TYPE_CHARS_MAX`] characters).
fn unknown_event_type(event_type: &str) -> CodecError {
    CodecError::UnknownEventType(event_type.chars().take(EVENT_TYPE_CHARS_MAX).collect())
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
