//! berth under the programs that drive runc: podman 4.3 (through conmon) and containerd 1.6
//! (through its runc shim, containerd-shim-runc-v2). Every scenario runs once with runc and
//! once with berth, and what the client reports (output, exit codes, states, what the
//! container sees) must be equal.
//!
//! Needs root and Debian's podman, conmon, containerd, runc, umoci, busybox-static, and
//! `script` (bsdutils) for the terminal cases. When a client is missing a test prints
//! `SKIP: ...` and passes, unless the environment variable `CI` is set: then it fails.
//!
//! The image is busybox-static's `/bin/busybox` with `busybox --install -s` symlinks, made into
//! an OCI layout and archive with umoci, shared by the tests running at the same time.
//! Everything a test starts lives in its own temporary directory (podman's storage, runroot,
//! tmpdir and network config; containerd's root, state, sockets, fifos and the runtimes'
//! `--root`) and its own cgroup parent (podman's `--cgroup-parent`, containerd's namespace).
//! A guard tears it all down even when the test fails: containers, conmon, shims, containerd,
//! mounts, cgroups, directories.
//!
//! The harness (the comparison, commands, ptys, known differences, host cleanup, the image) is
//! `common/clients.rs`, shared with `docker.rs`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::clients::*;
use common::unique;

const CTR_IMAGE: &str = "berth.test/busybox:latest";
/// `podman load` names an OCI archive's image after its ref name.
const PODMAN_IMAGE: &str = "localhost/busybox:latest";
/// podman's default rlimits are above this host's hard limits (setrlimit EPERM with every
/// runtime), and no network stack is set up: see FIELD-NOTES.
const PODMAN_RUN_FLAGS: &[&str] = &[
    "--network",
    "none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1000:1000",
];

// ---------------------------------------------------------------------------------------
// podman.

/// A private podman: storage, runroot, tmpdir and configuration in a temporary directory,
/// containers under their own cgroup parent, the busybox image loaded.
struct Podman {
    cgroup_parent: String,
    _image: Arc<BusyboxImage>,
    _host: HostDirs,
    dir: TempDir,
}

