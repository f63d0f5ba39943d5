//! The container's root filesystem as the container sees it: its /proc/self/mountinfo,
//! device nodes, masked and read-only paths, sysctls, no_pivot, and a hostile rootfs whose
//! symlinks point at host paths.

mod common;
mod support;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::symlink;

use berth_runtime_core::oci_spec::runtime::{
    Capabilities, Capability, LinuxDevice, LinuxDeviceType,
};
use berth_runtime_core::{CreateOptions, Error};
use common::{Bundle, TempDir};
use support::*;

fn mountinfo_of(out: &TempDir, name: &str) -> Vec<MountInfo> {
    let text = read(out.path().join(name));
    let m = parse_mountinfo(&text);
    assert!(!m.is_empty(), "empty mountinfo");
    m
}

#[track_caller]
fn has_all(list: &[String], want: &[&str], what: &str) {
    for w in want {
        assert!(
            list.iter().any(|o| o == w),
            "{what}: {w:?} missing in {list:?}"
        );
    }
}

#[test]
fn mounts_appear_with_their_options() {
    let host_ro = TempDir::new("berth-ro");
    fs::write(host_ro.path().join("hello"), "from the host").expect("write");
    let (mut b, out) = sh_bundle(
        "cat /proc/self/mountinfo > /out/mountinfo; stat -c %a /dev/shm > /out/shm-mode; \
         cat /hostro/hello > /out/hello; \
         if touch /hostro/x 2>/dev/null; then echo writable; else echo ro; fi > /out/ro; \
         echo data > /scratch/f && cat /scratch/f > /out/scratch",
    );
    add_mount(
        &mut b.spec,
        mount(
            "/scratch",
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "size=1m", "mode=700"],
        ),
    );
    let src = host_ro.path().to_string_lossy().into_owned();
    add_mount(&mut b.spec, mount("/hostro", "bind", &src, &["bind", "ro"]));
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);

    let mi = mountinfo_of(&out, "mountinfo");
    let at = |p: &str| mount_at(&mi, p).unwrap_or_else(|| panic!("no mount on {p}"));

    let root = at("/");
    has_all(&root.opts, &["ro"], "/ (root.readonly)");

    let scratch = at("/scratch");
    assert_eq!(scratch.fstype, "tmpfs");
    has_all(&scratch.opts, &["rw", "nosuid", "nodev"], "/scratch");
    has_all(&scratch.super_opts, &["size=1024k", "mode=700"], "/scratch");
    assert_eq!(read(out.path().join("scratch")), "data");

    let ro = at("/hostro");
    has_all(&ro.opts, &["ro"], "/hostro");
    assert_eq!(read(out.path().join("hello")), "from the host");
    assert_eq!(read(out.path().join("ro")), "ro");
    assert!(!host_ro.path().join("x").exists());

    let proc_ = at("/proc");
    assert_eq!(proc_.fstype, "proc");
    let sys = at("/sys");
    assert_eq!(sys.fstype, "sysfs");
    has_all(&sys.opts, &["ro", "nosuid", "nodev", "noexec"], "/sys");
    let mq = at("/dev/mqueue");
    assert_eq!(mq.fstype, "mqueue");
    has_all(&mq.opts, &["nosuid", "nodev", "noexec"], "/dev/mqueue");
    let pts = at("/dev/pts");
    assert_eq!(pts.fstype, "devpts");
    has_all(&pts.opts, &["nosuid", "noexec"], "/dev/pts");
    has_all(
        &pts.super_opts,
        &["gid=5", "mode=620", "ptmxmode=666"],
        "/dev/pts",
    );
    let dev = at("/dev");
    assert_eq!(dev.fstype, "tmpfs");
    has_all(&dev.super_opts, &["mode=755"], "/dev");
    let shm = at("/dev/shm");
    assert_eq!(shm.fstype, "tmpfs");
    has_all(&shm.opts, &["nosuid", "nodev", "noexec"], "/dev/shm");
    // tmpfs shows no mode= for its default 1777: look at the directory instead.
    assert_eq!(read(out.path().join("shm-mode")), "1777");
    // The host's mounts are gone after pivot_root.
    assert!(
        mi.iter()
            .all(|m| !m.point.starts_with("/tmp/") && m.point != "/work"),
        "host mounts visible"
    );
}

