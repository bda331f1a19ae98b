//! `/conntrack`: the flows every worker tracks, asked of the workers while
//! they run (see `dataplane::worker::dump`), filtered by VIP and client,
//! and the table `vipgate conntrack` prints from it.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use dataplane::worker::FlowRecord;
use serde_json::{json, Value};

use super::metrics::WorkerHandle;

/// Longest a listing waits for one worker: a worker walks a 1M-entry
/// table in well under a second when busy, a few seconds when idle.
const LISTING_TIMEOUT: Duration = Duration::from_secs(10);

/// Flows a listing returns unless told otherwise: about 25 MB of JSON.
pub const DEFAULT_LIMIT: usize = 100_000;

/// Which flows to list: an address matches every port, `addr:port` one;
/// at most `limit` of them (all matches are counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowFilter {
    pub vip: Option<Endpoint>,
    pub client: Option<Endpoint>,
    pub limit: usize,
}

impl Default for FlowFilter {
    fn default() -> Self {
        FlowFilter {
            vip: None,
            client: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Addr(IpAddr),
    Socket(SocketAddr),
}

impl Endpoint {
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        if let Ok(a) = s.parse::<IpAddr>() {
            return Ok(Endpoint::Addr(a));
        }
        s.parse::<SocketAddr>()
            .map(Endpoint::Socket)
            .map_err(|_| format!("'{s}' is not an address or address:port"))
    }

    fn matches(&self, addr: IpAddr, port: u16) -> bool {
        match self {
            Endpoint::Addr(a) => canonical(*a) == canonical(addr),
            Endpoint::Socket(s) => canonical(s.ip()) == canonical(addr) && s.port() == port,
        }
    }
}

/// IPv4-mapped IPv6 written by a user means the IPv4 address.
fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

impl FlowFilter {
    /// From a query string: `vip=A&client=B` (either, both or none).
    pub fn from_query(q: Option<&str>) -> Result<FlowFilter, String> {
        let mut f = FlowFilter::default();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "vip" => f.vip = Some(Endpoint::parse(&v)?),
                "client" => f.client = Some(Endpoint::parse(&v)?),
                "limit" => {
                    f.limit = v
                        .parse()
                        .map_err(|_| format!("limit '{v}' is not a number"))?
                }
                _ => return Err(format!("unknown parameter '{k}' (vip, client, limit)")),
            }
        }
        Ok(f)
    }

    /// As a query string for `/conntrack` (the inverse of `from_query`).
    pub fn to_query(&self) -> String {
        let show = |e: &Endpoint| match e {
            Endpoint::Addr(a) => a.to_string(),
            Endpoint::Socket(s) => s.to_string(),
        };
        let mut parts = Vec::new();
        if let Some(v) = &self.vip {
            parts.push(format!("vip={}", percent_encode(&show(v))));
        }
        if let Some(c) = &self.client {
            parts.push(format!("client={}", percent_encode(&show(c))));
        }
        if self.limit != DEFAULT_LIMIT {
            parts.push(format!("limit={}", self.limit));
        }
        parts.join("&")
    }

    fn keeps(&self, r: &FlowRecord) -> bool {
        let o = &r.original;
        self.vip.is_none_or(|v| v.matches(o.dst.to_ip(), o.dport))
            && self
                .client
                .is_none_or(|c| c.matches(o.src.to_ip(), o.sport))
    }
}

/// `[`, `]` and `:` of IPv6 addresses travel escaped in a query string.
pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Two hex digits exactly (from_str_radix alone would take "+F").
        let hex = b
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn endpoint(a: dataplane::addr::Addr, port: u16) -> String {
    SocketAddr::new(a.to_ip(), port).to_string()
}

fn record_json(worker: usize, r: &FlowRecord) -> Value {
    let o = &r.original;
    json!({
        "worker": worker,
        "proto": o.proto.name(),
        "client": endpoint(o.src, o.sport),
        "vip": endpoint(o.dst, o.dport),
        "backend": endpoint(r.backend, r.backend_port),
        "source_nat": r.snat.map(|(a, p)| endpoint(a, p)),
        "state": match (r.tcp, r.sctp) {
            (Some(t), _) => t.name(),
            (_, Some(s)) => s.name(),
            _ if r.replied => "REPLIED",
            _ => "UNREPLIED",
        },
        "replied": r.replied,
        "assured": r.assured,
        "expires_in_seconds": r.expires_in,
    })
}

