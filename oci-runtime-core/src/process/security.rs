//! Process attributes the kernel keeps per task and the LSM labels of the container process:
//! `linux.personality`, `process.ioPriority`, `process.scheduler`, `process.apparmorProfile`,
//! `process.selinuxLabel` and `linux.mountLabel`.
//!
//! Everything is validated and turned into plain values by [`SecurityPlan::prepare`] in the
//! parent; the init (fragile child, docs/DESIGN.md) then only makes raw syscalls on them:
//!
//! - [`SecurityPlan::apply_process_attrs`], while the init is still privileged (raising the I/O
//!   class to real time or the scheduler to SCHED_FIFO/RR needs CAP_SYS_NICE/CAP_SYS_ADMIN):
//!   `personality(2)`, `ioprio_set(IOPRIO_WHO_PROCESS, 0, ..)`, `sched_setattr(0, .., 0)`.
//!   All three survive `execve`.
//! - [`SecurityPlan::apply_exec_labels`], right before `execve`, with the container's /proc:
//!   the AppArmor profile (`exec <profile>` to `attr/apparmor/exec`, or the older `attr/exec`) or
//!   the SELinux label (to `attr/exec`) the kernel switches to at the next `execve`. The
//!   attribute file is opened from the procfs root without crossing a mount point (a bind mount
//!   over it, even of another procfs file, fails with EXDEV) and checked to be on procfs before
//!   anything is written to it.
//!
//! Host support is checked at prepare time: a profile or label the host cannot apply is a
//! config error (`process.apparmorProfile AppArmor is not enabled on this host`), never a
//! silently unconfined container.
//!
//! Facts worth knowing when using these fields:
//! - SCHED_FIFO and SCHED_RR on a kernel with real-time group scheduling (cgroup v1 `cpu`
//!   hierarchy with `cpu.rt_runtime_us`) fail with EPERM unless the container's cgroup was given
//!   real-time runtime (`linux.resources.cpu.realtimeRuntime`).
//! - A SCHED_DEADLINE task cannot `fork` (EAGAIN) unless `SCHED_FLAG_RESET_ON_FORK` is set.
//! - SCHED_ISO was reserved in the kernel headers but never implemented: it is rejected.
//! - `SCHED_FLAG_UTIL_CLAMP_MIN`/`MAX` need utilization values the runtime spec has no field
//!   for: they are rejected rather than applied with made-up values.

use std::ffi::{CStr, CString};
use std::path::Path;

use oci_spec::runtime::{
    IOPriorityClass, Linux, LinuxPersonalityDomain, LinuxSchedulerFlag, LinuxSchedulerPolicy,
    Process, Scheduler,
};

use berth_rootfs::{ProcRoot, ProcStage};

use crate::child::init::{InitError, InitStep};
use crate::child::sys;
use crate::config::validate::ConfigError;

/// `PER_LINUX` and `PER_LINUX32` of `<linux/personality.h>`.
const PER_LINUX: libc::c_ulong = 0x0000;
const PER_LINUX32: libc::c_ulong = 0x0008;

/// `<linux/ioprio.h>`.
const IOPRIO_CLASS_SHIFT: u32 = 13;
const IOPRIO_CLASS_RT: u32 = 1;
const IOPRIO_CLASS_BE: u32 = 2;
const IOPRIO_CLASS_IDLE: u32 = 3;
const IOPRIO_WHO_PROCESS: libc::c_int = 1;

/// Scheduling policies of `<linux/sched.h>`.
const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;
const SCHED_RR: u32 = 2;
const SCHED_BATCH: u32 = 3;
const SCHED_IDLE: u32 = 5;
const SCHED_DEADLINE: u32 = 6;

/// `sched_attr.sched_flags` bits of `<linux/sched.h>`.
const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;
const SCHED_FLAG_RECLAIM: u64 = 0x02;
const SCHED_FLAG_DL_OVERRUN: u64 = 0x04;
const SCHED_FLAG_KEEP_POLICY: u64 = 0x08;
const SCHED_FLAG_KEEP_PARAMS: u64 = 0x10;

/// The smallest SCHED_DEADLINE runtime the kernel accepts (2^DL_SCALE ns).
const DL_MIN_RUNTIME_NS: u64 = 1 << 10;

/// `SELINUX_MAGIC` of `<linux/magic.h>`.
const SELINUX_MAGIC: libc::__fsword_t = 0xf97c_ff8c;

/// `struct sched_attr` of `sched_setattr(2)`, in its first version (`SCHED_ATTR_SIZE_VER0`,
/// 48 bytes: without the utilization clamps, which the runtime spec cannot express).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SchedAttr {
    pub size: u32,
    pub sched_policy: u32,
    pub sched_flags: u64,
    pub sched_nice: i32,
    pub sched_priority: u32,
    pub sched_runtime: u64,
    pub sched_deadline: u64,
    pub sched_period: u64,
}

const SCHED_ATTR_SIZE_VER0: u32 = 48;
const _: () = assert!(std::mem::size_of::<SchedAttr>() == SCHED_ATTR_SIZE_VER0 as usize);

/// Which LSMs the host can apply labels for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HostLsm {
    /// AppArmor is enabled (`/sys/module/apparmor/parameters/enabled` is `Y`) and securityfs
    /// is mounted (`/sys/kernel/security/apparmor`).
    pub apparmor: bool,
    /// selinuxfs is mounted on `/sys/fs/selinux` and has an `enforce` file.
    pub selinux: bool,
}

