//! Building a runtime bundle from a resolved image.

use std::cell::RefCell;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;

use crate::apply::{Applier, Target, Warning};
use crate::convert::{RootFiles, SpecOverrides, image_spec};
use crate::error::{ImageError, Result};
use crate::fsops;
use crate::image::{Image, Layer, ResolvedImage};
use crate::pipeline;
use crate::store::{LayerStore, OVERLAY_FILE, OverlayMount, unique};

/// How to unpack: [`UnpackOptions::default`] (a plain copy, as root, the image's config
/// unchanged) and the setters, one per field.
///
/// ```
/// let opts = berth_image::UnpackOptions::default().rootless(true);
/// assert!(opts.rootless && opts.store.is_none());
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UnpackOptions {
    /// Unpack as an unprivileged user: owners are not set but recorded in the
    /// `user.rootlesscontainers` xattr (see [`ROOTLESS_XATTR`](crate::ROOTLESS_XATTR)), device
    /// nodes are skipped, xattrs that cannot be set are skipped; each with a warning.
    /// Directories stay writable by their owner until the end, then get their modes.
    pub rootless: bool,
    /// Use this layer store and an overlayfs rootfs instead of a plain copy (root only).
    pub store: Option<PathBuf>,
    /// With `store`: mount the overlay on `<bundle>/rootfs` (in the caller's mount
    /// namespace) before returning. Without it, the runtime mounts it from `overlay.json`.
    pub mount: bool,
    /// Changes to the config.json built from the image.
    pub overrides: SpecOverrides,
}

impl UnpackOptions {
    setters! {
        /// Sets [`rootless`](Self::rootless).
        rootless: bool,
        /// Sets [`store`](Self::store).
        store: Option<PathBuf>,
        /// Sets [`mount`](Self::mount).
        mount: bool,
        /// Sets [`overrides`](Self::overrides).
        overrides: SpecOverrides,
    }
}

/// What an unpack did.
#[derive(Debug, Clone)]
pub struct UnpackReport {
    /// The bundle directory (absolute).
    pub bundle: PathBuf,
    /// Things skipped or changed (rootless owners, devices, unknown special whiteouts).
    pub warnings: Vec<Warning>,
    /// Layers unpacked by this call.
    pub layers_unpacked: usize,
    /// Layers found already unpacked in the layer store.
    pub layers_reused: usize,
    /// The overlay, when a layer store was used.
    pub overlay: Option<OverlayMount>,
}

/// Removes the temporary bundle unless disarmed.
struct Cleanup {
    path: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = remove_tree(&p);
        }
    }
}

/// Removes a directory tree without following any symlink in it.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| ImageError::Unsupported {
        what: format!("remove {}", path.display()),
        reason: "no final path component".into(),
    })?;
    let pfd = std::fs::File::open(parent).map_err(|e| ImageError::io("open", parent, e))?;
    let c = CString::new(name.as_bytes()).map_err(|_| ImageError::Unsupported {
        what: format!("remove {}", path.display()),
        reason: "NUL in path".into(),
    })?;
    fsops::remove_at(pfd.as_raw_fd(), &c).map_err(|e| ImageError::sys("remove", path, e))
}

/// Unmounts an overlay rootfs if the bundle has one, then removes the bundle directory
/// (never following a symlink inside it).
///
/// ```no_run
/// berth_image::remove_bundle(std::path::Path::new("/run/bundles/web"))?;
/// # Ok::<(), berth_image::ImageError>(())
/// ```
pub fn remove_bundle(bundle: &Path) -> Result<()> {
    if OverlayMount::load(bundle)?.is_some() {
        let rootfs = bundle.join("rootfs");
        match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(ImageError::sys("umount2", rootfs, e)),
        }
    }
    remove_tree(bundle)
}

fn open_dir_path(p: &Path) -> Result<OwnedFd> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| ImageError::Unsupported {
        what: p.display().to_string(),
        reason: "NUL in path".into(),
    })?;
    fsops::openat(libc::AT_FDCWD, &c, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| ImageError::sys("open", p, e))
}