impl Podman {
    fn new(test: &str) -> Option<Podman> {
        if !have(
            test,
            &["podman", "conmon", "runc", "umoci", "script", "chroot"],
        ) {
            return None;
        }
        let image = busybox_image();
        let host = HostDirs::acquire();
        let dir = TempDir::new("podman");
        let p = |s: &str| dir.join(s).display().to_string();
        // The runtimes' names in runtime_supports_json make podman pass them `--log-format
        // json --log FILE`, as it does for runc.
        let conf = format!(
            "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
             tmp_dir = \"{}\"\nruntime_supports_json = [\"runc\", \"berth\"]\n\
             [network]\nnetwork_config_dir = \"{}\"\n",
            p("tmp"),
            p("net")
        );
        // overlay as podman uses by default, unless the directory is itself on an overlay.
        let on_overlay = nix::sys::statfs::statfs(dir.path())
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC);
        let storage = format!(
            "[storage]\ndriver = \"{}\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
            if on_overlay { "vfs" } else { "overlay" },
            p("run"),
            p("storage")
        );
        std::fs::write(dir.join("containers.conf"), conf).unwrap();
        std::fs::write(dir.join("storage.conf"), storage).unwrap();
        std::fs::write(dir.join("registries.conf"), "").unwrap();
        let podman = Podman {
            cgroup_parent: format!("/{}", unique("berth-clients-podman")),
            _image: image,
            _host: host,
            dir,
        };
        let archive = podman._image.archive();
        let out = podman.run(podman.cmd(None).args(["load", "-q", "-i"]).arg(&archive));
        assert!(
            out.code == Some(0) && out.stdout.contains(PODMAN_IMAGE),
            "podman load: {out:#?}"
        );
        Some(podman)
    }

    /// `podman [--runtime R] ...` with the private configuration.
    fn cmd(&self, runtime: Option<&Runtime>) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.join("registries.conf"),
            );
        if let Some(rt) = runtime {
            c.arg("--runtime").arg(&rt.path);
        }
        c
    }

    fn run(&self, cmd: &mut Command) -> Out {
        run(cmd, self.dir.path(), 120)
    }

    /// `podman --runtime R args...`.
    fn podman(&self, rt: &Runtime, args: &[&str]) -> Out {
        self.run(self.cmd(Some(rt)).args(args))
    }

    /// `podman --runtime R run <flags> <extra> IMAGE cmd...` as a command.
    fn run_cmd(&self, rt: &Runtime, extra: &[&str], cmd: &[&str]) -> Command {
        let mut c = self.cmd(Some(rt));
        c.arg("run")
            .args(PODMAN_RUN_FLAGS)
            .args(["--cgroup-parent", &self.cgroup_parent])
            .args(extra)
            .arg(PODMAN_IMAGE)
            .args(cmd);
        c
    }

    /// `podman run -d ...`: the new container's id.
    fn run_detached(&self, rt: &Runtime, cmd: &[&str]) -> String {
        let out = self.run(&mut self.run_cmd(rt, &["-d"], cmd)).ok();
        let id = out.stdout.trim().to_string();
        assert_eq!(id.len(), 64, "{out:#?}");
        id
    }

    /// `podman inspect -f FORMAT ID`, trimmed.
    fn inspect(&self, rt: &Runtime, id: &str, format: &str) -> String {
        let out = self.podman(rt, &["inspect", "-f", format, id]).ok();
        out.stdout.trim().to_string()
    }

    /// Waits until the container's log contains `s`.
    fn wait_log(&self, rt: &Runtime, id: &str, s: &str) {
        wait_until(&format!("{s:?} in the log of {id}"), 20, || {
            self.podman(rt, &["logs", id]).stdout.contains(s)
        });
    }

    /// The container's cgroup, relative to a hierarchy's root.
    fn cgroup_of(&self, id: &str) -> String {
        format!("{}/libpod-{id}", self.cgroup_parent)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers, then anything left in their cgroups (conmon lives under the parent
        // too), then the runtimes' state of the containers podman could not remove.
        let ids = try_run(
            self.cmd(None).args(["ps", "-aq", "--no-trunc"]),
            self.dir.path(),
            60,
        )
        .map(|o| o.stdout)
        .unwrap_or_default();
        let _ = try_run(
            self.cmd(None).args(["rm", "-af", "-t", "0"]),
            self.dir.path(),
            60,
        );
        remove_cgroup_tree(&self.cgroup_parent);
        for rt in runtimes() {
            for id in ids.split_whitespace() {
                let _ = Command::new(&rt.path)
                    .args(["delete", "--force", id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

#[test]
fn podman_run_output_equals_runc() {
    let Some(pm) = Podman::new("podman_run_output_equals_runc") else {
        return;
    };
    let script = "echo hello; id; hostname; pwd; env | sort; cat /proc/self/oom_score_adj; \
                  ulimit -n; ulimit -u; umask; ls /dev; cat /proc/self/cgroup; exit 3";
    let seen = same_as_runc("podman run --rm", |rt| {
        let out =
            pm.run(&mut pm.run_cmd(rt, &["--rm", "--hostname", "box"], &["sh", "-c", script]));
        Seen {
            code: out.code,
            stdout: mask_ids(&out.stdout),
        }
    });
    assert_eq!(seen.code, Some(3));
    assert!(
        seen.stdout.starts_with("hello\nuid=0(root) gid=0(root)"),
        "{seen:?}"
    );
    assert!(seen.stdout.contains("\nbox\n"), "{seen:?}");
    assert!(
        seen.stdout
            .contains(&format!("memory:{}/libpod-<id>\n", pm.cgroup_parent)),
        "{seen:?}"
    );
}

/// What a container prints from its stdin, on stdout and stderr, and its open fds. `head`,
/// not `cat`: ctr never closes the container's stdin.
const STDIO_SCRIPT: &str = "head -n 2; echo to stderr >&2; ls /proc/self/fd";
const STDIN: &str = "line 1\nline 2\n";

#[test]
fn podman_stdin_stdout_stderr_equal_runc() {
    let Some(pm) = Podman::new("podman_stdin_stdout_stderr_equal_runc") else {
        return;
    };
    let seen = same_as_runc("podman run -i (conmon's pipes)", |rt| {
        let cmd = pm.run_cmd(rt, &["--rm", "-i"], &["sh", "-c", STDIO_SCRIPT]);
        let out = pm.run(&mut with_stdin(&cmd, STDIN));
        (out.code, out.stdout, out.stderr.contains("to stderr\n"))
    });
    assert_eq!(seen, (Some(0), format!("{STDIN}0\n1\n2\n3\n"), true));
}

#[test]
fn podman_container_security_equals_runc() {
    let Some(pm) = Podman::new("podman_container_security_equals_runc") else {
        return;
    };
    let script = CONFINEMENT_PROBE;
    let seen = same_as_runc("podman: capabilities, seccomp, devices, mounts", |rt| {
        let out = pm
            .run(&mut pm.run_cmd(rt, &["--rm"], &["sh", "-c", script]))
            .ok();
        confinement(&out.stdout)
    });
    assert!(seen.0.contains("CapBnd:"), "{seen:?}");
    assert!(
        seen.0.contains("Seccomp:\t2"),
        "runc applies podman's filter: {seen:?}"
    );
    assert!(
        seen.0.contains("/dev/null character special file 666 1:3"),
        "{seen:?}"
    );
    assert!(seen.1.contains("/proc proc rw"), "{seen:?}");
}

#[test]
fn podman_resource_limits_equal_runc() {
    let Some(pm) = Podman::new("podman_resource_limits_equal_runc") else {
        return;
    };
    // What the container reads in its own cgroup files.
    let (script, flags) = resource_limits_probe();
    let seen = same_as_runc(
        "podman run --memory --pids-limit --cpus --cpu-shares",
        |rt| {
            let out = pm
                .run(&mut pm.run_cmd(rt, &flags, &["sh", "-c", &script]))
                .ok();
            out.stdout
        },
    );
    if !common::pure_v2() {
        for want in [
            "memory/memory.limit_in_bytes 67108864",
            "pids/pids.max 50",
            "cpu/cpu.cfs_quota_us 50000",
            "cpu/cpu.cfs_period_us 100000",
            "cpu/cpu.shares 512",
        ] {
            assert!(seen.contains(want), "{want}: {seen}");
        }
    }
}

#[test]
fn podman_tty_equals_runc() {
    let Some(pm) = Podman::new("podman_tty_equals_runc") else {
        return;
    };
    let seen = same_as_runc("podman run -t (conmon's console socket)", |rt| {
        let cmd = pm.run_cmd(
            rt,
            &["--rm", "-t"],
            &["sh", "-c", "tty; stty size; echo $TERM; exit 3"],
        );
        Seen::from(in_pty(&cmd, pm.dir.path(), 120))
    });
    assert_eq!(seen.code, Some(3));
    assert_eq!(seen.stdout, "/dev/pts/0\n17 91\nxterm\n");
}

#[test]
fn podman_pause_top_ps_equal_runc() {
    let Some(pm) = Podman::new("podman_pause_top_ps_equal_runc") else {
        return;
    };
    let seen = same_as_runc("podman run -d, ps, top, pause, unpause, rm -f", |rt| {
        let id = pm.run_detached(rt, &["sleep", "1000"]);
        let cg = pm.cgroup_of(&id);
        let ps = pm
            .podman(
                rt,
                &[
                    "ps",
                    "-a",
                    "--no-trunc",
                    "--filter",
                    &format!("id={id}"),
                    "--format",
                    "{{.Command}} {{.Status}}",
                ],
            )
            .ok()
            .stdout;
        let ps: Vec<String> = ps.split_whitespace().take(3).map(String::from).collect();
        // Until the init has called execve, top shows the runtime's own process.
        let top_cmd = ["top", &id, "user", "pid", "ppid", "tty", "args"];
        wait_until("sleep in podman top", 20, || {
            pm.podman(rt, &top_cmd).stdout.contains("sleep 1000")
        });
        let top = pm.podman(rt, &top_cmd).ok().stdout;
        let top: Vec<Vec<String>> = top
            .lines()
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect();
        pm.podman(rt, &["pause", &id]).ok();
        let paused = (pm.inspect(rt, &id, "{{.State.Status}}"), freezer_state(&cg));
        pm.podman(rt, &["unpause", &id]).ok();
        let resumed = (pm.inspect(rt, &id, "{{.State.Status}}"), freezer_state(&cg));
        let rm = pm.podman(rt, &["rm", "-f", "-t", "0", &id]).ok();
        let gone = pm
            .podman(rt, &["ps", "-aq", "--no-trunc"])
            .ok()
            .stdout
            .contains(&id);
        let state = pm.run(Command::new(&rt.path).args(["state", &id]));
        (
            ps,
            top,
            paused,
            resumed,
            mask_ids(&rm.stdout),
            gone,
            state.code,
            cgroup_exists(&cg),
        )
    });
    assert_eq!(seen.0, ["sleep", "1000", "Up"]);
    assert_eq!(seen.1[1], ["root", "1", "0", "?", "sleep", "1000"]);
    assert_eq!(seen.2, ("paused".to_string(), "FROZEN".to_string()));
    assert_eq!(seen.3, ("running".to_string(), "THAWED".to_string()));
    assert!(!seen.5, "podman rm -f left the container");
    assert_eq!(seen.6, Some(1), "the runtime still knows the container");
    assert!(!seen.7, "the container's cgroup is left");
}

#[test]
fn podman_stop_kill_wait_equal_runc() {
    let Some(pm) = Podman::new("podman_stop_kill_wait_equal_runc") else {
        return;
    };
    let trap = "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.1; done";
    let seen = same_as_runc("podman stop, kill, wait", |rt| {
        // sleep as pid 1 ignores SIGTERM: stop waits -t seconds, then SIGKILL.
        let sleeper = pm.run_detached(rt, &["sleep", "1000"]);
        let stop = pm.podman(rt, &["stop", "-t", "1", &sleeper]).ok();
        let stop_sleeper = (
            stop.took >= Duration::from_secs(1) && stop.took < Duration::from_secs(10),
            pm.inspect(rt, &sleeper, "{{.State.Status}} {{.State.ExitCode}}"),
        );
        // A shell that handles SIGTERM stops at once with its own status.
        let trapper = pm.run_detached(rt, &["sh", "-c", trap]);
        pm.wait_log(rt, &trapper, "ready");
        let stop = pm.podman(rt, &["stop", "-t", "10", &trapper]).ok();
        let stop_trapper = (
            stop.took < Duration::from_secs(5),
            pm.inspect(rt, &trapper, "{{.State.Status}} {{.State.ExitCode}}"),
            pm.podman(rt, &["logs", &trapper]).stdout,
        );
        // kill -s TERM + wait; kill (SIGKILL) + wait.
        pm.podman(rt, &["start", &trapper]).ok();
        wait_until("the second ready", 20, || {
            pm.podman(rt, &["logs", &trapper])
                .stdout
                .matches("ready")
                .count()
                == 2
        });
        pm.podman(rt, &["kill", "-s", "TERM", &trapper]).ok();
        let wait_term = pm.podman(rt, &["wait", &trapper]).ok().stdout;
        pm.podman(rt, &["start", &sleeper]).ok();
        pm.podman(rt, &["kill", &sleeper]).ok();
        let wait_kill = pm.podman(rt, &["wait", &sleeper]).ok().stdout;
        for id in [&sleeper, &trapper] {
            pm.podman(rt, &["rm", id]).ok();
        }
        (stop_sleeper, stop_trapper, wait_term, wait_kill)
    });
    assert_eq!(seen.0, (true, "exited 137".to_string()));
    assert_eq!(
        seen.1,
        (
            true,
            "exited 5".to_string(),
            "ready\ngot TERM\n".to_string()
        )
    );
    assert_eq!(seen.2, "5\n");
    assert_eq!(seen.3, "137\n");
}

#[test]
fn podman_exec_equals_runc() {
    let Some(pm) = Podman::new("podman_exec_equals_runc") else {
        return;
    };
    let seen = same_as_runc("podman exec, exec -t", |rt| {
        let id = pm.run_detached(rt, &["sleep", "1000"]);
        let exec = pm.podman(
            rt,
            &[
                "exec",
                "-e",
                "FOO=bar",
                "-w",
                "/tmp",
                &id,
                "sh",
                "-c",
                "echo $FOO; pwd; id -u; exit 7",
            ],
        );
        let mut cmd = pm.cmd(Some(rt));
        cmd.args(["exec", "-t", &id, "sh", "-c", "tty; stty size; exit 4"]);
        let tty = in_pty(&cmd, pm.dir.path(), 120);
        let top = pm.podman(rt, &["top", &id, "args"]).ok().stdout;
        pm.podman(rt, &["rm", "-f", "-t", "0", &id]).ok();
        (Seen::from(exec), Seen::from(tty), top)
    });
    assert_execs(&seen.0, 7, "bar\n/tmp\n0\n", &seen.1);
}

#[test]
fn podman_missing_command_fails_like_runc() {
    let Some(pm) = Podman::new("podman_missing_command_fails_like_runc") else {
        return;
    };
    let seen = same_as_runc("podman run of a missing command", |rt| {
        let out = pm.run(&mut pm.run_cmd(rt, &["--rm"], &["/nonexistent/cmd"]));
        (
            out.code,
            out.stderr.contains("\"/nonexistent/cmd\""),
            out.stderr.contains("level="),
        )
    });
    // 127: podman recognised "command not found" in the runtime's error.
    assert_eq!(seen, (Some(127), true, false));
}

// ---------------------------------------------------------------------------------------
// containerd.

/// A private containerd: root, state, sockets and the opt directory in a temporary
/// directory, the CRI plugin off; the test's own namespace (and so cgroup parent); the
/// busybox image imported.
struct Containerd {
    ns: String,
    sock: PathBuf,
    daemon: Option<Child>,
    _image: Arc<BusyboxImage>,
    _host: HostDirs,
    dir: TempDir,
}

impl Containerd {
    fn new(test: &str) -> Option<Containerd> {
        let tools = [
            "containerd",
            "ctr",
            "containerd-shim-runc-v2",
            "runc",
            "umoci",
            "script",
            "chroot",
        ];
        if !have(test, &tools) {
            return None;
        }
        let image = busybox_image();
        let host = HostDirs::acquire();
        let dir = TempDir::new("containerd");
        let p = |s: &str| dir.join(s).display().to_string();
        let sock = dir.join("c.sock");
        let config = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{}\"\n",
            p("root"),
            p("state"),
            sock.display(),
            p("t.sock"),
            p("opt")
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let daemon = spawn_containerd(dir.path(), None);
        let mut cd = Containerd {
            ns: unique("berth-clients"),
            sock,
            daemon: Some(daemon),
            _image: image,
            _host: host,
            dir,
        };
        wait_until("containerd to answer", 30, || {
            if let Some(Ok(Some(st))) = cd.daemon.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "containerd exited ({st}): {}",
                    std::fs::read_to_string(cd.dir.join("containerd.log")).unwrap_or_default()
                );
            }
            cd.run(cd.ctr().arg("version")).code == Some(0)
        });
        let archive = cd._image.archive();
        let out = cd.run(
            cd.ctr()
                .args(["images", "import", "--index-name", CTR_IMAGE])
                .arg(&archive),
        );
        assert_eq!(out.code, Some(0), "ctr images import: {out:#?}");
        Some(cd)
    }

    /// `ctr -a SOCK -n NS`.
    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&self.sock).arg("-n").arg(&self.ns);
        c
    }

    fn run(&self, cmd: &mut Command) -> Out {
        run(cmd, self.dir.path(), 120)
    }

    fn ctr_out(&self, args: &[&str]) -> Out {
        self.run(self.ctr().args(args))
    }

    /// The runtime's `--root` directory (the shim adds the namespace).
    fn runtime_root(&self, rt: &Runtime) -> PathBuf {
        self.dir.join("runtime-root").join(rt.name)
    }

    /// `ctr run --runc-binary R --runc-root ROOT --fifo-dir DIR <extra> IMAGE ID cmd...`.
    fn run_cmd(&self, rt: &Runtime, extra: &[&str], id: &str, cmd: &[&str]) -> Command {
        let mut c = self.ctr();
        c.arg("run")
            .arg("--runc-binary")
            .arg(&rt.path)
            .arg("--runc-root")
            .arg(self.runtime_root(rt))
            .arg("--fifo-dir")
            .arg(self.dir.join("fifo"))
            .args(extra)
            .arg(CTR_IMAGE)
            .arg(id)
            .args(cmd);
        c
    }

    /// `ctr run` through a shim: the Go runc shim with runc (containerd's default), or
    /// berth's own `containerd-shim-berth-v2` (no runc binary).
    fn shim_run_cmd(&self, shim: Shim, extra: &[&str], id: &str, cmd: &[&str]) -> Command {
        let mut c = self.ctr();
        c.arg("run").arg("--fifo-dir").arg(self.dir.join("fifo"));
        if shim == Shim::Berth {
            c.arg("--runtime").arg(BERTH_SHIM);
        }
        c.args(extra).arg(CTR_IMAGE).arg(id).args(cmd);
        c
    }

    /// Stops containerd with `sig` (the shims stay) and starts it again on the same state.
    fn restart_after(&mut self, sig: nix::sys::signal::Signal, meanwhile: impl FnOnce()) {
        if let Some(mut d) = self.daemon.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.id() as i32), sig);
            let _ = d.wait();
        }
        meanwhile();
        let daemon = spawn_containerd(self.dir.path(), None);
        self.daemon = Some(daemon);
        wait_until("containerd to answer again", 30, || {
            self.run(self.ctr().arg("version")).code == Some(0)
        });
    }

    /// The status column of `ctr task ls` for `id`.
    fn task_status(&self, id: &str) -> String {
        let out = self.ctr_out(&["task", "ls"]).ok();
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    }

    /// `ctr task kill -s KILL ID`, then waits until the task is stopped.
    fn kill_task(&self, id: &str) {
        self.ctr_out(&["task", "kill", "-s", "KILL", id]).ok();
        wait_until(&format!("{id} to stop"), 20, || {
            self.task_status(id) == "STOPPED"
        });
    }

    fn cgroup_of(&self, id: &str) -> String {
        format!("{}/{id}", self.ns)
    }

    /// Whether the runtime still has state for `id`.
    fn runtime_knows(&self, rt: &Runtime, id: &str) -> bool {
        self.runtime_root(rt).join(&self.ns).join(id).exists()
    }

    /// The pids of the shims serving this containerd: their command line holds our socket.
    fn shim_pids(&self) -> Vec<i32> {
        pids_with_arg(self.sock.as_os_str())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks and containers through containerd (the shims exit and remove their sockets),
        // then whatever is left: processes in the namespace's cgroups, shims, the daemon.
        let list = |what: &str| -> Vec<String> {
            try_run(self.ctr().args([what, "ls", "-q"]), self.dir.path(), 30)
                .map(|o| o.stdout.split_whitespace().map(String::from).collect())
                .unwrap_or_default()
        };
        if self.daemon.is_some() {
            for id in list("task") {
                let _ = try_run(
                    self.ctr().args(["task", "delete", "-f", &id]),
                    self.dir.path(),
                    30,
                );
            }
            for id in list("container") {
                let _ = try_run(
                    self.ctr().args(["container", "delete", &id]),
                    self.dir.path(),
                    30,
                );
            }
        }
        remove_cgroup_tree(&self.ns);
        for pid in self.shim_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        // berth's shim keeps its runtime state under /run/containerd/berth/<namespace>.
        let _ = std::fs::remove_dir_all(Path::new("/run/containerd/berth").join(&self.ns));
    }
}

