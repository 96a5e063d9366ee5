//! RFC 9162 Merkle tree hashing with BLAKE3 as `H`: tree hashes, inclusion
//! proofs (`PATH`), consistency proofs (`PROOF`/`SUBPROOF`) and their
//! verifiers.
//!
//! - leaf hash: `H(0x00 || leaf data)`
//! - node hash: `H(0x01 || left || right)`
//! - `MTH({})` = `H("")` (BLAKE3 of the empty string)
//! - a list of `n > 1` leaves splits at `k`, the largest power of two `< n`.
//!
//! Proof generation works over any [`NodeSource`]: something that can give the
//! hash of a *complete, aligned* subtree (level `l`, index `i`, covering leaves
//! `[i*2^l, (i+1)*2^l)`). The persisted tree (`super::tree`) and the in-memory
//! [`MemoryTree`] both are one, so proofs never re-hash the log.
//!
//! The verifiers are RFC 9162 §2.1.3.2 and §2.1.4.2 step by step: every hash
//! of a proof is used, a proof that is too short or too long fails, and the
//! result is compared with the expected root(s).

/// A 32-byte BLAKE3 hash.
pub type Hash = [u8; 32];

/// Prefix byte of a leaf hash input.
pub const LEAF_PREFIX: u8 = 0x00;
/// Prefix byte of an interior node hash input.
pub const NODE_PREFIX: u8 = 0x01;

/// `H(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[LEAF_PREFIX]);
    h.update(data);
    *h.finalize().as_bytes()
}

/// `H(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = NODE_PREFIX;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    *blake3::hash(&buf).as_bytes()
}

/// The root of the empty tree: `H("")`.
pub fn empty_root() -> Hash {
    *blake3::hash(b"").as_bytes()
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
pub fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Subtrees that cannot be the frontier of a tree of `size` leaves
/// ([`Frontier::resume`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subtree levels {given:?} do not describe a tree of {size} leaves (expected {expected:?})")]
pub struct FrontierError {
    /// The levels of the subtrees given, in order.
    pub given: Vec<u8>,
    /// The tree size they were given for.
    pub size: u64,
    /// The levels a tree of `size` leaves has (one per set bit, largest first).
    pub expected: Vec<u8>,
}

/// Why a proof does not verify, or cannot be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// An inclusion proof for a leaf index not below the tree size.
    #[error("leaf index {index} is not inside a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index asked for (0-based: seq - 1).
        index: u64,
        /// The tree size (leaves).
        size: u64,
    },
    /// A consistency proof from a larger tree to a smaller one.
    #[error("consistency needs 0 <= old size {old} <= new size {new}")]
    SizesOutOfOrder {
        /// The old tree size (leaves).
        old: u64,
        /// The new tree size (leaves).
        new: u64,
    },
    /// The proof has hashes left over once the path reached the root.
    #[error(
        "the proof has {extra} hash(es) more than a tree of this size needs (surplus from position {at})"
    )]
    TooLong {
        /// Position (0-based) in the proof of the first surplus hash.
        at: usize,
        /// Number of surplus hashes.
        extra: usize,
    },
    /// The proof ends before the path reaches the root.
    #[error("the proof is too short: it ends before the root is reached")]
    TooShort,
    /// An empty consistency proof between two different, non-zero sizes.
    #[error("a consistency proof between different sizes cannot be empty")]
    Empty,
    /// A consistency proof between equal sizes, or from size 0, carries
    /// this many hashes (it must carry none).
    #[error("a proof between equal sizes (or from size 0) must be empty, it has {0} hash(es)")]
    NotEmpty(usize),
    /// The inclusion proof leads to another root than the expected one.
    #[error("the recomputed root {computed} differs from the expected root {expected}")]
    RootMismatch {
        /// The root given to the verifier, lower-case hex.
        expected: String,
        /// The root the proof leads to, lower-case hex.
        computed: String,
    },
    /// The consistency proof leads to another old root than the given one
    /// (from size 0: the given old root is not `H("")`).
    #[error("the recomputed old root {computed} differs from the old root {expected}")]
    OldRootMismatch {
        /// The old root given to the verifier, lower-case hex.
        expected: String,
        /// The old root the proof leads to (`H("")` from size 0), lower-case hex.
        computed: String,
    },
    /// The consistency proof leads to another new root than the given one
    /// (between equal sizes: the two roots given differ).
    #[error("the recomputed new root {computed} differs from the new root {expected}")]
    NewRootMismatch {
        /// The new root given to the verifier, lower-case hex.
        expected: String,
        /// The new root the proof leads to (the old root between equal
        /// sizes), lower-case hex.
        computed: String,
    },
    /// A proof or root was asked for a tree size the tree has not reached.
    #[error("tree size {requested} is larger than the tree ({available} leaves)")]
    SizeNotAvailable {
        /// The tree size asked for.
        requested: u64,
        /// The tree's size now (leaves).
        available: u64,
    },
    /// A subtree hash the proof needs could not be read (missing, or a
    /// storage error); the text says which.
    #[error("storage: {0}")]
    Storage(String),
}

