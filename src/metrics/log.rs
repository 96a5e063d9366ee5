//! What the log records as it runs: group commits and appends.
//!
//! A [`LogMetrics`] lives in every [`crate::log::Store`] (so tools and tests
//! that open a store pay a few atomics and nothing else); `registry serve`
//! registers it with its [`super::Metrics`]. Recording is an atomic add per
//! append and a histogram observation (a short lock) per group commit: nothing
//! is allocated per event.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::log::{AppendError, Appended};

/// Seconds: 100 µs .. 10 s.
pub(crate) const SECONDS_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Events or requests per group commit: 1 .. 4096.
const SIZE_BUCKETS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// How an append ended, as seen by its caller.
pub type ResultLabel = [(&'static str, &'static str); 1];

/// The log's own counters and histograms. Cheap to clone (shared handles).
#[derive(Clone, Debug)]
pub struct LogMetrics {
    /// Appends by result: `accepted`, `deduplicated` (a retry answered with
    /// the original), or the refusal (`version_conflict`, `invalid`,
    /// `too_large`, `idempotency_mismatch`, `stream_full`, `unavailable`).
    pub appends: Family<ResultLabel, Counter>,
    /// Events written by accepted appends.
    pub events: Counter,
    /// Events per group commit.
    pub commit_events: Histogram,
    /// Requests whose events one group commit wrote.
    pub commit_requests: Histogram,
    /// One group commit: `apply_batch`, flush and (by default) `fdatasync`.
    pub commit_seconds: Histogram,
    /// sled's flush within a commit.
    pub flush_seconds: Histogram,
    /// `fdatasync` of sled's data file within a commit (`--sync fdatasync`).
    pub fdatasync_seconds: Histogram,
}

impl Default for LogMetrics {
    fn default() -> Self {
        LogMetrics {
            appends: Family::default(),
            events: Counter::default(),
            commit_events: Histogram::new(SIZE_BUCKETS),
            commit_requests: Histogram::new(SIZE_BUCKETS),
            commit_seconds: Histogram::new(SECONDS_BUCKETS),
            flush_seconds: Histogram::new(SECONDS_BUCKETS),
            fdatasync_seconds: Histogram::new(SECONDS_BUCKETS),
        }
    }
}

impl LogMetrics {
    /// Counts the answer one append got.
    pub fn append_done(&self, result: &Result<Appended, AppendError>) {
        let label = match result {
            Ok(a) if a.deduplicated => "deduplicated",
            Ok(a) => {
                self.events.inc_by(a.last_seq - a.first_seq + 1);
                "accepted"
            }
            Err(AppendError::VersionConflict { .. }) => "version_conflict",
            Err(AppendError::Invalid { .. }) => "invalid",
            Err(AppendError::TooLarge { .. }) => "too_large",
            Err(AppendError::IdempotencyMismatch { .. }) => "idempotency_mismatch",
            Err(AppendError::StreamFull { .. }) => "stream_full",
            Err(AppendError::Unavailable(_)) => "unavailable",
            Err(AppendError::NotLeader { .. }) => "not_leader",
            Err(AppendError::SideConflict { .. }) => "side_conflict",
        };
        self.appends.get_or_create(&[("result", label)]).inc();
    }

    /// Records one durable group commit.
    pub fn commit_done(&self, events: usize, requests: usize, took: Duration) {
        self.commit_events.observe(events as f64);
        self.commit_requests.observe(requests as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// Registers every metric (names without the `registry_` prefix).
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "log_appends",
            "Appends by result (accepted, deduplicated, or the refusal)",
            self.appends.clone(),
        );
        r.register(
            "log_events_appended",
            "Events written by accepted appends",
            self.events.clone(),
        );
        r.register(
            "log_group_commit_events",
            "Events per group commit",
            self.commit_events.clone(),
        );
        r.register(
            "log_group_commit_requests",
            "Requests per group commit",
            self.commit_requests.clone(),
        );
        r.register(
            "log_group_commit_seconds",
            "Duration of a group commit (apply_batch, flush, fdatasync)",
            self.commit_seconds.clone(),
        );
        r.register(
            "log_flush_seconds",
            "Duration of sled's flush in a group commit",
            self.flush_seconds.clone(),
        );
        r.register(
            "log_fdatasync_seconds",
            "Duration of fdatasync of sled's data file in a group commit",
            self.fdatasync_seconds.clone(),
        );
    }
}
