//! Hashing helpers: a fast hasher for maps keyed by small integers or
//! pointers, and a stable 128-bit hash for keys that must not change across
//! runs, builds or machines.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The Fx hash (as used inside rustc): one multiply per word. Fast for
/// integer and pointer keys; not collision-resistant, so use it only for keys
/// an outsider cannot choose (indices, pointers), never for vendor text.
#[derive(Debug, Clone, Copy, Default)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Builds [`FxHasher`]s.
pub type FxBuildHasher = BuildHasherDefault<FxHasher>;

/// A `HashMap` with [`FxHasher`], for index and pointer keys.
pub type FxHashMap<K, V> = HashMap<K, V, FxBuildHasher>;

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
        let mut a = FxHasher::default();
        a.write_u64(1);
        let mut b = FxHasher::default();
        b.write_u64(2);
        assert_ne!(a.finish(), b.finish());
    }
}