/// Every worker's flows that `filter` keeps (at most `filter.limit`), as
/// `/conntrack` serves them.
pub fn flows_json(workers: &[WorkerHandle], filter: &FlowFilter) -> Result<Value, String> {
    let mut flows = Vec::new();
    let mut matched = 0usize;
    for (w, h) in workers.iter().enumerate() {
        let room = filter.limit.saturating_sub(flows.len());
        let (records, m) = h
            .flows
            .collect(LISTING_TIMEOUT, |r| filter.keeps(r), room)
            .map_err(|e| format!("worker {w}: {e}"))?;
        matched += m;
        flows.extend(records.iter().map(|r| record_json(w, r)));
    }
    Ok(json!({
        "count": flows.len(),
        "matched": matched,
        "truncated": matched > flows.len(),
        "flows": flows,
    }))
}

/// The table `vipgate conntrack` prints, one flow a line, like `conntrack -L`.
pub fn render_flows(v: &Value) -> String {
    let mut s = String::new();
    let flows = v["flows"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let cols = [
        "proto",
        "client",
        "vip",
        "backend",
        "source_nat",
        "state",
        "expires_in_seconds",
        "worker",
    ];
    let cell = |f: &Value, c: &str| match &f[c] {
        Value::String(x) => x.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let width: Vec<usize> = cols
        .iter()
        .map(|c| {
            flows
                .iter()
                .map(|f| cell(f, c).len())
                .chain([header(c).len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (c, w) in cols.iter().zip(&width) {
        let _ = write!(s, "{:<w$}  ", header(c));
    }
    s = s.trim_end().to_string();
    s.push('\n');
    for f in flows {
        let mut line = String::new();
        for (c, w) in cols.iter().zip(&width) {
            let _ = write!(line, "{:<w$}  ", cell(f, c));
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    let n = flows.len();
    let _ = write!(s, "{n} flow{}", if n == 1 { "" } else { "s" });
    match v["matched"].as_u64() {
        Some(m) if m > n as u64 => {
            let _ = writeln!(s, " (of {m} matching; raise --limit for more)");
        }
        _ => s.push('\n'),
    }
    s
}

fn header(col: &str) -> &str {
    match col {
        "expires_in_seconds" => "expires",
        "source_nat" => "snat",
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_from_queries_and_back() {
        let f = FlowFilter::from_query(Some("vip=198.19.0.10&client=198.18.0.1%3A40000")).unwrap();
        assert_eq!(f.vip, Some(Endpoint::Addr("198.19.0.10".parse().unwrap())));
        assert_eq!(
            f.client,
            Some(Endpoint::Socket("198.18.0.1:40000".parse().unwrap()))
        );
        assert_eq!(FlowFilter::from_query(Some(&f.to_query())).unwrap(), f);
        let v6 = FlowFilter::from_query(Some("vip=%5Bfd00%3A%3A10%5D%3A80")).unwrap();
        assert_eq!(
            v6.vip,
            Some(Endpoint::Socket("[fd00::10]:80".parse().unwrap()))
        );
        assert!(FlowFilter::from_query(Some("vip=nope"))
            .unwrap_err()
            .contains("'nope'"));
        assert!(FlowFilter::from_query(Some("port=1"))
            .unwrap_err()
            .contains("unknown parameter"));
        assert_eq!(FlowFilter::from_query(None).unwrap(), FlowFilter::default());
        let l = FlowFilter::from_query(Some("limit=5")).unwrap();
        assert_eq!(l.limit, 5);
        assert_eq!(FlowFilter::from_query(Some(&l.to_query())).unwrap(), l);
        assert!(FlowFilter::from_query(Some("limit=x")).is_err());
        // "%+F" is not an escape: kept as it is.
        assert_eq!(percent_decode("a%+Fb%41"), "a%+FbA");
    }

    #[test]
    fn an_ipv4_mapped_filter_matches_the_ipv4_flow() {
        let e = Endpoint::parse("::ffff:198.19.0.10").unwrap();
        assert!(e.matches("198.19.0.10".parse().unwrap(), 80));
        assert!(!e.matches("198.19.0.11".parse().unwrap(), 80));
    }

    #[test]
    fn the_table_has_a_line_per_flow_and_a_count() {
        let v = json!({"count": 1, "flows": [{
            "worker": 0, "proto": "TCP", "client": "198.18.0.1:40000",
            "vip": "198.19.0.10:80", "backend": "198.18.1.2:8080",
            "source_nat": null, "state": "ESTABLISHED", "expires_in_seconds": 431999,
        }]});
        let t = render_flows(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("proto"), "{t}");
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "TCP",
                "198.18.0.1:40000",
                "198.19.0.10:80",
                "198.18.1.2:8080",
                "-",
                "ESTABLISHED",
                "431999",
                "0"
            ]
        );
        assert_eq!(lines[2], "1 flow");
        let mut cut = v.clone();
        cut["matched"] = 7.into();
        assert!(render_flows(&cut).ends_with("1 flow (of 7 matching; raise --limit for more)\n"));
    }
}
