//! JPEG photos kept as JPEG: the marker walk, metadata removal, lossless turns and
//! progressive-to-baseline through libjpeg-turbo, and its DCT-scaled decoder.
//!
//! A camera's JPEG is already the best copy there is: encapsulating its entropy-coded data
//! as it is (under JPEG Baseline) keeps every bit of the picture and costs no decoding.
//! Only what is not picture goes: APPn and COM segments carry EXIF (GPS position, serial
//! numbers, the owner's name), thumbnails and maker notes, none of which belongs in a PACS.

use image::{DynamicImage, GrayImage, RgbImage};
use turbojpeg::{Transform, TransformOp};

use super::ConvertError;

/// What a JPEG's headers say, read without decoding: the first frame header, the Adobe
/// colour transform and the EXIF orientation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The start-of-frame marker's second byte: 0xC0 baseline, 0xC1 extended, 0xC2
    /// progressive, 0xC3 lossless, 0xC9.. arithmetic.
    pub sof: u8,
    pub precision: u8,
    pub width: u16,
    pub height: u16,
    pub components: u8,
    /// Component identifiers and sampling factors (h, v), for the first four components.
    pub ids: [u8; 4],
    pub sampling: [(u8, u8); 4],
    /// The Adobe APP14 transform flag, when the file has one (0: no colour transform).
    pub adobe_transform: Option<u8>,
    /// EXIF orientation, 1 (upright) to 8; 1 when absent or unreadable.
    pub orientation: u8,
    /// Start-of-scan segments before EOI: a progressive picture is refined scan by scan,
    /// each pass over every block, so their number bounds the decoding time.
    pub scans: u32,
}

/// More scans than any encoder writes (libjpeg's progressive script has 10; libjpeg-turbo
/// refuses more than 500 when asked to limit them): a file with more is built to make the
/// decoder spin, and is refused before decoding.
pub const MAX_SCANS: u32 = 500;

impl Header {
    /// Samples are 8-bit YCbCr (or gray) in a sequential or progressive Huffman frame: what
    /// libjpeg-turbo's TurboJPEG API decodes, and what can become a JPEG Baseline fragment.
    fn is_8bit_ycc_or_gray(&self) -> bool {
        let huffman = matches!(self.sof, 0xC0..=0xC2);
        let colour = match self.components {
            1 => true,
            3 => {
                // libjpeg's rule: an Adobe marker decides, else component IDs 'R','G','B'
                // mean RGB stored without a transform. The marker does not survive keeping,
                // so the IDs must say YCbCr on their own too.
                self.adobe_transform != Some(0) && self.ids[..3] != [b'R', b'G', b'B']
            }
            _ => false,
        };
        huffman && self.precision == 8 && colour
    }

    /// Whether the TurboJPEG decoder takes this frame (otherwise jpeg-decoder does).
    pub fn turbo_decodes(&self) -> bool {
        // Arithmetic-coded frames too: Debian builds libjpeg-turbo with arithmetic decoding.
        let coding = matches!(self.sof, 0xC0..=0xC2 | 0xC9 | 0xCA);
        coding && self.precision == 8 && matches!(self.components, 1 | 3)
    }

    /// How the camera's JPEG becomes the object's fragment, or `None` when it cannot be
    /// kept (CMYK, RGB, 12-bit, lossless, arithmetic): then it is decoded and re-encoded.
    pub fn route(&self) -> Option<Route> {
        if !self.is_8bit_ycc_or_gray() {
            return None;
        }
        let op = orientation_op(self.orientation);
        Some(if self.sof == 0xC0 && op == TransformOp::None {
            Route::Verbatim
        } else {
            Route::Transform(op)
        })
    }

    /// Whether the chroma components are sampled more coarsely than luma.
    pub fn subsampled(&self) -> bool {
        self.components == 3
            && (self.sampling[1] != self.sampling[0] || self.sampling[2] != self.sampling[0])
    }

