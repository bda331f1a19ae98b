//! The lab benchmark's report: `report.json` (every raw run, medians,
//! machine, tool versions, command line), `report.md` (a table per service
//! count with vipgate/kernel ratios) and `throughput-vs-services.svg`; with
//! `--traffic tcp` also its tables and plots ([`super::tcp_report`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::report::{line_chart, Machine, Series};

use super::tcp::TcpCell;
use super::{tcp_report, Cell, LabBenchConfig, PathKind, Traffic};

/// Everything the run produced.
#[derive(Clone, Debug, Serialize)]
pub struct LabReport {
    pub vipgate_version: String,
    pub command_line: Vec<String>,
    pub started_unix: u64,
    pub machine: Machine,
    /// iptables, nft and kernel versions.
    pub versions: BTreeMap<String, String>,
    pub config: LabBenchConfig,
    /// UDP modes (established, new-flows).
    pub cells: Vec<Cell>,
    /// The tcp mode.
    pub tcp: Vec<TcpCell>,
}

/// Tool versions the kernel paths and the tcp mode ran with.
pub fn versions() -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    for (tool, flag) in [
        ("iptables", "--version"),
        ("nft", "--version"),
        ("ip", "-V"),
        ("iperf3", "--version"),
    ] {
        v.insert(
            tool.to_string(),
            super::kernel_paths::tool_version(tool, flag),
        );
    }
    v
}

fn find<'a>(cells: &'a [Cell], traffic: &str, path: &str, services: usize) -> Option<&'a Cell> {
    cells.iter().find(|c| {
        c.traffic == traffic && c.path == path && c.services == services && c.error.is_none()
    })
}

