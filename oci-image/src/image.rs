//! Opening images, listing their refs and choosing one manifest.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;

use crate::archive::{Slice, TarIndex, clean};
use crate::digest::{self, Digest, Expect};
use crate::error::{ImageError, Result};
use crate::media::{self, Compression, Kind};

/// The annotation holding a ref name on an index descriptor.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Largest JSON document (index, manifest, config) berth reads.
const JSON_LIMIT: u64 = 32 << 20;
/// Deepest nesting of indexes berth walks.
const MAX_DEPTH: usize = 8;

/// The kind of an image source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/`).
    Layout,
    /// A tar of an OCI image layout.
    OciArchive,
    /// A `docker save` tar (`manifest.json`, configs and layer tars).
    DockerArchive,
}

enum Store {
    Dir(PathBuf),
    Tar(TarIndex),
}

/// An image on disk: an OCI layout directory, an OCI archive or a docker-archive.
///
/// ```no_run
/// use berth_image::{Image, Selector};
///
/// let image = Image::open("/srv/images/debian")?;
/// for r in image.refs()? {
///     println!("{} {}", r.name.as_deref().unwrap_or("-"), r.digest);
/// }
/// let resolved = image.resolve(&Selector::reference("bookworm"))?;
/// println!("{} layers", resolved.layers.len());
/// # Ok::<(), berth_image::ImageError>(())
/// ```
pub struct Image {
    path: PathBuf,
    format: Format,
    store: Store,
    /// index.json (OCI formats).
    index: Option<ImageIndex>,
    /// manifest.json (docker-archive).
    docker: Vec<DockerEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
    #[serde(default)]
    layer_sources: Option<HashMap<String, Descriptor>>,
}

/// Where a blob is.
#[derive(Debug, Clone)]
pub(crate) enum Loc {
    /// By digest (`blobs/<alg>/<hex>`).
    Digest(Digest),
    /// By path inside a docker-archive.
    Member(String),
}

/// One entry of [`Image::refs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefInfo {
    /// The ref name (`org.opencontainers.image.ref.name`, or a docker RepoTag).
    pub name: Option<String>,
    /// The descriptor's digest (for a docker-archive: the config digest, the image id).
    pub digest: String,
    /// The media type.
    pub media_type: String,
    /// `os/arch[/variant]` if the descriptor says it.
    pub platform: Option<String>,
    /// 0 for entries of index.json, 1 for entries of an index it points to, and so on.
    pub depth: usize,
}

/// An operating system, CPU architecture and variant, in Go's names (`linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, ...
    pub os: String,
    /// `amd64`, `arm64`, `arm`, `386`, ...
    pub architecture: String,
    /// `v7`, `v8`, ... (`None`: any).
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this program runs on.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            other => other,
        };
        let variant = match arch {
            "arm64" => Some("v8".to_string()),
            _ => None,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: arch.to_string(),
            variant,
        }
    }

    /// Parses `os/arch[/variant]`.
    ///
    /// ```
    /// let p = berth_image::Platform::parse("linux/arm/v7").unwrap();
    /// assert_eq!(p.variant.as_deref(), Some("v7"));
    /// assert!(berth_image::Platform::parse("linux").is_err());
    /// ```
    pub fn parse(value: &str) -> Result<Platform> {
        let parts: Vec<&str> = value.split('/').collect();
        let bad = || ImageError::BadPlatform {
            value: value.to_string(),
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(bad()),
        }
    }

    /// Does an image of `os`/`arch`/`variant` run here? An unset variant of arm64 is v8.
    pub(crate) fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if self.os != os || self.architecture != arch {
            return false;
        }
        let Some(want) = self.variant.as_deref() else {
            return true;
        };
        let norm = |v: Option<&str>| match (arch, v) {
            ("arm64", None) => Some("v8".to_string()),
            (_, v) => v.map(str::to_string),
        };
        norm(Some(want)) == norm(variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Which image of a source to use: [`Selector::default`] (the single ref of the source),
/// [`Selector::reference`], [`Selector::digest`] or [`Selector::new`], then
/// [`platform`](Selector::platform) to choose another platform than the host's.
///
/// ```
/// use berth_image::{Platform, Selector};
/// let s = Selector::reference("v1").platform(Platform::parse("linux/arm64")?);
/// assert_eq!(s.reference.as_deref(), Some("v1"));
/// # Ok::<(), berth_image::ImageError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Selector {
    /// A ref name (`org.opencontainers.image.ref.name`; for a docker-archive a RepoTag, with
    /// or without the registry and `library/` prefixes, `:latest` implied).
    pub reference: Option<String>,
    /// A digest of a manifest or an index, at any depth (for a docker-archive: the config
    /// digest). A manifest chosen by digest is used whatever its platform.
    pub digest: Option<String>,
    /// The platform to choose in indexes; the first match wins.
    pub platform: Platform,
}

