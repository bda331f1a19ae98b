//! End-to-end tests of `vipgate replay`, the real binary on the committed
//! fixtures: verdict counts, the rewritten pcap frame for frame against the
//! generator's independently built expectation, and an independent full
//! checksum recompute of every frame written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fixtures::verify::check_frame;
use pcap_file::pcap::PcapReader;
use serde_json::Value;

fn vipgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vipgate"))
}

fn fixture(name: &str) -> PathBuf {
    fixtures::fixtures_dir().join(name)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vipgate-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("running vipgate");
    assert!(
        out.status.success(),
        "vipgate failed: {}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// (timestamp in µs, frame bytes) of every record in a pcap.
fn records(path: &Path) -> Vec<(u128, Vec<u8>)> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = PcapReader::new(f).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        v.push((p.timestamp.as_micros(), p.data.into_owned()));
    }
    v
}

fn replay_json(name: &str, workers: u16, out: Option<&Path>) -> Value {
    let out = replay_file(&format!("{name}.pcap"), name, workers, out);
    serde_json::from_slice(&out.stdout).expect("--json prints one JSON object")
}

/// `vipgate replay --json` of fixture file `pcap` against `<services>-services.yaml`.
fn replay_file(pcap: &str, services: &str, workers: u16, out: Option<&Path>) -> Output {
    let mut cmd = vipgate();
    cmd.arg("replay")
        .arg("--services")
        .arg(fixture(&format!("{services}-services.yaml")))
        .arg("--pcap")
        .arg(fixture(pcap))
        .arg("--workers")
        .arg(workers.to_string())
        .arg("--json")
        .arg("--no-pin");
    if let Some(o) = out {
        cmd.arg("--out").arg(o);
    }
    run_ok(&mut cmd)
}

/// The replay's counts equal the generator's expectation; drop reasons the
/// expectation does not list must be zero.
fn assert_counts(name: &str, got: &Value) {
    let text = std::fs::read_to_string(fixture(&format!("{name}.expected.json"))).unwrap();
    let want: Value = serde_json::from_str(&text).unwrap();
    for k in ["packets", "forwarded", "reversed", "rejected", "passed"] {
        assert_eq!(got[k], want[k], "{name}: {k}");
    }
    let got_drops = got["dropped"].as_object().unwrap();
    let want_drops = want["dropped"].as_object().unwrap();
    for (reason, n) in got_drops {
        let expected = want_drops.get(reason).cloned().unwrap_or(Value::from(0));
        assert_eq!(n, &expected, "{name}: dropped.{reason}");
    }
}

fn assert_all_checksums(path: &Path) -> usize {
    let recs = records(path);
    for (i, (_, frame)) in recs.iter().enumerate() {
        if let Err(e) = check_frame(frame) {
            panic!("{}: frame {i}: {e}", path.display());
        }
    }
    recs.len()
}

fn golden(name: &str) {
    golden_file(&format!("{name}.pcap"), name, name);
}

/// Replays fixture file `pcap` against `<services>-services.yaml` and
/// checks it against `<expected>.expected.{json,pcap}`; returns stderr.
fn golden_file(pcap: &str, services: &str, name: &str) -> String {
    let out = tmp(&format!("{name}.out.pcap"));
    let run = replay_file(pcap, services, 1, Some(&out));
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_counts(name, &summary);
    let got = records(&out);
    let want = records(&fixture(&format!("{name}.expected.pcap")));
    assert_eq!(got.len(), want.len(), "{name}: frames written");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{name}: frame {i} differs from the expected rewrite");
    }
    assert_eq!(assert_all_checksums(&out), want.len());
    String::from_utf8_lossy(&run.stderr).into_owned()
}

#[test]
fn other_link_types_replay_as_ethernet_with_synthetic_macs() {
    for form in [
        "sll", "sll2", "raw", "null", "loop", "ipv4", "ipv6", "eth-fcs",
    ] {
        let name = format!("linktype-{form}");
        let err = golden_file(&format!("{name}.pcap"), "basic", &name);
        assert!(!err.contains("warning"), "{name}: {err}");
    }
}

