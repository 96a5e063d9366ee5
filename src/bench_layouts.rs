//! `registry bench layouts`: what sled 0.34 does with different key layouts
//! of the log, side by side in one run, so the project measures its own store
//! layout against the alternatives (the store format v2 comparison).
//!
//! One writer appends chained records (each followed by its 32-byte BLAKE3
//! chain hash) of uniformly random cases in group commits, each made durable
//! with sled `flush()` + `fdatasync` of sled's data file. Every layout runs in
//! a fresh directory that is deleted after measuring. Figures, not assertions.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Batch, Transactional, Tree};

/// Flags of `registry bench layouts`.
#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct BenchLayoutsArgs {
    /// Scratch directory; each layout runs in a fresh subdirectory, deleted after measuring.
    #[arg(long, default_value = "./bench-data/layouts")]
    pub dir: PathBuf,
    /// Events appended per layout.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Bytes per record (each is stored with its 32-byte chain hash).
    #[arg(long, default_value_t = 300)]
    pub record_bytes: usize,
    /// Case ids the events are spread over (uniformly at random).
    #[arg(long, default_value_t = 120_000)]
    pub cases: u32,
    /// Events per group commit (one durable write each).
    #[arg(long, default_value_t = 64)]
    pub commit_events: usize,
    /// sled cache capacity in MiB.
    #[arg(long, default_value_t = 256)]
    pub cache_mib: u64,
    /// Interval of the background case-file writer of `chunk+deferred-casefiles`.
    #[arg(long, default_value_t = 1000)]
    pub casefile_flush_ms: u64,
    /// Comma list of layout ids (default all); `raw` is always measured too, last.
    #[arg(long, value_delimiter = ',')]
    pub layouts: Vec<String>,
    /// Also write all figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Why `registry bench layouts` stopped.
