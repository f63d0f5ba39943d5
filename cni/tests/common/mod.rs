//! Helpers shared by the tests: scratch directories removed on drop, config files, fake
//! plugins (shell scripts), tool checks that print `SKIP:` (or fail under `CI`).

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static N: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the temp dir with `conf/`, `bin/`, `cache/`, `log/`; removed
/// on drop.
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    pub fn new() -> Self {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("berth-cni-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for d in ["conf", "bin", "cache", "log"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        Scratch { root }
    }
    pub fn conf(&self) -> PathBuf {
        self.root.join("conf")
    }
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("log")
    }
    /// Writes `conf/<name>`.
    pub fn write_conf(&self, name: &str, text: &str) -> PathBuf {
        let p = self.conf().join(name);
        fs::write(&p, text).unwrap();
        p
    }
    /// Writes an executable `bin/<name>` running `body` under /bin/sh.
    ///
    /// The text goes to a side file that cp(1) copies into place: while this multi-threaded
    /// process held the plugin open for writing, a child another test forks would share that
    /// fd until its exec, and running the plugin then fails with ETXTBSY.
    pub fn fake_plugin(&self, name: &str, body: &str) {
        let p = self.bin().join(name);
        let text = self.root.join(format!("{name}.text"));
        fs::write(&text, format!("#!/bin/sh\n{body}\n")).unwrap();
        let st = Command::new("cp").arg(&text).arg(&p).status().unwrap();
        assert!(st.success(), "cp {} {}: {st}", text.display(), p.display());
        fs::remove_file(&text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    /// Files left under the cache dir (recursively).
    pub fn cache_files(&self) -> Vec<PathBuf> {
        files_under(&self.cache())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Prints `SKIP: why` and returns false, or panics under `CI`.
pub fn skip(why: &str) -> bool {
    assert!(std::env::var_os("CI").is_none(), "{why}");
    println!("SKIP: {why}");
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() == 0 };
    root || skip("needs root")
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
        || skip(&format!("{tool} not found"))
}
