use super::*;
use crate::pacs::dimse::Found;
use crate::study::Sex;
use dicom_core::Tag;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 5, d).unwrap()
}

fn q() -> Query {
    Query {
        modality: "XC".into(),
        station_aet: "CAM1".into(),
        from: day(2),
        to: day(2),
        max: 50,
    }
}

/// A match as a provider sends it: the top-level `top` elements and one step with `step`.
fn a_match(top: &[(Tag, VR, &str)], step: &[(Tag, VR, &str)]) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    for (tag, vr, v) in step {
        item.put_str(*tag, *vr, *v);
    }
    let mut m = InMemDicomObject::new_empty();
    for (tag, vr, v) in top {
        m.put_str(*tag, *vr, *v);
    }
    m.put(DataElement::new(
        tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![item]),
    ));
    m
}

fn complete(id: &str, uid: &str) -> Vec<(Tag, VR, &'static str)> {
    vec![
        (
            tags::PATIENT_ID,
            VR::LO,
            Box::leak(id.to_string().into_boxed_str()),
        ),
        (
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            Box::leak(uid.to_string().into_boxed_str()),
        ),
    ]
}

fn xc_step(date: &'static str, time: &'static str) -> Vec<(Tag, VR, &'static str)> {
    vec![
        (tags::MODALITY, VR::CS, "XC"),
        (tags::SCHEDULED_STATION_AE_TITLE, VR::AE, "CAM1"),
        (tags::SCHEDULED_PROCEDURE_STEP_START_DATE, VR::DA, date),
        (tags::SCHEDULED_PROCEDURE_STEP_START_TIME, VR::TM, time),
    ]
}

fn found(matches: Vec<InMemDicomObject>) -> Found {
    Found {
        matches,
        truncated: false,
    }
}

fn is_zero_length(obj: &InMemDicomObject, tag: Tag) -> bool {
    obj.element(tag)
        .unwrap_or_else(|_| panic!("{tag} missing"))
        .to_str()
        .is_ok_and(|v| v.is_empty())
}

