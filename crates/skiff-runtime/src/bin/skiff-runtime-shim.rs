//! The container supervisor as a standalone binary (tests use it; the `skiff`
//! binary exposes the same entry point as `skiff runtime-shim`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(skiff_runtime::shim::main(&args));
}
