//! Writes the seed corpus (`seeds.rs` in the library) to `corpus/<target>/`.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in ["pipeline", "conntrack"] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in vipgate_fuzz::seeds::seeds(target) {
            std::fs::write(dir.join(name), bytes)?;
        }
        println!("{}", dir.display());
    }
    Ok(())
}
