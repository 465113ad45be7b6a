//! STOW-RS and the DICOMweb connection test from the real binary to Orthanc's DICOMweb
//! plugin on loopback, with and without basic authentication.

mod common;

use std::time::{Duration, Instant};

use common::orthanc::{Orthanc, OrthancConfig, find_orthanc};
use common::storescp::{missing_peer, silent_listener};
use common::*;
use serde_json::{Value, json};

fn orthanc(config: OrthancConfig) -> Option<Orthanc> {
    let bin = find_orthanc().or_else(|| {
        missing_peer(
            "Orthanc with its DICOMweb plugin",
            "orthanc orthanc-dicomweb",
        )
    })?;
    Some(Orthanc::start(&bin, config))
}

fn dicomweb_env(base: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PHOTO_PACS_PACS_BACKEND".to_string(),
            "dicomweb".to_string(),
        ),
        ("PHOTO_PACS_DICOMWEB_BASE_URL".into(), base.into()),
        ("PHOTO_PACS_DICOMWEB_TIMEOUT_S".into(), "10".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn echo(gw: &Gateway) -> (u16, Value, Duration) {
    let started = Instant::now();
    let resp = client()
        .post(gw.url("/api/pacs/echo"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().unwrap_or(Value::Null),
        started.elapsed(),
    )
}

const PHOTOS: [(&str, &str); 3] = [
    ("a.jpg", "pillow_flower.jpg"),
    ("b.jpg", "pillow_hopper_orientation_6.jpg"),
    ("c.png", "pillow_transparent.png"),
];

fn fields() -> Vec<(&'static str, &'static str)> {
    vec![
        ("patientId", "A123456"),
        ("patientName", "王大明"),
        ("sex", "M"),
    ]
}

#[test]
#[cfg_attr(
    missing_peer = "orthanc",
    ignore = "Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
)]
fn stow_rs_stores_the_submission_in_orthanc() {
    let Some(orthanc) = orthanc(OrthancConfig::new("ORTHANC")) else {
        return;
    };
    let (_dir, gw) = gateway_env(&dicomweb_env(&orthanc.dicomweb_base(), &[]));
    let (code, doc, _) = echo(&gw);
    assert_eq!(code, 200, "{doc}");
    let resp = upload(&gw, &fields(), &PHOTOS);
    assert_eq!(resp.status(), 200, "{}", gw.logs());
    let answer: Value = resp.json().unwrap();
    assert_eq!(answer["status"], "success", "{answer}");
    assert_eq!(answer["pacs"]["backend"], "dicomweb");
    let studies = orthanc.get_json("/studies?expand");
    assert_eq!(studies.as_array().unwrap().len(), 1, "{studies}");
    assert_eq!(studies[0]["PatientMainDicomTags"]["PatientID"], "A123456");
    assert_eq!(studies[0]["PatientMainDicomTags"]["PatientName"], "王大明");
    assert_eq!(
        studies[0]["MainDicomTags"]["StudyInstanceUID"],
        answer["studyInstanceUID"]
    );
    let instances = orthanc.get_json("/instances?expand");
    let mut stored: Vec<String> = instances
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["MainDicomTags"]["SOPInstanceUID"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut ours: Vec<String> = answer["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sopInstanceUID"].as_str().unwrap().to_string())
        .collect();
    stored.sort();
    ours.sort();
    assert_eq!(stored, ours);
}

/// tests/peers/tls_front.py: HTTPS with `tls`'s server certificate (signed by its private
/// CA) in front of Orthanc's plain HTTP port; killed on drop.
struct TlsFront(std::process::Child, u16);

