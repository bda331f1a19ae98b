//! A `vipgate run` process in the lab's gateway namespace: started with a
//! services file, ready once it prints its `running` line, stopped with
//! SIGTERM (killed if it lingers, or when dropped).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::lab::{Lab, GW_BACKEND_IF, GW_CLIENT_IF};

/// How long a gateway may take to load its tables and attach.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running gateway.
pub struct Gateway {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    /// The `vipgate: running ...` line.
    pub running_line: String,
}

impl Gateway {
    /// Starts `bin run` in `ns` on the lab gateway's two interfaces with
    /// `io` ("af-packet" or "af-xdp"), pinned to `core` if given, with
    /// `extra` arguments appended.
    pub fn start(
        bin: &Path,
        ns: &str,
        io: &str,
        services: &Path,
        core: Option<usize>,
        extra: &[String],
    ) -> Result<Gateway, String> {
        let mut cmd = Lab::command(ns, &bin.to_string_lossy());
        cmd.args([
            "run",
            "--iface",
            &format!("{GW_CLIENT_IF},{GW_BACKEND_IF}"),
            "--io",
            io,
            "--admin-addr",
            "127.0.0.1:0",
            "--services",
        ])
        .arg(services);
        if let Some(c) = core {
            cmd.args(["--cores", &c.to_string()]);
        }
        cmd.args(extra);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {} run: {e}", bin.display()))?;
        let out = child.stdout.take().expect("stdout is piped");
        let mut err = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut g = Gateway {
            child,
            lines,
            stderr: Some(stderr),
            running_line: String::new(),
        };
        let t0 = Instant::now();
        while t0.elapsed() < START_TIMEOUT {
            if let Some(status) = g.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "vipgate run exited early ({status}): {}",
                    g.take_stderr()
                ));
            }
            if let Ok(l) = g.lines.recv_timeout(Duration::from_millis(100)) {
                if l.starts_with("vipgate: running") {
                    g.running_line = l;
                    return Ok(g);
                }
            }
        }
        Err(format!(
            "vipgate run did not report running within {START_TIMEOUT:?}: {}",
            g.take_stderr()
        ))
    }

    /// The `vipgate run` process (`ip netns exec` execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn take_stderr(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let s = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        s.lines().rev().take(5).collect::<Vec<_>>().join("; ")
    }

    /// SIGTERM and a bounded wait; returns its stdout after the running line.
    pub fn stop(mut self) -> Result<String, String> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid, which has not been
        // reaped yet (we hold the Child), so the pid cannot be reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().map_err(|e| e.to_string())? {
                break s;
            }
            if t0.elapsed() > STOP_TIMEOUT {
                let _ = self.child.kill();
                return Err(format!("vipgate run ignored SIGTERM for {STOP_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(300)) {
            out.push(l);
        }
        if !status.success() {
            return Err(format!("vipgate run exited with {status}"));
        }
        Ok(out.join("\n"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
