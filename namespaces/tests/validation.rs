//! `NamespacePlan::prepare` validation (exact messages), plan queries,
//! `NamespaceKind`, `ChildError` encoding and `describe`.

#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use berth_namespaces::{
    ChildError, ChildOp, NamespaceError, NamespaceKind, NamespacePlan, namespace_path,
};
use common::{idmap, linux, ns, offset};
use oci_spec::runtime::{Linux, LinuxNamespaceType as T};
use rstest::rstest;

fn err(l: &Linux) -> String {
    match NamespacePlan::prepare(l) {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn user_maps() -> (
    Option<Vec<oci_spec::runtime::LinuxIdMapping>>,
    Option<Vec<oci_spec::runtime::LinuxIdMapping>>,
) {
    (
        Some(vec![idmap(0, 100000, 65536)]),
        Some(vec![idmap(0, 100000, 65536)]),
    )
}

#[rstest]
#[case::duplicate(
    linux(Some(vec![ns(T::Network, None), ns(T::Ipc, None), ns(T::Network, None)]), None, None, None),
    "linux.namespaces[2].type \"network\" appears twice (first in linux.namespaces[0])"
)]
#[case::duplicate_create_and_join(
    linux(Some(vec![ns(T::Mount, None), ns(T::Mount, Some("/proc/self/ns/mnt"))]), None, None, None),
    "linux.namespaces[1].type \"mount\" appears twice (first in linux.namespaces[0])"
)]
#[case::relative_path(
    linux(Some(vec![ns(T::Network, Some("proc/1/ns/net"))]), None, None, None),
    "linux.namespaces[0].path \"proc/1/ns/net\" must be absolute"
)]
#[case::uid_maps_without_userns(
    linux(Some(vec![ns(T::Mount, None)]), Some(vec![idmap(0, 1000, 1)]), None, None),
    "linux.uidMappings is set but no new user namespace is created (linux.namespaces needs a \"user\" entry without a path)"
)]
#[case::gid_maps_without_userns(
    linux(None, None, Some(vec![idmap(0, 1000, 1)]), None),
    "linux.gidMappings is set but no new user namespace is created (linux.namespaces needs a \"user\" entry without a path)"
)]
#[case::maps_with_joined_userns(
    linux(Some(vec![ns(T::User, Some("/proc/self/ns/user"))]), Some(vec![idmap(0, 1000, 1)]), Some(vec![idmap(0, 1000, 1)]), None),
    "linux.uidMappings is set but no new user namespace is created (linux.namespaces needs a \"user\" entry without a path)"
)]
#[case::userns_without_maps(
    linux(Some(vec![ns(T::Mount, None), ns(T::User, None)]), None, None, None),
    "linux.uidMappings is required when a new user namespace is created (linux.namespaces[1])"
)]
#[case::userns_with_empty_maps(
    linux(Some(vec![ns(T::User, None)]), Some(vec![]), Some(vec![]), None),
    "linux.uidMappings is required when a new user namespace is created (linux.namespaces[0])"
)]
#[case::userns_without_gid_maps(
    linux(Some(vec![ns(T::User, None)]), Some(vec![idmap(0, 1000, 1)]), None, None),
    "linux.gidMappings is required when a new user namespace is created (linux.namespaces[0])"
)]
#[case::empty_mapping(
    linux(Some(vec![ns(T::User, None)]), Some(vec![idmap(0, 1000, 1), idmap(1, 2000, 0)]), Some(vec![idmap(0, 1000, 1)]), None),
    "linux.uidMappings[1].size must be greater than 0"
)]
#[case::container_overflow(
    linux(Some(vec![ns(T::User, None)]), Some(vec![idmap(4294967295, 0, 1)]), Some(vec![idmap(0, 1000, 1)]), None),
    "linux.uidMappings[0].containerID 4294967295 with size 1 ends past 4294967294, the highest id that can be mapped"
)]
#[case::host_overflow(
    linux(Some(vec![ns(T::User, None)]), Some(vec![idmap(0, 1000, 1)]), Some(vec![idmap(0, 4294967200, 96)]), None),
    "linux.gidMappings[0].hostID 4294967200 with size 96 ends past 4294967294, the highest id that can be mapped"
)]
#[case::container_overlap(
    linux(Some(vec![ns(T::User, None)]), Some(vec![idmap(0, 1000, 10), idmap(5, 2000, 10)]), Some(vec![idmap(0, 1000, 1)]), None),
    "linux.uidMappings[1].containerID range 5-14 overlaps linux.uidMappings[0] (0-9)"
)]
#[case::host_overlap(
    linux(Some(vec![ns(T::User, None)]), Some(vec![idmap(0, 1000, 1)]), Some(vec![idmap(0, 1000, 10), idmap(100, 1009, 1)]), None),
    "linux.gidMappings[1].hostID range 1009-1009 overlaps linux.gidMappings[0] (1000-1009)"
)]
#[case::too_many_mappings(
    linux(Some(vec![ns(T::User, None)]), Some((0..341).map(|i| idmap(i, 1000 + i, 1)).collect()), Some(vec![idmap(0, 1000, 1)]), None),
    "linux.uidMappings has 341 entries, the kernel accepts at most 340"
)]
#[case::map_text_too_long(
    linux(
        Some(vec![ns(T::User, None)]),
        Some((0..340).map(|i| idmap(1_000_000_000 + 10 * i, 2_000_000_000 + 10 * i, 1)).collect()),
        Some(vec![idmap(0, 1000, 1)]),
        None,
    ),
    "linux.uidMappings makes a map text of 8160 bytes, the kernel accepts fewer than 4096 in one write"
)]
#[case::offsets_without_timens(
    linux(Some(vec![ns(T::Mount, None)]), None, None, Some(vec![("monotonic", offset(1, 0))])),
    "linux.timeOffsets is set but no new time namespace is created (linux.namespaces needs a \"time\" entry without a path)"
)]
#[case::offsets_with_joined_timens(
    linux(Some(vec![ns(T::Time, Some("/proc/self/ns/time"))]), None, None, Some(vec![("boottime", offset(1, 0))])),
    "linux.timeOffsets is set but no new time namespace is created (linux.namespaces needs a \"time\" entry without a path)"
)]
#[case::unknown_clock(
    linux(Some(vec![ns(T::Time, None)]), None, None, Some(vec![("monotonic", offset(1, 0)), ("realtime", offset(1, 0))])),
    "linux.timeOffsets[\"realtime\"] is not a clock with a namespace offset (expected \"monotonic\" or \"boottime\")"
)]
#[case::nanosecs_range(
    linux(Some(vec![ns(T::Time, None)]), None, None, Some(vec![("monotonic", offset(1, 1_000_000_000))])),
    "linux.timeOffsets[\"monotonic\"].nanosecs 1000000000 is out of range (must be below 1000000000)"
)]
#[case::secs_too_big(
    linux(Some(vec![ns(T::Time, None)]), None, None, Some(vec![("boottime", offset(4_611_686_019, 0))])),
    "linux.timeOffsets[\"boottime\"].secs 4611686019 is out of range (must be within -4611686018..=4611686018)"
)]
#[case::secs_too_small(
    linux(Some(vec![ns(T::Time, None)]), None, None, Some(vec![("monotonic", offset(i64::MIN, 0))])),
    "linux.timeOffsets[\"monotonic\"].secs -9223372036854775808 is out of range (must be within -4611686018..=4611686018)"
)]
#[case::missing_path(
    linux(Some(vec![ns(T::Network, Some("/nonexistent/berth/ns"))]), None, None, None),
    "linux.namespaces[0].path /nonexistent/berth/ns: cannot open: No such file or directory (os error 2)"
)]
#[case::not_a_namespace(
    linux(Some(vec![ns(T::Network, Some("/proc/self/status"))]), None, None, None),
    "linux.namespaces[0].path /proc/self/status is not a namespace file (ioctl NS_GET_NSTYPE: Inappropriate ioctl for device (os error 25))"
)]
#[case::device(
    linux(Some(vec![ns(T::Network, Some("/dev/null"))]), None, None, None),
    "linux.namespaces[0].path /dev/null is not a namespace file (it is a character device)"
)]
#[case::directory(
    linux(Some(vec![ns(T::Network, Some("/proc/self/ns"))]), None, None, None),
    "linux.namespaces[0].path /proc/self/ns is not a namespace file (it is a directory)"
)]
#[case::wrong_type(
    linux(Some(vec![ns(T::Uts, None), ns(T::Mount, None), ns(T::Ipc, Some("/proc/self/ns/net"))]), None, None, None),
    "linux.namespaces[2].path /proc/self/ns/net is a net namespace, not ipc"
)]
#[case::wrong_type_time(
    linux(Some(vec![ns(T::Pid, Some("/proc/self/ns/time_for_children"))]), None, None, None),
    "linux.namespaces[0].path /proc/self/ns/time_for_children is a time namespace, not pid"
)]
fn prepare_rejects(#[case] l: Linux, #[case] message: &str) {
    assert_eq!(err(&l), message);
    // `validate` runs the same rules, minus those that look at the system (opening the
    // paths to join), and names the same field at the start of the same message.
    match berth_namespaces::validate(&l) {
        Err(e) => {
            assert_eq!(e.to_string(), message);
            let field = e.field().expect("a config error names its field");
            assert!(
                message.starts_with(&format!("{field} ")),
                "{field}: {message}"
            );
        }
        Ok(()) => assert!(
            message.contains("cannot open")
                || message.contains("is not a namespace file")
                || message.contains(" namespace, not "),
            "validate accepted {message:?}"
        ),
    }
}