#[test]
fn containerd_run_output_equals_runc() {
    let Some(cd) = Containerd::new("containerd_run_output_equals_runc") else {
        return;
    };
    let script = "echo hello; id; pwd; env | sort; cat /proc/self/oom_score_adj; ulimit -n; \
                  umask; ls /dev; cat /proc/self/cgroup; exit 3";
    let seen = same_as_runc("ctr run --rm", |rt| {
        let id = format!("run-{}", rt.name);
        let out = cd.run(&mut cd.run_cmd(rt, &["--rm"], &id, &["/bin/sh", "-c", script]));
        let gone = !cd.ctr_out(&["container", "ls", "-q"]).stdout.contains(&id);
        let seen = Seen {
            code: out.code,
            stdout: drop_known_env_differences(&out.stdout.replace(&id, "<id>")),
        };
        let clean = gone && !cd.runtime_knows(rt, &id) && !cgroup_exists(&cd.cgroup_of(&id));
        (seen, clean)
    });
    assert_eq!(seen.0.code, Some(3));
    assert!(seen.0.stdout.starts_with("hello\nuid=0(root)"), "{seen:?}");
    assert!(
        seen.0.stdout.contains(&format!("memory:/{}/<id>\n", cd.ns)),
        "{seen:?}"
    );
    assert!(
        seen.1,
        "ctr run --rm left the container, its state or its cgroup"
    );
}

