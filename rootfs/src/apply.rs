//! Child side: applying a [`RootfsPlan`] with raw system calls only.
//!
//! Nothing in this module allocates, locks, touches `std::io` or panics.

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::ffi::CStr;
use std::sync::atomic::Ordering;

use libc::{c_int, c_ulong};

use crate::copyup;
use crate::error::{ApplyError, Step};
use crate::plan::{CgroupMount, DevicePlan, Entry, MountKind, MountPlan, RootfsPlan, Target};
use crate::procfs::{PROC_SUPER_MAGIC, ProcError, ProcRoot, ProcStage};
use crate::resolve::{self, Create, ResolveError, Resolved};
use crate::sys::{
    self, Errno, Fd, IN_ROOT, RESOLVE_NO_SYMLINKS, StackPath, SysResult, proc_fd_path,
};

type Result<T> = std::result::Result<T, ApplyError>;

/// Flags that `statfs(2)` reports and a bind remount must keep when the
/// kernel has locked them (same bit values as the `MS_*` flags).
const LOCKABLE: c_ulong = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
const ATIME_FLAGS: c_ulong =
    libc::MS_NOATIME | libc::MS_NODIRATIME | libc::MS_RELATIME | libc::MS_STRICTATIME;
/// Flags of the tmpfs that holds cgroup hierarchies.
const CGROUP_DEFAULT: c_ulong = libc::MS_NOEXEC | libc::MS_NOSUID | libc::MS_NODEV;
/// Maximum size of `/proc/self/cgroup` handled.
const CGROUP_FILE_BUF: usize = 8192;
/// Scratch buffer for tmpcopyup.
const COPY_BUF: usize = 8192;

fn err(step: Step, index: usize) -> impl Fn(Errno) -> ApplyError {
    move |e| ApplyError::new(step, index, e)
}

/// A failed sysctl open or write: `SysctlOpen` for the proc root and the file, `Sysctl` for
/// the write.
fn sysctl_err(index: usize) -> impl Fn(ProcError) -> ApplyError {
    move |e| {
        let step = match e.stage {
            ProcStage::Open | ProcStage::Check => Step::SysctlOpen,
            ProcStage::Write => Step::Sysctl,
        };
        ApplyError::new(step, index, e.errno)
    }
}

/// `ST_*` bits of `statfs(2)` `f_flags` (`<linux/statfs.h>`); only the first
/// four share their values with the `MS_*` flags.
const ST_RDONLY: u64 = 0x0001;
const ST_NOSUID: u64 = 0x0002;
const ST_NODEV: u64 = 0x0004;
const ST_NOEXEC: u64 = 0x0008;
const ST_NOATIME: u64 = 0x0400;
const ST_NODIRATIME: u64 = 0x0800;
const ST_RELATIME: u64 = 0x1000;
const ST_NOSYMFOLLOW: u64 = 0x2000;

/// Convert `statfs` `f_flags` into the per-mount `MS_*` flags they reflect.
fn mount_flags_of(st: &sys::FsInfo) -> c_ulong {
    const MAP: [(u64, c_ulong); 8] = [
        (ST_RDONLY, libc::MS_RDONLY),
        (ST_NOSUID, libc::MS_NOSUID),
        (ST_NODEV, libc::MS_NODEV),
        (ST_NOEXEC, libc::MS_NOEXEC),
        (ST_NOATIME, libc::MS_NOATIME),
        (ST_NODIRATIME, libc::MS_NODIRATIME),
        (ST_RELATIME, libc::MS_RELATIME),
        (ST_NOSYMFOLLOW, libc::MS_NOSYMFOLLOW),
    ];
    let mut out = 0;
    for (st_bit, ms_bit) in MAP {
        if st.flags & st_bit != 0 {
            out |= ms_bit;
        }
    }
    if st.flags & (ST_NOATIME | ST_RELATIME) == 0 {
        out |= libc::MS_STRICTATIME;
    }
    out
}

/// Bind-remount the mount whose root is `fd` with `flags`; if the kernel
/// refuses because flags of the source are locked (user namespaces), retry
/// keeping those flags.
fn remount_keep_locked(fd: c_int, target: &CStr, flags: c_ulong) -> SysResult<()> {
    let flags = (flags & !(libc::MS_BIND | libc::MS_REC)) | libc::MS_BIND | libc::MS_REMOUNT;
    match sys::mount(None, target, None, flags, None) {
        Err(libc::EPERM) => {
            let current = mount_flags_of(&sys::fstatfs(fd)?);
            let mut retry = flags | (current & LOCKABLE);
            if flags & ATIME_FLAGS != 0 {
                retry = (retry & !ATIME_FLAGS) | (current & ATIME_FLAGS);
            }
            sys::mount(None, target, None, retry, None)
        }
        other => other,
    }
}

/// Bind-remount adding `extra` (e.g. `MS_RDONLY`) to the flags the mount
/// already has.
fn remount_add(fd: c_int, target: &CStr, extra: c_ulong) -> SysResult<()> {
    let current = mount_flags_of(&sys::fstatfs(fd)?);
    remount_keep_locked(fd, target, current | extra)
}

