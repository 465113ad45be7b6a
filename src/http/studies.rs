//! `POST /api/studies`: the multipart upload, streamed to disk, then handed to the intake.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use multer::{Constraints, Multipart, SizeLimit};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::body::{self, Response};
use super::error::ApiError;
use crate::app::App;
use crate::intake::form::{RawForm, TEXT_FIELDS};
use crate::intake::{MAX_IMAGES, Receipt, Staging};
use crate::pacs::InstanceStatus;

/// The multipart names that carry photos; `images[]` is the reference's, `images` is what
/// many HTTP clients send for a repeated field.
const IMAGE_FIELDS: [&str; 2] = ["images[]", "images"];

/// Text fields are short; this bounds what an unknown or abusive field can make us buffer.
const TEXT_FIELD_LIMIT: u64 = 16 * 1024;

pub async fn post(
    app: &App,
    req: Request<Incoming>,
    request_id: &str,
) -> Result<Response, ApiError> {
    let boundary = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| {
            ApiError::validation(
                None,
                "the upload must be sent as multipart/form-data with a boundary",
            )
        })?;
    let max_request = app.env.max_request_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_request) {
        return Err(request_too_large(max_request));
    }

    let settings = app.settings.current();
    let mut staging = app.intake.stage().await.map_err(ApiError::from)?;
    let form = receive(app, req, boundary, &mut staging).await?;
    let now = chrono::Local::now().fixed_offset();
    let study = form.validate(now, settings.local_charset)?;
    if staging.is_empty() {
        return Err(ApiError::validation(
            Some("images[]"),
            "at least one image is required",
        ));
    }
    let target = app.sender.target(&settings);
    let receipt = app
        .intake
        .submit(
            study,
            staging,
            Arc::clone(&settings),
            request_id.to_string(),
        )
        .await?;
    Ok(answer(&receipt, target))
}

/// Reads the multipart body: text fields into a [`RawForm`], photos into staging files.
async fn receive(
    app: &App,
    req: Request<Incoming>,
    boundary: String,
    staging: &mut Staging,
) -> Result<RawForm, ApiError> {
    let max_upload = app.env.max_upload_bytes;
    let max_request = app.env.max_request_bytes;
    let mut limits = SizeLimit::new()
        .whole_stream(max_request)
        .per_field(TEXT_FIELD_LIMIT);
    for name in IMAGE_FIELDS {
        limits = limits.for_field(name, max_upload);
    }
    let stream = Limited::new(
        req.into_body(),
        usize::try_from(max_request).unwrap_or(usize::MAX),
    )
    .into_data_stream();
    let mut multipart =
        Multipart::with_constraints(stream, boundary, Constraints::new().size_limit(limits));

    let mut form = RawForm::default();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, max_upload, max_request, None))?
    {
        let name = field.name().unwrap_or("").to_string();
        if IMAGE_FIELDS.contains(&name.as_str()) {
            if staging.len() >= MAX_IMAGES {
                return Err(ApiError::validation(
                    Some("images[]"),
                    format!("at most {MAX_IMAGES} images can be sent at once"),
                ));
            }
            let index = staging.len() as u32 + 1;
            let path = staging.next_path();
            let mut file = tokio::fs::File::create(&path)
                .await
                .map_err(storage_error)?;
            // Recorded before writing so a half-written file is cleaned up with the rest.
            staging.push(path);
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| multipart_error(e, max_upload, max_request, Some(index)))?
            {
                file.write_all(&chunk).await.map_err(storage_error)?;
            }
            file.flush().await.map_err(storage_error)?;
        } else if TEXT_FIELDS.contains(&name.as_str()) {
            let raw: Bytes = field
                .bytes()
                .await
                .map_err(|e| multipart_error(e, max_upload, max_request, None))?;
            let field_name = TEXT_FIELDS
                .iter()
                .copied()
                .find(|n| *n == name)
                .unwrap_or("form");
            let text = String::from_utf8(raw.to_vec()).map_err(|_| {
                ApiError::validation(Some(field_name), format!("{field_name} must be UTF-8 text"))
            })?;
            form.set(&name, text)?;
        } else {
            // Fields we do not know are read and dropped, as the reference ignores them.
            while field
                .chunk()
                .await
                .map_err(|e| multipart_error(e, max_upload, max_request, None))?
                .is_some()
            {}
        }
    }
    Ok(form)
}

fn answer(receipt: &Receipt, target: Value) -> Response {
    let failed = receipt
        .instances
        .iter()
        .filter(|i| matches!(i.status, InstanceStatus::Failed(_)))
        .count();
    let status = match failed {
        0 => "success",
        n if n == receipt.instances.len() => "failed",
        _ => "partial",
    };
    let instances: Vec<Value> = receipt
        .instances
        .iter()
        .map(|i| {
            let mut v = json!({
                "index": i.index,
                "sopInstanceUID": i.sop_instance_uid,
                "status": i.status.as_str(),
            });
            if let InstanceStatus::Warning(reason) | InstanceStatus::Failed(reason) = &i.status {
                v["reason"] = Value::String(reason.clone());
            }
            v
        })
        .collect();
    let mut doc = json!({
        "status": status,
        "studyInstanceUID": receipt.study_instance_uid,
        "seriesInstanceUID": receipt.series_instance_uid,
        "instances": instances,
        "pacs": target,
    });
    if status != "failed" {
        return body::json(StatusCode::OK, &doc);
    }
    // Nothing stored: an error answer as the app expects one, with the details kept.
    let first_reason = receipt.instances.iter().find_map(|i| match &i.status {
        InstanceStatus::Failed(r) => Some(r.clone()),
        _ => None,
    });
    doc["code"] = Value::from("PACS_REJECTED");
    doc["message"] = Value::from(format!(
        "the PACS refused every image: {}",
        first_reason.unwrap_or_default()
    ));
    body::json(StatusCode::BAD_GATEWAY, &doc)
}

fn request_too_large(max_request: u64) -> ApiError {
    ApiError::too_large(format!(
        "the upload is larger than {} MB in total; send fewer photos at once",
        max_request / (1024 * 1024)
    ))
}

fn storage_error(e: std::io::Error) -> ApiError {
    ApiError::from(crate::intake::IntakeError::Storage(e))
}

fn multipart_error(
    e: multer::Error,
    max_upload: u64,
    max_request: u64,
    image: Option<u32>,
) -> ApiError {
    match e {
        multer::Error::FieldSizeExceeded { field_name, .. } => match image {
            Some(index) => {
                let mut e = ApiError::too_large(format!(
                    "image {index} is larger than {} MB",
                    max_upload / (1024 * 1024)
                ))
                .with_index(index);
                e.field = Some("images[]".into());
                e
            }
            None => {
                let known = field_name.and_then(|n| TEXT_FIELDS.iter().copied().find(|t| *t == n));
                ApiError::validation(
                    known,
                    format!("{} is too long", known.unwrap_or("a form field")),
                )
            }
        },
        multer::Error::StreamSizeExceeded { .. } => request_too_large(max_request),
        multer::Error::StreamReadFailed(inner)
            if inner.downcast_ref::<LengthLimitError>().is_some() =>
        {
            request_too_large(max_request)
        }
        multer::Error::StreamReadFailed(_) => {
            ApiError::validation(None, "the upload was interrupted")
        }
        _ => ApiError::validation(
            None,
            "the upload is not a well-formed multipart/form-data body",
        ),
    }
}
