//! `Runtime::exec`: a process started in a running container sees what the init sees (its
//! namespaces, hostname, mounts, cgroup) with its own user, capabilities, env and cwd, and
//! reports its exit status; each checked from what the kernel shows or what it prints.

mod common;
mod support;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_runtime_core::oci_spec::runtime::{Capability, LinuxCapabilities, Process, User};
use berth_runtime_core::{Container, Error, ExecOptions, ExecProcess, Status};
use common::{Bundle, TempDir};
use support::console::{accept_master, read_master};
use support::*;

/// An exec'd process, killed and reaped on drop if the test did not wait for it.
struct Exec {
    p: ExecProcess,
    reaped: bool,
}

impl Exec {
    fn new(p: ExecProcess) -> Exec {
        Exec { p, reaped: false }
    }

    fn pid(&self) -> i32 {
        self.p.pid()
    }

    /// Waits for the process (killing it after [`WAIT_LIMIT`]) and returns its exit code.
    fn wait(&mut self) -> i32 {
        let pid = self.pid();
        let done = std::sync::atomic::AtomicBool::new(false);
        let code = std::thread::scope(|s| {
            s.spawn(|| {
                let deadline = Instant::now() + WAIT_LIMIT;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    if Instant::now() >= deadline {
                        // SAFETY: our unreaped child.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            let r = self.p.wait();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        });
        self.reaped = true;
        code.expect("ExecProcess::wait")
    }

    /// Sends `signal` to the process and returns its exit code.
    fn kill(&mut self, signal: i32) -> i32 {
        // SAFETY: signalling our own child, not reaped yet (so not recycled).
        unsafe { libc::kill(self.pid(), signal) };
        self.wait()
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: signalling and reaping our own child (not reaped yet, so not recycled).
            unsafe {
                libc::kill(self.pid(), libc::SIGKILL);
                let mut st = 0;
                libc::waitpid(self.pid(), &mut st, libc::__WALL);
            }
        }
    }
}

/// Execs `p` in container `id` with `opts`.
fn exec(h: &Harness, id: &str, p: &Process, opts: &ExecOptions) -> Exec {
    let e =
        h.rt.raw()
            .exec(id, p, opts)
            .unwrap_or_else(|e| panic!("exec {:?}: {e}", p.args()));
    Exec::new(e)
}

/// A running container (`sleep 1000`) with /out bound to the returned dir.
struct Running {
    _out: TempDir,
    out: PathBuf,
    b: Bundle,
    id: String,
    c: Container,
}

fn running(h: &Harness, prefix: &str, edit: impl FnOnce(&mut Bundle)) -> Running {
    let (mut b, out) = sh_bundle("exec sleep 1000");
    edit(&mut b);
    let id = h.id(prefix);
    let c = h.create(&id, &b).expect("create");
    h.rt.start(&id).expect("start");
    assert!(
        wait_until(Duration::from_secs(10), || {
            fs::read_to_string(format!("/proc/{}/comm", c.pid())).is_ok_and(|s| s.trim() == "sleep")
        }),
        "the container never reached sleep"
    );
    Running {
        out: out.path().to_path_buf(),
        _out: out,
        b,
        id,
        c,
    }
}

/// The container's config process with `args` (what `berth exec ID args...` starts).
fn process(r: &Running, args: &[&str]) -> Process {
    let mut p = r.b.spec.process().clone().expect("process");
    p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
    p.set_terminal(Some(false));
    p
}

/// Runs `p` in the container (default options) and returns its exit code.
fn exec_wait(h: &Harness, r: &Running, p: &Process) -> i32 {
    exec(h, &r.id, p, &ExecOptions::default()).wait()
}

/// Runs `sh -c script` in the container and returns its exit code.
fn exec_sh(h: &Harness, r: &Running, script: &str) -> i32 {
    exec_wait(h, r, &process(r, &["/bin/sh", "-c", script]))
}

/// Capabilities with CAP_KILL in the bounding, effective and permitted sets and nothing else.
fn only_cap_kill() -> LinuxCapabilities {
    let mut caps = LinuxCapabilities::default();
    let set: std::collections::HashSet<Capability> = [Capability::Kill].into_iter().collect();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    // (The default of LinuxCapabilities fills every set: clear the others.)
    caps.set_inheritable(Some(Default::default()));
    caps.set_ambient(Some(Default::default()));
    caps
}

fn finish(h: &Harness, r: Running) {
    h.rt.delete(&r.id, true).expect("delete");
    assert_eq!(h.wait(&r.c), 128 + libc::SIGKILL);
}

#[test]
fn exec_sees_the_containers_hostname_pids_mounts_and_cgroup() {
    let h = Harness::new();
    let r = running(&h, "exec-sees", |b| {
        fs::write(b.rootfs().join("only-in-rootfs"), "rootfs-marker\n").expect("marker");
        b.spec.set_hostname(Some("exec-host".into()));
    });
    let code = exec_sh(
        &h,
        &r,
        "hostname > /out/host; ls /proc > /out/proc; cat /only-in-rootfs > /out/marker; \
         cat /proc/self/cgroup > /out/cg-self; cat /proc/1/cgroup > /out/cg-init; \
         readlink /proc/1/exe > /out/init-exe",
    );
    assert_eq!(code, 0);
    assert_eq!(read(r.out.join("host")), "exec-host");
    // pid 1 of the container's pid namespace is the init (sleep); the host's pids are not
    // visible.
    let pids: BTreeSet<i32> = read(r.out.join("proc"))
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    assert!(pids.contains(&1), "{pids:?}");
    assert!(
        !pids.contains(&(std::process::id() as i32)) || std::process::id() < 10,
        "the test process is visible: {pids:?}"
    );
    assert_eq!(read(r.out.join("init-exe")), "/bin/busybox");
    assert_eq!(read(r.out.join("marker")), "rootfs-marker");
    let (me, init) = (read(r.out.join("cg-self")), read(r.out.join("cg-init")));
    assert!(!me.is_empty());
    assert_eq!(
        me, init,
        "/proc/self/cgroup of the exec'd process vs the init's"
    );
    finish(&h, r);
}

#[test]
fn exec_enters_every_namespace_of_the_init() {
    let h = Harness::new();
    let r = running(&h, "exec-ns", |_| {});
    let mut p = exec(
        &h,
        &r.id,
        &process(&r, &["/bin/sleep", "1000"]),
        &ExecOptions::default(),
    );
    assert!(wait_until(Duration::from_secs(10), || {
        fs::read_to_string(format!("/proc/{}/comm", p.pid())).is_ok_and(|s| s.trim() == "sleep")
    }));
    for ns in ["mnt", "pid", "uts", "ipc", "net", "cgroup", "user", "time"] {
        assert_eq!(
            ns_id(p.pid(), ns),
            ns_id(r.c.pid(), ns),
            "{ns} namespace of the exec'd process"
        );
    }
    // Its cgroup, seen from the host.
    assert_eq!(
        read(format!("/proc/{}/cgroup", p.pid())),
        read(format!("/proc/{}/cgroup", r.c.pid()))
    );
    // It is our child, and a member of the container: `ps` lists it.
    assert!(h.rt.raw().ps(&r.id).expect("ps").contains(&p.pid()));
    assert_eq!(p.kill(libc::SIGTERM), 128 + libc::SIGTERM);
    finish(&h, r);
}

#[test]
fn exec_uses_the_process_user_caps_env_cwd_and_nnp() {
    let h = Harness::new();
    let r = running(&h, "exec-proc", |b| {
        fs::create_dir_all(b.rootfs().join("work")).expect("mkdir");
    });
    let mut p = process(
        &r,
        &[
            "/bin/sh",
            "-c",
            "id > /out/id; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status > /out/status; \
             echo $FOO > /out/env; pwd > /out/cwd",
        ],
    );
    let mut user = User::default();
    user.set_uid(1000);
    user.set_gid(1001);
    user.set_additional_gids(Some(vec![5, 6]));
    p.set_user(user);
    p.set_cwd(PathBuf::from("/work"));
    p.set_env(Some(vec!["PATH=/bin".into(), "FOO=from-exec".into()]));
    p.set_no_new_privileges(Some(true));
    p.set_capabilities(Some(only_cap_kill()));
    assert_eq!(exec_wait(&h, &r, &p), 0);
    assert_eq!(read(r.out.join("id")), "uid=1000 gid=1001 groups=5,6");
    let status = read(r.out.join("status"));
    // Not root: the effective set is cleared by the uid change, the bounding set is CAP_KILL.
    assert_eq!(
        status_field(&status, "CapBnd").as_deref(),
        Some("0000000000000020")
    );
    assert_eq!(
        status_field(&status, "CapEff").as_deref(),
        Some("0000000000000000")
    );
    assert_eq!(status_field(&status, "NoNewPrivs").as_deref(), Some("1"));
    assert_eq!(read(r.out.join("env")), "from-exec");
    assert_eq!(read(r.out.join("cwd")), "/work");

    // As root the effective set is exactly the process' (CAP_KILL), not the init's.
    let mut p = process(
        &r,
        &["/bin/sh", "-c", "grep CapEff /proc/self/status > /out/eff"],
    );
    p.set_capabilities(Some(only_cap_kill()));
    p.set_no_new_privileges(Some(false));
    assert_eq!(exec_wait(&h, &r, &p), 0);
    assert_eq!(
        status_field(&read(r.out.join("eff")), "CapEff").as_deref(),
        Some("0000000000000020")
    );
    finish(&h, r);
}

#[test]
fn exit_status_and_signal_are_reported() {
    let h = Harness::new();
    let r = running(&h, "exec-status", |_| {});
    assert_eq!(exec_sh(&h, &r, "exit 7"), 7);
    assert_eq!(exec_sh(&h, &r, "kill -KILL $$"), 128 + libc::SIGKILL);
    assert_eq!(exec_sh(&h, &r, "true"), 0);
    finish(&h, r);
}

#[test]
fn missing_program_is_an_error_naming_it() {
    let h = Harness::new();
    let r = running(&h, "exec-enoent", |_| {});
    let err =
        h.rt.raw()
            .exec(&r.id, &process(&r, &["nosuch"]), &ExecOptions::default())
            .expect_err("exec of a missing program");
    assert_err_contains(
        &err,
        &["exec: \"nosuch\": executable file not found in $PATH"],
    );
    let err =
        h.rt.raw()
            .exec(&r.id, &process(&r, &[]), &ExecOptions::default())
            .expect_err("empty args");
    assert_err_contains(&err, &["process.args"]);
    finish(&h, r);
}

#[test]
fn exec_in_a_created_container_works_and_a_stopped_or_paused_one_is_refused() {
    let h = Harness::new();
    // Created (runc 1.1 allows it too): the init waits for start; exec runs anyway.
    let (b, out) = sh_bundle("exit 0");
    let id = h.id("exec-created");
    let c = h.create(&id, &b).expect("create");
    let mut p = b.spec.process().clone().expect("process");
    p.set_args(Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo created > /out/c".into(),
    ]));
    assert_eq!(exec(&h, &id, &p, &ExecOptions::default()).wait(), 0);
    assert_eq!(read(out.path().join("c")), "created");
    // Stopped.
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    let err =
        h.rt.raw()
            .exec(&id, &p, &ExecOptions::default())
            .expect_err("exec in a stopped container");
    assert!(
        matches!(
            err,
            Error::InvalidState {
                status: Status::Stopped,
                ..
            }
        ),
        "{err:?}"
    );
    h.rt.delete(&id, false).expect("delete");
    // Unknown id.
    assert!(matches!(
        h.rt.raw().exec(&id, &p, &ExecOptions::default()),
        Err(Error::NotFound { .. })
    ));

    // Paused.
    let r = running(&h, "exec-paused", |_| {});
    h.rt.raw().pause(&r.id).expect("pause");
    let err =
        h.rt.raw()
            .exec(&r.id, &process(&r, &["/bin/true"]), &ExecOptions::default())
            .expect_err("exec in a paused container");
    assert!(
        matches!(
            err,
            Error::InvalidState {
                status: Status::Paused,
                ..
            }
        ),
        "{err:?}"
    );
    assert_err_contains(&err, &["cannot exec in container", "paused"]);
    // With ignore_paused the process starts frozen and exec returns once `resume` (which
    // must not wait for exec's lock) thaws it.
    let started = std::thread::scope(|s| {
        let t = s.spawn(|| {
            h.rt.raw().exec(
                &r.id,
                &process(&r, &["/bin/sh", "-c", "echo thawed > /out/thawed"]),
                &ExecOptions::default().ignore_paused(true),
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !t.is_finished(),
            "exec in a frozen cgroup returned before resume"
        );
        h.rt.raw().resume(&r.id).expect("resume");
        t.join().expect("exec thread")
    });
    let mut e = Exec::new(started.expect("exec --ignore-paused"));
    assert_eq!(e.wait(), 0);
    assert_eq!(read(r.out.join("thawed")), "thawed");
    finish(&h, r);
}

#[test]
fn pid_file_names_the_process() {
    let h = Harness::new();
    let r = running(&h, "exec-pidfile", |_| {});
    let dir = TempDir::new("berth-exec-pid");
    let pid_file = dir.path().join("exec.pid");
    let mut e = exec(
        &h,
        &r.id,
        &process(&r, &["/bin/sleep", "1000"]),
        &ExecOptions::default().pid_file(Some(pid_file.clone())),
    );
    assert_eq!(read(&pid_file), e.pid().to_string());
    assert_eq!(ns_id(e.pid(), "pid"), ns_id(r.c.pid(), "pid"));
    assert_eq!(e.kill(libc::SIGKILL), 128 + libc::SIGKILL);
    finish(&h, r);
}

/// Opens `path` read-only *without* O_CLOEXEC.
fn open_inheritable(path: &std::path::Path) -> i32 {
    let c = CString::new(path.to_str().expect("utf8")).expect("path");
    // SAFETY: c is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0, "open {}", path.display());
    fd
}

#[test]
fn no_host_fd_reaches_the_process_and_preserved_ones_do() {
    let h = Harness::exclusive();
    let r = running(&h, "exec-fds", |_| {});
    let data = TempDir::new("berth-exec-fd");
    let file = data.path().join("passed.txt");
    fs::write(&file, "through-fd\n").expect("write");
    // An inheritable host fd: it must not reach the container.
    let leak = open_inheritable(&file);
    let code = exec_sh(&h, &r, "ls /proc/self/fd > /out/fds");
    let fds: BTreeSet<i32> = read(r.out.join("fds"))
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(code, 0);
    // stdio plus the directory ls reads.
    assert_eq!(fds.len(), 4, "fds inside: {fds:?} (host fd {leak} open)");
    assert!(fds.is_superset(&BTreeSet::from([0, 1, 2])));

    // Preserved: every fd from 3 up to `leak` is passed, `leak` readable by number.
    let n = (leak - 2) as u32;
    let mut e = exec(
        &h,
        &r.id,
        &process(
            &r,
            &["/bin/sh", "-c", &format!("cat <&{leak} > /out/passed")],
        ),
        &ExecOptions::default().preserve_fds(n),
    );
    // SAFETY: closing the fd this test opened.
    unsafe { libc::close(leak) };
    assert_eq!(e.wait(), 0);
    assert_eq!(read(r.out.join("passed")), "through-fd");
    finish(&h, r);
}

#[test]
fn terminal_goes_to_the_console_socket() {
    let h = Harness::new();
    let r = running(&h, "exec-tty", |_| {});
    let sock = ConsoleSocket::new();
    let mut p = process(
        &r,
        &[
            "/bin/sh",
            "-c",
            "test -t 0 && test -t 1 && echo tty=$(tty); echo done",
        ],
    );
    p.set_terminal(Some(true));
    // Without a socket: a clear error.
    let err =
        h.rt.raw()
            .exec(&r.id, &p, &ExecOptions::default())
            .expect_err("terminal without console socket");
    assert_err_contains(&err, &["process.terminal", "console socket"]);

    let listener = sock.listener;
    let accept = std::thread::spawn(move || accept_master(&listener));
    let mut e = exec(
        &h,
        &r.id,
        &p,
        &ExecOptions::default().console_socket(Some(sock.path.clone())),
    );
    let master = accept.join().expect("accept thread");
    let text = read_master(&master, Duration::from_secs(10));
    assert_eq!(e.wait(), 0);
    assert!(text.contains("tty=/dev/pts/"), "console output: {text:?}");
    assert!(text.contains("done"), "console output: {text:?}");
    finish(&h, r);
}

#[test]
fn cgroup_option_puts_the_process_in_a_sub_cgroup() {
    let h = Harness::new();
    let r = running(&h, "exec-subcg", |_| {});
    // The container's cgroup directories, from the host's view of the init.
    let cg = read(format!("/proc/{}/cgroup", r.c.pid()));
    let mut made = Vec::new();
    for line in cg.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let mount = if ctrls.is_empty() {
            // cgroup2: at /sys/fs/cgroup on a pure v2 host, beside the v1 ones on a hybrid one.
            if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                "/sys/fs/cgroup".to_string()
            } else {
                "/sys/fs/cgroup/unified".to_string()
            }
        } else if let Some(name) = ctrls.strip_prefix("name=") {
            format!("/sys/fs/cgroup/{name}")
        } else {
            format!("/sys/fs/cgroup/{}", ctrls)
        };
        let dir = PathBuf::from(format!("{mount}{path}/sub"));
        if PathBuf::from(&mount).is_dir() {
            fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            made.push(dir.clone());
            // A new v1 cpuset cgroup has no cpus and mems until given its parent's.
            if ctrls.split(',').any(|c| c == "cpuset") {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let v = fs::read_to_string(dir.parent().expect("parent").join(f))
                        .expect("read cpuset");
                    fs::write(dir.join(f), v.trim()).expect("write cpuset");
                }
            }
        }
    }
    struct Rmdirs(Vec<PathBuf>);
    impl Drop for Rmdirs {
        fn drop(&mut self) {
            for d in &self.0 {
                let _ = fs::remove_dir(d);
            }
        }
    }
    let rmdirs = Rmdirs(made);
    let mut e = exec(
        &h,
        &r.id,
        &process(&r, &["/bin/sleep", "1000"]),
        &ExecOptions::default().cgroup(Some("sub".into())),
    );
    let seen = read(format!("/proc/{}/cgroup", e.pid()));
    for line in seen.lines() {
        assert!(line.ends_with("/sub"), "{line} (all: {seen})");
    }
    assert_eq!(e.kill(libc::SIGKILL), 128 + libc::SIGKILL);
    // A sub-cgroup that does not exist is an error naming it.
    let err =
        h.rt.raw()
            .exec(
                &r.id,
                &process(&r, &["/bin/true"]),
                &ExecOptions::default().cgroup(Some("nosuch-sub".into())),
            )
            .expect_err("missing sub-cgroup");
    assert_err_contains(&err, &["nosuch-sub", "--cgroup"]);
    drop(rmdirs);
    finish(&h, r);
}

#[test]
fn exec_joins_a_user_time_and_cgroup_namespace() {
    use berth_runtime_core::oci_spec::runtime::{
        LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType as T, LinuxTimeOffset,
    };
    const BOOT: i64 = 1_000_000;
    let h = Harness::new();
    let r = running(&h, "exec-userns", |b| {
        let linux = b.spec.linux_mut().as_mut().expect("linux");
        let ns = [
            T::Pid,
            T::Network,
            T::Ipc,
            T::Uts,
            T::Mount,
            T::User,
            T::Time,
            T::Cgroup,
        ]
        .into_iter()
        .map(|t| {
            let mut n = LinuxNamespace::default();
            n.set_typ(t);
            n
        })
        .collect();
        linux.set_namespaces(Some(ns));
        let map = |host: u32| {
            LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(host)
                .size(65_536u32)
                .build()
                .expect("id mapping")
        };
        linux.set_uid_mappings(Some(vec![map(100_000)]));
        linux.set_gid_mappings(Some(vec![map(200_000)]));
        let mut boot = LinuxTimeOffset::default();
        boot.set_secs(Some(BOOT));
        boot.set_nanosecs(Some(0));
        linux.set_time_offsets(Some([("boottime".to_string(), boot)].into_iter().collect()));
    });
    let mut p = process(
        &r,
        &[
            "/bin/sh",
            "-c",
            "id > /out/id; cat /proc/uptime > /out/uptime; cat /proc/self/cgroup > /out/cg; \
             exec sleep 1000",
        ],
    );
    let mut user = p.user().clone();
    user.set_additional_gids(Some(vec![5]));
    p.set_user(user);
    let before: f64 = read("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("host uptime");
    let mut e = exec(&h, &r.id, &p, &ExecOptions::default());
    assert!(wait_until(Duration::from_secs(10), || {
        fs::read_to_string(format!("/proc/{}/comm", e.pid())).is_ok_and(|s| s.trim() == "sleep")
    }));
    for ns in ["user", "time", "cgroup", "pid", "mnt"] {
        assert_eq!(ns_id(e.pid(), ns), ns_id(r.c.pid(), ns), "{ns} namespace");
        assert_ne!(
            ns_id(e.pid(), ns),
            ns_id("self", ns),
            "{ns} namespace of the host"
        );
    }
    assert_eq!(read(r.out.join("id")), "uid=0(root) gid=0 groups=5");
    // Container root is host uid 100000.
    let st = read(format!("/proc/{}/status", e.pid()));
    assert_eq!(
        status_field(&st, "Uid").map(|u| u.split_whitespace().next().unwrap_or("").to_string()),
        Some("100000".into())
    );
    let inside: f64 = read(r.out.join("uptime"))
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("uptime inside");
    assert!(
        inside >= before + BOOT as f64 - 1.0,
        "uptime inside {inside}, host {before}"
    );
    // The cgroup namespace's root is the container's cgroup.
    for line in read(r.out.join("cg")).lines() {
        assert!(line.ends_with(":/"), "{line}");
    }
    assert_eq!(e.kill(libc::SIGKILL), 128 + libc::SIGKILL);
    finish(&h, r);
}

#[test]
fn exec_without_a_pid_namespace_of_its_own() {
    use berth_runtime_core::oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType as T};
    let h = Harness::new();
    // The container shares our pid namespace: no fork after setns, the process is the clone.
    let r = running(&h, "exec-hostpid", |b| {
        let ns = [T::Network, T::Ipc, T::Uts, T::Mount]
            .into_iter()
            .map(|t| {
                let mut n = LinuxNamespace::default();
                n.set_typ(t);
                n
            })
            .collect();
        b.spec
            .linux_mut()
            .as_mut()
            .expect("linux")
            .set_namespaces(Some(ns));
    });
    let mut e = exec(
        &h,
        &r.id,
        &process(&r, &["/bin/sh", "-c", "echo $$ > /out/pid; exit 3"]),
        &ExecOptions::default(),
    );
    assert_eq!(e.wait(), 3);
    // Its own pid, as the host sees it.
    assert_eq!(read(r.out.join("pid")), e.pid().to_string());
    finish(&h, r);
}

#[test]
fn exec_gets_the_containers_seccomp_profile_even_if_the_bundle_changes() {
    let h = Harness::new();
    let r = running(&h, "exec-sc", |b| {
        let profile: berth_runtime_core::oci_spec::runtime::LinuxSeccomp =
            serde_json::from_value(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                               "errnoRet": 1 }]
            }))
            .expect("profile");
        b.spec
            .linux_mut()
            .as_mut()
            .expect("linux")
            .set_seccomp(Some(profile));
    });
    assert_eq!(
        exec_sh(&h, &r, "mkdir /out/d 2> /out/err; echo $? > /out/rc"),
        0
    );
    assert_eq!(read(r.out.join("rc")), "1");
    assert!(read(r.out.join("err")).contains("not permitted"));
    // The filter comes from the config the container was created with, not the bundle's
    // config.json now (which an attacker with access to the bundle could rewrite).
    let mut unfiltered = r.b.spec.clone();
    if let Some(l) = unfiltered.linux_mut().as_mut() {
        l.set_seccomp(None);
    }
    fs::write(
        r.b.path().join("config.json"),
        serde_json::to_vec(&unfiltered).expect("serialize"),
    )
    .expect("rewrite config.json");
    assert_eq!(
        exec_sh(&h, &r, "mkdir /out/d 2> /out/err; echo $? > /out/rc"),
        0
    );
    assert_eq!(read(r.out.join("rc")), "1");
    assert!(!r.out.join("d").exists());
    finish(&h, r);
}

