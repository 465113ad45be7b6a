//! The DICOMweb backend: STOW-RS (one request per study) and an authenticated QIDO-RS
//! request as the connection test, over HTTPS with rustls, on one reused client.

use std::collections::HashMap;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::{RequestBuilder, Response, StatusCode, header};
use serde_json::Value;

use super::error::{PacsCode, http_failure_class};
use super::{InstanceStatus, Outgoing, PacsError};
use crate::config::{AuthMethod, Settings};

/// The settings a client is built from; a change makes a new one.
#[derive(Clone, PartialEq, Eq)]
struct ClientKey {
    timeout_s: u32,
    verify_tls: bool,
    ca_file: String,
}

/// One HTTP client (and its connection pool) reused across deliveries: a backlog of studies
/// then goes over one kept-alive connection instead of a new TCP and TLS set-up each.
#[derive(Default)]
pub struct Clients {
    cached: Mutex<Option<(ClientKey, reqwest::Client)>>,
}

impl Clients {
    fn get(&self, s: &Settings) -> Result<reqwest::Client, PacsError> {
        let key = ClientKey {
            timeout_s: s.dicomweb_timeout_s,
            verify_tls: s.dicomweb_verify_tls,
            ca_file: s.dicomweb_tls_ca_file.clone(),
        };
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, c)) = cached.as_ref()
            && *k == key
        {
            return Ok(c.clone());
        }
        let c = client(s)?;
        *cached = Some((key, c.clone()));
        Ok(c)
    }

    pub async fn send(
        &self,
        s: &Settings,
        batch: &[Outgoing],
    ) -> Result<Vec<InstanceStatus>, PacsError> {
        send(&self.get(s)?, s, batch).await
    }

    pub async fn echo(&self, s: &Settings) -> Result<Duration, PacsError> {
        echo(&self.get(s)?, s).await
    }

    /// A QIDO-RS search, `GET {base}/{resource}?{params}` with the same credentials, trust
    /// and timeouts as a delivery: the matches as DICOM JSON objects, none for 204.
    pub async fn search(
        &self,
        s: &Settings,
        resource: &str,
        params: &[(&str, &str)],
    ) -> Result<Vec<Value>, PacsError> {
        search(&self.get(s)?, s, resource, params).await
    }
}

fn client(s: &Settings) -> Result<reqwest::Client, PacsError> {
    static PROVIDER: Once = Once::new();
    // reqwest is built without a TLS provider of its own; ring is ours everywhere.
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let mut builder = reqwest::Client::builder();
    if s.dicomweb_verify_tls
        && let Some(roots) =
            super::tls::dicomweb_roots(s).map_err(|e| PacsError::configuration(e.message))?
    {
        // The hospital's private CA instead of VERIFY_TLS=false: checked, not skipped.
        let config = rustls::ClientConfig::builder_with_provider(super::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| PacsError::configuration(format!("TLS set-up failed: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        builder = builder.tls_backend_preconfigured(config);
    }
    builder
        .timeout(Duration::from_secs(u64::from(s.dicomweb_timeout_s)))
        .connect_timeout(Duration::from_secs(u64::from(s.dicomweb_timeout_s)))
        // A redirect could carry our credentials somewhere else: never follow one.
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(!s.dicomweb_verify_tls)
        .build()
        .map_err(|e| PacsError::configuration(format!("HTTP client set-up failed: {e}")))
}

fn authorize(req: RequestBuilder, s: &Settings) -> RequestBuilder {
    match s.dicomweb_auth_method {
        AuthMethod::None => req,
        AuthMethod::Basic => {
            req.basic_auth(&s.dicomweb_username, Some(s.dicomweb_password.expose()))
        }
        AuthMethod::Bearer => req.bearer_auth(s.dicomweb_token.expose()),
    }
}

fn base(s: &Settings) -> Result<&str, PacsError> {
    if s.dicomweb_base_url.is_empty() {
        return Err(PacsError::configuration(
            "no DICOMweb base URL is set (PHOTO_PACS_DICOMWEB_BASE_URL)",
        ));
    }
    Ok(&s.dicomweb_base_url)
}

/// Turns a transport failure into what the user sees.
fn request_error(e: &reqwest::Error, s: &Settings) -> PacsError {
    let url = &s.dicomweb_base_url;
    if e.is_timeout() {
        return PacsError::timeout(format!(
            "the DICOMweb server at {url} did not answer within {} s",
            s.dicomweb_timeout_s
        ));
    }
    if let Some(tls) = super::tls::describe_handshake_error(e) {
        return PacsError::configuration(format!("{tls} ({url})"));
    }
    if e.is_connect() {
        return PacsError::transient(format!("cannot connect to the DICOMweb server at {url}"));
    }
    PacsError::transient(format!("the request to {url} failed: {e}"))
}

/// 401 and 403 mean the credentials; anything else not 2xx is the server's refusal, which
/// may pass (5xx, 408, 429) or not.
fn status_error(status: StatusCode) -> PacsError {
    let code = status.as_u16();
    let message = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
            "authentication failed (HTTP {code}): check the DICOMweb user name, password or token"
        ),
        _ => format!("the DICOMweb server answered HTTP {code}"),
    };
    let mut e = PacsError::permanent(message).with_code(PacsCode::Http(code));
    e.class = http_failure_class(code);
    e
}

/// STOW-RS: all objects in one `multipart/related` request, streamed from disk one file at
/// a time so a large submission never sits in memory whole.
async fn send(
    client: &reqwest::Client,
    s: &Settings,
    batch: &[Outgoing],
) -> Result<Vec<InstanceStatus>, PacsError> {
    let url = format!("{}/studies", base(s)?);
    let boundary = format!("photo-pacs-{}", uuid::Uuid::new_v4().simple());
    let part_head = format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n");
    let tail = format!("--{boundary}--\r\n");
    let mut length = tail.len() as u64;
    for item in batch {
        let size = tokio::fs::metadata(&item.path)
            .await
            .map_err(|e| PacsError::permanent(format!("a DICOM file could not be read: {e}")))?
            .len();
        length += part_head.len() as u64 + size + 2;
    }
    let paths: Vec<_> = batch.iter().map(|o| o.path.clone()).collect();
    let head = Bytes::from(part_head);
    let parts = futures_util::stream::iter(paths).then(move |path| {
        let head = head.clone();
        async move {
            let file = tokio::fs::read(&path).await?;
            let mut chunk = Vec::with_capacity(head.len() + file.len() + 2);
            chunk.extend_from_slice(&head);
            chunk.extend_from_slice(&file);
            chunk.extend_from_slice(b"\r\n");
            Ok::<Bytes, std::io::Error>(Bytes::from(chunk))
        }
    });
    let body = parts.chain(futures_util::stream::once(
        async move { Ok(Bytes::from(tail)) },
    ));
    let request = client
        .post(&url)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        )
        .header(header::CONTENT_LENGTH, length)
        .header(header::ACCEPT, "application/dicom+json")
        .body(reqwest::Body::wrap_stream(body));
    let response = authorize(request, s)
        .send()
        .await
        .map_err(|e| request_error(&e, s))?;
    stow_outcome(response, batch).await.map_err(|e| match e {
        Outcome::Pacs(p) => p,
        Outcome::Transport(t) => request_error(&t, s),
    })
}

