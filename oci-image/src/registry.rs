//! Pulling images from an OCI distribution registry into a [`ContentStore`] (feature
//! `registry`).

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol, SizedStream};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::content::{BlobWriter, ContentStore, json_media_type};
use crate::digest::{Digest, Hasher};
use crate::error::{ImageError, Result};
use crate::image::Platform;
use crate::media::{self, Kind};

/// Blobs downloaded at once.
const PARALLEL: usize = 3;
/// Deepest nesting of indexes followed.
const MAX_DEPTH: usize = 8;

/// The manifest media types asked for.
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// How to authenticate to the registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials (an anonymous token is still fetched if the registry wants one).
    #[default]
    Anonymous,
    /// A user name and password: sent as HTTP Basic auth, or exchanged for a bearer token
    /// at the realm a `WWW-Authenticate: Bearer` challenge names.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// A bearer token (a registry token, or CRI's `identity_token`/`registry_token`) sent
    /// as it is.
    Bearer(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { username, .. } => write!(f, "Basic({username:?}, <password>)"),
            Auth::Bearer(_) => f.write_str("Bearer(<token>)"),
        }
    }
}

/// Where a pull is: one update per chunk of each blob downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The blob.
    pub digest: Digest,
    /// Bytes of it held so far (those of a resumed download included).
    pub done: u64,
    /// Its size.
    pub total: u64,
    /// It was in the store already: nothing was downloaded.
    pub cached: bool,
}

/// How to pull: [`PullOptions::default`] (the host platform, anonymous, https except for
/// loopback registries) and the setters.
///
/// ```
/// use berth_image::{Auth, Platform, PullOptions};
/// let opts = PullOptions::default()
///     .platform(Platform::parse("linux/arm64")?)
///     .auth(Auth::Basic { username: "u".into(), password: "p".into() });
/// assert!(opts.insecure_hosts.is_empty());
/// # Ok::<(), berth_image::ImageError>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct PullOptions {
    /// The platform chosen in an index.
    pub platform: Platform,
    /// The credentials.
    pub auth: Auth,
    /// Registries (`host` or `host:port`, as in the reference) spoken to over plain http.
    /// Loopback registries (`localhost`, `127.0.0.0/8`, `::1`) always are, as containerd's
    /// CRI does.
    pub insecure_hosts: Vec<String>,
    /// Called as blobs download.
    pub progress: Option<Arc<dyn Fn(Progress) + Send + Sync>>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            auth: Auth::Anonymous,
            insecure_hosts: Vec::new(),
            progress: None,
        }
    }
}

impl fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullOptions")
            .field("platform", &self.platform)
            .field("auth", &self.auth)
            .field("insecure_hosts", &self.insecure_hosts)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl PullOptions {
    setters! {
        /// Sets [`platform`](Self::platform).
        platform: Platform,
        /// Sets [`auth`](Self::auth).
        auth: Auth,
        /// Sets [`insecure_hosts`](Self::insecure_hosts).
        insecure_hosts: Vec<String>,
        /// Sets [`progress`](Self::progress).
        progress: Option<Arc<dyn Fn(Progress) + Send + Sync>>,
    }
}

/// What [`pull`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The normalized reference ([`normalize_reference`]).
    pub reference: String,
    /// What the reference names: an index (manifest list) or a manifest. Give it to
    /// [`ContentStore::resolve`] and [`ContentStore::gc`].
    pub top: Digest,
    /// The image manifest chosen for the platform (`top` itself for a single manifest).
    pub manifest: Digest,
    /// Its config blob (its digest is the image id).
    pub config: Digest,
    /// Bytes of the chosen image: manifest, config and layers.
    pub size: u64,
}

