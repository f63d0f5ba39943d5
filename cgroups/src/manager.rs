//! The manager of one container's cgroup.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use crate::error::{CgroupError, Result};
use crate::fsutil;
use crate::layout::{CgroupMode, Hierarchy, Layout, Location};
use crate::path::{CgroupPath, DEFAULT_PARENT};
use crate::resources::Warning;
use crate::stats::{self, Stats};

/// How long [`CgroupManager::freeze`] and [`CgroupManager::thaw`] wait for the kernel.
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// The state of a cgroup's freezer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezerState {
    /// Running.
    Thawed,
    /// Asked to freeze, not every task stopped yet (v1 only).
    Freezing,
    /// Every task stopped.
    Frozen,
}

#[derive(Debug)]
struct Dir {
    /// The directory.
    path: PathBuf,
    /// The cgroup it is, from the hierarchy's root (as `/proc/<pid>/cgroup` shows it).
    cgroup: PathBuf,
}

/// One container's cgroup in every hierarchy of a [`Layout`].
///
/// On a v1 (legacy) host the cgroup is a directory in each mounted v1 hierarchy,
/// named ones without controllers (`name=systemd`) included, at the same
/// `linux.cgroupsPath` (runc does so for `name=systemd`); on a hybrid host also one
/// in the cgroup2 mount (so that `cgroup.kill`, `cgroup.events` and controllers bound
/// to v2, such as `hugetlb` here, work); on a unified host a single cgroup2 directory
/// (a named v1 hierarchy mounted beside it is left alone).
///
/// A runtime creates it from `linux.cgroupsPath` and `linux.resources` before the
/// container's init runs, puts the init in it (with [`CgroupManager::add_process`] or,
/// on cgroup v2, `clone3(CLONE_INTO_CGROUP)` with [`CgroupManager::dir_fd`]), and
/// removes it on delete. Later commands (pause, update, events, kill --all) reopen
/// it with [`CgroupManager::open`].
///
/// ```no_run
/// use berth_cgroups::{CgroupManager, CgroupPath, Layout};
/// # fn resources() -> oci_spec::runtime::LinuxResources { Default::default() }
/// # let init_pid = 1;
/// let layout = Layout::detect()?;
/// let path = CgroupPath::from_spec(None, "web")?;
/// let (cg, warnings) = CgroupManager::create(&layout, &path, Some(&resources()))?;
/// for w in &warnings {
///     eprintln!("warning: {w}");
/// }
/// cg.add_process(init_pid)?;
/// cg.freeze()?;
/// cg.thaw()?;
/// println!("{:?}", cg.stats()?.memory.usage);
/// cg.kill_all()?;
/// cg.remove(std::time::Duration::from_secs(5))?;
/// # Ok::<(), berth_cgroups::CgroupError>(())
/// ```
#[derive(Debug)]
pub struct CgroupManager {
    pub(crate) layout: Layout,
    v1: Vec<Dir>,
    /// `("name=<name>", dir)` per named v1 hierarchy joined.
    named: Vec<(String, Dir)>,
    v2: Option<(Dir, OwnedFd)>,
    /// Every directory `create` made, parents included, top first: what a failed create
    /// removes again.
    new_dirs: Vec<PathBuf>,
}

