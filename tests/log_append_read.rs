//! Appending to the event log and reading it back, through the public API on a
//! real sled directory: order, contents, the hash chain, expected versions,
//! input limits, and reopening.

use std::collections::HashMap;
use std::path::Path;

use registry::limits::{
    EVENT_PAYLOAD_BYTES_MAX, EVENT_TYPE_BYTES_MAX, READ_PAGE_EVENTS_MAX, REQUEST_EVENTS_MAX,
    REQUEST_ID_BYTES_MAX, REQUEST_PAYLOAD_BYTES_MAX, STREAM_EVENTS_MAX, STREAM_ID_BYTES_MAX,
};
use registry::log::record::chain_hash;
use registry::log::verify::{verify_full, ChainReport, IndexReport};
use registry::log::{
    Actor, AppendError, AppendRequest, Appended, ExpectedVersion, Head, Log, NewEvent, Store, StoredEvent,
    SyncMode, WriterConfig,
};

#[path = "support/chunks.rs"]
mod chunks;
#[path = "support/retry.rs"]
mod retry;
use retry::retry_while_locked;

fn open(dir: &Path) -> Log {
    let config = WriterConfig {
        sync: SyncMode::Fdatasync,
    };
    retry_while_locked(|| Log::open(dir, config)).expect("open log")
}

/// `verify_full` of the stopped store. While a log is open, its case-file
/// follower writes case files and their position at any moment, and
/// `verify_full` (for stopped stores) does not read the two consistently.
fn verify_stopped(log: Log, dir: &Path) -> (ChainReport, IndexReport) {
    log.shutdown().unwrap();
    let store = retry_while_locked(|| Store::open(dir)).unwrap();
    verify_full(&store, &mut |_, _| {}).expect("intact")
}

fn actor(user_id: &str, office: &str) -> Actor {
    Actor {
        user_id: user_id.into(),
        office: office.into(),
    }
}

fn event(event_type: &str, payload: &[u8]) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        payload: payload.to_vec(),
    }
}

fn request(
    stream_id: &str,
    expected: ExpectedVersion,
    request_id: &str,
    events: Vec<NewEvent>,
) -> AppendRequest {
    AppendRequest {
        stream_id: stream_id.into(),
        expected,
        request_id: request_id.into(),
        actor: actor("u-17", "BOG"),
        events,
    }
}

fn one(stream_id: &str, expected: ExpectedVersion, request_id: &str) -> AppendRequest {
    request(stream_id, expected, request_id, vec![event("CaseOpened", b"{}")])
}

