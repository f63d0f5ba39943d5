//! Pulls from a real registry (Debian's docker-registry, pushed to by skopeo), with and
//! without basic auth, and from a tiny fake registry that sends wrong bytes, cuts a
//! download short, and serves an index of two platforms.
#![cfg(feature = "registry")]

mod busybox;
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_image::{Auth, ContentStore, Digest, LayerStore, Platform, PullOptions, pull};
use busybox::{assert_overlay_shows_busybox, busybox, tools_or_skip};
use common::{TempDir, run, sha256_hex};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

/// A docker-registry process of the test's own, killed when dropped.
struct Registry {
    child: Child,
    port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    fn start(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        let port = free_port();
        let data = dir.join("registry-data");
        std::fs::create_dir_all(&data).unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            data.display()
        );
        if let Some(h) = htpasswd {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                h.display()
            ));
        }
        let cfg = dir.join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .unwrap();
        let r = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn push(&self, archive: &Path, name: &str, creds: Option<&str>) -> String {
        let dest = format!("127.0.0.1:{}/{name}", self.port);
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "copy",
            "--quiet",
            "--insecure-policy",
            "--dest-tls-verify=false",
        ]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        run(cmd
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("docker://{dest}")));
        dest
    }
}

fn check_pulled_image(store: &ContentStore, top: &Digest, t: &TempDir, tag: &str) {
    let (image, resolved) = store.resolve(top, &Platform::host()).unwrap();
    let layers = LayerStore::open(t.join("layers")).unwrap();
    let lowers = layers.prepare(&image, &resolved).unwrap();
    assert_overlay_shows_busybox(&lowers, &t.join(&format!("{tag}.mnt")));
}

