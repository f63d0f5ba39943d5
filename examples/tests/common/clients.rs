//! The harness of the client tests (`clients.rs`: podman and containerd; `docker.rs`):
//! finding the tools, running each scenario with runc and with berth and comparing, commands
//! with their output in files, a pty, the known differences, host cleanup (mounts, cgroups,
//! directories the clients make outside ours) and the shared busybox image.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{BERTH, BUSYBOX, unique};

/// The image's ref name in the layout and in containerd.
pub const REF: &str = "busybox";
/// The terminal size set on the outer pty, which the container must see.
pub const TTY_SIZE: &str = "stty cols 91 rows 17";

// ---------------------------------------------------------------------------------------
// Tools, runtimes, comparison.

/// Where `name` is: searched in PATH, then in the sbin directories.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether every tool is there. When one is missing: `SKIP: ...` and false, or a failure when
/// the environment variable `CI` is set.
pub fn have(test: &str, tools: &[&str]) -> bool {
    let mut missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| find_tool(t).is_none())
        .collect();
    if !Path::new(BUSYBOX).is_file() {
        missing.push(BUSYBOX);
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: missing {} (Debian: podman conmon containerd docker.io runc umoci skopeo busybox-static)",
        missing.join(", ")
    );
    assert!(std::env::var_os("CI").is_none(), "CI is set and {msg}");
    eprintln!("SKIP: {msg}");
    false
}

/// One of the two runtimes compared.
pub struct Runtime {
    pub name: &'static str,
    pub path: PathBuf,
}

pub fn runtimes() -> [Runtime; 2] {
    [
        Runtime {
            name: "runc",
            path: find_tool("runc").expect("runc is checked by have()"),
        },
        Runtime {
            name: "berth",
            path: PathBuf::from(BERTH),
        },
    ]
}

/// Runs `scenario` with runc, then with berth; asserts both results are equal and returns
/// runc's (for the caller's checks that the scenario did what it meant to).
pub fn same_as_runc<T: Debug + PartialEq>(
    what: &str,
    mut scenario: impl FnMut(&Runtime) -> T,
) -> T {
    let [runc, berth] = runtimes();
    let want = scenario(&runc);
    let got = scenario(&berth);
    println!("{what}:\n  runc:  {want:?}\n  berth: {got:?}");
    assert_eq!(got, want, "{what}: berth (left) differs from runc (right)");
    want
}

/// What a finished command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Out {
    pub fn ok(self) -> Out {
        assert_eq!(self.code, Some(0), "{self:#?}");
        self
    }
}

/// A started command whose stdout and stderr go to files (not pipes: containers started in
/// the background inherit them and would keep a pipe open). Killed if dropped while running.
pub struct Running {
    child: Option<Child>,
    /// The write end of stdin when it is a pipe, held open until the command finishes.
    stdin: Option<std::process::ChildStdin>,
    what: String,
    out: PathBuf,
    err: PathBuf,
    start: Instant,
}

pub fn spawn(cmd: &mut Command, scratch: &Path) -> Running {
    try_spawn(cmd, scratch, false).unwrap_or_else(|e| panic!("{e}"))
}

