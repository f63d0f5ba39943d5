//! What the CLI's integration tests share: unique names, running a command with its output in
//! files, a busybox rootfs, the test side of a console socket (the runtime's tests' own
//! helpers, `oci-runtime-core/tests/support/console.rs`, included by path), and the harness
//! of the client tests (`clients`).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub mod clients;
#[path = "../../../oci-runtime-core/tests/support/console.rs"]
pub mod console;

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");
pub const BUSYBOX: &str = "/bin/busybox";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `prefix-<our pid>-<n>`, a new `n` on every call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A fresh directory under the system's temp dir, `berth-<tag>-<pid>-<n>`, removed when
/// dropped (also when the test fails) after unmounting whatever is mounted below it. It
/// derefs to its path.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(&format!("berth-{tag}")));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {p:?}: {e}"));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        clients::unmount_under(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Command output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `berth --root ROOT args...` with stdin from /dev/null.
pub fn berth_cmd(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BERTH);
    c.arg("--root").arg(root).args(args);
    c.stdin(Stdio::null());
    c
}

/// Runs `cmd` to completion with stdout and stderr in files under `dir`, not pipes: a
/// container started by `create` or `run -d` inherits them (as with runc) and would keep a
/// pipe open long after berth exited.
pub fn run_to_files(mut cmd: Command, dir: &Path) -> Output {
    let n = unique("out");
    let (o, e) = (dir.join(format!("{n}.out")), dir.join(format!("{n}.err")));
    let status = cmd
        .stdout(std::fs::File::create(&o).expect("stdout file"))
        .stderr(std::fs::File::create(&e).expect("stderr file"))
        .status()
        .expect("spawn");
    let out = Output {
        status,
        stdout: std::fs::read(&o).unwrap_or_default(),
        stderr: std::fs::read(&e).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(o);
    let _ = std::fs::remove_file(e);
    out
}

/// Whether this host is pure cgroup v2 (the VM lane's `v2` boot, most distributions).
pub fn pure_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Gives a config.json a cgroup namespace unless it has one (berth spec has one on a pure
/// v2 host, as runc spec does).
pub fn set_cgroup_ns(config: &mut serde_json::Value) {
    if let Some(list) = config["linux"]["namespaces"].as_array_mut()
        && !list.iter().any(|n| n["type"] == "cgroup")
    {
        list.push(serde_json::json!({"type": "cgroup"}));
    }
}

/// Reads the JSON file at `path`, lets `f` change it and writes it back.
pub fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path:?}: {e}")),
    )
    .unwrap_or_else(|e| panic!("parse {path:?}: {e}"));
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).expect("json"))
        .unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

/// Copies the executable `src` to `dst` with cp(1), in a child process.
///
/// A test process is multi-threaded: while one test holds a file open for writing, every
/// child another test forks holds that fd too until it execs, and executing the file in that
/// moment fails with ETXTBSY (seen: rootless tests running their copy of berth). The fd of a
/// cp(1) child is never inherited by anyone.
pub fn copy_executable(src: &Path, dst: &Path) {
    let st = Command::new("cp")
        .arg(src)
        .arg(dst)
        .stdin(Stdio::null())
        .status()
        .expect("spawn cp");
    assert!(st.success(), "cp {} {}: {st}", src.display(), dst.display());
}

/// A rootfs at `rootfs`: the usual directories, [`BUSYBOX`] as /bin/busybox and a symlink to
/// it for each of `applets`.
pub fn busybox_rootfs(rootfs: &Path, applets: &[&str]) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs");
    }
    copy_executable(Path::new(BUSYBOX), &rootfs.join("bin/busybox"));
    for a in applets {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("symlink");
    }
}
