//! A content-addressed blob store: `blobs/<alg>/<hex>` (the OCI image-layout blob layout)
//! and `ingest/` for blobs being written.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use crate::digest::{Algorithm, Digest, Expect, Hasher};
use crate::error::{ImageError, Result};
use crate::image::{Image, Platform, ResolvedImage, Selector};
use crate::media::{self, Kind};
use crate::store::unique;

/// Largest blob [`ContentStore::read`] returns (manifests, indexes, configs).
const READ_LIMIT: u64 = 32 << 20;
/// Deepest nesting of indexes walked by [`ContentStore::referenced`].
const MAX_DEPTH: usize = 8;

// Digests sort by algorithm name, then hex: the order of their strings.
impl PartialOrd for Digest {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Digest {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.algorithm().name(), self.hex()).cmp(&(other.algorithm().name(), other.hex()))
    }
}

/// A directory of blobs named by their digest, laid out as an OCI image layout's `blobs/`
/// (plus an `oci-layout` file), with partial writes kept apart in `ingest/`.
///
/// A blob appears in `blobs/` only complete, verified (size and digest) and synced: it is
/// written under `ingest/`, checked, then renamed into place. A process killed mid-write
/// leaves only `ingest/` data, which a later [`writer`](ContentStore::writer) for the same
/// digest resumes from and [`gc`](ContentStore::gc) removes.
///
/// ```no_run
/// use berth_image::ContentStore;
///
/// let store = ContentStore::open("/var/lib/berth/content")?;
/// let d = store.put(br#"{"hello":"world"}"#)?;
/// assert!(store.contains(&d));
/// assert_eq!(store.read(&d)?, br#"{"hello":"world"}"#);
/// # Ok::<(), berth_image::ImageError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

/// What [`ContentStore::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The blobs removed, in digest order.
    pub removed: Vec<Digest>,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Stale ingest files removed (interrupted writes no writer holds).
    pub ingests: usize,
}

/// Disk use of a store, for CRI's `ImageFsInfo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of the files (blobs and ingests).
    pub bytes: u64,
    /// Inodes used (files and directories).
    pub inodes: u64,
}

fn mkdir_all(p: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .map_err(|e| ImageError::io("create directory", p, e))
}

/// Takes a flock, retrying on EINTR.
fn flock(mut f: File, arg: FlockArg) -> std::result::Result<Flock<File>, (File, Errno)> {
    loop {
        match Flock::lock(f, arg) {
            Ok(l) => return Ok(l),
            Err((back, Errno::EINTR)) => f = back,
            Err(e) => return Err(e),
        }
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io("fsync", dir, e))
}

/// The media type a JSON document says it is, or guesses from its fields.
pub(crate) fn json_media_type(bytes: &[u8], what: &str) -> Result<String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
            what: what.to_string(),
            source,
        })?;
    if let Some(mt) = v.get("mediaType").and_then(|m| m.as_str()) {
        return Ok(mt.to_string());
    }
    if v.get("manifests").is_some() {
        Ok(media::OCI_INDEX.to_string())
    } else if v.get("config").is_some() && v.get("layers").is_some() {
        Ok(media::OCI_MANIFEST.to_string())
    } else {
        Err(ImageError::doc(
            what,
            "neither an image manifest nor an index (no mediaType, manifests or layers)",
        ))
    }
}

/// The oci-spec form of a digest.
pub(crate) fn spec_digest(d: &Digest) -> Result<oci_spec::image::Digest> {
    d.to_string().parse().map_err(|_| ImageError::BadDigest {
        field: "descriptor".into(),
        value: d.to_string(),
        reason: "not accepted by oci-spec",
    })
}

