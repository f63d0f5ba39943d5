//! A busybox image made by real tools (umoci, skopeo) from Debian's busybox-static, and
//! the tool checks of the import and registry tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TempDir, run};

pub const BUSYBOX: &str = "/bin/busybox";

/// Is `tool` on the PATH?
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `true` if every tool (and /bin/busybox) is there; otherwise prints `SKIP:` and returns
/// `false`, or fails when `CI` is set.
pub fn tools_or_skip(test: &str, tools: &[&str]) -> bool {
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|t| !have(t))
        .map(|t| t.to_string())
        .collect();
    if !Path::new(BUSYBOX).is_file() {
        missing.push(format!("{BUSYBOX} (busybox-static)"));
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: missing {}", missing.join(", "));
    }
    eprintln!("SKIP: {test}: missing {}", missing.join(", "));
    false
}

/// A busybox image: an OCI layout (ref `busybox`) made with umoci, and archives of it.
pub struct Busybox {
    pub dir: TempDir,
}

impl Busybox {
    pub fn layout(&self) -> PathBuf {
        self.dir.join("layout")
    }

    /// `skopeo copy` of the layout to `dest` (a skopeo transport:path[:ref]).
    pub fn skopeo(&self, dest: &str) {
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--insecure-policy"])
            .arg(format!("oci:{}:busybox", self.layout().display()))
            .arg(dest));
    }

    /// A docker-archive (`docker save` format) tagged `tag`, made by skopeo.
    pub fn docker_archive(&self, tag: &str) -> PathBuf {
        let p = self
            .dir
            .join(&format!("docker-{}.tar", tag.replace(['/', ':'], "_")));
        if !p.exists() {
            self.skopeo(&format!("docker-archive:{}:{tag}", p.display()));
        }
        p
    }

    /// An OCI archive with ref `tag`, made by skopeo.
    pub fn oci_archive(&self, tag: &str) -> PathBuf {
        let p = self.dir.join(&format!("oci-{tag}.tar"));
        if !p.exists() {
            self.skopeo(&format!("oci-archive:{}:{tag}", p.display()));
        }
        p
    }
}

pub fn busybox() -> Busybox {
    let dir = TempDir::new("busybox");
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let image = format!("{}:busybox", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "dev", "etc", "proc", "root", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    run(Command::new("chroot")
        .arg(&rootfs)
        .args(["/bin/busybox", "--install", "-s", "/bin"]));
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    run(Command::new("umoci")
        .args(["repack", "--refresh-bundle", "--image", &image])
        .arg(&bundle));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/sh",
        "--config.env",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    ]));
    let _ = std::fs::remove_dir_all(&bundle);
    Busybox { dir }
}

/// Mounts the overlay of `lowers` (read-only) in a private mount namespace of a thread
/// and checks that it shows Debian's /bin/busybox and the `sh` link; the mount goes away
/// with the thread.
pub fn assert_overlay_shows_busybox(lowers: &[PathBuf], mountpoint: &Path) {
    std::fs::create_dir_all(mountpoint).unwrap();
    crate::common::in_private_mount_ns(|| {
        let l: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        nix::mount::mount(
            Some("overlay"),
            mountpoint,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(format!("lowerdir={}", l.join(":")).as_str()),
        )
        .unwrap();
        let got = std::fs::read(mountpoint.join("bin/busybox")).unwrap();
        assert!(
            got == std::fs::read(BUSYBOX).unwrap(),
            "/bin/busybox differs"
        );
        assert_eq!(
            std::fs::read_link(mountpoint.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        nix::mount::umount(mountpoint).unwrap();
    });
}