/// Makes `path.dir_in(h, label)` and the missing parents among its last `own`
/// components, recording the new directories (top first) in `new_dirs`; returns the
/// directory, the cgroup and `own`.
fn mkdir_in(
    h: &Hierarchy,
    label: &str,
    path: &CgroupPath,
    base: &Path,
    new_dirs: &mut Vec<PathBuf>,
) -> Result<(Dir, usize)> {
    let (dir, cgroup, own) = path.dir_in(h, label, base)?;
    // A parent made on demand ([`DEFAULT_PARENT`], a manager's own) is removed by the
    // delete of the last container in it ([`remove_unused`]): when that happens between
    // two of the mkdirs below, the walk starts again.
    let mut retries = 0;
    'walk: loop {
        // mkdir first, deepest first, and up only where a parent is missing: the usual case
        // (the parent exists) is one system call per hierarchy.
        let mut missing: Vec<&Path> = Vec::new();
        let mut p = dir.as_path();
        loop {
            match fs::create_dir(p) {
                Ok(()) => {
                    new_dirs.push(p.to_path_buf());
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound && missing.len() + 1 < own => {
                    missing.push(p);
                    match p.parent() {
                        Some(q) => p = q,
                        None => break,
                    }
                }
                Err(source) => {
                    return Err(CgroupError::Dir {
                        op: "mkdir",
                        path: p.to_path_buf(),
                        source,
                    });
                }
            }
        }
        for d in missing.into_iter().rev() {
            match fs::create_dir(d) {
                Ok(()) => new_dirs.push(d.to_path_buf()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && retries < MKDIR_RETRIES => {
                    retries += 1;
                    continue 'walk;
                }
                Err(source) => {
                    return Err(CgroupError::Dir {
                        op: "mkdir",
                        path: d.to_path_buf(),
                        source,
                    });
                }
            }
        }
        return Ok((Dir { path: dir, cgroup }, own));
    }
}

/// How many times [`mkdir_in`] starts again when a parent it made was removed under it.
const MKDIR_RETRIES: usize = 100;

/// Removes the cgroup `cgroup` (a path from the root of each hierarchy) from every hierarchy
/// of `layout` where nothing uses it: no process and no sub-cgroup. Where it is busy or
/// missing it is left as it is. For a parent made on demand, once its last container is
/// gone: a manager's own parent (the same is done for [`DEFAULT_PARENT`] by
/// [`CgroupManager::remove`] and [`CgroupManager::remove_if_empty`]). A concurrent
/// [`CgroupManager::create`] below it makes it again. The root of a hierarchy is never
/// removed.
///
/// ```no_run
/// let layout = berth_cgroups::Layout::detect()?;
/// berth_cgroups::remove_unused(&layout, "/berthd".as_ref())?;
/// # Ok::<(), berth_cgroups::CgroupError>(())
/// ```
pub fn remove_unused(layout: &Layout, cgroup: &Path) -> Result<()> {
    if !cgroup
        .components()
        .any(|c| matches!(c, Component::Normal(_)))
    {
        return Ok(());
    }
    for h in layout.hierarchies() {
        rmdir_unused(&h.dir_of(cgroup))?;
    }
    Ok(())
}

/// rmdir `d` unless it is in use (EBUSY: processes or sub-cgroups) or already gone.
fn rmdir_unused(d: &Path) -> Result<()> {
    match fs::remove_dir(d) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EBUSY | libc::ENOTEMPTY | libc::ENOENT)
            ) =>
        {
            Ok(())
        }
        Err(source) => Err(CgroupError::Dir {
            op: "rmdir",
            path: d.to_path_buf(),
            source,
        }),
    }
}

/// On a pure cgroup v2 host, makes every controller the kernel offers available to the
/// container's cgroup, as runc and crun do: `+name` in the `cgroup.subtree_control` of each
/// ancestor (from the mount point down to the parent) for every name in its
/// `cgroup.controllers`. A container without a limit still gets its memory and io
/// statistics, a later `update` finds the files it writes (and `io.bfq.weight` is seen before
/// a weight is planned), and a runtime nested in the container can use them.
///
/// Best effort, like runc: a controller an ancestor refuses (a threaded subtree, an ancestor
/// the caller does not own under a delegated subtree) stays off, and a field that needs it
/// fails later naming the controller (`CgroupManager::enable_controllers`). On a hybrid
/// host only the controllers the writes need are enabled: the cgroup2 hierarchy there
/// belongs to the host's own setup.
fn enable_all_controllers(h: &Hierarchy, leaf: &Path) {
    for dir in controlling_ancestors(h, leaf) {
        let Ok(offered) = fsutil::read(dir, "cgroup.controllers") else {
            return;
        };
        let Ok(add) = not_enabled(dir, offered.split_whitespace()) else {
            return;
        };
        if add.is_empty() || fsutil::write(dir, "cgroup.subtree_control", &add.join(" ")).is_ok() {
            continue;
        }
        // One refused name fails the whole write: enable the others one by one.
        for c in &add {
            let _ = fsutil::write(dir, "cgroup.subtree_control", c);
        }
    }
}

