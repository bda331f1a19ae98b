//! The `conntrack` fuzz target (see the library's `conntrack` module).

fn main() {
    vipgate_fuzz::main("conntrack", vipgate_fuzz::conntrack::run);
}
