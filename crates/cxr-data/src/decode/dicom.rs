//! DICOM through `dicom-object` + `dicom-pixeldata` (uncompressed, RLE, JPEG
//! baseline/lossless, JPEG 2000 via the pure-Rust `openjp2`, JPEG-LS via
//! CharLS, built from source with CMake).

use std::io::Cursor;
use std::path::Path;

use dicom_core::header::HasLength;
use dicom_object::file::ReadPreamble;
use dicom_object::{InMemDicomObject, OpenFileOptions, Tag};
use dicom_pixeldata::{
    ConvertOptions, ModalityLutOption, PhotometricInterpretation, PixelDecoder, VoiLutFunction,
    VoiLutOption,
};

use super::{
    DecodeLimits, DecodedImage, Intensity, Pixels, WindowFunction, codestream, dicom_scan,
};
use crate::error::{DataError, Result};
use crate::labels::{Subgroups, normalise_sex, normalise_view, parse_age};

/// Decodes the single frame of a grayscale DICOM file: modality rescale is
/// applied here; the VOI LUT or window (else min-max) and the MONOCHROME1
/// inversion are recorded in the result and applied by the 8-bit mapping.
///
/// What the file declares is checked before it costs memory: every
/// element's length against the bytes left (the header walk of
/// `dicom_scan`), then the pixel count against `limits` and, for
/// uncompressed pixel data, against the bytes the pixel data holds; for
/// compressed pixel data, each codestream header's size against both.
pub fn decode(path: &Path, bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedImage> {
    let body = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        &bytes[128..]
    } else {
        bytes
    };
    dicom_scan::check_lengths(path, body, limits)?;
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .from_reader(Cursor::new(body))
        .map_err(|e| DataError::decode(path, format!("not a readable DICOM file: {e}")))?;
    let header = subgroups(&obj);
    let patient_id = text_tag(&obj, Tag(0x0010, 0x0020));
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    check_geometry(path, &obj, limits)?;
    check_rle(path, &obj, &ts)?;
    check_codestreams(path, &obj, &ts, limits)?;
    let pixel = obj.decode_pixel_data().map_err(|e| {
        DataError::decode(
            path,
            format!("cannot decode pixel data (transfer syntax {ts}): {e}"),
        )
    })?;
    if pixel.number_of_frames() > 1 {
        return Err(DataError::decode(
            path,
            format!(
                "multi-frame DICOM ({} frames) is not supported; chest X-rays have one frame",
                pixel.number_of_frames()
            ),
        ));
    }
    let photometric = pixel.photometric_interpretation().clone();
    let inverted = match photometric {
        PhotometricInterpretation::Monochrome1 => true,
        PhotometricInterpretation::Monochrome2 => false,
        other => {
            return Err(DataError::decode(
                path,
                format!("photometric interpretation {other} is not grayscale"),
            ));
        }
    };
    if pixel.samples_per_pixel() != 1 {
        return Err(DataError::decode(
            path,
            "grayscale DICOM must have one sample per pixel",
        ));
    }
    // The modality LUT dicom-pixeldata builds has 2^BitsStored entries and
    // asserts 1..=32 bits: a file declaring 0, or more bits than it
    // allocates (a 16-bit sample "storing" 32 bits, 2^32 entries), would
    // panic or allocate gigabytes. Found by fuzzing (docs/fuzzing.md).
    let (stored, allocated) = (pixel.bits_stored(), pixel.bits_allocated());
    if stored == 0 || stored > allocated || !matches!(allocated, 8 | 16) {
        return Err(DataError::decode(
            path,
            format!(
                "BitsStored {stored} with BitsAllocated {allocated}: grayscale images store 1 to \
                 BitsAllocated bits of 8 or 16"
            ),
        ));
    }
    let options = ConvertOptions::new()
        .with_modality_lut(ModalityLutOption::Default)
        .with_voi_lut(VoiLutOption::Identity);
    let values: Vec<f32> = pixel
        .to_vec_frame_with_options(0, &options)
        .map_err(|e| DataError::decode(path, format!("cannot convert pixel data: {e}")))?;
    let expected = pixel.rows() as usize * pixel.columns() as usize;
    if values.len() != expected {
        return Err(DataError::decode(
            path,
            format!("expected {expected} pixels, decoded {}", values.len()),
        ));
    }
    let intensity = intensity_of(&pixel).map_err(|e| DataError::decode(path, e))?;
    Ok(DecodedImage {
        width: pixel.columns(),
        height: pixel.rows(),
        bits: pixel.bits_stored().min(16) as u8,
        pixels: Pixels::F32(values),
        intensity,
        inverted,
        header,
        patient_id,
    })
}

