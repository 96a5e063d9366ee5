//! The projection engine: applies the global log, in order and without gaps,
//! from a durable checkpoint, and persists its facts with that checkpoint in
//! one sled batch.
//!
//! Storage: one tree (default [`TREE`]) so that a batch (facts changed,
//! certifications changed, series, checkpoint) is atomic:
//! - `c` || case key (16 bytes) -> [`CaseFacts::encode`]
//! - `r` || case key || certification id (u32 BE) -> route, sector, stage
//! - `m:checkpoint` -> seq (u64 BE) || hash of that event (32 bytes)
//! - `m:series` -> (metric u8, month u32 BE, count u64 BE)*
//! - `s` || metric u8 || month u32 BE -> the series cells of that month
//!   ([`SeriesCell`]): (department, sex, age band, status, channel length,
//!   channel bytes, count u64 BE)*; written for the months that changed
//! - `m:version` -> format version (u8)
//! - `m:max_on` -> latest business date applied (year u16 BE, month, day)
//! - `e` || month index (u32 BE, year * 12 + month - 1) -> the month-end
//!   snapshot of the cube ([`encode_snapshot`]): derived like the rest,
//!   written in the same batches, rebuilt with the projection
//!
//! The cube, funnel, expiring permits and certification counts are derived
//! from the facts at load. A restart resumes at checkpoint + 1: whatever was
//! applied after the last durable batch is applied again from the facts as
//! they were at that checkpoint, so nothing is lost or counted twice.
//!
//! Continuity: every event must have seq = checkpoint + 1 and prev_hash =
//! the checkpoint's hash; a page that ends before the head is a gap. Any of
//! these stops the projection with an error naming the seq. The checks are
//! the shared reader's (`log/follow.rs`: [`read_page`], and
//! [`check_next`](crate::log::follow::check_next) for each event).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::facts::CaseFacts;
use super::state::{ApplyError, CertFacts, Metric, Position, ProjectionState, SeriesCell};
use crate::clock::today;
use crate::domain::{CertificationRoute, CertificationStage, Date, Sector};
use crate::limits::{
    PROJECTION_BATCH_EVENTS, PROJECTION_FOLLOW_PAUSE_MS, PROJECTION_LOAD_CHUNK, PROJECTION_LOAD_THREADS,
    PROJECTION_PERSIST_INTERVAL_MS, PROJECTION_STOP_CATCH_UP_MS, READ_PAGE_EVENTS_MAX,
};
use crate::log::follow::{read_page, PageError};
use crate::log::{Head, Store, StoreError, StoredEvent};

/// Default tree of the statistics projection.
pub const TREE: &str = "proj_stats";
/// Version of the stored projection (`m:version`): 1 = 48-byte facts; 2 =
/// 55-byte facts (nationality, exit destination, active guardian links), the series cells (`s`
/// keys) and the month-end snapshots (`e` keys). An older version is
/// rebuilt from the log when opened; a newer one is refused with "run
/// rebuild-projections".
const FORMAT_VERSION: u8 = 2;
const KEY_CHECKPOINT: &[u8] = b"m:checkpoint";
const KEY_SERIES: &[u8] = b"m:series";
const KEY_VERSION: &[u8] = b"m:version";
const KEY_MAX_ON: &[u8] = b"m:max_on";

/// Why the projection stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// An event broke continuity or did not decode.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The head is past the checkpoint, yet nothing follows it.
    #[error("gap in the log: seq {expected} is missing (head is {head})")]
    Missing {
        /// The checkpoint's seq + 1.
        expected: u64,
        /// The log's head seq, read before the page.
        head: u64,
    },
    /// Reading the log failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// Reading or writing the projection's own tree failed.
    #[error("projection storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored key or value of the projection does not decode (names what);
    /// also a stored format newer than this build's.
    #[error("corrupt projection state: {0}")]
    Corrupt(String),
    /// The checkpoint is past the log's head: the projection belongs to
    /// another log.
    #[error("the projection is ahead of the log (checkpoint {checkpoint}, head {head}): a different log?")]
    Ahead {
        /// The projection's checkpoint seq.
        checkpoint: u64,
        /// The log's head seq.
        head: u64,
    },
    /// The stop flag was set while the facts were still loading.
    #[error("stopped before the projection was loaded")]
    Stopped,
}

impl From<PageError> for ProjectionError {
    fn from(e: PageError) -> ProjectionError {
        match e {
            PageError::Missing { expected, head } => ProjectionError::Missing { expected, head },
            PageError::Ahead { position, head } => ProjectionError::Ahead {
                checkpoint: position,
                head,
            },
            PageError::Store(e) => ProjectionError::Store(e),
        }
    }
}

/// How far a catch-up went.
#[derive(Clone, Copy, Debug)]
pub struct CatchUp {
    /// Events applied.
    pub events: u64,
    /// Persisted batches (each one sled batch with its checkpoint).
    pub batches: u64,
    /// Time the catch-up took.
    pub elapsed: Duration,
    /// The log position reached.
    pub position: Position,
}

