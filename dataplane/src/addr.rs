//! Addresses, protocols and 5-tuples as the dataplane stores them.
//!
//! Every address is 16 bytes: IPv4 is kept IPv4-mapped (`::ffff:a.b.c.d`), so
//! one key type serves both families and a conntrack entry has a fixed size.
//!
//! The value therefore does not say which family a *packet* is: an IPv6
//! header may carry `::ffff:a.b.c.d` too. A packet's family comes from its
//! IP version (`Parsed::v6`), and the wire code writes addresses with
//! [`Addr::wire`] in that family. The parser refuses IPv6 packets carrying
//! such addresses (`ParseError::V4Mapped`), since their keys would alias
//! IPv4 services and flows.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 (mapped) or IPv6 address as 16 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct Addr(pub [u8; 16]);

const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

impl Addr {
    #[inline]
    pub const fn from_v4(o: [u8; 4]) -> Addr {
        Addr([
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, o[0], o[1], o[2], o[3],
        ])
    }

    #[inline]
    pub const fn from_v6(o: [u8; 16]) -> Addr {
        Addr(o)
    }

    /// Whether the value lies in `::ffff:0:0/96`, where this form keeps
    /// IPv4. Right for addresses of known family (from configuration, an
    /// `IpAddr`); never the family of a packet, see the module docs.
    #[inline]
    pub fn is_v4(&self) -> bool {
        self.0[..12] == V4_MAPPED_PREFIX
    }

    /// The last four bytes: the IPv4 address when `is_v4()`.
    #[inline]
    pub fn v4_octets(&self) -> [u8; 4] {
        [self.0[12], self.0[13], self.0[14], self.0[15]]
    }

    pub fn to_ip(&self) -> IpAddr {
        if self.is_v4() {
            IpAddr::V4(Ipv4Addr::from(self.v4_octets()))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.0))
        }
    }

    /// The bytes of this address in an IP header of the packet's version:
    /// the IPv4 address (last 4 bytes) when `!v6`, all 16 bytes when `v6`.
    /// The caller says which: `::ffff:a.b.c.d` is a valid IPv6 address, so
    /// the value cannot.
    #[inline]
    pub fn wire(&self, v6: bool) -> &[u8] {
        if v6 {
            &self.0[..]
        } else {
            &self.0[12..]
        }
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Addr {
        match ip {
            IpAddr::V4(v4) => Addr::from_v4(v4.octets()),
            IpAddr::V6(v6) => Addr(v6.octets()),
        }
    }
}

impl From<Ipv4Addr> for Addr {
    fn from(ip: Ipv4Addr) -> Addr {
        Addr::from_v4(ip.octets())
    }
}

impl From<Ipv6Addr> for Addr {
    fn from(ip: Ipv6Addr) -> Addr {
        Addr(ip.octets())
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_ip())
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_ip())
    }
}

/// L4 protocols the dataplane tracks. The discriminant is the IP protocol number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
#[repr(u8)]
pub enum Proto {
    Icmp = 1,
    Tcp = 6,
    Udp = 17,
    Icmpv6 = 58,
    Sctp = 132,
}

impl Proto {
    #[inline]
    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            1 => Some(Proto::Icmp),
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            58 => Some(Proto::Icmpv6),
            132 => Some(Proto::Sctp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Icmp => "ICMP",
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Icmpv6 => "ICMPv6",
            Proto::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A flow as seen on the wire in one direction. For ICMP echo both ports hold
/// the echo identifier, so request and reply tuples mirror each other.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Tuple {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: Proto,
}

impl Tuple {
    /// The same flow seen from the other side.
    #[inline]
    pub fn reversed(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_mapping_round_trips() {
        let ip: IpAddr = "198.18.0.7".parse().unwrap();
        let a = Addr::from(ip);
        assert!(a.is_v4());
        assert_eq!(a.wire(false), &[198, 18, 0, 7]);
        assert_eq!(a.to_ip(), ip);
    }

    #[test]
    fn v6_stays_v6() {
        let ip: IpAddr = "fd00::1:5".parse().unwrap();
        let a = Addr::from(ip);
        assert!(!a.is_v4());
        assert_eq!(a.wire(true).len(), 16);
        assert_eq!(a.to_ip(), ip);
    }

    /// The family is the packet's: a mapped value in an IPv6 header is
    /// written as its 16 bytes.
    #[test]
    fn wire_bytes_follow_the_packet_family_not_the_value() {
        let a = Addr::from_v4([198, 18, 0, 7]);
        assert_eq!(a.wire(false), &[198, 18, 0, 7]);
        assert_eq!(a.wire(true), &a.0[..]);
    }
}
