//! The case service: everything a command or a case read does between the
//! wire and the log, with no prost types.
//!
//! A command: load the case's events and fold them ([`CaseState`]), seal the
//! personal fields with the person's key, let the domain decide, reserve
//! identity documents in the look-up index, append the events with the
//! caller's expected version, and keep the index and keys in step (erasure).
//!
//! Retries: the request id is looked up first. If it was already used, the
//! command is decided again against the case *as it was before* that request,
//! and the writer compares fingerprints: the same request gets the original
//! result, another request under the same id is refused. Sealing uses a
//! synthetic nonce per request ([`pii::seal_for_request`]) so that a retry
//! seals to the same bytes.
//!
//! The service is split by concern: `command` (preparing and finishing a
//! command), `family` (commands on two cases), `identity` (sealing
//! personal data), `documents` (the document look-up index), `access`
//! (the access log), `policy` (the policy stream) and `error`.

use std::sync::Arc;

use crate::case_cache::CaseCache;
use crate::codec;
use crate::domain::{CaseState, Event, PolicyBook};
use crate::log::{Appender, Store};
use crate::pii::{self, BlindIndexer, KeyStore};

mod access;
mod command;
mod documents;
mod error;
mod family;
mod identity;
mod policy;

pub use access::{AccessEntry, AccessRecord, ACCESS_EVENT_TYPE, ACCESS_STREAM_PREFIX};
pub use command::{in_scope, CommandContext, CommandOutcome, PendingCommand};
pub use documents::{rebuild_document_index, DocumentIndexReport, TREE_DOCUMENTS};
pub use error::CaseError;
pub use family::LinkOutcome;
pub use identity::{Identity, IdentityDocument, FIELD_IDENTITY, FIELD_PERMIT_NUMBER, FIELD_VISA_NUMBER};
pub use policy::{load_policy, POLICY_GENESIS_REQUEST};

/// Events a case may hold that `get_case` folds (a case has a few dozen).
const CASE_EVENTS_MAX: usize = crate::limits::READ_PAGE_EVENTS_MAX;

/// A case as read back: state, version, identity in clear (unless erased),
/// and its events.
pub struct CaseView {
    /// The case id.
    pub case_id: String,
    /// The case's version (events in its stream) when read.
    pub version: u64,
    /// The case folded over every event read.
    pub state: CaseState,
    /// The person's identifying data opened (`None` once erased, or before registration).
    pub identity: Option<Identity>,
    /// The latest permit's number opened (`None` once erased, or without a permit).
    pub permit_number: Option<String>,
    /// The visa's number opened (`None` once erased, or without a visa).
    pub visa_number: Option<String>,
    /// The case's events: as stored, and decoded.
    pub events: Vec<(crate::log::StoredEvent, Event)>,
}

/// The case service. Cheap to clone; shared by every request handler.
#[derive(Clone)]
pub struct Cases {
    shared: Arc<Shared>,
}

/// What every clone of [`Cases`] shares.
struct Shared {
    appender: Appender,
    store: Store,
    keys: KeyStore,
    blind: BlindIndexer,
    /// The document index: blind index -> holding case (replicated on a cluster node).
    documents: crate::log::side::SideTree,
    /// The policy stream folded: the rules commands are decided with.
    policy: std::sync::RwLock<Arc<PolicyBook>>,
    /// Serializes policy appends (each is checked against the book it extends).
    policy_writes: tokio::sync::Mutex<()>,
    /// Folded states of recently changed cases (see [`crate::case_cache`]).
    cache: CaseCache,
    /// Access events recorded, by operation (metrics; no case, no principal).
    access_events: crate::metrics::OperationCounter,
}

/// Derives the case id of a registration from its request id, so a retried
/// registration names the same case: `C-` and 20 hex digits (80 bits).
pub fn case_id_for_request(request_id: &str) -> String {
    let h = blake3::Hasher::new()
        .update(b"migreg.case-id.v1\0")
        .update(request_id.as_bytes())
        .finalize();
    let hex = crate::hex::encode(&h.as_bytes()[..10]);
    format!("C-{hex}")
}

impl Cases {
    /// Opens the case service on `store`, folding its policy stream.
    pub fn new(appender: Appender, store: Store, keys: KeyStore) -> Result<Cases, CaseError> {
        let blind = keys.blind_indexer()?;
        let documents = crate::log::side::SideTree::new(
            TREE_DOCUMENTS,
            store.db().open_tree(TREE_DOCUMENTS)?,
            store.side_slot().clone(),
        );
        let policy = load_policy(&store)?;
        Ok(Cases {
            shared: Arc::new(Shared {
                appender,
                store,
                keys,
                blind,
                documents,
                policy: std::sync::RwLock::new(Arc::new(policy)),
                policy_writes: tokio::sync::Mutex::new(()),
                cache: CaseCache::new(crate::limits::CASE_STATE_CACHE_MAX),
                access_events: Default::default(),
            }),
        })
    }

