//! Measurements of a load test: latency histograms and gRPC codes per
//! operation and per RPC, and the report (table or JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tonic::Code;

use super::mix::OpKind;

/// Highest latency a histogram holds (longer ones are recorded as this).
pub const LATENCY_MAX: Duration = Duration::from_secs(600);
/// Significant digits of the histograms.
const SIGFIG: u8 = 3;

/// One RPC of the workload (an operation is one or more of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    /// GetCase sent by a command to learn the case's version.
    CommandGetCase,
    /// UpdateResidence, the command itself, at the version GetCase returned.
    UpdateResidence,
    /// RegisterPerson of a new case (the register operation).
    RegisterPerson,
    /// GetCase of the read operation.
    GetCase,
    /// FindCasesByDocument of the look-up operation.
    FindCasesByDocument,
    /// Statistics.Caseload of the stats operation.
    Caseload,
    /// Audit.GetCheckpoint, the first call of a proof operation.
    GetCheckpoint,
    /// Audit.GetInclusionProof of a random event at the checkpoint's size.
    GetInclusionProof,
    /// Audit.GetConsistencyProof from a random earlier size to the checkpoint's.
    GetConsistencyProof,
}

impl Rpc {
    /// Every RPC, in report order (the order of the per-RPC rows).
    pub const ALL: [Rpc; 9] = [
        Rpc::CommandGetCase,
        Rpc::UpdateResidence,
        Rpc::RegisterPerson,
        Rpc::GetCase,
        Rpc::FindCasesByDocument,
        Rpc::Caseload,
        Rpc::GetCheckpoint,
        Rpc::GetInclusionProof,
        Rpc::GetConsistencyProof,
    ];

    /// The RPC's name in the report (`Service.Method` outside Caseworker);
    /// both GetCase variants are `GetCase`, told apart by their operation.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::CommandGetCase | Rpc::GetCase => "GetCase",
            Rpc::UpdateResidence => "UpdateResidence",
            Rpc::RegisterPerson => "RegisterPerson",
            Rpc::FindCasesByDocument => "FindCasesByDocument",
            Rpc::Caseload => "Statistics.Caseload",
            Rpc::GetCheckpoint => "Audit.GetCheckpoint",
            Rpc::GetInclusionProof => "Audit.GetInclusionProof",
            Rpc::GetConsistencyProof => "Audit.GetConsistencyProof",
        }
    }

    /// The operation this RPC is part of.
    pub fn op(self) -> OpKind {
        match self {
            Rpc::CommandGetCase | Rpc::UpdateResidence => OpKind::Command,
            Rpc::RegisterPerson => OpKind::Register,
            Rpc::GetCase => OpKind::Read,
            Rpc::FindCasesByDocument => OpKind::Lookup,
            Rpc::Caseload => OpKind::Stats,
            Rpc::GetCheckpoint | Rpc::GetInclusionProof | Rpc::GetConsistencyProof => OpKind::Proof,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The canonical name of a gRPC code (as in the gRPC specification).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Codes that mean the server (not the request) failed.
pub const SERVER_FAULT_CODES: [&str; 3] = ["INTERNAL", "UNKNOWN", "DATA_LOSS"];

/// Latencies and codes of one row.
struct Series {
    histogram: Histogram<u64>,
    codes: BTreeMap<&'static str, u64>,
}

impl Series {
    fn new() -> Series {
        Series {
            histogram: Histogram::new_with_bounds(1, LATENCY_MAX.as_micros() as u64, SIGFIG)
                .expect("valid histogram bounds"),
            codes: BTreeMap::new(),
        }
    }

    fn record(&mut self, latency: Duration, code: Code) {
        let us = (latency.as_micros() as u64).max(1);
        self.histogram.saturating_record(us);
        *self.codes.entry(code_name(code)).or_insert(0) += 1;
    }
}

/// Where every measured operation and RPC is recorded (shared by all clients).
pub struct Recorder {
    ops: Vec<Mutex<Series>>,
    rpcs: Vec<Mutex<Series>>,
    /// Events appended by acknowledged, non-deduplicated commands, warm-up and set-up included.
    pub appended_events: AtomicU64,
    /// Access events the server appended for the tool's personal-data reads
    /// (answered GetCase and FindCasesByDocument), warm-up and set-up included.
    pub access_events: AtomicU64,
    /// Cases registered by the tool, warm-up and set-up included.
    pub registered: AtomicU64,
    /// Look-ups (measured) that found at least one case / none.
    pub lookup_hits: AtomicU64,
    /// Look-ups (measured) that found none.
    pub lookup_misses: AtomicU64,
    /// Proofs (measured) the tool checked and found valid / invalid.
    pub proofs_verified: AtomicU64,
    /// Proofs (measured) the tool checked and found invalid.
    pub proofs_invalid: AtomicU64,
    /// Proof operations that found an empty tree (nothing to prove).
    pub proofs_empty_tree: AtomicU64,
    /// Commands (measured) retried once after ABORTED (a version conflict).
    pub command_retries: AtomicU64,
    /// Commands (measured) refused because the person has exited.
    pub commands_on_exited: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            ops: OpKind::ALL.iter().map(|_| Mutex::new(Series::new())).collect(),
            rpcs: Rpc::ALL.iter().map(|_| Mutex::new(Series::new())).collect(),
            appended_events: AtomicU64::new(0),
            access_events: AtomicU64::new(0),
            registered: AtomicU64::new(0),
            lookup_hits: AtomicU64::new(0),
            lookup_misses: AtomicU64::new(0),
            proofs_verified: AtomicU64::new(0),
            proofs_invalid: AtomicU64::new(0),
            proofs_empty_tree: AtomicU64::new(0),
            command_retries: AtomicU64::new(0),
            commands_on_exited: AtomicU64::new(0),
        }
    }
}

