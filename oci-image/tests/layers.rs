//! Layer semantics (whiteouts, opaque directories, replacements, hard links across layers,
//! metadata, directory times), image selection (refs, digests, nested indexes, platforms),
//! the config.json conversion and its overrides, and the bundle's life cycle.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_image::{Image, ImageError, Platform, Selector, SpecOverrides, UnpackOptions};
use common::*;

fn unpack_layers(tag: &str, layers: &[Vec<u8>], comp: Comp) -> (TempDir, std::path::PathBuf) {
    let t = TempDir::new(tag);
    let l = write_layout(&t.join("layout"), "t", layers, comp, serde_json::json!({}));
    unpack(&l.dir, "t", &t.join("bundle")).unwrap_or_else(|e| panic!("{tag}: {e}"));
    let r = t.join("bundle/rootfs");
    (t, r)
}

fn lower_and_upper() -> Vec<Vec<u8>> {
    vec![
        layer(&[
            // The root is named, so its mtime is the image's, not the time of the unpack
            // (which differs between the plain and the store unpack across a second).
            E::TimedDir("./", 1_600_000_000),
            E::Dir("a/", 0o755),
            E::File("a/lower-hidden", b"1", 0o644),
            E::File("a/same-layer", b"lower", 0o644),
            E::Dir("opq/", 0o755),
            E::File("opq/old1", b"1", 0o644),
            E::Dir("opq/olddir/", 0o755),
            E::File("opq/olddir/x", b"1", 0o644),
            E::Dir("opq2/", 0o755),
            E::File("opq2/old", b"1", 0o644),
            E::File("file-becomes-dir", b"f", 0o644),
            E::Dir("dir-becomes-file/", 0o755),
            E::File("dir-becomes-file/inner", b"i", 0o644),
            E::File("file-becomes-link", b"f", 0o644),
            E::File("target", b"shared inode", 0o640),
            E::Dir("recreated/", 0o755),
            E::File("recreated/keep", b"lower", 0o644),
        ]),
        layer(&[
            E::TimedDir("./", 1_600_000_000),
            E::File("a/.wh.lower-hidden", b"", 0o644),
            E::File("a/new", b"upper", 0o644),
            E::File("a/.wh.new", b"", 0o644), // same layer: does not hide a/new
            E::File("a/.wh.never-existed", b"", 0o644),
            E::File("opq/fresh", b"upper", 0o644),
            E::File("opq/.wh..wh..opq", b"", 0o644), // after an entry of its own layer
            E::File("opq2/.wh..wh..opq", b"", 0o644), // before one
            E::File("opq2/fresh", b"upper", 0o644),
            E::Dir("file-becomes-dir/", 0o700),
            E::File("dir-becomes-file", b"now a file", 0o600),
            E::Symlink("file-becomes-link", "target"),
            E::Hardlink("link-to-lower", "target"),
            E::File(".wh.gone-everywhere", b"", 0o644),
            // A directory whited out and made again in the same layer: only its new
            // content shows (through the overlay too).
            E::File(".wh.recreated", b"", 0o644),
            E::Dir("recreated/", 0o755),
            E::File("recreated/new", b"upper", 0o644),
        ]),
    ]
}

#[test]
fn whiteouts_opaque_dirs_and_replacements() {
    for comp in [Comp::Gzip, Comp::Zstd, Comp::None] {
        let (_t, r) = unpack_layers("whiteouts", &lower_and_upper(), comp);
        let (s, groups) = snapshot(&r);
        assert!(!s.contains_key("a/lower-hidden"));
        assert!(s.contains_key("a/same-layer"));
        assert_eq!(std::fs::read(r.join("a/new")).unwrap(), b"upper");
        assert!(!s.contains_key("opq/old1") && !s.contains_key("opq/olddir"));
        assert!(s.contains_key("opq/fresh"));
        assert!(!s.contains_key("opq2/old") && s.contains_key("opq2/fresh"));
        assert_eq!(
            (s["file-becomes-dir"].kind, s["file-becomes-dir"].mode),
            (libc::S_IFDIR, 0o700)
        );
        assert_eq!(s["dir-becomes-file"].kind, libc::S_IFREG);
        assert_eq!(s["file-becomes-link"].kind, libc::S_IFLNK);
        assert_eq!(
            groups,
            vec![vec!["link-to-lower".to_string(), "target".to_string()]]
        );
        assert!(
            s.keys().all(|k| !k.contains(".wh.")),
            "no whiteout file is created"
        );
    }
}

