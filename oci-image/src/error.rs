//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

/// Everything that can go wrong while reading an image or building a bundle.
///
/// Every variant names what failed: the path, the blob (by digest, or by its path inside an
/// archive), the layer entry, the field or the system call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// A file-system operation on the host failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("open", "read", "rename", ...).
        op: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{call} {}: {errno}", path.display())]
    Sys {
        /// The system call (`openat2`, `mkdirat`, `mount`, ...).
        call: &'static str,
        /// The path it was called on (inside the rootfs for layer entries).
        path: PathBuf,
        /// The errno.
        #[source]
        errno: Errno,
    },
    /// The image source is not a layout directory, an OCI archive nor a docker-archive, or
    /// its structure is broken.
    #[error("image {}: {reason}", path.display())]
    BadSource {
        /// The image path given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON document of the image does not parse.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        /// Which document (`index.json`, `manifest sha256:...`, ...).
        what: String,
        /// The parser error.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON document is valid JSON but not what it should be.
    #[error("{what}: {reason}")]
    BadDocument {
        /// Which document (and field).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A digest string is malformed or uses an algorithm berth does not verify.
    #[error("{field}: digest {value:?}: {reason}")]
    BadDigest {
        /// Where the digest came from (`--digest`, `manifest.layers[2].digest`, ...).
        field: String,
        /// The digest as written.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A blob named by a descriptor is not in the image.
    #[error("blob {blob} is missing from the image{}", urls_note(urls))]
    BlobMissing {
        /// The blob's digest.
        blob: String,
        /// The descriptor's URLs (non-distributable layers), which berth never fetches.
        urls: Vec<String>,
    },
    /// A blob's size differs from its descriptor.
    #[error("blob {blob}: size mismatch: expected {expected} bytes, read {actual}")]
    BlobSize {
        /// The blob's digest (or archive path).
        blob: String,
        /// The descriptor's size.
        expected: u64,
        /// The bytes actually read (stops counting one past `expected`).
        actual: u64,
    },
    /// A blob's content does not hash to its digest.
    #[error("blob {blob}: digest mismatch: content hashes to {actual}")]
    BlobDigest {
        /// The expected digest (or archive path).
        blob: String,
        /// What the content hashes to.
        actual: String,
    },
    /// A layer's uncompressed content does not match the config's `rootfs.diff_ids`.
    #[error("layer {blob}: uncompressed content hashes to {actual}, but diff_id is {expected}")]
    DiffId {
        /// The layer blob.
        blob: String,
        /// The diff_id from the image config.
        expected: String,
        /// What the uncompressed stream hashes to.
        actual: String,
    },
    /// A layer could not be decompressed or read.
    #[error("layer {blob}: {what}: {source}")]
    LayerStream {
        /// The layer blob.
        blob: String,
        /// What was being done (`gzip`, `zstd`, `read`).
        what: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A media type that berth does not know where it needs to.
    #[error("{what}: unsupported media type {media_type:?}")]
    MediaType {
        /// Where it was found (`manifest.layers[0]`, ...).
        what: String,
        /// The media type.
        media_type: String,
    },
    /// No manifest matches the reference, digest or platform asked for.
    #[error("no image matches {wanted} (the image has: {available})")]
    NotFound {
        /// What was asked for.
        wanted: String,
        /// What the image offers.
        available: String,
    },
    /// The image holds several refs and none was chosen.
    #[error("the image holds several refs ({refs}): choose one with a ref name or a digest")]
    Ambiguous {
        /// The refs found.
        refs: String,
    },
    /// A platform string does not parse.
    #[error("platform {value:?}: expected os/arch[/variant]")]
    BadPlatform {
        /// The value given.
        value: String,
    },
    /// A tar entry of a layer cannot be applied.
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    Entry {
        /// The layer blob.
        layer: String,
        /// The entry's name in the tar.
        entry: String,
        /// Why.
        reason: String,
    },
    /// A system call applying a layer entry failed.
    #[error("layer {layer}: entry {entry:?}: {call}: {errno}")]
    EntrySys {
        /// The layer blob.
        layer: String,
        /// The entry's name in the tar.
        entry: String,
        /// The system call.
        call: &'static str,
        /// The errno.
        #[source]
        errno: Errno,
    },
    /// The tar stream of a layer is malformed.
    #[error("layer {layer}: tar: {source}")]
    Tar {
        /// The layer blob.
        layer: String,
        /// The parser error.
        #[source]
        source: io::Error,
    },
    /// The image's `User` cannot be resolved against its /etc/passwd and /etc/group.
    #[error("config.User {user:?}: {reason}")]
    User {
        /// The user string of the image config (or the override).
        user: String,
        /// Why it cannot be resolved.
        reason: String,
    },
    /// The bundle directory exists and is not empty.
    #[error("bundle {}: exists and is not empty", path.display())]
    BundleExists {
        /// The bundle path.
        path: PathBuf,
    },
    /// A bundle option or path cannot be used.
    #[error("{what}: {reason}")]
    Unsupported {
        /// What was asked for.
        what: String,
        /// Why it cannot be done.
        reason: String,
    },
    /// An image reference (`busybox`, `registry:5000/app:v1`, `app@sha256:…`) does not
    /// parse.
    #[error("image reference {value:?}: {reason}")]
    BadReference {
        /// The reference given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A registry request failed or answered something unusable.
    #[error("registry: {reference}: {op}: {reason}")]
    Registry {
        /// The normalized reference (with the digest of the blob or manifest asked for).
        reference: String,
        /// What was being done (`authenticate`, `fetch manifest`, `fetch blob sha256:…`).
        op: String,
        /// The client's or the registry's message.
        reason: String,
    },
    /// The thread decompressing layers died.
    #[error("the layer decompression thread panicked")]
    WorkerPanicked,
}

fn urls_note(urls: &[String]) -> String {
    if urls.is_empty() {
        String::new()
    } else {
        format!(
            " (a non-distributable layer: berth does not download it from {})",
            urls.join(", ")
        )
    }
}

impl ImageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(call: &'static str, path: impl Into<PathBuf>, errno: Errno) -> Self {
        ImageError::Sys {
            call,
            path: path.into(),
            errno,
        }
    }

    pub(crate) fn doc(what: impl Into<String>, reason: impl Into<String>) -> Self {
        ImageError::BadDocument {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
