//! A container whose config leaves out the mount namespace: it shares the runtime's, so its
//! mounts are made in the runtime's namespace. A test binary of its own, and one test at a
//! time: every harness checks, when it is dropped, that no test mount is left in this
//! process' namespace, and these tests have some there while they run.

mod common;
mod support;

use std::fs;
use std::sync::{Mutex, MutexGuard};

use berth_runtime_core::ExecOptions;
use berth_runtime_core::oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Spec};
use support::*;

use LinuxNamespaceType as T;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn set_namespaces(spec: &mut Spec, list: &[LinuxNamespaceType]) {
    let ns = list
        .iter()
        .map(|t| {
            let mut n = LinuxNamespace::default();
            n.set_typ(*t);
            n
        })
        .collect();
    spec.linux_mut()
        .as_mut()
        .expect("linux")
        .set_namespaces(Some(ns));
}

/// The optional fields (propagation) of the host's `/` mount.
fn host_root_propagation() -> String {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .map(|l| {
            l.split(" - ")
                .next()
                .unwrap_or_default()
                .split(' ')
                .skip(6)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn without_a_mount_namespace_the_runtimes_is_shared_and_left_clean() {
    // The spec: a namespace type left out is the runtime's. The container's mounts are
    // then the runtime's too: made beneath the rootfs, never changing the propagation of
    // the runtime's "/", and all gone after delete (runc leaves them mounted).
    let _one = one_at_a_time();
    let (mut b, out) = sh_bundle("readlink /proc/self/ns/mnt > /out/mnt");
    set_namespaces(&mut b.spec, &[T::Pid, T::Network, T::Ipc, T::Uts]);
    let before = host_root_propagation();
    let h = Harness::new();
    let id = h.id("nomntns");
    let c = h.create(&id, &b).expect("create without a mount namespace");
    let rootfs = b.rootfs().to_str().expect("utf8").to_string();
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        info.lines()
            .any(|l| l.split(' ').nth(4) == Some(&format!("{rootfs}/proc"))),
        "the container's /proc is not in the runtime's namespace"
    );
    h.rt.start(&id).expect("start");
    assert_eq!(h.wait(&c), 0);
    assert_eq!(
        read(out.path().join("mnt")),
        fs::read_link("/proc/self/ns/mnt")
            .expect("ns")
            .to_string_lossy()
    );
    h.rt.delete(&id, false).expect("delete");
    assert_no_test_mounts();
    assert_eq!(
        host_root_propagation(),
        before,
        "the host's / propagation changed"
    );
}

#[test]
fn exec_into_a_container_without_a_mount_namespace_is_in_its_root() {
    // The init shares the runtime's mount namespace and is only chrooted: setns can't give
    // an exec'd process that root, so exec chroots into the init's. Before, the process ran
    // in the runtime's `/` (and, being the container's, exposed it through /proc/PID/root).
    let _one = one_at_a_time();
    let (mut b, out) = sh_bundle("exec sleep 1000");
    set_namespaces(&mut b.spec, &[T::Pid, T::Network, T::Ipc, T::Uts]);
    // Before create: the read-only root is a bind in the runtime's namespace after it.
    fs::write(b.rootfs().join("marker"), "rootfs").expect("marker");
    let h = Harness::new();
    let id = h.id("execnomnt");
    let c = h.create(&id, &b).expect("create without a mount namespace");
    h.rt.start(&id).expect("start");
    // The bundle's host path: nothing there inside the container's root.
    let host = b.path().to_str().expect("utf8").to_string();
    let mut p = b.spec.process().clone().expect("process");
    p.set_args(Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("cat /marker > /out/marker; test -e {host}/config.json; echo $? > /out/rc"),
    ]));
    let e =
        h.rt.raw()
            .exec(&id, &p, &ExecOptions::default())
            .expect("exec");
    assert_eq!(e.wait().expect("wait"), 0);
    assert_eq!(read(out.path().join("marker")), "rootfs");
    assert_eq!(
        read(out.path().join("rc")),
        "1",
        "the runtime's / is visible"
    );
    h.rt.delete(&id, true).expect("delete");
    assert_eq!(h.wait(&c), 128 + libc::SIGKILL);
    assert_no_test_mounts();
}
