//! Backup and restore (issue 17, acceptance 3) with the real binary: a backup taken on one
//! gateway restored on a fresh one in another folder, with and without secrets; refused
//! files change nothing; a restore leaves the outbox alone; the CLI pair.

mod common;

use std::path::Path;

use common::*;
use reqwest::blocking::multipart::{Form, Part};
use serde_json::{Value, json};

const ADMIN_A: &str = "admin-a-password";
const ADMIN_B: &str = "admin-b-password";
const PIN: &str = "739154";
const PASSPHRASE: &str = "long enough passphrase";

/// Every setting away from its default; the secrets carry canaries no answer may show.
fn every_setting() -> Value {
    json!({
        "pacsHost": "pacs.clinic.example",
        "pacsPort": 11112,
        "pacsCalledAET": "ORTHANC",
        "localCallingAET": "WARD3CAM",
        "pacsTimeoutS": 45,
        "pacsTlsCaFile": "/etc/ssl/clinic-ca.pem",
        "dicomwebBaseUrl": "https://pacs.clinic.example/dicom-web",
        "dicomwebVerifyTls": false,
        "dicomwebTimeoutS": 60,
        "dicomwebAuthMethod": "basic",
        "dicomwebUsername": "gateway",
        "dicomwebPassword": "pw-CANARY-1",
        "dicomwebToken": "tok-CANARY-2",
        "localModality": "XC",
        "localResizeMax": 2048,
        "localTransferSyntax": "1.2.840.10008.1.2.4.50",
        "localCharset": "ISO_IR 100",
        "localIod": "vl-photo",
        "localBodySiteCoding": "skin",
        "flagIncludePatientInfoExceptId": false,
        "flagIncludeExamDescription": false,
        "flagThemeDark": false,
        "uploadPin": PIN,
        "worklistEnabled": true,
        "worklistCalledAET": "WLM",
        "worklistHost": "wlm.clinic.example",
        "worklistPort": 4242,
        "worklistStationAET": "CAM1",
        "worklistModality": "OT",
        "worklistPastDays": 1,
        "worklistFutureDays": 2,
        "patientLookupEnabled": false,
        "patientIdPattern": "PID:(\\w+)",
        "timeZone": "Asia/Taipei",
        "ntpServers": "ntp1.example ntp2.example"
    })
}

/// Requests as an admin: HTTP Basic with `password`, or none for an open gateway.
struct Admin<'a> {
    gw: &'a Gateway,
    password: Option<&'a str>,
}

