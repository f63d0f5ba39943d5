//! `containerd.task.v2.Task` over ttrpc: each request decoded, run on [`Tasks`], answered
//! with containerd's status codes.

use std::sync::mpsc::Sender;

use berth_runtime_core::berth_cgroups::Stats;
use berth_runtime_core::oci_spec::runtime::{LinuxResources, Process};
use berth_shim_core::footprint::ReleaseWhenQuiet;
use berth_shim_core::mounts::Mount;
use berth_shim_core::task::{CreateTask, ExitInfo, Status, TaskError, Tasks};
use containerd_shim_protos::api;
use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::{EnumOrUnknown, Message, MessageField};
use containerd_shim_protos::shim::oci::{Options, ProcessDetails};
use containerd_shim_protos::types::task::{ProcessInfo, Status as PbStatus};
use ttrpc::{Code, TtrpcContext};

use crate::events::{any, timestamp};

/// The task service of one shim daemon.
pub struct Service {
    pub(crate) tasks: Tasks,
    /// Told when Shutdown finds no container left.
    pub(crate) shutdown: Sender<()>,
    /// Touched as every request starts and ends: a second after the last one the shim gives
    /// back its mappings of the code that served them (see `berth_shim_core::footprint`).
    pub(crate) quiet: ReleaseWhenQuiet,
}

/// The annotation of an `Update` request that asks to reopen the container's CRI log files
/// (`crilog://` stdout/stderr, see `berth_shim_core::crilog`) after the kubelet renamed them:
/// CRI's ReopenContainerLog. Its value is ignored; the request's resources must be absent or
/// empty, and nothing is updated. A container without a CRI log answers
/// `FAILED_PRECONDITION`.
///
/// ```text
/// UpdateTaskRequest { id: "c1", annotations: {"io.berth.reopen-log": ""} }
/// ```
pub const REOPEN_LOG: &str = "io.berth.reopen-log";

fn status(code: Code, msg: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg))
}

fn rpc(e: TaskError) -> ttrpc::Error {
    use berth_runtime_core::Error as R;
    let code = match &e {
        TaskError::NotFound(_) => Code::NOT_FOUND,
        TaskError::AlreadyExists(_) => Code::ALREADY_EXISTS,
        TaskError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
        TaskError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
        TaskError::Runtime(R::NotFound { .. }) => Code::NOT_FOUND,
        TaskError::Runtime(R::AlreadyExists { .. }) => Code::ALREADY_EXISTS,
        TaskError::Runtime(R::InvalidState { .. }) => Code::FAILED_PRECONDITION,
        TaskError::Runtime(R::Config(_)) | TaskError::Runtime(R::InvalidId { .. }) => {
            Code::INVALID_ARGUMENT
        }
        TaskError::Runtime(R::InvalidSignal(_)) => Code::INVALID_ARGUMENT,
        _ => Code::UNKNOWN,
    };
    status(code, e)
}

