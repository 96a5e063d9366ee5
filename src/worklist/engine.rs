//! The worklist projection: applies the global log in order and without
//! gaps, each step as one sled batch holding the index entries changed, the
//! per-case facts changed and the checkpoint (the position they reflect).
//!
//! The state lives in sled, not in memory: a step loads the facts of the
//! cases its events touch, folds the events, and writes the difference
//! between each case's entries before and after. Memory is bounded by one
//! step ([`WORKLIST_BATCH_EVENTS`]), whatever the caseload.
//!
//! Continuity is checked by the reader the followers share (`log/follow.rs`:
//! [`read_page`](crate::log::follow::read_page), [`check_next`]), as for statistics:
//! every event must follow the position (seq and chain link); a gap, a
//! reordering or a broken link stops the projection with the seq named. A
//! crash loses nothing: sled applies a batch whole or not at all, and the
//! next start resumes after the checkpoint of the last batch applied.

use std::collections::hash_map::Entry as MapEntry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use super::facts::WorkFacts;
use super::index::{
    encode_entry, facts_key, FORMAT_VERSION, INDEX_KEY_LEN, KEY_CHECKPOINT, KEY_VERSION, TREE,
};
use crate::domain::PolicyBook;
use crate::limits::{PROJECTION_FOLLOW_PAUSE_MS, PROJECTION_STOP_CATCH_UP_MS, WORKLIST_BATCH_EVENTS};
use crate::log::follow::check_next;
use crate::log::{Head, Store};
use crate::projection::engine::{catch_panic, next_page, StoppableThread};
use crate::projection::state::{case_key, ApplyError, CaseKey, KeyMap, Position};
use crate::projection::{CatchUp, ProjectionError};

/// A case touched by a step: its entries as they were before the step, and
/// its facts after the events applied so far.
struct Touched {
    before: Vec<([u8; INDEX_KEY_LEN], Vec<u8>)>,
    facts: WorkFacts,
}

/// What an instrument would change (the policy dry run), counted over the
/// open cases of the worklist projection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preview {
    /// The log position the counts reflect.
    pub position_seq: u64,
    /// Registered, not exited, not erased cases.
    pub cases: u64,
    /// Of those, cases without an application (who could apply).
    pub without_application: u64,
    /// Interim certificates (card awaited) whose validity would change.
    pub interim_certificates_extended: u64,
    /// Applications under review whose decision deadline would move.
    pub decision_deadlines_moved: u64,
    /// Channels taking adults' applications today under the instrument and
    /// not without it, and the reverse.
    pub channels_opening: Vec<String>,
    /// Channels taking adults' applications today without the instrument and not under it.
    pub channels_closing: Vec<String>,
}

/// The persisted worklist projection over a store.
pub struct Worklists {
    store: Store,
    tree: sled::Tree,
    /// The policy stream up to the position: the rules in force for each
    /// event as it was decided (the follower folds policy events in order).
    policy: Mutex<PolicyBook>,
    /// The position the tree reflects: held for writing while a batch is
    /// applied, for reading while a query scans, so an answer and the
    /// position it names agree.
    gate: RwLock<Position>,
    /// One writer at a time (the follower thread, or a catch-up).
    writer: Mutex<()>,
}

impl Worklists {
    /// Opens the projection (format check, checkpoint and the policy book
    /// at the checkpoint; does not catch up).
    pub fn open(store: &Store) -> Result<Worklists, ProjectionError> {
        let tree = store.db().open_tree(TREE)?;
        if let Some(v) = tree.get(KEY_VERSION)? {
            if v.as_ref() != [FORMAT_VERSION] {
                return Err(ProjectionError::Corrupt(format!(
                    "worklists format version {:?}; run rebuild-projections",
                    v.as_ref()
                )));
            }
        }
        let position = match tree.get(KEY_CHECKPOINT)? {
            Some(cp) => {
                let head = Head::from_bytes(&cp).map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
                Position {
                    seq: head.seq,
                    hash: head.hash,
                }
            }
            None => Position::EMPTY,
        };
        let policy = crate::cases::load_policy(store)
            .map_err(|e| ProjectionError::Corrupt(format!("policy stream: {e}")))?
            .as_of(position.seq);
        Ok(Worklists {
            store: store.clone(),
            tree,
            policy: Mutex::new(policy),
            gate: RwLock::new(position),
            writer: Mutex::new(()),
        })
    }

