//! # berth-seccomp
//!
//! An OCI `linux.seccomp` profile compiled to one classic-BPF program in the parent, for every
//! architecture the profile lists, with `SCMP_ACT_NOTIFY`, and installed by a fragile child
//! (between `clone` and `execve`) with one raw `seccomp(2)`: no libseccomp, no allocation in
//! the child.
//!
//! ```
//! let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(r#"{
//!     "defaultAction": "SCMP_ACT_ERRNO",
//!     "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
//!     "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
//! }"#)?;
//! let program = berth_seccomp::compile(&profile)?;
//! assert!(program.warnings().is_empty());
//! println!("{} BPF instructions", program.len());
//! // ... later, in the child: program.install()
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The pieces, in their order: the front end ([`Filter::from_profile`]) checks the profile
//! and groups its rules, the back end ([`Program::from_filter`]) writes the BPF program, the
//! child installs it ([`Program::install`], with [`set_no_new_privs`] first when it has no
//! `CAP_SYS_ADMIN`), and the runtime hands a notify listener to the agent at `listenerPath`
//! ([`send_to_listener`]). [`features`] is the profile support for the runtime-spec features
//! document. [`compile`] is the front and back end in one call.
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
//! match whatever their arguments are are not left to seccompiler (five instructions each) but
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
//! - System call names this build's tables (`src/syscall_table/`, one file per architecture)
//!   know on none of the filtered architectures are skipped with one warning, as runc skips the
//!   names libseccomp does not know; a name missing on only some of them is skipped there
//!   silently.
//! - Actions and flags are checked against the running kernel (`SECCOMP_GET_ACTION_AVAIL`,
//!   `SECCOMP_GET_NOTIF_SIZES`, a flags probe): an unsupported one is an error.
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
//! [`Program::install`] makes one raw `seccomp(SECCOMP_SET_MODE_FILTER)` call on the
//! prepared program. The kernel requires `no_new_privs` or `CAP_SYS_ADMIN` at that moment.
//! With `SCMP_ACT_NOTIFY` the filter is installed with `SECCOMP_FILTER_FLAG_NEW_LISTENER`; the
//! listener fd goes to the runtime, which hands it to the agent at `listenerPath` with
//! [`send_to_listener`].

#![cfg(target_os = "linux")]
#![deny(missing_docs)]

mod arch;
mod backend;
mod error;
mod features;
mod frontend;
mod install;
mod listener;
mod probe;
mod syscall_table;

#[cfg(test)]
mod tests;

pub use arch::host_architectures;
pub use backend::{MAX_INSNS, Program};
pub use error::Error;
pub use features::features;
pub use frontend::Filter;
pub use install::set_no_new_privs;
pub use listener::send_to_listener;
pub use oci_spec::runtime::{Arch, LinuxSeccomp};

/// Compiles `profile`: [`Filter::from_profile`], then [`Program::from_filter`].
///
/// What was skipped (unknown system call names, rules left out on foreign architectures for
/// want of room) is in [`Program::warnings`], never an error.
///
/// # Errors
///
/// An [`Error`] naming the field of the profile that is invalid, unsupported by the running
/// kernel, or makes the program too large.
///
/// ```
/// let profile: berth_seccomp::LinuxSeccomp = serde_json::from_str(r#"{
///     "defaultAction": "SCMP_ACT_ALLOW",
///     "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
///                   "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]
/// }"#)?;
/// let program = berth_seccomp::compile(&profile)?;
/// assert!(!program.uses_notify());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn compile(profile: &LinuxSeccomp) -> Result<Program, Error> {
    Program::from_filter(Filter::from_profile(profile)?)
}
