//! sessionAffinity: ClientIP across an endpoint change, with real kernel
//! clients through `vipgate run` (AF_PACKET, two workers): 16 client
//! addresses each open connections before and after a backend is added
//! through the services file, and after one is removed. Every client keeps
//! its backend while that backend serves (the stateless client hash alone
//! would have moved some: counted here from the dataplane's own tables and
//! required to be non-zero, so the test can fail); a client whose backend
//! left moves, and sticks to its new one. Prints what it measured. Root
//! only; otherwise it says so loudly and passes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bench::lab::{self, in_netns, Lab, LabSpec, GW_BACKEND_IF, GW_CLIENT_IF};
use common::lab_test::{apply_services, lab_or_skip, Gateway, Servers};
use dataplane::addr::{Addr, Proto, Tuple};
use dataplane::table::{ServiceTable, TableConfig};

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}

const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 50);
const CLIENTS: u8 = 16;
const CONNS: usize = 3;

fn client_addr(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 100 + i)
}

/// The Service `sticky` with ClientIP affinity (an hour) on `backends`.
fn yaml(backends: &[usize]) -> String {
    let endpoints: String = backends
        .iter()
        .map(|i| {
            format!(
                "  - addresses: ['{}']\n    conditions: {{ready: true}}\n",
                lab::backend_v4(*i)
            )
        })
        .collect();
    format!(
        "apiVersion: v1\nkind: List\nitems:\n\
         - apiVersion: v1\n  kind: Service\n  metadata: {{name: sticky, namespace: lab}}\n\
         \x20 spec:\n    clusterIP: {VIP}\n    sessionAffinity: ClientIP\n\
         \x20   sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 3600}}}}\n\
         \x20   ports:\n    - {{name: http, port: 80, protocol: TCP, targetPort: 8080}}\n\
         - apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n\
         \x20 metadata:\n    name: sticky-1\n    namespace: lab\n    labels: {{kubernetes.io/service-name: sticky}}\n\
         \x20 addressType: IPv4\n  ports:\n  - {{name: http, port: 8080, protocol: TCP}}\n\
         \x20 endpoints:\n{endpoints}"
    )
}

/// The backend the stateless client-address hash gives client `i` on the
/// table built from `text` (the dataplane's own model and table).
fn hashed_pick(text: &str, i: u8) -> Ipv4Addr {
    let objs = control::objects::parse_str(text, Path::new("affinity.yaml")).unwrap();
    let m = control::model::build(&objs.services, &objs.slices, &Default::default());
    let t = ServiceTable::from_specs(m.services, TableConfig::default());
    let tuple = Tuple {
        src: Addr::from(IpAddr::V4(client_addr(i))),
        dst: Addr::from(IpAddr::V4(VIP)),
        sport: 40_000,
        dport: 80,
        proto: Proto::Tcp,
    };
    let e = t.lookup(&tuple.dst, 80, Proto::Tcp).expect("the Service");
    let b = e.pick(&tuple, t.config().seed).expect("a backend");
    b.addr.v4_octets().into()
}

fn backend_name(addr: Ipv4Addr) -> String {
    (0..8)
        .find(|&i| lab::backend_v4(i) == addr)
        .map(|i| format!("b{i}"))
        .unwrap_or_else(|| addr.to_string())
}

/// One request from `src` (bound, any port) to the VIP: the backend's name.
fn ask_from(src: Ipv4Addr) -> Result<String, String> {
    use socket2::{Domain, Socket, Type};
    use std::io::{Read, Write};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
    s.bind(&SocketAddr::new(IpAddr::V4(src), 0).into())
        .map_err(|e| e.to_string())?;
    let to = SocketAddr::new(IpAddr::V4(VIP), 80);
    s.connect_timeout(&to.into(), Duration::from_secs(3))
        .map_err(|e| format!("{src} -> {to}: {e}"))?;
    let mut s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"hello\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out.trim().to_string())
}

