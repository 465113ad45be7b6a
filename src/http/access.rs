//! Access checks at the HTTP edge (cross-site refusal, admin session or Basic password,
//! upload PIN) and the login, logout, session and password routes.

use std::net::{IpAddr, SocketAddr};

use super::pace::RequestBody;
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use serde_json::{Value, json};

use super::body::{self, Response};
use super::error::ApiError;
use super::json::read_object;
use crate::access::{SESSION_COOKIE, client_address, hash_password};
use crate::app::App;
use crate::config::AdminGuard;
use crate::telemetry::events::Actor;

/// Who is asking: the client address that counts for rate limits, and whether the
/// request reached the box over HTTPS (through the tunnel).
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub client: IpAddr,
    pub https: bool,
}

impl Caller {
    /// Forwarding headers are believed only from loopback, where the tunnel's cloudflared runs.
    pub fn of(peer: SocketAddr, headers: &HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let from_proxy = peer.ip().to_canonical().is_loopback();
        let forwarded = text("cf-connecting-ip").or_else(|| text("x-forwarded-for"));
        Caller {
            client: client_address(peer.ip(), forwarded),
            https: from_proxy
                && text("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https")),
        }
    }
}

/// Whether a state-changing request comes from another site's page (a form or script on a
/// web page the nurse has open): the browser says so in Sec-Fetch-Site, or in an Origin
/// that is not this host. Scripts and curl send neither and are not refused for it.
pub fn is_cross_site(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return true;
    }
    match text(header::ORIGIN) {
        None => false,
        Some(origin) => {
            let host = text(header::HOST).unwrap_or("");
            let origin_host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or("");
            origin == "null" || !origin_host.eq_ignore_ascii_case(host)
        }
    }
}

/// The admin password hash in force (`None`: no password, the settings are open), or the
/// refusal while the settings are locked.
pub(super) fn admin_hash(app: &App) -> Result<Option<String>, ApiError> {
    match app.admin() {
        AdminGuard::Open => Ok(None),
        AdminGuard::Hash(hash) => Ok(Some(hash)),
        AdminGuard::Locked(reason) => {
            log::warn!("settings refused while locked: {reason}");
            Err(ApiError::settings_locked())
        }
    }
}

/// Whether the Host header names this box: its host name or `<name>.local`, `localhost`,
/// an IP address, or a name in PHOTO_PACS_ALLOWED_HOSTS. Requests from the box's own
/// loopback (the tunnel's cloudflared) carry the public name and pass.
///
/// Any address passes, not only the one the connection arrived on: DNS rebinding needs a
/// name (the attacker's page is on its own name, which it makes point at the box), and in
/// a container the phone's address is the host's, which the gateway cannot see.
pub fn is_own_host(app: &App, headers: &HeaderMap, peer: SocketAddr) -> bool {
    if crate::access::is_own_loopback(peer.ip()) {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        // HTTP/1.1 requires it; only HTTP/1.0 tools omit it, and no browser does.
        return true;
    };
    let name = host_name(host).to_ascii_lowercase();
    if name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
    {
        return true;
    }
    let name = name.trim_end_matches('.');
    if name == "localhost" || app.env.allowed_hosts.iter().any(|h| h == name) {
        return true;
    }
    let own = crate::access::host_name();
    !own.is_empty() && (name == own || name.strip_suffix(".local") == Some(own.as_str()))
}

