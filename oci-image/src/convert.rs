//! The image config -> runtime config.json conversion (image-spec `conversion.md`), on top
//! of a base spec supplied by the caller.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{Mount, Process, Spec, User};

use crate::error::{ImageError, Result};
use crate::fsops;

/// Annotation keys the conversion sets.
pub mod annotations {
    /// `os` of the config.
    pub const OS: &str = "org.opencontainers.image.os";
    /// `architecture`.
    pub const ARCH: &str = "org.opencontainers.image.architecture";
    /// `variant`.
    pub const VARIANT: &str = "org.opencontainers.image.variant";
    /// `os.version`.
    pub const OS_VERSION: &str = "org.opencontainers.image.os.version";
    /// `os.features`, comma-separated.
    pub const OS_FEATURES: &str = "org.opencontainers.image.os.features";
    /// `author`.
    pub const AUTHOR: &str = "org.opencontainers.image.author";
    /// `created`.
    pub const CREATED: &str = "org.opencontainers.image.created";
    /// `config.StopSignal`.
    pub const STOP_SIGNAL: &str = "org.opencontainers.image.stopSignal";
    /// `config.ExposedPorts`, sorted and comma-separated.
    pub const EXPOSED_PORTS: &str = "org.opencontainers.image.exposedPorts";
}

/// How `config.Volumes` become mounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VolumeMode {
    /// An empty tmpfs at each volume path (`rw,nosuid,nodev,mode=755`), so container data
    /// does not land in the rootfs.
    #[default]
    Tmpfs,
    /// No mount: the caller provides its own (for instance through
    /// [`SpecOverrides::mounts`]).
    Omit,
}

/// What the caller changes on top of the image's config: [`SpecOverrides::default`]
/// (nothing) and the setters, one per field.
///
/// ```
/// let o = berth_image::SpecOverrides::default().args(Some(vec!["/bin/sh".into()]));
/// assert!(o.env.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SpecOverrides {
    /// Replaces Entrypoint + Cmd.
    pub args: Option<Vec<String>>,
    /// `NAME=VALUE` entries applied after the image's Env (same name: replaced in place).
    pub env: Vec<String>,
    /// Replaces WorkingDir.
    pub cwd: Option<String>,
    /// Replaces User (same syntax: `user[:group]`, names or ids).
    pub user: Option<String>,
    /// Extra mounts; one with the destination of an existing mount replaces it.
    pub mounts: Vec<Mount>,
    /// Annotations that win over everything else.
    pub annotations: HashMap<String, String>,
    /// What to do with Volumes.
    pub volumes: VolumeMode,
}

impl SpecOverrides {
    setters! {
        /// Sets [`args`](Self::args).
        args: Option<Vec<String>>,
        /// Sets [`env`](Self::env).
        env: Vec<String>,
        /// Sets [`cwd`](Self::cwd).
        cwd: Option<String>,
        /// Sets [`user`](Self::user).
        user: Option<String>,
        /// Sets [`mounts`](Self::mounts).
        mounts: Vec<Mount>,
        /// Sets [`annotations`](Self::annotations).
        annotations: HashMap<String, String>,
        /// Sets [`volumes`](Self::volumes).
        volumes: VolumeMode,
    }
}

/// The image's `/etc/passwd` and `/etc/group`, as needed to resolve `User`.
#[derive(Debug, Clone, Default)]
pub struct RootFiles {
    /// `/etc/passwd`, if the image has one.
    pub passwd: Option<Vec<u8>>,
    /// `/etc/group`, if the image has one.
    pub group: Option<Vec<u8>>,
}

const ACCOUNT_FILE_LIMIT: u64 = 16 << 20;

impl RootFiles {
    /// Reads them from an unpacked root filesystem, resolving every path inside it
    /// (a symlinked `/etc/passwd` stays inside `rootfs`).
    pub fn read(rootfs: &Path) -> Result<RootFiles> {
        let root = std::fs::File::open(rootfs).map_err(|e| ImageError::io("open", rootfs, e))?;
        let read = |name: &str| -> Result<Option<Vec<u8>>> {
            let c = CString::new(name).map_err(|_| ImageError::doc(name, "NUL in name"))?;
            match fsops::open_in_root(root.as_raw_fd(), &c, libc::O_RDONLY) {
                Ok(fd) => {
                    // SAFETY: from_raw_fd takes over the descriptor open_in_root returned.
                    let f = unsafe {
                        std::fs::File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(fd))
                    };
                    let mut out = Vec::new();
                    f.take(ACCOUNT_FILE_LIMIT)
                        .read_to_end(&mut out)
                        .map_err(|e| ImageError::io("read", rootfs.join(name), e))?;
                    Ok(Some(out))
                }
                Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
                Err(e) => Err(ImageError::sys("openat2", rootfs.join(name), e)),
            }
        };
        Ok(RootFiles {
            passwd: read("etc/passwd")?,
            group: read("etc/group")?,
        })
    }
}

