//! Latency of creating a container cgroup with typical resources, and removing it,
//! on this host's real hierarchies (needs root). Cgroups are named
//! `berth-bench-<pid>-<n>` relative to the bench's own cgroup and removed in every
//! iteration.

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_cgroups::{CgroupManager, CgroupPath, Layout};
use criterion::{Criterion, criterion_group, criterion_main};
use oci_spec::runtime::LinuxResources;

static N: AtomicUsize = AtomicUsize::new(0);

fn next_path() -> CgroupPath {
    let name = format!(
        "berth-bench-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    CgroupPath::from_spec(Some(Path::new(&name)), "bench").expect("valid path")
}

struct Remove(Option<CgroupManager>);

impl Drop for Remove {
    fn drop(&mut self) {
        if let Some(cg) = self.0.take() {
            if let Err(e) = cg.remove(Duration::from_secs(5)) {
                eprintln!("bench cleanup: {e}");
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let layout = Layout::detect().expect("a cgroup layout");
    let resources: LinuxResources = serde_json::from_str(
        r#"{"memory": {"limit": 268435456, "swap": 268435456},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
            "pids": {"limit": 128},
            "devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}"#,
    )
    .expect("resources");
    let mut g = c.benchmark_group("cgroup");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("create+apply+remove", |b| {
        b.iter(|| {
            let (cg, w) =
                CgroupManager::create(&layout, &next_path(), Some(&resources)).expect("create");
            let guard = Remove(Some(cg));
            black_box(w);
            drop(guard);
        })
    });
    g.bench_function("create+remove (no resources)", |b| {
        b.iter(|| {
            let (cg, _) = CgroupManager::create(&layout, &next_path(), None).expect("create");
            drop(Remove(Some(cg)));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
