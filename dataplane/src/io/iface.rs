//! What an interface's settings mean for each I/O mode: MTU, offloads,
//! driver (veth or not), read once when `vipgate run` starts and printed as
//! one line per interface, the way XDP load balancers document what they
//! need from the NIC.
//!
//! On a veth the settings that decide what arrives are the *peer's* (its
//! tx checksum offload leaves partial checksums, its TSO/GSO sends 64 KiB
//! super-frames), and the peer usually sits in a pod's namespace where the
//! gateway cannot read or change them: the line says what follows from
//! either choice instead.

use super::af_packet::{driver, mtu, offload, Offload};

/// Ethernet header plus two VLAN tags: what a frame adds to the MTU.
pub const L2_OVERHEAD: u32 = 14 + 2 * 4;

/// Largest MTU at which veth takes an XDP program that does not handle
/// multi-buffer frames: a page minus XDP's 256-byte headroom, minus the
/// kernel's `skb_shared_info` (320 bytes), minus the Ethernet header
/// (veth_xdp_set: "Peer MTU is too large to set XDP"). Most NIC drivers
/// have a limit of the same shape.
pub const VETH_XDP_MAX_MTU: u32 = 4096 - 256 - 320 - 14;

/// The I/O mode a line is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    AfXdp {
        /// Largest frame a socket receives whole: a UMEM frame's, or a
        /// jumbo slot's when multi-buffer.
        max_frame: u32,
        /// Bound with multi-buffer (XDP_USE_SG, frags-aware program).
        multi_buffer: bool,
    },
    AfPacket {
        /// PACKET_VNET_HDR in use: offload state carried.
        vnet: bool,
        /// Arena buffer size.
        max_frame: u32,
    },
}

/// An interface's facts (None: could not be read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub name: String,
    pub driver: Option<String>,
    pub mtu: Option<u32>,
    pub gro: Option<bool>,
    pub lro: Option<bool>,
    pub tso: Option<bool>,
    pub tx_csum: Option<bool>,
    /// For a veth: its peer, if it is in this namespace.
    pub peer: Option<Peer>,
}

/// A veth peer visible from here, and the sender settings that decide what
/// it hands over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub tso: Option<bool>,
    pub tx_csum: Option<bool>,
}