fn exec_id(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn pb_status(s: Status) -> PbStatus {
    match s {
        Status::Created => PbStatus::CREATED,
        Status::Running => PbStatus::RUNNING,
        Status::Paused => PbStatus::PAUSED,
        Status::Stopped => PbStatus::STOPPED,
    }
}

fn json_any<T: serde::de::DeserializeOwned>(
    a: &MessageField<containerd_shim_protos::protobuf::well_known_types::any::Any>,
    what: &str,
) -> ttrpc::Result<T> {
    let a = a
        .as_ref()
        .ok_or_else(|| status(Code::INVALID_ARGUMENT, format!("{what} is missing")))?;
    serde_json::from_slice(&a.value).map_err(|e| {
        status(
            Code::INVALID_ARGUMENT,
            format!("{what} ({}): {e}", a.type_url),
        )
    })
}

/// The runc options containerd sends (CreateTask's `options`), when it sends those.
fn runc_options(
    a: &MessageField<containerd_shim_protos::protobuf::well_known_types::any::Any>,
) -> ttrpc::Result<Option<Options>> {
    match a.as_ref() {
        Some(a) if a.type_url.ends_with("containerd.runc.v1.Options") => {
            Options::parse_from_bytes(&a.value)
                .map(Some)
                .map_err(|e| status(Code::INVALID_ARGUMENT, format!("runc options: {e}")))
        }
        _ => Ok(None),
    }
}

fn cgroup2_host() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// `pids.max` as containerd shows it: 0 for no limit.
fn pids_limit(s: &Stats) -> u64 {
    if s.pids.limit == u64::MAX {
        0
    } else {
        s.pids.limit
    }
}

fn metrics(s: &Stats) -> containerd_shim_protos::protobuf::well_known_types::any::Any {
    if cgroup2_host() {
        let mut m = v2::Metrics::new();
        let mut pids = v2::PidsStat::new();
        pids.current = s.pids.current;
        pids.limit = pids_limit(s);
        m.pids = MessageField::some(pids);
        let mut cpu = v2::CPUStat::new();
        cpu.usage_usec = s.cpu.usage_total_ns / 1000;
        cpu.user_usec = s.cpu.usage_user_ns / 1000;
        cpu.system_usec = s.cpu.usage_kernel_ns / 1000;
        cpu.nr_periods = s.cpu.periods;
        cpu.nr_throttled = s.cpu.throttled_periods;
        cpu.throttled_usec = s.cpu.throttled_time_ns / 1000;
        m.cpu = MessageField::some(cpu);
        let mut mem = v2::MemoryStat::new();
        let raw = |k: &str| s.memory.raw.get(k).copied().unwrap_or(0);
        mem.usage = s.memory.usage;
        mem.usage_limit = s.memory.limit;
        mem.swap_usage = s.memory.swap_usage;
        mem.swap_limit = s.memory.swap_limit;
        mem.anon = raw("anon");
        mem.file = raw("file");
        mem.kernel_stack = raw("kernel_stack");
        mem.slab = raw("slab");
        mem.sock = raw("sock");
        mem.shmem = raw("shmem");
        mem.file_mapped = raw("file_mapped");
        mem.file_dirty = raw("file_dirty");
        mem.file_writeback = raw("file_writeback");
        mem.inactive_anon = raw("inactive_anon");
        mem.active_anon = raw("active_anon");
        mem.inactive_file = raw("inactive_file");
        mem.active_file = raw("active_file");
        mem.unevictable = raw("unevictable");
        mem.pgfault = raw("pgfault");
        mem.pgmajfault = raw("pgmajfault");
        m.memory = MessageField::some(mem);
        let mut ev = v2::MemoryEvents::new();
        ev.oom = s.memory.events.oom;
        ev.oom_kill = s.memory.events.oom_kill;
        ev.max = s.memory.failcnt;
        m.memory_events = MessageField::some(ev);
        m.hugetlb = s
            .hugetlb
            .iter()
            .map(|(size, h)| {
                let mut e = v2::HugeTlbStat::new();
                e.current = h.usage;
                e.max = h.max_usage;
                e.pagesize = size.clone();
                e
            })
            .collect();
        let mut io = v2::IOStat::new();
        let mut by_dev: std::collections::BTreeMap<(u64, u64), v2::IOEntry> = Default::default();
        for (list, ops) in [(&s.blkio.service_bytes, true), (&s.blkio.serviced, false)] {
            for e in list.iter() {
                let entry = by_dev.entry((e.major, e.minor)).or_insert_with(|| {
                    let mut x = v2::IOEntry::new();
                    x.major = e.major;
                    x.minor = e.minor;
                    x
                });
                match (e.op.as_str(), ops) {
                    ("Read", true) => entry.rbytes = e.value,
                    ("Write", true) => entry.wbytes = e.value,
                    ("Read", false) => entry.rios = e.value,
                    ("Write", false) => entry.wios = e.value,
                    _ => {}
                }
            }
        }
        io.usage = by_dev.into_values().collect();
        m.io = MessageField::some(io);
        return any("io.containerd.cgroups.v2.Metrics", &m);
    }
    let mut m = v1::Metrics::new();
    let mut pids = v1::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = pids_limit(s);
    m.pids = MessageField::some(pids);
    let mut usage = v1::CPUUsage::new();
    usage.total = s.cpu.usage_total_ns;
    usage.user = s.cpu.usage_user_ns;
    usage.kernel = s.cpu.usage_kernel_ns;
    usage.per_cpu = s.cpu.per_cpu_ns.clone();
    let mut thr = v1::Throttle::new();
    thr.periods = s.cpu.periods;
    thr.throttled_periods = s.cpu.throttled_periods;
    thr.throttled_time = s.cpu.throttled_time_ns;
    let mut cpu = v1::CPUStat::new();
    cpu.usage = MessageField::some(usage);
    cpu.throttling = MessageField::some(thr);
    m.cpu = MessageField::some(cpu);
    let raw = |k: &str| s.memory.raw.get(k).copied().unwrap_or(0);
    let mut mem = v1::MemoryStat::new();
    mem.cache = raw("cache");
    mem.rss = raw("rss");
    mem.rss_huge = raw("rss_huge");
    mem.mapped_file = raw("mapped_file");
    mem.dirty = raw("dirty");
    mem.writeback = raw("writeback");
    mem.pg_pg_in = raw("pgpgin");
    mem.pg_pg_out = raw("pgpgout");
    mem.pg_fault = raw("pgfault");
    mem.pg_maj_fault = raw("pgmajfault");
    mem.inactive_anon = raw("inactive_anon");
    mem.active_anon = raw("active_anon");
    mem.inactive_file = raw("inactive_file");
    mem.active_file = raw("active_file");
    mem.unevictable = raw("unevictable");
    mem.hierarchical_memory_limit = raw("hierarchical_memory_limit");
    mem.hierarchical_swap_limit = raw("hierarchical_memsw_limit");
    mem.total_cache = raw("total_cache");
    mem.total_rss = raw("total_rss");
    mem.total_rss_huge = raw("total_rss_huge");
    mem.total_mapped_file = raw("total_mapped_file");
    mem.total_dirty = raw("total_dirty");
    mem.total_writeback = raw("total_writeback");
    mem.total_pg_pg_in = raw("total_pgpgin");
    mem.total_pg_pg_out = raw("total_pgpgout");
    mem.total_pg_fault = raw("total_pgfault");
    mem.total_pg_maj_fault = raw("total_pgmajfault");
    mem.total_inactive_anon = raw("total_inactive_anon");
    mem.total_active_anon = raw("total_active_anon");
    mem.total_inactive_file = raw("total_inactive_file");
    mem.total_active_file = raw("total_active_file");
    mem.total_unevictable = raw("total_unevictable");
    let entry = |usage: u64, max: u64, limit: u64, failcnt: u64| {
        let mut e = v1::MemoryEntry::new();
        e.usage = usage;
        e.max = max;
        e.limit = limit;
        e.failcnt = failcnt;
        MessageField::some(e)
    };
    mem.usage = entry(
        s.memory.usage,
        s.memory.max_usage,
        s.memory.limit,
        s.memory.failcnt,
    );
    mem.swap = entry(s.memory.swap_usage, 0, s.memory.swap_limit, 0);
    mem.kernel = entry(s.memory.kernel_usage, 0, 0, 0);
    m.memory = MessageField::some(mem);
    let mut oom = v1::MemoryOomControl::new();
    oom.oom_kill = s.memory.events.oom_kill;
    m.memory_oom_control = MessageField::some(oom);
    m.hugetlb = s
        .hugetlb
        .iter()
        .map(|(size, h)| {
            let mut e = v1::HugetlbStat::new();
            e.usage = h.usage;
            e.max = h.max_usage;
            e.failcnt = h.failcnt;
            e.pagesize = size.clone();
            e
        })
        .collect();
    let blk = |list: &[berth_runtime_core::berth_cgroups::BlkioEntry]| {
        list.iter()
            .map(|e| {
                let mut x = v1::BlkIOEntry::new();
                x.major = e.major;
                x.minor = e.minor;
                x.op = e.op.clone();
                x.value = e.value;
                x
            })
            .collect()
    };
    let mut b = v1::BlkIOStat::new();
    b.io_service_bytes_recursive = blk(&s.blkio.service_bytes);
    b.io_serviced_recursive = blk(&s.blkio.serviced);
    m.blkio = MessageField::some(b);
    any("io.containerd.cgroups.v1.Metrics", &m)
}

fn exit_parts(
    e: &ExitInfo,
) -> (
    u32,
    u32,
    MessageField<containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp>,
) {
    (
        e.pid.max(0) as u32,
        e.status,
        MessageField::some(timestamp(e.at)),
    )
}

impl containerd_shim_protos::Task for Service {
    fn state(&self, _: &TtrpcContext, req: api::StateRequest) -> ttrpc::Result<api::StateResponse> {
        let _busy = self.quiet.busy();
        let s = self
            .tasks
            .state(&req.id, exec_id(&req.exec_id))
            .map_err(rpc)?;
        let mut r = api::StateResponse::new();
        r.id = req.id;
        r.exec_id = req.exec_id;
        r.bundle = s.bundle.display().to_string();
        r.pid = s.pid.max(0) as u32;
        r.status = EnumOrUnknown::new(pb_status(s.status));
        r.stdin = s.stdin;
        r.stdout = s.stdout;
        r.stderr = s.stderr;
        r.terminal = s.terminal;
        if let Some(e) = s.exit {
            r.exit_status = e.status;
            r.exited_at = MessageField::some(timestamp(e.at));
        }
        Ok(r)
    }

    fn create(
        &self,
        _: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> ttrpc::Result<api::CreateTaskResponse> {
        let _busy = self.quiet.busy();
        if !req.checkpoint.is_empty() || !req.parent_checkpoint.is_empty() {
            return Err(status(
                Code::UNIMPLEMENTED,
                "restoring a checkpoint is not implemented",
            ));
        }
        let opts = runc_options(&req.options)?;
        let mut t = CreateTask::new(req.id, req.bundle);
        t.rootfs = req
            .rootfs
            .iter()
            .map(|m| Mount::new(m.type_.clone(), m.source.clone(), m.options.clone()))
            .collect();
        t.terminal = req.terminal;
        t.stdin = req.stdin;
        t.stdout = req.stdout;
        t.stderr = req.stderr;
        if let Some(o) = opts {
            t.no_pivot = o.no_pivot_root;
            t.no_new_keyring = o.no_new_keyring;
        }
        let pid = self.tasks.create(t).map_err(rpc)?;
        let mut r = api::CreateTaskResponse::new();
        r.pid = pid.max(0) as u32;
        Ok(r)
    }

    fn start(&self, _: &TtrpcContext, req: api::StartRequest) -> ttrpc::Result<api::StartResponse> {
        let _busy = self.quiet.busy();
        let pid = self
            .tasks
            .start(&req.id, exec_id(&req.exec_id))
            .map_err(rpc)?;
        let mut r = api::StartResponse::new();
        r.pid = pid.max(0) as u32;
        Ok(r)
    }

    fn delete(
        &self,
        _: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> ttrpc::Result<api::DeleteResponse> {
        let _busy = self.quiet.busy();
        let e = self
            .tasks
            .delete(&req.id, exec_id(&req.exec_id))
            .map_err(rpc)?;
        let mut r = api::DeleteResponse::new();
        (r.pid, r.exit_status, r.exited_at) = exit_parts(&e);
        Ok(r)
    }

    fn pids(&self, _: &TtrpcContext, req: api::PidsRequest) -> ttrpc::Result<api::PidsResponse> {
        let _busy = self.quiet.busy();
        let pids = self.tasks.pids(&req.id).map_err(rpc)?;
        let mut r = api::PidsResponse::new();
        r.processes = pids
            .into_iter()
            .map(|(pid, exec)| {
                let mut p = ProcessInfo::new();
                p.pid = pid.max(0) as u32;
                if let Some(exec_id) = exec {
                    let mut d = ProcessDetails::new();
                    d.exec_id = exec_id;
                    p.info = MessageField::some(any("containerd.runc.v1.ProcessDetails", &d));
                }
                p
            })
            .collect();
        Ok(r)
    }

    fn pause(&self, _: &TtrpcContext, req: api::PauseRequest) -> ttrpc::Result<api::Empty> {
        let _busy = self.quiet.busy();
        self.tasks.pause(&req.id).map_err(rpc)?;
        Ok(api::Empty::new())
    }

    fn resume(&self, _: &TtrpcContext, req: api::ResumeRequest) -> ttrpc::Result<api::Empty> {
        let _busy = self.quiet.busy();
        self.tasks.resume(&req.id).map_err(rpc)?;
        Ok(api::Empty::new())
    }

    fn checkpoint(
        &self,
        _: &TtrpcContext,
        _: api::CheckpointTaskRequest,
    ) -> ttrpc::Result<api::Empty> {
        let _busy = self.quiet.busy();
        Err(status(
            Code::UNIMPLEMENTED,
            "checkpoint is not implemented (criu can't checkpoint on this kernel)",
        ))
    }

    fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> ttrpc::Result<api::Empty> {
        let _busy = self.quiet.busy();
        let sig = i32::try_from(req.signal).map_err(|_| {
            status(
                Code::INVALID_ARGUMENT,
                format!("invalid signal {}", req.signal),
            )
        })?;
        self.tasks
            .kill(&req.id, exec_id(&req.exec_id), sig, req.all)
            .map_err(rpc)?;
        Ok(api::Empty::new())
    }

    fn exec(&self, _: &TtrpcContext, req: api::ExecProcessRequest) -> ttrpc::Result<api::Empty> {
        let _busy = self.quiet.busy();
        if req.exec_id.is_empty() {
            return Err(status(Code::INVALID_ARGUMENT, "exec_id is required"));
        }
        let process: Process = json_any(&req.spec, "exec spec")?;
        self.tasks
            .exec(
                &req.id,
                &req.exec_id,
                process,
                req.terminal,
                [req.stdin, req.stdout, req.stderr],
            )
            .map_err(rpc)?;
        Ok(api::Empty::new())
    }

    fn resize_pty(
        &self,
        _: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> ttrpc::Result<api::Empty> {
        let _busy = self.quiet.busy();
        let w = u16::try_from(req.width).unwrap_or(u16::MAX);
        let h = u16::try_from(req.height).unwrap_or(u16::MAX);
        self.tasks
            .resize_pty(&req.id, exec_id(&req.exec_id), w, h)
            .map_err(rpc)?;
        Ok(api::Empty::new())
    }

    fn close_io(&self, _: &TtrpcContext, req: api::CloseIORequest) -> ttrpc::Result<api::Empty> {
        let _busy = self.quiet.busy();
        if req.stdin {
            self.tasks
                .close_stdin(&req.id, exec_id(&req.exec_id))
                .map_err(rpc)?;
        }
        Ok(api::Empty::new())
    }

    /// Update; with the annotation [`REOPEN_LOG`] (berth's extension for a CRI manager's
    /// ReopenContainerLog) and no resources, reopens the init's `crilog://` log files
    /// instead and does nothing else.
    fn update(&self, _: &TtrpcContext, req: api::UpdateTaskRequest) -> ttrpc::Result<api::Empty> {
        let _busy = self.quiet.busy();
        if req.annotations.contains_key(REOPEN_LOG) {
            if req.resources.as_ref().is_some_and(|a| !a.value.is_empty()) {
                return Err(status(
                    Code::INVALID_ARGUMENT,
                    format!("{REOPEN_LOG}: an update that reopens the log has no resources"),
                ));
            }
            self.tasks.reopen_log(&req.id).map_err(rpc)?;
            return Ok(api::Empty::new());
        }
        let r: LinuxResources = json_any(&req.resources, "resources")?;
        self.tasks.update(&req.id, &r).map_err(rpc)?;
        Ok(api::Empty::new())
    }

    fn wait(&self, _: &TtrpcContext, req: api::WaitRequest) -> ttrpc::Result<api::WaitResponse> {
        let _busy = self.quiet.busy();
        let e = self
            .tasks
            .wait(&req.id, exec_id(&req.exec_id))
            .map_err(rpc)?;
        let mut r = api::WaitResponse::new();
        r.exit_status = e.status;
        r.exited_at = MessageField::some(timestamp(e.at));
        Ok(r)
    }

    fn stats(&self, _: &TtrpcContext, req: api::StatsRequest) -> ttrpc::Result<api::StatsResponse> {
        let _busy = self.quiet.busy();
        let s = self.tasks.stats(&req.id).map_err(rpc)?;
        let mut r = api::StatsResponse::new();
        r.stats = MessageField::some(metrics(&s));
        Ok(r)
    }

    fn connect(
        &self,
        _: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> ttrpc::Result<api::ConnectResponse> {
        let _busy = self.quiet.busy();
        let mut r = api::ConnectResponse::new();
        r.shim_pid = std::process::id();
        r.task_pid = self.tasks.init_pid(&req.id).max(0) as u32;
        r.version = env!("CARGO_PKG_VERSION").to_owned();
        Ok(r)
    }

    fn shutdown(&self, _: &TtrpcContext, _: api::ShutdownRequest) -> ttrpc::Result<api::Empty> {
        let _busy = self.quiet.busy();
        // A shim serving a pod stays while any container of it is left.
        if self.tasks.is_empty() {
            let _ = self.shutdown.send(());
        }
        Ok(api::Empty::new())
    }
}
