//! What the pipeline would do with a new flow, and why: which Service key
//! matches, which hash places it on which Maglev slot, which backend that
//! slot holds and how many slots each backend has, and what the backend's
//! reply looks like. The same table lookups the pipeline makes, none of its
//! state: a flow already in a worker's conntrack keeps the backend it has
//! (`vipgate conntrack` shows it).

use crate::addr::{Addr, Tuple};
use crate::service::{Affinity, BackendSpec, BackendState, Forwarding, NoEndpoints};
use crate::table::ServiceTable;

/// The answer for one flow.
#[derive(Clone, Debug, PartialEq)]
pub enum Explanation {
    /// No Service has this VIP, port and protocol: handed to the kernel.
    NoService { vip_known: bool },
    /// The Service port was removed: its established TCP flows still run
    /// to their backends; a new flow is handed to the kernel.
    Retired { service: String },
    /// The Service matches but no backend takes new flows: rejected (TCP
    /// RST or ICMP unreachable, see `--reject-tcp`), or dropped when a
    /// `Local` traffic policy left none on this node.
    NoBackend {
        service: String,
        backends: Vec<BackendSpec>,
        no_endpoints: NoEndpoints,
    },
    /// The client is outside the `loadBalancerSourceRanges` of this
    /// load-balancer IP: a new flow is dropped.
    OutsideSourceRanges { service: String },
    /// Picked by the Maglev ring.
    Picked(Pick),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    /// `namespace/name:port` of the Service.
    pub service: String,
    pub affinity: Affinity,
    /// What was hashed: the 5-tuple, or only the client under ClientIP affinity.
    pub hashed: &'static str,
    pub hash: u64,
    pub ring_size: u32,
    pub slot: u32,
    pub backend: BackendSpec,
    /// Every backend of the Service with its state and its ring slots
    /// (0 for those that take no new flows).
    pub shares: Vec<(BackendSpec, u32)>,
    /// Why these backends take new flows: ready ones, or (none ready)
    /// serving-terminating ones.
    pub fallback_to_terminating: bool,
    /// The backend's replies as they arrive, before reverse NAT: to the
    /// client for DNAT (its `dst` then), to the gateway's source-NAT
    /// address and a port picked when the flow starts for source NAT.
    pub reply: Tuple,
    /// The flow is source-NATed, and why: "snat" (its Service's mode) or
    /// "hairpin" (the backend is the client); `None`: DNAT. (A DNAT flow
    /// whose replies would clash with a live flow's is source-NATed too:
    /// only the running gateway can tell.)
    pub snat: Option<&'static str>,
}

/// Explains the flow `t` (client -> VIP) against `table` with `seed`.
pub fn explain(table: &ServiceTable, t: &Tuple) -> Explanation {
    let seed = table.config().seed;
    let Some(e) = table.lookup(&t.dst, t.dport, t.proto) else {
        return Explanation::NoService {
            vip_known: table.is_vip(&t.dst),
        };
    };
    if e.is_retired() {
        return Explanation::Retired {
            service: e.spec.name.clone(),
        };
    }
    if !e.spec.admits(&t.src) {
        return Explanation::OutsideSourceRanges {
            service: e.spec.name.clone(),
        };
    }
    let h = e.pick_hash(t, seed);
    let Some(backend) = e.pick_hashed(h).copied() else {
        return Explanation::NoBackend {
            service: e.spec.name.clone(),
            backends: e.spec.backends.clone(),
            no_endpoints: e.spec.no_endpoints,
        };
    };
    let ring = e.maglev.slots();
    let mut per_active = vec![0u32; e.active.len()];
    for &i in ring {
        if let Some(n) = per_active.get_mut(usize::from(i)) {
            *n += 1;
        }
    }
    let shares = e
        .spec
        .backends
        .iter()
        .map(|b| {
            let slots = e
                .active
                .iter()
                .position(|a| a.addr == b.addr && a.port == b.port)
                .map_or(0, |i| per_active[i]);
            (*b, slots)
        })
        .collect();
    let m = e.maglev.size();
    Explanation::Picked(Pick {
        service: e.spec.name.clone(),
        affinity: e.spec.affinity,
        hashed: match e.spec.affinity {
            Affinity::None => "5-tuple",
            Affinity::ClientIp { .. } => "client address (ClientIP affinity; a client seen within the timeout keeps its remembered backend)",
        },
        hash: h,
        ring_size: m,
        slot: (h % u64::from(m.max(1))) as u32,
        backend,
        shares,
        fallback_to_terminating: !e
            .spec
            .backends
            .iter()
            .any(|b| b.state == BackendState::Ready && b.weight > 0),
        reply: Tuple {
            src: backend.addr,
            dst: t.src,
            sport: backend.port,
            dport: t.sport,
            proto: t.proto,
        },
        snat: if e.spec.forwarding == Forwarding::Snat {
            Some("snat")
        } else if backend.addr == t.src {
            Some("hairpin")
        } else {
            None
        },
    })
}

