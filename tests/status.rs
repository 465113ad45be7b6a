//! The box explains itself: exam times from the phone when the box's clock is wrong, the
//! status document and `/readyz` under each condition an admin must hear about, and
//! `/healthz` answering throughout.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{FixedOffset, Utc};
use common::storescp::{StoreScp, StoreScpConfig, dcmtk_tool, free_port};
use common::*;
use dicom_dictionary_std::tags;
use serde_json::Value;

fn element(obj: &dicom_object::DefaultDicomObject, tag: dicom_object::Tag) -> String {
    obj.element(tag)
        .unwrap_or_else(|_| panic!("{tag} missing"))
        .to_str()
        .unwrap()
        .trim()
        .to_string()
}

/// Polls `GET path` until `done` holds for its JSON, or fails with the last answer.
fn wait_for(gw: &Gateway, path: &str, what: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = client().get(gw.url(path)).send().expect(path);
        let status = resp.status().as_u16();
        let doc: Value = resp.json().unwrap_or(Value::Null);
        if done(status, &doc) {
            return doc;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {path} still answers {status} {doc:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn reason_codes(doc: &Value) -> Vec<String> {
    doc["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["code"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn assert_alive(gw: &Gateway) {
    let resp = client().get(gw.url("/healthz")).send().expect("/healthz");
    assert_eq!(resp.status().as_u16(), 200, "/healthz must stay 200");
}

fn metric(gw: &Gateway, line_start: &str) -> String {
    let text = gw.metrics();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no metric {line_start} in:\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Acceptance 1: a box whose clock is three days behind (libfaketime) takes a study from a
/// phone in UTC+8; every date and time in the objects is the phone's, and the status page
/// warns about the box's clock.
#[test]
#[cfg_attr(
    missing_peer = "faketime",
    ignore = "needs libfaketime to set the box's clock back (apt-get install faketime)"
)]
fn exam_times_come_from_the_phone_when_the_box_clock_is_three_days_behind() {
    // libfaketime preloaded into the gateway itself (the faketime wrapper would fork and
    // leave the gateway running when the test stops it). Timers run on the real monotonic
    // clock; only the wall clock is three days off.
    let Some(mut env) = three_days_behind() else {
        return;
    };
    env.push(("TZ".into(), "UTC".into()));
    env.push(("PHOTO_PACS_KEEP_FILES_ON_SUCCESS".into(), "true".into()));
    let (dir, gw) = gateway_env(&env);
    let status = gw.get_json("/api/status");
    let box_now = chrono::DateTime::parse_from_rfc3339(status["clock"]["now"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    let behind = (Utc::now() - box_now).num_hours();
    assert!(
        (71..=73).contains(&behind),
        "the test's premise: the box's clock is 3 days behind, it is {behind} h"
    );
    assert!(status["clock"]["warning"].is_null(), "{status:#}");

    let taipei = FixedOffset::east_opt(8 * 3600).unwrap();
    let phone = Utc::now().with_timezone(&taipei);
    let sent = phone.to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let resp = upload(
        &gw,
        &[("patientId", "CLOCK-1"), ("clientTime", &sent)],
        &[
            ("a.jpg", "pillow_hopper.jpg"),
            ("b.jpg", "pillow_flower.jpg"),
        ],
    );
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap());

    let objects = outbox_objects(dir.path());
    assert_eq!(objects.len(), 2);
    let date = phone.format("%Y%m%d").to_string();
    let time = phone.format("%H%M%S").to_string();
    for path in &objects {
        let obj = dicom_object::open_file(path).unwrap();
        for (tag, want) in [
            (tags::STUDY_DATE, &date),
            (tags::STUDY_TIME, &time),
            (tags::CONTENT_DATE, &date),
            (tags::CONTENT_TIME, &time),
            (tags::ACQUISITION_DATE, &date),
            (tags::ACQUISITION_TIME, &time),
        ] {
            assert_eq!(&element(&obj, tag), want, "{tag} of {}", path.display());
        }
        assert_eq!(element(&obj, tags::TIMEZONE_OFFSET_FROM_UTC), "+0800");
        // The box's own time in the object (creation) is corrected onto the phone's clock.
        assert_eq!(element(&obj, tags::INSTANCE_CREATION_DATE), date);
        let created = element(&obj, tags::INSTANCE_CREATION_TIME);
        let secs = |t: &str| -> i64 {
            let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
            n(0..2) * 3600 + n(2..4) * 60 + n(4..6)
        };
        assert!(
            (secs(&created) - secs(&time)).abs() < 60,
            "created {created} vs exam {time}"
        );
    }

    let status = gw.get_json("/api/status");
    let skew = status["clock"]["phoneSkewSeconds"].as_i64().unwrap();
    assert!(
        (-(3 * 86_400 + 60)..=-(3 * 86_400 - 60)).contains(&skew),
        "{status:#}"
    );
    let warning = status["clock"]["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("3 days") && warning.contains("behind"),
        "{warning}"
    );
    let events = gw.get_json("/api/events");
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["code"] == "clock-skew"),
        "{events:#}"
    );
    assert!(metric(&gw, "photo_pacs_clock_phone_skew_seconds").starts_with('-'));
}

/// Acceptance 2, the PACS and the outbox: the PACS down (echo fails, a study waits, then
/// is stuck past the threshold: /readyz 503), then back (delivered, ready again).
#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "needs dcmtk's storescp (apt-get install dcmtk)"
)]
fn status_follows_the_pacs_down_a_backlog_and_recovery() {
    let Some(storescp) = dcmtk_tool("storescp") else {
        return;
    };
    let port = free_port();
    let env = cstore_env(
        port,
        "STORESCP",
        &[
            ("PHOTO_PACS_PACS_CHECK_S", "1"),
            ("PHOTO_PACS_OUTBOX_STUCK_S", "2"),
            ("PHOTO_PACS_RETRY_MAX_S", "1"),
            ("PHOTO_PACS_DELIVERY_WAIT_S", "1"),
            ("PHOTO_PACS_PACS_TIMEOUT_S", "2"),
        ],
    );
    let (_dir, gw) = gateway_env(&env);
    let status = wait_for(&gw, "/api/status", "PACS seen down", |_, d| {
        d["pacs"]["reachable"] == false
    });
    assert!(
        status["pacs"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(status["pacs"]["checkedAt"].is_string());
    assert_eq!(metric(&gw, "photo_pacs_pacs_reachable"), "0");

    let resp = upload(
        &gw,
        &[("patientId", "BACKLOG-1")],
        &[("a.jpg", "pillow_hopper.jpg")],
    );
    assert_eq!(resp.status().as_u16(), 202, "kept for later");
    let status = gw.get_json("/api/status");
    assert_eq!(status["outbox"]["depth"], 1, "{status:#}");
    assert!(status["outbox"]["oldest"].is_string());
    assert!(
        status["outbox"]["lastError"]["message"].is_string(),
        "{status:#}"
    );
    assert!(status["outbox"]["lastStored"].is_null());

    let ready = wait_for(&gw, "/readyz", "outbox stuck", |s, d| {
        s == 503 && reason_codes(d).contains(&"OUTBOX_STUCK".to_string())
    });
    assert_eq!(ready["status"], "not ready");
    assert_alive(&gw);
    assert_eq!(
        metric(&gw, "photo_pacs_not_ready{reason=\"OUTBOX_STUCK\"}"),
        "1"
    );
    assert_eq!(metric(&gw, "photo_pacs_ready"), "0");

    // The PACS comes back where it was.
    let _scp = StoreScp::start(&storescp, StoreScpConfig::new("STORESCP").port(port));
    wait_for(&gw, "/readyz", "ready again", |s, _| s == 200);
    let status = wait_for(&gw, "/api/status", "PACS answers", |_, d| {
        d["pacs"]["reachable"] == true
    });
    assert_eq!(status["outbox"]["depth"], 0, "{status:#}");
    assert!(status["outbox"]["lastStored"].is_string(), "{status:#}");
    assert_eq!(status["ready"]["ready"], true);
    let events = gw.get_json("/api/events");
    let codes: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["code"].as_str())
        .collect();
    for code in ["pacs-unreachable", "retrying", "stored", "pacs-reachable"] {
        assert!(codes.contains(&code), "{code} not in {codes:?}");
    }
    assert_alive(&gw);
}

/// Acceptance 2, the clock: timesyncd's flag missing (not synchronised) then present.
#[test]
fn status_says_when_the_clock_is_not_synchronised() {
    let sync = tempfile::tempdir().unwrap();
    let flag = sync.path().join("synchronized");
    let flag_s = flag.to_string_lossy().into_owned();
    let (_dir, gw) = gateway(&[("PHOTO_PACS_CLOCK_SYNC_FILE", &flag_s)]);
    let status = gw.get_json("/api/status");
    assert_eq!(status["clock"]["synchronized"], "no");
    assert!(
        status["clock"]["warning"]
            .as_str()
            .is_some_and(|w| w.contains("not synchronised")),
        "{status:#}"
    );
    assert_eq!(metric(&gw, "photo_pacs_clock_synchronized"), "0");
    // Not a reason to refuse photos: the phones give the exam time.
    assert_eq!(
        client().get(gw.url("/readyz")).send().unwrap().status(),
        200
    );
    std::fs::write(&flag, "").unwrap();
    let status = gw.get_json("/api/status");
    assert_eq!(status["clock"]["synchronized"], "yes");
    assert!(status["clock"]["warning"].is_null(), "{status:#}");
    assert_eq!(metric(&gw, "photo_pacs_clock_synchronized"), "1");
    assert_alive(&gw);
}

/// Acceptance 2, the settings locked: an admin password file that holds no hash.
#[test]
fn locked_settings_make_the_box_not_ready_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let hash_file = dir.path().join("data/admin-password.hash");
    std::fs::write(&hash_file, "not a hash\n").unwrap();
    let mut gw = Gateway::start_in(dir.path(), &[]);
    let ready = client().get(gw.url("/readyz")).send().unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let doc: Value = ready.json().unwrap();
    assert_eq!(reason_codes(&doc), ["SETTINGS_LOCKED"], "{doc:#}");
    assert_alive(&gw);
    // The status itself is an admin route, and a locked box has no admin: it says so.
    let resp = client().get(gw.url("/api/status")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        metric(&gw, "photo_pacs_not_ready{reason=\"SETTINGS_LOCKED\"}"),
        "1"
    );
    gw.stop();
    // Fixed as the message says: the file removed, the gateway started again.
    std::fs::remove_file(&hash_file).unwrap();
    let gw = Gateway::start_in(dir.path(), &[]);
    assert_eq!(
        client().get(gw.url("/readyz")).send().unwrap().status(),
        200
    );
    assert_eq!(gw.get_json("/api/status")["settingsLocked"], false);
}

