//! Fuzz targets for the vipgate dataplane, run by AFL++ through the `afl`
//! crate on the stable toolchain (`cargo afl build`, `cargo afl fuzz`;
//! cargo-fuzz needs nightly). Each target is a plain function of the input
//! bytes that panics when an invariant breaks, so the same code runs under
//! AFL, in a plain replay of a crash file, and in `cargo test`.
//!
//! - `pipeline`: bursts of frames through `Pipeline` (see `pipeline.rs`).
//! - `conntrack`: table operations against a model (see `conntrack.rs`).
//!
//! Fuzzing is in memory only: nothing here opens a socket.

pub mod conntrack;
pub mod csum;
pub mod frame;
pub mod gen;
pub mod input;
pub mod pipeline;
pub mod replay;
pub mod scenario;
pub mod seeds;
pub mod verify;
pub mod walk;

/// A fuzz target: runs one input, panics on a broken invariant.
pub type Target = fn(&[u8]);

/// The `main` of a target binary. Built by `cargo afl build` (which sets
/// `--cfg fuzzing`) it is AFL++'s persistent loop; built plainly it replays
/// the files and directories named on its command line.
pub fn main(name: &str, target: Target) {
    #[cfg(fuzzing)]
    {
        let _ = name;
        afl::fuzz(true, |data| target(data));
    }
    #[cfg(not(fuzzing))]
    replay::main(name, target);
}
