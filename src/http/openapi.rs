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
        for (path, methods, guard) in API_ROUTES {
            let item = paths
                .get(*path)
                .unwrap_or_else(|| panic!("{path} is not documented"));
            for m in *methods {
                let op = &item[m.as_str().to_ascii_lowercase()];
                assert!(op.is_object(), "{m} {path} is not documented");
                assert!(op["responses"].is_object(), "{m} {path} has no responses");
                // The document's security must say what the router's guard enforces.
                let schemes: Vec<&str> = op["security"]
                    .as_array()
                    .map(|alts| {
                        alts.iter()
                            .filter_map(|a| a.as_object())
                            .flat_map(|a| a.keys().map(String::as_str))
                            .collect()
                    })
                    .unwrap_or_default();
                let expected: &[&str] = match guard {
                    crate::http::Guard::Public => &[],
                    crate::http::Guard::Admin => &["session", "basic"],
                    crate::http::Guard::Upload => &["uploadPin", "session"],
                };
                let mut got = schemes.clone();
                got.sort_unstable();
                let mut want = expected.to_vec();
                want.sort_unstable();
                assert_eq!(
                    got, want,
                    "{m} {path}: security in the document vs the router's guard"
                );
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
