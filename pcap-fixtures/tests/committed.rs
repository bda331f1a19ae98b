//! Properties of the committed fixture files as other tests will read them:
//! pcaps parse, counts agree, every expected frame has correct checksums,
//! only benchmarking addresses appear, and the YAML is real Kubernetes.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use pcap_file::pcap::PcapReader;
use pcap_file::DataLink;

fn read_pcap(path: &Path) -> Vec<(Duration, Vec<u8>)> {
    let mut r = PcapReader::new(File::open(path).unwrap()).unwrap();
    assert_eq!(r.header().datalink, DataLink::ETHERNET);
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        assert_eq!(p.orig_len as usize, p.data.len());
        out.push((p.timestamp, p.data.into_owned()));
    }
    out
}

fn expected_json(name: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(fixtures::fixtures_dir().join(format!("{name}.expected.json")))
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn expected_outputs_are_consistent() {
    for name in ["basic", "affinity"] {
        expected_output_is_consistent(name);
    }
}

fn expected_output_is_consistent(name: &str) {
    let dir = fixtures::fixtures_dir();
    let input = read_pcap(&dir.join(format!("{name}.pcap")));
    let output = read_pcap(&dir.join(format!("{name}.expected.pcap")));
    let counts = expected_json(name);
    assert_eq!(counts["packets"].as_u64().unwrap() as usize, input.len());
    let written = ["forwarded", "reversed", "rejected"]
        .iter()
        .map(|k| counts[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(written as usize, output.len());
    let dropped: u64 = counts["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        written + counts["passed"].as_u64().unwrap() + dropped,
        input.len() as u64
    );
    for (i, (_, frame)) in output.iter().enumerate() {
        assert_eq!(
            fixtures::check_frame(frame),
            Ok(()),
            "{name} expected frame {i}"
        );
    }
    // Every output carries the timestamp of an input, in input order.
    let mut inputs = input.iter().map(|(t, _)| *t);
    for (t, _) in &output {
        assert!(
            inputs.any(|it| it == *t),
            "{name}: output at {t:?} has no input"
        );
    }
}

#[test]
fn timestamps_never_go_back() {
    for name in pcaps() {
        let frames = read_pcap(&fixtures::fixtures_dir().join(&name));
        assert!(frames.windows(2).all(|w| w[0].0 <= w[1].0), "{name}");
    }
}

fn pcaps() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures::fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        // linktype-* and damaged* are not Ethernet pcaps on purpose.
        .filter(|n| {
            n.ends_with(".pcap") && !n.starts_with("linktype-") && !n.starts_with("damaged")
        })
        .collect();
    v.sort();
    v
}

/// IPv4 addresses in 198.18.0.0/15, IPv6 in fd00::/8, nothing else, in
/// every IP header of every frame (quoted headers included, when whole).
#[test]
fn only_benchmarking_addresses() {
    // The family comes from the ethertype, as the pipeline sees it.
    fn check_ip(b: &[u8], v6: bool, what: &str) {
        match v6 {
            false if b.len() >= 20 => {
                for a in [&b[12..16], &b[16..20]] {
                    assert!(a[0] == 198 && (a[1] & 0xfe) == 18, "{what}: {a:?}");
                }
                let hlen = usize::from(b[0] & 0xf) * 4;
                if b[9] == 1 && b.len() >= hlen + 8 && hlen >= 20 && matches!(b[hlen], 3 | 11 | 12)
                {
                    check_ip(&b[hlen + 8..], false, what);
                }
            }
            true if b.len() >= 40 => {
                for a in [&b[8..24], &b[24..40]] {
                    assert_eq!(a[0], 0xfd, "{what}: {a:02x?}");
                }
                if b[6] == 58 && b.len() >= 48 && (1..=4).contains(&b[40]) {
                    check_ip(&b[48..], true, what);
                }
            }
            _ => {}
        }
    }
    for name in pcaps() {
        for (i, (_, f)) in read_pcap(&fixtures::fixtures_dir().join(&name))
            .iter()
            .enumerate()
        {
            if f.len() < 14 {
                continue;
            }
            let (et, off) = match u16::from_be_bytes([f[12], f[13]]) {
                0x8100 if f.len() >= 18 => (u16::from_be_bytes([f[16], f[17]]), 18),
                et => (et, 14),
            };
            if et == 0x0800 || et == 0x86dd {
                check_ip(&f[off..], et == 0x86dd, &format!("{name} frame {i}"));
            }
        }
    }
}

#[test]
fn services_yaml_deserialises_as_kubernetes_objects() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures::fixtures_dir()).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with("-services.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let list: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(list["apiVersion"], "v1");
        assert_eq!(list["kind"], "List");
        let (mut services, mut slices) = (0, 0);
        for item in list["items"].as_sequence().unwrap() {
            match item["kind"].as_str().unwrap() {
                "Service" => {
                    let s: Service = serde_yaml::from_value(item.clone()).unwrap();
                    let spec = s.spec.unwrap();
                    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
                    for ip in spec.cluster_ips.unwrap() {
                        assert!(ip.starts_with("198.19.") || ip.starts_with("fd00:"), "{ip}");
                    }
                    services += 1;
                }
                "EndpointSlice" => {
                    let e: EndpointSlice = serde_yaml::from_value(item.clone()).unwrap();
                    let labels = e.metadata.labels.unwrap();
                    assert!(labels.contains_key("kubernetes.io/service-name"));
                    assert!(labels.contains_key("endpointslice.kubernetes.io/managed-by"));
                    for ep in e.endpoints.unwrap_or_default() {
                        assert!(ep.conditions.is_some() && ep.target_ref.is_some());
                    }
                    slices += 1;
                }
                other => panic!("unexpected kind {other}"),
            }
        }
        assert!(services > 0 && slices >= services, "{}", path.display());
        checked += 1;
    }
    assert!(checked >= 1);
}
