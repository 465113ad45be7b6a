//! Abuse limits on the real binary: the header read timeout drops slow-loris clients, the
//! connection limit queues the next client instead of failing it, and the conversion
//! semaphore holds however many phones upload at once.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{client, gateway};

fn addr(gw: &common::Gateway) -> String {
    gw.base.trim_start_matches("http://").to_string()
}

/// True once the gateway has closed (or answered) the connection.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(0) => true, // EOF
        Ok(_) => true, // the gateway's 408 answer, sent just before it closes
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

fn health_ok(gw: &common::Gateway) -> bool {
    client()
        .get(gw.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .is_ok_and(|r| r.status() == 200)
}

#[test]
fn header_timeout_drops_a_slow_loris_while_others_are_served() {
    let (_dir, gw) = gateway(&[("PHOTO_PACS_HEADER_TIMEOUT_S", "1")]);
    let mut slow = TcpStream::connect(addr(&gw)).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let request =
        b"POST /api/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let started = Instant::now();
    let mut dropped_after = None;
    for byte in request {
        // A write can fail once the gateway has gone; that counts as dropped too.
        if slow.write_all(&[*byte]).is_err() || closed_by_peer(&mut slow) {
            dropped_after = Some(started.elapsed());
            break;
        }
        assert!(
            health_ok(&gw),
            "a normal request failed while a slow client was open"
        );
    }
    let after = dropped_after.expect("the slow client was never dropped");
    println!(
        "slow client dropped after {:.2} s (timeout 1 s)",
        after.as_secs_f64()
    );
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(4),
        "dropped after {after:?}, expected about 1 s"
    );
}

#[test]
fn a_silent_connection_is_dropped_by_the_header_timeout() {
    let (_dir, gw) = gateway(&[("PHOTO_PACS_HEADER_TIMEOUT_S", "1")]);
    let mut silent = TcpStream::connect(addr(&gw)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    while !closed_by_peer(&mut silent) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a connection that never sends a byte is still open after 5 s"
        );
    }
    let after = started.elapsed();
    println!("silent client dropped after {:.2} s", after.as_secs_f64());
    // Not before the timeout either: a gateway that drops every fresh connection at once
    // would pass the upper bound alone.
    assert!(
        after >= Duration::from_millis(900),
        "dropped after {after:?}, before the 1 s header timeout"
    );
}

/// One request on a fresh connection, answered with `Connection: close`.
fn ask(gw: &common::Gateway, request: &str) -> String {
    let mut s = TcpStream::connect(addr(gw)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn past_the_connection_limit_health_is_answered_and_others_are_told_busy() {
    let (_dir, gw) = gateway(&[
        ("PHOTO_PACS_MAX_CONNECTIONS", "4"),
        ("PHOTO_PACS_HEADER_TIMEOUT_S", "60"),
    ]);
    // Each of the four is answered once on its keep-alive connection (so it surely holds a
    // general slot, whatever the load), then holds it with a request that never ends.
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(addr(&gw)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut seen = Vec::new();
            let mut chunk = [0_u8; 512];
            while !String::from_utf8_lossy(&seen).contains("\"ok\"") {
                let n = s.read(&mut chunk).unwrap();
                assert!(
                    n > 0,
                    "closed before answering: {}",
                    String::from_utf8_lossy(&seen)
                );
                seen.extend_from_slice(&chunk[..n]);
            }
            s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    let health = ask(
        &gw,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        health.starts_with("HTTP/1.1 200"),
        "a reserved slot answers health: {health}"
    );
    let busy = ask(
        &gw,
        "GET /api/session HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(
        busy.contains("BUSY") && busy.to_ascii_lowercase().contains("retry-after"),
        "{busy}"
    );
    // A closed connection's slot comes back once the gateway has seen it close: ask until
    // it does (a liveness bound, not a timing assertion).
    held.pop();
    let started = Instant::now();
    loop {
        let served = ask(
            &gw,
            "GET /api/session HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if served.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a freed slot still does not serve after 10 s: {served}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Four phones upload four photos each at once; returns the gateway's peak of conversions
/// running at the same time.
fn conversions_peak_with(max_conversions: &str, photo: &[u8]) -> String {
    let (_dir, gw) = gateway(&[
        ("PHOTO_PACS_MAX_CONVERSIONS", max_conversions),
        ("PHOTO_PACS_LOCAL_RESIZE_MAX", "0"),
    ]);
    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|s| {
        let phones: Vec<_> = (0..4)
            .map(|i| {
                let (gw, barrier) = (&gw, &barrier);
                s.spawn(move || {
                    let id = format!("LIMIT{i}");
                    let images: Vec<(&str, Vec<u8>)> = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
                        .map(|n| (n, photo.to_vec()))
                        .into();
                    barrier.wait();
                    client()
                        .post(gw.url("/api/studies"))
                        .multipart(common::form(&[("patientId", &id)], &images))
                        .send()
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        for phone in phones {
            assert_eq!(phone.join().unwrap(), 200);
        }
    });
    let metrics = gw.metrics();
    assert!(
        metrics.contains("photo_pacs_conversions_running 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"photo_pacs_instances_total{result="success"} 16"#),
        "{metrics}"
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("photo_pacs_conversions_peak "))
        .unwrap_or_else(|| panic!("no conversions_peak in {metrics}"))
        .to_string()
}

#[test]
fn conversions_never_exceed_the_limit_however_many_phones_upload() {
    // Big enough that converting it (debug build) takes tens of milliseconds, so
    // conversions from phones uploading at once really overlap when nothing holds them back.
    let photo = common::patterned_jpeg(1600, 1200);
    // The control: the same load with room for four shows that the uploads do overlap, so
    // the limit of one below is what holds the peak, not the load being serial anyway.
    let unlimited = conversions_peak_with("4", &photo);
    println!("16 photos from 4 phones at once: peak {unlimited} with MAX_CONVERSIONS=4");
    assert!(
        unlimited.parse::<u32>().unwrap() >= 2,
        "the control never overlapped conversions (peak {unlimited}): the test cannot show a limit"
    );
    let limited = conversions_peak_with("1", &photo);
    println!("the same with MAX_CONVERSIONS=1: peak {limited}");
    assert_eq!(
        limited, "1",
        "16 photos from 4 phones at once with MAX_CONVERSIONS=1"
    );
}
