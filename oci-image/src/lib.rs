//! `berth-image`: OCI images on disk to OCI runtime bundles.
//!
//! The crate reads an image from an **OCI image layout** directory, an **OCI archive** (a tar
//! of a layout) or a **docker-archive** (`docker save`), chooses one image in it
//! ([`Selector`]: a ref name or a digest, walking nested indexes, the first manifest for the
//! platform asked for — the host's by default), and turns it into a **bundle**: a
//! `rootfs/` and a `config.json`.
//!
//! * **Verified while streaming.** Every blob's size and digest (sha256, sha512) are checked
//!   as it is read, and each layer's uncompressed stream against the config's diff_ids. A
//!   mismatch is an error naming the blob, and the bundle is built in a temporary directory
//!   renamed into place only at the end: nothing half-unpacked is ever left.
//! * **Layers** (OCI and Docker media types, uncompressed, gzip or zstd, non-distributable
//!   ones included; unknown types are refused) are applied in order with whiteouts and
//!   opaque directories (a whiteout hides only lower layers), hard links, symlinks, device
//!   nodes, fifos, xattrs, owners, modes (setuid, setgid, sticky) and mtimes (directories'
//!   after their contents).
//! * **Confined.** Every path is resolved from a descriptor of the rootfs with
//!   `openat2(RESOLVE_IN_ROOT)` and the last component is never followed: `..`, absolute
//!   names, symlinks from this or a lower layer, hard links or whiteouts naming outside
//!   paths all stay inside the rootfs.
//! * **Rootless** unpacks record owners in the `user.rootlesscontainers` xattr (as umoci
//!   does) and skip device nodes, with [`Warning`]s.
//! * **config.json** follows the image-spec's conversion rules on top of a base spec the
//!   caller passes (the runtime's default), with caller overrides ([`image_spec`]).
//! * **Fast path.** With a [`LayerStore`], each layer is unpacked once (keyed by diff_id)
//!   and bundles get an overlayfs rootfs ([`OverlayMount`]): a second bundle of the same
//!   image copies nothing.
//! * **Both cores.** A worker thread verifies and decompresses layer N+1 while layer N is
//!   applied (bounded channel of large recycled buffers).
//!
//! * **Content store.** [`ContentStore`] keeps blobs by digest (an OCI layout's `blobs/`),
//!   written through `ingest/` and verified before they appear; [`import`] fills it from
//!   archives and layouts, `pull` (feature `registry`) from an OCI distribution registry,
//!   and [`ContentStore::resolve`] plus [`LayerStore::prepare`] give a container its
//!   overlay lower directories.
//!
//! This crate depends on no other berth crate.
//!
//! ```no_run
//! use berth_image::{Image, Selector, Platform, UnpackOptions, unpack};
//!
//! let image = Image::open("/srv/images/app-oci")?;
//! let sel = Selector::reference("v1").platform(Platform::parse("linux/amd64")?);
//! let resolved = image.resolve(&sel)?;
//! let base = oci_spec::runtime::Spec::default(); // berth passes default_spec(rootless)
//! unpack(&image, &resolved, "/run/bundles/app".as_ref(), base, &UnpackOptions::default())?;
//! # Ok::<(), berth_image::ImageError>(())
//! ```

/// Builder-style setters, one per public field: `pub fn field(mut self, v) -> Self`.
macro_rules! setters {
    ($( $(#[$doc:meta])* $name:ident: $ty:ty, )*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, $name: $ty) -> Self {
                self.$name = $name;
                self
            }
        )*
    };
}

mod apply;
mod archive;
mod bundle;
mod content;
mod convert;
mod digest;
mod error;
mod fsops;
mod image;
mod import;
mod media;
mod pipeline;
#[cfg(feature = "registry")]
mod registry;
mod store;

pub use apply::{ROOTLESS_XATTR, Warning};
pub use bundle::{UnpackOptions, UnpackReport, remove_bundle, unpack};
pub use content::{BlobWriter, ContentStore, GcReport, Usage};
pub use convert::{
    ResolvedUser, RootFiles, SpecOverrides, VolumeMode, annotations, image_spec, resolve_user,
};
pub use digest::{Algorithm, Digest};
pub use error::{ImageError, Result};
pub use image::{Format, Image, Layer, Platform, REF_NAME, RefInfo, ResolvedImage, Selector};
pub use import::{Imported, import};
pub use media::Compression;
#[cfg(feature = "registry")]
pub use registry::{Auth, Progress, PullOptions, Pulled, normalize_reference, pull};
pub use store::{LayerStore, OVERLAY_FILE, OverlayMount};

/// Re-export of the `oci-spec` crate whose types appear in this API.
pub use oci_spec;
