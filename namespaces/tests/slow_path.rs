//! Slow path, for real: a plain intermediate child runs `join_all`,
//! `unshare_user`, `unshare_rest`, `write_time_offsets`, then clones the
//! "container init" with CLONE_PARENT (so the test process reaps it). Joined
//! namespaces must have the target's inode, created ones a new inode.

#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use berth_namespaces::{ChildError, ChildOp, NamespaceKind, NamespacePlan, set_hostname};
use common::*;
use oci_spec::runtime::LinuxNamespaceType as T;

/// Runs the intermediate's whole sequence. `user_sync` = (to parent, from
/// parent) pipes used around `unshare_user` when a user namespace is created.
/// The grandchild runs `init` and reports through `out_g`; the intermediate
/// reports the grandchild's pid through `out_i`.
fn intermediate<F: FnOnce() -> i32>(
    plan: &NamespacePlan,
    out_i: &Pipe,
    user_sync: Option<(&Pipe, &Pipe)>,
    init: F,
) -> i32 {
    if let Err(e) = plan.join_all() {
        return report_err(out_i.w(), e);
    }
    plan.close_fds();
    if let Err(e) = plan.unshare_user() {
        return report_err(out_i.w(), e);
    }
    if let Some((to_parent, from_parent)) = user_sync {
        if !write_all_raw(to_parent.w(), &[1]) || !wait_signal(from_parent.r()) {
            return 20;
        }
    }
    if let Err(e) = plan.unshare_rest() {
        return report_err(out_i.w(), e);
    }
    if let Err(e) = plan.write_time_offsets() {
        return report_err(out_i.w(), e);
    }
    let gc = raw_clone(libc::CLONE_PARENT);
    if gc == 0 {
        let code = init();
        // SAFETY: the grandchild leaves without running any destructor.
        unsafe { libc::_exit(code) };
    }
    if gc < 0 {
        return 21;
    }
    if !report_ok(out_i.w(), &gc.to_ne_bytes()) {
        return 22;
    }
    0
}

/// Parent side: reads the grandchild pid the intermediate reports, waits for the
/// intermediate, and adopts the grandchild (our child thanks to CLONE_PARENT).
fn collect(plan: &NamespacePlan, out_i: &Pipe, inter: Proc) -> Proc {
    let msg = read_msg(out_i.r(), 4).unwrap_or_else(|e| panic!("{}", e.describe(plan)));
    let g = Proc::adopt(i32_at(&msg, 0));
    assert_eq!(inter.wait(), 0);
    g
}