#[test]
fn a_relative_path_is_reported_before_later_duplicates() {
    let l = linux(
        Some(vec![ns(T::Network, Some("net")), ns(T::Network, None)]),
        None,
        None,
        None,
    );
    assert!(matches!(
        NamespacePlan::prepare(&l),
        Err(NamespaceError::RelativePath { index: 0, .. })
    ));
}

#[test]
fn no_namespaces_means_an_empty_plan() {
    for l in [
        linux(None, None, None, None),
        linux(Some(vec![]), None, None, Some(vec![])),
    ] {
        let p = NamespacePlan::prepare(&l).unwrap();
        assert_eq!(p.clone_flags(), 0);
        assert!(!p.needs_intermediate());
        for k in NamespaceKind::ALL {
            assert!(!p.creates(k) && !p.joins(k), "{k}");
            assert_eq!(p.join_path(k), None);
        }
        // Every child step is a no-op on an empty plan (safe to run here).
        p.join_all().unwrap();
        p.unshare_user().unwrap();
        p.unshare_rest().unwrap();
        p.write_time_offsets().unwrap();
        p.write_id_mappings(1).unwrap();
        p.close_fds();
    }
    let e = NamespacePlan::empty();
    assert_eq!(e.clone_flags(), 0);
    assert!(!e.needs_intermediate());
    assert_eq!(NamespacePlan::default().clone_flags(), 0);
}

