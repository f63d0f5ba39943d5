//! Device nodes and /dev symlinks.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::*;

const DEFAULTS: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn custom_devices() -> Vec<oci_spec::runtime::LinuxDevice> {
    devices(
        r#"[
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 384, "uid": 1000, "gid": 1001},
        {"path": "/dev/disks/loopy", "type": "b", "major": 7, "minor": 200, "fileMode": 432},
        {"path": "/dev/myfifo", "type": "p"},
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 438, "uid": 5, "gid": 6}
    ]"#,
    )
}

#[test]
fn default_and_custom_devices() {
    let dir = TempDir::new("devices");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.devices = custom_devices();
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();

    for (name, major, minor) in DEFAULTS {
        let m = fs::metadata(c.root_path(&format!("/dev/{name}"))).unwrap();
        assert!(m.file_type().is_char_device(), "{name}");
        assert_eq!(dev_numbers(m.rdev()), (*major, *minor), "{name}");
        assert_eq!(m.mode() & 0o7777, 0o666, "{name}");
        if *name != "null" {
            assert_eq!((m.uid(), m.gid()), (0, 0), "{name}");
        }
    }
    // The configured /dev/null replaced the default one (owner 5:6).
    let null = fs::metadata(c.root_path("/dev/null")).unwrap();
    assert_eq!((null.uid(), null.gid()), (5, 6));

    let fuse = fs::metadata(c.root_path("/dev/fuse")).unwrap();
    assert!(fuse.file_type().is_char_device());
    assert_eq!(dev_numbers(fuse.rdev()), (10, 229));
    assert_eq!(fuse.mode() & 0o7777, 0o600);
    assert_eq!((fuse.uid(), fuse.gid()), (1000, 1001));

    let loopy = fs::metadata(c.root_path("/dev/disks/loopy")).unwrap();
    assert!(loopy.file_type().is_block_device());
    assert_eq!(dev_numbers(loopy.rdev()), (7, 200));
    assert_eq!(loopy.mode() & 0o7777, 0o660);

    let fifo = fs::metadata(c.root_path("/dev/myfifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o666);
    // Everything went into the container's /dev tmpfs, nothing into the image.
    assert!(fs::read_dir(rootfs.join("dev")).unwrap().next().is_none());
}

#[test]
fn devices_seen_from_inside() {
    let dir = TempDir::new("devices-inside");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.devices = custom_devices();
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |ctx| {
        run_plan(&plan)?;
        Err(ctx.exec(&[
            c"/bin/stat",
            c"-c",
            c"%n %F %t:%T %a %u:%g",
            c"/dev/fuse",
            c"/dev/null",
            c"/dev/tty",
            c"/dev/disks/loopy",
        ]))
    });
    assert_eq!(
        c.output(),
        "/dev/fuse character special file a:e5 600 1000:1001\n\
         /dev/null character special file 1:3 666 5:6\n\
         /dev/tty character special file 5:0 666 0:0\n\
         /dev/disks/loopy block special file 7:c8 660 0:0\n"
    );
}

#[test]
fn dev_symlinks() {
    let dir = TempDir::new("devlinks");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    let link = |p: &str| fs::read_link(c.root_path(p)).map(|l| l.to_string_lossy().into_owned());
    assert_eq!(link("/dev/fd").unwrap(), "/proc/self/fd");
    assert_eq!(link("/dev/stdin").unwrap(), "/proc/self/fd/0");
    assert_eq!(link("/dev/stdout").unwrap(), "/proc/self/fd/1");
    assert_eq!(link("/dev/stderr").unwrap(), "/proc/self/fd/2");
    assert_eq!(link("/dev/ptmx").unwrap(), "pts/ptmx");
    // Like runc: /dev/core only when the host has /proc/kcore.
    let host_kcore = std::path::Path::new("/proc/kcore").exists();
    assert_eq!(
        link("/dev/core").ok(),
        host_kcore.then(|| "/proc/kcore".to_string())
    );
}

#[test]
fn no_ptmx_symlink_without_devpts_and_nothing_when_dev_is_bound() {
    let dir = TempDir::new("devlinks2");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(r#"[{"destination": "/dev", "type": "tmpfs"}]"#);
    let plan = cfg.prepare().unwrap();
    assert!(plan.sets_up_dev());
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    assert!(fs::symlink_metadata(c.root_path("/dev/ptmx")).is_err());
    assert!(fs::symlink_metadata(c.root_path("/dev/fd")).is_ok());
    drop(c);

    // /dev bind-mounted from a host directory: no devices, no symlinks.
    let hostdev = dir.join("hostdev");
    fs::create_dir(&hostdev).unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[{"destination": "/dev", "type": "bind", "source": "hostdev", "options": ["rbind"]}]"#,
    );
    cfg.devices = custom_devices();
    let plan = cfg.prepare().unwrap();
    assert!(!plan.sets_up_dev());
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    assert!(fs::read_dir(&hostdev).unwrap().next().is_none());
}

#[test]
fn user_namespace_mode_binds_host_devices() {
    let dir = TempDir::new("devbind");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.new_user_ns = true;
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    for (name, major, minor) in DEFAULTS {
        let p = format!("/dev/{name}");
        let m = c
            .mount_at(&p)
            .unwrap_or_else(|| panic!("{p} is not a bind mount"));
        assert!(m.root.ends_with(&format!("/{name}")), "{m:?}");
        let meta = fs::metadata(c.root_path(&p)).unwrap();
        assert_eq!(dev_numbers(meta.rdev()), (*major, *minor));
        let host = fs::metadata(&p).unwrap();
        assert_eq!(meta.ino(), host.ino());
    }
}

#[test]
fn mknod_refused_in_a_user_namespace_falls_back_to_bind() {
    let dir = TempDir::new("devuserns");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.devices = devices(r#"[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]"#);
    // new_user_ns is false: mknod is tried, gets EPERM, and falls back.
    let plan = cfg.prepare().unwrap();
    let c = spawn_userns(|| Ok(()), |_| run_plan(&plan));
    c.ok();
    for p in ["/dev/null", "/dev/fuse", "/dev/tty"] {
        let m = c
            .mount_at(p)
            .unwrap_or_else(|| panic!("{p} is not a bind mount"));
        assert_eq!(m.fstype, "devtmpfs", "{m:?}");
        let inside = fs::metadata(c.root_path(p)).unwrap();
        assert_eq!(inside.rdev(), fs::metadata(p).unwrap().rdev());
    }
}
