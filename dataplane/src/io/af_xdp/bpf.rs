//! The raw `bpf()` syscall: maps, XDP program load, XDP links and test runs.
//!
//! No libbpf and no bpffs: every object is a file descriptor owned by a Rust
//! value, so dropping the value (or the process dying, SIGKILL included)
//! releases it. An XDP program attached through a bpf_link is detached by
//! the kernel when the last link fd closes.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::asm::Insn;
use super::error::AfXdpError;

// bpf_cmd values (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_MAP_DELETE_ELEM: u32 = 3;
const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_TEST_RUN: u32 = 10;
const BPF_LINK_CREATE: u32 = 28;

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// bpf_attach_type BPF_XDP: what BPF_LINK_CREATE needs for a device link.
const BPF_ATTACH_XDP: u32 = 37;

/// BPF_F_XDP_HAS_FRAGS: the program copes with multi-buffer frames (it
/// only reads the headers, which are in the first buffer), so drivers let
/// it run at MTUs above a page (Linux 5.18).
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

/// BPF_ANY: create or overwrite.
const BPF_ANY: u64 = 0;

/// Verifier log buffer: the steering program's full log at level 1 is a
/// few KB; 256 KB leaves room for level 2 while debugging.
const LOG_SIZE: usize = 256 * 1024;

/// How the program is attached (IFLA_XDP flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) XDP: veth and most 10G+ NICs have it.
    Driver,
    /// Generic XDP on the skb path: works on every device, slower.
    Skb,
}

impl AttachMode {
    fn flags(self) -> u32 {
        match self {
            AttachMode::Skb => 1 << 1,    // XDP_FLAGS_SKB_MODE
            AttachMode::Driver => 1 << 2, // XDP_FLAGS_DRV_MODE
        }
    }
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
}

/// Issues one bpf() command over an attribute struct.
///
/// # Safety
/// `attr` must be the layout the kernel expects for `cmd`, and every
/// pointer inside it must be valid for the access the command makes.
unsafe fn sys_bpf<T>(cmd: u32, attr: &mut T) -> io::Result<i64> {
    // SAFETY: forwarded from the caller; the size tells the kernel how much
    // of its bpf_attr union we filled (it zero-extends the rest).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_long,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as i64)
    }
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this new fd and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

fn name16(name: &str) -> [u8; 16] {
    // The kernel wants at most 15 chars of [A-Za-z0-9_.] and a NUL.
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}

