//! A hostile image: symlinks that point at host paths must never redirect a
//! mount, a mknod or a mask onto the host.

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::Path;

use common::*;

fn entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Mounts of the container process whose mount point is at or below `p`.
fn mounts_under(c: &Container, p: &Path) -> Vec<MountLine> {
    let p = p.to_str().unwrap();
    c.mountinfo()
        .into_iter()
        .filter(|m| m.mount_point == p || m.mount_point.starts_with(&format!("{p}/")))
        .collect()
}

#[test]
fn absolute_and_relative_symlinks_to_host_dirs_stay_inside() {
    let dir = TempDir::new("hostile-links");
    let rootfs = busybox_rootfs(&dir);
    // A real host directory the image points at.
    let host_target = TempDir::new("host-target-dir");
    fs::write(host_target.join("precious"), "host data").unwrap();
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("payload"), "payload").unwrap();

    let host_abs = host_target.path().to_str().unwrap().to_string();
    symlink(&host_abs, rootfs.join("mnt2")).unwrap();
    symlink(
        format!("../../../../../../../..{host_abs}"),
        rootfs.join("etc/evil"),
    )
    .unwrap();
    symlink(&host_abs, rootfs.join("tmpfs-here")).unwrap();

    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[
        {"destination": "/tmpfs-here", "type": "tmpfs"},
        {"destination": "/mnt2/data", "type": "bind", "source": "src", "options": ["rbind"]},
        {"destination": "/etc/evil/file", "type": "bind", "source": "src/payload", "options": ["bind"]}
    ]"#,
    );
    let plan = cfg.prepare().unwrap();
    // Only mount_all: the mount table still shows host paths.
    let c = spawn(0, |_| {
        plan.mount_all().map_err(|e| e.describe(&plan).to_string())
    });
    c.ok();

    // Nothing was created or mounted on the host target.
    assert_eq!(entries(host_target.path()), ["precious"]);
    assert!(mounts_under(&c, host_target.path()).is_empty());
    // The symlinks were followed inside the rootfs instead.
    let inside = rootfs.join(host_abs.trim_start_matches('/'));
    let under = mounts_under(&c, &inside);
    let mut points: Vec<String> = under.iter().map(|m| m.mount_point.clone()).collect();
    points.sort();
    let want = |s: &str| format!("{}{s}", inside.display());
    // /tmpfs-here, then /mnt2/data and /etc/evil/file below it.
    assert_eq!(points, [want(""), want("/data"), want("/file")]);
    assert_eq!(
        fs::read_to_string(c.root_path(&format!("{}/data/payload", inside.display()))).unwrap(),
        "payload"
    );
}

#[test]
fn dev_symlinked_to_root_is_refused() {
    let dir = TempDir::new("hostile-dev");
    let rootfs = busybox_rootfs(&dir);
    fs::remove_dir(rootfs.join("dev")).unwrap();
    symlink("/", rootfs.join("dev")).unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    assert_eq!(
        c.report,
        "ERR mounts[1] (tmpfs on /dev): destination resolves to the container root or inside procfs: \
         Operation not permitted (os error 1)\n"
    );
    // Neither the rootfs nor the host root got a tmpfs: the only mounts at
    // those places are the rootfs bind and the host's own root (compared by
    // what they mount, as the host's /tmp or / may be a tmpfs itself).
    let at = |mi: &[MountLine], p: &str| {
        mi.iter()
            .filter(|m| m.mount_point == p)
            .map(|m| (m.fstype.clone(), m.root.clone()))
            .collect::<Vec<_>>()
    };
    let mi = c.mountinfo();
    let host = parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap());
    let rootfs_bind = at(&mi, rootfs.to_str().unwrap());
    assert_eq!(rootfs_bind.len(), 1, "{rootfs_bind:?}");
    assert_eq!(rootfs_bind[0].1, root_in_its_fs(&rootfs), "{rootfs_bind:?}");
    assert_eq!(at(&mi, "/"), at(&host, "/"));
}

