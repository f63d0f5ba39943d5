//! Rootless berth for real: a user created for the test (useradd, removed afterwards) runs
//! `berth spec --rootless`, `berth run` and `berth exec` itself, with no cgroup permissions,
//! and what its containers see is compared with runc run by the same user on the same bundle.
//! Also, as root: the console handed to a non-root process.user, and bind sources only root
//! can reach in a container with a user namespace.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::console::{accept_master, read_master};
use common::{
    BERTH, TempDir, busybox_rootfs, copy_executable, edit_json, run_to_files, text, unique,
};
use serde_json::{Value, json};

const APPLETS: &[&str] = &[
    "sh", "id", "cat", "sleep", "ls", "stat", "hostname", "grep", "echo", "true",
];

/// The paths of the helpers runc uses for maps of more than the caller's own id.
const NEWUIDMAP: &str = "/usr/bin/newuidmap";

/// Whether the test can run here: it must be root (to create users and chown).
fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the rootless tests need root"
    );
    eprintln!("SKIP: not root");
    false
}

/// A user made with useradd for one test; userdel'ed (with its subordinate ids) on drop.
struct User {
    name: String,
    uid: u32,
    gid: u32,
}

impl User {
    fn create() -> User {
        // useradd: at most 32 characters, a lowercase letter first.
        let name = unique("brl").replace('-', "x");
        let mut last = String::new();
        // useradd fails while another holds the lock on /etc/passwd (tests run in parallel).
        for _ in 0..50 {
            let out = Command::new("useradd")
                .args(["--no-create-home", "--user-group", "--shell", "/bin/false"])
                .arg(&name)
                .output()
                .expect("spawn useradd");
            if out.status.success() {
                let id = |flag: &str| -> u32 {
                    let out = Command::new("id").args([flag, &name]).output().expect("id");
                    text(&out.stdout).trim().parse().expect("numeric id")
                };
                return User {
                    uid: id("-u"),
                    gid: id("-g"),
                    name,
                };
            }
            last = text(&out.stderr);
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("useradd {name}: {last}");
    }
}

impl Drop for User {
    fn drop(&mut self) {
        for _ in 0..50 {
            let ok = Command::new("userdel")
                .arg(&self.name)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("warning: userdel {} failed", self.name);
    }
}

/// A directory the user owns with a busybox bundle for berth and one for runc (same rootfs),
/// a copy of the berth binary the user can run, and its `$XDG_RUNTIME_DIR`. On drop, the
/// containers still there are force-deleted (as the user) and the directory removed.
struct World {
    dir: TempDir,
    berth: PathBuf,
    bundle: PathBuf,
    runc_bundle: PathBuf,
    xdg: PathBuf,
    ids: Vec<String>,
    runc_ids: Vec<String>,
    // Dropped last: userdel only once its processes are gone.
    user: User,
}

impl World {
    fn new() -> World {
        let user = User::create();
        let dir = TempDir::new("rootless-test");
        let bundle = dir.join("bundle");
        let runc_bundle = dir.join("runc-bundle");
        let xdg = dir.join("xdg");
        busybox_rootfs(&bundle.join("rootfs"), APPLETS);
        for d in [&runc_bundle, &xdg, &dir.join("bin")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        // The target directory may be out of the user's reach: run a copy.
        let berth = dir.join("bin/berth");
        copy_executable(Path::new(BERTH), &berth);
        let w = World {
            dir,
            berth,
            bundle,
            runc_bundle,
            xdg,
            ids: Vec::new(),
            runc_ids: Vec::new(),
            user,
        };
        chown_tree(&w.dir, w.user.uid, w.user.gid);
        for (p, mode) in [(w.dir.path(), 0o755), (&w.xdg, 0o700), (&w.berth, 0o755)] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        w
    }

    /// `prog args...` as the user (uid, gid, no supplementary groups), in `cwd`, with a
    /// minimal environment and its own `$XDG_RUNTIME_DIR`; stdin from /dev/null.
    fn as_user(&self, prog: &Path, args: &[&str], cwd: &Path) -> Command {
        let mut c = Command::new(prog);
        c.args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &self.dir)
            .env("USER", &self.user.name)
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .uid(self.user.uid)
            .gid(self.user.gid)
            .stdin(Stdio::null());
        c
    }

