//! The outbox against real peers: a PACS that goes away and comes back (dcmtk storescp,
//! Orthanc over STOW-RS), one that refuses for good (pynetdicom), the same submission sent
//! twice, a data partition that fills up, and kill -9 at random moments.

#[path = "../common/mod.rs"]
mod common;

mod crash;
mod delivery;
mod disk;
mod stow;

use std::time::{Duration, Instant};

use common::storescp;
use common::*;
use serde_json::Value;

/// Environment for a gateway sending by C-STORE to storescp (AE title STORESCP) on `port`.
pub fn cstore_env(port: u16, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    common::cstore_env(port, "STORESCP", extra)
}

/// dcmtk's storescp on `port`, writing into `dir`: a PACS that is (back) where the gateway
/// sends to, keeping what it received before.
pub fn storescp_at(
    storescp: &std::path::Path,
    port: u16,
    dir: &std::path::Path,
) -> storescp::StoreScp {
    storescp::StoreScp::start(
        storescp,
        storescp::StoreScpConfig::new("STORESCP")
            .port(port)
            .output_dir(dir)
            .tcp_nodelay(true),
    )
}

/// The patient ID of test study `n`: how received objects are matched to their upload.
pub fn patient(n: usize) -> String {
    format!("OUTBOX-{n:04}")
}

/// Uploads study `n` (two photos), with an `Idempotency-Key` when given. Returns the HTTP
/// status, the answer and how long it took.
pub fn send_study(gw: &Gateway, n: usize, key: Option<&str>) -> (u16, Value, Duration) {
    let id = patient(n);
    let images = vec![
        ("a.jpg", read_data("pillow_hopper.jpg")),
        ("b.jpg", read_data("pillow_flower.jpg")),
    ];
    let mut req = client()
        .post(gw.url("/api/studies"))
        .multipart(form(&[("patientId", &id)], &images));
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let started = Instant::now();
    let resp = req.send().expect("upload request");
    let status = resp.status().as_u16();
    let doc: Value = resp.json().unwrap_or(Value::Null);
    (status, doc, started.elapsed())
}

/// The SOP Instance UIDs an upload answer names, in image order.
pub fn sop_uids(answer: &Value) -> Vec<String> {
    answer["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["sopInstanceUID"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /api/studies/{id}`'s state.
pub fn study_state(gw: &Gateway, id: &str) -> String {
    gw.get_json(&format!("/api/studies/{id}"))["state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

/// Waits until study `id` is stored, up to `limit`.
pub fn wait_stored(gw: &Gateway, id: &str, limit: Duration) {
    wait_until(
        limit,
        || study_state(gw, id),
        || study_state(gw, id) == "stored",
    );
}

/// Waits until `f` holds, up to `limit`; the last value of `what()` goes into the panic.
pub fn wait_until(limit: Duration, what: impl Fn() -> String, f: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "not within {limit:?}: {}",
            what()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads (Patient ID, Instance Number, SOP Instance UID, Study Instance UID) from a DICOM
/// file with dcmdump, which also proves the file is whole.
pub fn dump_ids(
    dcmdump: &std::path::Path,
    file: &std::path::Path,
) -> (String, String, String, String) {
    let out = std::process::Command::new(dcmdump)
        .args([
            "+P",
            "0010,0020",
            "+P",
            "0020,0013",
            "+P",
            "0008,0018",
            "+P",
            "0020,000d",
        ])
        .arg(file)
        .output()
        .expect("run dcmdump");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dcmdump cannot read {}: {}{}",
        file.display(),
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let value = |tag: &str| {
        text.lines()
            .find(|l| l.starts_with(tag))
            .and_then(|l| {
                let start = l.find('[')? + 1;
                let end = l[start..].find(']')? + start;
                Some(l[start..end].to_string())
            })
            .unwrap_or_default()
    };
    (
        value("(0010,0020)"),
        value("(0020,0013)"),
        value("(0008,0018)"),
        value("(0020,000d)"),
    )
}
