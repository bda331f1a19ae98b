//! Every frame a worker receives is counted once, under its final fate:
//! frames the worker drops after the pipeline's verdict (no neighbour in
//! time, a full ring, a partial checksum) move from forwarded / reversed
//! to their drop reason. And no frame whose checksum was left partial leaves NATed.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;

use fixtures::flow::{Host, Nat};
use fixtures::packet::{Tcp, Udp, L4};
use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};

use super::tests::{
    conn, neigh_table, tables, ACK, BACKEND_MAC, CLIENT, CLIENT_MAC, PORT_MAC, SYN,
};
use super::*;
use crate::counters::Counters;
use crate::io::af_packet::{csum, TAG_CSUM_PARTIAL};
use crate::io::memory::{Capture, MemoryIo};
use crate::io::{FrameDesc, TxStats};

const BUF: usize = 2048;

/// A UDP datagram between two hosts, no service involved: passed.
fn unrelated() -> Vec<u8> {
    let n = Nat::new(
        Host {
            mac: CLIENT_MAC,
            ip: IpAddr::V4(Ipv4Addr::from(CLIENT)),
        },
        5000,
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 99)),
        53,
        Host {
            mac: BACKEND_MAC,
            ip: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 99)),
        },
        53,
    );
    n.forward(L4::Udp(Udp::new(0, 0, b"q".to_vec()))).0
}

fn assert_once(c: &Counters) {
    assert!(
        c.balanced(),
        "forwarded {} + reversed {} + rejected {} + passed {} + dropped {} != packets {}",
        c.forwarded,
        c.reversed,
        c.rejected,
        c.passed,
        c.dropped_total(),
        c.packets
    );
}

/// Runs `frames` through a one-port worker over memory I/O; returns what
/// it transmitted and its counters, before and after frames held for an
/// unknown neighbour expired.
fn run_memory(
    frames: &[Vec<u8>],
    neigh: Arc<Neighbours>,
) -> (usize, WorkerCounters, WorkerCounters) {
    let mut cap = Capture::new();
    for (i, f) in frames.iter().enumerate() {
        cap.push(i as u64 + 1, f);
    }
    let order: Vec<u32> = (0..cap.len() as u32).collect();
    let mut io = MemoryIo::new(&cap, &order, 1);
    io.capture_tx();
    let port = Port { io, ifindex: 3 };
    let cfg = WorkerConfig {
        burst: 4, // several bursts, so the ledger is reloaded between them
        ..WorkerConfig::default()
    };
    let mut w = Worker::new(vec![port], &cfg, tables(), neigh).unwrap();
    for round in 0..10 {
        w.poll_once(1_000_000_000 + round);
    }
    let held = w.counters();
    // Every frame arrived in one of the rounds: all have waited long enough.
    w.poll_once(1_000_000_000 + 10 + pending::HOLD_NS);
    assert_eq!(w.held(), 0);
    let c = w.counters();
    let mut ports = w.into_ports();
    let tx = ports[0].io.take_tx().unwrap();
    (tx.sorted().len(), held, c)
}

#[test]
fn frames_to_a_backend_without_neighbour_wait_then_drop_not_forwarded() {
    let mut frames: Vec<Vec<u8>> = (0..5)
        .map(|k| {
            conn(41000 + k)
                .forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN)))
                .0
        })
        .collect();
    frames.insert(2, unrelated());
    let (sent, held, c) = run_memory(
        &frames,
        Arc::new(Neighbours::fixed(neigh_table(false, true))),
    );
    // Waiting: counted as forwarded, not sent.
    assert_once(&held.pipeline);
    assert_eq!(held.pipeline.forwarded, 5);
    assert_eq!(held.pipeline.dropped_total(), 0);
    let p = &c.pipeline;
    assert_once(p);
    assert_eq!(p.packets, 6);
    assert_eq!(p.dropped(DropReason::NoNeighbour), 5);
    assert_eq!(p.dropped_total(), 5);
    assert_eq!(p.forwarded, 0, "dropped frames are not also forwarded");
    assert_eq!(p.passed, 1);
    assert_eq!(p.flows, 5);
    assert_eq!((sent, c.tx_sent, c.neigh_held_sent), (0, 0, 0));
}

