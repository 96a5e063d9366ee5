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

use crate::cases::{Identity, IdentityDocument};
use crate::domain::{
    CancellationGround, CertificationRoute, ChannelCatalog, ChannelCode, ChannelRules, Command, CountryCode,
    Date, DenialReason, Department, DocumentType, DuplicateCause, EligibilityBasis, ExitKind, Municipality,
    PersonStatus, Sealed, Sector, Sex,
};
use crate::log::Actor;

use super::rng::{mix64, Rng};

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
    PptDelivered,
    PptPrinted,
    PptIssued,
    PptAppealUpheld,
    PptThenVisa,
    VisaOnly,
    PepTutor,
    WaitingPreRegistered,
    WaitingAppointment,
    WaitingAfterMissed,
    WaitingReview,
    WaitingInformation,
    WaitingIssue,
    WaitingAppeal,
    NeverApplied,
    DeniedNoAppeal,
    DeniedAppealRejected,
    WithdrawnAfterMisses,
    WithdrawnVoluntarily,
    CardAbandoned,
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

    fn has_delivered_card_at_end(self) -> bool {
        matches!(self, Path::PptDelivered | Path::PptAppealUpheld)
    }

    fn is_regular(self) -> bool {
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
    pub actor: Actor,
}

/// One synthetic person and their case, start to finish.
#[derive(Clone, Debug)]
pub struct PersonPlan {
    pub index: u64,
    /// Clear identity (fictitious), sealed by the case service.
    pub identity: Identity,
    /// Clear permit number, if a permit is issued.
    pub permit_number: String,
    /// Clear visa number, if a visa is recorded.
    pub visa_number: String,
    pub path: Path,
    /// The status the generator intends on [`TODAY`] (exits included).
    pub intended: PersonStatus,
    pub commands: Vec<PlannedCommand>,
}

/// The placeholder put in sealed slots of planned commands.
pub fn placeholder_sealed() -> Sealed {
    Sealed(b"sealed-by-the-case-service".to_vec())
}

// ---------------------------------------------------------------------------
// The timeline: points in time joined by sampled gaps, fitted into a window.

type P = usize;

#[derive(Clone, Copy, Debug)]
struct Gap {
    days: i64,
    min: i64,
    stretch: bool,
}

