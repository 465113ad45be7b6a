//! Runtime settings: the values the settings page can change, their one validation path and JSON form.
//!
//! Every value, whether it comes from an environment variable, the INI file or the
//! settings API, goes through [`Settings::apply`] as text, so the three sources can never
//! disagree about what is valid.

use std::fmt;

use serde_json::{Map, Value};

use crate::anatomy::Coding;
pub use crate::dicom::{Charset, Iod, TransferSyntax};

/// One editable setting. The order here is the order of the INI file and of the API answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    PacsHost,
    PacsPort,
    PacsCalledAet,
    LocalCallingAet,
    PacsTimeoutS,
    PacsTls,
    PacsTlsCaFile,
    PacsTlsCertFile,
    PacsTlsKeyFile,
    DicomwebBaseUrl,
    DicomwebVerifyTls,
    DicomwebTlsCaFile,
    DicomwebTimeoutS,
    DicomwebAuthMethod,
    DicomwebUsername,
    DicomwebPassword,
    DicomwebToken,
    LocalModality,
    LocalResizeMax,
    LocalTransferSyntax,
    LocalCharset,
    LocalIod,
    LocalBodySiteCoding,
    FlagIncludePatientInfoExceptId,
    FlagIncludeExamDescription,
    FlagThemeDark,
    FlagShrinkOnPhone,
    UploadPin,
    WorklistEnabled,
    WorklistCalledAet,
    WorklistHost,
    WorklistPort,
    WorklistStationAet,
    WorklistModality,
    WorklistPastDays,
    WorklistFutureDays,
    PatientLookupEnabled,
    PatientIdPattern,
    SystemTimeZone,
    SystemNtpServers,
}

/// Where a key lives in each of its three spellings.
#[derive(Clone, Copy, Debug)]
pub struct KeyNames {
    /// camelCase name in the settings API.
    pub json: &'static str,
    /// Environment variable without the `PHOTO_PACS_` prefix.
    pub env: &'static str,
    /// INI section and key.
    pub section: &'static str,
    pub ini: &'static str,
}

impl Key {
    pub const ALL: [Key; 40] = [
        Key::PacsHost,
        Key::PacsPort,
        Key::PacsCalledAet,
        Key::LocalCallingAet,
        Key::PacsTimeoutS,
        Key::PacsTls,
        Key::PacsTlsCaFile,
        Key::PacsTlsCertFile,
        Key::PacsTlsKeyFile,
        Key::DicomwebBaseUrl,
        Key::DicomwebVerifyTls,
        Key::DicomwebTlsCaFile,
        Key::DicomwebTimeoutS,
        Key::DicomwebAuthMethod,
        Key::DicomwebUsername,
        Key::DicomwebPassword,
        Key::DicomwebToken,
        Key::LocalModality,
        Key::LocalResizeMax,
        Key::LocalTransferSyntax,
        Key::LocalCharset,
        Key::LocalIod,
        Key::LocalBodySiteCoding,
        Key::FlagIncludePatientInfoExceptId,
        Key::FlagIncludeExamDescription,
        Key::FlagThemeDark,
        Key::FlagShrinkOnPhone,
        Key::UploadPin,
        Key::WorklistEnabled,
        Key::WorklistCalledAet,
        Key::WorklistHost,
        Key::WorklistPort,
        Key::WorklistStationAet,
        Key::WorklistModality,
        Key::WorklistPastDays,
        Key::WorklistFutureDays,
        Key::PatientLookupEnabled,
        Key::PatientIdPattern,
        Key::SystemTimeZone,
        Key::SystemNtpServers,
    ];