    /// berth as the user, in the berth bundle, default `--root`.
    fn berth(&self, args: &[&str]) -> Output {
        run_to_files(self.as_user(&self.berth, args, &self.bundle), &self.dir)
    }

    /// runc as the user, in the runc bundle, default `--root`.
    fn runc(&self, args: &[&str]) -> Output {
        run_to_files(
            self.as_user(Path::new("runc"), args, &self.runc_bundle),
            &self.dir,
        )
    }

    fn id(&mut self) -> String {
        let id = unique("rl");
        self.ids.push(id.clone());
        id
    }

    fn runc_id(&mut self) -> String {
        let id = unique("rl-runc");
        self.runc_ids.push(id.clone());
        id
    }

    /// `run` of the bundle by berth and by runc, each under a fresh id: berth's id, and
    /// what berth and runc did.
    fn run_both(&mut self) -> (String, Output, Output) {
        let id = self.id();
        let ours = self.berth(&["run", &id]);
        let rid = self.runc_id();
        (id, ours, self.runc(&["run", &rid]))
    }

    /// `spec --rootless` by the user, made non-interactive with `args`, and the same config
    /// for runc (its rootfs given by absolute path: runc refuses a symlinked one).
    fn rootless_specs(&self, args: &[&str]) {
        let out = self.berth(&["spec", "--rootless"]);
        assert!(out.status.success(), "berth spec: {}", text(&out.stderr));
        let cfg = self.bundle.join("config.json");
        let args = json!(args);
        edit_json(&cfg, |c| {
            c["process"]["terminal"] = Value::Bool(false);
            c["process"]["args"] = args;
            c["hostname"] = Value::from("rootless");
        });
        self.copy_config_to_runc();
    }

    fn edit(&self, f: impl Fn(&mut Value)) {
        edit_json(&self.bundle.join("config.json"), f);
        self.copy_config_to_runc();
    }

    fn copy_config_to_runc(&self) {
        let mut cfg: Value = serde_json::from_str(
            &std::fs::read_to_string(self.bundle.join("config.json")).expect("read config"),
        )
        .expect("parse config");
        cfg["root"]["path"] = Value::from(self.bundle.join("rootfs").to_str().expect("utf8"));
        let to = self.runc_bundle.join("config.json");
        std::fs::write(&to, serde_json::to_string_pretty(&cfg).expect("json")).expect("write");
        std::os::unix::fs::chown(&to, Some(self.user.uid), Some(self.user.gid)).expect("chown");
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.berth(&["delete", "--force", id]);
        }
        for id in &self.runc_ids {
            let _ = self.runc(&["delete", "--force", id]);
        }
    }
}

/// Runs `cmd` (which hands a pty master to `listener`) and returns what the console shows,
/// failing the test if the command fails.
fn console_of(mut cmd: Command, listener: &UnixListener, what: &str) -> String {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let master = accept_master(listener);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{what}: {}", text(&out.stderr));
    read_master(&master, Duration::from_secs(20))
}

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).expect("chown");
    if std::fs::symlink_metadata(p).expect("stat").is_dir() {
        for e in std::fs::read_dir(p).expect("readdir") {
            chown_tree(&e.expect("entry").path(), uid, gid);
        }
    }
}

/// What a container prints about its identity in its user namespace.
const WHO: &str = "id; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; hostname";

