//! Two workers over frames fed by hand, the way fanout might spread them:
//! forward packets and replies of a flow land on different workers, and
//! only the handoff makes the reply meet the flow's conntrack entry.

use std::net::{IpAddr, Ipv4Addr};

use fixtures::flow::{Host, Nat};
use fixtures::packet::{Tcp, L4};

use super::tests::{
    neighbours, tables, ACK, BACKEND, BACKEND_MAC, CLIENT, CLIENT_MAC, PORT_MAC, SYN, VIP,
};
use super::*;
use crate::addr::Addr;
use crate::steer;

pub(super) use crate::io::feed::{FeedIo, Frames, Sent};

fn nat(k: u16) -> Nat {
    Nat::new(
        Host {
            mac: CLIENT_MAC,
            ip: IpAddr::V4(Ipv4Addr::from(CLIENT)),
        },
        40000 + k,
        IpAddr::V4(Ipv4Addr::from(VIP)),
        80,
        Host {
            mac: BACKEND_MAC,
            ip: IpAddr::V4(Ipv4Addr::from(BACKEND)),
        },
        8080,
    )
}

struct Lab {
    workers: Vec<Worker<FeedIo>>,
    feeds: Vec<Frames>,
    sent: Vec<Sent>,
}

/// Two workers on one interface, in one group or (`grouped` false) two
/// lone workers, each with its own conntrack.
fn lab(grouped: bool, lane_slots: usize) -> Lab {
    lab_knowing(grouped, lane_slots, true)
}

/// [`lab`], knowing the client's MAC only if `client_known`.
fn lab_knowing(grouped: bool, lane_slots: usize, client_known: bool) -> Lab {
    let handoff = Handoff::with_lane_slots(2, lane_slots);
    let mut l = Lab {
        workers: Vec::new(),
        feeds: Vec::new(),
        sent: Vec::new(),
    };
    for me in 0..2 {
        let (io, feed, sent) = FeedIo::new();
        let ports = vec![Port { io, ifindex: 3 }];
        let cfg = WorkerConfig::default();
        let w = if grouped {
            Worker::in_group(
                ports,
                &cfg,
                tables(),
                neighbours(client_known),
                &handoff,
                me,
            )
        } else {
            Worker::new(ports, &cfg, tables(), neighbours(client_known))
        };
        l.workers.push(w.unwrap());
        l.feeds.push(feed);
        l.sent.push(sent);
    }
    l
}

impl Lab {
    fn rounds(&mut self, n: u64) {
        for r in 0..n {
            for w in &mut self.workers {
                w.poll_once(1_000_000_000 + r);
            }
        }
    }

    fn total(&self) -> WorkerCounters {
        let c: Vec<_> = self.workers.iter().map(|w| w.counters()).collect();
        WorkerCounters::total(&c)
    }
}

fn owner_of(frame: &[u8]) -> usize {
    let t = tables();
    steer::owner(frame, &t.load(), 2)
}

const FLOWS: u16 = 64;

/// Forward SYNs land on worker k % 2, SYN-ACK replies on the other one.
fn split_flows(l: &mut Lab) -> (Vec<usize>, u64) {
    let mut owners = Vec::new();
    let mut misplaced = 0;
    for k in 0..FLOWS {
        let (syn, _) = nat(k).forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN)));
        let o = owner_of(&syn);
        owners.push(o);
        let at = k as usize % 2;
        misplaced += (at != o) as u64;
        l.feeds[at].borrow_mut().push_back(syn);
    }
    l.rounds(3);
    for k in 0..FLOWS {
        let (synack, _) = nat(k).reply(L4::Tcp(Tcp::new(0, 0, 7, 2, SYN | ACK)));
        assert_eq!(owner_of(&synack), owners[k as usize], "reply owner");
        let at = (k as usize + 1) % 2;
        misplaced += (at != owners[k as usize]) as u64;
        l.feeds[at].borrow_mut().push_back(synack);
    }
    l.rounds(3);
    (owners, misplaced)
}

/// Replies to a client whose MAC is unknown are held wherever they are
/// processed (on the owner's inbox or its own port), then dropped when
/// they waited too long: counted once per worker, first as reversed, at
/// the end as no_neighbour only.
#[test]
fn handed_over_frames_without_neighbour_are_counted_once() {
    let mut l = lab_knowing(true, handoff::LANE_SLOTS, false);
    let (_, misplaced) = split_flows(&mut l);
    assert!(misplaced > 0);
    let balanced = |l: &Lab| {
        for (w, worker) in l.workers.iter().enumerate() {
            let p = worker.counters().pipeline;
            let sum = p.forwarded + p.reversed + p.rejected + p.passed + p.dropped_total();
            assert_eq!(sum, p.packets, "worker {w}: {p:?}");
        }
    };
    balanced(&l);
    let t = l.total();
    assert_eq!(t.handoff_in, misplaced);
    assert_eq!(t.pipeline.packets, 2 * FLOWS as u64);
    assert_eq!(t.pipeline.forwarded, FLOWS as u64, "{t:?}");
    assert_eq!(t.pipeline.reversed, FLOWS as u64, "held: {t:?}");
    assert_eq!(t.pipeline.dropped_total(), 0, "{t:?}");
    let held: usize = l.workers.iter().map(|w| w.held()).sum();
    assert_eq!(held, FLOWS as usize);
    for w in &mut l.workers {
        w.poll_once(1_000_000_000 + pending::HOLD_NS + 10);
    }
    balanced(&l);
    let t = l.total();
    assert_eq!(t.pipeline.reversed, 0, "{t:?}");
    assert_eq!(
        t.pipeline.dropped(DropReason::NoNeighbour),
        FLOWS as u64,
        "{t:?}"
    );
    assert_eq!(t.tx_sent, FLOWS as u64);
    assert_eq!(t.neigh_held_sent, 0);
}

