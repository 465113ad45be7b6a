//! A real PACS for the interop tests: Debian's Orthanc (1.10.1 on Debian 12) with the
//! DICOMweb plugin, on loopback ports, with its storage in a temp dir.
//!
//! Loopback only: Orthanc has no bind-address setting for either its HTTP server (civetweb)
//! or its DICOM server (dcmtk); both listen on all interfaces. `"RemoteAccessAllowed": false`
//! only makes the HTTP server refuse non-loopback clients after accepting them, and the DICOM
//! server has no equivalent. Orthanc is therefore started with the same `LD_PRELOAD` shim as
//! storescp (see `storescp.rs`), which rewrites every `bind()` to 127.0.0.1, and start-up
//! checks in `/proc` that both ports listen on 127.0.0.1 and nothing listens elsewhere.
//!
//! Uses `super::storescp` for the shared plumbing: declare both modules side by side.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::storescp::{
    Logs, StartError, free_port, loopback_only_preload, missing_peer, terminate, wait_listening,
};

/// Where Debian's orthanc-dicomweb package puts the plugin (a symlink to
/// `/usr/lib/orthanc/libOrthancDicomWeb.so.1.7`).
pub const DICOMWEB_PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

/// Debian's orthanc package ships the sample Modality Worklists plugin here.
pub const WORKLISTS_PLUGIN: &str = "/usr/share/orthanc/plugins/libModalityWorklists.so";

/// The worklists plugin when installed; else `None` with "SKIPPED" printed (panics under CI).
pub fn find_worklists_plugin() -> Option<PathBuf> {
    let plugin = PathBuf::from(WORKLISTS_PLUGIN);
    if plugin.is_file() {
        Some(plugin)
    } else {
        missing_peer(
            &format!("the worklists plugin {WORKLISTS_PLUGIN}"),
            "orthanc",
        )
    }
}

/// How long Orthanc may take to answer `/system`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The Orthanc binary (`Orthanc` in `PATH`, else `/usr/sbin/Orthanc`) when it and the
/// DICOMweb plugin are installed; else `None` with "SKIPPED" printed (panics under CI).
pub fn find_orthanc() -> Option<PathBuf> {
    let binary = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("Orthanc"))
                .find(|p| p.is_file())
        })
        .or_else(|| Some(PathBuf::from("/usr/sbin/Orthanc")).filter(|p| p.is_file()));
    let Some(binary) = binary else {
        return missing_peer("Orthanc", "orthanc");
    };
    if !Path::new(DICOMWEB_PLUGIN).is_file() {
        return missing_peer(
            &format!("the DICOMweb plugin {DICOMWEB_PLUGIN}"),
            "orthanc-dicomweb",
        );
    }
    Some(binary)
}

/// How to start [`Orthanc`].
#[derive(Clone, Debug)]
pub struct OrthancConfig {
    /// Orthanc's own AE title (`DicomAet`).
    pub aet: String,
    /// `Some((user, password))` turns on HTTP basic authentication for the REST API and
    /// DICOMweb; `None` leaves HTTP open (to loopback clients).
    pub basic_auth: Option<(String, String)>,
    /// `DicomCheckCalledAet`: true (the default here) makes Orthanc reject associations
    /// whose called AE title is not `aet`, so a gateway sending the wrong one fails.
    pub check_called_aet: bool,
    /// `Some(true)` sets `TCP_NODELAY=1` in Orthanc's environment (read by dcmtk for the
    /// DICOM server) and `"TcpNoDelay": true` (HTTP server); `Some(false)` turns both off;
    /// `None` keeps the defaults (Nagle off for both).
    pub tcp_nodelay: Option<bool>,
    pub dicomweb_plugin: PathBuf,
    /// `--verbose` logging.
    pub verbose: bool,
    /// `Some(folder)` loads the Modality Worklists plugin serving the `.wl` files there.
    pub worklists: Option<PathBuf>,
    /// More configuration entries, overriding the ones the harness writes.
    pub extra: serde_json::Map<String, Value>,
}