/// The ancestors of the cgroup2 directory `leaf`, from the mount point of `h` down to its
/// parent: the cgroups whose `cgroup.subtree_control` decides which controllers it has.
pub(crate) fn controlling_ancestors<'a>(h: &Hierarchy, leaf: &'a Path) -> Vec<&'a Path> {
    let mut chain: Vec<&Path> = leaf
        .ancestors()
        .skip(1)
        .take_while(|a| a.starts_with(&h.mount_point))
        .collect();
    chain.reverse();
    chain
}

/// `+name` for each of `wanted` that the `cgroup.subtree_control` of `dir` lacks.
pub(crate) fn not_enabled<'w>(
    dir: &Path,
    wanted: impl IntoIterator<Item = &'w str>,
) -> Result<Vec<String>> {
    let on = fsutil::read(dir, "cgroup.subtree_control")?;
    let on: Vec<&str> = on
        .split_whitespace()
        .map(|c| c.trim_start_matches('+'))
        .collect();
    Ok(wanted
        .into_iter()
        .filter(|c| !on.contains(c))
        .map(|c| format!("+{c}"))
        .collect())
}

/// The label of a v1 hierarchy with controllers: its controllers, comma-separated.
fn v1_label(h: &Hierarchy) -> String {
    h.controllers.join(",")
}

/// The label of the cgroup2 hierarchy.
const V2_LABEL: &str = "cgroup2";

/// The named v1 hierarchies a container joins: all of them beside v1 controller
/// hierarchies (legacy and hybrid hosts), none on a unified host.
fn named_of(layout: &Layout) -> &[Hierarchy] {
    if layout.v1.is_empty() {
        &[]
    } else {
        &layout.named
    }
}

/// The `name=<name>` label of a named hierarchy, as `/proc/<pid>/cgroup` shows it.
fn named_label(h: &Hierarchy) -> String {
    format!("name={}", h.name.as_deref().unwrap_or_default())
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    File::open(path)
        .map(OwnedFd::from)
        .map_err(|source| CgroupError::Dir {
            op: "open",
            path: path.to_path_buf(),
            source,
        })
}

impl CgroupManager {
    /// Creates (or joins, if it exists) the cgroup `path` in every hierarchy of
    /// `layout` and applies `resources`. Returns the warnings of [`Self::apply`].
    ///
    /// Fails with [`CgroupError::Frozen`] if the cgroup is frozen (an existing one, or
    /// one below a frozen parent), as runc does: a process placed in it would stop.
    ///
    /// If anything fails, the directories this call created are removed again:
    /// nothing is left half applied.
    pub fn create(
        layout: &Layout,
        path: &CgroupPath,
        resources: Option<&LinuxResources>,
    ) -> Result<(Self, Vec<Warning>)> {
        let mut me = Self {
            layout: layout.clone(),
            v1: Vec::new(),
            named: Vec::new(),
            v2: None,
            new_dirs: Vec::new(),
        };
        match me.create_dirs(path).and_then(|()| me.refuse_frozen()) {
            Ok(()) => {}
            Err(e) => {
                me.remove_created();
                return Err(e);
            }
        }
        let warnings = match resources {
            Some(r) => match me.apply(r) {
                Ok(w) => w,
                Err(e) => {
                    me.remove_created();
                    return Err(e);
                }
            },
            None => Vec::new(),
        };
        Ok((me, warnings))
    }

