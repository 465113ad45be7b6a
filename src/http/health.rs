//! `GET /healthz` and `GET /metrics`.

use http::StatusCode;
use serde_json::json;

use super::body::{self, Response};
use crate::app::App;

/// What `Metrics::render` writes: prometheus-client 0.26 encodes OpenMetrics 1.0 (`# EOF`,
/// counters typed without their `_total`). Labelled as the Prometheus 0.0.4 text format,
/// a scraper would parse it with the wrong grammar.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn healthz() -> Response {
    body::json(StatusCode::OK, &json!({ "status": "ok" }))
}

pub fn metrics(app: &App) -> Response {
    // The oldest study's age grows by itself: refresh the outbox's gauges at each scrape.
    app.outbox.update_gauges();
    crate::status::update_gauges(app);
    body::bytes(StatusCode::OK, METRICS_CONTENT_TYPE, app.metrics.render())
}
