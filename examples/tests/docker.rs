//! berth under Docker (Debian's docker.io 20.10): a private dockerd drives the runtime through
//! its own containerd and containerd's runc shim. Every scenario runs once with
//! `--runtime runc` (Docker's built-in runtime, the `runc` in PATH; Docker reserves that name)
//! and once with `--runtime berth` (registered in the daemon's configuration), all with
//! `--network none`, and what Docker reports must be equal.
//!
//! Needs root and Debian's docker.io, containerd, runc, umoci, skopeo, busybox-static and
//! `script` (bsdutils). When one is missing a test prints `SKIP: ...` and passes, unless the
//! environment variable `CI` is set: then it fails.
//!
//! One daemon serves every test of this binary. It never touches the host's Docker: its
//! data-root, exec-root (where it starts its containerd, whose state and sockets live there
//! too, and the runtimes' `--root`), pidfile, socket, trust key and the client's configuration
//! are in a temporary directory; no bridge, no iptables; containers under the daemon's own
//! cgroup parent. It is stopped when the test binary exits, even when tests failed: containers,
//! dockerd, its containerd and shims, cgroups, mounts, directories. The image is the busybox
//! image of the other client tests, made a docker-archive offline with skopeo and loaded.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use common::clients::*;
use common::{BERTH, unique};

/// The image's name in the private daemon.
const IMAGE: &str = "berth.test/busybox:latest";
/// The namespace Docker's containers have in its containerd (and in the runtimes' `--root`).
const MOBY: &str = "moby";

/// The private daemon.
struct Docker {
    /// The daemon's API socket.
    sock: PathBuf,
    /// The cgroup (relative to a hierarchy's root) every container is created under.
    cgroup_parent: String,
    daemon: Option<Child>,
    _host: HostDirs,
    dir: TempDir,
}

/// The daemon of this test binary, started by the first test that asks.
static DOCKER: Mutex<Option<Arc<Docker>>> = Mutex::new(None);

/// The daemon, or None (after `SKIP: ...`) when a tool is missing.
fn docker(test: &str) -> Option<Arc<Docker>> {
    let tools = [
        "dockerd",
        "docker",
        "containerd",
        "containerd-shim-runc-v2",
        "runc",
        "umoci",
        "skopeo",
        "script",
        "chroot",
    ];
    if !have(test, &tools) {
        return None;
    }
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a function without arguments that touches only this file's
        // static; the test harness runs atexit handlers when it exits, pass or fail.
        let rc = unsafe { libc::atexit(stop_docker) };
        assert_eq!(rc, 0, "atexit");
    });
    let mut slot = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Some(Arc::new(Docker::start()));
    }
    slot.clone()
}

/// At exit: the last reference to the daemon is dropped, which stops it and cleans up.
extern "C" fn stop_docker() {
    let docker = DOCKER.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(docker);
}