impl Default for Selector {
    /// No ref, no digest (the image must hold a single ref), the host platform.
    fn default() -> Self {
        Selector {
            reference: None,
            digest: None,
            platform: Platform::host(),
        }
    }
}

impl Selector {
    /// Selects by ref name, for the host platform.
    pub fn reference(name: &str) -> Selector {
        Selector {
            reference: Some(name.to_string()),
            ..Selector::default()
        }
    }

    /// Selects by digest (of a manifest or an index), for the host platform.
    pub fn digest(digest: &str) -> Selector {
        Selector {
            digest: Some(digest.to_string()),
            ..Selector::default()
        }
    }

    /// Selects by ref name and/or digest, for `platform`.
    pub fn new(reference: Option<String>, digest: Option<String>, platform: Platform) -> Selector {
        Selector {
            reference,
            digest,
            platform,
        }
    }

    /// The same selection for another platform.
    #[must_use]
    pub fn platform(mut self, platform: Platform) -> Selector {
        self.platform = platform;
        self
    }
}

/// A layer to apply.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The blob's name in messages: its digest, or its path in a docker-archive.
    pub blob: String,
    /// The media type (docker-archive layers without one: `application/vnd.docker.image.rootfs.diff.tar`).
    pub media_type: String,
    /// How the blob is compressed.
    pub compression: Compression,
    /// The blob's size, if a descriptor gives it.
    pub size: Option<u64>,
    /// The digest of the uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
    pub(crate) loc: Loc,
    pub(crate) digest: Option<Digest>,
    pub(crate) urls: Vec<String>,
}

/// The image chosen by a [`Selector`]: its manifest, config and layers, all verified.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The manifest's digest (`None` for a docker-archive, which has no manifest blob).
    pub manifest_digest: Option<String>,
    /// The config blob's digest.
    pub config_digest: String,
    /// The config as it is stored in the image (for `inspect`).
    pub config_json: Vec<u8>,
    /// The parsed config.
    pub config: ImageConfiguration,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
}

fn descriptor_digest(d: &Descriptor, field: &str) -> Result<Digest> {
    Digest::parse(d.digest().as_ref(), field)
}

fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
        what: what.to_string(),
        source,
    })
}

