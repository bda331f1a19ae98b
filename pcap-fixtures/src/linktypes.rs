//! The `basic` fixture in the other forms `vipgate replay` accepts: other
//! link types (`linktype-*.pcap`) and files with damaged records
//! (`damaged.pcap`, `damaged-ng.pcapng`). Each replays against
//! `basic-services.yaml`; `X.expected.json` and `X.expected.pcap` are the
//! basic expectations for the frames the form can carry, with the
//! synthetic MACs the replay documents for non-Ethernet link types.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::blocks::unknown::UnknownBlock;
use pcap_file::pcapng::{Block, PcapNgWriter, RawBlock};
use pcap_file::{DataLink, Endianness};

use crate::fixture::{pcap_header, write_pcap, Counts, Step};

/// What `vipgate replay --help` documents: the capturing node's MAC and
/// its peer's, put on frames of link types without Ethernet headers.
const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn ethertype(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[12], f[13]])
}

/// `f` with MACs from `src` to `dst`.
fn with_macs(f: &[u8], src: [u8; 6], dst: [u8; 6]) -> Vec<u8> {
    let mut v = f.to_vec();
    v[..6].copy_from_slice(&dst);
    v[6..12].copy_from_slice(&src);
    v
}

/// The step as received from the peer with synthetic MACs; its output
/// keeps the input's MACs (a rewrite) or swaps them (an answer).
fn synthetic(s: &Step) -> Step {
    let output = s.output.as_ref().map(|o| {
        if o[..12] == s.input[..12] {
            with_macs(o, PEER_MAC, NODE_MAC)
        } else {
            assert!(o[..6] == s.input[6..12] && o[6..12] == s.input[..6]);
            with_macs(o, NODE_MAC, PEER_MAC)
        }
    });
    Step {
        ts: s.ts,
        input: with_macs(&s.input, PEER_MAC, NODE_MAC),
        verdict: s.verdict,
        output,
    }
}

/// One link type: its code and how an Ethernet frame's payload is wrapped.
struct Form {
    name: &'static str,
    link: u32,
    /// Which frames it can carry.
    carries: fn(&[u8]) -> bool,
    /// The record for an Ethernet frame received from the peer.
    record: fn(&[u8]) -> Vec<u8>,
}

fn is_ip(f: &[u8]) -> bool {
    f.len() >= 14 && matches!(ethertype(f), 0x0800 | 0x86dd)
}

fn is_v4(f: &[u8]) -> bool {
    f.len() >= 14 && ethertype(f) == 0x0800
}

fn is_v6(f: &[u8]) -> bool {
    f.len() >= 14 && ethertype(f) == 0x86dd
}

fn any(f: &[u8]) -> bool {
    f.len() >= 14
}

fn sll(f: &[u8]) -> Vec<u8> {
    // packet type HOST, ARPHRD_ETHER, address length 6, the peer's MAC.
    let mut r = vec![0, 0, 0, 1, 0, 6];
    r.extend_from_slice(&PEER_MAC);
    r.extend_from_slice(&[0, 0]);
    r.extend_from_slice(&f[12..]);
    r
}

fn sll2(f: &[u8]) -> Vec<u8> {
    let mut r = f[12..14].to_vec();
    r.extend_from_slice(&[0, 0, 0, 0, 0, 7, 0, 1, 0, 6]);
    r.extend_from_slice(&PEER_MAC);
    r.extend_from_slice(&[0, 0]);
    r.extend_from_slice(&f[14..]);
    r
}

fn raw(f: &[u8]) -> Vec<u8> {
    f[14..].to_vec()
}

fn null(f: &[u8]) -> Vec<u8> {
    // AF_INET 2, AF_INET6 30 (macOS), little-endian as written on x86.
    let af: u32 = if ethertype(f) == 0x0800 { 2 } else { 30 };
    let mut r = af.to_le_bytes().to_vec();
    r.extend_from_slice(&f[14..]);
    r
}

fn looped(f: &[u8]) -> Vec<u8> {
    // LINKTYPE_LOOP (OpenBSD): the family in network order, AF_INET6 24.
    let af: u32 = if ethertype(f) == 0x0800 { 2 } else { 24 };
    let mut r = af.to_be_bytes().to_vec();
    r.extend_from_slice(&f[14..]);
    r
}

fn eth(f: &[u8]) -> Vec<u8> {
    f.to_vec()
}

const FORMS: [Form; 8] = [
    Form {
        name: "sll",
        link: 113,
        carries: any,
        record: sll,
    },
    Form {
        name: "sll2",
        link: 276,
        carries: any,
        record: sll2,
    },
    Form {
        name: "raw",
        link: 101,
        carries: is_ip,
        record: raw,
    },
    Form {
        name: "null",
        link: 0,
        carries: is_ip,
        record: null,
    },
    Form {
        name: "loop",
        link: 108,
        carries: is_ip,
        record: looped,
    },
    Form {
        name: "ipv4",
        link: 228,
        carries: is_v4,
        record: raw,
    },
    Form {
        name: "ipv6",
        link: 229,
        carries: is_v6,
        record: raw,
    },
    // FCS length 3 without the "present" bit: libpcap reads it as Ethernet.
    Form {
        name: "eth-fcs",
        link: 0x3000_0001,
        carries: any,
        record: eth,
    },
];