    fn create_dirs(&mut self, path: &CgroupPath) -> Result<()> {
        for h in &self.layout.v1 {
            let base = self.layout.relative_base(h);
            let (dir, own) = mkdir_in(h, &v1_label(h), path, &base, &mut self.new_dirs)?;
            if h.has("cpuset") {
                // A new v1 cpuset cgroup starts with empty cpus and mems, and no task
                // can join it until they are set: inherit the parent's. Every directory
                // of the path is checked, not only the ones created here: a parent just
                // created by a concurrent create may not be initialised yet.
                let mut chain: Vec<&Path> = dir.path.ancestors().take(own).collect();
                chain.reverse();
                for d in chain {
                    init_cpuset(d)?;
                }
            }
            self.v1.push(dir);
        }
        for h in named_of(&self.layout) {
            let label = named_label(h);
            let base = self.layout.relative_base(h);
            let (dir, _) = mkdir_in(h, &label, path, &base, &mut self.new_dirs)?;
            self.named.push((label, dir));
        }
        if let Some(h) = &self.layout.unified {
            let base = self.layout.relative_base(h);
            let (dir, _) = mkdir_in(h, V2_LABEL, path, &base, &mut self.new_dirs)?;
            if self.layout.mode() == CgroupMode::Unified {
                enable_all_controllers(h, &dir.path);
            }
            let fd = open_dir(&dir.path)?;
            self.v2 = Some((dir, fd));
        }
        Ok(())
    }

    /// Fails if the cgroup (an existing one joined, or one below a frozen parent) is
    /// frozen: a process put in it would stop at once. Without a freezer, nothing to check.
    fn refuse_frozen(&self) -> Result<()> {
        let refuse = |path: PathBuf, frozen: bool| {
            Err(CgroupError::Frozen {
                path,
                state: if frozen { "frozen" } else { "freezing" },
            })
        };
        if let Some(d) = self.freezer_v1() {
            match fsutil::read(d, "freezer.state")?.trim() {
                "THAWED" => {}
                s => return refuse(d.join("freezer.state"), s == "FROZEN"),
            }
        }
        // The cgroup2 freezer works on a hybrid host too.
        if let Some((d, _)) = self.v2_dir() {
            if fsutil::exists(d, "cgroup.freeze") {
                let frozen = events_v2(d)?.1;
                if frozen {
                    return refuse(d.join("cgroup.events"), true);
                }
                if fsutil::read(d, "cgroup.freeze")?.trim() == "1" {
                    return refuse(d.join("cgroup.freeze"), false);
                }
            }
        }
        Ok(())
    }

    /// Opens the existing cgroup `path` (for a later command on a running container).
    /// Fails if its directory is missing in any hierarchy with controllers; a named
    /// hierarchy without the directory (a cgroup made by an older berth) is left out.
    pub fn open(layout: &Layout, path: &CgroupPath) -> Result<Self> {
        let mut v1 = Vec::new();
        for h in &layout.v1 {
            let (dir, cgroup, _) = path.dir_in(h, &v1_label(h), &layout.relative_base(h))?;
            if !dir.is_dir() {
                return Err(CgroupError::Dir {
                    op: "open",
                    path: dir,
                    source: io::Error::from_raw_os_error(libc::ENOENT),
                });
            }
            v1.push(Dir { path: dir, cgroup });
        }
        let named = named_of(layout)
            .iter()
            .filter_map(|h| {
                let label = named_label(h);
                let (path, cgroup, _) = path.dir_in(h, &label, &layout.relative_base(h)).ok()?;
                path.is_dir().then_some((label, Dir { path, cgroup }))
            })
            .collect();
        let v2 = match &layout.unified {
            Some(h) => {
                let (dir, cgroup, _) = path.dir_in(h, V2_LABEL, &layout.relative_base(h))?;
                let fd = open_dir(&dir)?;
                Some((Dir { path: dir, cgroup }, fd))
            }
            None => None,
        };
        Ok(Self {
            layout: layout.clone(),
            v1,
            named,
            v2,
            new_dirs: Vec::new(),
        })
    }

    /// The host layout this manager works on.
    pub fn mode(&self) -> CgroupMode {
        self.layout.mode()
    }

    /// The cgroup directories: `(controllers, path)` per v1 hierarchy with
    /// controllers, `("name=<name>", path)` per named one (`name=systemd`), then
    /// `("cgroup2", path)` for the unified one.
    pub fn paths(&self) -> Vec<(String, &Path)> {
        let mut v: Vec<(String, &Path)> = self
            .layout
            .v1
            .iter()
            .zip(&self.v1)
            .map(|(h, d)| (v1_label(h), d.path.as_path()))
            .collect();
        v.extend(
            self.named
                .iter()
                .map(|(l, d)| (l.clone(), d.path.as_path())),
        );
        if let Some((d, _)) = &self.v2 {
            v.push((V2_LABEL.to_string(), d.path.as_path()));
        }
        v
    }

