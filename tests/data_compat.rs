//! Data compatibility across a rollback (issue 18): what a newer version leaves in the data
//! directory (settings.ini, restored.env, time-request.env, outbox records and states, files
//! it adds) is read by this one, which loses none of it: the queued studies are delivered
//! each exactly once, the settings kept, the newer version's additions still there after
//! this version rewrites its files. And today's format, as this binary writes it, reads
//! back. The rule these prove is in README.md ("Data on /data across updates and
//! rollbacks").

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::storescp::{StoreScp, StoreScpConfig, dcmtk_tool, free_port};
use common::*;
use serde_json::{Value, json};

/// The fixtures "a newer version" wrote: tests/data/compat/newer/.
fn newer(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/compat/newer")
        .join(name)
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// Adds `fields`' members to the object `target`.
fn merge(target: &mut Value, fields: &Value) {
    let (Some(t), Some(f)) = (target.as_object_mut(), fields.as_object()) else {
        panic!("merge: {target} and {fields} must be objects");
    };
    for (k, v) in f {
        t.insert(k.clone(), v.clone());
    }
}

/// Copies the tree `from` into `to` (which may exist).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `dir`, relative, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry.path().strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    out
}

/// Environment for a gateway sending by C-STORE to storescp on `port`; quick retries.
fn env_for(port: u16) -> Vec<(String, String)> {
    cstore_env(
        port,
        "STORESCP",
        &[
            ("PHOTO_PACS_DELIVERY_WAIT_S", "1"),
            ("PHOTO_PACS_RETRY_MAX_S", "2"),
        ],
    )
}

fn start(dir: &Path, env: &[(String, String)]) -> Gateway {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Gateway::start_in(dir, &pairs)
}

