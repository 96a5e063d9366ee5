//! The side trees that replicate with the log on a cluster node: the
//! wrapped person keys and the document index. A [`TreeWrite`] is applied
//! on every node in one sled transaction with the applied Raft position,
//! all or none, only if each of its conditions holds; the answer is the
//! same on every node, since every node applied the same entries before it.

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::types::TreeWrite;
use crate::log::store::TREE_LOG;

/// The trees a [`TreeWrite`] may name.
pub const REPLICATED_TREES: [&str; 2] = [crate::pii::keystore::TREE_NAME, crate::cases::TREE_DOCUMENTS];

fn index_of(tree: &str) -> Option<usize> {
    REPLICATED_TREES.iter().position(|t| *t == tree)
}

/// Checks that a write names only replicated trees.
pub fn check(write: &TreeWrite) -> Result<(), String> {
    for (tree, _, _) in write.expect.iter().chain(&write.set) {
        if index_of(tree).is_none() {
            return Err(format!("tree {tree} does not replicate"));
        }
    }
    Ok(())
}

/// Applies `write` with the applied position `extra` (a key of the `log`
/// tree): `Ok(Err(i))` when condition `i` failed (then only the position is written).
pub fn apply(db: &sled::Db, write: &TreeWrite, extra: (&[u8], Vec<u8>)) -> Result<Result<(), usize>, String> {
    check(write)?;
    let log = db.open_tree(TREE_LOG).map_err(|e| e.to_string())?;
    let keys = db.open_tree(REPLICATED_TREES[0]).map_err(|e| e.to_string())?;
    let docs = db.open_tree(REPLICATED_TREES[1]).map_err(|e| e.to_string())?;
    let result: Result<Result<(), usize>, TransactionError<()>> =
        (&log, &keys, &docs).transaction(|(log, keys, docs)| {
            let trees = [keys, docs];
            log.insert(extra.0, extra.1.as_slice())?;
            for (i, (tree, key, want)) in write.expect.iter().enumerate() {
                let t = trees[index_of(tree).expect("checked")];
                let have = t.get(key.as_slice())?;
                if have.as_deref() != want.as_deref() {
                    return Ok(Err(i));
                }
            }
            for (tree, key, value) in &write.set {
                let t = trees[index_of(tree).expect("checked")];
                match value {
                    Some(v) => t.insert(key.as_slice(), v.as_slice())?,
                    None => t.remove(key.as_slice())?,
                };
            }
            Ok::<_, ConflictableTransactionError<()>>(Ok(()))
        });
    result.map_err(|e| format!("{e:?}"))
}
