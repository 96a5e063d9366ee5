//! Tables for statisticians (docs/STATISTICS.md, "Tables for statisticians"):
//! every statistic in long format (one column per dimension, a `count`
//! column and an `obs_status` column), zero cells included where the
//! dimensions' code lists are bounded, written as CSV (the `csv` crate) with
//! a Frictionless Table Schema beside it, or as JSON; and the codebook that
//! goes with every export.
//!
//! The same [`LongTable`] is built from a stopped store's answer and from a
//! running server's gRPC answer, so both give the same bytes.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::query::{Dim, Filter, Table};
use super::suppress::SuppressionRules;
use super::{month_index, month_label, Metric, Points};
use crate::domain::{
    AgeBand, CertificationRoute, CertificationStage, ChannelCatalog, CountryCode, Date, Municipality,
    PermitType, PersonStatus, Sector, Sex, DEPARTMENTS, DIVIPOLA_VERSION, ISO_3166_VERSION,
};

/// The note on coverage every codebook carries.
pub const COVERAGE_NOTE: &str = "Counts are of people known to this registry: persons registered in it, by \
their derived status. IRREGULAR counts persons registered here who have no regular status on the reference \
date; it is not Migración Colombia's estimate of people in Colombia without regular status (486,072), most of \
whom never registered.";

/// The municipality rule (no zero cells).
pub const MUNICIPALITY_RULE: &str = "Tables broken down by municipality, nationality or exit destination list observed \
cells only (a count, or suppressed): a combination that is not listed has a count of zero. Every other breakdown lists every \
combination of its dimensions' codes in this codebook (restricted by the table's filters), zero cells included.";

/// Observation status of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObsStatus {
    /// A count > 0 is published.
    Observed,
    /// Hidden by disclosure control (count left empty).
    Suppressed,
    /// Nobody: the count is 0.
    Zero,
}

impl ObsStatus {
    /// Every status, in codebook order.
    pub const ALL: [ObsStatus; 3] = [ObsStatus::Observed, ObsStatus::Suppressed, ObsStatus::Zero];

    /// The code in the `obs_status` column (`observed`, `suppressed`, `zero`).
    pub fn as_str(self) -> &'static str {
        match self {
            ObsStatus::Observed => "observed",
            ObsStatus::Suppressed => "suppressed",
            ObsStatus::Zero => "zero",
        }
    }

    fn definition(self) -> &'static str {
        match self {
            ObsStatus::Observed => "count > 0, published",
            ObsStatus::Suppressed => {
                "hidden by disclosure control (primary: under the threshold; or secondary: a complement \
                 protecting another hidden cell); count is empty"
            }
            ObsStatus::Zero => "count is 0",
        }
    }

    fn of(count: Option<u64>) -> ObsStatus {
        match count {
            None => ObsStatus::Suppressed,
            Some(0) => ObsStatus::Zero,
            Some(_) => ObsStatus::Observed,
        }
    }
}

/// Which statistic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TableKind {
    /// Persons by derived status and the `--by` dimensions on the reference date.
    Caseload,
    /// Events per business-date month of one metric (`--metric`).
    Series,
    /// Current applications by funnel step.
    Funnel,
    /// Skills certifications by route, sector and stage.
    Certifications,
    /// Permits held by the month their validity ends.
    ExpiringPermits,
    /// Worklist entries by list and department (offline only).
    Worklists,
}

impl TableKind {
    /// The table's name in exports and the codebook (`expiring_permits`
    /// with an underscore; the flag value has a dash).
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Caseload => "caseload",
            TableKind::Series => "series",
            TableKind::Funnel => "funnel",
            TableKind::Certifications => "certifications",
            TableKind::ExpiringPermits => "expiring_permits",
            TableKind::Worklists => "worklists",
        }
    }
}

/// One row in long format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LongRow {
    /// Codes, in the order of the table's dimensions.
    pub values: Vec<String>,
    /// `None` when suppressed.
    pub count: Option<u64>,
    /// Whether the count is published, suppressed or zero.
    pub obs_status: ObsStatus,
}

/// A statistic in long format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LongTable {
    /// Which statistic the table holds.
    pub kind: TableKind,
    /// Column names of the dimensions.
    pub dims: Vec<String>,
    /// The rows, one per combination of codes.
    pub rows: Vec<LongRow>,
    /// Caseload: persons matching the filters (`None`: withheld). Other tables: `None`.
    pub total: Option<u64>,
    /// Caseload: the date statuses and ages are counted on.
    pub as_of_date: Option<String>,
    /// Log position reflected.
    pub seq: u64,
    /// The chain hash at `seq`, hex.
    pub hash: String,
    /// Whether disclosure control was applied.
    pub published: bool,
}

