//! `vipgate run --io af-packet` in a veth lab: TCP, UDP and IPv6 through
//! VIPs, rejects for a VIP without endpoints, the gateway still pingable,
//! a clean SIGTERM exit and no namespace left. Root only (loud skip).

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}

#[test]
fn af_packet_gateway_serves_the_lab() {
    common::lab_test::scenario("af-packet");
}
