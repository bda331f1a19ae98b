//! The worker over in-memory frames: next-hop MACs on forwarded frames,
//! unknown neighbours held, counted and reported, counters published.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use fixtures::flow::{Host, Nat};
use fixtures::packet::{Tcp, L4};

use super::*;
use crate::addr::{Addr, Proto};
use crate::io::memory::{Capture, MemoryIo};
use crate::neigh::netlink::{IfAddr, Link, Neigh};
use crate::neigh::{Mac, NeighTable};
use crate::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};
use crate::table::{ServiceTable, TableConfig};

pub(super) const PORT_MAC: Mac = [0x02, 0, 0, 0, 0xaa, 0x01];
pub(super) const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0, 0x02];
pub(super) const BACKEND_MAC: Mac = [0x02, 0, 0, 0, 0, 0x0a];
pub(super) const CLIENT: [u8; 4] = [198, 18, 0, 2];
pub(super) const BACKEND: [u8; 4] = [198, 18, 0, 10];
pub(super) const VIP: [u8; 4] = [198, 19, 0, 10];
pub(super) const SYN: u8 = 0x02;
pub(super) const ACK: u8 = 0x10;

pub(super) fn tables() -> Tables {
    let spec = ServiceSpec {
        key: ServiceKey {
            vip: Addr::from_v4(VIP),
            port: 80,
            proto: Proto::Tcp,
        },
        name: "default/web:http".into(),
        backends: vec![BackendSpec {
            addr: Addr::from_v4(BACKEND),
            port: 8080,
            weight: 1,
            state: BackendState::Ready,
        }],
        affinity: Affinity::None,
        no_endpoints: crate::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    };
    Tables::new(ServiceTable::from_specs(vec![spec], TableConfig::default()))
}

/// One-armed: one port on 198.18.0.0/24 knowing the backend's and the
/// client's MACs only as asked.
pub(super) fn neigh_table(backend: bool, client: bool) -> NeighTable {
    let links = [Link {
        ifindex: 3,
        name: "p0".into(),
        mac: Some(PORT_MAC),
    }];
    let addrs = [IfAddr {
        ifindex: 3,
        addr: Addr::from_v4([198, 18, 0, 1]),
        prefix: 24,
    }];
    let known = [
        (backend, BACKEND, BACKEND_MAC),
        (client, CLIENT, CLIENT_MAC),
    ];
    let neighs: Vec<Neigh> = known
        .iter()
        .filter(|(k, _, _)| *k)
        .map(|&(_, ip, mac)| Neigh {
            ifindex: 3,
            addr: Addr::from_v4(ip),
            mac,
        })
        .collect();
    NeighTable::build(&["p0".into()], &links, &addrs, &neighs).unwrap()
}

/// The backend's MAC known; the client's only if `client_known`.
pub(super) fn neighbours(client_known: bool) -> Arc<Neighbours> {
    Arc::new(Neighbours::fixed(neigh_table(true, client_known)))
}

/// A connection from CLIENT:`cport` to VIP:80, DNATed to BACKEND:8080.
pub(super) fn conn(cport: u16) -> Nat {
    Nat::new(
        Host {
            mac: CLIENT_MAC,
            ip: IpAddr::V4(Ipv4Addr::from(CLIENT)),
        },
        cport,
        IpAddr::V4(Ipv4Addr::from(VIP)),
        80,
        Host {
            mac: BACKEND_MAC,
            ip: IpAddr::V4(Ipv4Addr::from(BACKEND)),
        },
        8080,
    )
}

fn nat() -> Nat {
    conn(40000)
}

/// Runs the capture through a one-port worker; returns the transmitted
/// frames and the published counters.
fn run(capture: &Capture, neigh: Arc<Neighbours>) -> (Vec<Vec<u8>>, WorkerCounters) {
    let order: Vec<u32> = (0..capture.len() as u32).collect();
    let mut io = MemoryIo::new(capture, &order, 1);
    io.capture_tx();
    let port = Port { io, ifindex: 3 };
    let mut w = Worker::new(vec![port], &WorkerConfig::default(), tables(), neigh).unwrap();
    let shared = w.shared();
    for round in 0..10 {
        w.poll_once(1_000_000_000 + round);
    }
    let published = shared.load();
    assert_eq!(published, w.counters());
    let mut ports = w.into_ports();
    let tx = ports[0].io.take_tx().unwrap();
    let frames = tx.sorted().iter().map(|(_, f, _)| f.to_vec()).collect();
    (frames, published)
}

#[test]
fn forwarded_and_reply_frames_get_next_hop_macs() {
    let n = nat();
    let mut cap = Capture::new();
    let (syn, _) = n.forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN)));
    let (synack, _) = n.reply(L4::Tcp(Tcp::new(0, 0, 7, 2, SYN | ACK)));
    cap.push(1, &syn);
    cap.push(2, &synack);
    let (tx, c) = run(&cap, neighbours(true));
    assert_eq!(tx.len(), 2);
    assert_eq!(&tx[0][0..6], &BACKEND_MAC, "forward: dst = backend");
    assert_eq!(&tx[0][6..12], &PORT_MAC, "forward: src = our port");
    assert_eq!(l2::l3_dst(&tx[0]), Some(Addr::from_v4(BACKEND)));
    assert_eq!(&tx[1][0..6], &CLIENT_MAC, "reply: dst = client");
    assert_eq!(&tx[1][6..12], &PORT_MAC);
    assert_eq!(c.pipeline.forwarded, 1);
    assert_eq!(c.pipeline.reversed, 1);
    assert_eq!(c.tx_sent, 2);
    assert_eq!(c.pipeline.dropped(DropReason::NoNeighbour), 0);
}

