//! One-armed mode: `vipgate run` on the gateway's only interface, which
//! carries both clients and backends (one L2 segment). 30 TCP connections
//! through a VIP succeed and spread over backends, with AF_PACKET and with
//! AF_XDP; SIGTERM exits 0 with no XDP program left and no namespace left.
//! Root only (loud skip). Every wait is bounded.

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bench::lab::{self, in_netns, Lab, LabSpec, GW_ONE_ARMED_IF};
use common::lab_test::{is_root, summary_count, tcp_ask, web_services_yaml, Gateway, Servers};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
/// What `Servers` listens on in every backend.
const BACKENDS: usize = 3;
const CONNECTIONS: usize = 30;

fn one_armed(io: &str) {
    if !is_root() {
        eprintln!("\n*** SKIPPED: needs root (network namespaces, AF_PACKET/AF_XDP) ***\n");
        return;
    }
    let lab = Lab::up_one_armed(LabSpec {
        backends: BACKENDS,
        ipv6: false,
        ..Default::default()
    })
    .expect("one-armed lab up");
    assert_eq!(lab.gw_ifaces(), &[GW_ONE_ARMED_IF]);
    // The premise: the gateway really has one interface besides lo.
    let gw_links = lab::ip(&["-n", &lab.gw, "-o", "link", "show"]).unwrap();
    assert_eq!(gw_links.lines().count(), 2, "gateway links:\n{gw_links}");

    let prefix = lab.client.trim_end_matches("-client").to_string();
    let yaml = std::env::temp_dir().join(format!("{prefix}-{io}-one-armed.yaml"));
    std::fs::write(&yaml, web_services_yaml(VIP)).unwrap();
    let servers = Servers::start(&lab);
    let gw = Gateway::spawn(
        &lab,
        &[
            "--iface",
            &lab.gw_ifaces().join(","),
            "--io",
            io,
            "--services",
            &yaml.to_string_lossy(),
        ],
    );

    let (per_backend, errors) = in_netns(&lab.client, move || {
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
    let (ok, stdout) = gw.terminate();
    let links = lab::ip(&["-n", &lab.gw, "-d", "link", "show"]).unwrap();
    drop(servers);

    assert!(errors.is_empty(), "TCP via VIP failed: {errors:?}");
    assert_eq!(per_backend.iter().sum::<usize>(), CONNECTIONS);
    assert!(
        per_backend.iter().filter(|&&n| n > 0).count() >= 2,
        "connections did not spread over backends: {per_backend:?}"
    );
    assert!(ok, "vipgate did not exit 0 after SIGTERM:\n{stdout}");
    assert!(stdout.contains("forwarded (DNAT)"), "{stdout}");
    assert_eq!(
        summary_count(&stdout, "flows created"),
        Some(CONNECTIONS as u64),
        "{stdout}"
    );
    assert!(
        summary_count(&stdout, "transmitted").is_some_and(|n| n > 0),
        "{stdout}"
    );
    // One port: every forwarded frame leaves where it came in.
    assert_eq!(
        summary_count(&stdout, "to another iface"),
        Some(0),
        "{stdout}"
    );
    // The sockets' own drop counters were read at exit (a count, not
    // asserted zero: a shared CI core may overflow a ring now and then).
    assert!(
        summary_count(&stdout, "kernel rx ring drops").is_some(),
        "{stdout}"
    );
    assert!(!links.contains("xdp"), "XDP still attached:\n{links}");

    drop(lab);
    let _ = std::fs::remove_file(&yaml);
    let left = lab::existing_namespaces(&prefix).unwrap();
    assert!(left.is_empty(), "namespaces left: {left:?}");
}

#[test]
fn one_armed_af_packet_gateway() {
    one_armed("af-packet");
}

#[test]
fn one_armed_af_xdp_gateway() {
    one_armed("af-xdp");
}
