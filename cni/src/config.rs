//! Network configuration lists: loading `.conflist`, `.conf` and `.json` files and
//! checking them against the spec.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::CniError;

/// The `cniVersion`s this crate speaks (those of containernetworking-plugins 1.1).
pub const SUPPORTED_VERSIONS: [&str; 6] = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// One plugin of a [`NetworkList`]: its `type` (the binary's name), the capabilities it
/// declares, and its whole configuration object as written.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    plugin_type: String,
    capabilities: Vec<String>,
    raw: Map<String, Value>,
}

impl PluginConf {
    /// The plugin's `type`: the name of its binary in the plugin directories.
    pub fn plugin_type(&self) -> &str {
        &self.plugin_type
    }

    /// The capabilities it declares true in `capabilities` (e.g. `portMappings`): only
    /// these keys of the runtime config reach it, as `runtimeConfig`.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// The plugin's configuration object, as in the file.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }
}

/// A network configuration list (a `.conflist`, or a single-plugin `.conf` wrapped into
/// one), validated: a `name` of letters, digits, `-`, `_` and `.`, a supported
/// `cniVersion`, and at least one plugin, each with a `type`.
///
/// ```
/// use berth_cni::NetworkList;
/// let list = NetworkList::parse(br#"{"cniVersion":"1.0.0","name":"pods",
///     "plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
///     "pods.conflist".as_ref())?;
/// assert_eq!(list.name(), "pods");
/// assert_eq!(list.plugins()[1].capabilities(), ["portMappings"]);
/// # Ok::<(), berth_cni::CniError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    name: String,
    cni_version: String,
    disable_check: bool,
    plugins: Vec<PluginConf>,
    source: PathBuf,
    raw: Value,
}

impl NetworkList {
    /// The network's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its `cniVersion`.
    pub fn cni_version(&self) -> &str {
        &self.cni_version
    }

    /// Whether it says `disableCheck: true` (CHECK is then skipped).
    pub fn disable_check(&self) -> bool {
        self.disable_check
    }

    /// Its plugins, in ADD order.
    pub fn plugins(&self) -> &[PluginConf] {
        &self.plugins
    }

