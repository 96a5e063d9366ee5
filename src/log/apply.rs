//! Makes a batch of records part of the store: chunks, head (and any extra
//! keys of the same commit) in one `apply_batch`, durable, then the changed
//! case files visible, the head published and the case-file follower told.
//!
//! On a single node the writer stages a batch and commits it here. In a
//! cluster (src/cluster/) the leader's writer stages and proposes, and every
//! node, the leader included, applies the committed records here with
//! [`Applier::apply_records`], which checks each record's chain link against
//! its own head first: a node whose store does not continue the leader's
//! chain stops (it never re-signs or repairs).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::casefile::{CaseFile, CaseFileUpdate};
use super::chunk::ChunkBuilder;
use super::record::{chain_hash, RecordView};
use super::store::{chunk_key, Head, Store, StoreError, SyncMode, HEAD_KEY};

/// Why replicated records could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The records do not continue this node's chain, or do not hash to
    /// the head the leader announced: this node's store and the cluster's
    /// log differ. The node stops taking and applying writes.
    #[error("replicated records do not continue this node's chain: {0}")]
    Diverged(String),
    /// Likewise, found before applying: a batch this node holds in part
    /// or in full differs from its records (see [`Applier::not_yet_applied`]).
    #[error("replicated records do not continue this node's chain: {0}")]
    Held(#[source] HeldBatchError),
    /// Reading a case file or committing the batch failed; the applier stops.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The applier stopped earlier (storage error, divergence, shutdown).
    #[error("the applier has stopped: {0}")]
    Stopped(String),
}

