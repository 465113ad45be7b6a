//! Photo to DICOM: pure functions from image bytes and study data to DICOM file bytes.

mod jpeg;
mod object;
mod photo;

pub use jpeg::is_complete as jpeg_is_complete;
pub use object::{DicomOptions, InstanceIds, JPEG_QUALITY};
pub use photo::{Probe, fit_within, probe};

use crate::anatomy::Site;
use crate::config::{Settings, TransferSyntax};
pub use crate::dicom::uid;
use crate::study::Study;
use jpeg::Route;
use object::Pixels;

/// Why a photo could not be converted. Every variant but `Encode` is the sender's problem
/// (answered 400); messages never contain patient data.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is not an image this gateway reads (JPEG, PNG, WebP, TIFF, BMP or GIF)")]
    UnknownFormat,
    #[error("{format} images are not supported: {hint}")]
    Unsupported {
        format: &'static str,
        hint: &'static str,
    },
    #[error("the image file is incomplete (cut off during copy or upload); send it again")]
    Truncated,
    #[error("the image is {width}x{height} pixels, more than the limit of {max_pixels} pixels")]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error(
        "the image is {width}x{height} pixels and needs about {needed_mb} MB to convert, more than this gateway's {budget_mb} MB; send a smaller photo or JPEG"
    )]
    TooLargeToDecode {
        width: u32,
        height: u32,
        needed_mb: u64,
        budget_mb: u64,
    },
    #[error("the image could not be decoded: {0}")]
    Decode(String),
    #[error("the DICOM object could not be written: {0}")]
    Encode(String),
}

impl ConvertError {
    /// True when the input is at fault rather than the gateway.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, ConvertError::Encode(_))
    }
}

/// Everything that shapes the output, taken from the runtime settings once per submission.
#[derive(Clone, Debug)]
pub struct Options {
    pub resize_max: u32,
    pub max_pixels: u64,
    /// The most memory one conversion may hold, in bytes ([`Probe::memory_needed`]).
    pub memory_budget: u64,
    pub dicom: DicomOptions,
}

impl Options {
    pub fn from_settings(s: &Settings, max_pixels: u64, memory_budget: u64) -> Self {
        Options {
            resize_max: s.local_resize_max,
            max_pixels,
            memory_budget,
            dicom: DicomOptions {
                transfer_syntax: s.local_transfer_syntax,
                charset: s.local_charset,
                modality: s.local_modality.clone(),
                include_patient_info: s.flag_include_patient_info_except_id,
                include_description: s.flag_include_exam_description,
                iod: s.local_iod,
                site_coding: s.local_body_site_coding,
            },
        }
    }
}

/// One converted photo.
#[derive(Debug)]
pub struct Converted {
    pub dicom: Vec<u8>,
    pub rows: u32,
    pub columns: u32,
    /// As written: a kept camera JPEG is JPEG Baseline whatever else the settings say.
    pub transfer_syntax: TransferSyntax,
    pub sop_class_uid: &'static str,
    /// How the pixels got there, for the log and the metrics.
    pub path: Path,
}

/// How a photo's pixels reached the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The camera's JPEG as it is, metadata removed.
    Kept,
    /// The camera's JPEG turned upright or made baseline on its DCT coefficients.
    Transformed,
    /// Decoded (perhaps resized) and written natively or as a new JPEG.
    Decoded,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Kept => "kept",
            Path::Transformed => "transformed",
            Path::Decoded => "decoded",
        }
    }
}

/// The camera's JPEG is kept when the settings ask for originals as JPEG Baseline and the
/// file is an 8-bit gray JPEG or a YCbCr one with subsampled chroma (see
/// [`jpeg::Header::route`]). Without subsampling (4:4:4) it would be YBR_FULL, which neither
/// the Secondary Capture nor the VL Photographic Image IOD allows: such a photo is
/// re-encoded as 4:2:2 instead.
fn kept_header(probe: &Probe, opts: &Options) -> Option<jpeg::Header> {
    if opts.resize_max != 0 || opts.dicom.transfer_syntax != TransferSyntax::JpegBaseline {
        return None;
    }
    let header = probe.jpeg?;
    if header.components != 1 && !header.subsampled() {
        return None;
    }
    header.route().map(|_| header)
}

