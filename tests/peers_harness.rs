//! Proves the peer harnesses work with dcmtk's own tools: storescp (plain, TLS, negative
//! behaviours), the silent listener, and Orthanc (DICOM, REST, DICOMweb, basic auth).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::orthanc::{Orthanc, OrthancConfig, find_orthanc};
use common::storescp::{
    Behaviour, PeerCert, ScpTls, StoreScp, StoreScpConfig, TlsMaterial, dcmtk_tool, missing_peer,
    silent_listener,
};

/// A program in `PATH` (or `None`, "SKIPPED" printed; panics under CI).
fn program(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    found.or_else(|| missing_peer(name, package))
}

/// Runs a dcmtk tool to completion (stdin closed).
fn run(tool: &Path, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A Secondary Capture object (JPEG baseline) made by img2dcm from a test photo.
fn sample_dicom(dir: &Path) -> Option<PathBuf> {
    let img2dcm = dcmtk_tool("img2dcm")?;
    let jpeg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pillow_hopper.jpg");
    let out = dir.join("hopper.dcm");
    let jpeg = jpeg.to_str().expect("UTF-8 path of the test photo");
    let dest = out.to_str().expect("UTF-8 temp path");
    let result = run(&img2dcm, &[jpeg, dest]);
    assert!(
        result.status.success(),
        "img2dcm failed:\n{}",
        text(&result)
    );
    Some(out)
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn storescp_plain_echo_and_store() {
    let (Some(storescp), Some(echoscu), Some(storescu)) = (
        dcmtk_tool("storescp"),
        dcmtk_tool("echoscu"),
        dcmtk_tool("storescu"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let Some(file) = sample_dicom(tmp.path()) else {
        return;
    };
    let scp = StoreScp::start(&storescp, StoreScpConfig::new("TESTSCP").tcp_nodelay(true));
    let port = scp.port().to_string();

    let echo = run(&echoscu, &["-aec", "TESTSCP", "127.0.0.1", &port]);
    assert!(
        echo.status.success(),
        "echoscu failed:\n{}\nstorescp:\n{}",
        text(&echo),
        scp.logs()
    );

    // -xy: propose JPEG baseline, the file's transfer syntax.
    let file = file.to_str().expect("UTF-8 temp path");
    let store = run(
        &storescu,
        &["-xy", "-aec", "TESTSCP", "127.0.0.1", &port, file],
    );
    assert!(
        store.status.success(),
        "storescu failed:\n{}\nstorescp:\n{}",
        text(&store),
        scp.logs()
    );
    let files = scp.wait_for_files(1, Duration::from_secs(10));
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert!(name.starts_with("SC.") && name.ends_with(".dcm"), "{name}");
}

#[test]
#[cfg_attr(
    any(missing_peer = "dcmtk", missing_peer = "openssl"),
    ignore = "needs dcmtk and openssl: dcmtk is not installed (apt-get install dcmtk); openssl is not installed (apt-get install openssl)"
)]
fn storescp_tls_trusts_only_its_ca() {
    let (Some(storescp), Some(echoscu), Some(openssl)) = (
        dcmtk_tool("storescp"),
        dcmtk_tool("echoscu"),
        program("openssl", "openssl"),
    ) else {
        return;
    };
    let tls = TlsMaterial::generate(&openssl);
    let scp = StoreScp::start(
        &storescp,
        StoreScpConfig::new("TLSSCP").tls(ScpTls::from_material(&tls)),
    );
    let port = scp.port().to_string();
    let p = |p: &Path| p.to_str().expect("UTF-8 temp path").to_string();
    let echo = |key: &Path, cert: &Path, ca: &Path| {
        let args = [
            "+tls",
            &p(key),
            &p(cert),
            "-pw",
            "+cf",
            &p(ca),
            "-aec",
            "TLSSCP",
            "127.0.0.1",
            &port,
        ];
        run(&echoscu, &args)
    };

    let ok = echo(&tls.client_key, &tls.client_cert, &tls.ca_cert);
    assert!(
        ok.status.success(),
        "echoscu over TLS failed:\n{}\nstorescp:\n{}",
        text(&ok),
        scp.logs()
    );

    // The client does not trust the server's CA.
    let wrong_ca = echo(&tls.client_key, &tls.client_cert, &tls.other_ca_cert);
    assert!(
        !wrong_ca.status.success(),
        "echoscu trusting another CA succeeded:\n{}",
        text(&wrong_ca)
    );

    // The server does not trust the client's CA.
    let wrong_client = echo(&tls.other_client_key, &tls.other_client_cert, &tls.ca_cert);
    assert!(
        !wrong_client.status.success(),
        "a client certificate from another CA was accepted:\n{}",
        text(&wrong_client)
    );

    // Plain DICOM against the TLS port fails.
    let plain = run(
        &echoscu,
        &["-to", "5", "-aec", "TLSSCP", "127.0.0.1", &port],
    );
    assert!(!plain.status.success(), "plain echo to a TLS port worked");
}

#[test]
#[cfg_attr(
    any(missing_peer = "dcmtk", missing_peer = "openssl"),
    ignore = "needs dcmtk and openssl: dcmtk is not installed (apt-get install dcmtk); openssl is not installed (apt-get install openssl)"
)]
fn storescp_tls_without_client_certificate() {
    let (Some(storescp), Some(echoscu), Some(openssl)) = (
        dcmtk_tool("storescp"),
        dcmtk_tool("echoscu"),
        program("openssl", "openssl"),
    ) else {
        return;
    };
    let tls = TlsMaterial::generate(&openssl);
    let scp = StoreScp::start(
        &storescp,
        StoreScpConfig::new("TLSSCP").tls(ScpTls::from_material(&tls).peer_cert(PeerCert::Ignore)),
    );
    let ca = tls.ca_cert.to_str().expect("UTF-8 temp path");
    // "+tla": TLS without a client certificate ("anonymous").
    let port = scp.port().to_string();
    let echo = run(
        &echoscu,
        &["+tla", "+cf", ca, "-aec", "TLSSCP", "127.0.0.1", &port],
    );
    assert!(
        echo.status.success(),
        "anonymous TLS echo failed:\n{}\nstorescp:\n{}",
        text(&echo),
        scp.logs()
    );
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn storescp_negative_behaviours() {
    let (Some(storescp), Some(echoscu), Some(storescu)) = (
        dcmtk_tool("storescp"),
        dcmtk_tool("echoscu"),
        dcmtk_tool("storescu"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let Some(file) = sample_dicom(tmp.path()) else {
        return;
    };
    let file = file.to_str().expect("UTF-8 temp path");

    let failing = StoreScp::start(
        &storescp,
        StoreScpConfig::new("FAILSCP").behaviour(Behaviour::FailEveryStore),
    );
    let port = failing.port().to_string();
    let store = run(
        &storescu,
        &["-v", "-xy", "-aec", "FAILSCP", "127.0.0.1", &port, file],
    );
    assert!(
        !store.status.success(),
        "store succeeded:\n{}",
        text(&store)
    );
    assert!(
        text(&store).contains("Refused: OutOfResources"),
        "{}\nstorescp:\n{}",
        text(&store),
        failing.logs()
    );
    assert!(failing.received_files().is_empty());
    // Echo still works.
    let echo = run(&echoscu, &["-aec", "FAILSCP", "127.0.0.1", &port]);
    assert!(echo.status.success(), "{}", text(&echo));

    let refusing = StoreScp::start(
        &storescp,
        StoreScpConfig::new("REFUSESCP").behaviour(Behaviour::RefuseAssociation),
    );
    let port = refusing.port().to_string();
    let echo = run(&echoscu, &["-v", "-aec", "REFUSESCP", "127.0.0.1", &port]);
    assert!(!echo.status.success(), "refused echo succeeded");
    assert!(
        text(&echo).contains("Association Rejected"),
        "{}",
        text(&echo)
    );

    let aborting = StoreScp::start(
        &storescp,
        StoreScpConfig::new("ABORTSCP").behaviour(Behaviour::AbortAfterStoreRq),
    );
    let port = aborting.port().to_string();
    let store = run(
        &storescu,
        &["-xy", "-aec", "ABORTSCP", "127.0.0.1", &port, file],
    );
    assert!(
        !store.status.success(),
        "store succeeded:\n{}",
        text(&store)
    );
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn silent_listener_accepts_and_never_answers() {
    let Some(echoscu) = dcmtk_tool("echoscu") else {
        return;
    };
    let (port, guard) = silent_listener();
    let started = Instant::now();
    // -ta 2: give up on the association after 2 s.
    let echo = run(&echoscu, &["-ta", "2", "127.0.0.1", &port.to_string()]);
    assert!(!echo.status.success(), "echo to a silent peer succeeded");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(guard.accepted(), 1);
}

fn orthanc_roundtrip(auth: Option<(&str, &str)>) {
    let (Some(binary), Some(echoscu), Some(storescu)) = (
        find_orthanc(),
        dcmtk_tool("echoscu"),
        dcmtk_tool("storescu"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let Some(file) = sample_dicom(tmp.path()) else {
        return;
    };
    let mut config = OrthancConfig::new("ORTHANCTEST").tcp_nodelay(true);
    if let Some((u, p)) = auth {
        config = config.basic_auth(u, p);
    }
    let started = Instant::now();
    let pacs = Orthanc::start(&binary, config);
    eprintln!("Orthanc up in {:?}", started.elapsed());

    let system = pacs.get_json("/system");
    assert_eq!(system["DicomAet"], "ORTHANCTEST", "{system}");
    assert_eq!(system["DicomPort"], pacs.dicom_port(), "{system}");

    let port = pacs.dicom_port().to_string();
    let echo = run(
        &echoscu,
        &["-aet", "ANYSCU", "-aec", "ORTHANCTEST", "127.0.0.1", &port],
    );
    assert!(
        echo.status.success(),
        "echoscu to Orthanc failed:\n{}\nOrthanc:\n{}",
        text(&echo),
        pacs.logs()
    );
    // DicomCheckCalledAet: a wrong called AE title is rejected.
    let wrong = run(&echoscu, &["-aec", "NOTORTHANC", "127.0.0.1", &port]);
    assert!(
        !wrong.status.success(),
        "echo to the wrong AE title succeeded"
    );

    let file = file.to_str().expect("UTF-8 temp path");
    let store = run(
        &storescu,
        &[
            "-xy",
            "-aet",
            "ANYSCU",
            "-aec",
            "ORTHANCTEST",
            "127.0.0.1",
            &port,
            file,
        ],
    );
    assert!(
        store.status.success(),
        "storescu to Orthanc failed:\n{}\nOrthanc:\n{}",
        text(&store),
        pacs.logs()
    );
    let studies = pacs.get_json("/studies?expand");
    let studies = studies.as_array().expect("/studies is an array");
    assert_eq!(studies.len(), 1, "{studies:?}");
    let patients = pacs.get_json("/patients");
    assert_eq!(patients.as_array().map(Vec::len), Some(1), "{patients}");

    // QIDO-RS through the DICOMweb plugin.
    let qido = pacs.get_json("/dicom-web/studies");
    assert_eq!(qido.as_array().map(Vec::len), Some(1), "{qido}");
    // The base URL the gateway's DICOMweb tests are given really serves QIDO-RS: asked
    // through another HTTP client, it lists the same study.
    let mut qido_by_base = common::client()
        .get(format!("{}/studies", pacs.dicomweb_base()))
        .header("Accept", "application/dicom+json");
    if let Some((user, password)) = auth {
        qido_by_base = qido_by_base.basic_auth(user, Some(password));
    }
    let qido_by_base = qido_by_base.send().expect("QIDO-RS at dicomweb_base()");
    assert_eq!(qido_by_base.status(), 200);
    let listed: serde_json::Value = qido_by_base.json().expect("QIDO-RS answer is JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    if auth.is_some() {
        for (who, credentials) in [("no", None), ("wrong", Some(("gateway", "wrong")))] {
            for path in ["/dicom-web/studies", "/system"] {
                let r = pacs
                    .request_as(credentials, "GET", path, &[], &[])
                    .unwrap_or_else(|e| panic!("GET {path}: {e}"));
                assert_eq!(r.status, 401, "GET {path} with {who} credentials");
            }
        }
    }
}

#[test]
#[cfg_attr(
    any(missing_peer = "orthanc", missing_peer = "dcmtk"),
    ignore = "needs orthanc and dcmtk: Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb); dcmtk is not installed (apt-get install dcmtk)"
)]
fn orthanc_open() {
    orthanc_roundtrip(None);
}

#[test]
#[cfg_attr(
    any(missing_peer = "orthanc", missing_peer = "dcmtk"),
    ignore = "needs orthanc and dcmtk: Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb); dcmtk is not installed (apt-get install dcmtk)"
)]
fn orthanc_with_basic_auth() {
    orthanc_roundtrip(Some(("gateway", "s3cret pass")));
}
