//! Packets preloaded in memory, replayed through the burst I/O trait: what
//! `vipgate replay` and the per-core benchmarks run. Each rx copies frames
//! into fixed-size buffers, as a NIC's DMA would, so the pipeline rewrites
//! copies and the capture can be looped.

use super::{Batch, FrameDesc, PacketIo, TxStats, MAX_BURST};
use crate::verdict::Verdict;

/// Buffer size per frame: a full-size Ethernet frame plus room for a reject
/// answer that is longer than what it answers (ICMP quotes up to 1232 bytes).
/// Captures with longer frames get per-frame buffers sized by their
/// largest frame instead (see [`MemoryIo::new`]).
pub const FRAME_BUF_SIZE: usize = 2048;

/// The longest frame a capture keeps whole: the largest IP packet (64 KiB)
/// behind an Ethernet header with one VLAN tag, as captures of GSO/GRO or
/// BIG TCP traffic hold them. Longer frames are cut to it.
pub const MAX_FRAME_LEN: usize = 65535 + 18;

/// One captured frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapturedPacket {
    offset: usize,
    len: u32,
    /// Capture timestamp, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
}

/// A capture held in memory: one arena of frame bytes and an index.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    data: Vec<u8>,
    packets: Vec<CapturedPacket>,
    /// Frames longer than MAX_FRAME_LEN, cut to it when loaded.
    pub truncated: u64,
    /// The longest frame held.
    max_len: usize,
    /// Records of the file that could not be read (skipped).
    pub damaged: u64,
    /// Where the first damaged record is and what is wrong with it.
    pub first_damage: Option<String>,
}

impl Capture {
    pub fn new() -> Capture {
        Capture::default()
    }

    /// Appends a frame (cut to MAX_FRAME_LEN, counted in `truncated`).
    pub fn push(&mut self, ts_ns: u64, frame: &[u8]) {
        self.push_with_header(ts_ns, &[], frame);
    }

    /// Appends `header` followed by `body` as one frame (a synthetic
    /// Ethernet header in front of a non-Ethernet capture's payload).
    pub fn push_with_header(&mut self, ts_ns: u64, header: &[u8], body: &[u8]) {
        let room = MAX_FRAME_LEN - header.len();
        let body = if body.len() > room {
            self.truncated += 1;
            &body[..room]
        } else {
            body
        };
        let len = header.len() + body.len();
        self.max_len = self.max_len.max(len);
        self.packets.push(CapturedPacket {
            offset: self.data.len(),
            len: len as u32,
            ts_ns,
        });
        self.data.extend_from_slice(header);
        self.data.extend_from_slice(body);
    }

    /// Counts a record of the file that was skipped; the first one's
    /// description is kept for the warning.
    pub fn damage(&mut self, what: impl FnOnce() -> String) {
        self.damaged += 1;
        if self.first_damage.is_none() {
            self.first_damage = Some(what());
        }
    }