#[test]
fn the_identifier_follows_k_6_1() {
    let id = identifier(&Query {
        from: day(1),
        to: day(3),
        ..q()
    });
    assert!(
        id.element(tags::QUERY_RETRIEVE_LEVEL).is_err(),
        "no Query/Retrieve Level in a worklist query"
    );
    for tag in [
        tags::SPECIFIC_CHARACTER_SET,
        tags::PATIENT_NAME,
        tags::PATIENT_ID,
        tags::ISSUER_OF_PATIENT_ID,
        tags::PATIENT_BIRTH_DATE,
        tags::PATIENT_SEX,
        tags::ACCESSION_NUMBER,
        tags::STUDY_INSTANCE_UID,
        tags::REQUESTED_PROCEDURE_ID,
        tags::REQUESTED_PROCEDURE_DESCRIPTION,
        tags::REFERRING_PHYSICIAN_NAME,
    ] {
        assert!(
            is_zero_length(&id, tag),
            "{tag} is a zero-length return key"
        );
    }
    let items = id
        .element(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    assert_eq!(items.len(), 1, "one step item holds the step's keys");
    let step = &items[0];
    assert_eq!(text(step, tags::MODALITY), "XC");
    assert_eq!(text(step, tags::SCHEDULED_STATION_AE_TITLE), "CAM1");
    assert_eq!(
        text(step, tags::SCHEDULED_PROCEDURE_STEP_START_DATE),
        "20240501-20240503"
    );
    for tag in [
        tags::SCHEDULED_PROCEDURE_STEP_START_TIME,
        tags::SCHEDULED_PROCEDURE_STEP_DESCRIPTION,
        tags::SCHEDULED_PROCEDURE_STEP_ID,
        tags::SCHEDULED_PERFORMING_PHYSICIAN_NAME,
    ] {
        assert!(
            is_zero_length(step, tag),
            "{tag} is a zero-length return key"
        );
    }
    assert_eq!(
        step.element(tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE)
            .unwrap()
            .items()
            .map(|i| i.len()),
        Some(0),
        "an empty sequence asks for every code"
    );
    // Both transfer syntaxes the peer may choose can carry it.
    for ts in [
        IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    ] {
        let mut bytes = Vec::new();
        id.write_dataset_with_ts(&mut bytes, &ts).unwrap();
        let back = InMemDicomObject::read_dataset_with_ts(&bytes[..], &ts).unwrap();
        assert_eq!(
            back.element(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
                .unwrap()
                .items()
                .map(|i| i.len()),
            Some(1)
        );
    }
}

#[test]
fn an_empty_modality_and_station_ask_for_any() {
    let id = identifier(&Query {
        modality: String::new(),
        station_aet: String::new(),
        ..q()
    });
    let step = &id
        .element(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0];
    assert!(is_zero_length(step, tags::MODALITY));
    assert!(is_zero_length(step, tags::SCHEDULED_STATION_AE_TITLE));
}

#[test]
fn a_match_is_read_leniently() {
    let mut top = complete("A123 ", "1.2.3.4\0");
    top.extend([
        (tags::PATIENT_NAME, VR::PN, "WANG^DA MING^^"),
        (tags::PATIENT_BIRTH_DATE, VR::DA, "19900115"),
        (tags::PATIENT_SEX, VR::CS, "M "),
        (tags::ISSUER_OF_PATIENT_ID, VR::LO, "HOSP "),
        (tags::ACCESSION_NUMBER, VR::SH, "ACC1 "),
        (tags::REQUESTED_PROCEDURE_ID, VR::SH, "RP1"),
        (
            tags::REQUESTED_PROCEDURE_DESCRIPTION,
            VR::LO,
            "Wound photo ",
        ),
    ]);
    let mut step = vec![
        (tags::MODALITY, VR::CS, "XC"),
        (tags::SCHEDULED_STATION_AE_TITLE, VR::AE, "CAM0\\CAM1 "),
        (
            tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
            VR::DA,
            "20240502",
        ),
        (tags::SCHEDULED_PROCEDURE_STEP_START_TIME, VR::TM, "0930"),
        (tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH, "SPS1"),
        (
            tags::SCHEDULED_PROCEDURE_STEP_DESCRIPTION,
            VR::LO,
            "Left leg",
        ),
    ];
    step.push((tags::SCHEDULED_PERFORMING_PHYSICIAN_NAME, VR::PN, "DOC^TOR"));
    let mut code = InMemDicomObject::new_empty();
    code.put_str(tags::CODE_VALUE, VR::SH, "WND1");
    code.put_str(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "99LOCAL");
    code.put_str(tags::CODE_MEANING, VR::LO, "Wound photography");
    let mut no_value = InMemDicomObject::new_empty();
    no_value.put_str(tags::CODE_MEANING, VR::LO, "nothing");
    let mut item = InMemDicomObject::new_empty();
    for (tag, vr, v) in step {
        item.put_str(tag, vr, v);
    }
    item.put(DataElement::new(
        tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![code, no_value]),
    ));
    let mut m = InMemDicomObject::new_empty();
    for (tag, vr, v) in top {
        m.put_str(tag, vr, v);
    }
    m.put(DataElement::new(
        tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![item]),
    ));
    let list = worklist(&found(vec![m]), &q());
    assert_eq!(list.skipped, 0);
    let e = &list.entries[0];
    assert_eq!(e.patient.id, "A123");
    assert_eq!(e.patient.name, "WANG^DA MING");
    assert_eq!(e.patient.birth_date, NaiveDate::from_ymd_opt(1990, 1, 15));
    assert_eq!(e.patient.sex, Sex::Male);
    assert_eq!(e.patient.issuer, "HOSP");
    assert_eq!(e.order.study_instance_uid, "1.2.3.4");
    assert_eq!(e.order.accession_number, "ACC1");
    assert_eq!(e.order.requested_procedure_id, "RP1");
    assert_eq!(e.order.requested_procedure_description, "Wound photo");
    assert_eq!(e.order.step_id, "SPS1");
    assert_eq!(e.order.step_description, "Left leg");
    assert_eq!(
        e.order.protocol_codes,
        [Code {
            value: "WND1".into(),
            scheme: "99LOCAL".into(),
            meaning: "Wound photography".into()
        }]
    );
    assert_eq!(e.station_aets, ["CAM0", "CAM1"]);
    assert_eq!(e.modality, "XC");
    assert_eq!(
        e.step_start,
        day(2).and_hms_opt(9, 30, 0),
        "date and time together"
    );
}

#[test]
fn missing_values_are_empty_and_a_bad_date_is_none() {
    let bare = {
        let mut m = InMemDicomObject::new_empty();
        for (tag, vr, v) in complete("B1", "1.2.3.5") {
            m.put_str(tag, vr, v);
        }
        m
    };
    let bad_date = a_match(
        &complete("B2", "1.2.3.6"),
        &[
            (tags::MODALITY, VR::CS, "XC"),
            (
                tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
                VR::DA,
                "2024-05-02",
            ),
        ],
    );
    let list = worklist(&found(vec![bare, bad_date]), &q());
    assert_eq!(list.entries.len(), 2);
    let bare = &list.entries[0];
    assert_eq!(bare.patient.name, "");
    assert_eq!(bare.patient.birth_date, None);
    assert_eq!(bare.patient.sex, Sex::Unknown);
    assert_eq!(bare.modality, "");
    assert!(bare.station_aets.is_empty());
    assert_eq!(bare.step_start, None);
    assert!(bare.order.protocol_codes.is_empty());
    assert_eq!(list.entries[1].step_start, None);
}

