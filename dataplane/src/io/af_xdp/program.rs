//! The steering XDP program: service traffic to the AF_XDP sockets,
//! everything else to the kernel.
//!
//! What is steered (`bpf_redirect_map(&xsks, rx_queue_index, XDP_PASS)`):
//! - TCP/UDP/SCTP whose (dst addr, dst port, proto) is in `dst_map` (a VIP
//!   port); SCTP's ports sit where TCP's and UDP's do;
//! - TCP/UDP/SCTP whose (src addr, src port, proto) is in `src_map` (a
//!   backend endpoint: its replies);
//! - IPv4 fragments, IPv6 packets with extension headers, and ICMP/ICMPv6
//!   (echo and errors) addressed to a VIP *address*: looked up in `dst_map`
//!   with port 0 and proto 0 (the address entry that
//!   [`SteeringMaps`](super::SteeringMaps) keeps beside every VIP port);
//! - IPv4 fragments and IPv6 packets with extension headers *from* a
//!   backend address (`src_map`, port 0, proto 0): a fragmented reply, whose
//!   later fragments carry no ports. This takes the backend's other
//!   fragmented traffic through the gateway too; the workers pass what no
//!   translated first fragment claims, which with AF_XDP means it is lost;
//! - ICMP/ICMPv6 *errors* (v4 types 3, 11, 12; v6 types below 128) from a
//!   backend address, looked up in `src_map` with port 0 and proto 0: they
//!   report on flows the gateway forwarded.
//!
//! Everything else passes: ARP, NDP/MLD (ICMPv6 >= 130, checked before any
//! lookup), pings from backends, SSH or kubelet traffic to the node's own
//! address, other L4 protocols, truncated or malformed headers (the kernel
//! judges those as it would without us). One 802.1Q tag is understood.
//! IPv6 extension headers are not walked: such packets match on the VIP
//! or backend address alone.

use super::asm::*;

/// XDP actions.
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

/// Map key: 16 address bytes (IPv4 mapped), port (network order), proto,
/// family ([`KEY_V4`] or [`KEY_V6`]).
pub const KEY_LEN: usize = 20;
/// Family byte of an IPv4 key. The address bytes of an IPv4 key are
/// ::ffff:a.b.c.d, which an IPv6 packet can carry too (an IPv4-mapped
/// address): the family byte, taken from the packet's IP version, keeps
/// such a packet from matching an IPv4 VIP. It must pass: the pipeline
/// passes it, and AF_XDP cannot hand a frame back to the kernel.
pub const KEY_V4: u8 = 0;
/// Family byte of an IPv6 key.
pub const KEY_V6: u8 = 6;
/// Value stored for a present key. One byte: only presence matters.
pub const VALUE_LEN: usize = 1;

// struct xdp_md offsets.
const MD_DATA: i16 = 0;
const MD_DATA_END: i16 = 4;
const MD_RX_QUEUE: i16 = 16;

// Helper ids (enum bpf_func_id).
const FN_MAP_LOOKUP_ELEM: i32 = 1;
const FN_REDIRECT_MAP: i32 = 51;

const ETH_HLEN: i32 = 14;
const VLAN_HLEN: i32 = 4;
const IPV4_MIN_HLEN: i32 = 20;
const IPV6_HLEN: i32 = 40;
/// Minimum ICMP/ICMPv6 header: type, code, checksum, 4 bytes of rest.
const ICMP_HLEN: i32 = 8;

const PROTO_ICMP: i32 = 1;
const PROTO_TCP: i32 = 6;
const PROTO_UDP: i32 = 17;
const PROTO_ICMPV6: i32 = 58;
const PROTO_SCTP: i32 = 132;
/// IPv6 extension headers after which the ports are not at a fixed offset:
/// hop-by-hop, routing, fragment, destination options.
const IPV6_EXT_HEADERS: [i32; 4] = [0, 43, 44, 60];
/// ICMPv4 errors carrying a flow's headers: unreachable, time exceeded,
/// parameter problem.
const ICMP4_ERRORS: [i32; 3] = [3, 11, 12];
/// ICMPv6 types from here up are informational/NDP/MLD (128/129 are echo,
/// which is matched by destination), and below 128 are errors.
const ICMP6_FIRST_KERNEL_ONLY: i32 = 130;
const ICMP6_FIRST_INFO: i32 = 128;

