//! `HOME` for a process whose `env` has none: the home directory of its uid in the container's
//! `/etc/passwd`, `/` when the uid has no entry (what runc does, and what images built for
//! containerd, which sets no HOME, rely on).
//!
//! The file is read by the parent before the clone, confined to the rootfs with
//! `openat2(RESOLVE_IN_ROOT)` so a symlinked `/etc/passwd` can't read a host file; a config
//! mount that binds a file on `/etc/passwd` is read from its source instead.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;
use oci_spec::runtime::Mount;

/// A passwd file larger than this is not read (the default `/` is used).
const MAX_PASSWD: u64 = 4 << 20;

/// Returns `env` with `HOME=<dir>` added when it has no `HOME`.
pub(crate) fn with_home(
    env: Vec<String>,
    rootfs: &Path,
    bundle: &Path,
    mounts: &[Mount],
    uid: u32,
) -> Vec<String> {
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return env;
    }
    let mut env = env;
    let home = read_passwd(rootfs, bundle, mounts)
        .and_then(|text| home_of(&text, uid))
        .unwrap_or_else(|| "/".to_owned());
    env.push(format!("HOME={home}"));
    env
}

/// The home field of `uid`'s first line in a passwd text.
fn home_of(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        match f.as_slice() {
            [_, _, id, _, _, home, ..] if id.trim().parse::<u32>().ok() == Some(uid) => {
                Some((*home).to_owned()).filter(|h| !h.is_empty())
            }
            _ => None,
        }
    })
}

fn read_passwd(rootfs: &Path, bundle: &Path, mounts: &[Mount]) -> Option<String> {
    // The last mount on /etc/passwd wins, as it would in the container.
    let bound = mounts.iter().rev().find(|m| {
        m.destination() == Path::new("/etc/passwd")
            && m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind")
    });
    let file = match bound {
        Some(m) => {
            let src: PathBuf = m.source().clone()?;
            let src = if src.is_absolute() {
                src
            } else {
                bundle.join(src)
            };
            std::fs::File::open(src).ok()?
        }
        None => {
            let root: OwnedFd = nix::fcntl::open(
                rootfs,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ok()?;
            let how = OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
            std::fs::File::from(openat2(root.as_fd(), "etc/passwd", how).ok()?)
        }
    };
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_PASSWD).read_to_string(&mut text).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::TempDir;

    fn rootfs_with(passwd: Option<&str>) -> TempDir {
        let dir = TempDir::new("home");
        std::fs::create_dir_all(dir.join("etc")).expect("mkdir");
        if let Some(p) = passwd {
            std::fs::write(dir.join("etc/passwd"), p).expect("write passwd");
        }
        dir
    }

    #[test]
    fn home_comes_from_the_uid_entry_or_defaults_to_root() {
        let r = rootfs_with(Some(
            "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33::/var/www:/bin/false\nnohome:x:7:7:::\n",
        ));
        let home = |env: Vec<String>, uid| with_home(env, r.path(), r.path(), &[], uid);
        assert_eq!(home(vec![], 0), ["HOME=/root"]);
        assert_eq!(home(vec!["A=1".into()], 33), ["A=1", "HOME=/var/www"]);
        assert_eq!(home(vec![], 7), ["HOME=/"]);
        assert_eq!(home(vec![], 1000), ["HOME=/"]);
        assert_eq!(home(vec!["HOME=/x".into()], 0), ["HOME=/x"]);
    }

    #[test]
    fn a_symlinked_passwd_stays_inside_the_rootfs() {
        let r = rootfs_with(None);
        std::fs::write(r.join("inside"), "root:x:0:0::/inside-home:/bin/sh\n").expect("write");
        // Absolute: resolved against the rootfs, not the host's /etc/passwd... -> /inside.
        std::os::unix::fs::symlink("/inside", r.join("etc/passwd")).expect("symlink");
        assert_eq!(
            with_home(vec![], r.path(), r.path(), &[], 0),
            ["HOME=/inside-home"]
        );
        std::fs::remove_file(r.join("etc/passwd")).expect("rm");
        std::os::unix::fs::symlink("../../../../../../etc/shadow", r.join("etc/passwd"))
            .expect("symlink");
        assert_eq!(with_home(vec![], r.path(), r.path(), &[], 0), ["HOME=/"]);
    }

    #[test]
    fn a_bind_mounted_passwd_is_read_from_its_source() {
        let r = rootfs_with(Some("root:x:0:0::/from-rootfs:/bin/sh\n"));
        std::fs::write(r.join("bound"), "root:x:0:0::/from-mount:/bin/sh\n").expect("write");
        let mut m = Mount::default();
        m.set_destination("/etc/passwd".into());
        m.set_source(Some("bound".into()));
        m.set_options(Some(vec!["rbind".into(), "ro".into()]));
        assert_eq!(
            with_home(vec![], r.path(), r.path(), &[m], 0),
            ["HOME=/from-mount"]
        );
    }
}