/// A numeric element's first value; `None` when absent or unreadable.
fn number(obj: &InMemDicomObject, tag: Tag) -> Option<u64> {
    obj.element_opt(tag).ok().flatten()?.to_int::<u64>().ok()
}

/// Refuses, before the pixel data is decoded, an image whose rows x columns
/// x frames x samples exceed `limits`, or whose uncompressed pixel data is
/// shorter than those dimensions at the declared bits (decoders size their
/// output from the dimensions, not from the data). Missing attributes are
/// left to the pixel-data decoder, which names them.
fn check_geometry(path: &Path, obj: &InMemDicomObject, limits: &DecodeLimits) -> Result<()> {
    let (Some(rows), Some(columns)) = (
        number(obj, Tag(0x0028, 0x0010)),
        number(obj, Tag(0x0028, 0x0011)),
    ) else {
        return Ok(());
    };
    let frames = number(obj, Tag(0x0028, 0x0008)).unwrap_or(1).max(1);
    let samples = number(obj, Tag(0x0028, 0x0002)).unwrap_or(1).max(1);
    let pixels = rows
        .saturating_mul(columns)
        .saturating_mul(frames)
        .saturating_mul(samples);
    limits.check(
        path,
        &format!("{rows} rows x {columns} columns x {frames} frames x {samples} samples"),
        pixels,
    )?;
    let bits = number(obj, Tag(0x0028, 0x0100)).unwrap_or(0);
    let native = obj
        .element_opt(Tag(0x7FE0, 0x0010))
        .ok()
        .flatten()
        .filter(|e| e.fragments().is_none());
    if let Some(data) = native
        && let Some(have) = data.header().length().get()
    {
        let need = pixels.saturating_mul(bits).div_ceil(8);
        if need > u64::from(have) {
            return Err(DataError::decode(
                path,
                format!(
                    "pixel data holds {have} bytes, but {rows} rows x {columns} columns x \
                     {frames} frames x {samples} samples at {bits} bits need {need}"
                ),
            ));
        }
    }
    Ok(())
}

/// The prefix of the JPEG-family transfer syntaxes: JPEG, JPEG-LS, JPEG
/// 2000 and HTJ2K (PS3.5 Table A-1).
const JPEG_FAMILY: &str = "1.2.840.10008.1.2.4.";

/// Refuses encapsulated pixel data whose codestream header declares more
/// pixels than the DICOM image holds. The codecs allocate their output from
/// their own header, not from rows and columns (CharLS zero-fills width x
/// height x components x bytes before decoding), so `check_geometry`
/// bounds nothing unless the two agree. Every fragment that starts a
/// codestream is read (a multi-frame file has one per frame). Without rows
/// and columns the pixel limit alone bounds it.
fn check_codestreams(
    path: &Path,
    obj: &InMemDicomObject,
    ts: &str,
    limits: &DecodeLimits,
) -> Result<()> {
    if !ts.starts_with(JPEG_FAMILY) {
        return Ok(());
    }
    let Some(fragments) = obj
        .element_opt(Tag(0x7FE0, 0x0010))
        .ok()
        .flatten()
        .and_then(|e| e.fragments())
    else {
        return Ok(());
    };
    let image = match (
        number(obj, Tag(0x0028, 0x0010)),
        number(obj, Tag(0x0028, 0x0011)),
    ) {
        (Some(rows), Some(columns)) => {
            let samples = number(obj, Tag(0x0028, 0x0002)).unwrap_or(1).max(1);
            Some((
                rows.saturating_mul(columns).saturating_mul(samples),
                format!("{rows} rows x {columns} columns x {samples} samples"),
            ))
        }
        _ => None,
    };
    for (index, fragment) in fragments.iter().enumerate() {
        let Some(d) = codestream::declared(fragment) else {
            continue;
        };
        let what = format!(
            "the {} header of fragment {index} declares {} x {} pixels x {} components",
            d.codec, d.width, d.height, d.components
        );
        limits.check(path, &what, d.pixels())?;
        if let Some((pixels, dims)) = &image
            && d.pixels() > *pixels
        {
            return Err(DataError::decode(
                path,
                format!("{what}, more than the {dims} of the DICOM image"),
            ));
        }
    }
    if JPEG_DECODER.contains(&ts) {
        check_jpeg_frames(path, obj, fragments)?;
    }
    Ok(())
}

