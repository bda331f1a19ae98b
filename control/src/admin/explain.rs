//! `/explain` and `vipgate explain`: a flow question (client, VIP:port,
//! protocol) parsed, answered from a table with `dataplane::explain`, and
//! written as JSON or as the lines `vipgate explain` prints.

use std::fmt::Write;
use std::net::SocketAddr;

use dataplane::addr::{Addr, Proto, Tuple};
use dataplane::explain::{endpoint, explain, Explanation};
use dataplane::service::{Affinity, BackendState, NoEndpoints};
use dataplane::table::ServiceTable;
use serde_json::{json, Value};

/// A new flow to explain: `client` (addr:port) to `vip` (addr:port) over
/// `proto` (tcp, udp or sctp).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Question {
    pub client: SocketAddr,
    pub vip: SocketAddr,
    pub proto: Proto,
}

impl Question {
    /// `client` as `addr:port`; `vip` as `addr:port` or
    /// `addr:port/tcp|udp|sctp` (default tcp).
    pub fn parse(client: &str, vip: &str) -> Result<Question, String> {
        let client: SocketAddr = client
            .parse()
            .map_err(|_| format!("client '{client}' is not address:port"))?;
        let (v, p) = vip.rsplit_once('/').unwrap_or((vip, "tcp"));
        let proto = match p.to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "sctp" => Proto::Sctp,
            _ => return Err(format!("protocol '{p}' is not tcp, udp or sctp")),
        };
        let vip: SocketAddr = v
            .parse()
            .map_err(|_| format!("VIP '{v}' is not address:port[/tcp|udp|sctp]"))?;
        if client.is_ipv4() != vip.is_ipv4() {
            return Err("the client and the VIP must be of one address family".into());
        }
        let mapped = |a: &SocketAddr| match a.ip() {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
            _ => false,
        };
        if mapped(&client) || mapped(&vip) {
            return Err(
                "IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) never reach a Service: \
                 the gateway passes such packets; ask with the IPv4 address"
                    .into(),
            );
        }
        Ok(Question { client, vip, proto })
    }

    /// From `/explain?client=A:P&vip=A:P&proto=tcp`.
    pub fn from_query(q: Option<&str>) -> Result<Question, String> {
        let (mut client, mut vip, mut proto) = (None, None, "tcp".to_string());
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = super::flows::percent_decode(v);
            match k {
                "client" => client = Some(v),
                "vip" => vip = Some(v),
                "proto" => proto = v,
                _ => return Err(format!("unknown parameter '{k}' (client, vip, proto)")),
            }
        }
        let client = client.ok_or("client=ADDR:PORT is required")?;
        let vip = vip.ok_or("vip=ADDR:PORT is required")?;
        Question::parse(&client, &format!("{vip}/{proto}"))
    }

    pub fn to_query(&self) -> String {
        let enc = super::flows::percent_encode;
        format!(
            "client={}&vip={}&proto={}",
            enc(&self.client.to_string()),
            enc(&self.vip.to_string()),
            self.proto.name().to_ascii_lowercase()
        )
    }

    fn tuple(&self) -> Tuple {
        let addr = |a: SocketAddr| match a.ip() {
            std::net::IpAddr::V4(v4) => Addr::from_v4(v4.octets()),
            std::net::IpAddr::V6(v6) => Addr::from_v6(v6.octets()),
        };
        Tuple {
            src: addr(self.client),
            dst: addr(self.vip),
            sport: self.client.port(),
            dport: self.vip.port(),
            proto: self.proto,
        }
    }
}

fn state_name(s: BackendState) -> &'static str {
    match s {
        BackendState::Ready => "ready",
        BackendState::ServingTerminating => "serving_terminating",
        BackendState::NotServing => "not_serving",
    }
}

