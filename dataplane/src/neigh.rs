//! Next hops for transmitted frames: the egress interface of a destination
//! (the interface whose subnet holds it, else the one the frame came in
//! on), that interface's MAC as source, and the destination's MAC from the
//! kernel's neighbour table as destination.
//!
//! The control side refreshes a [`NeighTable`] snapshot from netlink dumps
//! (not per packet) and publishes it through arc-swap; workers load it once
//! per burst. A worker that meets an unknown neighbour drops the frame,
//! counts it, and reports the address on a bounded lock-free queue; the
//! control side then makes the kernel resolve it (a datagram to the
//! discard port makes it send ARP / neighbour solicitation). The worker
//! holds such frames meanwhile (up to [`RESOLUTION_TIME`], as the kernel's
//! own unres_qlen queue does) and sends them once a snapshot of a newer
//! [`NeighTable::generation`] knows the MAC.

/// NETLINK_ROUTE dumps (links, addresses, neighbours) and their parsers.
pub mod netlink;

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use crossbeam_queue::ArrayQueue;

use crate::addr::Addr;

/// An Ethernet address.
pub type Mac = [u8; 6];

/// Unknown-neighbour reports held between two control-side passes; more
/// are counted and dropped (the same addresses come again on retransmit).
pub const MISS_QUEUE: usize = 1024;

/// How long the kernel tries to resolve a neighbour before it gives up:
/// `mcast_solicit` (3) probes `retrans_time_ms` (1 s) apart, its defaults.
/// A frame held for its next hop waits no longer: past this, the answer
/// is not coming and the sender's own retransmission will ask again.
pub const RESOLUTION_TIME: Duration = Duration::from_secs(3);

/// The discard service (RFC 863): a datagram there makes the kernel
/// resolve the neighbour, and at worst earns an ICMP port unreachable.
const DISCARD_PORT: u16 = 9;

/// One interface the gateway transmits on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub ifindex: u32,
    pub name: String,
    pub mac: Mac,
    /// On-link subnets: (network address, prefix length in Addr's 128 bits).
    pub nets: Vec<(Addr, u8)>,
}

/// Whether `a` lies in `net`/`bits` (both as 16-byte Addrs).
fn in_net(a: &Addr, net: &Addr, bits: u8) -> bool {
    let full = (bits / 8) as usize;
    if a.0[..full] != net.0[..full] {
        return false;
    }
    let rest = bits % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a.0[full] & mask == net.0[full] & mask
}

/// One immutable view of interfaces and neighbours.
#[derive(Clone, Debug, Default)]
pub struct NeighTable {
    ifaces: Vec<Iface>,
    entries: hashbrown::HashMap<(u32, Addr), Mac, ahash::RandomState>,
    /// Set when published: a worker holding frames compares it with the
    /// last one it looked at instead of looking up every held frame again.
    generation: u64,
}

impl NeighTable {
    /// Builds a snapshot from what netlink reported, keeping only the
    /// named interfaces (in that order) and their neighbours.
    pub fn build(
        names: &[String],
        links: &[netlink::Link],
        addrs: &[netlink::IfAddr],
        neighs: &[netlink::Neigh],
    ) -> Result<NeighTable, String> {
        let mut ifaces = Vec::with_capacity(names.len());
        for name in names {
            let link = links
                .iter()
                .find(|l| &l.name == name)
                .ok_or_else(|| format!("interface {name:?} not found (ip link)"))?;
            let mac = link
                .mac
                .ok_or_else(|| format!("interface {name:?} has no Ethernet address"))?;
            let nets = addrs
                .iter()
                .filter(|a| a.ifindex == link.ifindex)
                .map(|a| {
                    let bits = if a.addr.is_v4() {
                        96 + a.prefix.min(32)
                    } else {
                        a.prefix.min(128)
                    };
                    (a.addr, bits)
                })
                .collect();
            ifaces.push(Iface {
                ifindex: link.ifindex,
                name: name.clone(),
                mac,
                nets,
            });
        }
        let mut entries = hashbrown::HashMap::with_hasher(ahash::RandomState::new());
        for n in neighs {
            if ifaces.iter().any(|i| i.ifindex == n.ifindex) {
                entries.insert((n.ifindex, n.addr), n.mac);
            }
        }
        Ok(NeighTable {
            ifaces,
            entries,
            generation: 0,
        })
    }

    pub fn ifaces(&self) -> &[Iface] {
        &self.ifaces
    }

