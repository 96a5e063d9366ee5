//! The statistics check: the server's `Statistics.Caseload`, once it
//! reflects the run's last log position, compared with the generator's tally.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{code_name, RemoteOptions};
use crate::api::pb;
use crate::api::pb::statistics_client::StatisticsClient;
use crate::client::connect;
use crate::simulate::{SimulateError, Tally, TODAY};

/// Interval between two polls of the statistics projection's position.
const STATS_POLL: Duration = Duration::from_millis(250);

/// The comparison of the server's statistics with the tally.
#[derive(Clone, Debug, Serialize)]
pub struct StatisticsCheck {
    /// The log position (seq) both answers reflect.
    pub position_seq: u64,
    /// The position the run waited for (its last seq).
    pub waited_for_seq: u64,
    /// Seconds waited for the statistics to reach it.
    pub waited_secs: f64,
    /// One line per differing count; empty when everything matches.
    pub differences: Vec<String>,
}

impl StatisticsCheck {
    /// Whether every count the server answered equals the tally's.
    pub fn matched(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Adds a line to `differences` for every key whose counts differ.
fn compare(
    differences: &mut Vec<String>,
    what: &str,
    server: &BTreeMap<String, u64>,
    ours: &BTreeMap<String, u64>,
) {
    let keys: std::collections::BTreeSet<&String> = server.keys().chain(ours.keys()).collect();
    for key in keys {
        let (s, o) = (
            server.get(key).copied().unwrap_or(0),
            ours.get(key).copied().unwrap_or(0),
        );
        if s != o {
            differences.push(format!("{what} {key}: statistics {s}, tally {o}"));
        }
    }
}

/// Polls `Statistics.Caseload` until it reflects `last_seq`, then compares
/// the counts by status and by department x status with `tally`.
pub(super) async fn check_statistics(
    opts: &RemoteOptions,
    tally: &Tally,
    last_seq: u64,
) -> Result<StatisticsCheck, SimulateError> {
    let channel = connect(&opts.stats_client, Duration::from_secs(10))
        .await
        .map_err(SimulateError::Connect)?;
    let mut stats =
        StatisticsClient::new(channel).max_decoding_message_size(crate::limits::GRPC_RESPONSE_BYTES_MAX);
    let started = Instant::now();
    let deadline = started + opts.stats_timeout;
    let query = |by: &[&str]| pb::CaseloadRequest {
        by: by.iter().map(|d| d.to_string()).collect(),
        filters: Vec::new(),
        as_of_date: TODAY.to_string(),
        as_of_seq: 0,
        published: false,
    };
    let position = |r: &pb::CaseloadResponse| r.position.as_ref().map_or(0, |p| p.seq);
    let statistics_error = |e: tonic::Status| {
        SimulateError::Statistics(format!("Caseload: {} {}", code_name(e.code()), e.message()))
    };
    // Wait with the cheap question (the total on the projection's own date,
    // no replay), then ask the dated breakdowns.
    let total_now = pb::CaseloadRequest {
        by: Vec::new(),
        filters: Vec::new(),
        as_of_date: String::new(),
        as_of_seq: 0,
        published: false,
    };
    let (by_status, by_department) = loop {
        let now = match stats.caseload(total_now.clone()).await {
            Ok(r) => r.into_inner(),
            // A server that just started answers UNAVAILABLE while its
            // projection loads: wait for it like for a lagging one.
            Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(STATS_POLL).await;
                continue;
            }
            Err(e) => return Err(statistics_error(e)),
        };
        if position(&now) < last_seq {
            if Instant::now() >= deadline {
                return Err(SimulateError::Statistics(format!(
                    "the statistics projection did not reach log seq {last_seq} within {}s (it is at seq {})",
                    opts.stats_timeout.as_secs(),
                    position(&now)
                )));
            }
            tokio::time::sleep(STATS_POLL).await;
            continue;
        }
        let a = stats
            .caseload(query(&["status"]))
            .await
            .map_err(statistics_error)?
            .into_inner();
        let b = stats
            .caseload(query(&["department", "status"]))
            .await
            .map_err(statistics_error)?
            .into_inner();
        if position(&a) == position(&b) && position(&a) >= last_seq {
            break (a, b);
        }
        // The log moved between the answers: ask again.
    };
    let mut differences = Vec::new();
    let position_seq = position(&by_status);
    if position_seq != last_seq {
        differences.push(format!(
            "log position: the statistics reflect seq {position_seq}, this run's last event is seq {last_seq} \
             (the log holds events of other runs)"
        ));
    }
    if by_status.total != tally.persons || by_status.total_suppressed {
        differences.push(format!(
            "persons: statistics {}, tally {}",
            by_status.total, tally.persons
        ));
    }
    let cells = |r: &pb::CaseloadResponse| -> BTreeMap<String, u64> {
        r.cells.iter().map(|c| (c.values.join("/"), c.count)).collect()
    };
    compare(&mut differences, "status", &cells(&by_status), &tally.status);
    let mut departments: BTreeMap<String, u64> = BTreeMap::new();
    for c in &by_department.cells {
        if let Some(d) = c.values.first() {
            *departments.entry(d.clone()).or_insert(0) += c.count;
        }
    }
    compare(&mut differences, "department", &departments, &tally.department);
    let ours: BTreeMap<String, u64> = tally
        .status_by_department
        .iter()
        .flat_map(|(d, statuses)| statuses.iter().map(move |(s, n)| (format!("{d}/{s}"), *n)))
        .collect();
    compare(
        &mut differences,
        "department/status",
        &cells(&by_department),
        &ours,
    );
    if by_status
        .cells
        .iter()
        .chain(&by_department.cells)
        .any(|c| c.suppressed)
    {
        differences.push("a cell is suppressed although published = false was asked".into());
    }
    Ok(StatisticsCheck {
        position_seq,
        waited_for_seq: last_seq,
        waited_secs: started.elapsed().as_secs_f64(),
        differences,
    })
}
