//! Applying the entries of a layer's tar stream to a directory, confined to it.
//!
//! Every path is resolved from a descriptor of the target directory: parents with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` (so `..` and symlinks, absolute or
//! relative, from this layer or a lower one, stay inside), the last component with `*at`
//! calls that never follow it (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `O_EXCL` creation). An
//! existing entry is unlinked and created anew, never written through.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use crate::error::ImageError;
use crate::fsops;

/// Where the layer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// On top of the lower layers already in the directory: whiteouts remove.
    Rootfs,
    /// Alone into an empty directory of the layer store, in overlayfs' format: a whiteout
    /// becomes a 0/0 character device, an opaque directory gets `trusted.overlay.opaque=y`.
    LayerDir,
}

/// Something the unpack did differently from what the layer says, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The entry's path inside the rootfs.
    pub path: String,
    /// What was skipped or changed.
    pub message: String,
}

/// The xattr in which rootless unpacks record the owner a file should have (the format of
/// the rootlesscontainers.io proposal, as umoci writes it: a protobuf message with the uid
/// as field 1 and the gid as field 2, zero fields omitted).
pub const ROOTLESS_XATTR: &str = "user.rootlesscontainers";

const MAX_WARNINGS: usize = 1000;
const COPY_BUF: usize = 1 << 20;
const MAX_SYMLINK_HOPS: usize = 40;

/// Why an entry failed, before the layer and entry names are attached.
pub(crate) enum Fail {
    Sys(&'static str, Errno),
    Msg(String),
}

impl Fail {
    pub(crate) fn into_error(self, layer: &str, entry: &[u8]) -> ImageError {
        let entry = String::from_utf8_lossy(entry).into_owned();
        match self {
            Fail::Sys(call, errno) => ImageError::EntrySys {
                layer: layer.to_string(),
                entry,
                call,
                errno,
            },
            Fail::Msg(reason) => ImageError::Entry {
                layer: layer.to_string(),
                entry,
                reason,
            },
        }
    }
}

fn sys(call: &'static str) -> impl Fn(Errno) -> Fail {
    move |e| Fail::Sys(call, e)
}

fn msg(e: io::Error) -> Fail {
    Fail::Msg(e.to_string())
}

fn cstring(bytes: &[u8]) -> Result<CString, Fail> {
    CString::new(bytes).map_err(|_| Fail::Msg("name contains a NUL byte".into()))
}

/// A directory (path in the root) and the mtime and atime to give it.
type DirTime = (Vec<u8>, (i64, u32), (i64, u32));

/// Owner, mode and times of an entry.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
    atime: (i64, u32),
}

/// A parent directory: its descriptor and the gid new entries in it get (set if it is
/// setgid).
#[derive(Clone, Copy)]
struct Parent {
    fd: RawFd,
    inherit_gid: Option<u32>,
}

/// Lexically cleans a tar name into a path relative to the root: no leading `/`, no `.`,
/// `..` pops a component but never above the root.
pub(crate) fn normalize(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Fail> {
    out.clear();
    if raw.contains(&0) {
        return Err(Fail::Msg("name contains a NUL byte".into()));
    }
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(())
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Parses a PAX time (`1700000000.123456789`, possibly negative).
fn pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().ok()?;
    let mut nsec: u32 = 0;
    for (i, c) in frac.bytes().take(9).enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        nsec += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
    }
    if neg {
        if nsec > 0 {
            Some((-sec - 1, 1_000_000_000 - nsec))
        } else {
            Some((-sec, 0))
        }
    } else {
        Some((sec, nsec))
    }
}

fn id(v: u64, what: &str) -> Result<u32, Fail> {
    u32::try_from(v)
        .ok()
        .filter(|&v| v != u32::MAX)
        .ok_or_else(|| Fail::Msg(format!("{what} {v} is out of range")))
}

