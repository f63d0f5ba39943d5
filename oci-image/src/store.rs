//! The fast path: a store of unpacked layers keyed by diff_id, composed with overlayfs.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::mount::MsFlags;
use serde::{Deserialize, Serialize};

use crate::apply::Warning;
use crate::bundle::{chain_ids, fill_store, remove_tree};
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::image::{Image, Layer, ResolvedImage};

/// The name of the overlay description in a bundle made with a layer store.
pub const OVERLAY_FILE: &str = "overlay.json";

/// A directory of unpacked layers: `layers/<alg>/<hex>` holds the layer whose uncompressed
/// digest (diff_id) is `<alg>:<hex>`, in overlayfs' format (whiteouts are 0/0 character
/// devices, opaque directories carry `trusted.overlay.opaque=y`). A layer appears there
/// only complete and verified (it is unpacked under `tmp/` and renamed into place), so
/// bundles can share it as a read-only lower directory.
///
/// ```no_run
/// let store = berth_image::LayerStore::open("/var/lib/berth/layers")?;
/// println!("{}", store.path().display());
/// # Ok::<(), berth_image::ImageError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LayerStore {
    root: PathBuf,
}

/// Characters overlayfs' option string cannot carry in a path.
fn check_overlay_path(p: &Path, what: &str) -> Result<()> {
    let s = p.to_string_lossy();
    if s.contains([',', ':', '\\', '\n']) || p.to_str().is_none() {
        return Err(ImageError::Unsupported {
            what: format!("{what} {}", p.display()),
            reason: "paths used in an overlay mount cannot contain ',', ':', '\\' or a \
                     newline, and must be UTF-8"
                .into(),
        });
    }
    Ok(())
}

fn mkdir_all(p: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(|e| ImageError::io("create directory", p, e))
}

