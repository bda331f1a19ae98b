//! Reader of a TPACKET_V3 rx ring: blocks the kernel fills and retires, each
//! holding packets back to back; we walk one block at a time and hand it back
//! the moment its last packet has been consumed.
//!
//! The ring is shared with the kernel, so it is only ever touched through raw
//! pointers: a block's `block_status` with atomics (the handover), its
//! content with plain reads once the kernel has given it to us. Every offset
//! the kernel wrote is bounds-checked against the block before use; a block
//! that fails a check is counted and released, never trusted.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::io::offload::VNET_HDR_LEN;

/// Offset of `block_status` inside a block descriptor.
const BLOCK_STATUS: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, block_status);
const NUM_PKTS: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, num_pkts);
const FIRST_PKT: usize = offset_of!(libc::tpacket_block_desc, hdr)
    + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);
/// The kernel puts a `sockaddr_ll` right after the aligned packet header.
const SLL: usize = (size_of::<libc::tpacket3_hdr>() + libc::TPACKET_ALIGNMENT - 1)
    & !(libc::TPACKET_ALIGNMENT - 1);
/// Bytes of per-packet metadata we read: header plus sockaddr_ll.
const PKT_META: usize = SLL + size_of::<libc::sockaddr_ll>();

/// One received packet, still inside the ring.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RxFrame {
    pub data: *const u8,
    /// Bytes captured in the ring.
    pub snaplen: u32,
    /// Length on the wire (larger than `snaplen` if the kernel truncated).
    pub wire_len: u32,
    /// `tp_status` bits (TP_STATUS_CSUMNOTREADY, ...).
    pub status: u32,
    /// `sll_pkttype` (PACKET_HOST, PACKET_OUTGOING, ...).
    pub pkttype: u8,
    /// The `virtio_net_hdr` the kernel writes right before the frame on a
    /// socket with PACKET_VNET_HDR (zeroes where there is no room for one).
    pub vnet: [u8; VNET_HDR_LEN],
}

/// What the rx path needs of a ring, whichever TPACKET version it is.
pub(crate) trait RxWalk {
    /// The next unread packet, without consuming it.
    fn peek(&mut self) -> Option<RxFrame>;
    /// Consumes the packet `peek` returned.
    fn advance(&mut self);
    /// Ring units (blocks, slots) released early as inconsistent.
    fn errors(&self) -> u64;
}

impl RxWalk for RxRing {
    fn peek(&mut self) -> Option<RxFrame> {
        RxRing::peek(self)
    }

    fn advance(&mut self) {
        RxRing::advance(self)
    }

    fn errors(&self) -> u64 {
        self.errors
    }
}

pub(crate) struct RxRing {
    base: *mut u8,
    block_size: usize,
    block_count: usize,
    cur: usize,
    /// Whether block `cur` is ours and being walked.
    open: bool,
    pkts_left: u32,
    pkt_off: usize,
    /// Blocks released early because the kernel's offsets did not add up.
    pub errors: u64,
}

impl RxRing {
    /// # Safety
    /// `base` must point to `block_size * block_count` bytes laid out as a
    /// TPACKET_V3 rx ring (or zeroes), aligned to 8, valid for as long as
    /// the ring is used, and read by nothing else in this process.
    pub(crate) unsafe fn new(base: *mut u8, block_size: usize, block_count: usize) -> RxRing {
        RxRing {
            base,
            block_size,
            block_count,
            cur: 0,
            open: false,
            pkts_left: 0,
            pkt_off: 0,
            errors: 0,
        }
    }

    #[inline]
    fn block(&self) -> *mut u8 {
        // SAFETY: cur < block_count, so the offset stays inside the ring.
        unsafe { self.base.add(self.cur * self.block_size) }
    }

    #[inline]
    fn status(&self) -> &AtomicU32 {
        // SAFETY: BLOCK_STATUS is a 4-aligned u32 inside the block (blocks
        // are page-sized multiples, the base is 8-aligned); the kernel and
        // we both access it atomically.
        unsafe { &*self.block().add(BLOCK_STATUS).cast::<AtomicU32>() }
    }

