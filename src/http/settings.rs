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
            "resizeMax": s.local_resize_max,
            "phoneLongEdge": phone_long_edge(s.flag_shrink_on_phone, s.local_resize_max),
        }),
    )
}

/// The largest canvas every phone browser draws: iOS Safari leaves a bigger one blank
/// (its limit is 16.7 megapixels) instead of failing, so the page could not tell.
const PHONE_CANVAS_EDGE: u32 = 4096;

/// The most the page shrinks camera photos to before upload, 0 to send originals: twice the
/// box's own limit (the page takes twice what the box will make of each photo, so the box's
/// scaling, not the phone's, sets the final quality), as far as a phone can draw. Originals
/// when the box keeps full size, when the admin wants them, or when the box's limit is
/// beyond what a phone draws.
fn phone_long_edge(enabled: bool, resize_max: u32) -> u32 {
    if !enabled || resize_max == 0 || resize_max > PHONE_CANVAS_EDGE {
        return 0;
    }
    resize_max.saturating_mul(2).min(PHONE_CANVAS_EDGE)
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

#[cfg(test)]
mod tests {
    use super::phone_long_edge;

    #[test]
    fn the_phone_shrinks_to_twice_the_box_limit_within_what_it_can_draw() {
        assert_eq!(phone_long_edge(true, 1024), 2048);
        assert_eq!(phone_long_edge(true, 64), 128);
        assert_eq!(phone_long_edge(true, 3000), 4096);
        assert_eq!(phone_long_edge(true, 4096), 4096);
        assert_eq!(phone_long_edge(true, 4097), 0, "beyond a phone's canvas");
        assert_eq!(phone_long_edge(true, 0), 0, "the box keeps originals");
        assert_eq!(phone_long_edge(false, 1024), 0, "the admin wants originals");
    }
}
