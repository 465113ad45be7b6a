//! `POST /api/pacs/echo`: tests the connection to the PACS.

use super::pace::RequestBody;
use http::{Request, StatusCode};
use serde_json::{Map, json};

use super::body::{self, Response};
use super::error::ApiError;
use super::json::read_object;
use crate::app::App;
use crate::config::parse_update;

/// Body names of the reference's echo request and the settings they stand in for.
const OVERRIDES: [(&str, &str); 4] = [
    ("calledAET", "pacsCalledAET"),
    ("host", "pacsHost"),
    ("port", "pacsPort"),
    ("callingAET", "localCallingAET"),
];

pub async fn echo(app: &App, req: Request<RequestBody>) -> Result<Response, ApiError> {
    // The body may name another target for this test only: validated like a settings
    // update, never saved.
    let body = read_object(req, true).await?;
    let mut update = Map::new();
    for (name, key) in OVERRIDES {
        if let Some(value) = body.get(name) {
            update.insert(key.to_string(), value.clone());
        }
    }
    let (target, _) = parse_update(&app.settings.current(), &update).map_err(|errors| {
        let first = errors.into_iter().next();
        let field = first
            .as_ref()
            .and_then(|e| OVERRIDES.iter().find(|(_, key)| *key == e.field))
            .map(|(name, _)| *name);
        ApiError::validation(field, first.map(|e| e.message).unwrap_or_default())
    })?;
    let elapsed = app.sender.echo(&target).await?;
    Ok(body::json(
        StatusCode::OK,
        &json!({ "status": "success", "elapsedMs": elapsed.as_millis() as u64 }),
    ))
}
