//! Hashing: the fast hasher for maps keyed by small integers or pointers
//! (re-exported from `rustc-hash`), and a stable 128-bit hash for keys that
//! must not change across runs, builds or machines.

// The fast hasher is rustc's Fx hash from `rustc-hash`; these paths stay so
// dependants keep naming it here. One multiply per word: fast for integer and
// pointer keys, not collision-resistant, so use it only for keys an outsider
// cannot choose (indices, pointers), never for vendor text.
pub use rustc_hash::{FxBuildHasher, FxHashMap, FxHasher};

/// FNV-1a with a 128-bit state: a stable hash whose value is part of Trueup's
/// data (card keys, idempotency keys), so it must never change. Feed fields
/// with [`StableHash::field`], which length-prefixes them so `("ab","c")`
/// and `("a","bc")` differ.
#[derive(Debug, Clone, Copy)]
pub struct StableHash(u128);

const FNV128_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const FNV128_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

impl Default for StableHash {
    fn default() -> Self {
        Self(FNV128_OFFSET)
    }
}

impl StableHash {
    /// A fresh hash.
    pub fn new() -> Self {
        Self::default()
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u128::from(b)).wrapping_mul(FNV128_PRIME);
        }
    }

    /// Adds one field.
    pub fn field(mut self, text: &str) -> Self {
        self.bytes(&(text.len() as u64).to_le_bytes());
        self.bytes(text.as_bytes());
        self
    }

    /// The hash.
    pub fn value(&self) -> u128 {
        self.0
    }

    /// The hash as 32 lower-case hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_pinned_and_length_prefixed() {
        // Pinned: a change here would re-key every stored card.
        let key = StableHash::new().field("ab").field("c").hex();
        assert_eq!(key, "b6ce7db35a06e7457857fa227a8bde4e");
        assert_ne!(key, StableHash::new().field("a").field("bc").hex());
        // FNV-1a 128 of the empty input is its offset basis.
        assert_eq!(StableHash::new().hex(), "6c62272e07bb014262b821756295c58d");
    }

    #[test]
    fn fx_hashes_differ_for_different_words() {
        use std::hash::Hasher;
        let mut a = FxHasher::default();
        a.write_u64(1);
        let mut b = FxHasher::default();
        b.write_u64(2);
        assert_ne!(a.finish(), b.finish());
    }
}
