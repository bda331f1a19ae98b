//! `--traffic tcp`: bulk TCP through the gateway with iperf3, per path,
//! lab offload setting and stream count.
//!
//! Each (offloads, path) pair gets a fresh lab with one backend and one
//! TCP Service (VIP:80 -> backend:8080). Then, `repeats` times, an iperf3
//! test per stream count: a one-off server in the backend, the client in
//! the client namespace sending to the VIP for `duration` seconds. Every
//! test is bounded (connect timeout, then a kill), and a test that fails
//! is a run with an error (0 Gbit/s), never the end of the bench.
//!
//! One backend, because iperf3 `-P 4` opens a control connection plus
//! four data connections that must all reach the same server: with
//! several backends the kernel paths (random endpoint per connection) and
//! Maglev (a hash of each connection's 5-tuple) spread them over
//! backends, and the test aborts.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::lab::{self, Lab, LabSpec, Offloads};
use crate::matrix::median;

use super::iperf::{self, IperfResult};
use super::measure::{configure, Setup};
use super::services::{services_of, Proto, SERVICE_PORT, TARGET_PORT};
use super::{LabBenchConfig, PathKind};

/// Pause between tests: the previous server's sockets close and the
/// gateway's queues drain.
const BETWEEN_TESTS: Duration = Duration::from_millis(200);

impl Serialize for Offloads {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(offloads_name(*self))
    }
}

/// Both lab settings, in the order the bench measures them.
pub const ALL_OFFLOADS: [Offloads; 2] = [Offloads::Default, Offloads::Off];

/// `default` or `off`, as `--offloads` takes it.
pub fn offloads_name(o: Offloads) -> &'static str {
    match o {
        Offloads::Default => "default",
        Offloads::Off => "off",
    }
}

pub fn parse_offloads(s: &str) -> Result<Offloads, String> {
    ALL_OFFLOADS
        .into_iter()
        .find(|&o| offloads_name(o) == s)
        .ok_or_else(|| format!("unknown offloads {s:?}; one of default, off"))
}

/// CPU time counters of every core, from /proc/stat (clock ticks).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CoreTimes {
    /// Per core: (total, busy, softirq).
    cores: Vec<(u64, u64, u64)>,
}

impl CoreTimes {
    pub fn read() -> CoreTimes {
        std::fs::read_to_string("/proc/stat")
            .map(|s| CoreTimes::parse(&s))
            .unwrap_or_default()
    }

    /// The `cpuN` lines: user nice system idle iowait irq softirq steal ...;
    /// busy is everything but idle and iowait.
    pub fn parse(stat: &str) -> CoreTimes {
        let cores = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .map(|l| {
                let v: Vec<u64> = l
                    .split_whitespace()
                    .skip(1)
                    .take(8)
                    .map(|x| x.parse().unwrap_or(0))
                    .collect();
                let total: u64 = v.iter().sum();
                let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                (
                    total,
                    total.saturating_sub(idle),
                    v.get(6).copied().unwrap_or(0),
                )
            })
            .collect();
        CoreTimes { cores }
    }

    /// Per core, the busy and softirq shares (0..=1) from `self` to `later`.
    pub fn shares_until(&self, later: &CoreTimes) -> (Vec<f64>, Vec<f64>) {
        self.cores
            .iter()
            .zip(&later.cores)
            .map(|(a, b)| {
                let total = b.0.saturating_sub(a.0);
                if total == 0 {
                    return (0.0, 0.0);
                }
                let t = total as f64;
                (
                    b.1.saturating_sub(a.1) as f64 / t,
                    b.2.saturating_sub(a.2) as f64 / t,
                )
            })
            .unzip()
    }
}

/// User + system CPU seconds of process `pid`, all threads.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

