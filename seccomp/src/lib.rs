//! `linux.seccomp`: a profile compiled to one classic-BPF program in the parent, installed with
//! `seccomp(2)` by the fragile child.
//!
//! # How a profile becomes one program
//!
//! [seccompiler] compiles a filter with a single *match* action and a single *mismatch* action,
//! while a profile gives every `syscalls[]` entry its own action. So the rules are grouped by
//! the complete return value (action and data: `SCMP_ACT_ERRNO` with errno 1 and with errno 38
//! are two groups) and each group is compiled on its own with two placeholder actions. In each
//! group's program (seccompiler's architecture check removed) every `RET <match placeholder>`
//! is rewritten to return the group's real action, which is also how `SCMP_ACT_NOTIFY`
//! (`SECCOMP_RET_USER_NOTIF`, unknown to seccompiler) and `SCMP_ACT_KILL_THREAD` get in, and
//! every `RET <mismatch placeholder>` becomes a jump to the first instruction of the next
//! group. After the last group comes `RET defaultAction`. The system calls of a group that
//! match whatever their arguments are not left to seccompiler (five instructions each) but
//! compared by us, one `JEQ` each to the group's `RET`, which keeps an allow-list profile
//! small enough to be compiled for three architectures. Each architecture (see below) gets its
//! own copy of the groups, with its own system call numbers.
//!
//! Groups are evaluated in the kernel's precedence order of their actions (`KILL_PROCESS`,
//! `KILL_THREAD`, `TRAP`, `ERRNO`, `USER_NOTIF`, `TRACE`, `LOG`, `ALLOW`; equal actions by
//! ascending data), so when the rules of two entries match the same call, the more restrictive
//! one wins, as it would with the entries installed as separate filters.
//!
//! # Rules
//!
//! - `args` of one entry are ANDed, each compared on all 64 bits on the native architecture and
//!   on the low 32 bits (of the argument, `value` and `valueTwo`) on the 32-bit ones, where the
//!   kernel only uses those (as libseccomp does). As runc does, when an entry compares the same
//!   argument index more than once, every one of its comparisons becomes a rule of its own
//!   (ORed). `SCMP_CMP_MASKED_EQ` matches `(arg & value) == valueTwo`.
//! - `errnoRet` (and `defaultErrnoRet`) default to `EPERM` for `SCMP_ACT_ERRNO` and
//!   `SCMP_ACT_TRACE` (the trace message data); on any other action they are an error.
//! - `SCMP_ACT_KILL` is `SCMP_ACT_KILL_THREAD`, as in libseccomp.
//! - Entries whose action is the default action are skipped (they change nothing).
//! - System call names this build's tables (see `seccomp/syscall_table.rs`) know on none of the
//!   filtered architectures are skipped with one warning, as runc skips the names libseccomp
//!   does not know; a name missing on only some of them is skipped there silently.
//! - Actions and flags are checked against the running kernel (`SECCOMP_GET_ACTION_AVAIL`,
//!   `SECCOMP_GET_NOTIF_SIZES`, a flags probe): an unsupported one is a config error.
//!
//! # Architectures
//!
//! The native architecture (x86_64 or aarch64) is always filtered, whether or not
//! `architectures` lists it. The other architectures a process on this host can use
//! (`SCMP_ARCH_X86` and `SCMP_ARCH_X32` on x86_64, as in the podman and Docker default profiles;
//! `SCMP_ARCH_ARM` on aarch64) get the rules too, with their own system call numbers, when
//! listed: the program starts with a dispatch on `seccomp_data.arch` (and, for x32, on the
//! x32 bit `0x40000000` of the number under `AUDIT_ARCH_X86_64`) to one section per
//! architecture, each being the groups for that architecture followed by `RET defaultAction`.
//!
//! When every group on every listed architecture does not fit in the kernel's 4096
//! instructions, the foreign sections keep only the groups whose action is at least as
//! restrictive as `defaultAction` (the ones a call through a foreign architecture would
//! otherwise escape); system calls the dropped groups would have let through less restricted
//! get `defaultAction` there, which fails closed, and one warning says so. Only when even that
//! does not fit is the profile an error.
//!
//! System calls of an architecture the profile does not list, including x32 calls when
//! `SCMP_ARCH_X32` is not listed, kill the process. Listed architectures no process on this
//! host can use (`SCMP_ARCH_ARM` on x86_64, say) are ignored: no system call carries them.
//!
//! # Installing
//!
//! [`SeccompPlan::install`] makes one raw `seccomp(SECCOMP_SET_MODE_FILTER)` call on the
//! prepared program. The kernel requires `no_new_privs` or `CAP_SYS_ADMIN` at that moment.
//! With `SCMP_ACT_NOTIFY` the filter is installed with `SECCOMP_FILTER_FLAG_NEW_LISTENER`; the
//! listener fd goes to the runtime, which hands it to the agent at `listenerPath` with
//! [`send_to_listener`].

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, sock_filter,
};

use crate::config::validate::ConfigError;

mod syscall_table;

// Classic BPF opcodes (linux/bpf_common.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;

/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// The kernel's limit on a filter's length (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

/// x32 system calls are x86_64 calls with this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// What system calls of architectures the profile does not list get.
const BAD_ARCH_ACTION: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// The highest errno the kernel returns from `SECCOMP_RET_ERRNO` (`MAX_ERRNO`).
const MAX_ERRNO: u32 = 4095;

/// Placeholder actions the groups are compiled with, rewritten afterwards.
const PLACEHOLDER_MATCH: SeccompAction = SeccompAction::Trace(0xbe01);
const PLACEHOLDER_MISMATCH: SeccompAction = SeccompAction::Trace(0xbe02);

/// An architecture other than the native one whose system calls a process on this host can
/// make.
struct Foreign {
    arch: Arch,
    /// `seccomp_data.arch` of its calls (x32's is x86_64's: told apart by the number).
    audit: u32,
    /// Its system call numbers, sorted by name.
    table: &'static [(&'static str, u32)],
}

#[cfg(target_arch = "x86_64")]
mod native {
    use super::Foreign;
    use oci_spec::runtime::Arch;

    pub(super) const AUDIT_ARCH: u32 = 0xc000_003e;
    pub(super) const ARCH: Arch = Arch::ScmpArchX86_64;
    pub(super) const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
    pub(super) const TABLE: &[(&str, u32)] = super::syscall_table::X86_64;
    pub(super) const HAS_X32: bool = true;
    pub(super) const FOREIGN: &[Foreign] = &[
        Foreign {
            arch: Arch::ScmpArchX86,
            audit: 0x4000_0003,
            table: super::syscall_table::X86,
        },
        Foreign {
            arch: Arch::ScmpArchX32,
            audit: AUDIT_ARCH,
            table: super::syscall_table::X32,
        },
    ];
}

#[cfg(target_arch = "aarch64")]
mod native {
    use super::Foreign;
    use oci_spec::runtime::Arch;

    pub(super) const AUDIT_ARCH: u32 = 0xc000_00b7;
    pub(super) const ARCH: Arch = Arch::ScmpArchAarch64;
    pub(super) const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;
    pub(super) const TABLE: &[(&str, u32)] = super::syscall_table::AARCH64;
    pub(super) const HAS_X32: bool = false;
    pub(super) const FOREIGN: &[Foreign] = &[Foreign {
        arch: Arch::ScmpArchArm,
        audit: 0x4000_0028,
        table: super::syscall_table::ARM,
    }];
}

/// A compiled seccomp profile, ready for the fragile child to install.
pub(crate) struct SeccompPlan {
    /// The complete BPF program.
    program: BpfProgram,
    /// The `SECCOMP_FILTER_FLAG_*` to install with: the profile's, plus `NEW_LISTENER` when
    /// an action is `SCMP_ACT_NOTIFY`.
    flags: libc::c_ulong,
    /// `listenerPath`.
    listener_path: Option<PathBuf>,
    /// `listenerMetadata`, sent to the agent with the listener.
    listener_metadata: Option<String>,
}

impl std::fmt::Debug for SeccompPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeccompPlan")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .field("listener_path", &self.listener_path)
            .finish()
    }
}

/// One comparison of an entry's `args`.
#[derive(Clone, Debug)]
struct Cmp {
    index: u8,
    op: SeccompCmpOp,
    value: u64,
}

/// The rules of one syscall in one group, ORed, each a list of ANDed comparisons: `None`
/// matches whatever the arguments.
type Chain = Option<Vec<Vec<Cmp>>>;

/// The groups: by return value (in precedence order), the chain of each system call name.
type Groups<'a> = BTreeMap<(i32, u32), BTreeMap<&'a str, Chain>>;

/// How wide the arguments the kernel hands a filter are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Width {
    /// The native architecture: all 64 bits count.
    Bits64,
    /// A 32-bit architecture (i386, x32, arm): only the low 32 bits count.
    Bits32,
}