#[test]
fn pull_from_docker_registry_over_loopback_http() {
    if !tools_or_skip("registry pull", &["umoci", "skopeo", "docker-registry"]) {
        return;
    }
    let bb = busybox();
    let t = TempDir::new("registry");
    let reg = Registry::start(t.path(), None);
    let reference = reg.push(&bb.docker_archive("busybox:1"), "busybox:1", None);
    let store = ContentStore::open(t.join("content")).unwrap();
    let seen: Arc<Mutex<Vec<berth_image::Progress>>> = Arc::default();
    let s2 = Arc::clone(&seen);
    let opts = PullOptions::default().progress(Some(Arc::new(move |p| {
        s2.lock().unwrap().push(p);
    })));
    let pulled = block_on(pull(&store, &reference, &opts)).unwrap();
    assert_eq!(pulled.reference, reference);
    assert_eq!(
        pulled.top, pulled.manifest,
        "skopeo pushed a single manifest"
    );
    let blobs = store.referenced(&pulled.top).unwrap();
    assert!(blobs.contains(&pulled.config));
    for b in &blobs {
        assert!(store.contains(b), "{b}");
    }
    let on_disk: u64 = blobs
        .iter()
        .map(|b| std::fs::metadata(store.blob_path(b)).unwrap().len())
        .sum();
    assert_eq!(pulled.size, on_disk);
    assert_eq!(files(&t.join("content/ingest")), 0);
    {
        let seen = seen.lock().unwrap();
        assert!(seen.iter().any(|p| !p.cached && p.done == p.total));
        assert!(seen.iter().all(|p| p.done <= p.total));
    }
    check_pulled_image(&store, &pulled.top, &t, "first");

    // Again: nothing is fetched, the same image comes back.
    seen.lock().unwrap().clear();
    let again = block_on(pull(&store, &reference, &opts)).unwrap();
    assert_eq!(again, pulled);
    assert!(seen.lock().unwrap().iter().all(|p| p.cached));

    // By digest, and an unknown tag.
    let by_digest = format!("127.0.0.1:{}/busybox@{}", reg.port, pulled.top);
    let p = block_on(pull(&store, &by_digest, &opts)).unwrap();
    assert_eq!(p.top, pulled.top);
    assert_eq!(p.reference, by_digest);
    let e = block_on(pull(
        &store,
        &format!("127.0.0.1:{}/busybox:nope", reg.port),
        &opts,
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("busybox:nope") && e.contains("fetch manifest"),
        "{e}"
    );
    // A bad reference is refused before any request.
    let e = block_on(pull(&store, "127.0.0.1:1/UPPER:x", &opts))
        .unwrap_err()
        .to_string();
    assert!(e.contains("UPPER"), "{e}");
}

#[test]
fn pull_with_basic_auth() {
    if !tools_or_skip(
        "registry basic auth",
        &["umoci", "skopeo", "docker-registry", "htpasswd"],
    ) {
        return;
    }
    let bb = busybox();
    let t = TempDir::new("registry-auth");
    let htpasswd = t.join("htpasswd");
    let line = run(Command::new("htpasswd").args(["-Bbn", "berth", "s3cret"]));
    std::fs::write(&htpasswd, line.trim()).unwrap();
    let reg = Registry::start(t.path(), Some(&htpasswd));
    let reference = reg.push(
        &bb.docker_archive("busybox:1"),
        "bb:auth",
        Some("berth:s3cret"),
    );
    let store = ContentStore::open(t.join("content")).unwrap();
    let wrong = PullOptions::default().auth(Auth::Basic {
        username: "berth".into(),
        password: "wrong".into(),
    });
    let e = block_on(pull(&store, &reference, &wrong))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("refused the credentials") && e.contains("bb:auth"),
        "{e}"
    );
    let e = block_on(pull(&store, &reference, &PullOptions::default()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("wants credentials"), "{e}");
    assert_eq!(files(&t.join("content/blobs/sha256")), 0, "nothing stored");
    let right = PullOptions::default().auth(Auth::Basic {
        username: "berth".into(),
        password: "s3cret".into(),
    });
    let pulled = block_on(pull(&store, &reference, &right)).unwrap();
    check_pulled_image(&store, &pulled.top, &t, "auth");
}

// ---------------------------------------------------------------------------------------
// A fake registry.

#[derive(Default)]
struct Fake {
    /// By tag or digest: (media type, body).
    manifests: BTreeMap<String, (String, Vec<u8>)>,
    blobs: BTreeMap<String, Vec<u8>>,
    /// Blobs whose first download is cut after this many bytes.
    cut: BTreeMap<String, usize>,
    /// Every request: path and Range header.
    log: Vec<(String, Option<String>)>,
    /// Token auth: the bearer token every /v2/ request needs, and the Authorization the
    /// token endpoint wants (`None`: anyone gets a token).
    token: Option<(String, Option<String>)>,
}

struct FakeRegistry {
    port: u16,
    state: Arc<Mutex<Fake>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(mut s: TcpStream, status: &str, headers: &[(&str, String)], body: &[u8], send: usize) {
    let mut h = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    let _ = s.write_all(h.as_bytes());
    let _ = s.write_all(&body[..send.min(body.len())]);
    let _ = s.flush();
}

fn serve(s: TcpStream, state: &Mutex<Fake>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    let mut range = None;
    let mut authorization = None;
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
            if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    let mut parts = first.split(' ');
    let (method, path) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("").to_string(),
    );
    let mut st = state.lock().unwrap();
    st.log.push((path.clone(), range.clone()));
    let json = ("Content-Type", "application/json".to_string());
    if let Some((token, wanted)) = st.token.clone() {
        let port = s.local_addr().map(|a| a.port()).unwrap_or(0);
        if path.starts_with("/token") {
            if wanted.is_some() && authorization != wanted {
                let body = br#"{"details":"bad credentials"}"#;
                return respond(s, "401 Unauthorized", &[json], body, body.len());
            }
            let body = format!(r#"{{"token":"{token}"}}"#);
            return respond(s, "200 OK", &[json], body.as_bytes(), body.len());
        }
        if authorization.as_deref() != Some(format!("Bearer {token}").as_str()) {
            let challenge =
                format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake""#);
            let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}"#;
            return respond(
                s,
                "401 Unauthorized",
                &[json, ("WWW-Authenticate", challenge)],
                body,
                body.len(),
            );
        }
    }
    if path == "/v2/" {
        return respond(s, "200 OK", &[json], b"{}", 2);
    }
    if let Some((_, reference)) = path.split_once("/manifests/") {
        if let Some((mt, body)) = st.manifests.get(reference).cloned() {
            let d = format!("sha256:{}", sha256_hex(&body));
            let n = if method == "HEAD" { 0 } else { body.len() };
            return respond(
                s,
                "200 OK",
                &[("Content-Type", mt), ("Docker-Content-Digest", d)],
                &body,
                n,
            );
        }
    } else if let Some((_, digest)) = path.split_once("/blobs/") {
        if let Some(body) = st.blobs.get(digest).cloned() {
            if let Some(from) = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok())
            {
                let rest = body[from.min(body.len())..].to_vec();
                let cr = format!("bytes {from}-{}/{}", body.len() - 1, body.len());
                let n = rest.len();
                return respond(s, "206 Partial Content", &[("Content-Range", cr)], &rest, n);
            }
            let n = st.cut.remove(digest).unwrap_or(body.len());
            drop(st);
            return respond(s, "200 OK", &[], &body, n);
        }
    }
    let body = br#"{"errors":[{"code":"NOT_FOUND","message":"not here"}]}"#;
    respond(s, "404 Not Found", &[json], body, body.len());
}