/// The memory converting a probed photo of `file_len` bytes needs, or its refusal when that
/// is more than one conversion may hold.
pub fn memory_needed(probe: &Probe, file_len: u64, opts: &Options) -> Result<u64, ConvertError> {
    let decoding = probe.memory_needed(file_len, opts.resize_max);
    let needed = match kept_header(probe, opts) {
        // Keeping is what happens; decoding only if libjpeg-turbo refuses the transform,
        // so its memory is set aside too when the budget allows it, and otherwise that
        // fallback is refused.
        Some(header) => {
            let keeping = header.memory_needed(file_len);
            if decoding <= opts.memory_budget {
                keeping.max(decoding)
            } else {
                keeping
            }
        }
        None => decoding,
    };
    if needed > opts.memory_budget {
        return Err(too_large(probe, needed, opts));
    }
    Ok(needed)
}

/// About the memory keeping a 48-megapixel phone JPEG (8064x6048, 4:2:0, 20 MB) turned
/// upright by its EXIF orientation needs: what a box set to original sizes must allow.
pub fn memory_for_turned_48mp() -> u64 {
    let header = jpeg::Header {
        sof: 0xC0,
        precision: 8,
        width: 8064,
        height: 6048,
        components: 3,
        ids: [1, 2, 3, 0],
        sampling: [(2, 2), (1, 1), (1, 1), (1, 1)],
        adobe_transform: None,
        orientation: 6,
        scans: 1,
    };
    header.memory_needed(20 << 20)
}

fn too_large(probe: &Probe, needed: u64, opts: &Options) -> ConvertError {
    const MB: u64 = 1024 * 1024;
    ConvertError::TooLargeToDecode {
        width: probe.width,
        height: probe.height,
        needed_mb: needed.div_ceil(MB),
        budget_mb: opts.memory_budget / MB,
    }
}

/// Converts one photo taken at `site`. `probe` must come from [`probe`] on the same bytes.
pub fn convert(
    bytes: &[u8],
    probe: &Probe,
    study: &Study,
    ids: &InstanceIds,
    site: Option<&Site>,
    opts: &Options,
) -> Result<Converted, ConvertError> {
    memory_needed(probe, bytes.len() as u64, opts)?;
    if let Some(header) = kept_header(probe, opts) {
        match jpeg::keep(bytes, &header) {
            Ok(original) => {
                let path = match original.route {
                    Route::Verbatim => Path::Kept,
                    Route::Transform(_) => Path::Transformed,
                };
                let w = object::write(study, ids, site, Pixels::Jpeg(original), &opts.dicom)?;
                return Ok(converted(w, path));
            }
            Err(e) => {
                // Decoding and re-encoding still gives the photo; the object says it was
                // re-encoded. The reason names no patient data.
                log::warn!(reason = e.to_string().as_str(); "camera JPEG not kept; re-encoding it");
                let decoding = probe.memory_needed(bytes.len() as u64, 0);
                if decoding > opts.memory_budget {
                    return Err(too_large(probe, decoding, opts));
                }
            }
        }
    }
    let image = photo::decode(bytes, probe, opts.resize_max)?;
    // Turning upright is not a change of pixel values; resizing is.
    let (w, h) = (probe.width, probe.height);
    let size = (image.width(), image.height());
    let derivation = (size != (w, h) && size != (h, w))
        .then(|| format!("Resized from {w}x{h} to {}x{} pixels", size.0, size.1));
    let pixels = Pixels::Decoded {
        image,
        source_lossy_ratio: probe.source_lossy_ratio,
        derivation,
    };
    let w = object::write(study, ids, site, pixels, &opts.dicom)?;
    Ok(converted(w, Path::Decoded))
}