/// A small tmpfs for the data partition, or `None` (printed) where mounting is not allowed
/// and we are not under CI.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                !storescp_under_ci(),
                "mounting a tmpfs failed under CI (the tests run as root there)"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs here (not root?); this test did not run");
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn remount(&self, opt: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {opt}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

fn storescp_under_ci() -> bool {
    common::storescp::under_ci()
}

/// Acceptance 2, the data partition: nearly full on a small tmpfs, then read-only; each
/// makes `/readyz` 503 with its reason and clears when the condition does.
#[test]
#[cfg_attr(
    missing_peer = "namespaces",
    ignore = "mounts a small tmpfs (needs root and util-linux)"
)]
fn a_nearly_full_or_read_only_data_partition_is_not_ready() {
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    let data = fs.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let d = |p: &str| data.join(p).to_string_lossy().into_owned();
    let (dicom, uploads, settings) = (d("dicom"), d("uploads"), d("settings.ini"));
    let work = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(
        work.path(),
        &[
            ("PHOTO_PACS_DICOM_DIR", &dicom),
            ("PHOTO_PACS_UPLOAD_DIR", &uploads),
            ("PHOTO_PACS_SETTINGS_PATH", &settings),
            ("PHOTO_PACS_MIN_FREE_MB", "4"),
        ],
    );
    assert_eq!(
        client().get(gw.url("/readyz")).send().unwrap().status(),
        200
    );
    let status = gw.get_json("/api/status");
    assert_eq!(status["data"]["totalBytes"], 16 * 1024 * 1024, "{status:#}");

    // Fill it to 2 MB free: below the 4 MB minimum.
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![0u8; 14 * 1024 * 1024]).unwrap();
    let ready = wait_for(&gw, "/readyz", "low space", |s, d| {
        s == 503 && reason_codes(d) == ["DATA_LOW_SPACE"]
    });
    assert!(
        ready["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("MB free")
    );
    let status = gw.get_json("/api/status");
    assert_eq!(status["data"]["lowSpace"], true);
    assert_eq!(status["ready"]["ready"], false);
    assert_alive(&gw);
    std::fs::remove_file(&filler).unwrap();
    wait_for(&gw, "/readyz", "space freed", |s, _| s == 200);

    fs.remount("ro");
    let ready = wait_for(&gw, "/readyz", "read-only", |s, d| {
        s == 503 && reason_codes(d).contains(&"DATA_READ_ONLY".to_string())
    });
    assert!(
        ready["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("read-only")
    );
    assert_eq!(gw.get_json("/api/status")["data"]["readOnly"], true);
    assert_eq!(metric(&gw, "photo_pacs_data_read_only"), "1");
    assert_alive(&gw);
    fs.remount("rw");
    wait_for(&gw, "/readyz", "writable again", |s, _| s == 200);
    assert_eq!(metric(&gw, "photo_pacs_data_read_only"), "0");
}

/// The status document's facts, and the diagnostics tarball holding no patient value and
/// no secret.
#[test]
fn status_and_diagnostics_tell_the_box_facts_without_patient_data_or_secrets() {
    let (dir, gw) = gateway(&[]);
    let resp = put_settings(
        &gw,
        &serde_json::json!({ "uploadPin": "SECRETPIN-77", "timeZone": "Asia/Taipei", "ntpServers": "ntp1.example.org, 10.1.2.3" }),
    );
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap());
    let resp = client()
        .post(gw.url("/api/studies"))
        .header("x-upload-pin", "SECRETPIN-77")
        .multipart(form(
            &[
                ("patientId", "PATIENT-XYZZY-42"),
                ("patientName", "Plugh^Zork"),
                ("examDescription", "WOUND-FROBOZZ"),
            ],
            &[("a.jpg", read_data("pillow_hopper.jpg"))],
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap());

    let status = gw.get_json("/api/status");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["uptimeSeconds"].is_u64());
    assert!(!status["hostname"].as_str().unwrap().is_empty());
    assert!(status["data"]["freeBytes"].as_u64().unwrap() > 0);
    assert_eq!(status["backend"], "mock");
    assert_eq!(status["outbox"]["depth"], 0);
    assert!(status["outbox"]["lastStored"].is_string(), "{status:#}");
    assert_eq!(
        status["clock"]["ntpServers"],
        serde_json::json!(["ntp1.example.org", "10.1.2.3"])
    );
    // The time helper's request follows the settings.
    let request = std::fs::read_to_string(dir.path().join("data/time-request.env")).unwrap();
    assert!(request.contains("\nTIME_ZONE=Asia/Taipei\n"), "{request}");
    assert!(
        request.contains("\nNTP_SERVERS=ntp1.example.org 10.1.2.3\n"),
        "{request}"
    );

    let events = gw.get_json("/api/events");
    let settings_event = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["code"] == "settings-changed")
        .expect("a settings event");
    assert_eq!(
        settings_event["fields"],
        serde_json::json!(["uploadPin", "timeZone", "ntpServers"])
    );

    let resp = client().get(gw.url("/api/diagnostics")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/gzip");
    let gz = resp.bytes().unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
    let mut names = Vec::new();
    let mut all = String::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        names.push(
            entry
                .path()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        );
        std::io::Read::read_to_string(&mut entry, &mut all).unwrap();
    }
    names.sort();
    assert_eq!(
        names,
        [
            "events.json",
            "settings.json",
            "status.json",
            "units.txt",
            "version.txt"
        ]
    );
    for needle in [
        "PATIENT-XYZZY-42",
        "XYZZY",
        "Plugh",
        "Zork",
        "FROBOZZ",
        "SECRETPIN-77",
    ] {
        assert!(!all.contains(needle), "{needle} is in the diagnostics");
        assert!(
            !events.to_string().contains(needle),
            "{needle} is in the events"
        );
    }
    assert!(
        all.contains("\"uploadPinSet\": true"),
        "settings say the PIN is set"
    );
    assert!(
        all.contains("\"code\": \"stored\""),
        "the delivery is in the events"
    );
}
