//! Wrapped per-person data keys in the sled tree `person_keys`.
//!
//! Entry key: the case id as ASCII bytes (e.g. `case-000123`).
//! Entry value, format 1 (active key, 81 bytes):
//!
//! ```text
//! 0x01 || master key id (8) || nonce (24) || XChaCha20-Poly1305(data key, 32) || tag (16)
//! AAD = "migreg person key v1" || case id
//! ```
//!
//! Format 0 (tombstone, 1 byte): `0x00`. Erasure replaces the wrapped key by
//! a tombstone, so an erased person is told apart from an unknown one.
//!
//! The reserved id `__blind_index__` holds the blind-index key in format 1;
//! case ids may not start with `__`.
//!
//! Note: sled 0.34 does not overwrite in place. The old wrapped key can stay
//! in the store's files after erasure until sled reuses that log segment. It
//! is only readable with the master key that wrapped it, so crypto-shredding
//! is complete once the master key has been rotated ([`KeyStore::rewrap_all`])
//! and the old master key destroyed.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use sled::transaction::{ConflictableTransactionError, TransactionError};
use zeroize::Zeroize;

use super::blind::{BlindIndexer, BLIND_INDEX_CONTEXT};
use super::crypto::{self, NONCE_LEN, TAG_LEN};
use super::error::{PiiError, Result};
use super::hex;
use super::master::{MasterKey, KEY_ID_LEN};
use super::seal::DataKey;

/// Name of the sled tree holding wrapped keys.
pub const TREE_NAME: &str = "person_keys";
/// Reserved entry id of the wrapped blind-index key.
pub const BLIND_INDEX_ID: &str = "__blind_index__";
/// Longest case id accepted, in bytes.
pub const MAX_CASE_ID_LEN: usize = 128;
/// Entries re-wrapped per atomic batch by [`KeyStore::rewrap_all`].
pub const REWRAP_BATCH: usize = 256;

const FORMAT_TOMBSTONE: u8 = 0;
const FORMAT_WRAPPED_V1: u8 = 1;
const WRAPPED_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN + 32 + TAG_LEN;
const WRAP_AAD_PREFIX: &[u8] = b"migreg person key v1";

/// State of a case id's data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// A data key exists: sealed data can be opened.
    Active,
    /// The data key was destroyed: sealed data is unrecoverable.
    Erased,
    /// No key was ever created for this id.
    Unknown,
}

/// Master keys in use: `current` wraps new entries; `previous` is kept only
/// while a rotation is in progress, to read entries not yet re-wrapped.
struct Masters {
    current: MasterKey,
    previous: Option<MasterKey>,
}

impl Masters {
    fn for_id(&self, id: &[u8]) -> Result<&MasterKey> {
        if id == self.current.key_id() {
            return Ok(&self.current);
        }
        if let Some(prev) = &self.previous {
            if id == prev.key_id() {
                return Ok(prev);
            }
        }
        Err(PiiError::WrongMasterKey {
            stored_id: hex::encode(id),
            held_ids: self.held_ids(),
        })
    }

    fn held_ids(&self) -> String {
        match &self.previous {
            None => self.current.key_id_hex(),
            Some(prev) => format!("{} and {}", self.current.key_id_hex(), prev.key_id_hex()),
        }
    }
}

/// Store of wrapped per-person data keys (and the blind-index key).
///
/// `Send + Sync`: share it with an `Arc`, and open one `KeyStore` per
/// database (rotation coordinates only the users of the same `KeyStore`).
/// All calls block on sled; keep them off async runtime worker threads.
pub struct KeyStore {
    pub(super) tree: sled::Tree,
    /// Where create, erase and discard write: this tree, or through the
    /// cluster on a cluster node ([`KeyStore::replicate_with`]).
    writes: crate::log::side::SideTree,
    masters: RwLock<Masters>,
    /// Serializes rotations.
    rotation: Mutex<()>,
    /// New keys made but not yet stored, by the master that wrapped them.
    pending: Arc<PendingWraps>,
}

