//! The one router: a `match` on method and path, plus what every answer gets (request id,
//! security headers, a log line, a metric).

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Request, header};
use hyper::body::Incoming;

use super::body::Response;
use super::error::ApiError;
use super::{assets, health, pacs, settings, studies};
use crate::app::App;

/// Every API route and the methods it takes, for 405 answers (and the OpenAPI check to come).
pub const API_ROUTES: &[(&str, &[Method])] = &[
    ("/api/studies", &[Method::POST]),
    ("/api/pacs/echo", &[Method::POST]),
    ("/api/settings", &[Method::GET, Method::PUT]),
    ("/api/settings/info", &[Method::GET]),
    ("/healthz", &[Method::GET]),
    ("/metrics", &[Method::GET]),
];

pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let method = req.method().clone();
    let (route, result) = dispatch(&app, req, &request_id).await;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            // Code, field and image index only: the message may describe the input.
            let field = e.field.as_deref().unwrap_or("-");
            if e.status == http::StatusCode::INTERNAL_SERVER_ERROR {
                log::error!(request_id = request_id.as_str(), code = e.code, field; "{}", e.message);
            } else if e.status.is_server_error() {
                // The PACS's refusal or silence: worth a look, not the gateway's own fault.
                log::warn!(request_id = request_id.as_str(), code = e.code, field; "{}", e.message);
            } else {
                log::info!(request_id = request_id.as_str(), code = e.code, field, index = e.index.unwrap_or(0); "refused");
            }
            e.into_response()
        }
    };
    let status = resp.status().as_u16();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'",
        ),
    );
    if route != "asset" {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let method_label = match method {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::OPTIONS => method.as_str(),
        _ => "OTHER",
    };
    app.metrics.http_request(method_label, route, status);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    // Probes and scrapes come every few seconds; they would drown the lines that matter.
    let level = match route {
        "/healthz" | "/metrics" | "asset" if status < 500 => log::Level::Debug,
        _ if status == 500 => log::Level::Error,
        _ if status >= 500 => log::Level::Warn,
        _ => log::Level::Info,
    };
    log::log!(level, request_id = request_id.as_str(), method = method_label, route, status, elapsed_ms; "request");
    resp
}

async fn dispatch(
    app: &App,
    req: Request<Incoming>,
    request_id: &str,
) -> (&'static str, Result<Response, ApiError>) {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::POST, "/api/studies") => {
            ("/api/studies", studies::post(app, req, request_id).await)
        }
        (&Method::POST, "/api/pacs/echo") => ("/api/pacs/echo", pacs::echo(app, req).await),
        (&Method::GET, "/api/settings") => ("/api/settings", Ok(settings::get(app))),
        (&Method::PUT, "/api/settings") => ("/api/settings", settings::put(app, req).await),
        (&Method::GET, "/api/settings/info") => ("/api/settings/info", Ok(settings::info(app))),
        (&Method::GET, "/healthz") => ("/healthz", Ok(health::healthz())),
        (&Method::GET, "/metrics") => ("/metrics", Ok(health::metrics(app))),
        (_, p) if let Some((route, _)) = API_ROUTES.iter().find(|(r, _)| *r == p) => {
            (route, Err(ApiError::method_not_allowed()))
        }
        (&Method::GET | &Method::HEAD, p) if !p.starts_with("/api/") => {
            match assets::serve(p, req.headers()) {
                Some(resp) => ("asset", Ok(resp)),
                None => ("unknown", Err(ApiError::not_found())),
            }
        }
        _ => ("unknown", Err(ApiError::not_found())),
    }
}
