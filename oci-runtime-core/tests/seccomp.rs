//! linux.seccomp in real containers: what a filtered process sees, the same result as runc on
//! the same bundle, both install points (with and without no_new_privs), SCMP_ACT_NOTIFY with a
//! listener that receives the fd and the container process state, and bad profiles. Without
//! the `seccomp` feature: every profile is refused, nothing is left behind.

mod common;
mod support;

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::process::Command;

use berth_runtime_core::Error;
use berth_runtime_core::oci_spec::runtime::LinuxSeccomp;
use common::{Bundle, TempDir, unique};
use serde_json::{Value, json};
use support::*;

/// The script every filtered container runs: each step prints its exit status and error.
const PROBE: &str = "mkdir /out/d 2>&1; echo mkdir=$?; \
     echo > /out/f; chmod 600 /out/f 2>&1; echo chmod=$?; \
     hostname 2>&1; echo hostname=$?; echo done";

fn set_seccomp(b: &mut Bundle, profile: Value) {
    let s: LinuxSeccomp = serde_json::from_value(profile).expect("profile parses");
    b.spec
        .linux_mut()
        .as_mut()
        .expect("linux")
        .set_seccomp(Some(s));
}

fn set_nnp(b: &mut Bundle, on: bool) {
    b.spec
        .process_mut()
        .as_mut()
        .expect("process")
        .set_no_new_privileges(Some(on));
}

/// Blocks mkdir with EPERM (runc's default errno) and chmod with EACCES; everything else runs.
fn deny_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["chmod", "fchmodat", "fchmodat2", "fchmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 },
        ]
    })
}

fn run_probe(h: &Harness, b: &mut Bundle, out: &TempDir) -> String {
    sh(b, &format!("({PROBE}) > /out/log"));
    assert_eq!(h.run(b), 0);
    read(out.path().join("log"))
}

#[test]
#[cfg_attr(not(feature = "seccomp"), ignore = "needs the seccomp feature")]
fn errno_rules_apply_with_and_without_no_new_privs() {
    let h = Harness::new();
    for nnp in [true, false] {
        let mut b = Bundle::new();
        let out = bind_out(&mut b);
        set_nnp(&mut b, nnp);
        set_seccomp(&mut b, deny_profile());
        let log = run_probe(&h, &mut b, &out);
        assert!(
            log.contains("Operation not permitted") && log.contains("mkdir=1"),
            "nnp={nnp}: {log}"
        );
        assert!(
            log.contains("Permission denied") && log.contains("chmod=1"),
            "nnp={nnp}: {log}"
        );
        assert!(log.contains("hostname=0") && log.ends_with("done"), "{log}");
        assert!(!out.path().join("d").exists(), "mkdir went through");
    }
    // Without the filter, the same script succeeds: the probe can tell the difference.
    let mut b = Bundle::new();
    let out = bind_out(&mut b);
    let log = run_probe(&h, &mut b, &out);
    assert!(log.contains("mkdir=0") && log.contains("chmod=0"), "{log}");
}

#[test]
#[cfg_attr(not(feature = "seccomp"), ignore = "needs the seccomp feature")]
fn same_result_as_runc() {
    if Command::new("runc").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "runc is missing under CI");
        eprintln!("SKIP: runc not installed");
        return;
    }
    let h = Harness::new();
    let mut b = Bundle::new();
    let out = bind_out(&mut b);
    set_seccomp(&mut b, deny_profile());
    let ours = run_probe(&h, &mut b, &out);
    for f in ["log", "f"] {
        std::fs::remove_file(out.path().join(f)).expect("rm output");
    }

    let root = TempDir::new("berth-runc-root");
    let id = unique("sc-runc");
    let st = Command::new("runc")
        .arg("--root")
        .arg(root.path())
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .status()
        .expect("runc run");
    let _ = Command::new("runc")
        .arg("--root")
        .arg(root.path())
        .args(["delete", "-f", &id])
        .status();
    assert!(st.success(), "runc run: {st}");
    let theirs = read(out.path().join("log"));
    assert_eq!(ours, theirs);
}