    pub fn names(self) -> KeyNames {
        let (json, env, section, ini) = match self {
            Key::PacsHost => ("pacsHost", "PACS_HOST", "pacs", "host"),
            Key::PacsPort => ("pacsPort", "PACS_PORT", "pacs", "port"),
            Key::PacsCalledAet => ("pacsCalledAET", "PACS_CALLED_AET", "pacs", "called_aet"),
            Key::LocalCallingAet => (
                "localCallingAET",
                "LOCAL_CALLING_AET",
                "local",
                "calling_aet",
            ),
            Key::PacsTimeoutS => ("pacsTimeoutS", "PACS_TIMEOUT_S", "pacs", "timeout_s"),
            Key::PacsTls => ("pacsTls", "PACS_TLS", "pacs", "tls"),
            Key::PacsTlsCaFile => ("pacsTlsCaFile", "PACS_TLS_CA_FILE", "pacs", "tls_ca_file"),
            Key::PacsTlsCertFile => (
                "pacsTlsCertFile",
                "PACS_TLS_CERT_FILE",
                "pacs",
                "tls_cert_file",
            ),
            Key::PacsTlsKeyFile => (
                "pacsTlsKeyFile",
                "PACS_TLS_KEY_FILE",
                "pacs",
                "tls_key_file",
            ),
            Key::DicomwebBaseUrl => (
                "dicomwebBaseUrl",
                "DICOMWEB_BASE_URL",
                "dicomweb",
                "base_url",
            ),
            Key::DicomwebVerifyTls => (
                "dicomwebVerifyTls",
                "DICOMWEB_VERIFY_TLS",
                "dicomweb",
                "verify_tls",
            ),
            Key::DicomwebTlsCaFile => (
                "dicomwebTlsCaFile",
                "DICOMWEB_TLS_CA_FILE",
                "dicomweb",
                "tls_ca_file",
            ),
            Key::DicomwebTimeoutS => (
                "dicomwebTimeoutS",
                "DICOMWEB_TIMEOUT_S",
                "dicomweb",
                "timeout_s",
            ),
            Key::DicomwebAuthMethod => (
                "dicomwebAuthMethod",
                "DICOMWEB_AUTH_METHOD",
                "dicomweb",
                "auth_method",
            ),
            Key::DicomwebUsername => (
                "dicomwebUsername",
                "DICOMWEB_USERNAME",
                "dicomweb",
                "username",
            ),
            Key::DicomwebPassword => (
                "dicomwebPassword",
                "DICOMWEB_PASSWORD",
                "dicomweb",
                "password",
            ),
            Key::DicomwebToken => ("dicomwebToken", "DICOMWEB_TOKEN", "dicomweb", "token"),
            Key::LocalModality => ("localModality", "LOCAL_MODALITY", "local", "modality"),
            Key::LocalResizeMax => ("localResizeMax", "LOCAL_RESIZE_MAX", "local", "resize_max"),
            Key::LocalTransferSyntax => (
                "localTransferSyntax",
                "LOCAL_TRANSFER_SYNTAX",
                "local",
                "transfer_syntax",
            ),
            Key::LocalCharset => ("localCharset", "LOCAL_CHARSET", "local", "charset"),
            Key::LocalIod => ("localIod", "LOCAL_IOD", "local", "iod"),
            Key::LocalBodySiteCoding => (
                "localBodySiteCoding",
                "LOCAL_BODY_SITE_CODING",
                "local",
                "body_site_coding",
            ),
            Key::FlagIncludePatientInfoExceptId => (
                "flagIncludePatientInfoExceptId",
                "FLAG_INCLUDE_PATIENT_INFO_EXCEPT_ID",
                "flags",
                "include_patient_info_except_id",
            ),
            Key::FlagIncludeExamDescription => (
                "flagIncludeExamDescription",
                "FLAG_INCLUDE_EXAM_DESCRIPTION",
                "flags",
                "include_exam_description",
            ),
            Key::FlagThemeDark => ("flagThemeDark", "FLAG_THEME_DARK", "flags", "theme_dark"),
            Key::FlagShrinkOnPhone => (
                "flagShrinkOnPhone",
                "FLAG_SHRINK_ON_PHONE",
                "flags",
                "shrink_on_phone",
            ),
            Key::UploadPin => ("uploadPin", "UPLOAD_PIN", "security", "upload_pin"),
            Key::WorklistEnabled => ("worklistEnabled", "WORKLIST_ENABLED", "worklist", "enabled"),
            Key::WorklistCalledAet => (
                "worklistCalledAET",
                "WORKLIST_CALLED_AET",
                "worklist",
                "called_aet",
            ),
            Key::WorklistHost => ("worklistHost", "WORKLIST_HOST", "worklist", "host"),
            Key::WorklistPort => ("worklistPort", "WORKLIST_PORT", "worklist", "port"),
            Key::WorklistStationAet => (
                "worklistStationAET",
                "WORKLIST_STATION_AET",
                "worklist",
                "station_aet",
            ),
            Key::WorklistModality => (
                "worklistModality",
                "WORKLIST_MODALITY",
                "worklist",
                "modality",
            ),
            Key::WorklistPastDays => (
                "worklistPastDays",
                "WORKLIST_PAST_DAYS",
                "worklist",
                "past_days",
            ),
            Key::WorklistFutureDays => (
                "worklistFutureDays",
                "WORKLIST_FUTURE_DAYS",
                "worklist",
                "future_days",
            ),
            Key::PatientLookupEnabled => (
                "patientLookupEnabled",
                "PATIENT_LOOKUP_ENABLED",
                "patient",
                "lookup_enabled",
            ),
            Key::PatientIdPattern => (
                "patientIdPattern",
                "PATIENT_ID_PATTERN",
                "patient",
                "id_pattern",
            ),
            Key::SystemTimeZone => ("timeZone", "TIME_ZONE", "system", "time_zone"),
            Key::SystemNtpServers => ("ntpServers", "NTP_SERVERS", "system", "ntp_servers"),
        };
        KeyNames {
            json,
            env,
            section,
            ini,
        }
    }

    /// Secrets are write-only: the API reports whether they are set, never their value.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            Key::DicomwebPassword | Key::DicomwebToken | Key::UploadPin
        )
    }

    pub fn from_json(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.names().json == name)
    }

    pub fn from_env(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.names().env == name)
    }

    pub fn from_ini(section: &str, name: &str) -> Option<Key> {
        Key::ALL
            .into_iter()
            .find(|k| k.names().section == section && k.names().ini == name)
    }

    /// The name the settings API reports for a secret: `<json>Set`.
    fn set_flag_name(self) -> String {
        format!("{}Set", self.names().json)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    None,
    Basic,
    Bearer,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Basic => "basic",
            AuthMethod::Bearer => "bearer",
        }
    }
}