/// "198.18.1.2:8080"-style text of an address and port (IPv6 bracketed).
pub fn endpoint(a: Addr, port: u16) -> String {
    std::net::SocketAddr::new(a.to_ip(), port).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Proto;
    use crate::service::{ServiceKey, ServiceSpec};
    use crate::table::TableConfig;

    fn backend(last: u8, state: BackendState) -> BackendSpec {
        BackendSpec {
            addr: Addr::from_v4([198, 18, 1, last]),
            port: 8080,
            weight: 1,
            state,
        }
    }

    fn table(backends: Vec<BackendSpec>) -> ServiceTable {
        ServiceTable::from_specs(
            vec![ServiceSpec {
                key: ServiceKey {
                    vip: Addr::from_v4([198, 19, 0, 10]),
                    port: 80,
                    proto: Proto::Tcp,
                },
                name: "default/web:http".into(),
                backends,
                affinity: Affinity::None,
                no_endpoints: crate::service::NoEndpoints::Reject,
                forwarding: Default::default(),
                source_ranges: Vec::new(),
            }],
            TableConfig::default(),
        )
    }

    fn flow(sport: u16, dport: u16) -> Tuple {
        Tuple {
            src: Addr::from_v4([198, 18, 0, 1]),
            dst: Addr::from_v4([198, 19, 0, 10]),
            sport,
            dport,
            proto: Proto::Tcp,
        }
    }

    #[test]
    fn the_pick_is_the_pipeline_s_and_the_shares_cover_the_ring() {
        let t = table(vec![
            backend(1, BackendState::Ready),
            backend(2, BackendState::Ready),
            backend(3, BackendState::NotServing),
        ]);
        for sport in 40_000..40_050 {
            let f = flow(sport, 80);
            let Explanation::Picked(p) = explain(&t, &f) else {
                panic!("no pick");
            };
            let e = t.lookup(&f.dst, 80, Proto::Tcp).unwrap();
            assert_eq!(Some(&p.backend), e.pick(&f, t.config().seed));
            assert_eq!(p.slot, (p.hash % u64::from(p.ring_size)) as u32);
            assert_eq!(p.shares.iter().map(|s| s.1).sum::<u32>(), p.ring_size);
            assert_eq!(p.shares[2].1, 0, "not serving: no slots");
            assert_eq!(p.reply.src, p.backend.addr);
            assert_eq!(p.reply.dport, sport);
            assert!(!p.fallback_to_terminating);
        }
    }

    #[test]
    fn no_service_and_no_backend_are_said() {
        let t = table(vec![backend(1, BackendState::NotServing)]);
        assert_eq!(
            explain(&t, &flow(1, 443)),
            Explanation::NoService { vip_known: true }
        );
        assert!(matches!(
            explain(&t, &flow(1, 80)),
            Explanation::NoBackend { .. }
        ));
        let t = table(vec![backend(1, BackendState::ServingTerminating)]);
        let Explanation::Picked(p) = explain(&t, &flow(1, 80)) else {
            panic!("terminating backends take flows when none is ready");
        };
        assert!(p.fallback_to_terminating);
    }

    #[test]
    fn source_nat_is_said_for_snat_services_and_hairpins() {
        let t = table(vec![backend(1, BackendState::Ready)]);
        let Explanation::Picked(p) = explain(&t, &flow(40_000, 80)) else {
            panic!("no pick");
        };
        assert_eq!(p.snat, None, "a DNAT Service");
        let mut hairpin = flow(40_000, 80);
        hairpin.src = backend(1, BackendState::Ready).addr;
        let Explanation::Picked(p) = explain(&t, &hairpin) else {
            panic!("no pick");
        };
        assert_eq!(p.snat, Some("hairpin"));

        let mut spec = t.entries()[0].spec.clone();
        spec.forwarding = Forwarding::Snat;
        let t = ServiceTable::from_specs(vec![spec], TableConfig::default());
        let Explanation::Picked(p) = explain(&t, &flow(40_000, 80)) else {
            panic!("no pick");
        };
        assert_eq!(p.snat, Some("snat"));
    }
}
