//! Three-stage layer pipeline.
//!
//! * A worker thread reads each layer blob in order, verifying its size and digest as it
//!   streams, decompresses it into large recycled buffers and hands them on;
//! * a hasher thread digests the uncompressed stream against the config's diff_id (so that
//!   the decompressing worker is not slowed by it, and it runs whenever the applier waits on
//!   the file system);
//! * the calling thread parses the tar stream and applies it.
//!
//! Buffers go through a bounded channel, so memory stays small; while layer N is applied,
//! layer N+1 is already being verified and decompressed.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use crate::digest::{Digest, Expect, Hasher, Verifier};
use crate::error::{ImageError, Result};
use crate::image::{Image, Layer};
use crate::media::Compression;

/// Size of one buffer of uncompressed data.
const CHUNK: usize = 1 << 20;
/// Buffers in flight: bounds the memory used and how far the worker runs ahead.
const POOL: usize = 8;
/// Read-ahead on the compressed blob.
const BLOB_BUF: usize = 256 << 10;

/// A buffer of uncompressed data, shared by the applier and the hasher; it goes back to the
/// worker's pool when both are done with it.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
    free: Sender<Vec<u8>>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // The worker may be gone already; the buffer is then simply freed.
        let _ = self.free.send(std::mem::take(&mut self.buf));
    }
}

enum Msg {
    Data(Arc<Chunk>),
    /// End of a layer's blob: Ok once its size and digest checked out.
    End(Result<()>),
}

enum HashMsg {
    Start(crate::digest::Algorithm),
    Data(Arc<Chunk>),
    /// The blob is complete: compare with the diff_id.
    End {
        blob: String,
        expected: Digest,
    },
}

/// The uncompressed tar stream of one layer, as the applier reads it.
pub(crate) struct LayerStream<'a> {
    rx: &'a Receiver<Msg>,
    verdicts: &'a Receiver<Result<()>>,
    cur: Option<(Arc<Chunk>, usize)>,
    done: Option<Result<()>>,
}

impl Read for LayerStream<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((chunk, pos)) = &mut self.cur {
                if *pos < chunk.len {
                    let n = out.len().min(chunk.len - *pos);
                    out[..n].copy_from_slice(&chunk.buf[*pos..*pos + n]);
                    *pos += n;
                    return Ok(n);
                }
            }
            self.cur = None;
            match &self.done {
                Some(Ok(())) => return Ok(0),
                Some(Err(_)) => return Err(io::Error::other("the layer blob failed verification")),
                None => {}
            }
            match self.rx.recv() {
                Ok(Msg::Data(chunk)) => self.cur = Some((chunk, 0)),
                Ok(Msg::End(r)) => self.done = Some(r),
                Err(_) => self.done = Some(Err(ImageError::WorkerPanicked)),
            }
        }
    }
}

impl LayerStream<'_> {
    /// Drains the rest of the layer and returns the verdict on it: the blob's size and
    /// digest (from the worker), then the diff_id (from the hasher).
    fn finish(&mut self) -> Result<()> {
        self.cur = None;
        while self.done.is_none() {
            match self.rx.recv() {
                Ok(Msg::Data(_)) => {}
                Ok(Msg::End(r)) => self.done = Some(r),
                Err(_) => self.done = Some(Err(ImageError::WorkerPanicked)),
            }
        }
        self.done.take().unwrap_or(Ok(()))?;
        self.verdicts
            .recv()
            .unwrap_or(Err(ImageError::WorkerPanicked))
    }
}

