//! The bundled demo (`pcap-fixtures/demo.pcap` and its services file),
//! compiled into the binary so `vipgate replay` works from any directory.

pub const DEMO_PCAP: &[u8] = include_bytes!("../../pcap-fixtures/demo.pcap");
pub const DEMO_SERVICES: &str = include_str!("../../pcap-fixtures/demo-services.yaml");
pub const DEMO_PCAP_NAME: &str = "pcap-fixtures/demo.pcap (built in)";
pub const DEMO_SERVICES_NAME: &str = "pcap-fixtures/demo-services.yaml (built in)";
