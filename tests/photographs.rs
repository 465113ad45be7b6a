//! Clinical photographs: body site and laterality, the VL Photographic Image, and camera
//! JPEGs kept as they are (verbatim, turned upright losslessly, or made baseline), checked
//! by dicom3tools' `dciodvfy`, dcmtk's `dcmj2pnm` and pydicom.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::corpus::{ACCEPTED, psnr, study};
use dicom_dictionary_std::tags;
use image::{DynamicImage, RgbImage};
use photo_pacs::anatomy::{self, Side, Site};
use photo_pacs::config::{Iod, Settings, TransferSyntax};
use photo_pacs::convert::{self, Converted, InstanceIds, Options, Path as ConvertPath};

fn options(iod: Iod, ts: TransferSyntax, resize_max: u32) -> Options {
    let s = Settings {
        local_iod: iod,
        local_transfer_syntax: ts,
        local_resize_max: resize_max,
        ..Settings::default()
    };
    // A budget that lets every fixture take the path under test.
    Options::from_settings(&s, 100_000_000, 512 << 20)
}

fn convert_with(bytes: &[u8], opts: &Options, site: Option<&Site>) -> Converted {
    let probe = convert::probe(bytes, opts.max_pixels).unwrap();
    let ids = InstanceIds {
        study_uid: "2.25.1".into(),
        series_uid: "2.25.2".into(),
        sop_uid: "2.25.3".into(),
        number: 1,
        created: chrono::Local::now().fixed_offset(),
    };
    let mut study = study();
    // A name in PN's component form (family^given), which dciodvfy expects.
    study.patient.name = "王^大明".into();
    convert::convert(bytes, &probe, &study, &ids, site, opts).unwrap()
}

/// No site; an unpaired site (nose) with a note; a paired site with a side (left forearm).
fn sites() -> [(&'static str, Option<Site>); 3] {
    [
        ("no site", None),
        (
            "nose",
            Some(Site {
                region: anatomy::find("nose"),
                side: None,
                note: "鼻翼 left ala".into(),
            }),
        ),
        (
            "left forearm",
            Some(Site {
                region: anatomy::find("forearm"),
                side: Some(Side::Left),
                note: String::new(),
            }),
        ),
    ]
}

/// Every test photo, and camera JPEGs of the kinds the originals path treats apart: a
/// progressive one, and one without chroma subsampling (4:4:4).
fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = ACCEPTED
        .iter()
        .map(|(name, _)| (name.to_string(), common::read_data(name)))
        .collect();
    let flower = common::read_data("pillow_flower.jpg");
    all.push(("flower, progressive".into(), progressive(&flower)));
    let rgb = turbojpeg::decompress(&flower, turbojpeg::PixelFormat::RGB).unwrap();
    let full = turbojpeg::compress(rgb.as_deref(), 92, turbojpeg::Subsamp::None).unwrap();
    all.push(("flower, 4:4:4".into(), full.to_vec()));
    all
}

/// The dciodvfy warnings we accept, each with its reason.
const ACCEPTED_WARNINGS: &[(&str, &str)] = &[(
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study ID",
    "Study ID (Type 2) is the PACS's to assign; the gateway has none and sends it empty",
)];

