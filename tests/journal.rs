//! Logging to the journal, as under systemd: stderr is a stream socket named by
//! JOURNAL_STREAM, and records go as native journal datagrams to
//! /run/systemd/journal/socket. systemd is not PID 1 on the test machines, so the gateway
//! runs in its own mount namespace where that path is the test's socket, and the test
//! reads the fields back from the wire.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One native-protocol datagram: `KEY=value\n`, or `KEY\n<u64 LE length><bytes>\n`.
fn parse_record(mut data: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    while !data.is_empty() {
        let line_end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
        let line = &data[..line_end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            data = &data[(line_end + 1).min(data.len())..];
        } else {
            let name = String::from_utf8_lossy(line).into_owned();
            let rest = &data[line_end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.insert(
                name,
                String::from_utf8_lossy(&rest[8..8 + len]).into_owned(),
            );
            data = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    fields
}

fn can_unshare() -> bool {
    let ok = Command::new("unshare")
        .args(["-m", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "unshare -m (util-linux, as root) is needed under CI");
        eprintln!("SKIPPED: cannot create a mount namespace (needs root and util-linux unshare)");
    }
    ok
}

/// The gateway started as systemd would start it with `StandardError=journal`: its own mount
/// namespace where /run/systemd/journal/socket is the test's datagram socket, stderr a
/// stream socket that JOURNAL_STREAM names.
struct UnderJournal {
    child: std::process::Child,
    /// Log records (and anything else sent to the journal socket), in the order sent.
    journal: UnixDatagram,
    /// The test's end of the gateway's stderr.
    stderr: UnixStream,
    base: String,
    _dir: tempfile::TempDir,
}

impl UnderJournal {
    /// `notify_to_journal`: NOTIFY_SOCKET names the journal socket too, so sd_notify
    /// messages and log records arrive on one socket in the order the gateway sent them.
    fn start(env: &[(&str, &str)], notify_to_journal: bool) -> UnderJournal {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        std::fs::create_dir(&journal_dir).unwrap();
        let journal = UnixDatagram::bind(journal_dir.join("socket")).unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();

        // stderr is a stream socket, and JOURNAL_STREAM names its device and inode, as
        // systemd sets them up for StandardError=journal.
        let (stderr_ours, stderr_theirs) = UnixStream::pair().unwrap();
        let meta = std::fs::File::from(std::os::fd::OwnedFd::from(
            stderr_theirs.try_clone().unwrap(),
        ))
        .metadata()
        .unwrap();
        let journal_stream = format!("{}:{}", meta.dev(), meta.ino());
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && \
             mount --bind '{}' /run/systemd/journal && exec '{}'",
            journal_dir.display(),
            common::BIN
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "sh", "-c", &script])
            .current_dir(&work)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("JOURNAL_STREAM", &journal_stream)
            .env("PHOTO_PACS_LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::os::fd::OwnedFd::from(stderr_theirs)));
        if notify_to_journal {
            cmd.env("NOTIFY_SOCKET", "/run/systemd/journal/socket");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        UnderJournal {
            child,
            journal,
            stderr: stderr_ours,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Every datagram that arrives until none has come for `quiet`.
    fn datagrams(&self, quiet: Duration) -> Vec<Vec<u8>> {
        self.journal.set_read_timeout(Some(quiet)).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut out = Vec::new();
        while let Ok(n) = self.journal.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    /// Stops the gateway and returns what it wrote to its stderr stream.
    fn stop(mut self) -> Vec<u8> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut self.stderr, &mut out);
        out
    }
}

#[test]
#[cfg_attr(
    missing_peer = "namespaces",
    ignore = "cannot make a mount namespace (needs root and util-linux unshare)"
)]
fn under_systemd_requests_are_journal_records_with_fields_and_no_patient_data() {
    if !can_unshare() {
        return;
    }
    let gw = UnderJournal::start(&[], false);
    let base = gw.base.clone();
    let http = common::client();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().is_err() {
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let canary = "JOURNALCANARY77";
    let resp = http
        .post(format!("{base}/api/studies"))
        .multipart(common::form(
            &[("patientId", canary), ("patientName", "Canary^Journal")],
            &[("canary-file.jpg", common::read_data("pillow_hopper.jpg"))],
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A refused upload logs too (its code and field), with the canary in the refused value.
    let refused = http
        .post(format!("{base}/api/studies"))
        .multipart(common::form(
            &[("patientId", canary), ("birthDate", "2999-01-01")],
            &[("canary-file.jpg", common::read_data("pillow_hopper.jpg"))],
        ))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);

    let records: Vec<(Vec<u8>, HashMap<String, String>)> = gw
        .datagrams(Duration::from_millis(500))
        .into_iter()
        .map(|raw| {
            let fields = parse_record(&raw);
            (raw, fields)
        })
        .collect();
    let stderr = gw.stop();

    assert!(!records.is_empty(), "no journal records arrived");
    let leaks = |text: &str| {
        text.contains(canary) || text.contains("Canary") || text.contains("canary-file")
    };
    for (raw, _) in &records {
        let text = String::from_utf8_lossy(raw);
        assert!(!leaks(&text), "patient data in a journal record: {text}");
    }
    // The stderr stream is the journal's too (anything printed there is stored): no patient
    // value may reach it either.
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(
        !leaks(&stderr),
        "patient data on the stderr stream: {stderr}"
    );
    println!(
        "{} journal records, {} bytes on the stderr stream",
        records.len(),
        stderr.len()
    );
    let upload = records
        .iter()
        .map(|(_, f)| f)
        .find(|f| f.get("ROUTE").map(String::as_str) == Some("/api/studies"))
        .unwrap_or_else(|| {
            panic!(
                "no record for the upload among {records:?}",
                records = records.iter().map(|(_, f)| f).collect::<Vec<_>>()
            )
        });
    println!("upload record: {upload:?}");
    assert_eq!(upload.get("STATUS").map(String::as_str), Some("200"));
    // systemd-journal-logger maps log's Info to syslog "notice" (5).
    assert_eq!(upload.get("PRIORITY").map(String::as_str), Some("5"));
    assert_eq!(
        upload.get("SYSLOG_IDENTIFIER").map(String::as_str),
        Some("photo-pacs")
    );
    let id = upload.get("REQUEST_ID").expect("REQUEST_ID");
    assert!(id.len() >= 8, "{id}");
    let ms: u64 = upload
        .get("ELAPSED_MS")
        .and_then(|v| v.parse().ok())
        .expect("ELAPSED_MS as a number");
    assert!(ms < 60_000);
    assert!(upload.contains_key("MESSAGE"));
    let listening = records
        .iter()
        .map(|(_, f)| f)
        .any(|f| f.get("MESSAGE").is_some_and(|m| m.contains("listening on")));
    assert!(listening, "the start-up line went elsewhere");
}

/// READY=1 means "a phone can connect now": the gateway sends it only once it has answered
/// its own `GET /healthz`. With NOTIFY_SOCKET pointing at the journal socket, the record of
/// that request and READY=1 arrive on one socket in the order they were sent, so the order
/// is read off the wire rather than guessed from timing.
#[test]
#[cfg_attr(
    missing_peer = "namespaces",
    ignore = "cannot make a mount namespace (needs root and util-linux unshare)"
)]
fn ready_is_sent_only_after_the_gateway_answered_its_own_health_check() {
    if !can_unshare() {
        return;
    }
    // /healthz requests are logged at debug level.
    let gw = UnderJournal::start(&[("PHOTO_PACS_LOG_LEVEL", "debug")], true);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let ready_at = loop {
        assert!(
            Instant::now() < deadline,
            "no READY=1 within 20 s: {seen:?}"
        );
        seen.extend(
            gw.datagrams(Duration::from_millis(200))
                .into_iter()
                .map(|d| String::from_utf8_lossy(&d).into_owned()),
        );
        if let Some(i) = seen.iter().position(|d| d.lines().any(|l| l == "READY=1")) {
            break i;
        }
    };
    let health_record = seen.iter().position(|d| {
        let f = parse_record(d.as_bytes());
        f.get("ROUTE").map(String::as_str) == Some("/healthz")
            && f.get("STATUS").map(String::as_str) == Some("200")
    });
    let _ = gw.stop();
    let ready = &seen[ready_at];
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .expect("a STATUS= line with READY=1");
    assert!(status.contains("serving on"), "{status}");
    match health_record {
        Some(h) => assert!(
            h < ready_at,
            "READY=1 (message {ready_at}) came before the health check's record (message {h})"
        ),
        None => panic!("READY=1 without a /healthz answered before it: {seen:?}"),
    }
    println!("READY=1 is message {ready_at}; the health check's record is earlier: {ready:?}");
}