/// Decodes the base64 of libarchive's xattr values.
fn base64(v: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(v.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in v {
        let d = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(d);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Decodes libarchive's %-escaped xattr names.
fn unescape(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            if let Ok(h) = u8::from_str_radix(&String::from_utf8_lossy(&v[i + 1..i + 3]), 16) {
                out.push(h);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

/// The rootlesscontainers protobuf for an owner.
fn rootless_record(uid: u32, gid: u32) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u32) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::new();
    if uid != 0 {
        out.push(0x08);
        varint(&mut out, uid);
    }
    if gid != 0 {
        out.push(0x10);
        varint(&mut out, gid);
    }
    out
}

/// Applies layers, one entry at a time, to one directory.
pub(crate) struct Applier {
    root: OwnedFd,
    target: Target,
    rootless: bool,
    euid: u32,
    egid: u32,
    /// The process umask, if known: entries whose mode it leaves intact are created with
    /// their mode directly (one chmod less per file).
    umask: Option<u32>,
    root_inherit: Option<u32>,
    /// The last parent directory resolved (its lexical path and descriptor). `cache_valid`
    /// is cleared when something is removed; the descriptor stays open until the next
    /// lookup, so a `Parent` handed out for the current entry stays usable.
    cache_path: Vec<u8>,
    cache: Option<(OwnedFd, Option<u32>)>,
    cache_valid: bool,
    /// Paths created by the current layer (a whiteout only hides lower layers).
    layer_paths: HashSet<Vec<u8>>,
    /// Times of existing directories this layer changes without naming them, restored
    /// when the layer is complete (only the directories it names get new times).
    touched: HashSet<Vec<u8>>,
    restore_times: Vec<DirTime>,
    /// Directory times, set when the layer is complete.
    dir_times: Vec<DirTime>,
    /// Rootless: directories kept writable by their owner until the end.
    final_modes: Vec<(Vec<u8>, u32)>,
    /// LayerDir: the image's lower layers in the store, topmost first. Directories this
    /// layer needs but does not name take their attributes from there, as they would show
    /// through the overlay if the layer did not have them.
    lowers: Vec<OwnedFd>,
    /// LayerDir: a hard link of this layer points into a lower layer, so the stored layer
    /// depends on the layers under it (the store then keys it by chain id).
    links_into_lowers: bool,
    warnings: Vec<Warning>,
    dropped_warnings: usize,
    buf: Vec<u8>,
    norm: Vec<u8>,
    link: Vec<u8>,
    cname: Vec<u8>,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Applier {
    /// Whether a hard link of this layer points into a lower layer (LayerDir).
    pub(crate) fn links_into_lowers(&self) -> bool {
        self.links_into_lowers
    }

    /// `root` must be a directory descriptor (any access mode, `O_PATH` is fine).
    pub(crate) fn new(root: OwnedFd, target: Target, rootless: bool) -> Result<Applier, Fail> {
        let st = fsops::lstatat(root.as_raw_fd(), c"").map_err(sys("fstat"))?;
        Ok(Applier {
            root,
            target,
            rootless,
            euid: nix::unistd::geteuid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
            umask: read_umask(),
            root_inherit: (st.st_mode & libc::S_ISGID != 0).then_some(st.st_gid),
            cache_path: Vec::new(),
            cache: None,
            cache_valid: false,
            layer_paths: HashSet::new(),
            touched: HashSet::new(),
            restore_times: Vec::new(),
            dir_times: Vec::new(),
            final_modes: Vec::new(),
            lowers: Vec::new(),
            links_into_lowers: false,
            warnings: Vec::new(),
            dropped_warnings: 0,
            buf: vec![0; COPY_BUF],
            norm: Vec::new(),
            link: Vec::new(),
            cname: Vec::new(),
            xattrs: Vec::new(),
        })
    }

    /// LayerDir: sets the lower layers (topmost first) and gives the layer's root the
    /// attributes the lowers have for it.
    pub(crate) fn set_lowers(&mut self, lowers: Vec<OwnedFd>) -> Result<(), Fail> {
        self.lowers = lowers;
        let root = self.root.as_raw_fd();
        self.inherit_lower_attrs(root, c"", b"")
    }

    /// Gives a directory just created implicitly (not named by the layer) the attributes of
    /// the same directory in the topmost lower layer that has it, and keeps its times for
    /// the end of the layer.
    fn inherit_lower_attrs(&mut self, dir: RawFd, name: &CStr, path: &[u8]) -> Result<(), Fail> {
        let Some(st) = self.lower_dir_stat(path)? else {
            return Ok(());
        };
        let fd = if name.is_empty() {
            fsops::openat(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
        } else {
            fsops::openat(
                dir,
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )
        }
        .map_err(sys("openat"))?;
        if (st.st_uid, st.st_gid) != (self.euid, self.egid) {
            fsops::fchown(fd.as_raw_fd(), st.st_uid, st.st_gid).map_err(sys("fchown"))?;
        }
        fsops::fchmod(fd.as_raw_fd(), st.st_mode & 0o7777).map_err(sys("fchmod"))?;
        self.remember_times(path, &st);
        Ok(())
    }

    /// The directory (in the topmost lower layer that has the entry `dir/name`) holding
    /// it; `None` if no lower has it or a whiteout hides it.
    fn lower_entry_parent(&self, dir: &[u8], name: &CStr) -> Result<Option<OwnedFd>, Fail> {
        let c = if dir.is_empty() {
            c".".to_owned()
        } else {
            cstring(dir)?
        };
        for lower in &self.lowers {
            let fd = match fsops::open_in_root(
                lower.as_raw_fd(),
                &c,
                libc::O_PATH | libc::O_DIRECTORY,
            ) {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
                Err(e) => return Err(Fail::Sys("openat2", e)),
            };
            match fsops::lstatat(fd.as_raw_fd(), name) {
                Ok(st) => {
                    let whiteout = st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0;
                    return Ok((!whiteout).then_some(fd));
                }
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(Fail::Sys("fstatat", e)),
            }
        }
        Ok(None)
    }

    fn lower_dir_stat(&self, path: &[u8]) -> Result<Option<libc::stat>, Fail> {
        let c = if path.is_empty() {
            c".".to_owned()
        } else {
            cstring(path)?
        };
        for lower in &self.lowers {
            match fsops::open_in_root(lower.as_raw_fd(), &c, libc::O_PATH | libc::O_NOFOLLOW) {
                Ok(fd) => {
                    let st = fsops::lstatat(fd.as_raw_fd(), c"").map_err(sys("fstat"))?;
                    // A directory shows through; anything else (a whiteout) hides lower ones.
                    return Ok((st.st_mode & libc::S_IFMT == libc::S_IFDIR).then_some(st));
                }
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => {}
                Err(e) => return Err(Fail::Sys("openat2", e)),
            }
        }
        Ok(None)
    }

    /// The warnings so far, with a last one counting those dropped past the limit.
    pub(crate) fn take_warnings(&mut self) -> Vec<Warning> {
        let mut w = std::mem::take(&mut self.warnings);
        if self.dropped_warnings > 0 {
            w.push(Warning {
                path: String::new(),
                message: format!("{} more warnings not shown", self.dropped_warnings),
            });
            self.dropped_warnings = 0;
        }
        w
    }

    fn warn(&mut self, path: &[u8], message: impl Into<String>) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(Warning {
                path: format!("/{}", String::from_utf8_lossy(path)),
                message: message.into(),
            });
        } else {
            self.dropped_warnings += 1;
        }
    }

    fn invalidate(&mut self) {
        self.cache_valid = false;
    }

    /// The directory `path` (relative to the root), resolved inside the root. Missing
    /// directories are created (0755, owned by the unpacking user) if `create`, else `None`.
    fn parent(&mut self, path: &[u8], create: bool) -> Result<Option<Parent>, Fail> {
        if path.is_empty() {
            if !self.touched.contains(path) {
                let st = fsops::lstatat(self.root.as_raw_fd(), c"").map_err(sys("fstat"))?;
                self.remember_times(path, &st);
            }
            return Ok(Some(Parent {
                fd: self.root.as_raw_fd(),
                inherit_gid: self.root_inherit,
            }));
        }
        if self.cache_valid && self.cache_path == path {
            if let Some((fd, inherit)) = &self.cache {
                return Ok(Some(Parent {
                    fd: fd.as_raw_fd(),
                    inherit_gid: *inherit,
                }));
            }
        }
        let c = cstring(path)?;
        let fd = match fsops::open_in_root(
            self.root.as_raw_fd(),
            &c,
            libc::O_PATH | libc::O_DIRECTORY,
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => self.make_dirs(path, 0)?,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ENOTDIR) => {
                return Err(Fail::Msg(format!(
                    "parent {:?} is not a directory",
                    String::from_utf8_lossy(path)
                )));
            }
            Err(e) => return Err(Fail::Sys("openat2", e)),
        };
        let st = fsops::lstatat(fd.as_raw_fd(), c"").map_err(sys("fstat"))?;
        let inherit = (st.st_mode & libc::S_ISGID != 0).then_some(st.st_gid);
        if !self.touched.contains(path) {
            self.remember_times(path, &st);
        }
        let raw = fd.as_raw_fd();
        self.cache_path.clear();
        self.cache_path.extend_from_slice(path);
        self.cache = Some((fd, inherit));
        self.cache_valid = true;
        Ok(Some(Parent {
            fd: raw,
            inherit_gid: inherit,
        }))
    }

    fn remember_times(&mut self, path: &[u8], st: &libc::stat) {
        self.touched.insert(path.to_vec());
        self.restore_times.push((
            path.to_vec(),
            (st.st_mtime, st.st_mtime_nsec as u32),
            (st.st_atime, st.st_atime_nsec as u32),
        ));
    }

    /// Creates the missing directories of `path`, following symlinks met on the way as the
    /// kernel would inside the root (a dangling one is followed to create its target).
    fn make_dirs(&mut self, path: &[u8], hops: usize) -> Result<OwnedFd, Fail> {
        if hops > MAX_SYMLINK_HOPS {
            return Err(Fail::Sys("mkdirat", Errno::ELOOP));
        }
        let root = self.root.as_raw_fd();
        if path.is_empty() {
            return fsops::openat(root, c".", libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(sys("openat"));
        }
        let c = cstring(path)?;
        match fsops::open_in_root(root, &c, libc::O_PATH | libc::O_DIRECTORY) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(Fail::Sys("openat2", e)),
        }
        let (pp, last) = split(path);
        let pfd = self.make_dirs(pp, hops)?;
        let name = cstring(last)?;
        match fsops::mkdirat(pfd.as_raw_fd(), &name, 0o755) {
            Ok(()) => {
                // Exactly 0755 whatever the umask.
                let d = fsops::openat(
                    pfd.as_raw_fd(),
                    &name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )
                .map_err(sys("openat"))?;
                fsops::fchmod(d.as_raw_fd(), 0o755).map_err(sys("fchmod"))?;
                match self.target {
                    Target::Rootfs => {
                        self.layer_paths.insert(path.to_vec());
                    }
                    Target::LayerDir => self.inherit_lower_attrs(pfd.as_raw_fd(), &name, path)?,
                }
            }
            Err(Errno::EEXIST) => {
                // Not reachable by openat2 but present: a dangling symlink. Create what it
                // points to, inside the root.
                let st = fsops::lstatat(pfd.as_raw_fd(), &name).map_err(sys("fstatat"))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                    return Err(Fail::Msg(format!(
                        "{:?} exists and is not a directory",
                        String::from_utf8_lossy(path)
                    )));
                }
                let target =
                    fsops::readlinkat(pfd.as_raw_fd(), &name).map_err(sys("readlinkat"))?;
                let mut joined = Vec::new();
                if !target.starts_with(b"/") {
                    joined.extend_from_slice(pp);
                    joined.push(b'/');
                }
                joined.extend_from_slice(&target);
                let mut next = Vec::new();
                normalize(&joined, &mut next)?;
                return self.make_dirs(&next, hops + 1);
            }
            Err(e) => return Err(Fail::Sys("mkdirat", e)),
        }
        fsops::openat(
            pfd.as_raw_fd(),
            &name,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )
        .map_err(sys("openat"))
    }

    /// Removes whatever is at `name` (recursively), never following symlinks.
    fn remove(&mut self, dir: RawFd, name: &CStr) -> Result<(), Fail> {
        self.invalidate();
        fsops::remove_at(dir, name).map_err(sys("unlinkat"))
    }

    /// Would creating with `mode` give exactly `mode`?
    fn exact(&self, mode: u32) -> bool {
        mode <= 0o777 && self.umask.is_some_and(|u| mode & u == 0)
    }

    /// Does the entry need a chown after creation by us?
    fn needs_chown(&self, p: Parent, uid: u32, gid: u32) -> bool {
        uid != self.euid || gid != p.inherit_gid.unwrap_or(self.egid)
    }

    /// Applies one tar entry.
    pub(crate) fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), Fail> {
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            return Ok(());
        }
        // PAX records berth applies itself (tar handles path, linkpath and size).
        self.xattrs.clear();
        let (mut uid, mut gid, mut mtime, mut atime) = (None, None, None, None);
        if let Some(exts) = entry.pax_extensions().map_err(msg)? {
            for ext in exts {
                let ext = ext.map_err(msg)?;
                let (k, v) = (ext.key_bytes(), ext.value_bytes());
                let num = || {
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                };
                match k {
                    b"uid" => uid = Some(num().ok_or_else(|| Fail::Msg("bad PAX uid".into()))?),
                    b"gid" => gid = Some(num().ok_or_else(|| Fail::Msg("bad PAX gid".into()))?),
                    b"mtime" => mtime = pax_time(v),
                    b"atime" => atime = pax_time(v),
                    _ if k.starts_with(b"SCHILY.xattr.") => {
                        let name = cstring(&k[13..])?;
                        self.xattrs.push((name, v.to_vec()));
                    }
                    _ if k.starts_with(b"LIBARCHIVE.xattr.") => {
                        let name = cstring(&unescape(&k[17..]))?;
                        let value = base64(v)
                            .ok_or_else(|| Fail::Msg("bad base64 in a LIBARCHIVE.xattr".into()))?;
                        // SCHILY takes precedence when both are present.
                        if !self.xattrs.iter().any(|(n, _)| *n == name) {
                            self.xattrs.push((name, value));
                        }
                    }
                    _ if k.starts_with(b"GNU.sparse.") => {
                        return Err(Fail::Msg(
                            "PAX sparse files are not supported (repack the layer without \
                             sparse files)"
                                .into(),
                        ));
                    }
                    _ => {}
                }
            }
        }
        let h = entry.header();
        let hmtime = h.mtime().map_err(msg)?;
        let mtime = mtime.unwrap_or((i64::try_from(hmtime).unwrap_or(i64::MAX), 0));
        let meta = Meta {
            mode: h.mode().map_err(msg)? & 0o7777,
            uid: id(uid.map_or_else(|| h.uid(), Ok).map_err(msg)?, "uid")?,
            gid: id(gid.map_or_else(|| h.gid(), Ok).map_err(msg)?, "gid")?,
            mtime,
            atime: atime.unwrap_or(mtime),
        };
        let mut norm = std::mem::take(&mut self.norm);
        let mut link = std::mem::take(&mut self.link);
        let r = (|| {
            normalize(&entry.path_bytes(), &mut norm)?;
            if kind.is_hard_link() || kind.is_symlink() {
                let l = entry
                    .link_name_bytes()
                    .ok_or_else(|| Fail::Msg("link without a target".into()))?;
                link.clear();
                link.extend_from_slice(&l);
            }
            self.dispatch(entry, kind, &norm, &link, &meta)
        })();
        self.norm = norm;
        self.link = link;
        r
    }

    fn dispatch<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: tar::EntryType,
        path: &[u8],
        link: &[u8],
        meta: &Meta,
    ) -> Result<(), Fail> {
        use tar::EntryType as T;
        let (parent_path, name) = split(path);
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            return self.whiteout(parent_path, hidden);
        }
        if path.is_empty() {
            if kind != T::Directory {
                return Err(Fail::Msg(
                    "names the root directory but is not a directory".into(),
                ));
            }
            return self.root_dir(meta);
        }
        let p = self
            .parent(parent_path, true)?
            .ok_or_else(|| Fail::Msg("parent directory missing".into()))?;
        // The name, NUL-terminated in a buffer kept across entries.
        let mut cbuf = std::mem::take(&mut self.cname);
        cbuf.clear();
        cbuf.extend_from_slice(name);
        cbuf.push(0);
        let r = match CStr::from_bytes_with_nul(&cbuf) {
            Err(_) => Err(Fail::Msg("name contains a NUL byte".into())),
            Ok(cname) => match kind {
                T::Regular | T::Continuous | T::GNUSparse => self.file(entry, p, cname, path, meta),
                T::Directory => self.dir(p, cname, path, meta),
                T::Symlink => self.symlink(p, cname, path, link, meta),
                T::Link => self.hardlink(p, cname, link),
                T::Char | T::Block | T::Fifo => self.node(entry, kind, p, cname, path, meta),
                other => Err(Fail::Msg(format!(
                    "unsupported tar entry type {:?}",
                    other.as_byte() as char
                ))),
            },
        };
        self.cname = cbuf;
        r?;
        if self.target == Target::Rootfs {
            self.layer_paths.insert(path.to_vec());
        }
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        p: Parent,
        name: &CStr,
        path: &[u8],
        meta: &Meta,
    ) -> Result<(), Fail> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        // Rootless owner records need a writable inode until the xattr is set.
        let exact = !self.rootless && self.exact(meta.mode);
        let cmode = if exact { meta.mode } else { 0o600 };
        let fd = match fsops::openat(p.fd, name, flags, cmode) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => {
                self.remove(p.fd, name)?;
                fsops::openat(p.fd, name, flags, cmode).map_err(sys("openat"))?
            }
            Err(e) => return Err(Fail::Sys("openat", e)),
        };
        let mut buf = std::mem::take(&mut self.buf);
        let r = copy(entry, fd.as_raw_fd(), &mut buf);
        self.buf = buf;
        r?;
        let chown = self.needs_chown(p, meta.uid, meta.gid);
        self.meta_fd(fd.as_raw_fd(), false, chown, !exact, path, meta)?;
        fsops::futimens(fd.as_raw_fd(), meta.mtime, meta.atime).map_err(sys("futimens"))
    }

    /// Owner, xattrs and mode through a descriptor of a file or directory.
    #[allow(clippy::too_many_arguments)]
    fn meta_fd(
        &mut self,
        fd: RawFd,
        is_dir: bool,
        chown: bool,
        chmod: bool,
        path: &[u8],
        meta: &Meta,
    ) -> Result<(), Fail> {
        if self.rootless {
            if meta.uid != 0 || meta.gid != 0 {
                let rec = rootless_record(meta.uid, meta.gid);
                let attr = c"user.rootlesscontainers";
                if let Err(e) = fsops::fsetxattr(fd, attr, &rec) {
                    self.warn(
                        path,
                        format!("owner {}:{} not recorded: {e}", meta.uid, meta.gid),
                    );
                }
            }
        } else if chown {
            fsops::fchown(fd, meta.uid, meta.gid).map_err(sys("fchown"))?;
        }
        let xattrs = std::mem::take(&mut self.xattrs);
        let mut r = Ok(());
        for (n, v) in &xattrs {
            if let Err(e) = fsops::fsetxattr(fd, n, v) {
                r = self.xattr_failed(path, n, e);
                if r.is_err() {
                    break;
                }
            }
        }
        self.xattrs = xattrs;
        r?;
        if !chmod {
            return Ok(());
        }
        let mode = if is_dir && self.rootless {
            if meta.mode & 0o700 != 0o700 {
                self.final_modes.push((path.to_vec(), meta.mode));
            }
            meta.mode | 0o700
        } else {
            meta.mode
        };
        fsops::fchmod(fd, mode).map_err(sys("fchmod"))
    }

    fn xattr_failed(&mut self, path: &[u8], name: &CStr, e: Errno) -> Result<(), Fail> {
        if self.rootless && matches!(e, Errno::EPERM | Errno::EACCES | Errno::ENOTSUP) {
            self.warn(
                path,
                format!("xattr {} skipped: {e}", name.to_string_lossy()),
            );
            Ok(())
        } else {
            Err(Fail::Msg(format!(
                "set xattr {}: {e}",
                name.to_string_lossy()
            )))
        }
    }

    fn root_dir(&mut self, meta: &Meta) -> Result<(), Fail> {
        self.invalidate();
        let fd = fsops::openat(
            self.root.as_raw_fd(),
            c".",
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )
        .map_err(sys("openat"))?;
        let st = fsops::lstatat(fd.as_raw_fd(), c"").map_err(sys("fstat"))?;
        let chown = (st.st_uid, st.st_gid) != (meta.uid, meta.gid);
        self.meta_fd(fd.as_raw_fd(), true, chown, true, b"", meta)?;
        let st = fsops::lstatat(fd.as_raw_fd(), c"").map_err(sys("fstat"))?;
        self.root_inherit = (st.st_mode & libc::S_ISGID != 0).then_some(st.st_gid);
        self.dir_times.push((Vec::new(), meta.mtime, meta.atime));
        Ok(())
    }

    fn dir(&mut self, p: Parent, name: &CStr, path: &[u8], meta: &Meta) -> Result<(), Fail> {
        // Its mode and owner may change what entries below it inherit.
        self.invalidate();
        let mut existed = false;
        let exact = !self.rootless && self.exact(meta.mode);
        let cmode = if exact { meta.mode } else { 0o700 };
        match fsops::mkdirat(p.fd, name, cmode) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let st = fsops::lstatat(p.fd, name).map_err(sys("fstatat"))?;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    existed = true;
                } else {
                    // LayerDir: a directory replacing this layer's own whiteout of the same
                    // name must hide the lower layers' directory: make it opaque.
                    let whiteout = self.target == Target::LayerDir
                        && st.st_mode & libc::S_IFMT == libc::S_IFCHR
                        && st.st_rdev == 0;
                    self.remove(p.fd, name)?;
                    fsops::mkdirat(p.fd, name, cmode).map_err(sys("mkdirat"))?;
                    if whiteout {
                        set_opaque(p.fd, name)?;
                    }
                }
            }
            Err(e) => return Err(Fail::Sys("mkdirat", e)),
        }
        self.dir_times.push((path.to_vec(), meta.mtime, meta.atime));
        let new_chown = self.needs_chown(p, meta.uid, meta.gid);
        // A new directory created with its exact mode and owner, without xattrs, is done
        // (a setgid parent also passes its setgid bit on: then chmod).
        if !existed && exact && !new_chown && self.xattrs.is_empty() && p.inherit_gid.is_none() {
            return Ok(());
        }
        let fd = fsops::openat(
            p.fd,
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )
        .map_err(sys("openat"))?;
        let chown = if existed {
            let st = fsops::lstatat(fd.as_raw_fd(), c"").map_err(sys("fstat"))?;
            (st.st_uid, st.st_gid) != (meta.uid, meta.gid)
        } else {
            new_chown
        };
        self.meta_fd(fd.as_raw_fd(), true, chown, true, path, meta)
    }

    fn symlink(
        &mut self,
        p: Parent,
        name: &CStr,
        path: &[u8],
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), Fail> {
        let t = cstring(target)?;
        match fsops::symlinkat(&t, p.fd, name) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                self.remove(p.fd, name)?;
                fsops::symlinkat(&t, p.fd, name).map_err(sys("symlinkat"))?;
            }
            Err(e) => return Err(Fail::Sys("symlinkat", e)),
        }
        self.meta_at(p, name, path, meta, false)
    }

    /// Owner, xattrs, mode (unless a symlink) and times of a non-file by name.
    fn meta_at(
        &mut self,
        p: Parent,
        name: &CStr,
        path: &[u8],
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), Fail> {
        if self.rootless {
            if meta.uid != 0 || meta.gid != 0 {
                self.warn(
                    path,
                    format!(
                        "owner {}:{} not recorded (user xattrs are not allowed on this file type)",
                        meta.uid, meta.gid
                    ),
                );
            }
        } else if self.needs_chown(p, meta.uid, meta.gid) {
            fsops::lchownat(p.fd, name, meta.uid, meta.gid).map_err(sys("fchownat"))?;
        }
        let xattrs = std::mem::take(&mut self.xattrs);
        let mut r = Ok(());
        for (n, v) in &xattrs {
            if let Err(e) = fsops::lsetxattrat(p.fd, name, n, v) {
                r = self.xattr_failed(path, n, e);
                if r.is_err() {
                    break;
                }
            }
        }
        self.xattrs = xattrs;
        r?;
        if chmod {
            fsops::lchmodat(p.fd, name, meta.mode).map_err(sys("fchmodat"))?;
        }
        fsops::lutimesat(p.fd, name, meta.mtime, meta.atime).map_err(sys("utimensat"))
    }

    fn hardlink(&mut self, p: Parent, name: &CStr, target: &[u8]) -> Result<(), Fail> {
        let mut tnorm = Vec::with_capacity(target.len());
        normalize(target, &mut tnorm)?;
        if tnorm.is_empty() {
            return Err(Fail::Msg("hard link to the root directory".into()));
        }
        let (tp, tn) = split(&tnorm);
        let tname = cstring(tn)?;
        let mut tdir = if tp.is_empty() {
            None
        } else {
            let c = cstring(tp)?;
            match fsops::open_in_root(self.root.as_raw_fd(), &c, libc::O_PATH | libc::O_DIRECTORY) {
                Ok(fd) => Some(fd),
                Err(Errno::ENOENT) if self.target == Target::LayerDir => None,
                Err(e) => return Err(self.missing_target(target, "openat2", e)),
            }
        };
        let here = match &tdir {
            Some(fd) => fsops::lstatat(fd.as_raw_fd(), &tname).is_ok(),
            None if tp.is_empty() => fsops::lstatat(self.root.as_raw_fd(), &tname).is_ok(),
            None => false,
        };
        // LayerDir: a target of a lower layer is linked from the store's copy of that layer
        // (the same file system; store layers never change), as it shows through the overlay.
        if self.target == Target::LayerDir && !here {
            match self.lower_entry_parent(tp, &tname)? {
                Some(fd) => {
                    self.links_into_lowers = true;
                    tdir = Some(fd)
                }
                None => return Err(self.missing_target(target, "linkat", Errno::ENOENT)),
            }
        }
        let tfd = tdir
            .as_ref()
            .map_or(self.root.as_raw_fd(), |f| f.as_raw_fd());
        match fsops::linkat(tfd, &tname, p.fd, name) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => {
                let a = fsops::lstatat(tfd, &tname).map_err(sys("fstatat"))?;
                let b = fsops::lstatat(p.fd, name).map_err(sys("fstatat"))?;
                if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
                    return Ok(());
                }
                self.remove(p.fd, name)?;
                fsops::linkat(tfd, &tname, p.fd, name)
                    .map_err(|e| self.missing_target(target, "linkat", e))
            }
            Err(e) => Err(self.missing_target(target, "linkat", e)),
        }
    }

    fn missing_target(&self, target: &[u8], call: &'static str, e: Errno) -> Fail {
        let t = String::from_utf8_lossy(target);
        match e {
            Errno::ENOENT | Errno::ENOTDIR => Fail::Msg(match self.target {
                Target::Rootfs => format!("hard link target {t:?} does not exist"),
                Target::LayerDir => format!(
                    "hard link target {t:?} is not in this layer (the layer store keeps each \
                     layer apart)"
                ),
            }),
            Errno::EPERM => Fail::Msg(format!("hard link target {t:?} is a directory")),
            e => Fail::Sys(call, e),
        }
    }

    fn node<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        kind: tar::EntryType,
        p: Parent,
        name: &CStr,
        path: &[u8],
        meta: &Meta,
    ) -> Result<(), Fail> {
        let (fmt, what) = match kind {
            tar::EntryType::Char => (libc::S_IFCHR, "character device"),
            tar::EntryType::Block => (libc::S_IFBLK, "block device"),
            _ => (libc::S_IFIFO, "fifo"),
        };
        if self.rootless && fmt != libc::S_IFIFO {
            self.warn(
                path,
                format!("{what} skipped: rootless unpacks cannot create devices"),
            );
            return Ok(());
        }
        let h = entry.header();
        let dev = if fmt == libc::S_IFIFO {
            0
        } else {
            let major = h.device_major().map_err(msg)?.unwrap_or(0);
            let minor = h.device_minor().map_err(msg)?.unwrap_or(0);
            fsops::makedev(major, minor)
        };
        match fsops::mknodat(p.fd, name, fmt | 0o600, dev) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                self.remove(p.fd, name)?;
                fsops::mknodat(p.fd, name, fmt | 0o600, dev).map_err(sys("mknodat"))?;
            }
            Err(e) => return Err(Fail::Sys("mknodat", e)),
        }
        self.meta_at(p, name, path, meta, true)
    }

    /// `.wh.NAME` (hide NAME of the lower layers) and `.wh..wh..opq` (hide every lower
    /// entry of the directory).
    fn whiteout(&mut self, parent_path: &[u8], hidden: &[u8]) -> Result<(), Fail> {
        if hidden == b".wh..opq" {
            return self.opaque(parent_path);
        }
        if hidden.starts_with(b".wh.") {
            let mut p = parent_path.to_vec();
            p.extend_from_slice(b"/.wh.");
            p.extend_from_slice(hidden);
            self.warn(&p, "unknown special whiteout entry ignored");
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(Fail::Msg("whiteout of an invalid name".into()));
        }
        let mut full = parent_path.to_vec();
        if !full.is_empty() {
            full.push(b'/');
        }
        full.extend_from_slice(hidden);
        let name = cstring(hidden)?;
        match self.target {
            Target::Rootfs => {
                if self.layer_paths.contains(&full) {
                    return Ok(()); // created by this layer: not hidden by its own whiteout
                }
                let Some(p) = self.parent(parent_path, false)? else {
                    return Ok(()); // nothing there to hide
                };
                self.remove(p.fd, &name)
            }
            Target::LayerDir => {
                let p = self
                    .parent(parent_path, true)?
                    .ok_or_else(|| Fail::Msg("parent directory missing".into()))?;
                match fsops::mknodat(p.fd, &name, libc::S_IFCHR, 0) {
                    Ok(()) => Ok(()),
                    // Something of this layer has the name: the whiteout does not hide it,
                    // but a directory of this layer must still hide the lower ones' (opaque).
                    Err(Errno::EEXIST) => {
                        let st = fsops::lstatat(p.fd, &name).map_err(sys("fstatat"))?;
                        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                            set_opaque(p.fd, &name)?;
                        }
                        Ok(())
                    }
                    Err(e) => Err(Fail::Sys("mknodat", e)),
                }
            }
        }
    }

    fn opaque(&mut self, dir_path: &[u8]) -> Result<(), Fail> {
        // The directory is resolved like the parent of any entry in it (symlinks followed
        // inside the root), and created if the layer did not name it first.
        let d = self
            .parent(dir_path, true)?
            .ok_or_else(|| Fail::Msg("directory missing".into()))?;
        let dir = fsops::openat(d.fd, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(sys("openat"))?;
        match self.target {
            Target::LayerDir => fsops::fsetxattr(dir.as_raw_fd(), c"trusted.overlay.opaque", b"y")
                .map_err(sys("fsetxattr trusted.overlay.opaque")),
            Target::Rootfs => {
                let children = fsops::list_dir(dir.as_raw_fd()).map_err(sys("getdents"))?;
                let mut key = dir_path.to_vec();
                if !key.is_empty() {
                    key.push(b'/');
                }
                let base = key.len();
                for c in children {
                    key.truncate(base);
                    key.extend_from_slice(c.to_bytes());
                    if !self.layer_paths.contains(&key) {
                        self.remove(dir.as_raw_fd(), &c)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// End of a layer: directory times (now that nothing more is created in them).
    pub(crate) fn finish_layer(&mut self) -> Result<(), Fail> {
        let mut times = std::mem::take(&mut self.restore_times);
        times.append(&mut self.dir_times);
        for (path, mtime, atime) in &times {
            let (pp, last) = split(path);
            if path.is_empty() {
                fsops::lutimesat(self.root.as_raw_fd(), c"", *mtime, *atime)
                    .map_err(sys("utimensat"))?;
                continue;
            }
            let Some(p) = self.parent(pp, false)? else {
                continue; // removed later in the layer
            };
            let n = cstring(last)?;
            match fsops::lutimesat(p.fd, &n, *mtime, *atime) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(Fail::Sys("utimensat", e)),
            }
        }
        // Lookups above went through parent(), which records: forget it all.
        self.touched.clear();
        self.restore_times.clear();
        self.layer_paths.clear();
        self.invalidate();
        Ok(())
    }

    /// End of the last layer: rootless directories get their real modes.
    pub(crate) fn finish(&mut self) -> Result<(), Fail> {
        let modes = std::mem::take(&mut self.final_modes);
        for (path, mode) in modes.iter().rev() {
            let fd = if path.is_empty() {
                fsops::openat(
                    self.root.as_raw_fd(),
                    c".",
                    libc::O_RDONLY | libc::O_DIRECTORY,
                    0,
                )
            } else {
                let c = cstring(path)?;
                fsops::open_in_root(
                    self.root.as_raw_fd(),
                    &c,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                )
            };
            match fd {
                Ok(fd) => fsops::fchmod(fd.as_raw_fd(), *mode).map_err(sys("fchmod"))?,
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => {}
                Err(e) => return Err(Fail::Sys("openat2", e)),
            }
        }
        Ok(())
    }
}

/// The umask, from /proc/self/status (reading it with umask(2) would change it).
fn read_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line.trim_start_matches("Umask:").trim(), 8).ok()
}

/// Copies an entry's data into `fd`, checking it is all there.
fn copy<R: Read>(entry: &mut tar::Entry<'_, R>, fd: RawFd, buf: &mut [u8]) -> Result<(), Fail> {
    let mut left = entry.size();
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let mut got = 0;
        while got < want {
            match entry.read(&mut buf[got..want]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fail::Msg(format!("read data: {e}"))),
            }
        }
        if got == 0 {
            return Err(Fail::Msg(format!(
                "the layer ends inside this file's data ({left} bytes missing)"
            )));
        }
        fsops::write_all(fd, &buf[..got]).map_err(sys("write"))?;
        left -= got as u64;
    }
    Ok(())
}

