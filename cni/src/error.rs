//! The crate's error type.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in this crate. Each message names the file, plugin or
/// field at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CniError {
    /// The configuration directory could not be listed.
    #[error("CNI config dir {}: {source}", path.display())]
    ConfDir {
        /// The directory.
        path: PathBuf,
        /// Why reading it failed.
        source: io::Error,
    },

    /// A network configuration file could not be read.
    #[error("CNI config {}: {source}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why reading it failed.
        source: io::Error,
    },

    /// A network configuration file is not valid JSON or breaks a rule of the spec.
    #[error("CNI config {}: {reason}", path.display())]
    InvalidConfig {
        /// The file (or a made-up name for a config given as text).
        path: PathBuf,
        /// What is wrong, naming the field, e.g. `plugins[1].type is missing`.
        reason: String,
    },

    /// No network configuration in the config directory.
    #[error("no network config found in {}", conf_dir.display())]
    NoNetwork {
        /// The directory searched.
        conf_dir: PathBuf,
    },

    /// A plugin binary is in none of the plugin directories.
    #[error(
        "CNI plugin {plugin:?} of network {network:?} not found in {}",
        dirs_text(dirs)
    )]
    PluginNotFound {
        /// The network.
        network: String,
        /// The plugin type (binary name).
        plugin: String,
        /// The directories searched.
        dirs: Vec<PathBuf>,
    },

    /// A caller's argument breaks a rule (container id, interface name, CNI_ARGS,
    /// runtime config).
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        /// Which argument, e.g. `"container id"`.
        what: &'static str,
        /// The value given.
        value: String,
        /// The rule broken.
        reason: &'static str,
    },

    /// A plugin could not be started or its pipes failed.
    #[error("CNI plugin {} {command}: {source}", path.display())]
    Exec {
        /// The plugin binary.
        path: PathBuf,
        /// `ADD`, `DEL` or `CHECK`.
        command: &'static str,
        /// The failure.
        source: io::Error,
    },

    /// A plugin ran longer than the timeout and was killed.
    #[error(
        "CNI plugin {plugin} {command} (network {network:?}) timed out after {timeout:?} and was killed"
    )]
    Timeout {
        /// The network.
        network: String,
        /// The plugin type.
        plugin: String,
        /// `ADD`, `DEL` or `CHECK`.
        command: &'static str,
        /// The timeout.
        timeout: Duration,
    },

    /// A plugin failed: its error JSON (`code`, `msg`, `details`) or, without one, its
    /// exit status and output.
    #[error(
        "CNI plugin {plugin} {command} (network {network:?}) failed: {}{msg}{}",
        code.map(|c| format!("code {c}: ")).unwrap_or_default(),
        if details.is_empty() { String::new() } else { format!(" ({details})") }
    )]
    Plugin {
        /// The network.
        network: String,
        /// The plugin type.
        plugin: String,
        /// `ADD`, `DEL` or `CHECK`.
        command: &'static str,
        /// The error code the plugin gave (1-99 are the spec's, 100+ its own).
        code: Option<u32>,
        /// Its message (or the exit status and stderr when it printed no error JSON).
        msg: String,
        /// Its details, or empty.
        details: String,
    },

    /// A plugin's result is not a CNI result.
    #[error("CNI plugin {plugin} ADD (network {network:?}) printed an invalid result: {reason}")]
    InvalidResult {
        /// The network.
        network: String,
        /// The plugin type.
        plugin: String,
        /// What is wrong.
        reason: String,
    },

    /// A cached result could not be written, read or removed.
    #[error("CNI cache {}: {reason}", path.display())]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },

    /// `check` needs a result cached by `setup`.
    #[error("CHECK of container {container_id:?} ({ifname}): no cached result (not set up)")]
    NotSetUp {
        /// The container id.
        container_id: String,
        /// The interface.
        ifname: String,
    },

    /// `check` of a network whose cniVersion has no CHECK (before 0.4.0).
    #[error("network {network:?} has cniVersion {version}: CHECK needs 0.4.0 or later")]
    CheckUnsupported {
        /// The network.
        network: String,
        /// Its version.
        version: String,
    },
}

fn dirs_text(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "(no plugin directories)".into();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