    /// Position in `ifaces()` of the interface with this index.
    #[inline]
    pub fn port_of(&self, ifindex: u32) -> Option<usize> {
        self.ifaces.iter().position(|i| i.ifindex == ifindex)
    }

    /// The port a frame to `dst` leaves on: the first interface with a
    /// subnet holding `dst`, else `rx_port` (one-armed).
    #[inline]
    pub fn egress(&self, dst: &Addr, rx_port: usize) -> usize {
        self.ifaces
            .iter()
            .position(|i| i.nets.iter().any(|(n, b)| in_net(dst, n, *b)))
            .unwrap_or(rx_port)
    }

    /// (source MAC, destination MAC) for a frame to `dst` on `port`.
    #[inline]
    pub fn next_hop(&self, port: usize, dst: &Addr) -> Option<(Mac, Mac)> {
        let i = self.ifaces.get(port)?;
        let mac = self.entries.get(&(i.ifindex, *dst))?;
        Some((i.mac, *mac))
    }

    pub fn neighbours(&self) -> usize {
        self.entries.len()
    }

    /// Whether any of the interfaces has a MAC for `addr`.
    pub fn knows(&self, addr: &Addr) -> bool {
        self.ifaces
            .iter()
            .any(|i| self.entries.contains_key(&(i.ifindex, *addr)))
    }

    /// Which publication this snapshot is: every [`Neighbours::refresh`]
    /// and [`Neighbours::publish`] takes a higher number.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// The published neighbour snapshot plus the miss queue. Share in an Arc.
pub struct Neighbours {
    names: Vec<String>,
    snap: ArcSwap<NeighTable>,
    misses: ArrayQueue<Addr>,
    misses_lost: AtomicU64,
    resolves: AtomicU64,
    /// The last generation published.
    generation: AtomicU64,
    /// Addresses asked about that the snapshot does not know yet, with
    /// when (control side only).
    awaiting: Mutex<Vec<(Addr, Instant)>>,
}

impl Neighbours {
    /// Reads interfaces and neighbours once (an error names the interface
    /// or the netlink failure).
    pub fn open(names: &[String]) -> Result<Neighbours, String> {
        let n = Neighbours {
            names: names.to_vec(),
            snap: ArcSwap::from_pointee(NeighTable::default()),
            misses: ArrayQueue::new(MISS_QUEUE),
            misses_lost: AtomicU64::new(0),
            resolves: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            awaiting: Mutex::new(Vec::new()),
        };
        n.refresh()?;
        Ok(n)
    }

    /// A fixed snapshot (tests, replay-like uses): never refreshed, but
    /// [`Neighbours::publish`] can replace it.
    pub fn fixed(table: NeighTable) -> Neighbours {
        Neighbours {
            names: table.ifaces.iter().map(|i| i.name.clone()).collect(),
            generation: AtomicU64::new(table.generation),
            snap: ArcSwap::from_pointee(table),
            misses: ArrayQueue::new(MISS_QUEUE),
            misses_lost: AtomicU64::new(0),
            resolves: AtomicU64::new(0),
            awaiting: Mutex::new(Vec::new()),
        }
    }

    /// Publishes `table` as the next generation (a refresh from another
    /// source; tests that make a neighbour appear).
    pub fn publish(&self, mut table: NeighTable) {
        table.generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.snap.store(Arc::new(table));
    }

    /// The current snapshot, for one burst.
    #[inline]
    pub fn load(&self) -> Guard<Arc<NeighTable>> {
        self.snap.load()
    }

