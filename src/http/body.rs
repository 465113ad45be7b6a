//! The one response body type and helpers to build answers with it.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// Every answer is built whole: JSON documents, embedded assets, metrics text.
pub type Body = http_body_util::Full<Bytes>;
pub type Response = http::Response<Body>;

pub fn bytes(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut resp = http::Response::new(Body::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => bytes(status, "application/json", body),
        Err(_) => bytes(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            r#"{"code":"INTERNAL_ERROR","message":"could not encode the answer"}"#,
        ),
    }
}

pub fn empty(status: StatusCode) -> Response {
    let mut resp = http::Response::new(Body::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}
