//! NETLINK_ROUTE dumps of links, addresses and neighbours, and the pure
//! parsers behind them (tested over hand-built messages).
//!
//! Only the handful of message types `ip link`, `ip addr` and `ip neigh`
//! print are needed, so this speaks the wire format directly with libc
//! instead of pulling in a netlink crate.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::addr::Addr;

use super::Mac;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
pub(crate) const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
pub(crate) const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
pub(crate) const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Neighbour states whose link-layer address can be used: REACHABLE,
/// STALE, DELAY, PROBE, NOARP, PERMANENT (not INCOMPLETE or FAILED).
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;
/// Size of ifinfomsg, ifaddrmsg and ndmsg: where each one's attributes start.
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const NDMSG_LEN: usize = 12;
/// Dumps arrive in datagrams of up to a page or so; 32 KiB never truncates.
const RECV_BUF: usize = 32 * 1024;

/// An interface: `ip link` name, index and MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    pub mac: Option<Mac>,
}

/// An interface address with its prefix length (`ip addr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub ifindex: u32,
    pub addr: Addr,
    /// Prefix length in the address family's own bits (24 for a /24).
    pub prefix: u8,
}

/// A usable neighbour entry (`ip neigh`, resolved states only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neigh {
    pub ifindex: u32,
    pub addr: Addr,
    pub mac: Mac,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Walks the messages of one datagram: (type, payload after the header).
/// Stops at the first inconsistent length instead of reading past it.
pub(crate) fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = u32_at(buf, at)? as usize;
        let ty = u16_at(buf, at + 4)?;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            return None;
        }
        let payload = &buf[at + NLMSG_HDRLEN..at + len];
        at += align4(len);
        Some((ty, payload))
    })
}

/// Walks route attributes: (type, value).
pub(crate) fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = u16_at(buf, at)? as usize;
        let ty = u16_at(buf, at + 2)?;
        if len < 4 || at + len > buf.len() {
            return None;
        }
        let value = &buf[at + 4..at + len];
        at += align4(len);
        // Strip NLA_F_NESTED / NLA_F_NET_BYTEORDER.
        Some((ty & 0x3fff, value))
    })
}

fn addr_from(family: u8, v: &[u8]) -> Option<Addr> {
    match (family as i32, v.len()) {
        (libc::AF_INET, 4) => Some(Addr::from_v4(v.try_into().ok()?)),
        (libc::AF_INET6, 16) => Some(Addr::from_v6(v.try_into().ok()?)),
        _ => None,
    }
}

/// An RTM_NEWLINK payload.
pub(crate) fn parse_link(p: &[u8]) -> Option<Link> {
    let ifindex = u32_at(p, 4)?;
    let mut link = Link {
        ifindex,
        name: String::new(),
        mac: None,
    };
    for (ty, v) in attrs(p.get(IFINFOMSG_LEN..)?) {
        match ty {
            IFLA_IFNAME => {
                let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
                link.name = String::from_utf8_lossy(&v[..end]).into_owned();
            }
            IFLA_ADDRESS if v.len() == 6 => link.mac = v.try_into().ok(),
            _ => {}
        }
    }
    Some(link)
}

/// An RTM_NEWADDR payload. IFA_LOCAL wins over IFA_ADDRESS: on
/// point-to-point links the latter is the peer.
pub(crate) fn parse_addr(p: &[u8]) -> Option<IfAddr> {
    let family = *p.first()?;
    let prefix = *p.get(1)?;
    let ifindex = u32_at(p, 4)?;
    let (mut local, mut address) = (None, None);
    for (ty, v) in attrs(p.get(IFADDRMSG_LEN..)?) {
        match ty {
            IFA_LOCAL => local = addr_from(family, v),
            IFA_ADDRESS => address = addr_from(family, v),
            _ => {}
        }
    }
    Some(IfAddr {
        ifindex,
        addr: local.or(address)?,
        prefix,
    })
}

/// An RTM_NEWNEIGH payload, if its state has a usable MAC.
pub(crate) fn parse_neigh(p: &[u8]) -> Option<Neigh> {
    let family = *p.first()?;
    let ifindex = u32_at(p, 4)?;
    let state = u16_at(p, 8)?;
    if state & NUD_USABLE == 0 {
        return None;
    }
    let (mut addr, mut mac) = (None, None);
    for (ty, v) in attrs(p.get(NDMSG_LEN..)?) {
        match ty {
            NDA_DST => addr = addr_from(family, v),
            NDA_LLADDR if v.len() == 6 => mac = v.try_into().ok(),
            _ => {}
        }
    }
    Some(Neigh {
        ifindex,
        addr: addr?,
        mac: mac?,
    })
}

/// A NETLINK_ROUTE socket in the caller's network namespace.
pub struct RouteSocket {
    fd: OwnedFd,
    seq: u32,
}