fn same_inode(a: &libc::stat, b: &libc::stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

/// Whether `/proc/self/fd` can be used (the container may not mount /proc).
fn proc_usable() -> bool {
    sys::openat(
        libc::AT_FDCWD,
        c"/proc/self/fd",
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .is_ok()
}

/// An empty tmpfs at `target` with the flags of a cgroup mount: the v1 layout's holder of
/// one directory per hierarchy, or a cover over a cgroup2 mount that can't be mounted on again.
fn cgroup_tmpfs(target: &CStr) -> SysResult<()> {
    sys::mount(
        Some(c"tmpfs"),
        target,
        Some(c"tmpfs"),
        CGROUP_DEFAULT,
        Some(c"mode=755"),
    )
}

/// Bind the file or directory open as `src_fd` onto the location `dst_fd`,
/// both through `/proc/self/fd/N`; if `/proc` is not mounted, with
/// `open_tree` + `move_mount` instead.
fn bind_onto(src_fd: c_int, dst_fd: c_int, recursive: bool) -> SysResult<()> {
    let dst = proc_fd_path(dst_fd)?;
    let src = proc_fd_path(src_fd)?;
    let flags = libc::MS_BIND | if recursive { libc::MS_REC } else { 0 };
    match sys::mount(Some(src.as_cstr()), dst.as_cstr(), None, flags, None) {
        Err(libc::ENOENT) if !proc_usable() => {
            let tree = sys::open_tree_clone(src_fd, c"", recursive)?;
            sys::move_mount_fd(tree.raw(), dst_fd)
        }
        other => other,
    }
}

/// Mount an empty read-only tmpfs on the directory `fd`.
fn mask_dir(fd: c_int) -> SysResult<()> {
    let path = proc_fd_path(fd)?;
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    match sys::mount(Some(c"tmpfs"), path.as_cstr(), Some(c"tmpfs"), flags, None) {
        Err(libc::ENOENT) if !proc_usable() => {
            use crate::sys::{
                MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
            };
            let attrs =
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
            let m = sys::fsmount_new(c"tmpfs", attrs)?;
            sys::move_mount_fd(m.raw(), fd)
        }
        other => other,
    }
}

/// Make the mount whose root is `fd` read-only, keeping its other flags:
/// `mount_setattr`, or a bind remount on kernels without it.
fn make_readonly(fd: c_int, target: &CStr) -> SysResult<()> {
    match sys::mount_setattr(fd, false, crate::sys::MOUNT_ATTR_RDONLY, 0) {
        Err(libc::ENOSYS) => remount_add(fd, target, libc::MS_RDONLY),
        other => other,
    }
}

impl Drop for RootfsPlan {
    fn drop(&mut self) {
        self.close_fds();
    }
}

impl RootfsPlan {
    fn root(&self) -> c_int {
        self.root_fd.load(Ordering::Relaxed)
    }

    fn set_root(&self, fd: Fd) {
        let old = self.root_fd.swap(fd.into_raw(), Ordering::Relaxed);
        sys::close(old);
    }

    /// The root fd, opening `fallback` if none is held yet.
    fn root_or_open(&self, fallback: &CStr) -> Result<c_int> {
        let fd = self.root();
        if fd >= 0 {
            return Ok(fd);
        }
        let fd = sys::openat(
            libc::AT_FDCWD,
            fallback,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .map_err(err(Step::OpenRoot, 0))?;
        self.set_root(fd);
        Ok(self.root())
    }

    /// Close the descriptors the plan opened in this process (the child's
    /// root directory fd). They are `O_CLOEXEC` anyway; this is for callers
    /// that keep running after an error.
    ///
    /// # Fragile child
    /// Allocation-free; safe to call more than once.
    pub fn close_fds(&self) {
        let old = self.root_fd.swap(-1, Ordering::Relaxed);
        sys::close(old);
        for (_, slot) in &self.bind_sources {
            sys::close(slot.swap(-1, Ordering::Relaxed));
        }
    }

    /// Set up every mount, device node and `/dev` symlink inside the rootfs
    /// (still below the old root, so hooks can see it).
    ///
    /// Order: propagation of `/` (`rslave` or `rootfsPropagation`), the parent
    /// mount of the rootfs made private if it would be shared, the rootfs
    /// bind-mounted onto itself, then `mounts` in order, then (unless `/dev`
    /// is bind-mounted) devices and `/dev` symlinks, then the missing
    /// directories of `process.cwd` (mode 0755).
    ///
    /// # Fragile child
    /// Call after `clone(CLONE_NEWNS|...)` with all namespaces joined. No
    /// allocation, no locks, no panics.
    ///
    /// ```no_run
    /// # fn f(plan: &berth_rootfs::RootfsPlan, pipe: i32) {
    /// if let Err(e) = plan.mount_all() {
    ///     let rec = e.to_bytes();
    ///     // SAFETY: writes a stack buffer to a pipe, then exits the child.
    ///     unsafe {
    ///         libc::write(pipe, rec.as_ptr().cast(), rec.len());
    ///         libc::_exit(1);
    ///     }
    /// }
    /// # }
    /// ```
    pub fn mount_all(&self) -> Result<()> {
        self.mount_all_joining(|| Ok(()))
    }

    /// [`Self::mount_all`] for a process that is moved into its cgroup (or its network
    /// namespace) while it mounts: `join` (which waits until it is there, and may unshare a
    /// cgroup namespace or join a network namespace) is called once, before the first cgroup
    /// mount (which finds the process' own cgroup in `/proc/self/cgroup`, or mounts its
    /// cgroup namespace) or sysfs mount (which shows the network namespace of the process
    /// that mounts it), or after the last mount when there is none. So the runtime's set-up
    /// and the container's first mounts can run at the same time.
    ///
    /// # Fragile child
    /// As [`Self::mount_all`]; `join` must follow the same rules.
    ///
    /// ```no_run
    /// # fn f(plan: &berth_rootfs::RootfsPlan) -> Result<(), berth_rootfs::ApplyError> {
    /// plan.mount_all_joining(|| {
    ///     // e.g. block on a sync socket until the parent wrote our pid to cgroup.procs
    ///     Ok::<(), berth_rootfs::ApplyError>(())
    /// })
    /// # }
    /// ```
    pub fn mount_all_joining<E: From<ApplyError>>(
        &self,
        join: impl FnOnce() -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut join = Some(join);
        let mut joined = || join.take().map_or(Ok(()), |j| j());
        // Without a mount namespace of its own the container shares the runtime's: its
        // propagation is not ours to change.
        if self.own_mount_ns {
            sys::mount(None, c"/", None, self.root_propagation, None)
                .map_err(err(Step::Propagation, 0))?;
        }
        if let Some(parent) = &self.parent_private {
            sys::mount(None, parent, None, libc::MS_PRIVATE, None)
                .map_err(err(Step::ParentPrivate, 0))?;
        }
        sys::mount(
            Some(&self.rootfs),
            &self.rootfs,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(err(Step::BindRoot, 0))?;
        // Open the rootfs only now, so the fd is the root of the new bind mount.
        let root = sys::openat(
            libc::AT_FDCWD,
            &self.rootfs,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .map_err(err(Step::OpenRoot, 0))?;
        self.set_root(root);
        let root = self.root();

        for (i, m) in self.mounts.iter().enumerate() {
            if matches!(m.kind, MountKind::Cgroup(_) | MountKind::Sysfs) {
                joined()?;
            }
            self.apply_mount(root, i, m)?;
        }
        joined()?;
        if self.setup_dev {
            let old = sys::umask(0);
            let r = self.apply_devices(root);
            sys::umask(old);
            r?;
            self.apply_symlinks(root)?;
        }
        if let Some(cwd) = &self.cwd {
            // mkdir -p inside the root (after the mounts: a cwd below a tmpfs
            // lands in the tmpfs); existing directories are kept as they are.
            let old = sys::umask(0);
            let r = resolve::resolve(
                root,
                &cwd.rel,
                Create::Dir,
                libc::O_PATH | libc::O_DIRECTORY,
            );
            sys::umask(old);
            r.map_err(|e| ApplyError::new(Step::Cwd, 0, e.errno()))?;
        }
        // The createContainer hooks run next, from the container's root (as runc's do).
        sys::fchdir(root).map_err(err(Step::Chdir, 0))?;
        Ok(())
    }

    fn resolve_err(step_base: Step, index: usize) -> impl Fn(ResolveError) -> ApplyError {
        move |e| {
            let step = match (step_base, e) {
                (Step::ResolveTarget, ResolveError::Mkdir(_)) => Step::Mkdir,
                (Step::ResolveTarget, ResolveError::CreateFile(_)) => Step::CreateFile,
                (s, _) => s,
            };
            ApplyError::new(step, index, e.errno())
        }
    }

    /// Resolve a mount destination, creating it, and refuse targets that are
    /// the container root itself or lie inside procfs (unless allowed). A
    /// `proc` or `sysfs` destination must be an ordinary directory (see
    /// [`Self::ordinary_dir_target`]).
    fn mount_target(
        &self,
        root: c_int,
        i: usize,
        m: &MountPlan,
        create: Create,
    ) -> Result<Resolved> {
        let r = match &m.ordinary_dir {
            Some(e) => Self::ordinary_dir_target(root, i, m, e)?,
            None => resolve::resolve(root, &m.target.rel, create, libc::O_PATH)
                .map_err(Self::resolve_err(Step::ResolveTarget, i))?,
        };
        let st = sys::fstat(r.fd.raw()).map_err(err(Step::ResolveTarget, i))?;
        let root_st = sys::fstat(root).map_err(err(Step::ResolveTarget, i))?;
        if same_inode(&st, &root_st) {
            return Err(ApplyError::new(Step::CheckTarget, i, libc::EPERM));
        }
        let fs = sys::fstatfs(r.fd.raw()).map_err(err(Step::ResolveTarget, i))?;
        if fs.fs_type == PROC_SUPER_MAGIC && !m.proc_allowed {
            return Err(ApplyError::new(Step::CheckTarget, i, libc::EPERM));
        }
        Ok(r)
    }

    /// Resolve the destination `e` of a `proc` or `sysfs` mount: the parent
    /// directory inside the root like any destination (symlinks confined,
    /// missing directories created), the last component without following
    /// any symlink (`openat2(RESOLVE_NO_SYMLINKS)` on the parent fd). A
    /// symlink there (`ELOOP`, even a dangling one) or a non-directory
    /// (`ENOTDIR`) is refused, like runc does since CVE-2019-19921; a missing
    /// leaf is created as a directory.
    fn ordinary_dir_target(root: c_int, i: usize, m: &MountPlan, e: &Entry) -> Result<Resolved> {
        let refuse = if matches!(m.kind, MountKind::Sysfs) {
            Step::SysfsNotDir
        } else {
            Step::ProcNotDir
        };
        let parent = match &e.parent {
            Some(p) => Some(
                resolve::resolve(root, &p.rel, Create::Dir, libc::O_PATH | libc::O_DIRECTORY)
                    .map_err(Self::resolve_err(Step::ResolveTarget, i))?
                    .fd,
            ),
            None => None,
        };
        let dir = parent.as_ref().map_or(root, Fd::raw);
        let leaf = e.leaf.as_c_str();
        let open = || {
            sys::openat2(
                dir,
                leaf,
                libc::O_PATH | libc::O_DIRECTORY,
                IN_ROOT | RESOLVE_NO_SYMLINKS,
            )
        };
        let mut created = false;
        let opened = match open() {
            Err(libc::ENOENT) => {
                match sys::mkdirat(dir, leaf, 0o755) {
                    Ok(()) => created = true,
                    // Raced into existence: the open below judges what it is.
                    Err(libc::EEXIST) => {}
                    Err(errno) => return Err(ApplyError::new(Step::Mkdir, i, errno)),
                }
                open()
            }
            other => other,
        };
        match opened {
            Ok(fd) => Ok(Resolved { fd, created }),
            Err(errno @ (libc::ELOOP | libc::ENOTDIR)) => Err(ApplyError::new(refuse, i, errno)),
            Err(errno) => Err(ApplyError::new(Step::ResolveTarget, i, errno)),
        }
    }

    /// Re-open a target after mounting on it: the new fd is the new mount's root.
    fn reopen(root: c_int, t: &Target, flags: c_int, step: Step, i: usize) -> Result<Fd> {
        resolve::open_in_root(root, &t.rel, flags).map_err(err(step, i))
    }

    fn post_mount(&self, mnt: c_int, i: usize, m: &MountPlan) -> Result<()> {
        let path = proc_fd_path(mnt).map_err(err(Step::SetPropagation, i))?;
        for p in &m.propagation {
            sys::mount(None, path.as_cstr(), None, *p, None)
                .map_err(err(Step::SetPropagation, i))?;
        }
        if let Some((set, clr)) = m.rec_attr {
            sys::mount_setattr(mnt, true, set, clr).map_err(err(Step::SetAttr, i))?;
        }
        Ok(())
    }

    fn needs_post(m: &MountPlan) -> bool {
        !m.propagation.is_empty() || m.rec_attr.is_some()
    }

    fn apply_mount(&self, root: c_int, i: usize, m: &MountPlan) -> Result<()> {
        let flags = if m.defer_ro {
            m.flags & !libc::MS_RDONLY
        } else {
            m.flags
        };
        match &m.kind {
            MountKind::Bind {
                recursive,
                source_is_dir,
            } => {
                let create = if *source_is_dir {
                    Create::Dir
                } else {
                    Create::File
                };
                let t = self.mount_target(root, i, m, create)?;
                // The source opened by the runtime in this mount namespace, if
                // it handed one over (user namespaces), else the path.
                let src = Fd::new(self.take_bind_source(i));
                if src.raw() >= 0 {
                    bind_onto(src.raw(), t.fd.raw(), *recursive).map_err(err(Step::Mount, i))?;
                } else {
                    let path = proc_fd_path(t.fd.raw()).map_err(err(Step::Mount, i))?;
                    let rec = if *recursive { libc::MS_REC } else { 0 };
                    sys::mount(
                        m.source.as_deref(),
                        path.as_cstr(),
                        None,
                        libc::MS_BIND | rec,
                        None,
                    )
                    .map_err(err(Step::Mount, i))?;
                }
                drop(src);
                drop(t);
                let mnt = Self::reopen(root, &m.target, libc::O_PATH, Step::ResolveTarget, i)?;
                if flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT) != 0 {
                    let path = proc_fd_path(mnt.raw()).map_err(err(Step::Remount, i))?;
                    remount_keep_locked(mnt.raw(), path.as_cstr(), flags)
                        .map_err(err(Step::Remount, i))?;
                }
                self.post_mount(mnt.raw(), i, m)
            }
            MountKind::Tmpfs => self.apply_tmpfs(root, i, m, flags),
            MountKind::Sysfs => {
                let t = self.mount_target(root, i, m, Create::Dir)?;
                let path = proc_fd_path(t.fd.raw()).map_err(err(Step::Mount, i))?;
                match sys::mount(
                    m.source.as_deref(),
                    path.as_cstr(),
                    m.fstype.as_deref(),
                    flags,
                    m.data.as_deref(),
                ) {
                    Ok(()) => {}
                    Err(libc::EPERM) => {
                        // No new network namespace (or not allowed): show the
                        // host's /sys read-only instead.
                        sys::mount(
                            Some(c"/sys"),
                            path.as_cstr(),
                            None,
                            libc::MS_BIND | libc::MS_REC,
                            None,
                        )
                        .map_err(err(Step::Mount, i))?;
                        let mnt =
                            Self::reopen(root, &m.target, libc::O_PATH, Step::ResolveTarget, i)?;
                        let p = proc_fd_path(mnt.raw()).map_err(err(Step::Remount, i))?;
                        remount_keep_locked(mnt.raw(), p.as_cstr(), flags | libc::MS_RDONLY)
                            .map_err(err(Step::Remount, i))?;
                    }
                    Err(e) => return Err(ApplyError::new(Step::Mount, i, e)),
                }
                drop(t);
                if Self::needs_post(m) {
                    let mnt = Self::reopen(root, &m.target, libc::O_PATH, Step::ResolveTarget, i)?;
                    self.post_mount(mnt.raw(), i, m)?;
                }
                Ok(())
            }
            MountKind::Cgroup(c) => self.apply_cgroup(root, i, m, c),
            MountKind::Other => {
                let t = self.mount_target(root, i, m, Create::Dir)?;
                let path = proc_fd_path(t.fd.raw()).map_err(err(Step::Mount, i))?;
                sys::mount(
                    m.source.as_deref(),
                    path.as_cstr(),
                    m.fstype.as_deref(),
                    flags,
                    m.data.as_deref(),
                )
                .map_err(err(Step::Mount, i))?;
                drop(t);
                if Self::needs_post(m) {
                    let mnt = Self::reopen(root, &m.target, libc::O_PATH, Step::ResolveTarget, i)?;
                    self.post_mount(mnt.raw(), i, m)?;
                }
                Ok(())
            }
        }
    }

    fn apply_tmpfs(&self, root: c_int, i: usize, m: &MountPlan, flags: c_ulong) -> Result<()> {
        let t = self.mount_target(root, i, m, Create::Dir)?;
        let orig = sys::fstat(t.fd.raw()).map_err(err(Step::ResolveTarget, i))?;
        // The covered directory, readable, for tmpcopyup (opened before the mount).
        let src_dir = if m.copyup {
            Some(
                sys::openat(t.fd.raw(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
                    .map_err(err(Step::CopyUp, i))?,
            )
        } else {
            None
        };
        let path = proc_fd_path(t.fd.raw()).map_err(err(Step::Mount, i))?;
        sys::mount(
            m.source.as_deref(),
            path.as_cstr(),
            m.fstype.as_deref(),
            flags & !libc::MS_RDONLY,
            m.data.as_deref(),
        )
        .map_err(err(Step::Mount, i))?;
        let mnt = Self::reopen(
            root,
            &m.target,
            libc::O_RDONLY | libc::O_DIRECTORY,
            Step::ResolveTarget,
            i,
        )?;
        if let Some(src) = &src_dir {
            let mut buf = [0u8; COPY_BUF];
            if let Err(e) = copyup::copy_tree(src.raw(), mnt.raw(), &mut buf) {
                // Leave the directory as it was.
                if let Ok(mpath) = proc_fd_path(mnt.raw()) {
                    let _ = sys::umount2(mpath.as_cstr(), libc::MNT_DETACH);
                }
                return Err(ApplyError::new(Step::CopyUp, i, e));
            }
        }
        if m.keep_mode && !t.created {
            sys::fchmod(mnt.raw(), orig.st_mode & 0o7777).map_err(err(Step::Chmod, i))?;
        }
        if m.copyup {
            sys::fchown(mnt.raw(), orig.st_uid, orig.st_gid).map_err(err(Step::Chmod, i))?;
        }
        if flags & libc::MS_RDONLY != 0 {
            let p = proc_fd_path(mnt.raw()).map_err(err(Step::Remount, i))?;
            remount_keep_locked(mnt.raw(), p.as_cstr(), flags).map_err(err(Step::Remount, i))?;
        }
        self.post_mount(mnt.raw(), i, m)
    }

    fn cgroup_err(step: Step, i: usize, sub: usize) -> impl Fn(Errno) -> ApplyError {
        move |e| ApplyError {
            step,
            index: (u32::try_from(i).unwrap_or(u32::MAX >> 8) << 8) | (sub as u32 & 0xff),
            errno: e,
        }
    }

    /// This process' `/proc/self/cgroup`, read into `buf`: once for all the hierarchies
    /// of a cgroup mount (each read costs an open and the kernel's walk of every hierarchy).
    fn read_own_cgroups(buf: &mut [u8; CGROUP_FILE_BUF]) -> SysResult<&[u8]> {
        let f = sys::openat(libc::AT_FDCWD, c"/proc/self/cgroup", libc::O_RDONLY, 0)?;
        let mut n = 0usize;
        loop {
            let dst = buf.get_mut(n..).ok_or(libc::E2BIG)?;
            if dst.is_empty() {
                return Err(libc::E2BIG);
            }
            let r = sys::read(f.raw(), dst)?;
            if r == 0 {
                break;
            }
            n += r;
        }
        buf.get(..n).ok_or(libc::EIO)
    }

    /// Host directory of this process' cgroup in hierarchy `h`, from `own` (this process'
    /// `/proc/self/cgroup`): `<host mount point>/<own path relative to the mount's root>`.
    fn own_cgroup_dir(&self, h: usize, own: &[u8]) -> SysResult<StackPath<4096>> {
        let h = self.hierarchies.get(h).ok_or(libc::EINVAL)?;
        for line in own.split(|&b| b == b'\n') {
            let mut parts = line.splitn(3, |&b| b == b':');
            let (Some(id), Some(key), Some(own)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let matches = if h.v2 {
                id == b"0" && key.is_empty()
            } else {
                key == h.key.as_slice()
            };
            if !matches {
                continue;
            }
            let rel = if h.root.as_slice() == b"/" {
                own
            } else if own == h.root.as_slice() {
                &[][..]
            } else if own.starts_with(&h.root) && own.get(h.root.len()) == Some(&b'/') {
                own.get(h.root.len()..).ok_or(libc::EINVAL)?
            } else {
                return Err(libc::ENOENT);
            };
            let mut p = StackPath::<4096>::new();
            p.push(&h.mount_point)?;
            p.push(rel)?;
            return Ok(p);
        }
        Err(libc::ENOENT)
    }

    fn apply_cgroup(&self, root: c_int, i: usize, m: &MountPlan, c: &CgroupMount) -> Result<()> {
        if let Some(h) = c.unified {
            let ce = |step| Self::cgroup_err(step, i, 0);
            let t = self.mount_target(root, i, m, Create::Dir)?;
            let path = proc_fd_path(t.fd.raw()).map_err(err(Step::Mount, i))?;
            let mut r = sys::mount(
                Some(c"cgroup2"),
                path.as_cstr(),
                Some(c"cgroup2"),
                m.flags,
                None,
            );
            if r == Err(libc::EBUSY) {
                // The target already is the root of this hierarchy's mount (a /sys bound
                // from the runtime's, as rootless configs do, brings its cgroup2 mount
                // along), and the kernel refuses the same superblock on the same mount
                // point. Cover it with an empty tmpfs and mount on that.
                cgroup_tmpfs(path.as_cstr()).map_err(ce(Step::CgroupMount))?;
                let top = Self::reopen(root, &m.target, libc::O_PATH, Step::ResolveTarget, i)?;
                let p = proc_fd_path(top.raw()).map_err(ce(Step::CgroupMount))?;
                r = sys::mount(
                    Some(c"cgroup2"),
                    p.as_cstr(),
                    Some(c"cgroup2"),
                    m.flags,
                    None,
                );
            }
            match r {
                Ok(()) => {}
                Err(libc::EPERM) | Err(libc::EBUSY) => {
                    // Not allowed to mount cgroup2 (user ns without cgroup ns):
                    // bind the own cgroup (with a cgroup ns) or the whole tree.
                    let src = if self.new_cgroup_ns {
                        let mut buf = [0u8; CGROUP_FILE_BUF];
                        let own = Self::read_own_cgroups(&mut buf).map_err(ce(Step::CgroupPath))?;
                        self.own_cgroup_dir(h, own).map_err(ce(Step::CgroupPath))?
                    } else {
                        let mut p = StackPath::<4096>::new();
                        let hier = self
                            .hierarchies
                            .get(h)
                            .ok_or(libc::EINVAL)
                            .map_err(ce(Step::CgroupPath))?;
                        p.push(&hier.mount_point).map_err(ce(Step::CgroupPath))?;
                        p
                    };
                    sys::mount(
                        Some(src.as_cstr()),
                        path.as_cstr(),
                        None,
                        libc::MS_BIND | libc::MS_REC,
                        None,
                    )
                    .map_err(ce(Step::CgroupMount))?;
                    let mnt = Self::reopen(root, &m.target, libc::O_PATH, Step::ResolveTarget, i)?;
                    if m.flags != 0 {
                        let p = proc_fd_path(mnt.raw()).map_err(ce(Step::CgroupRemount))?;
                        remount_keep_locked(mnt.raw(), p.as_cstr(), m.flags)
                            .map_err(ce(Step::CgroupRemount))?;
                    }
                }
                Err(e) => return Err(ce(Step::CgroupMount)(e)),
            }
            drop(t);
            if Self::needs_post(m) {
                let mnt = Self::reopen(root, &m.target, libc::O_PATH, Step::ResolveTarget, i)?;
                self.post_mount(mnt.raw(), i, m)?;
            }
            return Ok(());
        }

        // cgroup v1 / hybrid: a tmpfs holding one directory per hierarchy.
        let t = self.mount_target(root, i, m, Create::Dir)?;
        let path = proc_fd_path(t.fd.raw()).map_err(err(Step::Mount, i))?;
        cgroup_tmpfs(path.as_cstr()).map_err(err(Step::Mount, i))?;
        drop(t);
        let top = Self::reopen(root, &m.target, libc::O_PATH, Step::ResolveTarget, i)?;
        let ro = m.flags & libc::MS_RDONLY;
        let mut own_buf = [0u8; CGROUP_FILE_BUF];
        let own: &[u8] = if self.new_cgroup_ns || c.subs.is_empty() {
            &[]
        } else {
            Self::read_own_cgroups(&mut own_buf).map_err(Self::cgroup_err(
                Step::CgroupPath,
                i,
                0,
            ))?
        };
        for (k, (h, sub_target)) in c.subs.iter().enumerate() {
            let ce = |step| Self::cgroup_err(step, i, k);
            let hier = self
                .hierarchies
                .get(*h)
                .ok_or(libc::EINVAL)
                .map_err(ce(Step::CgroupMount))?;
            let sfd = resolve::resolve(root, &sub_target.rel, Create::Dir, libc::O_PATH)
                .map_err(|e| ce(Step::CgroupResolve)(e.errno()))?;
            let spath = proc_fd_path(sfd.fd.raw()).map_err(ce(Step::CgroupMount))?;
            if self.new_cgroup_ns {
                let fstype = if hier.v2 { c"cgroup2" } else { c"cgroup" };
                sys::mount(
                    Some(fstype),
                    spath.as_cstr(),
                    Some(fstype),
                    CGROUP_DEFAULT | ro,
                    hier.data.as_deref(),
                )
                .map_err(ce(Step::CgroupMount))?;
            } else {
                let src = self.own_cgroup_dir(*h, own).map_err(ce(Step::CgroupPath))?;
                sys::mount(
                    Some(src.as_cstr()),
                    spath.as_cstr(),
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )
                .map_err(ce(Step::CgroupMount))?;
                drop(sfd);
                let smnt = resolve::open_in_root(root, &sub_target.rel, libc::O_PATH)
                    .map_err(ce(Step::CgroupResolve))?;
                let sp = proc_fd_path(smnt.raw()).map_err(ce(Step::CgroupRemount))?;
                remount_keep_locked(smnt.raw(), sp.as_cstr(), m.flags | CGROUP_DEFAULT)
                    .map_err(ce(Step::CgroupRemount))?;
            }
        }
        for (k, (leaf, to)) in c.links.iter().enumerate() {
            match sys::symlinkat(to, top.raw(), leaf) {
                Ok(()) | Err(libc::EEXIST) => {}
                Err(e) => return Err(Self::cgroup_err(Step::CgroupSymlink, i, k)(e)),
            }
        }
        if ro != 0 {
            let p = proc_fd_path(top.raw()).map_err(err(Step::Remount, i))?;
            remount_keep_locked(top.raw(), p.as_cstr(), CGROUP_DEFAULT | libc::MS_RDONLY)
                .map_err(err(Step::Remount, i))?;
        }
        self.post_mount(top.raw(), i, m)
    }

    /// Resolve (creating) the parent directory of an entry.
    fn entry_parent(root: c_int, e: &Entry, step: Step, i: usize) -> Result<Option<Fd>> {
        match &e.parent {
            Some(p) => resolve::resolve(root, &p.rel, Create::Dir, libc::O_PATH)
                .map(|r| Some(r.fd))
                .map_err(|e| ApplyError::new(step, i, e.errno())),
            None => Ok(None),
        }
    }

    /// Remove a non-directory at `leaf` in `dir` (never following it).
    /// Returns `false` if it is a mount point that must be left alone.
    fn clear_leaf(dir: c_int, leaf: &CStr) -> SysResult<bool> {
        match sys::lstatat(dir, leaf) {
            Err(libc::ENOENT) => Ok(true),
            Err(e) => Err(e),
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => Err(libc::EISDIR),
            Ok(_) => match sys::unlinkat(dir, leaf, 0) {
                Ok(()) | Err(libc::ENOENT) => Ok(true),
                Err(libc::EBUSY) => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    fn apply_devices(&self, root: c_int) -> Result<()> {
        for (k, d) in self.devices.iter().enumerate() {
            self.apply_device(root, k, d)?;
        }
        Ok(())
    }

    fn apply_device(&self, root: c_int, k: usize, d: &DevicePlan) -> Result<()> {
        let parent = Self::entry_parent(root, &d.entry, Step::DeviceResolve, k)?;
        let dir = parent.as_ref().map_or(root, Fd::raw);
        let leaf = d.entry.leaf.as_c_str();
        if !Self::clear_leaf(dir, leaf).map_err(err(Step::DeviceUnlink, k))? {
            // A mount point (e.g. a bind mount from the config): keep it.
            return Ok(());
        }
        if !self.new_user_ns {
            match sys::mknodat(dir, leaf, d.mode, d.rdev) {
                Ok(()) => {
                    return sys::fchownat(dir, leaf, d.uid, d.gid, libc::AT_SYMLINK_NOFOLLOW)
                        .map_err(err(Step::DeviceOwner, k));
                }
                Err(libc::EPERM) => {}
                Err(e) => return Err(ApplyError::new(Step::Mknod, k, e)),
            }
        }
        // Bind the host's node onto an empty file instead.
        let f = sys::openat(
            dir,
            leaf,
            libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_RDONLY,
            0o644,
        )
        .map_err(err(Step::BindDevice, k))?;
        let path = proc_fd_path(f.raw()).map_err(err(Step::BindDevice, k))?;
        sys::mount(
            Some(&d.host_path),
            path.as_cstr(),
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(err(Step::BindDevice, k))
    }

    fn apply_symlinks(&self, root: c_int) -> Result<()> {
        for (k, s) in self.symlinks.iter().enumerate() {
            let parent = Self::entry_parent(root, &s.entry, Step::Symlink, k)?;
            let dir = parent.as_ref().map_or(root, Fd::raw);
            if s.replace && !Self::clear_leaf(dir, &s.entry.leaf).map_err(err(Step::Symlink, k))? {
                continue;
            }
            match sys::symlinkat(&s.target, dir, &s.entry.leaf) {
                Ok(()) | Err(libc::EEXIST) => {}
                Err(e) => return Err(ApplyError::new(Step::Symlink, k, e)),
            }
        }
        Ok(())
    }

    /// Make the rootfs the process' root: `pivot_root(".", ".")` and a lazy
    /// unmount of the old root (made `rslave` first so nothing propagates to
    /// the host), or with `no_pivot` an `MS_MOVE` onto `/` and `chroot(".")`.
    /// Then `chdir("/")` and, if `rootfsPropagation` asked for it, the
    /// propagation of the new `/`.
    ///
    /// # Fragile child
    /// Call after [`mount_all`](RootfsPlan::mount_all) (and the
    /// createRuntime/createContainer hooks). No allocation.
    pub fn pivot(&self) -> Result<()> {
        let root = self.root_or_open(&self.rootfs)?;
        if !self.own_mount_ns {
            // The runtime's mount namespace: its root must stay where it is.
            sys::fchdir(root).map_err(err(Step::Chdir, 0))?;
            sys::chroot(c".").map_err(err(Step::MoveRoot, 0))?;
            sys::chdir(c"/").map_err(err(Step::Chdir, 0))?;
        } else if self.no_pivot {
            self.hide_outside()?;
            sys::fchdir(root).map_err(err(Step::Chdir, 0))?;
            sys::mount(Some(c"."), c"/", None, libc::MS_MOVE, None)
                .map_err(err(Step::MoveRoot, 0))?;
            sys::chroot(c".").map_err(err(Step::MoveRoot, 0))?;
            sys::chdir(c"/").map_err(err(Step::Chdir, 0))?;
        } else {
            let old = sys::openat(libc::AT_FDCWD, c"/", libc::O_RDONLY | libc::O_DIRECTORY, 0)
                .map_err(err(Step::OpenRoot, 0))?;
            sys::fchdir(root).map_err(err(Step::Chdir, 0))?;
            sys::pivot_root(c".", c".").map_err(err(Step::PivotRoot, 0))?;
            // The old root is now stacked on "."; step onto it explicitly.
            sys::fchdir(old.raw()).map_err(err(Step::Chdir, 0))?;
            sys::mount(None, c".", None, libc::MS_SLAVE | libc::MS_REC, None)
                .map_err(err(Step::UnmountOldRoot, 0))?;
            sys::umount2(c".", libc::MNT_DETACH).map_err(err(Step::UnmountOldRoot, 0))?;
            drop(old);
            sys::chdir(c"/").map_err(err(Step::Chdir, 0))?;
        }
        if let Some(p) = self.new_root_propagation {
            sys::mount(None, c"/", None, p, None).map_err(err(Step::RootPropagation, 0))?;
        }
        let new_root = sys::openat(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(err(Step::OpenRoot, 0))?;
        self.set_root(new_root);
        Ok(())
    }

    /// no_pivot: detach the procfs and sysfs mounts outside the rootfs (made slaves first,
    /// so that the detach stays in the container's namespace), or cover them with an empty
    /// read-only tmpfs where they can't be detached (mounts locked by a user namespace), as
    /// runc does.
    fn hide_outside(&self) -> Result<()> {
        for (i, p) in self.hide_outside.iter().enumerate() {
            let _ = sys::mount(None, p, None, libc::MS_SLAVE | libc::MS_REC, None);
            match sys::umount2(p, libc::MNT_DETACH) {
                Ok(()) | Err(libc::ENOENT) => {}
                Err(libc::EINVAL | libc::EPERM) => sys::mount(
                    Some(c"tmpfs"),
                    p,
                    Some(c"tmpfs"),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    None,
                )
                .map_err(err(Step::HideOutside, i))?,
                Err(e) => return Err(ApplyError::new(Step::HideOutside, i, e)),
            }
        }
        Ok(())
    }

    /// Bind-mount the terminal, given as an open descriptor of the pty slave
    /// (e.g. from `ioctl(TIOCGPTPEER)`), onto `/dev/console`, which is created
    /// as an empty file if missing; a symlink or other special file there is
    /// removed first, never followed. The bind source is the descriptor, not a
    /// path, so a symlink or mount in the container's `/dev/pts` can't redirect
    /// it (CVE-2025-52565).
    ///
    /// # Fragile child
    /// Call after [`pivot`](RootfsPlan::pivot). No allocation.
    ///
    /// ```no_run
    /// # fn f(plan: &berth_rootfs::RootfsPlan, slave: std::os::fd::RawFd) -> Result<(), berth_rootfs::ApplyError> {
    /// plan.mount_console_fd(slave)?;
    /// # Ok(()) }
    /// ```
    pub fn mount_console_fd(&self, slave: std::os::fd::RawFd) -> Result<()> {
        let root = self.root_or_open(c"/")?;
        let e = &self.console;
        let parent = Self::entry_parent(root, e, Step::Console, 0)?;
        let dir = parent.as_ref().map_or(root, Fd::raw);
        let leaf = e.leaf.as_c_str();
        match sys::lstatat(dir, leaf) {
            Ok(st) => {
                let fmt = st.st_mode & libc::S_IFMT;
                if fmt == libc::S_IFDIR {
                    return Err(ApplyError::new(Step::Console, 0, libc::EISDIR));
                }
                if fmt != libc::S_IFREG && fmt != libc::S_IFCHR {
                    match sys::unlinkat(dir, leaf, 0) {
                        Ok(()) | Err(libc::ENOENT) => {}
                        Err(e) => return Err(ApplyError::new(Step::Console, 0, e)),
                    }
                }
            }
            Err(libc::ENOENT) => {}
            Err(e) => return Err(ApplyError::new(Step::Console, 0, e)),
        }
        match sys::openat(
            dir,
            leaf,
            libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_RDONLY,
            0o666,
        ) {
            Ok(_) | Err(libc::EEXIST) => {}
            Err(e) => return Err(ApplyError::new(Step::Console, 0, e)),
        }
        let fd = sys::openat(dir, leaf, libc::O_PATH | libc::O_NOFOLLOW, 0)
            .map_err(err(Step::Console, 0))?;
        let st = sys::fstat(fd.raw()).map_err(err(Step::Console, 0))?;
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt != libc::S_IFREG && fmt != libc::S_IFCHR {
            return Err(ApplyError::new(Step::Console, 0, libc::ELOOP));
        }
        bind_onto(slave, fd.raw(), false).map_err(err(Step::Console, 0))
    }

    /// Finish inside the new root: sysctls, read-only paths, masked paths,
    /// the delayed read-only remount of `/dev`, and `root.readonly`. Closes
    /// the plan's descriptors.
    ///
    /// Sysctls are written before `readonlyPaths` are applied (a read-only
    /// `/proc/sys` would refuse them). Paths are resolved inside the new root
    /// with `openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)` and mounted via
    /// `/proc/self/fd/N` (the container's `/proc`); masked or read-only paths
    /// that do not exist are skipped.
    ///
    /// # Fragile child
    /// Call after [`pivot`](RootfsPlan::pivot). No allocation.
    pub fn finish(&self) -> Result<()> {
        let r = self.finish_inner();
        self.close_fds();
        r
    }

    fn finish_inner(&self) -> Result<()> {
        let root = self.root_or_open(c"/")?;

        if !self.sysctl.is_empty() {
            let proc = ProcRoot::open(root, c"proc", IN_ROOT).map_err(sysctl_err(0))?;
            for (k, s) in self.sysctl.iter().enumerate() {
                // "sys/..." under the verified procfs root, without crossing any mount point:
                // something mounted over the file (or a directory above it) to redirect the
                // write onto another procfs file is refused (CVE-2025-52881).
                proc.write(&s.path, &s.value, RESOLVE_NO_SYMLINKS)
                    .map_err(sysctl_err(k))?;
            }
        }

        for (k, t) in self.readonly_paths.iter().enumerate() {
            let fd = match resolve::open_in_root(root, &t.rel, libc::O_PATH) {
                Ok(fd) => fd,
                Err(libc::ENOENT) => continue,
                Err(e) => return Err(ApplyError::new(Step::ReadonlyResolve, k, e)),
            };
            bind_onto(fd.raw(), fd.raw(), true).map_err(err(Step::ReadonlyPath, k))?;
            drop(fd);
            let mnt = Self::reopen(root, t, libc::O_PATH, Step::ReadonlyResolve, k)?;
            let p = proc_fd_path(mnt.raw()).map_err(err(Step::ReadonlyRemount, k))?;
            make_readonly(mnt.raw(), p.as_cstr()).map_err(err(Step::ReadonlyRemount, k))?;
        }

        let mut null: Option<Fd> = None;
        for (k, t) in self.masked.iter().enumerate() {
            let fd = match resolve::open_in_root(root, &t.rel, libc::O_PATH) {
                Ok(fd) => fd,
                Err(libc::ENOENT) => continue,
                Err(e) => return Err(ApplyError::new(Step::MaskResolve, k, e)),
            };
            let st = sys::fstat(fd.raw()).map_err(err(Step::MaskResolve, k))?;
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                mask_dir(fd.raw()).map_err(err(Step::Mask, k))?;
            } else {
                if null.is_none() {
                    null = Some(
                        self.open_dev_null(root)
                            .map_err(err(Step::MaskDevNull, k))?,
                    );
                }
                let nfd = null.as_ref().map_or(-1, Fd::raw);
                bind_onto(nfd, fd.raw(), false).map_err(err(Step::Mask, k))?;
            }
        }
        drop(null);

        for (k, m) in self.mounts.iter().enumerate() {
            if m.defer_ro {
                let mnt = Self::reopen(root, &m.target, libc::O_PATH, Step::DevReadonly, k)?;
                let p = proc_fd_path(mnt.raw()).map_err(err(Step::DevReadonly, k))?;
                make_readonly(mnt.raw(), p.as_cstr()).map_err(err(Step::DevReadonly, k))?;
            }
        }

        if self.readonly_root {
            make_readonly(root, c"/").map_err(err(Step::RootReadonly, 0))?;
        }
        Ok(())
    }

    /// Open the container's `/dev/null` without following symlinks and check
    /// that it really is the null device (char 1:3).
    fn open_dev_null(&self, root: c_int) -> SysResult<Fd> {
        let fd = sys::openat2(
            root,
            &self.dev_null.rel,
            libc::O_PATH | libc::O_NOFOLLOW,
            IN_ROOT | RESOLVE_NO_SYMLINKS,
        )?;
        let st = sys::fstat(fd.raw())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
            return Err(libc::ENODEV);
        }
        Ok(fd)
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
mod tests {
    use super::*;

    #[test]
    fn statfs_flags_to_mount_flags() {
        let info = |flags: u64| sys::FsInfo { fs_type: 0, flags };
        // ST_VALID (0x20) and superblock-only bits (ST_SYNCHRONOUS) are dropped.
        let f = mount_flags_of(&info(0x20 | 0x10 | ST_RDONLY | ST_NOSUID | ST_RELATIME));
        assert_eq!(f, libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_RELATIME);
        let f = mount_flags_of(&info(ST_NODEV | ST_NOEXEC | ST_NOATIME | ST_NOSYMFOLLOW));
        assert_eq!(
            f,
            libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOATIME | libc::MS_NOSYMFOLLOW
        );
        // Neither noatime nor relatime: strictatime.
        assert_eq!(mount_flags_of(&info(0)), libc::MS_STRICTATIME);
        assert_eq!(
            mount_flags_of(&info(ST_NODIRATIME)),
            libc::MS_NODIRATIME | libc::MS_STRICTATIME
        );
    }
}
