//! Auditors' tools: an RFC 9162 Merkle tree over the log (BLAKE3), signed
//! C2SP checkpoints, inclusion and consistency proofs, per-event receipts,
//! binary exports with an offline verifier, and the audit gRPC service.
//! Formats are specified in docs/AUDIT.md.
//!
//! - [`merkle`]: pure hashing, proofs and step-by-step verifiers.
//! - [`tree`]: the persisted incremental tree and the log follower.
//! - [`checkpoint`]: signed notes, keys, checkpoint history.
//! - [`handover`]: signed hand-overs from one audit key to the next, key chains.
//! - [`receipt`]: per-event receipts (C2SP tlog-proof).
//! - [`export`]: binary exports and their offline verification.
//! - [`verify`]: a log against a checkpoint (truncation, rewritten tails).
//! - [`runtime`]: the follower and the periodic checkpointer of `registry serve`
//!   (the `Audit` gRPC service is `api::audit`).
//! - [`mod@bench`]: `registry bench audit`.

pub mod bench;
pub mod checkpoint;
pub mod cosign;
pub mod export;
pub mod handover;
pub mod merkle;
pub mod receipt;
pub mod runtime;
pub mod tree;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::limits::AUDIT_CHECKPOINT_INTERVAL_SECS_DEFAULT;
use crate::log::Store;

use checkpoint::{CheckpointError, Checkpointer, NoteError, NoteSigner, KEY_FILE_NAME};
use merkle::ProofError;
use tree::{MerkleTree, TreeError};

/// Errors of the audit module, each mapping to one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A request field out of range: answered INVALID_ARGUMENT with a
    /// BadRequest naming `field`.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The request field at fault (`seq`, `from_size`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// What was asked for does not exist (yet): a tree size the tree has
    /// not reached, a checkpoint not signed, an event past the head.
    /// Answered NOT_FOUND with this text.
    #[error("{0}")]
    NotFound(String),
    /// The log or tree is not in a state that can answer (a gap in the log,
    /// a bad record, a log behind its tree, inconsistent checkpoints).
    /// Answered FAILED_PRECONDITION with this text.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Anything else (sled, signing, a proof that cannot be built): logged
    /// and answered INTERNAL.
    #[error("{0}")]
    Internal(#[source] AuditInternal),
}

/// What failed inside the audit service, with the typed error it came from.
#[derive(Debug, thiserror::Error)]
pub enum AuditInternal {
    /// The Merkle tree's storage.
    #[error(transparent)]
    Tree(TreeError),
    /// A proof the tree could not build.
    #[error(transparent)]
    Proof(ProofError),
    /// Signing or storing a checkpoint.
    #[error(transparent)]
    Checkpoint(CheckpointError),
    /// A signed note (a checkpoint or a hand-over).
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The log store.
    #[error(transparent)]
    Store(#[from] crate::log::StoreError),
    /// A blocking-pool task that panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// Stored data that breaks an invariant the audit relies on (what, and
    /// at which seq or size).
    #[error("{0}")]
    Invariant(String),
}

impl AuditError {
    /// An [`AuditInternal::Invariant`]: `what` broke an invariant.
    pub fn invariant(what: impl Into<String>) -> AuditError {
        AuditError::Internal(AuditInternal::Invariant(what.into()))
    }
}

impl<E: Into<AuditInternal>> From<E> for AuditError {
    fn from(e: E) -> AuditError {
        AuditError::Internal(e.into())
    }
}

impl From<TreeError> for AuditError {
    fn from(e: TreeError) -> Self {
        match e {
            TreeError::Proof(p) => p.into(),
            TreeError::Gap { .. } | TreeError::BadRecord { .. } | TreeError::LogBehindTree { .. } => {
                AuditError::FailedPrecondition(e.to_string())
            }
            other => AuditError::Internal(AuditInternal::Tree(other)),
        }
    }
}

impl From<ProofError> for AuditError {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::SizeNotAvailable { .. } => AuditError::NotFound(e.to_string()),
            ProofError::IndexOutOfRange { .. } => AuditError::InvalidArgument {
                field: "seq",
                reason: e.to_string(),
            },
            ProofError::SizesOutOfOrder { .. } => AuditError::InvalidArgument {
                field: "from_size",
                reason: e.to_string(),
            },
            other => AuditError::Internal(AuditInternal::Proof(other)),
        }
    }
}

impl From<CheckpointError> for AuditError {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::Tree(t) => t.into(),
            CheckpointError::NotFound(_) => AuditError::NotFound(e.to_string()),
            CheckpointError::Inconsistent { .. } => AuditError::FailedPrecondition(e.to_string()),
            other => AuditError::Internal(AuditInternal::Checkpoint(other)),
        }
    }
}

/// How the audit part is set up.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Signing key file; default `<data_dir>/audit-signing.key`, created on first start.
    /// A named file must exist.
    pub key_file: Option<PathBuf>,
    /// Origin (checkpoint origin line and key name); default: the key's name,
    /// or [`checkpoint::DEFAULT_ORIGIN`] for a new key.
    pub origin: Option<String>,
    /// Interval between periodic checkpoints (only signed if the tree grew).
    pub checkpoint_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            key_file: None,
            origin: None,
            checkpoint_interval: Duration::from_secs(AUDIT_CHECKPOINT_INTERVAL_SECS_DEFAULT),
        }
    }
}

impl AuditConfig {
    /// Loads the signing key (creating the default one on first start when `create`).
    pub fn load_signer(&self, data_dir: &Path, create: bool) -> Result<NoteSigner, NoteError> {
        let (path, create) = match &self.key_file {
            Some(p) => (p.clone(), false),
            None => (data_dir.join(KEY_FILE_NAME), create),
        };
        let (signer, created) = NoteSigner::load_or_create(&path, self.origin.as_deref(), create)?;
        if created {
            tracing::warn!(
                path = %path.display(),
                vkey = %signer.verifier().vkey(),
                "audit signing key created; publish the verifier key to auditors and keep the file safe"
            );
        }
        Ok(signer)
    }
}

/// The open audit state over one store: the tree and the checkpointer.
#[derive(Clone)]
pub struct Audit {
    /// The store the tree is built over.
    pub store: Store,
    /// The persisted Merkle tree over the log.
    pub tree: MerkleTree,
    /// Signs checkpoints and keeps their history.
    pub checkpointer: Checkpointer,
}

impl Audit {
    /// Opens the tree and the signer, and catches the tree up with the log. Blocking.
    pub fn open(store: &Store, config: &AuditConfig, create_key: bool) -> Result<Audit, AuditError> {
        let signer = config.load_signer(store.dir(), create_key)?;
        let tree = MerkleTree::open(store.db())?;
        tree.catch_up(store)?;
        let checkpointer = Checkpointer::open(store.db(), tree.clone(), signer)?;
        Ok(Audit {
            store: store.clone(),
            tree,
            checkpointer,
        })
    }
}
