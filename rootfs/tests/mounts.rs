//! Mount types and options, checked from outside the container through
//! `/proc/<pid>/mountinfo` and `/proc/<pid>/root`.

mod common;
#[path = "common/enosys.rs"]
mod enosys;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;
use enosys::deny_in_this_thread_as_enosys;

fn mount_tmpfs(path: &std::path::Path) -> Result<(), String> {
    let p = cs(path.to_str().unwrap());
    // SAFETY: test child, private mount namespace.
    let r = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            p.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(format!(
            "mount tmpfs on {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[test]
fn bind_directory_and_file_with_ro_and_nosuid() {
    let dir = TempDir::new("bind");
    let rootfs = busybox_rootfs(&dir);
    let src_dir = dir.join("data");
    fs::create_dir(&src_dir).unwrap();
    fs::write(src_dir.join("hello"), "from host\n").unwrap();
    fs::write(dir.join("hostfile"), "single file\n").unwrap();

    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[
        {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro", "nosuid"]},
        {"destination": "/etc/deep/hostfile", "source": "hostfile", "options": ["bind", "ro"]},
        {"destination": "/rw", "type": "none", "source": "data", "options": ["bind", "mode=755", "z"]}
    ]"#,
    );
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();

    let data = c.mount_at("/data").expect("mount on /data");
    assert!(data.has("ro") && data.has("nosuid"), "{data:?}");
    assert_eq!(
        fs::read_to_string(c.root_path("/data/hello")).unwrap(),
        "from host\n"
    );
    let err = fs::write(c.root_path("/data/new"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));

    let file = c.mount_at("/etc/deep/hostfile").expect("mount on the file");
    assert!(file.has("ro") && !file.has("nosuid"), "{file:?}");
    assert_eq!(
        fs::read_to_string(c.root_path("/etc/deep/hostfile")).unwrap(),
        "single file\n"
    );
    // The mount point was created inside the rootfs, as an empty file.
    assert!(rootfs.join("etc/deep").is_dir());
    assert_eq!(
        fs::metadata(rootfs.join("etc/deep/hostfile"))
            .unwrap()
            .len(),
        0
    );

    // Filesystem data on a bind (runtime-tools' default config has mode=755) is dropped, as
    // mount(2) and runc ignore it: the bind is made.
    let rw = c.mount_at("/rw").expect("plain bind");
    assert!(rw.has("rw") && !rw.has("nosuid"), "{rw:?}");
    fs::write(c.root_path("/rw/written"), "x").unwrap();
    assert!(src_dir.join("written").exists());
}

#[test]
fn rbind_takes_submounts_and_bind_does_not() {
    let dir = TempDir::new("rbind");
    let rootfs = busybox_rootfs(&dir);
    let src = dir.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();

    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[
        {"destination": "/plain", "type": "bind", "source": "src", "options": ["bind"]},
        {"destination": "/recursive", "type": "bind", "source": "src", "options": ["rbind"]}
    ]"#,
    );
    let plan = cfg.prepare().unwrap();
    let sub = src.join("sub");
    let c = spawn(0, |_| {
        // A submount in the source, only in this private namespace.
        mount_tmpfs(&sub)?;
        fs::write(sub.join("marker"), "sub").map_err(|e| e.to_string())?;
        run_plan(&plan)
    });
    c.ok();
    assert!(
        c.mount_at("/recursive/sub")
            .is_some_and(|m| m.fstype == "tmpfs")
    );
    assert!(c.mount_at("/plain/sub").is_none());
    assert_eq!(
        fs::read_to_string(c.root_path("/recursive/sub/marker")).unwrap(),
        "sub"
    );
    assert!(!c.root_path("/plain/sub/marker").exists());
    // The host never saw the tmpfs.
    assert!(!sub.join("marker").exists());
}

#[test]
fn tmpfs_size_mode_and_kept_directory_mode() {
    let dir = TempDir::new("tmpfs");
    let rootfs = busybox_rootfs(&dir);
    fs::create_dir(rootfs.join("keep")).unwrap();
    fs::set_permissions(rootfs.join("keep"), fs::Permissions::from_mode(0o711)).unwrap();

    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "size=1m", "mode=1770", "noexec"]},
        {"destination": "/keep", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]}
    ]"#,
    );
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();

    let s = c.mount_at("/scratch").unwrap();
    assert_eq!(s.fstype, "tmpfs");
    assert!(
        s.has("nosuid") && s.has("nodev") && s.has("noexec") && s.has("rw"),
        "{s:?}"
    );
    assert!(
        s.has_super("size=1024k") && s.has_super("mode=1770"),
        "{s:?}"
    );
    let mode = fs::metadata(c.root_path("/scratch"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o1770);

    // Without mode=, the tmpfs root gets the mode of the directory it covers;
    // "ro" is applied after that.
    let k = c.mount_at("/keep").unwrap();
    assert!(k.has("ro"), "{k:?}");
    let mode = fs::metadata(c.root_path("/keep"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o711);
}

#[test]
fn proc_sysfs_devpts_mqueue() {
    let dir = TempDir::new("kernelfs");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.mounts.extend(mounts(
        r#"[{"destination": "/sys", "type": "sysfs", "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"]}]"#,
    ));
    let plan = cfg.prepare().unwrap();
    let c = spawn(libc::CLONE_NEWNET, |ctx| {
        run_plan(&plan)?;
        Err(ctx.exec(&[
            c"/bin/sh",
            c"-c",
            c"echo $$; cat /proc/1/comm; ls /sys/class/net",
        ]))
    });
    // pid namespace: the shell is pid 1 inside, and /proc is the container's.
    let out = c.output();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "{out}");
    assert_eq!(lines.next(), Some("sh"), "{out}");
    // New network namespace: only lo in the fresh sysfs.
    assert_eq!(lines.collect::<Vec<_>>(), ["lo"], "{out}");
}

