//! cgroup v2 controller files (cpu, cpuset, memory, io, pids, hugetlb, rdma) against a
//! fake cgroup2 tree in a temporary directory: this host's cgroup2 cannot enable those
//! controllers. The manager writes the same files it would write on a real host; the
//! tests read them back and check every v1 -> v2 conversion.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_cgroups::{CgroupError, CgroupManager, CgroupPath, Layout, MemoryEvents};
use common::*;

const MIB: i64 = 1 << 20;

const LEAF_FILES: &[(&str, &str)] = &[
    ("cgroup.procs", ""),
    ("cgroup.events", "populated 0\nfrozen 0\n"),
    ("cgroup.freeze", "0\n"),
    ("cgroup.max.depth", "max\n"),
    ("cpu.weight", "100\n"),
    ("cpu.max", "max 100000\n"),
    ("cpu.max.burst", "0\n"),
    ("cpu.idle", "0\n"),
    (
        "cpu.stat",
        "usage_usec 5\nuser_usec 3\nsystem_usec 2\nnr_periods 7\nnr_throttled 1\nthrottled_usec 9\n",
    ),
    ("cpuset.cpus", "\n"),
    ("cpuset.mems", "\n"),
    ("memory.max", "max\n"),
    ("memory.low", "0\n"),
    ("memory.high", "max\n"),
    ("memory.swap.max", "max\n"),
    ("memory.current", "100000000\n"),
    ("memory.peak", "120000000\n"),
    ("memory.swap.current", "4096\n"),
    ("memory.stat", "anon 10\nfile 20\nkernel 30\n"),
    ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"),
    ("io.weight", "default 100\n"),
    ("io.max", ""),
    (
        "io.stat",
        "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n",
    ),
    ("pids.max", "max\n"),
    ("pids.current", "3\n"),
    ("hugetlb.2MB.max", "max\n"),
    ("hugetlb.2MB.rsvd.max", "max\n"),
    ("hugetlb.2MB.current", "2097152\n"),
    ("hugetlb.2MB.events", "max 4\n"),
    ("hugetlb.1GB.max", "max\n"),
    ("rdma.max", ""),
];

/// The fake root's `cgroup.subtree_control` once a container cgroup is made below it: every
/// controller of its `cgroup.controllers`, as runc and crun enable them on a pure v2 host.
const ALL_ON: &str = "+cpuset +cpu +io +memory +hugetlb +pids +rdma +misc";

struct Fake {
    tmp: TempDir,
    layout: Layout,
    path: CgroupPath,
    leaf: PathBuf,
}

impl Fake {
    /// A fake cgroup2 root; with `precreate` the container's directory exists with
    /// its files, as the kernel would show them after mkdir.
    fn new(what: &str, precreate: bool, extra: &[(&str, &str)]) -> Self {
        let tmp = TempDir::new(what);
        let root = tmp.0.clone();
        fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        )
        .unwrap();
        fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        fs::write(root.join("cgroup.procs"), "").unwrap();
        let name = unique(what);
        let leaf = root.join(&name);
        if precreate {
            fs::create_dir(&leaf).unwrap();
            for (f, v) in LEAF_FILES.iter().chain(extra) {
                fs::write(leaf.join(f), v).unwrap();
            }
        }
        let layout = Layout::unified_at(&root).unwrap();
        let path = CgroupPath::from_spec(Some(Path::new(&name)), "x").unwrap();
        Self {
            tmp,
            layout,
            path,
            leaf,
        }
    }

    fn create(&self, json: &str) -> (CgroupManager, Vec<berth_cgroups::Warning>) {
        CgroupManager::create(&self.layout, &self.path, Some(&res(json))).unwrap()
    }
}

