//! `sessionAffinity: ClientIP` state: which backend each client of a Service
//! was last sent to, and when. kube-proxy keeps this in the kernel (the
//! iptables `recent` match, IPVS persistence templates, an nftables map),
//! Cilium in a shared BPF LRU map; here it is one fixed-size table shared
//! by the gateway's workers.
//!
//! Shared rather than per worker because a flow's owner worker is chosen
//! by client address *and port* ([`crate::steer`]): two connections of one
//! client usually land on two workers, and both must find the client's
//! backend. The table is written only when a flow is created (not per
//! packet), and with plain atomic loads and stores, no lock:
//!
//! - a slot is two words, the key's 64-bit fingerprint and (backend
//!   fingerprint, last seen); a writer claims the slot by swapping the key
//!   it saw for a busy mark (one compare-and-swap; a writer that loses it
//!   gives up rather than wait), writes the value, then publishes the key;
//!   a reader reads key, value, key again and uses the value only if the
//!   key did not change in between;
//! - a value is only ever a *hint*: the pipeline uses it only if it names a
//!   backend that still takes new flows of that Service, so a torn or
//!   colliding read can at worst move a client to another serving backend
//!   (what happens without affinity), never send a flow anywhere else.
//!
//! Two flows of a new client created at the same instant on two workers both
//! miss and both pick by the Maglev hash of the client address, which gives
//! both the same backend; the client may then occupy two slots of its
//! bucket until one ages out.
//!
//! Expiry follows kube-proxy's iptables mode: a client keeps its backend
//! while it opens a new connection at least every `timeoutSeconds` (its
//! last-seen time is refreshed per new flow, not per packet).

use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::addr::Addr;
use crate::service::ServiceKey;

/// Clients remembered when the operator sets nothing: 1 MiB of table, what
/// Cilium's default affinity map holds (64K).
pub const DEFAULT_ENTRIES: usize = 65_536;

/// Slots per bucket: one cache line of 16-byte slots.
const WAYS: usize = 4;

/// Seed of the key and backend fingerprints. Local to one gateway: nothing
/// outside the process sees them, so unlike `crate::hash` no value is a
/// contract.
const SEED: u64 = u64::from_be_bytes(*b"affinity");

/// A slot's key while a writer fills it in.
const BUSY: u64 = u64::MAX;

/// One remembered client: key fingerprint (0 = empty, [`BUSY`]) and value
/// (backend fingerprint << 32 | last seen, seconds of the dataplane clock).
#[derive(Default)]
struct Slot {
    key: AtomicU64,
    value: AtomicU64,
}

#[derive(Default)]
#[repr(align(64))]
struct Bucket {
    slots: [Slot; WAYS],
}

/// A client's entry for one Service, as a 64-bit fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientKey(u64);

/// What [`AffinityTable::lookup`] found for a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Seen within the timeout, last sent to the backend with this
    /// [`backend_fingerprint`].
    Backend(u32),
    /// Seen, but longer ago than the timeout.
    Expired,
    /// Not remembered (never seen, or displaced by other clients).
    Unknown,
}

/// What [`AffinityTable::remember`] did to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Updated the client's slot, or took a free or expired one.
    Fresh,
    /// Displaced the bucket's least recently seen live client.
    Evicted,
    /// Another worker was writing the slot at that instant: nothing stored
    /// (the next new flow of the client stores it).
    Busy,
}

/// The ClientIP affinity table shared by one gateway's workers.
pub struct AffinityTable {
    buckets: Box<[Bucket]>,
}

impl std::fmt::Debug for AffinityTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AffinityTable")
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Default for AffinityTable {
    fn default() -> Self {
        AffinityTable::new(DEFAULT_ENTRIES)
    }
}

/// The fingerprint of a backend endpoint, as the table stores it (never 0).
#[inline]
pub fn backend_fingerprint(addr: &Addr, port: u16) -> u32 {
    let mut k = [0u8; 18];
    k[..16].copy_from_slice(&addr.0);
    k[16..].copy_from_slice(&port.to_be_bytes());
    (xxh3_64_with_seed(&k, SEED) as u32).max(1)
}

/// Seconds from `last` to `now`; 0 when `last` is ahead. Each worker
/// counts seconds from its own start, so a client written by one worker
/// can look up to a second in the future to another: that is not an age
/// of four billion seconds.
#[inline]
fn age(last: u32, now: u32) -> u32 {
    let a = now.wrapping_sub(last);
    if a > u32::MAX / 2 {
        0
    } else {
        a
    }
}

