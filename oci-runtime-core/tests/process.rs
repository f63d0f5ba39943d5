//! The container process: args, env, cwd, user, umask, rlimits, capabilities,
//! no_new_privs, oom score, pid file and console, each checked from what the kernel shows
//! the process (/proc/self/*) or what it prints.

mod common;
mod support;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use berth_runtime_core::oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, PosixRlimit, PosixRlimitBuilder, PosixRlimitType,
};
use berth_runtime_core::{CreateOptions, Error};
use common::{Bundle, TempDir};
use support::console::read_master;
use support::*;

fn mask(caps: &[Capability]) -> u64 {
    caps.iter().fold(0u64, |m, c| {
        let bit = match c {
            Capability::Chown => 0,
            Capability::Kill => 5,
            Capability::NetBindService => 10,
            Capability::NetRaw => 13,
            Capability::AuditWrite => 29,
            other => panic!("no bit known for {other:?}"),
        };
        m | 1 << bit
    })
}

fn cap_field(status: &str, key: &str) -> u64 {
    let v = status_field(status, key).unwrap_or_else(|| panic!("{key} missing in status"));
    u64::from_str_radix(&v, 16).unwrap_or_else(|e| panic!("{key}: {v:?}: {e}"))
}

fn set(caps: &[Capability]) -> Option<Capabilities> {
    Some(caps.iter().cloned().collect())
}

#[test]
fn args_env_and_cwd() {
    let mut b = Bundle::new();
    let out = bind_out(&mut b);
    b.args(&[
        "sh",
        "-c",
        "printf '%s|' \"$0\" \"$1\" \"$2\" > /out/args; env > /out/env; pwd > /out/cwd",
        "zero",
        "one two",
        "  three ",
    ]);
    let p = b.spec.process_mut().as_mut().expect("process");
    p.set_env(Some(vec![
        "PATH=/usr/bin:/bin".into(),
        "FOO=bar baz".into(),
        "EMPTY=".into(),
        "EQ=a=b".into(),
    ]));
    p.set_cwd(PathBuf::from("/tmp"));
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);

    assert_eq!(read(out.path().join("args")), "zero|one two|  three |");
    let env = read(out.path().join("env"));
    let lines: Vec<&str> = env.lines().collect();
    for want in ["PATH=/usr/bin:/bin", "FOO=bar baz", "EMPTY=", "EQ=a=b"] {
        assert!(lines.contains(&want), "{want:?} missing in env:\n{env}");
    }
    // HOME comes from the rootfs's /etc/passwd (root's is /root) when env has none, as with
    // runc.
    assert!(lines.contains(&"HOME=/root"), "HOME missing in env:\n{env}");
    // Nothing of the runtime's environment (cargo sets plenty for tests) gets in: only the
    // config's variables, HOME and what sh itself exports.
    let allowed = [
        "PATH", "FOO", "EMPTY", "EQ", "HOME", "PWD", "SHLVL", "OLDPWD", "_",
    ];
    for l in &lines {
        let key = l.split('=').next().unwrap_or_default();
        assert!(
            allowed.contains(&key),
            "unexpected variable {l:?} in env:\n{env}"
        );
    }
    assert!(
        std::env::vars().count() > 3,
        "the test process should have an environment"
    );
    assert_eq!(read(out.path().join("cwd")), "/tmp");
}

#[test]
fn user_uid_gid_and_additional_gids() {
    let (mut b, out) = sh_bundle(
        "cat /proc/self/status > /out/status; id -u > /out/uid; id -g > /out/gid; id -G > /out/groups; touch /out/file",
    );
    let p = b.spec.process_mut().as_mut().expect("process");
    let mut user = p.user().clone();
    user.set_uid(1000);
    user.set_gid(1001);
    user.set_additional_gids(Some(vec![2000, 3000]));
    p.set_user(user);
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);

    let status = read(out.path().join("status"));
    assert_eq!(
        status_field(&status, "Uid").as_deref(),
        Some("1000\t1000\t1000\t1000")
    );
    assert_eq!(
        status_field(&status, "Gid").as_deref(),
        Some("1001\t1001\t1001\t1001")
    );
    assert_eq!(
        status_field(&status, "Groups").as_deref(),
        Some("2000 3000")
    );
    assert_eq!(read(out.path().join("uid")), "1000");
    assert_eq!(read(out.path().join("gid")), "1001");
    let groups: Vec<String> = read(out.path().join("groups"))
        .split(' ')
        .map(str::to_string)
        .collect();
    assert!(
        groups.contains(&"2000".to_string()) && groups.contains(&"3000".to_string()),
        "{groups:?}"
    );
    let meta = fs::metadata(out.path().join("file")).expect("stat file");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
}

