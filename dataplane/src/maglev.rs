//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), with weights.
//!
//! Control builds one ring per service; the dataplane only indexes it
//! (`pick`: one modulo, one load). Every gateway given the same backend set
//! and seed builds the same ring, whatever order the set arrives in, because
//! backends are ranked by their identity `(addr, port)` and their
//! permutations come from the stable hashes in `crate::hash`.
//!
//! Population: the paper's loop, in which backends take turns claiming the
//! next free slot of their own permutation of the slots.
//!
//! Permutations: the paper walks slot `offset + j * skip (mod M)`. Two
//! backends with the same `skip` (one pair in M - 1) then walk the same cycle
//! of slots, one a fixed distance behind the other, and split it between them
//! by who gets there first; removing any third backend changes who is ahead
//! and hands large runs of that cycle from one to the other. Measured with
//! the paper's walk: up to 20% of M changes owner when one of 3 backends
//! leaves (M = 16381), against 0.4% otherwise. So here the walk position
//! `offset + j * skip` is first sent through a fixed shuffle of 0..M (one
//! seeded permutation for every backend, see `slot_shuffle`) and then rotated
//! by a per-backend `shift`: backends with equal skips now visit unrelated
//! slots, while each walk stays a permutation (so the fill terminates and the
//! balance argument below is unchanged). Cost: one extra load per probe, ~15%
//! on the build. `dataplane/tests/maglev_measure.rs` measures both walks.
//!
//! Weights: the paper's population loop lets every backend claim one slot per
//! round. Here each backend instead earns `weight` credit per round and claims
//! a slot each time its credit reaches the largest weight `w_max`, paying that
//! much back. The heaviest backends claim every round, a backend of half that
//! weight every other round, and so on. Credit starts at `w_max - weight`, so
//! every backend claims in round 1: a light backend (a canary of weight 1
//! beside weights of 1000) still gets a slot instead of starving in a small
//! table. After `r` rounds backend `i` holds `1 + floor((r - 1) * w_i / w_max)`
//! slots, so in the full table its count is `M * w_i / W` give or take
//! `N * w_i / W + 1` slots (`W` = sum of weights): under 1% of M when
//! M >= 100 x N. With equal weights this is exactly the paper's loop.
//!
//! Table size: M >= 100 x N bounds the imbalance, but not the disruption:
//! with N = 10 and M = 1021 one backend leaving moves 2.5% of M besides its
//! own slots on average (the loop's inherent reshuffle, whatever the
//! permutations), and smaller tables scatter more. `table_size` therefore
//! gives each backend 400 slots and every ring at least 4093, which keeps
//! that extra movement under 2% of M for every N up to the maximum size
//! (measured worst 1.9%, `maglev_measure`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use crate::addr::Addr;
use crate::hash::{backend_hashes, shuffle_hash};
use crate::service::BackendSpec;

/// Katran's default ring size: prime, and >= 100 x 655 backends.
pub const DEFAULT_MAX_TABLE_SIZE: u32 = 65537;

/// Table sizes to pick from. Each is the largest prime below a power of two
/// (65537, the Fermat prime just above 2^16, stands in for 65521 as the
/// well-known default), so sizes roughly double: the table's memory
/// (2 bytes a slot) stays within a power-of-two budget, and growing the
/// backend count moves a service to a new size rarely. A fixed list, rather
/// than "the next prime above 400 x N", keeps rings from changing size (and
/// reshuffling every flow) each time one backend comes or goes, and lets
/// every gateway agree on M without coordination.
pub const TABLE_PRIMES: &[u32] = &[
    251, 509, 1_021, 2_039, 4_093, 8_191, 16_381, 32_749, 65_537, 131_071, 262_139, 524_287,
    1_048_573,
];

/// Slots per backend the table size aims for. 100 already bounds the
/// imbalance at 1% (the paper's figure); 400 is what keeps a backend's
/// departure from moving more than 2% of M besides its own slots (see the
/// module docs).
pub const SLOTS_PER_BACKEND: u64 = 400;

/// The smallest ring `table_size` picks when the maximum allows: below it,
/// a departure moves over 2% of M even for 3 to 10 backends (4093 slots:
/// 8 KiB a service).
pub const MIN_TABLE_SIZE: u32 = 4_093;

