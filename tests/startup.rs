//! Start-up, shutdown and the command-line tools of the real binary.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

#[test]
fn a_bad_variable_stops_start_up_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, allowed) in [
        ("PHOTO_PACS_PACS_PORT", "abc", "1 to 65535"),
        ("PHOTO_PACS_PACS_BACKEND", "foo", "mock, cstore, dicomweb"),
        ("PHOTO_PACS_MAX_UPLOAD_MB", "lots", "megabytes"),
        ("PHOTO_PACS_LOCAL_RESIZE_MAX", "10", "64 and 16384"),
        ("PHOTO_PACS_PACS_CALLED_AET", "WAY_TOO_LONG_AE_TITLE", "16"),
        ("PHOTO_PACS_FLAG_THEME_DARK", "perhaps", "true or false"),
        ("PHOTO_PACS_LISTEN", "everywhere", "address and port"),
    ] {
        // Should a bad value be accepted, the gateway must not take the real port.
        let listen = if var == "PHOTO_PACS_LISTEN" {
            value
        } else {
            "127.0.0.1:0"
        };
        let out = run(
            dir.path(),
            &[],
            &[(var, value), ("PHOTO_PACS_LISTEN", listen)],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} started");
        assert_eq!(stderr.trim().lines().count(), 1, "{var}: {stderr}");
        assert!(
            stderr.contains(var) && stderr.contains(allowed),
            "{var}: {stderr}"
        );
    }
}

#[test]
fn unknown_variables_are_reported_and_demo_mode_is_announced() {
    let (_dir, gw) = gateway(&[("PHOTO_PACS_PACS_PROT", "11112")]);
    let logs = gw.logs();
    assert!(logs.contains("PHOTO_PACS_PACS_PROT"), "{logs}");
    assert!(logs.contains("demo mode"), "{logs}");
}

/// SIGTERM while an upload is half-sent: the upload still completes with 200, then the
/// process exits 0.
#[test]
fn sigterm_lets_the_upload_in_flight_finish_then_exits_0() {
    let (_dir, mut gw) = gateway(&[]);
    let boundary = "xyzzy";
    let photo = read_data("pillow_flower.jpg");
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"patientId\"\r\n\r\nP-1\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"images[]\"; filename=\"a.jpg\"\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(&photo);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /api/studies HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut s = std::net::TcpStream::connect(gw.base.trim_start_matches("http://")).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let half = body.len() / 2;
    s.write_all(&body[..half]).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    sigterm(gw.pid());
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&body[half..]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        gw.logs()
    );
    assert!(answer.contains("\"status\":\"success\""), "{answer}");

    let status = gw.stop_after_signal();
    assert!(status.success(), "exit status {status}\n{}", gw.logs());
    assert!(gw.logs().contains("stop signal received"));
}

#[test]
fn convert_cli_writes_one_file_per_photo_in_one_study() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "convert",
            "--patient-id",
            "P-CLI",
            "--patient-name",
            "王大明",
            "--out",
            "out",
            data("pillow_hopper.jpg").to_str().unwrap(),
            data("pillow_flower.jpg").to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let files: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
    assert_eq!(files.len(), 2);

    let bad = run(
        dir.path(),
        &["convert", "--patient-id", "A\\B", "x.jpg"],
        &[],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("patientId"));

    let echo = run(dir.path(), &["echo"], &[]);
    assert!(echo.status.success());
    assert!(String::from_utf8_lossy(&echo.stdout).contains("mock"));
}
