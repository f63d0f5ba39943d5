//! Prepare-time validation and the text of rich errors (no container needed).

mod common;

use std::fs;
use std::path::Path;

use berth_rootfs::{ApplyError, IndexKind, Step};
use common::*;
use rstest::rstest;

fn prepare_err(mounts_json: &str) -> String {
    let dir = TempDir::new("prep");
    let rootfs = busybox_rootfs(&dir);
    fs::create_dir(dir.join("src")).unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(mounts_json);
    match cfg.prepare() {
        Ok(_) => panic!("prepare accepted {mounts_json}"),
        Err(e) => e.to_string().replace(dir.path().to_str().unwrap(), "<dir>"),
    }
}

#[rstest]
#[case::idmap(
    r#"[{"destination": "/proc", "type": "proc"}, {"destination": "/a", "type": "bind", "source": "src", "options": ["rbind", "idmap"]}]"#,
    "mounts[1].options: \"idmap\": id-mapped mounts are not supported"
)]
#[case::uid_mappings(
    r#"[{"destination": "/a", "type": "bind", "source": "src", "options": ["rbind"],
         "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
         "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}]"#,
    "mounts[0].uidMappings: id-mapped mounts are not supported"
)]
#[case::relative_destination(
    r#"[{"destination": "proc", "type": "proc"}]"#,
    "mounts[0].destination \"proc\": must be an absolute path"
)]
#[case::root_destination(
    r#"[{"destination": "/..", "type": "tmpfs"}]"#,
    "mounts[0].destination \"/..\": must not be the container root"
)]
#[case::missing_source(
    r#"[{"destination": "/a", "type": "bind", "source": "nope", "options": ["rbind"]}]"#,
    "mounts[0].source <dir>/nope: No such file or directory (os error 2)"
)]
#[case::absolute_missing_source(
    r#"[{"destination": "/a", "source": "/nonexistent/berth", "options": ["bind"]}]"#,
    "mounts[0].source /nonexistent/berth: No such file or directory (os error 2)"
)]
#[case::no_source(
    r#"[{"destination": "/a", "type": "bind", "options": ["bind"]}]"#,
    "mounts[0].source: is required for a bind mount"
)]
#[case::no_type(
    r#"[{"destination": "/a", "source": "src"}]"#,
    "mounts[0].type: is missing (and no bind/rbind option)"
)]
#[case::copyup_on_bind(
    r#"[{"destination": "/a", "source": "src", "options": ["rbind", "tmpcopyup"]}]"#,
    "mounts[0].options: \"tmpcopyup\": only valid for a tmpfs mount"
)]
#[case::flag_typo_on_bind(
    r#"[{"destination": "/a", "source": "src", "options": ["rbind", "mode=755", "readonly"]}]"#,
    "mounts[0].options: \"readonly\": is not a valid option for a bind mount"
)]
#[case::bind_over_proc(
    r#"[{"destination": "/proc", "source": "src", "options": ["rbind"]}]"#,
    "mounts[0].destination \"/proc\": only a proc filesystem may be mounted on /proc"
)]
#[case::tmpfs_over_proc(
    r#"[{"destination": "/proc/", "type": "tmpfs"}]"#,
    "mounts[0].destination \"/proc/\": only a proc filesystem may be mounted on /proc"
)]
#[case::inside_proc(
    r#"[{"destination": "/proc/self/../sys", "source": "src", "options": ["rbind"]}]"#,
    "mounts[0].destination \"/proc/self/../sys\": mounting inside /proc is not allowed (except lxcfs-style files)"
)]
fn invalid_mounts(#[case] json: &str, #[case] want: &str) {
    assert_eq!(prepare_err(json), want);
}

#[test]
fn allowed_proc_mounts() {
    let dir = TempDir::new("prep-proc");
    let rootfs = busybox_rootfs(&dir);
    fs::write(dir.join("cpuinfo"), "fake").unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[{"destination": "/proc", "type": "proc"},
            {"destination": "/proc/cpuinfo", "source": "cpuinfo", "options": ["bind"]},
            {"destination": "/hostproc", "source": "/proc", "options": ["rbind"]}]"#,
    );
    cfg.prepare().unwrap();
    // A bind of a real procfs onto /proc is fine too.
    cfg.mounts = mounts(r#"[{"destination": "/proc", "source": "/proc", "options": ["rbind"]}]"#);
    cfg.prepare().unwrap();
}

