//! Regularization channels as data.
//!
//! Each way into regular status (ETPV/PPT, PEP-Tutor, Visa V, SC-2) is a
//! [`ChannelRules`] record: which eligibility bases it accepts, when it takes
//! applications, how long its permit lasts, whether it can be extended. The
//! rules code never matches on a channel code; a new channel or a changed
//! date is a data change (see `channels.json`), not a release.

use serde::{Deserialize, Serialize};

use super::codes::ChannelCode;
use super::date::Date;
use super::error::CatalogError;
use super::types::{EligibilityBasis, PermitType};

/// Most channels a catalog may hold.
pub const CHANNELS_MAX: usize = 64;
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

/// Everything the rules need to know about one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// First day applications are taken (`None`: always open).
    pub opens_on: Option<Date>,
    /// Last day adults may apply (`None`: no end).
    pub closes_on: Option<Date>,
    /// Last day minors may still apply after `closes_on` (ETPV: minors in
    /// school or in ICBF programmes until 2031).
    pub minors_close_on: Option<Date>,
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
    /// Days after a denial during which an appeal may be filed.
    pub appeal_window_days: u16,
    /// Missed biometric appointments after which no new one is scheduled
    /// (the application is then abandoned and should be withdrawn).
    pub missed_appointments_max: u8,
}

impl ChannelRules {
    /// Whether the channel accepts `basis`.
    pub fn accepts(&self, basis: EligibilityBasis) -> bool {
        self.bases.contains(&basis)
    }

    /// Whether an application on `applied_on` is inside the channel's window,
    /// with the minors' extension; `Err` says why not.
    pub fn check_window(&self, applied_on: Date, is_minor: bool) -> Result<(), String> {
        if let Some(opens) = self.opens_on {
            if applied_on < opens {
                return Err(format!("{} opens on {opens}", self.code));
            }
        }
        match (self.closes_on, self.minors_close_on) {
            (Some(closes), _) if applied_on <= closes => Ok(()),
            (Some(_), Some(minors_close)) if is_minor && applied_on <= minors_close => Ok(()),
            (Some(closes), Some(minors_close)) if is_minor => Err(format!(
                "{} closed on {closes}, and for minors on {minors_close}",
                self.code
            )),
            (Some(closes), _) => Err(format!("{} closed on {closes}", self.code)),
            (None, _) => Ok(()),
        }
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

    /// The decision deadline for a review that started on `review_started_on`.
    pub fn decision_due(&self, review_started_on: Date) -> Option<Date> {
        self.decision_days
            .map(|days| review_started_on.add_days(i64::from(days)))
    }

    fn check(&self) -> Result<(), String> {
        if self.bases.is_empty() {
            return Err("accepts no eligibility basis".into());
        }
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

/// The catalog shipped with the build (DOMAIN.md's four channels).
const BUILTIN_JSON: &str = include_str!("channels.json");

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

    /// The catalog embedded in the build. Its validity is proven by a test,
    /// so this cannot fail at run time. It parses JSON on every call: build it
    /// once at start-up and share it.
    pub fn builtin() -> ChannelCatalog {
        ChannelCatalog::from_json(BUILTIN_JSON).expect("the embedded channels.json is valid")
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
            etpv.check_window(d("2023-11-25"), false),
            Err("ETPV closed on 2023-11-24".into())
        );
        assert!(etpv.check_window(d("2025-03-01"), true).is_ok());
        assert!(etpv.check_window(d("2031-05-31"), true).is_err());
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
        assert_eq!(ChannelCatalog::from_json(&catalog.to_json()).unwrap(), catalog);
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
        dup[0].closes_on = Some(d("2020-01-01"));
        let err = ChannelCatalog::new(dup).unwrap_err().to_string();
        assert!(err.contains("closes before it opens"), "{err}");
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
