//! `NamespacePlan`: the validated, pre-opened namespace part of a container config.

use std::ffi::CStr;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

// Closes an fd if it is not negative, errors ignored. Allocation-free.
use berth_sys::close as close_raw;
use oci_spec::runtime::{Linux, LinuxIdMapping};

use crate::child::{ChildError, ChildOp, errno};
use crate::error::NamespaceError;
use crate::kind::NamespaceKind;

/// Most extents the kernel accepts in one `uid_map`/`gid_map` (since Linux 4.15).
const MAX_ID_EXTENTS: usize = 340;

/// Largest |secs| of a time offset the kernel can ever accept: it refuses offsets
/// that move the clock below 0 or above `KTIME_SEC_MAX / 2` (4611686018 s).
const MAX_TIME_OFFSET_SECS: i64 = 4_611_686_018;

const NSEC_PER_SEC: u32 = 1_000_000_000;

const TIMENS_OFFSETS: &CStr = c"/proc/self/timens_offsets";

/// A file descriptor slot usable through `&self` from the fragile child: an atomic
/// holding the fd or -1. Closing swaps in -1 first, so an fd is closed at most once.
struct FdSlot(AtomicI32);

impl FdSlot {
    const fn empty() -> Self {
        FdSlot(AtomicI32::new(-1))
    }

    fn new(fd: libc::c_int) -> Self {
        FdSlot(AtomicI32::new(fd))
    }

    fn get(&self) -> libc::c_int {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, fd: libc::c_int) {
        self.0.store(fd, Ordering::Relaxed);
    }

    fn take(&self) -> libc::c_int {
        self.0.swap(-1, Ordering::Relaxed)
    }

    /// Closes the fd if there is one. Allocation-free.
    fn close(&self) {
        close_raw(self.take());
    }
}

impl Drop for FdSlot {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for FdSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// A namespace to enter by path: its config entry and the fd opened by `prepare`.
#[derive(Debug)]
struct Join {
    kind: NamespaceKind,
    index: usize,
    path: PathBuf,
    fd: FdSlot,
}

/// The namespace part of a container, validated and made ready for the spawn.
///
/// [`prepare`](Self::prepare) does all the checking, text formatting and opening
/// in the parent; the child-side methods (marked *Fragile child*) then only issue
/// raw syscalls on what the plan holds, so they are safe between `clone` and
/// `exec`. See the crate documentation for the two orders in which the runtime
/// composes them.
///
/// Join fds are opened `O_CLOEXEC` and owned by the plan: dropping the plan (or
/// [`close_fds`](Self::close_fds)) closes them.
///
/// ```no_run
/// use berth_namespaces::{NamespaceKind, NamespacePlan};
/// use oci_spec::runtime::{LinuxBuilder, LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType};
///
/// let map = LinuxIdMappingBuilder::default().container_id(0u32).host_id(100000u32).size(65536u32).build()?;
/// let linux = LinuxBuilder::default()
///     .namespaces(vec![
///         LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::User).build()?,
///         LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Mount).build()?,
///         LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network).path("/run/netns/blue").build()?,
///     ])
///     .uid_mappings(vec![map])
///     .gid_mappings(vec![map])
///     .build()?;
/// let plan = NamespacePlan::prepare(&linux)?;
/// assert!(plan.creates(NamespaceKind::User) && plan.joins(NamespaceKind::Network));
/// assert!(plan.needs_intermediate());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct NamespacePlan {
    /// Every `CLONE_NEW*` flag to create, user and time included.
    create: libc::c_int,
    /// Namespaces to enter, in `NamespaceKind::ALL` order.
    joins: Vec<Join>,
    /// `uid_map` text, "inside outside count\n" lines (empty without a new user ns).
    uid_map: Vec<u8>,
    /// `gid_map` text.
    gid_map: Vec<u8>,
    /// `timens_offsets` text (empty if there is nothing to offset).
    time_offsets: Vec<u8>,
    /// `/proc/self/timens_offsets`, opened by `join_all` before it enters a mount
    /// namespace (whose `/proc` may not show this process).
    timens_fd: FdSlot,
}

