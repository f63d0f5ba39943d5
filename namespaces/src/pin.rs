//! Namespaces held by bind mounts instead of a process (as CRI-O's `pinns` does): a pod's
//! network, IPC and UTS namespaces live as long as their mounts under a directory, so a
//! pod sandbox needs no pause process.
//!
//! [`pin`] makes the namespaces on a short-lived thread of its own: `unshare(2)` of
//! `CLONE_NEWNET`, `CLONE_NEWIPC` and `CLONE_NEWUTS` moves only the calling thread, so the
//! rest of a multi-threaded (tokio) process is never touched. The thread sets the hostname
//! in the new UTS namespace, bind-mounts `/proc/thread-self/ns/<kind>` onto `dir/<kind>`,
//! and ends; the mounts keep the namespaces alive. [`unpin`] detaches the mounts and
//! removes the files and the directory.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::NamespaceError;
use crate::kind::{NamespaceKind, flags_name};

/// The kinds [`pin`] can make, in the order it mounts them.
const PINNABLE: [NamespaceKind; 3] = [
    NamespaceKind::Network,
    NamespaceKind::Ipc,
    NamespaceKind::Uts,
];

/// The namespace files [`pin`] made: each a bind mount of a namespace, usable as an OCI
/// `linux.namespaces[].path`, with `setns(2)`, `nsenter --net=PATH` or as a CNI netns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PinnedNamespaces {
    /// `dir/net`, when a network namespace was pinned.
    pub net: Option<PathBuf>,
    /// `dir/ipc`, when an IPC namespace was pinned.
    pub ipc: Option<PathBuf>,
    /// `dir/uts`, when a UTS namespace was pinned.
    pub uts: Option<PathBuf>,
}

impl PinnedNamespaces {
    /// The file of the pinned namespace of `kind`, or `None` (not pinned, or a kind
    /// [`pin`] never pins).
    ///
    /// ```
    /// use berth_namespaces::{NamespaceKind, PinnedNamespaces};
    /// let p = PinnedNamespaces { net: Some("/run/pods/a/net".into()), ..Default::default() };
    /// assert_eq!(p.path(NamespaceKind::Network).and_then(|p| p.to_str()), Some("/run/pods/a/net"));
    /// assert_eq!(p.path(NamespaceKind::Uts), None);
    /// ```
    pub fn path(&self, kind: NamespaceKind) -> Option<&Path> {
        match kind {
            NamespaceKind::Network => self.net.as_deref(),
            NamespaceKind::Ipc => self.ipc.as_deref(),
            NamespaceKind::Uts => self.uts.as_deref(),
            _ => None,
        }
    }

    fn set(&mut self, kind: NamespaceKind, path: PathBuf) {
        match kind {
            NamespaceKind::Network => self.net = Some(path),
            NamespaceKind::Ipc => self.ipc = Some(path),
            NamespaceKind::Uts => self.uts = Some(path),
            _ => {}
        }
    }
}

