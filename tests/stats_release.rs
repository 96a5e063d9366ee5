//! Statistics releases (docs/RELEASES.md) through the real binary and real
//! servers on loopback: `registry publish` then `registry release verify`
//! accepts the release and refuses it after a changed cell, a removed
//! file, an added file, or with another key, each time naming the file;
//! the SDMX-CSV files read back; a vintage (`--as-of-seq`) is reproduced
//! byte for byte after more writes, online and offline; `registry release
//! combine` sums two registries' releases (different seeds and origins)
//! status by status and flags every regional total that holds a
//! suppressed source cell.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use registry::api::pb;
use registry::simulate::{self, SimulateOptions};

fn simulate_into(data: &Path, persons: u64, seed: u64) {
    let key = data.with_extension("master.key");
    std::fs::write(&key, format!("{MASTER_KEY_HEX}\n")).unwrap();
    let report = simulate::run(&SimulateOptions {
        master_key_file: Some(key),
        ..SimulateOptions::new(persons, seed, data)
    })
    .expect("simulation");
    assert_eq!(report.tally.rejected, 0, "{:?}", report.rejections);
}

fn registry(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(args)
        .env_remove("REGISTRY_TOKEN")
        .output()
        .expect("run registry")
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn succeeds(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `registry release verify`; `Err(stderr)` when it rejects (exit 1).
fn verify(dir: &Path, vkey: &str) -> Result<String, String> {
    let out = registry(&strings(&[
        "release",
        "verify",
        &dir.display().to_string(),
        "--key",
        vkey,
    ]));
    match out.status.code() {
        Some(0) => Ok(String::from_utf8(out.stdout).unwrap()),
        Some(1) => Err(String::from_utf8(out.stderr).unwrap()),
        c => panic!(
            "verify exited with {c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The vkey of a data directory's audit signing key.
fn vkey(data: &Path) -> String {
    let text = std::fs::read_to_string(data.join("audit-signing.key")).unwrap();
    registry::audit::checkpoint::NoteSigner::parse_key_file(&text)
        .unwrap()
        .verifier()
        .vkey()
}

async fn publish(server: &TestServer, out: &Path, extra: &[&str]) -> Output {
    let mut a = strings(&["publish", "--target", &server.target(), "--token-file"]);
    a.push(server.token_file("statistician").display().to_string());
    a.push("--out".into());
    a.push(out.display().to_string());
    a.extend(strings(extra));
    tokio::task::spawn_blocking(move || registry(&a)).await.unwrap()
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn copy(from: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for (name, bytes) in files(from) {
        std::fs::write(to.join(name), bytes).unwrap();
    }
    to.to_path_buf()
}

/// An SDMX-CSV file read with the csv crate alone: header, then rows as
/// column -> value.
fn read_sdmx(path: &Path) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            header.iter().cloned().zip(rec.iter().map(String::from)).collect()
        })
        .collect();
    (header, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_verifies_alterations_are_named_and_a_vintage_is_reproduced_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    {
        let data = data.clone();
        tokio::task::spawn_blocking(move || simulate_into(&data, 300, 7))
            .await
            .unwrap();
    }
    let server = TestServer::start_on(&data).await;
    server.statistics_serving().await;
    let key = vkey(&data);

    // Published at the checkpoint signed at start (the head), verified.
    let first = tmp.path().join("r1");
    let out = succeeds(publish(&server, &first, &["--key", &key]).await, "publish");
    assert!(out.contains("release OK"), "{out}");
    let seq: u64 = out
        .split("at seq ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let names: Vec<String> = files(&first).into_keys().collect();
    assert_eq!(
        names,
        [
            "caseload_department_status.csv",
            "caseload_department_status.structure.json",
            "caseload_sex_status.csv",
            "caseload_sex_status.structure.json",
            "caseload_status.csv",
            "caseload_status.structure.json",
            "codebook.json",
            "funnel.csv",
            "funnel.structure.json",
            "manifest.json",
            "release.note",
            "series.csv",
            "series.structure.json",
        ]
    );
    let note = std::fs::read_to_string(first.join("release.note")).unwrap();
    assert!(
        note.starts_with(&format!(
            "registry.local/regularization-log\nstatistics-release v1\nseq {seq}\nmanifest "
        )),
        "{note}"
    );

    // The SDMX-CSV files read back with a plain CSV reader: the header, the
    // dataflow, every observation's flag; the total is the persons simulated;
    // department codes keep their leading zero.
    let (header, rows) = read_sdmx(&first.join("caseload_status.csv"));
    assert_eq!(
        header,
        [
            "STRUCTURE",
            "STRUCTURE_ID",
            "ACTION",
            "STATUS",
            "OBS_VALUE",
            "OBS_STATUS"
        ]
    );
    assert!(rows.iter().all(|r| r["STRUCTURE"] == "dataflow"
        && r["STRUCTURE_ID"] == "REGISTRY:CASELOAD_STATUS(1.0)"
        && r["ACTION"] == "I"));
    let total = rows.iter().find(|r| r["STATUS"] == "_T").unwrap();
    assert_eq!(
        (total["OBS_VALUE"].as_str(), total["OBS_STATUS"].as_str()),
        ("300", "observed")
    );
    let (_, dept) = read_sdmx(&first.join("caseload_department_status.csv"));
    assert!(
        dept.iter().any(|r| r["DEPARTMENT"] == "05"),
        "Antioquia is listed as 05"
    );
    for r in &dept {
        match r["OBS_STATUS"].as_str() {
            "suppressed" => assert_eq!(r["OBS_VALUE"], ""),
            "zero" => assert_eq!(r["OBS_VALUE"], "0"),
            "observed" => assert!(r["OBS_VALUE"].parse::<u64>().unwrap() >= 5, "{r:?}"),
            s => panic!("OBS_STATUS {s}"),
        }
    }
    assert!(
        dept.iter().any(|r| r["OBS_STATUS"] == "suppressed"),
        "a small caseload has small cells"
    );

    // Alterations, each named.
    let changed = copy(&first, &tmp.path().join("changed"));
    let csv = std::fs::read_to_string(changed.join("caseload_status.csv")).unwrap();
    std::fs::write(
        changed.join("caseload_status.csv"),
        csv.replace(",_T,300,observed", ",_T,301,observed"),
    )
    .unwrap();
    let e = verify(&changed, &key).unwrap_err();
    assert!(e.contains("caseload_status.csv: BLAKE3"), "{e}");
    let removed = copy(&first, &tmp.path().join("removed"));
    std::fs::remove_file(removed.join("funnel.csv")).unwrap();
    let e = verify(&removed, &key).unwrap_err();
    assert!(
        e.contains("funnel.csv: listed in manifest.json but cannot be read"),
        "{e}"
    );
    let added = copy(&first, &tmp.path().join("added"));
    std::fs::write(added.join("notes.txt"), "unlisted").unwrap();
    let e = verify(&added, &key).unwrap_err();
    assert!(e.contains("notes.txt: in the directory but not listed"), "{e}");
    let other =
        registry::audit::checkpoint::NoteSigner::generate("registry.local/regularization-log").unwrap();
    let e = verify(&first, &other.verifier().vkey()).unwrap_err();
    assert!(e.contains("release.note: no signature by key"), "{e}");

    // Re-signed with the registry's own key (an insider's bad release): the
    // digests agree, so the tables themselves are checked: a small cell
    // revealed, then a total that does not add up.
    let signer = registry::audit::checkpoint::NoteSigner::parse_key_file(
        &std::fs::read_to_string(data.join("audit-signing.key")).unwrap(),
    )
    .unwrap();
    let dept = std::fs::read_to_string(first.join("caseload_department_status.csv")).unwrap();
    let hidden = dept.lines().find(|l| l.ends_with(",,suppressed")).unwrap();
    let revealed = hidden.replace(",,suppressed", ",3,observed");
    let e = resigned(
        &first,
        &tmp.path().join("revealed"),
        &signer,
        "caseload_department_status.csv",
        &dept.replace(hidden, &revealed),
    );
    assert!(
        e.contains("caseload_department_status.csv: row")
            && e.contains("OBS_VALUE 3 is published, but disclosure control hides counts under 5"),
        "{e}"
    );
    // The total lowered to the published statuses' sum: the hidden ones
    // (at least 1 each) no longer fit.
    let published: u64 = rows
        .iter()
        .filter(|r| r["STATUS"] != "_T")
        .filter_map(|r| r["OBS_VALUE"].parse::<u64>().ok())
        .sum();
    assert!(rows.iter().any(|r| r["OBS_STATUS"] == "suppressed"));
    let e = resigned(
        &first,
        &tmp.path().join("unbalanced"),
        &signer,
        "caseload_status.csv",
        &csv.replace(",_T,300,observed", &format!(",_T,{published},observed")),
    );
    assert!(
        e.contains("identity CASELOAD_STATUS[STATUS=_T]")
            && e.contains(&format!(
                "the total is {published}, but the published terms add up to {published}"
            )),
        "{e}"
    );

    // A statistician only; a position without a checkpoint is refused.
    let mut denied = strings(&["publish", "--target", &server.target(), "--token-file"]);
    denied.push(server.token_file("caseworker").display().to_string());
    denied.extend(strings(&[
        "--out",
        &tmp.path().join("denied").display().to_string(),
    ]));
    let out = tokio::task::spawn_blocking(move || registry(&denied))
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Statistics/Release at"),
        "{out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PermissionDenied"),
        "{out:?}"
    );
    let out = publish(&server, &tmp.path().join("nowhere"), &["--as-of-seq", "3"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("NotFound") && err.contains("as_of_seq"),
        "{err}"
    );

    // More writes and a new checkpoint: the latest release moves on ...
    let mut c = server.client().await;
    for (i, cedula) in ["V30111222", "V30111223", "V30111224"].iter().enumerate() {
        register(&mut c, &format!("NUEVA {i}"), cedula, "2026-01-15").await;
    }
    drop(c);
    let channel = registry::client::connect(&server.options("admin"), std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let cp = pb::audit_client::AuditClient::new(channel)
        .get_checkpoint(pb::GetCheckpointRequest {
            sign_now: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let later = tmp.path().join("r2");
    let out = succeeds(publish(&server, &later, &["--key", &key]).await, "publish later");
    assert!(
        out.contains(&format!("at seq {}", cp.tree_size)) && cp.tree_size > seq,
        "{out}"
    );
    // ... and the vintage at the first position is the same bytes.
    let vintage = tmp.path().join("r1-again");
    succeeds(
        publish(&server, &vintage, &["--as-of-seq", &seq.to_string()]).await,
        "vintage",
    );
    assert_eq!(
        files(&vintage),
        files(&first),
        "the vintage differs from the release"
    );
    let _kept = server.stop().await;

    // Offline, from the stopped store and its key: the same bytes again.
    let offline = tmp.path().join("r1-offline");
    succeeds(
        registry(&strings(&[
            "publish",
            "--data-dir",
            &data.display().to_string(),
            "--as-of-seq",
            &seq.to_string(),
            "--out",
            &offline.display().to_string(),
        ])),
        "offline publish",
    );
    assert_eq!(files(&offline), files(&first), "the offline release differs");
}

/// Copies the release `from` into `to` with `file` replaced by `text`, the
/// manifest's entry for it updated and the note signed again by `signer`;
/// returns what `registry release verify` says (it must reject).
fn resigned(
    from: &Path,
    to: &Path,
    signer: &registry::audit::checkpoint::NoteSigner,
    file: &str,
    text: &str,
) -> String {
    let dir = copy(from, to);
    std::fs::write(dir.join(file), text).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    for f in manifest["files"].as_array_mut().unwrap() {
        if f["name"] == file {
            f["size"] = text.len().into();
            f["blake3"] = blake3::hash(text.as_bytes()).to_hex().to_string().into();
        }
    }
    let mut bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    bytes.push(b'\n');
    std::fs::write(dir.join("manifest.json"), &bytes).unwrap();
    let seq = manifest["log_position"]["seq"].as_u64().unwrap();
    let body = registry::release::note_body(&signer.name, seq, &bytes);
    std::fs::write(dir.join("release.note"), signer.sign_body(&body)).unwrap();
    verify(&dir, &signer.verifier().vkey()).unwrap_err()
}

/// The arguments of `registry release combine DIRS.. KEYS.. --out OUT`.
fn combine(dirs: &[&PathBuf], keys: &[&str], out: &Path) -> Vec<String> {
    let mut a = strings(&["release", "combine"]);
    a.extend(dirs.iter().map(|r| r.display().to_string()));
    a.extend(strings(keys));
    a.extend(strings(&["--out", &out.display().to_string()]));
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combine_sums_two_registries_status_by_status_and_flags_suppressed_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let mut releases = Vec::new();
    let mut keys = Vec::new();
    for (name, persons, seed) in [("co-north", 200, 11), ("co-south", 150, 23)] {
        let data = tmp.path().join(name);
        {
            let data = data.clone();
            tokio::task::spawn_blocking(move || simulate_into(&data, persons, seed))
                .await
                .unwrap();
        }
        let origin = format!("registry.example/{name}");
        let server = TestServer::start_on_configured(&data, |config, _| {
            config.audit.origin = Some(origin.clone());
        })
        .await;
        server.statistics_serving().await;
        let out = tmp.path().join(format!("{name}-release"));
        let key = vkey(&data);
        assert!(key.starts_with(&format!("{origin}+")), "{key}");
        succeeds(publish(&server, &out, &["--key", &key]).await, "publish");
        let _ = server.stop().await;
        releases.push(out);
        keys.push(key);
    }
    let keys_file = tmp.path().join("keys.txt");
    std::fs::write(
        &keys_file,
        format!("# trusted registries\n{}\n\n{}\n", keys[0], keys[1]),
    )
    .unwrap();
    let out_dir = tmp.path().join("regional");
    let a = combine(
        &releases.iter().collect::<Vec<_>>(),
        &["--keys", &keys_file.display().to_string()],
        &out_dir,
    );
    let out = succeeds(registry(&a), "combine");
    assert!(out.contains("source registry.example/co-north at seq"), "{out}");

    // Each regional total is the sum of the sources when both published
    // their cell, else flagged with a lower bound and the sources named.
    let source: Vec<BTreeMap<String, (String, String)>> = releases
        .iter()
        .map(|r| {
            read_sdmx(&r.join("caseload_status.csv"))
                .1
                .into_iter()
                .map(|row| {
                    (
                        row["STATUS"].clone(),
                        (row["OBS_VALUE"].clone(), row["OBS_STATUS"].clone()),
                    )
                })
                .collect()
        })
        .collect();
    let (header, regional) = read_sdmx(&out_dir.join("regional_caseload_status.csv"));
    assert_eq!(
        &header[..6],
        [
            "STRUCTURE",
            "STRUCTURE_ID",
            "ACTION",
            "STATUS",
            "OBS_VALUE",
            "OBS_STATUS"
        ]
    );
    assert_eq!(regional.len(), source[0].len());
    let mut flagged = 0;
    for r in &regional {
        let cells: Vec<&(String, String)> = source.iter().map(|s| &s[&r["STATUS"]]).collect();
        let known: u64 = cells.iter().filter_map(|(v, _)| v.parse::<u64>().ok()).sum();
        let hidden: Vec<usize> = (0..2).filter(|&i| cells[i].1 == "suppressed").collect();
        if hidden.is_empty() {
            assert_eq!(r["OBS_VALUE"], known.to_string(), "{r:?}");
            assert_ne!(r["OBS_STATUS"], "incomplete");
        } else {
            flagged += 1;
            assert_eq!(
                (r["OBS_VALUE"].as_str(), r["OBS_STATUS"].as_str()),
                ("", "incomplete"),
                "{r:?}"
            );
            assert_eq!(r["LOWER_BOUND"], (known + hidden.len() as u64).to_string());
            let named: Vec<String> = hidden
                .iter()
                .map(|&i| format!("registry.example/{}", ["co-north", "co-south"][i]))
                .collect();
            assert_eq!(r["SUPPRESSED_IN"], named.join(" "));
        }
    }
    let total = regional.iter().find(|r| r["STATUS"] == "_T").unwrap();
    assert_eq!(total["OBS_VALUE"], "350");
    assert!(flagged > 0, "small caseloads suppress some status: {regional:?}");
    let sources = std::fs::read_to_string(out_dir.join("sources.json")).unwrap();
    assert!(
        sources.contains("registry.example/co-south\\n"),
        "each checkpoint is cited"
    );

    // A source without a trusted key, and the same registry twice, are refused.
    let a = combine(
        &releases.iter().collect::<Vec<_>>(),
        &["--key", &keys[0]],
        &tmp.path().join("x"),
    );
    let out = registry(&a);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("no trusted key is named \"registry.example/co-south\""));
    let a = combine(
        &[&releases[0], &releases[0]],
        &["--key", &keys[0]],
        &tmp.path().join("y"),
    );
    let out = registry(&a);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("two releases come from origin"),
        "{out:?}"
    );
}
