//! Bulk TCP through a VIP, checked byte for byte: the client uploads N
//! bytes of a seeded pattern, the backend answers with the hash of what it
//! got and then N bytes of another pattern, which the client compares with
//! what it expects. With default offloads both directions travel as GSO
//! super-frames with partial checksums, so this is what catches a gateway
//! that mangles them. Every wait is bounded.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Backend port of the bulk server.
pub const BULK_PORT: u16 = 8081;
/// Bytes each connection carries each way.
pub const BULK_BYTES: usize = 1 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// The download's seed differs from the upload's.
const DOWN_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// `n` bytes of a xorshift64 stream from `seed`.
pub fn pattern(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// FNV-1a over `data`: the upload's receipt.
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One connection of the server: header, upload, receipt, download.
fn serve(mut c: TcpStream) -> std::io::Result<()> {
    c.set_read_timeout(Some(IO_TIMEOUT))?;
    c.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut hdr = [0u8; 16];
    c.read_exact(&mut hdr)?;
    let n = u64::from_be_bytes(hdr[..8].try_into().unwrap()) as usize;
    let seed = u64::from_be_bytes(hdr[8..].try_into().unwrap());
    if n > 64 * BULK_BYTES {
        return Ok(());
    }
    let mut up = vec![0u8; n];
    c.read_exact(&mut up)?;
    c.write_all(&fnv(&up).to_be_bytes())?;
    c.write_all(&pattern(seed ^ DOWN_SEED, n))?;
    Ok(())
}

/// Bulk servers on [`BULK_PORT`] of listeners made in each backend's
/// namespace; stopped (and joined) on drop.
pub struct BulkServers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl BulkServers {
    pub fn start(listeners: Vec<TcpListener>) -> BulkServers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = listeners
            .into_iter()
            .map(|l| {
                l.set_nonblocking(true).unwrap();
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut conns = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match l.accept() {
                            Ok((c, _)) => {
                                let _ = c.set_nonblocking(false);
                                conns.push(std::thread::spawn(move || {
                                    let _ = serve(c);
                                }));
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                std::thread::sleep(Duration::from_millis(2))
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(2)),
                        }
                    }
                    for c in conns {
                        let _ = c.join();
                    }
                })
            })
            .collect();
        BulkServers { stop, threads }
    }
}

impl Drop for BulkServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One bulk exchange with `to`; Err says what did not match.
pub fn exchange(to: SocketAddr, seed: u64, n: usize) -> Result<(), String> {
    exchange_paced(to, seed, n, None)
}

/// [`exchange`] with the upload sent in `(chunk, pause)` steps, so the
/// connection stays open for about `n / chunk * pause`: long enough for a
/// test to change the gateway under it (backends leaving, a restart).
pub fn exchange_paced(
    to: SocketAddr,
    seed: u64,
    n: usize,
    pace: Option<(usize, Duration)>,
) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&to, IO_TIMEOUT).map_err(|e| format!("{to}: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let up = pattern(seed, n);
    let mut hdr = [0u8; 16];
    hdr[..8].copy_from_slice(&(n as u64).to_be_bytes());
    hdr[8..].copy_from_slice(&seed.to_be_bytes());
    let io = |what: &str, e: std::io::Error| format!("{to} seed {seed}: {what}: {e}");
    s.write_all(&hdr).map_err(|e| io("header", e))?;
    match pace {
        None => s.write_all(&up).map_err(|e| io("upload", e))?,
        Some((chunk, pause)) => {
            for part in up.chunks(chunk.max(1)) {
                s.write_all(part).map_err(|e| io("upload", e))?;
                std::thread::sleep(pause);
            }
        }
    }
    let mut receipt = [0u8; 8];
    s.read_exact(&mut receipt).map_err(|e| io("receipt", e))?;
    if u64::from_be_bytes(receipt) != fnv(&up) {
        return Err(format!("{to} seed {seed}: upload arrived altered"));
    }
    let mut down = vec![0u8; n];
    s.read_exact(&mut down).map_err(|e| io("download", e))?;
    if down != pattern(seed ^ DOWN_SEED, n) {
        let at = down
            .iter()
            .zip(pattern(seed ^ DOWN_SEED, n))
            .position(|(a, b)| *a != b);
        return Err(format!("{to} seed {seed}: download differs at byte {at:?}"));
    }
    Ok(())
}

/// `conns` paced exchanges with `to` started at once (threads of the
/// caller's namespace, which they keep); join them with [`join_all`].
pub fn start_paced(
    to: SocketAddr,
    conns: usize,
    first_seed: u64,
    n: usize,
    pace: (usize, Duration),
) -> Vec<JoinHandle<Result<(), String>>> {
    (0..conns)
        .map(|i| {
            std::thread::spawn(move || exchange_paced(to, first_seed + i as u64, n, Some(pace)))
        })
        .collect()
}

/// The errors of the exchanges that failed.
pub fn join_all(handles: Vec<JoinHandle<Result<(), String>>>) -> Vec<String> {
    handles
        .into_iter()
        .filter_map(|h| match h.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("client thread panicked".into()),
        })
        .collect()
}

/// `conns` exchanges with `to` at once (threads of the caller's
/// namespace); the errors of those that failed.
pub fn parallel(to: SocketAddr, conns: usize, first_seed: u64) -> Vec<String> {
    join_all(
        (0..conns)
            .map(|i| std::thread::spawn(move || exchange(to, first_seed + i as u64, BULK_BYTES)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn patterns_differ_by_seed_and_hash_sees_it() {
        let a = super::pattern(1, 1000);
        assert_eq!(a.len(), 1000);
        assert_eq!(a, super::pattern(1, 1000));
        assert_ne!(a, super::pattern(2, 1000));
        assert_ne!(super::fnv(&a), super::fnv(&super::pattern(2, 1000)));
    }
}
