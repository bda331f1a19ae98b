//! `vipgate run`: the gateway on real interfaces. Loads services (a file,
//! reloaded on change, or the Kubernetes API), opens AF_XDP or AF_PACKET
//! sockets, serves the admin endpoint, runs the workers on pinned cores
//! (several share the traffic and hand each frame to its flow's owner),
//! and on SIGINT/SIGTERM stops, detaches and prints its counters. The
//! runtime is the `gateway` crate; this file maps flags to its config and
//! prints.

/// Final counters as text.
mod summary;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use control::admin::DEFAULT_ADMIN_ADDR;
use dataplane::io::af_packet::RingKind;
use dataplane::io::MAX_BURST;
use dataplane::worker::{self, WorkerConfig, WorkerCounters};
use gateway::source::service_ports;
use gateway::{Ended, Gateway, GatewayConfig, PacketRing, ServiceSource};

use super::tuning::Tuning;

/// Which backend `--io` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IoMode {
    /// AF_XDP, else AF_PACKET (saying why in one line).
    Auto,
    /// AF_XDP only (also spelled af_xdp).
    #[value(name = "af-xdp", alias = "af_xdp")]
    AfXdp,
    /// AF_PACKET only (also spelled af_packet).
    #[value(name = "af-packet", alias = "af_packet")]
    AfPacket,
}

impl From<IoMode> for gateway::IoMode {
    fn from(m: IoMode) -> gateway::IoMode {
        match m {
            IoMode::Auto => gateway::IoMode::Auto,
            IoMode::AfXdp => gateway::IoMode::AfXdp,
            IoMode::AfPacket => gateway::IoMode::AfPacket,
        }
    }
}

/// Which AF_PACKET rx ring `--af-packet-ring` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AfPacketRing {
    /// TPACKET_V2: a slot per frame, no added latency.
    Frames,
    /// TPACKET_V3: frames packed in blocks, up to 1 ms added latency.
    Blocks,
}

impl From<AfPacketRing> for RingKind {
    fn from(r: AfPacketRing) -> RingKind {
        match r {
            AfPacketRing::Frames => RingKind::Frames,
            AfPacketRing::Blocks => RingKind::Blocks,
        }
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Interfaces carrying Service traffic (comma-separated or repeated).
    #[arg(
        long = "iface",
        value_name = "NAME",
        value_delimiter = ',',
        required = true
    )]
    ifaces: Vec<String>,
    /// Packet I/O backend.
    #[arg(long, value_enum, default_value_t = IoMode::Auto)]
    io: IoMode,
    /// AF_PACKET rx ring: `frames` (TPACKET_V2, a slot per frame handed
    /// over at once: no added latency, 34 MiB per socket) or `blocks`
    /// (TPACKET_V3, frames packed in blocks: denser, but a block waits up
    /// to 1 ms to fill, which delays quiet flows and slows TCP).
    #[arg(long, value_enum, default_value_t = AfPacketRing::Frames)]
    af_packet_ring: AfPacketRing,
    /// AF_PACKET frame ring depth in frames (`--af-packet-ring frames`):
    /// each slot holds a 64 KiB super-frame (68 KiB of kernel memory per
    /// slot and socket, allocated up front), so the default 512 slots are
    /// 34 MiB; more slots absorb longer bursts of small frames.
    #[arg(long, value_name = "N", default_value_t = dataplane::io::af_packet::config::DEFAULT_FRAME_SLOTS,
          value_parser = clap::value_parser!(u32).range(16..=65536))]
    af_packet_slots: u32,
    /// Worker threads, each with its own sockets and conntrack. AF_PACKET:
    /// one fanout socket per interface and worker. AF_XDP: one worker per
    /// rx queue; workers beyond the queue count only process frames handed
    /// to them. A frame received by a worker that does not own its flow is
    /// handed to the owner.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Cores to pin workers to (comma-separated, worker i on the i-th,
    /// wrapping); default: the last cores, worker 0 on the last one.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    cores: Vec<usize>,
    /// Admin endpoint (/services, /healthz, /readyz, /metrics for
    /// Prometheus, /stats for `vipgate stats`, /conntrack for `vipgate
    /// conntrack`); port 0 picks one.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN_ADDR)]
    admin_addr: SocketAddr,
    /// Services and EndpointSlices YAML (reloaded when it changes) instead
    /// of the Kubernetes API.
    #[arg(long, value_name = "FILE", conflicts_with = "kubeconfig")]
    services: Option<PathBuf>,
    /// Kubeconfig for the API; default: KUBECONFIG, ~/.kube/config or in-cluster.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Watch Services and EndpointSlices of this namespace only (default: all).
    #[arg(long, value_name = "NS", conflicts_with = "services")]
    namespace: Option<String>,
    /// Addresses the `healthCheckNodePort` health checks of
    /// `externalTrafficPolicy: Local` LoadBalancer Services listen on
    /// (comma-separated or repeated); default: every address of the node,
    /// as kube-proxy without `--nodeport-addresses`.
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    health_check_address: Vec<std::net::IpAddr>,
    /// Frames per burst (also `--batch`).
    #[arg(long, visible_alias = "batch", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=MAX_BURST as i64))]
    burst: u16,
    #[command(flatten)]
    tuning: Tuning,
}

