//! Start-up configuration from `PHOTO_PACS_*` environment variables, validated once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::settings::{Key, Secret, Settings};
use crate::dicom::UidRoot;

pub const PREFIX: &str = "PHOTO_PACS_";

/// Which PACS delivery the gateway uses. Only the environment chooses it: switching a
/// running box between protocols from a web page is not something a clinic needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Mock,
    Cstore,
    Dicomweb,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Mock => "mock",
            Backend::Cstore => "cstore",
            Backend::Dicomweb => "dicomweb",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Dev,
    Test,
    Prod,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Test => "test",
            Environment::Prod => "prod",
        }
    }
}

/// Everything fixed at start-up.
#[derive(Clone, Debug)]
pub struct EnvConfig {
    pub listen: SocketAddr,
    pub backend: Backend,
    pub environment: Environment,
    pub upload_dir: PathBuf,
    pub dicom_dir: PathBuf,
    pub settings_path: PathBuf,
    pub keep_files_on_success: bool,
    /// Largest accepted image file, in bytes.
    pub max_upload_bytes: u64,
    /// Largest accepted request body, in bytes (all images and fields of one submission).
    pub max_request_bytes: u64,
    /// Photos with more pixels are refused before decoding (decompression bombs).
    pub max_pixels: u64,
    /// Root for the UIDs we generate.
    pub uid_root: UidRoot,
    /// PHOTO_PACS_ADMIN_PASSWORD as given; the app hashes it at start-up and drops this.
    pub admin_password: Option<Secret>,
    /// How long a client may take to send its request headers.
    pub header_timeout: std::time::Duration,
    /// Open connections at most; further clients wait to be accepted.
    pub max_connections: usize,
    /// Photos decoded at the same time at most, across all uploads.
    pub max_conversions: usize,
    /// Memory all conversions together may hold, in bytes; one photo that would need more
    /// is refused before it is decoded.
    pub convert_memory_bytes: u64,
    /// Connections one client address may hold at once before its further connections are
    /// only answered "busy" (loopback, where the tunnel and health checks come from, is exempt).
    pub max_connections_per_client: usize,
    /// Host names besides the box's own (host name, `.local`, its addresses) that
    /// settings changes may arrive under, lowercased: a DNS alias the clinic uses.
    pub allowed_hosts: Vec<String>,
    /// An admin session ends after this long without use.
    pub session_idle: std::time::Duration,
    /// How long an upload waits for its first delivery attempt before answering 202.
    pub delivery_wait: std::time::Duration,
    /// The longest pause between two delivery attempts of a queued study.
    pub retry_max: std::time::Duration,
    /// Uploads are refused while the data partition has less free space than this (bytes),
    /// or less than a tenth of its size.
    pub min_free_bytes: u64,
    /// Worklist matches taken at most; the query is cancelled after that many.
    pub worklist_max: usize,
    /// A study waiting longer than this makes the box "not ready" (`/readyz`).
    pub outbox_stuck_after: std::time::Duration,
    /// How often the PACS is echoed for the status page; zero: never.
    pub pacs_check_every: std::time::Duration,
    /// The file systemd-timesyncd creates once it has set the clock.
    pub clock_sync_file: PathBuf,
    /// RAUC's system.conf (its compatible and keyring).
    pub rauc_conf: PathBuf,
    /// The running root's release file; absent: updates are not available here.
    pub release_file: PathBuf,
    /// The D-Bus address RAUC's service is on; `None`: the system bus.
    pub dbus_address: Option<String>,
    /// The largest update bundle taken, in bytes.
    pub update_max_bytes: u64,
    /// This boot's ID as the unit passes it (`%b`); `None`: read the kernel's.
    pub boot_id: Option<String>,
    pub log_level: log::LevelFilter,
    /// Defaults for the runtime settings; the INI file overrides them key by key.
    pub defaults: Settings,
    /// `PHOTO_PACS_*` variables that mean nothing to us: reported once, then ignored.
    pub unknown_vars: Vec<String>,
}

