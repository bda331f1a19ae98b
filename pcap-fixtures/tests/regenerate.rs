//! The committed fixture files are exactly what the generator writes now,
//! and writing them twice gives the same bytes.

use std::fs;
use std::path::{Path, PathBuf};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("vipgate-fixtures-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn committed_files_match_a_fresh_run() {
    let tmp = TempDir::new("regen");
    fixtures::generate_all(&tmp.0).unwrap();
    let generated = files(&tmp.0);
    assert!(generated.len() >= 4, "{generated:?}");
    for name in &generated {
        let fresh = fs::read(tmp.0.join(name)).unwrap();
        let committed = fs::read(fixtures::fixtures_dir().join(name)).unwrap_or_else(|e| {
            panic!("{name} is not committed ({e}); run `cargo run -p vipgate-fixtures`")
        });
        assert!(
            fresh == committed,
            "{name} differs from a fresh run ({} vs {} bytes); regenerate with `cargo run -p vipgate-fixtures` and review the diff",
            fresh.len(),
            committed.len()
        );
    }
}

#[test]
fn two_runs_write_identical_bytes() {
    let a = TempDir::new("run-a");
    let b = TempDir::new("run-b");
    fixtures::generate_all(&a.0).unwrap();
    fixtures::generate_all(&b.0).unwrap();
    assert_eq!(files(&a.0), files(&b.0));
    for name in files(&a.0) {
        assert!(
            fs::read(a.0.join(&name)).unwrap() == fs::read(b.0.join(&name)).unwrap(),
            "{name}"
        );
    }
}