/// Codes and labels of a dimension, in codebook order.
fn codes(dim: &str) -> Vec<(String, String)> {
    let own = |code: &str, label: &str| (code.to_string(), label.to_string());
    match dim {
        "status" => PersonStatus::ALL
            .iter()
            .map(|s| own(s.as_str(), status_definition(*s)))
            .collect(),
        "department" => DEPARTMENTS
            .iter()
            .map(|(c, name)| (format!("{c:02}"), name.to_string()))
            .collect(),
        "municipality" => Municipality::all()
            .map(|m| (m.to_string(), m.name().to_string()))
            .collect(),
        "sex" => Sex::ALL
            .iter()
            .map(|s| {
                own(
                    s.as_str(),
                    match s {
                        Sex::Female => "Female",
                        Sex::Male => "Male",
                        Sex::Unspecified => "Non-binary or not stated in the document",
                    },
                )
            })
            .collect(),
        "guardian" => vec![
            own(
                "LINKED",
                "An active family link names a guardian of the person (their case records WARD_OF)",
            ),
            own("NONE", "No active guardian link recorded"),
        ],
        "age_band" => AgeBand::ALL
            .iter()
            .map(|b| {
                own(
                    b.as_str(),
                    &format!("{} years (age on the reference date)", b.as_str()),
                )
            })
            .collect(),
        "minor" => vec![own("false", "18 or older"), own("true", "under 18")],
        "channel" => ChannelCatalog::builtin()
            .channels()
            .iter()
            .map(|c| own(c.code.as_str(), &c.name))
            .chain([own("NONE", "no current application")])
            .collect(),
        "permit_type" => [own("NONE", "no permit ever issued")]
            .into_iter()
            .chain(PermitType::ALL.iter().map(|t| {
                own(
                    t.as_str(),
                    match t {
                        PermitType::Ppt => "Temporary Protection Permit (ETPV)",
                        PermitType::PepTutor => "Special Permanence Permit for guardians of minors",
                        PermitType::VisaV => "Special visitor visa V",
                        PermitType::Sc2SafeConduct => "SC-2 safe-conduct of an asylum seeker",
                    },
                )
            }))
            .collect(),
        "nationality" => CountryCode::all()
            .map(|c| own(c.as_str(), c.name().unwrap_or("")))
            .collect(),
        "exit_destination" => [own(
            "NONE",
            "did not depart (no exit, or nationalized or deceased)",
        )]
        .into_iter()
        .chain([own("UNKNOWN", "departed, destination not recorded")])
        .chain(
            CountryCode::all()
                .filter(|c| !c.as_str().starts_with("XX"))
                .map(|c| own(c.as_str(), c.name().unwrap_or(""))),
        )
        .collect(),
        "metric" => Metric::ALL
            .iter()
            .map(|m| own(m.as_str(), metric_definition(*m)))
            .collect(),
        "step" => super::facts::funnel::STEPS
            .iter()
            .map(|(s, _)| own(s, step_definition(s)))
            .collect(),
        "route" => CertificationRoute::ALL
            .iter()
            .map(|r| own(r.as_str(), r.as_str()))
            .collect(),
        "sector" => Sector::ALL.iter().map(|s| own(s.as_str(), s.as_str())).collect(),
        "list" => crate::worklist::Kind::ALL
            .iter()
            .map(|k| own(k.as_str(), list_definition(*k)))
            .collect(),
        "stage" => CertificationStage::ALL
            .iter()
            .map(|s| own(s.as_str(), s.as_str()))
            .collect(),
        _ => Vec::new(),
    }
}

fn status_definition(s: PersonStatus) -> &'static str {
    match s {
        PersonStatus::Irregular => {
            "Registered in this registry but without regular status on the reference date (no permit, visa or \
             application in process)"
        }
        PersonStatus::InProcess => "An application is in process (pre-registered, under review or under appeal)",
        PersonStatus::RegularPpt => "Holds an active PPT (Temporary Protection Permit)",
        PersonStatus::RegularVisa => "Holds a valid visa",
        PersonStatus::RegularPepTutor => "Holds an active PEP-Tutor",
        PersonStatus::RegularOther => "Holds another active permit (Visa V, SC-2 ...)",
        PersonStatus::Nationalized => "Exited: became a Colombian national",
        PersonStatus::Departed => "Exited: left Colombia",
        PersonStatus::Deceased => "Exited: died",
    }
}

fn metric_definition(m: Metric) -> &'static str {
    match m {
        Metric::Registrations => "persons registered, by business date",
        Metric::PreRegistrations => "pre-registrations (applications opened)",
        Metric::BiometricCaptures => "biometric captures",
        Metric::DecisionsApproved => "approvals and appeals upheld",
        Metric::DecisionsDenied => "first-instance denials",
        Metric::PermitsIssued => "permits issued",
        Metric::CardsDelivered => "permit cards delivered",
        Metric::Cancellations => "permit cancellations",
        Metric::Erasures => "identity erasures",
    }
}

