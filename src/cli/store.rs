//! `registry verify`, `registry copy-store` and `registry migrate-store`:
//! a stopped store checked, copied, converted.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use super::CliResult;
use crate::hex::encode as hex;
use crate::log::verify::{verify_full, VerifyError};
use crate::log::Store;
use crate::progress::Progress;

/// `registry migrate-store`.
pub fn migrate_store(from: &Path, to: &Path) -> CliResult {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template(
        "migrating: {pos} records {per_sec}",
    )?);
    let progress = Progress::new(bar, "migrate-store records");
    let result = crate::log::migrate::migrate_store(from, to, &mut |n| progress.bar().set_position(n));
    drop(progress);
    match result {
        Ok(report) => {
            println!(
                "migrated {} records into {} chunks and {} case files, {} other trees ({} entries), {} other files in {:.1}s; head seq {} hash {}; next: registry verify --data-dir {}",
                report.head.seq,
                report.chunks,
                report.case_files,
                report.trees,
                report.tree_entries,
                report.files,
                report.elapsed.as_secs_f64(),
                report.head.seq,
                hex(&report.head.hash),
                to.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(crate::log::migrate::MigrateError::Broken(b)) => {
            println!("{b}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

/// `registry copy-store`.
pub fn copy_store(from: &Path, to: &Path) -> CliResult {
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template(
        "copying {pos} entries {per_sec}",
    )?);
    let progress = Progress::new(bar, "copy-store entries");
    let report = crate::log::store::copy_store(from, to, &mut |n| progress.bar().set_position(n))?;
    drop(progress);
    println!(
        "copied {} trees, {} entries, {} other files in {:.1}s (reopening the copy: {:.1}s); digest {} read from the source and again from the copy; next: registry verify --data-dir {}",
        report.trees,
        report.entries,
        report.files,
        started.elapsed().as_secs_f64(),
        report.reopen.as_secs_f64(),
        hex(&report.digest),
        to.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `registry verify` (the chain and the case files; the checkpoint is [`super::audit::verify_checkpoint`]).
pub fn verify(data_dir: &Path) -> CliResult {
    if !data_dir.join("db").exists() {
        return Err(format!("no store in {}", data_dir.display()).into());
    }
    let store = Store::open(data_dir)?;
    let total = store.head()?.seq;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:8} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")?
            .progress_chars("=> "),
    );
    let progress = Progress::new(bar, "verify");
    let started = Instant::now();
    let result = verify_full(&store, &mut |phase, n| {
        progress.bar().set_message(phase.to_string());
        progress.bar().set_position(n);
    });
    drop(progress);
    match result {
        Ok((chain, index)) => {
            let rate = chain.events as f64 / chain.elapsed.as_secs_f64().max(1e-9);
            println!(
                "ok: {} events, head seq {} hash {}, chain {:.0} events/s, case files checked ({} case files, {} stream entries, {} requests) in {:.2}s, total {:.2}s",
                chain.events,
                chain.head.seq,
                hex(&chain.head.hash),
                rate,
                index.case_files,
                index.stream_entries,
                index.request_entries,
                index.elapsed.as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Broken(b)) => {
            println!("{b}");
            Ok(ExitCode::from(1))
        }
        Err(VerifyError::Store(e)) => Err(e.into()),
    }
}
