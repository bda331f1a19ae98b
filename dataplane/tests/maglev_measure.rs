//! Measurements quoted in the README (not pass/fail): Maglev disruption
//! when one of N equal backends leaves, and the rebuild cost of one
//! service's ring at the table sizes the dataplane picks.
//! `cargo test --release -p vipgate-dataplane --test maglev_measure -- --ignored --nocapture`

use std::time::Instant;

use dataplane::addr::Addr;
use dataplane::maglev::{table_size, Maglev, DEFAULT_MAX_TABLE_SIZE};
use dataplane::service::{BackendSpec, BackendState};

fn backends(n: usize) -> Vec<BackendSpec> {
    (0..n)
        .map(|i| BackendSpec {
            addr: Addr::from_v4([198, 18, (i / 250) as u8, (i % 250) as u8]),
            port: 8080,
            weight: 1,
            state: BackendState::Ready,
        })
        .collect()
}

/// Share of M whose owner changes although it was not the removed backend's.
fn extra_moved(full: &Maglev, less: &Maglev, removed: usize) -> f64 {
    let moved = full
        .slots()
        .iter()
        .zip(less.slots())
        .filter(|&(&a, &b)| {
            let a = a as usize;
            a != removed && (if a > removed { a - 1 } else { a }) != b as usize
        })
        .count();
    moved as f64 / full.size() as f64
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn disruption_and_rebuild_cost() {
    eprintln!("extra slots moved when one of N backends leaves (8 seeds x 10 removals):");
    for &(m, n) in &[
        (1021u32, 10usize),
        (4093, 40),
        (16381, 151),
        (32749, 300),
        (65537, 600),
    ] {
        let bs = backends(n);
        let (mut worst, mut sum, mut count) = (0f64, 0f64, 0);
        for seed in 0..8u64 {
            let full = Maglev::build(&bs, m, seed);
            for r in (0..n).step_by((n / 10).max(1)) {
                let mut less = bs.clone();
                less.remove(r);
                let f = extra_moved(&full, &Maglev::build(&less, m, seed), r);
                worst = worst.max(f);
                sum += f;
                count += 1;
            }
        }
        eprintln!(
            "  M={m:>6} N={n:>4}: mean {:.2}%  worst {:.2}%",
            sum / count as f64 * 100.0,
            worst * 100.0
        );
    }
    eprintln!("rebuild of one service's ring (M picked by table_size):");
    for n in [3usize, 10, 100] {
        let bs = backends(n);
        let m = table_size(n, DEFAULT_MAX_TABLE_SIZE);
        let t = Instant::now();
        for seed in 0..2000u64 {
            std::hint::black_box(Maglev::build(&bs, m, seed));
        }
        eprintln!("  N={n:>3} M={m:>6}: {:?} per build", t.elapsed() / 2000);
    }
}