/// Creates fresh namespaces of the given kinds (network, IPC and UTS only) and pins each
/// with a bind mount at `dir/net`, `dir/ipc` or `dir/uts` (empty `0o600` files made as
/// mount points; `dir` is created if missing). With `hostname`, it is set in the new UTS
/// namespace (which `kinds` must then include). Safe to call from a multi-threaded
/// process: the namespaces are made on a thread of their own, which is joined.
///
/// On failure nothing is left behind: mounts made are detached, the files removed, and
/// `dir` too if this call created it.
///
/// # Errors
/// [`NamespaceError::PinKind`] for a kind other than network, IPC or UTS (or one given
/// twice), [`NamespaceError::PinHostnameWithoutUts`], [`NamespaceError::Hostname`] for a
/// name the kernel refuses (longer than 64 bytes, a NUL), [`NamespaceError::PinPath`] when
/// `dir` or a mount point can't be made (it exists already: a namespace is pinned there)
/// or a bind mount fails, [`NamespaceError::Unshare`], [`NamespaceError::PinThread`].
///
/// ```no_run
/// use berth_namespaces::{NamespaceKind, pin};
/// use std::path::Path;
///
/// let dir = Path::new("/run/berth/pods/abc");
/// let pinned = pin::pin(dir, &[NamespaceKind::Network, NamespaceKind::Ipc, NamespaceKind::Uts], Some("web-0"))?;
/// assert_eq!(pinned.path(NamespaceKind::Network), Some(dir.join("net").as_path()));
/// // ... give dir/net to CNI and to the containers' config.json ...
/// pin::unpin(dir)?;
/// # Ok::<(), berth_namespaces::NamespaceError>(())
/// ```
pub fn pin(
    dir: &Path,
    kinds: &[NamespaceKind],
    hostname: Option<&str>,
) -> Result<PinnedNamespaces, NamespaceError> {
    let mut wanted: Vec<NamespaceKind> = Vec::new();
    for &k in kinds {
        if !PINNABLE.contains(&k) {
            return Err(NamespaceError::PinKind {
                kind: k,
                reason: "only net, ipc and uts namespaces can be pinned",
            });
        }
        if wanted.contains(&k) {
            return Err(NamespaceError::PinKind {
                kind: k,
                reason: "asked for twice",
            });
        }
        wanted.push(k);
    }
    let hostname = match hostname {
        None => None,
        Some(_) if !wanted.contains(&NamespaceKind::Uts) => {
            return Err(NamespaceError::PinHostnameWithoutUts);
        }
        Some(h) => Some(CString::new(h).map_err(|_| NamespaceError::Hostname {
            source: io::Error::from_raw_os_error(libc::EINVAL),
        })?),
    };
    if hostname.as_ref().is_some_and(|h| h.as_bytes().len() > 64) {
        return Err(NamespaceError::Hostname {
            source: io::Error::from_raw_os_error(libc::EINVAL),
        });
    }

    let mut undo = Undo::default();
    let result = pin_in(dir, &wanted, hostname, &mut undo);
    if result.is_err() {
        undo.run();
    }
    result
}

/// What a failed [`pin`] has to take back, in reverse order of making.
#[derive(Default)]
struct Undo {
    dir: Option<PathBuf>,
    files: Vec<PathBuf>,
    mounts: Vec<PathBuf>,
}

impl Undo {
    fn run(&mut self) {
        for m in self.mounts.drain(..).rev() {
            let _ = detach(&m);
        }
        for f in self.files.drain(..).rev() {
            let _ = fs::remove_file(&f);
        }
        if let Some(d) = self.dir.take() {
            let _ = fs::remove_dir(&d);
        }
    }
}

fn pin_in(
    dir: &Path,
    kinds: &[NamespaceKind],
    hostname: Option<CString>,
    undo: &mut Undo,
) -> Result<PinnedNamespaces, NamespaceError> {
    match fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|source| NamespaceError::PinPath {
                op: "pin: creating directory",
                path: dir.to_owned(),
                source,
            })?;
            undo.dir = Some(dir.to_owned());
        }
        Err(source) => {
            return Err(NamespaceError::PinPath {
                op: "pin: looking at directory",
                path: dir.to_owned(),
                source,
            });
        }
    }

    // (kind, target path, target as a C string) for the thread.
    let mut targets: Vec<(NamespaceKind, PathBuf, CString)> = Vec::new();
    for &k in kinds {
        let path = dir.join(k.proc_name());
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| NamespaceError::PinPath {
                op: "pin: creating mount point",
                path: path.clone(),
                source,
            })?;
        undo.files.push(path.clone());
        let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| NamespaceError::PinPath {
            op: "pin: mount point",
            path: path.clone(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        })?;
        targets.push((k, path, c));
    }

    let flags = kinds.iter().fold(0, |f, k| f | k.clone_flag());
    let thread_targets: Vec<(NamespaceKind, CString)> =
        targets.iter().map(|(k, _, c)| (*k, c.clone())).collect();
    let handle = std::thread::Builder::new()
        .name("berth-pin".into())
        .spawn(move || on_thread(flags, hostname, &thread_targets))
        .map_err(|e| NamespaceError::PinThread {
            reason: format!("spawn: {e}"),
        })?;
    let (mounted, result) = handle.join().map_err(|_| NamespaceError::PinThread {
        reason: "panicked".into(),
    })?;
    undo.mounts
        .extend(targets.iter().take(mounted).map(|(_, p, _)| p.clone()));
    result?;

    let mut pinned = PinnedNamespaces::default();
    for (k, p, _) in targets {
        pinned.set(k, p);
    }
    Ok(pinned)
}

