//! Reader of a TPACKET_V2 rx ring: fixed-size frame slots, each with its
//! own status word, handed to user space the moment the kernel has written
//! the packet.
//!
//! Why beside the TPACKET_V3 block ring ([`super::ring`]): a V3 block is
//! handed over only when full or when its retire timer fires (1 ms at the
//! least), so a quiet direction — the ACKs of a bulk TCP transfer — waits
//! up to a millisecond per packet, and TCP's throughput is its window per
//! round trip. V2 has no such wait; it costs a slot per frame sized for the
//! largest frame (64 KiB super-frames), which V3 packs back to back.
//!
//! As for V3, the ring is only touched through raw pointers: a slot's
//! status with atomics (the handover), its content with plain reads once
//! the kernel has given it to us, every offset bounds-checked first.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, Ordering};

use super::ring::{RxFrame, RxWalk};
use crate::io::offload::VNET_HDR_LEN;

/// The kernel puts a `sockaddr_ll` right after the aligned packet header.
const SLL: usize = (size_of::<libc::tpacket2_hdr>() + libc::TPACKET_ALIGNMENT - 1)
    & !(libc::TPACKET_ALIGNMENT - 1);
/// Bytes of per-packet metadata we read: header plus sockaddr_ll.
const PKT_META: usize = SLL + size_of::<libc::sockaddr_ll>();
/// Slots inspected per `peek` before giving up on a run of bad ones.
const MAX_BAD_RUN: usize = 64;

pub(crate) struct FrameRing {
    base: *mut u8,
    frame_size: usize,
    frame_count: usize,
    cur: usize,
    /// Slots released unread because the kernel's offsets did not add up.
    pub errors: u64,
}

impl FrameRing {
    /// # Safety
    /// `base` must point to `frame_size * frame_count` bytes laid out as a
    /// TPACKET_V2 rx ring with one frame per block (or zeroes), aligned to
    /// 8, valid for as long as the ring is used, and read by nothing else
    /// in this process. `frame_size` is a multiple of 16 above `PKT_META`.
    pub(crate) unsafe fn new(base: *mut u8, frame_size: usize, frame_count: usize) -> FrameRing {
        FrameRing {
            base,
            frame_size,
            frame_count,
            cur: 0,
            errors: 0,
        }
    }

    #[inline]
    fn slot(&self) -> *mut u8 {
        // SAFETY: cur < frame_count, so the offset stays inside the ring.
        unsafe { self.base.add(self.cur * self.frame_size) }
    }

    #[inline]
    fn status(&self) -> &AtomicU32 {
        // SAFETY: tp_status is the first, 4-aligned u32 of the slot (slots
        // are 16-aligned, the base 8-aligned); kernel and we access it
        // atomically.
        unsafe {
            &*self
                .slot()
                .add(offset_of!(libc::tpacket2_hdr, tp_status))
                .cast::<AtomicU32>()
        }
    }

    #[inline]
    fn read<T: Copy>(&self, off: usize) -> T {
        debug_assert!(off + size_of::<T>() <= self.frame_size);
        // SAFETY: callers read header fields, inside the slot; the slot is
        // ours (TP_STATUS_USER seen with Acquire).
        unsafe { self.slot().add(off).cast::<T>().read_unaligned() }
    }

    fn release(&mut self) {
        self.status()
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.cur = (self.cur + 1) % self.frame_count;
    }

    /// The frame in the current slot, if its offsets are sane.
    fn frame(&self, status: u32) -> Option<RxFrame> {
        let snaplen: u32 = self.read(offset_of!(libc::tpacket2_hdr, tp_snaplen));
        let wire_len: u32 = self.read(offset_of!(libc::tpacket2_hdr, tp_len));
        let mac = self.read::<u16>(offset_of!(libc::tpacket2_hdr, tp_mac)) as usize;
        let pkttype: u8 = self.read(SLL + offset_of!(libc::sockaddr_ll, sll_pkttype));
        if mac < PKT_META || mac + snaplen as usize > self.frame_size {
            return None;
        }
        let mut vnet = [0u8; VNET_HDR_LEN];
        if mac >= PKT_META + VNET_HDR_LEN {
            // SAFETY: mac - VNET_HDR_LEN .. mac lies after the metadata and
            // before the frame, inside the slot (checked above).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.slot().add(mac - VNET_HDR_LEN),
                    vnet.as_mut_ptr(),
                    VNET_HDR_LEN,
                )
            };
        }
        Some(RxFrame {
            // SAFETY: bounds checked above.
            data: unsafe { self.slot().add(mac) },
            snaplen,
            wire_len,
            status,
            pkttype,
            vnet,
        })
    }
}

impl FrameRing {
    /// The ring's memory: where batches filled in place point.
    pub(crate) fn region(&self) -> (*mut u8, usize) {
        (self.base, self.frame_size * self.frame_count)
    }

    /// Byte offset (from the ring base) where slot `i` ends.
    pub(crate) fn slot_end(&self, i: usize) -> usize {
        (i + 1) * self.frame_size
    }

    /// Consumes the packet `peek` returned *without* handing its slot back:
    /// the caller keeps using it in place and returns it with
    /// [`FrameRing::give_back`]. Returns the slot's index.
    pub(crate) fn take(&mut self) -> usize {
        let i = self.cur;
        self.cur = (self.cur + 1) % self.frame_count;
        i
    }