#[test]
fn kernel_filesystems_in_mountinfo() {
    let dir = TempDir::new("kernelfs2");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.mounts.extend(mounts(
        r#"[{"destination": "/sys", "type": "sysfs", "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"]}]"#,
    ));
    let plan = cfg.prepare().unwrap();
    let c = spawn(libc::CLONE_NEWNET | libc::CLONE_NEWIPC, |_| run_plan(&plan));
    c.ok();
    let proc_ = c.mount_at("/proc").unwrap();
    assert_eq!(proc_.fstype, "proc");
    let sys = c.mount_at("/sys").unwrap();
    assert_eq!(sys.fstype, "sysfs");
    assert!(
        sys.has("ro") && sys.has("nosuid") && sys.has("noexec") && sys.has("nodev"),
        "{sys:?}"
    );
    let pts = c.mount_at("/dev/pts").unwrap();
    assert_eq!(pts.fstype, "devpts");
    assert!(
        pts.has_super("ptmxmode=666") && pts.has_super("mode=620"),
        "{pts:?}"
    );
    let mq = c.mount_at("/dev/mqueue").unwrap();
    assert_eq!(mq.fstype, "mqueue");
    assert!(mq.has("nodev") && mq.has("noexec"), "{mq:?}");
    let dev = c.mount_at("/dev").unwrap();
    assert_eq!(dev.fstype, "tmpfs");
    assert!(dev.has_super("size=65536k"), "{dev:?}");
}

#[test]
fn overlay_with_host_lower_upper_work() {
    let dir = TempDir::new("overlay");
    let rootfs = busybox_rootfs(&dir);
    for d in ["lower", "upper", "work"] {
        fs::create_dir(dir.join(d)).unwrap();
    }
    fs::write(dir.join("lower/from-lower"), "lower\n").unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(&format!(
        r#"[{{"destination": "/merged", "type": "overlay", "source": "overlay",
            "options": ["lowerdir={0}/lower", "upperdir={0}/upper", "workdir={0}/work", "nosuid"]}}]"#,
        dir.path().display()
    ));
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    let m = c.mount_at("/merged").unwrap();
    assert_eq!(m.fstype, "overlay");
    assert!(m.has("nosuid"));
    assert_eq!(
        fs::read_to_string(c.root_path("/merged/from-lower")).unwrap(),
        "lower\n"
    );
    fs::write(c.root_path("/merged/new"), "up").unwrap();
    assert_eq!(fs::read_to_string(dir.join("upper/new")).unwrap(), "up");
    assert!(!dir.join("lower/new").exists());
}

