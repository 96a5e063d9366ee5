//! The synthetic caseload: person `i` of seed `s` as a list of commands.
//!
//! [`plan_person`] is a pure function of `(seed, index)`: it draws the
//! person (department, sex, age, documents) from the shares in DOMAIN.md ("A
//! realistic synthetic caseload"), picks the path their case takes (the
//! *intended* outcome), lays the path's steps on a timeline that respects the
//! channel windows and the rules' date constraints, and returns the commands
//! in order, each with a business date on or before [`TODAY`].
//!
//! Outcome shares (per cent of persons, before the few exits):
//!
//! | status | share | paths |
//! |---|---|---|
//! | REGULAR_PPT | 67.7 | delivered 62.6, printed 2.5, issued 2.0, appeal upheld 0.6 |
//! | IN_PROCESS | 12.6 | pre-registered 2.5, appointment pending 2.5, missed 1.3, review 3.3, information 1.3, approved 1.3, appeal 0.4 |
//! | REGULAR_VISA | 2.6 | visa after a PPT 1.0, visa only 1.6 |
//! | REGULAR_PEP_TUTOR | 0 | not simulated: the application needs a linked minor's case (docs/FAMILY_LINKS.md) |
//! | IRREGULAR | 17.1 | never applied 7.9, denied 4.0, appeal rejected 1.1, withdrawn 2.1, card abandoned 1.0, cancelled 1.0 |
//!
//! In La Guajira irregular paths are weighted to 27%, elsewhere to the
//! share that keeps the national figure. Denials are 6.1% of persons (~7% of
//! those who applied); 45% of first biometric appointments are missed.
//! Overlays after the main path: duplicates (4% of delivered cards),
//! residence updates (3%), certifications (2.8% of adults with regular
//! status), exits (0.6%). Names are drawn from short, clearly fictitious lists;
//! document numbers are unique per seed (a bijection of the index).
//!
//! The steps, in the order they draw from the person's generator (the order
//! is part of the output: a change to it changes every plan): `person`
//! draws who the person is, their documents and identity; `paths` lays
//! their path on a `timeline`; `commands` turns its steps into commands;
//! `overlays` adds what may happen after the path.

use crate::cases::Identity;
use crate::domain::{Command, Date, PersonStatus, Sealed, Sector};
use crate::log::Actor;

use super::rng::{self, Rng};

mod commands;
mod overlays;
mod paths;
mod person;
#[cfg(test)]
mod tests;
mod timeline;

const fn date(year: u16, month: u8, day: u8) -> Date {
    match Date::new(year, month, day) {
        Some(d) => d,
        None => panic!("invalid constant date"),
    }
}

/// The decision date of every simulated command, and the date statuses are derived on.
pub const TODAY: Date = date(2025, 12, 31);
/// RUMV pre-registration opened (ETPV).
pub const ETPV_OPENS: Date = date(2021, 5, 5);
/// Adult pre-registration closed (ETPV).
pub const ETPV_ADULTS_CLOSE: Date = date(2023, 11, 24);
/// PEP-Tutor applications open.
pub const PEP_TUTOR_OPENS: Date = date(2025, 9, 1);
/// Most persons one seed can hold with unique document numbers.
pub const PERSONS_MAX: u64 = 100_000_000;

/// Departments (DIVIPOLA code), share in per cent, municipalities (first one
/// 70%): the listed shares of DOMAIN.md, "others 9.6" spread over the rest
/// roughly by their Venezuelan population.
pub const DEPARTMENT_SHARES: [(u8, f64, &[u32]); 33] = [
    (11, 21.2, &[11001]),
    (5, 13.8, &[5001, 5088, 5360]),
    (54, 11.8, &[54001, 54874, 54405]),
    (76, 7.5, &[76001, 76520]),
    (8, 6.8, &[8001, 8758, 8573]),
    (44, 6.3, &[44001, 44430, 44847]),
    (25, 6.0, &[25754, 25286, 25175]),
    (68, 5.5, &[68001, 68276]),
    (47, 3.5, &[47001]),
    (13, 3.5, &[13001]),
    (20, 2.5, &[20001]),
    (81, 2.0, &[81001, 81736]),
    (15, 0.9, &[15001]),
    (17, 0.4, &[17001]),
    (18, 0.2, &[18001]),
    (19, 0.5, &[19001]),
    (23, 0.8, &[23001]),
    (27, 0.2, &[27001]),
    (41, 0.6, &[41001]),
    (50, 1.1, &[50001]),
    (52, 0.7, &[52001]),
    (63, 0.4, &[63001]),
    (66, 0.9, &[66001]),
    (70, 0.8, &[70001]),
    (73, 0.8, &[73001]),
    (85, 0.5, &[85001]),
    (86, 0.3, &[86001]),
    (88, 0.05, &[88001]),
    (91, 0.05, &[91001]),
    (94, 0.1, &[94001]),
    (95, 0.1, &[95001]),
    (97, 0.02, &[97001]),
    (99, 0.18, &[99001]),
];

