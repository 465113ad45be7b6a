//! A photo file into upright 8-bit pixels: format check, decode, EXIF orientation, resize.
//!
//! Grayscale photos stay grayscale (MONOCHROME2 in the DICOM object): a third of the size,
//! exactly the source's values, and every viewer shows them natively. Everything else
//! becomes 8-bit RGB.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use super::ConvertError;
use super::jpeg;

/// What the header says about a photo, read without decoding its pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    /// For a JPEG source, about how much its compression already discarded: decoded size
    /// over file size (the DICOM object reports it as a lossy compression step).
    pub source_lossy_ratio: Option<f64>,
    /// What the decoder hands back per pixel: samples times bytes per sample.
    pub decoded_bytes_per_pixel: u8,
    /// Samples per pixel in the file (a JPEG's components).
    pub samples: u8,
    /// A progressive JPEG: its decoder keeps every DCT coefficient of the full-size
    /// picture, whatever the output scale.
    pub progressive: bool,
    /// The decoded pixels are not yet 8-bit gray or RGB, so they are copied once more.
    pub converts_to_8bit: bool,
    /// A JPEG's headers, as our own marker walk reads them.
    pub jpeg: Option<jpeg::Header>,
}

impl Probe {
    /// About the most memory converting this photo holds at once, in bytes: the file, what
    /// the decoder allocates, the 8-bit copy, the resized copy and the DICOM object. An
    /// upper bound rather than a measurement, so a hostile header cannot buy more than its
    /// share of the gateway's budget.
    pub fn memory_needed(&self, file_len: u64, resize_max: u32) -> u64 {
        let (w, h) = (u64::from(self.width), u64::from(self.height));
        let (dw, dh) = if self.format == ImageFormat::Jpeg {
            jpeg_output_size(self.width, self.height, resize_max)
        } else {
            (w, h)
        };
        let decoded = dw * dh * u64::from(self.decoded_bytes_per_pixel);
        let mut peak = file_len + decoded;
        if self.format == ImageFormat::Jpeg {
            // Component planes beside the interleaved output.
            peak += decoded;
            if self.progressive {
                // 64 coefficients of 2 bytes per 8x8 block, every component at full size
                // (no chroma subsampling assumed).
                peak += w.div_ceil(8) * h.div_ceil(8) * 128 * u64::from(self.samples);
            }
        } else if self.format != ImageFormat::Png {
            // WebP, GIF, TIFF and BMP decoders may hold a full RGBA frame of their own.
            peak += w * h * 4;
        }
        if self.converts_to_8bit {
            peak += dw * dh * 3;
        }
        let (ow, oh) = fit_within(dw as u32, dh as u32, resize_max);
        // The resized copy and the DICOM object's pixel data.
        peak + 2 * u64::from(ow) * u64::from(oh) * 3
    }

