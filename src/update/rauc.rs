//! RAUC as the gateway talks to it: `rauc info` for a bundle's facts, and the service's
//! D-Bus interface through `busctl --json=short` (no D-Bus library in the binary).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

const SERVICE: &str = "de.pengutronix.rauc";
const INTERFACE: &str = "de.pengutronix.rauc.Installer";
/// `rauc info` reads the signature and manifest only (the payload is checked apart).
const INFO_TIMEOUT: Duration = Duration::from_secs(60);
/// A D-Bus call to a local service; InstallBundle returns once the install has started.
const BUS_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RaucError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {} s", timeout.as_secs())]
    Timeout {
        program: &'static str,
        timeout: Duration,
    },
    /// The program ran and refused; `message` is its own last words.
    #[error("{program}: {message}")]
    Failed {
        program: &'static str,
        message: String,
    },
    #[error("{program} printed what this gateway cannot read: {detail}")]
    Unreadable {
        program: &'static str,
        detail: String,
    },
}

/// A child process with a deadline; killed if the deadline passes or the caller goes away.
async fn run(
    program: &'static str,
    args: &[OsString],
    timeout: Duration,
) -> Result<std::process::Output, RaucError> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RaucError::Spawn { program, source })?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(source)) => Err(RaucError::Spawn { program, source }),
        Err(_) => Err(RaucError::Timeout { program, timeout }),
    }
}

/// The last line of stderr that is not one of GLib's progress messages.
fn last_words(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| !l.starts_with("rauc-Message:"))
        .or(lines.last())
        .map(|l| l.chars().take(400).collect())
        .unwrap_or_else(|| "no message".into())
}

/// A bundle as `rauc info` describes it, after its signature was checked against the keyring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    pub compatible: String,
    pub version: String,
    /// `verity`, `crypt` or `plain`.
    pub format: String,
    /// The signing certificate's subject (`O = ..., CN = ...`).
    pub signer: String,
    /// The SHA-256 of each image, by slot class.
    pub images: Vec<(String, String)>,
    #[serde(skip)]
    pub verity: Option<super::verity::Manifest>,
}

/// Why `rauc info` refused a file: its signature, or anything else it could not read.
#[derive(Debug)]
pub enum Refusal {
    NotSigned(String),
    Other(RaucError),
}

