//! The TCP state machine: a simplified netfilter `tcp_conntracks` table.
//!
//! Unlike netfilter there is no sequence-window tracking: a gateway in front
//! of many backends cannot afford it per packet, and the states only pick a
//! timeout and decide whether a flow may be evicted, never whether a packet
//! is forwarded. What it does track beyond netfilter's table is which side
//! sent the first FIN, so that a retransmitted FIN cannot pass for the
//! peer's and close a half-open connection early.
//!
//! Events are derived from the raw flags byte, first match wins:
//! RST set -> `Rst`; SYN without ACK -> `Syn`; SYN+ACK -> `SynAck`;
//! FIN -> `Fin`; ACK -> `Ack`; anything else (no flags) changes nothing.
//! `O` = original direction (client), `R` = reply (backend), `d` = the
//! packet's direction, `F` = the direction that sent the first FIN.
//!
//! | state       | Rst   | Syn (O)  | SynAck (R)  | Fin (d)                     | Ack (d)                        |
//! |-------------|-------|----------|-------------|-----------------------------|--------------------------------|
//! | (new)       | Close | SynSent  | Established | Established, then Fin row   | Established (loose pickup)     |
//! | SynSent     | Close | SynSent  | SynRecv     | SynSent                     | SynSent                        |
//! | SynRecv     | Close | SynRecv  | SynRecv     | FinWait, F = d              | O: Established; R: SynRecv     |
//! | Established | Close | -        | -           | FinWait, F = d              | -                              |
//! | FinWait     | Close | -        | -           | d != F: LastAck; else -     | d != F: CloseWait; else -      |
//! | CloseWait   | Close | -        | -           | d != F: LastAck; else -     | -                              |
//! | LastAck     | Close | -        | -           | -                           | d == F: TimeWait; else -       |
//! | TimeWait    | Close | SynSent* | -           | -                           | -                              |
//! | Close       | Close | SynSent* | -           | -                           | -                              |
//!
//! `-` keeps the state. `Syn` from R and `SynAck` from O keep the state (no
//! simultaneous open). `*` is a new connection reusing the tuple (port
//! reuse after TIME_WAIT, as netfilter allows): FIN memory is cleared and the
//! flow counts as unreplied again. The (new) row is for a flow's first packet,
//! always from O: anything but a bare SYN is a flow first seen mid-stream
//! (e.g. after failover from another gateway) and is picked up as Established.

use super::{Direction, TcpState};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// Per-flow TCP memory beyond the state, kept in `Entry::flags` bits.
/// Which direction sent the first FIN; meaningful from FinWait on.
pub const FLAG_FIRST_FIN_REPLY: u8 = 0x01;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Event {
    Rst,
    Syn,
    SynAck,
    Fin,
    Ack,
    Nothing,
}

#[inline]
fn event(flags: u8) -> Event {
    if flags & RST != 0 {
        Event::Rst
    } else if flags & SYN != 0 {
        if flags & ACK != 0 {
            Event::SynAck
        } else {
            Event::Syn
        }
    } else if flags & FIN != 0 {
        Event::Fin
    } else if flags & ACK != 0 {
        Event::Ack
    } else {
        Event::Nothing
    }
}

/// Result of one packet on a TCP flow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Step {
    pub state: TcpState,
    /// TCP bits of `Entry::flags` after the packet.
    pub bits: u8,
    /// The packet opened a new connection on the tuple of a finished one.
    pub reopened: bool,
}

#[inline]
fn fin_dir_bit(dir: Direction) -> u8 {
    match dir {
        Direction::Original => 0,
        Direction::Reply => FLAG_FIRST_FIN_REPLY,
    }
}

/// State of a flow whose first packet (from the client) carries `flags`.
#[inline]
pub fn initial(flags: u8) -> Step {
    match event(flags) {
        Event::Syn => Step {
            state: TcpState::SynSent,
            bits: 0,
            reopened: false,
        },
        Event::Rst => Step {
            state: TcpState::Close,
            bits: 0,
            reopened: false,
        },
        _ => step(TcpState::Established, 0, Direction::Original, flags),
    }
}

