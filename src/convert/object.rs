//! The DICOM object for one photo, written as a file: a Secondary Capture Image (PS3.3
//! A.8.1) or a VL Photographic Image (A.32.4), with where on the body it was taken.

use chrono::{DateTime, FixedOffset};
use dicom_core::value::{DataSetSequence, PixelFragmentSequence};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, meta::FileMetaTableBuilder};
use image::DynamicImage;

use super::jpeg::Original;
use super::{ConvertError, uid};
use crate::anatomy::{Coding, Side, Site};
use crate::config::{Charset, TransferSyntax};
use crate::dicom::Iod;
use crate::study::{Code, Order, Study};

/// How the object is written; from the runtime settings.
#[derive(Clone, Debug)]
pub struct DicomOptions {
    pub transfer_syntax: TransferSyntax,
    pub charset: Charset,
    pub modality: String,
    /// Off: Patient's Name, Birth Date and Sex are present but empty.
    pub include_patient_info: bool,
    /// Off: Study Description is present but empty.
    pub include_description: bool,
    pub iod: Iod,
    /// Which SNOMED CT concept stands for a body site.
    pub site_coding: Coding,
}

/// The pixels an object carries, moved in: the object's pixel data takes them over
/// rather than copying them (a 12-megapixel photo is 36 MB at original size).
pub enum Pixels {
    /// Decoded pixels (upright and sized; `Luma8` or `Rgb8`), written natively or encoded
    /// as a new JPEG as the transfer syntax says.
    Decoded {
        image: DynamicImage,
        /// The compression ratio of a JPEG source, if it was one.
        source_lossy_ratio: Option<f64>,
        /// What was done to the camera's pixels on the way, when anything changed them
        /// (Derivation Description); `None` keeps them ORIGINAL in a VL Photographic Image.
        derivation: Option<String>,
    },
    /// The camera's own JPEG, kept as it is: always JPEG Baseline.
    Jpeg(Original),
}

/// One written object.
#[derive(Debug)]
pub struct Written {
    pub dicom: Vec<u8>,
    pub rows: u32,
    pub columns: u32,
    pub transfer_syntax: TransferSyntax,
    pub sop_class_uid: &'static str,
}

/// The identity of one object within its study.
#[derive(Clone, Debug)]
pub struct InstanceIds {
    pub study_uid: String,
    pub series_uid: String,
    pub sop_uid: String,
    /// 1-based position in the submission.
    pub number: u32,
    /// When the object is made (Instance Creation Date/Time).
    pub created: DateTime<FixedOffset>,
}

/// JPEG quality for the JPEG Baseline transfer syntax. The Secondary Capture IOD allows
/// only YBR_FULL_422 for YCbCr data, so colour is subsampled 4:2:2; at 98 the photographs
/// in our test corpus decode at 40 dB PSNR or better in dcmtk and pydicom, which 95 and
/// below do not quite reach on finely detailed pictures. Still about a sixth of the size.
pub const JPEG_QUALITY: u8 = 98;