enum Outcome {
    Pacs(PacsError),
    Transport(reqwest::Error),
}

async fn stow_outcome(
    response: Response,
    batch: &[Outgoing],
) -> Result<Vec<InstanceStatus>, Outcome> {
    let status = response.status();
    // 200: all stored; 202: some stored, some not or with warnings; 409: none stored.
    if !matches!(
        status,
        StatusCode::OK | StatusCode::ACCEPTED | StatusCode::CONFLICT
    ) {
        return Err(Outcome::Pacs(status_error(status)));
    }
    let body = response.bytes().await.map_err(Outcome::Transport)?;
    let mut by_uid = stow_statuses(&body);
    Ok(batch
        .iter()
        .map(|o| {
            by_uid
                .remove(&o.sop_instance_uid)
                .unwrap_or_else(|| match status {
                    StatusCode::OK => InstanceStatus::Success,
                    // Not named in a 202/409 answer: unknown, so worth another try.
                    _ => InstanceStatus::Failed(
                        PacsError::transient(format!(
                            "not acknowledged by the DICOMweb server (HTTP {})",
                            status.as_u16()
                        ))
                        .with_code(PacsCode::Http(status.as_u16())),
                    ),
                })
        })
        .collect())
}

/// Each instance a STOW-RS answer body names, with its status; an unreadable body names none.
pub fn stow_statuses(body: &[u8]) -> HashMap<String, InstanceStatus> {
    serde_json::from_slice::<Value>(body).map_or_else(|_| HashMap::new(), |doc| per_instance(&doc))
}

