//! `registry release combine` (docs/RELEASES.md §7): regional totals by
//! status from several verified releases, each source cited by origin,
//! position, checkpoint and release note. A regional total is exact only
//! when every source published its cell; otherwise it is flagged
//! `incomplete` with a lower bound (each suppressed cell holds at least 1)
//! and the sources that suppressed it, never summed as if the cell were 0.

use serde_json::json;

use super::verify::Verified;

/// `STRUCTURE_ID` of the regional table.
pub const REGIONAL_ID: &str = "REGISTRY:REGIONAL_CASELOAD_STATUS(1.0)";
/// File name of the regional table: one row per status, with its exact sum
/// or a lower bound and the sources that suppressed it.
pub const REGIONAL_CSV: &str = "regional_caseload_status.csv";
/// File name of every source's `CASELOAD_STATUS` cells, one row per source
/// and status.
pub const SOURCES_CSV: &str = "sources_caseload_status.csv";
/// File name of the citations: each source's origin, verifier key, log
/// position, checkpoint, manifest digest and release note.
pub const SOURCES_JSON: &str = "sources.json";

/// One regional total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionalRow {
    /// The status code.
    pub status: String,
    /// The exact sum, when every source published its cell.
    pub value: Option<u64>,
    /// Sum of the published cells plus 1 per suppressed cell.
    pub lower_bound: u64,
    /// Origins of the sources whose cell is suppressed.
    pub suppressed_in: Vec<String>,
}

/// Why releases cannot be combined into a regional table.
#[derive(Debug, thiserror::Error)]
pub enum CombineError {
    /// No release was given.
    #[error("no release to combine")]
    NoRelease,
    /// Two releases of one origin (a region counts each registry once).
    #[error("two releases come from origin {0:?}: a region counts each registry once")]
    SameOrigin(String),
    /// A release without the table combined.
    #[error("the release of {0} has no CASELOAD_STATUS")]
    NoCaseloadStatus(String),
    /// A release whose statuses differ from the first release's.
    #[error("the release of {origin} lists the statuses {statuses:?}, the release of {first_origin} {first_statuses:?}")]
    OtherStatuses {
        /// The origin of the release that differs.
        origin: String,
        /// The status codes it lists, in its order.
        statuses: Vec<String>,
        /// The origin of the first release.
        first_origin: String,
        /// The status codes the first release lists, in its order.
        first_statuses: Vec<String>,
    },
    /// Writing a file of the combination.
    #[error(transparent)]
    Csv(#[from] csv::Error),
    /// Flushing a CSV file of the combination failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The citations (`sources.json`) could not be encoded.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Sums `CASELOAD_STATUS` over the sources, status by status (the statuses
/// of the first source, in its order; every source must list the same).
pub fn regional(sources: &[Verified]) -> Result<Vec<RegionalRow>, CombineError> {
    let first = sources.first().ok_or(CombineError::NoRelease)?;
    let mut origins = std::collections::BTreeSet::new();
    for s in sources {
        if !origins.insert(&s.origin) {
            return Err(CombineError::SameOrigin(s.origin.clone()));
        }
    }
    let table = |s: &Verified| {
        s.table("CASELOAD_STATUS")
            .cloned()
            .ok_or_else(|| CombineError::NoCaseloadStatus(s.origin.clone()))
    };
    let statuses: Vec<String> = table(first)?.rows.iter().map(|r| r.key[0].clone()).collect();
    let mut out: Vec<RegionalRow> = statuses
        .iter()
        .map(|s| RegionalRow {
            status: s.clone(),
            value: Some(0),
            lower_bound: 0,
            suppressed_in: Vec::new(),
        })
        .collect();
    for s in sources {
        let t = table(s)?;
        let codes: Vec<&String> = t.rows.iter().map(|r| &r.key[0]).collect();
        if codes.len() != statuses.len() || codes.iter().zip(&statuses).any(|(a, b)| *a != b) {
            return Err(CombineError::OtherStatuses {
                origin: s.origin.clone(),
                statuses: codes.into_iter().cloned().collect(),
                first_origin: first.origin.clone(),
                first_statuses: statuses,
            });
        }
        for (row, cell) in out.iter_mut().zip(&t.rows) {
            match cell.value {
                Some(v) => {
                    row.value = row.value.map(|x| x + v);
                    row.lower_bound += v;
                }
                None => {
                    row.value = None;
                    row.lower_bound += 1;
                    row.suppressed_in.push(s.origin.clone());
                }
            }
        }
    }
    Ok(out)
}

/// The files of a combination: the regional table, every source's cells,
/// and the citations.
pub fn files(sources: &[Verified]) -> Result<Vec<(String, Vec<u8>)>, CombineError> {
    let rows = regional(sources)?;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record([
        "STRUCTURE",
        "STRUCTURE_ID",
        "ACTION",
        "STATUS",
        "OBS_VALUE",
        "OBS_STATUS",
        "LOWER_BOUND",
        "SUPPRESSED_IN",
    ])?;
    for r in &rows {
        let status = match r.value {
            None => "incomplete",
            Some(0) => "zero",
            Some(_) => "observed",
        };
        w.write_record([
            "dataflow",
            REGIONAL_ID,
            "I",
            &r.status,
            &r.value.map_or_else(String::new, |v| v.to_string()),
            status,
            &r.lower_bound.to_string(),
            &r.suppressed_in.join(" "),
        ])?;
    }
    let regional = w.into_inner().map_err(|e| e.into_error())?;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(["SOURCE", "STATUS", "OBS_VALUE", "OBS_STATUS"])?;
    for s in sources {
        let caseload = s
            .table("CASELOAD_STATUS")
            .ok_or_else(|| CombineError::NoCaseloadStatus(s.origin.clone()))?;
        for r in &caseload.rows {
            w.write_record([
                s.origin.as_str(),
                &r.key[0],
                &r.value.map_or_else(String::new, |v| v.to_string()),
                r.obs_status().as_str(),
            ])?;
        }
    }
    let per_source = w.into_inner().map_err(|e| e.into_error())?;
    let cited = json!({
        "sources": sources.iter().map(|s| json!({
            "origin": s.origin,
            "verifier_key": s.verifier_key,
            "log_position": {"seq": s.seq, "hash": s.log_hash},
            "reference_date": s.reference_date,
            "checkpoint": s.checkpoint,
            "manifest_blake3": s.manifest_blake3,
            "release_note": s.note,
        })).collect::<Vec<_>>(),
        "obs_status": [
            {"code": "observed", "definition": "every source published its cell; OBS_VALUE is their sum (> 0)"},
            {"code": "zero", "definition": "every source published 0"},
            {"code": "incomplete", "definition": "at least one source suppressed its cell (SUPPRESSED_IN names them); OBS_VALUE is empty and LOWER_BOUND is the sum of the published cells plus 1 per suppressed cell"},
        ],
    });
    let mut cited_bytes = serde_json::to_vec_pretty(&cited)?;
    cited_bytes.push(b'\n');
    Ok(vec![
        (REGIONAL_CSV.to_string(), regional),
        (SOURCES_CSV.to_string(), per_source),
        (SOURCES_JSON.to_string(), cited_bytes),
    ])
}
