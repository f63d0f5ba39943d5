//! The lifecycle of real containers: create, state, start, kill, delete, and the errors of
//! each step, seen from the outside (state JSON, /proc, files the container writes).

mod common;
mod support;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use berth_runtime_core::validate::ConfigError;
use berth_runtime_core::{CreateOptions, Error, Status, parse_signal};
use common::Bundle;
use support::*;

/// Waits until the container wrote `/out/<name>`.
fn await_file(out: &common::TempDir, name: &str) {
    let p = out.path().join(name);
    assert!(
        wait_until(Duration::from_secs(10), || p.exists()),
        "the container did not write {}",
        p.display()
    );
}

#[test]
fn create_start_exit_delete() {
    let (mut b, out) =
        sh_bundle("while [ ! -e /out/go ]; do sleep 0.01; done; echo ran > /out/ran; exit 7");
    b.spec.set_annotations(Some(HashMap::from([(
        "org.berth.test".to_string(),
        "yes".to_string(),
    )])));
    let h = Harness::new();
    let id = h.id("life");

    let c = h.create(&id, &b).expect("create");
    assert_eq!(c.id(), id);
    let pid = c.pid();
    assert!(pid > 0);
    assert!(PathBuf::from(format!("/proc/{pid}")).exists());
    assert!(h.state_dir(&id).is_dir());

    // created: the init waits before exec, so the program has not run.
    let st = h.rt.state(&id).expect("state");
    assert_eq!(st.status, Status::Created);
    assert_eq!(st.pid, pid);
    assert_eq!(st.id, id);
    assert_eq!(PathBuf::from(&st.bundle), b.path());
    assert_eq!(PathBuf::from(&st.rootfs), b.rootfs());
    assert_eq!(&st.oci_version, b.spec.version());
    let json = serde_json::to_value(&st).expect("state to json");
    let keys: BTreeSet<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "ociVersion",
            "id",
            "status",
            "pid",
            "bundle",
            "rootfs",
            "created",
            "annotations",
            "owner"
        ])
    );
    assert_eq!(json["status"], "created");
    assert_eq!(json["pid"], pid);
    assert_eq!(json["annotations"]["org.berth.test"], "yes");
    let created = json["created"].as_str().expect("created");
    assert!(
        created.len() == 30 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "created is not RFC 3339 with nanoseconds: {created}"
    );
    assert!(!out.path().join("ran").exists());
    let comm_before = fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    assert_ne!(comm_before.trim(), "sh", "the program ran before start");

    let listed = h.rt.list().expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0], st);

    h.rt.start(&id).expect("start");
    let st = h.rt.state(&id).expect("state");
    assert_eq!(st.status, Status::Running);
    assert_eq!(st.pid, pid);
    assert_eq!(read(format!("/proc/{pid}/comm")), "sh");
    assert_eq!(
        serde_json::to_value(&st).expect("json")["status"],
        "running"
    );

    fs::write(out.path().join("go"), "").expect("write go");
    assert_eq!(h.wait(&c), 7);
    assert_eq!(read(out.path().join("ran")), "ran");

    let st = h.rt.state(&id).expect("state");
    assert_eq!(st.status, Status::Stopped);
    assert_eq!(st.pid, 0);
    assert_eq!(
        serde_json::to_value(&st).expect("json")["status"],
        "stopped"
    );

    h.rt.delete(&id, false).expect("delete");
    assert!(!h.state_dir(&id).exists());
    assert!(matches!(h.rt.state(&id), Err(Error::NotFound { .. })));
    assert!(h.rt.list().expect("list").is_empty());
}

#[test]
fn start_twice_fails_and_changes_nothing() {
    let (b, out) = sh_bundle("echo x >> /out/runs; exec sleep 1000");
    let h = Harness::new();
    let id = h.id("twice");
    let c = h.create(&id, &b).expect("create");
    h.rt.start(&id).expect("first start");
    await_file(&out, "runs");
    let before = h.rt.state(&id).expect("state");
    assert_eq!(before.status, Status::Running);

    match h.rt.start(&id) {
        Err(Error::InvalidState {
            status: Status::Running,
            op: "start",
            ..
        }) => {}
        other => panic!("second start: {other:?}"),
    }
    assert_eq!(h.rt.state(&id).expect("state"), before);
    assert!(alive(c.pid()));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(read(out.path().join("runs")), "x", "the program ran twice");

    h.rt.kill(&id, libc::SIGKILL, false).expect("kill");
    assert_eq!(h.wait(&c), 128 + libc::SIGKILL);
    match h.rt.start(&id) {
        Err(Error::InvalidState {
            status: Status::Stopped,
            ..
        }) => {}
        other => panic!("start of a stopped container: {other:?}"),
    }
    h.rt.delete(&id, false).expect("delete");
}

