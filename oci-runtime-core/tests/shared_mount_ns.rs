//! A container whose config leaves out the mount namespace: it shares the runtime's, so its
//! mounts are made in the runtime's namespace. A test binary of its own: other tests check
//! that no mount of theirs is left in this process' namespace while these exist.

mod common;
mod support;

use std::fs;

use berth_runtime_core::oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Spec};
use support::*;

use LinuxNamespaceType as T;

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
