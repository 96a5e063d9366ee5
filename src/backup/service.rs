//! The server side of `Admin/Backup`: a consistent snapshot streamed while
//! the server serves. The log up to a signed checkpoint never changes (it
//! only grows), so it is read without stopping anything; the person-key
//! entries are read after the checkpoint was signed, so every key a record
//! up to the checkpoint needs is there (a key is written before the first
//! event sealed with it is appended). A key erased after the checkpoint
//! goes into the backup already erased: the backup never holds a key the
//! live store has destroyed at the time it is read.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tonic::Status;

use crate::api::pb;
use crate::api::status::{failed_precondition, invalid_argument, limit_exceeded};
use crate::audit::checkpoint::Checkpointer;
use crate::cases::Cases;
use crate::log::record::{split_stored, Record, HASH_LEN};

/// Record entries per `BackupRecords` message, and their bytes at most.
const RECORDS_PER_MESSAGE: usize = 4096;
const RECORD_BYTES_PER_MESSAGE: usize = 2 << 20;
/// Key entries per `BackupKeys` message.
const KEYS_PER_MESSAGE: usize = 8192;
/// How long a backup waits for the Merkle follower to reach the head.
const MERKLE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Messages buffered ahead of a slow client.
const BUFFERED_MESSAGES: usize = 4;

/// What a backup is read from.
#[derive(Clone)]
pub struct BackupSource {
    cases: Cases,
    checkpointer: Checkpointer,
    access_file: PathBuf,
    running: Arc<Semaphore>,
}

type Sender = mpsc::Sender<Result<pb::BackupPart, Status>>;

fn part(p: pb::backup_part::Part) -> Result<pb::BackupPart, Status> {
    Ok(pb::BackupPart { part: Some(p) })
}

impl BackupSource {
    /// A backup source over the server's case service (its store and master
    /// key id), its checkpointer (a backup starts by signing a checkpoint)
    /// and the access file copied into every backup. One backup runs at a
    /// time.
    pub fn new(cases: Cases, checkpointer: Checkpointer, access_file: PathBuf) -> BackupSource {
        BackupSource {
            cases,
            checkpointer,
            access_file,
            running: Arc::new(Semaphore::new(1)),
        }
    }

    /// Checks the request, signs the checkpoint and starts streaming; the
    /// receiver yields the parts in order.
    pub async fn start(
        &self,
        principal: &str,
        req: pb::BackupRequest,
    ) -> Result<mpsc::Receiver<Result<pb::BackupPart, Status>>, Status> {
        let after_hash: Option<[u8; HASH_LEN]> = match (req.after_seq, req.after_hash.len()) {
            (0, 0) => None,
            (0, _) => {
                return Err(invalid_argument(
                    "after_hash",
                    "must be empty when after_seq is 0",
                ))
            }
            (_, HASH_LEN) => Some(req.after_hash[..].try_into().expect("32")),
            (_, _) => {
                return Err(invalid_argument(
                    "after_hash",
                    "must be the 32-byte chain hash of record after_seq",
                ))
            }
        };
        let permit = self
            .running
            .clone()
            .try_acquire_owned()
            .map_err(|_| limit_exceeded("backup", "one backup at a time: another backup is running"))?;
        let this = self.clone();
        let after_seq = req.after_seq;
        let start = tokio::task::spawn_blocking(move || this.prepare(after_seq, after_hash))
            .await
            .map_err(|_| Status::internal("internal error"))??;
        tracing::info!(
            principal,
            first_seq = start.first_seq,
            last_seq = start.last_seq,
            "backup started"
        );
        let (tx, rx) = mpsc::channel(BUFFERED_MESSAGES);
        let this = self.clone();
        let principal = principal.to_string();
        tokio::spawn(async move {
            let _permit = permit;
            let (first, last) = (start.first_seq, start.last_seq);
            if tx.send(part(pb::backup_part::Part::Start(start))).await.is_err() {
                return;
            }
            match this.stream(&tx, first, last).await {
                Ok((records, keys)) => {
                    tracing::info!(principal, records, keys, last_seq = last, "backup streamed");
                    let _ = tx
                        .send(part(pb::backup_part::Part::End(pb::BackupEnd { records, keys })))
                        .await;
                }
                Err(status) => {
                    tracing::warn!(principal, code = ?status.code(), "backup stopped");
                    let _ = tx.send(Err(status)).await;
                }
            }
        });
        Ok(rx)
    }

