//! Who may do what: the route x method x credentials x origin matrix, sessions and their
//! cookie, the password change, failed-guess limits, and secrets never coming back out.

mod common;

use base64::Engine;
use common::*;
use std::time::Duration;

use http::Method;
use photo_pacs::http::{API_ROUTES, Guard};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

const ADMIN: &str = "admin-CANARY-pw-7731";
const PIN: &str = "pin-CANARY-2468";
const DW_PASSWORD: &str = "dw-CANARY-secret";
const DW_TOKEN: &str = "tok-CANARY-bearer";

fn protected_gateway() -> (tempfile::TempDir, Gateway) {
    gateway(&[
        ("PHOTO_PACS_ADMIN_PASSWORD", ADMIN),
        ("PHOTO_PACS_UPLOAD_PIN", PIN),
        ("PHOTO_PACS_DICOMWEB_PASSWORD", DW_PASSWORD),
        ("PHOTO_PACS_DICOMWEB_TOKEN", DW_TOKEN),
    ])
}

fn no_redirects() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder().no_proxy().build().unwrap()
}

fn basic(password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"))
    )
}

/// Each request speaks for its own client address (believed from loopback), so the
/// failed-guess limit does not blur the matrix.
fn as_client(r: RequestBuilder, n: usize) -> RequestBuilder {
    r.header(
        "x-forwarded-for",
        format!("10.{}.{}.{}", n / 65536 % 256, n / 256 % 256, n % 256),
    )
}

fn multipart_body() -> (String, Vec<u8>) {
    let boundary = "matrix-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"patientId\"\r\n\r\nP-1\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"images[]\"; filename=\"a.jpg\"\r\n\r\n"
    )
    .into_bytes();
    body.extend(read_data("pillow_hopper.jpg"));
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn request(c: &Client, gw: &Gateway, method: &Method, path: &str) -> RequestBuilder {
    let url = gw.url(path);
    let r = c.request(method.clone(), &url);
    match (method.as_str(), path) {
        ("POST", "/api/studies") => {
            let (ct, body) = multipart_body();
            r.header("content-type", ct).body(body)
        }
        ("POST", "/api/login") => r
            .header("content-type", "application/json")
            .body(json!({"password": "nope"}).to_string()),
        ("POST", "/api/admin/password") => r
            .header("content-type", "application/json")
            .body(json!({"current": "nope", "new": "whatever-long-enough"}).to_string()),
        ("POST", "/api/patients/lookup") => r
            .header("content-type", "application/json")
            .body(json!({"patientId": "DEMO001"}).to_string()),
        ("PUT", _) => r
            .header("content-type", "application/json")
            .body(json!({"localModality": "XC"}).to_string()),
        ("POST", _) => r.header("content-type", "application/json").body("{}"),
        _ => r,
    }
}

#[derive(Clone, Copy, Debug)]
enum Credential {
    None,
    WrongPassword,
    RightPassword,
    Session,
}