fn write_records(path: &Path, link: u32, records: &[(Duration, Vec<u8>)]) -> io::Result<()> {
    let header = PcapHeader {
        datalink: DataLink::from(link),
        ..pcap_header()
    };
    let mut w = PcapWriter::with_header(BufWriter::new(File::create(path)?), header)
        .map_err(io::Error::other)?;
    for (ts, r) in records {
        w.write_packet(&PcapPacket::new(*ts, r.len() as u32, r))
            .map_err(io::Error::other)?;
    }
    w.into_writer().flush()
}

fn write_expected(dir: &Path, name: &str, steps: &[Step]) -> io::Result<()> {
    write_pcap(
        &dir.join(format!("{name}.expected.pcap")),
        steps
            .iter()
            .filter_map(|s| s.output.as_deref().map(|o| (s.ts, o))),
    )?;
    std::fs::write(
        dir.join(format!("{name}.expected.json")),
        Counts::of(steps).to_json(),
    )
}

/// Writes every `linktype-*` and `damaged.*` fixture from basic's steps.
pub fn write_all(dir: &Path, basic: &[Step]) -> io::Result<()> {
    for form in &FORMS {
        let name = format!("linktype-{}", form.name);
        let steps: Vec<Step> = basic
            .iter()
            .filter(|s| (form.carries)(&s.input))
            .map(|s| {
                if form.link == 0x3000_0001 {
                    s.clone()
                } else {
                    synthetic(s)
                }
            })
            .collect();
        let records: Vec<_> = steps
            .iter()
            .map(|s| (s.ts, (form.record)(&s.input)))
            .collect();
        write_records(&dir.join(format!("{name}.pcap")), form.link, &records)?;
        write_expected(dir, &name, &steps)?;
    }
    write_damaged_pcap(dir, basic)?;
    write_damaged_pcapng(dir, basic)
}

/// basic.pcap with, after its 10th record, one whose length exceeds the
/// snap length (its bytes are there), and at the end a record cut short.
fn write_damaged_pcap(dir: &Path, basic: &[Step]) -> io::Result<()> {
    let mut b = Vec::new();
    PcapWriter::with_header(&mut b, pcap_header()).map_err(io::Error::other)?;
    let record = |b: &mut Vec<u8>, ts: Duration, incl: u32, data: &[u8]| {
        b.extend_from_slice(&(ts.as_secs() as u32).to_le_bytes());
        b.extend_from_slice(&ts.subsec_micros().to_le_bytes());
        b.extend_from_slice(&incl.to_le_bytes());
        b.extend_from_slice(&incl.to_le_bytes());
        b.extend_from_slice(data);
    };
    for (i, s) in basic.iter().enumerate() {
        record(&mut b, s.ts, s.input.len() as u32, &s.input);
        if i == 9 {
            record(&mut b, s.ts, 65536, &vec![0xee; 65536]);
        }
    }
    let last = basic.last().expect("basic has steps");
    record(&mut b, last.ts, 100, &[0xee; 10]);
    std::fs::write(dir.join("damaged.pcap"), &b)?;
    write_expected(dir, "damaged", basic)
}

/// basic as pcapng with a block of an unknown type (readers skip those)
/// and an Enhanced Packet Block too short to hold its fields (damaged).
fn write_damaged_pcapng(dir: &Path, basic: &[Step]) -> io::Result<()> {
    let mut b = Vec::new();
    let mut w =
        PcapNgWriter::with_endianness(&mut b, Endianness::Little).map_err(io::Error::other)?;
    let e = io::Error::other;
    w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535))
        .map_err(e)?;
    for (i, s) in basic.iter().enumerate() {
        // Default if_tsresol: microseconds, handed over as raw units.
        let ts = Duration::from_nanos(s.ts.as_micros() as u64);
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: ts,
            original_len: s.input.len() as u32,
            data: Cow::Borrowed(&s.input[..]),
            options: vec![],
        })
        .map_err(e)?;
        if i == 4 {
            w.write_block(&Block::Unknown(UnknownBlock::new(0x0bad_0bad, 20, &[1; 8])))
                .map_err(e)?;
        }
        if i == 9 {
            w.write_raw_block(&RawBlock {
                type_: 6,
                initial_len: 20,
                body: Cow::Borrowed(&[0; 8]),
                trailer_len: 20,
            })
            .map_err(e)?;
        }
    }
    drop(w);
    std::fs::write(dir.join("damaged-ng.pcapng"), &b)?;
    write_expected(dir, "damaged-ng", basic)
}
