//! The same outage through STOW-RS: Orthanc stopped while studies are uploaded, then
//! started again with its storage.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::common::orthanc::{Orthanc, OrthancConfig, find_orthanc};

const STUDIES: usize = 100;

#[test]
#[cfg_attr(
    missing_peer = "orthanc",
    ignore = "Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
)]
fn an_orthanc_outage_through_stow_rs_loses_no_study() {
    let Some(bin) = find_orthanc() else {
        return;
    };
    let config = OrthancConfig::new("ORTHANC").tcp_nodelay(true);
    let mut orthanc = Orthanc::start(&bin, config.clone());
    let env: Vec<(String, String)> = [
        ("PHOTO_PACS_PACS_BACKEND", "dicomweb".to_string()),
        ("PHOTO_PACS_DICOMWEB_BASE_URL", orthanc.dicomweb_base()),
        ("PHOTO_PACS_DELIVERY_WAIT_S", "3".into()),
        ("PHOTO_PACS_RETRY_MAX_S", "5".into()),
        ("PHOTO_PACS_DICOMWEB_TIMEOUT_S", "20".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (_dir, gw) = gateway_env(&env);

    // While Orthanc answers, a study goes straight in.
    let (status, doc, _) = send_study(&gw, 0, None);
    assert_eq!(status, 200, "{doc}");

    orthanc.kill_keeping_storage();
    let mut studies = vec![doc];
    for n in 1..=STUDIES {
        let (status, doc, _) = send_study(&gw, n, None);
        assert_eq!(status, 202, "study {n}: {doc}");
        studies.push(doc);
    }
    orthanc.start_again(&bin, &config);
    let ids: Vec<String> = studies
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    wait_until(
        Duration::from_secs(180),
        || {
            let left: Vec<_> = ids
                .iter()
                .filter(|id| study_state(&gw, id) != "stored")
                .collect();
            format!("{} not stored yet", left.len())
        },
        || ids.iter().all(|id| study_state(&gw, id) == "stored"),
    );

    // Orthanc's REST API lists every study with both its instances.
    let listed = orthanc.get_json("/studies?expand");
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), STUDIES + 1, "studies in Orthanc");
    let by_uid: std::collections::HashMap<&str, &Value> = listed
        .iter()
        .map(|s| (s["MainDicomTags"]["StudyInstanceUID"].as_str().unwrap(), s))
        .collect();
    for doc in &studies {
        let uid = doc["studyInstanceUID"].as_str().unwrap();
        let study = by_uid
            .get(uid)
            .unwrap_or_else(|| panic!("{uid} is not in Orthanc"));
        let series = study["Series"].as_array().unwrap();
        assert_eq!(series.len(), 1);
        let instances = orthanc.get_json(&format!(
            "/series/{}/instances",
            series[0].as_str().unwrap()
        ));
        assert_eq!(instances.as_array().map(Vec::len), Some(2), "{uid}");
    }
}
