//! The worklist query against dcmtk's wlmscpfs and Orthanc's worklists plugin, serving the
//! same files: today's XC entries come back, today's CT and yesterday's XC do not.

use chrono::{Duration as Days, Local, NaiveDate};
use photo_pacs::study::{Code, Sex};
use photo_pacs::worklist::{self, Query, Worklist};

use crate::common::orthanc::{Orthanc, OrthancConfig, find_orthanc, find_worklists_plugin};
use crate::common::wlmscpfs::{Wlmscpfs, WorklistFolder};
use crate::settings_for;

/// One worklist file's dump: a patient scheduled for `modality` on `date` at `time` on
/// `stations` (`CAM1\\CAM2`), with an order and a protocol code.
#[allow(clippy::too_many_arguments)]
fn dump(
    stations: &str,
    charset: &str,
    name: &[u8],
    id: &str,
    uid: &str,
    modality: &str,
    date: NaiveDate,
    time: &str,
) -> Vec<u8> {
    let date = date.format("%Y%m%d");
    let mut out = Vec::new();
    out.extend_from_slice(format!("(0008,0005) CS [{charset}]\n").as_bytes());
    out.extend_from_slice(format!("(0008,0050) SH [ACC-{id}]\n").as_bytes());
    out.extend_from_slice(b"(0008,0090) PN [REF^DOCTOR]\n(0010,0010) PN [");
    out.extend_from_slice(name);
    out.extend_from_slice(b"]\n");
    out.extend_from_slice(
        format!(
            "(0010,0020) LO [{id}]
(0010,0021) LO [HOSP]
(0010,0030) DA [19900115]
(0010,0040) CS [M]
(0020,000d) UI [{uid}]
(0032,1060) LO [Wound photography]
(0040,1001) SH [RP-{id}]
(0040,0100) SQ (Sequence with undefined length)
  (fffe,e000) na (Item with undefined length)
    (0008,0060) CS [{modality}]
    (0040,0001) AE [{stations}]
    (0040,0002) DA [{date}]
    (0040,0003) TM [{time}]
    (0040,0006) PN [NURSE^ANNA]
    (0040,0007) LO [Left leg wound]
    (0040,0009) SH [SPS-{id}]
    (0040,0008) SQ (Sequence with undefined length)
      (fffe,e000) na (Item with undefined length)
        (0008,0100) SH [WND1]
        (0008,0102) SH [99LOCAL]
        (0008,0104) LO [Wound photography]
      (fffe,e00d) na (ItemDelimitationItem)
    (fffe,e0dd) na (SequenceDelimitationItem)
  (fffe,e00d) na (ItemDelimitationItem)
(fffe,e0dd) na (SequenceDelimitationItem)
"
        )
        .as_bytes(),
    );
    out
}

/// Today XC in UTF-8 (09:30) and in Latin-1 (14:00), today CT, yesterday XC, all for
/// `stations`.
pub(crate) fn folder(aet: &str, stations: &str) -> Option<(WorklistFolder, NaiveDate)> {
    let folder = WorklistFolder::new(aet)?;
    let today = Local::now().date_naive();
    let yesterday = today - Days::days(1);
    let utf8 = "王^大明".as_bytes();
    folder.add(
        "today-xc-utf8",
        &dump(
            stations,
            "ISO_IR 192",
            utf8,
            "WL1001",
            "1.2.826.0.1.3680043.10.7.1",
            "XC",
            today,
            "093000",
        ),
    );
    // MÜLLER^JOSÉ in ISO 8859-1.
    folder.add(
        "today-xc-latin1",
        &dump(
            stations,
            "ISO_IR 100",
            b"M\xdcLLER^JOS\xc9",
            "WL1002",
            "1.2.826.0.1.3680043.10.7.2",
            "XC",
            today,
            "140000",
        ),
    );
    folder.add(
        "today-ct",
        &dump(
            stations,
            "ISO_IR 192",
            b"CT^PATIENT",
            "WL2001",
            "1.2.826.0.1.3680043.10.7.3",
            "CT",
            today,
            "100000",
        ),
    );
    folder.add(
        "yesterday-xc",
        &dump(
            stations,
            "ISO_IR 192",
            b"OLD^PATIENT",
            "WL3001",
            "1.2.826.0.1.3680043.10.7.4",
            "XC",
            yesterday,
            "100000",
        ),
    );
    Some((folder, today))
}

