//! A fast, non-cryptographic hasher for the per-cycle maps keyed by node
//! label values (topology domains). Those keys come from Node objects, which
//! only cluster administrators write, so flooding resistance (SipHash's
//! reason to be slow) buys nothing here, while PreFilter/PreScore hash one
//! value per node every cycle.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate hashing over 8-byte words (the "Fx" scheme).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The tail's length goes in the unused top byte, so trailing
            // NULs are not confused with padding.
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            w[7] = rest.len() as u8;
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A `HashSet` with [`FastHasher`].
pub(crate) type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_values_hash_apart_and_maps_work() {
        use std::hash::BuildHasher;
        // As maps hash keys: `str` appends a terminator byte.
        let h = |s: &str| BuildHasherDefault::<FastHasher>::default().hash_one(s);
        assert_ne!(h("node-1"), h("node-2"));
        assert_ne!(h("zone-a"), h("zone-a\0"));
        assert_eq!(
            h("topology.kubernetes.io/zone"),
            h("topology.kubernetes.io/zone")
        );
        let mut m: FastMap<String, i64> = FastMap::default();
        for i in 0..1000 {
            m.insert(format!("node-{i}"), i);
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m.get("node-999"), Some(&999));
    }
}
