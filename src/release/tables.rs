//! The tables of a release, the identities that tie them together, and the
//! disclosure rule across tables (docs/RELEASES.md §3, §5).
//!
//! Each table is first suppressed on its own with the statistics' rules
//! (`projection::suppress`, as `registry stats --published` does); then
//! [`protect`] hides more cells until no identity of the release has exactly
//! one hidden cell, so that no hidden cell can be solved from one identity
//! whose other cells are published, nor from a chain of such identities.
//! [`check_identities`] and [`first_recoverable`] are what `registry release
//! verify` checks on the published cells.

use crate::projection::export::{self, LongTable, ObsStatus, TableKind};
use crate::projection::{caseload, CaseloadQuery, Dim, Metric, ProjectionState, SuppressionRules};

/// The SDMX code of a total (the cross-domain convention).
pub const TOTAL_CODE: &str = "_T";

/// A table of a release: what it is and how it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSpec {
    /// Dataflow id (also the data structure's id, prefixed `DSD_`).
    pub id: &'static str,
    /// File stem: `<stem>.csv`, `<stem>.structure.json`.
    pub stem: &'static str,
    /// What the table counts, in words.
    pub description: &'static str,
    /// Dimensions in column order: (SDMX id, codebook dimension).
    pub dims: &'static [(&'static str, &'static str)],
}

/// Every table of a release, in manifest order.
pub const TABLES: [TableSpec; 5] = [
    TableSpec {
        id: "CASELOAD_STATUS",
        stem: "caseload_status",
        description: "Persons registered, by derived status on the reference date; STATUS=_T is all persons",
        dims: &[("STATUS", "status")],
    },
    TableSpec {
        id: "CASELOAD_DEPARTMENT_STATUS",
        stem: "caseload_department_status",
        description: "Persons registered, by DIVIPOLA department of residence and derived status",
        dims: &[("DEPARTMENT", "department"), ("STATUS", "status")],
    },
    TableSpec {
        id: "CASELOAD_SEX_STATUS",
        stem: "caseload_sex_status",
        description: "Persons registered, by sex and derived status",
        dims: &[("SEX", "sex"), ("STATUS", "status")],
    },
    TableSpec {
        id: "FUNNEL",
        stem: "funnel",
        description: "Every case's current application, by the furthest step it reached",
        dims: &[("STEP", "step")],
    },
    TableSpec {
        id: "SERIES",
        stem: "series",
        description: "Events by metric and business-date month (each metric from its first to its last month with a count)",
        dims: &[("METRIC", "metric"), ("TIME_PERIOD", "month")],
    },
];

/// The spec of a table id.
pub fn spec(id: &str) -> Option<&'static TableSpec> {
    TABLES.iter().find(|t| t.id == id)
}

/// One observation: its dimension codes and its published value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRow {
    /// The dimension codes, in column order.
    pub key: Vec<String>,
    /// `None`: suppressed.
    pub value: Option<u64>,
}

impl DataRow {
    /// The row's `OBS_STATUS`: suppressed (no value), zero, or observed (> 0).
    pub fn obs_status(&self) -> ObsStatus {
        match self.value {
            None => ObsStatus::Suppressed,
            Some(0) => ObsStatus::Zero,
            Some(_) => ObsStatus::Observed,
        }
    }
}

/// A table as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataTable {
    /// Which table.
    pub spec: &'static TableSpec,
    /// Its observations, in order.
    pub rows: Vec<DataRow>,
}

