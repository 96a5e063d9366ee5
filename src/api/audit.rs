//! The `regularization.v1.Audit` gRPC service (proto/regularization/v1/audit.proto)
//! over the audit state that `audit::runtime` keeps up to date.
//!
//! Every sled access runs on the blocking pool. Records are returned exactly
//! as stored: sealed personal fields stay sealed.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Semaphore};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::pb;
use super::pb::audit_server::AuditServer;
use crate::audit::checkpoint::{CheckpointError, SignedCheckpoint};
use crate::audit::tree::TreeError;
use crate::audit::{merkle, receipt, verify, Audit, AuditError};
use crate::limits::{
    AUDIT_GET_EVENTS_BYTES_MAX, AUDIT_GET_EVENTS_MAX, AUDIT_TAIL_BUFFER_EVENTS, AUDIT_TAIL_STREAMS_MAX,
    AUDIT_VERIFY_PROGRESS_BUFFER, AUDIT_VERIFY_RUNS_MAX, GRPC_MESSAGE_BYTES_MAX, GRPC_RESPONSE_BYTES_MAX,
};
use crate::log::record::split_stored;
use crate::log::{Head, Store};

/// Why an `Audit` call failed: the audit state's own errors and the
/// service's (mapped to statuses in `api::status`).
#[derive(Debug, thiserror::Error)]
pub enum AuditServiceError {
    /// The audit state failed (tree, checkpoints, store, verification).
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// `sign_now` asked by someone other than an admin.
    #[error("only an admin may sign a checkpoint on demand (sign_now)")]
    SignNowNotAdmin,
    /// Every `VerifyLog` permit is taken.
    #[error("too many VerifyLog runs at once")]
    TooManyVerifyRuns,
    /// Every `TailLog` permit is taken.
    #[error("too many TailLog streams")]
    TooManyTailStreams,
    /// A request's blocking task panicked or was cancelled.
    #[error("audit task failed: {0}")]
    Task(tokio::task::JoinError),
    /// A `TailLog` read's blocking task panicked or was cancelled.
    #[error("{0}")]
    TailTask(tokio::task::JoinError),
    /// `TailLog` found no record at a seq below the published head.
    #[error("no record at seq {0} below the head")]
    TailMissing(u64),
}

impl AuditServiceError {
    fn invalid(field: &'static str, reason: &str) -> AuditServiceError {
        AuditServiceError::Audit(AuditError::InvalidArgument {
            field,
            reason: reason.to_string(),
        })
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuditError> + Send + 'static,
) -> Result<T, AuditServiceError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(AuditServiceError::Task(e)),
    }
}

/// The audit gRPC service. Cheap to clone.
#[derive(Clone)]
pub struct AuditService {
    audit: Audit,
    head_rx: watch::Receiver<Head>,
    tails: Arc<Semaphore>,
    verifies: Arc<Semaphore>,
}

impl AuditService {
    /// The service over `audit`; `TailLog` follows the heads of `head_rx`.
    pub fn new(audit: Audit, head_rx: watch::Receiver<Head>) -> AuditService {
        AuditService {
            audit,
            head_rx,
            tails: Arc::new(Semaphore::new(AUDIT_TAIL_STREAMS_MAX)),
            verifies: Arc::new(Semaphore::new(AUDIT_VERIFY_RUNS_MAX)),
        }
    }

    /// Wraps the service for tonic.
    pub fn into_server(self) -> AuditServer<AuditService> {
        AuditServer::new(self)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_RESPONSE_BYTES_MAX)
    }

    fn signed(&self, cp: SignedCheckpoint) -> pb::SignedCheckpoint {
        pb::SignedCheckpoint {
            note: cp.note,
            origin: cp.checkpoint.origin,
            tree_size: cp.checkpoint.size,
            root_hash: cp.checkpoint.root.to_vec(),
            verifier_key: cp.signed_by,
        }
    }

    /// `size`, or the latest checkpoint's size when 0.
    fn resolve_size(audit: &Audit, size: u64) -> Result<u64, AuditError> {
        if size != 0 {
            return Ok(size);
        }
        match audit.checkpointer.latest()? {
            Some(c) => Ok(c.checkpoint.size),
            None => Err(AuditError::NotFound("no checkpoint has been signed yet".into())),
        }
    }
}

