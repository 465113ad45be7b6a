//! systemd's notify protocol on the real binary: NOTIFY_SOCKET points at a datagram socket
//! of the test, as systemd would set it for `Type=notify` with `WatchdogSec=`. That READY=1
//! follows the gateway's own health check is shown in tests/journal.rs, where the order of
//! the two can be read off one socket.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::{Gateway, client};

/// Datagrams from the gateway, with the time each arrived.
fn receive(sock: &UnixDatagram, until: Instant) -> Vec<(Instant, String)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            got.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }
    got
}

#[test]
fn watchdog_at_half_the_interval_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    // WatchdogSec=1s: pings are due every 0.5 s.
    let mut gw = Gateway::start_in(
        &work,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("no READY=1 within 20 s");
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        first.lines().any(|l| l == "READY=1"),
        "first message: {first:?}"
    );

    let pings: Vec<Instant> = receive(&sock, Instant::now() + Duration::from_secs(3))
        .into_iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| t)
        .collect();
    let mut gaps: Vec<f64> = pings
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    gaps.sort_by(f64::total_cmp);
    println!("{} WATCHDOG=1 in 3 s, gaps {gaps:.3?}", pings.len());
    assert!(
        (5..=8).contains(&pings.len()),
        "expected about 6 pings in 3 s at 0.5 s, got {}",
        pings.len()
    );
    let median = gaps[gaps.len() / 2];
    assert!(
        (0.4..=0.6).contains(&median),
        "median gap {median:.3} s, expected 0.5 s"
    );

    common::sigterm(gw.pid());
    let after = receive(&sock, Instant::now() + Duration::from_secs(3));
    assert!(
        after
            .iter()
            .any(|(_, m)| m.lines().any(|l| l == "STOPPING=1")),
        "no STOPPING=1 after SIGTERM: {after:?}"
    );
    assert!(gw.stop_after_signal().success());
}

#[test]
fn without_notify_socket_nothing_changes() {
    let (_dir, gw) = common::gateway(&[("WATCHDOG_USEC", "1000000")]);
    let health = client().get(gw.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), 200);
    assert!(!gw.logs().contains("cannot notify"), "{}", gw.logs());
}