fn lock(m: &Mutex<Series>) -> std::sync::MutexGuard<'_, Series> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recorder {
    /// Records one measured operation.
    pub fn op(&self, kind: OpKind, latency: Duration, code: Code) {
        lock(&self.ops[kind.index()]).record(latency, code);
    }

    /// Records one measured RPC.
    pub fn rpc(&self, rpc: Rpc, latency: Duration, code: Code) {
        lock(&self.rpcs[rpc.index()]).record(latency, code);
    }

    fn row(series: &Mutex<Series>, name: String, seconds: f64) -> Row {
        let s = lock(series);
        let h = &s.histogram;
        let count = h.len();
        let quantile = |q: f64| if count == 0 { 0 } else { h.value_at_quantile(q) };
        Row {
            name,
            count,
            ok: s.codes.get("OK").copied().unwrap_or(0),
            codes: s.codes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ops_per_s: (count as f64 / seconds.max(1e-9) * 10.0).round() / 10.0,
            latency_us: Latency {
                p50: quantile(0.50),
                p99: quantile(0.99),
                p999: quantile(0.999),
                max: if count == 0 { 0 } else { h.max() },
                mean: if count == 0 {
                    0.0
                } else {
                    (h.mean() * 10.0).round() / 10.0
                },
            },
        }
    }

    /// The rows of the report: one per operation (whole operation), and one
    /// per RPC of each operation; and the total over the operations.
    pub fn rows(&self, seconds: f64) -> (Vec<Row>, Vec<Row>, Row) {
        let ops: Vec<Row> = OpKind::ALL
            .iter()
            .map(|k| Recorder::row(&self.ops[k.index()], k.name().to_string(), seconds))
            .collect();
        let rpcs = Rpc::ALL
            .iter()
            .map(|r| {
                let mut row = Recorder::row(&self.rpcs[r.index()], r.name().to_string(), seconds);
                row.name = format!("{}/{}", r.op().name(), r.name());
                row
            })
            .collect();
        let mut all = Series::new();
        for m in &self.ops {
            let s = lock(m);
            all.histogram.add(&s.histogram).expect("same bounds");
            for (code, n) in &s.codes {
                *all.codes.entry(code).or_insert(0) += n;
            }
        }
        let total = Recorder::row(&Mutex::new(all), "total".into(), seconds);
        (ops, rpcs, total)
    }
}

