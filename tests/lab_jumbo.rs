//! MTU 9000 on every veth. Both I/O modes carry the whole scenario
//! (requests, bulk transfers checked byte for byte, tshark-checked frames)
//! with offloads off, where frames really are 9,014 bytes on the wire, and
//! with default offloads: AF_PACKET in its 64 KiB buffers, AF_XDP as
//! multi-buffer descriptor chains gathered into jumbo slots. Above what a
//! jumbo slot holds, `--io af-xdp` must refuse in one line naming the
//! limit, and `--io auto` must say so and fall back to AF_PACKET. Root only
//! (loud skip).

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}

use bench::lab::{Lab, LabSpec, Offloads, GW_BACKEND_IF, GW_CLIENT_IF};
use common::lab_test::{is_root, Gateway};

const JUMBO: u32 = 9000;

#[test]
fn af_packet_carries_jumbo_frames() {
    common::lab_test::scenario_in("af-packet", Offloads::Off, JUMBO);
}

#[test]
fn af_packet_carries_jumbo_lab_with_default_offloads() {
    common::lab_test::scenario_in("af-packet", Offloads::Default, JUMBO);
}

#[test]
fn af_xdp_carries_jumbo_frames() {
    common::lab_test::scenario_in("af-xdp", Offloads::Off, JUMBO);
}

#[test]
fn af_xdp_carries_jumbo_lab_with_default_offloads() {
    common::lab_test::scenario_in("af-xdp", Offloads::Default, JUMBO);
}

/// Above a jumbo slot (12,032-byte frames, MTU 12,010).
const TOO_BIG: u32 = 16000;

#[test]
fn af_xdp_refuses_an_mtu_above_its_jumbo_slot_in_one_line_and_auto_falls_back() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: needs root (network namespaces, AF_XDP) ***\n");
        return;
    }
    let lab = Lab::up(LabSpec {
        backends: 1,
        ipv6: false,
        mtu: TOO_BIG,
        ..Default::default()
    })
    .expect("lab up");
    let yaml = std::env::temp_dir().join(format!("{}-jumbo.yaml", lab.gw));
    std::fs::write(&yaml, "apiVersion: v1\nkind: List\nitems: []\n").unwrap();
    let ifaces = format!("{GW_CLIENT_IF},{GW_BACKEND_IF}");
    let out = Lab::command(&lab.gw, env!("CARGO_BIN_EXE_vipgate"))
        .args(["run", "--iface", &ifaces, "--io", "af-xdp"])
        .args(["--services", &yaml.to_string_lossy()])
        .args(["--admin-addr", "127.0.0.1:0"])
        .output()
        .expect("run vipgate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("vipgate --io af-xdp said: {stderr}");
    assert!(!out.status.success(), "AF_XDP at MTU {TOO_BIG} must fail");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(
        errors[0].contains("MTU 16000 of gwc") && errors[0].contains("limit of 12010"),
        "{stderr}"
    );
    let links = bench::lab::ip(&["-n", &lab.gw, "-d", "link", "show"]).unwrap();
    assert!(!links.contains("xdp"), "XDP left attached:\n{links}");

    let yaml_s = yaml.to_string_lossy().to_string();
    let gw = Gateway::spawn(
        &lab,
        &["--iface", &ifaces, "--io", "auto", "--services", &yaml_s],
    );
    let (ok, stdout) = gw.terminate();
    assert!(ok, "{stdout}");
    assert!(stdout.contains("via af_packet"), "auto fell back: {stdout}");
    let _ = std::fs::remove_file(&yaml);
    drop(lab);
}

/// Two AF_XDP workers on single-queue veths at MTU 9000: the receiving
/// worker hands jumbo frames of flows it does not own to their owner
/// (handoff slots sized for a jumbo slot), which sends them by copy. Bulk
/// transfers checked byte for byte must all complete.
#[test]
fn af_xdp_jumbo_frames_cross_between_two_workers() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: needs root (network namespaces, AF_XDP) ***\n");
        return;
    }
    let spec = LabSpec {
        backends: 3,
        ipv6: false,
        mtu: JUMBO,
        offloads: Offloads::Off,
    };
    let lab = Lab::up_with_queues(spec, 1).expect("lab up");
    let prefix = lab.client.trim_end_matches("-client").to_string();
    let yaml = std::env::temp_dir().join(format!("{prefix}-jumbo-workers.yaml"));
    std::fs::write(&yaml, common::lab_test::services_yaml()).unwrap();
    let servers = common::lab_test::Servers::start(&lab);
    let ifaces = format!("{GW_CLIENT_IF},{GW_BACKEND_IF}");
    let gw = Gateway::spawn(
        &lab,
        &[
            "--iface",
            &ifaces,
            "--io",
            "af-xdp",
            "--workers",
            "2",
            "--services",
            &yaml.to_string_lossy(),
        ],
    );
    let errors = bench::lab::in_netns(&lab.client.clone(), || {
        // Port 81 of the web VIP goes to the backends' bulk servers.
        let to = std::net::SocketAddr::new(std::net::IpAddr::V4(common::lab_test::VIP_WEB), 81);
        common::bulk::parallel(to, 8, 1)
    })
    .unwrap();
    let (ok, stdout) = gw.terminate();
    drop(servers);
    drop(lab);
    let _ = std::fs::remove_file(&yaml);
    assert!(errors.is_empty(), "bulk TCP over two workers: {errors:?}");
    assert!(ok, "{stdout}");
    let handed = common::lab_test::summary_count(&stdout, "handed to owner").unwrap_or(0);
    let multi = common::lab_test::summary_count(&stdout, "multi-buffer frames").unwrap_or(0);
    eprintln!("measured: {handed} frames handed to their owner, {multi} multi-buffer frames");
    assert!(handed > 0, "no frame crossed between workers:\n{stdout}");
    assert!(multi > 0, "no multi-buffer frame:\n{stdout}");
}