#[test]
fn route_method_credential_origin_matrix() {
    let (_dir, gw) = protected_gateway();
    let c = no_redirects();
    let login = c
        .post(gw.url("/api/login"))
        .header("content-type", "application/json")
        .body(json!({"password": ADMIN}).to_string())
        .send()
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    // Routes naming a study get a real one (a stored study in the mock).
    let (ct, body) = multipart_body();
    let stored: Value = c
        .post(gw.url("/api/studies"))
        .header("content-type", ct)
        .header("x-upload-pin", PIN)
        .body(body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let study_id = stored["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the upload answer names its study: {stored}"));

    let mut n = 0;
    // Wrong passwords from all clients together are limited (PASSWORD_FAILURES.1 a window):
    // the matrix waits for a new window before it would reach that, so a right password
    // later in the matrix is not refused for the wrong ones before it.
    let mut failures_in_window = 0;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (route, methods, guard) in API_ROUTES {
        let path_owned = route.replace("{id}", study_id);
        let path = &path_owned.as_str();
        for method in *methods {
            // Logging in or changing the password while the matrix runs would change it.
            if matches!(*path, "/api/admin/password" | "/api/logout") {
                continue;
            }
            for cred in [
                Credential::None,
                Credential::WrongPassword,
                Credential::RightPassword,
                Credential::Session,
            ] {
                for cross_site in [false, true] {
                    n += 1;
                    let changes_state = *method != Method::GET;
                    let spends_a_failure = !(cross_site && changes_state)
                        && ((matches!(guard, Guard::Admin)
                            && matches!(cred, Credential::WrongPassword))
                            || *path == "/api/login");
                    if spends_a_failure {
                        if failures_in_window + 2 >= photo_pacs::access::PASSWORD_FAILURES.1 {
                            std::thread::sleep(
                                photo_pacs::access::FAILURE_WINDOW + Duration::from_secs(1),
                            );
                            failures_in_window = 0;
                        }
                        failures_in_window += 1;
                    }
                    let mut r = as_client(request(&c, &gw, method, path), n);
                    r = match cred {
                        Credential::None => r,
                        Credential::WrongPassword => r
                            .header("authorization", basic("wrong-password"))
                            .header("x-upload-pin", "0000"),
                        Credential::RightPassword => r
                            .header("authorization", basic(ADMIN))
                            .header("x-upload-pin", PIN),
                        Credential::Session => r.header("cookie", &cookie),
                    };
                    if cross_site {
                        r = r
                            .header("origin", "http://evil.example")
                            .header("sec-fetch-site", "cross-site");
                    }
                    let status = r.send().unwrap().status().as_u16();
                    // Past the guard, a study route may also say the study is gone (deleted by
                    // an earlier row) or has nothing to retry.
                    let past_guard: &[u16] = if route.contains("{id}") {
                        &[200, 404, 409]
                    } else if path.starts_with("/api/update/") {
                        // On this machine (no release file) an update route is turned away
                        // past the guard: 409 unavailable, or 400 for the matrix's empty body.
                        &[200, 400, 409]
                    } else if *path == "/api/restore" {
                        // A restore takes a multipart file: the matrix's JSON body is turned
                        // away past the guard.
                        &[200, 400, 415]
                    } else {
                        &[200]
                    };
                    let expected: &[u16] = if cross_site && changes_state {
                        &[403]
                    } else {
                        match (guard, cred) {
                            (Guard::Public, _) => &[200, 400, 401],
                            (_, Credential::None | Credential::WrongPassword) => &[401],
                            (_, Credential::RightPassword | Credential::Session) => past_guard,
                        }
                    };
                    // Public routes: only /api/login may answer 401 (its body's wrong password).
                    let ok = expected.contains(&status)
                        && !(matches!(guard, Guard::Public)
                            && status == 401
                            && *path != "/api/login");
                    rows.push(format!(
                        "| {method} {route} | {guard:?} | {cred:?} | {} | {status} |",
                        if cross_site { "cross-site" } else { "same" }
                    ));
                    if !ok {
                        failures.push(format!("{method} {path} {cred:?} cross_site={cross_site}: {status}, expected {expected:?}"));
                    }
                }
            }
        }
    }
    println!(
        "| request | guard | credential | origin | status |\n|---|---|---|---|---|\n{}",
        rows.join("\n")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        rows.len() >= 70,
        "the matrix covers {} requests",
        rows.len()
    );
}