impl Admin<'_> {
    fn auth(&self, req: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match self.password {
            Some(p) => req.basic_auth("admin", Some(p)),
            None => req,
        }
    }

    fn settings(&self) -> Value {
        let resp = self
            .auth(client().get(self.gw.url("/api/settings")))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().unwrap()["settings"].clone()
    }

    fn put(&self, body: &Value) {
        let resp = self
            .auth(client().put(self.gw.url("/api/settings")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        let status = resp.status();
        assert_eq!(status, 200, "{}", resp.text().unwrap_or_default());
    }

    /// `POST /api/backup`: the status, the file name it offers, the bytes.
    fn backup(&self, body: &Value) -> (u16, String, Vec<u8>) {
        let resp = self
            .auth(client().post(self.gw.url("/api/backup")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let name = resp
            .headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (status, name, resp.bytes().unwrap().to_vec())
    }

    fn restore(&self, file: &[u8], passphrase: Option<&str>, apply: bool) -> (u16, Value) {
        let mut form = Form::new().part("file", Part::bytes(file.to_vec()).file_name("box.backup"));
        if let Some(p) = passphrase {
            form = form.text("passphrase", p.to_string());
        }
        if apply {
            form = form.text("apply", "true");
        }
        let resp = self
            .auth(client().post(self.gw.url("/api/restore")))
            .multipart(form)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }
}

fn settings_ini(gw: &Gateway) -> Vec<u8> {
    std::fs::read(gw.dir.join("data/settings.ini")).unwrap_or_default()
}

fn restored_env(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("data/restored.env")).ok()
}

/// The settings without the secrets' set / not set flags.
fn without_secret_flags(settings: &Value) -> Value {
    let mut s = settings.clone();
    for flag in ["dicomwebPasswordSet", "dicomwebTokenSet", "uploadPinSet"] {
        s.as_object_mut().unwrap().remove(flag);
    }
    s
}

fn assert_no_canary(what: &str, text: &str) {
    for canary in ["CANARY", PIN] {
        assert!(!text.contains(canary), "{what} shows a secret: {text}");
    }
}

#[test]
fn a_backup_restored_on_a_fresh_gateway_gives_every_setting_and_no_secret_by_default() {
    let (_a_dir, a_gw) = gateway(&[
        ("PHOTO_PACS_ADMIN_PASSWORD", ADMIN_A),
        ("PHOTO_PACS_RETRY_MAX_S", "600"),
        ("PHOTO_PACS_CONVERT_MEMORY_MB", "256"),
    ]);
    let a = Admin {
        gw: &a_gw,
        password: Some(ADMIN_A),
    };
    a.put(&every_setting());
    let a_settings = a.settings();

    let (status, name, file) = a.backup(&json!({}));
    assert_eq!(status, 200);
    assert!(
        name.starts_with("attachment; filename=\"photo-pacs-") && name.ends_with(".backup.json\""),
        "{name}"
    );
    let text = String::from_utf8(file.clone()).unwrap();
    assert_no_canary("the backup without secrets", &text);
    assert!(!text.contains(ADMIN_A), "{text}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["format"], "photo-pacs-backup");
    assert_eq!(doc["settings"]["pacsCalledAET"], "ORTHANC");
    assert_eq!(
        doc["secretsLeftOut"],
        json!(["dicomwebPassword", "dicomwebToken", "uploadPin"])
    );
    assert_eq!(doc["environment"]["PHOTO_PACS_RETRY_MAX_S"], "600");
    assert!(
        doc["environment"]
            .get("PHOTO_PACS_ADMIN_PASSWORD")
            .is_none()
    );
    assert!(doc["system"]["wifi"].is_boolean() || doc["system"]["wifi"].is_null());

    // A fresh gateway in another folder: the preview changes nothing.
    let (b_dir, b_gw) = gateway(&[]);
    let b = Admin {
        gw: &b_gw,
        password: None,
    };
    let fresh = b.settings();
    let (status, preview) = b.restore(&file, None, false);
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["applied"], false);
    assert!(preview["restartNeeded"].as_bool().unwrap());
    let fields: Vec<&str> = preview["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"pacsHost") && fields.contains(&"PHOTO_PACS_RETRY_MAX_S"));
    assert!(!fields.contains(&"dicomwebPassword"), "{preview}");
    let not_restored: Vec<&str> = preview["notRestored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["item"].as_str().unwrap())
        .collect();
    for item in [
        "dicomwebPassword",
        "dicomwebToken",
        "uploadPin",
        "adminPassword",
    ] {
        assert!(not_restored.contains(&item), "{item}: {preview}");
    }
    assert_eq!(b.settings(), fresh, "a preview changes nothing");
    assert!(restored_env(b_dir.path()).is_none());

    let (status, applied) = b.restore(&file, None, true);
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["applied"], true);
    let b_settings = b.settings();
    assert_eq!(
        without_secret_flags(&b_settings),
        without_secret_flags(&a_settings),
        "every setting but the secrets is the first gateway's"
    );
    for flag in ["dicomwebPasswordSet", "dicomwebTokenSet"] {
        assert_eq!(b_settings[flag], false, "{flag}");
    }
    assert_eq!(
        b_gw.get_json("/api/session")["uploadPinRequired"],
        false,
        "no PIN came with a backup without secrets"
    );

    // The environment waits for the next start, in the file the unit reads.
    let env_file = restored_env(b_dir.path()).expect("restored.env");
    assert!(
        env_file.contains("PHOTO_PACS_RETRY_MAX_S=600\n")
            && env_file.contains("PHOTO_PACS_CONVERT_MEMORY_MB=256\n"),
        "{env_file}"
    );
    // Started with it (as systemd's EnvironmentFile= would), the box backs up what A had.
    let mut b_gw = b_gw;
    b_gw.stop();
    let vars: Vec<(String, String)> = env_file
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let b_gw = Gateway::start_in(b_dir.path(), &pairs);
    let b = Admin {
        gw: &b_gw,
        password: None,
    };
    let (_, _, again) = b.backup(&json!({}));
    let again: Value = serde_json::from_slice(&again).unwrap();
    assert_eq!(again["environment"], doc["environment"]);
    assert_eq!(
        again["settings"], doc["settings"],
        "the restored settings outlive a restart"
    );
    assert_no_canary("the restore answers", &format!("{preview}{applied}"));
    assert_no_canary("the logs", &format!("{}{}", a_gw.logs(), b_gw.logs()));
}

#[test]
fn with_secrets_and_the_passphrase_the_secrets_come_back_and_are_never_shown() {
    let (_a_dir, a_gw) = gateway(&[("PHOTO_PACS_ADMIN_PASSWORD", ADMIN_A)]);
    let a = Admin {
        gw: &a_gw,
        password: Some(ADMIN_A),
    };
    a.put(&every_setting());

    // Secrets need a passphrase and the admin password again, even with a live login.
    let (status, _, body) = a.backup(&json!({"includeSecrets": true}));
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, doc["field"].as_str()), (400, Some("passphrase")));
    let (status, _, body) = a.backup(&json!({"includeSecrets": true, "passphrase": "short"}));
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    for wrong in [json!(null), json!("not the password")] {
        let mut req = json!({"includeSecrets": true, "passphrase": PASSPHRASE});
        if !wrong.is_null() {
            req["password"] = wrong;
        }
        let (status, _, body) = a.backup(&req);
        let doc: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, doc["field"].as_str()),
            (401, Some("password")),
            "{doc}"
        );
    }
    let (status, name, sealed) =
        a.backup(&json!({"includeSecrets": true, "password": ADMIN_A, "passphrase": PASSPHRASE}));
    assert_eq!(status, 200);
    assert!(name.ends_with(".backup.age\""), "{name}");
    let armored = String::from_utf8(sealed.clone()).unwrap();
    assert!(
        armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"),
        "{armored}"
    );
    assert_no_canary("the encrypted backup", &armored);

    // The fresh box has settings of its own, and an admin password of its own.
    let (b_dir, b_gw) = gateway(&[("PHOTO_PACS_ADMIN_PASSWORD", ADMIN_B)]);
    let b = Admin {
        gw: &b_gw,
        password: Some(ADMIN_B),
    };
    b.put(&json!({"pacsHost": "192.0.2.7"}));
    let before = settings_ini(&b_gw);
    assert!(!before.is_empty());
    let unchanged = |what: &str| {
        assert_eq!(settings_ini(&b_gw), before, "{what}: settings.ini changed");
        assert!(restored_env(b_dir.path()).is_none(), "{what}");
        assert_eq!(b.settings()["pacsHost"], "192.0.2.7", "{what}");
    };

    // Without the admin login the router refuses before reading anything.
    let nobody = Admin {
        gw: &b_gw,
        password: None,
    };
    let (status, doc) = nobody.restore(&sealed, Some(PASSPHRASE), true);
    assert_eq!((status, doc["code"].as_str()), (401, Some("UNAUTHORIZED")));
    unchanged("no login");

    let (status, doc) = b.restore(&sealed, None, true);
    assert_eq!(
        (status, doc["code"].as_str()),
        (400, Some("BACKUP_PASSPHRASE")),
        "{doc}"
    );
    assert!(
        doc["message"].as_str().unwrap().contains("passphrase"),
        "{doc}"
    );
    unchanged("no passphrase");

    let (status, doc) = b.restore(&sealed, Some("not the passphrase"), true);
    assert_eq!(
        (status, doc["code"].as_str()),
        (400, Some("BACKUP_PASSPHRASE")),
        "{doc}"
    );
    assert!(
        doc["message"]
            .as_str()
            .unwrap()
            .contains("wrong passphrase"),
        "{doc}"
    );
    unchanged("wrong passphrase");

    // One character of the encrypted contents changed: age's integrity check refuses it.
    let mut lines: Vec<String> = armored.lines().map(str::to_string).collect();
    let last_data = lines.len() - 2;
    let line = &mut lines[last_data];
    let flipped = if line.starts_with('A') { "B" } else { "A" };
    line.replace_range(0..1, flipped);
    let tampered = format!("{}\n", lines.join("\n"));
    let (status, doc) = b.restore(tampered.as_bytes(), Some(PASSPHRASE), true);
    assert_eq!(
        (status, doc["code"].as_str()),
        (400, Some("BACKUP_INVALID")),
        "{doc}"
    );
    assert!(
        doc["message"].as_str().unwrap().contains("changed"),
        "{doc}"
    );
    unchanged("tampered file");

    // The right passphrase: a preview, then the restore.
    let (status, preview) = b.restore(&sealed, Some(PASSPHRASE), false);
    assert_eq!(status, 200, "{preview}");
    let secret_change = preview["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "dicomwebPassword")
        .cloned()
        .unwrap();
    assert_eq!(
        secret_change,
        json!({"field": "dicomwebPassword", "from": "not set", "to": "set"})
    );
    unchanged("preview");
    let (status, applied) = b.restore(&sealed, Some(PASSPHRASE), true);
    assert_eq!(status, 200, "{applied}");
    assert_eq!(
        b.settings(),
        a.settings(),
        "every setting, secrets included"
    );
    let b_settings = b.settings();
    assert_eq!(b_settings["dicomwebPasswordSet"], true);
    assert_eq!(b_settings["dicomwebTokenSet"], true);

    // The PIN is the one the first box had: uploads without it are refused, with it taken.
    assert_eq!(b_gw.get_json("/api/session")["uploadPinRequired"], true);
    let photo = || {
        form(
            &[("patientId", "BACKUP-1")],
            &[("p.jpg", read_data("pillow_hopper.jpg"))],
        )
    };
    let refused = client()
        .post(b_gw.url("/api/studies"))
        .multipart(photo())
        .send()
        .unwrap();
    expect_error(refused, 401, "PIN_REQUIRED", "PIN");
    let taken = client()
        .post(b_gw.url("/api/studies"))
        .header("x-upload-pin", PIN)
        .multipart(photo())
        .send()
        .unwrap();
    assert_eq!(taken.status(), 200, "{}", taken.text().unwrap_or_default());

    // B's own admin password still rules B.
    assert_eq!(
        nobody
            .auth(client().get(b_gw.url("/api/settings")))
            .send()
            .unwrap()
            .status(),
        401
    );
    assert_no_canary(
        "the answers and logs",
        &format!(
            "{preview}{applied}{b_settings}{}{}",
            a_gw.logs(),
            b_gw.logs()
        ),
    );
}