impl SeccompPlan {
    /// Compile in the parent. Unknown syscall names (known on none of the filtered
    /// architectures) are skipped and reported in `warnings` (one warning listing them), never
    /// an error; so are the rules left out on foreign architectures for want of room (see the
    /// module documentation).
    ///
    /// Invalid profiles (errnoRet on an action without one, an argument index above 5, an
    /// action or flag the running kernel doesn't support, `SCMP_ACT_NOTIFY` as the default
    /// action or without `listenerPath`, a program over 4096 instructions) are a
    /// [`ConfigError`] naming the field, e.g. `linux.seccomp.syscalls[3].action`.
    pub(crate) fn prepare(
        s: &LinuxSeccomp,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let mut probe = KernelProbe::default();
        let default = action_value(
            s.default_action(),
            s.default_errno_ret(),
            "linux.seccomp.defaultAction",
            "linux.seccomp.defaultErrnoRet",
            &mut probe,
        )?;
        if s.default_action() == LinuxSeccompAction::ScmpActNotify {
            return Err(ConfigError::new(
                "linux.seccomp.defaultAction",
                "cannot be SCMP_ACT_NOTIFY: the container init's own system calls (including \
                 the one handing the listener to the runtime) would wait for an agent",
            ));
        }

        let foreign = listed_foreign(s);
        let known = |name: &str| {
            lookup(native::TABLE, name).is_some()
                || foreign.iter().any(|f| lookup(f.table, name).is_some())
        };
        let mut groups: Groups = BTreeMap::new();
        let mut unknown: Vec<&str> = Vec::new();
        let mut notify = false;
        for (i, entry) in s.syscalls().iter().flatten().enumerate() {
            let field = format!("linux.seccomp.syscalls[{i}]");
            if entry.names().is_empty() {
                return Err(ConfigError::new(format!("{field}.names"), "is empty"));
            }
            // An empty name is a broken profile, not a syscall some kernel may have.
            if let Some(j) = entry.names().iter().position(String::is_empty) {
                return Err(ConfigError::new(
                    format!("{field}.names[{j}]"),
                    "is an empty string",
                ));
            }
            let value = action_value(
                entry.action(),
                entry.errno_ret(),
                &format!("{field}.action"),
                &format!("{field}.errnoRet"),
                &mut probe,
            )?;
            let rules = entry_rules(entry.args().as_deref().unwrap_or(&[]), &field)?;
            if value == default {
                continue;
            }
            // No rule of the entry can ever match, whatever the architecture.
            if let Some(r) = &rules {
                if never(r, Width::Bits64) && never(r, Width::Bits32) {
                    continue;
                }
            }
            let group = groups.entry(precedence_key(value)).or_default();
            for name in entry.names() {
                if !known(name) {
                    if !unknown.contains(&name.as_str()) {
                        unknown.push(name);
                    }
                    continue;
                }
                notify |= entry.action() == LinuxSeccompAction::ScmpActNotify;
                let chain = group
                    .entry(name.as_str())
                    .or_insert_with(|| Some(Vec::new()));
                match (&rules, chain.as_mut()) {
                    (None, _) => *chain = None,
                    (Some(new), Some(existing)) => existing.extend(new.iter().cloned()),
                    (Some(_), None) => {}
                }
            }
        }
        if !unknown.is_empty() {
            let mut arches = vec![native::ARCH.to_string()];
            arches.extend(foreign.iter().map(|f| f.arch.to_string()));
            warnings.push(format!(
                "linux.seccomp.syscalls: ignoring system calls unknown on {}: {}",
                arches.join(", "),
                unknown.join(", ")
            ));
        }

        if notify && s.listener_path().is_none() {
            return Err(ConfigError::new(
                "linux.seccomp.listenerPath",
                "is required when a rule uses SCMP_ACT_NOTIFY",
            ));
        }
        if s.listener_metadata().is_some() && s.listener_path().is_none() {
            return Err(ConfigError::new(
                "linux.seccomp.listenerMetadata",
                "must not be set without listenerPath",
            ));
        }

        let program = match assemble(&groups, default, &foreign, true) {
            Ok(program) => program,
            Err(Assemble::TooLarge(_)) => {
                let program = assemble(&groups, default, &foreign, false)
                    .map_err(|e| e.into_config_error())?;
                let names: Vec<String> = foreign.iter().map(|f| f.arch.to_string()).collect();
                warnings.push(format!(
                    "linux.seccomp.architectures: with every rule compiled for {} too, the \
                     program would exceed the kernel's limit of {MAX_INSNS} BPF instructions; \
                     for those, the rules whose action is less restrictive than defaultAction \
                     are left out (their system calls get defaultAction)",
                    names.join(", ")
                ));
                program
            }
            Err(e) => return Err(e.into_config_error()),
        };

        let mut flags: libc::c_ulong = 0;
        for (i, flag) in s.flags().iter().flatten().enumerate() {
            let bit = match flag {
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                    libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
                }
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    if !notify {
                        warnings.push(format!(
                            "linux.seccomp.flags[{i}]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV \
                             ignored: no rule uses SCMP_ACT_NOTIFY"
                        ));
                        continue;
                    }
                    libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
                }
            };
            if !probe.flag_supported(bit) {
                return Err(ConfigError::new(
                    format!("linux.seccomp.flags[{i}]"),
                    format!("{flag} is not supported by the running kernel"),
                ));
            }
            flags |= bit;
        }
        // The kernel refuses TSYNC with NEW_LISTENER unless told to report a thread that
        // cannot sync as ESRCH (since 5.7).
        if notify && flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
            flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
        }
        if notify {
            flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        }
        // (No flags at all is always supported.)
        if flags != 0 && !probe.flag_supported(flags) {
            return Err(ConfigError::new(
                "linux.seccomp.flags",
                format!("combination {flags:#x} is not supported by the running kernel"),
            ));
        }

        Ok(SeccompPlan {
            program,
            flags,
            listener_path: s.listener_path().clone(),
            listener_metadata: s.listener_metadata().clone(),
        })
    }

    /// Whether any rule is SCMP_ACT_NOTIFY (the default action cannot be): the init must hand
    /// the listener fd to the parent.
    pub(crate) fn uses_notify(&self) -> bool {
        self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0
    }

    /// Installs the filter on the calling thread.
    ///
    /// # Fragile child
    ///
    /// One raw `seccomp(SECCOMP_SET_MODE_FILTER)` on the prepared program, with the profile's
    /// flags (plus `SECCOMP_FILTER_FLAG_NEW_LISTENER` when [`uses_notify`](Self::uses_notify)).
    /// No allocation. Returns the listener fd (the kernel opens it `O_CLOEXEC`) when notify is
    /// used; `Err(errno)` on failure.
    pub(crate) fn install(&self) -> Result<Option<RawFd>, i32> {
        let Ok(len) = u16::try_from(self.program.len()) else {
            return Err(libc::EINVAL);
        };
        let prog = libc::sock_fprog {
            len,
            // seccompiler's sock_filter is `repr(C)` with the kernel's layout, as is libc's.
            filter: self.program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
        };
        // SAFETY: `prog` points to `len` initialised instructions that outlive the call; the
        // kernel copies them and keeps no pointer.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r < 0 {
            return Err(crate::child::sys::errno());
        }
        if self.uses_notify() {
            // With TSYNC_ESRCH or without TSYNC, the return value is the listener fd.
            Ok(Some(r as RawFd))
        } else if r > 0 {
            // TSYNC: the id of a thread that could not be synchronised; nothing was installed.
            Err(libc::ESRCH)
        } else {
            Ok(None)
        }
    }

    /// `listenerPath`: where [`send_to_listener`] sends the listener fd.
    pub(crate) fn listener_path(&self) -> Option<&Path> {
        self.listener_path.as_deref()
    }

    /// The number of BPF instructions of the compiled program.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.program.len()
    }
}

/// Parent side, for SCMP_ACT_NOTIFY: connects to `listenerPath` (AF_UNIX, SOCK_STREAM) and
/// sends the container process state (config-linux.md, "The Container Process State"):
/// `{"ociVersion", "fds": ["seccompFd"], "pid", "metadata" (listenerMetadata, when set),
/// "state"}`, in one `sendmsg` that carries the listener `fd` in `SCM_RIGHTS` (a remainder the
/// socket did not take at once follows without fds, as the spec allows), then closes the
/// connection.
pub(crate) fn send_to_listener(
    plan: &SeccompPlan,
    state: &serde_json::Value,
    pid: i32,
    fd: RawFd,
) -> Result<(), crate::Error> {
    let path = plan.listener_path().ok_or_else(|| {
        crate::Error::Config(ConfigError::new(
            "linux.seccomp.listenerPath",
            "is required with SCMP_ACT_NOTIFY",
        ))
    })?;
    let mut msg = serde_json::json!({
        "ociVersion": oci_spec::runtime::VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "state": state,
    });
    if let (Some(m), Some(obj)) = (&plan.listener_metadata, msg.as_object_mut()) {
        obj.insert("metadata".into(), m.as_str().into());
    }
    let payload = msg.to_string().into_bytes();
    let mut stream = UnixStream::connect(path)
        .map_err(|e| crate::Error::io("connect to seccomp listener", path, e))?;
    let sent = crate::child::init::send_fd(stream.as_raw_fd(), fd, &payload).map_err(|e| {
        crate::Error::sys(
            format!("sendmsg to seccomp listener {}", path.display()),
            nix::Error::from_raw(e),
        )
    })?;
    stream
        .write_all(payload.get(sent..).unwrap_or_default())
        .map_err(|e| crate::Error::io("write to seccomp listener", path, e))?;
    Ok(())
}

