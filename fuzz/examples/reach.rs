//! What a pipeline corpus reaches: the summed counters of every input
//! (verdicts, drop reasons, flows), e.g. of an AFL queue after a campaign.
//!
//! `cargo run --release --example reach -- fuzz/out/pipeline/default/queue`

fn main() {
    let args: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let mut total = dataplane::counters::Counters::default();
    let files = vipgate_fuzz::replay::inputs(&args).expect("reading the inputs");
    for f in &files {
        let data = std::fs::read(f).expect("reading an input");
        total.add(&vipgate_fuzz::pipeline::run(&data));
    }
    println!("{} inputs: {total:?}", files.len());
}
