//! Connection tracking: one bounded table per worker, no locks, no atomics.
//!
//! A flow is a client talking to a service VIP, DNATed to a backend. Both
//! directions find the same entry:
//! - original, as received from the client: `client:cport -> vip:vport`
//! - reply, as received from the backend: `backend:bport -> client:cport`
//!
//! The index holds two keys per flow (one per direction, told apart by a
//! direction bit), so both lookups are one hash and one probe.
//!
//! Memory is allocated once, in [`Conntrack::new`]: 64-byte entries (the hot
//! part a lookup touches), a parallel array of list links (cold), and the
//! index. Nothing grows afterwards.
//!
//! Eviction classes. A flow is *assured* once it has proven to be a real
//! conversation: UDP/ICMP after the first reply, TCP once it is Established
//! and has seen a reply. Every other flow (unreplied, embryonic handshakes,
//! connections that reached TimeWait/Close) sits on one eviction list in
//! least-recently-seen order. When the table is full, `insert` takes the
//! head of that list, then looks for an expired entry in a bounded scan, and
//! otherwise refuses: a SYN flood churns through its own entries and never
//! displaces an established flow.
//!
//! A [`FlowId`] names a slot. It stays valid until that flow is removed,
//! expired or evicted, i.e. until the next `insert`, `remove`, `expire` or
//! a lookup that finds it expired; a worker uses it within one packet.
//!
//! Known limit: two flows whose reply tuples collide (one client port to two
//! VIPs that DNAT to the same backend port) are both stored, but a reply
//! lookup returns only the older one; resolving that needs source NAT.

/// Open-addressing lookup index (linear probing, no tombstones).
mod index;
/// Intrusive lists over entry indices (free slots, eviction order).
mod list;
/// The SCTP association state machine (netfilter-like, no tag tracking).
pub mod sctp;
/// The TCP state machine (netfilter-like, no window tracking).
pub mod tcp;
/// Idle timeouts by protocol and TCP / SCTP state.
pub mod timeouts;

#[cfg(test)]
mod tests;

use std::hash::{BuildHasher, Hasher};

use crate::addr::{Addr, Tuple};
use index::Index;
use list::{Link, List};
pub use timeouts::Timeouts;

/// Table size and timeouts, fixed for the table's lifetime.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Config {
    /// Maximum number of flows; clamped to `1..=MAX_CAPACITY`.
    pub capacity: u32,
    pub timeouts: Timeouts,
    /// The gateway's source-NAT address per family (`[IPv4, IPv6]`): where
    /// the replies of source-NATed flows arrive. Unused without such flows.
    pub snat: [Addr; 2],
}

impl Default for Config {
    fn default() -> Config {
        Config {
            capacity: 1 << 20,
            timeouts: Timeouts::default(),
            snat: [Addr([0; 16]); 2],
        }
    }
}

/// Largest capacity: index values are `entry << 1 | direction` in 32 bits and
/// the all-ones value marks an empty index slot.
pub const MAX_CAPACITY: u32 = 1 << 30;

/// How many slots a full-table `insert` examines for an expired entry before
/// giving up: bounds the worst-case cost of a refused insert.
const EVICT_SCAN: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    Original,
    Reply,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TcpState {
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
}

impl TcpState {
    pub const ALL: [TcpState; 8] = [
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
    ];

    /// The name `conntrack -L` shows for the same state.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
        }
    }
}

/// SCTP association states, as netfilter's `nf_conntrack_proto_sctp`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SctpState {
    /// INIT seen from the client.
    CookieWait,
    /// COOKIE ECHO seen from the client.
    CookieEchoed,
    /// COOKIE ACK seen from the backend.
    Established,
    /// SHUTDOWN from the client.
    ShutdownSent,
    /// SHUTDOWN from the backend.
    ShutdownRecd,
    ShutdownAckSent,
    /// SHUTDOWN COMPLETE or ABORT seen.
    Closed,
}

impl SctpState {
    pub const ALL: [SctpState; 7] = [
        SctpState::CookieWait,
        SctpState::CookieEchoed,
        SctpState::Established,
        SctpState::ShutdownSent,
        SctpState::ShutdownRecd,
        SctpState::ShutdownAckSent,
        SctpState::Closed,
    ];

