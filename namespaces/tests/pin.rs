//! `pin`/`unpin` against the real kernel: namespaces held by bind mounts, seen from
//! outside with `nsenter`, `readlink` and `/proc/self/mountinfo`. Needs root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_namespaces::{NamespaceError, NamespaceKind, pin, unpin};

static N: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory path under the temp dir (not created); on drop, whatever a test left
/// there is unpinned and removed.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("berth-pin-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = unpin(&self.0.join("pod"));
        let _ = unpin(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{tool} is missing");
        println!("SKIP: {tool} not found");
    }
    ok
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(std::env::var_os("CI").is_none(), "pin tests need root");
        println!("SKIP: not root");
    }
    root
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Mount points in this process's mount namespace.
fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .collect()
}

fn ns_link(p: &str) -> String {
    fs::read_link(p).unwrap().to_string_lossy().into_owned()
}

#[test]
fn pins_fresh_namespaces_and_unpins_them() {
    if !is_root() || !have("nsenter") {
        return;
    }
    let s = Scratch::new();
    let dir = s.0.join("pod");
    let before = ns_link("/proc/thread-self/ns/net");
    let kinds = [
        NamespaceKind::Network,
        NamespaceKind::Ipc,
        NamespaceKind::Uts,
    ];
    let p = pin(&dir, &kinds, Some("pinned-pod")).unwrap();

    // The caller's thread stayed where it was.
    assert_eq!(ns_link("/proc/thread-self/ns/net"), before);
    for k in kinds {
        let f = dir.join(k.proc_name());
        assert_eq!(p.path(k), Some(f.as_path()));
        assert!(mount_points().contains(&f), "{f:?} is not a mount point");
        let host = ns_link(&format!("/proc/self/ns/{}", k.proc_name()));
        let arg = format!("--{}={}", k.proc_name(), f.display());
        let inside = run(Command::new("nsenter").args([
            arg.as_str(),
            "readlink",
            &format!("/proc/self/ns/{}", k.proc_name()),
        ]));
        assert!(
            inside.starts_with(&format!("{}:[", k.proc_name())),
            "{inside}"
        );
        assert_ne!(inside, host, "{k} namespace is the host's");
    }
    let uts = format!("--uts={}", dir.join("uts").display());
    assert_eq!(
        run(Command::new("nsenter").args([uts.as_str(), "hostname"])),
        "pinned-pod"
    );
    let host_name = run(&mut Command::new("hostname"));
    assert_ne!(host_name, "pinned-pod");
    // The new network namespace has nothing but a loopback (down: CNI's loopback brings it up).
    let net = format!("--net={}", dir.join("net").display());
    let links = run(Command::new("nsenter").args([net.as_str(), "ip", "-o", "link"]));
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:"), "{links}");

    // Two pins give two different namespaces.
    let dir2 = s.0.join("other");
    pin(&dir2, &[NamespaceKind::Network], None).unwrap();
    let net2 = format!("--net={}", dir2.join("net").display());
    let a = run(Command::new("nsenter").args([net.as_str(), "readlink", "/proc/self/ns/net"]));
    let b = run(Command::new("nsenter").args([net2.as_str(), "readlink", "/proc/self/ns/net"]));
    assert_ne!(a, b);
    unpin(&dir2).unwrap();

    unpin(&dir).unwrap();
    let mounts = mount_points();
    for k in kinds {
        assert!(!mounts.contains(&dir.join(k.proc_name())));
    }
    assert!(!dir.exists());
    assert!(!dir2.exists());
    // Idempotent.
    unpin(&dir).unwrap();
}

#[test]
fn pins_a_subset() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    let p = pin(&s.0, &[NamespaceKind::Uts], None).unwrap();
    assert_eq!(p.net, None);
    assert_eq!(p.ipc, None);
    assert_eq!(p.uts, Some(s.0.join("uts")));
    assert!(!s.0.join("net").exists());
    unpin(&s.0).unwrap();
    assert!(!s.0.exists());
}

