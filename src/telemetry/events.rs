//! The recent events the status page lists: an in-memory ring without patient data.
//!
//! What goes in is the box's own words about itself: a study's random outbox ID, never a
//! patient's ID or name; a field's name, never its value; who acted as a role and an
//! address. Every constructor below takes only such values, so a caller cannot slip a
//! patient value in by formatting a message.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// How many events are kept: a busy clinic day's deliveries, a few kilobytes each at most.
pub const CAPACITY: usize = 400;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Start,
    Delivery,
    Retry,
    Error,
    Login,
    Settings,
    Backup,
    Restore,
    Clock,
    Pacs,
    Outbox,
    Update,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub seq: u64,
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    pub kind: Kind,
    pub level: Level,
    /// A stable, machine-readable word for what happened (`stored`, `failed`, `login-failed`).
    pub code: &'static str,
    /// One sentence in English, built only from the fields below and fixed words.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub study: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub who: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Who did something: a role and the address it came from.
#[derive(Clone, Copy, Debug)]
pub enum Actor {
    Admin(IpAddr),
    Anyone(IpAddr),
    /// The command line on the box itself.
    Console,
}

impl Actor {
    fn describe(self) -> String {
        match self {
            Actor::Admin(ip) => format!("admin from {}", ip.to_canonical()),
            Actor::Anyone(ip) => format!("{}", ip.to_canonical()),
            Actor::Console => "console".into(),
        }
    }
}

#[derive(Default)]
struct Ring {
    next: u64,
    events: VecDeque<Event>,
}

#[derive(Default)]
pub struct Events {
    ring: Mutex<Ring>,
}

/// What a study's delivery attempt ended in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    /// Stored, but the PACS changed or warned about some objects.
    StoredWithWarnings,
    /// Some or all objects refused for good.
    Failed,
    /// Will be tried again.
    Retrying,
}

