//! The state machine: the node's own v2 store. Each committed `Append`
//! entry's records are checked link by link against this node's head and
//! applied through the [`Applier`] (chunks, head, case files), together with
//! the applied Raft position (key `r` of the `log` tree) in the same sled
//! batch, so the store and the position it reflects never disagree. A node
//! whose chain check fails stops: it announces why, stops applying, and the
//! server exits; it never re-signs or repairs.

// openraft's StorageError (224 bytes) is what its storage traits return.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};

use super::snapshot::{self, SnapshotError};
use super::trees;
use super::types::{decode, encode, Applied, Command, LogId, Member, NodeId, StorageError, TypeConfig};
use crate::audit::checkpoint::Checkpointer;
use crate::log::side::SideTrees;
use crate::log::{Applier, ApplyError, Head};

/// Where the snapshot builder finds this node's checkpointer once audit runs.
pub type CheckpointerSlot = Arc<OnceLock<Checkpointer>>;

/// How long a snapshot build waits for this node's audit to start.
pub const BUILD_WAIT_AUDIT_MS: u64 = 60_000;

/// What the state machine needs for snapshots.
#[derive(Clone)]
pub struct SnapshotConfig {
    /// This node's snapshot directory (`<data-dir>/snapshots`).
    pub dir: PathBuf,
    /// This node's id (the builder named in its snapshots).
    pub me: NodeId,
    /// The members' audit verifier keys the cluster file pins.
    pub pinned: BTreeMap<NodeId, String>,
    /// This node's checkpointer, set once audit runs: a snapshot carries its
    /// latest signed checkpoint (a build waits up to [`BUILD_WAIT_AUDIT_MS`]).
    pub checkpointer: CheckpointerSlot,
    /// Before-images of side-tree entries changed while a snapshot reads the trees.
    pub capture: snapshot::Capture,
    /// When a build last failed: the next waits [`BUILD_RETRY_MS`].
    pub failed_at: Arc<Mutex<Option<std::time::Instant>>>,
}

/// How long after a failed snapshot build the next one waits (openraft
/// asks again with every entry applied).
pub const BUILD_RETRY_MS: u64 = 60_000;

/// Key of the applied Raft position in the `log` tree.
pub const APPLIED_KEY: &[u8] = b"r";

type Membership = StoredMembership<NodeId, Member>;

/// The state machine of one node.
#[derive(Clone)]
pub struct StateMachine {
    applier: Arc<Mutex<Applier>>,
    db: sled::Db,
    side_trees: SideTrees,
    last_applied: Option<LogId>,
    membership: Membership,
    snapshots: SnapshotConfig,
    /// The file a snapshot being received is written to.
    incoming: Option<PathBuf>,
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(
        ErrorSubject::StateMachine,
        verb,
        openraft::AnyError::error(e.to_string()),
    )
    .into()
}

impl StateMachine {
    /// Opens the state machine over this node's store: clears what an
    /// interrupted snapshot left in the snapshot directory and reads the
    /// applied Raft position and membership from the `log` tree (none on a
    /// new store).
    pub fn open(
        db: sled::Db,
        applier: Arc<Mutex<Applier>>,
        snapshots: SnapshotConfig,
    ) -> Result<StateMachine, StorageError> {
        snapshot::clean(&snapshots.dir).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let stored = {
            let a = applier.lock().unwrap_or_else(|p| p.into_inner());
            a.get_extra(APPLIED_KEY).map_err(|e| sm_err(ErrorVerb::Read, e))?
        };
        let (last_applied, membership) = match stored {
            Some(v) => decode::<(Option<LogId>, Membership)>(&v).map_err(|e| sm_err(ErrorVerb::Read, e))?,
            None => (None, Membership::default()),
        };
        Ok(StateMachine {
            applier,
            side_trees: SideTrees::open(&db).map_err(|e| sm_err(ErrorVerb::Read, e))?,
            db,
            last_applied,
            membership,
            snapshots,
            incoming: None,
        })
    }

    fn applier(&self) -> std::sync::MutexGuard<'_, Applier> {
        self.applier.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn position(&self) -> Result<Vec<u8>, StorageError> {
        encode(&(self.last_applied, &self.membership)).map_err(|e| sm_err(ErrorVerb::Write, e))
    }

