//! Fast path, for real: `clone(plan.clone_flags() | SIGCHLD)`, the parent writes
//! the id maps, the child sets its hostname; everything is checked from outside
//! through /proc and from inside through a pipe.

#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use berth_namespaces::{ChildOp, NamespaceKind, NamespacePlan, set_domainname, set_hostname};
use common::*;
use oci_spec::runtime::LinuxNamespaceType as T;

#[test]
fn clone_creates_every_namespace_and_the_parent_maps_ids() {
    let plan = NamespacePlan::prepare(&linux(
        Some(vec![
            ns(T::User, None),
            ns(T::Mount, None),
            ns(T::Pid, None),
            ns(T::Uts, None),
            ns(T::Ipc, None),
            ns(T::Network, None),
            ns(T::Cgroup, None),
        ]),
        Some(vec![idmap(0, 0, 1), idmap(1, 100000, 1000)]),
        Some(vec![
            idmap(0, 0, 1),
            idmap(1, 200000, 2000),
            idmap(5000, 5000, 3),
        ]),
        None,
    ))
    .unwrap();
    assert!(!plan.needs_intermediate());
    let created = [
        NamespaceKind::User,
        NamespaceKind::Mount,
        NamespaceKind::Pid,
        NamespaceKind::Uts,
        NamespaceKind::Ipc,
        NamespaceKind::Network,
        NamespaceKind::Cgroup,
    ];
    let flags = created.iter().fold(0, |f, k| f | k.clone_flag());
    assert_eq!(plan.clone_flags(), flags);

    let go = Pipe::new();
    let out = Pipe::new();
    let child = spawn(plan.clone_flags(), || {
        // Before the maps are written the child is unmapped (overflow uid).
        // SAFETY: getuid cannot fail.
        let before = unsafe { libc::getuid() };
        if !report_ok(out.w(), &before.to_ne_bytes()) || !wait_signal(go.r()) {
            return 10;
        }
        if let Err(e) = set_hostname(b"berth-fast") {
            return report_err(out.w(), e);
        }
        if let Err(e) = set_domainname(b"berth.test\0") {
            return report_err(out.w(), e);
        }
        let mut msg = [0u8; 12 + 130];
        // SAFETY: these getters cannot fail.
        let ids = unsafe { [libc::getuid(), libc::getgid(), libc::getpid() as u32] };
        for (i, v) in ids.iter().enumerate() {
            msg[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
        }
        let mut uts = [0u8; 130];
        if !uname_raw(&mut uts) {
            return 11;
        }
        msg[12..].copy_from_slice(&uts);
        if !report_ok(out.w(), &msg) {
            return 12;
        }
        if !wait_signal(go.r()) {
            return 13;
        }
        0
    });
    plan.close_fds();
    let before = read_msg(out.r(), 4).unwrap();
    assert_eq!(i32_at(&before, 0) as u32, 65534, "uid before the maps");
    plan.write_id_mappings(child.pid).unwrap();
    signal(go.w());
    let msg = read_msg(out.r(), 12 + 130).unwrap_or_else(|e| panic!("{}", e.describe(&plan)));

    assert_eq!(i32_at(&msg, 0), 0, "uid inside after the maps");
    assert_eq!(i32_at(&msg, 4), 0, "gid inside after the maps");
    assert_eq!(i32_at(&msg, 8), 1, "pid inside the new pid namespace");
    assert_eq!(c_field(&msg[12..77]), "berth-fast");
    assert_eq!(c_field(&msg[77..142]), "berth.test");

    for k in created {
        assert_ne!(ns_ino(child.pid, k), self_ino(k), "{k} namespace not new");
    }
    assert_eq!(
        ns_ino(child.pid, NamespaceKind::Time),
        self_ino(NamespaceKind::Time),
        "time namespace must be shared"
    );
    assert_eq!(
        read_map(format!("/proc/{}/uid_map", child.pid)),
        vec![(0, 0, 1), (1, 100000, 1000)]
    );
    assert_eq!(
        read_map(format!("/proc/{}/gid_map", child.pid)),
        vec![(0, 0, 1), (1, 200000, 2000), (5000, 5000, 3)]
    );
    // As root, setgroups is left alone.
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/setgroups", child.pid)).unwrap(),
        "allow\n"
    );
    // The host's hostname did not change.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        "berth-fast\n"
    );

    signal(go.w());
    assert_eq!(child.wait(), 0);
}

