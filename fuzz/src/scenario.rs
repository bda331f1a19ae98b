//! The fixed world the pipeline target runs in: clients, VIPs and backends
//! (198.18.0.0/15 and fd00::/8 only, as everywhere in vipgate), and three
//! table generations that the inputs switch between mid-run.
//!
//! The tables are built once per process: AFL runs thousands of inputs in
//! one process, and a Maglev build per input would dominate the run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use dataplane::addr::{Addr, Proto};
use dataplane::service::{
    Affinity, BackendSpec, BackendState, Forwarding, ServiceKey, ServiceSpec,
};
use dataplane::table::{ServiceTable, TableConfig};

use BackendState::{NotServing, Ready, ServingTerminating};

/// IPv4 address 198.18.`net`.`host` (clients: net 0, backends: net 1) or
/// 198.19.0.`host` for `net` 0x13 (VIPs).
fn v4(net: u8, host: u8) -> IpAddr {
    if net == 0x13 {
        IpAddr::V4(Ipv4Addr::new(198, 19, 0, host))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 18, net, host))
    }
}

/// The IPv6 counterpart: fd00:18:`net`::`host` (VIPs: fd00:19::`host`).
fn v6(net: u8, host: u8) -> IpAddr {
    if net == 0x13 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x19, 0, 0, 0, 0, 0, host.into()))
    } else {
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0x18,
            net.into(),
            0,
            0,
            0,
            0,
            host.into(),
        ))
    }
}

/// An address of the family `six`.
pub fn addr(six: bool, net: u8, host: u8) -> IpAddr {
    if six {
        v6(net, host)
    } else {
        v4(net, host)
    }
}

/// Hosts of the clients (net 0); backends may be clients too (hairpin).
pub const CLIENT_HOSTS: [u8; 4] = [1, 2, 3, 200];
/// Hosts of the backends (net 1) in any generation.
pub const BACKEND_HOSTS: [u8; 6] = [10, 11, 12, 13, 20, 30];
/// A router on either side, for ICMP errors that do not come from a host.
pub const ROUTER_HOST: u8 = 254;
/// Hosts of the VIPs (net 0x13); .99 is a VIP in no generation.
pub const VIP_HOSTS: [u8; 5] = [10, 11, 12, 13, 99];

/// One Service port of the scenario: VIP host, family, port, protocol,
/// backends (host, port, state), ClientIP affinity.
struct Svc {
    vip: u8,
    six: bool,
    port: u16,
    proto: Proto,
    backends: &'static [(u8, u16, BackendState)],
    affinity: bool,
}

impl Svc {
    fn spec(&self) -> ServiceSpec {
        let ip = |net, host| Addr::from(addr(self.six, net, host));
        ServiceSpec {
            key: ServiceKey {
                vip: ip(0x13, self.vip),
                port: self.port,
                proto: self.proto,
            },
            name: format!("fuzz/svc-{}:{}", self.vip, self.port),
            backends: self
                .backends
                .iter()
                .map(|&(host, port, state)| BackendSpec {
                    addr: ip(1, host),
                    port,
                    weight: 1,
                    state,
                })
                .collect(),
            affinity: if self.affinity {
                Affinity::ClientIp { timeout_s: 10 }
            } else {
                Affinity::None
            },
            no_endpoints: dataplane::service::NoEndpoints::Reject,
            // One VIP's Services are source-NATed.
            forwarding: if self.vip == 11 {
                Forwarding::Snat
            } else {
                Forwarding::Dnat
            },
            source_ranges: Vec::new(),
        }
    }
}

const fn svc(
    vip: u8,
    six: bool,
    port: u16,
    proto: Proto,
    backends: &'static [(u8, u16, BackendState)],
) -> Svc {
    Svc {
        vip,
        six,
        port,
        proto,
        backends,
        affinity: false,
    }
}

