//! A photo file into upright 8-bit RGB pixels: format check, decode, EXIF orientation, resize.

use std::io::Cursor;

use image::{
    DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage, imageops::FilterType,
};

use super::ConvertError;

/// What the header says about a photo, read without decoding its pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

impl Probe {
    /// JPEG sources have already lost information to compression; the DICOM object must say so.
    pub fn is_lossy(&self) -> bool {
        matches!(self.format, ImageFormat::Jpeg)
    }
}

const SUPPORTED: [ImageFormat; 6] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::WebP,
    ImageFormat::Tiff,
    ImageFormat::Bmp,
    ImageFormat::Gif,
];

/// Checks that `bytes` is a complete image in a format we read, and not too large to decode.
pub fn probe(bytes: &[u8], max_pixels: u64) -> Result<Probe, ConvertError> {
    if bytes.is_empty() {
        return Err(ConvertError::Empty);
    }
    if let Some(e) = refuse_iso_media(bytes) {
        return Err(e);
    }
    let format = image::guess_format(bytes).map_err(|_| ConvertError::UnknownFormat)?;
    if !SUPPORTED.contains(&format) {
        return Err(ConvertError::Unsupported {
            format: format_name(format),
            hint: "send it as JPEG or PNG",
        });
    }
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(ConvertError::Truncated);
    }
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| ConvertError::Decode(e.to_string()))?;
    if width == 0 || height == 0 {
        return Err(ConvertError::Decode("the image has no pixels".into()));
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ConvertError::TooManyPixels {
            width,
            height,
            max_pixels,
        });
    }
    Ok(Probe {
        format,
        width,
        height,
    })
}

/// Decodes a probed photo into upright RGB whose long edge is at most `resize_max`
/// (0 keeps the size). Transparent areas become white, as on paper.
pub fn decode(bytes: &[u8], probe: &Probe, resize_max: u32) -> Result<RgbImage, ConvertError> {
    let decode_err = |e: image::ImageError| ConvertError::Decode(e.to_string());
    let mut reader = ImageReader::with_format(Cursor::new(bytes), probe.format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(probe.width);
    limits.max_image_height = Some(probe.height);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    // A broken orientation tag is not worth refusing a photo over: show it as stored.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    img.apply_orientation(orientation);
    let rgb = flatten_on_white(img);
    Ok(resize_to_fit(rgb, resize_max))
}

fn flatten_on_white(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u16::from(src[3]);
        for c in 0..3 {
            let v = (u16::from(src[c]) * a + 255 * (255 - a) + 127) / 255;
            dst[c] = v as u8;
        }
    }
    out
}

/// Long edge at most `max`, aspect kept, never enlarged; `max == 0` keeps the size.
pub fn fit_within(width: u32, height: u32, max: u32) -> (u32, u32) {
    let long = width.max(height);
    if max == 0 || long <= max {
        return (width, height);
    }
    let scale = f64::from(max) / f64::from(long);
    let w = ((f64::from(width) * scale).round() as u32).clamp(1, max);
    let h = ((f64::from(height) * scale).round() as u32).clamp(1, max);
    (w, h)
}

fn resize_to_fit(img: RgbImage, max: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (nw, nh) = fit_within(w, h, max);
    if (nw, nh) == (w, h) {
        return img;
    }
    image::imageops::resize(&img, nw, nh, FilterType::Lanczos3)
}

/// HEIF, HEIC and AVIF share the ISO media file layout: an `ftyp` box at offset 4.
/// iPhones save HEIC by default, so this is the refusal nurses will meet most often.
fn refuse_iso_media(bytes: &[u8]) -> Option<ConvertError> {
    if bytes.len() < 12 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    let brand = &bytes[8..12];
    let format = match brand {
        b"avif" | b"avis" => "AVIF",
        b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1" => {
            "HEIC/HEIF"
        }
        _ => return None,
    };
    Some(ConvertError::Unsupported {
        format,
        hint: "on an iPhone choose Settings > Camera > Formats > Most Compatible, or send the photo as JPEG",
    })
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Avif => "AVIF",
        ImageFormat::Ico => "ICO",
        ImageFormat::Pnm => "PNM",
        ImageFormat::Tga => "TGA",
        ImageFormat::Dds => "DDS",
        ImageFormat::Hdr => "HDR",
        ImageFormat::OpenExr => "OpenEXR",
        ImageFormat::Qoi => "QOI",
        ImageFormat::Farbfeld => "Farbfeld",
        _ => "this image format",
    }
}

