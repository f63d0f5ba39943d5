//! The back end: a [`Filter`] to one classic-BPF [`Program`] for every architecture it lists.
//!
//! The argument comparisons of each group are compiled by seccompiler (with two placeholder
//! actions, its architecture check removed, its returns rewritten); the layout around them is
//! ours: the dispatch on `seccomp_data.arch` (and on x32's bit of the number), one section per
//! architecture with its own system call numbers, one `JEQ` per system call matched whatever
//! its arguments, and the jumps from one group to the next.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::Arch;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use crate::Error;
use crate::arch::{Foreign, Width, X32_SYSCALL_BIT, native};
use crate::frontend::{Cmp, Filter, Groups, Op, precedence_key};
use crate::syscall_table::{self, Table};

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
pub const MAX_INSNS: usize = 4096;

/// What system calls of architectures the profile does not list get.
const BAD_ARCH_ACTION: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// Placeholder actions the groups are compiled with, rewritten afterwards.
const PLACEHOLDER_MATCH: SeccompAction = SeccompAction::Trace(0xbe01);
const PLACEHOLDER_MISMATCH: SeccompAction = SeccompAction::Trace(0xbe02);

/// A compiled profile: the BPF program, the flags to install it with, and the listener's
/// path and metadata. Prepared in the parent; [`Program::install`] is all the child does.
///
/// ```
/// let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(r#"{
///     "defaultAction": "SCMP_ACT_ALLOW",
///     "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
///     "syscalls": [{"names": ["kcmp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
/// }"#)?;
/// let filter = berth_seccomp::Filter::from_profile(&profile)?;
/// let program = berth_seccomp::Program::from_filter(filter)?;
/// for (arch, len) in program.sections() {
///     println!("{arch}: {len} instructions");
/// }
/// assert!(program.len() <= berth_seccomp::MAX_INSNS);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Program {
    pub(crate) insns: Vec<libc::sock_filter>,
    pub(crate) flags: libc::c_ulong,
    sections: Sections,
    filter: Filter,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("instructions", &self.insns.len())
            .field("sections", &self.sections)
            .field("flags", &self.flags)
            .field("listener_path", &self.filter.listener_path)
            .finish()
    }
}

impl Program {
    /// Compiles `filter` for the native architecture and every foreign one it lists.
    ///
    /// When every group on every listed architecture does not fit in the kernel's 4096
    /// instructions, the foreign sections keep only the groups whose action is at least as
    /// restrictive as `defaultAction` (the ones a call through a foreign architecture would
    /// otherwise escape), and a warning says so.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] when even that does not fit; [`Error::Backend`] when the argument
    /// comparisons cannot be compiled.
    pub fn from_filter(mut filter: Filter) -> Result<Program, Error> {
        let (insns, sections) = match assemble(&filter, true) {
            Ok(done) => done,
            Err(Assemble::TooLarge(_)) => {
                let done = assemble(&filter, false).map_err(Assemble::into_error)?;
                let names: Vec<String> =
                    filter.foreign.iter().map(|f| f.arch.to_string()).collect();
                filter.warnings.push(format!(
                    "linux.seccomp.architectures: with every rule compiled for {} too, the \
                     program would exceed the kernel's limit of {MAX_INSNS} BPF instructions; \
                     for those, the rules whose action is less restrictive than defaultAction \
                     are left out (their system calls get defaultAction)",
                    names.join(", ")
                ));
                done
            }
            Err(e) => return Err(e.into_error()),
        };
        Ok(Program {
            insns,
            flags: filter.flags,
            sections,
            filter,
        })
    }

    /// The number of BPF instructions.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether the program has no instructions (never: it always ends in a return).
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// The instructions, as the kernel takes them.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.insns
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits [`install`](Self::install) uses.
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }

    /// The length of each architecture's section, the native one first (the dispatch on
    /// `seccomp_data.arch` in front of them is not counted).
    pub fn sections(&self) -> &[(Arch, usize)] {
        &self.sections
    }

    /// What was skipped or ignored, one line each, naming the field (never an error).
    pub fn warnings(&self) -> &[String] {
        &self.filter.warnings
    }

    /// Whether a rule is `SCMP_ACT_NOTIFY`: [`install`](Self::install) then returns the
    /// listener fd, for [`send_to_listener`](crate::send_to_listener).
    pub fn uses_notify(&self) -> bool {
        self.filter.uses_notify()
    }

    /// `listenerPath`.
    pub fn listener_path(&self) -> Option<&Path> {
        self.filter.listener_path()
    }

    /// `listenerMetadata`.
    pub fn listener_metadata(&self) -> Option<&str> {
        self.filter.listener_metadata.as_deref()
    }
}

/// Why [`assemble`] failed.
enum Assemble {
    /// The program would have at least this many instructions, over [`MAX_INSNS`].
    TooLarge(usize),
    /// Anything else.
    Other(Error),
}

impl Assemble {
    fn into_error(self) -> Error {
        match self {
            Assemble::TooLarge(len) => Error::TooLarge {
                field: "linux.seccomp",
                len,
                max: MAX_INSNS,
            },
            Assemble::Other(e) => e,
        }
    }
}

