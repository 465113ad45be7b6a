//! The upload as a client could send it, through the multipart reader, the form validation
//! and the photo probe, with part headers and bodies of any length.
//!
//! The input is eight bytes that say how the body is sent, then the body:
//!
//! | byte | meaning                                                                     |
//! |------|-----------------------------------------------------------------------------|
//! | 0    | network chunk size, from [`CHUNK_SIZES`]                                    |
//! | 1    | chunks that arrive together (1 to 4) before the reader has to wait again    |
//! | 2, 3 | how often the region is repeated: `byte3 << (byte2 % 32)` (0 removes it)    |
//! | 4..8 | the region: start and length in the body, little-endian u16 each            |
//!
//! So a few bytes of input make a header line, a preamble or a photo megabytes long, up to
//! [`MAX_REQUEST`] + 1 bytes in all. The body is made chunk by chunk as the reader asks for
//! it and each chunk is freed once read, so the process only grows with what the reader
//! itself keeps: with `-rss_limit_mb=256` an unbounded buffer in it is an out-of-memory.
//!
//! New chunks arrive only while the upload waits, as with the gateway's HTTP/1 server,
//! which polls the handler in the connection's task and reads the socket when the handler
//! waits. (multer takes every chunk that is ready whenever it is polled, however much it
//! holds already: a body that was always ready would be held whole, up to the request
//! limit.)
#![no_main]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use libfuzzer_sys::fuzz_target;
use photo_pacs::config::Charset;
use photo_pacs::intake::upload::{MemorySink, UploadLimits, receive};

/// The gateway's default request limit (MAX_REQUEST_MB=300): above the fuzzer's memory
/// limit, so a buffer the request limit would bound still shows. Builds with debug
/// assertions (CI's unoptimised 30 s runs; `cargo fuzz run` without `--release`) keep to
/// 1 MB in at most 1024 chunks, so that loading the corpus stays quick.
const MAX_REQUEST: u64 = if cfg!(debug_assertions) { 1 << 20 } else { 300 << 20 };
const MAX_IMAGE: u64 = 64 * 1024;
const CHUNK_SIZES: [usize; 16] = [
    1, 2, 3, 5, 8, 13, 64, 255, 1000, 4096, 8191, 8192, 8193, 65536, 1 << 20, 4 << 20,
];
/// A long body is sent in at most this many chunks, bigger ones if need be.
const MAX_CHUNKS: u64 = if cfg!(debug_assertions) { 1 << 10 } else { 1 << 16 };
/// The repeated region is copied out of a run at least this long.
const TILE: usize = 64 * 1024;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"))
}

/// `prefix`, `region` repeated, `suffix`: made as it is read.
struct Body {
    prefix: Bytes,
    /// The region repeated to at least [`TILE`] bytes (empty when the region is).
    tile: Bytes,
    region_len: u64,
    repeated_len: u64,
    suffix: Bytes,
    len: u64,
    pos: u64,
    chunk: usize,
    burst: usize,
    /// Chunks left in the current burst.
    ready: usize,
    /// Set when the upload has waited since the last burst: the next one has arrived.
    arrived: Arc<AtomicBool>,
}

impl Body {
    fn new(data: &[u8], arrived: Arc<AtomicBool>) -> Option<Body> {
        let (head, body) = data.split_at_checked(8)?;
        let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]) as usize;
        let start = u16_at(4) % (body.len() + 1);
        let region_len = u16_at(6) % (body.len() - start + 1);
        let region = &body[start..start + region_len];
        let reps = (head[3] as u64) << (head[2] % 32);
        let tile = if region.is_empty() {
            Bytes::new()
        } else {
            Bytes::from(region.repeat(TILE.div_ceil(region.len())))
        };
        let cap = MAX_REQUEST + 1;
        let prefix = Bytes::copy_from_slice(&body[..start]);
        let suffix = Bytes::copy_from_slice(&body[start + region_len..]);
        let repeated_len = (region_len as u64).saturating_mul(reps).min(cap);
        let len = (prefix.len() as u64 + repeated_len + suffix.len() as u64).min(cap);
        let chunk = CHUNK_SIZES[head[0] as usize % CHUNK_SIZES.len()];
        let chunk = chunk.max(len.div_ceil(MAX_CHUNKS) as usize);
        let burst = 1 + head[1] as usize % 4;
        Some(Body {
            prefix,
            tile,
            region_len: region_len as u64,
            repeated_len,
            suffix,
            len,
            pos: 0,
            chunk,
            burst,
            ready: 0,
            arrived,
        })
    }

    /// The next `n` bytes of the body.
    fn take(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        let prefix_end = self.prefix.len() as u64;
        let repeated_end = prefix_end + self.repeated_len;
        while out.len() < n {
            let want = n - out.len();
            let part: &[u8] = if self.pos < prefix_end {
                &self.prefix[self.pos as usize..]
            } else if self.pos < repeated_end {
                let at = ((self.pos - prefix_end) % self.region_len) as usize;
                let left = (repeated_end - self.pos).min(usize::MAX as u64) as usize;
                &self.tile[at..self.tile.len().min(at.saturating_add(left))]
            } else {
                &self.suffix[(self.pos - repeated_end) as usize..]
            };
            let part = &part[..part.len().min(want)];
            out.extend_from_slice(part);
            self.pos += part.len() as u64;
        }
        out
    }
}

/// Like a network: `burst` chunks arrive while the upload waits, then no more until it
/// waits again (see [`Waits`]).
impl Stream for Body {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.pos >= self.len {
            return Poll::Ready(None);
        }
        if self.ready == 0 {
            if !self.arrived.swap(false, Ordering::Relaxed) {
                return Poll::Pending;
            }
            self.ready = self.burst;
        }
        self.ready -= 1;
        let n = (self.len - self.pos).min(self.chunk as u64) as usize;
        Poll::Ready(Some(Ok(Bytes::from(self.take(n)))))
    }
}

/// Runs the upload; each time it waits, the next burst arrives and it is woken.
struct Waits<F> {
    upload: Pin<Box<F>>,
    arrived: Arc<AtomicBool>,
}

impl<F: Future> Future for Waits<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let polled = self.upload.as_mut().poll(cx);
        if polled.is_pending() {
            self.arrived.store(true, Ordering::Relaxed);
            cx.waker().wake_by_ref();
        }
        polled
    }
}

fuzz_target!(|data: &[u8]| {
    let arrived = Arc::new(AtomicBool::new(true));
    let Some(body) = Body::new(data, arrived.clone()) else { return };
    let limits = UploadLimits {
        max_image: MAX_IMAGE,
        max_request: MAX_REQUEST,
    };
    let mut sink = MemorySink::default();
    let upload = Box::pin(receive(body, "BOUNDARY".into(), limits, &mut sink));
    let result = runtime().block_on(Waits { upload, arrived });
    if let Ok(form) = result {
        let now = chrono::Local::now().fixed_offset();
        let _ = form.validate(now, Charset::IsoIr192);
        let _ = form.validate(now, Charset::IsoIr100);
        // The body site fields against the photos that came, and a few counts that did not.
        for count in [sink.photos.len(), 1, 50] {
            let _ = form.sites(count, Charset::IsoIr100);
        }
        for photo in &sink.photos {
            let _ = photo_pacs::convert::probe(photo, 1 << 20);
        }
    }
});
