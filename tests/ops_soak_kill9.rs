//! kill -9 soak (issue 18): the real `registry serve` binary, over a real
//! data directory with `--sync fdatasync` as in production, is killed with
//! SIGKILL at random moments of a mixed load, and restarted on the same
//! directory, again and again.
//!
//! The load comes from this process, an independent gRPC client: several
//! concurrent client tasks register persons, take their cases along the
//! ETPV path (PreRegister, ScheduleBiometrics, RecordBiometricCapture,
//! Approve, IssuePermit, PrintCard, then DeliverCard or AbandonCard — two
//! events in one request), update residences, erase some persons, and read
//! (GetCase, whose answer must show the case at the version last
//! acknowledged, with its personal data; ListCaseEvents). Each task owns its
//! cases, so it knows every case's exact version. Every acknowledged command
//! is recorded here: request, case, version, event seqs and types, answer.
//!
//! A command whose RPC failed because of the kill (the connection reset, or
//! any error seen after the kill was decided) has an unknown outcome: it may
//! or may not be in the log. After the restart it is resolved: the case must
//! hold it whole (its events at the next versions, last in the case) or not
//! at all (the case at the version before it); re-sent with its request id
//! it must then be answered as the original (deduplicated, same seqs) or be
//! applied now, once.
//!
//! After every restart, for every case: ListCaseEvents holds exactly the
//! acknowledged commands, in order, with their request ids, seqs, versions
//! and event types, and nothing else (nothing unacknowledged half-exists); a
//! sample of the commands acknowledged before the kill, re-sent with their
//! request ids, get the original's answer marked deduplicated and create
//! nothing; GetCase on the cases touched before the kill shows their version
//! and opens their personal data (the person keys survived) or shows them
//! erased. Every `SOAK_VERIFY_EVERY`-th kill, and at the end after a
//! graceful stop, `registry verify --data-dir DIR` must exit 0.
//!
//! Figures are printed, not asserted: kills, acknowledged commands,
//! commands in flight at each kill, how the unknown outcomes resolved,
//! restart-to-ready times, what each start re-verified and replayed, verify
//! times.
//!
//! A SIGKILL is a process crash: what reached the kernel survives it. So
//! this shows that nothing is acknowledged while it is still only in the
//! process (the writer's batch, sled's buffers) and that recovery after any
//! moment's crash — including a crash of the recovery itself — keeps
//! everything acknowledged and leaves no request half-written. A power cut
//! (what `--sync fdatasync` is for) is not simulated here.
//! Checked to fail: with the writer's commit not made durable before the
//! acknowledgement, the first restart finds acknowledged events missing;
//! with retries not marked deduplicated, the re-sends are refused.
//!
//! Environment: `SOAK_KILLS` (kills under load; default 10), `SOAK_SEED`
//! (replays the kill delays and the command mix of an earlier run; the
//! interleaving of the concurrent clients still varies), `SOAK_CLIENTS`
//! (default 6), `SOAK_KILL_MAX_MS` (a kill comes 20 ms .. this after the
//! load starts; default 2000), `SOAK_VERIFY_EVERY` (default 2),
//! `SOAK_STARTUP_KILL_PERCENT` (chance that a restart is itself killed
//! before it is ready, in recovery; default 20), `SOAK_BIN` (the binary to
//! run, e.g. a release build; default the one cargo built for this test),
//! `SOAK_KEEP=1` (keep the data directory; a failing run always keeps it,
//! with the servers' logs). BENCHMARKS.md has the figures
//! of a 50-kill run and the command.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{free_port, person, req, write_test_access_file, MASTER_KEY_HEX};
use registry::api::pb;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

type Client = pb::caseworker_client::CaseworkerClient<Channel>;

const CASEWORKER: &str = "regularization.v1.Caseworker";
/// A task keeps at most this many cases that still have lifecycle steps to take.
const OPEN_CASES_MAX: usize = 24;
/// Acknowledged commands of the killed generation re-sent per task after a restart.
const RESEND_PER_TASK: usize = 8;
/// Older acknowledged commands re-sent per task after a restart.
const RESEND_OLD_PER_TASK: usize = 2;
/// Cases read with GetCase per task after a restart.
const GET_CASES_PER_TASK: usize = 8;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

/// splitmix64: small, seedable, good enough to pick delays and commands.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

// ---------------------------------------------------------------- commands

/// A command as sent, kept to re-send it with the same request id.
#[derive(Clone, Debug)]
enum Cmd {
    Register(pb::RegisterPersonRequest),
    PreRegister(pb::PreRegisterRequest),
    Schedule(pb::ScheduleBiometricsRequest),
    Capture(pb::RecordBiometricCaptureRequest),
    Approve(pb::SimpleStepRequest),
    IssuePermit(pb::IssuePermitRequest),
    Print(pb::SimpleStepRequest),
    Deliver(pb::SimpleStepRequest),
    Abandon(pb::SimpleStepRequest),
    Residence(pb::UpdateResidenceRequest),
    Erase(pb::ErasePersonRequest),
}

impl Cmd {
    fn header(&self) -> &pb::CommandHeader {
        let h = match self {
            Cmd::Register(r) => &r.header,
            Cmd::PreRegister(r) => &r.header,
            Cmd::Schedule(r) => &r.header,
            Cmd::Capture(r) => &r.header,
            Cmd::Approve(r) | Cmd::Print(r) | Cmd::Deliver(r) | Cmd::Abandon(r) => &r.header,
            Cmd::IssuePermit(r) => &r.header,
            Cmd::Residence(r) => &r.header,
            Cmd::Erase(r) => &r.header,
        };
        h.as_ref().expect("every command has a header")
    }