impl Default for NamespacePlan {
    fn default() -> Self {
        Self::empty()
    }
}

impl NamespacePlan {
    /// A plan that creates nothing and joins nothing (what a config without
    /// `linux.namespaces` asks for: the container shares every namespace of the
    /// runtime). Every method is then a no-op.
    pub fn empty() -> Self {
        NamespacePlan {
            create: 0,
            joins: Vec::new(),
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            time_offsets: Vec::new(),
            timens_fd: FdSlot::empty(),
        }
    }

    /// Validates and prepares the namespace part of a config: `linux.namespaces`,
    /// `linux.uidMappings`, `linux.gidMappings` and `linux.timeOffsets`.
    ///
    /// First the config's own rules, as [`validate`](crate::validate) checks them. An
    /// entry without a path (or with an empty path, `"path": ""`, as runc reads it) asks
    /// for a new namespace; an entry with a path asks to join it. Every join path must be absolute and
    /// name a regular file (what namespace files are: a FIFO or a device is refused
    /// without being opened); it is opened `O_RDONLY|O_CLOEXEC` now and checked with
    /// `ioctl(NS_GET_NSTYPE)` to really be a namespace of the entry's type.
    ///
    /// # Errors
    /// A duplicate type, a relative or unopenable path, a file that is not a
    /// namespace or of another type, a new namespace type the kernel lacks, mappings
    /// without a new user namespace, a new user namespace without both uid and gid
    /// mappings, empty, overflowing or overlapping mappings (or more than the kernel
    /// takes), `timeOffsets` without a new time namespace, a `timeOffsets` key other
    /// than `monotonic`/`boottime`, or an offset out of the kernel's range.
    pub fn prepare(linux: &Linux) -> Result<Self, NamespaceError> {
        let checked = check(linux)?;

        check_kernel_support(&checked.created)?;

        let mut joins = Vec::with_capacity(checked.joins.len());
        for (kind, index, path) in checked.joins {
            joins.push(open_join(kind, index, path)?);
        }
        joins.sort_by_key(|j| NamespaceKind::ALL.iter().position(|k| *k == j.kind));

        Ok(NamespacePlan {
            create: checked.create,
            joins,
            uid_map: checked.uid_map,
            gid_map: checked.gid_map,
            time_offsets: checked.time_offsets,
            timens_fd: FdSlot::empty(),
        })
    }

    /// Whether the plan creates a new namespace of this kind.
    pub fn creates(&self, k: NamespaceKind) -> bool {
        self.create & k.clone_flag() != 0
    }

    /// Whether the plan enters an existing namespace of this kind, given by path.
    pub fn joins(&self, k: NamespaceKind) -> bool {
        self.joins.iter().any(|j| j.kind == k)
    }

    /// The path of the namespace of this kind the plan enters, if any.
    pub fn join_path(&self, k: NamespaceKind) -> Option<&Path> {
        self.join_entry(k).map(|(_, p)| p)
    }

    /// Index in `linux.namespaces` and path of the join of this kind.
    pub(crate) fn join_entry(&self, k: NamespaceKind) -> Option<(usize, &Path)> {
        self.joins
            .iter()
            .find(|j| j.kind == k)
            .map(|j| (j.index, j.path.as_path()))
    }

    /// Every `CLONE_NEW*` flag to create except `CLONE_NEWTIME` (a time namespace
    /// needs its offsets written before anything enters it, so it goes through
    /// [`unshare_rest`](Self::unshare_rest) on the slow path). OR it with `SIGCHLD`
    /// for a fork-like `clone(2)`.
    pub fn clone_flags(&self) -> libc::c_int {
        self.create & !libc::CLONE_NEWTIME
    }

