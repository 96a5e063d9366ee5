//! Regularization channels as data.
//!
//! Each way into regular status (ETPV/PPT, PEP-Tutor, Visa V, SC-2) is a
//! [`ChannelRules`] record: which eligibility bases it accepts, when it takes
//! applications, how long its permit lasts, whether it can be extended. The
//! rules code never matches on a channel code; a new channel or a changed
//! date is a data change (an instrument recorded in the policy stream, see
//! [`crate::domain::policy`]), not a release.

use serde::{Deserialize, Serialize};

use super::codes::ChannelCode;
use super::date::Date;
use super::error::CatalogError;
use super::types::{EligibilityBasis, PermitType};

/// Most channels a catalog may hold.
pub const CHANNELS_MAX: usize = 64;
/// Most application windows one channel may have.
pub const WINDOWS_MAX: usize = 16;
/// Longest permit validity a channel may declare, in months.
pub const VALIDITY_MONTHS_MAX: u16 = 240;

/// How long a permit issued through a channel lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Validity {
    /// Valid to a fixed date whatever the issue date (the statute's end).
    Until(Date),
    /// Valid for this many months from the issue date.
    Months(u16),
}

/// How a legal term given in days is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DayCount {
    /// Every calendar day counts: the term ends `n` days after the event.
    /// What rules written before the count was stated mean.
    #[default]
    Calendar,
    /// Colombian business days (días hábiles, [`super::calendar`]): the
    /// term ends on the `n`th business day after the event, the day of the
    /// event not counted.
    Business,
}

impl DayCount {
    /// The last day of a term of `days` counted this way from `from`
    /// (`from` itself never counts).
    pub fn add(self, from: Date, days: u16) -> Date {
        match self {
            DayCount::Calendar => from.add_days(i64::from(days)),
            DayCount::Business => super::calendar::add_business_days(from, u32::from(days)),
        }
    }

    /// The stored name: `CALENDAR` or `BUSINESS`.
    pub fn as_str(self) -> &'static str {
        match self {
            DayCount::Calendar => "CALENDAR",
            DayCount::Business => "BUSINESS",
        }
    }

    fn is_calendar(&self) -> bool {
        *self == DayCount::Calendar
    }
}

/// One application window of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// First day applications are taken (`None`: open since always).
    pub opens_on: Option<Date>,
    /// Last day adults may apply (`None`: no end).
    pub closes_on: Option<Date>,
    /// Last day minors may still apply after `closes_on` (ETPV: minors in
    /// school or in ICBF programmes until 2031).
    pub minors_close_on: Option<Date>,
}

impl Window {
    /// Whether an application on `on` (by a minor or not) is inside the window.
    fn admits(&self, on: Date, is_minor: bool) -> bool {
        if self.opens_on.is_some_and(|opens| on < opens) {
            return false;
        }
        match (self.closes_on, self.minors_close_on) {
            (Some(closes), _) if on <= closes => true,
            (Some(_), Some(minors_close)) => is_minor && on <= minors_close,
            (Some(_), None) => false,
            (None, _) => true,
        }
    }

    /// The last day anyone may apply in this window (`None`: no end).
    fn last_day(&self) -> Option<Date> {
        match (self.closes_on, self.minors_close_on) {
            (_, Some(minors)) => Some(minors),
            (closes, None) => closes,
        }
    }

    fn check(&self) -> Result<(), String> {
        if let (Some(opens), Some(closes)) = (self.opens_on, self.closes_on) {
            if closes < opens {
                return Err("closes before it opens".into());
            }
        }
        if let Some(minors_close) = self.minors_close_on {
            match self.closes_on {
                Some(closes) if minors_close >= closes => {}
                _ => return Err("minors_close_on needs a closes_on on or before it".into()),
            }
        }
        Ok(())
    }
}

