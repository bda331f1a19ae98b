//! Service and EndpointSlice objects as `kubectl get svc,endpointslices -A
//! -o yaml` prints them, from a small description of each service.
//!
//! Objects are built as a tree of sorted maps (kubectl sorts keys too) and
//! handed to serde_yaml, so the text is the same on every run and no feature
//! of another crate (serde_json's `preserve_order`) can reorder it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::rng::Rng;

/// A YAML value with deterministic (sorted) maps.
#[derive(Clone, Debug, PartialEq)]
pub enum Y {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Y>),
    Map(BTreeMap<String, Y>),
}

impl Serialize for Y {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Y::Null => s.serialize_unit(),
            Y::Bool(b) => s.serialize_bool(*b),
            Y::Int(i) => s.serialize_i64(*i),
            Y::Str(v) => s.serialize_str(v),
            Y::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Y::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

fn s(v: impl Into<String>) -> Y {
    Y::Str(v.into())
}

fn map<const N: usize>(entries: [(&str, Y); N]) -> Y {
    Y::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Proto {
    Tcp,
    Udp,
    Sctp,
}

impl L4Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            L4Proto::Tcp => "TCP",
            L4Proto::Udp => "UDP",
            L4Proto::Sctp => "SCTP",
        }
    }
}

/// One Service port.
#[derive(Clone, Debug)]
pub struct PortDef {
    /// Empty for the single unnamed port a Service may have.
    pub name: String,
    pub port: u16,
    pub proto: L4Proto,
    /// The number endpoints listen on (what the EndpointSlice port carries).
    pub target: u16,
    /// Set when the Service names its targetPort (a container port name)
    /// instead of giving the number.
    pub target_name: Option<String>,
}

/// Condition of an endpoint as the EndpointSlice controller reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpState {
    Ready,
    /// Pod shutting down but still answering (ready false, serving true).
    ServingTerminating,
}

#[derive(Clone, Debug)]
pub struct EndpointDef {
    pub addr: IpAddr,
    pub state: EpState,
    pub node: String,
    pub pod: String,
}

#[derive(Clone, Debug)]
pub struct ServiceDef {
    pub namespace: String,
    pub name: String,
    /// `clusterIPs`; the first is also `clusterIP`.
    pub cluster_ips: Vec<IpAddr>,
    pub ports: Vec<PortDef>,
    /// Every endpoint serves every port; one slice per address family.
    pub endpoints: Vec<EndpointDef>,
    /// `sessionAffinity: ClientIP` with this timeout (seconds) when set.
    pub affinity_timeout: Option<u32>,
}

/// The whole `v1 List` document for `services`, slices after services as
/// kubectl prints `svc,endpointslices`.
pub fn services_yaml(services: &[ServiceDef], seed: u64) -> String {
    let mut ids = Ids(Rng::new(seed), 1000);
    let mut items: Vec<Y> = Vec::new();
    let mut svc_uids = Vec::new();
    for svc in services {
        let uid = ids.uid();
        items.push(service(svc, &uid, &mut ids));
        svc_uids.push(uid);
    }
    for (svc, uid) in services.iter().zip(&svc_uids) {
        for v6 in [false, true] {
            let has_family = svc.cluster_ips.iter().any(|ip| ip.is_ipv6() == v6);
            if has_family {
                items.push(slice(svc, uid, v6, &mut ids));
            }
        }
    }
    let list = map([
        ("apiVersion", s("v1")),
        ("items", Y::List(items)),
        ("kind", s("List")),
        ("metadata", map([("resourceVersion", s(""))])),
    ]);
    serde_yaml::to_string(&list).expect("a tree of strings and maps always serialises")
}

/// Deterministic uids, resource versions and name suffixes.
struct Ids(Rng, u64);

impl Ids {
    fn uid(&mut self) -> String {
        let a = self.0.next_u64();
        let b = self.0.next_u64();
        // Shaped like a version-4 UUID, as the API server hands them out.
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    fn version(&mut self) -> String {
        self.1 += self.0.range(1, 400);
        self.1.to_string()
    }

    /// The 5-character suffix of a generated name (`generateName`).
    fn suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..5).map(|_| char::from(*self.0.pick(ALPHABET))).collect()
    }
}

const CREATED: &str = "2025-03-04T09:15:27Z";

