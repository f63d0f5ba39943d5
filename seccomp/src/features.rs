//! The `linux.seccomp` object of the runtime-spec features document.

use crate::probe::KernelProbe;

/// The `linux.seccomp` object of the features document (runtime-spec `features.md`): what
/// [`compile`](crate::compile) accepts, with `actions` and `supportedFlags` checked against the
/// running kernel, and the architectures filtered by their own numbers on this host.
///
/// ```
/// let doc = berth_seccomp::features();
/// assert_eq!(doc["enabled"], true);
/// assert_eq!(doc["operators"].as_array().map(Vec::len), Some(7));
/// ```
pub fn features() -> serde_json::Value {
    let mut probe = KernelProbe::default();
    let actions: Vec<&str> = [
        ("SCMP_ACT_ALLOW", libc::SECCOMP_RET_ALLOW),
        ("SCMP_ACT_ERRNO", libc::SECCOMP_RET_ERRNO),
        ("SCMP_ACT_KILL", libc::SECCOMP_RET_KILL_THREAD),
        ("SCMP_ACT_KILL_PROCESS", libc::SECCOMP_RET_KILL_PROCESS),
        ("SCMP_ACT_KILL_THREAD", libc::SECCOMP_RET_KILL_THREAD),
        ("SCMP_ACT_LOG", libc::SECCOMP_RET_LOG),
        ("SCMP_ACT_NOTIFY", libc::SECCOMP_RET_USER_NOTIF),
        ("SCMP_ACT_TRACE", libc::SECCOMP_RET_TRACE),
        ("SCMP_ACT_TRAP", libc::SECCOMP_RET_TRAP),
    ]
    .into_iter()
    .filter(|(_, a)| probe.action_supported(*a))
    .map(|(n, _)| n)
    .collect();
    let flags = [
        ("SECCOMP_FILTER_FLAG_TSYNC", libc::SECCOMP_FILTER_FLAG_TSYNC),
        ("SECCOMP_FILTER_FLAG_LOG", libc::SECCOMP_FILTER_FLAG_LOG),
        (
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        ),
        (
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
            libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        ),
    ];
    let known: Vec<&str> = flags.iter().map(|(n, _)| *n).collect();
    let supported: Vec<&str> = flags
        .iter()
        .filter(|(_, f)| probe.flag_supported(*f))
        .map(|(n, _)| *n)
        .collect();
    let archs: Vec<String> = crate::host_architectures()
        .iter()
        .map(|a| a.to_string())
        .collect();
    serde_json::json!({
        "enabled": true,
        "actions": actions,
        "operators": [
            "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
            "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
        ],
        "archs": archs,
        "knownFlags": known,
        "supportedFlags": supported,
    })
}