/// What happens at the points of a timeline.
#[derive(Clone, Debug)]
enum Step {
    Register(P),
    PreRegister(P, &'static str, EligibilityBasis),
    Survey(P, u8, bool, Option<Sector>),
    Schedule(P, P),
    Missed(P),
    Capture(P),
    RequestInfo(P, &'static str),
    ReceiveInfo(P),
    Approve(P),
    Deny(P, DenialReason),
    FileAppeal(P),
    DecideAppeal(P, bool),
    Withdraw(P),
    Issue(P),
    Interim(P, i64),
    Print(P),
    Deliver(P),
    Abandon(P),
    Cancel(P, CancellationGround),
    /// A visa; `Some(d)`: valid until `d` days after [`TODAY`], `None`: no end.
    Visa(P, Option<i64>),
}

struct Timeline {
    gaps: Vec<Gap>,
    steps: Vec<Step>,
}

impl Timeline {
    fn new() -> Timeline {
        Timeline {
            gaps: vec![Gap {
                days: 0,
                min: 0,
                stretch: false,
            }],
            steps: Vec::new(),
        }
    }

    /// A new point `min..=max` days after the last one.
    fn after(&mut self, rng: &mut Rng, min: i64, max: i64) -> P {
        self.gaps.push(Gap {
            days: rng.range(min, max),
            min,
            stretch: false,
        });
        self.gaps.len() - 1
    }

    /// A new point after a gap that absorbs the slack left in the window.
    fn stretch(&mut self) -> P {
        self.gaps.push(Gap {
            days: 0,
            min: 0,
            stretch: true,
        });
        self.gaps.len() - 1
    }

    fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// Places point 0 in `[lo, hi]` so that every point is on or before
    /// `end`, compressing gaps towards their minimums if needed; the dates of
    /// all points, or `None` if even the minimums do not fit.
    fn fit(&mut self, rng: &mut Rng, lo: Date, hi: Date, end: Date, early: bool) -> Option<Vec<Date>> {
        let (lo, hi, end) = (day(lo), day(hi), day(end));
        if lo > end || hi < lo {
            return None;
        }
        let fixed: i64 = self.gaps.iter().filter(|g| !g.stretch).map(|g| g.days).sum();
        let mins: i64 = self.gaps.iter().filter(|g| !g.stretch).map(|g| g.min).sum();
        let latest = hi.min(end - fixed);
        let start = if latest >= lo {
            pick_start(rng, lo, latest, early)
        } else {
            let avail = end - lo;
            if avail < mins {
                return None;
            }
            let (extra_total, extra_avail) = (fixed - mins, avail - mins);
            for g in self.gaps.iter_mut().filter(|g| !g.stretch) {
                g.days = g.min + (g.days - g.min) * extra_avail / extra_total.max(1);
            }
            lo
        };
        let used: i64 = self.gaps.iter().filter(|g| !g.stretch).map(|g| g.days).sum();
        let mut slack = (end - start - used).max(0);
        for g in self.gaps.iter_mut().filter(|g| g.stretch) {
            g.days = rng.range(0, slack);
            slack -= g.days;
        }
        let mut at = start;
        let mut dates = Vec::with_capacity(self.gaps.len());
        for g in &self.gaps {
            at += g.days;
            dates.push(from_day(at));
        }
        Some(dates)
    }
}

fn day(d: Date) -> i64 {
    d.days_since_epoch()
}

fn from_day(n: i64) -> Date {
    Date::from_days(n).unwrap_or(TODAY)
}

/// A start day in `[lo, hi]`; `early` follows the RUMV rush (most
/// pre-registrations in the first months).
fn pick_start(rng: &mut Rng, lo: i64, hi: i64, early: bool) -> i64 {
    if early && hi - lo > 600 {
        match rng.weighted(&[45.0, 35.0, 20.0]) {
            0 => rng.range(lo, lo + 300),
            1 => rng.range(lo + 300, lo + 600),
            _ => rng.range(lo, hi),
        }
    } else {
        rng.range(lo, hi)
    }
}

// ---------------------------------------------------------------------------
// Path builders.

const ETPV: &str = "ETPV";
const PEP_TUTOR: &str = "PEP_TUTOR";

struct Person {
    adult: bool,
    basis: EligibilityBasis,
    employable: bool,
}

fn survey(rng: &mut Rng, t: &mut Timeline, person: &Person, p: f64) {
    if !rng.chance(p) {
        return;
    }
    let at = t.after(rng, 0, 3);
    let household = [1u8, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 6, 7, 8][rng.below(14) as usize];
    let employed = person.employable && rng.chance(if person.adult { 0.6 } else { 0.1 });
    let sector = if employed {
        let mut weights: Vec<f64> = CERTIFICATION_SECTORS.iter().map(|s| s.1).collect();
        weights.push(25.0);
        let k = rng.weighted(&weights);
        Some(CERTIFICATION_SECTORS.get(k).map_or(Sector::Other, |s| s.0))
    } else {
        None
    };
    t.push(Step::Survey(at, household, employed, sector));
}

/// Register and pre-register on point 0, then the survey.
fn etpv_start(rng: &mut Rng, t: &mut Timeline, person: &Person, survey_p: f64) {
    t.push(Step::Register(0));
    t.push(Step::PreRegister(0, ETPV, person.basis));
    survey(rng, t, person, survey_p);
}

/// Gives an appointment `gap` days after the last point; returns its day.
fn schedule(rng: &mut Rng, t: &mut Timeline, gap: (i64, i64)) -> P {
    let given = t.after(rng, gap.0, gap.1);
    let appointment = t.after(rng, 7, 60);
    t.push(Step::Schedule(given, appointment));
    appointment
}

fn miss(rng: &mut Rng, t: &mut Timeline) {
    let at = t.after(rng, 0, 2);
    t.push(Step::Missed(at));
}

/// Appointments until the capture: 45% miss the first, 20% the second.
fn biometrics(rng: &mut Rng, t: &mut Timeline, first_gap: (i64, i64)) {
    let mut appointment = schedule(rng, t, first_gap);
    let mut misses = 0;
    while misses < 2 && rng.chance(if misses == 0 { 0.45 } else { 0.2 }) {
        miss(rng, t);
        misses += 1;
        appointment = schedule(rng, t, (3, 60));
    }
    t.push(Step::Capture(appointment));
}

/// Review after the capture (sometimes asking for information); returns the decision point.
fn review(rng: &mut Rng, t: &mut Timeline, information_p: f64) -> P {
    if rng.chance(information_p) {
        let asked = t.after(rng, 10, 45);
        let reason = *rng.pick(&[
            "DOC_INCONSISTENCY",
            "PHOTO_QUALITY",
            "ADDRESS_UNVERIFIED",
            "MISSING_DOCUMENT",
        ]);
        t.push(Step::RequestInfo(asked, reason));
        let received = t.after(rng, 5, 40);
        t.push(Step::ReceiveInfo(received));
    }
    t.after(rng, 10, 90)
}

fn denial_reason(rng: &mut Rng) -> DenialReason {
    const REASONS: [(DenialReason, f64); 6] = [
        (DenialReason::CriminalRecord, 30.0),
        (DenialReason::Annotation, 25.0),
        (DenialReason::OpenProceedings, 15.0),
        (DenialReason::FalseInformation, 15.0),
        (DenialReason::Ineligible, 10.0),
        (DenialReason::Other, 5.0),
    ];
    REASONS[rng.weighted(&REASONS.map(|r| r.1))].0
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CardStop {
    Issued,
    Printed,
    Delivered,
}

fn issue(rng: &mut Rng, t: &mut Timeline, stop: CardStop) {
    let issued = t.after(rng, 0, 14);
    t.push(Step::Issue(issued));
    if rng.chance(0.10) {
        let days = rng.range(30, 90);
        t.push(Step::Interim(issued, days));
    }
    if stop >= CardStop::Printed {
        let printed = t.after(rng, 7, 60);
        t.push(Step::Print(printed));
        if stop >= CardStop::Delivered {
            let delivered = t.after(rng, 7, 90);
            t.push(Step::Deliver(delivered));
        }
    }
}

/// A full ETPV path up to the approval.
fn approved(rng: &mut Rng, t: &mut Timeline, person: &Person) {
    etpv_start(rng, t, person, 0.92);
    biometrics(rng, t, (7, 120));
    let decided = review(rng, t, 0.10);
    t.push(Step::Approve(decided));
}

/// A full ETPV path up to a denial.
fn denied(rng: &mut Rng, t: &mut Timeline, person: &Person) {
    etpv_start(rng, t, person, 0.92);
    biometrics(rng, t, (7, 120));
    let decided = review(rng, t, 0.15);
    t.push(Step::Deny(decided, denial_reason(rng)));
}

/// The ETPV rules of the genesis instruments: the appeal window plans are
/// laid in ([`ChannelRules::appeal_until`], the rule the domain decides with).
fn etpv_rules() -> &'static ChannelRules {
    static RULES: std::sync::OnceLock<ChannelRules> = std::sync::OnceLock::new();
    RULES.get_or_init(|| {
        let code = ChannelCode::parse(ETPV).expect("known channel code");
        ChannelCatalog::builtin()
            .get(code)
            .expect("the builtin catalog holds ETPV")
            .clone()
    })
}

/// The last day a denial may be decided for its appeal window to be
/// closed on [`TODAY`] (the case then no longer counts as in process).
fn last_denial_closed_by_today() -> Date {
    static LAST: std::sync::OnceLock<Date> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        let mut on = TODAY.add_days(-1);
        while etpv_rules().appeal_until(on) >= TODAY {
            on = on.add_days(-1);
        }
        on
    })
}

