//! `registry bench audit`: figures, not assertions.
//!
//! 1. Builds a persisted tree of N synthetic leaves with `append_leaves` in
//!    follower-sized batches (tree append cost, leaves/s).
//! 2. Inclusion and consistency proof generation against the tree of N
//!    leaves: mean and p99 time, proof length (each proof is also verified,
//!    outside the timing).
//! 3. Offline export verification, events/s: a given export, or a synthetic
//!    in-memory export of valid records of ~400 bytes.
//! 4. The Merkle follower over a real log: durable appends/s with and
//!    without the follower running (same run), and the follower's catch-up
//!    rate over the log written.

use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::checkpoint::Checkpoint;
use super::export::{verify_export, EXPORT_MAGIC, EXPORT_VERSION};
use super::merkle::{self, leaf_hash, Frontier};
use super::tree::{spawn_follower, MerkleTree};
use crate::cli::audit::BenchAuditArgs;
use crate::limits::AUDIT_FOLLOW_BATCH_EVENTS;
use crate::log::record::{chain_hash, Record, GENESIS_PREV_HASH};
use crate::log::{Actor, Log, SyncMode, WriterConfig};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// A small deterministic PRNG (splitmix64) for sampling.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Times `samples` proofs and prints `what` with the mean, p99 and maximum
/// time and the longest proof: `prove` (the part timed) makes the proof of
/// the case `pick` draws, `check` verifies it once the clock has stopped.
fn time_proofs(
    what: &str,
    samples: usize,
    mut pick: impl FnMut() -> u64,
    prove: impl Fn(u64) -> BenchResult<Vec<merkle::Hash>>,
    check: impl Fn(u64, &[merkle::Hash]) -> BenchResult<()>,
) -> BenchResult<()> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let (mut max_len, mut total) = (0usize, 0f64);
    for _ in 0..samples {
        let case = pick();
        let t = Instant::now();
        let p = prove(case)?;
        let ns = t.elapsed().as_nanos() as u64;
        hist.saturating_record(ns);
        total += ns as f64;
        max_len = max_len.max(p.len());
        check(case, &p)?;
    }
    println!(
        "{what}: mean {:.1} us, p99 {:.1} us, max {:.1} us, proof length max {max_len} hashes ({samples} samples)",
        total / samples as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
    );
    Ok(())
}

/// Runs `registry bench audit` and prints its figures (module docs: the
/// four measurements). Empties `args.dir` first and removes it at the end;
/// refuses fewer than 2 events or 0 samples.
pub fn run(args: &BenchAuditArgs) -> BenchResult<()> {
    if args.events < 2 || args.samples == 0 {
        return Err("--events must be at least 2 and --samples at least 1".into());
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    println!(
        "audit benchmark: {} leaves, dir {}",
        args.events,
        args.dir.display()
    );

    // 1. Tree build.
    let db = sled::Config::new()
        .path(args.dir.join("tree"))
        .cache_capacity(256 * 1024 * 1024)
        .open()?;
    let tree = MerkleTree::open(&db)?;
    let started = Instant::now();
    let mut next = 0u64;
    let mut batch = Vec::with_capacity(AUDIT_FOLLOW_BATCH_EVENTS);
    let mut last_report = Instant::now();
    while next < args.events {
        batch.clear();
        let end = (next + AUDIT_FOLLOW_BATCH_EVENTS as u64).min(args.events);
        for i in next..end {
            batch.push(leaf_hash(&i.to_be_bytes()));
        }
        tree.append_leaves(&batch)?;
        next = end;
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("  ... {next} leaves");
            last_report = Instant::now();
        }
    }
    db.flush()?;
    let build = started.elapsed().as_secs_f64();
    println!(
        "tree append: {} leaves in batches of {} in {:.1}s: {:.0} leaves/s (sled size {} MiB)",
        args.events,
        AUDIT_FOLLOW_BATCH_EVENTS,
        build,
        args.events as f64 / build,
        db.size_on_disk()? / (1 << 20)
    );

    // 2. Proofs.
    let n = args.events;
    let root = tree.root(n)?;
    let mut rng = Rng(42);
    // Warm up the cache path once.
    for _ in 0..100.min(args.samples) {
        tree.inclusion_proof(rng.below(n), n)?;
    }
    time_proofs(
        &format!("inclusion proof (tree of {n})"),
        args.samples,
        || rng.below(n),
        |i| Ok(tree.inclusion_proof(i, n)?),
        |i, p| {
            Ok(merkle::verify_inclusion(
                &leaf_hash(&i.to_be_bytes()),
                i,
                n,
                p,
                &root,
            )?)
        },
    )?;
    time_proofs(
        &format!("consistency proof (old size random, new {n})"),
        args.samples.min(2_000),
        || 1 + rng.below(n - 1),
        |old| Ok(tree.consistency_proof(old, n)?),
        |old, p| Ok(merkle::verify_consistency(old, n, &tree.root(old)?, &root, p)?),
    )?;
    let t = Instant::now();
    let reps = 1000;
    for _ in 0..reps {
        std::hint::black_box(tree.root(1 + rng.below(n))?);
    }
    println!(
        "root at a random size: mean {:.1} us",
        t.elapsed().as_secs_f64() * 1e6 / reps as f64
    );
    drop(tree);
    drop(db);
    let _ = std::fs::remove_dir_all(args.dir.join("tree"));

    // 3. Export verification.
    match &args.export {
        Some(path) => {
            let f = std::fs::File::open(path)?;
            let rep = verify_export(f, None, &mut |_| {})?;
            println!(
                "export verification ({}): {} records, {:.0} events/s",
                path.display(),
                rep.count,
                rep.events_per_sec()
            );
        }
        None => {
            let (bytes, cp) = synthetic_export(args.export_records, 400);
            let rep = verify_export(Cursor::new(&bytes), Some(&cp), &mut |_| {})?;
            println!(
                "export verification (synthetic, in memory, {} records of ~400 B, {} MiB, chain + Merkle root + checkpoint compare): {:.0} events/s",
                rep.count,
                bytes.len() >> 20,
                rep.events_per_sec()
            );
        }
    }

    // 4. Appends with and without the follower; follower catch-up rate.
    let log_dir = args.dir.join("log");
    let secs = Duration::from_secs(args.append_seconds);
    let without = append_rate(&log_dir, secs, false)?;
    let with = append_rate(&log_dir, secs, true)?;
    println!(
        "durable appends (64 appenders, 300 B payload, sync flush): {without:.0} events/s without the Merkle follower, \
         {with:.0} events/s with it ({:+.1}%)",
        (with / without - 1.0) * 100.0
    );
    let store = crate::log::Store::open(&log_dir)?;
    // A fresh tree over the written log: the follower's catch-up rate.
    let fresh = sled::Config::new().path(args.dir.join("tree2")).open()?;
    let t2 = MerkleTree::open(&fresh)?;
    let started = Instant::now();
    let size = catch_up_other(&t2, &store)?;
    println!(
        "follower catch-up over the log: {size} events, {:.0} leaves/s (read, link and chain-hash check, leaf hash, tree append)",
        size as f64 / started.elapsed().as_secs_f64()
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&args.dir);
    Ok(())
}

