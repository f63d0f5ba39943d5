//! finish(): sysctl, read-only paths and masked paths.

mod common;

use std::fs;

use common::*;

fn base_config(rootfs: &std::path::Path) -> Config {
    let mut cfg = Config::new(rootfs);
    cfg.mounts = default_mounts();
    cfg
}

#[test]
fn masked_file_and_directory_and_missing_paths() {
    let dir = TempDir::new("masked");
    let rootfs = busybox_rootfs(&dir);
    fs::create_dir(rootfs.join("private")).unwrap();
    fs::write(rootfs.join("private/key"), "k").unwrap();
    let mut cfg = base_config(&rootfs);
    cfg.masked = vec![
        "/etc/secret".into(),
        "/private".into(),
        "/proc/kcore".into(),
        "/proc/does-not-exist".into(),
        "/nothing/here".into(),
    ];
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    // A file is covered by /dev/null: empty, a char device.
    assert_eq!(fs::read_to_string(c.root_path("/etc/secret")).unwrap(), "");
    let m = c.mount_at("/etc/secret").unwrap();
    assert_eq!(m.fstype, "tmpfs"); // the container's /dev tmpfs holds /dev/null
    assert_eq!(m.root, "/null");
    // A directory is covered by an empty read-only tmpfs.
    let m = c.mount_at("/private").unwrap();
    assert_eq!(m.fstype, "tmpfs");
    assert!(m.has("ro"), "{m:?}");
    assert!(
        fs::read_dir(c.root_path("/private"))
            .unwrap()
            .next()
            .is_none()
    );
    // Missing paths are skipped.
    assert!(c.mount_at("/proc/does-not-exist").is_none());
    assert!(c.mount_at("/nothing/here").is_none());
    assert!(!rootfs.join("nothing").exists());
    // The image is untouched.
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/secret")).unwrap(),
        "top secret\n"
    );
}

#[test]
fn readonly_paths() {
    let dir = TempDir::new("ropaths");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = base_config(&rootfs);
    cfg.readonly_paths = vec![
        "/proc/sys".into(),
        "/proc/uptime".into(),
        "/etc".into(),
        "/nope".into(),
    ];
    let plan = cfg.prepare().unwrap();
    let c = spawn(
        libc::CLONE_NEWNET | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC,
        |_| run_plan(&plan),
    );
    c.ok();
    let sys = c.mount_at("/proc/sys").unwrap();
    assert_eq!(sys.fstype, "proc");
    assert_eq!(sys.root, "/sys");
    assert!(sys.has("ro"), "{sys:?}");
    assert!(c.mount_at("/proc/uptime").unwrap().has("ro"));
    let etc = c.mount_at("/etc").unwrap();
    assert!(etc.has("ro"), "{etc:?}");
    let e = fs::write(c.root_path("/etc/new"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    // The proc mount itself stays writable.
    assert!(c.mount_at("/proc").unwrap().has("rw"));
    assert!(c.mount_at("/nope").is_none());
}

#[test]
fn sysctl_in_new_ipc_and_net_namespaces() {
    let dir = TempDir::new("sysctl");
    let rootfs = busybox_rootfs(&dir);
    let host_shmmax = fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let host_fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let mut cfg = base_config(&rootfs);
    cfg.sysctl
        .insert("kernel.shmmax".into(), "123456789".into());
    cfg.sysctl.insert("net.ipv4.ip_forward".into(), "1".into());
    // Sysctls are written before /proc/sys becomes read-only.
    cfg.readonly_paths = vec!["/proc/sys".into()];
    let plan = cfg.prepare().unwrap();
    let c = spawn(NEWIPC_NET, |ctx| {
        run_plan(&plan)?;
        // These sysctls are per namespace of the reader: read them inside.
        Err(ctx.exec(&[
            c"/bin/cat",
            c"/proc/sys/kernel/shmmax",
            c"/proc/sys/net/ipv4/ip_forward",
        ]))
    });
    assert_eq!(c.output(), "123456789\n1\n");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        host_shmmax
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );
}

#[test]
fn sysctl_errors_name_the_key() {
    let dir = TempDir::new("sysctl-err");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = base_config(&rootfs);
    cfg.sysctl.insert("kernel.no_such_knob".into(), "1".into());
    let plan = cfg.prepare().unwrap();
    let c = spawn(NEWIPC_NET, |_| run_plan(&plan));
    assert_eq!(
        c.report,
        "ERR linux.sysctl kernel.no_such_knob (/proc/sys/kernel/no_such_knob): open /proc/sys file: \
         No such file or directory (os error 2)\n"
    );
}

#[test]
fn sysctl_refuses_files_that_are_not_procfs() {
    // No /proc mount: /proc/sys/... would be a plain file of the image.
    let dir = TempDir::new("sysctl-notproc");
    let rootfs = busybox_rootfs(&dir);
    fs::create_dir_all(rootfs.join("proc/sys/kernel")).unwrap();
    fs::write(rootfs.join("proc/sys/kernel/shmmax"), "old").unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.sysctl.insert("kernel.shmmax".into(), "1".into());
    let plan = cfg.prepare().unwrap();
    let c = spawn(NEWIPC_NET, |_| run_plan(&plan));
    assert!(
        c.report
            .contains("open /proc/sys file: Invalid cross-device link"),
        "{}",
        c.report
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("proc/sys/kernel/shmmax")).unwrap(),
        "old"
    );
}

#[test]
fn masks_and_readonly_paths_without_proc_in_the_container() {
    // Without a /proc mount, /proc/self/fd cannot be used after the pivot:
    // binds go through open_tree/move_mount, the mask tmpfs through fsmount.
    let dir = TempDir::new("noproc");
    let rootfs = busybox_rootfs(&dir);
    fs::create_dir(rootfs.join("private")).unwrap();
    fs::write(rootfs.join("private/key"), "k").unwrap();
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(r#"[{"destination": "/dev", "type": "tmpfs"}]"#);
    cfg.masked = vec!["/etc/secret".into(), "/private".into()];
    cfg.readonly_paths = vec!["/bin".into()];
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    assert!(c.mount_at("/proc").is_none());
    assert_eq!(fs::read_to_string(c.root_path("/etc/secret")).unwrap(), "");
    let p = c.mount_at("/private").unwrap();
    assert!(p.fstype == "tmpfs" && p.has("ro"), "{p:?}");
    assert!(
        fs::read_dir(c.root_path("/private"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(c.mount_at("/bin").unwrap().has("ro"));
}
