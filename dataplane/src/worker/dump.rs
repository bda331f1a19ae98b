//! Listing a running worker's conntrack without stopping it: the reader
//! asks, and the worker copies its flows into a bounded lock-free queue a
//! chunk of slots at a time, between bursts, while the reader drains it.
//! A chunk is [`DUMP_CHUNK`] slots (a few microseconds of the worker's
//! time); nothing is allocated on the worker's side, and a full queue only
//! pauses the walk until the reader catches up.
//!
//! The listing is not a snapshot: flows that start or end while it walks
//! may or may not appear, as with `conntrack -L` on a busy host.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::addr::{Addr, Tuple};
use crate::conntrack::{Conntrack, Entry, SctpState, TcpState};

/// Slots a worker examines per turn: 256 entries of one cache line each,
/// a few microseconds.
pub const DUMP_CHUNK: usize = 256;
/// Records in flight between a worker and its reader.
const QUEUE: usize = 1024;

/// One tracked flow, as a listing shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// The listing it was copied for (records of an abandoned listing
    /// that arrive late are told apart by it).
    listing: u64,
    /// As the client sent it: client -> VIP.
    pub original: Tuple,
    pub backend: Addr,
    pub backend_port: u16,
    /// The gateway address and port a source-NATed flow leaves from.
    pub snat: Option<(Addr, u16)>,
    /// None but for TCP.
    pub tcp: Option<TcpState>,
    /// None but for SCTP.
    pub sctp: Option<SctpState>,
    pub replied: bool,
    pub assured: bool,
    /// Seconds until the flow expires unless a packet refreshes it.
    pub expires_in: u32,
}

impl FlowRecord {
    fn of(e: &Entry, ct: &Conntrack, clock: u32, listing: u64) -> FlowRecord {
        FlowRecord {
            listing,
            original: e.original,
            backend: e.backend,
            backend_port: e.backend_port,
            snat: e
                .snat()
                .then(|| (ct.snat_addr(e.original.src.is_v4()), e.snat_port)),
            tcp: e.tcp(),
            sctp: e.sctp(),
            replied: e.replied(),
            assured: e.assured(),
            expires_in: e.deadline().saturating_sub(clock),
        }
    }
}

/// The channel between one worker and readers of its conntrack.
#[derive(Debug)]
pub struct FlowDump {
    /// Number of the listing asked for (0: none yet).
    asked: AtomicU64,
    /// Number of the last listing the worker finished (or its reader
    /// gave up on).
    done: AtomicU64,
    /// Set when the worker has stopped: nobody will serve a listing.
    closed: AtomicBool,
    queue: ArrayQueue<FlowRecord>,
    /// One reader at a time (readers only; the worker never takes it).
    reader: Mutex<u64>,
}

impl Default for FlowDump {
    fn default() -> Self {
        FlowDump {
            asked: AtomicU64::new(0),
            done: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            queue: ArrayQueue::new(QUEUE),
            reader: Mutex::new(0),
        }
    }
}

/// The worker's side: where its walk is.
#[derive(Debug, Default)]
pub struct DumpCursor {
    serving: u64,
    slot: usize,
}

impl FlowDump {
    /// Worker: one turn of a listing in progress, if any, with `now_s` the
    /// worker's clock (seconds; the table's own clock only moves with
    /// traffic, so an idle worker would list flows that expired since).
    /// Returns whether there was one (the worker then does not sleep).
    #[inline]
    pub fn serve(&self, cur: &mut DumpCursor, ct: &Conntrack, now_s: u32) -> bool {
        let asked = self.asked.load(Ordering::Acquire);
        if asked == self.done.load(Ordering::Acquire) {
            return false;
        }
        if cur.serving != asked {
            // A new listing (or one its reader gave up and asked again).
            cur.serving = asked;
            cur.slot = 0;
        }
        let end = (cur.slot + DUMP_CHUNK).min(ct.capacity());
        let clock = ct.clock().max(now_s);
        while cur.slot < end {
            if let Some(e) = ct.live_slot(cur.slot).filter(|e| e.deadline() > clock) {
                if self
                    .queue
                    .push(FlowRecord::of(e, ct, clock, asked))
                    .is_err()
                {
                    // Full: this slot again next turn.
                    return true;
                }
            }
            cur.slot += 1;
        }
        if cur.slot >= ct.capacity() {
            // Not `store`: a reader that gave up may have moved `done` on
            // (once per listing, not per packet).
            self.done.fetch_max(asked, Ordering::Release);
        }
        true
    }