/// Normalizes an image reference as docker does: `busybox` becomes
/// `docker.io/library/busybox:latest`, `127.0.0.1:5001/bb:1` stays as it is; a digest is
/// kept (`app@sha256:…` gets no tag). A malformed reference is an error saying why.
///
/// ```
/// use berth_image::normalize_reference;
/// assert_eq!(normalize_reference("busybox")?, "docker.io/library/busybox:latest");
/// assert_eq!(normalize_reference("127.0.0.1:5001/bb:1")?, "127.0.0.1:5001/bb:1");
/// assert!(normalize_reference("Bad/Name").is_err());
/// # Ok::<(), berth_image::ImageError>(())
/// ```
pub fn normalize_reference(reference: &str) -> Result<String> {
    parse_reference(reference).map(|r| r.whole())
}

fn parse_reference(reference: &str) -> Result<Reference> {
    let bad = |reason: String| ImageError::BadReference {
        value: reference.to_string(),
        reason,
    };
    if reference.trim() != reference {
        return Err(bad("leading or trailing white space".into()));
    }
    let r = Reference::try_from(reference).map_err(|e| bad(e.to_string()))?;
    if let Some(d) = r.digest() {
        Digest::parse(d, "reference digest").map_err(|e| bad(e.to_string()))?;
    }
    Ok(r)
}

/// Is the registry's host a loopback one (`localhost`, `127.0.0.0/8`, `::1`)?
fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match registry.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => registry,
        }
    };
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A client error, with what a refused request means for the credentials given.
fn client_err(
    reference: &str,
    op: &str,
    auth: &RegistryAuth,
    e: oci_client::errors::OciDistributionError,
) -> ImageError {
    use oci_client::errors::OciDistributionError as E;
    let hint = match (&e, auth) {
        (E::UnauthorizedError { .. } | E::AuthenticationFailure(_), RegistryAuth::Anonymous) => {
            " (the registry wants credentials)"
        }
        (E::UnauthorizedError { .. } | E::AuthenticationFailure(_), _) => {
            " (the registry refused the credentials)"
        }
        _ => "",
    };
    registry_err(reference, op, format!("{e}{hint}"))
}

fn registry_err(reference: &str, op: impl Into<String>, e: impl fmt::Display) -> ImageError {
    ImageError::Registry {
        reference: reference.to_string(),
        op: op.into(),
        reason: e.to_string(),
    }
}

fn parse_json<T: for<'de> serde::Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
        what: what.to_string(),
        source,
    })
}

fn digest_of(alg_of: Option<&Digest>, bytes: &[u8]) -> Digest {
    let mut h = Hasher::new(alg_of.map_or(crate::digest::Algorithm::Sha256, Digest::algorithm));
    h.update(bytes);
    h.finish()
}

/// The state of one pull.
struct Puller<'a> {
    client: Client,
    auth: RegistryAuth,
    reference: Reference,
    name: String,
    store: &'a ContentStore,
    opts: &'a PullOptions,
}