#[test]
fn oci_default_namespaces_are_all_created_on_the_fast_path() {
    let p = NamespacePlan::prepare(&Linux::default()).unwrap();
    assert_eq!(
        p.clone_flags(),
        libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWCGROUP
    );
    assert!(!p.needs_intermediate());
    assert!(!p.creates(NamespaceKind::User) && !p.creates(NamespaceKind::Time));
}

/// `"path": ""` creates a new namespace, as with runc (and as `validate` agrees), for
/// every type: with mappings for a user namespace, offsets for a time namespace.
#[rstest]
fn an_empty_path_means_create(
    #[values(
        T::User, T::Mount, T::Pid, T::Uts, T::Ipc, T::Network, T::Cgroup, T::Time
    )]
    t: T,
) {
    let (uid, gid) = if t == T::User {
        user_maps()
    } else {
        (None, None)
    };
    let offsets = (t == T::Time).then(|| vec![("monotonic", offset(1, 0))]);
    let l = linux(Some(vec![ns(t, Some(""))]), uid, gid, offsets);
    berth_namespaces::validate(&l).expect("validate");
    let p = NamespacePlan::prepare(&l).unwrap();
    let k = NamespaceKind::from(t);
    assert!(p.creates(k), "{k}");
    assert!(!p.joins(k));
    assert_eq!(p.join_path(k), None);
    // A time namespace is created on the slow path, everything else by the clone.
    assert_eq!(p.clone_flags(), k.clone_flag() & !libc::CLONE_NEWTIME);
    assert_eq!(p.needs_intermediate(), t == T::Time);
}