#[test]
fn a_file_that_is_not_a_good_backup_is_refused_and_changes_nothing() {
    let (_dir, gw) = gateway(&[]);
    let admin = Admin {
        gw: &gw,
        password: None,
    };
    admin.put(&json!({"pacsCalledAET": "BEFORE", "dicomwebPassword": "pw-CANARY-3"}));
    let before = settings_ini(&gw);
    // Without an admin password there is no one to ask it of: no secrets leave this box.
    let (status, _, body) =
        admin.backup(&json!({"includeSecrets": true, "passphrase": PASSPHRASE}));
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, doc["field"].as_str()),
        (400, Some("includeSecrets")),
        "{doc}"
    );
    let (_, _, file) = admin.backup(&json!({}));
    let good: Value = serde_json::from_slice(&file).unwrap();

    let edited = |f: &dyn Fn(&mut Value)| {
        let mut doc = good.clone();
        f(&mut doc);
        serde_json::to_vec(&doc).unwrap()
    };
    let cases: Vec<(Vec<u8>, u16, &str, Option<&str>)> = vec![
        (
            b"\x89PNG\r\n\x1a\n not a backup".to_vec(),
            400,
            "BACKUP_INVALID",
            None,
        ),
        (
            b"{\"format\": \"photo-pacs-backup\", ".to_vec(),
            400,
            "BACKUP_INVALID",
            None,
        ),
        (
            edited(&|d| d["version"] = json!(2)),
            400,
            "BACKUP_INVALID",
            Some("version"),
        ),
        (
            edited(&|d| d["format"] = json!("other")),
            400,
            "BACKUP_INVALID",
            None,
        ),
        // One bad value among good ones: the whole file is refused, naming it.
        (
            edited(&|d| {
                d["settings"]["pacsCalledAET"] = json!("AFTER");
                d["settings"]["pacsPort"] = json!("70000");
            }),
            400,
            "VALIDATION_ERROR",
            Some("pacsPort"),
        ),
        (
            edited(&|d| d["settings"]["pacsPrt"] = json!("1")),
            400,
            "VALIDATION_ERROR",
            Some("pacsPrt"),
        ),
        (
            edited(&|d| d["settings"]["pacsPort"] = json!([104])),
            400,
            "VALIDATION_ERROR",
            Some("pacsPort"),
        ),
        (
            edited(&|d| d["environment"]["PHOTO_PACS_RETRY_MAX_S"] = json!("0")),
            400,
            "VALIDATION_ERROR",
            Some("PHOTO_PACS_RETRY_MAX_S"),
        ),
        (
            edited(&|d| d["environment"]["PHOTO_PACS_ADMIN_PASSWORD"] = json!("x-CANARY-x")),
            400,
            "VALIDATION_ERROR",
            Some("PHOTO_PACS_ADMIN_PASSWORD"),
        ),
    ];
    for (bytes, status, code, field) in cases {
        let (got, doc) = admin.restore(&bytes, None, true);
        assert_eq!(
            (got, doc["code"].as_str(), doc["field"].as_str()),
            (status, Some(code), field),
            "{doc}"
        );
        assert!(!doc.to_string().contains("CANARY"), "{doc}");
        assert_eq!(settings_ini(&gw), before, "{doc}");
    }
    assert!(restored_env(&gw.dir).is_none());

    // Bigger than any backup: 413 before the file is looked at.
    let (status, doc) = admin.restore(&vec![b'{'; 65 * 1024], None, true);
    assert_eq!(
        (status, doc["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{doc}"
    );
    // Not a form at all.
    let resp = client()
        .post(gw.url("/api/restore"))
        .header("content-type", "application/json")
        .body(file.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 415);
    // No file.
    let resp = client()
        .post(gw.url("/api/restore"))
        .multipart(Form::new().text("apply", "true"))
        .send()
        .unwrap();
    let doc = expect_error(resp, 400, "VALIDATION_ERROR", "backup file");
    assert_eq!(doc["field"], "file");
    assert_eq!(settings_ini(&gw), before);
    assert_eq!(admin.settings()["pacsCalledAET"], "BEFORE");
}

#[test]
fn a_restore_leaves_the_outbox_alone() {
    // A PACS that is not there: the study waits in the outbox.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let (dir, gw) = gateway(&[
        ("PHOTO_PACS_PACS_BACKEND", "cstore"),
        ("PHOTO_PACS_PACS_PORT", &port),
        ("PHOTO_PACS_DELIVERY_WAIT_S", "1"),
        ("PHOTO_PACS_RETRY_MAX_S", "3600"),
    ]);
    let admin = Admin {
        gw: &gw,
        password: None,
    };
    let resp = upload(
        &gw,
        &[("patientId", "OUTBOX-1")],
        &[("p.jpg", "pillow_hopper.jpg")],
    );
    assert_eq!(resp.status(), 202);
    let study: Value = resp.json().unwrap();
    let objects = outbox_objects(dir.path());
    assert_eq!(objects.len(), 1);
    let bytes = std::fs::read(&objects[0]).unwrap();

    // A backup from a box with other settings, restored here.
    let (_other_dir, other) = gateway(&[]);
    let other_admin = Admin {
        gw: &other,
        password: None,
    };
    other_admin.put(&json!({"pacsHost": "pacs.elsewhere.example", "pacsCalledAET": "OTHER"}));
    let (_, _, file) = other_admin.backup(&json!({}));
    let (status, report) = admin.restore(&file, None, true);
    assert_eq!(status, 200, "{report}");
    assert_eq!(admin.settings()["pacsCalledAET"], "OTHER");

    assert_eq!(outbox_objects(dir.path()), objects);
    assert_eq!(std::fs::read(&objects[0]).unwrap(), bytes);
    let outbox = gw.get_json("/api/outbox");
    let ids: Vec<&str> = outbox["studies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [study["id"].as_str().unwrap()], "{outbox}");
    assert_eq!(outbox["queued"], 1, "{outbox}");
}

