//! The kernel's own Service paths, written the way kube-proxy writes them,
//! so the lab compares vipgate with what a cluster would otherwise run:
//!
//! - iptables mode: `nat PREROUTING -> KUBE-SERVICES`, one rule per
//!   service jumping to `KUBE-SVC-*`, which picks an endpoint with
//!   `-m statistic --mode random --probability 1/k` and jumps to
//!   `KUBE-SEP-*`, which DNATs. A linear chain: the first packet of a new
//!   flow walks KUBE-SERVICES rule by rule.
//! - nftables mode: table `ip kube-proxy` whose `service-ips` verdict map
//!   (`ipv4_addr . inet_proto . inet_service`) goes to a per-service chain
//!   doing `numgen random mod k vmap` to endpoint chains that `dnat to`.
//!   One hash lookup whatever the service count.
//!
//! Both are loaded in one call (iptables-restore, nft -f), as kube-proxy
//! does. Chain names carry hashes like kube-proxy's (FNV here, SHA-256
//! there: only their shape matters).

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::Stdio;

use crate::lab::Lab;

use super::services::{LabService, SERVICE_PORT, TARGET_PORT};

/// kube-proxy's masquerade mark bit.
const MASQ_MARK: &str = "0x4000";
/// The nftables table kube-proxy owns.
pub const NFT_TABLE: &str = "kube-proxy";

