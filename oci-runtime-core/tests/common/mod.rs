//! Test support shared by the runtime's integration tests and the benches (included with
//! `#[path]`): busybox bundles in temp dirs, unique ids and cleanup guards.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use berth_runtime_core::oci_spec::runtime::Spec;
use berth_runtime_core::spec::default_spec;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique name for this process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temp dir removed (recursively) on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where Debian's busybox-static lives.
pub fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox-static is not installed (apt-get install -y busybox-static)");
}

/// Held (shared) while [`copy_executable`] has a child.
pub static COPYING: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Copies the executable `src` to `dst` with cp(1), in a child process: a file this
/// (multi-threaded) test process held open for writing would be inherited by every container
/// init another test clones meanwhile, and while one of them still holds that fd, executing
/// the copy fails with ETXTBSY (seen in the VM lane, whose emulated cpus widen the window).
/// The cp(1) children are transient children of the test process: a test that compares
/// snapshots of its children takes [`COPYING`] for writing while it lists them.
pub fn copy_executable(src: &Path, dst: &Path) {
    let _copying = COPYING.read().unwrap_or_else(|e| e.into_inner());
    let st = std::process::Command::new("cp")
        .arg(src)
        .arg(dst)
        .status()
        .expect("spawn cp");
    assert!(st.success(), "cp {} {}: {st}", src.display(), dst.display());
}

/// A bundle dir with a busybox rootfs and the default config (terminal off).
pub struct Bundle {
    pub dir: TempDir,
    pub spec: Spec,
}

const APPLETS: &[&str] = &[
    "sh",
    "true",
    "false",
    "echo",
    "cat",
    "ls",
    "id",
    "hostname",
    "sleep",
    "mount",
    "stat",
    "readlink",
    "test",
    "[",
    "grep",
    "wc",
    "env",
    "pwd",
    "touch",
    "mkdir",
    "uname",
    "ps",
    "head",
    "tr",
    "sysctl",
    "date",
    "umask",
    "dmesg",
    "kill",
    "domainname",
    "printf",
    "tty",
    "cut",
    "sed",
    "sort",
    "xargs",
    "rm",
    "ln",
    "seq",
    "tail",
    "uptime",
    "whoami",
    "unshare",
];

impl Bundle {
    pub fn new() -> Self {
        let dir = TempDir::new("berth-bundle");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs");
        }
        copy_executable(&busybox(), &rootfs.join("bin/busybox"));
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("symlink");
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        let mut spec = default_spec(false);
        if let Some(p) = spec.process_mut() {
            p.set_terminal(Some(false));
            p.set_args(Some(vec!["/bin/true".into()]));
        }
        Bundle { dir, spec }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Sets process.args.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        if let Some(p) = self.spec.process_mut() {
            p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        }
        self
    }

    /// Writes config.json from `spec`.
    pub fn write(&self) {
        let data = serde_json::to_vec_pretty(&self.spec).expect("serialize spec");
        std::fs::write(self.path().join("config.json"), data).expect("write config.json");
    }
}
