//! The Merkle tree over the log, persisted in sled and grown incrementally.
//!
//! The hashes of complete, aligned subtrees ("nodes": level `l`, index `i`
//! covers leaves `[i << l, (i+1) << l)`; level 0 holds the leaf hashes) are
//! stored in tiles of height 8, as in C2SP tlog-tiles: the tile `(stratum s,
//! index t)` holds up to 256 nodes of level `8s` (indices `[256t, 256t+256)`)
//! and every complete node above them inside the tile (levels `8s+1 ..= 8s+7`).
//! The node of level `8s+8` over a full tile is the first level of stratum
//! `s+1`. Storing a tile instead of each node makes one sled entry per 256
//! leaves instead of two per leaf, which is what the tree costs in sled
//! inserts and disk.
//!
//! Trees:
//! - `merkle_tiles`: key `stratum u8 || tile index u64 BE` -> `width u16 BE`
//!   (1..=256 level-`8s` nodes) then, for `r` in 0..8, the `width >> r`
//!   complete nodes of level `8s+r`, 32 bytes each, in index order. A full
//!   tile (width 256) never changes; the last tile of a stratum is partial
//!   and is rewritten as it grows (its nodes already written never change).
//! - `merkle_meta`: `size` -> u64 BE, the number of leaves in the tree.
//!
//! One [`MerkleTree::append_leaves`] writes the tiles the new leaves touch
//! and the new size in one sled transaction over both trees. Roots and
//! proofs for any size `<=` the current size read `O(log n)` stored hashes
//! per range (at most `O(log² n)` for a proof); nothing is re-hashed.
//!
//! The tree is derived from the log. A store written with the earlier
//! one-entry-per-node layout (`merkle_nodes`) has the tree reset at open and
//! rebuilt from the log by the follower (same roots: the checkpoints signed
//! before stay valid); the old tree is dropped by a background thread.
//!
//! The follower ([`MerkleTree::catch_up`], [`spawn_follower`]) reads the log's
//! records in order from `size + 1` to the committed head through the
//! verified reader of `log/follow.rs`, proving it sees every seq with no gap
//! and that each record links to the previous one.

use std::sync::{Arc, Mutex};

use sled::Transactional;

use super::merkle::{self, empty_root, leaf_hash, node_hash, Hash, NodeSource, ProofError};
use crate::limits::{AUDIT_FOLLOW_BATCH_EVENTS, AUDIT_FOLLOW_PAUSE_MS};
use crate::log::follow::{self, Break, RawError};
use crate::log::record::{chain_hash, split_stored, GENESIS_PREV_HASH};
use crate::log::{Head, Store};

/// The sled tree of the tiles (module docs: key and value layout).
pub const TREE_MERKLE_TILES: &str = "merkle_tiles";
/// The earlier layout (one sled entry per node), dropped at open.
const LEGACY_TREE_MERKLE_NODES: &str = "merkle_nodes";
/// Levels per tile.
const TILE_HEIGHT: u8 = 8;
/// Level-`8s` nodes per full tile.
const TILE_WIDTH: usize = 1 << TILE_HEIGHT;
/// The sled tree of the tree's metadata (its size).
pub const TREE_MERKLE_META: &str = "merkle_meta";
/// Key in [`TREE_MERKLE_META`] of the tree's size: leaves, u64 big-endian.
pub const META_SIZE: &[u8] = b"size";

