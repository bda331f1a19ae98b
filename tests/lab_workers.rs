//! `vipgate run --workers 2` in a veth lab: 100 TCP connections through a
//! VIP all succeed, and the summary shows frames handed to their flow's
//! owner. A connection only completes if its SYN-ACK (backend -> client)
//! meets the conntrack entry its SYN (client -> VIP) created, so when the
//! two directions land on different workers (fanout hashes the NATed
//! tuples independently; an AF_XDP worker without a queue receives
//! nothing itself) the handoff is what makes it work. With two-queue veths
//! each AF_XDP worker also receives from its own queue. Root only (loud skip).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bench::lab::{self, in_netns, Lab, LabSpec, GW_BACKEND_IF, GW_CLIENT_IF};
use common::lab_test::{is_root, summary_count, tcp_ask, web_services_yaml, Gateway, Servers};

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}

const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
const BACKENDS: usize = 3;
const CONNECTIONS: usize = 100;

/// Per-worker rows of the summary: (packets, flows, handed out, handed in).
fn worker_rows(stdout: &str) -> Vec<[u64; 4]> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for l in stdout.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first() == Some(&"worker") && f.get(1) == Some(&"packets") {
            in_table = true;
            continue;
        }
        if in_table {
            let nums: Vec<u64> = f.iter().filter_map(|v| v.parse().ok()).collect();
            if nums.len() != 5 {
                break;
            }
            rows.push([nums[1], nums[2], nums[3], nums[4]]);
        }
    }
    rows
}

/// Frames a worker took off its own rx queue(s): what its pipeline saw,
/// plus what it steered away before the pipeline, minus what others
/// handed it.
fn own_rx(row: &[u64; 4]) -> u64 {
    (row[0] + row[2]).saturating_sub(row[3])
}

fn scenario(io: &str, queues: u32) {
    if !is_root() {
        eprintln!("\n*** SKIPPED: needs root (network namespaces, {io}) ***\n");
        return;
    }
    let spec = LabSpec {
        backends: BACKENDS,
        ipv6: false,
        ..Default::default()
    };
    let lab = Lab::up_with_queues(spec, queues).expect("lab up");
    for dev in [GW_CLIENT_IF, GW_BACKEND_IF] {
        assert_eq!(Lab::rx_queues(&lab.gw, dev), Ok(queues), "{dev} rx queues");
    }
    let prefix = lab.client.trim_end_matches("-client").to_string();
    let yaml = std::env::temp_dir().join(format!("{prefix}-{io}-{queues}q-workers.yaml"));
    std::fs::write(&yaml, web_services_yaml(VIP)).unwrap();
    let servers = Servers::start(&lab);
    let gw = Gateway::spawn(
        &lab,
        &[
            "--iface",
            &format!("{GW_CLIENT_IF},{GW_BACKEND_IF}"),
            "--io",
            io,
            "--workers",
            "2",
            "--services",
            &yaml.to_string_lossy(),
        ],
    );

    let (per_backend, errors) = in_netns(&lab.client.clone(), move || {
        let web = SocketAddr::new(IpAddr::V4(VIP), 80);
        let mut per_backend = [0usize; BACKENDS];
        let mut errors = Vec::new();
        for _ in 0..CONNECTIONS {
            match tcp_ask(web) {
                Ok(name) => match name.strip_prefix('b').and_then(|n| n.parse::<usize>().ok()) {
                    Some(i) if i < BACKENDS => per_backend[i] += 1,
                    _ => errors.push(format!("odd answer {name:?}")),
                },
                Err(e) => errors.push(e.to_string()),
            }
        }
        (per_backend, errors)
    })
    .unwrap();
    // Per-queue counters of the gateway's veths, read while XDP is attached.
    let per_queue: Vec<(&str, Vec<u64>)> = if io == "af-xdp" {
        [GW_CLIENT_IF, GW_BACKEND_IF]
            .into_iter()
            .map(|dev| (dev, Lab::rx_queue_xdp_packets(&lab.gw, dev).unwrap()))
            .collect()
    } else {
        Vec::new()
    };
    let (ok, stdout) = gw.terminate();
    drop(servers);
    drop(lab);
    let _ = std::fs::remove_file(&yaml);

    assert!(errors.is_empty(), "TCP via VIP failed: {errors:?}");
    assert_eq!(per_backend.iter().sum::<usize>(), CONNECTIONS);
    assert!(ok, "vipgate did not exit 0 after SIGTERM:\n{stdout}");
    assert!(stdout.contains("on 2 workers"), "{stdout}");
    let handed = summary_count(&stdout, "handed to owner").expect("handoff line");
    let rows = worker_rows(&stdout);
    assert_eq!(rows.len(), 2, "{stdout}");
    let own: Vec<u64> = rows.iter().map(own_rx).collect();
    eprintln!(
        "{io}, {queues} queue(s): frames from own queue per worker {own:?}, \
         handed to owner {handed}, XDP rx per queue {per_queue:?}"
    );
    for (dev, counts) in &per_queue {
        assert_eq!(counts.len(), queues as usize, "{dev}: {counts:?}");
        // Client connections pick their tx queue by flow hash: 100 of them
        // all on one queue would mean the spreading is broken.
        if *dev == GW_CLIENT_IF {
            assert!(counts.iter().all(|&n| n > 0), "{dev}: {counts:?}");
        }
    }
    if io == "af-xdp" && queues == 1 {
        // One queue: every frame comes up through worker 0.
        assert_eq!(own[1], 0, "{stdout}");
        assert!(own[0] > 0, "{stdout}");
    } else {
        // Fanout or a queue per worker: both take frames off the wire.
        assert!(own.iter().all(|&n| n > 0), "{stdout}");
    }
    if queues == 1 || io == "af-packet" {
        assert!(handed > 0, "no frame was handed to its owner:\n{stdout}");
    }
    assert_eq!(summary_count(&stdout, "dropped: inbox full"), Some(0));
    // What one worker handed out the other received (a frame handed over
    // in the last instant before SIGTERM may stay in the inbox), and both
    // workers owned flows (their pipelines created conntrack entries).
    assert_eq!(rows[0][2] + rows[1][2], handed, "{stdout}");
    assert!(
        rows[1][3] <= rows[0][2] && rows[0][3] <= rows[1][2],
        "{stdout}"
    );
    assert_eq!(rows[0][3] + rows[1][3] > 0, handed > 0, "{stdout}");
    assert!(rows.iter().all(|r| r[1] > 0), "{stdout}");
    assert!(rows.iter().map(|r| r[1]).sum::<u64>() >= CONNECTIONS as u64);
    let left = lab::existing_namespaces(&prefix).unwrap();
    assert!(left.is_empty(), "namespaces left: {left:?}");
}

#[test]
fn af_packet_workers_hand_replies_to_their_owner() {
    scenario("af-packet", 1);
}

/// The lab's veths have one rx queue each, so worker 0 receives every
/// frame and worker 1 only processes (and sends, by copy) what worker 0
/// hands it: the flows it owns.
#[test]
fn af_xdp_workers_hand_frames_to_a_queueless_owner() {
    scenario("af-xdp", 1);
}

/// Two-queue veths: queue q feeds worker q, the client's and the
/// backends' sockets pick their tx (so the gateway's rx) queue by flow
/// hash, so both workers receive from their own queue. A reply whose
/// queue belongs to the other worker is handed over; how many were is
/// printed (zero is possible, if unlikely, when hashes happen to agree).
#[test]
fn af_xdp_workers_receive_from_their_own_queues() {
    scenario("af-xdp", 2);
}
