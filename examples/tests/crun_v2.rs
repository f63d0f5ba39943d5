//! berth and crun on the same configs on a pure cgroup v2 host (crun refuses hybrid ones, such
//! as the development VM): each container prints its own cgroup's files through a cgroup
//! namespace, and the two outputs must be equal, value by value, after the v1 -> v2
//! conversions each runtime does.
//!
//! Runs for real in the VM lane's pure v2 boot (`tests/vm/run.sh --layout v2`). Elsewhere it
//! prints `SKIP:`; with `BERTH_VM_LAYOUT=v2` set (the lane sets it) a missing crun or a
//! non-v2 host is a failure instead.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The files each container prints, relative to its cgroup (its /sys/fs/cgroup).
const FILES: &[&str] = &[
    "cgroup.controllers",
    "cgroup.type",
    "cpu.weight",
    "cpu.max",
    "cpu.max.burst",
    "cpu.idle",
    "cpuset.cpus",
    "cpuset.mems",
    "memory.max",
    "memory.low",
    "memory.high",
    "memory.swap.max",
    "memory.oom.group",
    "pids.max",
    "io.weight",
    "io.bfq.weight",
    "io.max",
    "hugetlb.2MB.max",
    "hugetlb.2MB.rsvd.max",
];

/// The script the container runs: each file as `name: content` on one line, then its own
/// /proc/self/cgroup.
fn probe() -> String {
    let mut s = String::from("cd /sys/fs/cgroup || exit 9; for f in");
    for f in FILES {
        s.push(' ');
        s.push_str(f);
    }
    s.push_str(
        "; do printf '%s: %s\\n' \"$f\" \"$(tr '\\n' ' ' < $f 2>&1)\"; done; cat /proc/self/cgroup",
    );
    s
}

/// Whether this host is pure cgroup v2 with crun installed; otherwise SKIP, or fail under the
/// VM lane's v2 boot.
fn applies() -> bool {
    let demanded = std::env::var("BERTH_VM_LAYOUT").as_deref() == Ok("v2");
    let pure_v2 = pure_v2();
    let crun = Command::new("crun").arg("--version").output().is_ok();
    if pure_v2 && crun {
        return true;
    }
    assert!(
        !demanded,
        "the VM lane's v2 boot needs crun and a pure v2 host (crun: {crun}, v2: {pure_v2})"
    );
    eprintln!("SKIP: needs a pure cgroup v2 host and crun (crun: {crun}, v2: {pure_v2})");
    false
}

/// A bundle under `dir`: busybox, `berth spec`'s config with a cgroup namespace, the probe as
/// its program, `resources` as linux.resources and an absolute cgroupsPath of its own.
fn bundle(dir: &Path, resources: &serde_json::Value, cgroup: &str) {
    let rootfs = dir.join("rootfs");
    busybox_rootfs(&rootfs, &["sh", "cat", "tr", "printf"]);
    let out = berth_cmd(dir, &["spec", "-b"])
        .arg(dir)
        .output()
        .expect("berth spec");
    assert!(out.status.success(), "berth spec: {}", text(&out.stderr));
    let probe = probe();
    edit_json(&dir.join("config.json"), |v| {
        v["process"]["terminal"] = false.into();
        v["process"]["args"] = serde_json::json!(["sh", "-c", probe]);
        set_cgroup_ns(v);
        let linux = &mut v["linux"];
        linux["cgroupsPath"] = cgroup.into();
        let mut r = resources.clone();
        r["devices"] = serde_json::json!([{"allow": false, "access": "rwm"}]);
        linux["resources"] = r;
    });
}

/// Runs the bundle once with berth and once with crun (cgroupfs driver) and returns both
/// outputs (stdout, or the error).
fn both(resources: serde_json::Value) -> (String, String) {
    let tmp = clients::TempDir::new("crunv2");
    let mut outs = Vec::new();
    for rt in ["berth", "crun"] {
        let dir = tmp.join(rt);
        std::fs::create_dir_all(&dir).expect("bundle dir");
        let id = unique(&format!("cmp-{rt}"));
        bundle(&dir, &resources, &format!("/berth-crun-cmp/{id}"));
        let root = tmp.join(format!("{rt}-root"));
        let mut cmd = if rt == "berth" {
            berth_cmd(&root, &["run", "-b"])
        } else {
            let mut c = Command::new("crun");
            c.arg("--root")
                .arg(&root)
                .arg("--cgroup-manager=cgroupfs")
                .args(["run", "-b"]);
            c
        };
        cmd.arg(&dir).arg(&id);
        let out = run_to_files(cmd, tmp.path());
        let s = if out.status.success() {
            text(&out.stdout).replace(&id, "ID")
        } else {
            format!(
                "exit {:?}: {}",
                out.status.code(),
                text(&out.stderr).lines().last().unwrap_or("")
            )
        };
        outs.push(s);
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/berth-crun-cmp/{id}"));
    }
    let _ = std::fs::remove_dir("/sys/fs/cgroup/berth-crun-cmp");
    let crun = outs.pop().unwrap_or_default();
    let berth = outs.pop().unwrap_or_default();
    (berth, crun)
}

