//! Reading captures into memory and writing transmitted frames back out, in
//! the pcap and pcapng formats Wireshark and tcpdump use.
//!
//! Accepted link types, each turned into Ethernet frames on input so the same
//! pipeline runs: Ethernet (also with FCS bits in the upper bits of the link
//! type, as libpcap reads it), Linux cooked (LINUX_SLL, LINUX_SLL2: what
//! `tcpdump -i any` writes), raw IP (RAW, IPV4, IPV6) and BSD loopback
//! (NULL, LOOP). Non-Ethernet frames get a synthetic Ethernet header from
//! [`PEER_MAC`] to [`NODE_MAC`]; Linux cooked packets the node sent (packet
//! type OUTGOING) go from [`NODE_MAC`] to [`PEER_MAC`].
//!
//! A damaged record (longer than the snap length, cut short at the end of
//! the file, a pcapng block that does not parse) is counted in
//! [`Capture::damaged`] and skipped; only a file that is not a capture at
//! all is an error.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapParser, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgParser, PcapNgWriter};
use pcap_file::{DataLink, Endianness, TsResolution};

use super::memory::Capture;

/// Synthetic MAC of the capturing node: the destination of packets it
/// received, the source of packets it sent.
pub const NODE_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// Synthetic MAC of the other end of the link.
pub const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// Why a capture could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file ({reason})")]
    Format { path: String, reason: String },
    #[error("{path}: link type {link} is not supported (accepted: Ethernet, Linux cooked SLL/SLL2, raw IP, BSD loopback NULL/LOOP)")]
    LinkType { path: String, link: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
/// libpcap refuses records longer than this whatever the snap length says:
/// past it a length field is garbage and the records after it cannot be found.
const MAX_RECORD: u32 = 262_144;

/// How frames of one link type become Ethernet frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Ethernet; `fcs` bytes of frame check sequence end each frame.
    Ethernet {
        fcs: usize,
    },
    Sll,
    Sll2,
    /// Raw IP; the version nibble gives the family.
    Raw,
    Ipv4,
    Ipv6,
    /// BSD loopback: a 4-byte address family, in the writer's byte order.
    Null,
    /// OpenBSD loopback: the same in network byte order.
    Loop,
}

impl Link {
    /// The link type field of a pcap header or pcapng IDB. Its upper 6 bits
    /// may carry FCS information (libpcap's LT_FCS_LENGTH): bit 26 says
    /// whether bits 28-31 hold the FCS length in 16-bit words.
    fn of(code: u32, path: &str) -> Result<Link, PcapError> {
        let fcs = if code & 0x0400_0000 != 0 {
            (code >> 28) as usize * 2
        } else {
            0
        };
        Ok(match DataLink::from(code & 0x03ff_ffff) {
            DataLink::ETHERNET => Link::Ethernet { fcs },
            DataLink::LINUX_SLL => Link::Sll,
            DataLink::LINUX_SLL2 => Link::Sll2,
            DataLink::RAW => Link::Raw,
            DataLink::IPV4 => Link::Ipv4,
            DataLink::IPV6 => Link::Ipv6,
            DataLink::NULL => Link::Null,
            DataLink::LOOP => Link::Loop,
            other => {
                return Err(PcapError::LinkType {
                    path: path.to_string(),
                    link: format!("{other:?} ({code:#x})"),
                })
            }
        })
    }

