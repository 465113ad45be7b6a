//! Configuration backup and restore: the settings, the `PHOTO_PACS_*` environment and the box's facts in one file, secrets only inside an age passphrase-encrypted copy.
//!
//! A backup is one JSON document. Without secrets it is plain JSON an admin can read (and
//! edit); with them the whole document is encrypted with age's scrypt passphrase recipient
//! and ASCII-armored, so neither the secrets nor anything else of it can be read or changed
//! without the passphrase (age checks every byte). A restore is judged whole before anything
//! is written: every setting through the settings page's own validation
//! ([`crate::config::parse_update`] and the sender's whole-settings check), the environment
//! through the start-up parser ([`EnvConfig::from_vars`]), so a restored box always starts.
//! A restore never touches the outbox.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::{
    EnvConfig, FieldError, Key, OWN_VARS, PREFIX, Settings, SettingsStore, UpdateError,
};

/// What the document's `format` says.
pub const FORMAT: &str = "photo-pacs-backup";
/// The document version this gateway writes and reads.
pub const VERSION: u64 = 1;
/// The largest backup file read: a backup is a few kilobytes.
pub const MAX_FILE: usize = 64 * 1024;
/// The shortest passphrase a backup with secrets is encrypted with.
pub const MIN_PASSPHRASE: usize = 8;
/// Longer is a paste gone wrong; it also bounds what scrypt is given.
pub const MAX_PASSPHRASE: usize = 1024;
/// Beside settings.ini: the `PHOTO_PACS_*` values a restore brought. The gateway reads it at
/// its next start, after its environment (see `config::EnvConfig::from_process`), as it
/// cannot write the box's own environment files (they are root's).
pub use crate::config::RESTORED_ENV;

/// scrypt's work factor (N = 2^16, 64 MiB, r = 8) for the files we write: about 0.2 s on a
/// desktop and 1 to 2 s on a Raspberry Pi 3. age's own default is measured to take a second
/// on the machine at hand, which on a fast PC can mean 2^20 and 1 GiB; the box's unit caps
/// the gateway at 512 MB.
const WORK_FACTOR: u8 = 16;
/// The most a file may ask for when it is opened (128 MiB): a file made elsewhere with a
/// huge work factor would hold the box for minutes and gigabytes.
const MAX_WORK_FACTOR: u8 = 17;

/// Environment variables that say how this box is laid out (where it listens, where its
/// files are, where the system marks its clock synchronised): carried in a backup so it is
/// complete, never restored onto another box.
const LAYOUT_VARS: &[&str] = &[
    "LISTEN",
    "UPLOAD_DIR",
    "DICOM_DIR",
    "SETTINGS_PATH",
    "CLOCK_SYNC_FILE",
    "RAUC_CONF",
    "RELEASE_FILE",
    "DBUS_ADDRESS",
];
/// Environment variables no backup carries. The admin password is the box's own.
const SECRET_VARS: &[&str] = &["ADMIN_PASSWORD"];
/// Environment variables that describe this boot only (the unit sets them): never carried.
const VOLATILE_VARS: &[&str] = &["BOOT_ID"];

/// Where the SD-card image keeps the Wi-Fi network and the tunnel token (root's files: only
/// whether they exist is looked at), and the Debian package's tunnel token.
pub const WIFI_FILES: &[&str] = &["/data/etc/wpa_supplicant-wlan0.conf"];
pub const TUNNEL_FILES: &[&str] = &["/data/tunnel/token", "/etc/photo-pacs/tunnel-token"];

/// Why a backup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the passphrase must be {MIN_PASSPHRASE} to {MAX_PASSPHRASE} characters")]
    Passphrase,
    #[error("could not encrypt the backup: {0}")]
    Encrypt(String),
}

/// Why a restore was refused or did not complete. Messages never hold a secret or a value
/// from the file beyond a setting's name.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Not a backup of ours, damaged, changed, or from a newer version.
    #[error("{message}")]
    Invalid {
        message: String,
        field: Option<String>,
    },
    /// The file is encrypted and the passphrase is missing or wrong.
    #[error("{0}")]
    Passphrase(&'static str),
    /// Values the settings page (or the start-up check, for the environment) would refuse.
    #[error("the backup holds values this gateway refuses")]
    Values(Vec<FieldError>),
    #[error(transparent)]
    Save(UpdateError),
    #[error("could not write {path}: {source}")]
    EnvFile { path: PathBuf, source: io::Error },
}

impl RestoreError {
    fn invalid(message: impl Into<String>) -> Self {
        RestoreError::Invalid {
            message: message.into(),
            field: None,
        }
    }

    fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        RestoreError::Invalid {
            message: message.into(),
            field: Some(field.to_string()),
        }
    }

    /// A fixed word for the events list when the file was refused; `None` when the box
    /// failed (disk) rather than the file.
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            RestoreError::Invalid { .. } => Some("not a valid backup"),
            RestoreError::Passphrase(_) => Some("passphrase"),
            RestoreError::Values(_) => Some("invalid values"),
            RestoreError::Save(UpdateError::Invalid(_)) => Some("invalid values"),
            RestoreError::Save(_) | RestoreError::EnvFile { .. } => None,
        }
    }
}

/// Whether the box has Wi-Fi and a tunnel set; `None`: it could not tell (a folder it may
/// not look into).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct System {
    pub wifi: Option<bool>,
    pub tunnel: Option<bool>,
}

