//! Shared by the integration tests: run the real `photo-pacs` binary on a loopback port in a
//! scratch directory, read its log, stop it with SIGTERM; find peer tools.
#![allow(dead_code)]

pub mod corpus;
pub mod find_scp;
pub mod orthanc;
pub mod rauc;
pub mod storescp;
pub mod wlmscpfs;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_photo-pacs");

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn read_data(name: &str) -> Vec<u8> {
    std::fs::read(data(name)).unwrap_or_else(|e| panic!("test photo {name}: {e}"))
}

pub struct Gateway {
    child: Option<Child>,
    pub base: String,
    pub dir: PathBuf,
    logs: Arc<Mutex<String>>,
}

impl Gateway {
    /// Starts the gateway in `dir` (its working directory, so `data/` lands there) with
    /// `env` on top of a clean environment.
    pub fn start_in(dir: &Path, env: &[(&str, &str)]) -> Gateway {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PHOTO_PACS_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start photo-pacs");
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(String::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = logs.lock().unwrap().clone();
            if let Some(rest) = text.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().to_string();
                return Gateway {
                    child: Some(child),
                    base: format!("http://{addr}"),
                    dir: dir.to_path_buf(),
                    logs,
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("photo-pacs exited at start-up ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "photo-pacs did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET path` answered with a JSON document (any status).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        client()
            .get(self.url(path))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The OpenMetrics text of `/metrics`.
    pub fn metrics(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .and_then(|r| r.text())
            .expect("GET /metrics")
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL, as a power cut would stop it; returns its log.
    pub fn kill9(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Let the reader thread drain the last lines.
        std::thread::sleep(Duration::from_millis(20));
        self.logs()
    }

    /// Sends SIGTERM and waits for the exit status; logs stay readable afterwards.
    pub fn stop(&mut self) -> ExitStatus {
        sigterm(self.pid());
        self.stop_after_signal()
    }

    /// Waits for the exit of a gateway that was already sent a signal.
    pub fn stop_after_signal(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("gateway already stopped");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Let the reader thread drain the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "photo-pacs did not stop within 30 s of SIGTERM:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -TERM {pid} failed");
}

/// A scratch directory and a gateway running in it.
pub fn gateway(env: &[(&str, &str)]) -> (tempfile::TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir.path(), env);
    (dir, gw)
}

/// Runs the binary to completion (for start-up failures and CLI commands).
pub fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run photo-pacs")
}

pub fn client() -> reqwest::blocking::Client {
    // The gateway builds reqwest without a TLS provider of its own; so do the tests.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .unwrap()
}

/// The path of a peer program, or `None` (with the reason printed) when it is missing and
/// we are not under CI. Under CI (`CI=true`) a missing peer fails the test: a skipped
/// interop test must never pass for a real one.
pub fn peer(program: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "{program} is missing under CI: install the Debian package {package}"
        );
        eprintln!("SKIPPED: {program} not found (Debian package {package}); this test did not run");
    }
    found
}

/// Every file under `root` whose name ends with `suffix`, sorted (none when `root` is missing).
fn files_under(root: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The DICOM objects a gateway started in `dir` (defaults) holds in its outbox, wherever
/// its layout puts them, in submission and image order.
pub fn outbox_objects(dir: &Path) -> Vec<PathBuf> {
    let mut files = files_under(&dir.join("data/dicom"), ".dcm");
    // Studies are folders named by random IDs: order them by when they were made.
    files.sort_by_key(|p| {
        let study = p.parent().map(Path::to_path_buf).unwrap_or_default();
        let made = std::fs::metadata(study.join("record.json"))
            .and_then(|m| m.modified())
            .ok();
        (made, p.clone())
    });
    files
}

/// Photos as received that are still on disk (UPLOAD_DIR under `dir`).
pub fn staged_photos(dir: &Path) -> Vec<PathBuf> {
    files_under(&dir.join("data/uploads"), "")
}

/// Study folders in the outbox (committed or half-built), and staging folders of uploads:
/// what a refused upload must not leave behind.
pub fn study_folders(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["data/dicom", "data/uploads"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            out.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    out.sort();
    out
}

/// Half-built studies and interrupted uploads: what a crash leaves and start-up removes.
pub fn orphan_folders(dir: &Path) -> Vec<PathBuf> {
    study_folders(dir)
        .into_iter()
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(".intake-") || n.starts_with(".staging-")
            })
        })
        .collect()
}

/// A synthetic JPEG of `w` x `h` with a patterned picture (quality 90): big enough to make
/// conversion take a while, or a study take room, where a test needs that.
pub fn patterned_jpeg(w: u16, h: u16) -> Vec<u8> {
    let pixels: Vec<u8> = (0..u32::from(w) * u32::from(h))
        .flat_map(|i| {
            let (x, y) = (i % u32::from(w), i / u32::from(w));
            [(x % 251) as u8, (y % 241) as u8, ((x ^ y) % 239) as u8]
        })
        .collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb)
        .expect("encode a synthetic JPEG");
    out
}

/// Environment for a gateway sending by C-STORE to `aet` on `port` on loopback, with
/// `extra` on top.
pub fn cstore_env(port: u16, aet: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PHOTO_PACS_PACS_BACKEND".into(), "cstore".into()),
        ("PHOTO_PACS_PACS_HOST".into(), "127.0.0.1".into()),
        ("PHOTO_PACS_PACS_PORT".into(), port.to_string()),
        ("PHOTO_PACS_PACS_CALLED_AET".into(), aet.into()),
        ("PHOTO_PACS_PACS_TIMEOUT_S".into(), "10".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// tests/peers/failing_scp.py: a pynetdicom storage SCP on a free loopback port that
/// answers `status` (hex) for the C-STOREs `fail` names ("2", "1,3" or "all") and stores
/// the rest in its output folder. Killed when dropped.
pub struct FailingScp {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
    pub port: u16,
}

impl FailingScp {
    /// `None` (with the reason printed) when pynetdicom cannot start and we are not under CI.
    pub fn start(aet: &str, fail: &str, status: &str, out: &Path) -> Option<FailingScp> {
        let python = peer("python3", "python3")?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/failing_scp.py");
        let port = storescp::free_port();
        let mut child = Command::new(python)
            .arg(&script)
            .args([&port.to_string(), aet, fail])
            .arg(out)
            .arg(status)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start failing_scp.py");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut ready = String::new();
        let _ = stdout.read_line(&mut ready);
        if ready.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                !storescp::under_ci(),
                "pynetdicom SCP did not start: pip install -r tests/peers/requirements.txt"
            );
            eprintln!("SKIPPED: pynetdicom SCP did not start");
            return None;
        }
        Some(FailingScp {
            child,
            stdout,
            port,
        })
    }

    /// The PACS is repaired: from now on every C-STORE is stored.
    pub fn fix(&mut self) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "fixed").expect("tell failing_scp.py it is fixed");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("its answer");
        assert_eq!(line.trim(), "fixed");
    }

    /// Stops it at once.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FailingScp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A multipart form builder for the upload route.
pub fn form(
    fields: &[(&str, &str)],
    images: &[(&str, Vec<u8>)],
) -> reqwest::blocking::multipart::Form {
    let mut f = reqwest::blocking::multipart::Form::new();
    for (k, v) in fields {
        f = f.text(k.to_string(), v.to_string());
    }
    for (name, bytes) in images {
        let part =
            reqwest::blocking::multipart::Part::bytes(bytes.clone()).file_name(name.to_string());
        f = f.part("images[]", part);
    }
    f
}

/// Posts an upload: text `fields`, and photos given as (file name to send, test photo name).
pub fn upload(
    gw: &Gateway,
    fields: &[(&str, &str)],
    photos: &[(&str, &str)],
) -> reqwest::blocking::Response {
    let images: Vec<(&str, Vec<u8>)> = photos
        .iter()
        .map(|(sent, file)| (*sent, read_data(file)))
        .collect();
    client()
        .post(gw.url("/api/studies"))
        .multipart(form(fields, &images))
        .send()
        .expect("upload request")
}

/// [`gateway`] for an environment built at run time.
pub fn gateway_env(env: &[(String, String)]) -> (tempfile::TempDir, Gateway) {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    gateway(&pairs)
}

/// `PUT /api/settings` with a JSON body.
pub fn put_settings(gw: &Gateway, body: &serde_json::Value) -> reqwest::blocking::Response {
    client()
        .put(gw.url("/api/settings"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .expect("PUT /api/settings")
}

/// Checks an error answer (HTTP status, error code, a message containing `needle`) and
/// returns its document.
pub fn expect_error(
    resp: reqwest::blocking::Response,
    status: u16,
    code: &str,
    needle: &str,
) -> serde_json::Value {
    let got = resp.status().as_u16();
    let doc: serde_json::Value = resp.json().unwrap_or(serde_json::Value::Null);
    assert_eq!(got, status, "{doc}");
    assert_eq!(doc["code"], code, "{doc}");
    let message = doc["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
    doc
}

/// Runs dciodvfy on `file` and fails the test unless it recognises a Secondary Capture
/// image and reports no error (warnings are allowed). Returns the report.
pub fn assert_dciodvfy_clean(dciodvfy: &Path, file: &Path) -> String {
    let out = Command::new(dciodvfy)
        .arg(file)
        .output()
        .expect("run dciodvfy");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("SCImage"),
        "dciodvfy did not recognise the IOD of {}:\n{report}",
        file.display()
    );
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("Error")).collect();
    assert!(errors.is_empty(), "{}:\n{report}", file.display());
    report
}

/// Environment that sets a gateway's clock 3 days behind: a box with no battery clock and
/// no time server. libfaketime is preloaded into the gateway itself rather than run as
/// `faketime -f -3d photo-pacs`, whose own process would stand between the test and the
/// gateway (it forks, and passes neither SIGTERM nor SIGKILL on). The monotonic clock is
/// left alone, so timers and deadlines run as usual.
pub fn three_days_behind() -> Option<Vec<(String, String)>> {
    peer("faketime", "faketime")?;
    let lib = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
        .find(|p| p.is_file());
    let Some(lib) = lib else {
        return storescp::missing_peer("libfaketime.so.1", "faketime");
    };
    Some(vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME".into(), "-3d".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ])
}