#[test]
fn spec_rootless_then_run_as_an_unprivileged_user_matches_runc() {
    if !is_root() {
        return;
    }
    let mut w = World::new();
    // The same starter config as runc's (what differs: ociVersion, the hostname, the order
    // of the capabilities).
    let out = w.berth(&["spec", "--rootless"]);
    assert!(out.status.success(), "berth spec: {}", text(&out.stderr));
    let out = w.runc(&["spec", "--rootless"]);
    assert!(out.status.success(), "runc spec: {}", text(&out.stderr));
    let read = |p: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(p.join("config.json")).expect("read"))
            .expect("parse")
    };
    let (ours, runcs) = (read(&w.bundle), read(&w.runc_bundle));
    assert_eq!(ours["linux"], runcs["linux"]);
    assert_eq!(ours["mounts"], runcs["mounts"]);
    let map = &ours["linux"]["uidMappings"][0];
    assert_eq!(map["hostID"], json!(w.user.uid));
    std::fs::remove_file(w.bundle.join("config.json")).expect("rm");
    std::fs::remove_file(w.runc_bundle.join("config.json")).expect("rm");

    w.rootless_specs(&["sh", "-c", WHO]);
    let (_, ours, theirs) = w.run_both();
    assert!(theirs.status.success(), "runc: {}", text(&theirs.stderr));
    assert!(ours.status.success(), "berth: {}", text(&ours.stderr));
    // No cgroup could be made and none was asked for: no word about it, as with runc.
    assert_eq!(text(&ours.stderr), "");
    assert_eq!(text(&ours.stdout), text(&theirs.stdout));
    let seen = text(&ours.stdout);
    assert!(seen.starts_with("uid=0 gid=0"), "{seen}");
    assert!(
        seen.contains(&format!(" 0 {:>10} {:>10}\n", w.user.uid, 1)),
        "{seen}"
    );
    assert!(seen.contains("deny\nrootless\n"), "{seen}");

    // The state went to $XDG_RUNTIME_DIR/berth, made 01700 as runc makes its own, and the
    // container is gone from it.
    let root = w.xdg.join("berth");
    let meta = std::fs::metadata(&root).expect("$XDG_RUNTIME_DIR/berth");
    assert_eq!(meta.mode() & 0o7777, 0o1700);
    assert_eq!((meta.uid(), meta.gid()), (w.user.uid, w.user.gid));
    assert_eq!(std::fs::read_dir(&root).expect("readdir").count(), 0);
}

#[test]
fn rootless_slow_path_sees_what_the_fast_path_sees() {
    if !is_root() {
        return;
    }
    let mut w = World::new();
    w.rootless_specs(&["sh", "-c", WHO]);
    let id = w.id();
    let fast = w.berth(&["run", &id]);
    assert!(fast.status.success(), "berth: {}", text(&fast.stderr));
    // A time namespace (runc 1.1 has none): an intermediate child makes the user namespace
    // and waits, non-dumpable but for that moment, for the maps.
    w.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().expect("namespaces");
        ns.push(json!({"type": "time"}));
    });
    let id = w.id();
    let slow = w.berth(&["run", &id]);
    assert!(slow.status.success(), "berth: {}", text(&slow.stderr));
    assert_eq!(text(&slow.stdout), text(&fast.stdout));
}