#[test]
fn delete_running_requires_force() {
    let (b, out) = sh_bundle("sleep 1000 & echo up > /out/up; exec sleep 1000");
    let h = Harness::new();
    let id = h.id("del");
    let c = h.create(&id, &b).expect("create");
    h.rt.start(&id).expect("start");
    await_file(&out, "up");
    let pids = pids_in_pidns_of(c.pid());
    assert_eq!(pids.len(), 2, "init and one background sleep: {pids:?}");

    match h.rt.delete(&id, false) {
        Err(Error::InvalidState {
            status: Status::Running,
            op: "delete",
            ..
        }) => {}
        other => panic!("delete without force: {other:?}"),
    }
    assert!(h.state_dir(&id).is_dir());
    assert!(pids.iter().all(|p| alive(*p)));
    assert_eq!(h.rt.state(&id).expect("state").status, Status::Running);

    h.rt.delete(&id, true).expect("delete --force");
    assert!(!h.state_dir(&id).exists());
    assert_eq!(h.wait(&c), 128 + libc::SIGKILL);
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "processes survived: {pids:?}"
    );
    assert!(matches!(h.rt.state(&id), Err(Error::NotFound { .. })));
}

#[test]
fn delete_created_container_kills_it_before_exec() {
    let (b, out) = sh_bundle("echo ran > /out/ran");
    let h = Harness::new();
    let id = h.id("delcreated");
    let c = h.create(&id, &b).expect("create");
    // Not stopped: refused without force (the spec), the container left as it was.
    match h.rt.delete(&id, false) {
        Err(Error::InvalidState { status, .. }) => assert_eq!(status, Status::Created),
        other => panic!("delete of a created container without force: {other:?}"),
    }
    assert_eq!(h.rt.state(&id).expect("state").status, Status::Created);
    h.rt.delete(&id, true)
        .expect("delete --force of a created container");
    assert!(!h.state_dir(&id).exists());
    assert_eq!(h.wait(&c), 128 + libc::SIGKILL);
    assert!(
        !out.path().join("ran").exists(),
        "the program ran although never started"
    );
}

#[test]
fn kill_delivers_the_signal_to_init() {
    let (b, out) = sh_bundle(
        "trap 'echo term > /out/sig; exit 3' TERM; echo up > /out/up; while :; do sleep 0.02; done",
    );
    let h = Harness::new();
    let id = h.id("kill");
    let c = h.create(&id, &b).expect("create");
    h.rt.start(&id).expect("start");
    await_file(&out, "up");
    h.rt.kill(&id, parse_signal("TERM").expect("TERM"), false)
        .expect("kill");
    assert_eq!(h.wait(&c), 3);
    assert_eq!(read(out.path().join("sig")), "term");
    match h.rt.kill(&id, libc::SIGKILL, false) {
        Err(Error::InvalidState {
            status: Status::Stopped,
            op: "kill",
            ..
        }) => {}
        other => panic!("kill of a stopped container: {other:?}"),
    }
    h.rt.delete(&id, false).expect("delete");
}

#[test]
fn terminating_signal_stops_a_created_container() {
    // The waiting init is pid 1 of its pid namespace: without a handler the kernel would drop
    // TERM, and the container would stay "created".
    let (b, out) = sh_bundle("echo ran > /out/ran");
    let h = Harness::new();
    let id = h.id("killcreated");
    let c = h.create(&id, &b).expect("create");
    h.rt.kill(&id, libc::SIGTERM, false).expect("kill TERM");
    assert_eq!(h.wait(&c), 128 + libc::SIGTERM);
    assert_eq!(h.rt.state(&id).expect("state").status, Status::Stopped);
    assert!(!out.path().join("ran").exists(), "the program ran");
    h.rt.delete(&id, false).expect("delete");
}

