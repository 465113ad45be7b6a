//! API errors: every service error mapped to an HTTP status and error code in this one place.

use http::StatusCode;
use serde::Serialize;

use super::body::{self, Response};
use crate::backup::{BackupError, RestoreError};
use crate::config::{FieldError, UpdateError};
use crate::intake::IntakeError;
use crate::intake::form::FormError;
use crate::intake::upload::UploadError;
use crate::pacs::PacsError;

/// An error answer: `{"code": ..., "message": ..., "field": ...}` as the reference defines,
/// plus `index` (1-based image) and `errors` (every refused setting) where they apply.
#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// A header the answer must carry (Retry-After for 429, Allow for 405); boxed so
    /// the error stays small on the happy path.
    #[serde(skip)]
    pub header: Option<Box<(http::HeaderName, http::HeaderValue)>>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            index: None,
            errors: Vec::new(),
            header: None,
        }
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// The body stopped arriving, or arrived too slowly to be a client of ours.
    pub fn too_slow() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            format!(
                "the request body arrived too slowly (under {} KB/s)",
                super::pace::MIN_RATE / 1024
            ),
        )
    }

    /// What a multipart form's failure means to its client: past a size limit (the form's
    /// own or the body's, `too_large` says which and how much), too slow, or not a form.
    pub fn from_multipart(e: multer::Error, too_large: impl Fn() -> Self) -> Self {
        match e {
            multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
                too_large()
            }
            multer::Error::StreamReadFailed(inner)
                if inner
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                too_large()
            }
            multer::Error::StreamReadFailed(inner)
                if crate::intake::upload::is_too_slow(inner.as_ref()) =>
            {
                Self::too_slow()
            }
            _ => Self::validation(
                None,
                "the form is not a well-formed multipart/form-data body",
            ),
        }
    }

    /// A request for another host name than the box's own (DNS rebinding).
    pub fn misdirected() -> Self {
        Self::new(
            StatusCode::MISDIRECTED_REQUEST,
            "WRONG_HOST",
            "this request names a host that is not this gateway; open the app by the box's own name or address (or add the name to PHOTO_PACS_ALLOWED_HOSTS)",
        )
    }

    /// Every connection slot (or this client's share of them) is taken.
    pub fn busy(over_share: bool) -> Self {
        if over_share {
            Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_CONNECTIONS",
                "this device has too many connections open to the gateway; try again in a moment",
            )
        } else {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "BUSY",
                "the gateway has too many open connections right now; try again in a moment",
            )
        }
    }

    pub fn settings_locked() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SETTINGS_LOCKED",
            "settings are locked: the admin password file could not be read; see the gateway's log",
        )
    }

    /// More patient lookups from one client (or from all) than a nurse makes.
    pub fn too_many_lookups(retry_after: u64) -> Self {
        Self::retry_later(
            "TOO_MANY_LOOKUPS",
            format!("too many patient lookups; try again in {retry_after} s"),
            retry_after,
        )
    }

    pub fn too_many_attempts(retry_after: u64) -> Self {
        Self::retry_later(
            "TOO_MANY_ATTEMPTS",
            format!("too many failed attempts; try again in {retry_after} s"),
            retry_after,
        )
    }

    /// 429 with Retry-After.
    fn retry_later(code: &'static str, message: String, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, code, message);
        e.header = Some(Box::new((
            http::header::RETRY_AFTER,
            http::HeaderValue::from(retry_after),
        )));
        e
    }

    pub fn cross_site() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "CROSS_SITE",
            "this request came from another web site and was refused",
        )
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            message,
        )
    }

    /// The same error, naming `field`.
    pub fn for_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_string());
        self
    }

    pub fn validation(field: Option<&str>, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message);
        e.field = field.map(str::to_string);
        e
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", message)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no such page or API route",
        )
    }

    /// 405, with the methods the route does take in `Allow` (RFC 9110).
    pub fn method_not_allowed(allowed: &[http::Method]) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "this route does not take that method",
        );
        let list: Vec<&str> = allowed.iter().map(http::Method::as_str).collect();
        if let Ok(v) = http::HeaderValue::from_str(&list.join(", ")) {
            e.header = Some(Box::new((http::header::ALLOW, v)));
        }
        e
    }

    /// 404 for an ID that names nothing here.
    pub fn not_found_what(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "CONFLICT", message)
    }

    /// 507: the data partition is too full for new photos.
    pub fn insufficient_storage(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "INSUFFICIENT_STORAGE",
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
    }

    pub fn with_index(mut self, index: u32) -> Self {
        self.index = Some(index);
        self
    }

    pub fn into_response(self) -> Response {
        let mut resp = body::json(self.status, &self);
        if let Some(pair) = self.header {
            let (name, value) = *pair;
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        let message = e.to_string();
        match e {
            UploadError::ImageTooLarge { index, .. } => ApiError::too_large(message)
                .with_index(index)
                .for_field("images[]"),
            UploadError::RequestTooLarge { .. } => ApiError::too_large(message),
            UploadError::TooManyImages => ApiError::validation(Some("images[]"), message),
            UploadError::TextTooLong { field } => ApiError::validation(field, message),
            UploadError::NotUtf8 { field } => ApiError::validation(Some(field), message),
            UploadError::Form(f) => f.into(),
            UploadError::TooSlow => ApiError::too_slow(),
            UploadError::Interrupted
            | UploadError::Malformed
            | UploadError::PartHeaderTooLong
            | UploadError::TooManyParts => ApiError::validation(None, message),
            UploadError::Storage(e) => IntakeError::from(e).into(),
        }
    }
}