/// Pulls `reference` into `store`: the manifest or index it names, the manifest chosen
/// for [`PullOptions::platform`], its config and layers.
///
/// Every blob streams through [`ContentStore::writer`] and is verified (size and digest)
/// before it is committed; manifests are verified against the digest that names them. A
/// blob is committed only after those it names, the top last, so a top in the store means
/// a complete image. Blobs already in the store are not fetched; a blob whose download
/// was interrupted resumes with a Range request (or starts over if the registry ignores
/// it). Registries on loopback hosts are spoken to over plain http, others over https
/// (rustls, the system's roots) unless listed in [`PullOptions::insecure_hosts`].
///
/// It must run inside a tokio runtime (it waits for other writers of a blob on tokio's
/// blocking threads).
///
/// ```no_run
/// use berth_image::{ContentStore, PullOptions, pull};
///
/// # async fn f() -> berth_image::Result<()> {
/// let store = ContentStore::open("/var/lib/berth/content")?;
/// let pulled = pull(&store, "127.0.0.1:5000/busybox:1", &PullOptions::default()).await?;
/// println!("{} is {} ({} bytes)", pulled.reference, pulled.top, pulled.size);
/// # Ok(()) }
/// ```
pub async fn pull(store: &ContentStore, reference: &str, opts: &PullOptions) -> Result<Pulled> {
    let r = parse_reference(reference)?;
    let name = r.whole();
    // reqwest's rustls without a built-in provider: ring (no C toolchain beyond cc). A
    // provider installed earlier by the program is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut http: Vec<String> = opts.insecure_hosts.clone();
    if is_loopback(r.resolve_registry()) {
        http.push(r.resolve_registry().to_string());
    }
    let config = ClientConfig {
        protocol: ClientProtocol::HttpsExcept(http),
        platform_resolver: None,
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        ..ClientConfig::default()
    };
    let client = Client::try_from(config).map_err(|e| registry_err(&name, "make a client", e))?;
    let auth = match &opts.auth {
        Auth::Anonymous => RegistryAuth::Anonymous,
        Auth::Basic { username, password } => {
            RegistryAuth::Basic(username.clone(), password.clone())
        }
        Auth::Bearer(t) => RegistryAuth::Bearer(t.clone()),
    };
    let p = Puller {
        client,
        auth,
        reference: r,
        name,
        store,
        opts,
    };
    p.run().await
}