#[test]
fn metadata_owners_modes_xattrs_and_times() {
    let (_t, r) = unpack_layers(
        "meta",
        &[
            layer(&[
                E::TimedDir("d/", 1_000_000_000),
                E::Timed("d/f", b"x", 1_100_000_000),
                E::Rich(
                    "suid",
                    b"s",
                    0o4755,
                    1000,
                    1000,
                    vec![("user.one", b"1"), ("trusted.two", b"\x00\xff")],
                ),
                E::Rich("sticky-owned", b"", 0o1770, 7, 8, vec![]),
                E::Dir("untouched/", 0o755),
                E::Long(format!("{}/{}", "l".repeat(120), "m".repeat(120)), b"long"),
                E::Char("dev/null", 1, 3),
                E::Fifo("fifo"),
            ]),
            layer(&[
                E::Timed(
                    "untouched/added",
                    b"changes the dir, which keeps its time",
                    1_200_000_000,
                ),
                E::TimedDir("d/", 1_300_000_000),
                E::Timed("d/g", b"y", 1_300_000_000),
            ]),
        ],
        Comp::Gzip,
    );
    let (s, _) = snapshot(&r);
    assert_eq!(
        (s["suid"].uid, s["suid"].gid, s["suid"].mode),
        (1000, 1000, 0o4755)
    );
    assert_eq!(s["suid"].xattrs["user.one"], b"1");
    assert_eq!(s["suid"].xattrs["trusted.two"], b"\x00\xff");
    assert_eq!(
        (
            s["sticky-owned"].uid,
            s["sticky-owned"].gid,
            s["sticky-owned"].mode
        ),
        (7, 8, 0o1770)
    );
    assert_eq!(
        s["d"].mtime, 1_300_000_000,
        "a directory's time is set after its contents"
    );
    assert_eq!(s["d/f"].mtime, 1_100_000_000);
    assert_eq!(s["untouched/added"].mtime, 1_200_000_000);
    assert_eq!(
        s["untouched"].mtime, 1_600_000_000,
        "kept the time of its own layer"
    );
    assert_eq!(s["dev/null"].rdev, libc::makedev(1, 3));
    assert_eq!(s["fifo"].kind, libc::S_IFIFO);
    assert_eq!(s["fifo"].mode, 0o640);
    let long = format!("{}/{}", "l".repeat(120), "m".repeat(120));
    assert_eq!(std::fs::read(r.join(long)).unwrap(), b"long");
}

/// A layout whose index.json points to an index of two manifests (two platforms), plus a
/// second ref, for the selection rules.
fn multi_platform(dir: &Path) -> (String, String, String) {
    let host = Platform::host();
    let other_arch = if host.architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let mk = |tag: &str, arch: &str, content: &'static [u8]| {
        let sub = dir.join(format!("tmp-{tag}"));
        let l = write_layout(
            &sub,
            tag,
            &[layer(&[E::File("which", content, 0o644)])],
            Comp::Gzip,
            serde_json::json!({}),
        );
        // Rewrite the config's architecture.
        let cfg_path = sub
            .join("blobs/sha256")
            .join(l.config_digest.trim_start_matches("sha256:"));
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(cfg_path).unwrap()).unwrap();
        cfg["architecture"] = arch.into();
        let cfg = serde_json::to_vec(&cfg).unwrap();
        for e in std::fs::read_dir(sub.join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            put_blob(dir, &std::fs::read(e.path()).unwrap());
        }
        let cd = put_blob(dir, &cfg);
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": l.layer_digests[0],
                        "size": std::fs::metadata(sub.join("blobs/sha256").join(l.layer_digests[0].trim_start_matches("sha256:"))).unwrap().len()}],
        }))
        .unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        (put_blob(dir, &m), m.len(), arch.to_string())
    };
    let (d_other, s_other, a_other) = mk("o", other_arch, b"other");
    let (d_host, s_host, a_host) = mk("h", &host.architecture, b"host");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            // The other platform first, with a platform field; the host's without one
            // (found through its config).
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d_other, "size": s_other,
             "platform": {"os": "linux", "architecture": a_other}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d_host, "size": s_host},
        ],
    }))
    .unwrap();
    let _ = a_host;
    let di = put_blob(dir, &index);
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": di, "size": index.len(),
             "annotations": {"org.opencontainers.image.ref.name": "multi"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d_other, "size": s_other,
             "annotations": {"org.opencontainers.image.ref.name": "single"}},
        ],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    (di, d_host, d_other)
}