/// How long a rotation waits for the new keys wrapped by the old master
/// (registrations in progress) to be stored or dropped.
const ROTATION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Counts the [`NewKey`]s alive per wrapping master key.
#[derive(Default)]
struct PendingWraps {
    counts: Mutex<std::collections::HashMap<[u8; KEY_ID_LEN], usize>>,
    changed: std::sync::Condvar,
}

impl PendingWraps {
    fn counts(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; KEY_ID_LEN], usize>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no new key wrapped by `master` is alive; false on timeout.
    fn wait_none(&self, master: &[u8; KEY_ID_LEN], timeout: std::time::Duration) -> bool {
        let counts = self.counts();
        let (_counts, waited) = self
            .changed
            .wait_timeout_while(counts, timeout, |c| c.get(master).is_some_and(|n| *n > 0))
            .unwrap_or_else(|p| p.into_inner());
        !waited.timed_out()
    }
}

/// A data key made for a case being registered, not stored yet: `entry`
/// (the key wrapped by the current master) goes into `person_keys` with the
/// registration's events, as a side write. While it lives, a master key
/// rotation waits before it re-wraps, so an entry stored late is still
/// re-wrapped; drop it once the append is answered.
pub struct NewKey {
    /// The case's data key in clear, to seal the registration's fields with.
    pub key: DataKey,
    /// The data key wrapped by the current master key (entry format 1, 81
    /// bytes), as stored in `person_keys` under the case id.
    pub entry: Vec<u8>,
    /// Keeps a master key rotation waiting until this is dropped.
    pub hold: WrapHold,
}

/// A [`NewKey`]'s place in the count a rotation waits on.
pub struct WrapHold {
    pending: Arc<PendingWraps>,
    master: [u8; KEY_ID_LEN],
}

impl Drop for WrapHold {
    fn drop(&mut self) {
        let (pending, master) = (&self.pending, &self.master);
        let mut counts = pending.counts();
        if let Some(n) = counts.get_mut(master) {
            *n -= 1;
            if *n == 0 {
                counts.remove(master);
            }
        }
        drop(counts);
        pending.changed.notify_all();
    }
}

/// Where a parsed entry stands.
enum Entry<'a> {
    Tombstone,
    Wrapped {
        key_id: &'a [u8],
        nonce: &'a [u8],
        ct: &'a [u8],
    },
}

fn parse_entry(value: &[u8]) -> Result<Entry<'_>> {
    match value.first() {
        Some(&FORMAT_TOMBSTONE) if value.len() == 1 => Ok(Entry::Tombstone),
        Some(&FORMAT_WRAPPED_V1) if value.len() == WRAPPED_LEN => {
            let (key_id, rest) = value[1..].split_at(KEY_ID_LEN);
            let (nonce, ct) = rest.split_at(NONCE_LEN);
            Ok(Entry::Wrapped { key_id, nonce, ct })
        }
        _ => Err(PiiError::Corrupt {
            what: "key store entry has an unknown format or length",
        }),
    }
}

/// Checks the form of a stored entry (from a backup) without unwrapping it:
/// a valid id (a case id, or the blind-index id) and a tombstone or a
/// format-1 wrapped key. Returns the id of the master key that wraps it
/// (`None` for a tombstone).
pub fn check_raw_entry(id: &[u8], value: &[u8]) -> Result<Option<[u8; KEY_ID_LEN]>> {
    let id = std::str::from_utf8(id).map_err(|_| PiiError::Corrupt {
        what: "key store entry id is not UTF-8",
    })?;
    if id != BLIND_INDEX_ID {
        validate_case_id(id)?;
    }
    match parse_entry(value)? {
        Entry::Tombstone if id == BLIND_INDEX_ID => Err(PiiError::Corrupt {
            what: "blind-index key entry is a tombstone",
        }),
        Entry::Tombstone => Ok(None),
        Entry::Wrapped { key_id, .. } => Ok(Some(key_id.try_into().expect("KEY_ID_LEN"))),
    }
}