/// Why [`ChannelRules::check_window`] refuses an application date.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The channel was repealed by the instrument `by` from `on`.
    #[error("{channel} was repealed by {by} from {on}")]
    Repealed {
        /// The channel applied to.
        channel: ChannelCode,
        /// The repealing instrument.
        by: String,
        /// The first day it no longer applies.
        on: Date,
    },
    /// The window closed, for minors too.
    #[error("{channel} closed on {closes}, and for minors on {minors_close}")]
    ClosedForMinors {
        /// The channel applied to.
        channel: ChannelCode,
        /// The last day for adults.
        closes: Date,
        /// The last day for minors.
        minors_close: Date,
    },
    /// The window closed.
    #[error("{channel} closed on {closes}")]
    Closed {
        /// The channel applied to.
        channel: ChannelCode,
        /// The window's last day.
        closes: Date,
    },
    /// No window has opened yet.
    #[error("{channel} opens on {opens}")]
    NotYetOpen {
        /// The channel applied to.
        channel: ChannelCode,
        /// The first window's first day.
        opens: Date,
    },
    /// No window admits the date, and none is found before it.
    #[error("{channel} is not open on {on}")]
    NotOpen {
        /// The channel applied to.
        channel: ChannelCode,
        /// The date of the application.
        on: Date,
    },
}

/// Everything the rules need to know about one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "ChannelRulesDocument")]
pub struct ChannelRules {
    /// Stable code stored in `PreRegistered` events.
    pub code: ChannelCode,
    /// Human-readable description, for operators.
    pub name: String,
    /// The legal source and what is still to confirm, for auditors.
    pub source: String,
    /// The instrument granted, which decides the regular status it gives.
    pub permit_type: PermitType,
    /// Eligibility bases the channel accepts.
    pub bases: Vec<EligibilityBasis>,
    /// When applications are taken: one or more windows, in date order and
    /// not overlapping (a reopening is a second window, not a new channel).
    pub windows: Vec<Window>,
    /// Default validity of the permit.
    pub validity: Validity,
    /// Whether the permit's validity may be extended.
    pub extendable: bool,
    /// How many extensions one permit may receive.
    pub extensions_max: u8,
    /// Whether a person may hold a permit of this channel only once (Visa V).
    pub once_per_person: bool,
    /// Whether a card is printed and delivered in person (and can therefore
    /// be abandoned, duplicated, or waited for with an interim certificate).
    pub physical_card: bool,
    /// Days after printing after which an uncollected card may be declared
    /// abandoned (`None`: never).
    pub card_uncollected_days: Option<u16>,
    /// Longest validity of an interim certificate (certificado de trámite)
    /// issued while the card is awaited, in days (`None`: none is issued).
    pub interim_days_max: Option<u16>,
    /// Days the authority has to decide after biometric capture (`None`: no
    /// legal deadline); reported, not enforced.
    pub decision_days: Option<u16>,
    /// Days after a denial during which an appeal may be filed, counted
    /// as [`ChannelRules::appeal_window_count`] says.
    pub appeal_window_days: u16,
    /// How the appeal window is counted. Left out of the stored JSON when
    /// `CALENDAR`, so rules written before the field existed (which meant
    /// calendar days) keep their bytes, their content hash and their meaning.
    #[serde(default, skip_serializing_if = "DayCount::is_calendar")]
    pub appeal_window_count: DayCount,
    /// Missed biometric appointments after which no new one is scheduled
    /// (the application is then abandoned and should be withdrawn).
    pub missed_appointments_max: u8,
    /// Eligibility that rests on a linked case (PEP-Tutor: the guardian of
    /// a minor who held a PPT on 31 Dec 2023, Decreto 1209/2024); `None`:
    /// none. Left out of the stored JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_permit: Option<LinkedPermitRule>,
    /// Set by the policy book, never stored in the rules: the instrument
    /// that set these rules and the policy event (seq) that recorded it.
    #[serde(skip)]
    pub in_force: Option<InForce>,
}

