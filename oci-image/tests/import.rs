//! Importing archives made by real tools (umoci, skopeo, podman) into a content store,
//! then resolve, LayerStore::prepare and an overlay mount that shows /bin/busybox.

mod busybox;
mod common;

use std::process::Command;

use berth_image::{ContentStore, Digest, LayerStore, Platform, import};
use busybox::{assert_overlay_shows_busybox, busybox, have, tools_or_skip};
use common::{TempDir, run, sha256_hex};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn docker_and_oci_archives_and_a_layout_import_and_mount() {
    if !tools_or_skip("import", &["umoci", "skopeo"]) {
        return;
    }
    let bb = busybox();
    let t = TempDir::new("import");
    let layers = LayerStore::open(t.join("layers")).unwrap();
    let docker = bb.docker_archive("berth/busybox:1");
    let oci = bb.oci_archive("1");
    let cases = [
        (
            "docker-archive",
            docker.clone(),
            Some("docker.io/berth/busybox:1"),
        ),
        ("oci-archive", oci, Some("1")),
        ("layout", bb.layout(), Some("busybox")),
    ];
    let mut diff_ids = Vec::new();
    for (name, path, tag) in cases {
        let store = ContentStore::open(t.join(name)).unwrap();
        let imported = import(&store, &path).unwrap();
        assert_eq!(imported.len(), 1, "{name}: {imported:?}");
        let i = &imported[0];
        assert_eq!(i.name.as_deref(), tag, "{name}");
        assert!(store.contains(&i.digest));
        assert_eq!(
            std::fs::metadata(store.blob_path(&i.digest)).unwrap().len(),
            i.size
        );
        let (image, resolved) = store.resolve(&i.digest, &Platform::host()).unwrap();
        if name == "docker-archive" {
            // Converted: an OCI manifest over the stored config and layers.
            assert_eq!(i.media_type, OCI_MANIFEST);
            let m: serde_json::Value =
                serde_json::from_slice(&store.read(&i.digest).unwrap()).unwrap();
            assert_eq!(m["mediaType"], OCI_MANIFEST);
            assert_eq!(
                m["config"]["mediaType"],
                "application/vnd.oci.image.config.v1+json"
            );
            for l in m["layers"].as_array().unwrap() {
                let d = Digest::parse(l["digest"].as_str().unwrap(), "t").unwrap();
                assert!(store.contains(&d));
                assert!(
                    l["mediaType"]
                        .as_str()
                        .unwrap()
                        .starts_with("application/vnd.oci.image.layer.v1.tar"),
                    "{l}"
                );
            }
        }
        let blobs = store.referenced(&i.digest).unwrap();
        assert_eq!(
            blobs.len(),
            2 + resolved.layers.len(),
            "{name}: manifest, config, layers"
        );
        diff_ids.push(
            resolved
                .layers
                .iter()
                .map(|l| l.diff_id.clone())
                .collect::<Vec<_>>(),
        );
        let lowers = layers.prepare(&image, &resolved).unwrap();
        assert_overlay_shows_busybox(&lowers, &t.join(&format!("{name}.mnt")));
        // A second import stores nothing new.
        let before = store.usage().unwrap();
        assert_eq!(import(&store, &path).unwrap(), imported);
        assert_eq!(store.usage().unwrap(), before, "{name}: nothing new");
    }
    // Every form carries the same layers: the store unpacked them once.
    assert!(diff_ids.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        std::fs::read_dir(t.join("layers/layers/sha256"))
            .unwrap()
            .count(),
        diff_ids[0].len()
    );
}