/// The `linux.seccomp` object of the features document: what [`SeccompPlan::prepare`]
/// accepts, with `supportedFlags` and `actions` checked against the running kernel.
pub(crate) fn features() -> serde_json::Value {
    let mut probe = KernelProbe::default();
    let actions: Vec<&str> = [
        ("SCMP_ACT_ALLOW", libc::SECCOMP_RET_ALLOW),
        ("SCMP_ACT_ERRNO", libc::SECCOMP_RET_ERRNO),
        ("SCMP_ACT_KILL", libc::SECCOMP_RET_KILL_THREAD),
        ("SCMP_ACT_KILL_PROCESS", libc::SECCOMP_RET_KILL_PROCESS),
        ("SCMP_ACT_KILL_THREAD", libc::SECCOMP_RET_KILL_THREAD),
        ("SCMP_ACT_LOG", libc::SECCOMP_RET_LOG),
        ("SCMP_ACT_NOTIFY", libc::SECCOMP_RET_USER_NOTIF),
        ("SCMP_ACT_TRACE", libc::SECCOMP_RET_TRACE),
        ("SCMP_ACT_TRAP", libc::SECCOMP_RET_TRAP),
    ]
    .into_iter()
    .filter(|(_, a)| probe.action_supported(*a))
    .map(|(n, _)| n)
    .collect();
    let flags = [
        ("SECCOMP_FILTER_FLAG_TSYNC", libc::SECCOMP_FILTER_FLAG_TSYNC),
        ("SECCOMP_FILTER_FLAG_LOG", libc::SECCOMP_FILTER_FLAG_LOG),
        (
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        ),
        (
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
            libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        ),
    ];
    let known: Vec<&str> = flags.iter().map(|(n, _)| *n).collect();
    let supported: Vec<&str> = flags
        .iter()
        .filter(|(_, f)| probe.flag_supported(*f))
        .map(|(n, _)| *n)
        .collect();
    // The architectures whose system calls are filtered by their own numbers.
    let archs: Vec<String> = std::iter::once(native::ARCH)
        .chain(native::FOREIGN.iter().map(|f| f.arch))
        .map(|a| a.to_string())
        .collect();
    serde_json::json!({
        "enabled": true,
        "actions": actions,
        "operators": [
            "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
            "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
        ],
        "archs": archs,
        "knownFlags": known,
        "supportedFlags": supported,
    })
}

/// The kernel's number for `name` in `table` (one architecture's, sorted by name).
fn lookup(table: &[(&str, u32)], name: &str) -> Option<u32> {
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .and_then(|i| table.get(i))
        .map(|(_, nr)| *nr)
}

/// The foreign architectures of this host the profile lists.
fn listed_foreign(s: &LinuxSeccomp) -> Vec<&'static Foreign> {
    native::FOREIGN
        .iter()
        .filter(|f| s.architectures().iter().flatten().any(|a| *a == f.arch))
        .collect()
}

/// Sort key of a return value: the kernel's precedence of its action (`ACTION_ONLY` as a signed
/// number, lowest first), then the data.
fn precedence_key(value: u32) -> (i32, u32) {
    (
        (value & libc::SECCOMP_RET_ACTION_FULL) as i32,
        value & libc::SECCOMP_RET_DATA,
    )
}

/// The `SECCOMP_RET_*` value of an action, checked against the running kernel.
fn action_value(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    action_field: &str,
    errno_field: &str,
    probe: &mut KernelProbe,
) -> Result<u32, ConfigError> {
    use LinuxSeccompAction as A;
    let data = |max: u32| match errno_ret {
        None => Ok(libc::EPERM as u32),
        Some(v) if v <= max => Ok(v),
        Some(v) => Err(ConfigError::new(
            errno_field,
            format!("{v} is larger than {max}"),
        )),
    };
    let value = match action {
        A::ScmpActKill | A::ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        A::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        A::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        A::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data(MAX_ERRNO)?,
        A::ScmpActTrace => libc::SECCOMP_RET_TRACE | data(libc::SECCOMP_RET_DATA)?,
        A::ScmpActLog => libc::SECCOMP_RET_LOG,
        A::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        A::ScmpActNotify => libc::SECCOMP_RET_USER_NOTIF,
    };
    if errno_ret.is_some() && !matches!(action, A::ScmpActErrno | A::ScmpActTrace) {
        return Err(ConfigError::new(
            errno_field,
            format!(
                "is set, but {action} returns no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)"
            ),
        ));
    }
    if !probe.action_supported(value & libc::SECCOMP_RET_ACTION_FULL) {
        return Err(ConfigError::new(
            action_field,
            format!("{action} is not supported by the running kernel"),
        ));
    }
    Ok(value)
}

/// The rules of one entry: `None` for no `args` (matches any arguments), else the rules, ORed,
/// each a list of ANDed comparisons.
fn entry_rules(args: &[LinuxSeccompArg], field: &str) -> Result<Chain, ConfigError> {
    if args.is_empty() {
        return Ok(None);
    }
    let mut cmps = Vec::with_capacity(args.len());
    let mut seen = [0usize; 6];
    for (j, arg) in args.iter().enumerate() {
        let index = arg.index();
        let Some(count) = seen.get_mut(index) else {
            return Err(ConfigError::new(
                format!("{field}.args[{j}].index"),
                format!("{index} is out of range: system calls have arguments 0 to 5"),
            ));
        };
        *count += 1;
        let (op, value) = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
            LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
            LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
            LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
            LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
            LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
            LinuxSeccompOperator::ScmpCmpMaskedEq => (
                SeccompCmpOp::MaskedEq(arg.value()),
                arg.value_two().unwrap_or(0),
            ),
        };
        cmps.push(Cmp {
            index: index as u8,
            op,
            value,
        });
    }
    if seen.iter().any(|&c| c > 1) {
        // The same argument compared twice: every comparison is a rule of its own (runc).
        Ok(Some(cmps.into_iter().map(|c| vec![c]).collect()))
    } else {
        Ok(Some(vec![cmps]))
    }
}

impl Cmp {
    /// Whether the comparison can never match: seccompiler compares `(arg & mask)` with
    /// `(valueTwo & mask)`, while a `valueTwo` with (compared) bits outside the mask can never
    /// equal `(arg & mask)`.
    fn never(&self, width: Width) -> bool {
        let compared = match width {
            Width::Bits64 => u64::MAX,
            Width::Bits32 => u64::from(u32::MAX),
        };
        matches!(self.op, SeccompCmpOp::MaskedEq(mask) if self.value & !mask & compared != 0)
    }
}

/// Whether no rule of `rules` can ever match on an architecture of `width`.
fn never(rules: &[Vec<Cmp>], width: Width) -> bool {
    rules.iter().all(|r| r.iter().any(|c| c.never(width)))
}

/// seccompiler's rules for `rules` on an architecture of `width`, leaving out those that can
/// never match (none left: the chain can never match).
fn compile_rules(rules: &[Vec<Cmp>], width: Width) -> Result<Vec<SeccompRule>, ConfigError> {
    let len = match width {
        Width::Bits64 => SeccompCmpArgLen::Qword,
        // seccompiler compares the low halves only, of the argument and of the value.
        Width::Bits32 => SeccompCmpArgLen::Dword,
    };
    let invalid = |e: seccompiler::BackendError| {
        ConfigError::new("linux.seccomp.syscalls", format!("cannot be compiled: {e}"))
    };
    let mut out = Vec::new();
    for rule in rules.iter().filter(|r| !r.iter().any(|c| c.never(width))) {
        let conditions = rule
            .iter()
            .map(|c| SeccompCondition::new(c.index, len.clone(), c.op.clone(), c.value))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        out.push(SeccompRule::new(conditions).map_err(invalid)?);
    }
    Ok(out)
}

/// Why [`assemble`] failed.
enum Assemble {
    /// The program would have at least this many instructions, over [`MAX_INSNS`].
    TooLarge(usize),
    /// Anything else.
    Config(ConfigError),
}

impl Assemble {
    fn into_config_error(self) -> ConfigError {
        match self {
            Assemble::TooLarge(len) => ConfigError::new(
                "linux.seccomp",
                format!(
                    "compiles to {len} BPF instructions or more, over the kernel's limit of \
                     {MAX_INSNS}"
                ),
            ),
            Assemble::Config(e) => e,
        }
    }
}

