//! One path across service counts. Each cell (path x service count) gets
//! a fresh lab, so no conntrack entry, neighbour or rule of an earlier
//! cell carries over; the lab is removed when the cell ends, error or not.
//!
//! A cell: configure the gateway, warm up (neighbours resolve, flows
//! enter conntrack, and a path that forwards nothing fails fast), then
//! `repeats` top-speed blasts counted at the backends' veths, then
//! `repeats` latency probes against echo servers on the backends.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::lab::{self, netns, Lab, LabSpec, CLIENT_V4, GW_CLIENT_IF};

use super::gateway::Gateway;
use super::services::{services, services_yaml, LabService, SERVICE_PORT, TARGET_PORT};
use super::traffic::{self, EchoServers};
use super::{kernel_paths, Cell, LabBenchConfig, PathKind, ThroughputRun, Traffic};

/// The client's and backends' lab interface.
const LAB_IF: &str = "eth0";
/// Warm-up blast length.
const WARMUP_SECONDS: f64 = 0.3;
/// Time for frames still in flight to reach the backends before the
/// counters are read.
const SETTLE: Duration = Duration::from_millis(150);
/// new-flows runs are sized for this many packets per second: above what
/// any path or generator reaches in the veth lab (vipgate paths leave the
/// sender at ~0.6 Mpps), so no flow repeats within a run.
const NEW_FLOWS_PPS: f64 = 800_000.0;
/// Extra client addresses for new-flows runs: 198.18.0.10 onwards, inside
/// the client's /24 so the gateway reaches them directly.
const FIRST_EXTRA_CLIENT: u8 = 10;
const MAX_EXTRA_CLIENTS: usize = 240;
/// Conntrack entries the kernel paths may hold in new-flows mode: every
/// packet is an entry that lives 30 s (UDP, unreplied).
const NEW_FLOWS_CONNTRACK_MAX: &str = "4194304";

/// All cells of `path`; failures are recorded per cell.
pub fn run_path(path: PathKind, traffic: Traffic, cfg: &LabBenchConfig) -> Vec<Cell> {
    let mut cells = Vec::with_capacity(cfg.services.len());
    for &n in &cfg.services {
        let mut cell = Cell {
            path: path.name().into(),
            traffic: traffic.name().into(),
            services: n,
            ..Cell::default()
        };
        eprint!("  {n} services: ");
        match measure_cell(path, traffic, n, cfg, &mut cell) {
            Ok(()) => {
                cell.summarise();
                eprintln!(
                    "{:.3} Mpps forwarded (sent {:.3}), loss {:.1}%, p50 {:.0} us, p99 {:.0} us",
                    cell.forwarded_mpps,
                    cell.sent_mpps,
                    cell.loss * 100.0,
                    cell.p50_us,
                    cell.p99_us
                );
            }
            Err(e) => {
                cell.summarise();
                eprintln!("FAILED: {e}");
                cell.error = Some(e);
            }
        }
        cells.push(cell);
    }
    cells
}

/// What runs the gateway for one cell; dropping it tears that down.
pub(super) enum Setup {
    Kernel,
    Vipgate(Gateway),
}

fn measure_cell(
    path: PathKind,
    traffic: Traffic,
    n: usize,
    cfg: &LabBenchConfig,
    cell: &mut Cell,
) -> Result<(), String> {
    if traffic == Traffic::Tcp {
        return Err("tcp is measured by labbench::tcp, not with UDP blasts".into());
    }
    let lab = Lab::up(LabSpec {
        backends: cfg.backends,
        ipv6: false,
        // Generated frames carry full checksums and fit the MTU; GRO on
        // the gateway would batch the kernel paths' packets differently
        // from what the generator sent.
        offloads: lab::Offloads::Off,
        ..Default::default()
    })?;
    let backends: Vec<Ipv4Addr> = (0..cfg.backends).map(lab::backend_v4).collect();
    let svcs = services(n, &backends)?;
    let t0 = Instant::now();
    let setup = configure(path, &lab, &svcs, cfg)?;
    cell.setup_seconds = t0.elapsed().as_secs_f64();

    let src = traffic::mac_of(&lab.client, LAB_IF)?;
    let dst = traffic::mac_of(&lab.gw, GW_CLIENT_IF)?;
    let vip = svcs[0].vip;
    let cap = traffic::blast_capture(src, dst, CLIENT_V4, vip, SERVICE_PORT, cfg.flows);

    let warm = one_run(&lab, &cap, WARMUP_SECONDS, cfg.max_packets())?;
    if warm.received == 0 {
        return Err(format!(
            "nothing reached the backends in the warm-up ({} frames sent)",
            warm.sent
        ));
    }
    match traffic {
        Traffic::Established => {
            for _ in 0..cfg.repeats {
                cell.runs
                    .push(one_run(&lab, &cap, cfg.duration, cfg.max_packets())?);
            }
        }
        Traffic::Tcp => unreachable!("refused above"),
        Traffic::NewFlows => {
            if !path.is_vipgate() {
                raise_conntrack_max(&lab.gw);
            }
            let sets = client_sets(&lab.client, cfg)?;
            cell.distinct_flows = Some(sets[0].len() as u64 * traffic::NEW_FLOW_PORTS);
            for clients in &sets {
                // Each run has client addresses of its own: no tuple of an
                // earlier run (still in conntrack for 30 s) comes again.
                let cap = traffic::new_flows_capture(
                    src,
                    dst,
                    clients,
                    vip,
                    SERVICE_PORT,
                    cell.distinct_flows.unwrap_or(0),
                );
                cell.runs
                    .push(one_run(&lab, &cap, cfg.duration, cfg.max_packets())?);
            }
            // The latency probe's 16 sockets are established flows: it
            // would repeat the established figures, so it is not run.
            if let Setup::Vipgate(g) = setup {
                g.stop()?;
            }
            return Ok(());
        }
    }
    {
        let _echo = EchoServers::start(&lab.backends, TARGET_PORT)?;
        let to = SocketAddrV4::new(vip, SERVICE_PORT);
        for _ in 0..cfg.repeats {
            cell.latency.push(traffic::udp_latency(
                &lab.client,
                to,
                cfg.latency_rate,
                cfg.latency_seconds,
            )?);
        }
    }
    if let Setup::Vipgate(g) = setup {
        g.stop()?;
    }
    Ok(())
}

