//! Who the photos are of: the day's Modality Worklist and lookups by Patient ID, asked of the
//! PACS (or of the demo) and kept in this process's memory for a short while, never on disk.

mod demo;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Days, Local, NaiveDate};
use tokio::sync::Semaphore;

use crate::config::{Backend, Key, Settings};
use crate::lookup::{self, Level};
use crate::pacs::{PacsError, Sender};
use crate::study::Patient;
use crate::worklist::{self, Entry, Query};

/// How long one worklist answer serves every phone that opens the list.
pub const WORKLIST_FRESH: Duration = Duration::from_secs(30);
/// A pull to refresh asks the PACS again, unless the answer is this young (two phones
/// pulling at once need one query, not two).
const WORKLIST_JUST_ASKED: Duration = Duration::from_secs(2);
/// How long the answer about one Patient ID is reused (the page asks again as the nurse
/// types or scans).
pub const LOOKUP_FRESH: Duration = Duration::from_secs(120);
const MAX_CACHED_LOOKUPS: usize = 256;
/// Lookups sent to the PACS at the same time at most, whatever the phones do.
const LOOKUP_SLOTS: usize = 2;

/// The "Today" list as the page gets it.
pub struct Today {
    pub enabled: bool,
    pub demo: bool,
    pub entries: Vec<Entry>,
    pub truncated: bool,
    /// `WLM@10.0.0.5:104`: where the list came from, for the page and the admin.
    pub provider: String,
}

impl Today {
    fn disabled() -> Self {
        Today {
            enabled: false,
            demo: false,
            entries: Vec::new(),
            truncated: false,
            provider: String::new(),
        }
    }
}

/// What the PACS knows about one Patient ID.
pub struct Lookup {
    pub enabled: bool,
    pub found: Option<Arc<KnownPatient>>,
    /// `patient`, `study`, `qido` or `demo`: how it was asked.
    pub source: &'static str,
}

pub struct KnownPatient {
    pub patient: Patient,
    pub studies: Option<u32>,
}

