//! cgroup v2 controllers of a real kernel: the cgroup2 root of a pure v2 host whose
//! cgroup.controllers offers cpu, cpuset, memory, io, pids and hugetlb (the VM lane's v2
//! layout). Every value is read back from the kernel's own files, in their real formats
//! (io.max shows all four keys, memory values round down to pages...), and the limits
//! are shown to hold on processes put in the cgroup.
//!
//! Where the host's cgroup2 lacks those controllers (a hybrid host), each test prints
//! `SKIP: ...` and passes, unless BERTH_VM_LAYOUT=v2 says this is the pure v2 VM, where
//! that is a failure.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_cgroups::devices::query_programs;
use berth_cgroups::{
    CgroupError, CgroupManager, CgroupPath, FreezerState, Layout, MemoryEvents, Warning,
};
use common::*;

const MIB: u64 = 1 << 20;
const NEEDED: &[&str] = &["cpu", "cpuset", "memory", "io", "pids", "hugetlb"];

/// The host's cgroup2 root as a pure v2 layout, if it offers the controllers tested here.
fn kernel_v2() -> Option<Layout> {
    let in_vm = std::env::var("BERTH_VM_LAYOUT").as_deref() == Ok("v2");
    let mount = Layout::detect()
        .ok()
        .and_then(|l| l.unified().map(|h| h.mount_point.clone()));
    let layout = mount.as_ref().and_then(|m| Layout::unified_at(m).ok());
    let missing: Vec<&str> = match &layout {
        Some(l) => NEEDED
            .iter()
            .copied()
            .filter(|c| !l.unified().unwrap().has(c))
            .collect(),
        None => NEEDED.to_vec(),
    };
    if missing.is_empty() {
        return layout;
    }
    let why = format!(
        "the cgroup2 hierarchy ({}) lacks the controllers {missing:?}",
        mount.map_or("not mounted".into(), |m| m.display().to_string())
    );
    assert!(!in_vm, "BERTH_VM_LAYOUT=v2 but {why}");
    println!("SKIP: {why}");
    None
}

macro_rules! v2_or_skip {
    () => {
        match kernel_v2() {
            Some(l) => l,
            None => return,
        }
    };
}

fn root(l: &Layout) -> PathBuf {
    l.unified().unwrap().mount_point.clone()
}

fn create(l: &Layout, what: &str, json: &str) -> (Guard, Vec<Warning>) {
    let (cg, w) = CgroupManager::create(l, &test_path(what), Some(&res(json))).unwrap();
    (Guard::new(cg), w)
}

fn create_quiet(l: &Layout, what: &str, json: &str) -> Guard {
    let (g, w) = create(l, what, json);
    assert!(w.is_empty(), "{w:?}");
    g
}

fn leaf(g: &Guard) -> PathBuf {
    g.dir("cgroup2")
}

/// The `major:minor` and name of the lane's virtio disk (vda), or of the first disk.
fn disk() -> (String, String) {
    let name = if Path::new("/sys/block/vda").exists() {
        "vda".to_string()
    } else {
        let dev = a_disk().expect("a disk");
        fs::read_dir("/sys/block")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| read(&Path::new("/sys/block").join(n), "dev") == dev)
            .unwrap()
    };
    (read(&Path::new("/sys/block").join(&name), "dev"), name)
}

/// Held by the tests that depend on the disk's I/O scheduler: one of them changes it.
static DISK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn disk_lock() -> std::sync::MutexGuard<'static, ()> {
    DISK.lock().unwrap_or_else(|e| e.into_inner())
}

fn scheduler(name: &str) -> String {
    read(Path::new(&format!("/sys/block/{name}/queue")), "scheduler")
}

/// Sets the disk's I/O scheduler, restoring the one in use on drop.
struct Scheduler {
    name: String,
    was: String,
}

