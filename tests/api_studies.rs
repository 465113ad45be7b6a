//! The upload API against the real binary: the reference's curl examples, answer shape,
//! clean-up, metrics, and the small routes around it.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn curl(args: &[&str], dir: &std::path::Path) -> (u16, Value) {
    let out = Command::new("curl")
        .current_dir(dir)
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is needed for this test (Debian package curl)");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn assert_uid(v: &Value) -> String {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a UID: {v}"))
        .to_string();
    assert!(s.starts_with("2.25.") && s.len() <= 64, "{s}");
    s
}

#[test]
fn reference_curl_examples_answer_200_with_the_reference_shape() {
    let (dir, gw) = gateway(&[]);
    std::fs::copy(data("pillow_flower.jpg"), dir.path().join("photo1.jpg")).unwrap();
    std::fs::copy(data("pillow_iptc.jpg"), dir.path().join("photo2.jpg")).unwrap();
    std::fs::copy(data("pillow_hopper.jpg"), dir.path().join("photo.jpg")).unwrap();
    let url = gw.url("/api/studies");

    // The first example of the reference README, word for word but for the host.
    let (code, doc) = curl(
        &[
            "-X",
            "POST",
            &url,
            "-F",
            "patientId=P-001",
            "-F",
            "patientName=Wang Da Ming",
            "-F",
            "birthDate=1990-01-15",
            "-F",
            "sex=M",
            "-F",
            "examDescription=Skin photo",
            "-F",
            "images[]=@photo1.jpg",
            "-F",
            "images[]=@photo2.jpg",
        ],
        dir.path(),
    );
    assert_eq!(code, 200, "{doc}");
    assert_eq!(doc["status"], "success");
    let study = assert_uid(&doc["studyInstanceUID"]);
    let series = assert_uid(&doc["seriesInstanceUID"]);
    assert_ne!(study, series);
    let instances = doc["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2);
    let sops: Vec<String> = instances
        .iter()
        .map(|i| assert_uid(&i["sopInstanceUID"]))
        .collect();
    assert_ne!(sops[0], sops[1]);
    for (n, i) in instances.iter().enumerate() {
        assert_eq!(i["index"], n as u64 + 1);
        assert_eq!(i["status"], "success");
    }
    assert_eq!(doc["pacs"]["calledAET"], "PACS");
    assert_eq!(doc["pacs"]["host"], "127.0.0.1");
    assert_eq!(doc["pacs"]["port"], 104);

    // The second: only the required fields.
    let (code, doc) = curl(
        &[
            "-X",
            "POST",
            &url,
            "-F",
            "patientId=P-001",
            "-F",
            "images[]=@photo.jpg",
        ],
        dir.path(),
    );
    assert_eq!(code, 200, "{doc}");
    assert_eq!(doc["instances"].as_array().unwrap().len(), 1);
    assert_ne!(
        assert_uid(&doc["studyInstanceUID"]),
        study,
        "each submission is its own study"
    );
}

#[test]
fn files_are_removed_after_success_and_metrics_count_the_work() {
    let (dir, gw) = gateway(&[]);
    let resp = upload(
        &gw,
        &[("patientId", "P-002")],
        &[
            ("a.jpg", "pillow_flower.jpg"),
            ("b.png", "pillow_transparent.png"),
        ],
    );
    assert_eq!(resp.status(), 200);
    // The files of a stored study are removed off the request's path, just after it.
    let mut objects = outbox_objects(dir.path());
    for _ in 0..50 {
        if objects.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        objects = outbox_objects(dir.path());
    }
    assert!(objects.is_empty(), "objects left: {objects:?}");
    let photos = staged_photos(dir.path());
    assert!(photos.is_empty(), "photos left: {photos:?}");
    let metrics = gw.metrics();
    for line in [
        r#"photo_pacs_studies_total{result="sent"} 1"#,
        r#"photo_pacs_instances_total{result="success"} 2"#,
        "photo_pacs_conversion_seconds_count 2",
        r#"photo_pacs_http_requests_total{method="POST",route="/api/studies",status="200"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
}

#[test]
fn keep_files_on_success_keeps_one_dicom_file_per_photo() {
    let (dir, gw) = gateway(&[("PHOTO_PACS_KEEP_FILES_ON_SUCCESS", "true")]);
    let resp = upload(
        &gw,
        &[("patientId", "P-003")],
        &[
            ("a.jpg", "pillow_hopper.jpg"),
            ("b.jpg", "pillow_hopper.jpg"),
        ],
    );
    assert_eq!(resp.status(), 200);
    let dicom = outbox_objects(dir.path());
    assert_eq!(dicom.len(), 2, "{dicom:?}");
    assert_eq!(
        staged_photos(dir.path()).len(),
        2,
        "the originals are kept too"
    );
}

#[test]
fn small_routes_answer_as_the_reference() {
    let (_dir, gw) = gateway(&[]);
    let c = client();
    let health: Value = c.get(gw.url("/healthz")).send().unwrap().json().unwrap();
    assert_eq!(health, serde_json::json!({"status": "ok"}));
    let mut info: Value = c
        .get(gw.url("/api/settings/info"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    // The body site picker's regions, head to toe.
    let sites = info
        .as_object_mut()
        .unwrap()
        .remove("bodySites")
        .expect("bodySites");
    let sites = sites.as_array().unwrap();
    assert_eq!(sites.len(), 32);
    assert_eq!(
        sites[0],
        serde_json::json!({"key": "head", "code": "69536005", "scheme": "SCT", "meaning": "Head", "paired": false})
    );
    assert_eq!(sites[31]["key"], "toe");
    // The reference's one member, then ours for the worklist, the wristband scanner and
    // shrinking on the phone (twice the default 1024).
    assert_eq!(
        info,
        serde_json::json!({
            "pacsBackend": "mock",
            "worklist": false,
            "patientLookup": true,
            "patientIdPattern": "",
            "barcodeFormats": ["code_128", "code_39", "qr_code", "data_matrix", "pdf417"],
            "resizeMax": 1024,
            "phoneLongEdge": 2048,
        })
    );

    let echo = c
        .post(gw.url("/api/pacs/echo"))
        .header("content-type", "application/json")
        .body(r#"{"calledAET":"PACS","host":"192.168.1.100","port":104,"callingAET":"PHOTO_PACS"}"#)
        .send()
        .unwrap();
    assert_eq!(echo.status(), 200);
    let echo: Value = echo.json().unwrap();
    assert_eq!(echo["status"], "success");
    assert!(echo["elapsedMs"].is_u64());
    let bad = c
        .post(gw.url("/api/pacs/echo"))
        .header("content-type", "application/json")
        .body(r#"{"port":0}"#)
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().unwrap()["field"], "port");

    let not_found = c.get(gw.url("/api/nothing")).send().unwrap();
    assert_eq!(not_found.status(), 404);
    let wrong_method = c.get(gw.url("/api/studies")).send().unwrap();
    assert_eq!(wrong_method.status(), 405);
}

#[test]
fn the_app_page_is_served_with_etag_revalidation() {
    let (_dir, gw) = gateway(&[]);
    let c = client();
    let page = c.get(gw.url("/")).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let etag = page.headers()["etag"].clone();
    let text = page.text().unwrap();
    assert!(text.contains("Photo PACS"));
    let again = c
        .get(gw.url("/"))
        .header("if-none-match", etag)
        .send()
        .unwrap();
    assert_eq!(again.status(), 304);
    let script = c.get(gw.url("/app.js")).send().unwrap();
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
}
