//! The lookup index: open addressing, linear probing, backward-shift deletion.
//!
//! Hand-written rather than `hashbrown::HashTable` for three reasons:
//! - Deletion leaves no tombstones. hashbrown marks removed buckets DELETED
//!   and, once they pile up, rehashes the whole table in place inside some
//!   unlucky `insert`: a stop-the-world pause on the packet path that a
//!   conntrack table (constant churn, fixed size) would hit regularly.
//! - Memory is exactly one `Box<[u64]>` allocated up front; nothing in here
//!   can grow, so "no allocation after `new`" holds by construction.
//! - A slot is 8 bytes (32 hash bits + entry index + direction), eight per
//!   cache line, and the hash bits reject almost every foreign key without
//!   touching the 64-byte entry.
//!
//! The table has at least 4/3 as many slots as keys it may ever hold, so the
//! load factor stays <= 0.75 and a probe always ends at an empty slot.

/// Packed slot: high 32 bits are the key's hash, low 32 bits the value
/// (`entry_index << 1 | direction`). The all-ones value is never a real
/// value because entry indices stay below 2^30.
const EMPTY: u64 = u64::MAX;

pub struct Index {
    slots: Box<[u64]>,
    mask: usize,
}

impl Index {
    /// An index able to hold `keys` keys without growing.
    pub fn with_keys(keys: usize) -> Index {
        let want = keys.max(1) + keys / 3 + 1;
        let n = want.next_power_of_two();
        Index {
            slots: vec![EMPTY; n].into_boxed_slice(),
            mask: n - 1,
        }
    }

    #[inline]
    fn home(&self, hash: u32) -> usize {
        hash as usize & self.mask
    }

    /// Starts loading the slot where a probe for `hash` begins.
    #[inline]
    pub fn prefetch(&self, hash: u32) {
        crate::prefetch::read(self.slots.as_ptr().wrapping_add(self.home(hash)));
    }

    /// The value of the first key whose hash is `hash` and for which
    /// `matches(value)` holds.
    #[inline]
    pub fn find(&self, hash: u32, mut matches: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut pos = self.home(hash);
        loop {
            // SAFETY: `pos` is always masked by `mask`, which is `len - 1`
            // of a power-of-two sized, non-empty slice.
            let slot = unsafe { *self.slots.get_unchecked(pos) };
            if slot == EMPTY {
                return None;
            }
            if (slot >> 32) as u32 == hash && matches(slot as u32) {
                return Some(slot as u32);
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Add a key. The caller guarantees the key count stays within `keys`.
    #[inline]
    pub fn insert(&mut self, hash: u32, value: u32) {
        let mut pos = self.home(hash);
        while self.slots[pos] != EMPTY {
            pos = (pos + 1) & self.mask;
        }
        self.slots[pos] = (u64::from(hash) << 32) | u64::from(value);
    }

    /// Remove the key with this hash and value; returns whether it was there.
    pub fn remove(&mut self, hash: u32, value: u32) -> bool {
        let want = (u64::from(hash) << 32) | u64::from(value);
        let mut hole = self.home(hash);
        loop {
            let slot = self.slots[hole];
            if slot == EMPTY {
                return false;
            }
            if slot == want {
                break;
            }
            hole = (hole + 1) & self.mask;
        }
        // Backward shift: pull later members of the probe run into the hole
        // when the hole lies on their way from home, so every key stays
        // reachable from its home without tombstones.
        let mut pos = hole;
        loop {
            pos = (pos + 1) & self.mask;
            let slot = self.slots[pos];
            if slot == EMPTY {
                break;
            }
            let home = self.home((slot >> 32) as u32);
            // Distance travelled from home to pos vs. from home to hole.
            let dist_pos = pos.wrapping_sub(home) & self.mask;
            let dist_hole = hole.wrapping_sub(home) & self.mask;
            if dist_hole <= dist_pos {
                self.slots[hole] = slot;
                hole = pos;
            }
        }
        self.slots[hole] = EMPTY;
        true
    }

    #[cfg(test)]
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Many keys forced into few homes: removals in any order must keep
    /// every remaining key findable (the backward shift is the risky part).
    #[test]
    fn removal_keeps_colliding_keys_reachable() {
        let mut ix = Index::with_keys(48);
        let n = ix.slot_count() as u32;
        assert!(n >= 64);
        // Hashes crowd around the end of the table so runs wrap around.
        let keys: Vec<(u32, u32)> = (0..48u32)
            .map(|v| ((n - 3 + (v % 5)) | ((v % 7) << 16), v))
            .collect();
        for &(h, v) in &keys {
            ix.insert(h, v);
        }
        let mut live: HashMap<u32, u32> = keys.iter().map(|&(h, v)| (v, h)).collect();
        // A fixed but scrambled removal order.
        let mut order: Vec<u32> = (0..48).collect();
        order.sort_by_key(|v| (v * 37) % 48);
        for v in order {
            let h = live.remove(&v).unwrap();
            assert!(ix.remove(h, v));
            assert!(!ix.remove(h, v), "removed twice");
            assert_eq!(ix.find(h, |x| x == v), None);
            for (&v2, &h2) in &live {
                assert_eq!(ix.find(h2, |x| x == v2), Some(v2), "lost {v2}");
            }
        }
        assert!(ix.slots.iter().all(|&s| s == EMPTY));
    }

    #[test]
    fn find_needs_both_hash_and_match() {
        let mut ix = Index::with_keys(4);
        ix.insert(7, 1);
        ix.insert(7, 2);
        assert_eq!(ix.find(7, |_| true), Some(1));
        assert_eq!(ix.find(7, |v| v == 2), Some(2));
        assert_eq!(ix.find(8, |_| true), None);
    }

    #[test]
    fn sized_for_load_at_most_three_quarters() {
        for keys in [1usize, 2, 3, 6, 47, 48, 96, 1000, 1 << 12] {
            let slots = Index::with_keys(keys).slot_count();
            assert!(keys * 4 <= slots * 3, "{keys} keys in {slots} slots");
        }
    }
}
