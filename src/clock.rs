//! The business calendar: what date it is in Colombia.
//!
//! Business dates (a command's `header.on` when the client leaves it empty,
//! the date statuses and statistics are counted on) are civil dates in
//! Colombia, time zone America/Bogota (UTC-5 all year today, with the 1992-93
//! daylight saving kept in the history), taken from the tz database that jiff
//! bundles, so no system tzdata is needed. Timestamps in the log
//! (`recorded_at_us`) stay UTC.
//!
//! This module is the one place the rest of the registry reads the system
//! clock from: [`now_us`] (UTC) and [`today`] (the business date).

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::domain::Date;

/// The IANA time zone of business dates.
pub const BUSINESS_TIME_ZONE: &str = "America/Bogota";

static BOGOTA: LazyLock<TimeZone> = LazyLock::new(|| {
    // The bundled database is compiled in, so the zone is always there.
    jiff::tz::db()
        .get(BUSINESS_TIME_ZONE)
        .expect("the bundled tz database has America/Bogota")
});

/// The date in Colombia at `unix_us` (UTC microseconds since the Unix epoch),
/// or `None` outside the representable range.
pub fn colombian_date_at(unix_us: i64) -> Option<Date> {
    let instant = Timestamp::from_microsecond(unix_us).ok()?;
    let date = instant.to_zoned_datetime(BOGOTA.clone()).date();
    Date::new(
        u16::try_from(date.year()).ok()?,
        u8::try_from(date.month()).ok()?,
        u8::try_from(date.day()).ok()?,
    )
}

/// Now, in UTC microseconds since the Unix epoch (0 if the system clock is
/// set before the epoch).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Today in Colombia, from the system clock.
pub fn today() -> Date {
    colombian_date_at(now_us()).expect("the system clock is within the supported range")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Option<Date> {
        let ts: Timestamp = rfc3339.parse().unwrap();
        colombian_date_at(ts.as_microsecond())
    }

    fn d(text: &str) -> Option<Date> {
        Date::parse(text)
    }

    #[test]
    fn evenings_in_bogota_are_still_today() {
        // 20:30 in Bogotá on 6 December is 01:30 UTC on the 7th.
        assert_eq!(at("2026-12-07T01:30:00Z"), d("2026-12-06"));
        // The day turns at 05:00 UTC (midnight in Bogotá).
        assert_eq!(at("2026-12-07T04:59:59.999999Z"), d("2026-12-06"));
        assert_eq!(at("2026-12-07T05:00:00Z"), d("2026-12-07"));
        assert_eq!(at("2026-12-07T12:00:00Z"), d("2026-12-07"));
        // New Year's Eve and a leap day.
        assert_eq!(at("2027-01-01T03:00:00Z"), d("2026-12-31"));
        assert_eq!(at("2028-03-01T04:00:00Z"), d("2028-02-29"));
        // The epoch itself was still 31 December 1969 in Bogotá.
        assert_eq!(colombian_date_at(0), d("1969-12-31"));
    }

    #[test]
    fn the_1992_daylight_saving_is_in_the_history() {
        // Colombia kept UTC-4 from 3 May 1992 into 1993: 04:30 UTC was
        // already the next day then, and is not now.
        assert_eq!(at("1992-08-01T04:30:00Z"), d("1992-08-01"));
        assert_eq!(at("2026-08-01T04:30:00Z"), d("2026-07-31"));
    }
}
