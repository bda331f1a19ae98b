//! Frames to a next hop whose MAC is not known yet wait in the worker and
//! leave, in order and with the right MACs, once a newer neighbour
//! snapshot knows it; those that wait too long, or find the store full,
//! are no_neighbour drops. Every frame stays counted exactly once.

use fixtures::packet::{Tcp, L4};

use super::group_tests::{FeedIo, Frames};
use super::pending::{HELD_SLOTS, HOLD_NS};
use super::tests::{conn, neigh_table, tables, ACK, BACKEND_MAC, CLIENT_MAC, PORT_MAC, SYN};
use super::*;
use crate::counters::Counters;
use crate::io::memory::{Capture, MemoryIo};
use crate::neigh::{Mac, NeighTable};

type Sent = std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>>;

const T0: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

/// `frame` as it must leave: the independent NAT's output with our port's
/// MAC as source and `dst` as destination.
fn with_macs(mut frame: Vec<u8>, dst: Mac) -> Vec<u8> {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&PORT_MAC);
    frame
}

struct Lab {
    w: Worker<FeedIo>,
    feed: Frames,
    sent: Sent,
    neigh: Arc<Neighbours>,
}

fn lab(known: NeighTable) -> Lab {
    let (io, feed, sent) = FeedIo::new();
    let neigh = Arc::new(Neighbours::fixed(known));
    let w = Worker::new(
        vec![Port { io, ifindex: 3 }],
        &WorkerConfig::default(),
        tables(),
        Arc::clone(&neigh),
    )
    .unwrap();
    Lab {
        w,
        feed,
        sent,
        neigh,
    }
}

impl Lab {
    /// Feeds `frames` and polls until they are all received, at `now_ns`.
    fn feed(&mut self, frames: &[Vec<u8>], now_ns: u64) {
        self.feed.borrow_mut().extend(frames.iter().cloned());
        while !self.feed.borrow().is_empty() {
            self.w.poll_once(now_ns);
        }
    }

    fn take_sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.sent.borrow_mut())
    }

    fn counters(&self) -> WorkerCounters {
        let c = self.w.counters();
        assert_once(&c.pipeline);
        c
    }
}

fn assert_once(c: &Counters) {
    assert!(c.balanced(), "not counted once: {c:?}");
}

/// Forward frames of three flows to the backend, interleaved: (input,
/// expected output without MACs).
fn interleaved() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        conn(46000).forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN))),
        conn(46001).forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN))),
        conn(46000).forward(L4::Tcp(Tcp::new(0, 0, 2, 9, ACK))),
        conn(46002).forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN))),
        conn(46001).forward(L4::Tcp(Tcp::new(0, 0, 2, 9, ACK))),
    ]
}

#[test]
fn held_frames_leave_in_order_with_their_macs_once_the_neighbour_is_known() {
    let mut l = lab(neigh_table(false, true));
    let frames = interleaved();
    let ins: Vec<Vec<u8>> = frames.iter().map(|f| f.0.clone()).collect();
    l.feed(&ins, T0);
    // More rounds with the same snapshot: they stay held.
    for r in 1..5 {
        l.w.poll_once(T0 + r * MS);
    }
    assert!(
        l.take_sent().is_empty(),
        "sent before the neighbour was known"
    );
    assert_eq!(l.w.held(), 5);
    let c = l.counters();
    assert_eq!(c.pipeline.forwarded, 5);
    assert_eq!(c.pipeline.dropped_total(), 0);
    assert_eq!((c.tx_sent, c.neigh_held_sent), (0, 0));

    l.neigh.publish(neigh_table(true, true));
    l.w.poll_once(T0 + 5 * MS);
    let want: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| with_macs(f.1.clone(), BACKEND_MAC))
        .collect();
    assert_eq!(l.take_sent(), want);
    assert_eq!(l.w.held(), 0);
    let c = l.counters();
    assert_eq!(c.pipeline.forwarded, 5, "counted once, as forwarded");
    assert_eq!(c.pipeline.dropped(DropReason::NoNeighbour), 0);
    assert_eq!((c.tx_sent, c.neigh_held_sent), (5, 5));

    // Later frames go straight out.
    let (syn, out) = conn(46003).forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN)));
    l.feed(&[syn], T0 + 6 * MS);
    assert_eq!(l.take_sent(), vec![with_macs(out, BACKEND_MAC)]);
    let c = l.counters();
    assert_eq!((c.tx_sent, c.neigh_held_sent), (6, 5));
}

/// The snapshot changes between a round's look at the store and a burst:
/// frames to the now known destination queue behind the held ones.
#[test]
fn a_frame_to_a_destination_with_held_frames_waits_behind_them() {
    let mut l = lab(neigh_table(false, true));
    let frames = interleaved();
    l.feed(&[frames[0].0.clone(), frames[1].0.clone()], T0);
    assert_eq!(l.w.held(), 2);
    l.neigh.publish(neigh_table(true, true));
    for f in &frames[2..] {
        l.feed.borrow_mut().push_back(f.0.clone());
    }
    // A burst without the round's release first.
    l.w.burst_on(0, T0 + MS);
    assert!(l.take_sent().is_empty(), "overtook the held frames");
    assert_eq!(l.w.held(), 5);
    l.w.poll_once(T0 + 2 * MS);
    let want: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| with_macs(f.1.clone(), BACKEND_MAC))
        .collect();
    assert_eq!(l.take_sent(), want);
    let c = l.counters();
    assert_eq!((c.pipeline.forwarded, c.neigh_held_sent), (5, 5));
}

