//! Every converted test photo, in every transfer syntax, checked by independent DICOM
//! software: dicom3tools' `dciodvfy` (the IOD rules), dcmtk's `dcmdump` and `dcm2pnm`, and
//! pydicom (dcmtk's `dcmj2pnm` is `dcm2pnm` with the JPEG decoders). Their decoded pixels
//! must equal ours: exactly for the uncompressed syntaxes, with a PSNR of at least 40 dB for
//! JPEG Baseline (see GRAPHICS for the one exception).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::corpus::*;
use photo_pacs::config::{Charset, TransferSyntax};

struct Output {
    photo: &'static str,
    ts: TransferSyntax,
    path: PathBuf,
    /// Our own pixels before any JPEG encoding: what a reader must get back.
    reference: Vec<u8>,
    samples: u32,
    rows: u32,
    columns: u32,
}

/// Converts the whole corpus once into `dir`.
fn convert_corpus(dir: &Path) -> Vec<Output> {
    let mut outputs = Vec::new();
    for (photo, _) in ACCEPTED {
        let bytes = common::read_data(photo);
        let native = convert_bytes(&bytes, TransferSyntax::ExplicitVrLittleEndian, 1024).unwrap();
        let reference = pixels(&native);
        let samples = if reference.color().channel_count() == 1 {
            1
        } else {
            3
        };
        for (i, ts) in TransferSyntax::ALL.into_iter().enumerate() {
            let c = convert_bytes(&bytes, ts, 1024).unwrap();
            let path = dir.join(format!(
                "{}-{i}.dcm",
                photo.trim_start_matches("pillow_").replace('.', "_")
            ));
            std::fs::write(&path, &c.dicom).unwrap();
            outputs.push(Output {
                photo,
                ts,
                path,
                reference: reference.as_bytes().to_vec(),
                samples,
                rows: c.rows,
                columns: c.columns,
            });
        }
    }
    outputs
}

/// Colour graphics rather than photographs (saturated red text with fine stripes on black;
/// a logo with hard edges): the 4:2:2 chroma subsampling the SC IOD imposes on JPEG
/// (YBR_FULL_422) smears their colour edges whatever the quality, and clipping at saturated
/// colours spills into luma. For them the check is that colours are right (25 dB; a wrong
/// colour space or channel order gives under 15), not 40 dB.
const GRAPHICS: [&str; 2] = ["pillow_pil_sample_cmyk.jpg", "pillow_transparent.png"];

/// Compares decoded pixels with ours; returns the PSNR (infinite when equal).
fn check_pixels(what: &str, o: &Output, decoded: &[u8], failures: &mut Vec<String>) -> f64 {
    if decoded.len() != o.reference.len() {
        failures.push(format!(
            "{what}: {} {:?}: {} bytes, expected {}",
            o.photo,
            o.ts,
            decoded.len(),
            o.reference.len()
        ));
        return 0.0;
    }
    let db = psnr(decoded, &o.reference);
    let ok = match (o.ts.is_encapsulated(), GRAPHICS.contains(&o.photo)) {
        (false, _) => decoded == o.reference.as_slice(),
        (true, false) => db >= 40.0,
        (true, true) => db >= 25.0,
    };
    if !ok {
        failures.push(format!(
            "{what}: {} {:?}: pixels differ (PSNR {db:.1} dB)",
            o.photo, o.ts
        ));
    }
    db
}