#[test]
fn containerd_stdin_stdout_stderr_equal_runc() {
    let Some(cd) = Containerd::new("containerd_stdin_stdout_stderr_equal_runc") else {
        return;
    };
    let seen = same_as_runc("ctr run with stdin (the shim's fifos)", |rt| {
        let id = format!("stdio-{}", rt.name);
        let cmd = cd.run_cmd(rt, &["--rm"], &id, &["/bin/sh", "-c", STDIO_SCRIPT]);
        let out = cd.run(&mut with_stdin(&cmd, STDIN));
        (out.code, out.stdout, out.stderr)
    });
    assert_eq!(
        seen,
        (
            Some(0),
            format!("{STDIN}0\n1\n2\n3\n"),
            "to stderr\n".to_string()
        )
    );
}

#[test]
fn containerd_resources_and_options_equal_runc() {
    let Some(cd) = Containerd::new("containerd_resources_and_options_equal_runc") else {
        return;
    };
    let vol = cd.dir.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("f"), "from the host\n").unwrap();
    let mount = format!("type=bind,src={},dst=/vol,options=rbind:ro", vol.display());
    // ctr mounts no cgroupfs in the container: the limits are read on the host, while the
    // container waits.
    let files: &[&str] = if common::pure_v2() {
        &["memory.max", "cpu.max", "cpu.weight"]
    } else {
        &[
            "memory/memory.limit_in_bytes",
            "cpu/cpu.cfs_quota_us",
            "cpu/cpu.cfs_period_us",
            "cpu/cpu.shares",
        ]
    };
    let script = "echo $FOO; pwd; cat /vol/f; touch /x 2>&1; touch /vol/x 2>&1; echo ready; \
                  exec sleep 1000";
    let flags = [
        "--rm",
        "--memory-limit",
        "67108864",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "--read-only",
        "--mount",
        &mount,
    ];
    let seen = same_as_runc(
        "ctr run with resources, env, cwd, read-only, a bind mount",
        |rt| {
            let id = format!("res-{}", rt.name);
            let fg = spawn(
                &mut cd.run_cmd(rt, &flags, &id, &["/bin/sh", "-c", script]),
                cd.dir.path(),
            );
            fg.wait_for_output("ready", 30);
            let cg = cd.cgroup_of(&id);
            let limits: Vec<String> = files
                .iter()
                .map(|f| {
                    let (dir, file) = f.rsplit_once('/').unwrap_or(("", f));
                    let p = Path::new("/sys/fs/cgroup").join(dir).join(&cg).join(file);
                    let v = std::fs::read_to_string(&p).unwrap_or_else(|e| format!("{p:?}: {e}"));
                    format!("{f} {}", v.trim())
                })
                .collect();
            cd.ctr_out(&["task", "kill", "-s", "KILL", &id]).ok();
            let out = fg.wait(60);
            (limits, out.code, out.stdout)
        },
    );
    assert_eq!(seen.1, Some(137));
    assert_eq!(
        seen.2,
        "bar\n/tmp\nfrom the host\ntouch: /x: Read-only file system\n\
         touch: /vol/x: Read-only file system\nready\n"
    );
    if !common::pure_v2() {
        assert_eq!(
            seen.0,
            [
                "memory/memory.limit_in_bytes 67108864",
                "cpu/cpu.cfs_quota_us 50000",
                "cpu/cpu.cfs_period_us 100000",
                "cpu/cpu.shares 512",
            ]
        );
    }
}

