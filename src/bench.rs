//! `registry bench log`: durable appends through the writer against the raw
//! sled limit, measured in the same run on the same disk.
//!
//! Figures, not assertions: this prints events/s, latency percentiles and the
//! ratio to the raw limit; nothing here passes or fails.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::log::record::{chain_hash, split_stored};
use crate::log::store::SyncMode;
use crate::log::verify::verify_chain;
use crate::log::{Actor, AppendRequest, ExpectedVersion, Head, Log, NewEvent, WriterConfig};

/// Options of the log benchmark.
#[derive(Clone, Debug)]
pub struct LogBenchOptions {
    /// Directory for the benchmark stores (a fresh subdirectory per run).
    pub dir: PathBuf,
    /// Payload bytes per event.
    pub payload_bytes: usize,
    /// How long each concurrency level runs.
    pub duration: Duration,
    /// Concurrency levels (appenders) to measure.
    pub appenders: Vec<usize>,
    /// How each group commit reaches disk.
    pub sync: SyncMode,
}

/// One measured concurrency level.
#[derive(Clone, Debug)]
pub struct AppendFigures {
    /// Concurrent appenders.
    pub appenders: usize,
    /// Events appended.
    pub events: u64,
    /// Events appended per second.
    pub events_per_s: f64,
    /// Median append latency, microseconds.
    pub p50_us: u64,
    /// 99th percentile append latency, microseconds.
    pub p99_us: u64,
}

/// Runs the benchmark and prints its figures.
pub fn run_log_bench(opts: &LogBenchOptions) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&opts.dir)?;
    println!(
        "log benchmark: payload {} B, {:?} per level, sync {:?}, dir {}",
        opts.payload_bytes,
        opts.duration,
        opts.sync,
        opts.dir.display()
    );
    let raw = raw_batch_rate(&opts.dir.join("raw"), opts.payload_bytes + 120, opts.sync)?;
    println!(
        "raw limit: sled apply_batch(1000) + flush{}: {raw:.0} events/s",
        sync_suffix(opts.sync)
    );
    let log_dir = opts.dir.join("log");
    let _ = std::fs::remove_dir_all(&log_dir);
    for &n in &opts.appenders {
        let f = append_level(&log_dir, n, opts)?;
        println!(
            "appenders {:>3}: {:>9} events  {:>9.0} events/s  p50 {:>6} us  p99 {:>6} us  ratio to raw {:.2}",
            f.appenders,
            f.events,
            f.events_per_s,
            f.p50_us,
            f.p99_us,
            f.events_per_s / raw
        );
    }
    let store = crate::log::Store::open(&log_dir)?;
    raw_scan_rate(&store)?; // warm the cache so both walks read the same way
    let (scan_rate, scanned) = raw_scan_rate(&store)?;
    let started = Instant::now();
    let report = verify_chain(&store, Head::EMPTY, &mut |_| {})?;
    let verify_rate = report.events as f64 / started.elapsed().as_secs_f64();
    println!("raw limit: sled scan + BLAKE3 of each record: {scanned} events, {scan_rate:.0} events/s");
    println!(
        "verify chain: {} events, {verify_rate:.0} events/s, ratio to raw scan {:.2}",
        report.events,
        verify_rate / scan_rate
    );
    Ok(())
}

fn sync_suffix(mode: SyncMode) -> &'static str {
    match mode {
        SyncMode::Fdatasync => " + fdatasync",
        SyncMode::Flush => "",
    }
}

/// The raw limit: sled `apply_batch` of 1,000 values of `value_bytes` plus the
/// same durability step the writer uses, repeated for about two seconds.
fn raw_batch_rate(dir: &Path, value_bytes: usize, sync: SyncMode) -> Result<f64, Box<dyn std::error::Error>> {
    let _ = std::fs::remove_dir_all(dir);
    // The store's own sled configuration (cache, segment size), on a fresh directory.
    let db = crate::log::store::sled_config(dir).open()?;
    let tree = db.open_tree("events")?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("db"))?;
    let value = vec![0xA5u8; value_bytes];
    let mut seq = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let mut batch = sled::Batch::default();
        for _ in 0..1000 {
            seq += 1;
            batch.insert(&seq.to_be_bytes(), value.clone());
        }
        tree.apply_batch(batch)?;
        db.flush()?;
        if sync == SyncMode::Fdatasync {
            file.sync_data()?;
        }
    }
    Ok(seq as f64 / started.elapsed().as_secs_f64())
}

