//! Batched transmit with `sendmmsg`: one syscall per burst, each message an
//! iovec straight into the frame's buffer, so nothing is copied in user space.
//! On a socket with PACKET_VNET_HDR each message starts with the frame's
//! `virtio_net_hdr` (its [`OffloadMeta`]) in a second iovec: a GSO
//! super-frame goes out whole, for the kernel (or a veth peer's stack) to
//! segment, and a partial checksum stays partial.
//!
//! Why not a TPACKET tx ring: frames are already in our arena (rewritten in
//! place), so a tx ring would cost a second copy per frame plus ring slot
//! management, to save nothing but the kernel's copy that `sendmmsg` also
//! does. Both end in the same driver xmit per frame; the ring only wins when
//! frames are built in it, which a rewriting gateway does not do.

use std::os::fd::RawFd;

use crate::io::offload::VNET_HDR_LEN;
use crate::io::{Batch, OffloadMeta, TxStats, MAX_BURST};
use crate::verdict::Verdict;

/// Shorter frames cannot carry an Ethernet header: the kernel would refuse
/// them with EINVAL and stall the rest of the burst.
const MIN_FRAME: usize = 14;

pub(crate) struct TxQueue {
    msgs: Box<[libc::mmsghdr]>,
    /// Two per message: the vnet header (when used), then the frame.
    iovs: Box<[libc::iovec]>,
    vnet_hdrs: Box<[[u8; VNET_HDR_LEN]]>,
    /// The socket has PACKET_VNET_HDR: every message leads with a header.
    vnet: bool,
}

// SAFETY: the raw pointers in `msgs`/`iovs` are filled and used only
// inside one `send*` call, on whichever single thread owns the queue.
unsafe impl Send for TxQueue {}

/// Errors that are about one frame, not the socket: skip the frame, keep going.
fn frame_error(errno: i32) -> bool {
    matches!(errno, libc::EMSGSIZE | libc::EINVAL | libc::EFAULT)
}

impl TxQueue {
    /// Message arrays for one burst; `vnet`: the socket it sends on has
    /// PACKET_VNET_HDR set.
    pub(crate) fn new(vnet: bool) -> TxQueue {
        // SAFETY: mmsghdr and iovec are plain C structs for which all-zero
        // bytes (NULL pointers, zero lengths) are valid.
        let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        TxQueue {
            msgs: vec![zero_msg; MAX_BURST].into_boxed_slice(),
            iovs: vec![zero_iov; 2 * MAX_BURST].into_boxed_slice(),
            vnet_hdrs: vec![[0u8; VNET_HDR_LEN]; MAX_BURST].into_boxed_slice(),
            vnet,
        }
    }