fn service(svc: &ServiceDef, uid: &str, ids: &mut Ids) -> Y {
    let families: Vec<Y> = svc
        .cluster_ips
        .iter()
        .map(|ip| s(if ip.is_ipv6() { "IPv6" } else { "IPv4" }))
        .collect();
    let policy = if families.len() > 1 {
        "PreferDualStack"
    } else {
        "SingleStack"
    };
    let ports = svc
        .ports
        .iter()
        .map(|p| {
            let target = match &p.target_name {
                Some(name) => s(name.clone()),
                None => Y::Int(i64::from(p.target)),
            };
            let mut m = map([
                ("port", Y::Int(i64::from(p.port))),
                ("protocol", s(p.proto.as_str())),
                ("targetPort", target),
            ]);
            if !p.name.is_empty() {
                if let Y::Map(m) = &mut m {
                    m.insert("name".into(), s(p.name.clone()));
                }
            }
            m
        })
        .collect();
    let mut spec = map([
        ("clusterIP", s(svc.cluster_ips[0].to_string())),
        (
            "clusterIPs",
            Y::List(svc.cluster_ips.iter().map(|ip| s(ip.to_string())).collect()),
        ),
        ("internalTrafficPolicy", s("Cluster")),
        ("ipFamilies", Y::List(families)),
        ("ipFamilyPolicy", s(policy)),
        ("ports", Y::List(ports)),
        ("selector", map([("app", s(svc.name.clone()))])),
        ("sessionAffinity", s("None")),
        ("type", s("ClusterIP")),
    ]);
    if let (Some(timeout), Y::Map(m)) = (svc.affinity_timeout, &mut spec) {
        m.insert("sessionAffinity".into(), s("ClientIP"));
        m.insert(
            "sessionAffinityConfig".into(),
            map([(
                "clientIP",
                map([("timeoutSeconds", Y::Int(i64::from(timeout)))]),
            )]),
        );
    }
    map([
        ("apiVersion", s("v1")),
        ("kind", s("Service")),
        (
            "metadata",
            map([
                ("creationTimestamp", s(CREATED)),
                ("labels", map([("app", s(svc.name.clone()))])),
                ("name", s(svc.name.clone())),
                ("namespace", s(svc.namespace.clone())),
                ("resourceVersion", s(ids.version())),
                ("uid", s(uid)),
            ]),
        ),
        ("spec", spec),
        ("status", map([("loadBalancer", map([]))])),
    ])
}

