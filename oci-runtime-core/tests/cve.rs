//! Regression tests for the container escapes runc has had to fix, each mounted from a hostile
//! rootfs or config against the whole runtime; every test shows the attack fails and the host
//! is unchanged. The rootfs crate's own `rootfs/tests/hostile.rs` covers the same classes one
//! level down (symlinked mount targets, /proc and /sys on symlinks, fake /dev/null for masks,
//! a sysctl file or /dev/pts replaced between the steps of the setup).
//!
//! - CVE-2019-5736: `/proc/self/exe` of the container process is never the runtime binary
//!   (the exe guard, `src/exe_guard.rs`), and the init is not dumpable while it is set up.
//! - CVE-2024-21626: `process.cwd` through a leaked fd never lands on a host directory.
//! - CVE-2021-30465: a mount target swapped for a symlink during setup stays inside the rootfs.
//! - CVE-2025-31133, CVE-2025-52565, CVE-2025-52881: /dev/null, /dev/console and /proc/sys
//!   redirected with symlinks or mounts.

mod common;
mod support;

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_runtime_core::CreateOptions;
use berth_runtime_core::oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Spec};
use common::{Bundle, TempDir, unique};
use support::console::read_master;
use support::*;

/// The role a re-executed copy of this test binary plays (see `cve_2019_5736_role`).
const ROLE: &str = "BERTH_CVE_ROLE";

fn core_pattern() -> String {
    fs::read_to_string("/proc/sys/kernel/core_pattern").expect("read core_pattern")
}

fn process(spec: &mut Spec) -> &mut berth_runtime_core::oci_spec::runtime::Process {
    spec.process_mut().as_mut().expect("process")
}

/// Joins the namespace of `kind` at `path` (the entry in the default config is replaced).
fn join_ns(spec: &mut Spec, kind: LinuxNamespaceType, path: &Path) {
    let linux = spec.linux_mut().as_mut().expect("linux");
    let mut list = linux.namespaces().clone().unwrap_or_default();
    list.retain(|n| n.typ() != kind);
    let mut n = LinuxNamespace::default();
    n.set_typ(kind);
    n.set_path(Some(path.to_path_buf()));
    list.push(n);
    linux.set_namespaces(Some(list));
}

/// Drops the config's mount on `dest` (e.g. the /dev tmpfs, so the image's /dev is used).
fn drop_mount(spec: &mut Spec, dest: &str) {
    let mounts: Vec<_> = spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.destination() != Path::new(dest))
        .collect();
    spec.set_mounts(Some(mounts));
}

/// The host mount points (of the test process's namespace) whose path contains `tag`.
fn host_mounts_with(tag: &str) -> Vec<String> {
    parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"))
        .into_iter()
        .map(|m| m.point)
        .filter(|p| p.contains(tag))
        .collect()
}

fn dev_ino(p: &Path) -> String {
    let m = fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    format!("{}:{}", m.dev(), m.ino())
}

// ---------------------------------------------------------------------------------------------
// CVE-2019-5736