#[test]
fn containerd_tty_equals_runc() {
    let Some(cd) = Containerd::new("containerd_tty_equals_runc") else {
        return;
    };
    let seen = same_as_runc("ctr run -t (the shim's console socket)", |rt| {
        let id = format!("tty-{}", rt.name);
        // ctr resizes the container's pty (the shim's ResizePty on the master the runtime
        // sent over the console socket) only after the start: wait for it, up to 5 s.
        let script = "i=0; while [ \"$(stty size 2>/dev/null)\" != '17 91' ] && [ $i -lt 50 ]; \
                      do sleep 0.1; i=$((i+1)); done; tty; stty size; exit 3";
        let cmd = cd.run_cmd(rt, &["--rm", "-t"], &id, &["/bin/sh", "-c", script]);
        Seen::from(in_pty(&cmd, cd.dir.path(), 120))
    });
    assert_eq!(seen.code, Some(3));
    assert_eq!(seen.stdout, "/dev/pts/0\n17 91\n");
}

#[test]
fn containerd_task_lifecycle_equals_runc() {
    let Some(cd) = Containerd::new("containerd_task_lifecycle_equals_runc") else {
        return;
    };
    let seen = same_as_runc(
        "ctr run -d, task ps, pause, resume, kill, delete, container delete",
        |rt| {
            let id = format!("life-{}", rt.name);
            let cg = cd.cgroup_of(&id);
            cd.run(&mut cd.run_cmd(rt, &["-d"], &id, &["/bin/sleep", "1000"]))
                .ok();
            let running = cd.task_status(&id);
            let ps = cd.ctr_out(&["task", "ps", &id]).ok().stdout;
            let pids = ps.lines().skip(1).count();
            cd.ctr_out(&["task", "pause", &id]).ok();
            let paused = (cd.task_status(&id), freezer_state(&cg));
            cd.ctr_out(&["task", "resume", &id]).ok();
            let resumed = (cd.task_status(&id), freezer_state(&cg));
            cd.kill_task(&id);
            let delete = cd.ctr_out(&["task", "delete", &id]);
            let delete = (delete.code, delete.stderr.contains("exit code 137"));
            let cdelete = cd.ctr_out(&["container", "delete", &id]).code;
            (
                running,
                pids,
                paused,
                resumed,
                delete,
                cdelete,
                cd.runtime_knows(rt, &id),
                cgroup_exists(&cg),
            )
        },
    );
    assert_eq!(seen.0, "RUNNING");
    assert_eq!(seen.1, 1);
    assert_eq!(seen.2, ("PAUSED".to_string(), "FROZEN".to_string()));
    assert_eq!(seen.3, ("RUNNING".to_string(), "THAWED".to_string()));
    assert_eq!(seen.4, (Some(0), true));
    assert_eq!(seen.5, Some(0));
    assert!(!seen.6 && !seen.7, "state or cgroup left: {seen:?}");
}

