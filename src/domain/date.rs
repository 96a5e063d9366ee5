//! A civil (calendar) date, with no time zone and no clock.
//!
//! The domain never reads a clock: every rule that depends on time receives
//! the date as an argument, so that a decision can be replayed and historical
//! (simulated) dates are as valid as today's.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A proleptic Gregorian calendar date between 0001-01-01 and 9999-12-31.
///
/// Four bytes, `Copy`, ordered chronologically (field order is year, month,
/// day), so case state can hold many of them cheaply.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

/// Days from 0000-03-01 to 1970-01-01 in Hinnant's algorithm.
const EPOCH_SHIFT_DAYS: i64 = 719_468;
/// Days in a 400-year Gregorian era.
const ERA_DAYS: i64 = 146_097;

impl Date {
    /// The earliest representable date; saturating arithmetic stops here.
    pub const MIN: Date = Date {
        year: 1,
        month: 1,
        day: 1,
    };
    /// The latest representable date; saturating arithmetic stops here.
    pub const MAX: Date = Date {
        year: 9999,
        month: 12,
        day: 31,
    };

    /// Builds a date, or `None` when the triple is not a real calendar day.
    pub const fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        if year < 1 || year > 9999 || month < 1 || month > 12 {
            return None;
        }
        if day < 1 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// The calendar year (1..=9999).
    pub const fn year(self) -> u16 {
        self.year
    }

    /// The month (1..=12).
    pub const fn month(self) -> u8 {
        self.month
    }

    /// The day of the month (1..=31).
    pub const fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (negative before), Howard Hinnant's `days_from_civil`.
    pub const fn days_since_epoch(self) -> i64 {
        let month = self.month as i64;
        let year = self.year as i64 - if month <= 2 { 1 } else { 0 };
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let month_shifted = (month + 9) % 12;
        let day_of_year = (153 * month_shifted + 2) / 5 + self.day as i64 - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * ERA_DAYS + day_of_era - EPOCH_SHIFT_DAYS
    }

    /// The date `days` after 1970-01-01 (Hinnant's `civil_from_days`), or
    /// `None` outside 0001-01-01..=9999-12-31.
    pub const fn from_days(days: i64) -> Option<Date> {
        if days < Date::MIN.days_since_epoch() || days > Date::MAX.days_since_epoch() {
            return None;
        }
        let shifted = days + EPOCH_SHIFT_DAYS;
        let era = shifted.div_euclid(ERA_DAYS);
        let day_of_era = shifted - era * ERA_DAYS;
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_shifted = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_shifted + 2) / 5 + 1;
        let month = if month_shifted < 10 {
            month_shifted + 3
        } else {
            month_shifted - 9
        };
        let year = year_of_era + era * 400 + if month <= 2 { 1 } else { 0 };
        Some(Date {
            year: year as u16,
            month: month as u8,
            day: day as u8,
        })
    }

    /// The date `days` later (earlier when negative), saturating at
    /// [`Date::MIN`] / [`Date::MAX`] so rules never panic on far dates.
    pub const fn add_days(self, days: i64) -> Date {
        let target = self.days_since_epoch().saturating_add(days);
        match Date::from_days(target) {
            Some(date) => date,
            None if target < 0 => Date::MIN,
            None => Date::MAX,
        }
    }

    /// The same day `months` later (earlier when negative); the day is clamped
    /// to the end of a shorter month (2024-01-31 + 1 month = 2024-02-29).
    /// Saturates at [`Date::MIN`] / [`Date::MAX`].
    pub const fn add_months(self, months: i64) -> Date {
        let index = (self.year as i64) * 12 + (self.month as i64 - 1) + months;
        let year = index.div_euclid(12);
        if year < 1 {
            return Date::MIN;
        }
        if year > 9999 {
            return Date::MAX;
        }
        let month = (index.rem_euclid(12) + 1) as u8;
        let max_day = days_in_month(year as u16, month);
        let day = if self.day > max_day { max_day } else { self.day };
        Date {
            year: year as u16,
            month,
            day,
        }
    }

    /// Whole days from `self` to `later` (negative when `later` is earlier).
    pub const fn days_until(self, later: Date) -> i64 {
        later.days_since_epoch() - self.days_since_epoch()
    }

    /// Parses ISO 8601 `YYYY-MM-DD` (exactly ten characters).
    pub fn parse(text: &str) -> Option<Date> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return None;
        }
        let year = parse_digits(&bytes[0..4])?;
        let month = parse_digits(&bytes[5..7])?;
        let day = parse_digits(&bytes[8..10])?;
        Date::new(year as u16, month as u8, day as u8)
    }
}

/// Age in whole years on `on` of someone born in `birth_year`/`birth_month`.
///
/// Only the birth month is recorded, so the birthday is taken as the first
/// day of that month: the person turns N in their birth month. Births after
/// `on` give 0.
pub fn age_on(birth_year: u16, birth_month: u8, on: Date) -> u32 {
    let years = i64::from(on.year()) - i64::from(birth_year);
    let before_birthday = on.month() < birth_month;
    let age = years - i64::from(before_birthday);
    if age < 0 {
        0
    } else {
        age as u32
    }
}

/// Days in a month, with Gregorian leap years.
const fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap_year(year) => 29,
        _ => 28,
    }
}