impl ContentStore {
    /// Opens (creating if needed) a store directory. The path is made absolute.
    pub fn open(dir: impl AsRef<Path>) -> Result<ContentStore> {
        let dir = dir.as_ref();
        let root = std::path::absolute(dir).map_err(|e| ImageError::io("resolve", dir, e))?;
        for sub in ["blobs/sha256", "blobs/sha512", "ingest"] {
            mkdir_all(&root.join(sub))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            let tmp = root.join("ingest").join(unique("oci-layout-"));
            std::fs::write(&tmp, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .and_then(|()| std::fs::rename(&tmp, &layout))
                .map_err(|e| ImageError::io("write", &layout, e))?;
        }
        Ok(ContentStore { root })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest is (or would be).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// Is this blob in the store (complete and verified)?
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The size of a stored blob, `None` if it is not there.
    pub fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        let p = self.blob_path(digest);
        match std::fs::metadata(&p) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io("stat", p, e)),
        }
    }

    /// Reads a small blob (at most 32 MiB: manifests, indexes, configs), verifying its
    /// digest.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        let f = File::open(&p).map_err(|e| match e.kind() {
            ErrorKind::NotFound => ImageError::BlobMissing {
                blob: digest.to_string(),
                urls: Vec::new(),
            },
            _ => ImageError::io("open", &p, e),
        })?;
        crate::digest::read_verified(
            f,
            Expect {
                name: digest.to_string(),
                digest: Some(digest.clone()),
                size: None,
            },
            READ_LIMIT,
        )
    }

    /// Stores a small blob (a manifest, a config) and returns its sha256 digest. Storing
    /// a blob that is already there changes nothing.
    pub fn put(&self, data: &[u8]) -> Result<Digest> {
        let d = crate::digest::sha256_of(data);
        self.put_expected(data, &d)?;
        Ok(d)
    }

    /// Stores a small blob that must have digest `expected`.
    pub(crate) fn put_expected(&self, data: &[u8], expected: &Digest) -> Result<()> {
        if self.contains(expected) {
            return Ok(());
        }
        let mut w = self.writer(expected, Some(data.len() as u64))?;
        if w.offset() > 0 {
            w.restart()?;
        }
        w.write_all(data)
            .map_err(|e| ImageError::io("write", &w.ingest, e))?;
        w.commit().map(|_| ())
    }

    /// A writer for the blob `expected` (of `size` bytes, when known). It writes to
    /// `ingest/<alg>-<hex>`, locked (flock) so that concurrent writers of the same digest
    /// wait for each other; a second writer that gets the lock after the first committed
    /// finds the blob present ([`BlobWriter::is_present`]).
    ///
    /// Bytes left by an earlier interrupted write are kept and hashed again:
    /// [`BlobWriter::offset`] says how many, so that a download can resume there (an HTTP
    /// Range request) or start over ([`BlobWriter::restart`]).
    ///
    /// ```no_run
    /// use std::io::Write;
    /// use berth_image::{ContentStore, Digest};
    ///
    /// let store = ContentStore::open("/var/lib/berth/content")?;
    /// let want = Digest::parse(
    ///     "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "example")?;
    /// let mut w = store.writer(&want, Some(5))?;
    /// let have = w.offset() as usize;
    /// w.write_all(&b"hello"[have..]).unwrap();
    /// w.commit()?;
    /// # Ok::<(), berth_image::ImageError>(())
    /// ```
    pub fn writer(&self, expected: &Digest, size: Option<u64>) -> Result<BlobWriter> {
        let ingest = self.root.join("ingest").join(format!(
            "{}-{}",
            expected.algorithm().name(),
            expected.hex()
        ));
        let dest = self.blob_path(expected);
        let present = |len: u64| BlobWriter {
            file: None,
            ingest: ingest.clone(),
            dest: dest.clone(),
            expected: Some(expected.clone()),
            size: Some(len),
            hasher: None,
            written: len,
            start: len,
        };
        let file = loop {
            if let Some(len) = self.size(expected)? {
                return Ok(present(len));
            }
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&ingest)
                .map_err(|e| ImageError::io("open", &ingest, e))?;
            let f = flock(f, FlockArg::LockExclusive)
                .map_err(|(_, e)| ImageError::sys("flock", &ingest, e))?;
            // The file may have been committed (renamed into blobs/) or removed while we
            // waited: use it only if the ingest path still names it.
            let ours = f
                .metadata()
                .map_err(|e| ImageError::io("stat", &ingest, e))?;
            match std::fs::metadata(&ingest) {
                Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => break f,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(ImageError::io("stat", &ingest, e)),
            }
        };
        let mut w = BlobWriter {
            file: Some(file),
            ingest,
            dest,
            expected: Some(expected.clone()),
            size,
            hasher: Some(Hasher::new(expected.algorithm())),
            written: 0,
            start: 0,
        };
        w.rehash()?;
        Ok(w)
    }

    /// A writer for a blob whose digest is not known in advance (sha256): it is computed
    /// and returned by [`BlobWriter::commit`].
    pub(crate) fn writer_unknown(&self) -> Result<BlobWriter> {
        let ingest = self.root.join("ingest").join(unique("tmp-"));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&ingest)
            .map_err(|e| ImageError::io("create", &ingest, e))?;
        let f = flock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| ImageError::sys("flock", &ingest, e))?;
        Ok(BlobWriter {
            file: Some(f),
            ingest,
            dest: PathBuf::new(),
            expected: None,
            size: None,
            hasher: Some(Hasher::new(Algorithm::Sha256)),
            written: 0,
            start: 0,
        })
    }

    /// Chooses the image a top-level blob (an image manifest, or an index walked for the
    /// first manifest of `platform`) stands for, and returns it as an [`Image`] over this
    /// store's blobs with its [`ResolvedImage`]: ready for [`unpack`](crate::unpack) or
    /// [`LayerStore::prepare`](crate::LayerStore::prepare). The manifest and config are
    /// verified; the layers are verified as they are unpacked.
    ///
    /// ```no_run
    /// use berth_image::{ContentStore, Digest, LayerStore, Platform};
    ///
    /// let content = ContentStore::open("/var/lib/berth/content")?;
    /// let top = Digest::parse(
    ///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "top")?;
    /// let (image, resolved) = content.resolve(&top, &Platform::host())?;
    /// let lowers = LayerStore::open("/var/lib/berth/layers")?.prepare(&image, &resolved)?;
    /// # Ok::<(), berth_image::ImageError>(())
    /// ```
    pub fn resolve(&self, top: &Digest, platform: &Platform) -> Result<(Image, ResolvedImage)> {
        let bytes = self.read(top)?;
        let mt = json_media_type(&bytes, &format!("blob {top}"))?;
        let desc = Descriptor::new(
            MediaType::from(mt.as_str()),
            bytes.len() as u64,
            spec_digest(top)?,
        );
        let image = Image::from_blobs(&self.root, desc);
        let resolved = image.resolve(&Selector::new(None, None, platform.clone()))?;
        Ok((image, resolved))
    }

    /// Every blob reachable from `top`: itself, and for an index its manifests (and their
    /// blobs), for a manifest its config and layers. Blobs named but absent (the other
    /// platforms' manifests of a pulled index) are included but not walked.
    pub fn referenced(&self, top: &Digest) -> Result<BTreeSet<Digest>> {
        if !self.contains(top) {
            return Err(ImageError::BlobMissing {
                blob: top.to_string(),
                urls: Vec::new(),
            });
        }
        let mut out = BTreeSet::new();
        self.walk(top, None, 0, &mut out)?;
        Ok(out)
    }

    fn walk(
        &self,
        d: &Digest,
        media_type: Option<&str>,
        depth: usize,
        out: &mut BTreeSet<Digest>,
    ) -> Result<()> {
        if !out.insert(d.clone()) || !self.contains(d) {
            return Ok(());
        }
        let kind = match media_type {
            Some(mt) => media::kind(mt),
            None => {
                let bytes = self.read(d)?;
                media::kind(&json_media_type(&bytes, &format!("blob {d}"))?)
            }
        };
        match kind {
            Kind::Index if depth < MAX_DEPTH => {
                let bytes = self.read(d)?;
                let idx: ImageIndex = parse(&bytes, &format!("index {d}"))?;
                for (i, m) in idx.manifests().iter().enumerate() {
                    let md = Digest::parse(
                        m.digest().as_ref(),
                        &format!("index {d}: manifests[{i}].digest"),
                    )?;
                    self.walk(&md, Some(m.media_type().as_ref()), depth + 1, out)?;
                }
            }
            Kind::Manifest => {
                let bytes = self.read(d)?;
                let m: ImageManifest = parse(&bytes, &format!("manifest {d}"))?;
                let cfg = m.config();
                out.insert(Digest::parse(
                    cfg.digest().as_ref(),
                    &format!("manifest {d}: config.digest"),
                )?);
                for (i, l) in m.layers().iter().enumerate() {
                    out.insert(Digest::parse(
                        l.digest().as_ref(),
                        &format!("manifest {d}: layers[{i}].digest"),
                    )?);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Removes every blob not reachable from `roots` (see
    /// [`referenced`](ContentStore::referenced)) and every ingest file no writer holds.
    /// A root that is not in the store is an error (nothing is removed): a typo must not
    /// empty the store. Writes of blobs not yet reachable from a root (a pull in progress)
    /// must not run at the same time; the manager serializes them.
    ///
    /// ```no_run
    /// let store = berth_image::ContentStore::open("/var/lib/berth/content")?;
    /// let report = store.gc(&[])?; // no image kept: everything goes
    /// println!("{} blobs, {} bytes", report.removed.len(), report.bytes);
    /// # Ok::<(), berth_image::ImageError>(())
    /// ```
    pub fn gc(&self, roots: &[Digest]) -> Result<GcReport> {
        let mut keep = BTreeSet::new();
        for r in roots {
            keep.extend(self.referenced(r)?);
        }
        let mut report = GcReport::default();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(alg.name());
            for (name, path) in list_dir(&dir)? {
                let Ok(d) = Digest::parse(&format!("{}:{name}", alg.name()), "blob file") else {
                    continue;
                };
                if keep.contains(&d) {
                    continue;
                }
                let size = std::fs::symlink_metadata(&path).map_or(0, |m| m.len());
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        report.bytes += size;
                        report.removed.push(d);
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(ImageError::io("remove", path, e)),
                }
            }
        }
        report.removed.sort();
        let ingest = self.root.join("ingest");
        for (_, path) in list_dir(&ingest)? {
            let Ok(f) = File::open(&path) else { continue };
            // Held by a writer: in use, not stale.
            let Ok(_lock) = Flock::lock(f, FlockArg::LockExclusiveNonblock) else {
                continue;
            };
            match std::fs::remove_file(&path) {
                Ok(()) => report.ingests += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::io("remove", path, e)),
            }
        }
        Ok(report)
    }

    /// Bytes and inodes the store uses (blobs, ingests and its directories).
    pub fn usage(&self) -> Result<Usage> {
        let mut u = Usage {
            bytes: 0,
            inodes: 1,
        };
        for sub in ["blobs", "blobs/sha256", "blobs/sha512", "ingest"] {
            let dir = self.root.join(sub);
            u.inodes += 1;
            if sub == "blobs" {
                continue;
            }
            for (_, path) in list_dir(&dir)? {
                if let Ok(m) = std::fs::symlink_metadata(&path) {
                    u.bytes += m.len();
                    u.inodes += 1;
                }
            }
        }
        Ok(u)
    }
}

fn parse<T: for<'de> serde::Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
        what: what.to_string(),
        source,
    })
}

