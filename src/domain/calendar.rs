//! Colombian business days: the national holidays as data, and counting
//! legal deadlines set in business days (días hábiles).
//!
//! The holidays are rules, not dates: `holidays_co.tsv` (in this directory,
//! compiled in) lists each holiday of Ley 51 de 1983 with its anchor (a
//! calendar day or a distance from Easter Sunday), whether the law moves
//! it to the following Monday, and the years it applies. A change in the
//! law is a new line (or a `to_year` on an old one), not new code.
//!
//! **Business day**: Monday to Friday, not a national holiday. Saturdays
//! are not business days (public offices do not count them in
//! administrative terms).
//!
//! **Counting convention** ([`add_business_days`]): a term of `n` business
//! days starting from an event on date `d` ends on the `n`th business day
//! *after* `d`; the day of the event itself never counts, whatever its
//! weekday. This is how Ley 1581 de 2012 art. 15 counts claims ("a partir
//! del día siguiente a la fecha de su recibo") and the general rule of
//! Colombian terms (they run from the day after the notification); the
//! registry applies it to every business-day term, art. 14 queries included.
//!
//! Pure: no I/O, no clock.

use std::sync::OnceLock;

use super::date::Date;

/// The holiday rules shipped with the build (see the file's header for its sources).
const HOLIDAYS_TSV: &str = include_str!("holidays_co.tsv");

/// Where a holiday falls before the Monday rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// A calendar day (month, day).
    Day(u8, u8),
    /// Days from Western (Gregorian) Easter Sunday.
    Easter(i16),
}

/// One line of the holiday table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolidayRule {
    /// Stable name, e.g. `SAINT_JOSEPH`.
    pub code: String,
    /// Where it falls.
    pub anchor: Anchor,
    /// Ley 51 de 1983: moved to the next Monday unless it falls on one.
    pub moves_to_monday: bool,
    /// First year the rule applies.
    pub from_year: u16,
    /// Last year it applies (`None`: still in force).
    pub to_year: Option<u16>,
}

/// The shipped rules. The file is part of the source tree and checked by
/// the tests (`shipped_rules_parse`), so a parse failure here is a build defect.
pub fn rules() -> &'static [HolidayRule] {
    static RULES: OnceLock<Vec<HolidayRule>> = OnceLock::new();
    RULES.get_or_init(|| parse_rules(HOLIDAYS_TSV).expect("src/domain/holidays_co.tsv is valid"))
}

/// Why [`parse_rules`] refuses a holiday table; names the line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The first line that is not a comment is not the header.
    #[error("line {0}: expected the header line")]
    Header(usize),
    /// A rule line without exactly five columns.
    #[error("line {0}: expected 5 tab-separated columns")]
    Columns(usize),
    /// A code that is not `A-Z` and `_`.
    #[error("line {0}: code {1:?} is not A-Z and _")]
    Code(usize, String),
    /// An anchor that is neither `MM-DD` nor `easter±N`.
    #[error("line {0}: bad anchor {1:?}")]
    Anchor(usize, String),
    /// A `moves` column other than `MONDAY` or `FIXED`.
    #[error("line {0}: moves must be MONDAY or FIXED")]
    Moves(usize),
    /// A `from_year` that is not a year.
    #[error("line {0}: bad from_year")]
    FromYear(usize),
    /// A `to_year` that is not `-` or a year from `from_year` on.
    #[error("line {0}: bad to_year")]
    ToYear(usize),
    /// No header line at all.
    #[error("no header line")]
    NoHeader,
}

/// Parses a holiday table (the format of `holidays_co.tsv`): `#` comments,
/// one header line, then `code anchor moves from_year to_year`, tab-separated.
/// The error names the line.
pub fn parse_rules(text: &str) -> Result<Vec<HolidayRule>, CalendarError> {
    let mut out = Vec::new();
    let mut header_seen = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if !header_seen {
            if cols != ["code", "anchor", "moves", "from_year", "to_year"] {
                return Err(CalendarError::Header(n));
            }
            header_seen = true;
            continue;
        }
        let [code, anchor, moves, from, to] = cols[..] else {
            return Err(CalendarError::Columns(n));
        };
        if code.is_empty() || !code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            return Err(CalendarError::Code(n, code.to_string()));
        }
        let anchor = parse_anchor(anchor).ok_or_else(|| CalendarError::Anchor(n, anchor.to_string()))?;
        let moves_to_monday = match moves {
            "MONDAY" => true,
            "FIXED" => false,
            _ => return Err(CalendarError::Moves(n)),
        };
        let year = |s: &str| s.parse::<u16>().ok().filter(|y| (1..=9999).contains(y));
        let from_year = year(from).ok_or(CalendarError::FromYear(n))?;
        let to_year = match to {
            "-" => None,
            s => Some(
                year(s)
                    .filter(|y| *y >= from_year)
                    .ok_or(CalendarError::ToYear(n))?,
            ),
        };
        out.push(HolidayRule {
            code: code.to_string(),
            anchor,
            moves_to_monday,
            from_year,
            to_year,
        });
    }
    if !header_seen {
        return Err(CalendarError::NoHeader);
    }
    Ok(out)
}

