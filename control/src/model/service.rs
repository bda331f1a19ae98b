//! One Service reduced to what the dataplane needs: its VIPs, its ports, its
//! affinity and the node its `Local` traffic policies restrict it to.

use std::net::IpAddr;

use dataplane::addr::{Addr, Proto};
use dataplane::service::{Affinity, Forwarding, SourceRange};
use k8s_openapi::api::core::v1::Service;

use super::ModelOptions;

/// How a load-balancer ingress IP is named in warnings (and told apart).
const LB_FIELD: &str = "load-balancer ingress IP";

/// The annotation older Services carry instead of `loadBalancerSourceRanges`
/// (kube-proxy reads it when the field is empty).
const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

/// Per-Service forwarding mode, as Cilium's `service.cilium.io/forwarding-mode`.
pub const FORWARDING_ANNOTATION: &str = "vipgate.io/forwarding";

/// kube-proxy's default for `sessionAffinityConfig.clientIP.timeoutSeconds`.
const DEFAULT_AFFINITY_TIMEOUT_S: u32 = 10_800;
/// The API server's upper bound for the same field (one day).
const MAX_AFFINITY_TIMEOUT_S: i32 = 86_400;

/// Which traffic policy governs a VIP: the internal one for ClusterIPs,
/// the external one for `externalIPs`, load-balancer IPs and node ports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum VipKind {
    Cluster,
    External,
    /// A node address, reached at each port's `nodePort`.
    NodePort,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Vip {
    pub addr: Addr,
    pub kind: VipKind,
    /// A load-balancer ingress IP: `loadBalancerSourceRanges` applies.
    pub load_balancer: bool,
}

#[derive(Clone, Debug)]
pub(super) struct Port {
    /// Empty for an unnamed port; EndpointSlice ports match on it.
    pub name: String,
    pub number: u16,
    pub proto: Proto,
    /// `nodePort` (NodePort and LoadBalancer Services), when valid.
    pub node_port: Option<u16>,
}

impl Port {
    /// The port as it appears in a service name: its name, else its number.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            self.number.to_string()
        } else {
            self.name.clone()
        }
    }
}

#[derive(Debug)]
pub(super) struct ServiceView {
    pub namespace: String,
    pub name: String,
    pub vips: Vec<Vip>,
    pub ports: Vec<Port>,
    pub affinity: Affinity,
    /// `Some(node)` when `internalTrafficPolicy: Local` applies here.
    pub internal_local_node: Option<String>,
    /// `Some(node)` when `externalTrafficPolicy: Local` applies here.
    pub external_local_node: Option<String>,
    /// `loadBalancerSourceRanges` (or its annotation), valid entries only.
    pub source_ranges: Vec<SourceRange>,
    /// `healthCheckNodePort`, when this node serves kube-proxy's health
    /// check for the Service (see [`health_check_port`]).
    pub health_check_port: Option<u16>,
    /// The annotation's mode, if any.
    pub forwarding: Option<Forwarding>,
}

/// Namespace and name, as the model orders Services. Objects without a
/// namespace are taken to live in `default`, as `kubectl apply` would put them.
pub(super) fn sort_key(svc: &Service) -> (String, String) {
    (
        namespace_of(svc.metadata.namespace.as_deref()),
        svc.metadata.name.clone().unwrap_or_default(),
    )
}

pub(super) fn namespace_of(ns: Option<&str>) -> String {
    match ns {
        Some(ns) if !ns.is_empty() => ns.to_string(),
        _ => "default".to_string(),
    }
}

