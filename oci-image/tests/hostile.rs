//! Hostile layers, corrupt blobs, truncated archives, wrong digests: each is contained or a
//! clear error, and nothing is written outside the bundle.
//!
//! Every case unpacks into `<sandbox>/bundle`, next to a canary directory; escapes aim at the
//! canary (by absolute path and through `..`) and at unique paths under /tmp. After each
//! case the sandbox must hold only the bundle (or nothing, on error) and the untouched
//! canary, and the /tmp targets must not exist.

mod common;

use std::path::{Path, PathBuf};

use berth_image::{Image, ImageError, Selector};
use common::*;

struct Sandbox {
    dir: TempDir,
    canary: PathBuf,
    before: Vec<String>,
}

impl Sandbox {
    fn new(tag: &str) -> Sandbox {
        let dir = TempDir::new(tag);
        let canary = dir.join("canary");
        std::fs::create_dir_all(canary.join("sub")).unwrap();
        std::fs::write(canary.join("victim"), b"precious").unwrap();
        std::fs::write(canary.join("sub/victim"), b"precious too").unwrap();
        let before = listing(&canary);
        Sandbox {
            dir,
            canary,
            before,
        }
    }

    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    /// The canary is intact and the sandbox holds nothing but it and (if `bundle`) the
    /// bundle: no temporary directory left over, nothing planted next to the bundle.
    fn check(&self, bundle: bool) {
        assert_eq!(listing(&self.canary), self.before, "canary changed");
        assert_eq!(
            std::fs::read(self.canary.join("victim")).unwrap(),
            b"precious"
        );
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let want: Vec<&str> = if bundle {
            vec!["bundle", "canary", "layout"]
        } else {
            vec!["canary", "layout"]
        };
        assert_eq!(names, want);
    }

    fn layout(&self, layers: &[Vec<u8>]) -> Layout {
        write_layout(
            &self.dir.join("layout"),
            "t",
            layers,
            Comp::Gzip,
            serde_json::json!({}),
        )
    }
}

fn leak_paths(tag: &str) -> Vec<PathBuf> {
    (0..4)
        .map(|i| {
            PathBuf::from(format!(
                "/tmp/berth-hostile-{}-{tag}-{i}",
                std::process::id()
            ))
        })
        .collect()
}

fn no_leaks(paths: &[PathBuf]) {
    for p in paths {
        assert!(
            std::fs::symlink_metadata(p).is_err(),
            "{} was created outside",
            p.display()
        );
    }
}

fn leak(tag: &str, i: usize) -> &'static str {
    Box::leak(
        leak_paths(tag)[i]
            .to_string_lossy()
            .into_owned()
            .into_boxed_str(),
    )
}

fn dotdot(p: &str) -> &'static str {
    Box::leak(format!("../../../../../../../../..{p}").into_boxed_str())
}

/// Unpacks and expects success: the tree stays inside.
fn contained(tag: &str, layers: Vec<Vec<u8>>) -> (Sandbox, PathBuf) {
    let s = Sandbox::new(tag);
    let l = s.layout(&layers);
    unpack(&l.dir, "t", &s.bundle()).unwrap_or_else(|e| panic!("{tag}: {e}"));
    s.check(true);
    let rootfs = s.bundle().join("rootfs");
    (s, rootfs)
}

/// Unpacks and expects an error mentioning `needle`; nothing may be left.
fn refused(tag: &str, layers: Vec<Vec<u8>>, needle: &str) -> ImageError {
    let s = Sandbox::new(tag);
    let l = s.layout(&layers);
    let e = unpack(&l.dir, "t", &s.bundle()).expect_err(tag);
    assert!(e.to_string().contains(needle), "{tag}: {e}");
    s.check(false);
    e
}

