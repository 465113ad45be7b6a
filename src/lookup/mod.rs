//! Patient lookup: what the PACS already knows about a patient ID (name, birth date, sex,
//! issuer, how many studies), by C-FIND or QIDO-RS, so that staff confirm the right
//! patient before sending.

use std::collections::HashSet;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde_json::Value;

use crate::config::Settings;
use crate::dicom::uid::{PATIENT_ROOT_FIND, STUDY_ROOT_FIND};
use crate::dicom::value::{self, text};
use crate::pacs::dimse::{FindError, Found, find};
use crate::pacs::{DicomwebClients, FailureClass, PacsCode, PacsError};
use crate::study::Patient;

/// At most this many matches are read; one patient ID should give one patient, and at
/// study level one match per study.
const MAX_MATCHES: usize = 500;

/// A patient the PACS knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// Redacted in `Debug`.
    pub patient: Patient,
    /// How many studies the PACS holds for the patient; `None` when it did not say, or
    /// had more than we read.
    pub studies: Option<u32>,
    /// How the answer was found.
    pub level: Level,
}

/// Which query found the patient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// C-FIND, Patient Root, PATIENT level.
    Patient,
    /// C-FIND, Study Root, STUDY level: for a PACS that does not answer at PATIENT level.
    Study,
    /// QIDO-RS, `GET /studies`.
    Qido,
}

/// Looks `patient_id` up by C-FIND at PATIENT level; where the PACS refuses that query
/// (no Patient Root context, or a failure status), at STUDY level instead.
pub async fn by_cfind(s: &Settings, patient_id: &str) -> Result<Option<Known>, PacsError> {
    let id = exact_id(patient_id)?;
    match find(s, PATIENT_ROOT_FIND, &patient_level_query(id), MAX_MATCHES).await {
        Ok(found) => return Ok(at_patient_level(&found, id)),
        Err(FindError::Unsupported(_)) => {
            log::info!("the PACS does not take Patient Root queries: asking at study level");
        }
        Err(FindError::Failed(e)) if level_refused(&e) => {
            // The PACS's comment may quote the query: only its code is logged.
            let code = e.code.map(PacsCode::label).unwrap_or_default();
            log::info!("the PACS refused the patient-level query ({code}): asking at study level");
        }
        Err(FindError::Failed(e)) => return Err(e),
    }
    let found = find(s, STUDY_ROOT_FIND, &study_level_query(id), MAX_MATCHES).await?;
    Ok(at_study_level(&found, id))
}

/// Looks `patient_id` up by QIDO-RS (`GET {base}/studies?PatientID=...`) with the DICOMweb
/// settings; asks only for the patient's fields (no `includefield=all`, no sequences).
pub async fn by_qido(
    clients: &DicomwebClients,
    s: &Settings,
    patient_id: &str,
) -> Result<Option<Known>, PacsError> {
    let id = exact_id(patient_id)?;
    let limit = MAX_MATCHES.to_string();
    let params = [
        ("PatientID", id),
        ("includefield", "00100010"),
        ("includefield", "00100030"),
        ("includefield", "00100040"),
        ("includefield", "00100021"),
        ("limit", limit.as_str()),
    ];
    let studies = clients.search(s, "studies", &params).await?;
    Ok(from_qido(&studies, id))
}

/// The ID as the PACS should match it: exactly. `*` and `?` would be wildcards and `\`
/// a list of values, so an ID holding one cannot be looked up.
fn exact_id(patient_id: &str) -> Result<&str, PacsError> {
    let id = patient_id.trim();
    if id.is_empty() {
        return Err(PacsError::permanent(
            "a patient ID is needed to look a patient up",
        ));
    }
    if id.contains(['*', '?', '\\']) {
        return Err(PacsError::permanent(
            "a patient ID holding *, ? or \\ cannot be looked up: the PACS would read it as a pattern",
        ));
    }
    Ok(id)
}

/// A failure status that says the PACS does not answer this query at this level (A900,
/// Cxxx, 0122, ...), as opposed to one that is busy (A7xx) or a cancel.
fn level_refused(e: &PacsError) -> bool {
    matches!(e.code, Some(PacsCode::Dimse(c)) if c != 0xFE00) && e.class == FailureClass::Permanent
}

