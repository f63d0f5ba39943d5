//! `linux.seccomp` through berth-seccomp (cargo feature `seccomp`, on by default): the
//! profile compiled in the parent ([`SeccompPlan::prepare`]), installed by the fragile child
//! ([`SeccompPlan::install`], see `child/init.rs`), and a notify listener handed to the agent
//! ([`send_to_listener`]).
//!
//! Without the feature a config with `linux.seccomp` is refused with a config error (never run
//! unfiltered), and the features document reports seccomp as disabled.

use std::os::fd::RawFd;

use crate::config::validate::ConfigError;

/// A compiled seccomp profile, ready for the fragile child to install.
#[cfg(feature = "seccomp")]
#[derive(Debug)]
pub(crate) struct SeccompPlan(berth_seccomp::Program);

/// Without the seccomp feature no plan can be made: [`SeccompPlan::prepare`] always fails.
#[cfg(not(feature = "seccomp"))]
#[derive(Debug)]
pub(crate) struct SeccompPlan(std::convert::Infallible);

#[cfg(feature = "seccomp")]
impl SeccompPlan {
    /// Compile in the parent. What was skipped (unknown names, rules left out on foreign
    /// architectures for want of room) goes to `warnings`; an invalid or unsupported profile is
    /// a [`ConfigError`] naming the field, e.g. `linux.seccomp.syscalls[3].action`.
    pub(crate) fn prepare(
        s: &oci_spec::runtime::LinuxSeccomp,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let program = berth_seccomp::compile(s).map_err(config_error)?;
        warnings.extend_from_slice(program.warnings());
        Ok(SeccompPlan(program))
    }

    /// Whether any rule is SCMP_ACT_NOTIFY: the init must hand the listener fd to the parent.
    pub(crate) fn uses_notify(&self) -> bool {
        self.0.uses_notify()
    }

    /// # Fragile child
    /// Installs the filter on the calling thread (one raw `seccomp(2)`, no allocation): the
    /// listener fd with notify; `Err(errno)` on failure.
    pub(crate) fn install(&self) -> Result<Option<RawFd>, i32> {
        self.0.install()
    }
}

#[cfg(not(feature = "seccomp"))]
impl SeccompPlan {
    /// Always a config error: this build cannot filter system calls, and a container that
    /// asked for a filter must not run without one.
    pub(crate) fn prepare(
        _: &oci_spec::runtime::LinuxSeccomp,
        _: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        Err(ConfigError::new(
            "linux.seccomp",
            "is set, but this berth was built without seccomp support (the `seccomp` cargo \
             feature of berth-runtime-core)",
        ))
    }

    pub(crate) fn uses_notify(&self) -> bool {
        match self.0 {}
    }

    pub(crate) fn install(&self) -> Result<Option<RawFd>, i32> {
        match self.0 {}
    }
}

/// berth-seccomp's error as the runtime's config error (same field, same reason).
#[cfg(feature = "seccomp")]
fn config_error(e: berth_seccomp::Error) -> ConfigError {
    ConfigError::new(e.field(), e.reason())
}

/// Parent side, for SCMP_ACT_NOTIFY: the listener `fd` and the container's `state` to the
/// agent at `listenerPath` (see [`berth_seccomp::send_to_listener`]).
#[cfg(feature = "seccomp")]
pub(crate) fn send_to_listener(
    plan: &SeccompPlan,
    state: &serde_json::Value,
    pid: i32,
    fd: RawFd,
) -> Result<(), crate::Error> {
    berth_seccomp::send_to_listener(&plan.0, state, pid, fd).map_err(|e| match e {
        berth_seccomp::Error::Listener { op, path, source } => crate::Error::io(op, path, source),
        e => crate::Error::Config(config_error(e)),
    })
}

#[cfg(not(feature = "seccomp"))]
pub(crate) fn send_to_listener(
    plan: &SeccompPlan,
    _: &serde_json::Value,
    _: i32,
    _: RawFd,
) -> Result<(), crate::Error> {
    match plan.0 {}
}

/// The `linux.seccomp` object of the features document.
#[cfg(feature = "seccomp")]
pub(crate) fn features() -> serde_json::Value {
    berth_seccomp::features()
}

/// The `linux.seccomp` object of the features document: disabled in this build.
#[cfg(not(feature = "seccomp"))]
pub(crate) fn features() -> serde_json::Value {
    serde_json::json!({ "enabled": false })
}
