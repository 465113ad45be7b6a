//! The box's first-boot file: `NAME=value` lines on the SD card's FAT partition, checked and
//! applied to the data partition, then taken off the card with its secrets scrubbed.
//!
//! The IT person edits the file on any computer, so every line is judged on its own: a bad
//! line is reported (journal, settings page, and a comment in the file left on the card) and
//! skipped, and the rest still applies. Nothing here ever prints a secret's value.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::access::hash_password;
use crate::config::{EnvConfig, Key, PREFIX, SettingsStore, write_atomically_with_mode};
use crate::storage::{self, Opened};

pub mod time;

/// The name of the file a user drops on the boot partition.
pub const BOOT_FILE: &str = "photo-pacs.env";
/// What the file becomes once applied: the same lines, secrets blanked, problems on top.
pub const APPLIED_FILE: &str = "photo-pacs-applied.env";
/// Beside settings.ini: the last file's problems, one per line, for the settings page.
pub const PROBLEMS_FILE: &str = "boot-config-problems.txt";

/// The most this reads from any one file. The boot file is a few kilobytes and so are the
/// files it merges into; a bigger one is a mistake or planted, and is refused unread.
pub const MAX_READ: u64 = 256 * 1024;

// This runs as root and reads files in directories the service user can write to: a name
// there must never lead it into another file (a symlink or a hard link), a FIFO must not
// stall the boot, and a device node must not be opened as a terminal. Files it opens for
// writing are opened the same way, so a planted name is refused instead of written through
// (`storage::open_regular`).

/// Errors name the file and what is wrong with it, never anything read from it: the message
/// goes into a problems file the service user reads and onto the card.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is a symbolic link; it was not followed")]
    Symlink { path: PathBuf },
    #[error("{path} is not a regular file; it was not read")]
    NotRegular { path: PathBuf },
    #[error("{path} has more than one hard link; it was not read")]
    HardLinked { path: PathBuf },
    #[error("{path} is larger than {limit} bytes; it was not read")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path} is not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("{name} holds a character the service's environment file cannot carry")]
    Unquotable { name: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ProvisionError + '_ {
    move |source| ProvisionError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens `path` with [`storage::SAFE_OPEN`] and checks the handle (not the name, which can change
/// under us) is a regular file with one link. `Ok(None)` when there is no such file.
fn open_checked(
    path: &Path,
    options: &mut fs::OpenOptions,
) -> Result<Option<fs::File>, ProvisionError> {
    let path_buf = || path.to_path_buf();
    let (file, meta) = match storage::open_regular(path, options) {
        Ok(opened) => opened,
        Err(Opened::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(Opened::Io(e)) => return Err(io_err(path)(e)),
        Err(Opened::Symlink) => return Err(ProvisionError::Symlink { path: path_buf() }),
        Err(Opened::NotRegular) => return Err(ProvisionError::NotRegular { path: path_buf() }),
    };
    // Without fs.protected_hardlinks, the service user could link a root-only file here.
    if meta.nlink() != 1 {
        return Err(ProvisionError::HardLinked { path: path_buf() });
    }
    Ok(Some(file))
}

/// The bytes of `path`, at most [`MAX_READ`] of them, read as [`open_checked`] allows.
fn read_checked(path: &Path) -> Result<Option<Vec<u8>>, ProvisionError> {
    let Some(file) = open_checked(path, fs::OpenOptions::new().read(true))? else {
        return Ok(None);
    };
    match storage::read_at_most(file, MAX_READ).map_err(io_err(path))? {
        Some(bytes) => Ok(Some(bytes)),
        None => Err(ProvisionError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_READ,
        }),
    }
}

/// [`read_checked`], as UTF-8 text.
fn read_text(path: &Path) -> Result<Option<String>, ProvisionError> {
    read_checked(path)?
        .map(|b| {
            String::from_utf8(b).map_err(|_| ProvisionError::NotText {
                path: path.to_path_buf(),
            })
        })
        .transpose()
}

/// Where each applied value goes on the data partition.
#[derive(Clone, Debug)]
pub struct Targets {
    /// `PHOTO_PACS_*` lines (other than the admin password), read by the service unit.
    pub env_file: PathBuf,
    /// The gateway's settings.ini: the admin password's hash goes here.
    pub settings: PathBuf,
    pub hostname: PathBuf,
    pub wifi: PathBuf,
    pub ssh_keys: PathBuf,
    pub tunnel_token: PathBuf,
}

impl Targets {
    /// The image's layout under the data partition's mount point.
    pub fn under(data: &Path) -> Self {
        Targets {
            env_file: data.join("etc/photo-pacs.env"),
            settings: data.join("photo-pacs/data/settings.ini"),
            hostname: data.join("etc/hostname"),
            wifi: data.join("etc/wpa_supplicant-wlan0.conf"),
            ssh_keys: data.join("ssh/authorized_keys"),
            tunnel_token: data.join("tunnel/token"),
        }
    }

    fn problems(&self) -> PathBuf {
        self.settings.with_file_name(PROBLEMS_FILE)
    }
}

/// One accepted line's effect.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    hostname: Option<String>,
    wifi_ssid: Option<String>,
    wifi_passphrase: Option<String>,
    wifi_country: Option<String>,
    ssh_keys: Vec<String>,
    tunnel_token: Option<String>,
    admin_password: Option<String>,
    /// `PHOTO_PACS_*` name (with prefix) → value, each checked by the gateway's own rules.
    gateway: BTreeMap<String, String>,
}

/// What happened, in words safe for a log.
#[derive(Debug, Default)]
pub struct Outcome {
    pub applied: Vec<String>,
    pub problems: Vec<String>,
}

/// Names of the box's own settings (the gateway's are `PHOTO_PACS_*`).
const BOX_NAMES: &[&str] = &[
    "HOSTNAME",
    "WIFI_SSID",
    "WIFI_PASSPHRASE",
    "WIFI_COUNTRY",
    "SSH_AUTHORIZED_KEY",
    "CLOUDFLARED_TOKEN",
];

/// Whether the value of `name` must never be shown or left on the card.
pub fn is_secret(name: &str) -> bool {
    match name {
        "WIFI_PASSPHRASE" | "CLOUDFLARED_TOKEN" => true,
        _ => match name.strip_prefix(PREFIX) {
            Some("ADMIN_PASSWORD") => true,
            Some(rest) => Key::from_env(rest).is_some_and(Key::is_secret),
            None => false,
        },
    }
}

/// A `NAME=value` line: `export` allowed, one pair of matching quotes around the value
/// removed. `None` for blanks and comments.
fn parse_line(line: &str) -> Option<Result<(String, String), String>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
    let Some((name, value)) = line.split_once('=') else {
        return Some(Err("is not NAME=value".into()));
    };
    let name = name.trim().to_ascii_uppercase();
    // Problems quote the name: it must be a name, not a stretch of arbitrary text.
    let is_name = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !is_name {
        return Some(Err("is not NAME=value".into()));
    }
    let mut value = value.trim();
    for q in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
            value = &value[1..value.len() - 1];
            break;
        }
    }
    Some(Ok((name, value.to_string())))
}

