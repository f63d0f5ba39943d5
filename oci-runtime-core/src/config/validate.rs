//! Loading and validating a bundle's `config.json`.
//!
//! Two steps, both done before anything touches the system:
//!
//! 1. [`load_bundle_config`] reads `<bundle>/config.json` and turns it into an
//!    [`oci_spec::runtime::Spec`]. JSON syntax errors carry their line and column;
//!    a value of the wrong type, a missing required field or an unknown enum value
//!    (rlimit type, namespace type, device type, capability name) is reported with
//!    the JSON path of the offending field, e.g.
//!    `process.rlimits[0].type "RLIMIT_FOO" is not a known rlimit type`.
//!    Unknown fields are accepted, as the spec requires.
//! 2. [`validate`] checks the rules of the OCI runtime spec (`config.md`,
//!    `config-linux.md`) that a well-typed config can still break: relative paths,
//!    duplicate namespaces, mappings without a user namespace, sysctls that would
//!    leak to the host, and so on.
//!
//! Both return the **first** error found, in the order the spec documents describe
//! the fields: `ociVersion`, `root`, `mounts`, `process`, `hostname`, `domainname`,
//! `linux` (namespaces, ID mappings, time offsets, devices, sysctl,
//! rootfsPropagation, maskedPaths, readonlyPaths), `hooks`, `annotations`.
//! Every error is a [`ConfigError`] naming the JSON path of the field and why it is
//! wrong; its `Display` is `"{field} {reason}"`, e.g. `process.args is empty`.
//!
//! Each rule lives in one place: the rules of `linux.namespaces`, the id mappings and
//! `linux.timeOffsets` are berth-namespaces' ([`berth_namespaces::validate`]), those of
//! mounts, devices, masked and read-only paths, sysctl keys, `rootfsPropagation` and
//! `process.cwd` are berth-rootfs' ([`berth_rootfs::validate`]); this module calls them in
//! document order and turns their errors into [`ConfigError`]s naming the same field. It
//! keeps the rules no crate makes (a container path without `..`, devices under `/dev`,
//! namespaced sysctls, a private UTS namespace for `hostname`, and the rest).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use berth_namespaces::NamespaceKind;
use oci_spec::runtime::{
    Capability, ExecCPUAffinity, Hook, Hooks, Linux, LinuxCapabilities, LinuxDevice,
    LinuxDeviceType, LinuxIOPriority, LinuxIdMapping, LinuxIntelRdt, LinuxMemoryPolicy,
    LinuxNamespace, LinuxNamespaceType, LinuxNetDevice, LinuxPersonality, LinuxResources,
    LinuxSeccomp, LinuxTimeOffset, Mount, PosixRlimit, PosixRlimitType, Process, Root, Scheduler,
    Spec, User,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A config error: the JSON path of the offending field and why.
///
/// `field` is a JSON path such as `mounts[3].destination` or
/// `linux.sysctl["net.ipv4.ip_forward"]` (`config.json` for errors about the file
/// itself); `reason` completes the sentence.
///
/// # Example
///
/// ```
/// use berth_runtime_core::validate::ConfigError;
///
/// let err = ConfigError::new("process.args", "is empty");
/// assert_eq!(err.to_string(), "process.args is empty");
/// assert_eq!(err.field, "process.args");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {reason}")]
#[non_exhaustive]
pub struct ConfigError {
    /// JSON path of the offending field (`config.json` for the file as a whole).
    pub field: String,
    /// Why the field is wrong, phrased to follow the field name.
    pub reason: String,
}

impl ConfigError {
    /// The error about `field` (a JSON path), `reason` completing the sentence.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

pub(crate) const CONFIG_FILE: &str = "config.json";

/// Load `<bundle>/config.json` (errors: missing file, JSON syntax with line/column, wrong types)
///
/// The result has not been checked against the spec's rules yet: pass it to
/// [`validate`] before using it.
///
/// # Errors
///
/// A [`ConfigError`] with field `config.json` when the file is missing, unreadable
/// or not valid JSON (`config.json is not valid JSON: expected value at line 3
/// column 5`), or with the JSON path of the field that has the wrong type, is
/// missing although required, or holds an unknown enum value.
///
/// # Example
///
/// ```no_run
/// use std::path::Path;
/// use berth_runtime_core::validate::{load_bundle_config, validate};
///
/// let bundle = Path::new("/run/bundles/web");
/// let spec = load_bundle_config(bundle)?;
/// validate(&spec, bundle)?;
/// # Ok::<(), berth_runtime_core::validate::ConfigError>(())
/// ```
pub fn load_bundle_config(bundle: &Path) -> Result<Spec, ConfigError> {
    let path = bundle.join(CONFIG_FILE);
    let bytes = fs::read(&path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => ConfigError::new(
            CONFIG_FILE,
            format!("does not exist in bundle {}", bundle.display()),
        ),
        _ => ConfigError::new(
            CONFIG_FILE,
            format!("cannot be read ({}): {err}", path.display()),
        ),
    })?;
    parse_config(&bytes)
}

/// Parse the bytes of a `config.json`, locating type errors by JSON path.
fn parse_config(bytes: &[u8]) -> Result<Spec, ConfigError> {
    let mut value: Value = serde_json::from_slice(bytes)
        .map_err(|err| ConfigError::new(CONFIG_FILE, format!("is not valid JSON: {err}")))?;
    // Go runtimes (runc) read `null` as "absent"; so do we.
    strip_nulls(&mut value);
    // The runtime spec's names oci-spec 0.10 spells differently (scheduler flags, RDT flags).
    fix_oci_spec_spellings(&mut value);
    check_config_shape(&value)?;
    // The shape check above deserializes every part with the same types, so this
    // only fails if the two disagree; report it rather than panic.
    let spec = serde_json::from_value(value).map_err(|err| {
        ConfigError::new(
            CONFIG_FILE,
            format!("does not match the OCI runtime spec: {err}"),
        )
    })?;
    Ok(spec)
}

/// Removes every object member whose value is `null`, at any depth.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Rewrites the runtime spec's spellings that oci-spec 0.10 does not read into the ones it
/// does, in a config.json about to be deserialized (call before any shape check):
/// `process.scheduler.flags` `SCHED_FLAG_RESET_ON_FORK` (oci-spec: `SCHED_RESET_ON_FORK`) and
/// `SCHED_FLAG_DL_OVERRUN` (`SCHED_FLAG_D_L_OVERRUN`), and `linux.intelRdt` `enableCMT` /
/// `enableMBM` (`enableCmt` / `enableMbm`, else silently dropped as unknown fields).
fn fix_oci_spec_spellings(config: &mut serde_json::Value) {
    if let Some(flags) = config
        .pointer_mut("/process/scheduler/flags")
        .and_then(Value::as_array_mut)
    {
        for f in flags.iter_mut() {
            let fixed = match f.as_str() {
                Some("SCHED_FLAG_RESET_ON_FORK") => "SCHED_RESET_ON_FORK",
                Some("SCHED_FLAG_DL_OVERRUN") => "SCHED_FLAG_D_L_OVERRUN",
                _ => continue,
            };
            *f = Value::from(fixed);
        }
    }
    if let Some(rdt) = config
        .pointer_mut("/linux/intelRdt")
        .and_then(Value::as_object_mut)
    {
        for (spec, ours) in [("enableCMT", "enableCmt"), ("enableMBM", "enableMbm")] {
            if let Some(v) = rdt.remove(spec) {
                rdt.entry(ours).or_insert(v);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Shape (type) checks on the raw JSON, to give every type error a JSON path.
// ---------------------------------------------------------------------------

/// Checks one JSON value found at the given path.
type Check = fn(&Value, &str) -> Result<(), ConfigError>;

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn shown(path: &str) -> &str {
    if path.is_empty() { CONFIG_FILE } else { path }
}

/// Turn a serde error about the value at `path` into a [`ConfigError`].
fn serde_error(path: &str, err: &serde_json::Error) -> ConfigError {
    let msg = err.to_string();
    if let Some(rest) = msg.strip_prefix("missing field `")
        && let Some((name, _)) = rest.split_once('`')
    {
        return ConfigError::new(join(path, name), "is required");
    }
    ConfigError::new(shown(path), format!("is invalid: {msg}"))
}

/// The value at `path` must deserialize as `T`.
fn is<T: DeserializeOwned>(value: &Value, path: &str) -> Result<(), ConfigError> {
    T::deserialize(value)
        .map(drop)
        .map_err(|err| serde_error(path, &err))
}

/// The value at `path` must be one of the names of enum `T` (`what` names the enum).
fn known<T: DeserializeOwned>(value: &Value, path: &str, what: &str) -> Result<(), ConfigError> {
    if let Some(name) = value.as_str()
        && T::deserialize(value).is_err()
    {
        return Err(ConfigError::new(
            path,
            format!("{name:?} is not a known {what}"),
        ));
    }
    is::<T>(value, path)
}

/// Check the listed fields of an object (when present), each with its own check.
/// Type errors of the object itself are left to the caller's whole-value check.
fn fields(value: &Value, path: &str, checks: &[(&str, Check)]) -> Result<(), ConfigError> {
    // serde reads a struct from a JSON array too (`"user": []` would be uid 0): the spec's
    // objects must be objects, as Go's decoder (runc) insists.
    let map = value.as_object().ok_or_else(|| {
        ConfigError::new(path, format!("must be an object, not {}", json_kind(value)))
    })?;
    for (key, check) in checks {
        if let Some(child) = map.get(*key) {
            check(child, &join(path, key))?;
        }
    }
    Ok(())
}

/// Check every element of an array (when it is one).
fn elements(value: &Value, path: &str, check: Check) -> Result<(), ConfigError> {
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            check(item, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

/// Check every entry of an object used as a map (when it is one).
fn entries(value: &Value, path: &str, check: Check) -> Result<(), ConfigError> {
    if let Some(map) = value.as_object() {
        for (key, item) in map {
            check(item, &format!("{path}[{key:?}]"))?;
        }
    }
    Ok(())
}

fn strings(value: &Value, path: &str) -> Result<(), ConfigError> {
    elements(value, path, is::<String>)?;
    is::<Vec<String>>(value, path)
}

fn id_mappings(value: &Value, path: &str) -> Result<(), ConfigError> {
    elements(value, path, |v, p| {
        fields(
            v,
            p,
            &[
                ("containerID", is::<u32>),
                ("hostID", is::<u32>),
                ("size", is::<u32>),
            ],
        )?;
        is::<LinuxIdMapping>(v, p)
    })?;
    is::<Vec<LinuxIdMapping>>(value, path)
}

fn check_config_shape(value: &Value) -> Result<(), ConfigError> {
    let Some(map) = value.as_object() else {
        return Err(ConfigError::new(
            CONFIG_FILE,
            format!("must hold a JSON object, not {}", json_kind(value)),
        ));
    };
    // oci-spec fills a missing ociVersion with "", which would hide its absence.
    if !map.contains_key("ociVersion") {
        return Err(ConfigError::new("ociVersion", "is required"));
    }
    fields(
        value,
        "",
        &[
            ("ociVersion", is::<String>),
            ("root", root_shape),
            ("mounts", |v, p| {
                elements(v, p, mount_shape)?;
                is::<Vec<Mount>>(v, p)
            }),
            ("process", process_shape),
            ("hostname", is::<String>),
            ("domainname", is::<String>),
            ("linux", linux_shape),
            ("hooks", hooks_shape),
            ("annotations", |v, p| {
                entries(v, p, is::<String>)?;
                is::<HashMap<String, String>>(v, p)
            }),
        ],
    )?;
    is::<Spec>(value, "")
}

fn root_shape(value: &Value, path: &str) -> Result<(), ConfigError> {
    fields(
        value,
        path,
        &[("path", is::<String>), ("readonly", is::<bool>)],
    )?;
    is::<Root>(value, path)
}

fn mount_shape(value: &Value, path: &str) -> Result<(), ConfigError> {
    fields(
        value,
        path,
        &[
            ("destination", is::<String>),
            ("source", is::<String>),
            ("type", is::<String>),
            ("options", strings),
            ("uidMappings", id_mappings),
            ("gidMappings", id_mappings),
        ],
    )?;
    is::<Mount>(value, path)
}

fn process_shape(value: &Value, path: &str) -> Result<(), ConfigError> {
    fields(
        value,
        path,
        &[
            ("terminal", is::<bool>),
            ("consoleSize", |v, p| {
                fields(v, p, &[("height", is::<u64>), ("width", is::<u64>)])?;
                is::<oci_spec::runtime::Box>(v, p)
            }),
            ("cwd", is::<String>),
            ("env", strings),
            ("args", strings),
            ("commandLine", is::<String>),
            ("rlimits", |v, p| {
                elements(v, p, rlimit_shape)?;
                is::<Vec<PosixRlimit>>(v, p)
            }),
            ("apparmorProfile", is::<String>),
            ("capabilities", capabilities_shape),
            ("noNewPrivileges", is::<bool>),
            ("oomScoreAdj", is::<i32>),
            ("scheduler", is::<Scheduler>),
            ("selinuxLabel", is::<String>),
            ("ioPriority", is::<LinuxIOPriority>),
            ("execCPUAffinity", is::<ExecCPUAffinity>),
            ("user", user_shape),
        ],
    )?;
    is::<Process>(value, path)
}

fn rlimit_shape(value: &Value, path: &str) -> Result<(), ConfigError> {
    fields(
        value,
        path,
        &[
            ("type", |v, p| known::<PosixRlimitType>(v, p, "rlimit type")),
            ("hard", is::<u64>),
            ("soft", is::<u64>),
        ],
    )?;
    is::<PosixRlimit>(value, path)
}

/// Unknown capability names are refused: the spec says a value that cannot be mapped to a
/// kernel interface MUST be an error (runc 1.1 only warns, and runs `CAP_TYPO` without the
/// capability meant).
fn capabilities_shape(value: &Value, path: &str) -> Result<(), ConfigError> {
    fn set(value: &Value, path: &str) -> Result<(), ConfigError> {
        elements(value, path, |v, p| known::<Capability>(v, p, "capability"))?;
        is::<Vec<Capability>>(value, path)
    }
    fields(
        value,
        path,
        &[
            ("bounding", set),
            ("effective", set),
            ("inheritable", set),
            ("permitted", set),
            ("ambient", set),
        ],
    )?;
    is::<LinuxCapabilities>(value, path)
}

fn user_shape(value: &Value, path: &str) -> Result<(), ConfigError> {
    fields(
        value,
        path,
        &[
            ("uid", is::<u32>),
            ("gid", is::<u32>),
            ("umask", is::<u32>),
            ("additionalGids", |v, p| {
                elements(v, p, is::<u32>)?;
                is::<Vec<u32>>(v, p)
            }),
            ("username", is::<String>),
        ],
    )?;
    is::<User>(value, path)
}

fn linux_shape(value: &Value, path: &str) -> Result<(), ConfigError> {
    fields(
        value,
        path,
        &[
            ("namespaces", |v, p| {
                elements(v, p, namespace_shape)?;
                is::<Vec<LinuxNamespace>>(v, p)
            }),
            ("uidMappings", id_mappings),
            ("gidMappings", id_mappings),
            ("timeOffsets", |v, p| {
                entries(v, p, |v, p| {
                    fields(v, p, &[("secs", is::<i64>), ("nanosecs", is::<u32>)])?;
                    is::<LinuxTimeOffset>(v, p)
                })?;
                is::<HashMap<String, LinuxTimeOffset>>(v, p)
            }),
            ("devices", |v, p| {
                elements(v, p, device_shape)?;
                is::<Vec<LinuxDevice>>(v, p)
            }),
            ("cgroupsPath", is::<String>),
            ("resources", is::<LinuxResources>),
            ("intelRdt", is::<LinuxIntelRdt>),
            ("sysctl", |v, p| {
                entries(v, p, is::<String>)?;
                is::<HashMap<String, String>>(v, p)
            }),
            ("seccomp", is::<LinuxSeccomp>),
            ("rootfsPropagation", is::<String>),
            ("maskedPaths", strings),
            ("readonlyPaths", strings),
            ("mountLabel", is::<String>),
            ("personality", is::<LinuxPersonality>),
            ("netDevices", is::<HashMap<String, LinuxNetDevice>>),
            ("memoryPolicy", is::<LinuxMemoryPolicy>),
        ],
    )?;
    is::<Linux>(value, path)
}

fn namespace_shape(value: &Value, path: &str) -> Result<(), ConfigError> {
    fields(
        value,
        path,
        &[
            ("type", |v, p| {
                known::<LinuxNamespaceType>(v, p, "namespace type")
            }),
            ("path", is::<String>),
        ],
    )?;
    is::<LinuxNamespace>(value, path)
}

fn device_shape(value: &Value, path: &str) -> Result<(), ConfigError> {
    fields(
        value,
        path,
        &[
            ("type", |v, p| known::<LinuxDeviceType>(v, p, "device type")),
            ("path", is::<String>),
            ("major", is::<i64>),
            ("minor", is::<i64>),
            ("fileMode", is::<u32>),
            ("uid", is::<u32>),
            ("gid", is::<u32>),
        ],
    )?;
    // oci-spec defaults a missing major/minor to 0, which would silently create
    // device 0:0; the spec requires both unless the type is "p".
    if let Some(map) = value.as_object()
        && let Some(kind) = map.get("type").and_then(Value::as_str)
        && matches!(kind, "c" | "b" | "u")
    {
        for number in ["major", "minor"] {
            if !map.contains_key(number) {
                return Err(ConfigError::new(
                    join(path, number),
                    format!("is required for type {kind:?}"),
                ));
            }
        }
    }
    is::<LinuxDevice>(value, path)
}

fn hooks_shape(value: &Value, path: &str) -> Result<(), ConfigError> {
    fn list(value: &Value, path: &str) -> Result<(), ConfigError> {
        elements(value, path, |v, p| {
            fields(
                v,
                p,
                &[
                    ("path", is::<String>),
                    ("args", strings),
                    ("env", strings),
                    ("timeout", is::<i64>),
                ],
            )?;
            is::<Hook>(v, p)
        })?;
        is::<Vec<Hook>>(value, path)
    }
    let kinds: Vec<(&str, Check)> = HOOK_KINDS.iter().map(|k| (*k, list as Check)).collect();
    fields(value, path, &kinds)?;
    is::<Hooks>(value, path)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------
// Semantic checks on a typed Spec.
// ---------------------------------------------------------------------------

/// The hook kinds of the spec, in the order `config.md` lists them (the lifecycle's), all
/// of which berth runs (`features` lists them).
pub(crate) const HOOK_KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// `HOST_NAME_MAX` on Linux: the UTS hostname and domainname fields hold 64 bytes.
const UTS_NAME_MAX: usize = 64;

/// Validate a config against the OCI runtime spec (config.md, config-linux.md) before anything
/// touches the system. Returns the FIRST error found, in document order.
///
/// `bundle` is the bundle directory: a relative `root.path` is resolved against it.
/// The only system state read is the rootfs directory's metadata and, for
/// namespaces joined by path, whether that path is the runtime's own namespace
/// (`/proc/self/ns/*`): nothing is created or changed.
///
/// # Errors
///
/// The first rule broken, as a [`ConfigError`] naming the field, e.g.
/// `mounts[3].destination must be absolute` or
/// `linux.namespaces[1].type "pid" appears twice`.
///
/// # Example
///
/// ```no_run
/// use std::path::Path;
/// use berth_runtime_core::validate::{load_bundle_config, validate};
///
/// let bundle = Path::new("/run/bundles/web");
/// let spec = load_bundle_config(bundle)?;
/// if let Err(err) = validate(&spec, bundle) {
///     eprintln!("invalid config: {err}");
/// }
/// # Ok::<(), berth_runtime_core::validate::ConfigError>(())
/// ```
pub fn validate(spec: &Spec, bundle: &Path) -> Result<(), ConfigError> {
    check_version(spec.version())?;
    check_root(spec, bundle)?;
    check_mounts(spec)?;
    check_process(spec)?;
    let namespaces: &[LinuxNamespace] = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.namespaces().as_deref())
        .unwrap_or(&[]);
    check_uts_name("hostname", spec.hostname().as_deref(), namespaces)?;
    check_uts_name("domainname", spec.domainname().as_deref(), namespaces)?;
    let Some(linux) = spec.linux() else {
        return Err(ConfigError::new("linux", "is missing"));
    };
    check_linux(linux)?;
    if let Some(hooks) = spec.hooks() {
        check_hooks(hooks)?;
    }
    if let Some(annotations) = spec.annotations()
        && annotations.keys().any(String::is_empty)
    {
        return Err(ConfigError::new("annotations", "has an empty key"));
    }
    Ok(())
}

fn check_version(version: &str) -> Result<(), ConfigError> {
    if version.is_empty() {
        return Err(ConfigError::new("ociVersion", "is empty"));
    }
    let Some(major) = semver_major(version) else {
        return Err(ConfigError::new(
            "ociVersion",
            format!("{version:?} is not a SemVer 2.0.0 version"),
        ));
    };
    if major != 1 {
        return Err(ConfigError::new(
            "ociVersion",
            format!("{version:?} has major version {major}; berth implements version 1"),
        ));
    }
    Ok(())
}

/// The major version of a SemVer 2.0.0 string, or `None` if it is not one.
fn semver_major(version: &str) -> Option<u64> {
    fn numeric(id: &str) -> bool {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && (id == "0" || !id.starts_with('0'))
    }
    fn identifiers(text: &str, allow_leading_zero_numbers: bool) -> bool {
        text.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && (allow_leading_zero_numbers
                    || !id.bytes().all(|b| b.is_ascii_digit())
                    || numeric(id))
        })
    }
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 || !parts.iter().all(|p| numeric(p)) {
        return None;
    }
    if pre.is_some_and(|pre| !identifiers(pre, false))
        || build.is_some_and(|build| !identifiers(build, true))
    {
        return None;
    }
    parts[0].parse().ok()
}

fn check_root(spec: &Spec, bundle: &Path) -> Result<(), ConfigError> {
    let Some(root) = spec.root() else {
        return Err(ConfigError::new("root", "is missing"));
    };
    let path = root.path();
    if path.as_os_str().is_empty() {
        return Err(ConfigError::new("root.path", "is empty"));
    }
    // Joining an absolute path replaces the bundle: an absolute root.path is used as is.
    let full = bundle.join(path);
    match fs::metadata(&full) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(ConfigError::new(
            "root.path",
            format!("{path:?} is not a directory ({})", full.display()),
        )),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(ConfigError::new(
            "root.path",
            format!("{path:?} does not exist ({})", full.display()),
        )),
        Err(err) => Err(ConfigError::new(
            "root.path",
            format!("{path:?} cannot be inspected ({}): {err}", full.display()),
        )),
    }
}

/// berth-rootfs' own rules for one field, as a [`ConfigError`] naming that field.
fn rootfs_rule(result: Result<(), berth_rootfs::RootfsError>) -> Result<(), ConfigError> {
    result.map_err(|err| {
        let field = err.field();
        crate_error(field, err.to_string(), "config.json")
    })
}

/// A container path berth-rootfs takes (it cleans `..` lexically) that the spec's
/// readers would take otherwise: refused for mount destinations and device paths.
fn check_no_dotdot(path: &Path, field: &str) -> Result<(), ConfigError> {
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(ConfigError::new(field, "must not contain \"..\""));
    }
    Ok(())
}

fn check_mounts(spec: &Spec) -> Result<(), ConfigError> {
    let Some(mounts) = spec.mounts() else {
        return Ok(());
    };
    for (i, mount) in mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let uid = mount.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        let gid = mount.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if uid != gid {
            let (given, missing) = if uid {
                ("uidMappings", "gidMappings")
            } else {
                ("gidMappings", "uidMappings")
            };
            return Err(ConfigError::new(
                format!("{field}.{given}"),
                format!("is given without {missing}"),
            ));
        }
        // Destination, options, type, bind source: berth-rootfs' rules.
        rootfs_rule(berth_rootfs::validate::mount(i, mount))?;
        check_no_dotdot(mount.destination(), &format!("{field}.destination"))?;
    }
    Ok(())
}

/// One `KEY=VALUE` environment entry.
fn check_env_entry(entry: &str, field: &str) -> Result<(), ConfigError> {
    match entry.split_once('=') {
        None => Err(ConfigError::new(
            field,
            format!("{entry:?} must be KEY=VALUE"),
        )),
        Some(("", _)) => Err(ConfigError::new(
            field,
            format!("{entry:?} has an empty key"),
        )),
        Some(_) if entry.contains('\0') => Err(ConfigError::new(field, "contains a NUL byte")),
        Some(_) => Ok(()),
    }
}

fn check_process(spec: &Spec) -> Result<(), ConfigError> {
    // Optional: a container can be created without one (`start` then fails, as the spec
    // says).
    let Some(process) = spec.process() else {
        return Ok(());
    };
    rootfs_rule(berth_rootfs::validate::cwd(process.cwd()))?;
    if let Some(env) = process.env() {
        for (i, entry) in env.iter().enumerate() {
            check_env_entry(entry, &format!("process.env[{i}]"))?;
        }
    }
    let args = process.args().as_deref().unwrap_or(&[]);
    if args.is_empty() {
        return Err(ConfigError::new("process.args", "is empty"));
    }
    for (i, arg) in args.iter().enumerate() {
        if i == 0 && arg.is_empty() {
            return Err(ConfigError::new("process.args[0]", "is empty"));
        }
        if arg.contains('\0') {
            return Err(ConfigError::new(
                format!("process.args[{i}]"),
                "contains a NUL byte",
            ));
        }
    }
    if let Some(rlimits) = process.rlimits() {
        let mut seen: Vec<PosixRlimitType> = Vec::with_capacity(rlimits.len());
        for (i, rlimit) in rlimits.iter().enumerate() {
            let typ = rlimit.typ();
            if seen.contains(&typ) {
                return Err(ConfigError::new(
                    format!("process.rlimits[{i}].type"),
                    format!("\"{typ}\" appears twice"),
                ));
            }
            seen.push(typ);
            if rlimit.soft() > rlimit.hard() {
                return Err(ConfigError::new(
                    format!("process.rlimits[{i}].soft"),
                    format!("{} is greater than hard {}", rlimit.soft(), rlimit.hard()),
                ));
            }
        }
    }
    // Capability names were checked when the JSON was parsed: an oci-spec
    // `Capability` can only hold a name the spec knows.
    if let Some(adj) = process.oom_score_adj()
        && !(-1000..=1000).contains(&adj)
    {
        return Err(ConfigError::new(
            "process.oomScoreAdj",
            format!("{adj} is outside -1000..=1000"),
        ));
    }
    if let Some(umask) = process.user().umask()
        && umask > 0o7777
    {
        return Err(ConfigError::new(
            "process.user.umask",
            format!("{umask:#o} is greater than 0o7777"),
        ));
    }
    Ok(())
}

/// Whether the container gets a namespace of `typ` that is not the runtime's own:
/// either a new one (no path, or `"path": ""`), or one joined by a path that is not
/// `/proc/self/ns/<typ>`'s namespace. Returns the reason when it does not.
fn private_namespace(namespaces: &[LinuxNamespace], typ: LinuxNamespaceType) -> Result<(), String> {
    let kind = NamespaceKind::from(typ);
    let name = kind.config_name();
    let Some(ns) = namespaces.iter().find(|ns| ns.typ() == typ) else {
        return Err(format!("requires a {name:?} entry in linux.namespaces"));
    };
    let Some(path) = ns.path().as_deref().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    let own = Path::new("/proc/self/ns").join(kind.proc_name());
    match (fs::metadata(path), fs::metadata(&own)) {
        (Ok(joined), Ok(runtime))
            if joined.dev() == runtime.dev() && joined.ino() == runtime.ino() =>
        {
            Err(format!(
                "requires a private {name:?} namespace, but {} is the runtime's own",
                path.display()
            ))
        }
        _ => Ok(()),
    }
}

fn check_uts_name(
    field: &str,
    value: Option<&str>,
    namespaces: &[LinuxNamespace],
) -> Result<(), ConfigError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    if value.len() > UTS_NAME_MAX {
        return Err(ConfigError::new(
            field,
            format!("is longer than {UTS_NAME_MAX} bytes"),
        ));
    }
    if value.contains('\0') {
        return Err(ConfigError::new(field, "contains a NUL byte"));
    }
    private_namespace(namespaces, LinuxNamespaceType::Uts)
        .map_err(|reason| ConfigError::new(field, reason))
}

fn check_linux(linux: &Linux) -> Result<(), ConfigError> {
    let namespaces: &[LinuxNamespace] = linux.namespaces().as_deref().unwrap_or(&[]);
    // linux.namespaces, uidMappings, gidMappings, timeOffsets: berth-namespaces' rules.
    berth_namespaces::validate(linux).map_err(|err| {
        let field = err.field();
        crate_error(field, err.to_string(), "linux.namespaces")
    })?;
    if let Some(devices) = linux.devices() {
        check_devices(devices)?;
    }
    if let Some(sysctl) = linux.sysctl() {
        check_sysctl(sysctl, namespaces)?;
    }
    if let Some(propagation) = linux.rootfs_propagation() {
        rootfs_rule(berth_rootfs::validate::rootfs_propagation(propagation))?;
    }
    if let Some(paths) = linux.masked_paths() {
        rootfs_rule(berth_rootfs::validate::masked_paths(paths))?;
    }
    if let Some(paths) = linux.readonly_paths() {
        rootfs_rule(berth_rootfs::validate::readonly_paths(paths))?;
    }
    Ok(())
}

/// A config error reported by one of the crates the runtime composes, whose messages
/// start with the JSON path of the field (`field`) followed by why: split into a
/// [`ConfigError`] naming that field. `whole` is the field named when the crate names none.
fn crate_error(field: Option<String>, message: String, whole: &str) -> ConfigError {
    if let Some(field) = field
        && let Some(rest) = message.strip_prefix(field.as_str())
    {
        let reason = rest.trim_start_matches(':').trim_start();
        return ConfigError::new(field, reason);
    }
    ConfigError::new(whole, format!("is invalid: {message}"))
}

fn check_devices(devices: &[LinuxDevice]) -> Result<(), ConfigError> {
    // Types, absolute paths given once, device numbers: berth-rootfs' rules.
    rootfs_rule(berth_rootfs::validate::devices(devices))?;
    for (i, device) in devices.iter().enumerate() {
        let field = format!("linux.devices[{i}].path");
        let path = device.path();
        check_no_dotdot(path, &field)?;
        if !path.starts_with("/dev") || path == Path::new("/dev") {
            return Err(ConfigError::new(
                field,
                format!("{path:?} is not under /dev"),
            ));
        }
    }
    Ok(())
}

fn check_sysctl(
    sysctl: &HashMap<String, String>,
    namespaces: &[LinuxNamespace],
) -> Result<(), ConfigError> {
    let mut keys: Vec<&String> = sysctl.keys().collect();
    keys.sort();
    for key in keys {
        let field = format!("linux.sysctl[{key:?}]");
        // berth-rootfs takes `/` for `.` (as sysctl(8) does); the spec's keys are dotted.
        if key.contains('/') {
            return Err(ConfigError::new(field, "must not contain \"/\""));
        }
        // No "..", no empty component, no NUL in the value: berth-rootfs' rules.
        rootfs_rule(berth_rootfs::validate::sysctl(key, &sysctl[key]))?;
        let typ = if key.starts_with("net.") {
            LinuxNamespaceType::Network
        } else if key.starts_with("kernel.shm")
            || key.starts_with("kernel.msg")
            || key.starts_with("kernel.sem")
            || key.starts_with("fs.mqueue.")
        {
            LinuxNamespaceType::Ipc
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            LinuxNamespaceType::Uts
        } else {
            return Err(ConfigError::new(
                field,
                "is not namespaced: setting it would change the host",
            ));
        };
        private_namespace(namespaces, typ).map_err(|reason| ConfigError::new(field, reason))?;
    }
    Ok(())
}

fn check_hooks(hooks: &Hooks) -> Result<(), ConfigError> {
    #[allow(deprecated)] // prestart is deprecated by the spec but still honoured
    let prestart = hooks.prestart();
    let lists = [
        prestart,
        hooks.create_runtime(),
        hooks.create_container(),
        hooks.start_container(),
        hooks.poststart(),
        hooks.poststop(),
    ];
    for (kind, list) in HOOK_KINDS.iter().zip(lists) {
        for (i, hook) in list.iter().flatten().enumerate() {
            let field = format!("hooks.{kind}[{i}]");
            if !hook.path().is_absolute() {
                return Err(ConfigError::new(
                    format!("{field}.path"),
                    "must be absolute",
                ));
            }
            for (j, entry) in hook.env().iter().flatten().enumerate() {
                check_env_entry(entry, &format!("{field}.env[{j}]"))?;
            }
            if let Some(timeout) = hook.timeout()
                && timeout <= 0
            {
                return Err(ConfigError::new(
                    format!("{field}.timeout"),
                    format!("{timeout} is not greater than 0"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;
    use std::path::PathBuf;

    use crate::test_support::TempDir;

    /// A bundle directory with a `rootfs/` subdirectory, removed on drop (also when
    /// the test fails).
    struct Bundle(TempDir);

    impl Bundle {
        fn new() -> Self {
            let dir = TempDir::new("validate");
            fs::create_dir_all(dir.join("rootfs")).expect("create bundle");
            Bundle(dir)
        }

        fn path(&self) -> &Path {
            self.0.path()
        }

        fn write(&self, text: &str) {
            fs::write(self.0.join("config.json"), text).expect("write config.json");
        }
    }

    /// A small valid config: every rule has something to look at.
    fn base() -> Value {
        json!({
            "ociVersion": "1.0.2",
            "root": { "path": "rootfs", "readonly": true },
            "mounts": [
                { "destination": "/proc", "type": "proc", "source": "proc" },
                { "destination": "/data", "type": "bind", "source": "/srv/data",
                  "options": ["rbind", "ro"] },
                { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                  "options": ["nosuid", "nodev"] }
            ],
            "process": {
                "terminal": false,
                "user": { "uid": 0, "gid": 0, "umask": 18 },
                "args": ["/bin/sh", "-c", "true"],
                "env": ["PATH=/usr/bin:/bin", "EMPTY="],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "effective": ["CAP_KILL"],
                    "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
                },
                "rlimits": [
                    { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 },
                    { "type": "RLIMIT_CORE", "hard": 10, "soft": 0 }
                ],
                "noNewPrivileges": true,
                "oomScoreAdj": -1000
            },
            "hostname": "box",
            "domainname": "example.org",
            "linux": {
                "namespaces": [
                    { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                    { "type": "uts" }, { "type": "mount" }
                ],
                "devices": [
                    { "path": "/dev/fuse", "type": "c", "major": 10, "minor": 229 },
                    { "path": "/dev/pipe0", "type": "p" }
                ],
                "sysctl": {
                    "net.ipv4.ip_forward": "1",
                    "kernel.shmmax": "65536",
                    "kernel.msgmax": "8192",
                    "kernel.sem": "250 32000 32 128",
                    "fs.mqueue.msg_max": "10",
                    "kernel.domainname": "example.org"
                },
                "rootfsPropagation": "rslave",
                "maskedPaths": ["/proc/kcore"],
                "readonlyPaths": ["/proc/sys"]
            },
            "hooks": {
                "createRuntime": [ { "path": "/usr/bin/true", "timeout": 5 } ],
                "poststop": [ { "path": "/usr/bin/true", "env": ["A=b"] } ]
            },
            "annotations": { "org.example.key": "value" },
            "someFutureField": { "anything": [1, 2, 3] }
        })
    }

    /// JSON merge patch (RFC 7386): objects merge, `null` deletes, anything else replaces.
    fn merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(target), Value::Object(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        target.remove(key);
                    } else {
                        merge(target.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
            (target, patch) => *target = patch.clone(),
        }
    }

    /// Load and validate `base()` patched with `patch` in a fresh bundle.
    fn run(patch: Value) -> Result<(), String> {
        let mut config = base();
        merge(&mut config, &patch);
        let bundle = Bundle::new();
        bundle.write(&config.to_string());
        load_bundle_config(bundle.path())
            .and_then(|spec| validate(&spec, bundle.path()))
            .map_err(|err| err.to_string())
    }

    #[test]
    fn base_config_is_valid() {
        assert_eq!(run(json!({})), Ok(()));
    }

    /// Nulls are written into the config as they are (the merge patch would delete them).
    #[test]
    fn null_members_read_as_absent() {
        let mut config = base();
        for (ptr, key) in [
            ("", "hooks"),
            ("", "annotations"),
            ("/process", "capabilities"),
            ("/process", "rlimits"),
            ("/linux", "resources"),
            ("/linux", "maskedPaths"),
        ] {
            config
                .pointer_mut(ptr)
                .and_then(Value::as_object_mut)
                .unwrap()
                .insert(key.into(), Value::Null);
        }
        let bundle = Bundle::new();
        bundle.write(&config.to_string());
        let spec = load_bundle_config(bundle.path()).expect("nulls are accepted");
        assert!(spec.hooks().is_none() && spec.annotations().is_none());
        assert!(spec.process().as_ref().unwrap().capabilities().is_none());
        validate(&spec, bundle.path()).expect("valid");
    }

    #[test]
    fn unknown_capabilities_are_refused() {
        let mut config = base();
        merge(
            &mut config,
            &json!({"process": {"capabilities": {
            "permitted": ["CAP_KILL", "CAP_FLY"], "bounding": ["CAP_KILL"]}}}),
        );
        let bundle = Bundle::new();
        bundle.write(&config.to_string());
        let e = load_bundle_config(bundle.path()).expect_err("CAP_FLY");
        assert_eq!(
            e.to_string(),
            r#"process.capabilities.permitted[1] "CAP_FLY" is not a known capability"#
        );
    }

    #[rstest]
    #[case::prerelease_and_build(json!({"ociVersion": "1.2.0-rc.1+build.5"}))]
    #[case::dev(json!({"ociVersion": "1.0.2-dev"}))]
    #[case::absolute_root(json!({"root": {"path": "/"}}))]
    #[case::new_user_ns(json!({"linux": {
        "namespaces": [{"type": "user"}, {"type": "mount"}],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 65536}],
        "sysctl": null}, "hostname": null, "domainname": null}))]
    #[case::joined_user_ns(json!({"linux": {
        "namespaces": [{"type": "user", "path": "/proc/1/ns/user"}, {"type": "mount"}],
        "sysctl": null}, "hostname": null, "domainname": null}))]
    #[case::time_offsets(json!({"linux": {
        "namespaces": [{"type": "time"}, {"type": "mount"}], "sysctl": null,
        "timeOffsets": {"monotonic": {"secs": 10}, "boottime": {"secs": -5, "nanosecs": 999999999}}},
        "hostname": null, "domainname": null}))]
    #[case::no_hostname_no_uts(json!({"hostname": null, "domainname": null,
        "linux": {"namespaces": [{"type": "mount"}], "sysctl": null}}))]
    #[case::all_hook_kinds(json!({"hooks": {
        "prestart": [{"path": "/a"}], "createRuntime": [{"path": "/b"}],
        "createContainer": [{"path": "/c"}], "startContainer": [{"path": "/d"}],
        "poststart": [{"path": "/e"}], "poststop": [{"path": "/f", "timeout": 1}]}}))]
    #[case::unknown_annotation_and_nulls(json!({"annotations": {"x.y": ""}, "process": {"apparmorProfile": null}}))]
    #[case::lenient_capability_spelling(json!({"process": {"capabilities": {"ambient": ["kill"]}}}))]
    #[case::process_missing(json!({"process": null}))]
    // `"path": ""` is a new namespace (as with runc): its hostname, sysctls, mappings and
    // offsets are the container's own.
    #[case::empty_paths(json!({"linux": {"namespaces": [
        {"type": "pid", "path": ""}, {"type": "network", "path": ""}, {"type": "ipc", "path": ""},
        {"type": "uts", "path": ""}, {"type": "mount", "path": ""}, {"type": "cgroup", "path": ""}]}}))]
    #[case::empty_path_user(json!({"linux": {
        "namespaces": [{"type": "user", "path": ""}, {"type": "mount"}],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 65536}],
        "sysctl": null}, "hostname": null, "domainname": null}))]
    #[case::empty_path_time(json!({"linux": {
        "namespaces": [{"type": "time", "path": ""}, {"type": "mount"}], "sysctl": null,
        "timeOffsets": {"monotonic": {"secs": 10}}},
        "hostname": null, "domainname": null}))]
    fn valid_configs_pass(#[case] patch: Value) {
        assert_eq!(run(patch), Ok(()));
    }

    #[rstest]
    // ociVersion
    #[case::version_empty(json!({"ociVersion": ""}), "ociVersion is empty")]
    #[case::version_not_semver(json!({"ociVersion": "1.0"}),
        r#"ociVersion "1.0" is not a SemVer 2.0.0 version"#)]
    #[case::version_leading_zero(json!({"ociVersion": "1.01.0"}),
        r#"ociVersion "1.01.0" is not a SemVer 2.0.0 version"#)]
    #[case::version_bad_prerelease(json!({"ociVersion": "1.0.0-"}),
        r#"ociVersion "1.0.0-" is not a SemVer 2.0.0 version"#)]
    #[case::version_major_2(json!({"ociVersion": "2.0.0"}),
        r#"ociVersion "2.0.0" has major version 2; berth implements version 1"#)]
    #[case::version_major_0(json!({"ociVersion": "0.5.0-dev"}),
        r#"ociVersion "0.5.0-dev" has major version 0; berth implements version 1"#)]
    // root
    #[case::root_missing(json!({"root": null}), "root is missing")]
    #[case::root_path_empty(json!({"root": {"path": ""}}), "root.path is empty")]
    // mounts
    #[case::mount_relative(json!({"mounts": [{"destination": "proc", "type": "proc"}]}),
        r#"mounts[0].destination "proc": must be an absolute path"#)]
    #[case::mount_dotdot(json!({"mounts": [{"destination": "/proc", "type": "proc"},
        {"destination": "/a/../etc", "type": "tmpfs"}]}),
        r#"mounts[1].destination must not contain "..""#)]
    #[case::mount_empty(json!({"mounts": [{"destination": ""}]}),
        r#"mounts[0].destination "": must be an absolute path"#)]
    #[case::bind_type_without_source(json!({"mounts": [{"destination": "/x", "type": "bind"}]}),
        "mounts[0].source is required for a bind mount")]
    #[case::bind_option_empty_source(json!({"mounts": [
        {"destination": "/x", "source": "", "options": ["bind"]}]}),
        "mounts[0].source is required for a bind mount")]
    #[case::mount_uid_map_alone(json!({"mounts": [{"destination": "/x", "type": "bind",
        "source": "/y", "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}]}),
        "mounts[0].uidMappings is given without gidMappings")]
    // process
    #[case::cwd_relative(json!({"process": {"cwd": "tmp"}}), r#"process.cwd "tmp": must be an absolute path"#)]
    #[case::env_no_equals(json!({"process": {"env": ["PATH=/bin", "FOO"]}}),
        r#"process.env[1] "FOO" must be KEY=VALUE"#)]
    #[case::env_empty_key(json!({"process": {"env": ["=value"]}}),
        r#"process.env[0] "=value" has an empty key"#)]
    #[case::env_nul(json!({"process": {"env": ["A=b\u{0}c"]}}),
        "process.env[0] contains a NUL byte")]
    #[case::args_empty(json!({"process": {"args": []}}), "process.args is empty")]
    #[case::args_absent(json!({"process": {"args": null}}), "process.args is empty")]
    #[case::args_first_empty(json!({"process": {"args": [""]}}), "process.args[0] is empty")]
    #[case::args_nul(json!({"process": {"args": ["sh", "a\u{0}"]}}),
        "process.args[1] contains a NUL byte")]
    #[case::rlimit_duplicate(json!({"process": {"rlimits": [
        {"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1},
        {"type": "RLIMIT_CPU", "hard": 1, "soft": 1},
        {"type": "RLIMIT_NOFILE", "hard": 2, "soft": 2}]}}),
        r#"process.rlimits[2].type "RLIMIT_NOFILE" appears twice"#)]
    #[case::rlimit_soft_above_hard(json!({"process": {"rlimits": [
        {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 2048}]}}),
        "process.rlimits[0].soft 2048 is greater than hard 1024")]
    #[case::oom_too_high(json!({"process": {"oomScoreAdj": 1001}}),
        "process.oomScoreAdj 1001 is outside -1000..=1000")]
    #[case::oom_too_low(json!({"process": {"oomScoreAdj": -1001}}),
        "process.oomScoreAdj -1001 is outside -1000..=1000")]
    #[case::umask_too_big(json!({"process": {"user": {"uid": 0, "gid": 0, "umask": 4096}}}),
        "process.user.umask 0o10000 is greater than 0o7777")]
    // hostname / domainname
    #[case::hostname_without_uts(json!({"domainname": null, "linux": {"sysctl": null,
        "namespaces": [{"type": "mount"}]}}),
        r#"hostname requires a "uts" entry in linux.namespaces"#)]
    #[case::domainname_without_uts(json!({"hostname": null, "linux": {"sysctl": null,
        "namespaces": [{"type": "mount"}]}}),
        r#"domainname requires a "uts" entry in linux.namespaces"#)]
    #[case::hostname_in_own_uts(json!({"linux": {"namespaces": [
        {"type": "uts", "path": "/proc/self/ns/uts"}]}}),
        r#"hostname requires a private "uts" namespace, but /proc/self/ns/uts is the runtime's own"#)]
    #[case::hostname_too_long(json!({"hostname": "h".repeat(65)}),
        "hostname is longer than 64 bytes")]
    // linux
    #[case::linux_missing(json!({"linux": null, "hostname": null, "domainname": null}),
        "linux is missing")]
    #[case::namespace_duplicate(json!({"linux": {"namespaces": [
        {"type": "pid"}, {"type": "pid"}, {"type": "uts"}]}}),
        r#"linux.namespaces[1].type "pid" appears twice (first in linux.namespaces[0])"#)]
    #[case::namespace_path_relative(json!({"linux": {"namespaces": [
        {"type": "uts"}, {"type": "pid", "path": "proc/1/ns/pid"}]}}),
        r#"linux.namespaces[1].path "proc/1/ns/pid" must be absolute"#)]
    #[case::uid_map_without_userns(json!({"linux": {
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}}),
        "linux.uidMappings is set but no new user namespace is created (linux.namespaces needs a \"user\" entry without a path)")]
    #[case::gid_map_without_userns(json!({"linux": {
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}}),
        "linux.gidMappings is set but no new user namespace is created (linux.namespaces needs a \"user\" entry without a path)")]
    #[case::userns_without_uid_map(json!({"linux": {"namespaces": [{"type": "user"}],
        "sysctl": null}, "hostname": null, "domainname": null}),
        "linux.uidMappings is required when a new user namespace is created (linux.namespaces[0])")]
    #[case::userns_without_gid_map(json!({"linux": {"namespaces": [{"type": "user"}],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        "sysctl": null}, "hostname": null, "domainname": null}),
        "linux.gidMappings is required when a new user namespace is created (linux.namespaces[0])")]
    #[case::joined_userns_with_maps(json!({"linux": {
        "namespaces": [{"type": "user", "path": "/proc/1/ns/user"}],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        "sysctl": null}, "hostname": null, "domainname": null}),
        "linux.uidMappings is set but no new user namespace is created (linux.namespaces needs a \"user\" entry without a path)")]
    #[case::mapping_size_zero(json!({"linux": {"namespaces": [{"type": "user"}],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1},
                        {"containerID": 1, "hostID": 2000, "size": 0}],
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        "sysctl": null}, "hostname": null, "domainname": null}),
        "linux.uidMappings[1].size must be greater than 0")]
    #[case::time_offsets_without_timens(json!({"linux": {
        "timeOffsets": {"monotonic": {"secs": 1}}}}),
        "linux.timeOffsets is set but no new time namespace is created (linux.namespaces needs a \"time\" entry without a path)")]
    #[case::time_offsets_joined_timens(json!({"linux": {
        "namespaces": [{"type": "uts"}, {"type": "network"}, {"type": "ipc"},
                       {"type": "time", "path": "/proc/1/ns/time"}],
        "timeOffsets": {"boottime": {"secs": 1}}}}),
        "linux.timeOffsets is set but no new time namespace is created (linux.namespaces needs a \"time\" entry without a path)")]
    #[case::time_offsets_bad_clock(json!({"linux": {
        "namespaces": [{"type": "uts"}, {"type": "network"}, {"type": "ipc"}, {"type": "time"}],
        "timeOffsets": {"monotonic": {"secs": 1}, "realtime": {"secs": 1}}}}),
        r#"linux.timeOffsets["realtime"] is not a clock with a namespace offset (expected "monotonic" or "boottime")"#)]
    #[case::time_offsets_nanos(json!({"linux": {
        "namespaces": [{"type": "uts"}, {"type": "network"}, {"type": "ipc"}, {"type": "time"}],
        "timeOffsets": {"boottime": {"nanosecs": 1000000000u32}}}}),
        r#"linux.timeOffsets["boottime"].nanosecs 1000000000 is out of range (must be below 1000000000)"#)]
    #[case::device_relative(json!({"linux": {"devices": [
        {"path": "dev/null", "type": "c", "major": 1, "minor": 3}]}}),
        r#"linux.devices[0].path "dev/null": must be an absolute path"#)]
    #[case::device_outside_dev(json!({"linux": {"devices": [
        {"path": "/tmp/null", "type": "c", "major": 1, "minor": 3}]}}),
        r#"linux.devices[0].path "/tmp/null" is not under /dev"#)]
    #[case::device_devices_prefix(json!({"linux": {"devices": [
        {"path": "/devices/null", "type": "c", "major": 1, "minor": 3}]}}),
        r#"linux.devices[0].path "/devices/null" is not under /dev"#)]
    #[case::device_is_dev(json!({"linux": {"devices": [
        {"path": "/dev", "type": "c", "major": 1, "minor": 3}]}}),
        r#"linux.devices[0].path "/dev" is not under /dev"#)]
    #[case::device_escapes_dev(json!({"linux": {"devices": [
        {"path": "/dev/../etc/passwd", "type": "c", "major": 1, "minor": 3}]}}),
        r#"linux.devices[0].path must not contain "..""#)]
    #[case::device_type_a(json!({"linux": {"devices": [
        {"path": "/dev/all", "type": "a"}]}}),
        r#"linux.devices[0].type "a": is not a device node type (one of c, b, u, p)"#)]
    #[case::device_negative_major(json!({"linux": {"devices": [
        {"path": "/dev/x", "type": "b", "major": -1, "minor": 0}]}}),
        "linux.devices[0].major -1: is out of range (0..=4294967295)")]
    #[case::device_duplicate(json!({"linux": {"devices": [
        {"path": "/dev/x", "type": "c", "major": 1, "minor": 3},
        {"path": "/dev/x", "type": "u", "major": 1, "minor": 5}]}}),
        r#"linux.devices[1].path "/dev/x": same path as linux.devices[0]"#)]
    #[case::sysctl_empty_key(json!({"linux": {"sysctl": {"": "1"}}}),
        r#"linux.sysctl[""] has an empty component"#)]
    #[case::sysctl_slash(json!({"linux": {"sysctl": {"net/ipv4/ip_forward": "1"}}}),
        r#"linux.sysctl["net/ipv4/ip_forward"] must not contain "/""#)]
    #[case::sysctl_dotdot(json!({"linux": {"sysctl": {"net..x": "1"}}}),
        r#"linux.sysctl["net..x"] must not contain "..""#)]
    #[case::sysctl_trailing_dot(json!({"linux": {"sysctl": {"net.": "1"}}}),
        r#"linux.sysctl["net."] has an empty component"#)]
    #[case::sysctl_net_without_netns(json!({"linux": {"namespaces": [
        {"type": "ipc"}, {"type": "uts"}]}}),
        r#"linux.sysctl["net.ipv4.ip_forward"] requires a "network" entry in linux.namespaces"#)]
    #[case::sysctl_net_in_own_netns(json!({"linux": {"namespaces": [
        {"type": "ipc"}, {"type": "uts"}, {"type": "network", "path": "/proc/self/ns/net"}]}}),
        r#"linux.sysctl["net.ipv4.ip_forward"] requires a private "network" namespace, but /proc/self/ns/net is the runtime's own"#)]
    #[case::sysctl_ipc_without_ipcns(json!({"linux": {"namespaces": [
        {"type": "network"}, {"type": "uts"}]}}),
        r#"linux.sysctl["fs.mqueue.msg_max"] requires a "ipc" entry in linux.namespaces"#)]
    #[case::sysctl_shm_without_ipcns(json!({"linux": {"namespaces": [
        {"type": "network"}, {"type": "uts"}], "sysctl": {"fs.mqueue.msg_max": null,
        "kernel.msgmax": null, "kernel.sem": null}}}),
        r#"linux.sysctl["kernel.shmmax"] requires a "ipc" entry in linux.namespaces"#)]
    #[case::sysctl_msg_without_ipcns(json!({"linux": {"namespaces": [
        {"type": "network"}, {"type": "uts"}], "sysctl": {"fs.mqueue.msg_max": null}}}),
        r#"linux.sysctl["kernel.msgmax"] requires a "ipc" entry in linux.namespaces"#)]
    #[case::sysctl_sem_without_ipcns(json!({"linux": {"namespaces": [
        {"type": "network"}, {"type": "uts"}], "sysctl": {"fs.mqueue.msg_max": null,
        "kernel.msgmax": null}}}),
        r#"linux.sysctl["kernel.sem"] requires a "ipc" entry in linux.namespaces"#)]
    #[case::sysctl_ipc_in_own_ipcns(json!({"linux": {"namespaces": [
        {"type": "network"}, {"type": "uts"}, {"type": "ipc", "path": "/proc/self/ns/ipc"}]}}),
        r#"linux.sysctl["fs.mqueue.msg_max"] requires a private "ipc" namespace, but /proc/self/ns/ipc is the runtime's own"#)]
    #[case::sysctl_not_namespaced(json!({"linux": {"sysctl": {"vm.swappiness": "10"}}}),
        r#"linux.sysctl["vm.swappiness"] is not namespaced: setting it would change the host"#)]
    #[case::propagation_unknown(json!({"linux": {"rootfsPropagation": "rshard"}}),
        r#"linux.rootfsPropagation "rshard": unknown propagation (expected [r]shared, [r]slave, [r]private or [r]unbindable)"#)]
    #[case::masked_relative(json!({"linux": {"maskedPaths": ["/proc/kcore", "proc/keys"]}}),
        r#"linux.maskedPaths[1] "proc/keys": must be an absolute path"#)]
    #[case::readonly_relative(json!({"linux": {"readonlyPaths": ["sys"]}}),
        r#"linux.readonlyPaths[0] "sys": must be an absolute path"#)]
    // hooks
    #[case::hook_relative(json!({"hooks": {"prestart": [{"path": "true"}]}}),
        "hooks.prestart[0].path must be absolute")]
    #[case::hook_relative_start_container(json!({"hooks": {"startContainer": [
        {"path": "/ok"}, {"path": "bin/hook"}]}}),
        "hooks.startContainer[1].path must be absolute")]
    #[case::hook_timeout_zero(json!({"hooks": {"poststart": [{"path": "/x", "timeout": 0}]}}),
        "hooks.poststart[0].timeout 0 is not greater than 0")]
    #[case::hook_timeout_negative(json!({"hooks": {"createContainer": [
        {"path": "/x", "timeout": -3}]}}),
        "hooks.createContainer[0].timeout -3 is not greater than 0")]
    #[case::hook_env(json!({"hooks": {"poststop": [{"path": "/x", "env": ["NOPE"]}]}}),
        r#"hooks.poststop[0].env[0] "NOPE" must be KEY=VALUE"#)]
    // objects given as arrays (serde alone would read `[]` as a struct of defaults)
    #[case::user_array(json!({"process": {"user": []}}),
        "process.user must be an object, not an array")]
    #[case::capabilities_array(json!({"process": {"capabilities": []}}),
        "process.capabilities must be an object, not an array")]
    // annotations
    #[case::annotation_empty_key(json!({"annotations": {"": "v"}}),
        "annotations has an empty key")]
    fn invalid_configs_fail(#[case] patch: Value, #[case] expected: &str) {
        assert_eq!(run(patch), Err(expected.to_string()));
    }

    /// Rules that berth-namespaces and berth-rootfs own, reached through validation: the
    /// error still names the field (and says why after it).
    #[rstest]
    #[case::ns_duplicate(json!({"linux": {"namespaces": [{"type": "uts"}, {"type": "uts"}]}}),
        "linux.namespaces[1].type")]
    #[case::ns_relative(json!({"linux": {"namespaces": [{"type": "uts", "path": "x"}]}}),
        "linux.namespaces[0].path")]
    #[case::ns_mapping_overflow(json!({"linux": {"namespaces": [{"type": "user"}],
        "uidMappings": [{"containerID": 4294967295u32, "hostID": 0, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": 0, "size": 1}],
        "sysctl": null}, "hostname": null, "domainname": null}),
        "linux.uidMappings[0].containerID")]
    #[case::ns_offset_secs(json!({"linux": {
        "namespaces": [{"type": "uts"}, {"type": "network"}, {"type": "ipc"}, {"type": "time"}],
        "timeOffsets": {"boottime": {"secs": 9223372036854775807i64}}}}),
        r#"linux.timeOffsets["boottime"].secs"#)]
    #[case::mount_type_missing(json!({"mounts": [{"destination": "/x"}]}), "mounts[0].type")]
    #[case::mount_option_unknown(json!({"mounts": [{"destination": "/x", "type": "tmpfs",
        "options": ["rbind", "tmpcopyup"]}]}), "mounts[0].options")]
    #[case::mount_idmapped(json!({"mounts": [{"destination": "/x", "type": "bind", "source": "/y",
        "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}]}), "mounts[0].uidMappings")]
    #[case::bind_source(json!({"mounts": [{"destination": "/x", "options": ["rbind"]}]}),
        "mounts[0].source")]
    #[case::cwd(json!({"process": {"cwd": "x"}}), "process.cwd")]
    #[case::device_minor(json!({"linux": {"devices": [
        {"path": "/dev/x", "type": "c", "major": 1, "minor": 4294967296u64}]}}),
        "linux.devices[0].minor")]
    #[case::device_root(json!({"linux": {"devices": [{"path": "/", "type": "p"}]}}),
        "linux.devices[0].path")]
    #[case::sysctl_value_nul(json!({"linux": {"sysctl": {"net.core.somaxconn": "1\u{0}"}}}),
        r#"linux.sysctl["net.core.somaxconn"]"#)]
    #[case::propagation(json!({"linux": {"rootfsPropagation": ""}}), "linux.rootfsPropagation")]
    #[case::masked_root(json!({"linux": {"maskedPaths": ["/"]}}), "linux.maskedPaths[0]")]
    #[case::readonly_root(json!({"linux": {"readonlyPaths": ["/ok", "/.."]}}),
        "linux.readonlyPaths[1]")]
    fn crate_rules_name_the_field(#[case] patch: Value, #[case] field: &str) {
        let mut config = base();
        merge(&mut config, &patch);
        let bundle = Bundle::new();
        bundle.write(&config.to_string());
        let err = load_bundle_config(bundle.path())
            .and_then(|spec| validate(&spec, bundle.path()))
            .expect_err("invalid");
        assert_eq!(err.field, field, "{err}");
        assert!(
            !err.reason.is_empty() && !err.reason.starts_with(':'),
            "{err}"
        );
    }

    #[rstest]
    #[case::root_not_object(json!({"root": "rootfs"}), "root must be an object, not a string")]
    #[case::args_not_array(json!({"process": {"args": "sh"}}),
        r#"process.args is invalid: invalid type: string "sh", expected a sequence"#)]
    #[case::arg_not_string(json!({"process": {"args": ["sh", 1]}}),
        "process.args[1] is invalid: invalid type: integer `1`, expected a string")]
    #[case::terminal_not_bool(json!({"process": {"terminal": "yes"}}),
        r#"process.terminal is invalid: invalid type: string "yes", expected a boolean"#)]
    #[case::uid_negative(json!({"process": {"user": {"uid": -1, "gid": 0}}}),
        "process.user.uid is invalid: invalid value: integer `-1`, expected u32")]
    #[case::oom_overflow(json!({"process": {"oomScoreAdj": 5000000000u64}}),
        "process.oomScoreAdj is invalid: invalid value: integer `5000000000`, expected i32")]
    #[case::cwd_missing(json!({"process": {"cwd": null}}), "process.cwd is required")]
    #[case::user_missing(json!({"process": {"user": null}}), "process.user is required")]
    #[case::version_missing(json!({"ociVersion": null}), "ociVersion is required")]
    #[case::version_number(json!({"ociVersion": 1}),
        "ociVersion is invalid: invalid type: integer `1`, expected a string")]
    #[case::rlimit_unknown(json!({"process": {"rlimits": [{"type": "RLIMIT_FOO", "hard": 1, "soft": 1}]}}),
        r#"process.rlimits[0].type "RLIMIT_FOO" is not a known rlimit type"#)]
    #[case::rlimit_type_missing(json!({"process": {"rlimits": [{"hard": 1, "soft": 1}]}}),
        "process.rlimits[0].type is required")]
    #[case::mount_destination_missing(json!({"mounts": [{"type": "tmpfs", "source": "tmpfs"}]}),
        "mounts[0].destination is required")]
    #[case::mount_options_not_strings(json!({"mounts": [{"destination": "/x", "options": [true]}]}),
        "mounts[0].options[0] is invalid: invalid type: boolean `true`, expected a string")]
    #[case::namespace_unknown(json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "net"}]}}),
        r#"linux.namespaces[1].type "net" is not a known namespace type"#)]
    #[case::namespace_type_missing(json!({"linux": {"namespaces": [{"path": "/proc/1/ns/pid"}]}}),
        "linux.namespaces[0].type is required")]
    #[case::device_type_unknown(json!({"linux": {"devices": [{"path": "/dev/x", "type": "z"}]}}),
        r#"linux.devices[0].type "z" is not a known device type"#)]
    #[case::device_major_missing(json!({"linux": {"devices": [{"path": "/dev/x", "type": "c", "minor": 1}]}}),
        r#"linux.devices[0].major is required for type "c""#)]
    #[case::device_minor_missing(json!({"linux": {"devices": [{"path": "/dev/x", "type": "b", "major": 1}]}}),
        r#"linux.devices[0].minor is required for type "b""#)]
    #[case::sysctl_value_not_string(json!({"linux": {"sysctl": {"net.core.somaxconn": 256}}}),
        r#"linux.sysctl["net.core.somaxconn"] is invalid: invalid type: integer `256`, expected a string"#)]
    #[case::time_offset_bad(json!({"linux": {"timeOffsets": {"boottime": {"secs": "1"}}}}),
        r#"linux.timeOffsets["boottime"].secs is invalid: invalid type: string "1", expected i64"#)]
    #[case::mapping_bad(json!({"linux": {"uidMappings": [{"containerID": 0, "hostID": -5, "size": 1}]}}),
        "linux.uidMappings[0].hostID is invalid: invalid value: integer `-5`, expected u32")]
    #[case::hook_path_missing(json!({"hooks": {"poststop": [{"args": ["x"]}]}}),
        "hooks.poststop[0].path is required")]
    #[case::hook_timeout_not_number(json!({"hooks": {"poststop": [{"path": "/x", "timeout": "5"}]}}),
        r#"hooks.poststop[0].timeout is invalid: invalid type: string "5", expected i64"#)]
    #[case::annotation_not_string(json!({"annotations": {"a": 1}}),
        r#"annotations["a"] is invalid: invalid type: integer `1`, expected a string"#)]
    #[case::resources_bad(json!({"linux": {"resources": {"pids": {"limit": "many"}}}}),
        r#"linux.resources is invalid: invalid type: string "many", expected i64"#)]
    fn type_errors_name_the_field(#[case] patch: Value, #[case] expected: &str) {
        assert_eq!(run(patch), Err(expected.to_string()));
    }

    #[test]
    fn missing_config_json() {
        let bundle = Bundle::new();
        let err = load_bundle_config(bundle.path()).unwrap_err();
        assert_eq!(err.field, "config.json");
        assert_eq!(
            err.to_string(),
            format!(
                "config.json does not exist in bundle {}",
                bundle.path().display()
            )
        );
    }

    #[test]
    fn missing_bundle_directory() {
        let bundle = Bundle::new();
        let gone = bundle.path().join("no-such-bundle");
        let err = load_bundle_config(&gone).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("config.json does not exist in bundle {}", gone.display())
        );
    }

    #[test]
    fn unreadable_config_json() {
        let bundle = Bundle::new();
        fs::create_dir(bundle.path().join("config.json")).expect("mkdir config.json");
        let err = load_bundle_config(bundle.path()).unwrap_err();
        assert_eq!(err.field, "config.json");
        let expected = format!(
            "config.json cannot be read ({}): ",
            bundle.path().join("config.json").display()
        );
        assert!(err.to_string().starts_with(&expected), "{err}");
    }

    #[rstest]
    #[case::syntax(
        "{\n  \"ociVersion\": \"1.0.0\",\n  \"root\": \n}\n",
        "config.json is not valid JSON: expected value at line 4 column 1"
    )]
    #[case::trailing_comma(
        "{\"ociVersion\": \"1.0.0\",}",
        "config.json is not valid JSON: trailing comma at line 1 column 24"
    )]
    #[case::truncated(
        "{\"ociVersion\": \"1.0.0\"",
        "config.json is not valid JSON: EOF while parsing an object at line 1 column 22"
    )]
    #[case::empty(
        "",
        "config.json is not valid JSON: EOF while parsing a value at line 1 column 0"
    )]
    #[case::not_object("[1, 2]", "config.json must hold a JSON object, not an array")]
    #[case::null("null", "config.json must hold a JSON object, not null")]
    fn load_errors(#[case] text: &str, #[case] expected: &str) {
        let bundle = Bundle::new();
        bundle.write(text);
        assert_eq!(
            load_bundle_config(bundle.path())
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(expected.to_string())
        );
    }

    #[test]
    fn invalid_utf8_is_a_json_error() {
        let bundle = Bundle::new();
        fs::write(
            bundle.path().join("config.json"),
            b"{\"ociVersion\": \"1.0.0\", \"hostname\": \"\xff\"}",
        )
        .expect("write");
        let err = load_bundle_config(bundle.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.json is not valid JSON: invalid unicode code point at line 1 column 38"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let bundle = Bundle::new();
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        bundle.write(&text);
        let err = load_bundle_config(bundle.path()).unwrap_err();
        assert!(
            err.to_string().contains("recursion limit exceeded"),
            "{err}"
        );
    }

    #[test]
    fn rootfs_must_exist_and_be_a_directory() {
        let bundle = Bundle::new();
        bundle.write(&base().to_string());
        let spec = load_bundle_config(bundle.path()).expect("load");
        assert_eq!(validate(&spec, bundle.path()), Ok(()));

        fs::remove_dir(bundle.path().join("rootfs")).expect("rmdir");
        let full = bundle.path().join("rootfs");
        assert_eq!(
            validate(&spec, bundle.path()).unwrap_err().to_string(),
            format!("root.path \"rootfs\" does not exist ({})", full.display())
        );

        fs::write(&full, "not a dir").expect("write file");
        assert_eq!(
            validate(&spec, bundle.path()).unwrap_err().to_string(),
            format!(
                "root.path \"rootfs\" is not a directory ({})",
                full.display()
            )
        );
    }

    #[test]
    fn relative_root_path_resolves_against_the_bundle() {
        let bundle = Bundle::new();
        fs::create_dir_all(bundle.path().join("images/alpine")).expect("mkdir");
        let mut config = base();
        merge(&mut config, &json!({"root": {"path": "images/alpine"}}));
        bundle.write(&config.to_string());
        let spec = load_bundle_config(bundle.path()).expect("load");
        assert_eq!(validate(&spec, bundle.path()), Ok(()));
        // The same config against another bundle directory does not find it.
        let other = Bundle::new();
        let err = validate(&spec, other.path()).unwrap_err();
        assert_eq!(err.field, "root.path");
    }

    #[test]
    fn first_error_in_document_order_wins() {
        // Broken: mounts, process.cwd, hostname (no uts), hooks. mounts comes first.
        let patch = json!({
            "mounts": [{"destination": "rel"}],
            "process": {"cwd": "rel"},
            "linux": {"namespaces": [{"type": "mount"}], "sysctl": null},
            "hooks": {"prestart": [{"path": "rel"}]}
        });
        assert_eq!(
            run(patch.clone()),
            Err(r#"mounts[0].destination "rel": must be an absolute path"#.into())
        );
        let mut fewer = patch;
        fewer["mounts"] = json!([]);
        assert_eq!(
            run(fewer.clone()),
            Err(r#"process.cwd "rel": must be an absolute path"#.into())
        );
        fewer["process"]["cwd"] = json!("/");
        assert_eq!(
            run(fewer.clone()),
            Err(r#"hostname requires a "uts" entry in linux.namespaces"#.into())
        );
        fewer["hostname"] = Value::Null;
        fewer["domainname"] = Value::Null;
        assert_eq!(
            run(fewer),
            Err("hooks.prestart[0].path must be absolute".into())
        );
    }

    #[test]
    fn validate_checks_programmatic_specs_too() {
        // A Spec built in code (not parsed) goes through the same rules.
        let bundle = Bundle::new();
        bundle.write(&base().to_string());
        let mut spec = load_bundle_config(bundle.path()).expect("load");
        let mut process = spec.process().clone().expect("process");
        process.set_cwd(PathBuf::from("relative/dir"));
        spec.set_process(Some(process));
        let err = validate(&spec, bundle.path()).unwrap_err();
        assert_eq!(
            err,
            ConfigError {
                field: "process.cwd".into(),
                reason: r#""relative/dir": must be an absolute path"#.into()
            }
        );
    }

    #[rstest]
    #[case("1.0.0", Some(1))]
    #[case("1.2.3-alpha.1", Some(1))]
    #[case("1.2.3-0.3.7", Some(1))]
    #[case("1.2.3-x.7.z.92+exp.sha.5114f85", Some(1))]
    #[case("10.20.30+build.01", Some(10))]
    #[case("1.0.0-alpha-beta", Some(1))]
    #[case("1.0.0-01", None)]
    #[case("1.0", None)]
    #[case("1.0.0.0", None)]
    #[case("01.0.0", None)]
    #[case("v1.0.0", None)]
    #[case("1.0.0+", None)]
    #[case("1.0.0-a..b", None)]
    #[case("1.0.0-é", None)]
    #[case("99999999999999999999999.0.0", None)]
    fn semver_parsing(#[case] version: &str, #[case] major: Option<u64>) {
        assert_eq!(semver_major(version), major);
    }

    #[test]
    fn spec_spellings_reach_oci_spec() {
        let mut v = serde_json::json!({
            "process": {"scheduler": {"policy": "SCHED_DEADLINE",
                "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_RECLAIM"]}},
            "linux": {"intelRdt": {"enableCMT": true, "enableMBM": false}}
        });
        // As written by the spec, oci-spec refuses the flags.
        assert!(
            serde_json::from_value::<oci_spec::runtime::Scheduler>(
                v["process"]["scheduler"].clone()
            )
            .is_err()
        );
        fix_oci_spec_spellings(&mut v);
        let s: oci_spec::runtime::Scheduler =
            serde_json::from_value(v["process"]["scheduler"].clone()).expect("flags");
        assert_eq!(
            s.flags().as_deref(),
            Some(
                &[
                    oci_spec::runtime::LinuxSchedulerFlag::SchedResetOnFork,
                    oci_spec::runtime::LinuxSchedulerFlag::SchedFlagDLOverrun,
                    oci_spec::runtime::LinuxSchedulerFlag::SchedFlagReclaim
                ][..]
            )
        );
        let rdt: oci_spec::runtime::LinuxIntelRdt =
            serde_json::from_value(v["linux"]["intelRdt"].clone()).expect("rdt");
        #[allow(deprecated)]
        let got = (*rdt.enable_cmt(), *rdt.enable_mbm());
        assert_eq!(got, (Some(true), Some(false)));
        // A config without these parts is left alone.
        let mut other = serde_json::json!({"process": {"args": ["sh"]}});
        let before = other.clone();
        fix_oci_spec_spellings(&mut other);
        assert_eq!(other, before);
    }
}