#[test]
fn replies_to_an_unknown_client_leave_forwarded_frames_counted() {
    let mut frames = Vec::new();
    for k in 0..3 {
        let n = conn(42000 + k);
        frames.push(n.forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN))).0);
        frames.push(n.reply(L4::Tcp(Tcp::new(0, 0, 7, 2, SYN | ACK))).0);
    }
    let (sent, held, c) = run_memory(
        &frames,
        Arc::new(Neighbours::fixed(neigh_table(true, false))),
    );
    assert_once(&held.pipeline);
    assert_eq!((held.pipeline.forwarded, held.pipeline.reversed), (3, 3));
    let p = &c.pipeline;
    assert_once(p);
    assert_eq!(p.packets, 6);
    assert_eq!(p.forwarded, 3);
    assert_eq!(p.reversed, 0);
    assert_eq!(p.dropped(DropReason::NoNeighbour), 3);
    assert_eq!((sent, c.tx_sent), (3, 3));
}

/// A port fed by hand with chosen tags, tagging partial checksums as
/// AF_PACKET does, with room for `room` frames per tx burst.
struct TagIo {
    feed: VecDeque<(Vec<u8>, u32)>,
    sent: Rc<RefCell<Vec<Vec<u8>>>>,
    room: u32,
    bufs: Vec<u8>,
}

impl TagIo {
    fn new(feed: Vec<(Vec<u8>, u32)>, room: u32) -> (TagIo, Rc<RefCell<Vec<Vec<u8>>>>) {
        let sent = Rc::new(RefCell::new(Vec::new()));
        let io = TagIo {
            feed: feed.into(),
            sent: Rc::clone(&sent),
            room,
            bufs: vec![0; MAX_BURST * BUF],
        };
        (io, sent)
    }
}

impl PacketIo for TagIo {
    fn rx_burst(&mut self, batch: &mut Batch, max: usize) -> usize {
        // SAFETY: `bufs` is owned by self and only used through the batch
        // until the next rx_burst.
        unsafe { batch.reset(self.bufs.as_mut_ptr(), self.bufs.len()) };
        let mut n = 0;
        while n < max.min(MAX_BURST) {
            let Some((f, tag)) = self.feed.pop_front() else {
                break;
            };
            self.bufs[n * BUF..n * BUF + f.len()].copy_from_slice(&f);
            batch.push(FrameDesc {
                offset: (n * BUF) as u64,
                len: f.len() as u32,
                cap: BUF as u32,
                tag,
                offload: Default::default(),
            });
            n += 1;
        }
        n
    }

    /// Like a ring: takes `Tx` frames in order until it is full.
    fn tx_burst(&mut self, batch: &mut Batch) -> TxStats {
        let mut st = TxStats::default();
        for i in 0..batch.len() {
            if matches!(batch.verdicts()[i], Verdict::Tx(_)) {
                if st.sent < self.room {
                    self.sent.borrow_mut().push(batch.frame(i).to_vec());
                    st.sent += 1;
                } else {
                    st.dropped += 1;
                }
            }
        }
        batch.clear();
        st
    }

    fn kind(&self) -> &'static str {
        "tag"
    }
}

impl IdleWait for TagIo {
    fn idle_wait(&mut self, _timeout_ms: i32) {}
}

impl ForeignTx for TagIo {
    const SENDS_FOREIGN: bool = true;
    const CSUM_PARTIAL_TAG: u32 = TAG_CSUM_PARTIAL;
}

fn run_tagged(feed: Vec<(Vec<u8>, u32)>, room: u32) -> (Vec<Vec<u8>>, WorkerCounters) {
    let (io, sent) = TagIo::new(feed, room);
    let port = Port { io, ifindex: 3 };
    let mut w = Worker::new(
        vec![port],
        &WorkerConfig::default(),
        tables(),
        Arc::new(Neighbours::fixed(neigh_table(true, true))),
    )
    .unwrap();
    for round in 0..4 {
        w.poll_once(1_000_000_000 + round);
    }
    let c = w.counters();
    drop(w);
    let sent = sent.borrow().clone();
    (sent, c)
}