impl Scheduler {
    fn set(name: &str, to: &str) -> Self {
        let cur = scheduler(name);
        let was = cur
            .split_whitespace()
            .find(|s| s.starts_with('['))
            .map(|s| s.trim_matches(['[', ']']).to_string())
            .unwrap();
        fs::write(format!("/sys/block/{name}/queue/scheduler"), to).unwrap();
        Self {
            name: name.into(),
            was,
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = fs::write(
            format!("/sys/block/{}/queue/scheduler", self.name),
            &self.was,
        );
    }
}

/// Not a test: the process the tests put in a cgroup (this test binary run again with
/// BERTH_V2K_HELPER set). It waits for a line on stdin, does what the variable says and
/// prints `RESULT <what happened>`, then waits for another line (or its end) and exits.
///
/// * `alloc <MiB>`: allocates and touches that much anonymous memory;
/// * `huge <n>`: maps `n` 2MB huge pages (MAP_HUGETLB) and touches them.
#[test]
fn helper_process() {
    let Ok(what) = std::env::var("BERTH_V2K_HELPER") else {
        return;
    };
    let mut line = String::new();
    let stdin = std::io::stdin();
    stdin.read_line(&mut line).unwrap();
    let mut out = std::io::stdout();
    let (cmd, arg) = what.split_once(' ').unwrap();
    let n: usize = arg.parse().unwrap();
    let mut keep: Vec<Vec<u8>> = Vec::new();
    match cmd {
        "alloc" => {
            for _ in 0..n {
                let mut v = vec![0u8; MIB as usize];
                for i in (0..v.len()).step_by(4096) {
                    v[i] = 1;
                }
                keep.push(v);
            }
            writeln!(out, "RESULT allocated {n}").unwrap();
        }
        "huge" => {
            let len = n * 2 * MIB as usize;
            // SAFETY: an anonymous private mapping; no memory of ours is passed.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                let e = std::io::Error::last_os_error();
                writeln!(out, "RESULT mmap failed: {}", e.raw_os_error().unwrap()).unwrap();
            } else {
                for i in (0..len).step_by(2 * MIB as usize) {
                    // SAFETY: inside the mapping just made.
                    unsafe { *(p as *mut u8).add(i) = 1 };
                }
                writeln!(out, "RESULT mapped {n}").unwrap();
            }
        }
        _ => panic!("unknown helper command {what}"),
    }
    out.flush().unwrap();
    line.clear();
    let _ = stdin.read_line(&mut line);
    drop(keep);
    std::process::exit(0);
}

/// Starts [`helper_process`] in the cgroup of `g` doing `what`; returns its index in
/// `g.children` and its `RESULT` line (empty if it died first, e.g. OOM-killed).
fn helper_in(g: &mut Guard, what: &str) -> (usize, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BERTH_V2K_HELPER", what)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    g.cg.add_process(child.id() as i32).unwrap();
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut result = String::new();
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        // The test harness may print its "test helper_process ... " on the same line.
        if let Some(at) = line.find("RESULT ") {
            result = line[at + 7..].trim().to_string();
            break;
        }
        line.clear();
    }
    g.children.push(child);
    (g.children.len() - 1, result)
}

/// Whether the host offers 1GB huge pages.
fn has_1gb() -> bool {
    berth_cgroups::hugepage_sizes().contains(&"1GB".to_string())
}