fn converted(w: object::Written, path: Path) -> Converted {
    Converted {
        dicom: w.dicom,
        rows: w.rows,
        columns: w.columns,
        transfer_syntax: w.transfer_syntax,
        sop_class_uid: w.sop_class_uid,
        path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Charset, TransferSyntax};
    use crate::study::{Exam, Patient, Sex};
    use chrono::{DateTime, NaiveDate};
    use dicom_dictionary_std::tags;
    use std::io::Cursor;

    fn study() -> Study {
        Study {
            patient: Patient {
                id: "P-001".into(),
                name: "王大明".into(),
                birth_date: NaiveDate::from_ymd_opt(1990, 1, 15),
                sex: Sex::Male,
                issuer: String::new(),
            },
            exam: Exam {
                time: DateTime::parse_from_rfc3339("2026-11-27T09:15:00+08:00").unwrap(),
                description: "Skin photo".into(),
                clock_correction: chrono::Duration::zero(),
            },
            order: None,
        }
    }

    fn ids(n: u32) -> InstanceIds {
        InstanceIds {
            study_uid: "2.25.1".into(),
            series_uid: "2.25.2".into(),
            sop_uid: format!("2.25.3{n}"),
            number: n,
            created: DateTime::parse_from_rfc3339("2026-11-28T10:00:00+08:00").unwrap(),
        }
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn read(bytes: &[u8]) -> dicom_object::DefaultDicomObject {
        dicom_object::from_reader(&bytes[128..]).unwrap()
    }

    fn opts(ts: TransferSyntax, info: bool) -> Options {
        let s = Settings {
            local_transfer_syntax: ts,
            flag_include_patient_info_except_id: info,
            flag_include_exam_description: info,
            local_resize_max: 64,
            ..Default::default()
        };
        Options::from_settings(&s, 1 << 30, 1 << 30)
    }

    #[test]
    fn object_reads_back_with_values_and_size() {
        for ts in TransferSyntax::ALL {
            let bytes = png(101, 50);
            let p = probe(&bytes, 1 << 30).unwrap();
            let out = convert(&bytes, &p, &study(), &ids(2), None, &opts(ts, true)).unwrap();
            assert_eq!((out.columns, out.rows), (64, 32));
            let obj = read(&out.dicom);
            let get = |t| {
                obj.element(t)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim_end()
                    .to_string()
            };
            assert_eq!(obj.meta().transfer_syntax(), ts.uid());
            assert_eq!(obj.meta().media_storage_sop_instance_uid(), "2.25.32");
            assert_eq!(get(tags::PATIENT_NAME), "王大明");
            assert_eq!(get(tags::PATIENT_ID), "P-001");
            assert_eq!(get(tags::PATIENT_BIRTH_DATE), "19900115");
            assert_eq!(get(tags::STUDY_DATE), "20261127");
            assert_eq!(get(tags::STUDY_TIME), "091500");
            assert_eq!(get(tags::TIMEZONE_OFFSET_FROM_UTC), "+0800");
            assert_eq!(get(tags::INSTANCE_NUMBER), "2");
            assert_eq!(get(tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
            assert_eq!(
                obj.element(tags::ROWS).unwrap().to_int::<u16>().unwrap(),
                32
            );
            let pixel_data = obj.element(tags::PIXEL_DATA).unwrap();
            if ts.is_encapsulated() {
                let fragments = pixel_data.value().fragments().unwrap();
                assert_eq!(fragments.len(), 1);
                assert!(
                    fragments[0].starts_with(&[0xFF, 0xD8]) && fragments[0].len().is_multiple_of(2)
                );
                assert_eq!(get(tags::PHOTOMETRIC_INTERPRETATION), "YBR_FULL_422");
                assert_eq!(get(tags::LOSSY_IMAGE_COMPRESSION), "01");
            } else {
                assert_eq!(pixel_data.to_bytes().unwrap().len(), 64 * 32 * 3);
                assert_eq!(get(tags::LOSSY_IMAGE_COMPRESSION), "00");
                assert_eq!(get(tags::PHOTOMETRIC_INTERPRETATION), "RGB");
            }
        }
    }

    #[test]
    fn an_order_gives_accession_issuer_and_one_request_attributes_item() {
        let mut s = study();
        s.patient.issuer = "HOSP".into();
        s.order = Some(crate::study::Order {
            study_instance_uid: "1.2.3.4.5".into(),
            accession_number: "ACC-77".into(),
            requested_procedure_id: "RP1".into(),
            requested_procedure_description: "Wound photo".into(),
            step_id: "SPS1".into(),
            step_description: "Left heel".into(),
            protocol_codes: vec![crate::study::Code {
                value: "WOUND".into(),
                scheme: "99LOCAL".into(),
                meaning: "Wound photography".into(),
            }],
        });
        let bytes = png(8, 8);
        let p = probe(&bytes, 1 << 30).unwrap();
        let mut i = ids(1);
        i.study_uid = s.study_uid(&crate::dicom::uid::UidRoot::default());
        assert_eq!(i.study_uid, "1.2.3.4.5", "the order's UID, never a new one");
        let out = convert(
            &bytes,
            &p,
            &s,
            &i,
            None,
            &opts(TransferSyntax::ExplicitVrLittleEndian, true),
        )
        .unwrap();
        let obj = read(&out.dicom);
        let text = |o: &dicom_object::InMemDicomObject, t| {
            o.element(t)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end()
                .to_string()
        };
        assert_eq!(text(&obj, tags::ACCESSION_NUMBER), "ACC-77");
        assert_eq!(text(&obj, tags::ISSUER_OF_PATIENT_ID), "HOSP");
        assert_eq!(
            text(&obj, tags::STUDY_INSTANCE_UID).trim_end_matches('\0'),
            "1.2.3.4.5"
        );
        let items = obj
            .element(tags::REQUEST_ATTRIBUTES_SEQUENCE)
            .unwrap()
            .items()
            .unwrap();
        assert_eq!(items.len(), 1);
        let item = &items[0];
        assert_eq!(text(item, tags::REQUESTED_PROCEDURE_ID), "RP1");
        assert_eq!(text(item, tags::SCHEDULED_PROCEDURE_STEP_ID), "SPS1");
        assert_eq!(text(item, tags::ACCESSION_NUMBER), "ACC-77");
        let code = &item
            .element(tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert_eq!(text(code, tags::CODE_VALUE), "WOUND");
        assert_eq!(text(code, tags::CODING_SCHEME_DESIGNATOR), "99LOCAL");
    }

    #[test]
    fn flags_off_leave_attributes_present_but_empty() {
        let bytes = png(8, 8);
        let p = probe(&bytes, 1 << 30).unwrap();
        let out = convert(
            &bytes,
            &p,
            &study(),
            &ids(1),
            None,
            &opts(TransferSyntax::ExplicitVrLittleEndian, false),
        )
        .unwrap();
        let obj = read(&out.dicom);
        for tag in [
            tags::PATIENT_NAME,
            tags::PATIENT_BIRTH_DATE,
            tags::PATIENT_SEX,
            tags::STUDY_DESCRIPTION,
        ] {
            assert_eq!(
                obj.element(tag).unwrap().to_str().unwrap().trim(),
                "",
                "{tag}"
            );
        }
        assert_eq!(
            obj.element(tags::PATIENT_ID).unwrap().to_str().unwrap(),
            "P-001"
        );
    }

    #[test]
    fn latin1_names_are_written_in_latin1() {
        let mut s = study();
        s.patient.name = "Müller^Jörg".into();
        let bytes = png(4, 4);
        let p = probe(&bytes, 1 << 30).unwrap();
        let mut o = opts(TransferSyntax::ExplicitVrLittleEndian, true);
        o.dicom.charset = Charset::IsoIr100;
        let out = convert(&bytes, &p, &s, &ids(1), None, &o).unwrap();
        assert!(out.dicom.windows(11).any(|w| w == b"M\xfcller^J\xf6rg"));
        let obj = read(&out.dicom);
        assert_eq!(
            obj.element(tags::PATIENT_NAME)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end(),
            "Müller^Jörg"
        );
    }
}
