//! `berth exec` from the outside: the binary run against real containers, its output and exit
//! status checked, and compared with `runc exec` on the same bundle.

mod common;

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::console::{accept_master, read_master};
use common::{TempDir, berth_cmd, busybox_rootfs, edit_json, run_to_files, text, unique};
use serde_json::Value;

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "ls", "hostname", "id", "true", "grep", "kill", "env", "pwd",
    "tty", "readlink", "test",
];

/// A bundle running `sleep 1000`, a berth root, and the containers started from them
/// (force-deleted on drop, with berth and with runc).
struct World {
    dir: TempDir,
    root: PathBuf,
    runc_root: PathBuf,
    bundle: PathBuf,
    ids: Vec<String>,
    runc_ids: Vec<String>,
}

impl World {
    fn new() -> World {
        let dir = TempDir::new("exec-test");
        let bundle = dir.join("bundle");
        busybox_rootfs(&bundle.join("rootfs"), APPLETS);
        let world = World {
            root: dir.join("root"),
            runc_root: dir.join("runc-root"),
            bundle,
            dir,
            ids: Vec::new(),
            runc_ids: Vec::new(),
        };
        let out = world.berth(&["spec", "--bundle", world.bundle.to_str().expect("utf8")]);
        assert!(out.status.success(), "spec: {}", text(&out.stderr));
        edit_json(&world.bundle.join("config.json"), |cfg| {
            cfg["process"]["terminal"] = Value::Bool(false);
            cfg["process"]["args"] = serde_json::json!(["sleep", "1000"]);
            cfg["hostname"] = Value::from("exec-test");
        });
        world
    }

    fn cmd(&self, args: &[&str]) -> Command {
        berth_cmd(&self.root, args)
    }

    /// Runs berth with stdout and stderr in files (a detached process keeps no pipe open).
    fn berth(&self, args: &[&str]) -> Output {
        run_to_files(self.cmd(args), &self.dir)
    }

    /// `berth run -d` of the bundle; returns the id and the init's pid.
    fn start(&mut self) -> (String, i32) {
        let id = unique("x");
        self.ids.push(id.clone());
        let out = self.berth(&[
            "run",
            "-d",
            "--bundle",
            self.bundle.to_str().expect("utf8"),
            &id,
        ]);
        assert!(out.status.success(), "run -d: {}", text(&out.stderr));
        let pid = self.init_pid(&id);
        (id, pid)
    }

