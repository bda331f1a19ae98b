//! Keeps the kernel away from the node-address traffic vipgate handles, in
//! AF_PACKET mode.
//!
//! AF_PACKET receives a copy: the kernel still processes every frame. A
//! VIP is not a local address, so the kernel drops its copy (IP forwarding
//! off); but two kinds of vipgate's traffic are addressed to the node
//! itself, and the kernel would answer them (a TCP RST or an ICMP port
//! unreachable from a port nobody listens on), racing or killing the real
//! conversation: clients' packets to a node port, and backends' replies to
//! source-NATed flows (the source-NAT address and port range). An
//! nftables table drops exactly those on vipgate's interfaces, before the
//! kernel's conntrack sees them (prerouting, raw priority). Written
//! through `nft -f -` on the control side after a publish (never on the
//! packet path); AF_XDP needs none of this, since the steering program
//! takes those frames from the kernel.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use dataplane::addr::{Addr, Proto};
use dataplane::table::ServiceTable;

/// The nftables table vipgate owns (the whole table is rewritten each time).
pub const TABLE: &str = "vipgate";

type Key = (Addr, Proto, u16);

/// Where source-NATed flows' replies arrive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnatSpace {
    pub addrs: Vec<Addr>,
    /// First and last port, inclusive.
    pub ports: (u16, u16),
}

/// The node ports last written to the kernel.
pub struct KernelGuard {
    ifaces: Vec<String>,
    node_addrs: BTreeSet<Addr>,
    snat: SnatSpace,
    written: Option<BTreeSet<Key>>,
    /// `nft` failed once: said once, not at every publish.
    warned: bool,
}

impl KernelGuard {
    pub fn new(ifaces: &[String], node_addrs: &[Addr], snat: SnatSpace) -> KernelGuard {
        KernelGuard {
            ifaces: ifaces.to_vec(),
            node_addrs: node_addrs.iter().copied().collect(),
            snat,
            written: None,
            warned: false,
        }
    }

    /// The table's keys whose address is one of the node's.
    fn wanted(&self, table: &ServiceTable) -> BTreeSet<Key> {
        table
            .entries()
            .iter()
            .map(|e| e.spec.key)
            .filter(|k| self.node_addrs.contains(&k.vip))
            .map(|k| (k.vip, k.proto, k.port))
            .collect()
    }

    /// Brings the kernel's table to `table`'s node ports (nothing to do
    /// when they did not change). A failure is warned once and retried at
    /// the next change.
    pub fn apply(&mut self, table: &ServiceTable) {
        let wanted = self.wanted(table);
        if self.written.as_ref() == Some(&wanted) {
            return;
        }
        match nft(&ruleset(&self.ifaces, &wanted, &self.snat)) {
            Ok(()) => {
                if self.written.is_none() && !self.snat.addrs.is_empty() {
                    tracing::info!(
                        "kernel told to drop its copy of replies to source-NATed flows \
                         (ports {}-{}; nftables table inet {TABLE})",
                        self.snat.ports.0,
                        self.snat.ports.1
                    );
                }
                if !wanted.is_empty() || self.written.is_some() {
                    tracing::info!(
                        "kernel told to drop its copy of {} node port(s) (nftables table inet {TABLE})",
                        wanted.len()
                    );
                }
                self.written = Some(wanted);
            }
            Err(e) => {
                if !self.warned {
                    tracing::warn!(
                        "cannot keep the kernel off node ports and source-NAT replies ({e}): with \
                         AF_PACKET the kernel also answers them (TCP RST / ICMP unreachable); \
                         install nftables or drop them yourself"
                    );
                    self.warned = true;
                }
            }
        }
    }

    /// Removes the table (on shutdown): the kernel gets its ports back.
    pub fn remove(&mut self) {
        if self.written.take().is_some() {
            let _ = nft(&format!("table inet {TABLE}\ndelete table inet {TABLE}\n"));
        }
    }
}