impl CatchUp {
    /// Events applied per second of the catch-up (0 when none were).
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One persist of a projection: facts and checkpoint, written atomically.
#[must_use = "a persist that is not applied leaves its changes unwritten"]
pub struct Persist {
    tree: sled::Tree,
    batch: sled::Batch,
}

impl Persist {
    /// Writes the batch (atomically: the facts with their checkpoint).
    pub fn apply(self) -> Result<(), ProjectionError> {
        self.tree.apply_batch(self.batch)?;
        Ok(())
    }
}

/// A persisted projection over a store.
pub struct Engine {
    store: Store,
    tree: sled::Tree,
    state: ProjectionState,
    /// When the facts were last persisted, and whether pages were applied since.
    persisted_at: std::time::Instant,
    unpersisted: bool,
    /// The wait before the next persist: [`PROJECTION_PERSIST_INTERVAL_MS`],
    /// longer after a large batch (back-dated events rewrite month-end
    /// snapshots), so that persisting stays a small share of the follower's
    /// time; a crash re-applies the events since the checkpoint either way.
    persist_every: Duration,
}

impl Engine {
    /// Opens the projection kept in `tree_name` (loading facts and the
    /// checkpoint), with the cube at `cube_date`. Does not catch up.
    pub fn open(store: &Store, tree_name: &str, cube_date: Date) -> Result<Engine, ProjectionError> {
        Engine::open_until(store, tree_name, cube_date, &AtomicBool::new(false))
    }

    /// Like [`Engine::open`], giving up with [`ProjectionError::Stopped`]
    /// once `stop` is set (the server stops while the facts still load).
    pub fn open_until(
        store: &Store,
        tree_name: &str,
        cube_date: Date,
        stop: &AtomicBool,
    ) -> Result<Engine, ProjectionError> {
        let mut tree = store.db().open_tree(tree_name)?;
        let mut state = ProjectionState::with_snapshots(cube_date);
        if let Some(v) = tree.get(KEY_VERSION)? {
            match v.as_ref() {
                [FORMAT_VERSION] => {}
                // An older format of derived data: rebuilt from the log.
                [old] if *old < FORMAT_VERSION => {
                    tracing::warn!(
                        tree = tree_name,
                        from = old,
                        to = FORMAT_VERSION,
                        "statistics projection in an older format: rebuilding it from the log"
                    );
                    drop(tree);
                    store.db().drop_tree(tree_name)?;
                    tree = store.db().open_tree(tree_name)?;
                }
                other => {
                    return Err(ProjectionError::Corrupt(format!(
                        "format version {other:?}; run rebuild-projections"
                    )))
                }
            }
        }
        if let Some(cp) = tree.get(KEY_CHECKPOINT)? {
            let head = Head::from_bytes(&cp).map_err(|e| ProjectionError::Corrupt(e.to_string()))?;
            state.position = Position {
                seq: head.seq,
                hash: head.hash,
            };
        }
        load_case_facts(&tree, &mut state, stop)?;
        for kv in tree.scan_prefix(b"r") {
            let (k, v) = kv?;
            if k.len() != 21 || v.len() != 3 {
                return Err(ProjectionError::Corrupt("certification".into()));
            }
            let key = key_of(&k[1..17]).expect("16");
            let id = u32::from_be_bytes(k[17..21].try_into().expect("4"));
            let c = CertFacts {
                route: *CertificationRoute::ALL
                    .get(v[0] as usize)
                    .ok_or_else(|| ProjectionError::Corrupt("route".into()))?,
                sector: *Sector::ALL
                    .get(v[1] as usize)
                    .ok_or_else(|| ProjectionError::Corrupt("sector".into()))?,
                stage: *CertificationStage::ALL
                    .get(v[2] as usize)
                    .ok_or_else(|| ProjectionError::Corrupt("stage".into()))?,
            };
            state.certs.insert((key, id), c);
        }
        if let Some(blob) = tree.get(KEY_SERIES)? {
            if blob.len() % 13 != 0 {
                return Err(ProjectionError::Corrupt("series".into()));
            }
            for rec in blob.chunks(13) {
                let metric = *Metric::ALL
                    .get(rec[0] as usize)
                    .ok_or_else(|| ProjectionError::Corrupt("metric".into()))?;
                let month = u32::from_be_bytes(rec[1..5].try_into().expect("4"));
                let n = u64::from_be_bytes(rec[5..13].try_into().expect("8"));
                state.series.insert((metric, month), n);
            }
        }
        for kv in tree.scan_prefix(b"s") {
            let (k, v) = kv?;
            let bad = || ProjectionError::Corrupt(format!("series cells {:?}", k.as_ref()));
            if k.len() != 6 {
                return Err(bad());
            }
            let metric = *Metric::ALL.get(k[1] as usize).ok_or_else(bad)?;
            let month = u32::from_be_bytes(k[2..6].try_into().expect("4"));
            let mut rest = v.as_ref();
            while !rest.is_empty() {
                let (cell, used) = SeriesCell::decode_tail(metric, month, rest).ok_or_else(bad)?;
                let n = rest.get(used..used + 8).ok_or_else(bad)?;
                state
                    .series_cells
                    .insert(cell, u64::from_be_bytes(n.try_into().expect("8")));
                rest = &rest[used + 8..];
            }
        }
        if let Some(d) = tree.get(KEY_MAX_ON)? {
            state.max_on =
                Some(super::facts::date_from(&d).ok_or_else(|| ProjectionError::Corrupt("max_on".into()))?);
        }
        state.rebuild_aggregates();
        for kv in tree.scan_prefix(b"e") {
            let (k, v) = kv?;
            let month = k
                .get(1..5)
                .filter(|_| k.len() == 5)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4")))
                .ok_or_else(|| ProjectionError::Corrupt("snapshot key".into()))?;
            let cells =
                decode_snapshot(&v).ok_or_else(|| ProjectionError::Corrupt(format!("snapshot {month}")))?;
            state.load_snapshot(month, cells);
        }
        state.track_dirty = true;
        Ok(Engine {
            store: store.clone(),
            tree,
            state,
            persisted_at: std::time::Instant::now(),
            unpersisted: false,
            persist_every: Duration::from_millis(PROJECTION_PERSIST_INTERVAL_MS),
        })
    }