#[test]
#[cfg_attr(
    missing_peer = "dicom3tools",
    ignore = "dicom3tools is not installed (apt-get install dicom3tools)"
)]
fn dciodvfy_every_photo_object_kind_syntax_and_site() {
    let Some(dciodvfy) = common::peer("dciodvfy", "dicom3tools") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut warnings: BTreeMap<String, usize> = BTreeMap::new();
    let mut checked = 0;
    for (photo, bytes) in inputs() {
        for iod in Iod::ALL {
            for ts in TransferSyntax::ALL {
                // Resized, and the original size (under JPEG Baseline, a kept camera JPEG).
                for resize in [1024, 0] {
                    for (label, site) in sites() {
                        let c = convert_with(&bytes, &options(iod, ts, resize), site.as_ref());
                        let path = dir.path().join(format!("{checked}.dcm"));
                        std::fs::write(&path, &c.dicom).unwrap();
                        checked += 1;
                        let case = format!("{photo} {iod:?} {ts:?} resize {resize} {label}");
                        let out = Command::new(&dciodvfy).arg(&path).output().unwrap();
                        let report = format!(
                            "{}{}",
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        );
                        let iod_name = match iod {
                            Iod::SecondaryCapture => "SCImage",
                            Iod::VlPhotographic => "VLPhotographicImage",
                        };
                        if !report.lines().any(|l| l.trim() == iod_name) {
                            failures.push(format!("{case}: not read as {iod_name}:\n{report}"));
                        }
                        for line in report.lines() {
                            if line.starts_with("Error") {
                                failures.push(format!("{case}: {line}"));
                            } else if line.starts_with("Warning") {
                                if line.to_ascii_lowercase().contains("laterality") {
                                    failures.push(format!("{case}: {line}"));
                                }
                                *warnings.entry(line.to_string()).or_default() += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    println!("dciodvfy over {checked} objects; warnings (count):");
    for (w, n) in &warnings {
        let reason = ACCEPTED_WARNINGS
            .iter()
            .find(|(a, _)| a == w)
            .map_or("NOT ACCEPTED", |(_, r)| r);
        println!("  {n:4} x {w}\n         ({reason})");
        if !ACCEPTED_WARNINGS.iter().any(|(a, _)| a == w) {
            failures.push(format!("unexpected warning: {w}"));
        }
    }
    assert_eq!(checked, inputs().len() * 2 * 3 * 2 * 3);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn site_and_side_reach_the_object_as_codes() {
    let bytes = common::read_data("pillow_flower.jpg");
    for iod in Iod::ALL {
        let opts = options(iod, TransferSyntax::ExplicitVrLittleEndian, 1024);
        for (label, site) in sites() {
            let c = convert_with(&bytes, &opts, site.as_ref());
            let obj = dicom_object::from_reader(&c.dicom[128..]).unwrap();
            let text = |o: &dicom_object::InMemDicomObject, t| {
                o.element(t)
                    .ok()
                    .map(|e| e.to_str().unwrap().trim_end().to_string())
            };
            let laterality = text(&obj, tags::IMAGE_LATERALITY);
            let region = obj
                .element(tags::ANATOMIC_REGION_SEQUENCE)
                .ok()
                .map(|e| e.items().unwrap()[0].clone());
            assert_eq!(
                obj.element(tags::LATERALITY).ok().map(|_| ()),
                None,
                "{label}: the series-level Laterality is left out"
            );
            match label {
                "no site" => {
                    assert_eq!(laterality.as_deref(), Some("U"));
                    assert!(region.is_none());
                    assert_eq!(text(&obj, tags::BODY_PART_EXAMINED), None);
                }
                "nose" => {
                    assert_eq!(laterality.as_deref(), Some("U"));
                    let r = region.unwrap();
                    assert_eq!(text(&r, tags::CODE_VALUE).as_deref(), Some("45206002"));
                    assert_eq!(
                        text(&r, tags::CODING_SCHEME_DESIGNATOR).as_deref(),
                        Some("SCT")
                    );
                    assert_eq!(text(&r, tags::CODE_MEANING).as_deref(), Some("Nose"));
                    assert!(r.element(tags::ANATOMIC_REGION_MODIFIER_SEQUENCE).is_err());
                    assert_eq!(
                        text(&obj, tags::BODY_PART_EXAMINED).as_deref(),
                        Some("NOSE")
                    );
                    assert_eq!(
                        text(&obj, tags::IMAGE_COMMENTS).as_deref(),
                        Some("鼻翼 left ala")
                    );
                }
                _ => {
                    assert_eq!(laterality.as_deref(), Some("L"));
                    let r = region.unwrap();
                    assert_eq!(text(&r, tags::CODE_VALUE).as_deref(), Some("14975008"));
                    let m = &r
                        .element(tags::ANATOMIC_REGION_MODIFIER_SEQUENCE)
                        .unwrap()
                        .items()
                        .unwrap()[0];
                    assert_eq!(text(m, tags::CODE_VALUE).as_deref(), Some("7771000"));
                    assert_eq!(text(m, tags::CODE_MEANING).as_deref(), Some("Left"));
                    // No Annex L term for the forearm: Body Part Examined is left out.
                    assert_eq!(text(&obj, tags::BODY_PART_EXAMINED), None);
                }
            }
            let modality = text(&obj, tags::MODALITY).unwrap();
            let class = text(&obj, tags::SOP_CLASS_UID).unwrap();
            match iod {
                Iod::SecondaryCapture => {
                    assert_eq!(class.trim_end_matches('\0'), "1.2.840.10008.5.1.4.1.1.7");
                    assert_eq!(modality, "OT");
                }
                Iod::VlPhotographic => {
                    assert_eq!(
                        class.trim_end_matches('\0'),
                        "1.2.840.10008.5.1.4.1.1.77.1.4"
                    );
                    assert_eq!(modality, "XC");
                    assert!(obj.element(tags::ACQUISITION_CONTEXT_SEQUENCE).is_ok());
                    // Resized from 480x360? No: it fits, so the pixels are the camera's.
                    assert_eq!(
                        text(&obj, tags::IMAGE_TYPE).as_deref(),
                        Some("ORIGINAL\\PRIMARY")
                    );
                }
            }
        }
    }
}

/// The entropy-coded segments (each SOS and its scan data, restart markers included) of the
/// first image in a JPEG stream: an independent walk, not the gateway's.
fn scans(jpeg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        assert_eq!(jpeg[i], 0xFF, "marker expected at {i}");
        let marker = jpeg[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0xD9 {
            break;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        let mut end = i + 2 + len;
        if marker == 0xDA {
            while !(jpeg[end] == 0xFF
                && jpeg[end + 1] != 0
                && !(0xD0..=0xD7).contains(&jpeg[end + 1]))
            {
                end += 1;
            }
            out.extend_from_slice(&jpeg[i..end]);
        }
        i = end;
    }
    out
}

/// The one Pixel Data fragment of an encapsulated object.
fn fragment(c: &Converted) -> Vec<u8> {
    let obj = dicom_object::from_reader(&c.dicom[128..]).unwrap();
    let frags = obj
        .element(tags::PIXEL_DATA)
        .unwrap()
        .value()
        .fragments()
        .unwrap()
        .to_vec();
    assert_eq!(frags.len(), 1);
    frags[0].clone()
}

/// Real camera files (see tests/data/ORIGIN.md) and the maker strings their EXIF carries.
const CAMERAS: &[(&str, &[&str])] = &[
    ("pillow_flower.jpg", &["Canon", "PowerShot"]),
    ("pillow_iptc.jpg", &["Nokia", "N70"]),
    ("pillow_empty_gps_ifd.jpg", &["Xiaomi", "Redmi"]),
    ("pillow_frame_size.mpo", &["Apple", "iPhone"]),
];

#[test]
fn a_baseline_camera_jpeg_is_kept_with_its_scan_data_byte_for_byte() {
    for iod in Iod::ALL {
        let opts = options(iod, TransferSyntax::JpegBaseline, 0);
        for (photo, _) in CAMERAS {
            let bytes = common::read_data(photo);
            let c = convert_with(&bytes, &opts, None);
            let frag = fragment(&c);
            if *photo == "pillow_empty_gps_ifd.jpg" {
                // Orientation 6: turned upright on the coefficients, not copied.
                assert_eq!(c.path, ConvertPath::Transformed, "{photo}");
                continue;
            }
            assert_eq!(c.path, ConvertPath::Kept, "{photo}");
            assert!(!scans(&bytes).is_empty());
            assert!(
                scans(&frag) == scans(&bytes),
                "{photo}: the scan data differs from the camera's"
            );
            // Only the APPn/COM segments and what followed EOI are gone.
            assert!(frag.len() < bytes.len(), "{photo}");
            assert_eq!(frag.first_chunk::<2>(), Some(&[0xFF, 0xD8]));
        }
    }
}

#[test]
fn no_exif_gps_or_maker_strings_in_any_object() {
    let mut objects = 0;
    for (photo, makers) in CAMERAS {
        let bytes = common::read_data(photo);
        let needles: Vec<&[u8]> = makers
            .iter()
            .map(|m| m.as_bytes())
            .chain([&b"Exif\0\0"[..]])
            .collect();
        for n in &needles {
            assert!(
                bytes.windows(n.len()).any(|w| w == *n),
                "{photo} should carry {:?} for this check to mean anything",
                String::from_utf8_lossy(n)
            );
        }
        for iod in Iod::ALL {
            for ts in TransferSyntax::ALL {
                for resize in [1024, 0] {
                    let c = convert_with(&bytes, &options(iod, ts, resize), None);
                    objects += 1;
                    for n in &needles {
                        assert!(
                            !c.dicom.windows(n.len()).any(|w| w == *n),
                            "{photo} {iod:?} {ts:?} {resize}: {:?} is in the object",
                            String::from_utf8_lossy(n)
                        );
                    }
                }
            }
        }
    }
    assert_eq!(objects, CAMERAS.len() * 12);
}

/// `jpeg` turned progressive by libjpeg-turbo (EXIF kept).
fn progressive(jpeg: &[u8]) -> Vec<u8> {
    let t = turbojpeg::Transform {
        progressive: true,
        ..turbojpeg::Transform::default()
    };
    turbojpeg::Transformer::new()
        .unwrap()
        .transform_to_owned(&t, jpeg)
        .unwrap()
        .to_vec()
}

fn decode_rgb(jpeg: &[u8]) -> Vec<u8> {
    turbojpeg::decompress(jpeg, turbojpeg::PixelFormat::RGB)
        .unwrap()
        .pixels
}

/// The pixels dcmtk's dcmj2pnm decodes from an object (PPM or PGM, header skipped).
fn dcmj2pnm_pixels(dcmj2pnm: &Path, object: &Path) -> Vec<u8> {
    let pnm = object.with_extension("pnm");
    let run = Command::new(dcmj2pnm)
        .arg("--write-raw-pnm")
        .arg(object)
        .arg(&pnm)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let data = std::fs::read(&pnm).unwrap();
    // Magic, width, height, maxval, each ended by one whitespace byte (no comments here).
    let mut fields = 0;
    let mut i = 0;
    while fields < 4 {
        if data[i].is_ascii_whitespace() {
            fields += 1;
        }
        i += 1;
    }
    data[i..].to_vec()
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn progressive_originals_become_baseline_with_exactly_the_same_pixels() {
    let Some(dcmj2pnm) = common::peer("dcmj2pnm", "dcmtk") else {
        return;
    };
    let Some(python) = common::peer("python3", "python3") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/same_pixels.py");
    for photo in ["pillow_flower.jpg", "pillow_iptc.jpg", "pillow_hopper.jpg"] {
        let src = progressive(&common::read_data(photo));
        assert_eq!(&src[..2], &[0xFF, 0xD8]);
        assert!(
            src.windows(2).any(|w| w == [0xFF, 0xC2]),
            "{photo} is progressive"
        );
        let c = convert_with(
            &src,
            &options(Iod::VlPhotographic, TransferSyntax::JpegBaseline, 0),
            None,
        );
        assert_eq!(c.path, ConvertPath::Transformed);
        let frag = fragment(&c);
        assert!(
            frag.windows(2).any(|w| w == [0xFF, 0xC0]),
            "{photo}: baseline frame"
        );
        assert!(
            !frag.windows(2).any(|w| w == [0xFF, 0xC2]),
            "{photo}: no progressive frame"
        );
        let want = decode_rgb(&src);
        let object = dir.path().join(format!("{photo}.dcm"));
        std::fs::write(&object, &c.dicom).unwrap();
        let dcmtk = dcmj2pnm_pixels(&dcmj2pnm, &object);
        assert!(
            dcmtk == want,
            "{photo}: dcmj2pnm's pixels differ (PSNR {:.1} dB)",
            psnr(&dcmtk, &want)
        );
        let source = dir.path().join(format!("{photo}.progressive.jpg"));
        std::fs::write(&source, &src).unwrap();
        let out = Command::new(&python)
            .arg(&script)
            .arg(&object)
            .arg(&source)
            .output()
            .unwrap();
        if !out.status.success() {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "pydicom failed under CI: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("SKIPPED pydicom: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        }
        let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            seen["maxDiff"], 0,
            "{photo}: pydicom's samples differ from the source's: {seen}"
        );
    }
}

/// A real photo's pixels as a `w` x `h` crop, stored turned the way EXIF `orientation`
/// undoes, as a JPEG with the given subsampling and that orientation tag.
fn stored_turned(upright: &RgbImage, orientation: u8, subsamp: turbojpeg::Subsamp) -> Vec<u8> {
    use image::metadata::Orientation;
    let inverse = match orientation {
        6 => Orientation::Rotate270,
        8 => Orientation::Rotate90,
        o => Orientation::from_exif(o).unwrap(),
    };
    let mut stored = DynamicImage::ImageRgb8(upright.clone());
    stored.apply_orientation(inverse);
    let stored = stored.into_rgb8();
    let image = turbojpeg::Image {
        pixels: stored.as_raw().as_slice(),
        width: stored.width() as usize,
        pitch: stored.width() as usize * 3,
        height: stored.height() as usize,
        format: turbojpeg::PixelFormat::RGB,
    };
    let jpeg = turbojpeg::compress(image, 95, subsamp).unwrap();
    // An EXIF APP1 with the orientation, right after SOI.
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    tiff.extend_from_slice(&u16::from(orientation).to_be_bytes());
    tiff.extend_from_slice(&[0; 6]);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(&tiff);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
#[cfg_attr(
    missing_peer = "dcmtk",
    ignore = "dcmtk is not installed (apt-get install dcmtk)"
)]
fn turned_photos_come_out_upright_without_recompression() {
    let Some(dcmj2pnm) = common::peer("dcmj2pnm", "dcmtk") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let opts = options(Iod::VlPhotographic, TransferSyntax::JpegBaseline, 0);
    // Pillow's hopper turned seven ways (128x128: whole MCUs): upright like hopper.jpg.
    let hopper = decode_rgb(&common::read_data("pillow_hopper.jpg"));
    for o in 2..=8 {
        let photo = format!("pillow_hopper_orientation_{o}.jpg");
        let c = convert_with(&common::read_data(&photo), &opts, None);
        assert_eq!(c.path, ConvertPath::Transformed, "{photo}");
        assert_eq!((c.columns, c.rows), (128, 128));
        let object = dir.path().join(format!("{photo}.dcm"));
        std::fs::write(&object, &c.dicom).unwrap();
        let db = psnr(&dcmj2pnm_pixels(&dcmj2pnm, &object), &hopper);
        // The fixtures were re-encoded by Pillow; a wrong turn scores under 15 dB.
        assert!(db > 28.0, "{photo}: {db:.1} dB against the upright hopper");
    }
    // A real photo cropped to sizes on and off the MCU grid, 4:2:0 and 4:4:4.
    let flower = turbojpeg::decompress(
        &common::read_data("pillow_flower.jpg"),
        turbojpeg::PixelFormat::RGB,
    )
    .unwrap();
    let flower =
        RgbImage::from_raw(flower.width as u32, flower.height as u32, flower.pixels).unwrap();
    let mut trimmed = 0;
    for (w, h) in [(320, 240), (317, 235)] {
        let upright = image::imageops::crop_imm(&flower, 40, 30, w, h).to_image();
        for subsamp in [turbojpeg::Subsamp::Sub2x2, turbojpeg::Subsamp::None] {
            let mcu = subsamp.mcu_width().max(subsamp.mcu_height()) as u32;
            for o in 2..=8 {
                let case = format!("{w}x{h} {subsamp:?} orientation {o}");
                let src = stored_turned(&upright, o, subsamp);
                let c = convert_with(&src, &opts, None);
                // 4:4:4 would be YBR_FULL, which neither IOD allows: re-encoded upright.
                let lossless = subsamp != turbojpeg::Subsamp::None;
                let expected = if lossless {
                    ConvertPath::Transformed
                } else {
                    ConvertPath::Decoded
                };
                assert_eq!(c.path, expected, "{case}");
                let (lost_w, lost_h) = (w - c.columns, h - c.rows);
                assert!(
                    lost_w < mcu && lost_h < mcu,
                    "{case}: lost {lost_w}x{lost_h}"
                );
                if (lost_w, lost_h) != (0, 0) {
                    trimmed += 1;
                }
                if w % 16 == 0 && h % 16 == 0 {
                    assert_eq!(
                        (lost_w, lost_h),
                        (0, 0),
                        "{case}: whole MCUs turn perfectly"
                    );
                }
                let object = dir.path().join("turned.dcm");
                std::fs::write(&object, &c.dicom).unwrap();
                let got = dcmj2pnm_pixels(&dcmj2pnm, &object);
                // The dropped strip is on the side the turn moved the partial blocks to.
                let best = [(0, 0), (lost_w, 0), (0, lost_h), (lost_w, lost_h)]
                    .into_iter()
                    .map(|(dx, dy)| {
                        let want = image::imageops::crop_imm(&upright, dx, dy, c.columns, c.rows)
                            .to_image();
                        psnr(&got, want.as_raw())
                    })
                    .fold(0.0_f64, f64::max);
                assert!(best > 35.0, "{case}: {best:.1} dB against the upright crop");
            }
        }
    }
    assert!(trimmed > 0, "sizes off the MCU grid must have been trimmed");
}

/// Through the real binary to Orthanc, once by C-STORE and once by STOW-RS: VL Photographic
/// Images of camera JPEGs kept as they are, with their sites, stored as sent.
#[test]
#[cfg_attr(
    missing_peer = "orthanc",
    ignore = "Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
)]
fn kept_originals_with_sites_reach_orthanc_by_c_store_and_stow_rs() {
    use common::orthanc::{Orthanc, OrthancConfig, find_orthanc};
    let Some(orthanc_bin) = find_orthanc()
        .or_else(|| common::storescp::missing_peer("Orthanc", "orthanc orthanc-dicomweb"))
    else {
        return;
    };
    for stow in [false, true] {
        let orthanc = Orthanc::start(&orthanc_bin, OrthancConfig::new("ORTHANC"));
        let mut env = if stow {
            vec![
                (
                    "PHOTO_PACS_PACS_BACKEND".to_string(),
                    "dicomweb".to_string(),
                ),
                (
                    "PHOTO_PACS_DICOMWEB_BASE_URL".into(),
                    orthanc.dicomweb_base(),
                ),
            ]
        } else {
            common::cstore_env(orthanc.dicom_port(), "ORTHANC", &[])
        };
        for (k, v) in [
            ("PHOTO_PACS_LOCAL_IOD", "vl-photo"),
            ("PHOTO_PACS_LOCAL_RESIZE_MAX", "original"),
            ("PHOTO_PACS_LOCAL_TRANSFER_SYNTAX", "1.2.840.10008.1.2.4.50"),
        ] {
            env.push((k.into(), v.into()));
        }
        let (_dir, gw) = common::gateway_env(&env);
        let fields = [
            ("patientId", "A123456"),
            ("bodySite[]", "forearm"),
            ("bodySite[]", "nose"),
            ("laterality[]", "L"),
            ("laterality[]", ""),
        ];
        let photos = [("a.jpg", "pillow_flower.jpg"), ("b.jpg", "pillow_iptc.jpg")];
        let resp = common::upload(&gw, &fields, &photos);
        assert_eq!(resp.status(), 200, "{}", gw.logs());
        let ids = orthanc.get_json("/instances");
        let ids = ids.as_array().unwrap();
        assert_eq!(ids.len(), 2, "{ids:?}");
        let mut seen = Vec::new();
        for id in ids {
            let file = orthanc.get(&format!("/instances/{}/file", id.as_str().unwrap()));
            assert_eq!(file.status, 200);
            let obj = dicom_object::from_reader(&file.body[128..]).unwrap();
            assert_eq!(
                obj.meta()
                    .media_storage_sop_class_uid()
                    .trim_end_matches('\0'),
                "1.2.840.10008.5.1.4.1.1.77.1.4"
            );
            assert_eq!(
                obj.meta().transfer_syntax().trim_end_matches('\0'),
                "1.2.840.10008.1.2.4.50"
            );
            let number: u32 = obj
                .element(tags::INSTANCE_NUMBER)
                .unwrap()
                .to_int()
                .unwrap();
            let (photo, code, side) = if number == 1 {
                ("pillow_flower.jpg", "14975008", "L")
            } else {
                ("pillow_iptc.jpg", "45206002", "U")
            };
            let region = &obj
                .element(tags::ANATOMIC_REGION_SEQUENCE)
                .unwrap()
                .items()
                .unwrap()[0];
            assert_eq!(
                region
                    .element(tags::CODE_VALUE)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim_end(),
                code
            );
            assert_eq!(
                obj.element(tags::IMAGE_LATERALITY)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim_end(),
                side
            );
            let frags = obj
                .element(tags::PIXEL_DATA)
                .unwrap()
                .value()
                .fragments()
                .unwrap()
                .to_vec();
            assert!(
                scans(&frags[0]) == scans(&common::read_data(photo)),
                "{photo} (stow {stow}): Orthanc holds other scan data than the camera wrote"
            );
            seen.push(number);
        }
        seen.sort();
        assert_eq!(seen, [1, 2]);
        let metrics = common::client()
            .get(gw.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(
            metrics.contains(r#"photo_pacs_conversions_total{path="kept"} 2"#),
            "{metrics}"
        );
    }
}