    /// Hands slot `i` (from [`FrameRing::take`]) back to the kernel. Slots
    /// are independent: the kernel fills the next free one in order and
    /// finds this one free when it comes round.
    pub(crate) fn give_back(&mut self, i: usize) {
        debug_assert!(i < self.frame_count);
        // SAFETY: i < frame_count: the status word of slot i, accessed
        // atomically as in `status`.
        let st = unsafe {
            &*self
                .base
                .add(i * self.frame_size + offset_of!(libc::tpacket2_hdr, tp_status))
                .cast::<AtomicU32>()
        };
        st.store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }
}

impl RxWalk for FrameRing {
    fn peek(&mut self) -> Option<RxFrame> {
        for _ in 0..MAX_BAD_RUN {
            let status = self.status().load(Ordering::Acquire);
            if status & libc::TP_STATUS_USER == 0 {
                return None;
            }
            match self.frame(status) {
                Some(f) => return Some(f),
                None => {
                    self.errors += 1;
                    self.release();
                }
            }
        }
        None
    }

    fn advance(&mut self) {
        self.release();
    }

    fn errors(&self) -> u64 {
        self.errors
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const FS: usize = 4096;
    /// Where the fake kernel puts frames in a slot.
    pub(crate) const MAC: usize = PKT_META + 16 + VNET_HDR_LEN;

    /// Writes a packet into slot `i` of a fake ring the way the kernel does.
    pub(crate) fn put(
        mem: &mut [u8],
        i: usize,
        bytes: &[u8],
        wire_len: u32,
        vnet: [u8; 10],
        mac: usize,
    ) {
        let s = &mut mem[i * FS..(i + 1) * FS];
        s.fill(0);
        let put32 = |s: &mut [u8], o: usize, v: u32| s[o..o + 4].copy_from_slice(&v.to_ne_bytes());
        put32(s, offset_of!(libc::tpacket2_hdr, tp_len), wire_len);
        put32(
            s,
            offset_of!(libc::tpacket2_hdr, tp_snaplen),
            bytes.len() as u32,
        );
        let m = offset_of!(libc::tpacket2_hdr, tp_mac);
        s[m..m + 2].copy_from_slice(&(mac as u16).to_ne_bytes());
        s[SLL + offset_of!(libc::sockaddr_ll, sll_pkttype)] = libc::PACKET_HOST;
        s[mac - 10..mac].copy_from_slice(&vnet);
        s[mac..mac + bytes.len()].copy_from_slice(bytes);
        put32(
            s,
            offset_of!(libc::tpacket2_hdr, tp_status),
            libc::TP_STATUS_USER,
        );
    }

    pub(crate) fn status(mem: &[u8], i: usize) -> u32 {
        u32::from_ne_bytes(mem[i * FS..i * FS + 4].try_into().unwrap())
    }

    #[test]
    fn walks_slots_in_order_and_hands_them_back() {
        let mut mem = vec![0u64; FS * 3 / 8];
        // SAFETY: reinterpreting u64s as bytes.
        let bytes: &mut [u8] =
            unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast(), FS * 3) };
        let mac = PKT_META + 16 + VNET_HDR_LEN;
        put(bytes, 0, &[1; 60], 60, [7; 10], mac);
        put(bytes, 1, &[2; 70], 70, [0; 10], mac);
        let base = bytes.as_mut_ptr();
        // SAFETY: the buffer outlives the ring and is 8-aligned.
        let mut r = unsafe { FrameRing::new(base, FS, 3) };
        let f = r.peek().unwrap();
        assert_eq!((f.snaplen, f.wire_len, f.vnet), (60, 60, [7; 10]));
        // SAFETY: the frame lies in the buffer.
        assert_eq!(unsafe { std::slice::from_raw_parts(f.data, 60) }, &[1; 60]);
        // Peek again without advancing: the same frame.
        assert_eq!(r.peek().unwrap().snaplen, 60);
        r.advance();
        // SAFETY: the same buffer, read after the ring wrote it.
        let view = unsafe { std::slice::from_raw_parts(base, FS * 3) };
        assert_eq!(status(view, 0), libc::TP_STATUS_KERNEL);
        assert_eq!(r.peek().unwrap().snaplen, 70);
        r.advance();
        assert!(r.peek().is_none(), "slot 2 is the kernel's");
        assert_eq!(r.errors, 0);
    }

    #[test]
    fn a_slot_with_bad_offsets_is_released_and_counted() {
        let mut mem = vec![0u64; FS * 2 / 8];
        // SAFETY: as above.
        let bytes: &mut [u8] =
            unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast(), FS * 2) };
        let mac = PKT_META + 16 + VNET_HDR_LEN;
        put(bytes, 0, &[1; 60], 60, [0; 10], mac);
        // A snap length running past the slot.
        let o = offset_of!(libc::tpacket2_hdr, tp_snaplen);
        bytes[o..o + 4].copy_from_slice(&(FS as u32).to_ne_bytes());
        put(bytes, 1, &[2; 64], 64, [0; 10], mac);
        // SAFETY: as above.
        let mut r = unsafe { FrameRing::new(bytes.as_mut_ptr(), FS, 2) };
        assert_eq!(r.peek().unwrap().snaplen, 64);
        assert_eq!(r.errors, 1);
    }
}
