//! `POST /api/studies`: the multipart upload, streamed to disk, handed to the intake, and
//! answered once the first delivery attempt ends or the wait is over; `GET
//! /api/studies/{id}`: where that study is now.

use super::pace::RequestBody;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};

use super::access::Caller;
use super::body::{self, Response};
use super::error::ApiError;
use super::form;
use crate::app::App;
use crate::intake::upload::{self, UploadLimits};
use crate::intake::{IntakeError, Submission};
use crate::outbox::{StudyState, StudyView};
use crate::telemetry::events::Actor;

/// The header a phone sends with a fresh random value per submission and repeats when it
/// sends the same submission again (after a lost answer).
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A key is 8 to 128 characters of a UUID's or token's alphabet.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = v.to_str().unwrap_or("").trim();
    let ok = (8..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if !ok {
        return Err(ApiError::validation(
            Some("Idempotency-Key"),
            "the Idempotency-Key header must be 8 to 128 letters, digits, '-', '_', '.' or ':'",
        ));
    }
    Ok(Some(key.to_string()))
}

pub async fn post(
    app: &App,
    req: Request<RequestBody>,
    request_id: &str,
    caller: Caller,
) -> Result<Response, ApiError> {
    // The phone's time is compared with this: when it pressed send, give or take the
    // headers' trip, not after the photos have arrived.
    let received = chrono::Utc::now();
    let key = idempotency_key(req.headers())?;
    // The same submission again (its answer was lost): the first one's study, not a new one.
    // Its body is read and dropped first: a client cut off mid-send would see an error.
    if let Some(view) = key.as_deref().and_then(|k| app.outbox.find_key(k)) {
        discard(req, app.env.max_request_bytes).await;
        return Ok(answer(&view));
    }
    let boundary = form::boundary(&req).ok_or_else(|| {
        ApiError::validation(
            None,
            "the upload must be sent as multipart/form-data with a boundary",
        )
    })?;
    let max_request = app.env.max_request_bytes;
    let declared = form::declared_length(&req);
    if declared.is_some_and(|n| n > max_request) {
        return Err(upload::UploadError::RequestTooLarge { max: max_request }.into());
    }
    if let Err(full) = app.intake.check_space() {
        // Read to the end so the phone hears why, rather than a broken upload.
        discard(req, max_request).await;
        return Err(IntakeError::from(full).into());
    }

    let settings = app.settings.current();
    let mut staging = app.intake.stage().await?;
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
    if let Some(phone) = form.client_time()?
        && let Some(skew_s) = app.clock.observe_phone(phone, received)
    {
        log::warn!(skew_s; "the box's clock and a phone's differ by more than two minutes; exam times come from the phone");
        app.events.clock_skew(skew_s, Actor::Anyone(caller.client));
    }
    if staging.is_empty() {
        return Err(ApiError::validation(
            Some("images[]"),
            "at least one image is required",
        ));
    }
    let sites = form.sites(staging.len(), settings.local_charset)?;
    // Two copies of one submission arriving together make one study: the second waits
    // here, then finds the first's.
    let key_lock = match &key {
        Some(k) => Some(app.outbox.key_lock(k).lock_owned().await),
        None => None,
    };
    if let Some(view) = key.as_deref().and_then(|k| app.outbox.find_key(k)) {
        return Ok(answer(&view));
    }
    let committed = app
        .intake
        .submit(Submission {
            study,
            sites,
            staging,
            settings,
            request_id: request_id.to_string(),
            idempotency_key: key,
        })
        .await?;
    drop(key_lock);
    app.outbox
        .wait_attempted(&committed.id, app.env.delivery_wait)
        .await;
    let view = app.outbox.view(&committed.id).unwrap_or(committed);
    Ok(answer(&view))
}

/// Reads a request body to its end (at most `max` bytes), keeping nothing.
async fn discard(req: Request<RequestBody>, max: u64) {
    let mut body = Limited::new(req.into_body(), usize::try_from(max).unwrap_or(usize::MAX));
    while let Some(Ok(_)) = body.frame().await {}
}

