//! `create`: a bundle's config planned, the state and cgroup made, the init cloned and
//! brought to the start barrier through the sync protocol.

use std::cell::{Cell, OnceCell};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_cgroups::{CgroupManager, CgroupMode, CgroupPath, Layout};
use berth_namespaces::{NamespaceKind, NamespacePlan};
use berth_rootfs::{RootfsOptions, RootfsPlan};
use oci_spec::runtime::{LinuxResources, Spec};

use crate::child::init::{self, InitContext};
use crate::child::sync::{Channel, Peer, ToChild, ToParent};
use crate::child::sys;
use crate::config::validate::{self, ConfigError};
use crate::error::Error;
use crate::intel_rdt::IntelRdt;
use crate::process::ProcessPlan;
use crate::process::home;
use crate::process::hooks::{self, ChildHook};
use crate::process::security::SecurityPlan;
use crate::seccomp::{self, SeccompPlan};
use crate::state::{self, ContainerDir, Record, Status};

use super::affinity;
use super::delete::REMOVE_TIMEOUT;
use super::start::fill_hook_path;
use super::{
    Cleanup, Container, CreateOptions, Runtime, abs_path, connect_console, exit_reason, hooks_of,
    kill_and_reap, list, state_json, state_value, write_pid_file,
};

impl Runtime {
    /// Creates a container from a bundle: validates the config, sets up namespaces, mounts,
    /// devices, the process' credentials and runs the create-time hooks, leaving the init
    /// waiting before `execve` until [`Runtime::start`]. On any error nothing is left behind.
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<Container, Error> {
        self.create_started(id, opts, false).map(|(c, _)| c)
    }

    /// Creates and starts a container in one step, as `berth run` does without a terminal:
    /// the init goes on to exec the program as soon as it is set up instead of waiting at
    /// the start barrier (there is no exec.fifo, as with `crun run`), and `run` returns once
    /// the program was exec'd and the poststart hooks ran. The create-time hooks run as with
    /// [`Runtime::create`]; the container is `running` when this returns. On any error
    /// nothing is left behind.
    ///
    /// Use [`Runtime::create`] and [`Runtime::start`] when something must happen between
    /// the two (taking and sizing the terminal, say).
    ///
    /// ```no_run
    /// use berth_runtime_core::{CreateOptions, Runtime};
    /// let rt = Runtime::new("/run/berth");
    /// let c = rt.run("demo", &CreateOptions::new("/tmp/bundle"))?;
    /// let code = c.wait()?;
    /// rt.delete("demo", false)?;
    /// # Ok::<(), berth_runtime_core::Error>(())
    /// ```
    pub fn run(&self, id: &str, opts: &CreateOptions) -> Result<Container, Error> {
        let (c, started) = self.create_started(id, opts, true)?;
        if !started {
            // A config without a process: `start` refuses it (and stops the init); then
            // nothing stays behind.
            if let Err(e) = self.start(id) {
                let _ = self.delete(id, true);
                return Err(e);
            }
        }
        Ok(c)
    }

