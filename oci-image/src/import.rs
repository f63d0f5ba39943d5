//! Importing image archives and layouts into a [`ContentStore`].

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::content::{ContentStore, json_media_type};
use crate::digest::{Digest, Hasher};
use crate::error::{ImageError, Result};
use crate::image::{Format, Image, Loc, REF_NAME, Selector};
use crate::media::{self, Compression, Kind, OCI_MANIFEST};

/// Deepest nesting of indexes copied.
const MAX_DEPTH: usize = 8;
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// One image an [`import`] stored: a ref of the source and the top blob it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The ref name (`org.opencontainers.image.ref.name` of an OCI source, a docker-archive's
    /// RepoTag as written), `None` for an untagged image.
    pub name: Option<String>,
    /// The top blob: the index or manifest the ref names (for a docker-archive, the OCI
    /// image manifest made for it). Give it to [`ContentStore::resolve`].
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Imports every image of an OCI archive (a tar of a layout), an OCI layout directory or a
/// docker-archive (`docker save`, `podman save --format docker-archive`) into `store`, and
/// returns one [`Imported`] per ref (index.json entry, or RepoTag).
///
/// Every blob is verified (size and digest) as it is copied, and a blob is written only
/// after the blobs it names: a top blob in the store means the image is complete. A
/// docker-archive image becomes an OCI image manifest: its config is stored as it is, its
/// layers as they are (with the OCI media type of their compression, each checked against
/// the config's diff_ids) and a manifest is made for them. Blobs already in the store are
/// not copied again. Non-distributable layers absent from the source are skipped.
///
/// ```no_run
/// use berth_image::{ContentStore, Platform, import};
///
/// let store = ContentStore::open("/var/lib/berth/content")?;
/// for i in import(&store, "/tmp/busybox.tar".as_ref())? {
///     println!("{} {}", i.name.as_deref().unwrap_or("-"), i.digest);
///     let (_image, resolved) = store.resolve(&i.digest, &Platform::host())?;
///     println!("{} layers", resolved.layers.len());
/// }
/// # Ok::<(), berth_image::ImageError>(())
/// ```
pub fn import(store: &ContentStore, path: &Path) -> Result<Vec<Imported>> {
    let image = Image::open(path)?;
    match image.format() {
        Format::DockerArchive => import_docker(store, &image),
        Format::Layout | Format::OciArchive => import_oci(store, &image),
    }
}

fn import_oci(store: &ContentStore, image: &Image) -> Result<Vec<Imported>> {
    let mut out = Vec::new();
    let tops = image.top_descriptors();
    if tops.is_empty() {
        return Err(ImageError::doc("index.json", "lists no manifest"));
    }
    for (i, d) in tops.iter().enumerate() {
        let digest = copy_tree(store, image, d, &format!("index.json manifests[{i}]"), 0)?;
        out.push(Imported {
            name: d
                .annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .cloned(),
            digest,
            media_type: d.media_type().to_string(),
            size: d.size(),
        });
    }
    Ok(out)
}

/// Copies the blob of `d` and everything it names (children first); returns its digest.
fn copy_tree(
    store: &ContentStore,
    image: &Image,
    d: &Descriptor,
    field: &str,
    depth: usize,
) -> Result<Digest> {
    if depth > MAX_DEPTH {
        return Err(ImageError::doc(
            field,
            format!("indexes nested more than {MAX_DEPTH} deep"),
        ));
    }
    let mt = d.media_type().as_ref();
    match media::kind(mt) {
        Kind::Index => {
            let (digest, bytes) = image.read_json_blob(d, field)?;
            let idx: ImageIndex = parse(&bytes, &format!("index {digest}"))?;
            for (i, m) in idx.manifests().iter().enumerate() {
                copy_tree(
                    store,
                    image,
                    m,
                    &format!("index {digest}: manifests[{i}]"),
                    depth + 1,
                )?;
            }
            store.put_expected(&bytes, &digest)?;
            Ok(digest)
        }
        Kind::Manifest => {
            let (digest, bytes) = image.read_json_blob(d, field)?;
            let what = format!("manifest {digest}");
            let m: ImageManifest = parse(&bytes, &what)?;
            let (cd, config) = image.read_json_blob(m.config(), &format!("{what}: config"))?;
            store.put_expected(&config, &cd)?;
            for (i, l) in m.layers().iter().enumerate() {
                copy_blob(store, image, l, &format!("{what}: layers[{i}]"))?;
            }
            store.put_expected(&bytes, &digest)?;
            Ok(digest)
        }
        _ => copy_blob(store, image, d, field),
    }
}

