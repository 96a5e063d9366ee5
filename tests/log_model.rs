//! Model-based test: random sequences of appends, retries and reused request
//! ids go to the real log and to a small in-memory model; every answer and the
//! final contents must agree, and the log must verify.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::sample::Index;
use registry::log::verify::verify_full;
use registry::log::{
    Actor, AppendError, AppendRequest, Appended, ExpectedVersion, Log, NewEvent, SyncMode, WriterConfig,
};

/// Stream ids that share prefixes and differ in length, to probe the index keys.
const STREAM_IDS: [&str; 4] = ["case-1", "case-10", "case-1.0", "c"];

/// One step of a generated history.
#[derive(Clone, Debug)]
enum Op {
    /// A new request under a fresh id.
    Append(Shape),
    /// The earlier request `Index` picks, sent again unchanged.
    Retry(Index),
    /// A new request under the id of the earlier request `Index` picks.
    Reuse(Index, Shape),
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
        2 => any::<Index>().prop_map(Op::Retry),
        2 => (any::<Index>(), shape()).prop_map(|(i, s)| Op::Reuse(i, s)),
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

/// The log as a list of events, stream versions and accepted request ids.
#[derive(Default)]
struct Model {
    events: Vec<ModelEvent>,
    streams: HashMap<String, u64>,
    /// Accepted requests: their content and the answer the log gave them.
    requests: HashMap<String, (AppendRequest, Appended)>,
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
        if let Some((original, appended)) = self.requests.get(&req.request_id) {
            return Expect::Answer(if original == req {
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
        self.requests
            .insert(req.request_id.clone(), (req.clone(), appended));
    }
}

/// Applies `ops` to a fresh log and to the model, comparing every answer.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        WriterConfig {
            sync: SyncMode::Fdatasync,
        },
    )
    .unwrap();
    let app = log.appender();
    let mut model = Model::default();
    let mut sent: Vec<AppendRequest> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let req = match op {
            Op::Append(shape) => build(shape, format!("r{i}")),
            Op::Retry(pick) if !sent.is_empty() => sent[pick.index(sent.len())].clone(),
            Op::Reuse(pick, shape) if !sent.is_empty() => {
                build(shape, sent[pick.index(sent.len())].request_id.clone())
            }
            Op::Retry(_) | Op::Reuse(..) => continue,
        };
        let got = app.append_blocking(req.clone());
        match model.expect(&req) {
            Expect::Answer(want) => prop_assert_eq!(&got, &want, "op {} {:?}", i, req),
            Expect::Fresh(want) => {
                let appended = got
                    .clone()
                    .map_err(|e| TestCaseError::fail(format!("op {i}: {e}")))?;
                let want = Appended {
                    recorded_at_us: appended.recorded_at_us,
                    ..want
                };
                prop_assert_eq!(appended, want, "op {} {:?}", i, req);
                model.accept(&req, appended);
            }
        }
        prop_assert_eq!(log.store().head().unwrap().seq, model.events.len() as u64);
        sent.push(req);
    }
    let read = log.store().read_all(1, 10_000).unwrap();
    let actual: Vec<ModelEvent> = read
        .iter()
        .map(|e| ModelEvent {
            stream_id: e.record.stream_id.clone(),
            stream_version: e.record.stream_version,
            part: e.record.part,
            parts: e.record.parts,
            event_type: e.record.event_type.clone(),
            payload: e.record.payload.clone(),
            actor: e.record.actor.clone(),
            request_id: e.record.request_id.clone(),
        })
        .collect();
    prop_assert_eq!(&actual, &model.events);
    for (seq, e) in read.iter().enumerate() {
        let (_, appended) = &model.requests[&e.record.request_id];
        prop_assert_eq!(e.record.seq, seq as u64 + 1);
        prop_assert_eq!(e.record.recorded_at_us, appended.recorded_at_us);
    }
    for (stream, version) in &model.streams {
        prop_assert_eq!(log.store().stream_version(stream).unwrap(), *version);
    }
    let (chain, index) = verify_full(log.store(), &mut |_, _| {}).expect("intact");
    prop_assert_eq!(chain.events, model.events.len() as u64);
    prop_assert_eq!(index.request_entries, model.requests.len() as u64);
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