fn which(image: &Image, sel: &Selector, t: &TempDir, name: &str) -> String {
    let r = image.resolve(sel).unwrap();
    let b = t.join(name);
    berth_image::unpack(image, &r, &b, Default::default(), &Default::default()).unwrap();
    std::fs::read_to_string(b.join("rootfs/which")).unwrap()
}

#[test]
fn selection_by_ref_digest_and_platform() {
    let t = TempDir::new("select");
    let (index_digest, host_digest, other_digest) = multi_platform(&t.join("layout"));
    let image = Image::open(t.join("layout")).unwrap();

    let refs = image.refs().unwrap();
    assert_eq!(refs.len(), 4, "{refs:?}");
    assert_eq!(refs[0].name.as_deref(), Some("multi"));
    assert_eq!((refs[1].depth, refs[2].depth), (1, 1));
    assert!(refs[1].platform.is_some());

    // The host platform by default, through the nested index (first match wins).
    assert_eq!(
        which(&image, &Selector::reference("multi"), &t, "b1"),
        "host"
    );
    let other = Platform::parse(&format!(
        "linux/{}",
        if Platform::host().architecture == "arm64" {
            "amd64"
        } else {
            "arm64"
        }
    ))
    .unwrap();
    let sel = Selector::reference("multi").platform(other.clone());
    assert_eq!(which(&image, &sel, &t, "b2"), "other");
    // By digest: a manifest is taken whatever its platform; an index is walked.
    let sel = Selector::digest(&other_digest);
    assert_eq!(which(&image, &sel, &t, "b3"), "other");
    let sel = Selector::digest(&host_digest);
    assert_eq!(which(&image, &sel, &t, "b4"), "host");
    let sel = Selector::digest(&index_digest).platform(other);
    assert_eq!(which(&image, &sel, &t, "b5"), "other");

    // Errors: no such ref, several refs and none chosen, no manifest for the platform.
    let e = image.resolve(&Selector::reference("nope")).unwrap_err();
    assert!(e.to_string().contains("multi, single"), "{e}");
    let e = image.resolve(&Selector::default()).unwrap_err();
    assert!(matches!(e, ImageError::Ambiguous { .. }), "{e}");
    let sel = Selector::reference("multi").platform(Platform::parse("linux/s390x").unwrap());
    let e = image.resolve(&sel).unwrap_err();
    assert!(e.to_string().contains("platform linux/s390x"), "{e}");
    let sel = Selector::digest(&format!("sha256:{}", "5".repeat(64)));
    assert!(matches!(
        image.resolve(&sel).unwrap_err(),
        ImageError::NotFound { .. }
    ));
}

fn layout_with_config(t: &TempDir, config: serde_json::Value, files: &[E]) -> std::path::PathBuf {
    write_layout(&t.join("layout"), "t", &[layer(files)], Comp::Gzip, config).dir
}