fn list_definition(k: crate::worklist::Kind) -> &'static str {
    use crate::worklist::Kind;
    match k {
        Kind::Appointments => "biometric appointments pending",
        Kind::MissedAppointments => "missed appointments to reschedule",
        Kind::AwaitingDecision => "applications awaiting a decision",
        Kind::DecisionOverdue => "applications past the legal decision date (before the reference date)",
        Kind::AppealableDenials => "denials whose appeal window is open on the reference date",
        Kind::AppealsAwaitingDecision => "appeals awaiting a decision",
        Kind::CardsAwaitingDelivery => "cards printed and not delivered",
        Kind::CardsNearAbandonment => "cards that may be declared abandoned by the reference date + 30 days",
        Kind::InterimExpiring => "interim certificates ending between the reference date and 30 days after",
        Kind::PermitsExpiring => "permits ending between the reference date and 30 days after",
        Kind::CertificationsAwaitingAssessment => "certifications awaiting assessment",
        Kind::SubjectRequestsDue => "data subject requests awaiting an answer",
    }
}

/// Worklist counts in long format: dimensions `list` and `department`,
/// every combination listed (zero cells), `as_of_date` the reference date
/// of the lists' windows. Published: disclosure control on the list x
/// department table with its total.
pub fn from_worklists(
    counts: &[(crate::worklist::Kind, u8, u64)],
    reference: Date,
    seq: u64,
    hash: String,
    published: bool,
    rules: &SuppressionRules,
) -> LongTable {
    let coords: Vec<Vec<u32>> = counts
        .iter()
        .map(|(k, d, _)| vec![*k as u32, u32::from(*d)])
        .collect();
    let values: Vec<u64> = counts.iter().map(|(_, _, n)| *n).collect();
    let hidden = if published {
        super::suppress::suppress(&coords, &values, &vec![false; values.len()], rules, true).hidden
    } else {
        vec![false; values.len()]
    };
    let cells = counts
        .iter()
        .zip(hidden)
        .map(|((k, d, n), h)| (k.as_str().to_string(), format!("{d:02}"), (!h).then_some(*n)))
        .collect();
    worklists_table(cells, reference, seq, hash, published)
}

/// The worklist counts' long table from cells already under disclosure
/// control: (list code, department code, count or `None` if hidden), as the
/// server's `WorklistCounts` answers them.
pub fn worklists_table(
    cells: Vec<(String, String, Option<u64>)>,
    reference: Date,
    seq: u64,
    hash: String,
    published: bool,
) -> LongTable {
    let observed = cells
        .into_iter()
        .map(|(list, department, count)| LongRow {
            values: vec![list, department],
            count,
            obs_status: ObsStatus::of(count),
        })
        .collect();
    let dims = vec!["list".to_string(), "department".to_string()];
    let lists = dims
        .iter()
        .map(|d| codes(d).into_iter().map(|(c, _)| c).collect())
        .collect();
    LongTable {
        kind: TableKind::Worklists,
        rows: fill_and_sort(&dims, observed, Some(lists)),
        dims,
        total: None,
        as_of_date: Some(reference.to_string()),
        seq,
        hash,
        published,
    }
}

fn step_definition(step: &str) -> &'static str {
    match step {
        "PRE_REGISTERED" => "current application pre-registered",
        "BIOMETRICS" => "biometrics captured for it",
        "APPROVED" => "approved",
        "PRINTED" => "its permit card printed",
        _ => "its permit card delivered",
    }
}

/// The sort key of a code on a dimension: its place in the codebook, codes
/// not in the codebook after, by text.
fn order_key(index: &HashMap<String, usize>, code: &str) -> (usize, String) {
    (index.get(code).copied().unwrap_or(usize::MAX), code.to_string())
}

/// Adds zero rows for every combination of `lists` (one per dimension) not
/// observed, and sorts by the codebook order of each dimension.
fn fill_and_sort(dims: &[String], observed: Vec<LongRow>, lists: Option<Vec<Vec<String>>>) -> Vec<LongRow> {
    let mut rows = observed;
    if let Some(lists) = lists {
        let seen: std::collections::HashSet<Vec<String>> = rows.iter().map(|r| r.values.clone()).collect();
        let mut combos: Vec<Vec<String>> = vec![Vec::new()];
        for list in &lists {
            combos = combos
                .into_iter()
                .flat_map(|prefix| {
                    list.iter().map(move |code| {
                        let mut c = prefix.clone();
                        c.push(code.clone());
                        c
                    })
                })
                .collect();
        }
        for c in combos {
            if !seen.contains(&c) {
                rows.push(LongRow {
                    values: c,
                    count: Some(0),
                    obs_status: ObsStatus::Zero,
                });
            }
        }
    }
    let indexes: Vec<HashMap<String, usize>> = dims
        .iter()
        .map(|d| {
            let mut codes: Vec<String> = codes(d).into_iter().map(|(c, _)| c).collect();
            if d == "month" {
                codes.clear();
            }
            codes.into_iter().enumerate().map(|(i, c)| (c, i)).collect()
        })
        .collect();
    rows.sort_by_cached_key(|r| {
        r.values
            .iter()
            .zip(&indexes)
            .map(|(v, ix)| order_key(ix, v))
            .collect::<Vec<_>>()
    });
    rows
}

