//! deploy/*.yaml parsed into the real Kubernetes types: least-privilege
//! RBAC, an unprivileged DaemonSet with only the capabilities AF_XDP and
//! AF_PACKET need, and flags, probes and ConfigMap that agree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use control::admin::DEFAULT_ADMIN_ADDR;
use dataplane::hash::DEFAULT_SEED;
use dataplane::maglev::DEFAULT_MAX_TABLE_SIZE;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const NAMESPACE: &str = "vipgate-system";
const CAPABILITIES: [&str; 4] = ["BPF", "IPC_LOCK", "NET_ADMIN", "NET_RAW"];

struct Manifests {
    namespace: Namespace,
    service_account: ServiceAccount,
    role: ClusterRole,
    binding: ClusterRoleBinding,
    config: ConfigMap,
    daemonset: DaemonSet,
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every YAML document of every deploy/*.yaml, with its file name.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/");
    let mut docs = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !v.is_null() {
                docs.push((name.clone(), v));
            }
        }
    }
    docs
}

/// Parses into `T` and back: k8s-openapi skips unknown fields, so a typo
/// (`hostNetwrok: true`) would otherwise pass silently. Any field that does
/// not survive the round trip is one Kubernetes would not see either.
fn typed<T: DeserializeOwned + Serialize>(file: &str, v: &Value) -> T {
    let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(
        &back, v,
        "{file}: fields lost in a round trip through the Kubernetes type"
    );
    t
}

fn load() -> Manifests {
    let mut namespace = None;
    let mut service_account = None;
    let mut role = None;
    let mut binding = None;
    let mut config = None;
    let mut daemonset = None;
    fn once<T>(slot: &mut Option<T>, file: &str, value: T) {
        assert!(slot.is_none(), "{file}: a second object of the same kind");
        *slot = Some(value);
    }
    for (file, v) in documents() {
        let kind = v["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: document without kind"));
        match kind {
            "Namespace" => once(&mut namespace, &file, typed(&file, &v)),
            "ServiceAccount" => once(&mut service_account, &file, typed(&file, &v)),
            "ClusterRole" => once(&mut role, &file, typed(&file, &v)),
            "ClusterRoleBinding" => once(&mut binding, &file, typed(&file, &v)),
            "ConfigMap" => once(&mut config, &file, typed(&file, &v)),
            "DaemonSet" => once(&mut daemonset, &file, typed(&file, &v)),
            other => panic!("{file}: unexpected kind {other}"),
        }
    }
    Manifests {
        namespace: namespace.expect("a Namespace"),
        service_account: service_account.expect("a ServiceAccount"),
        role: role.expect("a ClusterRole"),
        binding: binding.expect("a ClusterRoleBinding"),
        config: config.expect("a ConfigMap"),
        daemonset: daemonset.expect("a DaemonSet"),
    }
}

fn pod(m: &Manifests) -> &PodSpec {
    m.daemonset.spec.template.spec.as_ref().expect("pod spec")
}

fn vipgate_container(m: &Manifests) -> &Container {
    let p = pod(m);
    assert_eq!(p.containers.len(), 1, "one container");
    &p.containers[0]
}

fn config_data(m: &Manifests) -> &BTreeMap<String, String> {
    m.config.data.as_ref().expect("ConfigMap data")
}

#[test]
fn namespaced_objects_live_in_vipgate_system() {
    let m = load();
    assert_eq!(m.namespace.metadata.name.as_deref(), Some(NAMESPACE));
    for (what, ns) in [
        ("ServiceAccount", &m.service_account.metadata.namespace),
        ("ConfigMap", &m.config.metadata.namespace),
        ("DaemonSet", &m.daemonset.metadata.namespace),
    ] {
        assert_eq!(ns.as_deref(), Some(NAMESPACE), "{what}");
    }
}

#[test]
fn rbac_is_get_list_watch_on_services_and_endpointslices_and_get_on_nodes_only() {
    let m = load();
    let rules = m.role.rules.as_ref().expect("rules");
    let mut grants = BTreeSet::new();
    for r in rules {
        assert!(r.resource_names.is_none(), "no per-name rules expected");
        assert!(r.non_resource_urls.is_none(), "no non-resource URLs");
        for group in r.api_groups.as_deref().unwrap_or_default() {
            for res in r.resources.as_deref().unwrap_or_default() {
                for verb in &r.verbs {
                    grants.insert((group.as_str(), res.as_str(), verb.as_str()));
                }
            }
        }
    }
    let mut expected: BTreeSet<(&str, &str, &str)> = ["get", "list", "watch"]
        .into_iter()
        .flat_map(|v| {
            [
                ("", "services", v),
                ("discovery.k8s.io", "endpointslices", v),
            ]
        })
        .collect();
    // Its own Node's zone label, read once (topology hints).
    expected.insert(("", "nodes", "get"));
    assert_eq!(grants, expected);
    assert!(
        m.role.aggregation_rule.is_none(),
        "aggregation would pull in other roles' rules"
    );

    // The binding gives exactly that role to exactly the DaemonSet's account.
    let role_name = m.role.metadata.name.as_deref().unwrap();
    assert_eq!(m.binding.role_ref.kind, "ClusterRole");
    assert_eq!(m.binding.role_ref.name, role_name);
    let subjects = m.binding.subjects.as_ref().expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(
        Some(&subjects[0].name),
        m.service_account.metadata.name.as_ref()
    );
    assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(
        pod(&m).service_account_name,
        m.service_account.metadata.name
    );
}

#[test]
fn daemonset_uses_host_network_unprivileged_with_only_the_listed_capabilities() {
    let m = load();
    let p = pod(&m);
    assert_eq!(p.host_network, Some(true));
    assert_eq!(p.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    assert_ne!(p.host_pid, Some(true));
    assert_ne!(p.host_ipc, Some(true));
    assert!(
        p.init_containers.is_none(),
        "init containers would need their own review"
    );
    let host_paths = p
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.host_path.is_some())
        .count();
    assert_eq!(host_paths, 0, "no host paths");

    let c = vipgate_container(&m);
    let sc = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(sc.privileged, Some(false), "explicitly not privileged");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let added: BTreeSet<&str> = caps.add.iter().flatten().map(String::as_str).collect();
    assert_eq!(added, CAPABILITIES.into_iter().collect::<BTreeSet<_>>());
    assert_eq!(
        caps.add.as_ref().unwrap().len(),
        CAPABILITIES.len(),
        "no duplicates"
    );

    // Runs on every node, tainted ones included.
    let tolerations = p.tolerations.as_ref().expect("tolerations");
    assert!(
        tolerations
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists")
                && t.key.is_none()
                && t.effect.is_none()),
        "a blanket toleration"
    );
    assert!(c
        .image
        .as_deref()
        .is_some_and(|i| i.starts_with("vipgate:")));
    assert!(c
        .resources
        .as_ref()
        .is_some_and(|r| r.requests.is_some() && r.limits.is_some()));
}

#[test]
fn probes_hit_the_loopback_admin_port_the_configmap_sets() {
    let m = load();
    let c = vipgate_container(&m);
    let admin_addr = &config_data(&m)["VIPGATE_ADMIN_ADDR"];
    assert_eq!(admin_addr, DEFAULT_ADMIN_ADDR);
    let admin_port: i32 = admin_addr.rsplit_once(':').unwrap().1.parse().unwrap();

    let ports = c.ports.as_ref().expect("ports");
    let named = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("admin"))
        .expect("a port named admin");
    assert_eq!(named.container_port, admin_port);

    for (probe, path) in [
        (&c.readiness_probe, "/readyz"),
        (&c.liveness_probe, "/healthz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("httpGet probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.host.as_deref(),
            Some("127.0.0.1"),
            "{path}: admin listens on loopback"
        );
        let port = match &get.port {
            IntOrString::Int(n) => *n,
            IntOrString::String(name) => {
                ports
                    .iter()
                    .find(|p| p.name.as_ref() == Some(name))
                    .expect("named port")
                    .container_port
            }
        };
        assert_eq!(port, admin_port, "{path}");
    }
}

#[test]
fn args_come_from_the_configmap_and_the_node_name() {
    let m = load();
    let c = vipgate_container(&m);
    let data = config_data(&m);
    let args = c.args.as_ref().expect("args");
    assert_eq!(args[0], "run");
    assert!(
        !args.iter().any(|a| a.contains("kubeconfig")),
        "in-cluster config, no kubeconfig"
    );

    let env = c.env.as_ref().expect("env");
    let mut defined = BTreeSet::new();
    for e in env {
        defined.insert(e.name.as_str());
        let from = e.value_from.as_ref();
        if e.name == "NODE_NAME" {
            let field = from
                .and_then(|f| f.field_ref.as_ref())
                .expect("NODE_NAME from a fieldRef");
            assert_eq!(field.field_path, "spec.nodeName");
        } else if let Some(key) = from.and_then(|f| f.config_map_key_ref.as_ref()) {
            assert_eq!(Some(&key.name), m.config.metadata.name.as_ref());
            assert!(data.contains_key(&key.key), "ConfigMap lacks {}", key.key);
            assert_ne!(
                key.optional,
                Some(true),
                "a missing option must fail loudly"
            );
        }
    }
    assert!(args.contains(&"--node-name=$(NODE_NAME)".to_string()));

    // Every $(VAR) is defined, or the kubelet passes it through literally.
    for arg in args {
        let mut rest = arg.as_str();
        while let Some(start) = rest.find("$(") {
            let end = rest[start..].find(')').expect("closed $(") + start;
            let var = &rest[start + 2..end];
            assert!(defined.contains(var), "{arg}: {var} is not in env");
            rest = &rest[end + 1..];
        }
    }
    // Every option is passed.
    for key in data.keys() {
        assert!(
            args.iter().any(|a| a.contains(&format!("$({key})"))),
            "{key} is not passed"
        );
    }
    // Gateways must agree on Maglev tables with each other and with the
    // CLI's defaults (replay, offline tests).
    assert_eq!(
        data["VIPGATE_MAX_TABLE_SIZE"].parse::<u32>().unwrap(),
        DEFAULT_MAX_TABLE_SIZE
    );
    assert_eq!(data["VIPGATE_SEED"].parse::<u64>().unwrap(), DEFAULT_SEED);
}