#[test]
fn every_field_reads_back_from_the_kernel() {
    let l = v2_or_skip!();
    let _disk = disk_lock();
    let (dev, name) = disk();
    let bfq = scheduler(&name).contains("[bfq]");
    let huge_1g = if has_1gb() {
        r#", {"pageSize": "1GB", "limit": 1073741824}"#
    } else {
        ""
    };
    let (maj, min) = dev.split_once(':').unwrap();
    let g = create_quiet(
        &l,
        "kall",
        &format!(
            r#"{{
        "cpu": {{"shares": 1024, "quota": 50000, "period": 100000, "burst": 2000,
                "cpus": "0", "mems": "0"}},
        "memory": {{"limit": {lim}, "reservation": {rsv}, "swap": {swap}}},
        "pids": {{"limit": 100}},
        "blockIO": {{"weight": 500,
            "weightDevice": [{{"major": {maj}, "minor": {min}, "weight": 200}}],
            "throttleReadBpsDevice": [{{"major": {maj}, "minor": {min}, "rate": 1048576}}],
            "throttleWriteBpsDevice": [{{"major": {maj}, "minor": {min}, "rate": 2097152}}],
            "throttleReadIOPSDevice": [{{"major": {maj}, "minor": {min}, "rate": 100}}],
            "throttleWriteIOPSDevice": [{{"major": {maj}, "minor": {min}, "rate": 200}}]}},
        "hugepageLimits": [{{"pageSize": "2MB", "limit": 4194304}}{huge_1g}],
        "unified": {{"memory.high": "50000000", "pids.max": "99"}}
    }}"#,
            lim = 64 * MIB,
            rsv = 32 * MIB + 100,
            swap = 96 * MIB,
        ),
    );
    let d = &leaf(&g);
    assert_eq!(read(d, "cpu.weight"), "39");
    assert_eq!(read(d, "cpu.max"), "50000 100000");
    assert_eq!(read(d, "cpu.max.burst"), "2000");
    assert_eq!(read(d, "cpuset.cpus"), "0");
    assert_eq!(read(d, "cpuset.mems"), "0");
    assert_eq!(read(d, "cpuset.cpus.effective"), "0");
    assert_eq!(read(d, "memory.max"), (64 * MIB).to_string());
    // Rounded down to a whole page.
    assert_eq!(read(d, "memory.low"), (32 * MIB).to_string());
    assert_eq!(read(d, "memory.swap.max"), (32 * MIB).to_string());
    assert_eq!(read(d, "memory.high"), "49999872");
    // unified is written last: it wins over pids.limit.
    assert_eq!(read(d, "pids.max"), "99");
    assert_eq!(
        read(d, "io.max"),
        format!("{dev} rbps=1048576 wbps=2097152 riops=100 wiops=200")
    );
    // The default weight goes to BFQ's file where the kernel has BFQ (as runc and crun),
    // else to io cost control's, converted.
    if bfq {
        assert_eq!(read(d, "io.bfq.weight"), format!("default 500\n{dev} 200"));
        if d.join("io.weight").exists() {
            assert_eq!(read(d, "io.weight"), "default 100");
        }
    } else {
        assert_eq!(read(d, "io.weight"), "default 4950");
    }
    assert_eq!(read(d, "hugetlb.2MB.max"), "4194304");
    assert_eq!(read(d, "hugetlb.2MB.rsvd.max"), "4194304");
    if has_1gb() {
        assert_eq!(read(d, "hugetlb.1GB.max"), "1073741824");
    }
    // A rate of 0 is "max": with all four at max the kernel drops the disk's line.
    g.cg.update(&res(&format!(
        r#"{{"blockIO": {{
            "throttleReadBpsDevice": [{{"major": {maj}, "minor": {min}, "rate": 0}}],
            "throttleWriteIOPSDevice": [{{"major": {maj}, "minor": {min}, "rate": 0}}]}}}}"#
    )))
    .unwrap();
    assert_eq!(
        read(d, "io.max"),
        format!("{dev} rbps=max wbps=2097152 riops=100 wiops=max")
    );
    g.cg.update(&res(&format!(
        r#"{{"blockIO": {{
            "throttleWriteBpsDevice": [{{"major": {maj}, "minor": {min}, "rate": 0}}],
            "throttleReadIOPSDevice": [{{"major": {maj}, "minor": {min}, "rate": 0}}]}}}}"#
    )))
    .unwrap();
    assert_eq!(read(d, "io.max"), "");
    let sc = read(&root(&l), "cgroup.subtree_control");
    for c in NEEDED {
        assert!(sc.split(' ').any(|x| x == *c), "{c} not enabled: {sc}");
    }
}

