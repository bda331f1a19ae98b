//! The `conntrack` target: a sequence of table operations (insert, lookups
//! from both sides, updates with TCP flags, removal, expiry with an
//! advancing clock) against a small `Conntrack`, checked after every step
//! against a model of which flows exist and until when.
//!
//! All TCP states get one timeout, so the model needs no TCP state machine
//! to know every deadline; UDP keeps separate unreplied / assured timeouts.
//! The model is exact: the only flows it cannot predict losing are the ones
//! evicted to make room, and each eviction must show in the statistics and
//! take a flow that was not assured.
//!
//! Invariants: `len() <= capacity()`; the statistics account for every
//! flow (inserted - removed - expired - evicted = len); the table and the
//! model agree on which flows are live, their deadlines and backends; an
//! existing flow keeps its backend when inserted again; a UDP/ICMP flow is
//! assured exactly when it has seen a reply; an evicted flow was unassured;
//! an insert is refused only when every slot holds a live assured flow.

use dataplane::addr::{Addr, Proto, Tuple};
use dataplane::conntrack::{Config, Conntrack, Direction, InsertError, Timeouts};

use crate::input::Input;

/// Flows of the pool: more than the largest capacity, so the table fills.
const POOL: usize = 24;
const MAX_CAPACITY: usize = 16;
/// Operations per run.
const MAX_OPS: usize = 512;

/// One flow of the pool. Client ports differ, so reply tuples never collide
/// (the table's documented limit, see its module docs).
struct Flow {
    original: Tuple,
    backend: Addr,
    port: u16,
}

fn pool(k: usize) -> Flow {
    let v6 = k % 2 == 1;
    let proto = match (k % 3, v6) {
        (0, _) => Proto::Tcp,
        (1, _) => Proto::Udp,
        (_, false) => Proto::Icmp,
        (_, true) => Proto::Icmpv6,
    };
    let ip = |net: u8, host: u8| {
        if v6 {
            Addr::from_v6([0xfd, 0, 0, 0x18, 0, net, 0, 0, 0, 0, 0, 0, 0, 0, 0, host])
        } else {
            Addr::from_v4([198, 18, net, host])
        }
    };
    let cport = 40000 + k as u16;
    let icmp = matches!(proto, Proto::Icmp | Proto::Icmpv6);
    Flow {
        original: Tuple {
            src: ip(0, 1 + (k % 4) as u8),
            dst: if v6 {
                Addr::from_v6([0xfd, 0, 0, 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10])
            } else {
                Addr::from_v4([198, 19, 0, 10])
            },
            sport: cport,
            dport: if icmp { cport } else { 80 },
            proto,
        },
        backend: ip(1, 10 + (k % 3) as u8),
        port: if icmp { cport } else { 8080 },
    }
}

/// What the model knows of a live flow.
#[derive(Clone, Copy, Debug)]
struct Model {
    deadline: u32,
    replied: bool,
    backend: Addr,
}

fn reply(t: &Tuple, backend: Addr, port: u16) -> Tuple {
    Tuple {
        src: backend,
        dst: t.src,
        sport: port,
        dport: t.sport,
        proto: t.proto,
    }
}

struct Run {
    ct: Conntrack,
    timeouts: Timeouts,
    model: [Option<Model>; POOL],
    now: u32,
}

impl Run {
    /// The model's timeout (every TCP state has the same one, see `run`).
    fn timeout(&self, proto: Proto, replied: bool) -> u32 {
        let t = &self.timeouts;
        match proto {
            Proto::Tcp | Proto::Sctp => t.tcp_established,
            Proto::Udp if replied => t.udp_assured,
            Proto::Udp => t.udp_unreplied,
            Proto::Icmp | Proto::Icmpv6 => t.icmp,
        }
    }

    fn live(&self, k: usize) -> Option<Model> {
        self.model[k].filter(|m| self.now < m.deadline)
    }

