//! Command preparation: from a pending command to the append of its events,
//! and from the writer's answer to the outcome (or error) the caller gets.
//! A fast path decides on a cached case state without reading storage; the
//! full path reads the case, handles retries, seals, and makes the side
//! writes that go with the events (a registration's key, the documents it
//! reserves): the writer stages them with the events or refuses both, and a
//! side conflict (a concurrent command took the key or a document first)
//! sends the command through the full path again.

use std::sync::Arc;

use super::identity::{seal_pending, RegistrationKey};
use super::{case_id_for_request, CaseError, Cases, Identity, ACCESS_STREAM_PREFIX};
use crate::codec;
use crate::domain::{CaseState, Command, Date, Event, POLICY_STREAM};
use crate::log::{Actor, AppendError, AppendRequest, Appended, ExpectedVersion, NewEvent, Side, SideWrite};
use crate::pii::NewKey;

/// Who asks, under which idempotency key, on which case and version.
#[derive(Clone, Debug)]
pub struct CommandContext {
    /// The idempotency key: a retry with the same key gets the original's answer.
    pub request_id: String,
    /// `None` for a registration (the case id is derived from the request id).
    pub case_id: Option<String>,
    /// The case version the caller last read (0 for a registration); the append is refused if the case moved on.
    pub expected_version: u64,
    /// The principal acting, recorded in every event.
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

/// A command before sealing: its personal fields still in clear.
#[derive(Clone)]
pub enum PendingCommand {
    /// A command without personal data.
    Plain(Command),
    /// Registration: the identity is sealed into `Command::RegisterPerson.identity`.
    Register {
        /// The person's identity in clear; its documents are also reserved
        /// in the document index.
        identity: Identity,
        /// The `RegisterPerson` command, its `identity` slot not yet filled.
        command: Command,
    },
    /// Rectification: the identity is sealed into `Command::UpdatePersonalData.identity`.
    UpdatePersonalData {
        /// The corrected identity in clear; its documents are also reserved
        /// in the document index.
        identity: Identity,
        /// The `UpdatePersonalData` command, its `identity` slot not yet filled.
        command: Command,
    },
    /// Permit issue: the number is sealed into `Command::IssuePermit.permit_number`.
    IssuePermit {
        /// The permit number in clear.
        permit_number: String,
        /// The `IssuePermit` command, its `permit_number` slot not yet filled.
        command: Command,
    },
    /// Visa: the number is sealed into `Command::SupersedeByVisa.visa_number`.
    SupersedeByVisa {
        /// The visa number in clear.
        visa_number: String,
        /// The `SupersedeByVisa` command, its `visa_number` slot not yet filled.
        command: Command,
    },
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    /// The case acted on (assigned by a registration).
    pub case_id: String,
    /// Where the events went in the log (seqs and the case's new version).
    pub appended: Appended,
    /// The case after the command.
    pub state: CaseState,
    /// The types of the events recorded, in order.
    pub event_types: Vec<&'static str>,
}

impl Cases {
    /// Runs one command. A command decided on a cached case state needs no
    /// storage read and runs inline; on the full path, preparing (sled
    /// reads) and finishing (when it writes) run on the blocking pool, and
    /// no thread is held while the append waits for its commit.
    pub async fn execute(
        &self,
        ctx: CommandContext,
        pending: PendingCommand,
    ) -> Result<CommandOutcome, CaseError> {
        self.shared.appender.check_leader()?;
        if let Some(prepared) = self.prepare_cached(&ctx, &pending) {
            let result = self.shared.appender.append(prepared.request.clone()).await;
            if let Some(answer) = self.finish_cached(prepared, result) {
                return answer;
            }
        }
        let mut attempt = 1;
        loop {
            let (this, c, p) = (self.clone(), ctx.clone(), pending.clone());
            let prepared = on_blocking_pool(move || this.prepare(c, p)).await?;
            let result = self
                .shared
                .appender
                .append_with(prepared.request.clone(), prepared.side.clone())
                .await;
            if prepare_again(&result, &mut attempt) {
                continue;
            }
            if !prepared.finish_touches_storage(&result) {
                return self.finish(prepared, result);
            }
            let this = self.clone();
            return on_blocking_pool(move || this.finish(prepared, result)).await;
        }
    }

