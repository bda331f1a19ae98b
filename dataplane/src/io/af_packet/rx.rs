//! Moving packets from the rx ring into the arena: one copy per packet, so
//! ring blocks go back to the kernel at once and the pipeline gets private,
//! growable buffers.

use super::csum;
use super::frame_ring::FrameRing;
use super::ring::{RxFrame, RxWalk};
use super::stats::RxCounters;
use crate::io::{Batch, FrameDesc, OffloadMeta, MAX_BURST};

/// [`FrameDesc::tag`] bit: the frame's L4 checksum is partial (pseudo-header
/// only) and could not be completed, or completion is turned off. Such a
/// frame must not be forwarded as is: the worker drops it when NATed
/// (`bad_checksum_offload`), reading this bit through
/// `ForeignTx::CSUM_PARTIAL_TAG`.
pub const TAG_CSUM_PARTIAL: u32 = 1;

/// The arena: `MAX_BURST` buffers of `buf_size` bytes, buffer `i` at
/// `i * buf_size`.
pub(crate) struct Arena {
    pub base: *mut u8,
    pub buf_size: usize,
}

impl Arena {
    pub(crate) fn len(&self) -> usize {
        self.buf_size * MAX_BURST
    }
}

/// How a socket's frames arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RxMode {
    /// PACKET_VNET_HDR is on: each frame has its offload state, which
    /// travels with it ([`csum::rx_offload`]).
    pub vnet: bool,
    /// Without a vnet header: complete partial checksums on rx (else tag
    /// them [`TAG_CSUM_PARTIAL`]).
    pub complete_csum: bool,
}

/// Whether a frame the ring holds is to be skipped (consumed, counted, not
/// handed to the pipeline): an outgoing frame, or one larger than
/// `max_len` or cut short by the ring.
fn skipped(f: &RxFrame, max_len: usize, c: &mut RxCounters) -> bool {
    // PACKET_IGNORE_OUTGOING normally keeps our own (and the host's)
    // transmissions out; this catches kernels or setups where it did not.
    if f.pkttype == libc::PACKET_OUTGOING {
        c.outgoing_skipped += 1;
        return true;
    }
    if f.snaplen as usize > max_len || f.snaplen < f.wire_len {
        // Larger than a buffer (sized for 64 KiB GSO super-frames, so only
        // BIG TCP beyond that) or cut short by the ring.
        c.oversize += 1;
        if f.status & libc::TP_STATUS_CSUMNOTREADY != 0 {
            c.csum_partial += 1;
        }
        return true;
    }
    false
}

/// The tag and offload state a received frame (in `buf`, already where the
/// pipeline will see it) travels with, fixing the frame up where needed;
/// None (counted) when its offload state cannot be carried.
fn offload_of(
    buf: &mut [u8],
    status: u32,
    vnet: &[u8; crate::io::offload::VNET_HDR_LEN],
    mode: RxMode,
    c: &mut RxCounters,
) -> Option<(u32, OffloadMeta)> {
    if mode.vnet {
        let Some(kept) = csum::rx_offload(buf, OffloadMeta::from_vnet_hdr(vnet)) else {
            c.offload_skipped += 1;
            return None;
        };
        c.gso += u64::from(kept.is_gso());
        c.csum_partial += u64::from(kept.csum_partial());
        return Some((0, kept));
    }
    let mut tag = 0;
    if status & libc::TP_STATUS_CSUMNOTREADY != 0 {
        c.csum_partial += 1;
        if !(mode.complete_csum && csum::complete_partial(buf)) {
            c.csum_unfixed += 1;
            tag |= TAG_CSUM_PARTIAL;
        }
    }
    Some((tag, OffloadMeta::NONE))
}

