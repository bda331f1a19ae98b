//! The human table `vipgate services` prints from a `/services` document.
//! It reads the JSON rather than the table types so the CLI shows exactly
//! what a running gateway reports; missing fields print as `?`.

use serde_json::Value;

const HEADERS: [&str; 6] = [
    "SERVICE",
    "VIP:PORT/PROTO",
    "M",
    "BACKENDS",
    "FORWARDING",
    "AFFINITY",
];
/// Indent of the per-backend lines under their service.
const INDENT: &str = "    ";

/// One line per service (BACKENDS is ready/total), then an indented line
/// per backend: endpoint, state, weight, and whether it takes new flows.
pub fn render_services_table(json: &Value) -> String {
    let Some(services) = json.get("services").and_then(Value::as_array) else {
        return "malformed /services response: no \"services\" list\n".to_string();
    };
    let generation = json
        .get("generation")
        .and_then(Value::as_u64)
        .map_or("?".to_string(), |g| g.to_string());
    let mut out = format!(
        "generation {generation}, {} service{}\n",
        services.len(),
        if services.len() == 1 { "" } else { "s" }
    );
    if services.is_empty() {
        return out;
    }

    let rows: Vec<[String; 6]> = services.iter().map(service_row).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let backend_lines: Vec<Vec<[String; 4]>> = services.iter().map(backend_rows).collect();
    let mut bwidths = [0usize; 4];
    for row in backend_lines.iter().flatten() {
        for (w, cell) in bwidths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }

    push_row(&mut out, "", &HEADERS.map(String::from), &widths);
    for (row, backends) in rows.iter().zip(&backend_lines) {
        push_row(&mut out, "", row, &widths);
        for b in backends {
            push_row(&mut out, INDENT, b, &bwidths);
        }
    }
    out
}

fn push_row(out: &mut String, indent: &str, cells: &[String], widths: &[usize]) {
    let mut line = String::from(indent);
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        line.push_str(cell);
        let pad = w.saturating_sub(cell.chars().count());
        line.extend(std::iter::repeat_n(' ', pad));
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

fn service_row(svc: &Value) -> [String; 6] {
    let backends = svc.get("backends").and_then(Value::as_array);
    let counts = match backends {
        Some(list) => {
            let ready = list
                .iter()
                .filter(|b| b.get("state").and_then(Value::as_str) == Some("ready"))
                .count();
            format!("{ready}/{}", list.len())
        }
        None => "?".to_string(),
    };
    let affinity = match (
        text(svc, "affinity").as_str(),
        svc.get("affinity_timeout_s").and_then(Value::as_u64),
    ) {
        (a, Some(t)) => format!("{a} {t}s"),
        (a, None) => a.to_string(),
    };
    let mut name = text(svc, "name");
    if svc.get("retired").and_then(Value::as_bool) == Some(true) {
        // Removed, still finishing its TCP flows: say so next to the name.
        name.push_str(" (retired)");
    }
    [
        name,
        format!("{}/{}", endpoint(svc, "vip"), text(svc, "protocol")),
        text(svc, "table_size"),
        counts,
        text(svc, "forwarding"),
        affinity,
    ]
}

fn backend_rows(svc: &Value) -> Vec<[String; 4]> {
    let Some(list) = svc.get("backends").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|b| {
            let active = match b.get("active").and_then(Value::as_bool) {
                Some(true) => "active",
                Some(false) => "-",
                None => "?",
            };
            [
                endpoint(b, "addr"),
                text(b, "state"),
                format!("weight {}", text(b, "weight")),
                active.to_string(),
            ]
        })
        .collect()
}

/// `addr:port`, IPv6 in brackets.
fn endpoint(v: &Value, addr_field: &str) -> String {
    let addr = text(v, addr_field);
    let port = text(v, "port");
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// A scalar field as text; `?` when missing or not a scalar.
fn text(v: &Value, field: &str) -> String {
    match v.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_services_and_backends_aligned() {
        let doc = json!({
            "generation": 7,
            "services": [
                {"name": "default/web:http", "vip": "198.19.0.1", "port": 80, "protocol": "TCP",
                 "affinity": "None", "affinity_timeout_s": null, "table_size": 307,
                 "forwarding": "snat",
                 "backends": [
                    {"addr": "198.18.1.1", "port": 8080, "weight": 1, "state": "ready", "active": true},
                    {"addr": "198.18.1.2", "port": 8080, "weight": 1, "state": "serving-terminating", "active": false}
                 ]},
                {"name": "ns/dns:dns", "vip": "fd00::10", "port": 53, "protocol": "UDP",
                 "affinity": "ClientIP", "affinity_timeout_s": 10800, "table_size": 101,
                 "forwarding": "dnat", "backends": []}
            ]
        });
        let out = render_services_table(&doc);
        let expected = "\
generation 7, 2 services
SERVICE           VIP:PORT/PROTO     M    BACKENDS  FORWARDING  AFFINITY
default/web:http  198.19.0.1:80/TCP  307  1/2       snat        None
    198.18.1.1:8080  ready                weight 1  active
    198.18.1.2:8080  serving-terminating  weight 1  -
ns/dns:dns        [fd00::10]:53/UDP  101  0/0       dnat        ClientIP 10800s
";
        assert_eq!(out, expected);
    }

    #[test]
    fn malformed_documents_do_not_panic() {
        assert!(render_services_table(&json!(null)).starts_with("malformed"));
        assert!(render_services_table(&json!({"services": 3})).starts_with("malformed"));
        let out = render_services_table(&json!({"services": [{"backends": [{}]}, 5]}));
        assert_eq!(out.lines().next(), Some("generation ?, 2 services"));
        assert!(out.contains("?:?/?"), "{out}");
        assert!(out.contains("    ?:?  ?  weight ?  ?"), "{out}");
    }

    #[test]
    fn empty_listing_is_one_line() {
        assert_eq!(
            render_services_table(&json!({"generation": 1, "services": []})),
            "generation 1, 0 services\n"
        );
    }
}