fn wrap_aad(id: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_AAD_PREFIX.len() + id.len());
    aad.extend_from_slice(WRAP_AAD_PREFIX);
    aad.extend_from_slice(id);
    aad
}

fn wrap(master: &MasterKey, id: &[u8], key: &[u8; 32]) -> Vec<u8> {
    let nonce = crypto::random_nonce();
    let ct = crypto::encrypt(master.as_bytes(), &nonce, &wrap_aad(id), key);
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.push(FORMAT_WRAPPED_V1);
    out.extend_from_slice(&master.key_id());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    debug_assert_eq!(out.len(), WRAPPED_LEN);
    out
}

/// Unwraps an entry's key bytes. `Ok(None)` for a tombstone.
fn unwrap_entry(masters: &Masters, id: &[u8], value: &[u8]) -> Result<Option<[u8; 32]>> {
    match parse_entry(value)? {
        Entry::Tombstone => Ok(None),
        Entry::Wrapped { key_id, nonce, ct } => {
            let master = masters.for_id(key_id)?;
            let mut plain =
                crypto::decrypt(master.as_bytes(), nonce, &wrap_aad(id), ct).ok_or(PiiError::Corrupt {
                    what: "wrapped key failed authentication",
                })?;
            let mut key = [0u8; 32];
            let ok = plain.len() == 32;
            if ok {
                key.copy_from_slice(&plain);
            }
            plain.zeroize();
            if !ok {
                return Err(PiiError::Corrupt {
                    what: "wrapped key has the wrong length",
                });
            }
            Ok(Some(key))
        }
    }
}

/// Checks a caller-supplied case id: 1 to 128 printable ASCII bytes, not
/// starting with `__` (reserved).
pub fn validate_case_id(case_id: &str) -> Result<()> {
    if case_id.is_empty() {
        return Err(PiiError::InvalidCaseId { reason: "empty" });
    }
    if case_id.len() > MAX_CASE_ID_LEN {
        return Err(PiiError::InvalidCaseId {
            reason: "longer than 128 bytes",
        });
    }
    if !case_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PiiError::InvalidCaseId {
            reason: "must be printable ASCII without spaces",
        });
    }
    if case_id.starts_with("__") {
        return Err(PiiError::InvalidCaseId {
            reason: "ids starting with '__' are reserved",
        });
    }
    Ok(())
}

impl KeyStore {
    /// Opens the `person_keys` tree of `db` with `master`.
    ///
    /// On first use it creates the blind-index key (derived from `master`)
    /// and stores it wrapped. On every open it unwraps that key, so a wrong
    /// master key fails here with [`PiiError::WrongMasterKey`] rather than on
    /// the first read.
    pub fn open(db: &sled::Db, master: MasterKey) -> Result<KeyStore> {
        let tree = db.open_tree(TREE_NAME)?;
        let store = KeyStore {
            writes: crate::log::side::SideTree::new(TREE_NAME, tree.clone(), Default::default()),
            tree,
            masters: RwLock::new(Masters {
                current: master,
                previous: None,
            }),
            rotation: Mutex::new(()),
            pending: Default::default(),
        };
        store.ensure_blind_index_key()?;
        Ok(store)
    }

    /// On a cluster node: person keys are created, erased and discarded
    /// through the cluster, so every node holds them (docs/CLUSTER.md).
    pub fn replicate_with(&mut self, slot: crate::log::side::SideSlot) {
        self.writes = crate::log::side::SideTree::new(TREE_NAME, self.tree.clone(), slot);
    }

    fn masters(&self) -> RwLockReadGuard<'_, Masters> {
        self.masters
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Key id (16 hex digits) of the master key that wraps new entries.
    pub fn master_key_id(&self) -> String {
        self.masters().current.key_id_hex()
    }

