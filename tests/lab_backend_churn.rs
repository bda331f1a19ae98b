//! A fault under load: backends change under 20 running TCP transfers, as
//! a rollout changes them: one turns terminating (still serving), then it
//! is gone and a new one is added, through the services file the gateway
//! reloads. Established transfers keep their backends (TCP entries stay
//! until they end) and all complete byte for byte; new connections follow
//! each new table (never the terminating backend while ready ones exist,
//! the new one once added); and the disruption of new-flow picks is
//! measured on 20,000 client tuples against the Maglev bound (the running
//! gateway's `/explain` agreeing with the tables measured). Prints what it
//! measured. Root only; otherwise it says so loudly and passes.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bench::lab::{self, in_netns, Lab, LabSpec, GW_BACKEND_IF, GW_CLIENT_IF};
use common::lab_test::{apply_services, lab_or_skip, tcp_ask_in, Gateway, Servers};
use control::model::{self, ModelOptions};
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
use common::bulk;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 40);
const TRANSFERS: usize = 20;
/// Each upload: 1 MiB in 64 KiB steps 200 ms apart, about 3.2 s: the
/// backend changes happen while they run.
const BYTES: usize = 1 << 20;
const PACE: (usize, Duration) = (64 << 10, Duration::from_millis(200));
/// Client tuples whose picks are compared before and after.
const SAMPLES: u32 = 20_000;

#[derive(Clone, Copy, PartialEq)]
enum State {
    Ready,
    Terminating,
}

/// The Service `web` (80: a name answer, 81: bulk) with `backends`.
fn yaml(backends: &[(usize, State)]) -> String {
    let endpoints: String = backends
        .iter()
        .map(|(i, st)| {
            let cond = match st {
                State::Ready => "{ready: true, serving: true, terminating: false}",
                State::Terminating => "{ready: false, serving: true, terminating: true}",
            };
            format!(
                "  - addresses: ['{}']\n    conditions: {cond}\n",
                lab::backend_v4(*i)
            )
        })
        .collect();
    format!(
        "apiVersion: v1\nkind: List\nitems:\n\
         - apiVersion: v1\n  kind: Service\n  metadata: {{name: web, namespace: lab}}\n\
         \x20 spec:\n    clusterIP: {VIP}\n    ports:\n\
         \x20   - {{name: http, port: 80, protocol: TCP, targetPort: 8080}}\n\
         \x20   - {{name: bulk, port: 81, protocol: TCP, targetPort: {}}}\n\
         - apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n\
         \x20 metadata:\n    name: web-1\n    namespace: lab\n    labels: {{kubernetes.io/service-name: web}}\n\
         \x20 addressType: IPv4\n  ports:\n  - {{name: http, port: 8080, protocol: TCP}}\n\
         \x20 - {{name: bulk, port: {}, protocol: TCP}}\n\
         \x20 endpoints:\n{endpoints}",
        bulk::BULK_PORT,
        bulk::BULK_PORT
    )
}

/// The table the gateway builds from `text` (same model, default seed).
fn table(text: &str) -> ServiceTable {
    let objs = control::objects::parse_str(text, Path::new("churn.yaml")).unwrap();
    let m = model::build(&objs.services, &objs.slices, &ModelOptions::default());
    ServiceTable::from_specs(m.services, TableConfig::default())
}

fn sample(i: u32) -> Tuple {
    Tuple {
        src: Addr::from_v4([198, 18, 0, (i % 200) as u8 + 2]),
        dst: Addr::from_v4(VIP.octets()),
        sport: 1024 + (i / 200) as u16 * 7 + (i % 7) as u16,
        dport: 80,
        proto: Proto::Tcp,
    }
}

fn picks(t: &ServiceTable) -> Vec<Addr> {
    (0..SAMPLES)
        .map(|i| {
            let s = sample(i);
            let e = t.lookup(&s.dst, s.dport, s.proto).expect("the Service");
            e.pick(&s, t.config().seed).expect("a backend").addr
        })
        .collect()
}

/// Which backends `n` new connections reached.
fn reached(lab: &Lab, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| tcp_ask_in(&lab.client, SocketAddr::from((VIP, 80))).expect("the VIP answers"))
        .collect()
}

