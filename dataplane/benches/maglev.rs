//! Maglev ring build time (control path, per changed service) and the
//! per-packet costs: `pick` alone and `flow_hash` + `pick`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::addr::{Addr, Proto, Tuple};
use dataplane::hash::{flow_hash, DEFAULT_SEED};
use dataplane::maglev::{Maglev, DEFAULT_MAX_TABLE_SIZE};
use dataplane::service::{BackendSpec, BackendState};

fn backends(n: u32, weight: impl Fn(u32) -> u32) -> Vec<BackendSpec> {
    (0..n)
        .map(|i| {
            let [_, _, hi, lo] = i.to_be_bytes();
            BackendSpec {
                addr: Addr::from_v4([198, 18, hi, lo]),
                port: 8080,
                weight: weight(i),
                state: BackendState::Ready,
            }
        })
        .collect()
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("maglev_build_m65537");
    for n in [10u32, 100, 1_000] {
        let equal = backends(n, |_| 1);
        g.bench_with_input(BenchmarkId::new("equal", n), &equal, |b, bs| {
            b.iter(|| Maglev::build(black_box(bs), DEFAULT_MAX_TABLE_SIZE, DEFAULT_SEED))
        });
        let weighted = backends(n, |i| 1 + i % 5);
        g.bench_with_input(BenchmarkId::new("weights_1to5", n), &weighted, |b, bs| {
            b.iter(|| Maglev::build(black_box(bs), DEFAULT_MAX_TABLE_SIZE, DEFAULT_SEED))
        });
    }
    g.finish();
}

/// A fixed pseudo-random batch of flows, so `pick` sees spread-out slots
/// rather than one hot cache line.
fn flows(count: u32) -> Vec<Tuple> {
    (0..count)
        .map(|i| Tuple {
            src: Addr::from_v4([198, 18, 0, (i % 250) as u8]),
            dst: Addr::from_v4([198, 19, 0, 1]),
            sport: 1024 + (i.wrapping_mul(7_919) % 60_000) as u16,
            dport: 80,
            proto: Proto::Tcp,
        })
        .collect()
}

fn per_packet(c: &mut Criterion) {
    let ring = Maglev::build(&backends(100, |_| 1), DEFAULT_MAX_TABLE_SIZE, DEFAULT_SEED);
    let batch = flows(256);
    let hashes: Vec<u64> = batch.iter().map(|t| flow_hash(t, DEFAULT_SEED)).collect();
    let mut g = c.benchmark_group("maglev_per_packet");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("pick_x256", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for &h in black_box(&hashes) {
                acc = acc.wrapping_add(ring.pick(h).unwrap_or(0));
            }
            acc
        })
    });
    g.bench_function("flow_hash_x256", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for t in black_box(&batch) {
                acc ^= flow_hash(t, DEFAULT_SEED);
            }
            acc
        })
    });
    g.bench_function("flow_hash_then_pick_x256", |b| {
        b.iter(|| {
            let mut acc = 0usize;
            for t in black_box(&batch) {
                acc = acc.wrapping_add(ring.pick(flow_hash(t, DEFAULT_SEED)).unwrap_or(0));
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, build, per_packet);
criterion_main!(benches);
