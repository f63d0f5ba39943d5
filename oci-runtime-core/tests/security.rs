//! Personality, I/O priority, scheduler, LSM labels and Intel RDT: what a real container sees
//! (`uname -m`, `ionice`, /proc/self/sched), what the kernel reports about its init from the
//! host while it waits in `created` (ioprio_get, sched_getattr), and clear config errors that
//! leave nothing behind for what this host cannot do (no AppArmor, no SELinux, no resctrl).
//!
//! runc 1.1 (installed here) ignores personality, ioPriority and scheduler, and skips LSM
//! labels on hosts without the LSM, so it is no oracle for these fields; crun 1.8 applies
//! `linux.personality`, and the personality test compares with it when it is installed.

mod common;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_runtime_core::oci_spec::runtime::{LinuxResources, Spec};
use berth_runtime_core::validate::ConfigError;
use berth_runtime_core::{Container, Error};
use common::{Bundle, TempDir, unique};
use support::*;

/// Sets a JSON-described part of the spec (`process.ioPriority` etc.) the way a config.json
/// would carry it.
fn set_json(spec: &mut Spec, pointer: &str, value: serde_json::Value) {
    let mut v = serde_json::to_value(&*spec).expect("spec to JSON");
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    v.pointer_mut(parent)
        .and_then(|p| p.as_object_mut())
        .unwrap_or_else(|| panic!("{parent} missing in spec"))
        .insert(key.to_string(), value);
    *spec = serde_json::from_value(v).expect("spec from JSON");
}

/// Makes busybox applets the shared bundle does not link available in the rootfs.
fn applets(b: &Bundle, names: &[&str]) {
    for n in names {
        let _ = std::os::unix::fs::symlink("busybox", b.rootfs().join("bin").join(n));
    }
}

/// `struct sched_attr` (version 0, 48 bytes) for sched_getattr(2) on the init.
#[repr(C)]
#[derive(Debug, Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

fn sched_of(pid: i32) -> SchedAttr {
    let mut a = SchedAttr::default();
    // SAFETY: a is a writable sched_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            pid,
            &mut a as *mut SchedAttr,
            48u32,
            0u32,
        )
    };
    assert_eq!(
        r,
        0,
        "sched_getattr({pid}): {}",
        std::io::Error::last_os_error()
    );
    a
}

fn ioprio_of(pid: i32) -> i64 {
    // SAFETY: integer arguments only (IOPRIO_WHO_PROCESS = 1).
    let r = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, pid) };
    assert!(
        r >= 0,
        "ioprio_get({pid}): {}",
        std::io::Error::last_os_error()
    );
    r
}

/// Creates, lets the caller look at the waiting init, starts, waits (exit 0) and deletes.
fn run_checking_created(h: &Harness, b: &Bundle, at_created: impl FnOnce(&Container)) {
    let id = h.id("sec");
    let c = h.create(&id, b).expect("create");
    at_created(&c);
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0, "container exit code");
    h.rt.delete(&id, false).expect("delete");
}

/// The `name : value` lines of a saved /proc/<pid>/sched.
fn sched_field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
}

/// The cgroup directories named `<rel>` in every mounted hierarchy.
fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    // The v1 hierarchies under /sys/fs/cgroup, or the cgroup2 one that is /sys/fs/cgroup.
    let top = std::iter::once(PathBuf::from("/sys/fs/cgroup"));
    let v1 = fs::read_dir("/sys/fs/cgroup")
        .expect("list /sys/fs/cgroup")
        .flatten()
        .map(|e| e.path());
    top.chain(v1)
        .map(|h| h.join(rel))
        .filter(|p| p.exists())
        .collect()
}

/// Whether the kernel has real-time group scheduling (`CONFIG_RT_GROUP_SCHED`, a v1 cpu
/// controller feature: Debian's kernels, and every cgroup2 host, have none). Without it a
/// real-time task needs no runtime in its cgroup.
fn rt_group_sched() -> bool {
    Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists()
}

/// Removes (empty) cgroup directories `<rel>` left in any hierarchy, even if the test failed.
struct CgroupGuard(String);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for d in cgroup_dirs(&self.0) {
            let _ = fs::remove_dir(&d);
        }
    }
}