    /// Called by a worker for a frame it had to drop: never blocks.
    #[inline]
    pub fn report_miss(&self, addr: Addr) {
        if self.misses.push(addr).is_err() {
            self.misses_lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Re-reads links, addresses and neighbours and publishes them.
    pub fn refresh(&self) -> Result<(), String> {
        let io = |what: &str, e: io::Error| format!("netlink {what} dump: {e}");
        let mut s = netlink::RouteSocket::open().map_err(|e| io("socket", e))?;
        let links = s.links().map_err(|e| io("link", e))?;
        let addrs = s.addrs().map_err(|e| io("address", e))?;
        let neighs = s.neighbours().map_err(|e| io("neighbour", e))?;
        let t = NeighTable::build(&self.names, &links, &addrs, &neighs)?;
        self.publish(t);
        Ok(())
    }

    /// Drains the miss queue and asks the kernel to resolve each address
    /// (once per call). Returns how many addresses it asked about now or
    /// still waits for (asked within [`RESOLUTION_TIME`], unknown to the
    /// snapshot): while that is not zero, re-read the snapshot soon, since
    /// workers hold frames until it knows their next hop.
    pub fn resolve_misses(&self) -> usize {
        let mut seen = HashSet::new();
        while let Some(a) = self.misses.pop() {
            seen.insert(a);
        }
        for a in &seen {
            self.resolve(a);
        }
        let snap = self.load();
        let known = seen.iter().filter(|a| snap.knows(a)).count();
        let mut awaiting = self.awaiting.lock().unwrap_or_else(PoisonError::into_inner);
        known + still_awaited(&mut awaiting, seen, &snap, Instant::now())
    }

    /// Makes the kernel resolve `addr` if it is not in the snapshot yet
    /// (e.g. every backend of a new table, before its first packet).
    pub fn resolve_if_unknown(&self, addr: &Addr) -> bool {
        let snap = self.load();
        let port = snap.egress(addr, usize::MAX);
        if port == usize::MAX || snap.next_hop(port, addr).is_some() {
            return false;
        }
        self.resolve(addr);
        let mut awaiting = self.awaiting.lock().unwrap_or_else(PoisonError::into_inner);
        still_awaited(&mut awaiting, [*addr], &snap, Instant::now());
        true
    }

    fn resolve(&self, addr: &Addr) {
        self.resolves.fetch_add(1, Ordering::Relaxed);
        let ip = addr.to_ip();
        let bind: SocketAddr = if ip.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        // Best effort: a failure leaves the frame's sender to retransmit
        // and the next miss to try again.
        if let Ok(s) = UdpSocket::bind(bind) {
            let _ = s.send_to(&[0u8], SocketAddr::new(ip, DISCARD_PORT));
        }
    }

    /// Reports dropped because the queue was full.
    pub fn misses_lost(&self) -> u64 {
        self.misses_lost.load(Ordering::Relaxed)
    }

    /// Resolutions requested so far.
    pub fn resolves(&self) -> u64 {
        self.resolves.load(Ordering::Relaxed)
    }
}

/// Adds the addresses just `asked` about (at `now`) to `awaiting` and
/// keeps those asked within [`RESOLUTION_TIME`] that `snap` does not know
/// yet. Returns how many that leaves.
fn still_awaited(
    awaiting: &mut Vec<(Addr, Instant)>,
    asked: impl IntoIterator<Item = Addr>,
    snap: &NeighTable,
    now: Instant,
) -> usize {
    for a in asked {
        match awaiting.iter_mut().find(|(b, _)| *b == a) {
            Some(e) => e.1 = now,
            None => awaiting.push((a, now)),
        }
    }
    awaiting.retain(|(a, at)| now.duration_since(*at) < RESOLUTION_TIME && !snap.knows(a));
    awaiting.len()
}

#[cfg(test)]
mod tests {
    use super::netlink::{IfAddr, Link, Neigh};
    use super::*;

    const MAC_C: Mac = [2, 0, 0, 0, 0, 1];
    const MAC_B: Mac = [2, 0, 0, 0, 0, 2];
    const PEER: Mac = [2, 0, 0, 0, 0, 9];

    fn v4(o: [u8; 4]) -> Addr {
        Addr::from_v4(o)
    }

    fn lab() -> NeighTable {
        let links = vec![
            Link {
                ifindex: 1,
                name: "lo".into(),
                mac: Some([0; 6]),
            },
            Link {
                ifindex: 4,
                name: "gwc".into(),
                mac: Some(MAC_C),
            },
            Link {
                ifindex: 5,
                name: "gwb".into(),
                mac: Some(MAC_B),
            },
        ];
        let addrs = vec![
            IfAddr {
                ifindex: 4,
                addr: v4([198, 18, 0, 1]),
                prefix: 24,
            },
            IfAddr {
                ifindex: 5,
                addr: v4([198, 18, 1, 1]),
                prefix: 24,
            },
            IfAddr {
                ifindex: 5,
                addr: Addr::from_v6([0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
                prefix: 64,
            },
        ];
        let neighs = vec![
            Neigh {
                ifindex: 5,
                addr: v4([198, 18, 1, 10]),
                mac: PEER,
            },
            // On an interface we do not use: ignored.
            Neigh {
                ifindex: 1,
                addr: v4([198, 18, 1, 11]),
                mac: PEER,
            },
        ];
        NeighTable::build(&["gwc".into(), "gwb".into()], &links, &addrs, &neighs).unwrap()
    }

    #[test]
    fn egress_follows_subnets_else_rx_port() {
        let t = lab();
        assert_eq!(t.egress(&v4([198, 18, 0, 2]), 1), 0);
        assert_eq!(t.egress(&v4([198, 18, 1, 10]), 0), 1);
        let v6 = Addr::from_v6([0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        assert_eq!(t.egress(&v6, 0), 1);
        // Off-link: back out where it came from.
        assert_eq!(t.egress(&v4([198, 19, 0, 10]), 0), 0);
        assert_eq!(t.egress(&v4([198, 19, 0, 10]), 1), 1);
    }

    #[test]
    fn next_hop_uses_egress_mac_and_neighbour() {
        let t = lab();
        assert_eq!(t.next_hop(1, &v4([198, 18, 1, 10])), Some((MAC_B, PEER)));
        assert_eq!(t.next_hop(1, &v4([198, 18, 1, 11])), None);
        assert_eq!(t.next_hop(0, &v4([198, 18, 1, 10])), None);
        assert_eq!(t.next_hop(7, &v4([198, 18, 1, 10])), None);
        assert_eq!(t.neighbours(), 1);
    }

    #[test]
    fn unknown_interface_is_an_error_naming_it() {
        let e = NeighTable::build(&["nope0".into()], &[], &[], &[]).unwrap_err();
        assert!(e.contains("nope0"), "{e}");
    }

    #[test]
    fn prefix_match_respects_partial_bytes() {
        let net = v4([198, 18, 0, 0]);
        assert!(in_net(&v4([198, 19, 255, 1]), &net, 96 + 15));
        assert!(!in_net(&v4([198, 20, 0, 1]), &net, 96 + 15));
        assert!(!in_net(&v4([198, 18, 0, 7]), &net, 128));
        // /0 inside the v4-mapped space: every IPv4 address, no IPv6 one.
        assert!(in_net(&v4([203, 0, 113, 1]), &net, 96));
        assert!(!in_net(&Addr::from_v6([0xfd; 16]), &net, 96));
    }

    #[test]
    fn each_publication_takes_a_higher_generation() {
        let n = Neighbours::fixed(lab());
        let first = n.load();
        assert_eq!(first.generation(), 0);
        n.publish(lab());
        let second = n.load();
        n.publish(NeighTable::default());
        let third = n.load();
        assert!(second.generation() > first.generation());
        assert!(third.generation() > second.generation());
        assert_eq!(third.neighbours(), 0, "the published table is served");
        // A snapshot a worker still holds keeps its number.
        assert_eq!(first.generation(), 0);
    }

    #[test]
    fn addresses_are_awaited_until_known_or_too_old() {
        let t = lab();
        let known = v4([198, 18, 1, 10]);
        let (a, b) = (v4([198, 18, 1, 20]), v4([198, 18, 1, 21]));
        let t0 = Instant::now();
        let mut w = Vec::new();
        assert_eq!(still_awaited(&mut w, [a, known], &t, t0), 1);
        let t1 = t0 + Duration::from_secs(2);
        // Asked again: waited for from then on.
        assert_eq!(still_awaited(&mut w, [b, a], &t, t1), 2);
        assert_eq!(still_awaited(&mut w, [], &t, t1 + RESOLUTION_TIME / 2), 2);
        assert_eq!(still_awaited(&mut w, [], &t, t1 + RESOLUTION_TIME), 0);
        // Known now: no longer awaited.
        let links = [Link {
            ifindex: 5,
            name: "gwb".into(),
            mac: Some(MAC_B),
        }];
        let neighs = [Neigh {
            ifindex: 5,
            addr: a,
            mac: PEER,
        }];
        let t2 = NeighTable::build(&["gwb".into()], &links, &[], &neighs).unwrap();
        assert!(t2.knows(&a) && !t2.knows(&b));
        assert_eq!(still_awaited(&mut w, [a, b], &t, t0), 2);
        assert_eq!(still_awaited(&mut w, [], &t2, t0), 1);
        assert_eq!(w, vec![(b, t0)]);
    }

    #[test]
    fn misses_are_bounded_and_counted() {
        let n = Neighbours::fixed(lab());
        for i in 0..(MISS_QUEUE + 5) {
            n.report_miss(v4([198, 18, 1, (i % 200) as u8]));
        }
        assert_eq!(n.misses_lost(), 5);
    }
}