    /// JPEG sources have already lost information to compression; the DICOM object must say so.
    pub fn is_lossy(&self) -> bool {
        self.source_lossy_ratio.is_some()
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
    let (width, height, source_lossy_ratio, layout) = if format == ImageFormat::Jpeg {
        // One walk over the whole stream: its headers, and Truncated when it stops short.
        let header = jpeg::header(bytes)?;
        let mut d = jpeg_decoder::Decoder::new(bytes);
        d.read_info().map_err(jpeg_err)?;
        let info = d
            .info()
            .ok_or_else(|| ConvertError::Decode("no JPEG frame header".into()))?;
        let (w, h) = (u32::from(info.width), u32::from(info.height));
        if (w, h) != (u32::from(header.width), u32::from(header.height)) {
            return Err(ConvertError::Decode(
                "the JPEG's frame headers disagree about its size".into(),
            ));
        }
        let pixel_bytes = info.pixel_format.pixel_bytes();
        let decoded = u64::from(w) * u64::from(h) * pixel_bytes as u64;
        let samples = match info.pixel_format {
            jpeg_decoder::PixelFormat::L8 | jpeg_decoder::PixelFormat::L16 => 1,
            jpeg_decoder::PixelFormat::RGB24 => 3,
            jpeg_decoder::PixelFormat::CMYK32 => 4,
        };
        let layout = Layout {
            decoded_bytes_per_pixel: pixel_bytes as u8,
            samples,
            progressive: info.coding_process == jpeg_decoder::CodingProcess::DctProgressive,
            converts_to_8bit: !matches!(
                info.pixel_format,
                jpeg_decoder::PixelFormat::L8 | jpeg_decoder::PixelFormat::RGB24
            ),
            jpeg: Some(header),
        };
        (w, h, Some(decoded as f64 / bytes.len() as f64), layout)
    } else {
        if format == ImageFormat::WebP && !riff_is_complete(bytes) {
            return Err(ConvertError::Truncated);
        }
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
        reader.limits(header_limits());
        let decoder = reader
            .into_decoder()
            .map_err(|e| ConvertError::Decode(e.to_string()))?;
        let (w, h) = decoder.dimensions();
        let color = decoder.color_type();
        let layout = Layout {
            decoded_bytes_per_pixel: color.bytes_per_pixel(),
            samples: color.channel_count(),
            progressive: false,
            converts_to_8bit: !matches!(color, image::ColorType::L8 | image::ColorType::Rgb8),
            jpeg: None,
        };
        (w, h, None, layout)
    };
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
        source_lossy_ratio,
        decoded_bytes_per_pixel: layout.decoded_bytes_per_pixel,
        samples: layout.samples,
        progressive: layout.progressive,
        converts_to_8bit: layout.converts_to_8bit,
        jpeg: layout.jpeg,
    })
}

/// How a photo's pixels come out of its decoder, for [`Probe::memory_needed`].
struct Layout {
    decoded_bytes_per_pixel: u8,
    samples: u8,
    progressive: bool,
    converts_to_8bit: bool,
    jpeg: Option<jpeg::Header>,
}

/// Reading a header allocates little; a file that makes a decoder ask for more is refused.
fn header_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(16 * 1024 * 1024);
    limits
}

/// The size jpeg-decoder's DCT scaling gives for `resize_max` (its `choose_idct_size`):
/// the smallest of 1/8, 1/4, 1/2 and 1 whose width or height reaches 95% of the limit.
fn jpeg_output_size(width: u32, height: u32, resize_max: u32) -> (u64, u64) {
    let (w, h) = (u64::from(width), u64::from(height));
    let eighths = jpeg_eighths(width, height, resize_max);
    (scaled(w, eighths), scaled(h, eighths))
}

/// `len` at `eighths`/8, rounded up, as both JPEG decoders scale.
fn scaled(len: u64, eighths: u64) -> u64 {
    (len * eighths).saturating_sub(1) / 8 + 1
}

/// The DCT scale in eighths (1, 2, 4 or 8) for `resize_max`; 8 when 0 keeps the size.
fn jpeg_eighths(width: u32, height: u32, resize_max: u32) -> u64 {
    let (w, h) = (u64::from(width), u64::from(height));
    if resize_max == 0 {
        return 8;
    }
    let want = u64::from(resize_max)
        .saturating_mul(95)
        .div_ceil(100)
        .min(u64::from(u16::MAX));
    [1, 2, 4]
        .into_iter()
        .find(|&s| scaled(w, s) >= want || scaled(h, s) >= want)
        .unwrap_or(8)
}

