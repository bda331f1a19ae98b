//! Stable, seeded hashes: every gateway, process and CPU architecture given
//! the same input and seed computes the same value, so a flow that moves
//! between gateways (ECMP rehash, failover) is picked onto the same backend.
//!
//! The byte layouts below and the algorithm (XXH3-64) are a wire contract
//! between gateways, pinned by golden-value tests: changing either moves
//! existing flows to other backends during a rolling upgrade.
//!
//! | function         | bytes hashed                                                   |
//! |------------------|----------------------------------------------------------------|
//! | `flow_hash`      | src (16) · dst (16) · sport (2, BE) · dport (2, BE) · proto (1) |
//! | `client_hash`    | client (16)                                                     |
//! | `backend_hashes` | addr (16) · port (2, BE) · tag (1: 0 = offset, 1 = skip, 2 = shift) |
//! | `shuffle_hash`   | table size M (4, BE) · position (4, BE) · tag (1: 3)           |
//!
//! Addresses are the 16-byte `Addr` form (IPv4 mapped), so v4 and v6 share
//! one fixed layout. These hashes are not keyed against an attacker who knows
//! the seed: one who does can aim flows at a single backend, so a cluster
//! that cares sets its own secret seed (shared by all its gateways).

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::addr::{Addr, Tuple};

/// The seed used when the operator configures none: the ASCII bytes
/// `"vipgate1"` read big-endian. Nothing about it is secret or special; it is
/// fixed only so that gateways left at the default agree with each other.
pub const DEFAULT_SEED: u64 = u64::from_be_bytes(*b"vipgate1");

/// Length of the `flow_hash` input: two addresses, two ports, the protocol.
const FLOW_KEY_LEN: usize = 16 + 16 + 2 + 2 + 1;

/// Length of the `backend_hashes` input: address, port, domain tag.
const BACKEND_KEY_LEN: usize = 16 + 2 + 1;

/// Length of the `shuffle_hash` input: table size, position, domain tag.
const SHUFFLE_KEY_LEN: usize = 4 + 4 + 1;

/// Domain tags: offset, skip and shift must be independent hashes of the
/// same backend (offset and skip are the paper's h1 and h2), so each hashes a
/// differently tagged input; the slot shuffle gets a tag of its own.
const TAG_OFFSET: u8 = 0;
const TAG_SKIP: u8 = 1;
const TAG_SHIFT: u8 = 2;
const TAG_SHUFFLE: u8 = 3;

/// Hash of a flow for the Maglev pick: 5-tuple (src, dst, sport, dport, proto)
/// from the client's side.
#[inline]
pub fn flow_hash(t: &Tuple, seed: u64) -> u64 {
    let mut key = [0u8; FLOW_KEY_LEN];
    key[0..16].copy_from_slice(&t.src.0);
    key[16..32].copy_from_slice(&t.dst.0);
    key[32..34].copy_from_slice(&t.sport.to_be_bytes());
    key[34..36].copy_from_slice(&t.dport.to_be_bytes());
    key[36] = t.proto as u8;
    xxh3_64_with_seed(&key, seed)
}

/// Hash of only the client address (sessionAffinity: ClientIP).
#[inline]
pub fn client_hash(client: &Addr, seed: u64) -> u64 {
    xxh3_64_with_seed(&client.0, seed)
}

/// The permutation hashes of one backend identity for Maglev: where its
/// walk starts (`offset`), its stride (`skip`), and how far its walk is
/// rotated after the slot shuffle (`shift`; see `crate::maglev`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendHashes {
    pub offset: u64,
    pub skip: u64,
    pub shift: u64,
}

/// The permutation hashes of backend `(addr, port)`.
pub fn backend_hashes(addr: &Addr, port: u16, seed: u64) -> BackendHashes {
    let mut key = [0u8; BACKEND_KEY_LEN];
    key[0..16].copy_from_slice(&addr.0);
    key[16..18].copy_from_slice(&port.to_be_bytes());
    let mut tagged = |tag: u8| {
        key[18] = tag;
        xxh3_64_with_seed(&key, seed)
    };
    BackendHashes {
        offset: tagged(TAG_OFFSET),
        skip: tagged(TAG_SKIP),
        shift: tagged(TAG_SHIFT),
    }
}