    fn apply_one(&mut self, entry: openraft::Entry<TypeConfig>) -> Result<Applied, StorageError> {
        self.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => {
                let pos = self.position()?;
                self.applier()
                    .put_extra(&[(APPLIED_KEY, pos)])
                    .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                Ok(Applied::Nothing)
            }
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m);
                let pos = self.position()?;
                self.applier()
                    .put_extra(&[(APPLIED_KEY, pos)])
                    .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                Ok(Applied::Nothing)
            }
            EntryPayload::Normal(Command::Append {
                records,
                head_seq,
                head_hash,
                side,
            }) => {
                let pos = self.position()?;
                let expected = Head {
                    seq: head_seq,
                    hash: head_hash,
                };
                // Durable through the Raft log: after a crash the entries
                // after the stored position are applied again (the side
                // writes set the same values again). Under the applier, so
                // a snapshot build sees the entry wholly before its position
                // or wholly after it (through its capture).
                let mut applier = self.applier();
                let capture = &self.snapshots.capture;
                self.side_trees
                    .apply(&side, |i, tree, key| {
                        capture.before_write(i, key, || tree.get(key).map(|v| v.map(|v| v.to_vec())))
                    })
                    .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                let records = match applier.not_yet_applied(&records, expected) {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        applier
                            .put_extra(&[(APPLIED_KEY, pos)])
                            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                        return Ok(Applied::Appended { head_seq });
                    }
                    Err(reason) => {
                        let reason = ApplyError::Held(reason);
                        applier.fail(format!(
                            "this node's store does not continue the cluster's log at Raft entry {}: {reason}; replace its store from a healthy node (docs/CLUSTER.md)",
                            entry.log_id.index
                        ));
                        return Err(sm_err(ErrorVerb::Write, reason));
                    }
                };
                match applier.apply_records(&records, expected, &[(APPLIED_KEY, pos)], false) {
                    Ok(head) => Ok(Applied::Appended { head_seq: head.seq }),
                    Err(ApplyError::Diverged(reason)) => {
                        tracing::error!(index = entry.log_id.index, %reason, "this node's store does not continue the cluster's log; it stops");
                        applier.fail(format!(
                            "this node's store does not continue the cluster's log at Raft entry {}: {reason}; replace its store from a healthy node (docs/CLUSTER.md)",
                            entry.log_id.index
                        ));
                        Err(sm_err(ErrorVerb::Write, reason))
                    }
                    Err(e) => Err(sm_err(ErrorVerb::Write, e)),
                }
            }
            EntryPayload::Normal(Command::Trees(write)) => {
                let pos = self.position()?;
                // Under the applier, as an append's side writes (above).
                let _applier = self.applier();
                let result = trees::apply(&self.db, &write, (APPLIED_KEY, pos), &self.snapshots.capture)
                    .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                Ok(Applied::Trees(result))
            }
        }
    }
}

