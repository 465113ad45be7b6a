use super::*;
use crate::study::Sex;
use chrono::NaiveDate;
use serde_json::json;

fn found(matches: Vec<InMemDicomObject>, truncated: bool) -> Found {
    Found { matches, truncated }
}

fn answer(pairs: &[(dicom_core::Tag, VR, &str)]) -> InMemDicomObject {
    let mut m = InMemDicomObject::new_empty();
    for (tag, vr, v) in pairs {
        m.put_str(*tag, *vr, *v);
    }
    m
}

#[test]
fn the_patient_level_query_asks_by_id_for_the_patient_keys() {
    let q = patient_level_query("A123");
    assert_eq!(text(&q, tags::QUERY_RETRIEVE_LEVEL), "PATIENT");
    assert_eq!(text(&q, tags::PATIENT_ID), "A123");
    for tag in [
        tags::PATIENT_NAME,
        tags::PATIENT_BIRTH_DATE,
        tags::PATIENT_SEX,
        tags::ISSUER_OF_PATIENT_ID,
        tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
        tags::SPECIFIC_CHARACTER_SET,
    ] {
        assert!(q.element(tag).is_ok(), "{tag} asked for");
        assert_eq!(text(&q, tag), "", "{tag} is a return key");
    }
    let s = study_level_query("王1");
    assert_eq!(text(&s, tags::QUERY_RETRIEVE_LEVEL), "STUDY");
    assert!(s.element(tags::STUDY_INSTANCE_UID).is_ok());
    assert_eq!(
        text(&s, tags::SPECIFIC_CHARACTER_SET),
        "ISO_IR 192",
        "a key beyond ASCII says how it is written"
    );
}

#[test]
fn ids_that_would_be_patterns_are_refused() {
    assert_eq!(exact_id(" A123 ").unwrap(), "A123");
    for bad in ["", "  ", "A*", "A?", "A\\B"] {
        assert!(exact_id(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn refusals_of_the_level_fall_back_and_busy_or_cancel_do_not() {
    let status = |c: u16| match crate::pacs::dimse::message::find_status(c, None) {
        crate::pacs::dimse::message::FindStatus::Failed(e) => e,
        other => panic!("{other:?}"),
    };
    for c in [0xA900, 0xC000, 0xC123, 0xAA00, 0x0122] {
        assert!(level_refused(&status(c)), "{c:04X}");
    }
    assert!(
        !level_refused(&status(0xA700)),
        "busy: try later, not elsewhere"
    );
    assert!(!level_refused(&PacsError::transient("connection refused")));
    let cancelled = PacsError::permanent("cancelled").with_code(PacsCode::Dimse(0xFE00));
    assert!(!level_refused(&cancelled));
}

#[test]
fn a_patient_level_answer_gives_the_patient_and_the_study_count() {
    let m = answer(&[
        (tags::PATIENT_ID, VR::LO, "A123"),
        (tags::PATIENT_NAME, VR::PN, "WANG^DA MING"),
        (tags::PATIENT_BIRTH_DATE, VR::DA, "19900115"),
        (tags::PATIENT_SEX, VR::CS, "M"),
        (tags::ISSUER_OF_PATIENT_ID, VR::LO, "HOSP"),
        (tags::NUMBER_OF_PATIENT_RELATED_STUDIES, VR::IS, " 3"),
    ]);
    let other = answer(&[(tags::PATIENT_ID, VR::LO, "a123")]);
    let k = at_patient_level(&found(vec![other, m], false), "A123").unwrap();
    assert_eq!(k.level, Level::Patient);
    assert_eq!(k.studies, Some(3));
    assert_eq!(k.patient.name, "WANG^DA MING");
    assert_eq!(k.patient.birth_date, NaiveDate::from_ymd_opt(1990, 1, 15));
    assert_eq!(k.patient.sex, Sex::Male);
    assert_eq!(k.patient.issuer, "HOSP");
    assert!(at_patient_level(&found(vec![], false), "A123").is_none());
    let no_count = answer(&[(tags::PATIENT_ID, VR::LO, "A123")]);
    assert_eq!(
        at_patient_level(&found(vec![no_count], false), "A123")
            .unwrap()
            .studies,
        None
    );
}

#[test]
fn a_study_level_answer_counts_distinct_studies() {
    let study = |uid: &str| {
        answer(&[
            (tags::PATIENT_ID, VR::LO, "A123"),
            (tags::PATIENT_NAME, VR::PN, "WANG^DA MING"),
            (tags::STUDY_INSTANCE_UID, VR::UI, uid),
        ])
    };
    let f = found(vec![study("1.2.1"), study("1.2.2"), study("1.2.1")], false);
    let k = at_study_level(&f, "A123").unwrap();
    assert_eq!((k.level, k.studies), (Level::Study, Some(2)));
    assert_eq!(k.patient.name, "WANG^DA MING");
    let cut = found(vec![study("1.2.1")], true);
    assert_eq!(at_study_level(&cut, "A123").unwrap().studies, None);
    assert!(at_study_level(&found(vec![], false), "A123").is_none());
}

#[test]
fn a_qido_answer_is_read_back_to_dicom_form() {
    let studies = vec![
        json!({
            "00100020": {"vr": "LO", "Value": ["A123"]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Wang^Daming", "Ideographic": "王^大明"}]},
            "00100030": {"vr": "DA", "Value": ["19900115"]},
            "00100040": {"vr": "CS", "Value": ["F"]},
            "00100021": {"vr": "LO", "Value": ["HOSP"]},
            "0020000D": {"vr": "UI", "Value": ["1.2.1"]}
        }),
        json!({
            "00100020": {"vr": "LO", "Value": ["A123"]},
            "0020000D": {"vr": "UI", "Value": ["1.2.2"]}
        }),
        json!({"00100020": {"vr": "LO", "Value": ["A1234"]}}),
    ];
    let k = from_qido(&studies, "A123").unwrap();
    assert_eq!(k.level, Level::Qido);
    assert_eq!(k.studies, Some(2));
    assert_eq!(k.patient.id, "A123");
    assert_eq!(k.patient.name, "Wang^Daming=王^大明");
    assert_eq!(k.patient.birth_date, NaiveDate::from_ymd_opt(1990, 1, 15));
    assert_eq!(k.patient.sex, Sex::Female);
    assert_eq!(k.patient.issuer, "HOSP");
    let bare = vec![json!({"00100020": {"vr": "LO", "Value": ["B1"]}, "00100010": {"vr": "PN"}})];
    let k = from_qido(&bare, "B1").unwrap();
    assert_eq!(k.patient.name, "");
    assert_eq!(k.patient.birth_date, None);
    assert!(from_qido(&[], "A123").is_none());
}

#[test]
fn a_known_patient_shows_no_patient_data_in_debug() {
    let m = answer(&[
        (tags::PATIENT_ID, VR::LO, "SECRETID"),
        (tags::PATIENT_NAME, VR::PN, "SECRET^NAME"),
    ]);
    let k = at_patient_level(&found(vec![m], false), "SECRETID").unwrap();
    let shown = format!("{k:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
}