#[test]
fn every_field_is_converted_and_written() {
    let f = Fake::new("fakeall", true, &[]);
    let (_cg, w) = f.create(&format!(
        r#"{{
        "cpu": {{"shares": 1024, "quota": 50000, "period": 100000, "burst": 2000,
                "cpus": "0-1", "mems": "0", "idle": 1}},
        "memory": {{"limit": {lim}, "reservation": {res}, "swap": {swap}}},
        "pids": {{"limit": 100}},
        "blockIO": {{"weight": 500,
            "throttleReadBpsDevice": [{{"major": 8, "minor": 0, "rate": 1048576}}]}},
        "hugepageLimits": [{{"pageSize": "2MB", "limit": 4194304}},
                           {{"pageSize": "1GB", "limit": -1}}],
        "rdma": {{"mlx5_0": {{"hcaHandles": 3}}}},
        "unified": {{"memory.high": "50000000"}}
    }}"#,
        lim = 64 * MIB,
        res = 32 * MIB,
        swap = 96 * MIB
    ));
    assert!(w.is_empty(), "{w:?}");
    let d = &f.leaf;
    assert_eq!(read(d, "cpu.weight"), "39");
    assert_eq!(read(d, "cpu.max"), "50000 100000");
    assert_eq!(read(d, "cpu.max.burst"), "2000");
    assert_eq!(read(d, "cpu.idle"), "1");
    assert_eq!(read(d, "cpuset.cpus"), "0-1");
    assert_eq!(read(d, "cpuset.mems"), "0");
    assert_eq!(read(d, "memory.max"), (64 * MIB).to_string());
    assert_eq!(read(d, "memory.low"), (32 * MIB).to_string());
    assert_eq!(read(d, "memory.swap.max"), (32 * MIB).to_string());
    assert_eq!(read(d, "memory.high"), "50000000");
    assert_eq!(read(d, "pids.max"), "100");
    assert_eq!(read(d, "io.weight"), "4950");
    assert_eq!(read(d, "io.max"), "8:0 rbps=1048576");
    assert_eq!(read(d, "hugetlb.2MB.max"), "4194304");
    assert_eq!(read(d, "hugetlb.2MB.rsvd.max"), "4194304");
    assert_eq!(read(d, "hugetlb.1GB.max"), "max");
    assert_eq!(read(d, "rdma.max"), "mlx5_0 hca_handle=3 hca_object=max");
    // The controllers written to were enabled in the parent.
    let sc = read(&f.tmp.0, "cgroup.subtree_control");
    for c in ["cpu", "cpuset", "memory", "io", "pids", "hugetlb", "rdma"] {
        assert!(
            sc.split(' ').any(|x| x == format!("+{c}")),
            "{c} not enabled: {sc}"
        );
    }
}

