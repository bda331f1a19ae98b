//! Frames whose L4 checksum was left to offload and never completed.
//!
//! AF_PACKET completes partial checksums on rx for every unfragmented
//! TCP/UDP frame the pipeline can parse; what is left carries the backend's
//! partial-checksum tag. NAT updates a checksum incrementally (RFC 1624),
//! which over a pseudo-header-only sum gives a wrong one, so such a frame
//! must not leave: it is dropped as `bad_checksum_offload`. Rejected
//! answers are exempt: they are new frames with checksums computed in full.

use super::ledger::Ledger;
use crate::counters::Counted;
use crate::io::Batch;
use crate::verdict::{DropReason, Verdict};

/// Turns the NATed `Tx` frames carrying `tag_bit` into
/// `Drop(BadChecksumOffload)`; returns how many. `tag_bit` 0: the backend
/// never tags, nothing to look at.
#[inline]
pub fn drop_partial_csum(batch: &mut Batch, ledger: &Ledger, tag_bit: u32) -> u64 {
    if tag_bit == 0 {
        return 0;
    }
    let mut n = 0;
    for i in 0..batch.len() {
        let natted = matches!(ledger.get(i), Counted::Forwarded | Counted::Reversed);
        if natted
            && matches!(batch.verdicts()[i], Verdict::Tx(_))
            && batch.descs()[i].tag & tag_bit != 0
        {
            batch.set_verdict(i, Verdict::Drop(DropReason::BadChecksumOffload));
            n += 1;
        }
    }
    n
}
