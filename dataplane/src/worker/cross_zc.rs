//! Zero-copy transmit on another interface: frames received on one port
//! and routed to another interface go onto a port of that interface which
//! shares the rx port's frame memory (AF_XDP sockets of one worker on one
//! UMEM), as the same frame. They then leave the burst: the egress port's
//! completion ring gives them back, not the rx port's tx_burst.

use super::handoff::ForeignTx;
use super::Port;
use crate::counters::Counted;
use crate::io::{Batch, FrameDesc, MAX_BURST};
use crate::verdict::{DropReason, Verdict};

/// What one burst's in-place cross transmits did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrossStats {
    /// Frames put on another port's tx ring in place.
    pub sent: u64,
    /// Frames dropped (verdict `Drop(TxFull)`) because that ring was full.
    pub full: u64,
    /// Whether frames for another interface are left (no port of theirs
    /// shares the memory): the caller copies those out.
    pub left: bool,
}

/// Sends the `Tx` frames of `batch` whose egress interface (`egress[i]`)
/// is not `rx_iface` through a port of that interface sharing their
/// memory, and removes the sent ones from `batch` (and from `egress` and
/// `counted`, kept parallel). `port_iface[p]` is port `p`'s interface.
pub fn send_in_place<I: ForeignTx>(
    ports: &mut [Port<I>],
    port_iface: &[u8],
    rx_iface: usize,
    batch: &mut Batch,
    egress: &mut [u8; MAX_BURST],
    counted: &mut [Counted; MAX_BURST],
) -> CrossStats {
    let mut st = CrossStats::default();
    let mut taken = [false; MAX_BURST];
    let mut idx = [0u16; MAX_BURST];
    let cross = |batch: &Batch, egress: &[u8; MAX_BURST], i: usize| {
        matches!(batch.verdicts()[i], Verdict::Tx(_)) && egress[i] as usize != rx_iface
    };
    let mut highest = 0usize;
    for i in 0..batch.len() {
        if cross(batch, egress, i) {
            highest = highest.max(egress[i] as usize + 1);
        }
    }
    for out in 0..highest {
        if out == rx_iface {
            continue;
        }
        let mut n = 0;
        for i in 0..batch.len() {
            if cross(batch, egress, i) && egress[i] as usize == out {
                idx[n] = i as u16;
                n += 1;
            }
        }
        if n == 0 {
            continue;
        }
        for (p, port) in ports.iter_mut().enumerate() {
            if port_iface[p] as usize != out {
                continue;
            }
            let Some(k) = port.io.tx_shared(batch, &idx[..n]) else {
                continue;
            };
            let k = (k as usize).min(n);
            for &i in &idx[..k] {
                taken[i as usize] = true;
            }
            for &i in &idx[k..n] {
                batch.set_verdict(i as usize, Verdict::Drop(DropReason::TxFull));
            }
            st.sent += k as u64;
            st.full += (n - k) as u64;
            break;
        }
    }
    if st.sent > 0 {
        remove(batch, egress, counted, &taken);
    }
    st.left = (0..batch.len()).any(|i| cross(batch, egress, i));
    st
}