impl Events {
    pub fn new() -> Self {
        Self::default()
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        kind: Kind,
        level: Level,
        code: &'static str,
        message: String,
        study: Option<&str>,
        who: Option<Actor>,
        fields: Vec<String>,
    ) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.next += 1;
        let event = Event {
            seq: ring.next,
            at: Utc::now(),
            kind,
            level,
            code,
            message,
            study: study.map(str::to_string),
            who: who.map(Actor::describe),
            fields,
        };
        if ring.events.len() == CAPACITY {
            ring.events.pop_front();
        }
        ring.events.push_back(event);
    }

    /// Newest first.
    pub fn recent(&self) -> Vec<Event> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.events.iter().rev().cloned().collect()
    }

    pub fn started(&self, version: &str) {
        self.push(
            Kind::Start,
            Level::Info,
            "started",
            format!("gateway {version} started"),
            None,
            None,
            Vec::new(),
        );
    }

    /// RAUC wrote `version` into slot `slot`; a reboot starts it.
    pub fn update_written(&self, version: &str, slot: &str) {
        self.push(
            Kind::Update,
            Level::Info,
            "update-written",
            format!("update {version} written to slot {slot}; it starts after a reboot"),
            None,
            None,
            Vec::new(),
        );
    }

    /// After a reboot the box runs `version` from slot `slot`, marked good.
    pub fn update_installed(&self, version: &str, slot: &str) {
        self.push(
            Kind::Update,
            Level::Info,
            "update-installed",
            format!("now running {version} in slot {slot}"),
            None,
            None,
            Vec::new(),
        );
    }

    /// The new slot did not start: the box went back to `booted`.
    pub fn update_rolled_back(&self, version: &str, slot: &str, booted: &str) {
        self.push(
            Kind::Update,
            Level::Error,
            "update-rolled-back",
            format!(
                "rolled back: {version} in slot {slot} did not start; running slot {booted} again"
            ),
            None,
            None,
            Vec::new(),
        );
    }

    /// RAUC refused or failed the install; `why` is RAUC's own message.
    pub fn update_failed(&self, version: &str, why: &str) {
        self.push(
            Kind::Update,
            Level::Error,
            "update-failed",
            format!("installing update {version} failed: {why}"),
            None,
            None,
            Vec::new(),
        );
    }

    /// The reboot the admin planned was requested.
    pub fn update_reboot(&self) {
        self.push(
            Kind::Update,
            Level::Info,
            "reboot-requested",
            "reboot requested to finish an update".into(),
            None,
            None,
            Vec::new(),
        );
    }

    /// `study` is the outbox's random ID; `error_code` the delivery error's code, if any.
    pub fn delivery(
        &self,
        study: &str,
        outcome: Outcome,
        objects: usize,
        attempt: u32,
        error_code: Option<&str>,
    ) {
        let why = error_code.map(|c| format!(" ({c})")).unwrap_or_default();
        let (kind, level, code, message) = match outcome {
            Outcome::Stored => (
                Kind::Delivery,
                Level::Info,
                "stored",
                format!("{objects} object(s) stored in the PACS, attempt {attempt}"),
            ),
            Outcome::StoredWithWarnings => (
                Kind::Delivery,
                Level::Warn,
                "stored-with-warnings",
                format!("{objects} object(s) stored with warnings, attempt {attempt}"),
            ),
            Outcome::Failed => (
                Kind::Delivery,
                Level::Error,
                "failed",
                format!("delivery failed for good after attempt {attempt}{why}"),
            ),
            Outcome::Retrying => (
                Kind::Retry,
                Level::Warn,
                "retrying",
                format!("attempt {attempt} failed{why}; it will be tried again"),
            ),
        };
        self.push(kind, level, code, message, Some(study), None, Vec::new());
    }

    /// An admin's hand on the outbox: `action` is a fixed word (`retried`, `deleted`).
    pub fn outbox(&self, study: &str, action: &'static str, who: Actor) {
        self.push(
            Kind::Outbox,
            Level::Info,
            action,
            format!("study {action} by hand"),
            Some(study),
            Some(who),
            Vec::new(),
        );
    }

    pub fn login(&self, ok: bool, who: Actor) {
        let (level, code, message) = if ok {
            (Level::Info, "login", "admin signed in")
        } else {
            (Level::Warn, "login-failed", "wrong admin password")
        };
        self.push(
            Kind::Login,
            level,
            code,
            message.into(),
            None,
            Some(who),
            Vec::new(),
        );
    }

    /// `fields` are the JSON names of the settings that changed (never their values).
    pub fn settings_changed(&self, fields: Vec<String>, who: Actor) {
        let message = format!("{} setting(s) changed", fields.len());
        self.push(
            Kind::Settings,
            Level::Info,
            "settings-changed",
            message,
            None,
            Some(who),
            fields,
        );
    }

    pub fn password_changed(&self, who: Actor) {
        self.push(
            Kind::Settings,
            Level::Info,
            "password-changed",
            "admin password changed".into(),
            None,
            Some(who),
            Vec::new(),
        );
    }

    /// `with_secrets`: whether the file carried the secrets (encrypted).
    pub fn backup(&self, with_secrets: bool, who: Actor) {
        let message = if with_secrets {
            "configuration backup downloaded, secrets included (encrypted)"
        } else {
            "configuration backup downloaded, without secrets"
        };
        self.push(
            Kind::Backup,
            Level::Info,
            "backup",
            message.into(),
            None,
            Some(who),
            Vec::new(),
        );
    }

    /// `fields`: the JSON names of what the restore changed; `refused`: a fixed reason
    /// word when the file was refused.
    pub fn restore(&self, fields: Vec<String>, refused: Option<&'static str>, who: Actor) {
        let (level, code, message) = match refused {
            None => (
                Level::Info,
                "restored",
                format!("configuration restored, {} value(s) changed", fields.len()),
            ),
            Some(why) => (
                Level::Warn,
                "restore-refused",
                format!("a configuration file was refused ({why}); nothing changed"),
            ),
        };
        self.push(Kind::Restore, level, code, message, None, Some(who), fields);
    }

    /// The phone's clock and the box's differ by `skew_s` seconds (box minus phone).
    pub fn clock_skew(&self, skew_s: i64, who: Actor) {
        let dir = if skew_s < 0 { "behind" } else { "ahead of" };
        self.push(
            Kind::Clock,
            Level::Warn,
            "clock-skew",
            format!(
                "the box's clock is {} s {dir} a phone's; exam times come from the phone",
                skew_s.abs()
            ),
            None,
            Some(who),
            Vec::new(),
        );
    }

    /// A change in whether the PACS answers an echo; `code` is the error's code when not.
    pub fn pacs_reachability(&self, reachable: bool, code: Option<&str>) {
        let (level, event_code, message) = if reachable {
            (
                Level::Info,
                "pacs-reachable",
                "the PACS answers again".to_string(),
            )
        } else {
            (
                Level::Warn,
                "pacs-unreachable",
                format!(
                    "the PACS does not answer an echo ({})",
                    code.unwrap_or("unknown")
                ),
            )
        };
        self.push(
            Kind::Pacs,
            level,
            event_code,
            message,
            None,
            None,
            Vec::new(),
        );
    }

    /// A request that failed on the box's side: its route and the error's code.
    pub fn server_error(&self, route: &str, code: &str) {
        self.push(
            Kind::Error,
            Level::Error,
            "server-error",
            format!("{route} failed ({code})"),
            None,
            None,
            Vec::new(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_and_numbers_them() {
        let events = Events::new();
        for i in 0..CAPACITY + 5 {
            events.delivery(&format!("s{i}"), Outcome::Stored, 1, 1, None);
        }
        let recent = events.recent();
        assert_eq!(recent.len(), CAPACITY);
        assert_eq!(recent[0].seq, (CAPACITY + 5) as u64);
        assert_eq!(
            recent[0].study.as_deref(),
            Some(&*format!("s{}", CAPACITY + 4))
        );
        assert_eq!(recent[CAPACITY - 1].seq, 6);
    }

    #[test]
    fn who_is_a_role_and_an_address() {
        let events = Events::new();
        events.settings_changed(
            vec!["pacsHost".into()],
            Actor::Admin("::ffff:10.0.0.7".parse().unwrap()),
        );
        let e = &events.recent()[0];
        assert_eq!(e.who.as_deref(), Some("admin from 10.0.0.7"));
        assert_eq!(e.fields, vec!["pacsHost".to_string()]);
        let json = serde_json::to_value(e).unwrap();
        assert_eq!(json["kind"], "settings");
        assert!(json["at"].as_str().unwrap().ends_with('Z'));
    }
}