/// An application through the channel needs an active family link of
/// `role` (from the applicant) to a case whose person was a minor on
/// `held_on` and whose derived status on that date was the one
/// `permit_type` gives (its events up to that date, `status.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkedPermitRule {
    /// The applicant's role in the link (`GUARDIAN_OF`).
    pub role: super::family::LinkRole,
    /// The permit the linked minor held (`PPT`).
    pub permit_type: PermitType,
    /// The date it was held on (`2023-12-31`).
    pub held_on: Date,
}

impl LinkedPermitRule {
    /// The rule code of a refusal: `PEP_TUTOR_NO_ELIGIBLE_MINOR`.
    pub fn rule_code(&self) -> &'static str {
        "PEP_TUTOR_NO_ELIGIBLE_MINOR"
    }
}

/// Where a channel's rules in force come from (see [`crate::domain::policy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InForce {
    /// The instrument (resolution, decree) that set the rules.
    pub instrument: String,
    /// The seq of the policy event that recorded it.
    pub seq: u64,
    /// The day the rules took effect.
    pub since: Date,
    /// The day a repeal closed the channel to new applications, and the
    /// repealing instrument.
    pub repealed: Option<(Date, String)>,
}

/// The stored form of [`ChannelRules`]: `windows`, or (catalog version 1)
/// the single window's `opens_on`/`closes_on`/`minors_close_on` inline.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelRulesDocument {
    code: ChannelCode,
    name: String,
    source: String,
    permit_type: PermitType,
    bases: Vec<EligibilityBasis>,
    #[serde(default)]
    windows: Option<Vec<Window>>,
    #[serde(default)]
    opens_on: Option<Date>,
    #[serde(default)]
    closes_on: Option<Date>,
    #[serde(default)]
    minors_close_on: Option<Date>,
    validity: Validity,
    extendable: bool,
    extensions_max: u8,
    once_per_person: bool,
    physical_card: bool,
    card_uncollected_days: Option<u16>,
    interim_days_max: Option<u16>,
    decision_days: Option<u16>,
    appeal_window_days: u16,
    #[serde(default)]
    appeal_window_count: DayCount,
    missed_appointments_max: u8,
    #[serde(default)]
    linked_permit: Option<LinkedPermitRule>,
}

impl TryFrom<ChannelRulesDocument> for ChannelRules {
    type Error = String;

    fn try_from(d: ChannelRulesDocument) -> Result<ChannelRules, String> {
        let inline = d.opens_on.is_some() || d.closes_on.is_some() || d.minors_close_on.is_some();
        let windows = match d.windows {
            Some(_) if inline => {
                return Err(format!(
                    "channel {}: either windows or opens_on/closes_on/minors_close_on, not both",
                    d.code
                ))
            }
            Some(windows) => windows,
            None => vec![Window {
                opens_on: d.opens_on,
                closes_on: d.closes_on,
                minors_close_on: d.minors_close_on,
            }],
        };
        Ok(ChannelRules {
            code: d.code,
            name: d.name,
            source: d.source,
            permit_type: d.permit_type,
            bases: d.bases,
            windows,
            validity: d.validity,
            extendable: d.extendable,
            extensions_max: d.extensions_max,
            once_per_person: d.once_per_person,
            physical_card: d.physical_card,
            card_uncollected_days: d.card_uncollected_days,
            interim_days_max: d.interim_days_max,
            decision_days: d.decision_days,
            appeal_window_days: d.appeal_window_days,
            appeal_window_count: d.appeal_window_count,
            missed_appointments_max: d.missed_appointments_max,
            linked_permit: d.linked_permit,
            in_force: None,
        })
    }
}

impl ChannelRules {
    /// Whether the channel accepts `basis`.
    pub fn accepts(&self, basis: EligibilityBasis) -> bool {
        self.bases.contains(&basis)
    }

