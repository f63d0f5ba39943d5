//! The example config that `berth spec` writes.
//!
//! [`default_spec`] holds the same content as the `config.json` that `runc spec`
//! (or `runc spec --rootless`) writes, except that `ociVersion` is the version of the
//! runtime spec that oci-spec implements ([`oci_spec::runtime::VERSION`]) and the
//! hostname is `berth`.

use oci_spec::runtime::{
    Capabilities, Capability, Linux, LinuxCapabilities, LinuxDeviceCgroup, LinuxNamespace,
    LinuxNamespaceType, LinuxResources, Mount, Process, Root, Spec, User,
};
use std::path::PathBuf;

/// The config `berth spec` writes: a shell (`sh`) on a read-only `rootfs`.
///
/// With `rootless` false it is meant for a runtime started as root: new pid,
/// network, ipc, uts and mount namespaces and a deny-all device cgroup rule. With
/// `rootless` true it is the variant an unprivileged user can run: a new user
/// namespace mapping container root to the caller's effective uid and gid, the
/// runtime's network namespace (no network namespace entry), `/sys` bind-mounted
/// read-only instead of a fresh sysfs, no `gid=5` on devpts and no cgroup resources.
/// On a pure cgroup v2 host (`/sys/fs/cgroup` is a cgroup2 mount) either variant also gets
/// a new cgroup namespace, as `runc spec` writes there.
///
/// # Example
///
/// ```
/// use berth_runtime_core::spec::default_spec;
///
/// let spec = default_spec(false);
/// assert_eq!(spec.hostname().as_deref(), Some("berth"));
/// let json = serde_json::to_string_pretty(&spec).unwrap();
/// assert!(json.contains("\"ociVersion\""));
/// ```
pub fn default_spec(rootless: bool) -> Spec {
    let mut spec = Spec::default();
    spec.set_version(oci_spec::runtime::VERSION.to_string());
    spec.set_process(Some(default_process()));
    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(Some(true));
    spec.set_root(Some(root));
    spec.set_hostname(Some("berth".to_string()));
    spec.set_domainname(None);
    spec.set_annotations(None);
    spec.set_hooks(None);
    spec.set_mounts(Some(default_mounts(rootless)));
    spec.set_linux(Some(default_linux(rootless)));
    spec
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

fn default_process() -> Process {
    let mut process = Process::default();
    process.set_terminal(Some(true));
    process.set_user(User::default());
    process.set_args(Some(strings(&["sh"])));
    process.set_env(Some(strings(&[
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TERM=xterm",
    ])));
    process.set_cwd(PathBuf::from("/"));

    let set: Capabilities = [
        Capability::AuditWrite,
        Capability::Kill,
        Capability::NetBindService,
    ]
    .into_iter()
    .collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_inheritable(None);
    caps.set_permitted(Some(set.clone()));
    caps.set_ambient(Some(set));
    process.set_capabilities(Some(caps));

    // oci-spec's default process already carries the single rlimit runc writes,
    // RLIMIT_NOFILE with soft = hard = 1024 (PosixRlimit has no setters).
    process.set_no_new_privileges(Some(true));
    process
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut mount = Mount::default();
    mount.set_destination(PathBuf::from(destination));
    mount.set_typ(Some(typ.to_string()));
    mount.set_source(Some(PathBuf::from(source)));
    mount.set_options(if options.is_empty() {
        None
    } else {
        Some(strings(options))
    });
    mount
}

fn default_mounts(rootless: bool) -> Vec<Mount> {
    let devpts: &[&str] = if rootless {
        // An unprivileged user cannot pick gid 5 (tty) for new ptys.
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ]
    } else {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]
    };
    let sys = if rootless {
        // A fresh sysfs needs a network namespace owned by the user namespace;
        // the rootless config keeps the runtime's, so /sys is bind-mounted instead.
        mount(
            "/sys",
            "none",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        )
    } else {
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )
    };
    vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount("/dev/pts", "devpts", "devpts", devpts),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        sys,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}

fn namespace(typ: LinuxNamespaceType) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(None);
    ns
}

fn default_linux(rootless: bool) -> Linux {
    let mut linux = Linux::default();
    linux.set_masked_paths(Some(strings(&[
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
    ])));
    linux.set_readonly_paths(Some(strings(&[
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ])));
    if rootless {
        // SAFETY: geteuid(2) and getegid(2) take no arguments, touch no memory of
        // ours and cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        // LinuxIdMapping has no setters; oci-spec's rootless Linux section holds
        // exactly the mappings wanted: container 0 -> uid/gid, size 1.
        let mapped = Linux::rootless(uid, gid);
        linux.set_uid_mappings(mapped.uid_mappings().clone());
        linux.set_gid_mappings(mapped.gid_mappings().clone());
        linux.set_namespaces(Some(vec![
            namespace(LinuxNamespaceType::Pid),
            namespace(LinuxNamespaceType::Ipc),
            namespace(LinuxNamespaceType::Uts),
            namespace(LinuxNamespaceType::Mount),
        ]));
        linux.set_resources(None);
    } else {
        linux.set_uid_mappings(None);
        linux.set_gid_mappings(None);
        linux.set_namespaces(Some(vec![
            namespace(LinuxNamespaceType::Pid),
            namespace(LinuxNamespaceType::Network),
            namespace(LinuxNamespaceType::Ipc),
            namespace(LinuxNamespaceType::Uts),
            namespace(LinuxNamespaceType::Mount),
        ]));
        let mut deny_all = LinuxDeviceCgroup::default();
        deny_all.set_allow(false);
        deny_all.set_access(Some("rwm".to_string()));
        let mut resources = LinuxResources::default();
        resources.set_devices(Some(vec![deny_all]));
        linux.set_resources(Some(resources));
    }
    if let Some(ns) = linux.namespaces_mut() {
        if cgroup2_host() {
            ns.push(namespace(LinuxNamespaceType::Cgroup));
        }
        if rootless {
            ns.push(namespace(LinuxNamespaceType::User));
        }
    }
    linux
}