#[test]
fn invalid_top_level_fields() {
    let dir = TempDir::new("prep-fields");
    let rootfs = busybox_rootfs(&dir);
    let err = |f: &dyn Fn(&mut Config)| {
        let mut cfg = Config::new(&rootfs);
        f(&mut cfg);
        cfg.prepare().unwrap_err().to_string()
    };
    assert_eq!(
        err(&|c| c.propagation = Some("sideways".into())),
        "linux.rootfsPropagation \"sideways\": unknown propagation (expected [r]shared, [r]slave, [r]private or [r]unbindable)"
    );
    assert_eq!(
        err(&|c| c.rootfs = "relative/rootfs".into()),
        "root.path relative/rootfs: must be an absolute path"
    );
    assert!(
        err(&|c| c.rootfs = "/nonexistent/berth-rootfs".into())
            .starts_with("root.path /nonexistent/berth-rootfs: No such file or directory")
    );
    let file = dir.join("file");
    fs::write(&file, "").unwrap();
    assert_eq!(
        err(&|c| c.rootfs = file.clone()),
        format!("root.path {}: is not a directory", file.display())
    );
    assert_eq!(
        err(&|c| c.masked = vec!["/ok".into(), "proc/kcore".into()]),
        "linux.maskedPaths[1] \"proc/kcore\": must be an absolute path"
    );
    assert_eq!(
        err(&|c| c.readonly_paths = vec!["/".into()]),
        "linux.readonlyPaths[0] \"/\": must not be the container root"
    );
    assert_eq!(
        err(&|c| {
            c.sysctl.insert("net.ipv4..conf".into(), "1".into());
        }),
        "linux.sysctl[\"net.ipv4..conf\"]: must not contain \"..\""
    );
    assert_eq!(
        err(&|c| c.devices = devices(r#"[{"path": "/dev/x", "type": "a"}]"#)),
        "linux.devices[0].type \"a\": is not a device node type (one of c, b, u, p)"
    );
}

#[test]
fn describe_names_what_failed() {
    let dir = TempDir::new("describe");
    let rootfs = busybox_rootfs(&dir);
    fs::create_dir(dir.join("src")).unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[
        {"destination": "/dev", "type": "tmpfs"},
        {"destination": "/data", "type": "bind", "source": "src", "options": ["rbind"]},
        {"destination": "/dev/pts", "type": "devpts"},
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/sys/fs/cgroup", "type": "cgroup"}
    ]"#,
    );
    cfg.devices = devices(r#"[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]"#);
    cfg.masked = vec!["/proc/kcore".into()];
    cfg.readonly_paths = vec!["/proc/sys".into(), "/proc/bus".into()];
    cfg.sysctl.insert("net.ipv4.ip_forward".into(), "1".into());
    cfg.sysctl.insert("kernel.shmmax".into(), "1".into());
    let plan = cfg.prepare().unwrap();
    let d = |step, index, errno| {
        ApplyError { step, index, errno }
            .describe(&plan)
            .to_string()
    };
    let root = plan.rootfs().display().to_string();

    assert_eq!(
        d(Step::Mount, 3, libc::EPERM),
        "mounts[3] (proc on /proc): mount: Operation not permitted (os error 1)"
    );
    assert_eq!(
        d(Step::Remount, 1, libc::EPERM),
        format!(
            "mounts[1] (bind of {}/src on /data): remount: Operation not permitted (os error 1)",
            dir.path().display()
        )
    );
    assert_eq!(
        d(Step::Mkdir, 2, libc::EROFS),
        "mounts[2] (devpts on /dev/pts): mkdir: Read-only file system (os error 30)"
    );
    assert_eq!(
        d(Step::Mount, 9, libc::EPERM),
        "mounts[9] (not in plan): mount: Operation not permitted (os error 1)"
    );
    assert_eq!(
        d(Step::BindRoot, 0, libc::EINVAL),
        format!("rootfs {root}: bind rootfs onto itself: Invalid argument (os error 22)")
    );
    assert_eq!(
        d(Step::PivotRoot, 0, libc::EINVAL),
        format!("rootfs {root}: pivot_root: Invalid argument (os error 22)")
    );
    // Devices: defaults first, then linux.devices.
    assert_eq!(
        d(Step::Mknod, 0, libc::EPERM),
        "default device /dev/null: mknod: Operation not permitted (os error 1)"
    );
    assert_eq!(
        d(Step::Mknod, 6, libc::EEXIST),
        "linux.devices[0] (/dev/fuse): mknod: File exists (os error 17)"
    );
    assert_eq!(
        d(Step::Symlink, 0, libc::EACCES),
        "symlink /dev/fd -> /proc/self/fd: symlink: Permission denied (os error 13)"
    );
    assert_eq!(
        d(Step::Mask, 0, libc::ENOTDIR),
        "linux.maskedPaths[0] (/proc/kcore): mask: Not a directory (os error 20)"
    );
    assert_eq!(
        d(Step::ReadonlyRemount, 1, libc::EBUSY),
        "linux.readonlyPaths[1] (/proc/bus): remount read-only: Device or resource busy (os error 16)"
    );
    assert_eq!(
        d(Step::Sysctl, 1, libc::EINVAL),
        "linux.sysctl net.ipv4.ip_forward (/proc/sys/net/ipv4/ip_forward): write: Invalid argument (os error 22)"
    );
    assert_eq!(
        d(Step::Console, 0, libc::ENOENT),
        "console /dev/console: bind console: No such file or directory (os error 2)"
    );
    // cgroup sub-mounts: index = mount << 8 | hierarchy.
    assert_eq!(Step::CgroupMount.index_kind(), IndexKind::Cgroup);
    let text = d(Step::CgroupMount, (4 << 8) | 1, libc::EBUSY);
    // A v1 (or hybrid) host: a v1 hierarchy by name; a pure cgroup2 host has the one.
    let want = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "mounts[4] (cgroup on /sys/fs/cgroup), cgroup2 hierarchy (host /sys/fs/cgroup)"
    } else {
        "mounts[4] (cgroup on /sys/fs/cgroup), hierarchy "
    };
    assert!(text.starts_with(want), "{text}");
    assert!(
        text.ends_with(": mount cgroup hierarchy: Device or resource busy (os error 16)"),
        "{text}"
    );

    // The record survives the pipe encoding.
    let e = ApplyError {
        step: Step::Mount,
        index: 3,
        errno: libc::EPERM,
    };
    let back = ApplyError::from_bytes(&e.to_bytes()).unwrap();
    assert_eq!(
        back.describe(&plan).to_string(),
        d(Step::Mount, 3, libc::EPERM)
    );
}
