//! The one router: a `match` on method and path, plus what every answer gets (request id,
//! security headers, a log line, a metric).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Request, header};
use hyper::body::Incoming;

use super::access::{self, Caller};
use super::body::Response;
use super::error::ApiError;
use super::pace::{Paced, RequestBody};
use super::{
    assets, backup, health, openapi, outbox, pacs, settings, status, studies, update, worklist,
};
use crate::app::App;

/// Who may use a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    Public,
    /// An admin session or password, when an admin password is set.
    Admin,
    /// The upload PIN, when one is set.
    Upload,
}

/// Every API route, the methods it takes and its guard: for 405 answers, the access check,
/// and the test that keeps the OpenAPI document true.
/// `{id}` in a route stands for one path segment naming a study.
pub const API_ROUTES: &[(&str, &[Method], Guard)] = &[
    ("/api/studies", &[Method::POST], Guard::Upload),
    // The phone that sent a study follows it; the ID is random and the answer has no
    // patient data.
    ("/api/studies/{id}", &[Method::GET], Guard::Upload),
    // Patient data for whoever may upload: the same PIN guards both.
    ("/api/worklist", &[Method::GET], Guard::Upload),
    ("/api/patients/lookup", &[Method::POST], Guard::Upload),
    ("/api/outbox", &[Method::GET], Guard::Admin),
    ("/api/outbox/{id}", &[Method::DELETE], Guard::Admin),
    ("/api/outbox/{id}/retry", &[Method::POST], Guard::Admin),
    ("/api/pacs/echo", &[Method::POST], Guard::Admin),
    ("/api/settings", &[Method::GET, Method::PUT], Guard::Admin),
    ("/api/settings/info", &[Method::GET], Guard::Public),
    // The backup with secrets asks for the admin password again, in its body.
    ("/api/backup", &[Method::POST], Guard::Admin),
    ("/api/restore", &[Method::POST], Guard::Admin),
    // Updates of the box's system: what runs, a bundle, its install, the reboot.
    ("/api/update", &[Method::GET], Guard::Admin),
    (
        "/api/update/bundle",
        &[Method::POST, Method::DELETE],
        Guard::Admin,
    ),
    ("/api/update/install", &[Method::POST], Guard::Admin),
    (
        "/api/update/reboot",
        &[Method::POST, Method::DELETE],
        Guard::Admin,
    ),
    ("/api/session", &[Method::GET], Guard::Public),
    ("/api/login", &[Method::POST], Guard::Public),
    ("/api/logout", &[Method::POST], Guard::Public),
    // Checks the current password itself.
    ("/api/admin/password", &[Method::POST], Guard::Public),
    ("/api/openapi.json", &[Method::GET], Guard::Public),
    // The box's facts (addresses, disk, PACS, clock) are for the admin only.
    ("/api/status", &[Method::GET], Guard::Admin),
    ("/api/events", &[Method::GET], Guard::Admin),
    ("/api/diagnostics", &[Method::GET], Guard::Admin),
    ("/healthz", &[Method::GET], Guard::Public),
    // Readiness: a load balancer or monitor asks it; the reasons name no patient.
    ("/readyz", &[Method::GET], Guard::Public),
    ("/metrics", &[Method::GET], Guard::Public),
];

pub async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let method = req.method().clone();
    let caller = Caller::of(peer, req.headers());
    let own_host = access::is_own_host(&app, req.headers(), peer);
    let req = req.map(Paced::new);
    let (route, result) = dispatch(&app, req, &request_id, caller, own_host).await;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            // Code, field and image index only: the message may describe the input.
            let field = e.field.as_deref().unwrap_or("-");
            if e.status == http::StatusCode::INTERNAL_SERVER_ERROR {
                log::error!(request_id = request_id.as_str(), code = e.code, field; "{}", e.message);
                app.events.server_error(route, e.code);
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
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // 'wasm-unsafe-eval' lets the page compile WebAssembly (the vendored barcode decoder,
    // assets/vendor/zxing-wasm) and nothing else: no eval(), no script from elsewhere.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' blob: data:; frame-ancestors 'none'",
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
        "/healthz" | "/readyz" | "/metrics" | "asset" if status < 500 => log::Level::Debug,
        _ if status == 500 => log::Level::Error,
        _ if status >= 500 => log::Level::Warn,
        _ => log::Level::Info,
    };
    log::log!(level, request_id = request_id.as_str(), method = method_label, route, status, elapsed_ms; "request");
    resp
}

/// A connection past the limits: `/healthz` is answered, anything else is told to come
/// back (its body is not read; the connection closes after the answer).
pub async fn handle_reserved(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    over_share: bool,
) -> Response {
    if req.method() == Method::GET && req.uri().path() == "/healthz" {
        return handle(app, req, peer).await;
    }
    // The client's own share used up is its doing (429); every slot taken is the box's (503).
    let e = ApiError::busy(over_share);
    app.metrics.http_request("OTHER", "busy", e.status.as_u16());
    let mut resp = e.into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    resp
}