#[test]
fn dotdot_and_absolute_names_stay_inside() {
    let leaks = leak_paths("names");
    let (s, r) = contained(
        "names",
        vec![layer(&[
            E::File(dotdot(leak("names", 0)), b"dotdot", 0o644),
            E::File(leak("names", 1), b"absolute", 0o644),
            E::Dir("a/../../../b/", 0o755),
            E::File("./x/../../y", b"y", 0o644),
        ])],
    );
    no_leaks(&leaks);
    let inside = r.join(leak("names", 0).trim_start_matches('/'));
    assert_eq!(std::fs::read(inside).unwrap(), b"dotdot");
    assert_eq!(
        std::fs::read(r.join(leak("names", 1).trim_start_matches('/'))).unwrap(),
        b"absolute"
    );
    assert!(r.join("b").is_dir() && r.join("y").is_file());
    drop(s);
}

fn st(x: String) -> &'static str {
    Box::leak(x.into_boxed_str())
}

#[test]
fn symlinks_in_the_path_stay_inside() {
    let leaks = leak_paths("symlinks");
    let s = Sandbox::new("symlinks");
    let canary = st(s.canary.to_string_lossy().into_owned());
    let tmp_name = |i: usize| {
        st(Path::new(leak("symlinks", i))
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned())
    };
    // Lower layer: symlinks out of the root, absolute and relative, to the canary and /tmp.
    let lower = layer(&[
        E::Symlink("abs", canary),
        E::Symlink("rel", "../../../../../../../../../tmp"),
        E::Symlink("root", "/"),
        E::Symlink("victimlink", st(format!("{canary}/victim"))),
    ]);
    // Upper layer: writes of every kind through them.
    let upper = layer(&[
        E::File("abs/victim", b"overwritten?", 0o644),
        E::File("abs/sub/new", b"planted?", 0o644),
        E::File(
            st(format!("rel/{}", tmp_name(0))),
            b"through a relative symlink",
            0o644,
        ),
        E::Dir(st(format!("root/tmp/{}", tmp_name(1))), 0o755),
        E::Char(st(format!("rel/{}", tmp_name(2))), 1, 3),
        E::Symlink(st(format!("rel/{}", tmp_name(3))), "/etc/shadow"),
        E::File("victimlink", b"replaces the symlink, not its target", 0o600),
        E::File(".wh.nothing", b"", 0o644),
        E::File("abs/sub/.wh.victim", b"", 0o644),
        E::File("abs/.wh..wh..opq", b"", 0o644),
    ]);
    let l = s.layout(&[lower, upper]);
    unpack(&l.dir, "t", &s.bundle()).unwrap();
    s.check(true);
    no_leaks(&leaks);
    let r = s.bundle().join("rootfs");
    // Everything landed under the rootfs, where the symlinks point when resolved inside it.
    let inner_canary = r.join(canary.trim_start_matches('/'));
    assert_eq!(
        std::fs::read(inner_canary.join("victim")).unwrap(),
        b"overwritten?"
    );
    assert_eq!(
        std::fs::read(inner_canary.join("sub/new")).unwrap(),
        b"planted?"
    );
    assert!(r.join("tmp").join(tmp_name(0)).is_file());
    assert!(r.join("tmp").join(tmp_name(1)).is_dir());
    assert!(std::fs::symlink_metadata(r.join("tmp").join(tmp_name(2))).is_ok());
    assert!(
        std::fs::symlink_metadata(r.join("victimlink"))
            .unwrap()
            .is_file()
    );
}

#[test]
fn symlink_loops_and_non_directories_are_errors() {
    refused(
        "loop",
        vec![layer(&[
            E::Symlink("loop", "loop"),
            E::File("loop/x", b"", 0o644),
        ])],
        "ELOOP",
    );
    refused(
        "notdir",
        vec![layer(&[
            E::File("f", b"", 0o644),
            E::File("f/x", b"", 0o644),
        ])],
        "\"f/x\"",
    );
}