#[test]
#[cfg_attr(not(feature = "seccomp"), ignore = "needs the seccomp feature")]
fn unknown_names_are_skipped_with_a_warning() {
    let h = Harness::new();
    let mut b = Bundle::new();
    let out = bind_out(&mut b);
    let mut p = deny_profile();
    p["syscalls"][0]["names"] = json!(["berth_no_such_call", "mkdir", "mkdirat"]);
    set_seccomp(&mut b, p);
    sh(&mut b, &format!("({PROBE}) > /out/log"));
    let id = h.id("sc-unknown");
    let c = h.create(&id, &b).expect("create");
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    h.rt.delete(&id, false).expect("delete");
    let log = read(out.path().join("log"));
    assert!(log.contains("mkdir=1"), "{log}");
    let w = c.warnings();
    assert!(
        w.iter().any(|w| w.contains("berth_no_such_call")),
        "warnings: {w:?}"
    );
}

#[test]
#[cfg_attr(not(feature = "seccomp"), ignore = "needs the seccomp feature")]
fn bad_profiles_are_refused_and_leave_nothing() {
    let h = Harness::new();
    for (profile, field) in [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}),
            "errnoRet",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "index",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "listenerPath",
        ),
    ] {
        let mut b = Bundle::new();
        set_seccomp(&mut b, profile);
        let id = h.id("sc-bad");
        match h.create(&id, &b) {
            Err(Error::Config(e)) => assert!(e.to_string().contains(field), "{e}"),
            Err(e) => panic!("wrong error for {field}: {e}"),
            Ok(_) => panic!("profile with a bad {field} was accepted"),
        }
        assert!(!h.state_dir(&id).exists(), "state dir left behind");
    }
}

/// `struct seccomp_notif` and `struct seccomp_notif_resp` (linux/seccomp.h).
#[repr(C)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}
#[repr(C)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}
// _IOWR('!', 0, struct seccomp_notif) and _IOWR('!', 1, struct seccomp_notif_resp).
const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;

fn recv_state(conn: &std::os::unix::net::UnixStream) -> (OwnedFd, Value) {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut buf = vec![0u8; 65536];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .expect("recvmsg");
    let n = msg.bytes;
    let mut fds = Vec::new();
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(got) = c {
            // SAFETY: the kernel just installed these fds in our table for us.
            fds.extend(got.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
        }
    }
    assert_eq!(fds.len(), 1, "exactly one fd with the state");
    let mut data = buf[..n].to_vec();
    // The spec lets the rest follow without fds: read until the sender closes.
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut &*conn, &mut rest).expect("read rest");
    data.extend(rest);
    let v: Value = serde_json::from_slice(&data).expect("state JSON");
    (fds.remove(0), v)
}

/// The agent at listenerPath: for one connection (accepted here), takes the state and the listener fd, then
/// answers every notification with EXDEV until the filtered processes are gone. Returns the
/// state and how many notifications it answered.
fn serve_one(listener: &UnixListener) -> (Value, usize) {
    let (conn, _) = listener.accept().expect("accept");
    serve(conn)
}

/// As [`serve_one`], for an accepted connection.
fn serve(conn: std::os::unix::net::UnixStream) -> (Value, usize) {
    let (fd, state) = recv_state(&conn);
    let mut answered = 0;
    loop {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 10_000) };
        if r <= 0 || pfd.revents & libc::POLLIN == 0 {
            break; // timeout, or POLLHUP: the filtered processes are gone
        }
        // SAFETY: a zeroed seccomp_notif is what NOTIF_RECV wants (it must be zeroed).
        let mut n: Notif = unsafe { std::mem::zeroed() };
        // SAFETY: n has the kernel's layout for this ioctl.
        if unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_RECV, &mut n) } < 0 {
            continue;
        }
        let mut resp = NotifResp {
            id: n.id,
            val: 0,
            error: -libc::EXDEV,
            flags: 0,
        };
        // SAFETY: resp has the kernel's layout for this ioctl.
        if unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_SEND, &mut resp) } == 0 {
            answered += 1;
        }
    }
    (state, answered)
}

