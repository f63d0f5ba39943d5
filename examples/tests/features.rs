//! `berth features` claims only what the running kernel does: every namespace type it lists
//! is created for a container, every seccomp action (but NOTIFY, which needs a listener; see
//! oci-runtime-core/tests/seccomp.rs) and every flag it lists is accepted by a container's
//! filter. Run on this host and, by the VM lane, on Debian's 6.1 in each cgroup layout.

mod common;

use std::path::Path;

use common::*;

fn features() -> serde_json::Value {
    let out = berth_cmd(Path::new("/nonexistent"), &["features"])
        .output()
        .expect("berth features");
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("features is JSON")
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a busybox container whose config `edit` changed; its stdout, or the error.
fn run(edit: impl FnOnce(&mut serde_json::Value), script: &str) -> Result<String, String> {
    let tmp = clients::TempDir::new("features");
    let bundle = tmp.join("bundle");
    busybox_rootfs(&bundle.join("rootfs"), &["sh", "readlink", "true"]);
    let out = berth_cmd(&tmp.join("root"), &["spec", "-b"])
        .arg(&bundle)
        .output()
        .expect("berth spec");
    assert!(out.status.success(), "berth spec: {}", text(&out.stderr));
    edit_json(&bundle.join("config.json"), |v| {
        v["process"]["terminal"] = false.into();
        v["process"]["args"] = serde_json::json!(["sh", "-c", script]);
        edit(v);
    });
    let mut cmd = berth_cmd(&tmp.join("root"), &["run", "-b"]);
    cmd.arg(&bundle).arg(unique("feat"));
    let out = run_to_files(cmd, tmp.path());
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!("{:?}: {}", out.status.code(), text(&out.stderr)))
    }
}

#[test]
fn every_listed_namespace_is_made() {
    let f = features();
    let listed = strings(&f["linux"]["namespaces"]);
    assert!(listed.len() >= 7, "{listed:?}");
    for ns in &listed {
        let proc = match ns.as_str() {
            "mount" => "mnt",
            "network" => "net",
            other => other,
        };
        let host = std::fs::read_link(format!("/proc/self/ns/{proc}")).unwrap_or_else(|e| {
            panic!("features lists {ns}, the host has no /proc/self/ns/{proc}: {e}")
        });
        let out = run(
            |v| {
                let l = &mut v["linux"];
                let list = l["namespaces"].as_array_mut().expect("namespaces");
                if !list.iter().any(|n| n["type"] == ns.as_str()) {
                    list.push(serde_json::json!({ "type": ns }));
                }
                if ns == "user" {
                    l["uidMappings"] =
                        serde_json::json!([{"containerID": 0, "hostID": 0, "size": 4294967295u64}]);
                    l["gidMappings"] = l["uidMappings"].clone();
                }
            },
            &format!("readlink /proc/self/ns/{proc}"),
        )
        .unwrap_or_else(|e| panic!("a container with a {ns} namespace: {e}"));
        assert_ne!(
            out.trim(),
            host.to_string_lossy(),
            "{ns}: the container shares the runtime's"
        );
    }
}

#[test]
fn every_listed_seccomp_action_and_flag_is_accepted() {
    let f = features();
    let sc = &f["linux"]["seccomp"];
    let actions = strings(&sc["actions"]);
    let flags = strings(&sc["supportedFlags"]);
    assert!(actions.len() >= 8, "{actions:?}");
    for a in actions.iter().filter(|a| *a != "SCMP_ACT_NOTIFY") {
        // A rule for a syscall the container never makes: only the filter's load is tested.
        let seccomp = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["kexec_load"], "action": a}]
        });
        let out = run(|v| v["linux"]["seccomp"] = seccomp, "echo ran")
            .unwrap_or_else(|e| panic!("features lists {a}: {e}"));
        assert_eq!(out.trim(), "ran", "{a}");
    }
    for fl in &flags {
        let seccomp = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": [fl],
            "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}]
        });
        let out = run(|v| v["linux"]["seccomp"] = seccomp, "echo ran")
            .unwrap_or_else(|e| panic!("features lists {fl}: {e}"));
        assert_eq!(out.trim(), "ran", "{fl}");
    }
}
