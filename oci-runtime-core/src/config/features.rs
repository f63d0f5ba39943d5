//! The runtime-spec "features document" for berth (`features.md`,
//! `features-linux.md` of the OCI runtime spec): what a runtime caller may put in a
//! `config.json` and expect berth to honour.
//!
//! It only claims what berth implements today: cgroup v1 and v2 (berth-cgroups manages
//! both, and hybrid hosts), no systemd cgroup driver; seccomp with the actions and flags the
//! running kernel supports; AppArmor, SELinux and Intel RDT as the host has them.

use serde_json::{Value, json};

/// The namespace types berth can create or join: their `config.json` names and the
/// `/proc/self/ns` entries that show the running kernel has them (the cgroup namespace came
/// in 4.6, the time namespace in 5.6).
const NAMESPACES: [(&str, &str); 8] = [
    ("cgroup", "cgroup"),
    ("ipc", "ipc"),
    ("mount", "mnt"),
    ("network", "net"),
    ("pid", "pid"),
    ("user", "user"),
    ("uts", "uts"),
    ("time", "time"),
];

/// The namespace types of [`NAMESPACES`] the running kernel has.
fn kernel_namespaces() -> Vec<&'static str> {
    NAMESPACES
        .iter()
        .filter(|(_, proc)| std::path::Path::new("/proc/self/ns").join(proc).exists())
        .map(|(name, _)| *name)
        .collect()
}

/// Capability names indexed by capability number (`linux/capability.h`):
/// `CAPABILITIES[n]` is the name of capability `n`.
const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Where the kernel publishes the number of its highest capability.
const CAP_LAST_CAP: &str = "/proc/sys/kernel/cap_last_cap";

/// The runtime-spec features document for berth, as JSON.
///
/// `ociVersionMin` is `1.0.0`, `ociVersionMax` the runtime-spec version oci-spec
/// implements. `linux.namespaces` lists the namespace types the running kernel has.
/// `linux.capabilities` lists every capability the running kernel knows
/// (numbers `0..=cap_last_cap`, by name), or the full list berth knows when
/// `/proc/sys/kernel/cap_last_cap` cannot be read. The document deserializes as
/// [`oci_spec::runtime::Features`].
///
/// # Example
///
/// ```
/// use berth_runtime_core::features::features;
///
/// let doc = features();
/// assert_eq!(doc["ociVersionMin"], "1.0.0");
/// println!("{}", serde_json::to_string_pretty(&doc).unwrap());
/// ```
pub fn features() -> Value {
    let lsm = crate::process::security::HostLsm::detect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_spec::runtime::VERSION,
        "hooks": names(&super::validate::HOOK_KINDS),
        "mountOptions": names(berth_rootfs::SUPPORTED_MOUNT_OPTIONS),
        "linux": {
            "namespaces": names(&kernel_namespaces()),
            "capabilities": names(capability_names(kernel_last_cap())),
            "cgroup": {
                "v1": true,
                "v2": true,
                "systemd": false,
                "systemdUser": false
            },
            "seccomp": crate::seccomp::features(),
            "apparmor": { "enabled": lsm.apparmor },
            "selinux": { "enabled": lsm.selinux },
            "intelRdt": { "enabled": crate::intel_rdt::available() }
        },
        "annotations": {
            "io.github.berth.version": env!("CARGO_PKG_VERSION")
        }
    })
}

/// A JSON array of strings.
fn names(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|item| Value::from(*item)).collect())
}