/// The patient keys every lookup asks for; Specific Character Set says how our key is
/// written when it is not plain ASCII.
fn patient_keys(level: &str, id: &str) -> Vec<DataElement<InMemDicomObject>> {
    let empty = |tag, vr| DataElement::new(tag, vr, PrimitiveValue::Empty);
    let charset = if id.is_ascii() {
        empty(tags::SPECIFIC_CHARACTER_SET, VR::CS)
    } else {
        DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from("ISO_IR 192"),
        )
    };
    vec![
        charset,
        DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from(level),
        ),
        empty(tags::PATIENT_NAME, VR::PN),
        DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from(id)),
        empty(tags::ISSUER_OF_PATIENT_ID, VR::LO),
        empty(tags::PATIENT_BIRTH_DATE, VR::DA),
        empty(tags::PATIENT_SEX, VR::CS),
    ]
}

fn patient_level_query(id: &str) -> InMemDicomObject {
    let mut keys = patient_keys("PATIENT", id);
    keys.push(DataElement::new(
        tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
        VR::IS,
        PrimitiveValue::Empty,
    ));
    InMemDicomObject::from_element_iter(keys)
}

fn study_level_query(id: &str) -> InMemDicomObject {
    let mut keys = patient_keys("STUDY", id);
    keys.push(DataElement::new(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::Empty,
    ));
    InMemDicomObject::from_element_iter(keys)
}

/// The matches that are this very ID (a PACS may match case-insensitively, or ignore the
/// key).
fn same_id<'a>(found: &'a Found, id: &'a str) -> impl Iterator<Item = &'a InMemDicomObject> {
    found
        .matches
        .iter()
        .filter(move |m| text(m, tags::PATIENT_ID) == id)
}

fn at_patient_level(found: &Found, id: &str) -> Option<Known> {
    let mut matches = same_id(found, id);
    let first = matches.next()?;
    if matches.next().is_some() {
        log::warn!("the PACS has several patients under one patient ID; the first is shown");
    }
    Some(Known {
        patient: value::patient(first),
        studies: text(first, tags::NUMBER_OF_PATIENT_RELATED_STUDIES)
            .parse()
            .ok(),
        level: Level::Patient,
    })
}

fn at_study_level(found: &Found, id: &str) -> Option<Known> {
    let matches: Vec<_> = same_id(found, id).collect();
    let first = matches.first()?;
    let uids: HashSet<String> = matches
        .iter()
        .map(|m| text(m, tags::STUDY_INSTANCE_UID))
        .filter(|u| !u.is_empty())
        .collect();
    Some(Known {
        patient: value::patient(first),
        studies: (!found.truncated).then_some(uids.len() as u32),
        level: Level::Study,
    })
}

/// Reads a QIDO-RS study search answer (DICOM JSON, PS3.18 F.2).
fn from_qido(studies: &[Value], id: &str) -> Option<Known> {
    let matches: Vec<&Value> = studies
        .iter()
        .filter(|m| json_text(m, "00100020") == id)
        .collect();
    let first = matches.first()?;
    let uids: HashSet<String> = matches
        .iter()
        .map(|m| json_text(m, "0020000D"))
        .filter(|u| !u.is_empty())
        .collect();
    let patient = Patient {
        id: id.to_string(),
        name: json_person_name(first, "00100010"),
        birth_date: value::date(&json_text(first, "00100030")),
        sex: value::sex(&json_text(first, "00100040")),
        issuer: json_text(first, "00100021"),
    };
    Some(Known {
        patient,
        studies: (studies.len() < MAX_MATCHES).then_some(uids.len() as u32),
        level: Level::Qido,
    })
}

/// The first value of a text attribute in DICOM JSON, trimmed; empty when absent.
fn json_text(obj: &Value, tag: &str) -> String {
    let v = &obj[tag]["Value"][0];
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    text.trim_matches([' ', '\0']).to_string()
}

/// A PN value in DICOM JSON (`{"Alphabetic": ..., "Ideographic": ..., "Phonetic": ...}`)
/// back in the `^`/`=` form the rest of the gateway keeps.
fn json_person_name(obj: &Value, tag: &str) -> String {
    let v = &obj[tag]["Value"][0];
    if let Some(s) = v.as_str() {
        return value::person_name(s);
    }
    let group = |name: &str| v[name].as_str().unwrap_or_default().to_string();
    value::person_name(&format!(
        "{}={}={}",
        group("Alphabetic"),
        group("Ideographic"),
        group("Phonetic")
    ))
}

#[cfg(test)]
mod tests;