/// Generation 1: TCP and UDP with endpoints in both families, ClientIP
/// affinity, a Service without endpoints, one served only by a terminating
/// endpoint, and a backend port equal to the Service port.
const GEN1: &[Svc] = &[
    svc(
        10,
        false,
        80,
        Proto::Tcp,
        &[(10, 8080, Ready), (11, 8080, Ready), (12, 8080, Ready)],
    ),
    svc(
        10,
        false,
        53,
        Proto::Udp,
        &[(10, 5353, Ready), (11, 5353, Ready)],
    ),
    Svc {
        affinity: true,
        ..svc(
            11,
            false,
            80,
            Proto::Tcp,
            &[(20, 80, Ready), (13, 80, Ready)],
        )
    },
    svc(12, false, 80, Proto::Tcp, &[]),
    svc(12, false, 80, Proto::Udp, &[(30, 80, NotServing)]),
    svc(
        13,
        false,
        443,
        Proto::Tcp,
        &[(30, 8443, ServingTerminating)],
    ),
    svc(
        10,
        true,
        80,
        Proto::Tcp,
        &[(10, 8080, Ready), (11, 8080, Ready)],
    ),
    svc(
        10,
        true,
        53,
        Proto::Udp,
        &[(10, 5353, Ready), (12, 5353, Ready)],
    ),
    svc(12, true, 80, Proto::Tcp, &[]),
    // SCTP: with endpoints (IPv6), and without (IPv4: ABORT answers).
    svc(
        13,
        true,
        3868,
        Proto::Sctp,
        &[(10, 3869, Ready), (11, 3869, Ready)],
    ),
    svc(13, false, 3868, Proto::Sctp, &[]),
];

/// Generation 2: backends leave and arrive, a UDP Service loses all its
/// endpoints, one without endpoints gains one, an IPv6 Service goes away.
const GEN2: &[Svc] = &[
    svc(
        10,
        false,
        80,
        Proto::Tcp,
        &[(11, 8080, Ready), (12, 8080, Ready), (13, 8080, Ready)],
    ),
    svc(10, false, 53, Proto::Udp, &[]),
    Svc {
        affinity: true,
        ..svc(11, false, 80, Proto::Tcp, &[(20, 80, Ready)])
    },
    svc(12, false, 80, Proto::Tcp, &[(30, 8080, Ready)]),
    svc(12, false, 80, Proto::Udp, &[(30, 80, Ready)]),
    svc(13, false, 443, Proto::Tcp, &[(30, 8443, NotServing)]),
    svc(
        10,
        true,
        53,
        Proto::Udp,
        &[(12, 5353, Ready), (13, 5353, Ready)],
    ),
    svc(12, true, 80, Proto::Tcp, &[(20, 8080, Ready)]),
    // The SCTP backends change; the IPv4 SCTP Service gains one.
    svc(13, true, 3868, Proto::Sctp, &[(11, 3869, Ready)]),
    svc(13, false, 3868, Proto::Sctp, &[(12, 3869, Ready)]),
];

/// Every table generation a run can switch to.
pub struct Tables {
    /// Generation 1, the one every run starts on.
    pub first: ServiceTable,
    /// Generation 2, built from the first (unchanged services reused).
    pub second: ServiceTable,
    /// Generation 2 as an empty table: every Service deleted.
    pub empty: ServiceTable,
}

impl Tables {
    /// Table `i` of [first, second, empty] (modulo 3).
    pub fn get(&self, i: usize) -> &ServiceTable {
        match i % 3 {
            0 => &self.first,
            1 => &self.second,
            _ => &self.empty,
        }
    }
}

/// The scenario's tables, built on first use.
pub fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let first = ServiceTable::from_specs(specs(GEN1), TableConfig::default());
        let (second, _) = ServiceTable::build(specs(GEN2), &first);
        let (empty, _) = ServiceTable::build(Vec::new(), &first);
        Tables {
            first,
            second,
            empty,
        }
    })
}

fn specs(svcs: &[Svc]) -> Vec<ServiceSpec> {
    svcs.iter().map(Svc::spec).collect()
}

/// A Service port a frame may be sent to: (VIP, port, protocol), from any
/// generation, plus ports no generation serves.
pub fn target(i: usize) -> (IpAddr, u16, Proto) {
    let i = i % (GEN1.len() + GEN2.len() + 2);
    match GEN1.iter().chain(GEN2).nth(i) {
        Some(s) => (addr(s.six, 0x13, s.vip), s.port, s.proto),
        None if i.is_multiple_of(2) => (v4(0x13, 10), 8080, Proto::Tcp),
        None => (v6(0x13, 99), 53, Proto::Udp),
    }
}