/// `create` must fail with a config error about `field` whose reason contains `reason`, and
/// leave no state dir and no cgroup.
fn expect_config_error(h: &Harness, b: &Bundle, field: &str, reason: &str) {
    let id = h.id("badsec");
    match h.create(&id, b) {
        Err(Error::Config(ConfigError {
            field: f,
            reason: r,
            ..
        })) => {
            assert_eq!(f, field, "reason: {r}");
            assert!(r.contains(reason), "{f}: {r:?} lacks {reason:?}");
        }
        Err(e) => panic!("expected a config error about {field}, got {e:?}"),
        Ok(_) => panic!("create accepted {field} on this host"),
    }
    assert!(!h.state_dir(&id).exists(), "state dir left behind");
    let left = cgroup_dirs(&format!("berth/{id}"));
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

fn assert_not_warned(h: &Harness, field: &str) {
    let w = h.warnings();
    assert!(
        !w.iter().any(|w| w.contains(field)),
        "{field} still reported as not applied: {w:?}"
    );
}

#[test]
fn personality_linux32_makes_uname_show_i686() {
    let (mut b, out) = sh_bundle("uname -m > /out/machine");
    set_json(
        &mut b.spec,
        "/linux/personality",
        serde_json::json!({"domain": "LINUX32"}),
    );
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);
    assert_eq!(read(out.path().join("machine")), "i686");
    assert_not_warned(&h, "linux.personality");

    // crun 1.8 applies linux.personality: same bundle, same answer. It refuses hybrid
    // cgroup hosts, so it runs without the cgroup2 mount, in a private mount namespace.
    if Command::new("crun").arg("--version").output().is_ok() {
        let croot = TempDir::new("berth-crun-root");
        fs::remove_file(out.path().join("machine")).expect("rm machine");
        let id = unique("crun-pers");
        let st = Command::new("unshare")
            .args(["-m", "sh", "-c"])
            .arg(format!(
                "umount /sys/fs/cgroup/unified 2>/dev/null; crun --root {} run --bundle {} {id}",
                croot.path().display(),
                b.path().display()
            ))
            .status()
            .expect("run crun");
        assert!(st.success(), "crun run: {st}");
        assert_eq!(read(out.path().join("machine")), "i686", "crun disagrees");
    }
}

#[test]
fn io_priority_is_what_the_container_and_the_host_see() {
    for (class, level, inside, want) in [
        ("IOPRIO_CLASS_IDLE", 0, "idle", 3 << 13),
        ("IOPRIO_CLASS_BE", 6, "best-effort: prio 6", (2 << 13) | 6),
        ("IOPRIO_CLASS_RT", 1, "realtime: prio 1", (1 << 13) | 1),
    ] {
        let (mut b, out) = sh_bundle("ionice -p $$ > /out/ionice");
        applets(&b, &["ionice"]);
        set_json(
            &mut b.spec,
            "/process/ioPriority",
            serde_json::json!({"class": class, "priority": level}),
        );
        let h = Harness::new();
        run_checking_created(&h, &b, |c| {
            assert_eq!(
                ioprio_of(c.pid()),
                want,
                "{class}: ioprio of the waiting init"
            );
        });
        assert_eq!(read(out.path().join("ionice")), inside, "{class}");
        assert_not_warned(&h, "process.ioPriority");
    }
}

#[test]
fn scheduler_batch_with_nice_applies_to_the_container() {
    let (mut b, out) =
        sh_bundle("cat /proc/self/sched > /out/sched; cat /proc/self/stat > /out/stat");
    set_json(
        &mut b.spec,
        "/process/scheduler",
        serde_json::json!({"policy": "SCHED_BATCH", "nice": 5}),
    );
    let h = Harness::new();
    run_checking_created(&h, &b, |c| {
        let a = sched_of(c.pid());
        assert_eq!((a.policy, a.nice), (3, 5), "{a:?}");
    });
    // The children of the container's shell inherit it.
    let sched = read(out.path().join("sched"));
    assert_eq!(sched_field(&sched, "policy"), "3");
    let stat = read(out.path().join("stat"));
    let after = &stat[stat.rfind(')').expect("stat") + 2..];
    // Fields after the comm: state is field 3, nice is field 19.
    assert_eq!(after.split(' ').nth(16), Some("5"), "nice in {stat}");
    assert_not_warned(&h, "process.scheduler");
}

