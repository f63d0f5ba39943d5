//! The lifecycle operations: [`Runtime::create`], `start`, `state`, `kill`, `delete`.

pub(crate) mod exec;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_cgroups::{CgroupManager, CgroupPath, Layout};
use berth_namespaces::{NamespaceKind, NamespacePlan};
use berth_rootfs::{RootfsOptions, RootfsPlan};
use oci_spec::runtime::{Hook, Hooks, LinuxResources, Spec};

use crate::child::init::{self, ChildFailure, FAILURE_LEN, InitContext};
use crate::child::sys;
use crate::config::validate::{self, ConfigError};
use crate::error::Error;
use crate::intel_rdt::IntelRdt;
use crate::process::ProcessPlan;
use crate::process::home;
use crate::process::hooks::{self, ChildHook};
use crate::process::security::SecurityPlan;
use crate::seccomp::{self, SeccompPlan};
use crate::state::{self, ContainerDir, Record, State, Status};

/// How to create a container (the flags of `runc create`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The bundle directory (relative paths are taken against the current directory).
    pub bundle: PathBuf,
    /// Where to write the init's pid (atomically: temp file + rename).
    pub pid_file: Option<PathBuf>,
    /// Unix socket to which the pty master is sent when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// Use `MS_MOVE` + `chroot` instead of `pivot_root` (for ramdisk roots).
    pub no_pivot: bool,
    /// Keep the caller's session keyring instead of creating one for the container.
    pub no_new_keyring: bool,
    /// Pass this many fds after stdio (3, 4, ...) into the container.
    pub preserve_fds: u32,
}

/// A runtime: a state root directory under which containers live.
///
/// ```no_run
/// use berth_runtime_core::{CreateOptions, Runtime};
/// let rt = Runtime::new("/run/berth");
/// let c = rt.create("demo", &CreateOptions { bundle: "/tmp/bundle".into(), ..Default::default() })?;
/// rt.start("demo")?;
/// let code = c.wait()?;
/// rt.delete("demo", false)?;
/// # Ok::<(), berth_runtime_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Runtime {
    root: PathBuf,
    warn: Arc<dyn Fn(&str) + Send + Sync>,
    rootless_cgroups: Option<bool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// A container created by this process: its init is our child, so we can wait for it.
#[derive(Debug)]
pub struct Container {
    id: String,
    pid: i32,
    warnings: Vec<String>,
}

impl Container {
    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host pid of the container init.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// What `create` adjusted in the config rather than failing (e.g. ambient capabilities
    /// the kernel can't raise because they are not also permitted and inheritable).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Waits for the init to exit and returns its exit code as a shell reports it (128 + N
    /// when killed by signal N). Only the process that created the container can wait.
    pub fn wait(&self) -> Result<i32, Error> {
        wait_exit(self.pid)
    }
}

/// One message from the init, with the fd it carries (the seccomp notify listener), if any.
pub(crate) fn recv_msg(
    sock: &UnixStream,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    loop {
        let mut iov = [std::io::IoSliceMut::new(buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => {
                let mut fd = None;
                for c in m.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for raw in fds {
                            // SAFETY: the kernel just installed this fd in our table for us;
                            // nothing else owns it.
                            let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                            fd.get_or_insert(owned);
                        }
                    }
                }
                return Ok((m.bytes, fd));
            }
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits for our child `pid` and returns its exit code as a shell reports it (128 + N when
/// killed by signal N).
pub(crate) fn wait_exit(pid: i32) -> Result<i32, Error> {
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            if libc::WIFEXITED(status) {
                return Ok(libc::WEXITSTATUS(status));
            }
            if libc::WIFSIGNALED(status) {
                return Ok(128 + libc::WTERMSIG(status));
            }
            continue;
        }
        let e = nix::Error::last();
        if e != nix::Error::EINTR {
            return Err(Error::sys(format!("waitpid({pid})"), e));
        }
    }
}

/// Runs `f` unless dropped after `disarm`.
pub(crate) struct Cleanup<F: FnMut()>(pub(crate) Option<F>);
impl<F: FnMut()> Cleanup<F> {
    pub(crate) fn disarm(&mut self) {
        self.0 = None;
    }
}
impl<F: FnMut()> Drop for Cleanup<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.as_mut() {
            f();
        }
    }
}

fn abs_path(p: &Path) -> Result<PathBuf, Error> {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("get current dir", ".", e))?
            .join(p)
    };
    // Normalise `.` and `..` lexically, as runc does for the bundle path.
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Ok(out)
}

pub(crate) fn state_json(record: &Record, status: Status) -> Vec<u8> {
    serde_json::to_vec(&state_value(record, status)).unwrap_or_default()
}

/// The spec's state for hooks and the seccomp agent: ociVersion, id, status, pid, bundle,
/// annotations.
pub(crate) fn state_value(record: &Record, status: Status) -> serde_json::Value {
    let s = record.to_state(status);
    let mut v = serde_json::json!({
        "ociVersion": s.oci_version,
        "id": s.id,
        "status": s.status,
        "bundle": s.bundle,
    });
    // A stopped container has no pid (runc leaves the field out).
    if status != Status::Stopped {
        v["pid"] = serde_json::json!(record.pid);
    }
    if !s.annotations.is_empty() {
        v["annotations"] = serde_json::json!(s.annotations);
    }
    v
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<(), Error> {
    let path = abs_path(path)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| Error::io("write pid file", &tmp, e))?;
    f.write_all(pid.to_string().as_bytes())
        .map_err(|e| Error::io("write pid file", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("rename pid file", &path, e)
    })
}

/// SIGKILLs our child `pid` and reaps it (nothing for a pid of 0 or less).
pub(crate) fn kill_and_reap(pid: i32) {
    if pid > 0 {
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            let mut st = 0;
            while libc::waitpid(pid, &mut st, libc::__WALL) < 0 && sys::errno() == libc::EINTR {}
        }
    }
}

fn hooks_of(spec: &Spec) -> Hooks {
    spec.hooks().clone().unwrap_or_default()
}

fn list(h: &Option<Vec<Hook>>) -> &[Hook] {
    h.as_deref().unwrap_or(&[])
}

