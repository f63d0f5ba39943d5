//! Containers in real cgroups: limits seen from inside, pause/resume, update, ps, OOM events,
//! kill --all through the cgroup, and no cgroup left behind by a failed create or a delete.

mod common;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_runtime_core::oci_spec::runtime::{
    LinuxNamespace, LinuxNamespaceType, LinuxResources, Spec,
};
use berth_runtime_core::{Error, Status};
use common::Bundle;
use support::*;

/// The directories named `berth/<id>` in every mounted hierarchy (none once deleted).
fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    cgroup_dirs_named(&format!("berth/{id}"))
}

/// The cgroup directory of `id` in the v1 hierarchy `name`, or the cgroup2 one.
fn host_dir(id: &str, v1: &str) -> PathBuf {
    let p = PathBuf::from("/sys/fs/cgroup")
        .join(v1)
        .join("berth")
        .join(id);
    if p.exists() {
        p
    } else {
        PathBuf::from("/sys/fs/cgroup/berth").join(id)
    }
}

fn set_resources(spec: &mut Spec, json: &str) {
    let r: LinuxResources = serde_json::from_str(json).expect("resources JSON");
    if let Some(l) = spec.linux_mut() {
        l.set_resources(Some(r));
    }
}

fn set_ns(spec: &mut Spec, typ: LinuxNamespaceType, present: bool) {
    if let Some(l) = spec.linux_mut() {
        let mut list: Vec<LinuxNamespace> = l.namespaces().clone().unwrap_or_default();
        list.retain(|n| n.typ() != typ);
        if present {
            let mut n = LinuxNamespace::default();
            n.set_typ(typ);
            list.push(n);
        }
        l.set_namespaces(Some(list));
    }
}

/// Asserts, after the harness is gone, that the container's cgroup is too.
fn assert_no_cgroup(id: &str) {
    let left = cgroup_dirs(id);
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

fn await_file(out: &common::TempDir, name: &str) -> String {
    let p = out.path().join(name);
    assert!(
        wait_until(Duration::from_secs(10), || fs::read_to_string(&p)
            .is_ok_and(|s| s.ends_with('\n'))),
        "the container did not write {}",
        p.display()
    );
    read(&p)
}

#[test]
fn limits_are_visible_inside_with_a_cgroup_namespace() {
    let (mut b, out) = sh_bundle(
        "cat /proc/self/cgroup > /out/cgroup.tmp; mv /out/cgroup.tmp /out/cgroup; \
         (cat /sys/fs/cgroup/memory/memory.limit_in_bytes || cat /sys/fs/cgroup/memory.max) > /out/mem; \
         (cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us || cat /sys/fs/cgroup/cpu.max) > /out/cpu; \
         cat /sys/fs/cgroup/pids/pids.max > /out/pids || cat /sys/fs/cgroup/pids.max > /out/pids",
    );
    set_ns(&mut b.spec, LinuxNamespaceType::Cgroup, true);
    set_resources(
        &mut b.spec,
        r#"{"memory": {"limit": 67108864}, "cpu": {"quota": 50000, "period": 100000},
            "pids": {"limit": 32}}"#,
    );
    let h = Harness::new();
    let id = h.id("cglimits");
    assert_eq!(h.run(&b), 0);
    assert_eq!(read(out.path().join("mem")), "67108864");
    let cpu = read(out.path().join("cpu"));
    assert!(cpu == "50000" || cpu == "50000 100000", "cpu: {cpu}");
    assert_eq!(read(out.path().join("pids")), "32");
    // With a cgroup namespace created after joining, the container's cgroup is its root.
    let cg = read(out.path().join("cgroup"));
    for line in cg.lines() {
        assert!(line.ends_with(":/"), "/proc/self/cgroup inside: {cg}");
    }
    drop(h);
    assert_no_cgroup(&id);
}