    /// Appends one record's data as an Ethernet frame; false if it is too
    /// short for its link-layer header. pcap-file only names link types, so
    /// the Linux cooked and loopback headers are parsed here.
    fn push(self, cap: &mut Capture, ts_ns: u64, data: &[u8]) -> bool {
        const OUTGOING: u8 = 4;
        let eth = |incoming: bool, ethertype: u16| {
            let (src, dst) = if incoming {
                (PEER_MAC, NODE_MAC)
            } else {
                (NODE_MAC, PEER_MAC)
            };
            let mut h = [0u8; 14];
            h[..6].copy_from_slice(&dst);
            h[6..12].copy_from_slice(&src);
            h[12..].copy_from_slice(&ethertype.to_be_bytes());
            h
        };
        let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
        let (header, body) = match self {
            Link::Ethernet { fcs } => {
                cap.push(ts_ns, &data[..data.len().saturating_sub(fcs)]);
                return true;
            }
            // packet type (2), ARPHRD (2), address length (2), address (8), protocol (2)
            Link::Sll if data.len() >= 16 => {
                (eth(data[1] != OUTGOING, be16(&data[14..])), &data[16..])
            }
            // protocol (2), reserved (2), ifindex (4), ARPHRD (2), packet type (1), address length (1), address (8)
            Link::Sll2 if data.len() >= 20 => (eth(data[10] != OUTGOING, be16(data)), &data[20..]),
            Link::Raw => (eth(true, ip_ethertype(data)), data),
            Link::Ipv4 => (eth(true, 0x0800), data),
            Link::Ipv6 => (eth(true, 0x86dd), data),
            Link::Null | Link::Loop if data.len() >= 4 => {
                let raw = [data[0], data[1], data[2], data[3]];
                let mut af = if self == Link::Loop {
                    u32::from_be_bytes(raw)
                } else {
                    u32::from_le_bytes(raw)
                };
                // NULL is in the capturing host's byte order: as tcpdump
                // does, a value too large for a family is the other order.
                if af > 0xffff {
                    af = af.swap_bytes();
                }
                let ethertype = match af {
                    2 => 0x0800,
                    // AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS.
                    10 | 24 | 28 | 30 => 0x86dd,
                    // Not IP: an ethertype the pipeline passes to the kernel.
                    _ => 0,
                };
                (eth(true, ethertype), &data[4..])
            }
            _ => return false,
        };
        cap.push_with_header(ts_ns, &header, body);
        true
    }
}

/// Ethertype of a raw IP packet from its version nibble; anything else is
/// labelled IPv4, so the pipeline counts it malformed.
fn ip_ethertype(ip: &[u8]) -> u16 {
    match ip.first().map(|b| b >> 4) {
        Some(6) => 0x86dd,
        _ => 0x0800,
    }
}

/// Loads a pcap or pcapng capture (see the module docs for link types).
pub fn read_capture(path: &Path) -> Result<Capture, PcapError> {
    let name = path.display().to_string();
    let mut f = File::open(path).map_err(|source| PcapError::Open {
        path: name.clone(),
        source,
    })?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .map_err(|source| PcapError::Open {
            path: name.clone(),
            source,
        })?;
    parse_capture(&bytes, &name)
}

/// The warning lines a loaded capture deserves (damaged records skipped,
/// frames cut), for `name` (its path).
pub fn warnings(cap: &Capture, name: &str) -> Vec<String> {
    let mut w = Vec::new();
    if cap.damaged > 0 {
        w.push(format!(
            "{name}: skipped {} damaged record{} (first: {}); replaying the {} good ones",
            cap.damaged,
            if cap.damaged == 1 { "" } else { "s" },
            cap.first_damage.as_deref().unwrap_or("?"),
            cap.len()
        ));
    }
    if cap.truncated > 0 {
        w.push(format!(
            "{name}: {} frames longer than {} bytes were cut (turn off GRO/TSO when capturing)",
            cap.truncated,
            super::memory::MAX_FRAME_LEN
        ));
    }
    w
}

/// Parses a capture held in memory (e.g. one embedded in the binary).
pub fn parse_capture(bytes: &[u8], name: &str) -> Result<Capture, PcapError> {
    if bytes.len() >= 4 && bytes[..4] == PCAPNG_MAGIC {
        parse_pcapng(bytes, name)
    } else {
        parse_pcap(bytes, name)
    }
}

fn format_error(name: &str, e: pcap_file::PcapError) -> PcapError {
    PcapError::Format {
        path: name.to_string(),
        reason: e.to_string(),
    }
}

