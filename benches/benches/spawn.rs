//! Spawn latency: create + start + wait + delete of `/bin/true` from the default
//! `berth spec` config (terminal off), as one iteration. Needs root.
//!
//! Compare with crun and runc on the same bundle with `benches/compare.sh` (hyperfine).

use criterion::{Criterion, criterion_group, criterion_main};

use berth_runtime_core::{CreateOptions, Runtime};

#[path = "../../oci-runtime-core/tests/common/mod.rs"]
mod common;

fn spawn(c: &mut Criterion) {
    let bundle = common::Bundle::new();
    bundle.write();
    let root = common::TempDir::new("berth-bench-root");
    let rt = Runtime::new(root.path());
    let opts = CreateOptions::new(bundle.path().to_path_buf());
    let mut g = c.benchmark_group("spawn");
    g.sample_size(200);
    g.bench_function("create_start_wait_delete_true", |b| {
        b.iter(|| {
            let c = rt.create("bench", &opts).expect("create");
            rt.start("bench").expect("start");
            assert_eq!(c.wait().expect("wait"), 0);
            rt.delete("bench", false).expect("delete");
        })
    });
    g.finish();
}

criterion_group!(benches, spawn);
criterion_main!(benches);
