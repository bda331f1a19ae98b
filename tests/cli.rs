//! The CLI around the subcommands: shell completions and the man page
//! generate, log levels and formats take effect, and the warnings a new
//! user needs (no usable services, node ports not served) appear.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_vipgate");

fn vipgate(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run vipgate")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture(name: &str) -> String {
    format!("{}/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn completions_and_man_page_generate() {
    for shell in ["bash", "zsh", "fish"] {
        let o = vipgate(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        for sub in ["replay", "run", "bench", "services", "completions"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let bad = vipgate(&["completions", "tcsh"]);
    assert!(!bad.status.success());
    let man = vipgate(&["man"]);
    assert!(man.status.success(), "{}", stderr(&man));
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.contains(".TH vipgate 1"), "{page}");
    assert!(page.contains("replay"), "{page}");
}

#[test]
fn log_level_and_format_take_effect() {
    let dir = std::env::temp_dir().join(format!("vipgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "apiVersion: v1\nkind: List\nitems: []\n").unwrap();
    let empty = empty.to_string_lossy().to_string();
    let pcap = fixture("pcap-fixtures/basic.pcap");
    let replay = ["replay", "--services", &empty, "--pcap", &pcap];

    // Default (info): the warning that nothing was loaded.
    let o = vipgate(&replay);
    assert!(o.status.success(), "{}", stderr(&o));
    let warn: Vec<String> = stderr(&o)
        .lines()
        .filter(|l| l.starts_with("vipgate: warning: 0 service ports loaded"))
        .map(str::to_string)
        .collect();
    assert_eq!(warn.len(), 1, "{}", stderr(&o));
    assert!(!stderr(&o).contains("vipgate: debug:"), "{}", stderr(&o));

    // --log-level error hides it; -v shows debug lines.
    let quiet = [&["--log-level", "error"][..], &replay[..]].concat();
    let o = vipgate(&quiet);
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let loud = [&["-v"][..], &replay[..]].concat();
    let o = vipgate(&loud);
    assert!(stderr(&o).contains("vipgate: debug: "), "{}", stderr(&o));
    // RUST_LOG works when no flag is given.
    let o = Command::new(BIN)
        .args(replay)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(stderr(&o).contains("vipgate: debug: "), "{}", stderr(&o));

    // JSON: one object per line, with the level and the message.
    let json = [&["--log-format", "json"][..], &replay[..]].concat();
    let o = vipgate(&json);
    let lines: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(
        lines.iter().any(|v| v["level"] == "WARN"
            && v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("0 service ports"))),
        "{lines:?}"
    );
    let bad = vipgate(&["--log-level", "loud", "replay"]);
    assert!(!bad.status.success());
    assert_eq!(
        stderr(&bad)
            .lines()
            .filter(|l| l.starts_with("error"))
            .count(),
        1
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn node_ports_are_said_not_served() {
    let pcap = fixture("pcap-fixtures/basic.pcap");
    let services = fixture("control/tests/data/cluster_list.yaml");
    let o = vipgate(&["replay", "--services", &services, "--pcap", &pcap]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("nodePort 31443 not served"),
        "{}",
        stderr(&o)
    );
}

/// `vipgate explain --services`: a flow to a Service gets one of its ready
/// backends and the backends' slots cover the ring (that the pick is the
/// pipeline's is checked in dataplane/src/explain.rs and tests/lab_observe.rs),
/// a port no Service has is passed, and a bad question is a one-line error.
#[test]
fn explain_answers_from_a_services_file() {
    let svc = fixture("pcap-fixtures/basic-services.yaml");
    let o = vipgate(&[
        "explain",
        "--json",
        "--services",
        &svc,
        "198.18.0.1:40000",
        "198.19.0.10:80",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "forwarded", "{v}");
    assert_eq!(v["service"], "shop/web:http", "{v}");
    let slots: u64 = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["slots"].as_u64().unwrap())
        .sum();
    assert_eq!(slots, v["ring_size"].as_u64().unwrap(), "{v}");
    let picked = v["backend"].as_str().unwrap();
    assert!(
        v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["backend"] == picked && b["state"] == "ready"),
        "{v}"
    );

    let o = vipgate(&[
        "explain",
        "--services",
        &svc,
        "198.18.0.1:1",
        "198.19.0.10:81",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("verdict    passed"), "{text}");

    let o = vipgate(&[
        "explain",
        "--services",
        &svc,
        "198.18.0.1",
        "198.19.0.10:80",
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("not address:port"), "{e}");
}

/// `vipgate explain` of SCTP Services from the `sctp` fixture's file: a
/// flow to the Service with an endpoint gets it (the SCTP port, not a TCP
/// one of the same number), the one without endpoints says ABORT.
#[test]
fn explain_answers_for_sctp_services() {
    let svc = fixture("pcap-fixtures/sctp-services.yaml");
    let ask = |vip: &str| {
        let o = vipgate(&[
            "explain",
            "--json",
            "--services",
            &svc,
            "198.18.0.30:40000",
            vip,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let v = ask("198.19.3.10:3868/sctp");
    assert_eq!(v["verdict"], "forwarded", "{v}");
    assert_eq!(v["service"], "telecom/hss:diameter", "{v}");
    assert_eq!(v["backend"], "198.18.1.130:3869", "{v}");
    assert_eq!(ask("198.19.3.10:3868/tcp")["verdict"], "passed");
    let v = ask("198.19.3.11:3868/sctp");
    assert_eq!(v["verdict"], "rejected", "{v}");
    assert!(v["why"].as_str().unwrap().contains("SCTP ABORT"), "{v}");
}
