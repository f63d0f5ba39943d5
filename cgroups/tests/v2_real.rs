//! The real cgroup2 hierarchy of this host, used as a pure v2 layout
//! ([`Layout::unified_at`] its mount point): cgroup.procs, cgroup.freeze, cgroup.kill,
//! cgroup.events, cpu.stat, device eBPF programs and clone3(CLONE_INTO_CGROUP).
//! On a hybrid host the cgroup2 hierarchy has no cpu/memory/io/pids controllers (their
//! files are tested against a fake tree in v2_fake.rs and, on a pure v2 kernel, in
//! v2_kernel.rs); these tests hold on both, deciding by what the hierarchy's
//! cgroup.controllers offers.

mod common;

use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use berth_cgroups::devices::query_programs;
use berth_cgroups::{CgroupError, CgroupManager, CgroupMode, FreezerState, Layout, MemoryEvents};
use common::*;

fn v2() -> Layout {
    let host = Layout::detect().unwrap();
    let mount = host
        .unified()
        .expect("this host has a cgroup2 mount")
        .mount_point
        .clone();
    let l = Layout::unified_at(mount).unwrap();
    assert_eq!(l.mode(), CgroupMode::Unified);
    l
}

/// Whether the cgroup2 hierarchy offers `controller` (its root's cgroup.controllers).
fn offers(controller: &str) -> bool {
    v2().unified().unwrap().has(controller)
}

fn create_v2(what: &str, r: Option<&oci_spec::runtime::LinuxResources>) -> Guard {
    let (cg, w) = CgroupManager::create(&v2(), &test_path(what), r).unwrap();
    assert!(w.is_empty(), "{w:?}");
    Guard::new(cg)
}

#[test]
fn procs_events_freeze_thaw_kill_remove() {
    let mut g = create_v2("v2life", None);
    let dir = g.cg.paths()[0].1.to_path_buf();
    assert_eq!(read(&dir, "cgroup.events"), "populated 0\nfrozen 0");
    let i = g.spawn_in("read _; while :; do :; done");
    let pid = g.pid(i);
    assert_eq!(g.cg.pids().unwrap(), vec![pid]);
    let name = dir.file_name().unwrap().to_str().unwrap();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(own.contains(&format!("0::/{name}\n")), "{own}");
    assert!(read(&dir, "cgroup.events").contains("populated 1"));
    eventually(5, "the loop to use CPU", || cpu_ticks(pid) > 0);

    g.cg.freeze().unwrap();
    assert_eq!(read(&dir, "cgroup.freeze"), "1");
    assert!(read(&dir, "cgroup.events").contains("frozen 1"));
    assert_eq!(g.cg.freezer_state().unwrap(), FreezerState::Frozen);
    let t1 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(pid), t1, "a frozen process ran");
    g.cg.thaw().unwrap();
    assert_eq!(g.cg.freezer_state().unwrap(), FreezerState::Thawed);
    eventually(5, "the thawed loop to run", || cpu_ticks(pid) > t1);

    // cpu.stat is a core file of cgroup2: usage is there without the cpu controller.
    let s = g.cg.stats().unwrap();
    assert!(s.cpu.usage_total_ns > 0, "{s:?}");

    g.cg.kill_all().unwrap();
    assert_eq!(g.children[i].wait().unwrap().signal(), Some(libc::SIGKILL));
    g.cg.remove(Duration::from_secs(5)).unwrap();
    assert!(!dir.exists());
}

#[test]
fn kill_all_takes_forked_children_and_remove_waits_for_them() {
    let mut g = create_v2("v2kill", None);
    let i = g.spawn_in("read _; sleep 100 & sleep 100 & sleep 100 & echo started; wait");
    let mut line = [0u8; 8];
    g.children[i]
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut line)
        .unwrap();
    assert_eq!(g.cg.pids().unwrap().len(), 4);
    g.cg.kill_all().unwrap();
    // No wait in between: remove retries until the kernel has emptied the cgroup.
    g.cg.remove(Duration::from_secs(10)).unwrap();
    assert!(!g.cg.paths()[0].1.exists());
    assert_eq!(g.children[i].wait().unwrap().signal(), Some(libc::SIGKILL));
}