/// Runs `apply(i, stream)` for every layer in order, with the worker verifying and
/// decompressing ahead; then `verified(i)` once layer i's blob and diff_id have checked
/// out. The first error stops everything; a verification error wins over an apply error
/// (a corrupt blob explains a broken tar stream).
pub(crate) fn run(
    image: &Image,
    layers: &[Layer],
    mut apply: impl FnMut(usize, &mut LayerStream<'_>) -> Result<()>,
    mut verified: impl FnMut(usize) -> Result<()>,
) -> Result<()> {
    if layers.is_empty() {
        return Ok(());
    }
    let (tx, rx) = sync_channel::<Msg>(POOL);
    let (hash_tx, hash_rx) = channel::<HashMsg>();
    let (verdict_tx, verdict_rx) = channel::<Result<()>>();
    std::thread::scope(|s| {
        let worker = s.spawn(move || produce(image, layers, tx, hash_tx));
        let hasher = s.spawn(move || hash(hash_rx, verdict_tx));
        let mut result = Ok(());
        for i in 0..layers.len() {
            let mut stream = LayerStream {
                rx: &rx,
                verdicts: &verdict_rx,
                cur: None,
                done: None,
            };
            let applied = apply(i, &mut stream);
            let checked = stream.finish();
            let r = checked.and(applied).and_then(|()| verified(i));
            if let Err(e) = r {
                result = Err(e);
                break;
            }
        }
        // Closing the channels ends the worker (and so the hasher) wherever they wait.
        drop(rx);
        drop(verdict_rx);
        let w = worker.join();
        let h = hasher.join();
        match (w, h) {
            (Ok(()), Ok(())) => result,
            _ => result.and(Err(ImageError::WorkerPanicked)),
        }
    })
}

/// The hasher: digests each layer's uncompressed stream, sends one verdict per layer.
fn hash(rx: Receiver<HashMsg>, verdicts: Sender<Result<()>>) {
    let mut h: Option<Hasher> = None;
    while let Ok(m) = rx.recv() {
        match m {
            HashMsg::Start(alg) => h = Some(Hasher::new(alg)),
            HashMsg::Data(chunk) => {
                if let Some(h) = &mut h {
                    h.update(&chunk.buf[..chunk.len]);
                }
            }
            HashMsg::End { blob, expected } => {
                let got = h.take().map(Hasher::finish);
                let verdict = match got {
                    Some(got) if got == expected => Ok(()),
                    Some(got) => Err(ImageError::DiffId {
                        blob,
                        expected: expected.to_string(),
                        actual: got.to_string(),
                    }),
                    None => Err(ImageError::WorkerPanicked),
                };
                if verdicts.send(verdict).is_err() {
                    return;
                }
            }
        }
    }
}

/// The worker: every layer in order, until the applier hangs up.
fn produce(image: &Image, layers: &[Layer], tx: SyncSender<Msg>, hash: Sender<HashMsg>) {
    let (free_tx, free_rx) = channel::<Vec<u8>>();
    let mut pool = Pool {
        free: free_rx,
        free_tx,
        made: 0,
    };
    for layer in layers {
        match produce_layer(image, layer, &tx, &hash, &mut pool) {
            Ok(()) => {
                let end = HashMsg::End {
                    blob: layer.blob.clone(),
                    expected: layer.diff_id.clone(),
                };
                if hash.send(end).is_err() || tx.send(Msg::End(Ok(()))).is_err() {
                    return;
                }
            }
            Err(Stop::HungUp) => return,
            Err(Stop::Failed(e)) => {
                let _ = tx.send(Msg::End(Err(e)));
                return;
            }
        }
    }
}

enum Stop {
    HungUp,
    Failed(ImageError),
}

impl From<ImageError> for Stop {
    fn from(e: ImageError) -> Self {
        Stop::Failed(e)
    }
}

struct Pool {
    free: Receiver<Vec<u8>>,
    free_tx: Sender<Vec<u8>>,
    made: usize,
}

impl Pool {
    fn get(&mut self) -> Result<Vec<u8>, Stop> {
        if let Ok(b) = self.free.try_recv() {
            return Ok(b);
        }
        if self.made < POOL + 4 {
            self.made += 1;
            return Ok(vec![0; CHUNK]);
        }
        self.free.recv().map_err(|_| Stop::HungUp)
    }

    /// Returns an unused buffer.
    fn put(&self, buf: Vec<u8>) {
        let _ = self.free_tx.send(buf);
    }

    fn chunk(&self, buf: Vec<u8>, len: usize) -> Arc<Chunk> {
        Arc::new(Chunk {
            buf,
            len,
            free: self.free_tx.clone(),
        })
    }
}

/// Reads until `buf` is full or the stream ends.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn produce_layer(
    image: &Image,
    layer: &Layer,
    tx: &SyncSender<Msg>,
    hash: &Sender<HashMsg>,
    pool: &mut Pool,
) -> Result<(), Stop> {
    let raw = image.open_blob(&layer.loc, &layer.urls)?;
    let verifier = Verifier::new(
        raw,
        Expect {
            name: layer.blob.clone(),
            digest: layer.digest.clone(),
            size: layer.size,
        },
    );
    let mut br = BufReader::with_capacity(BLOB_BUF, verifier);
    let compression = match layer.compression {
        Compression::Detect => {
            let head = br.fill_buf().map_err(|e| ImageError::LayerStream {
                blob: layer.blob.clone(),
                what: "read",
                source: e,
            })?;
            if head.starts_with(&[0x1f, 0x8b]) {
                Compression::Gzip
            } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                Compression::Zstd
            } else {
                Compression::None
            }
        }
        c => c,
    };
    hash.send(HashMsg::Start(layer.diff_id.algorithm()))
        .map_err(|_| Stop::HungUp)?;
    let streamed = {
        let (mut dec, what): (Box<dyn Read + '_>, &'static str) = match compression {
            Compression::Gzip => (
                Box::new(flate2::bufread::MultiGzDecoder::new(&mut br)),
                "gzip",
            ),
            Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(&mut br) {
                Ok(d) => (Box::new(d), "zstd"),
                Err(e) => {
                    return Err(Stop::Failed(ImageError::LayerStream {
                        blob: layer.blob.clone(),
                        what: "zstd",
                        source: e,
                    }));
                }
            },
            _ => (Box::new(&mut br), "read"),
        };
        let mut out = Ok(());
        loop {
            let mut buf = pool.get()?;
            match fill(&mut *dec, &mut buf) {
                Ok(0) => {
                    pool.put(buf);
                    break;
                }
                Ok(n) => {
                    let last = n < buf.len();
                    let chunk = pool.chunk(buf, n);
                    hash.send(HashMsg::Data(Arc::clone(&chunk)))
                        .map_err(|_| Stop::HungUp)?;
                    tx.send(Msg::Data(chunk)).map_err(|_| Stop::HungUp)?;
                    if last {
                        break;
                    }
                }
                Err(e) => {
                    pool.put(buf);
                    out = Err(ImageError::LayerStream {
                        blob: layer.blob.clone(),
                        what,
                        source: e,
                    });
                    break;
                }
            }
        }
        out
    };
    // The whole blob must be read for its digest, whatever the decompressor left; a digest
    // mismatch explains a decompression error, so it is reported first.
    br.into_inner().finish()?;
    streamed?;
    Ok(())
}

/// Hook for the tar parser: applies one layer's stream with `applier`.
pub(crate) fn apply_layer(
    applier: &mut crate::apply::Applier,
    stream: &mut LayerStream<'_>,
    layer: &str,
) -> Result<()> {
    let mut archive = tar::Archive::new(stream);
    let entries = archive.entries().map_err(|source| ImageError::Tar {
        layer: layer.to_string(),
        source,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| ImageError::Tar {
            layer: layer.to_string(),
            source,
        })?;
        if let Err(f) = applier.apply_entry(&mut entry) {
            return Err(f.into_error(layer, &entry.path_bytes()));
        }
    }
    applier
        .finish_layer()
        .map_err(|f| f.into_error(layer, b"(directory times)"))
}
