//! The cached result of a setup: `cache_dir/<network>/<container_id>-<ifname>`, written
//! atomically, holding everything DEL and CHECK need (the config used, the result, the
//! CNI_ARGS and the runtime config).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CniError;

/// One cache entry.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    #[serde(rename = "ifName")]
    pub ifname: String,
    #[serde(rename = "networkName")]
    pub network: String,
    /// The network list used (as in [`NetworkList::raw`](crate::NetworkList::raw)).
    pub config: Value,
    /// Where it came from.
    pub source: PathBuf,
    pub result: Value,
    #[serde(rename = "cniArgs")]
    pub args: Vec<(String, String)>,
    #[serde(rename = "runtimeConfig")]
    pub runtime_config: Value,
}

pub(crate) const KIND: &str = "berth-cni-cache-v1";

fn file_name(container_id: &str, ifname: &str) -> String {
    format!("{container_id}-{ifname}")
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::Cache {
        path: path.to_owned(),
        reason: format!("{what}: {e}"),
    }
}

/// Writes `entry` atomically (a temp file renamed over it).
pub(crate) fn write(cache_dir: &Path, entry: &Entry) -> Result<PathBuf, CniError> {
    let dir = cache_dir.join(&entry.network);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| err(&dir, "creating", e))?;
    let target = dir.join(file_name(&entry.container_id, &entry.ifname));
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp{}-{}",
        file_name(&entry.container_id, &entry.ifname),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let bytes = serde_json::to_vec(entry).map_err(|e| err(&target, "encoding", e))?;
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &target)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(&target, "writing", e));
    }
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(target)
}

/// Finds the entry of a container's interface in any network's directory (the config
/// may have changed since the setup).
pub(crate) fn find(
    cache_dir: &Path,
    container_id: &str,
    ifname: &str,
) -> Result<Option<(PathBuf, Entry)>, CniError> {
    let rd = match fs::read_dir(cache_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(cache_dir, "listing", e)),
    };
    let mut dirs: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    dirs.sort();
    for d in dirs {
        let p = d.join(file_name(container_id, ifname));
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                continue;
            }
            Err(e) => return Err(err(&p, "reading", e)),
        };
        let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| err(&p, "decoding", e))?;
        if entry.kind != KIND {
            return Err(err(
                &p,
                "decoding",
                format!("unknown kind {:?}", entry.kind),
            ));
        }
        return Ok(Some((p, entry)));
    }
    Ok(None)
}

/// Removes an entry (missing is fine) and its network's directory once empty.
pub(crate) fn remove(path: &Path) -> Result<(), CniError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(path, "removing", e)),
    }
    if let Some(d) = path.parent() {
        let _ = fs::remove_dir(d);
    }
    Ok(())
}
