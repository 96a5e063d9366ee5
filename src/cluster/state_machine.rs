//! The state machine: the node's own v2 store. Each committed `Append`
//! entry's records are checked link by link against this node's head and
//! applied through the [`Applier`] (chunks, head, case files), together with
//! the applied Raft position (key `r` of the `log` tree) in the same sled
//! batch, so the store and the position it reflects never disagree. A node
//! whose chain check fails stops: it announces why, stops applying, and the
//! server exits; it never re-signs or repairs.

// openraft's StorageError (224 bytes) is what its storage traits return.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};

use super::trees;
use super::types::{decode, encode, Applied, Command, LogId, Member, NodeId, StorageError, TypeConfig};
use crate::log::{Applier, ApplyError, Head};

/// Key of the applied Raft position in the `log` tree.
pub const APPLIED_KEY: &[u8] = b"r";

type Membership = StoredMembership<NodeId, Member>;

/// The state machine of one node.
#[derive(Clone)]
pub struct StateMachine {
    applier: Arc<Mutex<Applier>>,
    db: sled::Db,
    last_applied: Option<LogId>,
    membership: Membership,
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
    pub fn open(db: sled::Db, applier: Arc<Mutex<Applier>>) -> Result<StateMachine, StorageError> {
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
            db,
            last_applied,
            membership,
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
            }) => {
                let pos = self.position()?;
                let expected = Head {
                    seq: head_seq,
                    hash: head_hash,
                };
                // Durable through the Raft log: after a crash the entries
                // after the stored position are applied again.
                let mut applier = self.applier();
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
                let result = trees::apply(&self.db, &write, (APPLIED_KEY, pos))
                    .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                Ok(Applied::Trees(result))
            }
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        Err(sm_err(
            ErrorVerb::Read,
            "snapshots are not built yet: a new or lagging node replays the Raft log",
        ))
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Err(sm_err(
            ErrorVerb::Write,
            "this node does not install snapshots yet",
        ))
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<NodeId, Member>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        Err(sm_err(
            ErrorVerb::Write,
            "this node does not install snapshots yet",
        ))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(None)
    }
}
