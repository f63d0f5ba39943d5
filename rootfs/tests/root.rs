//! The root switch (pivot_root / no_pivot), root propagation, a read-only
//! root and the console bind.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::*;

/// Run `sh -c script` inside a container after the whole plan.
fn run_inside(cfg: &Config, extra: i32, script: &str) -> Container {
    let plan = cfg.prepare().unwrap();
    let script = cs(script);
    spawn(extra, |ctx| {
        run_plan(&plan)?;
        Err(ctx.exec(&[c"/bin/sh", c"-c", &script]))
    })
}

#[test]
fn pivot_root_hides_the_host() {
    let dir = TempDir::new("pivot");
    let rootfs = busybox_rootfs(&dir);
    fs::write(dir.join("host-only"), "host").unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    // The process root is the rootfs.
    let root = fs::metadata(c.root_path("/")).unwrap();
    let want = fs::metadata(&rootfs).unwrap();
    assert_eq!((root.dev(), root.ino()), (want.dev(), want.ino()));
    // The old root was detached: the namespace only has the container's mounts.
    let mi = c.mountinfo();
    assert_eq!(mi[0].mount_point, "/");
    assert_eq!(mi[0].root, root_in_its_fs(&rootfs));
    let points: Vec<&str> = mi.iter().map(|m| m.mount_point.as_str()).collect();
    assert_eq!(
        points,
        ["/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"]
    );
    // cwd is "/".
    assert_eq!(
        fs::read_link(format!("/proc/{}/cwd", c.pid))
            .unwrap()
            .to_str(),
        Some("/")
    );
    drop(c);

    let c = run_inside(
        &cfg,
        0,
        "cat /proc/self/mountinfo | wc -l 2>/dev/null; ls /; test -e /host-only || echo no-host",
    );
    assert!(c.output().contains("no-host"), "{}", c.output());
    assert!(c.output().contains("bin"), "{}", c.output());
}

#[test]
fn no_pivot_moves_the_rootfs_and_chroots() {
    let dir = TempDir::new("nopivot");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.no_pivot = true;
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    let root = fs::metadata(c.root_path("/")).unwrap();
    let want = fs::metadata(&rootfs).unwrap();
    assert_eq!((root.dev(), root.ino()), (want.dev(), want.ino()));
    // The rootfs mount was moved onto "/" (over the old root).
    let top = c.mount_at("/").unwrap();
    assert_eq!(top.root, root_in_its_fs(&rootfs));
    assert!(c.mount_at("/proc").is_some_and(|m| m.fstype == "proc"));
    assert_eq!(
        fs::read_link(format!("/proc/{}/cwd", c.pid))
            .unwrap()
            .to_str(),
        Some("/")
    );
    drop(c);

    let c = run_inside(&cfg, 0, "echo $$; ls /bin/busybox");
    assert_eq!(c.output(), "1\n/bin/busybox\n");
}

#[test]
fn readonly_root() {
    let dir = TempDir::new("roroot");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.readonly = true;
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    let root = c.mount_at("/").unwrap();
    assert!(root.has("ro"), "{root:?}");
    let e = fs::write(c.root_path("/newfile"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    // Other mounts stay writable.
    fs::write(c.root_path("/dev/shm/x"), "x").unwrap();
    // The host's view of the rootfs is untouched.
    fs::write(rootfs.join("host-can-write"), "x").unwrap();
}

#[test]
fn root_readonly_without_proc_in_the_container() {
    let dir = TempDir::new("roroot-noproc");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.readonly = true;
    cfg.mounts = mounts(r#"[{"destination": "/dev", "type": "tmpfs", "options": ["ro"]}]"#);
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    assert!(c.mount_at("/").unwrap().has("ro"));
    assert!(c.mount_at("/dev").unwrap().has("ro"));
}

#[test]
fn rootfs_propagation_variants() {
    for (prop, shared) in [
        (None, false),
        (Some("rshared"), true),
        (Some("shared"), true),
        (Some("rprivate"), false),
        (Some("rslave"), false),
        (Some("slave"), false),
    ] {
        let dir = TempDir::new("rootprop");
        let rootfs = busybox_rootfs(&dir);
        let mut cfg = Config::new(&rootfs);
        cfg.mounts = mounts(r#"[{"destination": "/dev", "type": "tmpfs"}]"#);
        cfg.propagation = prop.map(str::to_string);
        let plan = cfg.prepare().unwrap();
        let c = spawn(0, |_| run_plan(&plan));
        c.ok();
        let root = c.mount_at("/").unwrap();
        assert_eq!(root.shared(), shared, "{prop:?}: {root:?}");
        if prop == Some("rshared") {
            // Recursive: the submount is shared too.
            assert!(c.mount_at("/dev").unwrap().shared(), "{prop:?}");
        }
    }
}

#[test]
fn unbindable_root_is_unbindable_after_the_pivot() {
    // An unbindable "/" can't be bound onto itself (runc 1.1 fails with EINVAL there): the
    // tree is a slave while the rootfs is bound, and the new root is made unbindable after
    // the pivot, as the config asks.
    for prop in ["unbindable", "runbindable"] {
        let dir = TempDir::new("unbindable");
        let rootfs = busybox_rootfs(&dir);
        let mut cfg = Config::new(&rootfs);
        cfg.mounts = mounts(r#"[{"destination": "/dev", "type": "tmpfs"}]"#);
        cfg.propagation = Some(prop.into());
        let plan = cfg.prepare().unwrap();
        let c = spawn(0, |_| run_plan(&plan));
        c.ok();
        let root = c.mount_at("/").unwrap();
        assert!(root.unbindable() && !root.shared(), "{prop}: {root:?}");
        assert_eq!(
            c.mount_at("/dev").unwrap().unbindable(),
            prop == "runbindable",
            "{prop}: submount"
        );
    }
}

#[test]
fn console_is_bound_over_dev_console() {
    let dir = TempDir::new("console");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| {
        mount_and_pivot(&plan)?;
        let m = open_ptmx()?;
        // SAFETY: TIOCGPTPEER on the master just opened, with flags (no pointer).
        let slave = unsafe {
            libc::ioctl(
                m,
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        };
        if slave < 0 {
            return Err(format!("TIOCGPTPEER: {}", std::io::Error::last_os_error()));
        }
        plan.mount_console_fd(slave)
            .map_err(|e| e.describe(&plan).to_string())?;
        plan.finish().map_err(|e| e.describe(&plan).to_string())
    });
    c.ok();
    let console = fs::metadata(c.root_path("/dev/console")).unwrap();
    let pts0 = fs::metadata(c.root_path("/dev/pts/0")).unwrap();
    assert_eq!(console.mode() & libc::S_IFMT, libc::S_IFCHR);
    assert_eq!(console.rdev(), pts0.rdev());
    assert_eq!(dev_numbers(console.rdev()).0, 136);
    let m = c.mount_at("/dev/console").unwrap();
    assert_eq!(m.fstype, "devpts");
    assert_eq!(m.root, "/0");
}