#[test]
fn umask_applies() {
    let (mut b, out) = sh_bundle("umask > /out/umask; touch /out/f; mkdir /out/d");
    let p = b.spec.process_mut().as_mut().expect("process");
    let mut user = p.user().clone();
    user.set_umask(Some(0o027));
    p.set_user(user);
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);
    assert_eq!(read(out.path().join("umask")), "0027");
    let mode = |n: &str| {
        fs::metadata(out.path().join(n))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("f"), 0o640);
    assert_eq!(mode("d"), 0o750);
}

#[test]
fn rlimits_apply() {
    let (mut b, out) = sh_bundle(
        "ulimit -n > /out/soft; ulimit -H -n > /out/hard; cat /proc/self/limits > /out/limits",
    );
    let rlimit = |typ, soft, hard| -> PosixRlimit {
        PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build()
            .expect("rlimit")
    };
    let nofile = rlimit(PosixRlimitType::RlimitNofile, 123u64, 456u64);
    let core = rlimit(PosixRlimitType::RlimitCore, 4096u64, 8192u64);
    b.spec
        .process_mut()
        .as_mut()
        .expect("process")
        .set_rlimits(Some(vec![nofile, core]));
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);
    assert_eq!(read(out.path().join("soft")), "123");
    assert_eq!(read(out.path().join("hard")), "456");
    let limits = read(out.path().join("limits"));
    let row = |name: &str| -> Vec<String> {
        let l = limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{limits}"));
        l[name.len()..]
            .split_whitespace()
            .take(2)
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("Max open files"), ["123", "456"]);
    assert_eq!(row("Max core file size"), ["4096", "8192"]);
}

#[test]
fn default_capabilities_of_root() {
    // The default config: bounding = effective = permitted = ambient = {AUDIT_WRITE, KILL,
    // NET_BIND_SERVICE}, no inheritable. The kernel can't raise ambient capabilities that
    // are not inheritable: like runc, the set stays empty, without a warning (the default
    // config asks for it).
    let (b, out) = sh_bundle("cat /proc/self/status > /out/status");
    let h = Harness::new();
    let id = h.id("caps");
    let c = h.create(&id, &b).expect("create");
    assert!(
        !c.warnings().iter().any(|w| w.contains("capabilities")),
        "warnings about the default config: {:?}",
        c.warnings()
    );
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    h.rt.delete(&id, false).expect("delete");

    let want = mask(&[
        Capability::AuditWrite,
        Capability::Kill,
        Capability::NetBindService,
    ]);
    let status = read(out.path().join("status"));
    assert_eq!(cap_field(&status, "CapBnd"), want, "CapBnd");
    assert_eq!(cap_field(&status, "CapPrm"), want, "CapPrm");
    assert_eq!(cap_field(&status, "CapEff"), want, "CapEff");
    assert_eq!(cap_field(&status, "CapInh"), 0, "CapInh");
    assert_eq!(cap_field(&status, "CapAmb"), 0, "CapAmb");
}

#[test]
fn absent_capabilities_are_none_at_all() {
    // Secure default: no process.capabilities is empty sets, never the runtime's own.
    let (mut b, out) = sh_bundle("cat /proc/self/status > /out/status");
    b.spec
        .process_mut()
        .as_mut()
        .expect("process")
        .set_capabilities(None);
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);
    let status = read(out.path().join("status"));
    for key in ["CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb"] {
        assert_eq!(cap_field(&status, key), 0, "{key}");
    }
}

