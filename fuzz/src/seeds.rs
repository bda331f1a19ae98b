//! The seed corpus, written as code so that it is deterministic and says
//! what each seed is for. `cargo run --bin seeds` writes it to
//! `corpus/<target>/`; a test checks the committed files match.
//!
//! The encoders below follow the decoders byte for byte (`pipeline::run`,
//! `gen::frame`, `conntrack::run`); the tests check that each pipeline seed
//! reaches the paths it is named for.

/// A pipeline input under construction.
pub struct Pipe(Vec<u8>);

/// Template modifier bits (see `gen`).
pub const VLAN: u8 = 1;
pub const OPTIONS: u8 = 2;
pub const TTL: u8 = 4;
pub const PAYLOAD: u8 = 8;
pub const MUTATE: u8 = 16;
pub const REFIX: u8 = 32;
pub const LENGTH: u8 = 64;

/// TCP flag choices, as indices into `gen`'s list.
pub const SYN: u8 = 0;
pub const ACK: u8 = 1;
pub const PSH_ACK: u8 = 2;
pub const FIN_ACK: u8 = 3;
pub const RST: u8 = 4;
pub const SYN_ACK: u8 = 6;

/// Scenario targets (indices into `scenario::target`).
pub const WEB4: u8 = 0;
pub const DNS4: u8 = 1;
pub const STICKY4: u8 = 2;
pub const EMPTY4: u8 = 3;
pub const NOT_SERVING_UDP4: u8 = 4;
pub const TERMINATING4: u8 = 5;
pub const WEB6: u8 = 6;
pub const DNS6: u8 = 7;
pub const EMPTY6: u8 = 8;

impl Pipe {
    /// `setup`: conntrack capacity index (bits 0-1), ICMP for TCP rejects (bit 2).
    pub fn new(setup: u8) -> Pipe {
        Pipe(vec![setup])
    }

    /// Starts a burst of `n` frames: `h` = table switch (bit 7, generation
    /// in bits 4-5) and clock step index (bits 0-3); `caps` = buffer sizes.
    pub fn burst(mut self, h: u8, n: u8, caps: u8) -> Pipe {
        self.0.extend_from_slice(&[h, 0, n - 1, caps]);
        self
    }

    fn push(mut self, b: &[u8]) -> Pipe {
        self.0.extend_from_slice(b);
        self
    }

    /// TCP from client `who` (host index << 2) port 40000 + `port` to a target.
    pub fn tcp(self, target: u8, who: u8, port: u8, flags: u8) -> Pipe {
        self.push(&[0, 0, target, who, port, flags, 0])
    }

    pub fn udp(self, target: u8, who: u8, port: u8) -> Pipe {
        self.push(&[0, 0, target, who, port])
    }

    /// A TCP reply on learned flow `flow`.
    pub fn tcp_reply(self, flow: u8, flags: u8) -> Pipe {
        self.push(&[3, 0, flow, flags, 0])
    }

    pub fn udp_reply(self, flow: u8) -> Pipe {
        self.push(&[3, 0, flow])
    }

    /// An ICMP error about learned TCP flow `flow`, to the VIP (from the
    /// client side) or to the client (from the backend side); `whole`
    /// quotes the whole packet, else the header and 8 bytes.
    pub fn icmp_error(self, to_vip: bool, flow: u8, router: bool, tcp: bool, whole: bool) -> Pipe {
        let kind = if to_vip { 5 } else { 6 };
        let mut s = self.push(&[kind, 0, flow, u8::from(router)]);
        if tcp {
            s = s.push(&[ACK, 0]);
        }
        s.push(&[if whole { 255 } else { 0 }, 0, 3])
    }

    /// Any frame bytes, decoded by the template `kind` with modifiers `mods`.
    pub fn raw(self, kind: u8, mods: u8, rest: &[u8]) -> Pipe {
        self.push(&[kind, mods]).push(rest)
    }

    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A conntrack input under construction.
pub struct Ct(Vec<u8>);

impl Ct {
    /// Capacity `cap` (1-16), TCP / UDP unreplied / UDP assured / ICMP
    /// timeouts (1-256 s), clock start.
    pub fn new(cap: u8, t: [u8; 4], now: u8) -> Ct {
        Ct(vec![cap - 1, t[0] - 1, t[1] - 1, t[2] - 1, t[3] - 1, now])
    }

    fn push(mut self, b: &[u8]) -> Ct {
        self.0.extend_from_slice(b);
        self
    }

    /// Flow `k` (pool index: k % 3 is TCP, UDP, ICMP; odd k is IPv6).
    pub fn insert(self, k: u8, flags: u8) -> Ct {
        self.push(&[0, k, flags, 0])
    }

    pub fn find(self, k: u8, from_reply: bool) -> Ct {
        self.push(&[if from_reply { 3 } else { 2 }, k])
    }

