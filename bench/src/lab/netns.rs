//! Network namespace plumbing for labs: `ip` commands that must succeed,
//! running a closure inside a namespace (setns on a fresh thread, so the
//! caller's namespace never changes), and the offload switches.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};

use dataplane::io::af_packet::{set_offload, Offload};

use super::Offloads;

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

/// Applies a lab's offload setting to `dev` in `ns`: nothing for
/// [`Offloads::Default`] (the veth keeps what the kernel gave it).
pub fn set_offloads(ns: &str, dev: &str, o: Offloads) -> Result<(), String> {
    match o {
        Offloads::Default => Ok(()),
        Offloads::Off => offloads_off(ns, dev),
    }
}

/// Writes a sysctl of namespace `ns` (e.g. "net/ipv4/ip_forward").
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), String> {
    let path = format!("/proc/sys/{key}");
    let value = value.to_string();
    in_netns(ns, move || {
        std::fs::write(&path, &value).map_err(|e| format!("{path}: {e}"))
    })?
}

/// Creates the veth pair `dev` (in `ns`) and `peer` (in `peer_ns`), each
/// end with `queues` tx and rx queues. Both counts are given explicitly:
/// the kernel leaves a veth at one real rx queue unless asked otherwise,
/// and both ends need the same count (the rx queue is the sender's tx one).
pub fn veth_pair(
    ns: &str,
    dev: &str,
    peer_ns: &str,
    peer: &str,
    queues: u32,
    mtu: u32,
) -> Result<(), String> {
    let q = queues.to_string();
    let mtu = mtu.to_string();
    ip(&[
        "-n",
        ns,
        "link",
        "add",
        dev,
        "mtu",
        &mtu,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        peer,
        "mtu",
        &mtu,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "netns",
        peer_ns,
    ])?;
    Ok(())
}

/// Counts the `rx-*` queue directories of `dev` in `ns`'s sysfs (a fresh
/// sysfs mount through `ip netns exec`: this process's /sys shows its own
/// namespace only).
pub fn rx_queues(ns: &str, dev: &str) -> Result<u32, String> {
    let dir = format!("/sys/class/net/{dev}/queues");
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ls", &dir])
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    let list = check(&format!("ls {dir} in {ns}"), out)?;
    Ok(list
        .split_whitespace()
        .filter(|e| e.starts_with("rx-"))
        .count() as u32)
}

/// Frames each rx queue of veth `dev` in `ns` has passed through its XDP
/// program (`ethtool -S` rx_queue_<q>_xdp_packets), in queue order. The
/// counters only move while an XDP program is attached.
pub fn rx_queue_xdp_packets(ns: &str, dev: &str) -> Result<Vec<u64>, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ethtool", "-S", dev])
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    let stats = check(&format!("ethtool -S {dev} in {ns}"), out)?;
    Ok(parse_rx_queue_xdp_packets(&stats))
}

fn parse_rx_queue_xdp_packets(stats: &str) -> Vec<u64> {
    let mut per_queue: Vec<(usize, u64)> = stats
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(':')?;
            let q = key
                .trim()
                .strip_prefix("rx_queue_")?
                .strip_suffix("_xdp_packets")?;
            Some((q.parse().ok()?, value.trim().parse().ok()?))
        })
        .collect();
    per_queue.sort_unstable();
    per_queue.into_iter().map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_queue_counters_in_queue_order() {
        let stats = "NIC statistics:\n     peer_ifindex: 2\n     rx_queue_1_xdp_packets: 7\n     \
                     rx_queue_1_xdp_bytes: 900\n     rx_queue_0_xdp_packets: 12\n     \
                     tx_queue_0_xdp_xmit: 3\n";
        assert_eq!(parse_rx_queue_xdp_packets(stats), vec![12, 7]);
        assert!(
            parse_rx_queue_xdp_packets("NIC statistics:\n  rx_queue_x_xdp_packets: 1\n").is_empty()
        );
    }
}