#[test]
fn parse_signal_names_and_numbers() {
    for s in ["TERM", "SIGTERM", "15", "term"] {
        match parse_signal(s) {
            Ok(n) => assert_eq!(n, libc::SIGTERM, "{s}"),
            Err(e) if s == "term" => assert!(matches!(e, Error::InvalidSignal(_))),
            Err(e) => panic!("{s}: {e}"),
        }
    }
    assert_eq!(parse_signal("KILL").expect("KILL"), libc::SIGKILL);
    assert_eq!(parse_signal("SIGUSR1").expect("USR1"), libc::SIGUSR1);
    assert_eq!(parse_signal("0").expect("0 checks existence"), 0);
    for bad in ["", "-1", "100000", "SIGNOPE", "1.5"] {
        match parse_signal(bad) {
            Err(Error::InvalidSignal(s)) => assert_eq!(s, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn kill_all_reaches_every_process_of_the_container() {
    let (b, out) =
        sh_bundle("sleep 1000 & sleep 1000 & echo up > /out/up; wait; echo done > /out/done");
    let h = Harness::new();
    let id = h.id("killall");
    let c = h.create(&id, &b).expect("create");
    h.rt.start(&id).expect("start");
    await_file(&out, "up");
    let mut pids = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            pids = pids_in_pidns_of(c.pid());
            pids.len() == 3
        }),
        "expected init and two sleeps: {pids:?}"
    );

    // Without --all only the init is signalled, and an init ignores signals it has no
    // handler for: nothing changes.
    h.rt.kill(&id, libc::SIGTERM, false).expect("kill");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        pids.iter().all(|p| alive(*p)),
        "kill without --all killed something"
    );
    assert_eq!(h.rt.state(&id).expect("state").status, Status::Running);

    h.rt.kill(&id, libc::SIGTERM, true).expect("kill --all");
    assert_eq!(
        h.wait(&c),
        0,
        "the init's wait should return once the sleeps died"
    );
    assert_eq!(read(out.path().join("done")), "done");
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "processes survived kill --all: {pids:?}"
    );
    h.rt.delete(&id, false).expect("delete");
}

#[test]
fn unknown_id_is_not_found() {
    let h = Harness::new();
    let id = h.id("ghost");
    assert!(matches!(h.rt.state(&id), Err(Error::NotFound { id: i }) if i == id));
    assert!(matches!(h.rt.start(&id), Err(Error::NotFound { .. })));
    assert!(matches!(
        h.rt.kill(&id, libc::SIGKILL, false),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        h.rt.delete(&id, true),
        Err(Error::NotFound { .. })
    ));
    let msg = h.rt.state(&id).unwrap_err().to_string();
    assert!(msg.contains(&id), "{msg}");
    assert!(h.rt.list().expect("list of a missing root").is_empty());
}

#[test]
fn create_with_existing_id_fails_and_leaves_the_first_alone() {
    let (b1, out1) = sh_bundle("echo first > /out/who");
    let (b2, out2) = sh_bundle("echo second > /out/who");
    let h = Harness::new();
    let id = h.id("dup");
    let c = h.create(&id, &b1).expect("create");
    let before = h.rt.state(&id).expect("state");

    match h.create(&id, &b2) {
        Err(Error::AlreadyExists { id: i }) => assert_eq!(i, id),
        other => panic!("second create: {other:?}"),
    }
    assert_eq!(h.rt.state(&id).expect("state"), before);
    assert!(alive(c.pid()));

    h.rt.start(&id).expect("start the first");
    assert_eq!(h.wait(&c), 0);
    assert_eq!(read(out1.path().join("who")), "first");
    assert!(!out2.path().join("who").exists());
    h.rt.delete(&id, false).expect("delete");
}

#[test]
fn invalid_ids_are_rejected() {
    let b = Bundle::new();
    b.write();
    let h = Harness::new();
    let long = "a".repeat(1025);
    let opts = CreateOptions::new(b.path().to_path_buf());
    for id in [
        "",
        ".",
        "..",
        "../escape",
        "a/b",
        "/abs",
        "a b",
        "x\ny",
        "é",
        long.as_str(),
    ] {
        match h.rt.create(id, &opts) {
            Err(Error::InvalidId { id: i, .. }) => assert_eq!(i, id),
            Ok(c) => {
                let _ = h.rt.delete(id, true);
                let _ = c.wait();
                panic!("create accepted id {id:?}");
            }
            Err(e) => panic!("{id:?}: unexpected error {e}"),
        }
        assert!(
            matches!(h.rt.state(id), Err(Error::InvalidId { .. })),
            "state {id:?}"
        );
        assert!(
            matches!(h.rt.start(id), Err(Error::InvalidId { .. })),
            "start {id:?}"
        );
        assert!(
            matches!(h.rt.kill(id, 9, false), Err(Error::InvalidId { .. })),
            "kill {id:?}"
        );
        assert!(
            matches!(h.rt.delete(id, true), Err(Error::InvalidId { .. })),
            "delete {id:?}"
        );
    }
    assert!(h.leftover_state().is_empty());
    let parent = h.state_root().parent().expect("parent");
    assert!(!parent.join("escape").exists());
}

