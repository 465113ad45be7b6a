//! The test photos and helpers to convert them and compare pixels.

use chrono::DateTime;
use dicom_dictionary_std::tags;
use image::{DynamicImage, GenericImageView};
use photo_pacs::config::{Settings, TransferSyntax};
use photo_pacs::convert::{self, ConvertError, Converted, InstanceIds, Options};
use photo_pacs::study::{Exam, Patient, Sex, Study};

/// Every test photo the gateway must accept, with its upright size.
pub const ACCEPTED: &[(&str, (u32, u32))] = &[
    ("pillow_flower.jpg", (480, 360)),
    ("pillow_iptc.jpg", (640, 480)),
    ("pillow_empty_gps_ifd.jpg", (10, 10)),
    ("pillow_hopper.jpg", (128, 128)),
    ("pillow_hopper_gray.jpg", (128, 128)),
    ("pillow_hopper_orientation_2.jpg", (128, 128)),
    ("pillow_hopper_orientation_3.jpg", (128, 128)),
    ("pillow_hopper_orientation_4.jpg", (128, 128)),
    ("pillow_hopper_orientation_5.jpg", (128, 128)),
    ("pillow_hopper_orientation_6.jpg", (128, 128)),
    ("pillow_hopper_orientation_7.jpg", (128, 128)),
    ("pillow_hopper_orientation_8.jpg", (128, 128)),
    ("pillow_pil_sample_cmyk.jpg", (100, 100)),
    ("pillow_frame_size.mpo", (56, 70)),
    ("pillow_transparent.png", (200, 150)),
    ("pillow_i_trns.png", (64, 64)),
    ("pillow_16bit.cropped.tif", (64, 64)),
    ("pillow_hopper.tif", (128, 128)),
    ("pillow_hopper.bmp", (128, 128)),
    ("pillow_hopper.webp", (128, 128)),
    ("pillow_flower.webp", (480, 360)),
];

pub fn study() -> Study {
    Study {
        patient: Patient {
            id: "A123456".into(),
            name: "王大明".into(),
            birth_date: chrono::NaiveDate::from_ymd_opt(1990, 1, 15),
            sex: Sex::Male,
            issuer: String::new(),
        },
        exam: Exam {
            time: DateTime::parse_from_rfc3339("2026-11-27T09:15:00+08:00").unwrap(),
            description: "傷口 wound check".into(),
            clock_correction: chrono::Duration::zero(),
        },
        order: None,
    }
}

pub fn options(ts: TransferSyntax, resize_max: u32) -> Options {
    let s = Settings {
        local_transfer_syntax: ts,
        local_resize_max: resize_max,
        ..Settings::default()
    };
    Options::from_settings(&s, 100_000_000, 128 << 20)
}

pub fn convert_bytes(
    bytes: &[u8],
    ts: TransferSyntax,
    resize_max: u32,
) -> Result<Converted, ConvertError> {
    let probe = convert::probe(bytes, 100_000_000)?;
    let ids = InstanceIds {
        study_uid: "2.25.1".into(),
        series_uid: "2.25.2".into(),
        sop_uid: "2.25.3".into(),
        number: 1,
        created: DateTime::parse_from_rfc3339("2026-11-28T10:00:00+08:00").unwrap(),
    };
    convert::convert(
        bytes,
        &probe,
        &study(),
        &ids,
        None,
        &options(ts, resize_max),
    )
}

/// The native pixels of an uncompressed object, as an image.
pub fn pixels(c: &Converted) -> DynamicImage {
    let obj = dicom_object::from_reader(&c.dicom[128..]).unwrap();
    let samples = obj
        .element(tags::SAMPLES_PER_PIXEL)
        .unwrap()
        .to_int::<u16>()
        .unwrap();
    let mut data = obj
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .to_vec();
    data.truncate((c.rows * c.columns * u32::from(samples)) as usize);
    match samples {
        1 => DynamicImage::ImageLuma8(image::GrayImage::from_raw(c.columns, c.rows, data).unwrap()),
        _ => DynamicImage::ImageRgb8(image::RgbImage::from_raw(c.columns, c.rows, data).unwrap()),
    }
}

pub fn mean_abs_diff(a: &DynamicImage, b: &DynamicImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

/// Peak signal-to-noise ratio in dB between two 8-bit images of the same size.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0_f64 * 255.0 / mse).log10()
    }
}