    fn ensure_blind_index_key(&self) -> Result<()> {
        let id = BLIND_INDEX_ID.as_bytes();
        if let Some(value) = self.tree.get(id)? {
            let masters = self.masters();
            return match unwrap_entry(&masters, id, &value)? {
                Some(mut key) => {
                    key.zeroize();
                    Ok(())
                }
                None => Err(PiiError::Corrupt {
                    what: "blind-index key entry is a tombstone",
                }),
            };
        }
        let wrapped = {
            let masters = self.masters();
            let mut key = blake3::derive_key(BLIND_INDEX_CONTEXT, masters.current.as_bytes());
            let wrapped = wrap(&masters.current, id, &key);
            key.zeroize();
            wrapped
        };
        // A concurrent opener may have created it first: then keep theirs.
        if self
            .tree
            .compare_and_swap(id, None as Option<&[u8]>, Some(wrapped))?
            .is_ok()
        {
            self.tree.flush()?;
            tracing::info!("blind-index key created");
        }
        Ok(())
    }

    /// The blind indexer, with the key stored (wrapped) in this store.
    pub fn blind_indexer(&self) -> Result<BlindIndexer> {
        let id = BLIND_INDEX_ID.as_bytes();
        let value = self.tree.get(id)?.ok_or(PiiError::Corrupt {
            what: "blind-index key entry is missing",
        })?;
        let masters = self.masters();
        match unwrap_entry(&masters, id, &value)? {
            Some(key) => Ok(BlindIndexer::from_key(key)),
            None => Err(PiiError::Corrupt {
                what: "blind-index key entry is a tombstone",
            }),
        }
    }

    /// Creates, stores (wrapped) and returns a new data key for `case_id`.
    /// It does not flush: the key shares sled's single log with the event
    /// log, so the durable commit of the first event sealed with it (which
    /// flushes and syncs after this insert) makes the key durable first.
    /// Callers outside that pattern call [`KeyStore::flush`].
    /// Fails with [`PiiError::AlreadyExists`] if the id has a key or was
    /// erased (an erased id is never reused).
    pub fn create(&self, case_id: &str) -> Result<DataKey> {
        // The hold lives until the entry is in the tree: a rotation waits
        // for it before it scans.
        let NewKey {
            key,
            entry,
            hold: _hold,
        } = self.new_key(case_id)?;
        match self
            .writes
            .compare_and_swap(case_id.as_bytes(), None, Some(entry))?
        {
            Ok(()) => Ok(key),
            Err(_) => Err(PiiError::AlreadyExists),
        }
    }

    /// Makes a data key for `case_id` without storing it (see [`NewKey`]).
    /// Fails with [`PiiError::AlreadyExists`] if the id has a key or was erased.
    pub fn new_key(&self, case_id: &str) -> Result<NewKey> {
        validate_case_id(case_id)?;
        let id = case_id.as_bytes();
        if self.tree.get(id)?.is_some() {
            return Err(PiiError::AlreadyExists);
        }
        let key = DataKey::generate();
        // Counted under the masters' read guard: a rotation switches masters
        // under the write guard, then waits until no key wrapped by the old
        // one is pending, and only then scans the tree.
        let masters = self.masters();
        let master = masters.current.key_id();
        let entry = wrap(&masters.current, id, key.as_bytes());
        *self.pending.counts().entry(master).or_insert(0) += 1;
        Ok(NewKey {
            key,
            entry,
            hold: WrapHold {
                pending: self.pending.clone(),
                master,
            },
        })
    }

    /// The entry of `id` exactly as stored (wrapped key or tombstone), for
    /// backups: nothing is unwrapped.
    pub fn raw_entry(&self, id: &str) -> Result<Option<sled::IVec>> {
        Ok(self.tree.get(id.as_bytes())?)
    }