fn spawn_agent(listener: UnixListener) -> std::thread::JoinHandle<(Value, usize)> {
    std::thread::spawn(move || serve_one(&listener))
}

#[test]
#[cfg_attr(not(feature = "seccomp"), ignore = "needs the seccomp feature")]
fn notify_hands_the_listener_and_state_to_the_agent() {
    let h = Harness::new();
    let dir = TempDir::new("berth-seccomp-agent");
    let sock_path = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock_path).expect("bind agent socket");
    let mut b = Bundle::new();
    let out = bind_out(&mut b);
    sh(
        &mut b,
        "mkdir /tmp/n 2>/out/err; echo $? > /out/rc; hostname > /out/host",
    );
    set_seccomp(
        &mut b,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock_path,
            "listenerMetadata": "berth-test-metadata",
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY" }]
        }),
    );
    let id = h.id("sc-notify");

    let agent = spawn_agent(listener);

    let c = h.create(&id, &b).expect("create");
    let pid = c.pid();
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    h.rt.delete(&id, false).expect("delete");
    let (state, answered) = agent.join().expect("agent thread");

    assert_eq!(read(out.path().join("rc")), "1");
    assert!(
        read(out.path().join("err")).contains("cross-device"),
        "{}",
        read(out.path().join("err"))
    );
    assert_eq!(
        read(out.path().join("host")),
        "berth",
        "unfiltered calls run"
    );
    assert!(answered >= 1);
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["pid"], json!(pid));
    assert_eq!(state["metadata"], json!("berth-test-metadata"));
    assert_eq!(state["state"]["id"], json!(id));
    assert_eq!(state["state"]["pid"], json!(pid));
    assert_eq!(state["state"]["status"], json!("creating"));
    assert!(state["ociVersion"].is_string());
}

#[test]
#[cfg_attr(not(feature = "seccomp"), ignore = "needs the seccomp feature")]
fn a_profile_that_forbids_close_range_still_starts_the_container() {
    // runtime-tools' default profile denies close_range. The init seals its fds (close_range
    // with CLOEXEC) before any filter goes in, with and without no_new_privs.
    for nnp in [false, true] {
        let h = Harness::new();
        let mut b = Bundle::new();
        let out = bind_out(&mut b);
        sh(&mut b, "echo started > /out/log");
        set_nnp(&mut b, nnp);
        set_seccomp(
            &mut b,
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{ "names": ["close_range"], "action": "SCMP_ACT_ERRNO" }]
            }),
        );
        assert_eq!(h.run(&b), 0, "no_new_privs {nnp}");
        assert_eq!(
            read(out.path().join("log")),
            "started",
            "no_new_privs {nnp}"
        );
    }
}

#[test]
#[cfg_attr(not(feature = "seccomp"), ignore = "needs the seccomp feature")]
fn start_container_hooks_run_under_the_filter() {
    // A startContainer hook runs in the container as its process would: a hook is no way
    // around the profile (with no_new_privs the filter used to go in after the hooks).
    for nnp in [false, true] {
        let h = Harness::new();
        let mut b = Bundle::new();
        let out = bind_out(&mut b);
        sh(&mut b, "true");
        set_nnp(&mut b, nnp);
        set_seccomp(&mut b, deny_profile());
        let mut hook = berth_runtime_core::oci_spec::runtime::Hook::default();
        hook.set_path("/bin/sh".into());
        hook.set_args(Some(vec![
            "sh".into(),
            "-c".into(),
            "mkdir /out/by-hook 2>/dev/null; echo mkdir=$? > /out/hook".into(),
        ]));
        let mut hooks = berth_runtime_core::oci_spec::runtime::Hooks::default();
        hooks.set_start_container(Some(vec![hook]));
        b.spec.set_hooks(Some(hooks));
        assert_eq!(h.run(&b), 0, "no_new_privs {nnp}");
        assert_eq!(
            read(out.path().join("hook")),
            "mkdir=1",
            "no_new_privs {nnp}"
        );
        assert!(!out.path().join("by-hook").exists(), "no_new_privs {nnp}");
    }
}