impl System {
    /// Looks at the image's (and the package's) files without opening them.
    pub fn of_this_box() -> Self {
        fn paths(list: &'static [&'static str]) -> Vec<&'static Path> {
            list.iter().map(Path::new).collect()
        }
        System {
            wifi: present(&paths(WIFI_FILES)),
            tunnel: present(&paths(TUNNEL_FILES)),
        }
    }
}

/// Whether any of `paths` exists, from its metadata only (the files are root's and mode
/// 0600; their folder must let others through, else the answer is `None`).
pub fn present(paths: &[&Path]) -> Option<bool> {
    let mut unknown = false;
    for path in paths {
        match std::fs::symlink_metadata(path) {
            Ok(_) => return Some(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) => {}
            Err(_) => unknown = true,
        }
    }
    (!unknown).then_some(false)
}

/// What describes the box beyond its settings.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub hostname: String,
    pub system: System,
}

impl Facts {
    pub fn of_this_box() -> Self {
        Facts {
            hostname: crate::access::host_name(),
            system: System::of_this_box(),
        }
    }

    /// [`Facts::of_this_box`], and where the tunnel token's folder is closed to the gateway
    /// (the image's `/data/tunnel` is root's, mode 0700), what systemd found when it last
    /// judged the tunnel unit's start condition (the token's existence), as the status page
    /// reads it.
    pub async fn gather() -> Self {
        let mut facts = Self::of_this_box();
        if facts.system.tunnel.is_none() {
            let unit = crate::status::units(&[crate::status::TUNNEL_UNIT])
                .await
                .pop()
                .unwrap_or_default();
            if unit.load == "loaded" {
                facts.system.tunnel = match unit.condition.as_str() {
                    "yes" => Some(true),
                    "no" => Some(false),
                    _ => None,
                };
            }
        }
        facts
    }
}

/// The `PHOTO_PACS_*` variables of this process, by full name.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect()
}

/// Whether a backup carries the variable `name` (full name): the gateway's own start-up
/// variables, not a setting (those are in `settings`, as in force), never a secret.
fn carried(name: &str) -> bool {
    name.strip_prefix(PREFIX).is_some_and(|rest| {
        OWN_VARS.contains(&rest) && !SECRET_VARS.contains(&rest) && !VOLATILE_VARS.contains(&rest)
    })
}

fn is_layout(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|rest| LAYOUT_VARS.contains(&rest))
}

/// The backup document. `env` is the process's `PHOTO_PACS_*` environment (full names); only
/// what [`carried`] allows goes in. Secrets are written only when `include_secrets`;
/// otherwise `secretsLeftOut` names those that are set, so a restore can say what to re-enter.
pub fn document(
    settings: &Settings,
    env: &BTreeMap<String, String>,
    facts: &Facts,
    include_secrets: bool,
    now: DateTime<Utc>,
) -> Value {
    let mut values = Map::new();
    let mut left_out = Vec::new();
    for key in Key::ALL {
        let raw = settings.raw(key);
        if key.is_secret() && !include_secrets {
            if !raw.is_empty() {
                left_out.push(Value::from(key.names().json));
            }
            continue;
        }
        values.insert(key.names().json.to_string(), Value::String(raw));
    }
    let environment: Map<String, Value> = env
        .iter()
        .filter(|(k, v)| carried(k) && !v.trim().is_empty())
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut doc = Map::new();
    doc.insert("format".into(), FORMAT.into());
    doc.insert("version".into(), VERSION.into());
    doc.insert(
        "created".into(),
        now.to_rfc3339_opts(SecondsFormat::Secs, true).into(),
    );
    doc.insert("gatewayVersion".into(), env!("CARGO_PKG_VERSION").into());
    doc.insert("hostname".into(), facts.hostname.clone().into());
    doc.insert("settings".into(), Value::Object(values));
    if !include_secrets {
        doc.insert("secretsLeftOut".into(), Value::Array(left_out));
    }
    doc.insert("environment".into(), Value::Object(environment));
    doc.insert(
        "system".into(),
        serde_json::to_value(facts.system).unwrap_or(Value::Null),
    );
    Value::Object(doc)
}

/// The download's file name: `photo-pacs-<host>-<YYYYmmdd-HHMM>.backup.json` (or `.age`).
pub fn file_name(hostname: &str, when: &str, encrypted: bool) -> String {
    let host: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(63)
        .collect();
    let host = if host.is_empty() {
        String::new()
    } else {
        format!("{host}-")
    };
    let ext = if encrypted { "age" } else { "json" };
    format!("photo-pacs-{host}{when}.backup.{ext}")
}

/// Whether `passphrase` may encrypt a backup.
pub fn check_passphrase(passphrase: &str) -> Result<(), BackupError> {
    let n = passphrase.chars().count();
    if (MIN_PASSPHRASE..=MAX_PASSPHRASE).contains(&n) {
        Ok(())
    } else {
        Err(BackupError::Passphrase)
    }
}

