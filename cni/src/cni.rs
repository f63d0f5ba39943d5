//! [`Cni`]: one network (the first config of a directory) set up, checked and torn down
//! for a container's network namespace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::cache;
use crate::config::{self, NetworkList, PluginConf};
use crate::error::CniError;
use crate::exec;
use crate::result::CniResult;

/// How long one plugin may run before it is killed, unless [`Cni::with_timeout`] says
/// otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The runtime's side of CNI: the network config of `conf_dir`, the plugins of
/// `bin_dirs`, and the results cached under `cache_dir` for DEL and CHECK.
///
/// Blocking: each call runs plugin processes and waits for them (from async code, call
/// it on a blocking thread).
///
/// ```no_run
/// use berth_cni::Cni;
/// use std::path::Path;
///
/// let cni = Cni::new("/etc/cni/net.d", vec!["/usr/lib/cni".into()], "/var/lib/berth/cni");
/// cni.status()?; // NetworkReady
/// let args = [("K8S_POD_NAMESPACE".to_owned(), "default".to_owned()),
///             ("K8S_POD_NAME".to_owned(), "web".to_owned())];
/// let result = cni.setup("abc123", Path::new("/run/berth/pods/abc123/net"), "eth0",
///                        &args, serde_json::json!({"portMappings": []}))?;
/// println!("pod IPs: {:?}", result.ip_of("eth0"));
/// cni.teardown("abc123", Some(Path::new("/run/berth/pods/abc123/net")), "eth0")?;
/// # Ok::<(), berth_cni::CniError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Cni {
    conf_dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
    timeout: Duration,
}

/// The three commands the runtime sends.
#[derive(Clone, Copy)]
enum Command {
    Add,
    Del,
    Check,
}