#[test]
fn exec_sets_home_from_passwd_when_env_has_none() {
    let h = Harness::new();
    let r = running(&h, "exec-home", |_| {});
    let mut p = process(&r, &["/bin/sh", "-c", "echo \"$HOME\" > /out/home"]);
    p.set_env(Some(vec!["PATH=/bin".into()]));
    assert_eq!(exec_wait(&h, &r, &p), 0);
    assert_eq!(read(r.out.join("home")), "/root");
    finish(&h, r);
}

/// CVE-2024-21626: a cwd of /proc/self/fd/N must never land the exec'd process in a host
/// directory that leaked into it as fd N.
#[test]
fn cve_2024_21626_exec_cwd_through_a_leaked_fd_is_refused() {
    let h = Harness::exclusive();
    let r = running(&h, "exec-cwd", |_| {});
    let host = TempDir::new("berth-exec-hostdir");
    fs::write(host.path().join("host-secret"), "x").expect("write");
    let leak = open_inheritable(host.path());
    for n in 3..20 {
        let mut p = process(
            &r,
            &["/bin/sh", "-c", "ls -a > /out/ls 2>&1; pwd > /out/pwd"],
        );
        p.set_cwd(PathBuf::from(format!("/proc/self/fd/{n}")));
        let _ = fs::remove_file(r.out.join("ls"));
        match h.rt.raw().exec(&r.id, &p, &ExecOptions::default()) {
            Err(_) => {}
            Ok(e) => {
                Exec::new(e).wait();
                let ls = fs::read_to_string(r.out.join("ls")).unwrap_or_default();
                assert!(
                    !ls.contains("host-secret"),
                    "fd {n} (host dir fd {leak}) reached the container: {ls}"
                );
            }
        }
    }
    // SAFETY: closing the fd this test opened.
    unsafe { libc::close(leak) };
    finish(&h, r);
}

#[test]
fn exec_failure_of_the_program_is_an_error() {
    // The exe-guard stub's execve fails: its errno comes back over the sync socket.
    let h = Harness::new();
    let r = running(&h, "exec-enoexec", |b| {
        use std::os::unix::fs::PermissionsExt;
        let p = b.rootfs().join("garbage");
        fs::write(&p, "not a program\n").expect("write /garbage");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod /garbage");
    });
    let err =
        h.rt.raw()
            .exec(&r.id, &process(&r, &["/garbage"]), &ExecOptions::default())
            .expect_err("exec of a file of no known format");
    assert!(matches!(err, Error::Exec { .. }), "{err:?}");
    assert_err_contains(&err, &["exec \"/garbage\"", "ENOEXEC"]);
    assert!(
        err.to_string().to_lowercase().contains("exec format error"),
        "{err}"
    );
    // The container is fine: an ordinary exec still works.
    assert_eq!(exec_sh(&h, &r, "exit 3"), 3);
    finish(&h, r);
}