#[test]
fn hardlinks_cannot_reach_outside() {
    let leaks = leak_paths("hardlinks");
    // A link to /etc/passwd names the rootfs' own /etc/passwd.
    let (s, r) = contained(
        "hardlinks",
        vec![layer(&[
            E::Dir("etc/", 0o755),
            E::File("etc/passwd", b"root:x:0:0::/:/bin/sh\n", 0o644),
            E::Hardlink("h1", dotdot("/etc/passwd")),
            E::Hardlink("h2", "/etc/passwd"),
            E::Symlink("s", "/etc/passwd"),
            E::Hardlink("h3", "s"),
        ])],
    );
    use std::os::unix::fs::MetadataExt;
    let inner = std::fs::metadata(r.join("etc/passwd")).unwrap();
    for h in ["h1", "h2"] {
        assert_eq!(std::fs::metadata(r.join(h)).unwrap().ino(), inner.ino());
    }
    // A hard link to a symlink is the symlink itself, not the host file it names.
    assert!(
        std::fs::symlink_metadata(r.join("h3"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let host = std::fs::metadata("/etc/passwd").unwrap();
    assert_ne!(host.ino(), inner.ino());
    no_leaks(&leaks);
    drop(s);
    // A link to something absent inside the rootfs is an error, even if it exists outside.
    // Through a symlink of a lower layer pointing at a host file's directory: resolved
    // inside the rootfs, where there is no such file.
    let s = Sandbox::new("hardlink-symlink");
    let canary = st(s.canary.to_string_lossy().into_owned());
    let l = s.layout(&[
        layer(&[E::Symlink("out", canary)]),
        layer(&[
            E::Hardlink("h", "out/victim"),
            E::File("out/.wh.victim", b"", 0o644),
        ]),
    ]);
    let e = unpack(&l.dir, "t", &s.bundle()).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    s.check(false);
    refused(
        "hardlink-missing",
        vec![layer(&[E::Hardlink("h", "/etc/hostname")])],
        "does not exist",
    );
    refused(
        "hardlink-dir",
        vec![layer(&[E::Dir("d/", 0o755), E::Hardlink("h", "d")])],
        "is a directory",
    );
    refused(
        "hardlink-root",
        vec![layer(&[E::Hardlink("h", "../..")])],
        "root directory",
    );
}

#[test]
fn whiteouts_cannot_name_outside_paths() {
    let (s, r) = contained(
        "whiteouts",
        vec![
            layer(&[E::File("keep", b"k", 0o644)]),
            layer(&[
                E::File(dotdot("/canary/.wh.victim"), b"", 0o644),
                E::File("../.wh.canary", b"", 0o644),
                E::File("/.wh.layout", b"", 0o644),
            ]),
        ],
    );
    assert!(r.join("keep").exists());
    drop(s);
    refused(
        "whiteout-dotdot",
        vec![layer(&[E::File("a/.wh...", b"", 0o644)])],
        "invalid name",
    );
}

#[test]
fn hostile_device_and_special_entries() {
    // A device through a symlink to /dev lands inside; an unknown entry type is refused.
    let (s, r) = contained(
        "devices",
        vec![layer(&[
            E::Symlink("d", "/dev"),
            E::Char("d/berth-test-null", 1, 3),
        ])],
    );
    assert!(r.join("dev/berth-test-null").exists());
    assert!(!Path::new("/dev/berth-test-null").exists());
    drop(s);
    let mut tar = layer(&[E::File("x", b"", 0o644)]);
    tar[156] = b'V'; // volume label
    let mut h = tar::Header::from_byte_slice(&tar[..512]).clone();
    h.set_cksum();
    tar[..512].copy_from_slice(h.as_bytes());
    refused("volume", vec![tar], "unsupported tar entry type");
}

fn corrupt_case(tag: &str, edit: impl FnOnce(&Layout), needle: &str) {
    let s = Sandbox::new(tag);
    let l = s.layout(&[
        layer(&[
            E::File("a", b"aaaa", 0o644),
            E::File("big", &[7u8; 200_000], 0o644),
        ]),
        layer(&[E::File("b", b"bbbb", 0o644)]),
    ]);
    edit(&l);
    let e = unpack(&l.dir, "t", &s.bundle()).expect_err(tag);
    assert!(e.to_string().contains(needle), "{tag}: {e}");
    s.check(false);
}

fn blob_path(l: &Layout, digest: &str) -> PathBuf {
    l.dir
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
fn corrupt_blobs_are_errors_naming_the_blob() {
    corrupt_case(
        "flipped",
        |l| {
            let p = blob_path(l, &l.layer_digests[1]);
            let mut b = std::fs::read(&p).unwrap();
            let n = b.len();
            b[n / 2] ^= 0xff;
            std::fs::write(p, b).unwrap();
        },
        "digest mismatch",
    );
    let s = Sandbox::new("flipped2");
    let l = s.layout(&[layer(&[E::File("a", &[1u8; 100_000], 0o644)])]);
    let p = blob_path(&l, &l.layer_digests[0]);
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n - 20] ^= 1;
    std::fs::write(&p, b).unwrap();
    let e = unpack(&l.dir, "t", &s.bundle()).unwrap_err();
    assert!(e.to_string().contains(&l.layer_digests[0]), "{e}");
    s.check(false);

    corrupt_case(
        "truncated-blob",
        |l| {
            let p = blob_path(l, &l.layer_digests[0]);
            let b = std::fs::read(&p).unwrap();
            std::fs::write(p, &b[..b.len() / 2]).unwrap();
        },
        "size mismatch",
    );
    corrupt_case(
        "missing-blob",
        |l| std::fs::remove_file(blob_path(l, &l.layer_digests[1])).unwrap(),
        "is missing from the image",
    );
    corrupt_case(
        "corrupt-manifest",
        |l| {
            let p = blob_path(l, &l.manifest_digest);
            let mut b = std::fs::read(&p).unwrap();
            b.push(b' ');
            std::fs::write(p, b).unwrap();
        },
        "size mismatch",
    );
    corrupt_case(
        "corrupt-config",
        |l| {
            let p = blob_path(l, &l.config_digest);
            let b = std::fs::read_to_string(&p)
                .unwrap()
                .replace("linux", "LINUX");
            std::fs::write(p, b).unwrap();
        },
        "digest mismatch",
    );
}

/// Rewrites the image so its config says `f(config)`, keeping every digest consistent.
fn rewrite_config(l: &Layout, f: impl FnOnce(&mut serde_json::Value)) {
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_path(l, &l.config_digest)).unwrap()).unwrap();
    f(&mut cfg);
    rewrite_manifest(l, |m| {
        let bytes = serde_json::to_vec(&cfg).unwrap();
        let d = put_blob(&l.dir, &bytes);
        m["config"]["digest"] = d.into();
        m["config"]["size"] = bytes.len().into();
    });
}

fn rewrite_manifest(l: &Layout, f: impl FnOnce(&mut serde_json::Value)) {
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_path(l, &l.manifest_digest)).unwrap()).unwrap();
    f(&mut m);
    let bytes = serde_json::to_vec(&m).unwrap();
    let d = put_blob(&l.dir, &bytes);
    let mut idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.dir.join("index.json")).unwrap()).unwrap();
    idx["manifests"][0]["digest"] = d.into();
    idx["manifests"][0]["size"] = bytes.len().into();
    std::fs::write(l.dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
}

