//! `vipgate bench replay --quick` end to end: the real binary writes a
//! report whose JSON, Markdown and SVG files are complete. Figures are
//! checked for being measured (positive), never for their values.

use std::path::PathBuf;
use std::process::Command;

fn out_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("vipgate-bench-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn quick_replay_bench_writes_a_complete_report() {
    let dir = out_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_vipgate"))
        .args(["bench", "replay", "--quick", "--no-pin", "--out"])
        .arg(&dir)
        .output()
        .expect("running vipgate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vipgate failed: {stderr}");
    assert!(
        stderr.contains("[1/4] established x 1 services x 1 worker ... "),
        "{stderr}"
    );
    assert!(
        stderr.contains("[4/4] syn x 100 services x 1 worker ... "),
        "{stderr}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
            .expect("report.json parses");
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(!json["machine"]["cpu_model"].as_str().unwrap().is_empty());
    assert!(!json["machine"]["kernel"].as_str().unwrap().is_empty());
    assert!(!json["vipgate_version"].as_str().unwrap().is_empty());
    let cmdline: Vec<&str> = json["command_line"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(cmdline.contains(&"--quick"), "{cmdline:?}");

    let cells = json["cells"].as_array().expect("cells");
    let mut seen: Vec<(String, u64)> = cells
        .iter()
        .map(|c| {
            (
                c["mix"].as_str().unwrap().to_string(),
                c["services"].as_u64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    let want: Vec<(String, u64)> = [
        ("established", 1),
        ("established", 100),
        ("syn", 1),
        ("syn", 100),
    ]
    .iter()
    .map(|(m, s)| (m.to_string(), *s))
    .collect();
    assert_eq!(seen, want);
    for c in cells {
        assert_eq!(c["workers"], 1);
        assert!(c["median_mpps"].as_f64().unwrap() > 0.0, "{c}");
        assert!(c["median_ns_per_packet"].as_f64().unwrap() > 0.0, "{c}");
        let runs = c["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 3, "three repeats per cell");
        for r in runs {
            let packets = r["packets"].as_u64().unwrap();
            assert!(packets > 0 && r["mpps"].as_f64().unwrap() > 0.0, "{r}");
            // Every synthetic packet is addressed to a service: all forwarded.
            assert_eq!(r["forwarded"].as_u64().unwrap(), packets, "{r}");
            // The syn capture overflows conntrack: every SYN is a new flow.
            if c["mix"] == "syn" {
                assert_eq!(r["flows"].as_u64().unwrap(), packets, "{r}");
            } else if r["loops"].as_u64().unwrap() > 1 {
                // Later loops of a fixed flow set hit conntrack.
                assert!(r["flows"].as_u64().unwrap() < packets, "{r}");
            }
        }
    }

    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("## Mpps per core by mix x table size"), "{md}");
    assert!(
        md.contains("| mix | 1 svc x 10 be | 100 svc x 10 be |"),
        "{md}"
    );
    assert!(md.contains("## Scaling by workers"), "{md}");
    assert!(md.contains("Flatness: 100 vs 1 services"), "{md}");

    for svg in ["throughput-vs-services.svg", "throughput-vs-workers.svg"] {
        let s = std::fs::read_to_string(dir.join(svg)).unwrap_or_else(|e| panic!("{svg}: {e}"));
        assert!(s.starts_with("<svg"), "{svg}");
        assert!(s.contains("<polyline"), "{svg}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_replay_rejects_a_pcap_without_services() {
    let out = Command::new(env!("CARGO_BIN_EXE_vipgate"))
        .args(["bench", "replay", "--pcap", "x.pcap"])
        .output()
        .expect("running vipgate");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--services"));
}
