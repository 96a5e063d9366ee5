//! The bytes on disk follow docs/LOG_FORMAT.md (store format 2): an
//! independent reader written from that document (not from `record.rs`,
//! `chunk.rs` or `casefile.rs`) parses every chunk, record and case file,
//! recomputes the chain hash, request tags and content fingerprints, and
//! checks the sled layout.

use std::collections::HashMap;
use std::path::Path;

use registry::log::{Actor, AppendRequest, Appended, ExpectedVersion, Log, NewEvent, SyncMode, WriterConfig};

#[path = "support/retry.rs"]
mod retry;
use retry::retry_while_locked;

fn open(dir: &Path) -> Log {
    let config = WriterConfig {
        sync: SyncMode::Fdatasync,
    };
    retry_while_locked(|| Log::open(dir, config)).expect("open log")
}

/// A record parsed by the table in docs/LOG_FORMAT.md.
#[derive(Debug)]
struct Parsed {
    seq: u64,
    recorded_at_us: i64,
    stream_version: u64,
    part: u16,
    parts: u16,
    strings: [String; 5],
    payload: Vec<u8>,
    prev_hash: [u8; 32],
}

struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "record shorter than the format says");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let n = self.u16() as usize;
        String::from_utf8(self.take(n).to_vec()).unwrap()
    }
}

fn parse(record: &[u8]) -> Parsed {
    let mut b = Bytes(record);
    assert_eq!(b.take(1), [0x01], "format version");
    let seq = b.u64();
    let recorded_at_us = b.u64() as i64;
    let stream_version = b.u64();
    let (part, parts) = (b.u16(), b.u16());
    let strings = [b.string(), b.string(), b.string(), b.string(), b.string()];
    let n = u32::from_be_bytes(b.take(4).try_into().unwrap()) as usize;
    let payload = b.take(n).to_vec();
    let prev_hash = b.take(32).try_into().unwrap();
    assert!(b.0.is_empty(), "nothing follows prev_hash");
    Parsed {
        seq,
        recorded_at_us,
        stream_version,
        part,
        parts,
        strings,
        payload,
        prev_hash,
    }
}

fn chain_hash(prev: &[u8; 32], record: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"migreg.chain.v1\0");
    h.update(prev);
    h.update(record);
    *h.finalize().as_bytes()
}