impl FakeRegistry {
    fn start(fake: Fake) -> FakeRegistry {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(fake));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for c in l.incoming() {
                if sp.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                if let Ok(c) = c {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                    serve(c, &st);
                }
            }
        });
        FakeRegistry {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// An image of one gzip layer: (layer blob, config, manifest).
fn small_image(content: &'static [u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let tar = common::layer(&[
        common::E::Dir("bin", 0o755),
        common::E::File("bin/hello", content, 0o755),
    ]);
    let blob = common::gzip(&tar);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": Platform::host().architecture, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest(&tar)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(&blob), "size": blob.len()}],
    }))
    .unwrap();
    (blob, config, manifest)
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn fake_registry_with_wrong_layer_bytes_commits_nothing() {
    let (blob, config, manifest) = small_image(b"#!/bin/sh\necho hi\n");
    let mut fake = Fake::default();
    fake.manifests
        .insert("1".into(), (OCI_MANIFEST.into(), manifest.clone()));
    fake.blobs.insert(digest(&config), config.clone());
    // Same size, other bytes.
    let mut garbage = blob.clone();
    let mid = garbage.len() / 2;
    garbage[mid] ^= 0xff;
    fake.blobs.insert(digest(&blob), garbage);
    let reg = FakeRegistry::start(fake);
    let t = TempDir::new("fake-wrong");
    let store = ContentStore::open(t.join("c")).unwrap();
    let reference = format!("127.0.0.1:{}/img:1", reg.port);
    let e = block_on(pull(&store, &reference, &PullOptions::default()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&digest(&blob)) && e.contains("digest mismatch"),
        "{e}"
    );
    let layer = Digest::parse(&digest(&blob), "t").unwrap();
    let m = Digest::parse(&digest(&manifest), "t").unwrap();
    assert!(!store.contains(&layer) && !store.contains(&m));
    assert_eq!(files(&t.join("c/ingest")), 0, "the bad bytes are gone");
    // The config may have been stored (it is fine), but nothing names an image.
    assert!(files(&t.join("c/blobs/sha256")) <= 1);

    // A registry sending more than the size: refused too.
    reg.state
        .lock()
        .unwrap()
        .blobs
        .insert(digest(&blob), [blob.clone(), b"extra".to_vec()].concat());
    let e = block_on(pull(&store, &reference, &PullOptions::default()))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&digest(&blob)), "{e}");
    assert!(!store.contains(&layer));
    assert_eq!(files(&t.join("c/ingest")), 0);
}

