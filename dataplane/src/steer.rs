//! Which worker owns a packet's flow. Both directions of a flow must meet
//! the same conntrack partition, and after DNAT the only thing they share is
//! the client endpoint: the source of a forward packet, the destination of
//! a reply. This is the software counterpart of symmetric RSS, used to split
//! a replay between workers and to hand packets to their owner.

use xxhash_rust::xxh3::xxh3_64;

use crate::addr::{Addr, Proto};
use crate::table::ServiceTable;
use crate::wire::parse::{parse, parse_quoted, L4};

#[inline]
fn endpoint_hash(addr: &Addr, port: u16) -> u64 {
    let mut key = [0u8; 18];
    key[..16].copy_from_slice(&addr.0);
    key[16..].copy_from_slice(&port.to_be_bytes());
    xxh3_64(&key)
}

/// The worker (0..workers) that owns this frame's flow.
#[inline]
pub fn owner(frame: &[u8], table: &ServiceTable, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let Ok(p) = parse(frame) else {
        return 0;
    };
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
        L4::IcmpError { .. } => match parse_quoted(frame, &p) {
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
