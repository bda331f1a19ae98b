//! Both I/O modes in a lab with tx checksum, TSO, GSO and GRO off on every
//! veth (what earlier labs did): every frame fits the MTU and carries a
//! full checksum, so every frame vipgate sends toward the backends must
//! pass tshark's validation with none left partial. Root only (loud skip).

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}

use bench::lab::{Offloads, DEFAULT_MTU};

#[test]
fn af_packet_with_offloads_off() {
    common::lab_test::scenario_in("af-packet", Offloads::Off, DEFAULT_MTU);
}

#[test]
fn af_xdp_with_offloads_off() {
    common::lab_test::scenario_in("af-xdp", Offloads::Off, DEFAULT_MTU);
}