    /// About the most memory keeping this JPEG holds at once: the file, the copies of the
    /// result on its way into the object, and for a transform libjpeg's DCT coefficients of
    /// the whole picture (twice when turning it needs a second array).
    pub fn memory_needed(&self, file_len: u64) -> u64 {
        // The input, libjpeg's growing output buffer, our copy, the stripped copy and the
        // DICOM object: each at most about the file's size (a transform re-codes with
        // standard tables, which can be a little larger).
        let copies = file_len + 5 * (file_len + file_len / 8 + 64 * 1024);
        let Some(Route::Transform(op)) = self.route() else {
            return copies;
        };
        let hmax = u64::from(self.sampling.iter().map(|s| s.0).max().unwrap_or(1).max(1));
        let vmax = u64::from(self.sampling.iter().map(|s| s.1).max().unwrap_or(1).max(1));
        let mcus_x = u64::from(self.width).div_ceil(8 * hmax);
        let mcus_y = u64::from(self.height).div_ceil(8 * vmax);
        let blocks: u64 = self.sampling[..usize::from(self.components.min(4))]
            .iter()
            .map(|&(h, v)| mcus_x * u64::from(h) * mcus_y * u64::from(v))
            .sum();
        // 64 coefficients of 2 bytes per block.
        let coefficients = blocks * 128;
        let arrays = if matches!(op, TransformOp::None | TransformOp::Hflip) {
            1
        } else {
            2
        };
        copies + arrays * coefficients
    }
}

/// How a keepable JPEG is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A baseline frame already upright: its segments are copied, metadata dropped.
    Verbatim,
    /// Turned upright and/or re-coded from progressive to baseline by libjpeg-turbo on the
    /// DCT coefficients: no pixel changes value.
    Transform(TransformOp),
}

/// The lossless operation that makes a photo with this EXIF orientation upright.
fn orientation_op(orientation: u8) -> TransformOp {
    match orientation {
        2 => TransformOp::Hflip,
        3 => TransformOp::Rot180,
        4 => TransformOp::Vflip,
        5 => TransformOp::Transpose,
        6 => TransformOp::Rot90,
        7 => TransformOp::Transverse,
        8 => TransformOp::Rot270,
        _ => TransformOp::None,
    }
}

/// One marker segment of a JPEG stream: `bytes[start..end]` is the marker, its payload
/// and, for SOS, the entropy-coded data after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    marker: u8,
    start: usize,
    payload: usize,
    end: usize,
}

/// Walks the segments of the first image of a JPEG stream, SOI excluded, up to and
/// including EOI. Bytes between segments that are not a marker are skipped, as decoders do.
struct Walker<'a> {
    bytes: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Walker<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, ConvertError> {
        if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
            return Err(ConvertError::Decode("not a JPEG stream".into()));
        }
        Ok(Walker {
            bytes,
            pos: 2,
            done: false,
        })
    }
}

impl Iterator for Walker<'_> {
    type Item = Result<Segment, ConvertError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let (bytes, n) = (self.bytes, self.bytes.len());
        let cut = || Some(Err(ConvertError::Truncated));
        let mut pos = self.pos;
        while pos < n && bytes[pos] != 0xFF {
            pos += 1;
        }
        while pos + 1 < n && bytes[pos + 1] == 0xFF {
            pos += 1;
        }
        if pos + 1 >= n {
            self.done = true;
            return cut();
        }
        let start = pos;
        let marker = bytes[pos + 1];
        pos += 2;
        let segment = match marker {
            0xD9 => {
                self.done = true;
                Segment {
                    marker,
                    start,
                    payload: pos,
                    end: pos,
                }
            }
            0xD0..=0xD7 | 0x01 | 0xD8 => Segment {
                marker,
                start,
                payload: pos,
                end: pos,
            },
            _ => {
                if pos + 2 > n {
                    self.done = true;
                    return cut();
                }
                let len = usize::from(u16::from_be_bytes([bytes[pos], bytes[pos + 1]]));
                if len < 2 || pos + len > n {
                    self.done = true;
                    return cut();
                }
                let payload = pos + 2;
                let mut end = pos + len;
                if marker == 0xDA {
                    // Entropy-coded data runs to the first marker that is not a stuffed
                    // zero or a restart.
                    loop {
                        match memchr::memchr(0xFF, &bytes[end..]) {
                            None => {
                                self.done = true;
                                return cut();
                            }
                            Some(i) => end += i,
                        }
                        match bytes.get(end + 1) {
                            None => {
                                self.done = true;
                                return cut();
                            }
                            Some(0x00 | 0xD0..=0xD7) => end += 2,
                            Some(_) => break,
                        }
                    }
                }
                Segment {
                    marker,
                    start,
                    payload,
                    end,
                }
            }
        };
        self.pos = segment.end;
        Some(Ok(segment))
    }
}

