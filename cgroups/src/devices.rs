//! Device access rules: validation, the v1 `devices.allow`/`devices.deny` lines
//! and the cgroup v2 eBPF program (`BPF_PROG_TYPE_CGROUP_DEVICE`).
//!
//! # Semantics
//!
//! A rule list starts from "deny everything"; rules are applied in order and the
//! last rule matching an access decides. An allow rule matches an access when the
//! device type, major and minor match (`a`, `*` and a missing number are wildcards)
//! and every requested access (`r`, `w`, `m`) is in the rule's access; a deny rule
//! matches when any requested access is in its access.
//!
//! On v1 the cgroup is reset with `a` written to `devices.deny`, then each rule is
//! written to `devices.allow` or `devices.deny`. On v2 one program is built and
//! attached with `BPF_F_ALLOW_MULTI`; the programs attached before it (found with
//! `BPF_PROG_QUERY`) are detached afterwards, so that a cgroup never runs without a
//! device filter while rules are replaced.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use crate::error::{CgroupError, Result};

/// `mknod` access bit (as in the kernel's `BPF_DEVCG_ACC_MKNOD`).
pub const ACC_MKNOD: u8 = 1;
/// `read` access bit (`BPF_DEVCG_ACC_READ`).
pub const ACC_READ: u8 = 2;
/// `write` access bit (`BPF_DEVCG_ACC_WRITE`).
pub const ACC_WRITE: u8 = 4;

/// One validated device rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// Allow (`true`) or deny.
    pub allow: bool,
    /// `'a'` (all), `'b'` (block) or `'c'` (char).
    pub kind: char,
    /// Major number, `None` for any.
    pub major: Option<u32>,
    /// Minor number, `None` for any.
    pub minor: Option<u32>,
    /// Access bits ([`ACC_READ`] | [`ACC_WRITE`] | [`ACC_MKNOD`]).
    pub access: u8,
}

impl DeviceRule {
    /// Validates `linux.resources.devices[index]`.
    pub fn from_spec(index: usize, d: &LinuxDeviceCgroup) -> Result<Self> {
        let invalid = |what: &str, value: String, reason: &str| CgroupError::InvalidValue {
            field: format!("devices[{index}].{what}"),
            value,
            reason: reason.to_string(),
        };
        let kind = match d.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => 'a',
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            LinuxDeviceType::P => {
                return Err(invalid(
                    "type",
                    "p".into(),
                    "a FIFO is not a device the devices controller knows",
                ));
            }
        };
        let num = |what: &str, v: Option<i64>| -> Result<Option<u32>> {
            match v {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                Some(n) => u32::try_from(n)
                    .map(Some)
                    .map_err(|_| invalid(what, n.to_string(), "does not fit in 32 bits")),
            }
        };
        let major = num("major", d.major())?;
        let minor = num("minor", d.minor())?;
        // As runc 1.1: the access must be given; characters other than r, w and m are
        // ignored ("rwa" is "rw"); an allow rule must grant at least one of them (runc
        // fails at the kernel), a deny rule without any denies nothing.
        let access = match d.access().as_deref() {
            None | Some("") => {
                return Err(invalid(
                    "access",
                    if d.access().is_some() {
                        "(empty)".to_string()
                    } else {
                        "(missing)".to_string()
                    },
                    "must be given (a combination of r, w and m)",
                ));
            }
            Some(s) => {
                let bits = s.chars().fold(0, |bits, c| {
                    bits | match c {
                        'r' => ACC_READ,
                        'w' => ACC_WRITE,
                        'm' => ACC_MKNOD,
                        _ => 0,
                    }
                });
                if bits == 0 && d.allow() {
                    return Err(invalid(
                        "access",
                        s.to_string(),
                        "an allow rule needs at least one of r, w and m",
                    ));
                }
                bits
            }
        };
        Ok(Self {
            allow: d.allow(),
            kind,
            major,
            minor,
            access,
        })
    }

    /// The rule as a `linux.resources.devices` entry.
    pub fn to_spec(&self) -> LinuxDeviceCgroup {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(self.allow);
        d.set_typ(Some(match self.kind {
            'b' => LinuxDeviceType::B,
            'c' => LinuxDeviceType::C,
            _ => LinuxDeviceType::A,
        }));
        d.set_major(self.major.map(i64::from));
        d.set_minor(self.minor.map(i64::from));
        d.set_access(Some(self.access_string()));
        d
    }

    fn access_string(&self) -> String {
        let mut acc = String::new();
        if self.access & ACC_READ != 0 {
            acc.push('r');
        }
        if self.access & ACC_WRITE != 0 {
            acc.push('w');
        }
        if self.access & ACC_MKNOD != 0 {
            acc.push('m');
        }
        acc
    }

    /// The v1 line (`c 1:3 rw`), for `devices.allow` or `devices.deny`.
    pub fn v1_line(&self) -> String {
        let n = |v: Option<u32>| v.map_or_else(|| "*".to_string(), |v| v.to_string());
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access_string()
        )
    }

    /// Whether the rule matches an access (used to document and test the program's
    /// semantics in Rust).
    pub fn matches(&self, kind: char, major: u32, minor: u32, access: u8) -> bool {
        (self.kind == 'a' || self.kind == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
            && if self.allow {
                access & !self.access == 0
            } else {
                access & self.access != 0
            }
    }
}

