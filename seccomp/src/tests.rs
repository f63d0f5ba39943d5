//! Behaviour of compiled profiles, seen from a forked child that installs them and makes
//! system calls (through every entry point of this host: native, i386's `int 0x80`, x32).

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use oci_spec::runtime::{Arch, LinuxSeccomp};
use serde_json::json;

#[cfg(target_arch = "x86_64")]
use crate::arch::X32_SYSCALL_BIT;
use crate::arch::native;
use crate::{Error, MAX_INSNS, Program, compile as compile_profile, send_to_listener};

fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("test profile is a valid LinuxSeccomp")
}

fn compile(v: serde_json::Value) -> (Program, Vec<String>) {
    let plan = compile_profile(&profile(v)).expect("profile compiles");
    let warnings = plan.warnings().to_vec();
    (plan, warnings)
}

fn compile_err(v: serde_json::Value) -> Error {
    compile_profile(&profile(v)).expect_err("profile is rejected")
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
        -i64::from(crate::install::errno())
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

/// Forks a child that installs `plan` (sending the listener fd over `sock` if there is
/// one), then runs `call` and reports its result in its exit status. Between fork and
/// _exit the child only makes system calls.
fn spawn(plan: &Program, sock: Option<RawFd>, call: impl Fn() -> i64) -> Child {
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
            // So that the tests need no CAP_SYS_ADMIN.
            if crate::set_no_new_privs().is_err() {
                libc::_exit(INSTALL_FAILED + 52);
            }
            let code = match plan.install() {
                Err(e) => INSTALL_FAILED + e.min(50),
                Ok(listener) => {
                    if let (Some(fd), Some(sock)) = (listener, sock) {
                        if crate::listener::send_fd(sock, fd, b"F").is_err() {
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

fn run(plan: &Program, nr: libc::c_long, args: [u64; 6]) -> Outcome {
    spawn(plan, None, || sys(nr, args)).wait()
}

const GETPRIO: libc::c_long = libc::SYS_getpriority;

fn getprio(plan: &Program, which: u64, who: u64) -> Outcome {
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
    let ppid = |plan: &Program| run(plan, libc::SYS_getppid, [0; 6]);
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
fn arg_profile(args: serde_json::Value) -> Program {
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
    let (plan, warnings) = compile(json!({"defaultAction": "SCMP_ACT_ALLOW",
                                         "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}));
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
    assert_eq!(e.field(), "linux.seccomp.syscalls[1].errnoRet", "{e}");
    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}));
    assert_eq!(e.field(), "linux.seccomp.defaultErrnoRet", "{e}");
    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}));
    assert_eq!(e.field(), "linux.seccomp.defaultErrnoRet", "{e}");
    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]},
    ]}));
    assert_eq!(e.field(), "linux.seccomp.syscalls[0].args[1].index", "{e}");
    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": [], "action": "SCMP_ACT_ERRNO"},
    ]}));
    assert_eq!(e.field(), "linux.seccomp.syscalls[0].names", "{e}");
    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid", ""], "action": "SCMP_ACT_ERRNO"},
    ]}));
    assert_eq!(e.field(), "linux.seccomp.syscalls[0].names[1]", "{e}");
    let e = compile_err(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}));
    assert_eq!(e.field(), "linux.seccomp.defaultAction", "{e}");
    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"},
    ]}));
    assert_eq!(e.field(), "linux.seccomp.listenerPath", "{e}");
    let e = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"}));
    assert_eq!(e.field(), "linux.seccomp.listenerMetadata", "{e}");
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
    assert_eq!(e.field(), "linux.seccomp");
    assert!(e.reason().contains("4096"), "{e}");

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
    assert_eq!(e.field(), "linux.seccomp");
    assert!(e.reason().contains("4096"), "{e}");
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

/// The benchmark's fixture, Docker's default profile as Docker hands it to a runtime on
/// x86_64, compiles on every listed architecture and denies what Docker's does.
#[cfg(target_arch = "x86_64")]
#[test]
fn docker_default_fixture_compiles_and_works() {
    // Embedded, so that the test binary alone (as the VM lane packs it) carries it.
    let text = include_str!("../tests/data/docker-default-x86_64.json");
    let (plan, warnings) = compile(serde_json::from_str(text).expect("JSON"));
    // recv and send are socketcall's on i386 and no calls of their own anywhere here.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].ends_with(": recv, send"), "{warnings:?}");
    let sections: Vec<Arch> = plan.sections().iter().map(|(a, _)| *a).collect();
    assert_eq!(
        sections,
        [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    );
    assert!(plan.len() <= MAX_INSNS);
    assert_eq!(run(&plan, libc::SYS_getpid, [0; 6]), Outcome::Ok);
    assert_eq!(
        run(&plan, libc::SYS_kcmp, [0, 0, 99, 0, 0, 0]),
        Outcome::Errno(libc::EPERM)
    );
    assert_eq!(
        run(&plan, libc::SYS_clone3, [0; 6]),
        Outcome::Errno(libc::ENOSYS)
    );
    // socket(AF_VSOCK, ...) is the one socket family denied.
    assert_eq!(
        run(&plan, libc::SYS_socket, [40, 1, 0, 0, 0, 0]),
        Outcome::Errno(libc::EPERM)
    );
    let i386 = |nr: u32, a0: u64| spawn(&plan, None, move || int80(nr, a0, 0, 0)).wait();
    assert_eq!(i386(I386_GETPID, 0), Outcome::Ok);
    assert_eq!(i386(349, 0), Outcome::Errno(libc::EPERM));
}
