//! Family links: one command, two cases, one atomic append.
//!
//! `RecordFamilyLink` and `EndFamilyLink` change the case named in the
//! header and the other case of the link. Both cases are read and folded
//! (each at its base version), [`CaseState::decide_link`] decides against
//! both, and the events of both are appended by one
//! [`Appender::append_many`](crate::log::Appender::append_many): one group
//! commit, each stream under its own expected version, all or none.
//!
//! Retries: the request id is recorded on both streams. Each stream's
//! version is read before its request ids (as for a one-case command); a
//! request id both streams hold is a retry, decided again against both
//! cases as they were before the original (its first version on each) and
//! under the policy version the original cites, so it yields the same
//! events and the writer answers it with the original's seqs. A request id
//! only one stream holds is another request (`RequestIdReused`).

use std::sync::Arc;

use super::command::append_request;
use super::{in_scope, CaseError, Cases, CommandContext, ACCESS_STREAM_PREFIX};
use crate::domain::family::link_id_for_request;
use crate::domain::{CaseState, Command, Event, POLICY_STREAM};
use crate::log::{AppendError, AppendRequest, Appended};

/// What a link command did: the case named in the header first, then the other.
#[derive(Debug, Clone)]
pub struct LinkOutcome {
    /// The link's id (shared by both cases' events).
    pub link_id: String,
    /// The case named in the header.
    pub case_id: String,
    /// Where that case's events went in the log.
    pub appended: Appended,
    /// That case after the command.
    pub state: CaseState,
    /// The other case of the link.
    pub other_case_id: String,
    /// Where the other case's events went in the log.
    pub other_appended: Appended,
    /// The other case after the command.
    pub other_state: CaseState,
    /// Event types recorded on the case of the header, and on the other.
    pub event_types: Vec<&'static str>,
    /// Event types recorded on the other case.
    pub other_event_types: Vec<&'static str>,
}

/// A decided link command, ready to append.
struct PreparedLink {
    link_id: String,
    sides: [(String, CaseState, Vec<Event>); 2],
    requests: Vec<AppendRequest>,
}

/// A stream's version and what it holds under the request id.
struct Side {
    current: u64,
    retry: Option<crate::log::store::RequestEntry>,
}