/// Writes one photo as a complete DICOM file. `site` is where on the body it was taken.
pub fn write(
    study: &Study,
    ids: &InstanceIds,
    site: Option<&Site>,
    pixels: Pixels,
    opts: &DicomOptions,
) -> Result<Written, ConvertError> {
    let vl = opts.iod == Iod::VlPhotographic;
    // The pixel data and what describes it, decided first: the rest of the object follows.
    let frame = Frame::new(pixels, opts.transfer_syntax)?;
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag: Tag, vr: VR, value: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, value));
    };
    let text = |s: &str| PrimitiveValue::from(s.to_string());
    let empty = || PrimitiveValue::Empty;
    let exam = &study.exam.time;
    let patient = &study.patient;

    // SOP Common
    put(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        text(opts.charset.code()),
    );
    put(tags::SOP_CLASS_UID, VR::UI, text(opts.iod.sop_class_uid()));
    put(tags::SOP_INSTANCE_UID, VR::UI, text(&ids.sop_uid));
    put(
        tags::INSTANCE_CREATION_DATE,
        VR::DA,
        text(&da(&ids.created)),
    );
    put(
        tags::INSTANCE_CREATION_TIME,
        VR::TM,
        text(&tm(&ids.created)),
    );
    put(
        tags::TIMEZONE_OFFSET_FROM_UTC,
        VR::SH,
        text(&exam.format("%z").to_string()),
    );

    // Patient
    let info = opts.include_patient_info;
    put(
        tags::PATIENT_NAME,
        VR::PN,
        if info { text(&patient.name) } else { empty() },
    );
    put(tags::PATIENT_ID, VR::LO, text(&patient.id));
    if !patient.issuer.is_empty() {
        put(tags::ISSUER_OF_PATIENT_ID, VR::LO, text(&patient.issuer));
    }
    let birth = patient
        .birth_date
        .filter(|_| info)
        .map(|d| d.format("%Y%m%d").to_string());
    put(
        tags::PATIENT_BIRTH_DATE,
        VR::DA,
        birth.map(PrimitiveValue::from).unwrap_or_else(empty),
    );
    put(
        tags::PATIENT_SEX,
        VR::CS,
        if info {
            text(patient.sex.dicom_code())
        } else {
            empty()
        },
    );

    // General Study: Type 2 attributes we have no value for are present and empty.
    put(tags::STUDY_INSTANCE_UID, VR::UI, text(&ids.study_uid));
    put(tags::STUDY_DATE, VR::DA, text(&da(exam)));
    put(tags::STUDY_TIME, VR::TM, text(&tm(exam)));
    put(tags::REFERRING_PHYSICIAN_NAME, VR::PN, empty());
    put(tags::STUDY_ID, VR::SH, empty());
    let accession = study
        .order
        .as_ref()
        .map(|o| o.accession_number.as_str())
        .unwrap_or("");
    put(tags::ACCESSION_NUMBER, VR::SH, text(accession));
    let description = if opts.include_description {
        text(&study.exam.description)
    } else {
        empty()
    };
    put(tags::STUDY_DESCRIPTION, VR::LO, description);

    // General Series. The series-level Laterality (0020,0060) is left out: photos of one
    // submission may show different sides, so each says its own in Image Laterality.
    // A VL Photographic Image is Modality XC whatever the setting says (PS3.3 A.32.4.3.1).
    let modality = if vl { "XC" } else { opts.modality.as_str() };
    put(tags::MODALITY, VR::CS, text(modality));
    put(tags::SERIES_INSTANCE_UID, VR::UI, text(&ids.series_uid));
    put(tags::SERIES_NUMBER, VR::IS, text("1"));

    // General Equipment
    put(tags::MANUFACTURER, VR::LO, text("Photo PACS"));
    put(
        tags::SOFTWARE_VERSIONS,
        VR::LO,
        text(concat!("photo-pacs ", env!("CARGO_PKG_VERSION"))),
    );
    if !vl {
        // SC Equipment. Conversion Type DI ("digital interface"): the picture was made by
        // a digital camera and reaches us as a digital file, which is what DI describes;
        // DV is for frames grabbed from a video signal, WSD for screenshots.
        put(tags::CONVERSION_TYPE, VR::CS, text("DI"));
        put(
            tags::DATE_OF_SECONDARY_CAPTURE,
            VR::DA,
            text(&da(&ids.created)),
        );
        put(
            tags::TIME_OF_SECONDARY_CAPTURE,
            VR::TM,
            text(&tm(&ids.created)),
        );
    }

    // General Image
    put(tags::INSTANCE_NUMBER, VR::IS, text(&ids.number.to_string()));
    put(tags::PATIENT_ORIENTATION, VR::CS, empty());
    put(tags::CONTENT_DATE, VR::DA, text(&da(exam)));
    put(tags::CONTENT_TIME, VR::TM, text(&tm(exam)));
    // The photo was taken when the exam was: the phone's time, or the one the user gave.
    put(tags::ACQUISITION_DATE, VR::DA, text(&da(exam)));
    put(tags::ACQUISITION_TIME, VR::TM, text(&tm(exam)));
    let image_type = match (vl, &frame.derivation) {
        // A Secondary Capture is by definition a secondary, derived image.
        (false, _) => "DERIVED\\SECONDARY",
        (true, None) => "ORIGINAL\\PRIMARY",
        (true, Some(_)) => "DERIVED\\PRIMARY",
    };
    put(tags::IMAGE_TYPE, VR::CS, text(image_type));
    if let (true, Some(how)) = (vl, &frame.derivation) {
        put(tags::DERIVATION_DESCRIPTION, VR::ST, text(how));
    }
    put(tags::BURNED_IN_ANNOTATION, VR::CS, text("NO"));
    // Always present: U says "unknown or unpaired" rather than leaving readers to guess.
    put(
        tags::IMAGE_LATERALITY,
        VR::CS,
        text(Side::image_laterality(site.and_then(|s| s.side))),
    );
    if let Some(site) = site {
        if let Some(term) = site.region.and_then(|r| r.body_part) {
            put(tags::BODY_PART_EXAMINED, VR::CS, text(term));
        }
        if !site.note.is_empty() {
            put(tags::IMAGE_COMMENTS, VR::LT, text(&site.note));
        }
    }

    // Every lossy step the pixels went through, oldest first (PS3.3 C.7.6.1.1.5).
    if frame.lossy.is_empty() {
        put(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, text("00"));
    } else {
        put(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, text("01"));
        let ratios: Vec<String> = frame.lossy.iter().map(|r| format!("{r:.2}")).collect();
        let methods = vec!["ISO_10918_1"; frame.lossy.len()];
        put(
            tags::LOSSY_IMAGE_COMPRESSION_RATIO,
            VR::DS,
            text(&ratios.join("\\")),
        );
        put(
            tags::LOSSY_IMAGE_COMPRESSION_METHOD,
            VR::CS,
            text(&methods.join("\\")),
        );
    }

    // Image Pixel
    put(
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(frame.samples),
    );
    put(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        text(frame.photometric),
    );
    if frame.samples == 3 {
        put(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(0_u16),
        );
    }
    put(tags::ROWS, VR::US, PrimitiveValue::from(dim(frame.rows)?));
    put(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(dim(frame.columns)?),
    );
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8_u16));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(8_u16));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7_u16));
    put(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0_u16),
    );

    if let Some(region) = site.and_then(|s| anatomic_region(s, opts.site_coding)) {
        obj.put(DataElement::new(
            tags::ANATOMIC_REGION_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![region]),
        ));
    }
    if vl {
        // Acquisition Context (Type 2): nothing is known about the acquisition context.
        obj.put(DataElement::new(
            tags::ACQUISITION_CONTEXT_SEQUENCE,
            VR::SQ,
            DataSetSequence::<InMemDicomObject>::empty(),
        ));
    }
    // General Series: the order this study fulfils.
    if let Some(order) = &study.order {
        obj.put(DataElement::new(
            tags::REQUEST_ATTRIBUTES_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![request_attributes(order)]),
        ));
    }

    let (rows, columns, transfer_syntax) = (frame.rows, frame.columns, frame.transfer_syntax);
    let capacity = frame.data_len() + 4096;
    match frame.data {
        FrameData::Native(mut data) => {
            if data.len() % 2 == 1 {
                // Values have even length; the pad byte is not a pixel.
                data.push(0);
            }
            obj.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                PrimitiveValue::from(data),
            ));
        }
        FrameData::Jpeg(mut jpeg) => {
            if jpeg.len() % 2 == 1 {
                // Fragments have even length; a trailing zero after EOI is the allowed pad.
                jpeg.push(0);
            }
            // One frame, so the Basic Offset Table holds the single offset 0.
            let seq = PixelFragmentSequence::new(vec![0_u32], vec![jpeg]);
            obj.put(DataElement::new(tags::PIXEL_DATA, VR::OB, seq));
        }
    }

    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(transfer_syntax.uid())
        .implementation_class_uid(uid::IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(concat!("PHOTOPACS_", env!("CARGO_PKG_VERSION")));
    let file = obj
        .with_meta(meta)
        .map_err(|e| ConvertError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(capacity);
    file.write_all(&mut out)
        .map_err(|e| ConvertError::Encode(e.to_string()))?;
    Ok(Written {
        dicom: out,
        rows,
        columns,
        transfer_syntax,
        sop_class_uid: opts.iod.sop_class_uid(),
    })
}

/// The pixel data, ready to write, and the attributes that describe it.
struct Frame {
    data: FrameData,
    rows: u32,
    columns: u32,
    samples: u16,
    photometric: &'static str,
    transfer_syntax: TransferSyntax,
    /// Compression ratios of the lossy steps, oldest first.
    lossy: Vec<f64>,
    derivation: Option<String>,
}

enum FrameData {
    Native(Vec<u8>),
    Jpeg(Vec<u8>),
}

impl Frame {
    fn new(pixels: Pixels, transfer_syntax: TransferSyntax) -> Result<Frame, ConvertError> {
        match pixels {
            Pixels::Jpeg(original) => {
                let h = &original.header;
                let (rows, columns) = (u32::from(h.height), u32::from(h.width));
                let samples = u16::from(h.components);
                let photometric = match (samples, h.subsampled()) {
                    (1, _) => "MONOCHROME2",
                    // PS3.5 8.2.1: YBR_FULL_422 for subsampled chroma (4:2:2 or 4:2:0).
                    (_, true) => "YBR_FULL_422",
                    // YBR_FULL, which no image IOD we write allows: never kept (see
                    // `convert::keep_route`).
                    (_, false) => {
                        return Err(ConvertError::Encode(
                            "a JPEG without chroma subsampling cannot be kept as it is".into(),
                        ));
                    }
                };
                let raw = u64::from(rows) * u64::from(columns) * u64::from(samples);
                Ok(Frame {
                    lossy: vec![raw as f64 / original.data.len().max(1) as f64],
                    data: FrameData::Jpeg(original.data),
                    rows,
                    columns,
                    samples,
                    photometric,
                    transfer_syntax: TransferSyntax::JpegBaseline,
                    // Dropping the partial edge blocks crops the picture a little; the
                    // values of the pixels left are the camera's.
                    derivation: match original.trimmed {
                        (0, 0) => None,
                        (w, h) => Some(format!(
                            "Turned upright losslessly; {w} columns and {h} rows of partial edge blocks dropped"
                        )),
                    },
                })
            }
            Pixels::Decoded {
                image,
                source_lossy_ratio,
                derivation,
            } => {
                let gray = matches!(image, DynamicImage::ImageLuma8(_));
                if !gray && !matches!(image, DynamicImage::ImageRgb8(_)) {
                    return Err(ConvertError::Encode(
                        "pixels must be 8-bit gray or RGB".into(),
                    ));
                }
                let (rows, columns) = (image.height(), image.width());
                let mut lossy: Vec<f64> = source_lossy_ratio.into_iter().collect();
                let mut derivation = derivation;
                let (data, photometric) = if transfer_syntax.is_encapsulated() {
                    let jpeg = encode_jpeg(&image, gray)?;
                    lossy.push(image.as_bytes().len() as f64 / jpeg.len().max(1) as f64);
                    let step = format!("JPEG Baseline encoding at quality {JPEG_QUALITY}");
                    derivation = Some(match derivation {
                        Some(d) => format!("{d}; {step}"),
                        None => step,
                    });
                    // Our encoder subsamples chroma horizontally (4:2:2), as this term says.
                    let photometric = if gray { "MONOCHROME2" } else { "YBR_FULL_422" };
                    (FrameData::Jpeg(jpeg), photometric)
                } else {
                    let photometric = if gray { "MONOCHROME2" } else { "RGB" };
                    (FrameData::Native(image.into_bytes()), photometric)
                };
                Ok(Frame {
                    data,
                    rows,
                    columns,
                    samples: if gray { 1 } else { 3 },
                    photometric,
                    transfer_syntax,
                    lossy,
                    derivation,
                })
            }
        }
    }

    fn data_len(&self) -> usize {
        match &self.data {
            FrameData::Native(d) | FrameData::Jpeg(d) => d.len(),
        }
    }
}

/// The one Anatomic Region Sequence item: the region's SNOMED CT code and, for a side, one
/// Anatomic Region Modifier Sequence item (CID 244).
fn anatomic_region(site: &Site, coding: Coding) -> Option<InMemDicomObject> {
    let (value, meaning) = site.concept(coding)?;
    let mut item = code_item(&Code {
        value: value.into(),
        scheme: "SCT".into(),
        meaning: meaning.into(),
    });
    if let Some(side) = site.side {
        let (value, meaning) = side.modifier();
        let modifier = code_item(&Code {
            value: value.into(),
            scheme: "SCT".into(),
            meaning: meaning.into(),
        });
        item.put(DataElement::new(
            tags::ANATOMIC_REGION_MODIFIER_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![modifier]),
        ));
    }
    Some(item)
}

