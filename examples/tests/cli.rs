//! End-to-end tests of the `berth` binary: real containers from a busybox bundle.
//!
//! Needs root and Debian's busybox-static at /bin/busybox. Every test uses its own `--root`
//! and bundle in fresh temporary directories and unique container ids; a guard force-deletes
//! the containers and removes the directories even when the test fails.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    BERTH, TempDir, berth_cmd, busybox_rootfs, edit_json, pure_v2, run_to_files, set_cgroup_ns,
    text, unique,
};
use rstest::rstest;
use serde_json::Value;

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "ls", "hostname", "id", "true", "false", "kill", "env", "read",
    "test", "pwd", "tty", "stty",
];

/// A test's private world: `--root`, a busybox bundle, and the ids it hands out.
struct World {
    dir: TempDir,
    root: PathBuf,
    bundle: PathBuf,
    ids: Vec<String>,
}

impl World {
    /// A fresh world whose bundle runs `args` (process.terminal false).
    fn new(args: &[&str]) -> World {
        let dir = TempDir::new("cli-test");
        let world = World {
            root: dir.join("root"),
            bundle: dir.join("bundle"),
            dir,
            ids: Vec::new(),
        };
        make_rootfs(&world.bundle.join("rootfs"));
        let out = world.berth(&["spec", "--bundle", world.bundle.to_str().unwrap()]);
        assert_ok(&out);
        world.edit_config(|c| {
            c["process"]["terminal"] = Value::Bool(false);
            c["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
            c["hostname"] = Value::from("berth-test");
        });
        world
    }

    /// A new unique container id, deleted by the guard at the end.
    fn id(&mut self) -> String {
        let id = unique("c");
        self.ids.push(id.clone());
        id
    }

    fn config_path(&self) -> PathBuf {
        self.bundle.join("config.json")
    }

    fn edit_config(&self, f: impl FnOnce(&mut Value)) {
        edit_json(&self.config_path(), f);
    }

    fn cmd(&self, args: &[&str]) -> Command {
        berth_cmd(&self.root, args)
    }

    /// Runs `berth --root ROOT args...` to completion.
    ///
    /// stdout and stderr go to files, not pipes: a container started by `create` or `run -d`
    /// inherits them (as with runc) and would keep a pipe open long after berth exited.
    fn berth(&self, args: &[&str]) -> Output {
        run_to_files(self.cmd(args), &self.dir)
    }

    fn bundle_str(&self) -> &str {
        self.bundle.to_str().unwrap()
    }

    /// `berth state ID` as JSON.
    fn state(&self, id: &str) -> Value {
        let out = self.berth(&["state", id]);
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Polls the state until its status is `want`.
    fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.berth(&["state", id]);
            if out.status.success() {
                let s: Value = serde_json::from_slice(&out.stdout).unwrap();
                if s["status"] == want {
                    return s;
                }
            }
            assert!(Instant::now() < deadline, "{id} never became {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Entries left in `--root` (none when it does not exist).
    fn root_entries(&self) -> Vec<String> {
        match std::fs::read_dir(&self.root) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = Command::new(BERTH)
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn make_rootfs(rootfs: &Path) {
    busybox_rootfs(rootfs, APPLETS);
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A failure: exit status 1 and exactly one line on stderr, which is returned.
fn assert_fails_with_one_line(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "stderr: {err:?}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn pid_alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits until `pid` has a handler for `signo` (the shell installed its trap).
fn wait_catches(pid: i64, signo: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (signo - 1)) != 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} never caught signal {signo}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `pid` no longer runs (gone, or a zombie waiting for its parent).
fn wait_gone(pid: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Field 3 (after the parenthesised command name) is the state.
        let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
        if stat.is_empty() || state == Some('Z') {
            return;
        }
        assert!(Instant::now() < deadline, "pid {pid} still running: {stat}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a child with a deadline; kills it if the deadline passes.
fn wait_child(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("berth did not exit within {secs}s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_prints_what_the_container_sees() {
    let mut w = World::new(&["sh", "-c", "hostname; echo hello from $(id -u)"]);
    let id = w.id();
    let out = w.berth(&["run", "--bundle", w.bundle_str(), &id]);
    assert_ok(&out);
    assert_eq!(text(&out.stdout), "berth-test\nhello from 0\n");
    // Deleted after the foreground run.
    let st = w.berth(&["state", &id]);
    assert_eq!(st.status.code(), Some(1));
    assert!(w.root_entries().is_empty(), "{:?}", w.root_entries());
}

#[rstest]
#[case("exit 0", 0)]
#[case("exit 3", 3)]
#[case("exit 255", 255)]
fn run_propagates_the_exit_code(#[case] script: &str, #[case] code: i32) {
    let mut w = World::new(&["sh", "-c", script]);
    let id = w.id();
    let out = w.berth(&["run", "-b", w.bundle_str(), &id]);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn run_exit_code_is_128_plus_signal_when_init_is_killed() {
    let mut w = World::new(&["sleep", "60"]);
    let id = w.id();
    let mut child = w
        .cmd(&["run", "--bundle", w.bundle_str(), &id])
        .spawn()
        .unwrap();
    w.wait_status(&id, "running");
    assert_ok(&w.berth(&["kill", &id, "KILL"]));
    let st = wait_child(&mut child, 20);
    assert_eq!(st.code(), Some(128 + 9));
}

#[test]
fn run_forwards_signals_to_the_init() {
    let mut w = World::new(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; echo ready; while true; do sleep 0.05; done",
    ]);
    let id = w.id();
    let mut child = w
        .cmd(&["run", "--bundle", w.bundle_str(), &id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the trap is installed (the script printed "ready").
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    stdout.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = wait_child(&mut child, 20);
    assert_eq!(st.code(), Some(42));
    assert!(w.root_entries().is_empty(), "{:?}", w.root_entries());
}

#[test]
fn run_keep_leaves_the_stopped_container() {
    let mut w = World::new(&["true"]);
    let id = w.id();
    assert_ok(&w.berth(&["run", "--keep", "-b", w.bundle_str(), &id]));
    let s = w.state(&id);
    assert_eq!(s["status"], "stopped");
    assert_eq!(s["pid"], 0);
    assert_ok(&w.berth(&["delete", &id]));
}

#[test]
fn run_detached_returns_while_the_container_runs() {
    let mut w = World::new(&["sleep", "60"]);
    let id = w.id();
    let start = Instant::now();
    assert_ok(&w.berth(&["run", "-d", "-b", w.bundle_str(), &id]));
    assert!(start.elapsed() < Duration::from_secs(30));
    let s = w.state(&id);
    assert_eq!(s["status"], "running");
    assert!(pid_alive(s["pid"].as_i64().unwrap()));
    let err = assert_fails_with_one_line(&w.berth(&["run", "-d", "-b", w.bundle_str(), &id]));
    assert!(err.contains(&id), "{err}");
}

#[test]
fn lifecycle_create_start_kill_delete() {
    let mut w = World::new(&["sleep", "60"]);
    let id = w.id();
    let pid_file = w.dir.join("init.pid");
    let out = w.berth(&[
        "create",
        "--bundle",
        w.bundle_str(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    assert_ok(&out);
    assert!(out.stdout.is_empty());

    let raw = w.berth(&["state", &id]);
    assert_ok(&raw);
    // runc prints the state indented by two spaces, without a trailing newline.
    let raw_text = text(&raw.stdout);
    assert!(raw_text.starts_with("{\n  \"ociVersion\": "), "{raw_text}");
    assert!(raw_text.ends_with('}'), "{raw_text:?}");
    let s: Value = serde_json::from_str(&raw_text).unwrap();
    let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    let mut want = vec![
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "owner",
    ];
    if s.get("annotations").is_some() {
        want.push("annotations");
    }
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["status"], "created");
    assert_eq!(s["bundle"], w.bundle_str());
    assert_eq!(s["rootfs"], w.bundle.join("rootfs").to_str().unwrap());
    assert_eq!(s["owner"], "");
    assert!(s["created"].as_str().unwrap().ends_with('Z'));
    let pid = s["pid"].as_i64().unwrap();
    assert!(pid > 0 && pid_alive(pid));
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written.trim().parse::<i64>().unwrap(), pid);

    assert_ok(&w.berth(&["start", &id]));
    let s = w.wait_status(&id, "running");
    assert_eq!(s["pid"].as_i64().unwrap(), pid);

    assert_ok(&w.berth(&["kill", &id, "SIGKILL"]));
    let s = w.wait_status(&id, "stopped");
    assert_eq!(s["pid"], 0);

    assert_ok(&w.berth(&["delete", &id]));
    let err = assert_fails_with_one_line(&w.berth(&["state", &id]));
    assert!(err.contains(&id), "{err}");
    assert!(w.root_entries().is_empty(), "{:?}", w.root_entries());
}

#[test]
fn kill_defaults_to_sigterm_and_accepts_numbers() {
    let mut w = World::new(&[
        "sh",
        "-c",
        "trap 'exit 7' TERM; while true; do sleep 0.05; done",
    ]);
    let id = w.id();
    assert_ok(&w.berth(&["run", "-d", "-b", w.bundle_str(), &id]));
    let s = w.wait_status(&id, "running");
    wait_catches(s["pid"].as_i64().unwrap(), libc::SIGTERM);
    assert_ok(&w.berth(&["kill", &id]));
    w.wait_status(&id, "stopped");

    let id2 = w.id();
    w.edit_config(|c| c["process"]["args"] = serde_json::json!(["sleep", "60"]));
    assert_ok(&w.berth(&["run", "-d", "-b", w.bundle_str(), &id2]));
    assert_ok(&w.berth(&["kill", &id2, "9"]));
    w.wait_status(&id2, "stopped");

    let err = assert_fails_with_one_line(&w.berth(&["kill", &id2, "NOTASIGNAL"]));
    assert!(err.contains("NOTASIGNAL"), "{err}");
}

#[test]
fn delete_refuses_a_running_container_without_force() {
    let mut w = World::new(&["sleep", "60"]);
    let id = w.id();
    assert_ok(&w.berth(&["run", "-d", "-b", w.bundle_str(), &id]));
    let before = w.wait_status(&id, "running");
    let err = assert_fails_with_one_line(&w.berth(&["delete", &id]));
    assert!(err.contains(&id), "{err}");
    let after = w.state(&id);
    assert_eq!(before, after);
    assert!(pid_alive(after["pid"].as_i64().unwrap()));

    assert_ok(&w.berth(&["delete", "--force", &id]));
    assert_eq!(w.berth(&["state", &id]).status.code(), Some(1));
    wait_gone(after["pid"].as_i64().unwrap());
    // --force on a container that does not exist is not an error (as runc).
    assert_ok(&w.berth(&["delete", "-f", &id]));
    assert_fails_with_one_line(&w.berth(&["delete", &id]));

    // `created` is not stopped either (the spec; runc 1.1 deletes it): refused, untouched.
    assert_ok(&w.berth(&["create", "-b", w.bundle_str(), &id]));
    let before = w.wait_status(&id, "created");
    let err = assert_fails_with_one_line(&w.berth(&["delete", &id]));
    assert!(err.contains("created"), "{err}");
    assert_eq!(w.state(&id), before);
    assert!(pid_alive(before["pid"].as_i64().unwrap()));
    assert_ok(&w.berth(&["delete", "--force", &id]));
    wait_gone(before["pid"].as_i64().unwrap());
}

#[test]
fn operations_not_allowed_in_a_state_change_nothing() {
    let mut w = World::new(&["sleep", "60"]);
    let id = w.id();
    assert_ok(&w.berth(&["create", "-b", w.bundle_str(), &id]));
    assert_ok(&w.berth(&["start", &id]));
    let before = w.wait_status(&id, "running");
    let err = assert_fails_with_one_line(&w.berth(&["start", &id]));
    assert!(err.contains(&id), "{err}");
    assert_eq!(w.state(&id), before);

    // Creating the same id again fails and keeps the running one.
    let out = w.berth(&["create", "-b", w.bundle_str(), &id]);
    assert_fails_with_one_line(&out);
    assert_eq!(w.state(&id), before);
}

#[test]
fn list_table_json_and_quiet() {
    let mut w = World::new(&["sleep", "60"]);
    let empty = w.berth(&["list"]);
    assert_ok(&empty);
    assert_eq!(
        text(&empty.stdout),
        "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n"
    );
    let a = w.id();
    let b = w.id();
    assert_ok(&w.berth(&["create", "-b", w.bundle_str(), &a]));
    assert_ok(&w.berth(&["run", "-d", "-b", w.bundle_str(), &b]));

    let table = w.berth(&["list"]);
    assert_ok(&table);
    let table = text(&table.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let header_cols: Vec<usize> = ["PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        .iter()
        .map(|h| lines[0].find(h).unwrap())
        .collect();
    // Sorted by id; every column starts at the header's offset.
    let (first, second) = if a < b { (&a, &b) } else { (&b, &a) };
    assert!(lines[1].starts_with(first.as_str()));
    assert!(lines[2].starts_with(second.as_str()));
    for line in &lines[1..] {
        for &col in &header_cols {
            assert_eq!(&line[col - 1..col], " ", "{line:?}");
            assert_ne!(&line[col..col + 1], " ", "{line:?}");
        }
        assert!(line.contains(w.bundle_str()));
        assert!(line.ends_with("root"), "{line:?}");
    }
    let row_a = lines.iter().find(|l| l.starts_with(a.as_str())).unwrap();
    let row_b = lines.iter().find(|l| l.starts_with(b.as_str())).unwrap();
    assert!(row_a.contains(" created "), "{row_a}");
    assert!(row_b.contains(" running "), "{row_b}");

    let json = w.berth(&["list", "--format", "json"]);
    assert_ok(&json);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        assert_eq!(item["owner"], "root");
        assert_eq!(item["bundle"], w.bundle_str());
        let s = w.state(item["id"].as_str().unwrap());
        assert_eq!(item["pid"], s["pid"]);
        assert_eq!(item["status"], s["status"]);
    }

    let quiet = w.berth(&["list", "-q"]);
    assert_ok(&quiet);
    assert_eq!(text(&quiet.stdout), format!("{first}\n{second}\n"));

    let bad = w.berth(&["list", "--format", "yaml"]);
    let err = assert_fails_with_one_line(&bad);
    assert!(err.contains("yaml"), "{err}");
    assert!(bad.stdout.is_empty(), "{}", text(&bad.stdout));
}

#[rstest]
#[case::missing_config(&["create", "--bundle", "EMPTY", "ID"], "config.json")]
#[case::bad_id(&["create", "--bundle", "BUNDLE", "a/b"], "a/b")]
#[case::bad_id_run(&["run", "--bundle", "BUNDLE", "../x"], "../x")]
#[case::unknown_flag(&["create", "--bogus", "ID"], "--bogus")]
#[case::unknown_global_flag_after(&["--nope", "list"], "--nope")]
#[case::missing_id(&["create", "--bundle", "BUNDLE"], "create")]
#[case::unknown_command(&["frobnicate"], "frobnicate")]
#[case::not_implemented(&["checkpoint", "ID"], "not implemented")]
#[case::bad_log_format(&["--log-format", "xml", "list"], "xml")]
#[case::bad_rootless(&["--rootless", "maybe", "list"], "maybe")]
#[case::bad_preserve_fds(&["create", "--preserve-fds", "lots", "ID"], "preserve-fds")]
#[case::value_missing(&["create", "ID", "--bundle"], "--bundle")]
#[case::tty_detached(&["run", "-d", "--bundle", "TTYBUNDLE", "ID"], "console-socket")]
fn bad_input_fails_cleanly(#[case] args: &[&str], #[case] needle: &str) {
    let mut w = World::new(&["true"]);
    let id = w.id();
    let empty = w.dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let tty_bundle = w.dir.join("tty");
    std::fs::create_dir_all(&tty_bundle).unwrap();
    std::os::unix::fs::symlink(w.bundle.join("rootfs"), tty_bundle.join("rootfs")).unwrap();
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(w.config_path()).unwrap()).unwrap();
    cfg["process"]["terminal"] = Value::Bool(true);
    std::fs::write(tty_bundle.join("config.json"), cfg.to_string()).unwrap();

    let args: Vec<String> = args
        .iter()
        .map(|a| match *a {
            "ID" => id.clone(),
            "EMPTY" => empty.to_str().unwrap().to_string(),
            "BUNDLE" => w.bundle_str().to_string(),
            "TTYBUNDLE" => tty_bundle.to_str().unwrap().to_string(),
            other => other.to_string(),
        })
        .collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = w.berth(&argv);
    let err = assert_fails_with_one_line(&out);
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
    assert!(
        w.root_entries().is_empty(),
        "left in --root: {:?}",
        w.root_entries()
    );
}

#[test]
fn usage_errors_print_incorrect_usage_and_help_on_stdout() {
    let w = World::new(&["true"]);
    let out = w.berth(&["list", "--bogus"]);
    assert_fails_with_one_line(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("Incorrect Usage: flag provided but not defined: --bogus"));
    assert!(stdout.contains("berth list"));
}

#[test]
fn errors_go_to_the_log_file_as_json_lines() {
    let w = World::new(&["true"]);
    let log = w.dir.join("berth.log");
    let log_s = log.to_str().unwrap();
    for _ in 0..2 {
        let out = w.berth(&[
            "--log",
            log_s,
            "--log-format",
            "json",
            "state",
            "no-such-ctr",
        ]);
        let err = assert_fails_with_one_line(&out);
        // With a log file, stderr carries the bare message.
        assert!(!err.starts_with('{') && !err.starts_with("time="), "{err}");
        assert!(err.contains("no-such-ctr"));
    }
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap();
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["level", "msg", "time"]);
        assert_eq!(v["level"], "error");
        assert!(v["msg"].as_str().unwrap().contains("no-such-ctr"));
        let t = v["time"].as_str().unwrap();
        assert_eq!(t.len(), "2026-11-27T21:05:16Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}

#[test]
fn text_log_and_debug_lines() {
    let mut w = World::new(&["true"]);
    let id = w.id();
    let log = w.dir.join("text.log");
    let log_s = log.to_str().unwrap();
    let out = w.berth(&[
        "--debug",
        "--systemd-cgroup",
        "--log",
        log_s,
        "run",
        "-b",
        w.bundle_str(),
        &id,
    ]);
    assert_ok(&out);
    let content = std::fs::read_to_string(&log).unwrap();
    assert!(content.lines().count() >= 2, "{content}");
    for line in content.lines() {
        assert!(line.starts_with("time=\""), "{line}");
        assert!(line.contains(" level="), "{line}");
        assert!(line.contains(" msg="), "{line}");
    }
    assert!(content.contains("level=debug"), "{content}");
    assert!(content.contains("level=warning"), "{content}");
    assert!(content.contains("systemd"), "{content}");

    // Without --log, the error line on stderr is the text log line itself (as runc).
    let out = w.berth(&["state", "no-such-ctr"]);
    let err = assert_fails_with_one_line(&out);
    assert!(
        err.starts_with("time=\"") && err.contains("level=error"),
        "{err}"
    );
}

#[test]
fn spec_writes_config_and_refuses_to_overwrite() {
    let w = World::new(&["true"]);
    let dir = w.dir.join("spec");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    assert_ok(&w.berth(&["spec", "-b", d]));
    let path = dir.join("config.json");
    let first = std::fs::read_to_string(&path).unwrap();
    let v: Value = serde_json::from_str(&first).unwrap();
    assert!(v["ociVersion"].is_string());
    assert!(v["process"]["args"].is_array());
    assert!(
        first.contains("\n\t\"ociVersion\""),
        "tab indentation like runc"
    );

    let out = w.berth(&["spec", "--bundle", d]);
    let err = assert_fails_with_one_line(&out);
    assert!(
        err.contains("exists") && err.contains("Remove it first"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);

    // The rootless variant gets a user namespace.
    let rl = w.dir.join("rootless");
    std::fs::create_dir_all(&rl).unwrap();
    assert_ok(&w.berth(&["spec", "--rootless", "--bundle", rl.to_str().unwrap()]));
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(rl.join("config.json")).unwrap()).unwrap();
    let namespaces = v["linux"]["namespaces"].as_array().unwrap();
    assert!(
        namespaces.iter().any(|n| n["type"] == "user"),
        "{namespaces:?}"
    );

    let missing = w.dir.join("does-not-exist");
    let err = assert_fails_with_one_line(&w.berth(&["spec", "-b", missing.to_str().unwrap()]));
    assert!(err.contains("does-not-exist"), "{err}");
}

#[test]
fn features_is_valid_json() {
    let w = World::new(&["true"]);
    let out = w.berth(&["features"]);
    assert_ok(&out);
    let s = text(&out.stdout);
    assert!(s.ends_with("}\n"));
    assert!(s.contains("\n    \""), "four-space indentation like runc");
    let v: Value = serde_json::from_str(&s).unwrap();
    assert!(v["ociVersionMin"].is_string(), "{v}");
    assert!(v["ociVersionMax"].is_string(), "{v}");
}

#[test]
fn help_and_version() {
    let w = World::new(&["true"]);
    for args in [&["--help"][..], &["-h"], &["help"], &[]] {
        let out = w.berth(args);
        assert_ok(&out);
        assert!(text(&out.stdout).contains("COMMANDS:"));
    }
    for args in [&["run", "--help"][..], &["help", "run"], &["run", "-h"]] {
        let out = w.berth(args);
        assert_ok(&out);
        let s = text(&out.stdout);
        assert!(s.contains("berth run") && s.contains("--detach"), "{s}");
    }
    for flag in ["-v", "--version"] {
        let out = w.berth(&[flag]);
        assert_ok(&out);
        assert!(text(&out.stdout).starts_with("berth version "));
    }
}

/// Reads from `fd` (non-blocking) until `needle` shows up.
fn read_until(fd: &OwnedFd, acc: &mut Vec<u8>, needle: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !text(acc).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} never seen; got {:?}",
            text(acc)
        );
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
        let mut buf = [0u8; 4096];
        match nix::unistd::read(fd, &mut buf) {
            Ok(n) => acc.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EAGAIN) => {}
            Err(e) => panic!("read pty: {e}"),
        }
    }
}

#[test]
fn run_with_terminal_proxies_the_console_and_restores_the_tty() {
    use nix::sys::termios::{LocalFlags, tcgetattr};
    let mut w = World::new(&[
        "sh",
        "-c",
        "tty; stty size; echo ready; read line; echo got:$line; \
         while [ \"$(stty size)\" != '50 120' ]; do sleep 0.05; done; echo resized; exit 7",
    ]);
    w.edit_config(|c| c["process"]["terminal"] = Value::Bool(true));
    let id = w.id();
    let size = |rows: u16, cols: u16| libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size(40, 100)), None).unwrap();
    let before = tcgetattr(&pty.slave).unwrap();
    assert!(before.local_flags.contains(LocalFlags::ICANON));
    let flags = nix::fcntl::fcntl(&pty.master, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    nix::fcntl::fcntl(
        &pty.master,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )
    .unwrap();

    let mut child = w
        .cmd(&["run", "--bundle", w.bundle_str(), &id])
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acc = Vec::new();
    read_until(&pty.master, &mut acc, "ready", 20);
    // The container got a terminal of its own, as large as ours...
    assert!(text(&acc).contains("/dev/pts/"), "{:?}", text(&acc));
    assert!(text(&acc).contains("40 100"), "{:?}", text(&acc));
    // ...and berth put ours in raw mode while proxying.
    let during = tcgetattr(&pty.slave).unwrap();
    assert!(!during.local_flags.contains(LocalFlags::ICANON));
    assert!(!during.local_flags.contains(LocalFlags::ECHO));

    nix::unistd::write(&pty.master, b"abc\r").unwrap();
    read_until(&pty.master, &mut acc, "got:abc", 20);
    // Resizing our terminal and signalling SIGWINCH resizes the container's.
    // SAFETY: TIOCSWINSZ reads one live local winsize.
    let r = unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &size(50, 120)) };
    assert_eq!(r, 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )
    .unwrap();
    read_until(&pty.master, &mut acc, "resized", 20);
    let st = wait_child(&mut child, 20);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(st.code(), Some(7), "stderr: {stderr}");

    let after = tcgetattr(&pty.slave).unwrap();
    assert_eq!(after.local_flags, before.local_flags);
    assert_eq!(after.input_flags, before.input_flags);
    assert_eq!(after.output_flags, before.output_flags);
    // The private console socket directory is gone.
    let leftover: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("berth-console-{}-", child.id()))
        })
        .collect();
    assert!(leftover.is_empty(), "{leftover:?}");
    assert!(w.root_entries().is_empty(), "{:?}", w.root_entries());
}

#[test]
fn run_with_terminal_and_piped_stdin() {
    let mut w = World::new(&["sh"]);
    w.edit_config(|c| c["process"]["terminal"] = Value::Bool(true));
    let id = w.id();
    let mut child = w
        .cmd(&["run", "--bundle", w.bundle_str(), &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo $((6*7)); exit 5\n")
        .unwrap();
    let st = wait_child(&mut child, 30);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(st.code(), Some(5), "stdout: {out}");
    assert!(out.contains("42"), "{out}");
}

#[test]
fn preserve_fds_passes_descriptors() {
    let mut w = World::new(&["sh", "-c", "cat <&3"]);
    let id = w.id();
    let data = w.dir.join("data.txt");
    std::fs::write(&data, "through fd 3\n").unwrap();
    let file = std::fs::File::open(&data).unwrap();
    let raw = file.as_raw_fd();
    let mut cmd = w.cmd(&["run", "--preserve-fds", "1", "-b", w.bundle_str(), &id]);
    // SAFETY: the closure only calls dup2/fcntl, which are async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            // Put the file at fd 3 without FD_CLOEXEC (dup2 onto itself would keep the flag).
            let r = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_ok(&out);
    assert_eq!(text(&out.stdout), "through fd 3\n");
}

/// Children of `pid` (all its threads), from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.filter_map(Result::ok) {
            let list = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// Without a pid namespace, an orphan of the container is re-parented to `berth run` (the
/// child subreaper), which reaps it; with `--no-subreaper` it goes elsewhere.
#[rstest]
#[case::subreaper(false)]
#[case::no_subreaper(true)]
fn run_adopts_and_reaps_orphans_unless_no_subreaper(#[case] no_subreaper: bool) {
    let mut w = World::new(&["sh", "-c", "(sleep 0.8 &); echo ready; sleep 2; exit 4"]);
    w.edit_config(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
    });
    let id = w.id();
    let mut args = vec!["run", "--bundle", w.bundle_str()];
    if no_subreaper {
        args.push("--no-subreaper");
    }
    args.push(&id);
    let mut child = w.cmd(&args).stdout(Stdio::piped()).spawn().unwrap();
    let mut buf = [0u8; 6];
    child.stdout.take().unwrap().read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    // The subshell has exited: its `sleep 0.8` is an orphan by now.
    let kids = children_of(child.id());
    if no_subreaper {
        assert_eq!(kids.len(), 1, "only the init: {kids:?}");
    } else {
        assert_eq!(kids.len(), 2, "the init and the adopted orphan: {kids:?}");
        // Once the orphan exits, berth reaps it while the init still runs.
        let deadline = Instant::now() + Duration::from_millis(1800);
        while children_of(child.id()).len() != 1 {
            assert!(Instant::now() < deadline, "orphan never reaped");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let st = wait_child(&mut child, 20);
    assert_eq!(st.code(), Some(4));
}

// ---- cgroups: limits, pause/resume, update, ps, events, kill --all ----

/// The directories `berth/<id>` left in any mounted cgroup hierarchy (each once: not also
/// through a v1 host's `cpu` -> `cpu,cpuacct` symlinks).
fn cgroups_left(id: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|(mount, _)| mount.join("berth").join(id))
        .filter(|p| p.exists())
        .collect()
}

/// A file of the container's cgroup in the v1 hierarchy `v1` (or the cgroup2 `v2` name).
fn cgroup_file(id: &str, v1: &str, file: &str, v2: &str) -> String {
    let p = Path::new("/sys/fs/cgroup")
        .join(v1)
        .join("berth")
        .join(id)
        .join(file);
    let p = if p.exists() {
        p
    } else {
        Path::new("/sys/fs/cgroup/berth").join(id).join(v2)
    };
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn run_with_limits_shows_them_inside() {
    let (script, want) = if pure_v2() {
        (
            "cd /sys/fs/cgroup && cat memory.max pids.max cpu.max cpu.weight",
            "67108864\n20\n25000 100000\n10\n",
        )
    } else {
        (
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max \
             /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.shares",
            "67108864\n20\n25000\n256\n",
        )
    };
    let mut w = World::new(&["sh", "-c", script]);
    w.edit_config(|c| {
        set_cgroup_ns(c);
        c["linux"]["resources"]["memory"] = serde_json::json!({"limit": 67108864});
        c["linux"]["resources"]["pids"] = serde_json::json!({"limit": 20});
        c["linux"]["resources"]["cpu"] =
            serde_json::json!({"quota": 25000, "period": 100000, "shares": 256});
    });
    let id = w.id();
    let out = w.berth(&["run", "--bundle", w.bundle_str(), &id]);
    assert_ok(&out);
    assert_eq!(text(&out.stdout), want);
    assert!(cgroups_left(&id).is_empty(), "{:?}", cgroups_left(&id));
}

#[test]
fn pause_resume_update_ps_and_stats() {
    let mut w = World::new(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    w.edit_config(|c| {
        c["linux"]["resources"]["memory"] = serde_json::json!({"limit": 67108864});
    });
    let id = w.id();
    assert_ok(&w.berth(&["run", "-d", "--bundle", w.bundle_str(), &id]));
    let pid = w.state(&id)["pid"].as_i64().unwrap();

    // ps: json is the array of host pids; the table is ps -ef's rows of those pids.
    let deadline = Instant::now() + Duration::from_secs(10);
    let pids = loop {
        let out = w.berth(&["ps", "--format", "json", &id]);
        assert_ok(&out);
        let pids: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap();
        if pids.len() == 3 || Instant::now() > deadline {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(pids.contains(&pid), "{pids:?}");
    let out = w.berth(&["ps", &id]);
    assert_ok(&out);
    let table = text(&out.stdout);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().contains("PID"), "{table}");
    assert_eq!(lines.count(), 3, "{table}");
    let out = w.berth(&["ps", &id, "--", "-o", "pid,comm"]);
    assert_ok(&out);
    assert!(text(&out.stdout).contains("sleep"), "{}", text(&out.stdout));
    // As with runc, ps(1)'s options may follow the id without `--`.
    let out = w.berth(&["ps", &id, "-e", "-x"]);
    assert_ok(&out);
    assert_eq!(
        text(&out.stdout).lines().count(),
        4,
        "{}",
        text(&out.stdout)
    );
    let out = w.berth(&["ps", &id, "-o", "pid,comm"]);
    assert_ok(&out);
    assert!(text(&out.stdout).contains("sleep"), "{}", text(&out.stdout));

    // pause / resume.
    assert_ok(&w.berth(&["pause", &id]));
    assert_eq!(w.state(&id)["status"], "paused");
    let err = assert_fails_with_one_line(&w.berth(&["pause", &id]));
    assert!(err.contains("paused"), "{err}");
    assert_ok(&w.berth(&["resume", &id]));
    assert_eq!(w.state(&id)["status"], "running");
    let err = assert_fails_with_one_line(&w.berth(&["resume", &id]));
    assert!(err.contains("running"), "{err}");

    // update with flags, then with a resources file.
    assert_ok(&w.berth(&["update", "--memory", "128m", "--pids-limit", "40", &id]));
    assert_eq!(
        cgroup_file(&id, "memory", "memory.limit_in_bytes", "memory.max"),
        "134217728"
    );
    assert_eq!(cgroup_file(&id, "pids", "pids.max", "pids.max"), "40");
    let res = w.dir.join("resources.json");
    std::fs::write(&res, r#"{"pids": {"limit": 30}}"#).unwrap();
    assert_ok(&w.berth(&["update", "--resources", res.to_str().unwrap(), &id]));
    assert_eq!(cgroup_file(&id, "pids", "pids.max", "pids.max"), "30");
    let err = assert_fails_with_one_line(&w.berth(&["update", "--cpu-share", "lots", &id]));
    assert!(err.contains("--cpu-share"), "{err}");

    // events --stats: one JSON line as runc prints it.
    let out = w.berth(&["events", "--stats", &id]);
    assert_ok(&out);
    let s = text(&out.stdout);
    assert_eq!(s.lines().count(), 1, "{s}");
    let ev: Value = serde_json::from_str(&s).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], id.as_str());
    assert_eq!(ev["data"]["memory"]["usage"]["limit"], 134217728);
    assert_eq!(ev["data"]["pids"]["current"], 3);
    assert_eq!(ev["data"]["pids"]["limit"], 30);

    assert_ok(&w.berth(&["delete", "--force", &id]));
    for p in pids {
        wait_gone(p);
    }
    assert!(cgroups_left(&id).is_empty(), "{:?}", cgroups_left(&id));
}

#[test]
fn events_reports_an_oom_kill() {
    let mut w = World::new(&[
        "sh",
        "-c",
        "while ! test -e /tmp/go; do sleep 0.05; done; x=aaaaaaaaaaaaaaaa; \
         while true; do x=$x$x; done",
    ]);
    w.edit_config(|c| {
        c["linux"]["resources"]["memory"] = serde_json::json!({"limit": 8388608, "swap": 8388608});
    });
    let id = w.id();
    assert_ok(&w.berth(&["run", "-d", "--bundle", w.bundle_str(), &id]));
    let mut events = w
        .cmd(&["events", "--interval", "1h", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Give events the time to register its OOM notification before the container allocates.
    std::thread::sleep(Duration::from_millis(700));
    std::fs::write(w.bundle.join("rootfs/tmp/go"), "").unwrap();
    let st = wait_child(&mut events, 30);
    let mut out = String::new();
    events
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    events
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(st.success(), "{st:?}: {out} {err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|e| e["type"] == "oom" && e["id"] == id.as_str()),
        "{out}"
    );
    assert_eq!(w.state(&id)["status"], "stopped");
    assert_ok(&w.berth(&["delete", &id]));
    assert!(cgroups_left(&id).is_empty(), "{:?}", cgroups_left(&id));
}

#[test]
fn kill_all_reaches_every_process_without_a_pid_namespace() {
    let mut w = World::new(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    w.edit_config(|c| {
        if let Some(list) = c["linux"]["namespaces"].as_array_mut() {
            list.retain(|n| n["type"] != "pid");
        }
    });
    let id = w.id();
    assert_ok(&w.berth(&["run", "-d", "--bundle", w.bundle_str(), &id]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let pids = loop {
        let out = w.berth(&["ps", "--format", "json", &id]);
        assert_ok(&out);
        let pids: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap();
        if pids.len() == 3 || Instant::now() > deadline {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert_ok(&w.berth(&["kill", "--all", &id, "KILL"]));
    for p in &pids {
        wait_gone(*p);
    }
    w.wait_status(&id, "stopped");
    assert_ok(&w.berth(&["delete", &id]));
    assert!(cgroups_left(&id).is_empty(), "{:?}", cgroups_left(&id));
}

#[test]
fn create_with_an_invalid_resource_leaves_nothing() {
    let mut w = World::new(&["true"]);
    w.edit_config(|c| {
        c["linux"]["resources"]["cpu"] = serde_json::json!({"cpus": "99999"});
    });
    let id = w.id();
    let err = assert_fails_with_one_line(&w.berth(&["create", "--bundle", w.bundle_str(), &id]));
    assert!(err.contains("99999"), "{err}");
    assert!(w.root_entries().is_empty(), "{:?}", w.root_entries());
    assert!(cgroups_left(&id).is_empty(), "{:?}", cgroups_left(&id));
}

/// Test-made cgroup directories (given top first), removed deepest first on drop, thawed
/// and emptied first, even when the test fails.
struct TestCgroups(Vec<PathBuf>);

impl TestCgroups {
    /// Makes `dir` (a cgroup directory), copying a v1 cpuset's cpus and mems from its parent.
    fn mkdir(&mut self, dir: PathBuf) {
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        // (On v2 an empty cpuset.cpus means the parent's; the root has none to copy.)
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if dir.join(f).exists() && !pure_v2() {
                let v = std::fs::read_to_string(dir.parent().unwrap().join(f)).unwrap();
                std::fs::write(dir.join(f), v.trim()).unwrap();
            }
        }
        self.0.push(dir);
    }
}

/// Thaws `d`, kills its processes and removes it with its sub-cgroups, deepest first.
fn remove_cgroup_tree(d: &Path) {
    let _ = std::fs::write(d.join("freezer.state"), "THAWED");
    let _ = std::fs::write(d.join("cgroup.freeze"), "0");
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            remove_cgroup_tree(&e.path());
        }
    }
    for pid in std::fs::read_to_string(d.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
    {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.exists() && std::fs::remove_dir(d).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        // Thawed everywhere first: a frozen process dies only once thawed.
        for d in &self.0 {
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
        }
        for d in self.0.iter().rev() {
            remove_cgroup_tree(d);
        }
    }
}

/// The mounted cgroup hierarchies (their mount points: each v1 hierarchy once, the cgroup2
/// one, which on a pure v2 host is /sys/fs/cgroup itself) with the cgroup this test process
/// is in in each.
fn hierarchies() -> Vec<(PathBuf, PathBuf)> {
    let layout = berth_runtime_core::berth_cgroups::Layout::detect().expect("the cgroup layout");
    let mut v: Vec<(PathBuf, PathBuf)> = layout
        .hierarchies()
        .map(|h| (h.mount_point.clone(), h.own_cgroup.clone()))
        .collect();
    v.sort();
    v
}

/// The directory of `cgroup` in the hierarchy mounted at `mount`.
fn dir_of(mount: &Path, cgroup: &Path) -> PathBuf {
    mount.join(cgroup.strip_prefix("/").unwrap_or(cgroup))
}

/// A device of `linux.devices` is no exception to `linux.resources.devices` (runc 1.1:
/// denied unless a rule allows it); only the fixed default set (/dev/null...) is.
#[test]
fn linux_devices_obey_resources_devices() {
    let mut w = World::new(&[
        "sh",
        "-c",
        "(echo berth-device-test > /dev/kmsg) 2>/dev/null && echo kmsg-written || echo kmsg-denied; \
         echo x > /dev/null && echo null-ok",
    ]);
    let deny_all = serde_json::json!({"allow": false, "access": "rwm"});
    w.edit_config(|c| {
        c["linux"]["devices"] = serde_json::json!([{"path": "/dev/kmsg", "type": "c",
            "major": 1, "minor": 11, "fileMode": 438, "uid": 0, "gid": 0}]);
        c["linux"]["resources"]["devices"] = serde_json::json!([deny_all]);
    });
    let id = w.id();
    let out = w.berth(&["run", "--bundle", w.bundle_str(), &id]);
    assert_ok(&out);
    assert_eq!(text(&out.stdout), "kmsg-denied\nnull-ok\n");

    // Allowed by a rule: written. "rwa" is "rw", as runc reads it.
    w.edit_config(|c| {
        c["linux"]["resources"]["devices"] = serde_json::json!([deny_all,
            {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rwa"}]);
    });
    let id = w.id();
    let out = w.berth(&["run", "--bundle", w.bundle_str(), &id]);
    assert_ok(&out);
    assert_eq!(text(&out.stdout), "kmsg-written\nnull-ok\n");

    // A rule without an access is refused (runc: "device access at 1 field cannot be
    // empty"), leaving nothing.
    w.edit_config(|c| {
        c["linux"]["resources"]["devices"] =
            serde_json::json!([deny_all, {"allow": true, "type": "c", "major": 1, "minor": 11}]);
    });
    let id = w.id();
    let err = assert_fails_with_one_line(&w.berth(&["run", "--bundle", w.bundle_str(), &id]));
    assert!(err.contains("devices[1].access"), "{err}");
    assert!(w.root_entries().is_empty(), "{:?}", w.root_entries());
    assert!(cgroups_left(&id).is_empty(), "{:?}", cgroups_left(&id));
}

/// `update` leaves the device rules of create alone (runc 1.1's ignores
/// linux.resources.devices): it can neither open a denied device nor take /dev/null away.
#[test]
fn update_keeps_the_device_rules_of_create() {
    let mut w = World::new(&["sleep", "1000"]);
    let id = w.id();
    assert_ok(&w.berth(&["run", "-d", "--bundle", w.bundle_str(), &id]));
    // v1: the devices controller's list; v2: the ids of the eBPF programs attached.
    let list = || {
        if !pure_v2() {
            return cgroup_file(&id, "devices", "devices.list", "devices.list");
        }
        let dir = Path::new("/sys/fs/cgroup/berth").join(&id);
        let fd = std::fs::File::open(&dir).expect("open the container's cgroup");
        let ids = berth_runtime_core::berth_cgroups::devices::query_programs(
            std::os::fd::AsFd::as_fd(&fd),
            &dir,
        )
        .expect("query the device programs");
        format!("c 1:3 rwm (programs {ids:?})")
    };
    let before = list();
    assert!(
        before.contains("c 1:3 rwm") && !before.contains("a *:*") && !before.contains("[]"),
        "{before}"
    );
    let res = w.dir.join("resources.json");
    for devices in [
        r#"[{"allow": true, "access": "rwm"}]"#,
        r#"[{"allow": false, "access": "rwm"}]"#,
    ] {
        std::fs::write(
            &res,
            format!(r#"{{"devices": {devices}, "pids": {{"limit": 9}}}}"#),
        )
        .unwrap();
        let out = w.berth(&["update", "--resources", res.to_str().unwrap(), &id]);
        assert_ok(&out);
        assert!(
            text(&out.stderr).contains("ignored"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(list(), before, "update {devices} changed the device rules");
        assert_eq!(cgroup_file(&id, "pids", "pids.max", "pids.max"), "9");
    }
    assert_ok(&w.berth(&["delete", "--force", &id]));
}

/// The zero values Docker 20.10 puts in linux.resources mean "not set", as with runc.
#[test]
fn docker_zero_resources_mean_not_set() {
    let (script, want) = if pure_v2() {
        (
            "cd /sys/fs/cgroup && cat pids.max cpu.weight cpu.max",
            "max\n100\nmax 100000\n",
        )
    } else {
        (
            "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares \
             /sys/fs/cgroup/cpu/cpu.cfs_quota_us",
            "max\n1024\n-1\n",
        )
    };
    let mut w = World::new(&["sh", "-c", script]);
    w.edit_config(|c| {
        set_cgroup_ns(c);
        let r = &mut c["linux"]["resources"];
        r["cpu"] = serde_json::json!({"shares": 0, "quota": 0, "period": 0,
            "realtimePeriod": 0, "realtimeRuntime": 0, "cpus": "", "mems": ""});
        r["memory"] = serde_json::json!({"limit": 0, "reservation": 0, "swap": 0,
            "kernel": 0, "kernelTCP": 0, "swappiness": 18446744073709551615u64});
        r["pids"] = serde_json::json!({"limit": 0});
        r["blockIO"] = serde_json::json!({"weight": 0, "leafWeight": 0});
    });
    let id = w.id();
    let out = w.berth(&["run", "--bundle", w.bundle_str(), &id]);
    assert_ok(&out);
    assert_eq!(text(&out.stdout), want);
}

/// A relative linux.cgroupsPath is taken from berth's own cgroup in each hierarchy
/// (as runc does), also when those differ; later commands, run from elsewhere, find it.
/// On pure v2 it is taken from the parent of berth's own cgroup, as runc does there: that
/// one has processes, so no controller could be enabled below it.
#[test]
fn relative_cgroups_path_is_resolved_per_hierarchy() {
    let base = unique("berth-rel");
    let mut made = TestCgroups(Vec::new());
    let v2 = pure_v2();
    // berth runs in <own>/<base>/<hierarchy name>: a different cgroup in each. (On v2, from
    // own's parent: the test runner's own cgroup has processes.)
    let mut places = Vec::new();
    for (mount, own) in hierarchies() {
        let own = if v2 {
            own.parent().unwrap_or(&own).to_path_buf()
        } else {
            own
        };
        let leaf = mount
            .file_name()
            .unwrap_or(std::ffi::OsStr::new("unified"))
            .to_owned();
        let cg = own.join(&base).join(&leaf);
        made.mkdir(dir_of(&mount, &own.join(&base)));
        made.mkdir(dir_of(&mount, &cg));
        places.push((mount, cg));
    }
    assert!(places.len() > 2 || v2, "{places:?}");
    // Where each hierarchy's container cgroup is expected: below berth's own cgroup, or on
    // v2 below its parent.
    let container = |cg: &Path| {
        if v2 {
            cg.parent().unwrap_or(cg).join("ctr/x")
        } else {
            cg.join("ctr/x")
        }
    };
    let mut w = World::new(&["sleep", "1000"]);
    w.edit_config(|c| {
        c["linux"]["cgroupsPath"] = Value::from("ctr/x");
        // The paths are compared from inside too: no cgroup namespace (berth spec makes one
        // on pure v2).
        if let Some(list) = c["linux"]["namespaces"].as_array_mut() {
            list.retain(|n| n["type"] != "cgroup");
        }
    });
    let id = w.id();
    let joins: String = places
        .iter()
        .map(|(m, cg)| {
            format!(
                "echo $$ > {}/cgroup.procs || exit 99; ",
                dir_of(m, cg).display()
            )
        })
        .collect();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{joins}exec \"$0\" \"$@\""))
        .arg(BERTH)
        .arg("--root")
        .arg(&w.root)
        .args(["run", "-d", "--bundle", w.bundle_str(), &id])
        .stdin(Stdio::null());
    assert_ok(&run_to_files(cmd, &w.dir));

    let pid = w.state(&id)["pid"].as_i64().unwrap();
    let seen = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for (mount, cg) in &places {
        let want = container(cg);
        assert!(
            seen.lines()
                .any(|l| l.ends_with(&format!(":{}", want.display()))),
            "{} not in\n{seen}",
            want.display()
        );
        assert!(dir_of(mount, &want).is_dir());
    }
    // From the test's own cgroups: exec, update, pause and delete find the container's.
    let out = w.berth(&["exec", &id, "cat", "/proc/self/cgroup"]);
    assert_ok(&out);
    let mut seen_lines: Vec<&str> = seen.lines().collect();
    let exec_out = text(&out.stdout);
    let mut exec_lines: Vec<&str> = exec_out.lines().collect();
    seen_lines.sort_unstable();
    exec_lines.sort_unstable();
    assert_eq!(exec_lines, seen_lines);
    assert_ok(&w.berth(&["update", "--pids-limit", "7", &id]));
    let (pids_mount, pids_cg) = places
        .iter()
        .find(|(m, _)| m.ends_with("pids") || v2)
        .expect("a pids hierarchy");
    let pids_max = dir_of(pids_mount, &container(pids_cg)).join("pids.max");
    assert_eq!(std::fs::read_to_string(pids_max).unwrap().trim(), "7");
    assert_ok(&w.berth(&["pause", &id]));
    assert_eq!(w.state(&id)["status"], "paused");
    assert_ok(&w.berth(&["resume", &id]));
    assert_ok(&w.berth(&["delete", "--force", &id]));
    wait_gone(pid);
    for (mount, cg) in &places {
        assert!(!dir_of(mount, &container(cg)).exists());
    }
}

/// `run -d` into a frozen cgroup fails at once (runc: "container's cgroup unexpectedly
/// frozen") instead of waiting forever for a frozen init; nothing is left.
#[test]
fn run_into_a_frozen_cgroup_is_refused() {
    let name = unique("berth-frozen");
    let mut made = TestCgroups(Vec::new());
    for (mount, _) in hierarchies() {
        made.mkdir(mount.join(&name));
    }
    if pure_v2() {
        std::fs::write(
            Path::new("/sys/fs/cgroup")
                .join(&name)
                .join("cgroup.freeze"),
            "1",
        )
    } else {
        std::fs::write(
            Path::new("/sys/fs/cgroup/freezer")
                .join(&name)
                .join("freezer.state"),
            "FROZEN",
        )
    }
    .unwrap();
    let mut w = World::new(&["sleep", "1000"]);
    w.edit_config(|c| c["linux"]["cgroupsPath"] = Value::from(format!("/{name}")));
    let id = w.id();
    let (o, e) = (w.dir.join("frozen.out"), w.dir.join("frozen.err"));
    let mut child = w
        .cmd(&["run", "-d", "--bundle", w.bundle_str(), &id])
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .unwrap();
    let st = wait_child(&mut child, 20);
    let out = Output {
        status: st,
        stdout: std::fs::read(&o).unwrap(),
        stderr: std::fs::read(&e).unwrap(),
    };
    let err = assert_fails_with_one_line(&out);
    assert!(err.contains("frozen") && err.contains(&name), "{err}");
    assert!(w.root_entries().is_empty(), "{:?}", w.root_entries());
    for d in &made.0 {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert!(procs.is_empty(), "{}: {procs}", d.display());
    }
}

/// update: `--memory -1` lifts memory+swap too, and back; `--pids-limit 0` keeps the
/// limit (runc); a shorter period under a parent limited to one CPU takes the quota first.
#[test]
fn update_memory_unlimited_pids_zero_and_a_shorter_cpu_period() {
    if pure_v2() {
        // The v1 files and their order; cgroups/tests/v2_kernel.rs does v2's for real.
        eprintln!("SKIP: a cgroup v1 test (this host is pure v2)");
        return;
    }
    let parent = unique("berth-cfs");
    let mut made = TestCgroups(Vec::new());
    let cpu_parent = Path::new("/sys/fs/cgroup/cpu").join(&parent);
    made.mkdir(cpu_parent.clone());
    std::fs::write(cpu_parent.join("cpu.cfs_quota_us"), "100000").unwrap();
    // (/sys/fs/cgroup/cpu is a symlink to the cpu,cpuacct hierarchy on most v1 hosts.)
    let cpu_mount = std::fs::canonicalize("/sys/fs/cgroup/cpu").expect("the cpu hierarchy");
    for (mount, _) in hierarchies() {
        if mount != cpu_mount {
            made.mkdir(mount.join(&parent));
        }
    }
    let mut w = World::new(&["sleep", "1000"]);
    w.edit_config(|c| {
        c["linux"]["cgroupsPath"] = Value::from(format!("/{parent}/c"));
        c["linux"]["resources"]["memory"] =
            serde_json::json!({"limit": 67108864, "swap": 134217728});
        c["linux"]["resources"]["cpu"] = serde_json::json!({"quota": 50000, "period": 100000});
        c["linux"]["resources"]["pids"] = serde_json::json!({"limit": 10});
    });
    let id = w.id();
    assert_ok(&w.berth(&["run", "-d", "--bundle", w.bundle_str(), &id]));
    let file = |ctl: &str, f: &str| {
        std::fs::read_to_string(
            Path::new("/sys/fs/cgroup")
                .join(ctl)
                .join(&parent)
                .join("c")
                .join(f),
        )
        .unwrap()
        .trim()
        .to_string()
    };
    let unlimited = |f: &str| file("memory", f).parse::<u64>().unwrap() > 1 << 62;

    assert_ok(&w.berth(&["update", "--memory", "-1", &id]));
    assert!(unlimited("memory.limit_in_bytes"));
    assert!(unlimited("memory.memsw.limit_in_bytes"));
    assert_ok(&w.berth(&["update", "--memory", "64m", "--memory-swap", "128m", &id]));
    assert_eq!(file("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(file("memory", "memory.memsw.limit_in_bytes"), "134217728");

    assert_ok(&w.berth(&["update", "--pids-limit", "0", &id]));
    assert_eq!(file("pids", "pids.max"), "10");
    assert_ok(&w.berth(&["update", "--pids-limit", "-1", &id]));
    assert_eq!(file("pids", "pids.max"), "max");

    assert_ok(&w.berth(&[
        "update",
        "--cpu-period",
        "20000",
        "--cpu-quota",
        "10000",
        &id,
    ]));
    assert_eq!(file("cpu", "cpu.cfs_period_us"), "20000");
    assert_eq!(file("cpu", "cpu.cfs_quota_us"), "10000");
    assert_ok(&w.berth(&[
        "update",
        "--cpu-period",
        "100000",
        "--cpu-quota",
        "90000",
        &id,
    ]));
    assert_eq!(file("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(file("cpu", "cpu.cfs_quota_us"), "90000");
    assert_ok(&w.berth(&["delete", "--force", &id]));
}

#[test]
fn ps_and_kill_all_of_a_stopped_container_succeed_as_with_runc() {
    let mut w = World::new(&["true"]);
    let id = w.id();
    assert_ok(&w.berth(&["run", "-d", "-b", w.bundle_str(), &id]));
    w.wait_status(&id, "stopped");
    // runc 1.1.5 on this host, for a stopped container: `ps` prints the header of `ps -ef`
    // only and `ps --format json` prints `null`, both exit 0; `kill --all` exits 0 (with or
    // without a signal); a plain `kill` fails ("container not running").
    let out = w.berth(&["ps", &id]);
    assert_ok(&out);
    let table = text(&out.stdout);
    assert_eq!(table.lines().count(), 1, "{table}");
    assert!(table.contains("PID"), "{table}");
    let out = w.berth(&["ps", "--format", "json", &id]);
    assert_ok(&out);
    assert_eq!(text(&out.stdout), "null\n");
    assert_ok(&w.berth(&["kill", "--all", &id, "KILL"]));
    assert_ok(&w.berth(&["kill", "--all", &id]));
    let err = assert_fails_with_one_line(&w.berth(&["kill", &id, "KILL"]));
    assert!(err.contains("stopped"), "{err}");
    assert_ok(&w.berth(&["delete", &id]));
    assert!(cgroups_left(&id).is_empty(), "{:?}", cgroups_left(&id));
}

/// The `CapPrm`, `CapEff` and `CapBnd` lines of a /proc/<pid>/status text.
fn cap_lines(status: &str) -> Vec<&str> {
    status
        .lines()
        .filter(|l| {
            ["CapPrm:", "CapEff:", "CapBnd:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .collect()
}

#[test]
fn exec_of_a_process_file_without_user_runs_as_root_with_the_containers_capabilities() {
    let mut w = World::new(&["sleep", "1000"]);
    let id = w.id();
    assert_ok(&w.berth(&["run", "-d", "-b", w.bundle_str(), &id]));
    let pid = w.state(&id)["pid"].as_i64().unwrap();
    // As runc 1.1.5 here: no `user` is uid 0, gid 0; no `capabilities` are the container's.
    let process = w.dir.join("process.json");
    std::fs::write(
        &process,
        r#"{"args": ["/bin/sh", "-c", "id; cat /proc/self/status"], "cwd": "/"}"#,
    )
    .unwrap();
    let out = w.berth(&["exec", "-p", process.to_str().unwrap(), &id]);
    assert_ok(&out);
    let seen = text(&out.stdout);
    let id_line = seen.lines().next().unwrap_or_default();
    assert!(
        id_line.starts_with("uid=0") && id_line.contains("gid=0"),
        "{seen}"
    );
    let init = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(cap_lines(&seen), cap_lines(&init), "{seen}");
    assert_eq!(cap_lines(&seen).len(), 3, "{seen}");
}

// ---- what a killed create or delete, or a corrupt state, leaves ----

/// Live processes of container `id`: a copy of `berth ... create ... id` (an init before its
/// exec, or the child before it) or anything in its cgroup.
fn procs_of(id: &str) -> Vec<i32> {
    let cg = format!("/berth/{id}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
            if stat.is_empty() || state == Some('Z') {
                return false;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cgroups =
                std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            cmdline.split(|b| *b == 0).any(|a| a == id.as_bytes())
                || cgroups
                    .lines()
                    .any(|l| l.ends_with(&cg) || l.contains(&format!("{cg}/")))
        })
        .collect()
}

/// `delete --force id` succeeds and leaves no state dir, no cgroup directory in any hierarchy
/// (cgroup2 at /sys/fs/cgroup/unified included) and no process of the container.
fn assert_delete_force_leaves_nothing(w: &World, id: &str, after: &str) {
    let out = w.berth(&["delete", "--force", id]);
    assert!(
        out.status.success(),
        "{after}: delete --force: {}",
        text(&out.stderr)
    );
    assert!(!w.root.join(id).exists(), "{after}: the state dir is left");
    assert!(
        cgroups_left(id).is_empty(),
        "{after}: {:?}",
        cgroups_left(id)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !procs_of(id).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        procs_of(id).is_empty(),
        "{after}: {:?} run on",
        procs_of(id)
    );
}

#[test]
fn delete_force_cleans_up_after_a_create_killed_at_any_point() {
    let mut w = World::new(&["sleep", "1000"]);
    // How long a whole create takes here, to spread the kills over it.
    let id = w.id();
    let t = Instant::now();
    assert_ok(&w.berth(&["create", "-b", w.bundle_str(), &id]));
    let whole = t.elapsed();
    assert_delete_force_leaves_nothing(&w, &id, "a whole create");
    const TRIES: u32 = 30;
    for i in 0..=TRIES {
        let id = w.id();
        let mut create = w
            .cmd(&["create", "-b", w.bundle_str(), &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(whole * i / TRIES);
        let _ = create.kill();
        let _ = create.wait();
        assert_delete_force_leaves_nothing(
            &w,
            &id,
            &format!("create SIGKILLed after {i}/{TRIES} of its time"),
        );
    }
    // At a known point: a createRuntime hook kills create while the init waits for it.
    w.edit_config(|c| {
        c["hooks"]["createRuntime"] = serde_json::json!([
            {"path": "/bin/sh", "args": ["sh", "-c", "kill -9 $PPID"]}
        ]);
    });
    let id = w.id();
    let out = w.berth(&["create", "-b", w.bundle_str(), &id]);
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out:?}");
    assert_eq!(w.state(&id)["status"], "creating");
    // Its pid may not be the init yet (or 0): kill refuses rather than signal it.
    let err = assert_fails_with_one_line(&w.berth(&["kill", &id, "KILL"]));
    assert!(err.contains("creating"), "{err}");
    assert_delete_force_leaves_nothing(&w, &id, "create killed by its createRuntime hook");
}

#[test]
fn delete_force_of_a_corrupt_state_cleans_up_or_fails_keeping_it() {
    let mut w = World::new(&["sleep", "1000"]);
    // Empty state.json: the saved config names the cgroup, which holds the processes.
    let id = w.id();
    assert_ok(&w.berth(&["run", "-d", "-b", w.bundle_str(), &id]));
    let pid = w.state(&id)["pid"].as_i64().unwrap();
    std::fs::write(w.root.join(&id).join("state.json"), "").unwrap();
    assert_delete_force_leaves_nothing(&w, &id, "an empty state.json");
    wait_gone(pid);

    // Garbage, and no saved config either: nothing to find the processes by, so delete
    // fails and keeps everything.
    let id = w.id();
    assert_ok(&w.berth(&["create", "-b", w.bundle_str(), &id]));
    let pid = w.state(&id)["pid"].as_i64().unwrap();
    let state = w.root.join(&id).join("state.json");
    let saved = std::fs::read(&state).unwrap();
    std::fs::write(&state, "{\"id\": ").unwrap();
    std::fs::remove_file(w.root.join(&id).join("config.json")).unwrap();
    let err = assert_fails_with_one_line(&w.berth(&["delete", "--force", &id]));
    assert!(err.contains("corrupt") && err.contains(&id), "{err}");
    assert!(state.exists(), "the state dir was removed");
    assert!(pid_alive(pid));
    assert!(!cgroups_left(&id).is_empty());
    std::fs::write(&state, saved).unwrap();
    assert_delete_force_leaves_nothing(&w, &id, "the state restored");
}

#[test]
fn delete_force_finishes_what_an_interrupted_delete_left() {
    let mut w = World::new(&["sleep", "1000"]);
    let id = w.id();
    assert_ok(&w.berth(&["run", "-d", "-b", w.bundle_str(), &id]));
    // A delete killed while it removed the cgroup: the processes are dead, some of the v1
    // directories are gone (it removes those first), the state dir is still there.
    assert_ok(&w.berth(&["kill", &id, "KILL"]));
    w.wait_status(&id, "stopped");
    // (Of these, the ones this host mounts; a pure v2 host's only hierarchy is kept.)
    let keep = ["pids", "systemd", "unified"];
    let is_kept = |d: &Path| {
        let hierarchy = d.parent().and_then(Path::parent).and_then(Path::file_name);
        keep.iter()
            .any(|k| hierarchy == Some(std::ffi::OsStr::new(k)))
            || cgroups_left(&id).len() == 1
    };
    let kept = cgroups_left(&id).iter().filter(|d| is_kept(d)).count();
    assert!(kept >= 1, "{:?}", cgroups_left(&id));
    for d in cgroups_left(&id) {
        if !is_kept(&d) {
            let _ = std::fs::remove_dir(&d);
        }
    }
    assert_eq!(cgroups_left(&id).len(), kept, "{:?}", cgroups_left(&id));
    assert_delete_force_leaves_nothing(&w, &id, "an interrupted delete");
}

#[test]
fn image_unpack_refs_inspect_and_rm() {
    // An image made by umoci (Debian's package; .ci/run installs it).
    let w = World::new(&["true"]);
    let layout = w.dir.join("layout");
    let l = layout.to_str().unwrap();
    let umoci = |args: &[&str]| {
        let out = Command::new("umoci")
            .args(args)
            .output()
            .expect("run umoci");
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            text(&out.stderr)
        );
    };
    umoci(&["init", "--layout", l]);
    umoci(&["new", "--image", &format!("{l}:t")]);
    umoci(&[
        "config",
        "--image",
        &format!("{l}:t"),
        "--config.cmd",
        "echo",
        "--config.cmd",
        "hi",
    ]);

    let refs = w.berth(&["image", "refs", l]);
    assert_ok(&refs);
    assert!(
        text(&refs.stdout).lines().any(|r| r.starts_with("t\t")),
        "{}",
        text(&refs.stdout)
    );
    let inspect = w.berth(&["image", "inspect", "--ref", "t", l]);
    assert_ok(&inspect);
    let cfg: Value = serde_json::from_slice(&inspect.stdout).expect("inspect prints JSON");
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["echo", "hi"]));

    let bundle = w.dir.join("from-image");
    let b = bundle.to_str().unwrap();
    assert_ok(&w.berth(&["image", "unpack", "--ref", "t", l, b]));
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(spec["process"]["args"], serde_json::json!(["echo", "hi"]));
    assert!(bundle.join("rootfs").is_dir());
    assert_ok(&w.berth(&["image", "rm", b]));
    assert!(!bundle.exists(), "image rm left the bundle");

    let out = w.berth(&["image", "unpack", "--ref", "nosuch", l, b]);
    assert_fails_with_one_line(&out);
    assert!(!bundle.exists(), "a failed unpack left a bundle");

    // The ref may come with the image, IMAGE:REF, as umoci's --image and skopeo's oci:.
    let image = format!("{l}:t");
    assert_ok(&w.berth(&["image", "unpack", &image, b]));
    assert!(bundle.join("rootfs").is_dir());
    assert_ok(&w.berth(&["image", "rm", b]));
    let inspect = w.berth(&["image", "inspect", &image]);
    assert_ok(&inspect);
    let cfg: Value = serde_json::from_slice(&inspect.stdout).expect("inspect prints JSON");
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["echo", "hi"]));
    assert_fails_with_one_line(&w.berth(&["image", "unpack", &format!("{l}:nosuch"), b]));
    assert!(!bundle.exists(), "a failed unpack left a bundle");
}

#[test]
fn hooks_that_do_not_read_their_stdin_do_not_kill_berth() {
    // The CLI restores SIGPIPE's default (as runc behaves in a pipe). A state larger than a
    // pipe's buffer (annotations of 256 KiB) can't be written before such a hook exits, so
    // the write meets a closed pipe every time: EPIPE, never death by SIGPIPE.
    let mut w = World::new(&["true"]);
    let big = "x".repeat(256 * 1024);
    w.edit_config(|c| {
        c["annotations"] = serde_json::json!({ "org.berth.test.big": big });
        let quick = serde_json::json!([{"path": "/bin/true"}]);
        for kind in ["prestart", "createRuntime", "poststart", "poststop"] {
            c["hooks"][kind] = quick.clone();
        }
    });
    let id = w.id();
    assert_ok(&w.berth(&["run", "-b", w.bundle_str(), &id]));
}