/// The attack runs in a throwaway copy of this test binary (so the "runtime binary" the
/// container could reach is that copy, never a real file), which runs `cve_2019_5736_role`.
/// The copy's content is unchanged afterwards.
#[test]
fn cve_2019_5736_runtime_binary_is_never_exposed() {
    let dir = TempDir::new("berth-exe-copy");
    let copy = dir.path().join("berth-runtime-copy");
    common::copy_executable(&std::env::current_exe().expect("current_exe"), &copy);
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod");
    let before = fs::read(&copy).expect("read copy");
    let out = Command::new(&copy)
        .args([
            "--exact",
            "cve_2019_5736_role",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "attack")
        .output()
        .expect("run the copy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "attack run failed:\n{text}");
    assert!(text.contains("1 passed"), "the role did not run:\n{text}");
    assert!(
        fs::read(&copy).expect("read copy") == before,
        "the runtime binary was modified"
    );
}

/// Copies the dynamic loader and libraries `exe` needs into `rootfs` (same paths), so that
/// the host binary *could* run in the container if the guard let it. The list is what ldd(1)
/// prints, asked of the loader itself (`LD_TRACE_LOADED_OBJECTS`: it lists, runs nothing),
/// so that no ldd script is needed (the VM lane's image has none).
fn copy_libs(exe: &Path, rootfs: &Path) {
    let out = Command::new(exe)
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .expect("list the libraries of the test binary");
    assert!(out.status.success(), "LD_TRACE_LOADED_OBJECTS: {out:?}");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(p) = path.filter(|p| p.exists()) {
            let dst = rootfs.join(p.strip_prefix("/").expect("absolute"));
            fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir lib dir");
            fs::copy(&p, &dst).expect("copy lib");
        }
    }
}

/// The scanner: in its own container, watches every process of the pid namespace for an exe
/// that is the runtime binary (`want`, dev:ino) until `/out/stop` exists.
const SCANNER: &str = r#"want=$(cat /out/want)
self=$(stat -L -c %d:%i /proc/self/exe)
echo "$self" > /out/self
touch /out/ready
while [ ! -e /out/stop ]; do
  for p in /proc/[0-9]*; do
    s=$(stat -L -c %d:%i $p/exe 2>/dev/null) || continue
    [ "$s" = "$self" ] && continue
    echo "$p $s $(readlink $p/exe)" >> /out/seen
    [ "$s" = "$want" ] && echo "$p" >> /out/hits
  done
done
exit 0"#;

/// Run by `cve_2019_5736_runtime_binary_is_never_exposed` in a copy of this binary
/// (`BERTH_CVE_ROLE=attack`), and, were the guard broken, by the container as the interpreter
/// of `#!/proc/self/exe` (`BERTH_CVE_ROLE=victim`: it then lingers so the scanner sees it).
#[test]
#[ignore = "run by cve_2019_5736_runtime_binary_is_never_exposed in a copy of this binary"]
fn cve_2019_5736_role() {
    match std::env::var(ROLE).as_deref() {
        Ok("attack") => attack_5736(),
        Ok("victim") => std::thread::sleep(Duration::from_secs(5)),
        _ => {}
    }
}

fn attack_5736() {
    let me = std::env::current_exe().expect("current_exe");
    // Container A: the scanner.
    let (a, out) = sh_bundle(SCANNER);
    fs::write(out.path().join("want"), dev_ino(&me)).expect("write want");
    // Container B: its process is a script whose interpreter is /proc/self/exe, in A's pid
    // namespace, with what the runtime binary needs to run there.
    let mut b = Bundle::new();
    copy_libs(&me, &b.rootfs());
    let evil = b.rootfs().join("evil");
    fs::write(&evil, "#!/proc/self/exe\n").expect("write script");
    fs::set_permissions(&evil, fs::Permissions::from_mode(0o755)).expect("chmod");
    b.args(&[
        "/evil",
        "--exact",
        "cve_2019_5736_role",
        "--ignored",
        "--test-threads=1",
    ]);
    let p = process(&mut b.spec);
    let mut env = p.env().clone().unwrap_or_default();
    env.push(format!("{ROLE}=victim"));
    p.set_env(Some(env));
    let h = Harness::new();

    let ida = h.id("scanner");
    let ca = h.create(&ida, &a).expect("create scanner");
    h.rt.start(&ida).expect("start scanner");
    assert!(
        wait_until(Duration::from_secs(10), || out
            .path()
            .join("ready")
            .exists()),
        "scanner never started"
    );
    join_ns(
        &mut b.spec,
        LinuxNamespaceType::Pid,
        &PathBuf::from(format!("/proc/{}/ns/pid", ca.pid())),
    );
    let idb = h.id("victim");
    let cb = h.create(&idb, &b).expect("create victim");
    // The created init is still a clone of the runtime binary: not dumpable, the scanner
    // can't reach its exe while it waits for start.
    std::thread::sleep(Duration::from_millis(500));
    h.rt.start(&idb).expect("start victim");
    let code = h.wait(&cb);
    h.rt.delete(&idb, false).expect("delete victim");
    fs::write(out.path().join("stop"), "").expect("stop scanner");
    assert_eq!(h.wait(&ca), 0, "scanner");
    h.rt.delete(&ida, false).expect("delete scanner");

    // The scanner works: it saw its own busybox as the image's busybox.
    assert_eq!(
        read(out.path().join("self")),
        dev_ino(&a.rootfs().join("bin/busybox"))
    );
    let seen = fs::read_to_string(out.path().join("seen")).unwrap_or_default();
    let hits = fs::read_to_string(out.path().join("hits")).unwrap_or_default();
    assert!(
        hits.is_empty(),
        "a container process reached the runtime binary:\n{hits}\nseen:\n{seen}"
    );
    // The stub refused to run as the interpreter of #!/proc/self/exe.
    assert_eq!(code, 126, "seen:\n{seen}");
    println!("other exes the scanner saw:\n{seen}");
}

// ---------------------------------------------------------------------------------------------
// CVE-2024-21626

/// Opens `path` (a directory) *without* O_CLOEXEC.
fn open_inheritable_dir(path: &Path) -> OwnedFd {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: c is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    assert!(fd >= 0, "open {}", path.display());
    // SAFETY: a new fd we own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[test]
fn cve_2024_21626_cwd_through_a_leaked_fd_is_never_a_host_dir() {
    let h = Harness::exclusive();
    let host = TempDir::new("berth-host-dir");
    fs::write(host.path().join("host-secret"), "host").expect("write");
    let leaked = open_inheritable_dir(host.path());
    assert!(
        leaked.as_raw_fd() < 20,
        "the leaked fd is outside the range tried"
    );
    let host_str = host.path().to_string_lossy().into_owned();
    let state_root = h.state_root().to_string_lossy().into_owned();
    let mut refused = Vec::new();
    let mut ran = Vec::new();
    for n in 3..20 {
        let (mut b, out) = sh_bundle(
            "pwd > /out/pwd; ls -a > /out/ls; ls -l /proc/self/fd/ > /out/fds; \
             cat host-secret ../../../host-secret > /out/leak 2>/dev/null; true",
        );
        process(&mut b.spec).set_cwd(PathBuf::from(format!("/proc/self/fd/{n}")));
        let id = h.id("cwd");
        let c = match h.create(&id, &b) {
            Ok(c) => c,
            Err(e) => {
                refused.push((n, e.to_string()));
                continue;
            }
        };
        h.rt.start(&id).expect("start");
        assert_eq!(h.wait(&c), 0, "cwd fd {n}");
        h.rt.delete(&id, false).expect("delete");
        ran.push(n);
        let pwd = read(out.path().join("pwd"));
        let ls = read(out.path().join("ls"));
        let fds = read(out.path().join("fds"));
        let leak = fs::read_to_string(out.path().join("leak")).unwrap_or_default();
        assert!(
            pwd.starts_with('/'),
            "fd {n}: cwd outside the root: {pwd:?}"
        );
        assert!(leak.is_empty(), "fd {n}: read a host file");
        for bad in ["host-secret", "exec.fifo", "state.json"] {
            assert!(!ls.contains(bad), "fd {n}: cwd is a host dir: {ls}");
        }
        for bad in [&host_str, &state_root] {
            assert!(!fds.contains(bad.as_str()), "fd {n}: host fd leaked: {fds}");
        }
    }
    // With the leaked fd still open, an ordinary container sees stdio only (`ls` has its
    // own directory open as the next fd) and no link to the host dir or the state dir.
    let (b, out) = sh_bundle("ls -l /proc/self/fd/ > /out/fds; ls /proc/self/fd/ > /out/nums");
    assert_eq!(h.run(&b), 0);
    let fds = read(out.path().join("fds"));
    for bad in [&host_str, &state_root] {
        assert!(!fds.contains(bad.as_str()), "host fd leaked: {fds}");
    }
    assert_eq!(
        read(out.path().join("nums"))
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
    drop(leaked);
    println!("refused: {refused:#?}\nran: {ran:?}");
    // Every /proc/self/fd/N was refused as a cwd (the init resolves it inside the container
    // without magic links), or ran inside the container (checked above).
    assert_eq!(refused.len() + ran.len(), 17);
    for (n, e) in &refused {
        assert!(e.contains("process.cwd"), "fd {n}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// CVE-2021-30465

#[test]
fn cve_2021_30465_static_symlink_to_outside_stays_inside() {
    let host = TempDir::new("berth-outside");
    let tag = unique("outside");
    let (mut b, out) = sh_bundle("cat /proc/self/mountinfo > /out/mountinfo");
    let target = format!("/../../../../../../..{}", host.path().display());
    symlink(&target, b.rootfs().join("escape")).expect("symlink");
    add_mount(
        &mut b.spec,
        mount("/escape", "tmpfs", "tmpfs", &["size=64k"]),
    );
    add_mount(
        &mut b.spec,
        mount(&format!("/escape/{tag}"), "tmpfs", "tmpfs", &["size=64k"]),
    );
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);
    assert!(
        fs::read_dir(host.path())
            .expect("read host dir")
            .next()
            .is_none(),
        "something was created in the host dir"
    );
    assert!(host_mounts_with(&tag).is_empty());
    // The mounts landed on the symlink's target inside the rootfs.
    let mi = parse_mountinfo(&read(out.path().join("mountinfo")));
    let inside = format!("{}/{tag}", host.path().display());
    assert!(mount_at(&mi, &inside).is_some(), "no mount on {inside}");
}

#[test]
fn cve_2021_30465_mount_target_swapped_by_another_container_stays_inside() {
    let vol = TempDir::new("berth-shared-vol");
    fs::set_permissions(vol.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let vol_src = vol.path().to_string_lossy().into_owned();
    let tag = unique("evil");
    let host_evil = Path::new("/").join(&tag);
    // Both containers bind the shared volume on /vol.
    let vol_bundle = || {
        let mut b = Bundle::new();
        fs::create_dir_all(b.rootfs().join("vol")).expect("mkdir");
        add_mount(
            &mut b.spec,
            mount("/vol", "bind", &vol_src, &["rbind", "rw"]),
        );
        b
    };
    // Container A flips vol/x between a directory and a symlink to / as fast as it can.
    let mut a = vol_bundle();
    sh(
        &mut a,
        "while [ ! -e /vol/stop ]; do rm -rf /vol/x; mkdir -p /vol/x/sub; rm -rf /vol/x; \
         ln -s / /vol/x; done 2>/dev/null; true",
    );
    // Container B mounts tmpfs below /vol/x.
    let mut b = vol_bundle();
    add_mount(
        &mut b.spec,
        mount(&format!("/vol/x/{tag}"), "tmpfs", "tmpfs", &["size=64k"]),
    );
    let h = Harness::new();
    let ida = h.id("swapper");
    let ca = h.create(&ida, &a).expect("create A");
    h.rt.start(&ida).expect("start A");
    b.write();
    let (mut ok, mut failed) = (0, 0);
    let mut where_: HashMap<String, u32> = HashMap::new();
    for i in 0..200 {
        let id = h.id("victim");
        match h.create_opts(&id, &CreateOptions::new(b.path().to_path_buf())) {
            Ok(c) => {
                ok += 1;
                let mi = parse_mountinfo(
                    &fs::read_to_string(format!("/proc/{}/mountinfo", c.pid()))
                        .expect("victim mountinfo"),
                );
                let points: Vec<String> = mi
                    .iter()
                    .filter(|m| m.point.contains(&tag))
                    .map(|m| m.point.clone())
                    .collect();
                // In B's own view: below its /vol/x, or (symlink followed inside the root)
                // at /<tag> of its rootfs; or gone, when A removed the directory it was on.
                assert!(points.len() <= 1, "iteration {i}: {points:?}");
                let at = points.first().cloned().unwrap_or_else(|| "(gone)".into());
                assert!(
                    [
                        "(gone)",
                        format!("/{tag}").as_str(),
                        format!("/vol/x/{tag}").as_str()
                    ]
                    .contains(&at.as_str()),
                    "iteration {i}: mounted at {at}"
                );
                *where_.entry(at).or_default() += 1;
                h.rt.delete(&id, true).expect("delete");
                h.wait(&c);
            }
            Err(_) => failed += 1,
        }
        assert!(
            !host_evil.exists(),
            "iteration {i}: created {}",
            host_evil.display()
        );
        assert!(host_mounts_with(&tag).is_empty(), "iteration {i}");
    }
    fs::write(vol.path().join("stop"), "").expect("stop");
    assert_eq!(h.wait(&ca), 0);
    h.rt.delete(&ida, false).expect("delete A");
    println!("created {ok}, failed {failed}, mounted at {where_:?}");
    // Nothing but A's own entries in the volume (no tmpfs dir made through the link on the
    // host: that would be /<tag>, checked above).
    for e in fs::read_dir(vol.path()).expect("read vol") {
        let name = e.expect("entry").file_name();
        assert!(
            name == "x" || name == "stop",
            "unexpected {name:?} in the shared volume"
        );
    }
    assert!(ok > 0, "no create succeeded");
}

// ---------------------------------------------------------------------------------------------
// CVE-2025-31133, CVE-2025-52565, CVE-2025-52881

#[test]
fn cve_2025_31133_dev_null_symlink_is_never_used_for_masking() {
    let before = core_pattern();
    let (mut b, out) = sh_bundle(
        "for f in /dev/null /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do \
           [ -e $f ] && stat -c '%n %F %t:%T' $f; done > /out/stat; true",
    );
    // The image's /dev (no tmpfs over it) has null -> core_pattern.
    drop_mount(&mut b.spec, "/dev");
    symlink("/proc/sys/kernel/core_pattern", b.rootfs().join("dev/null")).expect("symlink");
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);
    let stat = read(out.path().join("stat"));
    for line in stat.lines() {
        assert!(
            line.ends_with("character special file 1:3"),
            "not the null device: {line}"
        );
    }
    assert!(stat.starts_with("/dev/null "), "{stat}");
    assert!(stat.lines().count() >= 2, "no masked file checked: {stat}");
    assert_eq!(core_pattern(), before);
}

#[test]
fn cve_2025_52565_dev_console_symlink_is_not_followed() {
    let before = core_pattern();
    let mut b = Bundle::new();
    b.args(&[
        "/bin/sh",
        "-c",
        "echo console=$(stat -c '%F %t' /dev/console); echo bye",
    ]);
    process(&mut b.spec).set_terminal(Some(true));
    drop_mount(&mut b.spec, "/dev");
    fs::create_dir_all(b.rootfs().join("dev/pts")).expect("mkdir");
    symlink(
        "/proc/sys/kernel/core_pattern",
        b.rootfs().join("dev/console"),
    )
    .expect("symlink");
    let h = Harness::new();
    let id = h.id("console");
    let (c, master, _) = h.create_with_console(&id, &b);
    h.rt.start(&id).expect("start");
    let text = read_master(&master, Duration::from_secs(20));
    assert_eq!(h.wait(&c), 0, "{text}");
    h.rt.delete(&id, false).expect("delete");
    // A pty slave (major 136 = 0x88), not the procfs file.
    assert!(
        text.contains("console=character special file 88"),
        "{text:?}"
    );
    assert!(text.contains("bye"), "{text:?}");
    assert_eq!(core_pattern(), before);
    // The symlink was replaced by the mount point, not followed.
    let meta = fs::symlink_metadata(b.rootfs().join("dev/console")).expect("stat");
    assert!(meta.is_file(), "{meta:?}");
}

/// Asks for the sysctl `kernel.domainname = value`.
fn sysctl_domainname(b: &mut Bundle, value: &str) {
    b.spec
        .linux_mut()
        .as_mut()
        .expect("linux")
        .set_sysctl(Some(HashMap::from([(
            "kernel.domainname".to_string(),
            value.to_string(),
        )])));
}

#[test]
fn cve_2025_52881_mounts_into_proc_sys_and_fake_proc_are_refused() {
    let before = core_pattern();
    let h = Harness::new();
    // A config mount over a sysctl file, to redirect the sysctl write.
    let mut b = Bundle::new();
    add_mount(
        &mut b.spec,
        mount(
            "/proc/sys/kernel/domainname",
            "bind",
            "/proc/sys/kernel/core_pattern",
            &["bind"],
        ),
    );
    sysctl_domainname(&mut b, "|/bin/pwned");
    let err = h
        .create(&h.id("sysctl"), &b)
        .expect_err("mount into /proc/sys");
    assert_err_contains(&err, &["/proc/sys/kernel/domainname", "inside /proc"]);

    // /proc itself a bind of a procfs directory that is not a proc root: sysctls refused.
    let mut b = Bundle::new();
    drop_mount(&mut b.spec, "/proc");
    add_mount(&mut b.spec, mount("/proc", "bind", "/proc/sys", &["rbind"]));
    sysctl_domainname(&mut b, "pwned");
    let err = h.create(&h.id("fakeproc"), &b).expect_err("fake /proc");
    assert_err_contains(&err, &["linux.sysctl kernel.domainname"]);
    assert_eq!(core_pattern(), before);
    assert!(h.leftover_state().is_empty());
}
