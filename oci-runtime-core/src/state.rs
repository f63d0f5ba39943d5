//! Container state: the JSON `state` prints and the on-disk record behind it.
//!
//! Each container owns one directory `<root>/<id>` (mode 0711 so that a container init
//! running as any uid can open the start barrier by name). It holds:
//! - `state.json`: the [`Record`], replaced atomically (written to a temp name, then exchanged
//!   with the old one, which is unlinked; the root normally lives on a tmpfs such as /run,
//!   where an fsync would buy nothing). `create` writes it before it makes anything outside
//!   the directory (marked `creating`, with the cgroup it is about to make, and the init's
//!   pid where it is written after the clone) and again as soon as it knows anything more, so
//!   that a `delete` after a `create` killed at any point finds what to kill and remove;
//! - `exec.fifo`: the start barrier; its existence is what "created" means;
//! - `config.json`: the validated config the container was created from, for `exec` (so a
//!   rewritten or removed bundle can't change what an exec'd process gets), and for a
//!   `delete --force` that finds `state.json` corrupt (it names the cgroup). Written first.
//!
//! Commands on one id are serialised by an exclusive `flock` on the directory itself; a
//! command that obtains the lock after the directory was deleted sees `st_nlink == 0` and
//! reports the container as gone.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::runtime::Hooks;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// File name of the record inside a container directory.
pub(crate) const STATE_FILE: &str = "state.json";
/// File name of the start barrier inside a container directory.
pub(crate) const FIFO_FILE: &str = "exec.fifo";

/// The lifecycle status of a container, as the OCI runtime spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is still setting the container up.
    Creating,
    /// Set up, waiting for `start`.
    Created,
    /// The user process runs.
    Running,
    /// The container's init has exited.
    Stopped,
    /// Frozen (cgroup freezer).
    Paused,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Paused => "paused",
        })
    }
}

/// The state of a container, serialised exactly as `runc state` prints it.
///
/// ```
/// use berth_runtime_core::{State, Status};
/// let s = State {
///     oci_version: "1.2.0".into(), id: "web".into(), pid: 0, status: Status::Stopped,
///     bundle: "/b".into(), rootfs: "/b/rootfs".into(),
///     created: "2026-11-27T21:05:16.123456789Z".into(),
///     annotations: Default::default(), owner: String::new(),
/// };
/// let json = serde_json::to_string(&s).unwrap();
/// assert!(json.contains("\"ociVersion\":\"1.2.0\""));
/// assert!(!json.contains("annotations"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// The runtime spec version of the config.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// The container id.
    pub id: String,
    /// Host pid of the init process; 0 once stopped.
    pub pid: i32,
    /// The lifecycle status.
    pub status: Status,
    /// Absolute path of the bundle.
    pub bundle: String,
    /// Absolute path of the root filesystem.
    pub rootfs: String,
    /// Creation time, RFC 3339 with nanoseconds, UTC.
    pub created: String,
    /// The config's annotations (omitted when empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The owner of the container ("" as runc).
    pub owner: String,
}

/// What berth keeps about a container between commands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Record {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    /// `starttime` of the init in /proc/<pid>/stat: tells a recycled pid from ours.
    pub start_time: u64,
    pub bundle: String,
    pub rootfs: String,
    pub created: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The hooks that run after create (poststart, poststop).
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// Whether the container has its own pid namespace (kill --all scans it).
    #[serde(default)]
    pub own_pid_ns: bool,
    /// The container's cgroup, from the root of every hierarchy (`/berth/<id>`).
    #[serde(default)]
    pub cgroup: Option<String>,
    /// The container's cgroup per hierarchy (labels of `CgroupManager::paths`), instead
    /// of `cgroup`, when a relative `linux.cgroupsPath` named different cgroups in
    /// different hierarchies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_paths: Option<BTreeMap<String, String>>,
    /// The resctrl group of linux.intelRdt, removed at delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intel_rdt: Option<crate::intel_rdt::RdtGroup>,
    /// `create` has not finished: while it holds the lock it is still working; once the lock
    /// is free it died, and `pid` (when not 0) is the first process it cloned, `cgroup` the
    /// cgroup it made or was about to make (either may be partly there).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creating: bool,
    /// Without a mount namespace of its own, the container's mounts are in the runtime's
    /// namespace, beneath a bind of `rootfs` onto itself: the id of the mount that was at
    /// `rootfs` before create, which `delete` detaches down to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_mounts_above: Option<u64>,
    /// The config has no `process`: `start` fails (the spec) and stops the container.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_process: bool,
}