#[test]
fn replies_meet_their_flow_on_the_owner_worker() {
    let mut l = lab(true, handoff::LANE_SLOTS);
    let (owners, misplaced) = split_flows(&mut l);
    // Both workers own some flows, or the test proves nothing.
    let on0 = owners.iter().filter(|&&o| o == 0).count();
    assert!(on0 > 0 && on0 < FLOWS as usize, "owners {owners:?}");
    assert_eq!(
        misplaced, FLOWS as u64,
        "each flow has one misplaced packet"
    );

    let t = l.total();
    assert_eq!(t.pipeline.forwarded, FLOWS as u64, "{t:?}");
    assert_eq!(t.pipeline.reversed, FLOWS as u64, "{t:?}");
    assert_eq!(t.pipeline.passed, 0, "{t:?}");
    assert_eq!(t.pipeline.dropped_total(), 0, "{t:?}");
    assert_eq!(t.handoff_out, misplaced);
    assert_eq!(t.handoff_in, misplaced);
    assert_eq!(t.handoff_dropped(), 0);
    assert_eq!(t.tx_sent, 2 * FLOWS as u64);
    // Each worker's pipeline saw exactly the flows it owns, both ways.
    for (w, worker) in l.workers.iter().enumerate() {
        let c = worker.counters();
        let owned = owners.iter().filter(|&&o| o == w).count() as u64;
        assert_eq!(c.pipeline.forwarded, owned, "worker {w}");
        assert_eq!(c.pipeline.reversed, owned, "worker {w}");
        assert_eq!(c.pipeline.flows, owned, "worker {w}");
    }
    // Every frame went out with its next hop's MACs: backends got the
    // SYNs, the client got the SYN-ACKs (from the owner, whichever worker
    // received it).
    let sent: Vec<Vec<u8>> = l.sent.iter().flat_map(|s| s.borrow().clone()).collect();
    assert_eq!(sent.len(), 2 * FLOWS as usize);
    let to_backend = sent.iter().filter(|f| f[0..6] == BACKEND_MAC).count();
    let to_client = sent.iter().filter(|f| f[0..6] == CLIENT_MAC).count();
    assert_eq!((to_backend, to_client), (FLOWS as usize, FLOWS as usize));
    assert!(sent.iter().all(|f| f[6..12] == PORT_MAC));
    for f in sent.iter().filter(|f| f[0..6] == CLIENT_MAC) {
        assert_eq!(l2::l3_dst(f), Some(Addr::from_v4(CLIENT)));
    }
}

/// The control: without handoff every reply reaches a conntrack that never
/// saw its flow and is passed, not reversed.
#[test]
fn without_handoff_misplaced_replies_miss_their_flow() {
    let mut l = lab(false, handoff::LANE_SLOTS);
    split_flows(&mut l);
    let t = l.total();
    assert_eq!(t.pipeline.forwarded, FLOWS as u64, "{t:?}");
    assert_eq!(t.pipeline.reversed, 0, "{t:?}");
    assert_eq!(t.pipeline.passed, FLOWS as u64, "{t:?}");
    assert_eq!(t.handoff_out + t.handoff_in, 0);
}

#[test]
fn a_full_inbox_lane_drops_and_counts() {
    let mut l = lab(true, 4);
    // 20 SYNs owned by worker 1, all received by worker 0 in one burst.
    let mut k = 0;
    let mut fed = 0;
    while fed < 20 {
        let (syn, _) = nat(k).forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN)));
        k += 1;
        if owner_of(&syn) == 1 {
            l.feeds[0].borrow_mut().push_back(syn);
            fed += 1;
        }
    }
    l.workers[0].poll_once(1_000_000_000);
    let c0 = l.workers[0].counters();
    assert_eq!((c0.handoff_out, c0.handoff_full), (4, 16), "{c0:?}");
    assert_eq!(
        c0.pipeline.packets, 0,
        "nothing was processed by a non-owner"
    );
    l.workers[1].poll_once(1_000_000_000);
    let c1 = l.workers[1].counters();
    assert_eq!(c1.handoff_in, 4);
    assert_eq!(c1.pipeline.forwarded, 4);
    // Released slots take new frames again.
    let (syn, _) = (k..)
        .map(|k| nat(k).forward(L4::Tcp(Tcp::new(0, 0, 1, 0, SYN))))
        .find(|(f, _)| owner_of(f) == 1)
        .unwrap();
    l.feeds[0].borrow_mut().push_back(syn);
    l.rounds(1);
    assert_eq!(l.workers[0].counters().handoff_out, 5);
    assert_eq!(l.workers[1].counters().pipeline.forwarded, 5);
}

#[test]
fn a_group_of_one_is_a_lone_worker_and_bad_indexes_are_refused() {
    let (io, _, _) = FeedIo::new();
    let one = Handoff::new(1);
    let w = Worker::in_group(
        vec![Port { io, ifindex: 3 }],
        &WorkerConfig::default(),
        tables(),
        neighbours(true),
        &one,
        0,
    )
    .unwrap();
    assert!(w.group.is_none());
    let two = Handoff::with_lane_slots(2, 4);
    let (io, _, _) = FeedIo::new();
    let r = Worker::in_group(
        vec![Port { io, ifindex: 3 }],
        &WorkerConfig::default(),
        tables(),
        neighbours(true),
        &two,
        2,
    );
    assert!(r.is_err());
}
