//! berth against umoci and skopeo (Debian's): images built by umoci, unpacked by both,
//! compared entry by entry; the same image through skopeo as an OCI archive, a
//! docker-archive and zstd layers; the layer store's overlay rootfs; a real unprivileged
//! rootless unpack.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use berth_image::{Image, Selector, UnpackOptions, unpack};
use common::*;

fn mknod(p: &Path, mode: u32, dev: u64) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: mknod(2) with a NUL-terminated path that outlives the call.
    let r = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
    assert_eq!(r, 0, "mknod {p:?}");
}

fn setxattr(p: &Path, name: &str, value: &[u8]) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: test code; strings NUL-terminated, value live.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {name} on {p:?}: {}",
        std::io::Error::last_os_error()
    );
}

fn lchown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

/// Sets every mtime under `root` to `secs` (fixed times: an unpack that leaves "now" on
/// anything shows up).
fn touch_all(root: &Path, secs: i64) {
    for (rel, _) in snapshot(root).0 {
        touch(&root.join(rel), secs);
    }
}

fn touch(p: &Path, secs: i64) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let ts = [libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    }; 2];
    // SAFETY: test code.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
}

/// A two-layer image made by umoci from a tree with every kind of entry, and its config
/// set with `umoci config`.
struct Fixture {
    _dir: TempDir,
    layout: std::path::PathBuf,
}