impl Record {
    /// Where the container's cgroup is, if it has one.
    pub fn cgroup_path(&self) -> Option<berth_cgroups::CgroupPath> {
        match (&self.cgroup_paths, &self.cgroup) {
            (Some(each), _) => Some(berth_cgroups::CgroupPath::PerHierarchy(
                each.iter()
                    .map(|(k, v)| (k.clone(), PathBuf::from(v)))
                    .collect(),
            )),
            (None, Some(p)) => Some(berth_cgroups::CgroupPath::Absolute(PathBuf::from(p))),
            (None, None) => None,
        }
    }

    /// Opens the container's cgroup, if it has one (`None` once its directory is gone).
    pub fn cgroup(&self) -> Result<Option<berth_cgroups::CgroupManager>, Error> {
        let Some(path) = self.cgroup_path() else {
            return Ok(None);
        };
        let layout = berth_cgroups::Layout::detect()?;
        match berth_cgroups::CgroupManager::open(&layout, &path) {
            Ok(cg) => Ok(Some(cg)),
            // Already removed (by hand, or by an interrupted delete): nothing to manage.
            Err(berth_cgroups::CgroupError::Dir { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The container's cgroup for killing its processes and removing it: as [`Self::cgroup`],
    /// but a cgroup an interrupted create or delete left in some hierarchies only has its
    /// missing directories made again (empty), so that every hierarchy can be emptied and
    /// removed. `None` when no hierarchy has it.
    pub fn cgroup_to_remove(&self) -> Result<Option<berth_cgroups::CgroupManager>, Error> {
        if let Some(cg) = self.cgroup()? {
            return Ok(Some(cg));
        }
        let Some(path) = &self.cgroup else {
            return Ok(None);
        };
        let layout = berth_cgroups::Layout::detect()?;
        let in_some = layout
            .hierarchies()
            .any(|h| h.dir_of(Path::new(path)).is_dir());
        if !in_some {
            return Ok(None);
        }
        let path = berth_cgroups::CgroupPath::Absolute(PathBuf::from(path));
        let (cg, _) = berth_cgroups::CgroupManager::create(&layout, &path, None)?;
        Ok(Some(cg))
    }

    /// Whether the container's cgroup is frozen (paused).
    pub fn frozen(&self) -> bool {
        matches!(
            self.cgroup().ok().flatten().map(|cg| cg.freezer_state()),
            Some(Ok(berth_cgroups::FreezerState::Frozen))
        )
    }

    /// Whether `pid` is still the process recorded (same start time, not a zombie).
    pub fn pid_alive(&self) -> bool {
        self.pid > 0
            && matches!(process_start_time(self.pid),
                Some((start, state)) if start == self.start_time && state != 'Z' && state != 'X')
    }

    /// The public state for a given status.
    pub fn to_state(&self, status: Status) -> State {
        State {
            oci_version: self.oci_version.clone(),
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            annotations: self.annotations.clone(),
            owner: String::new(),
        }
    }
}

/// Checks a container id: non-empty, at most 1024 bytes, only `[A-Za-z0-9_+.-]`, and not `.`
/// or `..` (so it is always exactly one path component).
pub(crate) fn validate_id(id: &str) -> Result<(), Error> {
    let bad = |reason| Error::InvalidId {
        id: id.to_owned(),
        reason,
    };
    if id.is_empty() {
        return Err(bad("it is empty"));
    }
    if id.len() > 1024 {
        return Err(bad("it is longer than 1024 bytes"));
    }
    if id == "." || id == ".." {
        return Err(bad("it is a relative path component"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
    {
        return Err(bad("only letters, digits and _ + - . are allowed"));
    }
    Ok(())
}

/// An exclusively locked container directory.
pub(crate) struct ContainerDir {
    pub path: PathBuf,
    pub id: String,
    /// Holds the flock; closing it releases the lock.
    pub lock: File,
}

impl ContainerDir {
    /// Makes a new container directory and locks it. Fails with `AlreadyExists` if the id is
    /// taken.
    pub fn create(root: &Path, id: &str) -> Result<Self, Error> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| Error::io("create root dir", root, e))?;
        let path = root.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists { id: id.to_owned() });
            }
            Err(e) => return Err(Error::io("create state dir", &path, e)),
        }
        // The mode given to mkdir is filtered by the umask: set it explicitly.
        if let Err(e) =
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o711))
        {
            let _ = fs::remove_dir(&path);
            return Err(Error::io("chmod state dir", &path, e));
        }
        let lock = match open_dir(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_dir(&path);
                return Err(e);
            }
        };
        flock(&lock, &path)?;
        Ok(ContainerDir {
            path,
            id: id.to_owned(),
            lock,
        })
    }

    /// Opens and locks an existing container directory, waiting for other commands on it.
    pub fn open(root: &Path, id: &str) -> Result<Self, Error> {
        validate_id(id)?;
        let path = root.join(id);
        let lock = match open_dir(&path) {
            Ok(f) => f,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound { id: id.to_owned() });
            }
            Err(e) => return Err(e),
        };
        flock(&lock, &path)?;
        // Deleted while we waited for the lock?
        let meta = lock
            .metadata()
            .map_err(|e| Error::io("stat state dir", &path, e))?;
        if std::os::unix::fs::MetadataExt::nlink(&meta) == 0 {
            return Err(Error::NotFound { id: id.to_owned() });
        }
        Ok(ContainerDir {
            path,
            id: id.to_owned(),
            lock,
        })
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.path.join(FIFO_FILE)
    }

    /// The container's config as it was created, kept for `exec` (its seccomp profile and
    /// defaults must not depend on the bundle staying unchanged, or present). Named as in a
    /// bundle.
    fn config_path(&self) -> PathBuf {
        self.path.join(crate::config::validate::CONFIG_FILE)
    }

    /// Saves the validated config (`config.json` in the container directory).
    pub fn write_config(&self, spec: &oci_spec::runtime::Spec) -> Result<(), Error> {
        let path = self.config_path();
        let data = serde_json::to_vec(spec)
            .map_err(|e| Error::Protocol(format!("serialize the config: {e}")))?;
        std::fs::write(&path, data).map_err(|e| Error::io("write", &path, e))
    }

    /// The config the container was created from: the saved one, or for a container of a
    /// berth that did not save it, the bundle's config.json.
    pub fn config(&self, record: &Record) -> Result<oci_spec::runtime::Spec, Error> {
        match self.read_config()? {
            Some(s) => Ok(s),
            None => Ok(crate::config::validate::load_bundle_config(
                std::path::Path::new(&record.bundle),
            )?),
        }
    }

    /// The saved config; `None` for a container created before configs were saved.
    pub fn read_config(&self) -> Result<Option<oci_spec::runtime::Spec>, Error> {
        let path = self.config_path();
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| Error::Protocol(format!("saved config {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }

    /// Reads the record; `None` while `create` has not written it yet.
    pub fn read_record(&self) -> Result<Option<Record>, Error> {
        read_record(&self.path, &self.id)
    }

    /// Atomically replaces the record.
    pub fn write_record(&self, record: &Record) -> Result<(), Error> {
        let tmp = self.path.join(".state.json.tmp");
        let final_path = self.path.join(STATE_FILE);
        let data = serde_json::to_vec(record).map_err(|e| Error::CorruptState {
            id: self.id.clone(),
            source: e,
        })?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io("write state", &tmp, e))?;
        f.write_all(&data)
            .map_err(|e| Error::io("write state", &tmp, e))?;
        drop(f);
        replace_file(&tmp, &final_path).map_err(|e| Error::io("rename state", &final_path, e))
    }

    /// Removes the directory and everything in it.
    pub fn remove(self) -> Result<(), Error> {
        fs::remove_dir_all(&self.path).map_err(|e| Error::io("remove state dir", &self.path, e))
    }
}

/// Atomically puts `tmp` in the place of `dst`: a reader sees the old file or the new one.
///
/// Where `dst` exists the two are exchanged (`renameat2(RENAME_EXCHANGE)`) and `tmp`, which
/// then holds the old content, is unlinked. Not a `rename(2)` over `dst`: on ext4 (the
/// `auto_da_alloc` default) a rename that replaces a file allocates the new file's blocks at
/// once and starts writing them out, and the record's blocks, once allocated, cost a
/// synchronous discard when the state dir is deleted on a filesystem mounted with `discard`.
/// Exchanged, a record that lives only seconds never reaches the disk. Where the filesystem
/// can't exchange (`EINVAL`) or `dst` is missing, a plain rename does the same.
fn replace_file(tmp: &Path, dst: &Path) -> std::io::Result<()> {
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (ctmp, cdst) = (c(tmp)?, c(dst)?);
    // SAFETY: two valid NUL-terminated paths; renameat2 only reads them.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ctmp.as_ptr(),
            libc::AT_FDCWD,
            cdst.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        return fs::remove_file(tmp);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOENT | libc::EINVAL | libc::ENOSYS) => fs::rename(tmp, dst),
        _ => Err(err),
    }
}

