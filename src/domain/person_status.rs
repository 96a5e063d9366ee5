//! The derived status of a person: what statistics count.
//!
//! Order of precedence (first match wins):
//! 1. an exit: `NATIONALIZED`, `DEPARTED`, `DECEASED`;
//! 2. superseded by a visa valid on the date (or without end): `REGULAR_VISA`;
//! 3. a permit held and active on the date (not cancelled, `valid_until >= on`):
//!    by permit type, `REGULAR_PPT`, `REGULAR_PEP_TUTOR`, else `REGULAR_OTHER`;
//! 4. an application in process: undecided, approved but not issued, under
//!    appeal, or denied with the appeal window still open: `IN_PROCESS`;
//! 5. anything else (no application, denied for good, withdrawn, permit
//!    cancelled or expired, visa expired): `IRREGULAR`.
//!
//! Statuses are read from the state as recorded: `on` should be on or after
//! the case's latest event (to see the past, rebuild the state up to then).

use super::case::{CaseState, Stage};
use super::date::Date;
use super::types::PersonStatus;

/// The derived status of the person in `state` on `on`. An empty state (no
/// case) is reported as `IRREGULAR`; callers count existing cases only.
pub fn person_status(state: &CaseState, on: Date) -> PersonStatus {
    if let Some(exit) = state.exit() {
        return exit.kind.status();
    }
    match state.stage() {
        Stage::SupersededByVisa => match state.visa() {
            Some(visa) if visa.is_valid_on(on) => PersonStatus::RegularVisa,
            _ => PersonStatus::Irregular,
        },
        stage if stage.is_in(&Stage::PERMIT_HELD) => match state.permit() {
            Some(permit) if permit.is_active_on(on) => permit.permit_type.status(),
            _ => PersonStatus::Irregular,
        },
        _ if state.application_in_process(on).is_some() => PersonStatus::InProcess,
        _ => PersonStatus::Irregular,
    }
}

impl CaseState {
    /// Shorthand for [`person_status`].
    pub fn status_on(&self, on: Date) -> PersonStatus {
        person_status(self, on)
    }
}