/// A name unique to this process and call.
pub(crate) fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl LayerStore {
    /// Opens (creating if needed) a store directory. The path is made absolute.
    pub fn open(dir: impl AsRef<Path>) -> Result<LayerStore> {
        let dir = dir.as_ref();
        let root = std::path::absolute(dir).map_err(|e| ImageError::io("resolve", dir, e))?;
        check_overlay_path(&root, "layer store")?;
        for sub in ["layers/sha256", "layers/sha512", "tmp", "empty", "locks"] {
            mkdir_all(&root.join(sub))?;
        }
        Ok(LayerStore { root })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Where the layer with this diff_id is (or would be).
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root
            .join("layers")
            .join(diff_id.algorithm().name())
            .join(diff_id.hex())
    }

    /// Is this layer in the store?
    pub fn contains(&self, diff_id: &Digest) -> bool {
        self.layer_path(diff_id).is_dir()
    }

    /// Where a layer whose hard links point into the layers under it is kept: its content
    /// depends on them, so it is keyed by its chain id (image-spec) instead of its diff_id.
    pub(crate) fn chain_path(&self, chain_id: &str) -> PathBuf {
        self.root.join("layers").join("chain").join(chain_id)
    }

    /// The stored copy of a layer for this image: by diff_id, else by chain id.
    pub(crate) fn find(&self, diff_id: &Digest, chain_id: &str) -> Option<PathBuf> {
        [self.layer_path(diff_id), self.chain_path(chain_id)]
            .into_iter()
            .find(|p| p.is_dir())
    }

    /// An always-empty directory, the bottom lower of every overlay.
    pub(crate) fn empty_dir(&self) -> PathBuf {
        self.root.join("empty")
    }

    /// A fresh directory to unpack a layer into.
    pub(crate) fn new_tmp(&self) -> Result<PathBuf> {
        let p = self.root.join("tmp").join(unique("layer-"));
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&p)
            .map_err(|e| ImageError::io("create directory", &p, e))?;
        Ok(p)
    }

    /// Makes sure every layer of `resolved` is in the store, unpacking (and verifying:
    /// blob digests, diff_ids) only the missing ones, and returns the overlay lower
    /// directories for it, topmost first; the last one is always an empty directory, so
    /// the list is never empty. Concurrent prepares (threads or processes) of images that
    /// share layers are safe and unpack each layer once: the layers are locked (flock)
    /// while they are filled.
    ///
    /// ```no_run
    /// use berth_image::{Image, LayerStore, OverlayMount, Selector};
    ///
    /// let image = Image::open("/srv/images/app.tar")?;
    /// let resolved = image.resolve(&Selector::default())?;
    /// let store = LayerStore::open("/var/lib/berth/layers")?;
    /// let lowerdirs = store.prepare(&image, &resolved)?;
    /// let ov = OverlayMount {
    ///     lowerdirs,
    ///     upperdir: "/run/c1/upper".into(),
    ///     workdir: "/run/c1/work".into(),
    /// };
    /// ov.mount("/run/c1/rootfs".as_ref())?;
    /// # Ok::<(), berth_image::ImageError>(())
    /// ```
    pub fn prepare(&self, image: &Image, resolved: &ResolvedImage) -> Result<Vec<PathBuf>> {
        Ok(self.prepare_counted(image, resolved)?.0)
    }

    /// [`prepare`](LayerStore::prepare), also returning how many layers were unpacked and
    /// the warnings of their unpack.
    pub(crate) fn prepare_counted(
        &self,
        image: &Image,
        resolved: &ResolvedImage,
    ) -> Result<(Vec<PathBuf>, usize, Vec<Warning>)> {
        let _store = self.lock("store", FlockArg::LockShared)?;
        let mut names: Vec<String> = resolved
            .layers
            .iter()
            .map(|l| format!("{}-{}", l.diff_id.algorithm().name(), l.diff_id.hex()))
            .collect();
        // One order for every caller: no deadlock between images sharing layers.
        names.sort_unstable();
        names.dedup();
        let mut _layers = Vec::with_capacity(names.len());
        for n in &names {
            _layers.push(self.lock(n, FlockArg::LockExclusive)?);
        }
        let (unpacked, warnings) = fill_store(image, &resolved.layers, self)?;
        Ok((self.lowers(&resolved.layers), unpacked, warnings))
    }

    /// The overlay lower directories of `layers` (bottom first), topmost first.
    fn lowers(&self, layers: &[Layer]) -> Vec<PathBuf> {
        let chains = chain_ids(layers);
        let mut lowers: Vec<PathBuf> = Vec::new();
        for (l, chain) in layers.iter().zip(&chains).rev() {
            let p = self
                .find(&l.diff_id, chain)
                .unwrap_or_else(|| self.layer_path(&l.diff_id));
            if !lowers.contains(&p) {
                lowers.push(p);
            }
        }
        lowers.push(self.empty_dir());
        lowers
    }

    /// Removes every layer that none of the `keep` images uses, and leftovers of
    /// interrupted unpacks; returns how many layers were removed. It waits for running
    /// prepares and blocks new ones while it works. Bundles still mounted from a removed
    /// layer keep working (the directory goes only when unmounted) but the caller must list
    /// every image a container may still be prepared from.
    ///
    /// ```no_run
    /// use berth_image::{Image, LayerStore, Selector};
    ///
    /// let image = Image::open("/srv/images/app.tar")?;
    /// let keep = image.resolve(&Selector::default())?;
    /// let removed = LayerStore::open("/var/lib/berth/layers")?.retain([&keep])?;
    /// println!("{removed} layers removed");
    /// # Ok::<(), berth_image::ImageError>(())
    /// ```
    pub fn retain<'a>(&self, keep: impl IntoIterator<Item = &'a ResolvedImage>) -> Result<usize> {
        let _store = self.lock("store", FlockArg::LockExclusive)?;
        let mut kept: BTreeSet<PathBuf> = BTreeSet::new();
        let mut kept_locks: BTreeSet<String> = BTreeSet::new();
        for r in keep {
            for (l, chain) in r.layers.iter().zip(chain_ids(&r.layers)) {
                kept.insert(self.layer_path(&l.diff_id));
                kept.insert(self.chain_path(&chain));
                kept_locks.insert(format!(
                    "{}-{}",
                    l.diff_id.algorithm().name(),
                    l.diff_id.hex()
                ));
            }
        }
        let mut removed = 0;
        for sub in ["layers/sha256", "layers/sha512", "layers/chain"] {
            let dir = self.root.join(sub);
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ImageError::io("read directory", &dir, e)),
            };
            for e in rd {
                let path = e
                    .map_err(|e| ImageError::io("read directory", &dir, e))?
                    .path();
                if kept.contains(&path) {
                    continue;
                }
                // Out of sight first, so a half-removed layer is never found.
                let doomed = self.root.join("tmp").join(unique("gc-"));
                std::fs::rename(&path, &doomed).map_err(|e| ImageError::io("rename", &path, e))?;
                remove_tree(&doomed)?;
                removed += 1;
            }
        }
        // No prepare runs (we hold the store exclusively): tmp/ and unused locks are stale.
        for (sub, keep_names) in [("tmp", None), ("locks", Some(&kept_locks))] {
            let dir = self.root.join(sub);
            let rd =
                std::fs::read_dir(&dir).map_err(|e| ImageError::io("read directory", &dir, e))?;
            for e in rd {
                let e = e.map_err(|e| ImageError::io("read directory", &dir, e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name == "store" || keep_names.is_some_and(|k| k.contains(&name)) {
                    continue;
                }
                remove_tree(&e.path())?;
            }
        }
        Ok(removed)
    }

    /// Takes a lock on `locks/<name>`.
    fn lock(&self, name: &str, arg: FlockArg) -> Result<Flock<File>> {
        let p = self.root.join("locks").join(name);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&p)
            .map_err(|e| ImageError::io("open", &p, e))?;
        loop {
            match Flock::lock(f, arg) {
                Ok(l) => return Ok(l),
                Err((back, Errno::EINTR)) => f = back,
                Err((_, e)) => return Err(ImageError::sys("flock", p, e)),
            }
        }
    }

    /// Moves a verified layer into place; if another unpack won the race, drops ours.
    pub(crate) fn commit(&self, tmp: &Path, dest: &Path) -> Result<()> {
        if let Some(parent) = dest.parent() {
            mkdir_all(parent)?;
        }
        match std::fs::rename(tmp, dest) {
            Ok(()) => Ok(()),
            Err(e) if dest.is_dir() => {
                let _ = e;
                crate::bundle::remove_tree(tmp)
            }
            Err(e) => Err(ImageError::io("rename", tmp, e)),
        }
    }
}

