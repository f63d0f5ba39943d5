//! Content digests: parsing, hashing and streaming verification.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{ImageError, Result};

/// A digest algorithm berth verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `sha256`
    Sha256,
    /// `sha512`
    Sha512,
}

impl Algorithm {
    /// The name in digest strings and in `blobs/<alg>/`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated `algorithm:hex` digest (sha256 or sha512, lowercase hex of the right length),
/// safe to use as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    alg: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates a digest; `field` names where it came from, for the error.
    ///
    /// ```
    /// let d = berth_image::Digest::parse(
    ///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ///     "--digest",
    /// ).unwrap();
    /// assert_eq!(d.algorithm().name(), "sha256");
    /// assert!(berth_image::Digest::parse("sha256:../../etc", "--digest").is_err());
    /// ```
    pub fn parse(value: &str, field: &str) -> Result<Digest> {
        let bad = |reason| ImageError::BadDigest {
            field: field.to_string(),
            value: value.to_string(),
            reason,
        };
        let (alg, hex) = value
            .split_once(':')
            .ok_or_else(|| bad("expected algorithm:hex"))?;
        let alg = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => {
                return Err(bad(
                    "unsupported algorithm (berth verifies sha256 and sha512)",
                ));
            }
        };
        if hex.len() != alg.hex_len() {
            return Err(bad("wrong length for the algorithm"));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad("not lowercase hexadecimal"));
        }
        Ok(Digest {
            alg,
            hex: hex.to_string(),
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The hexadecimal part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A hasher for this digest's algorithm.
    pub(crate) fn hasher(&self) -> Hasher {
        Hasher::new(self.alg)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg.name(), self.hex)
    }
}

/// An incremental hash of one of the supported algorithms.
#[derive(Clone)]
pub(crate) enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub(crate) fn new(alg: Algorithm) -> Hasher {
        match alg {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything hashed.
    pub(crate) fn finish(self) -> Digest {
        let (alg, bytes) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        Digest {
            alg,
            hex: hex(&bytes),
        }
    }
}

/// Lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The sha256 digest of `data`.
pub(crate) fn sha256_of(data: &[u8]) -> Digest {
    let mut h = Hasher::new(Algorithm::Sha256);
    h.update(data);
    h.finish()
}

/// What a blob must be: its digest (when known) and size (when known).
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    /// The name used in errors (the digest, or the path inside an archive).
    pub name: String,
    pub digest: Option<Digest>,
    pub size: Option<u64>,
}

/// A reader that hashes and counts what passes through it, and refuses to read more than
/// the expected size (plus one byte, to detect an over-long blob without reading it all).
pub(crate) struct Verifier<R> {
    inner: R,
    expect: Expect,
    hasher: Option<Hasher>,
    count: u64,
}

impl<R: Read> Verifier<R> {
    pub(crate) fn new(inner: R, expect: Expect) -> Self {
        let hasher = expect.digest.as_ref().map(Digest::hasher);
        Verifier {
            inner,
            expect,
            hasher,
            count: 0,
        }
    }

    /// Reads to the end, then checks size and digest.
    pub(crate) fn finish(mut self) -> Result<()> {
        let mut scratch = [0u8; 8192];
        loop {
            match self.read(&mut scratch) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(ImageError::LayerStream {
                        blob: self.expect.name.clone(),
                        what: "read",
                        source: e,
                    });
                }
            }
        }
        self.check()
    }

    fn check(self) -> Result<()> {
        if let Some(size) = self.expect.size {
            if self.count != size {
                return Err(ImageError::BlobSize {
                    blob: self.expect.name,
                    expected: size,
                    actual: self.count,
                });
            }
        }
        if let (Some(want), Some(h)) = (self.expect.digest, self.hasher) {
            let got = h.finish();
            if got != want {
                return Err(ImageError::BlobDigest {
                    blob: self.expect.name,
                    actual: got.to_string(),
                });
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Verifier<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut want = buf.len();
        if let Some(size) = self.expect.size {
            // Allow one byte past the size: enough to notice an over-long blob.
            let left = (size + 1).saturating_sub(self.count);
            want = want.min(usize::try_from(left).unwrap_or(usize::MAX));
            if want == 0 {
                return Ok(0);
            }
        }
        let n = self.inner.read(&mut buf[..want])?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// Reads a whole small blob (at most `limit` bytes), verifying it.
pub(crate) fn read_verified(reader: impl Read, expect: Expect, limit: u64) -> Result<Vec<u8>> {
    if let Some(size) = expect.size {
        if size > limit {
            return Err(ImageError::Unsupported {
                what: format!("blob {}", expect.name),
                reason: format!(
                    "{size} bytes is more than the {limit} allowed for a JSON document"
                ),
            });
        }
    }
    let name = expect.name.clone();
    let mut v = Verifier::new(reader.take(limit + 1), expect);
    let mut out = Vec::new();
    v.read_to_end(&mut out)
        .map_err(|e| ImageError::LayerStream {
            blob: name.clone(),
            what: "read",
            source: e,
        })?;
    if out.len() as u64 > limit {
        return Err(ImageError::Unsupported {
            what: format!("blob {name}"),
            reason: format!("more than the {limit} bytes allowed for a JSON document"),
        });
    }
    v.check()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_rejects_bad_digests() {
        assert!(Digest::parse(EMPTY, "f").is_ok());
        for bad in [
            "sha256",
            "md5:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../../../../../../../../../../../../../../../../../../../etc",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            let e = Digest::parse(bad, "manifest.config.digest").unwrap_err();
            assert!(e.to_string().contains("manifest.config.digest"), "{e}");
        }
    }

    #[test]
    fn hashes_match_known_values() {
        assert_eq!(sha256_of(b"").to_string(), EMPTY);
        let mut h = Hasher::new(Algorithm::Sha512);
        h.update(b"abc");
        assert!(h.finish().hex().starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn verifier_checks_size_and_digest() {
        let exp = |size| Expect {
            name: "b".into(),
            digest: Some(sha256_of(b"hello")),
            size: Some(size),
        };
        assert_eq!(read_verified(&b"hello"[..], exp(5), 100).unwrap(), b"hello");
        let e = read_verified(&b"hello!"[..], exp(5), 100).unwrap_err();
        assert!(matches!(e, ImageError::BlobSize { actual: 6, .. }), "{e}");
        let e = read_verified(&b"hell"[..], exp(5), 100).unwrap_err();
        assert!(matches!(e, ImageError::BlobSize { actual: 4, .. }), "{e}");
        let e = read_verified(&b"jello"[..], exp(5), 100).unwrap_err();
        assert!(matches!(e, ImageError::BlobDigest { .. }), "{e}");
        assert!(read_verified(&b"hello"[..], exp(5), 3).is_err());
    }
}