#[test]
fn without_a_cgroup_namespace_the_init_is_in_berth_id() {
    let (mut b, out) = sh_bundle("cat /proc/self/cgroup > /out/cgroup");
    set_ns(&mut b.spec, LinuxNamespaceType::Cgroup, false);
    let h = Harness::new();
    let id = h.id("cgplace");
    let c = h.create(&id, &b).expect("create");
    // Before start, the waiting init is already in its cgroup.
    let own = fs::read_to_string(format!("/proc/{}/cgroup", c.pid())).expect("read cgroup");
    let want = format!("/berth/{id}");
    assert!(
        own.lines()
            .filter(|l| !l.contains(":name="))
            .all(|l| l.ends_with(&want)),
        "{own}"
    );
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    let inside = read(out.path().join("cgroup"));
    assert!(inside.contains(&want), "{inside}");
    h.rt.delete(&id, false).expect("delete");
    assert_no_cgroup(&id);
    drop(h);
}

#[test]
fn pause_and_resume_a_running_loop() {
    let (b, out) = sh_bundle("i=0; while true; do i=$((i+1)); echo $i > /out/n; sleep 0.02; done");
    let h = Harness::new();
    let id = h.id("cgpause");
    let c = h.create(&id, &b).expect("create");
    // Only a running container can be paused.
    let e =
        h.rt.raw()
            .pause(&id)
            .expect_err("pause a created container");
    assert!(matches!(e, Error::InvalidState { .. }), "{e}");
    h.rt.start(&id).expect("start");
    let n = || fs::read_to_string(out.path().join("n")).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(10), || !n().is_empty()));
    let e =
        h.rt.raw()
            .resume(&id)
            .expect_err("resume a running container");
    assert_err_contains(&e, &["resume", "running"]);

    h.rt.raw().pause(&id).expect("pause");
    assert_eq!(h.rt.state(&id).expect("state").status, Status::Paused);
    let frozen_at = n();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(n(), frozen_at, "the loop went on while paused");
    let e = h.rt.raw().pause(&id).expect_err("pause twice");
    assert_err_contains(&e, &["pause", "paused"]);

    h.rt.raw().resume(&id).expect("resume");
    assert_eq!(h.rt.state(&id).expect("state").status, Status::Running);
    assert!(
        wait_until(Duration::from_secs(5), || n() != frozen_at),
        "the loop did not go on after resume"
    );

    // delete --force of a paused container kills it too.
    h.rt.raw().pause(&id).expect("pause again");
    h.rt.delete(&id, true)
        .expect("delete --force a paused container");
    assert!(h.wait(&c) >= 128);
    assert_no_cgroup(&id);
    drop(h);
}

