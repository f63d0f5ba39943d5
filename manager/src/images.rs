//! Images: pulled from registries or imported from archives into the content store, named
//! in the database, collected when no name and no container keeps them.

use std::path::Path;

use berth_image::{Auth, PullOptions};
use berth_image::{Digest, Platform};
use k8s_cri::v1 as cri;

use crate::Manager;
use crate::db::ImageRecord;
use crate::error::{Error, Result};

/// The transports of a PullImage reference that import a local archive instead of pulling:
/// `docker-archive:PATH[:NAME]`, `oci-archive:PATH[:NAME]`, `oci:DIR[:NAME]` (an OCI layout
/// directory), in skopeo's syntax.
const ARCHIVES: [&str; 3] = ["docker-archive:", "oci-archive:", "oci:"];

/// The auth of a CRI AuthConfig.
fn auth_of(a: Option<&cri::AuthConfig>) -> Result<Auth> {
    let Some(a) = a else {
        return Ok(Auth::Anonymous);
    };
    if !a.username.is_empty() || !a.password.is_empty() {
        return Ok(Auth::Basic {
            username: a.username.clone(),
            password: a.password.clone(),
        });
    }
    if !a.auth.is_empty() {
        let raw =
            base64_decode(&a.auth).ok_or_else(|| Error::invalid("auth.auth", "not base64"))?;
        let text = String::from_utf8(raw).map_err(|_| Error::invalid("auth.auth", "not UTF-8"))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| Error::invalid("auth.auth", "not user:password"))?;
        return Ok(Auth::Basic {
            username: u.to_owned(),
            password: p.to_owned(),
        });
    }
    if !a.identity_token.is_empty() {
        return Ok(Auth::Bearer(a.identity_token.clone()));
    }
    if !a.registry_token.is_empty() {
        return Ok(Auth::Bearer(a.registry_token.clone()));
    }
    Ok(Auth::Anonymous)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// `NAME` without its tag or digest: the repository.