#[test]
fn unknown_neighbour_is_held_counted_once_and_reported() {
    let n = nat();
    let mut cap = Capture::new();
    let (syn, _) = n.forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN)));
    let (synack, _) = n.reply(L4::Tcp(Tcp::new(0, 0, 7, 2, SYN | ACK)));
    cap.push(1, &syn);
    cap.push(2, &synack);
    let neigh = neighbours(false);
    let (tx, c) = run(&cap, Arc::clone(&neigh));
    assert_eq!(tx.len(), 1, "only the forward frame had a known next hop");
    assert_eq!(&tx[0][0..6], &BACKEND_MAC);
    // The reply waits for the client's MAC: still counted as reversed,
    // not (yet) as a drop.
    assert_eq!(c.pipeline.dropped(DropReason::NoNeighbour), 0);
    assert_eq!((c.pipeline.forwarded, c.pipeline.reversed), (1, 1));
    assert_eq!((c.tx_sent, c.neigh_held_sent), (1, 0));
    // The miss reached the queue (drained without resolving here: this
    // test must not send anything from the host namespace).
    assert_eq!(neigh.misses_lost(), 0);
}

#[test]
fn run_stops_when_told_and_returns_its_counters() {
    let n = nat();
    let mut cap = Capture::new();
    let (syn, _) = n.forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN)));
    cap.push(1, &syn);
    let order = [0u32];
    let port = Port {
        io: MemoryIo::new(&cap, &order, 1),
        ifindex: 3,
    };
    let mut w = Worker::new(
        vec![port],
        &WorkerConfig::default(),
        tables(),
        neighbours(true),
    )
    .unwrap();
    let stop = AtomicBool::new(false);
    let shared = w.shared();
    let c = std::thread::scope(|s| {
        let h = s.spawn(|| w.run(&stop));
        let t0 = std::time::Instant::now();
        while shared.load().pipeline.packets == 0 && t0.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        h.join().unwrap()
    });
    assert_eq!(c.pipeline.packets, 1);
    assert_eq!(c.pipeline.forwarded, 1);
    assert_eq!(shared.load(), c);
}

#[test]
fn ports_must_match_the_neighbour_interfaces() {
    let cap = Capture::new();
    let order: [u32; 0] = [];
    let port = Port {
        io: MemoryIo::new(&cap, &order, 1),
        ifindex: 99,
    };
    let r = Worker::new(
        vec![port],
        &WorkerConfig::default(),
        tables(),
        neighbours(true),
    );
    assert!(r.is_err());
}

/// Memory I/O that also reports kernel-side losses, as a real socket does.
struct LossyIo<'a> {
    inner: MemoryIo<'a>,
    lost: crate::io::IoStats,
}

impl PacketIo for LossyIo<'_> {
    fn rx_burst(&mut self, batch: &mut Batch, max: usize) -> usize {
        self.inner.rx_burst(batch, max)
    }
    fn tx_burst(&mut self, batch: &mut Batch) -> crate::io::TxStats {
        self.inner.tx_burst(batch)
    }
    fn kind(&self) -> &'static str {
        "lossy"
    }
    fn io_stats(&mut self) -> crate::io::IoStats {
        self.lost
    }
}

impl IdleWait for LossyIo<'_> {
    fn idle_wait(&mut self, timeout_ms: i32) {
        self.inner.idle_wait(timeout_ms)
    }
}

impl ForeignTx for LossyIo<'_> {
    const SENDS_FOREIGN: bool = true;
}

#[test]
fn final_counters_carry_every_port_s_kernel_losses() {
    let cap = Capture::new();
    let order: [u32; 0] = [];
    let lost = |drops, fill, skipped, csum| crate::io::IoStats {
        rx_ring_drops: drops,
        rx_fill_empty: fill,
        rx_skipped: skipped,
        rx_csum_unfixed: csum,
        rx_gso: 0,
        rx_multi_buffer: 0,
    };
    let ports = vec![
        Port {
            io: LossyIo {
                inner: MemoryIo::new(&cap, &order, 1),
                lost: lost(5, 1, 2, 0),
            },
            ifindex: 3,
        },
        Port {
            io: LossyIo {
                inner: MemoryIo::new(&cap, &order, 1),
                lost: lost(7, 0, 1, 4),
            },
            ifindex: 3,
        },
    ];
    let mut w = Worker::new(ports, &WorkerConfig::default(), tables(), neighbours(true)).unwrap();
    let c = w.run(&AtomicBool::new(true));
    assert_eq!(c.io, lost(12, 1, 3, 4));
    // Published per port too, for /metrics while the worker runs.
    let shared = w.shared();
    assert_eq!(shared.load().io, c.io);
    assert_eq!(
        shared.load_ports(),
        vec![(3, lost(5, 1, 2, 0)), (3, lost(7, 0, 1, 4))]
    );
}