/// Whether a JPEG stream runs from SOI to EOI. Decoders fill a truncated scan with grey and
/// report success; a half-grey photo in the PACS is worse than a clear "send it again".
/// Data after the first EOI (MPO and Ultra HDR files carry a second image there) is ignored.
pub fn is_complete(bytes: &[u8]) -> bool {
    Walker::new(bytes).is_ok_and(|walk| {
        walk.last()
            .is_some_and(|s| s.is_ok_and(|s| s.marker == 0xD9))
    })
}

/// Reads the headers of a complete JPEG stream; [`ConvertError::Truncated`] when it stops
/// before its EOI.
pub fn header(bytes: &[u8]) -> Result<Header, ConvertError> {
    let mut frame: Option<Header> = None;
    let mut adobe = None;
    let mut orientation = 1;
    let mut exif_seen = false;
    let mut scans = 0;
    for segment in Walker::new(bytes)? {
        let s = segment?;
        let payload = &bytes[s.payload..s.end.min(bytes.len())];
        match s.marker {
            0xE1 if !exif_seen && payload.starts_with(b"Exif\0\0") => {
                exif_seen = true;
                orientation = image::metadata::Orientation::from_exif_chunk(&payload[6..])
                    .map(|o| o.to_exif())
                    .filter(|o| (1..=8).contains(o))
                    .unwrap_or(1);
            }
            0xEE if payload.len() >= 12 && payload.starts_with(b"Adobe") => {
                adobe = Some(payload[11]);
            }
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF if frame.is_none() => {
                frame = Some(read_frame(s.marker, payload)?);
            }
            0xDA => scans += 1,
            _ => {}
        }
    }
    let mut h = frame.ok_or_else(|| ConvertError::Decode("no JPEG frame header".into()))?;
    h.adobe_transform = adobe;
    h.orientation = orientation;
    h.scans = scans;
    if scans > MAX_SCANS {
        return Err(ConvertError::Decode(format!(
            "the JPEG has {scans} scans, more than the {MAX_SCANS} any camera writes"
        )));
    }
    Ok(h)
}

fn read_frame(marker: u8, p: &[u8]) -> Result<Header, ConvertError> {
    let bad = || ConvertError::Decode("the JPEG frame header is malformed".into());
    if p.len() < 6 {
        return Err(bad());
    }
    let components = p[5];
    if components == 0 || p.len() < 6 + 3 * usize::from(components) {
        return Err(bad());
    }
    let mut ids = [0; 4];
    let mut sampling = [(1, 1); 4];
    for i in 0..usize::from(components.min(4)) {
        let c = &p[6 + 3 * i..9 + 3 * i];
        ids[i] = c[0];
        sampling[i] = (c[1] >> 4, c[1] & 0x0F);
        if !(1..=4).contains(&sampling[i].0) || !(1..=4).contains(&sampling[i].1) {
            return Err(bad());
        }
    }
    Ok(Header {
        sof: marker,
        precision: p[0],
        height: u16::from_be_bytes([p[1], p[2]]),
        width: u16::from_be_bytes([p[3], p[4]]),
        components,
        ids,
        sampling,
        adobe_transform: None,
        orientation: 1,
        scans: 0,
    })
}

/// The first image of a JPEG stream with every APPn and COM segment removed (and whatever
/// follows its EOI, such as the second picture of an MPO or Ultra HDR file). The other
/// segments, entropy-coded data included, are copied byte for byte.
pub fn strip_metadata(bytes: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    for segment in Walker::new(bytes)? {
        let s = segment?;
        if matches!(s.marker, 0xE0..=0xEF | 0xFE) {
            continue;
        }
        out.extend_from_slice(&bytes[s.start..s.end]);
    }
    Ok(out)
}

/// A camera JPEG ready to be the object's one Pixel Data fragment.
#[derive(Debug)]
pub struct Original {
    /// SOI to EOI, baseline, no APPn or COM segments.
    pub data: Vec<u8>,
    pub header: Header,
    /// How it was kept.
    pub route: Route,
    /// Columns and rows dropped at the right and bottom edges because turning would have
    /// moved partial MCU blocks (always fewer than one MCU).
    pub trimmed: (u32, u32),
}

/// Why a keepable JPEG could not be kept after all; the photo is then decoded and
/// re-encoded instead.
#[derive(Debug, thiserror::Error)]
#[error("libjpeg-turbo could not transform the JPEG: {0}")]
pub struct TransformFailed(String);

