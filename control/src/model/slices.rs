//! EndpointSlices, validated once and grouped by the Service they belong to,
//! then queried per (Service port, address family, node).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use dataplane::addr::{Addr, Proto};
use dataplane::service::{BackendSpec, BackendState};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointSlice};

use super::service::{namespace_of, sort_key};

/// The label that ties a slice to its Service (also on hand-made slices).
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Every Kubernetes endpoint weighs the same; weights exist for other sources.
const ENDPOINT_WEIGHT: u32 = 1;

struct SlicePort {
    /// Empty for an unnamed port, like `Port::name`.
    name: String,
    /// `None` for protocols vipgate does not balance: they never match.
    proto: Option<Proto>,
    number: u16,
}

struct Endpoint {
    addr: Addr,
    state: BackendState,
    node: Option<String>,
    /// `hints.forZones`: the zones whose nodes should send this endpoint
    /// traffic (written by the EndpointSlice controller for
    /// `trafficDistribution: PreferClose` / `PreferSameZone`, or by
    /// topology-aware routing).
    zone_hints: Vec<String>,
    /// `hints.forNodes` (`trafficDistribution: PreferSameNode`).
    node_hints: Vec<String>,
}

struct Slice {
    name: String,
    v4: bool,
    ports: Vec<SlicePort>,
    endpoints: Vec<Endpoint>,
}

/// Which backends to collect: one Service port, one family, maybe one node.
pub(super) struct BackendQuery<'a> {
    pub namespace: &'a str,
    pub service: &'a str,
    pub port_name: &'a str,
    pub proto: Proto,
    pub v4: bool,
    /// `Some(node)`: only endpoints on that node (a `Local` traffic policy).
    pub local_node: Option<&'a str>,
    /// Where this gateway is, for topology hints; ignored with `local_node`
    /// (kube-proxy applies topology to Cluster-policy endpoints only).
    pub topology: Topology<'a>,
}

/// This node's name and zone, as topology hints name them.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Topology<'a> {
    pub node: Option<&'a str>,
    pub zone: Option<&'a str>,
}

/// Which hints decide the endpoints that take new flows here.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TopologyMode<'a> {
    /// No hints apply: every ready endpoint.
    All,
    /// Ready endpoints hinted for this node (`forNodes`).
    SameNode(&'a str),
    /// Ready endpoints hinted for this zone (`forZones`).
    SameZone(&'a str),
}

impl<'a> Topology<'a> {
    /// kube-proxy's `topologyModeFromHints` (pkg/proxy/topology.go,
    /// Kubernetes 1.33+): only Ready endpoints are looked at. If every one
    /// has a node hint and one is hinted for this node: same node
    /// (kube-proxy checks this behind its PreferSameTrafficDistribution
    /// feature gate; vipgate always does: node hints exist only where the
    /// controller has that feature). Else, if every one has a zone hint
    /// and one is hinted for this node's zone: same zone. Else all
    /// endpoints. kube-proxy does not read
    /// `trafficDistribution` itself: the EndpointSlice controller turns
    /// PreferClose / PreferSameZone / PreferSameNode into these hints, so a
    /// Service whose slices carry none is balanced over every endpoint.
    fn mode<'e>(self, ready: impl Iterator<Item = &'e Endpoint> + Clone) -> TopologyMode<'a> {
        let ready_hinted_for = |hints: fn(&Endpoint) -> &[String], mine: &str| {
            let mut any = false;
            for e in ready.clone() {
                let h = hints(e);
                if h.is_empty() {
                    return false;
                }
                any |= h.iter().any(|x| x == mine);
            }
            any
        };
        if let Some(node) = self
            .node
            .filter(|n| ready_hinted_for(Endpoint::node_hints, n))
        {
            return TopologyMode::SameNode(node);
        }
        if let Some(zone) = self
            .zone
            .filter(|z| ready_hinted_for(Endpoint::zone_hints, z))
        {
            return TopologyMode::SameZone(zone);
        }
        TopologyMode::All
    }
}

impl Endpoint {
    fn zone_hints(&self) -> &[String] {
        &self.zone_hints
    }

    fn node_hints(&self) -> &[String] {
        &self.node_hints
    }
}

impl TopologyMode<'_> {
    /// kube-proxy's `availableForTopology`: no fallback here, the fallback
    /// is in choosing the mode.
    fn admits(self, ep: &Endpoint) -> bool {
        match self {
            TopologyMode::All => true,
            TopologyMode::SameNode(n) => ep.node_hints.iter().any(|h| h == n),
            TopologyMode::SameZone(z) => ep.zone_hints.iter().any(|h| h == z),
        }
    }
}

