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

/// How a Service's flows reach their backends (`--forwarding`, or per
/// Service the `vipgate.io/forwarding` annotation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Forwarding {
    /// Destination NAT only: the backend sees the client's address, so its
    /// replies must route back through the gateway.
    #[default]
    Dnat,
    /// Destination and source NAT (masquerade): the backend sees a gateway
    /// address and port and answers the gateway, wherever it runs.
    Snat,
}

impl Forwarding {
    /// Its flag and annotation value.
    pub fn name(self) -> &'static str {
        match self {
            Forwarding::Dnat => "dnat",
            Forwarding::Snat => "snat",
        }
    }

    /// The mode named `s` (as [`Forwarding::name`] spells it).
    pub fn parse(s: &str) -> Option<Forwarding> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dnat" => Some(Forwarding::Dnat),
            "snat" => Some(Forwarding::Snat),
            _ => None,
        }
    }
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

/// A client network allowed to open flows (`loadBalancerSourceRanges`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SourceRange {
    /// The network address (host bits zero).
    pub net: Addr,
    /// Prefix length in `Addr`'s 128 bits (an IPv4 /24 is 96 + 24 = 120).
    pub bits: u8,
}

impl SourceRange {
    /// `addr/prefix` in the address's own family's bits (IPv4 0..=32, IPv6
    /// 0..=128), host bits cleared; None for a prefix too long.
    pub fn new(addr: Addr, prefix: u8) -> Option<SourceRange> {
        let bits = if addr.is_v4() {
            (prefix <= 32).then_some(96 + prefix)?
        } else {
            (prefix <= 128).then_some(prefix)?
        };
        Some(SourceRange {
            net: Addr(mask(addr.0, bits)),
            bits,
        })
    }

    /// Whether `a` is in this network (of the same family: `::/0` holds
    /// no IPv4 address).
    #[inline]
    pub fn contains(&self, a: &Addr) -> bool {
        a.is_v4() == self.net.is_v4() && mask(a.0, self.bits) == self.net.0
    }
}

#[inline]
fn mask(mut a: [u8; 16], bits: u8) -> [u8; 16] {
    let v = u128::from_be_bytes(a);
    let m = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(bits))
    };
    a = (v & m).to_be_bytes();
    a
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
    /// Client networks allowed to open flows; empty: any client. Set from
    /// `loadBalancerSourceRanges` on load-balancer IPs only, as kube-proxy
    /// applies it.
    pub source_ranges: Vec<SourceRange>,
    /// How its flows reach the backends.
    pub forwarding: Forwarding,
}

impl ServiceSpec {
    /// Whether a new flow from `client` is allowed by `source_ranges`.
    #[inline]
    pub fn admits(&self, client: &Addr) -> bool {
        self.source_ranges.is_empty() || self.source_ranges.iter().any(|r| r.contains(client))
    }
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
            forwarding: Default::default(),
            source_ranges: Vec::new(),
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
    fn source_ranges_match_their_family_and_prefix() {
        let r = SourceRange::new(Addr::from_v4([198, 18, 7, 99]), 24).unwrap();
        assert_eq!(r.net, Addr::from_v4([198, 18, 7, 0]));
        assert!(r.contains(&Addr::from_v4([198, 18, 7, 1])));
        assert!(!r.contains(&Addr::from_v4([198, 18, 8, 1])));
        let all4 = SourceRange::new(Addr::from_v4([0, 0, 0, 0]), 0).unwrap();
        assert!(all4.contains(&Addr::from_v4([203, 0, 113, 1])));
        // 0.0.0.0/0 is every IPv4 address, not every address.
        let mut v6 = [0u8; 16];
        v6[0] = 0xfd;
        assert!(!all4.contains(&Addr::from_v6(v6)));
        let all6 = SourceRange::new(Addr::from_v6([0; 16]), 0).unwrap();
        assert!(all6.contains(&Addr::from_v6(v6)));
        assert!(!all6.contains(&Addr::from_v4([1, 2, 3, 4])));
        let r6 = SourceRange::new(Addr::from_v6(v6), 8).unwrap();
        v6[15] = 7;
        assert!(r6.contains(&Addr::from_v6(v6)));
        assert!(SourceRange::new(Addr::from_v4([1, 2, 3, 4]), 33).is_none());
        let mut s = spec(vec![]);
        assert!(s.admits(&Addr::from_v4([1, 2, 3, 4])), "empty: everyone");
        s.source_ranges = vec![r];
        assert!(s.admits(&Addr::from_v4([198, 18, 7, 200])));
        assert!(!s.admits(&Addr::from_v4([1, 2, 3, 4])));
    }

    #[test]
    fn nothing_serving_means_no_backends() {
        let s = spec(vec![be(3, BackendState::NotServing)]);
        assert!(s.active_backends().is_empty());
    }
}