    /// Drops the projection's tree (for a rebuild).
    pub fn drop_tree(store: &Store) -> Result<(), ProjectionError> {
        store.db().drop_tree(TREE)?;
        Ok(())
    }

    /// The log position the worklists reflect.
    pub fn position(&self) -> Position {
        *self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The store followed.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs `f` on the tree and its position with no batch applied meanwhile.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&sled::Tree, Position) -> T) -> T {
        let gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        f(&self.tree, *gate)
    }

    /// Applies up to `max_events` events after the position (not past
    /// `up_to`), as one batch. Pages are read and folded without the gate;
    /// only the batch is applied under it. Returns the events applied.
    pub fn step(&self, max_events: usize, up_to: Option<u64>) -> Result<u64, ProjectionError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut pos = self.position();
        // The book as the tree reflects it (what `before` entries were
        // computed with), and as it advances through the step.
        let start_policy = self.policy.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut policy = start_policy.clone();
        let mut touched: KeyMap<CaseKey, Touched> = KeyMap::default();
        let mut applied = 0u64;
        loop {
            let limit = up_to.map_or(u64::MAX, |u| u.saturating_sub(pos.seq));
            let room = (max_events as u64 - applied).min(limit);
            let Some(page) = next_page(&self.store, pos.into(), room)? else {
                break;
            };
            for ev in &page {
                let r = &ev.record;
                check_next(pos.into(), r.seq, &r.prev_hash).map_err(ApplyError::from)?;
                // Reads of personal data are audit records, not case events;
                // policy events change the rules later events were decided under.
                if crate::codec::is_policy_event(&r.event_type) {
                    let event = crate::codec::decode_policy(&r.event_type, &r.payload).map_err(|e| {
                        ApplyError::Decode {
                            seq: r.seq,
                            reason: e.to_string(),
                        }
                    })?;
                    let reached: Vec<_> = event
                        .rules()
                        .map(|rules| rules.measures.as_slice())
                        .unwrap_or(&[])
                        .iter()
                        .map(|m| match *m {
                            crate::domain::policy::GeneralMeasure::ExtendInterimCertificates {
                                channel,
                                ..
                            } => channel,
                        })
                        .collect();
                    policy.apply(r.seq, event);
                    // A general measure moves the entries of every case it
                    // reaches: one logged event, its effect derived here.
                    if !reached.is_empty() {
                        self.touch_interim_holders(&reached, &start_policy, &mut touched)?;
                    }
                } else if r.event_type != crate::cases::ACCESS_EVENT_TYPE {
                    let event =
                        crate::codec::decode(&r.event_type, &r.payload).map_err(|e| ApplyError::Decode {
                            seq: r.seq,
                            reason: e.to_string(),
                        })?;
                    let key = case_key(&r.stream_id);
                    let t = match touched.entry(key) {
                        MapEntry::Occupied(o) => o.into_mut(),
                        MapEntry::Vacant(v) => v.insert(self.load(key, &r.stream_id, &start_policy)?),
                    };
                    t.facts
                        .apply(&event, &r.actor.office, policy.current_on(event.on()));
                }
                pos = Position {
                    seq: r.seq,
                    hash: ev.hash,
                };
                applied += 1;
            }
        }
        if applied == 0 {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        for (key, t) in touched {
            let after: Vec<_> = t
                .facts
                .entries(&policy)
                .iter()
                .map(|e| encode_entry(key, &t.facts, e))
                .collect();
            for (k, _) in &t.before {
                if !after.iter().any(|(a, _)| a == k) {
                    batch.remove(&k[..]);
                }
            }
            for (k, v) in after {
                if !t.before.iter().any(|(b, bv)| *b == k && *bv == v) {
                    batch.insert(&k[..], v);
                }
            }
            batch.insert(&facts_key(key)[..], t.facts.encode());
        }
        batch.insert(KEY_VERSION, &[FORMAT_VERSION][..]);
        let head = Head {
            seq: pos.seq,
            hash: pos.hash,
        };
        batch.insert(KEY_CHECKPOINT, &head.to_bytes()[..]);
        let mut gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        self.tree.apply_batch(batch)?;
        *gate = pos;
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy;
        Ok(applied)
    }

    /// Loads into `touched` every case holding an interim certificate of
    /// one of `channels` (a scan of the facts: once per general measure).
    fn touch_interim_holders(
        &self,
        channels: &[crate::domain::ChannelCode],
        start_policy: &PolicyBook,
        touched: &mut KeyMap<CaseKey, Touched>,
    ) -> Result<(), ProjectionError> {
        for kv in self.tree.scan_prefix(b"f") {
            let (k, v) = kv?;
            let facts =
                WorkFacts::decode(&v).ok_or_else(|| ProjectionError::Corrupt("worklist facts".into()))?;
            let reached =
                facts.interim_until.is_some() && facts.channel.is_some_and(|c| channels.contains(&c));
            let key = k
                .get(1..17)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(CaseKey::from_be_bytes)
                .ok_or_else(|| ProjectionError::Corrupt("worklist facts key".into()))?;
            if reached && !touched.contains_key(&key) {
                let before = Self::entries_of(key, &facts, start_policy);
                touched.insert(key, Touched { before, facts });
            }
        }
        Ok(())
    }

    fn entries_of(
        key: CaseKey,
        facts: &WorkFacts,
        policy: &PolicyBook,
    ) -> Vec<([u8; INDEX_KEY_LEN], Vec<u8>)> {
        facts
            .entries(policy)
            .iter()
            .map(|e| encode_entry(key, facts, e))
            .collect()
    }

    /// What recording an instrument would change in the open cases, as of
    /// the projection's position: `current` is the book now, `next` the book
    /// with the instrument; `today` the day the dry run is asked.
    pub fn preview(
        &self,
        current: &PolicyBook,
        next: &PolicyBook,
        today: crate::domain::Date,
    ) -> Result<Preview, ProjectionError> {
        self.read(|tree, position| {
            let mut p = Preview {
                position_seq: position.seq,
                ..Preview::default()
            };
            for kv in tree.scan_prefix(b"f") {
                let (_, v) = kv?;
                let f =
                    WorkFacts::decode(&v).ok_or_else(|| ProjectionError::Corrupt("worklist facts".into()))?;
                if !f.registered || f.exited || f.erased {
                    continue;
                }
                p.cases += 1;
                let Some(channel) = f.channel else {
                    p.without_application += 1;
                    continue;
                };
                if let (Some(recorded), true) = (f.interim_until, f.stage.is_in(&super::facts::AWAITING_CARD))
                {
                    let (a, b) = (
                        current.interim_validity(channel, recorded, current.version()),
                        next.interim_validity(channel, recorded, next.version()),
                    );
                    if a.valid_until != b.valid_until {
                        p.interim_certificates_extended += 1;
                    }
                }
                if let (Some(since), true) = (f.review_since, f.stage == crate::domain::Stage::UnderReview) {
                    let due = |book: &PolicyBook| {
                        book.current_on(since)
                            .get(channel)
                            .and_then(|r| r.decision_due(since))
                    };
                    if due(current) != due(next) {
                        p.decision_deadlines_moved += 1;
                    }
                }
            }
            let (old, new) = (current.current_on(today), next.current_on(today));
            for c in new.channels() {
                let open = |cat: &crate::domain::ChannelCatalog| {
                    cat.get(c.code)
                        .is_some_and(|r| r.check_window(today, false).is_ok())
                };
                match (open(old), open(new)) {
                    (false, true) => p.channels_opening.push(c.code.as_str().to_string()),
                    (true, false) => p.channels_closing.push(c.code.as_str().to_string()),
                    _ => {}
                }
            }
            Ok(p)
        })
    }

    /// A case's facts as persisted (or new), with the entries they hold
    /// (under `policy`, the book the tree reflects).
    fn load(&self, key: CaseKey, case_id: &str, policy: &PolicyBook) -> Result<Touched, ProjectionError> {
        let facts = match self.tree.get(facts_key(key))? {
            Some(v) => {
                WorkFacts::decode(&v).ok_or_else(|| ProjectionError::Corrupt("worklist facts".into()))?
            }
            None => WorkFacts::new(case_id),
        };
        let before = Self::entries_of(key, &facts, policy);
        Ok(Touched { before, facts })
    }

    /// Catches up to `up_to` (default: the head), calling `progress` with
    /// the position's seq after every batch; flushes at the end.
    pub fn catch_up(
        &self,
        up_to: Option<u64>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CatchUp, ProjectionError> {
        let started = Instant::now();
        let (mut events, mut batches) = (0u64, 0u64);
        loop {
            let n = self.step(WORKLIST_BATCH_EVENTS, up_to)?;
            if n == 0 {
                break;
            }
            events += n;
            batches += 1;
            progress(self.position().seq);
        }
        self.tree.flush()?;
        Ok(CatchUp {
            events,
            batches,
            elapsed: started.elapsed(),
            position: self.position(),
        })
    }
}

