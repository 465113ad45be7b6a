//! Bad input to `POST /api/studies`: each gets a 4xx naming the problem, never a 5xx, and
//! nothing of a refused upload stays on disk. Prints the table of cases (run with
//! `--nocapture` to see it).

mod common;

use common::*;
use reqwest::blocking::RequestBuilder;
use serde_json::Value;

const BOUNDARY: &str = "----photo-pacs-test-boundary";

enum Part<'a> {
    Text(&'a str, &'a [u8]),
    File(&'a str, Vec<u8>),
}

fn multipart(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match p {
            Part::Text(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                );
                body.extend_from_slice(value);
            }
            Part::File(name, bytes) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"images[]\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                        .as_bytes(),
                );
                body.extend_from_slice(bytes);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

struct Case<'a> {
    name: &'a str,
    status: u16,
    code: &'a str,
    field: Option<&'a str>,
    request: Box<dyn Fn(&Gateway) -> RequestBuilder + 'a>,
}

fn upload(parts: Vec<Part<'static>>) -> Box<dyn Fn(&Gateway) -> RequestBuilder> {
    let body = multipart(&parts);
    Box::new(move |gw: &Gateway| {
        client()
            .post(gw.url("/api/studies"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body.clone())
    })
}

fn raw(
    content_type: Option<&'static str>,
    body: Vec<u8>,
) -> Box<dyn Fn(&Gateway) -> RequestBuilder> {
    Box::new(move |gw: &Gateway| {
        let mut r = client().post(gw.url("/api/studies")).body(body.clone());
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        r
    })
}

fn id() -> Part<'static> {
    Part::Text("patientId", b"P-001")
}

fn photo() -> Part<'static> {
    Part::File("photo.jpg", read_data("pillow_hopper.jpg"))
}

fn case<'a>(
    name: &'a str,
    status: u16,
    code: &'a str,
    field: Option<&'a str>,
    request: Box<dyn Fn(&Gateway) -> RequestBuilder + 'a>,
) -> Case<'a> {
    Case {
        name,
        status,
        code,
        field,
        request,
    }
}