impl Drop for KernelGuard {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The whole table, replacing any earlier one (a crashed gateway's too).
pub fn ruleset(ifaces: &[String], keys: &BTreeSet<Key>, snat: &SnatSpace) -> String {
    let names: Vec<String> = ifaces.iter().map(|i| format!("\"{i}\"")).collect();
    let names = names.join(", ");
    let mut snat_rules = String::new();
    for a in &snat.addrs {
        let family = if a.is_v4() { "ip" } else { "ip6" };
        snat_rules.push_str(&format!(
            "        iifname {{ {names} }} {family} daddr {a} meta l4proto {{ tcp, udp, sctp }} \
             th dport {}-{} drop\n",
            snat.ports.0, snat.ports.1
        ));
    }
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for &(addr, proto, port) in keys {
        let l4 = match proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
            // Node ports are TCP, UDP or SCTP; nothing else is keyed.
            _ => continue,
        };
        let e = format!("{addr} . {l4} . {port}");
        if addr.is_v4() {
            v4.push(e)
        } else {
            v6.push(e)
        }
    }
    let elements = |v: &[String]| {
        if v.is_empty() {
            String::new()
        } else {
            format!("        elements = {{ {} }}\n", v.join(", "))
        }
    };
    // `table ...` first creates it if absent, so `delete` never fails.
    format!(
        "table inet {TABLE}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \x20   set v4 {{\n        type ipv4_addr . inet_proto . inet_service\n{}    }}\n\
         \x20   set v6 {{\n        type ipv6_addr . inet_proto . inet_service\n{}    }}\n\
         \x20   chain prerouting {{\n\
         \x20       type filter hook prerouting priority raw; policy accept;\n\
         \x20       iifname {{ {names} }} ip daddr . meta l4proto . th dport @v4 drop\n\
         \x20       iifname {{ {names} }} ip6 daddr . meta l4proto . th dport @v6 drop\n\
         {snat_rules}\
         \x20   }}\n\
         }}\n",
        elements(&v4),
        elements(&v6),
    )
}

/// Runs `nft -f -` with `script`.
fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(a: &str, proto: Proto, port: u16) -> Key {
        (
            Addr::from(a.parse::<std::net::IpAddr>().unwrap()),
            proto,
            port,
        )
    }

    #[test]
    fn ruleset_lists_each_family_in_its_set() {
        let keys: BTreeSet<Key> = [
            key("198.18.0.1", Proto::Tcp, 30080),
            key("198.18.0.1", Proto::Udp, 30053),
            key("2001:db8::1", Proto::Tcp, 30080),
        ]
        .into();
        let r = ruleset(
            &["eth0".into(), "eth1".into()],
            &keys,
            &SnatSpace::default(),
        );
        assert!(
            r.contains("elements = { 198.18.0.1 . tcp . 30080, 198.18.0.1 . udp . 30053 }"),
            "{r}"
        );
        assert!(
            r.contains("elements = { 2001:db8::1 . tcp . 30080 }"),
            "{r}"
        );
        assert!(r.contains("iifname { \"eth0\", \"eth1\" } ip daddr"), "{r}");
        assert!(r.starts_with("table inet vipgate\ndelete table"), "{r}");
        assert!(
            !r.contains("th dport 6"),
            "no source-NAT rule without addresses: {r}"
        );
    }

    #[test]
    fn snat_replies_are_dropped_per_address_family() {
        let snat = SnatSpace {
            addrs: vec![
                key("198.18.0.1", Proto::Tcp, 0).0,
                key("fd00::1", Proto::Tcp, 0).0,
            ],
            ports: (61000, 65535),
        };
        let r = ruleset(&["eth0".into()], &BTreeSet::new(), &snat);
        assert!(
            r.contains(
                "iifname { \"eth0\" } ip daddr 198.18.0.1 meta l4proto { tcp, udp, sctp } \
                 th dport 61000-65535 drop"
            ),
            "{r}"
        );
        assert!(r.contains("ip6 daddr fd00::1 meta l4proto"), "{r}");
    }

    #[test]
    fn empty_sets_have_no_elements_line() {
        let r = ruleset(&["eth0".into()], &BTreeSet::new(), &SnatSpace::default());
        assert!(!r.contains("elements"), "{r}");
    }
}