impl RouteSocket {
    pub fn open() -> io::Result<RouteSocket> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(RouteSocket { fd, seq: 0 })
    }

    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        self.dump(RTM_GETLINK, IFINFOMSG_LEN, RTM_NEWLINK, parse_link)
    }

    pub fn addrs(&mut self) -> io::Result<Vec<IfAddr>> {
        self.dump(RTM_GETADDR, IFADDRMSG_LEN, RTM_NEWADDR, parse_addr)
    }

    pub fn neighbours(&mut self) -> io::Result<Vec<Neigh>> {
        self.dump(RTM_GETNEIGH, NDMSG_LEN, RTM_NEWNEIGH, parse_neigh)
    }

    /// Sends a dump request (family AF_UNSPEC: every family) and collects
    /// the replies of type `want` that `parse` accepts.
    fn dump<T>(
        &mut self,
        request: u16,
        body_len: usize,
        want: u16,
        parse: fn(&[u8]) -> Option<T>,
    ) -> io::Result<Vec<T>> {
        self.seq = self.seq.wrapping_add(1);
        let len = NLMSG_HDRLEN + body_len;
        let mut req = vec![0u8; len];
        req[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&request.to_ne_bytes());
        req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        // SAFETY: sends `len` initialised bytes from `req`; the kernel is
        // the default destination of an unbound netlink socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), len, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            // SAFETY: receives into `buf`, at most its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "netlink dump ended without NLMSG_DONE",
                ));
            }
            for (ty, payload) in messages(&buf[..n as usize]) {
                match ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let errno = u32_at(payload, 0).map_or(0, |e| e as i32);
                        if errno != 0 {
                            return Err(io::Error::from_raw_os_error(-errno));
                        }
                    }
                    t if t == want => out.extend(parse(payload)),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, v: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(v);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn msg(ty: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(body);
        m
    }

    fn ndmsg(family: u8, ifindex: u32, state: u16) -> Vec<u8> {
        let mut b = vec![family, 0, 0, 0];
        b.extend_from_slice(&ifindex.to_ne_bytes());
        b.extend_from_slice(&state.to_ne_bytes());
        b.extend_from_slice(&[0, 0]);
        b
    }

    const MAC: Mac = [0x02, 0, 0, 0, 0, 0x42];

    #[test]
    fn parses_resolved_neighbours_of_both_families() {
        let mut b4 = ndmsg(libc::AF_INET as u8, 7, 0x02);
        b4.extend(attr(NDA_DST, &[198, 18, 1, 10]));
        b4.extend(attr(NDA_LLADDR, &MAC));
        let v6 = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
        let mut b6 = ndmsg(libc::AF_INET6 as u8, 8, 0x04);
        b6.extend(attr(NDA_DST, &v6));
        b6.extend(attr(NDA_LLADDR, &MAC));
        let mut dgram = msg(RTM_NEWNEIGH, &b4);
        dgram.extend(msg(RTM_NEWNEIGH, &b6));
        let got: Vec<Neigh> = messages(&dgram)
            .filter_map(|(t, p)| (t == RTM_NEWNEIGH).then(|| parse_neigh(p)).flatten())
            .collect();
        assert_eq!(
            got,
            vec![
                Neigh {
                    ifindex: 7,
                    addr: Addr::from_v4([198, 18, 1, 10]),
                    mac: MAC
                },
                Neigh {
                    ifindex: 8,
                    addr: Addr::from_v6(v6),
                    mac: MAC
                }
            ]
        );
    }

    #[test]
    fn skips_incomplete_and_failed_neighbours_and_missing_mac() {
        for state in [0x01u16, 0x20] {
            let mut b = ndmsg(libc::AF_INET as u8, 7, state);
            b.extend(attr(NDA_DST, &[198, 18, 1, 10]));
            b.extend(attr(NDA_LLADDR, &MAC));
            assert_eq!(parse_neigh(&b), None, "state {state:#x}");
        }
        let mut b = ndmsg(libc::AF_INET as u8, 7, 0x02);
        b.extend(attr(NDA_DST, &[198, 18, 1, 10]));
        assert_eq!(parse_neigh(&b), None);
    }

    #[test]
    fn address_prefers_local_over_peer() {
        let mut b = vec![libc::AF_INET as u8, 24, 0, 0];
        b.extend_from_slice(&3u32.to_ne_bytes());
        b.extend(attr(IFA_ADDRESS, &[198, 18, 0, 99]));
        b.extend(attr(IFA_LOCAL, &[198, 18, 0, 1]));
        let a = parse_addr(&b).unwrap();
        assert_eq!(a.addr, Addr::from_v4([198, 18, 0, 1]));
        assert_eq!((a.ifindex, a.prefix), (3, 24));
    }

    #[test]
    fn link_name_and_mac() {
        let mut b = vec![0u8; IFINFOMSG_LEN];
        b[4..8].copy_from_slice(&5u32.to_ne_bytes());
        b.extend(attr(IFLA_IFNAME, b"vg-gw0\0"));
        b.extend(attr(IFLA_ADDRESS, &MAC));
        let l = parse_link(&b).unwrap();
        assert_eq!(
            (l.ifindex, l.name.as_str(), l.mac),
            (5, "vg-gw0", Some(MAC))
        );
    }

    #[test]
    fn truncated_input_ends_the_walk_without_panicking() {
        let mut b = ndmsg(libc::AF_INET as u8, 7, 0x02);
        b.extend(attr(NDA_DST, &[198, 18, 1, 10]));
        let m = msg(RTM_NEWNEIGH, &b);
        for cut in 0..m.len() {
            for (_, p) in messages(&m[..cut]) {
                let _ = parse_neigh(p);
            }
            let _ = parse_neigh(&b[..cut.min(b.len())]);
            let _ = parse_addr(&b[..cut.min(b.len())]);
            let _ = parse_link(&b[..cut.min(b.len())]);
        }
        // A length field claiming more than the buffer stops the walk.
        let mut bad = m.clone();
        bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(messages(&bad).count(), 0);
    }

    #[test]
    fn live_dump_lists_loopback() {
        let mut s = RouteSocket::open().unwrap();
        let links = s.links().unwrap();
        assert!(links.iter().any(|l| l.name == "lo"), "{links:?}");
        // Neighbour and address dumps complete (possibly empty in a netns).
        s.addrs().unwrap();
        s.neighbours().unwrap();
    }
}