/// Each client's backends over [`CONNS`] new connections.
fn round(lab: &Lab) -> BTreeMap<u8, Vec<String>> {
    in_netns(&lab.client, || {
        (0..CLIENTS)
            .map(|i| {
                let got = (0..CONNS)
                    .map(|_| ask_from(client_addr(i)).expect("the VIP answers"))
                    .collect();
                (i, got)
            })
            .collect()
    })
    .unwrap()
}

/// The one backend each client reached; fails if a client reached several.
fn sticky(r: &BTreeMap<u8, Vec<String>>, when: &str) -> BTreeMap<u8, String> {
    r.iter()
        .map(|(&i, got)| {
            assert!(
                got.iter().all(|b| *b == got[0]),
                "{when}: client {} reached several backends: {got:?}",
                client_addr(i)
            );
            (i, got[0].clone())
        })
        .collect()
}

#[test]
fn clients_keep_their_backend_across_endpoint_changes() {
    let Some(lab) = lab_or_skip(
        "lab_affinity",
        LabSpec {
            backends: 4,
            ipv6: false,
            ..Default::default()
        },
    ) else {
        return;
    };
    for i in 0..CLIENTS {
        let out = std::process::Command::new("ip")
            .args(["-n", &lab.client, "addr", "add"])
            .arg(format!("{}/24", client_addr(i)))
            .args(["dev", "eth0"])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip addr add: {out:?}");
    }
    let _servers = Servers::start(&lab);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    let three = yaml(&[0, 1, 2]);
    std::fs::write(&path, &three).unwrap();
    let gw = Gateway::spawn(
        &lab,
        &[
            "--iface",
            &format!("{GW_CLIENT_IF},{GW_BACKEND_IF}"),
            "--io",
            "af-packet",
            "--workers",
            "2",
            "--services",
            &path.to_string_lossy(),
        ],
    );
    let admin = gw.admin_addr();

    let before = sticky(&round(&lab), "three backends");
    for (&i, b) in &before {
        assert_eq!(
            *b,
            backend_name(hashed_pick(&three, i)),
            "a new client is placed by the hash of its address"
        );
    }

    // b3 added: the hash alone would move some clients; none moves.
    let four = yaml(&[0, 1, 2, 3]);
    let would_move = (0..CLIENTS)
        .filter(|&i| hashed_pick(&three, i) != hashed_pick(&four, i))
        .count();
    assert!(would_move > 0, "the change must move someone by hash");
    apply_services(&lab, admin, &path, &four);
    let added = sticky(&round(&lab), "b3 added");
    assert_eq!(added, before, "clients moved when a backend was added");

    // b1 removed: its clients move (and stick), the others stay.
    let without_b1 = yaml(&[0, 2, 3]);
    apply_services(&lab, admin, &path, &without_b1);
    let removed = sticky(&round(&lab), "b1 removed");
    let mut moved = 0;
    for (i, b) in &removed {
        if before[i] == "b1" {
            assert_ne!(b, "b1");
            moved += 1;
        } else {
            assert_eq!(*b, before[i], "client {} moved needlessly", client_addr(*i));
        }
    }
    let again = sticky(&round(&lab), "b1 removed, again");
    assert_eq!(again, removed, "moved clients did not stick");

    let stats = in_netns(&lab.gw, move || control::admin::fetch_json(admin, "/stats"))
        .unwrap()
        .expect("/stats");
    let (ok, out) = gw.terminate();
    assert!(ok, "vipgate run failed:\n{out}");
    let total = &stats["total"];
    let count = |k: &str| {
        total[k]
            .as_u64()
            .unwrap_or_else(|| panic!("/stats total.{k}"))
    };
    // Every new flow of a moved client's first connection after b1 left.
    assert_eq!(count("affinity_moved"), moved as u64);
    assert_eq!(count("affinity_unknown"), u64::from(CLIENTS));
    println!(
        "lab_affinity: {CLIENTS} clients x {CONNS} connections per round; b3 added: \
         {would_move} would move by client hash, 0 moved; b1 removed: {moved} moved, \
         the rest stayed; affinity lookups: {} hit, {} unknown, {} backend gone",
        count("affinity_hits"),
        count("affinity_unknown"),
        count("affinity_moved")
    );
}
