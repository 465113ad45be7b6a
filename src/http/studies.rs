//! `POST /api/studies`: the multipart upload, streamed to disk, then handed to the intake.

use std::sync::Arc;

use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::body::{self, Response};
use super::error::ApiError;
use crate::app::App;
use crate::intake::Receipt;
use crate::intake::upload::{self, UploadLimits};
use crate::pacs::InstanceStatus;

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
        return Err(upload::UploadError::RequestTooLarge { max: max_request }.into());
    }

    let settings = app.settings.current();
    let mut staging = app.intake.stage().await.map_err(ApiError::from)?;
    let limits = UploadLimits {
        max_image: app.env.max_upload_bytes,
        max_request,
    };
    let body = Limited::new(
        req.into_body(),
        usize::try_from(max_request).unwrap_or(usize::MAX),
    )
    .into_data_stream();
    let form = upload::receive(body, boundary, limits, &mut staging).await?;
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
