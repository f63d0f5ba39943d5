//! The content store from the outside: ingest, resume, verification, concurrency, gc,
//! resolve, and a LayerStore prepared from it.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use berth_image::{ContentStore, Digest, LayerStore, Platform, import};
use common::{Comp, E, TempDir, layer, sha256_hex, write_layout};

fn digest_of(data: &[u8]) -> Digest {
    Digest::parse(&format!("sha256:{}", sha256_hex(data)), "test").unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn put_read_and_tamper_detection() {
    let t = TempDir::new("content-put");
    let s = ContentStore::open(t.join("c")).unwrap();
    let d = s.put(b"{\"a\":1}").unwrap();
    assert_eq!(d, digest_of(b"{\"a\":1}"));
    assert!(s.contains(&d));
    assert_eq!(s.read(&d).unwrap(), b"{\"a\":1}");
    assert_eq!(s.put(b"{\"a\":1}").unwrap(), d, "a second put is a no-op");
    assert!(t.join("c/oci-layout").is_file());
    // A blob changed on disk is refused when read.
    let p = s.blob_path(&d);
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&p, b"{\"a\":2}").unwrap();
    let e = s.read(&d).unwrap_err().to_string();
    assert!(e.contains("digest mismatch"), "{e}");
    let missing = digest_of(b"nope");
    assert!(!s.contains(&missing));
    assert!(
        s.read(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing")
    );
}

#[test]
fn interrupted_ingest_resumes_at_its_offset() {
    let t = TempDir::new("content-resume");
    let s = ContentStore::open(t.join("c")).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let d = digest_of(&data);
    {
        let mut w = s.writer(&d, Some(data.len() as u64)).unwrap();
        assert_eq!(w.offset(), 0);
        w.write_all(&data[..120_000]).unwrap();
        // Dropped without commit: as a killed process leaves it.
    }
    assert!(!s.contains(&d), "nothing half written is visible");
    assert_eq!(files(&t.join("c/blobs/sha256")), Vec::<String>::new());
    assert_eq!(files(&t.join("c/ingest")).len(), 1);
    let mut w = s.writer(&d, Some(data.len() as u64)).unwrap();
    assert_eq!(w.offset(), 120_000);
    w.write_all(&data[120_000..]).unwrap();
    assert_eq!(w.commit().unwrap(), d);
    assert_eq!(std::fs::read(s.blob_path(&d)).unwrap(), data);
    assert!(files(&t.join("c/ingest")).is_empty());
    // Present: a new writer holds everything already and commits at once.
    let w = s.writer(&d, Some(data.len() as u64)).unwrap();
    assert!(w.is_present());
    assert_eq!(w.offset(), data.len() as u64);
    w.commit().unwrap();

    // A corrupt partial ingest: the resumed blob fails its digest and is removed, and the
    // next writer starts from zero.
    let data2 = b"0123456789".repeat(1000);
    let d2 = digest_of(&data2);
    {
        let mut w = s.writer(&d2, Some(data2.len() as u64)).unwrap();
        w.write_all(b"XXXXX").unwrap();
    }
    let mut w = s.writer(&d2, Some(data2.len() as u64)).unwrap();
    assert_eq!(w.offset(), 5);
    w.write_all(&data2[5..]).unwrap();
    let e = w.commit().unwrap_err().to_string();
    assert!(
        e.contains(&d2.to_string()) && e.contains("digest mismatch"),
        "{e}"
    );
    assert!(!s.contains(&d2));
    let mut w = s.writer(&d2, Some(data2.len() as u64)).unwrap();
    assert_eq!(w.offset(), 0);
    w.write_all(&data2).unwrap();
    w.commit().unwrap();
    assert!(s.contains(&d2));
}

#[test]
fn wrong_digest_or_size_is_refused_and_nothing_is_visible() {
    let t = TempDir::new("content-wrong");
    let s = ContentStore::open(t.join("c")).unwrap();
    let want = digest_of(b"hello");
    let mut w = s.writer(&want, Some(5)).unwrap();
    w.write_all(b"world").unwrap();
    let e = w.commit().unwrap_err().to_string();
    let actual = digest_of(b"world").to_string();
    assert!(
        e.contains(&want.to_string()) && e.contains(&actual),
        "names expected and actual: {e}"
    );
    assert!(!s.contains(&want));
    assert!(files(&t.join("c/blobs/sha256")).is_empty());
    assert!(
        files(&t.join("c/ingest")).is_empty(),
        "the bad data is removed"
    );

    // Too many bytes: refused at the write.
    let mut w = s.writer(&want, Some(5)).unwrap();
    assert!(w.write_all(b"hello!").is_err());
    w.abort().unwrap();
    // Too few: refused at commit.
    let mut w = s.writer(&want, Some(5)).unwrap();
    w.write_all(b"hell").unwrap();
    let e = w.commit().unwrap_err().to_string();
    assert!(e.contains("size mismatch"), "{e}");
    assert!(files(&t.join("c/blobs/sha256")).is_empty());
    assert!(files(&t.join("c/ingest")).is_empty());
}

#[test]
fn concurrent_writers_of_one_blob_do_not_corrupt_it() {
    let t = TempDir::new("content-race");
    let s = ContentStore::open(t.join("c")).unwrap();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let d = digest_of(&data);
    std::thread::scope(|sc| {
        for _ in 0..6 {
            sc.spawn(|| {
                let mut w = s.writer(&d, Some(data.len() as u64)).unwrap();
                let from = w.offset() as usize;
                for chunk in data[from..].chunks(64 << 10) {
                    w.write_all(chunk).unwrap();
                }
                assert_eq!(w.commit().unwrap(), d);
            });
        }
    });
    assert_eq!(s.read_back(&d), data);
    assert!(files(&t.join("c/ingest")).is_empty());
}

trait ReadBack {
    fn read_back(&self, d: &Digest) -> Vec<u8>;
}

impl ReadBack for ContentStore {
    fn read_back(&self, d: &Digest) -> Vec<u8> {
        std::fs::read(self.blob_path(d)).unwrap()
    }
}

#[test]
fn gc_removes_exactly_the_unreachable() {
    let t = TempDir::new("content-gc");
    let s = ContentStore::open(t.join("c")).unwrap();
    let shared = layer(&[E::File("shared", b"both images\n", 0o644)]);
    let only_a = layer(&[E::File("a", b"a\n", 0o644)]);
    let only_b = layer(&[E::File("b", b"b\n", 0o644)]);
    let a = write_layout(
        &t.join("a"),
        "a",
        &[shared.clone(), only_a],
        Comp::Gzip,
        serde_json::json!({}),
    );
    let b = write_layout(
        &t.join("b"),
        "b",
        &[shared, only_b],
        Comp::Gzip,
        serde_json::json!({"Env": ["B=1"]}),
    );
    let ia = import(&s, &a.dir).unwrap();
    import(&s, &b.dir).unwrap();
    assert_eq!(ia.len(), 1);
    assert_eq!(ia[0].name.as_deref(), Some("a"));
    assert_eq!(ia[0].digest.to_string(), a.manifest_digest);
    let d = |s: &str| Digest::parse(s, "t").unwrap();
    // An index over manifest A and a manifest of another platform that is not there.
    let a_size = std::fs::metadata(s.blob_path(&ia[0].digest)).unwrap().len();
    let absent = digest_of(b"not pulled");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": a.manifest_digest, "size": a_size,
             "platform": {"os": "linux", "architecture": Platform::host().architecture}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": absent.to_string(), "size": 10,
             "platform": {"os": "linux", "architecture": "s390x"}},
        ],
    }))
    .unwrap();
    let top = s.put(&index).unwrap();
    let orphan = s.put(b"orphan").unwrap();

    let mut want: BTreeSet<Digest> = [
        top.clone(),
        absent,
        d(&a.manifest_digest),
        d(&a.config_digest),
    ]
    .into_iter()
    .collect();
    want.extend(a.layer_digests.iter().map(|l| d(l)));
    assert_eq!(s.referenced(&top).unwrap(), want);

    // A stale ingest goes; one a writer holds stays.
    let stale = digest_of(b"stale");
    {
        let mut w = s.writer(&stale, None).unwrap();
        w.write_all(b"sta").unwrap();
    }
    let held_d = digest_of(b"held");
    let mut held = s.writer(&held_d, None).unwrap();
    held.write_all(b"he").unwrap();

    let before = s.usage().unwrap();
    let r = s.gc(std::slice::from_ref(&top)).unwrap();
    let mut gone: BTreeSet<Digest> = [orphan, d(&b.manifest_digest), d(&b.config_digest)]
        .into_iter()
        .collect();
    gone.insert(d(&b.layer_digests[1]));
    assert_eq!(r.removed.iter().cloned().collect::<BTreeSet<_>>(), gone);
    assert_eq!(r.ingests, 1);
    assert!(
        s.contains(&d(&b.layer_digests[0])),
        "the shared layer stays"
    );
    for k in want
        .iter()
        .filter(|k| k.to_string() != digest_of(b"not pulled").to_string())
    {
        assert!(s.contains(k), "{k} kept");
    }
    let after = s.usage().unwrap();
    assert_eq!(before.bytes - after.bytes, r.bytes + 3);
    assert!(after.inodes < before.inodes);
    held.write_all(b"ld").unwrap();
    held.commit().unwrap();
    assert!(s.contains(&held_d));

    // A root that is not in the store is an error, and nothing goes.
    assert!(s.gc(&[digest_of(b"typo")]).is_err());
    assert!(s.contains(&held_d));
    // No roots: everything goes.
    s.gc(&[]).unwrap();
    assert!(files(&t.join("c/blobs/sha256")).is_empty());
}