/// A caseload answer in long format. Zero cells are added for every
/// combination of the dimensions' codes (restricted to a filter's values on
/// that dimension), unless municipality is a dimension.
pub fn from_caseload(t: &Table, filters: &[Filter]) -> LongTable {
    let dims: Vec<String> = t.dims.iter().map(|d| d.as_str().to_string()).collect();
    let observed: Vec<LongRow> = t
        .rows
        .iter()
        .map(|r| LongRow {
            values: r.values.clone(),
            count: r.count,
            obs_status: ObsStatus::of(r.count),
        })
        .collect();
    let observed_only = [Dim::Municipality, Dim::Nationality, Dim::ExitDestination]
        .iter()
        .any(|d| t.dims.contains(d));
    let lists = (!observed_only).then(|| {
        t.dims
            .iter()
            .map(|d| {
                let allowed: Vec<&String> = filters
                    .iter()
                    .filter(|f| f.dim == *d)
                    .flat_map(|f| f.values.iter())
                    .collect();
                let restricted = filters.iter().any(|f| f.dim == *d);
                codes(d.as_str())
                    .into_iter()
                    .map(|(c, _)| c)
                    .filter(|c| !restricted || allowed.contains(&c))
                    .collect()
            })
            .collect()
    });
    LongTable {
        kind: TableKind::Caseload,
        rows: fill_and_sort(&dims, observed, lists),
        dims,
        total: t.total,
        as_of_date: Some(t.as_of_date.clone()),
        seq: t.seq,
        hash: t.hash.clone(),
        published: t.published,
    }
}

/// Every month label from `from` to `to` (month indexes), inclusive.
fn months(from: u32, to: u32) -> Vec<String> {
    (from..=to).map(month_label).collect()
}

fn month_of(label: &str) -> Option<u32> {
    let month = label.split('/').next().unwrap_or(label);
    Date::parse(&format!("{month}-01")).map(month_index)
}

/// A month range for zero cells: the bounds asked, else the months observed.
fn month_range(p: &Points, from: Option<u32>, to: Option<u32>) -> Vec<String> {
    let seen: Vec<u32> = p.points.iter().filter_map(|pt| month_of(&pt.label)).collect();
    let lo = from.or_else(|| seen.iter().min().copied());
    let hi = to.or_else(|| seen.iter().max().copied());
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo <= hi => months(lo, hi),
        _ => Vec::new(),
    }
}

/// A series, funnel, certifications or expiring-permits answer in long
/// format. `breakdown`: the certification breakdown (route, sector, stage,
/// in that order) or the series breakdown (up to two of department, sex,
/// age band, channel, status, in the order asked); `from`/`to`: the month range asked (series, expiring).
pub fn from_points(
    kind: TableKind,
    p: &Points,
    breakdown: &[&str],
    from: Option<u32>,
    to: Option<u32>,
    published: bool,
) -> LongTable {
    let (dims, lists): (Vec<String>, Vec<Vec<String>>) = match kind {
        TableKind::Series => (
            ["metric", "month"]
                .iter()
                .chain(breakdown)
                .map(|d| d.to_string())
                .collect(),
            [vec![p.what.clone()], month_range(p, from, to)]
                .into_iter()
                .chain(
                    breakdown
                        .iter()
                        .map(|d| codes(d).into_iter().map(|(c, _)| c).collect()),
                )
                .collect(),
        ),
        TableKind::ExpiringPermits => (vec!["month".into()], vec![month_range(p, from, to)]),
        TableKind::Funnel => (
            vec!["step".into()],
            vec![codes("step").into_iter().map(|(c, _)| c).collect()],
        ),
        TableKind::Certifications | TableKind::Caseload | TableKind::Worklists => (
            breakdown.iter().map(|d| d.to_string()).collect(),
            breakdown
                .iter()
                .map(|d| codes(d).into_iter().map(|(c, _)| c).collect())
                .collect(),
        ),
    };
    let observed: Vec<LongRow> = p
        .points
        .iter()
        .map(|pt| {
            let values = match kind {
                TableKind::Series => std::iter::once(p.what.clone())
                    .chain(pt.label.split('/').map(str::to_string))
                    .collect(),
                TableKind::Certifications | TableKind::Caseload if breakdown.is_empty() => Vec::new(),
                TableKind::Certifications | TableKind::Caseload => {
                    pt.label.split('/').map(str::to_string).collect()
                }
                _ => vec![pt.label.clone()],
            };
            LongRow {
                values,
                count: pt.count,
                obs_status: ObsStatus::of(pt.count),
            }
        })
        .collect();
    let lists = if dims.is_empty() { None } else { Some(lists) };
    LongTable {
        kind,
        rows: fill_and_sort(&dims, observed, lists),
        dims,
        total: None,
        as_of_date: None,
        seq: p.seq,
        hash: p.hash.clone(),
        published,
    }
}

/// Why a table could not be written as CSV or Parquet.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing a CSV record failed.
    #[error(transparent)]
    Csv(#[from] csv::Error),
    /// Flushing the CSV writer into its buffer failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Building the Parquet file failed.
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The table's `as_of_date` is not an ISO date.
    #[error("as_of_date {0:?} is not a date")]
    AsOfDate(String),
}

