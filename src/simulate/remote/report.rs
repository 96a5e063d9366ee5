//! What a run did: counts, refusals and disagreements, the statistics
//! check; as a summary for people and as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::statistics::StatisticsCheck;
use super::EXAMPLES_KEPT;
use crate::simulate::{SimulateError, Tally, TODAY};

/// Refusals counted by gRPC code, with the first few messages.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rejections {
    /// Refusals, all codes.
    pub total: u64,
    /// Code name (`INVALID_ARGUMENT` ...) -> count.
    pub by_code: BTreeMap<String, u64>,
    /// Up to 10 examples: person index, step, command, code and message.
    pub examples: Vec<String>,
}

impl Rejections {
    pub(super) fn add(&mut self, code: &str, example: impl FnOnce() -> String) {
        self.total += 1;
        *self.by_code.entry(code.to_string()).or_insert(0) += 1;
        if self.examples.len() < EXAMPLES_KEPT {
            self.examples.push(example());
        }
    }

    pub(super) fn merge(&mut self, other: Rejections) {
        self.total += other.total;
        for (k, v) in other.by_code {
            *self.by_code.entry(k).or_insert(0) += v;
        }
        self.examples.extend(other.examples);
    }
}

/// What a run through gRPC did.
#[derive(Clone, Debug)]
pub struct RemoteReport {
    /// Persons sent.
    pub persons: u64,
    /// The seed.
    pub seed: u64,
    /// The server asked.
    pub target: String,
    /// Whether the import mode was used (else one RPC per command).
    pub import: bool,
    /// Concurrent clients.
    pub clients: usize,
    /// gRPC connections they shared.
    pub connections: usize,
    /// The generator's tally (decided locally; independent of the server).
    pub tally: Tally,
    /// Commands sent (in histories, in the import mode).
    pub commands: u64,
    /// Events the server recorded for this run.
    pub appended_events: u64,
    /// Commands the server recognised as retries of recorded requests.
    pub deduplicated_commands: u64,
    /// Import mode: commands skipped after a rejection in their history.
    pub skipped_commands: u64,
    /// Transient failures retried (RPCs or whole import streams).
    pub retries: u64,
    /// The highest log position any answer named.
    pub last_seq: u64,
    /// Time the run took.
    pub elapsed: Duration,
    /// Commands the server refused.
    pub rejections: Rejections,
    /// RPC mode: answers whose event types differ from the local decision
    /// (counted by command name in `by_code`).
    pub disagreements: Rejections,
    /// `None` when the statistics were not checked (no command accepted).
    pub statistics: Option<StatisticsCheck>,
}

impl RemoteReport {
    /// Events the server recorded for this run, per second of the run.
    pub fn events_per_second(&self) -> f64 {
        self.appended_events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Whether everything went as the generator planned: no rejection, no
    /// disagreement, the generator's own checks clean, and the statistics match.
    pub fn clean(&self) -> bool {
        self.rejections.total == 0
            && self.disagreements.total == 0
            && self.tally.rejected == 0
            && self.tally.status_mismatches == 0
            && self.statistics.as_ref().is_none_or(StatisticsCheck::matched)
    }

    /// The end-of-run summary (counts, codes and status messages only).
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let secs = self.elapsed.as_secs_f64();
        let _ = writeln!(
            out,
            "simulated {} persons through {} ({}, {} clients over {} connections, seed {}): \
             {} commands, {} events appended, {} commands deduplicated, {} skipped, {} retries, \
             last seq {}, {:.2}s, {:.0} events/s, {:.0} commands/s, {:.0} persons/s",
            self.persons,
            self.target,
            if self.import {
                "import streams"
            } else {
                "single RPCs"
            },
            self.clients,
            self.connections,
            self.seed,
            self.commands,
            self.appended_events,
            self.deduplicated_commands,
            self.skipped_commands,
            self.retries,
            self.last_seq,
            secs,
            self.events_per_second(),
            self.commands as f64 / secs.max(1e-9),
            self.persons as f64 / secs.max(1e-9),
        );
        out.push_str(&self.tally.table());
        let mut section = |title: &str, r: &Rejections| {
            if r.total == 0 {
                return;
            }
            let codes: Vec<String> = r.by_code.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(out, "{title}: {} ({})", r.total, codes.join(", "));
            for e in &r.examples {
                let _ = writeln!(out, "  {e}");
            }
        };
        section("rejections", &self.rejections);
        section(
            "answers whose event types differ from the local decision",
            &self.disagreements,
        );
        match &self.statistics {
            None => {
                let _ = writeln!(out, "statistics not checked: no command was accepted");
            }
            Some(s) if s.matched() => {
                let _ = writeln!(
                    out,
                    "statistics match the generator's tally (Caseload as of {TODAY} at log seq {}, waited {:.1}s)",
                    s.position_seq, s.waited_secs
                );
            }
            Some(s) => {
                let _ = writeln!(
                    out,
                    "statistics DIFFER from the generator's tally (Caseload as of {TODAY} at log seq {}; \
                     this run's last seq {}):",
                    s.position_seq, s.waited_for_seq
                );
                for d in &s.differences {
                    let _ = writeln!(out, "  {d}");
                }
            }
        }
        out
    }

    /// The report as JSON (counts, codes and status messages; never credentials).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": if self.import { "import" } else { "rpc" },
            "target": self.target,
            "persons": self.persons,
            "seed": self.seed,
            "clients": self.clients,
            "connections": self.connections,
            "commands": self.commands,
            "appended_events": self.appended_events,
            "deduplicated_commands": self.deduplicated_commands,
            "skipped_commands": self.skipped_commands,
            "retries": self.retries,
            "last_seq": self.last_seq,
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "events_per_second": self.events_per_second(),
            "rejections": self.rejections,
            "disagreements": serde_json::json!({
                "total": self.disagreements.total,
                "by_command": self.disagreements.by_code,
                "examples": self.disagreements.examples,
            }),
            "statistics": self.statistics.as_ref().map(|s| serde_json::json!({
                "matched": s.matched(),
                "position_seq": s.position_seq,
                "waited_for_seq": s.waited_for_seq,
                "waited_secs": s.waited_secs,
                "differences": s.differences,
            })),
            "clean": self.clean(),
            "tally": self.tally,
        })
    }

    /// Writes [`RemoteReport::to_json`] to `path`.
    pub fn write_json(&self, path: &std::path::Path) -> Result<(), SimulateError> {
        let write_error = |reason: String| SimulateError::Write {
            path: path.to_path_buf(),
            reason,
        };
        let json = serde_json::to_string_pretty(&self.to_json()).map_err(|e| write_error(e.to_string()))?;
        std::fs::write(path, json + "\n").map_err(|e| write_error(e.to_string()))
    }
}