/// Decodes a probed photo into upright pixels, `Luma8` for grayscale sources and `Rgb8` for
/// the rest, whose long edge is at most `resize_max` (0 keeps the size). Transparent areas
/// become white, as on paper.
pub fn decode(bytes: &[u8], probe: &Probe, resize_max: u32) -> Result<DynamicImage, ConvertError> {
    // The decoders' own bounds, a second line behind the budget checked before decoding: a
    // file whose later headers disagree with what the probe read is refused, not obeyed.
    let budget = probe.memory_needed(bytes.len() as u64, resize_max);
    let turbo = probe.jpeg.filter(jpeg::Header::turbo_decodes);
    let (img, orientation) = if let Some(header) = turbo {
        // libjpeg-turbo first: several times faster (SIMD, and its scaled IDCT). Should it
        // refuse a file, jpeg-decoder, which is more forgiving, gets its turn.
        let eighths = jpeg_eighths(probe.width, probe.height, resize_max) as u32;
        let orientation =
            Orientation::from_exif(header.orientation).unwrap_or(Orientation::NoTransforms);
        match jpeg::decode_scaled(bytes, &header, eighths) {
            Ok(img) => (img, orientation),
            Err(e) => {
                log::debug!(reason = e.to_string().as_str(); "libjpeg-turbo refused a JPEG; trying jpeg-decoder");
                decode_jpeg(bytes, resize_max, budget)?
            }
        }
    } else if probe.format == ImageFormat::Jpeg {
        decode_jpeg(bytes, resize_max, budget)?
    } else {
        decode_other(bytes, probe, budget)?
    };
    // Resize before turning: the same pixels either way, and turning the small image is cheaper.
    let mut img = resize_to_fit(to_8bit_opaque(img), resize_max)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// JPEG through DCT scaling: a 12-megapixel phone photo bound for 1024 pixels is decoded
/// straight to half (or quarter) size, which skips most of the inverse-DCT work and never
/// holds the full-size picture in memory.
fn decode_jpeg(
    bytes: &[u8],
    resize_max: u32,
    budget: u64,
) -> Result<(DynamicImage, Orientation), ConvertError> {
    let mut d = jpeg_decoder::Decoder::new(bytes);
    d.set_max_decoding_buffer_size(usize::try_from(budget).unwrap_or(usize::MAX));
    d.read_info().map_err(jpeg_err)?;
    // A broken orientation tag is not worth refusing a photo over: show it as stored.
    let orientation = d
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    if resize_max > 0 {
        // The smallest DCT scale whose long edge reaches 95% of the limit. Phone sizes
        // (4032, 4000, 8064 px...) then land just under the limit with no resampling at all
        // (4032 / 4 = 1008 for 1024): decoding is the whole cost, and the DCT's own low-pass
        // is a good filter. Otherwise the larger scale is resampled down below.
        let close_enough =
            u16::try_from(resize_max.saturating_mul(95).div_ceil(100)).unwrap_or(u16::MAX);
        d.scale(close_enough, close_enough).map_err(jpeg_err)?;
    }
    let data = d.decode().map_err(jpeg_err)?;
    let info = d
        .info()
        .ok_or_else(|| ConvertError::Decode("no JPEG frame header".into()))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let bad_size = || ConvertError::Decode("the JPEG decoder returned a short image".into());
    let img = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => {
            DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, data).ok_or_else(bad_size)?)
        }
        jpeg_decoder::PixelFormat::L16 => {
            // 12-bit and lossless JPEGs: big-endian samples, keep the high byte.
            let gray: Vec<u8> = data.chunks_exact(2).map(|b| b[0]).collect();
            DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, gray).ok_or_else(bad_size)?)
        }
        jpeg_decoder::PixelFormat::RGB24 => {
            DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, data).ok_or_else(bad_size)?)
        }
        jpeg_decoder::PixelFormat::CMYK32 => {
            // The decoder has already undone Adobe's inversion: plain CMYK to RGB.
            let rgb: Vec<u8> = data
                .chunks_exact(4)
                .flat_map(|p| {
                    let k = u16::from(p[3]);
                    [0, 1, 2].map(|i| ((255 - u16::from(p[i])) * (255 - k) / 255) as u8)
                })
                .collect();
            DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, rgb).ok_or_else(bad_size)?)
        }
    };
    Ok((img, orientation))
}

