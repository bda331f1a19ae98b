//! What `vipgate run` says about and does with its interfaces: the start-up
//! facts line names a veth peer in the same namespace with its sender
//! settings (and says when the peer is elsewhere), and a gateway whose
//! interface disappears (its veth deleted, as when a pod or a lab namespace
//! goes away) stops on its own with an error instead of busy-polling dead
//! sockets for as long as it lives. Root only (loud skip).

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}

use std::process::Stdio;
use std::time::Duration;

use bench::lab::{self, Lab, LabSpec, GW_BACKEND_IF, GW_CLIENT_IF};
use common::lab_test::{is_root, Gateway};

#[test]
fn run_stops_when_an_interface_disappears() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: needs root (network namespaces, AF_PACKET) ***\n");
        return;
    }
    for io in ["af-packet", "af-xdp"] {
        let lab = Lab::up(LabSpec {
            backends: 1,
            ipv6: false,
            ..Default::default()
        })
        .expect("lab up");
        let yaml = std::env::temp_dir().join(format!("{}-gone.yaml", lab.gw));
        std::fs::write(&yaml, "apiVersion: v1\nkind: List\nitems: []\n").unwrap();
        let ifaces = format!("{GW_CLIENT_IF},{GW_BACKEND_IF}");
        let y = yaml.to_string_lossy().to_string();
        let gw = Gateway::spawn(&lab, &["--iface", &ifaces, "--io", io, "--services", &y]);
        lab::ip(&["-n", &lab.gw, "link", "del", GW_CLIENT_IF]).unwrap();
        let (status, stdout) = gw.wait_exit(Duration::from_secs(10));
        let _ = std::fs::remove_file(&yaml);
        assert_eq!(
            status,
            Some(false),
            "{io}: vipgate must exit with an error within 10 s: {stdout}"
        );
        // It still prints its counters on the way out.
        assert!(stdout.contains("processed"), "{io}: {stdout}");
    }
}

/// A namespace removed on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = lab::ip(&["netns", "del", &self.0]);
    }
}

#[test]
fn facts_name_a_local_veth_peer_and_a_remote_one() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: needs root (network namespaces, AF_PACKET) ***\n");
        return;
    }
    let ns = Netns(format!("vglocal{}", std::process::id()));
    lab::ip(&["netns", "add", &ns.0]).unwrap();
    lab::ip(&[
        "-n", &ns.0, "link", "add", "va", "type", "veth", "peer", "name", "vb",
    ])
    .unwrap();
    for d in ["va", "vb"] {
        lab::ip(&["-n", &ns.0, "link", "set", d, "up"]).unwrap();
    }
    let yaml = std::env::temp_dir().join(format!("{}-facts.yaml", ns.0));
    std::fs::write(&yaml, "apiVersion: v1\nkind: List\nitems: []\n").unwrap();
    let out = Lab::command(&ns.0, "timeout")
        .args(["-s", "TERM", "3", env!("CARGO_BIN_EXE_vipgate"), "run"])
        .args(["--iface", "va", "--io", "af-packet", "--services"])
        .arg(&yaml)
        .args(["--admin-addr", "127.0.0.1:0"])
        .stderr(Stdio::null())
        .output()
        .expect("run vipgate");
    let _ = std::fs::remove_file(&yaml);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("vipgate: interface va:"))
        .unwrap_or_else(|| panic!("no facts line: {stdout}"));
    assert!(
        line.contains("veth peer vb (here: TSO on, tx-csum on)"),
        "{line}"
    );
    assert!(line.contains("af_packet with vnet headers"), "{line}");

    // The lab's gateway veths have their peers in other namespaces.
    let lab = Lab::up(LabSpec {
        backends: 1,
        ipv6: false,
        ..Default::default()
    })
    .expect("lab up");
    let yaml = std::env::temp_dir().join(format!("{}-facts.yaml", lab.gw));
    std::fs::write(&yaml, "apiVersion: v1\nkind: List\nitems: []\n").unwrap();
    let y = yaml.to_string_lossy().to_string();
    let gw = Gateway::spawn(
        &lab,
        &["--iface", GW_CLIENT_IF, "--io", "af-xdp", "--services", &y],
    );
    let (_, stdout) = gw.terminate();
    let _ = std::fs::remove_file(&yaml);
    assert!(
        stdout.contains("its veth peer is in another namespace"),
        "{stdout}"
    );
}