    /// The live flows as the table holds them: (pool index, assured).
    fn snapshot(&mut self) -> Vec<(usize, bool)> {
        // Ticks the table's clock to `now` without freeing anything, so
        // that `iter` hides exactly the flows dead by now.
        self.ct.expire(self.now, 0);
        self.ct
            .iter()
            .map(|e| {
                let k = usize::from(e.original.sport - 40000);
                (k, e.assured())
            })
            .collect()
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let capacity = 1 + inp.below(MAX_CAPACITY) as u32;
    let tcp = 1 + u32::from(inp.u8());
    let timeouts = Timeouts {
        tcp_syn_sent: tcp,
        tcp_syn_recv: tcp,
        tcp_established: tcp,
        tcp_fin_wait: tcp,
        tcp_close_wait: tcp,
        tcp_last_ack: tcp,
        tcp_time_wait: tcp,
        tcp_close: tcp,
        udp_unreplied: 1 + u32::from(inp.u8()),
        udp_assured: 1 + u32::from(inp.u8()),
        icmp: 1 + u32::from(inp.u8()),
        // No SCTP flows in the pool (yet): the same as TCP, as the model has it.
        sctp_cookie_wait: tcp,
        sctp_cookie_echoed: tcp,
        sctp_established: tcp,
        sctp_shutdown_sent: tcp,
        sctp_shutdown_recd: tcp,
        sctp_shutdown_ack_sent: tcp,
        sctp_closed: tcp,
    };
    let mut r = Run {
        ct: Conntrack::new(Config {
            capacity,
            timeouts,
            ..Config::default()
        }),
        timeouts,
        model: [None; POOL],
        now: u32::from(inp.u8()),
    };
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let before = r.snapshot();
        let stats = r.ct.stats();
        let op = inp.u8();
        let k = inp.below(POOL);
        match op % 9 {
            0 | 1 => insert(&mut r, &mut inp, k, &before),
            2 => find(&mut r, k, false),
            3 => find(&mut r, k, true),
            4 | 5 => update(&mut r, &mut inp, k),
            6 => remove(&mut r, k),
            7 => {
                let b = inp.u8();
                r.now = match b {
                    // Rarely, near the end of the clock: deadlines saturate.
                    // The clock never goes back (the dataplane's never does).
                    254.. => r.now.max(u32::MAX - u32::from(b - 254) * 300),
                    _ => r.now.saturating_add(u32::from(b % 64)),
                };
            }
            _ => {
                let budget = inp.below(2 * MAX_CAPACITY + 1);
                let freed = r.ct.expire(r.now, budget);
                assert!(freed <= budget, "expire freed {freed} of budget {budget}");
            }
        }
        check(&mut r, &before, stats.evicted_unreplied);
    }
}

fn tcp_flags(inp: &mut Input) -> u8 {
    match inp.below(8) {
        0 => 0x02,
        1 => 0x12,
        2 => 0x10,
        3 => 0x11,
        4 => 0x04,
        5 => 0x14,
        6 => 0x01,
        _ => inp.u8(),
    }
}

fn insert(r: &mut Run, inp: &mut Input, k: usize, before: &[(usize, bool)]) {
    let f = pool(k);
    let flags = tcp_flags(inp);
    // Sometimes another backend: an existing flow must not move to it.
    let backend = if inp.bool() {
        Addr::from_v4([198, 18, 1, 20])
    } else {
        f.backend
    };
    let prior = r.live(k);
    match r.ct.insert(&f.original, backend, f.port, flags, r.now) {
        Ok(id) => {
            let e = *r.ct.entry(id);
            assert_eq!(e.original, f.original, "insert returned another flow");
            let m = match prior {
                Some(m) => {
                    assert_eq!(e.backend, m.backend, "flow {k} moved to another backend");
                    m
                }
                None => Model {
                    deadline: 0,
                    replied: false,
                    backend,
                },
            };
            let deadline = r.now.saturating_add(r.timeout(f.original.proto, m.replied));
            r.model[k] = Some(Model { deadline, ..m });
        }
        Err(InsertError::Full) => {
            assert!(prior.is_none(), "insert of live flow {k} refused");
            let cap = r.ct.capacity();
            assert_eq!(
                before.len(),
                cap,
                "refused with free or dead slots: {before:?}"
            );
            assert!(
                before.iter().all(|&(_, assured)| assured),
                "refused while unassured flows could be evicted: {before:?}"
            );
        }
    }
}