type Stream<T> =
    Pin<Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        let principal = crate::auth::principal(&request)?;
        let req = request.into_inner();
        if req.sign_now && principal.role != crate::auth::Role::Admin {
            return Err(AuditServiceError::SignNowNotAdmin.into());
        }
        if req.sign_now && req.tree_size.is_some() {
            return Err(AuditServiceError::invalid("sign_now", "cannot be combined with tree_size").into());
        }
        let audit = self.audit.clone();
        let cp = blocking(move || {
            if let Some(size) = req.tree_size {
                return Ok(audit.checkpointer.at(size)?);
            }
            if req.sign_now {
                audit.tree.catch_up(&audit.store)?;
                return Ok(audit.checkpointer.checkpoint_now()?);
            }
            audit
                .checkpointer
                .latest()?
                .ok_or_else(|| AuditError::NotFound("no checkpoint has been signed yet".into()))
        })
        .await?;
        Ok(Response::new(self.signed(cp)))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let req = request.into_inner();
        if req.seq == 0 {
            return Err(AuditServiceError::invalid("seq", "must be at least 1").into());
        }
        if req.tree_size != 0 && req.seq > req.tree_size {
            return Err(AuditServiceError::invalid("tree_size", "must be at least seq").into());
        }
        let audit = self.audit.clone();
        let proof = blocking(move || {
            let size = AuditService::resolve_size(&audit, req.tree_size)?;
            if req.seq > size {
                return Err(AuditError::NotFound(format!(
                    "seq {} is not in the latest checkpoint (size {size})",
                    req.seq
                )));
            }
            let hashes = audit.tree.inclusion_proof(req.seq - 1, size)?;
            Ok(pb::InclusionProof {
                seq: req.seq,
                leaf_index: req.seq - 1,
                tree_size: size,
                leaf_hash: audit.tree.leaf(req.seq - 1)?.to_vec(),
                hashes: hashes.iter().map(|h| h.to_vec()).collect(),
                root_hash: audit.tree.root(size)?.to_vec(),
            })
        })
        .await?;
        Ok(Response::new(proof))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let req = request.into_inner();
        if req.to_size != 0 && req.from_size > req.to_size {
            return Err(AuditServiceError::invalid("from_size", "must not exceed to_size").into());
        }
        let audit = self.audit.clone();
        let proof = blocking(move || {
            let to = AuditService::resolve_size(&audit, req.to_size)?;
            if req.from_size > to {
                return Err(AuditError::InvalidArgument {
                    field: "from_size",
                    reason: format!(
                        "from_size {} exceeds the latest checkpoint's size {to}",
                        req.from_size
                    ),
                });
            }
            let hashes = audit.tree.consistency_proof(req.from_size, to)?;
            Ok(pb::ConsistencyProof {
                from_size: req.from_size,
                to_size: to,
                hashes: hashes.iter().map(|h| h.to_vec()).collect(),
                from_root: audit.tree.root(req.from_size)?.to_vec(),
                to_root: audit.tree.root(to)?.to_vec(),
            })
        })
        .await?;
        Ok(Response::new(proof))
    }

    async fn get_events(
        &self,
        request: Request<pb::GetEventsRequest>,
    ) -> Result<Response<pb::GetEventsResponse>, Status> {
        let req = request.into_inner();
        if req.from_seq == 0 {
            return Err(AuditServiceError::invalid("from_seq", "must be at least 1").into());
        }
        if req.limit as usize > AUDIT_GET_EVENTS_MAX {
            let reason = format!("must be at most {AUDIT_GET_EVENTS_MAX}");
            return Err(AuditServiceError::invalid("limit", &reason).into());
        }
        let limit = if req.limit == 0 {
            AUDIT_GET_EVENTS_MAX
        } else {
            req.limit as usize
        };
        let store = self.audit.store.clone();
        let resp = blocking(move || {
            let head = store.head()?.seq;
            let events = read_raw(&store, req.from_seq, limit, head)?;
            Ok(pb::GetEventsResponse {
                events,
                head_seq: head,
            })
        })
        .await?;
        Ok(Response::new(resp))
    }

    type VerifyLogStream = Stream<pb::VerifyLogProgress>;

    async fn verify_log(
        &self,
        _request: Request<pb::VerifyLogRequest>,
    ) -> Result<Response<Self::VerifyLogStream>, Status> {
        let permit = self
            .verifies
            .clone()
            .try_acquire_owned()
            .map_err(|_| AuditServiceError::TooManyVerifyRuns)?;
        let (tx, rx) = mpsc::channel(AUDIT_VERIFY_PROGRESS_BUFFER);
        let audit = self.audit.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let result = run_verify(&audit, &tx);
            let _ = tx.blocking_send(Ok(pb::VerifyLogProgress {
                phase: "done".into(),
                checked: result.events,
                total: result.events,
                result: Some(result),
            }));
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type TailLogStream = Stream<pb::LogRecord>;

    async fn tail_log(
        &self,
        request: Request<pb::TailLogRequest>,
    ) -> Result<Response<Self::TailLogStream>, Status> {
        let req = request.into_inner();
        if req.from_seq == 0 {
            return Err(AuditServiceError::invalid("from_seq", "must be at least 1").into());
        }
        let permit = self
            .tails
            .clone()
            .try_acquire_owned()
            .map_err(|_| AuditServiceError::TooManyTailStreams)?;
        let (tx, rx) = mpsc::channel(AUDIT_TAIL_BUFFER_EVENTS);
        let store = self.audit.store.clone();
        let mut head_rx = self.head_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut next = req.from_seq;
            loop {
                let head = head_rx.borrow_and_update().seq;
                while next <= head {
                    let s = store.clone();
                    let page = tokio::task::spawn_blocking(move || {
                        read_raw(&s, next, AUDIT_TAIL_BUFFER_EVENTS, head)
                    })
                    .await;
                    let page = match page {
                        Ok(Ok(p)) => p,
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(AuditServiceError::from(e).into())).await;
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(AuditServiceError::TailTask(e).into())).await;
                            return;
                        }
                    };
                    if page.is_empty() {
                        let _ = tx.send(Err(AuditServiceError::TailMissing(next).into())).await;
                        return;
                    }
                    for ev in page {
                        next = ev.seq + 1;
                        if tx.send(Ok(ev)).await.is_err() {
                            return; // the client went away
                        }
                    }
                }
                tokio::select! {
                    r = head_rx.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_receipt(
        &self,
        request: Request<pb::GetReceiptRequest>,
    ) -> Result<Response<pb::AuditReceipt>, Status> {
        let req = request.into_inner();
        if req.seq == 0 {
            return Err(AuditServiceError::invalid("seq", "must be at least 1").into());
        }
        let audit = self.audit.clone();
        let r = blocking(move || {
            let mut cp = audit.checkpointer.latest()?;
            if cp.as_ref().is_none_or(|c| c.checkpoint.size < req.seq) {
                if audit.tree.size() < req.seq {
                    return Err(AuditError::NotFound(format!(
                        "seq {} is not in the Merkle tree yet (size {})",
                        req.seq,
                        audit.tree.size()
                    )));
                }
                cp = Some(audit.checkpointer.checkpoint_now()?);
            }
            let cp = cp.expect("checkpoint");
            let receipt = receipt::build(&audit.store, &audit.tree, req.seq, &cp)?;
            Ok(pb::AuditReceipt {
                text: receipt.to_text(),
                seq: req.seq,
                tree_size: cp.checkpoint.size,
            })
        })
        .await?;
        Ok(Response::new(r))
    }

    async fn list_key_handovers(
        &self,
        _request: Request<pb::ListKeyHandoversRequest>,
    ) -> Result<Response<pb::ListKeyHandoversResponse>, Status> {
        Ok(Response::new(list_handovers(&self.audit)))
    }
}