    /// The flags [`unshare_rest`](Self::unshare_rest) passes: every `CLONE_NEW*` to
    /// create except `CLONE_NEWUSER`.
    pub(crate) fn unshare_rest_flags(&self) -> libc::c_int {
        self.create & !libc::CLONE_NEWUSER
    }

    /// Whether the slow path is needed: some namespace is joined by path, or a time
    /// namespace is created. The runtime then clones a plain intermediate child that
    /// runs [`join_all`](Self::join_all), [`unshare_user`](Self::unshare_user),
    /// [`unshare_rest`](Self::unshare_rest) and
    /// [`write_time_offsets`](Self::write_time_offsets), then forks the container init.
    pub fn needs_intermediate(&self) -> bool {
        !self.joins.is_empty() || self.creates(NamespaceKind::Time)
    }

    /// Writes the uid and gid maps of process `pid`'s new user namespace:
    /// `/proc/<pid>/uid_map`, then `/proc/<pid>/gid_map`, each in one `write(2)` of
    /// `"inside outside count\n"` lines. As root, `setgroups` is left alone.
    ///
    /// When the caller is not root (rootless), the kernel only takes a map of one id, the
    /// caller's own effective uid (gid), and a gid map only once `setgroups` is "deny":
    /// for such a gid map `"deny"` is first written to `/proc/<pid>/setgroups`. A map the
    /// kernel refuses (`EPERM`) is then handed to `newuidmap`/`newgidmap` (found in `PATH`),
    /// which map what `/etc/subuid` and `/etc/subgid` grant the caller, as runc does.
    /// `pid`'s `/proc` files must be open to the caller (the process dumpable).
    ///
    /// A no-op if the plan creates no user namespace. Parent side (allocates).
    ///
    /// # Errors
    /// [`NamespaceError::InvalidPid`] for `pid <= 0`, [`NamespaceError::WriteIdMap`]
    /// naming the proc file that could not be written, [`NamespaceError::IdMapTool`] when
    /// the map needed a `newuidmap`/`newgidmap` that is missing or failed.
    ///
    /// ```no_run
    /// # fn f(plan: &berth_namespaces::NamespacePlan, child: libc::pid_t) -> Result<(), berth_namespaces::NamespaceError> {
    /// if plan.creates(berth_namespaces::NamespaceKind::User) {
    ///     plan.write_id_mappings(child)?; // then tell the child to go on
    /// }
    /// # Ok(()) }
    /// ```
    pub fn write_id_mappings(&self, pid: libc::pid_t) -> Result<(), NamespaceError> {
        if !self.creates(NamespaceKind::User) {
            return Ok(());
        }
        if pid <= 0 {
            return Err(NamespaceError::InvalidPid { pid });
        }
        // SAFETY: geteuid and getegid have no preconditions and cannot fail.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let rootless = euid != 0;
        write_id_map(
            pid,
            "uid_map",
            &self.uid_map,
            rootless.then_some("newuidmap"),
        )?;
        if rootless && is_single_id_map_of(&self.gid_map, egid) {
            write_proc_file(format!("/proc/{pid}/setgroups"), b"deny")?;
        }
        write_id_map(
            pid,
            "gid_map",
            &self.gid_map,
            rootless.then_some("newgidmap"),
        )
    }

