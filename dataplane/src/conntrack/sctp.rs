//! The SCTP association state machine, after netfilter's
//! `nf_conntrack_proto_sctp` (the same states, named as `conntrack -L`
//! names them; no HEARTBEAT_SENT, which tracks a multi-homed association's
//! secondary paths: those carry other addresses, so other flows here).
//!
//! As for TCP (`conntrack::tcp`), states pick a timeout and decide whether
//! a flow may be evicted, never whether a packet is forwarded, and there is
//! no verification-tag tracking (an entry has no room for two tags and
//! stays one cache line): the gateway is not a firewall. What the pipeline
//! does enforce is that only an INIT opens an association (netfilter's
//! `sctp_new` refuses a new flow on anything else, as TCP's on a non-SYN in
//! strict mode).
//!
//! A packet's event is the set of association-control chunks it carries
//! ([`Chunks`], validated by the parser), applied in the order they may
//! appear in one packet; an ABORT (bundled last, RFC 9260 6.10) wins.
//! `O` = original direction (client), `R` = reply (backend), `d` = either.
//!
//! | state           | INIT (O)     | COOKIE ECHO (O) | COOKIE ACK (R) | SHUTDOWN (d)           | SHUTDOWN ACK (d) | SHUTDOWN COMPLETE (d) | ABORT (d) |
//! |-----------------|--------------|-----------------|----------------|------------------------|------------------|-----------------------|-----------|
//! | (new)           | CookieWait   |                 |                |                        |                  |                       |           |
//! | CookieWait      | -            | CookieEchoed    | -              | -                      | -                | -                     | Closed    |
//! | CookieEchoed    | -            | -               | Established    | -                      | -                | -                     | Closed    |
//! | Established     | -            | -               | -              | O: ShutdownSent; R: ShutdownRecd | -      | -                     | Closed    |
//! | ShutdownSent    | -            | -               | -              | -                      | ShutdownAckSent  | -                     | Closed    |
//! | ShutdownRecd    | -            | -               | -              | -                      | ShutdownAckSent  | -                     | Closed    |
//! | ShutdownAckSent | -            | -               | -              | -                      | -                | Closed                | Closed    |
//! | Closed          | CookieWait*  | -               | -              | -                      | -                | -                     | Closed    |
//!
//! `-` keeps the state. INIT ACK changes no state (the association waits
//! for its COOKIE ECHO, as netfilter's COOKIE_WAIT does), and neither do
//! DATA, SACK, HEARTBEAT and the rest: they only refresh the timer. `*` is
//! a new association on the tuple of a finished one (a client reusing its
//! port): it counts as unreplied again. A first packet that is not an INIT
//! never reaches [`initial`] from the pipeline; given one, the flow starts
//! Closed (the shortest timeout).

use super::{Direction, SctpState};
use crate::wire::sctp::Chunks;

/// Result of one packet on an SCTP flow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Step {
    pub state: SctpState,
    /// The packet opened a new association on the tuple of a finished one.
    pub reopened: bool,
}

/// Whether a packet carrying `chunks` may open an association.
#[inline]
pub fn opens(chunks: u8) -> bool {
    Chunks(chunks).has(Chunks::INIT)
}

/// State of a flow whose first packet (from the client) carries `chunks`.
#[inline]
pub fn initial(chunks: u8) -> Step {
    let state = if opens(chunks) {
        SctpState::CookieWait
    } else {
        SctpState::Closed
    };
    step(state, Direction::Original, chunks & !Chunks::INIT)
}