/// Where the follower is: catching up after the start, serving, or stopped.
#[derive(Default)]
pub struct FollowerStatus {
    ready: AtomicBool,
    failed: OnceLock<String>,
}

impl FollowerStatus {
    /// Whether the projection reached the head seen at start (answers are served).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
    /// Why the projection stopped, if it did.
    pub fn failed(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }
    pub(crate) fn fail(&self, e: impl std::fmt::Display) {
        tracing::error!(error = %e, "worklist projection stopped; Worklists answers INTERNAL (run `registry rebuild-projections` on the stopped store)");
        let _ = self.failed.set(e.to_string());
    }
}

/// The thread that keeps the worklists at the head of the log.
pub struct Follower {
    thread: StoppableThread,
}

impl Follower {
    /// Starts following: catches up to the head seen now, marks `status`
    /// ready, then applies each new group of commits as it becomes durable
    /// (woken by the head watch, and at least every 250 ms).
    pub fn spawn(
        worklists: Arc<Worklists>,
        status: Arc<FollowerStatus>,
        mut head_rx: tokio::sync::watch::Receiver<crate::log::Head>,
    ) -> std::io::Result<Follower> {
        let thread = StoppableThread::spawn("worklist-follower", move |stop| {
            let status = &status;
            // A panic ends the thread like an error: Worklists is then
            // NOT_SERVING and answers INTERNAL, never a list nobody follows.
            let ended = catch_panic(move || {
                let target = head_rx.borrow().seq;
                let started = Instant::now();
                let from = worklists.position().seq;
                while worklists.position().seq < target {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match worklists.step(WORKLIST_BATCH_EVENTS, Some(target)) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => return status.fail(e),
                    }
                }
                status.ready.store(true, Ordering::Release);
                tracing::info!(
                    seq = worklists.position().seq,
                    applied = worklists.position().seq - from,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "worklist projection caught up; Worklists is serving"
                );
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return status.fail(e),
                };
                while !stop.load(Ordering::Relaxed) {
                    match worklists.step(WORKLIST_BATCH_EVENTS, None) {
                        Ok(0) => {}
                        Ok(_) => continue,
                        Err(e) => return status.fail(e),
                    }
                    rt.block_on(async {
                        let _ = tokio::time::timeout(Duration::from_millis(250), head_rx.changed()).await;
                    });
                    // Let a few group commits gather into the next batch.
                    std::thread::sleep(Duration::from_millis(PROJECTION_FOLLOW_PAUSE_MS));
                }
                // Stopping (after the gRPC server drained): apply what was
                // appended since, bounded so a follower far behind does not
                // hold up the stop; the next start resumes from the checkpoint.
                let until = Instant::now() + Duration::from_millis(PROJECTION_STOP_CATCH_UP_MS);
                while Instant::now() < until {
                    match worklists.step(WORKLIST_BATCH_EVENTS, None) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => return status.fail(e),
                    }
                }
            });
            if let Err(e) = ended {
                status.fail(e);
            }
        })?;
        Ok(Follower { thread })
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) {
        self.thread.stop();
    }
}

/// Drops the worklists of `store` and rebuilds them from the log (and the
/// policy stream in it).
pub fn rebuild_store(store: &Store, progress: &mut dyn FnMut(u64)) -> Result<CatchUp, ProjectionError> {
    Worklists::drop_tree(store)?;
    let w = Worklists::open(store)?;
    w.catch_up(None, progress)
}