#[test]
fn containerd_kill_exit_status_equals_runc() {
    let Some(cd) = Containerd::new("containerd_kill_exit_status_equals_runc") else {
        return;
    };
    let trap = "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.1; done";
    let seen = same_as_runc("ctr run (foreground) + task kill", |rt| {
        let id = format!("kill-{}", rt.name);
        let fg = spawn(
            &mut cd.run_cmd(rt, &["--rm"], &id, &["/bin/sh", "-c", trap]),
            cd.dir.path(),
        );
        fg.wait_for_output("ready", 30);
        let kill = cd.ctr_out(&["task", "kill", &id]).code;
        let out = fg.wait(60);
        (kill, out.code, out.stdout)
    });
    assert_eq!(seen, (Some(0), Some(5), "ready\ngot TERM\n".to_string()));
}

#[test]
fn containerd_task_exec_equals_runc() {
    let Some(cd) = Containerd::new("containerd_task_exec_equals_runc") else {
        return;
    };
    let seen = same_as_runc("ctr task exec, exec -t", |rt| {
        let id = format!("exec-{}", rt.name);
        cd.run(&mut cd.run_cmd(rt, &["-d"], &id, &["/bin/sleep", "1000"]))
            .ok();
        let fifo = cd.dir.join("fifo").display().to_string();
        // No PATH in an exec's environment: absolute paths.
        let exec = cd.ctr_out(&[
            "task",
            "exec",
            "--fifo-dir",
            &fifo,
            "--cwd",
            "/tmp",
            "--exec-id",
            "e1",
            &id,
            "/bin/sh",
            "-c",
            "echo in; /bin/pwd; exit 6",
        ]);
        let mut cmd = cd.ctr();
        cmd.args([
            "task",
            "exec",
            "-t",
            "--fifo-dir",
            &fifo,
            "--exec-id",
            "e2",
            &id,
            "/bin/sh",
            "-c",
            "i=0; while [ \"$(/bin/stty size 2>/dev/null)\" != '17 91' ] && [ $i -lt 50 ]; \
             do /bin/sleep 0.1; i=$((i+1)); done; /bin/tty; /bin/stty size; exit 4",
        ]);
        let tty = in_pty(&cmd, cd.dir.path(), 120);
        let ps = cd.ctr_out(&["task", "ps", &id]).ok().stdout.lines().count();
        cd.kill_task(&id);
        cd.ctr_out(&["task", "delete", &id]);
        cd.ctr_out(&["container", "delete", &id]).ok();
        (Seen::from(exec), Seen::from(tty), ps)
    });
    assert_execs(&seen.0, 6, "in\n/tmp\n", &seen.1);
}

#[test]
fn containerd_missing_command_fails_like_runc() {
    let Some(cd) = Containerd::new("containerd_missing_command_fails_like_runc") else {
        return;
    };
    let seen = same_as_runc("ctr run of a missing command", |rt| {
        let id = format!("bad-{}", rt.name);
        let out = cd.run(&mut cd.run_cmd(rt, &["--rm"], &id, &["/nonexistent/cmd"]));
        let containers: BTreeSet<String> = cd
            .ctr_out(&["container", "ls", "-q"])
            .stdout
            .split_whitespace()
            .map(String::from)
            .collect();
        (
            out.code,
            // The shim read the error from the runtime's --log (json) file.
            out.stderr.contains("OCI runtime create failed")
                && out.stderr.contains("\"/nonexistent/cmd\""),
            containers.contains(&id),
            cd.runtime_knows(rt, &id),
            cgroup_exists(&cd.cgroup_of(&id)),
        )
    });
    assert_eq!(seen, (Some(1), true, false, false, false));
}

// ---------------------------------------------------------------------------------------
// containerd with berth's own shim (containerd-shim-berth-v2: berth's runtime in the shim's
// process) against containerd's Go runc shim with runc, on the same image.

const BERTH_SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-berth-v2");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shim {
    GoRunc,
    Berth,
}

/// Runs `scenario` through the Go shim, then berth's; both results must be equal.
fn same_as_go_shim<T: std::fmt::Debug + PartialEq>(
    what: &str,
    mut scenario: impl FnMut(Shim) -> T,
) -> T {
    let want = scenario(Shim::GoRunc);
    let got = scenario(Shim::Berth);
    println!("{what}:\n  go shim + runc: {want:?}\n  berth shim:     {got:?}");
    assert_eq!(
        got, want,
        "{what}: berth's shim (left) differs from the Go shim (right)"
    );
    want
}

fn shim_name(shim: Shim) -> &'static str {
    match shim {
        Shim::GoRunc => "go",
        Shim::Berth => "berth",
    }
}

#[test]
fn berth_shim_run_output_and_stdio_equal_go_shim() {
    let Some(cd) = Containerd::new("berth_shim_run_output_and_stdio_equal_go_shim") else {
        return;
    };
    let script = "echo hello; id; pwd; env | sort; cat /proc/self/oom_score_adj; ulimit -n; \
                  umask; ls /dev; cat /proc/self/cgroup; echo to-stderr >&2; exit 3";
    let seen = same_as_go_shim("ctr run --rm", |shim| {
        let id = format!("run-{}", shim_name(shim));
        let out = cd.run(&mut cd.shim_run_cmd(shim, &["--rm"], &id, &["/bin/sh", "-c", script]));
        let gone = !cd.ctr_out(&["container", "ls", "-q"]).stdout.contains(&id);
        let cmd = cd.shim_run_cmd(
            shim,
            &["--rm"],
            &format!("{id}-in"),
            &["/bin/sh", "-c", STDIO_SCRIPT],
        );
        let stdio = cd.run(&mut with_stdin(&cmd, STDIN));
        (
            out.code,
            drop_known_env_differences(&out.stdout.replace(&id, "<id>")),
            out.stderr,
            (stdio.code, stdio.stdout, stdio.stderr),
            gone && !cgroup_exists(&cd.cgroup_of(&id)),
        )
    });
    assert_eq!(seen.0, Some(3));
    assert!(seen.1.starts_with("hello\nuid=0(root)"), "{seen:?}");
    assert_eq!(seen.2, "to-stderr\n");
    assert!(seen.4, "ctr run --rm left the container or its cgroup");
}