/// A value that must never be printed: `Debug` and `Display` show only whether it is set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() {
            "Secret(set)"
        } else {
            "Secret(unset)"
        })
    }
}

/// The runtime settings in force for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub pacs_host: String,
    pub pacs_port: u16,
    pub pacs_called_aet: String,
    pub local_calling_aet: String,
    /// Connect and answer timeout for DICOM associations.
    pub pacs_timeout_s: u32,
    pub pacs_tls: bool,
    pub pacs_tls_ca_file: String,
    pub pacs_tls_cert_file: String,
    pub pacs_tls_key_file: String,
    pub dicomweb_base_url: String,
    pub dicomweb_verify_tls: bool,
    /// A PEM file of the CA(s) that signed the DICOMweb server's certificate (a hospital's
    /// private CA); empty: the system's trusted CAs.
    pub dicomweb_tls_ca_file: String,
    pub dicomweb_timeout_s: u32,
    pub dicomweb_auth_method: AuthMethod,
    pub dicomweb_username: String,
    pub dicomweb_password: Secret,
    pub dicomweb_token: Secret,
    pub local_modality: String,
    pub local_resize_max: u32,
    pub local_transfer_syntax: TransferSyntax,
    pub local_charset: Charset,
    /// Secondary Capture (the default) or VL Photographic Image.
    pub local_iod: Iod,
    /// The region's own code, or its "skin of" code, for body sites.
    pub local_body_site_coding: Coding,
    pub flag_include_patient_info_except_id: bool,
    pub flag_include_exam_description: bool,
    pub flag_theme_dark: bool,
    /// The page shrinks camera photos before upload when the box resizes them anyway.
    pub flag_shrink_on_phone: bool,
    /// When set, uploads must carry it.
    pub upload_pin: Secret,
    /// The "Today" list: query the Modality Worklist.
    pub worklist_enabled: bool,
    /// The worklist provider; empty (or port 0) means the PACS's own.
    pub worklist_called_aet: String,
    pub worklist_host: String,
    pub worklist_port: u16,
    /// Scheduled Station AE Title to match; empty matches any station.
    pub worklist_station_aet: String,
    /// Modality to match; empty matches any.
    pub worklist_modality: String,
    /// Days before and after today the query covers.
    pub worklist_past_days: u32,
    pub worklist_future_days: u32,
    /// Look a typed or scanned Patient ID up in the PACS.
    pub patient_lookup_enabled: bool,
    /// A regular expression with one capture group that takes the Patient ID out of what a
    /// wristband encodes; empty: the whole code is the ID.
    pub patient_id_pattern: String,
    /// The box's time zone (an IANA name such as Asia/Taipei); empty: the system's own.
    /// Applied by the image's privileged time helper, not by the gateway.
    pub time_zone: String,
    /// NTP servers (host names or addresses, space-separated); empty: the system's own.
    pub ntp_servers: String,
}

impl Default for Settings {
    /// The reference's defaults.
    fn default() -> Self {
        Settings {
            pacs_host: "127.0.0.1".into(),
            pacs_port: 104,
            pacs_called_aet: "PACS".into(),
            local_calling_aet: "PHOTO_PACS".into(),
            pacs_timeout_s: 30,
            pacs_tls: false,
            pacs_tls_ca_file: String::new(),
            pacs_tls_cert_file: String::new(),
            pacs_tls_key_file: String::new(),
            dicomweb_base_url: String::new(),
            dicomweb_verify_tls: true,
            dicomweb_tls_ca_file: String::new(),
            dicomweb_timeout_s: 30,
            dicomweb_auth_method: AuthMethod::None,
            dicomweb_username: String::new(),
            dicomweb_password: Secret::default(),
            dicomweb_token: Secret::default(),
            local_modality: "OT".into(),
            local_resize_max: 1024,
            local_transfer_syntax: TransferSyntax::ImplicitVrLittleEndian,
            local_charset: Charset::IsoIr192,
            local_iod: Iod::SecondaryCapture,
            local_body_site_coding: Coding::Region,
            flag_include_patient_info_except_id: true,
            flag_include_exam_description: true,
            flag_theme_dark: true,
            flag_shrink_on_phone: true,
            upload_pin: Secret::default(),
            worklist_enabled: false,
            worklist_called_aet: String::new(),
            worklist_host: String::new(),
            worklist_port: 0,
            worklist_station_aet: String::new(),
            worklist_modality: "XC".into(),
            worklist_past_days: 0,
            worklist_future_days: 0,
            patient_lookup_enabled: true,
            patient_id_pattern: String::new(),
            time_zone: String::new(),
            ntp_servers: String::new(),
        }
    }
}

/// A value refused for one key; `reason` never contains the value itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidValue {
    pub key: Key,
    pub reason: String,
}