/// Something that knows the hashes of complete, aligned subtrees.
pub trait NodeSource {
    /// The hash of the complete subtree at `level` covering leaves
    /// `[index << level, (index + 1) << level)`. Level 0 is the leaf hash.
    fn complete(&self, level: u8, index: u64) -> Result<Hash, ProofError>;
}

/// `MTH(D[start : start + size])` for a range whose `start` is a multiple of
/// the smallest power of two `>= size` (every range the RFC recursion visits
/// is). Reads at most `log2(size) + 1` complete subtrees.
pub fn range_hash<S: NodeSource + ?Sized>(src: &S, start: u64, size: u64) -> Result<Hash, ProofError> {
    if size == 0 {
        return Ok(empty_root());
    }
    // Decompose into complete subtrees, largest first, then fold from the right.
    let mut parts: Vec<Hash> = Vec::with_capacity(64);
    let mut pos = start;
    let mut rest = size;
    while rest > 0 {
        let level = 63 - rest.leading_zeros() as u8;
        parts.push(src.complete(level, pos >> level)?);
        pos += 1u64 << level;
        rest -= 1u64 << level;
    }
    let mut acc = parts.pop().expect("non-empty");
    while let Some(left) = parts.pop() {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// The root of the first `size` leaves.
pub fn root<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Hash, ProofError> {
    range_hash(src, 0, size)
}

/// RFC 9162 §2.1.3.1 `PATH(index, D[0:size])`: sibling hashes from the leaf up.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // Walk down from the root, collecting siblings; reverse at the end.
    let mut out = Vec::with_capacity(64);
    let mut at = Subtree {
        start: 0,
        n: size,
        m: index,
    };
    while at.n > 1 {
        let k = split_point(at.n);
        let left = at.m < k;
        descend(src, &mut out, &mut at, k, left)?;
    }
    out.reverse();
    Ok(out)
}

/// Where a proof's walk down the tree is: the subtree `D[start:start+n]`,
/// and `m` (the leaf index, or the old size) counted from its start.
struct Subtree {
    start: u64,
    n: u64,
    m: u64,
}

/// One step of a proof's walk down (RFC 9162 §2.1.3.1 and §2.1.4.1): into
/// the left subtree of `at` (its first `k` leaves) when `left`, else into
/// the right one, pushing the hash of the subtree not entered.
fn descend<S: NodeSource + ?Sized>(
    src: &S,
    out: &mut Vec<Hash>,
    at: &mut Subtree,
    k: u64,
    left: bool,
) -> Result<(), ProofError> {
    if left {
        out.push(range_hash(src, at.start + k, at.n - k)?);
        at.n = k;
    } else {
        out.push(range_hash(src, at.start, k)?);
        at.start += k;
        at.m -= k;
        at.n -= k;
    }
    Ok(())
}

/// RFC 9162 §2.1.4.1 `PROOF(old, D[0:new])`; empty when `old == 0` or `old == new`.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError> {
    if old > new {
        return Err(ProofError::SizesOutOfOrder { old, new });
    }
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start:start+n], b), iteratively; hashes come out root-first.
    let mut out = Vec::with_capacity(64);
    let mut at = Subtree {
        start: 0,
        n: new,
        m: old,
    };
    let mut b = true;
    loop {
        if at.m == at.n {
            if !b {
                out.push(range_hash(src, at.start, at.n)?);
            }
            break;
        }
        let k = split_point(at.n);
        let left = at.m <= k;
        descend(src, &mut out, &mut at, k, left)?;
        // b: the subtree is still on the left edge of the tree.
        b &= left;
    }
    out.reverse();
    Ok(out)
}

