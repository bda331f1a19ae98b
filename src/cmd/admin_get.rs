//! What the subcommands that ask a running gateway share: GET a JSON path
//! of its admin endpoint, with a hint when nothing answers.

use std::net::SocketAddr;

use control::admin::fetch_json;
use serde_json::Value;

pub fn get(addr: SocketAddr, path: &str) -> Result<Value, String> {
    fetch_json(addr, path)
        .map_err(|e| format!("{e} (is `vipgate run` running with --admin-addr {addr}?)"))
}

/// Prints `v` as JSON or through `render`.
pub fn print(v: &Value, json: bool, render: impl Fn(&Value) -> String) {
    if json {
        println!("{v}");
    } else {
        print!("{}", render(v));
    }
}