/// The devices every container may use, whatever its `linux.resources.devices` says
/// (runc 1.1's fixed set, appended after the config's rules): mknod of any character
/// or block device, and read, write and mknod of `/dev/null` (1:3), `zero` (1:5),
/// `full` (1:7), `random` (1:8), `urandom` (1:9), `tty` (5:0), `ptmx` (5:2), the ptys
/// (136:*) and `/dev/net/tun` (10:200).
pub const DEFAULT_ALLOWED: [DeviceRule; 11] = {
    const ALL: u8 = ACC_READ | ACC_WRITE | ACC_MKNOD;
    const fn c(major: u32, minor: Option<u32>, access: u8) -> DeviceRule {
        DeviceRule {
            allow: true,
            kind: 'c',
            major: Some(major),
            minor,
            access,
        }
    }
    [
        DeviceRule {
            allow: true,
            kind: 'c',
            major: None,
            minor: None,
            access: ACC_MKNOD,
        },
        DeviceRule {
            allow: true,
            kind: 'b',
            major: None,
            minor: None,
            access: ACC_MKNOD,
        },
        c(1, Some(3), ALL),
        c(1, Some(5), ALL),
        c(1, Some(7), ALL),
        c(1, Some(8), ALL),
        c(1, Some(9), ALL),
        c(5, Some(0), ALL),
        c(5, Some(2), ALL),
        c(10, Some(200), ALL),
        c(136, None, ALL),
    ]
};

/// The resources of a container's cgroup: `resources` with [`DEFAULT_ALLOWED`]
/// appended to its device rules (which start from "deny everything").
///
/// Nothing else is allowed: a device the config creates (`linux.devices`) is usable
/// only if `linux.resources.devices` allows it, as with runc 1.1, so a rule that
/// denies a device is never overridden but by the fixed default set.
///
/// ```
/// use berth_cgroups::devices::{self, ACC_WRITE, DeviceRule};
/// let r: oci_spec::runtime::LinuxResources =
///     serde_json::from_str(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#).unwrap();
/// let all = devices::with_defaults(Some(&r));
/// let rules: Vec<DeviceRule> = all.devices().iter().flatten().enumerate()
///     .map(|(i, d)| DeviceRule::from_spec(i, d)).collect::<Result<_, _>>()?;
/// assert!(devices::evaluate(&rules, 'c', 1, 3, ACC_WRITE)); // /dev/null
/// assert!(!devices::evaluate(&rules, 'c', 1, 11, ACC_WRITE)); // /dev/kmsg
/// # Ok::<(), berth_cgroups::CgroupError>(())
/// ```
pub fn with_defaults(resources: Option<&LinuxResources>) -> LinuxResources {
    let mut r = resources.cloned().unwrap_or_default();
    let mut list = r.devices().clone().unwrap_or_default();
    list.extend(DEFAULT_ALLOWED.iter().map(DeviceRule::to_spec));
    r.set_devices(Some(list));
    r
}

/// Evaluates `rules` as the BPF program does: the last matching rule decides,
/// nothing matching denies.
pub fn evaluate(rules: &[DeviceRule], kind: char, major: u32, minor: u32, access: u8) -> bool {
    rules
        .iter()
        .rev()
        .find(|r| r.matches(kind, major, minor, access))
        .is_some_and(|r| r.allow)
}

// --- eBPF ------------------------------------------------------------------------

// Instruction classes and opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const ALU64_MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from((dst & 0xf) | ((src & 0xf) << 4)) << 8)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