#[test]
fn berth_shim_tty_equals_go_shim() {
    let Some(cd) = Containerd::new("berth_shim_tty_equals_go_shim") else {
        return;
    };
    let script = "i=0; while [ \"$(stty size 2>/dev/null)\" != '17 91' ] && [ $i -lt 50 ]; \
                  do sleep 0.1; i=$((i+1)); done; tty; stty size; exit 3";
    let seen = same_as_go_shim("ctr run -t, task exec -t", |shim| {
        let id = format!("tty-{}", shim_name(shim));
        let cmd = cd.shim_run_cmd(shim, &["--rm", "-t"], &id, &["/bin/sh", "-c", script]);
        let run = Seen::from(in_pty(&cmd, cd.dir.path(), 120));
        let bg = format!("ttyexec-{}", shim_name(shim));
        cd.run(&mut cd.shim_run_cmd(shim, &["-d"], &bg, &["/bin/sleep", "1000"]))
            .ok();
        let mut exec = cd.ctr();
        exec.args(["task", "exec", "-t", "--exec-id", "t1", "--fifo-dir"])
            .arg(cd.dir.join("fifo"))
            .args([bg.as_str(), "/bin/sh", "-c", script]);
        let exec = Seen::from(in_pty(&exec, cd.dir.path(), 120));
        cd.kill_task(&bg);
        cd.ctr_out(&["task", "delete", &bg]).ok();
        cd.ctr_out(&["container", "delete", &bg]).ok();
        (run, exec)
    });
    assert_eq!(seen.0.code, Some(3));
    assert_eq!(seen.0.stdout, "/dev/pts/0\n17 91\n");
    assert_eq!(seen.1.code, Some(3));
    assert!(seen.1.stdout.ends_with("17 91\n"), "{seen:?}");
}

/// containerd stopped (SIGTERM, then SIGKILL) with tasks running; one container's init
/// killed while it is down; after the restart the running task is still running and
/// reachable, the dead one reports its real exit status.
#[test]
fn berth_shim_live_restore_equals_go_shim() {
    let Some(mut cd) = Containerd::new("berth_shim_live_restore_equals_go_shim") else {
        return;
    };
    let trap = "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done";
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        let seen = same_as_go_shim(&format!("live restore after {sig}"), |shim| {
            let cd = &mut cd;
            let keep = format!("keep-{}-{}", shim_name(shim), sig as i32);
            let dies = format!("dies-{}-{}", shim_name(shim), sig as i32);
            cd.run(&mut cd.shim_run_cmd(shim, &["-d"], &keep, &["/bin/sleep", "1000"]))
                .ok();
            cd.run(&mut cd.shim_run_cmd(shim, &["-d"], &dies, &["/bin/sh", "-c", trap]))
                .ok();
            let ps = cd.ctr_out(&["task", "ls"]).ok().stdout;
            let pid: i32 = ps
                .lines()
                .find(|l| l.split_whitespace().next() == Some(dies.as_str()))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|p| p.parse().ok())
                .expect("the task's pid");
            std::thread::sleep(Duration::from_millis(300));
            cd.restart_after(sig, || {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
                std::thread::sleep(Duration::from_millis(500));
            });
            wait_until("the dead task to be seen stopped", 30, || {
                cd.task_status(&dies) == "STOPPED"
            });
            let statuses = (cd.task_status(&keep), cd.task_status(&dies));
            let exec = cd.ctr_out(&["task", "exec", "--exec-id", "x", &keep, "echo", "reachable"]);
            let delete = cd.ctr_out(&["task", "delete", &dies]);
            let real = delete.stderr.contains("exit code 42");
            cd.kill_task(&keep);
            for id in [&keep, &dies] {
                let _ = cd.ctr_out(&["task", "delete", id]);
                let _ = cd.ctr_out(&["container", "delete", id]);
            }
            (statuses, (exec.code, exec.stdout), delete.code, real)
        });
        assert_eq!(seen.0, ("RUNNING".to_string(), "STOPPED".to_string()));
        assert_eq!(seen.1, (Some(0), "reachable\n".to_string()));
        assert!(seen.3, "the real exit status 42 was not reported: {seen:?}");
    }
}

/// `ctr task ps`, `pause`, `resume`, `metrics`, `kill` (and a second kill once it has exited),
/// `delete` and `container delete` on a running task.
#[test]
fn berth_shim_task_commands_equal_go_shim() {
    let Some(cd) = Containerd::new("berth_shim_task_commands_equal_go_shim") else {
        return;
    };
    // pid 1 of a pid namespace ignores signals it has no handler for: a trap for TERM (the
    // wait returns on it), and two steady processes for ps.
    let trap = "trap 'exit 7' TERM; sleep 1000 & wait";
    let seen = same_as_go_shim("ctr task ps/pause/resume/metrics/kill/delete", |shim| {
        let id = format!("cmds-{}", shim_name(shim));
        let cg = cd.cgroup_of(&id);
        cd.run(&mut cd.shim_run_cmd(shim, &["-d"], &id, &["/bin/sh", "-c", trap]))
            .ok();
        let running = cd.task_status(&id);
        // sh may not have forked its sleep yet.
        let ps_lines = || cd.ctr_out(&["task", "ps", &id]).ok().stdout;
        wait_until("sh and its sleep in task ps", 10, || {
            ps_lines().lines().count() >= 3
        });
        let ps = ps_lines();
        let ps = (ps.lines().next().map(str::to_string), ps.lines().count());
        cd.ctr_out(&["task", "pause", &id]).ok();
        let paused = (cd.task_status(&id), freezer_state(&cg));
        cd.ctr_out(&["task", "resume", &id]).ok();
        let resumed = (cd.task_status(&id), freezer_state(&cg));
        // The metric names (first column), not their values.
        let metrics = cd.ctr_out(&["task", "metrics", &id]).ok().stdout;
        let metrics: BTreeSet<String> = metrics
            .lines()
            .skip_while(|l| !l.starts_with("METRIC"))
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .collect();
        let kill = cd.ctr_out(&["task", "kill", &id]).code;
        wait_until(&format!("{id} to stop after TERM"), 20, || {
            cd.task_status(&id) == "STOPPED"
        });
        let again = cd.ctr_out(&["task", "kill", &id]);
        let again = (
            again.code,
            again.stderr.contains("process already finished"),
        );
        let delete = cd.ctr_out(&["task", "delete", &id]);
        let delete = (delete.code, delete.stderr.contains("exit code 7"));
        let cdelete = cd.ctr_out(&["container", "delete", &id]).code;
        (
            running,
            ps,
            paused,
            resumed,
            metrics,
            kill,
            again,
            delete,
            cdelete,
            cgroup_exists(&cg),
        )
    });
    assert_eq!(seen.0, "RUNNING");
    assert_eq!(seen.1.1, 3, "ps shows a header, sh and sleep: {seen:?}");
    assert_eq!(seen.2, ("PAUSED".to_string(), "FROZEN".to_string()));
    assert_eq!(seen.3, ("RUNNING".to_string(), "THAWED".to_string()));
    assert!(seen.4.contains("memory.usage_in_bytes"), "{seen:?}");
    assert_eq!(seen.5, Some(0));
    assert_eq!(seen.6.0, Some(1), "a second kill must fail: {seen:?}");
    assert_eq!(seen.7, (Some(0), true));
    assert_eq!(seen.8, Some(0));
    assert!(!seen.9, "cgroup left: {seen:?}");
}

