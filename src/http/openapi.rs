//! `GET /api/openapi.json`: the API described in OpenAPI 3.1, kept true by a test that
//! compares it with the router's table.

use http::StatusCode;

use super::body::{self, Response};

/// The document, written by hand next to this file.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub fn document() -> Response {
    body::bytes(StatusCode::OK, "application/json", DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::router::API_ROUTES;

    #[test]
    fn every_route_and_method_is_documented_and_nothing_else() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for (path, methods, _) in API_ROUTES {
            let item = paths
                .get(*path)
                .unwrap_or_else(|| panic!("{path} is not documented"));
            for m in *methods {
                let op = &item[m.as_str().to_ascii_lowercase()];
                assert!(op.is_object(), "{m} {path} is not documented");
                assert!(op["responses"].is_object(), "{m} {path} has no responses");
            }
            let documented = item.as_object().unwrap().keys().count();
            assert_eq!(
                documented,
                methods.len(),
                "{path}: documented methods differ from the router's"
            );
        }
        for path in paths.keys() {
            assert!(
                API_ROUTES.iter().any(|(p, _, _)| p == path),
                "{path} is documented but not routed"
            );
        }
    }
}