/// How to mount a bundle's rootfs made from a [`LayerStore`]: an overlay of the image's
/// layers (read-only, shared by every bundle of the image) under a per-bundle upper
/// directory. Saved as `overlay.json` in the bundle; a runtime mounts it on
/// `<bundle>/rootfs` before starting the container with [`OverlayMount::mount`], or with
/// `mount -t overlay overlay -o <options> <bundle>/rootfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayMount {
    /// Lower directories, topmost first.
    pub lowerdirs: Vec<PathBuf>,
    /// The bundle's writable layer.
    pub upperdir: PathBuf,
    /// overlayfs' work directory (same file system as `upperdir`).
    pub workdir: PathBuf,
}

impl OverlayMount {
    /// The mount option string: `lowerdir=A:B,upperdir=U,workdir=W`.
    pub fn options(&self) -> String {
        let lowers: Vec<String> = self
            .lowerdirs
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            self.upperdir.display(),
            self.workdir.display()
        )
    }

    /// Mounts the overlay on `target` (needs CAP_SYS_ADMIN in the mount namespace's owner
    /// user namespace).
    pub fn mount(&self, target: &Path) -> Result<()> {
        for p in self.lowerdirs.iter().chain([&self.upperdir, &self.workdir]) {
            check_overlay_path(p, "overlay directory")?;
        }
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(self.options().as_str()),
        )
        .map_err(|e| ImageError::sys("mount overlay", target, e))
    }

    /// Reads `<bundle>/overlay.json`; `None` if the bundle has a plain rootfs.
    pub fn load(bundle: &Path) -> Result<Option<OverlayMount>> {
        let p = bundle.join(OVERLAY_FILE);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| ImageError::Json {
                    what: p.display().to_string(),
                    source,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io("read", p, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_string() {
        let m = OverlayMount {
            lowerdirs: vec!["/s/b".into(), "/s/a".into()],
            upperdir: "/b/overlay/upper".into(),
            workdir: "/b/overlay/work".into(),
        };
        assert_eq!(
            m.options(),
            "lowerdir=/s/b:/s/a,upperdir=/b/overlay/upper,workdir=/b/overlay/work"
        );
        assert!(check_overlay_path(Path::new("/a:b"), "x").is_err());
        assert!(check_overlay_path(Path::new("/a/b"), "x").is_ok());
    }
}
