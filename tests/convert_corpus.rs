//! The converter over real photos (tests/data, see its ORIGIN.md): every format, EXIF
//! orientation, grayscale and alpha handling, truncated files, and every transfer syntax.

mod common;

use common::corpus::*;
use dicom_dictionary_std::tags;
use image::DynamicImage;
use photo_pacs::config::TransferSyntax;
use photo_pacs::convert::{self, ConvertError};

#[test]
fn every_accepted_photo_converts_in_every_transfer_syntax() {
    for (name, (w, h)) in ACCEPTED {
        let bytes = common::read_data(name);
        for ts in TransferSyntax::ALL {
            let c =
                convert_bytes(&bytes, ts, 1024).unwrap_or_else(|e| panic!("{name} in {ts:?}: {e}"));
            assert_eq!((c.columns, c.rows), (*w, *h), "{name}");
            let obj = dicom_object::from_reader(&c.dicom[128..]).unwrap();
            assert_eq!(obj.meta().transfer_syntax(), ts.uid());
            let lossy = obj
                .element(tags::LOSSY_IMAGE_COMPRESSION)
                .unwrap()
                .to_str()
                .unwrap();
            let source_is_jpeg = name.ends_with(".jpg") || name.ends_with(".mpo");
            let expect = if source_is_jpeg || ts.is_encapsulated() {
                "01"
            } else {
                "00"
            };
            assert_eq!(lossy.trim(), expect, "{name} {ts:?}");
        }
    }
}

#[test]
fn no_exif_xmp_or_maker_data_reaches_the_object() {
    // Camera makers and models from the photos' EXIF blocks, and the EXIF/XMP signatures.
    for (name, markers) in [
        ("pillow_flower.jpg", &["Canon", "Exif"][..]),
        ("pillow_iptc.jpg", &["Nokia", "Exif", "Photoshop"][..]),
        ("pillow_empty_gps_ifd.jpg", &["Xiaomi", "Redmi", "Exif"][..]),
        ("pillow_frame_size.mpo", &["Apple", "iPhone", "Exif"][..]),
        ("pillow_flower.webp", &["Canon", "Exif"][..]),
    ] {
        let source = common::read_data(name);
        for ts in TransferSyntax::ALL {
            let c = convert_bytes(&source, ts, 1024).unwrap();
            for m in markers {
                let found = c.dicom.windows(m.len()).any(|w| w == m.as_bytes());
                assert!(!found, "{name} in {ts:?} carries {m:?}");
            }
        }
        let in_source = markers
            .iter()
            .any(|m| source.windows(m.len()).any(|w| w == m.as_bytes()));
        assert!(
            in_source,
            "{name}: the check looks for something the source has"
        );
    }
}

#[test]
fn exif_orientation_2_to_8_comes_out_upright() {
    let upright = pixels(
        &convert_bytes(
            &common::read_data("pillow_hopper.jpg"),
            TransferSyntax::ExplicitVrLittleEndian,
            0,
        )
        .unwrap(),
    );
    let mut report = Vec::new();
    for n in 2..=8 {
        let name = format!("pillow_hopper_orientation_{n}.jpg");
        let c = convert_bytes(
            &common::read_data(&name),
            TransferSyntax::ExplicitVrLittleEndian,
            0,
        )
        .unwrap();
        let mad = mean_abs_diff(&pixels(&c), &upright);
        report.push(format!(
            "orientation {n}: mean absolute difference {mad:.2}"
        ));
        // The files are separate JPEG encodings of one picture: a few levels of noise. A
        // wrong turn or flip differs by tens of levels.
        assert!(mad < 6.0, "{name} is not upright: {mad:.2}");
    }
    // And the check has teeth: the stored (unturned) pixels of orientation 6 differ a lot.
    let stored =
        image::load_from_memory(&common::read_data("pillow_hopper_orientation_6.jpg")).unwrap();
    let wrong = mean_abs_diff(&stored, &upright);
    assert!(
        wrong > 20.0,
        "unturned pixels too close to upright: {wrong:.2}"
    );
    println!("{}\nunturned orientation 6: {wrong:.2}", report.join("\n"));
}

