//! Shared by the log tests (`#[path = "support/chunks.rs"] mod chunks;`):
//! reads and rewrites the `log` tree of store format v2 directly, as an
//! attacker with write access to sled would. Written from the layout, not
//! from the crate's decoders:
//!
//! - `c` || first seq (u64 BE) -> chunk: 0x01 || count u16 BE || count x
//!   offset u32 BE (from the start of the value) || entries, each entry
//!   record bytes || chain hash (32); the entries hold consecutive seqs;
//! - `h` -> seq u64 BE || hash (32);
//! - `s` || stream id -> case file: 0x01 || varint n || n seqs (the first
//!   absolute, then differences) || varint r || r x (first version, the
//!   first absolute, then differences || 8-byte request tag);
//! - `k` -> the position (seq || hash) the persisted case files cover.
#![allow(dead_code)]

pub const LOG: &str = "log";

pub fn chunk_key(seq: u64) -> [u8; 9] {
    let mut k = [b'c'; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn log(db: &sled::Db) -> sled::Tree {
    db.open_tree(LOG).unwrap()
}

/// The entries (record bytes || hash) of a chunk value.
pub fn parse_chunk(v: &[u8]) -> Vec<Vec<u8>> {
    assert_eq!(v[0], 0x01, "chunk format");
    let count = u16::from_be_bytes([v[1], v[2]]) as usize;
    let offset = |i: usize| u32::from_be_bytes(v[3 + 4 * i..7 + 4 * i].try_into().unwrap()) as usize;
    (0..count)
        .map(|i| {
            let end = if i + 1 < count { offset(i + 1) } else { v.len() };
            v[offset(i)..end].to_vec()
        })
        .collect()
}

/// A chunk value holding `entries` in order.
pub fn encode_chunk(entries: &[Vec<u8>]) -> Vec<u8> {
    let table_end = 3 + 4 * entries.len();
    let mut v = vec![0x01];
    v.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    let mut at = table_end;
    for e in entries {
        v.extend_from_slice(&(at as u32).to_be_bytes());
        at += e.len();
    }
    for e in entries {
        v.extend_from_slice(e);
    }
    v
}

/// Every chunk in key order: (first seq, entries).
pub fn chunks(db: &sled::Db) -> Vec<(u64, Vec<Vec<u8>>)> {
    log(db)
        .scan_prefix(b"c")
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (u64::from_be_bytes(k[1..].try_into().unwrap()), parse_chunk(&v))
        })
        .collect()
}

/// The chunk holding `seq`: (first seq, entries).
pub fn chunk_of(db: &sled::Db, seq: u64) -> (u64, Vec<Vec<u8>>) {
    let (k, v) = log(db)
        .range(chunk_key(0)..=chunk_key(seq))
        .next_back()
        .expect("a chunk at or before seq")
        .unwrap();
    let first = u64::from_be_bytes(k[1..].try_into().unwrap());
    let entries = parse_chunk(&v);
    assert!(seq < first + entries.len() as u64, "no chunk holds seq {seq}");
    (first, entries)
}

/// Entry `seq` (record bytes || hash) as stored.
pub fn entry(db: &sled::Db, seq: u64) -> Vec<u8> {
    let (first, entries) = chunk_of(db, seq);
    entries[(seq - first) as usize].clone()
}

/// The record bytes and the stored hash of `seq`.
pub fn record_and_hash(db: &sled::Db, seq: u64) -> (Vec<u8>, [u8; 32]) {
    let e = entry(db, seq);
    let (record, hash) = e.split_at(e.len() - 32);
    (record.to_vec(), hash.try_into().unwrap())
}

/// Replaces entry `seq` in its chunk (the chunk keeps its key and its other entries).
pub fn put_entry(db: &sled::Db, seq: u64, new: Vec<u8>) {
    let (first, mut entries) = chunk_of(db, seq);
    entries[(seq - first) as usize] = new;
    log(db).insert(chunk_key(first), encode_chunk(&entries)).unwrap();
}

/// Flips one bit in the middle of the payload of `seq` (the stored hash is
/// left alone); returns the new entry.
pub fn flip_payload_byte(db: &sled::Db, seq: u64) -> Vec<u8> {
    let mut e = entry(db, seq);
    // A record ends with payload || prev_hash (32); the entry adds the hash (32).
    let at = e.len() - 64 - 3;
    e[at] ^= 0x01;
    put_entry(db, seq, e.clone());
    e
}

