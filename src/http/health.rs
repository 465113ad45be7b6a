//! `GET /healthz` and `GET /metrics`.

use http::StatusCode;
use serde_json::json;

use super::body::{self, Response};
use crate::app::App;

pub fn healthz() -> Response {
    body::json(StatusCode::OK, &json!({ "status": "ok" }))
}

pub fn metrics(app: &App) -> Response {
    // The oldest study's age grows by itself: refresh the outbox's gauges at each scrape.
    app.outbox.update_gauges();
    body::bytes(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        app.metrics.render(),
    )
}
