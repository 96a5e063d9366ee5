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

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::case_cache::CaseCache;
use crate::codec;
use crate::domain::{
    CaseState, ChannelCatalog, Command, Date, Event, PolicyBook, PolicyEvent, Rejection, Sealed,
    POLICY_STREAM,
};
use crate::log::{Actor, AppendError, AppendRequest, Appended, Appender, ExpectedVersion, NewEvent, Store};
use crate::pii::{self, BlindIndexer, DataKey, KeyStore, PiiError};

mod family;
pub use family::LinkOutcome;

/// Sled tree of the document look-up index: blind index (32 bytes) ->
/// case id || reserved_at_us (i64 BE).
pub const TREE_DOCUMENTS: &str = "documents";
/// Field context of the sealed identity.
pub const FIELD_IDENTITY: &str = "identity";
/// Field context of a sealed permit number.
pub const FIELD_PERMIT_NUMBER: &str = "permit_number";
/// Field context of a sealed visa number.
pub const FIELD_VISA_NUMBER: &str = "visa_number";
/// A reservation older than this whose case never got an event is stale
/// (its registration failed or crashed) and may be taken over.
const RESERVATION_STALE_US: i64 = 60_000_000;
/// Events a case may hold that `get_case` folds (a case has a few dozen).
const CASE_EVENTS_MAX: usize = crate::limits::READ_PAGE_EVENTS_MAX;

/// An identity document in clear, only ever held in memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityDocument {
    /// Stored code of the [`DocumentType`].
    pub doc_type: String,
    pub number: String,
}

/// A person's identifying data in clear. Sealed as JSON with the person's key
/// before it reaches the log; never logged (`Debug` is redacted).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Identity {
    pub given_names: String,
    pub family_names: String,
    /// ISO date.
    pub birth_date: String,
    pub documents: Vec<IdentityDocument>,
    pub phone: String,
    pub email: String,
    pub address: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity(<{} documents, redacted>)", self.documents.len())
    }
}

/// Why a command or read failed, before it is mapped to a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("case {0} not found")]
    NotFound(String),
    #[error("version conflict: expected {expected}, the case is at version {actual}")]
    VersionConflict { expected: u64, actual: u64 },
    #[error("identity document already registered to another case")]
    DocumentTaken,
    #[error("request id already used for a different request on this case")]
    RequestIdReused,
    #[error("this request was already recorded on this case by another principal")]
    RequestFromOtherPrincipal,
    #[error(
        "this request id registered case {case_id}, whose identifying data was since erased: \
         the registration cannot be compared with the original or repeated"
    )]
    RegistrationErased { case_id: String },
    #[error("{field} exceeds the limit of {limit}")]
    TooLarge { field: &'static str, limit: usize },
    #[error("the case is outside the caller's departments (or does not exist)")]
    OutOfScope,
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A cluster node that does not lead; writes go to the leader.
    #[error("this node is not the cluster's leader")]
    NotLeader { leader: Option<String> },
    #[error("internal error: {0}")]
    Internal(String),
}

impl CaseError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> CaseError {
        CaseError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<AppendError> for CaseError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Invalid { field, reason } => CaseError::Invalid { field, reason },
            AppendError::TooLarge { field, limit } => CaseError::TooLarge { field, limit },
            AppendError::VersionConflict { expected, actual, .. } => CaseError::VersionConflict {
                expected: match expected {
                    ExpectedVersion::Exact(n) => n,
                    _ => 0,
                },
                actual,
            },
            AppendError::IdempotencyMismatch { .. } => CaseError::RequestIdReused,
            AppendError::StreamFull { limit, .. } => CaseError::TooLarge { field: "case", limit },
            AppendError::Unavailable(m) => CaseError::Unavailable(m),
            AppendError::NotLeader { leader } => CaseError::NotLeader { leader },
        }
    }
}

impl From<crate::log::StoreError> for CaseError {
    fn from(e: crate::log::StoreError) -> Self {
        CaseError::Internal(e.to_string())
    }
}

impl From<PiiError> for CaseError {
    fn from(e: PiiError) -> Self {
        match e {
            PiiError::InvalidDocument { reason } => CaseError::invalid("document.number", reason),
            PiiError::Sled(e) => e.into(),
            other => CaseError::Internal(other.to_string()),
        }
    }
}

impl From<sled::Error> for CaseError {
    fn from(e: sled::Error) -> Self {
        match crate::log::side::unconfirmed(&e) {
            // A replicated side write the cluster did not confirm (no leader, no majority).
            Some(reason) => CaseError::Unavailable(reason),
            None => CaseError::Internal(e.to_string()),
        }
    }
}

impl From<codec::CodecError> for CaseError {
    fn from(e: codec::CodecError) -> Self {
        CaseError::Internal(e.to_string())
    }
}

/// Who asks, under which idempotency key, on which case and version.
#[derive(Clone, Debug)]
pub struct CommandContext {
    pub request_id: String,
    /// `None` for a registration (the case id is derived from the request id).
    pub case_id: Option<String>,
    pub expected_version: u64,
    pub actor: Actor,
    /// The date the command is decided on (business dates may not be later).
    pub today: Date,
    /// Departments (DIVIPOLA codes) the caller may act in; empty = all. A
    /// command on a case residing elsewhere, or that would move a case
    /// elsewhere, is refused with [`CaseError::OutOfScope`].
    pub departments: Vec<u8>,
}

/// Whether a case residing in `department` is inside `departments` (empty = all).
pub fn in_scope(departments: &[u8], department: Option<crate::domain::Department>) -> bool {
    departments.is_empty() || department.is_some_and(|d| departments.contains(&d.code()))
}