    fn init_pid(&self, id: &str) -> i32 {
        let out = self.berth(&["state", id]);
        let s: Value = serde_json::from_slice(&out.stdout).expect("state json");
        s["pid"].as_i64().expect("pid") as i32
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self
                .cmd(&["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for id in &self.runc_ids {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&self.runc_root)
                .args(["delete", "--force", id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn ns(pid: i32, name: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{name}: {e}"))
}

#[test]
fn exec_output_and_exit_status() {
    let mut w = World::new();
    let (id, _) = w.start();
    let out = w.berth(&[
        "exec",
        &id,
        "sh",
        "-c",
        "hostname; ls /proc/1/exe && readlink /proc/1/exe; pwd",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "exec-test\n/proc/1/exe\n/bin/busybox\n/\n"
    );
    // The exit status is berth's; a signal is 128 + N.
    assert_eq!(
        w.berth(&["exec", &id, "sh", "-c", "exit 7"]).status.code(),
        Some(7)
    );
    assert_eq!(
        w.berth(&["exec", &id, "sh", "-c", "kill -KILL $$"])
            .status
            .code(),
        Some(128 + libc::SIGKILL)
    );
    // Only stdio (and ls's own directory fd) inside.
    let out = w.berth(&["exec", &id, "ls", "/proc/self/fd"]);
    assert_eq!(
        text(&out.stdout).split_whitespace().count(),
        4,
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn missing_program_and_bad_states_are_errors() {
    let mut w = World::new();
    let (id, _) = w.start();
    let out = w.berth(&["exec", &id, "nosuch"]);
    // runc's status for an exec that could not start: never a process' own status.
    assert_eq!(out.status.code(), Some(255));
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"exec: \"nosuch\": executable file not found in $PATH"#)
            || err.contains(r#"exec: "nosuch": executable file not found in $PATH"#),
        "{err}"
    );
    // Paused: refused.
    assert!(w.berth(&["pause", &id]).status.success());
    let out = w.berth(&["exec", &id, "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("paused"),
        "{}",
        text(&out.stderr)
    );
    assert!(w.berth(&["resume", &id]).status.success());
    // Stopped: refused.
    assert!(w.berth(&["kill", &id, "KILL"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = w.berth(&["exec", &id, "true"]);
        if text(&out.stderr).contains("stopped") {
            assert_ne!(out.status.code(), Some(0));
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&out.stderr));
        std::thread::sleep(Duration::from_millis(20));
    }
    // No command: usage error.
    let out = w.berth(&["exec", &id]);
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn detach_writes_the_pid_file_and_returns() {
    let mut w = World::new();
    let (id, init) = w.start();
    let pid_file = w.dir.join("exec.pid");
    let out = w.berth(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().expect("utf8"),
        &id,
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    // Reported once the program itself has exec'd (the exe-guard stub closes the sync socket
    // only at its own successful execve); the loop only tolerates a slow /proc.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .expect("alive")
        .trim()
        != "sleep"
    {
        assert!(
            Instant::now() < deadline,
            "exec'd process {pid} never became sleep"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for n in ["pid", "mnt", "uts", "net", "ipc"] {
        assert_eq!(ns(pid, n), ns(init, n), "{n} namespace");
    }
    // The process is one of the container's: delete --force kills it.
    assert!(w.berth(&["delete", "--force", &id]).status.success());
    let gone = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z")) {
        assert!(
            Instant::now() < gone,
            "exec'd process {pid} survived delete"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn process_file_and_flags() {
    let mut w = World::new();
    let (id, _) = w.start();
    let file = w.dir.join("process.json");
    std::fs::write(
        &file,
        r#"{"args":["/bin/sh","-c","echo from-file $A; id"],"cwd":"/","user":{"uid":0,"gid":0},"env":["A=1"]}"#,
    )
    .expect("write process.json");
    // Arguments after the id are ignored with --process, as with runc.
    let out = w.berth(&["exec", "-p", file.to_str().expect("utf8"), &id, "ignored"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from-file 1\nuid=0 gid=0\n");

    let out = w.berth(&[
        "exec",
        "-e",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "-u",
        "1000:1001",
        "-g",
        "5",
        "-g",
        "6",
        "--no-new-privs",
        &id,
        "sh",
        "-c",
        "echo $FOO; pwd; id; grep NoNewPrivs /proc/self/status",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "bar\n/tmp\nuid=1000 gid=1001 groups=5,6\nNoNewPrivs:\t1\n"
    );

    // (uid_t)-1 would leave the exec'd process root: refused, in either place.
    for user in ["4294967295", "0:4294967295"] {
        let out = w.berth(&["exec", "-u", user, &id, "id"]);
        assert!(
            !out.status.success(),
            "exec -u {user} ran: {}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).contains("4294967295 is (uid_t)-1"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "");
    }
}

#[test]
fn signals_are_forwarded_to_the_process() {
    let mut w = World::new();
    let (id, _) = w.start();
    let mut child = w
        .cmd(&[
            "exec",
            &id,
            "sh",
            "-c",
            "trap 'echo got-term; exit 5' TERM; echo ready; while true; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn berth exec");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut buf = [0u8; 6];
    stdout.read_exact(&mut buf).expect("read ready");
    assert_eq!(&buf, b"ready\n");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    // berth must exit with the process' status (if it died of the TERM itself, the shell
    // still runs: check before reading its output to the end).
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("berth exec did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(5), "{status:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("read rest");
    assert_eq!(rest, "got-term\n");
}

#[test]
fn tty_with_console_socket_and_in_the_foreground() {
    let mut w = World::new();
    let (id, _) = w.start();
    let sock = w.dir.join("console.sock");
    let listener = UnixListener::bind(&sock).expect("bind");
    let child = w
        .cmd(&[
            "exec",
            "-t",
            "--console-socket",
            sock.to_str().expect("utf8"),
            &id,
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo tty=$(tty); exit 4",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let master = accept_master(&listener);
    let seen = read_master(&master, Duration::from_secs(10));
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(seen.contains("tty=/dev/pts/"), "{seen:?}");

    // Foreground without a socket: berth makes the pty and copies its output to stdout.
    let out = w.berth(&["exec", "-t", &id, "sh", "-c", "tty; echo hi"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout).replace('\r', "");
    assert!(o.contains("/dev/pts/") && o.contains("hi"), "{o:?}");
}

#[test]
fn same_result_as_runc() {
    let runc_ok = Command::new("runc")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(runc_ok, "runc is not installed (apt-get install -y runc)");
    let mut w = World::new();
    let (id, _) = w.start();
    let rid = unique("r");
    w.runc_ids.push(rid.clone());
    let mut run = Command::new("runc");
    run.arg("--root")
        .arg(&w.runc_root)
        .args(["run", "-d", "--bundle"])
        .arg(&w.bundle)
        .arg(&rid)
        .stdin(Stdio::null());
    let out = run_to_files(run, &w.dir);
    assert!(out.status.success(), "runc run: {}", text(&out.stderr));
    let script = "id; grep -E '^(Cap|NoNewPrivs)' /proc/self/status; pwd; hostname; echo $FOO";
    for flags in [
        &[][..],
        &[
            "-u",
            "1000:1000",
            "-g",
            "5",
            "--cap",
            "CAP_SYS_ADMIN",
            "--cwd",
            "/tmp",
            "-e",
            "FOO=bar",
        ][..],
        &["--cap", "CAP_SYS_ADMIN", "--cap", "CAP_NET_RAW"][..],
    ] {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        let ours = w.berth(&[&args[..], &[id.as_str(), "sh", "-c", script]].concat());
        let mut theirs = Command::new("runc");
        theirs
            .arg("--root")
            .arg(&w.runc_root)
            .args(&args)
            .args([rid.as_str(), "sh", "-c", script])
            .stdin(Stdio::null());
        let theirs = run_to_files(theirs, &w.dir);
        assert!(
            theirs.status.success(),
            "runc exec: {}",
            text(&theirs.stderr)
        );
        assert!(ours.status.success(), "berth exec: {}", text(&ours.stderr));
        assert_eq!(text(&ours.stdout), text(&theirs.stdout), "flags {flags:?}");
    }
}