/// `rauc info` twice: JSON for the manifest, the readable form for what 1.8's JSON leaves
/// out (the bundle format, the verity hash and the certificate chain).
pub async fn info(conf: &Path, keyring: Option<&Path>, bundle: &Path) -> Result<Info, Refusal> {
    let mut base: Vec<OsString> = vec!["info".into(), "--conf".into(), conf.into()];
    if let Some(k) = keyring {
        base.push("--keyring".into());
        base.push(k.into());
    }
    let mut json_args = base.clone();
    json_args.push("--output-format=json".into());
    json_args.push(bundle.into());
    let out = run("rauc", &json_args, INFO_TIMEOUT)
        .await
        .map_err(Refusal::Other)?;
    if !out.status.success() {
        return Err(Refusal::NotSigned(last_words(&out.stderr)));
    }
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut text_args = base;
    text_args.push(bundle.into());
    let readable = run("rauc", &text_args, INFO_TIMEOUT)
        .await
        .map_err(Refusal::Other)?;
    if !readable.status.success() {
        return Err(Refusal::NotSigned(last_words(&readable.stderr)));
    }
    parse_info(
        &json,
        &String::from_utf8_lossy(&readable.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
    .map_err(|detail| {
        Refusal::Other(RaucError::Unreadable {
            program: "rauc",
            detail,
        })
    })
}

#[derive(Deserialize)]
struct InfoJson {
    compatible: Option<String>,
    version: Option<String>,
    #[serde(default)]
    images: Vec<serde_json::Map<String, Value>>,
}

/// Reads rauc 1.8's `info` output: the JSON document, the readable text, and stderr (which
/// names the signer, `Verified inline signature by '...'`).
pub fn parse_info(json: &str, readable: &str, stderr: &str) -> Result<Info, String> {
    let doc: InfoJson = serde_json::from_str(json.trim()).map_err(|e| e.to_string())?;
    let mut images = Vec::new();
    for image in &doc.images {
        for (class, v) in image {
            let sum = v["checksum"].as_str().unwrap_or_default().to_string();
            images.push((class.clone(), sum));
        }
    }
    let mut format = String::new();
    let (mut salt, mut hash, mut size) = (None, None, None);
    let mut signer = String::new();
    let mut in_chain = false;
    for line in readable.lines() {
        let plain = strip_ansi(line);
        let t = plain.trim();
        if t.starts_with("Certificate Chain:") {
            in_chain = true;
            continue;
        }
        let Some((key, value)) = t.split_once(':') else {
            continue;
        };
        let value = unquote(value.trim());
        match key.trim() {
            "Bundle Format" => format = value.to_string(),
            "Verity Salt" => salt = super::verity::from_hex(value),
            "Verity Hash" => hash = super::verity::from_hex(value),
            "Verity Size" => size = value.parse::<u64>().ok(),
            "0 Subject" if in_chain && signer.is_empty() => signer = value.to_string(),
            _ => {}
        }
    }
    if signer.is_empty() {
        // The readable chain is missing (an older RAUC): the signature line on stderr.
        signer = stderr
            .lines()
            .find_map(|l| l.split_once("signature by '").map(|(_, r)| r))
            .and_then(|r| r.rsplit_once('\''))
            .map(|(s, _)| s.to_string())
            .unwrap_or_default();
    }
    if format.is_empty() {
        // 1.8 verifies a plain bundle's detached signature and a verity one's inline.
        format = if stderr.contains("detached signature") {
            "plain".into()
        } else {
            "unknown".into()
        };
    }
    let verity = match (salt, hash, size) {
        (Some(salt), Some(root_hash), Some(tree_size)) => Some(super::verity::Manifest {
            salt,
            root_hash,
            tree_size,
        }),
        _ => None,
    };
    Ok(Info {
        compatible: doc.compatible.ok_or("no compatible in the manifest")?,
        version: doc.version.ok_or("no version in the manifest")?,
        format,
        signer,
        images,
        verity,
    })
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(v)
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Where RAUC's service is: the system bus, or an address (a test's private bus).
#[derive(Clone, Debug, Default)]
pub struct Bus {
    pub address: Option<String>,
}

/// One root slot as GetSlotStatus tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    pub name: String,
    pub class: String,
    pub bootname: String,
    /// `booted`, `active` or `inactive`.
    pub state: String,
    /// `good` or `bad` (what the bootloader says), empty when it cannot tell.
    pub boot_status: String,
    pub version: Option<String>,
    pub installed_at: Option<String>,
}

/// Operation, Progress and LastError at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    pub operation: String,
    pub percent: i64,
    pub message: String,
    pub last_error: String,
}

impl Bus {
    fn args(&self, rest: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--json=short".into()];
        match &self.address {
            Some(a) => args.push(format!("--address={a}").into()),
            None => args.push("--system".into()),
        }
        args.extend(rest.iter().map(OsString::from));
        args
    }

