//! Real cgroup v1 hierarchies of this host (hybrid: v1 controllers + cgroup2 beside).
//! Every test names its cgroup `berth-test-*` relative to the test's own cgroup and
//! removes it (and kills its processes) through a drop guard.

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_cgroups::{CgroupError, CgroupManager, CgroupMode, FreezerState, Layout};
use common::*;

const MIB: i64 = 1 << 20;

fn v1_host() -> Layout {
    let l = Layout::detect().unwrap();
    assert!(
        matches!(l.mode(), CgroupMode::Legacy | CgroupMode::Hybrid),
        "these tests need v1 hierarchies, found {:?}",
        l.mode()
    );
    l
}

/// Whether the kernel has RT group scheduling (CONFIG_RT_GROUP_SCHED): the cpu hierarchy's
/// root has `cpu.rt_period_us`.
fn has_rt_group_sched(layout: &Layout) -> bool {
    layout
        .v1_hierarchies()
        .iter()
        .any(|h| h.has("cpu") && h.mount_point.join("cpu.rt_period_us").exists())
}

/// Without RT group scheduling, `cpu.realtime*` fail and name the file the kernel lacks
/// (runc fails the same way); nothing is left behind.
#[test]
fn realtime_without_rt_group_scheduling_is_an_error() {
    let layout = v1_host();
    if has_rt_group_sched(&layout) {
        eprintln!(
            "SKIP: this kernel has RT group scheduling (tested in every_v1_field_round_trips)"
        );
        return;
    }
    let name = unique("v1rt");
    let path = berth_cgroups::CgroupPath::from_spec(Some(name.as_ref()), "x").unwrap();
    let r = res(r#"{"cpu": {"realtimePeriod": 500000, "realtimeRuntime": 10000}}"#);
    let e = CgroupManager::create(&layout, &path, Some(&r)).unwrap_err();
    assert!(e.to_string().contains("cpu.rt_period_us"), "{e}");
    for d in dirs_of(&layout, &name) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn detect_finds_this_hosts_hierarchies() {
    let l = v1_host();
    let v1 = l.v1_controllers();
    for c in [
        "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
    ] {
        assert!(v1.contains(&c), "{c} missing from {v1:?}");
    }
    assert!(!v1.iter().any(|c| c.starts_with("name=")));
}

/// The v1 file of proportional block I/O weights, if the kernel has one: `blkio.weight`
/// (CFQ, before Linux 5.0) or `blkio.bfq.weight` (BFQ built in or loaded). A probe cgroup
/// is made to look: BFQ shows its files on every cgroup but the root.
fn blkio_weight_file() -> Option<&'static str> {
    // The guard is held while the files are looked at: dropped, it removes the probe.
    let probe = create("v1probe", None);
    let blkio = probe.dir("blkio");
    ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| blkio.join(f).exists())
}