    /// Like [`Cases::execute`], for threads outside the async runtime (simulation).
    pub fn execute_blocking(
        &self,
        ctx: CommandContext,
        pending: PendingCommand,
    ) -> Result<CommandOutcome, CaseError> {
        self.shared.appender.check_leader()?;
        let cached = self.prepare_cached(&ctx, &pending);
        if let Some(answer) = cached.and_then(|prepared| {
            let result = self.shared.appender.append_blocking(prepared.request.clone());
            self.finish_cached(prepared, result)
        }) {
            return answer;
        }
        let mut attempt = 1;
        loop {
            let prepared = self.prepare(ctx.clone(), pending.clone())?;
            let result = self
                .shared
                .appender
                .append_with_blocking(prepared.request.clone(), prepared.side.clone());
            if !prepare_again(&result, &mut attempt) {
                return self.finish(prepared, result);
            }
        }
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
        let (version, cached) = self.shared.cache.get(case_id)?;
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
            side: Vec::new(),
            new_key: None,
            released: Vec::new(),
            erasing: false,
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
                self.shared.cache.forget(&prepared.case_id);
                Some(Err(e.into()))
            }
            Err(e @ AppendError::Unavailable(_)) => Some(Err(e.into())),
            Ok(_) | Err(_) => {
                self.shared.cache.forget(&prepared.case_id);
                None
            }
        }
    }

    fn prepare(&self, ctx: CommandContext, pending: PendingCommand) -> Result<Prepared, CaseError> {
        let shared = &*self.shared;
        // A registration's case id comes from its request id.
        let registered =
            matches!(pending, PendingCommand::Register { .. }).then(|| case_id_for_request(&ctx.request_id));
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
        let current = shared.store.stream_version(&case_id)?;
        let retry = shared.store.request_entry(&case_id, &ctx.request_id)?;
        let base_version = match retry {
            Some(entry) => {
                // The original is durable; if its commit is not yet
                // published (a copy racing it), wait the moment it takes.
                if entry.first_seq > shared.store.head()?.seq
                    && !shared
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
        let (key, registration_key) = match &pending {
            PendingCommand::Plain(_) => (None, None),
            PendingCommand::Register { .. } => (None, Some(self.registration_key(&case_id)?)),
            // None when erased: the domain refuses identity-bearing commands with the right reason.
            _ => (shared.keys.get(&case_id)?, None),
        };
        let key = key
            .as_ref()
            .or(registration_key.as_ref().map(RegistrationKey::key));
        let mut new_documents = Vec::new();
        let command = seal_pending(pending, key, &case_id, &ctx.request_id, &mut new_documents)?;
        // Decided under the rules in force on the command's business date, as
        // the policy stood for the original request (a retry decides as it did).
        let book = self.policy();
        let policy_seq = match &retry {
            Some(entry) => match shared.store.get(entry.first_seq)? {
                Some(ev) => codec::policy_citation(&ev.record.payload)?,
                None => {
                    return Err(CaseError::invariant(
                        "a retried request's original is not in the log",
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
            return Err(CaseError::invariant(
                "a family link changes two cases: it runs through execute_link",
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
            new_blind.push(shared.blind.index(&d.doc_type, &d.number)?);
        }
        // Documents held before this command (rectification and erasure release them).
        let old_blind = match (&command, state.person().and_then(|p| p.identity.as_ref()), key) {
            (Command::UpdatePersonalData { .. } | Command::ErasePerson { .. }, Some(sealed), _) => {
                match shared.keys.get(&case_id)? {
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
        let mut side = if retry.is_none() {
            self.reservations(&case_id, &new_blind)?
        } else {
            Vec::new()
        };
        let new_key = match registration_key {
            Some(RegistrationKey::New(n)) if retry.is_none() => {
                side.insert(
                    0,
                    SideWrite {
                        tree: Side::PersonKeys,
                        key: case_id.as_bytes().to_vec(),
                        expect: None,
                        value: n.entry.clone(),
                    },
                );
                Some(n)
            }
            _ => None,
        };
        let request = append_request(&case_id, base_version, &ctx, &events, policy_seq);
        let released: Vec<[u8; 32]> = old_blind
            .into_iter()
            .filter(|b| erasing || (retry.is_none() && !new_blind.contains(b)))
            .collect();
        Ok(Prepared {
            case_id,
            state,
            events,
            request,
            side,
            new_key,
            released,
            erasing,
        })
    }

    fn finish(
        &self,
        p: Prepared,
        result: Result<Appended, AppendError>,
    ) -> Result<CommandOutcome, CaseError> {
        // A new key's entry is in the tree now, or will never be: a
        // rotation may go on (see `NewKey`).
        drop(p.new_key);
        let appended = match result {
            Ok(a) => a,
            Err(e) => {
                // Nothing of a refused append is written, side writes included.
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
        // duplicate) releases nothing: the original's own completion does that.
        if !appended.deduplicated || p.erasing {
            self.release_reservations(&p.case_id, &p.released);
        }
        if p.erasing {
            self.shared.keys.erase(&p.case_id)?;
        }
        let mut state = p.state;
        for e in &p.events {
            state.apply(e);
        }
        self.shared
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
    pub(super) fn same_content_other_actor(&self, request: &AppendRequest) -> Result<bool, CaseError> {
        let store = &self.shared.store;
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
}

/// Whether the command changes two cases (see [`Cases::execute_link`]).
fn is_link_command(command: &Command) -> bool {
    matches!(
        command,
        Command::RecordFamilyLink { .. } | Command::EndFamilyLink { .. }
    )
}

/// Whether the full path prepares the command again: after a side
/// conflict (a concurrent command took the key or a document first; the
/// conflict is answered once that command is durable, so the next attempt
/// reads it), at most [`PREPARE_ATTEMPTS_MAX`](crate::limits::PREPARE_ATTEMPTS_MAX) times in all.
fn prepare_again(result: &Result<Appended, AppendError>, attempt: &mut usize) -> bool {
    match result {
        Err(AppendError::SideConflict { index }) if *attempt < crate::limits::PREPARE_ATTEMPTS_MAX => {
            tracing::debug!(index, attempt, "side conflict; preparing the command again");
            *attempt += 1;
            true
        }
        _ => false,
    }
}

/// Runs blocking work (sled reads and writes) on the blocking pool.
async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CaseError> + Send + 'static,
) -> Result<T, CaseError> {
    tokio::task::spawn_blocking(work).await.map_err(CaseError::from)?
}

struct Prepared {
    case_id: String,
    state: CaseState,
    events: Vec<Event>,
    request: AppendRequest,
    /// Written with the events: a registration's new key first, then the
    /// documents it reserves.
    side: Vec<SideWrite>,
    /// A registration's new key, held until the append is answered.
    new_key: Option<NewKey>,
    /// Documents to release once the events are durable.
    released: Vec<[u8; 32]>,
    erasing: bool,
}

impl Prepared {
    /// Whether finishing after `result` reads or writes sled: releases, an
    /// erasure, or telling a reused request id from a copy sent by another
    /// principal.
    fn finish_touches_storage(&self, result: &Result<Appended, AppendError>) -> bool {
        match result {
            Ok(_) => !self.released.is_empty() || self.erasing,
            Err(e) => matches!(e, AppendError::IdempotencyMismatch { .. }),
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
pub(super) fn append_request(
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