impl Runtime {
    /// A runtime keeping container state under `root` (created on first use, mode 0700).
    /// Warnings (failed poststart/poststop hooks, which the spec says must not fail the
    /// operation) go to stderr until [`Runtime::on_warning`] sends them elsewhere.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime {
            root: root.into(),
            warn: Arc::new(|w| eprintln!("berth: warning: {w}")),
            rootless_cgroups: None,
        }
    }

    /// Whether cgroup permission errors are ignored for containers that ask for no limits
    /// and name no `linux.cgroupsPath` (runc's `--rootless`): `None` (the default) decides as
    /// runc's `auto` does, yes unless this process is root in the initial user namespace.
    pub fn rootless_cgroups(mut self, rootless: Option<bool>) -> Self {
        self.rootless_cgroups = rootless;
        self
    }

    /// Sends the runtime's warnings to `sink` (a logger, say) instead of stderr.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&seen);
    /// let rt = berth_runtime_core::Runtime::new("/run/berth")
    ///     .on_warning(move |w| sink.lock().unwrap().push(w.to_owned()));
    /// ```
    pub fn on_warning(mut self, sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.warn = Arc::new(sink);
        self
    }

    /// The state root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates a container from a bundle: validates the config, sets up namespaces, mounts,
    /// devices, the process' credentials and runs the create-time hooks, leaving the init
    /// waiting before `execve` until [`Runtime::start`]. On any error nothing is left behind.
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<Container, Error> {
        crate::config::kernel::check_create()?;
        state::validate_id(id)?;
        let bundle = abs_path(&opts.bundle)?;
        let spec = validate::load_bundle_config(&bundle)?;
        validate::validate(&spec, &bundle)?;
        let dir = ContainerDir::create(&self.root, id)?;
        let dir_path = dir.path.clone();
        let mut remove_dir = Cleanup(Some(move || {
            let _ = fs::remove_dir_all(&dir_path);
        }));
        match self.create_in(&dir, &spec, &bundle, opts) {
            Ok(c) => {
                remove_dir.disarm();
                Ok(c)
            }
            Err(e) => {
                // A failed prestart/createRuntime/createContainer hook stops the container and
                // the lifecycle goes on with poststop (runtime spec, lifecycle steps 4-6, 12).
                if let Error::Hook { kind, .. } = &e {
                    if matches!(*kind, "prestart" | "createRuntime" | "createContainer") {
                        let hooks = hooks_of(&spec);
                        let stopped = serde_json::json!({
                            "ociVersion": spec.version(), "id": id, "status": "stopped",
                            "bundle": bundle.to_string_lossy(),
                        });
                        for w in hooks::run_hooks_warn(
                            "poststop",
                            list(hooks.poststop()),
                            stopped.to_string().as_bytes(),
                        ) {
                            (self.warn)(&w);
                        }
                    }
                }
                Err(e)
            }
        }
    }

    fn create_in(
        &self,
        dir: &ContainerDir,
        spec: &Spec,
        bundle: &Path,
        opts: &CreateOptions,
    ) -> Result<Container, Error> {
        let id = dir.id.as_str();
        let mut warnings = Vec::new();
        let cfg_err = |field: &str, reason: &str| {
            Error::Config(ConfigError {
                field: field.into(),
                reason: reason.into(),
            })
        };
        let linux = spec
            .linux()
            .clone()
            .ok_or_else(|| cfg_err("linux", "is missing"))?;
        let process = spec.process().clone().unwrap_or_else(ProcessPlan::absent);
        let root = spec
            .root()
            .clone()
            .ok_or_else(|| cfg_err("root", "is missing"))?;
        let rootfs_path = abs_path(&bundle.join(root.path()))?;

        let ns = NamespacePlan::prepare(&linux)?;
        let security = SecurityPlan::prepare(&process, &linux).map_err(Error::Config)?;
        if security.mount_label_dropped() {
            warnings.push("linux.mountLabel ignored: SELinux is not enabled on this host".into());
        }
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        if let Some(context) = security.mount_context_option() {
            label_mounts(&mut mounts, &context);
        }
        let devices = linux.devices().clone().unwrap_or_default();
        let masked = linux.masked_paths().clone().unwrap_or_default();
        let readonly = linux.readonly_paths().clone().unwrap_or_default();
        let sysctl = linux.sysctl().clone().unwrap_or_default();
        // Without one, the spec says the container shares the runtime's mount namespace.
        let own_mount_ns = ns.creates(NamespaceKind::Mount) || ns.joins(NamespaceKind::Mount);
        let rootfs = RootfsPlan::prepare(
            &RootfsOptions::new(&rootfs_path, bundle)
                .readonly(root.readonly().unwrap_or(false))
                .mounts(&mounts)
                .rootfs_propagation(linux.rootfs_propagation().as_deref())
                .devices(&devices)
                .masked_paths(&masked)
                .readonly_paths(&readonly)
                .sysctl(&sysctl)
                .no_pivot(opts.no_pivot)
                .own_mount_ns(own_mount_ns)
                .new_user_ns(ns.creates(NamespaceKind::User))
                .new_cgroup_ns(ns.creates(NamespaceKind::Cgroup))
                .cwd(Some(process.cwd())),
        )?;

        // Socket activation: fds 3.. of ours named by LISTEN_FDS go through too, as runc does,
        // but only when LISTEN_PID says they were meant for this process.
        let mut extra_env = Vec::new();
        let mut preserve = opts.preserve_fds;
        let for_us = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            == Some(std::process::id());
        if let Some(n) = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|_| for_us)
        {
            if n > 0 {
                extra_env.push(format!("LISTEN_FDS={n}"));
                extra_env.push("LISTEN_PID=1".to_string());
                preserve += n;
            }
        }
        let mut process = process;
        process.set_env(Some(home::with_home(
            process.env().clone().unwrap_or_default(),
            &rootfs_path,
            bundle,
            spec.mounts().as_deref().unwrap_or_default(),
            process.user().uid(),
        )));
        let mut pplan = ProcessPlan::prepare(&process, &extra_env, preserve)?;
        if spec.process().is_none() {
            pplan.never_exec();
        }
        let setgroups_allowed = pplan
            .setgroups_allowed(userns_setgroups_file(&ns).as_deref())
            .map_err(Error::Config)?;
        let seccomp = linux
            .seccomp()
            .as_ref()
            .map(|s| SeccompPlan::prepare(s, &mut warnings))
            .transpose()
            .map_err(Error::Config)?;
        let rdt = linux
            .intel_rdt()
            .as_ref()
            .map(|r| IntelRdt::prepare(r, id))
            .transpose()
            .map_err(Error::Config)?;

        let all_hooks = hooks_of(spec);
        let cc_hooks =
            ChildHook::prepare(list(all_hooks.create_container()), "hooks.createContainer")?;
        let sc_hooks =
            ChildHook::prepare(list(all_hooks.start_container()), "hooks.startContainer")?;
        let hooks_sync = !list(all_hooks.prestart()).is_empty()
            || !list(all_hooks.create_runtime()).is_empty()
            || !cc_hooks.is_empty()
            || !sc_hooks.is_empty();

        let hostname = spec
            .hostname()
            .as_deref()
            .map(|h| CString::new(h).map_err(|_| cfg_err("hostname", "contains a NUL byte")))
            .transpose()?;
        let domainname = spec
            .domainname()
            .as_deref()
            .map(|h| CString::new(h).map_err(|_| cfg_err("domainname", "contains a NUL byte")))
            .transpose()?;
        let keyring = if opts.no_new_keyring {
            None
        } else {
            Some(CString::new(format!("_ses.{id}")).map_err(|_| cfg_err("id", "contains NUL"))?)
        };

        // The start barrier: a fifo any uid can open for writing (the init may have dropped
        // privileges by the time it opens it through the O_PATH fd of the state dir).
        let fifo = dir.fifo_path();
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
            .map_err(|e| Error::sys(format!("mkfifo {}", fifo.display()), e))?;
        fs::set_permissions(&fifo, fs::Permissions::from_mode(0o622))
            .map_err(|e| Error::io("chmod", &fifo, e))?;
        let state_dir = nix::fcntl::open(
            &dir.path,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::sys(format!("open {}", dir.path.display()), e))?;

        let console = if pplan.terminal {
            let path = opts.console_socket.as_ref().ok_or_else(|| {
                cfg_err(
                    "process.terminal",
                    "is set but no console socket was given (--console-socket)",
                )
            })?;
            Some(
                UnixStream::connect(path)
                    .map_err(|e| Error::io("connect console socket", path, e))?,
            )
        } else {
            None
        };

        let (parent_sock, child_sock) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::sys("socketpair", e))?;

        // The container's cgroup, with linux.resources applied, before the clone; removed
        // again (after the init is killed) if anything below fails.
        // A rootless container without linux.cgroupsPath that asks for no limits (device
        // rules aside) runs without a cgroup when the caller may not create one, silently, as
        // with runc.
        let cg_path = CgroupPath::from_spec(linux.cgroups_path().as_deref(), id)?;
        let resources = cgroup_resources(&linux);
        // (Cheapest test first: most managers name a cgroupsPath.)
        let optional = linux.cgroups_path().is_none()
            && self.rootless_cgroups.unwrap_or_else(rootless_auto)
            && !asks_for_limits(&linux);
        let planned = match Layout::detect()
            .map_err(Error::from)
            .map(|layout| (planned_cgroup_path(&layout, &cg_path), layout))
        {
            Ok(p) => Some(p),
            Err(e) if optional && is_permission_error(&e) => None,
            Err(e) => return Err(e),
        };

        let mut record = Record {
            oci_version: spec.version().clone(),
            id: id.to_owned(),
            pid: 0,
            start_time: 0,
            bundle: bundle.to_string_lossy().into_owned(),
            rootfs: rootfs_path.to_string_lossy().into_owned(),
            created: state::now_rfc3339(),
            annotations: spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            hooks: Some(all_hooks.clone()),
            // Only a pid namespace of its own may be swept by kill --all / delete --force: a
            // joined one belongs to someone else too. Set once `pid` is the init.
            own_pid_ns: false,
            cgroup: planned
                .as_ref()
                .and_then(|(p, _)| p.as_ref())
                .map(|p| p.to_string_lossy().into_owned()),
            // Set once the cgroup is made, where a relative path differs per hierarchy.
            cgroup_paths: None,
            intel_rdt: None,
            creating: true,
            no_process: spec.process().is_none(),
            host_mounts_above: if own_mount_ns {
                None
            } else {
                Some(state::mount_id(&rootfs_path)?.0)
            },
        };
        // What this create is about to make, on disk before it is made: if create is
        // killed from here on, `delete` finds the cgroup (and below, the init) by the record.
        dir.write_config(spec)?;
        dir.write_record(&record)?;
        let recorded_before = (record.cgroup.clone(), record.cgroup_paths.clone());
        let cg = match planned.map(|(_, layout)| setup_cgroup(&layout, &cg_path, &resources)) {
            Some(Ok((cg, recorded, cg_warnings))) => {
                warnings.extend(cg_warnings.iter().map(ToString::to_string));
                // Where the plan could not know it (a relative path that resolved
                // differently per hierarchy), recorded again below.
                match recorded {
                    RecordedCgroup::Each(each) => {
                        record.cgroup = None;
                        record.cgroup_paths = Some(each);
                    }
                    RecordedCgroup::Same(p) => {
                        record.cgroup = Some(p.to_string_lossy().into_owned());
                    }
                }
                Some(cg)
            }
            Some(Err(e)) if optional && is_permission_error(&e) => {
                record.cgroup = None;
                None
            }
            Some(Err(e)) => return Err(e),
            None => None,
        };
        let mut remove_cgroup = Cleanup(Some(|| {
            if let Some(cg) = &cg {
                let _ = cg.kill_all();
                let _ = cg.thaw();
                if cg.remove(REMOVE_TIMEOUT).is_ok() {
                    remove_default_parent(cg, &cg_path);
                }
            }
        }));
        // Only now that a failure removes the cgroup: written before, a failed write would
        // have left it unrecorded and unremoved.
        if (record.cgroup.clone(), record.cgroup_paths.clone()) != recorded_before {
            dir.write_record(&record)?;
        }

        let mut state_buf = vec![0u8; state_json(&record, Status::Created).len() + 64];

        let ctx = InitContext {
            ns: &ns,
            rootfs: &rootfs,
            process: &pplan,
            seccomp: seccomp.as_ref(),
            security: &security,
            create_container_hooks: &cc_hooks,
            start_container_hooks: &sc_hooks,
            sock: child_sock.as_raw_fd(),
            parent_sock: parent_sock.as_raw_fd(),
            state_dir: state_dir.as_raw_fd(),
            close_early: dir.lock.as_raw_fd(),
            console_socket: console.as_ref().map_or(-1, |c| c.as_raw_fd()),
            hostname: hostname.as_deref(),
            domainname: domainname.as_deref(),
            keyring: keyring.as_deref(),
            hooks_sync,
            state_buf: state_buf.as_mut_ptr(),
            state_buf_len: state_buf.len(),
            intermediate: ns.needs_intermediate(),
            new_user_ns: ns.creates(NamespaceKind::User),
            setgroups_allowed,
            // As runc: a rootless runtime reaches no more than the container's root does.
            bind_sources: ns.creates(NamespaceKind::User)
                && nix::unistd::geteuid().is_root()
                && rootfs.bind_source_count() > 0,
            cgroup_sync: cg.is_some(),
            unshare_cgroup_ns: cg.is_some()
                && !ns.needs_intermediate()
                && ns.creates(NamespaceKind::Cgroup),
        };
        let flags = if ctx.intermediate {
            0
        } else {
            // A cgroup namespace is unshared by the child once it is in the container's
            // cgroup (ctx.unshare_cgroup_ns), so that cgroup is the namespace's root.
            let mut f = ns.clone_flags();
            if ctx.unshare_cgroup_ns {
                f &= !libc::CLONE_NEWCGROUP;
            }
            f
        };
        // Where the host has cgroup2, the init starts inside its cgroup2 directory
        // (clone3 CLONE_INTO_CGROUP, Linux 5.7+); on a unified host that is the whole move and
        // add_process is skipped. Kernels without clone3 fall back to clone + add_process.
        let into = cg
            .as_ref()
            .and_then(|c| c.dir_fd())
            .map(|fd| fd.as_raw_fd());
        // SAFETY: the child runs only init_main, which follows the fragile-child rules.
        let cloned = unsafe { sys::clone_maybe_into_cgroup(flags as libc::c_ulong, into) };
        let (child, in_cgroup2) =
            cloned.map_err(|e| Error::sys("clone", nix::Error::from_raw(e)))?;
        if child == 0 {
            init::init_main(&ctx);
        }
        drop(child_sock);
        drop(state_dir);
        drop(console);
        ns.close_fds();

        let mut init_pid = if ctx.intermediate { 0 } else { child };
        // Whom to kill if anything below fails: the child, then (slow path) the init.
        let guard_pid = Cell::new(child);
        // Dropped after the kill guard: the mounts a failed init made in the runtime's
        // namespace go once it is dead.
        let host_mounts_above = record.host_mounts_above;
        let mut release_mounts = Cleanup(Some(|| {
            let _ = state::release_host_mounts(&rootfs_path, host_mounts_above);
        }));
        let mut kill_guard = Cleanup(Some(|| kill_and_reap(guard_pid.get())));
        // And whom a `delete` kills if this create is killed from here on. The child waits
        // for `G` (or, without a cgroup or user namespace to set up, for nothing): a create
        // killed before this write leaves a child that exits at EOF on its sync socket, or
        // runs on in the cgroup recorded above. With a cgroup the write waits until the child
        // is in it and has its `G` (a delete finds it through the cgroup meanwhile), so that
        // it overlaps with the child's own set-up rather than delaying it.
        record_pid(
            &mut record,
            child,
            !ctx.intermediate && ns.creates(NamespaceKind::Pid),
        )?;
        let pid_written_after_go = cg.is_some();
        if !pid_written_after_go {
            dir.write_record(&record)?;
        }
        let describe = |f| init::describe(f, &ns, &rootfs, &pplan);
        let mut sock = UnixStream::from(parent_sock);
        // The child (the init, or the slow path's intermediate) waits for `G`: put it in the
        // cgroup first, so that the init is there before the user process runs and before a
        // cgroup namespace is created.
        if let Some(cg) = &cg {
            if !(in_cgroup2 && cg.clone_into_cgroup_is_enough()) {
                cg.add_process(child)?;
            }
        }
        // The resctrl group (linux.intelRdt): joined by pid, as a cgroup v1 hierarchy is;
        // removed again if anything below fails.
        let rdt_group = rdt.as_ref().map(|r| r.apply(child)).transpose()?;
        if rdt_group.is_some() {
            record.intel_rdt = rdt_group.clone();
            dir.write_record(&record)?;
        }
        let mut remove_rdt = Cleanup(Some(|| {
            if let Some(g) = &rdt_group {
                let _ = g.remove();
            }
        }));
        if !ctx.intermediate && ctx.new_user_ns {
            ns.write_id_mappings(child)?;
        }
        if ctx.cgroup_sync || (!ctx.intermediate && ctx.new_user_ns) {
            sock.write_all(b"G")
                .map_err(|e| Error::io("sync", &dir.path, e))?;
        }
        if pid_written_after_go {
            dir.write_record(&record)?;
        }
        let mut msg = vec![0u8; 64];
        // The init's `B` (bind sources wanted) may come before the intermediate's `P`.
        let mut bind_sources_wanted = false;
        let send_bind_sources = |init_pid: i32, sock: &UnixStream| -> Result<(), Error> {
            let sync_err = |e| Error::io("sync", &dir.path, e);
            for fd in rootfs.open_bind_sources(init_pid)? {
                init::send_fd(sock.as_raw_fd(), fd.as_raw_fd(), b"b")
                    .map_err(|e| sync_err(std::io::Error::from_raw_os_error(e)))?;
            }
            (&*sock).write_all(b"G").map_err(sync_err)
        };
        loop {
            let (n, passed_fd) = match recv_msg(&sock, &mut msg) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("sync with init", &dir.path, e)),
            };
            if n == 0 {
                // exit_reason reaps the child: the guard must not signal that pid again
                // (it may already belong to another process).
                return Err(Error::Protocol(exit_reason(guard_pid.replace(0), "init")));
            }
            match msg[0] {
                b'M' => {
                    ns.write_id_mappings(child)?;
                    sock.write_all(b"G")
                        .map_err(|e| Error::io("sync", &dir.path, e))?;
                }
                b'P' if n >= 5 => {
                    init_pid = i32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]);
                    // The intermediate exits right after: reap it; the init is our child too
                    // (CLONE_PARENT), so it becomes the one to clean up on failure.
                    let mut st = 0;
                    // SAFETY: reaping our own child.
                    unsafe { libc::waitpid(child, &mut st, 0) };
                    guard_pid.set(init_pid);
                    record_pid(&mut record, init_pid, ns.creates(NamespaceKind::Pid))?;
                    dir.write_record(&record)?;
                    if bind_sources_wanted {
                        send_bind_sources(init_pid, &sock)?;
                    }
                }
                b'B' if init_pid == 0 => bind_sources_wanted = true,
                b'B' => send_bind_sources(init_pid, &sock)?,
                b'H' => {
                    // The environment exists (lifecycle step 2 is over): every create-time
                    // hook is told `created`, as the spec's state definitions say.
                    let created = state_json(&record, Status::Created);
                    hooks::run_hooks("prestart", list(all_hooks.prestart()), &created)?;
                    hooks::run_hooks("createRuntime", list(all_hooks.create_runtime()), &created)?;
                    if created.len() > state_buf.len() {
                        return Err(Error::Protocol("state JSON larger than its buffer".into()));
                    }
                    // `S` and the length, then chunks well below a socket's message limit.
                    let mut head = [b'S', 0, 0, 0, 0];
                    head[1..].copy_from_slice(&(created.len() as u32).to_le_bytes());
                    for msg in std::iter::once(&head[..]).chain(created.chunks(STATE_CHUNK)) {
                        sock.write_all(msg)
                            .map_err(|e| Error::io("sync", &dir.path, e))?;
                    }
                }
                b'F' => {
                    // The seccomp notify listener: to the agent at listenerPath, with the
                    // container's state (creating, the init's pid).
                    let (Some(sc), Some(fd)) = (&seccomp, passed_fd) else {
                        return Err(Error::Protocol("F message without a listener fd".into()));
                    };
                    let st = state_value(&record, Status::Creating);
                    seccomp::send_to_listener(sc, &st, init_pid, fd.as_raw_fd())?;
                }
                b'R' => break,
                b'E' if n >= FAILURE_LEN => {
                    let err = ChildFailure::decode(&msg[..n])
                        .map(describe)
                        .unwrap_or_else(|| Error::Protocol("undecodable error record".into()));
                    return Err(fill_hook_path(err, &all_hooks));
                }
                other => {
                    return Err(Error::Protocol(format!("unexpected message {other:#x}")));
                }
            }
        }
        if !record.pid_alive() {
            return Err(Error::Protocol(format!("init {init_pid} vanished")));
        }
        record.creating = false;
        dir.write_record(&record)?;
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, init_pid)?;
        }
        kill_guard.disarm();
        release_mounts.disarm();
        remove_cgroup.disarm();
        remove_rdt.disarm();
        Ok(Container {
            id: id.to_owned(),
            pid: init_pid,
            warnings,
        })
    }

    /// Starts a created container: releases its init to `execve` the user process, then runs
    /// the poststart hooks (their failures are returned as warnings on stderr only).
    pub fn start(&self, id: &str) -> Result<(), Error> {
        let dir = ContainerDir::open(&self.root, id)?;
        let record = dir.read_record()?.ok_or_else(|| Error::InvalidState {
            id: id.to_owned(),
            status: Status::Creating,
            op: "start",
        })?;
        let status = state::live_status(&dir.path, &record);
        if status != Status::Created {
            return Err(Error::InvalidState {
                id: id.to_owned(),
                status,
                op: "start",
            });
        }
        if record.no_process {
            // The spec: start MUST fail without a process. The init that waits for it is
            // ended, so the container is stopped and can be deleted.
            kill_and_wait(&record)?;
            return Err(Error::Start {
                id: id.to_owned(),
                reason: "config.json has no process: there is nothing to start".into(),
            });
        }
        let fifo_path = dir.fifo_path();
        let fifo = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo_path)
            .map_err(|e| Error::io("open", &fifo_path, e))?;
        let report = read_barrier(&fifo, record.pid, record.start_time)
            .map_err(|e| Error::io("read", &fifo_path, e))?;
        let _ = fs::remove_file(&fifo_path);
        if !report.is_empty() {
            let reason = match ChildFailure::decode(&report) {
                Some(ChildFailure::Init(e)) => fill_hook_path(
                    init::describe_init_named(e, saved_program(&dir).as_deref()),
                    record.hooks.as_ref().unwrap_or(&Hooks::default()),
                )
                .to_string(),
                _ => "the container init failed before exec".to_string(),
            };
            return Err(Error::Start {
                id: id.to_owned(),
                reason,
            });
        }
        if let Some(h) = &record.hooks {
            let running = state_json(&record, Status::Running);
            for w in hooks::run_hooks_warn("poststart", list(h.poststart()), &running) {
                (self.warn)(&w);
            }
        }
        Ok(())
    }

    /// The config container `id` was created from (saved at create, so later edits of the
    /// bundle don't show). `exec` without a process file starts from its `process`, as
    /// `runc exec` does.
    ///
    /// ```no_run
    /// let rt = berth_runtime_core::Runtime::new("/run/berth");
    /// let args = rt.config("web")?.process().as_ref().and_then(|p| p.args().clone());
    /// # let _ = args;
    /// # Ok::<(), berth_runtime_core::Error>(())
    /// ```
    pub fn config(&self, id: &str) -> Result<Spec, Error> {
        let dir = ContainerDir::open(&self.root, id)?;
        let record = dir.read_record()?.ok_or_else(|| Error::InvalidState {
            id: id.to_owned(),
            status: Status::Creating,
            op: "read the config of",
        })?;
        dir.config(&record)
    }

    /// The state of a container, with the status checked against the live process.
    pub fn state(&self, id: &str) -> Result<State, Error> {
        state::validate_id(id)?;
        let path = self.root.join(id);
        match state::read_record(&path, id)? {
            Some(r) => Ok(r.to_state(state::live_status(&path, &r))),
            None => Ok(State {
                oci_version: String::new(),
                id: id.to_owned(),
                pid: 0,
                status: Status::Creating,
                bundle: String::new(),
                rootfs: String::new(),
                created: String::new(),
                annotations: BTreeMap::new(),
                owner: String::new(),
            }),
        }
    }

    /// The states of all containers under the root, sorted by id.
    pub fn list(&self) -> Result<Vec<State>, Error> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &self.root, e)),
        };
        let mut out: Vec<State> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter_map(|id| self.state(&id).ok())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Sends `signal` to the container's init, or with `all` to every process of the
    /// container's cgroup (frozen during the walk; without a cgroup, its own pid namespace).
    /// Refused for a stopped container, except with `all` (as runc: what is left in its
    /// cgroup is signalled), and while it is being created.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), Error> {
        let dir = ContainerDir::open(&self.root, id)?;
        let record = dir.read_record()?.ok_or_else(|| Error::InvalidState {
            id: id.to_owned(),
            status: Status::Creating,
            op: "kill",
        })?;
        let status = state::live_status(&dir.path, &record);
        let refuse = Error::InvalidState {
            id: id.to_owned(),
            status,
            op: "kill",
        };
        match status {
            // While being created, `pid` may be 0 or not the init yet: never signal it.
            Status::Creating => return Err(refuse),
            Status::Stopped if !all => return Err(refuse),
            Status::Stopped => {
                if let Some(cg) = record.cgroup()? {
                    cg.signal_all(signal)?;
                }
                return Ok(());
            }
            _ => {}
        }
        if all {
            if let Some(cg) = record.cgroup()? {
                // Every process of the container, with or without its own pid namespace.
                cg.signal_all(signal)?;
                // Frozen processes can't die: a SIGKILL of a paused container thaws it (other
                // signals stay pending until `resume`, as for a single process).
                if status == Status::Paused && signal == libc::SIGKILL {
                    cg.thaw()?;
                }
                return Ok(());
            }
            if record.own_pid_ns {
                signal_pid_ns(record.pid, signal)?;
            }
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(record.pid),
            nix::sys::signal::Signal::try_from(signal).ok(),
        )
        .or_else(|e| {
            if signal > 31 {
                raw_kill(record.pid, signal)
            } else {
                Err(e)
            }
        })
        .map_err(|e| Error::sys(format!("kill({}, {signal})", record.pid), e))
    }

    /// Deletes a container: refused while it runs unless `force` (then it is killed with
    /// SIGKILL and waited for). Runs the poststop hooks, kills what is left in its cgroup and
    /// removes the cgroup (waiting for those processes) and all its state.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        let dir = ContainerDir::open(&self.root, id)?;
        let record = match dir.read_record() {
            Ok(Some(r)) => r,
            // A create that died before writing its first record made nothing else.
            Ok(None) => return dir.remove(),
            Err(e @ Error::CorruptState { .. }) if force => return delete_corrupt(dir, e),
            Err(e) => return Err(e),
        };
        // From here on the state dir goes last, so that a delete killed midway can be run
        // again: it still finds the processes to kill and the cgroup to remove.
        let status = state::live_status(&dir.path, &record);
        match status {
            Status::Stopped => {}
            // A create killed before it finished (it would hold the lock if it still ran):
            // its child, if any, waits for `G` or for `start`.
            Status::Creating => kill_and_wait(&record)?,
            // The spec: deleting a container that is not stopped (`created` included, which
            // runc 1.1 deletes anyway) MUST be an error and leave it as it was.
            _ if force => kill_and_wait(&record)?,
            _ => {
                return Err(Error::InvalidState {
                    id: id.to_owned(),
                    status,
                    op: "delete",
                });
            }
        }
        let warnings = record
            .hooks
            .as_ref()
            .map(|h| {
                hooks::run_hooks_warn(
                    "poststop",
                    list(h.poststop()),
                    &state_json(&record, Status::Stopped),
                )
            })
            .unwrap_or_default();
        for w in warnings {
            (self.warn)(&w);
        }
        state::release_host_mounts(Path::new(&record.rootfs), record.host_mounts_above)?;
        destroy_cgroup(&record)?;
        dir.remove()
    }

    /// Opens a container's record and cgroup, checking that its status is one of `allowed`.
    fn live(
        &self,
        id: &str,
        op: &'static str,
        allowed: &[Status],
    ) -> Result<(Record, CgroupManager), Error> {
        let dir = ContainerDir::open(&self.root, id)?;
        let record = dir.read_record()?.ok_or_else(|| Error::InvalidState {
            id: id.to_owned(),
            status: Status::Creating,
            op,
        })?;
        let status = state::live_status(&dir.path, &record);
        if !allowed.contains(&status) {
            return Err(Error::InvalidState {
                id: id.to_owned(),
                status,
                op,
            });
        }
        let cg = record
            .cgroup()?
            .ok_or_else(|| Error::NoCgroup { id: id.to_owned() })?;
        Ok((record, cg))
    }

    /// Pauses a running container: freezes every process of its cgroup.
    pub fn pause(&self, id: &str) -> Result<(), Error> {
        let (_, cg) = self.live(id, "pause", &[Status::Running])?;
        Ok(cg.freeze()?)
    }

    /// Resumes a paused container.
    pub fn resume(&self, id: &str) -> Result<(), Error> {
        let (_, cg) = self.live(id, "resume", &[Status::Paused])?;
        Ok(cg.thaw()?)
    }

    /// Changes the resources of a created, running or paused container; returns what was
    /// adjusted rather than applied (as warnings).
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<Vec<String>, Error> {
        let (_, cg) = self.live(
            id,
            "update",
            &[Status::Created, Status::Running, Status::Paused],
        )?;
        // The device rules stay those of create (config rules + the default set): runc
        // 1.1's update ignores linux.resources.devices too, so an update can neither
        // open a denied device nor take /dev/null away.
        let mut warnings = Vec::new();
        let mut resources = resources.clone();
        if resources.devices_mut().take().is_some() {
            warnings.push(
                "linux.resources.devices: ignored by update (device rules are set at create)"
                    .to_string(),
            );
        }
        warnings.extend(cg.update(&resources)?.iter().map(ToString::to_string));
        Ok(warnings)
    }

    /// The host pids of every process of the container (sorted); for a stopped container
    /// what is left in its cgroup (usually nothing), as runc.
    pub fn ps(&self, id: &str) -> Result<Vec<i32>, Error> {
        let dir = ContainerDir::open(&self.root, id)?;
        let record = dir.read_record()?.ok_or_else(|| Error::InvalidState {
            id: id.to_owned(),
            status: Status::Creating,
            op: "ps",
        })?;
        match (state::live_status(&dir.path, &record), record.cgroup()?) {
            (Status::Creating, _) => Err(Error::InvalidState {
                id: id.to_owned(),
                status: Status::Creating,
                op: "ps",
            }),
            (_, Some(cg)) => Ok(cg.pids()?),
            (Status::Stopped, None) => Ok(Vec::new()),
            (_, None) => Err(Error::NoCgroup { id: id.to_owned() }),
        }
    }

    /// Resource usage of the container's cgroup.
    pub fn stats(&self, id: &str) -> Result<berth_cgroups::Stats, Error> {
        let (_, cg) = self.live(
            id,
            "get stats of",
            &[Status::Created, Status::Running, Status::Paused],
        )?;
        Ok(cg.stats()?)
    }

    /// Starts watching the container's OOM events; [`berth_cgroups::OomWatcher::wait`]
    /// returns the new counters after each OOM (kill), and fails once the cgroup is gone.
    pub fn oom_watcher(&self, id: &str) -> Result<berth_cgroups::OomWatcher, Error> {
        let (_, cg) = self.live(
            id,
            "watch events of",
            &[Status::Created, Status::Running, Status::Paused],
        )?;
        Ok(cg.oom_watcher()?)
    }
}

