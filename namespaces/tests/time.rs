//! Time namespaces, for real: offsets written by `write_time_offsets` are seen
//! by a process cloned afterwards; joining a time namespace by path.

#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use berth_namespaces::{ChildOp, NamespaceKind, NamespacePlan};
use common::*;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType as T, LinuxTimeOffset};
use rstest::rstest;

/// Largest gap allowed between the clock a grandchild reads and the parent's
/// (the parent reads after receiving the message).
const SLACK: f64 = 5.0;

/// What the intermediate observed, besides the grandchild's pid.
const FLAG_PROC_HIDDEN: u8 = 1;

/// Runs the slow path for `plan` in an intermediate; the grandchild reports
/// CLOCK_MONOTONIC and CLOCK_BOOTTIME. Returns (monotonic, boottime) seen by the
/// grandchild minus the parent's, the grandchild's time ns inode, and the flags
/// byte of the intermediate. After cloning the grandchild, the intermediate calls
/// `write_time_offsets` once more and reports the result (the kernel must refuse:
/// the namespace has been entered).
fn run(plan: &NamespacePlan) -> (f64, f64, u64, u8, Option<berth_namespaces::ChildError>) {
    let (out_i, out_g, go) = (Pipe::new(), Pipe::new(), Pipe::new());
    let inter = spawn(0, || {
        if let Err(e) = plan.join_all() {
            return report_err(out_i.w(), e);
        }
        plan.close_fds();
        let mut flags = 0u8;
        // SAFETY: access on a static NUL-terminated path.
        if unsafe { libc::access(c"/proc/self/timens_offsets".as_ptr(), libc::F_OK) } != 0 {
            flags |= FLAG_PROC_HIDDEN;
        }
        if let Err(e) = plan.unshare_user() {
            return report_err(out_i.w(), e);
        }
        if let Err(e) = plan.unshare_rest() {
            return report_err(out_i.w(), e);
        }
        if let Err(e) = plan.write_time_offsets() {
            return report_err(out_i.w(), e);
        }
        let gc = raw_clone(libc::CLONE_PARENT);
        if gc == 0 {
            let mut msg = [0u8; 32];
            msg[..16].copy_from_slice(&clock_raw(libc::CLOCK_MONOTONIC));
            msg[16..].copy_from_slice(&clock_raw(libc::CLOCK_BOOTTIME));
            let ok = report_ok(out_g.w(), &msg) && wait_signal(go.r());
            // SAFETY: leaving the grandchild.
            unsafe { libc::_exit(if ok { 0 } else { 31 }) };
        }
        if gc < 0 {
            return 21;
        }
        let b = gc.to_ne_bytes();
        if !report_ok(out_i.w(), &[b[0], b[1], b[2], b[3], flags]) {
            return 22;
        }
        // Offsets are frozen once a process is in the namespace.
        match plan.write_time_offsets() {
            Ok(()) => {
                report_ok(out_i.w(), &[0; 8]);
            }
            Err(e) => {
                report_err(out_i.w(), e);
            }
        }
        0
    });
    plan.close_fds();
    let msg = read_msg(out_i.r(), 5).unwrap_or_else(|e| panic!("{}", e.describe(plan)));
    let g = Proc::adopt(i32_at(&msg, 0));
    let flags = msg[4];
    let second = read_msg(out_i.r(), 8).err();
    assert_eq!(inter.wait(), 0);
    let clocks = read_msg(out_g.r(), 32).unwrap();
    let mono = clock_from(&clocks[..16]) - clock_now(libc::CLOCK_MONOTONIC);
    let boot = clock_from(&clocks[16..]) - clock_now(libc::CLOCK_BOOTTIME);
    let time_ino = ns_ino(g.pid, NamespaceKind::Time);
    signal(go.w());
    assert_eq!(g.wait(), 0);
    (mono, boot, time_ino, flags, second)
}

fn near(got: f64, want: f64) -> bool {
    got <= want + 0.001 && got > want - SLACK
}

