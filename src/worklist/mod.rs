//! The Modality Worklist: which patients are scheduled for this camera, read from the
//! worklist provider by C-FIND (PS3.4 K.6.1), each entry with the order it fulfils.

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use dicom_core::{DataElement, PrimitiveValue, VR, value::DataSetSequence};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::config::Settings;
use crate::dicom::uid::MODALITY_WORKLIST_FIND;
use crate::dicom::value::{self, text, texts};
use crate::pacs::PacsError;
use crate::pacs::dimse::find;
use crate::study::{Code, Order, Patient};

/// What to ask the worklist provider for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Modality (0008,0060) of the scheduled step, e.g. `XC`; empty: any.
    pub modality: String,
    /// Scheduled Station AE Title (0040,0001); empty: any.
    pub station_aet: String,
    /// First and last day of the Scheduled Procedure Step Start Date range.
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// At most this many matches; the provider is told to stop after that.
    pub max: usize,
}

/// One scheduled procedure step.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub patient: Patient,
    pub order: Order,
    /// Scheduled Procedure Step Start Date and Time; the time is midnight when only the
    /// date was given, and the whole is `None` when the date was missing or not a date.
    pub step_start: Option<NaiveDateTime>,
    pub modality: String,
    pub station_aets: Vec<String>,
}

/// What the provider had for the query.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Worklist {
    /// Sorted by step start, entries without one last.
    pub entries: Vec<Entry>,
    /// The provider had more than `max` matches.
    pub truncated: bool,
    /// Matches left out because they had no Study Instance UID or no Patient ID: a photo
    /// taken for them could not be filed under their order.
    pub skipped: usize,
}

/// Patient and order are redacted; the scheduling shows.
impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("patient", &self.patient)
            .field("order", &self.order)
            .field("step_start", &self.step_start)
            .field("modality", &self.modality)
            .field("station_aets", &self.station_aets)
            .finish()
    }
}

/// Asks the provider the settings name (`pacs_called_aet`, `pacs_host`, `pacs_port`,
/// `pacs_tls`, calling as `local_calling_aet`) for the steps `q` describes.
pub async fn query(s: &Settings, q: &Query) -> Result<Worklist, PacsError> {
    let found = find::find(s, MODALITY_WORKLIST_FIND, &identifier(q), q.max).await?;
    Ok(worklist(&found, q))
}

/// The entries of the matches that answer `q`, sorted.
fn worklist(found: &find::Found, q: &Query) -> Worklist {
    let mut list = Worklist {
        truncated: found.truncated,
        ..Worklist::default()
    };
    let mut not_ours = 0;
    for m in &found.matches {
        match entry(m, q) {
            Match::Entry(e) => list.entries.push(*e),
            Match::Incomplete => list.skipped += 1,
            Match::NotOurs => not_ours += 1,
        }
    }
    if not_ours > 0 {
        log::info!(
            "the worklist provider returned {not_ours} entries outside the query (another modality, station or date); left out"
        );
    }
    list.entries
        .sort_by_key(|e| (e.step_start.is_none(), e.step_start));
    list
}

/// The query identifier of PS3.4 K.6.1: return keys for the patient and the requested
/// procedure at the top level, the step's matching keys in one Scheduled Procedure Step
/// Sequence item, and no Query/Retrieve Level (the worklist model has none).
pub fn identifier(q: &Query) -> InMemDicomObject {
    let empty = |tag, vr| DataElement::new(tag, vr, PrimitiveValue::Empty);
    let step = InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::MODALITY,
            VR::CS,
            PrimitiveValue::from(q.modality.as_str()),
        ),
        DataElement::new(
            tags::SCHEDULED_STATION_AE_TITLE,
            VR::AE,
            PrimitiveValue::from(q.station_aet.as_str()),
        ),
        DataElement::new(
            tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
            VR::DA,
            PrimitiveValue::from(format!(
                "{}-{}",
                q.from.format("%Y%m%d"),
                q.to.format("%Y%m%d")
            )),
        ),
        empty(tags::SCHEDULED_PROCEDURE_STEP_START_TIME, VR::TM),
        empty(tags::SCHEDULED_PROCEDURE_STEP_DESCRIPTION, VR::LO),
        empty(tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH),
        DataElement::new(
            tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE,
            VR::SQ,
            DataSetSequence::<InMemDicomObject>::empty(),
        ),
        empty(tags::SCHEDULED_PERFORMING_PHYSICIAN_NAME, VR::PN),
    ]);
    InMemDicomObject::from_element_iter([
        empty(tags::SPECIFIC_CHARACTER_SET, VR::CS),
        empty(tags::ACCESSION_NUMBER, VR::SH),
        empty(tags::REFERRING_PHYSICIAN_NAME, VR::PN),
        empty(tags::PATIENT_NAME, VR::PN),
        empty(tags::PATIENT_ID, VR::LO),
        empty(tags::ISSUER_OF_PATIENT_ID, VR::LO),
        empty(tags::PATIENT_BIRTH_DATE, VR::DA),
        empty(tags::PATIENT_SEX, VR::CS),
        empty(tags::STUDY_INSTANCE_UID, VR::UI),
        empty(tags::REQUESTED_PROCEDURE_DESCRIPTION, VR::LO),
        empty(tags::REQUESTED_PROCEDURE_ID, VR::SH),
        DataElement::new(
            tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![step]),
        ),
    ])
}