/// The running kernel's highest capability number, if it can be read.
fn kernel_last_cap() -> Option<usize> {
    std::fs::read_to_string(CAP_LAST_CAP)
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// Capability names for numbers `0..=last`, limited to the names berth knows; all
/// of them when `last` is unknown.
fn capability_names(last: Option<usize>) -> &'static [&'static str] {
    let count = last.map_or(CAPABILITIES.len(), |last| {
        last.saturating_add(1).min(CAPABILITIES.len())
    });
    &CAPABILITIES[..count]
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Features, LinuxNamespaceType};
    use rstest::rstest;

    fn strings(value: &Value) -> Vec<String> {
        value
            .as_array()
            .expect("array")
            .iter()
            .map(|v| v.as_str().expect("string").to_string())
            .collect()
    }

    #[test]
    fn has_the_required_keys() {
        let doc = features();
        let top: Vec<&String> = doc.as_object().expect("object").keys().collect();
        for key in [
            "ociVersionMin",
            "ociVersionMax",
            "hooks",
            "mountOptions",
            "linux",
            "annotations",
        ] {
            assert!(doc.get(key).is_some(), "missing {key} in {top:?}");
        }
        assert_eq!(doc["ociVersionMin"], "1.0.0");
        assert_eq!(doc["ociVersionMax"], oci_spec::runtime::VERSION);
        assert_eq!(
            strings(&doc["hooks"]),
            [
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop"
            ]
        );
        assert_eq!(
            doc["annotations"]["io.github.berth.version"],
            env!("CARGO_PKG_VERSION")
        );
    }

    #[test]
    fn mount_options_are_exactly_the_parsed_ones() {
        let options = strings(&features()["mountOptions"]);
        assert_eq!(options, berth_rootfs::SUPPORTED_MOUNT_OPTIONS);
        for needed in [
            "ro",
            "rbind",
            "rro",
            "nosymfollow",
            "tmpcopyup",
            "runbindable",
        ] {
            assert!(options.iter().any(|o| o == needed), "{needed} missing");
        }
    }

    #[test]
    fn linux_section_is_truthful() {
        let doc = features();
        let linux = &doc["linux"];
        // Every kernel berth supports has them all (the time namespace since 5.6).
        assert_eq!(
            strings(&linux["namespaces"]),
            [
                "cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time"
            ]
        );
        assert_eq!(
            linux["cgroup"],
            json!({"v1": true, "v2": true, "systemd": false, "systemdUser": false})
        );
        // The LSM and resctrl sections report what the host has (whatever machine runs this):
        // exactly an `enabled` boolean, from the same detection `create` uses.
        let lsm = crate::process::security::HostLsm::detect();
        assert_eq!(linux["apparmor"], json!({"enabled": lsm.apparmor}));
        assert_eq!(linux["selinux"], json!({"enabled": lsm.selinux}));
        assert_eq!(
            linux["intelRdt"],
            json!({"enabled": crate::intel_rdt::available()})
        );
        let sc = &linux["seccomp"];
        assert_eq!(sc["enabled"], json!(cfg!(feature = "seccomp")));
        if !cfg!(feature = "seccomp") {
            return;
        }
        for a in ["SCMP_ACT_ERRNO", "SCMP_ACT_NOTIFY", "SCMP_ACT_KILL_PROCESS"] {
            assert!(strings(&sc["actions"]).iter().any(|x| x == a), "{a}");
        }
        assert_eq!(strings(&sc["operators"]).len(), 7);
        assert!(
            strings(&sc["supportedFlags"])
                .iter()
                .any(|f| f == "SECCOMP_FILTER_FLAG_TSYNC")
        );
    }

    #[test]
    fn capabilities_follow_the_running_kernel() {
        let last: usize = std::fs::read_to_string(CAP_LAST_CAP)
            .expect("read cap_last_cap")
            .trim()
            .parse()
            .expect("parse cap_last_cap");
        let caps = strings(&features()["linux"]["capabilities"]);
        assert_eq!(caps.len(), (last + 1).min(CAPABILITIES.len()));
        assert_eq!(caps[0], "CAP_CHOWN");
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[rstest]
    #[case::unreadable(None, 41)]
    #[case::old_kernel(Some(37), 38)]
    #[case::this_table(Some(40), 41)]
    #[case::newer_kernel(Some(63), 41)]
    #[case::huge(Some(usize::MAX), 41)]
    fn capability_list_length(#[case] last: Option<usize>, #[case] len: usize) {
        let names = capability_names(last);
        assert_eq!(names.len(), len);
        assert_eq!(names.last().copied(), CAPABILITIES.get(len - 1).copied());
    }

    #[test]
    fn capability_numbers_match_oci_spec_names() {
        // Every name parses as an oci-spec Capability, and spot-check numbering
        // against linux/capability.h.
        for name in CAPABILITIES {
            let parsed: Result<oci_spec::runtime::Capability, _> =
                serde_json::from_value(json!(name));
            assert!(parsed.is_ok(), "{name}");
        }
        assert_eq!(CAPABILITIES[5], "CAP_KILL");
        assert_eq!(CAPABILITIES[21], "CAP_SYS_ADMIN");
        assert_eq!(CAPABILITIES[29], "CAP_AUDIT_WRITE");
        assert_eq!(CAPABILITIES[40], "CAP_CHECKPOINT_RESTORE");
    }

    #[test]
    fn parses_as_oci_spec_features() {
        let parsed: Features = serde_json::from_value(features()).expect("parse as Features");
        assert_eq!(parsed.oci_version_min(), "1.0.0");
        assert_eq!(parsed.oci_version_max(), oci_spec::runtime::VERSION);
        assert_eq!(parsed.hooks().as_ref().map(Vec::len), Some(6));
        assert_eq!(
            parsed.mount_options().as_ref().map(Vec::len),
            Some(berth_rootfs::SUPPORTED_MOUNT_OPTIONS.len())
        );
        let linux = parsed.linux().as_ref().expect("linux");
        assert_eq!(
            linux.namespaces().as_ref().map(Vec::len),
            Some(8),
            "{linux:?}"
        );
        assert!(
            linux
                .namespaces()
                .iter()
                .flatten()
                .any(|ns| *ns == LinuxNamespaceType::Time)
        );
        let cgroup = linux.cgroup().as_ref().expect("cgroup");
        assert_eq!(cgroup.v2(), &Some(true));
        assert_eq!(cgroup.systemd_user(), &Some(false));
        assert_eq!(
            linux.seccomp().as_ref().and_then(|s| *s.enabled()),
            Some(cfg!(feature = "seccomp"))
        );
        assert_eq!(
            linux.intel_rdt().as_ref().and_then(|r| *r.enabled()),
            Some(false)
        );
    }
}
