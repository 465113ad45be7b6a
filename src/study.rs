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
}

#[derive(Clone, PartialEq, Eq)]
pub struct Exam {
    /// When the photos were taken, with the offset it was given in (or the box's own).
    pub time: DateTime<FixedOffset>,
    /// Empty when not given.
    pub description: String,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Study {
    pub patient: Patient,
    pub exam: Exam,
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

impl fmt::Debug for Study {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Study(<redacted>)")
    }
}
