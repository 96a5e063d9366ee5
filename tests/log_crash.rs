//! Crash safety: a child process appends from many threads and is killed with
//! SIGKILL at a random moment; every append it acknowledged must be in the log
//! after reopening, no request may be half-written, and the log must verify.
//! Every fifth request covers two streams (`Appender::append_many`, as a
//! family link does): after the kill both streams hold it or neither does.
//! The others each reserve a document (a side write, as a registration
//! does): every acknowledged one's reservation is there after the kill.
//!
//! The test binary re-executes itself: `crash_child` does the appending when
//! `LOG_CRASH_CHILD_DIR` is set and returns at once otherwise.
//! Set `LOG_CRASH_SEED` to replay the kill timings of an earlier run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use registry::log::verify::verify_full;
use registry::log::{
    Actor, AppendRequest, ExpectedVersion, Log, NewEvent, Side, SideWrite, Store, StoredEvent, SyncMode,
    WriterConfig,
};

#[path = "support/retry.rs"]
mod retry;
use retry::retry_while_locked;

/// Marks the request ids of two-stream appends.
const PAIR_SUFFIX: &str = "-pair";
const CHILD_DIR_ENV: &str = "LOG_CRASH_CHILD_DIR";
const CHILD_ITERATION_ENV: &str = "LOG_CRASH_CHILD_ITERATION";
const ITERATIONS: usize = 24;
const CHILD_THREADS: usize = 16;
/// A child that is never killed (the parent died) stops appending after this.
const CHILD_RUN_MAX: Duration = Duration::from_secs(20);

fn open(dir: &Path) -> Log {
    let config = WriterConfig {
        sync: SyncMode::Fdatasync,
    };
    retry_while_locked(|| Log::open(dir, config))
        .unwrap_or_else(|e| panic!("Log::open after SIGKILL must succeed: {e}"))
}

/// The payload of one event, derived from its request id and part so that the
/// parent can check the bytes without being told them.
fn payload(request_id: &str, part: u16) -> Vec<u8> {
    let unit = format!("{request_id}#{part};");
    unit.repeat(1 + (request_id.len() * 31 + part as usize * 17) % 90)
        .into_bytes()
}

fn child_request(tag: &str, thread: usize, i: usize) -> AppendRequest {
    let request_id = format!("{tag}-t{thread}-{i}");
    let parts = 1 + (thread + i) % 3;
    AppendRequest {
        stream_id: format!("case-{}", (thread * 7 + i) % 24),
        expected: ExpectedVersion::Any,
        actor: Actor {
            user_id: format!("u-{thread}"),
            office: "BOG".into(),
        },
        events: (0..parts as u16)
            .map(|p| NewEvent {
                event_type: format!("Step{p}"),
                payload: payload(&request_id, p),
            })
            .collect(),
        request_id,
    }
}