    /// Whether an application on `applied_on` is inside one of the channel's
    /// windows (with the minors' extension) and the channel is not repealed
    /// by then; `Err` says why not.
    pub fn check_window(&self, applied_on: Date, is_minor: bool) -> Result<(), WindowError> {
        if let Some((on, by)) = self.in_force.as_ref().and_then(|f| f.repealed.as_ref()) {
            if applied_on >= *on {
                return Err(WindowError::Repealed {
                    channel: self.code,
                    by: by.clone(),
                    on: *on,
                });
            }
        }
        if self.windows.iter().any(|w| w.admits(applied_on, is_minor)) {
            return Ok(());
        }
        // The nearest window before or after, to say why.
        let after = self
            .windows
            .iter()
            .filter_map(|w| w.opens_on)
            .find(|opens| *opens > applied_on);
        let before = self
            .windows
            .iter()
            .rev()
            .find(|w| w.opens_on.is_none_or(|opens| opens <= applied_on));
        let not_open = WindowError::NotOpen {
            channel: self.code,
            on: applied_on,
        };
        match (before, after) {
            (Some(w), _) => match (w.closes_on, w.minors_close_on) {
                (Some(closes), Some(minors_close)) if is_minor => Err(WindowError::ClosedForMinors {
                    channel: self.code,
                    closes,
                    minors_close,
                }),
                (Some(closes), _) => Err(WindowError::Closed {
                    channel: self.code,
                    closes,
                }),
                (None, _) => Err(not_open),
            },
            (None, Some(opens)) => Err(WindowError::NotYetOpen {
                channel: self.code,
                opens,
            }),
            (None, None) => Err(not_open),
        }
    }

    /// The windows as they stand on `on`: the window admitting applications
    /// then, else the next one to open, else the last one.
    pub fn window_on(&self, on: Date) -> Option<&Window> {
        self.windows
            .iter()
            .find(|w| w.opens_on.is_none_or(|o| o <= on) && w.last_day().is_none_or(|l| on <= l))
            .or_else(|| self.windows.iter().find(|w| w.opens_on.is_some_and(|o| o > on)))
            .or(self.windows.last())
    }

    /// The validity end of a permit issued on `issued_on` with default validity.
    pub fn default_valid_until(&self, issued_on: Date) -> Date {
        match self.validity {
            Validity::Until(end) => end,
            Validity::Months(months) => issued_on.add_months(i64::from(months)),
        }
    }

    /// The furthest one extension may push a validity ending on `current`:
    /// one more validity period, or the channel's fixed end.
    pub fn extension_limit(&self, current: Date) -> Date {
        match self.validity {
            Validity::Until(end) => end,
            Validity::Months(months) => current.add_months(i64::from(months)),
        }
    }

    /// The last day an appeal (recurso de reposición or apelación) may be
    /// filed against a denial decided on `decided_on`: the appeal window
    /// counted from the day after the decision. Every reader of the rule
    /// (the denial's recorded `appeal_until`, the simulator's plans) goes
    /// through here.
    pub fn appeal_until(&self, decided_on: Date) -> Date {
        self.appeal_window_count.add(decided_on, self.appeal_window_days)
    }

    /// The decision deadline for a review that started on `review_started_on`.
    pub fn decision_due(&self, review_started_on: Date) -> Option<Date> {
        self.decision_days
            .map(|days| review_started_on.add_days(i64::from(days)))
    }

