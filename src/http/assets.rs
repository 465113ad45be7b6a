//! The PWA's static files, embedded in the binary, with ETag revalidation.

use http::{HeaderMap, HeaderValue, StatusCode, header};
use rust_embed::RustEmbed;

use super::body::{self, Response};

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// `None` when no asset has that path.
pub fn serve(path: &str, request_headers: &HeaderMap) -> Option<Response> {
    let name = match path.trim_start_matches('/') {
        "" => "index.html",
        other => other,
    };
    let file = Assets::get(name)?;
    let hash = file.metadata.sha256_hash();
    let etag = format!(
        "\"{}\"",
        hash[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let cache = if name.starts_with("icons/") {
        // Icons change only with a new release; a day of caching saves the phone a round trip.
        "public, max-age=86400"
    } else {
        // Pages and scripts are small and must update with the box: always revalidate.
        "no-cache"
    };
    let not_modified = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if not_modified {
        body::empty(StatusCode::NOT_MODIFIED)
    } else {
        let mime = file.metadata.mimetype();
        let mut r = body::bytes(
            StatusCode::OK,
            "application/octet-stream",
            file.data.into_owned(),
        );
        if let Ok(v) = HeaderValue::from_str(mime) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    Some(resp)
}