/// Every event of the log, read in pages of `page` events.
fn read_all_paged(log: &Log, page: usize) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    loop {
        let next = out.len() as u64 + 1;
        let got = log.store().read_all(next, page).expect("read_all");
        assert!(got.len() <= page, "a page holds at most {page} events");
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

/// Every event of one stream, read in pages of `page` events.
fn read_stream_paged(log: &Log, stream_id: &str, page: usize) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    loop {
        let next = out.len() as u64 + 1;
        let got = log
            .store()
            .read_stream(stream_id, next, page)
            .expect("read_stream");
        assert!(got.len() <= page);
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

/// What the test appended, to compare with what is read back.
struct Sent {
    req: AppendRequest,
    appended: Appended,
}

/// Appends 40 requests of 1-3 events over 3 streams with varied actors and payloads.
fn append_varied(log: &Log) -> Vec<Sent> {
    let streams = ["case-BOG-0001", "case:MDE.0002", "case_CLO-3"];
    let actors = [
        actor("u-17", "BOG"),
        actor("u-301", "MDE"),
        actor("svc.import", "HQ"),
    ];
    let mut sent = Vec::new();
    for i in 0..40usize {
        let events = (0..1 + i % 3)
            .map(|p| {
                let payload: Vec<u8> = (0..(i * 37 + p * 11) % 300).map(|b| (b * 7 + i) as u8).collect();
                event(&format!("Type{}", (i + p) % 5), &payload)
            })
            .collect();
        let mut req = request(streams[i % 3], ExpectedVersion::Any, &format!("req-{i}"), events);
        req.actor = actors[i % actors.len()].clone();
        let appended = log.appender().append_blocking(req.clone()).expect("append");
        sent.push(Sent { req, appended });
    }
    sent
}

#[test]
fn appended_events_read_back_in_order_with_identical_contents() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let sent = append_varied(&log);
    let all = read_all_paged(&log, 7);
    let total: usize = sent.iter().map(|s| s.req.events.len()).sum();
    assert_eq!(all.len(), total);

    let mut next_seq = 1u64;
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for s in &sent {
        let n = s.req.events.len() as u64;
        let version = versions.entry(&s.req.stream_id).or_insert(0);
        let expected = Appended {
            first_seq: next_seq,
            last_seq: next_seq + n - 1,
            first_version: *version + 1,
            last_version: *version + n,
            recorded_at_us: s.appended.recorded_at_us,
            deduplicated: false,
        };
        assert_eq!(s.appended, expected, "{}", s.req.request_id);
        for (part, ev) in s.req.events.iter().enumerate() {
            let r = &all[(next_seq - 1) as usize].record;
            assert_eq!(r.seq, next_seq);
            assert_eq!(r.stream_id, s.req.stream_id);
            assert_eq!(r.stream_version, *version + 1 + part as u64);
            assert_eq!((r.part, r.parts), (part as u16, n as u16));
            assert_eq!(r.event_type, ev.event_type);
            assert_eq!(r.payload, ev.payload, "payload of seq {next_seq} differs");
            assert_eq!(r.actor, s.req.actor);
            assert_eq!(r.request_id, s.req.request_id);
            assert_eq!(r.recorded_at_us, s.appended.recorded_at_us);
            assert_eq!(
                log.store().get(next_seq).unwrap().as_ref(),
                Some(&all[(next_seq - 1) as usize])
            );
            next_seq += 1;
        }
        *version += n;
        let entry = log
            .store()
            .request_entry(&s.req.stream_id, &s.req.request_id)
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                entry.first_seq,
                entry.count,
                entry.first_version,
                entry.recorded_at_us
            ),
            (
                expected.first_seq,
                n as u16,
                expected.first_version,
                expected.recorded_at_us
            )
        );
    }

    for (stream_id, version) in &versions {
        let events = read_stream_paged(&log, stream_id, 3);
        let from_log: Vec<&StoredEvent> = all.iter().filter(|e| e.record.stream_id == *stream_id).collect();
        assert_eq!(events.iter().collect::<Vec<_>>(), from_log);
        let numbers: Vec<u64> = events.iter().map(|e| e.record.stream_version).collect();
        assert_eq!(numbers, (1..=*version).collect::<Vec<_>>());
        assert_eq!(log.store().stream_version(stream_id).unwrap(), *version);
        let tail = log.store().read_stream(stream_id, *version, 10).unwrap();
        assert_eq!(tail.len(), 1);
        assert!(log
            .store()
            .read_stream(stream_id, *version + 1, 10)
            .unwrap()
            .is_empty());
    }
    assert_eq!(log.store().stream_version("case-unknown").unwrap(), 0);
    assert!(log.store().read_stream("case-unknown", 1, 10).unwrap().is_empty());
    assert_eq!(log.store().get(0).unwrap(), None);
    assert_eq!(log.store().get(total as u64 + 1).unwrap(), None);
    assert!(log.store().read_all(total as u64 + 1, 10).unwrap().is_empty());
    assert_eq!(log.store().read_all(0, 3).unwrap(), all[..3].to_vec());
}

#[test]
fn records_chain_by_hash_and_recorded_at_never_decreases() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_varied(&log);
    let all = read_all_paged(&log, 5);
    let mut prev = Head::EMPTY;
    for ev in &all {
        assert_eq!(ev.record.seq, prev.seq + 1);
        assert_eq!(
            ev.record.prev_hash, prev.hash,
            "prev_hash of seq {}",
            ev.record.seq
        );
        assert_eq!(
            ev.hash,
            chain_hash(&prev.hash, &ev.record.encode()),
            "hash of seq {}",
            ev.record.seq
        );
        prev = Head {
            seq: ev.record.seq,
            hash: ev.hash,
        };
    }
    for pair in all.windows(2) {
        assert!(pair[1].record.recorded_at_us >= pair[0].record.recorded_at_us);
    }
    assert_eq!(all[0].record.prev_hash, [0u8; 32]);
    assert_eq!(log.store().head().unwrap(), prev);
    assert_eq!(*log.subscribe_head().borrow(), prev);
}

