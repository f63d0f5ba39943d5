//! The front end: an OCI `linux.seccomp` profile, checked field by field (and against the
//! running kernel), to a [`Filter`], the description the back end compiles.
//!
//! A [`Filter`] holds the profile's rules grouped by their complete return value (action and
//! data) in the kernel's precedence order, the system call names of each group (those known on
//! at least one filtered architecture), the foreign architectures listed, the filter flags and
//! the listener's path and metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::Error;
use crate::arch::{Foreign, Width, native};
use crate::probe::KernelProbe;
use crate::syscall_table;

/// The highest errno the kernel returns from `SECCOMP_RET_ERRNO` (`MAX_ERRNO`).
const MAX_ERRNO: u32 = 4095;

/// A comparison operator of `args`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

/// One comparison of an entry's `args`.
#[derive(Clone, Debug)]
pub(crate) struct Cmp {
    pub(crate) index: u8,
    pub(crate) op: Op,
    pub(crate) value: u64,
}

/// The rules of one syscall in one group, ORed, each a list of ANDed comparisons: `None`
/// matches whatever the arguments.
pub(crate) type Chain = Option<Vec<Vec<Cmp>>>;

/// The groups: by return value (in precedence order), the chain of each system call name.
pub(crate) type Groups = BTreeMap<(i32, u32), BTreeMap<&'static str, Chain>>;

/// A profile checked and grouped, ready for the back end ([`Program::from_filter`]).
///
/// [`Program::from_filter`]: crate::Program::from_filter
///
/// ```
/// let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(r#"{
///     "defaultAction": "SCMP_ACT_ALLOW",
///     "syscalls": [{"names": ["kcmp", "no_such_call"], "action": "SCMP_ACT_ERRNO"}]
/// }"#)?;
/// let filter = berth_seccomp::Filter::from_profile(&profile)?;
/// assert!(!filter.uses_notify());
/// assert!(filter.warnings()[0].contains("no_such_call"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Filter {
    /// `defaultAction` as a `SECCOMP_RET_*` value.
    pub(crate) default: u32,
    pub(crate) groups: Groups,
    /// The foreign architectures of this host the profile lists.
    pub(crate) foreign: Vec<&'static Foreign>,
    /// `SECCOMP_FILTER_FLAG_*`: the profile's, plus `NEW_LISTENER` with `SCMP_ACT_NOTIFY`.
    pub(crate) flags: libc::c_ulong,
    pub(crate) listener_path: Option<PathBuf>,
    pub(crate) listener_metadata: Option<String>,
    pub(crate) warnings: Vec<String>,
}

impl Filter {
    /// Checks `profile` and groups its rules.
    ///
    /// System call names known on none of the filtered architectures are skipped with one
    /// warning listing them (see [`warnings`](Self::warnings)), as runc skips the names
    /// libseccomp does not know; a name missing on only some of them is skipped there
    /// silently.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] naming the field (an `errnoRet` on an action without one, an
    /// argument index above 5, an empty `names` or name, `SCMP_ACT_NOTIFY` as the default
    /// action or without `listenerPath`, `listenerMetadata` without `listenerPath`) and
    /// [`Error::Unsupported`] for an action or flag the running kernel does not support.
    pub fn from_profile(profile: &LinuxSeccomp) -> Result<Filter, Error> {
        let s = profile;
        let mut warnings = Vec::new();
        let mut probe = KernelProbe::default();
        let default = action_value(
            s.default_action(),
            s.default_errno_ret(),
            "linux.seccomp.defaultAction",
            "linux.seccomp.defaultErrnoRet",
            &mut probe,
        )?;
        if s.default_action() == LinuxSeccompAction::ScmpActNotify {
            return Err(Error::invalid(
                "linux.seccomp.defaultAction",
                "cannot be SCMP_ACT_NOTIFY: the container init's own system calls (including \
                 the one handing the listener to the runtime) would wait for an agent",
            ));
        }

        let foreign = listed_foreign(s);
        let known = |name: &str| {
            syscall_table::entry(native::TABLE, name)
                .or_else(|| {
                    foreign
                        .iter()
                        .find_map(|f| syscall_table::entry(f.table, name))
                })
                .map(|(n, _)| n)
        };
        let mut groups: Groups = BTreeMap::new();
        let mut unknown: Vec<&str> = Vec::new();
        let mut notify = false;
        for (i, entry) in s.syscalls().iter().flatten().enumerate() {
            let field = format!("linux.seccomp.syscalls[{i}]");
            if entry.names().is_empty() {
                return Err(Error::invalid(format!("{field}.names"), "is empty"));
            }
            // An empty name is a broken profile, not a syscall some kernel may have.
            if let Some(j) = entry.names().iter().position(String::is_empty) {
                return Err(Error::invalid(
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
                let Some(name) = known(name) else {
                    if !unknown.contains(&name.as_str()) {
                        unknown.push(name);
                    }
                    continue;
                };
                notify |= entry.action() == LinuxSeccompAction::ScmpActNotify;
                let chain = group.entry(name).or_insert_with(|| Some(Vec::new()));
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
            return Err(Error::invalid(
                "linux.seccomp.listenerPath",
                "is required when a rule uses SCMP_ACT_NOTIFY",
            ));
        }
        if s.listener_metadata().is_some() && s.listener_path().is_none() {
            return Err(Error::invalid(
                "linux.seccomp.listenerMetadata",
                "must not be set without listenerPath",
            ));
        }

        let flags = filter_flags(s, notify, &mut probe, &mut warnings)?;
        Ok(Filter {
            default,
            groups,
            foreign,
            flags,
            listener_path: s.listener_path().clone(),
            listener_metadata: s.listener_metadata().clone(),
            warnings,
        })
    }

    /// What was skipped or ignored, one line each, naming the field (never an error).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether a rule is `SCMP_ACT_NOTIFY` (the default action cannot be): the filter then
    /// goes in with `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
    pub fn uses_notify(&self) -> bool {
        self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0
    }

    /// `listenerPath`.
    pub fn listener_path(&self) -> Option<&Path> {
        self.listener_path.as_deref()
    }
}

/// The `SECCOMP_FILTER_FLAG_*` bits of `flags`, checked against the running kernel, plus
/// `NEW_LISTENER` (and `TSYNC_ESRCH` with `TSYNC`) when a rule is `SCMP_ACT_NOTIFY`.
fn filter_flags(
    s: &LinuxSeccomp,
    notify: bool,
    probe: &mut KernelProbe,
    warnings: &mut Vec<String>,
) -> Result<libc::c_ulong, Error> {
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
            return Err(Error::unsupported(
                format!("linux.seccomp.flags[{i}]"),
                flag.to_string(),
            ));
        }
        flags |= bit;
    }
    // The kernel refuses TSYNC with NEW_LISTENER unless told to report a thread that cannot
    // sync as ESRCH (since 5.7).
    if notify && flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
        flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
    }
    if notify {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    }
    // (No flags at all is always supported.)
    if flags != 0 && !probe.flag_supported(flags) {
        return Err(Error::unsupported(
            "linux.seccomp.flags",
            format!("combination {flags:#x}"),
        ));
    }
    Ok(flags)
}