    /// The name `conntrack -L` shows for the same state.
    pub fn name(self) -> &'static str {
        match self {
            SctpState::CookieWait => "COOKIE_WAIT",
            SctpState::CookieEchoed => "COOKIE_ECHOED",
            SctpState::Established => "ESTABLISHED",
            SctpState::ShutdownSent => "SHUTDOWN_SENT",
            SctpState::ShutdownRecd => "SHUTDOWN_RECD",
            SctpState::ShutdownAckSent => "SHUTDOWN_ACK_SENT",
            SctpState::Closed => "CLOSED",
        }
    }
}

/// A tracked flow's slot in the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlowId(u32);

impl FlowId {
    /// The slot number (for logs and the admin endpoint).
    #[inline]
    pub fn index(self) -> u32 {
        self.0
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InsertError {
    /// Every slot holds a live assured flow.
    Full,
}

/// Entry flag bits (`Entry::flags`); the low bits belong to `tcp`.
const FLAG_USED: u8 = 0x80;
const FLAG_ASSURED: u8 = 0x40;
/// A reply-direction packet has been seen.
const FLAG_REPLIED: u8 = 0x20;
const TCP_BITS: u8 = tcp::FLAG_FIRST_FIN_REPLY;

// The state byte indexes the ALL arrays: their order is the declaration order.
const _: () = assert!(TcpState::ALL[6] as u8 == 6 && SctpState::ALL[6] as u8 == 6);

/// `state` byte of a TCP state.
#[inline]
fn tcp_index(s: TcpState) -> u8 {
    s as u8
}

/// `state` byte of an SCTP state.
#[inline]
fn sctp_index(s: SctpState) -> u8 {
    s as u8
}

/// One tracked flow: exactly one cache line. The original tuple and the
/// translated one are both explicit: the backend endpoint the flow goes to,
/// and, for a source-NATed flow, the gateway port it leaves from (the
/// gateway's address of the family is the table's, see
/// [`Conntrack::with_snat`]). Protocol state, replied and eviction class
/// are packed into two bytes so that both tuples fit the line.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
pub struct Entry {
    /// The flow as the client sent it (to the VIP).
    pub original: Tuple,
    pub backend: Addr,
    pub backend_port: u16,
    /// The source port the flow leaves with when source-NATed, else 0.
    pub snat_port: u16,
    /// TCP or SCTP state (by the original tuple's protocol) as its index
    /// in `TcpState::ALL` / `SctpState::ALL`; unused for UDP/ICMP.
    state: u8,
    pub(crate) flags: u8,
    /// Dataplane-clock second at which the flow is gone unless refreshed.
    pub(crate) deadline: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 64);

impl Entry {
    const FREE: Entry = Entry {
        original: Tuple {
            src: Addr([0; 16]),
            dst: Addr([0; 16]),
            sport: 0,
            dport: 0,
            proto: crate::addr::Proto::Udp,
        },
        backend: Addr([0; 16]),
        backend_port: 0,
        snat_port: 0,
        state: 0,
        flags: 0,
        deadline: 0,
    };

    /// The TCP state; `None` but for TCP.
    #[inline]
    pub fn tcp(&self) -> Option<TcpState> {
        match self.original.proto {
            crate::addr::Proto::Tcp => Some(TcpState::ALL[usize::from(self.state) & 7]),
            _ => None,
        }
    }

    /// The SCTP state; `None` but for SCTP.
    #[inline]
    pub fn sctp(&self) -> Option<SctpState> {
        match self.original.proto {
            crate::addr::Proto::Sctp => {
                Some(SctpState::ALL[usize::from(self.state).min(SctpState::ALL.len() - 1)])
            }
            _ => None,
        }
    }

    /// A reply-direction packet has been seen.
    #[inline]
    pub fn replied(&self) -> bool {
        self.flags & FLAG_REPLIED != 0
    }

    /// The flow's packets leave from a gateway address and port.
    #[inline]
    pub fn snat(&self) -> bool {
        self.snat_port != 0
    }

    /// The flow as the backend's replies arrive: `backend:bport ->
    /// client:cport`, or `-> snat_addr:snat_port` when source-NATed
    /// (`snat_addr`: the table's address of the flow's family).
    #[inline]
    pub fn reply_tuple_with(&self, snat_addr: Addr) -> Tuple {
        let (dst, dport) = if self.snat() {
            (snat_addr, self.snat_port)
        } else {
            (self.original.src, self.original.sport)
        };
        Tuple {
            src: self.backend,
            dst,
            sport: self.backend_port,
            dport,
            proto: self.original.proto,
        }
    }

    /// Dataplane-clock second at which the flow expires unless refreshed.
    #[inline]
    pub fn deadline(&self) -> u32 {
        self.deadline
    }

    /// Protected from eviction (see the module docs).
    #[inline]
    pub fn assured(&self) -> bool {
        self.flags & FLAG_ASSURED != 0
    }

    #[inline]
    fn used(&self) -> bool {
        self.flags & FLAG_USED != 0
    }

    #[inline]
    fn expired(&self, now: u32) -> bool {
        now >= self.deadline
    }

    /// `t` is this flow's reply tuple, compared without building it
    /// (`snat_addr` as for [`Entry::reply_tuple_with`]).
    #[inline]
    fn reply_is(&self, t: &Tuple, snat_addr: &Addr) -> bool {
        let (dst, dport) = if self.snat() {
            (snat_addr, self.snat_port)
        } else {
            (&self.original.src, self.original.sport)
        };
        t.src == self.backend
            && t.sport == self.backend_port
            && t.dst == *dst
            && t.dport == dport
            && t.proto == self.original.proto
    }

    /// Whether the flow has earned protection from eviction.
    #[inline]
    fn earns_assured(&self) -> bool {
        self.replied()
            && matches!(self.tcp(), None | Some(TcpState::Established))
            && matches!(self.sctp(), None | Some(SctpState::Established))
    }

    /// The idle timeout for the flow as it stands.
    #[inline]
    fn timeout(&self, t: &Timeouts) -> u32 {
        match (self.tcp(), self.sctp()) {
            (Some(s), _) => t.for_tcp(s),
            (_, Some(s)) => t.for_sctp(s),
            _ => t.for_flow(self.original.proto, None, self.replied()),
        }
    }
}

crate::counter_set! {
    /// What a conntrack table did, since it was made.
    #[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
    pub struct Stats {
        /// New flows created by `insert`.
        inserted: Counter "vipgate_conntrack_inserts",
        /// Flows removed by `remove` (closed connections, dead backends).
        removed_closed: Counter "vipgate_conntrack_removals" [reason = "closed"],
        /// Flows reclaimed past their deadline (by `expire`, by a lookup or
        /// insert that met them, or as the room for a new flow).
        expired: Counter "vipgate_conntrack_removals" [reason = "expired"],
        /// Live unassured flows (unreplied, embryonic, closing) pushed out to
        /// make room for a new flow.
        evicted_unreplied: Counter "vipgate_conntrack_evictions" [kind = "unassured"],
        /// Inserts refused because every flow was live and assured.
        full: Counter "vipgate_conntrack_insert_failures" [reason = "full"],
    }
}

pub struct Conntrack {
    entries: Box<[Entry]>,
    links: Box<[Link]>,
    index: Index,
    hasher: ahash::RandomState,
    timeouts: Timeouts,
    /// [`Config::snat`].
    snat: [Addr; 2],
    free: List,
    /// Unassured flows, least recently seen first.
    evictable: List,
    len: u32,
    /// Next slot `expire` (and the full-table scan) examines.
    cursor: u32,
    /// Latest `now` any call passed in; `iter` hides entries dead by then.
    clock: u32,
    stats: Stats,
}

impl Conntrack {
    pub fn new(cfg: Config) -> Conntrack {
        let cap = cfg.capacity.clamp(1, MAX_CAPACITY);
        let n = cap as usize;
        let mut links = vec![Link::UNLINKED; n].into_boxed_slice();
        let mut free = List::EMPTY;
        for i in 0..cap {
            free.push_back(&mut links, i);
        }
        Conntrack {
            entries: vec![Entry::FREE; n].into_boxed_slice(),
            links,
            index: Index::with_keys(2 * n),
            // Random keys per table: the index is a probing table, and keys
            // an attacker could predict would let crafted tuples pile up into
            // one long probe run.
            hasher: ahash::RandomState::new(),
            timeouts: cfg.timeouts,
            snat: cfg.snat,
            free,
            evictable: List::EMPTY,
            len: 0,
            cursor: 0,
            clock: 0,
            stats: Stats::default(),
        }
    }

    #[inline]
    fn hash(&self, t: &Tuple) -> u32 {
        let mut h = self.hasher.build_hasher();
        h.write_u128(u128::from_ne_bytes(t.src.0));
        h.write_u128(u128::from_ne_bytes(t.dst.0));
        h.write_u64(
            (u64::from(t.sport) << 24) | (u64::from(t.dport) << 8) | u64::from(t.proto as u8),
        );
        let x = h.finish();
        (x ^ (x >> 32)) as u32
    }

    #[inline]
    fn tick(&mut self, now: u32) {
        self.clock = self.clock.max(now);
    }

    /// The index hash of `t` (either direction), for the `*_hashed` lookups
    /// and [`Conntrack::prefetch_index`]: fixed for the table's lifetime.
    #[inline]
    pub fn tuple_hash(&self, t: &Tuple) -> u32 {
        self.hash(t)
    }

    /// Starts loading the index line where lookups of `hash` begin.
    #[inline]
    pub fn prefetch_index(&self, hash: u32) {
        self.index.prefetch(hash);
    }

    /// Starts loading the entry a lookup of `hash` in direction `dir` would
    /// compare first (the index line should be cached by now: see
    /// [`Conntrack::prefetch_index`]). Returns whether there is such an
    /// entry, i.e. whether the packet probably belongs to a tracked flow.
    #[inline]
    pub fn prefetch_entry(&self, hash: u32, dir: Direction) -> bool {
        let bit = u32::from(dir == Direction::Reply);
        match self.index.find(hash, |v| v & 1 == bit) {
            Some(v) => {
                crate::prefetch::read(self.entries.as_ptr().wrapping_add((v >> 1) as usize));
                true
            }
            None => false,
        }
    }

    /// The flow whose client-side tuple is `t`, if live at `now`.
    #[inline]
    pub fn find_original(&mut self, t: &Tuple, now: u32) -> Option<FlowId> {
        let hash = self.hash(t);
        self.find_original_hashed(t, hash, now)
    }

    /// [`Conntrack::find_original`] with `hash` = [`Conntrack::tuple_hash`]`(t)`.
    #[inline]
    pub fn find_original_hashed(&mut self, t: &Tuple, hash: u32, now: u32) -> Option<FlowId> {
        debug_assert_eq!(hash, self.hash(t));
        self.tick(now);
        let entries = &self.entries;
        let v = self.index.find(hash, |v| {
            v & 1 == 0 && entries[(v >> 1) as usize].original == *t
        })?;
        self.live_or_reclaim(v >> 1, now)
    }

    /// The flow whose backend-side tuple is `t`, if live at `now`.
    #[inline]
    pub fn find_reply(&mut self, t: &Tuple, now: u32) -> Option<FlowId> {
        let hash = self.hash(t);
        self.find_reply_hashed(t, hash, now)
    }

    /// [`Conntrack::find_reply`] with `hash` = [`Conntrack::tuple_hash`]`(t)`.
    #[inline]
    pub fn find_reply_hashed(&mut self, t: &Tuple, hash: u32, now: u32) -> Option<FlowId> {
        debug_assert_eq!(hash, self.hash(t));
        self.tick(now);
        let entries = &self.entries;
        let snat = self.snat_addr(t.dst.is_v4());
        let v = self.index.find(hash, |v| {
            v & 1 == 1 && entries[(v >> 1) as usize].reply_is(t, &snat)
        })?;
        self.live_or_reclaim(v >> 1, now)
    }

    #[inline]
    fn live_or_reclaim(&mut self, i: u32, now: u32) -> Option<FlowId> {
        if self.entries[i as usize].expired(now) {
            self.release(i);
            self.stats.expired += 1;
            None
        } else {
            Some(FlowId(i))
        }
    }

    /// The source-NAT address of a family.
    #[inline]
    pub fn snat_addr(&self, v4: bool) -> Addr {
        self.snat[usize::from(!v4)]
    }

    /// The flow as the backend's replies arrive (see [`Entry::reply_tuple_with`]).
    #[inline]
    pub fn reply_tuple(&self, e: &Entry) -> Tuple {
        e.reply_tuple_with(self.snat_addr(e.original.src.is_v4()))
    }

    /// The flow's entry. `id` must come from this table and still be valid
    /// (see the module docs); a stale id shows whatever the slot holds now.
    #[inline]
    pub fn entry(&self, id: FlowId) -> &Entry {
        &self.entries[id.0 as usize]
    }

    /// New flow. `tcp_flags` is the first packet's flags: for TCP the flags
    /// byte, for SCTP its control chunks (`wire::sctp::Chunks`); ignored
    /// for UDP/ICMP.
    ///
    /// If a live flow with this original tuple exists already, no second one
    /// is made: the packet is applied to it as an update and its id returned,
    /// and its backend is kept (existing connections never move).
    #[inline]
    pub fn insert(
        &mut self,
        original: &Tuple,
        backend: Addr,
        backend_port: u16,
        tcp_flags: u8,
        now: u32,
    ) -> Result<FlowId, InsertError> {
        self.insert_nat(original, backend, backend_port, 0, tcp_flags, now)
    }

    /// [`Conntrack::insert`] for a flow that may be source-NATed: its
    /// packets leave from the table's address of the family and
    /// `snat_port` (0: not source-NATed). The caller picks a port whose
    /// reply tuple is free ([`Conntrack::reply_in_use`]).
    #[inline]
    pub fn insert_nat(
        &mut self,
        original: &Tuple,
        backend: Addr,
        backend_port: u16,
        snat_port: u16,
        tcp_flags: u8,
        now: u32,
    ) -> Result<FlowId, InsertError> {
        if let Some(id) = self.find_original(original, now) {
            self.update(id, Direction::Original, tcp_flags, now);
            return Ok(id);
        }
        let i = self.take_slot(now)?;
        let (state, bits) = match original.proto {
            crate::addr::Proto::Tcp => {
                let s = tcp::initial(tcp_flags);
                (tcp_index(s.state), s.bits)
            }
            crate::addr::Proto::Sctp => (sctp_index(sctp::initial(tcp_flags).state), 0),
            _ => (0, 0),
        };
        let mut e = Entry {
            original: *original,
            backend,
            backend_port,
            snat_port,
            state,
            flags: FLAG_USED | bits,
            deadline: 0,
        };
        e.deadline = now.saturating_add(e.timeout(&self.timeouts));
        self.entries[i as usize] = e;
        self.evictable.push_back(&mut self.links, i);
        let (ho, hr) = (self.hash(original), self.hash(&self.reply_tuple(&e)));
        self.index.insert(ho, i << 1);
        self.index.insert(hr, (i << 1) | 1);
        self.len += 1;
        self.stats.inserted += 1;
        Ok(FlowId(i))
    }

    /// Whether a live flow's replies arrive as `t`: a new flow must not
    /// take a translation whose replies would reach another flow.
    #[inline]
    pub fn reply_in_use(&mut self, t: &Tuple, now: u32) -> bool {
        self.find_reply(t, now).is_some()
    }

    /// A free slot: from the free list, else the least recently seen
    /// unassured flow, else an expired flow within a bounded scan.
    #[inline]
    fn take_slot(&mut self, now: u32) -> Result<u32, InsertError> {
        if let Some(i) = self.free.pop_front(&mut self.links) {
            return Ok(i);
        }
        if self.evictable.head != list::NIL {
            let i = self.evictable.head;
            if self.entries[i as usize].expired(now) {
                self.stats.expired += 1;
            } else {
                self.stats.evicted_unreplied += 1;
            }
            return Ok(self.release_for_reuse(i));
        }
        if let Some(i) = self.scan_expired(now, EVICT_SCAN) {
            self.stats.expired += 1;
            return Ok(self.release_for_reuse(i));
        }
        self.stats.full += 1;
        Err(InsertError::Full)
    }

    /// Advance the cursor over at most `budget` slots; the first expired flow.
    fn scan_expired(&mut self, now: u32, budget: usize) -> Option<u32> {
        for _ in 0..budget.min(self.entries.len()) {
            let i = self.advance_cursor();
            let e = &self.entries[i as usize];
            if e.used() && e.expired(now) {
                return Some(i);
            }
        }
        None
    }

    #[inline]
    fn advance_cursor(&mut self) -> u32 {
        let i = self.cursor;
        self.cursor = if i + 1 == self.entries.len() as u32 {
            0
        } else {
            i + 1
        };
        i
    }

    /// A packet of an existing flow: advance TCP or SCTP state, set replied,
    /// refresh the deadline. `tcp_flags` as for [`Conntrack::insert`].
    #[inline]
    pub fn update(&mut self, id: FlowId, dir: Direction, tcp_flags: u8, now: u32) {
        self.tick(now);
        let i = id.0;
        let Some(e) = self.entries.get_mut(i as usize) else {
            return;
        };
        if !e.used() {
            return;
        }
        let was_assured = e.assured();
        if dir == Direction::Reply {
            e.flags |= FLAG_REPLIED;
        }
        let mut demote = false;
        if let Some(state) = e.tcp() {
            let s = tcp::step(state, e.flags & TCP_BITS, dir, tcp_flags);
            e.state = tcp_index(s.state);
            e.flags = (e.flags & !TCP_BITS) | s.bits;
            if s.reopened {
                e.flags &= !FLAG_REPLIED;
            }
            // A finished or reopened connection is no longer worth protecting.
            demote = s.reopened || matches!(s.state, TcpState::TimeWait | TcpState::Close);
        }
        if let Some(state) = e.sctp() {
            let s = sctp::step(state, dir, tcp_flags);
            e.state = sctp_index(s.state);
            if s.reopened {
                e.flags &= !FLAG_REPLIED;
            }
            demote = s.reopened || s.state == SctpState::Closed;
        }
        let assured = if was_assured {
            !demote
        } else {
            !demote && e.earns_assured()
        };
        e.deadline = now.saturating_add(e.timeout(&self.timeouts));
        match (was_assured, assured) {
            (false, false) => self.evictable.touch(&mut self.links, i),
            (false, true) => {
                e.flags |= FLAG_ASSURED;
                self.evictable.unlink(&mut self.links, i);
            }
            (true, false) => {
                e.flags &= !FLAG_ASSURED;
                self.evictable.push_back(&mut self.links, i);
            }
            (true, true) => {}
        }
    }

    /// Forget a flow now (e.g. its connection closed or its backend is gone).
    pub fn remove(&mut self, id: FlowId) {
        if self.entries.get(id.0 as usize).is_some_and(Entry::used) {
            self.release(id.0);
            self.stats.removed_closed += 1;
        }
    }

    /// Examine at most `budget` slots from a rotating cursor and free the
    /// expired flows among them; returns how many were freed.
    pub fn expire(&mut self, now: u32, budget: usize) -> usize {
        self.tick(now);
        let mut freed = 0;
        for _ in 0..budget.min(self.entries.len()) {
            let i = self.advance_cursor();
            let e = &self.entries[i as usize];
            if e.used() && e.expired(now) {
                self.release(i);
                freed += 1;
            }
        }
        self.stats.expired += freed as u64;
        freed
    }

    /// Drop flow `i` from the index and its list; its slot goes to the free list.
    fn release(&mut self, i: u32) {
        let i = self.release_for_reuse(i);
        self.free.push_back(&mut self.links, i);
    }

    /// Drop flow `i` from the index and its list; the caller reuses the slot.
    fn release_for_reuse(&mut self, i: u32) -> u32 {
        let e = self.entries[i as usize];
        let removed_o = self.index.remove(self.hash(&e.original), i << 1);
        let removed_r = self
            .index
            .remove(self.hash(&self.reply_tuple(&e)), (i << 1) | 1);
        debug_assert!(removed_o && removed_r, "flow {i} missing from the index");
        if !e.assured() {
            self.evictable.unlink(&mut self.links, i);
        }
        self.entries[i as usize].flags = 0;
        self.len -= 1;
        i
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// The flow in slot `slot`, if the slot holds one that is live as of
    /// the latest clock the table has seen. With [`Conntrack::capacity`],
    /// lets a reader walk the table in bounded chunks between bursts.
    #[inline]
    pub fn live_slot(&self, slot: usize) -> Option<&Entry> {
        self.entries
            .get(slot)
            .filter(|e| e.used() && !e.expired(self.clock))
    }

    /// The latest dataplane-clock second any call passed in.
    #[inline]
    pub fn clock(&self) -> u32 {
        self.clock
    }

    /// Flows occupying slots and live as of the latest clock the table has
    /// seen (for the admin endpoint and tests; walks every slot).
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        let clock = self.clock;
        self.entries
            .iter()
            .filter(move |e| e.used() && !e.expired(clock))
    }
}
