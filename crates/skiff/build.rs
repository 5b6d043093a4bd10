//! Links the `skiff` binary as a position-dependent executable on Linux.
//!
//! The runtime starts one supervisor per container by re-executing this
//! binary. As a PIE, every exec had the dynamic loader apply ~88k relative
//! relocations (vtables, string tables and other pointers in
//! `.data.rel.ro`), copying ~400 pages of the image on write: ~0.75 ms of the
//! ~1.75 ms of CPU from exec to `main` (perf stat, release build). Linked at
//! a fixed address those pointers are final in the file and the pages stay
//! shared with the page cache. The objects are still compiled
//! position-independent (only this binary's final link changes), so the rest
//! of the workspace and its tests build as before. The cost is address-space
//! layout randomisation of the binary's own image (heap, stacks and shared
//! libraries stay randomised); k3s and most Go binaries ship the same way.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-link-arg-bin=skiff=-no-pie");
    }
}
