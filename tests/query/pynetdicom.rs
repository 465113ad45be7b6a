//! pynetdicom SCPs where a behaviour must be forced: a worklist provider with more matches
//! than we want (C-CANCEL, FF01 pendings), and a PACS that refuses Patient Root queries but
//! answers Study Root ones (the lookup falls back to STUDY level).

use std::time::Duration;

use chrono::NaiveDate;
use photo_pacs::lookup::{self, Level};
use photo_pacs::study::Sex;
use photo_pacs::worklist::{self, Query};

use crate::common::find_scp::FindScp;
use crate::settings_for;

fn query(max: usize) -> Query {
    let day = NaiveDate::from_ymd_opt(2024, 5, 2).unwrap();
    Query {
        modality: "XC".into(),
        station_aet: String::new(),
        from: day,
        to: day,
        max,
    }
}

#[tokio::test]
#[cfg_attr(
    missing_peer = "python",
    ignore = "pynetdicom is not installed (pip install -r tests/peers/requirements.txt)"
)]
async fn past_max_the_worklist_query_is_cancelled() {
    let Some(scp) = FindScp::start("MWLSCP", "worklist:20:6") else {
        return;
    };
    let s = settings_for("MWLSCP", scp.port);
    let list = worklist::query(&s, &query(5)).await.unwrap();
    let ids: Vec<&str> = list.entries.iter().map(|e| e.patient.id.as_str()).collect();
    // P1 and P3 came with FF01 (optional keys not supported): matches all the same.
    assert_eq!(ids, ["P0", "P1", "P2", "P3", "P4"]);
    assert!(list.truncated);
    let cancelled = scp.wait_line("cancelled after", Duration::from_secs(30));
    assert_eq!(
        cancelled.as_deref(),
        Some("cancelled after 6"),
        "{:?}",
        scp.lines()
    );

    // What went over the wire is the K.6.1 identifier.
    let q = &scp.queries()[0];
    assert!(q.get("00080052").is_none(), "no Query/Retrieve Level: {q}");
    let steps = q["00400100"]["Value"].as_array().expect("one step item");
    assert_eq!(steps.len(), 1, "{q}");
    assert_eq!(steps[0]["00080060"]["Value"][0], "XC");
    assert_eq!(steps[0]["00400002"]["Value"][0], "20240502-20240502");
    for tag in ["00100010", "00100020", "0020000D", "00080050", "00401001"] {
        assert!(q.get(tag).is_some(), "{tag} asked for: {q}");
    }
}

#[tokio::test]
#[cfg_attr(
    missing_peer = "python",
    ignore = "pynetdicom is not installed (pip install -r tests/peers/requirements.txt)"
)]
async fn fewer_matches_than_max_are_all_read_without_cancel() {
    let Some(scp) = FindScp::start("MWLSCP", "worklist:3:99") else {
        return;
    };
    let s = settings_for("MWLSCP", scp.port);
    let list = worklist::query(&s, &query(10)).await.unwrap();
    assert_eq!(list.entries.len(), 3);
    assert!(!list.truncated);
    assert!(
        scp.lines().iter().all(|l| !l.starts_with("cancelled")),
        "{:?}",
        scp.lines()
    );
}

#[tokio::test]
#[cfg_attr(
    missing_peer = "python",
    ignore = "pynetdicom is not installed (pip install -r tests/peers/requirements.txt)"
)]
async fn a_pacs_refusing_patient_root_is_asked_at_study_level() {
    let Some(scp) = FindScp::start("STUDYSCP", "studyroot") else {
        return;
    };
    let s = settings_for("STUDYSCP", scp.port);
    let known = lookup::by_cfind(&s, "A123")
        .await
        .unwrap()
        .expect("found at study level");
    assert_eq!(known.level, Level::Study);
    assert_eq!(known.studies, Some(2));
    assert_eq!(known.patient.id, "A123");
    assert_eq!(known.patient.name, "WANG^DA MING=王^大明");
    assert_eq!(
        known.patient.birth_date,
        NaiveDate::from_ymd_opt(1990, 1, 15)
    );
    assert_eq!(known.patient.sex, Sex::Male);
    let q = &scp.queries()[0];
    assert_eq!(q["00080052"]["Value"][0], "STUDY", "{q}");
    assert_eq!(q["00100020"]["Value"][0], "A123", "{q}");
    assert!(lookup::by_cfind(&s, "NOPE").await.unwrap().is_none());
}