    /// `create`, or with `start` (and a process to start) `run`; says whether it started.
    fn create_started(
        &self,
        id: &str,
        opts: &CreateOptions,
        start: bool,
    ) -> Result<(Container, bool), Error> {
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
        let start = start && spec.process().is_some();
        let netns_thread = netns_on_a_thread(&spec);
        match self.create_in(&dir, &spec, &bundle, opts, start, netns_thread) {
            Ok(c) => {
                remove_dir.disarm();
                Ok((c, start))
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
        start: bool,
        netns_thread: Option<NetnsThread>,
    ) -> Result<Container, Error> {
        let id = dir.id.as_str();
        let mut warnings = Vec::new();
        let Plans {
            linux,
            rootfs_path,
            own_mount_ns,
            ns,
            rootfs,
            pplan,
            security,
            setgroups_allowed,
            seccomp,
            rdt,
            all_hooks,
            cc_hooks,
            sc_hooks,
            hooks_sync,
            hostname,
            domainname,
            keyring,
        } = plan(id, spec, bundle, opts, &mut warnings)?;
        // The network namespace `create` started making (see netns_on_a_thread), where the
        // plan agrees that it is the fast path's.
        let netns_thread = netns_thread.filter(|_| {
            !ns.needs_intermediate()
                && !ns.creates(NamespaceKind::User)
                && ns.creates(NamespaceKind::Network)
        });

        // The start barrier (not for `run`): a fifo any uid can open for writing (the init
        // may have dropped privileges by the time it opens it through the O_PATH fd of the
        // state dir).
        let state_dir = if start {
            None
        } else {
            let fifo = dir.fifo_path();
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
                .map_err(|e| Error::sys(format!("mkfifo {}", fifo.display()), e))?;
            fs::set_permissions(&fifo, fs::Permissions::from_mode(0o622))
                .map_err(|e| Error::io("chmod", &fifo, e))?;
            let fd = nix::fcntl::open(
                &dir.path,
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| Error::sys(format!("open {}", dir.path.display()), e))?;
            Some(fd)
        };

        let console = connect_console(pplan.terminal, opts.console_socket.as_deref())?;

        let (parent_sock, child_sock) =
            crate::child::sync::socket_pair().map_err(|e| Error::sys("socketpair", e))?;

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
        // Before a cgroup made before the clone; else after the clone, while the init
        // begins (killed with create until it is ready: it has a parent-death signal).
        // The cgroup, with linux.resources applied. Where the host has cgroup2 it is made
        // before the clone, which starts the init (or the slow path's intermediate) in its
        // cgroup2 directory (CLONE_INTO_CGROUP); on a hybrid host the child then joins the v1
        // hierarchies itself (see `self_join`). No move by pid then: its first one after a
        // quiet moment waits for an RCU grace period (5 ms here, more than making the cgroup
        // costs). On a v1-only host, or where the child can't join by itself, it is made
        // after the clone, while the init makes its first mounts (it waits for `Go` only
        // before its first cgroup mount: child::init::join_cgroup_and_netns). Removed again
        // (after the init is killed) if anything below fails.
        let cg_cell: OnceCell<CgroupManager> = OnceCell::new();
        let mut remove_cgroup = Cleanup(Some(|| {
            if let Some(cg) = cg_cell.get() {
                let _ = cg.kill_all();
                let _ = cg.thaw();
                let _ = cg.remove(REMOVE_TIMEOUT);
            }
        }));
        let make_cgroup = |layout: &Layout, record: &mut Record, warnings: &mut Vec<String>| {
            make_cgroup(
                &cg_cell, layout, &cg_path, &resources, optional, record, dir, warnings,
            )
        };
        // Whether the child can move itself into the v1 hierarchies (`tasks`): as root in the
        // host's user namespace, before it joins or creates any namespace, with a cgroup that
        // must be made (not an optional rootless one).
        let v1_self_join = !optional && !ns.creates(NamespaceKind::User);
        let mode = planned.as_ref().map(|(_, layout)| layout.mode());
        let cgroup_before_clone = match mode {
            Some(CgroupMode::Unified) => true,
            Some(CgroupMode::Hybrid) => v1_self_join,
            _ => false,
        };
        if cgroup_before_clone {
            dir.write_record(&record)?;
        }
        if let (Some((_, layout)), true) = (&planned, cgroup_before_clone) {
            make_cgroup(layout, &mut record, &mut warnings)?;
        }
        // Whether the child waits for `Go` (it is in the cgroup): always where one is made
        // after the clone, which may still find it may not make one (a rootless container
        // that runs without).
        let cgroup_sync = if cgroup_before_clone {
            cg_cell.get().is_some()
        } else {
            planned.is_some()
        };

        // Where the child waits for `Go` (the init before its cgroup mount, the slow path's
        // intermediate before it joins any namespace) on a v1 or hybrid host, it moves itself
        // into the v1 hierarchies (see InitContext::cgroup_tasks); the clone (or else the
        // parent) puts it into cgroup2. Anything unusual (a path this can't work out): the
        // parent moves it.
        let self_join =
            cgroup_sync && v1_self_join && mode.is_some_and(|m| m != CgroupMode::Unified);
        let cgroup_tasks: Vec<std::ffi::CString> = match (&planned, self_join) {
            (Some((_, layout)), true) => CgroupManager::v1_task_files(layout, &cg_path)
                .ok()
                .and_then(|files| {
                    files
                        .into_iter()
                        .map(|f| std::ffi::CString::new(f.into_os_string().into_vec()).ok())
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut state_buf = vec![0u8; state_json(&record, Status::Created).len() + 64];

        let stdio = opts.stdio.dup_above(3 + opts.preserve_fds as RawFd)?;
        let ctx = InitContext {
            stdio: crate::lifecycle::raw_stdio(&stdio),
            ns: &ns,
            rootfs: &rootfs,
            process: &pplan,
            seccomp: seccomp.as_ref(),
            security: &security,
            create_container_hooks: &cc_hooks,
            start_container_hooks: &sc_hooks,
            sock: child_sock.as_raw_fd(),
            parent_sock: parent_sock.as_raw_fd(),
            state_dir: state_dir.as_ref().map_or(-1, |d| d.as_raw_fd()),
            start_barrier: !start,
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
            cgroup_sync,
            unshare_cgroup_ns: cgroup_sync
                && !ns.needs_intermediate()
                && ns.creates(NamespaceKind::Cgroup),
            cgroup_tasks: &cgroup_tasks,
            unshare_first: if ns.needs_intermediate() || ns.creates(NamespaceKind::User) {
                0
            } else {
                let made_here = if netns_thread.is_some() {
                    libc::CLONE_NEWNET
                } else {
                    0
                };
                ns.clone_flags()
                    & (libc::CLONE_NEWNS
                        | libc::CLONE_NEWNET
                        | libc::CLONE_NEWIPC
                        | libc::CLONE_NEWUTS)
                    & !made_here
            },
            netns_with_go: netns_thread.is_some(),
        };
        let flags = if ctx.intermediate {
            0
        } else {
            // A cgroup namespace is unshared by the child once it is in the container's
            // cgroup (ctx.unshare_cgroup_ns), so that cgroup is the namespace's root.
            let mut f = ns.clone_flags() & !ctx.unshare_first;
            if ctx.unshare_cgroup_ns {
                f &= !libc::CLONE_NEWCGROUP;
            }
            // Made by the parent's thread, joined by the init (ctx.netns_with_go).
            if ctx.netns_with_go {
                f &= !libc::CLONE_NEWNET;
            }
            f
        };
        // Where the host has cgroup2, the init starts inside its cgroup2 directory
        // (clone3 CLONE_INTO_CGROUP, Linux 5.7+); on a unified host that is the whole move and
        // add_process is skipped. Kernels without clone3 fall back to clone + add_process.
        let into = cg_cell
            .get()
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
        let mut kill_early = Cleanup(Some(|| kill_and_reap(child)));
        // On a v1 or hybrid host the parent makes the cgroup now, while the child unshares
        // and mounts: on two CPUs, not one after the other (affinity::reset undoes it).
        let pinned = cgroup_sync && !cgroup_before_clone && affinity::pin_away(child);
        // Written after the clone, the first record already names the init (on the fast path,
        // where the child is the init): one record write fewer.
        let pid_in_first_record = !cgroup_before_clone && !ctx.intermediate;
        if pid_in_first_record {
            record_pid(&mut record, child, ns.creates(NamespaceKind::Pid))?;
        }
        if !cgroup_before_clone {
            dir.write_record(&record)?;
        }
        kill_early.disarm();

        let init_pid = if ctx.intermediate { 0 } else { child };
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
        // for `Go` (or, without a cgroup or user namespace to set up, for nothing): a create
        // killed before this write leaves a child that exits at EOF on its sync socket, or
        // runs on in the cgroup recorded above. With a cgroup the write waits until the child
        // is in it and has its `Go` (a delete finds it through the cgroup meanwhile), so that
        // it overlaps with the child's own set-up rather than delaying it. On the fast path
        // after a clone the first record named it already.
        let pid_written_after_go = cgroup_sync && !pid_in_first_record;
        if !pid_in_first_record {
            record_pid(
                &mut record,
                child,
                !ctx.intermediate && ns.creates(NamespaceKind::Pid),
            )?;
            if !pid_written_after_go {
                dir.write_record(&record)?;
            }
        }
        let sync_err = |e| Error::io("sync with init", &dir.path, e);
        let mut sync = Channel::new(
            parent_sock,
            Peer::Init {
                intermediate: ctx.intermediate,
            },
        );
        // The child (the init, or the slow path's intermediate) waits for `Go`: put it in the
        // cgroup first, so that the init is there before the user process runs and before a
        // cgroup namespace is created.
        if let (Some((_, layout)), false) = (&planned, cgroup_before_clone) {
            make_cgroup(layout, &mut record, &mut warnings)?;
        }
        if let Some(cg) = cg_cell.get() {
            if !cgroup_tasks.is_empty() {
                if !in_cgroup2 {
                    cg.add_process_v2(child)?;
                }
            } else if !(in_cgroup2 && cg.clone_into_cgroup_is_enough()) {
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
        if let Some(t) = netns_thread {
            let netns = t
                .join()
                .map_err(|_| Error::Protocol("the network namespace thread panicked".into()))?
                .map_err(|e| Error::io("unshare(CLONE_NEWNET)", "/proc/thread-self/ns/net", e))?;
            sync.send_go_with_fd(netns.as_raw_fd()).map_err(sync_err)?;
        } else if ctx.cgroup_sync || (!ctx.intermediate && ctx.new_user_ns) {
            sync.send(ToChild::Go).map_err(sync_err)?;
        }
        // Pinned until now only: held away from the parent's CPU for good, the init would
        // stay away from it even where the parent sleeps.
        if pinned {
            affinity::reset(child);
        }
        if pid_written_after_go {
            dir.write_record(&record)?;
        }
        // The saved config (for exec, and for a delete that finds the record corrupt): no
        // step of create needs it, so it is written while the init sets itself up.
        dir.write_config(spec)?;
        let init_pid = InitSync {
            channel: &mut sync,
            child,
            init_pid,
            guard_pid: &guard_pid,
            ns: &ns,
            rootfs: &rootfs,
            process: &pplan,
            seccomp: seccomp.as_ref(),
            hooks: &all_hooks,
            state_buf_len: state_buf.len(),
            dir,
        }
        .until_ready(&mut record)?;
        // (Without a start barrier the program may have run and exited already.)
        if !start && !record.pid_alive() {
            return Err(Error::Protocol(format!("init {init_pid} vanished")));
        }
        record.creating = false;
        dir.write_record(&record)?;
        if start {
            // No start barrier: the init went on to exec after `Ready`. EOF on the sync socket
            // (close-on-exec) is the exec; a failure record is why it did not happen. (An init
            // killed between `Ready` and the exec is seen here as exec'd, as `start` sees it;
            // its exit status then tells.)
            match sync.recv().map_err(Error::Protocol)? {
                None => {}
                Some((ToParent::Failed(f), _)) => {
                    return Err(fill_hook_path(
                        init::describe(f, &ns, &rootfs, &pplan),
                        &all_hooks,
                    ));
                }
                Some((m, _)) => {
                    return Err(Error::Protocol(format!("init sent {m:?} after ready")));
                }
            }
        }
        // For `run`, only once the program runs: a failed exec leaves no pid file naming it.
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, init_pid)?;
        }
        if start {
            self.run_poststart(&record);
        }
        kill_guard.disarm();
        release_mounts.disarm();
        remove_cgroup.disarm();
        remove_rdt.disarm();
        drop(remove_cgroup);
        let kept = super::Kept {
            cgroup: cg_cell.into_inner(),
            created: record.created.clone(),
        };
        Ok(Container {
            id: id.to_owned(),
            pid: init_pid,
            warnings,
            kept,
        })
    }
}

/// A thread making the container's network namespace.
type NetnsThread = std::thread::JoinHandle<std::io::Result<std::os::fd::OwnedFd>>;

/// Where the config asks for a new network namespace on the fast path (no user namespace,
/// nothing to join, no time namespace), starts making it on a thread, as soon as the config
/// is valid: the kernel's 0.3 to 0.5 ms of work for it then runs on the other CPU while
/// this one makes the state dir and the plans and clones the init, which joins it before
/// its sysfs mount (InitContext::netns_with_go). `None` (the init makes it) otherwise, or
/// when no thread can be started.
fn netns_on_a_thread(spec: &Spec) -> Option<NetnsThread> {
    use oci_spec::runtime::LinuxNamespaceType as T;
    let namespaces = spec.linux().as_ref()?.namespaces().as_ref()?;
    let joins = |n: &oci_spec::runtime::LinuxNamespace| {
        n.path().as_ref().is_some_and(|p| !p.as_os_str().is_empty())
    };
    let fast = namespaces
        .iter()
        .all(|n| !joins(n) && !matches!(n.typ(), T::User | T::Time));
    let wants = namespaces.iter().any(|n| n.typ() == T::Network);
    if !(fast && wants) {
        return None;
    }
    // Pinned off our CPU right away, or the scheduler may queue it behind us (as the init:
    // lifecycle::affinity). It waits for the pin before it begins, so that it can't have
    // exited by then (glibc's tid of an exited thread is 0, which names the caller).
    let (pinned, wait_pin) = std::sync::mpsc::channel::<()>();
    let t = std::thread::Builder::new()
        .name("berth-netns".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = wait_pin.recv();
            new_network_namespace()
        })
        .ok()?;
    use std::os::unix::thread::JoinHandleExt;
    affinity::pin_thread_away(t.as_pthread_t());
    let _ = pinned.send(());
    Some(t)
}

/// A new network namespace, made by the calling thread for itself (the process' other
/// threads stay where they are): its `/proc/thread-self/ns/net`, for the init to join.
fn new_network_namespace() -> std::io::Result<std::os::fd::OwnedFd> {
    // SAFETY: unshare only reads its flag; CLONE_NEWNET moves this thread alone.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    fs::File::open("/proc/thread-self/ns/net").map(std::os::fd::OwnedFd::from)
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

/// A config error naming `field`.
fn cfg_err(field: &str, reason: &str) -> Error {
    Error::Config(ConfigError::new(field, reason))
}

/// The runtime's side of the init's sync, from the cloned child's first message to the
/// init's `Ready`.
struct InitSync<'a> {
    channel: &'a mut Channel,
    /// The cloned child (the init, or the slow path's intermediate).
    child: i32,
    /// The init's pid, 0 until the intermediate's `Pid`.
    init_pid: i32,
    /// Whom a failed create kills.
    guard_pid: &'a Cell<i32>,
    ns: &'a NamespacePlan,
    rootfs: &'a RootfsPlan,
    process: &'a ProcessPlan,
    seccomp: Option<&'a SeccompPlan>,
    hooks: &'a oci_spec::runtime::Hooks,
    /// The init's buffer for the state JSON.
    state_buf_len: usize,
    dir: &'a ContainerDir,
}

impl InitSync<'_> {
    fn sync_err(&self, e: std::io::Error) -> Error {
        Error::io("sync with init", &self.dir.path, e)
    }

    /// After a failure that overtook the intermediate's `Pid`: waits for that pid (or the
    /// end of the exchange), so that the failed init, our child too (`CLONE_PARENT`), is the
    /// one a failed create kills and reaps, and the intermediate is reaped.
    fn adopt_late_pid(&mut self) {
        while let Ok(Some((msg, _))) = self.channel.recv() {
            if let ToParent::Pid(pid) = msg {
                let mut st = 0;
                // SAFETY: reaping our own child (the intermediate, which exits after `Pid`).
                unsafe { libc::waitpid(self.child, &mut st, 0) };
                self.guard_pid.set(pid);
                return;
            }
        }
    }

    /// Answers the init's messages (`record` follows its pid) until it is ready; returns
    /// the init's pid.
    fn until_ready(mut self, record: &mut Record) -> Result<i32, Error> {
        // On the slow path the init's messages may overtake the intermediate's `Pid`: they
        // wait here until the init's pid is known (its state, the agent and the bind sources
        // need it).
        let mut held_back = std::collections::VecDeque::new();
        loop {
            let next = if self.init_pid != 0 {
                held_back.pop_front()
            } else {
                None
            };
            let (msg, passed_fd) = match next {
                Some(m) => m,
                None => match self.channel.recv().map_err(Error::Protocol)? {
                    Some(m) => m,
                    None => {
                        // exit_reason reaps the child: the guard must not signal that pid
                        // again (it may already belong to another process).
                        return Err(Error::Protocol(exit_reason(
                            self.guard_pid.replace(0),
                            "init",
                        )));
                    }
                },
            };
            match msg {
                ToParent::MapIds => {
                    self.ns.write_id_mappings(self.child)?;
                    self.channel
                        .send(ToChild::Go)
                        .map_err(|e| self.sync_err(e))?;
                }
                ToParent::Pid(pid) => {
                    self.init_pid = pid;
                    // The intermediate exits right after: reap it; the init is our child too
                    // (CLONE_PARENT), so it becomes the one to clean up on failure.
                    let mut st = 0;
                    // SAFETY: reaping our own child.
                    unsafe { libc::waitpid(self.child, &mut st, 0) };
                    self.guard_pid.set(self.init_pid);
                    record_pid(record, self.init_pid, self.ns.creates(NamespaceKind::Pid))?;
                    self.dir.write_record(record)?;
                }
                ToParent::Failed(f) => {
                    if self.init_pid == 0 {
                        self.adopt_late_pid();
                    }
                    return Err(fill_hook_path(
                        init::describe(f, self.ns, self.rootfs, self.process),
                        self.hooks,
                    ));
                }
                m if self.init_pid == 0 => held_back.push_back((m, passed_fd)),
                ToParent::BindSources => {
                    for fd in self.rootfs.open_bind_sources(self.init_pid)? {
                        self.channel
                            .send_bind_source(fd.as_raw_fd())
                            .map_err(|e| self.sync_err(e))?;
                    }
                    self.channel
                        .send(ToChild::Go)
                        .map_err(|e| self.sync_err(e))?;
                }
                ToParent::Mounted => {
                    // The environment exists (lifecycle step 2 is over): every create-time
                    // hook is told `created`, as the spec's state definitions say.
                    let created = state_json(record, Status::Created);
                    hooks::run_hooks("prestart", list(self.hooks.prestart()), &created)?;
                    hooks::run_hooks("createRuntime", list(self.hooks.create_runtime()), &created)?;
                    if created.len() > self.state_buf_len {
                        return Err(Error::Protocol("state JSON larger than its buffer".into()));
                    }
                    self.channel
                        .send_state(&created)
                        .map_err(|e| self.sync_err(e))?;
                }
                ToParent::Listener => {
                    // The seccomp notify listener: to the agent at listenerPath, with the
                    // container's state (creating, the init's pid).
                    let (Some(sc), Some(fd)) = (self.seccomp, passed_fd) else {
                        return Err(Error::Protocol("listener message without its fd".into()));
                    };
                    let st = state_value(record, Status::Creating);
                    seccomp::send_to_listener(sc, &st, self.init_pid, fd.as_raw_fd())?;
                }
                ToParent::Ready if self.channel.complete() => return Ok(self.init_pid),
                ToParent::Ready => {
                    return Err(Error::Protocol(
                        "init ready before its pid was known".into(),
                    ));
                }
            }
        }
    }
}

/// Everything `create` prepares from the config before it makes anything: each part's plan,
/// built without side effects, so that a config that can't be honoured fails with nothing
/// made.
struct Plans {
    linux: oci_spec::runtime::Linux,
    rootfs_path: PathBuf,
    /// Whether the container has a mount namespace of its own (made or joined).
    own_mount_ns: bool,
    ns: NamespacePlan,
    rootfs: RootfsPlan,
    pplan: ProcessPlan,
    security: SecurityPlan,
    setgroups_allowed: bool,
    seccomp: Option<SeccompPlan>,
    rdt: Option<IntelRdt>,
    all_hooks: oci_spec::runtime::Hooks,
    cc_hooks: Vec<ChildHook>,
    sc_hooks: Vec<ChildHook>,
    /// Whether the init stops after its mounts for the hooks (`Mounted`, then the state).
    hooks_sync: bool,
    hostname: Option<CString>,
    domainname: Option<CString>,
    keyring: Option<CString>,
}

/// The [`Plans`] of container `id` (config `spec`, `bundle`); what it adjusted rather than
/// refused goes to `warnings`.
fn plan(
    id: &str,
    spec: &Spec,
    bundle: &Path,
    opts: &CreateOptions,
    warnings: &mut Vec<String>,
) -> Result<Plans, Error> {
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
        .map(|s| SeccompPlan::prepare(s, warnings))
        .transpose()
        .map_err(Error::Config)?;
    let rdt = linux
        .intel_rdt()
        .as_ref()
        .map(|r| IntelRdt::prepare(r, id))
        .transpose()
        .map_err(Error::Config)?;

    let all_hooks = hooks_of(spec);
    let cc_hooks = ChildHook::prepare(list(all_hooks.create_container()), "hooks.createContainer")?;
    let sc_hooks = ChildHook::prepare(list(all_hooks.start_container()), "hooks.startContainer")?;
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
    Ok(Plans {
        linux,
        rootfs_path,
        own_mount_ns,
        ns,
        rootfs,
        pplan,
        security,
        setgroups_allowed,
        seccomp,
        rdt,
        all_hooks,
        cc_hooks,
        sc_hooks,
        hooks_sync,
        hostname,
        domainname,
        keyring,
    })
}

/// Makes the container's cgroup (linux.resources applied) into `cell`, where the cleanup of
/// a failed create finds it, then records where it is (where the plan could not know it: a
/// relative path that resolved differently per hierarchy). A rootless container that may run
/// without a cgroup (`optional`) gets none where the kernel refuses one.
#[allow(clippy::too_many_arguments)]
fn make_cgroup(
    cell: &OnceCell<CgroupManager>,
    layout: &Layout,
    path: &CgroupPath,
    resources: &LinuxResources,
    optional: bool,
    record: &mut Record,
    dir: &ContainerDir,
    warnings: &mut Vec<String>,
) -> Result<(), Error> {
    let recorded_before = (record.cgroup.clone(), record.cgroup_paths.clone());
    match setup_cgroup(layout, path, resources) {
        Ok((cg, recorded, cg_warnings)) => {
            warnings.extend(cg_warnings.iter().map(ToString::to_string));
            match recorded {
                RecordedCgroup::Each(each) => {
                    record.cgroup = None;
                    record.cgroup_paths = Some(each);
                }
                RecordedCgroup::Same(p) => {
                    record.cgroup = Some(p.to_string_lossy().into_owned());
                }
            }
            let _ = cell.set(cg);
        }
        Err(e) if optional && is_permission_error(&e) => record.cgroup = None,
        Err(e) => return Err(e),
    }
    // Only now that a failure removes the cgroup: written before, a failed write would have
    // left it unrecorded and unremoved.
    if (record.cgroup.clone(), record.cgroup_paths.clone()) != recorded_before {
        dir.write_record(record)?;
    }
    Ok(())
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

/// Creates the cgroup; retried when a directory vanished under it (a parent removed by
/// someone else at that moment: berth keeps `/berth`, but an older berth's delete, or
/// another manager cleaning up a shared parent, removes it).
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
