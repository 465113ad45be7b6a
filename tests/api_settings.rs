//! The settings API and its INI file, across restarts of the real binary.

mod common;

use common::*;
use serde_json::{Value, json};

fn get(gw: &Gateway) -> Value {
    let resp = client().get(gw.url("/api/settings")).send().unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().unwrap()
}

fn put(gw: &Gateway, body: &Value) -> (u16, Value) {
    let resp = put_settings(gw, body);
    (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
}

#[test]
fn put_round_trips_survives_a_restart_and_never_shows_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("data/settings.ini");
    let mut gw = Gateway::start_in(dir.path(), &[]);

    let (code, doc) = put(
        &gw,
        &json!({
            "pacsCalledAET": "ORTHANC",
            "pacsHost": "10.1.2.3",
            "pacsPort": 4242,
            "localResizeMax": 2048,
            "dicomwebPassword": "s3cret-CANARY-pw",
            "dicomwebToken": "tok-CANARY-123",
        }),
    );
    assert_eq!(code, 200, "{doc}");
    let s = &get(&gw)["settings"];
    assert_eq!(s["pacsCalledAET"], "ORTHANC");
    assert_eq!(s["pacsHost"], "10.1.2.3");
    assert_eq!(s["pacsPort"], 4242);
    assert_eq!(s["localResizeMax"], 2048);
    assert_eq!(s["dicomwebPasswordSet"], true);
    assert_eq!(s["dicomwebTokenSet"], true);

    let text = std::fs::read_to_string(&ini).unwrap();
    assert!(text.contains("called_aet=ORTHANC"), "{text}");
    assert!(text.contains("port=4242"), "{text}");

    // A bad value: 400 naming the field, and neither the file nor the settings change.
    let before = std::fs::read(&ini).unwrap();
    let (code, doc) = put(&gw, &json!({"pacsCalledAET": "NEW", "pacsPort": 70000}));
    assert_eq!(code, 400, "{doc}");
    assert_eq!(doc["code"], "VALIDATION_ERROR");
    assert_eq!(doc["field"], "pacsPort");
    assert_eq!(std::fs::read(&ini).unwrap(), before);
    assert_eq!(get(&gw)["settings"]["pacsCalledAET"], "ORTHANC");

    for (body, field) in [
        (json!({"pacsCalledAET": "A\\B"}), "pacsCalledAET"),
        (
            json!({"pacsCalledAET": "SEVENTEEN_CHARS_X"}),
            "pacsCalledAET",
        ),
        (
            json!({"dicomwebBaseUrl": "ftp://pacs/rs"}),
            "dicomwebBaseUrl",
        ),
        (json!({"dicomwebTimeoutS": 301}), "dicomwebTimeoutS"),
        (json!({"localResizeMax": 10}), "localResizeMax"),
        (
            json!({"localTransferSyntax": "1.2.840.10008.1.2.4.90"}),
            "localTransferSyntax",
        ),
        (json!({"localCharset": "GB18030"}), "localCharset"),
        (json!({"pacsPrt": 1}), "pacsPrt"),
    ] {
        let (code, doc) = put(&gw, &body);
        assert_eq!(
            (code, doc["field"].as_str()),
            (400, Some(field)),
            "{body}: {doc}"
        );
    }
    assert_eq!(std::fs::read(&ini).unwrap(), before);

    // The wrapped form `{"settings": {...}}` works too, and what GET returned can be sent back.
    let mut whole = get(&gw);
    whole["settings"]["pacsPort"] = json!(11112);
    let (code, doc) = put(&gw, &whole);
    assert_eq!(code, 200, "{doc}");

    let status = gw.stop();
    assert!(
        status.success(),
        "SIGTERM must end with exit 0, got {status}"
    );
    let logs = gw.logs();
    let gw = Gateway::start_in(dir.path(), &[]);
    let after = get(&gw);
    let s = &after["settings"];
    assert_eq!(s["pacsCalledAET"], "ORTHANC");
    assert_eq!(s["pacsPort"], 11112);
    assert_eq!(s["dicomwebPasswordSet"], true);

    let all = format!("{after}{logs}{}", gw.logs());
    assert!(!all.contains("CANARY"), "a secret leaked: {all}");
}

#[test]
fn a_corrupt_ini_is_set_aside_reported_and_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let ini = dir.path().join("data/settings.ini");
    std::fs::write(&ini, "[pacs]\nhost=10.0.0.9\nport=not-a-port\n").unwrap();
    let gw = Gateway::start_in(dir.path(), &[]);

    let doc = get(&gw);
    let warning = doc["warnings"][0].as_str().unwrap_or_default().to_string();
    assert!(
        warning.contains("line 3") && warning.contains("port"),
        "{doc}"
    );
    assert_eq!(
        doc["settings"]["pacsHost"], "127.0.0.1",
        "runs on the defaults"
    );
    let logs = gw.logs();
    assert!(
        logs.contains("data/settings.ini") && logs.contains("line 3"),
        "{logs}"
    );
    assert!(!ini.exists(), "the broken file must be moved aside");
    let aside: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("settings.ini.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let kept = std::fs::read_to_string(dir.path().join("data").join(&aside[0])).unwrap();
    assert!(
        kept.contains("not-a-port"),
        "the bad file is kept as it was"
    );

    // Saving now writes a fresh file and clears the warning.
    let (code, _) = put(&gw, &json!({"pacsPort": 11112}));
    assert_eq!(code, 200);
    assert!(ini.exists());
    let warnings = get(&gw)["warnings"].to_string();
    assert!(!warnings.contains("settings file"), "{warnings}");
}

#[test]
fn settings_take_effect_on_the_next_upload_without_restart() {
    let (_dir, gw) = gateway(&[]);
    let (code, _) = put(
        &gw,
        &json!({"pacsCalledAET": "NEXT_AET", "pacsPort": 11112}),
    );
    assert_eq!(code, 200);
    let resp: Value = upload(
        &gw,
        &[("patientId", "P-9")],
        &[("a.jpg", "pillow_hopper.jpg")],
    )
    .json()
    .unwrap();
    assert_eq!(resp["pacs"]["calledAET"], "NEXT_AET");
    assert_eq!(resp["pacs"]["port"], 11112);
}

/// What `photo-pacs provision` reported about the SD card's first-boot file reaches the
/// settings page (the image test checks the whole path; this is the gateway's half, in CI).
#[test]
fn first_boot_file_problems_are_shown_as_warnings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/boot-config-problems.txt"),
        "line 6: PHOTO_PACS_PACS_PORT must be a port from 1 to 65535\n",
    )
    .unwrap();
    let gw = Gateway::start_in(dir.path(), &[]);
    let warnings = get(&gw)["warnings"].to_string();
    assert!(
        warnings.contains("photo-pacs-applied.env")
            && warnings.contains("line 6: PHOTO_PACS_PACS_PORT"),
        "{warnings}"
    );
}