#[test]
fn resolve_through_an_index_then_prepare_and_retain() {
    let t = TempDir::new("content-resolve");
    let s = ContentStore::open(t.join("c")).unwrap();
    let l1 = layer(&[E::Dir("etc", 0o755), E::File("etc/one", b"1\n", 0o644)]);
    let l2 = layer(&[E::File("etc/two", b"2\n", 0o600)]);
    let a = write_layout(
        &t.join("a"),
        "a",
        &[l1, l2],
        Comp::Zstd,
        serde_json::json!({}),
    );
    let imported = import(&s, &a.dir).unwrap();
    let msize = std::fs::metadata(s.blob_path(&imported[0].digest))
        .unwrap()
        .len();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": digest_of(b"other").to_string(), "size": 5,
             "platform": {"os": "linux", "architecture": "s390x"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": a.manifest_digest, "size": msize,
             "platform": {"os": "linux", "architecture": Platform::host().architecture}},
        ],
    }))
    .unwrap();
    let top = s.put(&index).unwrap();
    let (image, resolved) = s.resolve(&top, &Platform::host()).unwrap();
    assert_eq!(
        resolved.manifest_digest.as_deref(),
        Some(a.manifest_digest.as_str())
    );
    assert_eq!(resolved.layers.len(), 2);
    let Err(e) = s.resolve(&top, &Platform::parse("linux/riscv64").unwrap()) else {
        panic!("no riscv64 image, yet resolved");
    };
    assert!(e.to_string().contains("riscv64"), "{e}");

    let ls = LayerStore::open(t.join("layers")).unwrap();
    // Concurrent prepares of one image: each layer unpacked once, same answer.
    let lowers: Vec<Vec<std::path::PathBuf>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| sc.spawn(|| ls.prepare(&image, &resolved).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(lowers.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(lowers[0].len(), 3, "two layers and the empty bottom");
    assert_eq!(std::fs::read(lowers[0][1].join("etc/one")).unwrap(), b"1\n");
    assert_eq!(std::fs::read(lowers[0][0].join("etc/two")).unwrap(), b"2\n");
    assert_eq!(files(&t.join("layers/layers/sha256")).len(), 2);
    assert!(
        files(&t.join("layers/tmp")).is_empty(),
        "nothing unpacked twice or left"
    );

    assert_eq!(ls.retain([&resolved]).unwrap(), 0);
    assert_eq!(ls.retain([]).unwrap(), 2);
    assert!(files(&t.join("layers/layers/sha256")).is_empty());
    // And back again.
    assert_eq!(ls.prepare(&image, &resolved).unwrap(), lowers[0]);
}