    /// Enters every namespace given by path with `setns(2)`, the user namespace
    /// first, then ipc, uts, net, pid, mnt, cgroup and time
    /// ([`NamespaceKind::ALL`] order). A user namespace the process is already in is
    /// skipped (the kernel refuses to re-enter it). A pid namespace applies to
    /// children forked afterwards. When a mount namespace is joined and a time
    /// namespace is to be created, `/proc/self/timens_offsets` is opened just before
    /// entering the mount namespace, whose `/proc` may not show this process, for
    /// [`write_time_offsets`](Self::write_time_offsets) to use.
    ///
    /// # Fragile child
    /// Allocation-free, no locks, no panics. Call in a single-threaded child.
    ///
    /// # Errors
    /// [`ChildError`] with op `Setns` and the kind (or `TimeOffsets` if the pre-open
    /// failed); [`ChildError::describe`] names the path.
    ///
    /// ```no_run
    /// # fn child(plan: &berth_namespaces::NamespacePlan) -> Result<(), berth_namespaces::ChildError> {
    /// // In the intermediate child:
    /// plan.join_all()?;
    /// plan.close_fds();
    /// plan.unshare_user()?; // parent: plan.write_id_mappings(pid), then signal
    /// plan.unshare_rest()?;
    /// plan.write_time_offsets()?;
    /// // then clone(CLONE_PARENT | SIGCHLD) the container init
    /// # Ok(()) }
    /// ```
    #[deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )]
    pub fn join_all(&self) -> Result<(), ChildError> {
        for j in &self.joins {
            if j.kind == NamespaceKind::Mount
                && self.creates(NamespaceKind::Time)
                && !self.time_offsets.is_empty()
                && self.timens_fd.get() < 0
            {
                self.timens_fd.set(open_timens_offsets()?);
            }
            let fd = j.fd.get();
            // SAFETY: setns only reads its two integer arguments; an invalid fd is
            // reported as EBADF.
            let rc = unsafe { libc::setns(fd, j.kind.clone_flag()) };
            if rc != 0 {
                let e = errno();
                if j.kind == NamespaceKind::User && e == libc::EINVAL && in_user_ns_of(fd) {
                    continue;
                }
                return Err(ChildError::new(ChildOp::Setns, Some(j.kind), e));
            }
        }
        Ok(())
    }

    /// `unshare(CLONE_NEWUSER)` if the plan creates a user namespace, else nothing.
    /// The parent must then [`write_id_mappings`](Self::write_id_mappings) for this
    /// process before it goes on.
    ///
    /// # Fragile child
    /// Allocation-free, no locks, no panics. Call in a single-threaded child.
    ///
    /// # Errors
    /// [`ChildError`] with op `Unshare` and kind `User`.
    ///
    /// ```no_run
    /// # fn child(plan: &berth_namespaces::NamespacePlan) -> Result<(), berth_namespaces::ChildError> {
    /// plan.unshare_user()?;
    /// # Ok(()) }
    /// ```
    #[deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )]
    pub fn unshare_user(&self) -> Result<(), ChildError> {
        if !self.creates(NamespaceKind::User) {
            return Ok(());
        }
        // SAFETY: unshare only reads its integer argument.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
            return Err(ChildError::new(
                ChildOp::Unshare,
                Some(NamespaceKind::User),
                errno(),
            ));
        }
        Ok(())
    }

    /// One `unshare(2)` with every other `CLONE_NEW*` flag to create (everything but
    /// `CLONE_NEWUSER`, including `CLONE_NEWPID` and `CLONE_NEWTIME`, which take
    /// effect for children forked afterwards). Nothing if there is nothing to create.
    ///
    /// # Fragile child
    /// Allocation-free, no locks, no panics.
    ///
    /// # Errors
    /// [`ChildError`] with op `Unshare` and no kind; [`ChildError::describe`] lists
    /// the flags.
    ///
    /// ```no_run
    /// # fn child(plan: &berth_namespaces::NamespacePlan) -> Result<(), berth_namespaces::ChildError> {
    /// plan.unshare_rest()?;
    /// # Ok(()) }
    /// ```
    #[deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )]
    pub fn unshare_rest(&self) -> Result<(), ChildError> {
        let flags = self.unshare_rest_flags();
        if flags == 0 {
            return Ok(());
        }
        // SAFETY: unshare only reads its integer argument.
        if unsafe { libc::unshare(flags) } != 0 {
            return Err(ChildError::new(ChildOp::Unshare, None, errno()));
        }
        Ok(())
    }

    /// Writes the prebuilt `linux.timeOffsets` text (`"monotonic <secs> <nanosecs>\n"`,
    /// `"boottime <secs> <nanosecs>\n"` for the clocks given) to
    /// `/proc/self/timens_offsets` in one `write(2)`. Call after
    /// [`unshare_rest`](Self::unshare_rest) and before any process enters the new time
    /// namespace (the kernel freezes the offsets then). Nothing if the plan creates no
    /// time namespace or has no offsets.
    ///
    /// # Fragile child
    /// Allocation-free, no locks, no panics.
    ///
    /// # Errors
    /// [`ChildError`] with op `TimeOffsets` and kind `Time`.
    ///
    /// ```no_run
    /// # fn child(plan: &berth_namespaces::NamespacePlan) -> Result<(), berth_namespaces::ChildError> {
    /// plan.unshare_rest()?;
    /// plan.write_time_offsets()?;
    /// # Ok(()) }
    /// ```
    #[deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )]
    pub fn write_time_offsets(&self) -> Result<(), ChildError> {
        let pre = self.timens_fd.take();
        if !self.creates(NamespaceKind::Time) || self.time_offsets.is_empty() {
            close_raw(pre);
            return Ok(());
        }
        let fd = if pre >= 0 {
            pre
        } else {
            open_timens_offsets()?
        };
        let buf = &self.time_offsets;
        // SAFETY: `buf` is a live buffer of `buf.len()` bytes; fd is ours.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        let e = errno();
        close_raw(fd);
        if n < 0 {
            return Err(ChildError::new(
                ChildOp::TimeOffsets,
                Some(NamespaceKind::Time),
                e,
            ));
        }
        if n.unsigned_abs() != buf.len() {
            return Err(ChildError::new(
                ChildOp::TimeOffsets,
                Some(NamespaceKind::Time),
                libc::EIO,
            ));
        }
        Ok(())
    }

    /// Closes the fds of the namespaces to join: in the parent once the child is
    /// spawned, in the child after [`join_all`](Self::join_all). Idempotent; the plan
    /// keeps its paths for error messages.
    ///
    /// # Fragile child
    /// Allocation-free, no locks, no panics.
    #[deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )]
    pub fn close_fds(&self) {
        for j in &self.joins {
            j.fd.close();
        }
    }
}