#[test]
fn readonly_root_refuses_writes() {
    let script = "if touch /newfile 2>/out/err; then echo ok; else echo fail; fi > /out/result";
    let (b, out) = sh_bundle(script);
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);
    assert_eq!(read(out.path().join("result")), "fail");
    assert!(
        read(out.path().join("err")).contains("Read-only"),
        "{}",
        read(out.path().join("err"))
    );
    assert!(!b.rootfs().join("newfile").exists());

    let (mut b, out) = sh_bundle(script);
    b.spec
        .root_mut()
        .as_mut()
        .expect("root")
        .set_readonly(Some(false));
    assert_eq!(h.run(&b), 0);
    assert_eq!(read(out.path().join("result")), "ok");
    assert!(
        b.rootfs().join("newfile").exists(),
        "a write to a rw root lands in the rootfs"
    );
}

#[test]
fn masked_and_readonly_paths() {
    let (mut b, out) = sh_bundle(
        "for f in /proc/kcore /proc/timer_list /proc/version; do \
           if [ -e $f ]; then echo \"$f $(wc -c < $f)\"; else echo \"$f missing\"; fi; \
         done > /out/masked; \
         ls -A /sys/firmware | wc -l > /out/firmware; \
         if echo 1 > /proc/sys/net/ipv4/ip_forward; then echo written; else echo refused; fi > /out/sys 2>/dev/null; \
         cat /proc/self/mountinfo > /out/mountinfo",
    );
    // The default list (with /proc/kcore, /proc/timer_list, /sys/firmware) plus a file every
    // kernel has.
    let linux = b.spec.linux_mut().as_mut().expect("linux");
    let mut masked = linux.masked_paths().clone().unwrap_or_default();
    masked.push("/proc/version".into());
    linux.set_masked_paths(Some(masked));
    let host_forward = read("/proc/sys/net/ipv4/ip_forward");
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);

    let masked = read(out.path().join("masked"));
    let host_has = |p: &str| std::path::Path::new(p).exists();
    assert!(!read("/proc/version").is_empty());
    let mut want = Vec::new();
    for f in ["/proc/kcore", "/proc/timer_list", "/proc/version"] {
        // Masking a path the kernel doesn't have is skipped: it stays missing.
        want.push(if host_has(f) {
            format!("{f} 0")
        } else {
            format!("{f} missing")
        });
    }
    assert_eq!(masked.lines().collect::<Vec<_>>(), want, "masked paths");
    assert!(
        fs::read_dir("/sys/firmware")
            .map(|d| d.count() > 0)
            .unwrap_or(false),
        "host /sys/firmware"
    );
    assert_eq!(
        read(out.path().join("firmware")),
        "0",
        "/sys/firmware is not masked"
    );
    assert_eq!(
        read(out.path().join("sys")),
        "refused",
        "/proc/sys is writable"
    );
    let mi = mountinfo_of(&out, "mountinfo");
    let sys = mount_at(&mi, "/proc/sys").expect("/proc/sys is not a mount");
    has_all(&sys.opts, &["ro"], "/proc/sys");
    assert_eq!(read("/proc/sys/net/ipv4/ip_forward"), host_forward);
}

fn device(path: &str, major: i64, minor: i64, mode: u32, uid: u32, gid: u32) -> LinuxDevice {
    let mut d = LinuxDevice::default();
    d.set_path(path.into());
    d.set_typ(LinuxDeviceType::C);
    d.set_major(major);
    d.set_minor(minor);
    d.set_file_mode(Some(mode));
    d.set_uid(Some(uid));
    d.set_gid(Some(gid));
    d
}