#[test]
#[ignore = "the child process of acknowledged_appends_survive_sigkill_and_no_request_is_half_written"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let iteration = std::env::var(CHILD_ITERATION_ENV).unwrap_or_default();
    let tag = format!("i{iteration}p{}", std::process::id());
    let log = open(Path::new(&dir));
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let started = Instant::now();
    let threads: Vec<_> = (0..CHILD_THREADS)
        .map(|t| {
            let (app, stdout, tag) = (log.appender(), stdout.clone(), tag.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while started.elapsed() < CHILD_RUN_MAX {
                    let req = child_request(&tag, t, i);
                    let line = if i % 5 == 4 {
                        // One request on two streams, all or none.
                        let mut first = req.clone();
                        first.request_id.push_str(PAIR_SUFFIX);
                        for (p, e) in first.events.iter_mut().enumerate() {
                            e.payload = payload(&first.request_id, p as u16);
                        }
                        let mut second = first.clone();
                        second.stream_id = format!("pair-{}", (t * 3 + i) % 8);
                        second.events.truncate(1);
                        let a = app
                            .append_many_blocking(vec![first.clone(), second.clone()])
                            .expect("append two streams");
                        [(first, a[0]), (second, a[1])]
                            .iter()
                            .map(|(r, a)| {
                                format!(
                                    "\nACK {} {} {} {}\n",
                                    r.request_id,
                                    r.stream_id,
                                    a.first_seq,
                                    r.events.len()
                                )
                            })
                            .collect::<String>()
                    } else {
                        let a = app
                            .append_with_blocking(req.clone(), vec![reservation(&req.request_id)])
                            .expect("append");
                        format!(
                            "\nACK {} {} {} {}\n",
                            req.request_id,
                            req.stream_id,
                            a.first_seq,
                            req.events.len()
                        )
                    };
                    let mut out = stdout.lock().unwrap();
                    out.write_all(line.as_bytes()).unwrap();
                    out.flush().unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// The side write of a single-stream request: its own document.
fn reservation(request_id: &str) -> SideWrite {
    SideWrite {
        tree: Side::Documents,
        key: format!("doc-{request_id}").into_bytes(),
        expect: None,
        value: request_id.as_bytes().to_vec(),
    }
}

/// One acknowledged append, as the child reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    request_id: String,
    stream_id: String,
    first_seq: u64,
    count: u16,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut words = line.strip_prefix("ACK ")?.split_whitespace();
    let ack = Ack {
        request_id: words.next()?.to_string(),
        stream_id: words.next()?.to_string(),
        first_seq: words.next()?.parse().ok()?,
        count: words.next()?.parse().ok()?,
    };
    words.next().is_none().then_some(ack)
}

/// Tiny xorshift64: the kill delays need no better randomness than this.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs one child, kills it 50-400 ms after its first ACK, and returns every
/// complete ACK line it printed.
fn run_and_kill(dir: &Path, iteration: usize, rng: &mut XorShift) -> Vec<Ack> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--nocapture",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_ITERATION_ENV, iteration.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Ack>();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            // A line cut by the kill has no newline: it was never fully printed.
            if line.ends_with('\n') {
                if let Some(ack) = parse_ack(line.trim_end()) {
                    let _ = tx.send(ack);
                }
            }
            line.clear();
        }
    });
    let first = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(ack) => ack,
        Err(e) => {
            let _ = child.kill();
            panic!(
                "iteration {iteration}: child never acknowledged an append ({e}): {:?}",
                child.wait()
            );
        }
    };
    std::thread::sleep(Duration::from_millis(50 + rng.next() % 351));
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished");
    reader.join().unwrap();
    let mut acks = vec![first];
    acks.extend(rx.try_iter());
    acks
}

/// Every acknowledged request is in the log with its events, as
/// acknowledged, and a single-stream one's reservation with them.
fn assert_acks_present(log: &Log, acks: &[Ack], iteration: usize) {
    let documents = log.store().db().open_tree(Side::Documents.tree_name()).unwrap();
    for ack in acks {
        if !ack.request_id.ends_with(PAIR_SUFFIX) {
            let w = reservation(&ack.request_id);
            assert_eq!(
                documents.get(&w.key).unwrap().as_deref(),
                Some(w.value.as_slice()),
                "iteration {iteration}: the reservation of acknowledged {ack:?} is missing"
            );
        }
        let entry = log
            .store()
            .request_entry(&ack.stream_id, &ack.request_id)
            .unwrap()
            .unwrap_or_else(|| panic!("iteration {iteration}: acknowledged {ack:?} is missing"));
        assert_eq!(
            (entry.first_seq, entry.count),
            (ack.first_seq, ack.count),
            "{ack:?}"
        );
        for part in 0..ack.count {
            let ev = log
                .store()
                .get(ack.first_seq + part as u64)
                .unwrap()
                .unwrap_or_else(|| panic!("iteration {iteration}: part {part} of {ack:?} is missing"));
            let r = &ev.record;
            assert_eq!(
                (r.request_id.as_str(), r.part, r.parts),
                (ack.request_id.as_str(), part, ack.count)
            );
            assert_eq!(r.payload, payload(&ack.request_id, part), "{ack:?}");
        }
    }
}

