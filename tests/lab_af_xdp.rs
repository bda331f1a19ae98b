//! `vipgate run --io af-xdp` in a veth lab: TCP, UDP and IPv6 through
//! VIPs, rejects for a VIP without endpoints, the gateway still pingable
//! (the steering program passes non-service traffic), a clean SIGTERM exit
//! with the XDP program detached and no namespace left. Root only.

mod common {
    #[allow(dead_code)]
    pub mod bulk;
    #[allow(dead_code)]
    pub mod capture;
    #[allow(dead_code)]
    pub mod lab_test;
}

#[test]
fn af_xdp_gateway_serves_the_lab() {
    common::lab_test::scenario("af-xdp");
}
