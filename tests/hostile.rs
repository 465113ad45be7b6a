//! The hostile-client suite (tests/hostile/hostile.py) against the gateway binary: every
//! attack of the issue-14 review, each checked for its 4xx answer, /healthz answering while
//! it runs, and peak RSS at most 200 MB. How fast health answers (1 s) is a figure measured
//! by bench/hostile.sh, not asserted here.

use std::process::Command;

#[test]
#[cfg_attr(missing_peer = "python", ignore = "python3 is missing")]
fn the_gateway_withstands_every_attack_of_the_review() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile/hostile.py");
    let status = Command::new("python3")
        .args([script, "--binary", env!("CARGO_BIN_EXE_photo-pacs")])
        .args(["--health-limit", "10"])
        .status()
        .expect("run python3");
    assert!(
        status.success(),
        "an attack was not withstood (see the table above)"
    );
}