/// Classic pcap. The header is parsed by pcap-file; records are framed by
/// its raw record parser but checked here: pcap-file refuses a whole file
/// for one record whose lengths exceed the snap length (an orig_len larger
/// than the snap length is normal, libpcap accepts it), and we want to skip
/// a damaged record and go on.
fn parse_pcap(bytes: &[u8], name: &str) -> Result<Capture, PcapError> {
    let (mut rest, parser) = PcapParser::new(bytes).map_err(|e| format_error(name, e))?;
    let header = parser.header();
    let link = Link::of(u32::from(header.datalink), name)?;
    let frac_ns = match header.ts_resolution {
        TsResolution::MicroSecond => 1000,
        TsResolution::NanoSecond => 1,
    };
    let mut cap = Capture::new();
    let mut record = 0u64;
    while !rest.is_empty() {
        record += 1;
        let at = bytes.len() - rest.len();
        let p = match parser.next_raw_packet(rest) {
            Ok((next, p)) if p.incl_len <= MAX_RECORD => {
                rest = next;
                p
            }
            Ok((_, p)) => {
                cap.damage(|| format!("record {record} at byte {at}: length {} is not a length, the rest of the file is unreadable", p.incl_len));
                break;
            }
            Err(_) => {
                cap.damage(|| {
                    format!(
                        "record {record} at byte {at}: cut short ({} bytes left)",
                        rest.len()
                    )
                });
                break;
            }
        };
        if p.incl_len > header.snaplen {
            cap.damage(|| {
                format!(
                    "record {record} at byte {at}: length {} beyond the snap length {}",
                    p.incl_len, header.snaplen
                )
            });
            continue;
        }
        let ts = u64::from(p.ts_sec) * 1_000_000_000 + u64::from(p.ts_frac) * frac_ns;
        if !link.push(&mut cap, ts, &p.data) {
            cap.damage(|| format!("record {record} at byte {at}: shorter than its link header"));
        }
    }
    Ok(cap)
}

/// An interface of a pcapng section: its link type and timestamp units.
struct Iface {
    /// Link type field; checked when a packet of the interface comes, so
    /// an unused interface of an unsupported type does not refuse the file.
    link: u32,
    /// Timestamp units per second (if_tsresol; default 10^6).
    units_per_s: u128,
    offset_ns: u64,
}

impl Iface {
    fn of(idb: &InterfaceDescriptionBlock) -> Iface {
        let mut units_per_s = 1_000_000u128;
        let mut offset_ns = 0;
        for o in &idb.options {
            match o {
                // Integer arithmetic: f64 loses nanoseconds at today's epoch.
                InterfaceDescriptionOption::IfTsResol(r) if r & 0x80 != 0 => {
                    units_per_s = 1u128 << (r & 0x7f).min(100);
                }
                InterfaceDescriptionOption::IfTsResol(r) => {
                    units_per_s = 10u128.pow(u32::from(*r).min(30));
                }
                InterfaceDescriptionOption::IfTsOffset(s) => {
                    offset_ns = s.saturating_mul(1_000_000_000)
                }
                _ => {}
            }
        }
        Iface {
            link: u32::from(idb.linktype),
            units_per_s,
            offset_ns,
        }
    }

    /// pcap-file hands the raw timestamp units over as nanoseconds.
    fn ts_ns(&self, units: u128) -> u64 {
        let ns = units.saturating_mul(1_000_000_000) / self.units_per_s;
        (ns as u64).saturating_add(self.offset_ns)
    }
}