/// Creates `b` under a fresh id expecting a config error naming `field`.
fn expect_config_error(h: &Harness, b: &Bundle, field: &str, reason: &str) {
    let id = h.id("badcfg");
    match h.create(&id, b) {
        Err(e @ Error::Config(ConfigError { .. })) => {
            assert_err_contains(&e, &[field, reason]);
            let Error::Config(ce) = &e else {
                unreachable!()
            };
            assert_eq!(ce.field, field);
        }
        Err(e) => panic!("expected a config error about {field}, got {e:?}"),
        Ok(_) => panic!("create accepted a config with a bad {field}"),
    }
    assert!(
        !h.state_dir(&id).exists(),
        "state dir left after a config error"
    );
    assert!(h.leftover_state().is_empty());
}

#[test]
fn bad_configs_name_the_field_and_leave_nothing() {
    let mut b = Bundle::new();
    let h = Harness::new();

    b.args(&[]);
    expect_config_error(&h, &b, "process.args", "is empty");

    b.args(&["/bin/true"]);
    let n = b.spec.mounts().as_ref().map_or(0, |m| m.len());
    add_mount(&mut b.spec, mount("relative/dir", "tmpfs", "tmpfs", &[]));
    expect_config_error(
        &h,
        &b,
        &format!("mounts[{n}].destination"),
        "must be an absolute path",
    );

    // Missing config.json.
    fs::remove_file(b.path().join("config.json")).expect("rm config");
    let id = h.id("nocfg");
    let err = h
        .create_opts(&id, &CreateOptions::new(b.path().to_path_buf()))
        .expect_err("create without config.json");
    assert_err_contains(&err, &["config.json"]);
    assert!(h.leftover_state().is_empty());
}

#[test]
fn missing_program_fails_at_create_and_leaves_nothing() {
    let mut b = Bundle::new();
    b.args(&["/bin/does-not-exist", "x"]);
    let mut b2 = Bundle::new();
    b2.args(&["no-such-program-in-path"]);
    let h = Harness::exclusive();
    let before = children();

    let id = h.id("noprog");
    let err = h.create(&id, &b).expect_err("create of a missing program");
    assert_err_contains(&err, &["does-not-exist"]);
    assert!(!h.state_dir(&id).exists());

    let id2 = h.id("noprog");
    let err = h
        .create(&id2, &b2)
        .expect_err("create of a program not in PATH");
    assert_err_contains(&err, &["no-such-program-in-path"]);
    assert!(!h.state_dir(&id2).exists());

    assert!(h.leftover_state().is_empty());
    assert_eq!(
        children(),
        before,
        "create left a process (or zombie) behind"
    );
}

#[test]
fn failure_after_setup_kills_the_init_and_leaves_nothing() {
    // The pid file is written last, when the init is already set up and waiting.
    let b = Bundle::new();
    b.write();
    let dir = common::TempDir::new("berth-pidfile");
    let pid_file = dir.path().join("no-such-dir/init.pid");
    let h = Harness::exclusive();
    let before = children();
    let id = h.id("badpidfile");
    let err = h
        .create_opts(
            &id,
            &CreateOptions::new(b.path().to_path_buf()).pid_file(Some(pid_file)),
        )
        .expect_err("create with an unwritable pid file");
    assert_err_contains(&err, &["no-such-dir"]);
    assert!(h.leftover_state().is_empty(), "state dir left");
    assert_eq!(
        children(),
        before,
        "the init of the failed create is still around"
    );
}

