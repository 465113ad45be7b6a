//! The multipart upload as it arrives: text fields into a [`RawForm`], each photo streamed
//! into a [`PhotoSink`], every size bounded.

use std::future::Future;
use std::io;

use bytes::Bytes;
use futures_util::Stream;
use multer::{Constraints, Multipart, SizeLimit};

use super::MAX_IMAGES;
use super::form::{FormError, RawForm, TEXT_FIELDS};

/// The multipart names that carry photos; `images[]` is the reference's, `images` is what
/// many HTTP clients send for a repeated field.
pub const IMAGE_FIELDS: [&str; 2] = ["images[]", "images"];

/// Text fields are short; this bounds what an unknown or abusive field can make us buffer.
pub const TEXT_FIELD_LIMIT: u64 = 16 * 1024;

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
    #[error("the upload is not a well-formed multipart/form-data body")]
    Malformed,
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
    let mut multipart =
        Multipart::with_constraints(body, boundary, Constraints::new().size_limit(sizes));
    let fail = |e, image| multipart_error(e, limits, image);

    let mut form = RawForm::default();
    while let Some(mut field) = multipart.next_field().await.map_err(|e| fail(e, None))? {
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
        multer::Error::StreamReadFailed(_) => UploadError::Interrupted,
        _ => UploadError::Malformed,
    }
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
}