fn fixture() -> Fixture {
    {
        need_tools();
        let dir = TempDir::new("umoci-fixture");
        let layout = dir.join("layout");
        let b = dir.join("bundle");
        let umoci = |args: &[&str]| run(Command::new("umoci").args(args));
        umoci(&["init", "--layout", layout.to_str().unwrap()]);
        let img = format!("{}:t", layout.display());
        umoci(&["new", "--image", &img]);
        umoci(&["unpack", "--image", &img, b.to_str().unwrap()]);
        let r = b.join("rootfs");
        // Layer 1: every kind of entry.
        for d in [
            "etc",
            "bin",
            "data/sub/deep",
            "tmp",
            "gone/inner",
            "dev",
            "opt",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(
            r.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            r.join("etc/group"),
            "root:x:0:\nalice:x:1000:\nwheel:x:10:alice\nstaff:x:50:bob,alice\n",
        )
        .unwrap();
        std::fs::write(r.join("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
        set_mode(&r.join("bin/tool"), 0o755);
        std::fs::write(r.join("bin/suid"), b"suid").unwrap();
        set_mode(&r.join("bin/suid"), 0o4755);
        std::fs::write(r.join("bin/sgid"), b"sgid").unwrap();
        set_mode(&r.join("bin/sgid"), 0o2711);
        set_mode(&r.join("tmp"), 0o1777);
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(r.join("data/big"), &big).unwrap();
        std::fs::write(r.join("data/empty"), b"").unwrap();
        std::fs::write(r.join("data/owned"), b"alice's").unwrap();
        lchown(&r.join("data/owned"), 1000, 1000);
        set_mode(&r.join("data/owned"), 0o600);
        lchown(&r.join("data/sub"), 1, 2);
        set_mode(&r.join("data/sub"), 0o2750);
        std::fs::write(r.join("data/sub/deep/file"), b"deep").unwrap();
        std::fs::write(r.join("data/link1"), b"linked").unwrap();
        std::fs::hard_link(r.join("data/link1"), r.join("data/link2")).unwrap();
        std::fs::hard_link(r.join("data/link1"), r.join("bin/link3")).unwrap();
        symlink("../data/big", r.join("bin/rel")).unwrap();
        symlink("/etc/passwd", r.join("bin/abs")).unwrap();
        symlink("/nowhere/at/all", r.join("bin/dangling")).unwrap();
        lchown(&r.join("bin/abs"), 7, 8);
        mknod(
            &r.join("dev/null"),
            libc::S_IFCHR | 0o666,
            libc::makedev(1, 3),
        );
        mknod(
            &r.join("dev/loop9"),
            libc::S_IFBLK | 0o660,
            libc::makedev(7, 9),
        );
        mknod(&r.join("dev/fifo"), libc::S_IFIFO | 0o620, 0);
        setxattr(&r.join("data/big"), "user.note", b"hello");
        setxattr(&r.join("data/sub"), "trusted.berth", b"\x00\x01binary");
        std::fs::write(r.join("gone/inner/x"), b"x").unwrap();
        std::fs::write(r.join("opt/replaced"), b"file first").unwrap();
        std::fs::write(r.join("opt/old"), b"old").unwrap();
        touch_all(&r, 1_000_000_000);
        for (p, t) in [
            ("data/big", 1_500_000_000),
            ("bin/rel", 1_400_000_000),
            ("data/sub", 1_300_000_000),
        ] {
            touch(&r.join(p), t);
        }
        umoci(&[
            "repack",
            "--refresh-bundle",
            "--image",
            &img,
            b.to_str().unwrap(),
        ]);
        // Layer 2: deletions (whiteouts), a file turned directory, changes.
        std::fs::remove_dir_all(r.join("gone")).unwrap();
        std::fs::remove_file(r.join("opt/old")).unwrap();
        std::fs::remove_file(r.join("opt/replaced")).unwrap();
        std::fs::create_dir(r.join("opt/replaced")).unwrap();
        std::fs::write(r.join("opt/replaced/now"), b"a directory now").unwrap();
        std::fs::write(r.join("data/link1"), b"changed through one name").unwrap();
        std::fs::write(r.join("etc/motd"), b"layer two\n").unwrap();
        for p in ["opt/replaced", "opt/replaced/now", "data/link1", "etc/motd"] {
            touch(&r.join(p), 1_100_000_000);
        }
        umoci(&[
            "repack",
            "--refresh-bundle",
            "--image",
            &img,
            b.to_str().unwrap(),
        ]);
        umoci(&[
            "config",
            "--image",
            &img,
            "--config.user",
            "alice",
            "--config.env",
            "FOO=bar",
            "--config.env",
            "PATH=/x:/y",
            "--config.entrypoint",
            "/bin/tool",
            "--config.cmd",
            "a",
            "--config.cmd",
            "b c",
            "--config.workingdir",
            "/data",
            "--config.exposedports",
            "80/tcp",
            "--config.exposedports",
            "53/udp",
            "--config.label",
            "com.example.k=v",
            "--config.stopsignal",
            "SIGINT",
            "--config.volume",
            "/var/cache",
            "--author",
            "berth tests",
        ]);
        Fixture { _dir: dir, layout }
    }
}

fn berth_unpack(
    image_path: &Path,
    sel: &Selector,
    bundle: &Path,
    opts: &UnpackOptions,
) -> berth_image::UnpackReport {
    let image = Image::open(image_path).unwrap();
    let r = image.resolve(sel).unwrap();
    unpack(&image, &r, bundle, Default::default(), opts).unwrap()
}

fn umoci_unpack(layout: &Path, bundle: &Path) {
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:t", layout.display()))
        .arg(bundle));
}

fn config(bundle: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap()
}

#[test]
fn layout_unpack_equals_umoci_and_config_agrees() {
    let f = fixture();
    let t = TempDir::new("vs-umoci");
    umoci_unpack(&f.layout, &t.join("u"));
    let report = berth_unpack(
        &f.layout,
        &Selector::reference("t"),
        &t.join("b"),
        &Default::default(),
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_same_tree(&t.join("u/rootfs"), &t.join("b/rootfs"));

    // Spot checks that the comparison saw what the fixture made.
    let (b, groups) = snapshot(&t.join("b/rootfs"));
    assert_eq!(b["bin/suid"].mode, 0o4755);
    assert_eq!(b["tmp"].mode, 0o1777);
    assert_eq!(
        (b["data/sub"].uid, b["data/sub"].gid, b["data/sub"].mode),
        (1, 2, 0o2750)
    );
    assert_eq!(b["data/sub"].mtime, 1_300_000_000);
    assert_eq!(b["bin/abs"].link.as_deref(), Some(Path::new("/etc/passwd")));
    assert_eq!((b["bin/abs"].uid, b["bin/abs"].gid), (7, 8));
    assert_eq!(b["dev/null"].rdev, libc::makedev(1, 3));
    assert_eq!(b["dev/fifo"].kind, libc::S_IFIFO);
    assert_eq!(b["data/big"].xattrs["user.note"], b"hello");
    assert_eq!(b["data/sub"].xattrs["trusted.berth"], b"\x00\x01binary");
    assert_eq!(b["opt/replaced"].kind, libc::S_IFDIR);
    assert!(!b.contains_key("gone") && !b.contains_key("opt/old"));
    assert!(groups.iter().any(|g| g.len() >= 2), "{groups:?}");

    let (u, bb) = (config(&t.join("u")), config(&t.join("b")));
    for field in ["args", "env", "cwd", "user"] {
        assert_eq!(u["process"][field], bb["process"][field], "process.{field}");
    }
    assert_eq!(u["annotations"], bb["annotations"]);
    assert_eq!(
        bb["process"]["user"]["additionalGids"],
        serde_json::json!([10, 50])
    );
    assert_eq!(
        bb["process"]["args"],
        serde_json::json!(["/bin/tool", "a", "b c"])
    );
    assert!(
        bb["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/var/cache"),
        "volume mount"
    );
    // The bundle is private, like umoci's.
    assert_eq!(
        std::fs::metadata(t.join("b")).unwrap().mode() & 0o777,
        0o700
    );
}

#[test]
fn archives_and_zstd_made_by_skopeo_unpack_the_same() {
    let f = fixture();
    let t = TempDir::new("skopeo");
    umoci_unpack(&f.layout, &t.join("u"));
    let src = format!("oci:{}:t", f.layout.display());
    let skopeo = |dest: String, extra: &[&str]| {
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--insecure-policy"])
            .args(extra)
            .arg(&src)
            .arg(dest));
    };
    let docker = t.join("docker.tar");
    skopeo(
        format!("docker-archive:{}:berth/test:t", docker.display()),
        &[],
    );
    let oci_tar = t.join("oci.tar");
    skopeo(format!("oci-archive:{}:t", oci_tar.display()), &[]);
    let zstd_layout = t.join("zstd");
    skopeo(
        format!("oci:{}:t", zstd_layout.display()),
        &["--dest-compress-format", "zstd", "--dest-compress"],
    );

    let cases: Vec<(&str, &Path, Selector)> = vec![
        ("docker", &docker, Selector::reference("berth/test:t")),
        ("oci-archive", &oci_tar, Selector::reference("t")),
        ("zstd", &zstd_layout, Selector::reference("t")),
    ];
    for (name, path, sel) in cases {
        let image = Image::open(path).unwrap();
        let r = image.resolve(&sel).unwrap();
        match name {
            "docker" => {
                assert_eq!(image.format(), berth_image::Format::DockerArchive);
                assert!(r.manifest_digest.is_none());
            }
            "oci-archive" => assert_eq!(image.format(), berth_image::Format::OciArchive),
            _ => assert!(
                r.layers
                    .iter()
                    .all(|l| l.compression == berth_image::Compression::Zstd)
            ),
        }
        let bundle = t.join(name);
        let bundle = bundle.with_extension("bundle");
        unpack(&image, &r, &bundle, Default::default(), &Default::default()).unwrap();
        assert_same_tree(&t.join("u/rootfs"), &bundle.join("rootfs"));
        let (u, b) = (config(&t.join("u")), config(&bundle));
        for field in ["args", "env", "cwd", "user"] {
            assert_eq!(
                u["process"][field], b["process"][field],
                "{name}: process.{field}"
            );
        }
    }
    // The docker-archive is found by its tag in every spelling, and by its config digest.
    let image = Image::open(&docker).unwrap();
    let refs = image.refs().unwrap();
    assert_eq!(refs.len(), 1);
    let by_digest = Selector::digest(&refs[0].digest);
    assert!(image.resolve(&by_digest).is_ok());
    assert!(
        image
            .resolve(&Selector::reference("docker.io/berth/test:t"))
            .is_ok()
    );
    assert!(
        image
            .resolve(&Selector::reference("berth/test:nope"))
            .is_err()
    );
}

#[test]
fn layer_store_overlay_matches_and_second_bundle_copies_nothing() {
    let f = fixture();
    let t = TempDir::new("store");
    umoci_unpack(&f.layout, &t.join("u"));
    let store = t.join("store");
    let opts = UnpackOptions::default()
        .store(Some(store.clone()))
        .mount(true);
    in_private_mount_ns(|| {
        let r1 = berth_unpack(&f.layout, &Selector::reference("t"), &t.join("b1"), &opts);
        assert_eq!((r1.layers_unpacked, r1.layers_reused), (2, 0));
        let r2 = berth_unpack(&f.layout, &Selector::reference("t"), &t.join("b2"), &opts);
        assert_eq!((r2.layers_unpacked, r2.layers_reused), (0, 2));
        let mountinfo = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
        for b in ["b1", "b2"] {
            let target = t.join(b).join("rootfs");
            assert!(
                mountinfo
                    .lines()
                    .any(|l| l.split(' ').nth(4) == Some(target.to_str().unwrap())
                        && l.contains(" - overlay ")),
                "{b} not an overlay mount"
            );
            assert_same_tree(&t.join("u/rootfs"), &target);
        }
        // The two rootfs share the store's inodes: nothing was copied.
        let i1 = std::fs::metadata(t.join("b1/rootfs/data/big")).unwrap();
        let i2 = std::fs::metadata(t.join("b2/rootfs/data/big")).unwrap();
        let s = std::fs::read_dir(store.join("layers/sha256"))
            .unwrap()
            .count();
        assert_eq!(s, 2);
        assert_eq!(i1.size(), i2.size());
        // A write in one bundle stays in its upper directory.
        std::fs::write(t.join("b1/rootfs/etc/motd"), b"b1 only").unwrap();
        assert_eq!(
            std::fs::read(t.join("b2/rootfs/etc/motd")).unwrap(),
            b"layer two\n"
        );
        assert!(t.join("b1/overlay/upper/etc/motd").exists());
        // config.json resolved User through the overlay.
        let c = config(&t.join("b1"));
        assert_eq!(c["process"]["user"]["uid"], 1000);
        let ov = berth_image::OverlayMount::load(&t.join("b2"))
            .unwrap()
            .unwrap();
        assert_eq!(ov.lowerdirs.len(), 3);
        berth_image::remove_bundle(&t.join("b1")).unwrap();
        berth_image::remove_bundle(&t.join("b2")).unwrap();
        assert!(!t.join("b1").exists() && !t.join("b2").exists());
    });
}

/// The child half of [`rootless_unpack_as_an_unprivileged_user`]: runs only when the parent
/// starts this test binary as uid 65534 with BERTH_ROOTLESS_CHILD set.
#[test]
#[ignore = "run by rootless_unpack_as_an_unprivileged_user"]
fn rootless_child() {
    let Ok(arg) = std::env::var("BERTH_ROOTLESS_CHILD") else {
        return;
    };
    let (layout, bundle) = arg.split_once('\n').unwrap();
    let opts = UnpackOptions::default().rootless(true);
    let report = berth_unpack(
        Path::new(layout),
        &Selector::reference("t"),
        Path::new(bundle),
        &opts,
    );
    let kinds: Vec<String> = report
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.path, w.message))
        .collect();
    std::fs::write(Path::new(bundle).join("warnings"), kinds.join("\n")).unwrap();
}

