//! `vipgate bench send --quick` end to end: vipgate send (AF_PACKET,
//! AF_XDP) and tcpreplay all send and are counted at the peer, the report
//! has the ratio columns, and no namespace is left behind. Figures are
//! never asserted. Root only (loud skip otherwise).

use std::process::Command;

use bench::lab::existing_namespaces;

use dataplane::io::af_packet::is_root;

const TOOLS: [&str; 3] = ["vipgate-send-af_packet", "vipgate-send-af_xdp", "tcpreplay"];

#[test]
fn quick_send_bench_measures_all_three_tools_and_cleans_up() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: vipgate bench send needs root (namespaces, AF_XDP) ***\n");
        return;
    }
    let out_dir = std::env::temp_dir().join(format!("vipgate-bench-send-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let child = Command::new(env!("CARGO_BIN_EXE_vipgate"))
        .args(["bench", "send", "--quick", "--repeats", "2", "--out"])
        .arg(&out_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The child's namespaces are named after its pid.
    let prefix = format!("vgl{}sb", child.id());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "vipgate bench send failed:\n{stderr}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    let tools = json["tools"].as_array().unwrap();
    assert_eq!(tools.len(), TOOLS.len());
    let frames =
        json["capture"]["frames"].as_u64().unwrap() * json["capture"]["loops"].as_u64().unwrap();
    assert!(
        frames >= 100_000,
        "quick sends at least its packet count: {frames}"
    );
    for name in TOOLS {
        let t = tools
            .iter()
            .find(|t| t["tool"] == name)
            .unwrap_or_else(|| panic!("no row for {name}"));
        assert!(t["error"].is_null(), "{name}: {}", t["error"]);
        let runs = t["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{name}: two runs");
        for r in runs {
            assert_eq!(
                r["sent"].as_u64().unwrap(),
                frames,
                "{name} sends every frame: {r}"
            );
            assert!(r["received"].as_u64().unwrap() > 0, "{name}: {r}");
            assert!(r["sent_pps"].as_f64().unwrap() > 0.0, "{name}: {r}");
            assert!(r["reported_pps"].as_f64().unwrap() > 0.0, "{name}: {r}");
        }
        assert!(t["sent_pps"].as_f64().unwrap() > 0.0, "{name}: {t}");
        assert!(t["received_pps"].as_f64().unwrap() > 0.0, "{name}: {t}");
        assert!(
            t["sent_vs_tcpreplay"].as_f64().unwrap() > 0.0,
            "{name}: {t}"
        );
    }

    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        md.contains("| sent vs tcpreplay | received vs tcpreplay |"),
        "{md}"
    );
    for name in TOOLS {
        assert_eq!(
            md.lines()
                .filter(|l| l.starts_with(&format!("| {name} |")))
                .count(),
            1,
            "{name} row in report.md:\n{md}"
        );
    }
    let svg = std::fs::read_to_string(out_dir.join("send-pps.svg")).unwrap();
    assert_eq!(svg.matches("<rect").count(), 2 * TOOLS.len());

    let left = existing_namespaces(&prefix).unwrap();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let _ = std::fs::remove_dir_all(&out_dir);
}
