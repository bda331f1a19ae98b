//! The pure function from Kubernetes objects to the dataplane's desired
//! services, following kube-proxy's reading of the same objects.
//!
//! One `ServiceSpec` per (VIP, Service port): VIPs are the ClusterIPs
//! (dual-stack), `externalIPs` and load-balancer ingress IPs; backends come
//! from the EndpointSlices of the Service whose address family matches the
//! VIP, with each slice resolving the port number by port name. Bad objects
//! are skipped with a warning naming them; nothing here panics on input.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use dataplane::addr::Addr;
use dataplane::service::{BackendSpec, Forwarding, NoEndpoints, ServiceKey, ServiceSpec};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Reading one Service: VIPs, ports, affinity, traffic policies.
mod service;
/// Reading EndpointSlices into per-Service backend candidates.
mod slices;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod topology_tests;

use service::{ServiceView, VipKind};
use slices::{BackendQuery, SliceIndex, Topology};

/// What the model needs to know about where it runs.
#[derive(Clone, Debug, Default)]
pub struct ModelOptions {
    /// This node's name, for `Local` traffic policies, `hints.forNodes` and
    /// health checks; `None` ignores them.
    pub node_name: Option<String>,
    /// This node's zone (`topology.kubernetes.io/zone`), for
    /// `hints.forZones`; `None` ignores zone hints, as kube-proxy does on a
    /// node without the label.
    pub zone: Option<String>,
    /// The node's addresses where `nodePort`s are served (kube-proxy's
    /// `--nodeport-addresses`); empty serves no node port.
    pub node_addresses: Vec<Addr>,
    /// How Services without a `vipgate.io/forwarding` annotation forward.
    pub forwarding: Forwarding,
}

/// kube-proxy's per-Service health check (`healthCheckNodePort`) as this
/// node answers it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HealthCheck {
    pub namespace: String,
    pub name: String,
    pub port: u16,
    /// Distinct addresses of the Service's ready endpoints on this node.
    pub local_endpoints: usize,
}

/// The desired services, sorted by key, the health checks this node
/// serves, sorted by Service, and one line per thing skipped.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub services: Vec<ServiceSpec>,
    pub health_checks: Vec<HealthCheck>,
    pub warnings: Vec<String>,
}

/// The `loadBalancerSourceRanges` a load-balancer IP enforces: all of the
/// Service's (a client matches only ranges of its own family). Ranges
/// but none of the IP's family lets no client in: said in a warning.
fn lb_source_ranges(
    view: &ServiceView,
    vip: &service::Vip,
    warnings: &mut Vec<String>,
) -> Vec<dataplane::service::SourceRange> {
    let r = &view.source_ranges;
    if !r.is_empty() && !r.iter().any(|x| x.net.is_v4() == vip.addr.is_v4()) {
        warnings.push(format!(
            "Service {}: no loadBalancerSourceRanges entry of {}'s address family; \
             no client can reach it",
            view.id(),
            vip.addr
        ));
    }
    r.clone()
}

/// Where a port's `nodePort` is served: every node address of an address
/// family the Service has a ClusterIP of (kube-proxy serves a single-stack
/// IPv4 Service's node port on the node's IPv4 addresses only).
fn node_port_vips<'a>(
    view: &'a ServiceView,
    port: &service::Port,
    opts: &'a ModelOptions,
) -> impl Iterator<Item = service::Vip> + 'a {
    let served = port.node_port.is_some();
    opts.node_addresses
        .iter()
        .filter(move |a| {
            served
                && view
                    .vips
                    .iter()
                    .any(|v| v.kind == VipKind::Cluster && v.addr.is_v4() == a.is_v4())
        })
        .map(|&addr| service::Vip {
            addr,
            kind: VipKind::NodePort,
            load_balancer: false,
        })
}

/// A Service with node ports on a gateway that knows no node address (a
/// services file replayed without `--node-address`) is told so once.
fn warn_node_ports_unserved(view: &ServiceView, opts: &ModelOptions, warnings: &mut Vec<String>) {
    if !opts.node_addresses.is_empty() {
        return;
    }
    let mut ports: Vec<u16> = view.ports.iter().filter_map(|p| p.node_port).collect();
    ports.sort_unstable();
    ports.dedup();
    if !ports.is_empty() {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        warnings.push(format!(
            "Service {}: nodePort {} not served: no node address is known (set --node-address)",
            view.id(),
            list.join(", ")
        ));
    }
}

