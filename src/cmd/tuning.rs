//! Options that shape tables and pipelines, shared by the subcommands.

use std::sync::Arc;

use clap::Args;
use dataplane::affinity::{AffinityTable, DEFAULT_ENTRIES};
use dataplane::conntrack;
use dataplane::hash::DEFAULT_SEED;
use dataplane::maglev::DEFAULT_MAX_TABLE_SIZE;
use dataplane::pipeline::{
    NodeAddrs, PipelineConfig, RejectTcp, SnatConfig, DEFAULT_ICMP_PER_SECOND,
};
use dataplane::service::Forwarding;
use dataplane::table::TableConfig;

const DEFAULT_AFFINITY_ENTRIES: u32 = DEFAULT_ENTRIES as u32;

#[derive(Args, Debug, Clone)]
pub struct Tuning {
    /// Largest Maglev table per service. Each service gets the smallest
    /// listed prime with at least 400 slots per backend and at least 4093
    /// (so one backend leaving moves < 2% of the other backends' flows),
    /// capped here; 2 bytes a slot. Every gateway must use the same value.
    #[arg(long, default_value_t = DEFAULT_MAX_TABLE_SIZE, value_name = "M")]
    pub max_table_size: u32,
    /// Seed of the stable hashes. Every gateway of a cluster must use the
    /// same seed to pick the same backends.
    #[arg(long, default_value_t = DEFAULT_SEED, value_name = "N")]
    pub seed: u64,
    /// Connection-tracking entries per worker.
    #[arg(long, default_value_t = 1 << 18, value_name = "N")]
    pub conntrack_capacity: u32,
    /// Node name, for `internalTrafficPolicy` / `externalTrafficPolicy:
    /// Local` Services, `hints.forNodes` and `healthCheckNodePort` health
    /// checks.
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// This node's zone (its `topology.kubernetes.io/zone` label): Services
    /// whose EndpointSlices carry `hints.forZones` (trafficDistribution
    /// PreferClose / PreferSameZone) send new flows to the endpoints hinted
    /// for it, with kube-proxy's fallbacks. Without it zone hints are ignored.
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    /// How TCP to a Service without endpoints is answered: `rst` (a TCP
    /// reset, as Cilium and IPVS-mode kube-proxy) or `icmp` (ICMP port
    /// unreachable, as kube-proxy's iptables and nftables REJECT rules).
    /// Linux clients see "connection refused" either way.
    #[arg(long, value_enum, default_value_t = RejectTcpArg::Rst)]
    pub reject_tcp: RejectTcpArg,
    /// Clients remembered for `sessionAffinity: ClientIP` Services (one
    /// table shared by all workers, 16 bytes a client). When it is full
    /// the least recently seen client of a bucket is displaced (counted as
    /// vipgate_affinity_evictions_total) and its next connection is placed
    /// by the Maglev hash of its address.
    #[arg(long, default_value_t = DEFAULT_AFFINITY_ENTRIES, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub affinity_entries: u32,
    /// Seconds a removed Service port keeps translating the established
    /// TCP and SCTP flows it had (new flows to it are handed to the kernel;
    /// its UDP flows are flushed at their next packet), as kube-proxy's
    /// conntrack entries outlive the Service. Default: the established-TCP
    /// conntrack timeout (5 days).
    #[arg(long, default_value_t = TableConfig::default().retire_for_s, value_name = "SECONDS")]
    pub retire_for: u32,
    /// This node's addresses (comma-separated or repeated). Services'
    /// `nodePort`s are served on each of them (kube-proxy's
    /// --nodeport-addresses), and the first IPv4 and IPv6 one are the
    /// source of the ICMP time exceeded vipgate sends, as a router does,
    /// for a client packet towards a VIP whose TTL runs out here.
    /// `vipgate run` defaults to the addresses of its interfaces (IPv6
    /// link-local ones left out); `replay` and `explain` to none, so node
    /// ports are not served there unless given.
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub node_address: Vec<std::net::IpAddr>,
    /// Most ICMP time-exceeded answers each worker sends per second (the
    /// rest are dropped, counted as ttl_exceeded), as the kernel's
    /// net.ipv4.icmp_msgs_per_sec limits its own.
    #[arg(long, default_value_t = DEFAULT_ICMP_PER_SECOND, value_name = "N")]
    pub icmp_per_second: u32,
    /// How Services reach their backends, unless their
    /// `vipgate.io/forwarding` annotation says otherwise: `dnat` rewrites
    /// the destination only (the backend sees the client's address and
    /// must route its replies back through this gateway); `snat` also
    /// rewrites the source to a gateway address and port (--snat-addr,
    /// --snat-ports), so backends anywhere answer the gateway, as
    /// kube-proxy's masquerade. Whatever the mode, a pod calling its own
    /// Service and a DNAT flow whose replies would clash with another's
    /// are source-NATed.
    #[arg(long, value_enum, default_value_t = ForwardingArg::Dnat)]
    pub forwarding: ForwardingArg,
    /// Source-NAT address (one per family, comma-separated or repeated).
    /// Default: the node address of the family (--node-address, or with
    /// `vipgate run` the first address of its interfaces).
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub snat_addr: Vec<std::net::IpAddr>,
    /// Source-NAT ports, FIRST-LAST, split between the workers (each takes
    /// the ports whose replies are steered to it). The default lies above
    /// Linux's ephemeral range (32768-60999), so the node's own
    /// connections never use these ports. A flow needing a port when all
    /// of its worker's share towards that backend endpoint are taken is
    /// dropped (snat_ports_exhausted).
    #[arg(long, value_name = "FIRST-LAST", value_parser = parse_port_range,
          default_value = "61000-65535")]
    pub snat_ports: (u16, u16),
}

