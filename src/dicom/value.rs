//! Values read leniently from data sets other systems wrote (query answers): trimmed
//! text, person names, dates and times, and the patient they describe.

use chrono::{NaiveDate, NaiveTime};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::study::{Patient, Sex};

/// Pads and leading spaces a sender may leave around a value.
const PAD: [char; 2] = [' ', '\0'];

/// The text of `tag`, trimmed; empty when missing, empty or not text. A multi-valued
/// element keeps its values joined by `\`.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_matches(PAD).to_string())
        .unwrap_or_default()
}

/// Each value of a multi-valued element (AE titles), trimmed, empty ones left out.
pub fn texts(obj: &InMemDicomObject, tag: Tag) -> Vec<String> {
    let Some(values) = obj.element(tag).ok().and_then(|e| e.to_multi_str().ok()) else {
        return Vec::new();
    };
    values
        .iter()
        .flat_map(|v| v.split('\\'))
        .map(|v| v.trim_matches(PAD).to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// A person name in its DICOM form (`WANG^DA MING`, groups joined by `=`), with trailing
/// empty components and groups dropped so that `WANG^DA MING^^` and `WANG^DA MING` agree.
pub fn person_name(raw: &str) -> String {
    let mut groups: Vec<&str> = raw
        .trim_matches(PAD)
        .split('=')
        .map(|g| g.trim_matches(PAD).trim_end_matches('^'))
        .collect();
    while groups.last().is_some_and(|g| g.is_empty()) {
        groups.pop();
    }
    groups.join("=")
}

/// A DA value (`YYYYMMDD`, or the old `YYYY.MM.DD`); `None` when empty or not a date.
pub fn date(raw: &str) -> Option<NaiveDate> {
    let digits: String = raw
        .trim_matches(PAD)
        .chars()
        .filter(|c| *c != '.')
        .collect();
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(&digits, "%Y%m%d").ok()
}

/// A TM value (`HH`, `HHMM`, `HHMMSS`, `HHMMSS.FFFFFF`, or the old `HH:MM:SS`); `None`
/// when empty or not a time.
pub fn time(raw: &str) -> Option<NaiveTime> {
    let t: String = raw
        .trim_matches(PAD)
        .chars()
        .filter(|c| *c != ':')
        .collect();
    let (whole, fraction) = t.split_once('.').unwrap_or((&t, ""));
    if whole.is_empty() || whole.len() % 2 != 0 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let part = |i: usize| whole.get(i..i + 2).map_or(Some(0), |p| p.parse().ok());
    let micros = if fraction.is_empty() {
        0
    } else if fraction.len() <= 6 && fraction.bytes().all(|b| b.is_ascii_digit()) {
        format!("{fraction:0<6}").parse().ok()?
    } else {
        return None;
    };
    // 60 seconds (a leap second) is valid DICOM; chrono spells it as 59 s and a fraction.
    let seconds = part(4)?.min(59);
    NaiveTime::from_hms_micro_opt(part(0)?, part(2)?, seconds, micros)
}

/// The patient a query answer describes (Patient module attributes); missing ones empty.
pub fn patient(obj: &InMemDicomObject) -> Patient {
    Patient {
        id: text(obj, tags::PATIENT_ID),
        name: person_name(&text(obj, tags::PATIENT_NAME)),
        birth_date: date(&text(obj, tags::PATIENT_BIRTH_DATE)),
        sex: sex(&text(obj, tags::PATIENT_SEX)),
        issuer: text(obj, tags::ISSUER_OF_PATIENT_ID),
    }
}

/// Patient's Sex: `M`, `F`, `O`; anything else is unknown.
pub fn sex(code: &str) -> Sex {
    match code.trim_matches(PAD).to_ascii_uppercase().as_str() {
        "M" => Sex::Male,
        "F" => Sex::Female,
        "O" => Sex::Other,
        _ => Sex::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::VR;

    #[test]
    fn names_lose_their_trailing_empty_parts_only() {
        assert_eq!(person_name("WANG^DA MING^^ "), "WANG^DA MING");
        assert_eq!(person_name("Wang^Daming=王^大明="), "Wang^Daming=王^大明");
        assert_eq!(person_name("=王^大明"), "=王^大明");
        assert_eq!(person_name("\0"), "");
    }

    #[test]
    fn dates_and_times_are_read_or_none() {
        assert_eq!(date("19900115 "), NaiveDate::from_ymd_opt(1990, 1, 15));
        assert_eq!(date("1990.01.15"), NaiveDate::from_ymd_opt(1990, 1, 15));
        for bad in ["", "1990", "19901345", "abcdefgh", "19900115-19900116"] {
            assert_eq!(date(bad), None, "{bad:?}");
        }
        assert_eq!(time("0930"), NaiveTime::from_hms_opt(9, 30, 0));
        assert_eq!(time("09"), NaiveTime::from_hms_opt(9, 0, 0));
        assert_eq!(
            time("093015.5 "),
            NaiveTime::from_hms_micro_opt(9, 30, 15, 500_000)
        );
        assert_eq!(time("09:30:15"), NaiveTime::from_hms_opt(9, 30, 15));
        for bad in ["", "9", "2500", "0930.1234567", "ab"] {
            assert_eq!(time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn padded_and_multi_valued_text_is_trimmed() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put_str(tags::PATIENT_ID, VR::LO, " A123 \0");
        obj.put_str(tags::SCHEDULED_STATION_AE_TITLE, VR::AE, "CAM1 \\ \\CAM2");
        assert_eq!(text(&obj, tags::PATIENT_ID), "A123");
        assert_eq!(
            texts(&obj, tags::SCHEDULED_STATION_AE_TITLE),
            ["CAM1", "CAM2"]
        );
        assert_eq!(text(&obj, tags::PATIENT_NAME), "");
        assert!(texts(&obj, tags::MODALITY).is_empty());
    }
}