impl Image {
    /// Opens an image: a directory is read as an OCI layout; a file as an OCI archive if it
    /// holds `index.json` and `oci-layout`, else as a docker-archive if it holds
    /// `manifest.json`.
    pub fn open(path: impl AsRef<Path>) -> Result<Image> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| ImageError::io("stat", path, e))?;
        let (format, store) = if meta.is_dir() {
            (Format::Layout, Store::Dir(path.to_path_buf()))
        } else {
            let tar = TarIndex::open(path)?;
            if tar.contains("index.json") && tar.contains("oci-layout") {
                (Format::OciArchive, Store::Tar(tar))
            } else if tar.contains("manifest.json") {
                (Format::DockerArchive, Store::Tar(tar))
            } else {
                return Err(ImageError::BadSource {
                    path: path.to_path_buf(),
                    reason: "neither an OCI archive (index.json, oci-layout) nor a \
                             docker-archive (manifest.json)"
                        .into(),
                });
            }
        };
        let mut image = Image {
            path: path.to_path_buf(),
            format,
            store,
            index: None,
            docker: Vec::new(),
        };
        match format {
            Format::Layout | Format::OciArchive => {
                let layout = image.read_file("oci-layout")?;
                let v: serde_json::Value = parse_json(&layout, "oci-layout")?;
                match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
                    Some(ver) if ver.starts_with("1.") => {}
                    other => {
                        return Err(ImageError::doc(
                            "oci-layout",
                            format!("imageLayoutVersion {other:?} is not 1.x"),
                        ));
                    }
                }
                let index = image.read_file("index.json")?;
                image.index = Some(parse_json(&index, "index.json")?);
            }
            Format::DockerArchive => {
                let m = image.read_file("manifest.json")?;
                image.docker = parse_json(&m, "manifest.json")?;
                if image.docker.is_empty() {
                    return Err(ImageError::doc("manifest.json", "lists no image"));
                }
            }
        }
        Ok(image)
    }

    /// An image over a directory of blobs (`<dir>/blobs/<alg>/<hex>`, as a
    /// [`ContentStore`](crate::ContentStore) keeps them) whose only ref is `top`: a
    /// synthetic one-entry index stands for `index.json`, so [`resolve`](Image::resolve),
    /// [`unpack`](crate::unpack) and [`LayerStore::prepare`](crate::LayerStore::prepare)
    /// work on it as on a layout directory.
    ///
    /// ```no_run
    /// use berth_image::{Image, Selector, oci_spec::image::{Descriptor, MediaType}};
    ///
    /// let top: berth_image::oci_spec::image::Digest =
    ///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
    /// let image = Image::from_blobs("/var/lib/berth/content",
    ///                               Descriptor::new(MediaType::ImageManifest, 512, top));
    /// let resolved = image.resolve(&Selector::default())?;
    /// # Ok::<(), berth_image::ImageError>(())
    /// ```
    pub fn from_blobs(dir: impl AsRef<Path>, top: Descriptor) -> Image {
        let dir = dir.as_ref();
        let mut index = ImageIndex::default();
        index.set_manifests(vec![top]);
        Image {
            path: dir.to_path_buf(),
            format: Format::Layout,
            store: Store::Dir(dir.to_path_buf()),
            index: Some(index),
            docker: Vec::new(),
        }
    }

    /// The entries of `index.json` (OCI formats; empty for a docker-archive).
    pub(crate) fn top_descriptors(&self) -> &[Descriptor] {
        self.index
            .as_ref()
            .map_or(&[], |i| i.manifests().as_slice())
    }

    /// Reads and verifies a small JSON blob named by a descriptor.
    pub(crate) fn read_json_blob(&self, d: &Descriptor, field: &str) -> Result<(Digest, Vec<u8>)> {
        self.read_descriptor(d, field)
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The kind of source.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Reads a small top-level file (`index.json`, `oci-layout`, `manifest.json`).
    fn read_file(&self, name: &str) -> Result<Vec<u8>> {
        let missing = || ImageError::BadSource {
            path: self.path.clone(),
            reason: format!("{name} is missing"),
        };
        let mut out = Vec::new();
        match &self.store {
            Store::Dir(dir) => {
                let p = dir.join(name);
                let f = File::open(&p).map_err(|e| match e.kind() {
                    ErrorKind::NotFound => missing(),
                    _ => ImageError::io("open", &p, e),
                })?;
                f.take(JSON_LIMIT + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| ImageError::io("read", &p, e))?;
            }
            Store::Tar(t) => {
                let (mut r, _) = t.open_member(name)?.ok_or_else(missing)?;
                (&mut r)
                    .take(JSON_LIMIT + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| ImageError::io("read", t.path().join(name), e))?;
            }
        }
        if out.len() as u64 > JSON_LIMIT {
            return Err(ImageError::Unsupported {
                what: name.to_string(),
                reason: "larger than 32 MiB".into(),
            });
        }
        Ok(out)
    }

    /// Opens a blob for streaming; `urls` only colour the "missing" error.
    pub(crate) fn open_blob(&self, loc: &Loc, urls: &[String]) -> Result<Box<dyn Read + Send>> {
        let missing = |name: String| ImageError::BlobMissing {
            blob: name,
            urls: urls.to_vec(),
        };
        match (&self.store, loc) {
            (Store::Dir(dir), Loc::Digest(d)) => {
                let p = dir.join("blobs").join(d.algorithm().name()).join(d.hex());
                match File::open(&p) {
                    Ok(f) => Ok(Box::new(f)),
                    Err(e) if e.kind() == ErrorKind::NotFound => Err(missing(d.to_string())),
                    Err(e) => Err(ImageError::io("open", &p, e)),
                }
            }
            (Store::Tar(t), Loc::Digest(d)) => {
                let name = format!("blobs/{}/{}", d.algorithm().name(), d.hex());
                let (r, _): (Slice, u64) = t
                    .open_member(&name)?
                    .ok_or_else(|| missing(d.to_string()))?;
                Ok(Box::new(r))
            }
            (Store::Tar(t), Loc::Member(m)) => {
                let (r, _) = t.open_member(m)?.ok_or_else(|| missing(m.clone()))?;
                Ok(Box::new(r))
            }
            (Store::Dir(_), Loc::Member(m)) => Err(missing(m.clone())),
        }
    }

    /// Size of an archive member (docker-archive layers have no descriptor size).
    fn member_size(&self, name: &str) -> Result<Option<u64>> {
        match &self.store {
            Store::Tar(t) => Ok(t.open_member(name)?.map(|(_, s)| s)),
            Store::Dir(_) => Ok(None),
        }
    }

    /// Reads and verifies a small JSON blob named by a descriptor.
    fn read_descriptor(&self, d: &Descriptor, field: &str) -> Result<(Digest, Vec<u8>)> {
        let digest = descriptor_digest(d, &format!("{field}.digest"))?;
        let urls = d.urls().clone().unwrap_or_default();
        let r = self.open_blob(&Loc::Digest(digest.clone()), &urls)?;
        let bytes = digest::read_verified(
            r,
            Expect {
                name: digest.to_string(),
                digest: Some(digest.clone()),
                size: Some(d.size()),
            },
            JSON_LIMIT,
        )?;
        Ok((digest, bytes))
    }

    /// Lists the refs and manifests: index.json's entries and, indented by `depth`, the
    /// entries of the indexes they point to. For a docker-archive, one entry per RepoTag.
    pub fn refs(&self) -> Result<Vec<RefInfo>> {
        let mut out = Vec::new();
        if let Some(index) = &self.index {
            self.list(index.manifests(), 0, &mut out)?;
        }
        for e in &self.docker {
            let digest = self.docker_config_digest(e)?;
            let tags = e.repo_tags.clone().unwrap_or_default();
            let names: Vec<Option<String>> = if tags.is_empty() {
                vec![None]
            } else {
                tags.into_iter().map(Some).collect()
            };
            for name in names {
                out.push(RefInfo {
                    name,
                    digest: digest.to_string(),
                    media_type: "application/vnd.docker.container.image.v1+json".into(),
                    platform: None,
                    depth: 0,
                });
            }
        }
        Ok(out)
    }

    fn list(&self, descs: &[Descriptor], depth: usize, out: &mut Vec<RefInfo>) -> Result<()> {
        for (i, d) in descs.iter().enumerate() {
            let media_type = d.media_type().as_ref().to_string();
            out.push(RefInfo {
                name: ref_name(d).map(str::to_string),
                digest: d.digest().to_string(),
                media_type: media_type.clone(),
                platform: d.platform().as_ref().map(|p| {
                    let mut s = format!("{}/{}", p.os(), p.architecture());
                    if let Some(v) = p.variant() {
                        s.push('/');
                        s.push_str(v);
                    }
                    s
                }),
                depth,
            });
            if media::kind(&media_type) == Kind::Index && depth < MAX_DEPTH {
                let (digest, bytes) = self.read_descriptor(d, &format!("manifests[{i}]"))?;
                let idx: ImageIndex = parse_json(&bytes, &format!("index {digest}"))?;
                self.list(idx.manifests(), depth + 1, out)?;
            }
        }
        Ok(())
    }

    /// Chooses the image: by ref name or digest, walking nested indexes and picking the
    /// first manifest for the selector's platform. The manifest and config are verified.
    pub fn resolve(&self, sel: &Selector) -> Result<ResolvedImage> {
        if self.format == Format::DockerArchive {
            return self.resolve_docker(sel);
        }
        let index = self
            .index
            .as_ref()
            .ok_or_else(|| ImageError::doc("index.json", "missing"))?;
        let top = index.manifests();
        let refs_text = || {
            let mut names: Vec<String> = top
                .iter()
                .map(|d| match ref_name(d) {
                    Some(n) => n.to_string(),
                    None => d.digest().to_string(),
                })
                .collect();
            names.dedup();
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        };
        if let Some(want) = &sel.digest {
            let want = Digest::parse(want, "digest selector")?;
            let d = self
                .find_digest(top, &want, 0)?
                .ok_or_else(|| ImageError::NotFound {
                    wanted: format!("digest {want}"),
                    available: refs_text(),
                })?;
            if media::kind(d.media_type().as_ref()) == Kind::Manifest {
                return self.load_manifest(&d, "selected manifest");
            }
            let mut seen = Vec::new();
            return self
                .walk(std::slice::from_ref(&d), sel, 0, &mut seen)?
                .ok_or_else(|| no_platform(sel, &seen));
        }
        let candidates: Vec<Descriptor> = match &sel.reference {
            Some(r) => {
                let c: Vec<Descriptor> = top
                    .iter()
                    .filter(|d| ref_name(d) == Some(r.as_str()))
                    .cloned()
                    .collect();
                if c.is_empty() {
                    return Err(ImageError::NotFound {
                        wanted: format!("ref {r:?}"),
                        available: refs_text(),
                    });
                }
                c
            }
            None => {
                let mut names: Vec<&str> = top.iter().filter_map(ref_name).collect();
                names.sort_unstable();
                names.dedup();
                if names.len() > 1 {
                    return Err(ImageError::Ambiguous {
                        refs: names.join(", "),
                    });
                }
                top.to_vec()
            }
        };
        if candidates.is_empty() {
            return Err(ImageError::doc("index.json", "lists no manifest"));
        }
        let mut seen = Vec::new();
        self.walk(&candidates, sel, 0, &mut seen)?
            .ok_or_else(|| no_platform(sel, &seen))
    }

    /// Finds a descriptor by digest in index.json and nested indexes (breadth first).
    fn find_digest(
        &self,
        descs: &[Descriptor],
        want: &Digest,
        depth: usize,
    ) -> Result<Option<Descriptor>> {
        if let Some(d) = descs
            .iter()
            .find(|d| d.digest().as_ref() == want.to_string())
        {
            return Ok(Some(d.clone()));
        }
        if depth >= MAX_DEPTH {
            return Ok(None);
        }
        for (i, d) in descs.iter().enumerate() {
            if media::kind(d.media_type().as_ref()) == Kind::Index {
                let (digest, bytes) = self.read_descriptor(d, &format!("manifests[{i}]"))?;
                let idx: ImageIndex = parse_json(&bytes, &format!("index {digest}"))?;
                if let Some(found) = self.find_digest(idx.manifests(), want, depth + 1)? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// Depth-first, in order: the first manifest for the platform.
    fn walk(
        &self,
        descs: &[Descriptor],
        sel: &Selector,
        depth: usize,
        seen: &mut Vec<String>,
    ) -> Result<Option<ResolvedImage>> {
        if depth > MAX_DEPTH {
            return Err(ImageError::doc(
                "index",
                format!("indexes nested more than {MAX_DEPTH} deep"),
            ));
        }
        for (i, d) in descs.iter().enumerate() {
            let mt = d.media_type().as_ref();
            match media::kind(mt) {
                Kind::Index => {
                    let (digest, bytes) = self.read_descriptor(d, &format!("manifests[{i}]"))?;
                    let idx: ImageIndex = parse_json(&bytes, &format!("index {digest}"))?;
                    if let Some(found) = self.walk(idx.manifests(), sel, depth + 1, seen)? {
                        return Ok(Some(found));
                    }
                }
                Kind::Manifest => {
                    if let Some(p) = d.platform() {
                        let arch = p.architecture().to_string();
                        let os = p.os().to_string();
                        if !sel.platform.matches(&os, &arch, p.variant().as_deref()) {
                            seen.push(platform_text(&os, &arch, p.variant().as_deref()));
                            continue;
                        }
                    }
                    let r = self.load_manifest(d, &format!("manifests[{i}]"))?;
                    let c = &r.config;
                    let (os, arch) = (c.os().to_string(), c.architecture().to_string());
                    if sel.platform.matches(&os, &arch, c.variant().as_deref()) {
                        return Ok(Some(r));
                    }
                    seen.push(platform_text(&os, &arch, c.variant().as_deref()));
                }
                _ => seen.push(format!("{} ({mt})", d.digest())),
            }
        }
        Ok(None)
    }

    fn load_manifest(&self, d: &Descriptor, field: &str) -> Result<ResolvedImage> {
        let (digest, bytes) = self.read_descriptor(d, field)?;
        let what = format!("manifest {digest}");
        let m: ImageManifest = parse_json(&bytes, &what)?;
        let cfg = m.config();
        let cmt = cfg.media_type().as_ref();
        if media::kind(cmt) != Kind::Config {
            return Err(ImageError::MediaType {
                what: format!("{what}: config (not a container image)"),
                media_type: cmt.to_string(),
            });
        }
        let (config_digest, config_json) = self.read_descriptor(cfg, &format!("{what}.config"))?;
        let config: ImageConfiguration =
            parse_json(&config_json, &format!("config {config_digest}"))?;
        let diff_ids = diff_ids(&config, &config_digest)?;
        if diff_ids.len() != m.layers().len() {
            return Err(ImageError::doc(
                format!("config {config_digest}"),
                format!(
                    "rootfs.diff_ids has {} entries but manifest {digest} has {} layers",
                    diff_ids.len(),
                    m.layers().len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (i, (l, diff_id)) in m.layers().iter().zip(diff_ids).enumerate() {
            let field = format!("{what}.layers[{i}]");
            let mt = l.media_type().as_ref();
            let Kind::Layer(compression) = media::kind(mt) else {
                return Err(ImageError::MediaType {
                    what: field,
                    media_type: mt.to_string(),
                });
            };
            let ld = descriptor_digest(l, &format!("{field}.digest"))?;
            layers.push(Layer {
                blob: ld.to_string(),
                media_type: mt.to_string(),
                compression,
                size: Some(l.size()),
                diff_id,
                loc: Loc::Digest(ld.clone()),
                digest: Some(ld),
                urls: l.urls().clone().unwrap_or_default(),
            });
        }
        Ok(ResolvedImage {
            manifest_digest: Some(digest.to_string()),
            config_digest: config_digest.to_string(),
            config_json,
            config,
            layers,
        })
    }

    /// The digest a docker-archive's config file name encodes, if any.
    fn docker_named_digest(name: &str) -> Option<Digest> {
        let name = clean(name);
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            return Digest::parse(&format!("sha256:{hex}"), "manifest.json").ok();
        }
        let hex = name.strip_suffix(".json")?;
        Digest::parse(&format!("sha256:{hex}"), "manifest.json").ok()
    }

    fn docker_config(&self, e: &DockerEntry) -> Result<(Digest, Vec<u8>)> {
        let (r, size) = match &self.store {
            Store::Tar(t) => t.open_member(&e.config)?,
            Store::Dir(_) => None,
        }
        .ok_or_else(|| ImageError::BlobMissing {
            blob: e.config.clone(),
            urls: Vec::new(),
        })?;
        let named = Self::docker_named_digest(&e.config);
        let bytes = digest::read_verified(
            r,
            Expect {
                name: e.config.clone(),
                digest: named,
                size: Some(size),
            },
            JSON_LIMIT,
        )?;
        Ok((digest::sha256_of(&bytes), bytes))
    }

    fn docker_config_digest(&self, e: &DockerEntry) -> Result<Digest> {
        match Self::docker_named_digest(&e.config) {
            Some(d) => Ok(d),
            None => Ok(self.docker_config(e)?.0),
        }
    }

    fn resolve_docker(&self, sel: &Selector) -> Result<ResolvedImage> {
        let all_tags = || {
            let t: Vec<String> = self
                .docker
                .iter()
                .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
                .collect();
            if t.is_empty() {
                "no tags".to_string()
            } else {
                t.join(", ")
            }
        };
        let entry = if let Some(want) = &sel.digest {
            let want = Digest::parse(want, "digest selector")?;
            let mut found = None;
            for e in &self.docker {
                if self.docker_config_digest(e)? == want {
                    found = Some(e);
                    break;
                }
            }
            found.ok_or_else(|| ImageError::NotFound {
                wanted: format!("config digest {want}"),
                available: all_tags(),
            })?
        } else if let Some(r) = &sel.reference {
            let want = normalize_tag(r);
            self.docker
                .iter()
                .find(|e| {
                    e.repo_tags
                        .iter()
                        .flatten()
                        .any(|t| t == r || normalize_tag(t) == want)
                })
                .ok_or_else(|| ImageError::NotFound {
                    wanted: format!("ref {r:?}"),
                    available: all_tags(),
                })?
        } else {
            match self.docker.as_slice() {
                [one] => one,
                _ => {
                    return Err(ImageError::Ambiguous { refs: all_tags() });
                }
            }
        };
        let (config_digest, config_json) = self.docker_config(entry)?;
        let what = format!("config {}", entry.config);
        let config: ImageConfiguration = parse_json(&config_json, &what)?;
        let diff_ids = diff_ids(&config, &config_digest)?;
        if diff_ids.len() != entry.layers.len() {
            return Err(ImageError::doc(
                what,
                format!(
                    "rootfs.diff_ids has {} entries but manifest.json lists {} layers",
                    diff_ids.len(),
                    entry.layers.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
            let source = entry
                .layer_sources
                .as_ref()
                .and_then(|s| s.get(&diff_id.to_string()));
            let (media_type, compression) = match source {
                Some(d) => {
                    let mt = d.media_type().as_ref().to_string();
                    match media::kind(&mt) {
                        // The file in the archive may have been stored decompressed:
                        // look at its first bytes.
                        Kind::Layer(_) => (mt, Compression::Detect),
                        _ => {
                            return Err(ImageError::MediaType {
                                what: format!("manifest.json LayerSources[{diff_id}]"),
                                media_type: mt,
                            });
                        }
                    }
                }
                None => (
                    "application/vnd.docker.image.rootfs.diff.tar".to_string(),
                    Compression::Detect,
                ),
            };
            let size = self.member_size(path)?;
            // Layers stored as blobs/sha256/<hex> are verified against that digest; legacy
            // <id>/layer.tar files are verified through their diff_id.
            let named = clean(path)
                .strip_prefix("blobs/sha256/")
                .and_then(|h| Digest::parse(&format!("sha256:{h}"), "manifest.json").ok());
            layers.push(Layer {
                blob: path.clone(),
                media_type,
                compression,
                size,
                diff_id,
                loc: Loc::Member(path.clone()),
                digest: named,
                urls: source.and_then(|d| d.urls().clone()).unwrap_or_default(),
            });
        }
        Ok(ResolvedImage {
            manifest_digest: None,
            config_digest: config_digest.to_string(),
            config_json,
            config,
            layers,
        })
    }
}

fn diff_ids(config: &ImageConfiguration, digest: &Digest) -> Result<Vec<Digest>> {
    let rootfs = config.rootfs();
    if rootfs.typ() != "layers" {
        return Err(ImageError::doc(
            format!("config {digest}"),
            format!("rootfs.type is {:?}, not \"layers\"", rootfs.typ()),
        ));
    }
    rootfs
        .diff_ids()
        .iter()
        .enumerate()
        .map(|(i, d)| Digest::parse(d, &format!("config {digest}: rootfs.diff_ids[{i}]")))
        .collect()
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

fn platform_text(os: &str, arch: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    }
}

fn no_platform(sel: &Selector, seen: &[String]) -> ImageError {
    ImageError::NotFound {
        wanted: format!("platform {}", sel.platform),
        available: if seen.is_empty() {
            "no image manifest".to_string()
        } else {
            seen.join(", ")
        },
    }
}

/// `docker.io/library/debian:latest`, `library/debian`, `debian` -> `debian:latest`.
fn normalize_tag(t: &str) -> String {
    let t = t.strip_prefix("docker.io/").unwrap_or(t);
    let t = t.strip_prefix("library/").unwrap_or(t);
    let last = t.rsplit('/').next().unwrap_or(t);
    if last.contains(':') || last.contains('@') {
        t.to_string()
    } else {
        format!("{t}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64").unwrap();
        assert!(p.matches("linux", "arm64", Some("v8")));
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert!(p.matches("linux", "arm64", None));
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert!(!p.matches("linux", "arm", Some("v6")));
        assert!(!p.matches("linux", "amd64", None));
        assert!(Platform::parse("linux/amd64/v2/x").is_err());
        assert!(Platform::parse("linux//v2").is_err());
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        assert_eq!(Platform::parse(&h.to_string()).unwrap(), h);
    }

    #[test]
    fn docker_tags() {
        assert_eq!(normalize_tag("docker.io/library/debian"), "debian:latest");
        assert_eq!(normalize_tag("debian:12"), "debian:12");
        assert_eq!(normalize_tag("localhost:5000/x"), "localhost:5000/x:latest");
    }
}