/// `FIRST-LAST` (inclusive), 1 <= FIRST <= LAST <= 65535.
fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not FIRST-LAST (e.g. 61000-65535)"))?;
    let port = |t: &str| {
        t.trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("{t:?} is not a port number 1-65535"))
    };
    let (first, last) = (port(a)?, port(b)?);
    if first > last {
        return Err(format!("{first}-{last}: the first port is above the last"));
    }
    Ok((first, last))
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardingArg {
    Dnat,
    Snat,
}

impl From<ForwardingArg> for Forwarding {
    fn from(f: ForwardingArg) -> Forwarding {
        match f {
            ForwardingArg::Dnat => Forwarding::Dnat,
            ForwardingArg::Snat => Forwarding::Snat,
        }
    }
}

/// `--reject-tcp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RejectTcpArg {
    Rst,
    Icmp,
}

impl Tuning {
    pub fn table_config(&self) -> TableConfig {
        TableConfig {
            max_table_size: self.max_table_size,
            seed: self.seed,
            retire_for_s: self.retire_for,
        }
    }

    pub fn pipeline_config(&self) -> PipelineConfig {
        PipelineConfig {
            conntrack: conntrack::Config {
                capacity: self.conntrack_capacity,
                ..conntrack::Config::default()
            },
            reject_tcp: match self.reject_tcp {
                RejectTcpArg::Rst => RejectTcp::Rst,
                RejectTcpArg::Icmp => RejectTcp::Icmp,
            },
            affinity: Arc::new(AffinityTable::new(self.affinity_entries as usize)),
            node_addrs: first_of_each_family(&self.node_address),
            icmp_per_second: self.icmp_per_second,
            snat: SnatConfig {
                // Else the node address (vipgate run fills it in from the
                // interfaces when neither is given).
                addrs: {
                    let set = first_of_each_family(&self.snat_addr);
                    let node = first_of_each_family(&self.node_address);
                    NodeAddrs {
                        v4: set.v4.or(node.v4),
                        v6: set.v6.or(node.v6),
                    }
                },
                ports: self.snat_ports,
            },
            worker: 0,
            workers: 1,
        }
    }

    pub fn model_options(&self) -> control::model::ModelOptions {
        control::model::ModelOptions {
            node_name: self.node_name.clone(),
            zone: self.zone.clone(),
            node_addresses: self.node_address.iter().map(|&a| a.into()).collect(),
            forwarding: self.forwarding.into(),
        }
    }
}

/// The first address of each family in `addrs`.
fn first_of_each_family(addrs: &[std::net::IpAddr]) -> NodeAddrs {
    NodeAddrs {
        v4: addrs.iter().find(|a| a.is_ipv4()).map(|&a| a.into()),
        v6: addrs.iter().find(|a| a.is_ipv6()).map(|&a| a.into()),
    }
}
