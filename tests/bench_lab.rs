//! `vipgate bench lab --quick` end to end: every path forwards at every
//! service count, the report has its rows and ratio columns, and no lab
//! namespace is left behind. Figures are never asserted. Root only (loud
//! skip otherwise).

use std::process::Command;

use bench::lab::existing_namespaces;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

const TRAFFIC: [&str; 2] = ["established", "new-flows"];

const PATHS: [&str; 4] = [
    "kernel-iptables",
    "kernel-nftables",
    "vipgate-af_packet",
    "vipgate-af_xdp",
];

#[test]
fn quick_lab_bench_measures_every_path_and_cleans_up() {
    if !is_root() {
        eprintln!(
            "\n*** SKIPPED: vipgate bench lab needs root (namespaces, iptables, nft, AF_XDP) ***\n"
        );
        return;
    }
    let out_dir = std::env::temp_dir().join(format!("vipgate-bench-lab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let bin = env!("CARGO_BIN_EXE_vipgate");
    // The child's labs are named after its pid.
    let child = Command::new(bin)
        .args([
            "bench",
            "lab",
            "--quick",
            "--traffic",
            "established,new-flows",
            "--out",
        ])
        .arg(&out_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("vgl{}x", child.id());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
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