/// An appeal filed 1 to `appeal_window_days` calendar days after the
/// denial: inside the window however it is counted (the `n`th business day
/// after a date is never before the `n`th calendar day after it).
fn appeal(rng: &mut Rng, t: &mut Timeline, decided: Option<bool>) {
    let window = i64::from(etpv_rules().appeal_window_days);
    let filed = t.after(rng, 1, window);
    t.push(Step::FileAppeal(filed));
    if let Some(upheld) = decided {
        let at = t.after(rng, 20, 90);
        t.push(Step::DecideAppeal(at, upheld));
    }
}

/// Pre-registered long ago, then a wait (the stretch) before biometrics.
fn waiting_start(rng: &mut Rng, t: &mut Timeline, person: &Person) {
    etpv_start(rng, t, person, 0.9);
    t.stretch();
}

fn build_path(rng: &mut Rng, t: &mut Timeline, path: Path, person: &Person) {
    use Path::*;
    match path {
        PptDelivered | PptPrinted | PptIssued => {
            approved(rng, t, person);
            let stop = match path {
                PptDelivered => CardStop::Delivered,
                PptPrinted => CardStop::Printed,
                _ => CardStop::Issued,
            };
            issue(rng, t, stop);
        }
        PptAppealUpheld => {
            denied(rng, t, person);
            appeal(rng, t, Some(true));
            issue(rng, t, CardStop::Delivered);
        }
        PptThenVisa => {
            approved(rng, t, person);
            issue(rng, t, CardStop::Delivered);
            let at = t.after(rng, 180, 900);
            let end = (!rng.chance(0.7)).then(|| rng.range(200, 1000));
            t.push(Step::Visa(at, end));
        }
        VisaOnly => {
            t.push(Step::Register(0));
            let at = t.after(rng, 0, 400);
            let end = (!rng.chance(0.5)).then(|| rng.range(30, 1500));
            t.push(Step::Visa(at, end));
        }
        PepTutor => {
            t.push(Step::PreRegister(0, PEP_TUTOR, EligibilityBasis::GuardianOfMinor));
            survey(rng, t, person, 0.9);
            let appointment = {
                let given = t.after(rng, 0, 10);
                let at = t.after(rng, 3, 20);
                t.push(Step::Schedule(given, at));
                at
            };
            let appointment = if rng.chance(0.2) {
                let missed = t.after(rng, 0, 1);
                t.push(Step::Missed(missed));
                let given = t.after(rng, 1, 7);
                let at = t.after(rng, 3, 14);
                t.push(Step::Schedule(given, at));
                at
            } else {
                appointment
            };
            t.push(Step::Capture(appointment));
            let decided = t.after(rng, 3, 30);
            t.push(Step::Approve(decided));
            let issued = t.after(rng, 0, 7);
            t.push(Step::Issue(issued));
        }
        WaitingPreRegistered => etpv_start(rng, t, person, 0.8),
        WaitingAppointment => {
            waiting_start(rng, t, person);
            schedule(rng, t, (0, 30));
            if rng.chance(0.45) {
                miss(rng, t);
                schedule(rng, t, (3, 60));
            }
        }
        WaitingAfterMissed => {
            waiting_start(rng, t, person);
            schedule(rng, t, (0, 30));
            miss(rng, t);
            if rng.chance(0.3) {
                schedule(rng, t, (3, 60));
                miss(rng, t);
            }
        }
        WaitingReview | WaitingInformation | WaitingIssue | WaitingAppeal => {
            waiting_start(rng, t, person);
            biometrics(rng, t, (0, 30));
            match path {
                WaitingReview => {}
                WaitingInformation => {
                    let asked = t.after(rng, 10, 45);
                    t.push(Step::RequestInfo(asked, "DOC_INCONSISTENCY"));
                }
                WaitingIssue => {
                    let decided = review(rng, t, 0.10);
                    t.push(Step::Approve(decided));
                }
                _ => {
                    let decided = review(rng, t, 0.15);
                    t.push(Step::Deny(decided, denial_reason(rng)));
                    appeal(rng, t, None);
                }
            }
        }
        NeverApplied => t.push(Step::Register(0)),
        DeniedNoAppeal => denied(rng, t, person),
        DeniedAppealRejected => {
            denied(rng, t, person);
            appeal(rng, t, Some(false));
        }
        WithdrawnAfterMisses => {
            etpv_start(rng, t, person, 0.85);
            schedule(rng, t, (7, 120));
            miss(rng, t);
            schedule(rng, t, (3, 60));
            miss(rng, t);
            schedule(rng, t, (3, 60));
            miss(rng, t);
            let at = t.after(rng, 1, 60);
            t.push(Step::Withdraw(at));
        }
        WithdrawnVoluntarily => {
            etpv_start(rng, t, person, 0.7);
            let gap = if rng.chance(0.5) {
                schedule(rng, t, (7, 120));
                (0, 30)
            } else {
                (5, 200)
            };
            let at = t.after(rng, gap.0, gap.1);
            t.push(Step::Withdraw(at));
        }
        CardAbandoned => {
            approved(rng, t, person);
            issue(rng, t, CardStop::Printed);
            let at = t.after(rng, 90, 200);
            t.push(Step::Abandon(at));
        }
        PermitCancelled => {
            approved(rng, t, person);
            issue(rng, t, CardStop::Delivered);
            let at = t.after(rng, 60, 700);
            const GROUNDS: [(CancellationGround, f64); 5] = [
                (CancellationGround::AbsenceOver180Days, 40.0),
                (CancellationGround::CriminalRecord, 30.0),
                (CancellationGround::ExpulsionOrDeportation, 15.0),
                (CancellationGround::FalseInformation, 10.0),
                (CancellationGround::SecurityRisk, 5.0),
            ];
            let ground = GROUNDS[rng.weighted(&GROUNDS.map(|g| g.1))].0;
            t.push(Step::Cancel(at, ground));
        }
    }
}

