//! The box's health in one view: what the status page, `/readyz`, the metrics and the
//! diagnostics bundle show, gathered from the parts that know it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::app::{App, PacsCheck};
use crate::clock::Sync;
use crate::config::AdminGuard;

/// Why the box is not ready for uploads or deliveries; each one also a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    DataReadOnly,
    DataLowSpace,
    SettingsLocked,
    OutboxStuck,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::DataReadOnly,
        Reason::DataLowSpace,
        Reason::SettingsLocked,
        Reason::OutboxStuck,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::DataReadOnly => "DATA_READ_ONLY",
            Reason::DataLowSpace => "DATA_LOW_SPACE",
            Reason::SettingsLocked => "SETTINGS_LOCKED",
            Reason::OutboxStuck => "OUTBOX_STUCK",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct NotReady {
    pub code: Reason,
    pub message: String,
}

/// The data partition as the gateway sees it (the file system of its outbox).
#[derive(Clone, Debug, Default)]
pub struct Data {
    pub path: PathBuf,
    pub free: u64,
    pub total: u64,
    pub read_only: bool,
    pub low_space: bool,
}

fn data(app: &App) -> Data {
    let paths = [
        app.env.dicom_dir.as_path(),
        app.env.upload_dir.as_path(),
        app.env.settings_path.parent().unwrap_or(Path::new(".")),
    ];
    let mut d = Data {
        path: app.env.dicom_dir.clone(),
        ..Data::default()
    };
    if let Ok(s) = crate::outbox::space::of(&app.env.dicom_dir) {
        d.free = s.available;
        d.total = s.total;
    }
    d.read_only = paths.iter().any(|p| {
        rustix::fs::statvfs(*p)
            .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
    });
    d.low_space = app.intake.check_space().is_err();
    d
}

/// What stops the box from doing its job now, in words for the admin.
pub fn readiness(app: &App) -> Vec<NotReady> {
    readiness_with(app, &data(app))
}

fn readiness_with(app: &App, d: &Data) -> Vec<NotReady> {
    let mut reasons = Vec::new();
    if d.read_only {
        reasons.push(NotReady {
            code: Reason::DataReadOnly,
            message: format!(
                "the data partition ({}) is read-only: nothing can be saved; the card may be failing",
                d.path.display()
            ),
        });
    }
    if d.low_space {
        reasons.push(NotReady {
            code: Reason::DataLowSpace,
            message: format!(
                "the data partition is almost full ({} MB free): new photos are refused",
                d.free / (1024 * 1024)
            ),
        });
    }
    if let AdminGuard::Locked(why) = app.admin() {
        reasons.push(NotReady {
            code: Reason::SettingsLocked,
            message: why,
        });
    }
    let summary = app.outbox.summary();
    if let Some(oldest) = summary.oldest {
        let age = (Utc::now() - oldest).to_std().unwrap_or_default();
        if age > app.env.outbox_stuck_after {
            reasons.push(NotReady {
                code: Reason::OutboxStuck,
                message: format!(
                    "{} stud{} waiting, the oldest for {}: the PACS is not taking them",
                    summary.queued,
                    if summary.queued == 1 { "y" } else { "ies" },
                    crate::clock::human_duration(age.as_secs())
                ),
            });
        }
    }
    reasons
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The host's name as the kernel has it: uname(2), since the service's sandbox
/// (ProcSubset=pid) hides /proc/sys, where /proc/sys/kernel/hostname reads as nothing.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The box's own addresses, loopback and link-local left out: what a phone could type.
pub fn addresses() -> Vec<String> {
    let mut out: Vec<String> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.is_loopback() && !i.is_link_local())
        .map(|i| i.ip().to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A systemd unit's state, asked of `systemctl` (read-only; the sandbox allows it).
#[derive(Clone, Debug, Default, Serialize)]
pub struct UnitState {
    pub unit: String,
    /// `loaded`, `not-found`, or empty when systemctl could not be asked.
    pub load: String,
    /// `active`, `inactive`, `failed`...
    pub active: String,
    /// Whether its start conditions held (a tunnel without a token does not start).
    pub condition: String,
}

pub const UNITS: [&str; 4] = [
    "photo-pacs.service",
    "photo-pacs-cloudflared.service",
    "photo-pacs-provision.service",
    "systemd-timesyncd.service",
];

pub const TUNNEL_UNIT: &str = "photo-pacs-cloudflared.service";

/// Each unit's state; empty states where systemctl is missing or does not answer in 2 s.
pub async fn units(names: &[&str]) -> Vec<UnitState> {
    let mut cmd = tokio::process::Command::new("systemctl");
    cmd.args([
        "show",
        "--property=Id,LoadState,ActiveState,ConditionResult",
    ])
    .args(names)
    .stdin(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(2), cmd.output()).await;
    let text = match output {
        Ok(Ok(o)) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => String::new(),
    };
    let mut states: Vec<UnitState> = names
        .iter()
        .map(|n| UnitState {
            unit: n.to_string(),
            ..UnitState::default()
        })
        .collect();
    // One block per unit, separated by a blank line, in the order asked.
    for (block, state) in text.split("\n\n").zip(states.iter_mut()) {
        for line in block.lines() {
            match line.split_once('=') {
                Some(("LoadState", v)) => state.load = v.into(),
                Some(("ActiveState", v)) => state.active = v.into(),
                Some(("ConditionResult", v)) => state.condition = v.into(),
                _ => {}
            }
        }
    }
    states
}

/// The whole status document of `GET /api/status`.
pub async fn document(app: &App) -> Value {
    let d = data(app);
    let reasons = readiness_with(app, &d);
    let summary = app.outbox.summary();
    let health = app.outbox.health();
    let clock = app.clock.state();
    let check = last_check(app);
    let tunnel = units(&[TUNNEL_UNIT]).await.pop().unwrap_or_default();
    let current = app.settings.current();
    let servers: Vec<&str> = current.ntp_servers.split_whitespace().collect();
    let stuck = reasons.iter().any(|r| r.code == Reason::OutboxStuck);
    let update = app.updates.view().await;
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "build": {
            "commit": option_env!("PHOTO_PACS_COMMIT"),
            "target": env!("PHOTO_PACS_TARGET"),
            "profile": env!("PHOTO_PACS_PROFILE"),
        },
        "startedAt": rfc3339(app.started_at),
        "uptimeSeconds": app.started.elapsed().as_secs(),
        "hostname": hostname(),
        "addresses": addresses(),
        "backend": app.env.backend.as_str(),
        "data": {
            "path": d.path.display().to_string(),
            "freeBytes": d.free,
            "totalBytes": d.total,
            "readOnly": d.read_only,
            "lowSpace": d.low_space,
        },
        "outbox": {
            "depth": summary.queued,
            "failed": summary.failed,
            "oldest": summary.oldest.map(rfc3339),
            "lastError": health.last_error.map(|(at, e)| json!({
                "at": rfc3339(at),
                "message": e.message,
                "code": e.code.map(|c| c.label()),
            })),
            "lastStored": health.last_stored.map(rfc3339),
            "stuck": stuck,
        },
        "pacs": pacs_json(check.as_ref()),
        "clock": {
            "now": clock.now.to_rfc3339_opts(SecondsFormat::Secs, false),
            "timeZone": clock.time_zone,
            "ntpServers": servers,
            "synchronized": clock.sync.as_str(),
            "phoneSkewSeconds": clock.phone.map(|p| p.skew_s),
            "phoneSeenAt": clock.phone.map(|p| rfc3339(p.seen_at)),
            "warning": clock.warning,
        },
        "tunnel": {
            "configured": tunnel.load == "loaded" && tunnel.condition != "no",
            "running": (!tunnel.load.is_empty()).then(|| tunnel.active == "active"),
        },
        "settingsLocked": matches!(app.admin(), AdminGuard::Locked(_)),
        "update": {
            "available": update.available,
            "version": update.version,
            "bootedSlot": update.booted_slot,
            "slots": update.slots,
            "awaitingReboot": update.awaiting_reboot,
            "lastResult": update.last_result,
        },
        "ready": { "ready": reasons.is_empty(), "reasons": reasons },
        "warnings": app.warnings(&current),
    })
}

