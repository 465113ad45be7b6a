//! The unit files in `systemd/`: systemd's own tools score their sandbox and verify them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: [&str; 2] = ["photo-pacs.service", "photo-pacs-cloudflared.service"];

fn unit(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name)
}

/// The overall exposure level `systemd-analyze security` gives a unit (0 best, 10 worst).
fn exposure(analyze: &Path, unit: &Path) -> f64 {
    let out = Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no overall level in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let score = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the level in {line:?}"));
    println!("{}: {line}", unit.display());
    score
}

#[test]
#[cfg_attr(
    missing_peer = "systemd",
    ignore = "systemd-analyze is not installed (apt-get install systemd)"
)]
fn sandbox_exposure_is_at_most_2() {
    let Some(analyze) = common::peer("systemd-analyze", "systemd") else {
        return;
    };
    for name in UNITS {
        let score = exposure(&analyze, &unit(name));
        assert!(score <= 2.0, "{name}: exposure {score} > 2.0");
    }
}

#[test]
#[cfg_attr(
    missing_peer = "systemd",
    ignore = "systemd-analyze is not installed (apt-get install systemd)"
)]
fn systemd_analyze_verify_is_clean() {
    let Some(analyze) = common::peer("systemd-analyze", "systemd") else {
        return;
    };
    // verify insists that ExecStart= names an executable: point the copies at the binary
    // under test and at a stand-in for cloudflared (not installed here).
    let dir = tempfile::tempdir().unwrap();
    let cloudflared = dir.path().join("cloudflared");
    std::fs::write(&cloudflared, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        &cloudflared,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut copies = Vec::new();
    for name in UNITS {
        let text = std::fs::read_to_string(unit(name)).unwrap();
        assert!(
            text.contains("/usr/bin/photo-pacs") || text.contains("/usr/bin/cloudflared"),
            "{name} no longer runs what the .deb installs"
        );
        let text = text
            .replace("/usr/bin/photo-pacs ", &format!("{} ", common::BIN))
            .replace("/usr/bin/cloudflared", cloudflared.to_str().unwrap());
        let copy = dir.path().join(name);
        std::fs::write(&copy, text).unwrap();
        copies.push(copy);
    }
    let out = Command::new(&analyze)
        .arg("verify")
        .args(&copies)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}

#[test]
fn the_tunnel_token_never_appears_on_a_command_line() {
    let text = std::fs::read_to_string(unit("photo-pacs-cloudflared.service")).unwrap();
    let exec = text
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("an ExecStart line");
    assert!(exec.contains("--token-file"), "{exec}");
    assert!(!exec.contains("--token "), "{exec}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ConditionPathExists=") && l.contains("tunnel-token")),
        "the tunnel must stay inert without a token file"
    );
}