#[test]
fn capabilities_of_a_non_root_user_with_ambient_set() {
    // For a non-root user without file capabilities the kernel computes, at execve,
    // permitted = effective = ambient: a config with equal sets must come out unchanged.
    let (mut b, out) = sh_bundle("cat /proc/self/status > /out/status");
    let bounding = [
        Capability::Chown,
        Capability::Kill,
        Capability::NetBindService,
        Capability::NetRaw,
    ];
    let kept = [Capability::Kill, Capability::NetBindService];
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(set(&bounding));
    caps.set_effective(set(&kept));
    caps.set_permitted(set(&kept));
    caps.set_inheritable(set(&kept));
    caps.set_ambient(set(&kept));
    let p = b.spec.process_mut().as_mut().expect("process");
    p.set_capabilities(Some(caps));
    let mut user = p.user().clone();
    user.set_uid(1000);
    user.set_gid(1000);
    p.set_user(user);
    let h = Harness::new();
    let id = h.id("caps");
    let c = h.create(&id, &b).expect("create");
    assert!(
        !c.warnings().iter().any(|w| w.contains("capabilities")),
        "unexpected capability warnings: {:?}",
        c.warnings()
    );
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    h.rt.delete(&id, false).expect("delete");

    let status = read(out.path().join("status"));
    assert_eq!(cap_field(&status, "CapBnd"), mask(&bounding), "CapBnd");
    assert_eq!(cap_field(&status, "CapPrm"), mask(&kept), "CapPrm");
    assert_eq!(cap_field(&status, "CapEff"), mask(&kept), "CapEff");
    assert_eq!(cap_field(&status, "CapInh"), mask(&kept), "CapInh");
    assert_eq!(cap_field(&status, "CapAmb"), mask(&kept), "CapAmb");
}

#[test]
fn no_new_privileges_on_and_off() {
    for (nnp, want) in [(true, "1"), (false, "0")] {
        let (mut b, out) = sh_bundle("cat /proc/self/status > /out/status");
        b.spec
            .process_mut()
            .as_mut()
            .expect("process")
            .set_no_new_privileges(Some(nnp));
        let h = Harness::new();
        assert_eq!(h.run(&b), 0);
        let status = read(out.path().join("status"));
        assert_eq!(
            status_field(&status, "NoNewPrivs").as_deref(),
            Some(want),
            "noNewPrivileges={nnp}"
        );
    }
}

#[test]
fn oom_score_adj_applies_to_the_container_only() {
    let (mut b, out) = sh_bundle("cat /proc/self/oom_score_adj > /out/oom");
    b.spec
        .process_mut()
        .as_mut()
        .expect("process")
        .set_oom_score_adj(Some(321));
    let mine = read("/proc/self/oom_score_adj");
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);
    assert_eq!(read(out.path().join("oom")), "321");
    assert_eq!(
        read("/proc/self/oom_score_adj"),
        mine,
        "the runtime's own score changed"
    );
}

#[test]
fn pid_file_holds_the_init_pid() {
    let b = Bundle::new();
    b.write();
    let dir = TempDir::new("berth-pidfile");
    let pid_file = dir.path().join("init.pid");
    let h = Harness::new();
    let id = h.id("pidfile");
    let c = h
        .create_opts(
            &id,
            &CreateOptions::new(b.path().to_path_buf()).pid_file(Some(pid_file.clone())),
        )
        .expect("create");
    assert_eq!(read(&pid_file), c.pid().to_string());
    assert_eq!(h.rt.state(&id).expect("state").pid, c.pid());
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temp files left next to the pid file: {leftovers:?}"
    );
    h.rt.delete(&id, true).expect("delete");
    assert_eq!(h.wait(&c), 128 + libc::SIGKILL);
}

