//! Transmitting a capture on an interface, like `tcpreplay --topspeed`:
//! frames are laid out once (MACs rewritten if asked) and sent in bursts
//! with `sendmmsg` on an AF_PACKET socket, paced or at top speed, until
//! the loop count, packet budget or time limit is reached, whichever first.
//!
//! A frame the socket does not take (send buffer full) is sent again on
//! the next burst rather than counted as sent: the budget is in frames that
//! left, so `sent` is what a receiver can be compared against.

use std::time::{Duration, Instant};

use dataplane::io::af_packet::{AfPacket, AfPacketConfig, RingKind};
use dataplane::io::memory::Capture;
use dataplane::io::{Batch, FrameDesc, PacketIo, MAX_BURST};
use dataplane::verdict::Verdict;
use serde::Serialize;

/// Frames shorter than an Ethernet header cannot be sent (EINVAL).
const MIN_FRAME: usize = 14;
/// Ethernet header plus one VLAN tag on top of the MTU.
const L2_OVERHEAD: usize = 18;
/// How long the socket may refuse every frame before the send gives up:
/// a wedged interface must not hang a benchmark.
const STALL_LIMIT: Duration = Duration::from_secs(2);
/// Below this wait the pacer spins (yields) instead of sleeping: sleeps
/// overshoot by ~50-100 us, which would cap the rate.
const SPIN_BELOW: Duration = Duration::from_micros(200);

/// The transmit path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SendIo {
    /// AF_PACKET socket, `sendmmsg` bursts, qdisc bypassed.
    AfPacket,
    /// AF_XDP tx ring (copy mode on veth).
    AfXdp,
}

/// What to send and when to stop. With neither `loops` nor `duration`
/// nor `max_packets`, the capture is sent once.
#[derive(Clone, Debug)]
pub struct SendConfig {
    pub iface: String,
    /// Packets per second; None: top speed.
    pub rate_pps: Option<f64>,
    /// Times through the capture.
    pub loops: Option<u64>,
    /// Wall-clock limit.
    pub duration: Option<Duration>,
    /// Frame limit, on top of the loops.
    pub max_packets: Option<u64>,
    pub io: SendIo,
    /// Frames per sendmmsg (1..=MAX_BURST).
    pub burst: usize,
}

impl SendConfig {
    /// Top speed, one loop, bursts of 64 frames.
    pub fn new(iface: &str) -> SendConfig {
        SendConfig {
            iface: iface.to_string(),
            rate_pps: None,
            loops: None,
            duration: None,
            max_packets: None,
            io: SendIo::AfPacket,
            burst: 64,
        }
    }

    /// Frames to send in total for a capture of `frames` frames; None means
    /// only the duration bounds it.
    pub(crate) fn budget(&self, frames: u64) -> Option<u64> {
        let loops = match (self.loops, self.duration, self.max_packets) {
            (None, None, None) => Some(1),
            (l, _, _) => l,
        };
        let by_loops = loops.map(|l| l.saturating_mul(frames));
        match (by_loops, self.max_packets) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What was sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SendStats {
    /// Frames the kernel took.
    pub sent: u64,
    /// Their bytes (Ethernet header and payload, no FCS).
    pub bytes: u64,
    pub seconds: f64,
    /// Complete passes over the capture.
    pub loops_done: u64,
}

impl SendStats {
    pub fn pps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.sent as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Megabits per second of frame bytes (no preamble, FCS or gap).
    pub fn mbps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 * 8.0 / self.seconds / 1e6
        } else {
            0.0
        }
    }
}

/// Frames ready to send: packed back to back in one region.
pub struct Frames {
    data: Vec<u8>,
    descs: Vec<FrameDesc>,
    /// Capture frames left out: shorter than an Ethernet header or longer
    /// than the interface takes.
    pub skipped: u64,
}