#[test]
fn partial_updates_keep_the_rest() {
    let f = Fake::new("fakeupd", true, &[]);
    let (cg, _) = f.create(r#"{"cpu": {"quota": 50000, "period": 100000}}"#);
    let d = &f.leaf;
    cg.update(&res(r#"{"cpu": {"period": 200000}}"#)).unwrap();
    assert_eq!(read(d, "cpu.max"), "50000 200000");
    cg.update(&res(r#"{"cpu": {"quota": -1}}"#)).unwrap();
    assert_eq!(read(d, "cpu.max"), "max 200000");
    // Swap alone converts against the current memory.max.
    cg.update(&res(r#"{"memory": {"limit": 1048576}}"#))
        .unwrap();
    cg.update(&res(r#"{"memory": {"swap": 3145728}}"#)).unwrap();
    assert_eq!(read(d, "memory.swap.max"), "2097152");
    cg.update(&res(r#"{"memory": {"limit": -1, "swap": -1}}"#))
        .unwrap();
    assert_eq!(read(d, "memory.max"), "max");
    assert_eq!(read(d, "memory.swap.max"), "max");
    cg.update(&res(r#"{"pids": {"limit": 0}}"#)).unwrap();
    assert_eq!(read(d, "pids.max"), "max");
    cg.update(&res(
        r#"{"blockIO": {"weightDevice": [{"major": 8, "minor": 16, "weight": 100}]}}"#,
    ))
    .unwrap();
    assert_eq!(read(d, "io.weight"), "8:16 910");
    cg.update(&res(
        r#"{"blockIO": {"throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 0}]}}"#,
    ))
    .unwrap();
    assert_eq!(read(d, "io.max"), "8:0 wiops=max");
    cg.update(&res(r#"{"cpu": {"shares": 262144}}"#)).unwrap();
    assert_eq!(read(d, "cpu.weight"), "10000");
}

#[test]
fn bfq_weights_are_not_converted() {
    let f = Fake::new("fakebfq", true, &[("io.bfq.weight", "default 100\n")]);
    let (cg, _) = f.create(r#"{"blockIO": {"weight": 500}}"#);
    assert_eq!(read(&f.leaf, "io.bfq.weight"), "500");
    cg.update(&res(
        r#"{"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 100}]}}"#,
    ))
    .unwrap();
    assert_eq!(read(&f.leaf, "io.bfq.weight"), "8:0 100");
}

#[test]
fn fields_v2_cannot_enforce_warn_and_the_rest_applies() {
    let f = Fake::new("fakewarn", true, &[]);
    let (_cg, w) = f.create(
        r#"{"memory": {"limit": 1048576, "kernel": 1, "kernelTCP": 2, "swappiness": 10,
                       "disableOOMKiller": true, "useHierarchy": false},
            "blockIO": {"leafWeight": 300,
                        "weightDevice": [{"major": 8, "minor": 0, "leafWeight": 20}]}}"#,
    );
    let mut fields: Vec<&str> = w.iter().map(|w| w.field.as_str()).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "blockIO.leafWeight",
            "blockIO.weightDevice[0].leafWeight",
            "memory.disableOOMKiller",
            "memory.kernel",
            "memory.kernelTCP",
            "memory.swappiness",
            "memory.useHierarchy"
        ]
    );
    assert_eq!(read(&f.leaf, "memory.max"), "1048576");
}

/// Docker's zero values for "not set" write nothing on v2 either (as runc's v2 manager).
#[test]
fn docker_zero_values_write_nothing() {
    let f = Fake::new("fakezero", true, &[]);
    let (_cg, w) = f.create(
        r#"{"cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""},
            "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0,
                       "swappiness": 18446744073709551615},
            "pids": {"limit": 0},
            "blockIO": {"weight": 0, "leafWeight": 0,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 0}]}}"#,
    );
    assert!(w.is_empty(), "{w:?}");
    for (file, untouched) in [
        ("cpu.weight", "100"),
        ("cpu.max", "max 100000"),
        ("cpuset.cpus", ""),
        ("memory.max", "max"),
        ("memory.low", "0"),
        ("memory.swap.max", "max"),
        ("pids.max", "max"),
        ("io.weight", "default 100"),
    ] {
        assert_eq!(read(&f.leaf, file), untouched, "{file}");
    }
    assert_eq!(read(&f.tmp.0, "cgroup.subtree_control"), ALL_ON);
}

#[test]
fn invalid_values_fail_before_any_write() {
    let f = Fake::new("fakeinval", true, &[]);
    let layout = &f.layout;
    for (json, field) in [
        (
            r#"{"pids": {"limit": 5}, "cpu": {"realtimeRuntime": 1000}}"#,
            "cpu.realtimeRuntime",
        ),
        (
            r#"{"pids": {"limit": 5}, "cpu": {"realtimePeriod": 1000}}"#,
            "cpu.realtimePeriod",
        ),
        (
            r#"{"pids": {"limit": 5}, "memory": {"swap": 1048576}}"#,
            "memory.swap",
        ),
        (
            r#"{"pids": {"limit": 5}, "memory": {"limit": 2097152, "swap": 1048576}}"#,
            "memory.swap",
        ),
        (
            r#"{"pids": {"limit": 5}, "memory": {"limit": -2}}"#,
            "memory.limit",
        ),
        (
            r#"{"pids": {"limit": 5}, "memory": {"swappiness": 101}}"#,
            "memory.swappiness",
        ),
        (
            r#"{"pids": {"limit": 5}, "hugepageLimits": [{"pageSize": "2XB", "limit": 1}]}"#,
            "hugepageLimits[0].pageSize",
        ),
        (
            r#"{"pids": {"limit": 5}, "hugepageLimits": [{"pageSize": "64KB", "limit": 1}]}"#,
            "hugetlb.64KB.max",
        ),
        (
            r#"{"pids": {"limit": 5}, "network": {"classID": 1}}"#,
            "net_cls",
        ),
        (
            r#"{"pids": {"limit": 5}, "devices": [{"allow": false}]}"#,
            "devices[0].access",
        ),
        (
            r#"{"pids": {"limit": 5}, "blockIO": {"throttleReadBpsDevice": [{"major": -1, "minor": 0, "rate": 1}]}}"#,
            "throttleReadBpsDevice[0]",
        ),
        (
            r#"{"pids": {"limit": 5}, "devices": [{"allow": true, "access": "q"}]}"#,
            "devices[0].access",
        ),
        (
            r#"{"pids": {"limit": 5}, "rdma": {"bad name": {}}}"#,
            "rdma.bad name",
        ),
        (
            r#"{"pids": {"limit": 5}, "unified": {"nosuch.file": "1"}}"#,
            "unified.nosuch.file",
        ),
    ] {
        let e = CgroupManager::create(layout, &f.path, Some(&res(json)))
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains(field), "{json}: {e}");
        assert_eq!(read(&f.leaf, "pids.max"), "max", "{json} wrote pids.max");
    }
    // The ancestors' controllers stay enabled (as with runc); the leaf got no write.
    assert_eq!(read(&f.tmp.0, "cgroup.subtree_control"), ALL_ON);
}

#[test]
fn a_missing_file_names_it_and_the_new_cgroup_is_removed() {
    let f = Fake::new("fakemissing", false, &[]);
    let e = CgroupManager::create(&f.layout, &f.path, Some(&res(r#"{"pids": {"limit": 9}}"#)))
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, CgroupError::Write { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{}", f.leaf.join("pids.max").display())),
        "{msg}"
    );
    assert!(msg.contains("\"9\""), "{msg}");
    assert!(!f.leaf.exists(), "the half-made cgroup was left behind");
}

#[test]
fn check_before_update_compares_with_memory_current() {
    let f = Fake::new("fakecheck", true, &[]);
    let (cg, _) = f.create(r#"{"memory": {"limit": 200000000}}"#);
    let e = cg
        .update(&res(
            r#"{"memory": {"limit": 10000000, "checkBeforeUpdate": true}}"#,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("memory.current"), "{e}");
    assert_eq!(read(&f.leaf, "memory.max"), "200000000");
    // Not an update, or no check asked: written as given.
    cg.apply(&res(
        r#"{"memory": {"limit": 10000000, "checkBeforeUpdate": true}}"#,
    ))
    .unwrap();
    assert_eq!(read(&f.leaf, "memory.max"), "10000000");
}

#[test]
fn stats_and_oom_events_from_v2_files() {
    let f = Fake::new("fakestats", true, &[]);
    let (cg, _) = f.create("{}");
    let s = cg.stats().unwrap();
    assert_eq!(s.cpu.usage_total_ns, 5000);
    assert_eq!(s.cpu.usage_user_ns, 3000);
    assert_eq!(s.cpu.usage_kernel_ns, 2000);
    assert_eq!(s.cpu.periods, 7);
    assert_eq!(s.cpu.throttled_periods, 1);
    assert_eq!(s.cpu.throttled_time_ns, 9000);
    assert_eq!(s.memory.usage, 100_000_000);
    assert_eq!(s.memory.max_usage, 120_000_000);
    assert_eq!(s.memory.limit, u64::MAX);
    assert_eq!(s.memory.swap_usage, 4096);
    assert_eq!(s.memory.kernel_usage, 30);
    assert_eq!(s.memory.cache, 20);
    assert_eq!(s.pids.current, 3);
    assert_eq!(s.pids.limit, u64::MAX);
    assert_eq!(s.blkio.service_bytes.len(), 3);
    assert_eq!(s.blkio.service_bytes[1].op, "Write");
    assert_eq!(s.blkio.service_bytes[1].value, 200);
    assert_eq!(s.blkio.serviced[0].value, 1);
    if berth_cgroups::hugepage_sizes().contains(&"2MB".to_string()) {
        assert_eq!(s.hugetlb["2MB"].usage, 2_097_152);
        assert_eq!(s.hugetlb["2MB"].failcnt, 4);
    }

    let mut w = cg.oom_watcher().unwrap();
    assert_eq!(w.wait(Duration::from_millis(50)).unwrap(), None);
    let events = f.leaf.join("memory.events");
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        fs::write(events, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
    });
    let ev = w.wait(Duration::from_secs(10)).unwrap();
    writer.join().unwrap();
    assert_eq!(
        ev,
        Some(MemoryEvents {
            oom: 1,
            oom_kill: 1
        })
    );
    assert_eq!(
        cg.memory_events().unwrap(),
        MemoryEvents {
            oom: 1,
            oom_kill: 1
        }
    );
    assert_eq!(cg.stats().unwrap().memory.failcnt, 3);
}

#[test]
fn enable_controllers_writes_the_parents_subtree_control() {
    let f = Fake::new("fakeenable", true, &[]);
    let (cg, _) = f.create("{}");
    assert_eq!(read(&f.tmp.0, "cgroup.subtree_control"), ALL_ON);
    // Turned off again by someone else: enabling the ones a runtime needs writes them.
    fs::write(f.tmp.0.join("cgroup.subtree_control"), "").unwrap();
    cg.enable_controllers(&["memory", "pids"]).unwrap();
    assert_eq!(read(&f.tmp.0, "cgroup.subtree_control"), "+memory +pids");
    let e = cg.enable_controllers(&["net_cls"]).unwrap_err().to_string();
    assert!(e.contains("net_cls"), "{e}");
}

#[test]
fn unified_keys_may_name_files_with_upper_case() {
    // The kernel's hugetlb files are hugetlb.<size>.max with an upper-case size.
    let f = Fake::new("fakeunifiedhuge", true, &[]);
    let (_cg, w) = f.create(r#"{"unified": {"hugetlb.2MB.max": "4194304"}}"#);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(read(&f.leaf, "hugetlb.2MB.max"), "4194304");
    let e = CgroupManager::create(
        &f.layout,
        &f.path,
        Some(&res(r#"{"unified": {"Hugetlb.2MB.max": "1"}}"#)),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(e.to_string().contains("lowercase controller"), "{e}");
}