fn find(r: &mut Run, k: usize, from_reply: bool) {
    let f = pool(k);
    let want = r.live(k);
    let found = if from_reply {
        let backend = want.map_or(f.backend, |m| m.backend);
        r.ct.find_reply(&reply(&f.original, backend, f.port), r.now)
    } else {
        r.ct.find_original(&f.original, r.now)
    };
    assert_eq!(
        found.is_some(),
        want.is_some(),
        "flow {k} at {}: table and model disagree",
        r.now
    );
    if let Some(id) = found {
        assert_eq!(
            r.ct.entry(id).original,
            f.original,
            "lookup of {k} found another flow"
        );
    }
}

fn update(r: &mut Run, inp: &mut Input, k: usize) {
    let f = pool(k);
    let from_reply = inp.bool();
    let flags = tcp_flags(inp);
    let found = r.ct.find_original(&f.original, r.now);
    assert_eq!(
        found.is_some(),
        r.live(k).is_some(),
        "flow {k} at {}",
        r.now
    );
    let Some(id) = found else {
        return;
    };
    let dir = if from_reply {
        Direction::Reply
    } else {
        Direction::Original
    };
    r.ct.update(id, dir, flags, r.now);
    let Some(mut m) = r.model[k] else {
        return;
    };
    m.replied |= from_reply;
    m.deadline = r.now.saturating_add(r.timeout(f.original.proto, m.replied));
    r.model[k] = Some(m);
}

fn remove(r: &mut Run, k: usize) {
    let f = pool(k);
    if let Some(id) = r.ct.find_original(&f.original, r.now) {
        r.ct.remove(id);
    }
    r.model[k] = None;
    assert!(
        r.ct.find_original(&f.original, r.now).is_none(),
        "flow {k} still found"
    );
    assert!(
        r.ct.find_reply(&reply(&f.original, f.backend, f.port), r.now)
            .is_none()
            && r.ct
                .find_reply(
                    &reply(&f.original, Addr::from_v4([198, 18, 1, 20]), f.port),
                    r.now
                )
                .is_none(),
        "flow {k} still found from the reply side"
    );
}

/// After each step: the table and the model agree, evictions aside.
fn check(r: &mut Run, before: &[(usize, bool)], evicted_before: u64) {
    let table = r.snapshot();
    let st = r.ct.stats();
    let len = r.ct.len() as u64;
    assert!(
        r.ct.len() <= r.ct.capacity(),
        "len {} over capacity",
        r.ct.len()
    );
    assert_eq!(
        st.inserted - st.removed_closed - st.expired - st.evicted_unreplied,
        len,
        "statistics do not account for the flows: {st:?}"
    );
    assert!(table.len() as u64 <= len);
    let evicted = st.evicted_unreplied - evicted_before;
    let mut vanished = 0;
    for k in 0..POOL {
        let held =
            r.ct.iter()
                .find(|e| e.original == pool(k).original)
                .copied();
        match (r.live(k), held) {
            (Some(m), Some(e)) => {
                assert_eq!(e.deadline(), m.deadline, "flow {k}: deadline");
                assert_eq!(e.backend, m.backend, "flow {k}: backend");
                if e.original.proto != Proto::Tcp {
                    assert_eq!(e.assured(), m.replied, "flow {k}: assured is replied");
                }
            }
            (Some(_), None) => {
                // Only an eviction may take a live flow, and only an unassured one.
                let was = before.iter().find(|&&(j, _)| j == k);
                assert_eq!(
                    was.map(|w| w.1),
                    Some(false),
                    "live flow {k} lost (was {was:?})"
                );
                vanished += 1;
                r.model[k] = None;
            }
            (None, Some(e)) => panic!(
                "flow {k} held past its end or never made: {e:?} at {}",
                r.now
            ),
            (None, None) => r.model[k] = None,
        }
    }
    assert_eq!(
        vanished, evicted,
        "evictions counted {evicted}, flows lost {vanished}"
    );
}