/// Grandchild side: report pid, uid, gid and nodename, then wait for `go`.
fn report_identity(out: &Pipe, go: &Pipe) -> i32 {
    let mut msg = [0u8; 12 + 65];
    // SAFETY: these getters cannot fail.
    let ids = unsafe { [libc::getpid() as u32, libc::getuid(), libc::getgid()] };
    for (i, v) in ids.iter().enumerate() {
        msg[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
    }
    let mut uts = [0u8; 130];
    if !uname_raw(&mut uts) {
        return 30;
    }
    msg[12..].copy_from_slice(&uts[..65]);
    if !report_ok(out.w(), &msg) || !wait_signal(go.r()) {
        return 31;
    }
    0
}

#[test]
fn joins_net_ipc_uts_by_path_and_creates_mnt_and_pid() {
    let target = spawn_target(
        libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS,
        || match set_hostname(b"berth-target") {
            Ok(()) => 0,
            Err(_) => 40,
        },
    );
    let tp = |k: NamespaceKind| berth_namespaces::namespace_path(target.pid, k);
    let path = |k| tp(k).to_str().unwrap().to_owned();
    let plan = NamespacePlan::prepare(&linux(
        Some(vec![
            ns(T::Mount, None),
            ns(T::Network, Some(&path(NamespaceKind::Network))),
            ns(T::Ipc, Some(&path(NamespaceKind::Ipc))),
            ns(T::Pid, None),
            ns(T::Uts, Some(&path(NamespaceKind::Uts))),
        ]),
        None,
        None,
        None,
    ))
    .unwrap();
    assert!(plan.needs_intermediate());
    assert_eq!(plan.clone_flags(), libc::CLONE_NEWNS | libc::CLONE_NEWPID);

    let (out_i, out_g, go) = (Pipe::new(), Pipe::new(), Pipe::new());
    let inter = spawn(0, || {
        intermediate(&plan, &out_i, None, || report_identity(&out_g, &go))
    });
    plan.close_fds();
    let g = collect(&plan, &out_i, inter);
    let msg = read_msg(out_g.r(), 12 + 65).unwrap();
    assert_eq!(i32_at(&msg, 0), 1, "init is pid 1 of the new pid namespace");
    assert_eq!(c_field(&msg[12..]), "berth-target", "joined uts namespace");

    for k in [
        NamespaceKind::Network,
        NamespaceKind::Ipc,
        NamespaceKind::Uts,
    ] {
        assert_eq!(ns_ino(g.pid, k), ns_ino(target.pid, k), "{k} not joined");
        assert_ne!(ns_ino(g.pid, k), self_ino(k), "{k}");
    }
    for k in [NamespaceKind::Mount, NamespaceKind::Pid] {
        assert_ne!(ns_ino(g.pid, k), self_ino(k), "{k} not created");
        assert_ne!(ns_ino(g.pid, k), ns_ino(target.pid, k), "{k}");
    }
    for k in [
        NamespaceKind::User,
        NamespaceKind::Cgroup,
        NamespaceKind::Time,
    ] {
        assert_eq!(ns_ino(g.pid, k), self_ino(k), "{k} must be shared");
    }
    signal(go.w());
    assert_eq!(g.wait(), 0);
}

#[test]
fn joins_a_user_namespace_first_then_namespaces_it_owns() {
    // Target: its own user namespace (mapped) owning a net and a pid namespace.
    let tplan = NamespacePlan::prepare(&linux(
        Some(vec![
            ns(T::User, None),
            ns(T::Network, None),
            ns(T::Pid, None),
        ]),
        Some(vec![idmap(0, 0, 1), idmap(1, 300000, 100)]),
        Some(vec![idmap(0, 0, 1), idmap(1, 300000, 100)]),
        None,
    ))
    .unwrap();
    let ready = Pipe::new();
    let target = spawn(tplan.clone_flags(), || {
        // Wait for the maps, report, live until killed.
        let mut b = [0u8; 1];
        if !read_exact_raw(ready.r(), &mut b) {
            return 1;
        }
        loop {
            // SAFETY: waits for SIGKILL.
            unsafe { libc::pause() };
        }
    });
    tplan.write_id_mappings(target.pid).unwrap();
    signal(ready.w());

    let p = |k| {
        berth_namespaces::namespace_path(target.pid, k)
            .to_str()
            .unwrap()
            .to_owned()
    };
    let plan = NamespacePlan::prepare(&linux(
        Some(vec![
            ns(T::Uts, None),
            ns(T::Pid, Some(&p(NamespaceKind::Pid))),
            ns(T::Network, Some(&p(NamespaceKind::Network))),
            ns(T::User, Some(&p(NamespaceKind::User))),
        ]),
        None,
        None,
        None,
    ))
    .unwrap();
    assert!(plan.joins(NamespaceKind::User) && !plan.creates(NamespaceKind::User));
    assert_eq!(plan.clone_flags(), libc::CLONE_NEWUTS);

    let (out_i, out_g, go) = (Pipe::new(), Pipe::new(), Pipe::new());
    let inter = spawn(0, || {
        intermediate(&plan, &out_i, None, || {
            // The uts namespace was created inside the joined user namespace.
            if set_hostname(b"berth-joined-user").is_err() {
                return 41;
            }
            report_identity(&out_g, &go)
        })
    });
    plan.close_fds();
    let g = collect(&plan, &out_i, inter);
    let msg = read_msg(out_g.r(), 12 + 65).unwrap();
    assert_eq!(
        i32_at(&msg, 0),
        2,
        "second process of the target's pid namespace"
    );
    assert_eq!(i32_at(&msg, 4), 0, "uid 0 through the target's map");
    assert_eq!(i32_at(&msg, 8), 0, "gid 0 through the target's map");
    assert_eq!(c_field(&msg[12..]), "berth-joined-user");
    for k in [
        NamespaceKind::User,
        NamespaceKind::Network,
        NamespaceKind::Pid,
    ] {
        assert_eq!(ns_ino(g.pid, k), ns_ino(target.pid, k), "{k} not joined");
        assert_ne!(ns_ino(g.pid, k), self_ino(k), "{k}");
    }
    assert_ne!(
        ns_ino(g.pid, NamespaceKind::Uts),
        self_ino(NamespaceKind::Uts)
    );
    assert_ne!(
        ns_ino(g.pid, NamespaceKind::Uts),
        ns_ino(target.pid, NamespaceKind::Uts)
    );
    signal(go.w());
    assert_eq!(g.wait(), 0);
}

#[test]
fn creates_a_user_namespace_after_joining_and_the_parent_maps_it() {
    let target = spawn_target(libc::CLONE_NEWNET, || 0);
    let net = berth_namespaces::namespace_path(target.pid, NamespaceKind::Network);
    let plan = NamespacePlan::prepare(&linux(
        Some(vec![
            ns(T::Network, Some(net.to_str().unwrap())),
            ns(T::User, None),
            ns(T::Mount, None),
            ns(T::Pid, None),
        ]),
        Some(vec![idmap(0, 0, 1), idmap(1, 100000, 65535)]),
        Some(vec![idmap(0, 0, 1), idmap(1, 100000, 65535)]),
        None,
    ))
    .unwrap();
    assert!(plan.needs_intermediate());
    let (out_i, out_g, go) = (Pipe::new(), Pipe::new(), Pipe::new());
    let (to_parent, from_parent) = (Pipe::new(), Pipe::new());
    let inter = spawn(0, || {
        intermediate(&plan, &out_i, Some((&to_parent, &from_parent)), || {
            report_identity(&out_g, &go)
        })
    });
    plan.close_fds();
    let mut b = [0u8; 1];
    read_exact_timeout(to_parent.r(), &mut b).expect("intermediate did not unshare the user ns");
    // The intermediate is in its new user namespace, not mapped yet.
    assert_ne!(
        ns_ino(inter.pid, NamespaceKind::User),
        self_ino(NamespaceKind::User)
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/uid_map", inter.pid)).unwrap(),
        ""
    );
    plan.write_id_mappings(inter.pid).unwrap();
    signal(from_parent.w());

    let g = collect(&plan, &out_i, inter);
    let msg = read_msg(out_g.r(), 12 + 65).unwrap();
    assert_eq!(i32_at(&msg, 0), 1);
    assert_eq!(i32_at(&msg, 4), 0);
    assert_eq!(i32_at(&msg, 8), 0);
    assert_eq!(
        read_map(format!("/proc/{}/uid_map", g.pid)),
        vec![(0, 0, 1), (1, 100000, 65535)]
    );
    assert_eq!(
        read_map(format!("/proc/{}/gid_map", g.pid)),
        vec![(0, 0, 1), (1, 100000, 65535)]
    );
    for k in [
        NamespaceKind::User,
        NamespaceKind::Mount,
        NamespaceKind::Pid,
    ] {
        assert_ne!(ns_ino(g.pid, k), self_ino(k), "{k} not created");
    }
    assert_eq!(
        ns_ino(g.pid, NamespaceKind::Network),
        ns_ino(target.pid, NamespaceKind::Network)
    );
    signal(go.w());
    assert_eq!(g.wait(), 0);
}

#[test]
fn joining_the_user_namespace_we_are_in_is_a_no_op() {
    let plan = NamespacePlan::prepare(&linux(
        Some(vec![
            ns(T::User, Some("/proc/self/ns/user")),
            ns(T::Uts, None),
        ]),
        None,
        None,
        None,
    ))
    .unwrap();
    let out = Pipe::new();
    let child = spawn(0, || {
        let r = plan.join_all().and_then(|()| plan.unshare_rest());
        match r {
            Ok(()) => {
                report_ok(out.w(), &[]);
                0
            }
            Err(e) => report_err(out.w(), e),
        }
    });
    read_msg(out.r(), 0).unwrap_or_else(|e| panic!("{}", e.describe(&plan)));
    assert_eq!(child.wait(), 0);
}

/// Runs `step` in a child after `prep` (e.g. dropping privileges) and returns the
/// child error it reports.
fn child_failure<P, S>(prep: P, step: S) -> ChildError
where
    P: FnOnce() -> bool,
    S: FnOnce() -> Result<(), ChildError>,
{
    let out = Pipe::new();
    let child = spawn(0, || {
        if !prep() {
            return 50;
        }
        match step() {
            Ok(()) => {
                report_ok(out.w(), &[]);
                0
            }
            Err(e) => report_err(out.w(), e),
        }
    });
    let r = read_msg(out.r(), 0);
    let code = child.wait();
    match r {
        Ok(_) => panic!("the step succeeded (exit {code})"),
        Err(e) => {
            assert_eq!(code, 1);
            e
        }
    }
}

const NOBODY: libc::c_long = 65534;

fn drop_privileges() -> bool {
    // Raw syscalls: glibc's setresuid() would try to change the credentials of
    // every thread it believes exists, and after a raw clone of the
    // multi-threaded test harness those threads are not there.
    // SAFETY: plain syscalls with integer arguments; all ids non-zero drops
    // every capability of this (single-threaded) child.
    unsafe {
        libc::syscall(libc::SYS_setresgid, NOBODY, NOBODY, NOBODY) == 0
            && libc::syscall(libc::SYS_setresuid, NOBODY, NOBODY, NOBODY) == 0
    }
}

#[test]
fn setns_failure_is_reported_with_the_path() {
    let target = spawn_target(libc::CLONE_NEWNET, || 0);
    let net = berth_namespaces::namespace_path(target.pid, NamespaceKind::Network);
    let net = net.to_str().unwrap();
    let plan = NamespacePlan::prepare(&linux(
        Some(vec![ns(T::Mount, None), ns(T::Network, Some(net))]),
        None,
        None,
        None,
    ))
    .unwrap();
    let e = child_failure(drop_privileges, || plan.join_all());
    assert_eq!(
        e,
        ChildError {
            op: ChildOp::Setns,
            kind: Some(NamespaceKind::Network),
            errno: libc::EPERM
        }
    );
    assert_eq!(
        e.describe(&plan).to_string(),
        format!(
            "setns(linux.namespaces[1].path {net}, CLONE_NEWNET): Operation not permitted (os error 1)"
        )
    );
}

#[test]
fn unshare_failures_are_reported_with_the_flags() {
    let (uid, gid) = (Some(vec![idmap(0, 0, 1)]), Some(vec![idmap(0, 0, 1)]));
    let plan = NamespacePlan::prepare(&linux(
        Some(vec![
            ns(T::User, None),
            ns(T::Mount, None),
            ns(T::Pid, None),
            ns(T::Time, None),
        ]),
        uid,
        gid,
        None,
    ))
    .unwrap();
    // A chrooted process may not create a user namespace.
    let e = child_failure(
        // SAFETY: chroot in the forked child only.
        || unsafe { libc::chroot(c"/proc".as_ptr()) == 0 },
        || plan.unshare_user(),
    );
    assert_eq!(
        e,
        ChildError {
            op: ChildOp::Unshare,
            kind: Some(NamespaceKind::User),
            errno: libc::EPERM
        }
    );
    assert_eq!(
        e.describe(&plan).to_string(),
        "unshare(CLONE_NEWUSER): Operation not permitted (os error 1)"
    );
    // Without CAP_SYS_ADMIN nothing else can be created.
    let e = child_failure(drop_privileges, || plan.unshare_rest());
    assert_eq!(
        (e.op, e.kind, e.errno),
        (ChildOp::Unshare, None, libc::EPERM)
    );
    assert_eq!(
        e.describe(&plan).to_string(),
        "unshare(CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWTIME): Operation not permitted (os error 1)"
    );
}

/// Number of this process's fds that point at the namespace `link`
/// (e.g. "net:[4026532281]").
fn fds_pointing_at(link: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_str() == Some(link))
        .count()
}