/// Every request in the log is whole: parts 0..parts on consecutive seqs, and
/// its stream's case file names exactly those events as that request.
fn assert_no_request_half_written(log: &Log) -> u64 {
    let head = log.store().head().unwrap().seq;
    let mut events: Vec<StoredEvent> = Vec::new();
    while (events.len() as u64) < head {
        let page = log.store().read_all(events.len() as u64 + 1, 10_000).unwrap();
        assert!(!page.is_empty(), "the log ends before its head {head}");
        events.extend(page);
    }
    let mut i = 0;
    let mut pairs: std::collections::HashMap<String, Vec<String>> = Default::default();
    while i < events.len() {
        let first = &events[i].record;
        if first.request_id.ends_with(PAIR_SUFFIX) {
            pairs
                .entry(first.request_id.clone())
                .or_default()
                .push(first.stream_id.clone());
        }
        assert_eq!(first.part, 0, "seq {} should start a request", first.seq);
        assert!(
            i + first.parts as usize <= events.len(),
            "request {} cut short",
            first.request_id
        );
        for p in 0..first.parts {
            let r = &events[i + p as usize].record;
            assert_eq!(
                (&r.request_id, r.part, r.parts),
                (&first.request_id, p, first.parts)
            );
        }
        let entry = log
            .store()
            .request_entry(&first.stream_id, &first.request_id)
            .unwrap()
            .unwrap();
        assert_eq!((entry.first_seq, entry.count), (first.seq, first.parts));
        i += first.parts as usize;
    }
    for (request_id, streams) in &pairs {
        assert_eq!(
            streams.len(),
            2,
            "two-stream request {request_id} is on {streams:?} only"
        );
    }
    head
}

#[test]
fn acknowledged_appends_survive_sigkill_and_no_request_is_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::env::var("LOG_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    eprintln!("LOG_CRASH_SEED={seed}");
    let mut rng = XorShift(seed);
    let mut every_ack: Vec<Ack> = Vec::new();
    let mut last_head = 0;
    let mut replayed = 0;
    for iteration in 0..ITERATIONS {
        let acks = run_and_kill(dir.path(), iteration, &mut rng);
        // The case-file follower writes about once a second: a kill leaves
        // the case files behind the log, and the start replays the rest.
        let store = retry_while_locked(|| Store::open(dir.path())).unwrap();
        let behind = store.case_files_at().unwrap().seq < store.meta_head().unwrap().seq;
        drop(store);
        replayed += usize::from(behind);
        let log = open(dir.path());
        let head = log.store().head().unwrap();
        assert!(head.seq > last_head, "iteration {iteration}: the log grows");
        assert_eq!(log.store().verified().unwrap(), head, "open verified the tail");
        assert_acks_present(&log, &acks, iteration);
        let max_acked = acks
            .iter()
            .map(|a| a.first_seq + a.count as u64 - 1)
            .max()
            .unwrap();
        assert!(head.seq >= max_acked);
        assert_eq!(assert_no_request_half_written(&log), head.seq);
        log.shutdown().unwrap();
        // The stopped store verifies (`verify_full` is for stopped stores:
        // while open, the case-file follower writes at any moment).
        let store = retry_while_locked(|| Store::open(dir.path())).unwrap();
        let (chain, index) = verify_full(&store, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("iteration {iteration}: verify_full: {e}"));
        assert_eq!((chain.head, index.stream_entries), (head, head.seq));
        drop(store);
        every_ack.extend(acks);
        last_head = head.seq;
    }
    assert!(replayed > 0, "no kill left the case files behind the log");
    let log = open(dir.path());
    assert_acks_present(&log, &every_ack, ITERATIONS);
    eprintln!(
        "{ITERATIONS} kills, {} acknowledged requests, {} events in the log",
        every_ack.len(),
        log.store().head().unwrap().seq
    );
}
