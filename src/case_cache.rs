//! A bounded cache of folded case states: case id -> (version, state after
//! the case's first `version` events).
//!
//! An entry is a fact about the log, never a claim about the present: the
//! state after the first `version` events of an append-only stream cannot
//! change. It may be *behind* the stream (an append that did not pass through
//! [`crate::cases::Cases`]'s completion, e.g. a caller that went away), so a
//! command decided on a cached state is appended with that version as its
//! expected version and the log writer, which checks versions atomically,
//! refuses it if the case has moved on. The cache saves the per-command
//! re-read and decode of the whole stream; it decides nothing on its own.
//!
//! The cache holds sealed fields only as they are in the events (ciphertext);
//! an erased person's state holds nothing that the events do not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;

use crate::domain::CaseState;

/// Shards, to keep lock hold times short under many concurrent commands.
const SHARDS: usize = 16;

struct Entry {
    version: u64,
    state: Arc<CaseState>,
    /// Insertion tick, for eviction of the least recently written entries.
    tick: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<String, Entry>,
    tick: u64,
}

/// See the module documentation.
pub struct CaseCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    /// Look-ups that found the case, and that did not (metrics).
    hits: Counter,
    misses: Counter,
}

impl CaseCache {
    /// A cache of at most `capacity` cases (0 disables it).
    pub fn new(capacity: usize) -> CaseCache {
        CaseCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hits: Counter::default(),
            misses: Counter::default(),
        }
    }

    fn shard(&self, case_id: &str) -> &Mutex<Shard> {
        let h = blake3::hash(case_id.as_bytes());
        &self.shards[h.as_bytes()[0] as usize % SHARDS]
    }

    /// The cached (version, state) of a case, if any.
    pub fn get(&self, case_id: &str) -> Option<(u64, Arc<CaseState>)> {
        let shard = self.shard(case_id).lock().expect("case cache");
        let found = shard.map.get(case_id).map(|e| (e.version, e.state.clone()));
        match found {
            Some(_) => self.hits.inc(),
            None => self.misses.inc(),
        };
        found
    }

    /// The look-up counters (hits, misses), shared with the metrics registry.
    pub fn counters(&self) -> (Counter, Counter) {
        (self.hits.clone(), self.misses.clone())
    }

    /// Records the state after the first `version` events of a case, unless
    /// a later version is already cached.
    pub fn put(&self, case_id: &str, version: u64, state: Arc<CaseState>) {
        if self.per_shard == 0 {
            return;
        }
        let mut shard = self.shard(case_id).lock().expect("case cache");
        shard.tick += 1;
        let tick = shard.tick;
        if let Some(e) = shard.map.get_mut(case_id) {
            if e.version <= version {
                *e = Entry { version, state, tick };
            }
            return;
        }
        if shard.map.len() >= self.per_shard {
            evict_oldest(&mut shard.map, self.per_shard / 8 + 1);
        }
        shard
            .map
            .insert(case_id.to_string(), Entry { version, state, tick });
    }

    /// Forgets a case (its entry turned out to be behind the log).
    pub fn forget(&self, case_id: &str) {
        self.shard(case_id)
            .lock()
            .expect("case cache")
            .map
            .remove(case_id);
    }

    /// Number of cached cases.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("case cache").map.len())
            .sum()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes the `n` entries written longest ago (amortised: called once per
/// `n` inserts into a full shard).
fn evict_oldest(map: &mut HashMap<String, Entry>, n: usize) {
    let mut ticks: Vec<u64> = map.values().map(|e| e.tick).collect();
    let n = n.min(ticks.len());
    if n == 0 {
        return;
    }
    let (_, cut, _) = ticks.select_nth_unstable(n - 1);
    let cut = *cut;
    map.retain(|_, e| e.tick > cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Arc<CaseState> {
        Arc::new(CaseState::default())
    }

    #[test]
    fn keeps_the_latest_version_and_forgets_on_request() {
        let c = CaseCache::new(100);
        c.put("C-1", 3, state());
        c.put("C-1", 2, state());
        assert_eq!(c.get("C-1").map(|(v, _)| v), Some(3));
        c.put("C-1", 5, state());
        assert_eq!(c.get("C-1").map(|(v, _)| v), Some(5));
        c.forget("C-1");
        assert!(c.get("C-1").is_none());
    }

    #[test]
    fn stays_within_capacity_and_evicts_the_oldest() {
        let c = CaseCache::new(SHARDS * 8);
        for i in 0..10_000 {
            c.put(&format!("C-{i}"), 1, state());
        }
        assert!(c.len() <= SHARDS * 8, "len {}", c.len());
        // The most recent insert is always kept.
        assert!(c.get("C-9999").is_some());
        assert!(c.get("C-0").is_none());
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let c = CaseCache::new(0);
        c.put("C-1", 1, state());
        assert!(c.is_empty());
    }
}
