//! Reading bounded JSON request bodies.

use super::pace::RequestBody;
use http::{Request, header};
use http_body_util::{BodyExt, Limited};
use serde_json::{Map, Value};

use super::error::ApiError;

/// Settings and echo bodies are a few hundred bytes; anything near this is not a client of ours.
const JSON_LIMIT: usize = 64 * 1024;

/// Reads a JSON object body. An empty body reads as `{}` when `allow_empty` is set.
pub async fn read_object(
    req: Request<RequestBody>,
    allow_empty: bool,
) -> Result<Map<String, Value>, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    let bytes = Limited::new(req.into_body(), JSON_LIMIT)
        .collect()
        .await
        .map_err(|e| {
            if super::pace::is_too_slow(e.as_ref()) {
                ApiError::too_slow()
            } else if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::too_large(format!(
                    "the request body is larger than {} KB",
                    JSON_LIMIT / 1024
                ))
            } else {
                ApiError::validation(None, "the request body could not be read")
            }
        })?
        .to_bytes();
    // A page of another site can post a form as text/plain without asking first; it cannot
    // send application/json. Requiring it is part of the cross-site protection.
    if !is_json {
        return Err(ApiError::unsupported_media_type(
            "the request must have Content-Type: application/json",
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) && allow_empty {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::validation(
            None,
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::validation(
            None,
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}