#[test]
fn damaged_records_are_skipped_with_one_warning_and_every_good_one_replays() {
    let err = golden_file("damaged.pcap", "basic", "damaged");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("skipped 2 damaged records"), "{err}");
    assert!(warnings[0].contains("record 11 at byte"), "{err}");
    let err = golden_file("damaged-ng.pcapng", "basic", "damaged-ng");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("skipped 1 damaged record (first: block 14"),
        "{err}"
    );
}

#[test]
fn out_with_a_pcapng_name_writes_pcapng() {
    let ng = tmp("basic.out.pcapng");
    replay_file("basic.pcap", "basic", 1, Some(&ng));
    let bytes = std::fs::read(&ng).unwrap();
    assert_eq!(
        bytes[..4],
        [0x0a, 0x0d, 0x0d, 0x0a],
        "a pcapng section header"
    );
    let mut r = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).unwrap();
    let mut got = Vec::new();
    while let Some(b) = r.next_block() {
        if let pcap_file::pcapng::Block::EnhancedPacket(p) = b.unwrap() {
            // if_tsresol 9: the raw units are nanoseconds.
            got.push((p.timestamp.as_nanos() / 1000, p.data.into_owned()));
        }
    }
    assert_eq!(got, records(&fixture("basic.expected.pcap")));
}

#[test]
fn basic_fixture_matches_the_golden_output() {
    golden("basic");
}

#[test]
fn affinity_fixture_matches_the_golden_output() {
    golden("affinity");
}

#[test]
fn demo_counts_match_and_every_written_frame_verifies() {
    let out = tmp("demo.out.pcap");
    let summary = replay_json("demo", 1, Some(&out));
    assert_counts("demo", &summary);
    let written = assert_all_checksums(&out);
    let s = &summary;
    let tx = s["forwarded"].as_u64().unwrap()
        + s["reversed"].as_u64().unwrap()
        + s["rejected"].as_u64().unwrap();
    assert_eq!(
        written as u64, tx,
        "every transmitted frame is written, nothing else"
    );
    assert_eq!(summary["flows"], 3700);
}

#[test]
fn demo_with_two_workers_gives_the_same_verdicts_and_frames() {
    let one = tmp("demo1.pcap");
    let two = tmp("demo2.pcap");
    let a = replay_json("demo", 1, Some(&one));
    let b = replay_json("demo", 2, Some(&two));
    for k in [
        "packets",
        "forwarded",
        "reversed",
        "rejected",
        "passed",
        "dropped",
        "flows",
    ] {
        assert_eq!(a[k], b[k], "{k}");
    }
    assert_eq!(b["workers"], 2);
    // Output is merged back into capture order, so the files are equal.
    assert_eq!(records(&one), records(&two));
}

#[test]
fn loops_repeat_the_capture_with_a_rising_clock() {
    let out = run_ok(vipgate().args(["replay", "--loops", "3", "--json", "--no-pin"]));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["packets"], 3 * 25739);
    assert_eq!(v["loops"], 3);
    // Closed TCP flows reopen in later loops on the same tuples: no
    // duplicate entries, and nothing is dropped for want of conntrack room.
    assert_eq!(v["dropped"]["conntrack_full"], 0);
    for k in ["seconds", "mpps", "ns_per_packet"] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}");
    }
}

#[test]
fn default_replay_prints_a_readable_summary() {
    let out = run_ok(vipgate().args(["replay", "--no-pin"]));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "forwarded (DNAT)",
        "reversed (un-DNAT)",
        "rejected",
        "passed to kernel",
        "flows created",
        "Mpps",
        "ns/pkt",
    ] {
        assert!(text.contains(needle), "summary lacks {needle:?}:\n{text}");
    }
}

