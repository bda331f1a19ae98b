//! Loading dumps: the shapes `kubectl get svc,endpointslices -A` prints, and
//! what happens with files that are not dumps.

use std::path::{Path, PathBuf};

use control::objects::{load_file, parse_str, Objects};
use control::Error;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn names(o: &Objects) -> (Vec<String>, Vec<String>) {
    let id = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        format!(
            "{}/{}",
            m.namespace.as_deref().unwrap_or("-"),
            m.name.as_deref().unwrap_or("-")
        )
    };
    (
        o.services.iter().map(|s| id(&s.metadata)).collect(),
        o.slices.iter().map(|s| id(&s.metadata)).collect(),
    )
}

#[test]
fn v1_list_from_kubectl() {
    let o = load_file(&data("cluster_list.yaml")).unwrap();
    let (services, slices) = names(&o);
    assert_eq!(
        services,
        [
            "default/kubernetes",
            "kube-system/kube-dns",
            "shop/web",
            "shop/db",
            "shop/payments-upstream",
            "shop/edge"
        ]
    );
    assert_eq!(
        slices,
        [
            "default/kubernetes",
            "kube-system/kube-dns-x7k2q",
            "shop/web-2mfk8",
            "shop/web-9zq4t",
            "shop/db-h5w2x",
            "shop/edge-v4abc",
            "shop/edge-v6def"
        ]
    );
    // Exactly one line for the Pod, naming it.
    assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    assert!(
        o.warnings[0].contains("v1 Pod shop/web-5d8f9c7b6-abcde"),
        "{}",
        o.warnings[0]
    );
    assert!(
        o.warnings[0].contains("cluster_list.yaml"),
        "{}",
        o.warnings[0]
    );
    // Fields survive the trip through the API types.
    let dns = &o.slices[1];
    assert_eq!(
        dns.endpoints.as_ref().unwrap()[1].node_name.as_deref(),
        Some("node-b")
    );
}

#[test]
fn multi_document_stream() {
    let o = load_file(&data("multidoc.yaml")).unwrap();
    let (services, slices) = names(&o);
    assert_eq!(
        services,
        ["billing/legacy-db", "billing/syslog", "billing/broken"]
    );
    assert_eq!(slices, ["billing/legacy-db-1", "billing/syslog-k2j4h"]);
    assert_eq!(o.warnings.len(), 2, "{:?}", o.warnings);
    assert!(
        o.warnings[0].contains("v1 Endpoints billing/legacy-db"),
        "{}",
        o.warnings[0]
    );
    // The Service of the right kind that does not deserialize: named, with serde's reason.
    assert!(
        o.warnings[1].contains("v1 Service billing/garbled"),
        "{}",
        o.warnings[1]
    );
    assert!(o.warnings[1].contains("invalid type"), "{}", o.warnings[1]);
}

#[test]
fn json_list() {
    let o = load_file(&data("cluster.json")).unwrap();
    let (services, slices) = names(&o);
    assert_eq!(services, ["json/api"]);
    assert_eq!(slices, ["json/api-4kq9z"]);
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
}

#[test]
fn json_and_yaml_mixed_in_one_stream() {
    let json = std::fs::read_to_string(data("cluster.json")).unwrap();
    let yaml = std::fs::read_to_string(data("multidoc.yaml")).unwrap();
    let o = parse_str(&format!("{json}\n---\n{yaml}"), Path::new("mixed")).unwrap();
    let (services, slices) = names(&o);
    assert_eq!(
        services,
        [
            "json/api",
            "billing/legacy-db",
            "billing/syslog",
            "billing/broken"
        ]
    );
    assert_eq!(slices.len(), 3);
    assert_eq!(o.warnings.len(), 2, "{:?}", o.warnings);
    assert!(o.warnings.iter().all(|w| w.starts_with("mixed: ")));
}

#[test]
fn not_yaml_is_a_parse_error() {
    for name in ["not_yaml.txt", "broken.yaml"] {
        match load_file(&data(name)) {
            Err(Error::Parse { path, message }) => {
                assert_eq!(path, data(name));
                assert!(!message.is_empty() && message.len() < 200, "{message}");
            }
            other => panic!("{name}: expected Error::Parse, got {other:?}"),
        }
    }
}

#[test]
fn binary_file_is_a_parse_error() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("model_objects_binary.pcap");
    // A pcap header: what a mixed-up command line would hand us.
    std::fs::write(
        &path,
        [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0xff, 0xff],
    )
    .unwrap();
    let got = load_file(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(got, Err(Error::Parse { .. })), "{got:?}");
}

#[test]
fn missing_file_is_a_read_error() {
    let path = data("no-such-file.yaml");
    match load_file(&path) {
        Err(Error::Read { path: p, source }) => {
            assert_eq!(p, path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Error::Read, got {other:?}"),
    }
}

#[test]
fn empty_file_is_empty() {
    let o = parse_str("# nothing here yet\n", Path::new("empty.yaml")).unwrap();
    assert!(o.services.is_empty() && o.slices.is_empty() && o.warnings.is_empty());
}