/// Usable slices keyed by (namespace, Service name).
pub(super) struct SliceIndex {
    by_service: BTreeMap<(String, String), Vec<Slice>>,
}

impl SliceIndex {
    /// Validates every slice once, so each problem is reported once rather
    /// than once per Service port and VIP that reads the slice.
    pub fn new(slices: &[EndpointSlice], warnings: &mut Vec<String>) -> Self {
        let mut by_service: BTreeMap<(String, String), Vec<Slice>> = BTreeMap::new();
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        for es in slices {
            let namespace = namespace_of(es.metadata.namespace.as_deref());
            let Some(name) = es.metadata.name.clone().filter(|n| !n.is_empty()) else {
                warnings.push(format!(
                    "EndpointSlice in {namespace} without metadata.name; skipped"
                ));
                continue;
            };
            let id = format!("{namespace}/{name}");
            if !seen.insert((namespace.clone(), name.clone())) {
                warnings.push(format!(
                    "EndpointSlice {id}: appears twice in the input; keeping the first"
                ));
                continue;
            }
            let service = es
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .filter(|s| !s.is_empty());
            let Some(service) = service else {
                warnings.push(format!(
                    "EndpointSlice {id}: no {SERVICE_NAME_LABEL} label, so no Service uses it; skipped"
                ));
                continue;
            };
            let v4 = match es.address_type.as_str() {
                "IPv4" => true,
                "IPv6" => false,
                // Names are for DNS; kube-proxy ignores FQDN slices too.
                "FQDN" => continue,
                other => {
                    warnings.push(format!(
                        "EndpointSlice {id}: unknown addressType {other:?}; skipped"
                    ));
                    continue;
                }
            };
            let slice = Slice {
                ports: slice_ports(&id, es, warnings),
                endpoints: slice_endpoints(&id, es, v4, warnings),
                name: name.clone(),
                v4,
            };
            by_service
                .entry((namespace, service.clone()))
                .or_default()
                .push(slice);
        }
        SliceIndex { by_service }
    }

    /// The backends of one Service port in one family, each endpoint with the
    /// port number its own slice gives (slices may disagree mid-rollout),
    /// deduplicated by (address, port), sorted.
    pub fn backends(&self, q: &BackendQuery<'_>) -> Vec<BackendSpec> {
        let key = (q.namespace.to_string(), q.service.to_string());
        // Per (address, port) the best state, and the endpoint giving it
        // (whose hints count).
        let mut best: BTreeMap<(Addr, u16), &Endpoint> = BTreeMap::new();
        for slice in self.by_service.get(&key).into_iter().flatten() {
            if slice.v4 != q.v4 {
                continue;
            }
            // kube-proxy matches by name and protocol: the slice already holds
            // the resolved targetPort number, whether it was a name or a number.
            let Some(number) = slice
                .ports
                .iter()
                .find(|p| p.name == q.port_name && p.proto == Some(q.proto))
                .map(|p| p.number)
            else {
                continue;
            };
            for ep in &slice.endpoints {
                if let Some(node) = q.local_node {
                    if ep.node.as_deref() != Some(node) {
                        continue;
                    }
                }
                // The enum orders Ready < ServingTerminating < NotServing: min is best.
                best.entry((ep.addr, number))
                    .and_modify(|e| {
                        if ep.state < e.state {
                            *e = ep;
                        }
                    })
                    .or_insert(ep);
            }
        }
        let mode = match q.local_node {
            // `Local` wins over topology, as in kube-proxy's CategorizeEndpoints.
            Some(_) => TopologyMode::All,
            None => q.topology.mode(
                best.values()
                    .copied()
                    .filter(|e| e.state == BackendState::Ready),
            ),
        };
        // Ready endpoints outside the topology take no new flows here; the
        // others stay, as the dataplane falls back to serving-terminating
        // ones only when no endpoint at all is ready (a topology mode is
        // chosen only with a ready endpoint for this node or zone).
        best.into_iter()
            .filter(|(_, e)| e.state != BackendState::Ready || mode.admits(e))
            .map(|((addr, port), e)| BackendSpec {
                addr,
                port,
                weight: ENDPOINT_WEIGHT,
                state: e.state,
            })
            .collect()
    }

    /// kube-proxy's `LocalReadyEndpoints` for a health check: the distinct
    /// addresses of this Service's ready endpoints on `node`, over every
    /// port and family (10.0.0.1:80 and 10.0.0.1:443 count once), counting
    /// slices with a port of the Service only.
    pub fn local_ready_addrs(
        &self,
        namespace: &str,
        service: &str,
        ports: &[(String, Proto)],
        node: &str,
    ) -> usize {
        let key = (namespace.to_string(), service.to_string());
        let mut addrs: BTreeSet<Addr> = BTreeSet::new();
        for slice in self.by_service.get(&key).into_iter().flatten() {
            let serves = slice.ports.iter().any(|p| {
                ports
                    .iter()
                    .any(|(n, pr)| *n == p.name && Some(*pr) == p.proto)
            });
            if !serves {
                continue;
            }
            addrs.extend(
                slice
                    .endpoints
                    .iter()
                    .filter(|e| e.state == BackendState::Ready && e.node.as_deref() == Some(node))
                    .map(|e| e.addr),
            );
        }
        addrs.len()
    }

