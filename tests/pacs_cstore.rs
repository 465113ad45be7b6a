//! C-STORE and C-ECHO from the real binary to real peers on loopback: dcmtk's storescp
//! (plain, TLS, refusing), a pynetdicom SCP that fails chosen instances, Orthanc, and a
//! listener that never answers.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::orthanc::{Orthanc, OrthancConfig, find_orthanc};
use common::storescp::{
    Behaviour, PeerCert, ScpTls, StoreScp, StoreScpConfig, TlsMaterial, closing_listener,
    dcmtk_tool, silent_listener,
};
use common::*;
use serde_json::{Value, json};

const THREE: [(&str, &str); 3] = [
    ("a.jpg", "pillow_flower.jpg"),
    ("b.jpg", "pillow_hopper.jpg"),
    ("c.png", "pillow_transparent.png"),
];

fn fields() -> Vec<(&'static str, &'static str)> {
    vec![
        ("patientId", "A123456"),
        ("patientName", "王大明"),
        ("examDescription", "wound check"),
    ]
}

fn dump_value(dcmdump: &Path, file: &Path, tag: &str) -> String {
    let out = Command::new(dcmdump).arg(file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with(tag))
        .unwrap_or_else(|| panic!("{tag} missing in\n{text}"));
    let v = line
        .split_once('[')
        .and_then(|(_, r)| r.split_once(']'))
        .map(|(v, _)| v);
    v.unwrap_or("").to_string()
}