/// Advances `state` by one packet in `dir` carrying `chunks`.
#[inline]
pub fn step(state: SctpState, dir: Direction, chunks: u8) -> Step {
    use Direction::{Original as O, Reply as R};
    use SctpState::*;
    let c = Chunks(chunks);
    if c.has(Chunks::ABORT) {
        return Step {
            state: Closed,
            reopened: false,
        };
    }
    let mut s = state;
    let mut reopened = false;
    if c.has(Chunks::INIT) && dir == O && s == Closed {
        s = CookieWait;
        reopened = true;
    }
    if c.has(Chunks::COOKIE_ECHO) && dir == O && s == CookieWait {
        s = CookieEchoed;
    }
    if c.has(Chunks::COOKIE_ACK) && dir == R && s == CookieEchoed {
        s = Established;
    }
    if c.has(Chunks::SHUTDOWN) && s == Established {
        s = if dir == O { ShutdownSent } else { ShutdownRecd };
    }
    if c.has(Chunks::SHUTDOWN_ACK) && matches!(s, ShutdownSent | ShutdownRecd) {
        s = ShutdownAckSent;
    }
    if c.has(Chunks::SHUTDOWN_COMPLETE) && s == ShutdownAckSent {
        s = Closed;
    }
    Step { state: s, reopened }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Original as O, Reply as R};
    use SctpState::*;

    const INIT: u8 = Chunks::INIT;
    const INIT_ACK: u8 = Chunks::INIT_ACK;
    const COOKIE_ECHO: u8 = Chunks::COOKIE_ECHO;
    const COOKIE_ACK: u8 = Chunks::COOKIE_ACK;
    const SHUTDOWN: u8 = Chunks::SHUTDOWN;
    const SHUTDOWN_ACK: u8 = Chunks::SHUTDOWN_ACK;
    const SHUTDOWN_COMPLETE: u8 = Chunks::SHUTDOWN_COMPLETE;
    const ABORT: u8 = Chunks::ABORT;
    /// DATA, SACK, HEARTBEAT: no control chunk.
    const DATA: u8 = 0;

    fn run(first: u8, rest: &[(Direction, u8)]) -> Vec<SctpState> {
        let mut s = initial(first);
        let mut out = vec![s.state];
        for &(d, c) in rest {
            s = step(s.state, d, c);
            out.push(s.state);
        }
        out
    }

    #[test]
    fn handshake_data_and_client_shutdown() {
        let states = run(
            INIT,
            &[
                (R, INIT_ACK),
                (O, COOKIE_ECHO),
                (R, COOKIE_ACK),
                (O, DATA),
                (R, DATA), // SACK
                (O, SHUTDOWN),
                (R, SHUTDOWN_ACK),
                (O, SHUTDOWN_COMPLETE),
            ],
        );
        assert_eq!(
            states,
            [
                CookieWait,
                CookieWait,
                CookieEchoed,
                Established,
                Established,
                Established,
                ShutdownSent,
                ShutdownAckSent,
                Closed
            ]
        );
    }

    #[test]
    fn backend_shuts_down_first() {
        let states = run(
            INIT,
            &[
                (R, INIT_ACK),
                (O, COOKIE_ECHO),
                (R, COOKIE_ACK),
                (R, SHUTDOWN),
                (O, SHUTDOWN_ACK),
                (R, SHUTDOWN_COMPLETE),
            ],
        );
        assert_eq!(
            states,
            [
                CookieWait,
                CookieWait,
                CookieEchoed,
                Established,
                ShutdownRecd,
                ShutdownAckSent,
                Closed
            ]
        );
    }

    #[test]
    fn bundled_chunks_apply_in_order() {
        // COOKIE ECHO with DATA, COOKIE ACK with SACK: only the control chunks count.
        assert_eq!(step(CookieWait, O, COOKIE_ECHO | DATA).state, CookieEchoed);
        // A SACK bundled with an ABORT (ABORT last): closed.
        assert_eq!(step(Established, R, ABORT).state, Closed);
        // An ABORT wins over whatever precedes it.
        assert_eq!(step(CookieEchoed, R, COOKIE_ACK | ABORT).state, Closed);
    }

    #[test]
    fn abort_closes_from_any_state_and_either_side() {
        for d in [O, R] {
            for s in SctpState::ALL {
                let st = step(s, d, ABORT);
                assert_eq!(st.state, Closed, "{s:?} {d:?}");
                assert!(!st.reopened);
            }
        }
    }

    #[test]
    fn chunks_out_of_turn_or_in_the_wrong_direction_change_nothing() {
        assert_eq!(step(CookieWait, R, COOKIE_ECHO).state, CookieWait);
        assert_eq!(step(CookieWait, R, COOKIE_ACK).state, CookieWait);
        assert_eq!(step(CookieEchoed, O, COOKIE_ACK).state, CookieEchoed);
        assert_eq!(step(CookieWait, O, SHUTDOWN).state, CookieWait);
        assert_eq!(step(Established, O, SHUTDOWN_ACK).state, Established);
        assert_eq!(step(Established, R, SHUTDOWN_COMPLETE).state, Established);
        assert_eq!(step(ShutdownSent, O, SHUTDOWN_COMPLETE).state, ShutdownSent);
        assert_eq!(step(Established, O, INIT).state, Established);
        assert_eq!(step(Established, R, INIT_ACK).state, Established);
    }

    #[test]
    fn init_reopens_a_closed_association_only_from_the_client() {
        let st = step(Closed, O, INIT);
        assert_eq!(st.state, CookieWait);
        assert!(st.reopened);
        let st = step(Closed, R, INIT);
        assert_eq!(st.state, Closed);
        assert!(!st.reopened);
        for s in [CookieWait, CookieEchoed, Established, ShutdownSent] {
            assert!(!step(s, O, INIT).reopened, "{s:?}");
        }
    }

    #[test]
    fn only_an_init_opens() {
        assert!(opens(INIT));
        for c in [INIT_ACK, COOKIE_ECHO, COOKIE_ACK, SHUTDOWN, ABORT, DATA] {
            assert!(!opens(c), "{c:#x}");
            assert_eq!(initial(c).state, Closed, "{c:#x}");
        }
        assert_eq!(initial(INIT).state, CookieWait);
        assert!(!initial(INIT).reopened);
    }
}