/// A Patient ID the page asks about that we will not send.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LookupRefused {
    #[error("a Patient ID is required")]
    Empty,
    #[error("must be at most 64 characters")]
    TooLong,
    /// C-FIND and QIDO-RS take `*` and `?` as wildcards: one such "ID" would list other
    /// patients.
    #[error("must not contain * or ?, backslashes or control characters")]
    Wildcard,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceptionError {
    #[error("patientId: {0}")]
    Refused(#[from] LookupRefused),
    #[error(transparent)]
    Pacs(#[from] PacsError),
}

type Answer = (Option<Arc<KnownPatient>>, &'static str);
type TodayAnswer = Result<Arc<Today>, PacsError>;

struct Cached<T> {
    at: Instant,
    /// The provider and query the answer is for: a settings change asks again.
    key: String,
    value: T,
}

pub struct Reception {
    backend: Backend,
    max_entries: usize,
    /// Held while the PACS is asked, so phones opening the list together share one query.
    /// The last answer or failure, for the provider and query it was for.
    worklist: tokio::sync::Mutex<Option<Cached<TodayAnswer>>>,
    /// By provider and Patient ID: what was found (or not), and how it was asked.
    lookups: Mutex<HashMap<String, (Instant, Answer)>>,
    lookup_slots: Semaphore,
}

impl Reception {
    pub fn new(backend: Backend, max_entries: usize) -> Self {
        Reception {
            backend,
            max_entries,
            worklist: tokio::sync::Mutex::new(None),
            lookups: Mutex::new(HashMap::new()),
            lookup_slots: Semaphore::new(LOOKUP_SLOTS),
        }
    }

    /// The scheduled procedure steps of the configured days. `fresh`: the nurse pulled to
    /// refresh, so a cached answer is not good enough.
    pub async fn today(&self, s: &Settings, fresh: bool) -> Result<Arc<Today>, PacsError> {
        if !s.worklist_enabled {
            return Ok(Arc::new(Today::disabled()));
        }
        let today = Local::now().date_naive();
        let query = Query {
            modality: s.worklist_modality.clone(),
            station_aet: s.worklist_station_aet.clone(),
            from: today
                .checked_sub_days(Days::new(u64::from(s.worklist_past_days)))
                .unwrap_or(today),
            to: today
                .checked_add_days(Days::new(u64::from(s.worklist_future_days)))
                .unwrap_or(today),
            max: self.max_entries,
        };
        let target = worklist_target(self.backend, s)?;
        let provider = describe(&target);
        let key = format!(
            "{provider}|{}|{}|{}|{}|{}",
            query.modality, query.station_aet, query.from, query.to, target.pacs_tls
        );
        let mut slot = self.worklist.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.key == key) {
            let age = c.at.elapsed();
            match &c.value {
                Ok(today)
                    if age
                        < if fresh {
                            WORKLIST_JUST_ASKED
                        } else {
                            WORKLIST_FRESH
                        } =>
                {
                    return Ok(today.clone());
                }
                // Phones that waited behind a query that just failed share its failure
                // instead of each waiting out another timeout.
                Err(e) if age < WORKLIST_JUST_ASKED => return Err(e.clone()),
                _ => {}
            }
        }
        let answer = self
            .ask_worklist(&target, &query, provider)
            .await
            .map(Arc::new);
        *slot = Some(Cached {
            at: Instant::now(),
            key,
            value: answer.clone(),
        });
        answer
    }

    async fn ask_worklist(
        &self,
        target: &Settings,
        query: &Query,
        provider: String,
    ) -> Result<Today, PacsError> {
        Ok(match self.backend {
            Backend::Mock => Today {
                enabled: true,
                demo: true,
                entries: demo::entries(query),
                truncated: false,
                provider: "the demo worklist".into(),
            },
            Backend::Cstore | Backend::Dicomweb => {
                let list = worklist::query(target, query).await?;
                if list.skipped > 0 {
                    log::warn!(
                        "worklist: {} entr(ies) from {provider} have no Study Instance UID or Patient ID and are not shown",
                        list.skipped
                    );
                }
                Today {
                    enabled: true,
                    demo: false,
                    entries: list.entries,
                    truncated: list.truncated,
                    provider,
                }
            }
        })
    }

    /// What the PACS knows about `patient_id`. Not found is an answer, not an error: new
    /// patients exist.
    pub async fn lookup(
        &self,
        sender: &Sender,
        s: &Settings,
        patient_id: &str,
    ) -> Result<Lookup, ReceptionError> {
        let id = check_lookup_id(patient_id)?;
        if !s.patient_lookup_enabled {
            return Ok(Lookup {
                enabled: false,
                found: None,
                source: "",
            });
        }
        let key = format!("{}|{id}", sender.destination(s).describe());
        let (found, source) = match self.cached_lookup(&key) {
            Some(answer) => answer,
            None => {
                let _slot = self.lookup_slots.acquire().await;
                let answer = self.ask(sender, s, id).await?;
                self.remember_lookup(key, answer.clone());
                answer
            }
        };
        Ok(Lookup {
            enabled: true,
            found,
            source,
        })
    }

    /// What the demo or the PACS says, and how it was asked.
    async fn ask(&self, sender: &Sender, s: &Settings, id: &str) -> Result<Answer, PacsError> {
        let (known, source) = match self.backend {
            Backend::Mock => return Ok((demo::lookup(id).map(Arc::new), "demo")),
            Backend::Cstore => (lookup::by_cfind(s, id).await?, "patient"),
            Backend::Dicomweb => (
                lookup::by_qido(sender.dicomweb_clients(), s, id).await?,
                "qido",
            ),
        };
        Ok(match known {
            None => (None, source),
            Some(k) => {
                let source = match k.level {
                    Level::Patient => "patient",
                    Level::Study => "study",
                    Level::Qido => "qido",
                };
                let known = KnownPatient {
                    patient: k.patient,
                    studies: k.studies,
                };
                (Some(Arc::new(known)), source)
            }
        })
    }

    fn cached_lookup(&self, key: &str) -> Option<Answer> {
        let mut map = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (at, _)| at.elapsed() < LOOKUP_FRESH);
        map.get(key).map(|(_, answer)| answer.clone())
    }

    fn remember_lookup(&self, key: String, answer: Answer) {
        let mut map = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CACHED_LOOKUPS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(key, (Instant::now(), answer));
    }

    /// Forgets every answer (the settings changed, or on request).
    pub async fn forget(&self) {
        *self.worklist.lock().await = None;
        self.lookups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

fn check_lookup_id(raw: &str) -> Result<&str, LookupRefused> {
    let id = raw.trim();
    if id.is_empty() {
        return Err(LookupRefused::Empty);
    }
    if id.chars().count() > 64 {
        return Err(LookupRefused::TooLong);
    }
    if id.contains(['*', '?', '\\']) || id.chars().any(char::is_control) {
        return Err(LookupRefused::Wildcard);
    }
    Ok(id)
}

/// The settings to ask the worklist provider with: the PACS's association settings (TLS,
/// timeouts, our AE title) with the provider's address where one is set.
pub fn worklist_target(backend: Backend, s: &Settings) -> Result<Settings, PacsError> {
    if backend == Backend::Dicomweb && s.worklist_host.is_empty() {
        return Err(PacsError::configuration(format!(
            "the worklist is asked by DICOM C-FIND: set the worklist provider's host, port and AE title ({})",
            Key::WorklistHost.names().json
        )));
    }
    let mut t = s.clone();
    if !s.worklist_called_aet.is_empty() {
        t.pacs_called_aet = s.worklist_called_aet.clone();
    }
    if !s.worklist_host.is_empty() {
        t.pacs_host = s.worklist_host.clone();
    }
    if s.worklist_port != 0 {
        t.pacs_port = s.worklist_port;
    }
    Ok(t)
}

fn describe(t: &Settings) -> String {
    format!("{}@{}:{}", t.pacs_called_aet, t.pacs_host, t.pacs_port)
}

/// Today's date for the demo and the tests.
pub fn local_today() -> NaiveDate {
    Local::now().date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_control_characters_are_never_sent() {
        assert_eq!(check_lookup_id("  A123 "), Ok("A123"));
        for bad in ["*", "A*", "A?", "A\\B", "A\nB"] {
            assert_eq!(check_lookup_id(bad), Err(LookupRefused::Wildcard), "{bad}");
        }
        assert_eq!(check_lookup_id(" "), Err(LookupRefused::Empty));
        assert_eq!(
            check_lookup_id(&"9".repeat(65)),
            Err(LookupRefused::TooLong)
        );
    }

    #[test]
    fn the_provider_defaults_to_the_pacs() {
        let s = Settings::default();
        let t = worklist_target(Backend::Cstore, &s).unwrap();
        assert_eq!(describe(&t), "PACS@127.0.0.1:104");
        let s = Settings {
            worklist_called_aet: "WLM".into(),
            worklist_host: "10.0.0.9".into(),
            worklist_port: 1070,
            ..Settings::default()
        };
        assert_eq!(
            describe(&worklist_target(Backend::Cstore, &s).unwrap()),
            "WLM@10.0.0.9:1070"
        );
        assert!(worklist_target(Backend::Dicomweb, &Settings::default()).is_err());
    }

    #[tokio::test]
    async fn the_demo_lists_todays_entries_and_finds_their_patients() {
        let r = Reception::new(Backend::Mock, 200);
        let s = Settings {
            worklist_enabled: true,
            ..Settings::default()
        };
        let today = r.today(&s, false).await.unwrap();
        assert!(today.demo && today.entries.len() == 3);
        let again = r.today(&s, false).await.unwrap();
        assert!(Arc::ptr_eq(&today, &again), "served from memory");
        let sender = Sender::for_backend(Backend::Mock);
        let found = r.lookup(&sender, &s, "DEMO002").await.unwrap();
        assert_eq!(found.found.unwrap().patient.id, "DEMO002");
        assert!(
            r.lookup(&sender, &s, "NOBODY")
                .await
                .unwrap()
                .found
                .is_none()
        );
        let off = Settings {
            worklist_enabled: false,
            ..s
        };
        assert!(!r.today(&off, false).await.unwrap().enabled);
    }
}
