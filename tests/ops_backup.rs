//! Online backup and verified restore, end to end with the real binary:
//! a server under load is backed up (full, then incremental, twice), killed
//! with SIGKILL and its data directory deleted; the backup is restored into
//! a new directory, which verifies, serves, and answers every case read and
//! the statistics exactly as the old server did; nothing acknowledged
//! before a backup started is missing from a restore of that backup; and a
//! damaged backup is refused, naming the generation and what is wrong.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use registry::api::pb;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_registry");

/// Keys and the access file live outside the data directory, as in production.
struct Secrets {
    dir: tempfile::TempDir,
}

impl Secrets {
    fn new() -> Secrets {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_test_access_file(&dir.path().join("access.json"));
        let key = dir.path().join("master.key");
        std::fs::write(&key, format!("{MASTER_KEY_HEX}\n")).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        // The audit signing key: created once, outside the data directory.
        let out = Command::new(BIN)
            .args(["audit", "key", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "audit key: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(dir.path().join("admin.token"), test_token("admin")).unwrap();
        std::fs::write(
            dir.path().join("vkey.txt"),
            String::from_utf8_lossy(&out.stdout).trim(),
        )
        .unwrap();
        Secrets { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    async fn start(data: &Path, secrets: &Secrets) -> Server {
        Server::start_with_audit_key(data, secrets, "audit-signing.key").await
    }

    async fn start_with_audit_key(data: &Path, secrets: &Secrets, audit_key: &str) -> Server {
        let port = free_port();
        let log = std::fs::File::create(data.with_extension(format!("{port}.log"))).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--master-key-file")
            .arg(secrets.path("master.key"))
            .arg("--access-file")
            .arg(secrets.path("access.json"))
            .arg("--audit-key-file")
            .arg(secrets.path(audit_key))
            .args(["--disk-reserve-mib", "0", "--metrics-listen", "off"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let server = Server {
            child,
            addr: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(BIN)
                .args([
                    "health",
                    "--target",
                    &server.addr,
                    "--service",
                    "regularization.v1.Statistics",
                ])
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not become ready: {}",
                std::fs::read_to_string(data.with_extension(format!("{port}.log"))).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.addr.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM: a graceful stop.
    fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert!(self.child.wait().unwrap().success(), "the server stops cleanly");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn backup(server: &Server, secrets: &Secrets, out: &Path) -> Output {
    Command::new(BIN)
        .args(["backup", "--target", &server.addr, "--out"])
        .arg(out)
        .arg("--token-file")
        .arg(secrets.path("admin.token"))
        .arg("--key")
        .arg(secrets.path("vkey.txt"))
        .output()
        .unwrap()
}

fn restore(from: &Path, to: Option<&Path>, secrets: &Secrets) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["restore", "--from"]).arg(from);
    match to {
        Some(to) => cmd
            .arg("--to")
            .arg(to)
            .arg("--master-key-file")
            .arg(secrets.path("master.key")),
        None => cmd.arg("--check"),
    };
    cmd.arg("--key").arg(secrets.path("vkey.txt")).output().unwrap()
}

#[track_caller]
fn succeeded(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Acknowledged commands: case id -> the highest acknowledged version.
type Acked = Arc<Mutex<BTreeMap<String, u64>>>;

/// One client registering people and taking each one a few steps further.
async fn load(channel: Channel, worker: usize, acked: Acked, stop: Arc<std::sync::atomic::AtomicBool>) {
    let mut c = CaseworkerClient::new(channel);
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let p = person(
            "CARMEN",
            "PRUEBA LOPEZ",
            "1988-02-10",
            &[(pb::DocumentType::VenezuelanCedula, &format!("V{worker}{n:07}"))],
        );
        let r = ok(c.register_person(req(register_request(p, "2022-05-01"))).await);
        let mut t = Tracker::registered(&r);
        acked.lock().unwrap().insert(t.case_id.clone(), t.version);
        let r = ok(c
            .pre_register(req(pb::PreRegisterRequest {
                header: t.next("2022-05-02"),
                channel: "ETPV".into(),
                basis: pb::EligibilityBasis::Pip as i32,
            }))
            .await);
        t.step(&r, "PRE_REGISTERED", &["PreRegistered"]);
        acked.lock().unwrap().insert(t.case_id.clone(), t.version);
        if n % 2 == 0 {
            let r = ok(c
                .schedule_biometrics(req(pb::ScheduleBiometricsRequest {
                    header: t.next("2022-05-03"),
                    appointment_on: "2022-05-10".into(),
                    site: "BOG-01".into(),
                }))
                .await);
            t.step(&r, "BIOMETRICS_SCHEDULED", &["BiometricAppointmentScheduled"]);
            acked.lock().unwrap().insert(t.case_id.clone(), t.version);
        }
    }
}

async fn read_cases(channel: &Channel, ids: &[String]) -> Vec<pb::Case> {
    let mut c = CaseworkerClient::new(channel.clone());
    let mut out = Vec::new();
    for id in ids {
        out.push(get_case(&mut c, id).await);
    }
    out
}

async fn caseload(channel: &Channel) -> pb::CaseloadResponse {
    let mut s = pb::statistics_client::StatisticsClient::new(channel.clone());
    let by = vec!["status".to_string(), "channel".to_string()];
    ok(s.caseload(as_role(
        "statistician",
        pb::CaseloadRequest {
            by,
            as_of_date: "2022-06-30".into(),
            ..Default::default()
        },
    ))
    .await)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Records `bytes` as the content of `name` in a generation's manifest (as a
/// forger who also rewrites the manifest would).
fn set_file_digest(generation: &Path, name: &str, bytes: &[u8]) {
    let path = generation.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["files"][name]["blake3"] = blake3::hash(bytes).to_hex().to_string().into();
    manifest["files"][name]["bytes"] = (bytes.len() as u64).into();
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

fn stream_version(data: &Path, case_id: &str) -> u64 {
    open_store(data).stream_version(case_id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_under_load_backed_up_killed_and_deleted_is_restored_whole() {
    let secrets = Secrets::new();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let backups = work.path().join("backups");
    let server = Server::start(&data, &secrets).await;

    let acked: Acked = Default::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        workers.push(tokio::spawn(load(
            server.channel().await,
            w,
            acked.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Full, then incremental, both while the load runs.
    let before_first = acked.lock().unwrap().clone();
    let out = backup(&server, &secrets, &backups);
    let first = succeeded(&out, "first backup");
    assert!(first.contains("generation 1 (Full)"), "{first}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_second = acked.lock().unwrap().clone();
    let out = backup(&server, &secrets, &backups);
    let second = succeeded(&out, "second backup");
    assert!(second.contains("generation 2 (Incremental)"), "{second}");
    assert!(
        before_second.len() > before_first.len(),
        "the load went on between the backups"
    );

    // The load stops; what the server answers now is what a restore must answer.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let ids: Vec<String> = acked.keys().cloned().collect();
    let channel = server.channel().await;
    let cases_before = read_cases(&channel, &ids).await;
    let stats_before = caseload(&channel).await;
    let out = backup(&server, &secrets, &backups);
    succeeded(&out, "third backup");
    let out = backup(&server, &secrets, &backups);
    let again = succeeded(&out, "backup with nothing new");
    // GetCase writes access events: the log grew by those, nothing else.
    assert!(
        again.contains("generation 4") || again.starts_with("up to date"),
        "{again}"
    );
    drop(channel);

    // kill -9, and the data directory is gone.
    server.kill();
    std::fs::remove_dir_all(&data).unwrap();

    // The backup as it was after the second generation holds everything
    // acknowledged before the second backup started.
    let two = work.path().join("two-generations");
    copy_dir(&backups, &two);
    for g in std::fs::read_dir(&two).unwrap() {
        let g = g.unwrap();
        let name = g.file_name().to_string_lossy().into_owned();
        if name != "gen-000001" && name != "gen-000002" {
            std::fs::remove_dir_all(g.path()).unwrap();
        }
    }
    let restored_two = work.path().join("restored-two");
    succeeded(
        &restore(&two, Some(&restored_two), &secrets),
        "restore of two generations",
    );
    for (id, version) in &before_second {
        assert!(
            stream_version(&restored_two, id) >= *version,
            "case {id} acknowledged at version {version} before the second backup is missing from it"
        );
    }

    // The whole backup: verified, restored, served, identical.
    succeeded(&restore(&backups, None, &secrets), "restore --check");
    let restored = work.path().join("restored");
    let report = succeeded(&restore(&backups, Some(&restored), &secrets), "restore");
    assert!(
        report.contains("verified against the last checkpoint"),
        "{report}"
    );
    let out = Command::new(BIN)
        .args(["verify", "--data-dir"])
        .arg(&restored)
        .output()
        .unwrap();
    succeeded(&out, "verify of the restored store");

    let server = Server::start(&restored, &secrets).await;
    let channel = server.channel().await;
    let cases_after = read_cases(&channel, &ids).await;
    assert_eq!(cases_after.len(), cases_before.len());
    for (before, after) in cases_before.iter().zip(&cases_after) {
        assert_eq!(
            before, after,
            "case {} reads differently after the restore",
            before.case_id
        );
    }
    assert!(
        cases_after.iter().all(|c| c.person.is_some()),
        "personal data opens with the restored keys"
    );
    // The reads above appended access events: the position moved on, the counts did not.
    let stats_after = caseload(&channel).await;
    assert_eq!(
        (&stats_after.dimensions, &stats_after.cells, stats_after.total),
        (&stats_before.dimensions, &stats_before.cells, stats_before.total),
        "statistics differ after the restore"
    );
    assert!(stats_after.position.unwrap().seq > stats_before.position.unwrap().seq);
    // The document index came back: a registration with a taken document is refused.
    let mut c = CaseworkerClient::new(channel.clone());
    let taken = person(
        "OTRA",
        "PRUEBA",
        "1990-01-01",
        &[(pb::DocumentType::VenezuelanCedula, "V00000001")],
    );
    let status = c
        .register_person(req(register_request(taken, "2022-05-01")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
    // And it takes new work, and a new backup continues the old chain.
    let p = person(
        "NUEVA",
        "PRUEBA",
        "1990-01-01",
        &[(pb::DocumentType::VenezuelanCedula, "V99999999")],
    );
    ok(c.register_person(req(register_request(p, "2022-05-01"))).await);
    drop((c, channel));
    let out = backup(&server, &secrets, &backups);
    succeeded(&out, "backup of the restored server");
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_is_refused_naming_what_is_wrong() {
    let secrets = Secrets::new();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let backups = work.path().join("backups");
    let server = Server::start(&data, &secrets).await;
    let mut c = CaseworkerClient::new(server.channel().await);
    for i in 0..5 {
        register(&mut c, "ANA", &format!("V1000000{i}"), "2022-05-01").await;
    }
    succeeded(&backup(&server, &secrets, &backups), "first backup");
    for i in 5..9 {
        register(&mut c, "ANA", &format!("V1000000{i}"), "2022-05-01").await;
    }
    succeeded(&backup(&server, &secrets, &backups), "second backup");
    drop(c);
    server.kill();
    succeeded(&restore(&backups, None, &secrets), "check of the intact backup");

    let refused = |dir: &Path| -> String {
        let out = restore(
            dir,
            Some(&work.path().join(format!("r-{}", free_port()))),
            &secrets,
        );
        assert_eq!(out.status.code(), Some(2), "a damaged backup must be refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    // One byte of a record flipped.
    let flipped = work.path().join("flipped");
    copy_dir(&backups, &flipped);
    let log = flipped.join("gen-000002/log.export");
    let mut bytes = std::fs::read(&log).unwrap();
    // Inside the last record's payload (before its prev_hash and the stored hash).
    let at = bytes.len() - 80;
    bytes[at] ^= 1;
    std::fs::write(&log, &bytes).unwrap();
    let e = refused(&flipped);
    assert!(
        e.contains("generation 2") && e.contains("log.export") && e.contains("BLAKE3"),
        "{e}"
    );

    // The same, with the manifest's digest "fixed" to match: the chain check catches it.
    set_file_digest(&flipped.join("gen-000002"), "log.export", &bytes);
    let e = refused(&flipped);
    assert!(
        e.contains("generation 2") && e.contains("log.export") && e.contains("chain hash mismatch"),
        "{e}"
    );

    // A generation missing from the middle.
    let gap = work.path().join("gap");
    copy_dir(&backups, &gap);
    std::fs::rename(gap.join("gen-000002"), gap.join("gen-000003")).unwrap();
    let e = refused(&gap);
    assert!(e.contains("generation 2 is missing"), "{e}");

    // A checkpoint not signed by the pinned key.
    let other = work.path().join("other-key");
    copy_dir(&backups, &other);
    let out = Command::new(BIN)
        .args(["audit", "key", "--data-dir"])
        .arg(work.path().join("other-audit"))
        .output()
        .unwrap();
    let other_vkey = work.path().join("other-vkey.txt");
    std::fs::write(&other_vkey, &out.stdout).unwrap();
    let out = Command::new(BIN)
        .args(["restore", "--check", "--from"])
        .arg(&other)
        .arg("--key")
        .arg(&other_vkey)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("not by the pinned verifier key"), "{e}");

    // Nothing was written by a refused restore but the empty target it refused to fill.
    assert!(!work.path().join("restored").exists());
}

fn registry(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    succeeded(&out, &args.join(" "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_follow_an_audit_key_rotation_and_a_restore_keeps_the_hand_over() {
    let secrets = Secrets::new();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let backups = work.path().join("backups");
    let server = Server::start(&data, &secrets).await;
    let mut c = CaseworkerClient::new(server.channel().await);
    let first = register(&mut c, "ANA", "V20000001", "2022-05-01").await;
    succeeded(&backup(&server, &secrets, &backups), "backup before the rotation");
    drop(c);
    server.stop();

    // The audit key is rotated (service stopped); the server starts with the new key.
    let p = |name: &str| secrets.path(name).display().to_string();
    registry(&["audit", "new-key", "--out", &p("new-audit.key")]);
    registry(&[
        "audit",
        "rotate-key",
        "--data-dir",
        &data.display().to_string(),
        "--audit-key-file",
        &p("audit-signing.key"),
        "--new-key-file",
        &p("new-audit.key"),
    ]);
    let server = Server::start_with_audit_key(&data, &secrets, "new-audit.key").await;
    let mut c = CaseworkerClient::new(server.channel().await);
    let second = register(&mut c, "BEA", "V20000002", "2022-05-01").await;
    // Pinned to the old verifier key, the backup follows the hand-over.
    let out = succeeded(&backup(&server, &secrets, &backups), "backup after the rotation");
    assert!(out.contains("generation 2 (Incremental)"), "{out}");
    drop(c);
    server.kill();
    std::fs::remove_dir_all(&data).unwrap();

    let restored = work.path().join("restored");
    succeeded(
        &restore(&backups, Some(&restored), &secrets),
        "restore across the rotation",
    );
    let listed = registry(&[
        "audit",
        "handovers",
        "--data-dir",
        &restored.display().to_string(),
    ]);
    let kept = std::fs::read_to_string(backups.join("gen-000002/handovers.txt")).unwrap();
    assert!(
        !kept.is_empty() && listed == kept,
        "the restored store keeps the hand-over"
    );
    let server = Server::start_with_audit_key(&restored, &secrets, "new-audit.key").await;
    let mut c = CaseworkerClient::new(server.channel().await);
    for t in [&first, &second] {
        assert_eq!(get_case(&mut c, &t.case_id).await.version, 1);
    }
    drop(c);
    server.stop();

    // A hand-over altered in the backup is refused.
    let altered = work.path().join("altered");
    copy_dir(&backups, &altered);
    let file = altered.join("gen-000002/handovers.txt");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replacen("size ", "size 9", 1);
    std::fs::write(&file, &text).unwrap();
    set_file_digest(&altered.join("gen-000002"), "handovers.txt", text.as_bytes());
    let out = restore(&altered, None, &secrets);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("generation 2") && e.contains("hand-over"), "{e}");
}
