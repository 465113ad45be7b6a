//! The PWA in a real browser: Debian's Chromium driven by playwright-core
//! (tests/browser/scenarios.mjs) against the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::storescp::{StoreScp, StoreScpConfig, dcmtk_tool, missing_peer};
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
    let Some((node, script)) = runner() else {
        return;
    };
    let mut cmd = Command::new(node);
    cmd.arg(script).arg(name).arg(&gw.base);
    if let Some(out) = out {
        cmd.arg(out);
    }
    let run = cmd.output().expect("run node");
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
    let port = scp.port().to_string();
    let (_dir, gw) = gateway(&[
        ("PHOTO_PACS_PACS_BACKEND", "cstore"),
        ("PHOTO_PACS_PACS_HOST", "127.0.0.1"),
        ("PHOTO_PACS_PACS_PORT", &port),
        ("PHOTO_PACS_PACS_CALLED_AET", "STORESCP"),
    ]);
    scenario("send", &gw, None);
    if runner().is_some() {
        let files = scp.wait_for_files(2, Duration::from_secs(10));
        assert_eq!(files.len(), 2, "{}", scp.logs());
    }
}

#[test]
#[cfg_attr(
    missing_peer = "browser",
    ignore = "node, Debian's chromium or playwright-core is missing (apt-get install chromium; npm ci --prefix tests/browser)"
)]
fn phone_screenshots_in_both_languages() {
    let (dir, gw) = gateway(&[]);
    let out = dir.path().join("screenshots");
    scenario("screenshots", &gw, Some(&out));
    if runner().is_none() {
        return;
    }
    for view in ["home", "sent", "settings"] {
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
