//! Namespaces of real containers, compared by inode with the runtime's own
//! (/proc/<pid>/ns/*), plus what the container sees in them (id maps, clocks, hostname).

mod common;
mod support;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use berth_runtime_core::Error;
use berth_runtime_core::oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, LinuxTimeOffset,
    Spec,
};
use common::Bundle;
use support::*;

use LinuxNamespaceType as T;

fn set_namespaces(spec: &mut Spec, list: &[(LinuxNamespaceType, Option<PathBuf>)]) {
    let ns = list
        .iter()
        .map(|(t, p)| {
            let mut n = LinuxNamespace::default();
            n.set_typ(*t);
            n.set_path(p.clone());
            n
        })
        .collect();
    spec.linux_mut()
        .as_mut()
        .expect("linux")
        .set_namespaces(Some(ns));
}

const ALL_NS: [&str; 8] = ["mnt", "pid", "net", "ipc", "uts", "cgroup", "user", "time"];

#[test]
fn created_namespaces_differ_from_the_runtimes() {
    let (mut b, out) = sh_bundle("echo $$ > /out/pid; readlink /proc/self/ns/cgroup > /out/cgroup");
    set_namespaces(
        &mut b.spec,
        &[
            (T::Pid, None),
            (T::Network, None),
            (T::Ipc, None),
            (T::Uts, None),
            (T::Mount, None),
            (T::Cgroup, None),
        ],
    );
    let h = Harness::new();
    let id = h.id("ns");
    let c = h.create(&id, &b).expect("create");
    for ns in ALL_NS {
        let theirs = ns_id(c.pid(), ns);
        let ours = ns_id("self", ns);
        if ns == "user" || ns == "time" {
            assert_eq!(
                theirs, ours,
                "{ns} was not asked for but is not the runtime's"
            );
        } else {
            assert_ne!(theirs, ours, "{ns} namespace is the runtime's");
        }
    }
    let cgroup_ns = ns_id(c.pid(), "cgroup");
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    h.rt.delete(&id, false).expect("delete");
    assert_eq!(
        read(out.path().join("pid")),
        "1",
        "the init is not pid 1 of a new pid namespace"
    );
    assert_eq!(read(out.path().join("cgroup")), cgroup_ns);
}

#[test]
fn only_listed_namespaces_are_created() {
    // Only a mount namespace: everything else is shared with the runtime.
    let (mut b, out) = sh_bundle("echo $$ > /out/pid");
    set_namespaces(&mut b.spec, &[(T::Mount, None)]);
    b.spec.set_hostname(None);
    // sysfs needs a network namespace of its own; mqueue an ipc one.
    let mounts = b.spec.mounts().clone().unwrap_or_default();
    let kept = mounts
        .into_iter()
        .filter(|m| {
            !["sysfs", "mqueue", "cgroup"].contains(&m.typ().as_deref().unwrap_or_default())
        })
        .collect();
    b.spec.set_mounts(Some(kept));
    b.spec
        .linux_mut()
        .as_mut()
        .expect("linux")
        .set_masked_paths(None);
    let h = Harness::new();
    let id = h.id("ns");
    let c = h.create(&id, &b).expect("create");
    for ns in ALL_NS {
        let (theirs, ours) = (ns_id(c.pid(), ns), ns_id("self", ns));
        if ns == "mnt" {
            assert_ne!(theirs, ours, "mount namespace");
        } else {
            assert_eq!(theirs, ours, "{ns} namespace");
        }
    }
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    h.rt.delete(&id, false).expect("delete");
    assert_eq!(
        read(out.path().join("pid")),
        c.pid().to_string(),
        "shared pid namespace: host pid"
    );
}

/// A process in a new network namespace, killed on drop.
struct NetnsHolder(Child);

impl NetnsHolder {
    fn new() -> Self {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "1000"])
            .spawn()
            .expect("spawn unshare --net sleep");
        let holder = NetnsHolder(child);
        let pid = holder.pid();
        let ours = ns_id("self", "net");
        assert!(
            wait_until(Duration::from_secs(10), || {
                fs::read_link(format!("/proc/{pid}/ns/net"))
                    .is_ok_and(|l| l.to_string_lossy() != ours)
                    && fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "sleep")
            }),
            "unshare did not enter a new netns"
        );
        holder
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn joins_a_network_namespace_by_path() {
    let holder = NetnsHolder::new();
    let path = PathBuf::from(format!("/proc/{}/ns/net", holder.pid()));
    let (mut b, out) =
        sh_bundle("readlink /proc/self/ns/net > /out/net; readlink /proc/self/ns/uts > /out/uts");
    set_namespaces(
        &mut b.spec,
        &[
            (T::Pid, None),
            (T::Network, Some(path)),
            (T::Ipc, None),
            (T::Uts, None),
            (T::Mount, None),
        ],
    );
    let h = Harness::new();
    let id = h.id("joinnet");
    let c = h.create(&id, &b).expect("create");
    let target = ns_id(holder.pid(), "net");
    assert_eq!(
        ns_id(c.pid(), "net"),
        target,
        "the container is not in the joined netns"
    );
    assert_ne!(ns_id(c.pid(), "uts"), ns_id("self", "uts"));
    assert_ne!(ns_id(c.pid(), "pid"), ns_id("self", "pid"));
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    h.rt.delete(&id, false).expect("delete");
    assert_eq!(read(out.path().join("net")), target);
    assert_ne!(read(out.path().join("uts")), ns_id("self", "uts"));
}

