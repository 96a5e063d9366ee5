//! A small seeded PRNG (SplitMix64) for the synthetic caseload.
//!
//! Person `i` of seed `s` draws every choice from its own generator seeded
//! from `(s, i)` alone, so a person's case does not depend on the number of
//! threads or on the order persons are processed in. SplitMix64 passes
//! BigCrush and is more than enough for sampling distributions; it is not
//! (and need not be) cryptographic.

/// The SplitMix64 finalizer: a bijective 64-bit mix.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator from a raw seed.
    pub const fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The generator of person `index` in the simulation `seed`.
    pub fn for_person(seed: u64, index: u64) -> Rng {
        Rng::new(mix64(
            mix64(seed ^ 0x5349_4d55_4c41_5445) ^ index.wrapping_mul(GOLDEN_GAMMA),
        ))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `0..n` (`n > 0`; multiply-shift, bias below 2^-64 * n).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (returns `lo` when `hi < lo`).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// Uniform in `[0, 1)` with 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An index drawn with the given (non-negative, not all zero) weights.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        // Rounding at the very end: the last index with a positive weight.
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }

    /// One element of a non-empty slice, uniformly.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `n` decimal digits.
    pub fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }

    /// 32 random bytes, never all zero.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out[0] |= 1;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_persons_differ() {
        let a: Vec<u64> = (0..8).map(|_| Rng::for_person(7, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::for_person(7, 3).next_u64(), Rng::for_person(7, 4).next_u64());
        assert_ne!(Rng::for_person(7, 3).next_u64(), Rng::for_person(8, 3).next_u64());
    }

    #[test]
    fn range_and_weighted_stay_in_bounds() {
        let mut r = Rng::new(1);
        for _ in 0..10_000 {
            let x = r.range(-3, 5);
            assert!((-3..=5).contains(&x));
            assert!(r.weighted(&[0.0, 1.0, 0.0, 2.0]) % 2 == 1);
            assert!(r.unit() < 1.0);
        }
        assert_eq!(r.range(4, 4), 4);
        assert_eq!(r.range(4, 2), 4);
    }
}
