//! Benchmarks for berth live in `benches/` (run `cargo bench -p berth-benches`); this crate
//! has no library code of its own.