fn repository(name: &str) -> &str {
    let no_digest = name.split('@').next().unwrap_or(name);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

impl Manager {
    /// The image a container or a status call names: a name (normalized as a pull would),
    /// an image id (`sha256:...`) or a unique id prefix.
    pub fn find_image(&self, spec: &str) -> Result<ImageRecord> {
        if spec.is_empty() {
            return Err(Error::invalid("image", "empty"));
        }
        if let Ok(n) = berth_image::normalize_reference(spec)
            && let Some(r) = self.db.image(&n)?
        {
            return Ok(r);
        }
        if let Some(r) = self.db.image(spec)? {
            return Ok(r);
        }
        let all = self.db.images()?;
        let hex = spec.strip_prefix("sha256:").unwrap_or(spec);
        let by_id: Vec<&ImageRecord> = all
            .iter()
            .filter(|r| {
                hex.len() >= 6
                    && r.id
                        .strip_prefix("sha256:")
                        .is_some_and(|h| h.starts_with(hex))
            })
            .collect();
        if let Some(first) = by_id.first() {
            if by_id.iter().all(|r| r.id == first.id) {
                return Ok((*first).clone());
            }
            return Err(Error::invalid("image", format!("{spec:?} is ambiguous")));
        }
        // name@digest
        if let Some((_, d)) = spec.split_once('@')
            && let Some(r) = all.iter().find(|r| r.manifest == d || r.top == d)
        {
            return Ok(r.clone());
        }
        Err(Error::not_found("image", spec))
    }

    /// Every image name.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.db.images()
    }

    /// PullImage: from a registry, or an archive (`docker-archive:PATH[:NAME]`,
    /// `oci-archive:PATH[:NAME]`, `oci:DIR[:NAME]`). Returns the image id.
    /// Blocking: the pull runs on a runtime of its own (its future is not `Send`).
    pub fn pull(&self, reference: &str, auth: Option<&cri::AuthConfig>) -> Result<String> {
        if reference.is_empty() {
            return Err(Error::invalid("image.image", "empty"));
        }
        if let Some(t) = ARCHIVES.iter().find(|t| reference.starts_with(**t)) {
            let rest = &reference[t.len()..];
            return self.import_archive(rest);
        }
        let opts = PullOptions::default().auth(auth_of(auth)?);
        let (id, moved) = {
            // No collection while blobs are being written whose image is not recorded yet.
            let _pulling = self.gc_lock.read().unwrap_or_else(|p| p.into_inner());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("start a pull runtime", "tokio", e))?;
            let pulled = rt.block_on(berth_image::pull(&self.content, reference, &opts))?;
            self.record_image(
                &pulled.reference,
                &pulled.top,
                &pulled.manifest,
                &pulled.config,
                pulled.size,
            )?
        };
        if moved {
            self.collect_garbage()?;
        }
        Ok(id)
    }

    /// Names an image; also tells whether the name moved from another image.
    fn record_image(
        &self,
        name: &str,
        top: &Digest,
        manifest: &Digest,
        config: &Digest,
        size: u64,
    ) -> Result<(String, bool)> {
        let (_, resolved) = self.content.resolve(top, &Platform::host())?;
        let user = resolved
            .config
            .config()
            .as_ref()
            .and_then(|c| c.user().clone())
            .unwrap_or_default();
        let _g = self.images_lock.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.db.image(name)?;
        let rec = ImageRecord {
            name: name.to_owned(),
            id: config.to_string(),
            top: top.to_string(),
            manifest: manifest.to_string(),
            size,
            user,
            created: crate::now_ns() / 1_000_000_000,
        };
        self.db.put_image(&rec)?;
        Ok((rec.id, old.is_some_and(|o| o.id != config.to_string())))
    }

    fn import_archive(&self, rest: &str) -> Result<String> {
        // PATH[:NAME]: the path is the longest prefix that exists.
        let (path, name) = match rest
            .match_indices(':')
            .map(|(i, _)| i)
            .find(|&i| Path::new(&rest[..i]).exists())
        {
            Some(i) if !Path::new(rest).exists() => {
                (&rest[..i], Some(&rest[i + 1..]).filter(|n| !n.is_empty()))
            }
            _ => (rest, None),
        };
        let pulling = self.gc_lock.read().unwrap_or_else(|p| p.into_inner());
        let mut moved = false;
        let imported = berth_image::import(&self.content, Path::new(path))?;
        if imported.is_empty() {
            return Err(Error::invalid(
                "image.image",
                format!("{path}: the archive holds no image"),
            ));
        }
        let mut id = String::new();
        for (i, im) in imported.iter().enumerate() {
            let name = match (name, &im.name) {
                (Some(n), _) if i == 0 => berth_image::normalize_reference(n)?,
                (Some(_), _) => continue,
                (None, Some(n)) => berth_image::normalize_reference(n)?,
                (None, None) => {
                    return Err(Error::invalid(
                        "image.image",
                        format!(
                            "{path}: the image has no name; name it: docker-archive:{path}:NAME"
                        ),
                    ));
                }
            };
            let (_, resolved) = self.content.resolve(&im.digest, &Platform::host())?;
            let manifest = resolved
                .manifest_digest
                .clone()
                .unwrap_or_else(|| im.digest.to_string());
            let size = resolved.layers.iter().filter_map(|l| l.size).sum::<u64>()
                + resolved.config_json.len() as u64;
            let (r, m) = self.record_image(
                &name,
                &im.digest,
                &Digest::parse(&manifest, "manifest")?,
                &Digest::parse(&resolved.config_digest, "config")?,
                size,
            )?;
            moved |= m;
            if id.is_empty() {
                id = r;
            }
        }
        drop(pulling);
        if moved {
            self.collect_garbage()?;
        }
        Ok(id)
    }

    /// RemoveImage: every name of the image (`spec` a name: that name; an id: all its
    /// names). Refused while a container uses it. Idempotent.
    pub fn remove_image(&self, spec: &str) -> Result<()> {
        let img = match self.find_image(spec) {
            Ok(i) => i,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let by_name = berth_image::normalize_reference(spec)
            .ok()
            .is_some_and(|n| n == img.name)
            || spec == img.name;
        let names: Vec<String> = if by_name {
            vec![img.name.clone()]
        } else {
            self.db
                .images()?
                .into_iter()
                .filter(|r| r.id == img.id)
                .map(|r| r.name)
                .collect()
        };
        let remaining = self
            .db
            .images()?
            .iter()
            .filter(|r| r.id == img.id && !names.contains(&r.name))
            .count();
        if remaining == 0
            && let Some(c) = self
                .db
                .containers()?
                .into_iter()
                .find(|c| c.image_id == img.id)
        {
            return Err(Error::FailedPrecondition(format!(
                "image {} is used by container {}",
                img.id, c.id
            )));
        }
        {
            let _g = self.images_lock.lock().unwrap_or_else(|p| p.into_inner());
            for n in &names {
                self.db.remove_image(n)?;
            }
        }
        self.collect_garbage()
    }

    /// Removes blobs and unpacked layers no image name keeps.
    pub(crate) fn collect_garbage(&self) -> Result<()> {
        let _no_pulls = self.gc_lock.write().unwrap_or_else(|p| p.into_inner());
        let _g = self.images_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut roots = Vec::new();
        let mut keep = Vec::new();
        for r in self.db.images()? {
            let top = Digest::parse(&r.top, "image")?;
            if let Ok((_, resolved)) = self.content.resolve(&top, &Platform::host()) {
                keep.push(resolved);
            }
            roots.push(top);
        }
        self.content.gc(&roots)?;
        self.layers.retain(&keep)?;
        Ok(())
    }

    /// ImageStatus's and ListImages' view of an image.
    pub fn image_of(&self, r: &ImageRecord) -> cri::Image {
        let names: Vec<ImageRecord> = self
            .db
            .images()
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.id == r.id)
            .collect();
        let (uid, username) = match r.user.split(':').next().unwrap_or("") {
            "" => (None, String::new()),
            u => match u.parse::<i64>() {
                Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
                Err(_) => (None, u.to_owned()),
            },
        };
        cri::Image {
            id: r.id.clone(),
            repo_tags: names.iter().map(|n| n.name.clone()).collect(),
            repo_digests: names
                .iter()
                .map(|n| format!("{}@{}", repository(&n.name), n.manifest))
                .collect(),
            size: r.size,
            uid,
            username,
            spec: Some(cri::ImageSpec {
                image: r.id.clone(),
                ..Default::default()
            }),
            pinned: false,
        }
    }

    /// ImageFsInfo: the bytes and inodes of the content store and the layers.
    pub fn image_fs_usage(&self) -> Result<(u64, u64)> {
        let u = self.content.usage()?;
        let (b, i) = (u.bytes, u.inodes);
        let (lb, li) = du(&self.cfg.root.join("layers"));
        Ok((b + lb, i + li))
    }
}

/// Bytes (allocated) and inodes under a directory, not following symlinks.
pub(crate) fn du(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0;
    let mut inodes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            inodes += 1;
            bytes += md.blocks() * 512;
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_and_base64() {
        assert_eq!(
            repository("docker.io/library/busybox:latest"),
            "docker.io/library/busybox"
        );
        assert_eq!(repository("127.0.0.1:5001/bb:1"), "127.0.0.1:5001/bb");
        assert_eq!(repository("127.0.0.1:5001/bb"), "127.0.0.1:5001/bb");
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert!(base64_decode("***").is_none());
    }
}