#[test]
fn fake_registry_cut_download_resumes_with_range_and_index_picks_platform() {
    let (blob, config, manifest) = small_image(b"#!/bin/sh\necho resumed\n");
    let other = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest(other), "size": other.len(),
             "platform": {"os": "linux", "architecture": "s390x"}},
            {"mediaType": OCI_MANIFEST, "digest": digest(&manifest), "size": manifest.len(),
             "platform": {"os": "linux", "architecture": Platform::host().architecture}},
        ],
    }))
    .unwrap();
    let mut fake = Fake::default();
    fake.manifests.insert(
        "multi".into(),
        (
            "application/vnd.oci.image.index.v1+json".into(),
            index.clone(),
        ),
    );
    fake.manifests
        .insert(digest(&manifest), (OCI_MANIFEST.into(), manifest.clone()));
    fake.manifests
        .insert(digest(other), (OCI_MANIFEST.into(), other.to_vec()));
    fake.blobs.insert(digest(&config), config.clone());
    fake.blobs.insert(digest(&blob), blob.clone());
    let half = blob.len() / 2;
    fake.cut.insert(digest(&blob), half);
    let reg = FakeRegistry::start(fake);
    let t = TempDir::new("fake-resume");
    let store = ContentStore::open(t.join("c")).unwrap();
    let reference = format!("127.0.0.1:{}/multi/img:multi", reg.port);
    let e = block_on(pull(&store, &reference, &PullOptions::default()));
    assert!(e.is_err(), "the cut download fails");
    // The cut layer's partial data is kept (the config, fetched at the same time, may be
    // cut short by the failed pull too).
    let layer_hex = digest(&blob).trim_start_matches("sha256:").to_owned();
    let ingests: Vec<String> = std::fs::read_dir(t.join("c/ingest"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        ingests.iter().any(|n| n.contains(&layer_hex)) && ingests.len() <= 2,
        "the partial blob is kept: {ingests:?}"
    );
    let top = Digest::parse(&digest(&index), "t").unwrap();
    assert!(!store.contains(&top));

    let pulled = block_on(pull(&store, &reference, &PullOptions::default())).unwrap();
    assert_eq!(pulled.top, top);
    assert_eq!(pulled.manifest.to_string(), digest(&manifest));
    assert_eq!(pulled.config.to_string(), digest(&config));
    let log = reg.state.lock().unwrap().log.clone();
    assert!(
        log.iter().any(|(p, r)| p.ends_with(&digest(&blob))
            && r.as_deref() == Some(format!("bytes={half}-").as_str())),
        "a Range request resumed the blob: {log:?}"
    );
    assert!(
        !log.iter().any(|(p, _)| p.contains(&digest(other))),
        "the other platform's manifest is not fetched"
    );
    assert_eq!(files(&t.join("c/ingest")), 0);
    let (image, resolved) = store.resolve(&pulled.top, &Platform::host()).unwrap();
    assert_eq!(resolved.layers.len(), 1);
    let layers = LayerStore::open(t.join("layers")).unwrap();
    let lowers = layers.prepare(&image, &resolved).unwrap();
    assert_eq!(
        std::fs::read(lowers[0].join("bin/hello")).unwrap(),
        b"#!/bin/sh\necho resumed\n"
    );
    // The platform that is not there: a clear error naming what there is.
    let e = block_on(pull(
        &store,
        &reference,
        &PullOptions::default().platform(Platform::parse("linux/riscv64").unwrap()),
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("riscv64") && e.contains("s390x"), "{e}");
}

#[test]
fn fake_registry_bearer_token_dance() {
    let (blob, config, manifest) = small_image(b"#!/bin/sh\necho token\n");
    let fake = |wanted: Option<String>| {
        let mut f = Fake::default();
        f.manifests
            .insert("1".into(), (OCI_MANIFEST.into(), manifest.clone()));
        f.blobs.insert(digest(&config), config.clone());
        f.blobs.insert(digest(&blob), blob.clone());
        f.token = Some(("t0ken".into(), wanted));
        FakeRegistry::start(f)
    };
    // Anonymous: an anonymous token from the realm.
    let reg = fake(None);
    let t = TempDir::new("fake-token");
    let store = ContentStore::open(t.join("c")).unwrap();
    let reference = format!("127.0.0.1:{}/img:1", reg.port);
    let pulled = block_on(pull(&store, &reference, &PullOptions::default())).unwrap();
    assert_eq!(pulled.manifest.to_string(), digest(&manifest));
    assert!(
        reg.state
            .lock()
            .unwrap()
            .log
            .iter()
            .any(|(p, _)| p.starts_with("/token"))
    );

    // Basic credentials exchanged for a token; wrong ones refused with a clear error.
    // ("berth:pw" in base64.)
    let reg = fake(Some("Basic YmVydGg6cHc=".into()));
    let store = ContentStore::open(t.join("c2")).unwrap();
    let reference = format!("127.0.0.1:{}/img:1", reg.port);
    let basic = |p: &str| {
        PullOptions::default().auth(Auth::Basic {
            username: "berth".into(),
            password: p.into(),
        })
    };
    let e = block_on(pull(&store, &reference, &basic("nope")))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("authenticate") && e.contains("refused the credentials"),
        "{e}"
    );
    assert_eq!(files(&t.join("c2/blobs/sha256")), 0);
    block_on(pull(&store, &reference, &basic("pw"))).unwrap();
    // A bearer token given as it is.
    let store = ContentStore::open(t.join("c3")).unwrap();
    let opts = PullOptions::default().auth(Auth::Bearer("t0ken".into()));
    block_on(pull(&store, &reference, &opts)).unwrap();
    let bad = PullOptions::default().auth(Auth::Bearer("other".into()));
    let store = ContentStore::open(t.join("c4")).unwrap();
    assert!(block_on(pull(&store, &reference, &bad)).is_err());
}