const NULL_ZERO: &str = r#"{"devices": [
    {"allow": false, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}]}"#;

const SCRIPT: &str = "read _; (head -c1 /dev/zero | wc -c) 2>/dev/null; \
    (echo x > /dev/null) 2>/dev/null && echo null-ok; \
    (echo x > /dev/zero) 2>/dev/null || echo zero-write-denied; \
    (head -c1 /dev/full >/dev/null) 2>/dev/null && echo full-ok || echo full-denied";

fn run_script(g: &mut Guard) -> String {
    g.output_in(SCRIPT)
}

#[test]
fn device_program_is_enforced_and_replaced() {
    let mut g = create_v2("v2dev", Some(&res(NULL_ZERO)));
    let dir = g.cg.paths()[0].1.to_path_buf();
    let fd = g.cg.dir_fd().unwrap();
    assert_eq!(query_programs(fd, &dir).unwrap().len(), 1);
    assert_eq!(
        run_script(&mut g),
        "1\nnull-ok\nzero-write-denied\nfull-denied\n"
    );

    // New rules replace the program: /dev/full readable, /dev/zero no longer.
    let r = res(r#"{"devices": [
        {"allow": true, "access": "rwm"},
        {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]}"#);
    g.cg.update(&r).unwrap();
    let fd = g.cg.dir_fd().unwrap();
    assert_eq!(query_programs(fd, &dir).unwrap().len(), 1);
    assert_eq!(
        run_script(&mut g),
        "0\nnull-ok\nzero-write-denied\nfull-ok\n"
    );
}