    /// Drops the projection kept in `tree_name` (for a rebuild).
    pub fn drop_tree(store: &Store, tree_name: &str) -> Result<(), ProjectionError> {
        store.db().drop_tree(tree_name)?;
        Ok(())
    }

    /// The state (read access).
    pub fn state(&self) -> &ProjectionState {
        &self.state
    }

    /// Mutable state (to move the cube date).
    pub fn state_mut(&mut self) -> &mut ProjectionState {
        &mut self.state
    }

    /// The store it reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Applies a page in memory (continuity checked event by event). The
    /// follower persists the facts at most every
    /// [`PROJECTION_PERSIST_INTERVAL_MS`] ([`Engine::take_persist_if_due`]):
    /// a restart resumes from the persisted checkpoint and re-applies the
    /// events after it, with the same result. On error the in-memory state
    /// must be reloaded.
    pub fn apply_page_deferred(&mut self, page: &[StoredEvent]) -> Result<(), ProjectionError> {
        for ev in page {
            self.state.apply_stored(ev)?;
        }
        self.state.flush_snapshots();
        self.unpersisted = true;
        Ok(())
    }

    /// What [`Engine::apply_page_deferred`] left in memory, as a batch to
    /// persist, if [`PROJECTION_PERSIST_INTERVAL_MS`] passed since the last one.
    pub fn take_persist_if_due(&mut self) -> Option<Persist> {
        let due = self.persisted_at.elapsed() >= self.persist_every;
        (due && self.unpersisted).then(|| self.take_persist())
    }

    /// Persists what [`Engine::apply_page_deferred`] left in memory, if anything.
    pub fn persist_if_needed(&mut self) -> Result<(), ProjectionError> {
        if self.unpersisted {
            self.persist()?;
        }
        Ok(())
    }

    /// Writes changed facts, certifications, series and the checkpoint in one batch.
    pub fn persist(&mut self) -> Result<(), ProjectionError> {
        self.take_persist().apply()
    }