/// Latency figures in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The operation or RPC.
    pub name: String,
    /// Measured (after the warm-up, whatever the answer).
    pub count: u64,
    /// Measured answers that were OK.
    pub ok: u64,
    /// Answers by gRPC code, OK included.
    pub codes: BTreeMap<String, u64>,
    /// Measured answers per second.
    pub ops_per_s: f64,
    /// Latencies of the measured answers, microseconds.
    pub latency_us: Latency,
}

/// Open-loop scheduling figures (measured window only).
#[derive(Clone, Debug, Serialize)]
pub struct OpenLoop {
    /// Target total rate, requests per second.
    pub rate: f64,
    /// Operations scheduled in the measured window (rate x duration).
    pub scheduled: u64,
    /// Scheduled and sent.
    pub sent: u64,
    /// Not sent because `clients` operations were already outstanding.
    pub dropped: u64,
    /// Sent more than `late_threshold_ms` after their intended time (the
    /// tool's own lag; their latency counts from the intended time anyway).
    pub late: u64,
    /// How late, in ms, a send counts as late.
    pub late_threshold_ms: u64,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The server measured.
    pub target: String,
    /// "closed" or "open".
    pub mode: &'static str,
    /// Concurrent clients (closed loop) or the cap on outstanding operations (open loop).
    pub clients: usize,
    /// HTTP/2 connections per principal (caseworker, statistician, auditor).
    pub connections: usize,
    /// The measured window, seconds.
    pub duration_s: f64,
    /// The warm-up before it, seconds.
    pub warmup_s: f64,
    /// The operation mix: weight by operation.
    pub mix: BTreeMap<String, u32>,
    /// What the existing cases are.
    pub cases: String,
    /// Cases the commands, reads and look-ups chose from at the start.
    pub case_pool: u64,
    /// Set-up registrations (without --sim-*), and their duration.
    pub setup_registered: u64,
    /// Seconds the set-up registrations took.
    pub setup_s: f64,
    /// One row per operation.
    pub operations: Vec<Row>,
    /// One row per RPC.
    pub rpcs: Vec<Row>,
    /// Every operation together.
    pub total: Row,
    /// Open loop: the scheduling figures.
    pub open_loop: Option<OpenLoop>,
    /// Events appended by the tool's acknowledged commands (set-up, warm-up
    /// and the end of the run included): the log head grew by this much
    /// unless someone else wrote meanwhile.
    pub appended_events: u64,
    /// Access events written for the tool's answered personal-data reads:
    /// the head grows by `appended_events + access_events`.
    pub access_events: u64,
    /// Cases the tool registered (set-up and warm-up included).
    pub registered_cases: u64,
    /// Look-ups (measured) that found at least one case.
    pub lookup_hits: u64,
    /// Look-ups (measured) that found none.
    pub lookup_misses: u64,
    /// Proofs (measured) checked and found valid.
    pub proofs_verified: u64,
    /// Proofs (measured) checked and found invalid.
    pub proofs_invalid: u64,
    /// Proof operations that found an empty tree.
    pub proofs_empty_tree: u64,
    /// Commands (measured) retried once after ABORTED (a version conflict).
    pub command_retries: u64,
    /// Commands (measured) refused because the person has exited.
    pub commands_on_exited: u64,
}

impl Report {
    /// Whether the server answered with a fault code or an invalid proof.
    pub fn server_faults(&self) -> u64 {
        let codes: u64 = self
            .total
            .codes
            .iter()
            .filter(|(c, _)| SERVER_FAULT_CODES.contains(&c.as_str()))
            .map(|(_, n)| n)
            .sum();
        codes + self.proofs_invalid
    }