/// The `setgroups` file of the container's user namespace where it can be known: none for a
/// new one (berth as root leaves it "allow"), `/proc/<pid>/setgroups` for a joined
/// `/proc/<pid>/ns/user`.
fn userns_setgroups_file(ns: &NamespacePlan) -> Option<PathBuf> {
    let ns_dir = ns.join_path(NamespaceKind::User)?.parent()?;
    (ns_dir.file_name()? == "ns").then(|| ns_dir.parent().map(|p| p.join("setgroups")))?
}

/// linux.mountLabel: the `context=` option on every mount of a file system that takes one
/// (not bind mounts, nor proc, sysfs and cgroup, whose labels come from the policy).
fn label_mounts(mounts: &mut [oci_spec::runtime::Mount], context: &str) {
    for m in mounts {
        let opts = m.options().clone().unwrap_or_default();
        let bind = opts.iter().any(|o| o == "bind" || o == "rbind");
        let typ = m.typ().as_deref().unwrap_or("");
        if bind || matches!(typ, "bind" | "proc" | "sysfs" | "cgroup" | "cgroup2") {
            continue;
        }
        let mut opts = opts;
        opts.push(context.to_owned());
        m.set_options(Some(opts));
    }
}

/// The size of the pieces the state JSON travels to the init in (`S` message).
const STATE_CHUNK: usize = 32 * 1024;