/// The random word that decides where position `i` of the slot shuffle of a
/// ring of `m` slots swaps to (Fisher-Yates, see `crate::maglev`).
pub fn shuffle_hash(m: u32, i: u32, seed: u64) -> u64 {
    let mut key = [0u8; SHUFFLE_KEY_LEN];
    key[0..4].copy_from_slice(&m.to_be_bytes());
    key[4..8].copy_from_slice(&i.to_be_bytes());
    key[8] = TAG_SHUFFLE;
    xxh3_64_with_seed(&key, seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Proto;

    fn tuple() -> Tuple {
        Tuple {
            src: Addr::from_v4([198, 18, 0, 10]),
            dst: Addr::from_v4([198, 19, 0, 1]),
            sport: 40000,
            dport: 80,
            proto: Proto::Tcp,
        }
    }

    fn v6(last: u8) -> Addr {
        let mut o = [0u8; 16];
        o[0] = 0xfd;
        o[15] = last;
        Addr::from_v6(o)
    }

    #[test]
    fn default_seed_is_vipgate1() {
        assert_eq!(DEFAULT_SEED, 0x7669_7067_6174_6531);
    }

    // Golden values computed independently of this code (python-xxhash 4.1.0,
    // `xxh3_64_intdigest(bytes, seed)`) over the byte layouts documented at
    // the top of the module. If one of these fails, cross-gateway agreement
    // is broken: do not update the constant without a migration plan.

    #[test]
    fn flow_hash_golden_v4() {
        assert_eq!(flow_hash(&tuple(), DEFAULT_SEED), GOLDEN_FLOW_V4_DEFAULT);
        assert_eq!(flow_hash(&tuple(), 0), GOLDEN_FLOW_V4_ZERO);
    }

    #[test]
    fn flow_hash_golden_v6_udp() {
        let t = Tuple {
            src: v6(0x10),
            dst: v6(0x01),
            sport: 53000,
            dport: 53,
            proto: Proto::Udp,
        };
        assert_eq!(flow_hash(&t, DEFAULT_SEED), GOLDEN_FLOW_V6_DEFAULT);
    }

    #[test]
    fn client_hash_golden() {
        let c = Addr::from_v4([198, 18, 0, 10]);
        assert_eq!(client_hash(&c, DEFAULT_SEED), GOLDEN_CLIENT_V4_DEFAULT);
        assert_eq!(client_hash(&v6(0x10), 7), GOLDEN_CLIENT_V6_SEVEN);
    }

    #[test]
    fn backend_hashes_golden() {
        let a = Addr::from_v4([198, 18, 1, 5]);
        let h = backend_hashes(&a, 8080, DEFAULT_SEED);
        assert_eq!((h.offset, h.skip, h.shift), GOLDEN_BACKEND_V4_DEFAULT);
    }

    #[test]
    fn shuffle_hash_golden() {
        assert_eq!(
            shuffle_hash(4_093, 17, DEFAULT_SEED),
            GOLDEN_SHUFFLE_DEFAULT
        );
        assert_eq!(shuffle_hash(65_537, 65_536, 0), GOLDEN_SHUFFLE_ZERO);
    }

    #[test]
    fn every_field_moves_the_flow_hash() {
        let base = tuple();
        let h = flow_hash(&base, DEFAULT_SEED);
        let variants = [
            Tuple {
                src: Addr::from_v4([198, 18, 0, 11]),
                ..base
            },
            Tuple {
                dst: Addr::from_v4([198, 19, 0, 2]),
                ..base
            },
            Tuple {
                sport: 40001,
                ..base
            },
            Tuple { dport: 81, ..base },
            Tuple {
                proto: Proto::Udp,
                ..base
            },
            // Swapping ports must not collide: the layout is ordered.
            Tuple {
                sport: base.dport,
                dport: base.sport,
                ..base
            },
        ];
        for v in variants {
            assert_ne!(flow_hash(&v, DEFAULT_SEED), h, "{v:?}");
        }
        assert_ne!(flow_hash(&base, DEFAULT_SEED ^ 1), h);
    }

    #[test]
    fn backend_hashes_differ_and_depend_on_port() {
        let a = Addr::from_v4([198, 18, 1, 5]);
        let h = backend_hashes(&a, 8080, DEFAULT_SEED);
        assert!(h.offset != h.skip && h.skip != h.shift && h.offset != h.shift);
        let h2 = backend_hashes(&a, 8081, DEFAULT_SEED);
        assert!(h.offset != h2.offset && h.skip != h2.skip && h.shift != h2.shift);
    }

    const GOLDEN_FLOW_V4_DEFAULT: u64 = 0x93c4_2641_54dc_2dec;
    const GOLDEN_FLOW_V4_ZERO: u64 = 0xf85c_dbcc_e1c9_c92b;
    const GOLDEN_FLOW_V6_DEFAULT: u64 = 0x0f4f_58e6_4607_43f4;
    const GOLDEN_CLIENT_V4_DEFAULT: u64 = 0x7a13_a47f_98f3_a9ec;
    const GOLDEN_CLIENT_V6_SEVEN: u64 = 0xd719_463a_e0d0_8f7c;
    const GOLDEN_BACKEND_V4_DEFAULT: (u64, u64, u64) = (
        0xcbd4_52c4_570d_b6d8,
        0xf55f_a102_bfde_1d58,
        0x03b5_bcc8_8ede_bcef,
    );
    const GOLDEN_SHUFFLE_DEFAULT: u64 = 0xa450_ecbc_92a9_a779;
    const GOLDEN_SHUFFLE_ZERO: u64 = 0x3733_bcbf_434f_6b30;
}