/// Gregorian leap year rule.
const fn is_leap_year(year: u16) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Parses ASCII decimal digits only (no sign, no spaces).
fn parse_digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |acc, &b| {
        if b.is_ascii_digit() {
            Some(acc * 10 + u32::from(b - b'0'))
        } else {
            None
        }
    })
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a text is not an ISO date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an ISO date YYYY-MM-DD: {0:?}")]
pub struct DateParseError(pub String);

impl FromStr for Date {
    type Err = DateParseError;

    fn from_str(text: &str) -> Result<Date, DateParseError> {
        Date::parse(text)
            .ok_or_else(|| DateParseError(text.chars().take(crate::limits::ECHOED_DATE_CHARS_MAX).collect()))
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Date::parse(&text).ok_or_else(|| serde::de::Error::custom(DateParseError(text.into_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    #[test]
    fn epoch_and_known_days_match_hinnant() {
        assert_eq!(d("1970-01-01").days_since_epoch(), 0);
        assert_eq!(d("2000-03-01").days_since_epoch(), 11_017);
        assert_eq!(d("1969-12-31").days_since_epoch(), -1);
        assert_eq!(d("2031-05-30").days_since_epoch(), 22_429);
        assert_eq!(Date::from_days(22_429), Some(d("2031-05-30")));
    }

    #[test]
    fn every_day_round_trips_through_days() {
        let mut date = Date::MIN;
        let mut days = date.days_since_epoch();
        while date < Date::MAX {
            let next = Date::from_days(days + 1).unwrap();
            assert!(next > date, "{next} after {date}");
            assert_eq!(next.days_since_epoch(), days + 1);
            date = next;
            days += 1;
        }
        assert_eq!(date, Date::MAX);
        assert_eq!(Date::from_days(days + 1), None);
        assert_eq!(Date::from_days(Date::MIN.days_since_epoch() - 1), None);
    }

    #[test]
    fn validation_rejects_impossible_days() {
        assert_eq!(Date::new(2023, 2, 29), None);
        assert!(Date::new(2024, 2, 29).is_some());
        assert_eq!(Date::new(1900, 2, 29), None);
        assert!(Date::new(2000, 2, 29).is_some());
        assert_eq!(Date::new(2024, 4, 31), None);
        assert_eq!(Date::new(2024, 13, 1), None);
        assert_eq!(Date::new(0, 1, 1), None);
        assert_eq!(Date::new(2024, 1, 0), None);
    }

    #[test]
    fn add_months_clamps_to_month_end() {
        assert_eq!(d("2024-01-31").add_months(1), d("2024-02-29"));
        assert_eq!(d("2023-01-31").add_months(1), d("2023-02-28"));
        assert_eq!(d("2024-12-15").add_months(24), d("2026-12-15"));
        assert_eq!(d("2024-03-31").add_months(-1), d("2024-02-29"));
        assert_eq!(d("2024-01-15").add_months(-13), d("2022-12-15"));
        assert_eq!(Date::MAX.add_months(1), Date::MAX);
        assert_eq!(Date::MIN.add_months(-1), Date::MIN);
    }

    #[test]
    fn add_days_crosses_years_and_saturates() {
        assert_eq!(d("2023-12-31").add_days(1), d("2024-01-01"));
        assert_eq!(d("2024-03-01").add_days(-1), d("2024-02-29"));
        assert_eq!(d("2022-03-16").add_days(90), d("2022-06-14"));
        assert_eq!(Date::MAX.add_days(1), Date::MAX);
        assert_eq!(Date::MIN.add_days(-1), Date::MIN);
        assert_eq!(d("2024-01-01").add_days(i64::MAX), Date::MAX);
        assert_eq!(d("2024-01-01").days_until(d("2024-03-01")), 60);
    }

    #[test]
    fn iso_parse_and_format_round_trip() {
        assert_eq!(d("2021-03-01").to_string(), "2021-03-01");
        assert_eq!(Date::new(7, 1, 2).unwrap().to_string(), "0007-01-02");
        for bad in [
            "2021-3-01",
            "2021/03/01",
            "2021-03-01 ",
            "+021-03-01",
            "2021-02-30",
            "",
        ] {
            assert_eq!(Date::parse(bad), None, "{bad:?}");
        }
        assert!("2021-13-01".parse::<Date>().is_err());
        let json = serde_json::to_string(&d("2031-05-30")).unwrap();
        assert_eq!(json, "\"2031-05-30\"");
        assert_eq!(serde_json::from_str::<Date>(&json).unwrap(), d("2031-05-30"));
        assert!(serde_json::from_str::<Date>("\"2031-02-30\"").is_err());
    }

    #[test]
    fn ordering_is_chronological() {
        assert!(d("2021-12-31") < d("2022-01-01"));
        assert!(d("2022-01-31") < d("2022-02-01"));
        assert!(d("2022-02-01") < d("2022-02-02"));
    }

    #[test]
    fn age_counts_whole_years_from_the_birth_month() {
        let on = d("2023-11-24");
        assert_eq!(age_on(2005, 11, on), 18);
        assert_eq!(age_on(2005, 12, on), 17);
        assert_eq!(age_on(2023, 11, on), 0);
        assert_eq!(age_on(2024, 1, on), 0);
        assert_eq!(age_on(1950, 1, on), 73);
    }
}