#[test]
fn the_command_line_pair_backs_up_and_restores() {
    // Box A's settings, set on its page; then the gateway is stopped and the CLI runs.
    let a_dir = tempfile::tempdir().unwrap();
    let mut a_gw = Gateway::start_in(a_dir.path(), &[]);
    let a = Admin {
        gw: &a_gw,
        password: None,
    };
    a.put(&every_setting());
    let a_settings = a.settings();
    a_gw.stop();

    let env = [("PHOTO_PACS_RETRY_MAX_S", "900")];
    let out = run(a_dir.path(), &["backup", "--out", "a.backup.json"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = std::fs::read_to_string(a_dir.path().join("a.backup.json")).unwrap();
    assert_no_canary("the CLI backup", &plain);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(a_dir.path().join("a.backup.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Secrets to standard output, encrypted with the passphrase from the environment.
    let refused = run(a_dir.path(), &["backup", "--include-secrets"], &env);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("PHOTO_PACS_BACKUP_PASSPHRASE"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let with_pass = [("PHOTO_PACS_BACKUP_PASSPHRASE", PASSPHRASE)];
    let out = run(a_dir.path(), &["backup", "--include-secrets"], &with_pass);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed = String::from_utf8(out.stdout).unwrap();
    assert!(
        sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{sealed}"
    );
    assert_no_canary("the encrypted CLI backup", &sealed);

    // Box B: a preview writes nothing; --apply writes what the gateway then serves.
    let b_dir = tempfile::tempdir().unwrap();
    let file = a_dir.path().join("a.backup.json");
    let file = file.to_str().unwrap();
    let out = run(b_dir.path(), &["restore", file], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("pacsCalledAET: \"PACS\" -> \"ORTHANC\"")
            && stdout.contains("preview only"),
        "{stdout}"
    );
    assert!(!b_dir.path().join("data/settings.ini").exists());

    let out = run(b_dir.path(), &["restore", file, "--apply"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("restored into"), "{stdout}");
    assert!(
        restored_env(b_dir.path()).is_some_and(|t| t.contains("PHOTO_PACS_RETRY_MAX_S=900")),
        "{stdout}"
    );
    let b_gw = Gateway::start_in(b_dir.path(), &[]);
    let b = Admin {
        gw: &b_gw,
        password: None,
    };
    assert_eq!(
        without_secret_flags(&b.settings()),
        without_secret_flags(&a_settings)
    );
    assert_eq!(b.settings()["dicomwebPasswordSet"], false);
    drop(b_gw);

    // The encrypted file: refused without the passphrase, secrets restored with it.
    let sealed_path = b_dir.path().join("a.backup.age");
    std::fs::write(&sealed_path, &sealed).unwrap();
    let sealed_path = sealed_path.to_str().unwrap();
    let out = run(b_dir.path(), &["restore", sealed_path, "--apply"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("passphrase"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        b_dir.path(),
        &["restore", sealed_path, "--apply"],
        &with_pass,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_canary("the CLI's report", &stdout);
    assert!(
        stdout.contains("dicomwebPassword: \"not set\" -> \"set\""),
        "{stdout}"
    );
    let b_gw = Gateway::start_in(b_dir.path(), &[]);
    let b = Admin {
        gw: &b_gw,
        password: None,
    };
    assert_eq!(b.settings(), a_settings);

    // Run as root in a folder that is the service user's, the files written become its.
    use std::os::unix::fs::MetadataExt;
    let c_dir = tempfile::tempdir().unwrap();
    let data = c_dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    if std::fs::metadata(&data).unwrap().uid() == 0 {
        std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
        let out = run(c_dir.path(), &["restore", file, "--apply"], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for name in ["settings.ini", "restored.env"] {
            let meta = std::fs::metadata(data.join(name)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{name}");
        }
    }
}
