//! pynetdicom SCPs where a behaviour must be forced: a worklist provider with more matches
//! than we want (C-CANCEL, FF01 pendings), a PACS that refuses Patient Root queries but
//! answers Study Root ones (the lookup falls back to STUDY level), and both over DICOM TLS
//! with the settings C-STORE uses.

use std::path::Path;
use std::time::Duration;

use chrono::NaiveDate;
use photo_pacs::config::Settings;
use photo_pacs::lookup::{self, Level};
use photo_pacs::pacs::FailureClass;
use photo_pacs::study::Sex;
use photo_pacs::worklist::{self, Query};

use crate::common::find_scp::FindScp;
use crate::common::peer;
use crate::common::storescp::{PeerCert, ScpTls, TlsMaterial};
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

/// [`settings_for`] over TLS, trusting `ca` and presenting the material's client
/// certificate, as an admin sets `pacs_tls*` for C-STORE.
fn tls_settings_for(aet: &str, port: u16, tls: &TlsMaterial, ca: &Path) -> Settings {
    let path = |p: &Path| p.display().to_string();
    Settings {
        pacs_tls: true,
        pacs_tls_ca_file: path(ca),
        pacs_tls_cert_file: path(&tls.client_cert),
        pacs_tls_key_file: path(&tls.client_key),
        ..settings_for(aet, port)
    }
}

#[tokio::test]
#[cfg_attr(
    any(missing_peer = "python", missing_peer = "openssl"),
    ignore = "needs pynetdicom and openssl: pip install -r tests/peers/requirements.txt; apt-get install openssl"
)]
async fn a_worklist_query_over_mutual_tls_returns_the_matches() {
    let Some(openssl) = peer("openssl", "openssl") else {
        return;
    };
    let tls = TlsMaterial::generate(&openssl);
    // Mutual TLS: the SCP refuses a handshake without a client certificate from our CA.
    let scp_tls = ScpTls::from_material(&tls).peer_cert(PeerCert::Require);
    let Some(scp) = FindScp::start_tls("TLSMWL", "worklist:3:99", &scp_tls) else {
        return;
    };
    let by_ip = tls_settings_for("TLSMWL", scp.port, &tls, &tls.ca_cert);
    // The server certificate names both; an IP address is checked against its IP SAN,
    // a host name (as in the C-STORE TLS test) against its DNS SAN.
    let by_name = Settings {
        pacs_host: "localhost".into(),
        ..by_ip.clone()
    };
    for s in [&by_ip, &by_name] {
        let list = worklist::query(s, &query(10))
            .await
            .unwrap_or_else(|e| panic!("{} over TLS: {e:?}\n{:?}", s.pacs_host, scp.lines()));
        let ids: Vec<&str> = list.entries.iter().map(|e| e.patient.id.as_str()).collect();
        assert_eq!(ids, ["P0", "P1", "P2"], "{}", s.pacs_host);
        assert!(!list.truncated);
    }
    // Both queries went through TLS to the SCP's handler, the identifier intact.
    let queries = scp.queries();
    assert_eq!(queries.len(), 2, "{:?}", scp.lines());
    let steps = queries[0]["00400100"]["Value"]
        .as_array()
        .expect("one step item");
    assert_eq!(steps[0]["00080060"]["Value"][0], "XC");

    // Without a client certificate, or with one from a CA the SCP does not trust, it
    // refuses: a configuration error pointing at the client certificate, and no query
    // reaches the handler.
    let anonymous = Settings {
        pacs_tls_cert_file: String::new(),
        pacs_tls_key_file: String::new(),
        ..by_ip.clone()
    };
    let stranger = Settings {
        pacs_tls_cert_file: tls.other_client_cert.display().to_string(),
        pacs_tls_key_file: tls.other_client_key.display().to_string(),
        ..by_ip.clone()
    };
    for (what, s) in [
        ("no client certificate", &anonymous),
        ("untrusted client", &stranger),
    ] {
        let e = worklist::query(s, &query(10))
            .await
            .expect_err("the SCP requires a client certificate from its CA");
        println!("{what}: {e:?}");
        assert_eq!(e.class, FailureClass::Configuration, "{what}: {e:?}");
        assert!(e.message.contains("client certificate"), "{what}: {e:?}");
    }
    assert_eq!(scp.queries().len(), 2, "{:?}", scp.lines());
}

