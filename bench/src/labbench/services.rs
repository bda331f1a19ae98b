//! The service set a lab benchmark installs on every path: N UDP (or, for
//! the iperf3 bench, TCP) services on port 80, each with the lab's backends
//! on port 8080. Service 0 gets the measured traffic; the rest exist so
//! each path pays for its size.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// Port clients send to.
pub const SERVICE_PORT: u16 = 80;
/// Port the backends listen on (the Service's targetPort).
pub const TARGET_PORT: u16 = 8080;
/// First VIP; service `i` is this address plus `i`, inside 198.19.0.0/16.
const FIRST_VIP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
/// VIPs stay inside 198.19.0.0/16.
pub const MAX_SERVICES: usize = 65_000;

/// The protocol of a service's one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    /// As iptables, nft and port names spell it.
    pub fn lower(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }

    /// As a Kubernetes `protocol:` field spells it.
    pub fn upper(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        }
    }
}

/// One ClusterIP service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabService {
    /// `svc-<i>`, in namespace `lab`.
    pub name: String,
    pub vip: Ipv4Addr,
    pub backends: Vec<Ipv4Addr>,
    /// The protocol of its port (named like the protocol).
    pub proto: Proto,
}

/// `count` UDP services over `backends`; errors when the VIPs would leave
/// 198.19.0.0/16 or a service would have no endpoint.
pub fn services(count: usize, backends: &[Ipv4Addr]) -> Result<Vec<LabService>, String> {
    services_of(Proto::Udp, count, backends)
}

/// [`services`] with ports of `proto`.
pub fn services_of(
    proto: Proto,
    count: usize,
    backends: &[Ipv4Addr],
) -> Result<Vec<LabService>, String> {
    if count == 0 || count > MAX_SERVICES {
        return Err(format!("services must be 1..={MAX_SERVICES}, got {count}"));
    }
    if backends.is_empty() {
        return Err("services need at least one backend".into());
    }
    Ok((0..count)
        .map(|i| LabService {
            name: format!("svc-{i}"),
            vip: vip(i),
            backends: backends.to_vec(),
            proto,
        })
        .collect())
}

/// Service `i`'s VIP.
pub fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(FIRST_VIP) + i as u32)
}

/// The services as `kubectl get svc,endpointslices -o yaml` prints them
/// (a v1 List), for `vipgate run --services`.
pub fn services_yaml(svcs: &[LabService]) -> String {
    let mut s = String::with_capacity(svcs.len() * 700);
    s.push_str("apiVersion: v1\nkind: List\nitems:\n");
    for svc in svcs {
        let _ = write!(
            s,
            "- apiVersion: v1\n  kind: Service\n  metadata: {{name: {n}, namespace: lab}}\n  spec:\n    type: ClusterIP\n    clusterIP: {v}\n    clusterIPs: ['{v}']\n    ports:\n    - {{name: {l}, port: {SERVICE_PORT}, protocol: {u}, targetPort: {TARGET_PORT}}}\n",
            n = svc.name,
            v = svc.vip,
            l = svc.proto.lower(),
            u = svc.proto.upper(),
        );
        let _ = write!(
            s,
            "- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  metadata:\n    name: {n}-v4\n    namespace: lab\n    labels: {{kubernetes.io/service-name: {n}}}\n  addressType: IPv4\n  ports:\n  - {{name: {l}, port: {TARGET_PORT}, protocol: {u}}}\n  endpoints:\n",
            n = svc.name,
            l = svc.proto.lower(),
            u = svc.proto.upper(),
        );
        for b in &svc.backends {
            let _ = writeln!(
                s,
                "  - addresses: ['{b}']\n    conditions: {{ready: true, serving: true, terminating: false}}"
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vips_are_distinct_and_stay_in_the_benchmark_range() {
        let b = [Ipv4Addr::new(198, 18, 1, 10)];
        let s = services(MAX_SERVICES, &b).unwrap();
        let mut v: Vec<u32> = s.iter().map(|x| u32::from(x.vip)).collect();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), MAX_SERVICES);
        for x in &s {
            assert_eq!(x.vip.octets()[..2], [198, 19], "{}", x.vip);
        }
        assert!(services(0, &b).is_err());
        assert!(services(MAX_SERVICES + 1, &b).is_err());
        assert!(services(3, &[]).is_err());
    }

    #[test]
    fn yaml_has_a_service_and_a_slice_per_service() {
        let b = [Ipv4Addr::new(198, 18, 1, 10), Ipv4Addr::new(198, 18, 1, 11)];
        let y = services_yaml(&services(3, &b).unwrap());
        assert_eq!(y.matches("kind: Service\n").count(), 3);
        assert_eq!(y.matches("kind: EndpointSlice\n").count(), 3);
        assert_eq!(y.matches("addresses: ['198.18.1.11']").count(), 3);
        assert!(y.contains("clusterIP: 198.19.0.12\n"));
        assert!(y.contains("kubernetes.io/service-name: svc-2"));
        assert!(y.contains("protocol: UDP, targetPort: 8080"));
        let t = services_yaml(&services_of(Proto::Tcp, 1, &b[..1]).unwrap());
        assert!(t.contains("- {name: tcp, port: 80, protocol: TCP, targetPort: 8080}"));
        assert!(t.contains("- {name: tcp, port: 8080, protocol: TCP}"));
        assert!(!t.contains("UDP"));
    }
}
