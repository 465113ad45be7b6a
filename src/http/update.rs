//! `/api/update…`: the update card's routes (admin only): the slots and the pending bundle,
//! a bundle uploaded or fetched, the install, and the reboot that finishes it.

use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};

use super::body::{self, Response};
use super::error::ApiError;
use super::form;
use super::json::read_object;
use super::pace::RequestBody;
use crate::app::App;
use crate::update::UpdateError;

/// Room for the multipart framing around the file.
const FORM_OVERHEAD: u64 = 64 * 1024;

pub async fn get(app: &App) -> Response {
    body::json(StatusCode::OK, &app.updates.view().await)
}

/// `multipart/form-data` with the bundle in `file`, or `{"url": "https://..."}`.
pub async fn post_bundle(app: &App, req: Request<RequestBody>) -> Result<Response, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let pending = if content_type.starts_with("application/json") {
        let body = read_object(req, false).await?;
        if let Some(unknown) = body.keys().find(|k| k.as_str() != "url") {
            return Err(ApiError::validation(
                Some(unknown),
                format!("unknown field {unknown}"),
            ));
        }
        let Some(Value::String(url)) = body.get("url") else {
            return Err(ApiError::validation(
                Some("url"),
                "url must be the https:// address of an update file",
            ));
        };
        app.updates.download(url, false).await?
    } else {
        upload(app, req).await?
    };
    Ok(body::json(StatusCode::CREATED, &pending))
}

async fn upload(app: &App, req: Request<RequestBody>) -> Result<crate::update::Pending, ApiError> {
    let boundary = form::boundary(&req)
        .ok_or_else(|| {
            ApiError::unsupported_media_type(
                "send the update as multipart/form-data in a field named file, or JSON {\"url\": \"https://...\"}",
            )
        })?;
    let max = app.updates.config().max_bytes;
    let declared = form::declared_length(&req);
    let too_large = || {
        ApiError::from(UpdateError::TooLarge {
            limit_mb: max / (1024 * 1024),
        })
    };
    if declared.is_some_and(|n| n > max + FORM_OVERHEAD) {
        return Err(too_large());
    }
    let stream = Limited::new(req.into_body(), (max + FORM_OVERHEAD) as usize).into_data_stream();
    let limits = multer::SizeLimit::new()
        .whole_stream(max + FORM_OVERHEAD)
        .per_field(4 * 1024)
        .for_field("file", max);
    let mut multipart = multer::Multipart::with_constraints(
        stream,
        boundary,
        multer::Constraints::new().size_limit(limits),
    );
    let fail = move |e: multer::Error| ApiError::from_multipart(e, too_large);
    let mut parts = 0;
    while let Some(mut field) = multipart.next_field().await.map_err(fail)? {
        parts += 1;
        if parts > 4 {
            return Err(ApiError::validation(None, "the form has too many parts"));
        }
        if field.name() != Some("file") {
            field.bytes().await.map_err(fail)?;
            continue;
        }
        let mut up = app
            .updates
            .begin_upload(declared.map(|n| n.saturating_sub(FORM_OVERHEAD)))
            .await?;
        while let Some(chunk) = field.chunk().await.map_err(fail)? {
            up.write(&chunk).await?;
        }
        if up.written() == 0 {
            return Err(ApiError::validation(Some("file"), "the file is empty"));
        }
        let pending = app.updates.accept(up, false).await?;
        return Ok(pending);
    }
    Err(ApiError::validation(
        Some("file"),
        "choose an update file (.raucb) for the form's file field",
    ))
}

pub fn delete_bundle(app: &App) -> Result<Response, ApiError> {
    let deleted = app.updates.discard()?;
    Ok(body::json(StatusCode::OK, &json!({ "deleted": deleted })))
}

/// Starts installing the pending bundle; the page follows the progress with GET.
pub fn post_install(app: &App) -> Result<Response, ApiError> {
    let pending = app.updates.start_install()?;
    Ok(body::json(
        StatusCode::ACCEPTED,
        &json!({ "installing": pending.version }),
    ))
}

/// `{"at": "now"}` or `{"at": "HH:MM"}` (box time).
pub async fn post_reboot(app: &App, req: Request<RequestBody>) -> Result<Response, ApiError> {
    let body = read_object(req, false).await?;
    if let Some(unknown) = body.keys().find(|k| k.as_str() != "at") {
        return Err(ApiError::validation(
            Some(unknown),
            format!("unknown field {unknown}"),
        ));
    }
    let Some(Value::String(at)) = body.get("at") else {
        return Err(ApiError::validation(
            Some("at"),
            "at must be \"now\" or a time of day as HH:MM",
        ));
    };
    let plan = app.updates.schedule_reboot(at)?;
    Ok(body::json(StatusCode::ACCEPTED, &plan))
}

pub fn delete_reboot(app: &App) -> Response {
    let cancelled = app.updates.cancel_reboot();
    body::json(StatusCode::OK, &json!({ "cancelled": cancelled }))
}
