//! The unit files in `systemd/` and the image's (`image-build/overlay`): systemd's own tools
//! score their sandbox and verify them.

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

/// Copies `from` (a unit directory with drop-in folders) into `to`.
fn copy_units(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_units(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The image's units, enabled as build.sh enables them (`systemctl --root`), with the
/// gateway's own: the boot's transaction must need no ordering cycle broken. systemd breaks
/// one by dropping a job, and the dropped unit then never runs (that is how the reboot an
/// admin asked for after an update once never came: the qemu update test found it).
#[test]
#[cfg_attr(
    missing_peer = "systemd",
    ignore = "systemd-analyze is not installed (apt-get install systemd)"
)]
fn the_images_units_start_without_an_ordering_cycle() {
    let (Some(analyze), Some(systemctl)) = (
        common::peer("systemd-analyze", "systemd"),
        common::peer("systemctl", "systemd"),
    ) else {
        return;
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    copy_units(&repo.join("image-build/overlay/etc/systemd/system"), &units);
    for name in UNITS {
        std::fs::copy(unit(name), units.join(name)).unwrap();
    }
    // The units build.sh enables that are ours (the rest are Debian's, not copied here).
    let build = std::fs::read_to_string(repo.join("image-build/build.sh")).unwrap();
    let (_, after) = build
        .split_once("systemctl enable ")
        .expect("build.sh enables the units with systemctl enable");
    let mut enabled = Vec::new();
    for line in after.lines() {
        enabled.extend(
            line.split_whitespace()
                .filter(|w| *w != "\\" && units.join(w).is_file())
                .map(str::to_string),
        );
        if !line.trim_end().ends_with('\\') {
            break;
        }
    }
    assert!(
        enabled.iter().any(|u| u == "photo-pacs-reboot.path") && enabled.len() >= 8,
        "build.sh's enable list was not read: {enabled:?}"
    );
    let out = Command::new(&systemctl)
        .arg(format!("--root={}", root.path().display()))
        .arg("enable")
        .args(&enabled)
        .output()
        .expect("run systemctl --root enable");
    assert!(
        out.status.success(),
        "systemctl enable {enabled:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Unit files are looked up in the copy first, then in this machine's systemd.
    let out = Command::new(&analyze)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", units.display()))
        .args(["verify", "multi-user.target"])
        .output()
        .expect("run systemd-analyze verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("ordering cycle") && !text.contains("deleted to break"),
        "starting multi-user.target with the image's units:\n{text}"
    );
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