/// What [`check`] found in a config: the namespaces to create and to join, and the
/// rendered id-map and time-offset texts.
pub(crate) struct Checked<'a> {
    create: libc::c_int,
    /// Every namespace to create, with its index in `linux.namespaces`.
    created: Vec<(NamespaceKind, usize)>,
    /// Every namespace to join: kind, index, path.
    joins: Vec<(NamespaceKind, usize, &'a Path)>,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    time_offsets: Vec<u8>,
}

/// The config's own rules for `linux.namespaces`, `linux.uidMappings`,
/// `linux.gidMappings` and `linux.timeOffsets`, checked without looking at the system:
/// the part of [`NamespacePlan::prepare`] that [`crate::validate`] runs alone.
///
/// An entry whose path is absent or empty (`"path": ""`) creates a namespace, as with
/// runc (whose Go config reads an empty path as none).
pub(crate) fn check(linux: &Linux) -> Result<Checked<'_>, NamespaceError> {
    let mut first_of: [Option<usize>; 8] = [None; 8];
    let mut create: libc::c_int = 0;
    let mut user_index = 0;
    let mut joins: Vec<(NamespaceKind, usize, &Path)> = Vec::new();
    let mut created: Vec<(NamespaceKind, usize)> = Vec::new();

    for (index, ns) in linux.namespaces().iter().flatten().enumerate() {
        let kind = NamespaceKind::from(ns.typ());
        let slot = &mut first_of[usize::from(kind.code() - 1)];
        if let Some(first) = *slot {
            return Err(NamespaceError::Duplicate { index, first, kind });
        }
        *slot = Some(index);
        match ns.path().as_deref() {
            Some(path) if !path.as_os_str().is_empty() => {
                if !path.is_absolute() {
                    return Err(NamespaceError::RelativePath {
                        index,
                        path: path.to_path_buf(),
                    });
                }
                joins.push((kind, index, path));
            }
            _ => {
                create |= kind.clone_flag();
                created.push((kind, index));
                if kind == NamespaceKind::User {
                    user_index = index;
                }
            }
        }
    }

    let uid = linux.uid_mappings().as_deref().unwrap_or_default();
    let gid = linux.gid_mappings().as_deref().unwrap_or_default();
    let (uid_map, gid_map) = if create & libc::CLONE_NEWUSER == 0 {
        for (field, maps) in [(UID_FIELD, uid), (GID_FIELD, gid)] {
            if !maps.is_empty() {
                return Err(NamespaceError::MappingsWithoutUserNamespace { field });
            }
        }
        (Vec::new(), Vec::new())
    } else {
        for (field, maps) in [(UID_FIELD, uid), (GID_FIELD, gid)] {
            if maps.is_empty() {
                return Err(NamespaceError::UserNamespaceWithoutMappings {
                    index: user_index,
                    field,
                });
            }
        }
        (map_text(UID_FIELD, uid)?, map_text(GID_FIELD, gid)?)
    };

    let time_offsets = time_offsets_text(linux, create)?;

    Ok(Checked {
        create,
        created,
        joins,
        uid_map,
        gid_map,
        time_offsets,
    })
}

