//! Delivery to the PACS behind one seam: the intake hands over DICOM files, a backend sends them.

mod mock;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

pub use mock::{MockPacs, Received};

use crate::config::{Backend, Settings};

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
}

/// A backend that exists in the reference but not yet in this build.
#[derive(Debug, thiserror::Error)]
#[error("PHOTO_PACS_PACS_BACKEND={0} is not available in this version yet; use mock")]
pub struct NotAvailable(&'static str);

impl Sender {
    pub fn for_backend(backend: Backend) -> Result<Self, NotAvailable> {
        match backend {
            Backend::Mock => Ok(Sender::Mock(MockPacs::default())),
            other => Err(NotAvailable(other.as_str())),
        }
    }

    /// Sends one submission's objects together; the answer has one status per object, in order.
    pub async fn send(
        &self,
        _settings: &Settings,
        batch: &[Outgoing],
    ) -> Result<Vec<InstanceStatus>, PacsError> {
        match self {
            Sender::Mock(m) => Ok(m.send(batch).await),
        }
    }

    /// Tests the connection (C-ECHO or an authenticated DICOMweb request).
    pub async fn echo(&self, _settings: &Settings) -> Result<Duration, PacsError> {
        match self {
            Sender::Mock(_) => Ok(Duration::ZERO),
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
        }
    }

    pub fn mock(&self) -> Option<&MockPacs> {
        match self {
            Sender::Mock(m) => Some(m),
        }
    }
}