/// Reads a small number from /sys/class/net/`ifname`/`file`.
fn sysfs_u32(ifname: &str, file: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/{file}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The veth peer of `ifname` when it lives in this namespace: the
/// interface whose index is our `iflink` and whose `iflink` is our index.
/// (Interface indexes are per namespace, so a peer elsewhere may share a
/// number with an unrelated local interface: the two-way check rules that
/// out.)
fn local_peer(ifname: &str) -> Option<String> {
    let me = sysfs_u32(ifname, "ifindex")?;
    let link = sysfs_u32(ifname, "iflink")?;
    if link == me {
        return None;
    }
    std::fs::read_dir("/sys/class/net").ok()?.find_map(|e| {
        let name = e.ok()?.file_name().to_string_lossy().into_owned();
        (name != ifname
            && sysfs_u32(&name, "ifindex") == Some(link)
            && sysfs_u32(&name, "iflink") == Some(me))
        .then_some(name)
    })
}

impl Facts {
    /// Reads `ifname`'s facts in the caller's network namespace.
    pub fn read(ifname: &str) -> Facts {
        let on = |i: &str, o| offload(i, o).ok();
        let driver = driver(ifname).ok();
        let peer = (driver.as_deref() == Some("veth"))
            .then(|| local_peer(ifname))
            .flatten()
            .map(|name| Peer {
                tso: on(&name, Offload::Tso),
                tx_csum: on(&name, Offload::TxChecksum),
                name,
            });
        Facts {
            name: ifname.to_string(),
            driver,
            mtu: mtu(ifname).ok(),
            gro: on(ifname, Offload::Gro),
            lro: on(ifname, Offload::Lro),
            tso: on(ifname, Offload::Tso),
            tx_csum: on(ifname, Offload::TxChecksum),
            peer,
        }
    }

    pub fn is_veth(&self) -> bool {
        self.driver.as_deref() == Some("veth")
    }

    /// Why AF_XDP cannot run at this interface's MTU, if it cannot: one
    /// line naming the limit and the ways out. `max_frame` is the largest
    /// frame a socket takes whole; `multi_buffer` whether frames larger
    /// than a page reach it (program and socket both multi-buffer).
    pub fn xdp_mtu_error(&self, max_frame: u32, multi_buffer: bool) -> Option<String> {
        let mtu = self.mtu?;
        let frame_limit = max_frame.saturating_sub(L2_OVERHEAD);
        let (limit, why) = if multi_buffer {
            (frame_limit, "a frame must fit one AF_XDP jumbo slot")
        } else if self.is_veth() && VETH_XDP_MAX_MTU < frame_limit {
            (
                VETH_XDP_MAX_MTU,
                "veth takes XDP up to that without multi-buffer, which this kernel lacks",
            )
        } else {
            (
                frame_limit,
                "a frame must fit one AF_XDP UMEM frame without multi-buffer, which this kernel lacks",
            )
        };
        (mtu > limit).then(|| {
            format!(
                "MTU {mtu} of {} is above the AF_XDP limit of {limit} ({why}); \
                 lower it (`ip link set dev {} mtu {limit}`) or use --io af-packet, \
                 which takes frames up to 64 KiB",
                self.name, self.name
            )
        })
    }

    /// The start-up line about this interface in `mode`.
    pub fn describe(&self, mode: Mode) -> String {
        let flag = |v: Option<bool>| match v {
            Some(true) => "on",
            Some(false) => "off",
            None => "?",
        };
        let mtu = self.mtu.map_or("?".to_string(), |m| m.to_string());
        let kind = match &self.driver {
            Some(d) if d == "veth" => "veth".to_string(),
            Some(d) => format!("driver {d}"),
            None => "driver ?".to_string(),
        };
        let mut s = format!(
            "{}: {kind}, MTU {mtu}, GRO {}, LRO {}, TSO {}, tx-csum {}; ",
            self.name,
            flag(self.gro),
            flag(self.lro),
            flag(self.tso),
            flag(self.tx_csum)
        );
        let peer_line;
        let peer = match (&self.peer, self.is_veth()) {
            (Some(p), _) => {
                peer_line = format!(
                    "its veth peer {} (here: TSO {}, tx-csum {}) decides what arrives",
                    p.name,
                    flag(p.tso),
                    flag(p.tx_csum)
                );
                peer_line.as_str()
            }
            (None, true) => {
                "its veth peer is in another namespace (its TSO and tx-csum, not visible from \
                 here, decide what arrives)"
            }
            (None, false) => "frames arrive as the wire carries them",
        };
        match mode {
            Mode::AfXdp {
                max_frame,
                multi_buffer,
            } => {
                let mb = if multi_buffer {
                    "multi-buffer, larger than a page gathered into one"
                } else {
                    "single-buffer"
                };
                s.push_str(&format!(
                    "af_xdp: frames up to {max_frame} bytes ({mb}), one wire frame each (XDP \
                     runs before GRO, and attaching it turns GSO off on a veth peer); {peer}: \
                     partial checksums from its tx offload are completed"
                ));
                if let Some(e) = self.xdp_mtu_error(max_frame, multi_buffer) {
                    s.push_str(&format!("; {e}"));
                }
            }
            Mode::AfPacket { vnet: true, .. } => s.push_str(&format!(
                "af_packet with vnet headers: {peer}; GSO/GRO super-frames (to 64 KiB) are \
                 NATed once and sent on whole, partial checksums stay partial for the \
                 receiver or NIC to finish"
            )),
            Mode::AfPacket {
                vnet: false,
                max_frame,
            } => {
                s.push_str(&format!(
                    "af_packet without vnet headers (the kernel refused PACKET_VNET_HDR): \
                     frames up to {max_frame} bytes, partial checksums are completed on rx"
                ));
                if self.gro == Some(true) || self.lro == Some(true) {
                    s.push_str(&format!(
                        "; merged frames above that are skipped: `ethtool -K {} gro off lro off`",
                        self.name
                    ));
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn veth(mtu: u32) -> Facts {
        Facts {
            name: "gwc".into(),
            driver: Some("veth".into()),
            mtu: Some(mtu),
            gro: Some(true),
            lro: Some(false),
            tso: Some(true),
            tx_csum: Some(true),
            peer: None,
        }
    }

    #[test]
    fn xdp_mtu_limit_names_the_limit_and_the_way_out() {
        assert_eq!(veth(1500).xdp_mtu_error(3840, false), None);
        assert_eq!(veth(VETH_XDP_MAX_MTU).xdp_mtu_error(3840, false), None);
        let e = veth(9000).xdp_mtu_error(3840, false).unwrap();
        assert!(e.contains("MTU 9000 of gwc") && e.contains("3506"), "{e}");
        assert!(e.contains("--io af-packet"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        // Another driver: the UMEM frame is the limit.
        let nic = Facts {
            driver: Some("mlx5_core".into()),
            ..veth(4000)
        };
        let e = nic.xdp_mtu_error(3840, false).unwrap();
        assert!(e.contains(&(3840 - L2_OVERHEAD).to_string()), "{e}");
        // Multi-buffer: a jumbo slot is the limit, on veth too.
        assert_eq!(veth(9000).xdp_mtu_error(12032, true), None);
        let e = veth(16000).xdp_mtu_error(12032, true).unwrap();
        assert!(
            e.contains("limit of 12010") && e.contains("jumbo slot"),
            "{e}"
        );
    }

    #[test]
    fn each_mode_says_what_the_settings_imply() {
        let f = veth(1500);
        let x = f.describe(Mode::AfXdp {
            max_frame: 3840,
            multi_buffer: false,
        });
        assert!(x.starts_with("gwc: veth, MTU 1500, GRO on, LRO off, TSO on, tx-csum on; af_xdp"));
        assert!(x.contains("completed") && x.contains("peer"), "{x}");
        let p = f.describe(Mode::AfPacket {
            vnet: true,
            max_frame: 65792,
        });
        assert!(p.contains("sent on whole"), "{p}");
        let old = f.describe(Mode::AfPacket {
            vnet: false,
            max_frame: 65792,
        });
        assert!(old.contains("gro off"), "{old}");
        let big = veth(9000).describe(Mode::AfXdp {
            max_frame: 3840,
            multi_buffer: false,
        });
        assert!(big.contains("above the AF_XDP limit"), "{big}");
        for l in [x, p, old, big] {
            assert!(!l.contains('\n'));
        }
    }

    #[test]
    fn a_local_peer_is_named_with_its_sender_settings() {
        let mut f = veth(1500);
        let far = f.describe(Mode::AfXdp {
            max_frame: 3840,
            multi_buffer: false,
        });
        assert!(far.contains("another namespace"), "{far}");
        f.peer = Some(Peer {
            name: "pgw".into(),
            tso: Some(false),
            tx_csum: Some(true),
        });
        let near = f.describe(Mode::AfPacket {
            vnet: true,
            max_frame: 65792,
        });
        assert!(
            near.contains("veth peer pgw (here: TSO off, tx-csum on)"),
            "{near}"
        );
    }

    #[test]
    fn reads_loopback() {
        let f = Facts::read("lo");
        assert_eq!(f.mtu, Some(65536));
        assert!(f
            .describe(Mode::AfXdp {
                max_frame: 3840,
                multi_buffer: false
            })
            .contains("lo:"));
    }
}