#[tokio::test]
#[cfg_attr(
    any(missing_peer = "python", missing_peer = "openssl"),
    ignore = "needs pynetdicom and openssl: pip install -r tests/peers/requirements.txt; apt-get install openssl"
)]
async fn a_patient_lookup_over_tls_falls_back_to_study_level() {
    let Some(openssl) = peer("openssl", "openssl") else {
        return;
    };
    let tls = TlsMaterial::generate(&openssl);
    let scp_tls = ScpTls::from_material(&tls).peer_cert(PeerCert::Require);
    let Some(scp) = FindScp::start_tls("TLSSTUDY", "studyroot", &scp_tls) else {
        return;
    };
    let s = tls_settings_for("TLSSTUDY", scp.port, &tls, &tls.ca_cert);
    // Two associations, both over TLS: Patient Root is refused, Study Root answers.
    let known = lookup::by_cfind(&s, "A123")
        .await
        .unwrap_or_else(|e| panic!("lookup over TLS: {e:?}\n{:?}", scp.lines()))
        .expect("found at study level");
    assert_eq!(known.level, Level::Study);
    assert_eq!(known.studies, Some(2));
    assert_eq!(known.patient.name, "WANG^DA MING=王^大明");
}

#[tokio::test]
#[cfg_attr(
    any(missing_peer = "python", missing_peer = "openssl"),
    ignore = "needs pynetdicom and openssl: pip install -r tests/peers/requirements.txt; apt-get install openssl"
)]
async fn a_query_with_the_wrong_ca_names_the_certificate_problem() {
    let Some(openssl) = peer("openssl", "openssl") else {
        return;
    };
    let tls = TlsMaterial::generate(&openssl);
    let scp_tls = ScpTls::from_material(&tls).peer_cert(PeerCert::Require);
    let Some(worklist_scp) = FindScp::start_tls("TLSMWL", "worklist:3:99", &scp_tls) else {
        return;
    };
    let Some(study_scp) = FindScp::start_tls("TLSSTUDY", "studyroot", &scp_tls) else {
        return;
    };
    // A real CA file, but not the one that signed the SCP's certificate.
    let s = tls_settings_for("TLSMWL", worklist_scp.port, &tls, &tls.other_ca_cert);
    let e = worklist::query(&s, &query(10))
        .await
        .expect_err("the SCP's certificate is not from this CA");
    println!("wrong CA, worklist: {e:?}");
    assert_eq!(e.class, FailureClass::Configuration, "{e:?}");
    assert!(
        e.message.contains("certificate") && e.message.contains("CA file"),
        "{e:?}"
    );
    assert!(
        worklist_scp.queries().is_empty(),
        "{:?}",
        worklist_scp.lines()
    );

    // The lookup says the same rather than taking it for "Patient Root not supported" and
    // trying Study Root, or for "not found".
    let s = tls_settings_for("TLSSTUDY", study_scp.port, &tls, &tls.other_ca_cert);
    let e = lookup::by_cfind(&s, "A123")
        .await
        .expect_err("the SCP's certificate is not from this CA");
    println!("wrong CA, lookup: {e:?}");
    assert_eq!(e.class, FailureClass::Configuration, "{e:?}");
    assert!(
        e.message.contains("certificate") && e.message.contains("CA file"),
        "{e:?}"
    );
    assert!(study_scp.queries().is_empty(), "{:?}", study_scp.lines());
}