/// Builds the desired services from Services and EndpointSlices.
pub fn build(services: &[Service], slices: &[EndpointSlice], opts: &ModelOptions) -> Model {
    let mut warnings = Vec::new();
    let index = SliceIndex::new(slices, &mut warnings);
    let mut by_key: BTreeMap<ServiceKey, ServiceSpec> = BTreeMap::new();
    let mut health_checks = Vec::new();
    let topology = Topology {
        node: opts.node_name.as_deref(),
        zone: opts.zone.as_deref(),
    };

    // Name order, so that which of two clashing Services wins does not
    // depend on the order of the input (a watch delivers them in any order).
    let mut ordered: Vec<&Service> = services.iter().collect();
    ordered.sort_by_cached_key(|s| service::sort_key(s));
    let mut previous: Option<(String, String)> = None;

    for svc in ordered {
        let id = service::sort_key(svc);
        if previous.as_ref() == Some(&id) && !id.1.is_empty() {
            warnings.push(format!(
                "Service {}/{}: appears twice in the input; keeping the first",
                id.0, id.1
            ));
            continue;
        }
        previous = Some(id);
        let Some(view) = ServiceView::parse(svc, opts, &mut warnings) else {
            continue;
        };
        if let (Some(port), Some(node)) = (view.health_check_port, opts.node_name.as_deref()) {
            let ports: Vec<(String, dataplane::addr::Proto)> = view
                .ports
                .iter()
                .map(|p| (p.name.clone(), p.proto))
                .collect();
            health_checks.push(HealthCheck {
                namespace: view.namespace.clone(),
                name: view.name.clone(),
                port,
                local_endpoints: index.local_ready_addrs(&view.namespace, &view.name, &ports, node),
            });
        }

        warn_node_ports_unserved(&view, opts, &mut warnings);
        for port in &view.ports {
            for vip in view
                .vips
                .iter()
                .copied()
                .chain(node_port_vips(&view, port, opts))
            {
                let port_number = match vip.kind {
                    VipKind::NodePort => port.node_port.unwrap_or(port.number),
                    _ => port.number,
                };
                let local_node = match vip.kind {
                    VipKind::Cluster => view.internal_local_node.as_deref(),
                    VipKind::External | VipKind::NodePort => view.external_local_node.as_deref(),
                };
                let backends = index.backends(&BackendQuery {
                    namespace: &view.namespace,
                    service: &view.name,
                    port_name: &port.name,
                    proto: port.proto,
                    v4: vip.addr.is_v4(),
                    local_node,
                    topology,
                });
                // kube-proxy: a Local policy that leaves this node without
                // endpoints drops; a Service without any endpoints rejects.
                let no_endpoints = if local_node.is_some()
                    && !backends.iter().any(BackendSpec::takes_new_flows)
                    && index
                        .backends(&BackendQuery {
                            namespace: &view.namespace,
                            service: &view.name,
                            port_name: &port.name,
                            proto: port.proto,
                            v4: vip.addr.is_v4(),
                            local_node: None,
                            topology: Topology::default(),
                        })
                        .iter()
                        .any(BackendSpec::takes_new_flows)
                {
                    NoEndpoints::Drop
                } else {
                    NoEndpoints::Reject
                };
                let spec = ServiceSpec {
                    key: ServiceKey {
                        vip: vip.addr,
                        port: port_number,
                        proto: port.proto,
                    },
                    name: format!("{}:{}", view.id(), port.label()),
                    backends,
                    affinity: view.affinity,
                    no_endpoints,
                    forwarding: view.forwarding_at(&vip, opts),
                    source_ranges: if vip.load_balancer {
                        lb_source_ranges(&view, &vip, &mut warnings)
                    } else {
                        Vec::new()
                    },
                };
                match by_key.entry(spec.key) {
                    Entry::Vacant(e) => {
                        e.insert(spec);
                    }
                    Entry::Occupied(e) => warnings.push(format!(
                        "Service {}: {} {}:{} is already served by {}; skipped",
                        spec.name,
                        spec.key.proto,
                        spec.key.vip,
                        spec.key.port,
                        e.get().name
                    )),
                }
            }
        }
    }

    index.warn_orphans(services, &mut warnings);
    Model {
        services: by_key.into_values().collect(),
        health_checks,
        warnings,
    }
}
