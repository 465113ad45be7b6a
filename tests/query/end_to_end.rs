//! A worklist entry picked through the gateway's API, against the real binary: the photos
//! land in Orthanc under the entry's Study Instance UID, the objects carry its accession
//! number and request attributes as the worklist file has them (dcmdump), and pass
//! dciodvfy. The worklist comes from Orthanc's own plugin, and from wlmscpfs beside Orthanc.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::common::orthanc::{Orthanc, OrthancConfig, find_orthanc, find_worklists_plugin};
use crate::common::wlmscpfs::{Wlmscpfs, WorklistFolder};
use crate::common::*;
use crate::worklist::folder;

/// `(gggg,eeee)` values of a file as dcmdump prints them, first occurrence after `from`.
fn dump(dcmdump: &Path, file: &Path) -> String {
    let out = Command::new(dcmdump)
        .args(["+U8", "-q"])
        .arg(file)
        .output()
        .expect("run dcmdump");
    assert!(out.status.success(), "dcmdump {}", file.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The bracketed value on the first line (at any depth) starting with `tag`, after the
/// first line starting with `within` when given.
fn value(dump: &str, within: Option<&str>, tag: &str) -> String {
    let start = within.map_or(0, |w| {
        dump.find(w)
            .unwrap_or_else(|| panic!("{w} missing from\n{dump}"))
    });
    let line = dump[start..]
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(tag))
        .unwrap_or_else(|| panic!("{tag} missing from\n{dump}"));
    let open = line.find('[').unwrap_or_else(|| panic!("no value: {line}"));
    let close = line[open..].find(']').unwrap_or(0) + open;
    line[open + 1..close].to_string()
}

const RAS: &str = "(0040,0275)";

/// Picks `id` from the gateway's list, sends a photo with it, and checks the objects
/// against the worklist file `wl_file`, with dciodvfy, and in Orthanc.
fn pick_send_and_check(gw: &Gateway, dir: &Path, pacs: &Orthanc, id: &str, wl_file: &Path) {
    let (Some(dcmdump), Some(dciodvfy)) =
        (peer("dcmdump", "dcmtk"), peer("dciodvfy", "dicom3tools"))
    else {
        return;
    };
    let list: Value = client()
        .get(gw.url("/api/worklist?fresh=1"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ids: Vec<&str> = list["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}\n{}", gw.logs()))
        .iter()
        .map(|e| e["patientId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["WL1001", "WL1002"], "today's XC only: {list}");
    let entry = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["patientId"] == id)
        .unwrap();
    let resp = upload(
        gw,
        &[
            ("patientId", id),
            ("patientName", entry["patientName"].as_str().unwrap()),
            ("birthDate", entry["birthDate"].as_str().unwrap()),
            ("sex", entry["sex"].as_str().unwrap()),
            (
                "examDescription",
                entry["requestedProcedureDescription"].as_str().unwrap(),
            ),
            ("worklistEntry", entry["entry"].as_str().unwrap()),
        ],
        &[("flower.jpg", "pillow_flower.jpg")],
    );
    let status = resp.status();
    let answer: Value = resp.json().unwrap();
    assert_eq!(status, 200, "{answer}\n{}", gw.logs());
    assert_eq!(answer["status"], "success", "{answer}");

    let wl = dump(&dcmdump, wl_file);
    let study_uid = value(&wl, None, "(0020,000d)");
    let files = outbox_objects(dir);
    assert_eq!(files.len(), 1);
    let obj = dump(&dcmdump, &files[0]);
    assert_eq!(
        value(&obj, None, "(0020,000d)"),
        study_uid,
        "the entry's, not a new one"
    );
    assert_eq!(
        value(&obj, None, "(0008,0050)"),
        value(&wl, None, "(0008,0050)")
    );
    assert_eq!(value(&obj, None, "(0010,0020)"), id);
    assert_eq!(
        value(&obj, None, "(0010,0021)"),
        value(&wl, None, "(0010,0021)")
    );
    // The Request Attributes item against the worklist's top level and step item.
    for (tag, in_wl) in [
        ("(0040,1001)", None),
        ("(0008,0050)", None),
        ("(0020,000d)", None),
        ("(0032,1060)", None),
        ("(0040,0009)", Some("(0040,0100)")),
        ("(0040,0007)", Some("(0040,0100)")),
        ("(0008,0100)", Some("(0040,0008)")),
        ("(0008,0102)", Some("(0040,0008)")),
    ] {
        assert_eq!(
            value(&obj, Some(RAS), tag),
            value(&wl, in_wl, tag),
            "{tag} in the Request Attributes Sequence:\n{obj}"
        );
    }
    assert_dciodvfy_clean(&dciodvfy, &files[0]);

    let studies = pacs.get_json("/studies?expand");
    let found: Vec<&Value> = studies
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["MainDicomTags"]["StudyInstanceUID"] == study_uid.as_str())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "Orthanc has the study under {study_uid}: {studies}"
    );
    assert_eq!(
        found[0]["MainDicomTags"]["AccessionNumber"],
        value(&wl, None, "(0008,0050)").as_str()
    );
    assert_eq!(found[0]["PatientMainDicomTags"]["PatientID"], id);
}

/// Orthanc is the PACS and, through its worklists plugin, the worklist provider; then the
/// gateway's lookup finds the patient it has just stored, by name in UTF-8.
#[test]
#[cfg_attr(
    missing_peer = "orthanc",
    ignore = "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
)]
fn an_entry_from_orthancs_worklist_lands_in_orthanc_under_its_study() {
    let (Some(orthanc), Some(_plugin)) = (find_orthanc(), find_worklists_plugin()) else {
        return;
    };
    let Some((folder, _today)) = folder("ORTHANC", "CAM1") else {
        return;
    };
    let config = OrthancConfig::new("ORTHANC")
        .worklists(&folder.files_dir())
        .allow_find()
        .set("DefaultEncoding", json!("Utf8"));
    let pacs = Orthanc::start(&orthanc, config);
    let (dir, gw) = gateway_env(&cstore_env(
        pacs.dicom_port(),
        "ORTHANC",
        &[
            ("PHOTO_PACS_KEEP_FILES_ON_SUCCESS", "true"),
            ("PHOTO_PACS_WORKLIST_ENABLED", "true"),
            ("PHOTO_PACS_WORKLIST_STATION_AET", "CAM1"),
            ("PHOTO_PACS_LOCAL_TRANSFER_SYNTAX", "1.2.840.10008.1.2.4.50"),
        ],
    ));
    pick_send_and_check(
        &gw,
        dir.path(),
        &pacs,
        "WL1001",
        &folder.files_dir().join("today-xc-utf8.wl"),
    );

    let lookup = |id: &str| -> Value {
        client()
            .post(gw.url("/api/patients/lookup"))
            .json(&json!({ "patientId": id }))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let known = lookup("WL1001");
    assert_eq!(known["found"], true, "{known}");
    assert_eq!(known["source"], "patient");
    assert_eq!(known["patient"]["patientName"], "王^大明");
    assert_eq!(known["patient"]["birthDate"], "1990-01-15");
    assert_eq!(known["studies"], 1);
    let unknown = lookup("NOT-THERE-42");
    assert_eq!(unknown["found"], false, "{unknown}");
}

/// wlmscpfs is the worklist provider (its own AE title, host and port, a multi-valued
/// station), Orthanc the PACS.
#[test]
#[cfg_attr(
    missing_peer = "orthanc",
    ignore = "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
)]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn an_entry_from_wlmscpfs_lands_in_orthanc_under_its_study() {
    let Some(orthanc) = find_orthanc() else {
        return;
    };
    let Some((folder, _today)) = folder("WLMSCP", "CAM1\\CAM2") else {
        return;
    };
    let folder: WorklistFolder = folder;
    let Some(scp) = Wlmscpfs::start(&folder) else {
        return;
    };
    let pacs = Orthanc::start(&orthanc, OrthancConfig::new("ORTHANC"));
    let port = scp.port().to_string();
    let (dir, gw) = gateway_env(&cstore_env(
        pacs.dicom_port(),
        "ORTHANC",
        &[
            ("PHOTO_PACS_KEEP_FILES_ON_SUCCESS", "true"),
            ("PHOTO_PACS_WORKLIST_ENABLED", "true"),
            ("PHOTO_PACS_WORKLIST_CALLED_AET", "WLMSCP"),
            ("PHOTO_PACS_WORKLIST_HOST", "127.0.0.1"),
            ("PHOTO_PACS_WORKLIST_PORT", &port),
            ("PHOTO_PACS_WORKLIST_STATION_AET", "CAM2"),
        ],
    ));
    pick_send_and_check(
        &gw,
        dir.path(),
        &pacs,
        "WL1002",
        &folder.files_dir().join("today-xc-latin1.wl"),
    );
}