/// pcapng, block by block through pcap-file's parser. A block that does
/// not parse is skipped by its length field (read here: the parser gives
/// no way past a block it rejects) and counted.
fn parse_pcapng(bytes: &[u8], name: &str) -> Result<Capture, PcapError> {
    let (mut rest, mut parser) = PcapNgParser::new(bytes).map_err(|e| format_error(name, e))?;
    let mut cap = Capture::new();
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut block_no = 1u64;
    while !rest.is_empty() {
        block_no += 1;
        let at = bytes.len() - rest.len();
        let (next, block) = match parser.next_block(rest) {
            Ok(b) => b,
            Err(e) => {
                let why = e.to_string();
                let len = block_len(rest, parser.section().endianness);
                cap.damage(|| format!("block {block_no} at byte {at}: {why}"));
                match len {
                    Some(len) => {
                        rest = &rest[len..];
                        continue;
                    }
                    None => break,
                }
            }
        };
        rest = next;
        let (iface, units, data) = match &block {
            Block::SectionHeader(_) => {
                ifaces.clear();
                continue;
            }
            Block::InterfaceDescription(idb) => {
                ifaces.push(Iface::of(idb));
                continue;
            }
            Block::EnhancedPacket(p) => (p.interface_id as usize, p.timestamp.as_nanos(), &p.data),
            Block::Packet(p) => (
                usize::from(p.interface_id),
                u128::from(p.timestamp),
                &p.data,
            ),
            Block::SimplePacket(p) => (0, 0, &p.data),
            // Statistics, name resolution, unknown types: nothing to replay.
            _ => continue,
        };
        let Some(i) = ifaces.get(iface) else {
            cap.damage(|| {
                format!("block {block_no} at byte {at}: packet of undeclared interface {iface}")
            });
            continue;
        };
        if !Link::of(i.link, name)?.push(&mut cap, i.ts_ns(units), data) {
            cap.damage(|| format!("block {block_no} at byte {at}: shorter than its link header"));
        }
    }
    Ok(cap)
}

/// The total length of the block at the start of `b`, if it is plausible
/// and the block lies inside `b`.
fn block_len(b: &[u8], endianness: Endianness) -> Option<usize> {
    let raw: [u8; 4] = b.get(4..8)?.try_into().ok()?;
    let len = match endianness {
        Endianness::Big => u32::from_be_bytes(raw),
        Endianness::Little => u32::from_le_bytes(raw),
    } as usize;
    (len >= 12 && len.is_multiple_of(4) && len <= b.len()).then_some(len)
}

/// File format of `--out`: pcapng if the name ends in `.pcapng`.
pub fn is_pcapng_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pcapng"))
}

/// Writes Ethernet frames (with their timestamps in ns): pcapng with
/// nanosecond timestamps if the name ends in `.pcapng`, else a microsecond
/// pcap.
pub fn write_capture<'a>(
    path: &Path,
    frames: impl IntoIterator<Item = (&'a [u8], u64)>,
) -> Result<usize, PcapError> {
    if is_pcapng_name(path) {
        write_pcapng(path, frames)
    } else {
        write_pcap(path, frames)
    }
}

fn create(path: &Path) -> Result<BufWriter<File>, PcapError> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|e| PcapError::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// Writes Ethernet frames (timestamps in ns) as pcapng: one section, one
/// Ethernet interface with if_tsresol 9 (nanoseconds).
pub fn write_pcapng<'a>(
    path: &Path,
    frames: impl IntoIterator<Item = (&'a [u8], u64)>,
) -> Result<usize, PcapError> {
    let werr = |e: pcap_file::PcapError| PcapError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut w = PcapNgWriter::with_endianness(create(path)?, Endianness::Little).map_err(werr)?;
    let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0);
    idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
    w.write_pcapng_block(idb).map_err(werr)?;
    let mut n = 0;
    for (data, ts_ns) in frames {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(ts_ns),
            original_len: data.len() as u32,
            data: data.into(),
            options: vec![],
        };
        w.write_pcapng_block(epb).map_err(werr)?;
        n += 1;
    }
    Ok(n)
}