/// Keeps a JPEG whose [`Header::route`] is `Some`: verbatim, or through a lossless transform
/// (perfect when the picture's size allows, else trimming the partial edge blocks).
pub fn keep(bytes: &[u8], header: &Header) -> Result<Original, TransformFailed> {
    let failed = |e: ConvertError| TransformFailed(e.to_string());
    let route = header
        .route()
        .ok_or_else(|| TransformFailed("this JPEG cannot be kept as it is".into()))?;
    let (data, out, trimmed) = match route {
        Route::Verbatim => {
            // The same frame, only its metadata gone: nothing to read again.
            let out = Header {
                adobe_transform: None,
                orientation: 1,
                ..*header
            };
            (strip_metadata(bytes).map_err(failed)?, out, (0, 0))
        }
        Route::Transform(op) => {
            let data = transform(bytes, op)?;
            let out = self::header(&data).map_err(failed)?;
            if out.sof != 0xC0 || out.precision != 8 || out.components != header.components {
                return Err(TransformFailed(format!(
                    "the result is not a baseline JPEG (SOF 0x{:02X})",
                    out.sof
                )));
            }
            let (w, h) = (u32::from(header.width), u32::from(header.height));
            let turned = matches!(
                op,
                TransformOp::Transpose
                    | TransformOp::Transverse
                    | TransformOp::Rot90
                    | TransformOp::Rot270
            );
            let (ew, eh) = if turned { (h, w) } else { (w, h) };
            let (ow, oh) = (u32::from(out.width), u32::from(out.height));
            (data, out, (ew.saturating_sub(ow), eh.saturating_sub(oh)))
        }
    };
    Ok(Original {
        data,
        header: out,
        route,
        trimmed,
    })
}

/// libjpeg-turbo's lossless `op` (perfect, else trimming), metadata removed.
fn transform(bytes: &[u8], op: TransformOp) -> Result<Vec<u8>, TransformFailed> {
    let mut transformer =
        turbojpeg::Transformer::new().map_err(|e| TransformFailed(e.to_string()))?;
    let mut t = Transform {
        op,
        perfect: true,
        copy_none: true,
        ..Transform::default()
    };
    // Sized for the result up front: left to itself libjpeg-turbo starts from 4 KB and
    // doubles, copying the picture each time.
    let capacity = bytes.len() + bytes.len() / 8 + 64 * 1024;
    let mut run = |t: &Transform| {
        let mut out = turbojpeg::OutputBuf::allocate_owned(capacity);
        transformer.transform(t, bytes, &mut out).map(|()| out)
    };
    let turned = match run(&t) {
        Ok(out) => out,
        Err(_) if op != TransformOp::None => {
            t.perfect = false;
            t.trim = true;
            run(&t).map_err(|e| TransformFailed(e.to_string()))?
        }
        Err(e) => return Err(TransformFailed(e.to_string())),
    };
    strip_metadata(&turned).map_err(|e| TransformFailed(e.to_string()))
}