/// `registry bench verify`: on a stopped store, the raw limit of
/// verification (one sequential scan of the chunks with BLAKE3 of each
/// record, one thread) and then `registry verify`'s full check, with the
/// ratio. The scan runs first, so the verification finds the page cache as
/// warm as the scan left it (drop the cache before, not between, for a cold figure).
pub fn run_verify_bench(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let store = crate::log::Store::open(dir)?;
    let (raw, n) = raw_scan_rate(&store)?;
    println!("raw limit: scan of the chunks + BLAKE3 of each record: {n} events, {raw:.0} events/s");
    let started = Instant::now();
    let (chain, index) = crate::log::verify::verify_full(&store, &mut |_, _| {})?;
    let elapsed = started.elapsed().as_secs_f64();
    let rate = chain.events as f64 / elapsed.max(1e-9);
    println!(
        "registry verify: {} events and {} case files in {elapsed:.2}s, {rate:.0} events/s, ratio to the raw scan {:.2}",
        chain.events,
        index.case_files,
        rate / raw.max(1e-9)
    );
    Ok(())
}

/// The raw limit of verification: scan the chunks and BLAKE3 each record.
fn raw_scan_rate(store: &crate::log::Store) -> Result<(f64, u64), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut n = 0u64;
    let mut acc = [0u8; 32];
    for kv in store.raw_range(1, u64::MAX) {
        let (_, v) = kv?;
        let (record, _) = split_stored(&v)?;
        acc = chain_hash(&acc, record);
        n += 1;
    }
    std::hint::black_box(acc);
    Ok((n as f64 / started.elapsed().as_secs_f64(), n))
}

/// The `n`th append of a benchmark: one `BenchEvent` carrying `payload` to
/// `stream`, now at `version` (0: not created yet).
pub(crate) fn bench_append(stream: &str, version: u64, n: u64, payload: Vec<u8>) -> AppendRequest {
    let expected = if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    };
    AppendRequest {
        stream_id: stream.to_string(),
        expected,
        request_id: format!("{stream}-{n}"),
        actor: Actor {
            user_id: "bench".into(),
            office: "BENCH".into(),
        },
        events: vec![NewEvent {
            event_type: "BenchEvent".into(),
            payload,
        }],
    }
}

fn append_level(
    dir: &Path,
    appenders: usize,
    opts: &LogBenchOptions,
) -> Result<AppendFigures, Box<dyn std::error::Error>> {
    let log = Log::open(dir, WriterConfig { sync: opts.sync })?;
    // Appenders are tasks on a two-worker runtime, as gRPC handlers would be.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..appenders {
        let appender = log.appender();
        let stop = stop.clone();
        let payload = vec![0x5Au8; opts.payload_bytes];
        tasks.push(runtime.spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut version = 0u64;
            let stream = format!("bench-{appenders}-{t}");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let req = bench_append(&stream, version, n, payload.clone());
                let started = Instant::now();
                let res = appender.append(req).await.expect("bench append");
                hist.saturating_record(started.elapsed().as_micros() as u64);
                version = res.last_version;
            }
            hist
        }));
    }
    let started = Instant::now();
    std::thread::sleep(opts.duration);
    stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        hist.add(runtime.block_on(t)?)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(runtime);
    log.shutdown()?;
    let events = hist.len();
    Ok(AppendFigures {
        appenders,
        events,
        events_per_s: events as f64 / elapsed,
        p50_us: hist.value_at_quantile(0.50),
        p99_us: hist.value_at_quantile(0.99),
    })
}
