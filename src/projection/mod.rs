//! Statistics projections: the caseload, monthly series, the funnel,
//! certifications and permits expiring, read from the log (docs/STATISTICS.md).
//!
//! - [`facts`]: [`CaseFacts`], what statistics know about one case (no
//!   personal data), folded from its events like `CaseState::apply`.
//! - [`state`]: [`ProjectionState`], facts plus aggregates kept up to date
//!   per event (the caseload cube at a reference date, series, funnel ...),
//!   with the proof of continuity (seq and prev_hash) per event.
//! - [`engine`]: persistence (one sled tree, facts and checkpoint in one
//!   batch), catch-up, the follower thread, point-in-time replays.
//! - [`query`]: caseload breakdowns (up to three dimensions, filters).
//! - [`suppress`]: disclosure control for published tables.
//! - [`export`]: every statistic in long format (dimension columns, `count`,
//!   `obs_status`, zero cells), as CSV with a Frictionless Table Schema or
//!   JSON, and the codebook that goes with an export.
//!
//! Invariants: the projection never skips a position (a gap, a reordering
//! or a broken link stops it with the seq named); every answer names the
//! log position (seq and hash) it reflects; facts hold codes, dates and
//! flags only.

pub mod engine;
pub mod export;
pub mod facts;
pub mod query;
pub mod state;
pub mod suppress;

use serde::Serialize;

pub use engine::{
    rebuild_store, rebuild_store_reporting, replay, AsOf, CatchUp, Engine, Follower, ProjectionError,
    ProjectionSlot, Shared, SlotState, TREE,
};

pub use facts::CaseFacts;
pub use query::{caseload, CaseloadQuery, Dim, Filter, QueryError, Row, Table};
pub use state::{case_key, month_index, month_label, Metric, Position, ProjectionState, SeriesCell};
pub use suppress::SuppressionRules;

/// A labelled count, for series, funnel, expiring permits and certifications.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Point {
    /// The label of the count (a month, a stage, a route...).
    pub label: String,
    /// `None` when suppressed.
    pub count: Option<u64>,
}

/// A list answer with the position it reflects.
#[derive(Clone, Debug, Serialize)]
pub struct Points {
    /// What the points count.
    pub what: String,
    /// The counts, in the order of their labels.
    pub points: Vec<Point>,
    /// Log position reflected.
    pub seq: u64,
    /// The chain hash at `seq`, hex.
    pub hash: String,
    /// Date the statuses and ages are counted on.
    pub as_of_date: String,
}

fn points(
    state: &ProjectionState,
    what: String,
    pts: Vec<(String, u64)>,
    published: bool,
    rules: &SuppressionRules,
) -> Points {
    let mut points: Vec<Point> = pts
        .iter()
        .map(|(l, n)| Point {
            label: l.clone(),
            count: Some(*n),
        })
        .collect();
    if published {
        let coords: Vec<Vec<u32>> = (0..pts.len() as u32).map(|i| vec![i]).collect();
        let counts: Vec<u64> = pts.iter().map(|(_, n)| *n).collect();
        let sensitive = vec![false; pts.len()];
        // Series months are not a partition with a published total; the
        // primary rule applies, the secondary one protects any total a reader
        // could add up.
        let s = suppress::suppress(&coords, &counts, &sensitive, rules, true);
        for (p, h) in points.iter_mut().zip(s.hidden) {
            if h {
                p.count = None;
            }
        }
    }
    Points {
        what,
        points,
        seq: state.position().seq,
        hash: state.position().hash_hex(),
        as_of_date: state.cube_date().to_string(),
    }
}

/// The (month index, count) pairs between two months (inclusive), labelled `YYYY-MM`.
fn labelled_months(
    counts: impl Iterator<Item = (u32, u64)>,
    from: Option<u32>,
    to: Option<u32>,
) -> Vec<(String, u64)> {
    counts
        .filter(|(m, _)| from.is_none_or(|f| *m >= f) && to.is_none_or(|t| *m <= t))
        .map(|(m, n)| (month_label(m), n))
        .collect()
}

/// Monthly counts of `metric` between two months (inclusive, month indexes).
pub fn series(
    state: &ProjectionState,
    metric: Metric,
    from: Option<u32>,
    to: Option<u32>,
    published: bool,
    rules: &SuppressionRules,
) -> Points {
    let pts = labelled_months(state.series(metric), from, to);
    points(state, metric.as_str().to_string(), pts, published, rules)
}

/// The dimensions a series can be broken down by (at most
/// [`SERIES_BREAKDOWN_DIMS_MAX`] at once).
pub const SERIES_DIMS: [&str; 5] = ["department", "sex", "age_band", "channel", "status"];

/// Breakdown dimensions of one series at most.
pub const SERIES_BREAKDOWN_DIMS_MAX: usize = 2;

/// Checks a series breakdown: known dimensions, at most two, no repeats;
/// the error names the problem (callers prefix the field).
pub fn series_breakdown(by: &[String]) -> Result<Vec<&'static str>, QueryError> {
    let mut out: Vec<&'static str> = Vec::new();
    for d in by {
        let d = d.trim();
        let known = SERIES_DIMS.iter().find(|k| **k == d).ok_or_else(|| {
            QueryError::NotASeriesDimension(
                d.chars()
                    .take(crate::limits::ECHOED_VALUE_CHARS_MAX)
                    .collect::<String>(),
            )
        })?;
        if out.contains(known) {
            return Err(QueryError::SeriesDimensionTwice(d.to_string()));
        }
        out.push(known);
    }
    if out.len() > SERIES_BREAKDOWN_DIMS_MAX {
        return Err(QueryError::TooManySeriesDimensions);
    }
    Ok(out)
}

