//! `photo-pacs self-check` against the real gateway: what the unit that marks a freshly
//! booted root slot good runs; and `photo-pacs health`, the container's health check.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The port a gateway started by [`gateway`] listens on, from its base URL.
fn port_of(gw: &Gateway) -> String {
    gw.base
        .rsplit(':')
        .next()
        .expect("the base URL has a port")
        .to_string()
}

fn self_check(dir: &std::path::Path, port: &str, timeout: &str) -> (i32, String, Duration) {
    let listen = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let out = run(
        dir,
        &["self-check", "--timeout", timeout],
        &[
            ("PHOTO_PACS_LISTEN", &listen),
            ("PHOTO_PACS_DICOMWEB_PASSWORD", "sekret-pw-7"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
    (out.status.code().unwrap_or(-1), stdout, started.elapsed())
}

#[test]
fn a_running_gateway_passes_and_a_silent_port_fails_naming_the_gateway_check() {
    let (dir, mut gw) = gateway(&[("PHOTO_PACS_DICOMWEB_PASSWORD", "sekret-pw-7")]);
    // A study in the outbox, so the outbox check has something to count (and a patient
    // ID it must not print).
    let resp = upload(
        &gw,
        &[("patientId", "SELFCHECK-4711")],
        &[("a.jpg", "pillow_hopper.jpg")],
    );
    assert!(resp.status().is_success(), "{}", resp.status());
    let port = port_of(&gw);

    let (code, stdout, _) = self_check(dir.path(), &port, "10");
    assert_eq!(code, 0, "{stdout}");
    for name in ["gateway", "data", "settings", "outbox"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("ok   {name}: "))),
            "{name}: {stdout}"
        );
    }
    assert!(stdout.contains("1 in all"), "{stdout}");
    assert_eq!(stdout.lines().last(), Some("self-check passed"), "{stdout}");
    for secret in ["SELFCHECK-4711", "sekret-pw-7"] {
        assert!(!stdout.contains(secret), "{secret} printed: {stdout}");
    }
    let probes: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("self-check"))
        .collect();
    assert!(probes.is_empty(), "probe files left behind");

    // The gateway is gone: nothing listens on its port any more.
    assert!(gw.stop().success());
    let (code, stdout, took) = self_check(dir.path(), &port, "2");
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("FAIL gateway: ")),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("self-check failed: gateway"),
        "only the gateway failed: {stdout}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "waited {took:?} for --timeout 2"
    );
}

#[test]
fn a_missing_data_directory_fails_without_being_created() {
    let dir = tempfile::tempdir().unwrap();
    let port = storescp_free_port().to_string();
    let (code, stdout, _) = self_check(dir.path(), &port, "0");
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.contains("gateway") && l.contains("data") && l.contains("outbox")),
        "{stdout}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "the check must not make the gateway's folders (as root they would be root's)"
    );
}

#[test]
fn a_bad_environment_is_a_failed_check_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["self-check", "--timeout", "0"],
        &[("PHOTO_PACS_PACS_PORT", "abc")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL config: PHOTO_PACS_PACS_PORT"),
        "{stdout}"
    );
}

/// `photo-pacs health`, the container image's health check: 0 while the gateway answers,
/// 1 (the engines' "unhealthy") once it is gone, and only a line of its own on stdout.
#[test]
fn the_health_command_tells_a_serving_gateway_from_a_stopped_one() {
    let (dir, mut gw) = gateway(&[]);
    let listen = format!("0.0.0.0:{}", port_of(&gw));
    let health = |timeout: &str| {
        let out = run(
            dir.path(),
            &["health", "--timeout", timeout],
            &[("PHOTO_PACS_LISTEN", &listen)],
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Listening on every address, the check asks loopback.
    let (code, stdout, stderr) = health("5");
    assert_eq!(code, Some(0), "{stdout} {stderr}");
    assert!(stdout.starts_with("healthy: 127.0.0.1:"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");

    assert!(gw.stop().success());
    let started = Instant::now();
    let (code, stdout, _) = health("1");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.starts_with("unhealthy: GET /healthz on 127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

fn storescp_free_port() -> u16 {
    common::storescp::free_port()
}