impl HostLsm {
    /// Looks at the host (cheap: a few stat/read calls).
    pub(crate) fn detect() -> Self {
        Self::detect_at(Path::new("/"))
    }

    /// As [`HostLsm::detect`] with `/sys` found under `root` (tests use a fake tree; the
    /// selinuxfs check then only looks for the files).
    fn detect_at(root: &Path) -> Self {
        let apparmor = std::fs::read_to_string(root.join("sys/module/apparmor/parameters/enabled"))
            .is_ok_and(|v| v.trim() == "Y")
            && root.join("sys/kernel/security/apparmor").is_dir();
        let selinuxfs = root.join("sys/fs/selinux");
        let is_selinuxfs = if root == Path::new("/") {
            nix::sys::statfs::statfs(&selinuxfs)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::FsType(SELINUX_MAGIC))
        } else {
            selinuxfs.is_dir()
        };
        let selinux = is_selinuxfs && selinuxfs.join("enforce").exists();
        HostLsm { apparmor, selinux }
    }
}

/// The label written to `/proc/thread-self/attr/...` before `execve`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ExecLabel {
    /// `exec <profile>`.
    AppArmor(CString),
    /// The SELinux context.
    SELinux(CString),
}

/// Personality, I/O priority, scheduler and LSM labels of the container process, prepared in
/// the parent (see the module documentation).
#[derive(Debug, Clone, Default)]
pub(crate) struct SecurityPlan {
    personality: Option<libc::c_ulong>,
    ioprio: Option<libc::c_int>,
    sched: Option<SchedAttr>,
    exec_label: Option<ExecLabel>,
    mount_label: Option<String>,
    /// linux.mountLabel was set on a host without SELinux and left off the mounts.
    mount_label_dropped: bool,
}

/// A non-empty string field, `None` when absent or empty (the spec's "not set").
fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

impl SecurityPlan {
    /// Validates and prepares the fields from the spec's process and linux sections, checking
    /// that the host can apply the requested LSM profile and labels.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field: an unsupported personality flag, an I/O priority
    /// out of 0..7, scheduler parameters the policy does not take or the kernel would reject,
    /// SCHED_ISO, a NUL byte in a label, or an AppArmor profile or SELinux label on a host
    /// without that LSM.
    pub(crate) fn prepare(process: &Process, linux: &Linux) -> Result<Self, ConfigError> {
        let wants_label = set(process.apparmor_profile()).is_some()
            || set(process.selinux_label()).is_some()
            || set(linux.mount_label()).is_some();
        let host = if wants_label {
            HostLsm::detect()
        } else {
            HostLsm::default()
        };
        Self::prepare_with(process, linux, host)
    }

    /// As [`SecurityPlan::prepare`] against the given host support.
    pub(crate) fn prepare_with(
        process: &Process,
        linux: &Linux,
        host: HostLsm,
    ) -> Result<Self, ConfigError> {
        let mut plan = SecurityPlan::default();
        if let Some(p) = linux.personality() {
            if let Some(flag) = p.flags().iter().flatten().next() {
                return Err(ConfigError::new(
                    "linux.personality.flags",
                    format!(
                        "{flag:?} is not supported (the runtime spec defines no personality flags)"
                    ),
                ));
            }
            plan.personality = Some(match p.domain() {
                LinuxPersonalityDomain::PerLinux => PER_LINUX,
                LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
            });
        }
        if let Some(io) = process.io_priority() {
            let class = match io.class() {
                IOPriorityClass::IoprioClassRt => IOPRIO_CLASS_RT,
                IOPriorityClass::IoprioClassBe => IOPRIO_CLASS_BE,
                IOPriorityClass::IoprioClassIdle => IOPRIO_CLASS_IDLE,
            };
            let level = io.priority();
            if !(0..=7).contains(&level) {
                return Err(ConfigError::new(
                    "process.ioPriority.priority",
                    format!("must be between 0 (highest) and 7 (lowest), not {level}"),
                ));
            }
            plan.ioprio = Some(((class << IOPRIO_CLASS_SHIFT) | level as u32) as libc::c_int);
        }
        if let Some(s) = process.scheduler() {
            plan.sched = Some(sched_attr(s)?);
        }
        if let Some(profile) = set(process.apparmor_profile()) {
            if !host.apparmor {
                return Err(ConfigError::new(
                    "process.apparmorProfile",
                    "AppArmor is not enabled on this host",
                ));
            }
            if profile.contains('\n') {
                return Err(ConfigError::new(
                    "process.apparmorProfile",
                    "contains a newline",
                ));
            }
            let v = CString::new(format!("exec {profile}"))
                .map_err(|_| ConfigError::new("process.apparmorProfile", "contains a NUL byte"))?;
            plan.exec_label = Some(ExecLabel::AppArmor(v));
        }
        if let Some(label) = set(process.selinux_label()) {
            if !host.selinux {
                return Err(ConfigError::new(
                    "process.selinuxLabel",
                    "SELinux is not enabled on this host",
                ));
            }
            if plan.exec_label.is_some() {
                return Err(ConfigError::new(
                    "process.selinuxLabel",
                    "cannot be applied together with process.apparmorProfile (one LSM owns attr/exec)",
                ));
            }
            let v = CString::new(label)
                .map_err(|_| ConfigError::new("process.selinuxLabel", "contains a NUL byte"))?;
            plan.exec_label = Some(ExecLabel::SELinux(v));
        }
        if let Some(label) = set(linux.mount_label()) {
            if !host.selinux {
                // A file context means nothing where no SELinux labels files, and the
                // kernel refuses `context=` there: left off with a warning (as crun does;
                // runc fails the mount with EINVAL). An exec label, which would confine the
                // process, is an error instead.
                plan.mount_label_dropped = true;
                return Ok(plan);
            }
            if label.contains(['\0', '"']) {
                return Err(ConfigError::new(
                    "linux.mountLabel",
                    "contains a NUL byte or a double quote",
                ));
            }
            plan.mount_label = Some(label.to_owned());
        }
        Ok(plan)
    }

