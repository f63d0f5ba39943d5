//! Unpack throughput: a synthetic three-layer image (about 60 MiB uncompressed in ~3000
//! entries of mixed sizes, gzip and zstd) unpacked into a fresh bundle per iteration.
//! Throughput is reported in uncompressed layer bytes.
//!
//! `cargo bench -p berth-image --bench unpack` (as root: layers carry owners and devices).
//! BERTH_BENCH_DIR sets where bundles go (default: the temp dir; a tmpfs shows berth's own
//! cost, a disk adds the file system's).

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_image::{Image, Selector, UnpackOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sha2::{Digest as _, Sha256};

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes, compressible like real binaries and text are.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let words: [&[u8]; 6] = [
        b"usr/lib ",
        b"\x00\x00\x00\x00",
        b"config ",
        b"\x7fELF",
        b"return ",
        b"\xff\xfe",
    ];
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 3 == 0 {
            out.extend_from_slice(words[(x >> 8) as usize % words.len()]);
        } else {
            out.push((x >> 24) as u8);
        }
    }
    out.truncate(len);
    out
}

fn layer(n: usize, seed: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = String::new();
    for i in 0..n {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        if i % 50 == 0 {
            dir = format!("l{seed}/d{i}");
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, &dir, &[][..]).unwrap();
            continue;
        }
        if i % 17 == 0 {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, format!("{dir}/s{i}"), "target-x")
                .unwrap();
            continue;
        }
        // Mostly small files, some large: like a distribution's /usr.
        let len = match i % 10 {
            0 => 256 << 10,
            1 | 2 => 32 << 10,
            _ => 4 << 10,
        };
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(if i % 7 == 0 { 0o755 } else { 0o644 });
        let data = content(seed * 100_000 + i as u64, len);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, format!("{dir}/f{i}"), &data[..])
            .unwrap();
    }
    b.into_inner().unwrap()
}

fn put(dir: &Path, data: &[u8]) -> String {
    let h = hex(&Sha256::digest(data));
    std::fs::write(dir.join("blobs/sha256").join(&h), data).unwrap();
    format!("sha256:{h}")
}

/// Writes the image; returns the uncompressed size of its layers.
fn image(dir: &Path) -> u64 {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut total = 0;
    for (i, zstd) in [(1u64, false), (2, true), (3, false)] {
        let tar = layer(1000, i);
        total += tar.len() as u64;
        diff_ids.push(format!("sha256:{}", hex(&Sha256::digest(&tar))));
        let (blob, mt) = if zstd {
            (
                zstd::encode_all(&tar[..], 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            )
        } else {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&tar).unwrap();
            (
                e.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        };
        let d = put(dir, &blob);
        descs.push(serde_json::json!({"mediaType": mt, "digest": d, "size": blob.len()}));
    }
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": berth_image::Platform::host().architecture, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let cd = put(dir, &cfg);
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()},
        "layers": descs,
    }))
    .unwrap();
    let md = put(dir, &m);
    let idx = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(),
        "annotations": {"org.opencontainers.image.ref.name": "bench"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    total
}

/// Removes a bundle when dropped (outside the measured time).
struct Bundle(PathBuf);

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bench(c: &mut Criterion) {
    let base = std::env::var_os("BERTH_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("berth-image-bench-{}", std::process::id()));
    let _cleanup = Bundle(base.clone());
    let layout = base.join("layout");
    let bytes = image(&layout);
    let img = Image::open(&layout).unwrap();
    let resolved = img.resolve(&Selector::reference("bench")).unwrap();
    let mut g = c.benchmark_group("unpack");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    // Bundles are all removed at the end, not between iterations: deleting thousands of
    // files just before the next unpack makes ext4 skip the just-freed inodes when it
    // allocates new ones, which would be measured instead of the unpack.
    let mut n = 0;
    g.bench_function("three layers, gzip and zstd", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let bundle = base.join(format!("bundle-{n}"));
                let t = std::time::Instant::now();
                berth_image::unpack(
                    &img,
                    &resolved,
                    &bundle,
                    Default::default(),
                    &UnpackOptions::default(),
                )
                .unwrap();
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