#[test]
fn multi_event_request_is_appended_atomically_with_contiguous_seqs_and_parts() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    app.append_blocking(one("case-a", ExpectedVersion::NoStream, "r-a1"))
        .unwrap();
    app.append_blocking(one("case-b", ExpectedVersion::NoStream, "r-b1"))
        .unwrap();
    let events: Vec<NewEvent> = (0..5)
        .map(|i| event(&format!("Step{i}"), &[i as u8; 9]))
        .collect();
    let got = app
        .append_blocking(request(
            "case-b",
            ExpectedVersion::Exact(1),
            "r-b2",
            events.clone(),
        ))
        .unwrap();
    assert_eq!((got.first_seq, got.last_seq), (3, 7));
    assert_eq!((got.first_version, got.last_version), (2, 6));
    assert!(!got.deduplicated);
    let read = log.store().read_all(3, 100).unwrap();
    assert_eq!(read.len(), 5);
    for (i, ev) in read.iter().enumerate() {
        let r = &ev.record;
        assert_eq!(
            (r.seq, r.stream_version, r.part, r.parts),
            (3 + i as u64, 2 + i as u64, i as u16, 5)
        );
        assert_eq!((r.request_id.as_str(), r.stream_id.as_str()), ("r-b2", "case-b"));
        assert_eq!(
            (&r.event_type, &r.payload),
            (&events[i].event_type, &events[i].payload)
        );
        assert_eq!(r.recorded_at_us, got.recorded_at_us);
    }
    let after = app
        .append_blocking(one("case-a", ExpectedVersion::Exact(1), "r-a2"))
        .unwrap();
    assert_eq!((after.first_seq, after.first_version), (8, 2));
    let entry = log.store().request_entry("case-b", "r-b2").unwrap().unwrap();
    assert_eq!((entry.first_seq, entry.count, entry.first_version), (3, 5, 2));
    // Request ids belong to their stream.
    assert_eq!(log.store().request_entry("case-a", "r-b2").unwrap(), None);
}

/// Asserts that `req` is refused with `want` and that nothing moved.
fn assert_conflict(log: &Log, req: AppendRequest, actual: u64) {
    let head = log.store().head().unwrap();
    let want = AppendError::VersionConflict {
        stream_id: req.stream_id.clone(),
        expected: req.expected,
        actual,
    };
    assert_eq!(log.appender().append_blocking(req.clone()), Err(want));
    assert_eq!(log.store().head().unwrap(), head);
    assert_eq!(log.store().stream_version(&req.stream_id).unwrap(), actual);
    assert_eq!(
        log.store()
            .request_entry(&req.stream_id, &req.request_id)
            .unwrap(),
        None
    );
}

#[test]
fn expected_version_any_no_stream_stream_exists_and_exact_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    let first = app
        .append_blocking(one("case-1", ExpectedVersion::Any, "r1"))
        .unwrap();
    assert_eq!((first.first_version, first.last_version), (1, 1));
    let second = app
        .append_blocking(one("case-1", ExpectedVersion::Any, "r2"))
        .unwrap();
    assert_eq!((second.first_version, second.first_seq), (2, 2));
    app.append_blocking(one("case-1", ExpectedVersion::StreamExists, "r3"))
        .unwrap();
    assert_conflict(&log, one("case-1", ExpectedVersion::NoStream, "r4"), 3);
    assert_conflict(&log, one("case-2", ExpectedVersion::StreamExists, "r5"), 0);
    assert_conflict(&log, one("case-2", ExpectedVersion::Exact(1), "r6"), 0);
    assert_conflict(&log, one("case-1", ExpectedVersion::Exact(2), "r7"), 3);
    assert_conflict(&log, one("case-1", ExpectedVersion::Exact(4), "r8"), 3);
    let exact = app
        .append_blocking(one("case-1", ExpectedVersion::Exact(3), "r9"))
        .unwrap();
    assert_eq!((exact.first_seq, exact.first_version), (4, 4));
    let created = app
        .append_blocking(one("case-2", ExpectedVersion::NoStream, "r10"))
        .unwrap();
    assert_eq!((created.first_seq, created.first_version), (5, 1));
    assert_eq!(log.store().stream_version("case-1").unwrap(), 4);
    assert_eq!(log.store().stream_version("case-2").unwrap(), 1);
}

#[test]
fn refused_request_leaves_its_request_id_free_for_a_corrected_retry() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    app.append_blocking(one("case-1", ExpectedVersion::NoStream, "r1"))
        .unwrap();
    assert_conflict(&log, one("case-1", ExpectedVersion::Exact(5), "r2"), 1);
    let fixed = app
        .append_blocking(one("case-1", ExpectedVersion::Exact(1), "r2"))
        .unwrap();
    assert_eq!(
        (fixed.first_seq, fixed.first_version, fixed.deduplicated),
        (2, 2, false)
    );
}

