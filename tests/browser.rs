//! The PWA in a real browser: Debian's Chromium driven by playwright-core
//! (tests/browser/scenarios.mjs) against the real binary.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::storescp::{StoreScp, StoreScpConfig, dcmtk_tool, free_port, missing_peer};
use common::*;

/// node, and the scenario script with its playwright-core installed, or a skip/CI failure.
fn runner() -> Option<(PathBuf, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let node = peer("node", "nodejs")?;
    if !Path::new("/usr/bin/chromium").exists() {
        return missing_peer("/usr/bin/chromium", "chromium");
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        return missing_peer("playwright-core (npm ci --prefix tests/browser)", "npm");
    }
    Some((node, dir.join("scenarios.mjs")))
}

fn scenario(name: &str, gw: &Gateway, out: Option<&Path>) {
    scenario_at(name, gw, &gw.base, out);
}

/// Runs a scenario against `base` (the gateway, or a proxy in front of it).
fn scenario_at(name: &str, gw: &Gateway, base: &str, out: Option<&Path>) {
    let Some(child) = start_scenario(name, base, out) else {
        return;
    };
    finish_scenario(name, gw, child);
}

fn start_scenario(name: &str, base: &str, out: Option<&Path>) -> Option<std::process::Child> {
    start_scenario_env(name, base, out, &[])
}

/// Like [`start_scenario`], with `env` for the script (other gateways, the phone's clock).
fn start_scenario_env(
    name: &str,
    base: &str,
    out: Option<&Path>,
    env: &[(&str, &str)],
) -> Option<std::process::Child> {
    let (node, script) = runner()?;
    let mut cmd = Command::new(node);
    cmd.arg(script)
        .arg(name)
        .arg(base)
        .envs(env.iter().copied());
    if let Some(out) = out {
        cmd.arg(out);
    }
    Some(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run node"),
    )
}

