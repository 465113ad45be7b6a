//! `GET`/`PUT /api/settings` and `GET /api/settings/info`.

use super::pace::RequestBody;
use http::{Request, StatusCode};
use serde_json::{Value, json};

use super::access::Caller;
use super::body::{self, Response};
use super::error::ApiError;
use super::json::read_object;
use crate::app::App;
use crate::config::Key;
use crate::telemetry::events::Actor;

/// What the phone app needs to know before anyone logs in. Nothing here is secret.
pub fn info(app: &App) -> Response {
    let s = app.settings.current();
    body::json(
        StatusCode::OK,
        &json!({
            "pacsBackend": app.env.backend.as_str(),
            "worklist": s.worklist_enabled,
            "patientLookup": s.patient_lookup_enabled,
            "patientIdPattern": s.patient_id_pattern,
            "barcodeFormats": BARCODE_FORMATS,
            "bodySites": body_sites(),
        }),
    )
}

/// The regions the body site picker offers, in its order: the page names them in its own
/// language by `key` and asks for a side only when `paired`.
fn body_sites() -> Value {
    crate::anatomy::REGIONS
        .iter()
        .map(|r| {
            json!({
                "key": r.key,
                "code": r.code,
                "scheme": "SCT",
                "meaning": r.meaning,
                "paired": r.paired,
            })
        })
        .collect()
}

/// The wristband symbologies the scan button looks for, in the names of the browser's
/// BarcodeDetector (the ZXing fallback maps them to its own).
const BARCODE_FORMATS: [&str; 5] = ["code_128", "code_39", "qr_code", "data_matrix", "pdf417"];

pub fn get(app: &App) -> Response {
    body::json(StatusCode::OK, &document(app))
}

/// Takes the `settings` object GET returns, all keys or a subset, bare or still wrapped as
/// GET answers it (`{"settings": {...}, "warnings": [...]}`), and answers like GET.
pub async fn put(
    app: &App,
    req: Request<RequestBody>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let mut update = read_object(req, false).await?;
    let wrapped = update.keys().all(|k| k == "settings" || k == "warnings");
    if wrapped && let Some(Value::Object(inner)) = update.remove("settings") {
        update = inner;
    }
    let before = app.settings.current();
    app.settings
        .update(&update, |s| app.sender.check(s))
        .await?;
    let after = app.settings.current();
    let changed: Vec<String> = Key::ALL
        .into_iter()
        .filter(|k| before.raw(*k) != after.raw(*k))
        .map(|k| k.names().json.to_string())
        .collect();
    if !changed.is_empty() {
        app.events
            .settings_changed(changed, Actor::Admin(caller.client));
        app.settings_changed();
    }
    // A new provider, or lookups turned off: answers from before must not be served.
    app.reception.forget().await;
    Ok(body::json(StatusCode::OK, &document(app)))
}

/// `{"settings": {...}, "warnings": [...]}`: warnings are problems an admin should fix.
fn document(app: &App) -> Value {
    let current = app.settings.current();
    json!({
        "settings": current.to_json(),
        "warnings": app.warnings(&current),
    })
}