/// Sends `head` as-is on a fresh connection and reads one answer.
fn raw_http(gw: &Gateway, head: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let addr = gw.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((headers, body)) = text.split_once("\r\n\r\n") {
            let len = headers
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn every_bad_input_gets_a_clear_4xx_and_leaves_nothing_behind() {
    // Small limits so the size cases stay small: 1 MB per image, 2 MB per request.
    let (dir, gw) = gateway(&[
        ("PHOTO_PACS_MAX_UPLOAD_MB", "1"),
        ("PHOTO_PACS_MAX_REQUEST_MB", "2"),
    ]);
    let long = "X".repeat(65);
    let long: &'static str = Box::leak(long.into_boxed_str());
    let jpeg = read_data("pillow_hopper.jpg");
    let half_jpeg = jpeg[..jpeg.len() / 2].to_vec();
    let png = read_data("pillow_transparent.png");
    let half_png = png[..png.len() / 2].to_vec();
    let mut cut_body = multipart(&[id(), photo()]);
    cut_body.truncate(cut_body.len() - 40);
    let oversize = vec![0xAB_u8; 1024 * 1024 + 1];
    let big_text = vec![b'a'; 17 * 1024];
    let big_text: &'static [u8] = Box::leak(big_text.into_boxed_slice());
    let many: Vec<Part> = std::iter::once(id())
        .chain((0..51).map(|_| photo()))
        .collect();
    let three_near_limit: Vec<Part> = std::iter::once(id())
        .chain((0..3).map(|_| Part::File("big.jpg", vec![0xCD; 900 * 1024])))
        .collect();

    let ct = "multipart/form-data; boundary=----photo-pacs-test-boundary";
    let cases = vec![
        case(
            "missing patientId",
            400,
            "VALIDATION_ERROR",
            Some("patientId"),
            upload(vec![photo()]),
        ),
        case(
            "blank patientId",
            400,
            "VALIDATION_ERROR",
            Some("patientId"),
            upload(vec![Part::Text("patientId", b"   "), photo()]),
        ),
        case(
            "65-character patientId",
            400,
            "VALIDATION_ERROR",
            Some("patientId"),
            upload(vec![Part::Text("patientId", long.as_bytes()), photo()]),
        ),
        case(
            "backslash in patientId",
            400,
            "VALIDATION_ERROR",
            Some("patientId"),
            upload(vec![Part::Text("patientId", b"A\\B"), photo()]),
        ),
        case(
            "line break in patientId",
            400,
            "VALIDATION_ERROR",
            Some("patientId"),
            upload(vec![Part::Text("patientId", b"A\nB"), photo()]),
        ),
        case(
            "patientId sent twice",
            400,
            "VALIDATION_ERROR",
            Some("patientId"),
            upload(vec![id(), id(), photo()]),
        ),
        case(
            "65-character patientName",
            400,
            "VALIDATION_ERROR",
            Some("patientName"),
            upload(vec![
                id(),
                Part::Text("patientName", long.as_bytes()),
                photo(),
            ]),
        ),
        case(
            "patientName with 4 '=' groups",
            400,
            "VALIDATION_ERROR",
            Some("patientName"),
            upload(vec![id(), Part::Text("patientName", b"a=b=c=d"), photo()]),
        ),
        case(
            "birthDate 15/01/1990",
            400,
            "VALIDATION_ERROR",
            Some("birthDate"),
            upload(vec![id(), Part::Text("birthDate", b"15/01/1990"), photo()]),
        ),
        case(
            "birthDate in the future",
            400,
            "VALIDATION_ERROR",
            Some("birthDate"),
            upload(vec![id(), Part::Text("birthDate", b"2999-01-01"), photo()]),
        ),
        case(
            "birthDate Feb 30",
            400,
            "VALIDATION_ERROR",
            Some("birthDate"),
            upload(vec![id(), Part::Text("birthDate", b"2023-02-30"), photo()]),
        ),
        case(
            "sex X",
            400,
            "VALIDATION_ERROR",
            Some("sex"),
            upload(vec![id(), Part::Text("sex", b"X"), photo()]),
        ),
        case(
            "examDateTime 'yesterday'",
            400,
            "VALIDATION_ERROR",
            Some("examDateTime"),
            upload(vec![
                id(),
                Part::Text("examDateTime", b"yesterday"),
                photo(),
            ]),
        ),
        case(
            "65-character examDescription",
            400,
            "VALIDATION_ERROR",
            Some("examDescription"),
            upload(vec![
                id(),
                Part::Text("examDescription", long.as_bytes()),
                photo(),
            ]),
        ),
        case(
            "patientName not UTF-8",
            400,
            "VALIDATION_ERROR",
            Some("patientName"),
            upload(vec![id(), Part::Text("patientName", b"\xff\xfe"), photo()]),
        ),
        case(
            "text field of 17 KB",
            400,
            "VALIDATION_ERROR",
            Some("examDescription"),
            upload(vec![id(), Part::Text("examDescription", big_text), photo()]),
        ),
        case(
            "0 images",
            400,
            "VALIDATION_ERROR",
            Some("images[]"),
            upload(vec![id()]),
        ),
        case(
            "51 images",
            400,
            "VALIDATION_ERROR",
            Some("images[]"),
            upload(many),
        ),
        case(
            "text file as image",
            400,
            "VALIDATION_ERROR",
            Some("images[]"),
            upload(vec![
                id(),
                Part::File("notes.txt", b"just some notes".to_vec()),
            ]),
        ),
        case(
            "0-byte file",
            400,
            "VALIDATION_ERROR",
            Some("images[]"),
            upload(vec![id(), Part::File("empty.jpg", Vec::new())]),
        ),
        case(
            "truncated JPEG (Pixel Ultra HDR)",
            400,
            "VALIDATION_ERROR",
            Some("images[]"),
            upload(vec![
                id(),
                Part::File("u.jpg", read_data("pillow_ultrahdr.jpg")),
            ]),
        ),
        case(
            "JPEG cut in half, as image 2",
            400,
            "VALIDATION_ERROR",
            Some("images[]"),
            upload(vec![id(), photo(), Part::File("half.jpg", half_jpeg)]),
        ),
        case(
            "PNG cut in half",
            400,
            "VALIDATION_ERROR",
            Some("images[]"),
            upload(vec![id(), Part::File("half.png", half_png)]),
        ),
        case(
            "HEIC from an iPhone",
            400,
            "VALIDATION_ERROR",
            Some("images[]"),
            upload(vec![
                id(),
                Part::File("IMG_0001.HEIC", read_data("pillow_hopper.heif")),
            ]),
        ),
        case(
            "AVIF",
            400,
            "VALIDATION_ERROR",
            Some("images[]"),
            upload(vec![
                id(),
                Part::File("a.avif", read_data("pillow_exif.avif")),
            ]),
        ),
        case(
            "image over MAX_UPLOAD_MB",
            413,
            "PAYLOAD_TOO_LARGE",
            Some("images[]"),
            upload(vec![id(), Part::File("big.jpg", oversize)]),
        ),
        case(
            "request over MAX_REQUEST_MB",
            413,
            "PAYLOAD_TOO_LARGE",
            None,
            upload(three_near_limit),
        ),
        case(
            "multipart without boundary",
            400,
            "VALIDATION_ERROR",
            None,
            raw(Some("multipart/form-data"), multipart(&[id(), photo()])),
        ),
        case(
            "Content-Type application/json",
            400,
            "VALIDATION_ERROR",
            None,
            raw(
                Some("application/json"),
                br#"{"patientId":"P-001"}"#.to_vec(),
            ),
        ),
        case(
            "no Content-Type",
            400,
            "VALIDATION_ERROR",
            None,
            raw(None, multipart(&[id(), photo()])),
        ),
        case(
            "body is not multipart",
            400,
            "VALIDATION_ERROR",
            None,
            raw(Some(ct), b"hello world".to_vec()),
        ),
        case(
            "multipart cut off before its end",
            400,
            "VALIDATION_ERROR",
            None,
            raw(Some(ct), cut_body),
        ),
    ];

    println!("| # | input | status | code | field |");
    println!("|---|---|---|---|---|");
    let mut failures = Vec::new();
    for (n, c) in cases.iter().enumerate() {
        let resp = match (c.request)(&gw).send() {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: request failed: {e}", c.name));
                continue;
            }
        };
        let status = resp.status().as_u16();
        let doc: Value = resp.json().unwrap_or(Value::Null);
        let code = doc["code"].as_str().unwrap_or("-");
        let field = doc["field"].as_str();
        println!(
            "| {} | {} | {status} | {code} | {} |",
            n + 1,
            c.name,
            field.unwrap_or("-")
        );
        if status >= 500 {
            failures.push(format!("{}: server error {status} {doc}", c.name));
        }
        if status != c.status || code != c.code || (c.field.is_some() && field != c.field) {
            failures.push(format!(
                "{}: expected {} {} {:?}, got {status} {doc}",
                c.name, c.status, c.code, c.field
            ));
        }
        let message = doc["message"].as_str().unwrap_or("");
        if message.is_empty() {
            failures.push(format!("{}: no message", c.name));
        }
    }
    // A declared length over the limit is refused before a byte of the body is read.
    let (status, doc) = raw_http(
        &gw,
        &format!(
            "POST /api/studies HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: 999999999\r\n\r\n"
        ),
    );
    println!(
        "| {} | Content-Length of 1 GB declared | {status} | {} | - |",
        cases.len() + 1,
        doc["code"].as_str().unwrap_or("-")
    );
    if status != 413 || doc["code"] != "PAYLOAD_TOO_LARGE" {
        failures.push(format!("declared Content-Length: got {status} {doc}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Image errors say which image and what to do about it.
    let heic: Value = upload(vec![
        id(),
        Part::File("x.heic", read_data("pillow_hopper.heif")),
    ])(&gw)
    .send()
    .unwrap()
    .json()
    .unwrap();
    let msg = heic["message"].as_str().unwrap();
    assert!(
        msg.contains("HEIC") && msg.contains("Most Compatible"),
        "{msg}"
    );
    let second: Value = upload(vec![id(), photo(), Part::File("t.txt", b"text".to_vec())])(&gw)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(second["index"], 2, "{second}");

    // Still serving, and nothing of the refused uploads is left on disk.
    assert_eq!(
        client().get(gw.url("/healthz")).send().unwrap().status(),
        200
    );
    let left = study_folders(dir.path());
    assert!(left.is_empty(), "refused uploads left {left:?}");
}

#[test]
fn a_name_the_configured_charset_cannot_hold_is_refused_naming_the_field() {
    let (_dir, gw) = gateway(&[("PHOTO_PACS_LOCAL_CHARSET", "ISO_IR 100")]);
    let resp = upload(vec![
        id(),
        Part::Text("patientName", "王大明".as_bytes()),
        photo(),
    ])(&gw)
    .send()
    .unwrap();
    assert_eq!(resp.status(), 400);
    let doc: Value = resp.json().unwrap();
    assert_eq!(doc["field"], "patientName");
    assert!(doc["message"].as_str().unwrap().contains("ISO_IR 100"));
    let ok = upload(vec![
        id(),
        Part::Text("patientName", "Müller^Jörg".as_bytes()),
        photo(),
    ])(&gw)
    .send()
    .unwrap();
    assert_eq!(ok.status(), 200);
}