impl ServiceView {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `None` for Services that carry no VIP (headless, ExternalName) and,
    /// with a warning, for Services that cannot be used.
    pub fn parse(svc: &Service, opts: &ModelOptions, warnings: &mut Vec<String>) -> Option<Self> {
        let (namespace, name) = sort_key(svc);
        if name.is_empty() {
            warnings.push(format!(
                "Service in {namespace} without metadata.name; skipped"
            ));
            return None;
        }
        let id = format!("{namespace}/{name}");
        let Some(spec) = svc.spec.as_ref() else {
            warnings.push(format!("Service {id}: no spec; skipped"));
            return None;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            return None;
        }

        // `clusterIPs` is authoritative when set (dual-stack); older objects
        // and hand-written ones may only have `clusterIP`.
        let cluster_ips: Vec<&str> = match spec.cluster_ips.as_deref() {
            Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
            _ => spec.cluster_ip.as_deref().into_iter().collect(),
        };
        // kube-proxy does not proxy headless Services at all, whatever else they carry.
        if cluster_ips.iter().any(|ip| ip.eq_ignore_ascii_case("None")) {
            return None;
        }
        let external_ips = spec.external_ips.iter().flatten().map(String::as_str);
        let lb_ips = svc
            .status
            .iter()
            .filter_map(|s| s.load_balancer.as_ref())
            .flat_map(|lb| lb.ingress.iter().flatten())
            .filter_map(|ing| ing.ip.as_deref());

        let mut vips: Vec<Vip> = Vec::new();
        let candidates = cluster_ips
            .into_iter()
            .map(|ip| (ip, VipKind::Cluster, "clusterIP"))
            .chain(external_ips.map(|ip| (ip, VipKind::External, "externalIP")))
            .chain(lb_ips.map(|ip| (ip, VipKind::External, LB_FIELD)));
        for (text, kind, field) in candidates {
            // An unallocated ClusterIP (hand-written objects) is absence, not an error.
            if text.is_empty() {
                continue;
            }
            let Ok(ip) = text.trim().parse::<IpAddr>() else {
                warnings.push(format!(
                    "Service {id}: {field} {text:?} is not an IP address; skipped"
                ));
                return None;
            };
            let addr = Addr::from(ip);
            let load_balancer = field == LB_FIELD;
            // The same address may be listed twice (an LB IP also in
            // externalIPs): once, restricted by the source ranges if any
            // listing makes it a load-balancer IP.
            match vips.iter_mut().find(|v| v.addr == addr) {
                Some(v) => v.load_balancer |= load_balancer,
                None => vips.push(Vip {
                    addr,
                    kind,
                    load_balancer,
                }),
            }
        }
        if vips.is_empty() {
            warnings.push(format!(
                "Service {id}: no clusterIP, externalIPs or load-balancer IP; skipped"
            ));
            return None;
        }

        let ports = parse_ports(&id, spec.ports.as_deref().unwrap_or_default(), warnings);
        if ports.is_empty() {
            warnings.push(format!("Service {id}: no usable ports; skipped"));
            return None;
        }

        let affinity = match spec.session_affinity.as_deref() {
            Some("ClientIP") => {
                let configured = spec
                    .session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds);
                let timeout_s = match configured {
                    None => DEFAULT_AFFINITY_TIMEOUT_S,
                    Some(t) if (1..=MAX_AFFINITY_TIMEOUT_S).contains(&t) => t as u32,
                    Some(t) => {
                        warnings.push(format!(
                            "Service {id}: session affinity timeout {t}s is outside \
                             1..={MAX_AFFINITY_TIMEOUT_S}; using {DEFAULT_AFFINITY_TIMEOUT_S}s"
                        ));
                        DEFAULT_AFFINITY_TIMEOUT_S
                    }
                };
                Affinity::ClientIp { timeout_s }
            }
            None | Some("None") | Some("") => Affinity::None,
            Some(other) => {
                warnings.push(format!(
                    "Service {id}: unknown sessionAffinity {other:?}; using none"
                ));
                Affinity::None
            }
        };

        let internal_local_node = local_node(
            &id,
            "internalTrafficPolicy",
            spec.internal_traffic_policy.as_deref(),
            opts,
            warnings,
        );
        // Node ports are external traffic too: externalTrafficPolicy
        // governs them, as in kube-proxy.
        let has_external = vips.iter().any(|v| v.kind == VipKind::External)
            || ports.iter().any(|p| p.node_port.is_some());
        let external_local_node = if has_external {
            local_node(
                &id,
                "externalTrafficPolicy",
                spec.external_traffic_policy.as_deref(),
                opts,
                warnings,
            )
        } else {
            None
        };

        let source_ranges = source_ranges(&id, svc, warnings);
        let health_check_port = health_check_port(&id, spec, opts, warnings);
        let forwarding = forwarding(&id, svc, warnings);

        Some(ServiceView {
            health_check_port,
            forwarding,
            namespace,
            name,
            vips,
            ports,
            affinity,
            source_ranges,
            internal_local_node,
            external_local_node,
        })
    }
}

fn parse_ports(
    id: &str,
    ports: &[k8s_openapi::api::core::v1::ServicePort],
    warnings: &mut Vec<String>,
) -> Vec<Port> {
    let mut out = Vec::with_capacity(ports.len());
    for p in ports {
        let name = p.name.clone().unwrap_or_default();
        let shown = if name.is_empty() {
            p.port.to_string()
        } else {
            name.clone()
        };
        let proto = match p.protocol.as_deref() {
            None | Some("TCP") => Proto::Tcp,
            Some("UDP") => Proto::Udp,
            Some("SCTP") => Proto::Sctp,
            Some(other) => {
                warnings.push(format!(
                    "Service {id}: port {shown} has unknown protocol {other:?}; skipped"
                ));
                continue;
            }
        };
        let number = match u16::try_from(p.port) {
            Ok(n) if n != 0 => n,
            _ => {
                warnings.push(format!(
                    "Service {id}: port {shown} has number {} outside 1..=65535; skipped",
                    p.port
                ));
                continue;
            }
        };
        let node_port = match p.node_port {
            None | Some(0) => None,
            Some(n) => match u16::try_from(n) {
                Ok(n) => Some(n),
                Err(_) => {
                    warnings.push(format!(
                        "Service {id}: port {shown} has nodePort {n} outside 1..=65535; \
                         node port not served"
                    ));
                    None
                }
            },
        };
        out.push(Port {
            name,
            number,
            proto,
            node_port,
        });
    }
    out
}