/// One iperf3 test.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TcpRun {
    /// All zero when the test failed.
    #[serde(flatten)]
    pub iperf: IperfResult,
    pub error: Option<String>,
    /// Busy share of each core during the test (/proc/stat; everything
    /// but idle and iowait), and its softirq part, where the kernel paths
    /// forward and veth delivers.
    pub core_busy: Vec<f64>,
    pub core_softirq: Vec<f64>,
    /// `vipgate run`'s CPU use during the test, % of one core (vipgate
    /// paths only).
    pub gateway_cpu_percent: Option<f64>,
}

/// One path x offloads x stream count.
#[derive(Clone, Debug, Serialize)]
pub struct TcpCell {
    pub path: String,
    pub offloads: Offloads,
    pub streams: u32,
    pub runs: Vec<TcpRun>,
    /// Medians over the runs, a failed run counting as 0 Gbit/s.
    pub gbps: f64,
    pub sent_gbps: f64,
    pub retransmits: f64,
    pub sender_cpu_percent: f64,
    pub receiver_cpu_percent: f64,
    pub gateway_cpu_percent: Option<f64>,
    /// Per core, median busy and softirq shares.
    pub core_busy: Vec<f64>,
    pub core_softirq: Vec<f64>,
    pub failed_runs: usize,
    /// Seconds to load the rules or start the gateway.
    pub setup_seconds: f64,
    /// What `vipgate run` printed at exit (its counters), vipgate paths.
    pub gateway_summary: Option<String>,
    /// Why the cell has no figures: setup failed or every run did.
    pub error: Option<String>,
}

impl TcpCell {
    pub(crate) fn new(path: PathKind, offloads: Offloads, streams: u32) -> TcpCell {
        TcpCell {
            path: path.name().into(),
            offloads,
            streams,
            runs: Vec::new(),
            gbps: 0.0,
            sent_gbps: 0.0,
            retransmits: 0.0,
            sender_cpu_percent: 0.0,
            receiver_cpu_percent: 0.0,
            gateway_cpu_percent: None,
            core_busy: Vec::new(),
            core_softirq: Vec::new(),
            failed_runs: 0,
            setup_seconds: 0.0,
            gateway_summary: None,
            error: None,
        }
    }

    /// Fills the medians from the runs; with no successful run the first
    /// run's error becomes the cell's.
    pub fn summarise(&mut self) {
        let m = |f: &dyn Fn(&TcpRun) -> f64| median(&self.runs.iter().map(f).collect::<Vec<_>>());
        self.gbps = m(&|r| r.iperf.received_bps) / 1e9;
        self.sent_gbps = m(&|r| r.iperf.sent_bps) / 1e9;
        let ok: Vec<&TcpRun> = self.runs.iter().filter(|r| r.error.is_none()).collect();
        self.failed_runs = self.runs.len() - ok.len();
        let m_ok =
            |f: &dyn Fn(&TcpRun) -> f64| median(&ok.iter().map(|r| f(r)).collect::<Vec<_>>());
        self.retransmits = m_ok(&|r| r.iperf.retransmits as f64);
        self.sender_cpu_percent = m_ok(&|r| r.iperf.sender_cpu_percent);
        self.receiver_cpu_percent = m_ok(&|r| r.iperf.receiver_cpu_percent);
        let g: Vec<f64> = ok.iter().filter_map(|r| r.gateway_cpu_percent).collect();
        self.gateway_cpu_percent = (!g.is_empty()).then(|| median(&g));
        let per_core = |f: &dyn Fn(&TcpRun) -> &Vec<f64>| -> Vec<f64> {
            let n = ok.iter().map(|r| f(r).len()).min().unwrap_or(0);
            (0..n)
                .map(|c| median(&ok.iter().map(|r| f(r)[c]).collect::<Vec<_>>()))
                .collect()
        };
        self.core_busy = per_core(&|r| &r.core_busy);
        self.core_softirq = per_core(&|r| &r.core_softirq);
        if ok.is_empty() && self.error.is_none() {
            self.error = self.runs.iter().find_map(|r| r.error.clone());
        }
    }
}