/// Runs on the pin thread: unshare, hostname, bind mounts. Returns how many mounts were
/// made (for the undo) and the first failure. The thread is in the new namespaces when
/// it ends, so it must never be reused: it is a thread of its own.
fn on_thread(
    flags: libc::c_int,
    hostname: Option<CString>,
    targets: &[(NamespaceKind, CString)],
) -> (usize, Result<(), NamespaceError>) {
    // SAFETY: plain syscall; with only CLONE_NEWNET/NEWIPC/NEWUTS it changes the calling
    // thread's namespaces only (allowed in a multi-threaded process).
    if unsafe { libc::unshare(flags) } != 0 {
        let source = io::Error::last_os_error();
        return (
            0,
            Err(NamespaceError::Unshare {
                flags: flags_name(flags),
                source,
            }),
        );
    }
    if let Some(h) = &hostname {
        let bytes = h.as_bytes();
        // SAFETY: `bytes` is a live buffer of `bytes.len()` bytes; this thread is in its
        // new UTS namespace (the hostname was checked to ask for one).
        if unsafe { libc::sethostname(bytes.as_ptr().cast(), bytes.len()) } != 0 {
            let source = io::Error::last_os_error();
            return (0, Err(NamespaceError::Hostname { source }));
        }
    }
    for (i, (k, target)) in targets.iter().enumerate() {
        let src = format!("/proc/thread-self/ns/{}", k.proc_name());
        let Ok(csrc) = CString::new(src.clone()) else {
            return (i, Err(bind_error(&src, io::ErrorKind::InvalidInput.into())));
        };
        // SAFETY: both paths are NUL-terminated strings that live across the call; a bind
        // mount takes no fs type and no data.
        let rc = unsafe {
            libc::mount(
                csrc.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let source = io::Error::last_os_error();
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
            return (
                i,
                Err(NamespaceError::PinPath {
                    op: "pin: bind-mounting the new namespace onto",
                    path,
                    source,
                }),
            );
        }
    }
    (targets.len(), Ok(()))
}

fn bind_error(src: &str, source: io::Error) -> NamespaceError {
    NamespaceError::PinPath {
        op: "pin: bind mount source",
        path: PathBuf::from(src),
        source,
    }
}

/// `umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW)`, repeated while it succeeds (a file
/// pinned twice holds two mounts). `Ok` once `path` is no mount point (or is missing).
fn detach(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    for _ in 0..16 {
        // SAFETY: `c` is a NUL-terminated path alive across the call.
        let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()),
                _ => Err(e),
            };
        }
    }
    Ok(())
}

/// Takes back a [`pin`]: detaches the mounts at `dir/net`, `dir/ipc` and `dir/uts`
/// (`umount2(MNT_DETACH)`), removes those files and then `dir`. The namespaces go once
/// nothing else holds them (a process in them, an open fd). Idempotent: whatever is
/// already gone is fine, and a missing `dir` is `Ok`.
///
/// # Errors
/// [`NamespaceError::PinPath`] naming the file whose unmount or removal failed, or `dir`
/// when it can't be removed (e.g. it holds other files).
///
/// ```no_run
/// berth_namespaces::pin::unpin(std::path::Path::new("/run/berth/pods/abc"))?;
/// # Ok::<(), berth_namespaces::NamespaceError>(())
/// ```
pub fn unpin(dir: &Path) -> Result<(), NamespaceError> {
    for k in PINNABLE {
        let path = dir.join(k.proc_name());
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(NamespaceError::PinPath {
                    op: "unpin: looking at",
                    path,
                    source,
                });
            }
            Ok(_) => {}
        }
        detach(&path).map_err(|source| NamespaceError::PinPath {
            op: "unpin: umount2(MNT_DETACH)",
            path: path.clone(),
            source,
        })?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(NamespaceError::PinPath {
                    op: "unpin: removing",
                    path,
                    source: e,
                });
            }
            _ => {}
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(NamespaceError::PinPath {
            op: "unpin: removing directory",
            path: dir.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}