/// The content fingerprint of a request, as docs/LOG_FORMAT.md defines it.
fn content_fingerprint(req: &AppendRequest) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"migreg.request.v2\0");
    let mut field = |b: &[u8]| {
        h.update(&(b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(req.actor.user_id.as_bytes());
    field(req.actor.office.as_bytes());
    for e in &req.events {
        field(e.event_type.as_bytes());
        field(&e.payload);
    }
    *h.finalize().as_bytes()
}

/// The 8-byte tag of a request id in a case file.
fn request_tag(request_id: &str) -> [u8; 8] {
    let mut h = blake3::Hasher::new();
    h.update(b"migreg.request-tag.v2\0");
    h.update(request_id.as_bytes());
    h.finalize().as_bytes()[..8].try_into().unwrap()
}

fn requests() -> Vec<AppendRequest> {
    let expected = [
        ExpectedVersion::NoStream,
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(1),
        ExpectedVersion::StreamExists,
        ExpectedVersion::Any,
        ExpectedVersion::Exact(3),
    ];
    expected
        .iter()
        .enumerate()
        .map(|(i, &expected)| AppendRequest {
            stream_id: ["case-A.1", "case_B:2"][i % 2].into(),
            expected,
            request_id: format!("req-{i}"),
            actor: Actor {
                user_id: format!("user-{i}"),
                office: ["BOG", "MDE", "CLO"][i % 3].into(),
            },
            events: (0..1 + i % 3)
                .map(|p| NewEvent {
                    event_type: format!("Event{p}"),
                    payload: (0..i * 100 + p).map(|b| b as u8).collect(),
                })
                .collect(),
        })
        .collect()
}

/// Three events of 60 KiB: one group commit, more than one chunk holds.
fn big_request() -> AppendRequest {
    AppendRequest {
        stream_id: "case-A.1".into(),
        expected: ExpectedVersion::Any,
        request_id: "req-big".into(),
        actor: Actor {
            user_id: "user-big".into(),
            office: "BOG".into(),
        },
        events: (0..3u8)
            .map(|p| NewEvent {
                event_type: "Scan".into(),
                payload: vec![p; 60 * 1024],
            })
            .collect(),
    }
}

/// Requests sent at once from threads: they share group commits, so chunks.
fn burst(log: &Log) -> Vec<(AppendRequest, Appended)> {
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (app, barrier) = (log.appender(), &barrier);
                s.spawn(move || {
                    let req = AppendRequest {
                        stream_id: format!("case-burst-{}", t % 3),
                        expected: ExpectedVersion::Any,
                        // The same id on several streams: one request on each.
                        request_id: format!("burst-{}", t / 3),
                        actor: Actor {
                            user_id: format!("user-{t}"),
                            office: "BOG".into(),
                        },
                        events: (0..1 + t % 2)
                            .map(|p| NewEvent {
                                event_type: "Burst".into(),
                                payload: vec![t as u8; 10 + p],
                            })
                            .collect(),
                    };
                    barrier.wait();
                    let a = app.append_blocking(req.clone()).unwrap();
                    (req, a)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn take_varint(b: &mut &[u8]) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first().expect("varint truncated");
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
    }
    panic!("varint longer than 64 bits");
}

/// A case file: the seq of each version, and (first version, tag) of each request.
type CaseFile = (Vec<u64>, Vec<(u64, [u8; 8])>);

/// A case file parsed by docs/LOG_FORMAT.md.
fn parse_case_file(mut b: &[u8]) -> CaseFile {
    assert_eq!(b[0], 0x01, "case file format");
    b = &b[1..];
    let n = take_varint(&mut b);
    let mut seqs = Vec::new();
    let mut seq = 0;
    for _ in 0..n {
        let delta = take_varint(&mut b);
        assert!(delta > 0, "seqs increase");
        seq += delta;
        seqs.push(seq);
    }
    let r = take_varint(&mut b);
    let mut requests = Vec::new();
    let mut version = 0;
    for _ in 0..r {
        let delta = take_varint(&mut b);
        assert!(delta > 0, "request versions increase");
        version += delta;
        let (tag, rest) = b.split_at(8);
        b = rest;
        requests.push((version, tag.try_into().unwrap()));
    }
    assert!(b.is_empty(), "nothing follows the last request");
    (seqs, requests)
}

/// A chunk parsed by docs/LOG_FORMAT.md: its entries (record, stored hash).
fn parse_chunk(v: &[u8]) -> Vec<(&[u8], &[u8])> {
    assert_eq!(v[0], 0x01, "chunk format");
    let count = u16::from_be_bytes([v[1], v[2]]) as usize;
    assert!((1..=256).contains(&count), "count {count}");
    let table_end = 3 + 4 * count;
    let offsets: Vec<usize> = (0..count)
        .map(|i| u32::from_be_bytes(v[3 + 4 * i..7 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    assert_eq!(offsets[0], table_end, "entry 0 starts right after the table");
    let entries: Vec<(&[u8], &[u8])> = (0..count)
        .map(|i| {
            let end = offsets.get(i + 1).copied().unwrap_or(v.len());
            assert!(end > offsets[i], "entries follow each other");
            v[offsets[i]..end].split_at(end - offsets[i] - 32)
        })
        .collect();
    // A chunk is closed before a record would take its entries past 131,072 bytes.
    assert!(
        count == 1 || v.len() - table_end <= 131_072,
        "{} bytes of entries",
        v.len() - table_end
    );
    entries
}

#[test]
fn stored_bytes_follow_the_documented_format_chain_hash_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut sent: Vec<(AppendRequest, Appended)> = requests()
        .into_iter()
        .map(|r| {
            let a = log.appender().append_blocking(r.clone()).unwrap();
            (r, a)
        })
        .collect();
    let big = big_request();
    let big_ack = log.appender().append_blocking(big.clone()).unwrap();
    sent.push((big, big_ack));
    sent.extend(burst(&log));
    sent.sort_by_key(|(_, a)| a.first_seq);
    log.shutdown().unwrap();
    drop(open(dir.path())); // start-up verification records `meta/verified`

    let db = retry_while_locked(|| registry::log::store::sled_config(dir.path()).open()).unwrap();
    let meta = db.open_tree("meta").unwrap();
    assert_eq!(meta.get("format").unwrap().unwrap().to_vec(), 2u32.to_be_bytes());
    let names: Vec<Vec<u8>> = db.tree_names().iter().map(|n| n.to_vec()).collect();
    for v1 in ["events", "streams", "requests"] {
        assert!(
            !names.contains(&v1.as_bytes().to_vec()),
            "no {v1} tree in format 2"
        );
    }
    let log_tree = db.open_tree("log").unwrap();

    // What the records must say, in seq order, from the acknowledgements.
    let mut want: Vec<(&AppendRequest, &Appended, usize)> = Vec::new();
    for (req, ack) in &sent {
        for part in 0..req.events.len() {
            want.push((req, ack, part));
        }
    }
    // Chunks: keys run 1, 1 + count, ... and hold consecutive records.
    let mut prev = [0u8; 32];
    let mut seq = 0u64;
    let mut chunk_firsts = Vec::new();
    for kv in log_tree.scan_prefix(b"c") {
        let (k, v) = kv.unwrap();
        assert_eq!(k.len(), 9);
        let first = u64::from_be_bytes(k[1..].try_into().unwrap());
        assert_eq!(first, seq + 1, "chunk keys run without a hole");
        chunk_firsts.push(first);
        for (record, stored) in parse_chunk(&v) {
            seq += 1;
            let (req, ack, part) = want[(seq - 1) as usize];
            let p = parse(record);
            assert_eq!(
                (p.seq, p.recorded_at_us, p.prev_hash),
                (seq, ack.recorded_at_us, prev)
            );
            assert_eq!(
                (p.stream_version, p.part, p.parts),
                (
                    ack.first_version + part as u64,
                    part as u16,
                    req.events.len() as u16
                )
            );
            let ev = &req.events[part];
            let strings = [
                req.stream_id.clone(),
                ev.event_type.clone(),
                req.actor.user_id.clone(),
                req.actor.office.clone(),
                req.request_id.clone(),
            ];
            assert_eq!((&p.strings, &p.payload), (&strings, &ev.payload));
            prev = chain_hash(&prev, record);
            assert_eq!(stored, prev, "stored hash of seq {seq}");
        }
    }
    assert_eq!(seq as usize, want.len());
    // The request larger than a chunk: its first two events, then the third.
    let big = &sent.iter().find(|(r, _)| r.request_id == "req-big").unwrap().1;
    assert!(chunk_firsts.contains(&big.first_seq) && chunk_firsts.contains(&(big.first_seq + 2)));
    assert!(!chunk_firsts.contains(&(big.first_seq + 1)));

    let mut head = seq.to_be_bytes().to_vec();
    head.extend_from_slice(&prev);
    assert_eq!(log_tree.get("h").unwrap().unwrap().to_vec(), head);
    assert_eq!(
        log_tree.get("k").unwrap().unwrap().to_vec(),
        head,
        "case files cover the log"
    );
    assert_eq!(meta.get("verified").unwrap().unwrap().to_vec(), head);

    // Case files: every stream's seqs in version order, and one (first
    // version, tag) per request.
    let mut streams: HashMap<String, CaseFile> = HashMap::new();
    for (req, ack) in &sent {
        let (seqs, marks) = streams.entry(req.stream_id.clone()).or_default();
        assert_eq!(seqs.len() as u64 + 1, ack.first_version);
        seqs.extend(ack.first_seq..=ack.last_seq);
        marks.push((ack.first_version, request_tag(&req.request_id)));
        assert_eq!(content_fingerprint(req), req.fingerprint(), "{}", req.request_id);
    }
    let mut found = 0;
    for kv in log_tree.scan_prefix(b"s") {
        let (k, v) = kv.unwrap();
        let stream = std::str::from_utf8(&k[1..]).unwrap();
        assert_eq!(parse_case_file(&v), streams[stream], "case file of {stream}");
        found += 1;
    }
    assert_eq!(found, streams.len());
    // Nothing else in the log tree.
    assert_eq!(log_tree.len(), chunk_firsts.len() + streams.len() + 2);
}