/// RFC 9162 §2.1.3.2: verifies that `leaf` is at `index` in the tree of `size`
/// leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion(leaf, index, size, proof)?;
    if &computed != root {
        return Err(ProofError::RootMismatch {
            expected: crate::hex::encode(root),
            computed: crate::hex::encode(&computed),
        });
    }
    Ok(())
}

/// The root an inclusion proof leads to (every step of §2.1.3.2, without the
/// final comparison).
pub fn root_from_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash]) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut r = *leaf;
    walk(index, size - 1, proof, 0, |p, left| {
        r = if left { node_hash(p, &r) } else { node_hash(&r, p) };
    })?;
    Ok(r)
}

/// The walk up the tree both proofs make (RFC 9162 §2.1.3.2 step 4 and
/// §2.1.4.2 step 6, with the length checks): from the nodes `fnode` and
/// `snode`, over the hashes `proof[first..]`, calling `step(hash, left)`
/// for each, `left` when the hash is the sibling on the left. A proof
/// longer or shorter than the path is refused.
fn walk(
    mut fnode: u64,
    mut snode: u64,
    proof: &[Hash],
    first: usize,
    mut step: impl FnMut(&Hash, bool),
) -> Result<(), ProofError> {
    for (i, p) in proof.iter().enumerate().skip(first) {
        if snode == 0 {
            return Err(ProofError::TooLong {
                at: i,
                extra: proof.len() - i,
            });
        }
        let left = fnode & 1 == 1 || fnode == snode;
        step(p, left);
        if left && fnode & 1 == 0 {
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::TooShort);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: verifies that the tree of `new` leaves with root
/// `new_root` extends the tree of `old` leaves with root `old_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizesOutOfOrder { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::NotEmpty(proof.len()));
        }
        if old_root != new_root {
            return Err(ProofError::NewRootMismatch {
                expected: crate::hex::encode(new_root),
                computed: crate::hex::encode(old_root),
            });
        }
        return Ok(());
    }
    if old == 0 {
        // Every tree extends the empty tree; its root must be H("").
        if !proof.is_empty() {
            return Err(ProofError::NotEmpty(proof.len()));
        }
        if *old_root != empty_root() {
            return Err(ProofError::OldRootMismatch {
                expected: crate::hex::encode(old_root),
                computed: crate::hex::encode(&empty_root()),
            });
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(ProofError::Empty);
    }
    // Step 2: if old is an exact power of two, the path starts with
    // old_root, else with the proof's first hash.
    let (start, first) = if old.is_power_of_two() {
        (old_root, 0)
    } else {
        (&proof[0], 1)
    };
    // Step 3.
    let (mut fnode, mut snode) = (old - 1, new - 1);
    // Step 4.
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // Step 5.
    let mut fr = *start;
    let mut sr = *start;
    // Steps 6 and 7 (snode reaches 0).
    walk(fnode, snode, proof, first, |c, left| {
        if left {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
        } else {
            sr = node_hash(&sr, c);
        }
    })?;
    if &fr != old_root {
        return Err(ProofError::OldRootMismatch {
            expected: crate::hex::encode(old_root),
            computed: crate::hex::encode(&fr),
        });
    }
    if &sr != new_root {
        return Err(ProofError::NewRootMismatch {
            expected: crate::hex::encode(new_root),
            computed: crate::hex::encode(&sr),
        });
    }
    Ok(())
}

/// A Merkle tree held in memory as complete subtrees per level
/// (`levels[l][i]` is the complete subtree at level `l`, index `i`).
/// Used by tests, by the bench and by tools that hold a whole export.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// The empty tree (no leaves; its root is `H("")`).
    pub fn new() -> MemoryTree {
        MemoryTree {
            levels: vec![Vec::new()],
        }
    }

    /// Builds the tree over these leaf hashes.
    pub fn from_leaves(leaves: &[Hash]) -> MemoryTree {
        let mut t = MemoryTree::new();
        for l in leaves {
            t.push(*l);
        }
        t
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Appends one leaf hash and every ancestor it completes.
    pub fn push(&mut self, leaf: Hash) {
        self.levels[0].push(leaf);
        let mut level = 0usize;
        let mut carry = leaf;
        while self.levels[level].len() % 2 == 0 {
            let n = self.levels[level].len();
            carry = node_hash(&self.levels[level][n - 2], &carry);
            level += 1;
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(carry);
        }
    }

    /// The root of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.check(size)?;
        root(self, size)
    }

    /// The inclusion proof of leaf `index` (0-based) in the tree of the
    /// first `size` leaves, leaf's sibling first.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check(size)?;
        inclusion_proof(self, index, size)
    }

    /// The consistency proof from the tree of the first `old` leaves to the
    /// tree of the first `new` leaves.
    pub fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        self.check(new)?;
        consistency_proof(self, old, new)
    }

    fn check(&self, size: u64) -> Result<(), ProofError> {
        if size > self.size() {
            return Err(ProofError::SizeNotAvailable {
                requested: size,
                available: self.size(),
            });
        }
        Ok(())
    }
}