/// La Guajira, where ~27% are irregular.
pub const LA_GUAJIRA: u8 = 44;
/// Irregular share in La Guajira, per cent.
pub const LA_GUAJIRA_IRREGULAR: f64 = 27.0;

/// Age bands on [`TODAY`]: (youngest, oldest, share in per cent).
pub const AGE_SHARES: [(u32, u32, f64); 7] = [
    (0, 4, 8.0),
    (5, 11, 11.0),
    (12, 17, 9.4),
    (18, 29, 29.0),
    (30, 44, 25.0),
    (45, 59, 12.5),
    (60, 84, 5.1),
];

/// Female share, per cent.
pub const FEMALE_SHARE: f64 = 50.5;

/// Certification sectors and weights (DOMAIN.md).
pub const CERTIFICATION_SECTORS: [(Sector, f64); 8] = [
    (Sector::Commerce, 25.0),
    (Sector::HospitalityTourism, 20.0),
    (Sector::Construction, 15.0),
    (Sector::ManufacturingFood, 12.0),
    (Sector::Administration, 10.0),
    (Sector::BeautyPersonalCare, 8.0),
    (Sector::Technology, 5.0),
    (Sector::Health, 5.0),
];

/// The path a case takes: the generator's intended outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    /// ETPV approved, PPT issued, card printed and delivered.
    PptDelivered,
    /// ETPV approved, PPT issued, card printed, not yet delivered.
    PptPrinted,
    /// ETPV approved, PPT issued, card not yet printed.
    PptIssued,
    /// ETPV denied, appeal upheld, PPT issued and card delivered.
    PptAppealUpheld,
    /// A delivered PPT, later superseded by a visa.
    PptThenVisa,
    /// Registered, then a visa, without an application.
    VisaOnly,
    /// A PEP-Tutor application approved and the permit issued (share 0: see [`PATH_SHARES`]).
    PepTutor,
    /// ETPV pre-registered, nothing since.
    WaitingPreRegistered,
    /// Pre-registered long ago; a biometrics appointment is pending.
    WaitingAppointment,
    /// Pre-registered long ago; the last appointment was missed, none since.
    WaitingAfterMissed,
    /// Biometrics captured; the decision is pending.
    WaitingReview,
    /// Biometrics captured; information was requested and not yet received.
    WaitingInformation,
    /// Approved; the permit is not issued yet.
    WaitingIssue,
    /// Denied; an appeal is filed and undecided.
    WaitingAppeal,
    /// Registered only.
    NeverApplied,
    /// Denied, not appealed.
    DeniedNoAppeal,
    /// Denied, appealed, the appeal rejected.
    DeniedAppealRejected,
    /// Missed three appointments, then withdrew.
    WithdrawnAfterMisses,
    /// Withdrew before biometrics, without missing an appointment.
    WithdrawnVoluntarily,
    /// Approved, PPT issued and printed, the card abandoned.
    CardAbandoned,
    /// Approved, PPT issued and delivered, then cancelled.
    PermitCancelled,
}

/// Paths and their national shares in per cent (sum 100).
pub const PATH_SHARES: [(Path, f64); 21] = [
    (Path::PptDelivered, 62.6),
    (Path::PptPrinted, 2.5),
    (Path::PptIssued, 2.0),
    (Path::PptAppealUpheld, 0.6),
    (Path::PptThenVisa, 1.0),
    (Path::VisaOnly, 1.6),
    // A PEP-Tutor application needs a family link to a minor's case that
    // held a PPT on 2023-12-31 (Decreto 1209/2024): one person's plan cannot
    // record it, so the simulated caseload has no PEP-Tutor holders; their
    // share stays with the irregular guardians who never applied.
    (Path::PepTutor, 0.0),
    (Path::WaitingPreRegistered, 2.5),
    (Path::WaitingAppointment, 2.5),
    (Path::WaitingAfterMissed, 1.3),
    (Path::WaitingReview, 3.3),
    (Path::WaitingInformation, 1.3),
    (Path::WaitingIssue, 1.3),
    (Path::WaitingAppeal, 0.4),
    (Path::NeverApplied, 7.9),
    (Path::DeniedNoAppeal, 4.0),
    (Path::DeniedAppealRejected, 1.1),
    (Path::WithdrawnAfterMisses, 1.3),
    (Path::WithdrawnVoluntarily, 0.8),
    (Path::CardAbandoned, 1.0),
    (Path::PermitCancelled, 1.0),
];

/// Share of adults on [`TODAY`] (for the PEP-Tutor weight: guardians are adults).
const ADULT_SHARE: f64 = 71.6;