    /// Worker: it stops; readers asking from now on get an error at once.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Reader: the flows of the worker's table that `keep` accepts, at
    /// most `limit` of them (and how many matched in all), waiting at most
    /// `timeout` for the worker to walk the table. A stopped worker, or one
    /// that does not finish in time, is an error; a listing given up on is
    /// cancelled, so the worker stops walking it.
    pub fn collect(
        &self,
        timeout: Duration,
        keep: impl Fn(&FlowRecord) -> bool,
        limit: usize,
    ) -> Result<(Vec<FlowRecord>, usize), String> {
        let mut last = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::Acquire) {
            return Err("the worker has stopped".into());
        }
        *last += 1;
        let n = *last;
        self.asked.store(n, Ordering::Release);
        let mut out = Vec::new();
        let mut matched = 0usize;
        let t0 = Instant::now();
        loop {
            let finished = self.done.load(Ordering::Acquire) >= n;
            while let Some(r) = self.queue.pop() {
                // Late records of a listing given up on are not this one's.
                if r.listing == n && keep(&r) {
                    matched += 1;
                    if out.len() < limit {
                        out.push(r);
                    }
                }
            }
            if finished {
                return Ok((out, matched));
            }
            let stopped = self.closed.load(Ordering::Acquire);
            if stopped || t0.elapsed() > timeout {
                // Cancel: the worker sees `done` caught up and stops walking.
                self.done.fetch_max(n, Ordering::Release);
                while self.queue.pop().is_some() {}
                return Err(if stopped {
                    "the worker stopped while listing its flows".to_string()
                } else {
                    format!(
                        "the worker did not finish listing its flows within {timeout:?} \
                         ({} listed so far)",
                        out.len()
                    )
                });
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Proto;
    use crate::conntrack::Config;
    use std::sync::Arc;

    fn table(flows: u16) -> Conntrack {
        let mut ct = Conntrack::new(Config {
            capacity: 4096,
            ..Config::default()
        });
        for i in 0..flows {
            let t = Tuple {
                src: Addr::from_v4([198, 18, 0, 1]),
                dst: Addr::from_v4([198, 19, 0, 10]),
                sport: 10_000 + i,
                dport: 80,
                proto: Proto::Udp,
            };
            ct.insert(&t, Addr::from_v4([198, 18, 1, 1]), 8080, 0, 5)
                .expect("room");
        }
        ct
    }

    #[test]
    fn a_reader_gets_every_flow_in_chunks_while_the_worker_runs() {
        let ct = table(3000);
        let dump = Arc::new(FlowDump::default());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (d, s) = (Arc::clone(&dump), Arc::clone(&stop));
        let worker = std::thread::spawn(move || {
            let mut cur = DumpCursor::default();
            let mut turns = 0u32;
            while !s.load(Ordering::Relaxed) {
                if d.serve(&mut cur, &ct, 0) {
                    turns += 1;
                }
                std::thread::yield_now();
            }
            turns
        });
        for _ in 0..2 {
            let (flows, matched) = dump
                .collect(Duration::from_secs(10), |_| true, usize::MAX)
                .unwrap();
            assert_eq!((flows.len(), matched), (3000, 3000));
            let mut ports: Vec<u16> = flows.iter().map(|f| f.original.sport).collect();
            ports.sort_unstable();
            ports.dedup();
            assert_eq!(ports.len(), 3000);
            assert!(flows.iter().all(|f| f.backend_port == 8080 && !f.assured));
        }
        // A filter and a limit: every match counted, the first kept.
        let (some, matched) = dump
            .collect(Duration::from_secs(10), |f| f.original.sport % 2 == 0, 100)
            .unwrap();
        assert_eq!((some.len(), matched), (100, 1500));
        assert!(some.iter().all(|f| f.original.sport % 2 == 0));
        stop.store(true, Ordering::Relaxed);
        // 4096 slots in chunks of 256, twice, with 3000 records through a
        // queue of 1024: many turns, none longer than a chunk.
        assert!(worker.join().unwrap() >= 3 * 4096 / DUMP_CHUNK as u32);
    }

    #[test]
    fn a_listing_given_up_on_is_cancelled_and_a_closed_worker_answers_at_once() {
        let ct = table(2000);
        let dump = FlowDump::default();
        let e = dump
            .collect(Duration::from_millis(20), |_| true, usize::MAX)
            .unwrap_err();
        assert!(e.contains("0 listed so far"), "{e}");
        // The worker comes back: nothing to walk for the cancelled listing.
        let mut cur = DumpCursor::default();
        assert!(!dump.serve(&mut cur, &ct, 0));
        // Nothing asked: a worker's turn is free.
        let fresh = FlowDump::default();
        assert!(!fresh.serve(&mut DumpCursor::default(), &ct, 0));
        fresh.close();
        let t0 = Instant::now();
        let e = fresh
            .collect(Duration::from_secs(10), |_| true, usize::MAX)
            .unwrap_err();
        assert!(e.contains("stopped"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn flows_expired_by_the_worker_s_clock_are_not_listed() {
        // Inserted at second 5 (UDP unreplied: a short timeout); an idle
        // worker's table clock stays at 5, its own clock moves on.
        let ct = table(10);
        let dump = Arc::new(FlowDump::default());
        let d = Arc::clone(&dump);
        let reader =
            std::thread::spawn(move || d.collect(Duration::from_secs(10), |_| true, usize::MAX));
        let mut cur = DumpCursor::default();
        while !reader.is_finished() {
            dump.serve(&mut cur, &ct, 100_000);
            std::thread::yield_now();
        }
        let (flows, _) = reader.join().unwrap().unwrap();
        assert!(flows.is_empty(), "{flows:?}");
    }
}