/// Errors of the persisted tree and its follower.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Reading or writing the tree's sled trees failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// Reading the log (its head, a record) failed.
    #[error("store: {0}")]
    Store(#[from] crate::log::StoreError),
    /// The stored tree is not well formed (a malformed tile, a size that is
    /// not 8 bytes, a missing node) or its transaction aborted.
    #[error("merkle tree metadata is corrupt: {0}")]
    Corrupt(String),
    /// The follower did not find the next seq where it expected it.
    #[error("log follower: expected seq {expected}, found {found}")]
    Gap {
        /// The seq the follower needed next.
        expected: u64,
        /// The seq it found instead (when the log ended early: the end of
        /// the range read + 1).
        found: u64,
    },
    /// A record the follower read is malformed, says another seq, or does
    /// not link to the record before it.
    #[error("log follower: record at seq {seq}: {reason}")]
    BadRecord {
        /// The record's seq (its key in the log).
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The tree holds more leaves than the log holds events.
    #[error("the merkle tree has {tree} leaves but the log only {log} events: the log lost events the tree had seen")]
    LogBehindTree {
        /// The tree's size (leaves).
        tree: u64,
        /// The log's head seq (or the last seq it still holds).
        log: u64,
    },
    /// The size on disk is not the size this handle last wrote: another
    /// handle appended to the same tree.
    #[error("merkle tree size changed underneath (expected {expected}, found {found}): two writers?")]
    ConcurrentWriter {
        /// The size this handle holds.
        expected: u64,
        /// The size found on disk.
        found: u64,
    },
    /// A root or proof could not be produced.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// A break the shared reader found, in the follower's own words.
impl From<RawError> for TreeError {
    fn from(e: RawError) -> TreeError {
        match e {
            RawError::Break(Break::Gap { expected, found }) => TreeError::Gap { expected, found },
            RawError::Break(Break::Link { seq, .. }) => TreeError::BadRecord {
                seq,
                reason: "previous-hash link mismatch".into(),
            },
            RawError::Short { expected, to } => TreeError::Gap {
                expected,
                found: to + 1,
            },
            RawError::Malformed { seq, reason } => TreeError::BadRecord { seq, reason },
            RawError::SeqField { seq, field } => TreeError::BadRecord {
                seq,
                reason: format!("record says seq {field}"),
            },
            RawError::Store(e) => TreeError::Store(e),
        }
    }
}

fn tile_key(stratum: u8, tile: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = stratum;
    k[1..].copy_from_slice(&tile.to_be_bytes());
    k
}

/// Where node (`level`, `index`) lives: (stratum, tile index, level in the
/// tile, position in that level).
fn locate(level: u8, index: u64) -> (u8, u64, u8, usize) {
    let stratum = level / TILE_HEIGHT;
    let r = level % TILE_HEIGHT;
    let per_tile_bits = TILE_HEIGHT - r;
    let tile = index >> per_tile_bits;
    let pos = (index & ((1u64 << per_tile_bits) - 1)) as usize;
    (stratum, tile, r, pos)
}

/// The node at level `r` position `pos` of an encoded tile, if it is there.
fn tile_node(bytes: &[u8], r: u8, pos: usize) -> Result<Option<Hash>, TreeError> {
    let width = tile_width(bytes)?;
    if pos >= width >> r {
        return Ok(None);
    }
    let before: usize = (0..r).map(|j| width >> j).sum();
    let at = 2 + (before + pos) * 32;
    Ok(Some(bytes[at..at + 32].try_into().expect("32 bytes")))
}

/// The width of an encoded tile, checking its length.
fn tile_width(bytes: &[u8]) -> Result<usize, TreeError> {
    let bad = || TreeError::Corrupt(format!("merkle tile of {} bytes is malformed", bytes.len()));
    let width = u16::from_be_bytes(bytes.get(..2).ok_or_else(bad)?.try_into().expect("2 bytes")) as usize;
    let nodes: usize = (0..TILE_HEIGHT).map(|j| width >> j).sum();
    if width == 0 || width > TILE_WIDTH || bytes.len() != 2 + nodes * 32 {
        return Err(bad());
    }
    Ok(width)
}

/// A tile being written: its nodes by level in the tile.
#[derive(Clone)]
struct Tile {
    stratum: u8,
    index: u64,
    levels: Vec<Vec<Hash>>,
}

impl Tile {
    fn empty(stratum: u8, index: u64) -> Tile {
        Tile {
            stratum,
            index,
            levels: vec![Vec::new(); TILE_HEIGHT as usize],
        }
    }

    fn decode(stratum: u8, index: u64, bytes: &[u8]) -> Result<Tile, TreeError> {
        let width = tile_width(bytes)?;
        let mut tile = Tile::empty(stratum, index);
        let mut at = 2;
        for (r, level) in tile.levels.iter_mut().enumerate() {
            for _ in 0..width >> r {
                level.push(bytes[at..at + 32].try_into().expect("32 bytes"));
                at += 32;
            }
        }
        Ok(tile)
    }

    fn encode(&self) -> Vec<u8> {
        let width = self.levels[0].len();
        let mut out = Vec::with_capacity(2 + 2 * width * 32);
        out.extend_from_slice(&(width as u16).to_be_bytes());
        for level in &self.levels {
            for h in level {
                out.extend_from_slice(h);
            }
        }
        out
    }
}

struct State {
    size: u64,
    /// `frontier[l]`: the complete subtree at level `l` still waiting for its
    /// right sibling (exists exactly when bit `l` of `size` is set).
    frontier: Vec<Option<Hash>>,
    /// The last tile written of each stratum (saves reading it back).
    last_tiles: Vec<Option<Tile>>,
}

/// The persisted, incremental Merkle tree. Cheap to clone.
#[derive(Clone)]
pub struct MerkleTree {
    tiles: sled::Tree,
    meta: sled::Tree,
    state: Arc<Mutex<State>>,
}

impl MerkleTree {
    /// Opens (or creates) the tree's sled trees in `db`. A tree in the
    /// earlier per-node layout is dropped (size 0): the follower rebuilds it.
    pub fn open(db: &sled::Db) -> Result<MerkleTree, TreeError> {
        let meta = db.open_tree(TREE_MERKLE_META)?;
        let tiles = db.open_tree(TREE_MERKLE_TILES)?;
        if db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == LEGACY_TREE_MERKLE_NODES.as_bytes())
        {
            migrate_from_per_node_layout(db, &tiles, &meta)?;
        }
        let size = read_size(&meta)?;
        let tree = MerkleTree {
            tiles,
            meta,
            state: Arc::new(Mutex::new(State {
                size,
                frontier: vec![None; 64],
                last_tiles: vec![None; 64 / TILE_HEIGHT as usize + 1],
            })),
        };
        let mut frontier = vec![None; 64];
        for (level, slot) in frontier.iter_mut().enumerate() {
            if size >> level & 1 == 1 {
                let index = (size >> level) - 1;
                *slot = Some(tree.node(level as u8, index)?.ok_or_else(|| {
                    TreeError::Corrupt(format!(
                        "missing complete subtree level {level} index {index} (size {size})"
                    ))
                })?);
            }
        }
        tree.state.lock().expect("tree state").frontier = frontier;
        Ok(tree)
    }

    /// The stored node (`level`, `index`), if it is complete and stored.
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, TreeError> {
        let (stratum, tile, r, pos) = locate(level, index);
        match self.tiles.get(tile_key(stratum, tile))? {
            Some(bytes) => tile_node(&bytes, r, pos),
            None => Ok(None),
        }
    }

    /// Number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.state.lock().expect("tree state").size
    }

    /// Appends leaf hashes (leaves `size .. size + leaves.len()`), their completed
    /// ancestors and the new size in one sled transaction. Returns the new size.
    pub fn append_leaves(&self, leaves: &[Hash]) -> Result<u64, TreeError> {
        let mut state = self.state.lock().expect("tree state");
        if leaves.is_empty() {
            return Ok(state.size);
        }
        let on_disk = read_size(&self.meta)?;
        if on_disk != state.size {
            return Err(TreeError::ConcurrentWriter {
                expected: state.size,
                found: on_disk,
            });
        }
        let mut frontier = state.frontier.clone();
        let mut size = state.size;
        // Tiles touched by this batch, in (stratum, index) order.
        let mut touched: std::collections::BTreeMap<(u8, u64), Tile> = Default::default();
        for leaf in leaves {
            let index = size;
            self.put_node(&state, &mut touched, 0, index, *leaf)?;
            let mut carry = *leaf;
            let mut level = 0usize;
            // While this node is a right child, combine with the waiting left sibling.
            while (index >> level) & 1 == 1 {
                let left = frontier[level].take().ok_or_else(|| {
                    TreeError::Corrupt(format!("frontier has no left sibling at level {level}"))
                })?;
                carry = node_hash(&left, &carry);
                level += 1;
                self.put_node(&state, &mut touched, level as u8, index >> level, carry)?;
            }
            frontier[level] = Some(carry);
            size += 1;
        }
        let mut batch = sled::Batch::default();
        for ((stratum, index), tile) in &touched {
            batch.insert(&tile_key(*stratum, *index)[..], tile.encode());
        }
        let size_bytes = size.to_be_bytes();
        (&self.tiles, &self.meta)
            .transaction(|(tiles, meta)| {
                tiles.apply_batch(&batch)?;
                meta.insert(META_SIZE, &size_bytes[..])?;
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Storage(s) => TreeError::Sled(s),
                sled::transaction::TransactionError::Abort(()) => {
                    TreeError::Corrupt("transaction aborted".into())
                }
            })?;
        state.size = size;
        state.frontier = frontier;
        for tile in touched.into_values() {
            let slot = &mut state.last_tiles[tile.stratum as usize];
            if slot.as_ref().is_none_or(|t| t.index <= tile.index) {
                *slot = Some(tile);
            }
        }
        Ok(size)
    }

    /// Adds node (`level`, `index`) to its tile among `touched`, loading the
    /// tile first (from the last tiles written, or sled) when it is new to the batch.
    fn put_node(
        &self,
        state: &State,
        touched: &mut std::collections::BTreeMap<(u8, u64), Tile>,
        level: u8,
        index: u64,
        hash: Hash,
    ) -> Result<(), TreeError> {
        let (stratum, tile_index, r, pos) = locate(level, index);
        let tile = match touched.entry((stratum, tile_index)) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let cached = state.last_tiles[stratum as usize]
                    .as_ref()
                    .filter(|t| t.index == tile_index)
                    .cloned();
                let tile = match cached {
                    Some(t) => t,
                    None => match self.tiles.get(tile_key(stratum, tile_index))? {
                        Some(bytes) => Tile::decode(stratum, tile_index, &bytes)?,
                        None => Tile::empty(stratum, tile_index),
                    },
                };
                v.insert(tile)
            }
        };
        let nodes = &mut tile.levels[r as usize];
        if nodes.len() != pos {
            return Err(TreeError::Corrupt(format!(
                "tile ({stratum}, {tile_index}) level {r} has {} nodes; node {pos} comes next",
                nodes.len()
            )));
        }
        nodes.push(hash);
        Ok(())
    }

    /// The root of the first `size` leaves (`size <=` the tree's size).
    pub fn root(&self, size: u64) -> Result<Hash, TreeError> {
        self.check(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        Ok(merkle::root(self, size)?)
    }

    /// The leaf hash at `index` (0-based).
    pub fn leaf(&self, index: u64) -> Result<Hash, TreeError> {
        self.check(index + 1)?;
        Ok(self.complete(0, index)?)
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
        self.check(size)?;
        Ok(merkle::inclusion_proof(self, index, size)?)
    }

    /// Consistency proof from size `old` to size `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, TreeError> {
        self.check(new)?;
        Ok(merkle::consistency_proof(self, old, new)?)
    }

    fn check(&self, size: u64) -> Result<(), TreeError> {
        let have = self.size();
        if size > have {
            return Err(ProofError::SizeNotAvailable {
                requested: size,
                available: have,
            }
            .into());
        }
        Ok(())
    }

    /// Brings the tree up to the log's committed head: reads every record
    /// from `size + 1` in order, checks there is no gap, that each record's
    /// seq field matches its key, that it links to the previous record and
    /// that its stored chain hash is right, and appends its leaf hash.
    /// Returns the new size.
    pub fn catch_up(&self, store: &Store) -> Result<u64, TreeError> {
        self.catch_up_with(store, &mut |_| {})
    }

    /// [`MerkleTree::catch_up`] with a progress callback (called with the size after each batch).
    pub fn catch_up_with(&self, store: &Store, progress: &mut dyn FnMut(u64)) -> Result<u64, TreeError> {
        let head = store.head()?.seq;
        let mut size = self.size();
        if head < size {
            return Err(TreeError::LogBehindTree {
                tree: size,
                log: head,
            });
        }
        if head == size {
            return Ok(size);
        }
        let prev = if size == 0 {
            GENESIS_PREV_HASH
        } else {
            match store.raw_get(size)? {
                Some(v) => {
                    split_stored(&v)
                        .map_err(|e| TreeError::BadRecord {
                            seq: size,
                            reason: e.to_string(),
                        })?
                        .1
                }
                None => {
                    return Err(TreeError::LogBehindTree {
                        tree: size,
                        log: size - 1,
                    })
                }
            }
        };
        let mut leaves = Vec::with_capacity(AUDIT_FOLLOW_BATCH_EVENTS);
        for taken in follow::raw_records(
            store,
            Head {
                seq: size,
                hash: prev,
            },
            head,
        ) {
            let r = taken?;
            if chain_hash(&r.prev_hash, r.record()) != r.hash {
                return Err(TreeError::BadRecord {
                    seq: r.seq,
                    reason: "chain hash mismatch".into(),
                });
            }
            leaves.push(leaf_hash(r.record()));
            if leaves.len() == AUDIT_FOLLOW_BATCH_EVENTS {
                size = self.append_leaves(&leaves)?;
                leaves.clear();
                progress(size);
            }
        }
        if !leaves.is_empty() {
            size = self.append_leaves(&leaves)?;
            progress(size);
        }
        Ok(size)
    }
}