/// Writes frames (with their timestamps in ns) as a microsecond pcap.
pub fn write_pcap<'a>(
    path: &Path,
    frames: impl IntoIterator<Item = (&'a [u8], u64)>,
) -> Result<usize, PcapError> {
    let name = path.display().to_string();
    let werr = |reason: String| PcapError::Write {
        path: name.clone(),
        reason,
    };
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        // Little-endian like tcpdump on x86 and our fixtures, so outputs
        // compare byte for byte with captures made here.
        endianness: pcap_file::Endianness::Little,
        snaplen: 262_144,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(create(path)?, header).map_err(|e| werr(e.to_string()))?;
    let mut n = 0;
    for (data, ts_ns) in frames {
        let ts = Duration::from_micros(ts_ns / 1000);
        w.write_packet(&PcapPacket::new(ts, data.len() as u32, data))
            .map_err(|e| werr(e.to_string()))?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_a_file() {
        // A directory of its own: tests run in parallel threads of one process.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt.pcap");
        let frames: Vec<(Vec<u8>, u64)> = vec![
            (vec![1u8; 60], 1_000_000_000),
            (vec![2u8; 1514], 1_500_001_000),
        ];
        write_pcap(&path, frames.iter().map(|(d, t)| (d.as_slice(), *t))).unwrap();
        let cap = read_capture(&path).unwrap();
        assert_eq!(cap.len(), 2);
        assert_eq!(cap.packet(0), (&frames[0].0[..], 1_000_000_000));
        assert_eq!(cap.packet(1), (&frames[1].0[..], 1_500_001_000));
    }

    fn pcap_bytes(link: u32, frames: &[Vec<u8>]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames.pcap");
        write_pcap(&path, frames.iter().map(|d| (d.as_slice(), 1_000))).unwrap();
        let mut b = std::fs::read(&path).unwrap();
        b[20..24].copy_from_slice(&link.to_le_bytes());
        b
    }

    #[test]
    fn frames_up_to_64k_replay_whole_in_big_enough_buffers() {
        use crate::io::memory::{MemoryIo, FRAME_BUF_SIZE, MAX_FRAME_LEN};
        use crate::io::{Batch, PacketIo};
        let frames = vec![vec![3u8; 60], vec![4u8; 9014], vec![5u8; MAX_FRAME_LEN]];
        let cap = parse_capture(&pcap_bytes(1, &frames), "big").unwrap();
        assert_eq!((cap.truncated, cap.damaged), (0, 0));
        assert!(cap.buf_size() >= MAX_FRAME_LEN);
        let order = [0u32, 1, 2];
        let mut io = MemoryIo::new(&cap, &order, 1);
        assert!(io.max_frame() >= MAX_FRAME_LEN);
        let mut batch = Batch::new();
        assert_eq!(io.rx_burst(&mut batch, 64), 3);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(batch.frame(i), &f[..]);
        }
        // Small captures keep the small buffers.
        let small = parse_capture(&pcap_bytes(1, &frames[..1]), "small").unwrap();
        assert_eq!(small.buf_size(), FRAME_BUF_SIZE);
    }

    #[test]
    fn fcs_bits_in_the_link_type_are_ethernet() {
        let frames = vec![vec![7u8; 70]];
        // FCS length 3 (16-bit words) without the "present" bit: as is.
        let cap = parse_capture(&pcap_bytes(0x3000_0001, &frames), "fcs").unwrap();
        assert_eq!(cap.packet(0).0.len(), 70);
        // With it: 6 bytes of FCS end each frame and are cut off.
        let cap = parse_capture(&pcap_bytes(0x3400_0001, &frames), "fcs").unwrap();
        assert_eq!(cap.packet(0).0.len(), 64);
    }

    #[test]
    fn unsupported_link_types_are_refused_without_the_any_hint() {
        let err = parse_capture(&pcap_bytes(127, &[vec![0u8; 60]]), "radiotap").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, PcapError::LinkType { .. }), "{text}");
        assert!(!text.contains("'any'"), "{text}");
        assert!(text.contains("Linux cooked"), "{text}");
    }

    #[test]
    fn garbage_is_a_format_error_not_a_panic() {
        let err = parse_capture(b"this is not a capture at all", "junk").unwrap_err();
        assert!(matches!(err, PcapError::Format { .. }), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read_capture(Path::new("/nonexistent/x.pcap")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.pcap"));
    }
}