/// An executable file of no known format (`ENOEXEC`) in `b`'s rootfs at `/garbage`, and at
/// `/dynamic` a dynamic ELF of the host without its ELF interpreter (`ENOENT`): both pass the
/// checks of `create` (they exist and are executable) and only fail at `execve`.
fn add_unrunnable_programs(b: &Bundle) {
    use std::os::unix::fs::PermissionsExt;
    let garbage = b.rootfs().join("garbage");
    fs::write(&garbage, "not a program\n").expect("write /garbage");
    fs::set_permissions(&garbage, fs::Permissions::from_mode(0o755)).expect("chmod /garbage");
    // This test binary is dynamic (its interpreter lives in /lib64 or /lib, which the busybox
    // rootfs lacks); the host's /bin/true may be a static busybox.
    let exe = std::env::current_exe().expect("the test binary's path");
    let host = fs::read(&exe).expect("read the test binary");
    assert!(
        host.windows(4).any(|w| w == b"ld-l"),
        "{} is not dynamic",
        exe.display()
    );
    assert!(!b.rootfs().join("lib").exists() && !b.rootfs().join("lib64").exists());
    fs::write(b.rootfs().join("dynamic"), host).expect("write /dynamic");
    fs::set_permissions(
        b.rootfs().join("dynamic"),
        fs::Permissions::from_mode(0o755),
    )
    .expect("chmod /dynamic");
}

#[test]
fn exec_failure_of_the_program_fails_start_and_the_container_stops() {
    // The exe-guard stub's execve fails after the start barrier: its errno reaches `start`
    // (runc 1.1.5 only prints "exec /garbage: exec format error" on the container's stderr
    // and its start succeeds; berth makes it start's error).
    let h = Harness::new();
    let mut b = Bundle::new();
    add_unrunnable_programs(&b);
    for (prog, errno, text) in [
        ("/garbage", "ENOEXEC", "exec format error"),
        ("/dynamic", "ENOENT", "no such file or directory"),
    ] {
        b.args(&[prog]);
        let id = h.id("badexec");
        let c = h.create(&id, &b).expect("create");
        assert_eq!(h.rt.state(&id).expect("state").status, Status::Created);
        let err = h.rt.start(&id).expect_err(prog);
        assert!(matches!(err, Error::Start { .. }), "{prog}: {err:?}");
        assert_err_contains(&err, &[&format!("exec \"{prog}\""), errno]);
        assert!(
            err.to_string().to_lowercase().contains(text),
            "{prog}: {err}"
        );
        assert_eq!(h.wait(&c), 127, "{prog}");
        assert_eq!(h.rt.state(&id).expect("state").status, Status::Stopped);
        h.rt.delete(&id, false).expect("delete");
        assert!(!h.state_dir(&id).exists());
    }
}

#[test]
fn start_returns_once_the_program_itself_runs() {
    let mut b = Bundle::new();
    b.args(&["/bin/sleep", "1000"]);
    let h = Harness::new();
    let id = h.id("execd");
    let c = h.create(&id, &b).expect("create");
    let t = std::time::Instant::now();
    h.rt.start(&id).expect("start");
    let took = t.elapsed();
    // Not the exe-guard stub (a memfd) any more: start waited for its execve.
    let exe = fs::read_link(format!("/proc/{}/exe", c.pid())).expect("exe");
    assert!(exe.ends_with("bin/busybox"), "{}", exe.display());
    assert!(took < Duration::from_secs(2), "start took {took:?}");
    assert_eq!(h.rt.state(&id).expect("state").status, Status::Running);
    h.rt.kill(&id, libc::SIGKILL, false).expect("kill");
    assert_eq!(h.wait(&c), 128 + libc::SIGKILL);
    h.rt.delete(&id, false).expect("delete");
}

/// A profile returning EPERM for `names`.
fn deny_syscalls(b: &mut Bundle, names: &[&str]) {
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": names, "action": "SCMP_ACT_ERRNO" }]
    });
    let s = serde_json::from_value(profile).expect("profile parses");
    if let Some(l) = b.spec.linux_mut() {
        l.set_seccomp(Some(s));
    }
}

#[test]
fn exec_failure_of_the_init_itself_still_fails_start() {
    // With noNewPrivileges the filter goes in right before the exec: the init's execveat of
    // the stub (and its execve fallback) fail, and the init reports that itself.
    let mut b = Bundle::new();
    assert_eq!(
        b.spec
            .process()
            .as_ref()
            .and_then(|p| p.no_new_privileges()),
        Some(true)
    );
    deny_syscalls(&mut b, &["execve", "execveat"]);
    let h = Harness::new();
    let id = h.id("noexec");
    let c = h.create(&id, &b).expect("create");
    let err = h.rt.start(&id).expect_err("start without execve");
    assert_err_contains(&err, &["execveat(exe-guard memfd)", "EPERM"]);
    assert_eq!(h.wait(&c), 1);
    h.rt.delete(&id, false).expect("delete");
}