// ---------------------------------------------------------------------------
// Person attributes.

const GIVEN_FEMALE: [&str; 10] = [
    "Ana",
    "Maria",
    "Luisa",
    "Carmen",
    "Rosa",
    "Elena",
    "Sofia",
    "Valentina",
    "Daniela",
    "Gabriela",
];
const GIVEN_MALE: [&str; 10] = [
    "Jose", "Luis", "Carlos", "Juan", "Pedro", "Miguel", "Andres", "Jorge", "Diego", "Rafael",
];
/// Clearly fictitious family names.
const FAMILY: [&str; 8] = [
    "Ficticio",
    "Ejemplo",
    "Prueba",
    "Simulado",
    "Muestra",
    "Inventado",
    "Modelo",
    "Sintetico",
];

/// A document number unique among the persons of one seed: an affine
/// bijection of the index modulo `10^width`.
fn document_number(seed: u64, index: u64, kind: DocumentType) -> String {
    let (modulus, multiplier, width, prefix, salt): (u64, u64, usize, &str, u64) = match kind {
        DocumentType::VenezuelanCedula => (100_000_000, 73_812_649, 8, "V", 1),
        DocumentType::Passport => (1_000_000_000, 512_345_679, 9, "", 2),
        DocumentType::BirthCertificate => (10_000_000_000, 7_777_777_771, 10, "", 3),
        DocumentType::Pep => (1_000_000_000, 987_654_323, 9, "", 4),
        _ => (100_000_000, 24_681_357, 8, "", 5),
    };
    let offset = mix64(seed ^ salt.wrapping_mul(0x1000_0000_01b3)) % modulus;
    let n = ((u128::from(index) * u128::from(multiplier) + u128::from(offset)) % u128::from(modulus)) as u64;
    format!("{prefix}{n:0width$}")
}

fn municipality_of(rng: &mut Rng, k: usize) -> (Department, Municipality) {
    let (code, _, municipalities) = DEPARTMENT_SHARES[k];
    let m = if municipalities.len() == 1 || rng.chance(0.7) {
        municipalities[0]
    } else {
        municipalities[1 + rng.below(municipalities.len() as u64 - 1) as usize]
    };
    let department = Department::new(code).expect("table holds valid departments");
    let municipality = Municipality::new(m).expect("table holds valid municipalities");
    (department, municipality)
}

fn pick_department(rng: &mut Rng) -> usize {
    rng.weighted(&DEPARTMENT_SHARES.map(|d| d.1))
}

#[derive(Clone, Copy)]
enum Role {
    Caseworker,
    Supervisor,
    Certifier,
}