    /// Whether none of the fields the init applies is set.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.personality.is_none()
            && self.ioprio.is_none()
            && self.sched.is_none()
            && self.exec_label.is_none()
    }

    /// Whether `linux.mountLabel` was left off because the host has no SELinux.
    pub(crate) fn mount_label_dropped(&self) -> bool {
        self.mount_label_dropped
    }

    /// The SELinux context for the container's mounts (`linux.mountLabel`).
    pub(crate) fn mount_label(&self) -> Option<&str> {
        self.mount_label.as_deref()
    }

    /// The mount data option carrying [`SecurityPlan::mount_label`]: `context="<label>"`, for
    /// the file systems that take it (tmpfs, mqueue, devpts, ...).
    pub(crate) fn mount_context_option(&self) -> Option<String> {
        self.mount_label().map(|l| format!("context=\"{l}\""))
    }

    /// # Fragile child
    /// `personality(2)`, `ioprio_set(IOPRIO_WHO_PROCESS, 0, ..)` and `sched_setattr(0, .., 0)`,
    /// in that order. Call before the credentials change: an RT I/O class and RT or deadline
    /// scheduling need privilege.
    pub(crate) fn apply_process_attrs(&self) -> Result<(), InitError> {
        if let Some(p) = self.personality {
            // SAFETY: personality takes an integer; -1 means failure.
            if unsafe { libc::syscall(libc::SYS_personality, p) } < 0 {
                return Err(InitError::new(
                    InitStep::Personality,
                    p as u32,
                    sys::errno(),
                ));
            }
        }
        if let Some(v) = self.ioprio {
            // SAFETY: integer arguments only.
            let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, v) };
            if r < 0 {
                return Err(InitError::new(
                    InitStep::IoPriority,
                    v as u32 >> IOPRIO_CLASS_SHIFT,
                    sys::errno(),
                ));
            }
        }
        if let Some(attr) = &self.sched {
            // SAFETY: attr is a valid sched_attr whose size field matches its layout; the
            // kernel only reads it.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_sched_setattr,
                    0,
                    attr as *const SchedAttr,
                    0 as libc::c_uint,
                )
            };
            if r < 0 {
                return Err(InitError::new(
                    InitStep::Scheduler,
                    attr.sched_policy,
                    sys::errno(),
                ));
            }
        }
        Ok(())
    }

    /// # Fragile child
    /// Sets the AppArmor profile or SELinux label the kernel applies at the next `execve`.
    /// Call right before `execve`, after pivot_root, with the container's /proc mounted.
    pub(crate) fn apply_exec_labels(&self) -> Result<(), InitError> {
        let Some(label) = &self.exec_label else {
            return Ok(());
        };
        let (lsm, value) = match label {
            ExecLabel::AppArmor(v) => (LSM_APPARMOR, v),
            ExecLabel::SELinux(v) => (LSM_SELINUX, v),
        };
        let err = |stage: u32, e: i32| InitError::new(InitStep::ExecLabel, stage | lsm, e);
        let proc_root = open_proc_root(c"/proc").map_err(|(stage, e)| err(stage, e))?;
        let r = if lsm == LSM_APPARMOR {
            // AppArmor's own directory (kernels with LSM stacking), else the shared file.
            match write_proc_attr(
                &proc_root,
                c"thread-self/attr/apparmor/exec",
                value.to_bytes(),
            ) {
                Err((STAGE_OPEN_ATTR, libc::ENOENT)) => {
                    write_proc_attr(&proc_root, c"thread-self/attr/exec", value.to_bytes())
                }
                r => r,
            }
        } else {
            write_proc_attr(&proc_root, c"thread-self/attr/exec", value.to_bytes())
        };
        r.map_err(|(stage, e)| err(stage, e))
    }
}