impl From<Error> for Assemble {
    fn from(e: Error) -> Self {
        Assemble::Other(e)
    }
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Each architecture's section length, the native one first.
type Sections = Vec<(Arch, usize)>;

/// The whole program: architecture dispatch, then one section per architecture (the native
/// one first), each its groups and `RET default`; and each section's length. With `full`, the
/// foreign sections get every group; without, only those whose action is at least as
/// restrictive as the default one.
fn assemble(filter: &Filter, full: bool) -> Result<(Vec<libc::sock_filter>, Sections), Assemble> {
    let (groups, default, foreign) = (&filter.groups, filter.default, &filter.foreign);
    let x32 = foreign.iter().position(|f| f.arch == Arch::ScmpArchX32);
    // Foreign architectures told apart by `seccomp_data.arch`.
    let dispatched: Vec<&Foreign> = foreign
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != x32)
        .map(|(_, f)| *f)
        .collect();

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
    let mut sections = vec![(native::ARCH, native_len)];
    let mut starts = Vec::with_capacity(foreign.len());
    let mut at = dispatch_len + native_len;
    for (f, body) in foreign.iter().zip(&foreign_bodies) {
        starts.push(at);
        sections.push((f.arch, body.len() + 1));
        at += body.len() + 1;
    }
    if at > MAX_INSNS {
        return Err(Assemble::TooLarge(at));
    }
    let start_of = |arch: Arch| {
        foreign
            .iter()
            .position(|f| f.arch == arch)
            .and_then(|i| starts.get(i).copied())
            .ok_or_else(|| Assemble::Other(Error::backend("no section for a listed architecture")))
    };
    // `JA` from the instruction at `from` to `to`.
    let ja = |from: usize, to: usize| stmt(BPF_JMP_JA, (to - from - 1) as u32);

    let mut program = Vec::with_capacity(at);
    program.push(stmt(BPF_LD_W_ABS, DATA_ARCH));
    program.push(jump(BPF_JMP_JEQ_K, native::AUDIT_ARCH, 0, 1));
    program.push(ja(program.len(), dispatch_len));
    for f in &dispatched {
        program.push(jump(BPF_JMP_JEQ_K, f.audit, 0, 1));
        program.push(ja(program.len(), start_of(f.arch)?));
    }
    program.push(stmt(BPF_RET_K, BAD_ARCH_ACTION));

    program.push(stmt(BPF_LD_W_ABS, DATA_NR));
    if native::HAS_X32 {
        // x32 numbers, except -1 (a tracer skipping the call), go to their own section.
        program.push(jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 2));
        program.push(jump(BPF_JMP_JEQ_K, u32::MAX, 1, 0));
        program.push(match x32 {
            Some(_) => ja(program.len(), start_of(Arch::ScmpArchX32)?),
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
    Ok((program, sections))
}

/// seccompiler's rules for `rules` on an architecture of `width`, leaving out those that can
/// never match (none left: the chain can never match).
fn compile_rules(rules: &[Vec<Cmp>], width: Width) -> Result<Vec<SeccompRule>, Error> {
    let len = match width {
        Width::Bits64 => SeccompCmpArgLen::Qword,
        // seccompiler compares the low halves only, of the argument and of the value.
        Width::Bits32 => SeccompCmpArgLen::Dword,
    };
    let invalid = |e: seccompiler::BackendError| Error::backend(e.to_string());
    let mut out = Vec::new();
    for rule in rules.iter().filter(|r| !r.iter().any(|c| c.never(width))) {
        let conditions = rule
            .iter()
            .map(|c| SeccompCondition::new(c.index, len.clone(), cmp_op(c.op), c.value))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        out.push(SeccompRule::new(conditions).map_err(invalid)?);
    }
    Ok(out)
}

fn cmp_op(op: Op) -> SeccompCmpOp {
    match op {
        Op::Eq => SeccompCmpOp::Eq,
        Op::Ne => SeccompCmpOp::Ne,
        Op::Lt => SeccompCmpOp::Lt,
        Op::Le => SeccompCmpOp::Le,
        Op::Gt => SeccompCmpOp::Gt,
        Op::Ge => SeccompCmpOp::Ge,
        Op::MaskedEq(mask) => SeccompCmpOp::MaskedEq(mask),
    }
}

/// The groups for one architecture (`table`, `width`), each group's mismatch falling through to
/// the next one, the last one's to the instruction after them. With `up_to`, only the groups
/// whose action is at least as restrictive as that one (a `SECCOMP_RET_ACTION_FULL` value as
/// in [`precedence_key`]).
fn compile_groups(
    groups: &Groups,
    table: Table,
    width: Width,
    up_to: Option<i32>,
) -> Result<Vec<libc::sock_filter>, Assemble> {
    let unexpected = || Assemble::Other(Error::backend("unexpected seccompiler output"));
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
            let Some(nr) = syscall_table::lookup(table, name) else {
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
        .map_err(|e| Error::backend(e.to_string()))?;
        let compiled: BpfProgram = match BpfProgram::try_from(filter) {
            Ok(p) => p,
            Err(seccompiler::BackendError::FilterTooLarge(n)) => {
                return Err(Assemble::TooLarge(program.len() + n));
            }
            Err(e) => return Err(Assemble::Other(Error::backend(e.to_string()))),
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
            let mut insn = jump(insn.code, insn.k, insn.jt, insn.jf);
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
