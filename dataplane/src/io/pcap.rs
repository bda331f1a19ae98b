//! Reading captures into memory and writing transmitted frames back out, in
//! the pcap (and, for reading, pcapng) formats Wireshark and tcpdump use.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, TsResolution};

use super::memory::Capture;

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
    #[error("{path}: link type {link} is not Ethernet; capture on an Ethernet interface (tcpdump -i eth0), not 'any'")]
    LinkType { path: String, link: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Loads a pcap or pcapng capture of Ethernet frames.
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

/// Parses a capture held in memory (e.g. one embedded in the binary).
pub fn parse_capture(bytes: &[u8], name: &str) -> Result<Capture, PcapError> {
    let format = |e: pcap_file::PcapError| PcapError::Format {
        path: name.to_string(),
        reason: e.to_string(),
    };
    let mut cap = Capture::new();
    if bytes.len() >= 4 && bytes[..4] == PCAPNG_MAGIC {
        let mut r = PcapNgReader::new(BufReader::new(bytes)).map_err(format)?;
        while let Some(block) = r.next_block() {
            match block.map_err(format)? {
                Block::InterfaceDescription(idb) if idb.linktype != DataLink::ETHERNET => {
                    return Err(PcapError::LinkType {
                        path: name.to_string(),
                        link: format!("{:?}", idb.linktype),
                    });
                }
                Block::EnhancedPacket(p) => cap.push(p.timestamp.as_nanos() as u64, &p.data),
                Block::SimplePacket(p) => cap.push(0, &p.data),
                _ => {}
            }
        }
        return Ok(cap);
    }
    let mut r = PcapReader::new(BufReader::new(bytes)).map_err(format)?;
    let link = r.header().datalink;
    if link != DataLink::ETHERNET {
        return Err(PcapError::LinkType {
            path: name.to_string(),
            link: format!("{link:?}"),
        });
    }
    while let Some(p) = r.next_packet() {
        let p = p.map_err(format)?;
        cap.push(p.timestamp.as_nanos() as u64, &p.data);
    }
    Ok(cap)
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
    let f = File::create(path).map_err(|e| werr(e.to_string()))?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        // Little-endian like tcpdump on x86 and our fixtures, so outputs
        // compare byte for byte with captures made here.
        endianness: pcap_file::Endianness::Little,
        ..PcapHeader::default()
    };
    let mut w =
        PcapWriter::with_header(BufWriter::new(f), header).map_err(|e| werr(e.to_string()))?;
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
        let dir = std::env::temp_dir().join(format!("vipgate-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rt.pcap");
        let frames: Vec<(Vec<u8>, u64)> = vec![
            (vec![1u8; 60], 1_000_000_000),
            (vec![2u8; 1514], 1_500_001_000),
        ];
        write_pcap(&path, frames.iter().map(|(d, t)| (d.as_slice(), *t))).unwrap();
        let cap = read_capture(&path).unwrap();
        assert_eq!(cap.len(), 2);
        assert_eq!(cap.packet(0), (&frames[0].0[..], 1_000_000_000));
        assert_eq!(cap.packet(1), (&frames[1].0[..], 1_500_001_000));
        std::fs::remove_dir_all(&dir).unwrap();
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