impl TlsFront {
    fn start(tls: &common::storescp::TlsMaterial, target: u16) -> TlsFront {
        use std::io::BufRead;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/tls_front.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .arg(&tls.server_cert)
            .arg(&tls.server_key)
            .arg(target.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start tls_front.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("its stdout"))
            .read_line(&mut line)
            .expect("read its port");
        let port = line.trim().parse().expect("a port number");
        TlsFront(child, port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[cfg_attr(
    any(
        missing_peer = "orthanc",
        missing_peer = "openssl",
        missing_peer = "python"
    ),
    ignore = "needs Orthanc with its DICOMweb plugin, openssl and python3"
)]
fn a_private_ca_file_verifies_the_server_without_turning_verification_off() {
    let (Some(orthanc), Some(openssl)) = (
        orthanc(OrthancConfig::new("ORTHANC")),
        peer("openssl", "openssl"),
    ) else {
        return;
    };
    let tls = common::storescp::TlsMaterial::generate(&openssl);
    let front = TlsFront::start(&tls, orthanc.http_port());
    let base = format!("https://127.0.0.1:{}/dicom-web", front.1);
    let ca = tls.ca_cert.display().to_string();
    let (_dir, gw) = gateway_env(&dicomweb_env(
        &base,
        &[("PHOTO_PACS_DICOMWEB_TLS_CA_FILE", ca.as_str())],
    ));
    let (code, doc, _) = echo(&gw);
    assert_eq!(code, 200, "{doc}");
    let resp = upload(&gw, &fields(), &PHOTOS[..1]);
    assert_eq!(resp.status(), 200, "{}", gw.logs());
    assert_eq!(orthanc.get_json("/instances").as_array().unwrap().len(), 1);
    assert!(
        !gw.logs().contains("VERIFY_TLS is off"),
        "verification stays on"
    );

    // Another CA's file: the server is not trusted, and the answer says why.
    let other = tls.other_ca_cert.display().to_string();
    let (_dir2, gw2) = gateway_env(&dicomweb_env(
        &base,
        &[("PHOTO_PACS_DICOMWEB_TLS_CA_FILE", other.as_str())],
    ));
    let (code, doc, _) = echo(&gw2);
    assert_eq!(code, 502, "{doc}");
    let message = doc["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(message.contains("certificate"), "{doc}");

    // Without a CA file the system's trust store does not know the private CA either.
    let (_dir3, gw3) = gateway_env(&dicomweb_env(&base, &[]));
    assert_eq!(echo(&gw3).0, 502);
}

#[test]
#[cfg_attr(
    missing_peer = "orthanc",
    ignore = "Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
)]
fn basic_auth_works_with_the_right_password_and_says_so_with_a_wrong_one() {
    let Some(orthanc) = orthanc(OrthancConfig::new("ORTHANC").basic_auth("nurse", "c0rrect-horse"))
    else {
        return;
    };
    let base = orthanc.dicomweb_base();
    let auth = [
        ("PHOTO_PACS_DICOMWEB_AUTH_METHOD", "basic"),
        ("PHOTO_PACS_DICOMWEB_USERNAME", "nurse"),
        ("PHOTO_PACS_DICOMWEB_PASSWORD", "c0rrect-horse"),
    ];
    let (_dir, gw) = gateway_env(&dicomweb_env(&base, &auth));
    let (code, doc, _) = echo(&gw);
    assert_eq!(code, 200, "{doc}");
    let resp = upload(&gw, &fields(), &PHOTOS[..1]);
    assert_eq!(resp.status(), 200, "{}", gw.logs());
    assert_eq!(orthanc.get_json("/instances").as_array().unwrap().len(), 1);

    let resp = put_settings(&gw, &json!({"dicomwebPassword": "wrong-horse"}));
    assert_eq!(resp.status(), 200);
    expect_error(
        upload(&gw, &fields(), &PHOTOS[..1]),
        502,
        "PACS_REJECTED",
        "authentication failed",
    );
    let (code, doc, _) = echo(&gw);
    assert_eq!(code, 502);
    assert!(
        doc["message"]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{doc}"
    );
    assert_eq!(
        orthanc.get_json("/instances").as_array().unwrap().len(),
        1,
        "nothing more arrived"
    );
    assert!(!gw.logs().contains("horse"), "a password reached the log");
}

#[test]
fn an_unreachable_or_silent_server_is_502_or_504() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_dir, gw) = gateway_env(&dicomweb_env(
        &format!("http://127.0.0.1:{closed}/dicom-web"),
        &[],
    ));
    let (code, doc, _) = echo(&gw);
    assert_eq!(code, 502, "{doc}");
    assert!(
        doc["message"].as_str().unwrap().contains("cannot connect"),
        "{doc}"
    );
    drop(gw);

    let (silent, _guard) = silent_listener();
    let env = dicomweb_env(
        &format!("http://127.0.0.1:{silent}/dicom-web"),
        &[("PHOTO_PACS_DICOMWEB_TIMEOUT_S", "2")],
    );
    let (_dir, gw) = gateway_env(&env);
    let (code, doc, elapsed) = echo(&gw);
    println!("silent DICOMweb server: {code} after {elapsed:?}");
    assert_eq!(code, 504, "{doc}");
    assert_eq!(doc["code"], "PACS_TIMEOUT");
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed <= Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[test]
fn unverified_tls_is_warned_about_at_start_up_and_in_the_settings() {
    let (_dir, gw) = gateway_env(&dicomweb_env(
        "https://127.0.0.1:9/dicom-web",
        &[("PHOTO_PACS_DICOMWEB_VERIFY_TLS", "false")],
    ));
    assert!(
        gw.logs().contains("DICOMWEB_VERIFY_TLS is off"),
        "{}",
        gw.logs()
    );
    let doc: Value = gw.get_json("/api/settings");
    let warnings = doc["warnings"].to_string();
    assert!(warnings.contains("DICOMWEB_VERIFY_TLS is off"), "{doc}");
}

#[test]
fn dicomweb_mode_without_a_base_url_starts_and_says_what_is_missing() {
    let (_dir, gw) = gateway_env(&[(
        "PHOTO_PACS_PACS_BACKEND".to_string(),
        "dicomweb".to_string(),
    )]);
    let doc: Value = gw.get_json("/api/settings");
    assert!(
        doc["warnings"].to_string().contains("dicomwebBaseUrl"),
        "{doc}"
    );
    let resp = upload(&gw, &fields(), &PHOTOS[..1]);
    assert_eq!(resp.status(), 502);
    let doc: Value = resp.json().unwrap();
    assert!(
        doc["message"].as_str().unwrap().contains("base URL"),
        "{doc}"
    );
}