/// Converts and validates `process.scheduler` (the rules runc and the kernel apply).
fn sched_attr(s: &Scheduler) -> Result<SchedAttr, ConfigError> {
    let field = |f: &str| format!("process.scheduler.{f}");
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => SCHED_OTHER,
        LinuxSchedulerPolicy::SchedFifo => SCHED_FIFO,
        LinuxSchedulerPolicy::SchedRr => SCHED_RR,
        LinuxSchedulerPolicy::SchedBatch => SCHED_BATCH,
        LinuxSchedulerPolicy::SchedIdle => SCHED_IDLE,
        LinuxSchedulerPolicy::SchedDeadline => SCHED_DEADLINE,
        LinuxSchedulerPolicy::SchedIso => {
            return Err(ConfigError::new(
                field("policy"),
                "SCHED_ISO is not supported: Linux reserves the number but never implemented it",
            ));
        }
    };
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(ConfigError::new(
            field("nice"),
            format!("must be between -20 and 19, not {nice}"),
        ));
    }
    let priority = s.priority().unwrap_or(0);
    if matches!(policy, SCHED_FIFO | SCHED_RR) {
        if !(1..=99).contains(&priority) {
            return Err(ConfigError::new(
                field("priority"),
                format!(
                    "must be between 1 and 99 for {}, not {priority}",
                    s.policy()
                ),
            ));
        }
    } else if priority != 0 {
        return Err(ConfigError::new(
            field("priority"),
            "can only be set for SCHED_FIFO and SCHED_RR",
        ));
    }
    let runtime = s.runtime().unwrap_or(0);
    let deadline = s.deadline().unwrap_or(0);
    let period = s.period().unwrap_or(0);
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSchedulerFlag::SchedResetOnFork => SCHED_FLAG_RESET_ON_FORK,
            LinuxSchedulerFlag::SchedFlagReclaim => SCHED_FLAG_RECLAIM,
            LinuxSchedulerFlag::SchedFlagDLOverrun => SCHED_FLAG_DL_OVERRUN,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => SCHED_FLAG_KEEP_POLICY,
            LinuxSchedulerFlag::SchedFlagKeepParams => SCHED_FLAG_KEEP_PARAMS,
            LinuxSchedulerFlag::SchedFlagUtilClampMin
            | LinuxSchedulerFlag::SchedFlagUtilClampMax => {
                return Err(ConfigError::new(
                    field("flags"),
                    format!(
                        "{f} is not supported: it needs a utilization value the runtime spec has no field for"
                    ),
                ));
            }
        };
    }
    if policy == SCHED_DEADLINE {
        if runtime < DL_MIN_RUNTIME_NS {
            return Err(ConfigError::new(
                field("runtime"),
                format!(
                    "must be at least {DL_MIN_RUNTIME_NS} ns for SCHED_DEADLINE, not {runtime}"
                ),
            ));
        }
        if deadline < runtime {
            return Err(ConfigError::new(
                field("deadline"),
                format!("must not be smaller than runtime ({runtime}), not {deadline}"),
            ));
        }
        if period != 0 && period < deadline {
            return Err(ConfigError::new(
                field("period"),
                format!("must be 0 or not smaller than deadline ({deadline}), not {period}"),
            ));
        }
        if deadline >= 1 << 63 || period >= 1 << 63 {
            return Err(ConfigError::new(
                field("deadline"),
                "and period must be below 2^63 ns",
            ));
        }
    } else {
        if runtime != 0 || deadline != 0 || period != 0 {
            return Err(ConfigError::new(
                field("runtime"),
                "deadline and period can only be set for SCHED_DEADLINE",
            ));
        }
        if flags & (SCHED_FLAG_RECLAIM | SCHED_FLAG_DL_OVERRUN) != 0 {
            return Err(ConfigError::new(
                field("flags"),
                "SCHED_FLAG_RECLAIM and SCHED_FLAG_DL_OVERRUN only apply to SCHED_DEADLINE",
            ));
        }
    }
    Ok(SchedAttr {
        size: SCHED_ATTR_SIZE_VER0,
        sched_policy: policy,
        sched_flags: flags,
        sched_nice: nice,
        sched_priority: priority as u32,
        sched_runtime: runtime,
        sched_deadline: deadline,
        sched_period: period,
    })
}

/// What an `InitStep::Scheduler` failure (index: the policy number) was doing, with the
/// usual cause of EPERM for real-time policies.
pub(crate) fn describe_sched_failure(policy: u32, errno: i32) -> String {
    let name = match policy {
        SCHED_OTHER => "SCHED_OTHER",
        SCHED_FIFO => "SCHED_FIFO",
        SCHED_RR => "SCHED_RR",
        SCHED_BATCH => "SCHED_BATCH",
        SCHED_IDLE => "SCHED_IDLE",
        SCHED_DEADLINE => "SCHED_DEADLINE",
        _ => "unknown policy",
    };
    let hint = if errno == libc::EPERM && matches!(policy, SCHED_FIFO | SCHED_RR) {
        " (the container's cgroup has no real-time runtime: set linux.resources.cpu.realtimeRuntime)"
    } else if errno == libc::EBUSY && policy == SCHED_DEADLINE {
        " (deadline bandwidth admission control refused it)"
    } else {
        ""
    };
    format!("sched_setattr({name}) for process.scheduler{hint}")
}

// `InitStep::ExecLabel` failures: the index is a stage ORed with the LSM bit.
const LSM_APPARMOR: u32 = 0;
const LSM_SELINUX: u32 = 1;
const STAGE_OPEN_PROC: u32 = 0 << 1;
const STAGE_NOT_PROC_ROOT: u32 = 1 << 1;
const STAGE_OPEN_ATTR: u32 = 2 << 1;
const STAGE_ATTR_NOT_PROC: u32 = 3 << 1;
const STAGE_WRITE: u32 = 4 << 1;

/// What an `InitStep::ExecLabel` failure with this index was doing (for the parent's error).
pub(crate) fn describe_exec_label_failure(index: u32) -> String {
    let field = if index & 1 == LSM_SELINUX {
        "process.selinuxLabel"
    } else {
        "process.apparmorProfile"
    };
    let what = match index & !1 {
        STAGE_OPEN_PROC => "open the container's /proc",
        STAGE_NOT_PROC_ROOT => "check /proc: it is not the root of a procfs mount",
        STAGE_OPEN_ATTR => "open /proc/thread-self/attr/exec (without crossing a mount point)",
        STAGE_ATTR_NOT_PROC => "check the attr/exec file: it is not on procfs",
        STAGE_WRITE => "write /proc/thread-self/attr/exec",
        _ => "set the exec label",
    };
    format!("apply {field}: {what}")
}