#[test]
fn exec_into_a_rootless_container_as_the_same_user_matches_runc() {
    if !is_root() {
        return;
    }
    let mut w = World::new();
    w.rootless_specs(&["sleep", "1000"]);
    let id = w.id();
    let rid = w.runc_id();
    let out = w.berth(&["run", "-d", &id]);
    assert!(out.status.success(), "berth run -d: {}", text(&out.stderr));
    let out = w.runc(&["run", "-d", &rid]);
    assert!(out.status.success(), "runc run -d: {}", text(&out.stderr));

    let state: Value = serde_json::from_slice(&w.berth(&["state", &id]).stdout).expect("state");
    assert_eq!(state["status"], "running");

    let ours = w.berth(&["exec", &id, "sh", "-c", WHO]);
    let theirs = w.runc(&["exec", &rid, "sh", "-c", WHO]);
    assert!(
        theirs.status.success(),
        "runc exec: {}",
        text(&theirs.stderr)
    );
    assert!(ours.status.success(), "berth exec: {}", text(&ours.stderr));
    assert_eq!(text(&ours.stdout), text(&theirs.stdout));
    assert!(
        text(&ours.stdout).contains("deny\n"),
        "{}",
        text(&ours.stdout)
    );
    // The exec'd process shares the container's pid namespace.
    let ours = w.berth(&["exec", &id, "cat", "/proc/1/cmdline"]);
    assert_eq!(text(&ours.stdout), "sleep\u{0}1000\u{0}");

    let out = w.berth(&["kill", &id, "KILL"]);
    assert!(out.status.success(), "kill: {}", text(&out.stderr));
    let out = w.berth(&["delete", "--force", &id]);
    assert!(out.status.success(), "delete: {}", text(&out.stderr));
}

#[test]
fn rootless_additional_gids_are_refused_and_nothing_is_left_behind() {
    if !is_root() {
        return;
    }
    let mut w = World::new();
    w.rootless_specs(&["true"]);
    w.edit(|c| c["process"]["user"]["additionalGids"] = json!([0]));
    let (id, ours, theirs) = w.run_both();
    assert!(!theirs.status.success(), "runc ran it");
    assert!(
        text(&theirs.stderr).contains("cannot set any additional groups in a rootless container"),
        "{}",
        text(&theirs.stderr)
    );
    assert!(!ours.status.success(), "berth ran it");
    // Refused before anything runs: the config is at fault, not a setgroups(2) of the init.
    let err = text(&ours.stderr);
    assert!(
        err.contains("process.user.additionalGids") && err.contains("rootless"),
        "{err}"
    );
    assert!(!w.xdg.join("berth").join(&id).exists());
}