/// The frame as a stack using checksum offload hands it over: the TCP
/// checksum field holds only the pseudo-header sum (IPv4, no options).
fn offloaded(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let ip = 14;
    let tcp_len = u16::from_be_bytes([f[ip + 2], f[ip + 3]]) as u32 - 20;
    let mut acc = 6 + tcp_len;
    for w in f[ip + 12..ip + 20].chunks(2) {
        acc += u32::from(w[0]) << 8 | u32::from(w[1]);
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    f[ip + 36..ip + 38].copy_from_slice(&(acc as u16).to_be_bytes());
    f
}

/// Full recompute (smoltcp) of the IPv4 header and TCP checksums.
fn checksums_ok(frame: &[u8]) -> bool {
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    let (s, d) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    ip.verify_checksum() && tcp.verify_checksum(&s, &d)
}

#[test]
fn a_tagged_partial_checksum_frame_is_never_sent() {
    let syn = |k: u16| conn(43000 + k).forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN)));
    // Left partial and tagged (completion failed or was off).
    let (a, _) = syn(0);
    let a = offloaded(&a);
    assert!(!checksums_ok(&a));
    // Left partial, completed on rx as AF_PACKET does: not tagged.
    let (b, b_out) = syn(1);
    let mut b = offloaded(&b);
    assert!(csum::complete_partial(&mut b));
    // Full checksum; a tag with other bits only.
    let (c, c_out) = syn(2);
    // Partial and tagged, but not for a service: the kernel's business.
    let d = unrelated();
    let feed = vec![
        (a, TAG_CSUM_PARTIAL),
        (b, 0),
        (c, 2),
        (d, TAG_CSUM_PARTIAL | 4),
    ];
    let (sent, w) = run_tagged(feed, 64);
    for f in sent.iter() {
        assert!(checksums_ok(f), "sent with a wrong checksum: {f:02x?}");
    }
    let p = &w.pipeline;
    assert_once(p);
    assert_eq!(p.packets, 4);
    assert_eq!(p.dropped(DropReason::BadChecksumOffload), 1);
    assert_eq!(p.forwarded, 2);
    assert_eq!(p.passed, 1);
    assert_eq!(w.tx_sent, 2);
    // Byte for byte what an independent NAT of the full-checksum packet
    // writes, next-hop MACs included.
    let mac = |mut f: Vec<u8>| {
        f[0..6].copy_from_slice(&BACKEND_MAC);
        f[6..12].copy_from_slice(&PORT_MAC);
        f
    };
    assert_eq!(*sent, vec![mac(b_out), mac(c_out)]);
}

#[test]
fn a_full_tx_ring_moves_the_unsent_frames_to_tx_full() {
    let mut feed = Vec::new();
    for k in 0..4 {
        let n = conn(44000 + k);
        feed.push((n.forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN))).0, 0));
        feed.push((n.reply(L4::Tcp(Tcp::new(0, 0, 7, 2, SYN | ACK))).0, 0));
    }
    feed.push((unrelated(), 0));
    // 9 frames in one burst, 8 to send, room for 5: the ring takes the
    // first five (f r f r f), the last three (r f r) are dropped.
    let (sent, w) = run_tagged(feed, 5);
    let p = &w.pipeline;
    assert_once(p);
    assert_eq!(sent.len(), 5);
    assert_eq!(w.tx_sent, 5);
    assert_eq!(p.dropped(DropReason::TxFull), 3);
    assert_eq!((p.forwarded, p.reversed, p.passed), (3, 2, 1));
}

#[test]
fn failed_copy_sends_move_from_forwarded_to_tx_full() {
    let mut frames: Vec<Vec<u8>> = (0..3)
        .map(|k| {
            conn(45000 + k)
                .forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN)))
                .0
        })
        .collect();
    frames.push(unrelated());
    let mut region = vec![0u8; frames.len() * BUF];
    let mut batch = Batch::new();
    // SAFETY: `region` outlives `batch`, used only through it.
    unsafe { batch.reset(region.as_mut_ptr(), region.len()) };
    for (i, f) in frames.iter().enumerate() {
        batch.push(FrameDesc {
            offset: (i * BUF) as u64,
            len: f.len() as u32,
            cap: BUF as u32,
            tag: 0,
            offload: Default::default(),
        });
        batch.frame_mut(i)[..f.len()].copy_from_slice(f);
    }
    let mut pipeline = Pipeline::new(Default::default());
    pipeline.process_burst(&tables().load(), &mut batch, 1_000_000_000);
    let mut ledger = Ledger::default();
    ledger.load(&pipeline);
    // Frames 0 and 2 leave on interface 1, which has no copy sender.
    let mut egress = [0u8; MAX_BURST];
    egress[..4].copy_from_slice(&[1, 0, 1, 0]);
    let st = send_copies(&mut batch, &mut [], &egress, Some(0));
    assert_eq!(st.sent, 0);
    let full = Verdict::Drop(DropReason::TxFull);
    assert_eq!(
        batch.verdicts(),
        &[full, Verdict::Tx(0), full, Verdict::Pass]
    );
    ledger.settle(&mut pipeline, &batch);
    ledger.settle(&mut pipeline, &batch); // a frame moves once
    let p = pipeline.counters();
    assert_once(p);
    assert_eq!((p.forwarded, p.passed), (1, 1));
    assert_eq!(p.dropped(DropReason::TxFull), 2);
}