    #[inline]
    fn read_u32(&self, off: usize) -> u32 {
        debug_assert!(off + 4 <= self.block_size);
        // SAFETY: callers check `off + 4 <= block_size`; the block is ours
        // (TP_STATUS_USER seen with Acquire), so the kernel does not write it.
        unsafe { self.block().add(off).cast::<u32>().read_unaligned() }
    }

    #[inline]
    fn read_u16(&self, off: usize) -> u16 {
        debug_assert!(off + 2 <= self.block_size);
        // SAFETY: as in read_u32.
        unsafe { self.block().add(off).cast::<u16>().read_unaligned() }
    }

    fn release(&mut self) {
        self.status()
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.open = false;
        self.cur = (self.cur + 1) % self.block_count;
    }

    /// The next unread packet, without consuming it.
    pub(crate) fn peek(&mut self) -> Option<RxFrame> {
        // Each pass either returns or releases a block: bounded by the ring.
        for _ in 0..=self.block_count {
            if !self.open {
                if self.status().load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                    return None;
                }
                let n = self.read_u32(NUM_PKTS);
                if n == 0 {
                    self.release();
                    continue;
                }
                self.open = true;
                self.pkts_left = n;
                self.pkt_off = self.read_u32(FIRST_PKT) as usize;
            }
            match self.frame_at(self.pkt_off) {
                Some(f) => return Some(f),
                None => {
                    self.errors += 1;
                    self.release();
                }
            }
        }
        None
    }

    fn frame_at(&self, off: usize) -> Option<RxFrame> {
        if off < NUM_PKTS + 4 || off.checked_add(PKT_META)? > self.block_size {
            return None;
        }
        let field = |f: usize| off + f;
        let snaplen = self.read_u32(field(offset_of!(libc::tpacket3_hdr, tp_snaplen)));
        let wire_len = self.read_u32(field(offset_of!(libc::tpacket3_hdr, tp_len)));
        let status = self.read_u32(field(offset_of!(libc::tpacket3_hdr, tp_status)));
        let mac = self.read_u16(field(offset_of!(libc::tpacket3_hdr, tp_mac))) as usize;
        let pkttype_off = field(SLL + offset_of!(libc::sockaddr_ll, sll_pkttype));
        // SAFETY: pkttype_off < off + PKT_META <= block_size (checked above).
        let pkttype = unsafe { *self.block().add(pkttype_off) };
        if off + mac + snaplen as usize > self.block_size {
            return None;
        }
        let mut vnet = [0u8; VNET_HDR_LEN];
        if mac >= PKT_META + VNET_HDR_LEN {
            // SAFETY: off + mac - VNET_HDR_LEN .. off + mac lies after this
            // packet's metadata and before its frame, inside the block
            // (checked above); the block is ours.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.block().add(off + mac - VNET_HDR_LEN),
                    vnet.as_mut_ptr(),
                    VNET_HDR_LEN,
                )
            };
        }
        Some(RxFrame {
            // SAFETY: bounds checked just above.
            data: unsafe { self.block().add(off + mac) },
            snaplen,
            wire_len,
            status,
            pkttype,
            vnet,
        })
    }

    /// Consumes the packet [`RxRing::peek`] returned; hands its block back
    /// to the kernel if it was the block's last.
    pub(crate) fn advance(&mut self) {
        if !self.open {
            return;
        }
        self.pkts_left -= 1;
        if self.pkts_left == 0 {
            self.release();
            return;
        }
        let next = self.read_u32(self.pkt_off + offset_of!(libc::tpacket3_hdr, tp_next_offset));
        if next == 0 {
            // Would read the same packet again: the block is inconsistent.
            self.errors += 1;
            self.release();
            return;
        }
        self.pkt_off += next as usize;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const BS: usize = 4096;
    const FIRST: usize = 48;

    /// An 8-aligned fake ring the tests fill the way the kernel would.
    pub(crate) struct FakeRing {
        pub mem: Vec<u64>,
        pub blocks: usize,
    }

    pub(crate) struct Pkt<'a> {
        pub bytes: &'a [u8],
        pub wire_len: u32,
        pub status: u32,
        pub pkttype: u8,
        /// The vnet header written before the frame.
        pub vnet: [u8; VNET_HDR_LEN],
    }

    impl<'a> Pkt<'a> {
        pub(crate) fn host(bytes: &'a [u8]) -> Pkt<'a> {
            Pkt {
                bytes,
                wire_len: bytes.len() as u32,
                status: libc::TP_STATUS_USER,
                pkttype: libc::PACKET_HOST,
                vnet: [0; VNET_HDR_LEN],
            }
        }
    }

    impl FakeRing {
        pub(crate) fn new(blocks: usize) -> FakeRing {
            FakeRing {
                mem: vec![0u64; BS * blocks / 8],
                blocks,
            }
        }

        pub(crate) fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: reinterpreting u64s as bytes is always valid.
            unsafe {
                std::slice::from_raw_parts_mut(self.mem.as_mut_ptr().cast(), self.mem.len() * 8)
            }
        }

        pub(crate) fn ring(&mut self) -> RxRing {
            // SAFETY: the Vec outlives every test's ring and is 8-aligned.
            unsafe { RxRing::new(self.mem.as_mut_ptr().cast(), BS, self.blocks) }
        }

        pub(crate) fn status(&mut self, block: usize) -> u32 {
            let b = &self.bytes()[block * BS + BLOCK_STATUS..][..4];
            u32::from_ne_bytes(b.try_into().unwrap())
        }

        /// Writes packets into `block` and hands it to "user space".
        pub(crate) fn fill(&mut self, block: usize, pkts: &[Pkt]) {
            // Room for a vnet header between the metadata and the frame,
            // as the kernel leaves on a PACKET_VNET_HDR socket.
            let mac = (PKT_META + 2 + VNET_HDR_LEN) as u16;
            let mem = &mut self.bytes()[block * BS..][..BS];
            mem.fill(0);
            let put32 =
                |m: &mut [u8], o: usize, v: u32| m[o..o + 4].copy_from_slice(&v.to_ne_bytes());
            put32(mem, NUM_PKTS, pkts.len() as u32);
            put32(mem, FIRST_PKT, FIRST as u32);
            let mut off = FIRST;
            for (i, p) in pkts.iter().enumerate() {
                let size = (mac as usize + p.bytes.len() + 15) & !15;
                let next = if i + 1 == pkts.len() { 0 } else { size as u32 };
                put32(
                    mem,
                    off + offset_of!(libc::tpacket3_hdr, tp_next_offset),
                    next,
                );
                put32(
                    mem,
                    off + offset_of!(libc::tpacket3_hdr, tp_snaplen),
                    p.bytes.len() as u32,
                );
                put32(
                    mem,
                    off + offset_of!(libc::tpacket3_hdr, tp_len),
                    p.wire_len,
                );
                put32(
                    mem,
                    off + offset_of!(libc::tpacket3_hdr, tp_status),
                    p.status,
                );
                let m = off + offset_of!(libc::tpacket3_hdr, tp_mac);
                mem[m..m + 2].copy_from_slice(&mac.to_ne_bytes());
                mem[off + SLL + offset_of!(libc::sockaddr_ll, sll_pkttype)] = p.pkttype;
                mem[off + mac as usize - VNET_HDR_LEN..][..VNET_HDR_LEN].copy_from_slice(&p.vnet);
                mem[off + mac as usize..][..p.bytes.len()].copy_from_slice(p.bytes);
                off += size;
            }
            put32(mem, BLOCK_STATUS, libc::TP_STATUS_USER);
        }
    }

    fn payload(f: &RxFrame) -> Vec<u8> {
        // SAFETY: the frame points into the live fake ring.
        unsafe { std::slice::from_raw_parts(f.data, f.snaplen as usize).to_vec() }
    }

    #[test]
    fn empty_ring_yields_nothing() {
        let mut fr = FakeRing::new(4);
        let mut r = fr.ring();
        assert!(r.peek().is_none());
        assert_eq!(r.errors, 0);
    }

    #[test]
    fn walks_a_block_and_releases_it_after_the_last_packet() {
        let mut fr = FakeRing::new(4);
        fr.fill(
            0,
            &[Pkt::host(b"one"), Pkt::host(b"second"), Pkt::host(b"3")],
        );
        let mut r = fr.ring();
        let mut got = Vec::new();
        while let Some(f) = r.peek() {
            got.push(payload(&f));
            let last = got.len() == 3;
            r.advance();
            if !last {
                assert!(r.open, "block released early");
            }
        }
        assert_eq!(
            got,
            vec![b"one".to_vec(), b"second".to_vec(), b"3".to_vec()]
        );
        assert_eq!(fr.status(0), libc::TP_STATUS_KERNEL);
    }

    #[test]
    fn keeps_a_partly_read_block_for_the_next_call() {
        let mut fr = FakeRing::new(2);
        fr.fill(0, &[Pkt::host(b"a"), Pkt::host(b"b")]);
        fr.fill(1, &[Pkt::host(b"c")]);
        let mut r = fr.ring();
        assert_eq!(payload(&r.peek().unwrap()), b"a");
        r.advance();
        // A peek without advance must not lose or skip the packet.
        assert_eq!(payload(&r.peek().unwrap()), b"b");
        assert_eq!(payload(&r.peek().unwrap()), b"b");
        r.advance();
        assert_eq!(payload(&r.peek().unwrap()), b"c");
        r.advance();
        assert!(r.peek().is_none());
    }

    #[test]
    fn wraps_around_and_sees_refilled_blocks() {
        let mut fr = FakeRing::new(2);
        fr.fill(0, &[Pkt::host(b"x")]);
        fr.fill(1, &[Pkt::host(b"y")]);
        let base = fr.mem.as_mut_ptr().cast::<u8>();
        // SAFETY: fr stays alive; the test writes the ring only between walks.
        let mut r = unsafe { RxRing::new(base, BS, 2) };
        for want in [b"x", b"y"] {
            assert_eq!(payload(&r.peek().unwrap()), want);
            r.advance();
        }
        assert!(r.peek().is_none());
        fr.fill(0, &[Pkt::host(b"z")]);
        assert_eq!(payload(&r.peek().unwrap()), b"z");
    }

    #[test]
    fn empty_user_block_is_released() {
        let mut fr = FakeRing::new(2);
        fr.fill(0, &[]);
        fr.fill(1, &[Pkt::host(b"after")]);
        let mut r = fr.ring();
        assert_eq!(payload(&r.peek().unwrap()), b"after");
        assert_eq!(fr.status(0), libc::TP_STATUS_KERNEL);
    }

    #[test]
    fn corrupt_offsets_are_counted_not_followed() {
        let mut fr = FakeRing::new(2);
        fr.fill(0, &[Pkt::host(b"a"), Pkt::host(b"b")]);
        fr.fill(1, &[Pkt::host(b"ok")]);
        // First packet's next offset points past the block.
        let o = FIRST + offset_of!(libc::tpacket3_hdr, tp_next_offset);
        fr.bytes()[o..o + 4].copy_from_slice(&(BS as u32).to_ne_bytes());
        let mut r = fr.ring();
        assert_eq!(payload(&r.peek().unwrap()), b"a");
        r.advance();
        assert_eq!(payload(&r.peek().unwrap()), b"ok");
        assert_eq!(r.errors, 1);
        // And a snaplen that runs past the block end.
        fr.fill(0, &[Pkt::host(b"bad")]);
        let o = FIRST + offset_of!(libc::tpacket3_hdr, tp_snaplen);
        fr.bytes()[o..o + 4].copy_from_slice(&(BS as u32).to_ne_bytes());
        r.advance();
        assert!(r.peek().is_none());
        assert_eq!(r.errors, 2);
        assert_eq!(fr.status(0), libc::TP_STATUS_KERNEL);
    }

    #[test]
    fn zero_next_offset_does_not_repeat_a_packet() {
        let mut fr = FakeRing::new(1);
        fr.fill(0, &[Pkt::host(b"a"), Pkt::host(b"b")]);
        let o = FIRST + offset_of!(libc::tpacket3_hdr, tp_next_offset);
        fr.bytes()[o..o + 4].copy_from_slice(&0u32.to_ne_bytes());
        let mut r = fr.ring();
        assert_eq!(payload(&r.peek().unwrap()), b"a");
        r.advance();
        assert!(r.peek().is_none());
        assert_eq!(r.errors, 1);
    }
}