#[test]
fn close_fds_and_drop_close_the_join_fds() {
    let target = spawn_target(libc::CLONE_NEWNET, || 0);
    let net = berth_namespaces::namespace_path(target.pid, NamespaceKind::Network);
    let link = std::fs::read_link(&net).unwrap();
    let link = link.to_str().unwrap();
    let l = linux(
        Some(vec![ns(T::Network, Some(net.to_str().unwrap()))]),
        None,
        None,
        None,
    );
    assert_eq!(fds_pointing_at(link), 0);
    let plan = NamespacePlan::prepare(&l).unwrap();
    assert_eq!(fds_pointing_at(link), 1, "prepare opens the join path");
    let fd_flags = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| {
            std::fs::read_link(e.path())
                .ok()
                .and_then(|l| l.to_str().map(|s| s == link))
                == Some(true)
        })
        .map(|e| e.file_name().to_str().unwrap().parse::<i32>().unwrap())
        .map(|fd| std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap())
        .unwrap();
    let flags_line = fd_flags.lines().find(|l| l.starts_with("flags:")).unwrap();
    let flags = u32::from_str_radix(flags_line.split_whitespace().nth(1).unwrap(), 8).unwrap();
    assert_ne!(
        flags & libc::O_CLOEXEC as u32,
        0,
        "join fd must be O_CLOEXEC"
    );
    assert_eq!(flags & libc::O_ACCMODE as u32, libc::O_RDONLY as u32);

    plan.close_fds();
    assert_eq!(fds_pointing_at(link), 0, "close_fds closes it");
    plan.close_fds(); // idempotent
    // With its fds closed, the plan can no longer join.
    let e = child_failure(|| true, || plan.join_all());
    assert_eq!((e.op, e.errno), (ChildOp::Setns, libc::EBADF));

    let again = NamespacePlan::prepare(&l).unwrap();
    assert_eq!(fds_pointing_at(link), 1);
    drop(again);
    assert_eq!(fds_pointing_at(link), 0, "drop closes it");
}