#[test]
fn without_a_user_namespace_only_the_asked_namespaces_are_new() {
    let plan = NamespacePlan::prepare(&linux(
        Some(vec![ns(T::Uts, None), ns(T::Ipc, None)]),
        None,
        None,
        None,
    ))
    .unwrap();
    assert_eq!(plan.clone_flags(), libc::CLONE_NEWUTS | libc::CLONE_NEWIPC);
    let go = Pipe::new();
    let child = spawn(
        plan.clone_flags(),
        || if wait_signal(go.r()) { 0 } else { 1 },
    );
    // Nothing to map: a no-op, and the child keeps the parent's user namespace.
    plan.write_id_mappings(child.pid).unwrap();
    for k in NamespaceKind::ALL {
        let same = ns_ino(child.pid, k) == self_ino(k);
        let new = matches!(k, NamespaceKind::Uts | NamespaceKind::Ipc);
        assert_eq!(same, !new, "{k}");
    }
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/uid_map", child.pid)).unwrap(),
        std::fs::read_to_string("/proc/self/uid_map").unwrap()
    );
    signal(go.w());
    assert_eq!(child.wait(), 0);
}

#[test]
fn bad_hostnames_fail_with_einval_and_change_nothing() {
    let plan =
        NamespacePlan::prepare(&linux(Some(vec![ns(T::Uts, None)]), None, None, None)).unwrap();
    let out = Pipe::new();
    let child = spawn(plan.clone_flags(), || {
        if let Err(e) = set_hostname(b"before") {
            return report_err(out.w(), e);
        }
        let long = [b'a'; 65];
        let cases: [(bool, &[u8]); 4] = [
            (true, &long),
            (true, b"bad\0name"),
            (false, &long),
            (false, b"bad\0"),
        ];
        for (host, name) in cases {
            let r = if host {
                set_hostname(name)
            } else {
                set_domainname(name)
            };
            match r {
                Err(e) => {
                    report_err(out.w(), e);
                }
                Ok(()) => {
                    report_ok(out.w(), &[0; 8]);
                }
            }
        }
        // 64 bytes is the limit and works.
        let ok = [b'b'; 64];
        if let Err(e) = set_hostname(&ok) {
            return report_err(out.w(), e);
        }
        let mut uts = [0u8; 130];
        if !uname_raw(&mut uts) {
            return 11;
        }
        report_ok(out.w(), &uts);
        0
    });
    let expect = [
        (
            ChildOp::Hostname,
            "sethostname (hostname): Invalid argument (os error 22)",
        ),
        (
            ChildOp::Hostname,
            "sethostname (hostname): Invalid argument (os error 22)",
        ),
        (
            ChildOp::Domainname,
            "setdomainname (domainname): Invalid argument (os error 22)",
        ),
    ];
    for (op, text) in expect {
        let e = read_msg(out.r(), 8).expect_err("bad name accepted");
        assert_eq!(e.op, op);
        assert_eq!(e.kind, None);
        assert_eq!(e.errno, libc::EINVAL);
        assert_eq!(e.describe(&plan).to_string(), text);
    }
    // "bad\0": one trailing NUL is fine.
    read_msg(out.r(), 8).expect("trailing NUL rejected");
    let uts = read_msg(out.r(), 130).unwrap_or_else(|e| panic!("{}", e.describe(&plan)));
    assert_eq!(c_field(&uts[..65]), "b".repeat(64));
    assert_eq!(c_field(&uts[65..]), "bad");
    assert_eq!(child.wait(), 0);
}