#[test]
fn a_frame_held_too_long_becomes_one_no_neighbour_drop() {
    let mut l = lab(neigh_table(false, true));
    let frames = interleaved();
    l.feed(&[frames[0].0.clone()], T0);
    l.feed(&[frames[1].0.clone()], T0 + 2_000 * MS);
    l.w.poll_once(T0 + HOLD_NS - 1);
    assert_eq!(l.w.held(), 2);
    assert_eq!(l.counters().pipeline.dropped_total(), 0);
    // The neighbour answers just too late for the first frame.
    l.neigh.publish(neigh_table(true, true));
    l.w.poll_once(T0 + HOLD_NS);
    assert_eq!(
        l.take_sent(),
        vec![with_macs(frames[1].1.clone(), BACKEND_MAC)]
    );
    assert_eq!(l.w.held(), 0);
    let c = l.counters();
    assert_eq!(c.pipeline.packets, 2);
    assert_eq!(c.pipeline.forwarded, 1);
    assert_eq!(c.pipeline.dropped(DropReason::NoNeighbour), 1);
    assert_eq!(c.pipeline.dropped_total(), 1);
    assert_eq!((c.tx_sent, c.neigh_held_sent), (1, 1));
    // Expired once, never again.
    for r in 1..4 {
        l.w.poll_once(T0 + HOLD_NS * (r + 1));
    }
    assert_eq!(l.counters(), c);
}

#[test]
fn a_held_frame_expires_without_any_snapshot_change() {
    let mut l = lab(neigh_table(false, true));
    let (syn, _) = conn(47000).forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN)));
    l.feed(&[syn], T0);
    l.w.poll_once(T0 + HOLD_NS);
    assert_eq!(l.w.held(), 0);
    let c = l.counters();
    assert_eq!(c.pipeline.dropped(DropReason::NoNeighbour), 1);
    assert_eq!(c.pipeline.forwarded, 0);
    l.neigh.publish(neigh_table(true, true));
    l.w.poll_once(T0 + HOLD_NS + MS);
    assert!(l.take_sent().is_empty());
    assert_eq!(l.counters(), c);
}

#[test]
fn a_full_store_drops_the_excess_as_no_neighbour_and_slots_are_reused() {
    let mut l = lab(neigh_table(false, false));
    const EXCESS: usize = 10;
    let frames: Vec<(Vec<u8>, Vec<u8>)> = (0..HELD_SLOTS + EXCESS)
        .map(|k| conn(20000 + k as u16).forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN))))
        .collect();
    let ins: Vec<Vec<u8>> = frames.iter().map(|f| f.0.clone()).collect();
    l.feed(&ins, T0);
    assert_eq!(l.w.held(), HELD_SLOTS);
    let c = l.counters();
    assert_eq!(c.pipeline.forwarded, HELD_SLOTS as u64);
    assert_eq!(c.pipeline.dropped(DropReason::NoNeighbour), EXCESS as u64);
    assert!(l.take_sent().is_empty());

    l.neigh.publish(neigh_table(true, false));
    l.w.poll_once(T0 + MS);
    let want: Vec<Vec<u8>> = frames[..HELD_SLOTS]
        .iter()
        .map(|f| with_macs(f.1.clone(), BACKEND_MAC))
        .collect();
    assert_eq!(l.take_sent(), want, "the first HELD_SLOTS frames, in order");
    let c = l.counters();
    assert_eq!(
        (c.tx_sent, c.neigh_held_sent),
        (HELD_SLOTS as u64, HELD_SLOTS as u64)
    );

    // Replies to the still unknown client reuse the freed slots.
    let replies: Vec<(Vec<u8>, Vec<u8>)> = (0..3)
        .map(|k| conn(20000 + k).reply(L4::Tcp(Tcp::new(0, 0, 7, 2, SYN | ACK))))
        .collect();
    let ins: Vec<Vec<u8>> = replies.iter().map(|f| f.0.clone()).collect();
    l.feed(&ins, T0 + 2 * MS);
    assert_eq!(l.w.held(), 3);
    l.neigh.publish(neigh_table(true, true));
    l.w.poll_once(T0 + 3 * MS);
    let want: Vec<Vec<u8>> = replies
        .iter()
        .map(|f| with_macs(f.1.clone(), CLIENT_MAC))
        .collect();
    assert_eq!(l.take_sent(), want);
    let c = l.counters();
    assert_eq!(c.pipeline.reversed, 3);
    assert_eq!(c.pipeline.dropped(DropReason::NoNeighbour), EXCESS as u64);
    assert_eq!(c.neigh_held_sent, HELD_SLOTS as u64 + 3);
}

#[test]
fn a_stopping_worker_counts_what_it_still_holds_as_no_neighbour() {
    let (syn, _) = conn(48000).forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN)));
    let mut cap = Capture::new();
    cap.push(1, &syn);
    let order = [0u32];
    let port = Port {
        io: MemoryIo::new(&cap, &order, 1),
        ifindex: 3,
    };
    let neigh = Arc::new(Neighbours::fixed(neigh_table(false, true)));
    let mut w = Worker::new(vec![port], &WorkerConfig::default(), tables(), neigh).unwrap();
    let stop = AtomicBool::new(false);
    let shared = w.shared();
    let c = std::thread::scope(|s| {
        let h = s.spawn(|| w.run(&stop));
        let t0 = std::time::Instant::now();
        while shared.load().pipeline.packets == 0 && t0.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap()
    });
    assert_once(&c.pipeline);
    assert_eq!(c.pipeline.packets, 1);
    assert_eq!(c.pipeline.forwarded, 0);
    assert_eq!(c.pipeline.dropped(DropReason::NoNeighbour), 1);
    assert_eq!(shared.load(), c);
}