/// Uploads one study of `photos` test photos while the PACS is down: answered 202. Returns
/// its ID and its SOP Instance UIDs.
fn queue_study(gw: &Gateway, patient: &str, photos: usize) -> (String, Vec<String>) {
    let all = ["pillow_hopper.jpg", "pillow_flower.jpg"];
    let images: Vec<(&str, Vec<u8>)> = (0..photos)
        .map(|i| ("p.jpg", read_data(all[i % all.len()])))
        .collect();
    let resp = client()
        .post(gw.url("/api/studies"))
        .multipart(form(&[("patientId", patient)], &images))
        .send()
        .expect("upload request");
    let status = resp.status().as_u16();
    let doc: Value = resp.json().unwrap_or(Value::Null);
    assert_eq!(status, 202, "the PACS is down, the study waits: {doc}");
    let uids = doc["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["sopInstanceUID"].as_str().unwrap().to_string())
        .collect();
    (doc["id"].as_str().unwrap().to_string(), uids)
}

fn study_state(gw: &Gateway, id: &str) -> String {
    gw.get_json(&format!("/api/studies/{id}"))["state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

fn wait_all_stored(gw: &Gateway, ids: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    for id in ids {
        while study_state(gw, id) != "stored" {
            assert!(
                Instant::now() < deadline,
                "study {id} is {} after {limit:?}:\n{}",
                study_state(gw, id),
                gw.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The SOP Instance UID in a file name storescp logs (`.../SC.<uid>.dcm`).
fn uid_of_file(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = base.strip_suffix(".dcm").unwrap_or(base);
    base.split_once('.')
        .map_or(base, |(_, uid)| uid)
        .to_string()
}

/// What storescp received, by SOP Instance UID, in arrival order (a second copy of an
/// object is a second entry, though it overwrites the first file).
fn arrivals(scp: &StoreScp) -> Vec<String> {
    scp.arrival_order().iter().map(|f| uid_of_file(f)).collect()
}

fn settings_of(gw: &Gateway) -> Value {
    let doc = gw.get_json("/api/settings");
    doc["settings"].clone()
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn a_newer_versions_data_dir_is_read_its_studies_delivered_once_and_its_additions_kept() {
    let Some(storescp) = dcmtk_tool("storescp") else {
        return;
    };
    let port = free_port();
    let env = env_for(port);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let outbox = data.join("dicom");

    // Studies queued while the PACS is down, as any version would have them.
    let mut gw = start(dir.path(), &env);
    let (first, first_uids) = queue_study(&gw, "COMPAT-0001", 2);
    let (second, second_uids) = queue_study(&gw, "COMPAT-0002", 1);
    let (third, third_uids) = queue_study(&gw, "COMPAT-0003", 1);
    assert!(gw.stop().success());
    let ids = [first.clone(), second.clone(), third.clone()];

    // A newer version ran on this data, then the box rolled back: its settings, environment
    // and time request files; more fields in every record and state, and in the first
    // study, a delivery this version never made (its first image is in the PACS already);
    // files of its own in the outbox and in each study.
    std::fs::copy(newer("settings.ini"), data.join("settings.ini")).unwrap();
    std::fs::copy(newer("restored.env"), data.join("restored.env")).unwrap();
    std::fs::copy(newer("time-request.env"), data.join("time-request.env")).unwrap();
    let record_fields = read_json(&newer("record-fields.json"));
    let state_fields = read_json(&newer("state-fields.json"));
    for id in &ids {
        let study = outbox.join(id);
        let mut record = read_json(&study.join("record.json"));
        merge(&mut record, &record_fields["record"]);
        merge(&mut record["destination"], &record_fields["destination"]);
        for i in record["instances"].as_array_mut().unwrap() {
            merge(i, &record_fields["instance"]);
        }
        write_json(&study.join("record.json"), &record);

        let mut state = read_json(&study.join("state.json"));
        merge(&mut state, &state_fields["state"]);
        merge(&mut state["destination"], &record_fields["destination"]);
        for i in state["instances"].as_array_mut().unwrap() {
            merge(i, &state_fields["instance"]);
        }
        if id == &first {
            state["instances"][0]["delivery"] = json!("stored");
        }
        write_json(&study.join("state.json"), &state);
        copy_tree(&newer("study"), &study);
    }
    copy_tree(&newer("outbox"), &outbox);
    let records_before: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| std::fs::read(outbox.join(id).join("record.json")).unwrap())
        .collect();

    // This version starts on it, and the PACS is back.
    let received = tempfile::tempdir().unwrap();
    let scp = StoreScp::start(
        &storescp,
        StoreScpConfig::new("STORESCP")
            .port(port)
            .output_dir(received.path())
            .tcp_nodelay(true),
    );
    let mut gw = start(dir.path(), &env);
    let logs = gw.logs();
    assert!(!logs.contains("unreadable"), "{logs}");
    let expected: BTreeSet<String> = first_uids[1..]
        .iter()
        .chain(&second_uids)
        .chain(&third_uids)
        .cloned()
        .collect();
    scp.wait_for_files(expected.len(), Duration::from_secs(60));
    wait_all_stored(&gw, &ids, Duration::from_secs(30));
    // Time for a second copy of anything to arrive, were one sent.
    std::thread::sleep(Duration::from_secs(2));
    let arrived = arrivals(&scp);
    assert_eq!(
        arrived.len(),
        expected.len(),
        "each object once, and not the one the newer version delivered: {arrived:?}"
    );
    assert_eq!(arrived.iter().cloned().collect::<BTreeSet<_>>(), expected);

    // Its settings hold, from settings.ini and from restored.env; the unknown ones are
    // named in the log, not their values.
    let s = settings_of(&gw);
    assert_eq!(s["pacsTimeoutS"], 17, "{s}");
    assert_eq!(s["localCallingAET"], "COMPATGW", "{s}");
    assert_eq!(s["flagThemeDark"], false, "{s}");
    assert_eq!(s["localResizeMax"], 2048, "restored.env: {s}");
    let logs = gw.logs();
    for named in [
        "[update] channel",
        "[pacs] retry_jitter_percent",
        "PHOTO_PACS_UPDATE_CHANNEL",
    ] {
        assert!(logs.contains(named), "{named}: {logs}");
    }
    assert!(
        !logs.contains("renamed to"),
        "settings.ini was not set aside: {logs}"
    );

    // The self-check the slot-marking unit runs passes on it.
    let listen = gw.base.trim_start_matches("http://").to_string();
    let check = run(
        dir.path(),
        &["self-check", "--timeout", "10"],
        &[("PHOTO_PACS_LISTEN", &listen)],
    );
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{stdout}");

    // A settings change rewrites settings.ini: the newer version's keys stay in it.
    let resp = put_settings(&gw, &json!({"flagThemeDark": true}));
    assert_eq!(resp.status(), 200);
    assert!(gw.stop().success());
    let ini = std::fs::read_to_string(data.join("settings.ini")).unwrap();
    for line in [
        "retry_jitter_percent=20",
        "thumbnail_size=256",
        "show_update_card=true",
        "[update]",
        "channel=stable",
        "check_every_h=24",
        "calling_aet=COMPATGW",
        "timeout_s=17",
    ] {
        assert!(ini.lines().any(|l| l == line), "{line} lost:\n{ini}");
    }

    // The records are never rewritten; the states were, after each delivery, and kept
    // the newer fields.
    for (id, before) in ids.iter().zip(&records_before) {
        let study = outbox.join(id);
        assert_eq!(
            &std::fs::read(study.join("record.json")).unwrap(),
            before,
            "{id}"
        );
        let state = read_json(&study.join("state.json"));
        assert_eq!(state["deliveredVia"]["node"], "slot-b", "{id}: {state}");
        assert_eq!(state["history"][0]["event"], "queued", "{id}: {state}");
        for i in state["instances"].as_array().unwrap() {
            assert_eq!(i["attemptsHere"], 1, "{id}: {state}");
            assert_eq!(i["delivery"], "stored", "{id}: {state}");
        }
        // Its own files stay; only the delivered objects may go.
        for (rel, bytes) in tree(&newer("study")) {
            assert_eq!(
                std::fs::read(study.join(&rel)).unwrap(),
                bytes,
                "{id}: {rel:?}"
            );
        }
    }
    for (rel, bytes) in tree(&newer("outbox")) {
        assert_eq!(std::fs::read(outbox.join(&rel)).unwrap(), bytes, "{rel:?}");
    }
    assert_eq!(
        std::fs::read(data.join("restored.env")).unwrap(),
        std::fs::read(newer("restored.env")).unwrap()
    );

    // The time request: the helper that reads it applies what it knows and names the rest.
    let text = std::fs::read_to_string(newer("time-request.env")).unwrap();
    let (request, problems) =
        photo_pacs::provision::time::parse_request(&text, Path::new("/usr/share/zoneinfo"));
    assert!(request.ntp_ok);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems.iter().all(|p| p.contains("is not a time setting")),
        "{problems:?}"
    );
    drop(scp);
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn todays_format_as_this_binary_writes_it_reads_back() {
    let Some(storescp) = dcmtk_tool("storescp") else {
        return;
    };
    let port = free_port();
    let env = env_for(port);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Written by this binary: settings through the page, studies queued while the PACS
    // is down.
    let mut gw = start(dir.path(), &env);
    let resp = put_settings(
        &gw,
        &json!({
            "pacsTimeoutS": 12,
            "localCallingAET": "TODAYGW",
            "localResizeMax": 1024,
            "dicomwebPassword": "today-CANARY-pw",
            "flagThemeDark": false,
        }),
    );
    assert_eq!(resp.status(), 200);
    let (first, first_uids) = queue_study(&gw, "TODAY-0001", 2);
    let (second, second_uids) = queue_study(&gw, "TODAY-0002", 1);
    let settings_before = settings_of(&gw);
    let outbox_before = gw.get_json("/api/outbox");
    assert!(gw.stop().success());
    let written = tree(&data);
    for name in ["settings.ini", "time-request.env"] {
        assert!(written.contains_key(Path::new(name)), "{name}: {written:?}");
    }

    // Read back by the same binary: the same settings, the same studies, each delivered once.
    let received = tempfile::tempdir().unwrap();
    let scp = StoreScp::start(
        &storescp,
        StoreScpConfig::new("STORESCP")
            .port(port)
            .output_dir(received.path())
            .tcp_nodelay(true),
    );
    let gw = start(dir.path(), &env);
    assert_eq!(settings_of(&gw), settings_before);
    let listed = gw.get_json("/api/outbox");
    let ids_of = |doc: &Value| -> BTreeSet<String> {
        doc["studies"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(ids_of(&listed), ids_of(&outbox_before), "{listed}");
    assert_eq!(
        ids_of(&listed),
        BTreeSet::from([first.clone(), second.clone()])
    );
    let expected: BTreeSet<String> = first_uids.iter().chain(&second_uids).cloned().collect();
    scp.wait_for_files(expected.len(), Duration::from_secs(60));
    wait_all_stored(&gw, &[first, second], Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let arrived = arrivals(&scp);
    assert_eq!(arrived.len(), expected.len(), "{arrived:?}");
    assert_eq!(arrived.into_iter().collect::<BTreeSet<_>>(), expected);
    let logs = gw.logs();
    assert!(
        !logs.contains("not a setting of this version"),
        "today's file has nothing unknown: {logs}"
    );
}
