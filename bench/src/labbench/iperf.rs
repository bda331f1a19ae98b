//! iperf3, a real TCP client and server, run in lab namespaces: a one-off
//! server in a backend, a client in the client namespace sending to a VIP,
//! both killed if they outlive their bound, the client's `--json` report
//! parsed for what both ends measured.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::lab::Lab;

/// How long the client may take to open its control connection
/// (`--connect-timeout`): a path that drops SYNs fails in this time.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Beyond connecting and the test itself, how long a client may take to
/// exchange results before it is killed.
const CLIENT_SLACK: Duration = Duration::from_secs(15);
/// How long a server may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a child printed, and how it ended (`None`: killed at the bound).
pub struct Bounded {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}

/// Runs `cmd` to its end, or kills it after `timeout`. Its output is read
/// on threads, so a child that writes much never blocks on a full pipe.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<Bounded, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(s);
        }
        if t0.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Bounded {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// `iperf3 --server --one-off` in a namespace; killed when dropped (it
/// exits by itself after one test).
pub struct Server {
    child: Child,
}

impl Server {
    /// Starts it on `bind:port` in `ns` and waits until it listens.
    pub fn start(ns: &str, bind: Ipv4Addr, port: u16) -> Result<Server, String> {
        let child = Lab::command(ns, "iperf3")
            .args(["-s", "-1", "-B", &bind.to_string(), "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("iperf3 -s in {ns}: {e} (is iperf3 installed?)"))?;
        let mut s = Server { child };
        let t0 = Instant::now();
        let filter = format!("sport = :{port}");
        while t0.elapsed() < LISTEN_TIMEOUT {
            if let Some(st) = s.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("iperf3 -s in {ns} exited at start ({st})"));
            }
            let ss = Lab::exec(ns, "ss", &["-Hltn", &filter])?;
            if !String::from_utf8_lossy(&ss.stdout).trim().is_empty() {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "iperf3 -s in {ns} not listening on {bind}:{port} after {LISTEN_TIMEOUT:?}"
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One iperf3 test as its client reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IperfResult {
    /// Payload bits per second the sender wrote (`end.sum_sent`).
    pub sent_bps: f64,
    /// Payload bits per second the receiver read (`end.sum_received`):
    /// what crossed the path.
    pub received_bps: f64,
    /// TCP retransmissions of the sender over all streams.
    pub retransmits: u64,
    /// Test length as measured by the receiver.
    pub seconds: f64,
    /// CPU use of the client and server processes (% of one core, user +
    /// system, as iperf3 measures it).
    pub sender_cpu_percent: f64,
    pub receiver_cpu_percent: f64,
}

/// Reads an `iperf3 --json` client report. iperf3 3.12 exits 0 after some
/// failures, so the report's `error` field is what says it failed.
pub fn parse_report(json: &str) -> Result<IperfResult, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        let head: String = json.chars().take(200).collect();
        format!("iperf3 output is not JSON ({e}): {head:?}")
    })?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Err(format!("iperf3: {e}"));
    }
    let end = &v["end"];
    let num = |section: &str, key: &str| -> Result<f64, String> {
        end[section][key]
            .as_f64()
            .ok_or_else(|| format!("iperf3 report has no end.{section}.{key}"))
    };
    Ok(IperfResult {
        sent_bps: num("sum_sent", "bits_per_second")?,
        received_bps: num("sum_received", "bits_per_second")?,
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
        seconds: num("sum_received", "seconds")?,
        sender_cpu_percent: num("cpu_utilization_percent", "host_total").unwrap_or(0.0),
        receiver_cpu_percent: num("cpu_utilization_percent", "remote_total").unwrap_or(0.0),
    })
}

/// iperf3's `-t`: whole seconds, at least 1.
pub fn test_seconds(duration: f64) -> u64 {
    (duration.ceil() as u64).max(1)
}

/// The longest a client with `-t seconds` may run.
pub fn client_bound(seconds: u64) -> Duration {
    Duration::from_secs(seconds) + CONNECT_TIMEOUT + CLIENT_SLACK
}

/// `iperf3 -c to -P streams -t seconds --json` from `ns`, bounded by
/// [`client_bound`].
pub fn client(
    ns: &str,
    to: SocketAddrV4,
    seconds: u64,
    streams: u32,
) -> Result<IperfResult, String> {
    let mut cmd = Lab::command(ns, "iperf3");
    cmd.args([
        "-c",
        &to.ip().to_string(),
        "-p",
        &to.port().to_string(),
        "-t",
        &seconds.to_string(),
        "-P",
        &streams.to_string(),
        "--connect-timeout",
        &CONNECT_TIMEOUT.as_millis().to_string(),
        "--json",
    ]);
    let bound = client_bound(seconds);
    let out = run_bounded(cmd, bound)?;
    match out.status {
        None => Err(format!("iperf3 -c killed after {bound:?}")),
        Some(st) => parse_report(&out.stdout).map_err(|e| {
            let err = out.stderr.trim();
            if st.success() || err.is_empty() {
                e
            } else {
                format!("{e} ({st}: {err})")
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"start": {"connected": []}, "intervals": [],
      "end": {"streams": [],
        "sum_sent": {"start": 0, "end": 1.0008, "seconds": 1.000803, "bytes": 3008102400,
                     "bits_per_second": 24045510654.94, "retransmits": 2, "sender": true},
        "sum_received": {"start": 0, "end": 1.0008, "seconds": 1.000833, "bytes": 3008102400,
                         "bits_per_second": 24044789890.02, "sender": true},
        "cpu_utilization_percent": {"host_total": 98.8, "host_user": 0.4, "host_system": 98.4,
                                    "remote_total": 41.9, "remote_user": 3.2, "remote_system": 38.7}}}"#;

    #[test]
    fn reports_give_both_ends_rates_retransmits_and_cpu() {
        let r = parse_report(REPORT).unwrap();
        assert_eq!(r.sent_bps, 24045510654.94);
        assert_eq!(r.received_bps, 24044789890.02);
        assert_eq!(r.retransmits, 2);
        assert_eq!(r.seconds, 1.000833);
        assert_eq!(r.sender_cpu_percent, 98.8);
        assert_eq!(r.receiver_cpu_percent, 41.9);
    }

    #[test]
    fn failures_are_errors_even_when_iperf3_exits_zero() {
        let e = parse_report(
            r#"{"start": {"connected": []}, "intervals": [], "end": {},
                "error": "unable to connect to server: Connection timed out"}"#,
        )
        .unwrap_err();
        assert!(e.contains("unable to connect"), "{e}");
        assert!(parse_report("iperf3: error")
            .unwrap_err()
            .contains("not JSON"));
        assert!(parse_report(r#"{"end": {}}"#)
            .unwrap_err()
            .contains("end.sum_sent.bits_per_second"));
    }

    #[test]
    fn durations_round_up_to_whole_seconds() {
        assert_eq!(test_seconds(0.2), 1);
        assert_eq!(test_seconds(5.0), 5);
        assert_eq!(test_seconds(2.5), 3);
        assert_eq!(client_bound(5), Duration::from_secs(23));
    }

    #[test]
    fn bounded_runs_are_killed_at_the_bound() {
        let mut c = Command::new("sleep");
        c.arg("5");
        let t0 = Instant::now();
        let r = run_bounded(c, Duration::from_millis(100)).unwrap();
        assert!(r.status.is_none());
        assert!(t0.elapsed() < Duration::from_secs(2));
        let mut c = Command::new("echo");
        c.arg("hi");
        let r = run_bounded(c, Duration::from_secs(5)).unwrap();
        assert!(r.status.unwrap().success());
        assert_eq!(r.stdout, "hi\n");
    }
}
