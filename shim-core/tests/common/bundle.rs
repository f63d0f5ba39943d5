//! Real OCI bundles for the task tests (included with `#[path]`): one read-only busybox rootfs
//! shared by many bundles, a config.json per container, and what a test checks and removes
//! at its end (cgroups under a parent of its own, mounts under its temp dir, children).
//!
//! Nothing here starts a child process: in a test binary whose exit monitor reaps every
//! child, a `Command::status()` would lose its own child's status to the monitor.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_runtime_core::oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use berth_runtime_core::spec::default_spec;

/// Where Debian's busybox-static lives.
pub fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox-static is not installed (apt-get install -y busybox-static)");
}

const APPLETS: &[&str] = &[
    "sh", "sleep", "true", "false", "kill", "cat", "echo", "test",
];

/// A busybox rootfs at `rootfs`: the mount points the default config needs, /bin/busybox
/// and its applets as symlinks. Call it before any container exists: the copy's descriptor
/// must be closed before a container init could inherit it (ETXTBSY at exec).
pub fn busybox_rootfs(rootfs: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs");
    }
    std::fs::copy(busybox(), rootfs.join("bin/busybox")).expect("copy busybox");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("symlink");
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
        .expect("write /etc/passwd");
}

/// Which namespaces of the default config a container gets.
#[derive(Debug, Clone, Copy)]
pub struct Namespaces {
    /// A pid namespace of its own (else the host's: its init is an ordinary process).
    pub pid: bool,
    /// A network namespace of its own.
    pub net: bool,
}

/// The default config (`berth spec`) on the shared read-only `rootfs`, without a terminal,
/// running `args`, in the cgroup `cgroups_path`.
pub fn config(rootfs: &Path, args: &[&str], cgroups_path: &str, ns: Namespaces) -> Spec {
    let mut spec = default_spec(false);
    if let Some(root) = spec.root_mut() {
        root.set_path(rootfs.to_path_buf());
        root.set_readonly(Some(true));
    }
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(false));
        p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
    }
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(Some(PathBuf::from(cgroups_path)));
        if let Some(list) = linux.namespaces_mut() {
            list.retain(|n| match n.typ() {
                LinuxNamespaceType::Pid => ns.pid,
                LinuxNamespaceType::Network => ns.net,
                _ => true,
            });
        }
    }
    spec
}

/// An exec's process: the container's, running `args`.
pub fn exec_process(spec: &Spec, args: &[&str]) -> Process {
    let mut p = spec.process().clone().expect("the config has a process");
    p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
    p
}

/// Writes `spec` as `<bundle>/config.json` (creating the bundle dir).
pub fn write_bundle(bundle: &Path, spec: &Spec) {
    std::fs::create_dir_all(bundle).expect("mkdir bundle");
    let data = serde_json::to_vec(spec).expect("serialize spec");
    std::fs::write(bundle.join("config.json"), data).expect("write config.json");
}

/// Where each cgroup hierarchy of this host is mounted (v1 controllers, named hierarchies,
/// cgroup2), from /proc/self/mountinfo.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mount_point = pre.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| PathBuf::from(unescape(mount_point)))
        })
        .collect()
}

/// mountinfo's octal escapes (`\040` for a space) undone.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(n) = u8::from_str_radix(s.get(i + 1..i + 4).unwrap_or(""), 8) {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of the cgroup `parent` (a name under each hierarchy's root) in every
/// hierarchy where it exists.
pub fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    cgroup_mounts()
        .into_iter()
        .map(|m| m.join(parent))
        .filter(|d| d.is_dir())
        .collect()
}

/// The cgroups left under `parent` (its descendants, in every hierarchy).
pub fn cgroups_under(parent: &str) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for dir in cgroup_dirs(parent) {
        collect_subdirs(&dir, &mut left);
    }
    left
}

fn collect_subdirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let p = e.path();
            collect_subdirs(&p, out);
            out.push(p);
        }
    }
}

/// Removes the cgroup `parent` from every hierarchy: SIGKILLs what is left in it, then
/// removes its descendants deepest first and itself. Returns what could not be removed.
pub fn remove_cgroups(parent: &str) -> Vec<PathBuf> {
    let dirs = cgroup_dirs(parent);
    for dir in &dirs {
        let mut all = Vec::new();
        collect_subdirs(dir, &mut all);
        all.push(dir.clone());
        for cg in &all {
            if let Ok(procs) = std::fs::read_to_string(cg.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill(2) with plain integers; the pid is in the test's own cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            // A frozen v1 cgroup would keep its killed processes.
            let _ = std::fs::write(cg.join("freezer.state"), "THAWED");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut left = Vec::new();
        for dir in &dirs {
            let mut all = Vec::new();
            collect_subdirs(dir, &mut all);
            all.push(dir.clone());
            // Children come before their parent in `all`.
            for cg in all {
                if std::fs::remove_dir(&cg).is_err() && cg.exists() {
                    left.push(cg);
                }
            }
        }
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The mount points under `dir` in this process' mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4).map(|m| PathBuf::from(unescape(m))))
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Lazily unmounts everything under `dir`, deepest (latest) first.
pub fn unmount_under(dir: &Path) {
    for m in mounts_under(dir).into_iter().rev() {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The pids whose parent is this process (from /proc).
pub fn children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // After the command's closing parenthesis: state, then ppid.
                    let rest = s.get(s.rfind(')')? + 2..)?;
                    rest.split(' ').nth(1)?.parse::<i32>().ok()
                })
                == Some(me)
        })
        .collect()
}
