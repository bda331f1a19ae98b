//! veth labs: network namespaces for a client, the gateway and backends,
//! joined by veth pairs and one bridge, with RFC 2544 addresses only.
//!
//! ```text
//!  client ──veth── gw ──veth── sw (bridge) ──veth── b0, b1, ...
//!  198.18.0.2   .0.1 | .1.1                      198.18.1.10+i
//!  fd00:0::2  fd00:0::1 | fd00:1::1              fd00:1::10+i
//! ```
//! The client routes the VIP ranges (198.19.0.0/16, fd00:ff::/64) via the
//! gateway; backends route everything via it. The gateway does not
//! forward (ip_forward off) and blackholes the VIP ranges: whatever
//! crosses it was forwarded by vipgate (or by the kernel rules a
//! comparison benchmark installs). The gateway
//! has exactly two interfaces, [`GW_CLIENT_IF`] and [`GW_BACKEND_IF`].
//!
//! Namespaces are named `vgl<pid>x<n>-<role>`, unique per process and lab;
//! dropping the [`Lab`] deletes them all (also while unwinding a panic).
//!
//! Every veth pair has the same number of queues ([`Lab::up_with_queues`]):
//! a veth delivers a frame to the peer's rx queue numbered like the
//! sender's tx queue, and a socket picks its tx queue from its flow hash,
//! so several connections spread over the gateway's rx queues (one AF_XDP
//! socket, and so one worker, per queue).
//!
//! [`Lab::up_one_armed`] builds the one-armed variant instead: client, gateway
//! and backends all on the bridge, the gateway with one interface
//! ([`GW_ONE_ARMED_IF`]) holding both gateway addresses.

/// Namespace helpers: ip, setns, offloads, sysctls.
pub mod netns;
/// The one-armed topology: every namespace on the bridge, one gateway port.
mod one_armed;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub use netns::{in_netns, ip, set_offloads};

/// The gateway's client-side interface.
pub const GW_CLIENT_IF: &str = "gwc";
/// The gateway's backend-side interface.
pub const GW_BACKEND_IF: &str = "gwb";
/// The one-armed gateway's only interface (clients and backends).
pub const GW_ONE_ARMED_IF: &str = "gw0";
/// Every lab namespace name starts with this.
pub const NS_PREFIX: &str = "vgl";

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const GW_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const GW_BACKEND_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
pub const GW_CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
pub const GW_BACKEND_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);

/// Backend `i`'s IPv4 address.
pub fn backend_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 10 + i as u8)
}

/// Backend `i`'s IPv6 address.
pub fn backend_v6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x10 + i as u16)
}

/// How the lab's veths are left for offloads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Offloads {
    /// As `ip link add ... type veth` creates them (tx checksum offload,
    /// TSO/GSO, GRO on): what pods and users have, so the default.
    #[default]
    Default,
    /// Tx checksum, TSO, GSO and GRO off on every veth: every frame fits
    /// the MTU and carries a full checksum.
    Off,
}

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct LabSpec {
    /// Backend namespaces (1..=200).
    pub backends: usize,
    /// Add the IPv6 addresses and routes.
    pub ipv6: bool,
    /// Offload settings of every veth.
    pub offloads: Offloads,
    /// MTU of every veth and the bridge (68..=65535; 1500 is veth's own).
    pub mtu: u32,
}

/// The MTU `ip link add ... type veth` gives.
pub const DEFAULT_MTU: u32 = 1500;

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            backends: 2,
            ipv6: true,
            offloads: Offloads::Default,
            mtu: DEFAULT_MTU,
        }
    }
}

/// Most queues a lab veth gets: one per worker, and labs run on small hosts.
pub const MAX_QUEUES: u32 = 64;

/// A built lab; dropping it deletes every namespace it made.
pub struct Lab {
    pub client: String,
    pub gw: String,
    pub switch: String,
    pub backends: Vec<String>,
    one_armed: bool,
    created: Vec<String>,
}

impl Lab {
    /// Builds the lab with single-queue veths (needs root). On error, what
    /// was built is removed.
    pub fn up(spec: LabSpec) -> Result<Lab, String> {
        Lab::up_with_queues(spec, 1)
    }