#[test]
fn rootless_unpack_as_an_unprivileged_user() {
    let t = TempDir::new("rootless");
    common::set_mode(t.path(), 0o777);
    let layer1 = layer(&[
        E::Dir("ro/", 0o555),
        E::File("ro/inside", b"in a read-only dir", 0o444),
        E::Rich("owned", b"mine", 0o640, 1000, 1001, vec![]),
        E::Char("dev/null", 1, 3),
        E::Fifo("fifo"),
        E::File("suid", b"s", 0o4755),
    ]);
    let layer2 = layer(&[
        E::File("ro/added-later", b"needs write access to ro/", 0o644),
        E::File(".wh.fifo", b"", 0o644),
    ]);
    let l = write_layout(
        &t.join("layout"),
        "t",
        &[layer1, layer2],
        Comp::Gzip,
        serde_json::json!({}),
    );
    run(Command::new("chmod").args(["-R", "a+rX"]).arg(&l.dir));
    let bundle = t.join("bundle");
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "rootless_child", "--ignored", "--nocapture"])
        .env(
            "BERTH_ROOTLESS_CHILD",
            format!("{}\n{}", l.dir.display(), bundle.display()),
        )
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = bundle.join("rootfs");
    let (s, _) = snapshot(&r);
    assert!(
        s.values().all(|n| n.uid == 65534),
        "everything owned by the unpacking user"
    );
    assert_eq!(s["ro"].mode, 0o555, "directory mode restored at the end");
    assert_eq!(s["ro/inside"].mode, 0o444);
    assert!(s.contains_key("ro/added-later"));
    assert_eq!(s["owned"].mode, 0o640);
    // uid 1000 = field 1 varint e8 07; gid 1001 = field 2 varint e9 07.
    assert_eq!(
        s["owned"].xattrs["user.rootlesscontainers"],
        vec![0x08, 0xe8, 0x07, 0x10, 0xe9, 0x07]
    );
    assert!(!s.contains_key("dev/null"), "device skipped");
    assert!(!s.contains_key("fifo"), "whited out");
    assert_eq!(s["suid"].mode, 0o4755);
    let warnings = std::fs::read_to_string(bundle.join("warnings")).unwrap();
    assert!(
        warnings.contains("/dev/null: character device skipped"),
        "{warnings}"
    );
}