#[test]
fn config_conversion_and_overrides() {
    let t = TempDir::new("config");
    let dir = layout_with_config(
        &t,
        serde_json::json!({
            "User": "app:staff",
            "Env": ["PATH=/app/bin", "LANG=C.UTF-8"],
            "Entrypoint": ["/app/run"],
            "Cmd": ["--port", "80"],
            "WorkingDir": "srv",
            "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
            "StopSignal": "SIGQUIT",
            "Volumes": {"/data": {}},
            "Labels": {"org.opencontainers.image.stopSignal": "SIGUSR2", "k": "v"},
        }),
        &[
            E::Dir("etc/", 0o755),
            E::File(
                "etc/passwd",
                b"root:x:0:0::/root:/bin/sh\napp:x:500:500::/srv:/bin/sh\n",
                0o644,
            ),
            E::File("etc/group", b"root:x:0:\nstaff:x:50:app\n", 0o644),
        ],
    );
    let image = Image::open(&dir).unwrap();
    let r = image.resolve(&Selector::reference("t")).unwrap();
    let mut base = berth_image::oci_spec::runtime::Spec::default();
    base.set_annotations(Some([("from.base".to_string(), "1".to_string())].into()));
    berth_image::unpack(&image, &r, &t.join("b"), base.clone(), &Default::default()).unwrap();
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.join("b/config.json")).unwrap()).unwrap();
    let p = &c["process"];
    assert_eq!(p["args"], serde_json::json!(["/app/run", "--port", "80"]));
    assert_eq!(p["cwd"], "/srv");
    assert_eq!(p["user"]["uid"], 500);
    assert_eq!(p["user"]["gid"], 50);
    let env: Vec<String> = serde_json::from_value(p["env"].clone()).unwrap();
    assert_eq!(env[0], "PATH=/app/bin", "replaced in place: {env:?}");
    assert!(env.contains(&"LANG=C.UTF-8".to_string()) && env.contains(&"HOME=/srv".to_string()));
    let a = &c["annotations"];
    assert_eq!(
        a["org.opencontainers.image.stopSignal"], "SIGUSR2",
        "labels win"
    );
    assert_eq!(
        a["org.opencontainers.image.exposedPorts"],
        "53/udp,8080/tcp"
    );
    assert_eq!(a["k"], "v");
    assert_eq!(a["from.base"], "1");
    assert_eq!(c["root"]["path"], "rootfs");
    let mounts = c["mounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["destination"] == "/data" && m["type"] == "tmpfs")
    );

    // Overrides win.
    let mut m = berth_image::oci_spec::runtime::Mount::default();
    m.set_destination("/data".into());
    m.set_typ(Some("bind".into()));
    m.set_source(Some("/srv/data".into()));
    let opts = UnpackOptions::default().overrides(
        SpecOverrides::default()
            .args(Some(vec!["/bin/sh".into()]))
            .env(vec!["LANG=C".into(), "NEW=1".into()])
            .cwd(Some("/tmp".into()))
            .user(Some("0:0".into()))
            .mounts(vec![m])
            .annotations([("k".to_string(), "override".to_string())].into()),
    );
    berth_image::unpack(&image, &r, &t.join("b2"), base, &opts).unwrap();
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.join("b2/config.json")).unwrap()).unwrap();
    assert_eq!(c["process"]["args"], serde_json::json!(["/bin/sh"]));
    assert_eq!(c["process"]["cwd"], "/tmp");
    assert_eq!(c["process"]["user"]["uid"], 0);
    let env: Vec<String> = serde_json::from_value(c["process"]["env"].clone()).unwrap();
    assert!(env.contains(&"LANG=C".to_string()) && env.contains(&"NEW=1".to_string()));
    assert_eq!(c["annotations"]["k"], "override");
    let data: Vec<_> = c["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] == "/data")
        .collect();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["type"], "bind");
}

