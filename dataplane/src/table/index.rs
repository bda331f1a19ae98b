//! The per-packet side of a service table: a flat open-addressing array from
//! [`ServiceKey`] to its entry, whose probe for a key starts at a slot the
//! caller can compute, and prefetch, a whole look-ahead round before it
//! probes.
//!
//! Hand-written because no well-kept map crate lets a caller prefetch the
//! bucket of a key before probing: std's and hashbrown's maps (and
//! hashbrown's `HashTable`) take the hash and probe in one call and expose
//! no address of a group or bucket, so a burst of lookups into a map larger
//! than the caches pays one miss after another. A service table is
//! immutable once built, which keeps this index small: it is built once per
//! generation and never updated, so it needs no deletion, tombstones or
//! growth.
//!
//! Layout: a power-of-two array of 32-byte slots (the key and the entry's
//! pointer), at most half full, linear probing. A slot never straddles a
//! cache line, and a hit is at its home slot or close after it, so a lookup
//! whose home line has been prefetched almost always costs no miss.
//!
//! Slots hold plain pointers to entries that the table's map owns (through
//! `Arc`s), not `Arc`s of their own: cloning and dropping an `Arc` writes
//! its count in the entry's own line, 20,000 scattered writes per
//! generation at 10,000 services (with `Arc` slots the p50 of an
//! EndpointSlice change in `kube_publish` rose from ~2.7 to ~3.2 ms), where
//! reading the map's (key, pointer) buckets in order is cheap.

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::Arc;

use ahash::RandomState;

use super::ServiceEntry;
use crate::addr::{Addr, Proto};
use crate::service::ServiceKey;

/// One key and its entry; `entry: None` marks a free slot (whose key is
/// meaningless). 32-byte aligned: two slots per cache line, none across two.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    key: ServiceKey,
    entry: Option<NonNull<ServiceEntry>>,
}

const FREE: Slot = Slot {
    key: ServiceKey {
        vip: Addr([0; 16]),
        port: 0,
        proto: Proto::Tcp,
    },
    entry: None,
};

/// A flat index of one table's entries, built once; valid while the map it
/// was built from lives, unchanged (see [`Index::build`]).
pub(super) struct Index {
    /// Power-of-two length, at least twice the number of keys, so a probe
    /// always reaches a free slot and stops.
    slots: Box<[Slot]>,
    mask: usize,
    /// Random per index: keys come from the cluster, but the probe
    /// sequence of one gateway should not be predictable from outside.
    seed: [u64; 3],
}

/// The 128-bit product of `a` and `b`, folded to 64 bits: every output bit
/// depends on every input bit, for one multiplication.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Index {
    /// Indexes the entries of `map`, reading only its buckets (not the
    /// entries). O(n): one probe sequence per entry.
    ///
    /// # Safety
    /// The index points into `map`'s entries without owning them: `map`
    /// must outlive the index and must not change while it lives (the
    /// [`super::ServiceTable`] that holds both is immutable).
    pub(super) unsafe fn build(map: &HashMap<ServiceKey, Arc<ServiceEntry>, RandomState>) -> Index {
        let len = (map.len() * 2).next_power_of_two().max(2);
        let rs = RandomState::new();
        let mut index = Index {
            slots: vec![FREE; len].into_boxed_slice(),
            mask: len - 1,
            seed: [rs.hash_one(1u8), rs.hash_one(2u8), rs.hash_one(3u8)],
        };
        for (&key, e) in map {
            let mut i = index.home(index.hash(&key));
            while index.slots[i].entry.is_some() {
                i = (i + 1) & index.mask;
            }
            index.slots[i] = Slot {
                key,
                entry: Some(NonNull::from(&**e)),
            };
        }
        index
    }

    /// The hash that [`Index::prefetch`] and [`Index::get`] take for `key`.
    #[inline]
    pub(super) fn hash(&self, key: &ServiceKey) -> u64 {
        let v = &key.vip.0;
        let hi = u64::from_le_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
        let lo = u64::from_le_bytes([v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]]);
        let rest = (u64::from(key.port) << 8) | key.proto as u64;
        let h = fold_mul(hi ^ self.seed[0], lo ^ self.seed[1]);
        fold_mul(h ^ rest, self.seed[2] | 1)
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Starts loading the line of `hash`'s home slot and of the next slot
    /// (the second probe of a displaced key): half the time that is the same
    /// line and the second hint costs one instruction, cheaper than a
    /// branch on which half of its line the home slot is.
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        let i = self.home(hash);
        crate::prefetch::read(&self.slots[i]);
        crate::prefetch::read(&self.slots[(i + 1) & self.mask]);
    }

    /// The entry of `key`, given `hash` = [`Index::hash`]`(key)`.
    #[inline]
    pub(super) fn get(&self, hash: u64, key: &ServiceKey) -> Option<&ServiceEntry> {
        let mut i = self.home(hash);
        loop {
            let s = &self.slots[i];
            match s.entry {
                None => return None,
                // SAFETY: `build`'s contract: the entry is kept alive and
                // unchanged by the map that outlives `self`.
                Some(e) if s.key == *key => return Some(unsafe { e.as_ref() }),
                Some(_) => i = (i + 1) & self.mask,
            }
        }
    }

    /// Slots probed to find each key (1 = at its home slot), for tests of
    /// the hash's spread.
    #[cfg(test)]
    fn probe_lengths(&self) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.entry.is_some())
            .map(|(at, s)| ((at.wrapping_sub(self.home(self.hash(&s.key)))) & self.mask) + 1)
            .collect()
    }
}

// SAFETY: an Index only reads the entries it points to, which are `Sync`
// (immutable, `Arc`-shared) and owned by a map that outlives it (`build`'s
// contract); sending or sharing it is sending or sharing `&ServiceEntry`s.
unsafe impl Send for Index {}
// SAFETY: as for `Send`: `&Index` hands out only `&ServiceEntry`.
unsafe impl Sync for Index {}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.slots.iter().filter(|s| s.entry.is_some()).count();
        f.debug_struct("Index")
            .field("slots", &self.slots.len())
            .field("used", &used)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{ServiceTable, TableConfig};

    #[test]
    fn slots_are_half_a_cache_line_and_aligned() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert_eq!(std::mem::align_of::<Slot>(), 32);
    }

    /// Sequential VIPs (how a Service CIDR hands them out) and a few ports
    /// per VIP must still spread: short probes for every key.
    #[test]
    fn sequential_keys_probe_few_slots() {
        let mut specs = Vec::new();
        for i in 0..3_000u32 {
            let [_, _, hi, lo] = i.to_be_bytes();
            for (port, proto) in [(80, Proto::Tcp), (443, Proto::Tcp), (53, Proto::Udp)] {
                specs.push(crate::service::ServiceSpec {
                    key: ServiceKey {
                        vip: Addr::from_v4([198, 19, hi, lo]),
                        port,
                        proto,
                    },
                    name: String::new(),
                    backends: Vec::new(),
                    affinity: crate::service::Affinity::None,
                    no_endpoints: crate::service::NoEndpoints::Reject,
                    forwarding: Default::default(),
                    source_ranges: Vec::new(),
                });
            }
        }
        let t = ServiceTable::from_specs(specs, TableConfig::default());
        let lens = t.index.probe_lengths();
        assert_eq!(lens.len(), 9_000);
        let mean = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
        let max = *lens.iter().max().unwrap();
        // Uniform hashing at load 9000/16384 gives a mean of ~1.6.
        assert!(mean < 2.0 && max < 40, "mean {mean}, max {max}");
    }
}