/// runc's `--rootless=auto`: not root, or root of a user namespace other than the initial
/// one (which may well lack cgroup permissions).
fn rootless_auto() -> bool {
    !nix::unistd::geteuid().is_root() || !berth_namespaces::in_initial_user_namespace()
}

/// Whether `linux.resources` asks for anything but device rules (which a rootless runc
/// ignores failing to apply).
fn asks_for_limits(linux: &oci_spec::runtime::Linux) -> bool {
    let Some(r) = linux.resources() else {
        return false;
    };
    match serde_json::to_value(r) {
        Ok(serde_json::Value::Object(mut fields)) => {
            fields.remove("devices");
            fields.values().any(|v| !v.is_null())
        }
        _ => true,
    }
}

/// Whether an error comes from the kernel refusing access (`EACCES`, `EPERM`, `EROFS`):
/// what a rootless runc ignores when it can't create a cgroup.
fn is_permission_error(e: &Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.raw_os_error(),
                Some(libc::EACCES | libc::EPERM | libc::EROFS)
            )
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// How long removing a cgroup waits for its processes to be gone.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(10);

/// `linux.resources` with the device rules runc applies: the config's rules, then the
/// fixed set every container gets ([`berth_cgroups::devices::DEFAULT_ALLOWED`]). The
/// devices of `linux.devices` get no rule of their own: as with runc, a container may use
/// one only if `linux.resources.devices` allows it.
fn cgroup_resources(linux: &oci_spec::runtime::Linux) -> LinuxResources {
    berth_cgroups::devices::with_defaults(linux.resources().as_ref())
}