#[test]
fn scheduler_fifo_runs_with_real_time_runtime_in_its_cgroup() {
    // With real-time group scheduling (cpu.rt_runtime_us exists here) a SCHED_FIFO task needs
    // real-time runtime in its cgroup; a top-level cgroup can take it from the root's.
    if !rt_group_sched() {
        eprintln!("no real-time group scheduling on this kernel: cpu.realtimeRuntime not tested");
        return;
    }
    let name = unique("berthsec-rt");
    let _guard = CgroupGuard(name.clone());
    let (mut b, out) = sh_bundle("cat /proc/self/sched > /out/sched");
    set_json(
        &mut b.spec,
        "/process/scheduler",
        serde_json::json!({"policy": "SCHED_FIFO", "priority": 10}),
    );
    let r: LinuxResources =
        serde_json::from_str(r#"{"cpu": {"realtimeRuntime": 10000, "realtimePeriod": 1000000}}"#)
            .expect("resources");
    if let Some(l) = b.spec.linux_mut() {
        l.set_resources(Some(r));
        l.set_cgroups_path(Some(PathBuf::from(format!("/{name}"))));
    }
    let h = Harness::new();
    run_checking_created(&h, &b, |c| {
        let a = sched_of(c.pid());
        assert_eq!((a.policy, a.priority), (1, 10), "{a:?}");
    });
    let sched = read(out.path().join("sched"));
    assert_eq!(sched_field(&sched, "policy"), "1");
    // The kernel's prio of an RT task is 99 - rt_priority.
    assert_eq!(sched_field(&sched, "prio"), "89");
    drop(h);
    let left = cgroup_dirs(&name);
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

#[test]
fn scheduler_fifo_without_real_time_runtime_fails_clearly_and_leaves_nothing() {
    let mut b = Bundle::new();
    set_json(
        &mut b.spec,
        "/process/scheduler",
        serde_json::json!({"policy": "SCHED_RR", "priority": 5}),
    );
    let h = Harness::new();
    if !rt_group_sched() {
        // Nothing to run out of: the real-time task just runs.
        run_checking_created(&h, &b, |c| {
            let a = sched_of(c.pid());
            assert_eq!((a.policy, a.priority), (2, 5), "{a:?}");
        });
        return;
    }
    let id = h.id("rt-eperm");
    let e = h.create(&id, &b).expect_err("no RT runtime in /berth/<id>");
    assert_err_contains(&e, &["SCHED_RR", "process.scheduler", "realtimeRuntime"]);
    assert!(!h.state_dir(&id).exists(), "state dir left behind");
    let left = cgroup_dirs(&format!("berth/{id}"));
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

#[test]
fn scheduler_deadline_with_reset_on_fork() {
    // A SCHED_DEADLINE task cannot fork unless its children are reset to SCHED_OTHER: the
    // shell's first `cat` (forked) runs as an ordinary task while the init keeps the
    // deadline policy (the last command is exec'd by the shell, as pid 1).
    let (mut b, out) =
        sh_bundle("cat /proc/self/sched > /out/child; cat /proc/1/sched > /out/init");
    set_json(
        &mut b.spec,
        "/process/scheduler",
        serde_json::json!({
            "policy": "SCHED_DEADLINE",
            "runtime": 1_000_000,
            "deadline": 10_000_000,
            "period": 10_000_000,
            // oci-spec 0.10's name for it...
            "flags": ["SCHED_RESET_ON_FORK"]
        }),
    );
    b.write();
    // ...and config.json says it as the runtime spec does.
    let path = b.path().join("config.json");
    let text = fs::read_to_string(&path).expect("read config.json");
    assert!(text.contains("\"SCHED_RESET_ON_FORK\""), "{text}");
    fs::write(
        &path,
        text.replace("\"SCHED_RESET_ON_FORK\"", "\"SCHED_FLAG_RESET_ON_FORK\""),
    )
    .expect("write config.json");
    let h = Harness::new();
    let id = h.id("dl");
    let c = h
        .create_opts(
            &id,
            &berth_runtime_core::CreateOptions::new(b.path().to_path_buf()),
        )
        .expect("create with the spec's flag name");
    let a = sched_of(c.pid());
    assert_eq!(
        (a.policy, a.runtime, a.deadline, a.period, a.flags & 1),
        (6, 1_000_000, 10_000_000, 10_000_000, 1),
        "{a:?}"
    );
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    h.rt.delete(&id, false).expect("delete");
    assert_eq!(sched_field(&read(out.path().join("child")), "policy"), "0");
    assert_eq!(sched_field(&read(out.path().join("init")), "policy"), "6");
}

#[test]
fn invalid_values_are_config_errors() {
    let h = Harness::new();
    for (pointer, value, field, reason) in [
        (
            "/process/scheduler",
            serde_json::json!({"policy": "SCHED_ISO"}),
            "process.scheduler.policy",
            "SCHED_ISO",
        ),
        (
            "/process/scheduler",
            serde_json::json!({"policy": "SCHED_OTHER", "priority": 3}),
            "process.scheduler.priority",
            "SCHED_FIFO",
        ),
        (
            "/process/scheduler",
            serde_json::json!({"policy": "SCHED_FIFO"}),
            "process.scheduler.priority",
            "between 1 and 99",
        ),
        (
            "/process/ioPriority",
            serde_json::json!({"class": "IOPRIO_CLASS_BE", "priority": 8}),
            "process.ioPriority.priority",
            "not 8",
        ),
        (
            "/linux/personality",
            serde_json::json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}),
            "linux.personality.flags",
            "ADDR_NO_RANDOMIZE",
        ),
    ] {
        let mut b = Bundle::new();
        set_json(&mut b.spec, pointer, value);
        expect_config_error(&h, &b, field, reason);
    }
}

#[test]
fn uid_or_gid_minus_one_is_refused() {
    // (uid_t)-1 is "unchanged" to setresuid: the process would stay root.
    let h = Harness::new();
    for (uid, gid, extra, field) in [
        (u32::MAX, 0, None, "process.user.uid"),
        (0, u32::MAX, None, "process.user.gid"),
        (
            1000,
            1000,
            Some(vec![5, u32::MAX]),
            "process.user.additionalGids",
        ),
    ] {
        let mut b = Bundle::new();
        let p = b.spec.process_mut().as_mut().expect("process");
        let mut user = p.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        user.set_additional_gids(extra);
        p.set_user(user);
        expect_config_error(
            &h,
            &b,
            field,
            "4294967295 is (uid_t)-1, which the kernel reads as \"unchanged\"",
        );
    }
}

#[test]
fn lsm_labels_on_a_host_without_the_lsm_are_refused() {
    // This host has neither AppArmor nor SELinux: a container asking for confinement must
    // not start unconfined.
    let h = Harness::new();
    for (pointer, value, field, lsm) in [
        (
            "/process/apparmorProfile",
            "berth-default",
            "process.apparmorProfile",
            "AppArmor",
        ),
        (
            "/process/selinuxLabel",
            "system_u:system_r:container_t:s0:c1,c2",
            "process.selinuxLabel",
            "SELinux",
        ),
    ] {
        let mut b = Bundle::new();
        set_json(&mut b.spec, pointer, serde_json::json!(value));
        expect_config_error(&h, &b, field, &format!("{lsm} is not enabled on this host"));
    }
    // Empty values mean "not set": the container runs.
    let mut b = Bundle::new();
    set_json(
        &mut b.spec,
        "/process/apparmorProfile",
        serde_json::json!(""),
    );
    set_json(&mut b.spec, "/process/selinuxLabel", serde_json::json!(""));
    assert_eq!(h.run(&b), 0);
    // A mount label confines nothing: without SELinux it is left off, with a warning (crun
    // does the same; runc fails the mounts with EINVAL), and the container runs.
    let mut b = Bundle::new();
    set_json(
        &mut b.spec,
        "/linux/mountLabel",
        serde_json::json!("system_u:object_r:container_file_t:s0:c1,c2"),
    );
    let id = h.id("mountlabel");
    let c = h.create(&id, &b).expect("create with a mount label");
    assert!(
        c.warnings()
            .iter()
            .any(|w| w.contains("linux.mountLabel ignored")),
        "{:?}",
        c.warnings()
    );
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    h.rt.delete(&id, false).expect("delete");
}

#[test]
fn intel_rdt_without_resctrl_is_refused() {
    let h = Harness::new();
    let mut b = Bundle::new();
    set_json(
        &mut b.spec,
        "/linux/intelRdt",
        serde_json::json!({"closID": "gold", "l3CacheSchema": "L3:0=f"}),
    );
    expect_config_error(
        &h,
        &b,
        "linux.intelRdt",
        "resctrl is not mounted at /sys/fs/resctrl (no Intel RDT on this host)",
    );
}