    /// Changed facts, certifications, series and the checkpoint of the
    /// current position, as one batch, and clears the changes. The batch is
    /// built in memory; [`Persist::apply`] writes it, so that the follower
    /// writes to sled without holding the lock statistics queries read
    /// under. Batches must be applied in the order they were taken (the
    /// follower thread is the only one taking them while serving).
    pub fn take_persist(&mut self) -> Persist {
        let mut batch = sled::Batch::default();
        let mut key = [0u8; 21];
        key[0] = b'c';
        for k in self.state.dirty.drain() {
            key[1..17].copy_from_slice(&k.to_be_bytes());
            if let Some(f) = self.state.cases.get(&k) {
                batch.insert(&key[..17], &f.encode()[..]);
            }
        }
        key[0] = b'r';
        for (k, id) in self.state.dirty_certs.drain() {
            key[1..17].copy_from_slice(&k.to_be_bytes());
            key[17..21].copy_from_slice(&id.to_be_bytes());
            if let Some(c) = self.state.certs.get(&(k, id)) {
                batch.insert(&key[..], &[c.route as u8, c.sector as u8, c.stage as u8][..]);
            }
        }
        let mut series = Vec::with_capacity(self.state.series.len() * 13);
        for ((metric, month), n) in &self.state.series {
            series.push(*metric as u8);
            series.extend_from_slice(&month.to_be_bytes());
            series.extend_from_slice(&n.to_be_bytes());
        }
        batch.insert(KEY_SERIES, series);
        // The series cells of every (metric, month) that changed, one key each
        // (`s`, metric, month BE): the cells' tails and counts.
        for (metric, month) in std::mem::take(&mut self.state.dirty_series) {
            let mut value = Vec::new();
            let from = SeriesCell {
                metric,
                month,
                department: 0,
                sex: crate::domain::Sex::ALL[0],
                age_band: crate::domain::AgeBand::ALL[0],
                status: crate::domain::PersonStatus::ALL[0],
                channel: None,
            };
            for (cell, n) in self
                .state
                .series_cells
                .range(from..)
                .take_while(|(c, _)| (c.metric, c.month) == (metric, month))
            {
                cell.encode_tail(&mut value);
                value.extend_from_slice(&n.to_be_bytes());
            }
            let mut key = vec![b's', metric as u8];
            key.extend_from_slice(&month.to_be_bytes());
            batch.insert(key, value);
        }
        self.state.flush_snapshots();
        let mut snapshot_bytes = 0usize;
        let months: Vec<u32> = std::mem::take(&mut self.state.dirty_snapshots)
            .into_iter()
            .collect();
        for m in months {
            let mut k = [b'e', 0, 0, 0, 0];
            k[1..].copy_from_slice(&m.to_be_bytes());
            let v = encode_snapshot(&self.state.snapshot_cells(m));
            snapshot_bytes += v.len();
            batch.insert(&k[..], v);
        }
        // At most ~16 MiB of snapshots per second of follower time.
        self.persist_every = Duration::from_millis(PROJECTION_PERSIST_INTERVAL_MS).max(
            Duration::from_secs_f64(snapshot_bytes as f64 / f64::from(16u32 << 20)),
        );
        batch.insert(KEY_VERSION, &[FORMAT_VERSION][..]);
        if let Some(d) = self.state.max_on {
            batch.insert(KEY_MAX_ON, &super::facts::date_bytes(d)[..]);
        }
        let p = self.state.position;
        batch.insert(
            KEY_CHECKPOINT,
            &Head {
                seq: p.seq,
                hash: p.hash,
            }
            .to_bytes()[..],
        );
        self.persisted_at = std::time::Instant::now();
        self.unpersisted = false;
        Persist {
            tree: self.tree.clone(),
            batch,
        }
    }

    /// Applies up to `max_batches` batches of up to `batch_events` events,
    /// not past `up_to` (default: the head). Returns what it did.
    pub fn catch_up_limited(
        &mut self,
        up_to: Option<u64>,
        batch_events: usize,
        max_batches: Option<u64>,
    ) -> Result<CatchUp, ProjectionError> {
        self.catch_up_inner(up_to, batch_events, max_batches, &mut |_| {})
    }

    /// Catches up to the head, calling `progress` with the position's seq
    /// after every persisted batch (`registry rebuild-projections`).
    pub fn catch_up_reporting(&mut self, progress: &mut dyn FnMut(u64)) -> Result<CatchUp, ProjectionError> {
        self.catch_up_inner(None, PROJECTION_BATCH_EVENTS, None, progress)
    }

