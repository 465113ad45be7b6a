//! The outbox for the admin: `GET /api/outbox`, `POST /api/outbox/{id}/retry`,
//! `DELETE /api/outbox/{id}`.

use http::StatusCode;
use serde_json::{Value, json};

use super::access::Caller;
use super::body::{self, Response};
use super::error::ApiError;
use super::studies::status_document;
use crate::app::App;
use crate::outbox::{OutboxError, StudyState};
use crate::telemetry::events::Actor;

/// The most studies one list shows: it reads a file header for each, and a box whose PACS
/// refused for weeks may hold thousands.
const LIST_MAX: usize = 500;

/// The studies the box holds, oldest first, those still waiting or refused before those
/// stored, at most [`LIST_MAX`] of them, with the Patient ID masked.
pub async fn list(app: &App) -> Result<Response, ApiError> {
    let current = app.sender.destination(&app.settings.current());
    let all = app.outbox.list();
    let total = all.len();
    let queued = all.iter().filter(|v| v.state.in_progress()).count();
    let needs_admin = all
        .iter()
        .filter(|v| matches!(v.state, StudyState::Partial | StudyState::Failed))
        .count();
    let (stored, open): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|v| v.state == StudyState::Stored);
    let shown: Vec<_> = open.into_iter().chain(stored).take(LIST_MAX).collect();
    // Reading each study's first object header is file I/O: off the async threads.
    let (views, masked) = tokio::task::spawn_blocking(move || {
        let masked: Vec<_> = shown.iter().map(|v| v.masked_patient_id()).collect();
        (shown, masked)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let studies: Vec<Value> = views
        .iter()
        .zip(masked)
        .map(|(v, patient)| {
            let mut doc = status_document(v);
            doc["patientId"] = patient.map_or(Value::Null, Value::from);
            doc["instanceCount"] = Value::from(v.instances.len());
            doc["toCurrentPacs"] = Value::from(v.destination == current);
            doc
        })
        .collect();
    Ok(body::json(
        StatusCode::OK,
        &json!({
            "studies": studies,
            "total": total,
            "queued": queued,
            "needsAdmin": needs_admin,
        }),
    ))
}

pub fn retry(app: &App, id: &str, caller: Caller) -> Result<Response, ApiError> {
    let current = app.sender.destination(&app.settings.current());
    let view = app.outbox.retry(id, current)?;
    log::info!(study = id, images = view.instances.len(); "admin: outbox retry");
    app.events
        .outbox(id, "retried", Actor::Admin(caller.client));
    Ok(body::json(StatusCode::OK, &status_document(&view)))
}

pub fn delete(app: &App, id: &str, caller: Caller) -> Result<Response, ApiError> {
    let view = app.outbox.delete(id)?;
    // The audit line: which study, how many images, from where; nothing of the patient.
    log::warn!(
        study = id,
        images = view.instances.len(),
        state = view.state.as_str(),
        client = caller.client.to_string().as_str();
        "admin: outbox study deleted with its files"
    );
    app.events
        .outbox(id, "deleted", Actor::Admin(caller.client));
    Ok(body::json(StatusCode::OK, &json!({ "deleted": id })))
}

impl From<OutboxError> for ApiError {
    fn from(e: OutboxError) -> Self {
        let message = e.to_string();
        match e {
            OutboxError::NotFound(_) => ApiError::not_found_what(message),
            OutboxError::Busy(_) | OutboxError::NothingToRetry(_) => ApiError::conflict(message),
            OutboxError::Locked(_) | OutboxError::Io { .. } => ApiError::internal(message),
        }
    }
}
