//! Keeps the XDP steering maps equal to the published table: every VIP
//! port steered in, every backend endpoint's replies steered in, and what
//! left the table removed. Runs on the control side after each publish.

use std::collections::BTreeSet;

use dataplane::addr::{Addr, Proto};
use dataplane::io::af_xdp::XdpSteering;
use dataplane::table::ServiceTable;

type Key = (Addr, u16, Proto);

/// The steering state last written to the maps.
#[derive(Default)]
pub struct SteerSync {
    vips: BTreeSet<Key>,
    backends: BTreeSet<Key>,
}

/// VIP ports and backend endpoints of a table.
pub fn wanted(table: &ServiceTable) -> (BTreeSet<Key>, BTreeSet<Key>) {
    let mut vips = BTreeSet::new();
    let mut backends = BTreeSet::new();
    for e in table.entries() {
        let k = e.spec.key;
        vips.insert((k.vip, k.port, k.proto));
        // Every listed backend, not only active ones: a terminating
        // backend still answers the flows it has.
        for b in &e.spec.backends {
            backends.insert((b.addr, b.port, k.proto));
        }
    }
    (vips, backends)
}

impl SteerSync {
    /// Brings every program's maps to `table`. Returns (added, removed).
    pub fn apply(
        &mut self,
        table: &ServiceTable,
        progs: &mut [XdpSteering],
    ) -> Result<(usize, usize), String> {
        let (vips, backends) = wanted(table);
        let (mut added, mut removed) = (0, 0);
        let err = |e: dataplane::io::af_xdp::AfXdpError| format!("steering map update: {e}");
        for s in progs.iter_mut() {
            let m = s.maps_mut();
            for &(a, p, pr) in vips.difference(&self.vips) {
                m.add_vip(a, p, pr).map_err(err)?;
            }
            for &(a, p, pr) in self.vips.difference(&vips) {
                m.remove_vip(a, p, pr).map_err(err)?;
            }
            for &(a, p, pr) in backends.difference(&self.backends) {
                m.add_backend(a, p, pr).map_err(err)?;
            }
            for &(a, p, pr) in self.backends.difference(&backends) {
                m.remove_backend(a, p, pr).map_err(err)?;
            }
        }
        added += vips.difference(&self.vips).count() + backends.difference(&self.backends).count();
        removed +=
            self.vips.difference(&vips).count() + self.backends.difference(&backends).count();
        self.vips = vips;
        self.backends = backends;
        Ok((added, removed))
    }
}