fn slice(svc: &ServiceDef, svc_uid: &str, v6: bool, ids: &mut Ids) -> Y {
    let endpoints: Vec<Y> = svc
        .endpoints
        .iter()
        .filter(|e| e.addr.is_ipv6() == v6)
        .map(|e| {
            let (ready, terminating) = match e.state {
                EpState::Ready => (true, false),
                EpState::ServingTerminating => (false, true),
            };
            map([
                ("addresses", Y::List(vec![s(e.addr.to_string())])),
                (
                    "conditions",
                    map([
                        ("ready", Y::Bool(ready)),
                        ("serving", Y::Bool(true)),
                        ("terminating", Y::Bool(terminating)),
                    ]),
                ),
                ("nodeName", s(e.node.clone())),
                (
                    "targetRef",
                    map([
                        ("kind", s("Pod")),
                        ("name", s(e.pod.clone())),
                        ("namespace", s(svc.namespace.clone())),
                        ("uid", s(ids.uid())),
                    ]),
                ),
            ])
        })
        .collect();
    let ports = svc
        .ports
        .iter()
        .map(|p| {
            map([
                ("name", s(p.name.clone())),
                ("port", Y::Int(i64::from(p.target))),
                ("protocol", s(p.proto.as_str())),
            ])
        })
        .collect();
    map([
        ("addressType", s(if v6 { "IPv6" } else { "IPv4" })),
        ("apiVersion", s("discovery.k8s.io/v1")),
        // The API server prints an empty slice's endpoints as null.
        (
            "endpoints",
            if endpoints.is_empty() {
                Y::Null
            } else {
                Y::List(endpoints)
            },
        ),
        ("kind", s("EndpointSlice")),
        (
            "metadata",
            map([
                ("creationTimestamp", s(CREATED)),
                ("generateName", s(format!("{}-", svc.name))),
                ("generation", Y::Int(1)),
                (
                    "labels",
                    map([
                        ("app", s(svc.name.clone())),
                        (
                            "endpointslice.kubernetes.io/managed-by",
                            s("endpointslice-controller.k8s.io"),
                        ),
                        ("kubernetes.io/service-name", s(svc.name.clone())),
                    ]),
                ),
                ("name", s(format!("{}-{}", svc.name, ids.suffix()))),
                ("namespace", s(svc.namespace.clone())),
                (
                    "ownerReferences",
                    Y::List(vec![map([
                        ("apiVersion", s("v1")),
                        ("blockOwnerDeletion", Y::Bool(true)),
                        ("controller", Y::Bool(true)),
                        ("kind", s("Service")),
                        ("name", s(svc.name.clone())),
                        ("uid", s(svc_uid)),
                    ])]),
                ),
                ("resourceVersion", s(ids.version())),
                ("uid", s(ids.uid())),
            ]),
        ),
        ("ports", Y::List(ports)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> ServiceDef {
        ServiceDef {
            namespace: "shop".into(),
            name: "web".into(),
            cluster_ips: vec![
                "198.19.0.10".parse().unwrap(),
                "fd00:19::10".parse().unwrap(),
            ],
            ports: vec![PortDef {
                name: "http".into(),
                port: 80,
                proto: L4Proto::Tcp,
                target: 8080,
                target_name: Some("web".into()),
            }],
            endpoints: vec![
                EndpointDef {
                    addr: "198.18.1.10".parse().unwrap(),
                    state: EpState::Ready,
                    node: "node-a".into(),
                    pod: "web-0".into(),
                },
                EndpointDef {
                    addr: "fd00:18:1::10".parse().unwrap(),
                    state: EpState::ServingTerminating,
                    node: "node-a".into(),
                    pod: "web-0".into(),
                },
            ],
            affinity_timeout: None,
        }
    }

    #[test]
    fn same_input_same_text() {
        assert_eq!(services_yaml(&[web()], 1), services_yaml(&[web()], 1));
        assert_ne!(services_yaml(&[web()], 1), services_yaml(&[web()], 2));
    }

    #[test]
    fn text_carries_the_fields_kubectl_prints() {
        let text = services_yaml(&[web()], 1);
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(doc["kind"], "List");
        let items = doc["items"].as_sequence().unwrap();
        // One Service, one slice per family.
        assert_eq!(items.len(), 3);
        assert_eq!(items[0]["spec"]["ports"][0]["targetPort"], "web");
        assert_eq!(items[0]["spec"]["clusterIPs"][1], "fd00:19::10");
        assert_eq!(items[0]["spec"]["ipFamilyPolicy"], "PreferDualStack");
        let v4 = &items[1];
        assert_eq!(v4["addressType"], "IPv4");
        assert_eq!(v4["ports"][0]["port"], 8080);
        assert_eq!(v4["ports"][0]["name"], "http");
        assert_eq!(v4["endpoints"].as_sequence().unwrap().len(), 1);
        assert_eq!(
            v4["metadata"]["labels"]["kubernetes.io/service-name"],
            "web"
        );
        let v6 = &items[2];
        assert_eq!(v6["endpoints"][0]["conditions"]["terminating"], true);
        assert_eq!(v6["endpoints"][0]["conditions"]["ready"], false);
        assert_eq!(
            v6["metadata"]["ownerReferences"][0]["uid"],
            items[0]["metadata"]["uid"]
        );
    }

    #[test]
    fn client_ip_affinity_is_written_with_its_timeout() {
        let mut svc = web();
        svc.affinity_timeout = Some(600);
        let text = services_yaml(&[svc], 1);
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let spec = &doc["items"][0]["spec"];
        assert_eq!(spec["sessionAffinity"], "ClientIP");
        assert_eq!(
            spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            600
        );
        let plain: serde_yaml::Value = serde_yaml::from_str(&services_yaml(&[web()], 1)).unwrap();
        assert_eq!(plain["items"][0]["spec"]["sessionAffinity"], "None");
        assert!(plain["items"][0]["spec"]
            .get("sessionAffinityConfig")
            .is_none());
    }

    #[test]
    fn numeric_looking_strings_stay_strings() {
        let text = services_yaml(&[web()], 1);
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert!(doc["items"][0]["metadata"]["resourceVersion"].is_string());
        assert_eq!(doc["metadata"]["resourceVersion"], "");
    }
}