    fn request_id(&self) -> &str {
        &self.header().request_id
    }

    fn expected_version(&self) -> u64 {
        self.header().expected_version
    }

    /// The events this command records, in order.
    fn events(&self) -> &'static [&'static str] {
        match self {
            Cmd::Register(_) => &["PersonRegistered"],
            Cmd::PreRegister(_) => &["PreRegistered"],
            Cmd::Schedule(_) => &["BiometricAppointmentScheduled"],
            Cmd::Capture(_) => &["BiometricsCaptured"],
            Cmd::Approve(_) => &["Approved"],
            Cmd::IssuePermit(_) => &["PermitIssued"],
            Cmd::Print(_) => &["CardPrinted"],
            Cmd::Deliver(_) => &["CardDelivered"],
            Cmd::Abandon(_) => &["CardAbandoned", "PermitCancelled"],
            Cmd::Residence(_) => &["ResidenceUpdated"],
            Cmd::Erase(_) => &["PersonErased"],
        }
    }

    async fn send(&self, c: &mut Client) -> Result<pb::CommandResult, Status> {
        let r = match self.clone() {
            Cmd::Register(m) => c.register_person(req(m)).await,
            Cmd::PreRegister(m) => c.pre_register(req(m)).await,
            Cmd::Schedule(m) => c.schedule_biometrics(req(m)).await,
            Cmd::Capture(m) => c.record_biometric_capture(req(m)).await,
            Cmd::Approve(m) => c.approve(req(m)).await,
            Cmd::IssuePermit(m) => c.issue_permit(req(m)).await,
            Cmd::Print(m) => c.print_card(req(m)).await,
            Cmd::Deliver(m) => c.deliver_card(req(m)).await,
            Cmd::Abandon(m) => c.abandon_card(req(m)).await,
            Cmd::Residence(m) => c.update_residence(req(m)).await,
            Cmd::Erase(m) => c.erase_person(req(m)).await,
        };
        r.map(|r| r.into_inner())
    }
}

/// The lifecycle steps after registration, with their business dates.
const STEPS: [&str; 8] = [
    "2022-05-01", // RegisterPerson
    "2022-05-02", // PreRegister
    "2022-05-03", // ScheduleBiometrics (appointment 2022-05-10)
    "2022-05-10", // RecordBiometricCapture
    "2022-06-01", // Approve
    "2022-06-02", // IssuePermit
    "2022-07-01", // PrintCard
    "2022-07-15", // DeliverCard (AbandonCard: 2022-10-01, after the collection period)
];

fn header(request_id: &str, case_id: &str, expected_version: u64, on: &str) -> Option<pb::CommandHeader> {
    Some(pb::CommandHeader {
        request_id: request_id.to_string(),
        case_id: case_id.to_string(),
        expected_version,
        on: on.to_string(),
    })
}

// ------------------------------------------------------------- the ledger

/// One acknowledged command: what was sent and what the server answered.
#[derive(Clone, Debug)]
struct Acked {
    cmd: Cmd,
    answer: pb::CommandResult,
    generation: usize,
}

/// A case as its owning task knows it.
#[derive(Clone, Debug)]
struct Case {
    id: String,
    given: String,
    cedula: String,
    /// Lifecycle steps taken (1 after registration, 8 after delivery or abandonment).
    steps: usize,
    /// The business date of the last step (later commands use dates not before it).
    last_on: String,
    erased: bool,
    /// The version after the last acknowledged command.
    version: u64,
    acked: Vec<Acked>,
    /// A command whose outcome the kill made unknown.
    pending: Option<Cmd>,
    /// The generation of its last acknowledged command or read.
    touched: usize,
}

impl Case {
    fn open(&self) -> bool {
        !self.erased && self.steps < 8
    }
}

/// What happened to the commands whose outcome a kill made unknown.
#[derive(Default, Clone, Copy, Debug)]
struct Resolved {
    applied_before: usize,
    applied_now: usize,
}

/// One client task's state: its cases and its counters, carried across restarts.
struct Worker {
    id: usize,
    seed: u64,
    rng: Rng,
    next: u64,
    cases: Vec<Case>,
    acked: usize,
    reads: usize,
}

impl Worker {
    fn new(id: usize, seed: u64) -> Worker {
        Worker {
            id,
            seed,
            rng: Rng(seed ^ (id as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f)),
            next: 0,
            cases: Vec::new(),
            acked: 0,
            reads: 0,
        }
    }

    fn request_id(&mut self) -> String {
        self.next += 1;
        format!("soak-{:x}-{}-{}", self.seed & 0xffff_ffff, self.id, self.next)
    }

    /// A new person: unique document and request id.
    fn register(&mut self) -> (Case, Cmd) {
        let rid = self.request_id();
        let cedula = format!("V{:02}{:06}", self.id, self.next);
        let names = ["ANA", "LUIS", "MARIA", "JOSE", "CARMEN", "PEDRO", "ROSA", "JUAN"];
        let given = names[self.rng.below(names.len() as u64) as usize].to_string();
        let p = person(
            &given,
            "SOAK PRUEBA",
            "1988-02-10",
            &[(pb::DocumentType::VenezuelanCedula, &cedula)],
        );
        let m = pb::RegisterPersonRequest {
            header: header(&rid, "", 0, STEPS[0]),
            person: Some(p),
            sex: pb::Sex::F as i32,
            nationality: "VEN".into(),
            department: "11".into(),
            municipality: "11001".into(),
        };
        let case = Case {
            id: registry::cases::case_id_for_request(&rid),
            given,
            cedula,
            steps: 0,
            last_on: STEPS[0].to_string(),
            erased: false,
            version: 0,
            acked: Vec::new(),
            pending: None,
            touched: 0,
        };
        (case, Cmd::Register(m))
    }