impl NodeSource for MemoryTree {
    fn complete(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .ok_or_else(|| ProofError::Storage(format!("no complete subtree at level {level} index {index}")))
    }
}

/// The root of a growing list of leaves in O(log n) memory (the "compact
/// range" of the left edge): push leaves in order, ask for the root at any time.
#[derive(Clone, Debug, Default)]
pub struct Frontier {
    /// `(level, hash)` of the complete subtrees covering the leaves so far,
    /// largest (leftmost) first.
    stack: Vec<(u8, Hash)>,
    size: u64,
}

impl Frontier {
    /// The frontier of the empty tree (size 0, root `H("")`).
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Leaves pushed so far (counting those of a resumed frontier).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the next leaf hash, merging the complete subtrees it completes.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = (0u8, leaf);
        while let Some(&(level, left)) = self.stack.last() {
            if level != carry.0 {
                break;
            }
            self.stack.pop();
            carry = (level + 1, node_hash(&left, &carry.1));
        }
        self.stack.push(carry);
        self.size += 1;
    }

    /// The complete subtrees `(level, hash)` covering the leaves so far,
    /// largest (leftmost) first: with the size, enough to resume pushing.
    pub fn subtrees(&self) -> &[(u8, Hash)] {
        &self.stack
    }

    /// A frontier resumed from [`subtrees`](Self::subtrees) of one of
    /// `size` leaves; refuses subtrees whose levels are not those of `size`
    /// (one per set bit, largest first).
    pub fn resume(size: u64, subtrees: Vec<(u8, Hash)>) -> Result<Frontier, FrontierError> {
        let levels: Vec<u8> = (0..64u8).rev().filter(|l| size >> l & 1 == 1).collect();
        let given: Vec<u8> = subtrees.iter().map(|(l, _)| *l).collect();
        if levels != given {
            return Err(FrontierError {
                given,
                size,
                expected: levels,
            });
        }
        Ok(Frontier {
            stack: subtrees,
            size,
        })
    }

    /// `MTH` of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn naive_root(l: &[Hash]) -> Hash {
        match l.len() {
            0 => empty_root(),
            1 => l[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&naive_root(&l[..k]), &naive_root(&l[k..]))
            }
        }
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
    }

    #[test]
    fn memory_tree_and_frontier_agree_with_naive_roots() {
        let l = leaves(70);
        let t = MemoryTree::from_leaves(&l);
        let mut f = Frontier::new();
        assert_eq!(f.root(), empty_root());
        for n in 1..=70u64 {
            f.push(l[n as usize - 1]);
            let want = naive_root(&l[..n as usize]);
            assert_eq!(t.root_at(n).unwrap(), want, "size {n}");
            assert_eq!(f.root(), want, "frontier size {n}");
        }
    }

    #[test]
    fn proofs_verify_and_reject_alterations() {
        let l = leaves(20);
        let t = MemoryTree::from_leaves(&l);
        for n in 1..=20u64 {
            let r = t.root_at(n).unwrap();
            for i in 0..n {
                let p = t.inclusion(i, n).unwrap();
                verify_inclusion(&l[i as usize], i, n, &p, &r).unwrap();
                let mut longer = p.clone();
                longer.push([0; 32]);
                assert!(verify_inclusion(&l[i as usize], i, n, &longer, &r).is_err());
                if !p.is_empty() {
                    assert_eq!(
                        verify_inclusion(&l[i as usize], i, n, &p[..p.len() - 1], &r),
                        Err(ProofError::TooShort)
                    );
                }
            }
            for m in 0..=n {
                let p = t.consistency(m, n).unwrap();
                verify_consistency(m, n, &t.root_at(m).unwrap(), &r, &p).unwrap();
            }
        }
    }
}