fn actor(rng: &mut Rng, department: Department, role: Role) -> Actor {
    let (office, user) = match role {
        Role::Caseworker => (
            format!("CFSM-{department}"),
            format!("sim-cfsm-{department}-agent{}", 1 + rng.below(8)),
        ),
        Role::Supervisor => (
            format!("CFSM-{department}"),
            format!("sim-cfsm-{department}-supervisor{}", 1 + rng.below(2)),
        ),
        Role::Certifier => (
            format!("SENA-{department}"),
            format!("sim-sena-{department}-agent{}", 1 + rng.below(4)),
        ),
    };
    Actor {
        user_id: user,
        office,
    }
}

/// The plan of person `index` of simulation `seed`: a pure function of both.
pub fn plan_person(seed: u64, index: u64) -> PersonPlan {
    let rng = &mut Rng::for_person(seed, index);

    // Who.
    let dept_k = pick_department(rng);
    let (department, municipality) = municipality_of(rng, dept_k);
    let sex = if rng.unit() * 100.0 < FEMALE_SHARE {
        Sex::Female
    } else {
        Sex::Male
    };
    let band = rng.weighted(&AGE_SHARES.map(|a| a.2));
    let age = rng.range(i64::from(AGE_SHARES[band].0), i64::from(AGE_SHARES[band].1)) as u32;
    let birth_year = TODAY.year() - age as u16;
    let birth_month = 1 + rng.below(12) as u8;
    let birth_day = 1 + rng.below(28) as u8;
    let birth = Date::new(birth_year, birth_month, birth_day).expect("valid birth date");
    let adult = age >= 18;

    // What happens.
    let path = PATH_SHARES[rng.weighted(&path_weights(department.code(), adult))].0;
    const BASES: [(EligibilityBasis, f64); 7] = [
        (EligibilityBasis::Pep, 35.0),
        (EligibilityBasis::IrregularOn20210131, 35.0),
        (EligibilityBasis::RegularEntry2021To2023, 15.0),
        (EligibilityBasis::Pip, 5.0),
        (EligibilityBasis::Ptp, 5.0),
        (EligibilityBasis::PepFf, 3.0),
        (EligibilityBasis::Sc2AsylumSeeker, 2.0),
    ];
    let basis = BASES[rng.weighted(&BASES.map(|b| b.1))].0;
    let person = Person {
        adult,
        basis,
        employable: age >= 15,
    };

    // Documents.
    let mut kinds = Vec::new();
    if age <= 11 {
        kinds.push(DocumentType::BirthCertificate);
    } else if !adult {
        kinds.push(if rng.chance(0.5) {
            DocumentType::VenezuelanCedula
        } else {
            DocumentType::BirthCertificate
        });
    } else {
        kinds.push(if rng.chance(0.88) {
            DocumentType::VenezuelanCedula
        } else {
            DocumentType::Passport
        });
        if rng.chance(0.2) && !kinds.contains(&DocumentType::Passport) {
            kinds.push(DocumentType::Passport);
        }
        if matches!(basis, EligibilityBasis::Pep | EligibilityBasis::PepFf) && path != Path::PepTutor {
            kinds.push(DocumentType::Pep);
        }
    }
    if path == Path::VisaOnly {
        if !kinds.contains(&DocumentType::Passport) {
            kinds.push(DocumentType::Passport);
        }
        kinds.push(DocumentType::Visa);
    }
    let documents: Vec<IdentityDocument> = kinds
        .iter()
        .map(|k| IdentityDocument {
            doc_type: k.as_str().to_string(),
            number: document_number(seed, index, *k),
        })
        .collect();
    let given = match sex {
        Sex::Female => rng.pick(&GIVEN_FEMALE),
        _ => rng.pick(&GIVEN_MALE),
    };
    let identity = Identity {
        given_names: (*given).to_string(),
        family_names: format!("{} {}", rng.pick(&FAMILY), rng.pick(&FAMILY)),
        birth_date: birth.to_string(),
        documents,
        phone: format!("+57 3{}", rng.digits(9)),
        email: format!("persona.{}@ejemplo.invalid", rng.digits(8)),
        address: format!(
            "Calle ficticia {} # {}-{}",
            1 + rng.below(200),
            1 + rng.below(99),
            1 + rng.below(99)
        ),
    };
    let permit_number = rng.digits(9);
    let visa_number = rng.digits(8);

    // When: lay the path on a timeline.
    let mut t = Timeline::new();
    let mut register_on = None;
    if path == Path::PepTutor && rng.chance(0.5) {
        let lo = day(ETPV_OPENS.max(birth));
        register_on = Some(from_day(rng.range(lo, day(PEP_TUTOR_OPENS) - 1)));
    } else if path == Path::PepTutor {
        t.push(Step::Register(0));
    }
    build_path(rng, &mut t, path, &person);
    let applies_etpv = !matches!(path, Path::NeverApplied | Path::VisaOnly | Path::PepTutor);
    let (lo, hi, early) = match path {
        Path::PepTutor => (PEP_TUTOR_OPENS, date(2025, 11, 30), false),
        _ if applies_etpv && adult => (ETPV_OPENS.max(birth), ETPV_ADULTS_CLOSE, true),
        _ => (ETPV_OPENS.max(birth), TODAY, false),
    };
    let end = if path == Path::DeniedNoAppeal {
        last_denial_closed_by_today()
    } else {
        TODAY
    };
    let (path, dates, steps) = match t.fit(rng, lo, hi, end, early) {
        Some(dates) => (path, dates, t.steps),
        None => {
            // Too recent a birth for the whole path: the case is still in process.
            let mut t = Timeline::new();
            t.push(Step::Register(0));
            t.push(Step::PreRegister(0, ETPV, basis));
            let hi = if adult { ETPV_ADULTS_CLOSE } else { TODAY };
            let dates = t.fit(rng, lo, hi, TODAY, false).expect("a single day fits");
            (Path::WaitingPreRegistered, dates, t.steps)
        }
    };

    // The commands of the main path.
    let site = format!("CFSM-{department}-S{}", 1 + rng.below(3));
    let operator = format!("OP-{department}-{:03}", rng.below(1000));
    let at = |p: P| dates[p];
    let mut commands = Vec::with_capacity(steps.len() + 6);
    let mut push = |rng: &mut Rng, department: Department, role: Role, command: Command| {
        commands.push(PlannedCommand {
            command,
            actor: actor(rng, department, role),
        })
    };
    let register = |on: Date| Command::RegisterPerson {
        on,
        identity: placeholder_sealed(),
        sex,
        birth_year,
        birth_month,
        nationality: CountryCode::VEN,
        department,
        municipality,
        documents: kinds.clone(),
    };
    if let Some(on) = register_on {
        push(rng, department, Role::Caseworker, register(on));
    }
    for step in &steps {
        use Role::*;
        let (role, command) = match step.clone() {
            Step::Register(p) => (Caseworker, register(at(p))),
            Step::PreRegister(p, channel, basis) => (
                Caseworker,
                Command::PreRegister {
                    on: at(p),
                    channel: ChannelCode::parse(channel).expect("known channel code"),
                    basis,
                },
            ),
            Step::Survey(p, household_size, employed, sector) => (
                Caseworker,
                Command::CompleteSurvey {
                    on: at(p),
                    household_size,
                    employed,
                    sector,
                },
            ),
            Step::Schedule(p, q) => (
                Caseworker,
                Command::ScheduleBiometrics {
                    on: at(p),
                    appointment_on: at(q),
                    site: site.clone(),
                },
            ),
            Step::Missed(p) => (Caseworker, Command::RecordMissedAppointment { on: at(p) }),
            Step::Capture(p) => (
                Caseworker,
                Command::RecordBiometricCapture {
                    on: at(p),
                    site: site.clone(),
                    operator: operator.clone(),
                    biometric_ref: rng.bytes32(),
                },
            ),
            Step::RequestInfo(p, reason) => (
                Caseworker,
                Command::RequestInformation {
                    on: at(p),
                    reason: reason.to_string(),
                },
            ),
            Step::ReceiveInfo(p) => (Caseworker, Command::ReceiveInformation { on: at(p) }),
            Step::Approve(p) => (Supervisor, Command::Approve { on: at(p) }),
            Step::Deny(p, reason) => (Supervisor, Command::Deny { on: at(p), reason }),
            Step::FileAppeal(p) => (Caseworker, Command::FileAppeal { on: at(p) }),
            Step::DecideAppeal(p, upheld) => (Supervisor, Command::DecideAppeal { on: at(p), upheld }),
            Step::Withdraw(p) => (Caseworker, Command::Withdraw { on: at(p) }),
            Step::Issue(p) => (
                Supervisor,
                Command::IssuePermit {
                    on: at(p),
                    permit_number: placeholder_sealed(),
                    valid_until: None,
                },
            ),
            Step::Interim(p, days) => (
                Caseworker,
                Command::IssueInterimCertificate {
                    on: at(p),
                    valid_until: at(p).add_days(days),
                },
            ),
            Step::Print(p) => (Caseworker, Command::PrintCard { on: at(p) }),
            Step::Deliver(p) => (Caseworker, Command::DeliverCard { on: at(p) }),
            Step::Abandon(p) => (Supervisor, Command::AbandonCard { on: at(p) }),
            Step::Cancel(p, ground) => (Supervisor, Command::CancelPermit { on: at(p), ground }),
            Step::Visa(p, end) => (
                Caseworker,
                Command::SupersedeByVisa {
                    on: at(p),
                    visa_number: placeholder_sealed(),
                    valid_until: end.map(|d| TODAY.add_days(d)),
                },
            ),
        };
        push(rng, department, role, command);
    }

    // Overlays after the main path, in date order.
    let mut cur = *dates.last().expect("a timeline has a start");
    let mut department = department;
    if path.has_delivered_card_at_end() && rng.chance(0.04) {
        let room = day(TODAY) - 60 - day(cur);
        if room >= 30 {
            let requested = cur.add_days(rng.range(30, room.min(700)));
            const CAUSES: [(DuplicateCause, f64); 4] = [
                (DuplicateCause::Loss, 50.0),
                (DuplicateCause::Theft, 25.0),
                (DuplicateCause::Damage, 15.0),
                (DuplicateCause::DataCorrection, 10.0),
            ];
            let cause = CAUSES[rng.weighted(&CAUSES.map(|c| c.1))].0;
            let issued = requested.add_days(rng.range(10, 45));
            let delivered = issued.add_days(rng.range(5, 15));
            push(
                rng,
                department,
                Role::Caseworker,
                Command::RequestDuplicate { on: requested, cause },
            );
            push(
                rng,
                department,
                Role::Caseworker,
                Command::IssueDuplicate { on: issued },
            );
            push(
                rng,
                department,
                Role::Caseworker,
                Command::DeliverCard { on: delivered },
            );
            cur = delivered;
        }
    }
    if rng.chance(0.03) {
        let on = cur.add_days(rng.range(0, (day(TODAY) - day(cur)) / 2));
        let k = pick_department(rng);
        let (new_department, new_municipality) = municipality_of(rng, k);
        department = new_department;
        push(
            rng,
            department,
            Role::Caseworker,
            Command::UpdateResidence {
                on,
                department: new_department,
                municipality: new_municipality,
            },
        );
        cur = on;
    }
    if adult && path.is_regular() && rng.chance(0.028) {
        let adult_from = Date::new(birth_year + 18, birth_month, 1).expect("valid date");
        let lo = cur.max(adult_from);
        if lo <= TODAY {
            let requested = lo.add_days(rng.range(0, (day(TODAY) - day(lo)) * 2 / 3));
            let sector = CERTIFICATION_SECTORS[rng.weighted(&CERTIFICATION_SECTORS.map(|s| s.1))].0;
            let route = [
                CertificationRoute::SenaCompetency,
                CertificationRoute::DegreeRecognition,
                CertificationRoute::ProfessionalLicence,
            ][rng.weighted(&[85.0, 10.0, 5.0])];
            push(
                rng,
                department,
                Role::Certifier,
                Command::RequestCertification {
                    on: requested,
                    route,
                    sector,
                },
            );
            cur = requested;
            let assessed = requested.add_days(rng.range(30, 120));
            if assessed <= TODAY {
                let passed = rng.chance(0.85);
                push(
                    rng,
                    department,
                    Role::Certifier,
                    Command::AssessCertification {
                        certification_id: 1,
                        on: assessed,
                        passed,
                    },
                );
                cur = assessed;
                let decided = assessed.add_days(rng.range(7, 60));
                if decided <= TODAY {
                    let command = if passed {
                        let (standard_code, issuing_body) = standard(route, sector);
                        Command::AwardCertification {
                            certification_id: 1,
                            on: decided,
                            standard_code: standard_code.to_string(),
                            issuing_body: issuing_body.to_string(),
                        }
                    } else {
                        Command::DenyCertification {
                            certification_id: 1,
                            on: decided,
                            reason: "ASSESSMENT_FAILED".to_string(),
                        }
                    };
                    push(rng, department, Role::Certifier, command);
                    cur = decided;
                }
            }
        }
    }
    let mut intended = path.intended();
    if rng.chance(0.006) {
        let on = cur.add_days(rng.range(0, day(TODAY) - day(cur)));
        let kind = [ExitKind::Departed, ExitKind::Deceased, ExitKind::Nationalized]
            [rng.weighted(&[75.0, 10.0, 15.0])];
        push(
            rng,
            department,
            Role::Caseworker,
            Command::RecordExit {
                on,
                kind,
                destination: departure_destination(kind, on),
            },
        );
        intended = kind.status();
    }

    PersonPlan {
        index,
        identity,
        permit_number,
        visa_number,
        path,
        intended,
        commands,
    }
}