/// Stack slot of the 20-byte key (8-byte aligned, as the verifier wants
/// for the 8-byte stores into it).
const KEY: i16 = -24;

/// Map fds the program is built against (resolved by the verifier at load).
#[derive(Clone, Copy, Debug)]
pub struct ProgramMaps {
    pub dst: i32,
    pub src: i32,
    pub xsks: i32,
}

/// Where the key's address comes from.
#[derive(Clone, Copy)]
enum Family {
    /// Offset of the IPv4 address from the L3 pointer (r7).
    V4(i16),
    /// Offset of the IPv6 address from the L3 pointer (r7).
    V6(i16),
}

/// Where the key's port and proto come from.
#[derive(Clone, Copy)]
enum Ports {
    /// Port at this offset from the L4 pointer (r8), proto in r9.
    At(i16),
    /// Address-only key: port 0, proto 0.
    None,
}

/// Builds the key on the stack and jumps to `hit` if `map` holds it.
/// Registers: r7 = L3, r8 = L4, r9 = proto; r1-r5 are clobbered.
fn lookup(a: &mut Asm, map: i32, fam: Family, ports: Ports, hit: Label) {
    match fam {
        Family::V4(off) => {
            a.emit(st_imm(op::DW, R10, KEY, 0));
            a.emit(st_imm(op::W, R10, KEY + 8, bytes32([0, 0, 0xff, 0xff])));
            a.emit(ldx_w(R1, R7, off));
            a.emit(stx(op::W, R10, KEY + 12, R1));
        }
        Family::V6(off) => {
            a.emit(ldx_dw(R1, R7, off));
            a.emit(stx(op::DW, R10, KEY, R1));
            a.emit(ldx_dw(R1, R7, off + 8));
            a.emit(stx(op::DW, R10, KEY + 8, R1));
        }
    }
    match ports {
        Ports::At(off) => {
            a.emit(ldx_h(R1, R8, off));
            a.emit(stx(op::H, R10, KEY + 16, R1));
            a.emit(stx(op::B, R10, KEY + 18, R9));
        }
        Ports::None => {
            a.emit(st_imm(op::H, R10, KEY + 16, 0));
            a.emit(st_imm(op::B, R10, KEY + 18, 0));
        }
    }
    let family = match fam {
        Family::V4(_) => KEY_V4,
        Family::V6(_) => KEY_V6,
    };
    a.emit(st_imm(op::B, R10, KEY + 19, i32::from(family)));
    a.emit_all(&ld_map_fd(R1, map));
    a.emit(mov64_reg(R2, R10));
    a.emit(add64_imm(R2, KEY as i32));
    a.emit(call(FN_MAP_LOOKUP_ELEM));
    a.jmp_imm_to(op::JNE, R0, 0, hit);
}

/// `if ptr + len > data_end goto fail` (r3 must hold data_end).
fn need(a: &mut Asm, ptr: Reg, len: i32, fail: Label) {
    a.emit(mov64_reg(R4, ptr));
    a.emit(add64_imm(R4, len));
    a.jmp_reg_to(op::JGT, R4, R3, fail);
}