#[test]
#[cfg_attr(not(feature = "seccomp"), ignore = "needs the seccomp feature")]
fn a_profile_that_forbids_execveat_still_starts_the_container() {
    // runc's init only needs execve; berth's CVE-2019-5736 guard first tries execveat on its
    // sealed memfd, then the same memfd through /proc with execve.
    let h = Harness::new();
    let mut b = Bundle::new();
    let out = bind_out(&mut b);
    sh(&mut b, "echo started > /out/log");
    set_seccomp(
        &mut b,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["execveat"], "action": "SCMP_ACT_ERRNO" }]
        }),
    );
    assert_eq!(h.run(&b), 0);
    assert_eq!(read(out.path().join("log")), "started");
}

#[test]
#[cfg_attr(not(feature = "seccomp"), ignore = "needs the seccomp feature")]
fn an_exec_process_gets_the_filter_and_its_listener_goes_to_the_agent() {
    let h = Harness::new();
    let dir = TempDir::new("berth-seccomp-agent");
    let sock_path = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock_path).expect("bind agent socket");
    let mut b = Bundle::new();
    let out = bind_out(&mut b);
    sh(&mut b, "exec sleep 1000");
    set_seccomp(
        &mut b,
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock_path,
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY" }]
        }),
    );
    // One connection for the init (create), one for the exec'd process.
    let agent = std::thread::spawn(move || {
        let (first, _) = listener.accept().expect("accept");
        let init = std::thread::spawn(move || serve(first));
        let exec = serve_one(&listener);
        (init.join().expect("init agent"), exec)
    });
    let id = h.id("sc-exec-notify");
    let c = h.create(&id, &b).expect("create");
    h.rt.start(&id).expect("start");
    let mut p = b.spec.process().clone().expect("process");
    p.set_args(Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "mkdir /out/e 2> /out/err; echo $? > /out/rc".into(),
    ]));
    let e =
        h.rt.raw()
            .exec(&id, &p, &berth_runtime_core::ExecOptions::default())
            .expect("exec");
    let exec_pid = e.pid();
    assert_eq!(e.wait().expect("wait"), 0);
    h.rt.delete(&id, true).expect("delete");
    h.wait(&c);
    let ((init_state, _), (exec_state, answered)) = agent.join().expect("agent");
    assert_eq!(init_state["pid"], json!(c.pid()));
    assert_eq!(exec_state["pid"], json!(exec_pid));
    assert_eq!(exec_state["state"]["pid"], json!(c.pid()));
    assert_eq!(exec_state["state"]["status"], json!("running"));
    assert!(answered >= 1);
    assert_eq!(read(out.path().join("rc")), "1");
    assert!(read(out.path().join("err")).contains("cross-device"));
}

/// Without the seccomp feature, a container that asks for a filter is refused (never run
/// unfiltered), and nothing is left behind.
#[test]
#[cfg(not(feature = "seccomp"))]
fn without_the_feature_a_profile_is_refused_and_leaves_nothing() {
    let h = Harness::new();
    let mut b = Bundle::new();
    set_seccomp(&mut b, deny_profile());
    let id = h.id("sc-off");
    match h.create(&id, &b) {
        Err(Error::Config(e)) => {
            assert_eq!(e.field, "linux.seccomp", "{e}");
            assert!(e.reason.contains("seccomp"), "{e}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a profile was accepted by a build without seccomp"),
    }
    assert!(!h.state_dir(&id).exists(), "state dir left behind");
}