#[test]
fn proc_symlinked_upwards_is_refused() {
    let dir = TempDir::new("hostile-proc");
    let rootfs = busybox_rootfs(&dir);
    fs::remove_dir(rootfs.join("proc")).unwrap();
    symlink("../../../", rootfs.join("proc")).unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| plan.mount_all().map_err(|e| format!("{e:?}")));
    // A symlink is never an ordinary directory: refused before it is followed.
    assert_eq!(
        c.report,
        "ERR ApplyError { step: ProcNotDir, index: 0, errno: 40 }\n"
    );
    // No proc mounted anywhere new: the child's mounts (a copy of the host's) hold only the
    // proc mounts the host has (/proc, and any another program left, e.g. a peer runtime's
    // test).
    let host = parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap());
    let host_procs: Vec<&str> = host
        .iter()
        .filter(|m| m.fstype == "proc")
        .map(|m| m.mount_point.as_str())
        .collect();
    let mi = c.mountinfo();
    let new: Vec<&str> = mi
        .iter()
        .filter(|m| m.fstype == "proc" && !host_procs.contains(&m.mount_point.as_str()))
        .map(|m| m.mount_point.as_str())
        .collect();
    assert!(new.is_empty(), "proc mounted at {new:?}");
}

/// The kernel filesystems a hostile image may try to redirect with a symlink
/// at their mount point (runc's CVE-2019-19921 hardening).
const KERNEL_FS: [(&str, &str); 2] = [("proc", "/proc"), ("sysfs", "/sys")];

#[test]
fn proc_and_sysfs_on_symlinks_inside_the_rootfs_are_refused() {
    // rootfs/proc -> ../../tmp/x: followed inside the root it would be
    // rootfs/tmp/x, existing or not; a symlink to a directory of the image too.
    for (fstype, dest) in KERNEL_FS {
        for (link, existing) in [
            ("../../tmp/x", false),
            ("../../tmp/x", true),
            ("/etc", true),
            ("tmp", true),
        ] {
            let dir = TempDir::new("hostile-kernelfs");
            let rootfs = busybox_rootfs(&dir);
            let leaf = rootfs.join(dest.trim_start_matches('/'));
            fs::remove_dir(&leaf).unwrap();
            symlink(link, &leaf).unwrap();
            if existing && link.ends_with("/x") {
                fs::create_dir(rootfs.join("tmp/x")).unwrap();
            }
            let before = entries(&rootfs.join("tmp"));
            let mut cfg = Config::new(&rootfs);
            cfg.mounts = mounts(&format!(
                r#"[{{"destination": "{dest}", "type": "{fstype}", "source": "{fstype}"}}]"#
            ));
            let plan = cfg.prepare().unwrap();
            let c = spawn(NEWIPC_NET, |_| run_plan(&plan));
            let case = format!("{fstype} on {dest} -> {link} (existing: {existing})");
            assert_eq!(
                c.report,
                format!(
                    "ERR mounts[0] ({fstype} on {dest}): filesystem \"{fstype}\" must be \
                     mounted on ordinary directory: Too many levels of symbolic links (os error 40)\n"
                ),
                "{case}"
            );
            // Nothing of that type got mounted anywhere in the rootfs, and
            // nothing was created through the link.
            let root = rootfs.to_str().unwrap();
            let inside: Vec<MountLine> = c
                .mountinfo()
                .into_iter()
                .filter(|m| m.fstype == fstype && m.mount_point.starts_with(root))
                .collect();
            assert!(inside.is_empty(), "{case}: {inside:?}");
            assert_eq!(entries(&rootfs.join("tmp")), before, "{case}");
            assert_eq!(fs::read_link(&leaf).unwrap().to_str(), Some(link), "{case}");
        }
    }
}

#[test]
fn proc_and_sysfs_on_a_file_are_refused() {
    for (fstype, dest) in KERNEL_FS {
        let dir = TempDir::new("hostile-kernelfs-file");
        let rootfs = busybox_rootfs(&dir);
        let leaf = rootfs.join(dest.trim_start_matches('/'));
        fs::remove_dir(&leaf).unwrap();
        fs::write(&leaf, "not a directory").unwrap();
        let mut cfg = Config::new(&rootfs);
        cfg.mounts = mounts(&format!(
            r#"[{{"destination": "{dest}", "type": "{fstype}"}}]"#
        ));
        let plan = cfg.prepare().unwrap();
        let c = spawn(NEWIPC_NET, |_| {
            plan.mount_all().map_err(|e| format!("{e:?}"))
        });
        let step = if fstype == "proc" {
            "ProcNotDir"
        } else {
            "SysfsNotDir"
        };
        assert_eq!(
            c.report,
            format!("ERR ApplyError {{ step: {step}, index: 0, errno: 20 }}\n")
        );
        assert_eq!(fs::read_to_string(&leaf).unwrap(), "not a directory");
    }
}