#[test]
fn an_empty_path_and_no_path_read_the_same_for_mappings_and_offsets() {
    // Mappings without a user namespace are refused whether the user entry is absent or
    // joins a path; with `"path": ""` they are the new namespace's.
    let maps = || Some(vec![idmap(0, 1000, 1)]);
    let user = |path| linux(Some(vec![ns(T::User, path)]), maps(), maps(), None);
    berth_namespaces::validate(&user(Some(""))).expect("new user namespace");
    assert!(matches!(
        berth_namespaces::validate(&user(Some("/proc/self/ns/user"))),
        Err(NamespaceError::MappingsWithoutUserNamespace { .. })
    ));
    let time = |path| {
        linux(
            Some(vec![ns(T::Time, path)]),
            None,
            None,
            Some(vec![("boottime", offset(1, 0))]),
        )
    };
    berth_namespaces::validate(&time(Some(""))).expect("new time namespace");
    assert!(matches!(
        berth_namespaces::validate(&time(Some("/proc/self/ns/time"))),
        Err(NamespaceError::TimeOffsetsWithoutTimeNamespace)
    ));
}

#[test]
fn user_and_time_namespaces_set_flags_and_the_slow_path() {
    let (uid, gid) = user_maps();
    let p = NamespacePlan::prepare(&linux(
        Some(vec![
            ns(T::User, None),
            ns(T::Mount, None),
            ns(T::Time, None),
        ]),
        uid,
        gid,
        Some(vec![("boottime", offset(-5, 7))]),
    ))
    .unwrap();
    assert!(p.creates(NamespaceKind::User));
    assert!(p.creates(NamespaceKind::Time));
    // The time namespace is never in the clone flags; it forces the slow path.
    assert_eq!(p.clone_flags(), libc::CLONE_NEWUSER | libc::CLONE_NEWNS);
    assert!(p.needs_intermediate());

    let (uid, gid) = user_maps();
    let fast = NamespacePlan::prepare(&linux(
        Some(vec![ns(T::User, None), ns(T::Mount, None)]),
        uid,
        gid,
        None,
    ))
    .unwrap();
    assert!(!fast.needs_intermediate());
}

#[test]
fn adjacent_mappings_and_the_highest_id_are_accepted() {
    let l = linux(
        Some(vec![ns(T::User, None)]),
        Some(vec![
            idmap(0, 1000, 1),
            idmap(1, 100000, 65535),
            idmap(4294967294, 4294967294, 1),
        ]),
        Some(vec![idmap(0, 0, 4294967295)]),
        None,
    );
    NamespacePlan::prepare(&l).unwrap();
}

