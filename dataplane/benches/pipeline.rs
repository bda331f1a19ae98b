//! Per-core cost of the pipeline over in-memory bursts (rx copy, classify,
//! conntrack, Maglev, NAT, tx), for established TCP flows, new TCP flows
//! (a SYN flood of distinct clients), UDP flows and SCTP associations (DATA
//! of 32 and of 1,400 bytes, against UDP of the same sizes: the CRC32c is
//! recomputed over the whole SCTP packet, so its cost grows with the
//! payload), against 100 services
//! with 10 backends each; then the same against 1 and 10,000 services, whose
//! ratio shows what a large table (Maglev rings beyond L3) costs per packet.
//!
//! The established, new-flow and UDP workloads run once more with every
//! Service source-NATed (`*_snat`): the cost of the second rewrite, the
//! port search and the reply lookup by the SNAT tuple, against DNAT in the
//! same run.
//!
//! cargo bench -p vipgate-dataplane --bench pipeline

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::addr::{Addr, Proto};
use dataplane::generation::Tables;
use dataplane::io::memory::{Capture, MemoryIo};
use dataplane::io::{Batch, PacketIo};
use dataplane::pipeline::{NodeAddrs, Pipeline, PipelineConfig, SnatConfig};
use dataplane::service::{
    Affinity, BackendSpec, BackendState, Forwarding, ServiceKey, ServiceSpec,
};
use dataplane::table::{ServiceTable, TableConfig};
use fixtures::packet::{
    Eth, Ip, Ipv4, Packet, Sctp, SctpChunk, Tcp, Udp, L4, SCTP_INIT, TCP_ACK, TCP_SYN,
};

const BURST: usize = 64;
const SERVICES: u32 = 100;

/// VIP of service `s`, in 198.19.0.0/16.
fn vip(s: u32) -> [u8; 4] {
    [198, 19, (s >> 8) as u8, s as u8]
}

/// `services` services (TCP, UDP and SCTP port 80) of 10 backends each; backends
/// live in 198.18.128.0/17 and repeat once it is used up.
fn tables(services: u32) -> Tables {
    tables_in(services, Forwarding::Dnat)
}

/// [`tables`] with every Service forwarding in `forwarding`.
fn tables_in(services: u32, forwarding: Forwarding) -> Tables {
    let mut specs = Vec::new();
    for s in 0..services {
        for proto in [Proto::Tcp, Proto::Udp, Proto::Sctp] {
            specs.push(ServiceSpec {
                key: ServiceKey {
                    vip: Addr::from_v4(vip(s)),
                    port: 80,
                    proto,
                },
                name: format!("bench/svc{s}"),
                backends: (0..10)
                    .map(|b| {
                        let i = (s * 10 + b) % 32_768;
                        BackendSpec {
                            addr: Addr::from_v4([198, 18, 128 + (i >> 8) as u8, i as u8]),
                            port: 8080,
                            weight: 1,
                            state: BackendState::Ready,
                        }
                    })
                    .collect(),
                affinity: Affinity::None,
                no_endpoints: dataplane::service::NoEndpoints::Reject,
                forwarding,
                source_ranges: Vec::new(),
            });
        }
    }
    Tables::new(ServiceTable::from_specs(specs, TableConfig::default()))
}

/// What a capture's packets carry.
#[derive(Clone, Copy)]
enum Kind {
    Tcp(u8),
    /// UDP with this many bytes of payload.
    Udp(usize),
    /// An SCTP INIT (opens the association).
    SctpInit,
    /// An SCTP DATA chunk of this many bytes.
    SctpData(usize),
}

fn frame(client: u32, cport: u16, svc: u32, kind: Kind) -> Vec<u8> {
    let c = client.to_be_bytes();
    let eth = Eth::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = Ip::V4(Ipv4::new([198, 18, c[2], c[3]], vip(svc), 64));
    let l4 = match kind {
        Kind::Tcp(f) => {
            let mut t = Tcp::new(cport, 80, 1, 1, f);
            t.payload = vec![0x55; 32];
            L4::Tcp(t)
        }
        Kind::Udp(n) => L4::Udp(Udp::new(cport, 80, vec![0x55; n])),
        Kind::SctpInit => L4::Sctp(Sctp::new(
            cport,
            80,
            0,
            vec![SctpChunk::init(SCTP_INIT, 7, 1, &[])],
        )),
        Kind::SctpData(n) => L4::Sctp(Sctp::new(
            cport,
            80,
            7,
            vec![SctpChunk::data(1, &vec![0x55; n])],
        )),
    };
    Packet::new(eth, ip, l4).frame()
}

/// A capture of `n` packets of distinct flows, spread over `services`.
fn capture(n: u32, services: u32, kind: Kind) -> Capture {
    let mut cap = Capture::new();
    for i in 0..n {
        let f = frame(i / 50_000, 1024 + (i % 50_000) as u16, i % services, kind);
        cap.push(1_000_000_000, &f);
    }
    cap
}

/// Runs `iters` bursts over the capture (looping), returns the time taken.
fn run_bursts(
    cap: &Capture,
    order: &[u32],
    tables: &Tables,
    pipeline: &mut Pipeline,
    iters: u64,
) -> Duration {
    let mut io = MemoryIo::new(cap, order, u64::MAX);
    let mut batch = Batch::new();
    let start = Instant::now();
    for _ in 0..iters {
        io.rx_burst(&mut batch, BURST);
        let t = tables.load();
        pipeline.process_burst(&t, &mut batch, io.now_ns());
        io.tx_burst(&mut batch);
    }
    start.elapsed()
}