/// Whether `/sys/fs/cgroup` is a cgroup2 mount (a unified host), as runc decides it.
fn cgroup2_host() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::{load_bundle_config, validate};
    use rstest::rstest;
    use serde_json::{Value, json};
    use std::fs;

    use crate::test_support::TempDir;

    /// Capability sets are sets: sort them so two documents compare by content.
    fn normalise(mut doc: Value) -> Value {
        if let Some(caps) = doc
            .pointer_mut("/process/capabilities")
            .and_then(Value::as_object_mut)
        {
            for set in caps.values_mut() {
                if let Some(list) = set.as_array_mut() {
                    list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                }
            }
        }
        doc
    }

    fn expected(rootless: bool) -> Value {
        let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        let mut doc = json!({
            "ociVersion": oci_spec::runtime::VERSION,
            "process": {
                "terminal": true,
                "user": {"uid": 0, "gid": 0},
                "args": ["sh"],
                "env": [
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"
                ],
                "cwd": "/",
                "capabilities": {
                    "bounding": caps.clone(),
                    "effective": caps.clone(),
                    "permitted": caps.clone(),
                    "ambient": caps
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "berth",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                             "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                 "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
            ],
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [
                    {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                    {"type": "uts"}, {"type": "mount"}
                ],
                "maskedPaths": [
                    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
                ],
                "readonlyPaths": [
                    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
                ]
            }
        });
        if rootless {
            // SAFETY: geteuid(2)/getegid(2) take no arguments and cannot fail.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            doc["mounts"][2]["options"] = json!([
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620"
            ]);
            doc["mounts"][5] = json!({"destination": "/sys", "type": "none", "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
            let linux = &mut doc["linux"];
            linux
                .as_object_mut()
                .expect("linux object")
                .remove("resources");
            linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
            linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
            linux["namespaces"] = json!([
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "user"}
            ]);
        }
        // On a cgroup2 host, a cgroup namespace after the mount one (before user).
        if cgroup2_host() {
            let ns = doc["linux"]["namespaces"]
                .as_array_mut()
                .expect("namespaces");
            let at = ns.len() - usize::from(rootless);
            ns.insert(at, json!({"type": "cgroup"}));
        }
        doc
    }

    #[rstest]
    #[case::root(false)]
    #[case::rootless(true)]
    fn matches_the_expected_document(#[case] rootless: bool) {
        let ours = serde_json::to_value(default_spec(rootless)).expect("serialise");
        assert_eq!(normalise(ours), normalise(expected(rootless)));
    }

    #[rstest]
    #[case::root(false)]
    #[case::rootless(true)]
    fn written_config_loads_and_validates(#[case] rootless: bool) {
        let bundle = TempDir::new("spec");
        fs::create_dir(bundle.join("rootfs")).expect("mkdir rootfs");
        let text = serde_json::to_string_pretty(&default_spec(rootless)).expect("serialise");
        fs::write(bundle.join("config.json"), text).expect("write config.json");
        let loaded = load_bundle_config(bundle.path()).expect("load");
        assert_eq!(loaded, default_spec(rootless));
        assert_eq!(validate(&loaded, bundle.path()), Ok(()));
    }

    #[test]
    fn root_and_rootless_differ_only_where_intended() {
        let root = default_spec(false);
        let rootless = default_spec(true);
        assert_eq!(root.process(), rootless.process());
        assert_eq!(root.root(), rootless.root());
        assert_ne!(root.mounts(), rootless.mounts());
        let ns = |spec: &Spec| -> Vec<LinuxNamespaceType> {
            spec.linux()
                .as_ref()
                .and_then(|l| l.namespaces().clone())
                .unwrap_or_default()
                .iter()
                .map(|n| n.typ())
                .collect()
        };
        assert!(ns(&root).contains(&LinuxNamespaceType::Network));
        assert!(!ns(&rootless).contains(&LinuxNamespaceType::Network));
        assert!(ns(&rootless).contains(&LinuxNamespaceType::User));
    }

    /// Compare with what the installed `runc spec` writes, when runc is installed:
    /// everything but ociVersion and hostname must be equal.
    #[rstest]
    #[case::root(false)]
    #[case::rootless(true)]
    fn same_content_as_runc_spec(#[case] rootless: bool) {
        let dir = TempDir::new("spec");
        let mut cmd = std::process::Command::new("runc");
        cmd.arg("spec").arg("--bundle").arg(dir.path());
        if rootless {
            cmd.arg("--rootless");
        }
        let status = match cmd.status() {
            Ok(status) => status,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("runc is not installed: comparison with `runc spec` skipped");
                return;
            }
            Err(err) => panic!("cannot run runc: {err}"),
        };
        assert!(status.success(), "runc spec failed: {status}");
        let text = fs::read_to_string(dir.join("config.json")).expect("read runc config");
        let mut theirs: Value = serde_json::from_str(&text).expect("parse runc config");
        theirs["ociVersion"] = json!(oci_spec::runtime::VERSION);
        theirs["hostname"] = json!("berth");
        let ours = serde_json::to_value(default_spec(rootless)).expect("serialise");
        assert_eq!(normalise(ours), normalise(theirs));
    }
}