#[test]
fn joining_a_missing_namespace_path_fails_cleanly() {
    let mut b = Bundle::new();
    set_namespaces(
        &mut b.spec,
        &[
            (T::Pid, None),
            (T::Network, Some(PathBuf::from("/proc/0/ns/net"))),
            (T::Uts, None),
            (T::Mount, None),
        ],
    );
    let h = Harness::new();
    let id = h.id("joinmissing");
    let err = h.create(&id, &b).expect_err("join of a missing namespace");
    assert_err_contains(&err, &["/proc/0/ns/net"]);
    assert!(h.leftover_state().is_empty());
}

fn id_map(container: u32, host: u32, size: u32) -> LinuxIdMapping {
    LinuxIdMappingBuilder::default()
        .container_id(container)
        .host_id(host)
        .size(size)
        .build()
        .expect("id mapping")
}

#[test]
fn user_namespace_with_id_mappings() {
    let (mut b, out) = sh_bundle(
        "cat /proc/self/uid_map > /out/uid_map; cat /proc/self/gid_map > /out/gid_map; \
         id -u > /out/uid; touch /out/by-root",
    );
    set_namespaces(
        &mut b.spec,
        &[
            (T::Pid, None),
            (T::Network, None),
            (T::Ipc, None),
            (T::Uts, None),
            (T::Mount, None),
            (T::User, None),
        ],
    );
    let linux = b.spec.linux_mut().as_mut().expect("linux");
    linux.set_uid_mappings(Some(vec![id_map(0, 100_000, 65_536)]));
    linux.set_gid_mappings(Some(vec![id_map(0, 200_000, 65_536)]));
    let h = Harness::new();
    let id = h.id("userns");
    let c = h.create(&id, &b).expect("create");
    assert_ne!(ns_id(c.pid(), "user"), ns_id("self", "user"));
    let host_map = read(format!("/proc/{}/uid_map", c.pid()));
    assert_eq!(
        host_map.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    h.rt.delete(&id, false).expect("delete");

    let words = |f: &str| {
        read(out.path().join(f))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(words("uid_map"), ["0", "100000", "65536"]);
    assert_eq!(words("gid_map"), ["0", "200000", "65536"]);
    assert_eq!(read(out.path().join("uid")), "0");
    let meta = fs::metadata(out.path().join("by-root")).expect("stat");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (100_000, 200_000),
        "owner of a file made by container root"
    );
}

#[test]
fn time_namespace_offsets_move_the_clocks() {
    const BOOT: i64 = 1_000_000;
    const MONO: i64 = 500_000;
    let (mut b, out) = sh_bundle("cat /proc/uptime > /out/uptime");
    set_namespaces(
        &mut b.spec,
        &[
            (T::Pid, None),
            (T::Network, None),
            (T::Ipc, None),
            (T::Uts, None),
            (T::Mount, None),
            (T::Time, None),
        ],
    );
    let offset = |s: i64| {
        let mut o = LinuxTimeOffset::default();
        o.set_secs(Some(s));
        o.set_nanosecs(Some(0));
        o
    };
    b.spec
        .linux_mut()
        .as_mut()
        .expect("linux")
        .set_time_offsets(Some(HashMap::from([
            ("boottime".to_string(), offset(BOOT)),
            ("monotonic".to_string(), offset(MONO)),
        ])));
    let uptime = |text: &str| -> f64 {
        text.split_whitespace()
            .next()
            .expect("uptime field")
            .parse()
            .expect("uptime number")
    };
    let h = Harness::new();
    let before = uptime(&read("/proc/uptime"));
    let id = h.id("timens");
    let c = h.create(&id, &b).expect("create");
    assert_ne!(ns_id(c.pid(), "time"), ns_id("self", "time"));
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    let after = uptime(&read("/proc/uptime"));
    h.rt.delete(&id, false).expect("delete");
    let inside = uptime(&read(out.path().join("uptime")));
    assert!(
        inside >= before + BOOT as f64 - 1.0 && inside <= after + BOOT as f64 + 1.0,
        "uptime inside {inside} is not host uptime ({before}..{after}) + {BOOT}"
    );
    // The runtime's own clock is untouched.
    assert!(after - before < 60.0);
}

#[test]
fn hostname_and_domainname() {
    let (mut b, out) =
        sh_bundle("hostname > /out/hostname; cat /proc/sys/kernel/domainname > /out/domainname");
    b.spec.set_hostname(Some("box-7".into()));
    b.spec.set_domainname(Some("example.test".into()));
    let host_name = read("/proc/sys/kernel/hostname");
    let host_domain = read("/proc/sys/kernel/domainname");
    let h = Harness::new();
    assert_eq!(h.run(&b), 0);
    assert_eq!(read(out.path().join("hostname")), "box-7");
    assert_eq!(read(out.path().join("domainname")), "example.test");
    assert_eq!(read("/proc/sys/kernel/hostname"), host_name);
    assert_eq!(read("/proc/sys/kernel/domainname"), host_domain);

    // Without a uts namespace the hostname would be the host's: refused.
    let mut b2 = Bundle::new();
    set_namespaces(&mut b2.spec, &[(T::Pid, None), (T::Mount, None)]);
    b2.spec.set_hostname(Some("nope".into()));
    let id = h.id("nouts");
    match h.create(&id, &b2) {
        Err(e @ Error::Config(_)) => assert_err_contains(&e, &["hostname", "uts"]),
        other => panic!("hostname without uts namespace: {other:?}"),
    }
    assert_eq!(read("/proc/sys/kernel/hostname"), host_name);
    assert!(h.leftover_state().is_empty());
}

#[test]
fn force_delete_in_a_joined_pid_namespace_spares_its_owner() {
    let h = Harness::new();
    let (owner_b, _owner_out) = sh_bundle("exec sleep 1000");
    let owner_id = h.id("pidowner");
    let owner = h.create(&owner_id, &owner_b).expect("create owner");
    h.rt.start(&owner_id).expect("start owner");

    let (mut b, out) = sh_bundle("echo $$ > /out/pid; exec sleep 1000");
    set_namespaces(
        &mut b.spec,
        &[
            (
                T::Pid,
                Some(PathBuf::from(format!("/proc/{}/ns/pid", owner.pid()))),
            ),
            (T::Ipc, None),
            (T::Uts, None),
            (T::Mount, None),
        ],
    );
    let id = h.id("pidguest");
    let guest = h.create(&id, &b).expect("create guest");
    assert_eq!(ns_id(guest.pid(), "pid"), ns_id(owner.pid(), "pid"));
    h.rt.start(&id).expect("start guest");
    assert!(wait_until(Duration::from_secs(10), || out
        .path()
        .join("pid")
        .exists()));
    assert_ne!(
        read(out.path().join("pid")),
        "1",
        "the guest is not pid 1 of a joined ns"
    );

    h.rt.kill(&id, libc::SIGKILL, true)
        .expect("kill --all guest");
    assert_eq!(h.wait(&guest), 128 + libc::SIGKILL);
    h.rt.delete(&id, true).expect("delete --force guest");
    assert!(
        alive(owner.pid()),
        "the owner of the joined pid namespace was killed"
    );
    assert_eq!(
        h.rt.state(&owner_id).expect("owner state").status,
        berth_runtime_core::Status::Running
    );
    h.rt.delete(&owner_id, true).expect("delete owner");
    assert_eq!(h.wait(&owner), 128 + libc::SIGKILL);
}

/// `"path": ""` asks for a new namespace, as with runc: every type given so (the user
/// namespace with its mappings) passes validation and is the container's own, by inode.
#[test]
fn an_empty_path_creates_every_namespace() {
    let (mut b, out) = sh_bundle("echo $$ > /out/pid");
    let all = [
        T::Pid,
        T::Network,
        T::Ipc,
        T::Uts,
        T::Mount,
        T::Cgroup,
        T::User,
        T::Time,
    ];
    let list: Vec<_> = all.iter().map(|t| (*t, Some(PathBuf::new()))).collect();
    set_namespaces(&mut b.spec, &list);
    let linux = b.spec.linux_mut().as_mut().expect("linux");
    linux.set_uid_mappings(Some(vec![id_map(0, 100_000, 65_536)]));
    linux.set_gid_mappings(Some(vec![id_map(0, 100_000, 65_536)]));
    let h = Harness::new();
    let id = h.id("emptyns");
    let c = h.create(&id, &b).expect("create");
    for ns in ALL_NS {
        assert_ne!(
            ns_id(c.pid(), ns),
            ns_id("self", ns),
            "{ns} namespace with \"path\": \"\" is the runtime's"
        );
    }
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    h.rt.delete(&id, false).expect("delete");
    assert_eq!(
        read(out.path().join("pid")),
        "1",
        "not pid 1 of a new pid namespace"
    );
}