/// The answer as JSON (what `/explain` serves).
pub fn explain_json(table: &ServiceTable, q: &Question) -> Value {
    let flow = json!({
        "client": q.client.to_string(),
        "vip": q.vip.to_string(),
        "proto": q.proto.name(),
        "generation": table.generation(),
    });
    match explain(table, &q.tuple()) {
        Explanation::NoService { vip_known } => json!({
            "flow": flow,
            "verdict": "passed",
            "why": if vip_known {
                "the VIP is a Service address, but no Service port matches this port and protocol: handed to the kernel"
            } else {
                "no Service has this address: handed to the kernel"
            },
        }),
        Explanation::OutsideSourceRanges { service } => json!({
            "flow": flow,
            "service": service,
            "verdict": "dropped",
            "why": "the client is outside the Service's loadBalancerSourceRanges for this load-balancer IP: new flows are dropped (counted as source_range)",
        }),
        Explanation::Retired { service } => json!({
            "flow": flow,
            "service": service,
            "verdict": "passed",
            "why": "the Service port was removed: its established TCP flows keep their backends until they end, new flows are handed to the kernel",
        }),
        Explanation::NoBackend {
            service,
            backends,
            no_endpoints,
        } => json!({
            "flow": flow,
            "service": service,
            "verdict": match no_endpoints {
                NoEndpoints::Reject => "rejected",
                NoEndpoints::Drop => "dropped",
            },
            "why": match no_endpoints {
                NoEndpoints::Reject => match q.proto {
                    Proto::Tcp => "no backend is ready or serving: answered with a TCP RST or ICMP port unreachable (--reject-tcp)",
                    Proto::Sctp => "no backend is ready or serving: answered with an SCTP ABORT (RFC 9260 8.4)",
                    _ => "no backend is ready or serving: answered with ICMP port unreachable",
                },
                NoEndpoints::Drop => "its Local traffic policy leaves no endpoint on this node (the Service has some elsewhere): dropped, as kube-proxy does",
            },
            "backends": backends.iter().map(|b| json!({
                "backend": endpoint(b.addr, b.port), "state": state_name(b.state), "weight": b.weight,
            })).collect::<Vec<_>>(),
        }),
        Explanation::Picked(p) => json!({
            "flow": flow,
            "service": p.service,
            "verdict": "forwarded",
            "affinity": match p.affinity {
                Affinity::None => "None".to_string(),
                Affinity::ClientIp { timeout_s } => format!("ClientIP ({timeout_s} s)"),
            },
            "hashed": p.hashed,
            "hash": format!("{:#018x}", p.hash),
            "ring_size": p.ring_size,
            "slot": p.slot,
            "backend": endpoint(p.backend.addr, p.backend.port),
            "why": if p.fallback_to_terminating {
                "no backend is ready: serving, terminating backends take new flows (kube-proxy's fallback)"
            } else {
                "ready backends take new flows; the slot's owner is the backend"
            },
            "backends": p.shares.iter().map(|(b, slots)| json!({
                "backend": endpoint(b.addr, b.port), "state": state_name(b.state),
                "weight": b.weight, "slots": slots,
            })).collect::<Vec<_>>(),
            "forwarding": match p.snat {
                None => "dnat: the backend sees the client's address",
                Some("hairpin") => "snat (hairpin: the backend is the client itself): the backend sees a gateway address and port",
                Some(_) => "snat: the backend sees a gateway address and port",
            },
            "reply": match p.snat {
                None => format!(
                    "{} -> {} ({}), reverse-NATed to {} -> {}",
                    endpoint(p.reply.src, p.reply.sport),
                    endpoint(p.reply.dst, p.reply.dport),
                    p.reply.proto.name(),
                    q.vip,
                    q.client
                ),
                Some(_) => format!(
                    "{} -> the gateway's source-NAT address and port ({}), reverse-NATed to {} -> {}",
                    endpoint(p.reply.src, p.reply.sport),
                    p.reply.proto.name(),
                    q.vip,
                    q.client
                ),
            },
            "note": "for a new flow; a flow already tracked keeps its backend (vipgate conntrack)",
        }),
    }
}

/// The lines `vipgate explain` prints.
pub fn render_explain(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut out = String::new();
    let f = &v["flow"];
    let _ = writeln!(
        out,
        "flow       {} -> {} {} (table generation {})",
        f["client"].as_str().unwrap_or(""),
        f["vip"].as_str().unwrap_or(""),
        f["proto"].as_str().unwrap_or(""),
        f["generation"]
    );
    if v.get("service").is_some() {
        let _ = writeln!(out, "service    {}", s("service"));
    }
    let _ = writeln!(out, "verdict    {}: {}", s("verdict"), s("why"));
    if s("verdict") == "forwarded" {
        let _ = writeln!(
            out,
            "pick       hash of the {} = {}, slot {} of {} -> {}",
            s("hashed"),
            s("hash"),
            v["slot"],
            v["ring_size"],
            s("backend")
        );
        let _ = writeln!(out, "affinity   {}", s("affinity"));
        let _ = writeln!(out, "forwarding {}", s("forwarding"));
    }
    if let Some(bs) = v["backends"].as_array() {
        for b in bs {
            let slots = b
                .get("slots")
                .map(|n| format!(", {n} slots"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "backend    {} {} (weight {}{slots})",
                b["backend"].as_str().unwrap_or(""),
                b["state"].as_str().unwrap_or(""),
                b["weight"]
            );
        }
    }
    if v.get("reply").is_some() {
        let _ = writeln!(out, "reply      {}", s("reply"));
        let _ = writeln!(out, "note       {}", s("note"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_parse_and_bad_ones_say_why() {
        let q = Question::parse("198.18.0.1:40000", "198.19.0.10:53/udp").unwrap();
        assert_eq!(q.proto, Proto::Udp);
        assert_eq!(Question::from_query(Some(&q.to_query())).unwrap(), q);
        let q = Question::parse("198.18.0.1:40000", "198.19.0.10:3868/SCTP").unwrap();
        assert_eq!(q.proto, Proto::Sctp);
        assert_eq!(Question::from_query(Some(&q.to_query())).unwrap(), q);
        assert_eq!(
            Question::parse("198.18.0.1:1", "198.19.0.10:80")
                .unwrap()
                .proto,
            Proto::Tcp
        );
        assert!(Question::parse("198.18.0.1", "198.19.0.10:80")
            .unwrap_err()
            .contains("client"));
        assert!(Question::parse("198.18.0.1:1", "198.19.0.10:80/dccp")
            .unwrap_err()
            .contains("not tcp, udp or sctp"));
        assert!(Question::parse("198.18.0.1:1", "[fd00::1]:80")
            .unwrap_err()
            .contains("family"));
        assert!(
            Question::parse("[::ffff:198.18.0.1]:1", "[::ffff:198.19.0.10]:80")
                .unwrap_err()
                .contains("IPv4-mapped")
        );
        assert!(Question::from_query(Some("vip=198.19.0.10%3A80"))
            .unwrap_err()
            .contains("client"));
    }
}