/// A `User` resolved against the image's account files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Supplementary gids (the groups listing the user by name, when no group was given).
    pub additional_gids: Vec<u32>,
    /// The home directory from /etc/passwd, when the user is listed there.
    pub home: Option<String>,
}

fn fields(data: &[u8]) -> impl Iterator<Item = Vec<&str>> {
    data.split(|&b| b == b'\n').filter_map(|line| {
        let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        Some(line.split(':').collect())
    })
}

/// Resolves `user[:group]` (names or numeric ids) as the image-spec describes `User`:
/// a name must exist in /etc/passwd (a group name in /etc/group); an id need not. Without
/// a group, the gid is the user's primary group from /etc/passwd (0 for an unlisted id) and
/// the supplementary groups are those of /etc/group that list the user's name.
///
/// ```
/// use berth_image::{RootFiles, resolve_user};
/// let files = RootFiles {
///     passwd: Some(b"root:x:0:0:root:/root:/bin/sh\nbob:x:1000:100::/home/bob:/bin/sh\n".to_vec()),
///     group: Some(b"users:x:100:\nwheel:x:10:bob\n".to_vec()),
/// };
/// let u = resolve_user("bob", &files).unwrap();
/// assert_eq!((u.uid, u.gid, u.additional_gids), (1000, 100, vec![10]));
/// assert_eq!(resolve_user("1234:wheel", &files).unwrap().gid, 10);
/// assert!(resolve_user("nobody", &files).is_err());
/// ```
pub fn resolve_user(spec: &str, files: &RootFiles) -> Result<ResolvedUser> {
    let err = |reason: String| ImageError::User {
        user: spec.to_string(),
        reason,
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(err("empty user name".into()));
    }
    let numeric_user = user.parse::<u32>().ok();
    let passwd = files.passwd.as_deref().unwrap_or_default();
    let entry = fields(passwd).find(|f| {
        f.len() >= 4 && (f[0] == user || numeric_user.is_some_and(|n| f[2].parse::<u32>() == Ok(n)))
    });
    let (uid, mut gid, name, home) = match (&entry, numeric_user) {
        (Some(f), _) => {
            let uid = f[2]
                .parse::<u32>()
                .map_err(|_| err(format!("/etc/passwd has a bad uid {:?} for {}", f[2], f[0])))?;
            let gid = f[3]
                .parse::<u32>()
                .map_err(|_| err(format!("/etc/passwd has a bad gid {:?} for {}", f[3], f[0])))?;
            let home = f.get(5).filter(|h| !h.is_empty()).map(|h| h.to_string());
            (uid, gid, Some(f[0].to_string()), home)
        }
        (None, Some(n)) => (n, 0, None, None),
        (None, None) => {
            return Err(err(if files.passwd.is_none() {
                format!("user name {user:?} cannot be resolved: the image has no /etc/passwd")
            } else {
                format!("no user {user:?} in the image's /etc/passwd")
            }));
        }
    };
    let groups = files.group.as_deref().unwrap_or_default();
    let mut additional = Vec::new();
    match group {
        Some("") => return Err(err("empty group name".into())),
        Some(g) => {
            if let Ok(n) = g.parse::<u32>() {
                gid = n;
            } else {
                let f = fields(groups)
                    .find(|f| f.len() >= 3 && f[0] == g)
                    .ok_or_else(|| {
                        err(if files.group.is_none() {
                            format!(
                                "group name {g:?} cannot be resolved: the image has no /etc/group"
                            )
                        } else {
                            format!("no group {g:?} in the image's /etc/group")
                        })
                    })?;
                gid = f[2]
                    .parse::<u32>()
                    .map_err(|_| err(format!("/etc/group has a bad gid {:?} for {g}", f[2])))?;
            }
        }
        None => {
            if let Some(name) = &name {
                for f in fields(groups) {
                    if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                        if let Ok(n) = f[2].parse::<u32>() {
                            if !additional.contains(&n) {
                                additional.push(n);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
        home,
    })
}

fn env_name(e: &str) -> &str {
    e.split_once('=').map_or(e, |(n, _)| n)
}

/// Sets `entry` in `env`, replacing an entry of the same name in place.
fn set_env(env: &mut Vec<String>, entry: &str) {
    let name = env_name(entry);
    match env.iter_mut().find(|e| env_name(e) == name) {
        Some(e) => *e = entry.to_string(),
        None => env.push(entry.to_string()),
    }
}

fn add_mount(mounts: &mut Vec<Mount>, m: Mount) {
    match mounts
        .iter_mut()
        .find(|x| x.destination() == m.destination())
    {
        Some(x) => *x = m,
        None => mounts.push(m),
    }
}

/// Builds the bundle's config.json: `base` (the runtime's default spec) with the image's
/// config applied as the image-spec's conversion rules say, then `overrides`.
///
/// * `process.args` = Entrypoint + Cmd (the base's args if both are empty);
/// * `process.env`: the image's Env entries replace the base's of the same name, others
///   are appended; `HOME` from /etc/passwd is added if still unset;
/// * `process.cwd` = WorkingDir (made absolute), `process.user` = User resolved by
///   [`resolve_user`];
/// * annotations: os, architecture, variant, os.version, os.features, author, created,
///   StopSignal and ExposedPorts under the `org.opencontainers.image.*` keys, then the
///   image's Labels, which win over them;
/// * Volumes: a mount per volume (see [`VolumeMode`]);
/// * `root.path` = `rootfs`.
///
/// ```
/// use berth_image::{image_spec, RootFiles, SpecOverrides};
/// let config: oci_spec::image::ImageConfiguration = serde_json::from_str(r#"{
///     "architecture": "amd64", "os": "linux",
///     "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["A=1"],
///                "Labels": {"org.opencontainers.image.os": "custom"}},
///     "rootfs": {"type": "layers", "diff_ids": []}
/// }"#).unwrap();
/// let spec = image_spec(&config, Default::default(), &RootFiles::default(),
///                       &SpecOverrides::default()).unwrap();
/// let p = spec.process().as_ref().unwrap();
/// assert_eq!(p.args().as_ref().unwrap(), &["/bin/app", "--serve"]);
/// let ann = spec.annotations().as_ref().unwrap();
/// assert_eq!(ann["org.opencontainers.image.os"], "custom");
/// ```
pub fn image_spec(
    config: &ImageConfiguration,
    base: Spec,
    files: &RootFiles,
    overrides: &SpecOverrides,
) -> Result<Spec> {
    let mut spec = base;
    let empty = oci_spec::image::Config::default();
    let c = config.config().as_ref().unwrap_or(&empty);
    let mut process: Process = spec.process().clone().unwrap_or_default();

    // Arguments.
    let mut args: Vec<String> = c.entrypoint().clone().unwrap_or_default();
    args.extend(c.cmd().clone().unwrap_or_default());
    if let Some(a) = &overrides.args {
        args = a.clone();
    }
    if !args.is_empty() {
        process.set_args(Some(args));
    }

    // Environment.
    let mut env = process.env().clone().unwrap_or_default();
    for e in c.env().iter().flatten() {
        set_env(&mut env, e);
    }

    // User.
    let user_spec = overrides
        .user
        .clone()
        .or_else(|| c.user().clone())
        .filter(|u| !u.is_empty());
    if let Some(u) = user_spec {
        let r = resolve_user(&u, files)?;
        let mut user = User::default();
        user.set_uid(r.uid);
        user.set_gid(r.gid);
        user.set_umask(process.user().umask());
        user.set_additional_gids((!r.additional_gids.is_empty()).then_some(r.additional_gids));
        process.set_user(user);
        if let Some(home) = r.home {
            if !env.iter().any(|e| env_name(e) == "HOME") {
                env.push(format!("HOME={home}"));
            }
        }
    }
    for e in &overrides.env {
        set_env(&mut env, e);
    }
    process.set_env(Some(env));

    // Working directory.
    let cwd = overrides
        .cwd
        .clone()
        .or_else(|| c.working_dir().clone())
        .filter(|w| !w.is_empty());
    if let Some(w) = cwd {
        let w = if w.starts_with('/') {
            w
        } else {
            format!("/{w}")
        };
        process.set_cwd(PathBuf::from(w));
    }
    spec.set_process(Some(process));

    // Annotations: the implied ones, then labels (which win), then the caller's.
    let mut ann = spec.annotations().clone().unwrap_or_default();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            ann.insert(k.to_string(), v);
        }
    };
    put(annotations::OS, Some(config.os().to_string()));
    put(annotations::ARCH, Some(config.architecture().to_string()));
    put(annotations::VARIANT, config.variant().clone());
    put(annotations::OS_VERSION, config.os_version().clone());
    put(
        annotations::OS_FEATURES,
        config.os_features().as_ref().map(|f| f.join(",")),
    );
    put(annotations::AUTHOR, config.author().clone());
    put(annotations::CREATED, config.created().clone());
    put(annotations::STOP_SIGNAL, c.stop_signal().clone());
    put(
        annotations::EXPOSED_PORTS,
        c.exposed_ports().as_ref().map(|p| {
            let mut p = p.clone();
            p.sort();
            p.join(",")
        }),
    );
    for (k, v) in c.labels().iter().flatten() {
        ann.insert(k.clone(), v.clone());
    }
    for (k, v) in &overrides.annotations {
        ann.insert(k.clone(), v.clone());
    }
    spec.set_annotations((!ann.is_empty()).then_some(ann));

    // Mounts: the base's, the volumes, then the caller's.
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    if overrides.volumes == VolumeMode::Tmpfs {
        let mut vols: Vec<&String> = c.volumes().iter().flatten().collect();
        vols.sort();
        for v in vols {
            let dest = PathBuf::from(if v.starts_with('/') {
                v.clone()
            } else {
                format!("/{v}")
            });
            if mounts.iter().any(|m| *m.destination() == dest) {
                continue;
            }
            let mut m = Mount::default();
            m.set_destination(dest);
            m.set_typ(Some("tmpfs".into()));
            m.set_source(Some(PathBuf::from("tmpfs")));
            m.set_options(Some(
                ["rw", "nosuid", "nodev", "mode=755"]
                    .map(String::from)
                    .to_vec(),
            ));
            mounts.push(m);
        }
    }
    for m in &overrides.mounts {
        add_mount(&mut mounts, m.clone());
    }
    spec.set_mounts(Some(mounts));

    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(PathBuf::from("rootfs"));
    spec.set_root(Some(root));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> RootFiles {
        RootFiles {
            passwd: Some(
                b"# comment\nroot:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken\n"
                    .to_vec(),
            ),
            group: Some(b"root:x:0:\nalice:x:1000:\nwheel:x:10:alice\nstaff:x:50:bob,alice\n".to_vec()),
        }
    }

    #[test]
    fn users() {
        let f = files();
        let u = resolve_user("alice", &f).unwrap();
        assert_eq!(u.uid, 1000);
        assert_eq!(u.gid, 1000);
        assert_eq!(u.additional_gids, vec![10, 50]);
        assert_eq!(u.home.as_deref(), Some("/home/alice"));
        let u = resolve_user("alice:staff", &f).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert!(u.additional_gids.is_empty());
        let u = resolve_user("1000", &f).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.len()), (1000, 1000, 2));
        let u = resolve_user("1234", &f).unwrap();
        assert_eq!((u.uid, u.gid, u.home), (1234, 0, None));
        let u = resolve_user("0:7", &f).unwrap();
        assert_eq!((u.uid, u.gid), (0, 7));
        for bad in ["mallory", "alice:nogroup", ":5", "alice:"] {
            let e = resolve_user(bad, &f).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        assert!(resolve_user("alice", &RootFiles::default()).is_err());
        assert_eq!(resolve_user("5:6", &RootFiles::default()).unwrap().gid, 6);
    }

    #[test]
    fn env_override_by_name() {
        let mut env = vec!["PATH=/bin".to_string(), "TERM=xterm".to_string()];
        set_env(&mut env, "FOO=bar");
        set_env(&mut env, "PATH=/x");
        assert_eq!(env, ["PATH=/x", "TERM=xterm", "FOO=bar"]);
    }
}