/// `GET /api/studies/{id}`.
pub fn get(app: &App, id: &str) -> Result<Response, ApiError> {
    let view = app
        .outbox
        .view(id)
        .ok_or_else(|| ApiError::not_found_what("no study with this ID on this box"))?;
    Ok(body::json(StatusCode::OK, &status_document(&view)))
}

fn instances(view: &StudyView, key: &str) -> Vec<Value> {
    view.instances
        .iter()
        .map(|i| {
            let mut v = json!({
                "index": i.index,
                "sopInstanceUID": i.sop_instance_uid,
            });
            v[key] = Value::from(i.delivery.as_str());
            if let Some(reason) = &i.reason {
                v["reason"] = Value::String(reason.clone());
            }
            v
        })
        .collect()
}

/// Where a study is: identifiers and delivery state, no patient data.
pub fn status_document(view: &StudyView) -> Value {
    json!({
        "id": view.id,
        "state": view.state.as_str(),
        "created": view.created.to_rfc3339(),
        "studyInstanceUID": view.study_instance_uid,
        "seriesInstanceUID": view.series_instance_uid,
        "attempts": view.attempts,
        "lastAttempt": view.last_attempt.map(|t| t.to_rfc3339()),
        "nextAttempt": view.next_attempt.map(|t| t.to_rfc3339()),
        "lastError": view.last_error.as_ref().map(|e| json!({
            "message": e.message,
            "class": e.class.as_str(),
            "code": e.code.map(|c| c.label()),
        })),
        "instances": instances(view, "state"),
        "pacs": view.destination.target(),
    })
}

/// The upload's answer, in the reference's shape: 200 when stored (`success`, or `partial`
/// with the refused ones named), 202 when saved and still on its way, 502 when the PACS
/// refused every image. The same study always gets the same answer for the same state.
pub fn answer(view: &StudyView) -> Response {
    let status = match view.state {
        StudyState::Stored => "success",
        StudyState::Partial => "partial",
        StudyState::Failed => "failed",
        StudyState::Queued | StudyState::Sending => "queued",
    };
    let mut doc = json!({
        "status": status,
        "id": view.id,
        "studyInstanceUID": view.study_instance_uid,
        "seriesInstanceUID": view.series_instance_uid,
        "instances": instances(view, "status"),
        "pacs": view.destination.target(),
    });
    match view.state {
        StudyState::Stored | StudyState::Partial => body::json(StatusCode::OK, &doc),
        StudyState::Queued | StudyState::Sending => {
            doc["message"] =
                Value::from("saved on the box: it will be sent to the PACS automatically");
            body::json(StatusCode::ACCEPTED, &doc)
        }
        StudyState::Failed => {
            // Nothing stored: an error answer as the app expects one, with the details kept.
            let first_reason = view.instances.iter().find_map(|i| i.reason.clone());
            doc["code"] = Value::from("PACS_REJECTED");
            doc["message"] = Value::from(format!(
                "the PACS refused every image: {}",
                first_reason.unwrap_or_default()
            ));
            body::json(StatusCode::BAD_GATEWAY, &doc)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_checked() {
        let mut h = HeaderMap::new();
        assert_eq!(idempotency_key(&h).unwrap(), None);
        h.insert(
            IDEMPOTENCY_KEY,
            "0b7c4a5e-95c1-4c4b-9a43-5d2b0f7a1e33".parse().unwrap(),
        );
        assert!(idempotency_key(&h).unwrap().is_some());
        for bad in [
            "short",
            "has space in it",
            "semi;colon;value",
            &"k".repeat(129),
        ] {
            h.insert(IDEMPOTENCY_KEY, bad.parse().unwrap());
            assert!(idempotency_key(&h).is_err(), "{bad:?}");
        }
    }
}