#[test]
fn unknown_user_is_an_error_and_leaves_nothing() {
    let t = TempDir::new("nouser");
    let dir = layout_with_config(
        &t,
        serde_json::json!({"User": "ghost"}),
        &[
            E::Dir("etc/", 0o755),
            E::File("etc/passwd", b"root:x:0:0::/:/bin/sh\n", 0o644),
        ],
    );
    let e = unpack(&dir, "t", &t.join("b")).unwrap_err();
    assert!(e.to_string().contains("no user \"ghost\""), "{e}");
    let names: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("layout")]);
    // /etc/passwd is read inside the rootfs, whatever symlinks say: never the host's.
    for (tag, link, needle) in [
        ("self-loop", "/etc", "ELOOP"),
        ("dangling", "/../../../../nonexistent", "no /etc/passwd"),
    ] {
        let t = TempDir::new(tag);
        let dir = layout_with_config(
            &t,
            serde_json::json!({"User": "root"}),
            &[E::Symlink("etc", link)],
        );
        let e = unpack(&dir, "t", &t.join("b")).unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
        assert!(!t.join("b").exists());
    }
}

#[test]
fn bundle_must_be_new_or_empty() {
    let t = TempDir::new("bundle");
    let dir = layout_with_config(&t, serde_json::json!({}), &[E::File("f", b"f", 0o644)]);
    std::fs::create_dir(t.join("empty")).unwrap();
    unpack(&dir, "t", &t.join("empty")).unwrap();
    assert!(t.join("empty/rootfs/f").exists());
    let e = unpack(&dir, "t", &t.join("empty")).unwrap_err();
    assert!(matches!(e, ImageError::BundleExists { .. }), "{e}");
    std::fs::write(t.join("file"), b"").unwrap();
    assert!(matches!(
        unpack(&dir, "t", &t.join("file")).unwrap_err(),
        ImageError::BundleExists { .. }
    ));
    assert!(unpack(&dir, "t", &t.join("no/such/parent/b")).is_err());
    let image = Image::open(&dir).unwrap();
    let r = image.resolve(&Selector::reference("t")).unwrap();
    for opts in [
        UnpackOptions::default().mount(true),
        UnpackOptions::default()
            .rootless(true)
            .store(Some(t.join("store"))),
    ] {
        let e =
            berth_image::unpack(&image, &r, &t.join("x"), Default::default(), &opts).unwrap_err();
        assert!(matches!(e, ImageError::Unsupported { .. }), "{e}");
        assert!(!t.join("x").exists());
    }
    berth_image::remove_bundle(&t.join("empty")).unwrap();
    assert!(!t.join("empty").exists());
    let meta = std::fs::metadata(t.path()).unwrap();
    assert!(meta.is_dir() && meta.nlink() >= 2);
}