/// Decodes with libjpeg-turbo at `eighths`/8 of the full size (1, 2, 4 or 8) through its
/// scaled inverse DCT. Gray stays gray; everything else becomes RGB.
pub fn decode_scaled(
    bytes: &[u8],
    header: &Header,
    eighths: u32,
) -> Result<DynamicImage, ConvertError> {
    let scaled = |len: u16| (u32::from(len) * eighths).div_ceil(8).max(1);
    let (w, h) = (scaled(header.width), scaled(header.height));
    let gray = header.components == 1;
    let format = if gray {
        turbojpeg::PixelFormat::GRAY
    } else {
        turbojpeg::PixelFormat::RGB
    };
    let bpp = format.size();
    let (wu, hu) = (w as usize, h as usize);
    let mut pixels = vec![0_u8; wu * hu * bpp];
    let mut decompressor =
        turbojpeg::Decompressor::new().map_err(|e| ConvertError::Decode(e.to_string()))?;
    decompressor
        .decompress(
            bytes,
            turbojpeg::Image {
                pixels: pixels.as_mut_slice(),
                width: wu,
                pitch: wu * bpp,
                height: hu,
                format,
            },
        )
        .map_err(|e| ConvertError::Decode(e.to_string()))?;
    let short = || ConvertError::Decode("the JPEG decoder returned a short image".into());
    Ok(if gray {
        DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, pixels).ok_or_else(short)?)
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, pixels).ok_or_else(short)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG from libjpeg-turbo with the given chroma subsampling.
    fn jpeg(w: usize, h: usize, subsamp: turbojpeg::Subsamp) -> Vec<u8> {
        let pixels: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [
                    (x * 255 / w) as u8,
                    (y * 255 / h) as u8,
                    ((x ^ y) & 0xFF) as u8,
                ]
            })
            .collect();
        let image = turbojpeg::Image {
            pixels: pixels.as_slice(),
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        };
        turbojpeg::compress(image, 90, subsamp).unwrap().to_vec()
    }

    /// `jpeg` with an EXIF APP1 segment carrying `orientation` and a COM segment.
    pub(crate) fn with_exif(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
        tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&[0xFF, 0xFE, 0, 7, b'S', b'N', b'1', b'2', b'3']);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    fn entropy_data(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for s in Walker::new(bytes).unwrap() {
            let s = s.unwrap();
            if s.marker == 0xDA {
                out.extend_from_slice(&bytes[s.start..s.end]);
            }
        }
        out
    }

    #[test]
    fn header_reads_frame_and_orientation() {
        let data = with_exif(&jpeg(40, 24, turbojpeg::Subsamp::Sub2x2), 6);
        let h = header(&data).unwrap();
        assert_eq!((h.width, h.height, h.components, h.sof), (40, 24, 3, 0xC0));
        assert_eq!(h.orientation, 6);
        assert!(h.subsampled());
        assert_eq!(h.route(), Some(Route::Transform(TransformOp::Rot90)));
        let plain = header(&jpeg(16, 16, turbojpeg::Subsamp::None)).unwrap();
        assert_eq!(plain.orientation, 1);
        assert!(!plain.subsampled());
        assert_eq!(plain.route(), Some(Route::Verbatim));
    }

    #[test]
    fn verbatim_keeps_the_scan_bytes_and_drops_metadata() {
        let src = with_exif(&jpeg(64, 48, turbojpeg::Subsamp::Sub2x2), 1);
        let h = header(&src).unwrap();
        let mut mpo = src.clone();
        mpo.extend_from_slice(&jpeg(8, 8, turbojpeg::Subsamp::None));
        assert_eq!(h.route(), Some(Route::Verbatim));
        let kept = keep(&mpo, &h).unwrap();
        assert_eq!(entropy_data(&kept.data), entropy_data(&src));
        assert!(!kept.data.windows(4).any(|w| w == b"Exif"));
        assert!(!kept.data.windows(5).any(|w| w == b"SN123"));
        assert!(kept.data.ends_with(&[0xFF, 0xD9]));
        // The stripped file is still the same picture.
        let a = turbojpeg::decompress(&src, turbojpeg::PixelFormat::RGB).unwrap();
        let b = turbojpeg::decompress(&kept.data, turbojpeg::PixelFormat::RGB).unwrap();
        assert_eq!(a.pixels, b.pixels);
    }

    #[test]
    fn turning_is_perfect_on_whole_mcus_and_trims_otherwise() {
        use image::metadata::Orientation;
        let mut trimmed_cases = 0;
        for (w, h, subsamp) in [
            (64_u32, 48_u32, turbojpeg::Subsamp::Sub2x2),
            (64, 48, turbojpeg::Subsamp::None),
            (70, 45, turbojpeg::Subsamp::Sub2x2),
            (70, 45, turbojpeg::Subsamp::None),
        ] {
            let upright = RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
            });
            let mcu = subsamp.mcu_width().max(subsamp.mcu_height()) as u32;
            for orientation in 2..=8_u8 {
                // The camera stored the picture turned; the orientation tag says how to
                // turn it back.
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
                let src = with_exif(
                    &turbojpeg::compress(image, 100, subsamp).unwrap(),
                    orientation.into(),
                );
                let hd = header(&src).unwrap();
                let kept = keep(&src, &hd).unwrap();
                let (tw, th) = kept.trimmed;
                assert!(tw < mcu && th < mcu, "{tw}x{th}");
                if (tw, th) != (0, 0) {
                    trimmed_cases += 1;
                }
                let out = turbojpeg::decompress(&kept.data, turbojpeg::PixelFormat::RGB).unwrap();
                let case = format!("{w}x{h} {subsamp:?} orientation {orientation}");
                assert_eq!(
                    (out.width as u32 + tw, out.height as u32 + th),
                    (w, h),
                    "{case}"
                );
                // The trimmed strip is on one side or the other depending on the turn: the
                // picture must match the upright one at one of the offsets.
                let worst_at = |dx: u32, dy: u32| {
                    let mut worst = 0;
                    for y in 0..out.height as u32 {
                        for x in 0..out.width as u32 {
                            let a = &out.pixels[(y as usize * out.pitch) + x as usize * 3..][..3];
                            let b = upright.get_pixel(x + dx, y + dy).0;
                            for i in 0..3 {
                                worst = worst.max(a[i].abs_diff(b[i]));
                            }
                        }
                    }
                    worst
                };
                let best = [(0, 0), (tw, 0), (0, th), (tw, th)]
                    .into_iter()
                    .map(|(dx, dy)| worst_at(dx, dy))
                    .min()
                    .unwrap();
                assert!(best <= 12, "{case}: off by {best}");
                assert!(!kept.data.windows(4).any(|w| w == b"Exif"));
            }
        }
        assert!(trimmed_cases > 0, "sizes off the MCU grid must be trimmed");
    }

    #[test]
    fn progressive_becomes_baseline_with_the_same_pixels() {
        let base = jpeg(70, 45, turbojpeg::Subsamp::Sub2x2);
        let progressive = turbojpeg::Transformer::new()
            .unwrap()
            .transform_to_owned(
                &Transform {
                    progressive: true,
                    ..Transform::default()
                },
                &base,
            )
            .unwrap()
            .to_vec();
        let h = header(&progressive).unwrap();
        assert_eq!(h.sof, 0xC2);
        let kept = keep(&progressive, &h).unwrap();
        assert_eq!(kept.header.sof, 0xC0);
        let a = turbojpeg::decompress(&progressive, turbojpeg::PixelFormat::RGB).unwrap();
        let b = turbojpeg::decompress(&kept.data, turbojpeg::PixelFormat::RGB).unwrap();
        assert_eq!(a.pixels, b.pixels);
    }

    #[test]
    fn rgb_cmyk_and_twelve_bit_frames_are_not_kept() {
        let mut h = header(&jpeg(16, 16, turbojpeg::Subsamp::None)).unwrap();
        h.adobe_transform = Some(0);
        assert_eq!(h.route(), None);
        h.adobe_transform = None;
        h.ids = [b'R', b'G', b'B', 0];
        assert_eq!(h.route(), None);
        // An Adobe marker saying YCbCr is dropped when kept; the IDs would then say RGB.
        h.adobe_transform = Some(1);
        assert_eq!(h.route(), None);
        h.ids = [1, 2, 3, 0];
        h.precision = 12;
        assert_eq!(h.route(), None);
        h.precision = 8;
        h.components = 4;
        assert_eq!(h.route(), None);
    }

    #[test]
    fn truncations_and_garbage_are_errors_not_panics() {
        let src = with_exif(&jpeg(32, 32, turbojpeg::Subsamp::Sub2x2), 6);
        for cut in 0..src.len() {
            let _ = header(&src[..cut]);
            let _ = strip_metadata(&src[..cut]);
        }
        assert!(strip_metadata(&src[..src.len() - 2]).is_err());
        let mut bad = src.clone();
        for i in (4..bad.len()).step_by(7) {
            bad[i] = bad[i].wrapping_add(0x55);
            if let Ok(h) = header(&bad) {
                let _ = keep(&bad, &h);
            }
        }
    }

    #[test]
    fn a_flood_of_scans_is_refused_before_decoding() {
        let src = jpeg(16, 16, turbojpeg::Subsamp::Sub2x2);
        let h = header(&src).unwrap();
        assert_eq!(h.scans, 1);
        // Copy the one scan (SOS and its data) many times before EOI.
        let sos = src.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let eoi = src.len() - 2;
        let mut flood = src[..eoi].to_vec();
        for _ in 0..MAX_SCANS {
            flood.extend_from_slice(&src[sos..eoi]);
        }
        flood.extend_from_slice(&[0xFF, 0xD9]);
        let e = header(&flood).unwrap_err();
        assert!(e.to_string().contains("scans"), "{e}");
    }

    #[test]
    fn scaled_decoding_gives_the_eighths_asked() {
        let src = jpeg(100, 60, turbojpeg::Subsamp::Sub2x2);
        let h = header(&src).unwrap();
        for (e, size) in [(8, (100, 60)), (4, (50, 30)), (2, (25, 15)), (1, (13, 8))] {
            let img = decode_scaled(&src, &h, e).unwrap();
            assert_eq!((img.width(), img.height()), size);
        }
    }
}