/// The transfer syntaxes whose pixel data `dicom-transfer-syntax-registry`
/// decodes with its JPEG (jpeg-decoder) or JPEG-LS (CharLS) adapter: JPEG
/// baseline, extended, lossless (processes 14 and 14 SV1), JPEG-LS
/// lossless and near-lossless.
const JPEG_DECODER: [&str; 6] = [
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
];

/// Refuses a JPEG or JPEG-LS frame, anywhere in the concatenated fragments,
/// that decodes to more bytes than one frame of the DICOM image holds
/// (rows x columns x samples x bytes per sample): the adapters copy each
/// decoded frame into the image's buffer unchecked and panic past its end
/// (found by the `dicom` fuzz target). A decoder with fewer bytes than the
/// frame is fine; without rows and columns the decoder refuses by itself.
fn check_jpeg_frames(path: &Path, obj: &InMemDicomObject, fragments: &[Vec<u8>]) -> Result<()> {
    let (Some(rows), Some(columns)) = (
        number(obj, Tag(0x0028, 0x0010)),
        number(obj, Tag(0x0028, 0x0011)),
    ) else {
        return Ok(());
    };
    let samples = number(obj, Tag(0x0028, 0x0002)).unwrap_or(1).max(1);
    let bytes = number(obj, Tag(0x0028, 0x0100))
        .unwrap_or(8)
        .div_ceil(8)
        .max(1);
    let frame = rows
        .saturating_mul(columns)
        .saturating_mul(samples)
        .saturating_mul(bytes);
    let data: Vec<u8> = fragments.concat();
    for (d, precision) in codestream::jpeg_frames_anywhere(&data) {
        let decoded = d.pixels().saturating_mul(if precision > 8 { 2 } else { 1 });
        if decoded > frame {
            return Err(DataError::decode(
                path,
                format!(
                    "a {} frame header declares {} x {} pixels x {} components at {precision} \
                     bits ({decoded} bytes), more than a frame of the DICOM image ({rows} rows x \
                     {columns} columns x {samples} samples x {bytes} bytes = {frame})",
                    d.codec, d.width, d.height, d.components
                ),
            ));
        }
    }
    Ok(())
}

/// The RLE Lossless transfer syntax (PS3.5 Annex G).
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Refuses RLE Lossless pixel data that the decoder would index past.
/// `dicom-transfer-syntax-registry` 0.10 slices each fragment's 64-byte
/// segment header, and copies rows x columns bytes out of every decoded
/// segment, without checking either: a short fragment, or a segment that
/// decodes to fewer bytes, panics inside it (found by the `dicom` fuzz
/// target; fuzz/regressions/dicom/). Each segment the image needs is
/// measured here by the decoder's own PackBits rules, without decoding it.
/// Anything the decoder refuses by itself (missing attributes, other bit
/// depths) is left to it, which names the problem.
fn check_rle(path: &Path, obj: &InMemDicomObject, ts: &str) -> Result<()> {
    if ts != RLE_LOSSLESS {
        return Ok(());
    }
    let (Some(rows), Some(columns), Some(samples), Some(bits)) = (
        number(obj, Tag(0x0028, 0x0010)),
        number(obj, Tag(0x0028, 0x0011)),
        number(obj, Tag(0x0028, 0x0002)),
        number(obj, Tag(0x0028, 0x0100)),
    ) else {
        return Ok(());
    };
    if bits != 8 && bits != 16 {
        return Ok(());
    }
    let Some(fragments) = obj
        .element_opt(Tag(0x7FE0, 0x0010))
        .ok()
        .flatten()
        .and_then(|e| e.fragments())
    else {
        return Ok(());
    };
    let plane = rows.saturating_mul(columns);
    let needed = samples.saturating_mul(bits / 8);
    for (frame, fragment) in fragments.iter().enumerate() {
        let bad = |reason: String| DataError::decode(path, format!("RLE frame {frame}: {reason}"));
        if fragment.len() < 64 {
            return Err(bad(format!(
                "{} bytes, shorter than the 64-byte segment header",
                fragment.len()
            )));
        }
        let word = |i: usize| {
            u64::from(u32::from_le_bytes([
                fragment[4 * i],
                fragment[4 * i + 1],
                fragment[4 * i + 2],
                fragment[4 * i + 3],
            ]))
        };
        let count = word(0);
        if count > 15 {
            return Err(bad(format!(
                "the header declares {count} segments; RLE has at most 15"
            )));
        }
        // The decoder refuses a header with too few segments by itself.
        for segment in 0..needed.min(count) {
            let start = word(segment as usize + 1);
            let end = if segment + 1 < count {
                word(segment as usize + 2)
            } else {
                fragment.len() as u64
            };
            let Some(data) = usize::try_from(start)
                .ok()
                .zip(usize::try_from(end).ok())
                .and_then(|(a, b)| fragment.get(a..b))
            else {
                return Err(bad(format!(
                    "segment {segment} spans bytes {start}..{end} of a {}-byte fragment",
                    fragment.len()
                )));
            };
            let decoded = packbits_len(data);
            if decoded < plane {
                return Err(bad(format!(
                    "segment {segment} decodes to {decoded} bytes, but {rows} rows x \
                     {columns} columns need {plane}"
                )));
            }
        }
    }
    Ok(())
}

