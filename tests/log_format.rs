//! The bytes on disk follow docs/LOG_FORMAT.md: an independent reader written
//! from that document (not from `record.rs`) parses every record, recomputes
//! the chain hash and request fingerprints, and checks the sled layout.

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

fn fingerprint(req: &AppendRequest) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"migreg.request.v1\0");
    let mut field = |b: &[u8]| {
        h.update(&(b.len() as u64).to_be_bytes());
        h.update(b);
    };
    let (tag, n) = match req.expected {
        ExpectedVersion::Any => (0u8, 0u64),
        ExpectedVersion::NoStream => (1, 0),
        ExpectedVersion::StreamExists => (2, 0),
        ExpectedVersion::Exact(n) => (3, n),
    };
    field(req.stream_id.as_bytes());
    field(&[tag]);
    field(&n.to_be_bytes());
    field(req.actor.user_id.as_bytes());
    field(req.actor.office.as_bytes());
    for e in &req.events {
        field(e.event_type.as_bytes());
        field(&e.payload);
    }
    *h.finalize().as_bytes()
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

#[test]
fn stored_bytes_follow_the_documented_format_chain_hash_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let reqs = requests();
    let acks: Vec<Appended> = reqs
        .iter()
        .map(|r| log.appender().append_blocking(r.clone()).unwrap())
        .collect();
    log.shutdown().unwrap();
    drop(open(dir.path())); // start-up verification records `meta/verified`

    let db = retry_while_locked(|| registry::log::store::sled_config(dir.path()).open()).unwrap();
    let events = db.open_tree("events").unwrap();
    let mut prev = [0u8; 32];
    let mut seq = 0u64;
    let mut stream_entries: HashMap<Vec<u8>, u64> = HashMap::new();
    for (req, ack) in reqs.iter().zip(&acks) {
        for (part, ev) in req.events.iter().enumerate() {
            seq += 1;
            let mut want_stream_key = vec![req.stream_id.len() as u8];
            want_stream_key.extend_from_slice(req.stream_id.as_bytes());
            want_stream_key.extend_from_slice(&(ack.first_version + part as u64).to_be_bytes());
            stream_entries.insert(want_stream_key, seq);
            let value = events
                .get(seq.to_be_bytes())
                .unwrap()
                .expect("record under its seq");
            let (record, stored) = value.split_at(value.len() - 32);
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
            let want = [
                req.stream_id.clone(),
                ev.event_type.clone(),
                req.actor.user_id.clone(),
                req.actor.office.clone(),
                req.request_id.clone(),
            ];
            assert_eq!((&p.strings, &p.payload), (&want, &ev.payload));
            prev = chain_hash(&prev, record);
            assert_eq!(stored, prev, "stored hash of seq {seq}");
        }
    }
    assert_eq!(events.len(), seq as usize);

    let meta = db.open_tree("meta").unwrap();
    let mut head = seq.to_be_bytes().to_vec();
    head.extend_from_slice(&prev);
    assert_eq!(meta.get("head").unwrap().unwrap().to_vec(), head);
    assert_eq!(meta.get("verified").unwrap().unwrap().to_vec(), head);

    let streams = db.open_tree("streams").unwrap();
    assert_eq!(streams.len(), stream_entries.len());
    for (key, seq) in &stream_entries {
        assert_eq!(streams.get(key).unwrap().unwrap().to_vec(), seq.to_be_bytes());
    }

    let requests = db.open_tree("requests").unwrap();
    assert_eq!(requests.len(), reqs.len());
    for (req, ack) in reqs.iter().zip(&acks) {
        let mut want = fingerprint(req).to_vec();
        want.extend_from_slice(&ack.first_seq.to_be_bytes());
        want.extend_from_slice(&(req.events.len() as u16).to_be_bytes());
        want.extend_from_slice(&ack.first_version.to_be_bytes());
        want.extend_from_slice(&ack.recorded_at_us.to_be_bytes());
        assert_eq!(
            requests.get(&req.request_id).unwrap().unwrap().to_vec(),
            want,
            "{}",
            req.request_id
        );
        assert_eq!(fingerprint(req), req.fingerprint());
    }
}