fn echo(gw: &Gateway, body: Value) -> (u16, Value, Duration) {
    let started = Instant::now();
    let resp = client()
        .post(gw.url("/api/pacs/echo"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let elapsed = started.elapsed();
    (
        resp.status().as_u16(),
        resp.json().unwrap_or(Value::Null),
        elapsed,
    )
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn a_three_photo_submission_arrives_in_storescp_as_one_study() {
    let (Some(storescp), Some(dcmdump)) = (dcmtk_tool("storescp"), dcmtk_tool("dcmdump")) else {
        return;
    };
    let scp = StoreScp::start(&storescp, StoreScpConfig::new("STORESCP").tcp_nodelay(true));
    let (_dir, gw) = gateway_env(&cstore_env(scp.port(), "STORESCP", &[]));
    let resp = upload(&gw, &fields(), &THREE);
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().unwrap();
    assert_eq!(doc["status"], "success", "{doc}");
    assert_eq!(doc["pacs"]["backend"], "cstore");
    scp.wait_for_files(3, Duration::from_secs(10));
    let files = scp.received_files();
    assert_eq!(files.len(), 3, "{}", scp.logs());
    let ours: Vec<&str> = doc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sopInstanceUID"].as_str().unwrap())
        .collect();
    for f in &files {
        assert_eq!(
            dump_value(&dcmdump, f, "(0020,000d)"),
            doc["studyInstanceUID"].as_str().unwrap()
        );
        assert_eq!(
            dump_value(&dcmdump, f, "(0020,000e)"),
            doc["seriesInstanceUID"].as_str().unwrap()
        );
        let sop = dump_value(&dcmdump, f, "(0008,0018)");
        assert!(ours.contains(&sop.as_str()), "{sop} is not one of ours");
        assert_eq!(dump_value(&dcmdump, f, "(0010,0010)"), "王大明");
    }
}

#[test]
#[cfg_attr(
    any(missing_peer = "dcmtk", missing_peer = "openssl"),
    ignore = "needs dcmtk and openssl: dcmtk is not installed (apt-get install dcmtk); openssl is not installed (apt-get install openssl)"
)]
fn tls_with_the_right_ca_stores_and_a_wrong_ca_is_named() {
    let (Some(storescp), Some(openssl)) = (dcmtk_tool("storescp"), peer("openssl", "openssl"))
    else {
        return;
    };
    let tls = TlsMaterial::generate(&openssl);
    // Mutual TLS: storescp requires our client certificate.
    let scp = StoreScp::start(
        &storescp,
        StoreScpConfig::new("TLSSCP").tls(ScpTls::from_material(&tls).peer_cert(PeerCert::Require)),
    );
    let mut env = cstore_env(scp.port(), "TLSSCP", &[]);
    env.extend([
        ("PHOTO_PACS_PACS_HOST".to_string(), "localhost".to_string()),
        ("PHOTO_PACS_PACS_TLS".into(), "true".into()),
        (
            "PHOTO_PACS_PACS_TLS_CA_FILE".into(),
            tls.ca_cert.display().to_string(),
        ),
        (
            "PHOTO_PACS_PACS_TLS_CERT_FILE".into(),
            tls.client_cert.display().to_string(),
        ),
        (
            "PHOTO_PACS_PACS_TLS_KEY_FILE".into(),
            tls.client_key.display().to_string(),
        ),
    ]);
    let (_dir, gw) = gateway_env(&env);
    let resp = upload(&gw, &fields(), &THREE);
    assert_eq!(resp.status(), 200, "{}\n{}", gw.logs(), scp.logs());
    scp.wait_for_files(3, Duration::from_secs(10));
    assert_eq!(scp.received_files().len(), 3);
    let (code, doc, _) = echo(&gw, json!({}));
    assert_eq!(code, 200, "{doc}");

    // A CA file that does not exist is refused when saved, naming the setting.
    let put = |body: Value| put_settings(&gw, &body);
    let resp = put(json!({"pacsTlsCaFile": "/nonexistent/ca.pem"}));
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().unwrap()["field"], "pacsTlsCaFile");

    // A real CA file, but the wrong CA: the upload is refused with the certificate named.
    let resp = put(json!({"pacsTlsCaFile": tls.other_ca_cert.display().to_string()}));
    assert_eq!(resp.status(), 200);
    let resp = upload(&gw, &fields(), &THREE[..1]);
    assert_eq!(resp.status(), 502);
    let doc: Value = resp.json().unwrap();
    assert_eq!(doc["code"], "PACS_REJECTED");
    let msg = doc["message"].as_str().unwrap();
    println!("wrong CA: {msg}");
    assert!(
        msg.contains("certificate") && msg.contains("CA file"),
        "{msg}"
    );
    assert_eq!(scp.received_files().len(), 3, "nothing more arrived");
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn echo_succeeds_and_fails_as_it_should() {
    let Some(storescp) = dcmtk_tool("storescp") else {
        return;
    };
    let scp = StoreScp::start(&storescp, StoreScpConfig::new("ECHOSCP"));
    let (_dir, gw) = gateway_env(&cstore_env(scp.port(), "ECHOSCP", &[]));
    let (code, doc, _) = echo(&gw, json!({}));
    assert_eq!(code, 200, "{doc}");
    assert_eq!(doc["status"], "success");
    assert!(doc["elapsedMs"].is_u64());

    // A closed port: refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, doc, elapsed) = echo(&gw, json!({"port": closed}));
    println!("closed port: {code} after {elapsed:?}");
    assert_eq!(code, 502, "{doc}");
    assert_eq!(doc["code"], "PACS_REJECTED");
    assert!(
        doc["message"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{doc}"
    );
    // Behaviour, not speed: a refused connection must not be retried or waited on.
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");

    // A peer that accepts TCP and then says nothing: the configured timeout, give or take 1 s.
    let (silent, _guard) = silent_listener();
    let resp = put_settings(&gw, &json!({"pacsTimeoutS": 3}));
    assert_eq!(resp.status(), 200);
    let (code, doc, elapsed) = echo(&gw, json!({"port": silent}));
    println!("silent peer: {code} after {elapsed:?}");
    assert_eq!(code, 504, "{doc}");
    assert_eq!(doc["code"], "PACS_TIMEOUT");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed <= Duration::from_secs(4),
        "{elapsed:?}"
    );

    // Overrides are validated like settings and never saved.
    let (code, doc, _) = echo(&gw, json!({"calledAET": "A\\B"}));
    assert_eq!((code, doc["field"].as_str()), (400, Some("calledAET")));
    let settings: Value = gw.get_json("/api/settings");
    assert_eq!(settings["settings"]["pacsPort"], scp.port());
}

/// A port that takes the connection and closes it without a byte (a forwarder or proxy up,
/// the PACS behind it down, or restarting): the PACS is away, not misconfigured. The study
/// is queued (202), not refused, and arrives once storescp listens on that port.
#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn a_pacs_port_that_closes_at_once_keeps_the_study_until_the_pacs_is_back() {
    let Some(storescp) = dcmtk_tool("storescp") else {
        return;
    };
    let (port, closing) = closing_listener();
    let env = cstore_env(
        port,
        "STORESCP",
        &[
            ("PHOTO_PACS_RETRY_MAX_S", "1"),
            ("PHOTO_PACS_DELIVERY_WAIT_S", "1"),
        ],
    );
    let (_dir, gw) = gateway_env(&env);
    let resp = upload(&gw, &fields(), &THREE[..1]);
    assert_eq!(resp.status(), 202, "queued, not refused");
    assert!(closing.accepted() >= 1, "the gateway never connected");
    let status = gw.get_json("/api/status");
    assert_eq!(status["outbox"]["depth"], 1, "{status:#}");
    assert!(
        status["outbox"]["lastError"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("closed the connection without answering")),
        "{status:#}"
    );

    drop(closing);
    let scp = StoreScp::start(&storescp, StoreScpConfig::new("STORESCP").port(port));
    scp.wait_for_files(1, Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.get_json("/api/status")["outbox"]["depth"] != 0 {
        assert!(
            Instant::now() < deadline,
            "the study was never marked delivered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        scp.received_files().len(),
        1,
        "delivered once: {}",
        scp.logs()
    );
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn a_refused_association_is_502_and_an_out_of_resources_pacs_gets_the_study_later() {
    let Some(storescp) = dcmtk_tool("storescp") else {
        return;
    };
    let refusing = StoreScp::start(
        &storescp,
        StoreScpConfig::new("NOPE").behaviour(Behaviour::RefuseAssociation),
    );
    let (_dir, gw) = gateway_env(&cstore_env(refusing.port(), "NOPE", &[]));
    expect_error(
        upload(&gw, &fields(), &THREE[..1]),
        502,
        "PACS_REJECTED",
        "rejected the association",
    );
    drop(gw);

    let failing = StoreScp::start(
        &storescp,
        StoreScpConfig::new("FULL").behaviour(Behaviour::FailEveryStore),
    );
    let (dir, gw) = gateway_env(&cstore_env(failing.port(), "FULL", &[]));
    let resp = upload(&gw, &fields(), &THREE[..2]);
    // Out of resources (A700) may pass: the study is saved and retried, not refused.
    assert_eq!(resp.status(), 202);
    let doc: Value = resp.json().unwrap();
    assert_eq!(doc["status"], "queued", "{doc}");
    for i in doc["instances"].as_array().unwrap() {
        assert_eq!(i["status"], "queued");
        assert!(i["reason"].as_str().unwrap().contains("A700"), "{i}");
    }
    // Nothing was delivered, so nothing may be deleted.
    assert_eq!(outbox_objects(dir.path()).len(), 2);
}

#[test]
#[cfg_attr(
    missing_peer = "python",
    ignore = "pydicom, numpy, Pillow or pynetdicom is missing (pip install -r tests/peers/requirements.txt)"
)]
fn one_refused_instance_is_reported_and_the_others_stored() {
    let out = tempfile::tempdir().unwrap();
    // The data set does not match the SOP class: refused for good.
    let Some(mut scp) = FailingScp::start("PYSCP", "2", "A900", out.path()) else {
        return;
    };
    let port = scp.port;
    let (dir, gw) = gateway_env(&cstore_env(port, "PYSCP", &[]));
    let resp = upload(&gw, &fields(), &THREE);
    scp.kill();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().unwrap();
    assert_eq!(doc["status"], "partial", "{doc}");
    let statuses: Vec<&str> = doc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["success", "failed", "success"]);
    assert!(
        doc["instances"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("A900")
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 2);
    // A partial delivery keeps the files for an admin's resend.
    assert_eq!(outbox_objects(dir.path()).len(), 3);
}

use common::storescp;

#[test]
#[cfg_attr(
    missing_peer = "orthanc",
    ignore = "Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
)]
fn orthanc_receives_the_study_with_its_utf8_name() {
    let Some(orthanc_bin) =
        find_orthanc().or_else(|| storescp::missing_peer("Orthanc", "orthanc orthanc-dicomweb"))
    else {
        return;
    };
    let orthanc = Orthanc::start(
        &orthanc_bin,
        OrthancConfig::new("ORTHANC").tcp_nodelay(true),
    );
    let (_dir, gw) = gateway_env(&cstore_env(orthanc.dicom_port(), "ORTHANC", &[]));
    let (code, doc, _) = echo(&gw, json!({}));
    assert_eq!(code, 200, "{doc}");
    let resp = upload(&gw, &fields(), &THREE);
    assert_eq!(resp.status(), 200, "{}", gw.logs());
    let answer: Value = resp.json().unwrap();
    let studies = orthanc.get_json("/studies?expand");
    assert_eq!(studies.as_array().unwrap().len(), 1, "{studies}");
    let study = &studies[0];
    assert_eq!(study["PatientMainDicomTags"]["PatientID"], "A123456");
    assert_eq!(study["PatientMainDicomTags"]["PatientName"], "王大明");
    assert_eq!(
        study["MainDicomTags"]["StudyInstanceUID"],
        answer["studyInstanceUID"]
    );
    assert_eq!(study["Series"].as_array().unwrap().len(), 1);

    // A wrong called AE title is rejected by Orthanc, and the message says where to look.
    let (code, doc, _) = echo(&gw, json!({"calledAET": "NOT_ORTHANC"}));
    assert_eq!(code, 502, "{doc}");
    assert!(
        doc["message"].as_str().unwrap().contains("AE title"),
        "{doc}"
    );
}

#[test]
#[cfg_attr(
    missing_peer = "orthanc",
    ignore = "Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
)]
fn a_pacs_without_jpeg_says_which_syntax_it_refused() {
    let Some(orthanc_bin) =
        find_orthanc().or_else(|| storescp::missing_peer("Orthanc", "orthanc orthanc-dicomweb"))
    else {
        return;
    };
    let orthanc = Orthanc::start(
        &orthanc_bin,
        OrthancConfig::new("NOJPEG").set("JpegTransferSyntaxAccepted", json!(false)),
    );
    let mut env = cstore_env(orthanc.dicom_port(), "NOJPEG", &[]);
    env.push((
        "PHOTO_PACS_LOCAL_TRANSFER_SYNTAX".into(),
        "1.2.840.10008.1.2.4.50".into(),
    ));
    let (_dir, gw) = gateway_env(&env);
    let resp = upload(&gw, &fields(), &THREE[..1]);
    assert_eq!(resp.status(), 502);
    let doc: Value = resp.json().unwrap();
    let msg = doc["message"].as_str().unwrap();
    assert!(
        msg.contains("does not accept Secondary Capture in JPEG Baseline"),
        "{msg}"
    );
}
