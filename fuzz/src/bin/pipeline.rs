//! The `pipeline` fuzz target (see the library's `pipeline` module).

fn main() {
    vipgate_fuzz::main("pipeline", |data| {
        vipgate_fuzz::pipeline::run(data);
    });
}
