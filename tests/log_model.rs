//! Model-based test: random sequences of appends, retries, reused request
//! ids, requests larger than a chunk, bursts of concurrent requests (which
//! share group commits, so chunks) and reopens go to the real log and to a
//! small in-memory model; every answer and the final contents, read in pages
//! that start, end and run across chunk boundaries, must agree, and the log
//! must verify.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Barrier};

use proptest::prelude::*;
use proptest::sample::Index;
use registry::log::verify::verify_full;
use registry::log::{
    Actor, AppendError, AppendRequest, Appended, ExpectedVersion, Log, NewEvent, Store, StoredEvent,
    SyncMode, WriterConfig,
};

/// Stream ids that share prefixes and differ in length, to probe the keys.
const STREAM_IDS: [&str; 4] = ["case-1", "case-10", "case-1.0", "c"];

/// One step of a generated history.
#[derive(Clone, Debug)]
enum Op {
    /// A new request under a fresh id.
    Append(Shape),
    /// The earlier request `Index` picks, sent again unchanged or with
    /// another expected version (which is not part of its content).
    Retry(Index, Option<ExpectedVersion>),
    /// A new request under the id of the earlier request `Index` picks: on
    /// its stream a reuse (or a retry, if the content is the same), on
    /// another stream another request.
    Reuse(Index, Shape),
    /// Three events of 50 KiB: more than one chunk holds.
    Big(u8),
    /// Fresh requests (expected version any) sent at once from threads.
    Burst(Vec<Shape>),
    /// Shut the log down and open it again.
    Reopen,
}

/// What a generated request looks like (its id is given when it is sent).
#[derive(Clone, Debug)]
struct Shape {
    stream: u8,
    expected: ExpectedVersion,
    events: u8,
    seed: u8,
}

fn expected_version() -> impl Strategy<Value = ExpectedVersion> {
    prop_oneof![
        Just(ExpectedVersion::Any),
        Just(ExpectedVersion::NoStream),
        Just(ExpectedVersion::StreamExists),
        (0u64..5).prop_map(ExpectedVersion::Exact),
    ]
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        0..STREAM_IDS.len() as u8,
        expected_version(),
        1u8..=3,
        any::<u8>(),
    )
        .prop_map(|(stream, expected, events, seed)| Shape {
            stream,
            expected,
            events,
            seed,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => shape().prop_map(Op::Append),
        2 => (any::<Index>(), proptest::option::of(expected_version())).prop_map(|(i, e)| Op::Retry(i, e)),
        2 => (any::<Index>(), shape()).prop_map(|(i, s)| Op::Reuse(i, s)),
        1 => (0..STREAM_IDS.len() as u8).prop_map(Op::Big),
        1 => prop::collection::vec(shape(), 2..6).prop_map(Op::Burst),
        1 => Just(Op::Reopen),
    ]
}

fn build(shape: &Shape, request_id: String) -> AppendRequest {
    AppendRequest {
        stream_id: STREAM_IDS[shape.stream as usize].into(),
        expected: shape.expected,
        request_id,
        actor: Actor {
            user_id: format!("u-{}", shape.seed % 3),
            office: "BOG".into(),
        },
        events: (0..shape.events)
            .map(|p| NewEvent {
                event_type: format!("Type{}", (shape.seed as usize + p as usize) % 4),
                payload: vec![shape.seed ^ p; (shape.seed % 5 + p) as usize],
            })
            .collect(),
    }
}

fn big(stream: u8, request_id: String) -> AppendRequest {
    AppendRequest {
        stream_id: STREAM_IDS[stream as usize].into(),
        expected: ExpectedVersion::Any,
        request_id,
        actor: Actor {
            user_id: "u-big".into(),
            office: "BOG".into(),
        },
        events: (0..3u8)
            .map(|p| NewEvent {
                event_type: "Scan".into(),
                payload: vec![p; 50 * 1024],
            })
            .collect(),
    }
}

/// One event as the model expects it in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelEvent {
    stream_id: String,
    stream_version: u64,
    part: u16,
    parts: u16,
    event_type: String,
    payload: Vec<u8>,
    actor: Actor,
    request_id: String,
}

impl ModelEvent {
    fn of(e: &StoredEvent) -> ModelEvent {
        ModelEvent {
            stream_id: e.record.stream_id.clone(),
            stream_version: e.record.stream_version,
            part: e.record.part,
            parts: e.record.parts,
            event_type: e.record.event_type.clone(),
            payload: e.record.payload.clone(),
            actor: e.record.actor.clone(),
            request_id: e.record.request_id.clone(),
        }
    }
}