impl Settings {
    /// Parses and validates `raw` for `key`, and stores it only if valid.
    pub fn apply(&mut self, key: Key, raw: &str) -> Result<(), InvalidValue> {
        let invalid = |reason: String| InvalidValue { key, reason };
        let trimmed = raw.trim();
        match key {
            Key::PacsHost => self.pacs_host = parse_host(trimmed).map_err(invalid)?,
            Key::PacsPort => self.pacs_port = parse_port(trimmed).map_err(invalid)?,
            Key::PacsCalledAet => self.pacs_called_aet = parse_aet(trimmed).map_err(invalid)?,
            Key::LocalCallingAet => self.local_calling_aet = parse_aet(trimmed).map_err(invalid)?,
            Key::PacsTimeoutS => {
                self.pacs_timeout_s =
                    parse_in_range(trimmed, 1, 300, "a number of seconds").map_err(invalid)?
            }
            Key::PacsTls => self.pacs_tls = parse_bool(trimmed).map_err(invalid)?,
            Key::PacsTlsCaFile => self.pacs_tls_ca_file = parse_path(trimmed).map_err(invalid)?,
            Key::PacsTlsCertFile => {
                self.pacs_tls_cert_file = parse_path(trimmed).map_err(invalid)?
            }
            Key::PacsTlsKeyFile => self.pacs_tls_key_file = parse_path(trimmed).map_err(invalid)?,
            Key::DicomwebBaseUrl => {
                self.dicomweb_base_url = parse_base_url(trimmed).map_err(invalid)?
            }
            Key::DicomwebVerifyTls => {
                self.dicomweb_verify_tls = parse_bool(trimmed).map_err(invalid)?
            }
            Key::DicomwebTlsCaFile => {
                self.dicomweb_tls_ca_file = parse_path(trimmed).map_err(invalid)?
            }
            Key::DicomwebTimeoutS => {
                self.dicomweb_timeout_s =
                    parse_in_range(trimmed, 1, 300, "a number of seconds").map_err(invalid)?
            }
            Key::DicomwebAuthMethod => {
                self.dicomweb_auth_method = match trimmed.to_ascii_lowercase().as_str() {
                    "none" | "" => AuthMethod::None,
                    "basic" => AuthMethod::Basic,
                    "bearer" => AuthMethod::Bearer,
                    _ => return Err(invalid("must be one of none, basic, bearer".into())),
                }
            }
            Key::DicomwebUsername => {
                self.dicomweb_username = parse_credential(trimmed).map_err(invalid)?
            }
            // Secrets are taken verbatim: leading or trailing spaces may be part of a password.
            Key::DicomwebPassword => {
                self.dicomweb_password = Secret(parse_credential(raw).map_err(invalid)?)
            }
            Key::DicomwebToken => {
                self.dicomweb_token = Secret(parse_credential(raw).map_err(invalid)?)
            }
            Key::LocalModality => self.local_modality = parse_modality(trimmed).map_err(invalid)?,
            Key::LocalResizeMax => {
                // "original" reads better than 0 in an env file.
                let trimmed = if trimmed.eq_ignore_ascii_case("original") {
                    "0"
                } else {
                    trimmed
                };
                let n = parse_in_range(trimmed, 0, 16384, "a size in pixels").map_err(invalid)?;
                if n != 0 && n < 64 {
                    return Err(invalid(
                        "must be 0 (keep the original size) or between 64 and 16384".into(),
                    ));
                }
                self.local_resize_max = n;
            }
            Key::LocalTransferSyntax => {
                self.local_transfer_syntax = TransferSyntax::from_uid(trimmed).ok_or_else(|| {
                    invalid(format!(
                        "unsupported transfer syntax; supported: {}",
                        TransferSyntax::ALL.map(|t| t.uid()).join(", ")
                    ))
                })?
            }
            Key::LocalIod => {
                self.local_iod = Iod::from_code(trimmed).ok_or_else(|| {
                    invalid(format!(
                        "must be one of: {}",
                        Iod::ALL.map(|i| i.code()).join(", ")
                    ))
                })?
            }
            Key::LocalBodySiteCoding => {
                self.local_body_site_coding = Coding::parse(trimmed)
                    .ok_or_else(|| invalid("must be region or skin".into()))?
            }
            Key::LocalCharset => {
                self.local_charset = Charset::from_code(trimmed).ok_or_else(|| {
                    invalid(format!(
                        "unsupported character set; supported: {}",
                        Charset::ALL.map(|c| c.code()).join(", ")
                    ))
                })?
            }
            Key::FlagIncludePatientInfoExceptId => {
                self.flag_include_patient_info_except_id = parse_bool(trimmed).map_err(invalid)?
            }
            Key::FlagIncludeExamDescription => {
                self.flag_include_exam_description = parse_bool(trimmed).map_err(invalid)?
            }
            Key::FlagThemeDark => self.flag_theme_dark = parse_bool(trimmed).map_err(invalid)?,
            Key::FlagShrinkOnPhone => {
                self.flag_shrink_on_phone = parse_bool(trimmed).map_err(invalid)?
            }
            Key::UploadPin => self.upload_pin = Secret(parse_pin(trimmed).map_err(invalid)?),
            Key::WorklistEnabled => self.worklist_enabled = parse_bool(trimmed).map_err(invalid)?,
            Key::WorklistCalledAet => {
                self.worklist_called_aet = parse_optional(trimmed, parse_aet).map_err(invalid)?
            }
            Key::WorklistHost => {
                self.worklist_host = parse_optional(trimmed, parse_host).map_err(invalid)?
            }
            Key::WorklistPort => {
                self.worklist_port = if trimmed.is_empty() || trimmed == "0" {
                    0
                } else {
                    parse_port(trimmed).map_err(|_| {
                        invalid(
                            "must be 0 (the PACS's port) or a port number from 1 to 65535".into(),
                        )
                    })?
                }
            }
            Key::WorklistStationAet => {
                self.worklist_station_aet = parse_optional(trimmed, parse_aet).map_err(invalid)?
            }
            Key::WorklistModality => {
                self.worklist_modality = parse_optional(trimmed, parse_modality).map_err(invalid)?
            }
            Key::WorklistPastDays => {
                self.worklist_past_days =
                    parse_in_range(trimmed, 0, 31, "a number of days").map_err(invalid)?
            }
            Key::WorklistFutureDays => {
                self.worklist_future_days =
                    parse_in_range(trimmed, 0, 31, "a number of days").map_err(invalid)?
            }
            Key::PatientLookupEnabled => {
                self.patient_lookup_enabled = parse_bool(trimmed).map_err(invalid)?
            }
            Key::PatientIdPattern => {
                self.patient_id_pattern = parse_id_pattern(trimmed).map_err(invalid)?
            }
            Key::SystemTimeZone => self.time_zone = parse_time_zone(trimmed).map_err(invalid)?,
            Key::SystemNtpServers => {
                self.ntp_servers = parse_ntp_servers(trimmed).map_err(invalid)?
            }
        }
        Ok(())
    }

