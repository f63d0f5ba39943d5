//! Test harness: temp dirs, a busybox rootfs, and containers run in forked
//! children inside private mount (and pid) namespaces, inspected from the
//! outside through `/proc/<pid>/...`.
//!
//! Every container runs in a child that first unshares a mount namespace and
//! makes it `rprivate`: whatever the plan mounts vanishes with the child, and
//! nothing can propagate to the host. The grandchild (pid 1 of a new pid
//! namespace) runs the plan, reports `OK`/`ERR ...` over a pipe and then
//! blocks until the test drops the [`Container`], so the test can look at
//! `/proc/<pid>/mountinfo` and `/proc/<pid>/root/...` while it lives.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use berth_rootfs::{RootfsOptions, RootfsPlan};
use oci_spec::runtime::{LinuxDevice, Mount};

/// Serialises containers within one test binary, so that no forked child
/// inherits another test's pipes.
static FORK_LOCK: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A temporary directory removed (recursively) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("berth-rootfs-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Copies the executable `src` to `dst` with cp(1), in a child process: a file this
/// (multi-threaded) test process held open for writing would be inherited by every container
/// init another test clones meanwhile, and while one of them still holds that fd, executing
/// the copy fails with ETXTBSY (seen in the VM lane, whose emulated cpus widen the window).
pub fn copy_executable(src: &Path, dst: &Path) {
    let st = std::process::Command::new("cp")
        .arg(src)
        .arg(dst)
        .status()
        .expect("spawn cp");
    assert!(
        st.success(),
        "cp {} {} (busybox-static installed?): {st}",
        src.display(),
        dst.display()
    );
}

/// Build a minimal busybox rootfs at `<dir>/rootfs` and return its path.
pub fn busybox_rootfs(dir: &TempDir) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "mnt", "run"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    copy_executable(Path::new("/bin/busybox"), &root.join("bin/busybox"));
    for applet in [
        "sh", "cat", "ls", "stat", "readlink", "echo", "test", "mount", "touch", "id",
    ] {
        symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    fs::write(root.join("etc/secret"), "top secret\n").unwrap();
    root
}

/// Parse `mounts` from JSON (readable test configs).
pub fn mounts(json: &str) -> Vec<Mount> {
    serde_json::from_str(json).expect("valid mounts JSON")
}

/// Parse `linux.devices` from JSON.
pub fn devices(json: &str) -> Vec<LinuxDevice> {
    serde_json::from_str(json).expect("valid devices JSON")
}

/// The usual OCI default mounts for a container with its own pid namespace.
pub fn default_mounts() -> Vec<Mount> {
    mounts(
        r#"[
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]}
    ]"#,
    )
}

/// Owned inputs for [`RootfsOptions`].
pub struct Config {
    pub rootfs: PathBuf,
    pub bundle: PathBuf,
    pub readonly: bool,
    pub mounts: Vec<Mount>,
    pub propagation: Option<String>,
    pub devices: Vec<LinuxDevice>,
    pub masked: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub sysctl: HashMap<String, String>,
    pub no_pivot: bool,
    pub own_mount_ns: bool,
    pub new_user_ns: bool,
    pub new_cgroup_ns: bool,
    pub cwd: Option<PathBuf>,
}

impl Config {
    pub fn new(rootfs: &Path) -> Config {
        Config {
            rootfs: rootfs.to_path_buf(),
            bundle: rootfs.parent().unwrap().to_path_buf(),
            readonly: false,
            mounts: Vec::new(),
            propagation: None,
            devices: Vec::new(),
            masked: Vec::new(),
            readonly_paths: Vec::new(),
            sysctl: HashMap::new(),
            no_pivot: false,
            own_mount_ns: true,
            new_user_ns: false,
            new_cgroup_ns: true,
            cwd: None,
        }
    }