    async fn busctl(&self, rest: &[&str]) -> Result<String, RaucError> {
        let out = run("busctl", &self.args(rest), BUS_TIMEOUT).await?;
        if !out.status.success() {
            return Err(RaucError::Failed {
                program: "busctl",
                message: last_words(&out.stderr),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub async fn install(&self, bundle: &Path) -> Result<(), RaucError> {
        let path = bundle.to_string_lossy();
        self.busctl(&[
            "call",
            SERVICE,
            "/",
            INTERFACE,
            "InstallBundle",
            "sa{sv}",
            &path,
            "0",
        ])
        .await
        .map(drop)
    }

    pub async fn properties(&self) -> Result<Properties, RaucError> {
        let out = self
            .busctl(&[
                "get-property",
                SERVICE,
                "/",
                INTERFACE,
                "Operation",
                "Progress",
                "LastError",
            ])
            .await?;
        parse_properties(&out).map_err(|detail| RaucError::Unreadable {
            program: "busctl",
            detail,
        })
    }

    pub async fn boot_slot(&self) -> Result<String, RaucError> {
        let out = self
            .busctl(&["get-property", SERVICE, "/", INTERFACE, "BootSlot"])
            .await?;
        let v: Value = serde_json::from_str(out.trim()).map_err(|e| RaucError::Unreadable {
            program: "busctl",
            detail: e.to_string(),
        })?;
        Ok(v["data"].as_str().unwrap_or_default().to_string())
    }

    pub async fn slots(&self) -> Result<Vec<Slot>, RaucError> {
        let out = self
            .busctl(&["call", SERVICE, "/", INTERFACE, "GetSlotStatus"])
            .await?;
        parse_slots(&out).map_err(|detail| RaucError::Unreadable {
            program: "busctl",
            detail,
        })
    }
}

/// `busctl --json=short get-property ... Operation Progress LastError`: one JSON value a line.
pub fn parse_properties(out: &str) -> Result<Properties, String> {
    let values: Vec<Value> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let [op, progress, error] = values.as_slice() else {
        return Err(format!("{} values instead of 3", values.len()));
    };
    Ok(Properties {
        operation: op["data"].as_str().unwrap_or_default().to_string(),
        percent: progress["data"][0].as_i64().unwrap_or(0),
        message: progress["data"][1].as_str().unwrap_or_default().to_string(),
        last_error: error["data"].as_str().unwrap_or_default().to_string(),
    })
}

/// `busctl --json=short call ... GetSlotStatus`: `a(sa{sv})`, each value `{type, data}`.
/// Only root slots (class `rootfs`) are kept, ordered by bootname.
pub fn parse_slots(out: &str) -> Result<Vec<Slot>, String> {
    let v: Value = serde_json::from_str(out.trim()).map_err(|e| e.to_string())?;
    let list = v["data"][0].as_array().ok_or("no slot list")?;
    let mut slots = Vec::new();
    for entry in list {
        let name = entry[0].as_str().unwrap_or_default().to_string();
        let dict = &entry[1];
        let text = |k: &str| dict[k]["data"].as_str().map(str::to_string);
        let slot = Slot {
            name,
            class: text("class").unwrap_or_default(),
            bootname: text("bootname").unwrap_or_default(),
            state: text("state").unwrap_or_default(),
            boot_status: text("boot-status").unwrap_or_default(),
            version: text("bundle.version"),
            installed_at: text("installed.timestamp"),
        };
        if slot.class == "rootfs" {
            slots.push(slot);
        }
    }
    slots.sort_by(|a, b| a.bootname.cmp(&b.bootname));
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_rauc_1_8_info_prints() {
        let info = parse_info(
            include_str!("fixtures/info-1.8.json"),
            include_str!("fixtures/info-1.8.txt"),
            include_str!("fixtures/info-1.8.stderr"),
        )
        .unwrap();
        assert_eq!(info.compatible, "photo-pacs-rpi-arm64");
        assert_eq!(info.version, "0.2.0+20261201000000");
        assert_eq!(info.format, "verity");
        assert_eq!(
            info.signer,
            "O = Photo PACS Test, CN = Photo PACS Release Signing"
        );
        assert_eq!(info.images.len(), 1);
        assert_eq!(info.images[0].0, "rootfs");
        let v = info.verity.unwrap();
        assert_eq!(v.tree_size, 4096);
        assert_eq!(v.root_hash.len(), 32);
        assert_eq!(v.salt.len(), 32);
    }

    #[test]
    fn without_the_readable_text_the_signer_and_format_come_from_stderr() {
        let info = parse_info(
            include_str!("fixtures/info-1.8.json"),
            "",
            include_str!("fixtures/info-1.8-plain.stderr"),
        )
        .unwrap();
        assert_eq!(info.format, "plain");
        assert!(info.signer.contains("CN = Photo PACS Release Signing"));
        assert!(info.verity.is_none());
    }

    #[test]
    fn a_refusal_keeps_rauc_s_own_words() {
        let words = last_words(include_bytes!("fixtures/info-1.8-wrong-ca.stderr"));
        assert!(
            words.contains("unable to get local issuer certificate"),
            "{words}"
        );
    }

    #[test]
    fn reads_busctl_s_slot_status_and_properties() {
        let slots = parse_slots(include_str!("fixtures/slot-status-1.8.json")).unwrap();
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[0].bootname, "A");
        assert_eq!(slots[0].state, "booted");
        assert_eq!(slots[0].version, None);
        assert_eq!(slots[1].bootname, "B");
        assert_eq!(slots[1].version.as_deref(), Some("0.2.0+20261201000000"));
        assert_eq!(
            slots[1].installed_at.as_deref(),
            Some("2026-11-30T21:57:56Z")
        );
        let p = parse_properties(include_str!("fixtures/properties-1.8.jsonl")).unwrap();
        assert_eq!(p.operation, "idle");
        assert_eq!(p.percent, 100);
        assert_eq!(p.message, "Installing done.");
        assert_eq!(p.last_error, "");
        assert!(parse_properties("{\"type\":\"s\",\"data\":\"idle\"}\n").is_err());
    }
}