/// Distinct `f(cell)` values in first-seen order.
pub(super) fn distinct<C, T: PartialEq>(cells: &[C], f: impl Fn(&C) -> T) -> Vec<T> {
    let mut v = Vec::new();
    for c in cells {
        let x = f(c);
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v
}

fn traffics(cells: &[Cell]) -> Vec<String> {
    distinct(cells, |c| c.traffic.clone())
}

/// `a / b` as "1.23x", or "-" when either side is missing or zero.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

fn service_counts(cells: &[Cell]) -> Vec<usize> {
    let mut v: Vec<usize> = cells.iter().map(|c| c.services).collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn paths(cells: &[Cell]) -> Vec<String> {
    distinct(cells, |c| c.path.clone())
}

pub fn to_markdown(r: &LabReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# vipgate bench lab\n");
    let _ = writeln!(
        s,
        "Machine: {} cores, {}, {}. vipgate {}; {}; {}.\n",
        r.machine.cores,
        r.machine.cpu_model,
        r.machine.kernel,
        r.vipgate_version,
        r.versions
            .get("iptables")
            .map_or("iptables ?", String::as_str),
        r.versions.get("nft").map_or("nft ?", String::as_str),
    );
    let _ = writeln!(s, "Command: `{}`\n", r.command_line.join(" "));
    if !r.cells.is_empty() {
        udp_markdown(r, &mut s);
    }
    if !r.tcp.is_empty() {
        s.push_str(&tcp_report::to_markdown(r));
    }
    s
}

/// The UDP modes' description, tables and plot links.
fn udp_markdown(r: &LabReport, s: &mut String) {
    let c = &r.config;
    let _ = writeln!(
        s,
        "Traffic: UDP from the client namespace to the first service's VIP, {} flows of 60-byte frames \
         sent at top speed (AF_PACKET sendmmsg) for {} s per run; forwarded = frames counted at the \
         backends' veths / run time; loss = 1 - forwarded/sent. Latency: {} req/s for {} s against \
         UDP echo servers on the backends. Every figure is the median of {} runs. Each path and \
         service count gets a fresh lab; {} backends per service. Kernel paths: only the first \
         packet of a flow walks the NAT rules (later ones follow conntrack), and the measured \
         service sits mid-chain in KUBE-SERVICES. On veth the kernel paths forward inside the \
         sender's own softirq, so their generator slows to what the path takes (little loss), while \
         vipgate's worker runs on another core and loss shows what it could not take.\n",
        c.flows, c.duration, c.latency_rate, c.latency_seconds, c.repeats, c.backends
    );
    let _ = writeln!(
        s,
        "Traffic modes. **established**: the {} flows above, sent over and over: after its first \
         packet a flow follows conntrack, so the service count barely matters to the kernel paths. \
         **new-flows**: every packet is a flow never seen before (source port 1024-65535 rotating, \
         then the next of several client addresses in 198.18.0.0/24, a fresh set of addresses per \
         run), so every packet walks KUBE-SERVICES (iptables: rule by rule, linear in services; \
         nftables: one map lookup) and creates a conntrack entry, and vipgate creates a flow per \
         packet. This is the cost of connection setup, e.g. DNS over UDP or a SYN flood. \
         `distinct flows` is what one run could send before repeating a flow; a run that sent more \
         had some conntrack hits. The kernel paths run under the host's nf_conntrack_max (a child \
         namespace cannot raise it on recent kernels); at the limit the kernel early-drops unreplied \
         entries to admit new ones. new-flows runs no latency probe (its probe flows would be \
         established ones).\n",
        c.flows
    );
    let all_paths = paths(&r.cells);
    let nft = PathKind::KernelNftables.name();
    let ipt = PathKind::KernelIptables.name();
    for t in traffics(&r.cells) {
        for n in service_counts(&r.cells) {
            if !r.cells.iter().any(|c| c.traffic == t && c.services == n) {
                continue;
            }
            let new_flows = t == Traffic::NewFlows.name();
            let _ = writeln!(s, "## {t}, {n} service{}\n", if n == 1 { "" } else { "s" });
            let (extra_head, extra_rule) = if new_flows {
                (" distinct flows |", "---:|")
            } else {
                ("", "")
            };
            let _ = writeln!(
                s,
                "| path | forwarded Mpps | sent Mpps | loss | p50 us | p99 us |{extra_head} vs kernel-nftables | vs kernel-iptables |"
            );
            let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|{extra_rule}---:|---:|");
            let base = |p: &str| find(&r.cells, &t, p, n).map(|c| c.forwarded_mpps);
            for p in &all_paths {
                let Some(cell) = r
                    .cells
                    .iter()
                    .find(|c| &c.path == p && c.services == n && c.traffic == t)
                else {
                    continue;
                };
                if let Some(e) = &cell.error {
                    let _ = writeln!(s, "| {p} | failed: {} | | | | | | |", e.replace('|', "/"));
                    continue;
                }
                let me = Some(cell.forwarded_mpps);
                let lat = |v: f64| {
                    if new_flows {
                        "-".to_string()
                    } else {
                        format!("{v:.0}")
                    }
                };
                let extra = if new_flows {
                    format!(" {} |", cell.distinct_flows.unwrap_or(0))
                } else {
                    String::new()
                };
                let _ = writeln!(
                    s,
                    "| {p} | {:.3} | {:.3} | {:.1}% | {} | {} |{extra} {} | {} |",
                    cell.forwarded_mpps,
                    cell.sent_mpps,
                    cell.loss * 100.0,
                    lat(cell.p50_us),
                    lat(cell.p99_us),
                    ratio(me, base(nft)),
                    ratio(me, base(ipt)),
                );
            }
            s.push('\n');
        }
    }
    let _ = writeln!(
        s,
        "Plots: [forwarded Mpps vs services](throughput-vs-services.svg), \
         [latency p50/p99 vs services](latency-vs-services.svg). Raw runs: report.json.\n"
    );
}

pub fn services_plot(r: &LabReport) -> String {
    let counts = service_counts(&r.cells);
    let modes = traffics(&r.cells);
    let series: Vec<Series> = modes
        .iter()
        .flat_map(|t| paths(&r.cells).into_iter().map(move |p| (t.clone(), p)))
        .map(|(t, p)| Series {
            points: counts
                .iter()
                .filter_map(|&n| find(&r.cells, &t, &p, n))
                .map(|c| (c.services as f64, c.forwarded_mpps))
                .collect(),
            // One mode keeps the plain path names.
            name: if modes.len() == 1 {
                p
            } else {
                format!("{p} ({t})")
            },
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    line_chart(
        "Forwarded UDP packets vs services (veth lab)",
        "services (log scale)",
        "Mpps forwarded",
        counts.iter().all(|&n| n > 0),
        &series,
    )
}

/// Request/response latency percentiles against service count: a p50 and
/// a p99 line per path, from the cells that probed latency (established
/// traffic).
pub fn latency_plot(r: &LabReport) -> String {
    let counts = service_counts(&r.cells);
    let mut series = Vec::new();
    for t in traffics(&r.cells) {
        for p in paths(&r.cells) {
            for (label, pick) in [("p50", 0usize), ("p99", 1usize)] {
                let points: Vec<(f64, f64)> = counts
                    .iter()
                    .filter_map(|&n| find(&r.cells, &t, &p, n))
                    .filter(|c| !c.latency.is_empty() && c.error.is_none())
                    .map(|c| {
                        (
                            c.services as f64,
                            if pick == 0 { c.p50_us } else { c.p99_us },
                        )
                    })
                    .collect();
                if !points.is_empty() {
                    series.push(Series {
                        name: format!("{p} {label}"),
                        points,
                    });
                }
            }
        }
    }
    line_chart(
        "UDP request/response latency vs services (veth lab)",
        "services (log scale)",
        "microseconds",
        counts.iter().all(|&n| n > 0),
        &series,
    )
}

/// Writes the report files into `dir` (created if missing).
pub fn write_all(r: &LabReport, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(r).map_err(io::Error::other)?;
    let mut files = vec![
        ("report.json".to_string(), json),
        ("report.md".to_string(), to_markdown(r)),
    ];
    if !r.cells.is_empty() {
        files.push(("throughput-vs-services.svg".into(), services_plot(r)));
        files.push(("latency-vs-services.svg".into(), latency_plot(r)));
    }
    files.extend(tcp_report::plots(r));
    let mut out = Vec::new();
    for (name, body) in files {
        let p = dir.join(name);
        std::fs::write(&p, body)?;
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::ThroughputRun;
    use super::*;

    fn cell(path: PathKind, services: usize, mpps: f64) -> Cell {
        let mut c = Cell {
            path: path.name().into(),
            traffic: "established".into(),
            services,
            runs: vec![ThroughputRun::new(2_000_000, (mpps * 1e6) as u64, 1.0)],
            ..Cell::default()
        };
        c.summarise();
        c
    }

    pub(crate) fn report(cells: Vec<Cell>) -> LabReport {
        LabReport {
            vipgate_version: "0.0.0".into(),
            command_line: vec!["vipgate".into(), "bench".into(), "lab".into()],
            started_unix: 0,
            machine: Machine::detect(),
            versions: BTreeMap::new(),
            config: LabBenchConfig {
                paths: PathKind::ALL.to_vec(),
                traffic: Traffic::ALL.to_vec(),
                services: vec![1, 100],
                duration: 1.0,
                repeats: 1,
                backends: 2,
                flows: 64,
                latency_rate: 1000.0,
                latency_seconds: 1.0,
                streams: vec![1, 4],
                offloads: crate::labbench::tcp::ALL_OFFLOADS.to_vec(),
                vipgate_bin: "vipgate".into(),
                gateway_args: Vec::new(),
                work_dir: "/tmp".into(),
                quick: true,
            },
            cells,
            tcp: Vec::new(),
        }
    }

    #[test]
    fn tables_have_a_row_per_path_and_ratios_against_both_kernel_paths() {
        let mut failed = cell(PathKind::VipgateAfXdp, 100, 0.0);
        failed.error = Some("no | xdp".into());
        let r = report(vec![
            cell(PathKind::KernelIptables, 1, 0.5),
            cell(PathKind::KernelNftables, 1, 0.4),
            cell(PathKind::VipgateAfPacket, 1, 0.8),
            cell(PathKind::KernelIptables, 100, 0.25),
            failed,
        ]);
        let md = to_markdown(&r);
        assert!(md.contains("## established, 1 service\n"));
        assert!(md.contains("## established, 100 services\n"));
        assert!(
            !md.contains("## new-flows"),
            "no new-flows cells, no new-flows table"
        );
        assert!(md.contains("| vs kernel-nftables | vs kernel-iptables |"));
        let row = md
            .lines()
            .find(|l| l.starts_with("| vipgate-af_packet | 0.800"))
            .expect(&md);
        assert!(row.ends_with("| 2.00x | 1.60x |"), "{row}");
        let row100 = md
            .lines()
            .find(|l| l.starts_with("| kernel-iptables | 0.250"))
            .unwrap();
        assert!(row100.ends_with("| - | 1.00x |"), "{row100}");
        assert!(md.contains("| vipgate-af_xdp | failed: no / xdp |"));
    }

    #[test]
    fn latency_plot_has_p50_and_p99_per_probed_path() {
        let probed = |path, services, p50, p99| {
            let mut c = cell(path, services, 0.2);
            c.latency = vec![crate::labbench::traffic::Latency {
                sent: 10,
                answered: 10,
                p50_us: p50,
                p99_us: p99,
            }];
            c.summarise();
            c
        };
        let r = report(vec![
            probed(PathKind::KernelNftables, 1, 25.0, 40.0),
            probed(PathKind::KernelNftables, 100, 26.0, 44.0),
            probed(PathKind::VipgateAfXdp, 1, 40.0, 67.0),
            // Not probed (new-flows style): no line.
            cell(PathKind::KernelIptables, 1, 0.1),
        ]);
        let svg = latency_plot(&r);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
        assert!(svg.contains("kernel-nftables p99") && svg.contains("vipgate-af_xdp p50"));
        assert!(!svg.contains("kernel-iptables"));
    }

    #[test]
    fn new_flows_tables_stand_apart_and_compare_within_their_mode() {
        let nf = |path, services, mpps| Cell {
            traffic: "new-flows".into(),
            distinct_flows: Some(774_144),
            ..cell(path, services, mpps)
        };
        let r = report(vec![
            cell(PathKind::KernelIptables, 1, 0.2),
            nf(PathKind::KernelIptables, 1, 0.05),
            nf(PathKind::KernelNftables, 1, 0.1),
            nf(PathKind::VipgateAfXdp, 1, 0.2),
        ]);
        let md = to_markdown(&r);
        assert!(md.contains("## new-flows, 1 service\n"), "{md}");
        assert!(md.contains("| distinct flows |"));
        let row = md
            .lines()
            .find(|l| l.starts_with("| vipgate-af_xdp | 0.200"))
            .expect(&md);
        assert!(row.ends_with("| 774144 | 2.00x | 4.00x |"), "{row}");
        // The established iptables row is its own baseline, not new-flows'.
        let est = md
            .lines()
            .find(|l| l.starts_with("| kernel-iptables | 0.200"))
            .unwrap();
        assert!(est.ends_with("| - | 1.00x |"), "{est}");
        let svg = services_plot(&r);
        assert!(svg.contains("kernel-iptables (new-flows)"));
    }

    #[test]
    fn plot_has_a_line_per_path_and_json_round_trips() {
        let r = report(vec![
            cell(PathKind::KernelIptables, 1, 0.5),
            cell(PathKind::KernelIptables, 100, 0.3),
            cell(PathKind::VipgateAfPacket, 1, 0.8),
            cell(PathKind::VipgateAfPacket, 100, 0.8),
        ]);
        let svg = services_plot(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        let dir = std::env::temp_dir().join(format!("vipgate-labreport-{}", std::process::id()));
        let files = write_all(&r, &dir).unwrap();
        assert_eq!(files.len(), 4, "json, md and two plots");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(v["cells"].as_array().unwrap().len(), 4);
        assert_eq!(v["cells"][2]["path"], "vipgate-af_packet");
        assert_eq!(v["config"]["paths"][3], "vipgate-af_xdp");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