    pub fn prepare(&self) -> Result<RootfsPlan, berth_rootfs::RootfsError> {
        RootfsPlan::prepare(
            &RootfsOptions::new(&self.rootfs, &self.bundle)
                .readonly(self.readonly)
                .mounts(&self.mounts)
                .rootfs_propagation(self.propagation.as_deref())
                .devices(&self.devices)
                .masked_paths(&self.masked)
                .readonly_paths(&self.readonly_paths)
                .sysctl(&self.sysctl)
                .no_pivot(self.no_pivot)
                .own_mount_ns(self.own_mount_ns)
                .new_user_ns(self.new_user_ns)
                .new_cgroup_ns(self.new_cgroup_ns)
                .cwd(self.cwd.as_deref()),
        )
    }
}

/// Handed to the body running in the container process.
pub struct Ctx {
    report: i32,
}

impl Ctx {
    /// Report "OK" and replace the process with `argv` (stdout and stderr go
    /// to the report pipe). Only returns on failure.
    pub fn exec(&self, argv: &[&CStr]) -> String {
        let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        write_fd(self.report, b"OK\n");
        // SAFETY: test child; argv is NUL-terminated and outlives the call.
        unsafe {
            libc::dup2(self.report, 1);
            libc::dup2(self.report, 2);
            libc::execv(ptrs[0], ptrs.as_ptr());
        }
        format!("execv failed: {}", std::io::Error::last_os_error())
    }
}

fn write_fd(fd: i32, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: writing a live buffer.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: freshly created descriptors we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Close every descriptor >= 3 except `keep`.
fn close_other_fds(keep: &[i32]) {
    let mut keep: Vec<i32> = keep.to_vec();
    keep.sort_unstable();
    let mut lo = 3u32;
    for k in keep {
        let k = k as u32;
        if k > lo {
            // SAFETY: closing descriptor ranges in the forked child.
            unsafe { libc::syscall(libc::SYS_close_range, lo, k - 1, 0) };
        }
        lo = lo.max(k + 1);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, lo, u32::MAX, 0) };
}

fn die(fd: i32, msg: &str) -> ! {
    write_fd(
        fd,
        format!("ERR {msg}: {}\n", std::io::Error::last_os_error()).as_bytes(),
    );
    // SAFETY: terminating the forked child.
    unsafe { libc::_exit(1) }
}

/// A running container process.
pub struct Container {
    /// Host pid of the container's init (pid 1 of its pid namespace).
    pub pid: i32,
    /// What the body reported: `OK\n...` or `ERR ...`.
    pub report: String,
    outer: i32,
    release: Option<OwnedFd>,
    _lock: MutexGuard<'static, ()>,
}

impl Container {
    /// Panic with the report unless the body succeeded.
    pub fn ok(&self) -> &Self {
        assert!(
            self.report.starts_with("OK\n"),
            "container failed: {}",
            self.report
        );
        self
    }

    /// What an exec'ed program printed.
    pub fn output(&self) -> &str {
        self.ok();
        &self.report[3..]
    }

    /// Path of `p` (absolute, inside the container) as seen from the host.
    pub fn root_path(&self, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}", self.pid, p))
    }

    /// The container's mount table.
    pub fn mountinfo(&self) -> Vec<MountLine> {
        let text =
            fs::read_to_string(format!("/proc/{}/mountinfo", self.pid)).expect("read mountinfo");
        parse_mountinfo(&text)
    }

    /// The top-most mount at `mount_point`, if any.
    pub fn mount_at(&self, mount_point: &str) -> Option<MountLine> {
        self.mountinfo()
            .into_iter()
            .rev()
            .find(|m| m.mount_point == mount_point)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.release.take();
        // SAFETY: signalling and reaping our own children.
        unsafe {
            if self.pid > 0 {
                libc::kill(self.pid, libc::SIGKILL);
            }
            let mut status = 0;
            libc::waitpid(self.outer, &mut status, 0);
        }
    }
}

