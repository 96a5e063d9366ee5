//! The timeline: points in time joined by sampled gaps, fitted into a window.

use super::rng::Rng;
use super::TODAY;
use crate::domain::{CancellationGround, Date, DenialReason, EligibilityBasis, Sector};

pub(super) type P = usize;

#[derive(Clone, Copy, Debug)]
struct Gap {
    days: i64,
    min: i64,
    stretch: bool,
}

/// What happens at the points of a timeline.
#[derive(Clone, Debug)]
pub(super) enum Step {
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

pub(super) struct Timeline {
    gaps: Vec<Gap>,
    pub(super) steps: Vec<Step>,
}

impl Timeline {
    pub(super) fn new() -> Timeline {
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
    pub(super) fn after(&mut self, rng: &mut Rng, min: i64, max: i64) -> P {
        self.gaps.push(Gap {
            days: rng.range(min, max),
            min,
            stretch: false,
        });
        self.gaps.len() - 1
    }

    /// A new point after a gap that absorbs the slack left in the window.
    pub(super) fn stretch(&mut self) -> P {
        self.gaps.push(Gap {
            days: 0,
            min: 0,
            stretch: true,
        });
        self.gaps.len() - 1
    }

    pub(super) fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// Places point 0 in `[lo, hi]` so that every point is on or before
    /// `end`, compressing gaps towards their minimums if needed; the dates of
    /// all points, or `None` if even the minimums do not fit.
    pub(super) fn fit(
        &mut self,
        rng: &mut Rng,
        lo: Date,
        hi: Date,
        end: Date,
        early: bool,
    ) -> Option<Vec<Date>> {
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

pub(super) fn day(d: Date) -> i64 {
    d.days_since_epoch()
}

pub(super) fn from_day(n: i64) -> Date {
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