#[test]
fn update_while_running() {
    let (mut b, _out) = sh_bundle("sleep 1000");
    set_resources(&mut b.spec, r#"{"memory": {"limit": 67108864}}"#);
    let h = Harness::new();
    let id = h.id("cgupdate");
    let _c = h.create(&id, &b).expect("create");
    h.rt.start(&id).expect("start");
    let file = host_dir(&id, "memory").join("memory.limit_in_bytes");
    let file = if file.exists() {
        file
    } else {
        host_dir(&id, "memory").join("memory.max")
    };
    assert_eq!(read(&file), "67108864");
    assert_eq!(h.rt.raw().stats(&id).expect("stats").memory.limit, 67108864);
    let r: LinuxResources =
        serde_json::from_str(r#"{"memory": {"limit": 134217728}, "pids": {"limit": 50}}"#)
            .expect("resources");
    h.rt.raw().update(&id, &r).expect("update");
    assert_eq!(read(&file), "134217728");
    let stats = h.rt.raw().stats(&id).expect("stats");
    assert_eq!(stats.memory.limit, 134217728);
    assert_eq!(stats.pids.limit, 50);
    assert!(stats.pids.current >= 1, "{:?}", stats.pids);

    // A rejected value is an error naming the field or file, and the old value stays.
    let bad: LinuxResources =
        serde_json::from_str(r#"{"cpu": {"cpus": "99999"}}"#).expect("resources");
    let e =
        h.rt.raw()
            .update(&id, &bad)
            .expect_err("update with an invalid cpuset");
    assert_err_contains(&e, &["cpus"]);
    h.rt.delete(&id, true).expect("delete");
    assert_no_cgroup(&id);
    drop(h);
}

#[test]
fn ps_lists_the_processes() {
    let (b, out) = sh_bundle("sleep 1000 & sleep 1000 & echo started > /out/s; wait");
    let h = Harness::new();
    let id = h.id("cgps");
    let c = h.create(&id, &b).expect("create");
    assert_eq!(h.rt.raw().ps(&id).expect("ps of created"), vec![c.pid()]);
    h.rt.start(&id).expect("start");
    await_file(&out, "s");
    let pids = h.rt.raw().ps(&id).expect("ps");
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(pids.contains(&c.pid()), "{pids:?}");
    h.rt.delete(&id, true).expect("delete");
    let e = h.rt.raw().ps(&id).expect_err("ps of a deleted container");
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert_no_cgroup(&id);
    drop(h);
}

#[test]
fn kill_all_without_a_pid_namespace_goes_through_the_cgroup() {
    let (mut b, out) = sh_bundle("sleep 1000 & sleep 1000 & echo started > /out/s; wait");
    set_ns(&mut b.spec, LinuxNamespaceType::Pid, false);
    let h = Harness::new();
    let id = h.id("cgkillall");
    let c = h.create(&id, &b).expect("create");
    h.rt.start(&id).expect("start");
    await_file(&out, "s");
    let pids = h.rt.raw().ps(&id).expect("ps");
    assert_eq!(pids.len(), 3, "{pids:?}");
    h.rt.kill(&id, libc::SIGTERM, true).expect("kill --all");
    assert_eq!(h.wait(&c), 128 + libc::SIGTERM);
    for p in pids {
        assert!(
            wait_until(Duration::from_secs(5), || !alive(p)),
            "process {p} of the container survived kill --all"
        );
    }
    h.rt.delete(&id, false).expect("delete");
    assert_no_cgroup(&id);
    drop(h);
}

#[test]
fn oom_kill_is_reported() {
    let (mut b, _out) = sh_bundle("x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done");
    set_resources(
        &mut b.spec,
        r#"{"memory": {"limit": 8388608, "swap": 8388608}}"#,
    );
    let h = Harness::new();
    let id = h.id("cgoom");
    let c = h.create(&id, &b).expect("create");
    let mut w = h.rt.raw().oom_watcher(&id).expect("oom watcher");
    h.rt.start(&id).expect("start");
    let ev = w
        .wait(Duration::from_secs(20))
        .expect("wait for OOM")
        .expect("no OOM event within 20 s");
    assert!(ev.oom_kill >= 1 || ev.oom >= 1, "{ev:?}");
    assert_eq!(h.wait(&c), 128 + libc::SIGKILL);
    let stats = h.rt.raw().stats(&id);
    // Stopped: stats are refused, as runc does.
    assert!(stats.is_err());
    h.rt.delete(&id, false).expect("delete");
    assert_no_cgroup(&id);
    drop(h);
}

#[test]
fn an_invalid_resource_fails_create_and_leaves_nothing() {
    let mut b = Bundle::new();
    set_resources(&mut b.spec, r#"{"cpu": {"cpus": "99999"}}"#);
    let h = Harness::new();
    let id = h.id("cginval");
    let e = h
        .create(&id, &b)
        .expect_err("create with an invalid cpuset");
    assert_err_contains(&e, &["cpus", "99999"]);
    assert!(!h.state_dir(&id).exists());
    assert_no_cgroup(&id);

    // A failure after the init is in its cgroup removes the cgroup too.
    let mut b = Bundle::new();
    b.args(&["/does/not/exist"]);
    let id = h.id("cgnoexec");
    h.create(&id, &b)
        .expect_err("create with a missing program");
    assert!(!h.state_dir(&id).exists());
    assert_no_cgroup(&id);
    drop(h);
}

#[test]
fn slow_path_also_roots_the_cgroup_namespace_at_the_container_cgroup() {
    // A time namespace makes the runtime go through the intermediate child.
    let (mut b, out) = sh_bundle("cat /proc/self/cgroup > /out/cgroup");
    set_ns(&mut b.spec, LinuxNamespaceType::Cgroup, true);
    set_ns(&mut b.spec, LinuxNamespaceType::Time, true);
    let h = Harness::new();
    let id = h.id("cgslow");
    let c = h.create(&id, &b).expect("create");
    let own = fs::read_to_string(format!("/proc/{}/cgroup", c.pid())).expect("read cgroup");
    // Every hierarchy (v1's memory line or v2's `0::` line alike).
    let in_own = |l: &&str| l.ends_with(&format!(":/berth/{id}"));
    assert!(
        own.lines()
            .filter(|l| !l.contains(":name="))
            .all(|l| in_own(&l)),
        "{own}"
    );
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    let cg = read(out.path().join("cgroup"));
    for line in cg.lines().filter(|l| !l.contains(":name=")) {
        assert!(line.ends_with(":/"), "/proc/self/cgroup inside: {cg}");
    }
    h.rt.delete(&id, false).expect("delete");
    assert_no_cgroup(&id);
    drop(h);
}

#[test]
fn delete_works_when_the_cgroup_is_already_gone() {
    let mut b = Bundle::new();
    b.args(&["/bin/true"]);
    let h = Harness::new();
    let id = h.id("cggone");
    let c = h.create(&id, &b).expect("create");
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    let dirs = cgroup_dirs(&id);
    assert!(!dirs.is_empty());
    for d in &dirs {
        fs::remove_dir(d).unwrap_or_else(|e| panic!("rmdir {}: {e}", d.display()));
    }
    h.rt.delete(&id, false)
        .expect("delete without a cgroup directory");
    // The shared default parent, unless another container uses it.
    for d in &dirs {
        if let Some(parent) = d.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
    assert!(!h.state_dir(&id).exists());
    let e = h.rt.raw().ps(&id).expect_err("ps after delete");
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    drop(h);
    assert_no_cgroup(&id);
}

#[test]
fn kill_all_sigkill_of_a_paused_container_kills_it() {
    let (b, out) = sh_bundle("echo up > /out/up; while true; do sleep 0.02; done");
    let h = Harness::new();
    let id = h.id("cgkillpaused");
    let c = h.create(&id, &b).expect("create");
    h.rt.start(&id).expect("start");
    assert!(wait_until(Duration::from_secs(10), || out
        .path()
        .join("up")
        .exists()));
    h.rt.raw().pause(&id).expect("pause");
    assert_eq!(h.rt.state(&id).expect("state").status, Status::Paused);
    h.rt.kill(&id, libc::SIGKILL, true)
        .expect("kill --all KILL");
    assert_eq!(h.wait(&c), 128 + libc::SIGKILL);
    h.rt.delete(&id, false).expect("delete");
    assert_no_cgroup(&id);
}

#[test]
fn a_failed_create_removes_the_parents_it_made() {
    let (mut b, _out) = sh_bundle("true");
    let top = format!("/berth-test-{}", std::process::id());
    let linux = b.spec.linux_mut().as_mut().expect("linux");
    linux.set_cgroups_path(Some(PathBuf::from(format!("{top}/a/b"))));
    let res: berth_runtime_core::oci_spec::runtime::LinuxResources =
        serde_json::from_str(r#"{"memory": {"limit": 33554432, "swap": 16777216}}"#)
            .expect("resources");
    linux.set_resources(Some(res));
    let h = Harness::new();
    let id = h.id("cgparents");
    h.create(&id, &b)
        .expect_err("swap below the limit is refused");
    let left = cgroup_dirs_named(top.trim_start_matches('/'));
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// runc puts the init in every mounted v1 hierarchy, the named `name=systemd` one of a
/// hybrid or v1 host included, at the same `linux.cgroupsPath` (on pure v2, the one
/// hierarchy): the container's `/proc/self/cgroup` equals runc's on the same bundle, line
/// for line.
#[test]
fn proc_self_cgroup_equals_runcs() {
    use std::process::{Command, Stdio};
    if Command::new("runc").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "runc is missing under CI");
        eprintln!("SKIP: runc not installed");
        return;
    }
    /// Removes the test's cgroup from every hierarchy, whoever left it.
    struct RemoveEverywhere(String);
    impl Drop for RemoveEverywhere {
        fn drop(&mut self) {
            for d in cgroup_dirs_named(&self.0) {
                let _ = fs::remove_dir(d);
            }
        }
    }
    let (mut b, out) = sh_bundle("cat /proc/self/cgroup > /out/cgroup");
    set_ns(&mut b.spec, LinuxNamespaceType::Cgroup, false);
    let name = common::unique("berth-test-cgcmp");
    let _rm = RemoveEverywhere(name.clone());
    let linux = b.spec.linux_mut().as_mut().expect("linux");
    linux.set_cgroups_path(Some(PathBuf::from(format!("/{name}"))));

    let h = Harness::new();
    assert_eq!(h.run(&b), 0);
    let ours = read(out.path().join("cgroup"));
    fs::remove_file(out.path().join("cgroup")).expect("rm output");
    assert_eq!(cgroup_dirs_named(&name), Vec::<PathBuf>::new());

    let root = common::TempDir::new("berth-runc-root");
    let id = common::unique("cgcmp-runc");
    let st = Command::new("runc")
        .arg("--root")
        .arg(root.path())
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .stdin(Stdio::null())
        .status()
        .expect("runc run");
    let _ = Command::new("runc")
        .arg("--root")
        .arg(root.path())
        .args(["delete", "-f", &id])
        .status();
    assert!(st.success(), "runc run: {st}");
    let theirs = read(out.path().join("cgroup"));
    if Path::new("/sys/fs/cgroup/systemd").exists() {
        assert!(
            theirs
                .lines()
                .any(|l| l.ends_with(&format!(":name=systemd:/{name}"))),
            "{theirs}"
        );
    }
    // runc 1.1 predates the misc controller (5.13) and leaves its v1 hierarchy alone; berth
    // joins every mounted hierarchy.
    let known_to_runc = |s: &str| {
        s.lines()
            .filter(|l| !l.contains(":misc:"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    assert_eq!(known_to_runc(&ours), known_to_runc(&theirs));
}

/// `name` below the mount point of every cgroup hierarchy of this host that has it: each
/// hierarchy once (not also through the `cpu` -> `cpu,cpuacct` symlinks of a v1 host), and the
/// root itself on a pure v2 host.
fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    berth_runtime_core::berth_cgroups::Layout::detect()
        .expect("the host's cgroup layout")
        .hierarchies()
        .map(|h| h.mount_point.join(name))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn delete_container_removes_the_cgroup_create_kept_and_nothing_else() {
    let h = Harness::new();
    let b = Bundle::new();
    let id = h.id("keptcg");
    let c = h.run_started(&id, &b).expect("run");
    assert!(!cgroup_dirs(&id).is_empty(), "run made no cgroup");
    assert_eq!(h.wait(&c), 0);
    h.rt.delete_container(c, false).expect("delete_container");
    assert!(cgroup_dirs(&id).is_empty(), "{:?}", cgroup_dirs(&id));
    assert!(h.leftover_state().is_empty());

    // The id deleted and taken again meanwhile: the other container is not ours to delete.
    let first = h.run_started(&id, &b).expect("run");
    assert_eq!(h.wait(&first), 0);
    h.rt.delete(&id, false).expect("delete by id");
    let second = h.run_started(&id, &b).expect("run again");
    assert_eq!(h.wait(&second), 0);
    assert!(matches!(
        h.rt.delete_container(first, false),
        Err(Error::NotFound { .. })
    ));
    assert!(
        !cgroup_dirs(&id).is_empty(),
        "the second container's cgroup went"
    );
    h.rt.delete_container(second, false)
        .expect("delete the second");
    assert!(cgroup_dirs(&id).is_empty());
    assert!(h.leftover_state().is_empty());
}
