//! Random access to the members of an uncompressed tar file (OCI archives, docker-archives).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{ImageError, Result};

/// One member of the archive.
#[derive(Debug, Clone)]
enum Member {
    /// File data at `offset`, `size` bytes long.
    File { offset: u64, size: u64 },
    /// A symbolic link (target relative to the member's directory, or absolute in the archive).
    Symlink(String),
    /// A hard link to another member.
    Hardlink(String),
    /// A directory or anything else that has no data.
    Other,
}

/// The index of an archive: member path -> where its data is.
#[derive(Debug)]
pub(crate) struct TarIndex {
    path: PathBuf,
    file: Arc<File>,
    members: HashMap<String, Member>,
}

/// A member's data: reads with `pread`, so several can be read at once from one file.
pub(crate) struct Slice {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside a member",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// `./a//b/` -> `a/b`.
pub(crate) fn clean(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

impl TarIndex {
    /// Reads every header of the archive at `path` (skipping the data).
    pub(crate) fn open(path: &Path) -> Result<TarIndex> {
        let file = File::open(path).map_err(|e| ImageError::io("open", path, e))?;
        let mut magic = [0u8; 4];
        let n = file
            .read_at(&mut magic, 0)
            .map_err(|e| ImageError::io("read", path, e))?;
        if n >= 2 && magic[..2] == [0x1f, 0x8b] || n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(ImageError::BadSource {
                path: path.to_path_buf(),
                reason: "a compressed archive: decompress it first (berth reads uncompressed \
                         OCI and docker archives)"
                    .into(),
            });
        }
        let bad = |e: io::Error| ImageError::BadSource {
            path: path.to_path_buf(),
            reason: format!("not a readable tar archive: {e}"),
        };
        let mut members = HashMap::new();
        let mut archive = tar::Archive::new(&file);
        let entries = archive.entries_with_seek().map_err(bad)?;
        for entry in entries {
            let entry = entry.map_err(bad)?;
            let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
            let kind = entry.header().entry_type();
            let link = || {
                entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default()
            };
            let member = if kind.is_file() || kind == tar::EntryType::Continuous {
                Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                }
            } else if kind.is_symlink() {
                Member::Symlink(link())
            } else if kind.is_hard_link() {
                Member::Hardlink(clean(&link()))
            } else {
                Member::Other
            };
            members.insert(name, member);
        }
        let len = file
            .metadata()
            .map_err(|e| ImageError::io("stat", path, e))?
            .len();
        // Every member's data must be inside the file: a truncated archive fails here, not
        // half-way through an unpack.
        for (name, m) in &members {
            if let Member::File { offset, size } = m {
                if offset.saturating_add(*size) > len {
                    return Err(ImageError::BadSource {
                        path: path.to_path_buf(),
                        reason: format!("truncated: member {name:?} ends past the end of the file"),
                    });
                }
            }
        }
        Ok(TarIndex {
            path: path.to_path_buf(),
            file: Arc::new(file),
            members,
        })
    }

    /// Does the archive hold a member with this (cleaned) name?
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.members.contains_key(&clean(name))
    }

    /// The archive file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a file member, following links inside the archive. `None` if there is none.
    pub(crate) fn open_member(&self, name: &str) -> Result<Option<(Slice, u64)>> {
        let mut name = clean(name);
        for _ in 0..16 {
            match self.members.get(&name) {
                None => return Ok(None),
                Some(Member::File { offset, size }) => {
                    return Ok(Some((
                        Slice {
                            file: Arc::clone(&self.file),
                            pos: *offset,
                            end: offset + size,
                        },
                        *size,
                    )));
                }
                Some(Member::Hardlink(target)) => name = target.clone(),
                Some(Member::Symlink(target)) => {
                    name = if target.starts_with('/') {
                        clean(target)
                    } else {
                        let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        clean(&format!("{dir}/{target}"))
                    };
                }
                Some(Member::Other) => {
                    return Err(ImageError::BadSource {
                        path: self.path.clone(),
                        reason: format!("member {name:?} is not a file"),
                    });
                }
            }
        }
        Err(ImageError::BadSource {
            path: self.path.clone(),
            reason: format!("member {name:?}: too many levels of links"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_names() {
        assert_eq!(clean("./blobs//sha256/x"), "blobs/sha256/x");
        assert_eq!(clean("/a/../../b/"), "b");
        assert_eq!(clean("."), "");
    }
}