    /// Every entry `(id, value)` exactly as stored, in id order, for backups.
    pub fn raw_entries(&self) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec)>> {
        self.tree.iter().map(|kv| kv.map_err(PiiError::from))
    }

    /// Makes every key created so far durable.
    pub fn flush(&self) -> Result<()> {
        self.tree.flush()?;
        Ok(())
    }

    /// The data key of `case_id`; `None` if erased or unknown (see
    /// [`status`](Self::status)). Errors if the entry was wrapped by another
    /// master key ([`PiiError::WrongMasterKey`]) or fails authentication.
    pub fn get(&self, case_id: &str) -> Result<Option<DataKey>> {
        validate_case_id(case_id)?;
        let id = case_id.as_bytes();
        match self.tree.get(id)? {
            None => Ok(None),
            Some(value) => Ok(unwrap_entry(&self.masters(), id, &value)?.map(DataKey::from_bytes)),
        }
    }

    /// Like [`get`](Self::get), but an erased key is [`PiiError::Erased`] and
    /// an unknown one [`PiiError::NotFound`].
    pub fn require(&self, case_id: &str) -> Result<DataKey> {
        validate_case_id(case_id)?;
        let id = case_id.as_bytes();
        let value = self.tree.get(id)?.ok_or(PiiError::NotFound)?;
        unwrap_entry(&self.masters(), id, &value)?
            .map(DataKey::from_bytes)
            .ok_or(PiiError::Erased)
    }

    /// Whether `case_id` has an active, erased or no key. Does not unwrap.
    pub fn status(&self, case_id: &str) -> Result<KeyStatus> {
        validate_case_id(case_id)?;
        match self.tree.get(case_id.as_bytes())? {
            None => Ok(KeyStatus::Unknown),
            Some(value) => match parse_entry(&value)? {
                Entry::Tombstone => Ok(KeyStatus::Erased),
                Entry::Wrapped { .. } => Ok(KeyStatus::Active),
            },
        }
    }

    /// Crypto-shreds `case_id`: replaces its wrapped key by a tombstone and
    /// flushes. Idempotent; an unknown id also gets a tombstone (so it can
    /// never be created later). Returns the status before erasure.
    ///
    /// See the module notes: old copies of the *wrapped* key may stay in
    /// sled's files until rotation of the master key makes them unreadable.
    pub fn erase(&self, case_id: &str) -> Result<KeyStatus> {
        validate_case_id(case_id)?;
        let previous = self.writes.insert(case_id.as_bytes(), vec![FORMAT_TOMBSTONE])?;
        self.writes.flush()?;
        match previous {
            None => Ok(KeyStatus::Unknown),
            Some(value) => match parse_entry(&value) {
                Ok(Entry::Tombstone) => Ok(KeyStatus::Erased),
                // A corrupt entry is erased all the same.
                Ok(Entry::Wrapped { .. }) | Err(_) => Ok(KeyStatus::Active),
            },
        }
    }

    /// Re-wraps every active key (and the blind-index key) under
    /// `new_master`, in atomic batches of [`REWRAP_BATCH`], flushing after
    /// each. Returns how many person keys were re-wrapped (the blind-index
    /// key is not counted).
    ///
    /// From the call on, new keys are wrapped by `new_master`; when it
    /// returns `Ok`, the old master key is dropped from this store and can be
    /// destroyed. Entries already wrapped by `new_master` are skipped, and
    /// the blind-index key is re-wrapped last, so if the process dies midway
    /// the store still opens with the old master key, and calling
    /// `rewrap_all` again with the same new key finishes the job. On error
    /// the store keeps both keys, and only a retry with the same new key is
    /// accepted ([`PiiError::RotationInProgress`] otherwise).
    ///
    /// Concurrent `create`/`get`/`erase` on this `KeyStore` are safe: a batch
    /// only replaces entries that are unchanged since they were read, so an
    /// erasure racing a rotation is never undone.
    pub fn rewrap_all(&self, new_master: MasterKey) -> Result<usize> {
        self.rewrap_batched(new_master, REWRAP_BATCH, None)
    }

    /// [`rewrap_all`](Self::rewrap_all) with a chosen batch size; stops
    /// (leaving the rotation half done) after `max_batches` if given.
    pub(super) fn rewrap_batched(
        &self,
        new_master: MasterKey,
        batch_size: usize,
        max_batches: Option<usize>,
    ) -> Result<usize> {
        let batch_size = batch_size.max(1);
        let _rotation = self
            .rotation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        {
            let mut masters = self
                .masters
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if masters.current.key_id() != new_master.key_id() {
                if masters.previous.is_some() {
                    // A failed rotation to another key holds the key still
                    // needed for some entries: finish that one first.
                    return Err(PiiError::RotationInProgress);
                }
                let old = std::mem::replace(&mut masters.current, new_master);
                masters.previous = Some(old);
            }
        }
        let (new_id, old_id) = {
            let masters = self.masters();
            (
                masters.current.key_id(),
                masters.previous.as_ref().map(MasterKey::key_id),
            )
        };
        tracing::info!(new_master_key_id = %hex::encode(&new_id), "master key rotation started");
        // New keys wrapped by the old master and not stored yet (registrations
        // in progress) must be in the tree before it is scanned.
        if let Some(old) = old_id {
            if !self.pending.wait_none(&old, ROTATION_WAIT) {
                tracing::warn!(
                    "master key rotation: registrations in progress did not finish; retry the rotation"
                );
                return Err(PiiError::RotationInProgress);
            }
        }

        let mut done = 0usize;
        let mut batches = 0usize;
        let mut batch: Vec<(sled::IVec, sled::IVec, Vec<u8>)> = Vec::with_capacity(batch_size);
        for item in self.tree.iter() {
            let (k, v) = item?;
            if k.as_ref() == BLIND_INDEX_ID.as_bytes() {
                continue;
            }
            if let Some(new_value) = self.rewrapped(&k, &v, &new_id)? {
                batch.push((k, v, new_value));
            }
            if batch.len() >= batch_size {
                done += self.apply_rewrap_batch(&batch)?;
                batch.clear();
                batches += 1;
                if max_batches.is_some_and(|max| batches >= max) {
                    return Ok(done);
                }
            }
        }
        if !batch.is_empty() {
            done += self.apply_rewrap_batch(&batch)?;
            batch.clear();
        }
        // The blind-index key last: until it moves, the old master still opens the store.
        let bid = BLIND_INDEX_ID.as_bytes();
        if let Some(v) = self.tree.get(bid)? {
            if let Some(new_value) = self.rewrapped(bid, &v, &new_id)? {
                self.apply_rewrap_batch(&[(sled::IVec::from(bid), v, new_value)])?;
            }
        }

        let mut masters = self
            .masters
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        masters.previous = None;
        tracing::info!(rewrapped = done, "master key rotation finished");
        Ok(done)
    }

    /// The entry re-wrapped under the current (new) master, or `None` if it
    /// is a tombstone or already wrapped by `new_id`.
    pub(super) fn rewrapped(
        &self,
        id: &[u8],
        value: &[u8],
        new_id: &[u8; KEY_ID_LEN],
    ) -> Result<Option<Vec<u8>>> {
        if let Entry::Wrapped { key_id, .. } = parse_entry(value)? {
            if key_id == new_id {
                return Ok(None);
            }
        }
        let masters = self.masters();
        match unwrap_entry(&masters, id, value)? {
            None => Ok(None),
            Some(mut key) => {
                let wrapped = wrap(&masters.current, id, &key);
                key.zeroize();
                Ok(Some(wrapped))
            }
        }
    }

    /// Atomically replaces each entry that still holds the value read.
    pub(super) fn apply_rewrap_batch(&self, batch: &[(sled::IVec, sled::IVec, Vec<u8>)]) -> Result<usize> {
        let applied = self
            .tree
            .transaction(|tx| {
                let mut n = 0usize;
                for (k, old, new) in batch {
                    if tx.get(k)?.as_ref() == Some(old) {
                        tx.insert(k.as_ref(), new.as_slice())?;
                        if k.as_ref() != BLIND_INDEX_ID.as_bytes() {
                            n += 1;
                        }
                    }
                }
                Ok::<usize, ConflictableTransactionError<Infallible>>(n)
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => PiiError::Sled(e),
                TransactionError::Abort(never) => match never {},
            })?;
        self.tree.flush()?;
        Ok(applied)
    }
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("tree", &TREE_NAME)
            .field("master_key_ids", &self.masters().held_ids())
            .finish()
    }
}