/// A variable with a value we cannot use. The message names the variable and what is allowed.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct EnvError {
    pub var: String,
    pub reason: String,
}

impl EnvConfig {
    /// Reads the process environment, then the values a restore left beside the settings
    /// file ([`RESTORED_ENV`]), which win: a restore is the admin's latest word.
    pub fn from_process() -> Result<Self, EnvError> {
        let mut vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let settings = vars
            .iter()
            .find(|(k, v)| k == &format!("{PREFIX}SETTINGS_PATH") && !v.trim().is_empty())
            .map(|(_, v)| PathBuf::from(v.trim()))
            .unwrap_or_else(|| PathBuf::from("data/settings.ini"));
        vars.extend(restored_vars(&settings.with_file_name(RESTORED_ENV)));
        Self::from_vars(vars)
    }

    /// Builds the configuration from `(name, value)` pairs; only `PHOTO_PACS_*` names count.
    /// An empty value means "not set", so a `.env` template with blank lines is harmless.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, EnvError> {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?.to_string(), v)))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        let err = |name: &str, reason: &str| EnvError {
            var: format!("{PREFIX}{name}"),
            reason: reason.to_string(),
        };
        let get = |name: &str| vars.get(name).map(|v| v.trim());

        let mut defaults = Settings::default();
        let mut unknown_vars = Vec::new();
        for (name, value) in &vars {
            if let Some(key) = Key::from_env(name) {
                defaults.apply(key, value).map_err(|e| {
                    let shown = if key.is_secret() {
                        String::new()
                    } else {
                        format!("{value:?} ")
                    };
                    err(name, &format!("{shown}is not valid: {}", e.reason))
                })?;
            } else if !OWN_VARS.contains(&name.as_str()) {
                unknown_vars.push(format!("{PREFIX}{name}"));
            }
        }

        let listen = match get("LISTEN") {
            None => SocketAddr::from(([0, 0, 0, 0], 9470)),
            Some(v) => v.parse().map_err(|_| {
                err(
                    "LISTEN",
                    "must be an address and port such as 0.0.0.0:9470 or 127.0.0.1:0",
                )
            })?,
        };
        let backend = match get("PACS_BACKEND").map(str::to_ascii_lowercase).as_deref() {
            None | Some("mock") => Backend::Mock,
            Some("cstore") => Backend::Cstore,
            Some("dicomweb") => Backend::Dicomweb,
            Some(_) => return Err(err("PACS_BACKEND", "must be one of mock, cstore, dicomweb")),
        };
        let environment = match get("ENVIRONMENT").map(str::to_ascii_lowercase).as_deref() {
            None | Some("dev") | Some("development") => Environment::Dev,
            Some("test") => Environment::Test,
            Some("prod") | Some("production") => Environment::Prod,
            Some(_) => return Err(err("ENVIRONMENT", "must be one of dev, test, prod")),
        };
        let bool_var = |name: &str, default: bool| match get(name) {
            None => Ok(default),
            Some(v) => {
                super::settings::parse_bool(v).map_err(|_| err(name, "must be true or false"))
            }
        };
        let mb_var = |name: &str, default: u64, max: u64| match get(name) {
            None => Ok(default * 1024 * 1024),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n * 1024 * 1024),
                _ => Err(err(
                    name,
                    &format!("must be a whole number of megabytes from 1 to {max}"),
                )),
            },
        };
        let path_var = |name: &str, default: &str| PathBuf::from(get(name).unwrap_or(default));
        let max_upload_bytes = mb_var("MAX_UPLOAD_MB", 20, 1024)?;
        let max_request_bytes = mb_var("MAX_REQUEST_MB", 300, 16 * 1024)?;
        if max_request_bytes < max_upload_bytes {
            return Err(err(
                "MAX_REQUEST_MB",
                "must be at least PHOTO_PACS_MAX_UPLOAD_MB: one image must fit in one request",
            ));
        }
        let max_pixels = match get("MAX_PIXELS") {
            None => 100_000_000,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1_000_000..=1_000_000_000).contains(&n) => n,
                _ => {
                    return Err(err(
                        "MAX_PIXELS",
                        "must be a number of pixels from 1000000 to 1000000000",
                    ));
                }
            },
        };
        let uid_root = match get("UID_ROOT") {
            None => UidRoot::default(),
            Some(v) => UidRoot::parse(v).map_err(|reason| err("UID_ROOT", &reason))?,
        };
        let number = |name: &str, default: u64, min: u64, max: u64, what: &str| match get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(err(name, &format!("must be {what} from {min} to {max}"))),
            },
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let header_timeout = std::time::Duration::from_secs(number(
            "HEADER_TIMEOUT_S",
            30,
            1,
            600,
            "a number of seconds",
        )?);
        let max_connections =
            number("MAX_CONNECTIONS", 256, 4, 65536, "a number of connections")? as usize;
        let max_conversions =
            number("MAX_CONVERSIONS", cores.min(4), 1, 64, "a number of photos")? as usize;
        let convert_memory_bytes = 1024
            * 1024
            * number(
                "CONVERT_MEMORY_MB",
                128,
                16,
                16 * 1024,
                "a number of megabytes",
            )?;
        let max_connections_per_client = number(
            "MAX_CONNECTIONS_PER_CLIENT",
            (max_connections as u64 / 2).clamp(2, 16),
            1,
            65536,
            "a number of connections",
        )? as usize;
        let allowed_hosts = get("ALLOWED_HOSTS")
            .map(|v| {
                v.split(',')
                    .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let session_idle = std::time::Duration::from_secs(
            60 * number("SESSION_IDLE_MIN", 30, 1, 24 * 60, "a number of minutes")?,
        );
        let delivery_wait = std::time::Duration::from_secs(number(
            "DELIVERY_WAIT_S",
            10,
            0,
            300,
            "a number of seconds",
        )?);
        let retry_max = std::time::Duration::from_secs(number(
            "RETRY_MAX_S",
            300,
            1,
            86_400,
            "a number of seconds",
        )?);
        let min_free_bytes =
            1024 * 1024 * number("MIN_FREE_MB", 500, 0, 1_048_576, "a number of megabytes")?;
        let worklist_max = number("WORKLIST_MAX", 200, 1, 5000, "a number of entries")? as usize;
        let outbox_stuck_after = std::time::Duration::from_secs(number(
            "OUTBOX_STUCK_S",
            3600,
            1,
            7 * 86_400,
            "a number of seconds",
        )?);
        let pacs_check_every = std::time::Duration::from_secs(number(
            "PACS_CHECK_S",
            300,
            0,
            86_400,
            "a number of seconds (0: never)",
        )?);
        let admin_password = match vars.get("ADMIN_PASSWORD") {
            None => None,
            Some(v) if (8..=256).contains(&v.chars().count()) => Some(Secret::new(v.clone())),
            Some(_) => return Err(err("ADMIN_PASSWORD", "must be 8 to 256 characters")),
        };
        let update_max_bytes =
            1024 * 1024 * number("UPDATE_MAX_MB", 1024, 1, 16_384, "a number of megabytes")?;
        let log_level = match get("LOG_LEVEL") {
            None => log::LevelFilter::Info,
            Some(v) => v.parse().map_err(|_| {
                err(
                    "LOG_LEVEL",
                    "must be one of off, error, warn, info, debug, trace",
                )
            })?,
        };

        Ok(EnvConfig {
            listen,
            backend,
            environment,
            upload_dir: path_var("UPLOAD_DIR", "data/uploads"),
            dicom_dir: path_var("DICOM_DIR", "data/dicom"),
            settings_path: path_var("SETTINGS_PATH", "data/settings.ini"),
            keep_files_on_success: bool_var("KEEP_FILES_ON_SUCCESS", false)?,
            max_upload_bytes,
            max_request_bytes,
            max_pixels,
            uid_root,
            admin_password,
            header_timeout,
            max_connections,
            max_conversions,
            convert_memory_bytes,
            max_connections_per_client,
            allowed_hosts,
            session_idle,
            delivery_wait,
            retry_max,
            min_free_bytes,
            worklist_max,
            outbox_stuck_after,
            pacs_check_every,
            clock_sync_file: path_var("CLOCK_SYNC_FILE", "/run/systemd/timesync/synchronized"),
            rauc_conf: path_var("RAUC_CONF", "/etc/rauc/system.conf"),
            release_file: path_var("RELEASE_FILE", "/etc/photo-pacs-release"),
            dbus_address: get("DBUS_ADDRESS").map(|v| v.trim().to_string()),
            update_max_bytes,
            boot_id: get("BOOT_ID").map(str::to_string),
            log_level,
            defaults,
            unknown_vars,
        })
    }
}

