//! kill -9 at random moments: the real binary sends by C-STORE to dcmtk's storescp while a
//! client uploads two-photo studies in a loop (resending with the same Idempotency-Key
//! when it gets no answer, as the app does); the gateway is killed and restarted, storescp
//! stopped and started. In the end every study that was answered 200 or 202 is in the
//! PACS, no photo arrives under two SOP Instance UIDs, every file is whole, and no
//! half-built folder is left.
//!
//! CI runs a short form; `bench/crash.sh` (OUTBOX_CRASH_KILLS=60) the long one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::common::storescp::{dcmtk_tool, free_port};

/// A small deterministic random source (xorshift), seeded per run and printed, so a
/// failing run can be repeated with OUTBOX_CRASH_SEED.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the client was told about one study.
struct Told {
    status: u16,
    answer: Value,
}

/// Uploads studies in a loop until `stop`; each one is sent again with its key until an
/// answer comes back (the gateway may be dead for a while).
fn uploader(
    base: String,
    stop: Arc<AtomicBool>,
    told: Arc<Mutex<BTreeMap<usize, Told>>>,
    seed: u64,
    first: usize,
) {
    let photos = vec![
        // A photo the debug build takes a moment to convert, so kills land in conversion
        // as well as in the upload and the sending.
        ("a.jpg", patterned_jpeg(800, 600)),
        ("b.jpg", read_data("pillow_flower.jpg")),
    ];
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .unwrap();
    let mut n = first;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let key = format!("crash-{seed:016x}-{n:06}");
        let id = format!("CRASH-{n:05}");
        loop {
            let sent = http
                .post(format!("{base}/api/studies"))
                .header("Idempotency-Key", &key)
                .multipart(form(&[("patientId", &id)], &photos))
                .send();
            match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.json::<Value>() {
                        Ok(answer) => {
                            told.lock().unwrap().insert(n, Told { status, answer });
                            break;
                        }
                        // The answer was cut off by a kill: ask again.
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn kill_9_at_random_moments_loses_nothing_and_sends_nothing_twice() {
    let (Some(storescp), Some(dcmdump)) = (dcmtk_tool("storescp"), dcmtk_tool("dcmdump")) else {
        return;
    };
    let kills: usize = std::env::var("OUTBOX_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("OUTBOX_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let mut rng = Rng(seed);
    println!("kills {kills}, seed {seed} (OUTBOX_CRASH_SEED={seed} repeats this run)");

    let pacs_port = free_port();
    let received = tempfile::tempdir().unwrap();
    let pacs_up = || storescp_at(&storescp, pacs_port, received.path());
    let mut scp = Some(pacs_up());
    let work = tempfile::tempdir().unwrap();
    let gw_port = free_port();
    let mut env = cstore_env(
        pacs_port,
        &[
            ("PHOTO_PACS_RETRY_MAX_S", "2"),
            ("PHOTO_PACS_DELIVERY_WAIT_S", "2"),
        ],
    );
    env.push(("PHOTO_PACS_LISTEN".into(), format!("127.0.0.1:{gw_port}")));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let start_gateway = || Gateway::start_in(work.path(), &pairs);
    let mut gw = start_gateway();

    let stop = Arc::new(AtomicBool::new(false));
    let told = Arc::new(Mutex::new(BTreeMap::new()));
    // Two phones at once.
    let clients: Vec<_> = [0, 100_000]
        .into_iter()
        .map(|first| {
            let (base, stop, told) = (gw.base.clone(), stop.clone(), told.clone());
            std::thread::spawn(move || uploader(base, stop, told, seed, first))
        })
        .collect();

    let mut pacs_restarts = 0;
    // Objects storescp stored, counted over all its runs.
    let mut stored_before = 0;
    let mut logs = Vec::new();
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(100 + rng.below(1900)));
        logs.push(gw.kill9());
        if rng.below(3) == 0 {
            // The PACS goes down too, for a while, at its own moment.
            if let Some(s) = scp.take() {
                stored_before += s.arrival_order().len();
                s.kill();
            }
            pacs_restarts += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        gw = start_gateway();
        if scp.is_none() && rng.below(2) == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(800)));
            scp = Some(pacs_up());
        }
    }
    stop.store(true, Ordering::SeqCst);
    if scp.is_none() {
        scp = Some(pacs_up());
    }
    for c in clients {
        c.join().unwrap();
    }

    // Everything accepted is delivered once the PACS stays up.
    let told = std::mem::take(&mut *told.lock().unwrap());
    let accepted: Vec<(usize, &Told)> = told
        .iter()
        .filter(|(_, t)| matches!(t.status, 200 | 202))
        .map(|(n, t)| (*n, t))
        .collect();
    let other: Vec<String> = told
        .iter()
        .filter(|(_, t)| !matches!(t.status, 200 | 202))
        .map(|(n, t)| format!("study {n}: {} {}", t.status, t.answer))
        .collect();
    assert!(other.is_empty(), "answers other than 200/202: {other:?}");
    wait_until(
        Duration::from_secs(60),
        || gw.get_json("/api/outbox")["queued"].to_string(),
        || gw.get_json("/api/outbox")["queued"] == 0,
    );
    std::thread::sleep(Duration::from_millis(500));

    // What the PACS holds: every file whole, grouped by photo.
    let files: Vec<_> = std::fs::read_dir(received.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    let mut uids_of_photo: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
    let mut study_of_uid: HashMap<String, String> = HashMap::new();
    for f in &files {
        let (patient, number, sop, study) = dump_ids(&dcmdump, f);
        uids_of_photo
            .entry((patient, number))
            .or_default()
            .insert(sop.clone());
        study_of_uid.insert(sop, study);
    }
    let duplicated: Vec<_> = uids_of_photo
        .iter()
        .filter(|(_, uids)| uids.len() > 1)
        .collect();
    let mut lost = Vec::new();
    for (n, t) in &accepted {
        let study = t.answer["studyInstanceUID"].as_str().unwrap_or("");
        for uid in sop_uids(&t.answer) {
            if study_of_uid.get(&uid).map(String::as_str) != Some(study) {
                lost.push(format!("study {n}: {uid}"));
            }
        }
    }
    let orphans = orphan_folders(work.path());
    let stored_total = stored_before + scp.as_ref().map_or(0, |s| s.arrival_order().len());
    let resent = stored_total.saturating_sub(files.len());
    println!(
        "kills: {kills}; PACS restarts: {pacs_restarts}; studies answered: {} ({} accepted: {} with 200, {} with 202); objects in the PACS: {}; lost: {}; duplicated: {}; objects stored again under the same UID (a kill between the PACS's answer and its record): {resent}",
        told.len(),
        accepted.len(),
        accepted.iter().filter(|(_, t)| t.status == 200).count(),
        accepted.iter().filter(|(_, t)| t.status == 202).count(),
        files.len(),
        lost.len(),
        duplicated.len(),
    );
    assert!(lost.is_empty(), "accepted but not in the PACS: {lost:?}");
    assert!(
        duplicated.is_empty(),
        "photos under two SOP Instance UIDs: {duplicated:?}"
    );
    assert!(orphans.is_empty(), "left behind: {orphans:?}");
    assert!(accepted.len() >= kills / 2, "too few studies to judge");
    assert!(
        logs.iter().all(|l| !l.contains("panicked")),
        "a gateway panicked"
    );
}