    /// The value of `key` as text, in the form [`Settings::apply`] reads back.
    pub fn raw(&self, key: Key) -> String {
        match key {
            Key::PacsHost => self.pacs_host.clone(),
            Key::PacsPort => self.pacs_port.to_string(),
            Key::PacsCalledAet => self.pacs_called_aet.clone(),
            Key::LocalCallingAet => self.local_calling_aet.clone(),
            Key::PacsTimeoutS => self.pacs_timeout_s.to_string(),
            Key::PacsTls => self.pacs_tls.to_string(),
            Key::PacsTlsCaFile => self.pacs_tls_ca_file.clone(),
            Key::PacsTlsCertFile => self.pacs_tls_cert_file.clone(),
            Key::PacsTlsKeyFile => self.pacs_tls_key_file.clone(),
            Key::DicomwebBaseUrl => self.dicomweb_base_url.clone(),
            Key::DicomwebVerifyTls => self.dicomweb_verify_tls.to_string(),
            Key::DicomwebTlsCaFile => self.dicomweb_tls_ca_file.clone(),
            Key::DicomwebTimeoutS => self.dicomweb_timeout_s.to_string(),
            Key::DicomwebAuthMethod => self.dicomweb_auth_method.as_str().into(),
            Key::DicomwebUsername => self.dicomweb_username.clone(),
            Key::DicomwebPassword => self.dicomweb_password.expose().into(),
            Key::DicomwebToken => self.dicomweb_token.expose().into(),
            Key::LocalModality => self.local_modality.clone(),
            Key::LocalResizeMax => self.local_resize_max.to_string(),
            Key::LocalTransferSyntax => self.local_transfer_syntax.uid().into(),
            Key::LocalCharset => self.local_charset.code().into(),
            Key::LocalIod => self.local_iod.code().into(),
            Key::LocalBodySiteCoding => self.local_body_site_coding.as_str().into(),
            Key::FlagIncludePatientInfoExceptId => {
                self.flag_include_patient_info_except_id.to_string()
            }
            Key::FlagIncludeExamDescription => self.flag_include_exam_description.to_string(),
            Key::FlagThemeDark => self.flag_theme_dark.to_string(),
            Key::FlagShrinkOnPhone => self.flag_shrink_on_phone.to_string(),
            Key::UploadPin => self.upload_pin.expose().into(),
            Key::WorklistEnabled => self.worklist_enabled.to_string(),
            Key::WorklistCalledAet => self.worklist_called_aet.clone(),
            Key::WorklistHost => self.worklist_host.clone(),
            Key::WorklistPort => self.worklist_port.to_string(),
            Key::WorklistStationAet => self.worklist_station_aet.clone(),
            Key::WorklistModality => self.worklist_modality.clone(),
            Key::WorklistPastDays => self.worklist_past_days.to_string(),
            Key::WorklistFutureDays => self.worklist_future_days.to_string(),
            Key::PatientLookupEnabled => self.patient_lookup_enabled.to_string(),
            Key::PatientIdPattern => self.patient_id_pattern.clone(),
            Key::SystemTimeZone => self.time_zone.clone(),
            Key::SystemNtpServers => self.ntp_servers.clone(),
        }
    }

