//! Tables for statisticians: `registry stats --target` against a real server
//! gives byte for byte what `registry stats --data-dir` gives on the same
//! store once stopped (caseload, series with and without a breakdown,
//! funnel, certifications, expiring permits; CSV, its Table Schema, the
//! codebook, JSON, Parquet); pandas reads the CSV with its schema, the
//! Parquet file and a release's SDMX-CSV files back cell by cell, keeping
//! "05" as "05" and flagging zero and suppressed cells.
//!
//! The pandas part needs `target/pyenv` (created by `.ci/run` from
//! `clients/python/requirements.txt`); without it that part is skipped with a
//! notice, except in CI (env `CI` set), where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use registry::simulate::{self, SimulateOptions};

const AS_OF: &str = "2025-12-31";

fn simulate_into(dir: &Path) -> u64 {
    let key = dir.join("master.key");
    std::fs::write(&key, format!("{MASTER_KEY_HEX}\n")).unwrap();
    let report = simulate::run(&SimulateOptions {
        master_key_file: Some(key),
        ..SimulateOptions::new(400, 7, dir.join("data"))
    })
    .expect("simulation");
    assert_eq!(report.tally.rejected, 0, "{:?}", report.rejections);
    report.head_seq
}

fn registry(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_registry"))
        .arg("stats")
        .args(args)
        .env_remove("REGISTRY_TOKEN")
        .output()
        .expect("run registry stats")
}

fn ok(out: Output, what: &str) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The questions compared (each printed to standard output).
fn questions() -> Vec<Vec<String>> {
    let as_of = ["--as-of", AS_OF];
    let mut q = vec![
        [
            &as_of[..],
            &["--by", "department,status", "--published", "--format", "csv"],
        ]
        .concat(),
        [
            &as_of[..],
            &["--by", "municipality,sex", "--published", "--format", "json"],
        ]
        .concat(),
        [
            &as_of[..],
            &[
                "--by",
                "age_band,channel",
                "--filter",
                "status=IRREGULAR|IN_PROCESS",
                "--format",
                "csv",
            ],
        ]
        .concat(),
        [&as_of[..], &["--published", "--format", "csv"]].concat(),
        vec![
            "--table",
            "series",
            "--metric",
            "REGISTRATIONS",
            "--published",
            "--format",
            "csv",
        ],
        vec![
            "--table",
            "series",
            "--metric",
            "PERMITS_ISSUED",
            "--from-month",
            "2021-01",
            "--to-month",
            "2023-12",
            "--format",
            "json",
        ],
        vec![
            "--table",
            "series",
            "--metric",
            "PERMITS_ISSUED",
            "--by",
            "department,age_band",
            "--published",
            "--format",
            "csv",
        ],
        [
            &as_of[..],
            &[
                "--by",
                "nationality,exit_destination",
                "--filter",
                "status=DEPARTED|IRREGULAR",
                "--format",
                "json",
            ],
        ]
        .concat(),
        vec!["--table", "funnel", "--published", "--format", "csv"],
        vec![
            "--table",
            "certifications",
            "--by",
            "stage,route",
            "--published",
            "--format",
            "csv",
        ],
        vec!["--table", "expiring-permits", "--published", "--format", "csv"],
        [
            &as_of[..],
            &["--table", "worklists", "--published", "--format", "csv"],
        ]
        .concat(),
        [&as_of[..], &["--table", "worklists", "--format", "json"]].concat(),
        // A past month-end: answered from the month-end snapshot on both sides.
        vec![
            "--as-of",
            "2024-06-30",
            "--by",
            "status,department",
            "--format",
            "csv",
        ],
    ];
    q.iter_mut().map(|q| args(q)).collect()
}

fn csv_rows(bytes: &[u8]) -> Vec<csv::StringRecord> {
    csv::Reader::from_reader(bytes)
        .records()
        .collect::<Result<Vec<_>, _>>()
        .expect("valid CSV")
}

