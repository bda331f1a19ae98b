//! `vipgate bench send`: `vipgate send --topspeed` (AF_PACKET and AF_XDP)
//! against `tcpreplay --topspeed`, in one run, on the same veth interface
//! with the same capture. Each tool runs as its own process inside the
//! sender namespace, as an operator would run it; the peer's veth rx
//! counter says how many frames arrived, whatever the tool claims.
//!
//! Repeats are interleaved (tool A, B, C, A, B, C, ...) so a drift in the
//! machine's load touches every tool alike.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dataplane::io::pcap::{read_capture, write_pcap};
use serde::Serialize;

use crate::lab::{ip, netns, NS_PREFIX};
use crate::labbench::traffic::{blast_capture, rx_packets};
use crate::matrix::median;
use crate::report::Machine;

/// Flows in the generated capture: enough distinct frames that nothing
/// downstream sees one repeated packet, few enough to stay in cache.
const DEFAULT_FLOWS: u16 = 1024;
/// The sender's veth name in both namespaces.
const DEV: &str = "eth0";
/// How long the peer's rx counter may keep moving after a tool exits.
const SETTLE_POLLS: usize = 40;
const SETTLE_STEP: Duration = Duration::from_millis(50);

/// A transmitter being compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    VipgateAfPacket,
    VipgateAfXdp,
    Tcpreplay,
}

impl Tool {
    pub const ALL: [Tool; 3] = [Tool::VipgateAfPacket, Tool::VipgateAfXdp, Tool::Tcpreplay];

    pub fn name(self) -> &'static str {
        match self {
            Tool::VipgateAfPacket => "vipgate-send-af_packet",
            Tool::VipgateAfXdp => "vipgate-send-af_xdp",
            Tool::Tcpreplay => "tcpreplay",
        }
    }
}

/// How to run the comparison.
#[derive(Clone, Debug, Serialize)]
pub struct SendBenchConfig {
    /// The capture; None: a generated one of 60-byte UDP frames.
    pub pcap: Option<PathBuf>,
    /// Frames per run (rounded up to whole passes over the capture).
    pub packets: u64,
    pub repeats: usize,
    /// The `vipgate` binary whose `send` is measured.
    pub vipgate_bin: PathBuf,
    /// Where the generated capture is written.
    pub work_dir: PathBuf,
    pub quick: bool,
}

/// One run of one tool.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ToolRun {
    /// Frames the tool says it sent.
    pub sent: u64,
    /// Frames the peer's veth counted.
    pub received: u64,
    /// The tool's own send time.
    pub seconds: f64,
    pub sent_pps: f64,
    pub received_pps: f64,
    /// The rate the tool printed itself (tcpreplay's `Rated: ... pps`).
    pub reported_pps: f64,
}

impl ToolRun {
    pub fn new(sent: u64, received: u64, seconds: f64) -> ToolRun {
        let per_s = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        ToolRun {
            sent,
            received,
            seconds,
            sent_pps: per_s(sent),
            received_pps: per_s(received),
            reported_pps: per_s(sent),
        }
    }
}

/// One tool's runs and medians.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ToolResult {
    pub tool: String,
    /// The command line of its first run.
    pub command: String,
    pub runs: Vec<ToolRun>,
    pub sent_pps: f64,
    pub received_pps: f64,
    /// Median sent and received pps over tcpreplay's (None if either is missing).
    pub sent_vs_tcpreplay: Option<f64>,
    pub received_vs_tcpreplay: Option<f64>,
    /// The first failure, if any run failed.
    pub error: Option<String>,
}

/// The capture every tool sent.
#[derive(Clone, Debug, Serialize)]
pub struct CaptureInfo {
    pub path: PathBuf,
    pub frames: usize,
    pub bytes: u64,
    pub generated: bool,
    /// Passes over the capture per run (`--loops` / `--loop`).
    pub loops: u64,
}

/// Everything the run produced.
#[derive(Clone, Debug, Serialize)]
pub struct SendBenchReport {
    pub vipgate_version: String,
    pub command_line: Vec<String>,
    pub started_unix: u64,
    pub machine: Machine,
    pub tcpreplay_version: String,
    pub config: SendBenchConfig,
    pub capture: CaptureInfo,
    pub tools: Vec<ToolResult>,
}

/// Two namespaces joined by one veth pair, IPv6 off so the kernel sends
/// no frames of its own; deleted on drop.
struct Pair {
    tx: String,
    rx: String,
    created: Vec<String>,
}