#[rstest]
#[case::no_offsets(None, 0.0, 0.0)]
#[case::monotonic_a_day_ahead(Some(vec![("monotonic", offset(86400, 0))]), 86400.0, 0.0)]
#[case::both(
    Some(vec![("monotonic", offset(86400, 500_000_000)), ("boottime", offset(2 * 86400, 0))]),
    86400.5,
    172800.0
)]
#[case::boottime_only(Some(vec![("boottime", offset(7200, 0))]), 0.0, 7200.0)]
fn a_new_time_namespace_applies_the_offsets(
    #[case] offsets: Option<Vec<(&str, LinuxTimeOffset)>>,
    #[case] mono: f64,
    #[case] boot: f64,
) {
    let plan = NamespacePlan::prepare(&linux(
        Some(vec![ns(T::Time, None), ns(T::Pid, None)]),
        None,
        None,
        offsets.clone(),
    ))
    .unwrap();
    assert!(plan.creates(NamespaceKind::Time));
    assert!(plan.needs_intermediate());
    assert_eq!(plan.clone_flags(), libc::CLONE_NEWPID);
    let (got_mono, got_boot, ino, flags, second) = run(&plan);
    assert!(
        near(got_mono, mono),
        "monotonic offset {got_mono}, want {mono}"
    );
    assert!(
        near(got_boot, boot),
        "boottime offset {got_boot}, want {boot}"
    );
    assert_ne!(ino, self_ino(NamespaceKind::Time), "time namespace not new");
    assert_eq!(flags & FLAG_PROC_HIDDEN, 0);
    match offsets {
        // Nothing to write: the second call is a no-op too.
        None => assert_eq!(second, None),
        Some(_) => {
            let e = second.expect("offsets rewritten after a process entered");
            assert_eq!(
                (e.op, e.kind),
                (ChildOp::TimeOffsets, Some(NamespaceKind::Time))
            );
            assert_eq!(e.errno, libc::EACCES);
            assert_eq!(
                e.describe(&plan).to_string(),
                "writing linux.timeOffsets to /proc/self/timens_offsets: Permission denied (os error 13)"
            );
        }
    }
}

#[test]
fn offsets_are_written_even_when_the_joined_mount_namespace_hides_proc() {
    // Target: a private mount namespace with an empty tmpfs over /proc (the
    // mount vanishes with the target).
    let target = spawn_target(libc::CLONE_NEWNS, || {
        // SAFETY: mounts in the target's own new mount namespace only.
        unsafe {
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return 40;
            }
            if libc::mount(
                c"tmpfs".as_ptr(),
                c"/proc".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ) != 0
            {
                return 41;
            }
        }
        0
    });
    let mnt = berth_namespaces::namespace_path(target.pid, NamespaceKind::Mount);
    let plan = NamespacePlan::prepare(&linux(
        Some(vec![
            ns(T::Time, None),
            ns(T::Mount, Some(mnt.to_str().unwrap())),
        ]),
        None,
        None,
        Some(vec![("monotonic", offset(86400, 0))]),
    ))
    .unwrap();
    let (mono, boot, ino, flags, _) = run(&plan);
    assert_ne!(
        flags & FLAG_PROC_HIDDEN,
        0,
        "the joined mount namespace should hide /proc/self/timens_offsets"
    );
    assert!(near(mono, 86400.0), "monotonic offset {mono}");
    assert!(near(boot, 0.0), "boottime offset {boot}");
    assert_ne!(ino, self_ino(NamespaceKind::Time));
}

#[test]
fn joins_a_time_namespace_by_path() {
    // Target: unshares a time namespace (for its children), sets a +3600 s
    // monotonic offset, and lives on. Nobody has entered the namespace yet.
    let target = spawn_target(0, || {
        // SAFETY: plain syscalls in the forked target on static buffers.
        unsafe {
            if libc::unshare(libc::CLONE_NEWTIME) != 0 {
                return 40;
            }
            let fd = libc::open(c"/proc/self/timens_offsets".as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return 41;
            }
            let text = b"monotonic 3600 0\n";
            if libc::write(fd, text.as_ptr().cast(), text.len()) != text.len() as isize {
                return 42;
            }
            libc::close(fd);
        }
        0
    });
    let path = format!("/proc/{}/ns/time_for_children", target.pid);
    let joined: LinuxNamespace = ns(T::Time, Some(&path));
    let plan = NamespacePlan::prepare(&linux(Some(vec![joined]), None, None, None)).unwrap();
    assert!(plan.joins(NamespaceKind::Time) && !plan.creates(NamespaceKind::Time));
    assert!(plan.needs_intermediate());
    assert_eq!(plan.clone_flags(), 0);
    let (mono, boot, ino, _, second) = run(&plan);
    assert!(near(mono, 3600.0), "monotonic offset {mono}");
    assert!(near(boot, 0.0), "boottime offset {boot}");
    assert_eq!(ino, ino_of(&path));
    assert_eq!(second, None, "no time namespace created: nothing to write");
}

fn ino_of(path: &str) -> u64 {
    common::ino(path)
}