impl Path {
    /// The status the path ends in on [`TODAY`] (before any exit).
    pub fn intended(self) -> PersonStatus {
        use Path::*;
        match self {
            PptDelivered | PptPrinted | PptIssued | PptAppealUpheld => PersonStatus::RegularPpt,
            PptThenVisa | VisaOnly => PersonStatus::RegularVisa,
            PepTutor => PersonStatus::RegularPepTutor,
            WaitingPreRegistered | WaitingAppointment | WaitingAfterMissed | WaitingReview
            | WaitingInformation | WaitingIssue | WaitingAppeal => PersonStatus::InProcess,
            NeverApplied | DeniedNoAppeal | DeniedAppealRejected | WithdrawnAfterMisses
            | WithdrawnVoluntarily | CardAbandoned | PermitCancelled => PersonStatus::Irregular,
        }
    }

    pub(super) fn has_delivered_card_at_end(self) -> bool {
        matches!(self, Path::PptDelivered | Path::PptAppealUpheld)
    }

    pub(super) fn is_regular(self) -> bool {
        matches!(
            self.intended(),
            PersonStatus::RegularPpt | PersonStatus::RegularVisa | PersonStatus::RegularPepTutor
        )
    }
}

/// The path weights for a person in `department`, adult or not.
fn path_weights(department: u8, adult: bool) -> [f64; PATH_SHARES.len()] {
    let national_irregular: f64 = PATH_SHARES
        .iter()
        .filter(|(p, _)| p.intended() == PersonStatus::Irregular)
        .map(|(_, w)| w)
        .sum();
    let guajira_share = DEPARTMENT_SHARES
        .iter()
        .find(|d| d.0 == LA_GUAJIRA)
        .map_or(0.0, |d| d.1)
        / 100.0;
    let target_irregular = if department == LA_GUAJIRA {
        LA_GUAJIRA_IRREGULAR
    } else {
        (national_irregular - guajira_share * LA_GUAJIRA_IRREGULAR) / (1.0 - guajira_share)
    };
    let irregular_factor = target_irregular / national_irregular;
    let regular_factor = (100.0 - target_irregular) / (100.0 - national_irregular);
    let mut out = [0.0; PATH_SHARES.len()];
    for (slot, (path, share)) in out.iter_mut().zip(PATH_SHARES.iter()) {
        let mut w = *share;
        if *path == Path::PepTutor {
            w = if adult { w * 100.0 / ADULT_SHARE } else { 0.0 };
        }
        *slot = w * if path.intended() == PersonStatus::Irregular {
            irregular_factor
        } else {
            regular_factor
        };
    }
    out
}

/// One command of a plan and who records it.
#[derive(Clone, Debug)]
pub struct PlannedCommand {
    /// The command; its sealed fields are placeholders the case service
    /// replaces by sealing the plan's clear values.
    pub command: Command,
    /// Who the command is recorded as acting.
    pub actor: Actor,
}

/// One synthetic person and their case, start to finish.
#[derive(Clone, Debug)]
pub struct PersonPlan {
    /// The person's index in the run.
    pub index: u64,
    /// Clear identity (fictitious), sealed by the case service.
    pub identity: Identity,
    /// Clear permit number, if a permit is issued.
    pub permit_number: String,
    /// Clear visa number, if a visa is recorded.
    pub visa_number: String,
    /// The path the case takes.
    pub path: Path,
    /// The status the generator intends on [`TODAY`] (exits included).
    pub intended: PersonStatus,
    /// The commands, in the order they are sent.
    pub commands: Vec<PlannedCommand>,
}

/// The placeholder put in sealed slots of planned commands.
pub fn placeholder_sealed() -> Sealed {
    Sealed(b"sealed-by-the-case-service".to_vec())
}

/// The plan of person `index` of simulation `seed`: a pure function of both.
pub fn plan_person(seed: u64, index: u64) -> PersonPlan {
    let rng = &mut Rng::for_person(seed, index);
    // Who, and what happens.
    let who = person::draw_attributes(rng);
    let path = PATH_SHARES[rng.weighted(&path_weights(who.department.code(), who.adult))].0;
    let basis = person::draw_basis(rng);
    // Documents and identity.
    let kinds = person::document_kinds(rng, &who, basis, path);
    let identity = person::draw_identity(rng, seed, index, &who, &kinds);
    let permit_number = rng.digits(9);
    let visa_number = rng.digits(8);
    // When: lay the path on a timeline.
    let laid = paths::lay_out(rng, path, &who, basis);
    // The commands of the main path, then the overlays after it.
    let mut out = commands::Recorder::with_capacity(laid.steps.len() + 6);
    commands::record_main_path(rng, &mut out, &who, &kinds, &laid);
    let end_of_path = *laid.dates.last().expect("a timeline has a start");
    let intended = overlays::record_overlays(rng, &mut out, &who, laid.path, end_of_path);
    PersonPlan {
        index,
        identity,
        permit_number,
        visa_number,
        path: laid.path,
        intended,
        commands: out.into_commands(),
    }
}