impl RunArgs {
    fn config(&self) -> GatewayConfig {
        GatewayConfig {
            ifaces: self.ifaces.clone(),
            io: self.io.into(),
            ring: PacketRing {
                kind: self.af_packet_ring.into(),
                slots: self.af_packet_slots,
            },
            workers: usize::from(self.workers),
            cores: self.cores.clone(),
            admin_addr: self.admin_addr,
            source: match &self.services {
                Some(path) => ServiceSource::File(path.clone()),
                None => ServiceSource::Kube {
                    kubeconfig: self.kubeconfig.clone(),
                    namespace: self.namespace.clone(),
                },
            },
            worker: WorkerConfig {
                burst: usize::from(self.burst),
                pipeline: self.tuning.pipeline_config(),
            },
            table: self.tuning.table_config(),
            model: self.tuning.model_options(),
            health_check_addrs: self.health_check_address.clone(),
        }
    }
}

pub fn run(args: RunArgs) -> Result<(), String> {
    let stop =
        worker::stop_on_signals().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let mut gw = Gateway::start(args.config(), stop)?;
    for line in gw.facts() {
        println!("vipgate: interface {line}");
    }
    let workers = gw.workers();
    println!(
        "vipgate: running on {} via {}, {} worker{}, {}, admin http://{}",
        args.ifaces.join(","),
        gw.io_desc(),
        workers,
        if workers == 1 { "" } else { "s" },
        service_ports(gw.tables().current().len()),
        gw.admin_addr()
            .map_or_else(|| "-".to_string(), |a| a.to_string())
    );
    let ended = gw.serve();
    let done = gw.shutdown();
    let total = WorkerCounters::total(&done.counters);
    // Whoever read stdout may be gone (a closed pipe): the counters are
    // lost then, but that must not turn a clean stop into a panic.
    let mut out = std::io::stdout();
    let _ = write!(out, "{}", summary::to_text(&total, workers, done.seconds));
    if workers > 1 {
        let _ = write!(out, "{}", summary::per_worker(&done.counters));
    }
    let _ = out.flush();
    if !done.panicked.is_empty() {
        return Err(format!("worker thread(s) {:?} panicked", done.panicked));
    }
    if let Ended::InterfaceGone(i) = ended {
        return Err(format!(
            "interface {i} disappeared (deleted, or its namespace was); stopped"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn service_ports_reads_right_for_one() {
        assert_eq!(gateway::source::service_ports(1), "1 service port");
        assert_eq!(gateway::source::service_ports(0), "0 service ports");
        assert_eq!(gateway::source::service_ports(7), "7 service ports");
    }
}