/// The entries of a directory: (name, path).
fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| ImageError::io("read directory", dir, e))?;
    for e in rd {
        let e = e.map_err(|e| ImageError::io("read directory", dir, e))?;
        if let Some(name) = e.file_name().to_str() {
            out.push((name.to_string(), e.path()));
        }
    }
    Ok(out)
}

/// A blob being written into a [`ContentStore`] (from [`ContentStore::writer`]).
///
/// Write the bytes after [`offset`](BlobWriter::offset), then [`commit`](BlobWriter::commit):
/// it checks the size and digest, syncs and renames the blob into `blobs/`. A wrong digest
/// or size is an error naming both values, and the bad data is removed. Dropping a writer
/// without committing keeps the data in `ingest/` for a later resume (and releases the
/// lock); [`abort`](BlobWriter::abort) removes it.
pub struct BlobWriter {
    /// `None`: the blob was present already.
    file: Option<Flock<File>>,
    ingest: PathBuf,
    dest: PathBuf,
    expected: Option<Digest>,
    size: Option<u64>,
    hasher: Option<Hasher>,
    written: u64,
    start: u64,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("ingest", &self.ingest)
            .field("expected", &self.expected)
            .field("size", &self.size)
            .field("written", &self.written)
            .field("offset", &self.start)
            .field("present", &self.file.is_none())
            .finish()
    }
}