/// The metadata columns after `count` and `obs_status`.
fn meta_columns(t: &LongTable) -> Vec<&'static str> {
    let mut cols = Vec::new();
    if t.as_of_date.is_some() {
        cols.push("as_of_date");
    }
    cols.extend(["log_seq", "log_hash"]);
    cols
}

/// The rows written: a table without dimensions is its total (caseload) or
/// its one row.
fn written_rows(t: &LongTable) -> Vec<LongRow> {
    if t.dims.is_empty() && t.kind == TableKind::Caseload {
        return vec![LongRow {
            values: Vec::new(),
            count: t.total,
            obs_status: ObsStatus::of(t.total),
        }];
    }
    t.rows.clone()
}

/// CSV: UTF-8, a header row (`dims.., count, obs_status, [as_of_date,]
/// log_seq, log_hash`), one row per cell; a suppressed count is empty.
pub fn to_csv(t: &LongTable) -> Result<Vec<u8>, ExportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = t.dims.iter().map(String::as_str).collect();
    header.extend(["count", "obs_status"]);
    header.extend(meta_columns(t));
    w.write_record(&header)?;
    let seq = t.seq.to_string();
    for r in written_rows(t) {
        let mut rec: Vec<String> = r.values.clone();
        rec.push(r.count.map_or(String::new(), |n| n.to_string()));
        rec.push(r.obs_status.as_str().to_string());
        if let Some(d) = &t.as_of_date {
            rec.push(d.clone());
        }
        rec.push(seq.clone());
        rec.push(t.hash.clone());
        w.write_record(&rec)?;
    }
    Ok(w.into_inner().map_err(|e| e.into_error())?)
}

/// The `created_by` of every Parquet file (fixed, so that a table gives the
/// same bytes from a stopped store and from a server).
pub const PARQUET_CREATED_BY: &str = concat!("registry ", env!("CARGO_PKG_VERSION"), " (parquet-rs)");

/// The Parquet schema of a table: every dimension a required UTF-8 string
/// (`BYTE_ARRAY`, `STRING`), `count` an optional `INT64` (null when
/// suppressed), `obs_status` a string, `as_of_date` a `DATE` (caseload),
/// `log_seq` an `INT64`, `log_hash` a string.
pub fn parquet_schema(t: &LongTable) -> String {
    let mut fields: Vec<String> = t
        .dims
        .iter()
        .map(|d| format!("  REQUIRED BYTE_ARRAY {d} (STRING);"))
        .collect();
    fields.push("  OPTIONAL INT64 count;".into());
    fields.push("  REQUIRED BYTE_ARRAY obs_status (STRING);".into());
    if t.as_of_date.is_some() {
        fields.push("  REQUIRED INT32 as_of_date (DATE);".into());
    }
    fields.push("  REQUIRED INT64 log_seq;".into());
    fields.push("  REQUIRED BYTE_ARRAY log_hash (STRING);".into());
    format!("message {} {{\n{}\n}}\n", t.kind.as_str(), fields.join("\n"))
}

/// Apache Parquet: the long table of [`to_csv`] in one row group, the
/// columns of the CSV in the same order, uncompressed, written by the
/// `parquet` crate's column writer. Deterministic: no timestamps, a fixed
/// `created_by` ([`PARQUET_CREATED_BY`]).
pub fn to_parquet(t: &LongTable) -> Result<Vec<u8>, ExportError> {
    use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;

    let schema = Arc::new(parquet::schema::parser::parse_message_type(&parquet_schema(t))?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_created_by(PARQUET_CREATED_BY.to_string())
            .build(),
    );
    let rows = written_rows(t);
    let as_of_days: Option<i32> = match &t.as_of_date {
        Some(d) => Some(
            Date::parse(d)
                .ok_or_else(|| ExportError::AsOfDate(d.clone()))?
                .days_since_epoch() as i32,
        ),
        None => None,
    };
    let strings = |f: &dyn Fn(&LongRow) -> String| -> Vec<ByteArray> {
        rows.iter().map(|r| ByteArray::from(f(r).as_str())).collect()
    };
    let mut writer = SerializedFileWriter::new(Vec::new(), schema, props)?;
    let mut group = writer.next_row_group()?;
    let mut column = 0usize;
    let n = t.dims.len();
    while let Some(mut col) = group.next_column()? {
        let i = column;
        column += 1;
        if i < n {
            let v = strings(&|r: &LongRow| r.values[i].clone());
            col.typed::<ByteArrayType>().write_batch(&v, None, None)?;
        } else if i == n {
            let values: Vec<i64> = rows.iter().filter_map(|r| r.count.map(|c| c as i64)).collect();
            let defined: Vec<i16> = rows.iter().map(|r| r.count.is_some() as i16).collect();
            col.typed::<Int64Type>()
                .write_batch(&values, Some(&defined), None)?;
        } else if i == n + 1 {
            let v = strings(&|r: &LongRow| r.obs_status.as_str().to_string());
            col.typed::<ByteArrayType>().write_batch(&v, None, None)?;
        } else if let (Some(days), true) = (as_of_days, i == n + 2) {
            col.typed::<Int32Type>()
                .write_batch(&vec![days; rows.len()], None, None)?;
        } else if i == n + 2 + as_of_days.is_some() as usize {
            col.typed::<Int64Type>()
                .write_batch(&vec![t.seq as i64; rows.len()], None, None)?;
        } else {
            let v = strings(&|_: &LongRow| t.hash.clone());
            col.typed::<ByteArrayType>().write_batch(&v, None, None)?;
        }
        col.close()?;
    }
    group.close()?;
    Ok(writer.into_inner()?)
}

