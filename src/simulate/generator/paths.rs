//! Path builders: the steps of each [`Path`] laid on a [`Timeline`], and the
//! timeline fitted into the channel's window ([`lay_out`]).

use super::person::Attributes;
use super::rng::Rng;
use super::timeline::{day, from_day, Step, Timeline, P};
use super::{date, Path, CERTIFICATION_SECTORS, ETPV_ADULTS_CLOSE, ETPV_OPENS, PEP_TUTOR_OPENS, TODAY};
use crate::domain::{
    CancellationGround, ChannelCatalog, ChannelCode, ChannelRules, Date, DenialReason, EligibilityBasis,
    Sector,
};

pub(super) const ETPV: &str = "ETPV";
const PEP_TUTOR: &str = "PEP_TUTOR";

/// What the path builders need to know of a person.
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
pub(super) fn etpv_rules() -> &'static ChannelRules {
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
pub(super) fn last_denial_closed_by_today() -> Date {
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

/// A path laid on dates: the steps, the date of each timeline point, and
/// the registration date of a person registered before the path's window.
pub(super) struct Laid {
    /// The path taken: the one drawn, or [`Path::WaitingPreRegistered`] if
    /// the person was born too recently for the whole of it.
    pub(super) path: Path,
    pub(super) dates: Vec<Date>,
    pub(super) steps: Vec<Step>,
    pub(super) register_on: Option<Date>,
}

/// When: lays `path` on a timeline and fits it into its channel's window
/// (PEP-Tutor, adult ETPV pre-registration, or any time up to [`TODAY`]).
pub(super) fn lay_out(rng: &mut Rng, path: Path, who: &Attributes, basis: EligibilityBasis) -> Laid {
    let (adult, birth) = (who.adult, who.birth);
    let person = Person {
        adult,
        basis,
        employable: who.age >= 15,
    };
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
    Laid {
        path,
        dates,
        steps,
        register_on,
    }
}
