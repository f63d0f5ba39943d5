//! Reading and writing cgroup files, with errors naming the file and value.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{CgroupError, Result};

/// Writes `value` to the cgroup file `dir/file` in a single `write(2)`.
///
/// The file must exist (cgroup files are never created); it is truncated so
/// that the same code works on a fake tree in a temporary directory.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    let err = |source| CgroupError::Write {
        path: path.clone(),
        value: value.to_string(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(err)?;
    let n = f.write(value.as_bytes()).map_err(err)?;
    if n != value.len() {
        return Err(err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write ({n} of {} bytes)", value.len()),
        )));
    }
    Ok(())
}

/// A cgroup file opened once for several writes, each taken by the kernel as one value (a
/// device rule per write to v1's `devices.allow`, say): one open for all of them.
pub(crate) struct Writer {
    path: PathBuf,
    file: std::fs::File,
}

impl Writer {
    /// Opens `dir/file` for writing.
    pub(crate) fn open(dir: &Path, file: &str) -> Result<Self> {
        let path = dir.join(file);
        match OpenOptions::new().write(true).open(&path) {
            Ok(file) => Ok(Writer { path, file }),
            Err(source) => Err(CgroupError::Write {
                path,
                value: String::new(),
                source,
            }),
        }
    }

    /// Writes `value` in one `write`.
    pub(crate) fn write(&mut self, value: &str) -> Result<()> {
        let err = |source| CgroupError::Write {
            path: self.path.clone(),
            value: value.to_string(),
            source,
        };
        let n = self.file.write(value.as_bytes()).map_err(err)?;
        if n != value.len() {
            return Err(err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write ({n} of {} bytes)", value.len()),
            )));
        }
        Ok(())
    }
}

/// Reads the cgroup file `dir/file`.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    berth_sys::fs::read_virtual(&path).map_err(|source| CgroupError::Read { path, source })
}

/// Reads `dir/file` if it exists.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    let path = dir.join(file);
    match berth_sys::fs::read_virtual(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read { path, source }),
    }
}

/// Whether `dir/file` exists.
pub(crate) fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// Parses a single number (`max` is `u64::MAX`).
pub(crate) fn parse_u64(dir: &Path, file: &str, text: &str) -> Result<u64> {
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse().map_err(|_| CgroupError::Content {
        path: dir.join(file),
        content: t.to_string(),
    })
}

/// Reads a file holding a single number (`max` is `u64::MAX`).
pub(crate) fn read_u64(dir: &Path, file: &str) -> Result<u64> {
    parse_u64(dir, file, &read(dir, file)?)
}

/// Reads a single number if the file exists.
pub(crate) fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>> {
    match read_opt(dir, file)? {
        Some(t) => parse_u64(dir, file, &t).map(Some),
        None => Ok(None),
    }
}

/// Parses `key value` lines (memory.stat, cpu.stat, memory.events...).
pub(crate) fn parse_flat_keyed(dir: &Path, file: &str, text: &str) -> Result<Vec<(String, u64)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            match (it.next(), it.next()) {
                (Some(k), Some(v)) => Ok((k.to_string(), parse_u64(dir, file, v)?)),
                _ => Err(CgroupError::Content {
                    path: dir.join(file),
                    content: l.to_string(),
                }),
            }
        })
        .collect()
}

/// The sub-cgroups of `dir` (its directories), not recursive; none if it is gone.
pub(crate) fn sub_cgroups(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// The pids of `dir` and of every cgroup below it (`runc exec --cgroup` puts processes in
/// sub-cgroups of a container's).
pub(crate) fn read_procs_tree(dir: &Path) -> Result<Vec<i32>> {
    let mut pids = read_procs(dir)?;
    for sub in sub_cgroups(dir) {
        match read_procs_tree(&sub) {
            Ok(p) => pids.extend(p),
            // Removed meanwhile.
            Err(CgroupError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(pids)
}

/// The pids listed in `dir/cgroup.procs`.
pub(crate) fn read_procs(dir: &Path) -> Result<Vec<i32>> {
    let text = read(dir, "cgroup.procs")?;
    text.split_whitespace()
        .map(|p| {
            p.parse().map_err(|_| CgroupError::Content {
                path: dir.join("cgroup.procs"),
                content: p.to_string(),
            })
        })
        .collect()
}