/// Writes the department x status export into `dir` as CSV and as Parquet;
/// returns the files' bytes: CSV, Table Schema, codebook, Parquet.
fn export_into(source: &[String], dir: &Path) -> [Vec<u8>; 4] {
    std::fs::create_dir_all(dir).unwrap();
    let question = args(&["--as-of", AS_OF, "--by", "department,status", "--published"]);
    for (format, file) in [("csv", "caseload.csv"), ("parquet", "caseload.parquet")] {
        let mut a = source.to_vec();
        a.extend(question.iter().cloned());
        a.extend(args(&["--format", format, "--out"]));
        a.push(dir.join(file).display().to_string());
        let stdout = String::from_utf8(ok(registry(&a), format)).unwrap();
        assert!(stdout.contains("caseload.codebook.json"), "{stdout}");
        assert_eq!(
            stdout.contains("caseload.schema.json"),
            format == "csv",
            "{stdout}"
        );
    }
    [
        "caseload.csv",
        "caseload.schema.json",
        "caseload.codebook.json",
        "caseload.parquet",
    ]
    .map(|f| std::fs::read(dir.join(f)).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_output_equals_the_offline_output_and_pandas_keeps_codes_as_strings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let head = tokio::task::spawn_blocking(move || simulate_into(&dir))
        .await
        .unwrap();
    let data = tmp.path().join("data");
    let server = TestServer::start_on(&data).await;
    server.statistics_serving().await;
    let remote = args(&["--target", &server.target(), "--token-file"]);
    let mut remote = remote;
    remote.push(server.token_file("statistician").display().to_string());

    // The projection follows the log: wait until the server's answer reflects the head.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut a = remote.clone();
        a.extend(args(&["--as-of", AS_OF, "--format", "csv"]));
        let out = tokio::task::spawn_blocking(move || registry(&a)).await.unwrap();
        let rows = csv_rows(&ok(out, "total from the server"));
        if rows[0][3] == head.to_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server's statistics never reached seq {head}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A token without the statistician's scope is refused, naming the RPC.
    let mut denied = args(&["--target", &server.target(), "--token-file"]);
    denied.push(server.token_file("caseworker").display().to_string());
    let out = tokio::task::spawn_blocking(move || registry(&denied))
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("Statistics/Caseload") && err.contains("PermissionDenied"),
        "{err}"
    );

    let (online, online_files) = {
        let remote = remote.clone();
        let out_dir = tmp.path().join("online");
        tokio::task::spawn_blocking(move || {
            let answers: Vec<Vec<u8>> = questions()
                .into_iter()
                .map(|q| ok(registry(&[remote.clone(), q.clone()].concat()), &q.join(" ")))
                .collect();
            (answers, export_into(&remote, &out_dir))
        })
        .await
        .unwrap()
    };
    server.stop().await;

    let offline_args = vec!["--data-dir".to_string(), data.display().to_string()];
    for (q, online) in questions().into_iter().zip(&online) {
        let offline = ok(
            registry(&[offline_args.clone(), q.clone()].concat()),
            &q.join(" "),
        );
        assert_eq!(
            String::from_utf8_lossy(online),
            String::from_utf8_lossy(&offline),
            "--target and --data-dir differ for {}",
            q.join(" ")
        );
    }
    let offline_files = export_into(&offline_args, &tmp.path().join("offline"));
    for (a, b) in online_files.iter().zip(&offline_files) {
        assert_eq!(String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    }
    assert!(
        offline_files[3].starts_with(b"PAR1") && offline_files[3].ends_with(b"PAR1"),
        "a Parquet file"
    );
    assert_eq!(
        online_files[3], offline_files[3],
        "Parquet: --target and --data-dir differ"
    );

    // What the tables hold: every (department, status) pair, each flagged.
    let rows = csv_rows(&offline_files[0]);
    assert_eq!(
        rows.len(),
        33 * 9,
        "every department x status, zero cells included"
    );
    assert_eq!(&rows[0][0], "05");
    let status_of = |s: &str| rows.iter().filter(|r| &r[3] == s).count();
    let (observed, suppressed, zero) = (status_of("observed"), status_of("suppressed"), status_of("zero"));
    assert!(
        observed > 0 && suppressed > 0 && zero > 0,
        "{observed} {suppressed} {zero}"
    );
    assert_eq!(observed + suppressed + zero, rows.len());
    for r in &rows {
        match &r[3] {
            "suppressed" => assert_eq!(&r[2], "", "a suppressed count is empty"),
            "zero" => assert_eq!(&r[2], "0"),
            _ => assert!(
                r[2].parse::<u64>().unwrap() >= 5,
                "published cells are at least 5"
            ),
        }
        assert_eq!(&r[5], head.to_string().as_str());
    }
    let observed_sum: u64 = rows
        .iter()
        .filter(|r| &r[3] == "observed")
        .map(|r| r[2].parse::<u64>().unwrap())
        .sum();

    // Municipality tables list observed cells only, every one flagged.
    let muni = serde_json::from_slice::<serde_json::Value>(&online[1]).unwrap();
    for row in muni["rows"].as_array().unwrap() {
        let status = row["obs_status"].as_str().unwrap();
        assert_ne!(status, "zero", "{row}");
        assert_eq!(row["count"].is_null(), status == "suppressed", "{row}");
        assert_eq!(row["municipality"].as_str().unwrap().len(), 5);
    }

    // The schema types every code column as a string.
    let schema: serde_json::Value = serde_json::from_slice(&offline_files[1]).unwrap();
    let fields = schema["fields"].as_array().unwrap();
    let ty = |n: &str| fields.iter().find(|f| f["name"] == n).unwrap()["type"].clone();
    assert_eq!(ty("department"), "string");
    assert_eq!(ty("status"), "string");
    assert_eq!(ty("count"), "integer");
    assert_eq!(schema["primaryKey"], serde_json::json!(["department", "status"]));

    // The codebook: every DIVIPOLA department with its name, the coverage note.
    let codebook: serde_json::Value = serde_json::from_slice(&offline_files[2]).unwrap();
    let deps = codebook["dimensions"]["department"]["codes"].as_array().unwrap();
    let listed: Vec<(String, String)> = deps
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().into(),
                d["label"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = registry::domain::DEPARTMENTS
        .iter()
        .map(|(c, n)| (format!("{c:02}"), n.to_string()))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(codebook["divipola_version"], registry::domain::DIVIPOLA_VERSION);
    assert_eq!(codebook["log_position"]["seq"], head);
    assert_eq!(codebook["reference_date"], AS_OF);
    assert!(codebook["coverage_note"].as_str().unwrap().contains("486,072"));

    // Worklist counts (offline only): every list x department, each list
    // within its own window on the reference date; equal to paging through
    // the lists as ListWorklist does.
    let mut a = offline_args.clone();
    a.extend(args(&[
        "--table",
        "worklists",
        "--as-of",
        AS_OF,
        "--format",
        "csv",
    ]));
    let counted = csv_rows(&ok(registry(&a), "worklists"));
    assert_eq!(
        counted.len(),
        12 * 33,
        "every list x department, zero cells included"
    );
    {
        use registry::worklist::{query, Kind, Worklists};
        let store = registry::log::Store::open(&data).unwrap();
        let lists = Worklists::open(&store).unwrap();
        let reference = registry::domain::Date::parse(AS_OF).unwrap();
        let mut paged: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for kind in Kind::ALL {
            let mut after = None;
            loop {
                let page = query::page(
                    &lists,
                    &query::Query {
                        after,
                        ..query::Query::whole_list(kind, (0..=99).collect(), reference, 1000)
                    },
                )
                .unwrap();
                for item in &page.items {
                    *paged
                        .entry((kind.as_str().to_string(), format!("{:02}", item.department)))
                        .or_insert(0) += 1;
                }
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        assert!(paged.values().sum::<u64>() > 0, "the lists hold entries");
        for r in &counted {
            let n = paged
                .get(&(r[0].to_string(), r[1].to_string()))
                .copied()
                .unwrap_or(0);
            assert_eq!(r[2].parse::<u64>().unwrap(), n, "{} {}", &r[0], &r[1]);
            assert_eq!(&r[4], AS_OF);
        }
    }

    // A release of the same store (offline, at the checkpoint signed at the
    // server's stop), for pandas to read its SDMX-CSV files.
    let release = tmp.path().join("release");
    ok(
        Command::new(env!("CARGO_BIN_EXE_registry"))
            .args(["publish", "--data-dir"])
            .arg(&data)
            .arg("--out")
            .arg(&release)
            .output()
            .expect("run registry publish"),
        "publish",
    );

    // pandas, typed by the schema.
    let Some(python) = python() else { return };
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python/read_stats_csv.py"))
        .arg(tmp.path().join("offline/caseload.csv"))
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["first_row"]["department"], "05", "{s}");
    assert_eq!(
        s["untyped_first_row"]["department"], "5",
        "without the schema pandas reads a number"
    );
    assert_eq!(s["dtypes"]["department"], "string");
    assert_eq!(s["dtypes"]["count"], "Int64");
    assert_eq!(s["rows"], rows.len());
    assert_eq!(s["status_counts"]["suppressed"], suppressed);
    assert_eq!(s["status_counts"]["zero"], zero);
    assert_eq!(s["status_counts"]["observed"], observed);
    assert_eq!(s["suppressed_counts_all_missing"], true);
    assert_eq!(s["zero_counts_all_zero"], true);
    assert_eq!(s["observed_counts_all_positive"], true);
    assert_eq!(s["unique_keys"], true);
    assert_eq!(s["observed_sum"], observed_sum);

    // Round trips through pandas, cell by cell: the CSV with its schema, the
    // Parquet file by its own column types, the release's SDMX-CSV files as
    // text; each equal to what the registry wrote (a code read as a number
    // would come back as a JSON number and differ).
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python/stats_roundtrip.py"))
        .arg("--csv")
        .arg(tmp.path().join("offline/caseload.csv"))
        .arg("--parquet")
        .arg(tmp.path().join("offline/caseload.parquet"))
        .arg("--sdmx")
        .arg(&release)
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The rows as the registry wrote them, typed as they should come back.
    let expected: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!([
                &r[0],
                &r[1],
                r[2].parse::<u64>().ok(),
                &r[3],
                &r[4],
                r[5].parse::<u64>().unwrap(),
                &r[6]
            ])
        })
        .collect();
    assert!(
        expected.iter().any(|r| r[2].is_null()) && expected[0][0] == "05",
        "suppressed cells and department 05 are in the table"
    );
    for format in ["csv", "parquet"] {
        let got = &p[format];
        assert_eq!(
            got["columns"],
            serde_json::json!([
                "department",
                "status",
                "count",
                "obs_status",
                "as_of_date",
                "log_seq",
                "log_hash"
            ]),
            "{format}"
        );
        assert_eq!(
            got["dtypes"]["department"], "string",
            "{format}: {}",
            got["dtypes"]
        );
        assert_eq!(got["dtypes"]["count"], "Int64", "{format}: {}", got["dtypes"]);
        let got_rows = got["rows"].as_array().unwrap();
        assert_eq!(got_rows.len(), expected.len(), "{format}");
        for (g, e) in got_rows.iter().zip(&expected) {
            assert_eq!(g, e, "{format}: pandas read a row differently");
        }
    }
    let arrow = &p["parquet"]["arrow_types"];
    assert_eq!(arrow["department"], "string", "{arrow}");
    assert_eq!(arrow["count"], "int64", "{arrow}");
    assert_eq!(arrow["as_of_date"], "date32[day]", "{arrow}");
    assert_eq!(
        p["parquet"]["created_by"],
        registry::projection::export::PARQUET_CREATED_BY
    );
    use registry::release::{sdmx, tables};
    for spec in &tables::TABLES {
        let bytes = std::fs::read(release.join(format!("{}.csv", spec.stem))).unwrap();
        let own = sdmx::read_csv(spec, &bytes).expect("the release's own reader");
        let sid = sdmx::structure_id(spec);
        let expected: Vec<serde_json::Value> = own
            .rows
            .iter()
            .map(|r| {
                let mut v = vec!["dataflow".to_string(), sid.clone(), "I".to_string()];
                v.extend(r.key.iter().cloned());
                v.push(r.value.map_or_else(String::new, |n| n.to_string()));
                v.push(r.obs_status().as_str().to_string());
                serde_json::json!(v)
            })
            .collect();
        let got = &p["sdmx"][spec.stem];
        assert_eq!(
            got["columns"],
            serde_json::json!(sdmx::header(spec)),
            "{}",
            spec.stem
        );
        assert_eq!(
            got["rows"],
            serde_json::json!(expected),
            "{}: pandas and the release's reader differ",
            spec.stem
        );
    }
    let departments = &p["sdmx"]["caseload_department_status"]["rows"];
    assert_eq!(departments[0][3], "05", "SDMX-CSV read by pandas keeps \"05\"");
}

/// `target/pyenv/bin/python`, or `None` (with a notice) outside CI when missing.
fn python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    if python.exists() {
        return Some(python);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing: CI must create it (python3 -m venv target/pyenv && \
             target/pyenv/bin/pip install -r clients/python/requirements.txt)",
            python.display()
        );
    }
    eprintln!(
        "notice: skipping the pandas part: {} not found. Create it with \
         `python3 -m venv target/pyenv && target/pyenv/bin/pip install -r clients/python/requirements.txt`",
        python.display()
    );
    None
}