#[test]
fn proc_and_sysfs_below_a_symlinked_parent_stay_inside() {
    // Only the last component must be an ordinary directory: a symlinked
    // parent is resolved inside the root like for any mount, and a missing
    // mount point is created.
    let dir = TempDir::new("kernelfs-parent");
    let rootfs = busybox_rootfs(&dir);
    let host = TempDir::new("host-kernelfs-parent");
    symlink(host.path(), rootfs.join("kernel")).unwrap();
    fs::remove_dir(rootfs.join("proc")).unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[{"destination": "/proc", "type": "proc"},
            {"destination": "/kernel/sys", "type": "sysfs"}]"#,
    );
    let plan = cfg.prepare().unwrap();
    let c = spawn(NEWIPC_NET, |_| {
        plan.mount_all().map_err(|e| e.describe(&plan).to_string())
    });
    c.ok();
    assert!(entries(host.path()).is_empty());
    assert!(mounts_under(&c, host.path()).is_empty());
    let inside = rootfs.join(host.path().to_str().unwrap().trim_start_matches('/'));
    let sys = mounts_under(&c, &inside.join("sys"));
    assert_eq!(sys.len(), 1, "{sys:?}");
    assert_eq!(sys[0].fstype, "sysfs");
    let proc = mounts_under(&c, &rootfs.join("proc"));
    assert_eq!(proc.first().map(|m| m.fstype.as_str()), Some("proc"));
    assert!(fs::symlink_metadata(rootfs.join("proc")).unwrap().is_dir());
}

#[test]
fn targets_symlinked_into_procfs_or_magic_links_are_refused() {
    let dir = TempDir::new("hostile-procfs");
    let rootfs = busybox_rootfs(&dir);
    symlink("/proc/sys/kernel", rootfs.join("kernel-knobs")).unwrap();
    symlink("/proc/self/root", rootfs.join("magic")).unwrap();
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();

    for (dest, want) in [
        (
            "/kernel-knobs",
            "ApplyError { step: CheckTarget, index: 1, errno: 1 }",
        ),
        (
            "/magic/x",
            "ApplyError { step: ResolveTarget, index: 1, errno: 40 }",
        ),
    ] {
        let mut cfg = Config::new(&rootfs);
        cfg.mounts = mounts(&format!(
            r#"[{{"destination": "/proc", "type": "proc"}},
                {{"destination": "{dest}", "type": "bind", "source": "src", "options": ["bind"]}}]"#
        ));
        let plan = cfg.prepare().unwrap();
        let c = spawn(0, |_| plan.mount_all().map_err(|e| format!("{e:?}")));
        assert_eq!(c.report, format!("ERR {want}\n"), "{dest}");
    }
}

#[test]
fn symlink_loops_are_an_error() {
    let dir = TempDir::new("hostile-loop");
    let rootfs = busybox_rootfs(&dir);
    symlink("loop2", rootfs.join("loop1")).unwrap();
    symlink("loop1", rootfs.join("loop2")).unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(r#"[{"destination": "/loop1/x", "type": "tmpfs"}]"#);
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| {
        plan.mount_all().map_err(|e| e.describe(&plan).to_string())
    });
    assert_eq!(
        c.report,
        "ERR mounts[0] (tmpfs on /loop1/x): resolve destination inside rootfs: \
         Too many levels of symbolic links (os error 40)\n"
    );
}

