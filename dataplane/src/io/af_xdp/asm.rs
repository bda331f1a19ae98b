//! A tiny eBPF assembler: the instruction encoding, one constructor per
//! instruction shape, and forward labels so the steering program can be
//! written as straight-line Rust without counting jump offsets by hand.

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg:4 and src_reg:4, in the bitfield order of the host.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    #[inline]
    pub const fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: regs(dst, src),
            off,
            imm,
        }
    }

    pub fn dst(&self) -> Reg {
        if cfg!(target_endian = "little") {
            self.regs & 0x0f
        } else {
            self.regs >> 4
        }
    }

    pub fn src(&self) -> Reg {
        if cfg!(target_endian = "little") {
            self.regs >> 4
        } else {
            self.regs & 0x0f
        }
    }
}

const fn regs(dst: Reg, src: Reg) -> u8 {
    if cfg!(target_endian = "little") {
        (dst & 0x0f) | (src << 4)
    } else {
        (dst << 4) | (src & 0x0f)
    }
}

/// A register number, 0..=10.
pub type Reg = u8;
pub const R0: Reg = 0;
pub const R1: Reg = 1;
pub const R2: Reg = 2;
pub const R3: Reg = 3;
pub const R4: Reg = 4;
pub const R5: Reg = 5;
pub const R6: Reg = 6;
pub const R7: Reg = 7;
pub const R8: Reg = 8;
pub const R9: Reg = 9;
/// The read-only frame pointer; the stack grows down from it.
pub const R10: Reg = 10;

/// Opcode parts (include/uapi/linux/bpf_common.h and bpf.h).
pub mod op {
    pub const LD: u8 = 0x00;
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const JMP: u8 = 0x05;
    pub const ALU64: u8 = 0x07;

    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;

    pub const IMM: u8 = 0x00;
    pub const MEM: u8 = 0x60;

    /// Operand is the 32-bit immediate.
    pub const K: u8 = 0x00;
    /// Operand is the source register.
    pub const X: u8 = 0x08;

    pub const ADD: u8 = 0x00;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const RSH: u8 = 0x70;
    pub const MOV: u8 = 0xb0;

    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JGE: u8 = 0x30;
    pub const JNE: u8 = 0x50;
    pub const JLT: u8 = 0xa0;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;

    /// src_reg of a 64-bit immediate load whose imm is a map fd.
    pub const PSEUDO_MAP_FD: u8 = 1;
}

pub fn mov64_imm(dst: Reg, imm: i32) -> Insn {
    Insn::new(op::ALU64 | op::MOV | op::K, dst, 0, 0, imm)
}
pub fn mov64_reg(dst: Reg, src: Reg) -> Insn {
    Insn::new(op::ALU64 | op::MOV | op::X, dst, src, 0, 0)
}
pub fn add64_imm(dst: Reg, imm: i32) -> Insn {
    Insn::new(op::ALU64 | op::ADD | op::K, dst, 0, 0, imm)
}
pub fn add64_reg(dst: Reg, src: Reg) -> Insn {
    Insn::new(op::ALU64 | op::ADD | op::X, dst, src, 0, 0)
}
pub fn and64_imm(dst: Reg, imm: i32) -> Insn {
    Insn::new(op::ALU64 | op::AND | op::K, dst, 0, 0, imm)
}
pub fn lsh64_imm(dst: Reg, imm: i32) -> Insn {
    Insn::new(op::ALU64 | op::LSH | op::K, dst, 0, 0, imm)
}
pub fn rsh64_imm(dst: Reg, imm: i32) -> Insn {
    Insn::new(op::ALU64 | op::RSH | op::K, dst, 0, 0, imm)
}

/// `dst = *(size *)(src + off)`
pub fn ldx(size: u8, dst: Reg, src: Reg, off: i16) -> Insn {
    Insn::new(op::LDX | size | op::MEM, dst, src, off, 0)
}
pub fn ldx_b(dst: Reg, src: Reg, off: i16) -> Insn {
    ldx(op::B, dst, src, off)
}
pub fn ldx_h(dst: Reg, src: Reg, off: i16) -> Insn {
    ldx(op::H, dst, src, off)
}
pub fn ldx_w(dst: Reg, src: Reg, off: i16) -> Insn {
    ldx(op::W, dst, src, off)
}
pub fn ldx_dw(dst: Reg, src: Reg, off: i16) -> Insn {
    ldx(op::DW, dst, src, off)
}

/// `*(size *)(dst + off) = src`
pub fn stx(size: u8, dst: Reg, off: i16, src: Reg) -> Insn {
    Insn::new(op::STX | size | op::MEM, dst, src, off, 0)
}

/// `*(size *)(dst + off) = imm`
pub fn st_imm(size: u8, dst: Reg, off: i16, imm: i32) -> Insn {
    Insn::new(op::ST | size | op::MEM, dst, 0, off, imm)
}

pub fn jmp_imm(jop: u8, dst: Reg, imm: i32, off: i16) -> Insn {
    Insn::new(op::JMP | jop | op::K, dst, 0, off, imm)
}
pub fn jeq_imm(dst: Reg, imm: i32, off: i16) -> Insn {
    jmp_imm(op::JEQ, dst, imm, off)
}
pub fn jmp_reg(jop: u8, dst: Reg, src: Reg, off: i16) -> Insn {
    Insn::new(op::JMP | jop | op::X, dst, src, off, 0)
}
pub fn ja(off: i16) -> Insn {
    Insn::new(op::JMP | op::JA, 0, 0, off, 0)
}
pub fn call(helper: i32) -> Insn {
    Insn::new(op::JMP | op::CALL, 0, 0, 0, helper)
}
pub fn exit() -> Insn {
    Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0)
}