/// A worklist provider or PACS that refuses the connection, or never answers, is a 502 or
/// 504 with a sentence the page shows, as the connection test is.
#[test]
fn an_unreachable_or_silent_provider_is_a_502_or_504_with_a_sentence() {
    use crate::common::storescp::{free_port, silent_listener};
    let (silent_port, _silent) = silent_listener();
    for (port, status, code) in [
        (free_port(), 502, "PACS_REJECTED"),
        (silent_port, 504, "PACS_TIMEOUT"),
    ] {
        let (_dir, gw) = gateway_env(&cstore_env(
            port,
            "NOBODY",
            &[
                ("PHOTO_PACS_WORKLIST_ENABLED", "true"),
                ("PHOTO_PACS_PACS_TIMEOUT_S", "1"),
            ],
        ));
        let list = client().get(gw.url("/api/worklist")).send().unwrap();
        assert_eq!(list.status(), status);
        let body: Value = list.json().unwrap();
        assert_eq!(body["code"], code, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("NOBODY@127.0.0.1:{port}")),
            "{body}"
        );
        let lookup = client()
            .post(gw.url("/api/patients/lookup"))
            .json(&json!({ "patientId": "A1" }))
            .send()
            .unwrap();
        assert_eq!(lookup.status(), status);
    }
}