#[test]
fn console_socket_receives_the_pty_master() {
    let mut b = Bundle::new();
    b.args(&[
        "/bin/sh",
        "-c",
        "echo tty=$(tty); test -t 0 && echo stdin-is-tty; test -t 1 && echo stdout-is-tty; echo bye",
    ]);
    b.spec
        .process_mut()
        .as_mut()
        .expect("process")
        .set_terminal(Some(true));
    b.write();
    let h = Harness::new();

    // terminal without a socket is a config error naming the field.
    let id0 = h.id("console");
    let err = h
        .create_opts(&id0, &CreateOptions::new(b.path().to_path_buf()))
        .expect_err("terminal without console socket");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert_err_contains(&err, &["process.terminal"]);
    assert!(h.leftover_state().is_empty());

    let id = h.id("console");
    let (c, master, payload) = h.create_with_console(&id, &b);
    assert!(
        String::from_utf8_lossy(&payload).starts_with("/dev/pts/"),
        "payload {:?}",
        String::from_utf8_lossy(&payload)
    );
    // It is a pty master: it has a slave number.
    let mut ptn: libc::c_uint = 0;
    // SAFETY: TIOCGPTN with a valid out-pointer on an fd we own.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut ptn) };
    assert_eq!(r, 0, "not a pty master");

    h.rt.start(&id).expect("start");
    let text = read_master(&master, Duration::from_secs(20));
    assert_eq!(h.wait(&c), 0, "output: {text}");
    h.rt.delete(&id, false).expect("delete");
    let tty = text
        .lines()
        .find_map(|l| l.strip_prefix("tty="))
        .unwrap_or_else(|| panic!("no tty line in {text:?}"));
    assert!(
        tty == "/dev/console" || tty == "/dev/pts/0",
        "tty is {tty:?}"
    );
    assert!(text.contains("stdin-is-tty"), "{text:?}");
    assert!(text.contains("stdout-is-tty"), "{text:?}");
    assert!(text.contains("bye"), "{text:?}");
}

/// This test thread's CPU affinity, restored on drop.
struct ThreadAffinity(libc::cpu_set_t);

impl ThreadAffinity {
    /// Narrows this thread to `cpu` only.
    fn narrow_to(cpu: usize) -> Self {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: a zeroed cpu_set_t is an empty set; the calls get our own set and its size.
        unsafe {
            let mut saved: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(libc::sched_getaffinity(0, size, &mut saved), 0);
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
            ThreadAffinity(saved)
        }
    }
}

impl Drop for ThreadAffinity {
    fn drop(&mut self) {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: our own saved set and its size.
        unsafe { libc::sched_setaffinity(0, size, &self.0) };
    }
}

/// As runc 1.3 and crun: a runtime started with a narrow CPU affinity (systemd's
/// `CPUAffinity=`, `taskset`) does not pass it on; the container may use every CPU of its
/// cpuset (here: every online CPU).
#[test]
fn the_init_gets_every_cpu_whatever_the_runtimes_affinity() {
    let online = read("/sys/devices/system/cpu/online").trim().to_owned();
    if online == "0" {
        eprintln!("SKIP: one CPU online, nothing to narrow");
        return;
    }
    let (mut b, out) = sh_bundle("cat /proc/self/status > /out/status");
    let h = Harness::new();
    // Both ways to the program; the second under a profile that denies sched_setaffinity
    // without noNewPrivileges (its filter goes in with the credentials: the reset must
    // come before).
    for (i, deny) in [false, true].into_iter().enumerate() {
        if deny {
            let profile = serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{ "names": ["sched_setaffinity"], "action": "SCMP_ACT_ERRNO" }]
            });
            if let Some(l) = b.spec.linux_mut() {
                l.set_seccomp(Some(serde_json::from_value(profile).expect("profile")));
            }
            if let Some(p) = b.spec.process_mut() {
                p.set_no_new_privileges(Some(false));
            }
        }
        let narrowed = ThreadAffinity::narrow_to(0);
        let own = read("/proc/thread-self/status");
        assert_eq!(
            status_field(&own, "Cpus_allowed_list").as_deref(),
            Some("0")
        );
        let code = if i == 0 {
            h.run(&b)
        } else {
            let id = h.id("affrun");
            let c = h.run_started(&id, &b).expect("run");
            let code = h.wait(&c);
            h.rt.delete(&id, false).expect("delete");
            code
        };
        drop(narrowed);
        assert_eq!(code, 0);
        let status = read(out.path().join("status"));
        assert_eq!(
            status_field(&status, "Cpus_allowed_list").as_deref(),
            Some(online.as_str()),
            "deny sched_setaffinity: {deny}"
        );
    }
}