impl Docker {
    /// Starts a private dockerd, waits until it answers, loads the busybox image. A failure
    /// on the way drops what is built so far (which cleans it up) and panics.
    fn start() -> Docker {
        let image = busybox_image();
        let host = HostDirs::acquire();
        let dir = TempDir::new("docker");
        let p = |s: &str| dir.join(s).display().to_string();
        let sock = dir.join("d.sock");
        // overlay2 as Docker uses by default, unless the directory is itself on an overlay.
        let on_overlay = nix::sys::statfs::statfs(dir.path())
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC);
        let cgroup_parent = format!("/{}", unique("berth-clients-docker"));
        let config = serde_json::json!({
            "data-root": p("data"),
            "exec-root": p("x"),
            "pidfile": p("docker.pid"),
            "hosts": [format!("unix://{}", sock.display())],
            "deprecated-key-path": p("key.json"),
            "bridge": "none",
            "iptables": false,
            "ip-forward": false,
            "ip-masq": false,
            "storage-driver": if on_overlay { "vfs" } else { "overlay2" },
            "cgroup-parent": cgroup_parent,
            "runtimes": { "berth": { "path": BERTH } },
        });
        std::fs::write(dir.join("daemon.json"), config.to_string()).unwrap();
        let log = File::create(dir.join("dockerd.log")).unwrap();
        let daemon = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("dockerd: {e}"));
        let mut d = Docker {
            sock,
            cgroup_parent,
            daemon: Some(daemon),
            _host: host,
            dir,
        };
        wait_until("dockerd to answer", 60, || {
            if let Some(Ok(Some(st))) = d.daemon.as_mut().map(|c| c.try_wait()) {
                panic!("dockerd exited ({st}): {}", d.log());
            }
            d.run(d.cmd().arg("version")).code == Some(0)
        });
        let archive = d.dir.join("busybox-docker.tar");
        let out = d.run(
            Command::new("skopeo")
                .env("TMPDIR", d.dir.path())
                .arg("--insecure-policy")
                .arg("copy")
                .arg(format!("oci:{}:{REF}", image.layout().display()))
                .arg(format!("docker-archive:{}:{IMAGE}", archive.display())),
        );
        assert_eq!(out.code, Some(0), "skopeo copy: {out:#?}");
        let out = d.run(d.cmd().args(["load", "-i"]).arg(&archive));
        assert!(
            out.code == Some(0) && out.stdout.contains(IMAGE),
            "docker load: {out:#?}"
        );
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// `docker` talking to the private daemon, with its own client configuration.
    fn cmd(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.dir.join("client"));
        c
    }

    fn run(&self, cmd: &mut Command) -> Out {
        run(cmd, self.dir.path(), 120)
    }

    /// `docker args...`.
    fn docker(&self, args: &[&str]) -> Out {
        self.run(self.cmd().args(args))
    }

    /// `docker run --runtime R --network none --name NAME <extra> IMAGE cmd...` as a command.
    fn run_cmd(&self, rt: &Runtime, name: &str, extra: &[&str], cmd: &[&str]) -> Command {
        let mut c = self.cmd();
        c.args([
            "run",
            "--runtime",
            rt.name,
            "--network",
            "none",
            "--name",
            name,
        ])
        .args(extra)
        .arg(IMAGE)
        .args(cmd);
        c
    }

    /// `docker run -d ...`: the new container's id.
    fn run_detached(&self, rt: &Runtime, name: &str, cmd: &[&str]) -> String {
        let out = self.run(&mut self.run_cmd(rt, name, &["-d"], cmd)).ok();
        let id = out.stdout.trim().to_string();
        assert_eq!(id.len(), 64, "{out:#?}");
        id
    }

    /// `docker inspect -f FORMAT ID`, trimmed.
    fn inspect(&self, id: &str, format: &str) -> String {
        let out = self.docker(&["inspect", "-f", format, id]).ok();
        out.stdout.trim().to_string()
    }

    /// Whether `docker inspect` no longer knows the container.
    fn inspect_gone(&self, id: &str) -> bool {
        self.docker(&["inspect", id]).code == Some(1)
    }

    /// Waits until the container's log contains `s` `n` times.
    fn wait_log(&self, id: &str, s: &str, n: usize) {
        wait_until(&format!("{n} x {s:?} in the log of {id}"), 30, || {
            self.docker(&["logs", id]).stdout.matches(s).count() >= n
        });
    }

    /// The names of the containers in `docker ps -a`.
    fn names(&self) -> BTreeSet<String> {
        self.docker(&["ps", "-a", "--format", "{{.Names}}"])
            .ok()
            .stdout
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    /// Whether the container is in `docker ps -a`.
    fn listed(&self, id: &str) -> bool {
        self.docker(&["ps", "-aq", "--no-trunc"])
            .ok()
            .stdout
            .contains(id)
    }

    /// The container's cgroup, relative to a hierarchy's root.
    fn cgroup_of(&self, id: &str) -> String {
        format!("{}/{id}", self.cgroup_parent)
    }

    /// Whether a runtime still has state for the container (Docker gives every runtime a
    /// `--root` under exec-root/runtime-*; the shim adds the namespace).
    fn runtime_knows(&self, id: &str) -> bool {
        std::fs::read_dir(self.dir.join("x"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("runtime-"))
                    .any(|e| e.path().join(MOBY).join(id).exists())
            })
            .unwrap_or(false)
    }

    /// What is left of a removed container: listed, runtime state, cgroup.
    fn leftovers(&self, id: &str) -> (bool, bool, bool) {
        (
            self.listed(id),
            self.runtime_knows(id),
            cgroup_exists(&self.cgroup_of(id)),
        )
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        // Containers through the daemon, then the daemon (which stops its containerd), then
        // whatever is left: containerd, shims, processes in the cgroups.
        let scratch = self.dir.path();
        let alive = matches!(self.daemon.as_mut().map(|c| c.try_wait()), Some(Ok(None)));
        if alive {
            let ids = try_run(self.cmd().args(["ps", "-aq"]), scratch, 30)
                .map(|o| o.stdout)
                .unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = try_run(self.cmd().args(["rm", "-f"]).args(&ids), scratch, 60);
            }
        }
        if let Some(mut d) = self.daemon.take() {
            let pid = nix::unistd::Pid::from_raw(d.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(d.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        let containerd = self.dir.join("x/containerd");
        let mut pids = pids_with_arg(containerd.join("containerd.toml").as_os_str());
        pids.extend(pids_with_arg(
            containerd.join("containerd.sock").as_os_str(),
        ));
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        remove_cgroup_tree(&self.cgroup_parent);
    }
}

/// Which lines of a script's output a scenario compares: ids masked.
fn seen(out: Out) -> Seen {
    Seen {
        code: out.code,
        stdout: mask_ids(&out.stdout),
    }
}

/// Waits in the container, up to 5 s, until its terminal has the outer pty's size: Docker
/// resizes the container's pty (through the shim's master) only after the start.
const WAIT_FOR_SIZE: &str = "i=0; while [ \"$(stty size 2>/dev/null)\" != '17 91' ] && \
                             [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done";

#[test]
fn docker_run_output_equals_runc() {
    let Some(dk) = docker("docker_run_output_equals_runc") else {
        return;
    };
    let script = "echo hello; id; hostname; pwd; env | sort; cat /proc/self/oom_score_adj; \
                  ulimit -n; ulimit -u; umask; ls /dev; cat /proc/self/cgroup; exit 3";
    let seen = same_as_runc("docker run --rm", |rt| {
        let name = format!("run-{}", rt.name);
        let mut cmd = dk.run_cmd(
            rt,
            &name,
            &["--rm", "--hostname", "box"],
            &["sh", "-c", script],
        );
        let out = seen(dk.run(&mut cmd));
        (out, dk.names().contains(&name))
    });
    assert_eq!(seen.0.code, Some(3));
    assert!(
        seen.0.stdout.starts_with("hello\nuid=0(root) gid=0(root)"),
        "{seen:?}"
    );
    assert!(seen.0.stdout.contains("\nbox\n"), "{seen:?}");
    assert!(
        seen.0
            .stdout
            .contains(&format!("memory:{}/<id>\n", dk.cgroup_parent)),
        "{seen:?}"
    );
    assert!(!seen.1, "docker run --rm left the container");
}

#[test]
fn docker_container_security_equals_runc() {
    let Some(dk) = docker("docker_container_security_equals_runc") else {
        return;
    };
    let script = CONFINEMENT_PROBE;
    let seen = same_as_runc("docker: capabilities, seccomp, devices, mounts", |rt| {
        let name = format!("sec-{}", rt.name);
        let out = dk
            .run(&mut dk.run_cmd(rt, &name, &["--rm"], &["sh", "-c", script]))
            .ok();
        confinement(&out.stdout)
    });
    assert!(seen.0.contains("CapBnd:\t00000000a80425fb"), "{seen:?}");
    assert!(
        seen.0.contains("Seccomp:\t2"),
        "runc applies Docker's default profile: {seen:?}"
    );
    assert!(
        seen.0.contains("/dev/null character special file 666 1:3"),
        "{seen:?}"
    );
    assert!(seen.1.contains("/proc proc rw"), "{seen:?}");
    assert!(seen.1.contains("/sys sysfs ro"), "{seen:?}");
}

#[test]
fn docker_resource_limits_equal_runc() {
    let Some(dk) = docker("docker_resource_limits_equal_runc") else {
        return;
    };
    // What the container reads in its own cgroup files.
    let (script, flags) = resource_limits_probe();
    let seen = same_as_runc(
        "docker run --memory --pids-limit --cpus --cpu-shares",
        |rt| {
            let name = format!("res-{}", rt.name);
            let out = dk
                .run(&mut dk.run_cmd(rt, &name, &flags, &["sh", "-c", &script]))
                .ok();
            out.stdout
        },
    );
    if !common::pure_v2() {
        assert_eq!(
            seen,
            "memory/memory.limit_in_bytes 67108864\n\
             memory/memory.memsw.limit_in_bytes 134217728\n\
             pids/pids.max 50\n\
             cpu/cpu.cfs_quota_us 50000\n\
             cpu/cpu.cfs_period_us 100000\n\
             cpu/cpu.shares 512\n"
        );
    }
}

#[test]
fn docker_tty_equals_runc() {
    let Some(dk) = docker("docker_tty_equals_runc") else {
        return;
    };
    let seen = same_as_runc("docker run -it (the shim's console socket)", |rt| {
        let name = format!("tty-{}", rt.name);
        let script = format!("{WAIT_FOR_SIZE}; tty; stty size; echo $TERM; exit 3");
        let cmd = dk.run_cmd(rt, &name, &["--rm", "-it"], &["sh", "-c", &script]);
        Seen::from(in_pty(&cmd, dk.dir.path(), 120))
    });
    assert_eq!(seen.code, Some(3));
    assert_eq!(seen.stdout, "/dev/pts/0\n17 91\nxterm\n");
}

#[test]
fn docker_exec_equals_runc() {
    let Some(dk) = docker("docker_exec_equals_runc") else {
        return;
    };
    let seen = same_as_runc("docker exec, exec -i, exec -it, top", |rt| {
        let id = dk.run_detached(rt, &format!("exec-{}", rt.name), &["sleep", "1000"]);
        let exec = dk.docker(&[
            "exec",
            "-e",
            "FOO=bar",
            "-w",
            "/tmp",
            &id,
            "sh",
            "-c",
            "echo $FOO; pwd; id -u; exit 7",
        ]);
        let mut stdin = dk.cmd();
        stdin.args(["exec", "-i", &id, "sh", "-c", "cat; exit 2"]);
        let stdin = Seen::from(dk.run(&mut with_stdin(&stdin, "line 1\nline 2\n")));
        let mut cmd = dk.cmd();
        let script = format!("{WAIT_FOR_SIZE}; tty; stty size; exit 4");
        cmd.args(["exec", "-it", &id, "sh", "-c", &script]);
        let tty = in_pty(&cmd, dk.dir.path(), 120);
        // Without the pid column (host pids differ); Docker needs it in the ps output.
        let top = dk.docker(&["top", &id, "-o", "pid,user,args"]).ok().stdout;
        let top: Vec<Vec<String>> = top
            .lines()
            .map(|l| l.split_whitespace().skip(1).map(String::from).collect())
            .collect();
        dk.docker(&["rm", "-f", &id]).ok();
        (Seen::from(exec), Seen::from(tty), stdin, top)
    });
    assert_execs(&seen.0, 7, "bar\n/tmp\n0\n", &seen.1);
    assert_eq!(
        seen.2,
        Seen {
            code: Some(2),
            stdout: "line 1\nline 2\n".into()
        }
    );
    assert_eq!(
        seen.3,
        [vec!["USER", "COMMAND"], vec!["root", "sleep", "1000"]]
    );
}

#[test]
fn docker_stop_kill_logs_equal_runc() {
    let Some(dk) = docker("docker_stop_kill_logs_equal_runc") else {
        return;
    };
    let trap = "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.1; done";
    let seen = same_as_runc("docker stop, kill, wait, logs", |rt| {
        // sleep as pid 1 ignores SIGTERM: stop waits -t seconds, then SIGKILL.
        let sleeper = dk.run_detached(rt, &format!("sleeper-{}", rt.name), &["sleep", "1000"]);
        dk.docker(&["stop", "-t", "1", &sleeper]).ok();
        let stop_sleeper = dk.inspect(&sleeper, "{{.State.Status}} {{.State.ExitCode}}");
        // A shell that handles SIGTERM stops with its own status.
        let trapper = dk.run_detached(rt, &format!("trapper-{}", rt.name), &["sh", "-c", trap]);
        dk.wait_log(&trapper, "ready", 1);
        dk.docker(&["stop", "-t", "30", &trapper]).ok();
        let stop_trapper = dk.inspect(&trapper, "{{.State.Status}} {{.State.ExitCode}}");
        // kill -s TERM + wait; kill (SIGKILL) + wait.
        dk.docker(&["start", &trapper]).ok();
        dk.wait_log(&trapper, "ready", 2);
        dk.docker(&["kill", "-s", "TERM", &trapper]).ok();
        let wait_term = dk.docker(&["wait", &trapper]).ok().stdout;
        dk.docker(&["start", &trapper]).ok();
        dk.wait_log(&trapper, "ready", 3);
        dk.docker(&["kill", &trapper]).ok();
        let wait_kill = dk.docker(&["wait", &trapper]).ok().stdout;
        let logs = dk.docker(&["logs", &trapper]).ok();
        for id in [&sleeper, &trapper] {
            dk.docker(&["rm", id]).ok();
        }
        (
            stop_sleeper,
            stop_trapper,
            wait_term,
            wait_kill,
            logs.stdout,
            logs.stderr,
        )
    });
    assert_eq!(seen.0, "exited 137");
    assert_eq!(seen.1, "exited 5");
    assert_eq!(seen.2, "5\n");
    assert_eq!(seen.3, "137\n");
    assert_eq!(seen.4, "ready\ngot TERM\nready\ngot TERM\nready\n");
}

#[test]
fn docker_restart_on_failure_equals_runc() {
    let Some(dk) = docker("docker_restart_on_failure_equals_runc") else {
        return;
    };
    let seen = same_as_runc("docker run --restart on-failure:3", |rt| {
        let name = format!("restart-{}", rt.name);
        let out = dk
            .run(&mut dk.run_cmd(
                rt,
                &name,
                &["-d", "--restart", "on-failure:3"],
                &["sh", "-c", "echo try; exit 2"],
            ))
            .ok();
        let id = out.stdout.trim().to_string();
        let format = "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}";
        wait_until("the third restart to exit", 60, || {
            dk.inspect(&id, format) == "3 exited 2"
        });
        let logs = dk.docker(&["logs", &id]).ok().stdout;
        dk.docker(&["rm", &id]).ok();
        (dk.inspect_gone(&id), logs, dk.leftovers(&id))
    });
    assert!(seen.0, "docker inspect still knows the removed container");
    assert_eq!(seen.1, "try\ntry\ntry\ntry\n");
    assert_eq!(seen.2, (false, false, false), "left after rm");
}

#[test]
fn docker_rm_equals_runc() {
    let Some(dk) = docker("docker_rm_equals_runc") else {
        return;
    };
    let seen = same_as_runc("docker rm of an exited and of a running container", |rt| {
        let exited = dk.run_detached(rt, &format!("exited-{}", rt.name), &["true"]);
        let waited = dk.docker(&["wait", &exited]).ok().stdout;
        let cgroup_after_exit = cgroup_exists(&dk.cgroup_of(&exited));
        let rm = dk.docker(&["rm", &exited]);
        let exited_left = dk.leftovers(&exited);
        let running = dk.run_detached(rt, &format!("running-{}", rt.name), &["sleep", "1000"]);
        let refused = dk.docker(&["rm", &running]);
        let still = (
            dk.inspect(&running, "{{.State.Status}}"),
            cgroup_exists(&dk.cgroup_of(&running)),
        );
        let forced = dk.docker(&["rm", "-f", &running]);
        let running_left = dk.leftovers(&running);
        (
            waited,
            cgroup_after_exit,
            (rm.code, mask_ids(&rm.stdout)),
            exited_left,
            (refused.code, mask_ids(&refused.stderr)),
            still,
            (forced.code, mask_ids(&forced.stdout)),
            running_left,
        )
    });
    assert_eq!(seen.0, "0\n");
    assert!(!seen.1, "the exited container's cgroup is left");
    assert_eq!(seen.2, (Some(0), "<id>\n".to_string()));
    assert_eq!(seen.3, (false, false, false), "left after rm");
    assert_eq!(seen.4.0, Some(1), "{seen:?}");
    assert_eq!(seen.5, ("running".to_string(), true));
    assert_eq!(seen.6, (Some(0), "<id>\n".to_string()));
    assert_eq!(seen.7, (false, false, false), "left after rm -f");
}

#[test]
fn docker_pause_update_equal_runc() {
    let Some(dk) = docker("docker_pause_update_equal_runc") else {
        return;
    };
    let v2 = common::pure_v2();
    let files = if v2 {
        "memory.max pids.max cpu.max"
    } else {
        "memory/memory.limit_in_bytes pids/pids.max cpu/cpu.cfs_quota_us"
    };
    let script = format!("cd /sys/fs/cgroup && for f in {files}; do echo $f $(cat $f); done");
    let seen = same_as_runc("docker pause, unpause, update", |rt| {
        let id = dk.run_detached(rt, &format!("pause-{}", rt.name), &["sleep", "1000"]);
        let cg = dk.cgroup_of(&id);
        dk.docker(&["pause", &id]).ok();
        let paused = (dk.inspect(&id, "{{.State.Status}}"), freezer_state(&cg));
        dk.docker(&["unpause", &id]).ok();
        let resumed = (dk.inspect(&id, "{{.State.Status}}"), freezer_state(&cg));
        dk.docker(&[
            "update",
            "--memory",
            "32m",
            "--memory-swap",
            "64m",
            "--cpus",
            "0.25",
            "--pids-limit",
            "20",
            &id,
        ])
        .ok();
        let limits = dk.docker(&["exec", &id, "sh", "-c", &script]).ok().stdout;
        dk.docker(&["rm", "-f", &id]).ok();
        (paused, resumed, limits)
    });
    assert_eq!(seen.0, ("paused".to_string(), "FROZEN".to_string()));
    assert_eq!(seen.1, ("running".to_string(), "THAWED".to_string()));
    if !v2 {
        assert_eq!(
            seen.2,
            "memory/memory.limit_in_bytes 33554432\npids/pids.max 20\n\
             cpu/cpu.cfs_quota_us 25000\n"
        );
    }
}

#[test]
fn docker_run_options_equal_runc() {
    let Some(dk) = docker("docker_run_options_equal_runc") else {
        return;
    };
    let vol = dk.dir.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("f"), "from the host\n").unwrap();
    let bind = format!("{}:/vol:ro", vol.display());
    let flags = [
        "--rm",
        "--init",
        "--user",
        "1000:1000",
        "--group-add",
        "5",
        "--read-only",
        "--tmpfs",
        "/run:rw,size=1m",
        "-v",
        &bind,
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_ADMIN",
        "--security-opt",
        "no-new-privileges",
        "--ulimit",
        "nofile=512:1024",
        "--sysctl",
        "net.core.somaxconn=1024",
        "-e",
        "FOO=bar",
        "-w",
        "/work",
    ];
    let script = "id; echo $FOO; pwd; grep -E '^(Cap|NoNewPrivs)' /proc/self/status; \
                  ulimit -n; ulimit -Hn; cat /proc/sys/net/core/somaxconn; \
                  tr '\\0' ' ' < /proc/1/cmdline; echo; cat /vol/f; touch /x /vol/x 2>&1; \
                  touch /run/x && echo wrote /run/x; exit 4";
    let seen = same_as_runc(
        "docker run --init --user --group-add --read-only --tmpfs -v --cap-* \
         --security-opt no-new-privileges --ulimit --sysctl -e -w",
        |rt| {
            let name = format!("opts-{}", rt.name);
            Seen::from(dk.run(&mut dk.run_cmd(rt, &name, &flags, &["sh", "-c", script])))
        },
    );
    assert_eq!(seen.code, Some(4), "{seen:?}");
    assert!(
        seen.stdout
            .starts_with("uid=1000 gid=1000 groups=5,1000\nbar\n/work\n"),
        "{seen:?}"
    );
    assert!(
        seen.stdout.contains("CapBnd:\t0000000000001000\n"),
        "{seen:?}"
    );
    assert!(seen.stdout.contains("NoNewPrivs:\t1\n"), "{seen:?}");
    assert!(
        seen.stdout
            .contains("\n512\n1024\n1024\n/sbin/docker-init -- sh -c id; echo $FOO; pwd;"),
        "{seen:?}"
    );
    assert!(
        seen.stdout.ends_with(
            "from the host\ntouch: /x: Read-only file system\n\
             touch: /vol/x: Read-only file system\nwrote /run/x\n"
        ),
        "{seen:?}"
    );
}

#[test]
fn docker_missing_command_fails_like_runc() {
    let Some(dk) = docker("docker_missing_command_fails_like_runc") else {
        return;
    };
    let seen = same_as_runc("docker run of a missing command", |rt| {
        let name = format!("bad-{}", rt.name);
        let out = dk.run(&mut dk.run_cmd(rt, &name, &["--rm"], &["/nonexistent/cmd"]));
        (
            out.code,
            // The shim read the error from the runtime's --log (json) file.
            out.stderr.contains("OCI runtime create failed")
                && out.stderr.contains("\"/nonexistent/cmd\""),
            dk.names().contains(&name),
        )
    });
    // 127: Docker recognised "no such file" in the runtime's error.
    assert_eq!(seen, (Some(127), true, false));
}