/// [`spawn`] for cleanup paths: never panics. stdin is /dev/null, or with `stdin_pipe` a pipe
/// that stays open (no end of file) until the command finishes.
pub fn try_spawn(cmd: &mut Command, scratch: &Path, stdin_pipe: bool) -> Result<Running, String> {
    let n = unique("cmd");
    let out = scratch.join(format!("{n}.stdout"));
    let err = scratch.join(format!("{n}.stderr"));
    let what = format!("{cmd:?}");
    let file = |p: &Path| File::create(p).map_err(|e| format!("create {p:?}: {e}"));
    let start = Instant::now();
    let mut child = cmd
        .stdin(if stdin_pipe {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(file(&out)?)
        .stderr(file(&err)?)
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    Ok(Running {
        stdin: child.stdin.take(),
        child: Some(child),
        what,
        out,
        err,
        start,
    })
}

impl Running {
    pub fn stdout_so_far(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until stdout contains `s`.
    pub fn wait_for_output(&self, s: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.stdout_so_far().contains(s) {
            assert!(
                Instant::now() < deadline,
                "{} never printed {s:?}; stdout {:?}, stderr {:?}",
                self.what,
                self.stdout_so_far(),
                std::fs::read_to_string(&self.err).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the command to finish (killing it and failing after `secs`).
    pub fn wait(self, secs: u64) -> Out {
        self.finish(secs).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for the command to finish; kills it after `secs` (an error then). Never panics.
    pub fn finish(mut self, secs: u64) -> Result<Out, String> {
        let mut child = self.child.take().ok_or("waited twice")?;
        let deadline = self.start + Duration::from_secs(secs);
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                other => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{} did not finish within {secs}s ({other:?}); stdout {:?}, stderr {:?}",
                        self.what,
                        self.stdout_so_far(),
                        std::fs::read_to_string(&self.err).unwrap_or_default()
                    ));
                }
            }
        };
        let took = self.start.elapsed();
        self.stdin = None;
        let read = |p: &Path| {
            let s = std::fs::read_to_string(p).unwrap_or_default();
            let _ = std::fs::remove_file(p);
            s
        };
        Ok(Out {
            code: status.code(),
            stdout: read(&self.out),
            stderr: read(&self.err),
            took,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `containerd --config DIR/config.toml`, its output appended to `DIR/containerd.log`
/// (so a restart keeps the first run's); `path`: its PATH (where it finds shims by name).
pub fn spawn_containerd(dir: &Path, path: Option<&std::ffi::OsStr>) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .unwrap_or_else(|e| panic!("containerd.log: {e}"));
    let mut cmd = Command::new("containerd");
    cmd.arg("--config").arg(dir.join("config.toml"));
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    cmd.stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .unwrap_or_else(|e| panic!("containerd.log: {e}")),
        )
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("containerd: {e}"))
}

/// Runs a command to completion within `secs`.
pub fn run(cmd: &mut Command, scratch: &Path, secs: u64) -> Out {
    spawn(cmd, scratch).wait(secs)
}

/// [`run`] for cleanup paths: never panics.
pub fn try_run(cmd: &mut Command, scratch: &Path, secs: u64) -> Option<Out> {
    try_spawn(cmd, scratch, false).ok()?.finish(secs).ok()
}

/// `s` quoted for sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `cmd` on a fresh pty of size [`TTY_SIZE`] (util-linux `script`), the way a user at a
/// terminal would; returns its output without the carriage returns the ptys add. script's
/// stdin is a pipe left open: at end of file it would type an end-of-file on the pty.
pub fn in_pty(cmd: &Command, scratch: &Path, secs: u64) -> Out {
    let mut line = format!("{TTY_SIZE}; exec");
    line.push(' ');
    line.push_str(&sh_quote(&cmd.get_program().to_string_lossy()));
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&sh_quote(&a.to_string_lossy()));
    }
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", &line, "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            script.env(k, v);
        }
    }
    let mut out = try_spawn(&mut script, scratch, true)
        .and_then(|r| r.finish(secs))
        .unwrap_or_else(|e| panic!("{e}"));
    out.stdout.retain(|c| c != '\r');
    out
}

/// `cmd` with `input` on its stdin (through `sh`: printf into a pipe).
pub fn with_stdin(cmd: &Command, input: &str) -> Command {
    let mut sh = Command::new("sh");
    sh.args(["-c", "printf %s \"$0\" | exec \"$@\"", input])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            sh.env(k, v);
        }
    }
    sh
}

/// Replaces every run of 64 hex digits (podman's container ids) with `<id>`.
pub fn mask_ids(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let run = b[i..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
        if run == 64 {
            out.push_str("<id>");
            i += run;
        } else {
            let n = run.max(1);
            out.push_str(&String::from_utf8_lossy(&b[i..i + n]));
            i += n;
        }
    }
    out
}

/// Waits until `f` is true.
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

// ---------------------------------------------------------------------------------------
// Known differences. Each is dropped from both sides before comparing, and listed here
// rather than hidden: fix berth, then delete the line.

/// Environment variables left out (none today: berth sets HOME from /etc/passwd as runc does).
pub const KNOWN_ENV_DIFFERENCES: &[&str] = &[];

