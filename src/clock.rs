//! The box's clock: whether NTP has set it, how far it is from the phones', its time zone,
//! and the request the image's privileged time helper applies.
//!
//! A Raspberry Pi has no battery clock: until timesyncd reaches a server, the box's time is
//! whatever it saved at the last shutdown. Phones keep network time, so the page sends the
//! phone's time with each study and the exam time comes from it; the box's clock is only
//! compared with it, and the admin is told when the two disagree.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, FixedOffset, Utc};

use crate::config::Settings;

/// A phone and the box further apart than this are worth a warning: two minutes is beyond
/// any upload's delay and any phone's drift, and short of a wrong day or hour.
pub const SKEW_WARNING_S: i64 = 120;

/// The request file beside settings.ini that the time helper applies as root.
pub const REQUEST_FILE: &str = "time-request.env";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    Yes,
    No,
    /// No timesyncd here (a developer's machine, a host with another NTP client).
    Unknown,
}

impl Sync {
    pub fn as_str(self) -> &'static str {
        match self {
            Sync::Yes => "yes",
            Sync::No => "no",
            Sync::Unknown => "unknown",
        }
    }
}

/// The last phone time seen, as the box's clock minus the phone's.
#[derive(Clone, Copy, Debug)]
pub struct PhoneReading {
    pub skew_s: i64,
    pub seen_at: DateTime<Utc>,
}

pub struct Clock {
    sync_file: PathBuf,
    last_phone: Mutex<Option<PhoneReading>>,
}

/// What the status page shows about time.
#[derive(Clone, Debug)]
pub struct ClockState {
    pub now: DateTime<FixedOffset>,
    pub time_zone: Option<String>,
    pub sync: Sync,
    pub phone: Option<PhoneReading>,
    pub warning: Option<String>,
}

impl Clock {
    pub fn new(sync_file: PathBuf) -> Self {
        Clock {
            sync_file,
            last_phone: Mutex::new(None),
        }
    }

    /// timesyncd creates its flag file once it has set the clock from a server and keeps
    /// it until it stops; without its directory there is no timesyncd to ask.
    pub fn sync(&self) -> Sync {
        if self.sync_file.exists() {
            Sync::Yes
        } else if self.sync_file.parent().is_some_and(Path::exists) {
            Sync::No
        } else {
            Sync::Unknown
        }
    }

    /// Notes a phone's time, read when its request arrived (`box_now`). Returns the skew
    /// when it has just gone past [`SKEW_WARNING_S`], so the caller can record the event
    /// once rather than for every upload.
    pub fn observe_phone(
        &self,
        phone: DateTime<FixedOffset>,
        box_now: DateTime<Utc>,
    ) -> Option<i64> {
        let skew_s = (box_now - phone.with_timezone(&Utc)).num_seconds();
        let reading = PhoneReading {
            skew_s,
            seen_at: box_now,
        };
        let mut last = self.last_phone.lock().unwrap_or_else(|p| p.into_inner());
        let was_off = last.is_some_and(|r| r.skew_s.abs() > SKEW_WARNING_S);
        *last = Some(reading);
        (skew_s.abs() > SKEW_WARNING_S && !was_off).then_some(skew_s)
    }

    pub fn state(&self) -> ClockState {
        let now = chrono::Local::now().fixed_offset();
        let sync = self.sync();
        let phone = *self.last_phone.lock().unwrap_or_else(|p| p.into_inner());
        let warning = match phone {
            Some(p) if p.skew_s.abs() > SKEW_WARNING_S => Some(format!(
                "the box's clock is {} {} the last phone's: exam times are taken from the phones, but check the box's NTP server (ntpServers)",
                human_duration(p.skew_s.unsigned_abs()),
                if p.skew_s < 0 { "behind" } else { "ahead of" }
            )),
            _ if sync == Sync::No => Some(
                "the box's clock is not synchronised with an NTP server: exam times come from the phones, but the box's own times (logs, queue) may be off; check ntpServers and the network".into(),
            ),
            _ => None,
        };
        ClockState {
            now,
            time_zone: time_zone(),
            sync,
            phone,
            warning,
        }
    }
}