#[test]
fn store_layers_equal_the_plain_unpack() {
    // Whiteouts and opaque directories through the overlay, in a private mount namespace.
    let t = TempDir::new("store-semantics");
    let l = write_layout(
        &t.join("layout"),
        "t",
        &lower_and_upper(),
        Comp::Gzip,
        serde_json::json!({}),
    );
    unpack(&l.dir, "t", &t.join("plain")).unwrap();
    let root_mtime = std::fs::metadata(t.join("plain/rootfs")).unwrap().mtime();
    assert_eq!(
        root_mtime, 1_600_000_000,
        "the named root keeps the image's mtime"
    );
    in_private_mount_ns(|| {
        let image = Image::open(&l.dir).unwrap();
        let r = image.resolve(&Selector::reference("t")).unwrap();
        let opts = UnpackOptions::default()
            .store(Some(t.join("store")))
            .mount(true);
        berth_image::unpack(&image, &r, &t.join("ov"), Default::default(), &opts).unwrap();
        assert_same_tree(&t.join("plain/rootfs"), &t.join("ov/rootfs"));
        // The store keeps whiteouts as overlayfs does. This layer hard-links into the one
        // under it, so it is kept by chain id, not by diff_id.
        let by_diff = t
            .join("store/layers")
            .join(r.layers[1].diff_id.algorithm().name())
            .join(r.layers[1].diff_id.hex());
        assert!(
            !by_diff.exists(),
            "a layer linking into lower layers kept by diff_id"
        );
        let chained: Vec<_> = std::fs::read_dir(t.join("store/layers/chain"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(chained.len(), 1, "{chained:?}");
        let upper = chained[0].clone();
        let wh = std::fs::symlink_metadata(upper.join("a/lower-hidden")).unwrap();
        assert_eq!((wh.mode() & libc::S_IFMT, wh.rdev()), (libc::S_IFCHR, 0));
        assert_eq!(xattrs(&upper.join("opq"))["trusted.overlay.opaque"], b"y");
        berth_image::remove_bundle(&t.join("ov")).unwrap();
    });
}

#[test]
fn sha512_blobs_are_verified() {
    use sha2::{Digest as _, Sha512};
    let t = TempDir::new("sha512");
    let l = write_layout(
        &t.join("layout"),
        "t",
        &[layer(&[E::File("f", b"512", 0o644)])],
        Comp::Gzip,
        serde_json::json!({}),
    );
    let sha256_path = |d: &str| {
        l.dir
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    // Address the layer by its sha512 digest.
    let blob = std::fs::read(sha256_path(&l.layer_digests[0])).unwrap();
    let hex512: String = Sha512::digest(&blob)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::create_dir_all(l.dir.join("blobs/sha512")).unwrap();
    let p512 = l.dir.join("blobs/sha512").join(&hex512);
    std::fs::write(&p512, &blob).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sha256_path(&l.manifest_digest)).unwrap()).unwrap();
    m["layers"][0]["digest"] = format!("sha512:{hex512}").into();
    let m = serde_json::to_vec(&m).unwrap();
    let md = put_blob(&l.dir, &m);
    let mut idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.dir.join("index.json")).unwrap()).unwrap();
    idx["manifests"][0]["digest"] = md.into();
    idx["manifests"][0]["size"] = m.len().into();
    std::fs::write(l.dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();

    unpack(&l.dir, "t", &t.join("b1")).unwrap();
    assert_eq!(std::fs::read(t.join("b1/rootfs/f")).unwrap(), b"512");
    let mut bad = blob.clone();
    let n = bad.len();
    bad[n - 9] ^= 0x40; // inside the gzip trailer: the tar itself still decodes
    std::fs::write(&p512, &bad).unwrap();
    let e = unpack(&l.dir, "t", &t.join("b2")).unwrap_err();
    assert!(e.to_string().contains(&format!("sha512:{hex512}")), "{e}");
    assert!(!t.join("b2").exists());
}

#[test]
fn a_store_layer_linking_into_lower_layers_is_kept_per_chain() {
    // Two images share their top layer (same diff_id), a hard link to a file of the layer
    // under it, but their lower layers differ: each bundle must show its own file.
    let t = TempDir::new("store-chain");
    let top = layer(&[E::Hardlink("ln", "keep")]);
    let a = write_layout(
        &t.join("a"),
        "t",
        &[layer(&[E::File("keep", b"k", 0o644)]), top.clone()],
        Comp::Gzip,
        serde_json::json!({}),
    );
    let b = write_layout(
        &t.join("b"),
        "t",
        &[layer(&[E::File("keep", b"DIFFERENT", 0o644)]), top],
        Comp::Gzip,
        serde_json::json!({}),
    );
    in_private_mount_ns(|| {
        let opts = UnpackOptions::default()
            .store(Some(t.join("store")))
            .mount(true);
        for (layout, name, want) in [(&a.dir, "ba", "k"), (&b.dir, "bb", "DIFFERENT")] {
            let image = Image::open(layout).unwrap();
            let r = image.resolve(&Selector::reference("t")).unwrap();
            berth_image::unpack(&image, &r, &t.join(name), Default::default(), &opts).unwrap();
            let got = std::fs::read_to_string(t.join(name).join("rootfs/ln")).unwrap();
            assert_eq!(got, want, "{name}: the link shows another image's file");
        }
        for name in ["ba", "bb"] {
            berth_image::remove_bundle(&t.join(name)).unwrap();
        }
    });
}