/// One line of mountinfo.
#[derive(Debug, Clone)]
pub struct MountLine {
    pub root: String,
    pub mount_point: String,
    pub options: Vec<String>,
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: Vec<String>,
}

impl MountLine {
    pub fn has(&self, opt: &str) -> bool {
        self.options.iter().any(|o| o == opt)
    }
    pub fn has_super(&self, opt: &str) -> bool {
        self.super_options.iter().any(|o| o == opt)
    }
    pub fn shared(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("shared:"))
    }
    pub fn unbindable(&self) -> bool {
        self.optional.iter().any(|o| o == "unbindable")
    }
}

/// What mountinfo's root field shows for a bind of the host directory `p`: its path within
/// its filesystem, i.e. below the root of the host mount it is on (`p` itself where that
/// is the root filesystem; relative to /tmp where /tmp is a tmpfs of its own, as in the VM
/// lane).
pub fn root_in_its_fs(p: &Path) -> String {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let host = parse_mountinfo(&text);
    let (m, rest) = host
        .iter()
        .rev()
        .filter_map(|m| Some((m, p.strip_prefix(&m.mount_point).ok()?)))
        .min_by_key(|(_, rest)| rest.components().count())
        .expect("a host mount holds every path");
    Path::new(&m.root).join(rest).display().to_string()
}

pub fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-").unwrap();
            let split = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
            MountLine {
                root: f[3].replace("\\040", " "),
                mount_point: f[4].replace("\\040", " "),
                options: split(f[5]),
                optional: f[6..sep].iter().map(|s| s.to_string()).collect(),
                fstype: f[sep + 1].to_string(),
                source: f[sep + 2].to_string(),
                super_options: split(f[sep + 3]),
            }
        })
        .collect()
}

/// Extra namespaces for the container process.
pub const NEWIPC_NET: i32 = libc::CLONE_NEWIPC | libc::CLONE_NEWNET;

/// Fork a container (at most one per test at a time: drop the previous
/// [`Container`] first): the child unshares `CLONE_NEWNS | CLONE_NEWPID | extra`,
/// makes every mount private, forks the container init which runs `body`.
pub fn spawn(extra: i32, body: impl FnOnce(&Ctx) -> Result<(), String>) -> Container {
    spawn_full(extra, None, body)
}

/// Like [`spawn`], but the container also gets a new user namespace (root
/// mapped to root, plus new net and ipc namespaces owned by it). `pre` runs
/// first, as real root in a private mount namespace: mounts it makes are
/// locked in the container's namespaces.
pub fn spawn_userns(
    pre: impl FnOnce() -> Result<(), String> + 'static,
    body: impl FnOnce(&Ctx) -> Result<(), String>,
) -> Container {
    spawn_full(
        libc::CLONE_NEWNET | libc::CLONE_NEWIPC,
        Some(Box::new(pre)),
        body,
    )
}

/// Like [`spawn_userns`] but the container keeps the host's network
/// namespace (so it may not mount a fresh sysfs).
pub fn spawn_userns_host_net(body: impl FnOnce(&Ctx) -> Result<(), String>) -> Container {
    spawn_full(libc::CLONE_NEWIPC, Some(Box::new(|| Ok(()))), body)
}

type Pre = Box<dyn FnOnce() -> Result<(), String>>;

fn write_file(path: &str, content: &str) -> bool {
    fs::write(path, content).is_ok()
}