const UID_FIELD: &str = "linux.uidMappings";
const GID_FIELD: &str = "linux.gidMappings";

/// Validates mappings and renders the `uid_map`/`gid_map` text.
fn map_text(field: &'static str, maps: &[LinuxIdMapping]) -> Result<Vec<u8>, NamespaceError> {
    if maps.len() > MAX_ID_EXTENTS {
        return Err(NamespaceError::TooManyMappings {
            field,
            count: maps.len(),
            max: MAX_ID_EXTENTS,
        });
    }
    // (container first, container last, host first, host last)
    let mut ranges: Vec<(u32, u32, u32, u32)> = Vec::with_capacity(maps.len());
    for (index, m) in maps.iter().enumerate() {
        let size = m.size();
        if size == 0 {
            return Err(NamespaceError::EmptyMapping { field, index });
        }
        let range = |which: &'static str, start: u32| {
            // The kernel needs start + size to fit in u32 (id 4294967295 is never mapped).
            match start.checked_add(size) {
                Some(_) => Ok(start + (size - 1)),
                None => Err(NamespaceError::MappingOverflow {
                    field,
                    index,
                    which,
                    start,
                    size,
                }),
            }
        };
        let c_end = range("containerID", m.container_id())?;
        let h_end = range("hostID", m.host_id())?;
        let (c, h) = (m.container_id(), m.host_id());
        for (other, &(oc, oc_end, oh, oh_end)) in ranges.iter().enumerate() {
            for (which, start, end, other_start, other_end) in [
                ("containerID", c, c_end, oc, oc_end),
                ("hostID", h, h_end, oh, oh_end),
            ] {
                if start <= other_end && other_start <= end {
                    return Err(NamespaceError::OverlappingMappings {
                        field,
                        index,
                        other,
                        which,
                        start,
                        end,
                        other_start,
                        other_end,
                    });
                }
            }
        }
        ranges.push((c, c_end, h, h_end));
    }
    let mut text = String::new();
    for m in maps {
        text.push_str(&format!(
            "{} {} {}\n",
            m.container_id(),
            m.host_id(),
            m.size()
        ));
    }
    let limit = page_size();
    if text.len() >= limit {
        return Err(NamespaceError::MappingsTooLong {
            field,
            len: text.len(),
            limit,
        });
    }
    Ok(text.into_bytes())
}

/// The system page size (the kernel takes id maps shorter than one page).
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(v).ok().filter(|v| *v > 0).unwrap_or(4096)
}