fn check_hostname(v: &str) -> Result<String, String> {
    let v = v.to_ascii_lowercase();
    let ok = (1..=63).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(v)
    } else {
        Err(
            "must be 1 to 63 letters, digits or hyphens, not starting or ending with a hyphen"
                .into(),
        )
    }
}

fn check_passphrase(v: &str) -> Result<(), String> {
    let printable = v.bytes().all(|b| (0x20..0x7f).contains(&b));
    let hex_psk = v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit());
    if hex_psk || (printable && (8..=63).contains(&v.len())) {
        Ok(())
    } else {
        Err("must be 8 to 63 printable ASCII characters (or a 64-digit hex key)".into())
    }
}

fn check_ssh_key(v: &str) -> Result<String, String> {
    const TYPES: &[&str] = &[
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let mut parts = v.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err("must be a public key line such as \"ssh-ed25519 AAAA... you@laptop\"".into());
    };
    if !TYPES.contains(&kind) {
        return Err(format!(
            "has a key type that is not one of {}",
            TYPES.join(", ")
        ));
    }
    // The blob starts with its own type name: catches a key pasted with the wrong label.
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| "the key is not valid base64 (copy the whole .pub line)".to_string())?;
    let named = decoded
        .get(4..4 + kind.len())
        .is_some_and(|n| n == kind.as_bytes());
    if !named {
        return Err("the key data does not match its type (copy the whole .pub line)".into());
    }
    Ok(v.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn check_token(v: &str) -> Result<(), String> {
    let ok = (20..=4096).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(
            "is not a Cloudflare tunnel token (the long value after --token in the dashboard)"
                .into(),
        )
    }
}

/// Judges every line; bad ones become problems and are left out of the plan.
fn plan(text: &str) -> (Plan, Vec<String>) {
    let mut plan = Plan::default();
    let mut problems = Vec::new();
    let mut gateway_vars: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}", n + 1);
        let (name, value) = match parse_line(line) {
            None => continue,
            Some(Err(e)) => {
                problems.push(format!("{at}: {e}"));
                continue;
            }
            Some(Ok(pair)) => pair,
        };
        // A blank value keeps what the box has, as in the service's own env file.
        if value.is_empty() {
            continue;
        }
        let bad = |reason: String| format!("{at}: {name} {reason}");
        let result: Result<(), String> = match name.as_str() {
            "HOSTNAME" => check_hostname(&value).map(|v| plan.hostname = Some(v)),
            "WIFI_SSID" if value.len() > 32 => Err("must be at most 32 bytes".into()),
            "WIFI_SSID" => {
                plan.wifi_ssid = Some(value);
                Ok(())
            }
            "WIFI_PASSPHRASE" => {
                check_passphrase(&value).map(|()| plan.wifi_passphrase = Some(value))
            }
            "WIFI_COUNTRY" => {
                let v = value.to_ascii_uppercase();
                if v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase()) {
                    plan.wifi_country = Some(v);
                    Ok(())
                } else {
                    Err("must be a two-letter country code such as TW, DE or US".into())
                }
            }
            "SSH_AUTHORIZED_KEY" => check_ssh_key(&value).map(|k| plan.ssh_keys.push(k)),
            "CLOUDFLARED_TOKEN" => check_token(&value).map(|()| plan.tunnel_token = Some(value)),
            _ => match name.strip_prefix(PREFIX) {
                Some(_) if value.chars().any(char::is_control) => Err(
                    "must not contain control characters (the service's environment file cannot carry them)"
                        .into(),
                ),
                Some(rest) => {
                    // The gateway's own rules, with the lines accepted so far, so a value
                    // that only fails next to another (e.g. the two size limits) is caught.
                    let mut trial = gateway_vars.clone();
                    trial.push((name.clone(), value.clone()));
                    match EnvConfig::from_vars(trial.clone()) {
                        Ok(c) if c.unknown_vars.contains(&name) => {
                            Err("is not a Photo PACS setting (check its spelling)".into())
                        }
                        Ok(_) => {
                            gateway_vars = trial;
                            // The password goes to settings.ini as a hash, never to a file.
                            if rest == "ADMIN_PASSWORD" {
                                plan.admin_password = Some(value);
                            } else {
                                plan.gateway.insert(name.clone(), value);
                            }
                            Ok(())
                        }
                        // The gateway quotes a non-secret value it refuses; problems
                        // here name the line and key only.
                        Err(e) => Err(e
                            .reason
                            .strip_prefix(&format!("{value:?} "))
                            .unwrap_or(&e.reason)
                            .to_string()),
                    }
                }
                None => Err(format!(
                    "is not a setting of this file (known: {}, and PHOTO_PACS_* settings)",
                    BOX_NAMES.join(", ")
                )),
            },
        };
        if let Err(reason) = result {
            problems.push(bad(reason));
        }
    }
    if plan.wifi_passphrase.is_some() && plan.wifi_ssid.is_none() {
        problems.push("WIFI_PASSPHRASE is set but WIFI_SSID is not: Wi-Fi left as it was".into());
    }
    if plan.wifi_ssid.is_some() && plan.wifi_country.is_none() {
        problems.push(
            "WIFI_COUNTRY is not set: the Wi-Fi may not use all of your country's channels".into(),
        );
    }
    (plan, problems)
}

/// The wpa_supplicant file for one network. The SSID is written in hex, so no character in
/// it can break the file.
fn wpa_config(ssid: &str, passphrase: Option<&str>, country: Option<&str>) -> String {
    let hex: String = ssid.bytes().map(|b| format!("{b:02x}")).collect();
    let mut s = String::from("# Written by photo-pacs provision from the boot partition's file.\n");
    s.push_str("ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev\n");
    if let Some(c) = country {
        s.push_str(&format!("country={c}\n"));
    }
    s.push_str(&format!("network={{\n\tssid={hex}\n\tscan_ssid=1\n"));
    match passphrase {
        Some(p) if p.len() == 64 => s.push_str(&format!("\tpsk={p}\n")),
        Some(p) => s.push_str(&format!("\tpsk=\"{p}\"\n")),
        None => s.push_str("\tkey_mgmt=NONE\n"),
    }
    s.push_str("}\n");
    s
}

