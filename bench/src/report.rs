//! The replay matrix's report: `report.json` (every raw run, medians, the
//! machine), `report.md` (tables for people) and two SVG line plots. The
//! SVG is written by hand: two small charts do not justify a plotting stack.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::matrix::CellResult;

/// What the numbers were measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// /proc/loadavg when the run started: other work on the machine skews
    /// the figures, and this says how much there was.
    pub load_average: String,
}

impl Machine {
    /// Reads /proc/cpuinfo and uname(2); unknown fields say "unknown".
    pub fn detect() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| cpu_model(&s))
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel: kernel().unwrap_or_else(|| "unknown".into()),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
        }
    }
}

/// The first `model name` of a /proc/cpuinfo text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

fn kernel() -> Option<String> {
    let out = std::process::Command::new("uname")
        .arg("-srvm")
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    let s = s.trim();
    (out.status.success() && !s.is_empty()).then(|| s.to_string())
}

/// How the matrix was run.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    pub duration_seconds: f64,
    pub repeats: usize,
    pub quick: bool,
    pub burst: usize,
    pub conntrack_capacity: u32,
    pub pinned: bool,
}

/// Everything a report holds.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub vipgate_version: String,
    pub command_line: Vec<String>,
    /// Start of the run, seconds since the Unix epoch.
    pub started_unix: u64,
    pub machine: Machine,
    pub config: RunConfig,
    pub cells: Vec<CellResult>,
}

/// `YYYYMMDD-HHMMSS` in UTC, for output directory names.
pub fn utc_stamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil-from-days (proleptic Gregorian), so no date crate is needed.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn table_label(services: u32, backends: u32) -> String {
    if backends == 0 {
        format!("{services} svc")
    } else {
        format!("{services} svc x {backends} be")
    }
}

/// Distinct (services, backends) shapes, in order of services then backends.
fn shapes(cells: &[CellResult]) -> Vec<(u32, u32)> {
    let set: BTreeSet<(u32, u32)> = cells.iter().map(|c| (c.services, c.backends)).collect();
    set.into_iter().collect()
}

/// Mix names in first-seen order.
fn mixes(cells: &[CellResult]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for c in cells {
        if !v.contains(&c.mix) {
            v.push(c.mix.clone());
        }
    }
    v
}

fn workers(cells: &[CellResult]) -> Vec<usize> {
    let set: BTreeSet<usize> = cells.iter().map(|c| c.workers).collect();
    set.into_iter().collect()
}

fn find<'a>(
    cells: &'a [CellResult],
    mix: &str,
    shape: (u32, u32),
    workers: usize,
) -> Option<&'a CellResult> {
    cells
        .iter()
        .find(|c| c.mix == mix && (c.services, c.backends) == shape && c.workers == workers)
}

/// The shapes that differ only in service count: the most common backend
/// count, so "throughput vs services" changes one thing at a time.
fn service_series(cells: &[CellResult]) -> (u32, Vec<u32>) {
    let all = shapes(cells);
    let mut best = (0usize, 0u32);
    for &(_, b) in &all {
        let n = all.iter().filter(|s| s.1 == b).count();
        if n > best.0 {
            best = (n, b);
        }
    }
    let b = best.1;
    (b, all.iter().filter(|s| s.1 == b).map(|s| s.0).collect())
}