impl Pair {
    fn up() -> Result<Pair, String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{NS_PREFIX}{}sb{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut p = Pair {
            tx: format!("{id}-tx"),
            rx: format!("{id}-rx"),
            created: Vec::new(),
        };
        for ns in [p.tx.clone(), p.rx.clone()] {
            ip(&["netns", "add", &ns])?;
            p.created.push(ns.clone());
            netns::sysctl(&ns, "net/ipv6/conf/all/disable_ipv6", "1")?;
            netns::sysctl(&ns, "net/ipv6/conf/default/disable_ipv6", "1")?;
        }
        ip(&[
            "-n", &p.tx, "link", "add", DEV, "type", "veth", "peer", "name", DEV, "netns", &p.rx,
        ])?;
        for (ns, addr) in [(&p.tx, "198.18.0.2/24"), (&p.rx, "198.18.0.1/24")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", DEV])?;
            ip(&["-n", ns, "link", "set", DEV, "up"])?;
            netns::offloads_off(ns, DEV)?;
        }
        Ok(p)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// `sent N packets (B bytes, L loops) in S s: P pps, ...` from `vipgate send`:
/// (frames, seconds, its own pps).
pub fn parse_vipgate_send(stdout: &str) -> Option<(u64, f64, f64)> {
    let line = stdout.lines().find(|l| l.starts_with("sent "))?;
    let w: Vec<&str> = line.split_whitespace().collect();
    let sent = w.get(1)?.parse().ok()?;
    let at = w.iter().position(|x| *x == "in")?;
    let seconds = w.get(at + 1)?.parse().ok()?;
    let at = w.iter().position(|x| x.trim_end_matches(',') == "pps")?;
    let pps = w.get(at.checked_sub(1)?)?.parse().ok()?;
    Some((sent, seconds, pps))
}

/// The first line `tcpreplay -V` prints (on stderr in 4.x).
pub fn tcpreplay_version() -> String {
    Command::new("tcpreplay")
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "tcpreplay: not found".into())
}

/// tcpreplay's `Actual: N packets (B bytes) sent in S seconds` and
/// `Rated: ... P pps`: (frames, seconds, its own pps).
pub fn parse_tcpreplay(stdout: &str) -> Option<(u64, f64, f64)> {
    let actual = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Actual:"))?;
    let w: Vec<&str> = actual.split_whitespace().collect();
    let sent = w.get(1)?.parse().ok()?;
    let at = w.iter().position(|x| *x == "in")?;
    let seconds = w.get(at + 1)?.parse().ok()?;
    let rated = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Rated:"))?;
    let pps = rated
        .trim_end()
        .strip_suffix("pps")?
        .trim_end()
        .rsplit([' ', ','])
        .next()?
        .parse()
        .ok()?;
    Some((sent, seconds, pps))
}

/// The peer's rx counter once it stops moving (frames still in flight).
fn settled_rx(ns: &str) -> Result<u64, String> {
    let mut last = rx_packets(ns, DEV)?;
    for _ in 0..SETTLE_POLLS {
        std::thread::sleep(SETTLE_STEP);
        let now = rx_packets(ns, DEV)?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn command_for(tool: Tool, cfg: &SendBenchConfig, ns: &str, pcap: &Path, loops: u64) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]);
    match tool {
        Tool::VipgateAfPacket | Tool::VipgateAfXdp => {
            c.arg(&cfg.vipgate_bin).args([
                "send",
                "--iface",
                DEV,
                "--topspeed",
                "--io",
                if tool == Tool::VipgateAfXdp {
                    "af_xdp"
                } else {
                    "af_packet"
                },
                "--loops",
                &loops.to_string(),
                "--pcap",
            ]);
            c.arg(pcap);
        }
        Tool::Tcpreplay => {
            c.args(["tcpreplay", "--topspeed", "-i", DEV, "--loop"])
                .arg(loops.to_string())
                .arg(pcap);
        }
    }
    c
}