/// The one Request Attributes Sequence item (PS3.3 Table 10-9) for the order a study
/// fulfils: how the PACS ties the objects to the requested procedure and step. Values the
/// worklist left empty are left out rather than written empty, as most of them are 1C or 3.
fn request_attributes(order: &Order) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    let mut put = |tag: Tag, vr: VR, value: &str| {
        if !value.is_empty() {
            item.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
        }
    };
    put(
        tags::REQUESTED_PROCEDURE_ID,
        VR::SH,
        &order.requested_procedure_id,
    );
    put(tags::ACCESSION_NUMBER, VR::SH, &order.accession_number);
    put(tags::STUDY_INSTANCE_UID, VR::UI, &order.study_instance_uid);
    put(
        tags::REQUESTED_PROCEDURE_DESCRIPTION,
        VR::LO,
        &order.requested_procedure_description,
    );
    put(tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH, &order.step_id);
    put(
        tags::SCHEDULED_PROCEDURE_STEP_DESCRIPTION,
        VR::LO,
        &order.step_description,
    );
    if !order.protocol_codes.is_empty() {
        let codes = order
            .protocol_codes
            .iter()
            .map(code_item)
            .collect::<Vec<_>>();
        item.put(DataElement::new(
            tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(codes),
        ));
    }
    item
}

