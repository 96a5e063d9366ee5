//! Caseload queries: filters and up to three breakdown dimensions,
//! aggregated from the cube's cells (cost grows with the number of distinct
//! cells, never with the number of persons).

use std::collections::HashMap;

use serde::Serialize;

use super::state::{
    nationality_of, nationality_value, permit_type_of, Cell, Position, ProjectionState, DESTINATION_UNKNOWN,
};
use super::suppress::{suppress, SuppressionRules};
use crate::domain::{AgeBand, CountryCode, Department, Municipality, PermitType, PersonStatus, Sex};
use crate::limits::{STATS_BREAKDOWN_DIMS_MAX, STATS_FILTERS_MAX};

/// Why a statistics question is refused; the message names the part of
/// the question at fault (callers prefix the field or flag).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// More breakdown dimensions than [`STATS_BREAKDOWN_DIMS_MAX`].
    #[error("by: at most {STATS_BREAKDOWN_DIMS_MAX} dimensions")]
    TooManyDimensions,
    /// More filters than [`STATS_FILTERS_MAX`].
    #[error("filters: at most {STATS_FILTERS_MAX}")]
    TooManyFilters,
    /// A breakdown dimension given twice.
    #[error("by: dimension {} repeated", .0.as_str())]
    RepeatedDimension(Dim),
    /// A filter value that is no code of its dimension (`text` as echoed:
    /// its first [`crate::limits::ECHOED_VALUE_CHARS_MAX`] characters).
    #[error("unknown {} value {text:?}", dim.as_str())]
    UnknownValue {
        /// The dimension filtered on.
        dim: Dim,
        /// The value as echoed (truncated).
        text: String,
    },
    /// A filter that is not `DIM=VALUE[|VALUE..]`.
    #[error("filter {0:?}: expected DIM=VALUE")]
    FilterSyntax(String),
    /// A filter naming no dimension.
    #[error("unknown dimension {0:?}")]
    UnknownDimension(String),
    /// A series breakdown naming no series dimension (echoed like
    /// [`QueryError::UnknownValue`]).
    #[error("{0:?} is not a series dimension (department, sex, age_band, channel, status)")]
    NotASeriesDimension(String),
    /// A series breakdown dimension given twice.
    #[error("{0} appears twice")]
    SeriesDimensionTwice(String),
    /// More series breakdown dimensions than
    /// [`super::SERIES_BREAKDOWN_DIMS_MAX`].
    #[error("at most {} dimensions for a series", super::SERIES_BREAKDOWN_DIMS_MAX)]
    TooManySeriesDimensions,
}

/// A caseload dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Dim {
    /// Derived person status on the date asked (`IRREGULAR`, `IN_PROCESS`, `REGULAR_PPT`, ...).
    Status,
    /// DIVIPOLA department of residence, two digits.
    Department,
    /// DIVIPOLA municipality of residence, five digits.
    Municipality,
    /// Sex recorded at registration.
    Sex,
    /// Age band on the date asked.
    AgeBand,
    /// "true" for under 18 on the date asked.
    Minor,
    /// Channel of the current application (`NONE` if none).
    Channel,
    /// Type of the latest permit issued ("NONE" if never).
    PermitType,
    /// Nationality recorded at registration (ISO 3166-1 alpha-3, or an ICAO
    /// code such as `XXA` stateless).
    Nationality,
    /// Where a departed person went: the country recorded, `UNKNOWN` for a
    /// departure without one, `NONE` for a case that did not depart.
    ExitDestination,
    /// "LINKED" when an active family link names a guardian of the person
    /// (meaningful for minors), else "NONE".
    Guardian,
}

impl Dim {
    /// Every dimension, in declaration order.
    pub const ALL: [Dim; 11] = [
        Dim::Status,
        Dim::Department,
        Dim::Municipality,
        Dim::Sex,
        Dim::AgeBand,
        Dim::Minor,
        Dim::Channel,
        Dim::PermitType,
        Dim::Nationality,
        Dim::ExitDestination,
        Dim::Guardian,
    ];

