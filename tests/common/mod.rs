//! Shared harness of the caseworker API end-to-end tests (`tests/api_*.rs`):
//! starts the real server (`registry::server::serve_on`) on `127.0.0.1:0`
//! over a temporary data directory, connects a tonic client, and offers small
//! helpers for requests, headers and status assertions.
//!
//! Every test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use registry::api::pb;
use registry::log::SyncMode;
use registry::server::{serve_on, ServeConfig};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

pub use pb::caseworker_client::CaseworkerClient;

/// The client type every test uses.
pub type Client = CaseworkerClient<Channel>;

/// The actor every test request carries (ids and codes, never names).
pub const ACTOR_USER: &str = "u-test-0001";
pub const ACTOR_OFFICE: &str = "BOG-CENTRO";

/// A master key for tests: 64 hex digits.
pub const MASTER_KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A running server over a temporary directory.
///
/// The server runs on its own thread with its own tokio runtime, so a test
/// that panics (and drops its runtime) never waits on the server's shutdown.
pub struct TestServer {
    pub addr: SocketAddr,
    /// `<tmp>/data`: the registry's data directory.
    pub data_dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<Result<(), String>>>,
}

impl TestServer {
    /// Starts a server with `SyncMode::Flush` (fast; durability is tested elsewhere).
    pub async fn start() -> TestServer {
        TestServer::start_with(SyncMode::Flush).await
    }

    /// Starts a server with the given sync mode.
    pub async fn start_with(sync: SyncMode) -> TestServer {
        TestServer::launch(sync, None, |_, _| {}).await
    }

    /// Starts a server after `configure` adjusted its configuration (given
    /// the temporary directory, e.g. to add TLS files).
    pub async fn start_configured(
        sync: SyncMode,
        configure: impl FnOnce(&mut ServeConfig, &Path),
    ) -> TestServer {
        TestServer::launch(sync, None, configure).await
    }

    /// Starts a server (`SyncMode::Flush`) on an existing data directory,
    /// e.g. one filled by `registry simulate` with [`MASTER_KEY_HEX`]. The
    /// directory stays where it is when the server stops.
    pub async fn start_on(data_dir: &Path) -> TestServer {
        TestServer::launch(SyncMode::Flush, Some(data_dir.to_path_buf()), |_, _| {}).await
    }

    /// Starts a server (`SyncMode::Flush`) on an existing data directory
    /// after `configure` adjusted its configuration (e.g. the audit origin).
    pub async fn start_on_configured(
        data_dir: &Path,
        configure: impl FnOnce(&mut ServeConfig, &Path),
    ) -> TestServer {
        TestServer::launch(SyncMode::Flush, Some(data_dir.to_path_buf()), configure).await
    }

