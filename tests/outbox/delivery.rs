//! Delivery by C-STORE through the outbox: an outage, a permanent refusal an admin fixes,
//! and the same submission sent twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;
use crate::common::storescp::{StoreScp, StoreScpConfig, dcmtk_tool, free_port};

const STUDIES: usize = 100;

/// The SOP Instance UID in a file name storescp logs (`.../SC.<uid>.dcm`).
fn uid_of_file(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = base.strip_suffix(".dcm").unwrap_or(base);
    base.split_once('.')
        .map_or(base, |(_, uid)| uid)
        .to_string()
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn a_pacs_outage_queues_every_study_and_the_backlog_drains_in_upload_order() {
    let Some(storescp) = dcmtk_tool("storescp") else {
        return;
    };
    let port = free_port();
    let received = tempfile::tempdir().unwrap();
    let retry_max = Duration::from_secs(5);
    let (_dir, gw) = gateway_env(&cstore_env(
        port,
        &[
            ("PHOTO_PACS_DELIVERY_WAIT_S", "3"),
            ("PHOTO_PACS_RETRY_MAX_S", "5"),
        ],
    ));

    // The PACS is down: every study is saved and answered 202 within the wait.
    let mut studies = Vec::new();
    let mut slowest = Duration::ZERO;
    for n in 0..STUDIES {
        let (status, doc, took) = send_study(&gw, n, None);
        assert_eq!(status, 202, "study {n}: {doc}");
        assert_eq!(doc["status"], "queued");
        // How long the answers take is bench/outbox.sh's to measure; printed here.
        slowest = slowest.max(took);
        studies.push(doc);
    }
    let outbox = gw.get_json("/api/outbox");
    assert_eq!(outbox["queued"], STUDIES, "{outbox}");
    println!("{STUDIES} studies answered 202 while the PACS was down, slowest {slowest:?}");

    // The PACS comes back where it was.
    let scp = storescp_at(&storescp, port, received.path());
    let back = Instant::now();
    let files = scp.wait_for_files(2 * STUDIES, retry_max + Duration::from_secs(120));
    let drained = back.elapsed();
    println!(
        "the PACS came back: {} objects delivered {drained:?} later (retry cap {retry_max:?})",
        files.len()
    );
    assert_eq!(files.len(), 2 * STUDIES, "nothing twice, nothing missing");

    // In upload order: the study of each arriving object never goes back.
    let study_of: HashMap<String, usize> = studies
        .iter()
        .enumerate()
        .flat_map(|(n, doc)| sop_uids(doc).into_iter().map(move |u| (u, n)))
        .collect();
    let arrived: Vec<usize> = scp
        .arrival_order()
        .iter()
        .map(|f| {
            let uid = uid_of_file(f);
            *study_of
                .get(&uid)
                .unwrap_or_else(|| panic!("{uid} was never answered to an upload"))
        })
        .collect();
    assert_eq!(
        arrived.len(),
        2 * STUDIES,
        "{}",
        scp.logs().lines().take(20).collect::<Vec<_>>().join("\n")
    );
    assert!(
        arrived.windows(2).all(|w| w[0] <= w[1]),
        "not in upload order: {arrived:?}"
    );
    for doc in &studies {
        let id = doc["id"].as_str().unwrap();
        wait_stored(&gw, id, Duration::from_secs(10));
    }
    assert!(
        gw.metrics().contains("photo_pacs_outbox_queued 0\n"),
        "{}",
        gw.metrics()
    );
}

#[test]
#[cfg_attr(
    missing_peer = "python",
    ignore = "pydicom, numpy, Pillow or pynetdicom is missing (pip install -r tests/peers/requirements.txt)"
)]
fn a_refused_study_waits_for_the_admin_who_retries_it_or_deletes_it() {
    let out = tempfile::tempdir().unwrap();
    // Every C-STORE refused with A900 (data set does not match the SOP class): for good.
    let Some(mut scp) = FailingScp::start("STORESCP", "all", "A900", out.path()) else {
        return;
    };
    let port = scp.port;
    let (dir, gw) = gateway_env(&cstore_env(port, &[("PHOTO_PACS_RETRY_MAX_S", "2")]));

    let (status, first, _) = send_study(&gw, 1, None);
    assert_eq!(status, 502, "{first}");
    assert_eq!(first["code"], "PACS_REJECTED");
    assert!(
        first["message"].as_str().unwrap().contains("A900"),
        "{first}"
    );
    let id = first["id"].as_str().unwrap().to_string();
    let (_, second, _) = send_study(&gw, 2, None);
    let doomed = second["id"].as_str().unwrap().to_string();

    // Both wait as failed for an admin, the Patient ID masked in the list, never retried.
    let list = gw.get_json("/api/outbox");
    assert_eq!(list["needsAdmin"], 2, "{list}");
    assert_eq!(list["total"], 2, "{list}");
    let entry = list["studies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["state"], "failed");
    assert_eq!(entry["patientId"], "OUT***", "{entry}");
    assert!(!list.to_string().contains(&patient(1)), "{list}");
    assert_eq!(entry["lastError"]["class"], "permanent");
    assert_eq!(entry["lastError"]["code"], "A900H");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        study_state(&gw, &id),
        "failed",
        "a refusal is not retried by itself"
    );
    assert_eq!(
        outbox_objects(dir.path()).len(),
        4,
        "refused objects are kept"
    );

    // The PACS is fixed; the admin retries one study: it is delivered under its own UIDs.
    scp.fix();
    let retried = client()
        .post(gw.url(&format!("/api/outbox/{id}/retry")))
        .send()
        .unwrap();
    assert_eq!(retried.status(), 200);
    wait_stored(&gw, &id, Duration::from_secs(15));
    let mut stored: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().replace(".dcm", ""))
        .collect();
    stored.sort();
    let mut expected = sop_uids(&first);
    expected.sort();
    assert_eq!(stored, expected, "the same SOP Instance UIDs, once each");

    // The other one is deleted: gone with its files, and said so in the log.
    let deleted = client()
        .delete(gw.url(&format!("/api/outbox/{doomed}")))
        .send()
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(
        client()
            .get(gw.url(&format!("/api/studies/{doomed}")))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert!(
        outbox_objects(dir.path())
            .iter()
            .all(|p| !p.to_string_lossy().contains(&doomed)),
        "its files are gone"
    );
    let logs = gw.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("deleted") && l.contains(&doomed)),
        "{logs}"
    );
    assert!(!logs.contains(&patient(2)), "patient data in the log");
}

