//! `process.cwd`: created inside the rootfs (like runc) after the mounts and
//! before the root switch and the read-only remount of the root.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use berth_rootfs::{ApplyError, Step};
use common::*;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn is_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

fn entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn missing_cwd_is_created_with_mode_0755() {
    let dir = TempDir::new("cwd-create");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.cwd = Some("/work/./a/../b/c".into());
    let plan = cfg.prepare().unwrap();
    // The process umask does not matter.
    let c = spawn(0, |_| {
        // SAFETY: test child; umask cannot fail.
        unsafe { libc::umask(0o077) };
        run_plan(&plan)
    });
    c.ok();
    for p in ["work", "work/b", "work/b/c"] {
        assert!(is_dir(&rootfs.join(p)), "{p}");
        assert_eq!(mode(&rootfs.join(p)), 0o755, "{p}");
    }
    assert!(!rootfs.join("work/a").exists());
    assert!(is_dir(&c.root_path("/work/b/c")));
}

#[test]
fn existing_cwd_is_left_alone() {
    let dir = TempDir::new("cwd-existing");
    let rootfs = busybox_rootfs(&dir);
    fs::create_dir_all(rootfs.join("home/app")).unwrap();
    fs::set_permissions(rootfs.join("home/app"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(rootfs.join("home/app/data"), "data").unwrap();
    // A cwd that is a symlink to a directory of the image is fine too.
    symlink("home/app", rootfs.join("app")).unwrap();
    for cwd in ["/home/app", "/app", "/", "/etc/"] {
        let mut cfg = Config::new(&rootfs);
        cfg.mounts = default_mounts();
        cfg.cwd = Some(cwd.into());
        let plan = cfg.prepare().unwrap();
        let c = spawn(0, |_| run_plan(&plan));
        c.ok();
        assert_eq!(mode(&rootfs.join("home/app")), 0o700, "{cwd}");
        assert_eq!(entries(&rootfs.join("home/app")), ["data"], "{cwd}");
        assert!(
            fs::symlink_metadata(rootfs.join("app"))
                .unwrap()
                .is_symlink()
        );
    }
}

#[test]
fn cwd_below_a_tmpfs_mount_lands_in_the_tmpfs() {
    let dir = TempDir::new("cwd-tmpfs");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = mounts(
        r#"[{"destination": "/proc", "type": "proc"},
            {"destination": "/scratch", "type": "tmpfs", "options": ["mode=1777"]}]"#,
    );
    cfg.cwd = Some("/scratch/job/1".into());
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    // In the container's tmpfs, not in the image's directory below it.
    assert!(is_dir(&c.root_path("/scratch/job/1")));
    assert_eq!(mode(&c.root_path("/scratch/job")), 0o755);
    let scratch = fs::metadata(c.root_path("/scratch")).unwrap();
    let job = fs::metadata(c.root_path("/scratch/job")).unwrap();
    assert_eq!(scratch.dev(), job.dev());
    assert_eq!(c.mount_at("/scratch").unwrap().fstype, "tmpfs");
    assert!(entries(&rootfs.join("scratch")).is_empty());
}

#[test]
fn cwd_is_created_before_the_read_only_root_remount() {
    let dir = TempDir::new("cwd-ro");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.mounts = default_mounts();
    cfg.readonly = true;
    cfg.cwd = Some("/srv/app".into());
    let plan = cfg.prepare().unwrap();
    let c = spawn(0, |_| run_plan(&plan));
    c.ok();
    assert!(c.mount_at("/").unwrap().has("ro"));
    assert!(is_dir(&c.root_path("/srv/app")));
    assert!(is_dir(&rootfs.join("srv/app")));
}

#[test]
fn cwd_through_symlinks_is_created_inside_the_rootfs() {
    let dir = TempDir::new("cwd-hostile");
    let rootfs = busybox_rootfs(&dir);
    let host = TempDir::new("host-cwd-target");
    fs::write(host.join("precious"), "host data").unwrap();
    let host_abs = host.path().to_str().unwrap().to_string();
    // An absolute link to an existing host directory, a relative one that
    // climbs out, and a dangling one into a host path that does not exist.
    symlink(&host_abs, rootfs.join("abs")).unwrap();
    symlink(format!("../../../../../..{host_abs}"), rootfs.join("rel")).unwrap();
    let missing = format!("{host_abs}-missing/deep");
    symlink(&missing, rootfs.join("dangling")).unwrap();

    let inside = |p: &str| rootfs.join(p.trim_start_matches('/'));
    for (cwd, created) in [
        ("/abs/work", format!("{host_abs}/work")),
        ("/rel/sub/dir", format!("{host_abs}/sub/dir")),
        ("/dangling/x", format!("{missing}/x")),
    ] {
        let mut cfg = Config::new(&rootfs);
        cfg.mounts = default_mounts();
        cfg.cwd = Some(cwd.into());
        let plan = cfg.prepare().unwrap();
        let c = spawn(0, |_| run_plan(&plan));
        c.ok();
        assert!(is_dir(&inside(&created)), "{cwd}: {created}");
        // (Not `root_path(cwd)`: an absolute link below /proc/<pid>/root is
        // followed from the caller's root.)
        assert!(is_dir(&c.root_path(&created)), "{cwd}");
    }
    // The host is untouched.
    assert_eq!(entries(host.path()), ["precious"]);
    assert!(!PathBuf::from(format!("{host_abs}-missing")).exists());
    // The links themselves are still links.
    for l in ["abs", "rel", "dangling"] {
        assert!(fs::symlink_metadata(rootfs.join(l)).unwrap().is_symlink());
    }
}

#[test]
fn cwd_that_is_not_a_directory_is_an_error() {
    let dir = TempDir::new("cwd-file");
    let rootfs = busybox_rootfs(&dir);
    symlink("/etc/passwd", rootfs.join("to-file")).unwrap();
    for cwd in ["/etc/passwd", "/etc/passwd/sub", "/to-file", "/bin/sh/x"] {
        let mut cfg = Config::new(&rootfs);
        cfg.mounts = default_mounts();
        cfg.cwd = Some(cwd.into());
        let plan = cfg.prepare().unwrap();
        let c = spawn(0, |_| run_plan(&plan));
        assert_eq!(
            c.report,
            format!("ERR process.cwd {cwd}: create directory: Not a directory (os error 20)\n"),
        );
        drop(c);
    }
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/passwd")).unwrap(),
        "root:x:0:0:root:/:/bin/sh\n"
    );
}

#[test]
fn cwd_prepare_errors_and_description() {
    let dir = TempDir::new("cwd-prepare");
    let rootfs = busybox_rootfs(&dir);
    let mut cfg = Config::new(&rootfs);
    cfg.cwd = Some("relative/dir".into());
    assert_eq!(
        cfg.prepare().unwrap_err().to_string(),
        "process.cwd \"relative/dir\": must be an absolute path"
    );
    cfg.cwd = Some("/a/../srv//app/".into());
    let plan = cfg.prepare().unwrap();
    let e = ApplyError {
        step: Step::Cwd,
        index: 0,
        errno: libc::EROFS,
    };
    assert_eq!(
        e.describe(&plan).to_string(),
        "process.cwd /srv/app: create directory: Read-only file system (os error 30)"
    );
    // "/" (or no cwd) has nothing to create.
    cfg.cwd = None;
    let plan = cfg.prepare().unwrap();
    assert_eq!(
        e.describe(&plan).to_string(),
        "process.cwd: create directory: Read-only file system (os error 30)"
    );
}