/// The follower's work over `store` into a tree kept in another database.
fn catch_up_other(tree: &MerkleTree, store: &crate::log::Store) -> BenchResult<u64> {
    Ok(tree.catch_up(store)?)
}

/// Valid v1 records of about `record_bytes` each, chained, as an export
/// starting at seq 1, and a checkpoint (unsigned body) over all of them.
pub fn synthetic_export(count: u64, record_bytes: usize) -> (Vec<u8>, Checkpoint) {
    let mut out = Vec::with_capacity((count as usize) * (record_bytes + 80));
    out.extend_from_slice(EXPORT_MAGIC);
    out.extend_from_slice(&EXPORT_VERSION.to_be_bytes());
    out.extend_from_slice(&1u64.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    let mut prev = GENESIS_PREV_HASH;
    let mut f = Frontier::new();
    let mut rec = Record {
        seq: 0,
        recorded_at_us: 1_700_000_000_000_000,
        stream_id: String::new(),
        stream_version: 1,
        part: 0,
        parts: 1,
        event_type: "PermitIssued".into(),
        actor: Actor {
            user_id: "auditor-bench".into(),
            office: "BOG".into(),
        },
        request_id: String::new(),
        payload: vec![0x42; record_bytes.saturating_sub(120)],
        prev_hash: prev,
    };
    for seq in 1..=count {
        rec.seq = seq;
        rec.recorded_at_us += 1;
        rec.stream_id = format!("case-{}", seq / 7);
        rec.request_id = format!("req-{seq}");
        rec.prev_hash = prev;
        let bytes = rec.encode();
        let h = chain_hash(&prev, &bytes);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
        out.extend_from_slice(&h);
        f.push(leaf_hash(&bytes));
        prev = h;
    }
    (
        out,
        Checkpoint {
            origin: "bench".into(),
            size: count,
            root: f.root(),
        },
    )
}

/// Durable appends/s for `secs` with 64 appenders, optionally with the Merkle follower running.
fn append_rate(dir: &std::path::Path, secs: Duration, follower: bool) -> BenchResult<f64> {
    let log = Log::open(
        dir,
        WriterConfig {
            sync: SyncMode::Flush,
        },
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let follower_task = if follower {
        let tree = MerkleTree::open(log.store().db())?;
        tree.catch_up(log.store())?;
        let (size_tx, _size_rx) = tokio::sync::watch::channel(tree.size());
        let _guard = runtime.enter();
        Some(spawn_follower(
            tree,
            log.store().clone(),
            log.subscribe_head(),
            size_tx,
            stop_rx,
        ))
    } else {
        None
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let tag = if follower { "f" } else { "n" };
    for t in 0..64 {
        let appender = log.appender();
        let stop = stop.clone();
        let stream = format!("bench-audit-{tag}-{t}");
        tasks.push(runtime.spawn(async move {
            let (mut version, mut n) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let req = crate::bench::bench_append(&stream, version, n, vec![0x5A; 300]);
                version = appender.append(req).await.expect("bench append").last_version;
                n += 1;
            }
            n
        }));
    }
    let started = Instant::now();
    std::thread::sleep(secs);
    stop.store(true, Ordering::Relaxed);
    let mut events = 0u64;
    for t in tasks {
        events += runtime.block_on(t)?;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    if let Some(t) = follower_task {
        let _ = runtime.block_on(t);
    }
    drop(runtime);
    log.shutdown()?;
    Ok(rate)
}