    /// Signs a checkpoint and checks that the previous backup continues this log.
    fn prepare(&self, after_seq: u64, after_hash: Option<[u8; HASH_LEN]>) -> Result<pb::BackupStart, Status> {
        let internal = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "backup: cannot prepare");
            Status::internal("internal error")
        };
        // Everything acknowledged before the request is in the backup: the
        // Merkle follower reaches the head of now before the checkpoint is signed.
        let head = self.cases.store().head().map_err(|e| internal(&e))?.seq;
        let deadline = std::time::Instant::now() + MERKLE_WAIT;
        while self.checkpointer.tree().size() < head {
            if std::time::Instant::now() > deadline {
                return Err(Status::unavailable(
                    "the Merkle follower has not reached the head of the log; retry the backup",
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let cp = self.checkpointer.checkpoint_now().map_err(|e| internal(&e))?;
        let last_seq = cp.checkpoint.size;
        if let Some(want) = after_hash {
            let differs = |why: String| {
                failed_precondition(
                    "BACKUP_CHAIN_DIFFERS",
                    "after_seq",
                    &format!("the previous backup does not continue this server's log: {why}"),
                )
            };
            if after_seq > last_seq {
                return Err(differs(format!(
                    "it reaches seq {after_seq}, this server's latest checkpoint covers {last_seq} records"
                )));
            }
            let entry = self
                .cases
                .store()
                .raw_get(after_seq)
                .map_err(|e| internal(&e))?
                .ok_or_else(|| internal(&format!("record {after_seq} missing below the checkpoint")))?;
            let (_, hash) = split_stored(&entry).map_err(|e| internal(&e))?;
            if hash != want {
                return Err(differs(format!("record {after_seq} has another chain hash here")));
            }
        }
        let access_file = std::fs::read(&self.access_file).map_err(|e| internal(&e))?;
        let key_handovers =
            crate::audit::checkpoint::stored_handovers(self.cases.store().db()).map_err(|e| internal(&e))?;
        Ok(pb::BackupStart {
            checkpoint: cp.note,
            verifier_key: self.checkpointer.signer().verifier().vkey(),
            first_seq: after_seq + 1,
            last_seq,
            access_file,
            master_key_ids: vec![self.cases.master_key_id()],
            key_handovers,
        })
    }

    async fn stream(&self, tx: &Sender, first: u64, last: u64) -> Result<(u64, u64), Status> {
        let full = first == 1;
        let mut streams = BTreeSet::new();
        let mut next = first;
        let mut records = 0u64;
        while next <= last {
            let this = self.clone();
            let collect_streams = !full;
            let (msg, ids) = tokio::task::spawn_blocking(move || this.records(next, last, collect_streams))
                .await
                .map_err(|_| Status::internal("internal error"))??;
            next += msg.entries.len() as u64;
            records += msg.entries.len() as u64;
            streams.extend(ids);
            if tx.send(part(pb::backup_part::Part::Records(msg))).await.is_err() {
                return Err(Status::cancelled("the client went away"));
            }
        }
        // The keys: every entry for a full backup; for an incremental one the
        // entries of the streams its records touch, and the blind-index key.
        // Sent from the blocking pool as they are read (a full backup's
        // keys are not held in memory).
        let this = self.clone();
        let tx = tx.clone();
        let keys = tokio::task::spawn_blocking(move || this.send_keys(&tx, full, streams))
            .await
            .map_err(|_| Status::internal("internal error"))??;
        Ok((records, keys))
    }

    /// Up to one message of records from `from`, and the streams they touch.
    fn records(
        &self,
        from: u64,
        last: u64,
        collect: bool,
    ) -> Result<(pb::BackupRecords, Vec<String>), Status> {
        let mut entries = Vec::new();
        let mut ids = Vec::new();
        let mut bytes = 0usize;
        for kv in self.cases.store().raw_range(from, last) {
            let (seq, entry) = kv.map_err(|e| {
                tracing::error!(error = %e, "backup: cannot read the log");
                Status::internal("internal error")
            })?;
            if seq != from + entries.len() as u64 {
                tracing::error!(seq, "backup: a record is missing from the log");
                return Err(Status::internal("internal error"));
            }
            if collect {
                let (record, _) = split_stored(&entry).map_err(|_| Status::internal("internal error"))?;
                let r = Record::decode(record).map_err(|_| Status::internal("internal error"))?;
                ids.push(r.stream_id);
            }
            bytes += entry.len();
            entries.push(entry.to_vec());
            if entries.len() == RECORDS_PER_MESSAGE || bytes >= RECORD_BYTES_PER_MESSAGE {
                break;
            }
        }
        if entries.is_empty() {
            tracing::error!(seq = from, "backup: a record is missing from the log");
            return Err(Status::internal("internal error"));
        }
        Ok((
            pb::BackupRecords {
                first_seq: from,
                entries,
            },
            ids,
        ))
    }

    fn send_keys(&self, tx: &Sender, full: bool, streams: BTreeSet<String>) -> Result<u64, Status> {
        let internal = |e: crate::pii::PiiError| {
            tracing::error!(error = %e, "backup: cannot read the person keys");
            Status::internal("internal error")
        };
        let keys = self.cases.keys();
        let mut batch = pb::BackupKeys::default();
        let mut sent = 0u64;
        let mut push = |batch: &mut pb::BackupKeys, id: &[u8], value: &[u8]| -> Result<(), Status> {
            batch.keys.push(pb::WrappedKey {
                id: String::from_utf8_lossy(id).into_owned(),
                value: value.to_vec(),
            });
            sent += 1;
            if batch.keys.len() == KEYS_PER_MESSAGE {
                tx.blocking_send(part(pb::backup_part::Part::Keys(std::mem::take(batch))))
                    .map_err(|_| Status::cancelled("the client went away"))?;
            }
            Ok(())
        };
        if full {
            for kv in keys.raw_entries() {
                let (id, value) = kv.map_err(internal)?;
                push(&mut batch, &id, &value)?;
            }
        } else {
            let mut ids: Vec<&str> = streams.iter().map(String::as_str).collect();
            ids.push(crate::pii::BLIND_INDEX_ID);
            ids.sort_unstable();
            for id in ids {
                if let Some(value) = keys.raw_entry(id).map_err(internal)? {
                    push(&mut batch, id.as_bytes(), &value)?;
                }
            }
        }
        if !batch.keys.is_empty() {
            tx.blocking_send(part(pb::backup_part::Part::Keys(batch)))
                .map_err(|_| Status::cancelled("the client went away"))?;
        }
        Ok(sent)
    }
}