/// Stream id prefix of access events: `access:<case id>` holds who read
/// that case's personal data, when and why. Never a case id.
pub const ACCESS_STREAM_PREFIX: &str = "access:";
/// Event type of an access event (not a case event: projections skip it).
pub const ACCESS_EVENT_TYPE: &str = "PersonalDataAccessed";

/// A read of personal data, to be recorded before the data is returned.
#[derive(Clone, Debug)]
pub struct AccessRecord {
    /// The case whose personal data is returned (for a look-up that found
    /// nothing: empty, recorded in a stream of its own, `access:none:<32 hex digits>`).
    pub case_id: String,
    /// The RPC: `GetCase`, `FindCasesByDocument`.
    pub operation: &'static str,
    /// The purpose code the caller gave.
    pub purpose: String,
    /// The caller's role.
    pub role: String,
    /// Token id or certificate identity the caller authenticated with.
    pub credential: String,
}

/// A command before sealing: its personal fields still in clear.
pub enum PendingCommand {
    /// A command without personal data.
    Plain(Command),
    /// Registration: the identity is sealed into `Command::RegisterPerson.identity`.
    Register { identity: Identity, command: Command },
    /// Rectification: the identity is sealed into `Command::UpdatePersonalData.identity`.
    UpdatePersonalData { identity: Identity, command: Command },
    /// Permit issue: the number is sealed into `Command::IssuePermit.permit_number`.
    IssuePermit { permit_number: String, command: Command },
    /// Visa: the number is sealed into `Command::SupersedeByVisa.visa_number`.
    SupersedeByVisa { visa_number: String, command: Command },
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    pub case_id: String,
    pub appended: Appended,
    pub state: CaseState,
    pub event_types: Vec<&'static str>,
}

/// A case as read back: state, version, identity in clear (unless erased),
/// and its events.
pub struct CaseView {
    pub case_id: String,
    pub version: u64,
    pub state: CaseState,
    pub identity: Option<Identity>,
    pub permit_number: Option<String>,
    pub visa_number: Option<String>,
    pub events: Vec<(crate::log::StoredEvent, Event)>,
}

/// One recorded read of a case's personal data (an access event of
/// `access:<case id>`), as the data subject's report shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessEntry {
    pub seq: u64,
    pub recorded_at_us: i64,
    /// The principal who read: user id and office (staff, never the subject).
    pub user: String,
    pub office: String,
    pub role: String,
    pub operation: String,
    pub purpose: String,
}

/// The case service. Cheap to clone; shared by every request handler.
#[derive(Clone)]
pub struct Cases {
    inner: Arc<Inner>,
}

struct Inner {
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
            inner: Arc::new(Inner {
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
        let n = self.inner.keys.rewrap_all(new_master)?;
        self.inner.keys.flush()?;
        Ok(n)
    }

    /// Id of the master key in use (hex, not secret).
    pub fn master_key_id(&self) -> String {
        self.inner.keys.master_key_id()
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
        let (hits, misses) = self.inner.cache.counters();
        (hits, misses, self.inner.access_events.clone())
    }

    /// The policy book as it stands.
    pub fn policy(&self) -> Arc<PolicyBook> {
        let book = self.inner.policy.read().expect("policy lock").clone();
        // On a cluster node the policy stream also grows by replication
        // (instruments recorded through another leader): fold it again then.
        match self.inner.store.stream_version(POLICY_STREAM) {
            Ok(v) if v != book.entries().len() as u64 => match load_policy(&self.inner.store) {
                Ok(fresh) => {
                    let fresh = Arc::new(fresh);
                    *self.inner.policy.write().expect("policy lock") = fresh.clone();
                    fresh
                }
                Err(e) => {
                    tracing::error!(error = %e, "folding the replicated policy stream failed");
                    book
                }
            },
            _ => book,
        }
    }

    /// The channel catalogue in force on `on` under the current policy.
    pub fn catalog_on(&self, on: Date) -> ChannelCatalog {
        self.policy().current_on(on).clone()
    }

    /// Records the genesis instruments ([`PolicyBook::genesis`]) if the
    /// store has no policy stream yet: a new store, or one from before the
    /// policy stream (whose earlier events cite no policy version). Blocking.
    pub fn ensure_policy_genesis(&self) -> Result<(), CaseError> {
        if self.inner.store.stream_version(POLICY_STREAM)? != 0 {
            return Ok(());
        }
        let actor = Actor {
            user_id: "registry".into(),
            office: "genesis".into(),
        };
        let events = PolicyBook::genesis();
        let _guard = self.inner.policy_writes.blocking_lock();
        let request = self.policy_request(POLICY_GENESIS_REQUEST, actor, &events)?;
        let appended = self.inner.appender.append_blocking(request)?;
        self.policy_applied(events, &appended);
        Ok(())
    }

    /// Appends policy events (one instrument each) in one request, after
    /// checking each against the book it extends. A retry (same request id,
    /// same events) gets the original's answer; the same id with other
    /// events is refused.
    pub async fn record_policy(
        &self,
        request_id: &str,
        actor: Actor,
        events: Vec<PolicyEvent>,
    ) -> Result<Appended, CaseError> {
        let _guard = self.inner.policy_writes.lock().await;
        let request = self.policy_request(request_id, actor, &events)?;
        // A retry (its original in the log) is answered by the writer: the
        // original's seqs, or a refusal if its events differ.
        let appended = self.inner.appender.append(request).await?;
        self.policy_applied(events, &appended);
        Ok(appended)
    }

    /// The append of policy events, checked against the book (callers hold
    /// `policy_writes`). A retry is not checked: the writer compares it
    /// with its original.
    fn policy_request(
        &self,
        request_id: &str,
        actor: Actor,
        events: &[PolicyEvent],
    ) -> Result<AppendRequest, CaseError> {
        if events.is_empty() || events.len() > crate::limits::REQUEST_EVENTS_MAX {
            return Err(CaseError::invalid(
                "events",
                format!(
                    "1..={} instruments per request",
                    crate::limits::REQUEST_EVENTS_MAX
                ),
            ));
        }
        let version = self.inner.store.stream_version(POLICY_STREAM)?;
        if self
            .inner
            .store
            .request_entry(POLICY_STREAM, request_id)?
            .is_none()
        {
            let mut next = (*self.policy()).clone();
            for e in events {
                next.check(e).map_err(|e| CaseError::invalid(e.field, e.reason))?;
                next.apply(next.version() + 1, e.clone());
            }
        }
        Ok(AppendRequest {
            stream_id: POLICY_STREAM.to_string(),
            expected: if version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(version)
            },
            request_id: request_id.to_string(),
            actor,
            events: events
                .iter()
                .map(|e| {
                    let (event_type, payload) = codec::encode_policy(e);
                    NewEvent {
                        event_type: event_type.to_string(),
                        payload,
                    }
                })
                .collect(),
        })
    }