#[test]
fn podman_docker_archive_imports() {
    if !tools_or_skip(
        "podman docker-archive import",
        &["umoci", "skopeo", "podman"],
    ) {
        return;
    }
    let bb = busybox();
    // podman wants a runroot of at most 50 characters.
    let short = std::path::PathBuf::from(format!("/tmp/bip{}", std::process::id()));
    std::fs::create_dir_all(&short).unwrap();
    let t = TempDir(short);
    // A podman of our own: its storage in the temp dir.
    let podman = |args: &[&str]| {
        run(Command::new("podman")
            .arg("--root")
            .arg(t.join("root"))
            .arg("--runroot")
            .arg(t.join("runroot"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .args(args));
    };
    podman(&[
        "pull",
        "-q",
        &format!("oci:{}:busybox", bb.layout().display()),
    ]);
    let archive = t.join("podman.tar");
    let out = run(Command::new("podman")
        .arg("--root")
        .arg(t.join("root"))
        .arg("--runroot")
        .arg(t.join("runroot"))
        .args([
            "--storage-driver",
            "vfs",
            "--events-backend",
            "none",
            "images",
            "-q",
        ]));
    let id = out.lines().next().unwrap().trim().to_string();
    podman(&["tag", &id, "localhost/berth/bb:podman"]);
    podman(&[
        "save",
        "-q",
        "--format",
        "docker-archive",
        "-o",
        archive.to_str().unwrap(),
        "localhost/berth/bb:podman",
    ]);
    let _ = Command::new("umount")
        .arg("-R")
        .arg(t.join("root"))
        .stderr(std::process::Stdio::null())
        .status();
    let store = ContentStore::open(t.join("c")).unwrap();
    let imported = import(&store, &archive).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(
        imported[0].name.as_deref(),
        Some("localhost/berth/bb:podman")
    );
    let (image, resolved) = store
        .resolve(&imported[0].digest, &Platform::host())
        .unwrap();
    let layers = LayerStore::open(t.join("layers")).unwrap();
    let lowers = layers.prepare(&image, &resolved).unwrap();
    assert_overlay_shows_busybox(&lowers, &t.join("mnt"));
    let _ = have;
}

/// Writes a docker-archive by hand: one layer, a config whose diff_id is `diff_id`.
fn hand_docker_archive(path: &std::path::Path, layer: &[u8], diff_id: &str) {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": Platform::host().architecture, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let chex = sha256_hex(&config);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("{chex}.json"),
        "RepoTags": ["hand/made:1"],
        "Layers": ["l0/layer.tar"],
    }]))
    .unwrap();
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in [
        ("manifest.json".to_string(), &manifest[..]),
        (format!("{chex}.json"), &config[..]),
        ("l0/layer.tar".to_string(), layer),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn docker_archive_with_a_wrong_diff_id_stores_no_image() {
    let t = TempDir::new("import-bad");
    let layer = common::layer(&[common::E::File("x", b"x\n", 0o644)]);
    let bad = t.join("bad.tar");
    let wrong = format!("sha256:{}", sha256_hex(b"something else"));
    hand_docker_archive(&bad, &layer, &wrong);
    let store = ContentStore::open(t.join("c")).unwrap();
    let e = import(&store, &bad).unwrap_err().to_string();
    assert!(e.contains(&wrong) && e.contains("l0/layer.tar"), "{e}");
    // The config may be there, but no manifest and no layer: nothing names an image.
    let layer_d = Digest::parse(&format!("sha256:{}", sha256_hex(&layer)), "t").unwrap();
    assert!(!store.contains(&layer_d));
    let n = std::fs::read_dir(t.join("c/blobs/sha256")).unwrap().count();
    assert!(n <= 1, "{n} blobs");
    assert_eq!(std::fs::read_dir(t.join("c/ingest")).unwrap().count(), 0);

    // The same archive with the right diff_id imports: an uncompressed OCI layer.
    let good = t.join("good.tar");
    hand_docker_archive(&good, &layer, &format!("sha256:{}", sha256_hex(&layer)));
    let i = import(&store, &good).unwrap();
    assert_eq!(i[0].name.as_deref(), Some("hand/made:1"));
    let m: serde_json::Value = serde_json::from_slice(&store.read(&i[0].digest).unwrap()).unwrap();
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(m["layers"][0]["digest"], layer_d.to_string());

    // Not an archive at all: a clear error.
    std::fs::write(t.join("junk.tar"), b"junk").unwrap();
    assert!(import(&store, &t.join("junk.tar")).is_err());
}
