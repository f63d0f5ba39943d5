//! Links the `berth` CLI as a position-dependent executable (`-no-pie`) on Linux.
//!
//! `berth` is a short-lived process run once per container operation, and its start is part
//! of every container's spawn time. As a PIE, the dynamic loader applies about 16,000
//! relative relocations at each start, which write (copy-on-write) about 80 pages of
//! `.data.rel.ro`: half of the page faults of `berth --version`. Linked at a fixed address it
//! has none of them (benches/compare.sh: about 0.25 ms of a 6 ms `run`). The libraries keep
//! their ASLR, as do the stack, heap and mmaps; the Go binaries of runc and containerd ship
//! position-dependent too. Set `BERTH_PIE=1` at build time to link a PIE instead.

fn main() {
    println!("cargo:rerun-if-env-changed=BERTH_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if linux && std::env::var_os("BERTH_PIE").is_none() {
        println!("cargo:rustc-link-arg-bin=berth=-no-pie");
        // The shim stays resident per container or pod: no relocated (dirty) pages either.
        println!("cargo:rustc-link-arg-bin=containerd-shim-berth-v2=-no-pie");
    }
}