impl DataTable {
    /// `DIM=code, ...` of a row, for messages.
    pub fn describe(&self, row: usize) -> String {
        self.spec
            .dims
            .iter()
            .zip(&self.rows[row].key)
            .map(|((d, _), v)| format!("{d}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn rows_of(t: &LongTable) -> Vec<DataRow> {
    t.rows
        .iter()
        .map(|r| DataRow {
            key: r.values.clone(),
            value: r.count,
        })
        .collect()
}

/// The published tables at the state's position, protected across tables,
/// and the caseload table by department and status in long format (for the
/// codebook, whose department codes it completes).
pub fn build(
    state: &ProjectionState,
    rules: &SuppressionRules,
) -> Result<(Vec<DataTable>, LongTable), TablesError> {
    let by = |dims: Vec<Dim>| -> Result<LongTable, TablesError> {
        let q = CaseloadQuery {
            by: dims,
            filters: Vec::new(),
            published: true,
        };
        Ok(export::from_caseload(&caseload(state, &q, rules)?, &[]))
    };
    let status = by(vec![Dim::Status])?;
    let mut status_rows = rows_of(&status);
    status_rows.push(DataRow {
        key: vec![TOTAL_CODE.to_string()],
        value: status.total,
    });
    let department = by(vec![Dim::Department, Dim::Status])?;
    let sex = by(vec![Dim::Sex, Dim::Status])?;
    let funnel = export::from_points(
        TableKind::Funnel,
        &crate::projection::funnel(state, true, rules),
        &[],
        None,
        None,
        true,
    );
    let mut series = Vec::new();
    for m in Metric::ALL {
        let p = crate::projection::series(state, m, None, None, true, rules);
        series.extend(rows_of(&export::from_points(
            TableKind::Series,
            &p,
            &[],
            None,
            None,
            true,
        )));
    }
    let mut tables = vec![
        DataTable {
            spec: &TABLES[0],
            rows: status_rows,
        },
        DataTable {
            spec: &TABLES[1],
            rows: rows_of(&department),
        },
        DataTable {
            spec: &TABLES[2],
            rows: rows_of(&sex),
        },
        DataTable {
            spec: &TABLES[3],
            rows: rows_of(&funnel),
        },
        DataTable {
            spec: &TABLES[4],
            rows: series,
        },
    ];
    let ids = identities(&tables)?;
    protect(&mut tables, &ids);
    Ok((tables, department))
}

/// A cell of a release: table index and row index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellRef {
    /// Index of the table in the release.
    pub table: usize,
    /// Index of the row in that table.
    pub row: usize,
}

/// `total = sum of terms`, an identity every release holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The identity's name.
    pub name: String,
    /// The cell that is the total.
    pub total: CellRef,
    /// The cells that sum to it.
    pub terms: Vec<CellRef>,
}

/// Why the tables of a release cannot be built, do not make up its
/// identities, or break one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TablesError {
    /// A caseload question of the release refused by the projection.
    #[error(transparent)]
    Query(#[from] crate::projection::QueryError),
    /// A table the identities tie together (this id) is not in the release.
    #[error("table {0} is missing")]
    Missing(&'static str),
    /// `CASELOAD_STATUS` has no total row (`STATUS=_T`).
    #[error("CASELOAD_STATUS has no STATUS={TOTAL_CODE} row")]
    NoTotal,
    /// A row of `table` (described) whose status the parent does not list.
    #[error("{table} row ({row}) has a status that CASELOAD_STATUS does not list")]
    UnknownStatus {
        /// The child table's id (`CASELOAD_DEPARTMENT_STATUS` or `CASELOAD_SEX_STATUS`).
        table: &'static str,
        /// The row, as `DIM=code, ...`.
        row: String,
    },
    /// An identity whose cells are all published does not add up.
    #[error("identity {identity} does not hold: the total is {total}, the terms add up to {published}")]
    Sum {
        /// The identity's name.
        identity: String,
        /// The published total.
        total: u64,
        /// The sum of its (all published) terms.
        published: u64,
    },
    /// An identity with hidden terms cannot hold: the total is below the
    /// published terms plus 1 per hidden term.
    #[error(
        "identity {identity} does not hold: the total is {total}, but the published terms add up to \
         {published} and {hidden} hidden term(s) hold at least 1 each"
    )]
    Bound {
        /// The identity's name.
        identity: String,
        /// The published total.
        total: u64,
        /// The sum of its published terms.
        published: u64,
        /// How many of its terms are suppressed (each holds at least 1).
        hidden: u64,
    },
}

fn table_index(tables: &[DataTable], id: &'static str) -> Result<usize, TablesError> {
    tables
        .iter()
        .position(|t| t.spec.id == id)
        .ok_or(TablesError::Missing(id))
}