/// The store's hand-overs, verified, as the gRPC message.
fn list_handovers(audit: &Audit) -> pb::ListKeyHandoversResponse {
    let chain = audit.checkpointer.chain();
    pb::ListKeyHandoversResponse {
        handovers: chain
            .handovers()
            .iter()
            .map(|h| pb::KeyHandover {
                note: h.note.clone(),
                tree_size: h.size,
                root_hash: h.root.to_vec(),
                old_verifier_key: h.old.vkey(),
                new_verifier_key: h.new.vkey(),
                signed_at: h.time.clone(),
            })
            .collect(),
        current_verifier_key: chain.current().vkey(),
    }
}

/// Raw records `from..` (at most `max`, never past `head`), exactly as stored.
fn read_raw(store: &Store, from: u64, max: usize, head: u64) -> Result<Vec<pb::LogRecord>, AuditError> {
    let mut out = Vec::new();
    if from > head {
        return Ok(out);
    }
    let mut bytes = 0usize;
    let range = store.raw_range(from, head).take(max);
    for (expected, kv) in (from..).zip(range) {
        let (seq, v) = kv.map_err(AuditError::from)?;

        if seq != expected {
            return Err(AuditError::FailedPrecondition(format!(
                "the log has a gap at seq {expected}"
            )));
        }
        let (record, hash) =
            split_stored(&v).map_err(|e| AuditError::invariant(format!("seq {seq}: {e}")))?;
        bytes += record.len() + 64;
        if !out.is_empty() && bytes > AUDIT_GET_EVENTS_BYTES_MAX {
            break; // the page is full; the caller asks again from `expected`
        }
        out.push(pb::LogRecord {
            seq,
            record: record.to_vec(),
            chain_hash: hash.to_vec(),
        });
    }
    Ok(out)
}

