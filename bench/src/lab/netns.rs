//! Network namespace plumbing for labs: `ip` commands that must succeed,
//! running a closure inside a namespace (setns on a fresh thread, so the
//! caller's namespace never changes), and the offload switches.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};

use dataplane::io::af_packet::{set_offload, Offload};

/// Runs `ip args...`; an error carries the command and its stderr.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e} (install iproute2)"))?;
    check(&format!("ip {}", args.join(" ")), out)
}

pub(crate) fn check(what: &str, out: Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `f` on a new thread that has entered namespace `ns`, and returns
/// its result. Sockets created inside stay in that namespace for life.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let path = format!("/var/run/netns/{ns}");
    let file = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    std::thread::spawn(move || {
        // SAFETY: setns on an open namespace fd; it only changes the
        // calling thread, which is this fresh one.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if r != 0 {
            return Err(format!(
                "setns({path}): {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| format!("thread in {ns} panicked"))?
}

/// Turns off tx checksum, TSO, GSO and GRO on `dev` in `ns`: lab frames
/// then fit a page and carry full checksums, as XDP wants.
pub fn offloads_off(ns: &str, dev: &str) -> Result<(), String> {
    let dev = dev.to_string();
    in_netns(ns, move || {
        for o in [
            Offload::TxChecksum,
            Offload::Tso,
            Offload::Gso,
            Offload::Gro,
        ] {
            set_offload(&dev, o, false).map_err(|e| format!("{dev}: {o:?} off: {e}"))?;
        }
        Ok(())
    })?
}

/// Writes a sysctl of namespace `ns` (e.g. "net/ipv4/ip_forward").
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), String> {
    let path = format!("/proc/sys/{key}");
    let value = value.to_string();
    in_netns(ns, move || {
        std::fs::write(&path, &value).map_err(|e| format!("{path}: {e}"))
    })?
}