/// Advance `state` (with TCP `bits`) by one packet in `dir` with `flags`.
#[inline]
pub fn step(state: TcpState, bits: u8, dir: Direction, flags: u8) -> Step {
    use Direction::{Original as O, Reply as R};
    use TcpState::*;
    let first_fin = if bits & FLAG_FIRST_FIN_REPLY != 0 {
        R
    } else {
        O
    };
    let keep = Step {
        state,
        bits,
        reopened: false,
    };
    let to = |state| Step {
        state,
        bits,
        reopened: false,
    };
    match (state, event(flags), dir) {
        (_, Event::Rst, _) => to(Close),
        (TimeWait | Close, Event::Syn, O) => Step {
            state: SynSent,
            bits: 0,
            reopened: true,
        },
        (SynSent, Event::SynAck, R) => to(SynRecv),
        (SynRecv, Event::Ack, O) => to(Established),
        (SynRecv | Established, Event::Fin, d) => Step {
            state: FinWait,
            bits: (bits & !FLAG_FIRST_FIN_REPLY) | fin_dir_bit(d),
            reopened: false,
        },
        (FinWait | CloseWait, Event::Fin, d) if d != first_fin => to(LastAck),
        (FinWait, Event::Ack, d) if d != first_fin => to(CloseWait),
        (LastAck, Event::Ack, d) if d == first_fin => to(TimeWait),
        _ => keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Original as O, Reply as R};
    use TcpState::*;

    /// Run a packet sequence from the first packet on; return the states.
    fn run(first: u8, rest: &[(Direction, u8)]) -> Vec<TcpState> {
        let mut s = initial(first);
        let mut out = vec![s.state];
        for &(d, f) in rest {
            s = step(s.state, s.bits, d, f);
            out.push(s.state);
        }
        out
    }

    #[test]
    fn handshake_and_client_close() {
        let states = run(
            SYN,
            &[
                (R, SYN | ACK),
                (O, ACK),
                (O, ACK),       // data
                (O, FIN | ACK), // client closes
                (R, ACK),       // backend acks the FIN
                (R, FIN | ACK), // backend closes
                (O, ACK),       // final ack
            ],
        );
        assert_eq!(
            states,
            [
                SynSent,
                SynRecv,
                Established,
                Established,
                FinWait,
                CloseWait,
                LastAck,
                TimeWait
            ]
        );
    }

    #[test]
    fn backend_closes_first() {
        let states = run(
            SYN,
            &[
                (R, SYN | ACK),
                (O, ACK),
                (R, FIN | ACK),
                (O, FIN | ACK), // client's FIN carries the ACK of backend's FIN
                (R, ACK),
            ],
        );
        assert_eq!(
            states,
            [SynSent, SynRecv, Established, FinWait, LastAck, TimeWait]
        );
    }

    #[test]
    fn retransmitted_fin_does_not_count_as_the_peers() {
        let states = run(ACK, &[(O, FIN | ACK), (O, FIN | ACK), (O, ACK)]);
        assert_eq!(states, [Established, FinWait, FinWait, FinWait]);
        // In LastAck only the first closer's ACK (of the second FIN) finishes.
        let states = run(ACK, &[(O, FIN), (R, FIN | ACK), (R, ACK), (O, ACK)]);
        assert_eq!(states, [Established, FinWait, LastAck, LastAck, TimeWait]);
    }

    #[test]
    fn rst_closes_from_any_state_and_either_side() {
        for d in [O, R] {
            for s in [
                SynSent,
                SynRecv,
                Established,
                FinWait,
                CloseWait,
                LastAck,
                TimeWait,
                Close,
            ] {
                assert_eq!(step(s, 0, d, RST | ACK).state, Close, "{s:?} {d:?}");
            }
        }
    }

    #[test]
    fn loose_pickup_mid_stream() {
        assert_eq!(initial(ACK).state, Established);
        assert_eq!(initial(ACK | 0x08).state, Established); // PSH|ACK
        assert_eq!(initial(SYN | ACK).state, Established);
        assert_eq!(initial(0).state, Established);
        let fin = initial(FIN | ACK);
        assert_eq!(fin.state, FinWait);
        assert_eq!(fin.bits & FLAG_FIRST_FIN_REPLY, 0);
        assert_eq!(initial(RST).state, Close);
    }

    #[test]
    fn syn_reopens_finished_connections_only() {
        for s in [TimeWait, Close] {
            let st = step(s, FLAG_FIRST_FIN_REPLY, O, SYN);
            assert_eq!(st.state, SynSent);
            assert!(st.reopened);
            assert_eq!(st.bits, 0);
            // From the backend a SYN is no new connection.
            assert_eq!(step(s, 0, R, SYN).state, s);
        }
        for s in [SynRecv, Established, FinWait, CloseWait, LastAck] {
            let st = step(s, 0, O, SYN);
            assert_eq!(st.state, s);
            assert!(!st.reopened);
        }
    }

    #[test]
    fn handshake_packets_in_wrong_direction_are_ignored() {
        assert_eq!(step(SynSent, 0, O, SYN | ACK).state, SynSent);
        assert_eq!(step(SynSent, 0, R, SYN).state, SynSent);
        assert_eq!(step(SynSent, 0, O, ACK).state, SynSent);
        assert_eq!(step(SynRecv, 0, R, ACK).state, SynRecv);
        assert_eq!(step(Established, 0, O, 0).state, Established);
    }
}
