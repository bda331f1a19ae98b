//! AF_XDP transmit for `vipgate send`.

use crate::send::{Frames, SendConfig, SendStats};

/// Sends `frames` on an AF_XDP tx ring.
pub fn send(_frames: &mut Frames, cfg: &SendConfig) -> Result<SendStats, String> {
    Err(format!(
        "{}: AF_XDP transmit is not available in this build; use --io af_packet",
        cfg.iface
    ))
}