impl Frames {
    /// Lays out `cap`'s frames, overwriting the MACs where given, keeping
    /// only frames of `MIN_FRAME..=max_len` bytes.
    pub fn prepare(
        cap: &Capture,
        src_mac: Option<[u8; 6]>,
        dst_mac: Option<[u8; 6]>,
        max_len: usize,
    ) -> Frames {
        let mut f = Frames {
            data: Vec::with_capacity(cap.bytes()),
            descs: Vec::with_capacity(cap.len()),
            skipped: 0,
        };
        for i in 0..cap.len() {
            let (frame, _) = cap.packet(i);
            if frame.len() < MIN_FRAME || frame.len() > max_len {
                f.skipped += 1;
                continue;
            }
            let off = f.data.len();
            f.data.extend_from_slice(frame);
            if let Some(m) = dst_mac {
                f.data[off..off + 6].copy_from_slice(&m);
            }
            if let Some(m) = src_mac {
                f.data[off + 6..off + 12].copy_from_slice(&m);
            }
            f.descs.push(FrameDesc {
                offset: off as u64,
                len: frame.len() as u32,
                cap: frame.len() as u32,
                tag: 0,
                offload: Default::default(),
            });
        }
        f
    }

    pub fn len(&self) -> usize {
        self.descs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.descs.is_empty()
    }

    /// Frame `i`'s bytes.
    pub fn frame(&self, i: usize) -> &[u8] {
        let d = self.descs[i];
        &self.data[d.offset as usize..(d.offset + u64::from(d.len)) as usize]
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut m = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    for (b, p) in m.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return Err(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"));
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?}: bad hex byte {p:?}"))?;
    }
    Ok(m)
}

/// The MTU of `iface` in the calling thread's network namespace.
pub fn mtu(iface: &str) -> Result<usize, String> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(format!("bad interface name {iface:?}"));
    }
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: ifreq is a plain C struct; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the name and writes ifru_mtu of `req`,
    // which lives across the call.
    let r = unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut req) };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    if r != 0 {
        return Err(format!("{iface}: {err}"));
    }
    // SAFETY: SIOCGIFMTU succeeded, so the kernel wrote the mtu member.
    Ok(unsafe { req.ifr_ifru.ifru_mtu } as usize)
}

/// Loads nothing, opens the socket, prepares `cap` for `cfg.iface` and
/// sends it: the whole of `vipgate send` after argument parsing.
pub fn send_capture(
    cap: &Capture,
    src_mac: Option<[u8; 6]>,
    dst_mac: Option<[u8; 6]>,
    cfg: &SendConfig,
) -> Result<(SendStats, u64), String> {
    let max_len = mtu(&cfg.iface)? + L2_OVERHEAD;
    let mut frames = Frames::prepare(cap, src_mac, dst_mac, max_len);
    let st = send(&mut frames, cfg)?;
    Ok((st, frames.skipped))
}

/// Sends `frames` as `cfg` says, in the calling thread's namespace.
pub fn send(frames: &mut Frames, cfg: &SendConfig) -> Result<SendStats, String> {
    if frames.is_empty() {
        return Err("nothing to send: the capture has no sendable frames".into());
    }
    if !(1..=MAX_BURST).contains(&cfg.burst) {
        return Err(format!("burst must be 1..={MAX_BURST}"));
    }
    if let Some(r) = cfg.rate_pps {
        if !(r.is_finite() && r > 0.0) {
            return Err("rate must be a positive number of packets per second".into());
        }
    }
    match cfg.io {
        SendIo::AfPacket => {
            let mut sock = open_af_packet(&cfg.iface)?;
            run(&mut sock, frames, cfg)
        }
        SendIo::AfXdp => crate::send_xdp::send(frames, cfg),
    }
}

fn open_af_packet(iface: &str) -> Result<AfPacket, String> {
    // The socket only sends; the smallest rx ring the kernel takes keeps
    // the copies it makes of incoming frames cheap.
    let page = 4096;
    let cfg = AfPacketConfig {
        ring: RingKind::Blocks,
        block_size: page,
        block_count: 1,
        frame_size: 2048,
        buf_size: 2048,
        qdisc_bypass: true,
        fanout: None,
        ..AfPacketConfig::default()
    };
    AfPacket::open(iface, &cfg).map_err(|e| format!("AF_PACKET on {iface}: {e}"))
}