    async fn launch(
        sync: SyncMode,
        data_dir: Option<PathBuf>,
        configure: impl FnOnce(&mut ServeConfig, &Path),
    ) -> TestServer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = data_dir.unwrap_or_else(|| tmp.path().join("data"));
        let key_file = tmp.path().join("master.key");
        std::fs::write(&key_file, format!("{MASTER_KEY_HEX}\n")).expect("write master key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local addr");
        let access_file = tmp.path().join("access.json");
        write_test_access_file(&access_file);
        let mut config = ServeConfig::new(data_dir.clone(), addr);
        config.sync = sync;
        config.master_key_file = Some(key_file);
        config.access_file = Some(access_file);
        configure(&mut config, tmp.path());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name("test-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("server runtime");
                let result = rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                    let shutdown = async move {
                        let _ = shutdown_rx.await;
                    };
                    serve_on(config, listener, shutdown)
                        .await
                        .map_err(|e| e.to_string())
                });
                let _ = done_tx.send(result);
            })
            .expect("spawn server thread");
        TestServer {
            addr,
            data_dir,
            tmp: Some(tmp),
            shutdown: Some(shutdown_tx),
            done: Some(done_rx),
        }
    }

    /// `host:port` of the server.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// `http://host:port` of the server.
    pub fn target(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Client options for a principal of `role` ("caseworker", "supervisor",
    /// "statistician", "auditor", "admin"): the target and that role's
    /// credentials. Use with `registry::client::connect`.
    pub fn options(&self, role: &str) -> registry::client::ClientOptions {
        registry::client::ClientOptions {
            target: self.target(),
            token: Some(self.token(role)),
            ..Default::default()
        }
    }

    /// The bearer token of the test principal of `role`.
    pub fn token(&self, role: &str) -> String {
        test_token(role)
    }

    /// The access file the server reads (tokens of every test role).
    pub fn access_file(&self) -> PathBuf {
        self.tmp.as_ref().expect("temp dir").path().join("access.json")
    }

    /// A file holding the token of `role` (for the command-line tools).
    pub fn token_file(&self, role: &str) -> PathBuf {
        let dir = self.tmp.as_ref().expect("temp dir").path();
        let path = dir.join(format!("{role}.token"));
        std::fs::write(&path, format!("{}\n", self.token(role))).expect("write token file");
        path
    }

    /// A new client connection (retries while the server opens its store).
    pub async fn client(&self) -> Client {
        let endpoint = Channel::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match endpoint.connect().await {
                Ok(channel) => return CaseworkerClient::new(channel),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot connect to the test server: {e}"),
            }
        }
    }

    /// What the gRPC health check says of `service` (a full name such as
    /// `regularization.v1.Statistics`; "" for the server as a whole).
    pub async fn health(&self, service: &str) -> tonic_health::pb::health_check_response::ServingStatus {
        let channel = Channel::from_shared(self.target())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect for the health check");
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status()
    }

    /// Waits (at most 60 s) until the health check says Statistics is
    /// SERVING: statistics answer UNAVAILABLE while the projection loads in
    /// the background after a start.
    pub async fn statistics_serving(&self) {
        use tonic_health::pb::health_check_response::ServingStatus;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.health("regularization.v1.Statistics").await != ServingStatus::Serving {
            assert!(Instant::now() < deadline, "statistics not loaded within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server (graceful shutdown: the writer is stopped and the store
    /// flushed) and returns the temporary directory, still on disk. Clients
    /// should be dropped first (open connections delay a graceful shutdown).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            let result = tokio::time::timeout(Duration::from_secs(30), done)
                .await
                .expect("server stops within 30 s")
                .expect("server thread reports its end");
            result.expect("server exits cleanly");
        }
        self.tmp.take().expect("temp dir")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A port free on loopback a moment ago (for a server started as a process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Opens a stopped server's store, retrying while sled's file lock is still
/// held for a moment after the server released it.
pub fn open_store(data_dir: &Path) -> registry::log::Store {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match registry::log::Store::open(data_dir) {
            Ok(store) => return store,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot reopen the store: {e}"),
        }
    }
}

/// The roles of the test principals.
pub const ROLES: [&str; 5] = ["caseworker", "supervisor", "statistician", "auditor", "admin"];

/// The bearer token of the test principal of `role` (fixed, so free
/// functions can build requests; only its hash is in the access file).
pub fn test_token(role: &str) -> String {
    format!("rgt_test-token-of-the-{role}")
}

/// The id of the test principal of `role`: the supervisor (who may run every
/// case command) is [`ACTOR_USER`] at [`ACTOR_OFFICE`].
pub fn test_principal(role: &str) -> String {
    if role == "supervisor" {
        ACTOR_USER.to_string()
    } else {
        format!("u-test-{role}")
    }
}

/// Writes an access file with one unscoped token per role.
pub fn write_test_access_file(path: &Path) {
    use registry::auth::access_file::{token_hash, AccessFile, TokenEntry};
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let file = AccessFile {
        version: 1,
        tokens: ROLES
            .iter()
            .map(|role| TokenEntry {
                id: format!("tok-test-{role}"),
                hash: hex(&token_hash(&test_token(role))),
                principal: test_principal(role),
                role: registry::auth::Role::parse(role).unwrap(),
                office: ACTOR_OFFICE.to_string(),
                departments: Vec::new(),
                created_at: 0,
                expires_at: None,
                revoked_at: None,
            })
            .collect(),
        certificates: Vec::new(),
    };
    std::fs::write(path, serde_json::to_vec_pretty(&file).unwrap()).expect("write access file");
}

/// Wraps a message in a request carrying the supervisor's credentials.
pub fn req<T>(message: T) -> Request<T> {
    as_role("supervisor", message)
}

/// Wraps a message in a request carrying the credentials of `role`.
pub fn as_role<T>(role: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", test_token(role)).parse().unwrap(),
    );
    r
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A fresh request id, unique within the test binary run (and across servers,
/// thanks to the process id and a time component).
pub fn request_id(tag: &str) -> String {
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let id = format!("{tag}-{}-{t:x}-{n}", std::process::id());
    id.chars().take(64).collect()
}

/// A command header with a fresh request id.
pub fn header(case_id: &str, expected_version: u64, on: &str) -> Option<pb::CommandHeader> {
    Some(pb::CommandHeader {
        request_id: request_id("rq"),
        case_id: case_id.to_string(),
        expected_version,
        on: on.to_string(),
    })
}

/// The command result of a call that must succeed.
#[track_caller]
pub fn ok<T>(result: Result<Response<T>, Status>) -> T {
    match result {
        Ok(r) => r.into_inner(),
        Err(s) => panic!("expected success, got {:?}: {}", s.code(), s.message()),
    }
}

/// The status of a call that must fail with `code`.
#[track_caller]
pub fn fails<T: std::fmt::Debug>(result: Result<Response<T>, Status>, code: Code) -> Status {
    match result {
        Ok(r) => panic!("expected {code:?}, got success: {:?}", r.into_inner()),
        Err(s) => {
            assert_eq!(s.code(), code, "unexpected status: {}", s.message());
            s
        }
    }
}

/// Asserts INVALID_ARGUMENT naming `field`, in the message and in the
/// google.rpc.BadRequest details.
#[track_caller]
pub fn invalid<T: std::fmt::Debug>(result: Result<Response<T>, Status>, field: &str) -> Status {
    let s = fails(result, Code::InvalidArgument);
    assert!(
        s.message().contains(field),
        "INVALID_ARGUMENT message should name {field}: {}",
        s.message()
    );
    let bad = s
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("INVALID_ARGUMENT without BadRequest details: {}", s.message()));
    assert!(
        bad.field_violations.iter().any(|v| v.field == field),
        "BadRequest details should name {field}: {:?}",
        bad.field_violations
    );
    s
}

/// Asserts FAILED_PRECONDITION naming the state `state` (e.g. `DENIED`).
#[track_caller]
pub fn precondition<T: std::fmt::Debug>(result: Result<Response<T>, Status>, state: &str) -> Status {
    let s = fails(result, Code::FailedPrecondition);
    assert!(
        s.message().contains(&format!("in state {state}:")),
        "FAILED_PRECONDITION message should name state {state}: {}",
        s.message()
    );
    s
}

/// A person with a Venezuelan cédula (and optional extra documents).
pub fn person(
    given: &str,
    family: &str,
    birth: &str,
    documents: &[(pb::DocumentType, &str)],
) -> pb::PersonalData {
    pb::PersonalData {
        given_names: given.to_string(),
        family_names: family.to_string(),
        birth_date: birth.to_string(),
        documents: documents
            .iter()
            .map(|(t, n)| pb::IdentityDocument {
                r#type: *t as i32,
                number: n.to_string(),
            })
            .collect(),
        phone: String::new(),
        email: String::new(),
        address: String::new(),
    }
}

/// A registration request living in Bogotá (dept 11, municipality 11001).
pub fn register_request(person: pb::PersonalData, on: &str) -> pb::RegisterPersonRequest {
    pb::RegisterPersonRequest {
        header: header("", 0, on),
        person: Some(person),
        sex: pb::Sex::F as i32,
        nationality: "VEN".into(),
        department: "11".into(),
        municipality: "11001".into(),
    }
}

/// A GetCase request with a purpose.
pub fn get_case_request(case_id: &str) -> pb::GetCaseRequest {
    pb::GetCaseRequest {
        case_id: case_id.to_string(),
        purpose: "REVIEW".into(),
    }
}

/// Reads a case.
pub async fn get_case(c: &mut Client, case_id: &str) -> pb::Case {
    ok(c.get_case(req(get_case_request(case_id))).await)
}

/// A simple step request.
pub fn simple(case_id: &str, version: u64, on: &str) -> pb::SimpleStepRequest {
    pb::SimpleStepRequest {
        header: header(case_id, version, on),
    }
}

/// A non-zero biometric reference of 32 bytes.
pub fn biometric_ref() -> Vec<u8> {
    (1..=32u8).collect()
}

/// The stage name and version a case reached, to check each step against.
pub struct Tracker {
    pub case_id: String,
    pub version: u64,
    pub last_seq: u64,
}

impl Tracker {
    /// Starts from a registration result.
    #[track_caller]
    pub fn registered(r: &pb::CommandResult) -> Tracker {
        assert_eq!(r.version, 1, "a registration is version 1");
        assert_eq!(r.stage, "REGISTERED");
        assert_eq!(r.event_types, vec!["PersonRegistered".to_string()]);
        assert!(!r.deduplicated);
        assert!(r.case_id.starts_with("C-"), "case id {}", r.case_id);
        Tracker {
            case_id: r.case_id.clone(),
            version: 1,
            last_seq: r.last_seq,
        }
    }

    /// A header for the next command on `on`.
    pub fn next(&self, on: &str) -> Option<pb::CommandHeader> {
        header(&self.case_id, self.version, on)
    }

    /// Checks a result moved the case by `events` versions to `stage` with
    /// the given event types, and records its version.
    #[track_caller]
    pub fn step(&mut self, r: &pb::CommandResult, stage: &str, events: &[&str]) {
        assert_eq!(r.case_id, self.case_id);
        assert!(!r.deduplicated, "a new command is not a retry");
        assert_eq!(
            r.version,
            self.version + events.len() as u64,
            "version after {events:?}"
        );
        assert_eq!(r.stage, stage, "stage after {events:?}");
        assert_eq!(r.event_types, events, "event types");
        assert_eq!(r.last_seq - r.first_seq + 1, events.len() as u64, "seq range");
        assert!(
            r.first_seq > self.last_seq,
            "seqs grow: {} after {}",
            r.first_seq,
            self.last_seq
        );
        assert!(r.recorded_at_us > 0);
        self.version = r.version;
        self.last_seq = r.last_seq;
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The needles (and the files holding them) found under `dir`, as raw bytes,
/// also in UTF-16LE (to catch any wide-string copy).
pub fn find_plaintext(dir: &Path, needles: &[&str]) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for file in files_under(dir) {
        let bytes = std::fs::read(&file).expect("read file");
        for n in needles {
            let wide: Vec<u8> = n.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
            if contains_bytes(&bytes, n.as_bytes()) || contains_bytes(&bytes, &wide) {
                found.push((n.to_string(), file.clone()));
            }
        }
    }
    found
}

/// Registers a person holding one Venezuelan cédula, born 1988-02-10.
pub async fn register(c: &mut Client, given: &str, cedula: &str, on: &str) -> Tracker {
    let p = person(
        given,
        "PRUEBA LOPEZ",
        "1988-02-10",
        &[(pb::DocumentType::VenezuelanCedula, cedula)],
    );
    let r = ok(c.register_person(req(register_request(p, on))).await);
    Tracker::registered(&r)
}

/// Steps of the usual ETPV path, each checked against its stage and event.
impl Tracker {
    pub async fn pre_register(&mut self, c: &mut Client, on: &str) -> pb::CommandResult {
        let r = ok(c
            .pre_register(req(pb::PreRegisterRequest {
                header: self.next(on),
                channel: "ETPV".into(),
                basis: pb::EligibilityBasis::Pip as i32,
            }))
            .await);
        self.step(&r, "PRE_REGISTERED", &["PreRegistered"]);
        r
    }

    pub async fn schedule(&mut self, c: &mut Client, on: &str, appointment_on: &str) -> pb::CommandResult {
        let r = ok(c
            .schedule_biometrics(req(pb::ScheduleBiometricsRequest {
                header: self.next(on),
                appointment_on: appointment_on.into(),
                site: "BOG-01".into(),
            }))
            .await);
        self.step(&r, "BIOMETRICS_SCHEDULED", &["BiometricAppointmentScheduled"]);
        r
    }

    pub async fn capture(&mut self, c: &mut Client, on: &str) -> pb::CommandResult {
        let r = ok(c
            .record_biometric_capture(req(pb::RecordBiometricCaptureRequest {
                header: self.next(on),
                site: "BOG-01".into(),
                operator: "OP-0042".into(),
                biometric_ref: biometric_ref(),
            }))
            .await);
        self.step(&r, "UNDER_REVIEW", &["BiometricsCaptured"]);
        r
    }

    pub async fn approve(&mut self, c: &mut Client, on: &str) -> pb::CommandResult {
        let r = ok(c.approve(req(simple(&self.case_id, self.version, on))).await);
        self.step(&r, "APPROVED", &["Approved"]);
        r
    }

    pub async fn issue_permit(&mut self, c: &mut Client, on: &str, number: &str) -> pb::CommandResult {
        let r = ok(c
            .issue_permit(req(pb::IssuePermitRequest {
                header: self.next(on),
                permit_number: number.into(),
                valid_until: String::new(),
            }))
            .await);
        self.step(&r, "PERMIT_ISSUED", &["PermitIssued"]);
        r
    }

    pub async fn print(&mut self, c: &mut Client, on: &str) -> pb::CommandResult {
        let r = ok(c.print_card(req(simple(&self.case_id, self.version, on))).await);
        self.step(&r, "CARD_PRINTED", &["CardPrinted"]);
        r
    }

    pub async fn deliver(&mut self, c: &mut Client, on: &str) -> pb::CommandResult {
        let r = ok(c.deliver_card(req(simple(&self.case_id, self.version, on))).await);
        self.step(&r, "CARD_DELIVERED", &["CardDelivered"]);
        r
    }

    /// Asserts through ListCaseEvents (a read without personal data, so
    /// it records no access event) that the case is still at the tracked version.
    #[track_caller]
    pub fn unchanged<'a>(&'a self, c: &'a mut Client) -> impl std::future::Future<Output = ()> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let events = ok(c
                .list_case_events(req(pb::ListCaseEventsRequest {
                    case_id: self.case_id.clone(),
                    from_version: 0,
                    limit: 1000,
                }))
                .await)
            .events;
            let last = events.last().expect("a recorded case has events");
            assert_eq!(
                last.version, self.version,
                "the case version changed after a refused command (checked at {caller})"
            );
            assert_eq!(last.seq, self.last_seq);
        }
    }
}

/// Events a new store starts with: the genesis policy instruments.
pub fn genesis_events() -> u64 {
    registry::domain::PolicyBook::genesis().len() as u64
}

/// Registers a guardian on `on` who may apply to PEP-Tutor: a minor (born
/// March 2012, document `{cedula}M`) gets a PPT in 2021 and the guardian
/// records a GUARDIAN_OF link to them on `on` (docs/FAMILY_LINKS.md).
pub async fn register_guardian(c: &mut Client, given: &str, cedula: &str, on: &str) -> Tracker {
    let mut g = register(c, given, cedula, on).await;
    let minor = person(
        "MENOR",
        "PRUEBA LOPEZ",
        "2012-03-10",
        &[(pb::DocumentType::VenezuelanCedula, &format!("{cedula}M"))],
    );
    let mut m = Tracker::registered(&ok(c
        .register_person(req(register_request(minor, "2021-06-01")))
        .await));
    m.pre_register(c, "2021-06-02").await;
    m.schedule(c, "2021-06-03", "2021-06-10").await;
    m.capture(c, "2021-06-10").await;
    m.approve(c, "2021-07-01").await;
    m.issue_permit(c, "2021-07-02", &format!("PPT-{cedula}M")).await;
    let r = ok(c
        .record_family_link(req(pb::RecordFamilyLinkRequest {
            header: g.next(on),
            role: pb::FamilyLinkRole::GuardianOf as i32,
            other_case_id: m.case_id.clone(),
            other_expected_version: m.version,
            evidence: pb::LinkEvidence::RegistroCivilNacimiento as i32,
        }))
        .await);
    g.step(
        r.result.as_ref().expect("result"),
        "REGISTERED",
        &["FamilyLinkRecorded"],
    );
    g
}