impl Cases {
    /// Runs a family link command (`RecordFamilyLink` or `EndFamilyLink`)
    /// on the case of `ctx` and the other case of the link.
    /// `other_expected_version`: the other case's version as the caller
    /// read it, or 0 to decide on its current version (the append is still
    /// conditioned on the version decided on).
    pub async fn execute_link(
        &self,
        ctx: CommandContext,
        other_expected_version: u64,
        command: Command,
    ) -> Result<LinkOutcome, CaseError> {
        let this = self.clone();
        let prepared =
            tokio::task::spawn_blocking(move || this.prepare_link(&ctx, other_expected_version, command))
                .await
                .map_err(CaseError::from)??;
        let result = self.shared.appender.append_many(prepared.requests.clone()).await;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.finish_link(prepared, result))
            .await
            .map_err(CaseError::from)?
    }

    /// Like [`Cases::execute_link`], for threads outside the async runtime (simulation).
    pub fn execute_link_blocking(
        &self,
        ctx: CommandContext,
        other_expected_version: u64,
        command: Command,
    ) -> Result<LinkOutcome, CaseError> {
        let prepared = self.prepare_link(&ctx, other_expected_version, command)?;
        let result = self
            .shared
            .appender
            .append_many_blocking(prepared.requests.clone());
        self.finish_link(prepared, result)
    }

    /// A stream's version, then its request entry (in that order: a copy
    /// committed between the two reads is found as a retry).
    fn side(&self, case_id: &str, request_id: &str) -> Result<Side, CaseError> {
        let store = &self.shared.store;
        let current = store.stream_version(case_id)?;
        let retry = store.request_entry(case_id, request_id)?;
        Ok(Side { current, retry })
    }

    /// The version a side is decided at: before the original for a retry
    /// (once the original is published), else the current one, which must
    /// be the expected one (`expected` 0: any).
    fn base_version(&self, side: &Side, expected: u64, missing: CaseError) -> Result<u64, CaseError> {
        let store = &self.shared.store;
        match &side.retry {
            Some(entry) => {
                if entry.first_seq > store.head()?.seq
                    && !store.wait_published(entry.first_seq, crate::limits::PUBLISH_WAIT)
                {
                    return Err(CaseError::Unavailable(
                        "the original of a retried request was not published in time".into(),
                    ));
                }
                Ok(entry.first_version - 1)
            }
            None if side.current == 0 => Err(missing),
            None if expected != 0 && expected != side.current => Err(CaseError::VersionConflict {
                expected,
                actual: side.current,
            }),
            None => Ok(side.current),
        }
    }

    fn prepare_link(
        &self,
        ctx: &CommandContext,
        other_expected_version: u64,
        mut command: Command,
    ) -> Result<PreparedLink, CaseError> {
        let scoped = !ctx.departments.is_empty();
        let case_id = match ctx.case_id.as_deref() {
            Some(id) if id.starts_with(ACCESS_STREAM_PREFIX) || id == POLICY_STREAM => {
                return Err(CaseError::invalid("header.case_id", "not a case id"))
            }
            Some(id) if !id.is_empty() => id.to_string(),
            _ => return Err(CaseError::invalid("header.case_id", "required")),
        };
        if ctx.expected_version == 0 {
            return Err(CaseError::invalid(
                "header.expected_version",
                "the case's current version is required",
            ));
        }
        let not_found = |id: &str| match scoped {
            true => CaseError::OutOfScope,
            false => CaseError::NotFound(id.to_string()),
        };
        let mine = self.side(&case_id, &ctx.request_id)?;
        let base = self.base_version(&mine, ctx.expected_version, not_found(&case_id))?;
        let state = self.fold(&case_id, base)?;
        if scoped && !in_scope(&ctx.departments, state.department()) {
            return Err(CaseError::OutOfScope);
        }
        // The other case: named by the command, or the other end of the link.
        let other_id = match &mut command {
            Command::RecordFamilyLink {
                link_id,
                other_case_id,
                ..
            } => {
                *link_id = link_id_for_request(&ctx.request_id, &case_id);
                if other_case_id.starts_with(ACCESS_STREAM_PREFIX) || other_case_id == POLICY_STREAM {
                    return Err(CaseError::invalid("other_case_id", "not a case id"));
                }
                if *other_case_id == case_id {
                    return Err(CaseError::invalid(
                        "other_case_id",
                        "a case cannot be linked to itself",
                    ));
                }
                other_case_id.clone()
            }
            Command::EndFamilyLink { link_id, .. } => {
                match state.family_links().iter().find(|l| l.link_id == *link_id) {
                    Some(l) => l.other_case_id.clone(),
                    None => return Err(CaseError::invalid("link_id", "no such link on this case")),
                }
            }
            _ => return Err(CaseError::invariant("not a family link command")),
        };
        let mut theirs = self.side(&other_id, &ctx.request_id)?;
        if mine.retry.is_some() != theirs.retry.is_some() {
            // A copy may have been made visible between the two reads: look again.
            let again = self.side(&case_id, &ctx.request_id)?;
            theirs = self.side(&other_id, &ctx.request_id)?;
            if again.retry.is_some() != theirs.retry.is_some() {
                return Err(CaseError::RequestIdReused);
            }
            if again.retry.is_some() && mine.retry.is_none() {
                // Both hold it now: decide as a retry from the start.
                return self.prepare_link(ctx, other_expected_version, command);
            }
        }
        let other_missing = match scoped {
            true => CaseError::OutOfScope,
            false => CaseError::invalid("other_case_id", "no such case"),
        };
        let other_base = self.base_version(&theirs, other_expected_version, other_missing)?;
        let other_state = self.fold(&other_id, other_base)?;
        if scoped && !in_scope(&ctx.departments, other_state.department()) {
            return Err(CaseError::OutOfScope);
        }
        let book = self.policy();
        let policy_seq = match &mine.retry {
            Some(entry) => match self.shared.store.get(entry.first_seq)? {
                Some(ev) => crate::codec::policy_citation(&ev.record.payload)?,
                None => {
                    return Err(CaseError::invariant(
                        "a retried request's original is not in the log",
                    ))
                }
            },
            None => book.version(),
        };
        let retry = mine.retry.is_some();
        let (my_events, their_events) = match state.decide_link(&case_id, &other_state, &command, ctx.today) {
            Ok(events) => events,
            Err(_) if retry => return Err(CaseError::RequestIdReused),
            Err(r) => return Err(r.into()),
        };
        let link_id = match &command {
            Command::RecordFamilyLink { link_id, .. } | Command::EndFamilyLink { link_id, .. } => {
                link_id.clone()
            }
            _ => String::new(),
        };
        let requests = vec![
            append_request(&case_id, base, ctx, &my_events, policy_seq),
            append_request(&other_id, other_base, ctx, &their_events, policy_seq),
        ];
        Ok(PreparedLink {
            link_id,
            sides: [(case_id, state, my_events), (other_id, other_state, their_events)],
            requests,
        })
    }

    fn finish_link(
        &self,
        p: PreparedLink,
        result: Result<Vec<Appended>, AppendError>,
    ) -> Result<LinkOutcome, CaseError> {
        let appended = match result {
            Ok(a) if a.len() == 2 => a,
            Ok(_) => return Err(CaseError::invariant("a link append answered for one stream")),
            Err(e) => {
                if let AppendError::VersionConflict { stream_id, .. } = &e {
                    for (id, ..) in &p.sides {
                        if id == stream_id {
                            self.shared.cache.forget(id);
                        }
                    }
                }
                if matches!(e, AppendError::IdempotencyMismatch { .. })
                    && self.same_content_other_actor(&p.requests[0])?
                {
                    return Err(CaseError::RequestFromOtherPrincipal);
                }
                return Err(e.into());
            }
        };
        let [(case_id, mut state, mine), (other_case_id, mut other_state, theirs)] = p.sides;
        for (state, events, id, a) in [
            (&mut state, &mine, &case_id, &appended[0]),
            (&mut other_state, &theirs, &other_case_id, &appended[1]),
        ] {
            for e in events {
                state.apply(e);
            }
            self.shared.cache.put(id, a.last_version, Arc::new(state.clone()));
        }
        let event_types = mine.iter().map(Event::event_type).collect();
        let other_event_types = theirs.iter().map(Event::event_type).collect();
        Ok(LinkOutcome {
            link_id: p.link_id,
            case_id,
            appended: appended[0],
            state,
            other_case_id,
            other_appended: appended[1],
            other_state,
            event_types,
            other_event_types,
        })
    }

    /// The linked cases a PreRegister's channel rule reads (PEP-Tutor's
    /// linked minor), each case's events recorded before `before_seq` (for
    /// a retry, the original's first seq: the cases as they stood then).
    pub(super) fn linked_cases(
        &self,
        state: &CaseState,
        command: &Command,
        catalog: &crate::domain::ChannelCatalog,
        before_seq: u64,
    ) -> Result<crate::domain::LinkedCases, CaseError> {
        let mut linked = crate::domain::LinkedCases::default();
        let Command::PreRegister { channel, .. } = command else {
            return Ok(linked);
        };
        let Some(rule) = catalog.get(*channel).and_then(|r| r.linked_permit.as_ref()) else {
            return Ok(linked);
        };
        for id in state.linked_case_ids(rule.role) {
            let mut events = Vec::new();
            for ev in self.shared.store.read_stream(&id, 1, super::CASE_EVENTS_MAX)? {
                if ev.record.seq >= before_seq {
                    break;
                }
                events.push(crate::codec::decode(&ev.record.event_type, &ev.record.payload)?);
            }
            linked.cases.push((id, events));
        }
        Ok(linked)
    }
}
