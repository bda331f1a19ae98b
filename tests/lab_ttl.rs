//! TTL running out at the gateway, with a real kernel client: a TCP connect
//! to a VIP sent with TTL 1 (IPv4) and hop limit 1 (IPv6) fails at once with
//! "no route to host", because vipgate answers ICMP time exceeded from the
//! gateway's own interface address, as a router does; before, the SYNs
//! were dropped silently and the connect ran into its timeout. A connect
//! with the normal TTL still reaches a backend. Both I/O modes. Root only;
//! otherwise it says so loudly and passes.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bench::lab::{in_netns, LabSpec};
use common::lab_test::{
    lab_or_skip, services_yaml, tcp_ask_in, Gateway, Servers, VIP_WEB, VIP_WEB6,
};

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}

/// How long the TTL-1 connect may wait: far less than the SYN retries a
/// silent drop would take, far more than an answer on a veth.
const CONNECT_WAIT: Duration = Duration::from_secs(4);

/// A connect to `to` with TTL / hop limit 1: its error (None: it connected)
/// and how long it took.
fn connect_ttl1(to: SocketAddr) -> (Option<std::io::Error>, Duration) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(to), Type::STREAM, None).unwrap();
    if to.is_ipv4() {
        s.set_ttl_v4(1).unwrap();
    } else {
        s.set_unicast_hops_v6(1).unwrap();
    }
    let t0 = Instant::now();
    let r = s.connect_timeout(&to.into(), CONNECT_WAIT);
    (r.err(), t0.elapsed())
}

fn ttl_one_gets_time_exceeded(io: &str) {
    let Some(lab) = lab_or_skip(&format!("lab_ttl ({io})"), LabSpec::default()) else {
        return;
    };
    let _servers = Servers::start(&lab);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    std::fs::write(&path, services_yaml()).unwrap();
    let gw = Gateway::start(&lab, io, &path);
    let admin = gw.admin_addr();

    for vip in [IpAddr::V4(VIP_WEB), IpAddr::V6(VIP_WEB6)] {
        let to = SocketAddr::new(vip, 80);
        // The path works with a normal TTL (also warms the neighbours; a
        // fresh namespace's IPv6 addresses answer neighbour solicitations
        // only once duplicate address detection is over, about 2 s).
        let t0 = Instant::now();
        while let Err(e) = tcp_ask_in(&lab.client, to) {
            if t0.elapsed() > Duration::from_secs(15) {
                let (_, out) = gw.terminate();
                panic!("{io}: {to} does not answer: {e}\n{out}");
            }
        }
        let (err, took) = in_netns(&lab.client, move || connect_ttl1(to)).unwrap();
        // EHOSTUNREACH as a rule; socket2's connect_timeout may instead
        // report the closed socket as "no error set after POLLHUP" when
        // the kernel's error was already collected. Either way it failed
        // at once; a silent drop would run into the timeout.
        let err = err.unwrap_or_else(|| panic!("{io}: TTL-1 connect to {to} succeeded"));
        assert!(
            err.kind() != ErrorKind::TimedOut && took < CONNECT_WAIT,
            "{io}: TTL-1 connect to {to}: {err} after {took:?}"
        );
        println!("lab_ttl ({io}): TTL-1 connect to {to}: {err} after {took:?}");
    }
    let stats = in_netns(&lab.gw, move || control::admin::fetch_json(admin, "/stats"))
        .unwrap()
        .expect("/stats");
    let sent = stats["total"]["time_exceeded_sent"].as_u64().unwrap();
    assert!(sent >= 2, "{io}: time exceeded sent: {sent}");
    let (ok, out) = gw.terminate();
    assert!(ok, "vipgate run failed:\n{out}");
}

#[test]
fn ttl_one_towards_a_vip_gets_time_exceeded_af_packet() {
    ttl_one_gets_time_exceeded("af-packet");
}

#[test]
fn ttl_one_towards_a_vip_gets_time_exceeded_af_xdp() {
    ttl_one_gets_time_exceeded("af-xdp");
}