/// The instances a STOW-RS answer names: Referenced SOP Sequence (0008,1199), with a
/// Warning Reason (0008,1196) when stored with a warning, and Failed SOP Sequence
/// (0008,1198) with a Failure Reason (0008,1197).
fn per_instance(doc: &Value) -> HashMap<String, InstanceStatus> {
    let items = |tag: &str| doc[tag]["Value"].as_array().cloned().unwrap_or_default();
    let uid = |item: &Value| item["00081155"]["Value"][0].as_str().map(str::to_string);
    let code = |item: &Value, tag: &str| item[tag]["Value"][0].as_u64();
    let mut out = HashMap::new();
    for item in items("00081199") {
        if let Some(u) = uid(&item) {
            let status = match code(&item, "00081196") {
                Some(w) => InstanceStatus::Warning(format!("stored with warning {w:04X}H")),
                None => InstanceStatus::Success,
            };
            out.insert(u, status);
        }
    }
    for item in items("00081198") {
        if let Some(u) = uid(&item) {
            let failed = match code(&item, "00081197").and_then(|c| u16::try_from(c).ok()) {
                // The Failure Reason is a DIMSE status: classified as a C-STORE answer is.
                Some(c) => match super::dimse::message::store_status(c, None) {
                    InstanceStatus::Failed(e) => e,
                    _ => PacsError::permanent(format!(
                        "refused by the DICOMweb server (reason {c:04X}H)"
                    ))
                    .with_code(PacsCode::Dimse(c)),
                },
                None => PacsError::permanent("refused by the DICOMweb server"),
            };
            out.insert(u, InstanceStatus::Failed(failed));
        }
    }
    out
}

/// An authenticated QIDO-RS query (`GET {base}/studies?limit=1`): proves the URL, the
/// certificate and the credentials in one round trip.
async fn echo(client: &reqwest::Client, s: &Settings) -> Result<Duration, PacsError> {
    let started = Instant::now();
    let url = format!("{}/studies?limit=1", base(s)?);
    let request = client
        .get(&url)
        .header(header::ACCEPT, "application/dicom+json");
    let response = authorize(request, s)
        .send()
        .await
        .map_err(|e| request_error(&e, s))?;
    let status = response.status();
    if !status.is_success() {
        return Err(status_error(status));
    }
    Ok(started.elapsed())
}

/// The most a QIDO-RS answer may weigh: a few hundred studies' worth of the fields we ask
/// for, with room to spare; a server cannot make the box hold more.
const MAX_SEARCH_BYTES: usize = 8 * 1024 * 1024;

async fn search(
    client: &reqwest::Client,
    s: &Settings,
    resource: &str,
    params: &[(&str, &str)],
) -> Result<Vec<Value>, PacsError> {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let url = format!("{}/{resource}?{}", base(s)?, query.join("&"));
    let request = client
        .get(&url)
        .header(header::ACCEPT, "application/dicom+json");
    let mut response = authorize(request, s)
        .send()
        .await
        .map_err(|e| request_error(&e, s))?;
    let status = response.status();
    if status == StatusCode::NO_CONTENT {
        return Ok(Vec::new());
    }
    if !status.is_success() {
        return Err(status_error(status));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| request_error(&e, s))? {
        if body.len() + chunk.len() > MAX_SEARCH_BYTES {
            return Err(PacsError::permanent(format!(
                "the DICOMweb server at {} answered the search with more than {} MB",
                s.dicomweb_base_url,
                MAX_SEARCH_BYTES / (1024 * 1024)
            )));
        }
        body.extend_from_slice(&chunk);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(matches)) => Ok(matches),
        _ => Err(PacsError::permanent(format!(
            "the DICOMweb server at {} did not answer the search with DICOM JSON",
            s.dicomweb_base_url
        ))),
    }
}

/// RFC 3986 percent-encoding of a query value: everything but the unreserved characters,
/// so a space goes as `%20` (some servers take a `+` literally) and `&`, `=` cannot split
/// the query.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(percent_encode("A 1&b=2+"), "A%201%26b%3D2%2B");
        assert_eq!(percent_encode("王"), "%E7%8E%8B");
        assert_eq!(percent_encode("az-09._~"), "az-09._~");
    }

    #[test]
    fn a_stow_answer_is_read_per_instance() {
        let doc = json!({
            "00081199": {"vr": "SQ", "Value": [
                {"00081155": {"vr": "UI", "Value": ["2.25.1"]}},
                {"00081155": {"vr": "UI", "Value": ["2.25.2"]}, "00081196": {"vr": "US", "Value": [45056]}}
            ]},
            "00081198": {"vr": "SQ", "Value": [
                {"00081155": {"vr": "UI", "Value": ["2.25.3"]}, "00081197": {"vr": "US", "Value": [42752]}}
            ]}
        });
        let m = per_instance(&doc);
        assert_eq!(m["2.25.1"], InstanceStatus::Success);
        assert!(matches!(&m["2.25.2"], InstanceStatus::Warning(w) if w.contains("B000")));
        assert!(
            matches!(&m["2.25.3"], InstanceStatus::Failed(e) if e.message.contains("A700") && e.is_transient())
        );
    }

    #[test]
    fn credentials_problems_say_so() {
        for code in [401, 403] {
            let e = status_error(StatusCode::from_u16(code).unwrap());
            assert!(e.to_string().contains("authentication failed"), "{e}");
        }
        let busy = status_error(StatusCode::INTERNAL_SERVER_ERROR);
        assert!(busy.to_string().contains("500") && busy.is_transient());
        assert!(!status_error(StatusCode::BAD_REQUEST).is_transient());
    }
}