/// Every (offloads, path, streams) cell. A failure is recorded in its cells.
pub fn run(cfg: &LabBenchConfig) -> Vec<TcpCell> {
    let total = cfg.offloads.len() * cfg.paths.len();
    let mut cells = Vec::with_capacity(total * cfg.streams.len());
    let mut k = 0;
    for &offloads in &cfg.offloads {
        for &path in &cfg.paths {
            k += 1;
            eprintln!(
                "[{k}/{total}] tcp: {} (offloads {})",
                path.name(),
                offloads_name(offloads)
            );
            cells.extend(run_lab(path, offloads, cfg));
        }
    }
    cells
}

/// One lab: the cells of every stream count of `path` with `offloads`.
fn run_lab(path: PathKind, offloads: Offloads, cfg: &LabBenchConfig) -> Vec<TcpCell> {
    let mut cells: Vec<TcpCell> = cfg
        .streams
        .iter()
        .map(|&n| TcpCell::new(path, offloads, n))
        .collect();
    if let Err(e) = measure_lab(path, offloads, cfg, &mut cells) {
        eprintln!("  FAILED: {e}");
        for c in &mut cells {
            c.error = Some(e.clone());
        }
    }
    for c in &mut cells {
        c.summarise();
        let status = match &c.error {
            Some(e) => format!("FAILED: {e}"),
            None if c.failed_runs > 0 => format!(
                "{:.2} Gbit/s, {:.0} retransmits ({} of {} runs failed)",
                c.gbps,
                c.retransmits,
                c.failed_runs,
                c.runs.len()
            ),
            None => format!("{:.2} Gbit/s, {:.0} retransmits", c.gbps, c.retransmits),
        };
        eprintln!("  median -P {}: {status}", c.streams);
    }
    cells
}

fn measure_lab(
    path: PathKind,
    offloads: Offloads,
    cfg: &LabBenchConfig,
    cells: &mut [TcpCell],
) -> Result<(), String> {
    let lab = Lab::up(LabSpec {
        backends: 1,
        ipv6: false,
        offloads,
        mtu: lab::DEFAULT_MTU,
    })?;
    let backend = lab::backend_v4(0);
    let svcs = services_of(Proto::Tcp, 1, &[backend])?;
    let t0 = Instant::now();
    let setup = configure(path, &lab, &svcs, cfg)?;
    let setup_seconds = t0.elapsed().as_secs_f64();
    let gw_pid = match &setup {
        Setup::Vipgate(g) => Some(g.pid()),
        Setup::Kernel => None,
    };
    let to = SocketAddrV4::new(svcs[0].vip, SERVICE_PORT);
    let seconds = iperf::test_seconds(cfg.duration);
    for r in 0..cfg.repeats {
        for c in cells.iter_mut() {
            c.setup_seconds = setup_seconds;
            let run = one_test(&lab, to, seconds, c.streams, gw_pid);
            eprintln!(
                "  run {}/{} -P {}: {}",
                r + 1,
                cfg.repeats,
                c.streams,
                match &run.error {
                    Some(e) => format!("FAILED: {e}"),
                    None => format!(
                        "{:.2} Gbit/s, {} retransmits",
                        run.iperf.received_bps / 1e9,
                        run.iperf.retransmits
                    ),
                }
            );
            c.runs.push(run);
            std::thread::sleep(BETWEEN_TESTS);
        }
    }
    if let Setup::Vipgate(g) = setup {
        // The figures stand even if the gateway then fails to stop cleanly.
        let summary = g.stop().unwrap_or_else(|e| format!("stop failed: {e}"));
        for c in cells.iter_mut() {
            c.gateway_summary = Some(summary.clone());
        }
    }
    Ok(())
}

