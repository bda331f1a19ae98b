//! The one-armed lab: client, gateway and backends share one L2 segment
//! (the `sw` bridge), and the gateway has a single interface carrying
//! both its client-side and backend-side addresses. Frames vipgate
//! forwards leave through the port they came in on.
//!
//! ```text
//!  client ──veth──┐
//!  198.18.0.2     │
//!  gw ────veth── sw (bridge) ──veth── b0, b1, ...
//!  198.18.0.1 + 198.18.1.1             198.18.1.10+i
//! ```
//! The addresses, routes, blackholes and sysctls match [`Lab::up`]'s, so
//! the same services file and servers work in both.

use super::*;

impl Lab {
    /// Builds the one-armed lab with single-queue veths (needs root). On
    /// error, what was built is removed.
    pub fn up_one_armed(spec: LabSpec) -> Result<Lab, String> {
        let mut lab = Lab::named(spec, true)?;
        // On error `lab` drops here and removes what was created.
        lab.build_one_armed(spec)?;
        Ok(lab)
    }

    fn build_one_armed(&mut self, spec: LabSpec) -> Result<(), String> {
        let all: Vec<String> = [&self.client, &self.gw, &self.switch]
            .into_iter()
            .cloned()
            .chain(self.backends.iter().cloned())
            .collect();
        for ns in &all {
            ip(&["netns", "add", ns])?;
            self.created.push(ns.clone());
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let (c, g, sw) = (&self.client, &self.gw, &self.switch);
        let mtu = spec.mtu.to_string();
        ip(&[
            "-n", sw, "link", "add", "br0", "mtu", &mtu, "type", "bridge",
        ])?;
        let mut ports: Vec<(&str, &str, String)> =
            vec![(c, "eth0", "pc".into()), (g, GW_ONE_ARMED_IF, "pgw".into())];
        for (i, b) in self.backends.iter().enumerate() {
            ports.push((b, "eth0", format!("pb{i}")));
        }
        for (ns, dev, port) in &ports {
            netns::veth_pair(ns, dev, sw, port, 1, spec.mtu)?;
            ip(&["-n", sw, "link", "set", port, "master", "br0"])?;
            ip(&["-n", sw, "link", "set", port, "up"])?;
            netns::set_offloads(sw, port, spec.offloads)?;
        }
        ip(&["-n", sw, "link", "set", "br0", "up"])?;

        let mut addrs: Vec<(&str, &str, String)> = vec![
            (c, "eth0", format!("{CLIENT_V4}/24")),
            (g, GW_ONE_ARMED_IF, format!("{GW_CLIENT_V4}/24")),
            (g, GW_ONE_ARMED_IF, format!("{GW_BACKEND_V4}/24")),
        ];
        for (i, b) in self.backends.iter().enumerate() {
            addrs.push((b, "eth0", format!("{}/24", backend_v4(i))));
        }
        if spec.ipv6 {
            addrs.push((c, "eth0", format!("{CLIENT_V6}/64")));
            addrs.push((g, GW_ONE_ARMED_IF, format!("{GW_CLIENT_V6}/64")));
            addrs.push((g, GW_ONE_ARMED_IF, format!("{GW_BACKEND_V6}/64")));
            for (i, b) in self.backends.iter().enumerate() {
                addrs.push((b, "eth0", format!("{}/64", backend_v6(i))));
            }
        }
        for (ns, dev, a) in &addrs {
            // nodad: the address is usable at once, not after ~2 s of DAD.
            let mut args = vec!["-n", ns, "addr", "add", a.as_str(), "dev", dev];
            if a.contains(':') {
                args.push("nodad");
            }
            ip(&args)?;
        }
        for (ns, dev, _) in &ports {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            netns::set_offloads(ns, dev, spec.offloads)?;
        }
        // Forwarding is off, so the kernel sends no redirects; keep it so
        // even if a benchmark turns forwarding on: client and backend are
        // on one segment, and a redirect would take the gateway out of
        // the path.
        netns::sysctl(g, "net/ipv4/conf/all/send_redirects", "0")?;
        netns::sysctl(
            g,
            &format!("net/ipv4/conf/{GW_ONE_ARMED_IF}/send_redirects"),
            "0",
        )?;
        self.routes(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_armed_gateway_has_one_interface() {
        let lab = Lab::named(LabSpec::default(), true).unwrap();
        assert_eq!(lab.gw_ifaces(), &[GW_ONE_ARMED_IF]);
        let two = Lab::named(LabSpec::default(), false).unwrap();
        assert_eq!(two.gw_ifaces(), &[GW_CLIENT_IF, GW_BACKEND_IF]);
        assert!(lab.namespaces().is_empty(), "nothing created yet");
    }

    #[test]
    fn one_armed_rejects_bad_backend_counts() {
        for n in [0, 201] {
            let e = Lab::up_one_armed(LabSpec {
                backends: n,
                ipv6: false,
                ..Default::default()
            });
            assert!(e.is_err(), "{n} backends accepted");
        }
    }
}