/// Builds the program for `rules` as raw instructions.
///
/// The context is `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
/// with `access_type = access << 16 | type`. Registers: r2 = type, r3 = access,
/// r4 = major, r5 = minor. One block per rule, last rule first; a block that matches
/// returns the rule's verdict, the program returns 0 (deny) after the last block.
pub fn build_program(rules: &[DeviceRule]) -> Vec<u64> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Each check is (instructions before the jump, jump opcode, register, imm);
        // the jump goes to the next block.
        let mut block: Vec<(Vec<u64>, u8, u8, i32)> = Vec::new();
        match r.kind {
            'b' => block.push((vec![], JMP_JNE_K, 2, DEV_BLOCK)),
            'c' => block.push((vec![], JMP_JNE_K, 2, DEV_CHAR)),
            _ => {}
        }
        let all = i32::from(ACC_READ | ACC_WRITE | ACC_MKNOD);
        let acc = i32::from(r.access);
        if r.allow && acc != all {
            // r1 = access & ~rule_access; any bit left => not covered.
            block.push((
                vec![
                    insn(ALU64_MOV_X, 1, 3, 0, 0),
                    insn(ALU32_AND_K, 1, 0, 0, all & !acc),
                ],
                JMP_JNE_K,
                1,
                0,
            ));
        } else if !r.allow && acc != all {
            // r1 = access & rule_access; nothing left => no overlap.
            block.push((
                vec![
                    insn(ALU64_MOV_X, 1, 3, 0, 0),
                    insn(ALU32_AND_K, 1, 0, 0, acc),
                ],
                JMP_JEQ_K,
                1,
                0,
            ));
        }
        if let Some(m) = r.major {
            block.push((vec![], JMP_JNE_K, 4, m as i32));
        }
        if let Some(m) = r.minor {
            block.push((vec![], JMP_JNE_K, 5, m as i32));
        }
        let total: usize = block.iter().map(|(pre, ..)| pre.len() + 1).sum::<usize>() + 2;
        let mut emitted = 0usize;
        for (pre, op, reg, imm) in block {
            emitted += pre.len() + 1;
            p.extend(pre);
            let skip = (total - emitted) as i16;
            p.push(insn(op, reg, 0, skip, imm));
        }
        p.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(r.allow)));
        p.push(insn(JMP_EXIT, 0, 0, 0, 0));
        if total == 2 {
            // A rule matching everything decides alone: what follows would be
            // unreachable, which the verifier refuses.
            return p;
        }
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr` for BPF_PROG_LOAD (the fields up to `expected_attach_type`).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH / BPF_PROG_DETACH.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// `union bpf_attr` for BPF_PROG_QUERY (the fields up to `prog_cnt`).
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// `union bpf_attr` for BPF_PROG_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, properly sized `repr(C)` prefix of `union bpf_attr`
    // for `cmd`; the kernel reads (and for QUERY writes) at most `size_of::<T>()` bytes,
    // and any pointers inside point to buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful bpf(2) call that creates a new
    // file descriptor, which nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Ids of the device programs attached to the cgroup `dir`.
pub fn query_programs(dir: BorrowedFd<'_>, path: &Path) -> Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr).map_err(|source| CgroupError::Syscall {
        syscall: "bpf(BPF_PROG_QUERY)",
        what: path.display().to_string(),
        source,
    })?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

/// Loads the program for `rules` and attaches it to the cgroup `dir`, then detaches
/// the device programs that were attached before.
pub fn attach_rules(dir: BorrowedFd<'_>, path: &Path, rules: &[DeviceRule]) -> Result<()> {
    let old = query_programs(dir, path)?;
    let insns = build_program(rules);
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 16 * 1024];
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_device");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    let prog = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => owned(fd),
        Err(source) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            return Err(CgroupError::BpfLoad {
                path: path.to_path_buf(),
                source,
                log: String::from_utf8_lossy(&log[..end]).trim().to_string(),
            });
        }
    };
    let attach = |flags| {
        let mut a = AttachAttr {
            target_fd: dir.as_raw_fd() as u32,
            attach_bpf_fd: prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: flags,
            ..Default::default()
        };
        bpf(BPF_PROG_ATTACH, &mut a)
    };
    let detach_old = || -> Result<()> {
        for id in &old {
            detach_id(dir, path, *id)?;
        }
        Ok(())
    };
    match attach(BPF_F_ALLOW_MULTI) {
        Ok(_) => detach_old(),
        // A program attached without BPF_F_ALLOW_MULTI (by another tool) forbids
        // adding ours beside it: replace it instead.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !old.is_empty() => {
            detach_old()?;
            attach(BPF_F_ALLOW_MULTI)
                .map(|_| ())
                .map_err(|source| CgroupError::Syscall {
                    syscall: "bpf(BPF_PROG_ATTACH)",
                    what: path.display().to_string(),
                    source,
                })
        }
        Err(source) => Err(CgroupError::Syscall {
            syscall: "bpf(BPF_PROG_ATTACH)",
            what: path.display().to_string(),
            source,
        }),
    }
}

fn detach_id(dir: BorrowedFd<'_>, path: &Path, id: u32) -> Result<()> {
    let mut g = GetFdAttr {
        prog_id: id,
        ..Default::default()
    };
    let fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut g) {
        Ok(fd) => owned(fd),
        // Already gone.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Syscall {
                syscall: "bpf(BPF_PROG_GET_FD_BY_ID)",
                what: format!("program {id} of {}", path.display()),
                source,
            });
        }
    };
    let mut a = AttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    match bpf(BPF_PROG_DETACH, &mut a) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(source) => Err(CgroupError::Syscall {
            syscall: "bpf(BPF_PROG_DETACH)",
            what: format!("program {id} of {}", path.display()),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        kind: char,
        major: Option<u32>,
        minor: Option<u32>,
        access: u8,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access,
        }
    }

    #[test]
    fn last_match_wins_and_default_denies() {
        let rules = [
            rule(false, 'a', None, None, 7),
            rule(true, 'c', Some(1), Some(3), ACC_READ | ACC_WRITE),
            rule(true, 'c', Some(136), None, 7),
            rule(false, 'c', Some(136), Some(2), ACC_WRITE),
        ];
        assert!(evaluate(&rules, 'c', 1, 3, ACC_READ));
        assert!(!evaluate(&rules, 'c', 1, 3, ACC_MKNOD));
        assert!(!evaluate(&rules, 'b', 1, 3, ACC_READ));
        assert!(evaluate(&rules, 'c', 136, 7, ACC_WRITE));
        assert!(!evaluate(&rules, 'c', 136, 2, ACC_READ | ACC_WRITE));
        assert!(evaluate(&rules, 'c', 136, 2, ACC_READ));
        assert!(!evaluate(&[], 'c', 1, 3, ACC_READ));
    }

    #[test]
    fn v1_lines() {
        assert_eq!(rule(true, 'c', Some(1), Some(3), 6).v1_line(), "c 1:3 rw");
        assert_eq!(rule(false, 'a', None, None, 7).v1_line(), "a *:* rwm");
        assert_eq!(rule(true, 'b', Some(8), None, 1).v1_line(), "b 8:* m");
    }

    #[test]
    fn spec_validation() {
        let d: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":true,"type":"c","major":-1,"access":"x"}"#).unwrap();
        let e = DeviceRule::from_spec(3, &d).unwrap_err().to_string();
        assert!(e.contains("devices[3].access = x:"), "{e}");
        // As runc 1.1: other characters are ignored, a missing or empty access is an
        // error, an allow rule must grant something, a deny rule of nothing is a no-op.
        let parse = |json: &str| {
            let d: LinuxDeviceCgroup = serde_json::from_str(json).unwrap();
            DeviceRule::from_spec(0, &d).map(|r| r.access)
        };
        assert_eq!(
            parse(r#"{"allow":true,"access":"rwa"}"#).unwrap(),
            ACC_READ | ACC_WRITE
        );
        assert_eq!(parse(r#"{"allow":true,"access":"mrwr m"}"#).unwrap(), 7);
        assert_eq!(parse(r#"{"allow":false,"access":"x"}"#).unwrap(), 0);
        for bad in [
            r#"{"allow":false}"#,
            r#"{"allow":true,"access":""}"#,
            r#"{"allow":true,"access":"a"}"#,
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("devices[0].access"), "{bad}: {e}");
        }
        let d: LinuxDeviceCgroup = serde_json::from_str(r#"{"allow":true,"type":"p"}"#).unwrap();
        assert!(DeviceRule::from_spec(0, &d).is_err());
        let d: LinuxDeviceCgroup = serde_json::from_str(
            r#"{"allow":false,"type":"b","major":8,"minor":-1,"access":"rwm"}"#,
        )
        .unwrap();
        assert_eq!(
            DeviceRule::from_spec(0, &d).unwrap(),
            rule(false, 'b', Some(8), None, 7)
        );
    }

    #[test]
    fn program_shape() {
        let p = build_program(&[rule(true, 'c', Some(1), Some(3), 7)]);
        // 6 loads, type + major + minor checks, verdict, exit, default verdict, exit.
        assert_eq!(p.len(), 6 + 3 + 2 + 2);
        // The type check skips the two remaining checks and the verdict pair.
        let type_check = p[6];
        assert_eq!(type_check & 0xff, u64::from(JMP_JNE_K));
        assert_eq!((type_check >> 16) & 0xffff, 4);
        assert_eq!(*p.last().unwrap() & 0xff, u64::from(JMP_EXIT));
        // A catch-all rule ends the program (no unreachable default after it).
        let p = build_program(&[
            rule(false, 'a', None, None, 7),
            rule(true, 'c', Some(1), Some(3), 7),
        ]);
        assert_eq!(p.len(), 6 + 3 + 2 + 2);
        assert_eq!(p[p.len() - 2], insn(ALU64_MOV_K, 0, 0, 0, 0));
    }
}