    /// The cgroup in each hierarchy, from its root (as `/proc/<pid>/cgroup` shows it),
    /// with the labels of [`Self::paths`]. A relative `linux.cgroupsPath` names
    /// different cgroups when the runtime is in different cgroups per hierarchy;
    /// [`CgroupPath::PerHierarchy`] of this map reopens them from any process.
    pub fn cgroups(&self) -> BTreeMap<String, PathBuf> {
        let v1 = self
            .layout
            .v1
            .iter()
            .zip(&self.v1)
            .map(|(h, d)| (v1_label(h), d.cgroup.clone()));
        let named = self
            .named
            .iter()
            .map(|(l, d)| (l.clone(), d.cgroup.clone()));
        let v2 = self
            .v2
            .iter()
            .map(|(d, _)| (V2_LABEL.to_string(), d.cgroup.clone()));
        v1.chain(named).chain(v2).collect()
    }

    /// The cgroup2 directory, open (`O_RDONLY | O_DIRECTORY | O_CLOEXEC`), for
    /// `clone3` with `CLONE_INTO_CGROUP` (Linux 5.7+): the child starts inside the
    /// cgroup, before it runs a single instruction. `None` without a cgroup2 mount.
    ///
    /// On a hybrid host this places the child in the cgroup2 directory only: call
    /// [`Self::add_process`] afterwards for the v1 hierarchies.
    pub fn dir_fd(&self) -> Option<BorrowedFd<'_>> {
        self.v2.as_ref().map(|(_, fd)| fd.as_fd())
    }

    /// Whether [`Self::dir_fd`] alone places a process in every hierarchy
    /// (a unified host: no v1 hierarchy, named ones included, to join by pid).
    pub fn clone_into_cgroup_is_enough(&self) -> bool {
        self.v1.is_empty() && self.named.is_empty() && self.v2.is_some()
    }

    /// Every v1 directory, named hierarchies included, then the cgroup2 one.
    fn dirs(&self) -> impl Iterator<Item = &Dir> {
        self.v1
            .iter()
            .chain(self.named.iter().map(|(_, d)| d))
            .chain(self.v2.iter().map(|(d, _)| d))
    }

    fn all_dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs().map(|d| d.path.as_path())
    }

    /// Once the cgroup is removed: its parent, where that is [`DEFAULT_PARENT`] and nothing
    /// else uses it, so that the parent made on demand is not left behind. Best effort: the
    /// cgroup itself is gone, and a parent that can't be removed (EACCES in a delegated
    /// subtree) stays.
    fn remove_default_parent(&self) {
        let default = Path::new("/").join(DEFAULT_PARENT);
        for d in self.dirs() {
            if d.cgroup.parent() == Some(default.as_path()) {
                if let Some(p) = d.path.parent() {
                    let _ = rmdir_unused(p);
                }
            }
        }
    }

    /// The directory for `loc`.
    pub(crate) fn dir(&self, loc: Location) -> Option<&Path> {
        match loc {
            Location::V1(i) => self.v1.get(i).map(|d| d.path.as_path()),
            Location::V2 => self.v2.as_ref().map(|(d, _)| d.path.as_path()),
        }
    }

    pub(crate) fn v2_dir(&self) -> Option<(&Path, BorrowedFd<'_>)> {
        self.v2
            .as_ref()
            .map(|(d, fd)| (d.path.as_path(), fd.as_fd()))
    }

    fn v1_dir_of(&self, controller: &str) -> Option<&Path> {
        match self.layout.locate(controller)? {
            Location::V1(i) => self.dir(Location::V1(i)),
            Location::V2 => None,
        }
    }

    /// The `tasks` file of the cgroup `path` in every v1 hierarchy of `layout`, named ones
    /// included, in the order [`Self::create`] makes them, without making anything.
    ///
    /// A single-threaded process that writes `0` to each moves itself into the cgroup there
    /// without the kernel's global threadgroup lock. A move by pid ([`Self::add_process`],
    /// `cgroup.procs`) takes that lock for writing, and its first taker waits for an RCU
    /// grace period: 0.5 to 0.9 ms per container start on the development VM while it is
    /// busy, 8 ms when it was idle. The cgroup2 hierarchy has no such path: the process is
    /// started there (`clone3` into [`Self::dir_fd`]) or moved there by pid
    /// ([`Self::add_process_v2`]).
    ///
    /// ```no_run
    /// use berth_cgroups::{CgroupManager, CgroupPath, Layout};
    ///
    /// let layout = Layout::detect()?;
    /// let path = CgroupPath::from_spec(Some("/berth/web".as_ref()), "web")?;
    /// for tasks in CgroupManager::v1_task_files(&layout, &path)? {
    ///     println!("{}", tasks.display()); // e.g. /sys/fs/cgroup/memory/berth/web/tasks
    /// }
    /// # Ok::<(), berth_cgroups::CgroupError>(())
    /// ```
    pub fn v1_task_files(layout: &Layout, path: &CgroupPath) -> Result<Vec<PathBuf>> {
        let labelled = layout
            .v1
            .iter()
            .map(|h| (h, v1_label(h)))
            .chain(named_of(layout).iter().map(|h| (h, named_label(h))));
        labelled
            .map(|(h, label)| {
                let (dir, _, _) = path.dir_in(h, &label, &layout.relative_base(h))?;
                Ok(dir.join("tasks"))
            })
            .collect()
    }

    /// Moves process `pid` into the cgroup2 directory only, where a caller moved it into
    /// the v1 hierarchies through [`Self::v1_task_files`]. Nothing without cgroup2.
    pub fn add_process_v2(&self, pid: i32) -> Result<()> {
        match &self.v2 {
            Some((d, _)) => fsutil::write(&d.path, "cgroup.procs", &pid.to_string()),
            None => Ok(()),
        }
    }

    /// Moves process `pid` (all its threads) into the cgroup in every hierarchy,
    /// named v1 hierarchies included.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        let value = pid.to_string();
        for d in self.all_dirs() {
            fsutil::write(d, "cgroup.procs", &value)?;
        }
        Ok(())
    }

    /// The processes in the cgroup (from the cgroup2 directory if there is one,
    /// else the first v1 hierarchy), sorted.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = match (&self.v2, self.v1.first()) {
            (Some((d, _)), _) => &d.path,
            (None, Some(d)) => &d.path,
            (None, None) => return Ok(Vec::new()),
        };
        let mut v = fsutil::read_procs_tree(dir)?;
        v.sort_unstable();
        v.dedup();
        Ok(v)
    }

    fn freezer_v1(&self) -> Option<&Path> {
        self.v1_dir_of("freezer")
    }

    /// The freezer state (v1 `freezer.state`, or v2 `cgroup.freeze` + `cgroup.events`).
    pub fn freezer_state(&self) -> Result<FreezerState> {
        if let Some(d) = self.freezer_v1() {
            let s = fsutil::read(d, "freezer.state")?;
            return match s.trim() {
                "THAWED" => Ok(FreezerState::Thawed),
                "FREEZING" => Ok(FreezerState::Freezing),
                "FROZEN" => Ok(FreezerState::Frozen),
                other => Err(CgroupError::Content {
                    path: d.join("freezer.state"),
                    content: other.to_string(),
                }),
            };
        }
        let (d, _) = self
            .v2_dir()
            .ok_or_else(|| CgroupError::ControllerUnavailable {
                field: "(freezer)".into(),
                controller: "freezer".into(),
            })?;
        let asked = fsutil::read(d, "cgroup.freeze")?.trim() == "1";
        let frozen = events_v2(d)?.1;
        Ok(match (asked, frozen) {
            (_, true) => FreezerState::Frozen,
            (true, false) => FreezerState::Freezing,
            (false, false) => FreezerState::Thawed,
        })
    }

    /// Freezes every process of the cgroup and waits (up to [`FREEZE_TIMEOUT`])
    /// until the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    /// Thaws the cgroup and waits until it runs again.
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, freeze: bool) -> Result<()> {
        let start = Instant::now();
        let want = if freeze {
            FreezerState::Frozen
        } else {
            FreezerState::Thawed
        };
        let (dir, file, value) = if let Some(d) = self.freezer_v1() {
            (d, "freezer.state", if freeze { "FROZEN" } else { "THAWED" })
        } else {
            let (d, _) = self
                .v2_dir()
                .ok_or_else(|| CgroupError::ControllerUnavailable {
                    field: "(freezer)".into(),
                    controller: "freezer".into(),
                })?;
            (d, "cgroup.freeze", if freeze { "1" } else { "0" })
        };
        let mut delay = Duration::from_micros(100);
        loop {
            fsutil::write(dir, file, value)?;
            if self.freezer_state()? == want {
                return Ok(());
            }
            if start.elapsed() > FREEZE_TIMEOUT {
                return Err(CgroupError::Timeout {
                    what: if freeze {
                        "the cgroup to freeze"
                    } else {
                        "the cgroup to thaw"
                    },
                    path: dir.join(file),
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(20));
        }
    }

    /// Sends SIGKILL to every process of the cgroup: v2 `cgroup.kill` where the
    /// kernel has it (5.14+), else [`Self::signal_all`].
    pub fn kill_all(&self) -> Result<()> {
        if let Some((d, _)) = self.v2_dir() {
            if fsutil::exists(d, "cgroup.kill") {
                return fsutil::write(d, "cgroup.kill", "1");
            }
        }
        self.signal_all(libc::SIGKILL)
    }

    /// Sends `signal` to every process of the cgroup. The cgroup is frozen around
    /// the walk when a freezer is available (so that no process forks past it).
    pub fn signal_all(&self, signal: i32) -> Result<()> {
        let can_freeze = self.freezer_v1().is_some() || self.v2.is_some();
        let was_frozen = can_freeze && self.freezer_state()? == FreezerState::Frozen;
        if can_freeze && !was_frozen {
            self.freeze()?;
        }
        let result = (|| {
            let mut pids = Vec::new();
            for d in self.all_dirs() {
                pids.extend(fsutil::read_procs_tree(d)?);
            }
            pids.sort_unstable();
            pids.dedup();
            for pid in pids {
                // SAFETY: kill(2) with a pid read from cgroup.procs and a signal number;
                // no memory is passed.
                let r = unsafe { libc::kill(pid, signal) };
                if r != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        return Err(CgroupError::Syscall {
                            syscall: "kill",
                            what: format!("pid {pid} with signal {signal}"),
                            source: e,
                        });
                    }
                }
            }
            Ok(())
        })();
        if can_freeze && !was_frozen {
            self.thaw()?;
        }
        result
    }

    /// Reads cpu, memory, pids, block I/O and huge page statistics.
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        let v2 = self.v2_dir().map(|(d, _)| d);
        let v1_of = |c: &str| self.v1_dir_of(c);
        if v1_of("cpu").is_some() || v1_of("cpuacct").is_some() {
            stats::cpu_v1(v1_of("cpu"), v1_of("cpuacct"), &mut s.cpu)?;
        } else if let Some(d) = v2 {
            stats::cpu_v2(d, &mut s.cpu)?;
        }
        if let Some(d) = v1_of("memory") {
            stats::memory_v1(d, &mut s.memory)?;
        } else if let Some(d) = v2 {
            stats::memory_v2(d, &mut s.memory)?;
        }
        if let Some(d) = v1_of("pids") {
            stats::pids(d, &mut s.pids)?;
        } else if let Some(d) = v2 {
            stats::pids(d, &mut s.pids)?;
        }
        if let Some(d) = v1_of("blkio") {
            stats::blkio_v1(d, &mut s.blkio)?;
        } else if let Some(d) = v2 {
            stats::io_v2(d, &mut s.blkio)?;
        }
        if let Some(d) = v1_of("hugetlb") {
            stats::hugetlb(d, false, &mut s.hugetlb)?;
        } else if let Some(d) = v2 {
            stats::hugetlb(d, true, &mut s.hugetlb)?;
        }
        Ok(s)
    }

    /// The OOM counters now (v1 `memory.oom_control`, v2 `memory.events`).
    pub fn memory_events(&self) -> Result<stats::MemoryEvents> {
        if let Some(d) = self.v1_dir_of("memory") {
            return stats::oom_control_v1(d);
        }
        match self.v2_dir() {
            Some((d, _)) => Ok(stats::memory_events_v2(d)?.0),
            None => Ok(stats::MemoryEvents::default()),
        }
    }

    /// Waits (up to `timeout`) until no process is left, then removes the cgroup's
    /// directory in every hierarchy, named v1 hierarchies included. Parents are kept, but
    /// for [`DEFAULT_PARENT`] once nothing else is in it. A missing directory is not an
    /// error, so `remove` can be repeated.
    ///
    /// It does not kill anything: call [`Self::kill_all`] first.
    pub fn remove(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        for d in self.all_dirs() {
            remove_tree(d, start, timeout)?;
        }
        self.remove_default_parent();
        Ok(())
    }

    /// Removes the cgroup's directory in every hierarchy if nothing is left in it: no
    /// process and no sub-cgroup (the kernel refuses the rmdir then), and then
    /// [`DEFAULT_PARENT`] where nothing else is in it. Returns `false` at the
    /// first directory that is busy, leaving it and the ones after it; then kill what is
    /// left ([`Self::kill_all`]) and [`Self::remove`]. What a container's `delete` usually
    /// does, its init and the rest of its pid namespace being gone: one rmdir per
    /// hierarchy, no freezing, no walk of `cgroup.procs`.
    ///
    /// ```no_run
    /// # fn f(cg: &berth_cgroups::CgroupManager) -> Result<(), berth_cgroups::CgroupError> {
    /// if !cg.remove_if_empty()? {
    ///     cg.kill_all()?;
    ///     cg.remove(std::time::Duration::from_secs(10))?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn remove_if_empty(&self) -> Result<bool> {
        for d in self.all_dirs() {
            match fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Ok(false),
                Err(source) => {
                    return Err(CgroupError::Dir {
                        op: "rmdir",
                        path: d.to_path_buf(),
                        source,
                    });
                }
            }
        }
        self.remove_default_parent();
        Ok(true)
    }

    /// Removes the directories this manager created, parents included, deepest first
    /// (after a failed create), and [`DEFAULT_PARENT`] if nothing else is in it. A parent
    /// another container started using meanwhile is not empty, and stays.
    fn remove_created(&self) {
        for d in self.new_dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
        self.remove_default_parent();
    }
}