/// `report.md`.
pub fn to_markdown(r: &Report) -> String {
    let cells = &r.cells;
    let mut s = String::new();
    let _ = writeln!(s, "# vipgate bench replay\n");
    let _ = writeln!(
        s,
        "vipgate {} on {} ({} cores), kernel {}.  ",
        r.vipgate_version, r.machine.cpu_model, r.machine.cores, r.machine.kernel
    );
    let _ = writeln!(s, "Command: `{}`  ", r.command_line.join(" "));
    let _ = writeln!(s, "Load average at start: {}  ", r.machine.load_average);
    let _ = writeln!(
        s,
        "Each cell is the median of {} runs; {} s budget in all, burst {}, conntrack {} entries per worker{}.\n",
        r.config.repeats,
        r.config.duration_seconds,
        r.config.burst,
        r.config.conntrack_capacity,
        if r.config.pinned { ", workers pinned" } else { "" }
    );
    if let Some(c) = cells.iter().max_by(|a, b| a.spread.total_cmp(&b.spread)) {
        let _ = writeln!(
            s,
            "Largest spread between repeats: {:.0}% ({} x {} x {} worker{}); treat differences smaller than that as noise.\n",
            c.spread * 100.0,
            c.mix,
            table_label(c.services, c.backends),
            c.workers,
            plural(c.workers)
        );
    }
    let ws = workers(cells);
    let all_shapes = shapes(cells);
    let Some(&w0) = ws.first() else {
        let _ = writeln!(s, "No cells were run.");
        return s;
    };

    let _ = writeln!(
        s,
        "## Mpps per core by mix x table size ({w0} worker{})\n",
        plural(w0)
    );
    let _ = write!(s, "| mix |");
    for &(sv, b) in &all_shapes {
        let _ = write!(s, " {} |", table_label(sv, b));
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|{}", "---:|".repeat(all_shapes.len()));
    for m in mixes(cells) {
        let _ = write!(s, "| {m} |");
        for &shape in &all_shapes {
            match find(cells, &m, shape, w0) {
                Some(c) => {
                    let _ = write!(
                        s,
                        " {:.2} ({:.0} ns) |",
                        c.mpps_per_core, c.median_ns_per_packet
                    );
                }
                None => s.push_str(" - |"),
            }
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "\nns = busy nanoseconds per packet on one core. New flows per packet (median run): {}. \
         Each run first replays the capture once untimed (warm-up), so established, udp and \
         mix meet existing flows when timed; syn overflows conntrack and creates a flow per packet.\n",
        mixes(cells)
            .iter()
            .filter_map(|m| {
                cells
                    .iter()
                    .find(|c| &c.mix == m && c.workers == w0)
                    .map(|c| format!("{m} {:.2}", c.new_flows_per_packet))
            })
            .collect::<Vec<_>>()
            .join(", ")
    );

    let _ = writeln!(
        s,
        "## Scaling by workers (total Mpps, speed-up over {w0})\n"
    );
    let _ = write!(s, "| mix | table |");
    for w in &ws {
        let _ = write!(s, " {w} worker{} |", plural(*w));
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|---|{}", "---:|".repeat(ws.len()));
    for m in mixes(cells) {
        for &shape in &all_shapes {
            let Some(base) = find(cells, &m, shape, w0) else {
                continue;
            };
            let _ = write!(s, "| {m} | {} |", table_label(shape.0, shape.1));
            for &w in &ws {
                match find(cells, &m, shape, w) {
                    Some(c) if base.median_mpps > 0.0 => {
                        let _ = write!(
                            s,
                            " {:.2} (x{:.2}) |",
                            c.median_mpps,
                            c.median_mpps / base.median_mpps
                        );
                    }
                    Some(c) => {
                        let _ = write!(s, " {:.2} |", c.median_mpps);
                    }
                    None => s.push_str(" - |"),
                }
            }
            let _ = writeln!(s);
        }
    }

    let (b, svcs) = service_series(cells);
    if let (Some(&lo), Some(&hi)) = (svcs.first(), svcs.last()) {
        let _ = writeln!(
            s,
            "\n## Flatness: {hi} vs {lo} services ({b} backends each, {w0} worker{})\n",
            plural(w0)
        );
        let _ = writeln!(s, "| mix | Mpps at {lo} | Mpps at {hi} | ratio |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        for m in mixes(cells) {
            if let (Some(a), Some(z)) = (find(cells, &m, (lo, b), w0), find(cells, &m, (hi, b), w0))
            {
                let ratio = if a.median_mpps > 0.0 {
                    z.median_mpps / a.median_mpps
                } else {
                    0.0
                };
                let _ = writeln!(
                    s,
                    "| {m} | {:.2} | {:.2} | {ratio:.2} |",
                    a.median_mpps, z.median_mpps
                );
            }
        }
        let _ = writeln!(
            s,
            "\nA ratio of 1.00 means table size costs nothing per packet."
        );
    }
    let _ = writeln!(
        s,
        "\nPlots: [throughput vs services](throughput-vs-services.svg), [throughput vs workers](throughput-vs-workers.svg)."
    );
    s
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// One line of a plot.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn fmt_tick(v: f64) -> String {
    if v >= 1000.0 || (v.fract() == 0.0 && v.abs() < 1e6) {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A line chart as an SVG document. `log_x` puts x on a log10 scale (x
/// values must then be positive). The y axis starts at 0 so ratios read true.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    log_x: bool,
    series: &[Series],
) -> String {
    let (w, h) = (720.0, 420.0);
    let (l, r, t, b) = (70.0, 160.0, 40.0, 55.0);
    let pts = series.iter().flat_map(|s| s.points.iter());
    let tx = |x: f64| if log_x { x.max(1e-9).log10() } else { x };
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(tx(x));
        x1 = x1.max(tx(x));
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let y1 = if y1 > 0.0 { nice_ceil(y1 * 1.05) } else { 1.0 };
    let px = |x: f64| l + (tx(x) - x0) / (x1 - x0) * (w - l - r);
    let py = |y: f64| h - b - y / y1 * (h - t - b);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        (l + w - r) / 2.0,
        esc(title)
    );
    // Axes and y grid.
    for i in 0..=5 {
        let v = y1 * f64::from(i) / 5.0;
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            w - r,
            l - 6.0,
            y + 4.0,
            fmt_tick((v * 100.0).round() / 100.0)
        );
    }
    let xs: BTreeSet<u64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0.to_bits()))
        .collect();
    for xb in xs {
        let x = f64::from_bits(xb);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            px(x),
            h - b + 16.0,
            fmt_tick(x)
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{l}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="black"/><line x1="{l}" y1="{t}" x2="{l}" y2="{0:.1}" stroke="black"/>"#,
        h - b,
        w - r
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (l + w - r) / 2.0,
        h - 12.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (t + h - b) / 2.0,
        esc(y_label)
    );
    for (i, se) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let mut p: Vec<(f64, f64)> = se.points.clone();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = p
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for &(x, y) in &p {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"><title>{}: {} -> {:.2}</title></circle>"#,
                px(x),
                py(y),
                esc(&se.name),
                fmt_tick(x),
                y
            );
        }
        let ly = t + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{0:.1}" y1="{ly:.1}" x2="{1:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="2"/><text x="{2:.1}" y="{3:.1}">{4}</text>"#,
            w - r + 15.0,
            w - r + 40.0,
            w - r + 46.0,
            ly + 4.0,
            esc(&se.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The smallest of 1, 2, 5 x 10^k that is >= v.
fn nice_ceil(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

/// Mpps per core against service count, one line per mix, first worker count.
pub fn services_plot(r: &Report) -> String {
    let w0 = workers(&r.cells).first().copied().unwrap_or(1);
    let (b, svcs) = service_series(&r.cells);
    let series: Vec<Series> = mixes(&r.cells)
        .into_iter()
        .map(|m| Series {
            points: svcs
                .iter()
                .filter_map(|&sv| find(&r.cells, &m, (sv, b), w0))
                .map(|c| (f64::from(c.services), c.mpps_per_core))
                .collect(),
            name: m,
        })
        .collect();
    line_chart(
        &format!(
            "Throughput vs services ({b} backends, {w0} worker{})",
            plural(w0)
        ),
        "services (log scale)",
        "Mpps per core",
        svcs.iter().all(|&s| s > 0),
        &series,
    )
}

/// Total Mpps against workers, one line per mix, at the table shape with
/// the most worker counts measured (ties: the first).
pub fn workers_plot(r: &Report) -> String {
    let shape = shapes(&r.cells)
        .into_iter()
        .max_by_key(|&sh| {
            let n = r
                .cells
                .iter()
                .filter(|c| (c.services, c.backends) == sh)
                .count();
            // Prefer 100 services when it ties: the usual reference size.
            (n, sh.0 == 100, std::cmp::Reverse(sh.1))
        })
        .unwrap_or((0, 0));
    let series: Vec<Series> = mixes(&r.cells)
        .into_iter()
        .map(|m| Series {
            points: r
                .cells
                .iter()
                .filter(|c| c.mix == m && (c.services, c.backends) == shape)
                .map(|c| (c.workers as f64, c.median_mpps))
                .collect(),
            name: m,
        })
        .collect();
    line_chart(
        &format!("Throughput vs workers ({})", table_label(shape.0, shape.1)),
        "workers",
        "Mpps (all workers)",
        false,
        &series,
    )
}

/// Writes report.json, report.md and the two plots into `dir` (created if
/// missing); returns the paths written.
pub fn write_all(r: &Report, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(r).map_err(io::Error::other)?;
    let files = [
        ("report.json", json),
        ("report.md", to_markdown(r)),
        ("throughput-vs-services.svg", services_plot(r)),
        ("throughput-vs-workers.svg", workers_plot(r)),
    ];
    let mut out = Vec::new();
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text)?;
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::Run;

    fn cell(mix: &str, services: u32, backends: u32, workers: usize, mpps: f64) -> CellResult {
        CellResult {
            mix: mix.into(),
            services,
            backends,
            workers,
            capture_packets: 10,
            runs: vec![Run {
                loops: 1,
                packets: 10,
                seconds: 1.0,
                mpps,
                ns_per_packet: 1000.0 / mpps,
                forwarded: 10,
                passed: 0,
                dropped: 0,
                flows: 5,
            }],
            median_mpps: mpps,
            median_ns_per_packet: 1000.0 / mpps,
            mpps_per_core: mpps / workers as f64,
            new_flows_per_packet: 0.5,
            spread: f64::from(services % 7) / 10.0,
        }
    }

    fn report(cells: Vec<CellResult>) -> Report {
        Report {
            vipgate_version: "0.0.0".into(),
            command_line: vec!["vipgate".into(), "bench".into()],
            started_unix: 0,
            machine: Machine {
                cores: 2,
                cpu_model: "test <cpu>".into(),
                kernel: "k".into(),
                load_average: "0.00 0.00 0.00".into(),
            },
            config: RunConfig {
                duration_seconds: 1.0,
                repeats: 3,
                quick: true,
                burst: 64,
                conntrack_capacity: 1024,
                pinned: false,
            },
            cells,
        }
    }

    #[test]
    fn stamp_is_utc_calendar_time() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400 + 3661), "20000229-010101");
        assert_eq!(utc_stamp(1_798_761_599), "20261231-235959");
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let s =
            "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(cpu_model(s).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("flags: x"), None);
    }

    #[test]
    fn markdown_tables_hold_every_cell_and_the_flatness_ratio() {
        let r = report(vec![
            cell("syn", 1, 10, 1, 4.0),
            cell("syn", 10000, 10, 1, 3.0),
            cell("syn", 1, 10, 2, 8.0),
            cell("syn", 100, 1000, 1, 2.0),
        ]);
        let md = to_markdown(&r);
        assert!(md.contains("| mix | 1 svc x 10 be | 100 svc x 1000 be | 10000 svc x 10 be |"));
        assert!(md.contains("| syn | 4.00 (250 ns) | 2.00 (500 ns) | 3.00 (333 ns) |"));
        assert!(md.contains("| syn | 1 svc x 10 be | 4.00 (x1.00) | 8.00 (x2.00) |"));
        assert!(md.contains("Flatness: 10000 vs 1 services"));
        assert!(md.contains("| syn | 4.00 | 3.00 | 0.75 |"));
        // 10000 % 7 = 4: the largest spread of the four cells.
        assert!(
            md.contains("Largest spread between repeats: 40% (syn x 10000 svc x 10 be x 1 worker)")
        );
    }

    #[test]
    fn plots_are_svg_with_one_line_per_mix() {
        let r = report(vec![
            cell("udp", 1, 10, 1, 4.0),
            cell("udp", 100, 10, 1, 3.5),
            cell("mix", 1, 10, 1, 2.0),
            cell("mix", 100, 10, 1, 1.5),
            cell("mix", 100, 10, 2, 3.0),
        ]);
        for svg in [services_plot(&r), workers_plot(&r)] {
            assert!(svg.starts_with("<svg"));
            assert!(svg.trim_end().ends_with("</svg>"));
            assert_eq!(svg.matches("<polyline").count(), 2);
        }
        assert_eq!(services_plot(&r).matches("<circle").count(), 4);
        // Workers plot uses the 100-service shape: 1 point for udp, 2 for mix.
        assert_eq!(workers_plot(&r).matches("<circle").count(), 3);
    }

    #[test]
    fn nice_ceil_rounds_up_to_1_2_5() {
        assert_eq!(nice_ceil(3.2), 5.0);
        assert_eq!(nice_ceil(0.15), 0.2);
        assert_eq!(nice_ceil(10.0), 10.0);
        assert_eq!(nice_ceil(11.0), 20.0);
    }

    #[test]
    fn write_all_writes_four_files_and_json_round_trips() {
        let dir = std::env::temp_dir().join(format!("vipgate-report-test-{}", std::process::id()));
        let r = report(vec![cell("udp", 1, 10, 1, 4.0)]);
        let files = write_all(&r, &dir).unwrap();
        assert_eq!(files.len(), 4);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(v["cells"][0]["median_mpps"], 4.0);
        assert_eq!(v["machine"]["cpu_model"], "test <cpu>");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
