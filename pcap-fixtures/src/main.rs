//! `gen-fixtures [--out DIR]`: writes every fixture (default: the crate dir).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut out = fixtures::fixtures_dir();
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--out", Some(dir)) => out = PathBuf::from(dir),
            _ => {
                eprintln!("usage: gen-fixtures [--out DIR]");
                return ExitCode::from(2);
            }
        }
    }
    if let Err(e) = std::fs::create_dir_all(&out).and_then(|()| fixtures::generate_all(&out)) {
        eprintln!("gen-fixtures: writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!("fixtures written to {}", out.display());
    ExitCode::SUCCESS
}