    /// The settings as the API shows them: camelCase keys, typed JSON values, secrets
    /// replaced by `<name>Set: bool`.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut map = Map::new();
        for key in Key::ALL {
            if key.is_secret() {
                map.insert(key.set_flag_name(), Value::Bool(!self.raw(key).is_empty()));
                continue;
            }
            let value = match key {
                Key::PacsPort => Value::from(self.pacs_port),
                Key::DicomwebTimeoutS => Value::from(self.dicomweb_timeout_s),
                Key::PacsTimeoutS => Value::from(self.pacs_timeout_s),
                Key::LocalResizeMax => Value::from(self.local_resize_max),
                Key::PacsTls => Value::Bool(self.pacs_tls),
                Key::DicomwebVerifyTls => Value::Bool(self.dicomweb_verify_tls),
                Key::FlagIncludePatientInfoExceptId => {
                    Value::Bool(self.flag_include_patient_info_except_id)
                }
                Key::FlagIncludeExamDescription => Value::Bool(self.flag_include_exam_description),
                Key::FlagThemeDark => Value::Bool(self.flag_theme_dark),
                Key::FlagShrinkOnPhone => Value::Bool(self.flag_shrink_on_phone),
                Key::WorklistEnabled => Value::Bool(self.worklist_enabled),
                Key::WorklistPort => Value::from(self.worklist_port),
                Key::WorklistPastDays => Value::from(self.worklist_past_days),
                Key::WorklistFutureDays => Value::from(self.worklist_future_days),
                Key::PatientLookupEnabled => Value::Bool(self.patient_lookup_enabled),
                other => Value::String(self.raw(other)),
            };
            map.insert(key.names().json.to_string(), value);
        }
        map
    }
}

/// One field of a settings update that was refused.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The settings after an update, and each changed key with its new value as text.
pub type Update = (Settings, Vec<(Key, String)>);

/// Turns an API update (`{"pacsPort": 11112, ...}`) into validated `(key, text)` pairs.
///
/// Unknown names are refused so that a typo never silently does nothing; the `...Set`
/// flags the GET answer carries are accepted and ignored so a client can send back what it
/// read. A secret given as `null` stays as it is; `""` clears it.
pub fn parse_update(
    base: &Settings,
    update: &Map<String, Value>,
) -> Result<Update, Vec<FieldError>> {
    let mut next = base.clone();
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    for (name, value) in update {
        let Some(key) = Key::from_json(name) else {
            if Key::ALL
                .iter()
                .any(|k| k.is_secret() && k.set_flag_name() == *name)
            {
                continue;
            }
            errors.push(FieldError {
                field: name.clone(),
                message: "unknown setting".into(),
            });
            continue;
        };
        let text = match value {
            Value::Null if key.is_secret() => continue,
            Value::Null => {
                errors.push(FieldError {
                    field: name.clone(),
                    message: "must not be null".into(),
                });
                continue;
            }
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Array(_) | Value::Object(_) => {
                errors.push(FieldError {
                    field: name.clone(),
                    message: "must be a string, number or boolean".into(),
                });
                continue;
            }
        };
        if key == Key::UploadPin && (1..MIN_NEW_PIN).contains(&text.trim().chars().count()) {
            // Older boxes took 4; a PIN already set keeps working (with a warning), but a
            // new one must be harder to guess.
            errors.push(FieldError {
                field: name.clone(),
                message: format!("must be empty (no PIN) or at least {MIN_NEW_PIN} characters"),
            });
            continue;
        }
        match next.apply(key, &text) {
            Ok(()) => changes.push((key, next.raw(key))),
            Err(e) => errors.push(FieldError {
                field: name.clone(),
                message: e.reason,
            }),
        }
    }
    // Stored DICOMweb credentials belong to the server they were set for: a new address
    // without new credentials must not receive them (a connection test would send them).
    if next.dicomweb_base_url != base.dicomweb_base_url {
        for key in [Key::DicomwebPassword, Key::DicomwebToken] {
            let given = update.get(key.names().json).is_some_and(|v| !v.is_null());
            if !given && !next.raw(key).is_empty() {
                next.apply(key, "").ok();
                changes.push((key, String::new()));
            }
        }
    }
    if errors.is_empty() {
        Ok((next, changes))
    } else {
        Err(errors)
    }
}

/// The shortest upload PIN the settings page sets now.
pub const MIN_NEW_PIN: usize = 6;

/// An upload PIN: empty (none), or 4 to 32 characters a phone keyboard can type.
fn parse_pin(s: &str) -> Result<String, String> {
    let n = s.chars().count();
    if n == 0 || ((4..=32).contains(&n) && !has_control(s)) {
        Ok(s.to_string())
    } else {
        Err("must be empty (no PIN) or 4 to 32 characters".into())
    }
}

pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".into()),
    }
}