fn mkdir(p: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(p)
        .map_err(|e| ImageError::io("create directory", p, e))
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|source| ImageError::Json {
        what: path.display().to_string(),
        source,
    })?;
    let mut f = std::fs::File::create_new(path).map_err(|e| ImageError::io("create", path, e))?;
    f.write_all(&json)
        .and_then(|()| f.write_all(b"\n"))
        .map_err(|e| ImageError::io("write", path, e))
}

/// Does the spec conversion need the image's account files?
fn needs_accounts(resolved: &ResolvedImage, overrides: &SpecOverrides) -> bool {
    overrides.user.as_deref().is_some_and(|u| !u.is_empty())
        || resolved
            .config
            .config()
            .as_ref()
            .and_then(|c| c.user().as_deref())
            .is_some_and(|u| !u.is_empty())
}

/// Turns a resolved image into an OCI runtime bundle at `bundle`: `config.json` (built by
/// [`image_spec`] on top of `base`, usually the runtime's default spec) and `rootfs/`.
///
/// The bundle must not exist (or be an empty directory). Everything is built in a
/// temporary directory next to it (`.<name>.berth-…`, mode 0700) and renamed into place at
/// the end; on any error the temporary directory is removed, so no half-unpacked bundle
/// is ever left. The bundle directory gets mode 0700, like umoci's.
///
/// Layers are verified as they stream (size and digest of each blob, the uncompressed
/// digest against `rootfs.diff_ids`) and applied in order, every write confined to the
/// rootfs. With [`UnpackOptions::store`], layers are unpacked once into a [`LayerStore`]
/// and the bundle gets an overlay (`overlay.json`, `overlay/upper`, `overlay/work`, and
/// an empty `rootfs/` mount point, mounted if [`UnpackOptions::mount`]); a second bundle
/// of the same image copies nothing.
///
/// ```no_run
/// use berth_image::{Image, Selector, UnpackOptions, unpack};
///
/// let image = Image::open("/srv/images/debian.tar")?;
/// let resolved = image.resolve(&Selector::default())?;
/// // A runtime passes its default spec here (berth: berth_runtime_core::spec::default_spec).
/// let base = oci_spec::runtime::Spec::default();
/// let report = unpack(&image, &resolved, "/run/bundles/web".as_ref(), base,
///                     &UnpackOptions::default())?;
/// for w in &report.warnings {
///     eprintln!("{}: {}", w.path, w.message);
/// }
/// # Ok::<(), berth_image::ImageError>(())
/// ```
pub fn unpack(
    image: &Image,
    resolved: &ResolvedImage,
    bundle: &Path,
    base: Spec,
    opts: &UnpackOptions,
) -> Result<UnpackReport> {
    let bundle = std::path::absolute(bundle).map_err(|e| ImageError::io("resolve", bundle, e))?;
    let (Some(parent), Some(name)) = (bundle.parent(), bundle.file_name()) else {
        return Err(ImageError::Unsupported {
            what: format!("bundle {}", bundle.display()),
            reason: "needs a parent directory and a name".into(),
        });
    };
    match std::fs::symlink_metadata(&bundle) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ImageError::io("stat", &bundle, e)),
        Ok(m) => {
            let empty = m.is_dir()
                && std::fs::read_dir(&bundle)
                    .map_err(|e| ImageError::io("read directory", &bundle, e))?
                    .next()
                    .is_none();
            if !empty {
                return Err(ImageError::BundleExists { path: bundle });
            }
        }
    }
    if opts.mount && opts.store.is_none() {
        return Err(ImageError::Unsupported {
            what: "mount without a layer store".into(),
            reason: "only a layer store's overlay rootfs is mounted; a plain rootfs is a \
                     directory already"
                .into(),
        });
    }
    if opts.store.is_some() && opts.rootless {
        return Err(ImageError::Unsupported {
            what: "a layer store with a rootless unpack".into(),
            reason: "the store's overlay layers need trusted.* xattrs and whiteout devices, \
                     which only root can create"
                .into(),
        });
    }
    let tmp = parent.join(unique(&format!(".{}.berth-", name.to_string_lossy())));
    mkdir(&tmp, 0o700)?;
    let mut cleanup = Cleanup {
        path: Some(tmp.clone()),
    };
    let rootfs = tmp.join("rootfs");
    mkdir(&rootfs, 0o755)?;

    let mut report = UnpackReport {
        bundle: bundle.clone(),
        warnings: Vec::new(),
        layers_unpacked: 0,
        layers_reused: 0,
        overlay: None,
    };
    let files = match &opts.store {
        None => {
            let fd = open_dir_path(&rootfs)?;
            let mut applier = Applier::new(fd, Target::Rootfs, opts.rootless)
                .map_err(|f| f.into_error("(none)", rootfs.as_os_str().as_bytes()))?;
            pipeline::run(
                image,
                &resolved.layers,
                |i, s| pipeline::apply_layer(&mut applier, s, &resolved.layers[i].blob),
                |_| Ok(()),
            )?;
            applier
                .finish()
                .map_err(|f| f.into_error("(all layers)", b"(directory modes)"))?;
            report.warnings = applier.take_warnings();
            report.layers_unpacked = resolved.layers.len();
            if needs_accounts(resolved, &opts.overrides) {
                RootFiles::read(&rootfs)?
            } else {
                RootFiles::default()
            }
        }
        Some(store_dir) => {
            let store = LayerStore::open(store_dir)?;
            let (lowers, unpacked, warnings) = store.prepare_counted(image, resolved)?;
            report.layers_unpacked = unpacked;
            report.layers_reused = resolved.layers.len() - unpacked;
            report.warnings = warnings;
            let overlay_dir = tmp.join("overlay");
            mkdir(&overlay_dir, 0o700)?;
            mkdir(&overlay_dir.join("upper"), 0o755)?;
            // The merged root shows the upper directory's attributes: give it the image's.
            copy_dir_attrs(&lowers[0], &overlay_dir.join("upper"))?;
            mkdir(&overlay_dir.join("work"), 0o700)?;
            let ov = OverlayMount {
                lowerdirs: lowers.clone(),
                upperdir: bundle.join("overlay/upper"),
                workdir: bundle.join("overlay/work"),
            };
            write_json(&tmp.join(OVERLAY_FILE), &ov)?;
            report.overlay = Some(ov);
            if needs_accounts(resolved, &opts.overrides) {
                read_files_through_overlay(&lowers, &rootfs)?
            } else {
                RootFiles::default()
            }
        }
    };

    let spec = image_spec(&resolved.config, base, &files, &opts.overrides)?;
    write_json(&tmp.join("config.json"), &spec)?;
    std::fs::rename(&tmp, &bundle).map_err(|e| ImageError::io("rename", &tmp, e))?;
    cleanup.path = None;
    if let (Some(ov), true) = (&report.overlay, opts.mount) {
        if let Err(e) = ov.mount(&bundle.join("rootfs")) {
            let _ = remove_tree(&bundle);
            return Err(e);
        }
    }
    Ok(report)
}

