//! The study a submission describes: patient and exam, already validated.
//!
//! These values are patient data. Nothing here implements `Display`, and `Debug` is
//! redacted, so a stray `{:?}` in a log line cannot leak them.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sex {
    Male,
    Female,
    Other,
    /// Not given, or given as `U`: DICOM has no "unknown" code, so it is written empty.
    Unknown,
}

impl Sex {
    /// The Patient's Sex (0010,0040) code string.
    pub fn dicom_code(self) -> &'static str {
        match self {
            Sex::Male => "M",
            Sex::Female => "F",
            Sex::Other => "O",
            Sex::Unknown => "",
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Patient {
    pub id: String,
    /// Empty when not given.
    pub name: String,
    pub birth_date: Option<NaiveDate>,
    pub sex: Sex,
    /// Issuer of Patient ID (0010,0021): whose numbering `id` is in. Empty when unknown.
    pub issuer: String,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Exam {
    /// When the photos were taken, with the offset it was given in (or the box's own).
    pub time: DateTime<FixedOffset>,
    /// Empty when not given.
    pub description: String,
    /// How far the phone's clock was ahead of the box's when the study arrived (zero when
    /// the client sent no time): the box's own times in the objects (instance creation)
    /// are corrected by it, so every time in an object reads on the same clock.
    pub clock_correction: chrono::Duration,
}

/// A coded entry (Code Value, Coding Scheme Designator, Code Meaning), e.g. one item of
/// the Scheduled Protocol Code Sequence.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Code {
    pub value: String,
    pub scheme: String,
    pub meaning: String,
}

/// The order a study fulfils, as the Modality Worklist scheduled it: the objects reuse its
/// Study Instance UID and carry its Accession Number and one Request Attributes Sequence
/// item, so the PACS matches them to the order without anyone fixing them by hand.
#[derive(Clone, PartialEq, Eq)]
pub struct Order {
    pub study_instance_uid: String,
    /// Empty when the worklist gave none.
    pub accession_number: String,
    pub requested_procedure_id: String,
    pub requested_procedure_description: String,
    pub step_id: String,
    pub step_description: String,
    pub protocol_codes: Vec<Code>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Study {
    pub patient: Patient,
    pub exam: Exam,
    /// Set when the study was picked from the worklist.
    pub order: Option<Order>,
}

impl Study {
    /// The Study Instance UID its objects carry: the order's, when the worklist scheduled
    /// one (never a new one then), else a new one under `root`.
    pub fn study_uid(&self, root: &crate::dicom::uid::UidRoot) -> String {
        match &self.order {
            Some(order) => order.study_instance_uid.clone(),
            None => root.new_uid(),
        }
    }
}

impl fmt::Debug for Patient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Patient(<redacted>)")
    }
}

impl fmt::Debug for Exam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Exam(<redacted>)")
    }
}

impl fmt::Debug for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Order(<redacted>)")
    }
}

impl fmt::Debug for Study {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Study(<redacted>)")
    }
}