#[test]
fn refuses_kinds_it_cannot_pin_and_leaves_nothing() {
    let s = Scratch::new();
    for k in [
        NamespaceKind::Pid,
        NamespaceKind::Mount,
        NamespaceKind::User,
        NamespaceKind::Cgroup,
        NamespaceKind::Time,
    ] {
        let e = pin(&s.0, &[NamespaceKind::Network, k], None).unwrap_err();
        assert!(
            matches!(e, NamespaceError::PinKind { kind, .. } if kind == k),
            "{e:?}"
        );
        assert!(e.to_string().contains(k.proc_name()), "{e}");
        assert!(!s.0.exists());
    }
    let e = pin(
        &s.0,
        &[NamespaceKind::Network, NamespaceKind::Network],
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let e = pin(&s.0, &[NamespaceKind::Network], Some("h")).unwrap_err();
    assert!(matches!(e, NamespaceError::PinHostnameWithoutUts), "{e:?}");
    let long = "x".repeat(65);
    let e = pin(&s.0, &[NamespaceKind::Uts], Some(&long)).unwrap_err();
    assert!(matches!(e, NamespaceError::Hostname { .. }), "{e:?}");
    let e = pin(&s.0, &[NamespaceKind::Uts], Some("a\0b")).unwrap_err();
    assert!(matches!(e, NamespaceError::Hostname { .. }), "{e:?}");
    assert!(!s.0.exists());
}

#[test]
fn a_directory_that_cannot_be_made_is_a_clear_error() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    fs::create_dir_all(&s.0).unwrap();
    let file = s.0.join("file");
    fs::write(&file, "").unwrap();
    let dir = file.join("pod");
    let e = pin(&dir, &[NamespaceKind::Network], None).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    assert!(msg.contains("Not a directory"), "{msg}");

    // /proc takes no new files: the mount point can't be made.
    let e = pin(Path::new("/proc/self"), &[NamespaceKind::Network], None).unwrap_err();
    assert!(e.to_string().contains("/proc/self/net"), "{e}");
}

#[test]
fn an_occupied_mount_point_fails_and_undoes_the_rest() {
    if !is_root() {
        return;
    }
    let s = Scratch::new();
    fs::create_dir_all(&s.0).unwrap();
    fs::write(s.0.join("uts"), "mine").unwrap();
    // Only mounts under this test's dir: the other tests pin and unpin beside it.
    let ours = || -> Vec<PathBuf> {
        mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&s.0))
            .collect()
    };
    let kinds = [
        NamespaceKind::Network,
        NamespaceKind::Ipc,
        NamespaceKind::Uts,
    ];
    let e = pin(&s.0, &kinds, None).unwrap_err();
    assert!(e.to_string().contains("creating mount point"), "{e}");
    assert!(
        e.to_string()
            .contains(&s.0.join("uts").display().to_string()),
        "{e}"
    );
    assert!(!s.0.join("net").exists());
    assert!(!s.0.join("ipc").exists());
    assert_eq!(fs::read_to_string(s.0.join("uts")).unwrap(), "mine");
    assert_eq!(ours(), Vec::<PathBuf>::new());

    // Pinning over a live pin fails the same way and leaves the first one alone.
    let dir = s.0.join("pod");
    pin(&dir, &[NamespaceKind::Network], None).unwrap();
    let e = pin(&dir, &[NamespaceKind::Network], None).unwrap_err();
    assert!(e.to_string().contains("File exists"), "{e}");
    assert!(mount_points().contains(&dir.join("net")));
    unpin(&dir).unwrap();
    assert!(!dir.exists());
}

#[test]
fn unpin_of_nothing_is_fine() {
    let s = Scratch::new();
    unpin(&s.0).unwrap();
    fs::create_dir_all(&s.0).unwrap();
    fs::write(s.0.join("net"), "").unwrap(); // a leftover mount point without a mount
    unpin(&s.0).unwrap();
    assert!(!s.0.exists());
}