fn todays_xc(today: NaiveDate) -> Query {
    Query {
        modality: "XC".into(),
        station_aet: "CAM1".into(),
        from: today,
        to: today,
        max: 50,
    }
}

/// Only today's two XC entries, in time order, read in full.
fn check(list: &Worklist, today: NaiveDate, stations: &[&str]) {
    let ids: Vec<&str> = list.entries.iter().map(|e| e.patient.id.as_str()).collect();
    assert_eq!(ids, ["WL1001", "WL1002"], "{list:?}");
    assert!(!list.truncated);
    assert_eq!(list.skipped, 0);
    let e = &list.entries[0];
    assert_eq!(e.patient.name, "王^大明");
    assert_eq!(e.patient.birth_date, NaiveDate::from_ymd_opt(1990, 1, 15));
    assert_eq!(e.patient.sex, Sex::Male);
    assert_eq!(e.patient.issuer, "HOSP");
    assert_eq!(e.order.study_instance_uid, "1.2.826.0.1.3680043.10.7.1");
    assert_eq!(e.order.accession_number, "ACC-WL1001");
    assert_eq!(e.order.requested_procedure_id, "RP-WL1001");
    assert_eq!(e.order.requested_procedure_description, "Wound photography");
    assert_eq!(e.order.step_id, "SPS-WL1001");
    assert_eq!(e.order.step_description, "Left leg wound");
    assert_eq!(
        e.order.protocol_codes,
        [Code {
            value: "WND1".into(),
            scheme: "99LOCAL".into(),
            meaning: "Wound photography".into()
        }]
    );
    assert_eq!(e.modality, "XC");
    assert_eq!(e.station_aets, stations);
    assert_eq!(e.step_start, today.and_hms_opt(9, 30, 0));
    assert_eq!(list.entries[1].patient.name, "MÜLLER^JOSÉ");
    assert_eq!(list.entries[1].step_start, today.and_hms_opt(14, 0, 0));
}

#[tokio::test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
async fn wlmscpfs_gives_todays_xc_entries_only() {
    let Some((folder, today)) = folder("WLMSCP", "CAM1\\CAM2") else {
        return;
    };
    let Some(scp) = Wlmscpfs::start(&folder) else {
        return;
    };
    let s = settings_for("WLMSCP", scp.port());
    let list = worklist::query(&s, &todays_xc(today))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", scp.logs()));
    check(&list, today, &["CAM1", "CAM2"]);
}

#[tokio::test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
async fn wlmscpfs_truncates_at_max() {
    let Some((folder, today)) = folder("WLMSCP", "CAM1\\CAM2") else {
        return;
    };
    let Some(scp) = Wlmscpfs::start(&folder) else {
        return;
    };
    let s = settings_for("WLMSCP", scp.port());
    let q = Query {
        max: 1,
        ..todays_xc(today)
    };
    let list = worklist::query(&s, &q)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", scp.logs()));
    assert_eq!(list.entries.len(), 1, "{list:?}");
    assert!(list.truncated);
}

#[tokio::test]
#[cfg_attr(
    missing_peer = "orthanc",
    ignore = "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
)]
async fn orthanc_worklists_plugin_gives_todays_xc_entries_only() {
    let (Some(orthanc), Some(_plugin)) = (find_orthanc(), find_worklists_plugin()) else {
        return;
    };
    // Orthanc 1.10.1's sample plugin matches a Scheduled Station AE Title key against the
    // whole of a multi-valued one ("CAM1" never matches "CAM1\CAM2"): one station here.
    let Some((folder, today)) = folder("ORTHANC", "CAM1") else {
        return;
    };
    // Orthanc answers in its DefaultEncoding whatever the query or file declares; the
    // default, Latin-1, turns 王^大明 into "^".
    let config = OrthancConfig::new("ORTHANC")
        .worklists(&folder.files_dir())
        .set("DefaultEncoding", serde_json::json!("Utf8"));
    let pacs = Orthanc::start(&orthanc, config);
    let s = settings_for("ORTHANC", pacs.dicom_port());
    let list = worklist::query(&s, &todays_xc(today))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", pacs.logs()));
    check(&list, today, &["CAM1"]);
}