/// Assembles the steering program against the given map fds.
pub fn steering_program(m: ProgramMaps) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let pass = a.label();
    let redirect = a.label();
    let no_vlan = a.label();
    let v4 = a.label();
    let v4_ports = a.label();
    let v4_icmp = a.label();
    let v4_icmp_err = a.label();
    let v4_frag = a.label();
    let v6 = a.label();
    let v6_ports = a.label();
    let v6_icmp = a.label();
    let v6_icmp_err = a.label();
    let v6_addr_only = a.label();

    // r6 = ctx (survives helper calls), r2 = data, r3 = data_end.
    a.emit(mov64_reg(R6, R1));
    a.emit(ldx_w(R2, R6, MD_DATA));
    a.emit(ldx_w(R3, R6, MD_DATA_END));

    // Ethernet, then at most one 802.1Q tag; r7 = L3, r5 = ethertype.
    a.emit(mov64_reg(R7, R2));
    a.emit(add64_imm(R7, ETH_HLEN));
    a.jmp_reg_to(op::JGT, R7, R3, pass);
    a.emit(ldx_h(R5, R2, 12));
    a.jmp_imm_to(op::JNE, R5, be16(0x8100), no_vlan);
    need(&mut a, R2, ETH_HLEN + VLAN_HLEN, pass);
    a.emit(ldx_h(R5, R2, 16));
    a.emit(mov64_reg(R7, R4));
    a.bind(no_vlan);
    a.jmp_imm_to(op::JEQ, R5, be16(0x0800), v4);
    a.jmp_imm_to(op::JEQ, R5, be16(0x86dd), v6);
    a.ja_to(pass);

    // IPv4: version 4, IHL >= 5; r9 = proto, r8 = L4 at the IHL offset.
    a.bind(v4);
    need(&mut a, R7, IPV4_MIN_HLEN, pass);
    a.emit(ldx_b(R0, R7, 0));
    a.emit(mov64_reg(R4, R0));
    a.emit(rsh64_imm(R4, 4));
    a.jmp_imm_to(op::JNE, R4, 4, pass);
    a.emit(and64_imm(R0, 0x0f));
    a.emit(lsh64_imm(R0, 2));
    a.jmp_imm_to(op::JLT, R0, IPV4_MIN_HLEN, pass);
    a.emit(ldx_b(R9, R7, 9));
    // Any fragment (MF set or a non-zero offset) has no reliable ports.
    a.emit(ldx_h(R4, R7, 6));
    a.emit(and64_imm(R4, be16(0x3fff)));
    a.jmp_imm_to(op::JNE, R4, 0, v4_frag);
    // A variable (IHL-masked, <= 60) offset; the bounds checks that follow
    // are against this pointer, which is what the verifier accepts.
    a.emit(mov64_reg(R8, R7));
    a.emit(add64_reg(R8, R0));
    a.jmp_imm_to(op::JEQ, R9, PROTO_TCP, v4_ports);
    a.jmp_imm_to(op::JEQ, R9, PROTO_UDP, v4_ports);
    a.jmp_imm_to(op::JEQ, R9, PROTO_SCTP, v4_ports);
    a.jmp_imm_to(op::JEQ, R9, PROTO_ICMP, v4_icmp);
    a.ja_to(pass);

    a.bind(v4_ports);
    need(&mut a, R8, 4, pass);
    lookup(&mut a, m.dst, Family::V4(16), Ports::At(2), redirect);
    lookup(&mut a, m.src, Family::V4(12), Ports::At(0), redirect);
    a.ja_to(pass);

    a.bind(v4_icmp);
    need(&mut a, R8, ICMP_HLEN, pass);
    a.emit(ldx_b(R9, R8, 0)); // the ICMP type, kept across the lookup
    lookup(&mut a, m.dst, Family::V4(16), Ports::None, redirect);
    for t in ICMP4_ERRORS {
        a.jmp_imm_to(op::JEQ, R9, t, v4_icmp_err);
    }
    a.ja_to(pass);
    a.bind(v4_icmp_err);
    lookup(&mut a, m.src, Family::V4(12), Ports::None, redirect);
    a.ja_to(pass);

    a.bind(v4_frag);
    lookup(&mut a, m.dst, Family::V4(16), Ports::None, redirect);
    lookup(&mut a, m.src, Family::V4(12), Ports::None, redirect);
    a.ja_to(pass);

    // IPv6: fixed 40-byte header; r9 = next header, r8 = what follows it.
    a.bind(v6);
    need(&mut a, R7, IPV6_HLEN, pass);
    a.emit(ldx_b(R0, R7, 0));
    a.emit(rsh64_imm(R0, 4));
    a.jmp_imm_to(op::JNE, R0, 6, pass);
    a.emit(ldx_b(R9, R7, 6));
    a.emit(mov64_reg(R8, R7));
    a.emit(add64_imm(R8, IPV6_HLEN));
    a.jmp_imm_to(op::JEQ, R9, PROTO_TCP, v6_ports);
    a.jmp_imm_to(op::JEQ, R9, PROTO_UDP, v6_ports);
    a.jmp_imm_to(op::JEQ, R9, PROTO_SCTP, v6_ports);
    a.jmp_imm_to(op::JEQ, R9, PROTO_ICMPV6, v6_icmp);
    for h in IPV6_EXT_HEADERS {
        a.jmp_imm_to(op::JEQ, R9, h, v6_addr_only);
    }
    a.ja_to(pass);

    a.bind(v6_ports);
    need(&mut a, R8, 4, pass);
    lookup(&mut a, m.dst, Family::V6(24), Ports::At(2), redirect);
    lookup(&mut a, m.src, Family::V6(8), Ports::At(0), redirect);
    a.ja_to(pass);

    a.bind(v6_icmp);
    need(&mut a, R8, ICMP_HLEN, pass);
    a.emit(ldx_b(R9, R8, 0));
    // NDP and MLD are the kernel's even when aimed at a VIP address.
    a.jmp_imm_to(op::JGE, R9, ICMP6_FIRST_KERNEL_ONLY, pass);
    lookup(&mut a, m.dst, Family::V6(24), Ports::None, redirect);
    a.jmp_imm_to(op::JLT, R9, ICMP6_FIRST_INFO, v6_icmp_err);
    a.ja_to(pass);
    a.bind(v6_icmp_err);
    lookup(&mut a, m.src, Family::V6(8), Ports::None, redirect);
    a.ja_to(pass);

    a.bind(v6_addr_only);
    lookup(&mut a, m.dst, Family::V6(24), Ports::None, redirect);
    lookup(&mut a, m.src, Family::V6(8), Ports::None, redirect);
    a.ja_to(pass);

    // An empty XSKMAP slot (no socket on this queue yet) falls back to PASS.
    a.bind(redirect);
    a.emit_all(&ld_map_fd(R1, m.xsks));
    a.emit(ldx_w(R2, R6, MD_RX_QUEUE));
    a.emit(mov64_imm(R3, XDP_PASS as i32));
    a.emit(call(FN_REDIRECT_MAP));
    a.emit(exit());

    a.bind(pass);
    a.emit(mov64_imm(R0, XDP_PASS as i32));
    a.emit(exit());

    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: ProgramMaps = ProgramMaps {
        dst: 11,
        src: 12,
        xsks: 13,
    };

    #[test]
    fn program_assembles_and_every_jump_lands_inside() {
        let p = steering_program(MAPS).unwrap();
        assert!(p.len() < 4096, "{} insns", p.len());
        for (i, insn) in p.iter().enumerate() {
            let class = insn.code & 0x07;
            let jop = insn.code & 0xf0;
            if class == op::JMP && jop != op::CALL && jop != op::EXIT {
                let t = i as i64 + 1 + insn.off as i64;
                assert!((0..p.len() as i64).contains(&t), "jump {i} -> {t}");
                assert_ne!(t, i as i64 + 1, "jump {i} to its successor: unbound fixup?");
            }
        }
        let last = p.last().unwrap();
        assert_eq!(last.code, op::JMP | op::EXIT);
    }

    #[test]
    fn map_loads_reference_the_given_fds() {
        let p = steering_program(MAPS).unwrap();
        let fds: Vec<i32> = p
            .iter()
            .filter(|i| i.code == op::LD | op::DW | op::IMM)
            .inspect(|i| assert_eq!(i.src(), op::PSEUDO_MAP_FD))
            .map(|i| i.imm)
            .collect();
        assert!(fds.contains(&11) && fds.contains(&12) && fds.contains(&13));
        assert!(fds.iter().all(|f| [11, 12, 13].contains(f)));
    }
}
