//! Replaying inputs without AFL: a crash file from `fuzz/out/<target>/
//! default/crashes/`, or a whole corpus directory, through a plain
//! (uninstrumented) build, with the panic message and backtrace as usual.
//!
//! `cargo run --release --manifest-path fuzz/Cargo.toml --bin pipeline -- FILE|DIR...`

use std::panic;
use std::path::{Path, PathBuf};
use std::process::exit;

use crate::Target;

/// Runs `target` on every input named by `args` (files, or directories of
/// files); exits 1 if any panicked, 2 on a usage or read error.
pub fn main(name: &str, target: Target) {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.is_empty() {
        eprintln!(
            "usage: {name} FILE|DIR...   (replays inputs; built with `cargo afl build` it fuzzes)"
        );
        exit(2);
    }
    let files = match inputs(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{name}: {e}");
            exit(2);
        }
    };
    let mut crashed = 0;
    for f in &files {
        match std::fs::read(f) {
            Ok(data) => {
                if !run(target, &data) {
                    eprintln!("{name}: CRASH {}", f.display());
                    crashed += 1;
                }
            }
            Err(e) => {
                eprintln!("{name}: {}: {e}", f.display());
                exit(2);
            }
        }
    }
    println!("{name}: {} inputs, {crashed} crashed", files.len());
    exit(i32::from(crashed > 0));
}

/// Runs one input; false if it panicked (the panic hook has printed why).
pub fn run(target: Target, data: &[u8]) -> bool {
    panic::catch_unwind(|| target(data)).is_ok()
}

/// The input files under `paths`, directories listed in name order. AFL's
/// README.txt files in its output directories are not inputs.
pub fn inputs(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            v.retain(|f| f.is_file() && !is_readme(f));
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn is_readme(f: &Path) -> bool {
    f.file_name().is_some_and(|n| n == "README.txt")
}