impl OrthancConfig {
    pub fn new(aet: &str) -> OrthancConfig {
        OrthancConfig {
            aet: aet.to_string(),
            basic_auth: None,
            check_called_aet: true,
            tcp_nodelay: None,
            dicomweb_plugin: PathBuf::from(DICOMWEB_PLUGIN),
            verbose: false,
            worklists: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Serves the worklist files in `folder` (the sample plugin, as wlmscpfs would) to any
    /// calling AE title.
    pub fn worklists(mut self, folder: &Path) -> OrthancConfig {
        self.worklists = Some(folder.to_path_buf());
        self.allow_find()
    }

    /// Answers C-FIND (patient, study and worklist queries) from any calling AE title, as
    /// `DicomAlwaysAllowEcho`/`Store` already do for echo and store.
    pub fn allow_find(self) -> OrthancConfig {
        self.set("DicomAlwaysAllowFind", json!(true))
            .set("DicomAlwaysAllowFindWorklist", json!(true))
    }

    pub fn basic_auth(mut self, user: &str, password: &str) -> OrthancConfig {
        self.basic_auth = Some((user.to_string(), password.to_string()));
        self
    }

    pub fn check_called_aet(mut self, on: bool) -> OrthancConfig {
        self.check_called_aet = on;
        self
    }

    pub fn tcp_nodelay(mut self, on: bool) -> OrthancConfig {
        self.tcp_nodelay = Some(on);
        self
    }

    pub fn verbose(mut self, on: bool) -> OrthancConfig {
        self.verbose = on;
        self
    }

    /// Sets any Orthanc configuration entry (e.g. `"StableAge"`).
    pub fn set(mut self, key: &str, value: Value) -> OrthancConfig {
        self.extra.insert(key.to_string(), value);
        self
    }
}

/// A running Orthanc on 127.0.0.1; killed on drop (see [`Orthanc::stop`] for a graceful stop).
pub struct Orthanc {
    child: Child,
    http_port: u16,
    dicom_port: u16,
    aet: String,
    auth: Option<(String, String)>,
    dir: tempfile::TempDir,
    logs: Logs,
}

impl Orthanc {
    /// Starts `orthanc` (the path from [`find_orthanc`]) and waits until `/system` answers.
    pub fn start(orthanc: &Path, config: OrthancConfig) -> Orthanc {
        let dir = tempfile::Builder::new()
            .prefix("orthanc-")
            .tempdir()
            .expect("create a temp dir for Orthanc");
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let http_port = free_port();
            let mut dicom_port = free_port();
            while dicom_port == http_port {
                dicom_port = free_port();
            }
            let config_file = dir.path().join("orthanc.json");
            let settings = settings(&config, dir.path(), http_port, dicom_port);
            std::fs::write(
                &config_file,
                serde_json::to_string_pretty(&settings).expect("serialize Orthanc settings"),
            )
            .unwrap_or_else(|e| panic!("write {}: {e}", config_file.display()));

            let started = Instant::now();
            let (mut child, logs) = spawn(orthanc, &config, dir.path());
            match wait_listening(
                &mut child,
                &[http_port, dicom_port],
                START_TIMEOUT,
                "Orthanc",
            ) {
                Ok(()) => {}
                Err(StartError::Exited(status)) => {
                    std::thread::sleep(Duration::from_millis(50));
                    last_error = format!("Orthanc exited ({status}):\n{}", logs.text());
                    // A port taken between probing and binding: try other ports.
                    if logs.text().contains("already in use") {
                        continue;
                    }
                    break;
                }
                Err(StartError::Timeout) => {
                    terminate(&mut child, Duration::from_secs(5));
                    panic!(
                        "Orthanc did not listen on ports {http_port} and {dicom_port} within \
                         {START_TIMEOUT:?}:\n{}",
                        logs.text()
                    );
                }
            }
            let mut orthanc = Orthanc {
                child,
                http_port,
                dicom_port,
                aet: config.aet.clone(),
                auth: config.basic_auth.clone(),
                dir,
                logs,
            };
            orthanc.wait_ready(started);
            return orthanc;
        }
        panic!("Orthanc did not start: {last_error}");
    }

    fn wait_ready(&mut self, started: Instant) {
        let deadline = started + START_TIMEOUT;
        loop {
            let answer = self.request_as(self.credentials(), "GET", "/system", &[], &[]);
            match answer {
                Ok(r) if r.status == 200 => return,
                Ok(r) if Instant::now() > deadline => panic!(
                    "Orthanc's /system answers {} after {START_TIMEOUT:?}:\n{}",
                    r.status,
                    self.logs()
                ),
                Err(e) if Instant::now() > deadline => panic!(
                    "Orthanc's /system did not answer within {START_TIMEOUT:?} ({e}):\n{}",
                    self.logs()
                ),
                _ => {}
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("Orthanc exited at start-up ({status}):\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// "http://127.0.0.1:PORT" (no trailing slash).
    pub fn http_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    pub fn dicom_port(&self) -> u16 {
        self.dicom_port
    }

    /// Orthanc's AE title.
    pub fn aet(&self) -> &str {
        &self.aet
    }

    /// "http://127.0.0.1:PORT/dicom-web" (no trailing slash): QIDO-RS, WADO-RS, STOW-RS.
    pub fn dicomweb_base(&self) -> String {
        format!("{}/dicom-web", self.http_base())
    }

    /// The basic-auth credentials, when enabled.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An HTTP request to Orthanc (`path` starts with '/', e.g. "/dicom-web/studies") with
    /// the given credentials (`None`: no Authorization header).
    pub fn request_as(
        &self,
        auth: Option<(&str, &str)>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<HttpResponse> {
        http_request(self.http_port, auth, method, path, headers, body)
    }

    /// An HTTP request to Orthanc with its credentials (when enabled); panics with Orthanc's
    /// log when the request fails at the HTTP level (whatever the status).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        self.request_as(self.credentials(), method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} on Orthanc: {e}\n{}", self.logs()))
    }

    /// An authenticated GET (any status).
    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[], &[])
    }

    /// An authenticated GET on the REST API that must answer 2xx with JSON, e.g.
    /// `/studies?expand`, `/patients?expand`, `/instances/{id}/simplified-tags`, or a QIDO-RS
    /// query such as `/dicom-web/studies`.
    pub fn get_json(&self, path: &str) -> Value {
        self.get(path).json(&format!("GET {path} on Orthanc"))
    }

    /// Uploads one DICOM file through the REST API (`POST /instances`); returns Orthanc's
    /// answer (`{"ID": ..., "Status": "Success", ...}`).
    pub fn post_instance(&self, dicom: &[u8]) -> Value {
        self.request(
            "POST",
            "/instances",
            &[("Content-Type", "application/dicom")],
            dicom,
        )
        .json("POST /instances on Orthanc")
    }

    /// Orthanc's stdout and stderr so far.
    pub fn logs(&self) -> String {
        self.logs.text()
    }

    /// The temp directory holding the configuration, storage and index.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops Orthanc gracefully (SIGTERM; SIGKILL after 10 s); logs stay readable.
    pub fn stop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }

    /// Stops Orthanc at once (a crash, a power cut, a restart for updates), keeping its
    /// storage, ports and configuration for [`Orthanc::start_again`].
    pub fn kill_keeping_storage(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a stopped Orthanc again on the same ports with the same storage.
    pub fn start_again(&mut self, orthanc: &Path, config: &OrthancConfig) {
        let started = Instant::now();
        loop {
            let (mut child, logs) = spawn(orthanc, config, self.dir.path());
            match wait_listening(
                &mut child,
                &[self.http_port, self.dicom_port],
                START_TIMEOUT,
                "Orthanc",
            ) {
                Ok(()) => {
                    self.child = child;
                    self.logs = logs;
                    self.wait_ready(started);
                    return;
                }
                // The old process's sockets may linger for a moment.
                Err(StartError::Exited(_)) if started.elapsed() < START_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(e) => panic!(
                    "Orthanc did not start again ({}):\n{}",
                    match e {
                        StartError::Exited(s) => s.to_string(),
                        StartError::Timeout => "timeout".into(),
                    },
                    logs.text()
                ),
            }
        }
    }
}

/// Starts the Orthanc process for the configuration written in `dir`.
fn spawn(orthanc: &Path, config: &OrthancConfig, dir: &Path) -> (Child, Logs) {
    let mut cmd = Command::new(orthanc);
    cmd.current_dir(dir)
        .env("LD_PRELOAD", loopback_only_preload())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(on) = config.tcp_nodelay {
        cmd.env("TCP_NODELAY", if on { "1" } else { "0" });
    }
    if config.verbose {
        cmd.arg("--verbose");
    }
    cmd.arg("--no-jobs").arg(dir.join("orthanc.json"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", orthanc.display()));
    let logs = Logs::capture(&mut child);
    (child, logs)
}

impl Drop for Orthanc {
    /// SIGKILL: the storage is thrown away, and a graceful stop takes Orthanc 1.10 ~3.5 s.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Orthanc's configuration file.
fn settings(config: &OrthancConfig, dir: &Path, http_port: u16, dicom_port: u16) -> Value {
    let mut s = json!({
        "Name": "photo-pacs-test",
        "StorageDirectory": dir.join("storage"),
        "IndexDirectory": dir.join("index"),
        "Plugins": [config.dicomweb_plugin],
        "DicomWeb": {
            "Enable": true,
            "Root": "/dicom-web/",
            "EnableWado": true,
            "WadoRoot": "/wado",
            "Host": format!("127.0.0.1:{http_port}"),
            "Ssl": false,
        },
        "HttpServerEnabled": true,
        "HttpPort": http_port,
        "RemoteAccessAllowed": false,
        "HttpDescribeErrors": true,
        "OrthancExplorerEnabled": false,
        "WebDavEnabled": false,
        "DicomServerEnabled": true,
        "DicomAet": config.aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": config.check_called_aet,
        // Any calling AE may echo and store: no modality needs to be declared.
        "DicomAlwaysAllowEcho": true,
        "DicomAlwaysAllowStore": true,
        "DicomCheckModalityHost": false,
        "DicomModalities": {},
        "UnknownSopClassAccepted": false,
        "SaveJobs": false,
        "ConcurrentJobs": 1,
        "MetricsEnabled": false,
    });
    let map = s.as_object_mut().expect("the settings are a JSON object");
    match &config.basic_auth {
        Some((user, password)) => {
            map.insert("AuthenticationEnabled".into(), json!(true));
            map.insert("RegisteredUsers".into(), json!({ user: password }));
        }
        None => {
            map.insert("AuthenticationEnabled".into(), json!(false));
        }
    }
    if let Some(on) = config.tcp_nodelay {
        map.insert("TcpNoDelay".into(), json!(on));
    }
    if let Some(folder) = &config.worklists {
        map.insert(
            "Plugins".into(),
            json!([config.dicomweb_plugin, WORKLISTS_PLUGIN]),
        );
        map.insert(
            "Worklists".into(),
            json!({"Enable": true, "Database": folder, "FilterIssuerAet": false}),
        );
    }
    for (k, v) in &config.extra {
        map.insert(k.clone(), v.clone());
    }
    s
}

/// A response read by [`http_request`].
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (naming `what`) unless the status is 2xx and the body JSON.
    pub fn json(&self, what: &str) -> Value {
        assert!(
            (200..300).contains(&self.status),
            "{what} answered {}: {}",
            self.status,
            self.text()
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{what} did not answer JSON ({e}): {}", self.text()))
    }
}

/// A minimal HTTP/1.0 client for 127.0.0.1:`port` (one request per connection, body read
/// to the end), so the harness depends on neither reqwest's features nor a TLS provider.
pub fn http_request(
    port: u16,
    auth: Option<(&str, &str)>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    use std::io::{Error, Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some((user, password)) = auth {
        let token = base64(format!("{user}:{password}").as_bytes());
        head.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::other(format!("no end of HTTP headers in {} bytes", raw.len())))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::other(format!("bad HTTP status line {status_line:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Standard base64 with padding (for the Authorization header).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
