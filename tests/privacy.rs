//! No patient value reaches the log, on success or on any failure path, at any log level.

mod common;

use common::*;

const ID: &str = "CANARYID7731";
const NAME: &str = "CANARYNAME^Zhang王";
const BIRTH: &str = "1931-07-29";
const DESCRIPTION: &str = "CANARYDESC wound check";

fn fields<'a>(overrides: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![
        ("patientId", ID),
        ("patientName", NAME),
        ("birthDate", BIRTH),
        ("sex", "F"),
        ("examDescription", DESCRIPTION),
    ];
    for (k, v) in overrides {
        f.retain(|(name, _)| name != k);
        f.push((k, v));
    }
    f
}

#[test]
fn canary_patient_values_never_reach_the_log() {
    let (_dir, gw) = gateway(&[("PHOTO_PACS_LOG_LEVEL", "trace")]);
    let photo = read_data("pillow_hopper.jpg");
    let file_name = "CANARYFILE_Zhang.jpg";
    let c = client();
    let mut statuses = Vec::new();
    let long_description = "CANARYDESC".repeat(7);
    type Attempt<'a> = (Vec<(&'a str, &'a str)>, Vec<(&'a str, Vec<u8>)>);
    let attempts: Vec<Attempt> = vec![
        // Success.
        (fields(&[]), vec![(file_name, photo.clone())]),
        // Each field refused, with the canary inside the bad value.
        (
            fields(&[("patientId", "CANARYID7731\\x")]),
            vec![(file_name, photo.clone())],
        ),
        (
            fields(&[("patientName", "CANARYNAME=a=b=c")]),
            vec![(file_name, photo.clone())],
        ),
        (
            fields(&[("birthDate", "CANARYBIRTH")]),
            vec![(file_name, photo.clone())],
        ),
        (
            fields(&[("birthDate", "2931-07-29")]),
            vec![(file_name, photo.clone())],
        ),
        (
            fields(&[("examDescription", &long_description)]),
            vec![(file_name, photo.clone())],
        ),
        (
            fields(&[("examDateTime", "CANARYTIME")]),
            vec![(file_name, photo.clone())],
        ),
        (
            fields(&[("sex", "CANARYSEX")]),
            vec![(file_name, photo.clone())],
        ),
        // Image problems, with every other field valid and present.
        (
            fields(&[]),
            vec![(file_name, photo[..photo.len() / 2].to_vec())],
        ),
        (
            fields(&[]),
            vec![(file_name, b"CANARY text, not a photo".to_vec())],
        ),
        (fields(&[]), vec![]),
    ];
    for (f, images) in attempts {
        let resp = c
            .post(gw.url("/api/studies"))
            .multipart(form(&f, &images))
            .send()
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses[1..].iter().all(|s| *s == 400), "{statuses:?}");

    let logs = gw.logs();
    // The check below means nothing unless the requests were logged at all.
    assert!(
        logs.matches("route=/api/studies").count() >= statuses.len(),
        "{logs}"
    );
    for canary in ["CANARY", "Zhang", "王", BIRTH, "19310729", "2931", "wound"] {
        assert!(
            !logs.contains(canary),
            "{canary:?} reached the log:\n{logs}"
        );
    }
}

/// The worklist, lookups (found, not found, refused) and a study sent from a worklist entry
/// (accepted and refused): patient values from the PACS side stay out of the log and the
/// metrics too.
#[test]
fn worklist_and_lookup_values_never_reach_the_log_or_metrics() {
    let (_dir, gw) = gateway(&[
        ("PHOTO_PACS_LOG_LEVEL", "trace"),
        ("PHOTO_PACS_WORKLIST_ENABLED", "true"),
    ]);
    let c = client();
    let list: serde_json::Value = c
        .get(gw.url("/api/worklist"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let entries = list["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{list}");
    let mut statuses = Vec::new();
    for id in ["DEMO002", "CANARYLOOKUP1", "CANARY*", "CANARY\\x"] {
        let r = c
            .post(gw.url("/api/patients/lookup"))
            .json(&serde_json::json!({ "patientId": id }))
            .send()
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 400, 400]);
    // A study from the demo entry whose name is 測試^小明, then one whose entry names
    // another patient than the form.
    let entry = entries[1]["entry"].as_str().unwrap();
    let photo = read_data("pillow_hopper.jpg");
    let sent = c
        .post(gw.url("/api/studies"))
        .multipart(form(
            &[("patientId", "DEMO002"), ("worklistEntry", entry)],
            &[("a.jpg", photo.clone())],
        ))
        .send()
        .unwrap();
    assert_eq!(sent.status(), 200);
    let forged = entry.replace("DEMO002", "CANARYFORGED");
    let refused = c
        .post(gw.url("/api/studies"))
        .multipart(form(
            &[("patientId", "DEMO002"), ("worklistEntry", &forged)],
            &[("a.jpg", photo)],
        ))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);
    let metrics = c.get(gw.url("/metrics")).send().unwrap().text().unwrap();
    let logs = gw.logs();
    assert!(logs.contains("route=/api/patients/lookup"), "{logs}");
    for canary in [
        "CANARY",
        "DEMO002",
        "測試",
        "小明",
        "Dermatology",
        "19841103",
        "1984-11-03",
    ] {
        assert!(
            !logs.contains(canary),
            "{canary:?} reached the log:\n{logs}"
        );
        assert!(!metrics.contains(canary), "{canary:?} reached the metrics");
    }
}
