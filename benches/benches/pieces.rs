//! The pieces of the spawn path that were optimised, one benchmark each (issue 11): loading
//! and validating the default `berth spec` config (done once per `create`; the CLI reads only
//! `process.terminal` besides), and a container's cgroup made (one mkdir per hierarchy, no
//! stat first) and removed when empty (one rmdir per hierarchy, no freezing). The cgroup
//! benchmark needs root and writes below `/berth-bench` of every hierarchy of this host.
//!
//!     sudo cargo bench -p berth-benches --bench pieces

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use berth_runtime_core::berth_cgroups::{CgroupManager, CgroupPath, Layout, devices};
use berth_runtime_core::validate;

#[path = "../../oci-runtime-core/tests/common/mod.rs"]
mod common;

fn config(c: &mut Criterion) {
    let bundle = common::Bundle::new();
    bundle.write();
    c.bench_function("config/load_and_validate_default_spec", |b| {
        b.iter(|| {
            let spec = validate::load_bundle_config(bundle.path()).expect("load");
            validate::validate(&spec, bundle.path()).expect("validate");
        })
    });
}

fn cgroup(c: &mut Criterion) {
    if !nix_is_root() {
        eprintln!("cgroup benchmark skipped: needs root");
        return;
    }
    let layout = Layout::detect().expect("cgroup layout");
    let path = CgroupPath::Absolute("/berth-bench/c".into());
    // The device rules every container gets: the writes a create always makes.
    let resources = devices::with_defaults(None);
    let mut g = c.benchmark_group("cgroup");
    g.sample_size(100);
    g.bench_function("create_with_default_devices_then_remove_if_empty", |b| {
        b.iter(|| {
            let (cg, _) = CgroupManager::create(&layout, &path, Some(&resources)).expect("create");
            if !cg.remove_if_empty().expect("rmdir") {
                cg.remove(Duration::from_secs(1)).expect("remove");
            }
        })
    });
    g.finish();
    if let Ok((cg, _)) = CgroupManager::create(&layout, &path, None) {
        let _ = cg.remove(Duration::from_secs(1));
        for (_, dir) in cg.paths() {
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

criterion_group!(benches, config, cgroup);
criterion_main!(benches);
