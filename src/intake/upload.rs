//! The multipart upload as it arrives: text fields into a [`RawForm`], each photo streamed
//! into a [`PhotoSink`], every size bounded.

use std::future::Future;
use std::io;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use multer::{Constraints, Multipart, SizeLimit};

use super::MAX_IMAGES;
use super::form::{FormError, RawForm, TEXT_FIELDS};

/// The multipart names that carry photos; `images[]` is the reference's, `images` is what
/// many HTTP clients send for a repeated field.
pub const IMAGE_FIELDS: [&str; 2] = ["images[]", "images"];

/// Text fields are short; this bounds what an unknown or abusive field can make us buffer.
pub const TEXT_FIELD_LIMIT: u64 = 16 * 1024;

/// A part's headers (and any preamble before the first part) at most: the multipart parser
/// buffers them whole while it looks for their end, bounded only by the request size.
pub const PART_HEADER_LIMIT: usize = 8 * 1024;

/// Parts in one upload at most. The form has six text fields and up to [`MAX_IMAGES`]
/// photos; unknown fields are skipped, but each part costs parsing, so a body of nothing
/// but tiny parts would keep the reader busy up to the request limit (the instrumented fuzz
/// build spent about 4 µs a part: over 10 s on 250 MB of 60-byte parts).
pub const MAX_PARTS: usize = 1000;

