//! A replicated registry (issue 19, docs/CLUSTER.md): three real
//! `registry serve --cluster` processes on 127.0.0.1, each with its own
//! data directory, the same master key and access file.
//!
//! - The leader is killed with SIGKILL (snapshots every 100 entries) at random moments of a load of
//!   registrations (persons with identity documents, so person keys and
//!   document reservations replicate too), `CLUSTER_KILLS` times (default
//!   4; BENCHMARKS.md has a 20-kill run): a new leader acknowledges writes
//!   within the election timeout (the failover time is printed), the
//!   killed node restarts and catches up. Afterwards every node holds every
//!   acknowledged registration at the seq it was acknowledged with, the
//!   three heads are identical, `registry verify` passes on each store, and
//!   the last leader opens the personal data of persons registered under
//!   earlier leaders (their keys replicated).
//! - A leader cut off from both followers (SIGSTOP) acknowledges nothing;
//!   once they resume, the same request (same request id) is acknowledged
//!   once.
//! - A follower stopped (SIGSTOP) during the load and resumed catches up
//!   (its catch-up rate is printed).
//! - A node whose data directory was lost starts empty and receives the
//!   whole log, person keys included, from the others.
//! - With snapshots every few entries, a follower stopped while the
//!   leader purged the entries it lacks installs the leader's snapshot
//!   (verified against the checkpoint it carries) and then follows the
//!   log; its person keys and document index equal the leader's. A
//!   snapshot file with one byte changed, or pinned to another key, does
//!   not verify. A tampered follower replaced by an empty store is rebuilt
//!   from a snapshot.
//! - An existing single-node store seeds a new cluster (`seed = true`):
//!   the two empty nodes receive it as a snapshot, and every node holds
//!   its records and the ones written after; without `seed`, the store is
//!   refused.
//! - Writes sent to a follower are refused with UNAVAILABLE, ErrorInfo
//!   NOT_LEADER and the leader's address in `x-registry-leader`, and create
//!   nothing; the client that follows the leader then succeeds.
//!
//! Checked to fail: with the state machine's chain check answering Ok
//! without applying, the heads differ; with the writer acknowledging before
//! the Raft commit, the minority leader acknowledges.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{person, register_request, test_token, write_test_access_file, MASTER_KEY_HEX};
use registry::api::pb;
use registry::client::{connect, AuthChannel, ClientOptions};
use tonic::Code;

const NODES: usize = 3;

/// The server binary: `CLUSTER_BIN` (e.g. a release build, for the figures
/// in BENCHMARKS.md), else the one cargo built for this test.
fn binary() -> PathBuf {
    std::env::var_os("CLUSTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_registry")))
}

struct Node {
    id: u64,
    api: String,
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

struct Cluster {
    _root: tempfile::TempDir,
    root: PathBuf,
    nodes: Vec<Node>,
    master: PathBuf,
    access: PathBuf,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster::with_spares(0)
    }

    /// [`NODES`] members, and `spares` more nodes whose cluster files list
    /// every node (they join through Admin/ClusterAddMember).
    fn with_spares(spares: usize) -> Cluster {
        Cluster::build(spares, "")
    }

    /// Snapshots every `every` Raft entries, keeping `keep` entries before them.
    fn with_snapshots(every: u64, keep: u64) -> Cluster {
        Cluster::build(0, &format!("[snapshots]\nevery = {every}\nkeep = {keep}\n"))
    }

    /// Like [`Cluster::new`], each cluster file with `extra` (a `[tls]` or
    /// `[snapshots]` section).
    fn build(spares: usize, extra: &str) -> Cluster {
        let tls = extra;
        let root_dir = tempfile::tempdir().unwrap();
        let root = root_dir.path().to_path_buf();
        let master = root.join("master.key");
        std::fs::write(&master, MASTER_KEY_HEX).unwrap();
        std::fs::set_permissions(&master, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let access = root.join("access.json");
        write_test_access_file(&access);
        // Every port bound at once, so no two are the same.
        let held: Vec<std::net::TcpListener> = (0..2 * (NODES + spares))
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let port = |i: usize| held[i].local_addr().unwrap().port();
        let ports: Vec<(u16, u16)> = (0..NODES + spares)
            .map(|i| (port(2 * i), port(2 * i + 1)))
            .collect();
        drop(held);
        let mut members = String::new();
        let mut all = String::new();
        for (i, (api, raft)) in ports.iter().enumerate() {
            let entry = format!(
                "[[members]]\nid = {}\nraft = \"127.0.0.1:{raft}\"\napi = \"127.0.0.1:{api}\"\n",
                i + 1
            );
            if i < NODES {
                members.push_str(&entry);
            }
            all.push_str(&entry);
        }
        let nodes = (0..NODES + spares)
            .map(|i| {
                let id = i as u64 + 1;
                let config = root.join(format!("cluster-{id}.toml"));
                let listed = if i < NODES { &members } else { &all };
                std::fs::write(&config, format!("node_id = {id}\n{tls}{listed}")).unwrap();
                Node {
                    id,
                    api: format!("127.0.0.1:{}", ports[i].0),
                    dir: root.join(format!("node-{id}")),
                    config,
                    log: root.join(format!("node-{id}.log")),
                    child: None,
                    starts: 0,
                }
            })
            .collect();
        Cluster {
            _root: root_dir,
            root,
            nodes,
            master,
            access,
        }
    }

    fn start(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        assert!(n.child.is_none(), "node {} runs already", n.id);
        n.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .unwrap();
        let child = Command::new(binary())
            .args(["serve", "--data-dir"])
            .arg(&n.dir)
            .args(["--listen", &n.api, "--cluster"])
            .arg(&n.config)
            .arg("--master-key-file")
            .arg(&self.master)
            .arg("--access-file")
            .arg(&self.access)
            .args([
                "--metrics-listen",
                "off",
                "--disk-reserve-mib",
                "0",
                "--checkpoint-interval-secs",
                "1",
            ])
            .env("RUST_LOG", "info,openraft=error")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start registry serve");
        n.child = Some(child);
    }

    fn signal(&self, i: usize, signal: i32) {
        let pid = self.nodes[i].child.as_ref().expect("running").id() as i32;
        // SAFETY: sending a signal to a child process this test started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
    }

    fn kill9(&mut self, i: usize) {
        self.signal(i, libc::SIGKILL);
        let mut child = self.nodes[i].child.take().unwrap();
        let _ = child.wait();
    }

    fn stop(&mut self, i: usize) {
        if self.nodes[i].child.is_none() {
            return;
        }
        self.signal(i, libc::SIGTERM);
        let mut child = self.nodes[i].child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "node {} exited with {status}: {}",
                    i + 1,
                    self.tail(i)
                );
                return;
            }
            assert!(Instant::now() < deadline, "node {} did not stop", i + 1);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Every node's client address, as a client's target list.
    fn targets(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("http://{}", n.api))
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn client(&self, role: &str, target: &str) -> AuthChannel {
        let options = ClientOptions {
            target: target.to_string(),
            token: Some(test_token(role)),
            actor: None,
            tls: None,
        };
        connect(&options, Duration::from_secs(30)).await.expect("connect")
    }