    fn catch_up_inner(
        &mut self,
        up_to: Option<u64>,
        batch_events: usize,
        max_batches: Option<u64>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CatchUp, ProjectionError> {
        let started = Instant::now();
        let (mut events, mut batches) = (0u64, 0u64);
        let batch_events = batch_events.max(1);
        loop {
            if max_batches.is_some_and(|m| batches >= m) {
                break;
            }
            // One persisted batch: read pages (each at most READ_PAGE_EVENTS_MAX)
            // until `batch_events` are applied, then write state and checkpoint once.
            let start = self.state.position.seq;
            let batch_room = up_to.map_or(batch_events as u64, |u| {
                u.saturating_sub(start).min(batch_events as u64)
            });
            let mut applied = 0u64;
            while let Some(page) = next_page(&self.store, self.state.position.into(), batch_room - applied)? {
                for ev in &page {
                    self.state.apply_stored(ev)?;
                }
                self.state.flush_snapshots();
                applied += page.len() as u64;
            }
            if applied == 0 {
                break;
            }
            self.persist()?;
            events += applied;
            batches += 1;
            progress(self.state.position.seq);
        }
        self.store.db().flush()?;
        Ok(CatchUp {
            events,
            batches,
            elapsed: started.elapsed(),
            position: self.state.position,
        })
    }

    /// Catches up to the head.
    pub fn catch_up(&mut self) -> Result<CatchUp, ProjectionError> {
        self.catch_up_limited(None, PROJECTION_BATCH_EVENTS, None)
    }
}

/// Loads every `c` entry (per-case facts) of `tree` into `state`, read by
/// [`PROJECTION_LOAD_THREADS`] threads each scanning one slice of the key
/// space (case keys are BLAKE3 hashes, so the slices are even); the facts
/// travel in chunks over one bounded channel. The result does not depend on
/// the order: `load_case` adds a case, aggregates are rebuilt afterwards.
fn load_case_facts(
    tree: &sled::Tree,
    state: &mut ProjectionState,
    stop: &AtomicBool,
) -> Result<(), ProjectionError> {
    type Chunk = Result<Vec<(u128, CaseFacts)>, ProjectionError>;
    let threads = PROJECTION_LOAD_THREADS.clamp(1, 256);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(threads * 2);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        for i in 0..threads {
            let (tx, failed) = (tx.clone(), &failed);
            // Slice i: first key byte in [256 i / n, 256 (i + 1) / n).
            let lo = (256 * i / threads) as u8;
            let hi = 256 * (i + 1) / threads;
            s.spawn(move || {
                let range = if hi == 256 {
                    tree.range(&[b'c', lo][..]..&[b'd'][..])
                } else {
                    tree.range(&[b'c', lo][..]..&[b'c', hi as u8][..])
                };
                let mut chunk = Vec::with_capacity(PROJECTION_LOAD_CHUNK);
                for kv in range {
                    if stop.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let decoded = kv.map_err(ProjectionError::from).and_then(|(k, v)| {
                        let key =
                            key_of(&k[1..]).ok_or_else(|| ProjectionError::Corrupt("case key".into()))?;
                        let f = CaseFacts::decode(&v)
                            .ok_or_else(|| ProjectionError::Corrupt("case facts".into()))?;
                        Ok((key, f))
                    });
                    match decoded {
                        Ok(entry) => chunk.push(entry),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                    if chunk.len() == PROJECTION_LOAD_CHUNK
                        && tx
                            .send(Ok(std::mem::replace(
                                &mut chunk,
                                Vec::with_capacity(PROJECTION_LOAD_CHUNK),
                            )))
                            .is_err()
                    {
                        return;
                    }
                }
                let _ = tx.send(Ok(chunk));
            });
        }
        drop(tx);
        for chunk in rx {
            if stop.load(Ordering::Relaxed) {
                failed.store(true, Ordering::Relaxed);
                return Err(ProjectionError::Stopped);
            }
            match chunk {
                Ok(entries) => {
                    for (key, f) in entries {
                        state.load_case(key, f);
                    }
                }
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Err(ProjectionError::Stopped);
        }
        Ok(())
    })
}

/// A month-end snapshot as stored: the channel codes it uses (count u8,
/// then each as length u8 + ASCII, empty for "no application"), then per
/// non-zero cell the packed cell (u128 BE, its channel bits the index in
/// that list) and the count (u64 BE).
pub fn encode_snapshot(cells: &[(u128, Option<crate::domain::ChannelCode>, u64)]) -> Vec<u8> {
    let mut codes: Vec<Option<crate::domain::ChannelCode>> = Vec::new();
    let mut body = Vec::with_capacity(cells.len() * 24);
    for (k, channel, n) in cells {
        let i = codes.iter().position(|c| c == channel).unwrap_or_else(|| {
            codes.push(*channel);
            codes.len() - 1
        });
        body.extend_from_slice(&(k | (i as u128) << 4).to_be_bytes());
        body.extend_from_slice(&n.to_be_bytes());
    }
    let mut out = vec![codes.len() as u8];
    for c in &codes {
        let text = c.as_ref().map_or("", |c| c.as_str());
        out.push(text.len() as u8);
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(&body);
    out
}

/// Reads [`encode_snapshot`]'s bytes back (`None`: malformed).
#[allow(clippy::type_complexity)]
pub fn decode_snapshot(b: &[u8]) -> Option<Vec<(u128, Option<crate::domain::ChannelCode>, u64)>> {
    let (&n, mut rest) = b.split_first()?;
    let mut codes = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (&len, r) = rest.split_first()?;
        let (text, r) = r.split_at_checked(len as usize)?;
        codes.push(if len == 0 {
            None
        } else {
            Some(crate::domain::ChannelCode::parse(
                std::str::from_utf8(text).ok()?,
            )?)
        });
        rest = r;
    }
    if rest.len() % 24 != 0 {
        return None;
    }
    rest.chunks(24)
        .map(|c| {
            let k = u128::from_be_bytes(c[..16].try_into().ok()?);
            let n = u64::from_be_bytes(c[16..].try_into().ok()?);
            let channel = *codes.get(((k >> 4) & 0xff) as usize)?;
            Some((k & !(0xff << 4), channel, n))
        })
        .collect()
}

fn key_of(b: &[u8]) -> Option<u128> {
    Some(u128::from_be_bytes(b.try_into().ok()?))
}

/// What a point-in-time replay stops at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    /// Events with business date <= D (whole log read); statuses on D.
    Date(Date),
    /// Events with seq <= P; statuses on `on`, or on the latest business
    /// date seen when `None`.
    Seq(u64, Option<Date>),
}

/// The next page after `pos` for a reader with `room` events left to read:
/// at most [`READ_PAGE_EVENTS_MAX`] of them; `None` when no room is left or
/// nothing follows.
pub(crate) fn next_page(
    store: &Store,
    pos: Head,
    room: u64,
) -> Result<Option<Vec<StoredEvent>>, ProjectionError> {
    let room = room.min(READ_PAGE_EVENTS_MAX as u64);
    if room == 0 {
        return Ok(None);
    }
    let page = read_page(store, pos, room as usize)?;
    Ok((!page.is_empty()).then_some(page))
}

/// Builds a temporary, in-memory projection by replaying the log with the
/// same apply code (cost: one read of the log up to the position).
pub fn replay(store: &Store, as_of: AsOf) -> Result<ProjectionState, ProjectionError> {
    let (limit, cube_date, date_filter) = match as_of {
        AsOf::Date(d) => (store.head()?.seq, d, Some(d)),
        AsOf::Seq(p, on) => (p.min(store.head()?.seq), on.unwrap_or(Date::MIN), None),
    };
    let mut state = ProjectionState::new(cube_date);
    while let Some(page) = next_page(
        store,
        state.position.into(),
        limit.saturating_sub(state.position.seq),
    )? {
        for ev in &page {
            match date_filter {
                None => state.apply_stored(ev)?,
                Some(d) => state.apply_stored_if(ev, |e| e.on() <= d)?,
            }
        }
    }
    if let AsOf::Seq(_, None) = as_of {
        let on = state.max_on().unwrap_or(Date::MIN);
        state.set_cube_date(on);
    }
    Ok(state)
}

/// A projection shared between its follower thread and readers.
pub type Shared = Arc<RwLock<Engine>>;

/// A projection that may still be loading: set once by
/// [`Follower::spawn_loading`], either to the loaded projection or to why
/// loading failed.
#[derive(Default)]
pub struct ProjectionSlot {
    ready: std::sync::OnceLock<Shared>,
    failed: std::sync::OnceLock<String>,
    /// Set when the follower stopped after loading: the projection no
    /// longer follows the log, so it is not served.
    stopped: std::sync::OnceLock<String>,
}

/// What a [`ProjectionSlot`] holds now.
pub enum SlotState<'a> {
    /// Still loading the facts and catching up.
    Loading,
    /// Loaded and following the log.
    Ready(&'a Shared),
    /// Loading failed: why.
    Failed(&'a str),
    /// Loaded, then its follower stopped on an error: stale from then on.
    Stopped(&'a str),
}

impl ProjectionSlot {
    /// A slot holding an already loaded projection.
    pub fn loaded(shared: Shared) -> ProjectionSlot {
        let slot = ProjectionSlot::default();
        let _ = slot.ready.set(shared);
        slot
    }

    /// Where the projection stands now (a stop after loading wins over ready).
    pub fn state(&self) -> SlotState<'_> {
        if let Some(e) = self.stopped.get() {
            SlotState::Stopped(e)
        } else if let Some(s) = self.ready.get() {
            SlotState::Ready(s)
        } else if let Some(e) = self.failed.get() {
            SlotState::Failed(e)
        } else {
            SlotState::Loading
        }
    }

    /// Waits up to `within` for the projection to be loaded or to fail;
    /// true once it is loaded.
    pub async fn wait_loaded(&self, within: Duration) -> bool {
        let until = tokio::time::Instant::now() + within;
        loop {
            match self.state() {
                SlotState::Ready(_) => return true,
                SlotState::Failed(_) | SlotState::Stopped(_) => return false,
                SlotState::Loading if tokio::time::Instant::now() >= until => return false,
                SlotState::Loading => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
}

/// Runs the body of a follower thread, turning a panic into an error
/// message: a follower that dies on a bug is then reported like one that
/// stopped on an error (its service NOT_SERVING), not silently gone while
/// its last state is still served. (The release profile unwinds.)
pub fn catch_panic(body: impl FnOnce()) -> Result<(), FollowerPanic> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        FollowerPanic(what)
    })
}

/// A follower thread's panic, with the panic's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the follower thread panicked: {0}")]
pub struct FollowerPanic(pub String);

/// A thread that runs until its stop flag is raised: by [`stop`](Self::stop),
/// which then waits for it, or when dropped (likewise).
pub struct StoppableThread {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StoppableThread {
    /// Starts `run` on a thread named `name`; `run` is given the stop flag.
    pub fn spawn(
        name: &str,
        run: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> std::io::Result<StoppableThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&flag))?;
        Ok(StoppableThread {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for StoppableThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread that keeps a shared projection at the head.
pub struct Follower {
    error: Arc<Mutex<Option<String>>>,
    thread: StoppableThread,
}

impl Follower {
    /// Starts following: catches up, then wakes on every head change (and
    /// at least every 250 ms, to move the cube to a new day at midnight).
    /// With `track_today`, the cube moves to the new date when the day changes in Colombia.
    pub fn spawn(
        shared: Shared,
        head_rx: tokio::sync::watch::Receiver<Head>,
        track_today: bool,
    ) -> std::io::Result<Follower> {
        Follower::spawn_with(move |_| Ok(shared), head_rx, track_today, None)
    }

    /// Starts a follower that first loads the projection kept in `tree_name`
    /// (facts, then the events up to the head seen when it started), then
    /// publishes it in `slot` and follows. Until then the slot says
    /// loading; if loading fails, it says why. `registry serve` uses this so
    /// that cases are served while a large projection loads.
    pub fn spawn_loading(
        store: Store,
        tree_name: &'static str,
        slot: Arc<ProjectionSlot>,
        head_rx: tokio::sync::watch::Receiver<Head>,
    ) -> std::io::Result<Follower> {
        let target = head_rx.borrow().seq;
        let slot_for_stop = slot.clone();
        let load = move |stop: &AtomicBool| -> Result<Shared, ProjectionError> {
            let loaded = (|| {
                let started = Instant::now();
                let mut engine = Engine::open_until(&store, tree_name, today(), stop)?;
                let facts_loaded = started.elapsed();
                let from = engine.state.position.seq;
                while engine.state.position.seq < target {
                    if stop.load(Ordering::Relaxed) {
                        return Err(ProjectionError::Stopped);
                    }
                    let c = engine.catch_up_limited(Some(target), PROJECTION_BATCH_EVENTS, Some(1))?;
                    if c.events == 0 {
                        break;
                    }
                }
                tracing::info!(
                    cases = engine.state.cases.len(),
                    seq = engine.state.position.seq,
                    applied = engine.state.position.seq - from,
                    facts_ms = facts_loaded.as_millis() as u64,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "statistics projection loaded and caught up; Statistics is serving"
                );
                Ok(Arc::new(RwLock::new(engine)))
            })();
            match loaded {
                Ok(shared) => {
                    let _ = slot.ready.set(shared.clone());
                    Ok(shared)
                }
                // A stop is not a failure: the slot stays "loading".
                Err(ProjectionError::Stopped) => Err(ProjectionError::Stopped),
                Err(e) => {
                    let _ = slot.failed.set(e.to_string());
                    Err(e)
                }
            }
        };
        Follower::spawn_with(load, head_rx, true, Some(slot_for_stop))
    }

    fn spawn_with(
        load: impl FnOnce(&AtomicBool) -> Result<Shared, ProjectionError> + Send + 'static,
        mut head_rx: tokio::sync::watch::Receiver<Head>,
        track_today: bool,
        slot: Option<Arc<ProjectionSlot>>,
    ) -> std::io::Result<Follower> {
        let error = Arc::new(Mutex::new(None));
        let error2 = error.clone();
        let thread = StoppableThread::spawn("projection-follower", move |stop| {
            let fail = |e: String| {
                // A projection that stopped following is stale: not
                // served. One that never loaded says why.
                if let Some(slot) = slot.as_ref() {
                    if slot.ready.get().is_some() {
                        let _ = slot.stopped.set(e.clone());
                    } else {
                        let _ = slot.failed.set(e.clone());
                    }
                }
                *error2.lock().unwrap_or_else(|p| p.into_inner()) = Some(e)
            };
            let fail = &fail;
            // A panic ends the thread like an error: the slot says so,
            // never "ready" over a projection nobody follows any more.
            let ended = catch_panic(move || {
                let shared = match load(stop) {
                    Ok(shared) => shared,
                    Err(ProjectionError::Stopped) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "statistics projection could not be loaded; Statistics answers INTERNAL (run `registry rebuild-projections` on the stopped store)");
                        return fail(e.to_string());
                    }
                };
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return fail(e.to_string()),
                };
                while !stop.load(Ordering::Relaxed) {
                    match follow_step(&shared, track_today) {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "statistics projection stopped");
                            return fail(e.to_string());
                        }
                    }
                    rt.block_on(async {
                        let _ = tokio::time::timeout(Duration::from_millis(250), head_rx.changed()).await;
                    });
                    // Let a few group commits gather into the next page.
                    std::thread::sleep(Duration::from_millis(PROJECTION_FOLLOW_PAUSE_MS));
                }
                // Stopping: apply what was appended since the last wake-up
                // (the server stops the follower after its gRPC server has
                // drained), so the next start re-applies nothing; bounded, so
                // a follower far behind does not hold up the stop.
                let until = Instant::now() + Duration::from_millis(PROJECTION_STOP_CATCH_UP_MS);
                while Instant::now() < until {
                    match follow_step(&shared, false) {
                        Ok(true) => continue,
                        Ok(false) => break,
                        Err(e) => {
                            tracing::error!(error = %e, "statistics projection stopped");
                            return fail(e.to_string());
                        }
                    }
                }
                let mut e = shared.write().unwrap_or_else(|p| p.into_inner());
                if let Err(err) = e.persist_if_needed() {
                    tracing::error!(error = %err, "statistics projection: persisting at stop failed; the next start re-applies from the last checkpoint");
                }
            });
            if let Err(e) = ended {
                tracing::error!(error = %e, "statistics projection stopped");
                fail(e.to_string());
            }
        })?;
        Ok(Follower { error, thread })
    }