fn invalid_field(err: &AppendError) -> &'static str {
    match err {
        AppendError::Invalid { field, reason } => {
            assert!(!reason.is_empty());
            field
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn too_large(field: &'static str, limit: usize) -> AppendError {
    AppendError::TooLarge { field, limit }
}

#[test]
fn invalid_requests_are_refused_with_the_specific_error_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    app.append_blocking(one("case-1", ExpectedVersion::Any, "r0"))
        .unwrap();
    let head = log.store().head().unwrap();
    let base = || one("case-1", ExpectedVersion::Any, "r-bad");
    let with = |f: &dyn Fn(&mut AppendRequest)| {
        let mut r = base();
        f(&mut r);
        r
    };
    let big = |n: usize| event("Big", &vec![7u8; n]);
    let invalid: Vec<(AppendRequest, &str)> = vec![
        (with(&|r| r.stream_id = String::new()), "stream_id"),
        (with(&|r| r.stream_id = "case/1".into()), "stream_id"),
        (with(&|r| r.stream_id = "case 1".into()), "stream_id"),
        (with(&|r| r.stream_id = "caso-ñ".into()), "stream_id"),
        (with(&|r| r.request_id = String::new()), "request_id"),
        (with(&|r| r.request_id = "r bad".into()), "request_id"),
        (with(&|r| r.actor.user_id = String::new()), "actor.user_id"),
        (with(&|r| r.actor.office = "B O G".into()), "actor.office"),
        (with(&|r| r.events.clear()), "events"),
        (with(&|r| r.events[0].event_type = String::new()), "event_type"),
        (
            with(&|r| r.expected = ExpectedVersion::Exact(0)),
            "expected_version",
        ),
    ];
    for (req, field) in invalid {
        let err = app.append_blocking(req.clone()).unwrap_err();
        assert_eq!(invalid_field(&err), field, "{req:?}");
    }
    let oversize: Vec<(AppendRequest, AppendError)> = vec![
        (
            with(&|r| r.stream_id = "c".repeat(STREAM_ID_BYTES_MAX + 1)),
            too_large("stream_id", STREAM_ID_BYTES_MAX),
        ),
        (
            with(&|r| r.request_id = "r".repeat(REQUEST_ID_BYTES_MAX + 1)),
            too_large("request_id", REQUEST_ID_BYTES_MAX),
        ),
        (
            with(&|r| r.events[0].event_type = "T".repeat(EVENT_TYPE_BYTES_MAX + 1)),
            too_large("event_type", EVENT_TYPE_BYTES_MAX),
        ),
        (
            with(&|r| r.events = vec![big(EVENT_PAYLOAD_BYTES_MAX + 1)]),
            too_large("payload", EVENT_PAYLOAD_BYTES_MAX),
        ),
        (
            with(&|r| r.events = vec![big(1); REQUEST_EVENTS_MAX + 1]),
            too_large("events", REQUEST_EVENTS_MAX),
        ),
        (
            with(&|r| r.events = vec![big(60 * 1024); 5]),
            too_large("events", REQUEST_PAYLOAD_BYTES_MAX),
        ),
    ];
    for (req, want) in oversize {
        assert_eq!(app.append_blocking(req.clone()), Err(want.clone()));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(app.append(req)), Err(want));
    }
    assert_eq!(log.store().head().unwrap(), head);
    assert_eq!(log.store().stream_version("case-1").unwrap(), 1);
    assert_eq!(log.store().request_entry("case-1", "r-bad").unwrap(), None);
    assert_eq!(log.store().read_all(1, 100).unwrap().len(), 1);
}

#[test]
fn limits_are_inclusive_at_their_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    let stream_id = "c".repeat(STREAM_ID_BYTES_MAX);
    let mut req = request(
        &stream_id,
        ExpectedVersion::NoStream,
        &"r".repeat(REQUEST_ID_BYTES_MAX),
        vec![event(
            &"T".repeat(EVENT_TYPE_BYTES_MAX),
            &vec![0xA5; EVENT_PAYLOAD_BYTES_MAX],
        )],
    );
    req.actor = actor(&"u".repeat(64), &"o".repeat(64));
    let got = app.append_blocking(req.clone()).unwrap();
    assert_eq!((got.first_seq, got.last_seq), (1, 1));
    let read = log.store().get(1).unwrap().unwrap().record;
    assert_eq!(read.payload, req.events[0].payload);
    assert_eq!(read.stream_id, stream_id);
    let per_event = REQUEST_PAYLOAD_BYTES_MAX / REQUEST_EVENTS_MAX;
    let full = request(
        &stream_id,
        ExpectedVersion::Exact(1),
        "r-full",
        vec![event("Part", &vec![1u8; per_event]); REQUEST_EVENTS_MAX],
    );
    let got = app.append_blocking(full).unwrap();
    assert_eq!((got.first_seq, got.last_seq, got.last_version), (2, 17, 17));
    assert_eq!(read_stream_paged(&log, &stream_id, 4).len(), 17);
    drop(app);
    verify_stopped(log, dir.path());
}

