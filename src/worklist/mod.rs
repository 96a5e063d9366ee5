//! Caseworker worklists: which cases wait for an action, by list, department
//! and date, read from the log (docs/WORKLISTS.md).
//!
//! - [`facts`]: [`WorkFacts`], what the lists know about one case (codes and
//!   dates only), folded from its events; the entries a case puts on the
//!   lists ([`Kind`]).
//! - [`index`]: the sled layout (tree `worklists`): index keys ordered by
//!   list, department and date; per-case facts; the checkpoint.
//! - [`engine`]: the projection ([`Worklists`]): one batch per step (index
//!   changes, facts, checkpoint), the follower thread.
//! - [`query`]: one page of one list (range scans merged across departments).
//!
//! Invariants: the projection applies every position in order (a gap or a
//! broken link stops it, with the seq named); it can always be dropped and
//! rebuilt from the log; every answer names the position it reflects;
//! entries hold no personal data (names come through `GetCase`, which
//! records the access).

pub mod engine;
pub mod facts;
pub mod index;
pub mod query;

use std::sync::Arc;

pub use engine::{rebuild_store, Follower, FollowerStatus, Worklists};

pub use facts::{Kind, WorkFacts};
pub use index::TREE;

/// The worklists as `registry serve` runs them: opened, then caught up and
/// followed by a thread while cases are already served; the service answers
/// UNAVAILABLE until the projection reached the head seen at start.
pub struct Running {
    worklists: Option<Arc<Worklists>>,
    status: Arc<FollowerStatus>,
    follower: Option<Follower>,
}

/// Opens the projection and starts its follower; returns at once. A
/// projection that cannot be opened does not stop the server: the service
/// answers INTERNAL naming the remedy.
pub fn start(log: &crate::log::Log) -> std::io::Result<Running> {
    let status = Arc::new(FollowerStatus::default());
    match Worklists::open(log.store()) {
        Ok(w) => {
            let w = Arc::new(w);
            let follower = Follower::spawn(w.clone(), status.clone(), log.subscribe_head())?;
            Ok(Running {
                worklists: Some(w),
                status,
                follower: Some(follower),
            })
        }
        Err(e) => {
            status.fail(e);
            Ok(Running {
                worklists: None,
                status,
                follower: None,
            })
        }
    }
}

impl Running {
    /// The projection, if it opened (the policy dry run reads its facts).
    pub fn projection(&self) -> Option<Arc<Worklists>> {
        self.worklists.clone()
    }

    /// The follower's status (ready, failed).
    pub fn status(&self) -> Arc<FollowerStatus> {
        self.status.clone()
    }

    /// Stops the follower (before the log shuts down).
    pub async fn shutdown(mut self) {
        if let Some(f) = self.follower.take() {
            let _ = tokio::task::spawn_blocking(move || f.stop()).await;
        }
    }
}