    /// Warns about slices that name a Service missing from the input: usually
    /// a typo in a hand-made slice's label, or a partial dump.
    pub fn warn_orphans(&self, services: &[Service], warnings: &mut Vec<String>) {
        let known: BTreeSet<(String, String)> = services.iter().map(sort_key).collect();
        for ((namespace, service), slices) in &self.by_service {
            if known.contains(&(namespace.clone(), service.clone())) {
                continue;
            }
            for slice in slices {
                warnings.push(format!(
                    "EndpointSlice {namespace}/{}: its Service {namespace}/{service} is not in the input; unused",
                    slice.name
                ));
            }
        }
    }
}

fn slice_ports(id: &str, es: &EndpointSlice, warnings: &mut Vec<String>) -> Vec<SlicePort> {
    let ports = es.ports.as_deref().unwrap_or_default();
    let has_endpoints = es.endpoints.as_ref().is_some_and(|e| !e.is_empty());
    if ports.is_empty() && has_endpoints {
        warnings.push(format!(
            "EndpointSlice {id}: no ports, so its endpoints serve no Service port"
        ));
    }
    let mut out = Vec::with_capacity(ports.len());
    for p in ports {
        let name = p.name.clone().unwrap_or_default();
        let shown = if name.is_empty() { "(unnamed)" } else { &name };
        let proto = match p.protocol.as_deref() {
            None | Some("TCP") => Some(Proto::Tcp),
            Some("UDP") => Some(Proto::Udp),
            Some("SCTP") => Some(Proto::Sctp),
            // Others: the Service port was already reported.
            Some(_) => None,
        };
        let number = match p.port.map(u16::try_from) {
            Some(Ok(n)) if n != 0 => n,
            Some(_) => {
                warnings.push(format!(
                    "EndpointSlice {id}: port {shown} has number {} outside 1..=65535; skipped",
                    p.port.unwrap_or_default()
                ));
                continue;
            }
            None => {
                warnings.push(format!(
                    "EndpointSlice {id}: port {shown} has no number; skipped"
                ));
                continue;
            }
        };
        out.push(SlicePort {
            name,
            proto,
            number,
        });
    }
    out
}

fn slice_endpoints(
    id: &str,
    es: &EndpointSlice,
    v4: bool,
    warnings: &mut Vec<String>,
) -> Vec<Endpoint> {
    let endpoints = es.endpoints.as_deref().unwrap_or_default();
    let mut out = Vec::with_capacity(endpoints.len());
    for ep in endpoints {
        // The API allows exactly one address and tells consumers to use the first.
        let Some(text) = ep.addresses.first() else {
            warnings.push(format!(
                "EndpointSlice {id}: an endpoint has no address; skipped"
            ));
            continue;
        };
        let Ok(ip) = text.trim().parse::<IpAddr>() else {
            warnings.push(format!(
                "EndpointSlice {id}: endpoint address {text:?} is not an IP address; skipped"
            ));
            continue;
        };
        let addr = Addr::from(ip);
        if addr.is_v4() != v4 {
            warnings.push(format!(
                "EndpointSlice {id}: endpoint address {text} does not match addressType {}; skipped",
                es.address_type
            ));
            continue;
        }
        let hints = ep.hints.as_ref();
        out.push(Endpoint {
            addr,
            state: state_of(ep.conditions.as_ref()),
            node: ep.node_name.clone(),
            zone_hints: hints
                .and_then(|h| h.for_zones.as_ref())
                .map(|z| z.iter().map(|z| z.name.clone()).collect())
                .unwrap_or_default(),
            node_hints: hints
                .and_then(|h| h.for_nodes.as_ref())
                .map(|n| n.iter().map(|n| n.name.clone()).collect())
                .unwrap_or_default(),
        });
    }
    out
}

/// kube-proxy's reading of endpoint conditions: `ready` unset means ready,
/// `serving` unset means the same as `ready`, `terminating` unset means false.
pub(super) fn state_of(c: Option<&EndpointConditions>) -> BackendState {
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    if ready {
        return BackendState::Ready;
    }
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    if serving && terminating {
        BackendState::ServingTerminating
    } else {
        BackendState::NotServing
    }
}
