//! Events: the facts recorded in a case's stream, and the only input of
//! [`CaseState::apply`](super::CaseState::apply).
//!
//! One stream is one person's case file: the person, one application at a
//! time, the permit it led to, certifications, exit and erasure. Personal
//! identifying data is never in clear: it travels as [`Sealed`] bytes.
//! Everything statistics need (sex, birth year and month, DIVIPOLA codes,
//! channel, dates, reason codes) stays readable.
//!
//! Every event carries its business date `on` (or `applied_on`): the date the
//! fact happened, which the log's own write time does not replace.

use serde::{Deserialize, Serialize};

use super::codes::{ChannelCode, CountryCode};
use super::date::Date;
use super::divipola::{Department, Municipality};
use super::family::{LinkEndReason, LinkEvidence, LinkRole};
use super::sealed::{BiometricRef, Field, Sealed};
use super::types::{
    CancellationGround, CertificationRoute, DenialReason, DocumentType, DuplicateCause, EligibilityBasis,
    ExitKind, PermitType, Sector, Sex, SubjectRequestKind,
};

/// Generates [`Event`], [`EVENT_TYPES`], [`Event::event_type`] and
/// [`Event::on`] from the rows of
/// [`event_table!`](super::vocabulary::event_table) (the stored-field column
/// is the codec's).
macro_rules! define_events {
    ($(
        $(#[$meta:meta])*
        $name:ident ($date:ident) { $( $(#[$fmeta:meta])* $field:ident : $ty:ty => $stored:ident ),* $(,)? }
    )*) => {
        /// A fact about one case. Serde uses the variant name as tag, which equals
        /// [`Event::event_type`].
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Event {
            $(
                $(#[$meta])*
                $name { $( $(#[$fmeta])* $field: $ty ),* },
            )*
        }

        /// Every event type name, in declaration order; the log's `event_type` field
        /// holds one of these.
        pub const EVENT_TYPES: [&str; [$(stringify!($name)),*].len()] = [$(stringify!($name)),*];

        impl Event {
            /// The stable type name stored with the event in the log (`PermitIssued`).
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Event::$name { .. } => stringify!($name),)*
                }
            }

            /// The business date of the fact.
            pub fn on(&self) -> Date {
                match self {
                    $(Event::$name { $date, .. } => *$date,)*
                }
            }

            /// The sealed personal data the event carries, if any (its field
            /// of type [`Sealed`]): what the `pii` module must have sealed,
            /// and what erasure makes unreadable.
            pub fn sealed(&self) -> Option<&Sealed> {
                match self {
                    $(Event::$name { $($field),* } => None$(.or(Field::as_sealed($field)))*,)*
                }
            }
        }
    };
}

super::vocabulary::event_table!(define_events);

impl Event {}
