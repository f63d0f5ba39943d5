//! The "cgroup" mount type on this (hybrid) host: a tmpfs with one mount per
//! host hierarchy, fresh cgroup filesystems with a cgroup namespace, bind
//! mounts of the own cgroup directories without one.

mod common;

use std::fs;

use common::*;

/// Host v1 hierarchies (mount point base name -> super options) and the
/// unified one, from the test process' own mountinfo.
fn host_hierarchies() -> (Vec<(String, Vec<String>)>, Option<String>) {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut v1 = Vec::new();
    let mut unified = None;
    for m in parse_mountinfo(&text) {
        let name = m.mount_point.rsplit('/').next().unwrap().to_string();
        match m.fstype.as_str() {
            "cgroup" if !v1.iter().any(|(n, _)| *n == name) => v1.push((name, m.super_options)),
            "cgroup2" if unified.is_none() => unified = Some(name),
            _ => {}
        }
    }
    (v1, unified)
}

fn is_hybrid() -> bool {
    let (v1, _) = host_hierarchies();
    !v1.is_empty()
}

fn cgroup_config(rootfs: &std::path::Path, ro: bool, cgroupns: bool) -> Config {
    let mut cfg = Config::new(rootfs);
    let ro = if ro { r#", "ro""# } else { "" };
    cfg.mounts = mounts(&format!(
        r#"[
        {{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev"]}},
        {{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
          "options": ["nosuid", "noexec", "nodev", "relatime"{ro}]}}
    ]"#
    ));
    cfg.new_cgroup_ns = cgroupns;
    cfg
}

#[test]
fn hybrid_host_with_cgroup_namespace_gets_fresh_hierarchies() {
    if !is_hybrid() {
        eprintln!("skipped: host is not cgroup v1/hybrid");
        return;
    }
    let dir = TempDir::new("cgroupns");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = cgroup_config(&rootfs, true, true);
    cfg.mounts
        .extend(mounts(r#"[{"destination": "/proc", "type": "proc"}]"#));
    let plan = cfg.prepare().unwrap();
    // Look from inside: mountinfo shows cgroup roots relative to the
    // reader's cgroup namespace.
    let c = spawn(libc::CLONE_NEWCGROUP | libc::CLONE_NEWNET, |ctx| {
        run_plan(&plan)?;
        Err(ctx.exec(&[c"/bin/cat", c"/proc/self/mountinfo"]))
    });
    let inner = parse_mountinfo(c.output());
    let at = |mp: &str| inner.iter().rev().find(|m| m.mount_point == mp).cloned();

    let top = at("/sys/fs/cgroup").unwrap();
    assert_eq!(top.fstype, "tmpfs");
    assert!(
        top.has("ro") && top.has("nosuid") && top.has("noexec") && top.has("nodev"),
        "{top:?}"
    );
    assert!(top.has_super("mode=755"), "{top:?}");

    let (v1, unified) = host_hierarchies();
    for (name, host_opts) in &v1 {
        let m = at(&format!("/sys/fs/cgroup/{name}")).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(m.fstype, "cgroup");
        // A fresh mount in the cgroup namespace: its root is the namespace's
        // root, even for the memory hierarchy where this process sits in a
        // sub-cgroup.
        assert_eq!(m.root, "/", "{m:?}");
        assert!(m.has("ro") && m.has("nosuid"), "{m:?}");
        for opt in host_opts.iter().filter(|o| *o != "rw") {
            assert!(m.has_super(opt), "{name}: {opt} missing in {m:?}");
        }
    }
    if let Some(u) = unified {
        let m = at(&format!("/sys/fs/cgroup/{u}")).unwrap();
        assert_eq!(m.fstype, "cgroup2");
        assert_eq!(m.root, "/");
        assert!(m.has("ro"));
    }
}

#[test]
fn hybrid_host_without_cgroup_namespace_binds_own_cgroups() {
    if !is_hybrid() {
        eprintln!("skipped: host is not cgroup v1/hybrid");
        return;
    }
    let dir = TempDir::new("cgroupbind");
    let rootfs = busybox_rootfs(&dir);
    let cfg = cgroup_config(&rootfs, false, false);
    let plan = cfg.prepare().unwrap();
    let c = spawn(libc::CLONE_NEWNET, |_| run_plan(&plan));
    c.ok();

    // /proc/self/cgroup of the test process = the container process' cgroups.
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let (v1, _) = host_hierarchies();
    for (name, host_opts) in &v1 {
        let m = c.mount_at(&format!("/sys/fs/cgroup/{name}")).unwrap();
        assert_eq!(m.fstype, "cgroup");
        assert!(
            m.has("nosuid") && m.has("noexec") && m.has("nodev") && m.has("rw"),
            "{m:?}"
        );
        let controllers: Vec<&str> = host_opts
            .iter()
            .map(String::as_str)
            .filter(|o| *o != "rw" && *o != "xattr")
            .collect();
        let key = controllers.join(",");
        let path = own
            .lines()
            .find_map(|l| {
                let mut p = l.splitn(3, ':');
                let (_, k, path) = (p.next()?, p.next()?, p.next()?);
                (k == key).then(|| path.to_string())
            })
            .unwrap_or_else(|| panic!("{key} not in /proc/self/cgroup"));
        // The bind shows exactly the own cgroup directory of the hierarchy.
        assert_eq!(m.root, path, "{name}");
    }
    // Content is the real hierarchy.
    assert!(c.root_path("/sys/fs/cgroup/memory/cgroup.procs").exists());
}

#[test]
fn cgroup_mount_options_must_be_flags() {
    let dir = TempDir::new("cgroupopts");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[{"destination": "/sys/fs/cgroup", "type": "cgroup", "options": ["ro", "cpu"]}]"#,
    );
    let e = cfg.prepare().unwrap_err().to_string();
    assert_eq!(
        e,
        "mounts[0].options: \"cpu\": is not a valid option for a cgroup mount"
    );
}