#[test]
#[cfg_attr(
    missing_peer = "python",
    ignore = "pydicom, numpy, Pillow or pynetdicom is missing (pip install -r tests/peers/requirements.txt)"
)]
fn an_out_of_resources_refusal_is_sent_again_by_itself() {
    let out = tempfile::tempdir().unwrap();
    // The second C-STORE is refused with A700 (out of resources): it may pass later.
    let Some(scp) = FailingScp::start("STORESCP", "2", "A700", out.path()) else {
        return;
    };
    let port = scp.port;
    let (_dir, gw) = gateway_env(&cstore_env(port, &[("PHOTO_PACS_RETRY_MAX_S", "2")]));
    let (status, doc, _) = send_study(&gw, 1, None);
    assert_eq!(status, 202, "{doc}");
    let states: Vec<&str> = doc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["success", "queued"], "{doc}");
    let id = doc["id"].as_str().unwrap();
    wait_stored(&gw, id, Duration::from_secs(15));
    let files = std::fs::read_dir(out.path()).unwrap().count();
    assert_eq!(files, 2, "the stored one is not sent again");
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn the_same_submission_sent_twice_makes_one_study_and_one_answer() {
    let Some(storescp) = dcmtk_tool("storescp") else {
        return;
    };
    let scp = StoreScp::start(&storescp, StoreScpConfig::new("STORESCP").tcp_nodelay(true));
    let (_dir, gw) = gateway_env(&cstore_env(scp.port(), &[]));
    let key = "7d4f2c0e-6a51-4b8e-9f3a-2c1d0b9e8a77";
    let (s1, first, _) = send_study(&gw, 1, Some(key));
    let (s2, second, _) = send_study(&gw, 1, Some(key));
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(first, second, "the second answer is the first one's");
    // Two copies at once (a phone retrying while the first is still being converted).
    let other = "0f0e0d0c-0b0a-4908-8706-050403020100";
    let (a, b) = std::thread::scope(|s| {
        let one = s.spawn(|| send_study(&gw, 2, Some(other)));
        let two = s.spawn(|| send_study(&gw, 2, Some(other)));
        (one.join().unwrap(), two.join().unwrap())
    });
    assert_eq!(a.1["id"], b.1["id"], "{} / {}", a.1, b.1);
    // A different key is a different study.
    let (_, third, _) = send_study(&gw, 1, Some("11111111-2222-4333-8444-555555555555"));
    assert_ne!(third["id"], first["id"]);
    let files = scp.wait_for_files(6, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(scp.received_files().len(), 6, "{files:?}");
    let metrics = gw.metrics();
    assert!(
        metrics.contains(r#"photo_pacs_studies_total{result="accepted"} 3"#),
        "{metrics}"
    );
    // A malformed key is refused before anything is read.
    let bad = client()
        .post(gw.url("/api/studies"))
        .header("Idempotency-Key", "no spaces allowed")
        .multipart(form(&[("patientId", "X")], &[]))
        .send()
        .unwrap();
    expect_error(bad, 400, "VALIDATION_ERROR", "Idempotency-Key");
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn the_command_line_lists_the_outbox_and_changes_it_only_with_the_gateway_stopped() {
    let Some(storescp) = dcmtk_tool("storescp") else {
        return;
    };
    let port = free_port();
    let env = cstore_env(port, &[("PHOTO_PACS_DELIVERY_WAIT_S", "1")]);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let work = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start_in(work.path(), &pairs);
    let (_, kept, _) = send_study(&gw, 1, None);
    let (_, doomed, _) = send_study(&gw, 2, None);
    let (kept, doomed) = (kept["id"].as_str().unwrap(), doomed["id"].as_str().unwrap());
    let cli = |args: &[&str]| {
        let out = run(work.path(), args, &pairs);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };

    // While the gateway runs: the list, yes; changes, no.
    let (ok, list) = cli(&["outbox", "list"]);
    assert!(ok, "{list}");
    assert!(list.contains(kept) && list.contains(doomed), "{list}");
    assert!(list.contains("queued") && list.contains("OUT***"), "{list}");
    assert!(
        !list.contains(&patient(1)),
        "patient data on the screen: {list}"
    );
    let (ok, refused) = cli(&["outbox", "delete", doomed]);
    assert!(!ok && refused.contains("gateway running"), "{refused}");

    gw.stop();
    let (ok, text) = cli(&["outbox", "delete", doomed]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&["outbox", "retry", "--all"]);
    assert!(ok && text.contains(kept), "{text}");
    let (_, list) = cli(&["outbox", "list"]);
    assert!(list.contains(kept) && !list.contains(doomed), "{list}");

    // The PACS is up at the next start: the kept study is delivered, the deleted one not.
    let scp = StoreScp::start(
        &storescp,
        StoreScpConfig::new("STORESCP").port(port).tcp_nodelay(true),
    );
    let gw = Gateway::start_in(work.path(), &pairs);
    wait_stored(&gw, kept, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(scp.received_files().len(), 2);
}