/// Why a replicated batch does not match what this store holds (see
/// [`Applier::not_yet_applied`]).
#[derive(Debug, thiserror::Error)]
pub enum HeldBatchError {
    /// The batch's framing is broken.
    #[error("{0}")]
    Framing(&'static str),
    /// A record of the batch, or this store's record it is compared with,
    /// does not decode.
    #[error(transparent)]
    Decode(#[from] super::record::DecodeError),
    /// Reading this store's record failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This store has no record at the batch's last seq, though its head is
    /// at or past it (the seq).
    #[error("record {0} is missing here")]
    Missing(u64),
    /// This store's record at the batch's last seq (the seq) has another
    /// chain hash than the leader's head.
    #[error("this node's record {0} differs from the leader's")]
    Differs(u64),
}

/// The one place that writes records into the store (see the module doc).
pub struct Applier {
    store: Store,
    sync: SyncMode,
    data_file: Option<std::fs::File>,
    /// The head of what this applier committed (= the store's published head).
    head: Head,
    head_tx: watch::Sender<Head>,
    /// The case-file follower; taken at close, which tells it to write what it holds and stop.
    follower: Option<std::sync::mpsc::SyncSender<CaseFileUpdate>>,
    /// Announces why writes stopped (set once): the server stops on it.
    failed: watch::Sender<Option<String>>,
}

impl Applier {
    pub(crate) fn new(
        store: Store,
        sync: SyncMode,
        head: Head,
        head_tx: watch::Sender<Head>,
        follower: std::sync::mpsc::SyncSender<CaseFileUpdate>,
        failed: watch::Sender<Option<String>>,
    ) -> Result<Applier, StoreError> {
        let data_file = match sync {
            SyncMode::Fdatasync => Some(store.open_data_file()?),
            SyncMode::Flush => None,
        };
        Ok(Applier {
            store,
            sync,
            data_file,
            head,
            head_tx,
            follower: Some(follower),
            failed,
        })
    }

    /// The store this applier writes.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The head of the last commit.
    pub fn head(&self) -> Head {
        self.head
    }

    /// Why writes stopped, once they have.
    pub fn failed(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    /// Stops writes for good (until restart) and announces why; the first reason stays.
    pub fn fail(&self, reason: String) {
        self.failed.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Makes everything sled holds durable, as the configured sync mode says
    /// (the Raft log's appends use it too: one sled log holds every tree).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.store.sync(self.sync, self.data_file.as_ref())
    }

    /// Commits a staged batch whose last record is `new_head`: chunks, head
    /// and `extra` (key, value) pairs of the `log` tree in one `apply_batch`,
    /// made durable when `durable`; then the case files, the head and the
    /// follower. A storage error stops writes (fail-stop) and is returned.
    pub(crate) fn commit(
        &mut self,
        new_head: Head,
        chunks: ChunkBuilder,
        files: HashMap<String, CaseFile>,
        extra: &[(&[u8], Vec<u8>)],
        durable: bool,
    ) -> Result<(), StoreError> {
        if let Some(reason) = self.failed() {
            return Err(StoreError::Io(std::io::Error::other(reason)));
        }
        // Paired with the seqs the writer (or `apply_records`) gave: the
        // batch continues the committed head, densely, up to `new_head`.
        match chunks.seqs() {
            Some((first, last)) => {
                assert_eq!(first, self.head.seq + 1, "a group commit continues the head");
                assert_eq!(last, new_head.seq, "a group commit ends at its head");
            }
            None => assert_eq!(
                new_head, self.head,
                "a group commit without records keeps the head"
            ),
        }
        let mut batch = sled::Batch::default();
        for (first, value) in chunks.finish() {
            batch.insert(&chunk_key(first)[..], value);
        }
        batch.insert(HEAD_KEY, &new_head.to_bytes()[..]);
        for (k, v) in extra {
            batch.insert(*k, v.as_slice());
        }
        let written = self.store.log.apply_batch(batch).map_err(StoreError::from);
        let written = written.and_then(|()| if durable { self.sync() } else { Ok(()) });
        if let Err(e) = written {
            tracing::error!(error = %e, from_seq = self.head.seq + 1, "group commit failed; writes stop");
            self.fail("a storage error stopped the log writer; restart the service".into());
            return Err(e);
        }
        self.head = new_head;
        let files: Vec<(String, Arc<CaseFile>)> = files.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        // Visible before the head that covers them is published.
        self.store.case_files.install(&files);
        self.store.publish(new_head);
        let _ = self.head_tx.send(new_head);
        let update = CaseFileUpdate {
            upto: new_head,
            files,
        };
        if self.follower.as_ref().is_none_or(|f| f.send(update).is_err()) {
            // The commit is durable; later ones are refused.
            tracing::error!("the case-file follower stopped; writes stop");
            self.fail("the case-file follower stopped; restart the service".into());
        }
        Ok(())
    }

    /// Applies records chained elsewhere (by the cluster's leader): each
    /// must be the next seq, link to the previous record's hash (the first
    /// to this node's head), and belong to its stream at the next version;
    /// the last must hash to `expected_head`. Then commits them as
    /// `Applier::commit` does, with `extra` in the same batch. `records`
    /// holds each record's bytes preceded by its length (u32 big-endian).
    pub fn apply_records(
        &mut self,
        records: &[u8],
        expected_head: Head,
        extra: &[(&[u8], Vec<u8>)],
        durable: bool,
    ) -> Result<Head, ApplyError> {
        if let Some(reason) = self.failed() {
            return Err(ApplyError::Stopped(reason));
        }
        let mut head = self.head;
        let mut chunks = ChunkBuilder::default();
        let mut files: HashMap<String, CaseFile> = HashMap::new();
        let diverged = |reason: String| ApplyError::Diverged(reason);
        for bytes in split_records(records).map_err(|e| diverged(e.into()))? {
            let view = RecordView::parse(bytes).map_err(|e| diverged(format!("undecodable record: {e}")))?;
            if view.seq != head.seq + 1 {
                return Err(diverged(format!(
                    "record seq {} follows head seq {}",
                    view.seq, head.seq
                )));
            }
            if view.prev_hash != head.hash {
                return Err(diverged(format!(
                    "record {} links to a hash other than this node's record {}",
                    view.seq, head.seq
                )));
            }
            let file = match files.get_mut(view.stream_id) {
                Some(f) => f,
                None => {
                    let f = self
                        .store
                        .case_file(view.stream_id)?
                        .map(|f| (*f).clone())
                        .unwrap_or_default();
                    files.entry(view.stream_id.to_string()).or_insert(f)
                }
            };
            if view.stream_version != file.version() + 1 {
                return Err(diverged(format!(
                    "record {} is version {} of its stream, which is at version {} here",
                    view.seq,
                    view.stream_version,
                    file.version()
                )));
            }
            file.push(view.seq, view.part, view.request_id);
            let hash = chain_hash(&head.hash, bytes);
            chunks.push(view.seq, bytes, &hash);
            head = Head { seq: view.seq, hash };
        }
        if head != expected_head {
            return Err(diverged(format!(
                "the records end at seq {} with another hash than the leader's head (seq {})",
                head.seq, expected_head.seq
            )));
        }
        if chunks.is_empty() {
            return Ok(head);
        }
        self.commit(head, chunks, files, extra, durable)?;
        Ok(head)
    }

    /// The part of a replicated batch this store does not hold yet: all of
    /// it (the usual case), none (`None`: every record is here already,
    /// which only a snapshot install interrupted by a crash leaves), or its
    /// tail. Records held here are matched by the chain: the first record
    /// kept must link to this head (checked by [`Applier::apply_records`]),
    /// and a batch held entirely must end at the hash of this store's
    /// record at that seq. An error means the store differs from the batch.
    pub fn not_yet_applied(&self, records: &[u8], expected: Head) -> Result<Option<Vec<u8>>, HeldBatchError> {
        let ours = self.head;
        let list = split_records(records).map_err(HeldBatchError::Framing)?;
        let Some(first) = list.first() else {
            return Ok(Some(records.to_vec()));
        };
        let first_seq = RecordView::parse(first)?.seq;
        if first_seq > ours.seq {
            return Ok(Some(records.to_vec()));
        }
        if expected.seq <= ours.seq {
            let stored = self
                .store
                .raw_get(expected.seq)?
                .ok_or(HeldBatchError::Missing(expected.seq))?;
            let (_, hash) = super::record::split_stored(&stored)?;
            if hash != expected.hash {
                return Err(HeldBatchError::Differs(expected.seq));
            }
            return Ok(None);
        }
        let mut tail = Vec::new();
        for r in list.into_iter().skip((ours.seq + 1 - first_seq) as usize) {
            push_record(&mut tail, r);
        }
        Ok(Some(tail))
    }

    /// Writes `extra` pairs of the `log` tree alone (a Raft entry that carries no records).
    pub fn put_extra(&self, extra: &[(&[u8], Vec<u8>)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in extra {
            batch.insert(*k, v.as_slice());
        }
        self.store.log.apply_batch(batch)?;
        Ok(())
    }

    /// Reads an extra key of the `log` tree.
    pub fn get_extra(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.store.log.get(key)?)
    }

    /// Tells the case-file follower to write what it holds and stop; later commits fail.
    pub(crate) fn close(&mut self) {
        self.follower.take();
    }
}

/// Appends one record's bytes, length-prefixed, to a replicated batch.
pub fn push_record(out: &mut Vec<u8>, record: &[u8]) {
    out.extend_from_slice(&(record.len() as u32).to_be_bytes());
    out.extend_from_slice(record);
}

/// Splits a replicated batch into its records' bytes (see [`push_record`]).
pub fn split_records(mut bytes: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 4 {
            return Err("a truncated record length");
        }
        let len = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        let rest = &bytes[4..];
        if rest.len() < len {
            return Err("a truncated record");
        }
        out.push(&rest[..len]);
        bytes = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::Hash;
    use crate::log::{Log, WriterConfig};

    /// One record of `stream` at `version`, after `prev`: its bytes and its hash.
    fn record(seq: u64, stream: &str, version: u64, prev: &Hash) -> (Vec<u8>, Hash) {
        let view = RecordView {
            seq,
            recorded_at_us: 1_700_000_000_000_000 + seq as i64,
            stream_id: stream,
            stream_version: version,
            part: 0,
            parts: 1,
            event_type: "TestEvent",
            user_id: "u-test",
            office: "BOG",
            request_id: &format!("rq-{seq}"),
            payload: b"payload",
            prev_hash: *prev,
        };
        let mut bytes = Vec::new();
        view.encode_into(&mut bytes);
        let hash = chain_hash(prev, &bytes);
        (bytes, hash)
    }

    /// Records chained from `head`, as (stream, version) pairs say; the batch and its last head.
    fn batch(head: Head, parts: &[(&str, u64)]) -> (Vec<u8>, Head) {
        let (mut out, mut head) = (Vec::new(), head);
        for (stream, version) in parts {
            let (bytes, hash) = record(head.seq + 1, stream, *version, &head.hash);
            push_record(&mut out, &bytes);
            head = Head {
                seq: head.seq + 1,
                hash,
            };
        }
        (out, head)
    }

    fn open() -> (tempfile::TempDir, Log) {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open_replicated(
            dir.path(),
            WriterConfig {
                sync: SyncMode::Flush,
            },
        )
        .unwrap();
        (dir, log)
    }

    #[test]
    fn records_already_held_are_skipped_and_a_different_one_is_refused() {
        let (_dir, log) = open();
        let applier = log.applier();
        let mut a = applier.lock().unwrap();
        let start = a.head();
        let (first, mid) = batch(start, &[("case-a", 1), ("case-b", 1)]);
        a.apply_records(&first, mid, &[], false).unwrap();
        // A batch held entirely: nothing to apply.
        assert_eq!(a.not_yet_applied(&first, mid).unwrap(), None);
        // A batch overlapping the head: only its tail, which then applies.
        let (second, end) = batch(mid, &[("case-a", 2)]);
        let mut overlapping = first.clone();
        overlapping.extend_from_slice(&second);
        let tail = a.not_yet_applied(&overlapping, end).unwrap().unwrap();
        assert_eq!(tail, second);
        a.apply_records(&tail, end, &[], false).unwrap();
        assert_eq!(a.head(), end);
        // A batch after the head is kept whole.
        let (third, _) = batch(end, &[("case-b", 2)]);
        assert_eq!(a.not_yet_applied(&third, end).unwrap(), Some(third.clone()));
        // A held batch whose last hash differs from this store's record: refused.
        let forged = Head {
            seq: mid.seq,
            hash: [7u8; 32],
        };
        let e = a.not_yet_applied(&first, forged).unwrap_err();
        assert!(e.to_string().contains("differs"), "{e}");
    }

    #[test]
    fn records_that_continue_the_chain_are_applied_with_their_case_files() {
        let (_dir, log) = open();
        let applier = log.applier();
        let start = log.store().head().unwrap();
        let (records, head) = batch(start, &[("case-a", 1), ("case-b", 1), ("case-a", 2)]);
        let applied = applier
            .lock()
            .unwrap()
            .apply_records(&records, head, &[(b"r", vec![7])], true);
        assert_eq!(applied.unwrap(), head);
        assert_eq!(log.store().head().unwrap(), head);
        assert_eq!(log.store().stream_version("case-a").unwrap(), 2);
        assert_eq!(
            log.store().get(start.seq + 3).unwrap().unwrap().record.stream_id,
            "case-a"
        );
        assert_eq!(
            applier.lock().unwrap().get_extra(b"r").unwrap().unwrap().as_ref(),
            &[7]
        );
    }

    #[test]
    fn records_that_do_not_continue_this_store_are_refused_and_nothing_is_written() {
        let (_dir, log) = open();
        let applier = log.applier();
        let start = log.store().head().unwrap();
        let (first, head) = batch(start, &[("case-a", 1)]);
        applier
            .lock()
            .unwrap()
            .apply_records(&first, head, &[], true)
            .unwrap();
        let wrong_prev = Head {
            hash: [9; 32],
            ..head
        };
        let gap = Head {
            seq: head.seq + 1,
            ..head
        };
        let cases: Vec<(&str, Vec<u8>, Head)> = vec![
            (
                "a link to another hash",
                batch(wrong_prev, &[("case-a", 2)]).0,
                batch(wrong_prev, &[("case-a", 2)]).1,
            ),
            (
                "a gap in the seqs",
                batch(gap, &[("case-a", 2)]).0,
                batch(gap, &[("case-a", 2)]).1,
            ),
            (
                "a skipped stream version",
                batch(head, &[("case-a", 3)]).0,
                batch(head, &[("case-a", 3)]).1,
            ),
            (
                "another head than the leader's",
                batch(head, &[("case-a", 2)]).0,
                Head {
                    hash: [1; 32],
                    ..batch(head, &[("case-a", 2)]).1
                },
            ),
            ("an undecodable record", vec![0, 0, 0, 3, 1, 2, 3], head),
        ];
        for (what, records, expected) in cases {
            let refused = applier
                .lock()
                .unwrap()
                .apply_records(&records, expected, &[], true);
            assert!(
                matches!(refused, Err(ApplyError::Diverged(_))),
                "{what}: {refused:?}"
            );
            assert_eq!(log.store().head().unwrap(), head, "{what}: something was written");
            assert_eq!(log.store().stream_version("case-a").unwrap(), 1, "{what}");
        }
    }
}