/// A Code Sequence item; a value longer than a Short String goes in Long Code Value.
fn code_item(code: &Code) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    let value_tag = if code.value.chars().count() > 16 {
        (tags::LONG_CODE_VALUE, VR::UC)
    } else {
        (tags::CODE_VALUE, VR::SH)
    };
    item.put(DataElement::new(
        value_tag.0,
        value_tag.1,
        PrimitiveValue::from(code.value.as_str()),
    ));
    item.put(DataElement::new(
        tags::CODING_SCHEME_DESIGNATOR,
        VR::SH,
        PrimitiveValue::from(if code.scheme.is_empty() {
            "L"
        } else {
            code.scheme.as_str()
        }),
    ));
    item.put(DataElement::new(
        tags::CODE_MEANING,
        VR::LO,
        PrimitiveValue::from(if code.meaning.is_empty() {
            code.value.as_str()
        } else {
            code.meaning.as_str()
        }),
    ));
    item
}

fn encode_jpeg(pixels: &DynamicImage, gray: bool) -> Result<Vec<u8>, ConvertError> {
    let err = |e: jpeg_encoder::EncodingError| ConvertError::Encode(format!("JPEG encoding: {e}"));
    let (w, h) = (dim(pixels.width())?, dim(pixels.height())?);
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_2);
    let color = if gray {
        jpeg_encoder::ColorType::Luma
    } else {
        jpeg_encoder::ColorType::Rgb
    };
    encoder
        .encode(pixels.as_bytes(), w, h, color)
        .map_err(err)?;
    Ok(out)
}

fn dim(n: u32) -> Result<u16, ConvertError> {
    u16::try_from(n).map_err(|_| {
        ConvertError::Decode(format!(
            "{n} pixels is more than a DICOM image can be wide or tall (65535); set a resize limit"
        ))
    })
}

fn da(t: &DateTime<FixedOffset>) -> String {
    t.format("%Y%m%d").to_string()
}

fn tm(t: &DateTime<FixedOffset>) -> String {
    t.format("%H%M%S").to_string()
}