/// The shim killed with SIGKILL, once after its container exited and once while it runs:
/// containerd runs the shim binary's `delete`, which cleans up (runtime state, cgroup,
/// mounts) and reports the status. berth's shim reports the real one it saved in the bundle
/// (9) in the task's delete event; the Go shim always reports 137 (runc's state no longer has
/// it), so only the clean-up is compared; for a container still running, both kill it and
/// report 137.
#[test]
fn berth_shim_sigkill_cleans_up_and_reports_saved_status() {
    let Some(cd) = Containerd::new("berth_shim_sigkill_cleans_up_and_reports_saved_status") else {
        return;
    };
    let events = spawn(cd.ctr().arg("events"), cd.dir.path());
    // The status containerd publishes with the task's delete: for a dead shim, the one
    // the shim binary's `delete` returned.
    let exit_status = |id: &str| -> Option<u32> {
        let needle = format!("\"container_id\":\"{id}\"");
        events
            .stdout_so_far()
            .lines()
            .filter(|l| l.contains("/tasks/delete") && l.contains(&needle))
            .filter_map(|l| l.split("\"exit_status\":").nth(1))
            .filter_map(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .filter_map(|s| s.parse().ok())
            .next_back()
    };
    let mut statuses = Vec::new();
    let cleaned = same_as_go_shim("shim SIGKILLed: clean-up", |shim| {
        let mut seen = Vec::new();
        for (what, script) in [
            ("exited", "sleep 0.2; exit 9"),
            ("running", "exec sleep 1000"),
        ] {
            let id = format!("shimkill-{what}-{}", shim_name(shim));
            cd.run(&mut cd.shim_run_cmd(shim, &["-d"], &id, &["/bin/sh", "-c", script]))
                .ok();
            if what == "exited" {
                wait_until(&format!("{id} to exit"), 20, || {
                    cd.task_status(&id) == "STOPPED"
                });
            }
            let of_id = pids_with_arg(std::ffi::OsStr::new(&id));
            let shim_pid = cd
                .shim_pids()
                .into_iter()
                .find(|p| of_id.contains(p))
                .expect("the task's shim");
            // A shim killed leaves its socket: removed by the test.
            let address = std::fs::read_to_string(
                cd.dir
                    .join("state/io.containerd.runtime.v2.task")
                    .join(&cd.ns)
                    .join(&id)
                    .join("address"),
            )
            .unwrap_or_default();
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(shim_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            if let Some(sock) = address.trim().strip_prefix("unix://") {
                wait_until("the killed shim to be gone", 10, || {
                    !Path::new(&format!("/proc/{shim_pid}")).exists()
                });
                let _ = std::fs::remove_file(sock);
            }
            wait_until(&format!("containerd to drop {id}'s task"), 30, || {
                !cd.ctr_out(&["task", "ls", "-q"]).stdout.contains(&id)
            });
            wait_until(&format!("the delete event of {id}"), 10, || {
                exit_status(&id).is_some()
            });
            statuses.push((shim, what, exit_status(&id)));
            let cdelete = cd.ctr_out(&["container", "delete", &id]).code;
            seen.push((
                what,
                cdelete,
                cgroup_exists(&cd.cgroup_of(&id)),
                mounts_under(cd.dir.path())
                    .iter()
                    .any(|m| m.to_string_lossy().contains(&id)),
            ));
        }
        seen
    });
    println!("exit statuses reported: {statuses:?}");
    assert!(
        cleaned.iter().all(|s| s.1 == Some(0) && !s.2 && !s.3),
        "left behind: {cleaned:?}"
    );
    let of = |shim, what| {
        statuses
            .iter()
            .find(|s| s.0 == shim && s.1 == what)
            .map(|s| s.2)
    };
    assert_eq!(of(Shim::Berth, "exited"), Some(Some(9)), "{statuses:?}");
    assert_eq!(of(Shim::Berth, "running"), Some(Some(137)), "{statuses:?}");
    assert_eq!(of(Shim::GoRunc, "exited"), Some(Some(137)), "{statuses:?}");
    assert_eq!(of(Shim::GoRunc, "running"), Some(Some(137)), "{statuses:?}");
    // Nothing of berth's runtime state is left for the namespace's containers.
    let root = Path::new("/run/containerd/berth").join(&cd.ns);
    let left: Vec<_> = std::fs::read_dir(&root)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "berth runtime state left in {root:?}: {left:?}"
    );
}

/// A container over its memory limit is OOM-killed: both shims publish `/tasks/oom` for it
/// and report 137.
#[test]
fn berth_shim_oom_event_equals_go_shim() {
    let Some(cd) = Containerd::new("berth_shim_oom_event_equals_go_shim") else {
        return;
    };
    let events = spawn(cd.ctr().arg("events"), cd.dir.path());
    // A 200 MB shell string against a 32 MiB limit (no swap accounted here).
    let hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}";
    let seen = same_as_go_shim("ctr run --memory-limit over the limit", |shim| {
        let id = format!("oom-{}", shim_name(shim));
        let limit = (32u64 << 20).to_string();
        let out = cd.run(&mut cd.shim_run_cmd(
            shim,
            &["--rm", "--memory-limit", &limit],
            &id,
            &["/bin/sh", "-c", hog],
        ));
        let needle = format!("\"container_id\":\"{id}\"");
        let oom = || {
            events
                .stdout_so_far()
                .lines()
                .any(|l| l.contains("/tasks/oom") && l.contains(&needle))
        };
        wait_until(&format!("an oom event for {id}"), 10, oom);
        (out.code, out.stdout.contains("survived"), oom())
    });
    assert_eq!(seen, (Some(137), false, true));
}
