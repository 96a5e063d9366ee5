//! `registry bench worklists` (build rate, list sizes, query latency) and
//! the worklists' part of `registry rebuild-projections` (the rebuild
//! itself is `worklist::rebuild_store`).

use super::BoxError;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::domain::{Date, DEPARTMENTS};
use crate::limits::WORKLIST_HORIZON_DAYS_DEFAULT;
use crate::log::Store;
use crate::worklist::engine::Worklists;
use crate::worklist::facts::Kind;
use crate::worklist::index::TREE;
use crate::worklist::query::{page, Query};

/// `registry bench worklists`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchWorklistsArgs {
    /// Store to measure; simulated first with --persons if it has no events.
    #[arg(long, default_value = "./bench-worklists-data")]
    pub data_dir: PathBuf,
    /// Persons to simulate when the store is empty (the full caseload is 2,800,000).
    #[arg(long, default_value_t = 280_000)]
    pub persons: u64,
    /// Simulation threads.
    #[arg(long, default_value_t = 64)]
    pub threads: usize,
    /// Queries per measured list and filter.
    #[arg(long, default_value_t = 500)]
    pub queries: usize,
    /// Items per page.
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
}

/// Drops the worklists of the store in `data_dir` and rebuilds them from
/// the log (and the policy stream in it); prints the figures.
pub fn rebuild(data_dir: &Path) -> Result<(), BoxError> {
    let store = Store::open(data_dir)?;
    let c = crate::worklist::rebuild_store(&store, &mut |_| {})?;
    println!(
        "rebuilt worklists: {} events in {:.2}s ({:.0} events/s), {} batches, position seq {} hash {}",
        c.events,
        c.elapsed.as_secs_f64(),
        c.events_per_second(),
        c.batches,
        c.position.seq,
        c.position.hash_hex()
    );
    Ok(())
}

fn vm_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The window of `q`, `from .. to` (an open end empty).
fn window(q: &Query) -> String {
    let date = |d: Option<Date>| d.map(|d| d.to_string()).unwrap_or_default();
    format!("{} .. {}", date(q.from), date(q.to))
}

/// Runs `registry bench worklists`.
pub fn bench(args: &BenchWorklistsArgs) -> Result<(), BoxError> {
    let has_events = args.data_dir.join("db").exists() && Store::open(&args.data_dir)?.head()?.seq > 0;
    if !has_events {
        println!(
            "simulating {} persons into {} ...",
            args.persons,
            args.data_dir.display()
        );
        let mut opts = crate::simulate::SimulateOptions::new(args.persons, 1, args.data_dir.clone());
        opts.threads = args.threads;
        let r = crate::simulate::run(&opts)?;
        println!(
            "simulated: {} events in {:.1}s",
            r.appended_events,
            r.elapsed.as_secs_f64()
        );
    }
    let store = Store::open(&args.data_dir)?;
    let rss_before = vm_rss_mib();
    let c = crate::worklist::rebuild_store(&store, &mut |_| {})?;
    println!(
        "build: {} events in {:.2}s = {:.0} events/s ({} batches of <= {} events); VmRSS {:.0} MiB before, {:.0} MiB after",
        c.events,
        c.elapsed.as_secs_f64(),
        c.events_per_second(),
        c.batches,
        crate::limits::WORKLIST_BATCH_EVENTS,
        rss_before,
        vm_rss_mib()
    );
    let w = Worklists::open(&store)?;
    let tree = store.db().open_tree(TREE)?;
    let (mut facts, mut bytes) = (0u64, 0u64);
    let mut sizes = [0u64; 12];
    for kv in tree.iter() {
        let (k, v) = kv?;
        bytes += (k.len() + v.len()) as u64;
        match k.first() {
            Some(b'i') => sizes[usize::from(k[1]).min(11)] += 1,
            Some(b'f') => facts += 1,
            _ => {}
        }
    }
    println!(
        "tree `{TREE}`: {facts} case facts, {} index entries, {:.1} MiB of keys and values",
        sizes.iter().sum::<u64>(),
        bytes as f64 / 1048576.0
    );
    let reference = crate::simulate::TODAY;
    let all: Vec<u8> = DEPARTMENTS.iter().map(|&(c, _)| c).collect();
    println!(
        "queries: reference date {reference}, horizon {WORKLIST_HORIZON_DAYS_DEFAULT} days, page size {}, {} queries each (p50 / p99 / max, items in the first page)",
        args.page_size, args.queries
    );
    for kind in Kind::ALL {
        // Every PPT ends on 2031-05-30: permits are measured in the month before.
        let reference = match kind {
            Kind::PermitsExpiring => Date::new(2031, 5, 15).expect("a date"),
            _ => reference,
        };
        let base = Query::whole_list(kind, all.clone(), reference, args.page_size);
        let office = page(&w, &base)?.items.first().map(|i| i.office.clone());
        let variants = [
            ("all departments", base.clone()),
            (
                "department 11",
                Query {
                    departments: vec![11],
                    ..base.clone()
                },
            ),
            (
                "municipality 05001",
                Query {
                    departments: vec![5],
                    municipality: Some(5001),
                    ..base.clone()
                },
            ),
            (
                "office of the first item, all departments",
                Query {
                    office: office.clone(),
                    ..base.clone()
                },
            ),
        ];
        println!(
            "  {} ({} entries, reference {reference}, window {})",
            kind.as_str(),
            sizes[kind as usize],
            window(&base)
        );
        for (name, q) in &variants {
            let mut times = Vec::with_capacity(args.queries);
            let mut items = 0;
            let mut examined = 0;
            for _ in 0..args.queries {
                let t = Instant::now();
                let p = page(&w, q)?;
                times.push(t.elapsed());
                items = p.items.len();
                examined = p.examined;
            }
            times.sort();
            println!(
                "    {name:<42} p50 {:>8.1} us  p99 {:>8.1} us  max {:>8.1} us  ({items} items, {examined} entries examined)",
                percentile(&times, 0.5).as_secs_f64() * 1e6,
                percentile(&times, 0.99).as_secs_f64() * 1e6,
                times.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
            );
        }
    }
    // The cost of walking a whole list page by page (every item once).
    let kind = Kind::AwaitingDecision;
    let mut q = Query::whole_list(kind, all, reference, 1000);
    let t = Instant::now();
    let (mut pages, mut items) = (0u64, 0u64);
    loop {
        let p = page(&w, &q)?;
        pages += 1;
        items += p.items.len() as u64;
        match p.next {
            Some(next) => q.after = Some(next),
            None => break,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "walk: {} over {}: {items} items in {pages} pages of 1000 in {:.2}s ({:.0} us per page)",
        kind.as_str(),
        window(&q),
        secs,
        secs * 1e6 / pages.max(1) as f64
    );
    Ok(())
}