fn parse_in_range(s: &str, min: u32, max: u32, what: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be {what} from {min} to {max}")),
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be a port number from 1 to 65535".into()),
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// An Application Entity title: 1-16 characters of the DICOM default repertoire, no backslash.
/// Leading and trailing spaces are not significant in an AE title, so they are dropped.
/// An IANA time zone name as systemd accepts it (`Area/City`, `UTC`): letters, digits,
/// `-`, `_`, `+`, and single slashes between parts. Whether the zone exists is checked
/// against the box's zone files where the value is applied.
pub fn parse_time_zone(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/'));
    // No empty part (`//`, a leading `/`) and no part that reads as an option.
    let ok_parts = s.split('/').all(|p| !p.is_empty() && !p.starts_with('-'));
    if s.len() > 64 || !ok_chars || !ok_parts {
        return Err("must be a time zone name such as Asia/Taipei or UTC".into());
    }
    Ok(s.to_string())
}

/// Up to 8 NTP servers, each a host name or an IP address, separated by spaces or commas.
/// Stored space-separated, as timesyncd's NTP= takes them.
pub fn parse_ntp_servers(s: &str) -> Result<String, String> {
    let servers: Vec<&str> = s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .collect();
    if servers.len() > 8 {
        return Err("at most 8 NTP servers".into());
    }
    for server in &servers {
        parse_host(server)
            .map_err(|_| "each NTP server must be a host name or an IP address".to_string())?;
    }
    Ok(servers.join(" "))
}

pub fn parse_aet(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 16 || !s.chars().all(|c| (' '..='~').contains(&c) && c != '\\') {
        return Err("must be 1 to 16 printable ASCII characters without backslash".into());
    }
    Ok(s.to_string())
}

fn parse_host(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '[' | ']'));
    if ok {
        Ok(s.to_string())
    } else {
        Err("must be a host name or IP address".into())
    }
}

fn parse_path(s: &str) -> Result<String, String> {
    if has_control(s) {
        Err("must be a file path without control characters".into())
    } else {
        Ok(s.to_string())
    }
}

fn parse_credential(s: &str) -> Result<String, String> {
    if has_control(s) {
        Err("must not contain control characters".into())
    } else if s.len() > 4096 {
        Err("must be at most 4096 bytes".into())
    } else {
        Ok(s.to_string())
    }
}