#[test]
fn arguments_are_checked_naming_the_flag() {
    for (a, flag) in [
        (
            vec![
                "--data-dir",
                "/nonexistent",
                "--table",
                "funnel",
                "--as-of",
                AS_OF,
            ],
            "--as-of",
        ),
        (
            vec!["--data-dir", "/nonexistent", "--table", "series"],
            "--metric",
        ),
        (
            vec![
                "--data-dir",
                "/nonexistent",
                "--table",
                "funnel",
                "--by",
                "status",
            ],
            "--by",
        ),
        (vec!["--data-dir", "/nonexistent", "--by", "route"], "--by"),
        (
            vec!["--data-dir", "/nonexistent", "--format", "parquet"],
            "--format parquet: needs --out",
        ),
        (
            vec![
                "--data-dir",
                "/nonexistent",
                "--table",
                "series",
                "--metric",
                "REGISTRATIONS",
                "--by",
                "municipality",
            ],
            "--by: \"municipality\" is not a series dimension",
        ),
        (
            vec![
                "--data-dir",
                "/nonexistent",
                "--table",
                "series",
                "--metric",
                "REGISTRATIONS",
                "--by",
                "sex,status,channel",
            ],
            "--by: at most 2",
        ),
        (
            vec!["--data-dir", "/nonexistent", "--table", "series", "--metric", "X"],
            "--metric",
        ),
        (
            vec![
                "--data-dir",
                "/nonexistent",
                "--table",
                "expiring-permits",
                "--from-month",
                "2024-13",
            ],
            "--from-month",
        ),
        (vec!["--data-dir", "/nonexistent", "--out", "x.csv"], "--out"),
        (
            vec!["--target", "http://127.0.0.1:1", "--min-cell", "3"],
            "--min-cell",
        ),
        (vec!["--target", "https://127.0.0.1:1"], "--tls-ca"),
    ] {
        let out = registry(&args(&a));
        assert!(!out.status.success(), "{a:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{a:?}: {err}");
    }
}