#[test]
#[cfg_attr(
    missing_peer = "dicom3tools",
    ignore = "dicom3tools is not installed (apt-get install dicom3tools)"
)]
fn dciodvfy_reports_no_errors_for_any_output() {
    let Some(dciodvfy) = common::peer("dciodvfy", "dicom3tools") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let outputs = convert_corpus(dir.path());
    let mut failures = Vec::new();
    let mut warnings: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outputs {
        let out = Command::new(&dciodvfy).arg(&o.path).output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !report.contains("SCImage") {
            failures.push(format!(
                "{} {:?}: IOD not recognised:\n{report}",
                o.photo, o.ts
            ));
        }
        for line in report.lines() {
            if line.starts_with("Error") {
                failures.push(format!("{} {:?}: {line}", o.photo, o.ts));
            } else if line.starts_with("Warning") {
                *warnings.entry(line.to_string()).or_default() += 1;
            }
        }
    }
    println!("dciodvfy over {} objects; warnings (count):", outputs.len());
    for (w, n) in &warnings {
        println!("  {n:3} x {w}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn dcmtk_reads_every_output_and_dcm2pnm_pixels_equal_ours() {
    let Some(dcmdump) = common::peer("dcmdump", "dcmtk") else {
        return;
    };
    let Some(dcmj2pnm) = common::peer("dcmj2pnm", "dcmtk") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let outputs = convert_corpus(dir.path());
    let mut failures = Vec::new();
    let mut worst_photo = f64::INFINITY;
    for o in &outputs {
        let dump = Command::new(&dcmdump).arg(&o.path).output().unwrap();
        if !dump.status.success() || !String::from_utf8_lossy(&dump.stdout).contains("A123456") {
            failures.push(format!(
                "dcmdump {} {:?}: {}",
                o.photo,
                o.ts,
                String::from_utf8_lossy(&dump.stderr)
            ));
            continue;
        }
        let pnm = o.path.with_extension("pnm");
        let run = Command::new(&dcmj2pnm)
            .args(["--write-raw-pnm"])
            .arg(&o.path)
            .arg(&pnm)
            .output()
            .unwrap();
        if !run.status.success() {
            failures.push(format!(
                "dcm2pnm {} {:?}: {}",
                o.photo,
                o.ts,
                String::from_utf8_lossy(&run.stderr)
            ));
            continue;
        }
        let decoded = read_pnm(&std::fs::read(&pnm).unwrap(), o);
        let db = check_pixels("dcm2pnm", o, &decoded, &mut failures);
        if o.ts.is_encapsulated() && !GRAPHICS.contains(&o.photo) {
            worst_photo = worst_photo.min(db);
        }
    }
    println!("dcmj2pnm: lowest JPEG Baseline PSNR over the photographs {worst_photo:.1} dB");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The pixels of a binary PGM (P5) or PPM (P6) file.
fn read_pnm(data: &[u8], o: &Output) -> Vec<u8> {
    let magic = if o.samples == 1 { "P5" } else { "P6" };
    let header = format!("{magic}\n{} {}\n255\n", o.columns, o.rows);
    // dcm2pnm may put comment lines in the header; find the end of the third value line.
    let mut fields = 0;
    let mut i = 0;
    while fields < 4 && i < data.len() {
        if data[i] == b'#' {
            while data[i] != b'\n' {
                i += 1;
            }
        } else if data[i].is_ascii_whitespace() && i > 0 && !data[i - 1].is_ascii_whitespace() {
            fields += 1;
        }
        i += 1;
    }
    assert!(
        data.starts_with(magic.as_bytes()),
        "expected a {header:?} header"
    );
    data[i..].to_vec()
}

#[test]
#[cfg_attr(
    missing_peer = "python",
    ignore = "pydicom, numpy, Pillow or pynetdicom is missing (pip install -r tests/peers/requirements.txt)"
)]
fn pydicom_reads_names_and_pixels_back_unchanged() {
    let Some(python) = common::peer("python3", "python3") else {
        return;
    };
    let probe = Command::new(&python)
        .args(["-c", "import pydicom, numpy, PIL"])
        .output()
        .unwrap();
    if !probe.status.success() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "pydicom, numpy and pillow are missing under CI: pip install -r tests/peers/requirements.txt"
        );
        eprintln!(
            "SKIPPED: pydicom/numpy/pillow not installed (pip install -r tests/peers/requirements.txt)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let outputs = convert_corpus(dir.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/read_dicom.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script);
    for o in &outputs {
        cmd.arg(&o.path).arg(o.path.with_extension("raw"));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), outputs.len());
    let mut failures = Vec::new();
    for (o, seen) in outputs.iter().zip(&lines) {
        for (key, want) in [
            ("patientId", "A123456"),
            ("patientName", "王大明"),
            ("studyDescription", "傷口 wound check"),
        ] {
            if seen[key] != want {
                failures.push(format!("{} {:?}: {key} = {}", o.photo, o.ts, seen[key]));
            }
        }
        let decoded = std::fs::read(o.path.with_extension("raw")).unwrap();
        let db = check_pixels("pydicom", o, &decoded, &mut failures);
        if o.ts.is_encapsulated() {
            println!("pydicom: {} JPEG Baseline PSNR {db:.1} dB", o.photo);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[cfg_attr(
    missing_peer = "python",
    ignore = "pydicom, numpy, Pillow or pynetdicom is missing (pip install -r tests/peers/requirements.txt)"
)]
fn a_european_name_survives_through_pydicom_in_both_charsets() {
    let Some(python) = common::peer("python3", "python3") else {
        return;
    };
    let bytes = common::read_data("pillow_hopper.jpg");
    let probe = photo_pacs::convert::probe(&bytes, 100_000_000).unwrap();
    let mut study = study();
    study.patient.name = "Müller^Jörg".into();
    study.exam.description = "Hautfoto, Unterarm".into();
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/read_dicom.py");
    for charset in [Charset::IsoIr192, Charset::IsoIr100] {
        let mut opts = options(TransferSyntax::ExplicitVrLittleEndian, 1024);
        opts.dicom.charset = charset;
        let ids = photo_pacs::convert::InstanceIds {
            study_uid: "2.25.1".into(),
            series_uid: "2.25.2".into(),
            sop_uid: "2.25.3".into(),
            number: 1,
            created: chrono::Local::now().fixed_offset(),
        };
        let c = photo_pacs::convert::convert(&bytes, &probe, &study, &ids, None, &opts).unwrap();
        let path = dir.path().join("name.dcm");
        std::fs::write(&path, &c.dicom).unwrap();
        let out = Command::new(&python)
            .arg(&script)
            .arg(&path)
            .arg(dir.path().join("name.raw"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(seen["patientName"], "Müller^Jörg", "{charset:?}");
        assert_eq!(
            seen["studyDescription"], "Hautfoto, Unterarm",
            "{charset:?}"
        );
    }
}
