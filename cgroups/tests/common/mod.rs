//! Helpers shared by the integration tests: unique names, guards that remove every
//! cgroup, process and temporary directory even when a test fails.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_cgroups::{CgroupManager, CgroupPath, Layout};
use oci_spec::runtime::LinuxResources;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `berth-test-<what>-<pid>-<n>`.
pub fn unique(what: &str) -> String {
    format!(
        "berth-test-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A relative cgroup path with a unique test name.
pub fn test_path(what: &str) -> CgroupPath {
    CgroupPath::from_spec(Some(Path::new(&unique(what))), "unused").unwrap()
}

pub fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

pub fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// Owns a manager and the processes put in it; on drop kills them, thaws, and
/// removes the cgroup in every hierarchy.
pub struct Guard {
    pub cg: CgroupManager,
    pub children: Vec<Child>,
}

impl Guard {
    pub fn new(cg: CgroupManager) -> Self {
        Self {
            cg,
            children: Vec::new(),
        }
    }

    pub fn dir(&self, controllers: &str) -> PathBuf {
        self.cg
            .paths()
            .into_iter()
            .find(|(c, _)| c.split(',').any(|c| c == controllers))
            .map(|(_, p)| p.to_path_buf())
            .unwrap_or_else(|| panic!("no hierarchy with {controllers}"))
    }

    /// Spawns `sh -c script` (stdin, stdout and stderr piped), puts it in the cgroup,
    /// then lets it go on by writing a line to its stdin (scripts start with `read _`).
    pub fn spawn_in(&mut self, script: &str) -> usize {
        let mut child = Command::new("/bin/sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.cg.add_process(child.id() as i32).unwrap();
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    /// Runs `sh -c script` in the cgroup (as [`Guard::spawn_in`]) to its end and returns
    /// what it printed.
    pub fn output_in(&mut self, script: &str) -> String {
        let i = self.spawn_in(script);
        let mut out = String::new();
        let child = &mut self.children[i];
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child.wait().unwrap();
        out
    }

    pub fn pid(&self, i: usize) -> i32 {
        self.children[i].id() as i32
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.cg.thaw();
        for c in &mut self.children {
            let _ = c.kill();
        }
        let _ = self.cg.kill_all();
        for c in &mut self.children {
            let _ = c.wait();
        }
        if let Err(e) = self.cg.remove(Duration::from_secs(10)) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// Creates a cgroup at a unique relative path on the detected host layout.
pub fn create(what: &str, r: Option<&LinuxResources>) -> Guard {
    let layout = Layout::detect().unwrap();
    let (cg, warnings) = CgroupManager::create(&layout, &test_path(what), r).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    Guard::new(cg)
}

/// User + system CPU ticks of a process (fields 14 and 15 of /proc/<pid>/stat).
pub fn cpu_ticks(pid: i32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Waits until `f` holds, or panics after `secs`.
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory removed (recursively) on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        let p = std::env::temp_dir().join(unique(what));
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The `major:minor` of the first disk (not loop, ram or zram) of the host.
pub fn a_disk() -> Option<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram"))
        .collect();
    names.sort();
    let n = names.first()?;
    Some(
        fs::read_to_string(format!("/sys/block/{n}/dev"))
            .ok()?
            .trim()
            .to_string(),
    )
}