#[test]
fn tmpcopyup_copies_tree_owners_and_modes() {
    let dir = TempDir::new("copyup");
    let rootfs = busybox_rootfs(&dir);
    let base = rootfs.join("var/lib/app");
    fs::create_dir_all(base.join("nested/deeper")).unwrap();
    fs::write(base.join("file"), "content").unwrap();
    fs::write(base.join("nested/deeper/big"), vec![7u8; 300_000]).unwrap();
    fs::set_permissions(base.join("file"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(base.join("file"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::chown(base.join("nested"), Some(42), Some(43)).unwrap();
    fs::set_permissions(base.join("nested"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("../file", base.join("nested/link")).unwrap();
    let fifo = cs(base.join("fifo").to_str().unwrap());
    // SAFETY: creating a fifo at a fresh path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    fs::set_permissions(&base, fs::Permissions::from_mode(0o705)).unwrap();

    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[{"destination": "/var/lib/app", "type": "tmpfs", "source": "tmpfs",
            "options": ["tmpcopyup", "nosuid"]}]"#,
    );
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    assert_eq!(c.mount_at("/var/lib/app").unwrap().fstype, "tmpfs");
    let p = |s: &str| c.root_path(&format!("/var/lib/app{s}"));
    assert_eq!(fs::read_to_string(p("/file")).unwrap(), "content");
    let f = fs::metadata(p("/file")).unwrap();
    assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (1234, 5678, 0o640));
    let n = fs::metadata(p("/nested")).unwrap();
    assert_eq!((n.uid(), n.gid(), n.mode() & 0o7777), (42, 43, 0o750));
    assert_eq!(
        fs::read(p("/nested/deeper/big")).unwrap(),
        vec![7u8; 300_000]
    );
    assert_eq!(
        fs::read_link(p("/nested/link")).unwrap().to_str(),
        Some("../file")
    );
    let fi = fs::symlink_metadata(p("/fifo")).unwrap();
    assert_eq!(fi.mode() & libc::S_IFMT, libc::S_IFIFO);
    assert_eq!(fs::metadata(p("")).unwrap().mode() & 0o7777, 0o705);

    // Writes go to the tmpfs, not to the image.
    fs::write(p("/file"), "changed").unwrap();
    assert_eq!(fs::read_to_string(base.join("file")).unwrap(), "content");
}

#[test]
fn tmpcopyup_too_deep_is_an_error() {
    let dir = TempDir::new("copyup-deep");
    let rootfs = busybox_rootfs(&dir);
    let mut p = rootfs.join("deep");
    for i in 0..40 {
        p = p.join(format!("d{i}"));
    }
    fs::create_dir_all(&p).unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(r#"[{"destination": "/deep", "type": "tmpfs", "options": ["tmpcopyup"]}]"#);
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| {
        plan.mount_all()
            .map_err(|e| format!("{e:?} | {}", e.describe(&plan)))
    });
    assert!(c.report.contains("step: CopyUp"), "{}", c.report);
    assert!(
        c.report.contains("mounts[0] (tmpfs on /deep): tmpcopyup:"),
        "{}",
        c.report
    );
    assert!(
        c.report.contains("Too many levels of symbolic links"),
        "{}",
        c.report
    );
    // The failed tmpfs was detached again.
    assert!(c.mount_at(rootfs.join("deep").to_str().unwrap()).is_none());
}

#[test]
fn mount_propagation_options_and_recursive_attributes() {
    let dir = TempDir::new("propagation");
    let rootfs = busybox_rootfs(&dir);
    let src = dir.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[
        {"destination": "/shared", "type": "tmpfs", "options": ["rshared"]},
        {"destination": "/unbindable", "type": "tmpfs", "options": ["unbindable"]},
        {"destination": "/private", "type": "tmpfs", "options": ["shared", "private"]},
        {"destination": "/rro", "type": "bind", "source": "src", "options": ["rbind", "rro", "rnosuid"]}
    ]"#,
    );
    let plan = cfg.prepare().unwrap();
    let sub = src.join("sub");
    let c = spawn(0, |_| {
        mount_tmpfs(&sub)?;
        run_plan(&plan)
    });
    c.ok();
    assert!(c.mount_at("/shared").unwrap().shared());
    assert!(c.mount_at("/unbindable").unwrap().unbindable());
    let p = c.mount_at("/private").unwrap();
    assert!(!p.shared() && !p.unbindable(), "{p:?}");
    // rro/rnosuid reach the submount too.
    for mp in ["/rro", "/rro/sub"] {
        let m = c.mount_at(mp).unwrap();
        assert!(m.has("ro") && m.has("nosuid"), "{m:?}");
    }
}

#[test]
fn dev_read_only_is_applied_after_devices() {
    let dir = TempDir::new("devro");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[{"destination": "/dev", "type": "tmpfs", "options": ["ro", "nosuid", "mode=755"]}]"#,
    );
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    let dev = c.mount_at("/dev").unwrap();
    assert!(dev.has("ro") && dev.has("nosuid"), "{dev:?}");
    let null = fs::metadata(c.root_path("/dev/null")).unwrap();
    assert_eq!(dev_numbers(null.rdev()), (1, 3));
}

#[test]
fn bind_remount_keeps_flags_locked_in_a_user_namespace() {
    let dir = TempDir::new("locked");
    let rootfs = busybox_rootfs(&dir);
    let locked = dir.join("locked");
    fs::create_dir(&locked).unwrap();
    let relatime = dir.join("relatime");
    fs::create_dir(&relatime).unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.mounts.extend(mounts(
        r#"[{"destination": "/locked", "type": "bind", "source": "locked", "options": ["rbind", "ro"]},
            {"destination": "/locked-rw", "type": "bind", "source": "locked", "options": ["bind", "nodev"]},
            {"destination": "/relatime", "type": "bind", "source": "relatime", "options": ["bind", "ro", "noatime"]}]"#,
    ));
    cfg.readonly = true;
    cfg.readonly_paths = vec!["/locked-rw".into()];
    let plan = cfg.prepare().unwrap();
    let (pre_locked, pre_relatime) = (locked.clone(), relatime.clone());
    let c = spawn_userns(
        move || {
            let locked = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOATIME;
            for (dir, flags) in [(pre_locked, locked), (pre_relatime, libc::MS_NOSUID)] {
                let p = cs(dir.to_str().unwrap());
                // SAFETY: test child, private mount namespace.
                let r = unsafe {
                    libc::mount(
                        c"tmpfs".as_ptr(),
                        p.as_ptr(),
                        c"tmpfs".as_ptr(),
                        flags,
                        std::ptr::null(),
                    )
                };
                if r != 0 {
                    return Err(std::io::Error::last_os_error().to_string());
                }
            }
            Ok(())
        },
        |_| run_plan(&plan),
    );
    c.ok();
    // "ro" alone would clear nosuid/noexec/noatime, which the kernel refuses
    // (EPERM) for flags locked by a more privileged namespace: the remount is
    // retried keeping them.
    let m = c.mount_at("/locked").unwrap();
    assert!(
        m.has("ro") && m.has("nosuid") && m.has("nodev") && m.has("noexec") && m.has("noatime"),
        "{m:?}"
    );
    let m = c.mount_at("/locked-rw").unwrap();
    assert!(
        m.has("ro") && m.has("nosuid") && m.has("nodev") && m.has("noexec"),
        "{m:?}"
    );
    // "noatime" cannot replace the locked relatime either: kept.
    let m = c.mount_at("/relatime").unwrap();
    assert!(
        m.has("ro") && m.has("nosuid") && m.has("relatime") && !m.has("noatime"),
        "{m:?}"
    );
    assert!(c.mount_at("/").unwrap().has("ro"));
}

#[test]
fn sysfs_falls_back_to_a_read_only_host_bind_when_refused() {
    let dir = TempDir::new("sysfs-fallback");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[{"destination": "/proc", "type": "proc"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev"]}]"#,
    );
    let plan = cfg.prepare().unwrap();
    // A user namespace without its own network namespace may not mount sysfs.
    let c = spawn_userns_host_net(|_| run_plan(&plan));
    c.ok();
    let sys = c.mount_at("/sys").unwrap();
    assert_eq!(sys.fstype, "sysfs");
    assert!(
        sys.has("ro") && sys.has("nosuid") && sys.has("noexec") && sys.has("nodev"),
        "{sys:?}"
    );
    // It is the host's /sys, submounts included (rbind).
    assert!(c.mount_at("/sys/fs/cgroup").is_some());
    let host_net = fs::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(
        fs::read_dir(c.root_path("/sys/class/net")).unwrap().count(),
        host_net
    );
}

#[test]
fn recursive_attributes_without_mount_setattr_are_refused_before_anything_is_made() {
    // A kernel before 5.12 has no mount_setattr: the plan refuses rro/rnosuid clearly
    // instead of failing in the container's child halfway through its mounts.
    let dir = TempDir::new("no-setattr");
    let rootfs = busybox_rootfs(&dir);
    fs::create_dir_all(dir.join("src")).unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[
        {"destination": "/plain", "type": "bind", "source": "src", "options": ["rbind", "ro"]},
        {"destination": "/rro", "type": "bind", "source": "src", "options": ["rbind", "nosuid", "rro"]}
    ]"#,
    );
    let err = std::thread::spawn(move || {
        deny_in_this_thread_as_enosys(libc::SYS_mount_setattr);
        cfg.prepare().map(drop).map_err(|e| e.to_string())
    })
    .join()
    .unwrap()
    .expect_err("rro without mount_setattr");
    assert_eq!(
        err,
        "mounts[1].options: \"rro\": recursive mount attributes need mount_setattr(2) \
         (Linux 5.12+), which this kernel lacks"
    );
}
