//! IP fragments. Only a datagram's first fragment carries its ports, so
//! only it can be steered to its flow's owner and translated like any
//! packet of the flow; the later fragments must follow what was done to
//! the first. Two small per-worker tables remember that, keyed by what
//! every fragment of a datagram carries (source, destination, protocol,
//! identification):
//!
//! - the receiving worker remembers which worker it handed the first
//!   fragment to and hands the later ones to the same worker, through the
//!   same FIFO inbox, so they arrive there after it (all fragments of a
//!   datagram reach one receive queue: RSS and the kernel's fanout hash
//!   them by addresses only);
//! - the owner remembers how it translated the first fragment (which end
//!   became which address) and rewrites the later ones' address alike.
//!
//! Reassembly would need buffers per datagram and a copy of every byte;
//! following the first fragment needs neither, and is what Katran and
//! IPVS do. Later fragments that come before their first one wait for it
//! in the receiving worker, for a bounded time ([`crate::worker::frag_hold`]).
//!
//! Both tables are bounded sets of 4-way buckets: a new datagram takes a
//! free or expired slot, else the oldest one of its bucket. A datagram
//! whose entry was displaced loses its later fragments (counted), never
//! gets another datagram's translation: keys are compared whole.

use xxhash_rust::xxh3::xxh3_64;

use crate::addr::Addr;
use crate::wire::parse::Parsed;

/// Slots per bucket.
const WAYS: usize = 4;

/// How long a datagram's entry is used after its first fragment, seconds:
/// Linux's `ipfrag_time` (reassembly gives up after it too).
pub const FRAGMENT_TIMEOUT_S: u32 = 30;

/// What names a fragmented datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FragKey {
    pub src: Addr,
    pub dst: Addr,
    pub id: u32,
    pub proto: u8,
}

impl FragKey {
    /// The key of a fragment's datagram.
    #[inline]
    pub fn of(p: &Parsed) -> FragKey {
        FragKey {
            src: p.src,
            dst: p.dst,
            id: p.frag_id,
            proto: p.proto,
        }
    }

    #[inline]
    fn hash(&self) -> u64 {
        let mut k = [0u8; 37];
        k[..16].copy_from_slice(&self.src.0);
        k[16..32].copy_from_slice(&self.dst.0);
        k[32..36].copy_from_slice(&self.id.to_be_bytes());
        k[36] = self.proto;
        xxh3_64(&k)
    }
}

#[derive(Clone, Copy, Default)]
struct Slot<V> {
    key: FragKey,
    value: V,
    /// When the entry was written (the caller's clock); 0 = free.
    stamp: u32,
    used: bool,
}

/// A bounded map from datagrams to what their first fragment got.
pub struct FragTable<V: Copy + Default> {
    slots: Box<[Slot<V>]>,
    /// Entries older than this (in the caller's clock) are ignored.
    ttl: u32,
}

/// What [`FragTable::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    Fresh,
    /// Displaced a live entry of another datagram.
    Evicted,
}

impl<V: Copy + Default> FragTable<V> {
    /// Room for at least `entries` datagrams; entries live `ttl` ticks of
    /// the clock the caller passes.
    pub fn new(entries: usize, ttl: u32) -> FragTable<V> {
        let buckets = entries.div_ceil(WAYS).max(1).next_power_of_two();
        FragTable {
            slots: vec![Slot::default(); buckets * WAYS].into_boxed_slice(),
            ttl,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn bucket(&self, k: &FragKey) -> std::ops::Range<usize> {
        let b = (k.hash() as usize) & (self.slots.len() / WAYS - 1);
        b * WAYS..b * WAYS + WAYS
    }

    #[inline]
    fn live(&self, s: &Slot<V>, now: u32) -> bool {
        s.used && now.wrapping_sub(s.stamp) <= self.ttl
    }

    /// What the datagram `k` got, if its entry is still live at `now`.
    #[inline]
    pub fn get(&self, k: &FragKey, now: u32) -> Option<V> {
        let r = self.bucket(k);
        self.slots[r]
            .iter()
            .find(|s| s.used && s.key == *k && self.live(s, now))
            .map(|s| s.value)
    }

    /// Records `v` for the datagram `k` at `now`.
    #[inline]
    pub fn insert(&mut self, k: FragKey, v: V, now: u32) -> Inserted {
        let r = self.bucket(&k);
        let ttl = self.ttl;
        let bucket = &mut self.slots[r];
        let live = |s: &Slot<V>| s.used && now.wrapping_sub(s.stamp) <= ttl;
        let i = bucket
            .iter()
            .position(|s| s.used && s.key == k)
            .or_else(|| bucket.iter().position(|s| !live(s)));
        let (i, how) = match i {
            Some(i) => (i, Inserted::Fresh),
            None => {
                let oldest = (0..WAYS)
                    .max_by_key(|&j| now.wrapping_sub(bucket[j].stamp))
                    .unwrap_or(0);
                (oldest, Inserted::Evicted)
            }
        };
        bucket[i] = Slot {
            key: k,
            value: v,
            stamp: now,
            used: true,
        };
        how
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: Addr::from_v4([198, 18, 0, 9]),
            dst: Addr::from_v4([198, 19, 0, 10]),
            id,
            proto: 17,
        }
    }

    #[test]
    fn remembers_until_the_timeout() {
        let mut t: FragTable<u8> = FragTable::new(16, FRAGMENT_TIMEOUT_S);
        assert_eq!(t.get(&key(1), 5), None);
        assert_eq!(t.insert(key(1), 7, 5), Inserted::Fresh);
        assert_eq!(t.get(&key(1), 5 + FRAGMENT_TIMEOUT_S), Some(7));
        assert_eq!(t.get(&key(1), 6 + FRAGMENT_TIMEOUT_S), None);
        assert_eq!(t.get(&key(2), 5), None, "another datagram");
        let mut other = key(1);
        other.proto = 6;
        assert_eq!(t.get(&other, 5), None, "same id, other protocol");
    }

    #[test]
    fn bounded_with_the_oldest_displaced() {
        let mut t: FragTable<u32> = FragTable::new(1, 100);
        assert_eq!(t.capacity(), WAYS);
        for id in 0..WAYS as u32 {
            assert_eq!(t.insert(key(id), id, 10 + id), Inserted::Fresh);
        }
        assert_eq!(t.insert(key(99), 99, 20), Inserted::Evicted);
        assert_eq!(t.get(&key(0), 20), None, "the oldest went");
        assert_eq!(t.get(&key(1), 20), Some(1));
        assert_eq!(t.get(&key(99), 20), Some(99));
        // Expired entries make room without eviction.
        assert_eq!(t.insert(key(100), 1, 500), Inserted::Fresh);
    }
}