impl NodeSource for MerkleTree {
    fn complete(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        match self.node(level, index) {
            Ok(Some(h)) => Ok(h),
            Ok(None) => Err(ProofError::Storage(format!(
                "merkle_tiles has no subtree at level {level} index {index}"
            ))),
            Err(e) => Err(ProofError::Storage(e.to_string())),
        }
    }
}

/// Meta key: the tree was reset to be rebuilt in tiles; the per-node tree
/// may still be being dropped.
const META_LEGACY_RESET: &[u8] = b"legacy_reset";

/// The first open of a store with the per-node tree resets the tree (tiles
/// cleared first, then size 0 and the reset mark together, so a crash in
/// between repeats the reset) for the follower to rebuild it from the log;
/// the old tree (two entries per event) is dropped by a background thread,
/// so that start-up does not wait for it. A crash during the drop restarts it.
fn migrate_from_per_node_layout(
    db: &sled::Db,
    tiles: &sled::Tree,
    meta: &sled::Tree,
) -> Result<(), TreeError> {
    static DROPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if meta.get(META_LEGACY_RESET)?.is_none() {
        tracing::info!("merkle tree in the per-node layout: the follower rebuilds it in tiles from the log");
        tiles.clear()?;
        tiles.flush()?;
        let mut batch = sled::Batch::default();
        batch.remove(META_SIZE);
        batch.insert(META_LEGACY_RESET, &[1u8][..]);
        meta.apply_batch(batch)?;
        meta.flush()?;
    }
    if DROPPING.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Ok(());
    }
    let (db, meta) = (db.clone(), meta.clone());
    let spawned = std::thread::Builder::new()
        .name("merkle-legacy-drop".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let result = db
                .drop_tree(LEGACY_TREE_MERKLE_NODES)
                .and_then(|_| meta.remove(META_LEGACY_RESET))
                .and_then(|_| meta.flush());
            match result {
                Ok(_) => tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "per-node merkle tree dropped"),
                Err(e) => tracing::warn!(error = %e, "dropping the per-node merkle tree failed; the next start retries"),
            }
            DROPPING.store(false, std::sync::atomic::Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        DROPPING.store(false, std::sync::atomic::Ordering::SeqCst);
        return Err(TreeError::Corrupt(format!(
            "cannot start the legacy-tree drop: {e}"
        )));
    }
    Ok(())
}

