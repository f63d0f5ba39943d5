//! A rootless container with limits in a cgroup v2 subtree delegated to its user, as systemd
//! delegates `user@<uid>.service` (the kernel's cgroup-v2 "Delegation" rules): the subtree
//! and its `cgroup.procs`, `cgroup.subtree_control` and `cgroup.threads` owned by the user,
//! the user's own processes in a leaf of it. berth, run by that user, must create the
//! container's cgroup there, apply the limits and move the container in; crun, run the same
//! way on the same config, must see the same values.
//!
//! Runs for real in the VM lane's pure v2 boot; elsewhere it prints `SKIP:` (with
//! `BERTH_VM_LAYOUT=v2` a host that is not pure v2 is a failure).

mod common;

use std::io::Write;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// An id no account of the VM or of a CI host uses.
const UID: u32 = 47_111;

fn applies() -> bool {
    let pure_v2 = pure_v2();
    if pure_v2 {
        return true;
    }
    assert!(
        std::env::var("BERTH_VM_LAYOUT").as_deref() != Ok("v2"),
        "the VM lane's v2 boot is not a pure v2 host"
    );
    eprintln!("SKIP: needs a pure cgroup v2 host");
    false
}

/// The delegated subtree; removed (with what the runtimes left in it) on drop.
struct Delegated(PathBuf);

impl Delegated {
    fn new() -> Self {
        let d = PathBuf::from("/sys/fs/cgroup").join(unique("berth-deleg"));
        std::fs::create_dir(&d).expect("mkdir the delegated cgroup");
        let me = Delegated(d);
        std::fs::create_dir(me.0.join("launch")).expect("mkdir launch");
        for p in [
            me.0.clone(),
            me.0.join("cgroup.procs"),
            me.0.join("cgroup.subtree_control"),
            me.0.join("cgroup.threads"),
            me.0.join("launch"),
            me.0.join("launch/cgroup.procs"),
            me.0.join("launch/cgroup.threads"),
            me.0.join("launch/cgroup.subtree_control"),
        ] {
            chown(&p, Some(UID), Some(UID)).unwrap_or_else(|e| panic!("chown {p:?}: {e}"));
        }
        me
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut stack = vec![self.0.clone()];
        while let Some(d) = stack.pop() {
            if let Ok(rd) = std::fs::read_dir(&d) {
                stack.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            dirs.push(d);
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::write(d.join("cgroup.kill"), "1");
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// A rootless bundle owned by [`UID`]: the container's root is the user, its cgroup
/// `cgroup` (absolute), with a cgroup namespace so it sees its own cgroup at /sys/fs/cgroup.
fn bundle(dir: &Path, cgroup: &str) {
    busybox_rootfs(&dir.join("rootfs"), &["sh", "cat", "id"]);
    let out = berth_cmd(dir, &["spec", "--rootless", "-b"])
        .arg(dir)
        .output()
        .expect("berth spec");
    assert!(out.status.success(), "berth spec: {}", text(&out.stderr));
    edit_json(&dir.join("config.json"), |v| {
        v["process"]["terminal"] = false.into();
        v["process"]["args"] = serde_json::json!([
            "sh",
            "-c",
            "cd /sys/fs/cgroup && echo $(id -u) $(cat memory.max pids.max cpu.max cpu.weight) $(cat /proc/self/cgroup)"
        ]);
        set_cgroup_ns(v);
        let linux = &mut v["linux"];
        linux["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": UID, "size": 1}]);
        linux["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": UID, "size": 1}]);
        linux["cgroupsPath"] = cgroup.into();
        linux["resources"] = serde_json::json!({
            "memory": {"limit": 33554432},
            "pids": {"limit": 20},
            "cpu": {"quota": 20000, "period": 100000, "shares": 512}
        });
    });
    for e in walk(dir) {
        let _ = std::os::unix::fs::lchown(&e, Some(UID), Some(UID));
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir()
            && !out[i].is_symlink()
            && let Ok(rd) = std::fs::read_dir(&out[i])
        {
            out.extend(rd.flatten().map(|e| e.path()));
        }
        i += 1;
    }
    out
}

/// Runs `cmd` as [`UID`] from the delegated subtree's `launch` leaf: the child waits on its
/// stdin until the test (root) has moved it there, then execs the runtime.
fn run_as_user(deleg: &Delegated, program: &str, args: &[&str], scratch: &Path) -> (i32, String) {
    let mut script = String::from("read _ && exec ");
    script.push_str(&clients::sh_quote(program));
    for a in args {
        script.push(' ');
        script.push_str(&clients::sh_quote(a));
    }
    let out = scratch.join(unique("out"));
    let mut child = Command::new("/bin/sh")
        .args(["-c", &script])
        .uid(UID)
        .gid(UID)
        .env_remove("XDG_RUNTIME_DIR")
        .current_dir(scratch)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the user's shell");
    std::fs::write(deleg.0.join("launch/cgroup.procs"), child.id().to_string())
        .expect("move the user's shell into the delegated subtree");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("release the user's shell");
    let st = child.wait().expect("wait");
    let s = std::fs::read_to_string(&out).unwrap_or_default();
    (st.code().unwrap_or(-1), s.trim().to_string())
}

#[test]
fn limits_apply_in_a_delegated_subtree_as_with_crun() {
    if !applies() {
        return;
    }
    let crun = Command::new("crun").arg("--version").output().is_ok();
    let deleg = Delegated::new();
    let name = deleg
        .0
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let tmp = clients::TempDir::new("rootless-v2");
    chown(tmp.path(), Some(UID), Some(UID)).expect("chown scratch");
    let mut seen = Vec::new();
    for rt in ["berth", "crun"] {
        if rt == "crun" && !crun {
            assert!(
                std::env::var_os("BERTH_VM_LAYOUT").is_none(),
                "crun is missing"
            );
            eprintln!("SKIP: crun is not installed; berth's result: {seen:?}");
            continue;
        }
        let dir = tmp.join(rt);
        std::fs::create_dir_all(&dir).expect("bundle dir");
        let id = unique(rt);
        bundle(&dir, &format!("/{name}/{id}"));
        let root = tmp.join(format!("{rt}-root"));
        let dir_s = dir.to_string_lossy().into_owned();
        let root_s = root.to_string_lossy().into_owned();
        let (code, out) = if rt == "berth" {
            run_as_user(
                &deleg,
                BERTH,
                &["--root", &root_s, "run", "-b", &dir_s, &id],
                tmp.path(),
            )
        } else {
            run_as_user(
                &deleg,
                "crun",
                &[
                    "--root",
                    &root_s,
                    "--cgroup-manager=cgroupfs",
                    "run",
                    "-b",
                    &dir_s,
                    &id,
                ],
                tmp.path(),
            )
        };
        assert_eq!(code, 0, "{rt} run as uid {UID}: {out}");
        // The container ran in its own cgroup below the delegated subtree, which it left.
        assert!(!deleg.0.join(&id).exists(), "{rt} left its cgroup behind");
        seen.push(out);
    }
    // uid 0 inside, the limits from inside, the container's cgroup is its root.
    assert_eq!(
        seen[0], "0 33554432 20 20000 100000 20 0::/",
        "berth: {seen:?}"
    );
    if seen.len() == 2 {
        assert_eq!(seen[0], seen[1], "berth and crun differ");
    }
}