#[test]
fn device_nodes() {
    let (mut b, out) = sh_bundle(
        "for d in null zero full random urandom tty; do stat -c \"$d %F %t %T\" /dev/$d; done > /out/std; \
         stat -c '%F %t %T %a %u %g' /dev/berth-full > /out/custom; \
         head -c 5 /dev/berth-full | wc -c > /out/custom-read; \
         for l in fd stdin stdout stderr; do echo \"$l $(readlink /dev/$l)\"; done > /out/links; \
         if [ -c /dev/ptmx ]; then echo char; else echo missing; fi > /out/ptmx",
    );
    b.spec
        .linux_mut()
        .as_mut()
        .expect("linux")
        .set_devices(Some(vec![device(
            "/dev/berth-full",
            1,
            7,
            0o664,
            1000,
            1001,
        )]));
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);
    let std_devs = read(out.path().join("std"));
    for want in [
        "null character special file 1 3",
        "zero character special file 1 5",
        "full character special file 1 7",
        "random character special file 1 8",
        "urandom character special file 1 9",
        "tty character special file 5 0",
    ] {
        assert!(
            std_devs.lines().any(|l| l == want),
            "{want:?} not in:\n{std_devs}"
        );
    }
    assert_eq!(
        read(out.path().join("custom")),
        "character special file 1 7 664 1000 1001"
    );
    assert_eq!(read(out.path().join("custom-read")), "5");
    let links = read(out.path().join("links"));
    for want in [
        "fd /proc/self/fd",
        "stdin /proc/self/fd/0",
        "stdout /proc/self/fd/1",
        "stderr /proc/self/fd/2",
    ] {
        assert!(
            links.lines().any(|l| l == want),
            "{want:?} not in:\n{links}"
        );
    }
    assert_eq!(read(out.path().join("ptmx")), "char");
    // Nothing was created on the host's /dev.
    assert!(!std::path::Path::new("/dev/berth-full").exists());
}

#[test]
fn sysctl_in_a_new_network_namespace() {
    let (mut b, out) = sh_bundle(
        "cat /proc/sys/net/ipv4/ip_forward > /out/forward; cat /proc/sys/net/ipv4/ip_local_port_range > /out/ports",
    );
    b.spec
        .linux_mut()
        .as_mut()
        .expect("linux")
        .set_sysctl(Some(HashMap::from([
            ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            (
                "net.ipv4.ip_local_port_range".to_string(),
                "40000 50000".to_string(),
            ),
        ])));
    let host_forward = read("/proc/sys/net/ipv4/ip_forward");
    let host_ports = read("/proc/sys/net/ipv4/ip_local_port_range");
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);
    assert_eq!(read(out.path().join("forward")), "1");
    assert_eq!(
        read(out.path().join("ports"))
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["40000", "50000"]
    );
    assert_eq!(read("/proc/sys/net/ipv4/ip_forward"), host_forward);
    assert_eq!(read("/proc/sys/net/ipv4/ip_local_port_range"), host_ports);

    // A sysctl that is not namespaced would change the host: refused, naming it.
    let mut b2 = Bundle::new();
    b2.spec
        .linux_mut()
        .as_mut()
        .expect("linux")
        .set_sysctl(Some(HashMap::from([(
            "kernel.panic".to_string(),
            "7".to_string(),
        )])));
    let host_panic = read("/proc/sys/kernel/panic");
    let id = h.id("sysctl");
    match h.create(&id, &b2) {
        Err(e @ Error::Config(_)) => assert_err_contains(&e, &["kernel.panic"]),
        other => panic!("non-namespaced sysctl: {other:?}"),
    }
    assert_eq!(read("/proc/sys/kernel/panic"), host_panic);
    assert!(h.leftover_state().is_empty());
}