/// The code of a series cell on a dimension (as in the caseload).
fn series_code(dim: &str, c: &SeriesCell) -> String {
    match dim {
        "department" => format!("{:02}", c.department),
        "sex" => c.sex.as_str().to_string(),
        "age_band" => c.age_band.as_str().to_string(),
        "channel" => c
            .channel
            .map_or_else(|| "NONE".to_string(), |c| c.as_str().to_string()),
        _ => c.status.as_str().to_string(),
    }
}

/// Monthly counts of `metric` broken down by `by` (see [`series_breakdown`]),
/// labels `YYYY-MM/code[/code]`. Published: disclosure control on the
/// table month x dimensions (each line of it, margins known), a cell under
/// 18 years of age counting as sensitive.
pub fn series_by(
    state: &ProjectionState,
    metric: Metric,
    by: &[&str],
    from: Option<u32>,
    to: Option<u32>,
    published: bool,
    rules: &SuppressionRules,
) -> Points {
    if by.is_empty() {
        return series(state, metric, from, to, published, rules);
    }
    let mut map: std::collections::BTreeMap<(u32, Vec<String>), u64> = std::collections::BTreeMap::new();
    let mut minor: std::collections::HashSet<(u32, Vec<String>)> = std::collections::HashSet::new();
    for (c, n) in state.series_cells(metric) {
        if from.is_some_and(|f| c.month < f) || to.is_some_and(|t| c.month > t) {
            continue;
        }
        let key = (c.month, by.iter().map(|d| series_code(d, c)).collect::<Vec<_>>());
        if by.contains(&"age_band") && c.age_band.is_minor() {
            minor.insert(key.clone());
        }
        *map.entry(key).or_insert(0) += n;
    }
    let cells: Vec<((u32, Vec<String>), u64)> = map.into_iter().filter(|(_, n)| *n > 0).collect();
    let mut hidden = vec![false; cells.len()];
    if published {
        let mut index: Vec<std::collections::HashMap<&str, u32>> = vec![Default::default(); by.len()];
        let coords: Vec<Vec<u32>> = cells
            .iter()
            .map(|((m, codes), _)| {
                let mut c = vec![*m];
                for (i, code) in codes.iter().enumerate() {
                    let next = index[i].len() as u32;
                    c.push(*index[i].entry(code.as_str()).or_insert(next));
                }
                c
            })
            .collect();
        let counts: Vec<u64> = cells.iter().map(|(_, n)| *n).collect();
        let sensitive: Vec<bool> = cells.iter().map(|(k, _)| minor.contains(k)).collect();
        hidden = suppress::suppress(&coords, &counts, &sensitive, rules, true).hidden;
    }
    Points {
        what: metric.as_str().to_string(),
        points: cells
            .iter()
            .zip(hidden)
            .map(|(((m, codes), n), h)| Point {
                label: std::iter::once(month_label(*m))
                    .chain(codes.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("/"),
                count: (!h).then_some(*n),
            })
            .collect(),
        seq: state.position().seq,
        hash: state.position().hash_hex(),
        as_of_date: state.cube_date().to_string(),
    }
}

/// The funnel (current application of every case).
pub fn funnel(state: &ProjectionState, published: bool, rules: &SuppressionRules) -> Points {
    let pts = state.funnel().iter().map(|(l, n)| (l.to_string(), *n)).collect();
    points(state, "FUNNEL".into(), pts, published, rules)
}

/// Permits held, by month their validity ends, between two months.
pub fn expiring(
    state: &ProjectionState,
    from: Option<u32>,
    to: Option<u32>,
    published: bool,
    rules: &SuppressionRules,
) -> Points {
    let pts = labelled_months(state.expiring(), from, to);
    points(state, "PERMITS_EXPIRING".into(), pts, published, rules)
}

/// Certifications by one or more of route, sector, stage (labels joined by `/`).
pub fn certifications(
    state: &ProjectionState,
    by_route: bool,
    by_sector: bool,
    by_stage: bool,
    published: bool,
    rules: &SuppressionRules,
) -> Points {
    let mut map: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for (r, s, st, n) in state.certifications() {
        let mut parts = Vec::new();
        if by_route {
            parts.push(r.as_str());
        }
        if by_sector {
            parts.push(s.as_str());
        }
        if by_stage {
            parts.push(st.as_str());
        }
        let label = if parts.is_empty() {
            "ALL".to_string()
        } else {
            parts.join("/")
        };
        *map.entry(label).or_insert(0) += n;
    }
    points(
        state,
        "CERTIFICATIONS".into(),
        map.into_iter().collect(),
        published,
        rules,
    )
}

/// The statistics projection as `registry serve` runs it: loaded and caught
/// up by its follower thread while the server already serves cases, then
/// followed; served by `api::statistics::StatisticsService`, which answers
/// UNAVAILABLE until the projection is loaded.
pub struct Running {
    slot: std::sync::Arc<ProjectionSlot>,
    follower: Option<Follower>,
}

/// Starts loading the persisted projection (cube at today's date in Colombia) and
/// catching it up to the current head on the follower's thread; returns at once.
pub fn start(log: &crate::log::Log) -> std::io::Result<Running> {
    let slot = std::sync::Arc::new(ProjectionSlot::default());
    let follower = Follower::spawn_loading(log.store().clone(), TREE, slot.clone(), log.subscribe_head())?;
    Ok(Running {
        slot,
        follower: Some(follower),
    })
}

impl Running {
    /// Where loading is.
    pub fn slot(&self) -> std::sync::Arc<ProjectionSlot> {
        self.slot.clone()
    }

    /// Stops the follower (before the log shuts down); a load in progress
    /// gives up.
    pub async fn shutdown(mut self) {
        if let Some(f) = self.follower.take() {
            let _ = tokio::task::spawn_blocking(move || f.stop()).await;
        }
    }
}