#[test]
fn reopening_after_shutdown_keeps_everything_and_appends_continue_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let sent = append_varied(&log);
    let before = read_all_paged(&log, 1000);
    let head = log.store().head().unwrap();
    log.shutdown().unwrap();

    let log = open(dir.path());
    assert_eq!(log.store().head().unwrap(), head);
    assert_eq!(log.store().verified().unwrap(), head);
    assert_eq!(read_all_paged(&log, 9), before);
    let retry = log.appender().append_blocking(sent[4].req.clone()).unwrap();
    assert_eq!(
        retry,
        Appended {
            deduplicated: true,
            ..sent[4].appended
        }
    );
    let next = log
        .appender()
        .append_blocking(one("case-BOG-0001", ExpectedVersion::Any, "after-reopen"))
        .unwrap();
    assert_eq!(next.first_seq, head.seq + 1);
    assert_eq!(next.first_version, 15);
    assert!(next.recorded_at_us >= before.last().unwrap().record.recorded_at_us);
    let ev = log.store().get(next.first_seq).unwrap().unwrap();
    assert_eq!(ev.record.prev_hash, head.hash);
    drop(log);

    let log = open(dir.path());
    assert_eq!(log.store().head().unwrap().seq, head.seq + 1);
    let (chain, index) = verify_stopped(log, dir.path());
    assert_eq!(chain.events, head.seq + 1);
    assert_eq!(index.request_entries, sent.len() as u64 + 1);
}

#[test]
fn verify_full_accepts_an_intact_log_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let (chain, index) = verify_full(log.store(), &mut |_, _| {}).expect("empty log is intact");
    assert_eq!((chain.events, chain.head), (0, Head::EMPTY));
    assert_eq!(
        (index.case_files, index.stream_entries, index.request_entries),
        (0, 0, 0)
    );
    let sent = append_varied(&log);
    let total: u64 = sent.iter().map(|s| s.req.events.len() as u64).sum();
    let head = log.store().head().unwrap();
    // Stopped, every case file is written: one per stream.
    let (chain, index) = verify_stopped(log, dir.path());
    assert_eq!((chain.events, chain.head), (total, head));
    assert_eq!(chain.head.seq, total);
    assert_eq!(
        (index.case_files, index.stream_entries, index.request_entries),
        (3, total, sent.len() as u64)
    );
}

/// Appends `requests` requests of `events` one-byte events to `stream`
/// from 8 threads.
fn fill(log: &Log, stream: &str, requests: usize, events: usize) {
    std::thread::scope(|s| {
        for t in 0..8 {
            let app = log.appender();
            s.spawn(move || {
                for i in (t..requests).step_by(8) {
                    let events = vec![event("Noted", b"x"); events];
                    let req = request(stream, ExpectedVersion::Any, &format!("{stream}-{i}"), events);
                    app.append_blocking(req).unwrap();
                }
            });
        }
    });
}

#[test]
fn reads_return_at_most_one_page_of_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // A stream holds at most READ_PAGE_EVENTS_MAX events: the log's page
    // limit is reached over two streams.
    assert_eq!(STREAM_EVENTS_MAX, READ_PAGE_EVENTS_MAX);
    let requests = READ_PAGE_EVENTS_MAX / REQUEST_EVENTS_MAX;
    fill(&log, "case-big", requests, REQUEST_EVENTS_MAX);
    fill(&log, "case-more", 1, REQUEST_EVENTS_MAX);
    let total = ((requests + 1) * REQUEST_EVENTS_MAX) as u64;
    assert_eq!(log.store().head().unwrap().seq, total);
    let page = log.store().read_all(1, usize::MAX).unwrap();
    assert_eq!(page.len(), READ_PAGE_EVENTS_MAX);
    assert_eq!(page.last().unwrap().record.seq, READ_PAGE_EVENTS_MAX as u64);
    let rest = log
        .store()
        .read_all(READ_PAGE_EVENTS_MAX as u64 + 1, usize::MAX)
        .unwrap();
    assert_eq!(rest.len() as u64, total - READ_PAGE_EVENTS_MAX as u64);
    // A full stream is one page.
    let stream = log.store().read_stream("case-big", 1, usize::MAX).unwrap();
    assert_eq!(stream.len(), READ_PAGE_EVENTS_MAX);
    assert_eq!(
        stream.last().unwrap().record.stream_version,
        READ_PAGE_EVENTS_MAX as u64
    );
    let versions: Vec<u64> = stream.iter().map(|e| e.record.stream_version).collect();
    assert_eq!(versions, (1..=READ_PAGE_EVENTS_MAX as u64).collect::<Vec<_>>());
    let tail = log.store().read_stream("case-big", 9_990, usize::MAX).unwrap();
    assert_eq!(tail.len(), 11);
    assert_eq!(
        log.store().stream_version("case-big").unwrap(),
        READ_PAGE_EVENTS_MAX as u64
    );
}