/// The identities (docs/RELEASES.md §5):
/// - `CASELOAD_STATUS[_T]` = the sum of `CASELOAD_STATUS` over every other status;
/// - for each status `s` other than `_T`: `CASELOAD_STATUS[s]` = the sum of
///   `CASELOAD_DEPARTMENT_STATUS[*, s]`, and = the sum of `CASELOAD_SEX_STATUS[*, s]`.
pub fn identities(tables: &[DataTable]) -> Result<Vec<Identity>, TablesError> {
    let status = table_index(tables, "CASELOAD_STATUS")?;
    let mut out = Vec::new();
    let rows = &tables[status].rows;
    let total_row = rows
        .iter()
        .position(|r| r.key == [TOTAL_CODE])
        .ok_or(TablesError::NoTotal)?;
    out.push(Identity {
        name: format!("CASELOAD_STATUS[STATUS={TOTAL_CODE}] = sum of CASELOAD_STATUS[STATUS=*]"),
        total: CellRef {
            table: status,
            row: total_row,
        },
        terms: (0..rows.len())
            .filter(|&i| i != total_row)
            .map(|row| CellRef { table: status, row })
            .collect(),
    });
    for child_id in ["CASELOAD_DEPARTMENT_STATUS", "CASELOAD_SEX_STATUS"] {
        let child = table_index(tables, child_id)?;
        let first_dim = tables[child].spec.dims[0].0;
        for (row, r) in rows.iter().enumerate() {
            if row == total_row {
                continue;
            }
            let s = &r.key[0];
            out.push(Identity {
                name: format!("CASELOAD_STATUS[STATUS={s}] = sum of {child_id}[{first_dim}=*, STATUS={s}]"),
                total: CellRef { table: status, row },
                terms: tables[child]
                    .rows
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.key.get(1) == Some(s))
                    .map(|(i, _)| CellRef { table: child, row: i })
                    .collect(),
            });
        }
        // Every child row belongs to some status of the parent.
        if let Some(i) = tables[child]
            .rows
            .iter()
            .position(|c| !rows.iter().any(|p| Some(&p.key[0]) == c.key.get(1)))
        {
            return Err(TablesError::UnknownStatus {
                table: child_id,
                row: tables[child].describe(i),
            });
        }
    }
    Ok(out)
}

fn value(tables: &[DataTable], c: CellRef) -> Option<u64> {
    tables[c.table].rows[c.row].value
}

fn cells(id: &Identity) -> impl Iterator<Item = CellRef> + '_ {
    std::iter::once(id.total).chain(id.terms.iter().copied())
}