/// Records `pid` (with its start time, which tells it from a later process with the same
/// number) as the process a `delete` kills; `init` when it is the container's init in a pid
/// namespace of its own (which `delete` then sweeps).
fn record_pid(record: &mut Record, pid: i32, init: bool) -> Result<(), Error> {
    let (start, _) = state::process_start_time(pid)
        .ok_or_else(|| Error::Protocol(format!("child {pid} vanished")))?;
    record.pid = pid;
    record.start_time = start;
    record.own_pid_ns = init;
    Ok(())
}

/// The container's cgroup as the state records it before making it: its path from the root
/// of every hierarchy, where it is the same in all (a relative `linux.cgroupsPath` under a
/// process that sits in different cgroups per hierarchy is recorded once made).
fn planned_cgroup_path(layout: &Layout, path: &CgroupPath) -> Option<PathBuf> {
    match path {
        CgroupPath::Relative(p) => {
            let mut all = layout.hierarchies().map(|h| layout.relative_base(h));
            let first = all.next()?;
            all.all(|o| o == first).then(|| first.join(p))
        }
        CgroupPath::Absolute(p) => Some(p.clone()),
        CgroupPath::PerHierarchy(_) => None,
    }
}

/// Where the state records the container's cgroup.
enum RecordedCgroup {
    /// The same cgroup, from the root, in every hierarchy.
    Same(PathBuf),
    /// A relative `linux.cgroupsPath` resolved in each hierarchy, where this process is
    /// in different cgroups.
    Each(BTreeMap<String, String>),
}