    /// The dimension's name in questions and column headers (`age_band`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Status => "status",
            Dim::Department => "department",
            Dim::Municipality => "municipality",
            Dim::Sex => "sex",
            Dim::AgeBand => "age_band",
            Dim::Minor => "minor",
            Dim::Channel => "channel",
            Dim::PermitType => "permit_type",
            Dim::Nationality => "nationality",
            Dim::ExitDestination => "exit_destination",
            Dim::Guardian => "guardian",
        }
    }
    /// The dimension named `s` (case-insensitive, trimmed); `None` if no such name.
    pub fn parse(s: &str) -> Option<Dim> {
        Dim::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The numeric value of a cell on this dimension.
    fn value(self, c: &Cell) -> u32 {
        match self {
            Dim::Status => c.status as u32,
            Dim::Department => c.municipality / 1000,
            Dim::Municipality => c.municipality,
            Dim::Sex => c.sex as u32,
            Dim::AgeBand => c.age_band as u32,
            Dim::Minor => c.age_band.is_minor() as u32,
            Dim::Channel => u32::from(c.channel),
            Dim::PermitType => u32::from(c.permit_type),
            Dim::Nationality => u32::from(c.nationality),
            Dim::ExitDestination => u32::from(c.exit_destination),
            Dim::Guardian => u32::from(c.guardian),
        }
    }

    /// The code shown for a value.
    fn label(self, v: u32, state: &ProjectionState) -> String {
        match self {
            Dim::Status => PersonStatus::ALL[v as usize].as_str().into(),
            Dim::Department => format!("{v:02}"),
            Dim::Municipality => format!("{v:05}"),
            Dim::Sex => Sex::ALL[v as usize].as_str().into(),
            Dim::AgeBand => AgeBand::ALL[v as usize].as_str().into(),
            Dim::Minor => (v == 1).to_string(),
            Dim::Channel => state
                .channel_code(v as u8)
                .map_or_else(|| "NONE".into(), |c| c.as_str().to_string()),
            Dim::PermitType => permit_type_of(v as u8).map_or_else(|| "NONE".into(), |t| t.as_str().into()),
            Dim::Nationality => nationality_of(v as u16).map_or_else(|| "NONE".into(), |c| c.as_str().into()),
            Dim::ExitDestination => match v as u16 {
                DESTINATION_UNKNOWN => "UNKNOWN".into(),
                v => nationality_of(v).map_or_else(|| "NONE".into(), |c| c.as_str().into()),
            },
            Dim::Guardian => GUARDIAN_CODES[v as usize & 1].into(),
        }
    }

    /// Parses a value code into the numeric value (`None`: unknown code).
    fn parse_value(self, text: &str, state: &ProjectionState) -> Result<Option<u32>, QueryError> {
        let bad = || QueryError::UnknownValue {
            dim: self,
            text: text
                .chars()
                .take(crate::limits::ECHOED_VALUE_CHARS_MAX)
                .collect::<String>(),
        };
        Ok(match self {
            Dim::Status => Some(PersonStatus::parse(text).ok_or_else(bad)? as u32),
            Dim::Department => Some(u32::from(Department::parse(text).ok_or_else(bad)?.code())),
            Dim::Municipality => Some(Municipality::parse(text).ok_or_else(bad)?.code()),
            Dim::Sex => Some(Sex::parse(text).ok_or_else(bad)? as u32),
            Dim::AgeBand => Some(AgeBand::parse(text).ok_or_else(bad)? as u32),
            Dim::Minor => Some(match text {
                "true" => 1,
                "false" => 0,
                _ => return Err(bad()),
            }),
            // A channel code never seen has no persons: the value matches nothing.
            Dim::Channel => state.channel_lookup(text).map(u32::from),
            Dim::PermitType => Some(if text == "NONE" {
                0
            } else {
                PermitType::parse(text).ok_or_else(bad)? as u32 + 1
            }),
            Dim::Nationality => Some(u32::from(nationality_value(Some(
                CountryCode::parse(text).ok_or_else(bad)?,
            )))),
            Dim::ExitDestination => Some(u32::from(match text {
                "NONE" => 0,
                "UNKNOWN" => DESTINATION_UNKNOWN,
                _ => nationality_value(Some(
                    CountryCode::parse(text)
                        .filter(|c| !c.as_str().starts_with("XX"))
                        .ok_or_else(bad)?,
                )),
            })),
            Dim::Guardian => Some(GUARDIAN_CODES.iter().position(|c| *c == text).ok_or_else(bad)? as u32),
        })
    }
}

/// The codes of the `guardian` dimension, by value (0: no active guardian link).
pub const GUARDIAN_CODES: [&str; 2] = ["NONE", "LINKED"];

/// A filter: the dimension must take one of the values (codes as shown).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Filter {
    /// The dimension filtered on.
    pub dim: Dim,
    /// The codes accepted (any of them).
    pub values: Vec<String>,
}

impl Filter {
    /// Parses `dim=value[|value..]`.
    pub fn parse(text: &str) -> Result<Filter, QueryError> {
        let (d, v) = text
            .split_once('=')
            .ok_or_else(|| QueryError::FilterSyntax(text.to_string()))?;
        let dim = Dim::parse(d).ok_or_else(|| QueryError::UnknownDimension(d.to_string()))?;
        Ok(Filter {
            dim,
            values: v.split('|').map(|s| s.trim().to_string()).collect(),
        })
    }
}