/// Fills `batch` with up to `max` frames from `ring`, copied into `arena`
/// (the block ring: its blocks go back to the kernel as soon as they are
/// read). Outgoing and oversize packets, and frames whose offload state
/// cannot be carried, are consumed and counted, not returned.
pub(crate) fn fill_batch(
    ring: &mut impl RxWalk,
    arena: &Arena,
    batch: &mut Batch,
    max: usize,
    mode: RxMode,
    c: &mut RxCounters,
) -> usize {
    // SAFETY: the arena mapping lives as long as its backend and is only
    // handed to the batch being filled; the contract of `PacketIo` is that
    // the previous burst's frames are no longer in use.
    unsafe { batch.reset(arena.base, arena.len()) };
    let max = max.min(MAX_BURST);
    // Bound the walk too: a ring full of skipped packets must not keep a
    // worker here forever.
    let mut budget = 4 * MAX_BURST;
    while batch.len() < max && budget > 0 {
        budget -= 1;
        let Some(f) = ring.peek() else { break };
        if skipped(&f, arena.buf_size, c) {
            ring.advance();
            continue;
        }
        let slot = batch.len();
        let off = slot * arena.buf_size;
        let len = f.snaplen as usize;
        // SAFETY: `f.data..+len` lies inside a ring block we own until
        // `advance` (RxRing checked it); the destination buffer `slot` lies
        // inside the arena (slot < MAX_BURST, len <= buf_size). They are
        // different mappings, so they do not overlap.
        let buf = unsafe {
            std::ptr::copy_nonoverlapping(f.data, arena.base.add(off), len);
            std::slice::from_raw_parts_mut(arena.base.add(off), len)
        };
        ring.advance();
        let Some((tag, offload)) = offload_of(buf, f.status, &f.vnet, mode, c) else {
            continue;
        };
        let pushed = batch.push(FrameDesc {
            offset: off as u64,
            len: len as u32,
            cap: arena.buf_size as u32,
            tag,
            offload,
        });
        debug_assert!(pushed, "arena slot outside the batch region");
        c.packets += 1;
    }
    c.ring_errors = ring.errors();
    batch.len()
}

/// The frame ring's slots a batch holds, given back after transmit.
pub(crate) struct Taken {
    slots: Box<[u32; MAX_BURST]>,
    n: usize,
}

impl Taken {
    pub(crate) fn new() -> Taken {
        Taken {
            slots: Box::new([0; MAX_BURST]),
            n: 0,
        }
    }

    /// Hands every taken slot back to the kernel.
    pub(crate) fn give_back(&mut self, ring: &mut FrameRing) {
        for &s in &self.slots[..self.n] {
            ring.give_back(s as usize);
        }
        self.n = 0;
    }
}

/// Fills `batch` with up to `max` frames from the frame ring, in place:
/// the batch points into the ring's slots, which stay ours (in `taken`)
/// until [`Taken::give_back`] after transmit. No copy: the pipeline
/// rewrites the kernel's buffer and transmit reads from it. Skips and
/// counts as [`fill_batch`] does.
pub(crate) fn fill_in_place(
    ring: &mut FrameRing,
    taken: &mut Taken,
    max_len: usize,
    batch: &mut Batch,
    max: usize,
    mode: RxMode,
    c: &mut RxCounters,
) -> usize {
    taken.give_back(ring);
    let (base, bytes) = ring.region();
    // SAFETY: the ring mapping lives as long as its backend; the batch
    // only forms slices over slots this side owns (taken, not yet given
    // back), and the previous burst's slots were given back just above.
    unsafe { batch.reset(base, bytes) };
    let max = max.min(MAX_BURST);
    let mut budget = 4 * MAX_BURST;
    while batch.len() < max && budget > 0 {
        budget -= 1;
        let Some(f) = ring.peek() else { break };
        if skipped(&f, max_len, c) {
            ring.advance();
            continue;
        }
        let len = f.snaplen as usize;
        let at = f.data as usize - base as usize;
        let slot = ring.take();
        let cap = ring.slot_end(slot) - at;
        // SAFETY: the frame lies inside slot `slot` (FrameRing checked
        // mac + snaplen against the slot), which is ours until given back:
        // the kernel does not write it meanwhile, and the mapping is
        // writable (PROT_READ | PROT_WRITE, MAP_SHARED).
        let buf = unsafe { std::slice::from_raw_parts_mut(base.add(at), len) };
        let Some((tag, offload)) = offload_of(buf, f.status, &f.vnet, mode, c) else {
            ring.give_back(slot);
            continue;
        };
        let pushed = batch.push(FrameDesc {
            offset: at as u64,
            len: len as u32,
            cap: cap as u32,
            tag,
            offload,
        });
        debug_assert!(pushed, "slot outside the ring");
        taken.slots[taken.n] = slot as u32;
        taken.n += 1;
        c.packets += 1;
    }
    c.ring_errors = ring.errors;
    batch.len()
}