/// The number of bytes a PackBits segment decodes to, counted the way the
/// RLE decoder reads it: a header byte n in 0..=127 copies the next n + 1
/// bytes (fewer when the segment ends), n in -127..=-1 repeats the next byte
/// 1 - n times, -128 does nothing.
fn packbits_len(segment: &[u8]) -> u64 {
    let (mut at, mut out) = (0usize, 0u64);
    while at < segment.len() {
        let header = segment[at] as i8;
        at += 1;
        match header {
            -128 => {}
            h if h < 0 => {
                if at >= segment.len() {
                    break;
                }
                out += u64::from(h.unsigned_abs()) + 1;
                at += 1;
            }
            h => {
                let n = h as usize + 1;
                out += n.min(segment.len() - at) as u64;
                at += n;
            }
        }
    }
    out
}

/// PatientSex (0010,0040), PatientAge (0010,1010) and ViewPosition
/// (0018,5101), normalised like the label files' columns. These are type 2/3
/// attributes: absent, empty or unreadable ones are simply unknown, never an
/// error (the image itself is still good).
/// A text element's trimmed value; `None` when absent or empty.
fn text_tag(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
}

fn subgroups(obj: &InMemDicomObject) -> Subgroups {
    let text = |tag: Tag| text_tag(obj, tag);
    Subgroups {
        sex: text(Tag(0x0010, 0x0040)).and_then(|s| normalise_sex(&s)),
        age: text(Tag(0x0010, 0x1010)).and_then(|s| parse_age(&s).years()),
        view: text(Tag(0x0018, 0x5101)).map(|s| normalise_view(&s)),
    }
}

/// The intensity mapping the file asks for: a VOI LUT, else a window, else
/// min-max. The error is the pixel-data crate's (the caller names the file).
fn intensity_of(
    pixel: &dicom_pixeldata::DecodedPixelData<'_>,
) -> Result<Intensity, dicom_pixeldata::Error> {
    if let Some(luts) = pixel.voi_lut_sequence()?
        && let Some(lut) = luts.first()
        && !lut.data.is_empty()
    {
        return Ok(Intensity::Lut {
            first: lut.min_pixel_value,
            bits: lut.bits_stored,
            table: lut.data.clone(),
        });
    }
    if let Some(windows) = pixel.window()?
        && let Some(w) = windows.first()
        && w.width > 0.0
    {
        let function = match pixel.voi_lut_function()?.and_then(|f| f.first().copied()) {
            Some(VoiLutFunction::LinearExact) => WindowFunction::LinearExact,
            Some(VoiLutFunction::Sigmoid) => WindowFunction::Sigmoid,
            _ => WindowFunction::Linear,
        };
        return Ok(Intensity::Window {
            center: w.center,
            width: w.width,
            function,
        });
    }
    Ok(Intensity::MinMax)
}