/// Streams one blob into the store, verified.
fn copy_blob(store: &ContentStore, image: &Image, d: &Descriptor, field: &str) -> Result<Digest> {
    let digest = Digest::parse(d.digest().as_ref(), &format!("{field}.digest"))?;
    if store.contains(&digest) {
        return Ok(digest);
    }
    let urls = d.urls().clone().unwrap_or_default();
    let mut r = match image.open_blob(&Loc::Digest(digest.clone()), &urls) {
        Ok(r) => r,
        Err(ImageError::BlobMissing { .. }) if !urls.is_empty() => return Ok(digest),
        Err(e) => return Err(e),
    };
    let mut w = store.writer(&digest, Some(d.size()))?;
    if w.is_present() {
        return Ok(digest);
    }
    w.restart()?;
    copy(&mut r, &mut w, &digest.to_string())?;
    w.commit()
}

fn copy(r: &mut dyn Read, w: &mut crate::content::BlobWriter, blob: &str) -> Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(ImageError::LayerStream {
                    blob: blob.to_string(),
                    what: "read",
                    source: e,
                });
            }
        };
        w.write_all(&buf[..n])
            .map_err(|e| ImageError::LayerStream {
                blob: blob.to_string(),
                what: "write to the content store",
                source: e,
            })?;
    }
}

fn parse<T: for<'de> serde::Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
        what: what.to_string(),
        source,
    })
}

/// A reader that copies what it reads into a blob writer.
struct Tee<'a, R> {
    inner: R,
    out: &'a mut crate::content::BlobWriter,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// A writer that only hashes.
struct HashSink(Hasher);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn import_docker(store: &ContentStore, image: &Image) -> Result<Vec<Imported>> {
    // Images by config digest, with their tags in the order of manifest.json.
    let mut images: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    let mut order = Vec::new();
    for r in image.refs()? {
        if !images.contains_key(&r.digest) {
            order.push(r.digest.clone());
        }
        images.entry(r.digest).or_default().push(r.name);
    }
    let mut out = Vec::new();
    for config_digest in order {
        let resolved = image.resolve(&Selector::digest(&config_digest))?;
        let cd = Digest::parse(&resolved.config_digest, "config digest")?;
        store.put_expected(&resolved.config_json, &cd)?;
        let mut layers = Vec::new();
        for l in &resolved.layers {
            let mut r = image.open_blob(&l.loc, &l.urls)?;
            let mut w = match &l.digest {
                Some(d) => {
                    let mut w = store.writer(d, l.size)?;
                    w.restart()?;
                    w
                }
                None => store.writer_unknown()?,
            };
            let mut diff = HashSink(Hasher::new(l.diff_id.algorithm()));
            let compression = {
                let mut br = BufReader::with_capacity(
                    256 << 10,
                    Tee {
                        inner: &mut r,
                        out: &mut w,
                    },
                );
                let stream_err = |what, source| ImageError::LayerStream {
                    blob: l.blob.clone(),
                    what,
                    source,
                };
                let head = br.fill_buf().map_err(|e| stream_err("read", e))?;
                let compression = if head.starts_with(&[0x1f, 0x8b]) {
                    Compression::Gzip
                } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                    Compression::Zstd
                } else {
                    Compression::None
                };
                match compression {
                    Compression::Gzip => {
                        let mut dec = flate2::bufread::MultiGzDecoder::new(&mut br);
                        io::copy(&mut dec, &mut diff).map_err(|e| stream_err("gzip", e))?;
                    }
                    Compression::Zstd => {
                        let mut dec = zstd::stream::read::Decoder::with_buffer(&mut br)
                            .map_err(|e| stream_err("zstd", e))?;
                        io::copy(&mut dec, &mut diff).map_err(|e| stream_err("zstd", e))?;
                    }
                    _ => {
                        io::copy(&mut br, &mut diff).map_err(|e| stream_err("read", e))?;
                    }
                }
                // The rest of the blob (what a decompressor left) goes into the store too.
                io::copy(&mut br, &mut io::sink()).map_err(|e| stream_err("read", e))?;
                compression
            };
            let got = diff.0.finish();
            if got != l.diff_id {
                let _ = w.abort();
                return Err(ImageError::DiffId {
                    blob: l.blob.clone(),
                    expected: l.diff_id.to_string(),
                    actual: got.to_string(),
                });
            }
            let size = w.written();
            let digest = w.commit()?;
            let media_type = match compression {
                Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                _ => "application/vnd.oci.image.layer.v1.tar",
            };
            let mut desc = serde_json::json!({
                "mediaType": media_type,
                "digest": digest.to_string(),
                "size": size,
            });
            if !l.urls.is_empty() {
                desc["urls"] = serde_json::json!(l.urls);
            }
            layers.push(desc);
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": cd.to_string(),
                "size": resolved.config_json.len(),
            },
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|source| ImageError::Json {
            what: "the manifest made for a docker-archive image".into(),
            source,
        })?;
        // It must read back as a manifest berth resolves.
        json_media_type(&bytes, "the manifest made for a docker-archive image")?;
        let digest = store.put(&bytes)?;
        for name in images.remove(&config_digest).unwrap_or_default() {
            out.push(Imported {
                name,
                digest: digest.clone(),
                media_type: OCI_MANIFEST.to_string(),
                size: bytes.len() as u64,
            });
        }
    }
    Ok(out)
}