    /// Folds appended policy events into the book commands are decided with.
    fn policy_applied(&self, events: Vec<PolicyEvent>, appended: &Appended) {
        if appended.deduplicated {
            return;
        }
        let mut next = (*self.inner.policy.read().expect("policy lock").clone()).clone();
        if next.version() >= appended.first_seq {
            return; // already folded from the store by `policy`
        }
        for (i, e) in events.into_iter().enumerate() {
            next.apply(appended.first_seq + i as u64, e);
        }
        *self.inner.policy.write().expect("policy lock") = Arc::new(next);
    }

    /// The person keys (backups read their wrapped entries).
    pub fn keys(&self) -> &KeyStore {
        &self.inner.keys
    }

    /// The log's store (reads).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Runs one command. Blocking sled reads run on the blocking pool; a
    /// command decided on a cached case state needs none and runs inline.
    pub async fn execute(
        &self,
        ctx: CommandContext,
        pending: PendingCommand,
    ) -> Result<CommandOutcome, CaseError> {
        self.inner.appender.check_leader()?;
        if let Some(prepared) = self.prepare_cached(&ctx, &pending) {
            let result = self.inner.appender.append(prepared.request.clone()).await;
            if let Some(answer) = self.finish_cached(prepared, result) {
                return answer;
            }
        }
        let this = self.clone();
        let prepared = tokio::task::spawn_blocking(move || this.prepare(ctx, pending))
            .await
            .map_err(|e| CaseError::Internal(e.to_string()))??;
        let result = self.inner.appender.append(prepared.request.clone()).await;
        if !prepared.finish_touches_storage(&result) {
            return self.finish(prepared, result);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.finish(prepared, result))
            .await
            .map_err(|e| CaseError::Internal(e.to_string()))?
    }

    /// Like [`Cases::execute`], for threads outside the async runtime (simulation).
    pub fn execute_blocking(
        &self,
        ctx: CommandContext,
        pending: PendingCommand,
    ) -> Result<CommandOutcome, CaseError> {
        self.inner.appender.check_leader()?;
        if let Some(prepared) = self.prepare_cached(&ctx, &pending) {
            let result = self.inner.appender.append_blocking(prepared.request.clone());
            if let Some(answer) = self.finish_cached(prepared, result) {
                return answer;
            }
        }
        let prepared = self.prepare(ctx, pending)?;
        let result = self.inner.appender.append_blocking(prepared.request.clone());
        self.finish(prepared, result)
    }

    /// The fast path of a command without personal data on a case whose
    /// state at the caller's expected version is cached: no storage read.
    /// `None` when the full path must decide: no cached state at that
    /// version, a registration, an erasure (it needs the person's key), a
    /// scope question, or a rejection (the full path re-checks the version
    /// first, so a caller behind the log gets a version conflict, as it would
    /// have). The request id is not looked up here: a retry of a durable
    /// request either misses the cache (the case moved on) or is answered by
    /// the writer as a duplicate, and [`Cases::finish_cached`] sends it down
    /// the full path.
    fn prepare_cached(&self, ctx: &CommandContext, pending: &PendingCommand) -> Option<Prepared> {
        let PendingCommand::Plain(command) = pending else {
            return None;
        };
        if matches!(
            command,
            Command::ErasePerson { .. } | Command::RegisterPerson { .. }
        ) || is_link_command(command)
        {
            return None;
        }
        let case_id = ctx.case_id.as_deref()?;
        if case_id.is_empty() || case_id.starts_with(ACCESS_STREAM_PREFIX) || ctx.expected_version == 0 {
            return None;
        }
        let (version, cached) = self.inner.cache.get(case_id)?;
        if version != ctx.expected_version {
            return None;
        }
        let scoped = !ctx.departments.is_empty();
        if scoped && !in_scope(&ctx.departments, cached.department()) {
            return None;
        }
        let book = self.policy();
        let events = cached
            .decide(command, ctx.today, book.current_on(command.on()))
            .ok()?;
        if !stays_in_scope(&ctx.departments, &cached, &events) {
            return None;
        }
        let request = append_request(case_id, version, ctx, &events, book.version());
        Some(Prepared {
            case_id: case_id.to_string(),
            state: (*cached).clone(),
            events,
            request,
            reserved: Vec::new(),
            released: Vec::new(),
            erasing: false,
            new_key: false,
        })
    }

