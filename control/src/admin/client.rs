//! A blocking HTTP/1.1 client for the admin endpoint, on std sockets: the
//! CLI subcommands stay free of tokio, and the admin server's replies are
//! small and local, so a one-request `Connection: close` exchange is enough.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Connect, write and read deadlines each. The server is local; anything
/// slower means it is wedged, and the CLI should say so rather than hang.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response accepted. A /services listing of 10k services with a
/// few backends each is a few MB; this leaves ample room.
const MAX_RESPONSE: u64 = 64 << 20;

/// A status code and the body as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// `GET /services`, parsed. Non-200 answers and bad JSON are errors.
pub fn fetch_services(addr: SocketAddr) -> Result<Value, String> {
    fetch_json(addr, "/services")
}

/// `GET path`, parsed as JSON. Non-200 answers and bad JSON are errors.
pub fn fetch_json(addr: SocketAddr, path: &str) -> Result<Value, String> {
    let resp = http_request(addr, "GET", path)?;
    if resp.status != 200 {
        return Err(format!(
            "admin endpoint {addr} answered {} to GET {path}: {}",
            resp.status,
            resp.body.trim()
        ));
    }
    serde_json::from_str(&resp.body)
        .map_err(|e| format!("admin endpoint {addr}: bad JSON from {path}: {e}"))
}

/// One request without a body; the answer whatever its status.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> Result<HttpResponse, String> {
    let ctx = |e: std::io::Error| format!("admin endpoint {addr}: {method} {path}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(ctx)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(ctx)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(ctx)?;
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(ctx)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE + 1)
        .read_to_end(&mut raw)
        .map_err(ctx)?;
    if raw.len() as u64 > MAX_RESPONSE {
        return Err(format!(
            "admin endpoint {addr}: response larger than {MAX_RESPONSE} bytes"
        ));
    }
    parse_response(&raw).map_err(|e| format!("admin endpoint {addr}: {method} {path}: {e}"))
}

/// Parses a complete HTTP/1.1 response read until the server closed.
pub(crate) fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let head_end = find(raw, b"\r\n\r\n").ok_or("response ends inside its headers")?;
    let head =
        std::str::from_utf8(&raw[..head_end]).map_err(|_| "response headers are not UTF-8")?;
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length: Option<usize> = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or_else(|| format!("body cut short: {} of {n} bytes", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    let body = String::from_utf8(body).map_err(|_| "body is not UTF-8")?;
    Ok(HttpResponse { status, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("chunk size line cut short")?;
        let line = std::str::from_utf8(&data[..line_end]).map_err(|_| "chunk size is not UTF-8")?;
        // Chunk extensions (";name=value") carry nothing we use.
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or("chunk cut short")?;
        out.extend_from_slice(chunk);
        data = data
            .get(size..)
            .and_then(|d| d.strip_prefix(b"\r\n"))
            .ok_or("chunk not followed by CRLF")?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_body_ignores_trailing_bytes() {
        let r = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\n\r\nnope\nEXTRA",
        )
        .unwrap();
        assert_eq!(
            r,
            HttpResponse {
                status: 503,
                body: "nope\n".into()
            }
        );
    }

    #[test]
    fn chunked_body_with_extension() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "abcde");
    }

    #[test]
    fn malformed_responses_are_errors() {
        assert!(parse_response(b"").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .is_err()
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n").is_err());
    }

    #[test]
    fn body_until_close_without_length() {
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nmissing").unwrap();
        assert_eq!(
            r,
            HttpResponse {
                status: 404,
                body: "missing".into()
            }
        );
    }
}
