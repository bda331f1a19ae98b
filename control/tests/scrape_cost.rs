//! What scraping costs the workers: a real worker runs the demo capture in
//! a loop through the real pipeline, publishing its counters every burst,
//! once with nobody reading and once with a scraper encoding the whole
//! `/metrics` exposition every 100 ms (10x Prometheus' usual 1 s interval
//! and 150x its default 15 s), rounds alternated, medians compared.
//!
//! A measurement, not a pass/fail timing: run it on a quiet machine with
//! `cargo test --release -p vipgate-control --test scrape_cost -- --ignored --nocapture`.
//! The test itself only checks that both kinds of round processed every
//! packet and that the scraper did scrape.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::admin::{Health, Metrics, WorkerHandle};
use dataplane::addr::Addr;
use dataplane::generation::Tables;
use dataplane::io::memory::MemoryIo;
use dataplane::io::pcap::read_capture;
use dataplane::neigh::netlink::{IfAddr, Link, Neigh};
use dataplane::neigh::{NeighTable, Neighbours};
use dataplane::table::{ServiceTable, TableConfig};
use dataplane::worker::{Port, Worker, WorkerConfig};

const LOOPS: u64 = 400;
const ROUNDS: usize = 5;
const SCRAPE_EVERY: Duration = Duration::from_millis(100);

/// One interface with every lab address as a known neighbour, so frames
/// take the full transmit path.
fn neighbours() -> Arc<Neighbours> {
    let links = [Link {
        ifindex: 3,
        name: "p0".into(),
        mac: Some([0x02, 0, 0, 0, 0xaa, 0x01]),
    }];
    let addrs = [IfAddr {
        ifindex: 3,
        addr: Addr::from_v4([198, 18, 0, 1]),
        prefix: 15,
    }];
    let neighs: Vec<Neigh> = (0..2u8)
        .flat_map(|net| {
            (0..=255u8).map(move |host| Neigh {
                ifindex: 3,
                addr: Addr::from_v4([198, 18, net, host]),
                mac: [0x02, 0, 0, 0, net, host],
            })
        })
        .collect();
    let t = NeighTable::build(&["p0".into()], &links, &addrs, &neighs).unwrap();
    Arc::new(Neighbours::fixed(t))
}

/// One round: packets per second of the worker, scrapes done meanwhile.
fn round(scrape: bool) -> (f64, u64) {
    let capture = read_capture(&fixtures::fixtures_dir().join("demo.pcap")).unwrap();
    let specs = fixtures::scenario_demo::specs(&fixtures::scenario_demo::services());
    let tables = Tables::new(ServiceTable::from_specs(specs, TableConfig::default()));
    let order: Vec<u32> = (0..capture.len() as u32).collect();
    let port = Port {
        io: MemoryIo::new(&capture, &order, LOOPS),
        ifindex: 3,
    };
    let mut w = Worker::new(
        vec![port],
        &WorkerConfig::default(),
        tables.clone(),
        neighbours(),
    )
    .unwrap();
    let health = Arc::new(Health::new());
    let metrics = Metrics::new("memory", tables, health);
    metrics.set_workers(
        "memory",
        vec![WorkerHandle {
            shared: w.shared(),
            flows: w.flow_dump(),
        }],
    );
    let done = AtomicBool::new(false);
    let scrapes = AtomicU64::new(0);
    let pps = std::thread::scope(|s| {
        if scrape {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    assert!(metrics.encode().contains("vipgate_packets"));
                    scrapes.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(SCRAPE_EVERY);
                }
            });
        }
        let t0 = Instant::now();
        let mut now = 1_000_000_000u64;
        while w.poll_once(now) > 0 {
            now += 10_000;
        }
        let secs = t0.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        let c = w.counters();
        assert_eq!(c.pipeline.packets, LOOPS * capture.len() as u64);
        c.pipeline.packets as f64 / secs
    });
    (pps, scrapes.load(Ordering::Relaxed))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn scraping_every_100_ms_costs_the_worker_nothing_measurable() {
    let (mut quiet, mut scraped) = (Vec::new(), Vec::new());
    let mut total_scrapes = 0;
    for _ in 0..ROUNDS {
        quiet.push(round(false).0);
        let (pps, n) = round(true);
        scraped.push(pps);
        total_scrapes += n;
    }
    assert!(total_scrapes >= ROUNDS as u64, "the scraper never ran");
    let (q, s) = (median(quiet.clone()), median(scraped.clone()));
    println!(
        "scrape cost: worker {:.2} Mpps without a scraper, {:.2} Mpps with /metrics encoded every {} ms \
         (median of {ROUNDS} alternated rounds; ratio {:.3}; {total_scrapes} scrapes)",
        q / 1e6,
        s / 1e6,
        SCRAPE_EVERY.as_millis(),
        s / q
    );
    println!(
        "  without: {:?}",
        quiet
            .iter()
            .map(|p| (p / 1e4).round() / 100.0)
            .collect::<Vec<_>>()
    );
    println!(
        "  with:    {:?}",
        scraped
            .iter()
            .map(|p| (p / 1e4).round() / 100.0)
            .collect::<Vec<_>>()
    );
}