#[test]
fn devices_through_symlinks_are_created_inside_the_rootfs() {
    let dir = TempDir::new("hostile-devices");
    let rootfs = busybox_rootfs(&dir);
    let host_file = TempDir::new("host-null-target");
    fs::write(host_file.join("file"), "host file").unwrap();
    let host_etc = TempDir::new("host-etc");
    // /dev/null in the image is a symlink to a host file; another device's
    // parent directory is a symlink to a host directory.
    symlink(host_file.join("file"), rootfs.join("dev/null")).unwrap();
    symlink(host_etc.path(), rootfs.join("devlink")).unwrap();

    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(r#"[{"destination": "/proc", "type": "proc"}]"#);
    cfg.devices = devices(r#"[{"path": "/devlink/mydev", "type": "c", "major": 1, "minor": 5}]"#);
    cfg.masked = vec!["/etc/secret".into()];
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();

    // The host is untouched.
    assert_eq!(
        fs::read_to_string(host_file.join("file")).unwrap(),
        "host file"
    );
    assert_eq!(entries(host_file.path()), ["file"]);
    assert!(entries(host_etc.path()).is_empty());
    // Inside the rootfs: the symlink was replaced by a real null device and
    // the other device was made under the symlink's target, inside the rootfs.
    let null = fs::symlink_metadata(rootfs.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(dev_numbers(null.rdev()), (1, 3));
    let inside = rootfs
        .join(host_etc.path().to_str().unwrap().trim_start_matches('/'))
        .join("mydev");
    assert!(
        fs::symlink_metadata(&inside)
            .unwrap()
            .file_type()
            .is_char_device()
    );
    // And the mask used that null device.
    assert_eq!(fs::read_to_string(c.root_path("/etc/secret")).unwrap(), "");
}

#[test]
fn masked_symlinks_are_resolved_inside_the_new_root() {
    let dir = TempDir::new("hostile-mask");
    let rootfs = busybox_rootfs(&dir);
    let host = TempDir::new("host-secret");
    fs::write(host.join("secret"), "host secret").unwrap();
    symlink(host.join("secret"), rootfs.join("to-host")).unwrap();
    symlink("/etc/secret", rootfs.join("to-image")).unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.masked = vec!["/to-host".into(), "/to-image".into()];
    cfg.readonly_paths = vec!["/to-host".into()];
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    // /to-host points at nothing inside the container: skipped.
    assert!(
        c.mountinfo()
            .iter()
            .all(|m| !m.mount_point.contains("secret") || m.mount_point == "/etc/secret")
    );
    assert_eq!(
        fs::read_to_string(host.join("secret")).unwrap(),
        "host secret"
    );
    // /to-image masks the image's /etc/secret.
    assert_eq!(fs::read_to_string(c.root_path("/etc/secret")).unwrap(), "");
    assert!(c.mount_at("/etc/secret").is_some());
}

#[test]
fn fake_dev_null_is_never_used_for_masking() {
    let dir = TempDir::new("hostile-null");
    let rootfs = busybox_rootfs(&dir);
    let host = TempDir::new("host-null");
    fs::write(host.join("target"), "host").unwrap();
    // The symlink itself is opened (O_NOFOLLOW), found not to be 1:3, refused.
    for (kind, want) in [("symlink", libc::ENODEV), ("file", libc::ENODEV)] {
        // /dev is bind-mounted from a directory whose "null" is fake.
        let fake = dir.join(&format!("fakedev-{kind}"));
        fs::create_dir(&fake).unwrap();
        match kind {
            "symlink" => symlink(host.join("target"), fake.join("null")).unwrap(),
            _ => fs::write(fake.join("null"), "not a device").unwrap(),
        }
        let mut cfg = Config::new(&rootfs);
        cfg.mounts = mounts(&format!(
            r#"[{{"destination": "/proc", "type": "proc"}},
                {{"destination": "/dev", "type": "bind", "source": "fakedev-{kind}", "options": ["rbind"]}}]"#
        ));
        cfg.masked = vec!["/etc/secret".into()];
        let plan = cfg.prepare().unwrap();
        let c = spawn(0, |_| run_plan(&plan));
        assert_eq!(
            c.report,
            format!(
                "ERR linux.maskedPaths[0] (/etc/secret): open and verify /dev/null: {}\n",
                std::io::Error::from_raw_os_error(want)
            ),
            "{kind}"
        );
        assert_eq!(fs::read_to_string(host.join("target")).unwrap(), "host");
    }
}

/// `mount(2)` for the tests' attacks (they run in the container child).
fn mount_raw(
    src: &str,
    dst: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
) -> Result<(), String> {
    let (s, d) = (cs(src), cs(dst));
    let t = fstype.map(cs);
    // SAFETY: valid C strings (or NULL) that outlive the call.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            t.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
            flags,
            std::ptr::null(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "mount {src} on {dst}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// CVE-2025-52881: between the mounts and the sysctl writes, something (a racing process
/// sharing a volume, here the test itself) mounts another procfs file over the sysctl file.
/// The write is refused (`EXDEV`, the open does not cross mounts) instead of landing on the
/// other file: here the hostname of the container's own UTS namespace, a harmless target.
#[test]
fn sysctl_file_covered_by_a_mount_is_refused() {
    let dir = TempDir::new("hostile-sysctl");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.sysctl = HashMap::from([("kernel.domainname".to_string(), "pwned".to_string())]);
    let plan = cfg.prepare().unwrap();
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let kernel = rootfs.join("proc/sys/kernel");
    let (from, to) = (
        kernel.join("hostname").to_str().unwrap().to_string(),
        kernel.join("domainname").to_str().unwrap().to_string(),
    );
    let c = spawn(libc::CLONE_NEWUTS | NEWIPC_NET, |_| {
        plan.mount_all()
            .map_err(|e| e.describe(&plan).to_string())?;
        mount_raw(&from, &to, None, libc::MS_BIND)?;
        plan.pivot().map_err(|e| e.describe(&plan).to_string())?;
        let r = plan.finish().map_err(|e| format!("{e:?}"));
        let now = fs::read_to_string("/proc/sys/kernel/hostname").map_err(|e| e.to_string())?;
        Err(format!("{r:?} hostname={}", now.trim()))
    });
    assert_eq!(
        c.report,
        format!(
            "ERR Err(\"ApplyError {{ step: SysctlOpen, index: 0, errno: 18 }}\") hostname={}\n",
            hostname.trim()
        )
    );
}

/// The same with `/proc` itself replaced by a bind of a procfs directory (not a proc root).
#[test]
fn sysctl_under_a_fake_proc_root_is_refused() {
    let dir = TempDir::new("hostile-sysctl-root");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.sysctl = HashMap::from([("kernel.domainname".to_string(), "pwned".to_string())]);
    let plan = cfg.prepare().unwrap();
    let proc_dir = rootfs.join("proc").to_str().unwrap().to_string();
    let c = spawn(libc::CLONE_NEWUTS | NEWIPC_NET, |_| {
        plan.mount_all()
            .map_err(|e| e.describe(&plan).to_string())?;
        // /proc now shows /proc/sys/net, whose "sys/kernel/..." doesn't matter: the root
        // check comes first.
        mount_raw("/proc/sys", &proc_dir, None, libc::MS_BIND)?;
        plan.pivot().map_err(|e| e.describe(&plan).to_string())?;
        plan.finish().map_err(|e| format!("{e:?}"))
    });
    assert_eq!(
        c.report,
        "ERR ApplyError { step: SysctlOpen, index: 0, errno: 18 }\n"
    );
}

/// CVE-2025-52565: the container's /dev/pts is swapped (here: a tmpfs with a plain file "0"
/// mounted over it) after the pty was opened, so a bind of the path /dev/pts/0 would land the
/// fake file on /dev/console; binding the slave fd the runtime holds still gives the real pty.
#[test]
fn console_bound_from_the_slave_fd_ignores_a_swapped_dev_pts() {
    let dir = TempDir::new("hostile-console");
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
        mount_raw("tmpfs", "/dev/pts", Some("tmpfs"), 0)?;
        fs::write("/dev/pts/0", "fake").map_err(|e| e.to_string())?;
        let kind = || {
            fs::metadata("/dev/console")
                .map(|m| (m.mode() & libc::S_IFMT, m.rdev()))
                .map_err(|e| e.to_string())
        };
        plan.mount_console_fd(slave)
            .map_err(|e| e.describe(&plan).to_string())?;
        let console = kind()?;
        // The swap is still in place: a path-based bind of /dev/pts/0 would now get the fake.
        let pts0 = fs::metadata("/dev/pts/0").map_err(|e| e.to_string())?;
        let real = fs::metadata(format!("/proc/self/fd/{slave}")).map_err(|e| e.to_string())?;
        Err(format!(
            "pts0: regular={} console: char={} same-pty={}",
            pts0.mode() & libc::S_IFMT == libc::S_IFREG,
            console.0 == libc::S_IFCHR,
            console.1 == real.rdev()
        ))
    });
    assert_eq!(
        c.report,
        "ERR pts0: regular=true console: char=true same-pty=true\n"
    );
}