/// `loadBalancerSourceRanges`, else the older annotation (comma-separated),
/// as CIDRs; an entry that is not one is skipped with a warning.
fn source_ranges(id: &str, svc: &Service, warnings: &mut Vec<String>) -> Vec<SourceRange> {
    let field: Vec<String> = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_source_ranges.clone())
        .unwrap_or_default();
    let texts: Vec<String> = if field.is_empty() {
        svc.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SOURCE_RANGES_ANNOTATION))
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        field
    };
    texts
        .iter()
        .filter_map(|t| {
            let r = parse_cidr(t);
            if r.is_none() {
                warnings.push(format!(
                    "Service {id}: load-balancer source range {t:?} is not a CIDR; ignored"
                ));
            }
            r
        })
        .collect()
}

/// The `vipgate.io/forwarding` annotation's mode; `None` without it, or,
/// with a warning, when it names no mode.
fn forwarding(id: &str, svc: &Service, warnings: &mut Vec<String>) -> Option<Forwarding> {
    let text = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(FORWARDING_ANNOTATION))?;
    let mode = Forwarding::parse(text);
    if mode.is_none() {
        warnings.push(format!(
            "Service {id}: {FORWARDING_ANNOTATION} {text:?} is not dnat or snat; ignored"
        ));
    }
    mode
}

impl ServiceView {
    /// How flows to `vip` are forwarded: the annotation's mode; else, at a
    /// node port with `externalTrafficPolicy: Cluster`, source NAT
    /// (kube-proxy masquerades there: the endpoint may be on any node);
    /// else the gateway's default.
    pub fn forwarding_at(&self, vip: &Vip, opts: &ModelOptions) -> Forwarding {
        match self.forwarding {
            Some(mode) => mode,
            None if vip.kind == VipKind::NodePort && self.external_local_node.is_none() => {
                Forwarding::Snat
            }
            None => opts.forwarding,
        }
    }
}

/// "198.18.0.0/16", "fd00::/8" (a bare address is a host route).
fn parse_cidr(text: &str) -> Option<SourceRange> {
    let (ip, prefix) = match text.trim().split_once('/') {
        Some((ip, p)) => (ip, p.parse::<u8>().ok()?),
        None => (text.trim(), if text.contains(':') { 128 } else { 32 }),
    };
    SourceRange::new(Addr::from(ip.parse::<IpAddr>().ok()?), prefix)
}

/// The node a `Local` policy restricts endpoints to, if it applies.
fn local_node(
    id: &str,
    field: &str,
    policy: Option<&str>,
    opts: &ModelOptions,
    warnings: &mut Vec<String>,
) -> Option<String> {
    match policy {
        Some("Local") => {
            if opts.node_name.is_none() {
                warnings.push(format!(
                    "Service {id}: {field} Local ignored because no node name is configured; \
                     using endpoints on every node"
                ));
            }
            opts.node_name.clone()
        }
        None | Some("Cluster") | Some("") => None,
        Some(other) => {
            warnings.push(format!(
                "Service {id}: unknown {field} {other:?}; treated as Cluster"
            ));
            None
        }
    }
}

/// The port of kube-proxy's per-Service health check, served when the
/// Service needs one (kube-proxy's `NeedsHealthCheck`: type LoadBalancer
/// with `externalTrafficPolicy: Local`) and this node's name is known, since
/// the answer is the count of this node's endpoints.
fn health_check_port(
    id: &str,
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
    opts: &ModelOptions,
    warnings: &mut Vec<String>,
) -> Option<u16> {
    if spec.type_.as_deref() != Some("LoadBalancer")
        || spec.external_traffic_policy.as_deref() != Some("Local")
    {
        return None;
    }
    let port = match spec.health_check_node_port {
        Some(p) => match u16::try_from(p) {
            Ok(n) if n != 0 => n,
            _ => {
                warnings.push(format!(
                    "Service {id}: healthCheckNodePort {p} outside 1..=65535; not served"
                ));
                return None;
            }
        },
        None => {
            // The API server allocates one for every such Service.
            warnings.push(format!(
                "Service {id}: externalTrafficPolicy Local without healthCheckNodePort; \
                 no health check served"
            ));
            return None;
        }
    };
    if opts.node_name.is_none() {
        warnings.push(format!(
            "Service {id}: healthCheckNodePort {port} not served because no node name is \
             configured (it counts this node's endpoints)"
        ));
        return None;
    }
    Some(port)
}