/// What makes two requests with one id on one stream the same request: the
/// actor and each event's type and payload (not the expected version).
fn content(req: &AppendRequest) -> (&Actor, &[NewEvent]) {
    (&req.actor, &req.events)
}

/// The log as a list of events, stream versions and accepted requests.
#[derive(Default)]
struct Model {
    events: Vec<ModelEvent>,
    streams: HashMap<String, u64>,
    /// Accepted requests by (stream, request id): their content and the
    /// answer the log gave them.
    requests: HashMap<(String, String), (AppendRequest, Appended)>,
}

/// The model's answer; `recorded_at_us` of a fresh append is taken from the log.
enum Expect {
    Fresh(Appended),
    Answer(Result<Appended, AppendError>),
}

impl Model {
    fn expect(&self, req: &AppendRequest) -> Expect {
        if req.expected == ExpectedVersion::Exact(0) {
            return Expect::Answer(Err(AppendError::Invalid {
                field: "expected_version",
                reason: "an exact version is at least 1; use NoStream".into(),
            }));
        }
        let key = (req.stream_id.clone(), req.request_id.clone());
        if let Some((original, appended)) = self.requests.get(&key) {
            return Expect::Answer(if content(original) == content(req) {
                Ok(Appended {
                    deduplicated: true,
                    ..*appended
                })
            } else {
                Err(AppendError::IdempotencyMismatch {
                    request_id: req.request_id.clone(),
                })
            });
        }
        let current = self.streams.get(&req.stream_id).copied().unwrap_or(0);
        let ok = match req.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::StreamExists => current > 0,
            ExpectedVersion::Exact(n) => current == n,
        };
        if !ok {
            return Expect::Answer(Err(AppendError::VersionConflict {
                stream_id: req.stream_id.clone(),
                expected: req.expected,
                actual: current,
            }));
        }
        let n = req.events.len() as u64;
        let first_seq = self.events.len() as u64 + 1;
        Expect::Fresh(Appended {
            first_seq,
            last_seq: first_seq + n - 1,
            first_version: current + 1,
            last_version: current + n,
            recorded_at_us: 0,
            deduplicated: false,
        })
    }

    fn accept(&mut self, req: &AppendRequest, appended: Appended) {
        for (part, e) in req.events.iter().enumerate() {
            self.events.push(ModelEvent {
                stream_id: req.stream_id.clone(),
                stream_version: appended.first_version + part as u64,
                part: part as u16,
                parts: req.events.len() as u16,
                event_type: e.event_type.clone(),
                payload: e.payload.clone(),
                actor: req.actor.clone(),
                request_id: req.request_id.clone(),
            });
        }
        self.streams.insert(req.stream_id.clone(), appended.last_version);
        self.requests.insert(
            (req.stream_id.clone(), req.request_id.clone()),
            (req.clone(), appended),
        );
    }

    /// Checks the log's answer `got` to `req` against the model, and applies it.
    fn check(
        &mut self,
        req: &AppendRequest,
        got: Result<Appended, AppendError>,
    ) -> Result<(), TestCaseError> {
        match self.expect(req) {
            Expect::Answer(want) => prop_assert_eq!(&got, &want, "{:?}", req),
            Expect::Fresh(want) => {
                let appended = got.map_err(|e| TestCaseError::fail(format!("{req:?}: {e}")))?;
                let want = Appended {
                    recorded_at_us: appended.recorded_at_us,
                    ..want
                };
                prop_assert_eq!(appended, want, "{:?}", req);
                self.accept(req, appended);
            }
        }
        Ok(())
    }
}

fn open(dir: &Path) -> Log {
    Log::open(
        dir,
        WriterConfig {
            sync: SyncMode::Fdatasync,
        },
    )
    .unwrap()
}

