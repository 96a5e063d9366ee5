//! End to end, on a real small filesystem (a tmpfs the test mounts): the
//! health service tells the truth when the disk fills.
//!
//! - Under the disk reserve, appends are refused (UNAVAILABLE, nothing
//!   written), Caseworker and Import report NOT_SERVING while the server
//!   stays alive (liveness SERVING), and everything resumes once space is
//!   freed.
//! - Without a reserve, a full disk is a storage error: the writer stops
//!   (fail-stop), health reports NOT_SERVING, and the server drains and
//!   ends with an error (a non-zero exit), so a supervisor restarts it; what
//!   was acknowledged before is there after the restart.
//!
//! Mounting needs root (CAP_SYS_ADMIN); where the machine does not allow it
//! the tests say so and skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use registry::api::pb;
use registry::log::SyncMode;
use registry::server::{serve_on, ServeConfig};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use pb::DocumentType as Doc;

/// A tmpfs of `mib` MiB mounted for the test; unmounted on drop.
struct SmallDisk {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&mount)
            .status();
        match status {
            Ok(s) if s.success() => Some(SmallDisk { mount, _dir: dir }),
            _ => {
                eprintln!("notice: skipping: cannot mount a tmpfs here (needs root)");
                None
            }
        }
    }

    /// Fills the filesystem until at most `leave` bytes are free.
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.mount.join("filler");
        let (free, _) = registry::log::disk::space(&self.mount).unwrap();
        let size = free.saturating_sub(leave);
        let file = std::fs::File::create(&filler).unwrap();
        // tmpfs allocates on write: write the bytes (a sparse file would not use space).
        use std::io::Write;
        let mut w = std::io::BufWriter::new(file);
        let block = vec![0u8; 1 << 20];
        let mut written = 0;
        while written < size {
            let n = (size - written).min(block.len() as u64) as usize;
            if w.write_all(&block[..n]).is_err() {
                break;
            }
            written += n as u64;
        }
        let _ = w.flush();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

struct Running {
    addr: std::net::SocketAddr,
    done: tokio::task::JoinHandle<Result<(), String>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(data_dir: &Path, keys: &Path, reserve_mib: u64) -> Running {
    let access_file = keys.join("access.json");
    if !access_file.exists() {
        write_test_access_file(&access_file);
        std::fs::write(keys.join("master.key"), format!("{MASTER_KEY_HEX}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(keys.join("master.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = ServeConfig::new(data_dir.to_path_buf(), addr);
    config.sync = SyncMode::Flush;
    config.access_file = Some(access_file);
    config.master_key_file = Some(keys.join("master.key"));
    config.disk_reserve_mib = reserve_mib;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        serve_on(config, listener, async move {
            let _ = stopped.await;
        })
        .await
        .map_err(|e| e.to_string())
    });
    Running { addr, done, stop }
}

async fn client(addr: std::net::SocketAddr) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match CaseworkerClient::connect(format!("http://{addr}")).await {
            Ok(c) => return c,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("cannot connect: {e}"),
        }
    }
}

async fn health(addr: std::net::SocketAddr, service: &str) -> Option<ServingStatus> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .ok()?;
    let answer = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .ok()?;
    Some(answer.into_inner().status())
}

/// Waits (at most 10 s) until `service`'s health is `wanted`.
async fn health_becomes(addr: std::net::SocketAddr, service: &str, wanted: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = health(addr, service).await;
        if now == Some(wanted) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service:?} health stayed {now:?}, not {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CASES: &str = "regularization.v1.Caseworker";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_disk_reserve_appends_wait_and_resume_when_space_is_freed() {
    let Some(disk) = SmallDisk::mount(256) else { return };
    let keys = tempfile::tempdir().unwrap();
    let server = serve(&disk.mount.join("data"), keys.path(), 32).await;
    let mut c = client(server.addr).await;
    let t = register(&mut c, "RITA", "V40000001", "2022-03-01").await;
    health_becomes(server.addr, CASES, ServingStatus::Serving).await;

    let filler = disk.fill(16 << 20);
    health_becomes(server.addr, CASES, ServingStatus::NotServing).await;
    health_becomes(server.addr, "regularization.v1.Import", ServingStatus::NotServing).await;
    assert_eq!(
        health(server.addr, "").await,
        Some(ServingStatus::Serving),
        "alive, not ready"
    );
    let refused = c
        .register_person(req(register_request(
            person(
                "SARA",
                "LOPEZ",
                "1990-01-01",
                &[(Doc::VenezuelanCedula, "V40000002")],
            ),
            "2022-03-01",
        )))
        .await;
    fails(refused, Code::Unavailable);

    std::fs::remove_file(filler).unwrap();
    health_becomes(server.addr, CASES, ServingStatus::Serving).await;
    let r = ok(c
        .register_person(req(register_request(
            person(
                "SARA",
                "LOPEZ",
                "1990-01-01",
                &[(Doc::VenezuelanCedula, "V40000002")],
            ),
            "2022-03-01",
        )))
        .await);
    assert_eq!(r.first_seq, t.last_seq + 1, "the refused request wrote nothing");
    drop(c);
    let _ = server.stop.send(());
    server.done.await.unwrap().expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_without_reserve_stops_the_writer_and_ends_the_server_with_an_error() {
    let Some(disk) = SmallDisk::mount(256) else { return };
    let keys = tempfile::tempdir().unwrap();
    let data_dir = disk.mount.join("data");
    let server = serve(&data_dir, keys.path(), 0).await;
    let mut c = client(server.addr).await;
    let mut acknowledged = Vec::new();
    acknowledged.push(register(&mut c, "TERE", "V41000000", "2022-03-01").await.case_id);
    let filler = disk.fill(0);

    // Appends until the disk refuses one: nothing is acknowledged that is not durable.
    let mut failed = None;
    for i in 1..5_000 {
        let request = register_request(
            person(
                "UNA",
                "PERSONA",
                "1990-01-01",
                &[(Doc::VenezuelanCedula, &format!("V41{i:06}"))],
            ),
            "2022-03-01",
        );
        match c.register_person(req(request)).await {
            Ok(r) => acknowledged.push(r.into_inner().case_id),
            Err(s) => {
                failed = Some(s);
                break;
            }
        }
    }
    let failed = failed.expect("a full disk refuses appends");
    assert_eq!(failed.code(), Code::Unavailable, "{}", failed.message());
    drop(c);
    // The server drains and ends with an error naming the writer.
    let ended = tokio::time::timeout(Duration::from_secs(30), server.done)
        .await
        .expect("the server ends by itself")
        .unwrap();
    let message = ended.expect_err("a stopped writer ends the server with an error");
    assert!(message.contains("writer stopped taking appends"), "{message}");

    // Space freed and restarted: every acknowledged registration is there.
    std::fs::remove_file(filler).unwrap();
    let server = serve(&data_dir, keys.path(), 0).await;
    let mut c = client(server.addr).await;
    health_becomes(server.addr, CASES, ServingStatus::Serving).await;
    for case_id in &acknowledged {
        let case = ok(c.get_case(req(get_case_request(case_id))).await);
        assert_eq!(case.version, 1, "{case_id}");
    }
    drop(c);
    let _ = server.stop.send(());
    server.done.await.unwrap().expect("a clean stop");
}