/// Backends beyond this many entries of the `build` slice are ignored: ring
/// slots are `u16` indices, which keeps a 65537-slot ring at 128 KiB.
pub const MAX_BACKENDS: usize = u16::MAX as usize + 1;

/// When the heaviest weight exceeds the average by more than this, the
/// round-based fill would spend most rounds skipping light backends; the
/// fill then switches to a heap with the same claim order (see `fill_heap`).
const ROUND_FILL_MAX_SKEW: u64 = 16;

/// Smallest prime M in TABLE_PRIMES with M >= 400 * n_backends and
/// M >= MIN_TABLE_SIZE, but never above `max` (then the largest prime <= max
/// in the list). A `max` below the smallest listed prime gives the smallest
/// prime: smaller tables cannot balance even a few backends.
pub fn table_size(n_backends: usize, max: u32) -> u32 {
    let want = (n_backends as u64)
        .saturating_mul(SLOTS_PER_BACKEND)
        .max(u64::from(MIN_TABLE_SIZE));
    let smallest = TABLE_PRIMES[0];
    let capped = TABLE_PRIMES
        .iter()
        .copied()
        .rfind(|&p| p <= max)
        .unwrap_or(smallest);
    TABLE_PRIMES
        .iter()
        .copied()
        .find(|&p| u64::from(p) >= want)
        .map_or(capped, |p| p.min(capped))
}

/// The lookup ring: `slots[h % M]` is an index into the `backends` slice
/// given to `build`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Maglev {
    slots: Vec<u16>,
}

/// One backend while the ring fills, in rank (identity) order.
struct Filler {
    /// Index into the caller's slice.
    owner: u16,
    weight: u64,
    credit: u64,
    /// Next position of this backend's walk: offset + j * skip (mod M).
    next: u32,
    skip: u32,
    /// Rotation applied after the slot shuffle.
    shift: u32,
}

/// The ring under construction: slots plus a bitset of the taken ones
/// (8 KiB for 65537 slots, so the probing stays in L1).
struct Ring {
    slots: Vec<u16>,
    taken: Vec<u64>,
    filled: u32,
    shuffle: Arc<[u32]>,
}

impl Ring {
    fn new(m: u32, seed: u64) -> Ring {
        Ring {
            slots: vec![0; m as usize],
            taken: vec![0; (m as usize).div_ceil(64)],
            filled: 0,
            shuffle: slot_shuffle(m, seed),
        }
    }