#[derive(Clone, Copy, Debug)]
pub struct UploadLimits {
    /// Largest photo, in bytes.
    pub max_image: u64,
    /// Largest whole body, in bytes.
    pub max_request: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("image {index} is larger than {} MB", max / (1024 * 1024))]
    ImageTooLarge { index: u32, max: u64 },
    #[error("the upload is larger than {} MB in total; send fewer photos at once", max / (1024 * 1024))]
    RequestTooLarge { max: u64 },
    #[error("at most {MAX_IMAGES} images can be sent at once")]
    TooManyImages,
    #[error("{} is too long", field.unwrap_or("a form field"))]
    TextTooLong { field: Option<&'static str> },
    #[error("{field} must be UTF-8 text")]
    NotUtf8 { field: &'static str },
    #[error(transparent)]
    Form(#[from] FormError),
    #[error("the upload was interrupted")]
    Interrupted,
    #[error("the upload arrived too slowly")]
    TooSlow,
    #[error("the upload is not a well-formed multipart/form-data body")]
    Malformed,
    #[error("a part of the upload has headers longer than {} KB", PART_HEADER_LIMIT / 1024)]
    PartHeaderTooLong,
    #[error("the upload has more than {MAX_PARTS} parts")]
    TooManyParts,
    #[error("the gateway could not store the images: {0}")]
    Storage(io::Error),
}

/// Where photos go as they arrive: files under UPLOAD_DIR in the gateway, memory in tests
/// and fuzzing.
pub trait PhotoSink {
    /// Photos begun so far.
    fn count(&self) -> usize;
    /// Starts the next photo.
    fn begin(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    fn write(&mut self, chunk: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    fn finish(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// Photos kept in memory: for the fuzz target and unit tests, where disk I/O would only
/// slow each run down. The server always streams to disk (`Staging`).
#[derive(Default)]
pub struct MemorySink {
    pub photos: Vec<Vec<u8>>,
}

impl PhotoSink for MemorySink {
    fn count(&self) -> usize {
        self.photos.len()
    }

    async fn begin(&mut self) -> io::Result<()> {
        self.photos.push(Vec::new());
        Ok(())
    }

    async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if let Some(last) = self.photos.last_mut() {
            last.extend_from_slice(chunk);
        }
        Ok(())
    }

    async fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a `multipart/form-data` body. Unknown fields are read and dropped, as the
/// reference ignores them; a text field given twice is refused.
pub async fn receive<S, O, E>(
    body: S,
    boundary: String,
    limits: UploadLimits,
    sink: &mut impl PhotoSink,
) -> Result<RawForm, UploadError>
where
    S: Stream<Item = Result<O, E>> + Send + 'static,
    O: Into<Bytes> + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let mut sizes = SizeLimit::new()
        .whole_stream(limits.max_request)
        .per_field(TEXT_FIELD_LIMIT);
    for name in IMAGE_FIELDS {
        sizes = sizes.for_field(name, limits.max_image);
    }
    let mut guard = PartHeaderGuard::new(&boundary);
    let body = body.map(move |chunk| {
        let chunk: Bytes = chunk.map_err(Into::into)?.into();
        guard.feed(&chunk)?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(chunk)
    });
    let mut multipart =
        Multipart::with_constraints(body, boundary, Constraints::new().size_limit(sizes));
    let fail = |e, image| multipart_error(e, limits, image);

    let mut form = RawForm::default();
    let mut parts = 0;
    while let Some(mut field) = multipart.next_field().await.map_err(|e| fail(e, None))? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(UploadError::TooManyParts);
        }
        let name = field.name().unwrap_or("").to_string();
        if IMAGE_FIELDS.contains(&name.as_str()) {
            if sink.count() >= MAX_IMAGES {
                return Err(UploadError::TooManyImages);
            }
            sink.begin().await.map_err(UploadError::Storage)?;
            let index = sink.count() as u32;
            while let Some(chunk) = field.chunk().await.map_err(|e| fail(e, Some(index)))? {
                sink.write(&chunk).await.map_err(UploadError::Storage)?;
            }
            sink.finish().await.map_err(UploadError::Storage)?;
        } else if let Some(field_name) = TEXT_FIELDS.iter().copied().find(|n| *n == name) {
            let raw = field.bytes().await.map_err(|e| fail(e, None))?;
            let text = String::from_utf8(raw.to_vec())
                .map_err(|_| UploadError::NotUtf8 { field: field_name })?;
            form.set(field_name, text)?;
        } else {
            while field.chunk().await.map_err(|e| fail(e, None))?.is_some() {}
        }
    }
    Ok(form)
}

fn multipart_error(e: multer::Error, limits: UploadLimits, image: Option<u32>) -> UploadError {
    match e {
        multer::Error::FieldSizeExceeded { field_name, .. } => match image {
            Some(index) => UploadError::ImageTooLarge {
                index,
                max: limits.max_image,
            },
            None => UploadError::TextTooLong {
                field: field_name.and_then(|n| TEXT_FIELDS.iter().copied().find(|t| *t == n)),
            },
        },
        multer::Error::StreamSizeExceeded { .. } => UploadError::RequestTooLarge {
            max: limits.max_request,
        },
        multer::Error::StreamReadFailed(inner)
            if inner
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            UploadError::RequestTooLarge {
                max: limits.max_request,
            }
        }
        multer::Error::StreamReadFailed(inner)
            if inner.downcast_ref::<HeaderTooLong>().is_some() =>
        {
            UploadError::PartHeaderTooLong
        }
        multer::Error::StreamReadFailed(inner) if is_too_slow(inner.as_ref()) => {
            UploadError::TooSlow
        }
        multer::Error::StreamReadFailed(_) => UploadError::Interrupted,
        _ => UploadError::Malformed,
    }
}

/// The error a request body ends with when it arrives too slowly (the HTTP layer's
/// pacing decides when; it is named here so the upload can tell it from a dropped link).
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
pub struct TooSlow;

/// Whether a body error, however wrapped, is [`TooSlow`].
pub fn is_too_slow(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<TooSlow>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The stream error [`PartHeaderGuard`] ends a body with.
#[derive(Debug, thiserror::Error)]
#[error("multipart part headers too long")]
struct HeaderTooLong;

/// Watches the body on its way to the parser and stops it when a part's headers run past
/// [`PART_HEADER_LIMIT`]: the parser itself would buffer them until the request limit. It
/// follows the parser's steps (multer 3: first `--boundary` anywhere, then two bytes that
/// are `--` or padding up to a line break, then headers up to a blank line, then data up to
/// `\r\n--boundary`) and judges nothing else.
struct PartHeaderGuard {
    /// `\r\n--boundary`: what ends a part's data.
    delimiter: Vec<u8>,
    mode: Mode,
    /// Bytes kept from earlier chunks: a pattern split across chunks, or the two bytes
    /// after a delimiter.
    carry: Vec<u8>,
    /// Bytes of the preamble or of the current part's headers so far.
    header_bytes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Before the first `--boundary`.
    Preamble,
    /// Just after a delimiter: `--` ends the body, anything else is padding and a line break.
    AfterDelimiter,
    /// Up to the line break that ends the delimiter line.
    Padding,
    Headers,
    /// A part's data: looking for the next delimiter.
    Data,
    /// After the closing delimiter: the parser reads no further.
    Epilogue,
}

const HEADER_END: &[u8] = b"\r\n\r\n";

impl PartHeaderGuard {
    fn new(boundary: &str) -> Self {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        PartHeaderGuard {
            delimiter,
            mode: Mode::Preamble,
            carry: Vec::new(),
            header_bytes: 0,
        }
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<(), HeaderTooLong> {
        while !data.is_empty() {
            let (pattern, counted): (&[u8], bool) = match self.mode {
                Mode::Epilogue => return Ok(()),
                Mode::AfterDelimiter => {
                    self.carry.push(data[0]);
                    data = &data[1..];
                    self.header_bytes += 1;
                    if self.carry.len() == 2 {
                        self.mode = if self.carry == b"--" {
                            Mode::Epilogue
                        } else {
                            Mode::Padding
                        };
                    }
                    continue;
                }
                Mode::Preamble => (&self.delimiter[2..], true),
                Mode::Padding => (b"\r\n", true),
                Mode::Headers => (HEADER_END, true),
                Mode::Data => (&self.delimiter, false),
            };
            let found = find_across(&mut self.carry, data, pattern);
            if counted {
                self.header_bytes = self
                    .header_bytes
                    .saturating_add(found.unwrap_or(data.len()));
                if self.header_bytes > PART_HEADER_LIMIT {
                    return Err(HeaderTooLong);
                }
            }
            let Some(end) = found else {
                return Ok(());
            };
            data = &data[end..];
            self.mode = match self.mode {
                Mode::Preamble | Mode::Data => {
                    self.header_bytes = 0;
                    Mode::AfterDelimiter
                }
                Mode::Padding => Mode::Headers,
                _ => Mode::Data,
            };
        }
        Ok(())
    }
}

/// Where the first match of `pattern` in `carry` followed by `data` ends, as an offset into
/// `data`; `carry` is then empty. With no match, `carry` keeps the last bytes that could
/// still begin one.
fn find_across(carry: &mut Vec<u8>, data: &[u8], pattern: &[u8]) -> Option<usize> {
    let keep = pattern.len().saturating_sub(1);
    if !carry.is_empty() {
        let head = &data[..data.len().min(keep)];
        let mut joined = carry.clone();
        joined.extend_from_slice(head);
        if let Some(at) = memchr::memmem::find(&joined, pattern)
            && at < carry.len()
        {
            let end = at + pattern.len() - carry.len();
            carry.clear();
            return Some(end);
        }
    }
    if let Some(at) = memchr::memmem::find(data, pattern) {
        carry.clear();
        return Some(at + pattern.len());
    }
    let mut tail = std::mem::take(carry);
    tail.extend_from_slice(&data[data.len().saturating_sub(keep)..]);
    let cut = tail.len().saturating_sub(keep);
    tail.drain(..cut);
    *carry = tail;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(
        body: &'static [u8],
        limits: UploadLimits,
    ) -> (Result<RawForm, UploadError>, MemorySink) {
        let mut sink = MemorySink::default();
        let stream =
            futures_util::stream::once(
                async move { Ok::<_, std::io::Error>(Bytes::from_static(body)) },
            );
        let result = receive(stream, "B".into(), limits, &mut sink).await;
        (result, sink)
    }

    const LIMITS: UploadLimits = UploadLimits {
        max_image: 16,
        max_request: 1024,
    };

    #[tokio::test]
    async fn fields_and_photos_are_separated() {
        let body = b"--B\r\nContent-Disposition: form-data; name=\"patientId\"\r\n\r\nP-1\r\n--B\r\nContent-Disposition: form-data; name=\"images[]\"; filename=\"a\"\r\n\r\nPHOTO\r\n--B\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nignored\r\n--B--\r\n";
        let (form, sink) = parse(body, LIMITS).await;
        assert_eq!(form.unwrap().patient_id.as_deref(), Some("P-1"));
        assert_eq!(sink.photos, [b"PHOTO".to_vec()]);
    }

    #[tokio::test]
    async fn limits_and_malformed_bodies_are_named() {
        let big = b"--B\r\nContent-Disposition: form-data; name=\"images[]\"; filename=\"a\"\r\n\r\n0123456789abcdefXYZ\r\n--B--\r\n";
        assert!(matches!(
            parse(big, LIMITS).await.0,
            Err(UploadError::ImageTooLarge { index: 1, .. })
        ));
        let cut = b"--B\r\nContent-Disposition: form-data; name=\"patientId\"\r\n\r\nP-";
        assert!(matches!(
            parse(cut, LIMITS).await.0,
            Err(UploadError::Malformed)
        ));
        let twice = b"--B\r\nContent-Disposition: form-data; name=\"sex\"\r\n\r\nM\r\n--B\r\nContent-Disposition: form-data; name=\"sex\"\r\n\r\nF\r\n--B--\r\n";
        assert!(matches!(
            parse(twice, LIMITS).await.0,
            Err(UploadError::Form(_))
        ));
    }

    #[tokio::test]
    async fn a_body_of_endless_tiny_parts_is_refused_after_max_parts() {
        async fn parts(n: usize) -> Result<RawForm, UploadError> {
            let mut body =
                b"--B\r\nContent-Disposition: form-data; name=\"patientId\"\r\n\r\nP-1\r\n"
                    .to_vec();
            for _ in 1..n {
                body.extend_from_slice(
                    b"--B\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\r\n",
                );
            }
            body.extend_from_slice(b"--B--\r\n");
            let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(body))]);
            receive(stream, "B".into(), LIMITS_1MB, &mut MemorySink::default()).await
        }
        const LIMITS_1MB: UploadLimits = UploadLimits {
            max_image: 16,
            max_request: 1 << 20,
        };
        let at_limit = parts(MAX_PARTS).await;
        assert_eq!(at_limit.unwrap().patient_id.as_deref(), Some("P-1"));
        let over = parts(MAX_PARTS + 1).await;
        assert!(
            matches!(over, Err(UploadError::TooManyParts)),
            "{:?}",
            over.err()
        );
    }

    /// Feeds `body` to the guard in chunks of `size`.
    fn guard_chunked(body: &[u8], size: usize) -> Result<(), HeaderTooLong> {
        let mut g = PartHeaderGuard::new("B");
        body.chunks(size).try_for_each(|c| g.feed(c))
    }

    #[test]
    fn the_header_guard_passes_real_bodies_however_they_are_split() {
        let long_field = format!(
            "--B\r\nContent-Disposition: form-data; name=\"images[]\"; filename=\"a\"\r\n\r\n{}\r\n--B\r\nContent-Disposition: form-data; name=\"sex\"\r\n\r\nM\r\n--B--\r\n{}",
            "x\r\n\r\n".repeat(5000),
            "epilogue ".repeat(2000)
        );
        for size in [1, 2, 3, 7, 64, 4096, usize::MAX] {
            assert!(
                guard_chunked(long_field.as_bytes(), size.min(long_field.len())).is_ok(),
                "{size}"
            );
        }
    }

    #[test]
    fn the_header_guard_stops_endless_part_headers_and_preambles() {
        let endless = format!(
            "--B\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Pad: {}",
            "p".repeat(PART_HEADER_LIMIT)
        );
        let preamble = "q".repeat(PART_HEADER_LIMIT + 1);
        let second = format!(
            "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--B\r\nX: {}",
            "p".repeat(PART_HEADER_LIMIT)
        );
        for body in [endless, preamble, second] {
            for size in [1, 5, 1000, body.len()] {
                assert!(guard_chunked(body.as_bytes(), size).is_err(), "{size}");
            }
        }
    }

    #[tokio::test]
    async fn an_endless_part_header_is_refused_before_the_request_limit() {
        let mut body = b"--B\r\nContent-Disposition: form-data; name=\"patientId\"\r\nX: ".to_vec();
        body.extend(std::iter::repeat_n(b'h', 64 * 1024));
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut sink = MemorySink::default();
        let limits = UploadLimits {
            max_image: 1 << 20,
            max_request: 1 << 30,
        };
        let got = receive(
            futures_util::stream::iter(chunks),
            "B".into(),
            limits,
            &mut sink,
        )
        .await;
        assert!(
            matches!(got, Err(UploadError::PartHeaderTooLong)),
            "{:?}",
            got.as_ref().err()
        );
    }
}
