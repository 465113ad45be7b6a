//! Why a delivery failed, as data: whether trying again can help, and the PACS's own code.

use serde::{Deserialize, Serialize};

/// What a failure means for the next attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureClass {
    /// Trying again later can succeed: the PACS is down, busy, slow or unreachable.
    Transient,
    /// The PACS refused: sending the same again would be refused again.
    Permanent,
    /// Our settings or the PACS's set-up are wrong (TLS trust, credentials, no URL): an
    /// admin has to change something first.
    Configuration,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Permanent => "permanent",
            FailureClass::Configuration => "configuration",
        }
    }
}

/// The code the PACS answered with, kept for the admin and the retry decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum PacsCode {
    /// A DIMSE status (C-STORE-RSP, or a STOW-RS Failure Reason).
    Dimse(u16),
    /// An HTTP status of the DICOMweb server.
    Http(u16),
}

impl PacsCode {
    /// `A700H` or `HTTP 503`, as shown to an admin.
    pub fn label(self) -> String {
        match self {
            PacsCode::Dimse(s) => format!("{s:04X}H"),
            PacsCode::Http(s) => format!("HTTP {s}"),
        }
    }
}

/// A delivery that did not happen: a message for the user (never patient data), its class
/// and the PACS's code when it gave one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct PacsError {
    pub message: String,
    pub class: FailureClass,
    /// Nothing came back in time (504 for the connection test).
    #[serde(default)]
    pub timed_out: bool,
    #[serde(default)]
    pub code: Option<PacsCode>,
}

impl PacsError {
    fn new(class: FailureClass, message: impl Into<String>) -> Self {
        PacsError {
            message: message.into(),
            class,
            timed_out: false,
            code: None,
        }
    }

    /// Refused connection, abort, a dropped connection, a busy PACS.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Transient, message)
    }

    /// No answer in time: transient as well.
    pub fn timeout(message: impl Into<String>) -> Self {
        let mut e = Self::new(FailureClass::Transient, message);
        e.timed_out = true;
        e
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Permanent, message)
    }

    pub fn configuration(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Configuration, message)
    }

    pub fn with_code(mut self, code: PacsCode) -> Self {
        self.code = Some(code);
        self
    }

    pub fn is_transient(&self) -> bool {
        self.class == FailureClass::Transient
    }
}

/// A DIMSE failure status: out of resources (A7xx) may pass, anything else will not.
pub fn dimse_failure_class(status: u16) -> FailureClass {
    if status & 0xFF00 == 0xA700 {
        FailureClass::Transient
    } else {
        FailureClass::Permanent
    }
}

/// An HTTP error status of a DICOMweb server: 5xx, 408 and 429 may pass; 401 and 403 are
/// our credentials; any other 4xx is a refusal.
pub fn http_failure_class(status: u16) -> FailureClass {
    match status {
        408 | 429 | 500..=599 => FailureClass::Transient,
        401 | 403 => FailureClass::Configuration,
        _ => FailureClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimse_out_of_resources_is_transient_and_other_failures_are_not() {
        for s in [0xA700, 0xA701, 0xA7FF] {
            assert_eq!(dimse_failure_class(s), FailureClass::Transient, "{s:04X}");
        }
        for s in [0xA900, 0xA9FF, 0xC000, 0xCFFF, 0x0122, 0x0110, 0x0211] {
            assert_eq!(dimse_failure_class(s), FailureClass::Permanent, "{s:04X}");
        }
    }

    #[test]
    fn http_statuses_are_classified() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(http_failure_class(s), FailureClass::Transient, "{s}");
        }
        for s in [401, 403] {
            assert_eq!(http_failure_class(s), FailureClass::Configuration, "{s}");
        }
        for s in [400, 404, 409, 413, 415] {
            assert_eq!(http_failure_class(s), FailureClass::Permanent, "{s}");
        }
    }

    #[test]
    fn errors_survive_a_round_trip_through_json() {
        let e = PacsError::permanent("refused").with_code(PacsCode::Dimse(0xA900));
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<PacsError>(&text).unwrap(), e);
        assert!(text.contains("\"permanent\""), "{text}");
    }
}