/// The send loop over any burst transmitter whose `tx_burst` sends the
/// leading frames of a batch in order (AF_PACKET's does).
pub(crate) fn run(
    io: &mut impl PacketIo,
    frames: &mut Frames,
    cfg: &SendConfig,
) -> Result<SendStats, String> {
    let n = frames.len() as u64;
    let budget = cfg.budget(n);
    let deadline = cfg.duration;
    let mut batch = Batch::new();
    let mut st = SendStats::default();
    let mut pos = 0usize;
    let t0 = Instant::now();
    let mut last_progress = t0;
    loop {
        let now = Instant::now();
        let elapsed = now - t0;
        if deadline.is_some_and(|d| elapsed >= d) || budget.is_some_and(|b| st.sent >= b) {
            break;
        }
        let mut want = cfg.burst as u64;
        if let Some(b) = budget {
            want = want.min(b - st.sent);
        }
        if let Some(rate) = cfg.rate_pps {
            let due = (rate * elapsed.as_secs_f64()) as u64 + 1;
            let allowed = due.saturating_sub(st.sent);
            if allowed == 0 {
                let wait = Duration::from_secs_f64((st.sent + 1) as f64 / rate) - elapsed;
                pace(wait.min(Duration::from_millis(10)));
                continue;
            }
            want = want.min(allowed);
        }
        // Contiguous frames from `pos`, wrapping at the end of the capture.
        // SAFETY: the region is `frames.data`, borrowed mutably for this
        // whole function, so it stays valid and nothing else touches it;
        // the transmitter only reads it.
        unsafe { batch.reset(frames.data.as_mut_ptr(), frames.data.len()) };
        let mut p = pos;
        for _ in 0..want {
            let ok = batch.push(frames.descs[p]);
            debug_assert!(ok, "descriptors lie inside the region");
            let last = batch.len() - 1;
            batch.set_verdict(last, Verdict::Tx(0));
            p = (p + 1) % frames.len();
        }
        let bytes: u64 = batch.descs().iter().map(|d| u64::from(d.len)).sum();
        let pushed = batch.len();
        let tx = io.tx_burst(&mut batch);
        let sent = tx.sent as usize;
        if sent > 0 {
            last_progress = Instant::now();
            st.bytes += if sent == pushed {
                bytes
            } else {
                (0..sent)
                    .map(|k| u64::from(frames.descs[(pos + k) % frames.len()].len))
                    .sum()
            };
            st.sent += sent as u64;
            let before = pos;
            pos = (pos + sent) % frames.len();
            if pos <= before {
                st.loops_done += 1;
            }
        }
        if sent < pushed {
            if last_progress.elapsed() > STALL_LIMIT {
                return Err(format!(
                    "{}: the socket took no frame for {STALL_LIMIT:?} ({} sent)",
                    cfg.iface, st.sent
                ));
            }
            // The socket buffer is full: let the device drain it.
            std::thread::yield_now();
        }
    }
    st.seconds = t0.elapsed().as_secs_f64();
    Ok(st)
}

