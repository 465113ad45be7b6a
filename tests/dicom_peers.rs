//! The DICOM files the gateway writes, read by real DICOM tools: dcmtk's `dcmdump` and
//! dicom3tools' `dciodvfy`.

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn dump_value(dump: &str, tag: &str) -> String {
    let line = dump
        .lines()
        .find(|l| l.starts_with(tag))
        .unwrap_or_else(|| panic!("{tag} missing from\n{dump}"));
    let rest = &line[tag.len()..].trim_start()[2..].trim_start();
    match rest.strip_prefix('[') {
        Some(v) => v[..v.find(']').unwrap()].to_string(),
        None => rest.split_whitespace().next().unwrap().to_string(),
    }
}

fn upload_two(gw: &Gateway) -> Value {
    let resp = upload(
        gw,
        &[
            ("patientId", "A123456"),
            ("patientName", "王大明"),
            ("birthDate", "1990-01-15"),
            ("sex", "M"),
            ("examDescription", "傷口 wound check"),
        ],
        &[
            ("flower.jpg", "pillow_flower.jpg"),
            ("hopper6.jpg", "pillow_hopper_orientation_6.jpg"),
        ],
    );
    assert_eq!(resp.status(), 200);
    resp.json().unwrap()
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn dcmdump_reads_back_id_utf8_name_and_size() {
    let Some(dcmdump) = peer("dcmdump", "dcmtk") else {
        return;
    };
    let (dir, gw) = gateway(&[
        ("PHOTO_PACS_KEEP_FILES_ON_SUCCESS", "true"),
        ("PHOTO_PACS_LOCAL_RESIZE_MAX", "256"),
    ]);
    let answer = upload_two(&gw);
    let files = outbox_objects(dir.path());
    assert_eq!(files.len(), 2);
    // flower.jpg is 480x360 and is brought down to a long edge of 256; hopper is 128x128.
    for (file, (rows, cols), n) in [
        (&files[0], ("192", "256"), 0),
        (&files[1], ("128", "128"), 1),
    ] {
        let out = Command::new(&dcmdump).arg(file).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dump = String::from_utf8(out.stdout).expect("dcmdump prints the UTF-8 name as UTF-8");
        assert_eq!(dump_value(&dump, "(0010,0020)"), "A123456");
        assert_eq!(dump_value(&dump, "(0010,0010)"), "王大明");
        assert_eq!(dump_value(&dump, "(0008,1030)"), "傷口 wound check");
        assert_eq!(dump_value(&dump, "(0008,0005)"), "ISO_IR 192");
        assert_eq!(dump_value(&dump, "(0028,0010)"), rows);
        assert_eq!(dump_value(&dump, "(0028,0011)"), cols);
        assert_eq!(dump_value(&dump, "(0020,000d)"), answer["studyInstanceUID"]);
        assert_eq!(
            dump_value(&dump, "(0020,000e)"),
            answer["seriesInstanceUID"]
        );
        assert_eq!(
            dump_value(&dump, "(0008,0018)"),
            answer["instances"][n]["sopInstanceUID"]
        );
        assert_eq!(
            dump_value(&dump, "(0002,0003)"),
            answer["instances"][n]["sopInstanceUID"]
        );
    }
}

#[test]
#[cfg_attr(
    missing_peer = "dicom3tools",
    ignore = "dicom3tools is not installed (apt-get install dicom3tools)"
)]
fn dciodvfy_finds_no_errors_in_either_transfer_syntax() {
    let Some(dciodvfy) = peer("dciodvfy", "dicom3tools") else {
        return;
    };
    let (dir, gw) = gateway(&[("PHOTO_PACS_KEEP_FILES_ON_SUCCESS", "true")]);
    upload_two(&gw);
    let resp = put_settings(&gw, &json!({"localTransferSyntax": "1.2.840.10008.1.2.1"}));
    assert_eq!(resp.status(), 200);
    upload_two(&gw);
    let files = outbox_objects(dir.path());
    assert_eq!(files.len(), 4);
    for file in files {
        assert_dciodvfy_clean(&dciodvfy, &file);
    }
}

/// A study sent from a (demo) worklist entry: the objects reuse the entry's Study Instance
/// UID, carry its accession number and one Request Attributes Sequence item, and still pass
/// dciodvfy without errors.
#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
#[cfg_attr(
    missing_peer = "dicom3tools",
    ignore = "dicom3tools is not installed (apt-get install dicom3tools)"
)]
fn objects_from_a_worklist_entry_carry_its_order_and_pass_dciodvfy() {
    let (Some(dcmdump), Some(dciodvfy)) =
        (peer("dcmdump", "dcmtk"), peer("dciodvfy", "dicom3tools"))
    else {
        return;
    };
    let (dir, gw) = gateway(&[
        ("PHOTO_PACS_KEEP_FILES_ON_SUCCESS", "true"),
        ("PHOTO_PACS_WORKLIST_ENABLED", "true"),
    ]);
    let list: Value = client()
        .get(gw.url("/api/worklist"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let entry = &list["entries"][0];
    let study_uid = entry["studyInstanceUid"].as_str().unwrap();
    let accession = entry["accessionNumber"].as_str().unwrap();
    for ts in ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1"] {
        let resp = put_settings(&gw, &json!({"localTransferSyntax": ts}));
        assert_eq!(resp.status(), 200);
        let resp = upload(
            &gw,
            &[
                ("patientId", entry["patientId"].as_str().unwrap()),
                ("patientName", entry["patientName"].as_str().unwrap()),
                ("worklistEntry", entry["entry"].as_str().unwrap()),
            ],
            &[("flower.jpg", "pillow_flower.jpg")],
        );
        assert_eq!(resp.status(), 200);
    }
    let files = outbox_objects(dir.path());
    assert_eq!(files.len(), 2);
    for file in files {
        let dump = String::from_utf8(
            Command::new(&dcmdump)
                .args(["+U8", "-q"])
                .arg(&file)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert_eq!(dump_value(&dump, "(0020,000d)"), study_uid, "{dump}");
        assert_eq!(dump_value(&dump, "(0008,0050)"), accession, "{dump}");
        assert_eq!(dump_value(&dump, "(0010,0010)"), "DEMO^ALICE");
        assert_eq!(dump_value(&dump, "(0010,0021)"), "DEMO");
        let item = &dump[dump
            .find("(0040,0275)")
            .expect("Request Attributes Sequence")..];
        for (tag, value) in [
            (
                "(0040,1001)",
                entry["requestedProcedureId"].as_str().unwrap(),
            ),
            ("(0040,0009)", entry["stepId"].as_str().unwrap()),
            ("(0020,000d)", study_uid),
            ("(0008,0050)", accession),
            ("(0008,0100)", "PHOTO"),
        ] {
            let line = item
                .lines()
                .map(str::trim_start)
                .find(|l| l.starts_with(tag))
                .unwrap_or_else(|| panic!("{tag} missing from the item:\n{item}"));
            assert!(line.contains(&format!("[{value}]")), "{line}");
        }
        assert_dciodvfy_clean(&dciodvfy, &file);
    }
}