async fn dispatch(
    app: &App,
    req: Request<RequestBody>,
    request_id: &str,
    caller: Caller,
    own_host: bool,
) -> (&'static str, Result<Response, ApiError>) {
    let path = req.uri().path().to_string();
    let mut id = None;
    let known = API_ROUTES.iter().find(|(r, _, _)| match matches(r, &path) {
        Some(found) => {
            id = found;
            true
        }
        None => false,
    });
    let Some(&(route, methods, guard)) = known else {
        return match *req.method() {
            Method::GET | Method::HEAD if !path.starts_with("/api/") => {
                match assets::serve(&path, req.headers()) {
                    Some(resp) => ("asset", Ok(resp)),
                    None => ("unknown", Err(ApiError::not_found())),
                }
            }
            _ => ("unknown", Err(ApiError::not_found())),
        };
    };
    if !methods.contains(req.method()) {
        return (route, Err(ApiError::method_not_allowed(methods)));
    }
    if access::is_cross_site(req.method(), req.headers()) {
        return (route, Err(ApiError::cross_site()));
    }
    // DNS rebinding: a page on another site that made its name point at the box passes the
    // Origin check; its Host is still its own name.
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if (changes || guard == Guard::Admin) && !own_host {
        return (route, Err(ApiError::misdirected()));
    }
    let allowed = match guard {
        Guard::Public => Ok(()),
        Guard::Admin => access::require_admin(app, req.headers(), caller).await,
        Guard::Upload => access::require_pin(app, req.headers(), caller),
    };
    if let Err(e) = allowed {
        return (route, Err(e));
    }
    let id = id.unwrap_or_default();
    let result = match (req.method(), route) {
        (&Method::POST, "/api/studies") => studies::post(app, req, request_id, caller).await,
        (&Method::GET, "/api/studies/{id}") => studies::get(app, &id),
        (&Method::GET, "/api/worklist") => worklist::today(app, &req).await,
        (&Method::POST, "/api/patients/lookup") => worklist::lookup(app, req, caller).await,
        (&Method::GET, "/api/outbox") => outbox::list(app).await,
        (&Method::DELETE, "/api/outbox/{id}") => outbox::delete(app, &id, caller),
        (&Method::POST, "/api/outbox/{id}/retry") => outbox::retry(app, &id, caller),
        (&Method::POST, "/api/pacs/echo") => pacs::echo(app, req).await,
        (&Method::GET, "/api/settings") => Ok(settings::get(app)),
        (&Method::PUT, "/api/settings") => settings::put(app, req, caller).await,
        (&Method::GET, "/api/settings/info") => Ok(settings::info(app)),
        (&Method::POST, "/api/backup") => backup::post_backup(app, req, caller).await,
        (&Method::POST, "/api/restore") => backup::post_restore(app, req, caller).await,
        (&Method::GET, "/api/update") => Ok(update::get(app).await),
        (&Method::POST, "/api/update/bundle") => update::post_bundle(app, req).await,
        (&Method::DELETE, "/api/update/bundle") => update::delete_bundle(app),
        (&Method::POST, "/api/update/install") => update::post_install(app),
        (&Method::POST, "/api/update/reboot") => update::post_reboot(app, req).await,
        (&Method::DELETE, "/api/update/reboot") => Ok(update::delete_reboot(app)),
        (&Method::GET, "/api/session") => Ok(access::session(app, req.headers())),
        (&Method::POST, "/api/login") => access::login(app, req, caller).await,
        (&Method::POST, "/api/logout") => Ok(access::logout(app, req.headers(), caller)),
        (&Method::POST, "/api/admin/password") => access::change_password(app, req, caller).await,
        (&Method::GET, "/api/openapi.json") => Ok(openapi::document()),
        (&Method::GET, "/api/status") => Ok(status::get(app).await),
        (&Method::GET, "/api/events") => Ok(status::events(app)),
        (&Method::GET, "/api/diagnostics") => status::diagnostics(app).await,
        (&Method::GET, "/healthz") => Ok(health::healthz()),
        (&Method::GET, "/readyz") => Ok(status::readyz(app)),
        (&Method::GET, "/metrics") => Ok(health::metrics(app)),
        _ => Err(ApiError::method_not_allowed(methods)),
    };
    (route, result)
}

/// Whether `path` is `route`; `Some(Some(id))` when the route has an `{id}` segment. An ID
/// is 1 to 64 letters, digits or dashes: anything else is no route at all.
fn matches(route: &str, path: &str) -> Option<Option<String>> {
    let mut id = None;
    let mut r = route.split('/');
    let mut p = path.split('/');
    loop {
        match (r.next(), p.next()) {
            (None, None) => return Some(id),
            (Some("{id}"), Some(seg))
                if (1..=64).contains(&seg.len())
                    && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                id = Some(seg.to_string());
            }
            (Some(a), Some(b)) if a == b => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn routes_with_an_id_match_one_plain_segment() {
        assert_eq!(matches("/api/studies", "/api/studies"), Some(None));
        assert_eq!(
            matches("/api/studies/{id}", "/api/studies/0a1b"),
            Some(Some("0a1b".into()))
        );
        assert_eq!(
            matches("/api/outbox/{id}/retry", "/api/outbox/x-1/retry"),
            Some(Some("x-1".into()))
        );
        for bad in [
            "/api/studies/",
            "/api/studies/a/b",
            "/api/studies/a.b",
            "/api/studies/%2e%2e",
        ] {
            assert_eq!(matches("/api/studies/{id}", bad), None, "{bad}");
        }
        assert_eq!(
            matches(
                "/api/studies/{id}",
                &format!("/api/studies/{}", "a".repeat(65))
            ),
            None
        );
    }
}
