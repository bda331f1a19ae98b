//! The service table's flat lookup index against a HashMap model: every key
//! of a table built from random specs (IPv4/IPv6 VIPs, ports, TCP/UDP) is
//! found, through `lookup` and through `key_hash` + `lookup_hashed`, with
//! its own entry; absent keys are not; and tables made by `apply` (random
//! removals and upserts) agree with the model after each step.

use std::collections::HashMap;

use dataplane::addr::{Addr, Proto};
use dataplane::service::{Affinity, BackendSpec, BackendState, ServiceKey, ServiceSpec};
use dataplane::table::{ServiceTable, TableConfig};
use proptest::prelude::*;

/// Keys from a small space (VIPs 198.19.0.0-15 and fd00::0-15, a few ports,
/// both protocols), so that random sets collide, repeat and leave near
/// neighbours of present keys absent.
fn key() -> impl Strategy<Value = ServiceKey> {
    (
        any::<bool>(),
        0u8..16,
        prop::sample::select(vec![53u16, 80, 443, 8080, 65535]),
        any::<bool>(),
    )
        .prop_map(|(v6, host, port, udp)| {
            let vip = if v6 {
                let mut o = [0u8; 16];
                o[0] = 0xfd;
                o[15] = host;
                Addr::from_v6(o)
            } else {
                Addr::from_v4([198, 19, 0, host])
            };
            ServiceKey {
                vip,
                port,
                proto: if udp { Proto::Udp } else { Proto::Tcp },
            }
        })
}

/// A spec for `key` whose one backend (`b`) tells specs of a key apart.
fn spec(key: ServiceKey, b: u8) -> ServiceSpec {
    ServiceSpec {
        key,
        name: format!("svcmap/{b}"),
        backends: vec![BackendSpec {
            addr: Addr::from_v4([198, 18, 1, b]),
            port: 8080,
            weight: 1,
            state: BackendState::Ready,
        }],
        affinity: Affinity::None,
        no_endpoints: dataplane::service::NoEndpoints::Reject,
        forwarding: Default::default(),
        source_ranges: Vec::new(),
    }
}

/// Checks `table` against `model`: same size, every model key found by
/// both lookups with its live spec, every other key of `probes` missing or
/// retired (a removed port stays a while to finish its TCP flows).
fn agree(
    table: &ServiceTable,
    model: &HashMap<ServiceKey, ServiceSpec>,
    probes: &[ServiceKey],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(table.len(), model.len());
    for (k, want) in model {
        let got = table.lookup(&k.vip, k.port, k.proto);
        prop_assert_eq!(got.map(|e| &e.spec), Some(want), "lookup {:?}", k);
        prop_assert!(!got.is_some_and(|e| e.is_retired()), "{:?} retired", k);
        let hashed = table.lookup_hashed(table.key_hash(k), k);
        prop_assert!(
            matches!((got, hashed), (Some(a), Some(b)) if std::ptr::eq(a, b)),
            "lookup_hashed {:?}",
            k
        );
    }
    for k in probes.iter().filter(|k| !model.contains_key(k)) {
        let gone = |e: Option<&dataplane::table::ServiceEntry>| e.is_none_or(|e| e.is_retired());
        prop_assert!(gone(table.lookup(&k.vip, k.port, k.proto)), "{:?}", k);
        prop_assert!(gone(table.lookup_hashed(table.key_hash(k), k)));
    }
    Ok(())
}

/// One `apply` step: keys to remove, then (key, backend) specs to upsert.
type Step = (Vec<ServiceKey>, Vec<(ServiceKey, u8)>);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn built_tables_find_every_key_and_no_other(
        specs in prop::collection::vec((key(), 1u8..=8), 0..120),
        probes in prop::collection::vec(key(), 0..200),
    ) {
        let specs: Vec<ServiceSpec> = specs.into_iter().map(|(k, b)| spec(k, b)).collect();
        // Duplicate keys: the first spec wins.
        let mut model = HashMap::new();
        for s in &specs {
            model.entry(s.key).or_insert_with(|| s.clone());
        }
        let table = ServiceTable::from_specs(specs, TableConfig::default());
        agree(&table, &model, &probes)?;
    }

    #[test]
    fn applied_generations_agree_with_a_map(
        initial in prop::collection::vec((key(), 1u8..=8), 0..80),
        steps in prop::collection::vec(
            (
                prop::collection::vec(key(), 0..20),
                prop::collection::vec((key(), 1u8..=8), 0..20),
            ),
            1..6,
        ),
        probes in prop::collection::vec(key(), 0..200),
    ) {
        let initial: Vec<ServiceSpec> = initial.into_iter().map(|(k, b)| spec(k, b)).collect();
        let mut model = HashMap::new();
        for s in &initial {
            model.entry(s.key).or_insert_with(|| s.clone());
        }
        let mut table = ServiceTable::from_specs(initial, TableConfig::default());
        agree(&table, &model, &probes)?;
        let steps: Vec<Step> = steps;
        for (removed, upserts) in steps {
            // One upsert per key, as control sends them (which of two
            // upserts of a key `apply` keeps is not this index's concern).
            let mut seen = std::collections::HashSet::new();
            let upserts: Vec<ServiceSpec> = upserts
                .into_iter()
                .filter(|(k, _)| seen.insert(*k))
                .map(|(k, b)| spec(k, b))
                .collect();
            let before = model.clone();
            for k in &removed {
                model.remove(k);
            }
            for s in &upserts {
                model.insert(s.key, s.clone());
            }
            let (next, stats) = ServiceTable::apply(&table, removed.iter(), upserts.iter());
            prop_assert_eq!(stats.services, model.len());
            prop_assert_eq!(next.generation(), table.generation() + 1);
            agree(&next, &model, &probes)?;
            // The previous generation is untouched (workers may still hold it).
            agree(&table, &before, &probes)?;
            table = next;
        }
    }
}