    /// The next lifecycle step of case `i`.
    fn step(&mut self, i: usize) -> Cmd {
        let rid = self.request_id();
        let abandon = self.rng.below(3) == 0;
        let c = &self.cases[i];
        let (id, v) = (c.id.as_str(), c.version);
        let h = |on: &str| header(&rid, id, v, on);
        match c.steps {
            1 => Cmd::PreRegister(pb::PreRegisterRequest {
                header: h(STEPS[1]),
                channel: "ETPV".into(),
                basis: pb::EligibilityBasis::Pip as i32,
            }),
            2 => Cmd::Schedule(pb::ScheduleBiometricsRequest {
                header: h(STEPS[2]),
                appointment_on: STEPS[3].into(),
                site: "BOG-01".into(),
            }),
            3 => Cmd::Capture(pb::RecordBiometricCaptureRequest {
                header: h(STEPS[3]),
                site: "BOG-01".into(),
                operator: "OP-0042".into(),
                biometric_ref: (1..=32u8).collect(),
            }),
            4 => Cmd::Approve(pb::SimpleStepRequest { header: h(STEPS[4]) }),
            5 => Cmd::IssuePermit(pb::IssuePermitRequest {
                header: h(STEPS[5]),
                permit_number: format!("PPT{:02}{:07}", self.id, self.next),
                valid_until: String::new(),
            }),
            6 => Cmd::Print(pb::SimpleStepRequest { header: h(STEPS[6]) }),
            7 if abandon => Cmd::Abandon(pb::SimpleStepRequest {
                header: h("2022-10-01"),
            }),
            7 => Cmd::Deliver(pb::SimpleStepRequest { header: h(STEPS[7]) }),
            s => unreachable!("no step after {s}"),
        }
    }

    /// A change of residence of case `i`, dated on its last step's date.
    fn residence(&mut self, i: usize) -> Cmd {
        let rid = self.request_id();
        let c = &self.cases[i];
        let (department, municipality) = if c.version % 2 == 0 {
            ("05", "05001")
        } else {
            ("11", "11001")
        };
        Cmd::Residence(pb::UpdateResidenceRequest {
            header: header(&rid, &c.id, c.version, &c.last_on),
            department: department.into(),
            municipality: municipality.into(),
        })
    }

    fn erase(&mut self, i: usize) -> Cmd {
        let rid = self.request_id();
        let c = &self.cases[i];
        Cmd::Erase(pb::ErasePersonRequest {
            header: header(&rid, &c.id, c.version, &c.last_on),
            legal_basis: "LEY_1581_ART_8".into(),
        })
    }

    fn pick(&mut self, filter: impl Fn(&Case) -> bool) -> Option<usize> {
        let n = self.cases.iter().filter(|c| filter(c)).count();
        if n == 0 {
            return None;
        }
        let k = self.rng.below(n as u64) as usize;
        self.cases
            .iter()
            .enumerate()
            .filter(|(_, c)| filter(c))
            .nth(k)
            .map(|(i, _)| i)
    }

    /// The next operation of the mix.
    fn choose(&mut self) -> Op {
        let open = self.cases.iter().filter(|c| c.open()).count();
        let roll = self.rng.below(100);
        let register = |w: &mut Worker| {
            let (case, cmd) = w.register();
            w.cases.push(case);
            Op::Command(w.cases.len() - 1, cmd)
        };
        if self.cases.is_empty() || (roll < 20 && open < OPEN_CASES_MAX) {
            return register(self);
        }
        if roll < 62 {
            return match self.pick(Case::open) {
                Some(i) => Op::Command(i, self.step(i)),
                None => register(self),
            };
        }
        if roll < 72 {
            if let Some(i) = self.pick(|c| !c.erased) {
                return Op::Command(i, self.residence(i));
            }
        }
        if roll < 73 {
            if let Some(i) = self.pick(|c| !c.erased && c.steps == 8) {
                return Op::Command(i, self.erase(i));
            }
        }
        let i = self.rng.below(self.cases.len() as u64) as usize;
        if roll < 90 {
            Op::GetCase(i)
        } else {
            Op::ListEvents(i)
        }
    }

    /// Records an acknowledged command on case `i`, checking the answer.
    fn acknowledge(
        &mut self,
        i: usize,
        cmd: Cmd,
        answer: pb::CommandResult,
        generation: usize,
    ) -> Result<(), String> {
        let case = &mut self.cases[i];
        let events = cmd.events();
        let expected = cmd.expected_version() + events.len() as u64;
        let fine = answer.case_id == case.id
            && answer.version == expected
            && answer.event_types == events
            && answer.last_seq + 1 - answer.first_seq == events.len() as u64
            && answer.first_seq > case.acked.last().map_or(0, |a| a.answer.last_seq);
        if !fine {
            return Err(format!(
                "case {}: the answer to {} {:?} does not fit (expected version {expected}): {answer:?}",
                case.id,
                cmd.request_id(),
                events
            ));
        }
        case.version = answer.version;
        case.touched = generation;
        match &cmd {
            Cmd::Register(_) => case.steps = 1,
            Cmd::Residence(_) => {}
            Cmd::Erase(_) => case.erased = true,
            Cmd::Abandon(_) | Cmd::Deliver(_) => case.steps = 8,
            _ => case.steps += 1,
        }
        case.last_on = cmd.header().on.clone();
        case.acked.push(Acked {
            cmd,
            answer,
            generation,
        });
        self.acked += 1;
        Ok(())
    }
}