    /// The file it came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The list as JSON (a `.conf` file already wrapped: `{cniVersion, name, plugins}`).
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Reads one config file: a `.conflist` as is, a `.conf` or `.json` (a single
    /// plugin's config) wrapped into a list of one.
    ///
    /// # Errors
    /// [`CniError::ReadConfig`], or [`CniError::InvalidConfig`] naming the file and field.
    pub fn load(path: &Path) -> Result<Self, CniError> {
        let bytes = fs::read(path).map_err(|source| CniError::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes, path)
    }

    /// Parses a config file's text; `source` names it in errors and decides the kind
    /// (a `.conflist` extension means a list, anything else a single plugin's config).
    ///
    /// # Errors
    /// [`CniError::InvalidConfig`] naming `source` and the field at fault.
    pub fn parse(bytes: &[u8], source: &Path) -> Result<Self, CniError> {
        let bad = |reason: String| CniError::InvalidConfig {
            path: source.to_owned(),
            reason,
        };
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let Value::Object(mut obj) = v else {
            return Err(bad("not a JSON object".into()));
        };
        let is_list = source.extension().is_some_and(|e| e == "conflist");
        if !is_list {
            if obj.contains_key("plugins") {
                return Err(bad(
                    "has \"plugins\": a config list must be a .conflist file".into(),
                ));
            }
            let mut list = Map::new();
            for k in ["cniVersion", "name"] {
                if let Some(v) = obj.get(k) {
                    list.insert(k.into(), v.clone());
                }
            }
            obj.remove("cniVersion");
            list.insert("plugins".into(), Value::Array(vec![Value::Object(obj)]));
            obj = list;
        }
        Self::from_list_object(obj, source)
    }

    /// A list from its JSON object (as [`raw`](Self::raw) gives it back).
    pub(crate) fn from_list_object(
        obj: Map<String, Value>,
        source: &Path,
    ) -> Result<Self, CniError> {
        let bad = |reason: String| CniError::InvalidConfig {
            path: source.to_owned(),
            reason,
        };
        let name = match obj.get("name") {
            Some(Value::String(s)) if valid_name(s) => s.clone(),
            Some(Value::String(s)) => {
                return Err(bad(format!(
                    "name {s:?} must be non-empty letters, digits, '-', '_' and '.', starting with a letter or digit"
                )));
            }
            Some(_) => return Err(bad("name must be a string".into())),
            None => return Err(bad("name is missing".into())),
        };
        let cni_version = match obj.get("cniVersion") {
            Some(Value::String(s)) if SUPPORTED_VERSIONS.contains(&s.as_str()) => s.clone(),
            Some(Value::String(s)) => {
                return Err(bad(format!(
                    "cniVersion {s:?} is not supported (supported: {})",
                    SUPPORTED_VERSIONS.join(", ")
                )));
            }
            Some(_) => return Err(bad("cniVersion must be a string".into())),
            None => return Err(bad("cniVersion is missing".into())),
        };
        let disable_check = match obj.get("disableCheck") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(_) => return Err(bad("disableCheck must be a boolean".into())),
        };
        let Some(Value::Array(items)) = obj.get("plugins") else {
            return Err(bad("plugins must be an array".into()));
        };
        if items.is_empty() {
            return Err(bad("plugins is empty".into()));
        }
        let mut plugins = Vec::with_capacity(items.len());
        for (i, p) in items.iter().enumerate() {
            let Value::Object(p) = p else {
                return Err(bad(format!("plugins[{i}] is not an object")));
            };
            let plugin_type = match p.get("type") {
                Some(Value::String(t)) if valid_type(t) => t.clone(),
                Some(Value::String(t)) => {
                    return Err(bad(format!(
                        "plugins[{i}].type {t:?} is not a plugin binary name"
                    )));
                }
                Some(_) => return Err(bad(format!("plugins[{i}].type must be a string"))),
                None => return Err(bad(format!("plugins[{i}].type is missing"))),
            };
            let capabilities = match p.get("capabilities") {
                None => Vec::new(),
                Some(Value::Object(caps)) => caps
                    .iter()
                    .filter(|(_, on)| **on == Value::Bool(true))
                    .map(|(k, _)| k.clone())
                    .collect(),
                Some(_) => {
                    return Err(bad(format!("plugins[{i}].capabilities must be an object")));
                }
            };
            plugins.push(PluginConf {
                plugin_type,
                capabilities,
                raw: p.clone(),
            });
        }
        Ok(NetworkList {
            name,
            cni_version,
            disable_check,
            plugins,
            source: source.to_owned(),
            raw: Value::Object(obj),
        })
    }
}

/// Network names, container ids: letters, digits, `_`, `.`, `-`, starting with a letter
/// or digit (what libcni enforces, and safe as a cache path component).
pub(crate) fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn valid_type(t: &str) -> bool {
    !t.is_empty() && t != "." && t != ".." && !t.contains('/') && !t.contains('\0')
}

/// The first config of `conf_dir` by file name (`.conflist`, `.conf`, `.json`), loaded.
pub(crate) fn first_in(conf_dir: &Path) -> Result<Option<NetworkList>, CniError> {
    let rd = match fs::read_dir(conf_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CniError::ConfDir {
                path: conf_dir.to_owned(),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| CniError::ConfDir {
            path: conf_dir.to_owned(),
            source,
        })?;
        let p = entry.path();
        let ext_ok = p
            .extension()
            .is_some_and(|e| e == "conflist" || e == "conf" || e == "json");
        if ext_ok && p.is_file() {
            names.push(p);
        }
    }
    names.sort();
    match names.first() {
        Some(p) => NetworkList::load(p).map(Some),
        None => Ok(None),
    }
}