/// A BPF map, closed on drop.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl Map {
    fn create(
        kind: u32,
        name: &str,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> Result<Map, AfXdpError> {
        let mut attr = MapCreateAttr {
            map_type: kind,
            key_size,
            value_size,
            max_entries,
            map_name: name16(name),
            ..Default::default()
        };
        // SAFETY: MapCreateAttr is the BPF_MAP_CREATE prefix of bpf_attr.
        let fd = unsafe { sys_bpf(BPF_MAP_CREATE, &mut attr) }
            .map_err(|e| AfXdpError::from_io("bpf(BPF_MAP_CREATE)", e))?;
        Ok(Map {
            fd: owned(fd),
            key_size: key_size as usize,
            value_size: value_size as usize,
        })
    }

    /// A hash map of fixed-size keys to fixed-size values.
    pub fn hash(
        name: &str,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> Result<Map, AfXdpError> {
        Map::create(BPF_MAP_TYPE_HASH, name, key_size, value_size, max_entries)
    }

    /// An XSKMAP: queue index -> AF_XDP socket, the target of bpf_redirect_map.
    pub fn xsk(name: &str, max_entries: u32) -> Result<Map, AfXdpError> {
        Map::create(BPF_MAP_TYPE_XSKMAP, name, 4, 4, max_entries)
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn check(&self, key: &[u8], value: Option<&[u8]>) -> io::Result<()> {
        let bad_value = value.is_some_and(|v| v.len() != self.value_size);
        if key.len() != self.key_size || bad_value {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(())
    }

    /// Inserts or overwrites `key`.
    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.check(key, Some(value))?;
        let mut attr = MapElemAttr {
            map_fd: self.fd() as u32,
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            flags: BPF_ANY,
            ..Default::default()
        };
        // SAFETY: key and value are live slices of the map's sizes (checked).
        unsafe { sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
    }

    /// Deletes `key`; Ok(false) when it was not there.
    pub fn delete(&self, key: &[u8]) -> io::Result<bool> {
        self.check(key, None)?;
        let mut attr = MapElemAttr {
            map_fd: self.fd() as u32,
            key: key.as_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: key is a live slice of the map's key size (checked).
        match unsafe { sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr) } {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether `key` is present (reads the value into a scratch buffer).
    pub fn contains(&self, key: &[u8]) -> io::Result<bool> {
        self.check(key, None)?;
        let mut value = [0u8; 64];
        if self.value_size > value.len() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut attr = MapElemAttr {
            map_fd: self.fd() as u32,
            key: key.as_ptr() as u64,
            value: value.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: key has the key size; value has room for the value size.
        match unsafe { sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) } {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A loaded XDP program, unloaded when the fd and every link to it close.
#[derive(Debug)]
pub struct XdpProgram {
    fd: OwnedFd,
}

impl XdpProgram {
    /// Loads `insns` as an XDP program, marked as handling multi-buffer
    /// frames when `frags`. On rejection the verifier log is in the error,
    /// which is the only way to see why.
    pub fn load(name: &str, insns: &[Insn], frags: bool) -> Result<XdpProgram, AfXdpError> {
        let license = CString::new("GPL").expect("no NUL in literal");
        let mut log = vec![0u8; LOG_SIZE];
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr() as u64,
            prog_name: name16(name),
            expected_attach_type: BPF_ATTACH_XDP,
            prog_flags: if frags { BPF_F_XDP_HAS_FRAGS } else { 0 },
            ..Default::default()
        };
        // SAFETY: insns is a live array of bpf_insn-layout structs (Insn is
        // repr(C), 8 bytes); license and log outlive the call.
        match unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) } {
            Ok(fd) => Ok(XdpProgram { fd: owned(fd) }),
            Err(source) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let log = String::from_utf8_lossy(&log[..end]).into_owned();
                match source.raw_os_error() {
                    Some(libc::EPERM) => Err(AfXdpError::Permission {
                        op: "bpf(BPF_PROG_LOAD)",
                    }),
                    _ => Err(AfXdpError::Verifier { source, log }),
                }
            }
        }
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Attaches the program to `ifindex` through a bpf_link. The returned
    /// link detaches it when dropped or when the process dies.
    pub fn attach(
        &self,
        ifname: &str,
        ifindex: u32,
        mode: AttachMode,
    ) -> Result<XdpLink, AfXdpError> {
        let mut attr = LinkCreateAttr {
            prog_fd: self.fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_ATTACH_XDP,
            flags: mode.flags(),
        };
        // SAFETY: LinkCreateAttr is the BPF_LINK_CREATE prefix of bpf_attr.
        match unsafe { sys_bpf(BPF_LINK_CREATE, &mut attr) } {
            Ok(fd) => Ok(XdpLink {
                fd: owned(fd),
                ifindex,
                mode,
            }),
            Err(e) => Err(match e.raw_os_error() {
                Some(libc::EBUSY) | Some(libc::EEXIST) => AfXdpError::AlreadyAttached {
                    ifname: ifname.to_owned(),
                },
                Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => AfXdpError::XdpNotSupported {
                    op: "bpf(BPF_LINK_CREATE)",
                    ifname: ifname.to_owned(),
                    source: e,
                },
                Some(libc::ENODEV) => AfXdpError::InterfaceNotFound(ifname.to_owned()),
                _ => AfXdpError::from_io("bpf(BPF_LINK_CREATE)", e),
            }),
        }
    }

    /// Runs the program once over `frame` (BPF_PROG_TEST_RUN) and returns
    /// its XDP action. Nothing is redirected or transmitted: this is how the
    /// steering decisions are tested without a network.
    pub fn test_run(&self, frame: &[u8]) -> io::Result<u32> {
        let mut attr = TestRunAttr {
            prog_fd: self.fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..Default::default()
        };
        // SAFETY: data_in is a live slice; data_out is NULL with size 0.
        unsafe { sys_bpf(BPF_PROG_TEST_RUN, &mut attr) }?;
        Ok(attr.retval)
    }
}

/// An attached XDP program. Dropping it detaches the program.
#[derive(Debug)]
pub struct XdpLink {
    fd: OwnedFd,
    ifindex: u32,
    mode: AttachMode,
}

impl XdpLink {
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Resolves an interface name in the calling thread's network namespace.
pub fn ifindex(ifname: &str) -> Result<u32, AfXdpError> {
    let c = CString::new(ifname).map_err(|_| AfXdpError::InterfaceNotFound(ifname.to_owned()))?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(AfXdpError::InterfaceNotFound(ifname.to_owned()));
    }
    Ok(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_the_kernel() {
        // Offsets from include/uapi/linux/bpf.h: a wrong layout would make
        // the kernel read garbage, so pin the sizes here.
        assert_eq!(std::mem::size_of::<MapCreateAttr>(), 44);
        assert_eq!(std::mem::size_of::<MapElemAttr>(), 32);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<LinkCreateAttr>(), 16);
        assert_eq!(std::mem::size_of::<TestRunAttr>(), 40);
    }

    #[test]
    fn names_are_truncated_and_nul_terminated() {
        let n = name16("a_very_long_map_name_indeed");
        assert_eq!(&n[..15], b"a_very_long_map");
        assert_eq!(n[15], 0);
    }

    #[test]
    fn unknown_interface_is_reported_by_name() {
        let e = ifindex("vgx-nope0").unwrap_err();
        assert!(e.to_string().contains("vgx-nope0"), "{e}");
    }
}