    /// The error that stopped the follower, if any.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) {
        self.thread.stop();
    }
}

/// One step: applies one page if there is one (true), else moves the cube to
/// today if the day changed (false); persists when due. The page is read,
/// and the persist written, without the lock (queries wait only for the
/// page to be applied in memory).
pub fn follow_step(shared: &Shared, track_today: bool) -> Result<bool, ProjectionError> {
    let (store, pos) = {
        let e = shared.read().unwrap_or_else(|p| p.into_inner());
        (e.store.clone(), e.state.position)
    };
    let page = read_page(&store, pos.into(), PROJECTION_BATCH_EVENTS)?;
    let persist = {
        let mut e = shared.write().unwrap_or_else(|p| p.into_inner());
        if page.is_empty() {
            let today = today();
            if track_today && e.state.cube_date() != today {
                e.state.set_cube_date(today);
            }
        } else {
            e.apply_page_deferred(&page)?;
        }
        // Caught up or not, persist what the pages applied at the same pace.
        e.take_persist_if_due()
    };
    if let Some(p) = persist {
        p.apply()?;
    }
    Ok(!page.is_empty())
}

/// Drops the projection of `store` and rebuilds it from the empty state;
/// returns the catch-up figures and the engine.
pub fn rebuild_store(store: &Store) -> Result<(CatchUp, Engine), ProjectionError> {
    rebuild_store_reporting(store, &mut |_| {})
}