#[test]
fn a_stream_refuses_events_past_its_limit_and_the_refusal_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    let requests = (STREAM_EVENTS_MAX - 1) / REQUEST_EVENTS_MAX;
    fill(&log, "case-full", requests, REQUEST_EVENTS_MAX);
    let last = STREAM_EVENTS_MAX - 1 - requests * REQUEST_EVENTS_MAX;
    let req = request(
        "case-full",
        ExpectedVersion::Exact((requests * REQUEST_EVENTS_MAX) as u64),
        "case-full-last",
        vec![event("Noted", b"x"); last],
    );
    app.append_blocking(req).unwrap();
    assert_eq!(
        log.store().stream_version("case-full").unwrap(),
        STREAM_EVENTS_MAX as u64 - 1
    );
    let full = AppendError::StreamFull {
        stream_id: "case-full".into(),
        limit: STREAM_EVENTS_MAX,
    };
    let head = log.store().head().unwrap();
    // Two events where one is left: refused whole.
    let two = request(
        "case-full",
        ExpectedVersion::Any,
        "r-two",
        vec![event("Noted", b"x"); 2],
    );
    assert_eq!(app.append_blocking(two), Err(full.clone()));
    assert_eq!(log.store().head().unwrap(), head);
    assert_eq!(log.store().request_entry("case-full", "r-two").unwrap(), None);
    // The limit is inclusive.
    let accepted = app
        .append_blocking(one("case-full", ExpectedVersion::Any, "r-one"))
        .unwrap();
    assert_eq!(accepted.last_version, STREAM_EVENTS_MAX as u64);
    let head = log.store().head().unwrap();
    assert_eq!(
        app.append_blocking(one_more("case-full", "r-more")),
        Err(full.clone())
    );
    // A retry of an accepted request still gets its answer; other streams go on.
    assert_eq!(
        app.append_blocking(one("case-full", ExpectedVersion::Any, "r-one"))
            .unwrap(),
        Appended {
            deduplicated: true,
            ..accepted
        }
    );
    assert_eq!(log.store().head().unwrap(), head);
    let other = app
        .append_blocking(one("case-other", ExpectedVersion::NoStream, "r-more"))
        .unwrap();
    assert_eq!((other.first_seq, other.first_version), (head.seq + 1, 1));
    assert_eq!(
        log.store().stream_version("case-full").unwrap(),
        STREAM_EVENTS_MAX as u64
    );
    drop(app);
    log.shutdown().unwrap();
    // The limit holds across a restart (the case file knows the version).
    let log = open(dir.path());
    assert_eq!(
        log.appender().append_blocking(one_more("case-full", "r-after")),
        Err(full)
    );
}

fn one_more(stream_id: &str, request_id: &str) -> AppendRequest {
    one(stream_id, ExpectedVersion::Any, request_id)
}