/// Removes a cgroup directory and every sub-cgroup below it (deepest first), waiting up to
/// `timeout` since `start` for processes to leave.
fn remove_tree(d: &Path, start: Instant, timeout: Duration) -> Result<()> {
    for sub in fsutil::sub_cgroups(d) {
        remove_tree(&sub, start, timeout)?;
    }
    let mut delay = Duration::from_micros(200);
    loop {
        match fs::remove_dir(d) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if start.elapsed() > timeout {
                    return Err(CgroupError::Timeout {
                        what: "the processes to leave the cgroup",
                        path: d.join("cgroup.procs"),
                        waited_ms: start.elapsed().as_millis(),
                    });
                }
                sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(CgroupError::Dir {
                    op: "rmdir",
                    path: d.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// `(populated, frozen)` from v2 `cgroup.events`.
pub(crate) fn events_v2(d: &Path) -> Result<(bool, bool)> {
    let t = fsutil::read(d, "cgroup.events")?;
    let mut populated = false;
    let mut frozen = false;
    for (k, v) in fsutil::parse_flat_keyed(d, "cgroup.events", &t)? {
        match k.as_str() {
            "populated" => populated = v == 1,
            "frozen" => frozen = v == 1,
            _ => {}
        }
    }
    Ok((populated, frozen))
}

fn init_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if fsutil::read(dir, f)?.trim().is_empty() {
            let v = fsutil::read(parent, f)?;
            fsutil::write(dir, f, v.trim())?;
        }
    }
    Ok(())
}