impl Command {
    fn name(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

/// What one chain run needs besides the list.
struct Target<'a> {
    container_id: &'a str,
    netns: Option<&'a Path>,
    ifname: &'a str,
    args: String,
    runtime_config: &'a Map<String, Value>,
}

impl Cni {
    /// A CNI runtime reading configs from `conf_dir`, plugins from `bin_dirs` (searched in
    /// order, and passed to plugins as `CNI_PATH`) and keeping results in `cache_dir`.
    /// Nothing is read until a method is called.
    pub fn new(
        conf_dir: impl Into<PathBuf>,
        bin_dirs: Vec<PathBuf>,
        cache_dir: impl Into<PathBuf>,
    ) -> Self {
        Cni {
            conf_dir: conf_dir.into(),
            bin_dirs,
            cache_dir: cache_dir.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same with another per-plugin timeout (a plugin still running then is killed,
    /// with its process group).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The network: the first config file of the config directory by file name
    /// (`.conflist`, or a `.conf`/`.json` single-plugin config wrapped into a list),
    /// validated; `None` when there is none (or no directory). Read anew on every call.
    ///
    /// # Errors
    /// [`CniError::ConfDir`], [`CniError::ReadConfig`], [`CniError::InvalidConfig`]
    /// naming the file.
    pub fn network(&self) -> Result<Option<NetworkList>, CniError> {
        config::first_in(&self.conf_dir)
    }

    /// Whether the network is ready (CRI's `NetworkReady`): a config exists and every
    /// plugin it names is found in the plugin directories.
    ///
    /// # Errors
    /// Why not: [`CniError::NoNetwork`], [`CniError::PluginNotFound`], or the config's
    /// own error.
    pub fn status(&self) -> Result<(), CniError> {
        let list = self.require_network()?;
        self.binaries(&list).map(drop)
    }

    /// Adds the container's namespace `netns` to the network as interface `ifname`: ADD
    /// of each plugin in order, each given the previous one's result. `args` become
    /// `CNI_ARGS` (e.g. `K8S_POD_NAMESPACE`, `K8S_POD_NAME`,
    /// `K8S_POD_INFRA_CONTAINER_ID`, `IgnoreUnknown=1`); the keys of `runtime_config`
    /// (an object or null: capability args such as `portMappings`) reach only the
    /// plugins that declare them in `capabilities`, as `runtimeConfig`.
    ///
    /// The result (and the config used) is cached for [`teardown`](Self::teardown) and
    /// [`check`](Self::check). If a plugin fails, those already run (and the failing
    /// one) get a DEL, best effort, and the plugin's error is returned.
    ///
    /// # Errors
    /// [`CniError::InvalidArgument`], [`CniError::NoNetwork`],
    /// [`CniError::PluginNotFound`], [`CniError::Plugin`] (its `code`, `msg`,
    /// `details`), [`CniError::Timeout`], [`CniError::InvalidResult`],
    /// [`CniError::Cache`], or the config's error.
    pub fn setup(
        &self,
        container_id: &str,
        netns: &Path,
        ifname: &str,
        args: &[(String, String)],
        runtime_config: Value,
    ) -> Result<CniResult, CniError> {
        check_ids(container_id, ifname)?;
        let args_text = join_args(args)?;
        let rc = match runtime_config {
            Value::Null => Map::new(),
            Value::Object(m) => m,
            other => {
                return Err(CniError::InvalidArgument {
                    what: "runtime config",
                    value: other.to_string(),
                    reason: "must be a JSON object (or null)",
                });
            }
        };
        let list = self.require_network()?;
        let binaries = self.binaries(&list)?;
        let target = Target {
            container_id,
            netns: Some(netns),
            ifname,
            args: args_text,
            runtime_config: &rc,
        };

        let mut prev: Option<Value> = None;
        for (i, (plugin, bin)) in list.plugins().iter().zip(&binaries).enumerate() {
            let out = self.call(&list, plugin, bin, Command::Add, &target, prev.as_ref());
            let parsed = out.and_then(|stdout| {
                if stdout.iter().all(u8::is_ascii_whitespace) {
                    return prev.clone().ok_or_else(|| CniError::InvalidResult {
                        network: list.name().to_owned(),
                        plugin: plugin.plugin_type().to_owned(),
                        reason: "printed nothing".into(),
                    });
                }
                CniResult::parse(&stdout)
                    .map(|r| r.raw)
                    .map_err(|reason| CniError::InvalidResult {
                        network: list.name().to_owned(),
                        plugin: plugin.plugin_type().to_owned(),
                        reason,
                    })
            });
            match parsed {
                Ok(v) => prev = Some(v),
                Err(e) => {
                    let _ = self.del_chain(&list, &binaries[..=i], &target, prev.as_ref());
                    return Err(e);
                }
            }
        }
        let Some(raw) = prev else {
            return Err(CniError::InvalidConfig {
                path: list.source().to_owned(),
                reason: "plugins is empty".into(),
            });
        };
        // Parsed above already; cannot fail, but stay without a panic.
        let result = CniResult::from_value(raw.clone()).map_err(|reason| {
            let _ = self.del_chain(&list, &binaries, &target, Some(&raw));
            CniError::InvalidResult {
                network: list.name().to_owned(),
                plugin: list
                    .plugins()
                    .last()
                    .map(|p| p.plugin_type().to_owned())
                    .unwrap_or_default(),
                reason,
            }
        })?;
        let entry = cache::Entry {
            kind: cache::KIND.into(),
            container_id: container_id.into(),
            ifname: ifname.into(),
            network: list.name().into(),
            config: list.raw().clone(),
            source: list.source().to_owned(),
            result: raw.clone(),
            args: args.to_vec(),
            runtime_config: Value::Object(rc.clone()),
        };
        if let Err(e) = cache::write(&self.cache_dir, &entry) {
            let _ = self.del_chain(&list, &binaries, &target, Some(&raw));
            return Err(e);
        }
        Ok(result)
    }

    /// Takes the container's interface `ifname` out of the network: DEL of each plugin
    /// in reverse order, with the config, `CNI_ARGS`, runtime config and result cached
    /// by [`setup`](Self::setup), then the cache entry is removed. Idempotent: with no
    /// cache entry and no `netns` there is nothing to do; a `netns` that no longer
    /// exists is passed as an empty `CNI_NETNS` (plugins then release what they hold
    /// outside it, such as addresses). Without a cache entry the current config is
    /// used. Every plugin gets its DEL even when one fails; the first failure is returned
    /// and the cache entry is kept, so that teardown can be tried again.
    ///
    /// # Errors
    /// [`CniError::InvalidArgument`], [`CniError::PluginNotFound`],
    /// [`CniError::Plugin`], [`CniError::Timeout`], [`CniError::Cache`].
    pub fn teardown(
        &self,
        container_id: &str,
        netns: Option<&Path>,
        ifname: &str,
    ) -> Result<(), CniError> {
        check_ids(container_id, ifname)?;
        let netns = netns.filter(|p| p.exists());
        match cache::find(&self.cache_dir, container_id, ifname)? {
            Some((path, entry)) => {
                let (list, args, rc) = cached_list(&path, &entry)?;
                let binaries = self.binaries(&list)?;
                let target = Target {
                    container_id,
                    netns,
                    ifname,
                    args,
                    runtime_config: &rc,
                };
                self.del_chain(&list, &binaries, &target, Some(&entry.result))?;
                cache::remove(&path)
            }
            None => {
                let Some(netns) = netns else { return Ok(()) };
                let Some(list) = self.network()? else {
                    return Ok(());
                };
                let binaries = self.binaries(&list)?;
                let rc = Map::new();
                let target = Target {
                    container_id,
                    netns: Some(netns),
                    ifname,
                    args: String::new(),
                    runtime_config: &rc,
                };
                self.del_chain(&list, &binaries, &target, None)
            }
        }
    }

    /// Asks each plugin whether the container's network is still as set up (CHECK, in
    /// order, with the cached config and result). A network with `disableCheck` passes
    /// without a call.
    ///
    /// # Errors
    /// [`CniError::NotSetUp`] without a cached setup, [`CniError::CheckUnsupported`]
    /// for a cniVersion before 0.4.0, a plugin's [`CniError::Plugin`] error,
    /// [`CniError::PluginNotFound`], [`CniError::Timeout`].
    pub fn check(&self, container_id: &str, netns: &Path, ifname: &str) -> Result<(), CniError> {
        check_ids(container_id, ifname)?;
        let Some((path, entry)) = cache::find(&self.cache_dir, container_id, ifname)? else {
            return Err(CniError::NotSetUp {
                container_id: container_id.into(),
                ifname: ifname.into(),
            });
        };
        let (list, args, rc) = cached_list(&path, &entry)?;
        if !has_prev_result(list.cni_version()) {
            return Err(CniError::CheckUnsupported {
                network: list.name().into(),
                version: list.cni_version().into(),
            });
        }
        if list.disable_check() {
            return Ok(());
        }
        let binaries = self.binaries(&list)?;
        let target = Target {
            container_id,
            netns: Some(netns),
            ifname,
            args,
            runtime_config: &rc,
        };
        for (plugin, bin) in list.plugins().iter().zip(&binaries) {
            self.call(
                &list,
                plugin,
                bin,
                Command::Check,
                &target,
                Some(&entry.result),
            )?;
        }
        Ok(())
    }

    fn require_network(&self) -> Result<NetworkList, CniError> {
        self.network()?.ok_or_else(|| CniError::NoNetwork {
            conf_dir: self.conf_dir.clone(),
        })
    }

    /// Every plugin's binary, or the first one missing.
    fn binaries(&self, list: &NetworkList) -> Result<Vec<PathBuf>, CniError> {
        list.plugins()
            .iter()
            .map(|p| {
                exec::find(p.plugin_type(), &self.bin_dirs).ok_or_else(|| {
                    CniError::PluginNotFound {
                        network: list.name().into(),
                        plugin: p.plugin_type().into(),
                        dirs: self.bin_dirs.clone(),
                    }
                })
            })
            .collect()
    }

    /// DEL of `binaries`' plugins in reverse order; all run, the first error returned.
    fn del_chain(
        &self,
        list: &NetworkList,
        binaries: &[PathBuf],
        target: &Target<'_>,
        result: Option<&Value>,
    ) -> Result<(), CniError> {
        let prev = result.filter(|_| has_prev_result(list.cni_version()));
        let mut first = None;
        for (plugin, bin) in list.plugins().iter().zip(binaries).rev() {
            if let Err(e) = self.call(list, plugin, bin, Command::Del, target, prev) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn call(
        &self,
        list: &NetworkList,
        plugin: &PluginConf,
        binary: &Path,
        command: Command,
        target: &Target<'_>,
        prev: Option<&Value>,
    ) -> Result<Vec<u8>, CniError> {
        let stdin = plugin_config(list, plugin, prev, target.runtime_config);
        let cni_path = self
            .bin_dirs
            .iter()
            .map(|d| d.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":");
        exec::run(exec::Call {
            network: list.name(),
            plugin: plugin.plugin_type(),
            binary,
            command: command.name(),
            container_id: target.container_id,
            netns: target.netns,
            ifname: target.ifname,
            args: &target.args,
            cni_path: &cni_path,
            stdin,
            timeout: self.timeout,
        })
    }
}

/// The list, CNI_ARGS and runtime config a cache entry holds.
fn cached_list(
    path: &Path,
    entry: &cache::Entry,
) -> Result<(NetworkList, String, Map<String, Value>), CniError> {
    let Value::Object(obj) = entry.config.clone() else {
        return Err(CniError::Cache {
            path: path.to_owned(),
            reason: "config is not an object".into(),
        });
    };
    let list = NetworkList::from_list_object(obj, &entry.source)?;
    let args = join_args(&entry.args)?;
    let rc = match &entry.runtime_config {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    Ok((list, args, rc))
}

/// Whether DEL and CHECK get a `prevResult` (cniVersion 0.4.0 and later).
fn has_prev_result(version: &str) -> bool {
    !matches!(version, "0.1.0" | "0.2.0" | "0.3.0" | "0.3.1")
}

/// A plugin's stdin: its config with the list's `name` and `cniVersion`, the
/// `prevResult`, and the `runtimeConfig` of the capabilities it declares.
fn plugin_config(
    list: &NetworkList,
    plugin: &PluginConf,
    prev: Option<&Value>,
    runtime_config: &Map<String, Value>,
) -> Vec<u8> {
    let mut conf = plugin.raw().clone();
    conf.insert("name".into(), Value::String(list.name().into()));
    conf.insert(
        "cniVersion".into(),
        Value::String(list.cni_version().into()),
    );
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    let rc: Map<String, Value> = plugin
        .capabilities()
        .iter()
        .filter_map(|c| runtime_config.get(c).map(|v| (c.clone(), v.clone())))
        .collect();
    if !rc.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(rc));
    }
    // A map of JSON values always serializes.
    serde_json::to_vec(&Value::Object(conf)).unwrap_or_default()
}

fn check_ids(container_id: &str, ifname: &str) -> Result<(), CniError> {
    if !config::valid_name(container_id) {
        return Err(CniError::InvalidArgument {
            what: "container id",
            value: container_id.into(),
            reason: "must be letters, digits, '_', '.' and '-', starting with a letter or digit",
        });
    }
    let bad_if = ifname.is_empty()
        || ifname.len() > 15
        || ifname == "."
        || ifname == ".."
        || ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    if bad_if {
        return Err(CniError::InvalidArgument {
            what: "interface name",
            value: ifname.into(),
            reason: "must be 1-15 bytes without '/', ':' or whitespace",
        });
    }
    Ok(())
}

/// `CNI_ARGS`: `K=V;K=V`.
fn join_args(args: &[(String, String)]) -> Result<String, CniError> {
    let mut out = String::new();
    for (k, v) in args {
        if k.is_empty() || k.contains(['=', ';', '\0']) {
            return Err(CniError::InvalidArgument {
                what: "CNI_ARGS key",
                value: k.clone(),
                reason: "must be non-empty, without '=', ';' or NUL",
            });
        }
        if v.contains([';', '\0']) {
            return Err(CniError::InvalidArgument {
                what: "CNI_ARGS value",
                value: v.clone(),
                reason: "must not contain ';' or NUL",
            });
        }
        if !out.is_empty() {
            out.push(';');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    Ok(out)
}