/// Removes every entry `remove` picks; the others keep their seqs (a chunk
/// that loses entries in its middle is split into chunks of consecutive seqs).
pub fn remove_entries(db: &sled::Db, remove: impl Fn(u64) -> bool) {
    let tree = log(db);
    for (first, entries) in chunks(db) {
        let seqs = first..first + entries.len() as u64;
        if !seqs.clone().any(&remove) {
            continue;
        }
        tree.remove(chunk_key(first)).unwrap();
        let mut run: Option<(u64, Vec<Vec<u8>>)> = None;
        for (seq, e) in seqs.zip(entries) {
            if remove(seq) {
                if let Some((at, run)) = run.take() {
                    tree.insert(chunk_key(at), encode_chunk(&run)).unwrap();
                }
            } else {
                run.get_or_insert_with(|| (seq, Vec::new())).1.push(e);
            }
        }
        if let Some((at, run)) = run {
            tree.insert(chunk_key(at), encode_chunk(&run)).unwrap();
        }
    }
}

/// The head key: (seq, hash).
pub fn head(db: &sled::Db) -> (u64, [u8; 32]) {
    let v = log(db).get(b"h").unwrap().expect("head key");
    (
        u64::from_be_bytes(v[..8].try_into().unwrap()),
        v[8..].try_into().unwrap(),
    )
}

pub fn position_bytes(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    v.extend_from_slice(hash);
    v
}

/// Sets the head key.
pub fn set_head(db: &sled::Db, seq: u64, hash: &[u8; 32]) {
    log(db).insert(b"h", position_bytes(seq, hash)).unwrap();
}

/// The position the persisted case files cover (`k`).
pub fn case_files_at(db: &sled::Db) -> (u64, [u8; 32]) {
    let v = log(db).get(b"k").unwrap().expect("case files position");
    (
        u64::from_be_bytes(v[..8].try_into().unwrap()),
        v[8..].try_into().unwrap(),
    )
}

/// The 8-byte tag of a request id in case files.
pub fn request_tag(request_id: &str) -> [u8; 8] {
    let mut h = blake3::Hasher::new();
    h.update(b"migreg.request-tag.v2\0");
    h.update(request_id.as_bytes());
    h.finalize().as_bytes()[..8].try_into().unwrap()
}

/// A case file: the seq of each version, and (first version, tag) of each request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaseFile {
    pub seqs: Vec<u64>,
    pub requests: Vec<(u64, [u8; 8])>,
}

fn take_varint(b: &mut &[u8]) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let (&byte, rest) = b.split_first().expect("case file truncated");
        *b = rest;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl CaseFile {
    pub fn decode(mut b: &[u8]) -> CaseFile {
        assert_eq!(b[0], 0x01, "case file format");
        b = &b[1..];
        let n = take_varint(&mut b);
        let mut seqs = Vec::new();
        let mut prev = 0;
        for _ in 0..n {
            prev += take_varint(&mut b);
            seqs.push(prev);
        }
        let r = take_varint(&mut b);
        let mut requests = Vec::new();
        let mut prev = 0;
        for _ in 0..r {
            prev += take_varint(&mut b);
            let (tag, rest) = b.split_at(8);
            b = rest;
            requests.push((prev, tag.try_into().unwrap()));
        }
        assert!(b.is_empty(), "trailing bytes in a case file");
        CaseFile { seqs, requests }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0x01];
        put_varint(&mut out, self.seqs.len() as u64);
        let mut prev = 0;
        for &s in &self.seqs {
            put_varint(&mut out, s - prev);
            prev = s;
        }
        put_varint(&mut out, self.requests.len() as u64);
        let mut prev = 0;
        for (v, tag) in &self.requests {
            put_varint(&mut out, v - prev);
            prev = *v;
            out.extend_from_slice(tag);
        }
        out
    }
}

fn case_file_key(stream_id: &str) -> Vec<u8> {
    let mut k = vec![b's'];
    k.extend_from_slice(stream_id.as_bytes());
    k
}

/// The persisted case file of a stream.
pub fn case_file(db: &sled::Db, stream_id: &str) -> Option<CaseFile> {
    log(db)
        .get(case_file_key(stream_id))
        .unwrap()
        .map(|v| CaseFile::decode(&v))
}

pub fn put_case_file(db: &sled::Db, stream_id: &str, cf: &CaseFile) {
    log(db).insert(case_file_key(stream_id), cf.encode()).unwrap();
}

pub fn remove_case_file(db: &sled::Db, stream_id: &str) {
    log(db)
        .remove(case_file_key(stream_id))
        .unwrap()
        .expect("the case file existed");
}