#[test]
fn joins_are_typed_and_report_their_path() {
    let p = NamespacePlan::prepare(&linux(
        Some(vec![
            ns(T::Network, Some("/proc/self/ns/net")),
            ns(T::Time, Some("/proc/self/ns/time_for_children")),
            ns(T::Mount, None),
        ]),
        None,
        None,
        None,
    ))
    .unwrap();
    assert!(p.joins(NamespaceKind::Network) && p.joins(NamespaceKind::Time));
    assert!(!p.creates(NamespaceKind::Network));
    assert_eq!(
        p.join_path(NamespaceKind::Network).unwrap().to_str(),
        Some("/proc/self/ns/net")
    );
    assert_eq!(p.clone_flags(), libc::CLONE_NEWNS);
    assert!(p.needs_intermediate());
}

#[test]
fn write_id_mappings_errors_name_the_pid_and_file() {
    let (uid, gid) = user_maps();
    let p = NamespacePlan::prepare(&linux(Some(vec![ns(T::User, None)]), uid, gid, None)).unwrap();
    assert_eq!(
        p.write_id_mappings(0).unwrap_err().to_string(),
        "write_id_mappings: invalid pid 0"
    );
    assert_eq!(
        p.write_id_mappings(-3).unwrap_err().to_string(),
        "write_id_mappings: invalid pid -3"
    );
    // pid_max is at most 2^22, so this process cannot exist.
    assert_eq!(
        p.write_id_mappings(i32::MAX).unwrap_err().to_string(),
        "writing /proc/2147483647/uid_map: No such file or directory (os error 2)"
    );
    // Without a new user namespace there is nothing to write.
    NamespacePlan::empty().write_id_mappings(i32::MAX).unwrap();
}

#[rstest]
#[case(T::User, NamespaceKind::User, "user", libc::CLONE_NEWUSER)]
#[case(T::Mount, NamespaceKind::Mount, "mnt", libc::CLONE_NEWNS)]
#[case(T::Pid, NamespaceKind::Pid, "pid", libc::CLONE_NEWPID)]
#[case(T::Uts, NamespaceKind::Uts, "uts", libc::CLONE_NEWUTS)]
#[case(T::Ipc, NamespaceKind::Ipc, "ipc", libc::CLONE_NEWIPC)]
#[case(T::Network, NamespaceKind::Network, "net", libc::CLONE_NEWNET)]
#[case(T::Cgroup, NamespaceKind::Cgroup, "cgroup", libc::CLONE_NEWCGROUP)]
#[case(T::Time, NamespaceKind::Time, "time", libc::CLONE_NEWTIME)]
fn kinds_map_to_oci_proc_and_clone_flags(
    #[case] t: T,
    #[case] k: NamespaceKind,
    #[case] name: &str,
    #[case] flag: libc::c_int,
) {
    assert_eq!(NamespaceKind::from(t), k);
    assert_eq!(k.proc_name(), name);
    assert_eq!(k.to_string(), name);
    assert_eq!(k.clone_flag(), flag);
    assert_eq!(NamespaceKind::from_clone_flag(flag), Some(k));
    assert_eq!(
        namespace_path(1234, k).to_str().unwrap(),
        format!("/proc/1234/ns/{name}")
    );
    // Every kind's file exists for this process.
    assert!(std::path::Path::new("/proc/self/ns").join(name).exists());
}

#[test]
fn join_order_starts_with_user_and_covers_every_kind() {
    use NamespaceKind::*;
    assert_eq!(
        NamespaceKind::ALL,
        [User, Ipc, Uts, Network, Pid, Mount, Cgroup, Time]
    );
    assert_eq!(NamespaceKind::from_clone_flag(0), None);
    assert_eq!(
        NamespaceKind::from_clone_flag(libc::CLONE_NEWNET | libc::CLONE_NEWNS),
        None
    );
}