fn parse_anchor(text: &str) -> Option<Anchor> {
    if let Some(offset) = text.strip_prefix("easter") {
        let offset: i16 = offset.strip_prefix('+').unwrap_or(offset).parse().ok()?;
        return (-100..=100).contains(&offset).then_some(Anchor::Easter(offset));
    }
    let (month, day) = text.split_once('-')?;
    let (month, day) = (month.parse().ok()?, day.parse().ok()?);
    // Any year: 29 February is refused (no rule could fall on it every year).
    Date::new(2023, month, day)?;
    Some(Anchor::Day(month, day))
}

/// Western Easter Sunday of `year` (Gregorian computus, the anonymous
/// algorithm of Meeus, Jones and Butcher).
pub fn easter(year: u16) -> Date {
    let y = i64::from(year);
    let (a, b, c) = (y % 19, y / 100, y % 100);
    let (d, e) = (b / 4, b % 4);
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let (i, k) = (c / 4, c % 4);
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    Date::new(year, month as u8, day as u8).unwrap_or(Date::MAX)
}

/// Day of the week, 0 = Monday .. 6 = Sunday.
pub fn weekday(date: Date) -> u8 {
    // 1970-01-01 was a Thursday (3).
    (date.days_since_epoch() + 3).rem_euclid(7) as u8
}