/// Encrypts `plain` for `passphrase` (age, scrypt recipient, ASCII armor). Slow on purpose
/// (scrypt): call it off the async threads.
pub fn seal(plain: &[u8], passphrase: &str) -> Result<Vec<u8>, BackupError> {
    check_passphrase(passphrase)?;
    let fail = |e: &dyn std::fmt::Display| BackupError::Encrypt(e.to_string());
    let mut recipient =
        age::scrypt::Recipient::new(age::secrecy::SecretString::from(passphrase.to_string()));
    recipient.set_work_factor(WORK_FACTOR);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(|e| fail(&e))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| fail(&e))?;
    let mut writer = encryptor.wrap_output(armor).map_err(|e| fail(&e))?;
    writer.write_all(plain).map_err(|e| fail(&e))?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| fail(&e))?;
    Ok(out)
}

/// A backup as read from its file, checked for shape but not yet for values.
#[derive(Clone, Debug, PartialEq)]
pub struct Backup {
    pub created: String,
    pub gateway_version: String,
    pub hostname: String,
    /// By the settings API's names; values as the file has them.
    pub settings: Map<String, Value>,
    /// Secrets that were set on the box the file came from but are not in it.
    pub secrets_left_out: Vec<String>,
    /// Full `PHOTO_PACS_*` names.
    pub environment: BTreeMap<String, String>,
    pub system: System,
    pub encrypted: bool,
}

const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
const AGE_BINARY: &[u8] = b"age-encryption.org/";

/// Reads a backup file: plain JSON, or age-encrypted (armored or binary) with `passphrase`.
/// Slow for an encrypted file (scrypt): call it off the async threads.
pub fn open(bytes: &[u8], passphrase: Option<&str>) -> Result<Backup, RestoreError> {
    if bytes.len() > MAX_FILE {
        return Err(RestoreError::invalid(format!(
            "the file is larger than {} KB: not a Photo PACS backup",
            MAX_FILE / 1024
        )));
    }
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let trimmed = &bytes[start..];
    if trimmed.starts_with(ARMOR_BEGIN) || trimmed.starts_with(AGE_BINARY) {
        let plain = decrypt(trimmed, passphrase)?;
        parse(&plain, true)
    } else {
        // A BOM from an editor that touched the file is harmless.
        let plain = trimmed
            .strip_prefix("\u{feff}".as_bytes())
            .unwrap_or(trimmed);
        if !plain.starts_with(b"{") {
            return Err(RestoreError::invalid(
                "this file is not a Photo PACS backup (neither its JSON form nor an encrypted .age file)",
            ));
        }
        parse(plain, false)
    }
}

fn decrypt(bytes: &[u8], passphrase: Option<&str>) -> Result<Vec<u8>, RestoreError> {
    let Some(passphrase) = passphrase.filter(|p| !p.is_empty()) else {
        return Err(RestoreError::Passphrase(
            "this backup is encrypted: give the passphrase it was made with",
        ));
    };
    if passphrase.chars().count() > MAX_PASSPHRASE {
        return Err(RestoreError::Passphrase("wrong passphrase"));
    }
    let damaged = || {
        RestoreError::invalid(
            "the encrypted backup is damaged or was changed: it fails age's integrity check",
        )
    };
    let decryptor =
        age::Decryptor::new(age::armor::ArmoredReader::new(bytes)).map_err(|e| match e {
            age::DecryptError::UnknownFormat => RestoreError::invalid(
                "this encrypted file is in an age format this gateway does not know",
            ),
            _ => damaged(),
        })?;
    if !decryptor.is_scrypt() {
        return Err(RestoreError::invalid(
            "this age file is encrypted for a key, not with a passphrase: it is not a Photo PACS backup",
        ));
    }
    let mut identity =
        age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase.to_string()));
    identity.set_max_work_factor(MAX_WORK_FACTOR);
    let reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            // The wrapped file key does not open with this passphrase. A change to that
            // stanza looks the same: age cannot tell the two apart, and neither can we.
            age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
                RestoreError::Passphrase("wrong passphrase (or the file was changed)")
            }
            age::DecryptError::ExcessiveWork { .. } => RestoreError::invalid(
                "this encrypted file asks for more work to open than this gateway allows: it was not made by Photo PACS",
            ),
            _ => damaged(),
        })?;
    let mut plain = Vec::new();
    reader
        .take(MAX_FILE as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|_| damaged())?;
    if plain.len() > MAX_FILE {
        return Err(RestoreError::invalid(
            "the encrypted backup holds more than a backup does",
        ));
    }
    Ok(plain)
}

