//! The Ethernet side of a transmitted frame: where its IP header starts
//! and which address it goes to, and the MAC rewrite for the next hop.

use crate::addr::Addr;
use crate::neigh::Mac;

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q and 802.1ad tags: skipped (at most two) to find the IP header.
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

/// The destination IP address of an Ethernet frame, or None when it is not
/// IP or too short to hold the header.
#[inline]
pub fn l3_dst(frame: &[u8]) -> Option<Addr> {
    let mut at = 12;
    let mut tags = 0;
    loop {
        let ty = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
        match ty {
            ETHERTYPE_VLAN | ETHERTYPE_QINQ if tags < 2 => {
                at += 4;
                tags += 1;
            }
            ETHERTYPE_IPV4 => {
                let d = frame.get(at + 2 + 16..at + 2 + 20)?;
                return Some(Addr::from_v4(d.try_into().ok()?));
            }
            ETHERTYPE_IPV6 => {
                let d = frame.get(at + 2 + 24..at + 2 + 40)?;
                return Some(Addr::from_v6(d.try_into().ok()?));
            }
            _ => return None,
        }
    }
}

/// Writes the next hop's addresses into the frame's Ethernet header.
#[inline]
pub fn set_macs(frame: &mut [u8], src: &Mac, dst: &Mac) {
    if frame.len() >= ETH_HLEN {
        frame[0..6].copy_from_slice(dst);
        frame[6..12].copy_from_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: &[u8], ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0xaa; 12];
        f.extend_from_slice(ethertype);
        f.extend_from_slice(ip);
        f
    }

    #[test]
    fn finds_ipv4_and_ipv6_destinations() {
        let mut v4 = vec![0x45; 20];
        v4[16..20].copy_from_slice(&[198, 18, 1, 10]);
        assert_eq!(
            l3_dst(&eth(&[0x08, 0x00], &v4)),
            Some(Addr::from_v4([198, 18, 1, 10]))
        );
        let mut v6 = vec![0x60; 40];
        let d = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
        v6[24..40].copy_from_slice(&d);
        assert_eq!(l3_dst(&eth(&[0x86, 0xdd], &v6)), Some(Addr::from_v6(d)));
        // Behind a VLAN tag.
        let mut tagged = vec![0x81, 0x00, 0x00, 0x05, 0x08, 0x00];
        tagged.extend_from_slice(&v4);
        assert_eq!(
            l3_dst(&eth(&tagged[..2], &tagged[2..])),
            Some(Addr::from_v4([198, 18, 1, 10]))
        );
    }

    #[test]
    fn non_ip_and_short_frames_have_no_destination() {
        assert_eq!(l3_dst(&eth(&[0x08, 0x06], &[0; 28])), None);
        let f = eth(&[0x08, 0x00], &[0x45; 20]);
        for cut in 0..f.len() {
            assert_eq!(l3_dst(&f[..cut]), None, "cut {cut}");
        }
        // Three stacked tags: not followed.
        let mut t = vec![
            0x81, 0x00, 0, 1, 0x81, 0x00, 0, 2, 0x81, 0x00, 0, 3, 0x08, 0x00,
        ];
        t.extend_from_slice(&[0x45; 20]);
        assert_eq!(l3_dst(&eth(&t[..2], &t[2..])), None);
    }

    #[test]
    fn set_macs_writes_dst_then_src() {
        let mut f = vec![0u8; 20];
        set_macs(&mut f, &[1, 1, 1, 1, 1, 1], &[2, 2, 2, 2, 2, 2]);
        assert_eq!(&f[..6], &[2; 6]);
        assert_eq!(&f[6..12], &[1; 6]);
        let mut short = vec![0u8; 10];
        set_macs(&mut short, &[1; 6], &[2; 6]);
        assert_eq!(short, vec![0u8; 10]);
    }
}