/// Every event of the log, read from each seq in pages of `page`.
fn assert_every_read_agrees(log: &Log, all: &[StoredEvent]) {
    let total = all.len();
    for page in [1, 2, 3, 5, 8, 64] {
        assert_eq!(read_all_paged(log, page), all, "pages of {page}");
    }
    for from in 1..=total {
        let got = log.store().read_all(from as u64, 5).unwrap();
        assert_eq!(got, all[from - 1..(from + 4).min(total)], "read_all from {from}");
    }
    let mut streams: Vec<&str> = all.iter().map(|e| e.record.stream_id.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    for stream in streams {
        let want: Vec<StoredEvent> = all
            .iter()
            .filter(|e| e.record.stream_id == stream)
            .cloned()
            .collect();
        for page in [1, 2, 3, 7] {
            assert_eq!(
                read_stream_paged(log, stream, page),
                want,
                "{stream} in pages of {page}"
            );
        }
        for from in 1..=want.len() {
            let got = log.store().read_stream(stream, from as u64, 3).unwrap();
            assert_eq!(
                got,
                want[from - 1..(from + 2).min(want.len())],
                "{stream} from {from}"
            );
        }
    }
}

/// Group commits are stored as chunks of records, and a commit larger than a
/// chunk spans several: pages of the global log and of a stream that start,
/// end or run across chunk boundaries read exactly what was appended, before
/// and after a reopen.
#[test]
fn reads_across_chunk_boundaries_return_every_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    append_varied(&log);
    // 4 events of 60 KiB: more than a chunk holds.
    let big = log
        .appender()
        .append_blocking(request(
            "case-BOG-0001",
            ExpectedVersion::Any,
            "req-big",
            (0..4u8).map(|p| event("Scan", &vec![p; 60 * 1024])).collect(),
        ))
        .unwrap();
    // Requests sent together share group commits, so chunks of several requests.
    fill(&log, "case:MDE.0002", 24, 3);
    append_varied_again(&log);
    let all = read_all_paged(&log, 1000);
    assert_eq!(all.len() as u64, log.store().head().unwrap().seq);
    assert_every_read_agrees(&log, &all);
    log.shutdown().unwrap();

    let db = retry_while_locked(|| registry::log::store::sled_config(dir.path()).open()).unwrap();
    let layout = chunks::chunks(&db);
    drop(db);
    let firsts: Vec<u64> = layout.iter().map(|(first, _)| *first).collect();
    assert!(firsts.contains(&big.first_seq), "{firsts:?}");
    assert!(
        firsts.iter().any(|&f| f > big.first_seq && f <= big.last_seq),
        "the big request spans two chunks: {firsts:?}"
    );
    assert!(layout.iter().any(|(_, entries)| entries.len() >= 3));
    let log = open(dir.path());
    assert_eq!(read_all_paged(&log, 1000), all);
    assert_every_read_agrees(&log, &all);
}

/// Another 40 requests like [`append_varied`], with other request ids.
fn append_varied_again(log: &Log) {
    for i in 0..40usize {
        let stream = ["case-BOG-0001", "case:MDE.0002", "case_CLO-3"][i % 3];
        let events = (0..1 + i % 3).map(|p| event("Later", &[p as u8; 17])).collect();
        let req = request(stream, ExpectedVersion::Any, &format!("again-{i}"), events);
        log.appender().append_blocking(req).unwrap();
    }
}

fn conf_segment_size(dir: &Path) -> String {
    let conf = std::fs::read(dir.join("conf")).unwrap();
    String::from_utf8_lossy(&conf)
        .lines()
        .find(|l| l.starts_with("segment_size: "))
        .expect("sled's conf names the segment size")
        .to_string()
}

/// New stores use 8 MiB sled segments (sled 0.34's first stabilize after an
/// open is quadratic in the number of segments); a store created with sled's
/// default 512 KiB keeps it, since sled refuses to open it with another.
#[test]
fn new_stores_use_large_segments_and_existing_stores_keep_theirs() {
    let tmp = tempfile::tempdir().unwrap();
    let new = tmp.path().join("new");
    let log = open(&new);
    append_one(&log, "case-1", "req-1");
    log.shutdown().unwrap();
    assert_eq!(conf_segment_size(&new), "segment_size: 8388608");

    let old = tmp.path().join("old");
    drop(sled::Config::new().path(&old).open().unwrap());
    assert_eq!(conf_segment_size(&old), "segment_size: 524288");
    let log = open(&old);
    append_one(&log, "case-1", "req-1");
    assert_eq!(log.store().head().unwrap().seq, 1);
    log.shutdown().unwrap();
    assert_eq!(conf_segment_size(&old), "segment_size: 524288");
    let log = open(&old);
    assert_eq!(log.store().read_all(1, 10).unwrap().len(), 1);
}

fn append_one(log: &Log, stream: &str, request: &str) {
    log.appender()
        .append_blocking(AppendRequest {
            stream_id: stream.into(),
            expected: ExpectedVersion::Any,
            request_id: request.into(),
            actor: Actor {
                user_id: "u-1".into(),
                office: "BOG".into(),
            },
            events: vec![NewEvent {
                event_type: "CaseNoted".into(),
                payload: b"sealed".to_vec(),
            }],
        })
        .unwrap();
}