fn assert_same(what: &str, resources: serde_json::Value) {
    let (berth, crun) = both(resources);
    assert!(
        !berth.starts_with("exit") && !crun.starts_with("exit"),
        "{what}:\nberth: {berth}\ncrun: {crun}"
    );
    // berth limits hugetlb reservations with the same value (hugetlb.<size>.rsvd.max), as runc
    // 1.1 does; crun 1.8 leaves them unlimited.
    let value = |s: &str, f: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(f).map(str::to_string))
            .unwrap_or_default()
    };
    assert_eq!(
        value(&berth, "hugetlb.2MB.rsvd.max:"),
        value(&berth, "hugetlb.2MB.max:"),
        "{what}: berth's hugetlb reservation limit"
    );
    let rsvd = |l: &&str| !l.starts_with("hugetlb.2MB.rsvd.max:");
    let b: Vec<&str> = berth.lines().filter(rsvd).collect();
    let c: Vec<&str> = crun.lines().filter(rsvd).collect();
    // crun 1.8 enables a fixed list of controllers (not rdma or misc); berth enables every
    // one the kernel offers, as runc does. crun's must all be there.
    let same = |x: &str, y: &str| match (
        x.strip_prefix("cgroup.controllers:"),
        y.strip_prefix("cgroup.controllers:"),
    ) {
        (Some(xs), Some(ys)) => ys
            .split_whitespace()
            .all(|c| xs.split_whitespace().any(|b| b == c)),
        _ => x == y,
    };
    let diff: Vec<String> = b
        .iter()
        .zip(&c)
        .filter(|(x, y)| !same(x, y))
        .map(|(x, y)| format!("  berth {x}\n  crun  {y}"))
        .collect();
    assert!(
        diff.is_empty() && b.len() == c.len(),
        "{what}: berth and crun differ:\n{}\nberth:\n{berth}\ncrun:\n{crun}",
        diff.join("\n")
    );
}

/// The virtio scratch disk of the VM lane, or the first block device the host has.
fn disk() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/partitions").unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (major, minor, name) = (f.first()?, f.get(1)?, f.get(3)?);
            // A whole disk: not a partition (sda1, vda1), not a loop device.
            if name.starts_with("loop") || name.ends_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            Some((major.parse().ok()?, minor.parse().ok()?))
        })
        .next()
        .expect("a block device in /proc/partitions")
}

#[test]
fn no_resources() {
    if !applies() {
        return;
    }
    assert_same("no linux.resources", serde_json::json!({}));
}

#[test]
fn every_v1_field_converted() {
    if !applies() {
        return;
    }
    let (maj, min) = disk();
    assert_same(
        "every field",
        serde_json::json!({
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
            "memory": {"limit": 67108864, "reservation": 33554432, "swap": 100663296},
            "pids": {"limit": 100},
            "blockIO": {"weight": 500,
                "weightDevice": [{"major": maj, "minor": min, "weight": 200}],
                "throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": maj, "minor": min, "rate": 100}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]
        }),
    );
}

#[test]
fn bounds_of_the_conversions() {
    if !applies() {
        return;
    }
    for (what, r) in [
        (
            "minimum",
            serde_json::json!({"cpu": {"shares": 2}, "blockIO": {"weight": 10},
                               "memory": {"limit": 8388608, "swap": 8388608}}),
        ),
        (
            "maximum",
            serde_json::json!({"cpu": {"shares": 262144}, "blockIO": {"weight": 1000},
                               "memory": {"limit": -1, "swap": -1}, "pids": {"limit": -1}}),
        ),
        (
            "quota without period",
            serde_json::json!({"cpu": {"quota": 20000}}),
        ),
        (
            "unified",
            serde_json::json!({"unified": {"memory.high": "50000000", "pids.max": "7",
                                           "memory.oom.group": "1"}}),
        ),
    ] {
        assert_same(what, r);
    }
}