    pub fn update(self, k: u8, from_reply: bool, flags: u8) -> Ct {
        self.push(&[4, k, u8::from(from_reply), flags])
    }

    pub fn remove(self, k: u8) -> Ct {
        self.push(&[6, k])
    }

    /// Moves the clock `s` (< 64) seconds; 254 or 255 jump near its end.
    pub fn advance(self, s: u8) -> Ct {
        self.push(&[7, 0, s])
    }

    pub fn expire(self, budget: u8) -> Ct {
        self.push(&[8, 0, budget])
    }

    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Conntrack flag choices, as indices into `conntrack`'s list.
pub mod ct_flags {
    pub const SYN: u8 = 0;
    pub const SYN_ACK: u8 = 1;
    pub const ACK: u8 = 2;
    pub const FIN_ACK: u8 = 3;
    pub const RST: u8 = 4;
}

/// Deterministic filler bytes (a linear congruential generator).
pub fn noise(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect()
}

/// The seeds of a target, by file name.
pub fn seeds(target: &str) -> Vec<(&'static str, Vec<u8>)> {
    match target {
        "pipeline" => pipeline_seeds(),
        "conntrack" => conntrack_seeds(),
        _ => Vec::new(),
    }
}

fn pipeline_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let tcp_v4 = Pipe::new(1)
        .burst(0, 2, 0)
        .tcp(WEB4, 0, 0, SYN)
        .tcp(STICKY4, 4, 1, SYN)
        .burst(3, 2, 0)
        .tcp_reply(0, SYN_ACK)
        .tcp_reply(1, SYN_ACK)
        .burst(0, 3, 0)
        .tcp(WEB4, 0, 0, ACK)
        .tcp(STICKY4, 4, 1, ACK)
        .raw(0, PAYLOAD, &[WEB4, 0, 0, PSH_ACK, 0, 40])
        .burst(0, 2, 0)
        .icmp_error(true, 0, false, true, false)
        .icmp_error(false, 1, true, true, true)
        .burst(4, 3, 0)
        .tcp(WEB4, 0, 0, FIN_ACK)
        .tcp_reply(0, FIN_ACK)
        .tcp(WEB4, 0, 0, ACK)
        .burst(11, 1, 0)
        .tcp(STICKY4, 4, 1, PSH_ACK)
        .bytes();
    let udp_v6 = Pipe::new(2)
        .burst(0, 2, 0)
        // Two extension headers (hop-by-hop, destination options) and a VLAN tag.
        .raw(0, VLAN | OPTIONS, &[DNS6, 0, 0, 1, 0, 0, 1, 1, 0, 100])
        .udp(DNS6, 8, 2)
        .burst(1, 3, 0)
        .udp_reply(0)
        .udp_reply(1)
        .icmp_error(false, 0, false, false, true)
        .burst(0, 2, 1)
        .tcp(WEB6, 0, 3, SYN)
        .icmp_error(true, 1, true, false, false)
        .bytes();
    let reject = Pipe::new(1)
        .burst(0, 6, 0)
        .tcp(EMPTY4, 0, 0, SYN)
        .tcp(EMPTY4, 0, 1, RST)
        .udp(NOT_SERVING_UDP4, 4, 0)
        .tcp(EMPTY6, 0, 0, SYN)
        .raw(0, TTL, &[WEB4, 0, 2, 1, SYN, 0])
        .tcp(TERMINATING4, 0, 4, SYN)
        .burst(0, 2, 2)
        .tcp(EMPTY4, 4, 0, PSH_ACK)
        .udp(NOT_SERVING_UDP4, 4, 1)
        .bytes();
    let reject_icmp = {
        let mut b = reject.clone();
        b[0] |= 4;
        b
    };
    // Three TCP and two UDP flows: set up on generation 1, then seen again
    // on generation 2 (a backend gone, the UDP Service without endpoints).
    let five = |p: Pipe, flags| {
        p.tcp(WEB4, 0, 0, flags)
            .tcp(WEB4, 0, 1, flags)
            .tcp(WEB4, 4, 2, flags)
            .udp(DNS4, 0, 3)
            .udp(DNS4, 4, 4)
    };
    let generations = five(Pipe::new(1).burst(0, 5, 0), SYN);
    let generations = five(generations.burst(0x90, 6, 0), ACK)
        .tcp(EMPTY4, 0, 5, SYN)
        .burst(0xa0, 3, 0)
        .tcp(WEB4, 0, 0, ACK)
        .tcp_reply(0, ACK)
        .tcp(WEB6, 0, 0, SYN)
        .burst(0x80, 2, 0)
        .tcp_reply(0, ACK)
        .tcp(WEB4, 0, 0, ACK)
        .bytes();
    let other = Pipe::new(3)
        .burst(0, 8, 0)
        // Fragments to a VIP: IPv4 (more fragments), IPv6 (offset 1).
        .raw(8, 0, &[WEB4, 0, 0, 0, 1, SYN, 0])
        .raw(8, 0, &[WEB6, 0, 0, 1, 0, SYN, 0])
        // ARP, IPv6 to an IPv4-mapped VIP.
        .raw(9, 0, &[0, 8, 0, 1, 8, 0, 6, 4, 0, 1])
        .raw(9, 0, &[4, 1])
        // Echo to a VIP, IPv4 and IPv6.
        .raw(7, 0, &[0, 0, 0, 7])
        .raw(7, 0, &[1, 0, 0, 7])
        // Not addressed to a VIP; a runt.
        .raw(11, 0, &[0, 0xc3, 1, 0, 1, SYN, 0])
        .raw(10, 0, &[20, 0, 1, 2, 3])
        .bytes();
    // Capacity 4: four connections made assured (SYN, SYN-ACK, ACK), then
    // new flows that find no room (conntrack_full drops).
    let full = {
        let mut p = Pipe::new(0).burst(0, 4, 0);
        for port in 0..4 {
            p = p.tcp(WEB4, 0, port, SYN);
        }
        p = p.burst(0, 4, 0);
        for flow in 0..4 {
            p = p.tcp_reply(flow, SYN_ACK);
        }
        p = p.burst(0, 4, 0);
        for port in 0..4 {
            p = p.tcp(WEB4, 0, port, ACK);
        }
        p.burst(0, 3, 0)
            .tcp(WEB4, 0, 4, SYN)
            .udp(DNS4, 8, 0)
            .tcp(WEB4, 0, 0, PSH_ACK)
            .bytes()
    };
    let mangled = Pipe::new(1)
        .burst(0, 4, 0)
        // IPv4 options, TCP options, payload; bytes flipped, checksums fixed.
        .raw(
            0,
            OPTIONS | PAYLOAD | MUTATE | REFIX,
            &[
                WEB4, 0, 0, 3, 1, SYN, 0, 2, 9, 9, 9, 9, 9, 9, 9, 9, 30, 0, 0, 50, 1,
            ],
        )
        // A datagram with a byte flipped (checksum left wrong), cut short.
        .raw(0, MUTATE | LENGTH, &[DNS4, 0, 0, 0, 0, 30, 0x40, 21])
        // A SYN padded past its IP length.
        .raw(
            0,
            LENGTH | MUTATE | REFIX,
            &[WEB4, 0, 1, SYN, 0, 0, 0, 0, 0, 40],
        )
        // A backend's SYN-ACK for no tracked flow, a byte flipped.
        .raw(3, MUTATE, &[0, 2, 0, 0, SYN_ACK, 0, 0, 0, 40, 0xff])
        .bytes();
    vec![
        ("tcp_v4_lifecycle", tcp_v4),
        ("udp_v6_ext_vlan", udp_v6),
        ("reject_rst", reject),
        ("reject_icmp", reject_icmp),
        ("generation_change", generations),
        ("fragments_non_ip_echo", other),
        ("conntrack_full", full),
        ("mangled", mangled),
        ("noise", noise(1, 600)),
    ]
}

fn conntrack_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use ct_flags::*;
    let mut evict = Ct::new(4, [60, 30, 90, 20], 10);
    for k in 0..6 {
        evict = evict.insert(k, SYN);
    }
    evict = evict
        .update(0, true, SYN_ACK)
        .update(0, false, ACK)
        .update(1, true, 0);
    for k in 6..12 {
        evict = evict.insert(k, SYN).find(k, true);
    }
    let expire = Ct::new(16, [50, 30, 70, 20], 0)
        .insert(0, SYN)
        .insert(1, 0)
        .insert(2, 0)
        .update(1, true, 0)
        .advance(25)
        .find(2, false)
        .advance(10)
        .expire(16)
        .find(0, true)
        .advance(40)
        .expire(32)
        .find(1, false)
        .advance(63)
        .insert(3, SYN)
        .bytes();
    let tcp = Ct::new(8, [120, 30, 60, 30], 5)
        .insert(0, SYN)
        .update(0, true, SYN_ACK)
        .update(0, false, ACK)
        .find(0, true)
        .update(0, false, FIN_ACK)
        .update(0, true, FIN_ACK)
        .update(0, false, ACK)
        .insert(0, SYN)
        .update(0, true, RST)
        .remove(0)
        .find(0, false)
        .bytes();
    let clock_end = Ct::new(2, [200, 200, 200, 200], 255)
        .insert(1, 0)
        .insert(3, 0)
        .advance(254)
        .find(1, false)
        .insert(4, 0)
        .advance(255)
        .insert(5, 0)
        .bytes();
    vec![
        ("evict_unassured", evict.bytes()),
        ("expire", expire),
        ("tcp_lifecycle", tcp),
        ("clock_end", clock_end),
        ("noise", noise(2, 400)),
    ]
}
