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