#[test]
fn rootless_without_cgroup_permission_runs_unless_limits_are_asked_like_runc() {
    if !is_root() {
        return;
    }
    let mut w = World::new();
    w.rootless_specs(&["true"]);
    // Device rules only: nothing a rootless container can't go without.
    w.edit(|c| {
        c["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    });
    let (_, ours, theirs) = w.run_both();
    assert!(theirs.status.success(), "runc: {}", text(&theirs.stderr));
    assert!(ours.status.success(), "berth: {}", text(&ours.stderr));
    assert_eq!(text(&ours.stderr), "");

    // A limit needs the cgroup it can't have.
    w.edit(|c| c["linux"]["resources"] = json!({"pids": {"limit": 100}}));
    let (id, ours, theirs) = w.run_both();
    assert!(!theirs.status.success(), "runc ran it");
    assert!(!ours.status.success(), "berth ran it");
    assert!(
        text(&ours.stderr).contains("cgroup"),
        "{}",
        text(&ours.stderr)
    );
    assert!(!w.xdg.join("berth").join(&id).exists());
}

#[test]
fn rootless_maps_of_subordinate_ids_go_through_newuidmap_like_runc() {
    if !is_root() {
        return;
    }
    if !Path::new(NEWUIDMAP).exists() {
        assert!(std::env::var_os("CI").is_none(), "{NEWUIDMAP} is missing");
        eprintln!("SKIP: {NEWUIDMAP} missing (apt-get install uidmap)");
        return;
    }
    let mut w = World::new();
    // useradd gives the user subordinate ids where /etc/subuid exists; make sure it has some.
    let sub = |file: &str| -> Option<u32> {
        let text = std::fs::read_to_string(file).ok()?;
        let line = text
            .lines()
            .find(|l| l.split(':').next() == Some(&w.user.name))?;
        line.split(':').nth(1)?.parse().ok()
    };
    if sub("/etc/subuid").is_none() || sub("/etc/subgid").is_none() {
        // usermod refuses to add to files that are not there (a host without any).
        for f in ["/etc/subuid", "/etc/subgid"] {
            if !Path::new(f).exists() {
                std::fs::write(f, "").expect("create an empty subordinate id file");
            }
        }
        let out = Command::new("usermod")
            .args([
                "--add-subuids",
                "300000-365535",
                "--add-subgids",
                "300000-365535",
            ])
            .arg(&w.user.name)
            .output()
            .expect("usermod");
        assert!(out.status.success(), "usermod: {}", text(&out.stderr));
    }
    let (subuid, subgid) = (
        sub("/etc/subuid").expect("subuid"),
        sub("/etc/subgid").unwrap(),
    );
    w.rootless_specs(&["sh", "-c", WHO]);
    let (uid, gid) = (w.user.uid, w.user.gid);
    w.edit(|c| {
        c["linux"]["uidMappings"] = json!([
            {"containerID": 0, "hostID": uid, "size": 1},
            {"containerID": 1, "hostID": subuid, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([
            {"containerID": 0, "hostID": gid, "size": 1},
            {"containerID": 1, "hostID": subgid, "size": 65536}]);
    });
    let (_, ours, theirs) = w.run_both();
    assert!(theirs.status.success(), "runc: {}", text(&theirs.stderr));
    assert!(ours.status.success(), "berth: {}", text(&ours.stderr));
    assert_eq!(text(&ours.stdout), text(&theirs.stdout));
    assert!(text(&ours.stdout).contains(&format!("{subuid:>10}")));

    // A process user from the subordinate range gets its terminal (berth as that user
    // chowns the pty it opened as the container's root).
    w.edit(|c| {
        c["process"]["terminal"] = Value::Bool(true);
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["args"] = json!(["stat", "-L", "-c", "%u", "/proc/self/fd/0"]);
    });
    let sock = w.dir.join(unique("console"));
    let listener = UnixListener::bind(&sock).expect("bind");
    std::os::unix::fs::chown(&sock, Some(w.user.uid), None).expect("chown socket");
    let id = w.id();
    let sock_arg = sock.to_str().expect("utf8").to_string();
    let cmd = w.as_user(
        &w.berth,
        &["run", "--console-socket", &sock_arg, &id],
        &w.bundle,
    );
    let seen = console_of(cmd, &listener, "berth");
    assert_eq!(seen.trim(), "1000");
}

/// A root-run bundle (for the tests that need no unprivileged user).
struct RootWorld {
    dir: TempDir,
    bundle: PathBuf,
    root: PathBuf,
    runc_root: PathBuf,
    ids: Vec<String>,
}

impl RootWorld {
    fn new(args: &[&str]) -> RootWorld {
        let dir = TempDir::new("userns-test");
        let bundle = dir.join("bundle");
        busybox_rootfs(&bundle.join("rootfs"), APPLETS);
        let w = RootWorld {
            root: dir.join("root"),
            runc_root: dir.join("runc-root"),
            bundle,
            dir,
            ids: Vec::new(),
        };
        let out = run_to_files(w.cmd(BERTH, &["spec"]), &w.dir);
        assert!(out.status.success(), "spec: {}", text(&out.stderr));
        let args = json!(args);
        edit_json(&w.bundle.join("config.json"), |c| {
            c["process"]["terminal"] = Value::Bool(false);
            c["process"]["args"] = args;
        });
        w
    }

    /// `prog --root <its root> args...` in the bundle.
    fn cmd(&self, prog: &str, args: &[&str]) -> Command {
        let root = if prog == "runc" {
            &self.runc_root
        } else {
            &self.root
        };
        let mut c = Command::new(prog);
        c.arg("--root").arg(root).args(args);
        c.current_dir(&self.bundle).stdin(Stdio::null());
        c
    }

    fn run(&mut self, prog: &str, extra: &[&str]) -> Output {
        let id = unique("uns");
        self.ids.push(id.clone());
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.push(&id);
        run_to_files(self.cmd(prog, &args), &self.dir)
    }
}

impl Drop for RootWorld {
    fn drop(&mut self) {
        for id in &self.ids {
            for prog in [BERTH, "runc"] {
                let _ = self
                    .cmd(prog, &["delete", "--force", id])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

#[test]
fn console_belongs_to_a_non_root_process_user_in_run_and_exec_like_runc() {
    if !is_root() {
        return;
    }
    let mut w = RootWorld::new(&["sh", "-c", "stat -L -c '%u %g' /proc/self/fd/0"]);
    edit_json(&w.bundle.join("config.json"), |c| {
        c["process"]["terminal"] = Value::Bool(true);
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    });
    let mut seen = Vec::new();
    for prog in [BERTH, "runc"] {
        let sock = w.dir.join(unique("console"));
        let listener = UnixListener::bind(&sock).expect("bind");
        let id = unique("tty");
        w.ids.push(id.clone());
        let cmd = w.cmd(
            prog,
            // runc takes a console socket only with -d.
            &[
                "run",
                "-d",
                "--console-socket",
                sock.to_str().expect("utf8"),
                &id,
            ],
        );
        seen.push(console_of(cmd, &listener, prog));
    }
    // The pty's group is devpts' gid=5 (tty): only the owner changes, as with runc.
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].trim(), "1000 5");

    // exec -t as another user of a running container.
    edit_json(&w.bundle.join("config.json"), |c| {
        c["process"]["terminal"] = Value::Bool(false);
        c["process"]["args"] = json!(["sleep", "1000"]);
    });
    let out = w.run(BERTH, &["-d"]);
    assert!(out.status.success(), "run -d: {}", text(&out.stderr));
    let id = w.ids.last().expect("id").clone();
    let sock = w.dir.join(unique("console"));
    let listener = UnixListener::bind(&sock).expect("bind");
    let sock_arg = sock.to_str().expect("utf8");
    let exec_args = [
        "exec",
        "-t",
        "--user",
        "1234:1234",
        "--console-socket",
        sock_arg,
        &id,
        "stat",
        "-L",
        "-c",
        "%u",
        "/proc/self/fd/0",
    ];
    let seen = console_of(w.cmd(BERTH, &exec_args), &listener, "exec");
    assert_eq!(seen.trim(), "1234");
}

/// A config with a user namespace mapping root to 100000 and a bind mount of a directory
/// below a 0700 one (only the host's root gets through).
fn userns_bind_world(extra_ns: &[&str]) -> (RootWorld, PathBuf) {
    let w = RootWorld::new(&["sh", "-c", "id; cat /mnt/f; ls /mnt"]);
    chown_tree(&w.bundle.join("rootfs"), 100000, 100000);
    let secret = w.dir.join("secret");
    std::fs::create_dir_all(secret.join("inner")).expect("mkdir");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(secret.join("inner/f"), "only root gets here\n").expect("write");
    std::fs::create_dir_all(w.bundle.join("rootfs/mnt")).expect("mkdir");
    let src = secret.join("inner");
    let src_str = src.to_str().expect("utf8").to_string();
    let extra: Vec<Value> = extra_ns.iter().map(|t| json!({"type": t})).collect();
    edit_json(&w.bundle.join("config.json"), |c| {
        let ns = c["linux"]["namespaces"].as_array_mut().expect("namespaces");
        ns.push(json!({"type": "user"}));
        ns.extend(extra.iter().cloned());
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
        c["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/mnt", "type": "bind", "source": src_str,
            "options": ["rbind", "ro"]}));
    });
    (w, src)
}

#[test]
fn bind_source_only_the_runtime_can_reach_in_a_user_namespace_like_runc() {
    if !is_root() {
        return;
    }
    let expected = "uid=0 gid=0\nonly root gets here\nf\n";
    let (mut w, _src) = userns_bind_world(&[]);
    let theirs = w.run("runc", &[]);
    let ours = w.run(BERTH, &[]);
    assert!(theirs.status.success(), "runc: {}", text(&theirs.stderr));
    assert!(ours.status.success(), "berth: {}", text(&ours.stderr));
    assert_eq!(text(&ours.stdout), text(&theirs.stdout));
    assert_eq!(text(&ours.stdout), expected);
    // The slow path (a time namespace, which runc 1.1 lacks: an intermediate forks the init,
    // whose request may reach berth before the intermediate's report of its pid).
    let (mut w, _src) = userns_bind_world(&["time"]);
    let ours = w.run(BERTH, &[]);
    assert!(ours.status.success(), "berth: {}", text(&ours.stderr));
    assert_eq!(text(&ours.stdout), expected);
}

#[test]
fn bind_mount_from_the_runtime_keeps_the_host_mounts_locked_flags() {
    if !is_root() {
        return;
    }
    // The container's root (CAP_SYS_ADMIN in its user namespace) can't make a bind of a
    // read-only host mount writable: the source is opened in the container's mount
    // namespace, whose copies of the host's mounts the kernel locked.
    let (mut w, src) = userns_bind_world(&[]);
    edit_json(&w.bundle.join("config.json"), |c| {
        c["process"]["args"] = json!([
            "sh",
            "-c",
            "mount -o remount,bind,rw /mnt 2>/dev/null; grep -c ' /mnt ro,' /proc/self/mountinfo"
        ]);
        let mounts = c["mounts"].as_array_mut().expect("mounts");
        mounts.last_mut().expect("the bind")["options"] = json!(["rbind"]);
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_SYS_ADMIN"], "effective": ["CAP_SYS_ADMIN"],
            "permitted": ["CAP_SYS_ADMIN"]});
    });
    std::os::unix::fs::symlink("busybox", w.bundle.join("rootfs/bin/mount")).expect("ln");
    // A read-only tmpfs on the source, in a private mount namespace of a helper that stays
    // until the container ran.
    let script = format!(
        "mount -t tmpfs -o ro tmpfs {0} && exec {1} --root {2} run {3}",
        src.display(),
        BERTH,
        w.root.display(),
        "ro-src"
    );
    w.ids.push("ro-src".into());
    let out = run_to_files(
        {
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c", &script])
                .current_dir(&w.bundle)
                .stdin(Stdio::null());
            c
        },
        &w.dir,
    );
    assert!(out.status.success(), "berth: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "1");
}

#[test]
fn rootless_flag_ignores_cgroup_permission_errors_as_runc_does() {
    if !is_root() {
        return;
    }
    let w = RootWorld::new(&["true"]);
    // The cgroup hierarchies read-only in a private mount namespace (the host's stay as
    // they are): creating a cgroup fails with EROFS, even for root (systemd's cpu -> cpu,cpuacct
    // symlinks are skipped: their target is remounted). Runs with the default
    // config's device rules (which a rootless runtime does without) and no limits.
    let mut results = Vec::new();
    for prog in [BERTH, "runc"] {
        let root = if prog == "runc" {
            &w.runc_root
        } else {
            &w.root
        };
        let id = unique("ro-cg");
        let script = format!(
            "for d in /sys/fs/cgroup/*/; do
               [ -L \"${{d%/}}\" ] && continue
               mount -o remount,bind,ro \"$d\" || exit 99
             done
             for flag in auto true false; do
               {prog} --root {root} --rootless $flag run {id}-$flag >/dev/null 2>&1
               echo $flag=$?
               {prog} --root {root} delete --force {id}-$flag >/dev/null 2>&1
             done",
            root = root.display()
        );
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .current_dir(&w.bundle)
            .stdin(Stdio::null());
        let out = run_to_files(c, &w.dir);
        assert!(out.status.success(), "{prog}: {}", text(&out.stderr));
        results.push(text(&out.stdout));
    }
    assert_eq!(results[0], results[1], "berth, then runc");
    assert_eq!(results[0], "auto=1\ntrue=0\nfalse=1\n");
}