#[inline]
fn age_ok(last: u32, now: u32, timeout_s: u32) -> bool {
    age(last, now) <= timeout_s
}

impl AffinityTable {
    /// A table for at least `entries` clients (rounded up to a power of two
    /// buckets of [`WAYS`]); all memory is allocated here.
    pub fn new(entries: usize) -> AffinityTable {
        let buckets = entries.div_ceil(WAYS).max(1).next_power_of_two();
        AffinityTable {
            buckets: (0..buckets).map(|_| Bucket::default()).collect(),
        }
    }

    /// How many clients it can remember.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// Clients currently remembered (expired ones included): a scan, for
    /// the admin endpoint, not the packet path.
    pub fn len(&self) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| &b.slots)
            .filter(|s| !matches!(s.key.load(Ordering::Relaxed), 0 | BUSY))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key of `client` for the Service `svc`.
    #[inline]
    pub fn key(svc: &ServiceKey, client: &Addr) -> ClientKey {
        let mut k = [0u8; 35];
        k[..16].copy_from_slice(&svc.vip.0);
        k[16..18].copy_from_slice(&svc.port.to_be_bytes());
        k[18] = svc.proto as u8;
        k[19..].copy_from_slice(&client.0);
        ClientKey(xxh3_64_with_seed(&k, SEED).clamp(1, BUSY - 1))
    }

    #[inline]
    fn bucket(&self, key: ClientKey) -> &Bucket {
        // High bits: the low ones are what a collision in a small table
        // would share with the fingerprint compare anyway.
        let i = (key.0 >> 32) as usize & (self.buckets.len() - 1);
        &self.buckets[i]
    }

    /// Starts loading `key`'s bucket (one cache line).
    #[inline]
    pub fn prefetch(&self, key: ClientKey) {
        crate::prefetch::read(self.bucket(key));
    }

    /// The backend `key`'s client was last sent to, if seen within
    /// `timeout_s` seconds of `now`.
    #[inline]
    pub fn lookup(&self, key: ClientKey, now: u32, timeout_s: u32) -> Found {
        for s in &self.bucket(key).slots {
            if s.key.load(Ordering::Acquire) != key.0 {
                continue;
            }
            let v = s.value.load(Ordering::Acquire);
            if s.key.load(Ordering::Acquire) != key.0 {
                // Rewritten while read: the value may be another client's.
                return Found::Unknown;
            }
            let (backend, last) = ((v >> 32) as u32, v as u32);
            return if age_ok(last, now, timeout_s) {
                Found::Backend(backend)
            } else {
                Found::Expired
            };
        }
        Found::Unknown
    }

    /// Records that `key`'s client was sent to `backend` (a
    /// [`backend_fingerprint`]) at `now`. A client not yet in the table
    /// takes a free slot of its bucket, else one whose client was last seen
    /// more than `timeout_s` ago, else the least recently seen one
    /// ([`Stored::Evicted`]).
    #[inline]
    pub fn remember(&self, key: ClientKey, backend: u32, now: u32, timeout_s: u32) -> Stored {
        let value = (u64::from(backend) << 32) | u64::from(now);
        let slots = &self.bucket(key).slots;
        if let Some(s) = slots
            .iter()
            .find(|s| s.key.load(Ordering::Acquire) == key.0)
        {
            return write(s, key.0, key.0, value, Stored::Fresh);
        }
        let mut victim = &slots[0];
        let mut oldest_age = 0u32;
        let mut stored = Stored::Evicted;
        for s in slots {
            let k = s.key.load(Ordering::Acquire);
            if k == 0 {
                victim = s;
                stored = Stored::Fresh;
                break;
            }
            let last = s.value.load(Ordering::Acquire) as u32;
            if !age_ok(last, now, timeout_s) {
                victim = s;
                stored = Stored::Fresh;
                break;
            }
            let a = age(last, now);
            if a >= oldest_age {
                oldest_age = a;
                victim = s;
            }
        }
        let seen = victim.key.load(Ordering::Acquire);
        write(victim, seen, key.0, value, stored)
    }
}