/// Validates `linux.timeOffsets` and renders the `timens_offsets` text.
fn time_offsets_text(linux: &Linux, create: libc::c_int) -> Result<Vec<u8>, NamespaceError> {
    let Some(offsets) = linux.time_offsets().as_ref().filter(|m| !m.is_empty()) else {
        return Ok(Vec::new());
    };
    if create & libc::CLONE_NEWTIME == 0 {
        return Err(NamespaceError::TimeOffsetsWithoutTimeNamespace);
    }
    let mut keys: Vec<&String> = offsets.keys().collect();
    keys.sort();
    for key in keys {
        if key != "monotonic" && key != "boottime" {
            return Err(NamespaceError::UnknownTimeOffsetClock { key: key.clone() });
        }
    }
    let mut text = String::new();
    for key in ["monotonic", "boottime"] {
        let Some(off) = offsets.get(key) else {
            continue;
        };
        let secs = off.secs().unwrap_or(0);
        let nanosecs = off.nanosecs().unwrap_or(0);
        if nanosecs >= NSEC_PER_SEC {
            return Err(NamespaceError::TimeOffsetNanosecs {
                key: key.to_owned(),
                nanosecs,
            });
        }
        if !(-MAX_TIME_OFFSET_SECS..=MAX_TIME_OFFSET_SECS).contains(&secs) {
            return Err(NamespaceError::TimeOffsetSecs {
                key: key.to_owned(),
                secs,
            });
        }
        text.push_str(&format!("{key} {secs} {nanosecs}\n"));
    }
    Ok(text.into_bytes())
}

/// Checks that the kernel has every namespace type to create. Skipped when
/// `/proc/self/ns` itself is not visible (no way to tell).
fn check_kernel_support(created: &[(NamespaceKind, usize)]) -> Result<(), NamespaceError> {
    let dir = Path::new("/proc/self/ns");
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    for &(kind, index) in created {
        if let Err(e) = std::fs::symlink_metadata(dir.join(kind.proc_name()))
            && e.kind() == io::ErrorKind::NotFound
        {
            return Err(NamespaceError::Unsupported { index, kind });
        }
    }
    Ok(())
}

/// Opens a join path and checks its namespace type.
fn open_join(kind: NamespaceKind, index: usize, path: &Path) -> Result<Join, NamespaceError> {
    let open_err = |source| NamespaceError::OpenPath {
        index,
        path: path.to_path_buf(),
        source,
    };
    // Namespace files are regular files (nsfs inodes); refuse anything else before
    // opening it, so that a FIFO cannot block us and a device is never opened.
    let file_type = std::fs::metadata(path).map_err(open_err)?.file_type();
    if !file_type.is_file() {
        return Err(NamespaceError::NotAFile {
            index,
            path: path.to_path_buf(),
            what: describe_file_type(file_type),
        });
    }
    // O_RDONLY|O_CLOEXEC (std always sets O_CLOEXEC); O_NONBLOCK|O_NOCTTY in case
    // the path was swapped for a FIFO or a terminal since the check.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(open_err)?;
    let join = Join {
        kind,
        index,
        path: path.to_path_buf(),
        fd: FdSlot::new(file.into_raw_fd()),
    };
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd, which we own.
    let t = unsafe { libc::ioctl(join.fd.get(), libc::NS_GET_NSTYPE) };
    if t < 0 {
        return Err(NamespaceError::NotANamespace {
            index,
            path: join.path.clone(),
            source: io::Error::last_os_error(),
        });
    }
    if t != kind.clone_flag() {
        return Err(NamespaceError::WrongType {
            index,
            path: join.path.clone(),
            expected: kind,
            actual: t,
        });
    }
    Ok(join)
}