/// A caseload question.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CaseloadQuery {
    /// The breakdown dimensions, in the order of each row's values.
    pub by: Vec<Dim>,
    /// Filters every counted person passes (all of them).
    pub filters: Vec<Filter>,
    /// Apply disclosure control.
    pub published: bool,
}

/// One published row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Values, in the order of the breakdown dimensions.
    pub values: Vec<String>,
    /// The count; `None` when suppressed.
    pub count: Option<u64>,
}

/// A caseload answer.
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    /// The breakdown dimensions, in the order of each row's values.
    pub dims: Vec<Dim>,
    /// One row per combination of values that has persons.
    pub rows: Vec<Row>,
    /// Persons matching the filters (`None` when suppressed).
    pub total: Option<u64>,
    /// Date the statuses and ages are counted on.
    pub as_of_date: String,
    /// Log position reflected.
    pub seq: u64,
    /// The chain hash at `seq`, hex.
    pub hash: String,
    /// Whether disclosure control was applied.
    pub published: bool,
    /// Cells hidden by disclosure control.
    pub suppressed_cells: usize,
}

/// Validation errors name the field.
pub fn validate(q: &CaseloadQuery) -> Result<(), QueryError> {
    if q.by.len() > STATS_BREAKDOWN_DIMS_MAX {
        return Err(QueryError::TooManyDimensions);
    }
    if q.filters.len() > STATS_FILTERS_MAX {
        return Err(QueryError::TooManyFilters);
    }
    for (i, d) in q.by.iter().enumerate() {
        if q.by[..i].contains(d) {
            return Err(QueryError::RepeatedDimension(*d));
        }
    }
    Ok(())
}

