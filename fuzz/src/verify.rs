//! What must hold for each frame after the pipeline, judged from the frame
//! as it went in and as it came out (checksums recomputed with pnet, see
//! `csum`). The fuzz inputs carry no offload flags, so every transmitted
//! frame must carry full checksums, not pseudo-header-only ones.

use dataplane::counters::Counted;
use dataplane::verdict::Verdict;

use crate::csum;

/// Checks one frame: `input` as fed (with buffer capacity `cap`), `out` as
/// it left, its verdict and the counter that took it. `i` names it.
pub fn frame(i: usize, input: &[u8], cap: usize, out: &[u8], verdict: Verdict, counted: Counted) {
    let agrees = match verdict {
        Verdict::Tx(_) => counted.is_tx(),
        Verdict::Pass => counted == Counted::Passed,
        Verdict::Drop(_) => counted == Counted::Dropped,
    };
    assert!(
        agrees,
        "frame {i}: verdict {verdict:?} counted as {counted:?}"
    );
    assert!(
        out.len() <= cap,
        "frame {i}: {} bytes in a buffer of {cap}",
        out.len()
    );
    match counted {
        // Handed to the kernel or dropped: exactly as it came.
        Counted::Passed | Counted::Dropped => {
            assert!(out == input, "frame {i}: {counted:?} but changed");
        }
        // A new packet: its own checksums must be right whatever came in.
        Counted::Rejected => {
            let c = csum::checks(out);
            assert!(
                c.ip != Some(false) && c.l4 == Some(true),
                "frame {i}: answer with bad checksums {c:?}: {}",
                hex(out)
            );
        }
        // NATed in place: same length, and every checksum that was right
        // coming in is right going out.
        Counted::Forwarded | Counted::Reversed => {
            assert_eq!(out.len(), input.len(), "frame {i}: NAT changed the length");
            let (before, after) = (csum::checks(input), csum::checks(out));
            for ((what, b), (_, a)) in before.named().into_iter().zip(after.named()) {
                assert!(
                    b != Some(true) || a == Some(true),
                    "frame {i}: {counted:?} broke the {what} checksum\n in:  {}\n out: {}",
                    hex(input),
                    hex(out)
                );
            }
        }
    }
}

/// Bytes as hex, for crash messages.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
