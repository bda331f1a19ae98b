//! A fixture as a list of steps (input frame, what the pipeline must do with
//! it, the frame it must write) and the files written from it.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    Malformed,
    TtlExceeded,
    /// An SCTP packet other than an INIT outside any association.
    SctpNoAssociation,
    /// An SCTP ABORT / SHUTDOWN COMPLETE to a Service without endpoints.
    SctpNoEndpointsUnanswered,
}

/// What the pipeline does with one input frame; the names are the keys of
/// `vipgate replay --json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Client -> VIP rewritten to a backend (or an ICMP error to a VIP).
    Forwarded,
    /// Backend -> client rewritten to come from the VIP (or an ICMP error).
    Reversed,
    /// To a VIP without endpoints: answered with a RST or ICMP unreachable.
    Rejected,
    /// Not service traffic: handed to the kernel, nothing written.
    Passed,
    Dropped(Drop),
}

#[derive(Clone, Debug)]
pub struct Step {
    pub ts: Duration,
    pub input: Vec<u8>,
    pub verdict: Verdict,
    /// The frame written for this input; present exactly for Forwarded,
    /// Reversed and Rejected.
    pub output: Option<Vec<u8>>,
}

/// Verdict counts, as `X.expected.json` holds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub forwarded: u64,
    pub reversed: u64,
    pub rejected: u64,
    pub passed: u64,
    pub malformed: u64,
    pub ttl_exceeded: u64,
    pub sctp_no_association: u64,
    pub sctp_no_endpoints_unanswered: u64,
}

impl Counts {
    pub fn of(steps: &[Step]) -> Counts {
        let mut c = Counts::default();
        for s in steps {
            c.packets += 1;
            match s.verdict {
                Verdict::Forwarded => c.forwarded += 1,
                Verdict::Reversed => c.reversed += 1,
                Verdict::Rejected => c.rejected += 1,
                Verdict::Passed => c.passed += 1,
                Verdict::Dropped(Drop::Malformed) => c.malformed += 1,
                Verdict::Dropped(Drop::TtlExceeded) => c.ttl_exceeded += 1,
                Verdict::Dropped(Drop::SctpNoAssociation) => c.sctp_no_association += 1,
                Verdict::Dropped(Drop::SctpNoEndpointsUnanswered) => {
                    c.sctp_no_endpoints_unanswered += 1
                }
            }
        }
        c
    }

    /// Written by hand with a fixed key order so the bytes never depend on
    /// how a JSON library orders maps. The SCTP reasons are listed only
    /// when some frame has them.
    pub fn to_json(&self) -> String {
        let mut sctp = String::new();
        for (key, n) in [
            ("sctp_no_association", self.sctp_no_association),
            (
                "sctp_no_endpoints_unanswered",
                self.sctp_no_endpoints_unanswered,
            ),
        ] {
            if n > 0 {
                sctp.push_str(&format!(",\n    \"{key}\": {n}"));
            }
        }
        format!(
            "{{\n  \"packets\": {},\n  \"forwarded\": {},\n  \"reversed\": {},\n  \"rejected\": {},\n  \"passed\": {},\n  \"dropped\": {{\n    \"malformed\": {},\n    \"ttl_exceeded\": {}{sctp}\n  }}\n}}\n",
            self.packets,
            self.forwarded,
            self.reversed,
            self.rejected,
            self.passed,
            self.malformed,
            self.ttl_exceeded
        )
    }
}

/// Collects steps with timestamps that only move forward.
#[derive(Debug, Default)]
pub struct Recorder {
    pub steps: Vec<Step>,
}

impl Recorder {
    /// A frame the pipeline writes nothing for.
    pub fn silent(&mut self, ts: Duration, input: Vec<u8>, verdict: Verdict) {
        assert!(matches!(verdict, Verdict::Passed | Verdict::Dropped(_)));
        self.push(Step {
            ts,
            input,
            verdict,
            output: None,
        });
    }

    /// A frame that makes the pipeline write `output`.
    pub fn answered(&mut self, ts: Duration, input: Vec<u8>, verdict: Verdict, output: Vec<u8>) {
        assert!(matches!(
            verdict,
            Verdict::Forwarded | Verdict::Reversed | Verdict::Rejected
        ));
        self.push(Step {
            ts,
            input,
            verdict,
            output: Some(output),
        });
    }

    fn push(&mut self, step: Step) {
        if let Some(last) = self.steps.last() {
            assert!(step.ts >= last.ts, "timestamps must not go back");
        }
        assert_eq!(step.ts.subsec_nanos() % 1000, 0, "microsecond pcap");
        self.steps.push(step);
    }
}

/// The pcap header every fixture uses: classic microsecond pcap, Ethernet,
/// little-endian as libpcap writes it on x86.
pub fn pcap_header() -> PcapHeader {
    PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: 65535,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Little,
    }
}

/// Writes `frames` (timestamp, bytes) as a pcap file.
pub fn write_pcap<'a>(
    path: &Path,
    frames: impl IntoIterator<Item = (Duration, &'a [u8])>,
) -> io::Result<()> {
    let file = BufWriter::new(File::create(path)?);
    let mut w = PcapWriter::with_header(file, pcap_header()).map_err(io::Error::other)?;
    for (ts, data) in frames {
        w.write_packet(&PcapPacket::new(ts, data.len() as u32, data))
            .map_err(io::Error::other)?;
    }
    w.into_writer().flush()
}

/// Writes `<name>.pcap`, `<name>-services.yaml`, `<name>.expected.json` and,
/// when asked, `<name>.expected.pcap` (outputs stamped with their input's time).
pub fn write_fixture(
    dir: &Path,
    name: &str,
    steps: &[Step],
    services_yaml: &str,
    expected_pcap: bool,
) -> io::Result<()> {
    write_pcap(
        &dir.join(format!("{name}.pcap")),
        steps.iter().map(|s| (s.ts, &s.input[..])),
    )?;
    if expected_pcap {
        write_pcap(
            &dir.join(format!("{name}.expected.pcap")),
            steps
                .iter()
                .filter_map(|s| s.output.as_deref().map(|o| (s.ts, o))),
        )?;
    }
    std::fs::write(dir.join(format!("{name}-services.yaml")), services_yaml)?;
    std::fs::write(
        dir.join(format!("{name}.expected.json")),
        Counts::of(steps).to_json(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_verdicts() {
        let mut r = Recorder::default();
        let t = Duration::from_micros(5);
        r.answered(t, vec![1], Verdict::Forwarded, vec![2]);
        r.answered(t, vec![1], Verdict::Reversed, vec![2]);
        r.answered(t, vec![1], Verdict::Rejected, vec![2]);
        r.silent(t, vec![1], Verdict::Passed);
        r.silent(t, vec![1], Verdict::Dropped(Drop::Malformed));
        r.silent(t, vec![1], Verdict::Dropped(Drop::Malformed));
        let c = Counts::of(&r.steps);
        assert_eq!(
            c,
            Counts {
                packets: 6,
                forwarded: 1,
                reversed: 1,
                rejected: 1,
                passed: 1,
                malformed: 2,
                ttl_exceeded: 0,
                sctp_no_association: 0,
                sctp_no_endpoints_unanswered: 0,
            }
        );
        assert!(c.to_json().contains("\"malformed\": 2"));
    }

    #[test]
    #[should_panic(expected = "go back")]
    fn time_never_goes_back() {
        let mut r = Recorder::default();
        r.silent(Duration::from_secs(2), vec![], Verdict::Passed);
        r.silent(Duration::from_secs(1), vec![], Verdict::Passed);
    }
}