fn show(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_once(tool: Tool, mut cmd: Command, peer: &str) -> Result<ToolRun, String> {
    let before = settled_rx(peer)?;
    let out = cmd
        .output()
        .map_err(|e| format!("{}: cannot start: {e}", tool.name()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}{}",
            tool.name(),
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let (sent, seconds, reported) = match tool {
        Tool::Tcpreplay => parse_tcpreplay(&stdout),
        _ => parse_vipgate_send(&stdout),
    }
    .ok_or_else(|| format!("{}: unexpected output: {stdout}", tool.name()))?;
    let received = settled_rx(peer)?.saturating_sub(before);
    Ok(ToolRun {
        reported_pps: reported,
        ..ToolRun::new(sent, received, seconds)
    })
}

/// Writes the generated capture (or reads the given one) and says what it holds.
fn capture(cfg: &SendBenchConfig) -> Result<CaptureInfo, String> {
    let (path, generated) = match &cfg.pcap {
        Some(p) => (p.clone(), false),
        None => {
            std::fs::create_dir_all(&cfg.work_dir)
                .map_err(|e| format!("{}: {e}", cfg.work_dir.display()))?;
            let path = cfg.work_dir.join("udp-60b.pcap");
            let cap = blast_capture(
                [2, 0, 0, 0, 0, 1],
                [2, 0, 0, 0, 0, 2],
                "198.18.0.2".parse().expect("literal"),
                // Not the peer's address: it drops the frames without
                // answering (no ICMP, no ARP), so its counter sees only ours.
                "198.18.0.77".parse().expect("literal"),
                9,
                DEFAULT_FLOWS,
            );
            write_pcap(&path, (0..cap.len()).map(|i| cap.packet(i)))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            (path, true)
        }
    };
    let cap = read_capture(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if cap.is_empty() {
        return Err(format!("{}: no frames", path.display()));
    }
    let bytes = (0..cap.len()).map(|i| cap.packet(i).0.len() as u64).sum();
    Ok(CaptureInfo {
        path,
        frames: cap.len(),
        bytes,
        generated,
        loops: cfg.packets.div_ceil(cap.len() as u64).max(1),
    })
}

/// Runs every tool `repeats` times on one fresh veth pair. Tools that fail
/// carry their error; the others still run.
pub fn run(cfg: &SendBenchConfig) -> Result<(CaptureInfo, Vec<ToolResult>), String> {
    let info = capture(cfg)?;
    let pair = Pair::up()?;
    let mut results: Vec<ToolResult> = Tool::ALL
        .iter()
        .map(|t| ToolResult {
            tool: t.name().into(),
            command: show(&command_for(*t, cfg, &pair.tx, &info.path, info.loops)),
            ..ToolResult::default()
        })
        .collect();
    for r in 0..cfg.repeats {
        for (i, &tool) in Tool::ALL.iter().enumerate() {
            eprint!(
                "[{}/{}] {} ... ",
                r * Tool::ALL.len() + i + 1,
                cfg.repeats * Tool::ALL.len(),
                tool.name()
            );
            let cmd = command_for(tool, cfg, &pair.tx, &info.path, info.loops);
            match run_once(tool, cmd, &pair.rx) {
                Ok(run) => {
                    eprintln!(
                        "sent {:.0} pps, received {:.0} pps",
                        run.sent_pps, run.received_pps
                    );
                    results[i].runs.push(run);
                }
                Err(e) => {
                    eprintln!("failed: {e}");
                    results[i].error.get_or_insert(e);
                }
            }
        }
    }
    drop(pair);
    summarise(&mut results);
    Ok((info, results))
}

/// Medians, and ratios against tcpreplay's medians.
pub fn summarise(results: &mut [ToolResult]) {
    for r in results.iter_mut() {
        r.sent_pps = median(&r.runs.iter().map(|x| x.sent_pps).collect::<Vec<_>>());
        r.received_pps = median(&r.runs.iter().map(|x| x.received_pps).collect::<Vec<_>>());
    }
    let base = results
        .iter()
        .find(|r| r.tool == Tool::Tcpreplay.name())
        .map(|r| (r.sent_pps, r.received_pps));
    let ratio = |a: f64, b: f64| (a > 0.0 && b > 0.0).then(|| a / b);
    for r in results.iter_mut() {
        if let Some((s, rx)) = base {
            r.sent_vs_tcpreplay = ratio(r.sent_pps, s);
            r.received_vs_tcpreplay = ratio(r.received_pps, rx);
        }
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |x| format!("{x:.2}x"))
}

/// report.md: one table, the commands, and how to read it.
pub fn to_markdown(r: &SendBenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# vipgate send vs tcpreplay --topspeed\n");
    let _ = writeln!(
        s,
        "vipgate {} on {} ({} cores, kernel {}, load {}); {}.\n",
        r.vipgate_version,
        r.machine.cpu_model,
        r.machine.cores,
        r.machine.kernel,
        r.machine.load_average,
        r.tcpreplay_version
    );
    let _ = writeln!(
        s,
        "Capture: {} ({} frames, {} bytes{}), {} loops per run = {} frames; \
         median of {} runs per tool, interleaved.\n",
        r.capture.path.display(),
        r.capture.frames,
        r.capture.bytes,
        if r.capture.generated {
            ", generated 60-byte UDP to 198.18.0.77"
        } else {
            ""
        },
        r.capture.loops,
        r.capture.loops * r.capture.frames as u64,
        r.config.repeats
    );
    let _ = writeln!(
        s,
        "| tool | sent pps | received pps | tool's own pps | sent vs tcpreplay | received vs tcpreplay | runs |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for t in &r.tools {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {}{} |",
            t.tool,
            t.sent_pps,
            t.received_pps,
            median(&t.runs.iter().map(|x| x.reported_pps).collect::<Vec<_>>()),
            fmt_ratio(t.sent_vs_tcpreplay),
            fmt_ratio(t.received_vs_tcpreplay),
            t.runs.len(),
            if t.error.is_some() { " (errors)" } else { "" }
        );
    }
    let _ = writeln!(
        s,
        "\n*Sent* is what each tool reports over its own send time; *received* is \
         the peer veth's rx counter over the same time. Every tool runs as its own \
         process in the sender namespace, on one veth pair, with the same capture \
         and loop count. On veth the receive work runs in the sender's softirq, so \
         a tool's rate includes the peer's drop of the frames.\n"
    );
    let _ = writeln!(s, "## Commands\n");
    for t in &r.tools {
        let _ = writeln!(s, "- `{}`", t.command);
        if let Some(e) = &t.error {
            let _ = writeln!(s, "  - error: {e}");
        }
    }
    s
}

/// A horizontal bar per tool and figure (sent, received), scaled to the largest.
pub fn bar_chart(r: &SendBenchReport) -> String {
    const W: f64 = 720.0;
    const LABEL: f64 = 200.0;
    const BAR: f64 = 16.0;
    let max = r
        .tools
        .iter()
        .flat_map(|t| [t.sent_pps, t.received_pps])
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let h = 40.0 + r.tools.len() as f64 * (2.0 * BAR + 16.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="20">packets per second (sent: dark, received at peer: light)</text>"#
    );
    for (i, t) in r.tools.iter().enumerate() {
        let y = 36.0 + i as f64 * (2.0 * BAR + 16.0);
        let _ = writeln!(s, r#"<text x="10" y="{}">{}</text>"#, y + BAR + 4.0, t.tool);
        for (k, (v, colour)) in [(t.sent_pps, "#1f5fa8"), (t.received_pps, "#8fb8e6")]
            .into_iter()
            .enumerate()
        {
            let yy = y + k as f64 * BAR;
            let w = (W - LABEL - 90.0) * v / max;
            let _ = writeln!(
                s,
                r#"<rect x="{LABEL}" y="{yy}" width="{w:.1}" height="{}" fill="{colour}"/><text x="{:.1}" y="{}">{v:.0}</text>"#,
                BAR - 2.0,
                LABEL + w + 4.0,
                yy + BAR - 4.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Writes report.json, report.md and send-pps.svg into `dir`.
pub fn write_all(r: &SendBenchReport, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let files = [
        (
            dir.join("report.json"),
            serde_json::to_string_pretty(r).map_err(io::Error::other)?,
        ),
        (dir.join("report.md"), to_markdown(r)),
        (dir.join("send-pps.svg"), bar_chart(r)),
    ];
    let mut written = Vec::new();
    for (path, text) in files {
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vipgate_send_output_parses() {
        let out =
            "sent 44800 packets (2688000 bytes, 100 loops) in 0.052 s: 861538 pps, 413.5 Mbps\n";
        assert_eq!(parse_vipgate_send(out), Some((44800, 0.052, 861538.0)));
        assert_eq!(parse_vipgate_send("nothing here"), None);
        assert_eq!(parse_vipgate_send("sent many packets"), None);
    }

    #[test]
    fn tcpreplay_output_parses() {
        let out = "Actual: 44800 packets (3504000 bytes) sent in 0.109247 seconds\n\
                   Rated: 32074107.2 Bps, 256.59 Mbps, 410079.91 pps\n\
                   Flows: 120 flows, 1098.42 fps, 32000 unique flow packets\n\
                   Statistics for network device: eth0\n\
                   \tSuccessful packets:        44800\n";
        assert_eq!(parse_tcpreplay(out), Some((44800, 0.109247, 410079.91)));
        assert_eq!(
            parse_tcpreplay("Actual: 1 packets sent in 1 seconds\n"),
            None
        );
        assert_eq!(parse_tcpreplay("Rated: 1 Bps, 2 pps\n"), None);
    }

    #[test]
    fn ratios_are_against_tcpreplays_medians() {
        let mk = |tool: &str, runs: &[(u64, u64)]| ToolResult {
            tool: tool.into(),
            runs: runs.iter().map(|&(s, r)| ToolRun::new(s, r, 1.0)).collect(),
            ..ToolResult::default()
        };
        let mut v = vec![
            mk(
                "vipgate-send-af_packet",
                &[(300, 290), (100, 90), (200, 190)],
            ),
            mk("vipgate-send-af_xdp", &[]),
            mk("tcpreplay", &[(100, 95), (100, 95)]),
        ];
        summarise(&mut v);
        assert_eq!(v[0].sent_pps, 200.0);
        assert_eq!(v[0].sent_vs_tcpreplay, Some(2.0));
        assert_eq!(v[0].received_vs_tcpreplay, Some(2.0));
        assert_eq!(v[1].sent_vs_tcpreplay, None, "no runs, no ratio");
        assert_eq!(v[2].sent_vs_tcpreplay, Some(1.0));
    }
}
