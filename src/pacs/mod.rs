//! Delivery to the PACS behind one seam: the outbox hands over DICOM files and where they go,
//! a backend sends them and says, object by object, what happened.

mod dicomweb;
pub mod dimse;
pub mod error;
mod mock;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use dicomweb::Clients as DicomwebClients;
pub use dicomweb::stow_statuses;
pub use error::{FailureClass, PacsCode, PacsError};
pub use mock::{MockPacs, Received};

use crate::config::{AuthMethod, Backend, FieldError, Key, Settings};
use crate::dicom::TransferSyntax;

/// One DICOM file ready to go, as the intake wrote it.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// 1-based position in the submission.
    pub index: u32,
    pub sop_instance_uid: String,
    /// What the object is, as written: offered to the PACS as such whatever the settings
    /// say today.
    pub sop_class_uid: String,
    pub transfer_syntax: TransferSyntax,
    pub path: PathBuf,
}

/// What the PACS said about one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceStatus {
    Success,
    /// Stored, but the PACS reported something (e.g. coerced attributes).
    Warning(String),
    Failed(PacsError),
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

/// Where a submission goes: which backend, and the PACS's identity (never a secret). Each
/// queued study keeps the one it was made for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "backend",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub enum Destination {
    /// The demo: nothing leaves the box. Keeps the C-STORE fields the settings page shows.
    Mock {
        called_aet: String,
        host: String,
        port: u16,
    },
    Cstore {
        called_aet: String,
        host: String,
        port: u16,
        calling_aet: String,
        tls: bool,
    },
    Dicomweb {
        base_url: String,
    },
}

impl Destination {
    /// Where a submission made now goes.
    pub fn current(backend: Backend, s: &Settings) -> Self {
        match backend {
            Backend::Mock => Destination::Mock {
                called_aet: s.pacs_called_aet.clone(),
                host: s.pacs_host.clone(),
                port: s.pacs_port,
            },
            Backend::Cstore => Destination::Cstore {
                called_aet: s.pacs_called_aet.clone(),
                host: s.pacs_host.clone(),
                port: s.pacs_port,
                calling_aet: s.local_calling_aet.clone(),
                tls: s.pacs_tls,
            },
            Backend::Dicomweb => Destination::Dicomweb {
                base_url: s.dicomweb_base_url.clone(),
            },
        }
    }

    /// The settings to deliver with: the current ones (timeouts, TLS files, credentials)
    /// with this destination's identity. DICOMweb credentials go only to the URL they were
    /// set for: a study made for another URL is sent without them.
    pub fn settings(&self, current: &Settings) -> Settings {
        let mut s = current.clone();
        match self {
            Destination::Mock { .. } => {}
            Destination::Cstore {
                called_aet,
                host,
                port,
                calling_aet,
                tls,
            } => {
                s.pacs_called_aet = called_aet.clone();
                s.pacs_host = host.clone();
                s.pacs_port = *port;
                s.local_calling_aet = calling_aet.clone();
                s.pacs_tls = *tls;
            }
            Destination::Dicomweb { base_url } => {
                if *base_url != current.dicomweb_base_url {
                    s.dicomweb_auth_method = AuthMethod::None;
                }
                s.dicomweb_base_url = base_url.clone();
            }
        }
        s
    }

    /// The `pacs` member of the upload answer.
    pub fn target(&self) -> Value {
        match self {
            Destination::Mock {
                called_aet,
                host,
                port,
            } => json!({
                "backend": "mock",
                "calledAET": called_aet,
                "host": host,
                "port": port,
            }),
            Destination::Cstore {
                called_aet,
                host,
                port,
                tls,
                ..
            } => json!({
                "backend": "cstore",
                "calledAET": called_aet,
                "host": host,
                "port": port,
                "tls": tls,
            }),
            Destination::Dicomweb { base_url } => json!({
                "backend": "dicomweb",
                "baseUrl": base_url,
            }),
        }
    }

    /// `PACS@10.0.0.5:104`, a URL, or "the demo backend", for messages and the admin.
    pub fn describe(&self) -> String {
        match self {
            Destination::Mock { .. } => "the demo backend".into(),
            Destination::Cstore {
                called_aet,
                host,
                port,
                ..
            } => format!("{called_aet}@{host}:{port}"),
            Destination::Dicomweb { base_url } => base_url.clone(),
        }
    }

    /// Whether queued studies for this destination can share one delivery (one DICOM
    /// association). STOW-RS goes one study per request, each bounded by the request
    /// timeout, over one reused connection.
    pub fn shares_deliveries(&self) -> bool {
        matches!(self, Destination::Cstore { .. })
    }
}

