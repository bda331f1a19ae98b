//! Measurements quoted in the README (not pass/fail): how many slots of the
//! surviving backends change owner when one of N equal backends leaves, for
//! the ring vipgate builds and for the paper's own permutations at the same
//! sizes, and the rebuild cost of one service's ring.
//! `cargo test --release -p vipgate-dataplane --test maglev_measure -- --ignored --nocapture`

use std::time::Instant;

use dataplane::addr::Addr;
use dataplane::hash::backend_hashes;
use dataplane::maglev::{table_size, Maglev, DEFAULT_MAX_TABLE_SIZE};
use dataplane::service::{BackendSpec, BackendState};

/// `n` backends; `salt` varies the identities between trials.
fn backends(n: usize, salt: u32) -> Vec<BackendSpec> {
    (0..n as u32)
        .map(|i| {
            let k = salt * 1_000 + i;
            let [_, b, hi, lo] = k.to_be_bytes();
            BackendSpec {
                addr: Addr::from_v4([198, 18 + (b & 1), hi, lo]),
                port: 8080 + u16::from(b >> 1),
                weight: 1,
                state: BackendState::Ready,
            }
        })
        .collect()
}

/// The paper's population loop with its own permutations (slot
/// `offset + j * skip`), equal weights, same hashes: the reference the
/// README compares against. Slot -> index into `bs`.
fn paper_ring(bs: &[BackendSpec], m: u32, seed: u64) -> Vec<u16> {
    let mut order: Vec<usize> = (0..bs.len()).collect();
    order.sort_by_key(|&i| (bs[i].addr, bs[i].port));
    let mut walk: Vec<(u32, u32)> = order
        .iter()
        .map(|&i| {
            let h = backend_hashes(&bs[i].addr, bs[i].port, seed);
            let skip = (h.skip % u64::from(m - 1)) as u32 + 1;
            ((h.offset % u64::from(m)) as u32, skip)
        })
        .collect();
    let mut slots = vec![u16::MAX; m as usize];
    let mut filled = 0;
    loop {
        for (k, (next, skip)) in walk.iter_mut().enumerate() {
            while slots[*next as usize] != u16::MAX {
                *next = (*next + *skip) % m;
            }
            slots[*next as usize] = order[k] as u16;
            filled += 1;
            if filled == m {
                return slots;
            }
        }
    }
}

/// Share of M whose owner changes although it was not the removed backend's.
fn extra_moved(full: &[u16], less: &[u16], removed: usize) -> f64 {
    let moved = full
        .iter()
        .zip(less)
        .filter(|&(&a, &b)| {
            let a = a as usize;
            a != removed && (if a > removed { a - 1 } else { a }) != b as usize
        })
        .count();
    moved as f64 / full.len() as f64
}

/// (mean, 99.9th percentile, worst) of the extra movement over `trials`
/// backend sets x up to 8 removals each, in % of M.
fn disruption(
    n: usize,
    m: u32,
    trials: u32,
    build: &dyn Fn(&[BackendSpec], u32) -> Vec<u16>,
) -> (f64, f64, f64) {
    let mut all = Vec::new();
    for t in 0..trials {
        let bs = backends(n, t);
        let full = build(&bs, m);
        for r in (0..n).step_by((n / 8).max(1)) {
            let mut less = bs.clone();
            less.remove(r);
            all.push(extra_moved(&full, &build(&less, m), r) * 100.0);
        }
    }
    all.sort_by(f64::total_cmp);
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    (mean, all[all.len() * 999 / 1000], all[all.len() - 1])
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn disruption_and_rebuild_cost() {
    let seed = 7;
    let ours = |bs: &[BackendSpec], m: u32| Maglev::build(bs, m, seed).slots().to_vec();
    let paper = |bs: &[BackendSpec], m: u32| paper_ring(bs, m, seed);
    eprintln!("slots of surviving backends that change owner when one of N leaves, % of M (mean / p99.9 / worst):");
    eprintln!("     N       M   sets   vipgate                    paper's permutations");
    // The largest N of each table size, where M / N is smallest, plus small N.
    for n in [3usize, 5, 10, 20, 40, 81, 163, 327, 655] {
        let m = table_size(n, DEFAULT_MAX_TABLE_SIZE);
        let trials = (12_000_000 / (m as usize * n.min(8))).max(4) as u32;
        let (a0, a1, a2) = disruption(n, m, trials, &ours);
        let (b0, b1, b2) = disruption(n, m, trials, &paper);
        eprintln!(
            "  {n:>4} {m:>7} {trials:>6}   {a0:.2} / {a1:.2} / {a2:.2}         {b0:.2} / {b1:.2} / {b2:.2}"
        );
    }
    eprintln!("the same at M ~ 100 x N (what M >= 100 x N alone would give):");
    for (n, m) in [(10usize, 1_021u32), (40, 4_093), (163, 16_381)] {
        let trials = (4_000_000 / (m as usize * 8)).max(4) as u32;
        let (a0, a1, a2) = disruption(n, m, trials, &ours);
        eprintln!("  {n:>4} {m:>7} {trials:>6}   {a0:.2} / {a1:.2} / {a2:.2}");
    }
    eprintln!("rebuild of one service's ring (M picked by table_size; the seed's slot shuffle is cached):");
    for n in [3usize, 10, 100, 1000] {
        let m = table_size(n, DEFAULT_MAX_TABLE_SIZE);
        let sets: Vec<_> = (0..100).map(|salt| backends(n, salt)).collect();
        Maglev::build(&sets[0], m, seed);
        let t = Instant::now();
        for bs in &sets {
            std::hint::black_box(Maglev::build(bs, m, seed));
        }
        eprintln!(
            "  N={n:>4} M={m:>6}: {:?} per build",
            t.elapsed() / sets.len() as u32
        );
    }
}