/// Copies owner, mode and times of directory `from` to directory `to`.
fn copy_dir_attrs(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(from).map_err(|e| ImageError::io("stat", from, e))?;
    std::os::unix::fs::chown(to, Some(m.uid()), Some(m.gid()))
        .map_err(|e| ImageError::io("chown", to, e))?;
    let fd = open_dir_path(to)?;
    std::fs::set_permissions(
        to,
        std::os::unix::fs::PermissionsExt::from_mode(m.mode() & 0o7777),
    )
    .map_err(|e| ImageError::io("chmod", to, e))?;
    fsops::lutimesat(
        fd.as_raw_fd(),
        c"",
        (m.mtime(), m.mtime_nsec() as u32),
        (m.atime(), m.atime_nsec() as u32),
    )
    .map_err(|e| ImageError::sys("utimensat", to, e))
}

/// The image-spec's chain ids of `layers` (hex of sha256), bottom first:
/// ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
pub(crate) fn chain_ids(layers: &[Layer]) -> Vec<String> {
    use sha2::{Digest as _, Sha256};
    let mut out: Vec<String> = Vec::with_capacity(layers.len());
    let mut prev: Option<String> = None;
    for l in layers {
        let diff = format!("{}:{}", l.diff_id.algorithm().name(), l.diff_id.hex());
        let id = match &prev {
            None => diff,
            Some(p) => {
                let h = Sha256::digest(format!("{p} {diff}").as_bytes());
                let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
                format!("sha256:{hex}")
            }
        };
        out.push(id.rsplit(':').next().unwrap_or_default().to_owned());
        prev = Some(id);
    }
    out
}

