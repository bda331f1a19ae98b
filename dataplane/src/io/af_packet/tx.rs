//! Batched transmit with `sendmmsg`: one syscall per burst, each message an
//! iovec straight into the frame's buffer, so nothing is copied in user space.
//!
//! Why not a TPACKET tx ring: frames are already in our arena (rewritten in
//! place), so a tx ring would cost a second copy per frame plus ring slot
//! management, to save nothing but the kernel's copy that `sendmmsg` also
//! does. Both end in the same driver xmit per frame; the ring only wins when
//! frames are built in it, which a rewriting gateway does not do.

use std::os::fd::RawFd;

use crate::io::{Batch, TxStats, MAX_BURST};
use crate::verdict::Verdict;

/// Shorter frames cannot carry an Ethernet header: the kernel would refuse
/// them with EINVAL and stall the rest of the burst.
const MIN_FRAME: usize = 14;

pub(crate) struct TxQueue {
    msgs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
}

/// Errors that are about one frame, not the socket: skip the frame, keep going.
fn frame_error(errno: i32) -> bool {
    matches!(errno, libc::EMSGSIZE | libc::EINVAL | libc::EFAULT)
}

impl TxQueue {
    pub(crate) fn new() -> TxQueue {
        // SAFETY: mmsghdr and iovec are plain C structs for which all-zero
        // bytes (NULL pointers, zero lengths) are valid.
        let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        TxQueue {
            msgs: vec![zero_msg; MAX_BURST].into_boxed_slice(),
            iovs: vec![zero_iov; MAX_BURST].into_boxed_slice(),
        }
    }

    /// Sends every `Tx` frame of `batch` on `fd` (a bound packet socket).
    /// A burst the kernel takes only partly is retried once from where it
    /// stopped; what is left then is counted as dropped.
    pub(crate) fn send(&mut self, fd: RawFd, batch: &Batch) -> TxStats {
        let mut stats = TxStats::default();
        let mut n = 0;
        for (i, v) in batch.verdicts().iter().enumerate() {
            if !matches!(v, Verdict::Tx(_)) {
                continue;
            }
            let frame = batch.frame(i);
            if frame.len() < MIN_FRAME {
                stats.dropped += 1;
                continue;
            }
            self.iovs[n] = libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            };
            n += 1;
        }
        for i in 0..n {
            // SAFETY: as in `new`; pointers are filled in right below.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            // The socket is bound to one interface and protocol: no address.
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            self.msgs[i] = libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            };
        }
        let mut done = 0;
        let mut retries = 1;
        while done < n {
            let want = n - done;
            // SAFETY: msgs[done..n] are initialised above and point at iovecs
            // that point into frames of `batch`, which stay borrowed (alive,
            // unchanged) for the duration of the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.msgs[done..].as_mut_ptr(),
                    want as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                stats.sent += r as u32;
                done += r as usize;
                if done == n {
                    break;
                }
            } else if r < 0 && frame_error(last_errno()) {
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
        let mut q = TxQueue::new();
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
        let st = TxQueue::new().send(a.as_raw_fd(), &batch);
        let got = recv_all(&b);
        assert!(st.dropped > 0, "{st:?}: the send buffer should have filled");
        assert_eq!(st.sent + st.dropped, 32);
        assert_eq!(got.len(), st.sent as usize);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g, &vec![i as u8 + 1; 1500], "frames left in order");
        }
    }
}