/// Base32 (RFC 4648 alphabet) of a 128-bit FNV-1a pair, cut to `len`
/// characters: the shape of kube-proxy's chain-name hashes.
fn hash32(s: &str, len: usize) -> String {
    const ALPHA: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let fnv = |seed: u64| {
        s.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let v = (u128::from(fnv(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(fnv(0x84222325cbf29ce4));
    (0..len.min(25))
        .map(|i| ALPHA[((v >> (5 * i)) & 31) as usize] as char)
        .collect()
}

/// The order kube-proxy would list services in KUBE-SERVICES: it walks a
/// Go map, so the measured service (index 0) sits at a random position;
/// we put it in the middle, the expected cost of that walk.
fn iptables_order(n: usize) -> Vec<usize> {
    let mid = n / 2;
    let mut v: Vec<usize> = (1..n).collect();
    v.insert(mid.min(v.len()), 0);
    v
}

/// kube-proxy's `namespace/name:port` (the port is named like its protocol).
fn svc_port_name(s: &LabService) -> String {
    format!("lab/{}:{}", s.name, s.proto.lower())
}

/// iptables-restore input for the nat table (replaces the whole table).
pub fn iptables_rules(svcs: &[LabService]) -> String {
    let mut chains = String::new();
    let mut rules = String::new();
    let _ = writeln!(chains, "*nat");
    for c in ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"] {
        let _ = writeln!(chains, ":{c} ACCEPT [0:0]");
    }
    for c in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        let _ = writeln!(chains, ":{c} - [0:0]");
    }
    let _ = writeln!(
        rules,
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --set-xmark {MASQ_MARK}/{MASQ_MARK}\n\
         -A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --set-xmark {MASQ_MARK}/0x0\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
    );
    let mut services = String::new();
    for &i in &iptables_order(svcs.len()) {
        let s = &svcs[i];
        let spn = svc_port_name(s);
        let p = s.proto.lower();
        let svc_chain = format!("KUBE-SVC-{}", hash32(&format!("{spn}{p}"), 16));
        let _ = writeln!(chains, ":{svc_chain} - [0:0]");
        let _ = writeln!(
            services,
            "-A KUBE-SERVICES -d {}/32 -p {p} -m comment --comment \"{spn} cluster IP\" -m {p} --dport {SERVICE_PORT} -j {svc_chain}",
            s.vip
        );
        let k = s.backends.len();
        for (j, b) in s.backends.iter().enumerate() {
            let ep = format!("{b}:{TARGET_PORT}");
            let sep = format!("KUBE-SEP-{}", hash32(&format!("{spn}{p}{ep}"), 16));
            let _ = writeln!(chains, ":{sep} - [0:0]");
            // kube-proxy: endpoint j of k is taken with probability
            // 1/(k-j) among those left; the last one unconditionally.
            if j + 1 < k {
                let _ = writeln!(
                    rules,
                    "-A {svc_chain} -m comment --comment \"{spn} -> {ep}\" -m statistic --mode random --probability {:.11} -j {sep}",
                    1.0 / (k - j) as f64
                );
            } else {
                let _ = writeln!(
                    rules,
                    "-A {svc_chain} -m comment --comment \"{spn} -> {ep}\" -j {sep}"
                );
            }
            let _ = writeln!(
                rules,
                "-A {sep} -s {b}/32 -m comment --comment \"{spn}\" -j KUBE-MARK-MASQ\n\
                 -A {sep} -p {p} -m comment --comment \"{spn}\" -m {p} -j DNAT --to-destination {ep}"
            );
        }
    }
    let _ = writeln!(
        services,
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    );
    format!("{chains}{services}{rules}COMMIT\n")
}

/// `nft -f` input: (re)creates table `ip kube-proxy` from scratch.
pub fn nft_rules(svcs: &[LabService]) -> String {
    let mut s = String::new();
    // Declaring then deleting makes the load idempotent: the table is
    // replaced atomically whether it existed or not.
    let _ = writeln!(
        s,
        "add table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\ntable ip {NFT_TABLE} {{"
    );
    let _ = writeln!(
        s,
        "  chain mark-for-masquerade {{\n    mark set mark or {MASQ_MARK}\n  }}\n\
         \x20 chain masquerading {{\n    type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   mark and {MASQ_MARK} == 0 return\n    mark set mark xor {MASQ_MARK}\n    masquerade fully-random\n  }}\n\
         \x20 chain nat-prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    jump services\n  }}\n\
         \x20 chain services {{\n    ip daddr . meta l4proto . th dport vmap @service-ips\n  }}"
    );
    let mut elements = Vec::with_capacity(svcs.len());
    for svc in svcs {
        let p = svc.proto.lower();
        let tail = format!("lab/{}/{p}/{p}", svc.name);
        let chain = format!("service-{}-{tail}", hash32(&tail, 8));
        elements.push(format!("{} . {p} . {SERVICE_PORT} : goto {chain}", svc.vip));
        let mut eps = Vec::with_capacity(svc.backends.len());
        for (j, b) in svc.backends.iter().enumerate() {
            let ep_tail = format!("{tail}__{b}/{TARGET_PORT}");
            let ep_chain = format!("endpoint-{}-{ep_tail}", hash32(&ep_tail, 8));
            let _ = writeln!(
                s,
                "  chain {ep_chain} {{\n    ip saddr {b} jump mark-for-masquerade\n    meta l4proto {p} dnat to {b}:{TARGET_PORT}\n  }}"
            );
            eps.push(format!("{j} : goto {ep_chain}"));
        }
        let _ = writeln!(
            s,
            "  chain {chain} {{\n    numgen random mod {} vmap {{ {} }}\n  }}",
            svc.backends.len(),
            eps.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "  map service-ips {{\n    type ipv4_addr . inet_proto . inet_service : verdict\n    elements = {{ {} }}\n  }}\n}}",
        elements.join(",\n      ")
    );
    s
}

/// Runs `program args` in `ns` with `input` on stdin.
fn feed(ns: &str, program: &str, args: &[&str], input: &str) -> Result<(), String> {
    let mut child = Lab::command(ns, program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e} (is it installed?)"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let wrote = stdin.write_all(input.as_bytes());
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    wrote.map_err(|e| format!("{program}: writing the rules: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err: String = err.lines().take(5).collect::<Vec<_>>().join("; ");
        return Err(format!("{program} {}: {err}", args.join(" ")));
    }
    Ok(())
}

/// Loads the iptables rules into `ns` in one iptables-restore call.
pub fn load_iptables(ns: &str, svcs: &[LabService]) -> Result<(), String> {
    feed(ns, "iptables-restore", &["-w"], &iptables_rules(svcs))
}

/// Empties `ns`'s nat table (one iptables-restore call).
pub fn flush_iptables(ns: &str) -> Result<(), String> {
    let mut s = String::from("*nat\n");
    for c in ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"] {
        let _ = writeln!(s, ":{c} ACCEPT [0:0]");
    }
    s.push_str("COMMIT\n");
    feed(ns, "iptables-restore", &["-w"], &s)
}

/// Loads the nftables rules into `ns` in one `nft -f` call.
pub fn load_nft(ns: &str, svcs: &[LabService]) -> Result<(), String> {
    feed(ns, "nft", &["-f", "-"], &nft_rules(svcs))
}

/// Removes the kube-proxy table from `ns`.
pub fn flush_nft(ns: &str) -> Result<(), String> {
    feed(
        ns,
        "nft",
        &["-f", "-"],
        &format!("add table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n"),
    )
}

/// The first line of `program flag` (e.g. `--version`), for the report.
pub fn tool_version(program: &str, flag: &str) -> String {
    std::process::Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .and_then(|o| {
            let s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.lines().next().map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::super::services::services;
    use super::*;
    use std::net::Ipv4Addr;

    fn svcs(n: usize) -> Vec<LabService> {
        services(
            n,
            &[
                Ipv4Addr::new(198, 18, 1, 10),
                Ipv4Addr::new(198, 18, 1, 11),
                Ipv4Addr::new(198, 18, 1, 12),
            ],
        )
        .unwrap()
    }

    #[test]
    fn iptables_has_kube_proxy_shape_for_every_service() {
        let s = svcs(5);
        let r = iptables_rules(&s);
        assert!(r.starts_with("*nat\n") && r.ends_with("COMMIT\n"));
        assert_eq!(
            r.matches("-A PREROUTING").count(),
            1,
            "one jump to KUBE-SERVICES"
        );
        assert_eq!(r.matches("-A KUBE-SERVICES -d ").count(), 5);
        assert_eq!(r.matches("-j DNAT --to-destination").count(), 15);
        for svc in &s {
            assert!(
                r.contains(&format!("-d {}/32 -p udp", svc.vip)),
                "{}",
                svc.vip
            );
        }
        // 3 endpoints: 1/3, then 1/2, then unconditional.
        assert_eq!(r.matches("--probability 0.33333333333").count(), 5);
        assert_eq!(r.matches("--probability 0.50000000000").count(), 5);
        // Every chain jumped to is declared exactly once.
        for line in r.lines().filter(|l| l.starts_with("-A ")) {
            if let Some(target) = line.split(" -j ").nth(1) {
                let target = target.split_whitespace().next().unwrap();
                if target.starts_with("KUBE-") {
                    assert_eq!(r.matches(&format!("\n:{target} ")).count(), 1, "{target}");
                }
            }
        }
        // The nodeports rule stays last in KUBE-SERVICES.
        let svc_rules: Vec<&str> = r
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES"))
            .collect();
        assert!(svc_rules.last().unwrap().contains("KUBE-NODEPORTS"));
    }

    #[test]
    fn the_measured_service_sits_mid_chain() {
        let s = svcs(101);
        let r = iptables_rules(&s);
        let svc_rules: Vec<&str> = r
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES -d"))
            .collect();
        let pos = svc_rules
            .iter()
            .position(|l| l.contains(&format!("-d {}/32", s[0].vip)))
            .unwrap();
        assert_eq!(pos, 50);
        assert_eq!(iptables_order(1), vec![0]);
    }

    #[test]
    fn nft_has_one_map_entry_and_chain_per_service() {
        let s = svcs(4);
        let r = nft_rules(&s);
        assert_eq!(r.matches(" . udp . 80 : goto service-").count(), 4);
        assert_eq!(r.matches("numgen random mod 3 vmap").count(), 4);
        assert_eq!(r.matches("dnat to 198.18.1.").count(), 12);
        assert_eq!(r.matches("type nat hook prerouting").count(), 1);
        // Every chain a verdict names is defined.
        for target in r.split("goto ").skip(1) {
            let name: String = target
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ',' && *c != '}')
                .collect();
            assert_eq!(r.matches(&format!("chain {name} {{")).count(), 1, "{name}");
        }
        assert_eq!(r.matches('{').count(), r.matches('}').count());
    }

    #[test]
    fn tcp_services_get_tcp_rules_in_both_modes() {
        use super::super::services::{services_of, Proto};
        let s = services_of(Proto::Tcp, 2, &[Ipv4Addr::new(198, 18, 1, 10)]).unwrap();
        let n = nft_rules(&s);
        assert_eq!(n.matches(" . tcp . 80 : goto service-").count(), 2);
        assert_eq!(n.matches("meta l4proto tcp dnat to").count(), 2);
        assert!(!n.contains("udp"), "{n}");
        let i = iptables_rules(&s);
        assert_eq!(i.matches("-p tcp -m comment").count(), 4);
        assert_eq!(i.matches("-m tcp --dport 80").count(), 2);
        assert!(!i.contains("udp"), "{i}");
    }

    #[test]
    fn chain_hashes_are_stable_and_distinct() {
        assert_eq!(hash32("a", 16), hash32("a", 16));
        assert_ne!(hash32("lab/svc-1:udp", 16), hash32("lab/svc-2:udp", 16));
        assert_eq!(hash32("x", 8).len(), 8);
        assert!(hash32("x", 16).bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