fn open_dir(path: &Path) -> Result<File, Error> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io("open state dir", path, e))
}

fn flock(f: &File, path: &Path) -> Result<(), Error> {
    loop {
        // SAFETY: flock on a valid, owned fd.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(Error::io("lock state dir", path, err));
        }
    }
}

/// Reads `<dir>/state.json` without taking the lock (the file is replaced atomically).
pub(crate) fn read_record(dir: &Path, id: &str) -> Result<Option<Record>, Error> {
    let path = dir.join(STATE_FILE);
    match fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| Error::CorruptState {
                id: id.to_owned(),
                source: e,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.is_dir() {
                Ok(None)
            } else {
                Err(Error::NotFound { id: id.to_owned() })
            }
        }
        Err(e) => Err(Error::io("read state", &path, e)),
    }
}

/// What /proc says about a pid: alive (not a zombie) with this start time?
pub(crate) fn process_start_time(pid: i32) -> Option<(u64, char)> {
    let stat = berth_sys::fs::read_virtual(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // starttime is field 22 of the whole line, i.e. the 20th after the state field (field 3).
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// The id of the mount `path` is on (statx `STATX_MNT_ID`, Linux 5.8), and whether `path`
/// is the root of that mount (a mount point).
pub(crate) fn mount_id(path: &Path) -> Result<(u64, bool), Error> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Protocol(format!("{}: NUL in path", path.display())))?;
    // SAFETY: statx fills `stx`, a zeroed local of the right type; the path is a C string.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_NO_AUTOMOUNT,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if r != 0 {
        return Err(Error::sys(
            format!("statx({})", path.display()),
            nix::Error::last(),
        ));
    }
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(Error::Protocol(format!(
            "statx({}): this kernel reports no mount id (Linux 5.8+ needed)",
            path.display()
        )));
    }
    let is_root = stx.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0
        && stx.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    Ok((stx.stx_mnt_id, is_root))
}

