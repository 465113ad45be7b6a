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
        let mime = mime_type(name).unwrap_or_else(|| file.metadata.mimetype());
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

/// The types a browser is strict about, whatever the MIME table of the day says: module
/// scripts must come as JavaScript, and `WebAssembly.instantiateStreaming` (the barcode
/// decoder) takes only `application/wasm`.
fn mime_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1;
    match ext {
        "js" | "mjs" => Some("text/javascript; charset=utf-8"),
        "wasm" => Some("application/wasm"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(path: &str) -> String {
        let resp = serve(path, &HeaderMap::new()).expect(path);
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn scripts_and_webassembly_have_the_types_browsers_require() {
        assert_eq!(content_type("/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(
            content_type("/vendor/zxing-wasm/es/reader/index.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type("/vendor/zxing-wasm/reader/zxing_reader.wasm"),
            "application/wasm"
        );
        assert!(content_type("/").starts_with("text/html"));
        assert_eq!(
            mime_type("scan.mjs"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(mime_type("README"), None);
    }
}