/// Sends `reqs` at once, one thread each; returns them with their answers
/// in the order the log appended them.
fn burst(log: &Log, reqs: Vec<AppendRequest>) -> Vec<(AppendRequest, Result<Appended, AppendError>)> {
    let barrier = Arc::new(Barrier::new(reqs.len()));
    let mut answers: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = reqs
            .into_iter()
            .map(|req| {
                let (app, barrier) = (log.appender(), barrier.clone());
                s.spawn(move || {
                    barrier.wait();
                    let got = app.append_blocking(req.clone());
                    (req, got)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    answers.sort_by_key(|(_, got)| got.as_ref().map_or(u64::MAX, |a| a.first_seq));
    answers
}

/// Reads the whole log in pages of `page` events.
fn read_all_paged(log: &Log, page: usize) -> Vec<StoredEvent> {
    let mut out: Vec<StoredEvent> = Vec::new();
    loop {
        let got = log.store().read_all(out.len() as u64 + 1, page).unwrap();
        assert!(got.len() <= page);
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

/// Every read agrees with the model: the log in pages of several sizes and
/// from every seq, each stream in pages and from every version.
fn check_reads(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    for page in [1, 2, 3, 7, 10_000] {
        let all: Vec<ModelEvent> = read_all_paged(log, page).iter().map(ModelEvent::of).collect();
        prop_assert_eq!(&all, &model.events, "pages of {}", page);
    }
    let read = log.store().read_all(1, 10_000).unwrap();
    for (i, e) in read.iter().enumerate() {
        prop_assert_eq!(e.record.seq, i as u64 + 1);
        let (_, appended) = &model.requests[&(e.record.stream_id.clone(), e.record.request_id.clone())];
        prop_assert_eq!(e.record.recorded_at_us, appended.recorded_at_us);
    }
    for from in 1..=read.len() {
        let page = log.store().read_all(from as u64, 4).unwrap();
        prop_assert_eq!(&page[..], &read[from - 1..(from + 3).min(read.len())]);
    }
    for (stream, version) in &model.streams {
        prop_assert_eq!(log.store().stream_version(stream).unwrap(), *version);
        let want: Vec<&StoredEvent> = read.iter().filter(|e| &e.record.stream_id == stream).collect();
        prop_assert_eq!(want.len() as u64, *version);
        for from in 1..=*version {
            let got = log.store().read_stream(stream, from, 2).unwrap();
            let expected: Vec<StoredEvent> = want[(from - 1) as usize..(from as usize + 1).min(want.len())]
                .iter()
                .map(|e| (*e).clone())
                .collect();
            prop_assert_eq!(got, expected, "{} from {}", stream, from);
        }
        prop_assert!(log
            .store()
            .read_stream(stream, version + 1, 10)
            .unwrap()
            .is_empty());
    }
    Ok(())
}

/// Applies `ops` to a fresh log and to the model, comparing every answer.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let mut model = Model::default();
    let mut sent: Vec<AppendRequest> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let req = match op {
            Op::Append(shape) => build(shape, format!("r{i}")),
            Op::Retry(pick, expected) if !sent.is_empty() => {
                let mut req = sent[pick.index(sent.len())].clone();
                if let Some(expected) = expected {
                    req.expected = *expected;
                }
                req
            }
            Op::Reuse(pick, shape) if !sent.is_empty() => {
                build(shape, sent[pick.index(sent.len())].request_id.clone())
            }
            Op::Big(stream) => big(*stream, format!("r{i}")),
            Op::Burst(shapes) => {
                let reqs = shapes
                    .iter()
                    .enumerate()
                    .map(|(k, shape)| AppendRequest {
                        expected: ExpectedVersion::Any,
                        ..build(shape, format!("r{i}-{k}"))
                    })
                    .collect();
                for (req, got) in burst(&log, reqs) {
                    model.check(&req, got)?;
                    sent.push(req);
                }
                prop_assert_eq!(log.store().head().unwrap().seq, model.events.len() as u64);
                continue;
            }
            Op::Reopen => {
                log.shutdown().unwrap();
                log = open(dir.path());
                prop_assert_eq!(log.store().head().unwrap().seq, model.events.len() as u64);
                continue;
            }
            Op::Retry(..) | Op::Reuse(..) => continue,
        };
        let got = log.appender().append_blocking(req.clone());
        model.check(&req, got)?;
        prop_assert_eq!(log.store().head().unwrap().seq, model.events.len() as u64);
        sent.push(req);
    }
    check_reads(&log, &model)?;
    // Stopped, the store verifies (`verify_full` is for stopped stores:
    // while open, the case-file follower writes at any moment).
    log.shutdown().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (chain, index) = verify_full(&store, &mut |_, _| {}).expect("intact");
    prop_assert_eq!(chain.events, model.events.len() as u64);
    prop_assert_eq!(index.stream_entries, model.events.len() as u64);
    prop_assert_eq!(index.request_entries, model.requests.len() as u64);
    drop(store);
    // Reopened, the log reads the same and still knows every request.
    let log = open(dir.path());
    check_reads(&log, &model)?;
    for (original, appended) in model.requests.values() {
        let again = log.appender().append_blocking(original.clone());
        prop_assert_eq!(
            again,
            Ok(Appended {
                deduplicated: true,
                ..*appended
            })
        );
    }
    prop_assert_eq!(log.store().head().unwrap().seq, model.events.len() as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_answers_and_contents_match_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}