    fn check(&self) -> Result<(), String> {
        if self.bases.is_empty() {
            return Err("accepts no eligibility basis".into());
        }
        if self.windows.is_empty() || self.windows.len() > WINDOWS_MAX {
            return Err(format!("a channel has 1..={WINDOWS_MAX} windows"));
        }
        for w in &self.windows {
            w.check()?;
        }
        for pair in self.windows.windows(2) {
            match (pair[0].last_day(), pair[1].opens_on) {
                (Some(last), Some(next)) if last < next => {}
                _ => return Err("windows must be in date order and must not overlap".into()),
            }
        }
        if let Validity::Months(months) = self.validity {
            if months == 0 || months > VALIDITY_MONTHS_MAX {
                return Err(format!("validity months must be 1..={VALIDITY_MONTHS_MAX}"));
            }
        }
        if self.extendable != (self.extensions_max > 0) {
            return Err("extendable must match extensions_max > 0".into());
        }
        if !self.physical_card && (self.card_uncollected_days.is_some() || self.interim_days_max.is_some()) {
            return Err("card_uncollected_days or interim_days_max without a physical card".into());
        }
        if self.missed_appointments_max == 0 {
            return Err("missed_appointments_max must be at least 1".into());
        }
        if let Some(rule) = &self.linked_permit {
            if !rule.role.is_requestable() {
                return Err("linked_permit.role must be GUARDIAN_OF, PARENT_OF or DEPENDANT_OF".into());
            }
            if !self.bases.contains(&EligibilityBasis::GuardianOfMinor)
                && rule.role == super::family::LinkRole::GuardianOf
            {
                return Err("linked_permit GUARDIAN_OF needs the GUARDIAN_OF_MINOR basis".into());
            }
        }
        Ok(())
    }
}

/// The catalog document as stored.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CatalogDocument {
    version: u32,
    channels: Vec<ChannelRules>,
}

/// All channels the registry knows, validated. Rules look channels up here
/// by the code an application carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelCatalog {
    channels: Vec<ChannelRules>,
}

impl ChannelCatalog {
    /// Builds a catalog, checking codes are unique and each channel's data
    /// is consistent.
    pub fn new(channels: Vec<ChannelRules>) -> Result<ChannelCatalog, CatalogError> {
        let rule = |channel: &str, reason: String| CatalogError::Rule {
            channel: channel.into(),
            reason,
        };
        if channels.is_empty() || channels.len() > CHANNELS_MAX {
            return Err(rule("", format!("a catalog holds 1..={CHANNELS_MAX} channels")));
        }
        for (i, channel) in channels.iter().enumerate() {
            channel
                .check()
                .map_err(|reason| rule(channel.code.as_str(), reason))?;
            if channels[..i].iter().any(|other| other.code == channel.code) {
                return Err(rule(channel.code.as_str(), "duplicate code".into()));
            }
        }
        Ok(ChannelCatalog { channels })
    }

    /// Parses and validates a catalog document (`{"version": 1, "channels": [...]}`).
    pub fn from_json(text: &str) -> Result<ChannelCatalog, CatalogError> {
        let document: CatalogDocument = serde_json::from_str(text)?;
        if document.version != 1 {
            return Err(CatalogError::UnsupportedVersion(document.version));
        }
        ChannelCatalog::new(document.channels)
    }

    /// Checks each channel and that codes are unique, allowing an empty
    /// catalog (no channel in force yet on some date).
    pub fn in_force(channels: Vec<ChannelRules>) -> Result<ChannelCatalog, CatalogError> {
        if channels.is_empty() {
            return Ok(ChannelCatalog { channels });
        }
        ChannelCatalog::new(channels)
    }

    /// A catalog from channels already checked (the policy book's).
    pub(crate) fn trusted(channels: Vec<ChannelRules>) -> ChannelCatalog {
        ChannelCatalog { channels }
    }

    /// The channels of the genesis instruments shipped with the build
    /// (DOMAIN.md's four channels, `policy_genesis.json`) with every
    /// instrument in force: what a new store starts from. Its validity is
    /// proven by a test, so this cannot fail at run time.
    pub fn builtin() -> ChannelCatalog {
        let mut book = super::policy::PolicyBook::default();
        for (i, event) in super::policy::PolicyBook::genesis().into_iter().enumerate() {
            book.apply(i as u64 + 1, event);
        }
        book.catalog_on(Date::MAX, u64::MAX)
    }

    /// Serializes the catalog back to its document form.
    pub fn to_json(&self) -> String {
        let document = CatalogDocument {
            version: 1,
            channels: self.channels.clone(),
        };
        serde_json::to_string_pretty(&document).unwrap_or_default()
    }

    /// The rules of channel `code`, if known.
    pub fn get(&self, code: ChannelCode) -> Option<&ChannelRules> {
        self.channels.iter().find(|channel| channel.code == code)
    }