/// `host` without its port.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host
            .split_once(']')
            .map_or(host, |(a, _)| &host[..a.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(
        text.split_once(':')
            .map_or(text.clone(), |(_, p)| p.to_string()),
    )
}

/// Checks a password against the admin hash off the async threads (argon2 is slow on
/// purpose), counting failures against the client.
pub(super) async fn check_password(
    app: &App,
    caller: Caller,
    password: String,
    hash: String,
) -> Result<(), ApiError> {
    let attempt = app
        .access
        .password_limiter
        .reserve(caller.client)
        .map_err(ApiError::too_many_attempts)?;
    let ok = app
        .access
        .verifier
        .verify(password, hash)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if ok {
        attempt.succeed();
        Ok(())
    } else {
        Err(ApiError::unauthorized("UNAUTHORIZED", "wrong password"))
    }
}

/// The admin gate: open when no admin password is set; otherwise a live session cookie or
/// HTTP Basic with the password (for scripts).
pub async fn require_admin(app: &App, headers: &HeaderMap, caller: Caller) -> Result<(), ApiError> {
    let hash = admin_hash(app)?;
    let Some(hash) = hash else {
        return Ok(());
    };
    if session_token(headers).is_some_and(|t| app.access.sessions.touch(t)) {
        return Ok(());
    }
    match basic_password(headers) {
        Some(password) => check_password(app, caller, password, hash).await,
        None => Err(ApiError::unauthorized(
            "UNAUTHORIZED",
            "an admin login is needed",
        )),
    }
}

/// The upload gate: open when no PIN is set; otherwise the `X-Upload-Pin` header, or an
/// admin session.
pub fn require_pin(app: &App, headers: &HeaderMap, caller: Caller) -> Result<(), ApiError> {
    let settings = app.settings.current();
    let pin = settings.upload_pin.expose();
    if pin.is_empty() || session_token(headers).is_some_and(|t| app.access.sessions.touch(t)) {
        return Ok(());
    }
    let Some(given) = headers.get("x-upload-pin").and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::unauthorized(
            "PIN_REQUIRED",
            "this gateway needs the upload PIN",
        ));
    };
    let attempt = app
        .access
        .pin_limiter
        .reserve(caller.client)
        .map_err(ApiError::too_many_attempts)?;
    if constant_time_eq(given.as_bytes(), pin.as_bytes()) {
        attempt.succeed();
        Ok(())
    } else {
        Err(ApiError::unauthorized("PIN_REQUIRED", "wrong upload PIN"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn session_cookie(token: &str, caller: Caller, max_age: u64) -> HeaderValue {
    let secure = if caller.https { "; Secure" } else { "" };
    let value = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /api/login` `{"password": "..."}`: a session cookie on success.
pub async fn login(
    app: &App,
    req: Request<RequestBody>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let body = read_object(req, false).await?;
    let password = body
        .get("password")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation(Some("password"), "password must be a string"))?
        .to_string();
    let Some(hash) = admin_hash(app)? else {
        return Ok(body::json(
            StatusCode::OK,
            &json!({ "status": "ok", "adminPasswordSet": false }),
        ));
    };
    let checked = check_password(app, caller, password, hash).await;
    // Only a wrong password is a login event; a refusal for too many guesses is already
    // one.
    match &checked {
        Ok(()) => app.events.login(true, Actor::Admin(caller.client)),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            app.events.login(false, Actor::Anyone(caller.client))
        }
        Err(_) => {}
    }
    checked?;
    Ok(with_new_session(app, caller))
}

fn with_new_session(app: &App, caller: Caller) -> Response {
    let token = app.access.sessions.create();
    let mut resp = body::json(
        StatusCode::OK,
        &json!({ "status": "ok", "authenticated": true }),
    );
    let idle = app.access.sessions.idle().as_secs();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&token, caller, idle));
    resp
}

/// `POST /api/logout`: ends this session.
pub fn logout(app: &App, headers: &HeaderMap, caller: Caller) -> Response {
    if let Some(token) = session_token(headers) {
        app.access.sessions.end(token);
    }
    let mut resp = body::json(StatusCode::OK, &json!({ "status": "ok" }));
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", caller, 0));
    resp
}

/// `GET /api/session`: what the app needs to know to ask for a password or a PIN.
pub fn session(app: &App, headers: &HeaderMap) -> Response {
    let guard = app.admin();
    let admin_set = !matches!(guard, AdminGuard::Open);
    let locked = matches!(guard, AdminGuard::Locked(_));
    let authenticated = session_token(headers).is_some_and(|t| app.access.sessions.touch(t));
    let mut answer = json!({
        "adminPasswordSet": admin_set,
        "authenticated": !locked && (authenticated || !admin_set),
        "uploadPinRequired": app.settings.current().upload_pin.is_set(),
    });
    // Shown before signing in, so it names what happened but no path or file contents.
    let notice = if locked {
        Some(
            "Settings are locked: the admin password file could not be read. The log and the settings file's folder say more; setting PHOTO_PACS_ADMIN_PASSWORD unlocks them.",
        )
    } else if app.settings.problem().is_some() {
        Some(
            "The settings file could not be read and was set aside: the box runs on its default settings. Sign in to see what was wrong and set the settings again.",
        )
    } else {
        None
    };
    if let Some(notice) = notice {
        answer["notice"] = json!(notice);
        answer["settingsLocked"] = json!(locked);
    }
    body::json(StatusCode::OK, &answer)
}

/// `POST /api/admin/password` `{"current": "...", "new": "..."}`: sets or changes the
/// admin password. Changing needs the current one; every other session ends.
pub async fn change_password(
    app: &App,
    req: Request<RequestBody>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let body = read_object(req, false).await?;
    for key in ["current", "new"] {
        if body.get(key).is_some_and(|v| !v.is_string()) {
            return Err(ApiError::validation(
                Some(key),
                format!("{key} must be a string"),
            ));
        }
    }
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if let Some(hash) = admin_hash(app)? {
        check_password(app, caller, text("current"), hash)
            .await
            .map_err(|e| e.for_field("current"))?;
    }
    let new = text("new");
    let hash = tokio::task::spawn_blocking(move || hash_password(&new))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::validation(Some("new"), e.to_string()))?;
    app.settings.set_admin_hash(hash).await?;
    app.access.sessions.end_all();
    log::info!("admin password changed; all sessions ended");
    app.events.password_changed(Actor::Admin(caller.client));
    Ok(with_new_session(app, caller))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let post = Method::POST;
        assert!(
            !is_cross_site(&post, &headers(&[])),
            "curl sends neither header"
        );
        assert!(!is_cross_site(
            &post,
            &headers(&[("host", "box:9470"), ("origin", "http://box:9470")])
        ));
        assert!(is_cross_site(
            &post,
            &headers(&[("host", "box:9470"), ("origin", "http://evil.example")])
        ));
        assert!(is_cross_site(
            &post,
            &headers(&[("host", "box:9470"), ("origin", "null")])
        ));
        assert!(is_cross_site(
            &post,
            &headers(&[("sec-fetch-site", "cross-site")])
        ));
        assert!(is_cross_site(
            &post,
            &headers(&[("sec-fetch-site", "same-site")])
        ));
        assert!(!is_cross_site(
            &post,
            &headers(&[("sec-fetch-site", "same-origin")])
        ));
        assert!(!is_cross_site(
            &Method::GET,
            &headers(&[("origin", "http://evil.example")])
        ));
    }

    #[test]
    fn credentials_are_read_from_cookie_and_basic_auth() {
        let h = headers(&[("cookie", "a=b; photo_pacs_session=TOKEN; c=d")]);
        assert_eq!(session_token(&h), Some("TOKEN"));
        let h = headers(&[("authorization", "Basic YWRtaW46czNjcmV0OnBhcnQ=")]); // admin:s3cret:part
        assert_eq!(basic_password(&h).as_deref(), Some("s3cret:part"));
        assert!(constant_time_eq(b"1234", b"1234"));
        assert!(!constant_time_eq(b"1234", b"1235"));
        assert!(!constant_time_eq(b"1234", b"12345"));
    }

    #[test]
    fn forwarded_proto_counts_only_from_loopback() {
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        let tunnel = Caller::of("127.0.0.1:5000".parse().unwrap(), &h);
        assert!(tunnel.https);
        assert_eq!(tunnel.client, "203.0.113.9".parse::<IpAddr>().unwrap());
        let lan = Caller::of("192.168.1.9:5000".parse().unwrap(), &h);
        assert!(!lan.https);
        assert_eq!(lan.client, "192.168.1.9".parse::<IpAddr>().unwrap());
    }
}