/// Makes `lab`'s gateway carry `svcs` the way `path` does: kernel rules
/// with forwarding on, or a `vipgate run` loaded with them.
pub(super) fn configure(
    path: PathKind,
    lab: &Lab,
    svcs: &[LabService],
    cfg: &LabBenchConfig,
) -> Result<Setup, String> {
    let gw = &lab.gw;
    match path {
        PathKind::KernelIptables | PathKind::KernelNftables => {
            netns::sysctl(gw, "net/ipv4/ip_forward", "1")?;
            if path == PathKind::KernelIptables {
                kernel_paths::load_iptables(gw, svcs)?;
            } else {
                kernel_paths::load_nft(gw, svcs)?;
            }
            Ok(Setup::Kernel)
        }
        PathKind::VipgateAfPacket | PathKind::VipgateAfXdp => {
            // The lab's gateway already has ip_forward off and the VIP
            // range blackholed: only vipgate moves VIP packets.
            std::fs::create_dir_all(&cfg.work_dir)
                .map_err(|e| format!("{}: {e}", cfg.work_dir.display()))?;
            let yaml = cfg.work_dir.join(format!("{gw}-services.yaml"));
            std::fs::write(&yaml, services_yaml(svcs))
                .map_err(|e| format!("{}: {e}", yaml.display()))?;
            let io = if path == PathKind::VipgateAfXdp {
                "af-xdp"
            } else {
                "af-packet"
            };
            let g = Gateway::start(&cfg.vipgate_bin, gw, io, &yaml, None, &cfg.gateway_args);
            let _ = std::fs::remove_file(&yaml);
            let g = g?;
            let n = svcs.len();
            let want = format!(" {n} service port{}", if n == 1 { "," } else { "s" });
            if !g.running_line.contains(&want) {
                return Err(format!(
                    "vipgate loaded the wrong table: {:?} (expected{want})",
                    g.running_line
                ));
            }
            Ok(Setup::Vipgate(g))
        }
    }
}

/// Client addresses for each new-flows run (disjoint sets, enough for
/// `NEW_FLOWS_PPS` x duration flows each when the /24 has room), added to
/// the client's interface so answers to them (ICMP) are delivered.
fn client_sets(client_ns: &str, cfg: &LabBenchConfig) -> Result<Vec<Vec<Ipv4Addr>>, String> {
    // --quick keeps the debug-build test's captures small (~129k frames).
    let want = if cfg.quick {
        2
    } else {
        (cfg.duration * NEW_FLOWS_PPS / traffic::NEW_FLOW_PORTS as f64).ceil() as usize
    };
    let per_run = want.clamp(1, (MAX_EXTRA_CLIENTS / cfg.repeats.max(1)).max(1));
    let mut sets = Vec::with_capacity(cfg.repeats);
    for r in 0..cfg.repeats {
        let set: Vec<Ipv4Addr> = (0..per_run)
            .map(|k| {
                let host = (r * per_run + k) % MAX_EXTRA_CLIENTS;
                Ipv4Addr::new(198, 18, 0, FIRST_EXTRA_CLIENT + host as u8)
            })
            .collect();
        for a in &set {
            let cidr = format!("{a}/24");
            // A set reused (more repeats than the /24 holds) is already there.
            let _ = lab::ip(&["-n", client_ns, "addr", "add", &cidr, "dev", LAB_IF]);
        }
        sets.push(set);
    }
    Ok(sets)
}

/// At the conntrack limit the kernel early-drops unreplied entries to admit
/// new ones. Since Linux 6.x a child namespace cannot raise the limit (the
/// host's applies); that is said, and the host is left alone.
fn raise_conntrack_max(gw: &str) {
    if let Err(e) = netns::sysctl(
        gw,
        "net/netfilter/nf_conntrack_max",
        NEW_FLOWS_CONNTRACK_MAX,
    ) {
        eprint!("(conntrack limit not raised: {e}) ");
    }
}

/// One blast, counted at the backends.
fn one_run(
    lab: &Lab,
    cap: &dataplane::io::memory::Capture,
    seconds: f64,
    max_packets: u64,
) -> Result<ThroughputRun, String> {
    let before = traffic::rx_sum(&lab.backends, LAB_IF)?;
    let st = traffic::blast(&lab.client, LAB_IF, cap, seconds, max_packets)?;
    std::thread::sleep(SETTLE);
    let after = traffic::rx_sum(&lab.backends, LAB_IF)?;
    Ok(ThroughputRun::new(
        st.sent,
        after.saturating_sub(before),
        st.seconds,
    ))
}