/// One operation of the load (short-lived: one at a time per task).
#[allow(clippy::large_enum_variant)]
enum Op {
    Command(usize, Cmd),
    GetCase(usize),
    ListEvents(usize),
}

// ------------------------------------------------------------ the server

struct Paths {
    root: PathBuf,
    data: PathBuf,
    key: PathBuf,
    access: PathBuf,
    logs: PathBuf,
}

fn bin() -> PathBuf {
    std::env::var_os("SOAK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_registry")))
}

struct Server {
    child: Child,
    target: String,
    log: PathBuf,
    started: Instant,
}

impl Server {
    /// `registry serve` on a fresh loopback port, production durability.
    fn spawn(p: &Paths, generation: usize) -> Server {
        let port = free_port();
        let log = p.logs.join(format!("serve-{generation:03}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(&p.data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--sync", "fdatasync"])
            .arg("--master-key-file")
            .arg(&p.key)
            .arg("--access-file")
            .arg(&p.access)
            .args(["--metrics-listen", "off", "--log-format", "json"])
            .env_remove("REGISTRY_MASTER_KEY")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start registry serve");
        Server {
            child,
            target: format!("http://127.0.0.1:{port}"),
            log,
            started: Instant::now(),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// What the start-up said it re-verified (events) and replayed (case
    /// files) after the previous run (its JSON log line "log opened").
    fn recovery(&self) -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        text.lines().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let f = v.get("fields")?;
            (f.get("message")?.as_str()? == "log opened; tail verified").then_some(())?;
            Some((
                f.get("verified_now")?.as_u64()?,
                f.get("case_files_replayed")?.as_u64()?,
            ))
        })
    }

    /// Waits until Caseworker's health says SERVING; the time since the spawn.
    /// None if another process took the port in the moment between
    /// [`free_port`] and the server's bind (start again on another).
    async fn ready(&mut self) -> Option<Duration> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log_tail();
                if log.contains("Address already in use") {
                    return None;
                }
                panic!("the server exited ({status}) before it was ready; its log ends with:\n{log}");
            }
            if health(&self.target, CASEWORKER).await == Some(1) {
                return Some(self.started.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "the server was not ready within 180 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL, and the wait for the process to be gone.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "the server was killed, not finished: {status}");
    }

    /// SIGTERM: a graceful stop, which must end with exit 0.
    fn stop(mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "a graceful stop ends with exit 0, not {status}:\n{}",
                    self.log_tail()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the server did not stop within 120 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The health of `service` (1 = SERVING), or None while nobody answers.
async fn health(target: &str, service: &str) -> Option<i32> {
    let channel = Endpoint::from_shared(target.to_string())
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

async fn connect(target: &str) -> Result<Client, String> {
    let channel = Endpoint::from_shared(target.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    Ok(pb::caseworker_client::CaseworkerClient::new(channel))
}

/// `registry verify --data-dir DIR` on the stopped store: its time and report.
fn verify(data: &Path) -> (Duration, String) {
    let started = Instant::now();
    let out = Command::new(bin())
        .arg("verify")
        .arg("--data-dir")
        .arg(data)
        .env_remove("REGISTRY_MASTER_KEY")
        .output()
        .expect("run registry verify");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && stdout.starts_with("ok: "),
        "registry verify failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (took, stdout)
}

/// The head seq `registry verify` reported ("ok: N events, head seq N ...").
fn verified_head(report: &str) -> u64 {
    report
        .split("head seq ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no head seq in {report:?}"))
}

// -------------------------------------------------------------- the load

/// Shared by the tasks of one generation.
struct Load {
    /// Set just before the SIGKILL: an error seen after it may be the kill's.
    killing: AtomicBool,
    rpcs_in_flight: AtomicUsize,
    commands_in_flight: AtomicUsize,
}

/// One task's load until the kill: every acknowledged command recorded and
/// checked, every read checked against the versions acknowledged.
async fn run_load(
    mut w: Worker,
    target: String,
    load: Arc<Load>,
    generation: usize,
) -> Result<Worker, String> {
    let mut c = match connect(&target).await {
        Ok(c) => c,
        Err(_) if load.killing.load(Ordering::SeqCst) => return Ok(w),
        Err(e) => return Err(e),
    };
    while !load.killing.load(Ordering::SeqCst) {
        match w.choose() {
            Op::Command(i, cmd) => {
                load.rpcs_in_flight.fetch_add(1, Ordering::SeqCst);
                load.commands_in_flight.fetch_add(1, Ordering::SeqCst);
                let result = cmd.send(&mut c).await;
                load.commands_in_flight.fetch_sub(1, Ordering::SeqCst);
                load.rpcs_in_flight.fetch_sub(1, Ordering::SeqCst);
                match result {
                    Ok(answer) => {
                        if answer.deduplicated {
                            return Err(format!("a new command was answered as a retry: {answer:?}"));
                        }
                        w.acknowledge(i, cmd, answer, generation)?;
                    }
                    Err(_) if load.killing.load(Ordering::SeqCst) => {
                        w.cases[i].pending = Some(cmd);
                        return Ok(w);
                    }
                    Err(s) => {
                        return Err(format!(
                            "{} on case {} failed before any kill: {:?} {}",
                            cmd.request_id(),
                            w.cases[i].id,
                            s.code(),
                            s.message()
                        ))
                    }
                }
            }
            Op::GetCase(i) | Op::ListEvents(i) if w.cases[i].version == 0 => {
                // Its registration's outcome is unknown until a restart resolves it.
                let _ = i;
            }
            Op::GetCase(i) => {
                load.rpcs_in_flight.fetch_add(1, Ordering::SeqCst);
                let result = get_case(&mut c, &w.cases[i].id).await;
                load.rpcs_in_flight.fetch_sub(1, Ordering::SeqCst);
                match result {
                    Ok(case) => {
                        check_case(&w.cases[i], &case)?;
                        w.cases[i].touched = generation;
                        w.reads += 1;
                    }
                    Err(_) if load.killing.load(Ordering::SeqCst) => return Ok(w),
                    Err(s) => {
                        return Err(format!(
                            "GetCase {}: {:?} {}",
                            w.cases[i].id,
                            s.code(),
                            s.message()
                        ))
                    }
                }
            }
            Op::ListEvents(i) => {
                load.rpcs_in_flight.fetch_add(1, Ordering::SeqCst);
                let result = list_events(&mut c, &w.cases[i].id).await;
                load.rpcs_in_flight.fetch_sub(1, Ordering::SeqCst);
                match result {
                    Ok(events) => {
                        check_events(&w.cases[i], &events)?;
                        w.reads += 1;
                    }
                    Err(_) if load.killing.load(Ordering::SeqCst) => return Ok(w),
                    Err(s) => {
                        return Err(format!(
                            "ListCaseEvents {}: {:?} {}",
                            w.cases[i].id,
                            s.code(),
                            s.message()
                        ))
                    }
                }
            }
        }
    }
    Ok(w)
}

async fn get_case(c: &mut Client, case_id: &str) -> Result<pb::Case, Status> {
    c.get_case(req(pb::GetCaseRequest {
        case_id: case_id.to_string(),
        purpose: "SOAK_CHECK".into(),
    }))
    .await
    .map(|r| r.into_inner())
}

/// Every event of a case (an unknown case has none).
async fn list_events(c: &mut Client, case_id: &str) -> Result<Vec<pb::EventSummary>, Status> {
    let mut events = Vec::new();
    let mut from = 1;
    loop {
        let page = match c
            .list_case_events(req(pb::ListCaseEventsRequest {
                case_id: case_id.to_string(),
                from_version: from,
                limit: 1000,
            }))
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::NotFound && events.is_empty() => return Ok(Vec::new()),
            Err(s) => return Err(s),
        };
        events.extend(page.events);
        if page.next_version == 0 {
            return Ok(events);
        }
        from = page.next_version;
    }
}

/// GetCase shows the case at the version acknowledged last, with the
/// personal data it was registered with (so the person's key is there), or
/// erased.
fn check_case(case: &Case, read: &pb::Case) -> Result<(), String> {
    if read.case_id != case.id || read.version != case.version {
        return Err(format!(
            "GetCase {}: version {} where {} was acknowledged",
            case.id, read.version, case.version
        ));
    }
    if case.erased {
        let empty = read.person.as_ref().is_none_or(|p| p.given_names.is_empty());
        if !read.erased || !empty {
            return Err(format!(
                "GetCase {}: acknowledged as erased, but not shown erased",
                case.id
            ));
        }
        return Ok(());
    }
    let person = read.person.as_ref();
    let opened = person.is_some_and(|p| {
        p.given_names == case.given && p.documents.first().is_some_and(|d| d.number == case.cedula)
    });
    if read.erased || !opened {
        return Err(format!(
            "GetCase {}: the personal data does not open as registered (erased: {})",
            case.id, read.erased
        ));
    }
    Ok(())
}

/// The case's events are exactly its acknowledged commands, in order: each
/// command's events at its versions, with its request id, seqs and types;
/// nothing before, between or after them.
fn check_events(case: &Case, events: &[pb::EventSummary]) -> Result<(), String> {
    let mut expected = Vec::new();
    for a in &case.acked {
        for (k, t) in a.cmd.events().iter().enumerate() {
            expected.push((
                a.cmd.expected_version() + 1 + k as u64,
                a.answer.first_seq + k as u64,
                *t,
                a.cmd.request_id(),
            ));
        }
    }
    let found: Vec<_> = events
        .iter()
        .map(|e| (e.version, e.seq, e.event_type.as_str(), e.request_id.as_str()))
        .collect();
    if found != expected {
        let first = found
            .iter()
            .zip(&expected)
            .position(|(f, e)| f != e)
            .unwrap_or(found.len().min(expected.len()));
        return Err(format!(
            "case {}: the log holds {} events where {} were acknowledged; first difference \
             (version, seq, type, request id): log {:?}, acknowledged {:?}",
            case.id,
            found.len(),
            expected.len(),
            found.get(first),
            expected.get(first)
        ));
    }
    Ok(())
}

// ------------------------------------------------------------- the check

#[derive(Default)]
struct Checked {
    cases: usize,
    events: usize,
    resent: usize,
    read: usize,
    resolved: Resolved,
}

/// After a restart, one task's cases: the unknown outcome resolved, a
/// sample of acknowledged commands re-sent, every case's events compared
/// with what was acknowledged, a sample read with GetCase.
async fn check_after_restart(
    mut w: Worker,
    target: String,
    generation: usize,
) -> Result<(Worker, Checked), String> {
    let mut c = connect(&target).await?;
    let mut out = Checked::default();
    // 1. The command the kill left without an answer.
    for i in 0..w.cases.len() {
        let Some(cmd) = w.cases[i].pending.take() else {
            continue;
        };
        let case = &w.cases[i];
        let events = list_events(&mut c, &case.id)
            .await
            .map_err(|s| format!("ListCaseEvents {}: {:?} {}", case.id, s.code(), s.message()))?;
        let before = cmd.expected_version() as usize;
        // What was acknowledged before it is there, first.
        check_events(case, &events[..events.len().min(before)])?;
        let types = cmd.events();
        let ours: Vec<_> = events
            .iter()
            .filter(|e| e.request_id == cmd.request_id())
            .collect();
        let applied = !ours.is_empty();
        if applied {
            // Whole, at the next versions, contiguous, and last in the case.
            let whole = events.len() == before + types.len()
                && ours.len() == types.len()
                && ours.iter().enumerate().all(|(k, e)| {
                    e.version == (before + k + 1) as u64
                        && e.event_type == types[k]
                        && e.seq == ours[0].seq + k as u64
                });
            if !whole {
                return Err(format!(
                    "case {}: the unacknowledged {} is in the log but not whole: {ours:?} ({} events)",
                    case.id,
                    cmd.request_id(),
                    events.len()
                ));
            }
        } else if events.len() != before {
            return Err(format!(
                "case {}: without the unacknowledged {} it should hold {before} events, it holds {}",
                case.id,
                cmd.request_id(),
                events.len()
            ));
        }
        let answer = cmd.send(&mut c).await.map_err(|s| {
            format!(
                "the retry of the unacknowledged {} on {} failed: {:?} {}",
                cmd.request_id(),
                case.id,
                s.code(),
                s.message()
            )
        })?;
        if applied {
            if !answer.deduplicated || answer.first_seq != ours[0].seq {
                return Err(format!(
                    "case {}: {} was in the log, its retry should get its answer deduplicated: {answer:?}",
                    case.id,
                    cmd.request_id()
                ));
            }
            out.resolved.applied_before += 1;
        } else {
            if answer.deduplicated {
                return Err(format!(
                    "case {}: {} was not in the log, yet its retry was deduplicated: {answer:?}",
                    case.id,
                    cmd.request_id()
                ));
            }
            out.resolved.applied_now += 1;
        }
        w.acknowledge(i, cmd, answer, generation)?;
    }
    // 2. Every case holds exactly its acknowledged commands, and nothing else.
    for case in &w.cases {
        let events = list_events(&mut c, &case.id)
            .await
            .map_err(|s| format!("ListCaseEvents {}: {:?} {}", case.id, s.code(), s.message()))?;
        check_events(case, &events)?;
        out.cases += 1;
        out.events += events.len();
    }
    // 3. Re-sent acknowledged commands get the original's answer, deduplicated,
    //    and create nothing.
    let mut sample: Vec<(usize, usize)> = Vec::new();
    let mut resent_cases = BTreeSet::new();
    let mut recent = Vec::new();
    let mut old = Vec::new();
    for (i, case) in w.cases.iter().enumerate() {
        for (j, a) in case.acked.iter().enumerate() {
            // An erased person's sealed commands cannot be compared any more:
            // of an erased case only the erasure is re-sent.
            if case.erased && !matches!(a.cmd, Cmd::Erase(_)) {
                continue;
            }
            if a.generation == generation {
                recent.push((i, j));
            } else {
                old.push((i, j));
            }
        }
    }
    for (from, n) in [(recent, RESEND_PER_TASK), (old, RESEND_OLD_PER_TASK)] {
        let mut from = from;
        for _ in 0..n.min(from.len()) {
            let k = w.rng.below(from.len() as u64) as usize;
            sample.push(from.swap_remove(k));
        }
    }
    for (i, j) in sample {
        let a = &w.cases[i].acked[j];
        let again = a.cmd.send(&mut c).await.map_err(|s| {
            format!(
                "re-sending the acknowledged {} on {}: {:?} {}",
                a.cmd.request_id(),
                w.cases[i].id,
                s.code(),
                s.message()
            )
        })?;
        let o = &a.answer;
        let same = again.deduplicated
            && (
                again.case_id.as_str(),
                again.version,
                again.first_seq,
                again.last_seq,
            ) == (o.case_id.as_str(), o.version, o.first_seq, o.last_seq)
            && again.event_types == o.event_types
            && again.stage == o.stage
            && again.recorded_at_us == o.recorded_at_us;
        if !same {
            return Err(format!(
                "re-sent {} (generation {}): not the original's answer, deduplicated:\n  original {o:?}\n  again    {again:?}",
                a.cmd.request_id(),
                a.generation
            ));
        }
        out.resent += 1;
        resent_cases.insert(i);
    }
    for &i in &resent_cases {
        let case = &w.cases[i];
        let events = list_events(&mut c, &case.id)
            .await
            .map_err(|s| format!("ListCaseEvents {}: {:?} {}", case.id, s.code(), s.message()))?;
        check_events(case, &events).map_err(|e| format!("after re-sending: {e}"))?;
    }
    // 4. GetCase on cases touched before the kill: version, personal data.
    let mut touched: Vec<usize> = (0..w.cases.len())
        .filter(|&i| w.cases[i].touched == generation && w.cases[i].version > 0)
        .collect();
    for _ in 0..GET_CASES_PER_TASK.min(touched.len()) {
        let k = w.rng.below(touched.len() as u64) as usize;
        let i = touched.swap_remove(k);
        let read = get_case(&mut c, &w.cases[i].id)
            .await
            .map_err(|s| format!("GetCase {}: {:?} {}", w.cases[i].id, s.code(), s.message()))?;
        check_case(&w.cases[i], &read)?;
        out.read += 1;
    }
    Ok((w, out))
}

async fn check_all(
    workers: Vec<Worker>,
    target: &str,
    generation: usize,
    seed: u64,
) -> (Vec<Worker>, Checked) {
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|w| tokio::spawn(check_after_restart(w, target.to_string(), generation)))
        .collect();
    let mut workers = Vec::new();
    let mut total = Checked::default();
    for t in tasks {
        match t.await.expect("check task") {
            Ok((w, c)) => {
                workers.push(w);
                total.cases += c.cases;
                total.events += c.events;
                total.resent += c.resent;
                total.read += c.read;
                total.resolved.applied_before += c.resolved.applied_before;
                total.resolved.applied_now += c.resolved.applied_now;
            }
            Err(e) => panic!("after restart {generation} (SOAK_SEED={seed}): {e}"),
        }
    }
    (workers, total)
}

// ---------------------------------------------------------------- figures

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

struct KillFigure {
    delay_ms: u64,
    rpcs_in_flight: usize,
    commands_in_flight: usize,
    acked: usize,
}

// ------------------------------------------------------------------- test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commands_survive_kill_9_under_load_and_the_store_verifies() {
    let kills = env_u64("SOAK_KILLS", 10) as usize;
    let clients = env_u64("SOAK_CLIENTS", 6).max(1) as usize;
    let kill_max_ms = env_u64("SOAK_KILL_MAX_MS", 2000).max(20);
    let verify_every = env_u64("SOAK_VERIFY_EVERY", 2).max(1) as usize;
    let startup_kill_percent = env_u64("SOAK_STARTUP_KILL_PERCENT", 20);
    let seed = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!(
        "soak: SOAK_SEED={seed} SOAK_KILLS={kills} SOAK_CLIENTS={clients} binary {}",
        bin().display()
    );
    // Kept when the test fails (the store as the soak left it); removed at
    // the end of a passing run unless SOAK_KEEP is set.
    let tmp = tempfile::Builder::new()
        .prefix("soak-kill9-")
        .disable_cleanup(true)
        .tempdir()
        .unwrap();
    let root = tmp.path().to_path_buf();
    let p = Paths {
        data: root.join("data"),
        key: root.join("master.key"),
        access: root.join("access.json"),
        logs: root.join("logs"),
        root,
    };
    std::fs::create_dir_all(&p.logs).unwrap();
    std::fs::write(&p.key, format!("{MASTER_KEY_HEX}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    write_test_access_file(&p.access);
    eprintln!("soak: data directory {}", p.root.display());

    let mut rng = Rng(seed);
    let mut workers: Vec<Worker> = (0..clients).map(|i| Worker::new(i, seed)).collect();
    let mut ready_times = Vec::new();
    let (mut reverified, mut replayed) = (Vec::new(), Vec::new());
    // Whether the coming start is the first since a kill under load, with no
    // `registry verify` and no killed start in between.
    let mut direct = false;
    let mut recovery = (0, 0);
    let mut verify_times = Vec::new();
    let mut check_times = Vec::new();
    let mut figures: Vec<KillFigure> = Vec::new();
    let mut resolved = Resolved::default();
    let mut startup_kills = 0usize;
    let mut generation = 0usize;
    let mut last_ready = Duration::from_millis(300);
    let mut spawns = 0usize;
    let started = Instant::now();

    for kill in 0..=kills {
        // Start (after the first start, sometimes kill the restart itself
        // while it recovers), wait until it serves cases.
        let server = loop {
            let mut server = Server::spawn(&p, spawns);
            spawns += 1;
            if kill > 0 && rng.below(100) < startup_kill_percent {
                let delay = rng.below(last_ready.as_millis() as u64 + 1);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                server.kill();
                startup_kills += 1;
                direct = false;
                eprintln!(
                    "soak: a restart killed {delay} ms after its spawn (the last start was ready in {})",
                    ms(last_ready)
                );
                continue;
            }
            let Some(ready) = server.ready().await else {
                eprintln!("soak: the port was taken meanwhile; starting on another");
                continue;
            };
            last_ready = ready;
            if kill > 0 {
                ready_times.push(ready);
                let (events, files) = server
                    .recovery()
                    .unwrap_or_else(|| panic!("no \"log opened\" line in {}", server.log.display()));
                // Only a start right after a kill under load re-checks what
                // that run appended: `registry verify` records the verified
                // position, and so does a start killed after its check.
                if direct {
                    reverified.push(events);
                    replayed.push(files);
                }
                recovery = (events, files);
            }
            break server;
        };
        if kill > 0 {
            let t = Instant::now();
            let (w, checked) = check_all(workers, &server.target, generation, seed).await;
            workers = w;
            check_times.push(t.elapsed());
            resolved.applied_before += checked.resolved.applied_before;
            resolved.applied_now += checked.resolved.applied_now;
            eprintln!(
                "soak: restart {kill}: ready in {} (re-verified {} events, replayed {} case files); checked {} cases ({} events), {} unknown outcomes resolved ({} were in the log, {} applied by their retry), {} re-sent deduplicated, {} read, in {}",
                ms(last_ready),
                recovery.0,
                recovery.1,
                checked.cases,
                checked.events,
                checked.resolved.applied_before + checked.resolved.applied_now,
                checked.resolved.applied_before,
                checked.resolved.applied_now,
                checked.resent,
                checked.read,
                ms(t.elapsed())
            );
        }
        if kill == kills {
            // The end: a graceful stop, then the whole store verifies.
            server.stop();
            let (took, report) = verify(&p.data);
            verify_times.push(took);
            let acked_max = workers
                .iter()
                .flat_map(|w| w.cases.iter().flat_map(|c| c.acked.iter()))
                .map(|a| a.answer.last_seq)
                .max()
                .unwrap_or(0);
            assert!(
                verified_head(&report) >= acked_max,
                "the log ends before an acknowledged seq {acked_max}: {report}"
            );
            eprintln!("soak: after a graceful stop: {report}");
            break;
        }
        // Load, then SIGKILL at a random moment.
        generation += 1;
        let load = Arc::new(Load {
            killing: AtomicBool::new(false),
            rpcs_in_flight: AtomicUsize::new(0),
            commands_in_flight: AtomicUsize::new(0),
        });
        let acked_before: usize = workers.iter().map(|w| w.acked).sum();
        let tasks: Vec<_> = workers
            .into_iter()
            .map(|w| tokio::spawn(run_load(w, server.target.clone(), load.clone(), generation)))
            .collect();
        let delay_ms = rng.range(20, kill_max_ms);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        load.killing.store(true, Ordering::SeqCst);
        let rpcs_in_flight = load.rpcs_in_flight.load(Ordering::SeqCst);
        let commands_in_flight = load.commands_in_flight.load(Ordering::SeqCst);
        server.kill();
        workers = Vec::new();
        for t in tasks {
            match t.await.expect("load task") {
                Ok(w) => workers.push(w),
                Err(e) => panic!("generation {generation} (SOAK_SEED={seed}): {e}"),
            }
        }
        let acked = workers.iter().map(|w| w.acked).sum::<usize>() - acked_before;
        let pending = workers
            .iter()
            .flat_map(|w| &w.cases)
            .filter(|c| c.pending.is_some())
            .count();
        eprintln!(
            "soak: kill {}/{kills} at {delay_ms} ms: {rpcs_in_flight} RPCs in flight ({commands_in_flight} commands), {acked} commands acknowledged in this run, {pending} without an answer",
            kill + 1
        );
        direct = true;
        figures.push(KillFigure {
            delay_ms,
            rpcs_in_flight,
            commands_in_flight,
            acked,
        });
        if (kill + 1) % verify_every == 0 {
            // The killed store, as the kill left it (the server is gone).
            let (took, report) = verify(&p.data);
            verify_times.push(took);
            direct = false;
            eprintln!("soak: verify after kill {}: {report}", kill + 1);
        }
    }

    // Figures.
    let acked: usize = workers.iter().map(|w| w.acked).sum();
    let reads: usize = workers.iter().map(|w| w.reads).sum();
    let cases: usize = workers.iter().map(|w| w.cases.len()).sum();
    let erased = workers.iter().flat_map(|w| &w.cases).filter(|c| c.erased).count();
    let multi = workers
        .iter()
        .flat_map(|w| w.cases.iter().flat_map(|c| c.acked.iter()))
        .filter(|a| a.cmd.events().len() > 1)
        .count();
    ready_times.sort();
    verify_times.sort();
    check_times.sort();
    let in_flight: Vec<usize> = figures.iter().map(|f| f.commands_in_flight).collect();
    let rpcs: Vec<usize> = figures.iter().map(|f| f.rpcs_in_flight).collect();
    let per_kill: Vec<usize> = figures.iter().map(|f| f.acked).collect();
    let delays: Vec<u64> = figures.iter().map(|f| f.delay_ms).collect();
    eprintln!(
        "soak: ---- figures (SOAK_SEED={seed}, binary {})",
        bin().display()
    );
    eprintln!(
        "soak: {} kills under load (+{startup_kills} during a restart's recovery), {clients} clients, {:.0} s in all",
        figures.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "soak: {acked} commands acknowledged ({multi} of two events) on {cases} cases ({erased} erased), {reads} checked reads under load"
    );
    eprintln!(
        "soak: kill delays (ms after the load started): {delays:?}\nsoak: commands acknowledged per run: {per_kill:?}"
    );
    eprintln!(
        "soak: commands in flight at each kill: {in_flight:?} (total {}); RPCs in flight: {rpcs:?}",
        in_flight.iter().sum::<usize>()
    );
    eprintln!(
        "soak: unknown outcomes: {} in the log though unanswered, {} not in the log and applied once by their retry",
        resolved.applied_before, resolved.applied_now
    );
    eprintln!(
        "soak: restart to ready (Caseworker SERVING): p50 {}, max {} over {} restarts",
        ms(percentile(&ready_times, 0.5)),
        ms(ready_times.last().copied().unwrap_or_default()),
        ready_times.len()
    );
    reverified.sort();
    replayed.sort();
    let mid = |v: &[u64]| v.get(v.len() / 2).copied().unwrap_or(0);
    eprintln!(
        "soak: a start right after a kill under load ({} of them) re-verified p50 {} / max {} events and replayed p50 {} / max {} case files",
        reverified.len(),
        mid(&reverified),
        reverified.last().copied().unwrap_or(0),
        mid(&replayed),
        replayed.last().copied().unwrap_or(0)
    );
    eprintln!(
        "soak: check after restart: p50 {}, max {}; registry verify: p50 {}, max {} over {} runs",
        ms(percentile(&check_times, 0.5)),
        ms(check_times.last().copied().unwrap_or_default()),
        ms(percentile(&verify_times, 0.5)),
        ms(verify_times.last().copied().unwrap_or_default()),
        verify_times.len()
    );
    assert!(acked > 0, "the load acknowledged nothing");
    let every_case: BTreeSet<&str> = workers
        .iter()
        .flat_map(|w| w.cases.iter().map(|c| c.id.as_str()))
        .collect();
    assert_eq!(every_case.len(), cases, "case ids are distinct");
    if std::env::var_os("SOAK_KEEP").is_some() {
        eprintln!("soak: kept {}", p.root.display());
    } else {
        std::fs::remove_dir_all(&p.root).unwrap();
    }
}