/// The document's shape: what it is, its version, and the type of each part.
fn parse(plain: &[u8], encrypted: bool) -> Result<Backup, RestoreError> {
    let not_ours = || RestoreError::invalid("this file is not a Photo PACS backup");
    let text = std::str::from_utf8(plain).map_err(|_| not_ours())?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        RestoreError::invalid(format!(
            "this file is not a Photo PACS backup: it is not valid JSON ({e})"
        ))
    })?;
    let Value::Object(mut top) = value else {
        return Err(not_ours());
    };
    if top.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(RestoreError::invalid(format!(
            "this file is not a Photo PACS backup (it has no \"format\": \"{FORMAT}\")"
        )));
    }
    match top.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v > VERSION) => {
            return Err(RestoreError::invalid_field(
                "version",
                format!(
                    "this backup was made by a newer Photo PACS (backup version {n}); this gateway reads version {VERSION}"
                ),
            ));
        }
        _ => {
            return Err(RestoreError::invalid_field(
                "version",
                format!("this backup's version is not one this gateway reads ({VERSION})"),
            ));
        }
    }
    const PARTS: [&str; 9] = [
        "format",
        "version",
        "created",
        "gatewayVersion",
        "hostname",
        "settings",
        "secretsLeftOut",
        "environment",
        "system",
    ];
    if let Some(unknown) = top.keys().find(|k| !PARTS.contains(&k.as_str())) {
        return Err(RestoreError::invalid_field(
            unknown,
            format!("the backup has a part this gateway does not know: {unknown:?}"),
        ));
    }
    let text_part = |top: &Map<String, Value>, name: &str| match top.get(name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(RestoreError::invalid_field(
            name,
            format!("the backup's {name} must be text"),
        )),
    };
    let created = text_part(&top, "created")?;
    let gateway_version = text_part(&top, "gatewayVersion")?;
    let hostname = text_part(&top, "hostname")?;
    let settings = match top.remove("settings") {
        Some(Value::Object(map)) => map,
        _ => {
            return Err(RestoreError::invalid_field(
                "settings",
                "the backup has no settings object",
            ));
        }
    };
    let secrets_left_out = match top.remove("secretsLeftOut") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(RestoreError::invalid_field(
                    "secretsLeftOut",
                    "the backup's secretsLeftOut must list setting names",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(RestoreError::invalid_field(
                "secretsLeftOut",
                "the backup's secretsLeftOut must list setting names",
            ));
        }
    };
    let environment = match top.remove("environment") {
        None => BTreeMap::new(),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                _ => Err(RestoreError::invalid_field(
                    &k,
                    format!("the backup's environment value of {k} must be text"),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(RestoreError::invalid_field(
                "environment",
                "the backup's environment must be an object of NAME: value",
            ));
        }
    };
    let system = match top.remove("system") {
        None => System::default(),
        Some(Value::Object(map)) => {
            let flag = |name: &str| match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(_) => Err(RestoreError::invalid_field(
                    &format!("system.{name}"),
                    format!("the backup's system.{name} must be true, false or null"),
                )),
            };
            System {
                wifi: flag("wifi")?,
                tunnel: flag("tunnel")?,
            }
        }
        Some(_) => {
            return Err(RestoreError::invalid_field(
                "system",
                "the backup's system part must be an object",
            ));
        }
    };
    Ok(Backup {
        created,
        gateway_version,
        hostname,
        settings,
        secrets_left_out,
        environment,
        system,
        encrypted,
    })
}

/// One value a restore changes. Secrets read "set" or "not set", never their value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub field: String,
    pub from: String,
    pub to: String,
}

/// Something of the backup a restore does not bring, and what to do instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotRestored {
    pub item: String,
    pub reason: String,
}

/// What a restore changes (preview) or changed (applied): the answer of `POST /api/restore`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub applied: bool,
    pub changes: Vec<Change>,
    /// Values in the file that this box already has.
    pub unchanged: usize,
    pub not_restored: Vec<NotRestored>,
    /// Restored environment values take effect when the gateway next starts.
    pub restart_needed: bool,
    pub warnings: Vec<String>,
}

impl Report {
    /// The names of what changed, for the events list (never values).
    pub fn fields(&self) -> Vec<String> {
        self.changes.iter().map(|c| c.field.clone()).collect()
    }
}

/// The box a backup is restored onto, as it is now.
pub struct Here<'a> {
    pub settings: &'a Settings,
    /// Its `PHOTO_PACS_*` environment, full names.
    pub env: &'a BTreeMap<String, String>,
    pub facts: &'a Facts,
}

/// A restore judged whole and found valid: what [`apply`] writes, and the report.
#[derive(Debug)]
pub struct Plan {
    /// For the settings store, by API names.
    update: Map<String, Value>,
    /// Environment values to add to [`RESTORED_ENV`] (full names); empty when none differs.
    env: BTreeMap<String, String>,
    /// Keys of `update` that are settings, for the count of unchanged values.
    keys: Vec<Key>,
    env_unchanged: usize,
    env_changes: Vec<Change>,
    not_restored: Vec<NotRestored>,
    warnings: Vec<String>,
    pub report: Report,
}