/// What one match turned out to be.
enum Match {
    Entry(Box<Entry>),
    /// No Study Instance UID or Patient ID.
    Incomplete,
    /// Outside the query: a provider that ignores a matching key returns those.
    NotOurs,
}

/// Reads one match. The provider's matching is not trusted alone: modality, station and
/// date are checked again here. A value the entry leaves empty matches (many RIS schedule
/// by modality and leave the station open), as does a step start that is not a date.
fn entry(m: &InMemDicomObject, q: &Query) -> Match {
    let steps: Vec<&InMemDicomObject> = m
        .element(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
        .ok()
        .and_then(|e| e.items())
        .map(|items| items.iter().collect())
        .unwrap_or_default();
    let read = |step: Option<&InMemDicomObject>| Step::read(step);
    // A match normally has one step; with several, the one we asked for.
    let step = steps
        .iter()
        .map(|s| read(Some(s)))
        .find(|s| s.is_for(q))
        .unwrap_or_else(|| read(steps.first().copied()));
    if !step.is_for(q) {
        return Match::NotOurs;
    }
    let patient = value::patient(m);
    let study_instance_uid = text(m, tags::STUDY_INSTANCE_UID);
    if patient.id.is_empty() || study_instance_uid.is_empty() {
        return Match::Incomplete;
    }
    let order = Order {
        study_instance_uid,
        accession_number: text(m, tags::ACCESSION_NUMBER),
        requested_procedure_id: text(m, tags::REQUESTED_PROCEDURE_ID),
        requested_procedure_description: text(m, tags::REQUESTED_PROCEDURE_DESCRIPTION),
        step_id: step.id,
        step_description: step.description,
        protocol_codes: step.codes,
    };
    Match::Entry(Box::new(Entry {
        patient,
        order,
        step_start: step.start,
        modality: step.modality,
        station_aets: step.station_aets,
    }))
}

/// The parts of a Scheduled Procedure Step Sequence item we use.
struct Step {
    start: Option<NaiveDateTime>,
    modality: String,
    station_aets: Vec<String>,
    id: String,
    description: String,
    codes: Vec<Code>,
}

impl Step {
    fn read(item: Option<&InMemDicomObject>) -> Step {
        let Some(item) = item else {
            return Step {
                start: None,
                modality: String::new(),
                station_aets: Vec::new(),
                id: String::new(),
                description: String::new(),
                codes: Vec::new(),
            };
        };
        let date = value::date(&text(item, tags::SCHEDULED_PROCEDURE_STEP_START_DATE));
        let time = value::time(&text(item, tags::SCHEDULED_PROCEDURE_STEP_START_TIME));
        Step {
            start: date.map(|d| d.and_time(time.unwrap_or(NaiveTime::MIN))),
            modality: text(item, tags::MODALITY),
            station_aets: texts(item, tags::SCHEDULED_STATION_AE_TITLE),
            id: text(item, tags::SCHEDULED_PROCEDURE_STEP_ID),
            description: text(item, tags::SCHEDULED_PROCEDURE_STEP_DESCRIPTION),
            codes: codes(item),
        }
    }

    fn is_for(&self, q: &Query) -> bool {
        let modality = q.modality.is_empty()
            || self.modality.is_empty()
            || self.modality.eq_ignore_ascii_case(&q.modality);
        let station = q.station_aet.is_empty()
            || self.station_aets.is_empty()
            || self.station_aets.contains(&q.station_aet);
        let day = self
            .start
            .is_none_or(|t| (q.from..=q.to).contains(&t.date()));
        modality && station && day
    }
}

/// The Scheduled Protocol Code Sequence items; a code without a value (short, long or URN)
/// is left out.
fn codes(step: &InMemDicomObject) -> Vec<Code> {
    let Some(items) = step
        .element(tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE)
        .ok()
        .and_then(|e| e.items())
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let value = [
                tags::CODE_VALUE,
                tags::LONG_CODE_VALUE,
                tags::URN_CODE_VALUE,
            ]
            .into_iter()
            .map(|t| text(item, t))
            .find(|v| !v.is_empty())?;
            Some(Code {
                value,
                scheme: text(item, tags::CODING_SCHEME_DESIGNATOR),
                meaning: text(item, tags::CODE_MEANING),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