/// The foreign architectures of this host the profile lists.
fn listed_foreign(s: &LinuxSeccomp) -> Vec<&'static Foreign> {
    native::FOREIGN
        .iter()
        .filter(|f| s.architectures().iter().flatten().any(|a| *a == f.arch))
        .collect()
}

/// Sort key of a return value: the kernel's precedence of its action (`ACTION_FULL` as a signed
/// number, lowest first), then the data.
pub(crate) fn precedence_key(value: u32) -> (i32, u32) {
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
) -> Result<u32, Error> {
    use LinuxSeccompAction as A;
    let data = |max: u32| match errno_ret {
        None => Ok(libc::EPERM as u32),
        Some(v) if v <= max => Ok(v),
        Some(v) => Err(Error::invalid(
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
        return Err(Error::invalid(
            errno_field,
            format!(
                "is set, but {action} returns no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)"
            ),
        ));
    }
    if !probe.action_supported(value & libc::SECCOMP_RET_ACTION_FULL) {
        return Err(Error::unsupported(action_field, action.to_string()));
    }
    Ok(value)
}

/// The rules of one entry: `None` for no `args` (matches any arguments), else the rules, ORed,
/// each a list of ANDed comparisons.
fn entry_rules(args: &[LinuxSeccompArg], field: &str) -> Result<Chain, Error> {
    if args.is_empty() {
        return Ok(None);
    }
    let mut cmps = Vec::with_capacity(args.len());
    let mut seen = [0usize; 6];
    for (j, arg) in args.iter().enumerate() {
        let index = arg.index();
        let Some(count) = seen.get_mut(index) else {
            return Err(Error::invalid(
                format!("{field}.args[{j}].index"),
                format!("{index} is out of range: system calls have arguments 0 to 5"),
            ));
        };
        *count += 1;
        let (op, value) = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => (Op::Ne, arg.value()),
            LinuxSeccompOperator::ScmpCmpLt => (Op::Lt, arg.value()),
            LinuxSeccompOperator::ScmpCmpLe => (Op::Le, arg.value()),
            LinuxSeccompOperator::ScmpCmpEq => (Op::Eq, arg.value()),
            LinuxSeccompOperator::ScmpCmpGe => (Op::Ge, arg.value()),
            LinuxSeccompOperator::ScmpCmpGt => (Op::Gt, arg.value()),
            LinuxSeccompOperator::ScmpCmpMaskedEq => {
                (Op::MaskedEq(arg.value()), arg.value_two().unwrap_or(0))
            }
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
    /// Whether the comparison can never match: `(arg & mask)` is compared with
    /// `(valueTwo & mask)` by the back end, while a `valueTwo` with (compared) bits outside the
    /// mask can never equal `(arg & mask)`.
    pub(crate) fn never(&self, width: Width) -> bool {
        let compared = match width {
            Width::Bits64 => u64::MAX,
            Width::Bits32 => u64::from(u32::MAX),
        };
        matches!(self.op, Op::MaskedEq(mask) if self.value & !mask & compared != 0)
    }
}

/// Whether no rule of `rules` can ever match on an architecture of `width`.
pub(crate) fn never(rules: &[Vec<Cmp>], width: Width) -> bool {
    rules.iter().all(|r| r.iter().any(|c| c.never(width)))
}