fn decode_other(
    bytes: &[u8],
    probe: &Probe,
    budget: u64,
) -> Result<(DynamicImage, Orientation), ConvertError> {
    let decode_err = |e: image::ImageError| ConvertError::Decode(e.to_string());
    let mut reader = ImageReader::with_format(Cursor::new(bytes), probe.format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(probe.width);
    limits.max_image_height = Some(probe.height);
    limits.max_alloc = Some(budget);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    Ok((img, orientation))
}

fn jpeg_err(e: jpeg_decoder::Error) -> ConvertError {
    ConvertError::Decode(e.to_string())
}

/// 8 bits per sample, no alpha: gray stays gray, everything else becomes RGB.
fn to_8bit_opaque(img: DynamicImage) -> DynamicImage {
    use image::ColorType as C;
    match img.color() {
        C::L8 | C::Rgb8 => img,
        C::L16 => DynamicImage::ImageLuma8(img.into_luma8()),
        C::La8 | C::La16 => {
            let la = img.into_luma_alpha8();
            let (w, h) = la.dimensions();
            let gray = la.pixels().map(|p| on_white(p[0], p[1])).collect();
            DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, gray).unwrap_or_default())
        }
        c if c.has_alpha() => {
            let rgba = img.into_rgba8();
            let (w, h) = rgba.dimensions();
            let rgb = rgba
                .pixels()
                .flat_map(|p| [0, 1, 2].map(|i| on_white(p[i], p[3])))
                .collect();
            DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, rgb).unwrap_or_default())
        }
        _ => DynamicImage::ImageRgb8(img.into_rgb8()),
    }
}

/// A sample with coverage `alpha` laid over white paper.
fn on_white(value: u8, alpha: u8) -> u8 {
    let a = u16::from(alpha);
    ((u16::from(value) * a + 255 * (255 - a) + 127) / 255) as u8
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

fn resize_to_fit(img: DynamicImage, max: u32) -> Result<DynamicImage, ConvertError> {
    use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
    let (w, h) = (img.width(), img.height());
    let (nw, nh) = fit_within(w, h, max);
    if (nw, nh) == (w, h) {
        return Ok(img);
    }
    // fast_image_resize rather than image's own resize: the same Lanczos3, about ten times
    // faster with SIMD (NEON on the Pi), which matters when a photo takes this path.
    let mut out = DynamicImage::new(nw, nh, img.color());
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(&img, &mut out, &options)
        .map_err(|e| ConvertError::Encode(format!("resize: {e}")))?;
    Ok(out)
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

/// Whether a RIFF file (WebP) is as long as its header says. The WebP decoder fills a
/// truncated lossy picture with grey instead of failing.
pub fn riff_is_complete(bytes: &[u8]) -> bool {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" {
        return false;
    }
    let declared = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    bytes.len() >= declared.saturating_add(8)
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
        assert!(jpeg::is_complete(&data));
        for cut in 0..data.len() - 1 {
            assert!(!jpeg::is_complete(&data[..cut]), "cut at {cut}");
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
        let img = decode(&png, &p, 100).unwrap();
        let rgb = img.as_rgb8().expect("RGB stays RGB");
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

    #[test]
    fn memory_needed_counts_decoded_bytes_not_only_pixels() {
        let png16 = Probe {
            format: ImageFormat::Png,
            width: 10_000,
            height: 10_000,
            source_lossy_ratio: None,
            decoded_bytes_per_pixel: 8,
            samples: 4,
            progressive: false,
            converts_to_8bit: true,
            jpeg: None,
        };
        assert!(png16.memory_needed(800_000, 1024) > 1_000_000_000);
        let phone = Probe {
            format: ImageFormat::Jpeg,
            width: 4032,
            height: 3024,
            source_lossy_ratio: Some(10.0),
            decoded_bytes_per_pixel: 3,
            samples: 3,
            progressive: false,
            converts_to_8bit: false,
            jpeg: None,
        };
        let baseline = phone.memory_needed(4_000_000, 1024);
        assert!(baseline < 20 << 20, "{baseline}");
        let full = phone.memory_needed(4_000_000, 0);
        assert!(full > 3 * 4032 * 3024, "{full}");
        let progressive = Probe {
            progressive: true,
            ..phone
        }
        .memory_needed(4_000_000, 1024);
        assert!(progressive > 4032 * 3024 * 6, "{progressive}");
        assert_eq!(jpeg_output_size(4032, 3024, 1024), (1008, 756));
        assert_eq!(jpeg_output_size(8064, 6048, 1024), (1008, 756));
        assert_eq!(jpeg_output_size(100, 80, 1024), (100, 80));
    }
}