/// Synthetic standard code and issuing body of an awarded certification.
fn standard(route: CertificationRoute, sector: Sector) -> (&'static str, &'static str) {
    match route {
        CertificationRoute::SenaCompetency => (
            match sector {
                Sector::Commerce => "NCL-SIM-210601",
                Sector::HospitalityTourism => "NCL-SIM-260101",
                Sector::Construction => "NCL-SIM-280201",
                Sector::ManufacturingFood => "NCL-SIM-230101",
                Sector::Administration => "NCL-SIM-210301",
                Sector::BeautyPersonalCare => "NCL-SIM-250203",
                Sector::Technology => "NCL-SIM-220501",
                Sector::Health => "NCL-SIM-230102",
                Sector::Other => "NCL-SIM-000000",
            },
            "SENA",
        ),
        CertificationRoute::DegreeRecognition => ("CONVALIDACION-120D", "MEN"),
        CertificationRoute::ProfessionalLicence => ("LICENCIA-PROFESIONAL", "CONSEJO-PROFESIONAL"),
    }
}

/// The destination recorded for a departure: derived from the exit date's
/// day (no random draw, so the rest of the simulation is unchanged): one in
/// seven not known, the others back to Venezuela or onwards to Peru,
/// Ecuador, Chile, the United States or Spain.
fn departure_destination(kind: ExitKind, on: Date) -> Option<CountryCode> {
    if kind != ExitKind::Departed {
        return None;
    }
    [
        None,
        Some("VEN"),
        Some("PER"),
        Some("ECU"),
        Some("CHL"),
        Some("USA"),
        Some("ESP"),
    ][usize::from(on.day()) % 7]
        .and_then(CountryCode::parse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{person_status, CaseState, ChannelCatalog};

    #[test]
    fn shares_sum_to_one_hundred() {
        let paths: f64 = PATH_SHARES.iter().map(|p| p.1).sum();
        let departments: f64 = DEPARTMENT_SHARES.iter().map(|d| d.1).sum();
        let ages: f64 = AGE_SHARES.iter().map(|a| a.2).sum();
        assert!((paths - 100.0).abs() < 1e-9, "{paths}");
        assert!((departments - 100.0).abs() < 1e-9, "{departments}");
        assert!((ages - 100.0).abs() < 1e-9, "{ages}");
        for (code, _, municipalities) in DEPARTMENT_SHARES {
            let d = Department::new(code).unwrap();
            for m in municipalities {
                assert_eq!(Municipality::new(*m).unwrap().department(), d);
            }
        }
        let guajira = path_weights(LA_GUAJIRA, true);
        let irregular: f64 = PATH_SHARES
            .iter()
            .zip(guajira)
            .filter(|((p, _), _)| p.intended() == PersonStatus::Irregular)
            .map(|(_, w)| w)
            .sum();
        let total: f64 = guajira.iter().sum();
        assert!((irregular / total * 100.0 - 27.0).abs() < 0.5);
    }

    #[test]
    fn plans_are_deterministic_and_documents_unique() {
        let a = plan_person(9, 41);
        let b = plan_person(9, 41);
        assert_eq!(a.identity, b.identity);
        assert_eq!(
            a.commands.iter().map(|c| &c.command).collect::<Vec<_>>(),
            b.commands.iter().map(|c| &c.command).collect::<Vec<_>>()
        );
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            for kind in [DocumentType::VenezuelanCedula, DocumentType::BirthCertificate] {
                assert!(seen.insert(document_number(3, i, kind)));
            }
        }
    }

    /// Intended shares over many plans (no store): the targets of the table above.
    #[test]
    fn intended_shares_match_the_targets() {
        let n = 60_000u64;
        let mut by_status = std::collections::HashMap::new();
        let (mut guajira, mut guajira_irregular, mut minors) = (0u64, 0u64, 0u64);
        for i in 0..n {
            let plan = plan_person(5, i);
            *by_status.entry(plan.intended).or_insert(0u64) += 1;
            let Command::RegisterPerson {
                department,
                birth_year,
                ..
            } = plan.commands[0].command
            else {
                panic!("plans start with a registration")
            };
            if department.code() == LA_GUAJIRA {
                guajira += 1;
                guajira_irregular += u64::from(plan.intended == PersonStatus::Irregular);
            }
            minors += u64::from(TODAY.year() - birth_year < 18);
        }
        let share = |s: PersonStatus| by_status.get(&s).copied().unwrap_or(0) as f64 * 100.0 / n as f64;
        let guajira_share = guajira_irregular as f64 * 100.0 / guajira as f64;
        let minor_share = minors as f64 * 100.0 / n as f64;
        eprintln!(
            "PPT {:.2} IN_PROCESS {:.2} VISA {:.2} PEP_TUTOR {:.2} IRREGULAR {:.2} guajira irregular {guajira_share:.2} minors {minor_share:.2}",
            share(PersonStatus::RegularPpt),
            share(PersonStatus::InProcess),
            share(PersonStatus::RegularVisa),
            share(PersonStatus::RegularPepTutor),
            share(PersonStatus::Irregular),
        );
        assert!((share(PersonStatus::RegularPpt) - 67.7).abs() < 1.0);
        assert!((share(PersonStatus::InProcess) - 12.6).abs() < 1.0);
        assert!((share(PersonStatus::RegularVisa) - 2.6).abs() < 0.5);
        assert!((share(PersonStatus::Irregular) - 17.1).abs() < 1.0);
        assert_eq!(share(PersonStatus::RegularPepTutor), 0.0);
        assert!((guajira_share - 27.0).abs() < 2.5);
        assert!((minor_share - 28.4).abs() < 1.0);
    }

    /// A denial that is not appealed must have its window closed on
    /// TODAY: 10 business days after Monday 2025-12-15 end on Tuesday
    /// 2025-12-30 (Christmas, Thursday 25, does not count); a denial on
    /// 2025-12-16 could still be appealed on 2025-12-31.
    #[test]
    fn unappealed_denials_are_decided_before_the_window_that_ends_today() {
        assert_eq!(last_denial_closed_by_today(), date(2025, 12, 15));
        assert_eq!(etpv_rules().appeal_until(date(2025, 12, 15)), date(2025, 12, 30));
        assert_eq!(etpv_rules().appeal_until(date(2025, 12, 16)), TODAY);
    }

    /// Every plan is accepted by the pure rules command by command, in date
    /// order, and ends in the intended status (no store involved).
    #[test]
    fn plans_obey_the_rules_and_reach_the_intended_status() {
        let catalog = ChannelCatalog::builtin();
        let mut mismatched = 0;
        for i in 0..30_000 {
            let plan = plan_person(17, i);
            let mut state = CaseState::default();
            for c in &plan.commands {
                let events = state
                    .decide(&c.command, TODAY, &catalog)
                    .unwrap_or_else(|e| panic!("person {i} {:?} {}: {e}", plan.path, c.command.name()));
                for e in &events {
                    state.apply(e);
                }
            }
            if person_status(&state, TODAY) != plan.intended {
                mismatched += 1;
            }
        }
        assert_eq!(mismatched, 0);
    }
}
