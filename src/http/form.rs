//! What a multipart upload declares in its headers, read before its body is.

use http::{Request, header};

/// The boundary of a `multipart/form-data` request; `None` for anything else.
pub fn boundary<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok())
}

/// The body's length as the client announced it: lets a handler refuse an oversized
/// upload before reading a byte of it. Absent (or not a number) for a chunked body,
/// which the handler's `Limited` stream bounds instead.
pub fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn a_form_has_its_boundary_and_anything_else_has_none() {
        let form = request(&[("content-type", "multipart/form-data; boundary=XyZ")]);
        assert_eq!(boundary(&form).as_deref(), Some("XyZ"));
        assert_eq!(
            boundary(&request(&[("content-type", "application/json")])),
            None
        );
        assert_eq!(boundary(&request(&[])), None);
    }

    #[test]
    fn a_declared_length_is_read_and_a_bad_one_is_none() {
        assert_eq!(
            declared_length(&request(&[("content-length", "52428800")])),
            Some(50 << 20)
        );
        assert_eq!(declared_length(&request(&[("content-length", "-1")])), None);
        assert_eq!(
            declared_length(&request(&[("content-length", "lots")])),
            None
        );
        assert_eq!(declared_length(&request(&[])), None);
    }
}