    /// Node `i`'s Admin/ClusterStatus, if it answers.
    async fn status(&self, i: usize) -> Option<pb::ClusterStatusResponse> {
        self.nodes[i].child.as_ref()?;
        let options = ClientOptions {
            target: format!("http://{}", self.nodes[i].api),
            token: Some(test_token("admin")),
            actor: None,
            tls: None,
        };
        let channel = connect(&options, Duration::ZERO).await.ok()?;
        let mut admin = pb::admin_client::AdminClient::new(channel);
        let call = admin.cluster_status(pb::ClusterStatusRequest {});
        match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(Ok(r)) => Some(r.into_inner()),
            _ => None,
        }
    }

    /// The index of the node that reports itself leader, waiting up to `wait`.
    async fn leader(&self, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        loop {
            for i in 0..self.nodes.len() {
                if let Some(s) = self.status(i).await {
                    if s.state == "LEADER" {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within {wait:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running node applied the same head; returns it.
    /// Whether node `i`'s log contains `text` within 10 s.
    async fn log_says(&self, i: usize, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::fs::read_to_string(&self.nodes[i].log).is_ok_and(|l| l.contains(text)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn converged(&self, wait: Duration) -> (u64, Vec<u8>) {
        let deadline = Instant::now() + wait;
        loop {
            let mut heads = Vec::new();
            let running = self.nodes.iter().filter(|n| n.child.is_some()).count();
            for i in 0..self.nodes.len() {
                if let Some(s) = self.status(i).await {
                    heads.push((s.head_seq, s.head_hash));
                }
            }
            if heads.len() == running && heads.iter().all(|h| *h == heads[0]) {
                return heads.swap_remove(0);
            }
            assert!(Instant::now() < deadline, "the nodes did not converge: {heads:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn verify_store(&self, i: usize) {
        let out = Command::new(env!("CARGO_BIN_EXE_registry"))
            .args(["verify", "--data-dir"])
            .arg(&self.nodes[i].dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "registry verify on node {}: {}{}",
            i + 1,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            let kept = self.root.with_extension("kept");
            let _ = std::fs::rename(&self.root, &kept);
            eprintln!("cluster directories and logs kept in {}", kept.display());
        }
    }
}

/// An acknowledged registration.
#[derive(Clone, Debug)]
struct Acked {
    case_id: String,
    request_id: String,
    first_seq: u64,
    given: String,
}

fn registration(tag: &str, n: u64) -> (pb::RegisterPersonRequest, String) {
    let given = format!("Given{tag}x{n}");
    // A distinct document per (tag, n): the document index refuses a second holder.
    let digest = blake3::hash(format!("{tag}/{n}").as_bytes());
    let cedula = format!(
        "V{:09}",
        u64::from_le_bytes(digest.as_bytes()[..8].try_into().unwrap()) % 1_000_000_000
    );
    let p = person(
        &given,
        "Cluster",
        "1990-02-03",
        &[(pb::DocumentType::VenezuelanCedula, &cedula)],
    );
    (register_request(p, "2024-05-06"), given)
}

/// Sends one registration until it is acknowledged (retrying with the same
/// request id while the cluster fails over), within `wait`.
async fn register_until_acked(
    client: &mut pb::caseworker_client::CaseworkerClient<AuthChannel>,
    request: &pb::RegisterPersonRequest,
    wait: Duration,
) -> Result<pb::CommandResult, tonic::Status> {
    let deadline = Instant::now() + wait;
    loop {
        let mut r = tonic::Request::new(request.clone());
        r.set_timeout(Duration::from_secs(8));
        match client.register_person(r).await {
            Ok(answer) => return Ok(answer.into_inner()),
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
                ) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => return Err(s),
        }
    }
}

/// Starts every node of `cluster` and waits for a leader; returns its index
/// and a supervisor's client that follows the leader.
async fn start_all(cluster: &mut Cluster) -> (usize, pb::caseworker_client::CaseworkerClient<AuthChannel>) {
    for i in 0..NODES {
        cluster.start(i);
    }
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let client =
        pb::caseworker_client::CaseworkerClient::new(cluster.client("supervisor", &cluster.targets()).await);
    (leader, client)
}

/// Registers persons `range` under `tag`, each until acknowledged; their case ids and given names.
async fn register_all(
    client: &mut pb::caseworker_client::CaseworkerClient<AuthChannel>,
    tag: &str,
    range: std::ops::Range<u64>,
) -> Vec<(String, String)> {
    let mut acked = Vec::new();
    for n in range {
        let (request, given) = registration(tag, n);
        let a = register_until_acked(client, &request, Duration::from_secs(30))
            .await
            .unwrap_or_else(|s| panic!("registration {tag}/{n}: {:?} {}", s.code(), s.message()));
        acked.push((a.case_id, given));
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let kills: usize = std::env::var("CLUSTER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    // Snapshots and purges happen during the run, so kills land before,
    // during and after them, and a restarted node may need a snapshot.
    let mut cluster = Cluster::with_snapshots(100, 20);
    for i in 0..NODES {
        cluster.start(i);
    }
    cluster.leader(Duration::from_secs(30)).await;
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let last_ack_ms = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..3u64 {
        let mut client = pb::caseworker_client::CaseworkerClient::new(
            cluster.client("supervisor", &cluster.targets()).await,
        );
        let (acked, stop, last_ack_ms) = (acked.clone(), stop.clone(), last_ack_ms.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let tag = format!("t{t}");
                let (request, given) = registration(&tag, t * 1_000_000 + n);
                let answer = register_until_acked(&mut client, &request, Duration::from_secs(30))
                    .await
                    .unwrap_or_else(|s| {
                        panic!("registration {n} of task {t}: {:?} {}", s.code(), s.message())
                    });
                last_ack_ms.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                acked.lock().unwrap().push(Acked {
                    case_id: answer.case_id,
                    request_id: request.header.as_ref().unwrap().request_id.clone(),
                    first_seq: answer.first_seq,
                    given,
                });
            }
        }));
    }
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    let mut failovers = Vec::new();
    for k in 0..kills {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(300 + (rng >> 33) % 700)).await;
        let leader = cluster.leader(Duration::from_secs(30)).await;
        let before = acked.lock().unwrap().len();
        let killed_at = started.elapsed().as_millis() as u64;
        cluster.kill9(leader);
        // Failover: from the kill to the first acknowledgement after it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while last_ack_ms.load(Ordering::Relaxed) <= killed_at {
            assert!(
                Instant::now() < deadline,
                "no write acknowledged within 30 s of killing the leader (kill {k})"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let failover = last_ack_ms.load(Ordering::Relaxed) - killed_at;
        failovers.push(failover);
        eprintln!(
            "kill {k}: node {} (leader), {before} acknowledged before, failover {failover} ms",
            leader + 1
        );
        cluster.start(leader);
        // The next kill comes once the restarted node follows a leader again
        // and has caught up with it (as an operator waits before the next
        // disruption): killing the leader while the third node is still
        // starting, or still receiving a snapshot, would leave no caught-up
        // majority, and measure its start-up or catch-up, not the failover.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = cluster.status(leader).await {
                // Back as a follower, or already elected again, and applied
                // what the leader had when it answered.
                let caught_up = match s.leader_id {
                    0 => false,
                    id => match cluster.status(id as usize - 1).await {
                        Some(l) => s.last_applied_index + 5 >= l.last_applied_index,
                        None => false,
                    },
                };
                if (s.state == "FOLLOWER" || s.state == "LEADER") && caught_up {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not rejoin: {}",
                leader + 1,
                cluster.tail(leader)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > kills * 3,
        "the load acknowledged only {} writes",
        acked.len()
    );
    let (head_seq, _) = cluster.converged(Duration::from_secs(60)).await;
    failovers.sort_unstable();
    eprintln!(
        "{} registrations acknowledged across {kills} leader kills; head seq {head_seq}; failover ms: min {} median {} max {}",
        acked.len(),
        failovers.first().unwrap_or(&0),
        failovers.get(failovers.len() / 2).unwrap_or(&0),
        failovers.last().unwrap_or(&0)
    );
    // The last leader opens the personal data of persons registered under
    // earlier leaders: their keys replicated.
    let mut reader =
        pb::caseworker_client::CaseworkerClient::new(cluster.client("supervisor", &cluster.targets()).await);
    for a in acked.iter().step_by((acked.len() / 12).max(1)) {
        let request = pb::GetCaseRequest {
            case_id: a.case_id.clone(),
            purpose: "REVIEW".into(),
        };
        let mut case = None;
        for _ in 0..100 {
            match reader.get_case(request.clone()).await {
                Ok(c) => {
                    case = Some(c.into_inner());
                    break;
                }
                Err(s) if s.code() == Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(s) => panic!("GetCase {}: {:?} {}", a.case_id, s.code(), s.message()),
            }
        }
        let case = case.expect("GetCase answered");
        assert_eq!(case.person.expect("personal data opened").given_names, a.given);
    }
    // Each GetCase recorded an access event: the heads moved on, together.
    let (head_seq, head_hash) = cluster.converged(Duration::from_secs(60)).await;
    for i in 0..NODES {
        cluster.stop(i);
    }
    for i in 0..NODES {
        let store = common::open_store(&cluster.nodes[i].dir);
        let head = store.head().unwrap();
        assert_eq!(
            (head.seq, head.hash.to_vec()),
            (head_seq, head_hash.clone()),
            "node {} head",
            i + 1
        );
        for a in &acked {
            let ev = store
                .get(a.first_seq)
                .unwrap()
                .unwrap_or_else(|| panic!("node {}: seq {} missing", i + 1, a.first_seq));
            assert_eq!(
                ev.record.stream_id,
                a.case_id,
                "node {}: seq {}",
                i + 1,
                a.first_seq
            );
            assert_eq!(
                ev.record.request_id,
                a.request_id,
                "node {}: seq {}",
                i + 1,
                a.first_seq
            );
        }
        drop(store);
        cluster.verify_store(i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_the_majority_acknowledges_nothing() {
    let mut cluster = Cluster::new();
    for i in 0..NODES {
        cluster.start(i);
    }
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let target = format!("http://{}", cluster.nodes[leader].api);
    let mut client =
        pb::caseworker_client::CaseworkerClient::new(cluster.client("supervisor", &target).await);
    let (first, _) = registration("minority", 1);
    register_until_acked(&mut client, &first, Duration::from_secs(30))
        .await
        .expect("a write before the cut");
    let (head_before, _) = cluster.converged(Duration::from_secs(30)).await;
    let followers: Vec<usize> = (0..NODES).filter(|i| *i != leader).collect();
    for &f in &followers {
        cluster.signal(f, libc::SIGSTOP);
    }
    let (request, given) = registration("minority", 2);
    let mut r = tonic::Request::new(request.clone());
    r.set_timeout(Duration::from_secs(20));
    let refused = client.register_person(r).await;
    let status = refused.expect_err("a leader without a majority must not acknowledge");
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    // Nothing was applied on the cut-off leader.
    let s = cluster
        .status(leader)
        .await
        .expect("the leader answers ClusterStatus");
    assert_eq!(s.head_seq, head_before, "the minority leader applied a write");
    for &f in &followers {
        cluster.signal(f, libc::SIGCONT);
    }
    // The same request, retried, is written once (by whichever node leads now).
    let mut any =
        pb::caseworker_client::CaseworkerClient::new(cluster.client("supervisor", &cluster.targets()).await);
    let answer = register_until_acked(&mut any, &request, Duration::from_secs(30))
        .await
        .expect("written once a majority is back");
    let again = register_until_acked(&mut any, &request, Duration::from_secs(30))
        .await
        .expect("retry");
    assert!(again.deduplicated, "the retry created something");
    assert_eq!(
        (again.case_id.as_str(), again.first_seq),
        (answer.case_id.as_str(), answer.first_seq)
    );
    let case = any
        .get_case(pb::GetCaseRequest {
            case_id: answer.case_id.clone(),
            purpose: "REVIEW".into(),
        })
        .await
        .expect("GetCase")
        .into_inner();
    assert_eq!(case.person.unwrap().given_names, given);
    cluster.converged(Duration::from_secs(30)).await;
    for i in 0..NODES {
        cluster.stop(i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_refuses_writes_naming_the_leader() {
    let mut cluster = Cluster::new();
    for i in 0..NODES {
        cluster.start(i);
    }
    let leader = cluster.leader(Duration::from_secs(30)).await;
    // Wait until the genesis instruments are recorded and every node holds them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let head = loop {
        let (head, _) = cluster.converged(Duration::from_secs(30)).await;
        if head > 0 {
            break head;
        }
        assert!(
            Instant::now() < deadline,
            "the genesis policy instruments were not recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let follower = (leader + 1) % NODES;
    let target = format!("http://{}", cluster.nodes[follower].api);
    // A plain tonic channel to the follower: it does not follow the leader.
    let channel = tonic::transport::Endpoint::from_shared(target)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut plain = pb::caseworker_client::CaseworkerClient::new(channel);
    let (request, _) = registration("follower", 1);
    let status = plain
        .register_person(common::req(request.clone()))
        .await
        .expect_err("a follower refuses writes");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status
            .metadata()
            .get("x-registry-leader")
            .and_then(|v| v.to_str().ok()),
        Some(cluster.nodes[leader].api.as_str()),
        "{}",
        status.message()
    );
    let details = tonic_types::StatusExt::get_error_details(&status);
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "NOT_LEADER");
    assert_eq!(
        info.metadata.get("leader").map(String::as_str),
        Some(cluster.nodes[leader].api.as_str())
    );
    // Nothing was written anywhere.
    let (after, _) = cluster.converged(Duration::from_secs(10)).await;
    assert_eq!(after, head);
    // Readiness: only the leader's Caseworker is SERVING (a load balancer
    // that follows readiness sends writes to the leader); Statistics
    // serves everywhere.
    let health = |i: usize, service: &'static str| {
        let api = cluster.nodes[i].api.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{api}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
                let status = tonic_health::pb::health_client::HealthClient::new(channel)
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: service.into(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .status();
                if status != tonic_health::pb::health_check_response::ServingStatus::ServiceUnknown
                    || Instant::now() > deadline
                {
                    return status;
                }
            }
        }
    };
    use tonic_health::pb::health_check_response::ServingStatus;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (l, f) = (
            health(leader, "regularization.v1.Caseworker").await,
            health(follower, "regularization.v1.Caseworker").await,
        );
        if (l, f) == (ServingStatus::Serving, ServingStatus::NotServing) {
            break;
        }
        assert!(Instant::now() < deadline, "leader {l:?}, follower {f:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        health(follower, "").await,
        ServingStatus::Serving,
        "the follower is alive"
    );
    // A client that starts at the follower follows the leader.
    let mut following = pb::caseworker_client::CaseworkerClient::new(
        cluster
            .client("supervisor", &format!("http://{}", cluster.nodes[follower].api))
            .await,
    );
    let answer = register_until_acked(&mut following, &request, Duration::from_secs(10))
        .await
        .expect("written through the leader");
    assert!(!answer.deduplicated);
    for i in 0..NODES {
        cluster.stop(i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_disk_was_replaced_catches_up_from_the_others() {
    let mut cluster = Cluster::new();
    for i in 0..NODES {
        cluster.start(i);
    }
    cluster.leader(Duration::from_secs(30)).await;
    let mut client =
        pb::caseworker_client::CaseworkerClient::new(cluster.client("supervisor", &cluster.targets()).await);
    let mut acked = Vec::new();
    for n in 0..20 {
        let (request, given) = registration("disk", n);
        let a = register_until_acked(&mut client, &request, Duration::from_secs(30))
            .await
            .expect("registered");
        acked.push((a.case_id, given));
    }
    // One person is erased: the tombstone of their key replicates.
    let erased = acked[0].0.clone();
    let erase = pb::ErasePersonRequest {
        header: Some(pb::CommandHeader {
            request_id: "erase-disk-0".into(),
            case_id: erased.clone(),
            expected_version: 1,
            on: "2024-05-07".into(),
        }),
        legal_basis: "LEY_1581_ART_8".into(),
    };
    let mut erased_ok = false;
    for _ in 0..100 {
        match client.erase_person(erase.clone()).await {
            Ok(_) => {
                erased_ok = true;
                break;
            }
            Err(s) if s.code() == Code::Unavailable => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(s) => panic!("ErasePerson: {:?} {}", s.code(), s.message()),
        }
    }
    assert!(erased_ok, "the erasure was acknowledged");
    // Node 1, the one that initialized the cluster (and perhaps the leader):
    // its disk is lost; it starts again on an empty directory.
    cluster.kill9(0);
    std::fs::remove_dir_all(&cluster.nodes[0].dir).unwrap();
    for n in 20..30 {
        let (request, given) = registration("disk", n);
        let a = register_until_acked(&mut client, &request, Duration::from_secs(30))
            .await
            .expect("registered without node 1");
        acked.push((a.case_id, given));
    }
    cluster.start(0);
    let (head, _) = cluster.converged(Duration::from_secs(60)).await;
    assert!(head >= 30, "head {head}");
    for i in 0..NODES {
        cluster.stop(i);
    }
    // Node 1's store holds every record and every person key (wrapped under
    // the shared master key), and verifies.
    let store = common::open_store(&cluster.nodes[0].dir);
    assert_eq!(store.head().unwrap().seq, head);
    let master = registry::pii::MasterKey::load(&cluster.master).unwrap();
    let keys = registry::pii::KeyStore::open(store.db(), master).unwrap();
    for (case_id, _) in acked.iter().filter(|(c, _)| *c != erased) {
        assert_eq!(
            keys.status(case_id).unwrap(),
            registry::pii::KeyStatus::Active,
            "key of {case_id}"
        );
        assert!(keys.get(case_id).unwrap().is_some(), "key of {case_id} opens");
    }
    drop(keys);
    drop(store);
    cluster.verify_store(0);
    // Every node holds the erased person's tombstone, not their key.
    for i in 0..NODES {
        let store = common::open_store(&cluster.nodes[i].dir);
        let master = registry::pii::MasterKey::load(&cluster.master).unwrap();
        let keys = registry::pii::KeyStore::open(store.db(), master).unwrap();
        assert_eq!(
            keys.status(&erased).unwrap(),
            registry::pii::KeyStatus::Erased,
            "node {}",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_follower_catches_up_when_resumed() {
    let mut cluster = Cluster::new();
    for i in 0..NODES {
        cluster.start(i);
    }
    let leader = cluster.leader(Duration::from_secs(30)).await;
    cluster.converged(Duration::from_secs(30)).await;
    let follower = (leader + 1) % NODES;
    cluster.signal(follower, libc::SIGSTOP);
    let behind_from = cluster.status(leader).await.unwrap().head_seq;
    let mut client =
        pb::caseworker_client::CaseworkerClient::new(cluster.client("supervisor", &cluster.targets()).await);
    // Writes go on with two of three nodes.
    let writes = std::env::var("CLUSTER_CATCHUP_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150u64);
    let mut tasks = Vec::new();
    for t in 0..4 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..writes / 4 {
                let (request, _) = registration(&format!("stop{t}"), n);
                register_until_acked(&mut c, &request, Duration::from_secs(30))
                    .await
                    .expect("acknowledged by two of three");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let head = cluster.status(leader).await.unwrap().head_seq;
    assert!(head >= behind_from + writes / 4 * 4, "head {head}");
    let resumed = Instant::now();
    cluster.signal(follower, libc::SIGCONT);
    let (converged, _) = cluster.converged(Duration::from_secs(120)).await;
    let took = resumed.elapsed();
    eprintln!(
        "follower {} caught up {} events in {:.2} s ({:.0} events/s, measured by polling every 100 ms)",
        follower + 1,
        converged - behind_from,
        took.as_secs_f64(),
        (converged - behind_from) as f64 / took.as_secs_f64()
    );
    let (request, _) = registration("stop-after", 1);
    register_until_acked(&mut client, &request, Duration::from_secs(30))
        .await
        .expect("a write after the catch-up");
    cluster.converged(Duration::from_secs(30)).await;
    for i in 0..NODES {
        cluster.stop(i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tampered_follower_stops_and_is_replaced_by_an_empty_store() {
    // Snapshots every 10 entries: the log before the last one is purged, so
    // the replacement store must be rebuilt from a snapshot.
    let mut cluster = Cluster::with_snapshots(10, 2);
    let (leader, mut client) = start_all(&mut cluster).await;
    register_all(&mut client, "tamper", 0..10).await;
    cluster.converged(Duration::from_secs(30)).await;
    // A follower's store is altered while it is stopped: the hash of its head.
    let victim = (leader + 1) % NODES;
    cluster.stop(victim);
    {
        let dir = cluster.nodes[victim].dir.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        let db = loop {
            match registry::log::store::sled_config(&dir).open() {
                Ok(db) => break db,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot open the stopped store: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let log = db.open_tree("log").unwrap();
        let mut head = log.get("h").unwrap().unwrap().to_vec();
        *head.last_mut().unwrap() ^= 0x01;
        log.insert("h", head).unwrap();
        db.flush().unwrap();
    }
    cluster.start(victim);
    for n in 10..20 {
        let (request, _) = registration("tamper", n);
        register_until_acked(&mut client, &request, Duration::from_secs(30))
            .await
            .expect("the majority still writes");
    }
    // The tampered node detects it (at start-up, or at the first record it
    // would apply) and exits with a failure, serving nothing.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = cluster.nodes[victim].child.as_mut().unwrap().try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the tampered node still runs: {}",
            cluster.tail(victim)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "the tampered node exited with success");
    let log = std::fs::read_to_string(&cluster.nodes[victim].log).unwrap();
    assert!(
        log.contains("broken") || log.contains("does not continue the cluster's log"),
        "the node says why it stopped: {}",
        cluster.tail(victim)
    );
    if let Some(line) = log
        .lines()
        .find(|l| l.contains("broken") || l.contains("does not continue"))
    {
        eprintln!("the tampered node: {line}");
    }
    cluster.nodes[victim].child = None;
    // Replaced by an empty store, it receives a snapshot (the leader's log
    // before it is purged) and then the log, and agrees.
    let purged = cluster.status(leader).await.unwrap().purged_index;
    assert!(purged > 0, "the leader purged its log");
    std::fs::remove_dir_all(&cluster.nodes[victim].dir).unwrap();
    cluster.start(victim);
    cluster.converged(Duration::from_secs(60)).await;
    // (The head is published while the snapshot installs; the line follows.)
    assert!(
        cluster.log_says(victim, "snapshot verified and installed").await,
        "the replacement installed a snapshot: {}",
        cluster.tail(victim)
    );
    for i in 0..NODES {
        cluster.stop(i);
    }
    cluster.verify_store(victim);
    assert_side_trees_equal(&cluster, leader, victim);
}

/// Opens a stopped node's store.
fn open_stopped(cluster: &Cluster, i: usize) -> sled::Db {
    let dir = cluster.nodes[i].dir.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match registry::log::store::sled_config(&dir).open() {
            Ok(db) => return db,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot open the stopped store: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The person keys and the document index of two stopped nodes are equal,
/// entry for entry (but the reserved `__` ids, which each node wraps itself).
fn assert_side_trees_equal(cluster: &Cluster, a: usize, b: usize) {
    let (da, db) = (open_stopped(cluster, a), open_stopped(cluster, b));
    for tree in registry::cluster::trees::REPLICATED_TREES {
        let read = |d: &sled::Db| -> Vec<(Vec<u8>, Vec<u8>)> {
            d.open_tree(tree)
                .unwrap()
                .iter()
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                .filter(|(k, _)| !k.starts_with(b"__"))
                .collect()
        };
        let (ea, eb) = (read(&da), read(&db));
        assert!(!ea.is_empty(), "tree {tree} is empty on node {}", a + 1);
        assert_eq!(
            ea,
            eb,
            "tree {tree} differs between nodes {} and {}",
            a + 1,
            b + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_behind_the_purged_log_installs_a_verified_snapshot() {
    let mut cluster = Cluster::with_snapshots(20, 5);
    let (leader, mut client) = start_all(&mut cluster).await;
    register_all(&mut client, "snap", 0..5).await;
    cluster.converged(Duration::from_secs(30)).await;
    let follower = (leader + 1) % NODES;
    let applied_before = cluster.status(follower).await.unwrap().last_applied_index;
    cluster.signal(follower, libc::SIGSTOP);
    // Each registration is three entries (person key, document, records).
    let mut tasks = Vec::new();
    for t in 0..4 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..20 {
                let (request, _) = registration(&format!("snap{t}"), n);
                register_until_acked(&mut c, &request, Duration::from_secs(30))
                    .await
                    .expect("acknowledged by two of three");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // The leader purges entries only once no request to a peer holds them:
    // the one to the stopped follower times out first. Writes go on until
    // the purge passes what the follower applied.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    loop {
        let status = cluster.status(leader).await.unwrap();
        if status.purged_index > applied_before {
            assert!(status.snapshot_index > status.purged_index);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader did not purge past the follower (purged {}, follower applied {applied_before})",
            status.purged_index
        );
        n += 1;
        let (request, _) = registration("snap-wait", n);
        register_until_acked(&mut client, &request, Duration::from_secs(30))
            .await
            .expect("acknowledged by two of three");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resumed = Instant::now();
    cluster.signal(follower, libc::SIGCONT);
    let (head, _) = cluster.converged(Duration::from_secs(120)).await;
    eprintln!(
        "the follower installed a snapshot and caught up to seq {head} in {:.2} s",
        resumed.elapsed().as_secs_f64()
    );
    let follower_status = cluster.status(follower).await.unwrap();
    assert!(
        follower_status.snapshot_index > applied_before,
        "{follower_status:?}"
    );
    assert!(
        cluster
            .log_says(follower, "snapshot verified and installed")
            .await,
        "{}",
        cluster.tail(follower)
    );
    // It follows the log after the snapshot.
    let (request, _) = registration("snap-after", 1);
    register_until_acked(&mut client, &request, Duration::from_secs(30))
        .await
        .expect("a write after the install");
    cluster.converged(Duration::from_secs(30)).await;
    for i in 0..NODES {
        cluster.stop(i);
    }
    cluster.verify_store(follower);
    assert_side_trees_equal(&cluster, leader, follower);

    // The snapshot file verifies as it is, and not with one byte changed
    // or under a pinned key that is not its signer's.
    let dir = cluster.nodes[leader].dir.join("snapshots");
    let current = dir.join(registry::cluster::snapshot::CURRENT_FILE);
    let none = std::collections::BTreeMap::new();
    let verified =
        registry::cluster::snapshot::verify(&current, &none).expect("the leader's snapshot verifies");
    assert!(
        verified.records > 0 && verified.checkpoint_size > 0,
        "{verified:?}"
    );
    let mut bytes = std::fs::read(&current).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let tampered = cluster.root.join("tampered.snap");
    std::fs::write(&tampered, &bytes).unwrap();
    let e = registry::cluster::snapshot::verify(&tampered, &none).unwrap_err();
    eprintln!("a snapshot with one byte changed: {e}");
    let other = registry::audit::checkpoint::NoteSigner::generate("other").unwrap();
    let pinned: std::collections::BTreeMap<u64, String> =
        [(verified.header.built_by, other.verifier().vkey())]
            .into_iter()
            .collect();
    let e = registry::cluster::snapshot::verify(&current, &pinned).unwrap_err();
    assert!(e.to_string().contains("pins"), "{e}");
    // The same checks offline, as an operator runs them.
    let cli = |file: &std::path::Path, key: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_registry"));
        c.args(["cluster", "verify-snapshot", "--file"]).arg(file);
        if let Some(k) = key {
            c.args(["--key", k]);
        }
        c.output().unwrap()
    };
    let ok = cli(&current, Some(&verified.header.signed_by));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("snapshot verified"));
    assert!(!cli(&tampered, None).status.success());
    assert!(!cli(&current, Some(&other.verifier().vkey())).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joins_through_the_admin_api_and_a_member_leaves() {
    // Snapshots every 10 entries: the leader purges its log, so the new
    // node receives a snapshot before it follows the log.
    let mut cluster = Cluster::build(1, "[snapshots]\nevery = 10\nkeep = 2\n");
    let (leader, mut client) = start_all(&mut cluster).await;
    register_all(&mut client, "join", 0..10).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.status(leader).await.unwrap().purged_index == 0 {
        assert!(Instant::now() < deadline, "the leader never purged its log");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Node 4 starts empty; it is not a member until the leader adds it.
    cluster.start(NODES);
    let targets: Vec<String> = cluster.nodes[..NODES]
        .iter()
        .map(|n| format!("http://{}", n.api))
        .collect();
    let mut admin = pb::admin_client::AdminClient::new(cluster.client("admin", &targets.join(",")).await);
    let new = &cluster.nodes[NODES];
    let raft_address = std::fs::read_to_string(&new.config)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("raft = "))
        .nth(NODES)
        .unwrap()
        .trim_start_matches("raft = ")
        .trim_matches('"')
        .to_string();
    let add = pb::ClusterAddMemberRequest {
        id: new.id,
        raft_address,
        api_address: new.api.clone(),
    };
    // A bad address is refused naming the field, and changes nothing.
    let bad = pb::ClusterAddMemberRequest {
        api_address: "no-port".into(),
        ..add.clone()
    };
    let mut refused = None;
    for _ in 0..20 {
        match admin.cluster_add_member(bad.clone()).await {
            Err(s) if s.code() == Code::Unavailable => tokio::time::sleep(Duration::from_millis(100)).await,
            other => {
                refused = Some(other);
                break;
            }
        }
    }
    let refused = refused.unwrap().expect_err("a bad address is refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{}", refused.message());
    assert!(refused.message().contains("api_address"), "{}", refused.message());
    let mut status = None;
    for _ in 0..20 {
        match admin.cluster_add_member(add.clone()).await {
            Ok(s) => {
                status = Some(s.into_inner());
                break;
            }
            Err(s) if s.code() == Code::Unavailable => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(s) => panic!("ClusterAddMember: {:?} {}", s.code(), s.message()),
        }
    }
    let status = status.expect("added");
    assert_eq!(status.members.len(), NODES + 1, "{status:?}");
    for n in 10..20 {
        let (request, _) = registration("join", n);
        register_until_acked(&mut client, &request, Duration::from_secs(30))
            .await
            .expect("registered with four members");
    }
    let (head, _) = cluster.converged(Duration::from_secs(60)).await;
    assert_eq!(
        cluster.status(NODES).await.unwrap().head_seq,
        head,
        "the new node holds the log"
    );
    assert!(
        cluster.log_says(NODES, "snapshot verified and installed").await,
        "the new node installed a snapshot: {}",
        cluster.tail(NODES)
    );
    // Node 1 leaves; the other three go on.
    let mut removed = None;
    for _ in 0..20 {
        match admin
            .cluster_remove_member(pb::ClusterRemoveMemberRequest { id: 1 })
            .await
        {
            Ok(s) => {
                removed = Some(s.into_inner());
                break;
            }
            Err(s) if s.code() == Code::Unavailable => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(s) => panic!("ClusterRemoveMember: {:?} {}", s.code(), s.message()),
        }
    }
    let removed = removed.expect("removed");
    assert!(removed.members.iter().all(|m| m.id != 1), "{removed:?}");
    cluster.stop(0);
    for n in 20..25 {
        let (request, _) = registration("join", n);
        register_until_acked(&mut client, &request, Duration::from_secs(30))
            .await
            .expect("registered after node 1 left");
    }
    cluster.converged(Duration::from_secs(60)).await;
    for i in 1..=NODES {
        cluster.stop(i);
    }
    cluster.verify_store(NODES);
}

/// A CA and one node certificate for 127.0.0.1 (server and client), in `dir`.
fn node_pki(dir: &std::path::Path) -> String {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "cluster test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "registry node");
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("node.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("node.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    format!(
        "[tls]\ncert = \"{0}/node.pem\"\nkey = \"{0}/node.key\"\nca = \"{0}/ca.pem\"\n",
        dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_talk_over_mutual_tls_and_refuse_a_peer_without_a_certificate() {
    let pki = tempfile::tempdir().unwrap();
    let tls = node_pki(pki.path());
    let mut cluster = Cluster::build(0, &tls);
    let (_, mut client) = start_all(&mut cluster).await;
    register_all(&mut client, "mtls", 0..5).await;
    let (head, _) = cluster.converged(Duration::from_secs(30)).await;
    assert!(head >= 5);
    // The Raft port speaks TLS only, and only to a peer with a certificate of the cluster's CA.
    let raft = std::fs::read_to_string(&cluster.nodes[0].config)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("raft = "))
        .unwrap()
        .trim_start_matches("raft = ")
        .trim_matches('"')
        .to_string();
    // A well-formed vote request: answered if it got through.
    let request = openraft::raft::VoteRequest::<u64> {
        vote: openraft::Vote::new(0, 99),
        last_log_id: None,
    };
    let vote = registry::cluster::network::pb::RaftMessage {
        body: registry::cluster::types::encode(&request).unwrap(),
    };
    let without_cert = tonic::transport::Endpoint::from_shared(format!("https://{raft}"))
        .unwrap()
        .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(
            tonic::transport::Certificate::from_pem(std::fs::read(pki.path().join("ca.pem")).unwrap()),
        ))
        .unwrap();
    let refused = match without_cert.connect().await {
        Err(_) => true,
        Ok(channel) => registry::cluster::network::pb::raft_client::RaftClient::new(channel)
            .vote(vote.clone())
            .await
            .is_err_and(|e| e.code() != Code::InvalidArgument),
    };
    assert!(
        refused,
        "the Raft service answered a peer without a client certificate"
    );
    let plaintext = tonic::transport::Endpoint::from_shared(format!("http://{raft}")).unwrap();
    let refused = match plaintext.connect().await {
        Err(_) => true,
        Ok(channel) => registry::cluster::network::pb::raft_client::RaftClient::new(channel)
            .vote(vote)
            .await
            .is_err_and(|e| e.code() != Code::InvalidArgument),
    };
    assert!(refused, "the Raft service answered plaintext");
    for i in 0..NODES {
        cluster.stop(i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leaders_checkpoints_carry_every_followers_cosignature() {
    let mut cluster = Cluster::new();
    let (leader, mut client) = start_all(&mut cluster).await;
    register_all(&mut client, "cosign", 0..5).await;
    let (head, _) = cluster.converged(Duration::from_secs(30)).await;
    // Each follower's cosigner key, as its ClusterStatus publishes it.
    let mut cosigners = Vec::new();
    for i in (0..NODES).filter(|i| *i != leader) {
        let vkey = cluster.status(i).await.expect("status").cosigner_vkey;
        assert!(vkey.contains("/node-"), "{vkey}");
        cosigners.push(vkey);
    }
    let target = format!("http://{}", cluster.nodes[leader].api);
    let mut audit = pb::audit_client::AuditClient::new(cluster.client("auditor", &target).await);
    let deadline = Instant::now() + Duration::from_secs(30);
    let note = loop {
        let cp = audit
            .get_checkpoint(pb::GetCheckpointRequest::default())
            .await
            .expect("GetCheckpoint")
            .into_inner();
        let all = cosigners
            .iter()
            .all(|k| registry::audit::cosign::verify(&cp.note, k).is_ok());
        if cp.tree_size >= head && all {
            break cp.note;
        }
        assert!(
            Instant::now() < deadline,
            "not cosigned by every follower: {}",
            cp.note
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The leader's own signature still verifies with the usual verifier.
    let leader_vkey = audit
        .get_checkpoint(pb::GetCheckpointRequest::default())
        .await
        .unwrap()
        .into_inner()
        .verifier_key;
    let verifier = registry::audit::checkpoint::Verifier::parse(&leader_vkey).unwrap();
    verifier
        .verify_checkpoint(&note)
        .expect("the leader's signature verifies beside the cosignatures");
    // A cosignature does not verify with another node's key, nor on another checkpoint.
    let (checkpoint, _) = registry::audit::cosign::verify(&note, &cosigners[0]).unwrap();
    let other = note.replacen(
        &format!("\n{}\n", checkpoint.size),
        &format!("\n{}\n", checkpoint.size + 1),
        1,
    );
    assert!(registry::audit::cosign::verify(&other, &cosigners[0]).is_err());
    for i in 0..NODES {
        cluster.stop(i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_existing_single_node_store_seeds_a_new_cluster() {
    let mut cluster = Cluster::new();
    // A single node's store with registrations, stopped.
    let server = common::TestServer::start_on(&cluster.nodes[0].dir).await;
    let mut single = server.client().await;
    for n in 0..12u64 {
        let (request, _) = registration("seed", n);
        single
            .register_person(common::as_role("supervisor", request))
            .await
            .expect("registered on the single node");
    }
    drop(single);
    server.stop().await;
    let single_head = common::open_store(&cluster.nodes[0].dir).head().unwrap();
    assert!(single_head.seq >= 12);

    // Without `seed`, a store with events is refused.
    cluster.start(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = cluster.nodes[0].child.as_mut().unwrap().try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the store was not refused: {}",
            cluster.tail(0)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    assert!(cluster.tail(0).contains("seed = true"), "{}", cluster.tail(0));
    cluster.nodes[0].child = None;

    // With `seed = true` in node 1's file it starts a cluster of itself and
    // adds the others, which receive its store as a snapshot.
    let config = std::fs::read_to_string(&cluster.nodes[0].config).unwrap();
    std::fs::write(&cluster.nodes[0].config, format!("seed = true\n{config}")).unwrap();
    for i in 0..NODES {
        cluster.start(i);
    }
    let (head, hash) = cluster.converged(Duration::from_secs(60)).await;
    assert!(head >= single_head.seq, "head {head}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = cluster.status(0).await.unwrap();
        if s.members.len() == NODES {
            break;
        }
        assert!(Instant::now() < deadline, "members: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Members join one at a time (a learner first, which installs the
    // snapshot, then a voter): wait until each has installed it and
    // caught up with the seed.
    for i in 1..NODES {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = std::fs::read_to_string(&cluster.nodes[i].log).unwrap();
            let caught_up = match (cluster.status(i).await, cluster.status(0).await) {
                (Some(n), Some(seed)) => n.head_seq == seed.head_seq,
                _ => false,
            };
            if log.contains("snapshot verified and installed") && caught_up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} installed the seed's snapshot: {}",
                i + 1,
                cluster.tail(i)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The seed's chain goes on: the cluster's head at the seed's seq is the
    // single node's, and writes continue with three voters.
    let mut client =
        pb::caseworker_client::CaseworkerClient::new(cluster.client("supervisor", &cluster.targets()).await);
    for n in 12..16 {
        let (request, _) = registration("seed", n);
        register_until_acked(&mut client, &request, Duration::from_secs(30))
            .await
            .expect("registered on the seeded cluster");
    }
    let (after, _) = cluster.converged(Duration::from_secs(60)).await;
    assert!(after > head && hash.len() == 32);
    for i in 0..NODES {
        cluster.stop(i);
    }
    for i in 0..NODES {
        cluster.verify_store(i);
        let store = common::open_store(&cluster.nodes[i].dir);
        let at = store
            .get(single_head.seq)
            .unwrap()
            .expect("the seed's last record");
        assert_eq!(
            at.hash,
            single_head.hash,
            "node {} continues the seed's chain",
            i + 1
        );
        drop(store);
    }
    assert_side_trees_equal(&cluster, 0, 1);
    assert_side_trees_equal(&cluster, 0, 2);
}
