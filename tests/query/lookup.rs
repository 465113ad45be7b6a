//! Patient lookup against Orthanc: by C-FIND at PATIENT level and by QIDO-RS through its
//! DICOMweb plugin, for a patient stored with a UTF-8 name.

use chrono::NaiveDate;
use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use photo_pacs::config::{Backend, Settings};
use photo_pacs::lookup::{self, Level};
use photo_pacs::pacs::{DicomwebClients, Sender};
use photo_pacs::reception::Reception;
use photo_pacs::study::Sex;

use crate::common::orthanc::{Orthanc, OrthancConfig, find_orthanc};
use crate::settings_for;

const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";

/// A minimal object of patient LK-1001 (王^大明, UTF-8) in study `study_uid`, as a file.
fn object(study_uid: &str, sop_uid: &str) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    for (tag, vr, v) in [
        (tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        (tags::SOP_CLASS_UID, VR::UI, SECONDARY_CAPTURE),
        (tags::SOP_INSTANCE_UID, VR::UI, sop_uid),
        (tags::STUDY_INSTANCE_UID, VR::UI, study_uid),
        (tags::SERIES_INSTANCE_UID, VR::UI, &format!("{study_uid}.1")),
        (tags::MODALITY, VR::CS, "XC"),
        (tags::PATIENT_NAME, VR::PN, "王^大明"),
        (tags::PATIENT_ID, VR::LO, "LK-1001"),
        (tags::PATIENT_BIRTH_DATE, VR::DA, "19900115"),
        (tags::PATIENT_SEX, VR::CS, "M"),
    ] {
        obj.put_str(tag, vr, v);
    }
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(SECONDARY_CAPTURE)
                .media_storage_sop_instance_uid(sop_uid)
                .transfer_syntax("1.2.840.10008.1.2.1"),
        )
        .expect("file meta");
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).expect("write the test object");
    bytes
}

/// Orthanc holding two studies of LK-1001; answers C-FIND to any AE title, in UTF-8.
fn orthanc_with_patient() -> Option<Orthanc> {
    let orthanc = find_orthanc()?;
    let pacs = Orthanc::start(
        &orthanc,
        OrthancConfig::new("ORTHANC")
            .allow_find()
            .set("DefaultEncoding", serde_json::json!("Utf8")),
    );
    for (study, sop) in [
        (
            "1.2.826.0.1.3680043.10.8.1",
            "1.2.826.0.1.3680043.10.8.1.1.1",
        ),
        (
            "1.2.826.0.1.3680043.10.8.2",
            "1.2.826.0.1.3680043.10.8.2.1.1",
        ),
    ] {
        let answer = pacs.post_instance(&object(study, sop));
        assert_eq!(answer["Status"], "Success", "{answer}");
    }
    Some(pacs)
}

fn check_known(known: &lookup::Known, level: Level) {
    assert_eq!(known.level, level);
    assert_eq!(known.patient.id, "LK-1001");
    assert_eq!(known.patient.name, "王^大明");
    assert_eq!(
        known.patient.birth_date,
        NaiveDate::from_ymd_opt(1990, 1, 15)
    );
    assert_eq!(known.patient.sex, Sex::Male);
    assert_eq!(known.studies, Some(2));
}

#[tokio::test]
#[cfg_attr(
    missing_peer = "orthanc",
    ignore = "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
)]
async fn orthanc_knows_the_patient_by_cfind() {
    let Some(pacs) = orthanc_with_patient() else {
        return;
    };
    let s = settings_for("ORTHANC", pacs.dicom_port());
    let known = lookup::by_cfind(&s, "LK-1001")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", pacs.logs()))
        .expect("the patient is known");
    check_known(&known, Level::Patient);
    let unknown = lookup::by_cfind(&s, "NOBODY-1").await.unwrap();
    assert!(unknown.is_none(), "{unknown:?}");
    // The gateway's reception asks the same way for this backend.
    let sender = Sender::for_backend(Backend::Cstore);
    let reception = Reception::new(Backend::Cstore, 200);
    let answer = reception.lookup(&sender, &s, "LK-1001").await.unwrap();
    assert_eq!(answer.source, "patient");
    let found = answer.found.expect("found through the reception");
    assert_eq!(found.patient, known.patient);
    assert_eq!(found.studies, known.studies);
}

#[tokio::test]
#[cfg_attr(
    missing_peer = "orthanc",
    ignore = "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
)]
async fn orthanc_knows_the_patient_by_qido() {
    let Some(pacs) = orthanc_with_patient() else {
        return;
    };
    let s = Settings {
        dicomweb_base_url: pacs.dicomweb_base(),
        ..Settings::default()
    };
    let clients = DicomwebClients::default();
    let known = lookup::by_qido(&clients, &s, "LK-1001")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", pacs.logs()))
        .expect("the patient is known");
    check_known(&known, Level::Qido);
    assert!(
        lookup::by_qido(&clients, &s, "NOBODY-1")
            .await
            .unwrap()
            .is_none()
    );
    // The gateway's reception asks the same way for this backend.
    let sender = Sender::for_backend(Backend::Dicomweb);
    let reception = Reception::new(Backend::Dicomweb, 200);
    let answer = reception.lookup(&sender, &s, "LK-1001").await.unwrap();
    assert_eq!(answer.source, "qido");
    let found = answer.found.expect("found through the reception");
    assert_eq!(found.patient, known.patient);
    assert_eq!(found.studies, known.studies);
}
