//! Which worker owns a packet's flow. Both directions of a flow must meet
//! the same conntrack partition, and after DNAT the only thing they share is
//! the client endpoint: the source of a forward packet, the destination of
//! a reply. This is the software counterpart of symmetric RSS, used to split
//! a replay between workers and to hand packets to their owner.

use xxhash_rust::xxh3::xxh3_64;

use crate::addr::{Addr, Proto};
use crate::fragments::{FragKey, FragTable};
use crate::table::ServiceTable;
use crate::wire::parse::{parse, parse_quoted, Parsed, L4};

#[inline]
fn endpoint_hash(addr: &Addr, port: u16) -> u64 {
    let mut key = [0u8; 18];
    key[..16].copy_from_slice(&addr.0);
    key[16..].copy_from_slice(&port.to_be_bytes());
    xxh3_64(&key)
}

/// The worker (0..workers) that owns packets addressed to `addr:port`
/// from a non-VIP: a flow's replies. A source-NAT port is taken only by
/// the worker this names for it, so replies need no hand-off.
#[inline]
pub fn endpoint_owner(addr: &Addr, port: u16, workers: usize) -> usize {
    (endpoint_hash(addr, port) % workers.max(1) as u64) as usize
}

/// The worker (0..workers) that owns this frame's flow. A fragment past
/// the first has no ports: see [`FragmentOwners`] for where it goes.
#[inline]
pub fn owner(frame: &[u8], table: &ServiceTable, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let Ok(p) = parse(frame) else {
        return 0;
    };
    owner_of(frame, &p, table, workers)
}

/// [`owner`] of a parsed frame.
#[inline]
fn owner_of(frame: &[u8], p: &Parsed, table: &ServiceTable, workers: usize) -> usize {
    let h = match p.l4 {
        L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } | L4::Sctp { sport, dport, .. } => {
            let proto = match p.l4 {
                L4::Tcp { .. } => Proto::Tcp,
                L4::Udp { .. } => Proto::Udp,
                _ => Proto::Sctp,
            };
            if table.lookup(&p.dst, dport, proto).is_some() {
                endpoint_hash(&p.src, sport)
            } else {
                endpoint_hash(&p.dst, dport)
            }
        }
        L4::IcmpError { .. } => match parse_quoted(frame, p) {
            // To a VIP about our reply VIP -> client: the client is the
            // quoted destination; otherwise about client -> backend.
            Ok(q) if table.is_vip(&p.dst) => endpoint_hash(&q.dst, q.dport),
            Ok(q) => endpoint_hash(&q.src, q.sport),
            Err(_) => endpoint_hash(&p.src, 0),
        },
        _ => endpoint_hash(&p.src, 0),
    };
    (h % workers as u64) as usize
}

/// Datagrams a receiving worker remembers the owner of.
const FRAGMENT_OWNERS: usize = 256;

/// One receiving worker's memory of where the first fragments of recent
/// datagrams went, so that their later fragments (which carry no ports)
/// go to the same owner, behind the first in its FIFO inbox (see
/// [`crate::fragments`]). A later fragment received before its first one
/// waits in the worker's hold first ([`crate::worker::frag_hold`]). A
/// datagram not remembered (displaced, or the hold full) goes where its
/// addresses hash, where the owner drops it if it is addressed to a VIP.
pub struct FragmentOwners {
    owners: FragTable<u8>,
    /// Fragments seen: the table's clock (age = fragments since).
    seen: u32,
}

impl Default for FragmentOwners {
    fn default() -> Self {
        FragmentOwners {
            // Never expired by age: displaced oldest-first instead.
            owners: FragTable::new(FRAGMENT_OWNERS, u32::MAX / 2),
            seen: 0,
        }
    }
}

impl FragmentOwners {
    /// [`owner`], with later fragments sent after their first one.
    #[inline]
    pub fn owner(&mut self, frame: &[u8], table: &ServiceTable, workers: usize) -> usize {
        if workers <= 1 {
            return 0;
        }
        let Ok(p) = parse(frame) else {
            return 0;
        };
        if !p.fragment {
            return owner_of(frame, &p, table, workers);
        }
        self.seen = self.seen.wrapping_add(1);
        let key = FragKey::of(&p);
        let ported = matches!(p.l4, L4::Tcp { .. } | L4::Udp { .. });
        if p.frag_first && ported {
            let o = owner_of(frame, &p, table, workers);
            self.owners.insert(key, o as u8, self.seen);
            return o;
        }
        match self.owners.get(&key, self.seen) {
            Some(o) if usize::from(o) < workers => usize::from(o),
            _ => owner_of(frame, &p, table, workers),
        }
    }
}