/// Judges `backup` against the box `here`: every setting as a settings PUT would be
/// (`check` is the sender's whole-settings check), the environment as a start would be.
/// Nothing is written.
pub fn plan(
    backup: &Backup,
    here: Here<'_>,
    check: impl Fn(&Settings) -> Vec<FieldError>,
) -> Result<Plan, RestoreError> {
    // The settings, as a PUT of the whole object.
    let update = backup.settings.clone();
    let (next, _) =
        crate::config::parse_update(here.settings, &update).map_err(RestoreError::Values)?;
    let before = check(here.settings);
    let introduced: Vec<FieldError> = check(&next)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    if !introduced.is_empty() {
        return Err(RestoreError::Values(introduced));
    }
    let keys: Vec<Key> = update.keys().filter_map(|k| Key::from_json(k)).collect();

    // The environment: what the next start would see, judged by the start-up parser.
    let mut errors = Vec::new();
    let mut restorable = BTreeMap::new();
    let mut env_changes = Vec::new();
    let mut env_unchanged = 0;
    let mut not_restored = Vec::new();
    for (name, value) in &backup.environment {
        if !carried(name) {
            let why = if name
                .strip_prefix(PREFIX)
                .is_some_and(|r| SECRET_VARS.contains(&r))
            {
                "is never restored from a backup"
            } else if name.strip_prefix(PREFIX).and_then(Key::from_env).is_some() {
                "is a setting: it belongs in the backup's settings, by its settings name"
            } else {
                "is not a Photo PACS environment variable"
            };
            errors.push(FieldError {
                field: name.clone(),
                message: why.into(),
            });
            continue;
        }
        if value.chars().any(char::is_control) {
            errors.push(FieldError {
                field: name.clone(),
                message: "must not contain control characters".into(),
            });
            continue;
        }
        let running = here.env.get(name).map(String::as_str).unwrap_or("");
        if running.trim() == value.trim() {
            env_unchanged += 1;
        } else if is_layout(name) {
            not_restored.push(NotRestored {
                item: name.clone(),
                reason: "where a box listens and keeps its files is its own: set it in the first-boot file if this box should change".into(),
            });
        } else {
            env_changes.push(Change {
                field: name.clone(),
                from: running.to_string(),
                to: value.clone(),
            });
            restorable.insert(name.clone(), value.clone());
        }
    }
    if !errors.is_empty() {
        return Err(RestoreError::Values(errors));
    }
    if !restorable.is_empty() {
        let mut next_env = here.env.clone();
        next_env.extend(restorable.clone());
        if let Err(e) = EnvConfig::from_vars(next_env) {
            return Err(RestoreError::Values(vec![FieldError {
                field: e.var,
                message: e.reason,
            }]));
        }
    }

    // What the file holds that a restore does not bring.
    for name in &backup.secrets_left_out {
        let Some(key) = Key::from_json(name).filter(|k| k.is_secret()) else {
            continue;
        };
        let reason = if next.raw(key).is_empty() {
            "this backup was made without secrets: enter it on the settings page"
        } else {
            "this backup was made without secrets: this box keeps its own"
        };
        not_restored.push(NotRestored {
            item: name.clone(),
            reason: reason.into(),
        });
    }
    not_restored.push(NotRestored {
        item: "adminPassword".into(),
        reason: "a backup never holds the admin password: this box keeps its own (change it on the settings page)".into(),
    });
    for (item, had, how) in [
        (
            "wifi",
            backup.system.wifi,
            "give WIFI_SSID and WIFI_PASSPHRASE (and WIFI_COUNTRY) in the first-boot file",
        ),
        (
            "tunnel",
            backup.system.tunnel,
            "give CLOUDFLARED_TOKEN in the first-boot file",
        ),
    ] {
        let reason = match had {
            Some(false) => continue,
            Some(true) => format!(
                "the box the backup came from had it set, but a backup does not carry it: {how}"
            ),
            None => format!(
                "the box the backup came from could not tell whether it was set; a backup does not carry it: {how}"
            ),
        };
        not_restored.push(NotRestored {
            item: item.into(),
            reason,
        });
    }
    if !backup.hostname.is_empty() && backup.hostname != here.facts.hostname {
        not_restored.push(NotRestored {
            item: "hostname".into(),
            reason: format!(
                "the gateway cannot rename the box: to take the name {} give HOSTNAME={} in the first-boot file",
                backup.hostname, backup.hostname
            ),
        });
    }

    let mut warnings = Vec::new();
    let ours = env!("CARGO_PKG_VERSION");
    if !backup.gateway_version.is_empty() && backup.gateway_version != ours {
        warnings.push(format!(
            "this backup was made by Photo PACS {}; this box runs {ours}",
            backup.gateway_version
        ));
    }
    if !restorable.is_empty() {
        warnings.push(
            "the restored environment values take effect when the gateway next starts (restart it, or the box)".into(),
        );
    }
    let mut plan = Plan {
        update,
        env: restorable,
        keys,
        env_unchanged,
        env_changes,
        not_restored,
        warnings,
        report: Report {
            applied: false,
            changes: Vec::new(),
            unchanged: 0,
            not_restored: Vec::new(),
            restart_needed: false,
            warnings: Vec::new(),
        },
    };
    plan.report = plan.report_for(here.settings, &next, false);
    Ok(plan)
}

impl Plan {
    fn report_for(&self, before: &Settings, after: &Settings, applied: bool) -> Report {
        let shown = |key: Key, s: &Settings| {
            let raw = s.raw(key);
            if !key.is_secret() {
                raw
            } else if raw.is_empty() {
                "not set".into()
            } else {
                "set".into()
            }
        };
        let mut changes: Vec<Change> = Key::ALL
            .into_iter()
            .filter(|k| before.raw(*k) != after.raw(*k))
            .map(|k| Change {
                field: k.names().json.to_string(),
                from: shown(k, before),
                to: shown(k, after),
            })
            .collect();
        let unchanged = self
            .keys
            .iter()
            .filter(|k| before.raw(**k) == after.raw(**k))
            .count()
            + self.env_unchanged;
        changes.extend(self.env_changes.iter().cloned());
        Report {
            applied,
            changes,
            unchanged,
            not_restored: self.not_restored.clone(),
            restart_needed: !self.env.is_empty(),
            warnings: self.warnings.clone(),
        }
    }
}