#[test]
fn conversions_at_the_ends_of_the_ranges() {
    let l = v2_or_skip!();
    let g = create_quiet(
        &l,
        "kconv",
        r#"{"cpu": {"shares": 2, "quota": -1, "period": 250000},
            "memory": {"limit": 1000000, "reservation": -1, "swap": -1}, "pids": {"limit": -1}}"#,
    );
    let d = &leaf(&g);
    assert_eq!(read(d, "cpu.weight"), "1");
    assert_eq!(read(d, "cpu.max"), "max 250000");
    assert_eq!(read(d, "memory.max"), "999424");
    assert_eq!(read(d, "memory.low"), "max");
    assert_eq!(read(d, "memory.swap.max"), "max");
    assert_eq!(read(d, "pids.max"), "max");
    g.cg.update(&res(r#"{"cpu": {"shares": 262144, "quota": 1000}}"#))
        .unwrap();
    assert_eq!(read(d, "cpu.weight"), "10000");
    assert_eq!(read(d, "cpu.max"), "1000 250000");
    // The kernel's own bounds: a period below 1 ms is refused, naming file and value.
    let e =
        g.cg.update(&res(r#"{"cpu": {"period": 100}}"#))
            .unwrap_err();
    assert!(
        matches!(e, CgroupError::Write { .. }) && e.to_string().contains("cpu.max"),
        "{e}"
    );
    // Real-time groups do not exist on cgroup v2.
    for f in ["realtimeRuntime", "realtimePeriod"] {
        let e =
            g.cg.update(&res(&format!(r#"{{"cpu": {{"{f}": 1000}}}}"#)))
                .unwrap_err();
        assert!(e.to_string().contains(f), "{e}");
    }
}

/// The kernel refuses a weight for an idle group (cpu.idle = 1): leaving idle and
/// setting a weight in one update must write cpu.idle first.
#[test]
fn idle_and_shares_in_either_direction() {
    let l = v2_or_skip!();
    let g = create_quiet(&l, "kidle", r#"{"cpu": {"shares": 2048, "idle": 1}}"#);
    let d = &leaf(&g);
    assert_eq!(read(d, "cpu.idle"), "1");
    g.cg.update(&res(r#"{"cpu": {"shares": 512, "idle": 0}}"#))
        .unwrap();
    assert_eq!(read(d, "cpu.idle"), "0");
    assert_eq!(read(d, "cpu.weight"), "20");
    g.cg.update(&res(r#"{"cpu": {"shares": 1024, "idle": 1}}"#))
        .unwrap();
    assert_eq!(read(d, "cpu.idle"), "1");
}

/// cpu.max.burst may not exceed the quota: lowering both writes the burst first,
/// raising both the quota first.
#[test]
fn burst_and_quota_in_either_direction() {
    let l = v2_or_skip!();
    let g = create_quiet(
        &l,
        "kburst",
        r#"{"cpu": {"quota": 50000, "period": 100000, "burst": 40000}}"#,
    );
    let d = &leaf(&g);
    assert_eq!(read(d, "cpu.max.burst"), "40000");
    g.cg.update(&res(r#"{"cpu": {"quota": 10000, "burst": 5000}}"#))
        .unwrap();
    assert_eq!(read(d, "cpu.max"), "10000 100000");
    assert_eq!(read(d, "cpu.max.burst"), "5000");
    g.cg.update(&res(r#"{"cpu": {"quota": 200000, "burst": 150000}}"#))
        .unwrap();
    assert_eq!(read(d, "cpu.max"), "200000 100000");
    assert_eq!(read(d, "cpu.max.burst"), "150000");
}

#[test]
fn memory_updates_while_a_process_holds_memory() {
    let l = v2_or_skip!();
    let mut g = create_quiet(
        &l,
        "kmemupd",
        &format!(
            r#"{{"memory": {{"limit": {}, "swap": {}}}}}"#,
            128 * MIB,
            192 * MIB
        ),
    );
    let d = leaf(&g);
    let (_, r) = helper_in(&mut g, "alloc 24");
    assert_eq!(r, "allocated 24");
    let usage = g.cg.stats().unwrap().memory.usage;
    assert!(usage >= 24 * MIB, "usage {usage}");
    // Below the usage: checkBeforeUpdate refuses it and nothing changes.
    let e =
        g.cg.update(&res(&format!(
            r#"{{"memory": {{"limit": {}, "checkBeforeUpdate": true}}}}"#,
            8 * MIB
        )))
        .unwrap_err();
    assert!(matches!(e, CgroupError::MemoryBelowUsage { .. }), "{e}");
    assert_eq!(read(&d, "memory.max"), (128 * MIB).to_string());
    // Lower the limit below the current swap limit, then the swap alone (converted
    // against the current memory.max), then lift the limit alone: as with v1 and
    // runc, that lifts the swap limit too.
    g.cg.update(&res(&format!(
        r#"{{"memory": {{"limit": {}, "swap": {}, "checkBeforeUpdate": true}}}}"#,
        48 * MIB,
        64 * MIB
    )))
    .unwrap();
    assert_eq!(read(&d, "memory.max"), (48 * MIB).to_string());
    assert_eq!(read(&d, "memory.swap.max"), (16 * MIB).to_string());
    g.cg.update(&res(&format!(r#"{{"memory": {{"swap": {}}}}}"#, 56 * MIB)))
        .unwrap();
    assert_eq!(read(&d, "memory.swap.max"), (8 * MIB).to_string());
    g.cg.update(&res(r#"{"memory": {"limit": -1}}"#)).unwrap();
    assert_eq!(read(&d, "memory.max"), "max");
    assert_eq!(read(&d, "memory.swap.max"), "max");
    assert_eq!(g.cg.pids().unwrap().len(), 1, "the process survived");
}

#[test]
fn a_process_past_memory_max_is_oom_killed_and_reported() {
    let l = v2_or_skip!();
    let mut g = create_quiet(
        &l,
        "koom",
        &format!(
            r#"{{"memory": {{"limit": {}, "swap": {}}}}}"#,
            32 * MIB,
            32 * MIB
        ),
    );
    assert_eq!(read(&leaf(&g), "memory.swap.max"), "0");
    let mut w = g.cg.oom_watcher().unwrap();
    let (i, r) = helper_in(&mut g, "alloc 128");
    assert_eq!(r, "", "the helper allocated past memory.max");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(g.children[i].wait().unwrap().signal(), Some(libc::SIGKILL));
    let ev = w
        .wait(Duration::from_secs(10))
        .unwrap()
        .expect("an OOM event");
    assert!(ev.oom >= 1 && ev.oom_kill >= 1, "{ev:?}");
    let now = g.cg.memory_events().unwrap();
    assert!(now.oom_kill >= 1, "{now:?}");
    let s = g.cg.stats().unwrap();
    assert!(
        s.memory.failcnt >= 1 && s.memory.events.oom_kill >= 1,
        "{s:?}"
    );
    assert!(s.memory.max_usage >= 30 * MIB, "{s:?}");
}

#[test]
fn pids_limit_holds() {
    let l = v2_or_skip!();
    let mut g = create_quiet(&l, "kpids", r#"{"pids": {"limit": 1}}"#);
    // The shell alone is at the limit: it cannot fork /bin/true.
    let script = "read _; /bin/true 2>/dev/null && echo forked";
    let out = g.output_in(script);
    assert!(!out.contains("forked"), "{out}");
    g.cg.update(&res(r#"{"pids": {"limit": 10}}"#)).unwrap();
    assert_eq!(g.output_in(script).trim(), "forked");
    let events = read(&leaf(&g), "pids.events");
    assert!(
        events.contains("max ") && !events.contains("max 0"),
        "{events}"
    );
}

#[test]
fn cpuset_changes_reach_a_running_process() {
    let l = v2_or_skip!();
    let online = read(Path::new("/sys/devices/system/cpu"), "online");
    if online == "0" {
        println!("SKIP: a single CPU");
        return;
    }
    let mut g = create_quiet(&l, "kcpuset", r#"{"cpu": {"cpus": "0", "mems": "0"}}"#);
    let i = g.spawn_in("read _; while :; do sleep 1; done");
    let pid = g.pid(i);
    let allowed = || {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Cpus_allowed_list:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap()
    };
    assert_eq!(allowed(), "0");
    g.cg.update(&res(r#"{"cpu": {"cpus": "1"}}"#)).unwrap();
    assert_eq!(allowed(), "1");
    g.cg.update(&res(&format!(r#"{{"cpu": {{"cpus": "{online}"}}}}"#)))
        .unwrap();
    assert_eq!(allowed(), online);
    // A CPU the machine does not have is refused by the kernel, naming file and value.
    let e = g.cg.update(&res(r#"{"cpu": {"cpus": "64"}}"#)).unwrap_err();
    assert!(e.to_string().contains("cpuset.cpus"), "{e}");
    assert_eq!(allowed(), online);
}

#[test]
fn hugetlb_limits_are_enforced() {
    let l = v2_or_skip!();
    let free = read(
        Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB"),
        "free_hugepages",
    );
    if free.parse::<u32>().unwrap_or(0) < 3 {
        assert!(
            std::env::var("BERTH_VM_LAYOUT").is_err(),
            "the VM has {free} free 2MB huge pages"
        );
        println!("SKIP: {free} free 2MB huge pages");
        return;
    }
    // 3MB rounds down to one page.
    let mut g = create_quiet(
        &l,
        "khuge",
        r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 3145728}]}"#,
    );
    let d = leaf(&g);
    assert_eq!(read(&d, "hugetlb.2MB.max"), "2097152");
    let (_, r) = helper_in(&mut g, "huge 2");
    assert_eq!(r, format!("mmap failed: {}", libc::ENOMEM));
    let (_, r) = helper_in(&mut g, "huge 1");
    assert_eq!(r, "mapped 1");
    let s = g.cg.stats().unwrap();
    assert_eq!(s.hugetlb["2MB"].usage, 2 * MIB, "{s:?}");
    assert!(read(&d, "hugetlb.2MB.events").starts_with("max "));
}

/// RDMA limits name a device; without one the kernel refuses the write (ENODEV):
/// berth's error names the field and says so, nothing is ignored silently.
#[test]
fn rdma_limits_without_the_device_fail_clearly() {
    let l = v2_or_skip!();
    if !l.unified().unwrap().has("rdma") {
        println!("SKIP: no rdma controller");
        return;
    }
    let has_dev = fs::read_dir("/sys/class/infiniband").is_ok_and(|mut d| d.next().is_some());
    if has_dev {
        println!("SKIP: this host has RDMA devices");
        return;
    }
    let g = create_quiet(&l, "krdma", r#"{"pids": {"limit": 5}}"#);
    let e =
        g.cg.update(&res(
            r#"{"pids": {"limit": 7}, "rdma": {"mlx5_0": {"hcaHandles": 3}}}"#,
        ))
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("rdma.mlx5_0") && msg.contains("no RDMA device"),
        "{msg}"
    );
    // Refused before anything else was written.
    assert_eq!(read(&leaf(&g), "pids.max"), "5");
    assert_eq!(read(&leaf(&g), "rdma.max"), "");
}

/// a/b/c: every ancestor's cgroup.subtree_control gets the controllers, and the files
/// that exist only once they are enabled (io.bfq.weight, hugetlb.*.rsvd.max) are used.
#[test]
fn a_nested_path_enables_controllers_in_every_ancestor() {
    let l = v2_or_skip!();
    let _disk = disk_lock();
    let (dev, name) = disk();
    let (maj, min) = dev.split_once(':').unwrap();
    let top = unique("knest");
    let path = CgroupPath::from_spec(Some(Path::new(&format!("{top}/b/c"))), "x").unwrap();
    let (cg, w) = CgroupManager::create(
        &l,
        &path,
        Some(&res(&format!(
            r#"{{"memory": {{"limit": 33554432}}, "pids": {{"limit": 9}},
                "blockIO": {{"weight": 300,
                    "weightDevice": [{{"major": {maj}, "minor": {min}, "weight": 50}}]}},
                "hugepageLimits": [{{"pageSize": "2MB", "limit": 2097152}}]}}"#
        ))),
    )
    .unwrap();
    struct Top(PathBuf);
    impl Drop for Top {
        fn drop(&mut self) {
            let _ = fs::remove_dir(self.0.join("b"));
            let _ = fs::remove_dir(&self.0);
        }
    }
    let _top = Top(root(&l).join(&top));
    let mut g = Guard::new(cg);
    assert!(w.is_empty(), "{w:?}");
    let d = leaf(&g);
    assert_eq!(d, root(&l).join(&top).join("b/c"));
    for a in [root(&l).join(&top), root(&l).join(&top).join("b")] {
        let sc = read(&a, "cgroup.subtree_control");
        for c in ["memory", "pids", "io", "hugetlb"] {
            assert!(
                sc.split(' ').any(|x| x == c),
                "{c} in {}: {sc}",
                a.display()
            );
        }
    }
    assert_eq!(read(&d, "memory.max"), "33554432");
    assert_eq!(read(&d, "pids.max"), "9");
    assert_eq!(read(&d, "hugetlb.2MB.max"), "2097152");
    assert_eq!(read(&d, "hugetlb.2MB.rsvd.max"), "2097152");
    if scheduler(&name).contains("[bfq]") {
        assert_eq!(read(&d, "io.bfq.weight"), format!("default 300\n{dev} 50"));
        if d.join("io.weight").exists() {
            // io cost control's default stays: BFQ took the weight.
            assert_eq!(read(&d, "io.weight"), "default 100");
        }
    }
    let out = g.output_in("read _; cat /proc/self/cgroup");
    assert_eq!(out.trim(), format!("0::/{top}/b/c"));
}

/// With BFQ off the disk, a per-device weight goes to io.weight (io cost control,
/// converted), which the kernel refuses (EOPNOTSUPP) unless io.cost.qos enables it for
/// the disk: berth's error then names the field and says so.
#[test]
fn device_weights_follow_the_disks_scheduler() {
    let l = v2_or_skip!();
    let _disk = disk_lock();
    let (dev, name) = disk();
    let qos = root(&l).join("io.cost.qos");
    if !scheduler(&name).contains("bfq") || !qos.exists() {
        println!("SKIP: {name} cannot use BFQ, or no io cost control");
        return;
    }
    let (maj, min) = dev.split_once(':').unwrap();
    let json = format!(
        r#"{{"blockIO": {{"weight": 500,
            "weightDevice": [{{"major": {maj}, "minor": {min}, "weight": 100}}]}}}}"#
    );
    {
        let _s = Scheduler::set(&name, "bfq");
        let g = create_quiet(&l, "kbfq", &json);
        assert_eq!(
            read(&leaf(&g), "io.bfq.weight"),
            format!("default 500\n{dev} 100")
        );
    }
    let _s = Scheduler::set(&name, "mq-deadline");
    let e = CgroupManager::create(&l, &test_path("kiowoff"), Some(&res(&json)))
        .map(|_| ())
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("blockIO.weightDevice[0]") && msg.contains("io.cost.qos"),
        "{msg}"
    );
    if std::env::var("BERTH_VM_LAYOUT").is_err() {
        println!("SKIP: io.cost.qos of the host's disk is only changed in the VM");
        return;
    }
    struct Qos(PathBuf, String);
    impl Drop for Qos {
        fn drop(&mut self) {
            let _ = fs::write(&self.0, format!("{} enable=0", self.1));
        }
    }
    fs::write(&qos, format!("{dev} enable=1")).unwrap();
    let _q = Qos(qos, dev.clone());
    let g = create_quiet(&l, "kiow", &json);
    let d = leaf(&g);
    // The default weight to BFQ (the kernel has it), the device's to io cost control.
    assert_eq!(read(&d, "io.bfq.weight"), "default 500");
    assert_eq!(read(&d, "io.weight"), format!("default 100\n{dev} 910"));
}

/// Relative cgroupsPath on a pure v2 host: the runtime's own cgroup has processes (the
/// no-internal-process rule forbids controllers below it), so the path is taken from its
/// parent, as runc does; an absolute path is taken from the root.
#[test]
fn relative_and_absolute_paths() {
    let _ = v2_or_skip!();
    let host = Layout::detect().unwrap();
    let h = host.unified().unwrap();
    let own = h.own_cgroup.clone();
    let name = unique("krel");
    let rel = CgroupPath::from_spec(Some(Path::new(&name)), "x").unwrap();
    let (cg, w) = CgroupManager::create(
        &host,
        &rel,
        Some(&res(r#"{"memory": {"limit": 33554432}}"#)),
    )
    .unwrap();
    let mut g = Guard::new(cg);
    assert!(w.is_empty(), "{w:?}");
    let base = own.parent().unwrap_or(Path::new("/")).to_path_buf();
    assert_eq!(g.cg.cgroups()["cgroup2"], base.join(&name));
    assert_eq!(read(&leaf(&g), "memory.max"), "33554432");
    let out = g.output_in("read _; cat /proc/self/cgroup");
    assert_eq!(out.trim(), format!("0::{}", base.join(&name).display()));
    // Reopened from the same process, the same cgroup.
    let again = CgroupManager::open(&host, &rel).unwrap();
    assert_eq!(again.paths()[0].1, leaf(&g));
    drop(g);

    let abs = format!("/{}", unique("kabs"));
    let p = CgroupPath::from_spec(Some(Path::new(&abs)), "x").unwrap();
    let (cg, _) =
        CgroupManager::create(&host, &p, Some(&res(r#"{"pids": {"limit": 3}}"#))).unwrap();
    let g = Guard::new(cg);
    assert_eq!(leaf(&g), h.mount_point.join(&abs[1..]));
    assert_eq!(read(&leaf(&g), "pids.max"), "3");
}

#[test]
fn stats_from_the_kernel_files() {
    let l = v2_or_skip!();
    let (dev, _) = disk();
    let mut g = create_quiet(
        &l,
        "kstats",
        &format!(
            r#"{{"memory": {{"limit": {}}}, "pids": {{"limit": 50}}}}"#,
            256 * MIB
        ),
    );
    g.cg.enable_controllers(&["io", "cpu"]).unwrap();
    let out = g.output_in(&format!(
        "read _; dd if=/dev/{} of=/dev/null bs=4096 count=64 2>/dev/null; \
         i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo done",
        disk().1
    ));
    assert_eq!(out.trim(), "done");
    let (_, r) = helper_in(&mut g, "alloc 16");
    assert_eq!(r, "allocated 16");
    let s = g.cg.stats().unwrap();
    assert!(s.cpu.usage_total_ns > 0 && s.cpu.usage_user_ns > 0, "{s:?}");
    assert!(
        s.memory.usage >= 16 * MIB && s.memory.max_usage >= s.memory.usage,
        "{s:?}"
    );
    assert_eq!(s.memory.limit, 256 * MIB);
    assert!(
        s.memory.raw.contains_key("anon") && s.memory.raw["anon"] >= 16 * MIB,
        "{s:?}"
    );
    assert_eq!(s.memory.events, MemoryEvents::default());
    // pids counts tasks: the helper's threads (the test harness runs it in one).
    let pid = g.pid(g.children.len() - 1);
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).unwrap().count() as u64;
    assert_eq!((s.pids.current, s.pids.limit), (tasks, 50));
    let (maj, min) = dev.split_once(':').unwrap();
    let read_bytes: u64 = s
        .blkio
        .service_bytes
        .iter()
        .filter(|e| e.op == "Read" && e.major.to_string() == maj && e.minor.to_string() == min)
        .map(|e| e.value)
        .sum();
    assert!(read_bytes >= 4096, "{:?}", s.blkio);
    assert!(s.hugetlb.contains_key("2MB"), "{s:?}");
}

/// Freeze, thaw and cgroup.kill with controllers enabled, and the device filter replaced
/// while a process runs (one program attached at every step).
#[test]
fn freeze_kill_and_device_filter_with_controllers() {
    let l = v2_or_skip!();
    let mut g = create_quiet(
        &l,
        "kfrz",
        r#"{"memory": {"limit": 67108864}, "cpu": {"shares": 512},
            "devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]}"#,
    );
    let d = leaf(&g);
    let i = g.spawn_in("read _; while :; do :; done");
    let pid = g.pid(i);
    eventually(5, "the loop to run", || cpu_ticks(pid) > 0);
    g.cg.freeze().unwrap();
    assert!(read(&d, "cgroup.events").contains("frozen 1"));
    assert_eq!(g.cg.freezer_state().unwrap(), FreezerState::Frozen);
    g.cg.thaw().unwrap();
    assert_eq!(g.cg.freezer_state().unwrap(), FreezerState::Thawed);
    let fd = g.cg.dir_fd().unwrap();
    let before = query_programs(fd, &d).unwrap();
    assert_eq!(before.len(), 1);
    g.cg.update(&res(r#"{"devices": [{"allow": true, "access": "rwm"}]}"#))
        .unwrap();
    let after = query_programs(g.cg.dir_fd().unwrap(), &d).unwrap();
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);
    g.cg.kill_all().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(g.children[i].wait().unwrap().signal(), Some(libc::SIGKILL));
    g.cg.remove(Duration::from_secs(5)).unwrap();
    assert!(!d.exists());
}