/// Beside settings.ini: the `PHOTO_PACS_*` start-up values a restore brought, which the
/// gateway cannot write into the box's own environment files (root's).
pub const RESTORED_ENV: &str = "restored.env";

/// The `PHOTO_PACS_*` assignments of the restore's file, in the quoting the backup module
/// writes (systemd's EnvironmentFile= syntax). Read by the gateway itself, with its own
/// rights, rather than by systemd as root: the file sits in a folder the service user
/// controls, and a link planted there must not hand it a root-only file's lines. The
/// settings path, the admin password and anything not ours are never taken from it; an
/// unreadable file is reported and skipped.
fn restored_vars(path: &Path) -> Vec<(String, String)> {
    let bytes = match crate::storage::read_small(path, 64 * 1024) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            log::warn!("{}: not used ({e})", path.display());
            return Vec::new();
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if matches!(rest, "SETTINGS_PATH" | "ADMIN_PASSWORD") {
            continue;
        }
        out.push((name.to_string(), unquote(value.trim())));
    }
    out
}

/// systemd's reading of a value: in double quotes, `\"`, `\\`, `` \` `` and `\$` stand
/// for the second character; single quotes are taken as they are.
fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_string();
    }
    if !(v.len() >= 2 && v.starts_with('"') && v.ends_with('"')) {
        return v.to_string();
    }
    let mut out = String::new();
    let mut chars = v[1..v.len() - 1].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next) = chars.peek()
            && matches!(next, '"' | '\\' | '`' | '$')
        {
            out.push(next);
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

/// Variables that are ours but not runtime settings.
pub const OWN_VARS: &[&str] = &[
    "LISTEN",
    "PACS_BACKEND",
    "ENVIRONMENT",
    "UPLOAD_DIR",
    "DICOM_DIR",
    "SETTINGS_PATH",
    "KEEP_FILES_ON_SUCCESS",
    "MAX_UPLOAD_MB",
    "MAX_REQUEST_MB",
    "MAX_PIXELS",
    "UID_ROOT",
    "ADMIN_PASSWORD",
    "HEADER_TIMEOUT_S",
    "MAX_CONNECTIONS",
    "MAX_CONVERSIONS",
    "CONVERT_MEMORY_MB",
    "MAX_CONNECTIONS_PER_CLIENT",
    "ALLOWED_HOSTS",
    "SESSION_IDLE_MIN",
    "DELIVERY_WAIT_S",
    "RETRY_MAX_S",
    "MIN_FREE_MB",
    "WORKLIST_MAX",
    "OUTBOX_STUCK_S",
    "PACS_CHECK_S",
    "CLOCK_SYNC_FILE",
    "LOG_LEVEL",
    "RAUC_CONF",
    "RELEASE_FILE",
    "DBUS_ADDRESS",
    "UPDATE_MAX_MB",
    "BOOT_ID",
];

#[cfg(test)]
mod tests {
    #[test]
    fn restored_values_read_back_as_written_and_never_the_guarded_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::RESTORED_ENV);
        let mut text = String::from("# header\n");
        for (n, v) in [
            ("PHOTO_PACS_RETRY_MAX_S", "120"),
            ("PHOTO_PACS_ALLOWED_HOSTS", "a \"b\" $c `d` \\e"),
            ("PHOTO_PACS_ADMIN_PASSWORD", "planted-password"),
            ("PHOTO_PACS_SETTINGS_PATH", "/elsewhere.ini"),
            ("LD_PRELOAD", "/tmp/x.so"),
        ] {
            text.push_str(&crate::provision::env_assignment(n, v).unwrap());
        }
        std::fs::write(&path, text).unwrap();
        let got = super::restored_vars(&path);
        assert_eq!(
            got,
            vec![
                ("PHOTO_PACS_RETRY_MAX_S".to_string(), "120".to_string()),
                (
                    "PHOTO_PACS_ALLOWED_HOSTS".to_string(),
                    "a \"b\" $c `d` \\e".to_string()
                ),
            ]
        );
        assert!(super::restored_vars(&dir.path().join("none")).is_empty());
    }

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_variables_gives_the_reference_defaults() {
        let c = EnvConfig::from_vars(vars(&[("HOME", "/root")])).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9470");
        assert_eq!(c.backend, Backend::Mock);
        assert_eq!(c.settings_path, PathBuf::from("data/settings.ini"));
        assert_eq!(c.upload_dir, PathBuf::from("data/uploads"));
        assert_eq!(c.dicom_dir, PathBuf::from("data/dicom"));
        assert_eq!(c.max_upload_bytes, 20 * 1024 * 1024);
        assert!(!c.keep_files_on_success);
        assert_eq!(c.delivery_wait.as_secs(), 10);
        assert_eq!(c.retry_max.as_secs(), 300);
        assert_eq!(c.min_free_bytes, 500 * 1024 * 1024);
        assert_eq!(c.defaults, Settings::default());
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("PHOTO_PACS_PACS_PORT", "abc"),
            ("PHOTO_PACS_PACS_BACKEND", "foo"),
            ("PHOTO_PACS_MAX_UPLOAD_MB", "0"),
            ("PHOTO_PACS_KEEP_FILES_ON_SUCCESS", "sometimes"),
            ("PHOTO_PACS_LISTEN", "9470"),
            ("PHOTO_PACS_LOCAL_TRANSFER_SYNTAX", "1.2.840.10008.1.2.4.90"),
            ("PHOTO_PACS_DICOMWEB_BASE_URL", "pacs.local"),
            ("PHOTO_PACS_RETRY_MAX_S", "0"),
            ("PHOTO_PACS_DELIVERY_WAIT_S", "ten"),
            ("PHOTO_PACS_MIN_FREE_MB", "-1"),
        ] {
            let e = EnvConfig::from_vars(vars(&[(var, value)])).unwrap_err();
            assert_eq!(e.var, var);
            assert!(e.to_string().starts_with(var), "{e}");
        }
    }

    #[test]
    fn secret_values_are_not_echoed_in_errors() {
        let e = EnvConfig::from_vars(vars(&[("PHOTO_PACS_DICOMWEB_PASSWORD", "canary\u{1}pw")]))
            .unwrap_err();
        assert!(!e.to_string().contains("canary"), "{e}");
    }

    #[test]
    fn settings_come_from_their_variables_and_unknown_ones_are_listed() {
        let c = EnvConfig::from_vars(vars(&[
            ("PHOTO_PACS_PACS_PORT", "11112"),
            ("PHOTO_PACS_LOCAL_CHARSET", "ISO_IR 100"),
            ("PHOTO_PACS_PACS_PROT", "1"),
            ("PHOTO_PACS_DICOMWEB_TOKEN", ""),
        ]))
        .unwrap();
        assert_eq!(c.defaults.pacs_port, 11112);
        assert_eq!(
            c.defaults.local_charset,
            super::super::settings::Charset::IsoIr100
        );
        assert_eq!(c.unknown_vars, ["PHOTO_PACS_PACS_PROT"]);
    }
}