#[test]
fn child_errors_round_trip_through_eight_bytes() {
    let ops = [
        ChildOp::Setns,
        ChildOp::Unshare,
        ChildOp::TimeOffsets,
        ChildOp::Hostname,
        ChildOp::Domainname,
    ];
    let kinds = std::iter::once(None).chain(NamespaceKind::ALL.into_iter().map(Some));
    for kind in kinds {
        for op in ops {
            for errno in [1, libc::EINVAL, 4095, -1, i32::MAX] {
                let e = ChildError { op, kind, errno };
                assert_eq!(ChildError::from_bytes(&e.to_bytes()), Some(e));
            }
        }
    }
    let good = ChildError {
        op: ChildOp::Setns,
        kind: Some(NamespaceKind::Network),
        errno: 1,
    }
    .to_bytes();
    for (at, v) in [(0, 0u8), (0, 6), (1, 9), (2, 1), (3, 0xff)] {
        let mut b = good;
        b[at] = v;
        assert_eq!(ChildError::from_bytes(&b), None, "byte {at} = {v}");
    }
    assert_eq!(ChildError::from_bytes(&[0; 8]), None);
}

#[test]
fn describe_names_the_path_flags_or_syscall() {
    let p = NamespacePlan::prepare(&linux(
        Some(vec![
            ns(T::Mount, None),
            ns(T::Network, Some("/proc/self/ns/net")),
            ns(T::Pid, None),
            ns(T::Time, None),
        ]),
        None,
        None,
        Some(vec![("monotonic", offset(10, 0))]),
    ))
    .unwrap();
    let d = |op, kind, errno| ChildError { op, kind, errno }.describe(&p).to_string();
    assert_eq!(
        d(ChildOp::Setns, Some(NamespaceKind::Network), libc::EPERM),
        "setns(linux.namespaces[1].path /proc/self/ns/net, CLONE_NEWNET): Operation not permitted (os error 1)"
    );
    assert!(matches!(
        ChildError {
            op: ChildOp::Setns,
            kind: Some(NamespaceKind::Network),
            errno: 1
        }
        .describe(&p),
        NamespaceError::Setns {
            index: 1,
            kind: NamespaceKind::Network,
            ..
        }
    ));
    assert_eq!(
        d(ChildOp::Setns, Some(NamespaceKind::Ipc), libc::EPERM),
        "child error record Setns(ipc) errno 1 does not match this namespace plan"
    );
    assert_eq!(
        d(ChildOp::Setns, None, libc::EPERM),
        "child error record Setns errno 1 does not match this namespace plan"
    );
    assert_eq!(
        d(ChildOp::Unshare, None, libc::EINVAL),
        "unshare(CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWTIME): Invalid argument (os error 22)"
    );
    assert_eq!(
        d(ChildOp::Unshare, Some(NamespaceKind::User), libc::ENOSPC),
        "unshare(CLONE_NEWUSER): No space left on device (os error 28)"
    );
    assert_eq!(
        d(
            ChildOp::TimeOffsets,
            Some(NamespaceKind::Time),
            libc::EACCES
        ),
        "writing linux.timeOffsets to /proc/self/timens_offsets: Permission denied (os error 13)"
    );
    assert_eq!(
        d(ChildOp::Hostname, None, libc::EINVAL),
        "sethostname (hostname): Invalid argument (os error 22)"
    );
    assert_eq!(
        d(ChildOp::Domainname, None, libc::EPERM),
        "setdomainname (domainname): Operation not permitted (os error 1)"
    );
}

#[test]
fn a_fifo_path_is_refused_without_blocking() {
    let dir = common::TempDir::new("ns-fifo");
    let fifo = dir.join("ns");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Opening a FIFO for reading with no writer would block forever.
    let l = linux(
        Some(vec![ns(T::Network, Some(fifo.to_str().unwrap()))]),
        None,
        None,
        None,
    );
    assert_eq!(
        err(&l),
        format!(
            "linux.namespaces[0].path {} is not a namespace file (it is a FIFO)",
            fifo.display()
        )
    );
}
