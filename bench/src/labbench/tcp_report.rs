//! The tcp mode's part of report.md (a table per offload setting: path x
//! streams, Gbit/s, retransmits, ratio to kernel-nftables, CPU) and its
//! plots (`tcp-offloads-<setting>.svg`: Gbit/s against streams per path).

use std::fmt::Write as _;

use crate::lab::Offloads;
use crate::report::{line_chart, Series};

use super::report::{distinct, LabReport};
use super::tcp::{offloads_name, TcpCell};
use super::PathKind;

/// The plot file of one offload setting.
pub fn plot_file(o: Offloads) -> String {
    format!("tcp-offloads-{}.svg", offloads_name(o))
}

fn find<'a>(cells: &'a [TcpCell], path: &str, o: Offloads, streams: u32) -> Option<&'a TcpCell> {
    cells
        .iter()
        .find(|c| c.path == path && c.offloads == o && c.streams == streams)
}

fn pct(v: f64) -> String {
    format!("{v:.0}%")
}

/// Each core's busy share, its softirq part in brackets: "97% (41%) / 60% (3%)".
fn cores(c: &TcpCell) -> String {
    if c.core_busy.is_empty() {
        return "-".into();
    }
    c.core_busy
        .iter()
        .zip(&c.core_softirq)
        .map(|(b, s)| format!("{} ({})", pct(b * 100.0), pct(s * 100.0)))
        .collect::<Vec<_>>()
        .join(" / ")
}

pub fn to_markdown(r: &LabReport) -> String {
    let mut s = String::new();
    let c = &r.config;
    let iperf = r.versions.get("iperf3").map_or("iperf3", String::as_str);
    let _ = writeln!(
        s,
        "## tcp: bulk TCP with iperf3\n\n\
         {iperf}: the client in the client namespace sends to a TCP Service's VIP (port 80), a \
         one-off server listens in the only backend (port 8080): iperf3 `-P` opens a control \
         connection and data connections that must all reach one server, and with several \
         backends each connection could be sent to another one. `-t {}` per test, {} per \
         figure, medians; a failed run (no connection, killed at its bound) counts as 0 Gbit/s. \
         Gbit/s: payload the receiver read (iperf3 `end.sum_received`). Retransmits: the \
         sender's TCP retransmissions over all streams. Offloads **default**: every veth as `ip \
         link add` leaves it (tx checksum offload, TSO/GSO, GRO on); **off**: tx checksum, TSO, \
         GSO and GRO off on every veth. Each path and offload setting gets a fresh lab. CPU: \
         iperf3's client and server (% of one core), `vipgate run` (its process, % of one core), \
         and each core's busy share over the test with its softirq part in brackets (where the \
         kernel paths forward and veth delivers).\n",
        super::iperf::test_seconds(c.duration),
        if c.repeats == 1 {
            "1 run".to_string()
        } else {
            format!("{} runs", c.repeats)
        },
    );
    let nft = PathKind::KernelNftables.name();
    for o in distinct(&r.tcp, |c| c.offloads) {
        let _ = writeln!(s, "### tcp, offloads {}\n", offloads_name(o));
        let _ = writeln!(
            s,
            "| path | streams | Gbit/s | sent Gbit/s | retransmits | vs kernel-nftables | client CPU | server CPU | vipgate CPU | cores busy (softirq) |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for p in distinct(&r.tcp, |c| c.path.clone()) {
            for n in distinct(&r.tcp, |c| c.streams) {
                let Some(cell) = find(&r.tcp, &p, o, n) else {
                    continue;
                };
                if let Some(e) = &cell.error {
                    let _ = writeln!(
                        s,
                        "| {p} | {n} | failed: {} | | | | | | | |",
                        e.replace('|', "/")
                    );
                    continue;
                }
                let base = find(&r.tcp, nft, o, n)
                    .filter(|b| b.error.is_none() && b.gbps > 0.0)
                    .map(|b| b.gbps);
                let vs = base.map_or("-".into(), |b| format!("{:.2}x", cell.gbps / b));
                let failed = if cell.failed_runs > 0 {
                    format!(" ({} of {} runs failed)", cell.failed_runs, cell.runs.len())
                } else {
                    String::new()
                };
                let _ = writeln!(
                    s,
                    "| {p} | {n} | {:.2}{failed} | {:.2} | {:.0} | {vs} | {} | {} | {} | {} |",
                    cell.gbps,
                    cell.sent_gbps,
                    cell.retransmits,
                    pct(cell.sender_cpu_percent),
                    pct(cell.receiver_cpu_percent),
                    cell.gateway_cpu_percent.map_or("-".into(), pct),
                    cores(cell),
                );
            }
        }
        s.push('\n');
    }
    let links: Vec<String> = distinct(&r.tcp, |c| c.offloads)
        .into_iter()
        .map(|o| format!("[offloads {}]({})", offloads_name(o), plot_file(o)))
        .collect();
    let _ = writeln!(
        s,
        "Plots (Gbit/s against streams): {}. Raw runs, per-run errors and vipgate's exit \
         counters: report.json.",
        links.join(", ")
    );
    s
}