/// Creates the container's cgroup; returns it, where the state records it and the
/// warnings of applying the resources.
fn setup_cgroup(
    layout: &Layout,
    path: &CgroupPath,
    resources: &LinuxResources,
) -> Result<(CgroupManager, RecordedCgroup, Vec<berth_cgroups::Warning>), Error> {
    let (cg, warnings) = create_cgroup(layout, path, resources)?;
    let each = cg.cgroups();
    let mut all = each.values();
    let recorded = match (path, all.next()) {
        (CgroupPath::Absolute(p), _) => RecordedCgroup::Same(p.clone()),
        (_, Some(first)) if all.all(|p| p == first) => RecordedCgroup::Same(first.clone()),
        _ => RecordedCgroup::Each(
            each.into_iter()
                .map(|(k, v)| (k, v.to_string_lossy().into_owned()))
                .collect(),
        ),
    };
    Ok((cg, recorded, warnings))
}

/// `delete --force` of a container whose `state.json` is corrupt (or empty): its saved config
/// names its cgroup, which holds its processes; they are killed and the cgroup removed, then
/// the state dir. When the cgroup can't be known (no saved config, a relative cgroupsPath, or
/// no cgroup where a container may run without one) nothing is removed and the error says so.
fn delete_corrupt(dir: ContainerDir, corrupt: Error) -> Result<(), Error> {
    let fail = |why: String| Error::CorruptDelete {
        id: dir.id.clone(),
        dir: dir.path.clone(),
        reason: format!("{corrupt}; {why}"),
    };
    let spec = match dir.read_config() {
        Ok(Some(spec)) => spec,
        Ok(None) => return Err(fail("no saved config.json names its cgroup".into())),
        Err(e) => return Err(fail(e.to_string())),
    };
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    let path = match CgroupPath::from_spec(cgroups_path.as_deref(), &dir.id) {
        Ok(CgroupPath::Absolute(p)) => p,
        Ok(_) => {
            return Err(fail(format!(
                "its linux.cgroupsPath {} is relative to the cgroup of the create that made it",
                cgroups_path.as_deref().unwrap_or(Path::new("")).display()
            )));
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    let record = Record {
        id: dir.id.clone(),
        cgroup: Some(path.to_string_lossy().into_owned()),
        ..Record::default()
    };
    if record.cgroup_to_remove()?.is_none() && !nix::unistd::geteuid().is_root() {
        return Err(fail(format!(
            "its cgroup {} does not exist, and a rootless container may run without one",
            path.display()
        )));
    }
    kill_and_wait(&record)?;
    destroy_cgroup(&record)?;
    dir.remove()
}

/// Kills every process of the container's cgroup (thawing it so that they can die) and
/// removes the cgroup, waiting for the processes to be gone. A cgroup an interrupted create
/// or delete left in some hierarchies only is removed from those.
fn destroy_cgroup(record: &Record) -> Result<(), Error> {
    if let Some(cg) = record.cgroup_to_remove()? {
        cg.kill_all()?;
        let _ = cg.thaw();
        cg.remove(REMOVE_TIMEOUT)?;
        if let Some(path) = &record.cgroup {
            remove_default_parent(&cg, &CgroupPath::Absolute(PathBuf::from(path)));
        }
    }
    if let Some(g) = &record.intel_rdt {
        g.remove()?;
    }
    Ok(())
}

/// Creates the cgroup; retried when a directory vanished under it (another container's
/// delete removing the shared default parent `/berth` at that moment).
fn create_cgroup(
    layout: &Layout,
    path: &CgroupPath,
    resources: &LinuxResources,
) -> Result<(CgroupManager, Vec<berth_cgroups::Warning>), Error> {
    use berth_cgroups::CgroupError as E;
    let mut tries = 0;
    loop {
        match CgroupManager::create(layout, path, Some(resources)) {
            Err(E::Dir { source, .. } | E::Read { source, .. } | E::Write { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && tries < 20 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            r => return Ok(r?),
        }
    }
}

/// After the cgroup of a default `linux.cgroupsPath` (`/berth/<id>`) is removed, removes
/// the `/berth` parent too when no other container uses it (rmdir fails on a non-empty
/// directory, which is then kept).
fn remove_default_parent(cg: &CgroupManager, path: &CgroupPath) {
    let CgroupPath::Absolute(p) = path else {
        return;
    };
    if p.parent() != Some(Path::new("/").join(berth_cgroups::DEFAULT_PARENT).as_path()) {
        return;
    }
    for (_, dir) in cg.paths() {
        if let Some(parent) = dir.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

fn raw_kill(pid: i32, sig: i32) -> Result<(), nix::Error> {
    // SAFETY: kill with integer arguments (real-time signals nix has no enum value for).
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(nix::Error::last())
    }
}

/// Sends `sig` to every process in the pid namespace of `init` (except init itself, which the
/// caller signals).
fn signal_pid_ns(init: i32, sig: i32) -> Result<(), Error> {
    let ns_of = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let Some(target) = ns_of(&init.to_string()) else {
        return Ok(());
    };
    let entries = fs::read_dir("/proc").map_err(|e| Error::io("list", "/proc", e))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid != init && ns_of(&pid.to_string()).as_ref() == Some(&target) {
            let _ = raw_kill(pid, sig);
        }
    }
    Ok(())
}

/// SIGKILLs the container (its cgroup, its whole pid namespace) and waits until the recorded
/// process is gone. A pid that no longer names the recorded process is left alone.
fn kill_and_wait(record: &Record) -> Result<(), Error> {
    if let Some(cg) = record.cgroup_to_remove()? {
        cg.kill_all()?;
        // Frozen processes only die once thawed.
        let _ = cg.thaw();
    }
    if !record.pid_alive() {
        return Ok(());
    }
    if record.own_pid_ns {
        signal_pid_ns(record.pid, libc::SIGKILL)?;
    }
    let _ = raw_kill(record.pid, libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut nap = Duration::from_micros(100);
    loop {
        if !record.pid_alive() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Protocol(format!(
                "init {} did not die within 10 s of SIGKILL",
                record.pid
            )));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

/// Reads the start barrier until EOF: empty means the init exec'd; anything else is its
/// failure record. Waits for the init to open the fifo (it may not have yet) and gives up if
/// the init dies first.
fn read_barrier(fifo: &fs::File, pid: i32, start_time: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut seen_writer = false;
    let mut buf = [0u8; 256];
    loop {
        let mut pfd = libc::pollfd {
            fd: fifo.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 100) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            // No writer yet (or a slow one): is the init still there?
            match state::process_start_time(pid) {
                Some((s, st)) if s == start_time && st != 'Z' => continue,
                _ => {
                    if seen_writer {
                        return Ok(out);
                    }
                    return Ok(b"init died".to_vec());
                }
            }
        }
        if pfd.revents & libc::POLLIN != 0 {
            seen_writer = true;
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::read(fifo.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                out.extend_from_slice(&buf[..n as usize]);
                continue;
            }
            if n == 0 {
                return Ok(out);
            }
        }
        if pfd.revents & libc::POLLHUP != 0 {
            // Writer connected and closed: drain what is left.
            let _ = (&*fifo).read_to_end(&mut out);
            return Ok(out);
        }
    }
}

/// `process.args[0]` of the saved config, to name the program in an exec failure.
fn saved_program(dir: &ContainerDir) -> Option<String> {
    let spec = dir.read_config().ok()??;
    spec.process().as_ref()?.args().as_ref()?.first().cloned()
}

fn fill_hook_path(err: Error, hooks: &Hooks) -> Error {
    match err {
        Error::Hook {
            kind,
            index,
            path,
            reason,
        } if path.as_os_str().is_empty() => {
            let list = match kind {
                "createContainer" => hooks.create_container(),
                _ => hooks.start_container(),
            };
            let path = list
                .as_ref()
                .and_then(|l| l.get(index))
                .map(|h| h.path().clone())
                .unwrap_or_default();
            Error::Hook {
                kind,
                index,
                path,
                reason,
            }
        }
        e => e,
    }
}

/// Why our child `pid` (`who`: "init", "the exec'd process") ended during setup without
/// reporting anything; reaps it.
pub(crate) fn exit_reason(pid: i32, who: &str) -> String {
    let mut st = 0;
    // SAFETY: reaping our own child.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
    if r != pid {
        format!("{who} exited during setup")
    } else if libc::WIFSIGNALED(st) {
        format!(
            "{who} was killed by signal {} during setup",
            libc::WTERMSIG(st)
        )
    } else {
        format!(
            "{who} exited with status {} during setup",
            libc::WEXITSTATUS(st)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Mount;

    fn m(typ: &str, opts: &[&str]) -> Mount {
        let mut m = Mount::default();
        m.set_typ(Some(typ.into()));
        m.set_options(Some(opts.iter().map(|o| o.to_string()).collect()));
        m
    }

    #[test]
    fn a_planned_relative_cgroup_is_where_berth_cgroups_makes_it() {
        // On a unified host, below the parent of the runtime's cgroup (which has
        // processes); on a legacy one below the runtime's cgroup.
        let rel = CgroupPath::Relative("c".into());
        let unified = Layout::from_proc(
            "1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/init.scope\n",
        )
        .unwrap();
        assert_eq!(planned_cgroup_path(&unified, &rel), Some("/c".into()));
        let legacy = Layout::from_proc(
            "1 0 0:1 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
            "1:pids:/r\n",
        )
        .unwrap();
        assert_eq!(planned_cgroup_path(&legacy, &rel), Some("/r/c".into()));
    }

    #[test]
    fn mount_label_goes_on_file_systems_that_take_it() {
        let ctx = "context=\"system_u:object_r:container_file_t:s0:c1,c2\"";
        let mut mounts = vec![
            m("tmpfs", &["nosuid"]),
            m("mqueue", &[]),
            m("devpts", &["newinstance"]),
            m("proc", &[]),
            m("sysfs", &["ro"]),
            m("cgroup", &[]),
            m("none", &["rbind", "ro"]),
            m("bind", &["ro"]),
        ];
        label_mounts(&mut mounts, ctx);
        let labelled: Vec<bool> = mounts
            .iter()
            .map(|m| m.options().iter().flatten().any(|o| o == ctx))
            .collect();
        assert_eq!(
            labelled,
            [true, true, true, false, false, false, false, false]
        );
    }
}