fn pipeline(capacity: u32) -> Pipeline {
    Pipeline::new(PipelineConfig {
        conntrack: dataplane::conntrack::Config {
            capacity,
            ..Default::default()
        },
        snat: SnatConfig {
            addrs: NodeAddrs {
                v4: Some(Addr::from_v4([198, 18, 0, 1])),
                v6: None,
            },
            ..SnatConfig::default()
        },
        ..Default::default()
    })
}

/// Established TCP, new TCP flows and UDP with every Service source-NATed.
fn bench_snat(c: &mut Criterion) {
    let tables = tables_in(SERVICES, Forwarding::Snat);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BURST as u64));
    for (kind, name, flows) in [
        (Kind::Tcp(TCP_ACK), "tcp_established_snat", 65_536),
        (Kind::Udp(32), "udp_snat", 65_536),
        (Kind::Tcp(TCP_SYN), "tcp_syn_new_flow_snat", 1 << 20),
    ] {
        let cap = capture(flows, SERVICES, kind);
        let order: Vec<u32> = (0..cap.len() as u32).collect();
        let mut p = pipeline(1 << 18);
        if flows == 65_536 {
            run_bursts(
                &cap,
                &order,
                &tables,
                &mut p,
                (cap.len() / BURST) as u64 + 1,
            );
            assert_eq!(p.counters().snat_flows, 65_536, "every flow source-NATed");
        }
        g.bench_function(name, |b| {
            b.iter_custom(|iters| run_bursts(&cap, &order, &tables, &mut p, iters))
        });
    }
    g.finish();
}

/// The three workloads against `services` services; benchmark names get
/// `suffix`.
fn bench_table(c: &mut Criterion, services: u32, suffix: &str) {
    let tables = tables(services);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BURST as u64));

    // Established: 64k TCP flows, every packet hits conntrack.
    let est = capture(65_536, services, Kind::Tcp(TCP_ACK));
    let order: Vec<u32> = (0..est.len() as u32).collect();
    let mut p = pipeline(1 << 18);
    run_bursts(
        &est,
        &order,
        &tables,
        &mut p,
        (est.len() / BURST) as u64 + 1,
    );
    g.bench_function(format!("tcp_established{suffix}"), |b| {
        b.iter_custom(|iters| run_bursts(&est, &order, &tables, &mut p, iters))
    });

    // New flows: SYNs of 1M distinct (client, port); conntrack evicts the
    // oldest unreplied entries once full, as under a SYN flood.
    let syn = capture(1 << 20, services, Kind::Tcp(TCP_SYN));
    let order: Vec<u32> = (0..syn.len() as u32).collect();
    let mut p = pipeline(1 << 18);
    g.bench_function(format!("tcp_syn_new_flow{suffix}"), |b| {
        b.iter_custom(|iters| run_bursts(&syn, &order, &tables, &mut p, iters))
    });

    // UDP: 64k established flows; 32-byte payloads, and 1,400 bytes to
    // compare with SCTP's (the frame copies grow, the NAT does not).
    for (payload, name) in [(32, "udp"), (1400, "udp_1400")] {
        let udp = capture(65_536, services, Kind::Udp(payload));
        let order: Vec<u32> = (0..udp.len() as u32).collect();
        let mut p = pipeline(1 << 18);
        run_bursts(
            &udp,
            &order,
            &tables,
            &mut p,
            (udp.len() / BURST) as u64 + 1,
        );
        g.bench_function(format!("{name}{suffix}"), |b| {
            b.iter_custom(|iters| run_bursts(&udp, &order, &tables, &mut p, iters))
        });
    }

    // SCTP: 64k associations opened by an INIT each, then their DATA.
    let inits = capture(65_536, services, Kind::SctpInit);
    for payload in [32, 1400] {
        let data = capture(65_536, services, Kind::SctpData(payload));
        let order: Vec<u32> = (0..data.len() as u32).collect();
        let mut p = pipeline(1 << 18);
        let once = (inits.len() / BURST) as u64 + 1;
        run_bursts(&inits, &order, &tables, &mut p, once);
        let before = p.counters().forwarded;
        run_bursts(&data, &order, &tables, &mut p, 16);
        assert_eq!(
            p.counters().forwarded - before,
            16 * BURST as u64,
            "SCTP DATA of open associations is forwarded"
        );
        g.bench_function(format!("sctp_data_{payload}{suffix}"), |b| {
            b.iter_custom(|iters| run_bursts(&data, &order, &tables, &mut p, iters))
        });
    }
    g.finish();
}

/// What a live update costs the table side: `ServiceTable::apply` of one
/// changed service (one more backend) to a table of 10,000 services x 2
/// protocols, i.e. the map copy, one ring and the per-generation lookup
/// index. The previous generation is dropped inside the timing, as the
/// publisher drops it.
fn bench_apply(c: &mut Criterion) {
    let base = tables(10_000).current();
    let mut changed = base
        .lookup(&Addr::from_v4(vip(1234)), 80, Proto::Tcp)
        .expect("service 1234")
        .spec
        .clone();
    changed.backends.push(BackendSpec {
        addr: Addr::from_v4([198, 18, 127, 1]),
        port: 8080,
        weight: 1,
        state: BackendState::Ready,
    });
    let mut g = c.benchmark_group("table");
    g.bench_function("apply_one_change/10k_svc", |b| {
        b.iter(|| {
            let (next, stats) =
                ServiceTable::apply(&base, std::iter::empty(), std::iter::once(&changed));
            assert_eq!(stats.rebuilt, 1);
            next
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    bench_apply(c);
    bench_table(c, SERVICES, "");
    bench_snat(c);
    bench_table(c, 1, "/1_svc");
    bench_table(c, 10_000, "/10k_svc");
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