/// One request on two streams (a family link's two cases): written in one
/// commit, each stream under its own expected version, or not at all; a
/// retry gets both original answers; a request id one stream already holds
/// for another request refuses both; more than two streams or a stream twice
/// is refused before anything is written.
#[test]
fn a_two_stream_append_is_all_or_none_and_retried_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let app = log.appender();
    app.append_blocking(one("case-a", ExpectedVersion::NoStream, "a1"))
        .unwrap();
    app.append_blocking(one("case-b", ExpectedVersion::NoStream, "b1"))
        .unwrap();
    let head = log.store().head().unwrap().seq;
    let pair = |expected_b: u64, rid: &str| {
        vec![
            request(
                "case-a",
                ExpectedVersion::Exact(1),
                rid,
                vec![event("Linked", b"a")],
            ),
            request(
                "case-b",
                ExpectedVersion::Exact(expected_b),
                rid,
                vec![event("Linked", b"b"), event("Noted", b"b2")],
            ),
        ]
    };
    // The second stream's version is wrong: neither stream changes.
    match app.append_many_blocking(pair(7, "link-1")) {
        Err(AppendError::VersionConflict {
            stream_id, actual, ..
        }) => assert_eq!((stream_id.as_str(), actual), ("case-b", 1)),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    assert_eq!(log.store().head().unwrap().seq, head);
    assert_eq!(log.store().stream_version("case-a").unwrap(), 1);
    assert!(log.store().request_entry("case-a", "link-1").unwrap().is_none());

    // Accepted: contiguous seqs, one commit time, each stream's versions.
    let done = app.append_many_blocking(pair(1, "link-1")).unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!((done[0].first_seq, done[0].last_version), (head + 1, 2));
    assert_eq!(
        (done[1].first_seq, done[1].last_seq, done[1].last_version),
        (head + 2, head + 3, 3)
    );
    assert_eq!(done[0].recorded_at_us, done[1].recorded_at_us);
    // A retry (the versions have moved on) gets the original answers.
    let again = app.append_many_blocking(pair(1, "link-1")).unwrap();
    assert!(again.iter().all(|a| a.deduplicated));
    assert_eq!(
        (again[0].first_seq, again[1].first_seq),
        (done[0].first_seq, done[1].first_seq)
    );
    // Racing copies in one batch: one is written, the others are retries.
    let copies: Vec<_> = (0..4)
        .map(|_| {
            let app = log.appender();
            let reqs = vec![
                request(
                    "case-a",
                    ExpectedVersion::Exact(2),
                    "link-2",
                    vec![event("Linked", b"x")],
                ),
                request(
                    "case-c",
                    ExpectedVersion::NoStream,
                    "link-2",
                    vec![event("Linked", b"y")],
                ),
            ];
            std::thread::spawn(move || app.append_many_blocking(reqs).unwrap())
        })
        .collect();
    let answers: Vec<Vec<Appended>> = copies.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(answers.iter().filter(|a| !a[0].deduplicated).count(), 1);
    assert!(answers.iter().all(|a| a[0].first_seq == answers[0][0].first_seq));
    assert_eq!(log.store().stream_version("case-a").unwrap(), 3);
    // The id one stream holds for another request refuses both parts.
    let head = log.store().head().unwrap().seq;
    let reused = vec![
        request(
            "case-a",
            ExpectedVersion::Exact(3),
            "a1",
            vec![event("Linked", b"z")],
        ),
        request(
            "case-d",
            ExpectedVersion::NoStream,
            "a1",
            vec![event("Linked", b"z")],
        ),
    ];
    assert!(matches!(
        app.append_many_blocking(reused),
        Err(AppendError::IdempotencyMismatch { .. })
    ));
    // Shape: at most two streams, distinct, one request id.
    let three = vec![
        one("x1", ExpectedVersion::Any, "r"),
        one("x2", ExpectedVersion::Any, "r"),
        one("x3", ExpectedVersion::Any, "r"),
    ];
    assert!(matches!(
        app.append_many_blocking(three),
        Err(AppendError::TooLarge { field: "streams", .. })
    ));
    let twice = vec![
        one("x1", ExpectedVersion::Any, "r"),
        one("x1", ExpectedVersion::Any, "r"),
    ];
    assert!(matches!(
        app.append_many_blocking(twice),
        Err(AppendError::Invalid {
            field: "stream_id",
            ..
        })
    ));
    let two_ids = vec![
        one("x1", ExpectedVersion::Any, "r"),
        one("x2", ExpectedVersion::Any, "s"),
    ];
    assert!(matches!(
        app.append_many_blocking(two_ids),
        Err(AppendError::Invalid {
            field: "request_id",
            ..
        })
    ));
    assert_eq!(log.store().head().unwrap().seq, head);
    drop(app);
    verify_stopped(log, dir.path());
}