/// `NAME=value` as systemd's EnvironmentFile= reads it back byte for byte. Its parser
/// (`parse_env_file_internal` in systemd's src/basic/env-file.c) drops every backslash and
/// any trailing blanks of an unquoted value, and starts quoting at a leading quote; inside
/// double quotes it takes every character as it is except `"` (the end) and `\`, where
/// `\"`, `\\`, `` \` `` and `\$` stand for the second character. So anything beyond plain
/// letters, digits and a few marks is written in double quotes with those four escaped.
/// `None` for a value with a control character: NUL cannot be carried at all (systemd reads
/// C strings), and a line break, though systemd would keep it inside quotes, would split the
/// line for [`merge_env`]'s next reading of the file.
pub(crate) fn env_assignment(name: &str, value: &str) -> Option<String> {
    if value.chars().any(char::is_control) {
        return None;
    }
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+/:@,%=".contains(&b));
    if plain {
        return Some(format!("{name}={value}\n"));
    }
    let mut line = format!("{name}=\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '`' | '$') {
            line.push('\\');
        }
        line.push(c);
    }
    line.push_str("\"\n");
    Some(line)
}

/// Sets `NAME=value` lines in an env file, keeping its other lines and comments.
pub(crate) fn merge_env(
    old: &str,
    updates: &BTreeMap<String, String>,
) -> Result<String, ProvisionError> {
    let assignment = |n: &str, v: &str| {
        env_assignment(n, v).ok_or_else(|| ProvisionError::Unquotable {
            name: n.to_string(),
        })
    };
    let mut out = String::new();
    let mut done = std::collections::BTreeSet::new();
    for line in old.lines() {
        let name = parse_line(line).and_then(Result::ok).map(|(n, _)| n);
        match name.as_ref().and_then(|n| updates.get_key_value(n)) {
            Some((n, v)) => {
                if done.insert(n.clone()) {
                    out.push_str(&assignment(n, v)?);
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (n, v) in updates {
        if !done.contains(n) {
            out.push_str(&assignment(n, v)?);
        }
    }
    Ok(out)
}

/// Writes `bytes` atomically with `mode`, owned like the directory it lands in (so files for
/// the service's state directory stay the service user's).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ProvisionError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    write_atomically_with_mode(path, bytes, mode).map_err(io_err(path))?;
    follow_owner(path)
}

/// Gives `path` its directory's owner. lchown, not chown: this runs as root, and in the
/// service's directory the name could be swapped for a symlink after the rename.
pub(crate) fn follow_owner(path: &Path) -> Result<(), ProvisionError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let meta = fs::metadata(dir).map_err(io_err(dir))?;
    let own = fs::symlink_metadata(path).map_err(io_err(path))?;
    if (own.uid(), own.gid()) != (meta.uid(), meta.gid()) {
        std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
            .map_err(io_err(path))?;
    }
    Ok(())
}

/// Applies the plan; each target that fails is a problem, the others still apply.
async fn apply(plan: &Plan, to: &Targets, outcome: &mut Outcome) {
    let mut step = |what: &str, r: Result<(), String>| match r {
        Ok(()) => outcome.applied.push(what.to_string()),
        Err(e) => outcome.problems.push(format!("{what} not applied: {e}")),
    };
    let written =
        |path: &Path, bytes: &[u8], mode| write_file(path, bytes, mode).map_err(|e| e.to_string());
    if let Some(h) = &plan.hostname {
        step(
            "hostname",
            written(&to.hostname, format!("{h}\n").as_bytes(), 0o644),
        );
    }
    if let Some(ssid) = &plan.wifi_ssid {
        let conf = wpa_config(
            ssid,
            plan.wifi_passphrase.as_deref(),
            plan.wifi_country.as_deref(),
        );
        step("Wi-Fi network", written(&to.wifi, conf.as_bytes(), 0o600));
    }
    if !plan.ssh_keys.is_empty() {
        let keys = plan.ssh_keys.join("\n") + "\n";
        step(
            "SSH public key (SSH enabled)",
            written(&to.ssh_keys, keys.as_bytes(), 0o600),
        );
    }
    if let Some(t) = &plan.tunnel_token {
        step(
            "Cloudflare tunnel token",
            written(&to.tunnel_token, t.as_bytes(), 0o600),
        );
    }
    if !plan.gateway.is_empty() {
        let r = read_text(&to.env_file)
            .and_then(|old| merge_env(&old.unwrap_or_default(), &plan.gateway))
            .and_then(|merged| write_file(&to.env_file, merged.as_bytes(), 0o600))
            .map_err(|e| e.to_string());
        let names: Vec<&str> = plan.gateway.keys().map(String::as_str).collect();
        step(&names.join(", "), r);
    }
    if let Some(p) = &plan.admin_password {
        step("admin password", admin_password(p, &to.settings).await);
    }
}

async fn admin_password(password: &str, settings: &Path) -> Result<(), String> {
    let hash = hash_password(password).map_err(|e| e.to_string())?;
    if let Some(dir) = settings.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // The store reads the file by name, following links: see first that it is the service's
    // own small regular file. The store then reads it again; on the image nothing of the
    // service user runs yet to swap it in between (photo-pacs.service starts after this).
    read_checked(settings).map_err(|e| e.to_string())?;
    let store = SettingsStore::load(settings.to_path_buf(), Default::default());
    if store.problem().is_some() {
        // The store's reason quotes the file; this message goes to the card.
        return Err(format!(
            "{} is not a valid settings file (it is moved aside as {}.corrupt-<time> when it can be; the reason is not repeated here)",
            settings.display(),
            settings
                .file_name()
                .map_or_else(Default::default, |n| n.to_string_lossy()),
        ));
    }
    store
        .set_admin_hash(hash)
        .await
        .map_err(|e| e.to_string())?;
    follow_owner(&crate::config::admin_hash_path(settings)).map_err(|e| e.to_string())?;
    follow_owner(settings).map_err(|e| e.to_string())
}

/// The file as it is left on the card: secrets blanked, what was done and what was wrong on top.
fn applied_text(original: &str, outcome: &Outcome, when: &str) -> String {
    let mut s = format!(
        "# Applied by Photo PACS at {when}. To change something, edit this file and rename it\n# back to {BOOT_FILE}. Secrets were removed from the card once applied.\n"
    );
    for a in &outcome.applied {
        s.push_str(&format!("# applied: {a}\n"));
    }
    for p in &outcome.problems {
        s.push_str(&format!("# PROBLEM: {p}\n"));
    }
    s.push('\n');
    for line in original.lines() {
        match parse_line(line) {
            Some(Ok((name, value))) if is_secret(&name) && !value.is_empty() => {
                s.push_str(&format!("{name}=\n"));
            }
            _ => {
                s.push_str(line);
                s.push('\n');
            }
        }
    }
    s
}

/// Overwrites a file's bytes in place, so the secret does not stay in the clusters a FAT
/// file system would otherwise just mark free.
fn scrub(path: &Path) -> Result<(), ProvisionError> {
    let mut f = open_checked(path, fs::OpenOptions::new().write(true))?
        .ok_or_else(|| io_err(path)(io::ErrorKind::NotFound.into()))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    let zeros = vec![0u8; 64 * 1024];
    let mut left = len;
    let written = (|| {
        f.seek(io::SeekFrom::Start(0))?;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    })();
    written.map_err(io_err(path))
}

/// Writes a file on the card in place, refusing a planted name as [`open_checked`] does.
/// Truncated only once the handle is checked: a hard link to another file must not be
/// emptied before it is refused.
fn write_on_card(path: &Path, bytes: &[u8]) -> Result<(), ProvisionError> {
    let mut f = open_checked(
        path,
        fs::OpenOptions::new().write(true).create(true).mode(0o600),
    )?
    .ok_or_else(|| io_err(path)(io::ErrorKind::NotFound.into()))?;
    let written = (|| {
        f.set_len(0)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    written.map_err(io_err(path))
}

/// Fills the partition's free space with zeros (at most `limit` bytes) and deletes the
/// filler: earlier copies of the file (an editor's saves on the user's computer) may sit in
/// free clusters.
fn wipe_free_space(dir: &Path, limit: u64) -> io::Result<u64> {
    let filler = dir.join(".photo-pacs-wipe");
    // Left by a power cut during an earlier wipe; then created afresh (O_EXCL), so nothing
    // planted at the name is written through.
    match fs::remove_file(&filler) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(storage::SAFE_OPEN)
        .mode(0o600)
        .open(&filler)?;
    let zeros = vec![0u8; 1024 * 1024];
    let mut written = 0u64;
    let result = loop {
        if written >= limit {
            break Ok(());
        }
        match f.write(&zeros) {
            Ok(0) => break Ok(()),
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == io::ErrorKind::StorageFull => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let synced = f.sync_all();
    drop(f);
    let removed = fs::remove_file(&filler);
    result.and(synced).and(removed).map(|()| written)
}

/// Applies `boot_dir/photo-pacs.env` (if present and not all comments) to `to`, then leaves
/// `photo-pacs-applied.env` in its place. Problems are also written beside settings.ini.
/// `wipe_limit`: how many bytes of the boot partition's free space to zero when the file held
/// a secret (0: none; the boot partition is small, a test directory is not).
pub async fn provision(
    boot_dir: &Path,
    to: &Targets,
    now: &str,
    wipe_limit: u64,
) -> Result<Outcome, ProvisionError> {
    let src = boot_dir.join(BOOT_FILE);
    let Some(bytes) = read_checked(&src)? else {
        return Ok(Outcome::default());
    };
    // Windows editors add a byte-order mark and CRLF; both are fine.
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_start_matches('\u{feff}').replace("\r\n", "\n");
    let (plan, problems) = plan(&text);
    let mut outcome = Outcome {
        applied: Vec::new(),
        problems,
    };
    if plan == Plan::default() && outcome.problems.is_empty() {
        // The shipped template, untouched: nothing to do, leave it for the user.
        return Ok(outcome);
    }
    apply(&plan, to, &mut outcome).await;

    let report: String = outcome.problems.iter().map(|p| format!("{p}\n")).collect();
    let problems_path = to.problems();
    if report.is_empty() {
        match fs::remove_file(&problems_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&problems_path)(e)),
        }
    } else {
        // Owned by the service (its directory's owner: the gateway shows these on the
        // settings page) and by no one else: a problem names files and keys of the box.
        write_file(&problems_path, report.as_bytes(), 0o600)?;
    }

    let had_secret = text
        .lines()
        .filter_map(parse_line)
        .filter_map(Result::ok)
        .any(|(n, v)| is_secret(&n) && !v.is_empty());
    let applied = boot_dir.join(APPLIED_FILE);
    let leftover = applied_text(&text, &outcome, now);
    write_on_card(&applied, leftover.as_bytes())?;
    scrub(&src)?;
    fs::remove_file(&src).map_err(io_err(&src))?;
    if had_secret && wipe_limit > 0 {
        wipe_free_space(boot_dir, wipe_limit).map_err(io_err(boot_dir))?;
    }
    if let Ok(d) = fs::File::open(boot_dir) {
        // Directory fsync is not supported on every file system (vfat ignores it).
        let _ = d.sync_all();
    }
    Ok(outcome)
}

/// Problems the last first-boot file left, for the settings page's warnings.
pub fn reported_problems(settings_path: &Path) -> Vec<String> {
    let text = match read_text(&settings_path.with_file_name(PROBLEMS_FILE)) {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => return vec![format!("first-boot problems not shown: {e}")],
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("first-boot file ({APPLIED_FILE} on the SD card): {l}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIa8MBEoiYwWEDrzfJNhEkIReFV3x1u6WcPkcrRdGjH+ admin@laptop";

    #[test]
    fn lines_are_judged_one_by_one() {
        let text = "\u{feff}# comment\n\nHOSTNAME=Ward-3\nexport WIFI_SSID=\"Clinic \\\"Guest\\\"\"\nWIFI_PASSPHRASE='s3cret pass'\nWIFI_COUNTRY=tw\nPHOTO_PACS_PACS_CALLED_AET=ORTHANC\nPHOTO_PACS_PACS_PORT=99999\nPHOTO_PACS_NOPE=1\nPHOTO_PACS_ADMIN_PASSWORD=short\nSSH_AUTHORIZED_KEY=ssh-ed25519 AAAA\nSSH_AUTHORIZED_KEY=".to_string() + KEY + "\ngarbage\nFOO=bar\nPHOTO_PACS_UPLOAD_PIN=\n";
        let text = text.trim_start_matches('\u{feff}');
        let (plan, problems) = plan(text);
        assert_eq!(plan.hostname.as_deref(), Some("ward-3"));
        assert_eq!(plan.wifi_ssid.as_deref(), Some("Clinic \\\"Guest\\\""));
        assert_eq!(plan.wifi_passphrase.as_deref(), Some("s3cret pass"));
        assert_eq!(plan.wifi_country.as_deref(), Some("TW"));
        assert_eq!(plan.ssh_keys.len(), 1);
        assert_eq!(
            plan.gateway
                .get("PHOTO_PACS_PACS_CALLED_AET")
                .map(String::as_str),
            Some("ORTHANC")
        );
        assert_eq!(plan.gateway.len(), 1, "{:?}", plan.gateway);
        assert!(plan.admin_password.is_none());
        let all = problems.join("\n");
        for expected in [
            "line 8: PHOTO_PACS_PACS_PORT",
            "line 9: PHOTO_PACS_NOPE is not a Photo PACS setting",
            "line 10: PHOTO_PACS_ADMIN_PASSWORD must be 8 to 256",
            "line 11: SSH_AUTHORIZED_KEY",
            "line 13: is not NAME=value",
            "line 14: FOO is not a setting",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in\n{all}");
        }
        assert_eq!(problems.len(), 6, "{all}");
        assert!(!all.contains("short"), "a secret's value is never echoed");
    }

    #[test]
    fn values_checked_against_each_other_use_the_gateways_rules() {
        let (plan, problems) = plan("PHOTO_PACS_MAX_UPLOAD_MB=50\nPHOTO_PACS_MAX_REQUEST_MB=10\n");
        assert_eq!(plan.gateway.len(), 1);
        assert!(problems[0].contains("MAX_REQUEST_MB"), "{problems:?}");
    }

    #[test]
    fn wifi_file_quotes_nothing_it_cannot() {
        let c = wpa_config("Café \"A\"", Some("pass word\"x"), Some("TW"));
        assert!(c.contains("ssid=436166c3a9202241"), "{c}");
        assert!(c.contains("psk=\"pass word\"x\""));
        assert!(c.contains("country=TW"));
        let open = wpa_config("Open", None, None);
        assert!(open.contains("key_mgmt=NONE") && !open.contains("country"));
    }

    #[test]
    fn env_merge_keeps_other_lines() {
        let mut u = BTreeMap::new();
        u.insert("PHOTO_PACS_PACS_CALLED_AET".to_string(), "NEW".to_string());
        u.insert("PHOTO_PACS_PACS_HOST".to_string(), "10.0.0.5".to_string());
        let merged = merge_env(
            "# keep me\nPHOTO_PACS_PACS_CALLED_AET=OLD\nPHOTO_PACS_LOG_LEVEL=debug\n",
            &u,
        )
        .unwrap();
        assert_eq!(
            merged,
            "# keep me\nPHOTO_PACS_PACS_CALLED_AET=NEW\nPHOTO_PACS_LOG_LEVEL=debug\nPHOTO_PACS_PACS_HOST=10.0.0.5\n"
        );
    }

    #[test]
    fn secrets_are_known() {
        for s in [
            "WIFI_PASSPHRASE",
            "CLOUDFLARED_TOKEN",
            "PHOTO_PACS_ADMIN_PASSWORD",
            "PHOTO_PACS_DICOMWEB_PASSWORD",
            "PHOTO_PACS_UPLOAD_PIN",
        ] {
            assert!(is_secret(s), "{s}");
        }
        assert!(!is_secret("PHOTO_PACS_PACS_CALLED_AET"));
        assert!(!is_secret("WIFI_SSID"));
    }

    #[tokio::test]
    async fn a_file_is_applied_once_and_leaves_no_secret_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let boot = tmp.path().join("boot");
        let data = tmp.path().join("data");
        fs::create_dir_all(&boot).unwrap();
        let to = Targets::under(&data);
        let secret = "Adm1n-only-9f2c";
        let text = format!(
            "HOSTNAME=ward3\nWIFI_SSID=Clinic\nWIFI_PASSPHRASE=wifi-pass-123\nWIFI_COUNTRY=TW\nPHOTO_PACS_PACS_CALLED_AET=ORTHANC\nPHOTO_PACS_ADMIN_PASSWORD={secret}\nCLOUDFLARED_TOKEN=eyJhIjoiYWJjZGVmZ2hpamtsbW5vcCJ9\nSSH_AUTHORIZED_KEY={KEY}\nPHOTO_PACS_PACS_PORT=0\n"
        );
        fs::write(boot.join(BOOT_FILE), &text).unwrap();
        let out = provision(&boot, &to, "2026-11-28T10:00:00Z", 4 << 20)
            .await
            .unwrap();
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);

        assert!(!boot.join(BOOT_FILE).exists());
        let left = fs::read_to_string(boot.join(APPLIED_FILE)).unwrap();
        for s in [secret, "wifi-pass-123", "eyJhIjoiYWJj"] {
            assert!(!left.contains(s), "secret left on the card:\n{left}");
        }
        assert!(left.contains("PHOTO_PACS_ADMIN_PASSWORD=\n"));
        assert!(left.contains("HOSTNAME=ward3"));
        assert!(left.contains("# PROBLEM: line 9: PHOTO_PACS_PACS_PORT"));

        assert_eq!(fs::read_to_string(&to.hostname).unwrap(), "ward3\n");
        let env = fs::read_to_string(&to.env_file).unwrap();
        assert_eq!(env, "PHOTO_PACS_PACS_CALLED_AET=ORTHANC\n");
        assert!(!env.contains(secret));
        let ini = fs::read_to_string(&to.settings).unwrap();
        assert!(ini.contains("$argon2id$") && !ini.contains(secret));
        let store = SettingsStore::load(to.settings.clone(), Default::default());
        let hash = store.admin_hash().unwrap();
        assert!(crate::access::verify_password(secret, &hash).unwrap());
        assert!(
            fs::read_to_string(&to.wifi)
                .unwrap()
                .contains("psk=\"wifi-pass-123\"")
        );
        assert_eq!(
            fs::read_to_string(&to.tunnel_token).unwrap(),
            "eyJhIjoiYWJjZGVmZ2hpamtsbW5vcCJ9"
        );
        use std::os::unix::fs::PermissionsExt;
        for p in [&to.wifi, &to.tunnel_token, &to.env_file, &to.ssh_keys] {
            let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let shown = reported_problems(&to.settings);
        assert_eq!(shown.len(), 1);
        assert!(shown[0].contains("PHOTO_PACS_PACS_PORT"));
        assert!(!boot.join(".photo-pacs-wipe").exists());

        // Nothing left to apply: a second boot changes nothing.
        let again = provision(&boot, &to, "later", 0).await.unwrap();
        assert!(again.applied.is_empty() && again.problems.is_empty());
        assert_eq!(reported_problems(&to.settings).len(), 1);
    }

    #[tokio::test]
    async fn the_untouched_template_stays_on_the_card() {
        let tmp = tempfile::tempdir().unwrap();
        let to = Targets::under(&tmp.path().join("data"));
        fs::write(
            tmp.path().join(BOOT_FILE),
            "# HOSTNAME=photo-pacs\n#WIFI_SSID=\n",
        )
        .unwrap();
        let out = provision(tmp.path(), &to, "now", 0).await.unwrap();
        assert!(out.applied.is_empty() && out.problems.is_empty());
        assert!(tmp.path().join(BOOT_FILE).exists());
        assert!(!tmp.path().join(APPLIED_FILE).exists());
    }

    /// Every example line of the template the image ships is something this code accepts.
    #[test]
    fn the_shipped_template_names_only_known_settings() {
        let template = include_str!("../image-build/photo-pacs.env.template");
        let (untouched, problems) = plan(template);
        assert_eq!(untouched, Plan::default());
        assert!(problems.is_empty());
        let filled: String = template
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| {
                l.split_once('=').is_some_and(|(n, _)| {
                    !n.is_empty() && n.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                })
            })
            .map(|l| match l.split_once('=') {
                Some((n, "")) if n.contains("PASS") => format!("{n}=long-enough-secret\n"),
                Some((n, "")) if n.contains("TOKEN") => {
                    format!("{n}=eyJhIjoiYWJjZGVmZ2hpamtsbW5vcCJ9\n")
                }
                Some((n, "")) => format!("{n}=someone\n"),
                Some((n, "ssh-ed25519 AAAA... you@laptop")) => format!("{n}={KEY}\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        let (plan, problems) = plan(&filled);
        assert!(problems.is_empty(), "{problems:?}\n{filled}");
        assert!(plan.hostname.is_some() && plan.wifi_ssid.is_some() && plan.tunnel_token.is_some());
        assert!(plan.admin_password.is_some() && !plan.ssh_keys.is_empty());
        assert!(plan.gateway.len() >= 9, "{:?}", plan.gateway);
    }

    /// systemd's reading of an EnvironmentFile=: a port of `parse_env_file_internal` in
    /// systemd's src/basic/env-file.c (state for state; the comment-escape rule as since
    /// v254, which only matters for a comment ending in a backslash), with a later line for
    /// a name replacing an earlier one, as `load_env_file_push` does.
    fn systemd_env_file(text: &str) -> BTreeMap<String, String> {
        #[derive(Clone, Copy, PartialEq)]
        enum S {
            PreKey,
            Key,
            PreValue,
            Value,
            ValueEscape,
            SingleQuote,
            DoubleQuote,
            DoubleQuoteEscape,
            Comment,
            CommentEscape,
        }
        const WHITESPACE: &[u8] = b" \t\n\r";
        const NEWLINE: &[u8] = b"\n\r";
        const COMMENTS: &[u8] = b"#;";
        const SHELL_NEED_ESCAPE: &[u8] = b"\"\\`$";
        let mut out = BTreeMap::new();
        let mut key = Vec::new();
        let mut value = Vec::new();
        let mut last_key_ws: Option<usize> = None;
        let mut last_value_ws: Option<usize> = None;
        let mut state = S::PreKey;
        let mut push = |key: &mut Vec<u8>, value: &mut Vec<u8>, key_ws: Option<usize>| {
            if let Some(n) = key_ws {
                key.truncate(n);
            }
            out.insert(
                String::from_utf8(std::mem::take(key)).unwrap(),
                String::from_utf8(std::mem::take(value)).unwrap(),
            );
        };
        for &c in text.as_bytes() {
            match state {
                S::PreKey => {
                    if COMMENTS.contains(&c) {
                        state = S::Comment;
                    } else if !WHITESPACE.contains(&c) {
                        state = S::Key;
                        last_key_ws = None;
                        key.push(c);
                    }
                }
                S::Key => {
                    if NEWLINE.contains(&c) {
                        state = S::PreKey;
                        key.clear();
                    } else if c == b'=' {
                        state = S::PreValue;
                        last_value_ws = None;
                    } else {
                        if !WHITESPACE.contains(&c) {
                            last_key_ws = None;
                        } else if last_key_ws.is_none() {
                            last_key_ws = Some(key.len());
                        }
                        key.push(c);
                    }
                }
                S::PreValue => {
                    if NEWLINE.contains(&c) {
                        state = S::PreKey;
                        push(&mut key, &mut value, last_key_ws);
                    } else if c == b'\'' {
                        state = S::SingleQuote;
                    } else if c == b'"' {
                        state = S::DoubleQuote;
                    } else if c == b'\\' {
                        state = S::ValueEscape;
                    } else if !WHITESPACE.contains(&c) {
                        state = S::Value;
                        value.push(c);
                    }
                }
                S::Value => {
                    if NEWLINE.contains(&c) {
                        state = S::PreKey;
                        if let Some(n) = last_value_ws {
                            value.truncate(n);
                        }
                        push(&mut key, &mut value, last_key_ws);
                    } else if c == b'\\' {
                        state = S::ValueEscape;
                        last_value_ws = None;
                    } else {
                        if !WHITESPACE.contains(&c) {
                            last_value_ws = None;
                        } else if last_value_ws.is_none() {
                            last_value_ws = Some(value.len());
                        }
                        value.push(c);
                    }
                }
                S::ValueEscape => {
                    state = S::Value;
                    if !NEWLINE.contains(&c) {
                        value.push(c);
                    }
                }
                S::SingleQuote => {
                    if c == b'\'' {
                        state = S::PreValue;
                    } else {
                        value.push(c);
                    }
                }
                S::DoubleQuote => {
                    if c == b'"' {
                        state = S::PreValue;
                    } else if c == b'\\' {
                        state = S::DoubleQuoteEscape;
                    } else {
                        value.push(c);
                    }
                }
                S::DoubleQuoteEscape => {
                    state = S::DoubleQuote;
                    if SHELL_NEED_ESCAPE.contains(&c) {
                        value.push(c);
                    } else if c != b'\n' {
                        value.extend_from_slice(&[b'\\', c]);
                    }
                }
                S::Comment => {
                    if c == b'\\' {
                        state = S::CommentEscape;
                    } else if NEWLINE.contains(&c) {
                        state = S::PreKey;
                    }
                }
                S::CommentEscape => {
                    state = if NEWLINE.contains(&c) {
                        S::PreKey
                    } else {
                        S::Comment
                    };
                }
            }
        }
        match state {
            S::PreValue
            | S::ValueEscape
            | S::SingleQuote
            | S::DoubleQuote
            | S::DoubleQuoteEscape => push(&mut key, &mut value, last_key_ws),
            S::Value => {
                if let Some(n) = last_value_ws {
                    value.truncate(n);
                }
                push(&mut key, &mut value, last_key_ws);
            }
            _ => {}
        }
        out
    }

    /// Values that an unquoted or naively quoted line would change.
    const TRICKY: &[&str] = &[
        "ab\\cd",
        "\"quoted\"",
        "'single'",
        "a$b",
        "a`b",
        "  leading and trailing  ",
        "# not a comment ; nor this",
        "a#b;c",
        "Grüße 測試 ✓",
        "trailing\\",
        "\\\\",
        "\\\"",
        "x=y",
        "'",
        "\"",
        "plain-10.0.0.5",
    ];

    fn tricky_updates() -> BTreeMap<String, String> {
        TRICKY
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("PHOTO_PACS_T{i}"), v.to_string()))
            .collect()
    }

    #[test]
    fn env_file_values_come_back_byte_for_byte() {
        let updates = tricky_updates();
        let text = merge_env("# kept\nOTHER=1\n", &updates).unwrap();
        let read = systemd_env_file(&text);
        for (name, value) in &updates {
            assert_eq!(read.get(name), Some(value), "{name} in\n{text}");
        }
        assert_eq!(read.get("OTHER").map(String::as_str), Some("1"));
        // The finding: unquoted, systemd drops the backslash.
        assert_eq!(systemd_env_file("P=ab\\cd\n")["P"], "abcd");
        // The port itself, on systemd's documented cases.
        let sample = systemd_env_file(
            "A = 'x y' \n B=\"a\\qb\\$c\"\n; c\nC=trail   \nD=x\\\ny\nE=\"one\"'two'",
        );
        assert_eq!(sample["A"], "x y");
        assert_eq!(sample["B"], "a\\qb$c");
        assert_eq!(sample["C"], "trail");
        assert_eq!(sample["D"], "xy");
        assert_eq!(sample["E"], "onetwo");
    }

    #[test]
    fn control_characters_are_refused_by_name_only() {
        for bad in ["nul\0here", "cr\rhere", "tab\there", "esc\u{1b}here"] {
            assert!(env_assignment("PHOTO_PACS_X", bad).is_none(), "{bad:?}");
            let mut u = BTreeMap::new();
            u.insert("PHOTO_PACS_X".to_string(), bad.to_string());
            let e = merge_env("", &u).unwrap_err().to_string();
            assert!(e.contains("PHOTO_PACS_X") && !e.contains("here"), "{e}");
        }
        let (plan, problems) = plan("PHOTO_PACS_PACS_HOST=canary\u{1}host\n");
        assert!(plan.gateway.is_empty());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("line 1: PHOTO_PACS_PACS_HOST must not contain control"));
        assert!(!problems[0].contains("canary"), "{problems:?}");
    }

    #[test]
    fn problems_name_the_line_and_key_but_not_the_value() {
        let text = format!(
            "PHOTO_PACS_PACS_PORT=canary-port\nSSH_AUTHORIZED_KEY=canary-type AAAA\nroot:canary$6$x:1=2\n{}=x\n",
            "A".repeat(65)
        );
        let (_, problems) = plan(&text);
        let all = problems.join("\n");
        assert_eq!(problems.len(), 4, "{all}");
        assert!(all.contains("line 1: PHOTO_PACS_PACS_PORT"), "{all}");
        assert!(all.contains("line 2: SSH_AUTHORIZED_KEY"), "{all}");
        assert!(all.contains("line 3: is not NAME=value"), "{all}");
        assert!(all.contains("line 4: is not NAME=value"), "{all}");
        assert!(
            !all.contains("canary") && !all.contains("AAAAAAAA"),
            "{all}"
        );
    }

    /// systemd itself, not a port: its environment.d generator reads files with the same
    /// parser as EnvironmentFile= (`merge_env_file` → `parse_env_file_internal`) and runs
    /// without a service manager. It prints each variable in the same double-quoted form,
    /// which [`systemd_env_file`] reads. The generator also expands `$NAME`, which
    /// EnvironmentFile= does not: the variable after each `$` in the values is given the
    /// text `$NAME` itself, so the expansion hands back exactly what the parser read.
    #[test]
    #[cfg_attr(
        missing_peer = "systemd",
        ignore = "systemd is not installed (apt-get install systemd)"
    )]
    fn systemds_own_parser_reads_the_values_back() {
        const GENERATOR: &str = "user-environment-generators/30-systemd-environment-d-generator";
        let Some(generator) = ["/usr/lib/systemd", "/lib/systemd"]
            .iter()
            .map(|d| Path::new(d).join(GENERATOR))
            .find(|p| p.is_file())
        else {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "systemd's {GENERATOR} is missing under CI");
            eprintln!("SKIPPED: systemd's {GENERATOR} not found; this test did not run");
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("environment.d");
        fs::create_dir_all(&dir).unwrap();
        let updates = tricky_updates();
        let text = merge_env("", &updates).unwrap();
        fs::write(dir.join("50-photo-pacs.conf"), &text).unwrap();
        let out = std::process::Command::new(&generator)
            .env_clear()
            .env("XDG_CONFIG_HOME", tmp.path())
            .env("HOME", tmp.path())
            .env("b", "$b")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8(out.stdout).unwrap();
        let read = systemd_env_file(&printed);
        for (name, value) in &updates {
            assert_eq!(
                read.get(name),
                Some(value),
                "{name}: wrote\n{text}\nsystemd printed\n{printed}"
            );
        }
    }

    /// A data partition with the service's directory, a boot directory, and a first-boot
    /// file that touches settings.ini (admin password) and the env file.
    fn planted_setup() -> (tempfile::TempDir, PathBuf, Targets) {
        let tmp = tempfile::tempdir().unwrap();
        let boot = tmp.path().join("boot");
        fs::create_dir_all(&boot).unwrap();
        let to = Targets::under(&tmp.path().join("data"));
        for p in [&to.settings, &to.env_file] {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
        }
        fs::write(
            boot.join(BOOT_FILE),
            "PHOTO_PACS_ADMIN_PASSWORD=Adm1n-only-9f2c\nPHOTO_PACS_PACS_CALLED_AET=ORTHANC\nPHOTO_PACS_PACS_PORT=0\n",
        )
        .unwrap();
        (tmp, boot, to)
    }

    /// What the box and the card say afterwards, to search for leaks.
    fn everything_written(boot: &Path, to: &Targets) -> String {
        let problems = fs::read_to_string(to.problems()).unwrap();
        let applied = fs::read_to_string(boot.join(APPLIED_FILE)).unwrap();
        format!("{problems}\n{applied}")
    }

    #[tokio::test]
    async fn a_symlink_planted_for_settings_or_env_file_is_not_followed() {
        let (tmp, boot, to) = planted_setup();
        let target = tmp.path().join("shadow");
        let canary = "root:$6$canary-hash:19000:0:99999:7:::\n[pacs]\ncanary_key = canary\n";
        fs::write(&target, canary).unwrap();
        std::os::unix::fs::symlink(&target, &to.settings).unwrap();
        std::os::unix::fs::symlink(&target, &to.env_file).unwrap();

        let out = provision(&boot, &to, "now", 0).await.unwrap();
        let all = out.problems.join("\n");
        assert!(all.contains("admin password not applied"), "{all}");
        assert!(all.contains("settings.ini is a symbolic link"), "{all}");
        assert!(all.contains("photo-pacs.env is a symbolic link"), "{all}");
        let written = everything_written(&boot, &to);
        assert!(!written.contains("canary"), "{written}");
        assert_eq!(fs::read_to_string(&target).unwrap(), canary);
        for p in [&to.settings, &to.env_file] {
            assert!(
                fs::symlink_metadata(p).unwrap().is_symlink(),
                "{}",
                p.display()
            );
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(to.problems()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[tokio::test]
    async fn a_hard_link_or_directory_in_place_of_a_file_is_refused() {
        let (tmp, boot, to) = planted_setup();
        let target = tmp.path().join("root-only");
        fs::write(&target, "[pacs]\ncanary = 1\n").unwrap();
        fs::hard_link(&target, &to.settings).unwrap();
        fs::create_dir(&to.env_file).unwrap();
        let out = provision(&boot, &to, "now", 0).await.unwrap();
        let all = out.problems.join("\n");
        assert!(
            all.contains("settings.ini has more than one hard link"),
            "{all}"
        );
        assert!(
            all.contains("photo-pacs.env is not a regular file"),
            "{all}"
        );
        assert!(!everything_written(&boot, &to).contains("canary"));
        assert_eq!(fs::read_to_string(&target).unwrap(), "[pacs]\ncanary = 1\n");
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("settings.ini");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send((read_checked(&path).map(|_| ()), write_on_card(&path, b"x")));
        });
        let (read, written) = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("opening a FIFO must not block");
        assert!(
            matches!(read, Err(ProvisionError::NotRegular { .. })),
            "{read:?}"
        );
        // For writing, with no reader, the non-blocking open itself fails (ENXIO).
        assert!(written.is_err(), "{written:?}");
    }

    #[tokio::test]
    async fn a_fifo_in_place_of_settings_stops_nothing_else() {
        let (_tmp, boot, to) = planted_setup();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &to.settings,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        let out = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            provision(&boot, &to, "now", 0),
        )
        .await
        .expect("no hang")
        .unwrap();
        let all = out.problems.join("\n");
        assert!(all.contains("settings.ini is not a regular file"), "{all}");
        assert_eq!(
            systemd_env_file(&fs::read_to_string(&to.env_file).unwrap())["PHOTO_PACS_PACS_CALLED_AET"],
            "ORTHANC"
        );
    }

    #[tokio::test]
    async fn a_huge_file_is_refused_unread() {
        let (_tmp, boot, to) = planted_setup();
        // Sparse: a gigabyte that costs no disk, and would cost a Pi its memory if read.
        fs::File::create(&to.settings)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let out = provision(&boot, &to, "now", 0).await.unwrap();
        assert!(
            out.problems
                .iter()
                .any(|p| p.contains("settings.ini is larger than")),
            "{:?}",
            out.problems
        );

        let big = boot.join(BOOT_FILE);
        fs::write(&big, vec![b'#'; MAX_READ as usize + 1]).unwrap();
        let e = provision(&boot, &to, "now", 0).await.unwrap_err();
        assert!(matches!(e, ProvisionError::TooLarge { .. }), "{e}");
        assert!(big.exists(), "a refused file is left as it was");
    }

    #[tokio::test]
    async fn a_symlink_at_the_boot_or_applied_file_is_not_followed() {
        let (tmp, boot, to) = planted_setup();
        let target = tmp.path().join("elsewhere");
        fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, boot.join(APPLIED_FILE)).unwrap();
        let e = provision(&boot, &to, "now", 0).await.unwrap_err();
        assert!(matches!(e, ProvisionError::Symlink { .. }), "{e}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");

        let (tmp, boot, to) = planted_setup();
        let target = tmp.path().join("elsewhere");
        fs::write(&target, "HOSTNAME=elsewhere\n").unwrap();
        fs::remove_file(boot.join(BOOT_FILE)).unwrap();
        std::os::unix::fs::symlink(&target, boot.join(BOOT_FILE)).unwrap();
        let e = provision(&boot, &to, "now", 0).await.unwrap_err();
        assert!(matches!(e, ProvisionError::Symlink { .. }), "{e}");
        assert!(!to.hostname.exists());
    }

    #[tokio::test]
    async fn a_password_with_a_backslash_reaches_the_service_intact() {
        let tmp = tempfile::tempdir().unwrap();
        let to = Targets::under(&tmp.path().join("data"));
        fs::write(
            tmp.path().join(BOOT_FILE),
            "PHOTO_PACS_DICOMWEB_PASSWORD=\" ab\\cd$x\"\n",
        )
        .unwrap();
        let out = provision(tmp.path(), &to, "now", 0).await.unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let env = systemd_env_file(&fs::read_to_string(&to.env_file).unwrap());
        assert_eq!(env["PHOTO_PACS_DICOMWEB_PASSWORD"], " ab\\cd$x");
    }

    #[test]
    fn ssh_keys_must_be_whole() {
        assert!(check_ssh_key(KEY).is_ok());
        assert!(check_ssh_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGJk").is_err());
        assert!(check_ssh_key("ssh-ed25519").is_err());
        assert!(check_ssh_key("ssh-dss AAAA").is_err());
    }
}