    /// The report as a table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "load test of {}: {} loop, {} clients, {} connection(s) per principal, {:.1} s measured after {:.1} s warm-up",
            self.target, self.mode, self.clients, self.connections, self.duration_s, self.warmup_s
        );
        let _ = writeln!(
            out,
            "cases: {} ({} in the pool at the start)",
            self.cases, self.case_pool
        );
        if self.setup_registered > 0 {
            let _ = writeln!(
                out,
                "set-up: {} cases registered in {:.1} s",
                self.setup_registered, self.setup_s
            );
        }
        let mix: Vec<String> = OpKind::ALL
            .iter()
            .map(|k| format!("{}={}", k.name(), self.mix.get(k.name()).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(out, "mix: {}", mix.join(","));
        if let Some(o) = &self.open_loop {
            let _ = writeln!(
                out,
                "open loop at {:.0}/s: {} scheduled, {} sent, {} dropped (at the {}-outstanding cap), {} late by more than {} ms",
                o.rate, o.scheduled, o.sent, o.dropped, self.clients, o.late, o.late_threshold_ms
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<42} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  codes",
            "operation", "count", "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        let line = |out: &mut String, name: &str, r: &Row| {
            let ms = |us: u64| us as f64 / 1000.0;
            let codes: Vec<String> = r.codes.iter().map(|(c, n)| format!("{c}={n}")).collect();
            let _ = writeln!(
                out,
                "{:<42} {:>9} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {}",
                name,
                r.count,
                r.ops_per_s,
                ms(r.latency_us.p50),
                ms(r.latency_us.p99),
                ms(r.latency_us.p999),
                ms(r.latency_us.max),
                codes.join(" ")
            );
        };
        for op in &self.operations {
            line(&mut out, &op.name, op);
            let prefix = format!("{}/", op.name);
            for rpc in self.rpcs.iter().filter(|r| r.name.starts_with(&prefix)) {
                let label = format!("  {}", &rpc.name[prefix.len()..]);
                line(&mut out, &label, rpc);
            }
        }
        line(&mut out, "total", &self.total);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "appended events: {} ({} cases registered by the tool) + {} access events of personal-data reads, set-up and warm-up included",
            self.appended_events, self.registered_cases, self.access_events
        );
        let _ = writeln!(
            out,
            "look-ups: {} found a case, {} found none; proofs: {} verified, {} INVALID, {} on an empty tree; commands: {} retried after ABORTED, {} on persons who exited (refused with FAILED_PRECONDITION)",
            self.lookup_hits,
            self.lookup_misses,
            self.proofs_verified,
            self.proofs_invalid,
            self.proofs_empty_tree,
            self.command_retries,
            self.commands_on_exited
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_hold_counts_codes_and_ordered_percentiles() {
        let r = Recorder::default();
        for i in 1..=1000u64 {
            r.op(OpKind::Read, Duration::from_micros(i * 10), Code::Ok);
        }
        r.op(OpKind::Read, Duration::from_millis(50), Code::NotFound);
        r.rpc(Rpc::GetCase, Duration::from_millis(1), Code::Ok);
        let (ops, rpcs, total) = r.rows(2.0);
        let read = &ops[OpKind::Read.index()];
        assert_eq!(read.count, 1001);
        assert_eq!(read.ok, 1000);
        assert_eq!(read.codes.get("NOT_FOUND"), Some(&1));
        assert!((read.ops_per_s - 500.5).abs() < 1e-9);
        let l = &read.latency_us;
        assert!(l.p50 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max, "{l:?}");
        assert!((4_990..=5_020).contains(&l.p50), "{l:?}");
        assert!((49_900..=50_100).contains(&l.max), "{l:?}");
        assert_eq!(ops[OpKind::Command.index()].count, 0);
        assert_eq!(rpcs.iter().find(|r| r.name == "read/GetCase").unwrap().count, 1);
        assert_eq!(total.count, 1001);
    }
}