/// Replaces `slot`'s key `seen` (and its value) with `key` and `value`,
/// unless another writer got there first (then [`Stored::Busy`]).
#[inline]
fn write(slot: &Slot, seen: u64, key: u64, value: u64, stored: Stored) -> Stored {
    if seen == BUSY
        || slot
            .key
            .compare_exchange(seen, BUSY, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return Stored::Busy;
    }
    slot.value.store(value, Ordering::Release);
    slot.key.store(key, Ordering::Release);
    stored
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Proto;

    fn svc(port: u16) -> ServiceKey {
        ServiceKey {
            vip: Addr::from_v4([198, 19, 0, 1]),
            port,
            proto: Proto::Tcp,
        }
    }

    fn client(n: u32) -> Addr {
        let b = n.to_be_bytes();
        Addr::from_v4([198, 18, b[2], b[3]])
    }

    #[test]
    fn remembers_within_timeout_and_expires_after() {
        let t = AffinityTable::new(64);
        let k = AffinityTable::key(&svc(80), &client(1));
        assert_eq!(t.lookup(k, 100, 10), Found::Unknown);
        assert_eq!(t.remember(k, 7, 100, 10), Stored::Fresh);
        assert_eq!(t.lookup(k, 110, 10), Found::Backend(7));
        assert_eq!(t.lookup(k, 111, 10), Found::Expired);
        // A new connection refreshes the client's last-seen time.
        t.remember(k, 7, 108, 10);
        assert_eq!(t.lookup(k, 118, 10), Found::Backend(7));
        assert_eq!(t.len(), 1);
    }

    /// Workers' clocks start apart: a record one second "ahead" of the
    /// reader is fresh, not four billion seconds old. (A lab flaked on
    /// this: a client re-placed by the hash after an endpoint change.)
    #[test]
    fn a_record_from_a_worker_whose_clock_is_ahead_is_fresh() {
        let t = AffinityTable::new(64);
        let k = AffinityTable::key(&svc(80), &client(1));
        t.remember(k, 7, 100, 10);
        assert_eq!(t.lookup(k, 99, 10), Found::Backend(7));
        assert_eq!(t.remember(k, 7, 99, 10), Stored::Fresh);
    }

    #[test]
    fn keys_differ_by_service_and_client() {
        let a = AffinityTable::key(&svc(80), &client(1));
        assert_ne!(a, AffinityTable::key(&svc(81), &client(1)));
        assert_ne!(a, AffinityTable::key(&svc(80), &client(2)));
        let t = AffinityTable::new(64);
        t.remember(a, 9, 0, 100);
        assert_eq!(
            t.lookup(AffinityTable::key(&svc(81), &client(1)), 0, 100),
            Found::Unknown
        );
    }

    /// A full table displaces the least recently seen live client of the
    /// bucket, and says so; expired ones go first, without counting.
    #[test]
    fn bounded_and_evicts_the_least_recently_seen() {
        let t = AffinityTable::new(1);
        assert_eq!(t.capacity(), WAYS);
        let keys: Vec<ClientKey> = (0..WAYS as u32 + 1)
            .map(|i| AffinityTable::key(&svc(80), &client(i)))
            .collect();
        for (i, k) in keys[..WAYS].iter().enumerate() {
            assert_eq!(t.remember(*k, 1, 10 + i as u32, 100), Stored::Fresh);
        }
        assert_eq!(t.remember(keys[WAYS], 2, 20, 100), Stored::Evicted);
        assert_eq!(t.lookup(keys[0], 20, 100), Found::Unknown);
        assert_eq!(t.lookup(keys[1], 20, 100), Found::Backend(1));
        assert_eq!(t.len(), WAYS);
        // Much later every client has expired: room without eviction.
        let late = AffinityTable::key(&svc(80), &client(99));
        assert_eq!(t.remember(late, 3, 1_000, 100), Stored::Fresh);
    }

    #[test]
    fn backend_fingerprints_are_nonzero_and_distinct() {
        let a = backend_fingerprint(&Addr::from_v4([198, 18, 1, 1]), 8080);
        let b = backend_fingerprint(&Addr::from_v4([198, 18, 1, 2]), 8080);
        let c = backend_fingerprint(&Addr::from_v4([198, 18, 1, 1]), 8081);
        assert!(a != 0 && a != b && a != c);
    }

    /// Workers sharing the table: concurrent writers of many clients never
    /// make a reader see a backend that no writer stored for that client.
    #[test]
    fn concurrent_writers_never_cross_clients() {
        let t = std::sync::Arc::new(AffinityTable::new(256));
        let handles: Vec<_> = (0..2u32)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for round in 0..20_000u32 {
                        let c = (round * 7 + w) % 2_000;
                        let k = AffinityTable::key(&svc(80), &client(c));
                        // Each client's backend is a function of the client.
                        let want = c + 1;
                        if let Found::Backend(b) = t.lookup(k, round, 1_000_000) {
                            assert_eq!(b, want, "client {c} read another client's value");
                        }
                        t.remember(k, want, round, 1_000_000);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