    /// The answer of a fast-path command, or `None` to run the full path:
    /// the writer found the request id already used (a retry, which the full
    /// path decides against the case as it was before the original request).
    fn finish_cached(
        &self,
        prepared: Prepared,
        result: Result<Appended, AppendError>,
    ) -> Option<Result<CommandOutcome, CaseError>> {
        match result {
            Ok(a) if !a.deduplicated => Some(self.finish(prepared, Ok(a))),
            Err(e @ AppendError::VersionConflict { .. }) => {
                // The cached state was behind the log.
                self.inner.cache.forget(&prepared.case_id);
                Some(Err(e.into()))
            }
            Err(e @ AppendError::Unavailable(_)) => Some(Err(e.into())),
            Ok(_) | Err(_) => {
                self.inner.cache.forget(&prepared.case_id);
                None
            }
        }
    }

    fn prepare(&self, ctx: CommandContext, pending: PendingCommand) -> Result<Prepared, CaseError> {
        if !matches!(pending, PendingCommand::Register { .. }) {
            return self.prepare_inner(ctx, pending, None);
        }
        // A registration: its case id comes from its request id, computed once.
        let case_id = case_id_for_request(&ctx.request_id);
        let had_key = self.inner.keys.get(&case_id).map(|k| k.is_some()).unwrap_or(true);
        let result = self.prepare_inner(ctx, pending, Some(case_id.clone()));
        if result.is_err() && !had_key {
            self.discard_unused_key(&case_id);
        }
        result
    }

    /// Removes the key of a registration that recorded nothing.
    fn discard_unused_key(&self, case_id: &str) {
        if matches!(self.inner.store.stream_version(case_id), Ok(0)) {
            if let Err(e) = self.inner.keys.discard_unused(case_id) {
                tracing::warn!(error = %e, "could not discard the key of a refused registration");
            }
        }
    }