/// Detaches what a container without a mount namespace of its own mounted in the runtime's:
/// every mount stacked at `rootfs` since create (the bind of the rootfs onto itself, with all
/// the container's mounts beneath it), down to the mount `before` that was there
/// ([`Record::host_mounts_above`]; `None`: the container had a namespace of its own).
pub(crate) fn release_host_mounts(rootfs: &Path, before: Option<u64>) -> Result<(), Error> {
    let Some(before) = before else {
        return Ok(());
    };
    // Bounded: each round removes one stacked mount, and create stacks one.
    for _ in 0..16 {
        match mount_id(rootfs) {
            // Something stacked on the rootfs path itself since create.
            Ok((id, true)) if id != before => {}
            // Down to what was there, the rootfs no longer a mount point, or gone: done.
            _ => return Ok(()),
        }
        match nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => {}
            // Not (or no longer) a mount point: nothing of ours is left there.
            Err(nix::Error::EINVAL) => return Ok(()),
            Err(e) => {
                return Err(Error::sys(
                    format!("umount2({}, MNT_DETACH)", rootfs.display()),
                    e,
                ));
            }
        }
    }
    Err(Error::Protocol(format!(
        "{}: still has mounts of the container after 16 detaches",
        rootfs.display()
    )))
}

/// The live status of a recorded container (`creating` until `create` finished).
pub(crate) fn live_status(dir: &Path, record: &Record) -> Status {
    if record.creating {
        Status::Creating
    } else if !record.pid_alive() {
        Status::Stopped
    } else if dir.join(FIFO_FILE).exists() {
        Status::Created
    } else if record.frozen() {
        Status::Paused
    } else {
        Status::Running
    }
}

/// Now, as RFC 3339 with nanoseconds in UTC, e.g. `2026-11-27T21:05:16.123456789Z`.
pub(crate) fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

fn format_rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian), after H. Hinnant's
    // well-known days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(0, 0, "1970-01-01T00:00:00.000000000Z")]
    #[case(951_782_400, 5, "2000-02-29T00:00:00.000000005Z")]
    #[case(1_795_813_516, 123_456_789, "2026-11-27T21:05:16.123456789Z")]
    #[case(4_107_542_399, 999_999_999, "2100-02-28T23:59:59.999999999Z")]
    fn rfc3339(#[case] secs: i64, #[case] nanos: u32, #[case] want: &str) {
        assert_eq!(format_rfc3339(secs, nanos), want);
    }

    #[rstest]
    #[case("a")]
    #[case("web-1.prod_x+y")]
    fn good_ids(#[case] id: &str) {
        assert!(validate_id(id).is_ok());
    }

    #[rstest]
    #[case("", "it is empty")]
    #[case("a/b", "only letters, digits and _ + - . are allowed")]
    #[case("..", "it is a relative path component")]
    #[case(".", "it is a relative path component")]
    #[case("a b", "only letters, digits and _ + - . are allowed")]
    fn bad_ids(#[case] id: &str, #[case] why: &str) {
        match validate_id(id) {
            Err(Error::InvalidId { reason, .. }) => assert_eq!(reason, why),
            other => panic!("{id:?}: {other:?}"),
        }
    }

    #[test]
    fn own_start_time_is_found() {
        let me = std::process::id() as i32;
        let (start, state) = process_start_time(me).expect("own stat");
        assert!(start > 0);
        // The main thread of the test binary sleeps while this test runs on another one.
        assert!(matches!(state, 'R' | 'S'), "state {state}");
        assert!(process_start_time(i32::MAX).is_none());
    }
}