/// Gbit/s against streams, a line per path; a failed cell is plotted at 0.
pub fn plot(r: &LabReport, o: Offloads) -> String {
    let series: Vec<Series> = distinct(&r.tcp, |c| c.path.clone())
        .into_iter()
        .map(|p| {
            let cells: Vec<&TcpCell> = r
                .tcp
                .iter()
                .filter(|c| c.path == p && c.offloads == o)
                .collect();
            let failed = cells.iter().any(|c| c.error.is_some());
            Series {
                points: cells
                    .iter()
                    .map(|c| (f64::from(c.streams), c.gbps))
                    .collect(),
                name: if failed { format!("{p} (failed)") } else { p },
            }
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    line_chart(
        &format!(
            "Bulk TCP through the gateway, offloads {} (iperf3, veth lab)",
            offloads_name(o)
        ),
        "parallel streams (iperf3 -P)",
        "Gbit/s received",
        false,
        &series,
    )
}

/// (file name, SVG) of every offload setting measured.
pub fn plots(r: &LabReport) -> Vec<(String, String)> {
    distinct(&r.tcp, |c| c.offloads)
        .into_iter()
        .map(|o| (plot_file(o), plot(r, o)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::iperf::IperfResult;
    use super::super::report::tests::report;
    use super::super::tcp::TcpRun;
    use super::*;

    fn cell(path: PathKind, o: Offloads, streams: u32, gbps: Option<f64>) -> TcpCell {
        let mut c = TcpCell::new(path, o, streams);
        match gbps {
            Some(g) => c.runs.push(TcpRun {
                iperf: IperfResult {
                    received_bps: g * 1e9,
                    sent_bps: g * 1e9,
                    retransmits: 3,
                    sender_cpu_percent: 90.0,
                    receiver_cpu_percent: 40.0,
                    seconds: 1.0,
                },
                core_busy: vec![1.0, 0.5],
                core_softirq: vec![0.4, 0.1],
                gateway_cpu_percent: path.is_vipgate().then_some(99.0),
                ..TcpRun::default()
            }),
            None => c.error = Some("iperf3: unable | connect".into()),
        }
        c.summarise();
        c
    }

    fn tcp_report(tcp: Vec<TcpCell>) -> LabReport {
        let mut r = report(Vec::new());
        r.tcp = tcp;
        r
    }

    #[test]
    fn a_table_per_offload_setting_with_ratios_to_nftables_and_failures_in_place() {
        use Offloads::{Default as D, Off};
        use PathKind::{KernelNftables as Nft, VipgateAfPacket as Pkt, VipgateAfXdp as Xdp};
        let r = tcp_report(vec![
            cell(Nft, D, 1, Some(10.0)),
            cell(Nft, D, 4, Some(12.0)),
            cell(Xdp, D, 1, None),
            cell(Xdp, D, 4, Some(0.0)),
            cell(Nft, Off, 1, Some(4.0)),
            cell(Pkt, Off, 1, Some(3.0)),
        ]);
        let md = to_markdown(&r);
        assert!(md.contains("## tcp: bulk TCP with iperf3"), "{md}");
        assert!(
            !md.contains("Traffic: UDP"),
            "no UDP cells, no UDP text: {md}"
        );
        assert!(md.contains("### tcp, offloads default\n"), "{md}");
        assert!(md.contains("### tcp, offloads off\n"), "{md}");
        let row = |start: &str| {
            md.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start:?} in\n{md}"))
                .to_string()
        };
        assert_eq!(
            row("| kernel-nftables | 4 |"),
            "| kernel-nftables | 4 | 12.00 | 12.00 | 3 | 1.00x | 90% | 40% | - | 100% (40%) / 50% (10%) |"
        );
        assert!(row("| vipgate-af_xdp | 1 |").contains("| failed: iperf3: unable / connect |"));
        assert!(row("| vipgate-af_xdp | 4 |").contains("| 0.00x | 90% | 40% | 99% |"));
        assert!(row("| vipgate-af_packet | 1 |").contains("| 3.00 | 3.00 | 3 | 0.75x |"));
        assert!(md.contains("(tcp-offloads-default.svg)") && md.contains("(tcp-offloads-off.svg)"));
    }

    #[test]
    fn plots_have_a_line_per_path_and_failures_at_zero() {
        use PathKind::{KernelNftables as Nft, VipgateAfXdp as Xdp};
        let r = tcp_report(vec![
            cell(Nft, Offloads::Default, 1, Some(10.0)),
            cell(Nft, Offloads::Default, 4, Some(12.0)),
            cell(Xdp, Offloads::Default, 1, None),
            cell(Xdp, Offloads::Default, 4, None),
        ]);
        let files = plots(&r);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "tcp-offloads-default.svg");
        let svg = &files[0].1;
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains("vipgate-af_xdp (failed)"), "{svg}");

        let dir = std::env::temp_dir().join(format!("vipgate-tcpreport-{}", std::process::id()));
        let written = super::super::report::write_all(&r, &dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["report.json", "report.md", "tcp-offloads-default.svg"]
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(v["tcp"].as_array().unwrap().len(), 4);
        assert_eq!(v["tcp"][0]["offloads"], "default");
        assert_eq!(v["tcp"][0]["runs"][0]["received_bps"], 10e9);
        assert_eq!(v["config"]["offloads"][1], "off");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
