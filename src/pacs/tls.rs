//! TLS for DICOM associations: a rustls client configuration (ring provider) from the
//! PEM files the settings name.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::{Key, Settings};

/// A certificate or key file that cannot be used, named by the setting that points at it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TlsFileError {
    pub key: Key,
    pub message: String,
}

fn refuse(key: Key, message: impl Into<String>) -> TlsFileError {
    TlsFileError {
        key,
        message: message.into(),
    }
}

/// The ring provider, which cross-compiles for the Pi without a C toolchain for aws-lc.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots for the DICOMweb client when a CA file is set: only that file's CAs.
pub fn dicomweb_roots(s: &Settings) -> Result<Option<RootCertStore>, TlsFileError> {
    if s.dicomweb_tls_ca_file.is_empty() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    for cert in read_certs(Key::DicomwebTlsCaFile, &s.dicomweb_tls_ca_file)? {
        roots.add(cert).map_err(|e| {
            refuse(
                Key::DicomwebTlsCaFile,
                format!(
                    "{}: not a usable CA certificate: {e}",
                    s.dicomweb_tls_ca_file
                ),
            )
        })?;
    }
    Ok(Some(roots))
}

/// Builds the client configuration: trust the CA file if one is set (else the system's
/// trust store), and present a client certificate when both certificate and key are set.
pub fn client_config(s: &Settings) -> Result<Arc<ClientConfig>, TlsFileError> {
    let mut roots = RootCertStore::empty();
    if s.pacs_tls_ca_file.is_empty() {
        // A PACS with a certificate from a public CA needs no CA file.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(refuse(
                Key::PacsTlsCaFile,
                "no CA file is set and the system has no trusted certificates; set the PACS's CA file",
            ));
        }
    } else {
        for cert in read_certs(Key::PacsTlsCaFile, &s.pacs_tls_ca_file)? {
            roots.add(cert).map_err(|e| {
                refuse(
                    Key::PacsTlsCaFile,
                    format!("{}: not a usable CA certificate: {e}", s.pacs_tls_ca_file),
                )
            })?;
        }
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| refuse(Key::PacsTls, format!("TLS set-up failed: {e}")))?
        .with_root_certificates(roots);
    let config = match (
        s.pacs_tls_cert_file.is_empty(),
        s.pacs_tls_key_file.is_empty(),
    ) {
        (true, true) => builder.with_no_client_auth(),
        (false, true) => {
            return Err(refuse(
                Key::PacsTlsKeyFile,
                "a client certificate is set, so its key file is needed too",
            ));
        }
        (true, false) => {
            return Err(refuse(
                Key::PacsTlsCertFile,
                "a client key is set, so its certificate file is needed too",
            ));
        }
        (false, false) => {
            let chain = read_certs(Key::PacsTlsCertFile, &s.pacs_tls_cert_file)?;
            let path = &s.pacs_tls_key_file;
            let pem = crate::storage::read_small(Path::new(path), TLS_FILE_LIMIT).map_err(|e| {
                refuse(Key::PacsTlsKeyFile, format!("{path}: cannot be read ({e})"))
            })?;
            let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                refuse(
                    Key::PacsTlsKeyFile,
                    format!("{path}: no usable private key ({e})"),
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                refuse(
                    Key::PacsTlsKeyFile,
                    format!("the client key does not fit its certificate: {e}"),
                )
            })?
        }
    };
    Ok(Arc::new(config))
}

/// The largest certificate or key file read (Debian's whole CA bundle is about 220 KB).
const TLS_FILE_LIMIT: u64 = 1024 * 1024;

pub(crate) fn read_certs(
    key: Key,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let bytes =
        // A certificate bundle is tens of KB; a setting may name any path (/dev/zero).
        crate::storage::read_small(Path::new(path), TLS_FILE_LIMIT)
            .map_err(|e| refuse(key, format!("{path}: cannot be read ({e})")))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| refuse(key, format!("{path}: not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(refuse(key, format!("{path}: holds no PEM certificate")));
    }
    Ok(certs)
}

/// A sentence for a user when the TLS handshake fails, from the rustls error in the chain.
pub fn describe_handshake_error(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(match tls {
                rustls::Error::InvalidCertificate(reason) => format!(
                    "TLS: the PACS certificate is not accepted ({reason:?}); check the CA file (PACS_TLS_CA_FILE) and the PACS host name"
                ),
                rustls::Error::AlertReceived(alert) => {
                    format!(
                        "TLS: the PACS refused the connection ({alert:?}); it may require a client certificate"
                    )
                }
                other => format!("TLS: {other}"),
            });
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = describe_handshake_error(inner)
        {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_mismatched_files_name_their_setting() {
        let with = |ca: &str, cert: &str, key: &str| Settings {
            pacs_tls: true,
            pacs_tls_ca_file: ca.into(),
            pacs_tls_cert_file: cert.into(),
            pacs_tls_key_file: key.into(),
            ..Settings::default()
        };
        let e = client_config(&with("/nonexistent/ca.pem", "", "")).unwrap_err();
        assert_eq!(e.key, Key::PacsTlsCaFile);
        assert!(e.message.contains("cannot be read"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = client_config(&with(junk.to_str().unwrap(), "", "")).unwrap_err();
        assert_eq!(e.key, Key::PacsTlsCaFile);

        let e = client_config(&with("", junk.to_str().unwrap(), "")).unwrap_err();
        assert_eq!(e.key, Key::PacsTlsKeyFile);
    }
}