/// Mount points left out: berth also mounts a hybrid host's cgroup2 hierarchy at
/// /sys/fs/cgroup/unified, and makes the /sys/fs/cgroup tmpfs read-only as the config asks
/// (runc leaves that tmpfs read-write).
pub const KNOWN_MOUNT_DIFFERENCES: &[&str] = &["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];

pub fn drop_known_env_differences(s: &str) -> String {
    s.lines()
        .filter(|l| !KNOWN_ENV_DIFFERENCES.iter().any(|k| l.starts_with(k)))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `/proc/self/mounts` as sorted `mount point, type, ro|rw` lines (the other options hold
/// paths and ids that differ from run to run; podman orders /etc/hosts, /etc/hostname and
/// /run/.containerenv differently from run to run), known differences dropped.
pub fn mount_summary(mounts: &str) -> BTreeSet<String> {
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (point, fstype, opts) = (f.get(1)?, f.get(2)?, f.get(3)?);
            if KNOWN_MOUNT_DIFFERENCES.contains(point) {
                return None;
            }
            let ro = if opts.split(',').any(|o| o == "ro") {
                "ro"
            } else {
                "rw"
            };
            Some(format!("{point} {fstype} {ro}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Host cleanup: mounts, cgroups, processes, directories outside our temporary ones.

pub use super::TempDir;

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (b[i], oct) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn unmount_under(dir: &Path) {
    for _ in 0..5 {
        let points = mounts_under(dir);
        if points.is_empty() {
            return;
        }
        for p in points {
            let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Every cgroup hierarchy: the directories mounted under /sys/fs/cgroup on a v1 or hybrid
/// host, /sys/fs/cgroup itself on a cgroup2-only host.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default()
}

/// `rel` and every cgroup below it, in one hierarchy, parents first.
pub fn cgroup_tree(hierarchy: &Path, rel: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![hierarchy.join(rel.trim_start_matches('/'))];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        stack.extend(
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
        out.push(d);
    }
    out
}

/// Whether the cgroup `rel` exists in any hierarchy.
pub fn cgroup_exists(rel: &str) -> bool {
    cgroup_hierarchies()
        .iter()
        .any(|h| h.join(rel.trim_start_matches('/')).exists())
}

/// The freezer state of cgroup `rel`: `FROZEN` or `THAWED` (v1 freezer or cgroup2).
pub fn freezer_state(rel: &str) -> String {
    let rel = rel.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/freezer").join(rel);
    if let Ok(s) = std::fs::read_to_string(v1.join("freezer.state")) {
        return s.trim().to_string();
    }
    let v2 = Path::new("/sys/fs/cgroup").join(rel).join("cgroup.freeze");
    match std::fs::read_to_string(&v2).map(|s| s.trim().to_string()) {
        Ok(s) if s == "1" => "FROZEN".into(),
        Ok(_) => "THAWED".into(),
        Err(e) => format!("no freezer for {rel}: {e}"),
    }
}

/// The pids of the processes with `arg` as one of their arguments (a daemon's socket in the
/// command lines of the shims serving it).
pub fn pids_with_arg(arg: &std::ffi::OsStr) -> Vec<i32> {
    let arg = arg.as_encoded_bytes();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == arg))
        })
        .collect()
}

/// Thaws, kills every process of, and removes the cgroup `rel` and everything below it in
/// every hierarchy. The cgroups are this test's own (unique names), so are their processes.
pub fn remove_cgroup_tree(rel: &str) {
    let hierarchies = cgroup_hierarchies();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut left = 0;
        for h in &hierarchies {
            let mut tree = cgroup_tree(h, rel);
            for d in &tree {
                let _ = std::fs::write(d.join("freezer.state"), "THAWED");
                let _ = std::fs::write(d.join("cgroup.freeze"), "0");
                let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            tree.reverse();
            for d in &tree {
                if std::fs::remove_dir(d).is_err() && d.exists() {
                    left += 1;
                }
            }
        }
        if left == 0 || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Host directories the clients create outside our temporary directories even with every
/// path pointed elsewhere (podman's network run directory, containerd's shim sockets,
/// dockerd's plugin socket directory).
/// The ones that did not exist when the first test of a batch started are removed (when
/// empty) by the last test of the batch to finish.
const HOST_DIRS: &[&str] = &[
    "/run/containers/networks",
    "/run/containers",
    "/run/containerd/s",
    "/run/containerd/fifo",
    "/run/containerd/runc",
    "/run/containerd",
    "/run/docker/plugins",
    "/run/docker",
];

pub struct HostDirs;

static HOST_DIRS_STATE: Mutex<(usize, Vec<&'static str>)> = Mutex::new((0, Vec::new()));

impl HostDirs {
    pub fn acquire() -> HostDirs {
        let mut st = HOST_DIRS_STATE.lock().unwrap_or_else(|e| e.into_inner());
        if st.0 == 0 {
            st.1 = HOST_DIRS
                .iter()
                .copied()
                .filter(|d| !Path::new(d).exists())
                .collect();
        }
        st.0 += 1;
        HostDirs
    }
}

impl Drop for HostDirs {
    fn drop(&mut self) {
        let mut st = HOST_DIRS_STATE.lock().unwrap_or_else(|e| e.into_inner());
        st.0 -= 1;
        if st.0 == 0 {
            for d in st.1.drain(..) {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The image.

/// The busybox image: an OCI layout (ref [`REF`]) and the same as an OCI archive.
pub struct BusyboxImage {
    dir: TempDir,
}

impl BusyboxImage {
    /// The OCI layout, the image under the ref name [`REF`].
    pub fn layout(&self) -> PathBuf {
        self.dir.join("layout")
    }

    /// The layout as an OCI archive.
    pub fn archive(&self) -> PathBuf {
        self.dir.join("busybox.tar")
    }
}

/// The image, built once and shared by the tests running at the same time; removed when the
/// last of them drops it (and built again if a later test asks).
pub fn busybox_image() -> Arc<BusyboxImage> {
    static CACHE: Mutex<Weak<BusyboxImage>> = Mutex::new(Weak::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(image) = cache.upgrade() {
        return image;
    }
    let image = Arc::new(build_busybox_image());
    *cache = Arc::downgrade(&image);
    image
}

pub fn build_busybox_image() -> BusyboxImage {
    let dir = TempDir::new("image");
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let image = format!("{}:{REF}", layout.display());
    let umoci = |args: &[&str]| {
        run(Command::new("umoci").args(args), dir.path(), 120).ok();
    };
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    umoci(&["unpack", "--image", &image, bundle.to_str().unwrap()]);
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "dev", "etc", "proc", "root", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    super::copy_executable(Path::new(BUSYBOX), &rootfs.join("bin/busybox"));
    run(
        Command::new("chroot")
            .arg(&rootfs)
            .args(["/bin/busybox", "--install", "-s", "/bin"]),
        dir.path(),
        60,
    )
    .ok();
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    umoci(&[
        "repack",
        "--refresh-bundle",
        "--image",
        &image,
        bundle.to_str().unwrap(),
    ]);
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/sh",
        "--config.env",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "--config.workingdir",
        "/",
    ]);
    let img = BusyboxImage { dir };
    run(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(img.archive())
            .arg("."),
        img.dir.path(),
        60,
    )
    .ok();
    img
}

/// What `podman run` of a script shows; known differences dropped.
#[derive(Debug, PartialEq)]
pub struct Seen {
    pub code: Option<i32>,
    pub stdout: String,
}

impl From<Out> for Seen {
    fn from(out: Out) -> Seen {
        Seen {
            code: out.code,
            stdout: out.stdout,
        }
    }
}

/// What the exec scenarios check: the plain exec's status and output, and that the `-t` one
/// ran on a pty of [`TTY_SIZE`] and exited 4.
/// What a container shows of its confinement: the capability, no_new_privs and seccomp
/// lines of its status, its devices, then (after `---`) its mounts.
pub const CONFINEMENT_PROBE: &str = "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; \
     stat -c '%n %F %a %t:%T' /dev/* /dev/pts/ptmx; echo ---; cat /proc/self/mounts";

/// The output of [`CONFINEMENT_PROBE`]: the status and device lines, and the mounts summed up.
pub fn confinement(stdout: &str) -> (String, BTreeSet<String>) {
    let (status, mounts) = stdout.split_once("---\n").unwrap_or((stdout, ""));
    (status.to_string(), mount_summary(mounts))
}

/// The script that prints the container's own cgroup limit files (v1 or v2 as the host
/// has), and the flags that set them: podman and docker take the same.
pub fn resource_limits_probe() -> (String, [&'static str; 9]) {
    let files = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "memory.max memory.swap.max pids.max cpu.max cpu.weight"
    } else {
        "memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes pids/pids.max \
         cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us cpu/cpu.shares"
    };
    let script = format!("cd /sys/fs/cgroup && for f in {files}; do echo $f $(cat $f); done");
    let flags = [
        "--rm",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
    ];
    (script, flags)
}

pub fn assert_execs(exec: &Seen, code: i32, stdout: &str, tty: &Seen) {
    assert_eq!(exec.code, Some(code), "{exec:?}");
    assert_eq!(exec.stdout, stdout);
    assert_eq!(tty.code, Some(4), "{tty:?}");
    assert!(tty.stdout.starts_with("/dev/pts/"), "{tty:?}");
    assert!(tty.stdout.ends_with("\n17 91\n"), "{tty:?}");
}

/// A CRI client channel on a unix socket (connected lazily, on the first call, by `rt`'s
/// reactor), each call with `timeout` as its deadline.
pub fn cri_channel(
    rt: &tokio::runtime::Runtime,
    sock: &Path,
    timeout: Duration,
) -> tonic::transport::Channel {
    let _in_rt = rt.enter();
    let path = sock.to_path_buf();
    tonic::transport::Endpoint::from_static("http://[::]:50051")
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
}
