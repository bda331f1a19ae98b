//! `vipgate bench lab --quick` end to end: every path forwards at every
//! service count, the report has its rows and ratio columns, and no lab
//! namespace is left behind; and `--traffic tcp` in its smallest shape.
//! Figures are never asserted. Root only (loud skip otherwise).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;

use bench::lab::existing_namespaces;

use dataplane::io::af_packet::is_root;

const TRAFFIC: [&str; 2] = ["established", "new-flows"];

const PATHS: [&str; 4] = [
    "kernel-iptables",
    "kernel-nftables",
    "vipgate-af_packet",
    "vipgate-af_xdp",
];

/// The benches share two cores: one at a time, so neither measures the
/// other (and a slow path cannot starve the other's latency probes).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `vipgate bench lab ARGS --out DIR`: its output, and the lab namespace
/// prefix of the child (its labs are named after its pid).
fn bench_lab(args: &[&str], out_dir: &Path) -> (Output, String) {
    let _ = std::fs::remove_dir_all(out_dir);
    let child = Command::new(env!("CARGO_BIN_EXE_vipgate"))
        .args(["bench", "lab"])
        .args(args)
        .arg("--out")
        .arg(out_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("vgl{}x", child.id());
    let out = child.wait_with_output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    (out, prefix)
}

fn skipped() -> bool {
    if !is_root() {
        eprintln!(
            "\n*** SKIPPED: vipgate bench lab needs root (namespaces, iptables, nft, AF_XDP) ***\n"
        );
    }
    !is_root()
}

#[test]
fn quick_lab_bench_measures_every_path_and_cleans_up() {
    if skipped() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir = std::env::temp_dir().join(format!("vipgate-bench-lab-{}", std::process::id()));
    let (out, prefix) = bench_lab(&["--quick", "--traffic", "established,new-flows"], &out_dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vipgate bench lab failed:\n{stderr}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    let cells = json["cells"].as_array().unwrap();
    for (traffic, path, services) in TRAFFIC
        .into_iter()
        .flat_map(|t| PATHS.into_iter().map(move |p| (t, p)))
        .flat_map(|(t, p)| [1u64, 100].into_iter().map(move |n| (t, p, n)))
    {
        {
            let c = cells
                .iter()
                .find(|c| c["traffic"] == traffic && c["path"] == path && c["services"] == services)
                .unwrap_or_else(|| panic!("no row for {path} x {services} ({traffic})"));
            assert!(c["error"].is_null(), "{path} x {services}: {}", c["error"]);
            let runs = c["runs"].as_array().unwrap();
            assert_eq!(runs.len(), 3, "{path} x {services}: three runs");
            for r in runs {
                assert!(r["forwarded_pps"].as_f64().unwrap() > 0.0, "{path}: {r}");
                assert!(r["received"].as_u64().unwrap() > 0, "{path}: {r}");
            }
            assert!(c["forwarded_mpps"].as_f64().unwrap() > 0.0, "{path}: {c}");
            let lat = c["latency"].as_array().unwrap();
            if traffic == "new-flows" {
                assert!(lat.is_empty(), "new-flows runs no latency probe: {c}");
                assert!(c["distinct_flows"].as_u64().unwrap() > 0, "{path}: {c}");
                continue;
            }
            assert!(
                lat.iter().any(|l| l["answered"].as_u64().unwrap() > 0),
                "{path} x {services}: no latency probe got an answer"
            );
        }
    }
    assert_eq!(cells.len(), TRAFFIC.len() * PATHS.len() * 2);
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(json["command_line"].as_array().unwrap().len() >= 3);

    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        md.contains("| vs kernel-nftables | vs kernel-iptables |"),
        "{md}"
    );
    for path in PATHS {
        assert_eq!(
            md.lines()
                .filter(|l| l.starts_with(&format!("| {path} |")))
                .count(),
            4,
            "{path} rows in report.md:\n{md}"
        );
    }
    let svg = std::fs::read_to_string(out_dir.join("throughput-vs-services.svg")).unwrap();
    assert_eq!(
        svg.matches("<polyline").count(),
        TRAFFIC.len() * PATHS.len()
    );
    // Latency is probed with established traffic only: p50 and p99 per path.
    let lat = std::fs::read_to_string(out_dir.join("latency-vs-services.svg")).unwrap();
    assert_eq!(lat.matches("<polyline").count(), 2 * PATHS.len(), "{lat}");
    assert!(md.contains("latency-vs-services.svg"), "{md}");
    assert!(md.contains("## new-flows, 100 services"), "{md}");
    assert!(md.contains("| distinct flows |"), "{md}");

    let left = existing_namespaces(&prefix).unwrap();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let _ = std::fs::remove_dir_all(&out_dir);
}

const TCP_PATHS: [&str; 3] = ["kernel-nftables", "vipgate-af_packet", "vipgate-af_xdp"];

/// iperf3 through three paths, 1 and 4 streams, both offload settings,
/// one 1-second test each: every cell is in the report (figures or the
/// error that stopped it), the kernel path carried TCP, the tables and
/// plots are written. A vipgate cell may fail (then the bench exits
/// non-zero after writing its report); its figures are not asserted.
#[test]
fn tcp_lab_bench_reports_every_cell_and_the_kernel_path_carries_tcp() {
    if skipped() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir =
        std::env::temp_dir().join(format!("vipgate-bench-lab-tcp-{}", std::process::id()));
    let paths = TCP_PATHS.join(",");
    let (out, prefix) = bench_lab(
        &[
            "--traffic",
            "tcp",
            "--duration",
            "1",
            "--repeats",
            "1",
            "--paths",
            &paths,
        ],
        &out_dir,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("failed:"),
        "vipgate bench lab --traffic tcp did not finish its report:\n{stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert!(json["cells"].as_array().unwrap().is_empty(), "no UDP cells");
    let cells = json["tcp"].as_array().unwrap();
    assert_eq!(cells.len(), TCP_PATHS.len() * 2 * 2, "{cells:?}");
    for offloads in ["default", "off"] {
        for path in TCP_PATHS {
            for streams in [1u64, 4] {
                let c = cells
                    .iter()
                    .find(|c| {
                        c["path"] == path && c["offloads"] == offloads && c["streams"] == streams
                    })
                    .unwrap_or_else(|| panic!("no cell {path} -P {streams} offloads {offloads}"));
                let gbps = c["gbps"].as_f64().unwrap();
                if path == "kernel-nftables" {
                    assert!(c["error"].is_null(), "{c}");
                    assert!(gbps > 0.0, "kernel nftables carried no TCP: {c}");
                    assert_eq!(c["runs"].as_array().unwrap().len(), 1, "{c}");
                } else {
                    // Figures from its one run, or the error that stopped it.
                    let runs = c["runs"].as_array().unwrap().len();
                    assert!(c["error"].is_string() || (runs == 1 && gbps >= 0.0), "{c}");
                }
            }
        }
    }
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    for offloads in ["default", "off"] {
        assert!(
            md.contains(&format!("### tcp, offloads {offloads}\n")),
            "{md}"
        );
        let svg =
            std::fs::read_to_string(out_dir.join(format!("tcp-offloads-{offloads}.svg"))).unwrap();
        assert_eq!(svg.matches("<polyline").count(), TCP_PATHS.len(), "{svg}");
    }
    for path in TCP_PATHS {
        let rows = md
            .lines()
            .filter(|l| l.starts_with(&format!("| {path} |")))
            .count();
        assert_eq!(rows, 4, "{path} rows in report.md:\n{md}");
    }
    assert!(md.contains("| vs kernel-nftables |"), "{md}");
    let left = existing_namespaces(&prefix).unwrap();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let _ = std::fs::remove_dir_all(&out_dir);
}