#[cfg(test)]
mod tests {
    use super::super::mem::Mapping;
    use super::super::ring::tests::{FakeRing, Pkt};
    use super::*;
    use crate::io::af_packet::csum::tests::partial_udp_v4;

    const LEGACY: RxMode = RxMode {
        vnet: false,
        complete_csum: true,
    };

    fn arena(buf: usize) -> (Mapping, Arena) {
        let m = Mapping::anonymous(buf * MAX_BURST).unwrap();
        let a = Arena {
            base: m.as_ptr(),
            buf_size: buf,
        };
        (m, a)
    }

    #[test]
    fn copies_frames_into_distinct_buffers_and_respects_max() {
        let mut fr = FakeRing::new(2);
        let frames: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 60 + i as usize]).collect();
        let pkts: Vec<Pkt> = frames.iter().map(|f| Pkt::host(f)).collect();
        fr.fill(0, &pkts);
        let mut ring = fr.ring();
        let (_m, a) = arena(256);
        let mut b = Batch::new();
        let mut c = RxCounters::default();
        assert_eq!(fill_batch(&mut ring, &a, &mut b, 3, LEGACY, &mut c), 3);
        for (i, want) in frames.iter().enumerate().take(3) {
            assert_eq!(b.frame(i), &want[..]);
            assert_eq!(b.descs()[i].offset, (i * 256) as u64);
            assert_eq!(b.descs()[i].cap, 256);
        }
        // Rewriting a copy must not touch the ring (the kernel's packet).
        b.frame_mut(0)[0] = 0xaa;
        assert_eq!(fill_batch(&mut ring, &a, &mut b, 3, LEGACY, &mut c), 2);
        assert_eq!(b.frame(0), &frames[3][..]);
        assert_eq!(b.frame(1), &frames[4][..]);
        assert_eq!(fill_batch(&mut ring, &a, &mut b, 3, LEGACY, &mut c), 0);
        assert_eq!(c.packets, 5);
        assert_eq!(fr.status(0), libc::TP_STATUS_KERNEL);
    }

    #[test]
    fn skips_and_counts_outgoing_oversize_and_truncated() {
        let mut fr = FakeRing::new(1);
        let small = [1u8; 64];
        let big = [2u8; 300];
        let mut out = Pkt::host(&small);
        out.pkttype = libc::PACKET_OUTGOING;
        let mut trunc = Pkt::host(&small);
        trunc.wire_len = 9000;
        let mut gro = Pkt::host(&big);
        gro.status |= libc::TP_STATUS_CSUMNOTREADY;
        fr.fill(0, &[out, Pkt::host(&big), trunc, gro, Pkt::host(&small)]);
        let mut ring = fr.ring();
        let (_m, a) = arena(256);
        let mut b = Batch::new();
        let mut c = RxCounters::default();
        assert_eq!(fill_batch(&mut ring, &a, &mut b, 32, LEGACY, &mut c), 1);
        assert_eq!(b.frame(0), &small[..]);
        assert_eq!(c.outgoing_skipped, 1);
        assert_eq!(c.oversize, 3);
        assert_eq!(c.csum_partial, 1);
        assert_eq!(c.packets, 1);
    }

    #[test]
    fn completes_partial_checksums_or_tags_the_frame() {
        let mut fr = FakeRing::new(1);
        let good = partial_udp_v4(b"payload", 0);
        let mut bad = partial_udp_v4(b"fragment", 0);
        bad[14 + 6] = 0x20;
        let mut p1 = Pkt::host(&good);
        p1.status |= libc::TP_STATUS_CSUMNOTREADY;
        let mut p2 = Pkt::host(&bad);
        p2.status |= libc::TP_STATUS_CSUMNOTREADY;
        fr.fill(0, &[p1, p2]);
        let mut ring = fr.ring();
        let (_m, a) = arena(2048);
        let mut b = Batch::new();
        let mut c = RxCounters::default();
        assert_eq!(fill_batch(&mut ring, &a, &mut b, 32, LEGACY, &mut c), 2);
        let mut want = good.clone();
        assert!(csum::complete_partial(&mut want));
        assert_ne!(want, good);
        assert_eq!(b.frame(0), &want[..]);
        assert_eq!(b.descs()[0].tag, 0);
        assert_eq!(b.frame(1), &bad[..]);
        assert_eq!(b.descs()[1].tag, TAG_CSUM_PARTIAL);
        assert_eq!((c.csum_partial, c.csum_unfixed), (2, 1));
    }

    #[test]
    fn a_ring_of_skipped_packets_does_not_trap_the_caller() {
        let mut fr = FakeRing::new(64);
        let small = [0u8; 64];
        let pkts: Vec<Pkt> = (0..20)
            .map(|_| Pkt {
                bytes: &small,
                wire_len: 64,
                status: libc::TP_STATUS_USER,
                pkttype: libc::PACKET_OUTGOING,
                vnet: [0; crate::io::offload::VNET_HDR_LEN],
            })
            .collect();
        for blk in 0..64 {
            fr.fill(blk, &pkts);
        }
        let mut ring = fr.ring();
        let (_m, a) = arena(256);
        let mut b = Batch::new();
        let mut c = RxCounters::default();
        assert_eq!(fill_batch(&mut ring, &a, &mut b, 32, LEGACY, &mut c), 0);
        assert_eq!(c.outgoing_skipped, 4 * MAX_BURST as u64);
    }

    #[test]
    fn in_place_frames_point_into_slots_kept_until_given_back() {
        use crate::io::af_packet::frame_ring::tests::{put, status, FS, MAC};
        let mut mem = vec![0u64; FS * 4 / 8];
        // SAFETY: reinterpreting u64s as bytes.
        let bytes: &mut [u8] =
            unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast(), FS * 4) };
        let big = [9u8; 3000];
        put(bytes, 0, &[1; 60], 60, [0; 10], MAC);
        put(bytes, 1, &big, 3000, [0; 10], MAC); // > max_len: skipped
        put(bytes, 2, &[3; 70], 70, [0; 10], MAC);
        let base = bytes.as_mut_ptr();
        // SAFETY: the buffer outlives the ring and is 8-aligned.
        let mut ring = unsafe { FrameRing::new(base, FS, 4) };
        let mut taken = Taken::new();
        let mut b = Batch::new();
        let mut c = RxCounters::default();
        let n = fill_in_place(&mut ring, &mut taken, 2048, &mut b, 32, LEGACY, &mut c);
        assert_eq!(n, 2);
        assert_eq!((c.packets, c.oversize), (2, 1));
        assert_eq!(b.frame(0), &[1; 60][..]);
        assert_eq!(b.descs()[0].offset as usize, MAC);
        assert_eq!(b.descs()[1].offset as usize, 2 * FS + MAC);
        assert_eq!(b.descs()[1].cap as usize, FS - MAC);
        // Rewriting the batch writes the ring slot: no copy.
        b.frame_mut(1)[0] = 0xaa;
        // SAFETY: same buffer, read back after the writes above.
        let view = unsafe { std::slice::from_raw_parts(base, FS * 4) };
        assert_eq!(view[2 * FS + MAC], 0xaa);
        // Taken slots stay the user's, the skipped one went back at once.
        assert_eq!(status(view, 0), libc::TP_STATUS_USER);
        assert_eq!(status(view, 1), libc::TP_STATUS_KERNEL);
        assert_eq!(status(view, 2), libc::TP_STATUS_USER);
        taken.give_back(&mut ring);
        assert_eq!(status(view, 0), libc::TP_STATUS_KERNEL);
        assert_eq!(status(view, 2), libc::TP_STATUS_KERNEL);
        // The next burst finds nothing (slot 3 is the kernel's).
        assert_eq!(
            fill_in_place(&mut ring, &mut taken, 2048, &mut b, 32, LEGACY, &mut c),
            0
        );
    }
}