#[derive(Debug, thiserror::Error)]
pub enum LayoutsError {
    /// One of `--events`, `--cases`, `--commit-events`, `--record-bytes` is 0.
    #[error("--events, --cases, --commit-events and --record-bytes must be positive")]
    NotPositive,
    /// `--layouts` names a layout that does not exist.
    #[error("unknown layout {name:?}; known: {known}")]
    UnknownLayout {
        /// The name given.
        name: String,
        /// The ids of every layout, comma-separated.
        known: String,
    },
    /// Reading or writing the scratch directory or the `--json` file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A sled operation of a layout failed.
    #[error(transparent)]
    Sled(#[from] sled::Error),
    /// The `--json` report could not be encoded.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The latency histogram could not be created.
    #[error(transparent)]
    Histogram(#[from] hdrhistogram::CreationError),
    /// The benchmark's own machinery failed (a lock, a thread, a transaction).
    #[error("{0}")]
    Internal(&'static str),
}

type Result<T> = std::result::Result<T, LayoutsError>;
type CaseId = [u8; 22];

/// The figures of one layout (a line of the table, an object of the JSON).
#[derive(Clone, Debug, serde::Serialize)]
struct Figures {
    layout: String,
    seconds: f64,      // writer wall time, first commit to last durable commit
    events_per_s: f64, // over the whole run
    ratio_to_raw: f64, // events_per_s over that of `raw` in the same run
    first_tenth_events_per_s: f64,
    last_tenth_events_per_s: f64,
    disk_bytes: u64,    // file sizes in the sled directory after the final flush
    disk_ratio: f64,    // disk_bytes / (events x (record bytes + 32))
    peak_rss_mib: f64,  // max VmRSS sampled every 100 ms while the layout ran
    commit_p50_us: u64, // commit = batch built, applied, flushed, fdatasync'ed
    commit_p99_us: u64,
    commit_max_us: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    FourTrees,
    RecordCasefile,
    ChunkCasefile(usize),
    ChunkDeferred,
    ChunkAlone,
    Raw,
}

use Layout::*;
const ALL: [Layout; 8] = [
    FourTrees,
    RecordCasefile,
    ChunkCasefile(8),
    ChunkCasefile(1),
    ChunkCasefile(0),
    ChunkDeferred,
    ChunkAlone,
    Raw,
];
/// (request id, seq) pairs kept in the case file of `record+casefile`.
const RECORD_CASEFILE_PAIRS: usize = 8;
const RSS_NOTE: &str = "peak RSS is VmRSS sampled every 100 ms; it includes memory the allocator kept from \
    earlier layouts, so for a clean figure measure one layout per run (--layouts ID; raw then runs after it)";
const CASEFILE_NOTE: &str = "deferred case file = u32 BE version + LEB128 varint of every seq of the case, \
    written behind in one unsynced batch per --casefile-flush-ms (its last write is on disk before the disk \
    figure, outside events/s)";

impl Layout {
    fn id(self) -> String {
        match self {
            FourTrees => "four-trees".into(),
            RecordCasefile => "record+casefile".into(),
            ChunkCasefile(n) => format!("chunk+casefile-{n}"),
            ChunkDeferred => "chunk+deferred-casefiles".into(),
            ChunkAlone => "chunk-alone".into(),
            Raw => "raw".into(),
        }
    }
}

/// Runs the selected layouts (then `raw` if not selected), prints one line per
/// layout and, with `--json`, writes the figures as JSON.
pub fn run(args: &BenchLayoutsArgs) -> Result<()> {
    if args.events == 0 || args.cases == 0 || args.commit_events == 0 || args.record_bytes == 0 {
        return Err(LayoutsError::NotPositive);
    }
    let mut layouts = Vec::new();
    for name in args.layouts.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let known = || ALL.map(Layout::id).join(", ");
        let layout = ALL.into_iter().find(|l| l.id() == name);
        let layout = layout.ok_or_else(|| LayoutsError::UnknownLayout {
            name: name.to_string(),
            known: known(),
        })?;
        if !layouts.contains(&layout) {
            layouts.push(layout);
        }
    }
    if layouts.is_empty() {
        layouts = ALL.to_vec();
    }
    if !layouts.contains(&Raw) {
        layouts.push(Raw);
    }
    std::fs::create_dir_all(&args.dir)?;
    println!(
        "layouts: {} events of {} B + 32 B hash over {} cases, commits of {}, flush + fdatasync each; sled cache {} MiB, 8 MiB segments; {}",
        args.events, args.record_bytes, args.cases, args.commit_events, args.cache_mib, args.dir.display()
    );
    let ids: Arc<Vec<CaseId>> = Arc::new((0..args.cases).map(case_id).collect());
    let mut figures = Vec::new();
    for layout in layouts {
        let f = run_layout(layout, args, &ids)?;
        eprintln!("{}: done, {:.0} events/s", f.layout, f.events_per_s);
        figures.push(f);
    }
    let raw = figures
        .iter()
        .find(|f| f.layout == "raw")
        .map_or(0.0, |f| f.events_per_s);
    println!(
        "{:<25} {:>8} {:>6} {:>18} {:>6} {:>9} {:>11}",
        "layout", "events/s", "x raw", "first -> last 10%", "disk", "peak RSS", "p99 commit"
    );
    for f in &mut figures {
        f.ratio_to_raw = if raw > 0.0 { f.events_per_s / raw } else { 0.0 };
        let tenths = format!(
            "{:.1}k -> {:.1}k",
            f.first_tenth_events_per_s / 1e3,
            f.last_tenth_events_per_s / 1e3
        );
        println!(
            "{:<25} {:>8.0} {:>5.2}x {tenths:>18} {:>5.2}x {:>5.0} MiB {:>8} us",
            f.layout, f.events_per_s, f.ratio_to_raw, f.disk_ratio, f.peak_rss_mib, f.commit_p99_us
        );
    }
    println!("note: {RSS_NOTE}\nnote: {CASEFILE_NOTE}");
    if let Some(path) = &args.json {
        let report =
            serde_json::json!({ "parameters": args, "layouts": figures, "notes": [RSS_NOTE, CASEFILE_NOTE] });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    let _ = std::fs::remove_dir(&args.dir);
    Ok(())
}

fn run_layout(layout: Layout, args: &BenchLayoutsArgs, ids: &Arc<Vec<CaseId>>) -> Result<Figures> {
    let dir = args.dir.join(layout.id());
    let _ = std::fs::remove_dir_all(&dir);
    let peak_rss = Arc::new(AtomicU64::new(0));
    let peak = peak_rss.clone();
    let sampler = Ticker::start(Duration::from_millis(100), move || {
        peak.fetch_max(vm_rss_kib().unwrap_or(0), Ordering::Relaxed);
        Ok(())
    });
    let db = sled::Config::new()
        .path(&dir)
        .cache_capacity(args.cache_mib * 1024 * 1024)
        .segment_size(8 * 1024 * 1024)
        .flush_every_ms(Some(500))
        .open()?;
    let data_file = OpenOptions::new().read(true).write(true).open(dir.join("db"))?;
    let mut sink = Sink::new(layout, &db, args, ids)?;
    let mut workload = Workload {
        rng: 0x5EED,
        prev: [0; 32],
        cases: u64::from(args.cases),
        bytes: args.record_bytes,
    };
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let tenth = (args.events / 10).max(1);
    let (mut first_tenth, mut last_tenth_from, mut next_progress) = (None, None, 1);
    let started = Instant::now();
    let mut seq = 0u64;
    while seq < args.events {
        let first = seq + 1;
        seq += (args.commit_events as u64).min(args.events - seq);
        let events: Vec<Event> = (first..=seq).map(|s| workload.next(s)).collect();
        let t0 = Instant::now();
        sink.commit(first, &events, &workload.prev)?;
        durable(&db, &data_file)?;
        sink.published(first, &events)?;
        latency.saturating_record((t0.elapsed().as_micros() as u64).max(1));
        let at = started.elapsed();
        if first_tenth.is_none() && seq >= tenth {
            first_tenth = Some(rate(seq, at));
        }
        if last_tenth_from.is_none() && seq >= args.events.saturating_sub(tenth) {
            last_tenth_from = Some((seq, at));
        }
        while next_progress <= 10 && seq * 10 >= args.events * next_progress {
            let pct = next_progress * 10;
            eprintln!(
                "{}: {pct:>3}% {seq} events, {:.0} events/s",
                layout.id(),
                rate(seq, at)
            );
            next_progress += 1;
        }
    }
    let elapsed = started.elapsed();
    sink.finish()?;
    durable(&db, &data_file)?;
    let disk_bytes = dir_bytes(&dir)?;
    drop((data_file, db));
    sampler.stop()?;
    std::fs::remove_dir_all(&dir)?;
    let (last_seq, last_at) = last_tenth_from.unwrap_or((0, Duration::ZERO));
    let peak_kib = peak_rss.load(Ordering::Relaxed).max(vm_rss_kib().unwrap_or(0));
    Ok(Figures {
        layout: layout.id(),
        seconds: elapsed.as_secs_f64(),
        events_per_s: rate(args.events, elapsed),
        ratio_to_raw: 0.0,
        first_tenth_events_per_s: first_tenth.unwrap_or(0.0),
        last_tenth_events_per_s: rate(args.events - last_seq, elapsed.saturating_sub(last_at)),
        disk_bytes,
        disk_ratio: disk_bytes as f64 / (args.events * (args.record_bytes as u64 + 32)) as f64,
        peak_rss_mib: peak_kib as f64 / 1024.0,
        commit_p50_us: latency.value_at_quantile(0.50),
        commit_p99_us: latency.value_at_quantile(0.99),
        commit_max_us: latency.max(),
    })
}

fn durable(db: &sled::Db, data_file: &File) -> Result<()> {
    db.flush()?;
    data_file.sync_data()?;
    Ok(())
}

/// One generated event: its case, request id and stored bytes (record || chain hash).
struct Event {
    case: usize,
    request: [u8; 16],
    stored: Vec<u8>,
}

/// Deterministic workload: splitmix64 picks cases, request ids and record bytes.
struct Workload {
    rng: u64,
    prev: [u8; 32],
    cases: u64,
    bytes: usize,
}

impl Workload {
    fn next(&mut self, seq: u64) -> Event {
        let case = (splitmix64(&mut self.rng) % self.cases) as usize;
        let mut request = [0u8; 16];
        request[..8].copy_from_slice(&splitmix64(&mut self.rng).to_le_bytes());
        request[8..].copy_from_slice(&seq.to_be_bytes());
        let mut stored = Vec::with_capacity(self.bytes + 40);
        while stored.len() < self.bytes {
            stored.extend_from_slice(&splitmix64(&mut self.rng).to_le_bytes());
        }
        stored.truncate(self.bytes);
        self.prev = *blake3::Hasher::new()
            .update(&self.prev)
            .update(&stored)
            .finalize()
            .as_bytes();
        stored.extend_from_slice(&self.prev);
        Event {
            case,
            request,
            stored,
        }
    }
}

/// Case files of `chunk+deferred-casefiles`, kept in memory and written behind.
struct CaseFiles {
    files: Vec<Vec<u8>>,
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    covers: u64,
}

/// Turns commits into sled writes according to one layout.
struct Sink {
    layout: Layout,
    db: sled::Db,
    trees: Option<[Tree; 4]>,
    ids: Arc<Vec<CaseId>>,
    versions: Vec<u32>,
    recent: Vec<VecDeque<([u8; 16], u64)>>,
    deferred: Option<(Arc<Mutex<CaseFiles>>, Ticker)>,
}

impl Sink {
    fn new(layout: Layout, db: &sled::Db, args: &BenchLayoutsArgs, ids: &Arc<Vec<CaseId>>) -> Result<Self> {
        let trees = match layout {
            FourTrees => Some([
                db.open_tree("events")?,
                db.open_tree("streams")?,
                db.open_tree("requests")?,
                db.open_tree("meta")?,
            ]),
            _ => None,
        };
        let deferred = (layout == ChunkDeferred).then(|| {
            let files = CaseFiles {
                files: vec![Vec::new(); ids.len()],
                dirty: Vec::new(),
                is_dirty: vec![false; ids.len()],
                covers: 0,
            };
            let shared = Arc::new(Mutex::new(files));
            let (db, files, ids) = (db.clone(), shared.clone(), ids.clone());
            let every = Duration::from_millis(args.casefile_flush_ms.max(1));
            (
                shared,
                Ticker::start(every, move || write_case_files(&db, &files, &ids)),
            )
        });
        Ok(Sink {
            layout,
            db: db.clone(),
            trees,
            ids: ids.clone(),
            versions: vec![0; ids.len()],
            recent: vec![VecDeque::new(); ids.len()],
            deferred,
        })
    }

    /// Writes one commit (durable after the caller's flush + fdatasync).
    fn commit(&mut self, first: u64, events: &[Event], hash: &[u8; 32]) -> Result<()> {
        let head = [&(first + events.len() as u64 - 1).to_be_bytes()[..], hash].concat();
        let seqs = (first..).zip(events);
        let mut batch = Batch::default();
        match self.layout {
            FourTrees => return self.commit_four_trees(first, events, &head),
            Raw => seqs
                .clone()
                .for_each(|(seq, e)| batch.insert(&seq.to_be_bytes()[..], &e.stored[..])),
            RecordCasefile => seqs
                .clone()
                .for_each(|(seq, e)| batch.insert(key(b'E', &seq.to_be_bytes()), &e.stored[..])),
            ChunkCasefile(_) | ChunkDeferred | ChunkAlone => {
                let mut chunk = Vec::with_capacity(events.iter().map(|e| e.stored.len() + 4).sum());
                for e in events {
                    chunk.extend_from_slice(&(e.stored.len() as u32).to_le_bytes());
                    chunk.extend_from_slice(&e.stored);
                }
                batch.insert(key(b'C', &first.to_be_bytes()), chunk);
            }
        }
        let pairs = match self.layout {
            RecordCasefile => Some(RECORD_CASEFILE_PAIRS),
            ChunkCasefile(n) => Some(n),
            _ => None,
        };
        for (seq, e) in seqs {
            self.versions[e.case] += 1;
            let Some(n) = pairs else { continue };
            let recent = &mut self.recent[e.case];
            if n > 0 {
                if recent.len() == n {
                    recent.pop_front();
                }
                recent.push_back((e.request, seq));
            }
            let mut file = self.versions[e.case].to_be_bytes().to_vec();
            for (request, s) in recent.iter() {
                file.extend_from_slice(request);
                file.extend_from_slice(&s.to_be_bytes());
            }
            batch.insert(key(b'S', &self.ids[e.case]), file);
        }
        if self.layout != Raw {
            batch.insert(b"H".as_slice(), head);
        }
        Ok(self.db.apply_batch(batch)?)
    }

    /// Store v1's shape: record, stream index, request index and head in one transaction.
    fn commit_four_trees(&mut self, first: u64, events: &[Event], head: &[u8]) -> Result<()> {
        let (mut records, mut streams, mut requests) = (Batch::default(), Batch::default(), Batch::default());
        for (seq, e) in (first..).zip(events) {
            self.versions[e.case] += 1;
            let (id, seq) = (&self.ids[e.case][..], seq.to_be_bytes());
            let version = u64::from(self.versions[e.case]).to_be_bytes();
            let hash = &e.stored[e.stored.len() - 32..e.stored.len() - 12];
            records.insert(&seq[..], &e.stored[..]);
            streams.insert([&[id.len() as u8][..], id, &version].concat(), &seq[..]);
            // request value: case id 22 + version 8 + seq 8 + 20 bytes of the hash = 58 bytes
            requests.insert(&e.request[..], [id, &version, &seq, hash].concat());
        }
        let Some([t0, t1, t2, t3]) = &self.trees else {
            return Err(LayoutsError::Internal("four-trees without its trees"));
        };
        (t0, t1, t2, t3)
            .transaction(|(tr, ts, tq, tm)| {
                tr.apply_batch(&records)?;
                ts.apply_batch(&streams)?;
                tq.apply_batch(&requests)?;
                tm.insert(b"head".as_slice(), head)?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => e.into(),
                TransactionError::Abort(()) => LayoutsError::Internal("transaction aborted"),
            })
    }

    /// After a commit is durable: appends its seqs to the deferred case files
    /// in memory and marks them dirty (`commit` has counted the versions).
    fn published(&mut self, first: u64, events: &[Event]) -> Result<()> {
        let Some((shared, _)) = &self.deferred else {
            return Ok(());
        };
        let mut guard = shared
            .lock()
            .map_err(|_| LayoutsError::Internal("case files lock poisoned"))?;
        let files = &mut *guard;
        for (seq, e) in (first..).zip(events) {
            let file = &mut files.files[e.case];
            if file.is_empty() {
                file.extend_from_slice(&[0; 4]);
            }
            file[..4].copy_from_slice(&self.versions[e.case].to_be_bytes());
            let mut v = seq;
            while v >= 0x80 {
                file.push((v as u8 & 0x7f) | 0x80);
                v >>= 7;
            }
            file.push(v as u8);
            if !std::mem::replace(&mut files.is_dirty[e.case], true) {
                files.dirty.push(e.case);
            }
        }
        files.covers = first + events.len() as u64 - 1;
        Ok(())
    }

    /// Stops the case-file writer after its last write.
    fn finish(self) -> Result<()> {
        self.deferred.map_or(Ok(()), |(_, writer)| writer.stop())
    }
}

/// Writes every dirty case file and the seq they cover in one batch (not synced).
fn write_case_files(db: &sled::Db, shared: &Mutex<CaseFiles>, ids: &[CaseId]) -> Result<()> {
    let mut batch = Batch::default();
    {
        let mut guard = shared
            .lock()
            .map_err(|_| LayoutsError::Internal("case files lock poisoned"))?;
        let files = &mut *guard;
        for case in std::mem::take(&mut files.dirty) {
            files.is_dirty[case] = false;
            batch.insert(key(b'S', &ids[case]), &files.files[case][..]);
        }
        batch.insert(b"cases_at".as_slice(), &files.covers.to_be_bytes()[..]);
    }
    Ok(db.apply_batch(batch)?)
}

/// A background thread running `tick` every `every`, and once more when stopped.
struct Ticker {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Result<()>>,
}

impl Ticker {
    fn start(every: Duration, mut tick: impl FnMut() -> Result<()> + Send + 'static) -> Self {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::spawn(move || loop {
            let last = !matches!(stopped.recv_timeout(every), Err(RecvTimeoutError::Timeout));
            tick()?;
            if last {
                return Ok(());
            }
        });
        Ticker { stop, thread }
    }

    fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.thread
            .join()
            .map_err(|_| LayoutsError::Internal("background thread panicked"))?
    }
}

fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// `C-` + 20 hex chars of BLAKE3 of the case number: uniformly random keys, as in production.
fn case_id(n: u32) -> CaseId {
    let hex = blake3::hash(&u64::from(n).to_le_bytes()).to_hex();
    let mut id = [0u8; 22];
    id[..2].copy_from_slice(b"C-");
    id[2..].copy_from_slice(&hex.as_bytes()[..20]);
    id
}

fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    [&[prefix][..], rest].concat()
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rate(events: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        events as f64 / s
    } else {
        0.0
    }
}
