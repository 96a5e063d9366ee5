//! The policy stream: the instruments (and their channel rules) commands are
//! decided under, folded into a [`PolicyBook`] and extended by appends
//! checked against the book they extend.

use std::sync::Arc;

use super::{CaseError, Cases};
use crate::codec;
use crate::domain::{ChannelCatalog, Date, PolicyBook, PolicyEvent, POLICY_STREAM};
use crate::log::{Actor, AppendRequest, Appended, ExpectedVersion, NewEvent, Store};

impl Cases {
    /// The policy book as it stands.
    pub fn policy(&self) -> Arc<PolicyBook> {
        let book = self.shared.policy.read().expect("policy lock").clone();
        // On a cluster node the policy stream also grows by replication
        // (instruments recorded through another leader): fold it again then.
        match self.shared.store.stream_version(POLICY_STREAM) {
            Ok(v) if v != book.entries().len() as u64 => match load_policy(&self.shared.store) {
                Ok(fresh) => {
                    let fresh = Arc::new(fresh);
                    *self.shared.policy.write().expect("policy lock") = fresh.clone();
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
        if self.shared.store.stream_version(POLICY_STREAM)? != 0 {
            return Ok(());
        }
        let actor = Actor {
            user_id: "registry".into(),
            office: "genesis".into(),
        };
        let events = PolicyBook::genesis();
        let _guard = self.shared.policy_writes.blocking_lock();
        let request = self.policy_request(POLICY_GENESIS_REQUEST, actor, &events)?;
        let appended = self.shared.appender.append_blocking(request)?;
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
        let _guard = self.shared.policy_writes.lock().await;
        let request = self.policy_request(request_id, actor, &events)?;
        // A retry (its original in the log) is answered by the writer: the
        // original's seqs, or a refusal if its events differ.
        let appended = self.shared.appender.append(request).await?;
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
        let version = self.shared.store.stream_version(POLICY_STREAM)?;
        if self
            .shared
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
        let mut next = (*self.shared.policy.read().expect("policy lock").clone()).clone();
        if next.version() >= appended.first_seq {
            return; // already folded from the store by `policy`
        }
        for (i, e) in events.into_iter().enumerate() {
            next.apply(appended.first_seq + i as u64, e);
        }
        *self.shared.policy.write().expect("policy lock") = Arc::new(next);
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