#[test]
fn no_pivot_still_confines_the_container() {
    let (b, out) =
        sh_bundle("ls / > /out/root; ls -A /tmp | wc -l > /out/tmp; cat /bin/marker > /out/marker");
    fs::write(b.rootfs().join("bin/marker"), "rootfs").expect("marker");
    b.write();
    let h = Harness::new();
    let id = h.id("nopivot");
    let c = h
        .create_opts(
            &id,
            &CreateOptions::new(b.path().to_path_buf()).no_pivot(true),
        )
        .expect("create --no-pivot");
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    h.rt.delete(&id, false).expect("delete");
    let mut want: Vec<String> = fs::read_dir(b.rootfs())
        .expect("ls rootfs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    want.sort();
    let mut got: Vec<String> = read(out.path().join("root"))
        .lines()
        .map(str::to_string)
        .collect();
    got.sort();
    assert_eq!(got, want, "/ inside is not the rootfs");
    assert_eq!(
        read(out.path().join("tmp")),
        "0",
        "the host's /tmp is visible"
    );
    assert_eq!(read(out.path().join("marker")), "rootfs");
}

#[test]
fn hostile_rootfs_symlink_cannot_redirect_a_mount_to_the_host() {
    let host_target = TempDir::new("berth-hostile");
    let (mut b, out) = sh_bundle(
        "cat /proc/self/mountinfo > /out/mountinfo; echo inside > /mnt/x/file && echo wrote > /out/wrote",
    );
    // rootfs/mnt -> /tmp/berth-hostile-...: an absolute link to a host dir.
    let _ = fs::remove_dir(b.rootfs().join("mnt"));
    symlink(host_target.path(), b.rootfs().join("mnt")).expect("symlink");
    add_mount(&mut b.spec, mount("/mnt/x", "tmpfs", "tmpfs", &["size=1m"]));
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);

    let left: Vec<_> = fs::read_dir(host_target.path()).expect("ls").collect();
    assert!(
        left.is_empty(),
        "the host dir behind the symlink was touched: {left:?}"
    );
    assert_eq!(read(out.path().join("wrote")), "wrote");
    // The mount landed inside the rootfs, on the link target taken relative to the root.
    let mi = mountinfo_of(&out, "mountinfo");
    let point = format!("{}/x", host_target.path().display());
    let m = mount_at(&mi, &point).unwrap_or_else(|| {
        panic!(
            "no mount on {point}: {:?}",
            mi.iter().map(|m| &m.point).collect::<Vec<_>>()
        )
    });
    assert_eq!(m.fstype, "tmpfs");
    let inside_dir = b
        .rootfs()
        .join(host_target.path().strip_prefix("/").expect("absolute"))
        .join("x");
    assert!(
        inside_dir.is_dir(),
        "mount point not created inside the rootfs: {}",
        inside_dir.display()
    );
    assert!(
        !inside_dir.join("file").exists(),
        "the tmpfs write went to the rootfs dir"
    );
}

#[test]
fn no_pivot_leaves_no_procfs_a_nested_user_namespace_could_remount() {
    // MS_MOVE leaves the runtime's /proc and /sys under the new root; a fully visible
    // procfs lets a process in a nested user + mount + pid namespace mount a fresh one
    // (the kernel's mnt_too_revealing check). runc 1.1 refuses that mount with --no-pivot
    // too; with pivot_root the old root is gone anyway. Mapping uid 0 in the nested
    // namespace needs CAP_SETFCAP (and CAP_SETUID/SETGID/SYS_ADMIN for unshare).
    for no_pivot in [false, true] {
        let (mut b, out) = sh_bundle(
            "mkdir -p /tmp/p; unshare -mrpf sh -c 'mount -t proc proc /tmp/p && echo MOUNTED || echo REFUSED' > /out/r 2>/dev/null",
        );
        let extra = [
            Capability::Setfcap,
            Capability::Setuid,
            Capability::Setgid,
            Capability::SysAdmin,
        ];
        let p = b.spec.process_mut().as_mut().expect("process");
        let mut caps = p.capabilities().clone().expect("capabilities");
        let add = |set: &Option<Capabilities>| {
            let mut s = set.clone().unwrap_or_default();
            s.extend(extra);
            Some(s)
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
        p.set_capabilities(Some(caps));
        b.spec
            .root_mut()
            .as_mut()
            .expect("root")
            .set_readonly(Some(false));
        b.write();
        let h = Harness::new();
        let id = h.id("nopivotproc");
        let c = h
            .create_opts(
                &id,
                &CreateOptions::new(b.path().to_path_buf()).no_pivot(no_pivot),
            )
            .expect("create");
        h.rt.start(&id).expect("start");
        assert_eq!(h.wait(&c), 0);
        h.rt.delete(&id, false).expect("delete");
        assert_eq!(read(out.path().join("r")), "REFUSED", "no_pivot {no_pivot}");
    }
}