#[test]
fn a_profile_forbidding_fcntl_neither_hangs_start_nor_leaks_the_fifo() {
    // The stub can't mark exec.fifo close-on-exec: it closes it instead (no report, but the
    // program does not hold start's fifo open).
    let mut b = Bundle::new();
    b.args(&["/bin/sleep", "3"]);
    deny_syscalls(&mut b, &["fcntl"]);
    let h = Harness::new();
    let id = h.id("nofcntl");
    let c = h.create(&id, &b).expect("create");
    let t = std::time::Instant::now();
    h.rt.start(&id).expect("start");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "start took {took:?}");
    let fds: Vec<String> = fs::read_dir(format!("/proc/{}/fd", c.pid()))
        .expect("fd dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        fds.iter().all(|f| ["0", "1", "2"].contains(&f.as_str())),
        "{fds:?}"
    );
    h.rt.kill(&id, libc::SIGKILL, false).expect("kill");
    assert_eq!(h.wait(&c), 128 + libc::SIGKILL);
    h.rt.delete(&id, false).expect("delete");
}

#[test]
fn a_config_without_process_is_created_but_never_started() {
    // The spec: process is optional at create, and start MUST then fail. The waiting init
    // is ended, so the container is stopped and deletes like any other.
    let mut b = Bundle::new();
    b.spec.set_process(None);
    let h = Harness::new();
    let id = h.id("noprocess");
    let c = h.create(&id, &b).expect("create without process");
    assert_eq!(h.rt.state(&id).expect("state").status, Status::Created);
    match h.rt.start(&id) {
        Err(Error::Start { reason, .. }) => assert!(reason.contains("no process"), "{reason}"),
        other => panic!("start without a process: {other:?}"),
    }
    assert_eq!(h.wait(&c), 128 + libc::SIGKILL);
    assert_eq!(h.rt.state(&id).expect("state").status, Status::Stopped);
    h.rt.delete(&id, false).expect("delete");
    assert!(h.leftover_state().is_empty());
}

#[test]
fn run_starts_the_program_in_one_step_without_a_start_barrier() {
    let (b, out) =
        sh_bundle("echo ran > /out/ran; while [ ! -e /out/go ]; do sleep 0.01; done; exit 3");
    let h = Harness::new();
    let id = h.id("run1");
    let c = h.run_started(&id, &b).expect("run");
    // Returned once the program itself was exec'd: running, and no barrier was made.
    assert_eq!(read(format!("/proc/{}/comm", c.pid())), "sh");
    assert_eq!(h.rt.state(&id).expect("state").status, Status::Running);
    assert!(!h.state_dir(&id).join("exec.fifo").exists());
    assert!(matches!(
        h.rt.start(&id),
        Err(Error::InvalidState {
            status: Status::Running,
            ..
        })
    ));
    await_file(&out, "ran");
    fs::write(out.path().join("go"), "").expect("write go");
    assert_eq!(h.wait(&c), 3);
    assert_eq!(h.rt.state(&id).expect("state").status, Status::Stopped);
    h.rt.delete(&id, false).expect("delete");
    assert!(h.leftover_state().is_empty());
}

#[test]
fn run_reports_an_exec_failure_and_leaves_nothing() {
    // Without the barrier the stub's execve failure comes back on the sync socket.
    let h = Harness::new();
    let mut b = Bundle::new();
    add_unrunnable_programs(&b);
    for (prog, errno) in [("/garbage", "ENOEXEC"), ("/dynamic", "ENOENT")] {
        b.args(&[prog]);
        let id = h.id("runbad");
        let err = h.run_started(&id, &b).expect_err(prog);
        assert_err_contains(&err, &[&format!("exec \"{prog}\""), errno]);
        assert!(matches!(h.rt.state(&id), Err(Error::NotFound { .. })));
        assert!(h.leftover_state().is_empty(), "{:?}", h.leftover_state());
    }
}

#[test]
fn run_of_a_config_without_process_fails_and_leaves_nothing() {
    let mut b = Bundle::new();
    b.spec.set_process(None);
    let h = Harness::new();
    let id = h.id("runnoproc");
    match h.run_started(&id, &b) {
        Err(Error::Start { reason, .. }) => assert!(reason.contains("no process"), "{reason}"),
        other => panic!("run without a process: {other:?}"),
    }
    assert!(matches!(h.rt.state(&id), Err(Error::NotFound { .. })));
    assert!(h.leftover_state().is_empty());
}
