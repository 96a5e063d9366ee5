#![warn(missing_docs)]
//! The pure rules of the registry: commands become events, events rebuild
//! the state of a case, and the state yields a person's derived status.
//!
//! One event stream is one person's case file. Callers load a stream's
//! events, fold them with [`CaseState::apply`], ask [`CaseState::decide`]
//! whether a [`Command`] is allowed on `today`, append the returned
//! [`Event`]s atomically, and derive statistics with [`person_status()`].
//!
//! Code map:
//! - [`date`] — [`Date`], a civil date with Hinnant's day arithmetic.
//! - [`calendar`] — Colombian business days: holidays as data
//!   (`holidays_co.tsv`, Ley 51 de 1983), deadlines in business days.
//! - [`types`] — closed vocabularies with stable stored codes, [`AgeBand`],
//!   [`DocumentSet`].
//! - [`divipola`] — department and municipality codes.
//! - [`codes`], [`sealed`] — inline codes and opaque personal data.
//! - [`channels`] — channels as data ([`ChannelCatalog`]).
//! - [`policy`] — instruments as events of the `policy` stream and the
//!   catalog in force on a date ([`PolicyBook`], `policy_genesis.json`).
//! - [`event`], [`command`] — the facts and the requests.
//! - [`case`], [`records`] — [`CaseState`], its stages and read-side parts.
//! - `apply.rs` — `apply`, folding events into state ([`Stage::after`]).
//! - `decide/` — `decide`, the transition rules.
//! - [`person_status`](mod@person_status) — [`person_status()`](fn@person_status).
//! - [`error`] — [`Rejection`], [`CatalogError`].
//!
//! Invariants:
//! - No I/O, no clock, no randomness, no async: time comes in as arguments,
//!   so every decision can be replayed and simulated dates are as good as real.
//! - `apply` never fails and never refuses: the log is the truth.
//! - The rules never match on a channel code: everything channel-specific
//!   comes from [`ChannelCatalog`].
//! - Personal identifying data only appears as [`Sealed`] bytes; clear-text
//!   strings are restricted to codes (no free text that could hold a name).
//! - Erasure is permanent: an erased state holds no sealed data and refuses
//!   every command that carries some.

mod apply;
pub mod calendar;
pub mod case;
pub mod channels;
pub mod codes;
pub mod command;
pub mod date;
mod decide;
pub mod divipola;
pub mod error;
pub mod event;
pub mod family;
pub mod next;
pub mod person_status;
pub mod policy;
pub mod records;
pub mod sealed;
pub mod types;
pub(crate) mod vocabulary;

#[cfg(test)]
mod tests;

pub use case::{CaseState, Stage, EXITED, NO_CASE};
pub use channels::{ChannelCatalog, ChannelRules, DayCount, InForce, LinkedPermitRule, Validity, Window};
pub use codes::{ChannelCode, CountryCode, ICAO_NATIONALITY_CODES, ISO_3166_VERSION};
pub use command::Command;
pub use date::{age_on, Date};
pub use decide::{AGE_YEARS_MAX, BIRTH_YEAR_MIN, SUBJECT_REQUESTS_MAX};
pub use divipola::{Department, Municipality, MunicipalityKind, DEPARTMENTS, DIVIPOLA_VERSION};
pub use error::{CatalogError, Rejection};
pub use event::{Event, EVENT_TYPES};
pub use family::{FamilyLink, LinkEndReason, LinkEvidence, LinkRole, LinkedCases, FAMILY_LINKS_MAX};
pub use person_status::person_status;
pub use policy::{Instrument, InstrumentKind, PolicyBook, PolicyEvent, PolicyRules, POLICY_STREAM};
pub use records::{
    AppealDecision, Application, Cancellation, CardState, Certification, CertificationStage, Denial, Exit,
    Interim, Milestones, Permit, Person, SubjectRequest, Survey, Visa,
};
pub use sealed::{BiometricRef, Sealed};
pub use types::{
    AgeBand, CancellationGround, CertificationRoute, DenialReason, DocumentSet, DocumentType, DuplicateCause,
    EligibilityBasis, ExitKind, PermitType, PersonStatus, Sector, Sex, SubjectRequestKind, ADULT_AGE_YEARS,
};