#[test]
fn entries_without_study_uid_or_patient_id_are_counted_not_kept() {
    let no_uid = a_match(
        &[(tags::PATIENT_ID, VR::LO, "C1")],
        &xc_step("20240502", "0800"),
    );
    let no_id = a_match(
        &[(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3.7")],
        &xc_step("20240502", "0800"),
    );
    let ok = a_match(&complete("C3", "1.2.3.8"), &xc_step("20240502", "0800"));
    let list = worklist(&found(vec![no_uid, no_id, ok]), &q());
    assert_eq!(list.skipped, 2);
    assert_eq!(list.entries.len(), 1);
    assert_eq!(list.entries[0].patient.id, "C3");
}

#[test]
fn what_a_provider_should_not_have_returned_is_left_out() {
    let ct = a_match(
        &complete("D1", "1.2.4.1"),
        &[
            (tags::MODALITY, VR::CS, "CT"),
            (
                tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
                VR::DA,
                "20240502",
            ),
        ],
    );
    let yesterday = a_match(&complete("D2", "1.2.4.2"), &xc_step("20240501", "0800"));
    let other_station = a_match(
        &complete("D3", "1.2.4.3"),
        &[
            (tags::MODALITY, VR::CS, "XC"),
            (tags::SCHEDULED_STATION_AE_TITLE, VR::AE, "CAM9"),
        ],
    );
    let any_station = a_match(
        &complete("D4", "1.2.4.4"),
        &[
            (tags::MODALITY, VR::CS, "xc"),
            (
                tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
                VR::DA,
                "20240502",
            ),
        ],
    );
    let list = worklist(
        &found(vec![ct, yesterday, other_station, any_station]),
        &q(),
    );
    let ids: Vec<&str> = list.entries.iter().map(|e| e.patient.id.as_str()).collect();
    assert_eq!(ids, ["D4"], "an entry without a station is for any station");
    assert_eq!(list.skipped, 0, "left-out entries are not 'skipped'");
}

#[test]
fn entries_are_sorted_by_step_start_undated_last() {
    let late = a_match(&complete("E1", "1.2.5.1"), &xc_step("20240502", "1500"));
    let undated = a_match(
        &complete("E2", "1.2.5.2"),
        &[(tags::MODALITY, VR::CS, "XC")],
    );
    let early = a_match(&complete("E3", "1.2.5.3"), &xc_step("20240502", "0700"));
    let mut f = found(vec![late, undated, early]);
    f.truncated = true;
    let list = worklist(&f, &q());
    let ids: Vec<&str> = list.entries.iter().map(|e| e.patient.id.as_str()).collect();
    assert_eq!(ids, ["E3", "E1", "E2"]);
    assert!(list.truncated);
}

/// An Implicit VR Little Endian element, by hand: the bytes a provider sends.
fn element(tag: Tag, value: &[u8]) -> Vec<u8> {
    let mut v = value.to_vec();
    if v.len() % 2 == 1 {
        v.push(b' ');
    }
    let mut out = Vec::new();
    out.extend_from_slice(&tag.group().to_le_bytes());
    out.extend_from_slice(&tag.element().to_le_bytes());
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(&v);
    out
}

fn read_implicit(bytes: &[u8]) -> InMemDicomObject {
    InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased()).unwrap()
}

#[test]
fn names_are_decoded_with_the_character_set_the_match_declares() {
    let mut utf8 = element(tags::SPECIFIC_CHARACTER_SET, b"ISO_IR 192");
    utf8.extend(element(tags::PATIENT_NAME, "王^大明".as_bytes()));
    utf8.extend(element(tags::PATIENT_ID, b"F1"));
    utf8.extend(element(tags::STUDY_INSTANCE_UID, b"1.2.6.1"));
    let mut latin1 = element(tags::SPECIFIC_CHARACTER_SET, b"ISO_IR 100");
    // "MÜLLER^JOSÉ" in ISO 8859-1.
    latin1.extend(element(tags::PATIENT_NAME, b"M\xdcLLER^JOS\xc9"));
    latin1.extend(element(tags::PATIENT_ID, b"F2"));
    latin1.extend(element(tags::STUDY_INSTANCE_UID, b"1.2.6.2"));
    let list = worklist(
        &found(vec![read_implicit(&utf8), read_implicit(&latin1)]),
        &q(),
    );
    let names: Vec<&str> = list
        .entries
        .iter()
        .map(|e| e.patient.name.as_str())
        .collect();
    assert_eq!(names, ["王^大明", "MÜLLER^JOSÉ"]);
}

#[test]
fn an_entry_shows_no_patient_data_in_debug() {
    let mut top = complete("SECRETID", "1.2.7.1");
    top.push((tags::PATIENT_NAME, VR::PN, "SECRET^NAME"));
    top.push((tags::ACCESSION_NUMBER, VR::SH, "SECRETACC"));
    let list = worklist(&found(vec![a_match(&top, &xc_step("20240502", ""))]), &q());
    let shown = format!("{list:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(shown.contains("XC"), "{shown}");
}