#[test]
fn bad_input_is_a_one_line_error() {
    let cases: Vec<Vec<&str>> = vec![
        vec!["replay", "--workers", "0"],
        vec!["replay", "--pcap", "/nonexistent.pcap"],
        vec![
            "replay",
            "--services",
            "/nonexistent.yaml",
            "--pcap",
            "/nonexistent.pcap",
        ],
    ];
    for args in cases {
        let out = vipgate().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}: says nothing");
    }
    // A missing file is exactly one line naming it.
    let svc = fixture("basic-services.yaml");
    let out = vipgate()
        .args(["replay", "--pcap", "/nonexistent.pcap", "--services"])
        .arg(&svc)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent.pcap"), "{err}");
}

#[test]
fn unusable_objects_are_skipped_with_one_warning_each() {
    let mut yaml = std::fs::read_to_string(fixture("basic-services.yaml")).unwrap();
    yaml.push_str(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: stray, namespace: default}\ndata: {a: b}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: broken, namespace: default}\nspec: {clusterIP: not-an-ip, ports: [{port: 80}]}\n",
    );
    // A `List` followed by more documents: write as a multi-document stream.
    let path = tmp("with-bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = run_ok(
        vipgate()
            .args(["replay", "--json", "--no-pin", "--pcap"])
            .arg(fixture("basic.pcap"))
            .arg("--services")
            .arg(&path),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert!(warnings.iter().any(|w| w.contains("ConfigMap")), "{err}");
    assert!(warnings.iter().any(|w| w.contains("broken")), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_counts("basic", &v);
}

/// SCTP associations (v4 and v6) through SCTP Services, and the ABORTs of a
/// Service without endpoints: the written frames equal the generator's
/// (whose CRC32c is computed by another implementation than the
/// dataplane's), every CRC32c verifies (fixtures::verify), and tshark
/// agrees frame by frame.
#[test]
fn sctp_fixture_matches_the_golden_output() {
    golden("sctp");
    let out = tmp("sctp.out.pcap");
    replay_file("sctp.pcap", "sctp", 1, Some(&out));
    let n = records(&out).len();
    assert_eq!(n, 34);
    assert_eq!(tshark_sctp_checksums(&out), vec![Some(true); n]);

    // tshark does tell a bad CRC32c: one flipped payload byte.
    let mut recs = records(&out);
    let last = recs[0].1.len() - 1;
    recs[0].1[last] ^= 1;
    let bad = tmp("sctp.bad.pcap");
    fixtures::fixture::write_pcap(
        &bad,
        recs.iter()
            .map(|(t, f)| (std::time::Duration::from_micros(*t as u64), &f[..])),
    )
    .unwrap();
    let got = tshark_sctp_checksums(&bad);
    assert_eq!(got[0], Some(false));
    assert!(got[1..].iter().all(|s| *s == Some(true)), "{got:?}");
}

/// tshark's verdict on the SCTP checksum of every frame of `path` (None:
/// no SCTP checksum status), with CRC32c validation on.
fn tshark_sctp_checksums(path: &Path) -> Vec<Option<bool>> {
    let out = Command::new("tshark")
        .args(["-n", "-r", &path.to_string_lossy()])
        .args(["-o", "sctp.checksum:CRC 32c"])
        .args(["-o", "ip.check_checksum:TRUE"])
        .args(["-T", "fields", "-E", "separator=,"])
        .args(["-e", "sctp.checksum.status", "-e", "ip.checksum.status"])
        .output()
        .expect("run tshark (install tshark; .ci/run does)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let (sctp, ip) = line.split_once(',').unwrap_or((line, ""));
            // Status 0 = Bad, 1 = Good; IPv6 has no header checksum.
            assert_ne!(ip, "0", "ip header checksum: {line}");
            match sctp {
                "1" => Some(true),
                "0" => Some(false),
                _ => None,
            }
        })
        .collect()
}