/// Answers a caseload question from a state's cube (its reference date).
pub fn caseload(
    state: &ProjectionState,
    q: &CaseloadQuery,
    rules: &SuppressionRules,
) -> Result<Table, QueryError> {
    validate(q)?;
    let mut filters: Vec<(Dim, Vec<u32>)> = Vec::with_capacity(q.filters.len());
    for f in &q.filters {
        let mut vals = Vec::new();
        for v in &f.values {
            if let Some(n) = f.dim.parse_value(v, state)? {
                vals.push(n);
            }
        }
        filters.push((f.dim, vals));
    }
    let mut groups: HashMap<[u32; 3], u64> = HashMap::new();
    let mut total = 0u64;
    'cells: for (cell, n) in state.cube().iter() {
        for (dim, vals) in &filters {
            if !vals.contains(&dim.value(&cell)) {
                continue 'cells;
            }
        }
        let mut key = [0u32; 3];
        for (i, d) in q.by.iter().enumerate() {
            key[i] = d.value(&cell);
        }
        *groups.entry(key).or_insert(0) += n;
        total += n;
    }
    let mut keys: Vec<([u32; 3], u64)> = groups.into_iter().collect();
    keys.sort_unstable();
    let position: Position = state.position();
    let mut table = Table {
        dims: q.by.clone(),
        rows: keys
            .iter()
            .map(|(k, n)| Row {
                values: q
                    .by
                    .iter()
                    .enumerate()
                    .map(|(i, d)| d.label(k[i], state))
                    .collect(),
                count: Some(*n),
            })
            .collect(),
        total: Some(total),
        as_of_date: state.cube_date().to_string(),
        seq: position.seq,
        hash: position.hash_hex(),
        published: q.published,
        suppressed_cells: 0,
    };
    if q.published {
        let filter_sensitive = q.filters.iter().any(|f| {
            f.dim == Dim::Municipality
                || (f.dim == Dim::Minor && f.values.iter().any(|v| v == "true"))
                || (f.dim == Dim::AgeBand
                    && f.values
                        .iter()
                        .any(|v| AgeBand::parse(v).is_some_and(|b| b.is_minor())))
        });
        let sensitive: Vec<bool> = keys
            .iter()
            .map(|(k, _)| {
                filter_sensitive
                    || q.by.iter().enumerate().any(|(i, d)| match d {
                        Dim::Municipality => true,
                        Dim::Minor => k[i] == 1,
                        Dim::AgeBand => AgeBand::ALL[k[i] as usize].is_minor(),
                        _ => false,
                    })
            })
            .collect();
        let coords: Vec<Vec<u32>> = keys.iter().map(|(k, _)| k[..q.by.len()].to_vec()).collect();
        let counts: Vec<u64> = keys.iter().map(|(_, n)| *n).collect();
        let outcome = suppress(&coords, &counts, &sensitive, rules, true);
        for (row, hidden) in table.rows.iter_mut().zip(&outcome.hidden) {
            if *hidden {
                row.count = None;
            }
        }
        table.suppressed_cells = outcome.hidden.iter().filter(|h| **h).count();
        if outcome.hide_total || (total > 0 && total < rules.threshold(filter_sensitive)) {
            table.total = None;
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Date, Event, Sealed};
    use crate::projection::state::case_key;

    fn registered(nationality: &str) -> Event {
        Event::PersonRegistered {
            on: Date::new(2024, 3, 1).unwrap(),
            identity: Sealed(vec![1]),
            sex: Sex::Female,
            birth_year: 1990,
            birth_month: 5,
            nationality: CountryCode::parse(nationality).unwrap(),
            department: Department::new(5).unwrap(),
            municipality: Municipality::new(5001).unwrap(),
            documents: vec![],
        }
    }

    #[test]
    fn nationality_is_a_dimension_and_a_filter() {
        let mut s = ProjectionState::new(Date::new(2025, 1, 1).unwrap());
        for (i, n) in ["VEN", "VEN", "VEN", "ECU", "XXA"].iter().enumerate() {
            s.apply_event(case_key(&format!("case-{i}")), &registered(n));
        }
        let q = CaseloadQuery {
            by: vec![Dim::Nationality],
            ..Default::default()
        };
        let t = caseload(&s, &q, &SuppressionRules::default()).unwrap();
        let got: Vec<(String, Option<u64>)> = t.rows.iter().map(|r| (r.values[0].clone(), r.count)).collect();
        assert_eq!(
            got,
            [
                ("ECU".into(), Some(1)),
                ("VEN".into(), Some(3)),
                ("XXA".into(), Some(1))
            ]
        );
        let q = CaseloadQuery {
            by: vec![Dim::Department],
            filters: vec![Filter::parse("nationality=ECU|XXA").unwrap()],
            published: false,
        };
        assert_eq!(
            caseload(&s, &q, &SuppressionRules::default()).unwrap().total,
            Some(2)
        );
        let q = CaseloadQuery {
            by: vec![],
            filters: vec![Filter::parse("nationality=ZZZ").unwrap()],
            published: false,
        };
        let e = caseload(&s, &q, &SuppressionRules::default()).unwrap_err();
        assert!(e.to_string().contains("unknown nationality value \"ZZZ\""), "{e}");
        for n in CountryCode::all() {
            assert_eq!(nationality_of(nationality_value(Some(n))), Some(n));
        }
    }

    #[test]
    fn exits_count_by_destination_unknown_when_not_recorded() {
        use crate::domain::ExitKind;
        let mut s = ProjectionState::new(Date::new(2025, 1, 1).unwrap());
        let exits = [
            (ExitKind::Departed, Some("PER")),
            (ExitKind::Departed, Some("PER")),
            (ExitKind::Departed, None),
            (ExitKind::Deceased, None),
        ];
        for i in 0..6 {
            let key = case_key(&format!("case-{i}"));
            s.apply_event(key, &registered("VEN"));
            if let Some((kind, destination)) = exits.get(i) {
                s.apply_event(
                    key,
                    &Event::ExitRecorded {
                        on: Date::new(2024, 6, 1).unwrap(),
                        kind: *kind,
                        destination: destination.and_then(CountryCode::parse),
                    },
                );
            }
        }
        let q = CaseloadQuery {
            by: vec![Dim::ExitDestination],
            ..Default::default()
        };
        let t = caseload(&s, &q, &SuppressionRules::default()).unwrap();
        let got: Vec<(String, Option<u64>)> = t.rows.iter().map(|r| (r.values[0].clone(), r.count)).collect();
        assert_eq!(
            got,
            [
                ("NONE".into(), Some(3)),
                ("PER".into(), Some(2)),
                ("UNKNOWN".into(), Some(1))
            ]
        );
        let q = CaseloadQuery {
            by: vec![],
            filters: vec![
                Filter::parse("exit_destination=PER|UNKNOWN").unwrap(),
                Filter::parse("status=DEPARTED").unwrap(),
            ],
            published: false,
        };
        assert_eq!(
            caseload(&s, &q, &SuppressionRules::default()).unwrap().total,
            Some(3)
        );
        for bad in ["XXA", "PE"] {
            let q = CaseloadQuery {
                by: vec![],
                filters: vec![Filter::parse(&format!("exit_destination={bad}")).unwrap()],
                published: false,
            };
            assert!(caseload(&s, &q, &SuppressionRules::default()).is_err(), "{bad}");
        }
    }
}
