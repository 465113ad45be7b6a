//! What the outbox keeps about a study: the record written once before commit, and the
//! delivery state that changes with each attempt. Neither holds patient data: the patient
//! is only in the DICOM objects beside them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::dicom::TransferSyntax;
use crate::pacs::{Destination, InstanceStatus, PacsError};

/// The record's format; a newer gateway reads older records.
pub const RECORD_VERSION: u32 = 1;

/// Written once, before the commit record, never changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub version: u32,
    pub id: String,
    /// Upload order: the worker delivers the lowest first. A counter rather than a clock,
    /// because a box without a battery clock can start with the wrong time.
    pub seq: u64,
    pub created: DateTime<Utc>,
    /// The phone's `Idempotency-Key`: a second submission with it answers this study.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    /// Where the study was made for.
    pub destination: Destination,
    pub instances: Vec<RecordInstance>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordInstance {
    /// 1-based position in the submission.
    pub index: u32,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    /// The transfer syntax the file is written in (its UID).
    pub transfer_syntax: String,
    /// The file's name in the study's directory.
    pub file: String,
}

impl RecordInstance {
    pub fn transfer_syntax(&self) -> Option<TransferSyntax> {
        TransferSyntax::from_uid(&self.transfer_syntax)
    }
}

/// One instance's delivery so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Not delivered yet; will be tried (again).
    Pending,
    Stored,
    /// Stored, with a warning from the PACS.
    Warning,
    /// Refused for good (or our configuration is wrong): waits for an admin.
    Failed,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Pending => "queued",
            Delivery::Stored => "success",
            Delivery::Warning => "warning",
            Delivery::Failed => "failed",
        }
    }

    pub fn is_stored(self) -> bool {
        matches!(self, Delivery::Stored | Delivery::Warning)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceState {
    pub delivery: Delivery,
    /// The PACS's warning for a stored instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The last failure, kept while the instance waits for another try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<PacsError>,
    /// Fields a newer version wrote (read after a rollback): kept, so the rewrite after the
    /// next attempt does not take them from it when it runs again.
    #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
    pub newer: Map<String, Value>,
}

impl InstanceState {
    pub fn pending() -> Self {
        InstanceState {
            delivery: Delivery::Pending,
            warning: None,
            error: None,
            newer: Map::new(),
        }
    }

    /// Takes in what the PACS said. A stored instance stays stored whatever comes later.
    pub fn apply(&mut self, status: &InstanceStatus) {
        if self.delivery.is_stored() {
            return;
        }
        match status {
            InstanceStatus::Success => {
                self.delivery = Delivery::Stored;
                self.error = None;
            }
            InstanceStatus::Warning(w) => {
                self.delivery = Delivery::Warning;
                self.warning = Some(w.clone());
                self.error = None;
            }
            InstanceStatus::Failed(e) => {
                self.delivery = if e.is_transient() {
                    Delivery::Pending
                } else {
                    Delivery::Failed
                };
                self.error = Some(e.clone());
            }
        }
    }

    /// What to show beside the instance: the warning, or the failure.
    pub fn reason(&self) -> Option<String> {
        match self.delivery {
            Delivery::Warning => self.warning.clone(),
            Delivery::Stored => None,
            Delivery::Pending | Delivery::Failed => self.error.as_ref().map(|e| e.message.clone()),
        }
    }
}

/// Rewritten after every change; the only file of a study that does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Where it goes now: the one it was made for, unless an admin sent it elsewhere.
    pub destination: Destination,
    pub instances: Vec<InstanceState>,
    pub attempts: u32,
    #[serde(default)]
    pub last_attempt: Option<DateTime<Utc>>,
    #[serde(default)]
    pub next_attempt: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_error: Option<PacsError>,
    /// When nothing was left to try (all stored, or the rest refused).
    #[serde(default)]
    pub finished: Option<DateTime<Utc>>,
    /// The DICOM files were removed after delivery (KEEP_FILES_ON_SUCCESS off).
    #[serde(default)]
    pub files_removed: bool,
    /// Fields a newer version wrote (read after a rollback), kept through every rewrite:
    /// this is the one file of a study that changes, and the newer version may run again.
    #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
    pub newer: Map<String, Value>,
}

impl State {
    pub fn new(record: &Record) -> Self {
        State {
            destination: record.destination.clone(),
            instances: record
                .instances
                .iter()
                .map(|_| InstanceState::pending())
                .collect(),
            attempts: 0,
            last_attempt: None,
            next_attempt: None,
            last_error: None,
            finished: None,
            files_removed: false,
            newer: Map::new(),
        }
    }

    pub fn has_pending(&self) -> bool {
        self.instances
            .iter()
            .any(|i| i.delivery == Delivery::Pending)
    }

