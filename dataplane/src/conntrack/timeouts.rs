//! How long an idle flow is kept, by protocol and TCP / SCTP state.
//!
//! Defaults follow netfilter's `nf_conntrack_*_timeout*` sysctls, so a flow
//! behaves the same whether the kernel or vipgate tracks it: an operator who
//! tuned those sysctls can carry the numbers over one for one.

use super::{SctpState, TcpState};
use crate::addr::Proto;

/// Idle timeouts in seconds. Every packet of a flow restarts its timer with the
/// value for the flow's state after that packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Timeouts {
    pub tcp_syn_sent: u32,
    pub tcp_syn_recv: u32,
    /// Five days, as netfilter: idle keep-alive-less connections (databases,
    /// long polls) must survive a night without traffic.
    pub tcp_established: u32,
    pub tcp_fin_wait: u32,
    pub tcp_close_wait: u32,
    pub tcp_last_ack: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
    /// UDP flow that has not seen a reply yet (netfilter `udp_timeout`).
    pub udp_unreplied: u32,
    /// UDP flow seen in both directions (netfilter `udp_timeout_stream`).
    pub udp_assured: u32,
    /// ICMP / ICMPv6 echo, keyed by identifier.
    pub icmp: u32,
    /// SCTP, netfilter's `nf_conntrack_sctp_timeout_*` (Linux 6.3 and
    /// later). The handshake states are short: an INIT that gets no
    /// COOKIE ECHO within seconds is a lost or spoofed one.
    pub sctp_cookie_wait: u32,
    pub sctp_cookie_echoed: u32,
    /// 210 s, as netfilter since 6.3 (it was five days): an association
    /// sends HEARTBEATs every 30 s by default (RFC 9260 `HB.interval`), so
    /// an idle but live one refreshes its flow long before this; one that
    /// went silent is gone (30 s x `Path.Max.Retrans` 5 + `RTO.max` 60).
    pub sctp_established: u32,
    pub sctp_shutdown_sent: u32,
    pub sctp_shutdown_recd: u32,
    pub sctp_shutdown_ack_sent: u32,
    pub sctp_closed: u32,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 432_000,
            tcp_fin_wait: 120,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            udp_unreplied: 30,
            udp_assured: 120,
            icmp: 30,
            sctp_cookie_wait: 3,
            sctp_cookie_echoed: 3,
            sctp_established: 210,
            sctp_shutdown_sent: 3,
            sctp_shutdown_recd: 3,
            sctp_shutdown_ack_sent: 3,
            sctp_closed: 10,
        }
    }
}

impl Timeouts {
    /// The timeout for a flow of `proto` in TCP state `tcp` (None for UDP and
    /// ICMP) that has (`replied`) or has not yet seen a reply. SCTP flows
    /// have their own state: see [`Timeouts::for_sctp`].
    #[inline]
    pub fn for_flow(&self, proto: Proto, tcp: Option<TcpState>, replied: bool) -> u32 {
        match (proto, tcp) {
            (Proto::Tcp, Some(state)) => self.for_tcp(state),
            (Proto::Udp, _) if replied => self.udp_assured,
            (Proto::Udp, _) => self.udp_unreplied,
            // A TCP flow always carries a state; `None` cannot happen for it,
            // and ICMP timers do not depend on replies.
            _ => self.icmp,
        }
    }

    #[inline]
    pub fn for_tcp(&self, state: TcpState) -> u32 {
        match state {
            TcpState::SynSent => self.tcp_syn_sent,
            TcpState::SynRecv => self.tcp_syn_recv,
            TcpState::Established => self.tcp_established,
            TcpState::FinWait => self.tcp_fin_wait,
            TcpState::CloseWait => self.tcp_close_wait,
            TcpState::LastAck => self.tcp_last_ack,
            TcpState::TimeWait => self.tcp_time_wait,
            TcpState::Close => self.tcp_close,
        }
    }

    #[inline]
    pub fn for_sctp(&self, state: SctpState) -> u32 {
        match state {
            SctpState::CookieWait => self.sctp_cookie_wait,
            SctpState::CookieEchoed => self.sctp_cookie_echoed,
            SctpState::Established => self.sctp_established,
            SctpState::ShutdownSent => self.sctp_shutdown_sent,
            SctpState::ShutdownRecd => self.sctp_shutdown_recd,
            SctpState::ShutdownAckSent => self.sctp_shutdown_ack_sent,
            SctpState::Closed => self.sctp_closed,
        }
    }
}
