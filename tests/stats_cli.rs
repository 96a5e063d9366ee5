//! `registry stats` from the command line: CSV with a header row, one row per
//! cell, counts equal to the simulator's own tally, and the log position stated.

use std::process::Command;

#[test]
fn stats_csv_by_status_matches_the_simulated_tally() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let report =
        registry::simulate::run(&registry::simulate::SimulateOptions::new(400, 7, data.clone())).unwrap();
    let head = {
        let store = registry::log::Store::open(&data).unwrap();
        store.head().unwrap()
    };
    let out = Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["stats", "--data-dir"])
        .arg(&data)
        .args(["--as-of", "2025-12-31", "--by", "status", "--format", "csv"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[..2], ["status", "count"], "{csv}");
    let seq_col = header
        .iter()
        .position(|h| *h == "log_seq")
        .expect("the answer states its log position");
    let mut total = 0;
    for line in lines {
        let cols: Vec<&str> = line.split(',').collect();
        let count: u64 = cols[1].parse().unwrap();
        assert_eq!(
            report.tally.status.get(cols[0]).copied().unwrap_or(0),
            count,
            "status {}",
            cols[0]
        );
        assert_eq!(cols[seq_col].parse::<u64>().unwrap(), head.seq);
        total += count;
    }
    assert_eq!(total, report.tally.persons);
}