/// The backends: the mock's memory and the DICOMweb connection pool live here; which one a
/// delivery uses is its [`Destination`]'s.
pub struct Sender {
    backend: Backend,
    mock: MockPacs,
    dicomweb: dicomweb::Clients,
}

impl Sender {
    pub fn for_backend(backend: Backend) -> Self {
        Sender {
            backend,
            mock: MockPacs::default(),
            dicomweb: dicomweb::Clients::default(),
        }
    }

    /// Sends objects to `dest`; the answer has one status per object, in order, and
    /// `progress` hears each as the PACS gives it. An error means none was delivered.
    pub async fn deliver(
        &self,
        dest: &Destination,
        current: &Settings,
        batch: &[Outgoing],
        progress: &mut (dyn FnMut(usize, &InstanceStatus) + Send),
    ) -> Result<Vec<InstanceStatus>, PacsError> {
        let settings = dest.settings(current);
        let statuses = match dest {
            Destination::Mock { .. } => self.mock.send(batch).await,
            Destination::Cstore { .. } => return dimse::send(&settings, batch, progress).await,
            Destination::Dicomweb { .. } => self.dicomweb.send(&settings, batch).await?,
        };
        for (i, s) in statuses.iter().enumerate() {
            progress(i, s);
        }
        Ok(statuses)
    }

    /// Tests the connection (C-ECHO or an authenticated DICOMweb request).
    pub async fn echo(&self, settings: &Settings) -> Result<Duration, PacsError> {
        match self.backend {
            Backend::Mock => Ok(Duration::ZERO),
            Backend::Cstore => dimse::echo(settings).await,
            Backend::Dicomweb => self.dicomweb.echo(settings).await,
        }
    }

    /// The DICOMweb connection pool, for queries (QIDO-RS) with the same credentials and
    /// trust as delivery.
    pub fn dicomweb_clients(&self) -> &DicomwebClients {
        &self.dicomweb
    }

    /// Problems with `settings` that would make every delivery fail, each naming its
    /// setting: checked before settings are saved, and reported as warnings at start-up.
    pub fn check(&self, s: &Settings) -> Vec<FieldError> {
        let problem = |key: Key, message: String| FieldError {
            field: key.names().json.to_string(),
            message,
        };
        let mut problems = Vec::new();
        match self.backend {
            Backend::Mock => {}
            Backend::Cstore => {
                if s.pacs_tls
                    && let Err(e) = tls::client_config(s)
                {
                    problems.push(problem(e.key, e.message));
                }
            }
            Backend::Dicomweb => {
                if let Err(e) = tls::dicomweb_roots(s) {
                    problems.push(problem(e.key, e.message));
                }
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
        match self.backend {
            Backend::Dicomweb if !s.dicomweb_verify_tls => vec![
                "DICOMWEB_VERIFY_TLS is off: the DICOMweb server's certificate is not checked, so a machine posing as the PACS could receive the photos".into(),
            ],
            _ => Vec::new(),
        }
    }

    /// Where a submission made now goes.
    pub fn destination(&self, settings: &Settings) -> Destination {
        Destination::current(self.backend, settings)
    }

    pub fn mock(&self) -> Option<&MockPacs> {
        (self.backend == Backend::Mock).then_some(&self.mock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicomweb_credentials_go_only_to_their_own_url() {
        let current = Settings {
            dicomweb_base_url: "https://pacs.example/dicom-web".into(),
            dicomweb_auth_method: AuthMethod::Basic,
            dicomweb_username: "nurse".into(),
            ..Settings::default()
        };
        let same = Destination::Dicomweb {
            base_url: current.dicomweb_base_url.clone(),
        };
        assert_eq!(
            same.settings(&current).dicomweb_auth_method,
            AuthMethod::Basic
        );
        let other = Destination::Dicomweb {
            base_url: "https://elsewhere.example/dicom-web".into(),
        };
        let s = other.settings(&current);
        assert_eq!(s.dicomweb_auth_method, AuthMethod::None);
        assert_eq!(s.dicomweb_base_url, "https://elsewhere.example/dicom-web");
    }

    #[test]
    fn a_destination_keeps_its_identity_through_json() {
        let d = Destination::Cstore {
            called_aet: "PACS".into(),
            host: "10.0.0.5".into(),
            port: 104,
            calling_aet: "PHOTO_PACS".into(),
            tls: true,
        };
        let text = serde_json::to_string(&d).unwrap();
        assert!(
            text.contains("\"backend\":\"cstore\"") && text.contains("calledAet"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Destination>(&text).unwrap(), d);
        assert_eq!(d.describe(), "PACS@10.0.0.5:104");
    }
}
