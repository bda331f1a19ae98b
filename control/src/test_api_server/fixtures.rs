//! Builders for realistic Service and EndpointSlice JSON, for tests and
//! benchmarks that feed the test API server.

use std::net::IpAddr;

use serde_json::{json, Value};

/// A ClusterIP Service with one TCP port named `http` (targetPort = port).
pub fn service(namespace: &str, name: &str, cluster_ip: IpAddr, port: u16) -> Value {
    let family = family(cluster_ip);
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip.to_string(),
            "clusterIPs": [cluster_ip.to_string()],
            "ipFamilies": [family],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "http", "protocol": "TCP", "port": port, "targetPort": port}],
            "selector": {"app": name},
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {}},
    })
}

/// An EndpointSlice of `service` with one ready endpoint per address, all
/// serving the port named `http`. The address family is taken from the
/// first address (IPv4 when empty).
pub fn endpoint_slice(
    namespace: &str,
    name: &str,
    service: &str,
    addresses: &[IpAddr],
    port: u16,
) -> Value {
    let address_type = addresses.first().map_or("IPv4", |a| family(*a));
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|a| {
            json!({
                "addresses": [a.to_string()],
                "conditions": {"ready": true, "serving": true, "terminating": false},
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [{"name": "http", "protocol": "TCP", "port": port}],
    })
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}