fn last_check(app: &App) -> Option<PacsCheck> {
    app.pacs_check
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

fn pacs_json(check: Option<&PacsCheck>) -> Value {
    match check {
        None => json!({ "checkedAt": null, "reachable": null, "message": null, "elapsedMs": null }),
        Some(c) => match &c.result {
            Ok(elapsed) => json!({
                "checkedAt": rfc3339(c.at),
                "reachable": true,
                "message": null,
                "elapsedMs": elapsed.as_millis() as u64,
            }),
            Err(e) => json!({
                "checkedAt": rfc3339(c.at),
                "reachable": false,
                "message": e.message,
                "elapsedMs": null,
            }),
        },
    }
}

/// Refreshes the health gauges; called at each scrape.
pub fn update_gauges(app: &App) {
    let d = data(app);
    let reasons = readiness_with(app, &d);
    let clock = app.clock.state();
    let check = last_check(app);
    let failing: Vec<&'static str> = reasons.iter().map(|r| r.code.code()).collect();
    app.metrics.health(crate::telemetry::Health {
        not_ready: Reason::ALL
            .iter()
            .map(|r| (r.code(), failing.contains(&r.code())))
            .collect(),
        data_free_bytes: d.free,
        data_read_only: d.read_only,
        clock_synchronized: match clock.sync {
            Sync::Yes => Some(true),
            Sync::No => Some(false),
            Sync::Unknown => None,
        },
        phone_skew_seconds: clock.phone.map(|p| p.skew_s),
        pacs_reachable: check.as_ref().map(|c| c.result.is_ok()),
        pacs_checked: check.map(|c| c.at.timestamp()),
    });
}

/// Echoes the PACS every `PACS_CHECK_S` so the status page can say whether it answers
/// before anyone sends a photo; tells the events ring when that changes.
pub async fn watch_pacs(app: Arc<App>) {
    let every = app.env.pacs_check_every;
    if every.is_zero() {
        return;
    }
    // Let the start-up settle (the network may still be coming up).
    tokio::time::sleep(Duration::from_secs(2).min(every)).await;
    loop {
        let result = app.sender.echo(&app.settings.current()).await;
        let reachable = result.is_ok();
        let code = result.as_ref().err().map(|e| {
            e.code
                .map(|c| c.label())
                .unwrap_or_else(|| e.class.as_str().into())
        });
        let before = app
            .pacs_check
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(PacsCheck {
                at: Utc::now(),
                result,
            });
        let was = before.map(|b| b.result.is_ok());
        // The first answer is told only when it is bad; after that, every change.
        if was != Some(reachable) && (was.is_some() || !reachable) {
            app.events.pacs_reachability(reachable, code.as_deref());
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_the_documented_ones() {
        let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(
            codes,
            [
                "DATA_READ_ONLY",
                "DATA_LOW_SPACE",
                "SETTINGS_LOCKED",
                "OUTBOX_STUCK"
            ]
        );
        for r in Reason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.code());
        }
    }

    #[test]
    fn the_hostname_is_read() {
        assert!(!hostname().is_empty());
    }
}