#[test]
fn grayscale_stays_monochrome2_and_alpha_goes_on_white() {
    let gray = convert_bytes(
        &common::read_data("pillow_hopper_gray.jpg"),
        TransferSyntax::ImplicitVrLittleEndian,
        0,
    )
    .unwrap();
    let obj = dicom_object::from_reader(&gray.dicom[128..]).unwrap();
    assert_eq!(
        obj.element(tags::PHOTOMETRIC_INTERPRETATION)
            .unwrap()
            .to_str()
            .unwrap()
            .trim(),
        "MONOCHROME2"
    );
    assert_eq!(
        obj.element(tags::SAMPLES_PER_PIXEL)
            .unwrap()
            .to_int::<u16>()
            .unwrap(),
        1
    );
    assert!(
        obj.element(tags::PLANAR_CONFIGURATION).is_err(),
        "only for more than one sample"
    );

    // 16-bit gray (PNG with tRNS, TIFF) comes down to 8 bits and stays gray.
    for name in ["pillow_i_trns.png", "pillow_16bit.cropped.tif"] {
        let c = convert_bytes(
            &common::read_data(name),
            TransferSyntax::ExplicitVrLittleEndian,
            0,
        )
        .unwrap();
        assert!(matches!(pixels(&c), DynamicImage::ImageLuma8(_)), "{name}");
    }

    // The transparent PNG's fully transparent pixels are white, its opaque ones unchanged.
    let bytes = common::read_data("pillow_transparent.png");
    let source = image::load_from_memory(&bytes).unwrap().to_rgba8();
    let out = pixels(&convert_bytes(&bytes, TransferSyntax::ExplicitVrLittleEndian, 0).unwrap())
        .to_rgb8();
    let mut transparent = 0;
    for (s, o) in source.pixels().zip(out.pixels()) {
        match s[3] {
            0 => {
                transparent += 1;
                assert_eq!(o.0, [255, 255, 255]);
            }
            255 => assert_eq!(o.0, [s[0], s[1], s[2]]),
            _ => {}
        }
    }
    assert!(
        transparent > 100,
        "the sample should have transparent pixels"
    );
}

#[test]
fn cmyk_jpeg_colours_match_an_independent_decoder() {
    let bytes = common::read_data("pillow_pil_sample_cmyk.jpg");
    let ours = pixels(&convert_bytes(&bytes, TransferSyntax::ExplicitVrLittleEndian, 0).unwrap());
    // The image crate decodes JPEG with zune-jpeg, a different decoder from ours.
    let theirs = image::load_from_memory(&bytes).unwrap();
    let mad = mean_abs_diff(&ours, &theirs);
    assert!(mad < 4.0, "CMYK colours differ by {mad:.2} on average");
}

#[test]
fn progressive_jpeg_palette_png_and_gif_are_read() {
    let src = image::load_from_memory(&common::read_data("pillow_flower.jpg"))
        .unwrap()
        .to_rgb8();
    let (w, h) = src.dimensions();

    let mut progressive = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut progressive, 90);
    enc.set_progressive(true);
    enc.encode(
        src.as_raw(),
        w as u16,
        h as u16,
        jpeg_encoder::ColorType::Rgb,
    )
    .unwrap();
    let c = convert_bytes(&progressive, TransferSyntax::ExplicitVrLittleEndian, 256).unwrap();
    assert_eq!((c.columns, c.rows), (256, 192));
    assert!(
        mean_abs_diff(
            &pixels(&c),
            &DynamicImage::ImageRgb8(src.clone()).resize_exact(
                256,
                192,
                image::imageops::FilterType::Lanczos3
            )
        ) < 4.0
    );

    let mut gif = Vec::new();
    DynamicImage::ImageRgb8(src.clone())
        .write_to(&mut std::io::Cursor::new(&mut gif), image::ImageFormat::Gif)
        .unwrap();
    let c = convert_bytes(&gif, TransferSyntax::ImplicitVrLittleEndian, 0).unwrap();
    assert_eq!((c.columns, c.rows), (w, h));

    // A 4-colour palette PNG.
    let mut palette_png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut palette_png, 8, 4);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);
        let mut writer = enc.write_header().unwrap();
        let data: Vec<u8> = (0..32).map(|i| (i % 4) as u8).collect();
        writer.write_image_data(&data).unwrap();
    }
    let c = convert_bytes(&palette_png, TransferSyntax::ImplicitVrLittleEndian, 0).unwrap();
    let out = pixels(&c).to_rgb8();
    assert_eq!(out.get_pixel(0, 0).0, [255, 0, 0]);
    assert_eq!(out.get_pixel(2, 0).0, [0, 0, 255]);
}

