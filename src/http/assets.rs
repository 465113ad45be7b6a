//! The PWA's static files, embedded in the binary, with ETag revalidation and gzip for the
//! clients that take it.

use http::{HeaderMap, HeaderValue, StatusCode, header};
use rust_embed::RustEmbed;

use super::body::{self, Response};

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// Gzipped copies of the text and WebAssembly files, made by build.rs.
mod gzipped {
    include!(concat!(env!("OUT_DIR"), "/assets_gz.rs"));
}

/// The gzip copy of `name`, if build.rs made one from the same bytes as the embedded file
/// (the two are built by different steps; a mismatch must not pair one's tag with the
/// other's bytes).
fn gzip_of(name: &str, sha256: &[u8; 32]) -> Option<&'static [u8]> {
    gzipped::GZIPPED
        .iter()
        .find(|(n, hash, _)| *n == name && hash == sha256)
        .map(|(_, _, gz)| *gz)
}

/// Whether the client takes gzip: `Accept-Encoding` names it (or `*`) without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// `None` when no asset has that path.
pub fn serve(path: &str, request_headers: &HeaderMap) -> Option<Response> {
    let name = match path.trim_start_matches('/') {
        "" => "index.html",
        other => other,
    };
    let file = Assets::get(name)?;
    let hash = file.metadata.sha256_hash();
    let gz = gzip_of(name, &hash).filter(|_| accepts_gzip(request_headers));
    // Each representation has its own tag, so a cache never pairs one's tag with the
    // other's bytes.
    let etag = format!(
        "\"{}{}\"",
        hash[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        if gz.is_some() { "-gz" } else { "" }
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
        let mut r = match gz {
            Some(gz) => {
                let mut r = body::bytes(StatusCode::OK, "application/octet-stream", gz);
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            None => body::bytes(
                StatusCode::OK,
                "application/octet-stream",
                file.data.into_owned(),
            ),
        };
        if let Ok(v) = HeaderValue::from_str(mime) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if gzipped::GZIPPED.iter().any(|(n, _, _)| *n == name) {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
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

    fn get(path: &str, accept: Option<&str>) -> Response {
        let mut h = HeaderMap::new();
        if let Some(a) = accept {
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(a).unwrap());
        }
        serve(path, &h).expect(path)
    }

    fn bytes_of(resp: Response) -> Vec<u8> {
        use http_body_util::BodyExt;
        let body = resp.into_body();
        let collected = futures_util::FutureExt::now_or_never(body.collect())
            .expect("a full body is ready")
            .unwrap();
        collected.to_bytes().to_vec()
    }

    #[test]
    fn the_decoder_and_scripts_go_gzipped_to_clients_that_take_it() {
        let wasm = "/vendor/zxing-wasm/reader/zxing_reader.wasm";
        let plain = get(wasm, None);
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(plain.headers()[header::VARY], "Accept-Encoding");
        let plain_tag = plain.headers()[header::ETAG].clone();
        let original = bytes_of(plain);
        let zipped = get(wasm, Some("gzip, deflate, br"));
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(zipped.headers()[header::CONTENT_TYPE], "application/wasm");
        assert_ne!(zipped.headers()[header::ETAG], plain_tag);
        let gz = bytes_of(zipped);
        assert!(
            gz.len() * 2 < original.len(),
            "{} of {}",
            gz.len(),
            original.len()
        );
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped)
            .unwrap();
        assert_eq!(unzipped, original);
        for refused in ["gzip;q=0", "br", "identity"] {
            let r = get("/app.js", Some(refused));
            assert!(
                r.headers().get(header::CONTENT_ENCODING).is_none(),
                "{refused}"
            );
        }
        assert_eq!(
            get("/app.js", Some("*")).headers()[header::CONTENT_ENCODING],
            "gzip"
        );
    }
}