/// The national holidays of `year`, in date order, with the rule's code
/// (two holidays on one day, e.g. 2025-06-30, are both listed).
pub fn holidays(year: u16) -> Vec<(Date, &'static str)> {
    let mut out: Vec<(Date, &'static str)> = rules()
        .iter()
        .filter(|r| r.from_year <= year && r.to_year.is_none_or(|to| year <= to))
        .filter_map(|r| {
            let day = match r.anchor {
                Anchor::Day(month, day) => Date::new(year, month, day)?,
                Anchor::Easter(offset) => easter(year).add_days(i64::from(offset)),
            };
            let day = match (r.moves_to_monday, weekday(day)) {
                (true, wd) if wd != 0 => day.add_days(i64::from(7 - wd)),
                _ => day,
            };
            Some((day, r.code.as_str()))
        })
        .collect();
    out.sort();
    out
}

/// Whether `date` is a national holiday.
pub fn is_holiday(date: Date) -> bool {
    holidays(date.year()).iter().any(|(d, _)| *d == date)
}

/// Monday to Friday and not a national holiday.
pub fn is_business_day(date: Date) -> bool {
    weekday(date) < 5 && !is_holiday(date)
}

/// The `n`th business day after `date` (`date` itself never counts; `n` = 0
/// gives `date`). Saturates at [`Date::MAX`].
pub fn add_business_days(date: Date, n: u32) -> Date {
    let mut day = date;
    let mut left = n;
    let mut year_holidays = (day.year(), holidays(day.year()));
    while left > 0 {
        if day == Date::MAX {
            return Date::MAX;
        }
        day = day.add_days(1);
        if year_holidays.0 != day.year() {
            year_holidays = (day.year(), holidays(day.year()));
        }
        if weekday(day) < 5 && !year_holidays.1.iter().any(|(d, _)| *d == day) {
            left -= 1;
        }
    }
    day
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    fn dates(year: u16) -> Vec<String> {
        let mut out: Vec<String> = holidays(year).iter().map(|(d, _)| d.to_string()).collect();
        out.dedup();
        out
    }

    #[test]
    fn shipped_rules_parse() {
        let rules = parse_rules(HOLIDAYS_TSV).unwrap();
        assert_eq!(rules.len(), 18, "Ley 51 de 1983 lists 18 holidays");
        assert_eq!(rules.iter().filter(|r| r.moves_to_monday).count(), 10);
    }

    #[test]
    fn bad_tables_name_the_line() {
        let head = "code\tanchor\tmoves\tfrom_year\tto_year\n";
        for (body, line) in [
            ("X\t13-01\tFIXED\t1984\t-\n", 2),
            ("X\t01-01\tSOMETIMES\t1984\t-\n", 2),
            ("X\teaster+x\tFIXED\t1984\t-\n", 2),
            ("X\t02-29\tFIXED\t1984\t-\n", 2),
            ("X\t01-01\tFIXED\t1984\t1983\n", 2),
            ("# c\nX\t01-01\tFIXED\n", 3),
        ] {
            let err = parse_rules(&format!("{head}{body}")).unwrap_err().to_string();
            assert!(err.starts_with(&format!("line {line}:")), "{body:?}: {err}");
        }
        assert!(parse_rules("X\t01-01\tFIXED\t1984\t-\n").is_err(), "no header");
    }

    #[test]
    fn easter_sundays_are_known_ones() {
        for (year, sunday) in [
            (1984, "1984-04-22"),
            (2000, "2000-04-23"),
            (2019, "2019-04-21"),
            (2024, "2024-03-31"),
            (2025, "2025-04-20"),
            (2026, "2026-04-05"),
            (2038, "2038-04-25"),
        ] {
            assert_eq!(easter(year), d(sunday), "{year}");
            assert_eq!(weekday(easter(year)), 6);
        }
    }

    /// The lists published for 2024, 2025 and 2026 (e.g. festivos.com.co,
    /// publicholidays.co after Banco de la República, the national press).
    #[test]
    fn published_holiday_lists() {
        assert_eq!(
            dates(2024),
            [
                "2024-01-01",
                "2024-01-08",
                "2024-03-25",
                "2024-03-28",
                "2024-03-29",
                "2024-05-01",
                "2024-05-13",
                "2024-06-03",
                "2024-06-10",
                "2024-07-01",
                "2024-07-20",
                "2024-08-07",
                "2024-08-19",
                "2024-10-14",
                "2024-11-04",
                "2024-11-11",
                "2024-12-08",
                "2024-12-25",
            ]
        );
        // 2025-06-30 is both the Sacred Heart and Saints Peter and Paul.
        assert_eq!(holidays(2025).len(), 18);
        assert_eq!(
            dates(2025),
            [
                "2025-01-01",
                "2025-01-06",
                "2025-03-24",
                "2025-04-17",
                "2025-04-18",
                "2025-05-01",
                "2025-06-02",
                "2025-06-23",
                "2025-06-30",
                "2025-07-20",
                "2025-08-07",
                "2025-08-18",
                "2025-10-13",
                "2025-11-03",
                "2025-11-17",
                "2025-12-08",
                "2025-12-25",
            ]
        );
        assert_eq!(
            dates(2026),
            [
                "2026-01-01",
                "2026-01-12",
                "2026-03-23",
                "2026-04-02",
                "2026-04-03",
                "2026-05-01",
                "2026-05-18",
                "2026-06-08",
                "2026-06-15",
                "2026-06-29",
                "2026-07-20",
                "2026-08-07",
                "2026-08-17",
                "2026-10-12",
                "2026-11-02",
                "2026-11-16",
                "2026-12-08",
                "2026-12-25",
            ]
        );
    }

    #[test]
    fn before_the_law_nothing_is_listed() {
        assert!(holidays(1983).is_empty());
    }

    #[test]
    fn business_days() {
        assert!(is_business_day(d("2025-06-27")), "a Friday");
        assert!(!is_business_day(d("2025-06-28")), "a Saturday");
        assert!(!is_business_day(d("2025-06-29")), "a Sunday");
        assert!(!is_business_day(d("2025-06-30")), "a Monday holiday");
        assert!(!is_business_day(d("2025-04-17")), "Holy Thursday");
        assert!(is_business_day(d("2025-07-01")));
        // A fixed holiday on a Sunday is not moved: the Monday works.
        assert!(is_holiday(d("2025-07-20")));
        assert!(is_business_day(d("2025-07-21")));
    }

    #[test]
    fn deadlines_over_holidays() {
        // Received Friday 2025-06-27: Mon 30 Jun is a holiday; 10 business
        // days are 1-4 Jul (4), 7-11 Jul (5), 14 Jul (10th).
        assert_eq!(add_business_days(d("2025-06-27"), 10), d("2025-07-14"));
        // Received Monday 2025-04-14 (Holy Week): 15, 16, 21..25, 28..30 Apr
        // (the 10th is 2025-04-30), then 2, 5..8 May (1 May is a holiday).
        assert_eq!(add_business_days(d("2025-04-14"), 10), d("2025-04-30"));
        assert_eq!(add_business_days(d("2025-04-14"), 15), d("2025-05-08"));
        // Year end: received 2025-12-22; 23, 24, 26, 29, 30, 31 Dec, 2 Jan,
        // 5, 6, 7 Jan 2026 (12 Jan is a holiday, 6 Jan is not in 2026).
        assert_eq!(add_business_days(d("2025-12-22"), 10), d("2026-01-07"));
        // Received on a Saturday: the count starts on Monday.
        assert_eq!(add_business_days(d("2026-03-21"), 1), d("2026-03-24"));
        assert_eq!(add_business_days(d("2024-03-22"), 5), d("2024-04-03"));
        assert_eq!(add_business_days(d("2025-06-27"), 0), d("2025-06-27"));
        assert_eq!(add_business_days(Date::MAX.add_days(-1), 5), Date::MAX);
    }
}