/// `dst = map` — the two-slot 64-bit immediate load the verifier rewrites
/// from an fd into the map's address.
pub fn ld_map_fd(dst: Reg, fd: i32) -> [Insn; 2] {
    [
        Insn::new(op::LD | op::DW | op::IMM, dst, op::PSEUDO_MAP_FD, 0, fd),
        Insn::default(),
    ]
}

/// A jump target, bound once with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Why a program could not be assembled (a bug in the generator).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    #[error("label {0} is used but never bound")]
    Unbound(usize),
    #[error("jump at {0} does not fit a 16-bit offset")]
    TooFar(usize),
}

/// Collects instructions and patches jump offsets when labels are bound.
#[derive(Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Makes `l` point at the next emitted instruction.
    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    pub fn emit(&mut self, i: Insn) {
        self.insns.push(i);
    }

    pub fn emit_all(&mut self, is: &[Insn]) {
        self.insns.extend_from_slice(is);
    }

    /// `if dst <jop> imm goto l`
    pub fn jmp_imm_to(&mut self, jop: u8, dst: Reg, imm: i32, l: Label) {
        self.fixups.push((self.insns.len(), l));
        self.emit(jmp_imm(jop, dst, imm, 0));
    }

    /// `if dst <jop> src goto l`
    pub fn jmp_reg_to(&mut self, jop: u8, dst: Reg, src: Reg, l: Label) {
        self.fixups.push((self.insns.len(), l));
        self.emit(jmp_reg(jop, dst, src, 0));
    }

    pub fn ja_to(&mut self, l: Label) {
        self.fixups.push((self.insns.len(), l));
        self.emit(ja(0));
    }

    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Resolves every jump; offsets count from the instruction after the jump.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for &(at, l) in &self.fixups {
            let target = self.labels[l.0].ok_or(AsmError::Unbound(l.0))?;
            let off = target as i64 - (at as i64 + 1);
            self.insns[at].off = i16::try_from(off).map_err(|_| AsmError::TooFar(at))?;
        }
        Ok(self.insns)
    }
}

/// A 16-bit constant in network byte order as `ldx_h` sees it in a register.
pub const fn be16(v: u16) -> i32 {
    u16::from_ne_bytes(v.to_be_bytes()) as i32
}

/// A 32-bit value whose bytes appear in this order in memory.
pub const fn bytes32(b: [u8; 4]) -> i32 {
    i32::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(i: &Insn) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0] = i.code;
        out[1] = i.regs;
        out[2..4].copy_from_slice(&i.off.to_ne_bytes());
        out[4..].copy_from_slice(&i.imm.to_ne_bytes());
        out
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn golden_encodings() {
        // Byte strings as `llvm-objdump -d` prints them for the same source.
        assert_eq!(bytes(&mov64_reg(R6, R1)), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(&mov64_imm(R0, 2)), [0xb7, 0x00, 0, 0, 2, 0, 0, 0]);
        assert_eq!(bytes(&ldx_w(R2, R6, 4)), [0x61, 0x62, 4, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(&ldx_h(R5, R2, 12)), [0x69, 0x25, 12, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(&ldx_b(R0, R7, 0)), [0x71, 0x70, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes(&ldx_dw(R1, R7, 24)), [0x79, 0x71, 24, 0, 0, 0, 0, 0]);
        assert_eq!(
            bytes(&stx(op::W, R10, -12, R1)),
            [0x63, 0x1a, 0xf4, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(&st_imm(op::DW, R10, -24, 0)),
            [0x7a, 0x0a, 0xe8, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(&jmp_reg(op::JGT, R7, R3, 5)),
            [0x2d, 0x37, 5, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(&jeq_imm(R9, 17, -3)),
            [0x15, 0x09, 0xfd, 0xff, 17, 0, 0, 0]
        );
        assert_eq!(bytes(&call(51)), [0x85, 0, 0, 0, 51, 0, 0, 0]);
        assert_eq!(bytes(&exit()), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        let m = ld_map_fd(R1, 7);
        assert_eq!(bytes(&m[0]), [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(bytes(&m[1]), [0; 8]);
        assert_eq!(be16(0x0800), 0x0008);
    }

    #[test]
    fn register_fields_round_trip() {
        let i = Insn::new(0, R9, R10, 0, 0);
        assert_eq!((i.dst(), i.src()), (R9, R10));
    }

    #[test]
    fn labels_resolve_forward_and_backward() {
        let mut a = Asm::new();
        let top = a.label();
        let end = a.label();
        a.bind(top);
        a.emit(mov64_imm(R0, 0)); // 0
        a.jmp_imm_to(op::JEQ, R0, 1, end); // 1 -> 4: off 2
        a.emit(mov64_imm(R0, 1)); // 2
        a.jmp_imm_to(op::JNE, R0, 0, top); // 3 -> 0: off -4
        a.bind(end);
        a.emit(exit()); // 4
        let p = a.finish().unwrap();
        assert_eq!(p[1].off, 2);
        assert_eq!(p[3].off, -4);
    }

    #[test]
    fn unbound_label_is_an_error_not_a_panic() {
        let mut a = Asm::new();
        let l = a.label();
        a.ja_to(l);
        assert_eq!(a.finish(), Err(AsmError::Unbound(0)));
    }
}