/// Whether a JPEG stream runs from SOI to EOI. Decoders fill a truncated scan with grey and
/// report success; a half-grey photo in the PACS is worse than a clear "send it again".
/// Data after the first EOI (MPO and Ultra HDR files carry a second image there) is ignored.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let n = bytes.len();
    if n < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return false;
    }
    let mut pos = 2;
    loop {
        // Find the next marker; padding 0xFF bytes may precede it.
        while pos < n && bytes[pos] != 0xFF {
            pos += 1;
        }
        while pos < n && bytes[pos] == 0xFF {
            pos += 1;
        }
        if pos >= n {
            return false;
        }
        let marker = bytes[pos];
        pos += 1;
        match marker {
            0xD9 => return true,
            0xD0..=0xD7 | 0x01 => {}
            _ => {
                if pos + 2 > n {
                    return false;
                }
                let len = usize::from(u16::from_be_bytes([bytes[pos], bytes[pos + 1]]));
                if len < 2 || pos + len > n {
                    return false;
                }
                pos += len;
                if marker == 0xDA {
                    // Entropy-coded data runs until a marker other than a stuffed zero or a restart.
                    loop {
                        match bytes[pos..].iter().position(|&b| b == 0xFF) {
                            None => return false,
                            Some(i) => pos += i,
                        }
                        match bytes.get(pos + 1) {
                            None => return false,
                            Some(0x00) | Some(0xD0..=0xD7) => pos += 2,
                            Some(_) => break,
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 90]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
            .unwrap();
        out
    }

    #[test]
    fn fit_within_keeps_aspect_and_never_enlarges() {
        assert_eq!(fit_within(4032, 3024, 1024), (1024, 768));
        assert_eq!(fit_within(3024, 4032, 1024), (768, 1024));
        assert_eq!(fit_within(800, 600, 1024), (800, 600));
        assert_eq!(fit_within(4032, 3024, 0), (4032, 3024));
        assert_eq!(fit_within(10000, 1, 64), (64, 1));
    }

    #[test]
    fn a_complete_jpeg_passes_and_every_truncation_fails() {
        let data = jpeg(64, 48);
        assert!(jpeg_is_complete(&data));
        for cut in 0..data.len() - 1 {
            assert!(!jpeg_is_complete(&data[..cut]), "cut at {cut}");
            assert!(probe(&data[..cut], 1 << 30).is_err(), "probe cut at {cut}");
        }
    }

    #[test]
    fn decode_resizes_and_flattens_alpha_on_white() {
        let img = image::RgbaImage::from_pixel(200, 100, image::Rgba([0, 0, 0, 0]));
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let p = probe(&png, 1 << 30).unwrap();
        assert!(!p.is_lossy());
        let rgb = decode(&png, &p, 100).unwrap();
        assert_eq!(rgb.dimensions(), (100, 50));
        assert!(rgb.pixels().all(|px| px.0 == [255, 255, 255]));
    }

    #[test]
    fn refusals_name_the_problem() {
        assert!(matches!(probe(b"", 100), Err(ConvertError::Empty)));
        assert!(matches!(
            probe(b"hello, not an image", 100),
            Err(ConvertError::UnknownFormat)
        ));
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        match probe(heic, 100) {
            Err(ConvertError::Unsupported { format, hint }) => {
                assert_eq!(format, "HEIC/HEIF");
                assert!(hint.contains("Most Compatible"));
            }
            other => panic!("{other:?}"),
        }
        let data = jpeg(64, 48);
        assert!(matches!(
            probe(&data, 64 * 48 - 1),
            Err(ConvertError::TooManyPixels { .. })
        ));
    }
}
