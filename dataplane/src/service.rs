//! The desired state of one Service port: what `control` produces and the
//! dataplane consumes. Plain data, no tables; `table.rs` turns a set of these
//! into lookup structures and Maglev rings.

use crate::addr::{Addr, Proto};

/// What a packet is matched on: the ClusterIP (or other VIP), the Service
/// port and the protocol.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ServiceKey {
    pub vip: Addr,
    pub port: u16,
    pub proto: Proto,
}

/// An endpoint's condition, as EndpointSlice reports it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum BackendState {
    /// `ready`: takes new flows.
    Ready,
    /// `serving` and `terminating`: takes new flows only when no backend of
    /// the service is Ready (kube-proxy's fallback); existing flows continue.
    ServingTerminating,
    /// Neither ready nor serving: takes no new flows; existing TCP flows
    /// continue until they close or time out.
    NotServing,
}

/// One endpoint of a Service port, with the port already resolved to a number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct BackendSpec {
    pub addr: Addr,
    pub port: u16,
    /// Relative share of new flows (1 for plain Kubernetes endpoints).
    pub weight: u32,
    pub state: BackendState,
}

impl BackendSpec {
    /// Whether it can take new flows: ready or serving, with a weight.
    pub fn takes_new_flows(&self) -> bool {
        self.weight > 0 && self.state != BackendState::NotServing
    }
}

/// How flows of one client stick to a backend.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Affinity {
    /// Every flow is hashed on its 5-tuple.
    #[default]
    None,
    /// `sessionAffinity: ClientIP`: the Maglev pick hashes only the client
    /// address, so all flows from a client reach the same backend on every
    /// gateway without keeping per-client state.
    ClientIp { timeout_s: u32 },
}

/// What a new flow gets when no backend takes it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum NoEndpoints {
    /// The Service has no endpoints: answered (TCP RST or ICMP port
    /// unreachable), as kube-proxy's REJECT rules do.
    #[default]
    Reject,
    /// A `Local` traffic policy left none on this node while the Service
    /// has endpoints elsewhere: dropped silently, as kube-proxy does.
    Drop,
}

/// One Service port with its backends.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    /// `namespace/name:portname`, for logs, counters and `vipgate services`.
    pub name: String,
    pub backends: Vec<BackendSpec>,
    pub affinity: Affinity,
    /// What a new flow gets when none of `backends` takes new flows.
    pub no_endpoints: NoEndpoints,
}

impl ServiceSpec {
    /// The backends that take new flows: the Ready ones, or, when none is
    /// Ready, the serving-terminating ones (kube-proxy's rule).
    pub fn active_backends(&self) -> Vec<BackendSpec> {
        let ready: Vec<BackendSpec> = self
            .backends
            .iter()
            .copied()
            .filter(|b| b.state == BackendState::Ready && b.weight > 0)
            .collect();
        if !ready.is_empty() {
            return ready;
        }
        self.backends
            .iter()
            .copied()
            .filter(|b| b.state == BackendState::ServingTerminating && b.weight > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(last: u8, state: BackendState) -> BackendSpec {
        BackendSpec {
            addr: Addr::from_v4([198, 18, 1, last]),
            port: 8080,
            weight: 1,
            state,
        }
    }

    fn spec(backends: Vec<BackendSpec>) -> ServiceSpec {
        ServiceSpec {
            key: ServiceKey {
                vip: Addr::from_v4([198, 19, 0, 1]),
                port: 80,
                proto: Proto::Tcp,
            },
            name: "default/web:http".into(),
            backends,
            affinity: Affinity::None,
            no_endpoints: crate::service::NoEndpoints::Reject,
        }
    }

    #[test]
    fn ready_backends_win_over_terminating() {
        let s = spec(vec![
            be(1, BackendState::Ready),
            be(2, BackendState::ServingTerminating),
            be(3, BackendState::NotServing),
        ]);
        assert_eq!(s.active_backends(), vec![be(1, BackendState::Ready)]);
    }

    #[test]
    fn serving_terminating_used_when_none_ready() {
        let s = spec(vec![
            be(2, BackendState::ServingTerminating),
            be(3, BackendState::NotServing),
        ]);
        assert_eq!(
            s.active_backends(),
            vec![be(2, BackendState::ServingTerminating)]
        );
    }

    #[test]
    fn nothing_serving_means_no_backends() {
        let s = spec(vec![be(3, BackendState::NotServing)]);
        assert!(s.active_backends().is_empty());
    }
}