/// Writes a plan: the environment file first (it only counts at the next start), then the
/// settings through the store, atomically, as a settings PUT does; if the store refuses
/// (another writer changed something in between) the environment file is put back.
pub async fn apply(
    plan: Plan,
    store: &SettingsStore,
    check: impl Fn(&Settings) -> Vec<FieldError>,
) -> Result<Report, RestoreError> {
    let env_path = store.path().with_file_name(RESTORED_ENV);
    let previous = if plan.env.is_empty() {
        None
    } else {
        Some(write_env(&env_path, &plan.env).await?)
    };
    match store.update_from(&plan.update, check).await {
        Ok((before, after)) => Ok(plan.report_for(&before, &after, true)),
        Err(e) => {
            if let Some(old) = previous
                && let Err(undo) = put_back(&env_path, old).await
            {
                log::error!(
                    "restore: could not put {} back after the settings were refused: {undo}",
                    env_path.display()
                );
            }
            Err(match e {
                UpdateError::Invalid(fields) => RestoreError::Values(fields),
                other => RestoreError::Save(other),
            })
        }
    }
}

/// Adds `values` to the environment file at `path` (other lines kept); returns what it held.
async fn write_env(
    path: &Path,
    values: &BTreeMap<String, String>,
) -> Result<Option<Vec<u8>>, RestoreError> {
    let path = path.to_path_buf();
    let values = values.clone();
    let target = path.clone();
    let fail = move |source| RestoreError::EnvFile {
        path: target.clone(),
        source,
    };
    let done = tokio::task::spawn_blocking(move || -> io::Result<Option<Vec<u8>>> {
        let old = match crate::storage::read_small(&path, MAX_FILE as u64) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let text = old
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let mut merged = String::new();
        if old.is_none() {
            merged.push_str(
                "# PHOTO_PACS_* values brought by a restore (photo-pacs restore or the settings page).\n# The gateway reads this file at its start; its values win over its environment.\n",
            );
        }
        merged.push_str(
            &crate::provision::merge_env(&text, &values)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
        );
        crate::config::write_atomically(&path, merged.as_bytes())?;
        Ok(old)
    })
    .await
    .map_err(io::Error::other);
    done.and_then(|r| r).map_err(fail)
}

async fn put_back(path: &Path, old: Option<Vec<u8>>) -> io::Result<()> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || match old {
        Some(bytes) => crate::config::write_atomically(&path, &bytes),
        None => std::fs::remove_file(&path),
    })
    .await
    .map_err(io::Error::other)?
}

/// Encrypting and opening hold scrypt's 64 MiB: one at a time, whoever asks.
static SCRYPT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Runs `work` (scrypt) on the blocking pool, one at a time.
pub async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let _permit = SCRYPT.acquire().await.map_err(io::Error::other)?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)
}

