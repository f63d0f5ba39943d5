//! Shared helpers: temporary directories, hand-made OCI layouts and layers, tree snapshots.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

/// A temporary directory removed (without following symlinks) when dropped, even when the
/// test panics.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p =
            std::env::temp_dir().join(format!("berth-image-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Directories made read-only by a test must be writable to be emptied.
        let _ = Command::new("chmod")
            .args(["-R", "u+rwx"])
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes sure umoci and skopeo are there (Debian packages `umoci` and `skopeo`).
pub fn need_tools() {
    let missing: Vec<&str> = ["umoci", "skopeo"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .collect();
    if !missing.is_empty() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"));
    }
}

// ---------------------------------------------------------------------------------------
// Hand-made layers.

/// One entry of a hand-made layer. Names and link targets are written raw into the
/// header, so hostile names (`..`, absolute) go through unchanged.
#[derive(Clone)]
pub enum E {
    File(&'static str, &'static [u8], u32),
    Dir(&'static str, u32),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    Char(&'static str, u32, u32),
    Fifo(&'static str),
    /// A file with an owner and PAX xattrs.
    Rich(
        &'static str,
        &'static [u8],
        u32,
        u32,
        u32,
        Vec<(&'static str, &'static [u8])>,
    ),
    /// A file with an mtime.
    Timed(&'static str, &'static [u8], u64),
    /// A directory with an mtime.
    TimedDir(&'static str, u64),
    /// A long name (through a GNU long-name entry).
    Long(String, &'static [u8]),
}

fn header(name: &[u8], kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let g = h.as_gnu_mut().unwrap();
        g.name[..name.len()].copy_from_slice(name);
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h
}

fn set_link(h: &mut tar::Header, target: &[u8]) {
    let g = h.as_gnu_mut().unwrap();
    g.linkname[..target.len()].copy_from_slice(target);
}

/// Builds an uncompressed layer tar.
pub fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::File(n, data, mode) => {
                let mut h = header(
                    n.as_bytes(),
                    tar::EntryType::Regular,
                    data.len() as u64,
                    *mode,
                );
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            E::Timed(n, data, mtime) => {
                let mut h = header(
                    n.as_bytes(),
                    tar::EntryType::Regular,
                    data.len() as u64,
                    0o644,
                );
                h.set_mtime(*mtime);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            E::Dir(n, mode) => {
                let mut h = header(n.as_bytes(), tar::EntryType::Directory, 0, *mode);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::TimedDir(n, mtime) => {
                let mut h = header(n.as_bytes(), tar::EntryType::Directory, 0, 0o755);
                h.set_mtime(*mtime);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Symlink(n, t) => {
                let mut h = header(n.as_bytes(), tar::EntryType::Symlink, 0, 0o777);
                set_link(&mut h, t.as_bytes());
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Hardlink(n, t) => {
                let mut h = header(n.as_bytes(), tar::EntryType::Link, 0, 0o644);
                set_link(&mut h, t.as_bytes());
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Char(n, major, minor) => {
                let mut h = header(n.as_bytes(), tar::EntryType::Char, 0, 0o666);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Fifo(n) => {
                let mut h = header(n.as_bytes(), tar::EntryType::Fifo, 0, 0o640);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Rich(n, data, mode, uid, gid, xattrs) => {
                let mut pax = Vec::new();
                for (k, v) in xattrs {
                    let key = format!("SCHILY.xattr.{k}");
                    let mut rec = Vec::new();
                    rec.extend_from_slice(key.as_bytes());
                    rec.push(b'=');
                    rec.extend_from_slice(v);
                    rec.push(b'\n');
                    // "<len> <key>=<value>\n", len counting itself.
                    let mut len = rec.len() + 2;
                    while format!("{len} ").len() + rec.len() != len {
                        len += 1;
                    }
                    pax.extend_from_slice(format!("{len} ").as_bytes());
                    pax.extend_from_slice(&rec);
                }
                if !pax.is_empty() {
                    let mut ph = header(
                        b"PaxHeader",
                        tar::EntryType::XHeader,
                        pax.len() as u64,
                        0o644,
                    );
                    ph.set_cksum();
                    b.append(&ph, &pax[..]).unwrap();
                }
                let mut h = header(
                    n.as_bytes(),
                    tar::EntryType::Regular,
                    data.len() as u64,
                    *mode,
                );
                h.set_uid(u64::from(*uid));
                h.set_gid(u64::from(*gid));
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            E::Long(n, data) => {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(1_600_000_000);
                b.append_data(&mut h, n, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// How to store a layer blob.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

/// An OCI layout written by hand: blobs, manifest, config, index.
pub struct Layout {
    pub dir: PathBuf,
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
}

pub fn put_blob(dir: &Path, data: &[u8]) -> String {
    let hex = sha256_hex(data);
    let p = dir.join("blobs/sha256");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

/// Writes a layout whose single ref `tag` has `layers`; `config` is merged into the
/// image config (`config` key of the image config).
pub fn write_layout(
    dir: &Path,
    tag: &str,
    layers: &[Vec<u8>],
    comp: Comp,
    config: serde_json::Value,
) -> Layout {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_digests = Vec::new();
    for l in layers {
        diff_ids.push(format!("sha256:{}", sha256_hex(l)));
        let (blob, mt) = match comp {
            Comp::None => (l.clone(), "application/vnd.oci.image.layer.v1.tar"),
            Comp::Gzip => (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip"),
            Comp::Zstd => (
                zstd::encode_all(&l[..], 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        };
        let d = put_blob(dir, &blob);
        layer_digests.push(d.clone());
        descs.push(serde_json::json!({"mediaType": mt, "digest": d, "size": blob.len()}));
    }
    let cfg = serde_json::json!({
        "architecture": berth_image::Platform::host().architecture,
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let config_digest = put_blob(dir, &cfg);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": cfg.len()},
        "layers": descs,
    }))
    .unwrap();
    let manifest_digest = put_blob(dir, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    Layout {
        dir: dir.to_path_buf(),
        manifest_digest,
        config_digest,
        layer_digests,
    }
}

/// Unpacks `layout` (ref `tag`) into `bundle` with default options.
pub fn unpack(
    layout: &Path,
    tag: &str,
    bundle: &Path,
) -> berth_image::Result<berth_image::UnpackReport> {
    let image = berth_image::Image::open(layout)?;
    let r = image.resolve(&berth_image::Selector::reference(tag))?;
    berth_image::unpack(&image, &r, bundle, Default::default(), &Default::default())
}

// ---------------------------------------------------------------------------------------
// Tree snapshots.

/// What is compared of every entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub content: Option<String>,
    pub link: Option<PathBuf>,
    pub rdev: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

pub fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 65536];
    // SAFETY: test code; buffers are live and sized.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return out;
    }
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cn = CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        // SAFETY: as above.
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        if m >= 0 {
            v.truncate(m as usize);
            out.insert(String::from_utf8_lossy(name).into_owned(), v);
        }
    }
    out
}

/// Every entry under `root` (root itself as ""), and the hard-link groups.
pub fn snapshot(root: &Path) -> (BTreeMap<String, Node>, Vec<Vec<String>>) {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let kind = m.mode() & libc::S_IFMT;
        let mut node = Node {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.mtime(),
            size: 0,
            content: None,
            link: None,
            rdev: 0,
            xattrs: xattrs(&p),
        };
        match kind {
            libc::S_IFDIR => {
                for e in std::fs::read_dir(&p).unwrap() {
                    stack.push(e.unwrap().path());
                }
            }
            libc::S_IFREG => {
                node.size = m.len();
                node.content = Some(sha256_hex(&std::fs::read(&p).unwrap()));
                inodes.entry(m.ino()).or_default().push(rel.clone());
            }
            libc::S_IFLNK => node.link = Some(std::fs::read_link(&p).unwrap()),
            libc::S_IFCHR | libc::S_IFBLK => node.rdev = m.rdev(),
            _ => {}
        }
        out.insert(rel, node);
    }
    let mut groups: Vec<Vec<String>> = inodes
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    groups.sort();
    (out, groups)
}

/// Asserts two trees are the same, listing the differences.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let (a, ga) = snapshot(expected);
    let (b, gb) = snapshot(actual);
    let mut diffs = Vec::new();
    for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        if a.get(k) != b.get(k) {
            diffs.push(format!(
                "{k:?}:\n  expected {:?}\n  actual   {:?}",
                a.get(k),
                b.get(k)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} entries differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert_eq!(ga, gb, "hard-link groups differ");
    assert!(a.len() > 1, "empty tree compared");
}

/// A listing of a directory (recursive) with modes, for "nothing else changed" checks.
pub fn listing(dir: &Path) -> Vec<String> {
    let (m, _) = snapshot(dir);
    m.keys().cloned().collect()
}

pub fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs `f` in a thread that first moves to a private mount namespace: mounts it makes
/// vanish with the thread, whatever happens.
pub fn in_private_mount_ns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(
                nix::sched::CloneFlags::CLONE_NEWNS | nix::sched::CloneFlags::CLONE_FS,
            )
            .unwrap();
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}
