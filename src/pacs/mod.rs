//! Delivery to the PACS behind one seam: the intake hands over DICOM files, a backend sends them.

mod cstore;
mod dicomweb;
mod dimse;
mod mock;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

pub use dicomweb::stow_statuses;
pub use mock::{MockPacs, Received};

use crate::config::{AuthMethod, Backend, FieldError, Key, Settings};

/// One DICOM file ready to go, as the intake wrote it.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// 1-based position in the submission.
    pub index: u32,
    pub sop_instance_uid: String,
    pub path: PathBuf,
}

/// What the PACS said about one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceStatus {
    Success,
    /// Stored, but the PACS reported something (e.g. coerced attributes).
    Warning(String),
    Failed(String),
}

impl InstanceStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            InstanceStatus::Success => "success",
            InstanceStatus::Warning(_) => "warning",
            InstanceStatus::Failed(_) => "failed",
        }
    }
}

/// Why nothing could be delivered. Messages are for the user and name no patient data.
#[derive(Debug, thiserror::Error)]
pub enum PacsError {
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    Timeout(String),
}

/// The configured PACS backend.
pub enum Sender {
    Mock(MockPacs),
    Cstore,
    Dicomweb,
}

impl Sender {
    pub fn for_backend(backend: Backend) -> Self {
        match backend {
            Backend::Mock => Sender::Mock(MockPacs::default()),
            Backend::Cstore => Sender::Cstore,
            Backend::Dicomweb => Sender::Dicomweb,
        }
    }

    /// Sends one submission's objects together; the answer has one status per object, in order.
    pub async fn send(
        &self,
        settings: &Settings,
        batch: &[Outgoing],
    ) -> Result<Vec<InstanceStatus>, PacsError> {
        match self {
            Sender::Mock(m) => Ok(m.send(batch).await),
            Sender::Cstore => cstore::send(settings, batch).await,
            Sender::Dicomweb => dicomweb::send(settings, batch).await,
        }
    }

    /// Tests the connection (C-ECHO or an authenticated DICOMweb request).
    pub async fn echo(&self, settings: &Settings) -> Result<Duration, PacsError> {
        match self {
            Sender::Mock(_) => Ok(Duration::ZERO),
            Sender::Cstore => cstore::echo(settings).await,
            Sender::Dicomweb => dicomweb::echo(settings).await,
        }
    }

    /// Problems with `settings` that would make every delivery fail, each naming its
    /// setting: checked before settings are saved, and reported as warnings at start-up.
    pub fn check(&self, s: &Settings) -> Vec<FieldError> {
        let problem = |key: Key, message: String| FieldError {
            field: key.names().json.to_string(),
            message,
        };
        let mut problems = Vec::new();
        match self {
            Sender::Mock(_) => {}
            Sender::Cstore => {
                if s.pacs_tls
                    && let Err(e) = tls::client_config(s)
                {
                    problems.push(problem(e.key, e.message));
                }
            }
            Sender::Dicomweb => {
                if s.dicomweb_base_url.is_empty() {
                    problems.push(problem(
                        Key::DicomwebBaseUrl,
                        "the DICOMweb base URL is required".into(),
                    ));
                }
                match s.dicomweb_auth_method {
                    AuthMethod::Basic if s.dicomweb_username.is_empty() => problems.push(problem(
                        Key::DicomwebUsername,
                        "basic authentication needs a user name".into(),
                    )),
                    AuthMethod::Bearer if !s.dicomweb_token.is_set() => problems.push(problem(
                        Key::DicomwebToken,
                        "bearer authentication needs a token".into(),
                    )),
                    _ => {}
                }
            }
        }
        problems
    }

    /// Things an admin should know that are not errors.
    pub fn warnings(&self, s: &Settings) -> Vec<String> {
        match self {
            Sender::Dicomweb if !s.dicomweb_verify_tls => vec![
                "DICOMWEB_VERIFY_TLS is off: the DICOMweb server's certificate is not checked, so a machine posing as the PACS could receive the photos".into(),
            ],
            _ => Vec::new(),
        }
    }

    /// Where the objects went, for the `pacs` member of the upload answer.
    pub fn target(&self, settings: &Settings) -> Value {
        match self {
            Sender::Mock(_) => json!({
                "backend": "mock",
                "calledAET": settings.pacs_called_aet,
                "host": settings.pacs_host,
                "port": settings.pacs_port,
            }),
            Sender::Cstore => json!({
                "backend": "cstore",
                "calledAET": settings.pacs_called_aet,
                "host": settings.pacs_host,
                "port": settings.pacs_port,
                "tls": settings.pacs_tls,
            }),
            Sender::Dicomweb => json!({
                "backend": "dicomweb",
                "baseUrl": settings.dicomweb_base_url,
            }),
        }
    }

    pub fn mock(&self) -> Option<&MockPacs> {
        match self {
            Sender::Mock(m) => Some(m),
            _ => None,
        }
    }
}