    fn size(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Gives `f` the next free slot of its permutation; true once the ring
    /// is full. Terminates because `skip` is coprime with M and the shuffle
    /// and shift are bijections, so the walk visits every slot, and the
    /// caller stops at the first full ring.
    #[inline]
    fn claim(&mut self, f: &mut Filler) -> bool {
        let m = self.size();
        // Locals, so the probe loop keeps everything in registers.
        let (shuffle, taken) = (&*self.shuffle, &mut self.taken[..]);
        let (mut next, skip, shift) = (f.next, f.skip, f.shift);
        let c = loop {
            let mut c = shuffle[next as usize] + shift;
            if c >= m {
                c -= m;
            }
            next += skip;
            if next >= m {
                next -= m;
            }
            let (word, bit) = (c as usize / 64, 1u64 << (c % 64));
            if taken[word] & bit == 0 {
                taken[word] |= bit;
                break c;
            }
        };
        f.next = next;
        self.slots[c as usize] = f.owner;
        self.filled += 1;
        self.filled == m
    }
}

/// Shuffles kept for reuse: one per (M, seed) in use, and a cluster uses a
/// handful of table sizes. Bounded so that odd sizes passed to `build` by
/// tests or tools cannot grow it without limit.
static SHUFFLES: Mutex<Vec<CachedShuffle>> = Mutex::new(Vec::new());
/// (M, seed, shuffle).
type CachedShuffle = (u32, u64, Arc<[u32]>);
const SHUFFLES_KEPT: usize = 16;

/// The slot shuffle of rings of `m` slots under `seed`: a permutation of
/// 0..m, Fisher-Yates driven by `shuffle_hash` so that every gateway derives
/// the same one. Built once (M hashes: ~0.1 ms at 65537) and cached; the
/// lock is taken once per ring build, never per packet.
fn slot_shuffle(m: u32, seed: u64) -> Arc<[u32]> {
    let mut cache = SHUFFLES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, _, s)) = cache.iter().find(|(cm, cs, _)| (*cm, *cs) == (m, seed)) {
        return Arc::clone(s);
    }
    let mut perm: Vec<u32> = (0..m).collect();
    for i in (1..m).rev() {
        // Multiply-shift maps the hash onto 0..=i without a division.
        let j = ((u128::from(shuffle_hash(m, i, seed)) * u128::from(i + 1)) >> 64) as usize;
        perm.swap(i as usize, j);
    }
    let perm: Arc<[u32]> = perm.into();
    if cache.len() >= SHUFFLES_KEPT {
        cache.remove(0);
    }
    cache.push((m, seed, Arc::clone(&perm)));
    perm
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Maglev {
    /// Build for `backends` (their order does not matter for the result:
    /// backends are ranked by (addr, port), so two gateways given the same
    /// set in different order build the same ring, but the returned indices
    /// refer to positions in the slice as given). Weights: a backend with
    /// weight w gets ~w/sum(w) of the slots; weight 0 gets none. `state` is
    /// not looked at: pass `ServiceSpec::active_backends()`.
    ///
    /// Entries with the same (addr, port) are one backend (EndpointSlices
    /// may list an endpoint twice while it moves between slices): it takes
    /// the largest of their weights and the first of their indices.
    ///
    /// `m` should come from `table_size`; any `m` works (a non-prime one
    /// just spreads permutations less evenly), and one above the largest
    /// listed prime is clamped to it. Empty input, all-zero weights or
    /// `m == 0` -> empty table (pick returns None).
    pub fn build(backends: &[BackendSpec], m: u32, seed: u64) -> Maglev {
        let m = m.min(TABLE_PRIMES[TABLE_PRIMES.len() - 1]);
        let mut fillers = rank(backends, m, seed);
        if fillers.is_empty() || m == 0 {
            return Maglev::default();
        }
        let mut ring = Ring::new(m, seed);
        let w_max = fillers.iter().map(|f| f.weight).max().unwrap_or(1);
        let w_sum: u64 = fillers.iter().map(|f| f.weight).sum();
        if (fillers.len() as u64) * w_max > ROUND_FILL_MAX_SKEW * w_sum {
            fill_heap(&mut ring, &mut fillers, w_max);
        } else {
            fill_rounds(&mut ring, &mut fillers, w_max);
        }
        Maglev { slots: ring.slots }
    }

    /// Number of slots M (0 for an empty table).
    pub fn size(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Index into the build slice for a 64-bit flow hash. Per-packet: one
    /// modulo, one load.
    #[inline]
    pub fn pick(&self, hash: u64) -> Option<usize> {
        let m = self.slots.len() as u64;
        if m == 0 {
            return None;
        }
        self.slots.get((hash % m) as usize).map(|&i| usize::from(i))
    }

    /// The ring itself, for tests and the admin endpoint.
    pub fn slots(&self) -> &[u16] {
        &self.slots
    }
}

/// The live backends in identity order, merged by (addr, port), each with
/// its permutation start and step for a ring of `m` slots.
fn rank(backends: &[BackendSpec], m: u32, seed: u64) -> Vec<Filler> {
    let mut live: Vec<(Addr, u16, u16, u32)> = backends
        .iter()
        .take(MAX_BACKENDS)
        .enumerate()
        .filter(|(_, b)| b.weight > 0)
        .map(|(i, b)| (b.addr, b.port, i as u16, b.weight))
        .collect();
    live.sort_unstable();
    live.dedup_by(|later, first| {
        let same = (later.0, later.1) == (first.0, first.1);
        if same {
            first.3 = first.3.max(later.3);
        }
        same
    });
    live.into_iter()
        .map(|(addr, port, owner, weight)| {
            let h = backend_hashes(&addr, port, seed);
            let (offset, skip) = (h.offset, h.skip);
            let shift = (h.shift % u64::from(m.max(1))) as u32;
            let (next, skip) = if m <= 1 {
                (0, 1)
            } else {
                let mut step = (skip % u64::from(m - 1)) as u32 + 1;
                // Always true for a prime M; for any other M it keeps the
                // walk a full permutation, so `Ring::claim` terminates.
                while gcd(step, m) != 1 {
                    step = step % (m - 1) + 1;
                }
                ((offset % u64::from(m)) as u32, step)
            };
            Filler {
                owner,
                weight: u64::from(weight),
                credit: 0,
                next,
                skip,
                shift,
            }
        })
        .collect()
}

/// The credit loop described in the module docs: O(rounds x N).
fn fill_rounds(ring: &mut Ring, fillers: &mut [Filler], w_max: u64) {
    for f in fillers.iter_mut() {
        f.credit = w_max - f.weight;
    }
    loop {
        for f in fillers.iter_mut() {
            f.credit += f.weight;
            if f.credit >= w_max {
                f.credit -= w_max;
                if ring.claim(f) {
                    return;
                }
            }
        }
    }
}

/// The same claim order as `fill_rounds`, in O(M log N) whatever the weights:
/// backend i's claim number k (from 0) falls in round
/// 1 + ceil(k * w_max / w_i), and within a round backends go in rank order,
/// so claims are popped by (round, rank).
fn fill_heap(ring: &mut Ring, fillers: &mut [Filler], w_max: u64) {
    // `credit` counts claims made so far; k * w_max stays below 2^53
    // (k <= 2^20 slots, weights < 2^32).
    let round_of = |k: u64, weight: u64| 1 + (k * w_max).div_ceil(weight);
    for f in fillers.iter_mut() {
        f.credit = 0;
    }
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> =
        (0..fillers.len()).map(|r| Reverse((1, r))).collect();
    while let Some(mut top) = heap.peek_mut() {
        let r = top.0 .1;
        let f = &mut fillers[r];
        if ring.claim(f) {
            return;
        }
        f.credit += 1;
        top.0 .0 = round_of(f.credit, f.weight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::DEFAULT_SEED;
    use crate::service::BackendState;

    fn be(i: u32, weight: u32) -> BackendSpec {
        let [_, _, hi, lo] = i.to_be_bytes();
        BackendSpec {
            addr: Addr::from_v4([198, 18, hi, lo]),
            port: 8080,
            weight,
            state: BackendState::Ready,
        }
    }

    fn counts(ring: &Maglev, n: usize) -> Vec<u32> {
        let mut c = vec![0u32; n];
        for &s in ring.slots() {
            c[usize::from(s)] += 1;
        }
        c
    }

    fn is_prime(n: u32) -> bool {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    }

    /// Builds with a chosen fill strategy, bypassing the skew switch.
    fn build_with(backends: &[BackendSpec], m: u32, heap: bool) -> Maglev {
        let mut fillers = rank(backends, m, DEFAULT_SEED);
        let w_max = fillers.iter().map(|f| f.weight).max().unwrap();
        let mut ring = Ring::new(m, DEFAULT_SEED);
        if heap {
            fill_heap(&mut ring, &mut fillers, w_max);
        } else {
            fill_rounds(&mut ring, &mut fillers, w_max);
        }
        Maglev { slots: ring.slots }
    }

    #[test]
    fn table_primes_are_ascending_primes_that_roughly_double() {
        assert!(TABLE_PRIMES.iter().all(|&p| is_prime(p)));
        assert!(TABLE_PRIMES.contains(&DEFAULT_MAX_TABLE_SIZE));
        assert!(*TABLE_PRIMES.last().unwrap() >= 1_048_573);
        for w in TABLE_PRIMES.windows(2) {
            assert!(w[0] < w[1]);
            // 32749 -> 65537 is the only step not under exactly 2x.
            assert!(w[1] <= 2 * w[0] + 40, "{w:?}");
        }
    }

    #[test]
    fn table_size_edges() {
        let max = DEFAULT_MAX_TABLE_SIZE;
        // At least MIN_TABLE_SIZE, then 400 slots a backend.
        for (n, m) in [
            (0, 4_093),
            (1, 4_093),
            (10, 4_093),
            (11, 8_191),
            (20, 8_191),
            (21, 16_381),
            (40, 16_381),
            (41, 32_749),
            (81, 32_749),
            (82, 65_537),
            (163, 65_537),
        ] {
            assert_eq!(table_size(n, max), m, "n={n}");
        }
        // More backends than 400 a slot fits under max: capped at max.
        assert_eq!(table_size(164, max), 65_537);
        assert_eq!(table_size(1_000_000, max), 65_537);
        assert_eq!(table_size(usize::MAX, max), 65_537);
        assert_eq!(table_size(164, u32::MAX), 131_071);
        assert_eq!(table_size(usize::MAX, u32::MAX), 1_048_573);
        // max not in the list: the largest listed prime below it.
        assert_eq!(table_size(1_000, 100_000), 65_537);
        assert_eq!(table_size(5, 1_000), 509);
        assert_eq!(table_size(20, 1_000), 509);
        // max below every listed prime: the smallest one.
        assert_eq!(table_size(10, 100), 251);
        assert_eq!(table_size(0, 0), 251);
    }

    #[test]
    fn slot_shuffle_is_a_cached_seeded_permutation() {
        // Golden head and tail computed independently (python-xxhash 4.1.0,
        // Fisher-Yates over `shuffle_hash` as documented): every gateway
        // must derive the same shuffle.
        let s = slot_shuffle(251, DEFAULT_SEED);
        assert_eq!(&s[..8], &[213, 99, 166, 85, 66, 0, 155, 17]);
        assert_eq!(&s[247..], &[55, 15, 13, 165]);
        for m in [1u32, 2, 251, 4_093] {
            let mut seen = slot_shuffle(m, 7).to_vec();
            seen.sort_unstable();
            assert!(seen.iter().copied().eq(0..m), "m={m}");
        }
        assert!(Arc::ptr_eq(&s, &slot_shuffle(251, DEFAULT_SEED)));
        assert_ne!(&s[..], &slot_shuffle(251, DEFAULT_SEED ^ 1)[..]);
    }

    #[test]
    fn empty_inputs_give_empty_table() {
        let empty = Maglev::build(&[], 251, DEFAULT_SEED);
        assert_eq!(empty.size(), 0);
        assert_eq!(empty.pick(12345), None);
        let zero = Maglev::build(&[be(1, 0), be(2, 0)], 251, DEFAULT_SEED);
        assert_eq!(zero.pick(0), None);
        let no_slots = Maglev::build(&[be(1, 1)], 0, DEFAULT_SEED);
        assert_eq!(no_slots.pick(7), None);
    }

    #[test]
    fn equal_weights_split_within_one_slot() {
        for n in [1usize, 2, 7, 100, 655] {
            let bs: Vec<_> = (0..n as u32).map(|i| be(i, 1)).collect();
            let m = table_size(n, DEFAULT_MAX_TABLE_SIZE);
            let ring = Maglev::build(&bs, m, DEFAULT_SEED);
            assert_eq!(ring.size(), m);
            let c = counts(&ring, n);
            let (lo, hi) = (c.iter().min().unwrap(), c.iter().max().unwrap());
            assert!(hi - lo <= 1, "n={n}: {lo}..{hi}");
        }
    }

    #[test]
    fn weights_give_proportional_shares_and_zero_gets_nothing() {
        let bs = [be(1, 3), be(2, 0), be(3, 1), be(4, 2)];
        let ring = Maglev::build(&bs, 65_537, DEFAULT_SEED);
        let c = counts(&ring, bs.len());
        assert_eq!(c[1], 0);
        let m = 65_537.0;
        for (i, w) in [(0, 3.0), (2, 1.0), (3, 2.0)] {
            let want = m * w / 6.0;
            assert!(
                (f64::from(c[i]) - want).abs() <= 2.0,
                "{i}: {} vs {want}",
                c[i]
            );
        }
    }

    #[test]
    fn order_does_not_matter_but_seed_does() {
        let bs: Vec<_> = (0..50).map(|i| be(i, 1 + i % 3)).collect();
        let mut rev = bs.clone();
        rev.reverse();
        let a = Maglev::build(&bs, 4_093, DEFAULT_SEED);
        let b = Maglev::build(&rev, 4_093, DEFAULT_SEED);
        let ident = |ring: &Maglev, list: &[BackendSpec]| -> Vec<(Addr, u16)> {
            ring.slots()
                .iter()
                .map(|&s| (list[usize::from(s)].addr, list[usize::from(s)].port))
                .collect()
        };
        assert_eq!(ident(&a, &bs), ident(&b, &rev));
        let c = Maglev::build(&bs, 4_093, DEFAULT_SEED ^ 1);
        assert_ne!(a, c);
    }

    #[test]
    fn duplicates_are_one_backend_with_first_index() {
        let mut dup = be(1, 1);
        dup.weight = 2;
        let bs = [be(1, 1), be(2, 2), dup];
        let ring = Maglev::build(&bs, 4_093, DEFAULT_SEED);
        let c = counts(&ring, bs.len());
        assert_eq!(c[2], 0);
        // Merged weight is 2 (the max), equal to backend 2.
        assert!(c[0].abs_diff(c[1]) <= 1, "{c:?}");
        let single = Maglev::build(&[be(1, 2), be(2, 2)], 4_093, DEFAULT_SEED);
        assert_eq!(single.slots(), ring.slots());
    }

    #[test]
    fn heap_fill_matches_round_fill() {
        let bs: Vec<_> = (0..300).map(|i| be(i, 1 + (i * 7919) % 13)).collect();
        for m in [251, 4_093, 65_537] {
            assert_eq!(build_with(&bs, m, true), build_with(&bs, m, false), "m={m}");
        }
    }

    #[test]
    fn extreme_skew_stays_within_the_bound_and_light_ones_get_a_slot() {
        // Skew 1e6 / avg ~ 2000: built by the heap fill.
        let mut bs: Vec<_> = (0..2_000).map(|i| be(i, 1)).collect();
        bs.push(be(5_000, 1_000_000));
        let m = 262_139u32;
        let ring = Maglev::build(&bs, m, DEFAULT_SEED);
        let c = counts(&ring, bs.len());
        let (n, w_sum) = (bs.len() as f64, 2_000.0 + 1_000_000.0);
        let heavy_want = f64::from(m) * 1_000_000.0 / w_sum;
        let err = (f64::from(c[2_000]) - heavy_want).abs();
        assert!(err <= n * 1_000_000.0 / w_sum + 1.0, "{err}");
        assert!(err <= 0.01 * f64::from(m), "{err}");
        assert!(c[..2_000].iter().all(|&x| x == 1));
    }

    #[test]
    fn any_table_size_fills_every_slot() {
        let bs: Vec<_> = (0..10).map(|i| be(i, 1)).collect();
        // 1000 and 1024 are not prime: skips are forced coprime.
        for m in [1, 2, 3, 1_000, 1_024] {
            let ring = Maglev::build(&bs, m, DEFAULT_SEED);
            assert_eq!(ring.size(), m);
            let c = counts(&ring, bs.len());
            let (lo, hi) = (c.iter().min().unwrap(), c.iter().max().unwrap());
            assert!(m < 10 || hi - lo <= 1, "m={m} {c:?}");
            assert_eq!(c.iter().sum::<u32>(), m);
        }
        assert_eq!(Maglev::build(&bs, u32::MAX, 1).size(), 1_048_573);
    }

    #[test]
    fn more_backends_than_slots() {
        let bs: Vec<_> = (0..1_000).map(|i| be(i, 1)).collect();
        let ring = Maglev::build(&bs, 251, DEFAULT_SEED);
        let c = counts(&ring, bs.len());
        assert_eq!(c.iter().filter(|&&x| x == 1).count(), 251);
    }

    #[test]
    fn pick_reads_the_slot_of_hash_mod_m() {
        let bs: Vec<_> = (0..5).map(|i| be(i, 1)).collect();
        let ring = Maglev::build(&bs, 251, DEFAULT_SEED);
        for h in [0u64, 1, 250, 251, 252, u64::MAX] {
            let want = usize::from(ring.slots()[(h % 251) as usize]);
            assert_eq!(ring.pick(h), Some(want));
        }
    }
}