#[test]
fn clone3_into_cgroup_starts_the_child_inside() {
    let g = create_v2("v2clone", None);
    assert!(g.cg.clone_into_cgroup_is_enough());
    let fd = g.cg.dir_fd().unwrap().as_raw_fd();
    let prog = CString::new("/bin/sleep").unwrap();
    let arg1 = CString::new("100").unwrap();
    let argv = [prog.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    // SAFETY: a fork-like clone3 (no CLONE_VM, no stack); the child only calls execv on
    // pre-built C strings and _exit.
    let pid = match unsafe { berth_sys::raw_clone_into_cgroup(0, fd) } {
        Ok(0) => {
            // SAFETY: argv is NUL-terminated and its strings outlive the call.
            unsafe {
                libc::execv(prog.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
        }
        Ok(pid) => pid,
        Err(e) => panic!("clone3: errno {e}"),
    };
    struct Reap(i32);
    impl Drop for Reap {
        fn drop(&mut self) {
            // SAFETY: kill and waitpid of our own child.
            unsafe {
                libc::kill(self.0, libc::SIGKILL);
                libc::waitpid(self.0, std::ptr::null_mut(), 0);
            }
        }
    }
    let _reap = Reap(pid);
    assert_eq!(g.cg.pids().unwrap(), vec![pid]);
}

#[test]
fn unified_keys_are_validated_and_written() {
    let g = create_v2(
        "v2unified",
        Some(&res(
            r#"{"unified": {"cgroup.max.descendants": "3", "cgroup.max.depth": "2"}}"#,
        )),
    );
    let dir = g.cg.paths()[0].1.to_path_buf();
    assert_eq!(read(&dir, "cgroup.max.descendants"), "3");
    assert_eq!(read(&dir, "cgroup.max.depth"), "2");
    // A key of a controller the hierarchy lacks is refused, naming the controller; one
    // it offers is written (the kernel rounds memory.max down to whole pages).
    let r = res(r#"{"unified": {"memory.max": "1"}}"#);
    if offers("memory") {
        g.cg.apply(&r).unwrap();
        assert_eq!(read(&dir, "memory.max"), "0");
    } else {
        let e = g.cg.apply(&r).unwrap_err();
        assert!(
            matches!(&e, CgroupError::ControllerUnavailable { controller, .. } if controller == "memory"),
            "{e}"
        );
        assert!(e.to_string().contains("unified.memory.max"), "{e}");
    }
    for (key, want) in [
        ("cgroup.procs", "managed by the runtime"),
        ("../etc", "<controller>.<file>"),
        ("nodot", "<controller>.<file>"),
        ("cgroup.nosuchfile", "does not exist"),
    ] {
        let r = res(&format!(r#"{{"unified": {{"{key}": "1"}}}}"#));
        let e = g.cg.apply(&r).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(want), "{key}: {e}");
    }
    let e =
        g.cg.apply(&res(r#"{"unified": {"cgroup.max.depth": "lots"}}"#))
            .unwrap_err();
    assert!(matches!(e, CgroupError::Write { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("cgroup.max.depth") && msg.contains("lots"),
        "{msg}"
    );
}

#[test]
fn freezing_an_empty_cgroup_and_stats_of_a_bare_v2() {
    let g = create_v2("v2empty", None);
    g.cg.freeze().unwrap();
    assert_eq!(g.cg.freezer_state().unwrap(), FreezerState::Frozen);
    g.cg.thaw().unwrap();
    let s = g.cg.stats().unwrap();
    assert_eq!(s.pids.current, 0);
    if offers("memory") {
        // The memory controller's events: none yet in a fresh cgroup.
        let mut w = g.cg.oom_watcher().unwrap();
        assert_eq!(w.last(), MemoryEvents::default());
        assert_eq!(w.wait(Duration::from_millis(50)).unwrap(), None);
        assert_eq!(s.memory.limit, u64::MAX, "{s:?}");
    } else {
        // No memory controller: no OOM watcher either, and an error says so.
        let e = g.cg.oom_watcher().unwrap_err().to_string();
        assert!(e.contains("memory"), "{e}");
    }
}

/// The eBPF program of a container's rules (its own, then the fixed default set): what
/// `linux.resources.devices` denies stays denied, /dev/kmsg here; access strings are
/// read as runc reads them ("rwa" is "rw"), a rule without an access is refused.
#[test]
fn device_program_of_container_rules_denies_all_but_the_default_set() {
    let r = res(r#"{"devices": [{"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwa"}]}"#);
    let mut g = create_v2(
        "v2devdef",
        Some(&berth_cgroups::devices::with_defaults(Some(&r))),
    );
    let out = g.output_in(
        "read _; echo x > /dev/null && echo null-ok; head -c1 /dev/urandom | wc -c; \
         (echo x > /dev/kmsg) 2>/dev/null || echo kmsg-denied; \
         head -c1 /dev/full | wc -c",
    );
    assert_eq!(out, "null-ok\n1\nkmsg-denied\n1\n");
    let e =
        g.cg.update(&res(r#"{"devices": [{"allow": false}]}"#))
            .unwrap_err();
    assert!(e.to_string().contains("devices[0].access"), "{e}");
}

/// A cgroup2 cgroup below a frozen parent is refused (the v2 freezer also stops
/// processes on a hybrid host), and nothing is left behind.
#[test]
fn creating_below_a_frozen_v2_cgroup_is_refused() {
    let g = create_v2("v2frz", None);
    g.cg.freeze().unwrap();
    let parent = g.cg.paths()[0].1.to_path_buf();
    let name = parent.file_name().unwrap().to_str().unwrap().to_string();
    let child =
        berth_cgroups::CgroupPath::from_spec(Some(format!("{name}/c").as_ref()), "x").unwrap();
    let e = CgroupManager::create(&v2(), &child, None).unwrap_err();
    assert!(matches!(e, CgroupError::Frozen { .. }), "{e}");
    assert!(!parent.join("c").exists());
    g.cg.thaw().unwrap();
}