/// Why the persisted Merkle tree or the latest checkpoint do not agree
/// with the log as walked (`VerifyLogResult.reason`).
#[derive(Debug, thiserror::Error)]
enum TreeCheckError {
    /// The tree follower could not catch up.
    #[error("merkle tree follower: {0}")]
    Follower(#[source] TreeError),
    /// Reading the persisted tree failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The persisted tree's root differs from the one recomputed.
    #[error(
        "the persisted Merkle tree's root at size {size} is {}, recomputed from the records {}",
        crate::hex::encode(.persisted),
        crate::hex::encode(.recomputed)
    )]
    RootMismatch {
        /// The tree size.
        size: u64,
        /// The persisted tree's root.
        persisted: merkle::Hash,
        /// The root recomputed from the records.
        recomputed: merkle::Hash,
    },
    /// Reading the latest checkpoint failed.
    #[error(transparent)]
    Checkpoints(#[from] CheckpointError),
    /// The latest checkpoint commits to more events than the log has.
    #[error("the latest checkpoint commits to {old} events, the log has {new}")]
    CheckpointAhead {
        /// The checkpoint's size.
        old: u64,
        /// Events in the log.
        new: u64,
    },
    /// The log does not extend the latest checkpoint's tree.
    #[error("the log is not consistent with the latest checkpoint (size {old}): {source}")]
    Inconsistent {
        /// The checkpoint's size.
        old: u64,
        /// Why the consistency proof fails.
        source: merkle::ProofError,
    },
}

fn run_verify(
    audit: &Audit,
    tx: &mpsc::Sender<Result<pb::VerifyLogProgress, Status>>,
) -> pb::VerifyLogResult {
    let fail = |seq: u64, reason: String| pb::VerifyLogResult {
        ok: false,
        broken_at_seq: seq,
        reason,
        ..Default::default()
    };
    let head = match audit.store.head() {
        Ok(h) => h,
        Err(e) => return fail(0, e.to_string()),
    };
    let total = head.seq;
    let walk = verify::walk_log(&audit.store, head, &mut |n| {
        let _ = tx.blocking_send(Ok(pb::VerifyLogProgress {
            phase: "walk".into(),
            checked: n,
            total,
            result: None,
        }));
    });
    let walk = match walk {
        Ok(w) => w,
        Err(verify::Mismatch::Broken { seq, reason }) => return fail(seq, reason),
        Err(e) => return fail(0, e.to_string()),
    };
    let mut result = pb::VerifyLogResult {
        ok: true,
        events: walk.events,
        head_hash: walk.head_hash.to_vec(),
        root_hash: walk.root.to_vec(),
        ..Default::default()
    };
    // The persisted tree and the latest checkpoint must agree with the recomputed root.
    let tree_check = (|| -> Result<(), TreeCheckError> {
        if let Err(e) = audit.tree.catch_up(&audit.store) {
            return Err(TreeCheckError::Follower(e));
        }
        let tree_root = audit.tree.root(walk.events)?;
        if tree_root != walk.root {
            return Err(TreeCheckError::RootMismatch {
                size: walk.events,
                persisted: tree_root,
                recomputed: walk.root,
            });
        }
        if let Some(latest) = audit.checkpointer.latest()? {
            let (old, new) = (latest.checkpoint.size, walk.events);
            if old > new {
                return Err(TreeCheckError::CheckpointAhead { old, new });
            }
            let proof = audit.tree.consistency_proof(old, new)?;
            merkle::verify_consistency(old, new, &latest.checkpoint.root, &walk.root, &proof)
                .map_err(|source| TreeCheckError::Inconsistent { old, source })?;
        }
        Ok(())
    })();
    match tree_check {
        Ok(()) => result.tree_matches = true,
        Err(reason) => {
            result.ok = false;
            result.reason = reason.to_string();
        }
    }
    result
}
