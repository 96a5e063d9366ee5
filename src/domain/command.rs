//! Commands: what a caseworker or supervisor asks to happen to a case.
//!
//! A command is a request, not a fact: [`CaseState::decide`](super::CaseState::decide)
//! checks it against the case and the channel rules and either refuses it or
//! turns it into events. Every command carries `on`, the business date the
//! step happened (which may be in the past, never after the `today` given to
//! `decide`). Identifiers the system assigns (application and certification
//! ids) are not in commands: `decide` allocates them.

use serde::{Deserialize, Serialize};

use super::codes::{ChannelCode, CountryCode};
use super::date::Date;
use super::divipola::{Department, Municipality};
use super::family::{LinkEndReason, LinkEvidence, LinkRole};
use super::sealed::{BiometricRef, Field, Sealed};
use super::types::{
    CancellationGround, CertificationRoute, DenialReason, DocumentType, DuplicateCause, EligibilityBasis,
    ExitKind, Sector, Sex, SubjectRequestKind,
};

/// Generates [`Command`], its names and its traits from the `rows` view of
/// [`command_table!`](super::vocabulary::command_table) (the wire columns
/// are not read here).
macro_rules! define_commands {
    (
        { }
        $(
            $group:ident [
                $(
                    ([$(#[$meta:meta])*] $name:ident $rules:ident $rpc:ident $request:ident $who:ident
                        [$($trait_:ident)*] [$($event:ident)?]
                        { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* })
                )*
            ]
        )*
    ) => {
        /// A request to change one case. Field meanings match the event each command
        /// produces (see [`Event`](super::Event)).
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Command {
            $($(
                $(#[$meta])*
                $name { $( $(#[$fmeta])* $field: $ty ),* },
            )*)*
        }

        impl Command {
            /// Every command's name, in table order.
            pub const NAMES: &'static [&'static str] = &[$($(stringify!($name),)*)*];

            /// The command's stable name, used in rejections (`DeliverCard`).
            pub fn name(&self) -> &'static str {
                match self {
                    $($(Command::$name { .. } => stringify!($name),)*)*
                }
            }

            /// The business date the command claims.
            pub fn on(&self) -> Date {
                match self {
                    $($(Command::$name { on, .. })|*)|* => *on,
                }
            }

            /// The `decide` module that holds the command's rule.
            pub fn rules(&self) -> Rules {
                match self {
                    $($(Command::$name { .. } => Rules::$rules,)*)*
                }
            }

            /// The event of a row that says `records Event`: its fields are
            /// the command's, value for value (the compiler checks that the
            /// two field lists are the same). `None` for the other rows,
            /// whose rule builds its events itself.
            pub(crate) fn recorded(&self) -> Option<super::Event> {
                match self {
                    $($(Command::$name { $($field),* } => recorded_event!([$($event)?] $($field)*),)*)*
                }
            }

            /// Whether the command has a field of type [`Sealed`].
            fn has_sealed_field(&self) -> bool {
                match self {
                    $($(Command::$name { $($field),* } => false $(|| Field::as_sealed($field).is_some())*,)*)*
                }
            }

            /// The traits of the command's row (a row names only those it has).
            #[allow(clippy::needless_update)]
            fn traits(&self) -> Traits {
                match self {
                    $($(Command::$name { .. } => Traits { $($trait_: true,)* ..Traits::NONE },)*)*
                }
            }
        }
    };
}

/// The body of [`Command::recorded`]'s arm for one row: the event with the
/// command's fields, or `None` for a row without `records`.
macro_rules! recorded_event {
    ([] $($field:ident)*) => {{
        $(let _ = $field;)*
        None
    }};
    ([$event:ident] $($field:ident)*) => {
        Some(super::Event::$event { $($field: Clone::clone($field)),* })
    };
}

super::vocabulary::command_table!(rows => define_commands);

/// Where the rule of a command is (the table's `in` column): which part of
/// [`decide`](super::CaseState::decide) decides it once the checks common to
/// every command passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// The person: registration, rectification, residence, exit, erasure
    /// (`decide/mod.rs`).
    Person,
    /// The application up to its decision and appeal (`decide/application.rs`).
    Application,
    /// The permit, its card, interim certificate and visa (`decide/permit.rs`).
    Permit,
    /// Worker certifications (`decide/certification.rs`).
    Certification,
    /// A data subject's requests, Ley 1581 (`decide/subject.rs`).
    Subject,
    /// Family links, decided on both cases (`domain/family.rs`).
    Family,
}

/// What a row of the command table says of its command besides its fields.
#[derive(Clone, Copy)]
struct Traits {
    /// `after_erasure`: one of the closing steps of an erased case.
    after_erasure: bool,
}

impl Traits {
    const NONE: Traits = Traits { after_erasure: false };
}

impl Command {
    /// The steps an erased case may still record: how its process ends
    /// (withdrawal of an undecided application, cancellation of a permit or
    /// of an uncollected card, denial of a pending certification) and the
    /// person's exit. None of them carries or produces personal data; an
    /// erased case records nothing that continues its process (Ley 1581 de
    /// 2012: the data was suppressed, so no new decision is taken on it).
    /// The person's own requests under that law also stay open to them
    /// (an erasure is itself the answer to such a claim, and the person may
    /// still ask what is held and who consulted it): none carries personal data.
    pub fn allowed_after_erasure(&self) -> bool {
        self.traits().after_erasure || self.is_subject_request()
    }

    /// Whether the command is one of a data subject's requests (Ley 1581):
    /// accepted in every stage, after an exit and after erasure.
    pub fn is_subject_request(&self) -> bool {
        self.rules() == Rules::Subject
    }

    /// Whether the command carries sealed personal data (never allowed
    /// once the person is erased: it would make them identifiable again).
    pub fn carries_personal_data(&self) -> bool {
        self.has_sealed_field()
    }
}
