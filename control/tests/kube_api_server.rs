//! The test API server's wire protocol, checked with a hand-written HTTP
//! client so the kube client's tolerance cannot hide mistakes.

mod kube_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use control::test_api_server::{ApiServer, Resource};
use kube_common::*;
use serde_json::Value;

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let headers = String::from_utf8(raw[..split].to_vec()).unwrap();
    let status = headers[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 4 + size..];
    }
}

fn lines(body: &[u8]) -> Vec<Value> {
    body.split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn seeded() -> ApiServer {
    let server = ApiServer::start().unwrap();
    server.apply(svc("a", "one", 1)).unwrap();
    server.apply(svc("b", "two", 2)).unwrap();
    server.apply(slice("a", "one", 0)).unwrap();
    server
}

#[test]
fn list_is_a_real_list_object() {
    let server = seeded();
    let r = get(server.addr(), "/api/v1/services", Some(server.token()));
    assert_eq!(r.status, 200);
    assert!(r.headers.contains("application/json"));
    let list: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(list["kind"], "ServiceList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["metadata"]["resourceVersion"], "3");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let meta = &items[0]["metadata"];
    assert_eq!(meta["name"], "one");
    assert_eq!(meta["resourceVersion"], "1");
    assert!(meta["uid"].is_string() && meta["creationTimestamp"].is_string());

    let r = get(
        server.addr(),
        "/apis/discovery.k8s.io/v1/namespaces/b/endpointslices",
        Some(server.token()),
    );
    let list: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(list["kind"], "EndpointSliceList");
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

#[test]
fn requests_need_the_token_and_a_known_path() {
    let server = seeded();
    let r = get(server.addr(), "/api/v1/services", None);
    assert_eq!(r.status, 401);
    let status: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 401);
    assert_eq!(
        get(server.addr(), "/api/v1/pods", Some(server.token())).status,
        404
    );
    let bad = get(
        server.addr(),
        "/api/v1/services?limit=x",
        Some(server.token()),
    );
    assert_eq!(bad.status, 400);
}

#[test]
fn watch_streams_events_after_the_version() {
    let server = seeded();
    let path =
        "/api/v1/services?watch=true&resourceVersion=1&allowWatchBookmarks=true&timeoutSeconds=1";
    let addr = server.addr();
    let token = server.token().to_string();
    let reader = std::thread::spawn(move || get(addr, path, Some(&token)));
    eventually("the watch is open", WAIT, || server.open_watches() == 1);
    server.delete(Resource::Service, "b", "two").unwrap();
    server.send_bookmark();
    let r = reader.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.headers.to_ascii_lowercase().contains("chunked"));
    let events = lines(&r.body);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    // rv 2 (the "two" service) is replayed; rv 3 is a slice, not watched here.
    assert_eq!(kinds, ["ADDED", "DELETED", "BOOKMARK"]);
    assert_eq!(events[1]["object"]["metadata"]["resourceVersion"], "4");
    assert_eq!(events[2]["object"]["metadata"]["resourceVersion"], "4");
    assert_eq!(events[2]["object"]["kind"], "Service");
}

#[test]
fn watch_from_a_compacted_version_is_410_gone() {
    let server = seeded();
    server.apply(svc("a", "three", 3)).unwrap();
    server.compact();
    let r = get(
        server.addr(),
        "/api/v1/services?watch=1&resourceVersion=2",
        Some(server.token()),
    );
    assert_eq!(r.status, 200);
    let events = lines(&r.body);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
    // From the compaction point on, watching works.
    let r = get(
        server.addr(),
        "/api/v1/services?watch=1&resourceVersion=4&timeoutSeconds=1",
        Some(server.token()),
    );
    assert_eq!(r.status, 200);
    assert!(lines(&r.body).is_empty());
}

#[test]
fn paginated_list_walks_all_items() {
    let server = ApiServer::start().unwrap();
    server
        .apply_all((0..7).map(|i| svc("p", &format!("s{i}"), i)))
        .unwrap();
    let mut names = Vec::new();
    let mut path = "/api/v1/namespaces/p/services?limit=3".to_string();
    loop {
        let r = get(server.addr(), &path, Some(server.token()));
        assert_eq!(r.status, 200);
        let list: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(list["metadata"]["resourceVersion"], "7");
        for i in list["items"].as_array().unwrap() {
            names.push(i["metadata"]["name"].as_str().unwrap().to_string());
        }
        match list["metadata"]["continue"].as_str() {
            Some(c) => path = format!("/api/v1/namespaces/p/services?limit=3&continue={c}"),
            None => break,
        }
    }
    assert_eq!(names, ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]);
}

#[test]
fn pause_refuses_connections_and_resume_serves_again() {
    let mut server = seeded();
    let addr = server.addr();
    server.pause();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
    server.apply(svc("a", "while-paused", 9)).unwrap();
    server.resume().unwrap();
    assert_eq!(server.addr(), addr);
    let r = get(addr, "/api/v1/namespaces/a/services", Some(server.token()));
    let list: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    server.shutdown();
}

#[test]
fn kubeconfig_points_at_the_server() {
    let server = seeded();
    let dir = Scratch::new("kc");
    let path = server.write_kubeconfig(&dir.0).unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let cluster = kc.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.server.as_deref(), Some(server.url().as_str()));
    assert!(kc.current_context.is_some());
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains(server.token()));
}