impl From<FormError> for ApiError {
    fn from(e: FormError) -> Self {
        ApiError::validation(Some(e.field), e.message)
    }
}

/// The connection test's failures: silence is 504, anything else 502.
impl From<PacsError> for ApiError {
    fn from(e: PacsError) -> Self {
        if e.timed_out {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "PACS_TIMEOUT", e.message)
        } else {
            ApiError::new(StatusCode::BAD_GATEWAY, "PACS_REJECTED", e.message)
        }
    }
}

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> Self {
        match e {
            IntakeError::Image { index, source } if source.is_client_error() => {
                ApiError::validation(Some("images[]"), format!("image {index}: {source}"))
                    .with_index(index)
            }
            IntakeError::NoImages => {
                ApiError::validation(Some("images[]"), "at least one image is required")
            }
            IntakeError::Full(full) => ApiError::insufficient_storage(full.to_string()),
            other @ (IntakeError::Image { .. }
            | IntakeError::Storage(_)
            | IntakeError::Outbox(_)
            | IntakeError::Internal(_)) => ApiError::internal(other.to_string()),
        }
    }
}

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::Invalid(errors) => {
                let first = errors.first();
                let mut api = ApiError::validation(
                    first.map(|f| f.field.as_str()),
                    first.map_or_else(
                        || "invalid settings".to_string(),
                        |f| format!("{}: {}", f.field, f.message),
                    ),
                );
                api.errors = errors;
                api
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::Passphrase => ApiError::validation(Some("passphrase"), e.to_string()),
            BackupError::Encrypt(_) => ApiError::internal(e.to_string()),
        }
    }
}

/// A refused file is 400 with its own code, so the page can tell "wrong passphrase" (ask
/// again) from "not a backup" (choose another file); refused values are a settings PUT's.
impl From<RestoreError> for ApiError {
    fn from(e: RestoreError) -> Self {
        match e {
            RestoreError::Invalid { message, field } => {
                let mut api = ApiError::new(StatusCode::BAD_REQUEST, "BACKUP_INVALID", message);
                api.field = field;
                api
            }
            RestoreError::Passphrase(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "BACKUP_PASSPHRASE", message)
                    .for_field("passphrase")
            }
            RestoreError::Values(errors) => UpdateError::Invalid(errors).into(),
            RestoreError::Save(e) => e.into(),
            other @ RestoreError::EnvFile { .. } => ApiError::internal(other.to_string()),
        }
    }
}

/// An update's refusals: the file (422, its own code each, so the card can say which), the
/// box (409 unavailable or busy), RAUC (502).
impl From<crate::update::UpdateError> for ApiError {
    fn from(e: crate::update::UpdateError) -> Self {
        use crate::update::UpdateError as U;
        let message = e.to_string();
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match e {
            U::Unavailable(_) => ApiError::new(StatusCode::CONFLICT, "UPDATE_UNAVAILABLE", message),
            U::TooLarge { .. } => ApiError::too_large(message).for_field("file"),
            U::Full { .. } => ApiError::insufficient_storage(message),
            U::Invalid(_) => {
                ApiError::new(unprocessable, "UPDATE_INVALID", message).for_field("file")
            }
            U::Incompatible { .. } => {
                ApiError::new(unprocessable, "UPDATE_INCOMPATIBLE", message).for_field("file")
            }
            U::Downgrade { .. } => {
                ApiError::new(unprocessable, "UPDATE_DOWNGRADE", message).for_field("file")
            }
            U::Url(_) => ApiError::new(unprocessable, "UPDATE_URL", message).for_field("url"),
            U::Download(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "UPDATE_DOWNLOAD", message).for_field("url")
            }
            U::NothingPending => {
                ApiError::new(StatusCode::CONFLICT, "UPDATE_NOTHING_PENDING", message)
            }
            U::Busy(_) => ApiError::new(StatusCode::CONFLICT, "UPDATE_BUSY", message),
            U::RebootTime(_) => ApiError::validation(Some("at"), message),
            U::Rauc(_) | U::InstallFailed(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "UPDATE_RAUC", message)
            }
            U::Io { .. } => ApiError::internal(message),
        }
    }
}