    /// The longest frame held, in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Bytes per frame buffer a replay of this capture needs: the usual
    /// FRAME_BUF_SIZE (a full-size frame plus room for a longer reject
    /// answer), or the longest frame when that is longer (an answer is
    /// never longer than ~1.3 KB, so it fits in such a buffer too).
    pub fn buf_size(&self) -> usize {
        self.max_len.max(FRAME_BUF_SIZE).next_multiple_of(64)
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    pub fn packet(&self, i: usize) -> (&[u8], u64) {
        let p = self.packets[i];
        (&self.data[p.offset..p.offset + p.len as usize], p.ts_ns)
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Time from the first to the last packet, in nanoseconds.
    pub fn span_ns(&self) -> u64 {
        match (self.packets.first(), self.packets.last()) {
            (Some(a), Some(b)) => b.ts_ns.saturating_sub(a.ts_ns),
            _ => 0,
        }
    }
}

/// Frames a replay transmitted, kept for writing a pcap.
#[derive(Clone, Debug, Default)]
pub struct TxCapture {
    data: Vec<u8>,
    /// (capture index of the packet that caused it, offset, len, timestamp).
    frames: Vec<(u32, usize, u32, u64)>,
}

impl TxCapture {
    /// The frames in capture order (stable for frames of one input packet).
    pub fn sorted(&self) -> Vec<(u32, &[u8], u64)> {
        let mut v: Vec<(u32, &[u8], u64)> = self
            .frames
            .iter()
            .map(|&(seq, off, len, ts)| (seq, &self.data[off..off + len as usize], ts))
            .collect();
        v.sort_by_key(|f| f.0);
        v
    }

    /// Merges several workers' captures in capture order.
    pub fn merge(parts: &[TxCapture]) -> Vec<(u32, &[u8], u64)> {
        let mut v: Vec<(u32, &[u8], u64)> = parts.iter().flat_map(|p| p.sorted()).collect();
        v.sort_by_key(|f| f.0);
        v
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// Replays some packets of a capture (`order`: capture indices, e.g. one
/// worker's share) `loops` times. The dataplane clock follows the capture's
/// timestamps and keeps rising across loops (each loop starts one second
/// after the previous one ended), so conntrack timeouts behave as captured.
pub struct MemoryIo<'a> {
    capture: &'a Capture,
    order: &'a [u32],
    pos: usize,
    loops: u64,
    loop_no: u64,
    loop_shift_ns: u64,
    bufs: Vec<u8>,
    /// Bytes per frame buffer in `bufs` (the capture's `buf_size`).
    slot: usize,
    now_ns: u64,
    tx: Option<TxCapture>,
    /// How many frames of the current batch (a prefix) came from loop 0.
    first_loop_frames: usize,
    sent: u64,
}

impl<'a> MemoryIo<'a> {
    pub fn new(capture: &'a Capture, order: &'a [u32], loops: u64) -> MemoryIo<'a> {
        MemoryIo {
            capture,
            order,
            pos: 0,
            loops,
            loop_no: 0,
            loop_shift_ns: capture.span_ns() + 1_000_000_000,
            bufs: vec![0u8; MAX_BURST * capture.buf_size()],
            slot: capture.buf_size(),
            now_ns: 0,
            tx: None,
            first_loop_frames: 0,
            sent: 0,
        }
    }

    /// Keep a copy of every transmitted frame of the first loop.
    pub fn capture_tx(&mut self) {
        self.tx = Some(TxCapture::default());
    }

    pub fn take_tx(&mut self) -> Option<TxCapture> {
        self.tx.take()
    }

    /// The dataplane clock after the last rx burst: the capture time of its
    /// last packet, shifted by the loop.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// True once every loop has been delivered.
    pub fn done(&self) -> bool {
        self.loop_no >= self.loops || self.order.is_empty()
    }

    /// Complete passes over the capture so far.
    pub fn loops_done(&self) -> u64 {
        self.loop_no
    }

    /// Frames transmitted so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

impl PacketIo for MemoryIo<'_> {
    fn rx_burst(&mut self, batch: &mut Batch, max: usize) -> usize {
        // SAFETY: `bufs` is owned by self, lives as long as self, and is only
        // touched through the batch until the next rx_burst.
        unsafe { batch.reset(self.bufs.as_mut_ptr(), self.bufs.len()) };
        let max = max.min(MAX_BURST);
        let mut n = 0;
        self.first_loop_frames = 0;
        while n < max && !self.done() {
            let idx = self.order[self.pos];
            let (frame, ts) = self.capture.packet(idx as usize);
            let off = n * self.slot;
            self.bufs[off..off + frame.len()].copy_from_slice(frame);
            batch.push(FrameDesc {
                offset: off as u64,
                len: frame.len() as u32,
                cap: self.slot as u32,
                tag: idx,
                offload: Default::default(),
            });
            self.now_ns = ts + self.loop_no * self.loop_shift_ns;
            n += 1;
            if self.loop_no == 0 {
                self.first_loop_frames = n;
            }
            self.pos += 1;
            if self.pos == self.order.len() {
                self.pos = 0;
                self.loop_no += 1;
                // A burst never spans two loops, so callers can act exactly
                // at loop boundaries (warm-up, recording the first loop).
                break;
            }
        }
        n
    }

    fn tx_burst(&mut self, batch: &mut Batch) -> TxStats {
        let mut stats = TxStats::default();
        for i in 0..batch.len() {
            if let Verdict::Tx(_) = batch.verdicts()[i] {
                stats.sent += 1;
                // Only the first loop is kept: later loops repeat it.
                if let (Some(tx), true) = (self.tx.as_mut(), i < self.first_loop_frames) {
                    let d = batch.descs()[i];
                    let (_, ts) = self.capture.packet(d.tag as usize);
                    tx.frames.push((d.tag, tx.data.len(), d.len, ts));
                    tx.data.extend_from_slice(batch.frame(i));
                }
            }
        }
        self.sent += u64::from(stats.sent);
        batch.clear();
        stats
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn max_frame(&self) -> usize {
        self.slot
    }
}