#[test]
fn transfers_keep_their_backends_while_the_backend_set_changes() {
    let Some(lab) = lab_or_skip(
        "lab_backend_churn",
        LabSpec {
            backends: 4,
            ipv6: false,
            ..Default::default()
        },
    ) else {
        return;
    };
    let _servers = Servers::start(&lab);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    let start = yaml(&[(0, State::Ready), (1, State::Ready), (2, State::Ready)]);
    std::fs::write(&path, &start).unwrap();
    let gw = Gateway::spawn(
        &lab,
        &[
            "--iface",
            &format!("{GW_CLIENT_IF},{GW_BACKEND_IF}"),
            "--io",
            "af-packet",
            "--services",
            &path.to_string_lossy(),
        ],
    );
    let admin = gw.admin_addr();
    assert_eq!(reached(&lab, 30).len(), 3);

    let to = SocketAddr::new(IpAddr::V4(VIP), 81);
    let transfers = in_netns(&lab.client, move || {
        bulk::start_paced(to, TRANSFERS, 900, BYTES, PACE)
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(400));

    // b2 terminating: still serving its flows, no new ones (ready exist).
    let terminating = yaml(&[
        (0, State::Ready),
        (1, State::Ready),
        (2, State::Terminating),
    ]);
    apply_services(&lab, admin, &path, &terminating);
    let r = reached(&lab, 30);
    assert!(
        !r.contains("b2"),
        "a new connection reached terminating b2: {r:?}"
    );

    // b2 gone, b3 added.
    let after = yaml(&[(0, State::Ready), (1, State::Ready), (3, State::Ready)]);
    apply_services(&lab, admin, &path, &after);
    let r = reached(&lab, 30);
    assert!(
        !r.contains("b2") && r.contains("b3"),
        "new connections after the change: {r:?}"
    );

    let errors = bulk::join_all(transfers);
    assert!(
        errors.is_empty(),
        "transfers broke while backends changed: {errors:?}"
    );

    // Disruption of new-flow picks, measured on the tables the gateway
    // built (its /explain agrees on a few of the tuples).
    let (before, now) = (picks(&table(&start)), picks(&table(&after)));
    for i in (0..SAMPLES).step_by(2_000) {
        let s = sample(i);
        let client = SocketAddr::new(s.src.to_ip(), s.sport).to_string();
        let q = format!("/explain?client={client}&vip={VIP}:80&proto=tcp").replace(':', "%3A");
        let v = in_netns(&lab.gw, move || control::admin::fetch_json(admin, &q))
            .unwrap()
            .expect("/explain");
        let expect = SocketAddr::new(now[i as usize].to_ip(), 8080).to_string();
        assert_eq!(v["backend"], expect, "{v}");
    }
    let b = |i| Addr::from_v4(lab::backend_v4(i).octets());
    let stayed: Vec<usize> = (0..SAMPLES as usize)
        .filter(|&i| before[i] == b(0) || before[i] == b(1))
        .collect();
    let to_new = stayed.iter().filter(|&&i| now[i] == b(3)).count();
    let elsewhere = stayed
        .iter()
        .filter(|&&i| now[i] != before[i] && now[i] != b(3))
        .count();
    let from_gone = (0..SAMPLES as usize).filter(|&i| before[i] == b(2)).count();
    let pct = |n: usize| n as f64 * 100.0 / stayed.len() as f64;
    eprintln!(
        "lab_backend_churn: {TRANSFERS} transfers intact; of {} sampled new flows on b0/b1 before, \
         {:.2}% moved to the new b3 (its share of the ring) and {:.2}% between b0 and b1 \
         (the Maglev bound: < 2% of the ring per backend change, two changes here); \
         {from_gone} flows of b2 re-picked",
        stayed.len(),
        pct(to_new),
        pct(elsewhere)
    );
    assert!(
        pct(elsewhere) < 4.0,
        "{:.2}% of b0/b1's flows moved between them",
        pct(elsewhere)
    );
    let (ok, stdout) = gw.terminate();
    assert!(ok, "{stdout}");
}