#[test]
fn heif_and_avif_are_refused_with_advice() {
    for name in ["pillow_hopper.heif", "pillow_exif.avif"] {
        match convert_bytes(
            &common::read_data(name),
            TransferSyntax::ImplicitVrLittleEndian,
            1024,
        ) {
            Err(e @ ConvertError::Unsupported { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("Most Compatible"), "{msg}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// Truncated copies of every test photo: never a panic, and never a photo with missing
/// rows. A cut may only be accepted where every byte of pixel data is still there, and an
/// accepted cut must give exactly the object the whole file gives. Where the pixel data
/// ends comes from each file's own structure, read here independently of the converter
/// (see [`pixel_data_end`]), not from the checks the converter itself uses.
#[test]
fn truncated_copies_of_every_photo_are_refused_without_panic() {
    let mut accepted_late = Vec::new();
    let mut report = Vec::new();
    for (name, _) in ACCEPTED {
        let bytes = common::read_data(name);
        let n = bytes.len();
        let pixels_end = pixel_data_end(name, &bytes);
        assert!(
            pixels_end <= n,
            "{name}: pixel data ends at {pixels_end} of {n}"
        );
        report.push(format!(
            "{name}: {n} bytes, pixel data ends at {pixels_end} ({} bytes after it)",
            n - pixels_end
        ));
        let whole = pixel_data(
            &convert_bytes(&bytes, TransferSyntax::ImplicitVrLittleEndian, 1024)
                .unwrap_or_else(|e| panic!("{name} whole: {e}")),
        );
        let mut cuts: Vec<usize> = (0..64).map(|i| i * n / 64).collect();
        cuts.extend((1..=16).map(|k| n.saturating_sub(k)));
        // Densely around the end of the pixel data, where a lenient decoder would slip.
        cuts.extend((0..=16).map(|k| pixels_end.saturating_sub(k)));
        cuts.extend((1..=4).map(|k| (pixels_end + k).min(n - 1)));
        cuts.retain(|&c| c < n);
        cuts.sort_unstable();
        cuts.dedup();
        for cut in cuts {
            let part = &bytes[..cut];
            let result = std::panic::catch_unwind(|| {
                convert_bytes(part, TransferSyntax::ImplicitVrLittleEndian, 1024)
            });
            let result = result.unwrap_or_else(|_| panic!("{name} cut at {cut}/{n} panicked"));
            if let Ok(c) = result {
                assert!(
                    cut >= pixels_end,
                    "{name} cut at {cut}/{n} was accepted, but its pixel data ends at {pixels_end}"
                );
                assert!(
                    pixel_data(&c) == whole,
                    "{name} cut at {cut}/{n} was accepted with other pixels than the whole file"
                );
                accepted_late.push(*name);
            }
        }
    }
    accepted_late.dedup();
    println!("{}", report.join("\n"));
    println!("files accepted with only what follows the pixels cut: {accepted_late:?}");
}

/// The offset just past the last byte of a test photo's pixel data, from the file's own
/// structure: JPEG up to its EOI marker (an MPO's first picture by the size its MP Index
/// gives), PNG up to the end of its last IDAT chunk, BMP its pixel array offset plus rows
/// times stride, TIFF the end of its last strip or tile, WebP the end of its image chunk.
fn pixel_data_end(name: &str, b: &[u8]) -> usize {
    let u16le = |o: usize| usize::from(u16::from_le_bytes([b[o], b[o + 1]]));
    let u32le = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize;
    let u32be = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize;
    match name.rsplit('.').next() {
        Some("mpo") => {
            // APP2 "MPF\0": a TIFF structure whose MP Entry (B002) lists each picture's size.
            let mpf = find(b, b"MPF\0").expect("an MPO has an MPF segment") + 4;
            let entries = tiff_tag(&b[mpf..], 0xB002).expect("MP Entry");
            let first = &b[mpf + entries.offset..];
            let size = read_u32(first, 4, tiff_le(&b[mpf..]));
            assert_eq!(
                &b[size - 2..size],
                [0xFF, 0xD9],
                "{name}: EOI where MPF says"
            );
            size - 2
        }
        Some("jpg") => {
            assert_eq!(&b[b.len() - 2..], [0xFF, 0xD9], "{name} ends with EOI");
            assert!(find(b, b"MPF\0").is_none(), "{name}: one picture only");
            b.len() - 2
        }
        Some("png") => {
            let mut pos = 8;
            let mut end = 0;
            while pos + 8 <= b.len() {
                let len = u32be(pos);
                if &b[pos + 4..pos + 8] == b"IDAT" {
                    end = pos + 8 + len;
                }
                pos += 12 + len;
            }
            assert!(end > 0, "{name} has IDAT");
            end
        }
        Some("bmp") => {
            let offset = u32le(10);
            let width = u32le(18);
            let height = (u32le(22) as i32).unsigned_abs() as usize;
            let bits = u16le(28);
            assert!(matches!(u32le(30), 0 | 3), "{name}: uncompressed");
            offset + (width * bits).div_ceil(32) * 4 * height
        }
        Some("tif") => {
            let le = tiff_le(b);
            let (offsets, counts) = match tiff_tag(b, 273) {
                Some(strips) => (strips, tiff_tag(b, 279).expect("StripByteCounts")),
                None => (
                    tiff_tag(b, 324).expect("strips or tiles"),
                    tiff_tag(b, 325).expect("TileByteCounts"),
                ),
            };
            (0..offsets.count)
                .map(|i| offsets.value(b, i, le) + counts.value(b, i, le))
                .max()
                .expect("at least one strip")
        }
        Some("webp") => {
            let mut pos = 12;
            while pos + 8 <= b.len() {
                let len = u32le(pos + 4);
                if matches!(&b[pos..pos + 4], b"VP8 " | b"VP8L") {
                    return pos + 8 + len;
                }
                pos += 8 + len + (len & 1);
            }
            panic!("{name}: no VP8 or VP8L chunk")
        }
        other => panic!("{name}: no pixel-data oracle for {other:?}"),
    }
}

fn pixel_data(c: &convert::Converted) -> Vec<u8> {
    let obj = dicom_object::from_reader(&c.dicom[128..]).unwrap();
    obj.element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .into_owned()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn tiff_le(t: &[u8]) -> bool {
    match &t[..2] {
        b"II" => true,
        b"MM" => false,
        other => panic!("not a TIFF byte order: {other:?}"),
    }
}

fn read_u16(b: &[u8], o: usize, le: bool) -> usize {
    let v = [b[o], b[o + 1]];
    usize::from(if le {
        u16::from_le_bytes(v)
    } else {
        u16::from_be_bytes(v)
    })
}

fn read_u32(b: &[u8], o: usize, le: bool) -> usize {
    let v = [b[o], b[o + 1], b[o + 2], b[o + 3]];
    (if le {
        u32::from_le_bytes(v)
    } else {
        u32::from_be_bytes(v)
    }) as usize
}

/// One entry of a TIFF structure's first IFD: its type, count and where its values are
/// (offsets relative to the structure's start).
struct TiffEntry {
    kind: usize,
    count: usize,
    offset: usize,
}

impl TiffEntry {
    fn value(&self, t: &[u8], i: usize, le: bool) -> usize {
        match self.kind {
            3 => read_u16(t, self.offset + 2 * i, le),
            4 => read_u32(t, self.offset + 4 * i, le),
            k => panic!("TIFF type {k} is not an offset or a count"),
        }
    }
}

fn tiff_tag(t: &[u8], tag: usize) -> Option<TiffEntry> {
    let le = tiff_le(t);
    let ifd = read_u32(t, 4, le);
    let entries = read_u16(t, ifd, le);
    (0..entries).map(|i| ifd + 2 + 12 * i).find_map(|e| {
        (read_u16(t, e, le) == tag).then(|| {
            let kind = read_u16(t, e + 2, le);
            let count = read_u32(t, e + 4, le);
            let size = match kind {
                3 => 2,
                4 => 4,
                _ => 1,
            } * count;
            let offset = if size <= 4 {
                e + 8
            } else {
                read_u32(t, e + 8, le)
            };
            TiffEntry {
                kind,
                count,
                offset,
            }
        })
    })
}

#[test]
fn the_pixel_limit_is_checked_before_decoding() {
    let bytes = common::read_data("pillow_flower.jpg");
    match convert::probe(&bytes, 480 * 360 - 1) {
        Err(ConvertError::TooManyPixels {
            width: 480,
            height: 360,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}