/// Without CFQ or BFQ, `blockIO.weight` and a per-device weight fail naming the field and
/// the files the kernel lacks (runc fails on the missing file too); nothing is left behind.
#[test]
fn blkio_weight_without_a_proportional_scheduler_is_an_error() {
    let layout = v1_host();
    if blkio_weight_file().is_some() {
        eprintln!("SKIP: this kernel has blkio weights (tested in every_v1_field_round_trips)");
        return;
    }
    let disk = a_disk().expect("a block device");
    let (maj, min) = disk.split_once(':').unwrap();
    let name = unique("v1bw");
    let path = berth_cgroups::CgroupPath::from_spec(Some(name.as_ref()), "x").unwrap();
    for (field, r) in [
        (
            "blockIO.weight",
            r#"{"blockIO": {"weight": 300}}"#.to_string(),
        ),
        (
            "blockIO.weightDevice[0]",
            format!(
                r#"{{"blockIO": {{"weightDevice": [{{"major": {maj}, "minor": {min}, "weight": 321}}]}}}}"#
            ),
        ),
    ] {
        let text = match CgroupManager::create(&layout, &path, Some(&res(&r))) {
            Ok((cg, _)) => {
                drop(Guard::new(cg));
                panic!("{field} was taken on a kernel without blkio weights");
            }
            Err(e) => e.to_string(),
        };
        assert!(
            text.contains(field) && text.contains("blkio.bfq.weight"),
            "{text}"
        );
        for d in dirs_of(&layout, &name) {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }
}

#[test]
fn every_v1_field_round_trips() {
    let layout = v1_host();
    let disk = a_disk().expect("a block device");
    // Fields only some hosts have: RT group scheduling (CONFIG_RT_GROUP_SCHED; Debian's
    // kernels have none, see realtime_without_rt_group_scheduling_is_an_error), cgroup2
    // beside v1 (hybrid), a net_cls,net_prio hierarchy.
    let has_rt = has_rt_group_sched(&layout);
    let has_unified = layout.unified().is_some();
    let has_net = layout.v1_controllers().contains(&"net_cls");
    // Block I/O weights need CFQ or BFQ (blkio_weight_without_a_proportional_scheduler_is_an_error).
    let weight_file = blkio_weight_file();
    let weight = if weight_file.is_some() {
        r#""weight": 300,"#
    } else {
        ""
    };
    let rt = if has_rt {
        r#""realtimePeriod": 500000, "realtimeRuntime": 10000,"#
    } else {
        ""
    };
    let unified = if has_unified {
        r#","unified": {"cgroup.max.depth": "5"}"#
    } else {
        ""
    };
    let net = if has_net {
        r#","network": {"classID": 1048577, "priorities": [{"name": "lo", "priority": 5}]}"#
    } else {
        ""
    };
    let r = res(&format!(
        r#"{{
        "cpu": {{"shares": 512, "period": 50000, "quota": 25000, "burst": 1000,
                {rt} "cpus": "0", "mems": "0"}},
        "memory": {{"limit": {lim}, "reservation": {res}, "swap": {swap}, "swappiness": 30,
                   "disableOOMKiller": true, "kernelTCP": {tcp}, "useHierarchy": true}},
        "pids": {{"limit": 42}},
        "blockIO": {{{weight}
            "throttleReadBpsDevice": [{{"major": {maj}, "minor": {min}, "rate": 1048576}}],
            "throttleWriteBpsDevice": [{{"major": {maj}, "minor": {min}, "rate": 2097152}}],
            "throttleReadIOPSDevice": [{{"major": {maj}, "minor": {min}, "rate": 100}}],
            "throttleWriteIOPSDevice": [{{"major": {maj}, "minor": {min}, "rate": 200}}]}},
        "devices": [{{"allow": false, "access": "rwm"}},
                    {{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}},
                    {{"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}}]
        {unified} {net}
    }}"#,
        lim = 64 * MIB,
        res = 32 * MIB,
        swap = 128 * MIB,
        tcp = 16 * MIB,
        maj = disk.split(':').next().unwrap(),
        min = disk.split(':').nth(1).unwrap(),
    ));
    let (cg, warnings) = CgroupManager::create(&layout, &test_path("v1all"), Some(&r)).unwrap();
    let g = Guard::new(cg);
    assert!(warnings.is_empty(), "{warnings:?}");

    let cpu = g.dir("cpu");
    assert_eq!(read(&cpu, "cpu.shares"), "512");
    assert_eq!(read(&cpu, "cpu.cfs_period_us"), "50000");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "25000");
    assert_eq!(read(&cpu, "cpu.cfs_burst_us"), "1000");
    if has_rt {
        assert_eq!(read(&cpu, "cpu.rt_period_us"), "500000");
        assert_eq!(read(&cpu, "cpu.rt_runtime_us"), "10000");
    }
    let cpuset = g.dir("cpuset");
    assert_eq!(read(&cpuset, "cpuset.cpus"), "0");
    assert_eq!(read(&cpuset, "cpuset.mems"), "0");
    let mem = g.dir("memory");
    assert_eq!(read(&mem, "memory.limit_in_bytes"), (64 * MIB).to_string());
    assert_eq!(
        read(&mem, "memory.soft_limit_in_bytes"),
        (32 * MIB).to_string()
    );
    assert_eq!(
        read(&mem, "memory.memsw.limit_in_bytes"),
        (128 * MIB).to_string()
    );
    assert_eq!(read(&mem, "memory.swappiness"), "30");
    assert!(read(&mem, "memory.oom_control").contains("oom_kill_disable 1"));
    assert_eq!(
        read(&mem, "memory.kmem.tcp.limit_in_bytes"),
        (16 * MIB).to_string()
    );
    assert_eq!(read(&mem, "memory.use_hierarchy"), "1");
    assert_eq!(read(&g.dir("pids"), "pids.max"), "42");
    let blkio = g.dir("blkio");
    if let Some(f) = weight_file {
        assert!(read(&blkio, f).ends_with("300"));
    }
    for (f, v) in [
        ("read_bps", 1048576),
        ("write_bps", 2097152),
        ("read_iops", 100),
        ("write_iops", 200),
    ] {
        assert_eq!(
            read(&blkio, &format!("blkio.throttle.{f}_device")),
            format!("{disk} {v}")
        );
    }
    assert_eq!(
        read(&g.dir("devices"), "devices.list"),
        "c 1:3 rwm\nc 1:5 r"
    );
    if has_unified {
        let (_, unified) = g.cg.paths().into_iter().last().unwrap();
        assert_eq!(read(unified, "cgroup.max.depth"), "5");
    }
    if has_net {
        let net = g.dir("net_cls");
        assert_eq!(read(&net, "net_cls.classid"), "1048577");
        assert!(
            read(&net, "net_prio.ifpriomap")
                .lines()
                .any(|l| l == "lo 5")
        );
    }

    // Raising and lowering memory and memory+swap together needs the right order.
    for (lim, swap) in [(256 * MIB, 512 * MIB), (16 * MIB, 32 * MIB), (-1, -1)] {
        let r = res(&format!(
            r#"{{"memory": {{"limit": {lim}, "swap": {swap}}}}}"#
        ));
        g.cg.update(&r).unwrap();
        let want = |v: i64| {
            if v < 0 {
                "9223372036854771712".to_string()
            } else {
                v.to_string()
            }
        };
        assert_eq!(read(&mem, "memory.limit_in_bytes"), want(lim));
        assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), want(swap));
    }

    // cpu.idle separately: an idle group reports a minimal weight.
    g.cg.apply(&res(r#"{"cpu": {"idle": 1}}"#)).unwrap();
    assert_eq!(read(&cpu, "cpu.idle"), "1");
    // Quota -1 means no limit.
    g.cg.apply(&res(r#"{"cpu": {"quota": -1}}"#)).unwrap();
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "-1");
}

#[test]
fn dropped_kernel_features_warn_instead_of_failing() {
    let layout = v1_host();
    let r = res(r#"{"memory": {"kernel": 16777216}, "blockIO": {"leafWeight": 500}}"#);
    let (cg, warnings) = CgroupManager::create(&layout, &test_path("v1warn"), Some(&r)).unwrap();
    let g = Guard::new(cg);
    let blkio = g.dir("blkio");
    let fields: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
    // This kernel accepts writes to memory.kmem.limit_in_bytes but ignores them.
    let kmem = read(&g.dir("memory"), "memory.kmem.limit_in_bytes");
    assert_eq!(
        fields.contains(&"memory.kernel"),
        kmem != "16777216",
        "{warnings:?}"
    );
    assert_eq!(
        fields.contains(&"blockIO.leafWeight"),
        !blkio.join("blkio.leaf_weight").exists(),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .all(|w| w.to_string().contains("linux.resources."))
    );
}

/// Blkio per-device weights need a device whose scheduler is BFQ: a loop device of
/// our own, switched to bfq, detached at the end.
#[test]
fn blkio_weight_device_on_a_bfq_loop_device() {
    let layout = v1_host();
    if blkio_weight_file().is_none() {
        eprintln!(
            "SKIP: this kernel has no BFQ (tested in \
             blkio_weight_without_a_proportional_scheduler_is_an_error)"
        );
        return;
    }
    let tmp = TempDir::new("loop");
    let img = tmp.0.join("disk.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loopdev = String::from_utf8(out.stdout).unwrap().trim().to_string();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).status();
        }
    }
    let _detach = Detach(loopdev.clone());
    let name = loopdev.trim_start_matches("/dev/");
    std::fs::write(format!("/sys/block/{name}/queue/scheduler"), "bfq").unwrap();
    let dev = std::fs::read_to_string(format!("/sys/block/{name}/dev")).unwrap();
    let (maj, min) = dev.trim().split_once(':').unwrap();

    let r = res(&format!(
        r#"{{"blockIO": {{"weightDevice": [{{"major": {maj}, "minor": {min}, "weight": 321}}]}}}}"#
    ));
    let (cg, warnings) = CgroupManager::create(&layout, &test_path("wdev"), Some(&r)).unwrap();
    let g = Guard::new(cg);
    assert!(warnings.is_empty());
    let blkio = g.dir("blkio");
    let file = if blkio.join("blkio.weight_device").exists() {
        "blkio.weight_device"
    } else {
        "blkio.bfq.weight_device"
    };
    assert!(
        read(&blkio, file).contains(&format!("{maj}:{min} 321")),
        "{}",
        read(&blkio, file)
    );
}

#[test]
fn device_rules_are_enforced() {
    let r = res(r#"{"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}]}"#);
    let mut g = create("v1dev", Some(&r));
    let out = g.output_in(
        "read _; head -c1 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; \
         (echo x > /dev/zero) 2>/dev/null || echo zero-write-denied; \
         (head -c1 /dev/full) 2>/dev/null || echo full-denied",
    );
    assert_eq!(out, "1\nnull-ok\nzero-write-denied\nfull-denied\n");
}

#[test]
fn pause_resume_kill_and_remove_a_busy_process() {
    let mut g = create("v1life", None);
    let i = g.spawn_in("read _; while :; do :; done");
    let pid = g.pid(i);
    assert_eq!(g.cg.pids().unwrap(), vec![pid]);
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for (c, dir) in g.cg.paths() {
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert!(own.contains(name), "{c}: {own}");
    }
    eventually(5, "the loop to use CPU", || cpu_ticks(pid) > 0);

    g.cg.freeze().unwrap();
    assert_eq!(g.cg.freezer_state().unwrap(), FreezerState::Frozen);
    assert_eq!(read(&g.dir("freezer"), "freezer.state"), "FROZEN");
    let t1 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(pid), t1, "a frozen process ran");

    g.cg.thaw().unwrap();
    assert_eq!(g.cg.freezer_state().unwrap(), FreezerState::Thawed);
    eventually(5, "the thawed loop to run", || cpu_ticks(pid) > t1);

    let s = g.cg.stats().unwrap();
    assert!(s.cpu.usage_total_ns > 0, "{s:?}");
    assert!(s.cpu.usage_user_ns > 0, "{s:?}");
    assert!(!s.cpu.per_cpu_ns.is_empty());
    assert!(s.cpu.per_cpu_ns.iter().sum::<u64>() > 0);
    assert_eq!(s.pids.current, 1);
    assert_eq!(s.pids.limit, u64::MAX);
    assert!(s.memory.limit > 0);
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["memory"]["events"]["oom_kill"].is_u64());

    g.cg.kill_all().unwrap();
    let status = g.children[i].wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    g.cg.remove(Duration::from_secs(5)).unwrap();
    for (_, dir) in g.cg.paths() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    // A second remove (the guard's) is harmless.
    g.cg.remove(Duration::from_secs(1)).unwrap();
}

#[test]
fn signal_all_reaches_every_process() {
    let mut g = create("v1sig", None);
    let a = g.spawn_in("read _; trap 'exit 7' TERM; echo ready; while :; do :; done");
    let b = g.spawn_in("read _; trap 'exit 8' TERM; echo ready; while :; do :; done");
    for i in [a, b] {
        let mut line = String::new();
        let out = g.children[i].stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
        assert_eq!(line, "ready\n");
    }
    assert_eq!(g.cg.pids().unwrap().len(), 2);
    g.cg.signal_all(libc::SIGTERM).unwrap();
    assert_eq!(g.children[a].wait().unwrap().code(), Some(7));
    assert_eq!(g.children[b].wait().unwrap().code(), Some(8));
}

#[test]
fn update_while_running_and_check_before_update() {
    let mut g = create("v1upd", Some(&res(r#"{"pids": {"limit": 10}}"#)));
    let _ =
        g.spawn_in("read _; x=$(head -c 4000000 /dev/zero | tr '\\0' a); echo ready; sleep 100");
    let mem = g.dir("memory");
    eventually(10, "memory to be charged", || {
        read(&mem, "memory.usage_in_bytes").parse::<u64>().unwrap() > (1 << 20)
    });
    g.cg.update(&res(r#"{"pids": {"limit": 20}, "cpu": {"shares": 256}}"#))
        .unwrap();
    assert_eq!(read(&g.dir("pids"), "pids.max"), "20");
    assert_eq!(read(&g.dir("cpu"), "cpu.shares"), "256");
    let before = read(&mem, "memory.limit_in_bytes");
    let e =
        g.cg.update(&res(
            r#"{"memory": {"limit": 65536, "checkBeforeUpdate": true}}"#,
        ))
        .unwrap_err();
    assert!(matches!(e, CgroupError::MemoryBelowUsage { .. }), "{e}");
    assert!(e.to_string().contains("memory.usage_in_bytes"), "{e}");
    assert_eq!(read(&mem, "memory.limit_in_bytes"), before);
    g.cg.update(&res(
        r#"{"memory": {"limit": 268435456, "checkBeforeUpdate": true}}"#,
    ))
    .unwrap();
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "268435456");
}

#[test]
fn oom_kill_is_reported() {
    let r = res(r#"{"memory": {"limit": 33554432, "swap": 33554432}}"#);
    let mut g = create("v1oom", Some(&r));
    let mut w = g.cg.oom_watcher().unwrap();
    assert_eq!(w.wait(Duration::from_millis(50)).unwrap(), None);
    let i = g.spawn_in("read _; exec tail /dev/zero");
    let ev = w
        .wait(Duration::from_secs(30))
        .unwrap()
        .expect("an OOM event");
    assert!(ev.oom >= 1, "{ev:?}");
    let status = g.children[i].wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    eventually(5, "oom_kill to be counted", || {
        g.cg.memory_events().unwrap().oom_kill >= 1
    });
    assert!(g.cg.stats().unwrap().memory.events.oom_kill >= 1);
}

fn dirs_of(layout: &Layout, name: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = layout
        .v1_hierarchies()
        .iter()
        .chain(layout.named_hierarchies())
        .chain(layout.unified())
        .map(|h| h.dir_of(&h.own_cgroup.join(name)))
        .collect();
    v.dedup();
    v
}

#[test]
fn a_rejected_value_names_file_and_value_and_leaves_nothing() {
    let layout = v1_host();
    let name = unique("v1bad");
    let path = berth_cgroups::CgroupPath::from_spec(Some(name.as_ref()), "x").unwrap();
    let r = res(r#"{"pids": {"limit": 5}, "cpu": {"cpus": "99"}}"#);
    let e = CgroupManager::create(&layout, &path, Some(&r)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("cpuset.cpus") && msg.contains("\"99\""),
        "{msg}"
    );
    for d in dirs_of(&layout, &name) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn an_unavailable_controller_is_an_error_and_leaves_nothing() {
    let layout = v1_host();
    // Each case where this host lacks its controller: this development VM mounts neither
    // net_cls nor rdma; a pure v1 host has no cgroup2 for `unified`, a hybrid one has it
    // without the memory controller.
    let v1 = layout.v1_controllers();
    let (unified_field, unified_ctl) = if layout.unified().is_some() {
        ("unified.memory.high", "memory")
    } else {
        ("unified", "cgroup2")
    };
    let cases: Vec<_> = [
        (
            r#"{"network": {"classID": 1048577}}"#,
            "network.classID",
            "net_cls",
        ),
        (
            r#"{"rdma": {"mlx5_0": {"hcaHandles": 3}}}"#,
            "rdma.mlx5_0",
            "rdma",
        ),
        (
            r#"{"unified": {"memory.high": "1000000"}}"#,
            unified_field,
            unified_ctl,
        ),
    ]
    .into_iter()
    .filter(|(_, field, ctl)| field.starts_with("unified") || !v1.contains(ctl))
    .collect();
    for (json, field, ctl) in cases {
        let name = unique("v1unavail");
        let path = berth_cgroups::CgroupPath::from_spec(Some(name.as_ref()), "x").unwrap();
        let e = CgroupManager::create(&layout, &path, Some(&res(json))).unwrap_err();
        assert!(
            matches!(e, CgroupError::ControllerUnavailable { .. }),
            "{e}"
        );
        let msg = e.to_string();
        assert!(msg.contains(field) && msg.contains(ctl), "{msg}");
        for d in dirs_of(&layout, &name) {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }
}

#[test]
fn open_finds_an_existing_cgroup() {
    let layout = v1_host();
    let path = test_path("v1open");
    let (cg, _) = CgroupManager::create(&layout, &path, None).unwrap();
    let _g = Guard::new(cg);
    let again = CgroupManager::open(&layout, &path).unwrap();
    again.apply(&res(r#"{"pids": {"limit": 7}}"#)).unwrap();
    assert_eq!(read(&_g.dir("pids"), "pids.max"), "7");
    assert!(CgroupManager::open(&layout, &test_path("v1none")).is_err());
}

/// The named `name=systemd` hierarchy of this host: a process put in the cgroup shows
/// `N:name=systemd:<cgroup>` like every other v1 line, and the directory goes on remove.
#[test]
fn a_process_joins_the_named_hierarchy_and_its_dir_is_removed() {
    let layout = v1_host();
    let systemd = layout
        .named_hierarchies()
        .iter()
        .find(|h| h.name.as_deref() == Some("systemd"))
        .expect("this host mounts a name=systemd hierarchy")
        .clone();
    assert!(systemd.controllers.is_empty());
    assert!(
        !layout
            .v1_controllers()
            .iter()
            .any(|c| c.contains("systemd"))
    );
    let path = test_path("v1named");
    let (cg, _) = CgroupManager::create(&layout, &path, None).unwrap();
    let mut g = Guard::new(cg);
    assert!(!g.cg.clone_into_cgroup_is_enough());
    let dir = g.dir("name=systemd");
    assert!(dir.starts_with(&systemd.mount_point), "{}", dir.display());
    assert!(dir.is_dir());
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    let i = g.spawn_in("read _; cat /proc/self/cgroup; exec sleep 100");
    let pid = g.pid(i);
    let mut line = String::new();
    let out = g.children[i].stdout.take().unwrap();
    let mut out = std::io::BufReader::new(out);
    while !line.contains(":name=systemd:") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0);
    }
    let want = systemd.own_cgroup.join(&name);
    assert_eq!(
        line.trim_end().split_once(":name=systemd:").map(|x| x.1),
        Some(want.to_str().unwrap()),
        "{line}"
    );
    // `cat` may not have been reaped yet: wait for the shell (then sleep) alone.
    eventually(5, "only the shell in the named cgroup", || {
        read(&dir, "cgroup.procs") == pid.to_string()
    });

    // A later command finds it; a cgroup made without it (an older berth) still opens.
    let again = CgroupManager::open(&layout, &path).unwrap();
    assert!(
        again
            .paths()
            .iter()
            .any(|(c, d)| c == "name=systemd" && *d == dir)
    );

    g.cg.kill_all().unwrap();
    g.children[i].wait().unwrap();
    g.cg.remove(Duration::from_secs(5)).unwrap();
    assert!(!dir.exists(), "{} left behind", dir.display());
    for (_, d) in g.cg.paths() {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

/// A cgroup whose named-hierarchy directory is missing (made before berth joined named
/// hierarchies) opens without it, and is removed without an error.
#[test]
fn open_without_the_named_dir_leaves_it_out() {
    let layout = v1_host();
    assert!(
        !layout.named_hierarchies().is_empty(),
        "no named hierarchy here"
    );
    let path = test_path("v1nonamed");
    let (cg, _) = CgroupManager::create(&layout, &path, None).unwrap();
    let g = Guard::new(cg);
    let named = g.dir("name=systemd");
    std::fs::remove_dir(&named).unwrap();
    let again = CgroupManager::open(&layout, &path).unwrap();
    let labels: Vec<String> = again.paths().into_iter().map(|(c, _)| c).collect();
    assert!(!labels.iter().any(|c| c.starts_with("name=")), "{labels:?}");
    assert_eq!(labels.len(), g.cg.paths().len() - 1, "{labels:?}");
    again.remove(Duration::from_secs(5)).unwrap();
    for (_, d) in g.cg.paths() {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

/// `runc exec --cgroup sub` puts a process in a sub-cgroup of the container's: ps, kill --all
/// and delete must reach it there too.
#[test]
fn processes_in_sub_cgroups_are_listed_killed_and_removed() {
    let mut g = create("v1sub", None);
    let top = g.spawn_in("read _; exec sleep 100");
    let child = Command::new("/bin/sh")
        .args(["-c", "read _; exec sleep 100"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let sub_pid = child.id() as i32;
    g.children.push(child);
    let sub = g.children.len() - 1;
    let mut subdirs = Vec::new();
    for (_, dir) in g.cg.paths() {
        let d = dir.join("sub");
        std::fs::create_dir(&d).unwrap();
        // A new cpuset cgroup has no cpus or mems until given its parent's.
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if d.join(f).exists() {
                std::fs::write(d.join(f), std::fs::read(dir.join(f)).unwrap()).unwrap();
            }
        }
        std::fs::write(d.join("cgroup.procs"), sub_pid.to_string()).unwrap();
        subdirs.push(d);
    }
    g.children[sub]
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    let mut want = vec![g.pid(top), sub_pid];
    want.sort_unstable();
    assert_eq!(g.cg.pids().unwrap(), want);
    g.cg.kill_all().unwrap();
    for i in [top, sub] {
        assert_eq!(g.children[i].wait().unwrap().signal(), Some(libc::SIGKILL));
    }
    g.cg.remove(Duration::from_secs(5)).unwrap();
    for d in subdirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    for (_, dir) in g.cg.paths() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

/// The zero values Docker sends for "not set" are not set, as with runc: nothing is
/// refused and the cgroup keeps its defaults (or, on update, its earlier values).
#[test]
fn docker_zero_values_mean_not_set() {
    let zeros = r#"{
        "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,
                "realtimePeriod": 0, "cpus": "", "mems": ""},
        "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0,
                   "swappiness": 18446744073709551615},
        "pids": {"limit": 0},
        "blockIO": {"weight": 0, "leafWeight": 0}}"#;
    let (cg, warnings) = CgroupManager::create(&v1_host(), &test_path("v1zero"), Some(&res(zeros)))
        .unwrap_or_else(|e| panic!("zeros refused: {e}"));
    let g = Guard::new(cg);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(read(&g.dir("pids"), "pids.max"), "max");
    assert_eq!(read(&g.dir("cpu"), "cpu.shares"), "1024");
    assert_eq!(read(&g.dir("cpu"), "cpu.cfs_quota_us"), "-1");
    assert_eq!(read(&g.dir("cpu"), "cpu.cfs_period_us"), "100000");
    assert!(
        read(&g.dir("memory"), "memory.limit_in_bytes")
            .parse::<u64>()
            .unwrap()
            > 1 << 62
    );
    assert!(!read(&g.dir("cpuset"), "cpuset.cpus").is_empty());
    // On update, a zero keeps what was set (runc: `update --pids-limit 0` keeps it).
    g.cg.update(&res(r#"{"pids": {"limit": 10}, "cpu": {"shares": 512}}"#))
        .unwrap();
    g.cg.update(&res(zeros)).unwrap();
    assert_eq!(read(&g.dir("pids"), "pids.max"), "10");
    assert_eq!(read(&g.dir("cpu"), "cpu.shares"), "512");
    // -1 still lifts the pids limit, and a real swappiness above 100 is still refused.
    g.cg.update(&res(r#"{"pids": {"limit": -1}}"#)).unwrap();
    assert_eq!(read(&g.dir("pids"), "pids.max"), "max");
    let e =
        g.cg.update(&res(r#"{"memory": {"swappiness": 101}}"#))
            .unwrap_err();
    assert!(e.to_string().contains("memory.swappiness"), "{e}");
}

/// `memory.limit` -1 without a swap limit lifts memory+swap as well (runc does), so a
/// limited container can be made unlimited and limited again.
#[test]
fn an_unlimited_memory_update_lifts_the_swap_limit_first() {
    let r = res(r#"{"memory": {"limit": 67108864, "swap": 134217728}}"#);
    let g = create("v1memsw", Some(&r));
    let mem = g.dir("memory");
    let unlimited = |f: &str| read(&mem, f).parse::<u64>().unwrap() > 1 << 62;
    g.cg.update(&res(r#"{"memory": {"limit": -1}}"#))
        .unwrap_or_else(|e| panic!("memory -1 refused: {e}"));
    assert!(unlimited("memory.limit_in_bytes"));
    assert!(unlimited("memory.memsw.limit_in_bytes"));
    // Back down: memory before memory+swap.
    g.cg.update(&r).unwrap();
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "67108864");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "134217728");
    // Both up past the old memory+swap: memory+swap first.
    g.cg.update(&res(
        r#"{"memory": {"limit": 268435456, "swap": 536870912}}"#,
    ))
    .unwrap();
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "268435456");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "536870912");
}

/// Under a parent limited to one CPU, a child's quota/period may never exceed it at any
/// step: a shorter period needs the quota first, a longer quota the period first.
#[test]
fn cpu_period_and_quota_are_written_in_the_order_the_kernel_takes() {
    let layout = v1_host();
    let parent = unique("v1cfs");
    let ppath = berth_cgroups::CgroupPath::from_spec(Some(parent.as_ref()), "x").unwrap();
    let one_cpu = res(r#"{"cpu": {"quota": 100000, "period": 100000}}"#);
    let (pcg, _) = CgroupManager::create(&layout, &ppath, Some(&one_cpu)).unwrap();
    let _parent = Guard::new(pcg);
    let cpath =
        berth_cgroups::CgroupPath::from_spec(Some(format!("{parent}/c").as_ref()), "x").unwrap();
    let half = res(r#"{"cpu": {"quota": 50000, "period": 100000}}"#);
    let (ccg, _) = CgroupManager::create(&layout, &cpath, Some(&half)).unwrap();
    let child = Guard::new(ccg);
    let cpu = child.dir("cpu");
    let bw = || {
        (
            read(&cpu, "cpu.cfs_quota_us"),
            read(&cpu, "cpu.cfs_period_us"),
        )
    };
    // 50000/20000 would be 2.5 CPUs: the quota must go first.
    child
        .cg
        .update(&res(r#"{"cpu": {"quota": 10000, "period": 20000}}"#))
        .unwrap_or_else(|e| panic!("shorter period refused: {e}"));
    assert_eq!(bw(), ("10000".into(), "20000".into()));
    // 90000/20000 would be 4.5 CPUs: the period must go first.
    child
        .cg
        .update(&res(r#"{"cpu": {"quota": 90000, "period": 100000}}"#))
        .unwrap();
    assert_eq!(bw(), ("90000".into(), "100000".into()));
    // Over the parent's limit whatever the order: the kernel's error, naming the file.
    let e = child
        .cg
        .update(&res(r#"{"cpu": {"quota": 300000, "period": 100000}}"#))
        .unwrap_err();
    assert!(e.to_string().contains("cpu.cfs_quota_us"), "{e}");
    drop(child);
}

/// A cgroup that is frozen (or under a frozen parent) is refused, as runc refuses it: an
/// init put there would stop before it could report. The new directories go again.
#[test]
fn creating_in_a_frozen_cgroup_is_refused_and_leaves_nothing() {
    let layout = v1_host();
    let parent = unique("v1frz");
    let ppath = berth_cgroups::CgroupPath::from_spec(Some(parent.as_ref()), "x").unwrap();
    let (pcg, _) = CgroupManager::create(&layout, &ppath, None).unwrap();
    let g = Guard::new(pcg);
    g.cg.freeze().unwrap();
    // The frozen cgroup itself.
    let e = CgroupManager::create(&layout, &ppath, None).unwrap_err();
    assert!(matches!(e, CgroupError::Frozen { .. }), "{e}");
    assert!(e.to_string().contains("freezer.state"), "{e}");
    // A new cgroup below it.
    let child = format!("{parent}/c");
    let cpath = berth_cgroups::CgroupPath::from_spec(Some(child.as_ref()), "x").unwrap();
    let e = CgroupManager::create(&layout, &cpath, None).unwrap_err();
    assert!(e.to_string().contains("frozen"), "{e}");
    for d in dirs_of(&layout, &child) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    g.cg.thaw().unwrap();
    let (c, _) = CgroupManager::create(&layout, &cpath, None).unwrap();
    c.remove(Duration::from_secs(5)).unwrap();
}

/// The rules a container gets (its own, then the fixed default set) deny what its
/// `linux.resources.devices` denies: /dev/kmsg here, /dev/null stays usable.
#[test]
fn container_device_rules_deny_all_but_the_default_set() {
    let r = res(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#);
    let mut g = create(
        "v1devdef",
        Some(&berth_cgroups::devices::with_defaults(Some(&r))),
    );
    let out = g.output_in(
        "read _; echo x > /dev/null && echo null-ok; head -c1 /dev/urandom | wc -c; \
         (echo x > /dev/kmsg) 2>/dev/null || echo kmsg-denied",
    );
    assert_eq!(out, "null-ok\n1\nkmsg-denied\n");
}

/// The `tasks` files are known before the cgroup is made, and a process that writes `0` to
/// each is then in the cgroup in every v1 hierarchy (named `name=systemd` included).
#[test]
fn a_process_joins_itself_through_the_v1_task_files() {
    let layout = v1_host();
    let path = test_path("v1self");
    let files = CgroupManager::v1_task_files(&layout, &path).unwrap();
    let g = Guard::new(CgroupManager::create(&layout, &path, None).unwrap().0);
    let expected: Vec<PathBuf> =
        g.cg.paths()
            .into_iter()
            .filter(|(label, _)| label != "cgroup2")
            .map(|(_, dir)| dir.join("tasks"))
            .collect();
    assert_eq!(files, expected);
    assert!(!files.is_empty());
    // A single-threaded shell moves itself, then shows where it is.
    let script: String = files
        .iter()
        .map(|f| format!("echo 0 > {} && ", f.display()))
        .collect::<String>()
        + "cat /proc/self/cgroup";
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let own = String::from_utf8(out.stdout).unwrap();
    for (label, dir) in g.cg.paths() {
        if label == "cgroup2" {
            continue;
        }
        let name = dir.file_name().unwrap().to_str().unwrap();
        let line = own
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| label.contains(c) || c.contains(&*label))
            })
            .unwrap_or_else(|| panic!("{label} not in {own}"));
        assert!(line.ends_with(name), "{label}: {line}");
    }
}

/// The default parent `/berth` (a config without `linux.cgroupsPath`) is made by the first
/// cgroup in it and removed with the last one, also while other threads create and remove
/// theirs: a create that loses the race to the removal makes it again.
#[test]
fn the_default_parent_goes_with_its_last_cgroup() {
    let layout = v1_host();
    let parents: Vec<PathBuf> = layout
        .hierarchies()
        .map(|h| h.dir_of(std::path::Path::new("/berth")))
        .collect();
    if parents.iter().any(|p| p.exists()) {
        eprintln!("SKIP: /berth is in use on this host: {parents:?}");
        return;
    }
    let default = |id: &str| berth_cgroups::CgroupPath::from_spec(None, id).unwrap();
    let a = unique("dpa");
    let b = unique("dpb");
    let (ca, _) = CgroupManager::create(&layout, &default(&a), None).unwrap();
    let ga = Guard::new(ca);
    let (cb, _) = CgroupManager::create(&layout, &default(&b), None).unwrap();
    let gb = Guard::new(cb);
    assert!(parents.iter().all(|p| p.is_dir()), "{parents:?}");
    assert!(ga.cg.remove_if_empty().unwrap());
    assert!(
        parents.iter().all(|p| p.is_dir()),
        "went while {b} is in it"
    );
    gb.cg.remove(Duration::from_secs(5)).unwrap();
    let left: Vec<_> = parents.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "left: {left:?}");

    std::thread::scope(|s| {
        for t in 0..4 {
            let layout = &layout;
            s.spawn(move || {
                for i in 0..25 {
                    let id = unique(&format!("dp{t}-{i}"));
                    let (cg, _) = CgroupManager::create(layout, &default(&id), None)
                        .unwrap_or_else(|e| panic!("create {id}: {e}"));
                    let g = Guard::new(cg);
                    assert!(g.cg.remove_if_empty().unwrap(), "{id} busy");
                }
            });
        }
    });
    let left: Vec<_> = parents.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "left: {left:?}");
}