/// Marks the directory `name` in `parent` opaque for overlayfs (store layers).
fn set_opaque(parent: std::os::fd::RawFd, name: &CStr) -> Result<(), Fail> {
    let dir = fsops::openat(
        parent,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
    .map_err(sys("openat"))?;
    fsops::fsetxattr(dir.as_raw_fd(), c"trusted.overlay.opaque", b"y")
        .map_err(sys("fsetxattr trusted.overlay.opaque"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        let mut out = Vec::new();
        assert!(normalize(s.as_bytes(), &mut out).is_ok());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn names_are_cleaned_inside_the_root() {
        assert_eq!(norm("./usr/bin/"), "usr/bin");
        assert_eq!(norm("/etc/passwd"), "etc/passwd");
        assert_eq!(norm("../../../etc/shadow"), "etc/shadow");
        assert_eq!(norm("a/b/../../../c"), "c");
        assert_eq!(norm("./"), "");
        assert_eq!(norm("a//b/./c"), "a/b/c");
        assert!(normalize(b"a\0b", &mut Vec::new()).is_err());
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            pax_time(b"1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(pax_time(b"12"), Some((12, 0)));
        assert_eq!(pax_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(pax_time(b"x"), None);
    }

    #[test]
    fn rootless_records_match_the_protobuf_encoding() {
        assert_eq!(rootless_record(0, 0), Vec::<u8>::new());
        assert_eq!(rootless_record(1000, 0), vec![0x08, 0xe8, 0x07]);
        assert_eq!(rootless_record(0, 5), vec![0x10, 5]);
    }

    #[test]
    fn libarchive_encodings() {
        assert_eq!(base64(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(unescape(b"user.a%3Db"), b"user.a=b");
        assert_eq!(unescape(b"user.x%"), b"user.x%");
    }
}