/// `3 days 2 h`, `5 min 3 s`: enough to see at a glance how far off a clock is.
pub fn human_duration(s: u64) -> String {
    // Rounded to the smallest unit shown: three days less a second reads "3 days 0 h".
    if s < 3600 {
        let (m, sec) = (s / 60, s % 60);
        return if m == 0 {
            format!("{sec} s")
        } else {
            format!("{m} min {sec} s")
        };
    }
    if s < 86_400 {
        let minutes = (s + 30) / 60;
        return format!("{} h {} min", minutes / 60, minutes % 60);
    }
    let hours = (s + 1800) / 3600;
    let d = hours / 24;
    format!("{d} day{} {} h", if d == 1 { "" } else { "s" }, hours % 24)
}

/// The zone the box's local time is in: `TZ` when set, else where /etc/localtime points.
pub fn time_zone() -> Option<String> {
    if let Ok(tz) = std::env::var("TZ") {
        let tz = tz.trim_start_matches(':');
        if !tz.is_empty() {
            return Some(tz.to_string());
        }
    }
    let target = std::fs::read_link("/etc/localtime").ok()?;
    let target = target.to_string_lossy();
    let zone = target
        .split_once("zoneinfo/")
        .map(|(_, z)| z.to_string())
        .unwrap_or_else(|| target.to_string());
    Some(zone)
}

/// The request file's text for `settings`.
pub fn request_text(settings: &Settings) -> String {
    format!(
        "# Written by photo-pacs from its settings (timeZone, ntpServers); applied as root by\n# the image's time helper. Empty: leave the system's own.\nTIME_ZONE={}\nNTP_SERVERS={}\n",
        settings.time_zone, settings.ntp_servers
    )
}

/// Writes the time helper's request beside settings.ini when it differs from what is
/// there. Returns whether it wrote.
pub fn write_request(settings_path: &Path, settings: &Settings) -> io::Result<bool> {
    let dir = settings_path.parent().unwrap_or(Path::new("."));
    let path = dir.join(REQUEST_FILE);
    let text = request_text(settings);
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    crate::config::write_atomically_with_mode(&path, text.as_bytes(), 0o600)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn a_phone_far_from_the_box_warns_once_then_states_it() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::new(dir.path().join("synchronized"));
        assert_eq!(clock.sync(), Sync::No);
        let box_now = at("2026-11-27T10:00:00Z").with_timezone(&Utc);
        // Three days ahead of the box: the box is behind.
        let phone = at("2026-11-30T18:00:30+08:00");
        let skew = clock.observe_phone(phone, box_now).unwrap();
        assert_eq!(skew, -(3 * 86_400 + 30));
        assert_eq!(clock.observe_phone(phone, box_now), None, "told once");
        let state = clock.state();
        let w = state.warning.unwrap();
        assert!(w.contains("3 days 0 h behind"), "{w}");
        // Back within two minutes: no warning, and a later drift warns again.
        assert_eq!(
            clock.observe_phone(at("2026-11-27T18:01:00+08:00"), box_now),
            None
        );
        assert!(clock.state().warning.unwrap().contains("not synchronised"));
        std::fs::write(dir.path().join("synchronized"), "").unwrap();
        assert_eq!(clock.sync(), Sync::Yes);
        assert!(clock.state().warning.is_none());
        assert!(clock.observe_phone(phone, box_now).is_some());
    }

    #[test]
    fn without_timesyncd_the_state_is_unknown() {
        let clock = Clock::new("/nonexistent-dir-for-test/synchronized".into());
        assert_eq!(clock.sync(), Sync::Unknown);
        assert!(clock.state().warning.is_none());
    }

    #[test]
    fn the_request_is_written_only_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("settings.ini");
        let mut s = Settings::default();
        assert!(write_request(&ini, &s).unwrap());
        assert!(!write_request(&ini, &s).unwrap());
        s.time_zone = "Asia/Taipei".into();
        s.ntp_servers = "ntp1.example 10.0.0.1".into();
        assert!(write_request(&ini, &s).unwrap());
        let text = std::fs::read_to_string(dir.path().join(REQUEST_FILE)).unwrap();
        assert!(text.contains("\nTIME_ZONE=Asia/Taipei\nNTP_SERVERS=ntp1.example 10.0.0.1\n"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(REQUEST_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human_duration(59), "59 s");
        assert_eq!(human_duration(125), "2 min 5 s");
        assert_eq!(human_duration(3 * 3600 + 60), "3 h 1 min");
        assert_eq!(human_duration(86_400 + 7200), "1 day 2 h");
        assert_eq!(human_duration(3 * 86_400 - 1), "3 days 0 h");
    }
}