/// Hides cells until no identity has exactly one hidden cell. A hidden cell
/// always holds at least 1 (only counts > 0 are ever hidden), so a
/// complement is always found: the smallest published non-zero term, else
/// the total.
pub fn protect(tables: &mut [DataTable], ids: &[Identity]) {
    loop {
        let mut changed = false;
        for id in ids {
            let hidden: Vec<CellRef> = cells(id).filter(|&c| value(tables, c).is_none()).collect();
            if hidden.len() != 1 {
                continue;
            }
            let complement = id
                .terms
                .iter()
                .copied()
                .filter(|&c| value(tables, c).is_some_and(|v| v > 0))
                .min_by_key(|&c| (value(tables, c), c))
                .or_else(|| Some(id.total).filter(|&c| value(tables, c).is_some_and(|v| v > 0)));
            if let Some(c) = complement {
                tables[c.table].rows[c.row].value = None;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// Checks every identity on the published cells: with every cell published,
/// the total equals the sum; with the total published and k terms hidden,
/// the total minus the published terms is at least k (each hidden cell
/// holds at least 1). Names the identity and the numbers on failure.
pub fn check_identities(tables: &[DataTable], ids: &[Identity]) -> Result<(), TablesError> {
    for id in ids {
        let Some(total) = value(tables, id.total) else {
            continue;
        };
        let published: u64 = id.terms.iter().filter_map(|&c| value(tables, c)).sum();
        let hidden = id.terms.iter().filter(|&&c| value(tables, c).is_none()).count() as u64;
        if hidden == 0 && published != total {
            return Err(TablesError::Sum {
                identity: id.name.clone(),
                total,
                published,
            });
        }
        if hidden > 0 && total < published + hidden {
            return Err(TablesError::Bound {
                identity: id.name.clone(),
                total,
                published,
                hidden,
            });
        }
    }
    Ok(())
}

/// A reader who solves identities with a single hidden cell, repeatedly
/// (each solved cell then counting as known), recovers something exactly
/// when some identity has a single hidden cell to begin with: the first
/// such cell, with the identity that gives it away; `None` when there is none.
pub fn first_recoverable(tables: &[DataTable], ids: &[Identity]) -> Option<(CellRef, String)> {
    ids.iter().find_map(|id| {
        let hidden: Vec<CellRef> = cells(id).filter(|&c| value(tables, c).is_none()).collect();
        match hidden[..] {
            [c] => Some((c, id.name.clone())),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(spec: usize, rows: &[(&[&str], Option<u64>)]) -> DataTable {
        DataTable {
            spec: &TABLES[spec],
            rows: rows
                .iter()
                .map(|(k, v)| DataRow {
                    key: k.iter().map(|s| s.to_string()).collect(),
                    value: *v,
                })
                .collect(),
        }
    }

    fn release(
        status: &[(&[&str], Option<u64>)],
        dept: &[(&[&str], Option<u64>)],
        sex: &[(&[&str], Option<u64>)],
    ) -> Vec<DataTable> {
        vec![t(0, status), t(1, dept), t(2, sex)]
    }

    #[test]
    fn a_status_hidden_alone_is_protected_in_its_children() {
        // IRREGULAR (12) hidden by the 1-D rule, but its department column
        // and its sex column are published: their sums would give it away.
        let mut r = release(
            &[
                (&["IRREGULAR"], None),
                (&["IN_PROCESS"], None),
                (&["_T"], Some(20)),
            ],
            &[
                (&["05", "IRREGULAR"], Some(6)),
                (&["08", "IRREGULAR"], Some(6)),
                (&["05", "IN_PROCESS"], None),
                (&["08", "IN_PROCESS"], None),
            ],
            &[(&["F", "IRREGULAR"], Some(12)), (&["F", "IN_PROCESS"], Some(8))],
        );
        let ids = identities(&r).unwrap();
        assert!(first_recoverable(&r, &ids).is_some());
        protect(&mut r, &ids);
        assert_eq!(first_recoverable(&r, &ids), None);
        check_identities(&r, &ids).unwrap();
        // Each status's sex column had one published cell: it is hidden
        // too; the department columns already had two hidden cells or more.
        assert_eq!(r[2].rows[0].value, None);
        assert_eq!(r[2].rows[1].value, None);
        assert_eq!(r[1].rows[0].value, None, "IRREGULAR's department column");
        assert_eq!(r[0].rows[2].value, Some(20), "the total stays");
    }

    #[test]
    fn identities_catch_a_changed_cell_and_bounds_catch_too_small_totals() {
        let r = release(
            &[(&["IRREGULAR"], Some(10)), (&["_T"], Some(10))],
            &[(&["05", "IRREGULAR"], Some(6)), (&["08", "IRREGULAR"], Some(5))],
            &[(&["F", "IRREGULAR"], Some(10))],
        );
        let ids = identities(&r).unwrap();
        let e = check_identities(&r, &ids).unwrap_err().to_string();
        assert!(
            e.contains("CASELOAD_DEPARTMENT_STATUS") && e.contains("add up to 11"),
            "{e}"
        );
        let r = release(
            &[(&["IRREGULAR"], Some(7)), (&["_T"], Some(7))],
            &[
                (&["05", "IRREGULAR"], Some(6)),
                (&["08", "IRREGULAR"], None),
                (&["11", "IRREGULAR"], None),
            ],
            &[(&["F", "IRREGULAR"], Some(7))],
        );
        let e = check_identities(&r, &identities(&r).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 hidden term(s)"), "{e}");
    }
}