fn parse_base_url(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    let bad = || {
        "must be an http:// or https:// URL such as https://pacs.example.com/dicom-web".to_string()
    };
    if has_control(s) || s.contains(char::is_whitespace) {
        return Err(bad());
    }
    let uri: http::Uri = s.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http") | Some("https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    if !scheme_ok || !host_ok || uri.query().is_some() {
        return Err(bad());
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// Empty means "not set" (the setting then follows another one); anything else must pass `parse`.
fn parse_optional(s: &str, parse: fn(&str) -> Result<String, String>) -> Result<String, String> {
    if s.is_empty() {
        Ok(String::new())
    } else {
        parse(s)
    }
}

/// The longest extraction pattern we take: a wristband format needs a few dozen characters.
const MAX_ID_PATTERN: usize = 256;

/// A regular expression with exactly one capture group, written so that both this gateway
/// (Rust's `regex`) and the phone (JavaScript's `RegExp`) read it the same way: the common
/// subset, no look-around or back-references (Rust refuses those anyway), no named groups.
fn parse_id_pattern(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    if s.len() > MAX_ID_PATTERN || has_control(s) {
        return Err(format!(
            "must be a regular expression of at most {MAX_ID_PATTERN} characters"
        ));
    }
    if s.contains("(?P<") || s.contains("(?<") {
        return Err("must not use named groups: write one plain group, such as PID:(\\w+)".into());
    }
    let re = regex::RegexBuilder::new(s)
        .size_limit(1 << 20)
        .build()
        .map_err(|_| {
            "is not a valid regular expression (example: PID:(\\w+) takes the ID after PID:)"
                .to_string()
        })?;
    if re.captures_len() != 2 {
        return Err("must have exactly one capture group ( ... ) around the Patient ID".into());
    }
    Ok(s.to_string())
}

/// Modality is a DICOM Code String: upper-case letters, digits, space and underscore, ≤ 16.
fn parse_modality(s: &str) -> Result<String, String> {
    let upper = s.to_ascii_uppercase();
    if upper.is_empty()
        || upper.len() > 16
        || !upper
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == ' ')
    {
        return Err("must be a DICOM modality code such as OT or XC (letters, digits, underscore; at most 16)".into());
    }
    Ok(upper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_key_has_unique_names() {
        for (i, a) in Key::ALL.iter().enumerate() {
            for b in &Key::ALL[i + 1..] {
                assert_ne!(a.names().json, b.names().json);
                assert_ne!(a.names().env, b.names().env);
                assert!(
                    (a.names().section, a.names().ini) != (b.names().section, b.names().ini),
                    "{a:?} and {b:?} share an INI key"
                );
            }
        }
    }

    #[test]
    fn raw_reads_back_through_apply_for_every_key() {
        let s = Settings {
            dicomweb_password: Secret(" p;a#s=s\"w ".into()),
            dicomweb_base_url: "https://pacs.example.com/rs".into(),
            ..Default::default()
        };
        let mut copy = Settings::default();
        for key in Key::ALL {
            copy.apply(key, &s.raw(key)).unwrap();
        }
        assert_eq!(copy, s);
    }

    #[test]
    fn validation_refuses_what_the_issue_lists() {
        let mut s = Settings::default();
        let bad = [
            (Key::PacsCalledAet, ""),
            (Key::PacsCalledAet, "SEVENTEEN_CHARS_X"),
            (Key::PacsCalledAet, "A\\B"),
            (Key::PacsCalledAet, "A\u{7}B"),
            (Key::PacsCalledAet, "王"),
            (Key::PacsPort, "0"),
            (Key::PacsPort, "65536"),
            (Key::PacsPort, "abc"),
            (Key::DicomwebBaseUrl, "ftp://x/y"),
            (Key::DicomwebBaseUrl, "pacs.example.com"),
            (Key::DicomwebBaseUrl, "https://"),
            (Key::DicomwebTimeoutS, "0"),
            (Key::DicomwebTimeoutS, "301"),
            (Key::LocalResizeMax, "63"),
            (Key::LocalResizeMax, "16385"),
            (Key::LocalResizeMax, "-1"),
            (Key::LocalTransferSyntax, "1.2.3"),
            (Key::LocalCharset, "GB18030"),
            (Key::FlagThemeDark, "maybe"),
            (Key::DicomwebAuthMethod, "digest"),
            (Key::LocalModality, "O-T"),
        ];
        for (key, value) in bad {
            let before = s.clone();
            assert!(
                s.apply(key, value).is_err(),
                "{key:?}={value:?} was accepted"
            );
            assert_eq!(s, before, "a refused value must change nothing");
        }
        s.apply(Key::LocalResizeMax, "0").unwrap();
        s.apply(Key::LocalResizeMax, "64").unwrap();
        s.apply(Key::LocalModality, "xc").unwrap();
        assert_eq!(s.local_modality, "XC");
        s.apply(Key::DicomwebBaseUrl, "http://127.0.0.1:8042/dicom-web/")
            .unwrap();
        assert_eq!(s.dicomweb_base_url, "http://127.0.0.1:8042/dicom-web");
    }

    #[test]
    fn json_never_shows_secret_values() {
        let mut s = Settings::default();
        s.apply(Key::DicomwebPassword, "hunter2-canary").unwrap();
        let text = serde_json::to_string(&s.to_json()).unwrap();
        assert!(!text.contains("hunter2-canary"));
        assert!(text.contains("\"dicomwebPasswordSet\":true"));
        assert!(text.contains("\"dicomwebTokenSet\":false"));
        assert!(!format!("{s:?}").contains("hunter2-canary"));
    }

    #[test]
    fn update_reports_every_bad_field_and_accepts_what_get_returned() {
        let base = Settings::default();
        let mut round_trip = base.to_json();
        round_trip.insert("pacsPort".into(), json!(11112));
        let (next, changes) = parse_update(&base, &round_trip).unwrap();
        assert_eq!(next.pacs_port, 11112);
        assert!(changes.contains(&(Key::PacsPort, "11112".into())));

        let bad = json!({"pacsPort": "x", "nope": 1, "pacsHost": null, "dicomwebPassword": null});
        let errors = parse_update(&base, bad.as_object().unwrap()).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["pacsPort", "nope", "pacsHost"]);
    }

    #[test]
    fn secret_null_keeps_and_empty_clears() {
        let mut base = Settings::default();
        base.apply(Key::DicomwebToken, "tok").unwrap();
        let (next, _) =
            parse_update(&base, json!({"dicomwebToken": null}).as_object().unwrap()).unwrap();
        assert_eq!(next.dicomweb_token.expose(), "tok");
        let (next, _) =
            parse_update(&base, json!({"dicomwebToken": ""}).as_object().unwrap()).unwrap();
        assert!(!next.dicomweb_token.is_set());
    }

    #[test]
    fn a_new_dicomweb_address_drops_the_old_credentials_unless_new_ones_come() {
        let mut base = Settings::default();
        base.apply(Key::DicomwebBaseUrl, "https://pacs.example/dicom-web")
            .unwrap();
        base.apply(Key::DicomwebPassword, "s3cret").unwrap();
        base.apply(Key::DicomwebToken, "tok").unwrap();
        let update = |v: serde_json::Value| parse_update(&base, v.as_object().unwrap()).unwrap();
        let (next, _) = update(serde_json::json!({"dicomwebBaseUrl": "https://evil.example/"}));
        assert_eq!(next.dicomweb_password.expose(), "");
        assert_eq!(next.dicomweb_token.expose(), "");
        let (next, _) = update(
            serde_json::json!({"dicomwebBaseUrl": "https://new.example/", "dicomwebPassword": "n3w"}),
        );
        assert_eq!(next.dicomweb_password.expose(), "n3w");
        assert_eq!(next.dicomweb_token.expose(), "");
        let (next, _) = update(serde_json::json!({"dicomwebTimeoutS": 30}));
        assert_eq!(
            next.dicomweb_password.expose(),
            "s3cret",
            "same address, kept"
        );
    }

    #[test]
    fn new_pins_need_six_characters_but_an_old_short_one_still_loads() {
        let base = Settings::default();
        let short = serde_json::json!({"uploadPin": "1234"});
        assert!(parse_update(&base, short.as_object().unwrap()).is_err());
        let ok = serde_json::json!({"uploadPin": "123456"});
        assert!(parse_update(&base, ok.as_object().unwrap()).is_ok());
        let mut loaded = Settings::default();
        assert!(loaded.apply(Key::UploadPin, "1234").is_ok());
    }
}