/// The description of a dimension column, for the Table Schema, the
/// codebook and SDMX concepts: what it means, and the codebook list of
/// its codes; empty for an unknown name.
pub fn dim_description(dim: &str) -> &'static str {
    match dim {
        "status" => "derived status on the reference date (codebook: status)",
        "department" => "DIVIPOLA department, two digits (codebook: department)",
        "municipality" => "DIVIPOLA municipality, five digits (codebook: municipality)",
        "sex" => "sex (codebook: sex)",
        "age_band" => "age band on the reference date (codebook: age_band)",
        "minor" => "\"true\" under 18 on the reference date",
        "channel" => "channel of the current application, NONE if none (codebook: channel)",
        "permit_type" => "type of the latest permit issued, NONE if never (codebook: permit_type)",
        "exit_destination" => {
            "destination country recorded with a departure, ISO 3166-1 alpha-3; UNKNOWN: departed without one; \
             NONE: did not depart (codebook: exit_destination)"
        }
        "nationality" => {
            "nationality recorded at registration, ISO 3166-1 alpha-3 (or an ICAO code: XXA stateless, XXB/XXC \
             refugee, XXX unspecified) (codebook: nationality)"
        }
        "guardian" => "LINKED when an active family link names a guardian of the person, else NONE; meaningful for minors (codebook: guardian)",
        "metric" => "what the series counts (codebook: metric)",
        "month" => "month YYYY-MM (series: business date of the events; expiring permits: end of validity)",
        "step" => "funnel step of every case's current application (codebook: step)",
        "route" => "certification route (codebook: route)",
        "sector" => "economic sector (codebook: sector)",
        "stage" => "certification stage (codebook: stage)",
        "list" => "caseworkers' worklist (codebook: list)",
        _ => "",
    }
}

/// The Frictionless Table Schema of the CSV (every code column a string).
pub fn table_schema(t: &LongTable) -> Value {
    let mut fields: Vec<Value> = t
        .dims
        .iter()
        .map(|d| {
            json!({
                "name": d,
                "type": "string",
                "description": dim_description(d),
                "constraints": {"required": true},
            })
        })
        .collect();
    fields.push(json!({
        "name": "count",
        "type": "integer",
        "description": "persons (caseload, funnel, expiring permits) or events (series) or certifications; empty when obs_status is suppressed",
        "constraints": {"minimum": 0},
    }));
    fields.push(json!({
        "name": "obs_status",
        "type": "string",
        "description": "observation status (codebook: obs_status)",
        "constraints": {"required": true, "enum": ObsStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()},
    }));
    if t.as_of_date.is_some() {
        fields.push(json!({
            "name": "as_of_date",
            "type": "date",
            "format": "default",
            "description": "the reference date: statuses and ages are counted on it",
            "constraints": {"required": true},
        }));
    }
    fields.push(json!({
        "name": "log_seq",
        "type": "integer",
        "description": "sequence number of the last log event the table reflects",
        "constraints": {"required": true, "minimum": 0},
    }));
    fields.push(json!({
        "name": "log_hash",
        "type": "string",
        "description": "chain hash of that event (64 hex digits)",
        "constraints": {"required": true, "pattern": "^[0-9a-f]{64}$"},
    }));
    let mut schema = json!({
        "fields": fields,
        "missingValues": [""],
    });
    if !t.dims.is_empty() {
        schema["primaryKey"] = json!(t.dims);
    }
    schema
}

/// JSON: the same long rows, with the table's metadata.
pub fn to_json(t: &LongTable) -> Value {
    let rows: Vec<Value> = written_rows(t)
        .iter()
        .map(|r| {
            let mut m = Map::new();
            for (d, v) in t.dims.iter().zip(&r.values) {
                m.insert(d.clone(), Value::String(v.clone()));
            }
            m.insert("count".into(), r.count.map_or(Value::Null, Value::from));
            m.insert("obs_status".into(), r.obs_status.as_str().into());
            Value::Object(m)
        })
        .collect();
    let mut out = json!({
        "table": t.kind.as_str(),
        "dimensions": t.dims,
        "published": t.published,
        "log_position": {"seq": t.seq, "hash": t.hash},
        "rows": rows,
    });
    if let Some(d) = &t.as_of_date {
        out["as_of_date"] = d.clone().into();
    }
    if t.kind == TableKind::Caseload {
        out["total"] = t.total.map_or(Value::Null, Value::from);
        out["total_obs_status"] = ObsStatus::of(t.total).as_str().into();
    }
    out
}