    /// Every channel, in document order.
    pub fn channels(&self) -> &[ChannelRules] {
        &self.channels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    fn code(text: &str) -> ChannelCode {
        ChannelCode::parse(text).unwrap()
    }

    #[test]
    fn builtin_catalog_holds_the_four_channels() {
        let catalog = ChannelCatalog::builtin();
        let codes: Vec<&str> = catalog.channels().iter().map(|c| c.code.as_str()).collect();
        assert_eq!(codes, ["ETPV", "PEP_TUTOR", "VISA_V", "SC2"]);
        let etpv = catalog.get(code("ETPV")).unwrap();
        assert_eq!(etpv.permit_type, PermitType::Ppt);
        assert_eq!(etpv.validity, Validity::Until(d("2031-05-30")));
        assert_eq!(etpv.decision_days, Some(90));
        assert!(!etpv.extendable);
        let tutor = catalog.get(code("PEP_TUTOR")).unwrap();
        assert_eq!(tutor.decision_days, Some(30));
        assert_eq!(tutor.bases, [EligibilityBasis::GuardianOfMinor]);
        assert_eq!(
            catalog.get(code("VISA_V")).unwrap().validity,
            Validity::Months(24)
        );
        assert!(catalog.get(code("NOPE")).is_none());
    }

    #[test]
    fn etpv_window_closes_for_adults_but_not_minors() {
        let etpv = ChannelCatalog::builtin().get(code("ETPV")).unwrap().clone();
        assert!(etpv.check_window(d("2021-05-04"), false).is_err());
        assert!(etpv.check_window(d("2021-05-05"), false).is_ok());
        assert!(etpv.check_window(d("2023-11-24"), false).is_ok());
        assert_eq!(
            etpv.check_window(d("2023-11-25"), false)
                .map_err(|e| e.to_string()),
            Err("ETPV closed on 2023-11-24".into())
        );
        assert!(etpv.check_window(d("2025-03-01"), true).is_ok());
        assert!(etpv.check_window(d("2031-05-31"), true).is_err());
    }

    #[test]
    fn a_reopening_is_a_second_window_of_the_same_channel() {
        let mut visa = ChannelCatalog::builtin().get(code("VISA_V")).unwrap().clone();
        visa.windows = vec![
            Window {
                opens_on: Some(d("2024-12-04")),
                closes_on: Some(d("2025-06-30")),
                minors_close_on: None,
            },
            Window {
                opens_on: Some(d("2026-01-01")),
                closes_on: Some(d("2026-03-31")),
                minors_close_on: None,
            },
        ];
        ChannelCatalog::new(vec![visa.clone()]).unwrap();
        assert!(visa.check_window(d("2025-06-30"), false).is_ok());
        assert_eq!(
            visa.check_window(d("2025-07-01"), false)
                .map_err(|e| e.to_string()),
            Err("VISA_V closed on 2025-06-30".into())
        );
        assert!(visa.check_window(d("2026-02-01"), false).is_ok());
        assert_eq!(
            visa.check_window(d("2024-01-01"), false)
                .map_err(|e| e.to_string()),
            Err("VISA_V opens on 2024-12-04".into())
        );
        assert_eq!(
            visa.window_on(d("2025-09-01")).unwrap().opens_on,
            Some(d("2026-01-01"))
        );
        // The version-1 catalog form (one inline window) is still read.
        let v1 = r#"{"version": 1, "channels": [{"code": "X", "name": "x", "source": "s",
            "permit_type": "PPT", "bases": ["PIP"], "opens_on": "2021-01-01", "closes_on": null,
            "minors_close_on": null, "validity": {"months": 6}, "extendable": false,
            "extensions_max": 0, "once_per_person": false, "physical_card": false,
            "card_uncollected_days": null, "interim_days_max": null, "decision_days": null,
            "appeal_window_days": 10, "missed_appointments_max": 3}]}"#;
        let c = ChannelCatalog::from_json(v1).unwrap();
        assert_eq!(c.channels()[0].windows.len(), 1);
        // Written before the appeal window's count existed: calendar days.
        assert_eq!(c.channels()[0].appeal_window_count, DayCount::Calendar);
    }

    #[test]
    fn the_appeal_window_is_counted_as_the_rules_say() {
        let mut etpv = ChannelCatalog::builtin().get(code("ETPV")).unwrap().clone();
        assert_eq!(etpv.appeal_window_count, DayCount::Business);
        // Wednesday 2025-12-24: 26, 29, 30, 31 December, 2, 5, 6, 7, 8, 9
        // January (Christmas, New Year and Monday 12 January excluded).
        assert_eq!(etpv.appeal_until(d("2025-12-24")), d("2026-01-09"));
        etpv.appeal_window_count = DayCount::Calendar;
        assert_eq!(etpv.appeal_until(d("2025-12-24")), d("2026-01-03"));
        // The stored form names the count only when it is not CALENDAR.
        let json = serde_json::to_string(&etpv).unwrap();
        assert!(!json.contains("appeal_window_count"), "{json}");
        etpv.appeal_window_count = DayCount::Business;
        let json = serde_json::to_string(&etpv).unwrap();
        assert!(
            json.contains(r#""appeal_window_days":10,"appeal_window_count":"BUSINESS""#),
            "{json}"
        );
    }

    #[test]
    fn validity_is_fixed_or_counted_from_issue() {
        let catalog = ChannelCatalog::builtin();
        let etpv = catalog.get(code("ETPV")).unwrap();
        assert_eq!(etpv.default_valid_until(d("2022-01-10")), d("2031-05-30"));
        let visa = catalog.get(code("VISA_V")).unwrap();
        assert_eq!(visa.default_valid_until(d("2025-01-31")), d("2027-01-31"));
        let sc2 = catalog.get(code("SC2")).unwrap();
        assert_eq!(sc2.extension_limit(d("2025-08-31")), d("2026-02-28"));
        assert_eq!(etpv.decision_due(d("2022-01-01")), Some(d("2022-04-01")));
        assert_eq!(sc2.decision_due(d("2022-01-01")), None);
    }

    #[test]
    fn catalog_round_trips_through_json() {
        let catalog = ChannelCatalog::builtin();
        let back = ChannelCatalog::from_json(&catalog.to_json()).unwrap();
        assert_eq!(back.to_json(), catalog.to_json());
        assert_eq!(back.channels().len(), 4);
    }

    #[test]
    fn inconsistent_catalogs_are_refused() {
        let base = ChannelCatalog::builtin().channels()[0].clone();
        let mut dup = vec![base.clone(), base.clone()];
        assert!(matches!(
            ChannelCatalog::new(dup.clone()),
            Err(CatalogError::Rule { .. })
        ));
        dup.truncate(1);
        dup[0].windows[0].closes_on = Some(d("2020-01-01"));
        let err = ChannelCatalog::new(dup.clone()).unwrap_err().to_string();
        assert!(err.contains("closes before it opens"), "{err}");
        // Two windows that overlap, or out of order, are refused.
        let mut two = base.clone();
        two.windows.push(two.windows[0]);
        let err = ChannelCatalog::new(vec![two]).unwrap_err().to_string();
        assert!(err.contains("must not overlap"), "{err}");
        let mut extendable = base.clone();
        extendable.extendable = true;
        assert!(ChannelCatalog::new(vec![extendable]).is_err());
        let mut no_bases = base;
        no_bases.bases.clear();
        assert!(ChannelCatalog::new(vec![no_bases]).is_err());
        assert!(matches!(
            ChannelCatalog::from_json(r#"{"version": 2, "channels": []}"#),
            Err(CatalogError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            ChannelCatalog::from_json(r#"{"version": 1, "channels": [], "x": 1}"#),
            Err(CatalogError::Json(_))
        ));
    }
}