    /// Builds the lab with `queues` tx and rx queues on every veth
    /// (1..=[`MAX_QUEUES`]), so a multi-worker AF_XDP gateway gets a
    /// socket per worker. On error, what was built is removed.
    pub fn up_with_queues(spec: LabSpec, queues: u32) -> Result<Lab, String> {
        if queues == 0 || queues > MAX_QUEUES {
            return Err(format!("queues must be 1..={MAX_QUEUES}, got {queues}"));
        }
        let mut lab = Lab::named(spec, false)?;
        // On error `lab` drops here and removes what was created.
        lab.build(spec, queues)?;
        Ok(lab)
    }

    /// An empty lab with fresh namespace names, none created yet.
    fn named(spec: LabSpec, one_armed: bool) -> Result<Lab, String> {
        if spec.backends == 0 || spec.backends > 200 {
            return Err(format!("backends must be 1..=200, got {}", spec.backends));
        }
        if !(68..=65535).contains(&spec.mtu) {
            return Err(format!("mtu must be 68..=65535, got {}", spec.mtu));
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{NS_PREFIX}{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        Ok(Lab {
            client: format!("{id}-client"),
            gw: format!("{id}-gw"),
            switch: format!("{id}-sw"),
            backends: (0..spec.backends).map(|i| format!("{id}-b{i}")).collect(),
            one_armed,
            created: Vec::new(),
        })
    }

    /// The gateway's interfaces, as `vipgate run --iface` takes them.
    pub fn gw_ifaces(&self) -> &'static [&'static str] {
        if self.one_armed {
            &[GW_ONE_ARMED_IF]
        } else {
            &[GW_CLIENT_IF, GW_BACKEND_IF]
        }
    }

    fn build(&mut self, spec: LabSpec, queues: u32) -> Result<(), String> {
        let all: Vec<String> = [&self.client, &self.gw, &self.switch]
            .into_iter()
            .cloned()
            .chain(self.backends.iter().cloned())
            .collect();
        for ns in &all {
            ip(&["netns", "add", ns])?;
            self.created.push(ns.clone());
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let (c, g, sw) = (&self.client, &self.gw, &self.switch);
        let mtu = spec.mtu;
        netns::veth_pair(c, "eth0", g, GW_CLIENT_IF, queues, mtu)?;
        ip(&[
            "-n",
            sw,
            "link",
            "add",
            "br0",
            "mtu",
            &mtu.to_string(),
            "type",
            "bridge",
        ])?;
        netns::veth_pair(g, GW_BACKEND_IF, sw, "pgw", queues, mtu)?;
        ip(&["-n", sw, "link", "set", "pgw", "master", "br0"])?;
        for (i, b) in self.backends.iter().enumerate() {
            let port = format!("pb{i}");
            // Backends get the queues too: a reply keeps its socket's tx
            // queue number across the bridge, spreading over gwb's queues.
            netns::veth_pair(b, "eth0", sw, &port, queues, mtu)?;
            ip(&["-n", sw, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", sw, "link", "set", &port, "up"])?;
            netns::set_offloads(sw, &port, spec.offloads)?;
        }
        ip(&["-n", sw, "link", "set", "pgw", "up"])?;
        ip(&["-n", sw, "link", "set", "br0", "up"])?;
        netns::set_offloads(sw, "pgw", spec.offloads)?;

        let mut addrs: Vec<(&str, &str, String)> = vec![
            (c, "eth0", format!("{CLIENT_V4}/24")),
            (g, GW_CLIENT_IF, format!("{GW_CLIENT_V4}/24")),
            (g, GW_BACKEND_IF, format!("{GW_BACKEND_V4}/24")),
        ];
        for (i, b) in self.backends.iter().enumerate() {
            addrs.push((b, "eth0", format!("{}/24", backend_v4(i))));
        }
        if spec.ipv6 {
            addrs.push((c, "eth0", format!("{CLIENT_V6}/64")));
            addrs.push((g, GW_CLIENT_IF, format!("{GW_CLIENT_V6}/64")));
            addrs.push((g, GW_BACKEND_IF, format!("{GW_BACKEND_V6}/64")));
            for (i, b) in self.backends.iter().enumerate() {
                addrs.push((b, "eth0", format!("{}/64", backend_v6(i))));
            }
        }
        for (ns, dev, a) in &addrs {
            // nodad: the address is usable at once, not after ~2 s of DAD.
            let mut args = vec!["-n", ns, "addr", "add", a.as_str(), "dev", dev];
            if a.contains(':') {
                args.push("nodad");
            }
            ip(&args)?;
        }
        for (ns, dev) in [(c, "eth0"), (g, GW_CLIENT_IF), (g, GW_BACKEND_IF)]
            .into_iter()
            .chain(self.backends.iter().map(|b| (b, "eth0")))
        {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            netns::set_offloads(ns, dev, spec.offloads)?;
        }
        self.routes(spec)
    }

    /// The same in both topologies: the client reaches the VIP ranges via
    /// the gateway, backends route everything via it, and the gateway
    /// itself neither forwards nor delivers VIP traffic.
    fn routes(&self, spec: LabSpec) -> Result<(), String> {
        let (c, g) = (&self.client, &self.gw);
        ip(&[
            "-n",
            c,
            "route",
            "add",
            "198.19.0.0/16",
            "via",
            &GW_CLIENT_V4.to_string(),
        ])?;
        for b in &self.backends {
            ip(&[
                "-n",
                b,
                "route",
                "add",
                "default",
                "via",
                &GW_BACKEND_V4.to_string(),
            ])?;
        }
        if spec.ipv6 {
            ip(&[
                "-n",
                c,
                "-6",
                "route",
                "add",
                "fd00:ff::/64",
                "via",
                &GW_CLIENT_V6.to_string(),
            ])?;
            for b in &self.backends {
                ip(&[
                    "-n",
                    b,
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    &GW_BACKEND_V6.to_string(),
                ])?;
            }
        }
        // AF_PACKET hands vipgate copies: the gateway's kernel sees every
        // VIP packet too. Without a route it would answer IPv6 ones with
        // "no route" ICMP errors that reset the client's connection first.
        ip(&["-n", g, "route", "add", "blackhole", "198.19.0.0/16"])?;
        if spec.ipv6 {
            ip(&["-n", g, "-6", "route", "add", "blackhole", "fd00:ff::/64"])?;
        }
        netns::sysctl(g, "net/ipv4/ip_forward", "0")?;
        netns::sysctl(g, "net/ipv6/conf/all/forwarding", "0")?;
        Ok(())
    }

    /// `ip netns exec <ns> <program> <args...>` as a Command to adjust and run.
    pub fn command(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// Runs a command in `ns` and waits for it.
    pub fn exec(ns: &str, program: &str, args: &[&str]) -> Result<Output, String> {
        Lab::command(ns, program)
            .args(args)
            .output()
            .map_err(|e| format!("ip netns exec {ns} {program}: {e}"))
    }

    /// Rx queues of `dev` in namespace `ns` as the kernel reports them
    /// (what `vipgate run` opens one AF_XDP socket for each of).
    pub fn rx_queues(ns: &str, dev: &str) -> Result<u32, String> {
        netns::rx_queues(ns, dev)
    }

    /// Frames per rx queue of veth `dev` in `ns` that went through its XDP
    /// program (counts move only while one is attached).
    pub fn rx_queue_xdp_packets(ns: &str, dev: &str) -> Result<Vec<u64>, String> {
        netns::rx_queue_xdp_packets(ns, dev)
    }

    /// Every namespace of this lab, in creation order.
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }

    /// The address a client reaches backend `i` at (for checks).
    pub fn backend_ip(i: usize, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(backend_v6(i))
        } else {
            IpAddr::V4(backend_v4(i))
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Lab namespaces that currently exist (all labs of all processes).
pub fn existing_namespaces(prefix: &str) -> Result<Vec<String>, String> {
    let out = ip(&["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect())
}