/// The document of this box now: `settings` in force, this process's environment, `facts`.
pub fn document_now(settings: &Settings, facts: &Facts, include_secrets: bool) -> Value {
    document(settings, &process_env(), facts, include_secrets, Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn this_boots_id_and_secrets_are_never_carried() {
        assert!(carried("PHOTO_PACS_LISTEN"));
        assert!(!carried("PHOTO_PACS_BOOT_ID"));
        assert!(!carried("PHOTO_PACS_ADMIN_PASSWORD"));
    }

    fn facts(host: &str) -> Facts {
        Facts {
            hostname: host.into(),
            system: System {
                wifi: Some(true),
                tunnel: Some(false),
            },
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn source_settings() -> Settings {
        let mut s = Settings::default();
        s.apply(Key::PacsHost, "10.1.2.3").unwrap();
        s.apply(Key::PacsCalledAet, "ORTHANC").unwrap();
        s.apply(Key::DicomwebBaseUrl, "https://pacs.example/rs")
            .unwrap();
        s.apply(Key::DicomwebPassword, "pw-CANARY").unwrap();
        s.apply(Key::UploadPin, "482913").unwrap();
        s
    }

    fn round_trip(doc: &Value) -> Backup {
        open(doc.to_string().as_bytes(), None).unwrap()
    }

    #[test]
    fn a_plain_backup_has_every_setting_and_no_secret() {
        let e = env(&[
            ("PHOTO_PACS_RETRY_MAX_S", "600"),
            ("PHOTO_PACS_ADMIN_PASSWORD", "admin-CANARY"),
            ("PHOTO_PACS_PACS_HOST", "10.9.9.9"),
            ("PHOTO_PACS_TYPO", "1"),
            ("PHOTO_PACS_LISTEN", "0.0.0.0:9470"),
            ("PHOTO_PACS_CONVERT_MEMORY_MB", ""),
        ]);
        let doc = document(&source_settings(), &e, &facts("ward-3"), false, Utc::now());
        let text = doc.to_string();
        assert!(!text.contains("CANARY"), "{text}");
        assert!(!text.contains("482913"), "{text}");
        assert_eq!(doc["format"], FORMAT);
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["hostname"], "ward-3");
        assert_eq!(doc["system"], json!({"wifi": true, "tunnel": false}));
        let settings = doc["settings"].as_object().unwrap();
        assert_eq!(settings.len(), Key::ALL.len() - 3);
        assert_eq!(settings["pacsPort"], "104", "raw text, as the INI holds it");
        assert_eq!(
            doc["secretsLeftOut"],
            json!(["dicomwebPassword", "uploadPin"])
        );
        assert_eq!(
            doc["environment"],
            json!({"PHOTO_PACS_LISTEN": "0.0.0.0:9470", "PHOTO_PACS_RETRY_MAX_S": "600"})
        );
        let back = round_trip(&doc);
        assert!(!back.encrypted);
        assert_eq!(back.settings, *settings);
    }

    #[test]
    fn with_secrets_the_document_carries_them_and_seals_and_opens() {
        let doc = document(&source_settings(), &env(&[]), &facts("a"), true, Utc::now());
        assert_eq!(doc["settings"]["dicomwebPassword"], "pw-CANARY");
        assert!(doc.get("secretsLeftOut").is_none());
        let plain = serde_json::to_vec(&doc).unwrap();
        let sealed = seal(&plain, "correct horse").unwrap();
        let text = String::from_utf8(sealed.clone()).unwrap();
        assert!(
            text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
            "{text}"
        );
        assert!(!text.contains("CANARY"));
        let back = open(&sealed, Some("correct horse")).unwrap();
        assert!(back.encrypted);
        assert_eq!(back.settings["dicomwebPassword"], "pw-CANARY");

        assert!(matches!(
            open(&sealed, None),
            Err(RestoreError::Passphrase(_))
        ));
        assert!(matches!(
            open(&sealed, Some("wrong horse")),
            Err(RestoreError::Passphrase(_))
        ));
        // One character of the armored payload changed: age's checks refuse it.
        let mut tampered = sealed.clone();
        let body_at = text.find('\n').unwrap() + 60;
        tampered[body_at] = if tampered[body_at] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let err = open(&tampered, Some("correct horse")).unwrap_err();
        assert!(
            matches!(
                err,
                RestoreError::Invalid { .. } | RestoreError::Passphrase(_)
            ),
            "{err:?}"
        );
        // The payload's last line (the encrypted JSON) changed.
        let lines: Vec<&str> = text.lines().collect();
        let last_data = lines.len() - 2;
        let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let mut bytes = changed[last_data].clone().into_bytes();
        bytes[0] = if bytes[0] == b'A' { b'B' } else { b'A' };
        changed[last_data] = String::from_utf8(bytes).unwrap();
        let err = open(
            format!("{}\n", changed.join("\n")).as_bytes(),
            Some("correct horse"),
        )
        .unwrap_err();
        assert!(matches!(err, RestoreError::Invalid { .. }), "{err:?}");

        assert!(matches!(
            seal(&plain, "short"),
            Err(BackupError::Passphrase)
        ));
    }

    #[test]
    fn foreign_files_are_refused_by_what_is_wrong() {
        let invalid = |bytes: &[u8]| match open(bytes, Some("any passphrase")) {
            Err(RestoreError::Invalid { message, field }) => (message, field),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        };
        invalid(b"\x89PNG\r\n");
        invalid(b"{not json");
        invalid(b"[1,2]");
        invalid(br#"{"format":"something-else","version":1,"settings":{}}"#);
        let (message, field) =
            invalid(br#"{"format":"photo-pacs-backup","version":2,"settings":{}}"#);
        assert!(message.contains("newer"), "{message}");
        assert_eq!(field.as_deref(), Some("version"));
        let (_, field) =
            invalid(br#"{"format":"photo-pacs-backup","version":1,"settings":{},"extra":1}"#);
        assert_eq!(field.as_deref(), Some("extra"));
        let (_, field) = invalid(br#"{"format":"photo-pacs-backup","version":1,"settings":[]}"#);
        assert_eq!(field.as_deref(), Some("settings"));
        let (_, field) = invalid(
            br#"{"format":"photo-pacs-backup","version":1,"settings":{},"environment":{"PHOTO_PACS_RETRY_MAX_S":5}}"#,
        );
        assert_eq!(field.as_deref(), Some("PHOTO_PACS_RETRY_MAX_S"));
        invalid(&vec![b' '; MAX_FILE + 1]);
        // An age file whose armor is cut short.
        invalid(b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5\n");
    }

    fn here<'a>(
        settings: &'a Settings,
        env: &'a BTreeMap<String, String>,
        f: &'a Facts,
    ) -> Here<'a> {
        Here {
            settings,
            env,
            facts: f,
        }
    }

    #[test]
    fn a_plan_lists_changes_without_secret_values_and_what_is_not_restored() {
        let source = document(
            &source_settings(),
            &env(&[
                ("PHOTO_PACS_RETRY_MAX_S", "600"),
                ("PHOTO_PACS_DICOM_DIR", "/x"),
            ]),
            &facts("old-box"),
            true,
            Utc::now(),
        );
        let backup = round_trip(&source);
        let fresh = Settings::default();
        let running = env(&[("PHOTO_PACS_LISTEN", "127.0.0.1:0")]);
        let f = Facts {
            hostname: "new-box".into(),
            system: System::default(),
        };
        let plan = plan(&backup, here(&fresh, &running, &f), |_| Vec::new()).unwrap();
        let r = &plan.report;
        assert!(!r.applied);
        let change = |field: &str| r.changes.iter().find(|c| c.field == field).cloned();
        assert_eq!(
            change("pacsHost"),
            Some(Change {
                field: "pacsHost".into(),
                from: "127.0.0.1".into(),
                to: "10.1.2.3".into()
            })
        );
        assert_eq!(change("dicomwebPassword").unwrap().to, "set");
        assert_eq!(change("uploadPin").unwrap().from, "not set");
        assert_eq!(change("PHOTO_PACS_RETRY_MAX_S").unwrap().to, "600");
        assert!(change("PHOTO_PACS_DICOM_DIR").is_none());
        assert!(r.restart_needed);
        let items: Vec<&str> = r.not_restored.iter().map(|n| n.item.as_str()).collect();
        assert_eq!(
            items,
            ["PHOTO_PACS_DICOM_DIR", "adminPassword", "wifi", "hostname"]
        );
        assert_eq!(r.unchanged + 5, Key::ALL.len(), "{r:?}");
        let text = serde_json::to_string(r).unwrap();
        assert!(
            !text.contains("CANARY") && !text.contains("482913"),
            "{text}"
        );
    }

    #[test]
    fn one_bad_value_refuses_the_whole_plan_naming_it() {
        let mut doc = document(
            &Settings::default(),
            &env(&[]),
            &facts("a"),
            false,
            Utc::now(),
        );
        doc["settings"]["pacsPort"] = json!("70000");
        doc["settings"]["pacsPrt"] = json!("1");
        let f = facts("a");
        let fresh = Settings::default();
        let running = env(&[]);
        match plan(&round_trip(&doc), here(&fresh, &running, &f), |_| {
            Vec::new()
        }) {
            Err(RestoreError::Values(fields)) => {
                let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
                assert_eq!(names, ["pacsPort", "pacsPrt"]);
            }
            other => panic!("{other:?}"),
        }
        let mut doc = document(&Settings::default(), &env(&[]), &f, false, Utc::now());
        for (name, value) in [
            ("PHOTO_PACS_RETRY_MAX_S", "0"),
            ("PHOTO_PACS_ADMIN_PASSWORD", "from-a-file"),
            ("PHOTO_PACS_PACS_HOST", "x"),
            ("PHOTO_PACS_NOPE", "1"),
        ] {
            doc["environment"] = json!({ name: value });
            match plan(&round_trip(&doc), here(&fresh, &running, &f), |_| {
                Vec::new()
            }) {
                Err(RestoreError::Values(fields)) => assert_eq!(fields[0].field, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        // Two values that are each fine but not together (one photo must fit in a request).
        doc["environment"] =
            json!({"PHOTO_PACS_MAX_UPLOAD_MB": "50", "PHOTO_PACS_MAX_REQUEST_MB": "40"});
        assert!(matches!(
            plan(&round_trip(&doc), here(&fresh, &running, &f), |_| Vec::new(
            )),
            Err(RestoreError::Values(_))
        ));
    }

    #[tokio::test]
    async fn apply_writes_settings_and_environment_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("settings.ini");
        let store = SettingsStore::load(ini.clone(), Settings::default());
        let doc = document(
            &source_settings(),
            &env(&[("PHOTO_PACS_RETRY_MAX_S", "600")]),
            &facts("a"),
            true,
            Utc::now(),
        );
        let backup = round_trip(&doc);
        let running = env(&[("PHOTO_PACS_LISTEN", "127.0.0.1:0")]);
        let f = facts("a");

        // The store refuses (a whole-settings check the plan did not see): nothing is kept.
        let current = store.current();
        let p = plan(&backup, here(&current, &running, &f), |_| Vec::new()).unwrap();
        let refuse = |s: &Settings| {
            if s.pacs_host == "10.1.2.3" {
                vec![FieldError {
                    field: "pacsHost".into(),
                    message: "refused".into(),
                }]
            } else {
                Vec::new()
            }
        };
        assert!(matches!(
            apply(p, &store, refuse).await,
            Err(RestoreError::Values(_))
        ));
        assert!(!ini.exists());
        assert!(!dir.path().join(RESTORED_ENV).exists());

        let current = store.current();
        let p = plan(&backup, here(&current, &running, &f), |_| Vec::new()).unwrap();
        let report = apply(p, &store, |_| Vec::new()).await.unwrap();
        assert!(report.applied && report.restart_needed);
        let s = store.current();
        assert_eq!(s.pacs_host, "10.1.2.3");
        assert_eq!(s.dicomweb_password.expose(), "pw-CANARY");
        assert_eq!(*s, source_settings());
        let env_text = std::fs::read_to_string(dir.path().join(RESTORED_ENV)).unwrap();
        assert!(
            env_text.contains("PHOTO_PACS_RETRY_MAX_S=600\n"),
            "{env_text}"
        );
        // As a start would read it.
        let vars: Vec<(String, String)> = env_text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(EnvConfig::from_vars(vars).unwrap().retry_max.as_secs(), 600);
    }

    #[test]
    fn presence_is_read_from_metadata_and_unknown_when_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let missing = dir.path().join("nope");
        assert_eq!(present(&[&missing]), Some(false));
        std::fs::write(&file, "x").unwrap();
        assert_eq!(present(&[&missing, &file]), Some(true));
        assert_eq!(present(&[&file.join("below-a-file")]), Some(false));
    }

    #[test]
    fn file_names_follow_the_host_and_the_form() {
        assert_eq!(
            file_name("ward-3", "20261130-0945", false),
            "photo-pacs-ward-3-20261130-0945.backup.json"
        );
        assert_eq!(
            file_name("", "20261130-0945", true),
            "photo-pacs-20261130-0945.backup.age"
        );
        assert_eq!(
            file_name("a\"b/../c", "x", true),
            "photo-pacs-abc-x.backup.age"
        );
    }
}