#[test]
fn wrong_digests_sizes_and_types_are_errors() {
    corrupt_case(
        "diff-id",
        |l| {
            rewrite_config(l, |c| {
                c["rootfs"]["diff_ids"][1] =
                    "sha256:0000000000000000000000000000000000000000000000000000000000000000".into()
            })
        },
        "but diff_id is sha256:0000",
    );
    corrupt_case(
        "wrong-size",
        |l| rewrite_manifest(l, |m| m["layers"][0]["size"] = 10.into()),
        "size mismatch: expected 10 bytes",
    );
    corrupt_case(
        "wrong-digest",
        |l| {
            rewrite_manifest(l, |m| {
                m["layers"][0]["digest"] =
                    "sha256:1111111111111111111111111111111111111111111111111111111111111111".into()
            })
        },
        "is missing",
    );
    corrupt_case(
        "unknown-media-type",
        |l| {
            rewrite_manifest(l, |m| {
                m["layers"][1]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+bzip2".into()
            })
        },
        "unsupported media type \"application/vnd.oci.image.layer.v1.tar+bzip2\"",
    );
    corrupt_case(
        "wrong-compression",
        |l| {
            rewrite_manifest(l, |m| {
                m["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd".into()
            })
        },
        "zstd",
    );
    corrupt_case(
        "bad-digest-string",
        |l| {
            rewrite_manifest(l, |m| {
                m["layers"][0]["digest"] = "sha256:../../../etc/passwd".into()
            })
        },
        "Invalid encoded value ../../../etc/passwd",
    );
    corrupt_case(
        "layer-count",
        |l| {
            rewrite_config(l, |c| {
                c["rootfs"]["diff_ids"]
                    .as_array_mut()
                    .unwrap()
                    .pop()
                    .map(drop)
                    .unwrap_or(())
            })
        },
        "rootfs.diff_ids has 1 entries but manifest",
    );
}

#[test]
fn non_distributable_layers_are_accepted_and_never_fetched() {
    let s = Sandbox::new("nondist");
    let l = s.layout(&[layer(&[E::File("a", b"a", 0o644)])]);
    rewrite_manifest(&l, |m| {
        m["layers"][0]["mediaType"] =
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".into();
        m["layers"][0]["urls"] = serde_json::json!(["https://example.invalid/layer"]);
    });
    unpack(&l.dir, "t", &s.bundle()).unwrap();
    assert!(s.bundle().join("rootfs/a").exists());
    s.check(true);
    std::fs::remove_file(blob_path(&l, &l.layer_digests[0])).unwrap();
    let b2 = s.dir.join("b2");
    let e = unpack(&l.dir, "t", &b2).unwrap_err();
    assert!(
        e.to_string()
            .contains("does not download it from https://example.invalid/layer"),
        "{e}"
    );
    assert!(!b2.exists());
}

#[test]
fn truncated_and_broken_archives_are_errors() {
    let s = Sandbox::new("archives");
    let l = s.layout(&[layer(&[E::File("a", &[3u8; 300_000], 0o644)])]);
    // An OCI archive of the layout, then cut short.
    let tar_path = s.dir.join("layout.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    b.append_dir_all(".", &l.dir).unwrap();
    b.into_inner().unwrap();
    let full = std::fs::read(&tar_path).unwrap();
    assert!(
        Image::open(&tar_path)
            .unwrap()
            .resolve(&Selector::reference("t"))
            .is_ok()
    );
    for cut in [full.len() / 3, full.len() / 2, full.len() - 2048] {
        std::fs::write(&tar_path, &full[..cut]).unwrap();
        let r = Image::open(&tar_path).and_then(|i| {
            let r = i.resolve(&Selector::reference("t"))?;
            berth_image::unpack(&i, &r, &s.bundle(), Default::default(), &Default::default())
        });
        let e = r.expect_err("truncated archive");
        assert!(!e.to_string().is_empty());
        assert!(!s.bundle().exists());
    }
    std::fs::write(&tar_path, gzip(&full)).unwrap();
    let e = Image::open(&tar_path).err().expect("compressed archive");
    assert!(e.to_string().contains("decompress it first"), "{e}");
    std::fs::write(&tar_path, b"not a tar at all").unwrap();
    assert!(Image::open(&tar_path).is_err());
    std::fs::remove_file(&tar_path).unwrap();
    s.check(false);
}

#[test]
fn a_truncated_layer_stream_is_an_error() {
    // The layer's tar is cut inside a file's data, and the descriptor and diff_id describe
    // the cut blob, so only the tar parser can notice.
    let full = layer(&[E::File("a", &[9u8; 100_000], 0o644)]);
    let cut = full[..50_000].to_vec();
    let e = refused("cut-tar", vec![cut], "layer");
    assert!(
        matches!(e, ImageError::Entry { .. } | ImageError::Tar { .. }),
        "{e}"
    );
}