    /// `registered`: the case id of a registration (from its request id).
    fn prepare_inner(
        &self,
        ctx: CommandContext,
        pending: PendingCommand,
        registered: Option<String>,
    ) -> Result<Prepared, CaseError> {
        let inner = &*self.inner;
        let registering = registered.is_some();
        let case_id = match (&ctx.case_id, registered) {
            (_, Some(id)) => id,
            (Some(id), None) if id.starts_with(ACCESS_STREAM_PREFIX) || id == POLICY_STREAM => {
                return Err(CaseError::invalid("header.case_id", "not a case id"))
            }
            (Some(id), None) if !id.is_empty() => id.clone(),
            _ => return Err(CaseError::invalid("header.case_id", "required")),
        };
        let scoped = !ctx.departments.is_empty();
        if registering && ctx.expected_version != 0 {
            return Err(CaseError::invalid(
                "header.expected_version",
                "must be 0 for a registration",
            ));
        }
        // A retry is decided against the case as it was before the original
        // request. Request ids are scoped to their case: the same id on
        // another case is another request. The version is read before the
        // request id: a copy of this request committed between the two reads
        // is then found as a retry, never seen as a version conflict.
        let current = inner.store.stream_version(&case_id)?;
        let retry = inner.store.request_entry(&case_id, &ctx.request_id)?;
        let base_version = match retry {
            Some(entry) => {
                // The original is durable; if its commit is not yet
                // published (a copy racing it), wait the moment it takes.
                if entry.first_seq > inner.store.head()?.seq
                    && !inner
                        .store
                        .wait_published(entry.first_seq, crate::limits::PUBLISH_WAIT)
                {
                    return Err(CaseError::Unavailable(
                        "the original of a retried request was not published in time".into(),
                    ));
                }
                entry.first_version - 1
            }
            None => {
                if current == 0 && !registering {
                    // A scoped caller is told the same for a missing case as for one outside its scope.
                    return Err(if scoped {
                        CaseError::OutOfScope
                    } else {
                        CaseError::NotFound(case_id)
                    });
                }
                if current != ctx.expected_version {
                    return Err(CaseError::VersionConflict {
                        expected: ctx.expected_version,
                        actual: current,
                    });
                }
                current
            }
        };
        let state = self.fold(&case_id, base_version)?;
        if scoped && !registering && !in_scope(&ctx.departments, state.department()) {
            return Err(CaseError::OutOfScope);
        }
        let key = match &pending {
            PendingCommand::Plain(_) => None,
            PendingCommand::Register { .. } => Some(self.registration_key(&case_id)?),
            // None when erased: the domain refuses identity-bearing commands with the right reason.
            _ => inner.keys.get(&case_id)?,
        };
        let mut new_documents = Vec::new();
        let command = seal_pending(
            pending,
            key.as_ref(),
            &case_id,
            &ctx.request_id,
            &mut new_documents,
        )?;
        // Decided under the rules in force on the command's business date, as
        // the policy stood for the original request (a retry decides as it did).
        let book = self.policy();
        let policy_seq = match &retry {
            Some(entry) => match inner.store.get(entry.first_seq)? {
                Some(ev) => codec::policy_citation(&ev.record.payload)?,
                None => {
                    return Err(CaseError::Internal(
                        "a retried request's original is not in the log".into(),
                    ))
                }
            },
            None => book.version(),
        };
        let catalog = match policy_seq == book.version() {
            true => book.current_on(command.on()).clone(),
            false => book.catalog_on(command.on(), policy_seq),
        };
        if is_link_command(&command) {
            return Err(CaseError::Internal(
                "a family link changes two cases: it runs through execute_link".into(),
            ));
        }
        // A rule that reads linked cases (PEP-Tutor) sees them as they stood
        // before the original request (for a retry) or now.
        let before_seq = retry.as_ref().map_or(u64::MAX, |e| e.first_seq);
        let linked = self.linked_cases(&state, &command, &catalog, before_seq)?;
        let events = match state.decide_with(&command, ctx.today, &catalog, &linked) {
            Ok(events) => events,
            // The original request under this id was accepted in that state:
            // a request refused there is a different request.
            Err(_) if retry.is_some() => return Err(CaseError::RequestIdReused),
            Err(r) => return Err(r.into()),
        };
        if !stays_in_scope(&ctx.departments, &state, &events) {
            return Err(CaseError::OutOfScope);
        }
        let mut new_blind = Vec::with_capacity(new_documents.len());
        for d in &new_documents {
            new_blind.push(inner.blind.index(&d.doc_type, &d.number)?);
        }
        // Documents held before this command (rectification and erasure release them).
        let old_blind = match (&command, state.person().and_then(|p| p.identity.as_ref()), &key) {
            (Command::UpdatePersonalData { .. } | Command::ErasePerson { .. }, Some(sealed), _) => {
                match inner.keys.get(&case_id)? {
                    Some(k) => self.blind_of(&k, &case_id, sealed)?,
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        let erasing = matches!(command, Command::ErasePerson { .. });
        // A retry is answered from the log and changes no index entry: the
        // original did that, and the case may hold other documents since.
        // Only an erasure is completed again (its release and key
        // destruction are idempotent and must happen once the event is in).
        let reserved = if retry.is_none() {
            self.reserve(&case_id, &new_blind)?
        } else {
            Vec::new()
        };
        let request = append_request(&case_id, base_version, &ctx, &events, policy_seq);
        let released: Vec<[u8; 32]> = old_blind
            .into_iter()
            .filter(|b| erasing || (retry.is_none() && !new_blind.contains(b)))
            .collect();
        let new_key = registering && base_version == 0 && retry.is_none();
        Ok(Prepared {
            case_id,
            state,
            events,
            request,
            reserved,
            released,
            erasing,
            new_key,
        })
    }

    /// The key of a case being registered: created on first use; a retry (or a
    /// concurrent copy of the same request) finds it. An erased case's key never comes back.
    fn registration_key(&self, case_id: &str) -> Result<DataKey, CaseError> {
        let keys = &self.inner.keys;
        if let Some(k) = keys.get(case_id)? {
            return Ok(k);
        }
        match keys.create(case_id) {
            Ok(k) => Ok(k),
            Err(PiiError::AlreadyExists) => keys.get(case_id)?.ok_or(CaseError::RegistrationErased {
                case_id: case_id.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn finish(
        &self,
        p: Prepared,
        result: Result<Appended, AppendError>,
    ) -> Result<CommandOutcome, CaseError> {
        let appended = match result {
            Ok(a) => a,
            Err(e) => {
                self.release_reservations(&p.case_id, &p.reserved);
                if p.new_key {
                    self.discard_unused_key(&p.case_id);
                }
                if matches!(e, AppendError::IdempotencyMismatch { .. })
                    && self.same_content_other_actor(&p.request)?
                {
                    return Err(CaseError::RequestFromOtherPrincipal);
                }
                return Err(e.into());
            }
        };
        // Durable now: release documents the case no longer holds; finish an erasure
        // (also on a retry, so an erasure interrupted after its event completes).
        // A copy that raced its original (the writer answered it as a
        // duplicate) keeps nothing it reserved and releases nothing: the
        // original's own completion does that.
        if appended.deduplicated && !p.erasing {
            self.release_reservations(&p.case_id, &p.reserved);
        } else {
            self.release_reservations(&p.case_id, &p.released);
        }
        if p.erasing {
            self.inner.keys.erase(&p.case_id)?;
        }
        let mut state = p.state;
        for e in &p.events {
            state.apply(e);
        }
        self.inner
            .cache
            .put(&p.case_id, appended.last_version, Arc::new(state.clone()));
        Ok(CommandOutcome {
            case_id: p.case_id,
            appended,
            state,
            event_types: p.events.iter().map(|e| e.event_type()).collect(),
        })
    }

    /// Whether the request the log holds under this request's id has the
    /// same events (types and payloads) but another actor: the same request
    /// sent by another principal, not another request.
    fn same_content_other_actor(&self, request: &AppendRequest) -> Result<bool, CaseError> {
        let store = &self.inner.store;
        let Some(entry) = store.request_entry(&request.stream_id, &request.request_id)? else {
            return Ok(false);
        };
        if usize::from(entry.count) != request.events.len() {
            return Ok(false);
        }
        let original = store.read_stream(&request.stream_id, entry.first_version, request.events.len())?;
        if original.len() != request.events.len() || original[0].record.actor == request.actor {
            return Ok(false);
        }
        Ok(original
            .iter()
            .zip(&request.events)
            .all(|(o, n)| o.record.event_type == n.event_type && o.record.payload == n.payload))
    }

    /// The department a case resides in, from its events alone (no sealed
    /// field is opened); `NotFound` for a case without events. For scope checks.
    pub fn department(&self, case_id: &str) -> Result<Option<crate::domain::Department>, CaseError> {
        let version = self.inner.store.stream_version(case_id)?;
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
        let (from, mut state) = match self.inner.cache.get(case_id) {
            Some((v, s)) if v == version => return Ok((*s).clone()),
            Some((v, s)) if v < version => (v, (*s).clone()),
            _ => (0, CaseState::default()),
        };
        for ev in self
            .inner
            .store
            .read_stream(case_id, from + 1, (version - from) as usize)?
        {
            state.apply(&codec::decode(&ev.record.event_type, &ev.record.payload)?);
        }
        Ok(state)
    }

    fn blind_of(&self, key: &DataKey, case_id: &str, sealed: &Sealed) -> Result<Vec<[u8; 32]>, CaseError> {
        let identity: Identity = pii::open_json(key, case_id, FIELD_IDENTITY, sealed.as_bytes())?;
        identity
            .documents
            .iter()
            .map(|d| Ok(self.inner.blind.index(&d.doc_type, &d.number)?))
            .collect()
    }

    /// Reserves documents for a case; returns the ones this call newly took.
    /// A document held by another case refuses the whole reservation.
    fn reserve(&self, case_id: &str, blind: &[[u8; 32]]) -> Result<Vec<[u8; 32]>, CaseError> {
        let docs = &self.inner.documents;
        let mut value = case_id.as_bytes().to_vec();
        value.extend_from_slice(&crate::log::writer::now_us().to_be_bytes());
        let mut taken = Vec::new();
        for b in blind {
            let mut current = docs.get(b)?;
            loop {
                match current {
                    None => match docs.compare_and_swap(b, None, Some(value.clone()))? {
                        Ok(()) => {
                            taken.push(*b);
                            break;
                        }
                        Err(e) => current = e.current,
                    },
                    Some(ref held) if owner(held) == case_id.as_bytes() => break,
                    Some(ref held) if self.is_stale(held)? => {
                        match docs.compare_and_swap(b, Some(held), Some(value.clone()))? {
                            Ok(()) => {
                                taken.push(*b);
                                break;
                            }
                            Err(e) => current = e.current,
                        }
                    }
                    Some(_) => {
                        self.release_reservations(case_id, &taken);
                        return Err(CaseError::DocumentTaken);
                    }
                }
            }
        }
        Ok(taken)
    }

    /// A reservation whose case never got an event, older than a minute.
    fn is_stale(&self, held: &sled::IVec) -> Result<bool, CaseError> {
        let owner_id = std::str::from_utf8(owner(held)).unwrap_or("");
        let at = i64::from_be_bytes(held[held.len() - 8..].try_into().unwrap_or([0; 8]));
        Ok(self.inner.store.stream_version(owner_id)? == 0
            && crate::log::writer::now_us() - at > RESERVATION_STALE_US)
    }

    fn release_reservations(&self, case_id: &str, blind: &[[u8; 32]]) {
        for b in blind {
            if let Ok(Some(held)) = self.inner.documents.get(b) {
                if owner(&held) == case_id.as_bytes() {
                    let _ = self.inner.documents.compare_and_swap(b, Some(&held), None);
                }
            }
        }
    }

    /// Appends an access event (durably) to `access:<case id>`; the caller
    /// returns the personal data only after this succeeded.
    pub async fn record_access(&self, actor: Actor, record: AccessRecord) -> Result<Appended, CaseError> {
        let payload = codec::encode_access(&record);
        let mut id = [0u8; 16];
        getrandom::getrandom(&mut id).map_err(|e| CaseError::Internal(e.to_string()))?;
        let id = crate::hex::encode(&id);
        // A look-up that found nothing gets a stream of its own: a stream
        // holds at most STREAM_EVENTS_MAX events, and these have no case.
        let stream_id = if record.case_id.is_empty() {
            format!("{ACCESS_STREAM_PREFIX}none:{id}")
        } else {
            format!("{ACCESS_STREAM_PREFIX}{}", record.case_id)
        };
        let request = AppendRequest {
            stream_id,
            expected: ExpectedVersion::Any,
            request_id: format!("access-{id}"),
            actor,
            events: vec![NewEvent {
                event_type: ACCESS_EVENT_TYPE.to_string(),
                payload,
            }],
        };
        let appended = self.inner.appender.append(request).await?;
        (self.inner.access_events)
            .get_or_create(&[("operation", record.operation)])
            .inc();
        Ok(appended)
    }

    /// Reads a case with its identifying data opened (unless erased).
    pub fn get_case(&self, case_id: &str) -> Result<CaseView, CaseError> {
        let inner = &*self.inner;
        if case_id.starts_with(ACCESS_STREAM_PREFIX) {
            return Err(CaseError::invalid("case_id", "not a case id"));
        }
        let stored = inner.store.read_stream(case_id, 1, CASE_EVENTS_MAX)?;
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
        inner.cache.put(case_id, version, Arc::new(state.clone()));
        let key = if state.is_erased() {
            None
        } else {
            inner.keys.get(case_id)?
        };
        let (mut identity, mut permit_number, mut visa_number) = (None, None, None);
        if let Some(key) = &key {
            if let Some(sealed) = state.person().and_then(|p| p.identity.as_ref()) {
                identity = Some(pii::open_json(key, case_id, FIELD_IDENTITY, sealed.as_bytes())?);
            }
            if let Some(sealed) = state.permit().and_then(|p| p.number.as_ref()) {
                let bytes = pii::open(key, case_id, FIELD_PERMIT_NUMBER, sealed.as_bytes())?;
                permit_number =
                    Some(String::from_utf8(bytes).map_err(|_| CaseError::Internal("permit number".into()))?);
            }
            if let Some(sealed) = state.visa().and_then(|v| v.number.as_ref()) {
                let bytes = pii::open(key, case_id, FIELD_VISA_NUMBER, sealed.as_bytes())?;
                visa_number =
                    Some(String::from_utf8(bytes).map_err(|_| CaseError::Internal("visa number".into()))?);
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

    /// Every access event recorded on a case (`access:<case id>`), oldest
    /// first: who read its personal data, when, how and why. The stream
    /// holds at most `STREAM_EVENTS_MAX` events, read in pages.
    pub fn access_log(&self, case_id: &str) -> Result<Vec<AccessEntry>, CaseError> {
        let stream = format!("{ACCESS_STREAM_PREFIX}{case_id}");
        let mut out = Vec::new();
        loop {
            let from = out.len() as u64 + 1;
            let page = self
                .inner
                .store
                .read_stream(&stream, from, crate::limits::READ_PAGE_EVENTS_MAX)?;
            if page.is_empty() {
                return Ok(out);
            }
            for ev in page {
                let r = ev.record;
                if r.event_type != ACCESS_EVENT_TYPE {
                    return Err(CaseError::Internal(format!("seq {}: not an access event", r.seq)));
                }
                let (_, operation, purpose, role, _) = codec::decode_access(&r.payload)?;
                out.push(AccessEntry {
                    seq: r.seq,
                    recorded_at_us: r.recorded_at_us,
                    user: r.actor.user_id,
                    office: r.actor.office,
                    role,
                    operation,
                    purpose,
                });
            }
        }
    }

    /// The case holding a document, if any (erased persons hold none).
    pub fn find_by_document(&self, doc_type: &str, number: &str) -> Result<Option<String>, CaseError> {
        let blind = self.inner.blind.index(doc_type, number)?;
        match self.inner.documents.get(blind)? {
            Some(held) => {
                let case_id = String::from_utf8_lossy(owner(&held)).into_owned();
                Ok((self.inner.store.stream_version(&case_id)? > 0).then_some(case_id))
            }
            None => Ok(None),
        }
    }
}

/// Whether the command changes two cases (see [`Cases::execute_link`]).
fn is_link_command(command: &Command) -> bool {
    matches!(
        command,
        Command::RecordFamilyLink { .. } | Command::EndFamilyLink { .. }
    )
}

fn owner(held: &[u8]) -> &[u8] {
    &held[..held.len().saturating_sub(8)]
}

struct Prepared {
    case_id: String,
    state: CaseState,
    events: Vec<Event>,
    request: AppendRequest,
    reserved: Vec<[u8; 32]>,
    released: Vec<[u8; 32]>,
    erasing: bool,
    /// A registration that created its key: discard the key if the append fails.
    new_key: bool,
}

impl Prepared {
    /// Whether finishing after `result` reads or writes sled (documents, keys).
    fn finish_touches_storage(&self, result: &Result<Appended, AppendError>) -> bool {
        match result {
            Ok(_) => !self.released.is_empty() || self.erasing,
            Err(_) => !self.reserved.is_empty() || self.new_key,
        }
    }
}

/// Whether the case, after `events`, resides inside `departments` (empty =
/// all): neither register a case in, nor move one to, a department outside
/// the caller's scope.
fn stays_in_scope(departments: &[u8], state: &CaseState, events: &[Event]) -> bool {
    if departments.is_empty() {
        return true;
    }
    let mut after = state.clone();
    for e in events {
        after.apply(e);
    }
    in_scope(departments, after.department())
}

/// The append of a command's events to its case's stream at `base_version`.
/// The append of a case command's events, each citing `policy_seq` (the
/// policy version it was decided under; see [`codec::cite_policy`]).
fn append_request(
    case_id: &str,
    base_version: u64,
    ctx: &CommandContext,
    events: &[Event],
    policy_seq: u64,
) -> AppendRequest {
    AppendRequest {
        stream_id: case_id.to_string(),
        expected: if base_version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(base_version)
        },
        request_id: ctx.request_id.clone(),
        actor: ctx.actor.clone(),
        events: events
            .iter()
            .map(|e| {
                let (event_type, mut payload) = codec::encode(e);
                codec::cite_policy(&mut payload, policy_seq);
                NewEvent {
                    event_type: event_type.to_string(),
                    payload,
                }
            })
            .collect(),
    }
}

/// The request id of the genesis policy events.
pub const POLICY_GENESIS_REQUEST: &str = "policy-genesis";

/// Folds the policy stream of `store`.
pub fn load_policy(store: &Store) -> Result<PolicyBook, CaseError> {
    let mut book = PolicyBook::default();
    let version = store.stream_version(POLICY_STREAM)?;
    let mut from = 1;
    while from <= version {
        let page = store.read_stream(POLICY_STREAM, from, crate::limits::READ_PAGE_EVENTS_MAX)?;
        if page.is_empty() {
            break;
        }
        for ev in &page {
            book.apply(
                ev.record.seq,
                codec::decode_policy(&ev.record.event_type, &ev.record.payload)?,
            );
        }
        from += page.len() as u64;
    }
    Ok(book)
}

/// Seals the clear personal fields of a pending command into its domain command.
fn seal_pending(
    pending: PendingCommand,
    key: Option<&DataKey>,
    case_id: &str,
    request_id: &str,
    documents: &mut Vec<IdentityDocument>,
) -> Result<Command, CaseError> {
    let seal = |field: &str, bytes: &[u8]| -> Option<Sealed> {
        key.map(|k| Sealed(pii::seal_for_request(k, case_id, field, request_id, bytes)))
    };
    // Without a key (erased person) the domain gets an empty value and refuses
    // the command as carrying personal data for an erased person.
    let sealed_or_empty = |field: &str, bytes: &[u8]| seal(field, bytes).unwrap_or(Sealed(Vec::new()));
    Ok(match pending {
        PendingCommand::Plain(c) => c,
        PendingCommand::Register {
            identity,
            mut command,
        }
        | PendingCommand::UpdatePersonalData {
            identity,
            mut command,
        } => {
            let json = zeroize::Zeroizing::new(
                serde_json::to_vec(&identity).map_err(|e| CaseError::Internal(e.to_string()))?,
            );
            let sealed = sealed_or_empty(FIELD_IDENTITY, &json);
            match &mut command {
                Command::RegisterPerson { identity: slot, .. }
                | Command::UpdatePersonalData { identity: slot, .. } => *slot = sealed,
                _ => return Err(CaseError::Internal("identity for a command without one".into())),
            }
            documents.extend(identity.documents.iter().cloned());
            command
        }
        PendingCommand::IssuePermit {
            permit_number,
            mut command,
        } => {
            if let Command::IssuePermit {
                permit_number: slot, ..
            } = &mut command
            {
                *slot = sealed_or_empty(FIELD_PERMIT_NUMBER, permit_number.as_bytes());
            }
            command
        }
        PendingCommand::SupersedeByVisa {
            visa_number,
            mut command,
        } => {
            if let Command::SupersedeByVisa {
                visa_number: slot, ..
            } = &mut command
            {
                *slot = sealed_or_empty(FIELD_VISA_NUMBER, visa_number.as_bytes());
            }
            command
        }
    })
}

/// What [`rebuild_document_index`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct DocumentIndexReport {
    /// Cases whose key is active (their identity was opened).
    pub cases: u64,
    /// Erased cases (tombstone: nothing to index).
    pub erased: u64,
    /// Index entries written.
    pub documents: u64,
}

/// Rebuilds the document index (tree `documents`) of a store that no server
/// has open, from the log and the person keys. The tree must be empty (a
/// restored store).
///
/// Two sequential passes over the log, never a fold per case (which reads
/// each case's events from a different chunk: ~2.8k cases/s at full scale):
/// the first notes, for each case, the seq of the last event that sealed
/// its identity (an erasure forgets it); the second reads those events in
/// seq order, chunk by chunk, opens each identity with its case's key and
/// indexes its documents. Memory is one entry per case (its id and a seq)
/// and one per document (its blind index), ~150 bytes a case.
/// Errors name the case; two cases holding one document is an error (the
/// index never allows it, so the log or the keys are not what they were).
pub fn rebuild_document_index(
    store: &Store,
    keys: &KeyStore,
    progress: &mut dyn FnMut(u64),
) -> Result<DocumentIndexReport, CaseError> {
    let documents = store.db().open_tree(TREE_DOCUMENTS)?;
    if !documents.is_empty() {
        return Err(CaseError::Internal(
            "the document index is not empty: it is rebuilt only in a new store".into(),
        ));
    }
    let head = store.head()?.seq;
    // Pass 1: the last identity-sealing event of each case.
    let mut last_identity = std::collections::HashMap::<String, u64>::new();
    let mut erased = std::collections::HashSet::<String>::new();
    store.for_each_record(1, head, |record| {
        match record.event_type.as_str() {
            "PersonRegistered" | "PersonalDataUpdated" if !erased.contains(&record.stream_id) => {
                last_identity.insert(record.stream_id.clone(), record.seq);
            }
            "PersonErased" => {
                last_identity.remove(&record.stream_id);
                erased.insert(record.stream_id.clone());
            }
            _ => {}
        }
        Ok(())
    })?;
    let mut todo: Vec<(u64, String)> = last_identity.into_iter().map(|(c, s)| (s, c)).collect();
    todo.sort_unstable();

    // Pass 2: open and index, in seq order.
    let blind = keys.blind_indexer()?;
    let mut report = DocumentIndexReport {
        erased: erased.len() as u64,
        ..Default::default()
    };
    drop(erased);
    let now = crate::log::writer::now_us().to_be_bytes();
    let mut held = std::collections::HashMap::<[u8; 32], u32>::new();
    for page in todo.chunks(10_000) {
        let seqs: Vec<u64> = page.iter().map(|(s, _)| *s).collect();
        let events = store.get_many(&seqs)?;
        let mut batch = sled::Batch::default();
        for ((seq, case_id), ev) in page.iter().zip(events) {
            if ev.record.seq != *seq || &ev.record.stream_id != case_id {
                return Err(CaseError::Internal(format!(
                    "record {seq} is not the event noted for {case_id}"
                )));
            }
            let Some(key) = keys.get(case_id)? else {
                // Its key is destroyed: an erasure whose event is later than
                // this log (cannot be) or keys from elsewhere. Nothing to open.
                return Err(CaseError::Internal(format!(
                    "case {case_id} has an identity in the log and no key: \
                     the log or the keys are not those of one store"
                )));
            };
            let sealed = match codec::decode(&ev.record.event_type, &ev.record.payload)? {
                Event::PersonRegistered { identity, .. } | Event::PersonalDataUpdated { identity, .. } => {
                    identity
                }
                _ => return Err(CaseError::Internal(format!("record {seq} seals no identity"))),
            };
            report.cases += 1;
            let identity: Identity = pii::open_json(&key, case_id, FIELD_IDENTITY, sealed.as_bytes())?;
            for d in &identity.documents {
                let b = blind.index(&d.doc_type, &d.number)?;
                let index =
                    u32::try_from(report.cases).map_err(|_| CaseError::Internal("too many cases".into()))?;
                match held.insert(b, index) {
                    Some(other) if other != index => {
                        let other = &todo[other as usize - 1].1;
                        return Err(CaseError::Internal(format!(
                            "cases {other} and {case_id} hold the same identity document: \
                             the log or the keys are not those of one store"
                        )));
                    }
                    _ => {}
                }
                let mut value = case_id.as_bytes().to_vec();
                value.extend_from_slice(&now);
                batch.insert(&b[..], value);
                report.documents += 1;
            }
        }
        documents.apply_batch(batch)?;
        progress(report.cases);
    }
    progress(report.cases);
    Ok(report)
}