fn pace(wait: Duration) {
    if wait >= SPIN_BELOW {
        std::thread::sleep(wait - SPIN_BELOW / 2);
    } else {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::io::TxStats;

    fn capture(lens: &[usize]) -> Capture {
        let mut c = Capture::new();
        for (i, &l) in lens.iter().enumerate() {
            c.push(i as u64, &vec![i as u8 + 1; l]);
        }
        c
    }

    /// Takes at most `cap` frames per burst and remembers them.
    struct Sink {
        cap: usize,
        got: Vec<Vec<u8>>,
    }

    impl PacketIo for Sink {
        fn rx_burst(&mut self, _: &mut Batch, _: usize) -> usize {
            0
        }
        fn tx_burst(&mut self, batch: &mut Batch) -> TxStats {
            let n = batch.len().min(self.cap);
            for i in 0..n {
                assert!(matches!(batch.verdicts()[i], Verdict::Tx(_)));
                self.got.push(batch.frame(i).to_vec());
            }
            let st = TxStats {
                sent: n as u32,
                dropped: (batch.len() - n) as u32,
            };
            batch.clear();
            st
        }
        fn kind(&self) -> &'static str {
            "sink"
        }
    }

    #[test]
    fn prepare_rewrites_macs_and_skips_unsendable_frames() {
        let cap = capture(&[60, 10, 100, 3000]);
        let f = Frames::prepare(&cap, Some([0xaa; 6]), Some([0xbb; 6]), 1518);
        assert_eq!(f.len(), 2);
        assert_eq!(f.skipped, 2);
        assert_eq!(&f.frame(0)[..6], &[0xbb; 6]);
        assert_eq!(&f.frame(0)[6..12], &[0xaa; 6]);
        assert_eq!(&f.frame(0)[12..], &[1u8; 48][..]);
        assert_eq!(f.frame(1).len(), 100);
        assert_eq!(f.frame(1)[99], 3);
        let plain = Frames::prepare(&cap, None, None, 1518);
        assert_eq!(plain.frame(0), &[1u8; 60][..]);
    }

    #[test]
    fn loops_bound_the_count_and_partial_bursts_are_resent_in_order() {
        let cap = capture(&[60, 61, 62, 63, 64]);
        let mut f = Frames::prepare(&cap, None, None, 1518);
        let mut sink = Sink {
            cap: 3,
            got: Vec::new(),
        };
        let cfg = SendConfig {
            loops: Some(3),
            burst: 4,
            ..SendConfig::new("test0")
        };
        let st = run(&mut sink, &mut f, &cfg).unwrap();
        assert_eq!(st.sent, 15);
        assert_eq!(st.loops_done, 3);
        assert_eq!(st.bytes, 3 * (60 + 61 + 62 + 63 + 64));
        let lens: Vec<usize> = sink.got.iter().map(Vec::len).collect();
        let want: Vec<usize> = (0..15).map(|i| 60 + i % 5).collect();
        assert_eq!(lens, want);
    }

    #[test]
    fn max_packets_and_duration_bound_an_endless_loop() {
        let cap = capture(&[60, 60]);
        let mut f = Frames::prepare(&cap, None, None, 1518);
        let mut sink = Sink {
            cap: 64,
            got: Vec::new(),
        };
        let cfg = SendConfig {
            loops: Some(u64::MAX),
            max_packets: Some(7),
            ..SendConfig::new("test0")
        };
        assert_eq!(run(&mut sink, &mut f, &cfg).unwrap().sent, 7);
        let cfg = SendConfig {
            duration: Some(Duration::from_millis(50)),
            rate_pps: Some(1000.0),
            ..SendConfig::new("test0")
        };
        let st = run(&mut sink, &mut f, &cfg).unwrap();
        assert!(st.seconds >= 0.05 && st.seconds < 1.0, "{st:?}");
        // 50 ms at 1000 pps: about 50 frames, never far more.
        assert!((20..=60).contains(&st.sent), "{st:?}");
    }

    #[test]
    fn a_socket_that_takes_nothing_is_an_error_not_a_hang() {
        let cap = capture(&[60]);
        let mut f = Frames::prepare(&cap, None, None, 1518);
        let mut sink = Sink {
            cap: 0,
            got: Vec::new(),
        };
        let t0 = Instant::now();
        let r = run(&mut sink, &mut f, &SendConfig::new("test0"));
        assert!(r.is_err());
        assert!(t0.elapsed() < STALL_LIMIT * 3);
    }

    #[test]
    fn macs_parse_and_bad_ones_are_errors() {
        assert_eq!(
            parse_mac("02:00:c6:12:00:0a").unwrap(),
            [2, 0, 0xc6, 0x12, 0, 0x0a]
        );
        for bad in [
            "",
            "02:00:c6:12:00",
            "02:00:c6:12:00:0a:01",
            "zz:00:00:00:00:00",
            "002:0:0:0:0:0",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn budget_defaults_to_one_loop() {
        let c = SendConfig::new("x");
        assert_eq!(c.budget(10), Some(10));
        let d = SendConfig {
            duration: Some(Duration::from_secs(1)),
            ..c.clone()
        };
        assert_eq!(d.budget(10), None);
        let m = SendConfig {
            loops: Some(2),
            max_packets: Some(5),
            ..c
        };
        assert_eq!(m.budget(10), Some(5));
    }
}