fn read_size(meta: &sled::Tree) -> Result<u64, TreeError> {
    match meta.get(META_SIZE)? {
        None => Ok(0),
        Some(v) => Ok(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
            TreeError::Corrupt("merkle_meta/size is not 8 bytes".into())
        })?)),
    }
}

/// Follows the log: catches up whenever the durable head moves, until `stop`
/// turns true or the head channel closes. Publishes the tree size on `size_tx`.
/// A follower error is logged and retried after a pause (the tree never
/// appends a leaf it could not check).
pub fn spawn_follower(
    tree: MerkleTree,
    store: Store,
    mut head_rx: tokio::sync::watch::Receiver<crate::log::Head>,
    size_tx: tokio::sync::watch::Sender<u64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (t, s) = (tree.clone(), store.clone());
            match tokio::task::spawn_blocking(move || t.catch_up(&s)).await {
                Ok(Ok(size)) => {
                    size_tx.send_if_modified(|cur| {
                        let changed = *cur != size;
                        *cur = size;
                        changed
                    });
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "merkle follower failed; retrying in 5 s");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => continue,
                        _ = stop.changed() => return,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "merkle follower task panicked");
                    return;
                }
            }
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                r = head_rx.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
            // Let a few group commits gather: each catch-up rewrites the
            // partial tiles, so catching up per commit would rewrite them
            // hundreds of times a second under load.
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(AUDIT_FOLLOW_PAUSE_MS)) => {}
                _ = stop.changed() => return,
            }
        }
    })
}