impl From<ConfigError> for Assemble {
    fn from(e: ConfigError) -> Self {
        Assemble::Config(e)
    }
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The whole program: architecture dispatch, then one section per architecture (the native
/// one first), each its groups and `RET default`. With `full`, the foreign sections get every
/// group; without, only those whose action is at least as restrictive as the default one.
fn assemble(
    groups: &Groups,
    default: u32,
    foreign: &[&Foreign],
    full: bool,
) -> Result<BpfProgram, Assemble> {
    let x32 = foreign.iter().position(|f| f.arch == Arch::ScmpArchX32);
    // Foreign architectures told apart by `seccomp_data.arch`.
    let dispatched: Vec<usize> = (0..foreign.len()).filter(|i| Some(*i) != x32).collect();

    let native_body = compile_groups(groups, native::TABLE, Width::Bits64, None)?;
    let default_action = precedence_key(default).0;
    let foreign_bodies = foreign
        .iter()
        .map(|f| {
            let up_to = (!full).then_some(default_action);
            compile_groups(groups, f.table, Width::Bits32, up_to)
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Dispatch: load the arch, `JEQ audit; JA section` for each, kill the rest.
    let dispatch_len = 1 + 2 * (1 + dispatched.len()) + 1;
    // Native: load the number, the x32 check, the groups, the default.
    let x32_check = if native::HAS_X32 { 3 } else { 0 };
    let native_len = 1 + x32_check + native_body.len() + 1;
    let mut starts = Vec::with_capacity(foreign.len());
    let mut at = dispatch_len + native_len;
    for body in &foreign_bodies {
        starts.push(at);
        at += body.len() + 1;
    }
    if at > MAX_INSNS {
        return Err(Assemble::TooLarge(at));
    }
    // `JA` from the instruction at `from` to `to`.
    let ja = |from: usize, to: usize| stmt(BPF_JMP_JA, (to - from - 1) as u32);

    let mut program = Vec::with_capacity(at);
    program.push(stmt(BPF_LD_W_ABS, DATA_ARCH));
    program.push(jump(BPF_JMP_JEQ_K, native::AUDIT_ARCH, 0, 1));
    program.push(ja(program.len(), dispatch_len));
    for i in &dispatched {
        program.push(jump(BPF_JMP_JEQ_K, foreign[*i].audit, 0, 1));
        program.push(ja(program.len(), starts[*i]));
    }
    program.push(stmt(BPF_RET_K, BAD_ARCH_ACTION));

    program.push(stmt(BPF_LD_W_ABS, DATA_NR));
    if native::HAS_X32 {
        // x32 numbers, except -1 (a tracer skipping the call), go to their own section.
        program.push(jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 2));
        program.push(jump(BPF_JMP_JEQ_K, u32::MAX, 1, 0));
        program.push(match x32 {
            Some(i) => ja(program.len(), starts[i]),
            None => stmt(BPF_RET_K, BAD_ARCH_ACTION),
        });
    }
    program.extend(native_body);
    program.push(stmt(BPF_RET_K, default));
    for body in foreign_bodies {
        program.extend(body);
        program.push(stmt(BPF_RET_K, default));
    }
    debug_assert_eq!(program.len(), at);
    Ok(program)
}

/// The groups for one architecture (`table`, `width`), each group's mismatch falling through to
/// the next one, the last one's to the instruction after them. With `up_to`, only the groups
/// whose action is at least as restrictive as that one (a `SECCOMP_RET_ACTION_FULL` value as
/// in [`precedence_key`]).
fn compile_groups(
    groups: &Groups,
    table: &[(&str, u32)],
    width: Width,
    up_to: Option<i32>,
) -> Result<Vec<sock_filter>, Assemble> {
    let unexpected = || {
        Assemble::Config(ConfigError::new(
            "linux.seccomp",
            "cannot be compiled: unexpected seccompiler output",
        ))
    };
    let mut program = Vec::new();
    for ((action, data), chains) in groups {
        if up_to.is_some_and(|limit| *action > limit) {
            continue;
        }
        let value = (*action as u32) | data;
        // `None` (any arguments) is seccompiler's empty rule list; an empty list of ours (no
        // rule can match) must not become one.
        let mut by_nr: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
        for (name, chain) in chains {
            let Some(nr) = lookup(table, name) else {
                continue;
            };
            let rules = match chain {
                None => None,
                Some(rules) => {
                    let rules = compile_rules(rules, width)?;
                    if rules.is_empty() {
                        continue;
                    }
                    Some(rules)
                }
            };
            let merged = by_nr
                .entry(i64::from(nr))
                .or_insert_with(|| Some(Vec::new()));
            match (rules, merged.as_mut()) {
                (None, _) => *merged = None,
                (Some(new), Some(existing)) => existing.extend(new),
                (Some(_), None) => {}
            }
        }
        // System calls matched whatever their arguments: one `JEQ` each, in blocks that end in
        // the group's return (seccompiler would spend five instructions on each).
        let any: Vec<u32> = by_nr
            .iter()
            .filter(|(_, rules)| rules.is_none())
            .filter_map(|(nr, _)| u32::try_from(*nr).ok())
            .collect();
        if !any.is_empty() {
            program.push(stmt(BPF_LD_W_ABS, DATA_NR));
            for block in any.chunks(usize::from(u8::MAX) - 1) {
                for (i, nr) in block.iter().enumerate() {
                    // Past the rest of the block and its `JA` to the `RET`.
                    let to_ret = u8::try_from(block.len() - i).map_err(|_| unexpected())?;
                    program.push(jump(BPF_JMP_JEQ_K, *nr, to_ret, 0));
                }
                program.push(stmt(BPF_JMP_JA, 1));
                program.push(stmt(BPF_RET_K, value));
            }
        }
        let rules: BTreeMap<i64, Vec<SeccompRule>> = by_nr
            .into_iter()
            .filter_map(|(nr, rules)| rules.map(|r| (nr, r)))
            .collect();
        if rules.is_empty() {
            if program.len() > MAX_INSNS {
                return Err(Assemble::TooLarge(program.len()));
            }
            continue;
        }
        let filter = SeccompFilter::new(
            rules,
            PLACEHOLDER_MISMATCH,
            PLACEHOLDER_MATCH,
            native::TARGET,
        )
        .map_err(|e| {
            ConfigError::new("linux.seccomp.syscalls", format!("cannot be compiled: {e}"))
        })?;
        let compiled: BpfProgram = match BpfProgram::try_from(filter) {
            Ok(p) => p,
            Err(seccompiler::BackendError::FilterTooLarge(n)) => {
                return Err(Assemble::TooLarge(program.len() + n));
            }
            Err(e) => {
                return Err(Assemble::Config(ConfigError::new(
                    "linux.seccomp.syscalls",
                    format!("cannot be compiled: {e}"),
                )));
            }
        };
        // seccompiler starts with its own architecture check (load, compare, kill): ours is
        // already done.
        let body = match compiled.get(..3) {
            Some([_, _, kill]) if kill.code == BPF_RET_K => compiled.get(3..).unwrap_or_default(),
            _ => return Err(unexpected()),
        };
        let end = body.len();
        let match_k = u32::from(PLACEHOLDER_MATCH);
        let mismatch_k = u32::from(PLACEHOLDER_MISMATCH);
        for (i, insn) in body.iter().enumerate() {
            let mut insn = insn.clone();
            if insn.code == BPF_RET_K {
                if insn.k == match_k {
                    insn.k = value;
                } else if insn.k == mismatch_k {
                    // On to the next group (or whatever follows the last one).
                    insn = stmt(BPF_JMP_JA, (end - i - 1) as u32);
                } else {
                    return Err(unexpected());
                }
            }
            program.push(insn);
        }
        if program.len() > MAX_INSNS {
            return Err(Assemble::TooLarge(program.len()));
        }
    }
    Ok(program)
}

/// What the running kernel supports, asked once per value.
#[derive(Default)]
struct KernelProbe {
    actions: Vec<(u32, bool)>,
    flags: Vec<(libc::c_ulong, bool)>,
}

impl KernelProbe {
    /// `SECCOMP_GET_ACTION_AVAIL`, and `SECCOMP_GET_NOTIF_SIZES` for `USER_NOTIF`.
    fn action_supported(&mut self, action: u32) -> bool {
        if let Some((_, ok)) = self.actions.iter().find(|(a, _)| *a == action) {
            return *ok;
        }
        // SAFETY: `action` is a valid u32 the kernel reads and does not keep.
        let mut ok = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_GET_ACTION_AVAIL as libc::c_ulong,
                0 as libc::c_ulong,
                &action as *const u32,
            )
        } == 0;
        if ok && action == libc::SECCOMP_RET_USER_NOTIF {
            // SAFETY: an all-zero seccomp_notif_sizes is valid; the kernel fills it in.
            let mut sizes: libc::seccomp_notif_sizes = unsafe { std::mem::zeroed() };
            // SAFETY: `sizes` is a writable seccomp_notif_sizes that outlives the call.
            ok = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_GET_NOTIF_SIZES as libc::c_ulong,
                    0 as libc::c_ulong,
                    &mut sizes as *mut libc::seccomp_notif_sizes,
                )
            } == 0;
        }
        self.actions.push((action, ok));
        ok
    }

    /// Whether `seccomp(SECCOMP_SET_MODE_FILTER, flags, NULL)` gets past the flags check: the
    /// kernel checks the flags first (EINVAL) and only then reads the program (EFAULT here), so
    /// nothing is installed.
    fn flag_supported(&mut self, flags: libc::c_ulong) -> bool {
        if let Some((_, ok)) = self.flags.iter().find(|(f, _)| *f == flags) {
            return *ok;
        }
        // WAIT_KILLABLE_RECV is only accepted together with NEW_LISTENER.
        let probe = if flags & libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV != 0 {
            flags | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        } else {
            flags
        };
        // SAFETY: a null program pointer: the kernel fails with EFAULT when it tries to read it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
                probe,
                std::ptr::null::<libc::sock_fprog>(),
            )
        };
        let ok = r < 0 && crate::child::sys::errno() == libc::EFAULT;
        self.flags.push((flags, ok));
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).expect("test profile is a valid LinuxSeccomp")
    }

    fn compile(v: serde_json::Value) -> (SeccompPlan, Vec<String>) {
        let mut warnings = Vec::new();
        let plan = SeccompPlan::prepare(&profile(v), &mut warnings).expect("profile compiles");
        (plan, warnings)
    }

    fn compile_err(v: serde_json::Value) -> ConfigError {
        SeccompPlan::prepare(&profile(v), &mut Vec::new()).expect_err("profile is rejected")
    }

    /// How the child's system call ended.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        /// It returned without error.
        Ok,
        /// It failed with this errno.
        Errno(i32),
        /// The child was killed by this signal.
        Signal(i32),
        /// The child's SIGSYS handler ran (SCMP_ACT_TRAP).
        Trapped,
        /// Installing the filter failed with this errno.
        InstallFailed(i32),
    }

    const TRAPPED: i32 = 251;
    const INSTALL_FAILED: i32 = 200;

    extern "C" fn on_sigsys(_: libc::c_int) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(TRAPPED) }
    }

    /// A raw system call: the result, or -errno.
    fn sys(nr: libc::c_long, a: [u64; 6]) -> i64 {
        // SAFETY: the test calls only harmless system calls whose arguments are plain numbers.
        let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
        if r < 0 {
            -i64::from(crate::child::sys::errno())
        } else {
            r
        }
    }

    /// A forked child, killed and reaped on drop if the test did not wait for it.
    struct Child(libc::pid_t);

    impl Child {
        fn wait(mut self) -> Outcome {
            let mut status = 0;
            // SAFETY: waits for our own child; status is a valid out pointer.
            let r = unsafe { libc::waitpid(self.0, &mut status, 0) };
            assert_eq!(r, self.0, "waitpid");
            self.0 = 0;
            if libc::WIFSIGNALED(status) {
                return Outcome::Signal(libc::WTERMSIG(status));
            }
            match libc::WEXITSTATUS(status) {
                0 => Outcome::Ok,
                TRAPPED => Outcome::Trapped,
                c if c >= INSTALL_FAILED => Outcome::InstallFailed(c - INSTALL_FAILED),
                c => Outcome::Errno(c),
            }
        }
    }

    impl Drop for Child {
        fn drop(&mut self) {
            if self.0 > 0 {
                // SAFETY: kills and reaps our own child.
                unsafe {
                    libc::kill(self.0, libc::SIGKILL);
                    libc::waitpid(self.0, std::ptr::null_mut(), 0);
                }
            }
        }
    }

    /// Sends `fd` over `sock` with raw syscalls only (runs in the forked child).
    /// Forks a child that installs `plan` (sending the listener fd over `sock` if there is
    /// one), then runs `call` and reports its result in its exit status. Between fork and
    /// _exit the child only makes system calls.
    fn spawn(plan: &SeccompPlan, sock: Option<RawFd>, call: impl Fn() -> i64) -> Child {
        // SAFETY: the child below only makes system calls on data prepared before the fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: async-signal-safe calls only, then _exit.
            unsafe {
                libc::signal(
                    libc::SIGSYS,
                    on_sigsys as extern "C" fn(libc::c_int) as libc::sighandler_t,
                );
                let code = match plan.install() {
                    Err(e) => INSTALL_FAILED + e.min(50),
                    Ok(listener) => {
                        if let (Some(fd), Some(sock)) = (listener, sock) {
                            if crate::child::init::send_fd(sock, fd, b"F").is_err() {
                                libc::_exit(INSTALL_FAILED + 51);
                            }
                        }
                        let r = call();
                        if r < 0 { (-r).min(199) as i32 } else { 0 }
                    }
                };
                libc::_exit(code)
            }
        }
        Child(pid)
    }

    fn run(plan: &SeccompPlan, nr: libc::c_long, args: [u64; 6]) -> Outcome {
        spawn(plan, None, || sys(nr, args)).wait()
    }

    const GETPRIO: libc::c_long = libc::SYS_getpriority;

    fn getprio(plan: &SeccompPlan, which: u64, who: u64) -> Outcome {
        run(plan, GETPRIO, [which, who, 0, 0, 0, 0])
    }

    #[test]
    fn errno_with_errno_ret_and_eperm_default() {
        let (plan, warnings) = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"},
            ]
        }));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(!plan.uses_notify());
        assert_eq!(getprio(&plan, 0, 0), Outcome::Errno(38));
        assert_eq!(
            run(&plan, libc::SYS_getppid, [0; 6]),
            Outcome::Errno(libc::EPERM)
        );
        assert_eq!(run(&plan, libc::SYS_getpid, [0; 6]), Outcome::Ok);
    }

    #[test]
    fn default_errno_with_allow_list() {
        let allow = json!({"names": ["exit_group", "getpid"], "action": "SCMP_ACT_ALLOW"});
        let (plan, _) = compile(json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13, "syscalls": [allow]
        }));
        assert_eq!(run(&plan, libc::SYS_getpid, [0; 6]), Outcome::Ok);
        assert_eq!(
            run(&plan, libc::SYS_getppid, [0; 6]),
            Outcome::Errno(libc::EACCES)
        );
        let (plan, _) = compile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [allow]}));
        assert_eq!(
            run(&plan, libc::SYS_getppid, [0; 6]),
            Outcome::Errno(libc::EPERM)
        );
    }

    #[test]
    fn kill_trap_log_trace_actions() {
        let with = |action: &str| {
            compile(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getppid"], "action": action}]
            }))
            .0
        };
        let ppid = |plan: &SeccompPlan| run(plan, libc::SYS_getppid, [0; 6]);
        for kill in [
            "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_KILL_PROCESS",
        ] {
            assert_eq!(ppid(&with(kill)), Outcome::Signal(libc::SIGSYS), "{kill}");
        }
        assert_eq!(ppid(&with("SCMP_ACT_TRAP")), Outcome::Trapped);
        assert_eq!(ppid(&with("SCMP_ACT_LOG")), Outcome::Ok);
        assert_eq!(ppid(&with("SCMP_ACT_ALLOW")), Outcome::Ok);
        // No tracer: the call fails with ENOSYS.
        assert_eq!(ppid(&with("SCMP_ACT_TRACE")), Outcome::Errno(libc::ENOSYS));
        // Unaffected calls still work under a killing rule.
        assert_eq!(
            run(&with("SCMP_ACT_KILL_PROCESS"), libc::SYS_getpid, [0; 6]),
            Outcome::Ok
        );
    }

    /// A profile returning errno 77 when getpriority's argument 0 matches `op value valueTwo`.
    fn arg_profile(args: serde_json::Value) -> SeccompPlan {
        compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
                          "args": args}]
        }))
        .0
    }

    #[test]
    fn every_operator_on_64_bits() {
        const HI: u64 = 0x1_0000_0000;
        // (op, value, valueTwo, [(argument, whether it matches)])
        type Case = (&'static str, u64, u64, &'static [(u64, bool)]);
        let cases: &[Case] = &[
            (
                "SCMP_CMP_EQ",
                HI + 5,
                0,
                &[(HI + 5, true), (5, false), (HI, false)],
            ),
            (
                "SCMP_CMP_NE",
                HI + 5,
                0,
                &[(HI + 5, false), (5, true), (HI + 6, true)],
            ),
            (
                "SCMP_CMP_LT",
                HI,
                0,
                &[(HI - 1, true), (HI, false), (HI + 1, false)],
            ),
            (
                "SCMP_CMP_LE",
                HI,
                0,
                &[(HI - 1, true), (HI, true), (HI + 1, false)],
            ),
            (
                "SCMP_CMP_GT",
                HI,
                0,
                &[
                    (HI - 1, false),
                    (HI, false),
                    (HI + 1, true),
                    (u64::MAX, true),
                ],
            ),
            (
                "SCMP_CMP_GE",
                HI,
                0,
                &[(HI - 1, false), (HI, true), (2 * HI, true)],
            ),
            // (arg & value) == valueTwo
            (
                "SCMP_CMP_MASKED_EQ",
                HI | 0xf0,
                HI | 0x20,
                &[(HI | 0x2f, true), (0x20, false), (HI | 0x30, false)],
            ),
        ];
        for (op, value, value_two, probes) in cases {
            let plan =
                arg_profile(json!([{"index": 0, "value": value, "valueTwo": value_two, "op": op}]));
            for (arg, matches) in *probes {
                let got = getprio(&plan, *arg, 0);
                assert_eq!(
                    got == Outcome::Errno(77),
                    *matches,
                    "{op} {value:#x}: arg {arg:#x} -> {got:?}"
                );
            }
        }
    }

    #[test]
    fn masked_eq_datum_outside_mask_never_matches() {
        // libseccomp compares (arg & 0xf) with 0x10: never equal.
        let plan = arg_profile(
            json!([{"index": 0, "value": 0xf, "valueTwo": 0x10, "op": "SCMP_CMP_MASKED_EQ"}]),
        );
        for arg in [0x10u64, 0x0, 0x1f] {
            assert_ne!(getprio(&plan, arg, 0), Outcome::Errno(77), "arg {arg:#x}");
        }
    }

    #[test]
    fn args_on_different_indexes_are_anded() {
        let plan = arg_profile(json!([
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 7, "op": "SCMP_CMP_EQ"},
        ]));
        assert_eq!(getprio(&plan, 0, 7), Outcome::Errno(77));
        assert_ne!(getprio(&plan, 0, 8), Outcome::Errno(77));
        assert_ne!(getprio(&plan, 1, 7), Outcome::Errno(77));
    }

    #[test]
    fn args_on_the_same_index_are_ored_like_runc() {
        let plan = arg_profile(json!([
            {"index": 0, "value": 10, "op": "SCMP_CMP_GE"},
            {"index": 0, "value": 5, "op": "SCMP_CMP_LE"},
            {"index": 1, "value": 7, "op": "SCMP_CMP_EQ"},
        ]));
        assert_eq!(getprio(&plan, 3, 0), Outcome::Errno(77));
        assert_eq!(getprio(&plan, 12, 0), Outcome::Errno(77));
        // Each comparison is its own rule, including the one on argument 1.
        assert_eq!(getprio(&plan, 7, 7), Outcome::Errno(77));
        assert_ne!(getprio(&plan, 7, 0), Outcome::Errno(77));
    }

    #[test]
    fn groups_follow_kernel_precedence_and_fall_through() {
        let (plan, _) = compile(json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5,
            "syscalls": [
                {"names": ["exit_group", "getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getpriority"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33,
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 44,
                 "args": [{"index": 1, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["getppid"], "action": "SCMP_ACT_TRAP"},
            ]
        }));
        assert_eq!(getprio(&plan, 0, 0), Outcome::Ok);
        // ERRNO outranks ALLOW; of two ERRNO rules, the lower errno comes first.
        assert_eq!(getprio(&plan, 0, 9), Outcome::Errno(22));
        assert_eq!(getprio(&plan, 0, 8), Outcome::Errno(44));
        // Through every group to the default action.
        assert_eq!(getprio(&plan, 1, 0), Outcome::Errno(5));
        assert_eq!(run(&plan, libc::SYS_getppid, [0; 6]), Outcome::Trapped);
        assert_eq!(run(&plan, libc::SYS_getpid, [0; 6]), Outcome::Ok);
        assert_eq!(run(&plan, libc::SYS_gettid, [0; 6]), Outcome::Errno(5));
    }

    #[test]
    fn flags_are_applied() {
        let (plan, _) = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                      "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9}]
        }));
        assert_eq!(
            plan.flags,
            libc::SECCOMP_FILTER_FLAG_TSYNC
                | libc::SECCOMP_FILTER_FLAG_LOG
                | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
        assert_eq!(run(&plan, libc::SYS_getppid, [0; 6]), Outcome::Errno(9));
        let mut warnings = Vec::new();
        let plan = SeccompPlan::prepare(
            &profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
                            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]})),
            &mut warnings,
        )
        .expect("compiles");
        assert_eq!(plan.flags, 0);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn unknown_names_warn_once() {
        let (plan, warnings) = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS"],
            "syscalls": [
                {"names": ["no_such_call", "getppid", "another_one"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3},
            ]
        }));
        // Architectures no process here can use are ignored without a word.
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let names = &warnings[0];
        assert!(
            names.contains("another_one") && names.matches("no_such_call").count() == 1,
            "{names}"
        );
        assert_eq!(
            run(&plan, libc::SYS_getppid, [0; 6]),
            Outcome::Errno(libc::EPERM)
        );
    }

    /// Names known on a listed foreign architecture only are no unknown names.
    #[test]
    fn names_of_listed_foreign_arches_are_known() {
        let (foreign_name, arch) = match native::FOREIGN.first() {
            Some(f) if f.arch == Arch::ScmpArchX86 => ("fcntl64", "SCMP_ARCH_X86"),
            Some(_) => ("arm_fadvise64_64", "SCMP_ARCH_ARM"),
            None => return,
        };
        let with = |arches: serde_json::Value| {
            compile(
                json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches,
                           "syscalls": [{"names": [foreign_name], "action": "SCMP_ACT_ERRNO"}]}),
            )
            .1
        };
        assert!(with(json!([arch])).is_empty());
        let warnings = with(json!([]));
        assert!(
            warnings.len() == 1 && warnings[0].contains(foreign_name),
            "{warnings:?}"
        );
    }

    /// A system call through the i386 entry point (`int 0x80`) of this x86_64 process, with
    /// three arguments (all 64 bits of `a0` in `rbx`): the result, or -errno.
    #[cfg(target_arch = "x86_64")]
    fn int80(nr: u32, a0: u64, a1: u32, a2: u32) -> i64 {
        let mut eax = nr as i32;
        // SAFETY: the tests make only harmless calls with plain numbers as arguments; rbx
        // (reserved by the compiler) is swapped in and back, and the registers the kernel may
        // change are declared.
        unsafe {
            std::arch::asm!(
                "xchg {b}, rbx",
                "int 0x80",
                "xchg {b}, rbx",
                b = inout(reg) a0 => _,
                inout("eax") eax,
                in("ecx") a1,
                in("edx") a2,
                out("r8") _,
                out("r9") _,
                out("r10") _,
                out("r11") _,
            )
        };
        i64::from(eax)
    }

    /// i386 numbers (asm/unistd_32.h).
    #[cfg(target_arch = "x86_64")]
    const I386_GETPID: u32 = 20;
    #[cfg(target_arch = "x86_64")]
    const I386_GETPPID: u32 = 64;
    #[cfg(target_arch = "x86_64")]
    const I386_UNAME: u32 = 122;
    #[cfg(target_arch = "x86_64")]
    const I386_GETPRIORITY: u32 = 96;

    /// An x32 number: x86_64's with the x32 bit.
    #[cfg(target_arch = "x86_64")]
    fn x32(nr: libc::c_long) -> libc::c_long {
        libc::c_long::from(X32_SYSCALL_BIT) | nr
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_and_i386_calls_cannot_bypass_the_filter() {
        let getpid_x32 = x32(libc::SYS_getpid);
        let deny = |arches: serde_json::Value| {
            compile(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches,
                           "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 61}]}))
            .0
        };
        let int80_getpid = || int80(I386_GETPID, 0, 0, 0);
        let native_only = deny(json!(["SCMP_ARCH_X86_64"]));
        assert_eq!(
            run(&native_only, libc::SYS_getpid, [0; 6]),
            Outcome::Errno(61)
        );
        assert_eq!(
            run(&native_only, getpid_x32, [0; 6]),
            Outcome::Signal(libc::SIGSYS)
        );
        assert_eq!(
            spawn(&native_only, None, int80_getpid).wait(),
            Outcome::Signal(libc::SIGSYS)
        );
        // No architectures at all: the native one only.
        let none = deny(json!([]));
        assert_eq!(
            run(&none, getpid_x32, [0; 6]),
            Outcome::Signal(libc::SIGSYS)
        );
        // Listed: the rules hold there too (before the kernel finds x32 compiled out).
        let all = deny(json!([
            "SCMP_ARCH_X86_64",
            "SCMP_ARCH_X86",
            "SCMP_ARCH_X32"
        ]));
        assert_eq!(run(&all, getpid_x32, [0; 6]), Outcome::Errno(61));
        assert_eq!(spawn(&all, None, int80_getpid).wait(), Outcome::Errno(61));
        // Only i386 listed: x32 calls still kill.
        let x86 = deny(json!(["SCMP_ARCH_X86"]));
        assert_eq!(spawn(&x86, None, int80_getpid).wait(), Outcome::Errno(61));
        assert_eq!(run(&x86, getpid_x32, [0; 6]), Outcome::Signal(libc::SIGSYS));
        // A tracer's "skip" number (-1) is not an x32 call.
        assert_eq!(run(&native_only, -1, [0; 6]), Outcome::Errno(libc::ENOSYS));
        assert_eq!(run(&all, -1, [0; 6]), Outcome::Errno(libc::ENOSYS));
    }

    /// A deny-list profile listing the foreign architectures blocks their calls by their own
    /// numbers (getppid and uname differ on each), with every action, and leaves the others.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn deny_list_holds_on_every_listed_arch() {
        let (plan, warnings) = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 61},
                {"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["fcntl64"], "action": "SCMP_ACT_ERRNO", "errnoRet": 62},
            ]
        }));
        assert!(warnings.is_empty(), "{warnings:?}");
        let mut buf = [0u8; 512];
        let uts = buf.as_mut_ptr() as u64;
        // x86_64
        assert_eq!(run(&plan, libc::SYS_getppid, [0; 6]), Outcome::Errno(61));
        assert_eq!(
            run(&plan, libc::SYS_uname, [uts, 0, 0, 0, 0, 0]),
            Outcome::Signal(libc::SIGSYS)
        );
        assert_eq!(run(&plan, libc::SYS_getpid, [0; 6]), Outcome::Ok);
        // i386 (its 221, fcntl64, is x86_64's getdents64: ERRNO only through int 0x80)
        let i386 = |nr: u32, a0: u64| spawn(&plan, None, move || int80(nr, a0, 0, 0)).wait();
        assert_eq!(i386(I386_GETPPID, 0), Outcome::Errno(61));
        assert_eq!(i386(I386_UNAME, 0), Outcome::Signal(libc::SIGSYS));
        assert_eq!(i386(221, 0), Outcome::Errno(62));
        assert_eq!(i386(I386_GETPID, 0), Outcome::Ok);
        assert_eq!(
            run(&plan, libc::SYS_getdents64, [u64::MAX, 0, 0, 0, 0, 0]),
            Outcome::Errno(libc::EBADF)
        );
        // x32 (compiled out here: what is not denied fails with ENOSYS)
        assert_eq!(
            run(&plan, x32(libc::SYS_getppid), [0; 6]),
            Outcome::Errno(61)
        );
        assert_eq!(
            run(&plan, x32(libc::SYS_uname), [uts, 0, 0, 0, 0, 0]),
            Outcome::Signal(libc::SIGSYS)
        );
        assert_eq!(
            run(&plan, x32(libc::SYS_getpid), [0; 6]),
            Outcome::Errno(libc::ENOSYS)
        );
    }

    /// On the 32-bit architectures only the low 32 bits of an argument count: a value with
    /// high bits matches its low half, and high bits in the register do not dodge a rule.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn foreign_arches_compare_the_low_32_bits() {
        const HI: u64 = 0x1_0000_0000;
        let (plan, _) = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
                          "args": [{"index": 0, "value": HI, "op": "SCMP_CMP_EQ"}]}]
        }));
        // Native: all 64 bits.
        assert_eq!(getprio(&plan, HI, 0), Outcome::Errno(77));
        assert_eq!(getprio(&plan, 0, 0), Outcome::Ok);
        // i386
        let i386 = |a0: u64| spawn(&plan, None, move || int80(I386_GETPRIORITY, a0, 0, 0)).wait();
        assert_eq!(i386(0), Outcome::Errno(77));
        assert_eq!(i386(HI), Outcome::Errno(77));
        assert_eq!(i386(1), Outcome::Ok);
        // x32
        let prio_x32 = x32(libc::SYS_getpriority);
        assert_eq!(run(&plan, prio_x32, [0; 6]), Outcome::Errno(77));
        assert_eq!(
            run(&plan, prio_x32, [HI, 0, 0, 0, 0, 0]),
            Outcome::Errno(77)
        );
        assert_eq!(
            run(&plan, prio_x32, [1, 0, 0, 0, 0, 0]),
            Outcome::Errno(libc::ENOSYS)
        );

        // A masked datum with bits outside the mask only above bit 31: never on x86_64,
        // compared on its low half on the 32-bit ones.
        let (plan, _) = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
                          "args": [{"index": 0, "value": 0xf, "valueTwo": HI | 1,
                                    "op": "SCMP_CMP_MASKED_EQ"}]}]
        }));
        assert_eq!(getprio(&plan, HI | 1, 0), Outcome::Ok);
        let i386 = |a0: u64| spawn(&plan, None, move || int80(I386_GETPRIORITY, a0, 0, 0)).wait();
        assert_eq!(i386(0x21), Outcome::Errno(77));
        assert_eq!(i386(0), Outcome::Ok);
    }

    /// An allow-list profile listing i386: small enough for every rule there too.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn allow_list_holds_on_listed_arches() {
        let (plan, warnings) = compile(json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["exit_group", "exit", "getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getppid"], "action": "SCMP_ACT_TRAP"},
            ]
        }));
        assert!(warnings.is_empty(), "{warnings:?}");
        let i386 = |nr: u32| spawn(&plan, None, move || int80(nr, 0, 0, 0)).wait();
        assert_eq!(i386(I386_GETPID), Outcome::Ok);
        assert_eq!(i386(I386_GETPPID), Outcome::Trapped);
        assert_eq!(i386(I386_UNAME), Outcome::Errno(5));
        assert_eq!(run(&plan, libc::SYS_getpid, [0; 6]), Outcome::Ok);
        assert_eq!(run(&plan, libc::SYS_getppid, [0; 6]), Outcome::Trapped);
        assert_eq!(run(&plan, libc::SYS_uname, [0; 6]), Outcome::Errno(5));
        // x32 not listed: killed.
        assert_eq!(
            run(&plan, x32(libc::SYS_getpid), [0; 6]),
            Outcome::Signal(libc::SIGSYS)
        );
    }

    #[test]
    fn invalid_profiles_name_the_field() {
        let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getppid"], "action": "SCMP_ACT_KILL", "errnoRet": 1},
        ]}));
        assert_eq!(e.field, "linux.seccomp.syscalls[1].errnoRet", "{e}");
        let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}));
        assert_eq!(e.field, "linux.seccomp.defaultErrnoRet", "{e}");
        let e = compile_err(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}));
        assert_eq!(e.field, "linux.seccomp.defaultErrnoRet", "{e}");
        let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]},
        ]}));
        assert_eq!(e.field, "linux.seccomp.syscalls[0].args[1].index", "{e}");
        let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": [], "action": "SCMP_ACT_ERRNO"},
        ]}));
        assert_eq!(e.field, "linux.seccomp.syscalls[0].names", "{e}");
        let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getpid", ""], "action": "SCMP_ACT_ERRNO"},
        ]}));
        assert_eq!(e.field, "linux.seccomp.syscalls[0].names[1]", "{e}");
        let e = compile_err(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}));
        assert_eq!(e.field, "linux.seccomp.defaultAction", "{e}");
        let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"},
        ]}));
        assert_eq!(e.field, "linux.seccomp.listenerPath", "{e}");
        let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"}));
        assert_eq!(e.field, "linux.seccomp.listenerMetadata", "{e}");
    }

    #[test]
    fn too_large_a_program_is_an_error() {
        let rules: Vec<_> = (0..700u64)
            .map(|v| {
                json!({"names": ["getpriority"], "action": "SCMP_ACT_ERRNO",
                            "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"},
                                     {"index": 1, "value": v, "op": "SCMP_CMP_EQ"}]})
            })
            .collect();
        let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
        assert_eq!(e.field, "linux.seccomp");
        assert!(e.reason.contains("4096"), "{e}");

        // Fits for the native architecture alone, but these rules are more restrictive than
        // the default action: every listed architecture must have them, and they do not fit.
        let rules: Vec<_> = (0..300u64)
            .map(|v| {
                json!({"names": ["getpriority"], "action": "SCMP_ACT_ERRNO",
                            "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]})
            })
            .collect();
        let (plan, _) = compile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
        assert!(plan.len() > MAX_INSNS / 3, "{}", plan.len());
        let arches: Vec<String> = std::iter::once(native::ARCH)
            .chain(native::FOREIGN.iter().map(|f| f.arch))
            .map(|a| a.to_string())
            .collect();
        let e = compile_err(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches,
                                   "syscalls": rules}),
        );
        assert_eq!(e.field, "linux.seccomp");
        assert!(e.reason.contains("4096"), "{e}");
    }

    #[test]
    fn notify_hands_the_listener_to_the_parent() {
        use nix::sys::socket::{
            AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, socketpair,
        };
        let (plan, _) = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert!(plan.uses_notify());
        assert_eq!(plan.listener_path(), Some(Path::new("/run/agent.sock")));
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        let child = spawn(&plan, Some(theirs.as_raw_fd()), || {
            sys(GETPRIO, [0, 0x1234, 0, 0, 0, 0])
        });
        drop(theirs);

        let mut byte = [0u8; 1];
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            ours.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        let listener = msg
            .cmsgs()
            .expect("cmsgs")
            .find_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("the child sent the listener fd");
        // SAFETY: we own the received fd from here on.
        let listener =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(listener) };

        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, 10_000) };
        assert_eq!(ready, 1, "no notification within 10 s");
        // SAFETY: a zeroed seccomp_notif is what NOTIF_RECV expects.
        let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: notif is a writable seccomp_notif.
        let r = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut notif,
            )
        };
        assert_eq!(r, 0, "NOTIF_RECV: {}", std::io::Error::last_os_error());
        assert_eq!(i64::from(notif.data.nr), GETPRIO);
        assert_eq!(notif.data.args[1], 0x1234);
        assert_eq!(notif.pid as libc::pid_t, child.0);
        let mut resp = libc::seccomp_notif_resp {
            id: notif.id,
            val: 0,
            error: -libc::EXDEV,
            flags: 0,
        };
        // SAFETY: resp is a valid seccomp_notif_resp.
        let r = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &mut resp,
            )
        };
        assert_eq!(r, 0, "NOTIF_SEND: {}", std::io::Error::last_os_error());
        assert_eq!(child.wait(), Outcome::Errno(libc::EXDEV));
    }

    /// A private directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "berth-seccomp-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).expect("create temp dir");
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn send_to_listener_sends_the_state_and_one_fd() {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        use std::io::Read;
        use std::os::unix::net::UnixListener;

        let dir = TempDir::new();
        let sock = dir.0.join("agent.sock");
        let (plan, _) = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "listenerMetadata": "MKNOD=/dev/null",
            "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        let listener = UnixListener::bind(&sock).expect("bind");
        let agent = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut buf = vec![0u8; 65536];
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!([RawFd; 4]);
            let msg = recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .expect("recvmsg");
            let n = msg.bytes;
            let mut fds = Vec::new();
            for c in msg.cmsgs().expect("cmsgs") {
                if let ControlMessageOwned::ScmRights(f) = c {
                    fds.extend(f);
                }
            }
            let mut data = buf[..n].to_vec();
            conn.read_to_end(&mut data).expect("read the rest");
            (data, fds)
        });
        let devnull = std::fs::File::open("/dev/null").expect("open /dev/null");
        let state = json!({"ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": 42,
                           "bundle": "/b"});
        send_to_listener(&plan, &state, 42, devnull.as_raw_fd()).expect("send");
        let (data, fds) = agent.join().expect("agent thread");
        let fds: Vec<std::os::fd::OwnedFd> = fds
            .into_iter()
            // SAFETY: the received fds are ours.
            .map(|f| unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(f) })
            .collect();
        assert_eq!(fds.len(), 1, "exactly one fd");
        let got = nix::sys::stat::fstat(&fds[0]).expect("fstat");
        let want = nix::sys::stat::stat("/dev/null").expect("stat");
        assert_eq!((got.st_rdev, got.st_ino), (want.st_rdev, want.st_ino));
        let v: serde_json::Value = serde_json::from_slice(&data).expect("JSON");
        assert_eq!(v["ociVersion"], oci_spec::runtime::VERSION);
        assert_eq!(v["fds"], json!(["seccompFd"]));
        assert_eq!(v["pid"], 42);
        assert_eq!(v["metadata"], "MKNOD=/dev/null");
        assert_eq!(v["state"], state);

        // Nobody listening: an error naming the path.
        drop(dir);
        let e = send_to_listener(&plan, &state, 42, devnull.as_raw_fd()).expect_err("no agent");
        assert!(e.to_string().contains("agent.sock"), "{e}");
    }

    /// Names an x86_64 container default profile (Docker's, podman's) does not allow
    /// unconditionally.
    const NOT_ALLOWED: &[&str] = &[
        "_sysctl",
        "acct",
        "add_key",
        "afs_syscall",
        "bpf",
        "clock_adjtime",
        "clock_settime",
        "clone",
        "clone3",
        "create_module",
        "delete_module",
        "finit_module",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "get_kernel_syms",
        "get_mempolicy",
        "getpmsg",
        "init_module",
        "ioperm",
        "iopl",
        "kcmp",
        "kexec_file_load",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "mbind",
        "mount",
        "mount_setattr",
        "move_mount",
        "move_pages",
        "name_to_handle_at",
        "nfsservctl",
        "open_by_handle_at",
        "open_tree",
        "perf_event_open",
        "personality",
        "pivot_root",
        "process_vm_readv",
        "process_vm_writev",
        "ptrace",
        "putpmsg",
        "query_module",
        "quotactl",
        "quotactl_fd",
        "reboot",
        "request_key",
        "security",
        "set_mempolicy",
        "setns",
        "settimeofday",
        "swapoff",
        "swapon",
        "syslog",
        "sysfs",
        "tuxcall",
        "umount2",
        "unshare",
        "uselib",
        "userfaultfd",
        "ustat",
        "vhangup",
        "vserver",
    ];

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn container_default_profile_fits_and_works() {
        let mut allowed: Vec<&str> = native::TABLE
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| !NOT_ALLOWED.contains(n))
            .collect();
        // Names such profiles list for other architectures.
        allowed.extend([
            "_llseek",
            "_newselect",
            "chown32",
            "fcntl64",
            "fstat64",
            "sigreturn",
            "arm_fadvise64_64",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ]);
        assert!(allowed.len() > 300, "{}", allowed.len());
        let mut syscalls = vec![json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
        for v in [0u64, 8, 131072, 131080, 4294967295] {
            syscalls.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                                 "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}));
        }
        syscalls.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}));
        syscalls.push(
            json!({"names": ["s390_pci_mmio_read", "s390_runtime_instr"],
                             "action": "SCMP_ACT_ALLOW"}),
        );
        let (plan, warnings) = compile(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": syscalls,
        }));
        eprintln!("default profile: {} BPF instructions", plan.len());
        assert!(plan.len() <= MAX_INSNS);
        // Every rule on all three architectures; fcntl64 is an i386 call.
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("s390_runtime_instr")
                && warnings[0].contains("cacheflush")
                && !warnings[0].contains("fcntl64"),
            "{warnings:?}"
        );

        assert_eq!(run(&plan, libc::SYS_getpid, [0; 6]), Outcome::Ok);
        assert_eq!(getprio(&plan, 0, 0), Outcome::Ok);
        assert_eq!(
            run(&plan, libc::SYS_kcmp, [0, 0, 99, 0, 0, 0]),
            Outcome::Errno(libc::EPERM)
        );
        assert_eq!(
            run(&plan, libc::SYS_clone3, [0; 6]),
            Outcome::Errno(libc::ENOSYS)
        );
        assert_eq!(
            run(&plan, libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]),
            Outcome::Ok
        );
        assert_eq!(
            run(&plan, libc::SYS_personality, [0x0040000, 0, 0, 0, 0, 0]),
            Outcome::Errno(libc::EPERM)
        );
        let newuser = libc::CLONE_NEWUSER as u64;
        assert_eq!(
            run(&plan, libc::SYS_clone, [newuser, 0, 0, 0, 0, 0]),
            Outcome::Errno(libc::EPERM)
        );
        // i386 (kcmp 349, clone3 435, personality 136) and x32 (compiled out here: what is
        // allowed fails with ENOSYS).
        let i386 = |nr: u32, a0: u64| spawn(&plan, None, move || int80(nr, a0, 0, 0)).wait();
        assert_eq!(i386(I386_GETPID, 0), Outcome::Ok);
        assert_eq!(i386(349, 0), Outcome::Errno(libc::EPERM));
        assert_eq!(i386(435, 0), Outcome::Errno(libc::ENOSYS));
        assert_eq!(i386(136, 0xffff_ffff), Outcome::Ok);
        assert_eq!(i386(136, 0x0040000), Outcome::Errno(libc::EPERM));
        assert_eq!(
            run(&plan, x32(libc::SYS_getpid), [0; 6]),
            Outcome::Errno(libc::ENOSYS)
        );
        assert_eq!(
            run(&plan, x32(libc::SYS_kcmp), [0; 6]),
            Outcome::Errno(libc::EPERM)
        );
    }

    /// When every rule on every listed architecture does not fit, the foreign ones keep the
    /// rules more restrictive than the default action and lose the others (failing closed).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn foreign_arches_keep_the_restrictive_rules_when_all_do_not_fit() {
        let mut syscalls: Vec<_> = (0..450u64)
            .map(|v| {
                json!({"names": ["getpriority"], "action": "SCMP_ACT_ALLOW",
                       "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]})
            })
            .collect();
        syscalls.push(json!({"names": ["exit_group", "getpid"], "action": "SCMP_ACT_ALLOW"}));
        syscalls.push(json!({"names": ["getppid"], "action": "SCMP_ACT_TRAP"}));
        let profile = |arches: serde_json::Value| {
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5,
                   "architectures": arches, "syscalls": syscalls})
        };
        let (native_only, warnings) = compile(profile(json!(["SCMP_ARCH_X86_64"])));
        assert!(warnings.is_empty(), "{warnings:?}");
        let (plan, warnings) = compile(profile(json!([
            "SCMP_ARCH_X86_64",
            "SCMP_ARCH_X86",
            "SCMP_ARCH_X32"
        ])));
        eprintln!(
            "native only: {} BPF instructions, with i386 and x32: {}",
            native_only.len(),
            plan.len()
        );
        assert!(plan.len() <= MAX_INSNS);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("SCMP_ARCH_X86, SCMP_ARCH_X32") && warnings[0].contains("4096"),
            "{warnings:?}"
        );
        // Native: everything.
        assert_eq!(getprio(&plan, 0, 0), Outcome::Ok);
        assert_eq!(run(&plan, libc::SYS_getpid, [0; 6]), Outcome::Ok);
        assert_eq!(run(&plan, libc::SYS_getppid, [0; 6]), Outcome::Trapped);
        // i386 and x32: TRAP kept, ALLOW left out.
        let i386 = |nr: u32| spawn(&plan, None, move || int80(nr, 0, 0, 0)).wait();
        assert_eq!(i386(I386_GETPPID), Outcome::Trapped);
        assert_eq!(i386(I386_GETPID), Outcome::Errno(5));
        assert_eq!(i386(I386_GETPRIORITY), Outcome::Errno(5));
        assert_eq!(run(&plan, x32(libc::SYS_getppid), [0; 6]), Outcome::Trapped);
        assert_eq!(run(&plan, x32(libc::SYS_getpid), [0; 6]), Outcome::Errno(5));
    }

    #[test]
    fn syscall_table_is_sorted_and_right() {
        for table in std::iter::once(native::TABLE).chain(native::FOREIGN.iter().map(|f| f.table)) {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
            assert_eq!(lookup(table, "no_such_call"), None);
        }
        for (name, nr) in [
            ("getpid", libc::SYS_getpid),
            ("getpriority", libc::SYS_getpriority),
            ("openat", libc::SYS_openat),
            ("clone3", libc::SYS_clone3),
        ] {
            assert_eq!(
                lookup(native::TABLE, name).map(i64::from),
                Some(nr),
                "{name}"
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn foreign_syscall_tables_are_right() {
        let x86 = |name| lookup(syscall_table::X86, name);
        let x32 = |name| lookup(syscall_table::X32, name);
        // asm/unistd_32.h
        assert_eq!(x86("getpid"), Some(20));
        assert_eq!(x86("getppid"), Some(64));
        assert_eq!(x86("uname"), Some(122));
        assert_eq!(x86("fcntl64"), Some(221));
        assert_eq!(x86("cachestat"), Some(451));
        assert_eq!(x86("arch_prctl"), Some(384));
        // x32: x86_64's numbers with the x32 bit, but its own from 512 on.
        let bit = |nr: libc::c_long| Some(X32_SYSCALL_BIT | nr as u32);
        assert_eq!(x32("getpid"), bit(libc::SYS_getpid));
        assert_eq!(x32("getppid"), bit(libc::SYS_getppid));
        assert_eq!(x32("ioctl"), bit(514));
        assert_eq!(x32("execve"), bit(520));
        assert_eq!(x32("cachestat"), bit(451));
        assert_eq!(x32("fcntl64"), None);
    }
}