fn spawn_full(
    extra: i32,
    userns: Option<Pre>,
    body: impl FnOnce(&Ctx) -> Result<(), String>,
) -> Container {
    let lock = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (pid_r, pid_w) = pipe();
    let (rep_r, rep_w) = pipe();
    let (rel_r, rel_w) = pipe();
    // SAFETY: fork in the test process; the child only runs the body and exits.
    let outer = unsafe { libc::fork() };
    assert!(outer >= 0, "fork failed");
    if outer == 0 {
        let (pw, rw, rr) = (pid_w.as_raw_fd(), rep_w.as_raw_fd(), rel_r.as_raw_fd());
        close_other_fds(&[pw, rw, rr]);
        // SAFETY: plain syscalls in the forked child.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            let private = || {
                libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
            };
            match userns {
                None => {
                    if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID | extra) != 0 {
                        die(rw, "unshare");
                    }
                    if !private() {
                        die(rw, "make / rprivate");
                    }
                }
                Some(pre) => {
                    if libc::unshare(libc::CLONE_NEWNS) != 0 || !private() {
                        die(rw, "private mount namespace");
                    }
                    if let Err(e) = pre() {
                        write_fd(rw, format!("ERR pre: {e}\n").as_bytes());
                        libc::_exit(1);
                    }
                    let flags =
                        libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | extra;
                    if libc::unshare(flags) != 0 {
                        die(rw, "unshare user namespace");
                    }
                    if !(write_file("/proc/self/setgroups", "deny")
                        && write_file("/proc/self/uid_map", "0 0 1")
                        && write_file("/proc/self/gid_map", "0 0 1"))
                    {
                        die(rw, "id maps");
                    }
                }
            }
            let inner = libc::fork();
            if inner < 0 {
                die(rw, "fork");
            }
            if inner == 0 {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::close(pw);
                let ctx = Ctx { report: rw };
                let msg = match body(&ctx) {
                    Ok(()) => "OK\n".to_string(),
                    Err(e) => format!("ERR {e}\n"),
                };
                write_fd(rw, msg.as_bytes());
                libc::close(rw);
                // Wait for the test to release us (EOF), at most two minutes:
                // as pid 1 of its namespace this process ignores SIGALRM.
                let mut pfd = libc::pollfd {
                    fd: rr,
                    events: libc::POLLIN,
                    revents: 0,
                };
                libc::poll(&mut pfd, 1, 120_000);
                libc::_exit(0);
            }
            write_fd(pw, &inner.to_le_bytes());
            libc::close(pw);
            libc::close(rw);
            libc::close(rr);
            let mut status = 0;
            libc::waitpid(inner, &mut status, 0);
            libc::_exit(0);
        }
    }
    drop(pid_w);
    drop(rep_w);
    drop(rel_r);
    let mut pid_bytes = [0u8; 4];
    let mut pid_file = fs::File::from(pid_r);
    let pid = match pid_file.read_exact(&mut pid_bytes) {
        Ok(()) => i32::from_le_bytes(pid_bytes),
        Err(_) => -1,
    };
    let mut report = String::new();
    let _ = fs::File::from(rep_r).read_to_string(&mut report);
    Container {
        pid,
        report,
        outer,
        release: Some(rel_w),
        _lock: lock,
    }
}

/// Run the whole plan (mount_all, pivot, finish) in the container process.
pub fn run_plan(plan: &RootfsPlan) -> Result<(), String> {
    mount_and_pivot(plan)?;
    plan.finish().map_err(|e| e.describe(plan).to_string())
}

/// The plan's mounts and the root switch, without `finish` (in the container process).
pub fn mount_and_pivot(plan: &RootfsPlan) -> Result<(), String> {
    plan.mount_all().map_err(|e| e.describe(plan).to_string())?;
    plan.pivot().map_err(|e| e.describe(plan).to_string())
}

/// A new pty master (`/dev/ptmx` of the current root), granted and unlocked.
pub fn open_ptmx() -> Result<i32, String> {
    // SAFETY: a constant C string; grantpt and unlockpt on the fd just opened.
    let m = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    // SAFETY: as above.
    if m < 0 || unsafe { libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 } {
        return Err(format!("ptmx: {}", std::io::Error::last_os_error()));
    }
    Ok(m)
}

/// `(major, minor)` of a device number.
pub fn dev_numbers(rdev: u64) -> (u32, u32) {
    (libc::major(rdev), libc::minor(rdev))
}

/// A C string for test argv.
pub fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}