impl Puller<'_> {
    async fn run(&self) -> Result<Pulled> {
        if self.auth != RegistryAuth::Anonymous {
            self.client
                .auth(&self.reference, &self.auth, RegistryOperation::Pull)
                .await
                .map_err(|e| client_err(&self.name, "authenticate", &self.auth, e))?;
        }
        let want = match self.reference.digest() {
            Some(d) => Some(Digest::parse(d, "reference digest")?),
            None => None,
        };
        let bytes = self.manifest(&self.reference, want.as_ref(), None).await?;
        let top = want.unwrap_or_else(|| digest_of(None, &bytes));

        // Indexes, top first, stored after what they name.
        let mut indexes: Vec<(Digest, Vec<u8>)> = Vec::new();
        let (mut digest, mut bytes) = (top.clone(), bytes);
        loop {
            let what = format!("{} ({digest})", self.name);
            let mt = json_media_type(&bytes, &what)?;
            match media::kind(&mt) {
                Kind::Manifest => break,
                Kind::Index if indexes.len() < MAX_DEPTH => {
                    let idx: ImageIndex = parse_json(&bytes, &format!("index {digest}"))?;
                    let child = self.choose(&idx, &digest)?;
                    let cd = Digest::parse(
                        child.digest().as_ref(),
                        &format!("index {digest}: manifests[].digest"),
                    )?;
                    let r = self.reference.clone_with_digest(cd.to_string());
                    let child_bytes = self.manifest(&r, Some(&cd), Some(child.size())).await?;
                    indexes.push((digest, bytes));
                    (digest, bytes) = (cd, child_bytes);
                }
                Kind::Index => {
                    return Err(ImageError::doc(
                        what,
                        format!("indexes nested more than {MAX_DEPTH} deep"),
                    ));
                }
                _ => {
                    return Err(ImageError::MediaType {
                        what: format!("{what}: not an image manifest or index"),
                        media_type: mt,
                    });
                }
            }
        }
        let what = format!("manifest {digest}");
        let m: ImageManifest = parse_json(&bytes, &what)?;
        let cmt = m.config().media_type().as_ref();
        if media::kind(cmt) != Kind::Config {
            return Err(ImageError::MediaType {
                what: format!("{what}: config (not a container image)"),
                media_type: cmt.to_string(),
            });
        }
        let config = Digest::parse(m.config().digest().as_ref(), &format!("{what}: config"))?;
        let mut size = bytes.len() as u64 + m.config().size();
        let mut blobs = vec![(m.config().clone(), format!("{what}: config"))];
        for (i, l) in m.layers().iter().enumerate() {
            let lmt = l.media_type().as_ref();
            if !matches!(media::kind(lmt), Kind::Layer(_)) {
                return Err(ImageError::MediaType {
                    what: format!("{what}: layers[{i}]"),
                    media_type: lmt.to_string(),
                });
            }
            size += l.size();
            blobs.push((l.clone(), format!("{what}: layers[{i}]")));
        }
        // A few downloads at a time; the first error stops the others (their partial
        // data stays in ingest/ for the next pull).
        futures_util::stream::iter(blobs.iter().map(|(d, field)| self.blob(d, field)))
            .buffer_unordered(PARALLEL)
            .try_collect::<Vec<()>>()
            .await?;
        self.store.put_expected(&bytes, &digest)?;
        for (d, b) in indexes.iter().rev() {
            self.store.put_expected(b, d)?;
        }
        Ok(Pulled {
            reference: self.name.clone(),
            top,
            manifest: digest,
            config,
            size,
        })
    }

    /// The first entry of an index for the platform (entries without a platform match).
    fn choose<'i>(&self, idx: &'i ImageIndex, digest: &Digest) -> Result<&'i Descriptor> {
        let want = &self.opts.platform;
        let mut seen = Vec::new();
        // An entry without a platform is taken only if none is for this one.
        let mut untagged = None;
        for d in idx.manifests() {
            if !matches!(
                media::kind(d.media_type().as_ref()),
                Kind::Manifest | Kind::Index
            ) {
                continue;
            }
            match d.platform() {
                None => {
                    untagged.get_or_insert(d);
                }
                Some(p) => {
                    let (os, arch) = (p.os().to_string(), p.architecture().to_string());
                    if want.matches(&os, &arch, p.variant().as_deref()) {
                        return Ok(d);
                    }
                    seen.push(match p.variant() {
                        Some(v) => format!("{os}/{arch}/{v}"),
                        None => format!("{os}/{arch}"),
                    });
                }
            }
        }
        if let Some(d) = untagged {
            return Ok(d);
        }
        Err(ImageError::NotFound {
            wanted: format!("platform {want} in {} (index {digest})", self.name),
            available: if seen.is_empty() {
                "no image manifest".into()
            } else {
                seen.join(", ")
            },
        })
    }

    /// Fetches a manifest or index, verified against `want` (and `size`) when known.
    async fn manifest(
        &self,
        r: &Reference,
        want: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<Vec<u8>> {
        let (body, _) = self
            .client
            .pull_manifest_raw(r, &self.auth, ACCEPT)
            .await
            .map_err(|e| client_err(&r.whole(), "fetch manifest", &self.auth, e))?;
        if body.len() > 4 << 20 {
            return Err(registry_err(
                &r.whole(),
                "fetch manifest",
                format!("{} bytes: larger than the 4 MiB allowed", body.len()),
            ));
        }
        if let Some(want) = want {
            let got = digest_of(Some(want), &body);
            if &got != want {
                return Err(ImageError::BlobDigest {
                    blob: want.to_string(),
                    actual: got.to_string(),
                });
            }
        }
        if let Some(size) = size {
            if body.len() as u64 != size {
                return Err(ImageError::BlobSize {
                    blob: r.whole(),
                    expected: size,
                    actual: body.len() as u64,
                });
            }
        }
        Ok(body.to_vec())
    }

    fn progress(&self, digest: &Digest, done: u64, total: u64, cached: bool) {
        if let Some(f) = &self.opts.progress {
            f(Progress {
                digest: digest.clone(),
                done,
                total,
                cached,
            });
        }
    }

    /// Downloads one blob into the store (unless it is there), resuming a partial one.
    async fn blob(&self, d: &Descriptor, field: &str) -> Result<()> {
        let digest = Digest::parse(d.digest().as_ref(), &format!("{field}.digest"))?;
        let size = d.size();
        if self.store.contains(&digest) {
            self.progress(&digest, size, size, true);
            return Ok(());
        }
        let op = format!("fetch blob {digest}");
        let store = self.store.clone();
        let dg = digest.clone();
        // The writer waits for another writer of the same blob: off the async threads.
        let mut w = tokio::task::spawn_blocking(move || store.writer(&dg, Some(size)))
            .await
            .map_err(|_| ImageError::WorkerPanicked)??;
        if w.is_present() {
            self.progress(&digest, size, size, true);
            return Ok(());
        }
        if w.offset() == size {
            // Complete but not committed (killed just before): verify it as it is. If it
            // is bad, commit removed it and the download starts over.
            if tokio::task::spawn_blocking(move || w.commit())
                .await
                .map_err(|_| ImageError::WorkerPanicked)?
                .is_ok()
            {
                self.progress(&digest, size, size, true);
                return Ok(());
            }
            let (store, dg) = (self.store.clone(), digest.clone());
            w = tokio::task::spawn_blocking(move || store.writer(&dg, Some(size)))
                .await
                .map_err(|_| ImageError::WorkerPanicked)??;
            if w.is_present() {
                return Ok(());
            }
        }
        let od = OciDescriptor {
            media_type: d.media_type().to_string(),
            digest: digest.to_string(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            urls: d.urls().clone(),
            annotations: None,
            artifact_type: None,
        };
        let stream = if w.offset() > 0 && w.offset() < size {
            let resp = self
                .client
                .pull_blob_stream_partial(&self.reference, &od, w.offset(), None)
                .await
                .map_err(|e| client_err(&self.name, &op, &self.auth, e))?;
            match resp {
                BlobResponse::Partial(s) => s,
                BlobResponse::Full(s) => {
                    w.restart()?;
                    s
                }
            }
        } else {
            if w.offset() > 0 {
                w.restart()?;
            }
            self.client
                .pull_blob_stream(&self.reference, &od)
                .await
                .map_err(|e| client_err(&self.name, &op, &self.auth, e))?
        };
        if let Err((e, garbage)) = self.stream_into(stream, &mut w, &digest, size, &op).await {
            if garbage {
                w.abort()?;
            }
            return Err(e);
        }
        tokio::task::spawn_blocking(move || w.commit())
            .await
            .map_err(|_| ImageError::WorkerPanicked)??;
        Ok(())
    }

    async fn stream_into(
        &self,
        mut stream: SizedStream,
        w: &mut BlobWriter,
        digest: &Digest,
        size: u64,
        op: &str,
    ) -> std::result::Result<(), (ImageError, bool)> {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    if let Err(e) = w.write_all(&bytes) {
                        // More than the descriptor's size: garbage, not worth resuming.
                        return Err((registry_err(&self.name, op, e), true));
                    }
                    self.progress(digest, w.written(), size, false);
                }
                // All the bytes are there: the client's own check failed; ours names both
                // digests and removes the data.
                Err(_) if w.written() == size => return Ok(()),
                // Interrupted: what arrived stays in ingest/ for a resume.
                Err(e) => return Err((registry_err(&self.name, op, e), false)),
            }
        }
        if w.written() < size {
            let e = registry_err(
                &self.name,
                op,
                format!(
                    "the registry sent {} of {size} bytes (kept for a resume)",
                    w.written()
                ),
            );
            return Err((e, false));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(
            normalize_reference("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize_reference("library/busybox:1.36").unwrap(),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            normalize_reference("localhost:5000/a/b").unwrap(),
            "localhost:5000/a/b:latest"
        );
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            normalize_reference(&format!("quay.io/x@{d}")).unwrap(),
            format!("quay.io/x@{d}")
        );
        for bad in [
            "",
            "UPPER",
            "a b",
            " busybox",
            "x@sha256:abc",
            "a:b:c",
            "-x",
        ] {
            assert!(normalize_reference(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost:5000",
            "127.0.0.1:5001",
            "127.1.2.3",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "example.com",
            "index.docker.io",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