/// [`rebuild_store`], calling `progress` with the seq reached after every
/// persisted batch.
pub fn rebuild_store_reporting(
    store: &Store,
    progress: &mut dyn FnMut(u64),
) -> Result<(CatchUp, Engine), ProjectionError> {
    Engine::drop_tree(store, TREE)?;
    let mut engine = Engine::open(store, TREE, crate::clock::today())?;
    let c = engine.catch_up_reporting(progress)?;
    Ok((c, engine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_panic_turns_a_panic_into_its_message() {
        assert_eq!(catch_panic(|| {}), Ok(()));
        let e = catch_panic(|| panic!("boom {}", 7)).unwrap_err().to_string();
        assert_eq!(e, "the follower thread panicked: boom 7");
        let e = catch_panic(|| std::panic::panic_any(42u8))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "the follower thread panicked: a panic without a message");
    }

    /// A projection persisted in format version 1 (48-byte facts, no
    /// nationality, exit destination, series cells or snapshots) is dropped
    /// and rebuilt from the log; a version this code does not know is refused
    /// naming the version and the remedy.
    #[test]
    fn an_older_projection_format_is_rebuilt_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tree = store.db().open_tree(TREE).unwrap();
        tree.insert(KEY_VERSION, &[1u8][..]).unwrap();
        tree.insert(b"c-stale-facts", &[0u8; 48][..]).unwrap();
        drop(tree);
        let e = Engine::open(&store, TREE, today()).unwrap();
        assert_eq!(e.state().cases(), 0);
        assert!(
            e.tree.get(b"c-stale-facts").unwrap().is_none(),
            "the old tree was dropped"
        );
        drop(e);
        store
            .db()
            .open_tree(TREE)
            .unwrap()
            .insert(KEY_VERSION, &[FORMAT_VERSION + 1][..])
            .unwrap();
        let e = Engine::open(&store, TREE, today()).err().unwrap().to_string();
        assert_eq!(
            e,
            format!(
                "corrupt projection state: format version [{}]; run rebuild-projections",
                FORMAT_VERSION + 1
            )
        );
    }

    /// The thread dies after publishing its projection (a bug, as a panic
    /// in a follow step would be): the slot must stop saying Ready.
    /// Starts a follower on `slot` that loads with `load` and dies, and waits
    /// (at most 10 s) until it reports its death.
    fn follow_to_death(
        load: impl FnOnce(&AtomicBool) -> Result<Shared, ProjectionError> + Send + 'static,
        slot: &Arc<ProjectionSlot>,
    ) -> Follower {
        let (_head_tx, head_rx) = tokio::sync::watch::channel(Head::EMPTY);
        let follower = Follower::spawn_with(load, head_rx, false, Some(slot.clone())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while follower.error().is_none() {
            assert!(Instant::now() < deadline, "the follower's death was not reported");
            std::thread::sleep(Duration::from_millis(5));
        }
        follower
    }

    #[test]
    fn a_follower_thread_that_panics_after_loading_leaves_its_slot_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let shared: Shared = Arc::new(RwLock::new(Engine::open(&store, TREE, today()).unwrap()));
        let slot = Arc::new(ProjectionSlot::default());
        let publish = slot.clone();
        let follower = follow_to_death(
            move |_| {
                let _ = publish.ready.set(shared);
                panic!("injected by the test");
            },
            &slot,
        );
        match slot.state() {
            SlotState::Stopped(e) => assert!(e.contains("panicked: injected by the test"), "{e}"),
            SlotState::Ready(_) => panic!("a dead follower's projection is still Ready"),
            _ => panic!("the slot should say Stopped"),
        }
        follower.stop();
    }

    /// Dying before the projection was published: the slot says Failed, not
    /// "loading" for ever.
    #[test]
    fn a_follower_thread_that_panics_while_loading_leaves_its_slot_failed() {
        let slot = Arc::new(ProjectionSlot::default());
        let follower = follow_to_death(|_| panic!("injected while loading"), &slot);
        assert!(matches!(slot.state(), SlotState::Failed(e) if e.contains("injected while loading")));
        follower.stop();
    }
}