impl StateMachine {
    /// Builds a snapshot file and makes it the current one (blocking).
    fn build_blocking(
        applier: Arc<Mutex<Applier>>,
        db: sled::Db,
        cfg: SnapshotConfig,
    ) -> Result<(snapshot::Header, std::fs::File), SnapshotError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(BUILD_WAIT_AUDIT_MS);
        let checkpointer = loop {
            if let Some(c) = cfg.checkpointer.get() {
                break c.clone();
            }
            if std::time::Instant::now() >= deadline {
                return Err(SnapshotError::Store(
                    "this node's audit (its checkpoints) has not started".into(),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let partial = snapshot::partial_path(&cfg.dir, "build");
        let built = snapshot::build(&applier, &db, &checkpointer, cfg.me, &partial, None, &cfg.capture);
        let header = match built {
            Ok(h) => h,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        snapshot::publish(&cfg.dir, &partial, &header)?;
        let (header, file) = snapshot::open_current(&cfg.dir)?
            .ok_or_else(|| SnapshotError::Store("the snapshot just published is gone".into()))?;
        tracing::info!(
            index = header.last_log_id.map(|l| l.index),
            head_seq = header.head_seq,
            "snapshot built"
        );
        Ok((header, file))
    }

    /// Verifies and installs a received snapshot (blocking).
    fn install_blocking(
        applier: Arc<Mutex<Applier>>,
        db: sled::Db,
        cfg: SnapshotConfig,
        path: PathBuf,
        meta: SnapshotMeta<NodeId, Member>,
    ) -> Result<snapshot::Header, SnapshotError> {
        let started = std::time::Instant::now();
        let verified = snapshot::verify(&path, &cfg.pinned)?;
        let header = verified.header;
        if header.last_log_id != meta.last_log_id || header.membership != meta.last_membership {
            return Err(SnapshotError::Invalid {
                path: path.clone(),
                reason: "its header is not of the entry the leader announced".into(),
            });
        }
        let position = encode(&(header.last_log_id, &header.membership))
            .map_err(|e| SnapshotError::Store(e.to_string()))?;
        // A build reading the trees meanwhile starts again.
        cfg.capture.invalidate();
        snapshot::install(&path, &applier, &db, (APPLIED_KEY, position))?;
        cfg.capture.invalidate();
        snapshot::publish(&cfg.dir, &path, &header)?;
        tracing::info!(
            index = header.last_log_id.map(|l| l.index),
            head_seq = header.head_seq,
            records = verified.records,
            checkpoint_size = verified.checkpoint_size,
            built_by = header.built_by,
            checkpoint_key = %header.signed_by,
            ms = started.elapsed().as_millis() as u64,
            "snapshot verified and installed"
        );
        Ok(header)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (applier, db, cfg) = (self.applier.clone(), self.db.clone(), self.snapshots.clone());
        let backing_off = cfg
            .failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(BUILD_RETRY_MS));
        let built = if backing_off {
            Err(SnapshotError::Store(
                "the last build failed less than a minute ago".into(),
            ))
        } else {
            let failed_at = cfg.failed_at.clone();
            let built = tokio::task::spawn_blocking(move || StateMachine::build_blocking(applier, db, cfg))
                .await
                .map_err(|e| sm_err(ErrorVerb::Write, e))?;
            if built.is_err() {
                *failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
            }
            built
        };
        let (header, file) = match built {
            Ok(b) => b,
            Err(e) => {
                // Keep serving with the snapshot this node has (openraft
                // ignores one no newer than its current); the next build
                // comes with the next entries. Without any snapshot the
                // error is fatal: Raft stops and the node stops with it.
                if !backing_off {
                    tracing::error!(error = %e, "building a snapshot failed; the previous snapshot stays current, the next build comes in a minute");
                }
                let dir = self.snapshots.dir.clone();
                let previous = tokio::task::spawn_blocking(move || snapshot::open_current(&dir))
                    .await
                    .map_err(|je| sm_err(ErrorVerb::Read, je))?
                    .map_err(|pe| sm_err(ErrorVerb::Read, pe))?;
                previous.ok_or_else(|| sm_err(ErrorVerb::Write, e))?
            }
        };
        Ok(Snapshot {
            meta: header.meta(),
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            out.push(self.apply_one(entry)?);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        if let Some(stale) = self.incoming.take() {
            let _ = std::fs::remove_file(stale);
        }
        let path = snapshot::partial_path(&self.snapshots.dir, "incoming");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.incoming = Some(path);
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        use tokio::io::AsyncWriteExt;
        let mut file = snapshot;
        file.flush().await.map_err(|e| sm_err(ErrorVerb::Write, e))?;
        file.sync_all().await.map_err(|e| sm_err(ErrorVerb::Write, e))?;
        drop(file);
        let path = self
            .incoming
            .take()
            .ok_or_else(|| sm_err(ErrorVerb::Write, "no snapshot is being received"))?;
        let (applier, db, cfg, meta) = (
            self.applier.clone(),
            self.db.clone(),
            self.snapshots.clone(),
            meta.clone(),
        );
        let installed =
            tokio::task::spawn_blocking(move || StateMachine::install_blocking(applier, db, cfg, path, meta))
                .await
                .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        match installed {
            Ok(header) => {
                self.last_applied = header.last_log_id;
                self.membership = header.membership;
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "a received snapshot was refused; this node stops");
                self.applier().fail(format!(
                    "a snapshot received from the leader was refused: {e}; replace this node's store from a healthy node (docs/CLUSTER.md)"
                ));
                Err(sm_err(ErrorVerb::Write, e))
            }
        }
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let dir = self.snapshots.dir.clone();
        let current = tokio::task::spawn_blocking(move || snapshot::open_current(&dir))
            .await
            .map_err(|e| sm_err(ErrorVerb::Read, e))?
            .map_err(|e| sm_err(ErrorVerb::Read, e))?;
        Ok(current.map(|(header, file)| Snapshot {
            meta: header.meta(),
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}
