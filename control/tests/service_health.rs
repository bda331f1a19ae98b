//! The healthCheckNodePort listeners on loopback, following a changing
//! set of health checks: 200 / 503 by local endpoints and readiness,
//! kube-proxy's headers, a port change, a removal, a port in use.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use control::admin::Health;
use control::model::HealthCheck;
use control::service_health::ServiceHealthServer;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A port free right now on loopback.
fn free_port() -> u16 {
    TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check(name: &str, port: u16, local_endpoints: usize) -> HealthCheck {
    HealthCheck {
        namespace: "shop".into(),
        name: name.into(),
        port,
        local_endpoints,
    }
}

/// The raw answer to `GET path` (status line, headers, body), or the
/// connection error.
fn get(port: u16, path: &str) -> std::io::Result<String> {
    let addr = SocketAddr::from((LOOPBACK, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: lb-probe\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn status(resp: &str) -> &str {
    resp.split(' ').nth(1).unwrap_or("")
}

fn body(resp: &str) -> serde_json::Value {
    let (_, b) = resp.split_once("\r\n\r\n").expect("headers end");
    serde_json::from_str(b).unwrap_or_else(|e| panic!("{e}: {b:?}"))
}

#[test]
fn listeners_follow_the_health_checks() {
    let health = Arc::new(Health::new());
    health.set_synced(true);
    health.set_attached(true);
    let server = ServiceHealthServer::start(vec![LOOPBACK], Arc::clone(&health)).unwrap();
    let (p1, p2, p3) = (free_port(), free_port(), free_port());

    assert!(server
        .sync(&[check("edge", p1, 2), check("idle", p2, 0)])
        .is_empty());
    let r = get(p1, "/healthz").unwrap();
    assert_eq!(status(&r), "200", "{r}");
    let lower = r.to_ascii_lowercase();
    assert!(lower.contains("content-type: application/json\r\n"), "{r}");
    assert!(lower.contains("x-content-type-options: nosniff\r\n"), "{r}");
    assert!(
        lower.contains("x-load-balancing-endpoint-weight: 2\r\n"),
        "{r}"
    );
    let b = body(&r);
    assert_eq!(b["service"]["namespace"], "shop");
    assert_eq!(b["service"]["name"], "edge");
    assert_eq!(b["localEndpoints"], 2);
    assert_eq!(b["serviceProxyHealthy"], true);
    // Any path answers.
    assert_eq!(status(&get(p1, "/anything/else").unwrap()), "200");
    let r = get(p2, "/").unwrap();
    assert_eq!(status(&r), "503", "{r}");
    assert_eq!(body(&r)["localEndpoints"], 0);

    // Counts change in place; the gateway not ready makes every check fail.
    server.sync(&[check("edge", p1, 0), check("idle", p2, 1)]);
    assert_eq!(status(&get(p1, "/").unwrap()), "503");
    assert_eq!(status(&get(p2, "/").unwrap()), "200");
    health.set_attached(false);
    let r = get(p2, "/").unwrap();
    assert_eq!(status(&r), "503");
    assert_eq!(body(&r)["serviceProxyHealthy"], false);
    health.set_attached(true);

    // Port moved, Service removed: the old listeners are closed at once.
    server.sync(&[check("edge", p3, 1)]);
    assert_eq!(status(&get(p3, "/").unwrap()), "200");
    let gone = |p| get(p, "/").map_err(|e| e.kind()) == Err(std::io::ErrorKind::ConnectionRefused);
    assert!(gone(p1), "old port of edge still answers");
    assert!(gone(p2), "removed Service still answers");
    assert_eq!(
        server.listening(),
        vec![(
            "shop".to_string(),
            "edge".to_string(),
            vec![SocketAddr::from((LOOPBACK, p3))]
        )]
    );

    server.sync(&[]);
    assert!(gone(p3));
    assert!(server.listening().is_empty());
    server.stop();
}

#[test]
fn a_port_in_use_is_warned_once_and_retried() {
    let health = Arc::new(Health::new());
    let server = ServiceHealthServer::start(vec![LOOPBACK], health).unwrap();
    let taken = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();

    let w = server.sync(&[check("edge", port, 1)]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("shop/edge") && w[0].contains(&format!("healthCheckNodePort {port}")),
        "{w:?}"
    );
    assert!(
        server.sync(&[check("edge", port, 1)]).is_empty(),
        "warned twice"
    );
    assert!(server.listening().is_empty());

    // Freed: the next sync opens it (not ready yet: 503).
    drop(taken);
    assert!(server.sync(&[check("edge", port, 1)]).is_empty());
    assert_eq!(status(&get(port, "/").unwrap()), "503");
}