    /// The study's state as the API names it; `sending` is known only in memory.
    pub fn study_state(&self, sending: bool) -> StudyState {
        if sending {
            return StudyState::Sending;
        }
        if self.has_pending() {
            return StudyState::Queued;
        }
        let stored = self
            .instances
            .iter()
            .filter(|i| i.delivery.is_stored())
            .count();
        match stored {
            n if n == self.instances.len() => StudyState::Stored,
            0 => StudyState::Failed,
            _ => StudyState::Partial,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StudyState {
    /// Waiting for its next attempt.
    Queued,
    Sending,
    /// Every instance is in the PACS.
    Stored,
    /// Some stored, the rest refused.
    Partial,
    /// Every instance refused.
    Failed,
}

impl StudyState {
    pub fn as_str(self) -> &'static str {
        match self {
            StudyState::Queued => "queued",
            StudyState::Sending => "sending",
            StudyState::Stored => "stored",
            StudyState::Partial => "partial",
            StudyState::Failed => "failed",
        }
    }

    /// Still on its way: the upload answer is 202.
    pub fn in_progress(self) -> bool {
        matches!(self, StudyState::Queued | StudyState::Sending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Record {
        Record {
            version: RECORD_VERSION,
            id: "abc".into(),
            seq: 1,
            created: Utc::now(),
            idempotency_key: None,
            study_instance_uid: "2.25.1".into(),
            series_instance_uid: "2.25.2".into(),
            destination: Destination::Dicomweb {
                base_url: "http://127.0.0.1:9/dicom-web".into(),
            },
            instances: (1..=n as u32)
                .map(|i| RecordInstance {
                    index: i,
                    sop_instance_uid: format!("2.25.{}", 10 + i),
                    sop_class_uid: crate::dicom::uid::SECONDARY_CAPTURE.into(),
                    transfer_syntax: TransferSyntax::ImplicitVrLittleEndian.uid().into(),
                    file: format!("{i:03}.dcm"),
                })
                .collect(),
        }
    }

    #[test]
    fn states_follow_the_instances() {
        let mut s = State::new(&record(2));
        assert_eq!(s.study_state(false), StudyState::Queued);
        assert_eq!(s.study_state(true), StudyState::Sending);
        s.instances[0].apply(&InstanceStatus::Success);
        s.instances[1].apply(&InstanceStatus::Failed(PacsError::transient("busy")));
        assert_eq!(
            s.study_state(false),
            StudyState::Queued,
            "the busy one waits"
        );
        s.instances[1].apply(&InstanceStatus::Failed(PacsError::permanent("no")));
        assert_eq!(s.study_state(false), StudyState::Partial);
        let mut all_refused = State::new(&record(1));
        all_refused.instances[0].apply(&InstanceStatus::Failed(PacsError::permanent("no")));
        assert_eq!(all_refused.study_state(false), StudyState::Failed);
    }

    #[test]
    fn a_stored_instance_stays_stored() {
        let mut i = InstanceState::pending();
        i.apply(&InstanceStatus::Warning("coerced".into()));
        i.apply(&InstanceStatus::Failed(PacsError::permanent("late")));
        assert_eq!(i.delivery, Delivery::Warning);
        assert_eq!(i.reason().as_deref(), Some("coerced"));
    }

    /// A newer version's record and state (more fields, here and in nested objects) are read
    /// by this one; the state, which this version rewrites, keeps them.
    #[test]
    fn fields_a_newer_version_adds_are_read_past_and_the_state_keeps_them() {
        use serde_json::json;
        let r = record(1);
        let mut newer = serde_json::to_value(&r).unwrap();
        newer["priority"] = json!("urgent");
        newer["instances"][0]["thumbnail"] = json!("001.jpg");
        newer["destination"]["profile"] = json!("fast");
        assert_eq!(serde_json::from_value::<Record>(newer).unwrap(), r);

        let mut newer = serde_json::to_value(State::new(&r)).unwrap();
        newer["deliveredVia"] = json!({"node": "b"});
        newer["instances"][0]["ackedAt"] = json!("2026-11-30T10:00:00Z");
        let mut s: State = serde_json::from_value(newer).unwrap();
        s.instances[0].apply(&InstanceStatus::Success);
        s.attempts += 1;
        let written = serde_json::to_value(&s).unwrap();
        assert_eq!(written["deliveredVia"], json!({"node": "b"}));
        assert_eq!(written["instances"][0]["ackedAt"], "2026-11-30T10:00:00Z");
        assert_eq!(written["instances"][0]["delivery"], "stored");
        assert_eq!(written["attempts"], 1);
    }

    #[test]
    fn record_and_state_round_trip_through_json() {
        let r = record(2);
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), r);
        let mut s = State::new(&r);
        s.instances[0].apply(&InstanceStatus::Failed(PacsError::transient("down")));
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<State>(&text).unwrap(), s);
    }
}