/// One iperf3 test with a fresh one-off server, and what the cores did.
fn one_test(lab: &Lab, to: SocketAddrV4, seconds: u64, streams: u32, gw: Option<u32>) -> TcpRun {
    let mut run = TcpRun::default();
    let server = match iperf::Server::start(&lab.backends[0], lab::backend_v4(0), TARGET_PORT) {
        Ok(s) => s,
        Err(e) => {
            run.error = Some(e);
            return run;
        }
    };
    let cores0 = CoreTimes::read();
    let gw0 = gw.and_then(process_cpu_seconds);
    let t0 = Instant::now();
    let res = iperf::client(&lab.client, to, seconds, streams);
    let wall = t0.elapsed().as_secs_f64();
    let gw1 = gw.and_then(process_cpu_seconds);
    (run.core_busy, run.core_softirq) = cores0.shares_until(&CoreTimes::read());
    if let (Some(a), Some(b)) = (gw0, gw1) {
        run.gateway_cpu_percent = Some((b - a) / wall * 100.0);
    }
    drop(server);
    match res {
        Ok(r) => run.iperf = r,
        Err(e) => run.error = Some(e),
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_names_round_trip() {
        for o in ALL_OFFLOADS {
            assert_eq!(parse_offloads(offloads_name(o)).unwrap(), o);
        }
        assert!(parse_offloads("on").is_err());
        assert_eq!(
            serde_json::to_string(&Offloads::Off).unwrap(),
            "\"off\"",
            "reports name the setting"
        );
    }

    #[test]
    fn core_shares_come_from_per_core_lines_only() {
        let a = CoreTimes::parse(
            "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40 0 0 0 0 0 0\ncpu1 5 0 5 40 0 0 0 0 0 0\nintr 1\n",
        );
        let b = CoreTimes::parse(
            "cpu  0 0 0 0 0 0 0 0 0 0\ncpu0 55 0 5 40 0 0 50 0 0 0\ncpu1 5 0 5 130 10 0 0 0 0 0\n",
        );
        let (busy, soft) = a.shares_until(&b);
        // cpu0: +100 ticks, all busy, half softirq; cpu1: +100, all idle/iowait.
        assert_eq!(busy, vec![1.0, 0.0]);
        assert_eq!(soft, vec![0.5, 0.0]);
        assert_eq!(a.shares_until(&a), (vec![0.0, 0.0], vec![0.0, 0.0]));
    }

    #[test]
    fn this_process_has_cpu_time() {
        let t0 = process_cpu_seconds(std::process::id()).unwrap();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(process_cpu_seconds(std::process::id()).unwrap() >= t0);
        assert!(process_cpu_seconds(u32::MAX).is_none());
    }

    fn run(gbps: f64, error: Option<&str>) -> TcpRun {
        TcpRun {
            iperf: IperfResult {
                received_bps: gbps * 1e9,
                sent_bps: gbps * 1e9,
                retransmits: 7,
                ..IperfResult::default()
            },
            error: error.map(str::to_string),
            core_busy: vec![0.5, 1.0],
            core_softirq: vec![0.25, 0.0],
            gateway_cpu_percent: Some(100.0),
        }
    }

    #[test]
    fn failed_runs_count_as_zero_and_all_failed_is_a_cell_error() {
        let mut c = TcpCell::new(PathKind::VipgateAfXdp, Offloads::Default, 4);
        c.runs = vec![
            run(10.0, None),
            TcpRun {
                error: Some("iperf3: timed out".into()),
                ..TcpRun::default()
            },
            run(8.0, None),
        ];
        c.summarise();
        assert_eq!(c.gbps, 8.0);
        assert_eq!(c.failed_runs, 1);
        assert_eq!(c.retransmits, 7.0);
        assert_eq!(c.core_busy, vec![0.5, 1.0]);
        assert_eq!(c.gateway_cpu_percent, Some(100.0));
        assert!(c.error.is_none());

        let mut f = TcpCell::new(PathKind::VipgateAfXdp, Offloads::Default, 1);
        f.runs = vec![TcpRun {
            error: Some("iperf3: unable to connect".into()),
            ..TcpRun::default()
        }];
        f.summarise();
        assert_eq!(f.gbps, 0.0);
        assert_eq!(f.error.as_deref(), Some("iperf3: unable to connect"));
        assert!(f.core_busy.is_empty());
    }
}