#[test]
fn sessions_cookies_password_change_and_limits() {
    let (dir, gw) = protected_gateway();
    let c = no_redirects();
    let login = |password: &str, client: usize| -> Response {
        as_client(
            c.post(gw.url("/api/login"))
                .header("content-type", "application/json")
                .body(json!({"password": password}).to_string()),
            client,
        )
        .send()
        .unwrap()
    };

    // The session cookie: HttpOnly, SameSite=Strict, Secure only when the tunnel says https.
    let resp = login(ADMIN, 1);
    let cookie_header = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie_header.contains("HttpOnly") && cookie_header.contains("SameSite=Strict"),
        "{cookie_header}"
    );
    assert!(!cookie_header.contains("Secure"), "plain HTTP on the LAN");
    let cookie = cookie_header.split(';').next().unwrap().to_string();
    let tunnel = c
        .post(gw.url("/api/login"))
        .header("content-type", "application/json")
        .header("x-forwarded-proto", "https")
        .body(json!({"password": ADMIN}).to_string())
        .send()
        .unwrap();
    assert!(
        tunnel.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Secure")
    );

    let settings = |cookie: &str| {
        c.get(gw.url("/api/settings"))
            .header("cookie", cookie)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(settings(&cookie), 200);
    let state: Value = c
        .get(gw.url("/api/session"))
        .header("cookie", &cookie)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        state,
        json!({"adminPasswordSet": true, "authenticated": true, "uploadPinRequired": true})
    );

    // Five wrong passwords from one client, then a wait with Retry-After; others unaffected.
    for _ in 0..5 {
        assert_eq!(login("wrong", 7).status(), 401);
    }
    let limited = login(ADMIN, 7);
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait));
    assert_eq!(login(ADMIN, 8).status(), 200);
    // PIN guesses count the same way, apart from passwords and with more room for typos.
    for _ in 0..10 {
        let r = as_client(request(&c, &gw, &Method::POST, "/api/studies"), 9)
            .header("x-upload-pin", "0000");
        assert_eq!(r.send().unwrap().status(), 401);
    }
    let r =
        as_client(request(&c, &gw, &Method::POST, "/api/studies"), 9).header("x-upload-pin", PIN);
    assert_eq!(r.send().unwrap().status(), 429);

    // Changing the password needs the current one and ends every session.
    let change = |current: &str, new: &str| {
        as_client(
            c.post(gw.url("/api/admin/password"))
                .header("content-type", "application/json")
                .body(json!({"current": current, "new": new}).to_string()),
            20,
        )
        .send()
        .unwrap()
    };
    let wrong = change("not-it", "new-CANARY-password");
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.json::<Value>().unwrap()["field"], "current");
    let short = change(ADMIN, "short");
    assert_eq!(short.status(), 400);
    assert_eq!(short.json::<Value>().unwrap()["field"], "new");
    let ok = change(ADMIN, "new-CANARY-password");
    assert_eq!(ok.status(), 200);
    assert_eq!(settings(&cookie), 401, "old sessions end");
    assert_eq!(
        login(ADMIN, 30).status(),
        401,
        "the old password no longer works"
    );
    assert_eq!(login("new-CANARY-password", 31).status(), 200);
    let ini = std::fs::read_to_string(dir.path().join("data/settings.ini")).unwrap();
    assert!(
        ini.contains("admin_password_hash=$argon2id$")
            || ini.contains("admin_password_hash=\\$argon2id"),
        "{ini}"
    );
    assert!(!ini.contains("new-CANARY-password"));

    // Logout ends the session.
    let fresh = login("new-CANARY-password", 32);
    let fresh_cookie = fresh.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(settings(&fresh_cookie), 200);
    c.post(gw.url("/api/logout"))
        .header("cookie", &fresh_cookie)
        .send()
        .unwrap();
    assert_eq!(settings(&fresh_cookie), 401);

    // The stored hash survives a restart.
    drop(gw);
    let gw = Gateway::start_in(dir.path(), &[]);
    let r = no_redirects()
        .get(gw.url("/api/settings"))
        .header("authorization", basic("new-CANARY-password"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn without_an_admin_password_settings_are_open_and_say_so() {
    let (_dir, gw) = gateway(&[]);
    let doc: Value = gw.get_json("/api/settings");
    assert!(
        doc["warnings"].to_string().contains("no admin password"),
        "{doc}"
    );
    assert_eq!(
        gw.logs().matches("no admin password").count(),
        1,
        "{}",
        gw.logs()
    );
    // Anyone may set the first password; from then on it is needed.
    let set = client()
        .post(gw.url("/api/admin/password"))
        .header("content-type", "application/json")
        .body(json!({"new": "first-password-1"}).to_string())
        .send()
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(
        client()
            .get(gw.url("/api/settings"))
            .send()
            .unwrap()
            .status(),
        401
    );
}

#[test]
fn json_routes_need_json_and_cross_site_posts_are_refused() {
    let (_dir, gw) = gateway(&[]);
    let c = no_redirects();
    // A form another site could submit: text/plain.
    let r = c
        .put(gw.url("/api/settings"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = c.post(gw.url("/api/pacs/echo")).send().unwrap();
    assert_eq!(r.status(), 415);
    // Same-origin requests from the app pass.
    let r = c
        .put(gw.url("/api/settings"))
        .header("content-type", "application/json")
        .header("origin", gw.base.clone())
        .header("sec-fetch-site", "same-origin")
        .body(json!({"localModality": "XC"}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(gw.url("/api/studies"))
        .header("origin", "http://evil.example")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().unwrap()["code"], "CROSS_SITE");
}

#[test]
fn headers_on_every_answer() {
    let (_dir, gw) = gateway(&[]);
    for path in [
        "/",
        "/app.js",
        "/api/settings",
        "/api/nothing",
        "/healthz",
        "/api/openapi.json",
    ] {
        let r = client().get(gw.url(path)).send().unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        if path.starts_with("/api") || path == "/healthz" {
            assert_eq!(h["cache-control"], "no-store", "{path}");
        }
    }
}

/// No answer on any route and no log line contains a secret: the admin password, its hash,
/// the DICOMweb password and token, the upload PIN.
#[test]
fn secrets_never_come_back_out() {
    let (dir, gw) = protected_gateway();
    let c = no_redirects();
    let mut seen = String::new();
    let mut record = |r: Response| {
        for (k, v) in r.headers() {
            seen.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
        }
        seen.push_str(&r.text().unwrap_or_default());
        seen.push('\n');
    };
    // Change the password first so a hash exists on disk to look for.
    record(
        c.post(gw.url("/api/admin/password"))
            .header("content-type", "application/json")
            .body(json!({"current": ADMIN, "new": ADMIN}).to_string())
            .send()
            .unwrap(),
    );
    let ini = std::fs::read_to_string(dir.path().join("data/settings.ini")).unwrap();
    let hash = ini
        .lines()
        .find_map(|l| l.strip_prefix("admin_password_hash="))
        .unwrap()
        .replace('\\', "");
    let hash_tail = hash.rsplit('$').next().unwrap().to_string();
    let auth = basic(ADMIN);
    for (path, methods, _) in API_ROUTES {
        for method in *methods {
            for with_auth in [false, true] {
                let mut r = request(&c, &gw, method, path);
                if with_auth {
                    r = r.header("authorization", &auth).header("x-upload-pin", PIN);
                }
                record(r.send().unwrap());
            }
        }
    }
    record(
        c.put(gw.url("/api/settings"))
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(json!({"dicomwebPassword": null, "uploadPin": PIN, "pacsPort": 0}).to_string())
            .send()
            .unwrap(),
    );
    for page in ["/", "/app.js", "/api/session"] {
        record(c.get(gw.url(page)).send().unwrap());
    }
    let logs = gw.logs();
    assert!(
        seen.contains("dicomwebPasswordSet"),
        "the settings were read"
    );
    for secret in [
        ADMIN,
        PIN,
        DW_PASSWORD,
        DW_TOKEN,
        hash.as_str(),
        hash_tail.as_str(),
    ] {
        assert!(!seen.contains(secret), "{secret:?} came back in an answer");
        assert!(!logs.contains(secret), "{secret:?} reached the log");
    }
}

/// Patient lookups are counted per client whatever they find: 30 a minute, then 429 with
/// Retry-After, while another client still gets its answers.
#[test]
fn patient_lookups_are_limited_per_client() {
    let (_dir, gw) = protected_gateway();
    let c = no_redirects();
    let lookup = |client: usize, id: &str| {
        as_client(
            c.post(gw.url("/api/patients/lookup"))
                .header("content-type", "application/json")
                .header("x-upload-pin", PIN)
                .body(json!({ "patientId": id }).to_string()),
            client,
        )
        .send()
        .unwrap()
    };
    let statuses: Vec<u16> = (0..31)
        .map(|i| lookup(7, &format!("GUESS{i}")).status().as_u16())
        .collect();
    assert!(statuses[..30].iter().all(|s| *s == 200), "{statuses:?}");
    let refused = lookup(7, "DEMO001");
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let other = lookup(8, "DEMO001");
    assert_eq!(other.status(), 200);
    let found: Value = other.json().unwrap();
    assert_eq!(found["found"], true, "{found}");
}