fn finish_scenario(name: &str, gw: &Gateway, child: std::process::Child) {
    let run = child.wait_with_output().expect("run node");
    assert!(
        run.status.success(),
        "browser scenario {name} failed:\n{}\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
        gw.logs()
    );
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn fill_attach_send_shows_progress_and_success_then_clears() {
    let (_dir, gw) = gateway(&[]);
    scenario("send", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn send_waits_for_id_and_image_and_shows_the_servers_field_error() {
    let (_dir, gw) = gateway(&[]);
    scenario("disabled", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn a_removed_thumbnail_is_not_sent_and_a_double_tap_sends_once() {
    let (_dir, gw) = gateway(&[]);
    scenario("remove", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn settings_save_reload_echo_and_field_errors() {
    let (_dir, gw) = gateway(&[]);
    scenario("settings", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn the_dicomweb_card_shows_credentials_only_as_set_or_not() {
    let (_dir, gw) = gateway(&[
        ("PHOTO_PACS_PACS_BACKEND", "dicomweb"),
        (
            "PHOTO_PACS_DICOMWEB_BASE_URL",
            "http://127.0.0.1:9/dicom-web",
        ),
        ("PHOTO_PACS_DICOMWEB_AUTH_METHOD", "basic"),
        ("PHOTO_PACS_DICOMWEB_USERNAME", "nurse"),
        ("PHOTO_PACS_DICOMWEB_PASSWORD", "s3cret-CANARY"),
    ]);
    scenario("dicomweb", &gw, None);
    assert!(!gw.logs().contains("CANARY"));
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn pin_asked_once_and_settings_behind_the_admin_login() {
    let (_dir, gw) = gateway(&[
        ("PHOTO_PACS_ADMIN_PASSWORD", "admin-pass-123"),
        ("PHOTO_PACS_UPLOAD_PIN", "pin-2468"),
    ]);
    scenario("protected", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn language_and_theme_survive_a_reload() {
    let (_dir, gw) = gateway(&[]);
    scenario("prefs", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn no_patient_value_is_left_in_browser_storage() {
    let (_dir, gw) = gateway(&[]);
    scenario("storage", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn the_cached_shell_says_when_the_gateway_is_unreachable() {
    let (_dir, gw) = gateway(&[]);
    scenario("offline", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn labels_and_touch_targets_on_a_360_px_phone() {
    let (_dir, gw) = gateway(&[]);
    scenario("layout", &gw, None);
}

/// The demo worklist and patient lookup on, and wristband codes such as `PID:DEMO001;V1`.
const PATIENT_ENV: &[(&str, &str)] = &[
    ("PHOTO_PACS_WORKLIST_ENABLED", "true"),
    ("PHOTO_PACS_PATIENT_LOOKUP_ENABLED", "true"),
    ("PHOTO_PACS_PATIENT_ID_PATTERN", "^PID:([^;]+)"),
];

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn labels_and_touch_targets_with_todays_list_on_a_360_px_phone() {
    let (_dir, gw) = gateway(PATIENT_ENV);
    scenario("layout", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn a_keyboard_wedge_scan_fills_the_id_looks_it_up_and_sends_nothing() {
    // Scanner bursts are told apart by their key gaps (< 50 ms): not beside 12-megapixel
    // photos being made and decoded.
    let _cpu = heavy_cpu();
    let (_dir, gw) = gateway(PATIENT_ENV);
    scenario("wedge", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn code_128_and_qr_wristband_photos_are_decoded_by_the_decoder_loaded_on_demand() {
    let (_dir, gw) = gateway(PATIENT_ENV);
    scenario("scan", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn live_scanning_plays_the_camera_in_a_dialog_and_cancel_stops_it() {
    let (_dir, gw) = gateway(PATIENT_ENV);
    scenario("livescan", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn todays_list_is_searchable_and_a_picked_entry_locks_the_patient_until_edit() {
    let (_dir, gw) = gateway(PATIENT_ENV);
    scenario("worklist", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn todays_list_behind_the_upload_pin_comes_once_the_pin_is_typed() {
    let mut env = PATIENT_ENV.to_vec();
    env.push(("PHOTO_PACS_UPLOAD_PIN", "pin-2468"));
    let (_dir, gw) = gateway(&env);
    scenario("worklistpin", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn a_study_sent_from_todays_list_carries_its_entry_and_leaves_nothing_in_the_browser() {
    let (_dir, gw) = gateway(PATIENT_ENV);
    scenario("worklistsend", &gw, None);
    if runner().is_none() {
        return;
    }
    assert!(
        !gw.logs().contains("DEMO002") && !gw.logs().contains("小明"),
        "patient data in the log:\n{}",
        gw.logs()
    );
}

#[test]
#[cfg_attr(
    any(missing_peer = "browser", missing_peer = "dcmtk"),
    ignore = "needs browser and dcmtk: node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser); dcmtk is not installed (apt-get install dcmtk)"
)]
fn photos_sent_from_the_page_reach_storescp_by_c_store() {
    let Some(storescp) = dcmtk_tool("storescp") else {
        return;
    };
    let scp = StoreScp::start(&storescp, StoreScpConfig::new("STORESCP").tcp_nodelay(true));
    let (_dir, gw) = gateway_env(&cstore_env(scp.port(), "STORESCP", &[]));
    scenario("send", &gw, None);
    if runner().is_some() {
        let files = scp.wait_for_files(2, Duration::from_secs(10));
        assert_eq!(files.len(), 2, "{}", scp.logs());
    }
}

/// What dcmdump says of one received object, and the text of its top-level element `tag`
/// (with any items under it), or "" when it has none.
struct Dump(String);

impl Dump {
    fn read(dcmdump: &Path, file: &Path) -> Dump {
        let out = Command::new(dcmdump).arg(file).output().unwrap();
        assert!(out.status.success(), "dcmdump {}", file.display());
        Dump(String::from_utf8(out.stdout).expect("dcmdump prints UTF-8 text as UTF-8"))
    }

    fn element(&self, tag: &str) -> String {
        let mut lines = self.0.lines().skip_while(|l| !l.starts_with(tag));
        let Some(first) = lines.next() else {
            return String::new();
        };
        let nested = lines.take_while(|l| l.starts_with(' '));
        std::iter::once(first)
            .chain(nested)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The value of a top-level element, "" when absent or empty.
    fn value(&self, tag: &str) -> String {
        let line = self.element(tag);
        line.split_once('[')
            .and_then(|(_, r)| r.split_once(']'))
            .map_or(String::new(), |(v, _)| v.to_string())
    }
}

#[test]
#[cfg_attr(
    any(missing_peer = "browser", missing_peer = "dcmtk"),
    ignore = "needs browser and dcmtk: node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser); dcmtk is not installed (apt-get install dcmtk)"
)]
fn body_sites_and_sides_picked_in_both_languages_reach_the_dicom_objects() {
    let (Some(storescp), Some(dcmdump)) = (dcmtk_tool("storescp"), dcmtk_tool("dcmdump")) else {
        return;
    };
    let scp = StoreScp::start(&storescp, StoreScpConfig::new("STORESCP").tcp_nodelay(true));
    let (_dir, gw) = gateway_env(&cstore_env(scp.port(), "STORESCP", &[]));
    scenario("sites", &gw, None);
    if runner().is_none() {
        return;
    }
    let files = scp.wait_for_files(6, Duration::from_secs(10));
    assert_eq!(files.len(), 6, "{}", scp.logs());
    let mut dumps: Vec<Dump> = files.iter().map(|f| Dump::read(&dcmdump, f)).collect();
    dumps.sort_by_key(|d| {
        let number: u32 = d.value("(0020,0013)").trim().parse().unwrap_or(0);
        (d.value("(0010,0020)"), number)
    });
    // (Patient ID, region code and meaning, side code, Image Laterality, Image Comments),
    // in image order; the page's Chinese and English both send the region keys.
    let expected = [
        (
            "SITE-EN",
            Some(("72696002", "Knee")),
            Some("51440002"),
            "B",
            "medial side",
        ),
        ("SITE-EN", Some(("816094009", "Chest")), None, "U", ""),
        ("SITE-EN", None, None, "U", ""),
        (
            "SITE-ZH",
            Some(("14975008", "Forearm")),
            Some("7771000"),
            "L",
            "傷口甲",
        ),
        (
            "SITE-ZH",
            Some(("85562004", "Hand")),
            Some("24028007"),
            "R",
            "",
        ),
        ("SITE-ZH", Some(("69536005", "Head")), None, "U", ""),
    ];
    for (dump, (id, region, side, laterality, note)) in dumps.iter().zip(expected) {
        let what = format!("{id}, image {}:\n{}", dump.value("(0020,0013)"), dump.0);
        assert_eq!(dump.value("(0010,0020)"), id, "{what}");
        let anatomy = dump.element("(0008,2218)");
        match region {
            Some((code, meaning)) => {
                for part in [format!("[{code}]"), "[SCT]".into(), format!("[{meaning}]")] {
                    assert!(
                        anatomy.contains(&part),
                        "{part} in the Anatomic Region Sequence of {what}"
                    );
                }
            }
            None => assert_eq!(anatomy, "", "no Anatomic Region Sequence in {what}"),
        }
        let modifier = anatomy
            .split_once("(0008,2220)")
            .map_or(String::new(), |(_, m)| m.to_string());
        match side {
            Some(code) => assert!(
                modifier.contains(&format!("[{code}]")),
                "side {code} in the Anatomic Region Modifier Sequence of {what}"
            ),
            None => assert!(
                !modifier.contains("(0008,0100)"),
                "no side in the Anatomic Region Sequence of {what}"
            ),
        }
        assert_eq!(
            dump.value("(0020,0062)"),
            laterality,
            "Image Laterality of {what}"
        );
        assert_eq!(dump.value("(0020,4000)"), note, "Image Comments of {what}");
    }
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn phone_screenshots_in_both_languages() {
    let (dir, gw) = gateway(&[("PHOTO_PACS_WORKLIST_ENABLED", "true")]);
    let out = dir.path().join("screenshots");
    scenario("screenshots", &gw, Some(&out));
    if runner().is_none() {
        return;
    }
    for view in ["today", "picked", "home", "sites", "sent", "settings"] {
        for lang in ["en", "zh-TW"] {
            let png = std::fs::read(out.join(format!("{view}-{lang}.png"))).unwrap();
            assert!(
                png.starts_with(b"\x89PNG") && png.len() > 10_000,
                "{view}-{lang}.png"
            );
            let img = image::load_from_memory(&png).unwrap();
            assert_eq!((img.width(), img.height()), (390, 844));
        }
    }
}

#[test]
#[cfg_attr(
    any(missing_peer = "browser", missing_peer = "dcmtk"),
    ignore = "needs browser and dcmtk: node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser); dcmtk is not installed (apt-get install dcmtk)"
)]
fn a_study_queued_while_the_pacs_is_down_shows_as_saved_then_as_in_the_pacs() {
    let Some(storescp) = dcmtk_tool("storescp") else {
        return;
    };
    let port = free_port();
    let (_dir, gw) = gateway_env(&cstore_env(
        port,
        "STORESCP",
        &[
            ("PHOTO_PACS_DELIVERY_WAIT_S", "1"),
            ("PHOTO_PACS_RETRY_MAX_S", "2"),
        ],
    ));
    let Some(child) = start_scenario("queued", &gw.base, None) else {
        return;
    };
    // The PACS comes back once the page has the study queued.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !gw.metrics().contains("photo_pacs_outbox_queued 1\n") {
        assert!(
            Instant::now() < deadline,
            "no study was queued:\n{}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let scp = StoreScp::start(
        &storescp,
        StoreScpConfig::new("STORESCP").port(port).tcp_nodelay(true),
    );
    finish_scenario("queued", &gw, child);
    assert_eq!(scp.wait_for_files(2, Duration::from_secs(10)).len(), 2);
}

/// A loopback proxy in front of the gateway that, once, relays a whole `POST
/// /api/studies` request and then drops the connection a few bytes into the answer's body:
/// a phone whose Wi-Fi failed just after the upload.
struct CuttingProxy {
    port: u16,
    cuts: Arc<AtomicUsize>,
}

fn cutting_proxy(upstream: String) -> CuttingProxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cuts = Arc::new(AtomicUsize::new(0));
    let counter = cuts.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let armed = Arc::new(AtomicBool::new(false));
            let (c_in, s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let up_armed = armed.clone();
            // Phone to gateway: watch for the upload's request line.
            std::thread::spawn(move || {
                let (mut from, mut to) = (c_in, s_out);
                let mut buf = vec![0u8; 64 * 1024];
                let mut tail: Vec<u8> = Vec::new();
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    tail.extend_from_slice(&buf[..n]);
                    if tail.windows(17).any(|w| w == b"POST /api/studies") {
                        up_armed.store(true, Ordering::SeqCst);
                    }
                    let keep = tail.len().saturating_sub(16);
                    tail.drain(..keep);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(Shutdown::Write);
            });
            let counter = counter.clone();
            // Gateway to phone: the first answer to an upload is dropped with the connection.
            std::thread::spawn(move || {
                let (mut from, mut to) = (server, client);
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if armed.load(Ordering::SeqCst)
                        && counter
                            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                            .is_ok()
                    {
                        // The answer's head and a few bytes of its body, then nothing: a
                        // browser retries on its own only when no answer has begun, and
                        // takes a cut head for a whole one.
                        let head = buf[..n]
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .map_or(0, |i| i + 4);
                        let _ = to.write_all(&buf[..(head + 5).min(n)]);
                        let _ = to.flush();
                        std::thread::sleep(Duration::from_millis(50));
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                        return;
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(Shutdown::Write);
            });
        }
    });
    CuttingProxy { port, cuts }
}

#[test]
#[cfg_attr(
    any(missing_peer = "browser", missing_peer = "dcmtk"),
    ignore = "needs browser and dcmtk: node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser); dcmtk is not installed (apt-get install dcmtk)"
)]
fn an_answer_lost_on_the_way_back_is_asked_for_again_and_one_study_arrives() {
    let Some(storescp) = dcmtk_tool("storescp") else {
        return;
    };
    let scp = StoreScp::start(&storescp, StoreScpConfig::new("STORESCP").tcp_nodelay(true));
    let (_dir, gw) = gateway_env(&cstore_env(scp.port(), "STORESCP", &[]));
    let proxy = cutting_proxy(gw.base.trim_start_matches("http://").to_string());
    scenario_at(
        "dropped",
        &gw,
        &format!("http://127.0.0.1:{}", proxy.port),
        None,
    );
    if runner().is_none() {
        return;
    }
    assert_eq!(
        proxy.cuts.load(Ordering::SeqCst),
        1,
        "the answer was cut once"
    );
    std::thread::sleep(Duration::from_millis(500));
    let files = scp.received_files();
    assert_eq!(files.len(), 2, "one study of two photos: {files:?}");
    let metrics = gw.metrics();
    assert!(
        metrics.contains(r#"photo_pacs_studies_total{result="accepted"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"photo_pacs_http_requests_total{method="POST",route="/api/studies",status="200"} 2"#
        ),
        "the upload came twice: {metrics}"
    );
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn the_outbox_card_lists_a_waiting_study_masked_and_deletes_it() {
    // C-STORE to a port nothing listens on: the study waits in the outbox.
    let (_dir, gw) = gateway_env(&cstore_env(
        free_port(),
        "PACS",
        &[("PHOTO_PACS_DELIVERY_WAIT_S", "1")],
    ));
    let resp = upload(
        &gw,
        &[("patientId", "CANARY-ID-4711")],
        &[
            ("a.jpg", "pillow_hopper.jpg"),
            ("b.jpg", "pillow_flower.jpg"),
        ],
    );
    assert_eq!(resp.status(), 202);
    scenario("outbox", &gw, None);
    if runner().is_none() {
        return;
    }
    assert_eq!(gw.get_json("/api/outbox")["studies"], serde_json::json!([]));
    assert!(
        gw.logs().lines().any(|l| l.contains("deleted")),
        "{}",
        gw.logs()
    );
}

/// The admin password scenarios.mjs types (ADMIN_PASSWORD there).
const ADMIN_PASSWORD: &str = "admin-pass-123";

#[test]
#[cfg_attr(
    any(missing_peer = "browser", missing_peer = "faketime"),
    ignore = "needs browser and faketime: node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser); libfaketime is missing (apt-get install faketime)"
)]
fn the_status_view_shows_the_boxs_facts_and_warns_of_its_clock_3_days_behind_in_both_languages() {
    let Some(mut env) = three_days_behind() else {
        return;
    };
    env.push(("PHOTO_PACS_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()));
    let (_dir, gw) = gateway_env(&env);
    scenario("status", &gw, None);
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn the_update_view_says_updates_are_not_available_on_the_mock_box_in_both_languages() {
    let (_dir, gw) = gateway(&[
        ("PHOTO_PACS_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("PHOTO_PACS_RELEASE_FILE", "/nonexistent/photo-pacs-release"),
    ]);
    scenario("update", &gw, None);
}

#[test]
#[cfg_attr(
    any(
        missing_peer = "browser",
        missing_peer = "rauc",
        missing_peer = "squashfs",
        missing_peer = "openssl",
        missing_peer = "dbus"
    ),
    ignore = "needs the browser (chromium, playwright-core) and rauc, squashfs-tools, e2fsprogs, openssl, dbus-daemon (Debian packages)"
)]
fn an_update_uploaded_installed_and_its_reboot_planned_through_the_page() {
    use common::rauc::{COMPATIBLE, Lab, RaucService, has_device_mapper};
    let lab = Lab::new();
    let svc = RaucService::start(&lab);
    let version = "0.3.0+20261201000000";
    let bundle = lab.bundle("good", version, COMPATIBLE, "verity", &lab.trusted);
    let dir = tempfile::tempdir().unwrap();
    // An install of an earlier boot's session is still waiting for its reboot.
    let updates = dir.path().join("data/updates");
    std::fs::create_dir_all(&updates).unwrap();
    let this_boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    std::fs::write(
        updates.join("state.json"),
        serde_json::json!({"installed": {"version": "0.2.9", "slot": "B", "fromSlot": "A",
            "at": "2026-11-30T02:00:00Z", "bootId": this_boot.trim()}})
        .to_string(),
    )
    .unwrap();
    let mut env = lab.env_with(ADMIN_PASSWORD);
    env.push(("PHOTO_PACS_DBUS_ADDRESS", svc.address.clone()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = Gateway::start_in(dir.path(), &pairs);
    let expect = if has_device_mapper() {
        "installed"
    } else {
        "failed"
    };
    let bundle_path = bundle.display().to_string();
    let shot = std::env::var("UPDATE_SHOT").unwrap_or_default();
    let Some(child) = start_scenario_env(
        "updatelab",
        &gw.base,
        None,
        &[
            ("BUNDLE", &bundle_path),
            ("VERSION", version),
            ("EXPECT", expect),
            // A full-page screenshot there, to look at by hand.
            ("SHOT", &shot),
        ],
    ) else {
        return;
    };
    finish_scenario("updatelab", &gw, child);
    let request = dir.path().join("data/reboot-request");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !request.exists() {
        assert!(std::time::Instant::now() < deadline, "no reboot request");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn the_events_list_and_the_diagnostics_hold_no_patient_value_in_both_languages() {
    let (_dir, gw) = gateway(&[("PHOTO_PACS_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    scenario("events", &gw, None);
    if runner().is_none() {
        return;
    }
    assert!(
        !gw.logs().contains("CANARY"),
        "patient data in the log:\n{}",
        gw.logs()
    );
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn a_backup_restored_through_the_page_on_fresh_boxes_in_both_languages() {
    // The box backed up has an admin password (asked again for a backup with secrets); the
    // two fresh ones have none, as a box straight from `cargo run`.
    let (_a_dir, a) = gateway(&[("PHOTO_PACS_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let (_b_dir, b) = gateway(&[]);
    let (_c_dir, c) = gateway(&[]);
    let others = format!("{} {}", b.base, c.base);
    let Some(child) = start_scenario_env("backup", &a.base, None, &[("RESTORE_BASES", &others)])
    else {
        return;
    };
    let run = child.wait_with_output().expect("run node");
    assert!(
        run.status.success(),
        "browser scenario backup failed:\n{}\n{}\nfirst box:\n{}\nsecond box:\n{}\nthird box:\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
        a.logs(),
        b.logs(),
        c.logs()
    );
    // The restored upload PIN is on the third box, as a PIN: it asks for it.
    let answer = client()
        .post(c.url("/api/studies"))
        .multipart(form(
            &[("patientId", "P-PIN")],
            &[("a.jpg", read_data("pillow_hopper.jpg"))],
        ))
        .send()
        .unwrap();
    assert_eq!(answer.status(), 401, "{}", c.logs());
    assert!(
        !c.logs().contains("2468-1357") && !a.logs().contains("2468-1357"),
        "the PIN in a log"
    );
}

#[test]
#[cfg_attr(
    any(
        missing_peer = "browser",
        missing_peer = "dcmtk",
        missing_peer = "faketime"
    ),
    ignore = "needs browser, dcmtk and faketime: node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser); dcmtk is not installed (apt-get install dcmtk); libfaketime is missing (apt-get install faketime)"
)]
fn the_exam_time_comes_from_the_phones_clock_when_the_boxs_is_3_days_behind() {
    use chrono::{FixedOffset, SecondsFormat, Timelike, Utc};
    let (Some(storescp), Some(dcmdump)) = (dcmtk_tool("storescp"), dcmtk_tool("dcmdump")) else {
        return;
    };
    let Some(clock) = three_days_behind() else {
        return;
    };
    let scp = StoreScp::start(&storescp, StoreScpConfig::new("STORESCP").tcp_nodelay(true));
    let mut env = cstore_env(scp.port(), "STORESCP", &[]);
    env.extend(clock);
    let (_dir, gw) = gateway_env(&env);
    // The phone, in Taipei, two hours behind this machine's real time: neither the box's
    // clock nor this machine's could have given the objects their times.
    let phone = Utc::now().with_nanosecond(0).unwrap() - chrono::Duration::hours(2);
    let phone_time = phone.to_rfc3339_opts(SecondsFormat::Secs, true);
    let Some(child) =
        start_scenario_env("clienttime", &gw.base, None, &[("PHONE_TIME", &phone_time)])
    else {
        return;
    };
    finish_scenario("clienttime", &gw, child);
    let files = scp.wait_for_files(2, Duration::from_secs(10));
    assert_eq!(files.len(), 2, "{}", scp.logs());
    let mut dumps: Vec<Dump> = files.iter().map(|f| Dump::read(&dcmdump, f)).collect();
    dumps.sort_by_key(|d| d.value("(0010,0020)"));
    let taipei = FixedOffset::east_opt(8 * 3600).unwrap();
    let auto = phone.with_timezone(&taipei);
    // Manual: two hours before the phone's time, to the minute, as typed on the page.
    let manual = (phone - chrono::Duration::hours(2))
        .with_timezone(&taipei)
        .with_second(0)
        .unwrap();
    for (dump, (id, when)) in dumps
        .iter()
        .zip([("CLOCK-AUTO", auto), ("CLOCK-MANUAL", manual)])
    {
        let what = format!("{id}:\n{}", dump.0);
        assert_eq!(dump.value("(0010,0020)"), id, "{what}");
        assert_eq!(
            dump.value("(0008,0020)"),
            when.format("%Y%m%d").to_string(),
            "Study Date of {what}"
        );
        assert!(
            dump.value("(0008,0030)")
                .starts_with(&when.format("%H%M%S").to_string()),
            "Study Time {} of {what}",
            when.format("%H%M%S")
        );
        assert_eq!(
            dump.value("(0008,0201)"),
            "+0800",
            "Timezone Offset From UTC of {what}"
        );
    }
}

#[test]
#[cfg_attr(
    any(missing_peer = "browser", missing_peer = "faketime"),
    ignore = "needs browser and faketime: node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser); libfaketime is missing (apt-get install faketime)"
)]
fn admin_screenshots_in_both_languages() {
    let Some(mut env) = three_days_behind() else {
        return;
    };
    env.push(("PHOTO_PACS_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()));
    let (dir, gw) = gateway_env(&env);
    let out = dir.path().join("screenshots");
    scenario("adminshots", &gw, Some(&out));
    if runner().is_none() {
        return;
    }
    for view in ["status", "backup"] {
        for lang in ["en", "zh-TW"] {
            let png = std::fs::read(out.join(format!("{view}-{lang}.png"))).unwrap();
            let img = image::load_from_memory(&png).unwrap();
            assert_eq!((img.width(), img.height()), (390, 844), "{view}-{lang}.png");
        }
    }
}

/// Held by the tests that keep both cores busy (12-megapixel photos made, shrunk and
/// converted) and by those that time key presses, so that the two never run together.
fn heavy_cpu() -> std::sync::MutexGuard<'static, ()> {
    static CPU: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CPU.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The real photos phone_photos.py makes from Debian's mate-backgrounds (made once per
/// target folder), or a skip/CI failure when the wallpapers or Pillow are missing.
fn phone_photos() -> Option<PathBuf> {
    if !Path::new("/usr/share/backgrounds/mate/nature/Wood.jpg").exists() {
        return missing_peer("/usr/share/backgrounds/mate/nature", "mate-backgrounds");
    }
    let python = peer("python3", "python3")?;
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("phone-photos");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/phone_photos.py");
    let run = Command::new(python).arg(script).arg(&out).output().unwrap();
    assert!(
        run.status.success(),
        "phone_photos.py: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    Some(out)
}

/// What the browser sent on one connection.
type Recording = Arc<std::sync::Mutex<Vec<u8>>>;

/// A loopback proxy in front of the gateway that keeps every byte the browser sends, one
/// buffer per connection.
struct RecordingProxy {
    port: u16,
    sent: Arc<std::sync::Mutex<Vec<Recording>>>,
}

impl RecordingProxy {
    fn start(upstream: String) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let all = sent.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let record: Recording = Arc::new(std::sync::Mutex::new(Vec::new()));
                all.lock().unwrap().push(record.clone());
                let (c_in, s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let (mut from, mut to) = (c_in, s_out);
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let (mut from, mut to) = (server, client);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        });
        RecordingProxy { port, sent }
    }

    /// The bytes of the upload (`POST /api/studies`, up to the connection's next request)
    /// whose form carries `marker` (a Patient ID). Should the browser have sent it twice (it
    /// does, by itself, when the box closed an idle connection just as the upload began on
    /// it), the longer: the one that got through.
    fn upload(&self, marker: &str) -> Vec<u8> {
        const POST: &[u8] = b"POST /api/studies";
        let mut found: Vec<Vec<u8>> = Vec::new();
        for record in self.sent.lock().unwrap().iter() {
            let bytes = record.lock().unwrap();
            let starts: Vec<usize> = find_all(&bytes, POST);
            for (i, &start) in starts.iter().enumerate() {
                let end = starts.get(i + 1).copied().unwrap_or(bytes.len());
                let upload = &bytes[start..end];
                if find_all(upload, marker.as_bytes()).len() == 1 {
                    found.push(upload.to_vec());
                }
            }
        }
        found
            .into_iter()
            .max_by_key(Vec::len)
            .unwrap_or_else(|| panic!("no upload for {marker}"))
    }
}

/// Runs a scenario with the phone photos through a [`RecordingProxy`], which it returns.
fn recorded_scenario(name: &str, gw: &Gateway, photos: &Path) -> Option<RecordingProxy> {
    let proxy = RecordingProxy::start(gw.base.trim_start_matches("http://").to_string());
    let base = format!("http://127.0.0.1:{}", proxy.port);
    let env = [("PHONE_PHOTOS", photos.to_str().unwrap())];
    let child = start_scenario_env(name, &base, None, &env)?;
    finish_scenario(name, gw, child);
    Some(proxy)
}

/// Where `needle` starts in `hay`, every time.
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return Vec::new();
    }
    (0..=hay.len() - needle.len())
        .filter(|&i| hay[i] == needle[0] && &hay[i..i + needle.len()] == needle)
        .collect()
}

/// One received object: Patient ID, Instance Number, size, RGB pixels and its lossy
/// compression attributes.
struct Received {
    patient: String,
    number: u32,
    columns: u32,
    rows: u32,
    rgb: Vec<u8>,
    lossy: String,
    methods: String,
}

fn read_received(file: &Path) -> Received {
    use dicom_dictionary_std::tags;
    let obj = dicom_object::open_file(file).unwrap();
    let text = |tag| {
        obj.element_opt(tag)
            .unwrap()
            .map(|e| e.to_str().unwrap().trim().to_string())
            .unwrap_or_default()
    };
    let int = |tag| obj.element(tag).unwrap().to_int::<u32>().unwrap();
    let (columns, rows) = (int(tags::COLUMNS), int(tags::ROWS));
    assert_eq!(int(tags::SAMPLES_PER_PIXEL), 3, "{}", file.display());
    let mut rgb = obj
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .to_vec();
    rgb.truncate((columns * rows * 3) as usize);
    Received {
        patient: text(tags::PATIENT_ID),
        number: int(tags::INSTANCE_NUMBER),
        columns,
        rows,
        rgb,
        lossy: text(tags::LOSSY_IMAGE_COMPRESSION),
        methods: text(tags::LOSSY_IMAGE_COMPRESSION_METHOD),
    }
}

#[test]
#[cfg_attr(
    any(
        missing_peer = "browser",
        missing_peer = "dcmtk",
        missing_peer = "python",
        missing_peer = "wallpapers"
    ),
    ignore = "needs browser, dcmtk, Pillow and mate-backgrounds: apt-get install chromium dcmtk mate-backgrounds; npm ci --prefix tests/browser; pip install -r tests/peers/requirements.txt"
)]
fn photos_shrunk_on_the_phone_make_the_same_objects_upright_once_with_a_fifth_of_the_bytes() {
    let _cpu = heavy_cpu();
    let (Some(storescp), Some(photos)) = (dcmtk_tool("storescp"), phone_photos()) else {
        return;
    };
    let scp = StoreScp::start(&storescp, StoreScpConfig::new("STORESCP").tcp_nodelay(true));
    let (_dir, gw) = gateway_env(&cstore_env(scp.port(), "STORESCP", &[]));
    let Some(proxy) = recorded_scenario("shrink", &gw, &photos) else {
        return;
    };
    // 3 + 8 photos shrunk, the 8 again without ImageDecoder, an AVIF made JPEG, then 3 + 8
    // originals.
    let files = scp.wait_for_files(31, Duration::from_secs(20));
    assert_eq!(files.len(), 31, "{}", scp.logs());
    let objects: Vec<Received> = files.iter().map(|f| read_received(f)).collect();
    let find = |patient: &str, number: u32| {
        objects
            .iter()
            .find(|o| o.patient == patient && o.number == number)
            .unwrap_or_else(|| panic!("no object {patient} #{number}"))
    };

    // What crossed the wire: the originals byte for byte; shrunk photos without EXIF and at
    // most a fifth of the bytes.
    let phone: Vec<Vec<u8>> = (1..=3)
        .map(|i| std::fs::read(photos.join(format!("phone-{i}.jpg"))).unwrap())
        .collect();
    let original_upload = proxy.upload("ORIGINAL-PHONE");
    let shrunk_upload = proxy.upload("SHRUNK-PHONE");
    let picked: usize = phone.iter().map(Vec::len).sum();
    for (i, p) in phone.iter().enumerate() {
        assert_eq!(
            find_all(&original_upload, p).len(),
            1,
            "phone-{} as picked",
            i + 1
        );
    }
    assert!(
        find_all(&shrunk_upload, b"Exif\0\0").is_empty(),
        "a shrunk photo carries no EXIF (nor its orientation)"
    );
    assert!(
        shrunk_upload.len() * 5 < picked,
        "{} B on the wire for {picked} B picked",
        shrunk_upload.len()
    );
    eprintln!(
        "upload of three 12-megapixel photos: {} B as picked, {} B shrunk on the phone",
        original_upload.len(),
        shrunk_upload.len()
    );

    // The same pictures at the box's size for 1024, lossy-compression attributes true.
    for i in 1..=3 {
        let (shrunk, original) = (find("SHRUNK-PHONE", i), find("ORIGINAL-PHONE", i));
        // 4032 / 4 from the original, 2016 / 2 from the phone's copy: the same size.
        assert_eq!((original.columns, original.rows), (1008, 756));
        assert_eq!((shrunk.columns, shrunk.rows), (1008, 756));
        let db = common::corpus::psnr(&shrunk.rgb, &original.rgb);
        eprintln!("phone-{i}: shrunk on the phone vs original, PSNR {db:.2} dB");
        assert!(db >= 40.0, "phone-{i}: PSNR {db:.2} dB");
        assert_eq!(shrunk.lossy, "01");
        assert_eq!(shrunk.methods, "ISO_10918_1");
    }
    // Every orientation upright exactly once: as the box turns the original upright.
    let upright = find("ORIGINAL-TURNED", 1);
    assert_eq!((upright.columns, upright.rows), (1024, 640));
    for k in 1..=8 {
        for patient in ["SHRUNK-TURNED", "SHRUNK-BITMAP", "ORIGINAL-TURNED"] {
            let o = find(patient, k);
            assert_eq!((o.columns, o.rows), (1024, 640), "{patient} turned-{k}");
            let db = common::corpus::psnr(&o.rgb, &upright.rgb);
            eprintln!("{patient} turned-{k} vs the upright original: PSNR {db:.2} dB");
            assert!(db >= 38.0, "{patient} turned-{k}: PSNR {db:.2} dB");
        }
    }
    let avif = find("SHRUNK-AVIF", 1);
    assert_eq!(avif.lossy, "01", "AVIF made JPEG on the phone");
    assert!(
        !gw.logs().contains("SHRUNK-") && !gw.logs().contains("ORIGINAL-"),
        "patient IDs in the log"
    );
}

#[test]
#[cfg_attr(
    any(
        missing_peer = "browser",
        missing_peer = "python",
        missing_peer = "wallpapers"
    ),
    ignore = "needs browser, Pillow and mate-backgrounds: apt-get install chromium mate-backgrounds; npm ci --prefix tests/browser; pip install -r tests/peers/requirements.txt"
)]
fn a_box_that_keeps_original_sizes_receives_the_photo_exactly_as_picked() {
    let _cpu = heavy_cpu();
    let Some(photos) = phone_photos() else {
        return;
    };
    // Original size with JPEG Baseline: the camera's JPEG kept as it is, as a site that
    // wants originals would set it.
    let (_dir, gw) = gateway(&[
        ("PHOTO_PACS_LOCAL_RESIZE_MAX", "0"),
        ("PHOTO_PACS_LOCAL_TRANSFER_SYNTAX", "1.2.840.10008.1.2.4.50"),
    ]);
    let Some(proxy) = recorded_scenario("originals", &gw, &photos) else {
        return;
    };
    let picked = std::fs::read(photos.join("phone-1.jpg")).unwrap();
    let upload = proxy.upload("ORIGINAL-SIZE");
    assert_eq!(find_all(&upload, &picked).len(), 1, "the photo as picked");
}