/// # Fragile child
/// [`ProcRoot::open`] of the absolute `path` (no symlink followed), with its failure as
/// `(stage, errno)`.
fn open_proc_root(path: &CStr) -> Result<ProcRoot, (u32, i32)> {
    ProcRoot::open(libc::AT_FDCWD, path, 0).map_err(|e| match e.stage {
        ProcStage::Open => (STAGE_OPEN_PROC, e.errno),
        ProcStage::Check | ProcStage::Write => (STAGE_NOT_PROC_ROOT, e.errno),
    })
}

/// # Fragile child
/// [`ProcRoot::write`] of `value` to `rel`, with its failure as `(stage, errno)`. The path may
/// follow procfs's own symlinks (`thread-self` -> `<pid>/task/<tid>`, on the same mount) but
/// not magic links, may not leave the procfs root nor cross a mount point (a file
/// bind-mounted over the attribute, even from procfs, fails with EXDEV), and the opened file
/// must be on procfs.
fn write_proc_attr(proc_root: &ProcRoot, rel: &CStr, value: &[u8]) -> Result<(), (u32, i32)> {
    proc_root.write(rel, value, 0).map_err(|e| match e.stage {
        ProcStage::Open => (STAGE_OPEN_ATTR, e.errno),
        ProcStage::Check => (STAGE_ATTR_NOT_PROC, e.errno),
        ProcStage::Write => (STAGE_WRITE, e.errno),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBuilder, LinuxIOPriorityBuilder, LinuxPersonalityBuilder, ProcessBuilder,
        SchedulerBuilder,
    };

    fn process() -> Process {
        ProcessBuilder::default()
            .args(vec!["/bin/true".to_string()])
            .build()
            .expect("process")
    }

    fn linux() -> Linux {
        LinuxBuilder::default().build().expect("linux")
    }

    fn with_sched(s: Scheduler) -> Process {
        let mut p = process();
        p.set_scheduler(Some(s));
        p
    }

    fn sched_err(s: Scheduler) -> ConfigError {
        SecurityPlan::prepare_with(&with_sched(s), &linux(), HostLsm::default())
            .expect_err("scheduler should be rejected")
    }

    fn sched(policy: LinuxSchedulerPolicy) -> SchedulerBuilder {
        SchedulerBuilder::default().policy(policy)
    }

    /// A forked child that applies `plan` and then waits to be inspected and killed.
    struct Applied {
        pid: libc::pid_t,
    }

    impl Applied {
        /// Forks, applies the process attributes in the child, and returns once the child
        /// reported the result (`Err(errno)` if applying failed; the child is gone then).
        fn spawn(plan: &SecurityPlan) -> Result<Applied, (InitStep, i32)> {
            let mut fds = [0; 2];
            // SAFETY: fds is a valid array of two ints.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: the child only makes syscalls on prepared data and _exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let msg: [u8; 5] = match plan.apply_process_attrs() {
                    Ok(()) => [0; 5],
                    Err(e) => {
                        let mut m = [e.step as u8, 0, 0, 0, 0];
                        m[1..].copy_from_slice(&e.errno.to_le_bytes());
                        m
                    }
                };
                let _ = sys::write_all(fds[1], &msg);
                if msg[0] != 0 {
                    sys::exit_now(1);
                }
                loop {
                    // SAFETY: pause only waits for a signal (SIGKILL from the parent).
                    unsafe { libc::pause() };
                }
            }
            sys::close(fds[1]);
            let mut msg = [0u8; 5];
            let n = sys::read_once(fds[0], &mut msg).expect("read from child");
            sys::close(fds[0]);
            let applied = Applied { pid };
            assert_eq!(n, 5, "child died before reporting");
            if msg[0] == 0 {
                return Ok(applied);
            }
            let step = match msg[0] {
                s if s == InitStep::Personality as u8 => InitStep::Personality,
                s if s == InitStep::IoPriority as u8 => InitStep::IoPriority,
                _ => InitStep::Scheduler,
            };
            let errno = i32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]);
            drop(applied);
            Err((step, errno))
        }

        fn ioprio(&self) -> i64 {
            // SAFETY: integer arguments only.
            let r = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, self.pid) };
            assert!(r >= 0, "ioprio_get: {}", std::io::Error::last_os_error());
            r
        }

        fn sched(&self) -> SchedAttr {
            let mut a = SchedAttr::default();
            // SAFETY: a is a writable sched_attr of the size passed.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_sched_getattr,
                    self.pid,
                    &mut a as *mut SchedAttr,
                    SCHED_ATTR_SIZE_VER0,
                    0,
                )
            };
            assert_eq!(r, 0, "sched_getattr: {}", std::io::Error::last_os_error());
            a
        }

        fn personality(&self) -> u64 {
            let s = std::fs::read_to_string(format!("/proc/{}/personality", self.pid))
                .expect("read personality");
            u64::from_str_radix(s.trim(), 16).expect("hex personality")
        }
    }

    impl Drop for Applied {
        fn drop(&mut self) {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }

    #[test]
    fn empty_config_prepares_an_empty_plan() {
        let plan = SecurityPlan::prepare(&process(), &linux()).expect("prepare");
        assert!(plan.is_empty());
        assert_eq!(plan.mount_label(), None);
        assert!(plan.apply_process_attrs().is_ok());
        assert!(plan.apply_exec_labels().is_ok());
    }

    #[test]
    fn personality_linux32_is_applied() {
        let mut l = linux();
        l.set_personality(Some(
            LinuxPersonalityBuilder::default()
                .domain(LinuxPersonalityDomain::PerLinux32)
                .build()
                .expect("personality"),
        ));
        let plan = SecurityPlan::prepare(&process(), &l).expect("prepare");
        assert_eq!(plan.personality, Some(PER_LINUX32));
        let child = Applied::spawn(&plan).expect("apply");
        assert_eq!(child.personality(), 0x0008);
    }

    #[test]
    fn personality_flags_are_rejected() {
        let mut l = linux();
        l.set_personality(Some(
            LinuxPersonalityBuilder::default()
                .domain(LinuxPersonalityDomain::PerLinux)
                .flags(vec!["ADDR_NO_RANDOMIZE".to_string()])
                .build()
                .expect("personality"),
        ));
        let e = SecurityPlan::prepare(&process(), &l).expect_err("flags");
        assert_eq!(e.field, "linux.personality.flags");
        assert!(e.reason.contains("ADDR_NO_RANDOMIZE"), "{e}");
    }

    #[test]
    fn io_priority_classes_are_applied() {
        for (class, num, level) in [
            (IOPriorityClass::IoprioClassBe, IOPRIO_CLASS_BE, 6),
            (IOPriorityClass::IoprioClassRt, IOPRIO_CLASS_RT, 2),
            (IOPriorityClass::IoprioClassIdle, IOPRIO_CLASS_IDLE, 0),
        ] {
            let mut p = process();
            p.set_io_priority(Some(
                LinuxIOPriorityBuilder::default()
                    .class(class)
                    .priority(level)
                    .build()
                    .expect("ioprio"),
            ));
            let plan = SecurityPlan::prepare(&p, &linux()).expect("prepare");
            let child = Applied::spawn(&plan).expect("apply");
            let v = child.ioprio();
            assert_eq!(v >> 13, num as i64, "{class:?}: class of {v:#x}");
            if num != IOPRIO_CLASS_IDLE {
                assert_eq!(v & 0x7, level, "{class:?}: level of {v:#x}");
            }
        }
    }

    #[test]
    fn io_priority_out_of_range_is_rejected() {
        for level in [-1, 8, 100] {
            let mut p = process();
            p.set_io_priority(Some(
                LinuxIOPriorityBuilder::default()
                    .class(IOPriorityClass::IoprioClassBe)
                    .priority(level)
                    .build()
                    .expect("ioprio"),
            ));
            let e = SecurityPlan::prepare(&p, &linux()).expect_err("range");
            assert_eq!(e.field, "process.ioPriority.priority");
            assert!(e.reason.contains(&level.to_string()), "{e}");
        }
    }

    #[test]
    fn scheduler_batch_with_nice_is_applied() {
        let s = sched(LinuxSchedulerPolicy::SchedBatch)
            .nice(7)
            .flags(vec![LinuxSchedulerFlag::SchedResetOnFork])
            .build()
            .expect("sched");
        let plan = SecurityPlan::prepare(&with_sched(s), &linux()).expect("prepare");
        let child = Applied::spawn(&plan).expect("apply");
        let a = child.sched();
        assert_eq!(a.sched_policy, SCHED_BATCH);
        assert_eq!(a.sched_nice, 7);
        assert_eq!(
            a.sched_flags & SCHED_FLAG_RESET_ON_FORK,
            SCHED_FLAG_RESET_ON_FORK
        );
    }

    #[test]
    fn scheduler_idle_is_applied() {
        let s = sched(LinuxSchedulerPolicy::SchedIdle)
            .build()
            .expect("sched");
        let plan = SecurityPlan::prepare(&with_sched(s), &linux()).expect("prepare");
        let child = Applied::spawn(&plan).expect("apply");
        assert_eq!(child.sched().sched_policy, SCHED_IDLE);
    }

    #[test]
    fn scheduler_fifo_and_rr_are_applied() {
        // This test process is in the root of the cpu hierarchy here (real-time runtime
        // available); in a cgroup without cpu.rt_runtime_us the kernel says EPERM.
        for (policy, num, prio) in [
            (LinuxSchedulerPolicy::SchedFifo, SCHED_FIFO, 10),
            (LinuxSchedulerPolicy::SchedRr, SCHED_RR, 3),
        ] {
            let s = sched(policy).priority(prio).build().expect("sched");
            let plan = SecurityPlan::prepare(&with_sched(s), &linux()).expect("prepare");
            match Applied::spawn(&plan) {
                Ok(child) => {
                    let a = child.sched();
                    assert_eq!((a.sched_policy, a.sched_priority), (num, prio as u32));
                }
                Err((step, libc::EPERM)) => {
                    assert_eq!(step, InitStep::Scheduler);
                    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
                    assert!(
                        !cg.lines()
                            .any(|l| l.ends_with(":cpu:/") || l.ends_with(",cpu:/")),
                        "EPERM for {policy:?} although in the root cpu cgroup"
                    );
                }
                Err(e) => panic!("{policy:?}: {e:?}"),
            }
        }
    }

    #[test]
    fn scheduler_deadline_is_applied() {
        let s = sched(LinuxSchedulerPolicy::SchedDeadline)
            .runtime(2_000_000u64)
            .deadline(10_000_000u64)
            .period(100_000_000u64)
            .flags(vec![LinuxSchedulerFlag::SchedResetOnFork])
            .build()
            .expect("sched");
        let plan = SecurityPlan::prepare(&with_sched(s), &linux()).expect("prepare");
        let child = Applied::spawn(&plan).expect("apply");
        let a = child.sched();
        assert_eq!(a.sched_policy, SCHED_DEADLINE);
        assert_eq!(
            (a.sched_runtime, a.sched_deadline, a.sched_period),
            (2_000_000, 10_000_000, 100_000_000)
        );
    }

    #[test]
    fn scheduler_rules() {
        use LinuxSchedulerPolicy::*;
        let cases: Vec<(Scheduler, &str, &str)> = vec![
            (sched(SchedIso).build().unwrap(), "policy", "SCHED_ISO"),
            (sched(SchedOther).nice(20).build().unwrap(), "nice", "20"),
            (sched(SchedOther).nice(-21).build().unwrap(), "nice", "-21"),
            (
                sched(SchedOther).priority(5).build().unwrap(),
                "priority",
                "SCHED_FIFO",
            ),
            (sched(SchedFifo).build().unwrap(), "priority", "not 0"),
            (
                sched(SchedRr).priority(100).build().unwrap(),
                "priority",
                "100",
            ),
            (
                sched(SchedBatch).runtime(5000u64).build().unwrap(),
                "runtime",
                "SCHED_DEADLINE",
            ),
            (
                sched(SchedOther).period(5000u64).build().unwrap(),
                "runtime",
                "SCHED_DEADLINE",
            ),
            (
                sched(SchedOther)
                    .flags(vec![LinuxSchedulerFlag::SchedFlagReclaim])
                    .build()
                    .unwrap(),
                "flags",
                "SCHED_DEADLINE",
            ),
            (
                sched(SchedOther)
                    .flags(vec![LinuxSchedulerFlag::SchedFlagUtilClampMax])
                    .build()
                    .unwrap(),
                "flags",
                "UTIL_CLAMP_MAX",
            ),
            (
                sched(SchedDeadline).deadline(1000u64).build().unwrap(),
                "runtime",
                "1024",
            ),
            (
                sched(SchedDeadline)
                    .runtime(5000u64)
                    .deadline(4000u64)
                    .build()
                    .unwrap(),
                "deadline",
                "4000",
            ),
            (
                sched(SchedDeadline)
                    .runtime(5000u64)
                    .deadline(6000u64)
                    .period(5500u64)
                    .build()
                    .unwrap(),
                "period",
                "5500",
            ),
        ];
        for (s, field, needle) in cases {
            let e = sched_err(s.clone());
            assert_eq!(e.field, format!("process.scheduler.{field}"), "{s:?}: {e}");
            assert!(e.reason.contains(needle), "{s:?}: {e} lacks {needle:?}");
        }
    }

    #[test]
    fn sched_attr_layout_matches_the_kernel() {
        // Reading our own attributes back through the struct proves the layout: a wrong
        // size or field order would fail or garble the values.
        let mut a = SchedAttr::default();
        // SAFETY: a is a writable sched_attr of the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_sched_getattr,
                0,
                &mut a as *mut SchedAttr,
                48u32,
                0,
            )
        };
        assert_eq!(r, 0);
        assert_eq!(a.size, SCHED_ATTR_SIZE_VER0);
        // SAFETY: getpriority(2) with integer arguments.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert_eq!(a.sched_nice, nice);
    }

    fn labelled(
        apparmor: Option<&str>,
        selinux: Option<&str>,
        mount: Option<&str>,
    ) -> (Process, Linux) {
        let mut p = process();
        p.set_apparmor_profile(apparmor.map(str::to_string));
        p.set_selinux_label(selinux.map(str::to_string));
        let mut l = linux();
        l.set_mount_label(mount.map(str::to_string));
        (p, l)
    }

    #[test]
    fn labels_need_the_lsm_on_the_host() {
        let none = HostLsm::default();
        for (a, s, m, field, lsm) in [
            (
                Some("acme"),
                None,
                None,
                "process.apparmorProfile",
                "AppArmor",
            ),
            (
                None,
                Some("system_u:system_r:container_t:s0"),
                None,
                "process.selinuxLabel",
                "SELinux",
            ),
        ] {
            let (p, l) = labelled(a, s, m);
            let e = SecurityPlan::prepare_with(&p, &l, none).expect_err("no lsm");
            assert_eq!(e.field, field);
            assert_eq!(e.reason, format!("{lsm} is not enabled on this host"));
        }
        // A mount label without SELinux is left off, and said so.
        let (p, l) = labelled(
            None,
            None,
            Some("system_u:object_r:container_file_t:s0:c1,c2"),
        );
        let plan = SecurityPlan::prepare_with(&p, &l, none).expect("mount label");
        assert_eq!(plan.mount_label(), None);
        assert!(plan.mount_label_dropped());
        // Empty strings mean "not set".
        let (p, l) = labelled(Some(""), Some(""), Some(""));
        assert!(
            SecurityPlan::prepare_with(&p, &l, none)
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn this_host_has_neither_apparmor_nor_selinux() {
        // The development VM: the real detection must say so (and `prepare` then refuses).
        let host = HostLsm::detect();
        assert_eq!(host, HostLsm::default(), "this test documents the dev VM");
        let (p, l) = labelled(Some("acme"), None, None);
        let e = SecurityPlan::prepare(&p, &l).expect_err("no AppArmor here");
        assert_eq!(
            e.to_string(),
            "process.apparmorProfile AppArmor is not enabled on this host"
        );
    }

    #[test]
    fn host_detection_reads_sysfs() {
        let tmp = crate::test_support::TempDir::new("lsm");
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("sys/module/apparmor/parameters")).unwrap();
        std::fs::write(dir.join("sys/module/apparmor/parameters/enabled"), "Y\n").unwrap();
        assert!(!HostLsm::detect_at(dir).apparmor, "securityfs missing");
        std::fs::create_dir_all(dir.join("sys/kernel/security/apparmor")).unwrap();
        assert!(HostLsm::detect_at(dir).apparmor);
        std::fs::write(dir.join("sys/module/apparmor/parameters/enabled"), "N\n").unwrap();
        assert!(!HostLsm::detect_at(dir).apparmor);
        std::fs::create_dir_all(dir.join("sys/fs/selinux")).unwrap();
        assert!(!HostLsm::detect_at(dir).selinux, "enforce missing");
        std::fs::write(dir.join("sys/fs/selinux/enforce"), "1").unwrap();
        assert!(HostLsm::detect_at(dir).selinux);
    }

    #[test]
    fn labels_prepare_on_a_host_with_the_lsm() {
        let both = HostLsm {
            apparmor: true,
            selinux: true,
        };
        let (p, l) = labelled(Some("acme"), None, Some("system_u:object_r:x_t:s0:c1,c2"));
        let plan = SecurityPlan::prepare_with(&p, &l, both).expect("prepare");
        assert_eq!(
            plan.exec_label,
            Some(ExecLabel::AppArmor(CString::new("exec acme").unwrap()))
        );
        assert_eq!(
            plan.mount_context_option().as_deref(),
            Some("context=\"system_u:object_r:x_t:s0:c1,c2\"")
        );
        let (p, l) = labelled(None, Some("system_u:system_r:c_t:s0"), None);
        let plan = SecurityPlan::prepare_with(&p, &l, both).expect("prepare");
        assert_eq!(
            plan.exec_label,
            Some(ExecLabel::SELinux(
                CString::new("system_u:system_r:c_t:s0").unwrap()
            ))
        );
        for (a, s, m, field) in [
            (Some("a\nb"), None, None, "process.apparmorProfile"),
            (Some("a\0b"), None, None, "process.apparmorProfile"),
            (None, Some("a\0b"), None, "process.selinuxLabel"),
            (Some("a"), Some("b"), None, "process.selinuxLabel"),
            (None, None, Some("a\"b"), "linux.mountLabel"),
        ] {
            let (p, l) = labelled(a, s, m);
            let e = SecurityPlan::prepare_with(&p, &l, both).expect_err("bad label");
            assert_eq!(e.field, field, "{e}");
        }
    }

    /// Runs `f` in a forked child (which may unshare and mount) and returns its exit code.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child runs f, which only makes syscalls, then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            sys::exit_now(f());
        }
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(libc::WIFEXITED(st), "child status {st:#x}");
        libc::WEXITSTATUS(st)
    }

    #[test]
    fn proc_root_must_be_procfs() {
        open_proc_root(c"/proc").expect("/proc is procfs");
        assert_eq!(
            open_proc_root(c"/tmp").map(drop),
            Err((STAGE_NOT_PROC_ROOT, libc::EXDEV))
        );
        // A directory inside procfs is not its root, and a symlink is not followed.
        assert_eq!(
            open_proc_root(c"/proc/1").map(drop),
            Err((STAGE_NOT_PROC_ROOT, libc::EXDEV))
        );
        assert_eq!(
            open_proc_root(c"/proc/self").map(drop).map_err(|e| e.0),
            Err(STAGE_OPEN_PROC)
        );
        assert_eq!(
            open_proc_root(c"/no/such/dir").map(drop).map_err(|e| e.0),
            Err(STAGE_OPEN_PROC)
        );
    }

    #[test]
    fn attr_write_refuses_a_file_mounted_over_it() {
        // The 2025 runc advisories: a procfs file bind-mounted over /proc/self/attr/exec
        // redirects the label write. With RESOLVE_NO_XDEV the open fails instead.
        let code = in_child(|| {
            // SAFETY: mount namespace operations in this forked child only.
            unsafe {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return 10;
                }
                if libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return 11;
                }
                if libc::mount(
                    c"/proc/thread-self/comm".as_ptr(),
                    c"/proc/thread-self/attr/exec".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
                {
                    return 12;
                }
            }
            let Ok(root) = open_proc_root(c"/proc") else {
                return 13;
            };
            let r = write_proc_attr(&root, c"thread-self/attr/exec", b"redirected");
            let mut comm = [0u8; 32];
            let fd = sys::open(c"/proc/thread-self/comm", libc::O_RDONLY, 0).unwrap_or(-1);
            let n = sys::read_once(fd, &mut comm).unwrap_or(0);
            if comm[..n].starts_with(b"redirected") {
                return 14;
            }
            match r {
                Err((STAGE_OPEN_ATTR, libc::EXDEV)) => 0,
                Err(_) => 15,
                Ok(()) => 16,
            }
        });
        assert_eq!(code, 0, "see the return codes in the child");
    }

    #[test]
    fn attr_write_reaches_procfs_without_an_lsm() {
        // No LSM claims attr/exec on this host: the file is found on procfs and the kernel
        // refuses the write itself (EINVAL), which is what reaches the parent.
        let code = in_child(|| {
            let Ok(root) = open_proc_root(c"/proc") else {
                return 1;
            };
            match write_proc_attr(&root, c"thread-self/attr/exec", b"label") {
                Err((STAGE_WRITE, _)) => 0,
                Err((stage, e)) => 100 + (stage as i32) * 10 + e.min(9),
                Ok(()) => 2,
            }
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn exec_label_failures_are_described() {
        assert_eq!(
            describe_exec_label_failure(STAGE_WRITE | LSM_SELINUX),
            "apply process.selinuxLabel: write /proc/thread-self/attr/exec"
        );
        assert!(
            describe_exec_label_failure(STAGE_NOT_PROC_ROOT | LSM_APPARMOR)
                .starts_with("apply process.apparmorProfile: check /proc")
        );
    }
}