/// Unpacks the layers the store lacks; returns how many, and the warnings.
pub(crate) fn fill_store(
    image: &Image,
    layers: &[Layer],
    store: &LayerStore,
) -> Result<(usize, Vec<Warning>)> {
    let chains = chain_ids(layers);
    // The layers to unpack, and their chain ids.
    let mut missing: Vec<Layer> = Vec::new();
    let mut missing_chains: Vec<&str> = Vec::new();
    for (l, chain) in layers.iter().zip(&chains) {
        if store.find(&l.diff_id, chain).is_none()
            && !missing.iter().any(|m| m.diff_id == l.diff_id)
        {
            missing.push(l.clone());
            missing_chains.push(chain);
        }
    }
    let links_into_lowers: RefCell<Vec<bool>> = RefCell::new(vec![false; missing.len()]);
    let tmps: RefCell<Vec<Cleanup>> = RefCell::new(Vec::new());
    let mut warnings = Vec::new();
    pipeline::run(
        image,
        &missing,
        |i, s| {
            let dir = store.new_tmp()?;
            tmps.borrow_mut().push(Cleanup {
                path: Some(dir.clone()),
            });
            let fd = open_dir_path(&dir)?;
            let err =
                |f: crate::apply::Fail| f.into_error(&missing[i].blob, dir.as_os_str().as_bytes());
            let mut a = Applier::new(fd, Target::LayerDir, false).map_err(err)?;
            // The layers under this one (all in the store by now: they come first).
            let pos = layers
                .iter()
                .position(|l| l.diff_id == missing[i].diff_id)
                .unwrap_or(0);
            let mut lowers = Vec::new();
            for (l, chain) in layers[..pos].iter().zip(&chains).rev() {
                let p = store
                    .find(&l.diff_id, chain)
                    .unwrap_or_else(|| store.layer_path(&l.diff_id));
                lowers.push(open_dir_path(&p)?);
            }
            a.set_lowers(lowers).map_err(err)?;
            pipeline::apply_layer(&mut a, s, &missing[i].blob)?;
            a.finish()
                .map_err(|f| f.into_error(&missing[i].blob, b"(directory modes)"))?;
            if let Some(flag) = links_into_lowers.borrow_mut().get_mut(i) {
                *flag = a.links_into_lowers();
            }
            warnings.extend(a.take_warnings());
            Ok(())
        },
        |i| {
            let mut t = tmps.borrow_mut();
            let c = t.get_mut(i).ok_or(ImageError::WorkerPanicked)?;
            let path = c.path.take().ok_or(ImageError::WorkerPanicked)?;
            let dest = if links_into_lowers.borrow().get(i).copied().unwrap_or(false) {
                store.chain_path(missing_chains[i])
            } else {
                store.layer_path(&missing[i].diff_id)
            };
            let r = store.commit(&path, &dest);
            if r.is_err() {
                c.path = Some(path);
            }
            r
        },
    )?;
    Ok((missing.len(), warnings))
}

/// Reads /etc/passwd and /etc/group of the composed image: in a thread of its own that
/// moves to a private mount namespace, mounts the layers there read-only on `mountpoint`
/// and reads them. The namespace (and the mount) go away with the thread.
fn read_files_through_overlay(lowers: &[PathBuf], mountpoint: &Path) -> Result<RootFiles> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<RootFiles> {
            nix::sched::unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS)
                .map_err(|e| ImageError::sys("unshare(CLONE_NEWNS)", mountpoint, e))?;
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| ImageError::sys("mount(MS_PRIVATE)", "/", e))?;
            let l: Vec<String> = lowers
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            let opts = format!("lowerdir={}", l.join(":"));
            nix::mount::mount(
                Some("overlay"),
                mountpoint,
                Some("overlay"),
                MsFlags::MS_RDONLY,
                Some(opts.as_str()),
            )
            .map_err(|e| ImageError::sys("mount overlay", mountpoint, e))?;
            RootFiles::read(mountpoint)
        })
        .join()
        .unwrap_or(Err(ImageError::WorkerPanicked))
    })
}