    /// Builds one message per frame of `batch` that `pick` accepts and
    /// that can be an Ethernet frame; returns (messages, runts skipped).
    fn fill(&mut self, batch: &Batch, pick: impl Fn(usize) -> bool) -> (usize, u32) {
        let mut n = 0;
        let mut runts = 0;
        for i in 0..batch.len() {
            if !pick(i) {
                continue;
            }
            let frame = batch.frame(i);
            if frame.len() < MIN_FRAME {
                runts += 1;
                continue;
            }
            let (first, count) = if self.vnet {
                let meta = batch.descs()[i].offload;
                self.vnet_hdrs[n] = meta.to_vnet_hdr();
                self.iovs[2 * n] = libc::iovec {
                    iov_base: self.vnet_hdrs[n].as_mut_ptr().cast(),
                    iov_len: VNET_HDR_LEN,
                };
                (2 * n, 2)
            } else {
                debug_assert_eq!(batch.descs()[i].offload, OffloadMeta::NONE);
                (2 * n + 1, 1)
            };
            self.iovs[2 * n + 1] = libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            };
            // SAFETY: as in `new`; the pointers are set right below.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            // The socket is bound to one interface and protocol: no address.
            hdr.msg_iov = &mut self.iovs[first];
            hdr.msg_iovlen = count;
            self.msgs[n] = libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            };
            n += 1;
        }
        (n, runts)
    }

    /// One `sendmmsg` of messages `from..n`; the kernel's count or -errno.
    fn sendmmsg(&mut self, fd: RawFd, from: usize, n: usize) -> isize {
        // SAFETY: msgs[from..n] were built by `fill` and point at iovecs
        // over this queue's headers and frames of the batch `fill` read,
        // which the caller keeps borrowed (alive, unchanged) meanwhile.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                self.msgs[from..].as_mut_ptr(),
                (n - from) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            -(last_errno() as isize)
        } else {
            r as isize
        }
    }

    /// Sends every `Tx` frame of `batch` on `fd` (a bound packet socket).
    /// A burst the kernel takes only partly is retried once from where it
    /// stopped; what is left then is counted as dropped. A frame the
    /// kernel refuses by itself (EMSGSIZE, EINVAL) is dropped and the rest
    /// goes on.
    pub(crate) fn send(&mut self, fd: RawFd, batch: &Batch) -> TxStats {
        let verdicts = batch.verdicts();
        let (n, runts) = self.fill(batch, |i| matches!(verdicts[i], Verdict::Tx(_)));
        let mut stats = TxStats {
            sent: 0,
            dropped: runts,
        };
        let mut done = 0;
        let mut retries = 1;
        while done < n {
            let r = self.sendmmsg(fd, done, n);
            if r > 0 {
                stats.sent += r as u32;
                done += r as usize;
                continue;
            } else if r < 0 && frame_error(-r as i32) {
                // The frame at `done` is bad, not the socket: drop just it.
                stats.dropped += 1;
                done += 1;
                continue;
            }
            if retries == 0 {
                break;
            }
            retries -= 1;
        }
        stats.dropped += (n - done) as u32;
        stats
    }

    /// Sends the frames of `batch` that `pick` accepts, in batch order,
    /// and stops at the first the kernel does not take (after one retry):
    /// returns (sent, failed), the sent ones a prefix of the picked ones.
    pub(crate) fn send_prefix(
        &mut self,
        fd: RawFd,
        batch: &Batch,
        pick: impl Fn(usize) -> bool,
    ) -> (u32, u32) {
        let (n, runts) = self.fill(batch, &pick);
        if runts > 0 {
            // A runt breaks the prefix rule: count every picked frame of
            // this call as failed rather than send around it.
            return (0, n as u32 + runts);
        }
        let mut sent = 0usize;
        for _attempt in 0..2 {
            if sent == n {
                break;
            }
            let r = self.sendmmsg(fd, sent, n);
            if r > 0 {
                sent += r as usize;
            }
        }
        (sent as u32, (n - sent) as u32)
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::FrameDesc;
    use crate::verdict::DropReason;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// A connected datagram socketpair: sendmmsg behaves as on a packet
    /// socket (one message per frame), and it needs no privileges.
    fn pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors socketpair writes.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) };
        assert_eq!(r, 0);
        // SAFETY: both descriptors are fresh and owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn recv_all(fd: &OwnedFd) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        for _ in 0..1000 {
            // SAFETY: buf is valid for writes of its length.
            let r = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if r < 0 {
                break;
            }
            out.push(buf[..r as usize].to_vec());
        }
        out
    }

    fn batch_over(region: &mut [u8], frames: &[(usize, Verdict)], buf: usize) -> Batch {
        let mut b = Batch::new();
        // SAFETY: region outlives the batch in every test.
        unsafe { b.reset(region.as_mut_ptr(), region.len()) };
        for (i, &(len, v)) in frames.iter().enumerate() {
            region[i * buf..i * buf + len].fill(i as u8 + 1);
            assert!(b.push(FrameDesc {
                offset: (i * buf) as u64,
                len: len as u32,
                cap: buf as u32,
                tag: 0,
                offload: Default::default(),
            }));
            b.set_verdict(i, v);
        }
        b
    }

    #[test]
    fn sends_only_tx_frames_in_one_burst_and_counts_runts() {
        let (a, b) = pair();
        let mut region = vec![0u8; 8 * 256];
        let frames = [
            (60, Verdict::Tx(0)),
            (70, Verdict::Pass),
            (80, Verdict::Tx(1)),
            (10, Verdict::Tx(0)),
            (90, Verdict::Drop(DropReason::Malformed)),
            (100, Verdict::Tx(0)),
        ];
        let batch = batch_over(&mut region, &frames, 256);
        let mut q = TxQueue::new(false);
        let st = q.send(a.as_raw_fd(), &batch);
        assert_eq!(
            st,
            TxStats {
                sent: 3,
                dropped: 1
            }
        );
        let got = recv_all(&b);
        assert_eq!(got.len(), 3);
        for (g, (idx, len)) in got.iter().zip([(0usize, 60usize), (2, 80), (5, 100)]) {
            assert_eq!(g, &vec![idx as u8 + 1; len]);
        }
    }

    #[test]
    fn with_vnet_every_message_leads_with_its_frames_header() {
        use crate::io::offload::{F_NEEDS_CSUM, GSO_TCPV4};
        let (a, b) = pair();
        let mut region = vec![0u8; 4 * 256];
        let frames = [
            (60, Verdict::Tx(0)),
            (70, Verdict::Pass),
            (80, Verdict::Tx(0)),
        ];
        let mut batch = batch_over(&mut region, &frames, 256);
        let gso = OffloadMeta {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        batch.set_offload(2, gso);
        let st = TxQueue::new(true).send(a.as_raw_fd(), &batch);
        assert_eq!(st.sent, 2);
        let got = recv_all(&b);
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0][..VNET_HDR_LEN], &[0u8; VNET_HDR_LEN]);
        assert_eq!(&got[0][VNET_HDR_LEN..], &vec![1u8; 60][..]);
        assert_eq!(&got[1][..VNET_HDR_LEN], &gso.to_vnet_hdr());
        assert_eq!(&got[1][VNET_HDR_LEN..], &vec![3u8; 80][..]);
    }

    #[test]
    fn send_prefix_sends_picked_frames_in_order() {
        let (a, b) = pair();
        let mut region = vec![0u8; 4 * 256];
        let frames = [
            (60, Verdict::Tx(0)),
            (70, Verdict::Tx(0)),
            (80, Verdict::Tx(0)),
        ];
        let batch = batch_over(&mut region, &frames, 256);
        let (sent, failed) = TxQueue::new(false).send_prefix(a.as_raw_fd(), &batch, |i| i != 1);
        assert_eq!((sent, failed), (2, 0));
        let got = recv_all(&b);
        assert_eq!(got, vec![vec![1u8; 60], vec![3u8; 80]]);
    }

    #[test]
    fn a_full_queue_is_retried_then_counted_as_dropped() {
        let (a, b) = pair();
        let small: libc::c_int = 1;
        // SAFETY: setsockopt reads an int of the given size.
        let r = unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&small as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        let mut region = vec![0u8; 32 * 2048];
        let frames: Vec<(usize, Verdict)> = (0..32).map(|_| (1500, Verdict::Tx(0))).collect();
        let batch = batch_over(&mut region, &frames, 2048);
        let st = TxQueue::new(false).send(a.as_raw_fd(), &batch);
        let got = recv_all(&b);
        assert!(st.dropped > 0, "{st:?}: the send buffer should have filled");
        assert_eq!(st.sent + st.dropped, 32);
        assert_eq!(got.len(), st.sent as usize);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g, &vec![i as u8 + 1; 1500], "frames left in order");
        }
    }
}