    /// Re-wraps every person key under `new_master` (blocking; see
    /// [`KeyStore::rewrap_all`]); events are not touched. Returns how many
    /// keys were re-wrapped.
    pub fn rotate_master_key(&self, new_master: crate::pii::MasterKey) -> Result<usize, CaseError> {
        let n = self.shared.keys.rewrap_all(new_master)?;
        self.shared.keys.flush()?;
        Ok(n)
    }

    /// Id of the master key in use (hex, not secret).
    pub fn master_key_id(&self) -> String {
        self.shared.keys.master_key_id()
    }

    /// The case-state cache's look-up counters (hits, misses) and the access
    /// events recorded by operation, for the metrics registry.
    pub fn metrics(
        &self,
    ) -> (
        crate::metrics::Counter,
        crate::metrics::Counter,
        crate::metrics::OperationCounter,
    ) {
        let (hits, misses) = self.shared.cache.counters();
        (hits, misses, self.shared.access_events.clone())
    }

    /// The person keys (backups read their wrapped entries).
    pub fn keys(&self) -> &KeyStore {
        &self.shared.keys
    }

    /// The log's store (reads).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Reads a case with its identifying data opened (unless erased).
    pub fn get_case(&self, case_id: &str) -> Result<CaseView, CaseError> {
        let shared = &*self.shared;
        if case_id.starts_with(ACCESS_STREAM_PREFIX) {
            return Err(CaseError::invalid("case_id", "not a case id"));
        }
        let stored = shared.store.read_stream(case_id, 1, CASE_EVENTS_MAX)?;
        if stored.is_empty() {
            return Err(CaseError::NotFound(case_id.to_string()));
        }
        let mut state = CaseState::default();
        let mut events = Vec::with_capacity(stored.len());
        for ev in stored {
            let e = codec::decode(&ev.record.event_type, &ev.record.payload)?;
            state.apply(&e);
            events.push((ev, e));
        }
        let version = events.last().map(|(ev, _)| ev.record.stream_version).unwrap_or(0);
        // A caseworker usually reads a case and then acts on it.
        shared.cache.put(case_id, version, Arc::new(state.clone()));
        let key = if state.is_erased() {
            None
        } else {
            shared.keys.get(case_id)?
        };
        let (mut identity, mut permit_number, mut visa_number) = (None, None, None);
        if let Some(key) = &key {
            if let Some(sealed) = state.person().and_then(|p| p.identity.as_ref()) {
                identity = Some(pii::open_json(key, case_id, FIELD_IDENTITY, sealed.as_bytes())?);
            }
            if let Some(sealed) = state.permit().and_then(|p| p.number.as_ref()) {
                let bytes = pii::open(key, case_id, FIELD_PERMIT_NUMBER, sealed.as_bytes())?;
                permit_number =
                    Some(String::from_utf8(bytes).map_err(|_| CaseError::invariant("permit number"))?);
            }
            if let Some(sealed) = state.visa().and_then(|v| v.number.as_ref()) {
                let bytes = pii::open(key, case_id, FIELD_VISA_NUMBER, sealed.as_bytes())?;
                visa_number =
                    Some(String::from_utf8(bytes).map_err(|_| CaseError::invariant("visa number"))?);
            }
        }
        Ok(CaseView {
            case_id: case_id.to_string(),
            version,
            state,
            identity,
            permit_number,
            visa_number,
            events,
        })
    }

    /// The department a case resides in, from its events alone (no sealed
    /// field is opened); `NotFound` for a case without events. For scope checks.
    pub fn department(&self, case_id: &str) -> Result<Option<crate::domain::Department>, CaseError> {
        let version = self.shared.store.stream_version(case_id)?;
        if version == 0 {
            return Err(CaseError::NotFound(case_id.to_string()));
        }
        Ok(self.fold(case_id, version)?.department())
    }

    /// Starts from the cached state when it is at or before `version`.
    fn fold(&self, case_id: &str, version: u64) -> Result<CaseState, CaseError> {
        if version == 0 {
            return Ok(CaseState::default());
        }
        let (from, mut state) = match self.shared.cache.get(case_id) {
            Some((v, s)) if v == version => return Ok((*s).clone()),
            Some((v, s)) if v < version => (v, (*s).clone()),
            _ => (0, CaseState::default()),
        };
        let events = self
            .shared
            .store
            .read_stream(case_id, from + 1, (version - from) as usize)?;
        // A state folded from fewer events than asked for would be decided
        // on as if it were the case at `version`.
        if events.len() as u64 != version - from {
            return Err(
                crate::log::StoreError::CorruptMeta("a case read fewer events than its version").into(),
            );
        }
        for ev in events {
            state.apply(&codec::decode(&ev.record.event_type, &ev.record.payload)?);
        }
        Ok(state)
    }
}