/// Aligned text for a terminal.
pub fn to_text(t: &LongTable) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = write!(out, "{}", t.kind.as_str());
    if let Some(d) = &t.as_of_date {
        let _ = write!(out, " as of {d}");
    }
    let _ = writeln!(
        out,
        " (log seq {}, hash {}){}",
        t.seq,
        t.hash,
        if t.published {
            ", published (disclosure control applied)"
        } else {
            ""
        }
    );
    let show = |r: &LongRow| match r.count {
        Some(n) => n.to_string(),
        None => "suppressed".to_string(),
    };
    let rows = written_rows(t);
    let widths: Vec<usize> = (0..t.dims.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.values[i].chars().count())
                .chain([t.dims[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (d, w) in t.dims.iter().zip(&widths) {
        let _ = write!(out, "{d:<w$}  ");
    }
    let _ = writeln!(out, "count");
    for r in &rows {
        for (v, w) in r.values.iter().zip(&widths) {
            let _ = write!(out, "{v:<w$}  ");
        }
        let _ = writeln!(out, "{}", show(r));
    }
    if t.kind == TableKind::Caseload && !t.dims.is_empty() {
        let _ = writeln!(
            out,
            "total: {}",
            t.total.map_or_else(|| "withheld".to_string(), |n| n.to_string())
        );
    }
    out
}

/// The codebook of an export: dimensions with codes and labels, DIVIPOLA
/// version and names, status definitions, observation statuses, reference
/// date, log position, disclosure rules and the coverage note.
pub fn codebook(t: &LongTable, rules: &SuppressionRules) -> Value {
    let mut dimensions = Map::new();
    for d in [
        "status",
        "department",
        "municipality",
        "sex",
        "age_band",
        "minor",
        "channel",
        "permit_type",
        "nationality",
        "exit_destination",
        "guardian",
        "metric",
        "step",
        "route",
        "sector",
        "stage",
        "list",
    ] {
        let list = codes(d);
        // Codes seen in this table but not in the list (e.g. a channel of
        // another catalog): listed, labelled as such.
        let col = t.dims.iter().position(|x| x == d);
        let mut extra: Vec<String> = col
            .map(|i| {
                t.rows
                    .iter()
                    .map(|r| r.values[i].clone())
                    .filter(|v| !list.iter().any(|(c, _)| c == v))
                    .collect()
            })
            .unwrap_or_default();
        extra.sort();
        extra.dedup();
        let mut entries: Vec<Value> = list
            .iter()
            .map(|(code, label)| {
                if d == "municipality" {
                    json!({"code": code, "label": label, "department": &code[..2]})
                } else {
                    json!({"code": code, "label": label})
                }
            })
            .collect();
        entries.extend(
            extra
                .iter()
                .map(|code| json!({"code": code, "label": "(not in this codebook's list: recorded as found in the log)"})),
        );
        dimensions.insert(
            d.to_string(),
            json!({"description": dim_description(d), "codes": entries}),
        );
    }
    dimensions.insert(
        "month".into(),
        json!({"description": dim_description("month"), "codes": []}),
    );
    json!({
        "table": t.kind.as_str(),
        "columns": t.dims.iter().map(String::as_str).chain(["count", "obs_status"]).chain(meta_columns(t)).collect::<Vec<_>>(),
        "reference_date": t.as_of_date,
        "log_position": {"seq": t.seq, "hash": t.hash},
        "published": t.published,
        "disclosure_control": if t.published {
            json!({
                "min_cell": rules.min_cell,
                "min_cell_sensitive": rules.min_cell_sensitive,
                "sensitive": "cells involving minors (age band under 18, minor=true or such a filter) or a municipality",
                "secondary": "in each line of a table, a line with exactly one hidden cell gets its smallest published cell hidden too; a 1-D table's total is withheld when nothing can complement its one hidden cell",
            })
        } else {
            Value::Null
        },
        "obs_status": ObsStatus::ALL.iter().map(|s| json!({"code": s.as_str(), "definition": s.definition()})).collect::<Vec<_>>(),
        "zero_cells": MUNICIPALITY_RULE,
        "divipola_version": DIVIPOLA_VERSION,
        "iso3166_version": ISO_3166_VERSION,
        "coverage_note": COVERAGE_NOTE,
        "dimensions": dimensions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::query::Row;

    fn table(dims: Vec<Dim>, rows: Vec<(Vec<&str>, Option<u64>)>, total: Option<u64>) -> Table {
        Table {
            dims,
            rows: rows
                .into_iter()
                .map(|(v, count)| Row {
                    values: v.into_iter().map(String::from).collect(),
                    count,
                })
                .collect(),
            total,
            as_of_date: "2025-12-31".into(),
            seq: 9,
            hash: "ab".repeat(32),
            published: true,
            suppressed_cells: 0,
        }
    }

    #[test]
    fn zero_cells_fill_every_combination_and_flags_follow_counts() {
        let t = table(
            vec![Dim::Department, Dim::Sex],
            vec![(vec!["05", "F"], Some(12)), (vec!["08", "M"], None)],
            Some(20),
        );
        let long = from_caseload(&t, &[]);
        assert_eq!(long.rows.len(), DEPARTMENTS.len() * Sex::ALL.len());
        assert_eq!(long.rows[0].values, ["05", "F"]);
        assert_eq!(long.rows[0].obs_status, ObsStatus::Observed);
        assert_eq!(long.rows[1].values, ["05", "M"]);
        assert_eq!(
            (long.rows[1].count, long.rows[1].obs_status),
            (Some(0), ObsStatus::Zero)
        );
        let hidden = long.rows.iter().find(|r| r.values == ["08", "M"]).unwrap();
        assert_eq!((hidden.count, hidden.obs_status), (None, ObsStatus::Suppressed));
        let csv = String::from_utf8(to_csv(&long).unwrap()).unwrap();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next().unwrap(),
            "department,sex,count,obs_status,as_of_date,log_seq,log_hash"
        );
        assert!(lines
            .next()
            .unwrap()
            .starts_with("05,F,12,observed,2025-12-31,9,"));
        assert!(csv.contains("\n08,M,,suppressed,"), "{csv}");
    }

    #[test]
    fn filters_restrict_zero_cells_and_municipality_tables_list_observed_cells_only() {
        let t = table(vec![Dim::Status], vec![(vec!["IRREGULAR"], Some(7))], Some(7));
        let f = Filter::parse("status=IRREGULAR|IN_PROCESS").unwrap();
        let long = from_caseload(&t, &[f]);
        let got: Vec<_> = long
            .rows
            .iter()
            .map(|r| (r.values[0].as_str(), r.obs_status))
            .collect();
        assert_eq!(
            got,
            [
                ("IRREGULAR", ObsStatus::Observed),
                ("IN_PROCESS", ObsStatus::Zero)
            ]
        );
        let t = table(
            vec![Dim::Municipality, Dim::Sex],
            vec![(vec!["05001", "F"], Some(12))],
            Some(12),
        );
        assert_eq!(from_caseload(&t, &[]).rows.len(), 1);
    }

    #[test]
    fn parquet_keeps_codes_as_strings_and_suppressed_counts_null() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let t = table(
            vec![Dim::Department, Dim::Sex],
            vec![(vec!["05", "F"], Some(12)), (vec!["08", "M"], None)],
            Some(20),
        );
        let long = from_caseload(&t, &[]);
        let bytes = to_parquet(&long).unwrap();
        assert_eq!(bytes, to_parquet(&long).unwrap(), "deterministic");
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let meta = reader.metadata().file_metadata();
        assert_eq!(meta.created_by(), Some(PARQUET_CREATED_BY));
        assert_eq!(meta.num_rows() as usize, long.rows.len());
        let cols: Vec<String> = meta
            .schema_descr()
            .columns()
            .iter()
            .map(|c| format!("{} {:?} {:?}", c.name(), c.physical_type(), c.logical_type_ref()))
            .collect();
        assert_eq!(cols[0], "department BYTE_ARRAY Some(String)");
        assert_eq!(cols[2], "count INT64 None");
        assert_eq!(cols[4], "as_of_date INT32 Some(Date)");
        let rows: Vec<parquet::record::Row> =
            reader.get_row_iter(None).unwrap().map(|r| r.unwrap()).collect();
        let text = |r: &parquet::record::Row| r.to_string();
        assert_eq!(
            text(&rows[0]),
            format!("{{department: \"05\", sex: \"F\", count: 12, obs_status: \"observed\", as_of_date: 2025-12-31, log_seq: 9, log_hash: \"{}\"}}", "ab".repeat(32))
        );
        let hidden = long.rows.iter().position(|r| r.values == ["08", "M"]).unwrap();
        assert!(
            text(&rows[hidden]).contains("count: null, obs_status: \"suppressed\""),
            "{}",
            text(&rows[hidden])
        );
    }

    #[test]
    fn the_codebook_names_every_department_and_municipality() {
        let t = table(vec![Dim::Status], vec![], Some(0));
        let cb = codebook(&from_caseload(&t, &[]), &SuppressionRules::default());
        let deps = cb["dimensions"]["department"]["codes"].as_array().unwrap();
        assert_eq!(deps.len(), 33);
        assert_eq!(deps[0], json!({"code": "05", "label": "Antioquia"}));
        let munis = cb["dimensions"]["municipality"]["codes"].as_array().unwrap();
        assert_eq!(munis.len(), Municipality::all().count());
        assert!(munis.contains(&json!({"code": "05001", "label": "MEDELLÍN", "department": "05"})));
        assert_eq!(cb["divipola_version"], DIVIPOLA_VERSION);
        assert_eq!(cb["log_position"]["seq"], 9);
        assert_eq!(cb["reference_date"], "2025-12-31");
    }
}
