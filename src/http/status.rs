//! `GET /api/status`, `GET /readyz`, `GET /api/events` and `GET /api/diagnostics`.

use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::body::{self, Response};
use super::error::ApiError;
use crate::app::App;
use crate::status;

pub async fn get(app: &App) -> Response {
    body::json(StatusCode::OK, &status::document(app).await)
}

/// 503 with the reasons while the box cannot take and keep photos; `/healthz` stays the
/// watchdog's liveness answer whatever this says.
pub fn readyz(app: &App) -> Response {
    let reasons = status::readiness(app);
    if reasons.is_empty() {
        body::json(StatusCode::OK, &json!({ "status": "ready" }))
    } else {
        body::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "not ready", "reasons": reasons }),
        )
    }
}

pub fn events(app: &App) -> Response {
    body::json(StatusCode::OK, &json!({ "events": app.events.recent() }))
}

/// A tarball for whoever helps the clinic: the status, the recent events, the settings
/// without secrets, the version and the units' state. Nothing in it names a patient.
pub async fn diagnostics(app: &App) -> Result<Response, ApiError> {
    let status = status::document(app).await;
    let settings = json!({
        "settings": Value::Object(app.settings.current().to_json()),
    });
    let events = json!({ "events": app.events.recent() });
    let units = status::units(&status::UNITS).await;
    let mut units_text = String::new();
    for u in &units {
        let shown = |s: &str| {
            if s.is_empty() {
                "?".to_string()
            } else {
                s.to_string()
            }
        };
        units_text.push_str(&format!(
            "{} load={} active={} condition={}\n",
            u.unit,
            shown(&u.load),
            shown(&u.active),
            shown(&u.condition)
        ));
    }
    let version = format!(
        "photo-pacs {}\ncommit {}\ntarget {}\nprofile {}\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("PHOTO_PACS_COMMIT").unwrap_or("unknown"),
        env!("PHOTO_PACS_TARGET"),
        env!("PHOTO_PACS_PROFILE"),
    );
    let now = chrono::Local::now();
    let host = status::hostname();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let name = format!(
        "photo-pacs-diagnostics-{}-{}",
        if host.is_empty() { "box" } else { &host },
        now.format("%Y%m%d-%H%M")
    );
    let pretty = |v: &Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("status.json", pretty(&status)),
        ("events.json", pretty(&events)),
        ("settings.json", pretty(&settings)),
        ("version.txt", version.into_bytes()),
        ("units.txt", units_text.into_bytes()),
    ];
    let mtime = now.timestamp().max(0) as u64;
    let dir = name.clone();
    let gz = tokio::task::spawn_blocking(move || tarball(&dir, &files, mtime))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("cannot pack the diagnostics: {e}")))?;
    let mut resp = body::bytes(StatusCode::OK, "application/gzip", gz);
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.tar.gz\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

fn tarball(dir: &str, files: &[(&str, Vec<u8>)], mtime: u64) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("{dir}/{name}"), data.as_slice())?;
    }
    tar.into_inner()?.finish()
}

#[cfg(test)]
mod tests {
    use super::tarball;

    #[test]
    fn the_tarball_holds_each_file_under_one_folder() {
        let gz = tarball(
            "d",
            &[("a.txt", b"hello".to_vec()), ("b.json", b"{}".to_vec())],
            0,
        )
        .unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz.as_slice()));
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["d/a.txt", "d/b.json"]);
    }
}
