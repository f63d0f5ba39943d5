//! Links the `berth` binary as a static PIE on glibc Linux: each `berth` command is a fresh
//! process, and without shared libraries to find, map and bind there is less to do before
//! `main` (benches/compare.sh measured the difference). berth needs nothing glibc loads at run
//! time (no NSS lookups: users are read from the container's own /etc/passwd).
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" && std::env::var_os("BERTH_DYNAMIC").is_none() {
        println!("cargo:rustc-link-arg-bins=-static-pie");
    }
    println!("cargo:rerun-if-env-changed=BERTH_DYNAMIC");
}