/// Names a non-regular file type for error messages.
fn describe_file_type(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Whether a rendered map is the one line `"<inside> <id> 1\n"`: what an unprivileged
/// process may write itself (for `id` its own effective uid or gid).
fn is_single_id_map_of(text: &[u8], id: u32) -> bool {
    let text = String::from_utf8_lossy(text);
    let mut lines = text.lines();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return false;
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    matches!(fields[..], [_, host, "1"] if host.parse() == Ok(id))
}

/// Writes `/proc/<pid>/<file>`; when the kernel refuses the map to an unprivileged
/// caller (`EPERM`) and `tool` is given, runs `tool <pid> <inside> <outside> <count>...`
/// (the setuid helper of the shadow suite) instead.
fn write_id_map(
    pid: libc::pid_t,
    file: &str,
    text: &[u8],
    tool: Option<&'static str>,
) -> Result<(), NamespaceError> {
    let path = format!("/proc/{pid}/{file}");
    let err = match write_proc_file(path.clone(), text) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let tool = match (&err, tool) {
        (NamespaceError::WriteIdMap { source, .. }, Some(tool))
            if source.raw_os_error() == Some(libc::EPERM) =>
        {
            tool
        }
        _ => return Err(err),
    };
    let tool_err = |reason: String| NamespaceError::IdMapTool {
        path: PathBuf::from(&path),
        tool,
        reason,
    };
    let Some(program) = find_in_path(tool) else {
        return Err(tool_err(format!(
            "an unprivileged user can map only its own id (one mapping of size 1) \
             without {tool}, which is not in PATH"
        )));
    };
    let text = String::from_utf8_lossy(text);
    let out = std::process::Command::new(&program)
        .arg(pid.to_string())
        .args(text.split_whitespace())
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .output()
        .map_err(|e| tool_err(format!("running {}: {e}", program.display())))?;
    if out.status.success() {
        return Ok(());
    }
    Err(tool_err(format!(
        "{} {}: {}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// The first executable regular file named `name` in the directories of `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Writes `buf` to a proc file in one `write(2)`.
fn write_proc_file(path: String, buf: &[u8]) -> Result<(), NamespaceError> {
    let fail = |source| NamespaceError::WriteIdMap {
        path: PathBuf::from(&path),
        source,
    };
    let mut f = OpenOptions::new().write(true).open(&path).map_err(fail)?;
    let n = f.write(buf).map_err(fail)?;
    if n != buf.len() {
        return Err(fail(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {n} of {} bytes", buf.len()),
        )));
    }
    Ok(())
}

/// Opens `/proc/self/timens_offsets` for writing. Allocation-free.
fn open_timens_offsets() -> Result<libc::c_int, ChildError> {
    // SAFETY: the path is a NUL-terminated static string.
    let fd = unsafe { libc::open(TIMENS_OFFSETS.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(ChildError::new(
            ChildOp::TimeOffsets,
            Some(NamespaceKind::Time),
            errno(),
        ))
    } else {
        Ok(fd)
    }
}

/// Whether the calling process is already in the user namespace `fd` refers to.
/// Allocation-free.
fn in_user_ns_of(fd: libc::c_int) -> bool {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut a: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut b: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `a` is a valid, writable stat buffer; a bad fd gives EBADF.
    if unsafe { libc::fstat(fd, &mut a) } != 0 {
        return false;
    }
    // SAFETY: the path is NUL-terminated and `b` a valid, writable stat buffer.
    if unsafe { libc::stat(c"/proc/self/ns/user".as_ptr(), &mut b) } != 0 {
        return false;
    }
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_id_of_size_one_is_what_an_unprivileged_writer_may_map() {
        assert!(is_single_id_map_of(b"0 1001 1\n", 1001));
        assert!(is_single_id_map_of(b"5 1001 1\n", 1001));
        assert!(!is_single_id_map_of(b"0 1001 1\n", 1002));
        assert!(!is_single_id_map_of(b"0 1001 2\n", 1001));
        assert!(!is_single_id_map_of(b"0 1001 1\n1 100000 65536\n", 1001));
        assert!(!is_single_id_map_of(b"", 1001));
    }
}