/// Drops the frames marked `taken` from `batch`, `egress` and `counted`,
/// keeping the order of the rest.
fn remove(
    batch: &mut Batch,
    egress: &mut [u8; MAX_BURST],
    counted: &mut [Counted; MAX_BURST],
    taken: &[bool; MAX_BURST],
) {
    let mut descs = [FrameDesc::default(); MAX_BURST];
    let mut verdicts = [Verdict::Pass; MAX_BURST];
    let mut kept = 0;
    for i in 0..batch.len() {
        if !taken[i] {
            descs[kept] = batch.descs()[i];
            verdicts[kept] = batch.verdicts()[i];
            egress[kept] = egress[i];
            counted[kept] = counted[i];
            kept += 1;
        }
    }
    batch.clear();
    for (i, d) in descs[..kept].iter().enumerate() {
        // Same descriptors, same region: always fits.
        batch.push(*d);
        batch.set_verdict(i, verdicts[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port that shares memory (or not) and has `room` tx slots.
    struct FakeTx {
        shares: bool,
        room: u32,
        sent: Vec<u64>,
    }

    impl ForeignTx for FakeTx {
        const SENDS_FOREIGN: bool = false;

        fn tx_shared(&mut self, batch: &Batch, idx: &[u16]) -> Option<u32> {
            if !self.shares {
                return None;
            }
            let k = self.room.min(idx.len() as u32);
            self.room -= k;
            for &i in &idx[..k as usize] {
                self.sent.push(batch.descs()[i as usize].offset);
            }
            Some(k)
        }
    }

    fn port(shares: bool, room: u32, ifindex: u32) -> Port<FakeTx> {
        Port {
            io: FakeTx {
                shares,
                room,
                sent: Vec::new(),
            },
            ifindex,
        }
    }

    /// Frame i at offset 64 * i with verdict `v[i]`.
    fn batch(region: &mut [u8], v: &[Verdict]) -> Batch {
        let mut b = Batch::new();
        // SAFETY: `region` outlives the batch in each test.
        unsafe { b.reset(region.as_mut_ptr(), region.len()) };
        for (i, &v) in v.iter().enumerate() {
            assert!(b.push(FrameDesc {
                offset: 64 * i as u64,
                len: 60,
                cap: 64,
                tag: 0,
                offload: Default::default(),
            }));
            b.set_verdict(i, v);
        }
        b
    }

    const TX: Verdict = Verdict::Tx(0);

    #[test]
    fn cross_frames_leave_in_place_and_the_rest_stay_in_order() {
        let mut region = vec![0u8; 64 * 8];
        let drop = Verdict::Drop(DropReason::Malformed);
        let mut b = batch(&mut region, &[TX, TX, drop, TX, Verdict::Pass, TX]);
        // Frames 0 and 3 go to iface 1, frames 1 and 5 stay on iface 0.
        let mut egress = [0u8; MAX_BURST];
        egress[..6].copy_from_slice(&[1, 0, 0, 1, 0, 0]);
        let mut counted = [Counted::Passed; MAX_BURST];
        let (f, r, d) = (Counted::Forwarded, Counted::Reversed, Counted::Dropped);
        counted[..6].copy_from_slice(&[r, f, d, r, Counted::Passed, f]);
        let mut ports = vec![port(true, 64, 10), port(true, 64, 11)];
        let st = send_in_place(&mut ports, &[0, 1], 0, &mut b, &mut egress, &mut counted);
        assert_eq!((st.sent, st.full, st.left), (2, 0, false));
        assert_eq!(&counted[..4], &[f, d, Counted::Passed, f]);
        assert_eq!(ports[1].io.sent, vec![0, 64 * 3]);
        assert!(ports[0].io.sent.is_empty());
        let offs: Vec<u64> = b.descs().iter().map(|d| d.offset).collect();
        assert_eq!(offs, vec![64, 128, 256, 320]);
        assert_eq!(b.verdicts(), &[TX, drop, Verdict::Pass, TX]);
        assert_eq!(&egress[..4], &[0, 0, 0, 0]);
    }

    #[test]
    fn a_full_ring_drops_the_rest_and_unshared_ports_leave_frames_to_copy() {
        let mut region = vec![0u8; 64 * 8];
        let mut b = batch(&mut region, &[TX, TX, TX, TX]);
        let mut egress = [0u8; MAX_BURST];
        egress[..4].copy_from_slice(&[1, 1, 1, 2]);
        // iface 1: room for two; iface 2: no shared memory.
        let mut ports = vec![port(true, 8, 10), port(true, 2, 11), port(false, 8, 12)];
        let mut counted = [Counted::Forwarded; MAX_BURST];
        let st = send_in_place(&mut ports, &[0, 1, 2], 0, &mut b, &mut egress, &mut counted);
        assert_eq!((st.sent, st.full, st.left), (2, 1, true));
        assert_eq!(ports[1].io.sent, vec![0, 64]);
        let offs: Vec<u64> = b.descs().iter().map(|d| d.offset).collect();
        assert_eq!(offs, vec![128, 192]);
        assert_eq!(
            b.verdicts(),
            &[Verdict::Drop(DropReason::TxFull), TX],
            "the frame the ring had no room for is dropped, the unshared one kept"
        );
        assert_eq!(&egress[..2], &[1, 2]);
    }

    #[test]
    fn nothing_shared_changes_nothing() {
        let mut region = vec![0u8; 64 * 4];
        let mut b = batch(&mut region, &[TX, TX]);
        let mut egress = [0u8; MAX_BURST];
        egress[..2].copy_from_slice(&[1, 0]);
        let mut ports = vec![port(false, 8, 10), port(false, 8, 11)];
        let mut counted = [Counted::Forwarded; MAX_BURST];
        let st = send_in_place(&mut ports, &[0, 1], 0, &mut b, &mut egress, &mut counted);
        assert_eq!((st.sent, st.full, st.left), (0, 0, true));
        assert_eq!(b.len(), 2);
        assert_eq!(b.verdicts(), &[TX, TX]);
    }
}