impl BlobWriter {
    /// Bytes already there when the writer was made (from an interrupted earlier write,
    /// or all of them if the blob is present): the next byte to write is at this offset.
    pub fn offset(&self) -> u64 {
        self.start
    }

    /// Bytes held so far (the offset plus what was written since).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Was the blob in the store already (written by someone else meanwhile)? Writes are
    /// then ignored and [`commit`](BlobWriter::commit) succeeds at once.
    pub fn is_present(&self) -> bool {
        self.file.is_none()
    }

    /// Drops the bytes of an earlier interrupted write: the next byte is at offset 0.
    pub fn restart(&mut self) -> Result<()> {
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        f.set_len(0)
            .and_then(|()| f.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| ImageError::io("truncate", &self.ingest, e))?;
        self.hasher = self.hasher.as_ref().map(|h| Hasher::new(h_alg(h)));
        self.written = 0;
        self.start = 0;
        Ok(())
    }

    /// Hashes what an earlier write left; drops it if it is longer than the blob.
    fn rehash(&mut self) -> Result<()> {
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        let len = f
            .metadata()
            .map_err(|e| ImageError::io("stat", &self.ingest, e))?
            .len();
        if len == 0 || self.size.is_some_and(|s| len > s) {
            return self.restart();
        }
        let mut buf = vec![0u8; 256 << 10];
        let mut got = 0u64;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| ImageError::io("seek", &self.ingest, e))?;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(ImageError::io("read", &self.ingest, e)),
            };
            if let Some(h) = &mut self.hasher {
                h.update(&buf[..n]);
            }
            got += n as u64;
        }
        f.seek(SeekFrom::Start(got))
            .map_err(|e| ImageError::io("seek", &self.ingest, e))?;
        self.written = got;
        self.start = got;
        Ok(())
    }

    /// Removes the partial data (as a failed verification does).
    pub fn abort(mut self) -> Result<()> {
        if self.file.take().is_some() {
            match std::fs::remove_file(&self.ingest) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::io("remove", &self.ingest, e)),
            }
        }
        Ok(())
    }

    /// Verifies the size (if given) and digest, syncs the data and renames it into
    /// `blobs/`; returns the digest. On a mismatch the data is removed and the error names
    /// the expected and actual values.
    pub fn commit(mut self) -> Result<Digest> {
        let Some(file) = self.file.take() else {
            // Present already: it was verified when it was committed.
            return self.expected.clone().ok_or(ImageError::WorkerPanicked);
        };
        let name = self
            .expected
            .as_ref()
            .map_or_else(|| self.ingest.display().to_string(), Digest::to_string);
        let fail = |e: ImageError, ingest: &Path| {
            let _ = std::fs::remove_file(ingest);
            Err(e)
        };
        if let Some(size) = self.size {
            if self.written != size {
                return fail(
                    ImageError::BlobSize {
                        blob: name,
                        expected: size,
                        actual: self.written,
                    },
                    &self.ingest,
                );
            }
        }
        let got = match self.hasher.take() {
            Some(h) => h.finish(),
            None => return Err(ImageError::WorkerPanicked),
        };
        if let Some(want) = &self.expected {
            if &got != want {
                return fail(
                    ImageError::BlobDigest {
                        blob: name,
                        actual: got.to_string(),
                    },
                    &self.ingest,
                );
            }
        }
        let dest = match &self.expected {
            Some(_) => self.dest.clone(),
            None => self
                .ingest
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("/"))
                .join("blobs")
                .join(got.algorithm().name())
                .join(got.hex()),
        };
        if dest.is_file() {
            // Another writer (of an unknown digest) stored the same content.
            let _ = std::fs::remove_file(&self.ingest);
            return Ok(got);
        }
        let synced = file
            .set_permissions(std::fs::Permissions::from_mode(0o444))
            .and_then(|()| file.sync_all());
        if let Err(e) = synced {
            return fail(ImageError::io("fsync", &self.ingest, e), &self.ingest);
        }
        std::fs::rename(&self.ingest, &dest).map_err(|e| ImageError::io("rename", &dest, e))?;
        if let Some(parent) = dest.parent() {
            fsync_dir(parent)?;
        }
        drop(file);
        Ok(got)
    }
}

fn h_alg(h: &Hasher) -> Algorithm {
    match h {
        Hasher::Sha256(_) => Algorithm::Sha256,
        Hasher::Sha512(_) => Algorithm::Sha512,
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(f) = &mut self.file else {
            return Ok(buf.len());
        };
        if let Some(size) = self.size {
            if self.written + buf.len() as u64 > size {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "blob {}: more than the expected {size} bytes",
                        self.expected
                            .as_ref()
                            .map_or_else(String::new, Digest::to_string)
                    ),
                ));
            }
        }
        let n = f.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}
