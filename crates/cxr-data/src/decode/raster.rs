//! PNG (8- and 16-bit) and JPEG through the `image` crate.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use super::{DecodeLimits, DecodedImage, Intensity, Pixels};
use crate::error::{DataError, Result};

/// The largest in-memory layout `image` decodes to (RGBA, 16 bits a
/// channel): `max_alloc` is the pixel limit at this many bytes a pixel.
const MAX_BYTES_PER_PIXEL: u64 = 8;

/// `image`'s own limits from the pixel limit: no side beyond it, and no
/// allocation beyond an image of that many pixels in the widest layout
/// (`image`'s default, 512 MiB, would refuse 16-bit colour images the
/// pixel limit admits, and is no bound of its own on what a file declares).
fn image_limits(limits: &DecodeLimits) -> Limits {
    let side = u32::try_from(limits.max_pixels).unwrap_or(u32::MAX);
    let mut l = Limits::default();
    l.max_image_width = Some(side);
    l.max_image_height = Some(side);
    l.max_alloc = Some(limits.max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL));
    l
}

/// Decodes a PNG or JPEG. Colour files are reduced to luminance: a few public
/// "grayscale" sets (Shenzhen, NIH, Pediatric) store some images as RGB/RGBA.
///
/// The declared size is checked against `limits` from the header, before
/// the pixels are allocated; a JPEG that ends before its end-of-image
/// marker is refused as truncated.
pub fn decode(path: &Path, bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::decode(path, e))?;
    if reader.format() == Some(image::ImageFormat::Jpeg) && jpeg_is_truncated(bytes) {
        return Err(DataError::decode(
            path,
            "truncated JPEG: the data ends before the end-of-image marker",
        ));
    }
    if reader.format() == Some(image::ImageFormat::Jpeg)
        && let Some((have, need)) = jpeg_scan_shortfall(bytes)
    {
        return Err(DataError::decode(
            path,
            format!(
                "truncated JPEG: its scans hold {have} bytes of coded data, fewer than the \
                 {need} any complete scan of the declared frame needs"
            ),
        ));
    }
    reader.limits(image_limits(limits));
    let decoder = reader
        .into_decoder()
        .map_err(|e| DataError::decode(path, e))?;
    // The side limits alone admit a 100000 x 100000 image; the pixel count
    // is the bound, checked before `from_decoder` allocates the buffer.
    let (w, h) = decoder.dimensions();
    limits.check(path, &format!("{w} x {h}"), u64::from(w) * u64::from(h))?;
    let img = DynamicImage::from_decoder(decoder).map_err(|e| DataError::decode(path, e))?;
    let (width, height) = (img.width(), img.height());
    let (bits, pixels, intensity) = match img {
        DynamicImage::ImageLuma8(b) => (8, Pixels::U8(b.into_raw()), Intensity::Direct),
        DynamicImage::ImageLuma16(b) => (16, Pixels::U16(b.into_raw()), Intensity::MinMax),
        DynamicImage::ImageLumaA16(_)
        | DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_) => (
            16,
            Pixels::U16(img.to_luma16().into_raw()),
            Intensity::MinMax,
        ),
        other => (
            8,
            Pixels::U8(other.to_luma8().into_raw()),
            Intensity::Direct,
        ),
    };
    Ok(DecodedImage {
        width,
        height,
        bits,
        pixels,
        intensity,
        inverted: false,
        header: Default::default(),
        patient_id: None,
    })
}

/// True when a JPEG's last scan is not followed by an end-of-image marker
/// (`FF D9`): its data ended early. `image` runs its JPEG decoder
/// (zune-jpeg) in non-strict mode, which fills the missing rows with grey
/// and reports success, so a truncated file would be stored with a grey
/// lower half. Entropy-coded data escapes every `FF` byte (`FF 00`, or
/// `FF D0`..`FF D7` restart markers), so after the last start-of-scan
/// marker (`FF DA`) an `FF D9` can only be the end of the image; an
/// embedded thumbnail's markers all come before the main image's scans.
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_scan {
        Some(at) => !bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]),
        // No scan at all: the decoder reports that itself.
        None => false,
    }
}

/// For a sequential JPEG (SOF0 or SOF1, the Huffman-coded ones `image`
/// decodes), `(coded bytes in its scans, the fewest a complete image
/// needs)` when the first is smaller.
///
/// Every 8 x 8 block of every component costs at least two bits (a DC code
/// and an end-of-block code, each at least one bit long), so a scan shorter
/// than that ran out of data; zune-jpeg, non-strict, then fills the rest
/// with grey and reports success, and a 763-byte file declaring 256 x 65280
/// colour pixels costs a second of colour conversion (fuzz finding 10). An
/// end-of-image marker after such a scan does not make it whole.
///
/// The frames are those met walking the segments by their lengths, as
/// decoders read a file ([`first_frame`]), and the largest one sets the
/// need: a second, small frame header, or bytes that look like another
/// frame type inside a scan or a table, do not lower it or turn it off
/// (fuzz findings 12 to 14). Only when the walk finds no frame do those
/// count: then the smallest `FF C0`/`FF C1` anywhere sets the need, and any
/// other frame type anywhere turns the check off. The coded data is read
/// by a plain byte scan (decoders resynchronise on markers): every region
/// after an `FF DA` counts, up to the next marker other than a restart,
/// raw bytes and stuffed zeros included. Each reading errs towards
/// accepting, so a complete file is never refused.
fn jpeg_scan_shortfall(bytes: &[u8]) -> Option<(u64, u64)> {
    let mut smallest: Option<u64> = None;
    let mut other_frame = false;
    let mut have = 0u64;
    let mut at = 0;
    while at + 1 < bytes.len() {
        if bytes[at] != 0xFF {
            at += 1;
            continue;
        }
        match bytes[at + 1] {
            0xC0 | 0xC1 => {
                // A candidate that does not parse is no frame.
                if let Some(frame) = bytes.get(at + 4..).and_then(sequential_minimum) {
                    smallest = Some(smallest.map_or(frame, |n| n.min(frame)));
                }
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => other_frame = true,
            0xDA => {
                let Some(len) = bytes.get(at + 2..at + 4) else {
                    break;
                };
                let start = at + 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
                let mut end = start;
                while let Some(w) = bytes.get(end..end + 2) {
                    if w[0] == 0xFF && w[1] != 0 && !(0xD0..=0xD7).contains(&w[1]) {
                        break;
                    }
                    end += 1;
                }
                // A scan running to the end of the file ends there.
                let end = end.min(bytes.len()).max(start);
                have += (end.saturating_sub(start)) as u64;
                at = end.max(at + 2);
                continue;
            }
            _ => {}
        }
        at += 2;
    }
    let need = match first_frame(bytes) {
        Walk::Sequential(need) => need,
        Walk::Other => return None,
        Walk::Nothing if other_frame => return None,
        Walk::Nothing => smallest?,
    };
    (have < need).then_some((have, need))
}

/// What the segment walk of [`first_frame`] found.
#[derive(Debug, PartialEq)]
enum Walk {
    /// Baseline or extended sequential frames, with the largest one's need
    /// in bytes.
    Sequential(u64),
    /// Another frame type (progressive, lossless, arithmetic), or a frame
    /// header that does not parse: the decoder judges it.
    Other,
    /// No frame header, or the walk ran off the end before one.
    Nothing,
}

/// The frame headers met walking the segments by their lengths, as
/// decoders read a file: a thumbnail's frame, inside an APP segment, is
/// passed over; each scan's coded data is skipped to the next marker
/// other than a restart, and the walk goes on after it, since zune-jpeg
/// also decodes a frame declared after a first, small image's scan (fuzz
/// finding 14). The largest sequential frame is the one to bound.
fn first_frame(bytes: &[u8]) -> Walk {
    let mut largest: Option<u64> = None;
    let mut at = 2;
    loop {
        // Bytes between segments are skipped up to the next marker, as
        // decoders do when a length is off ("extraneous bytes").
        while bytes.get(at).is_some_and(|&b| b != 0xFF) {
            at += 1;
        }
        while bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let Some(&marker) = bytes.get(at + 1) else {
            break;
        };
        // The first frame sets the decoding process: another type, or a
        // header that does not parse, is the decoder's to judge. After a
        // sequential first frame, such headers are ignored (the decoder
        // either stops at them or passes over them).
        match marker {
            0xC0 | 0xC1 => match bytes.get(at + 4..).and_then(sequential_minimum) {
                Some(need) => largest = Some(largest.map_or(need, |n| n.max(need))),
                None if largest.is_none() => return Walk::Other,
                None => {}
            },
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF if largest.is_none() => {
                return Walk::Other;
            }
            0xD9 => break,
            0x01 | 0xD0..=0xD7 => {
                at += 2;
                continue;
            }
            _ => {}
        }
        let Some(len) = bytes.get(at + 2..at + 4) else {
            break;
        };
        at += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
        if marker == 0xDA {
            while let Some(w) = bytes.get(at..at + 2) {
                if w[0] == 0xFF && w[1] != 0 && !(0xD0..=0xD7).contains(&w[1]) {
                    break;
                }
                at += 1;
            }
        }
    }
    largest.map_or(Walk::Nothing, Walk::Sequential)
}

/// Bytes a complete sequential frame's blocks need at two bits each, from
/// a SOF segment (after its length): P, Y, X, Nf, then Nf x (C, HV, Tq).
fn sequential_minimum(sof: &[u8]) -> Option<u64> {
    let height = u64::from(u16::from_be_bytes([*sof.get(1)?, *sof.get(2)?]));
    let width = u64::from(u16::from_be_bytes([*sof.get(3)?, *sof.get(4)?]));
    let components = sof.get(6..6 + 3 * usize::from(*sof.get(5)?))?;
    let factors: Vec<(u64, u64)> = components
        .chunks(3)
        .map(|c| (u64::from(c[1] >> 4), u64::from(c[1] & 15)))
        .collect();
    let hmax = factors.iter().map(|f| f.0).max()?;
    let vmax = factors.iter().map(|f| f.1).max()?;
    if hmax == 0 || vmax == 0 {
        return None;
    }
    let blocks: u64 = factors
        .iter()
        .map(|&(h, v)| {
            (width * h).div_ceil(hmax).div_ceil(8) * (height * v).div_ceil(vmax).div_ceil(8)
        })
        .sum();
    Some(blocks * 2 / 8)
}

#[cfg(test)]
mod tests {
    use super::{jpeg_is_truncated, jpeg_scan_shortfall};

    /// A minimal baseline header: SOI, SOF0 for one component of
    /// `width x height`, SOS, `coded` bytes of scan data, EOI.
    fn jpeg(width: u16, height: u16, coded: &[u8]) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8];
        b.extend(height.to_be_bytes());
        b.extend(width.to_be_bytes());
        b.extend([1, 1, 0x11, 0]);
        b.extend([0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0]);
        b.extend(coded);
        b.extend([0xFF, 0xD9]);
        b
    }

    #[test]
    fn a_scan_shorter_than_two_bits_a_block_is_short() {
        // 64 x 64 is 64 blocks: 16 bytes at least.
        assert_eq!(jpeg_scan_shortfall(&jpeg(64, 64, &[0; 15])), Some((15, 16)));
        assert_eq!(jpeg_scan_shortfall(&jpeg(64, 64, &[0; 16])), None);
        // Stuffed zeros and restart markers are counted, never a marker.
        let coded = [&[0xFF, 0x00][..], &[0xFF, 0xD0], &[0; 12]].concat();
        assert_eq!(jpeg_scan_shortfall(&jpeg(64, 64, &coded)), None);
        // No complete frame header: left to the decoder.
        assert_eq!(jpeg_scan_shortfall(&jpeg(64, 64, &[0; 4])[..12]), None);
        // A progressive first frame turns the check off; bytes that look
        // like one inside a segment do not (fuzz finding 13).
        let mut progressive = jpeg(64, 64, &[0; 4]);
        progressive[3] = 0xC2;
        assert_eq!(jpeg_scan_shortfall(&progressive), None);
        let mut inside = jpeg(64, 64, &[0; 4]);
        inside.splice(2..2, [0xFF, 0xE0, 0, 4, 0xFF, 0xC2]);
        assert_eq!(jpeg_scan_shortfall(&inside), Some((4, 16)));
        // Nor does a frame header that does not parse, inside the scan.
        let junk = jpeg(64, 64, &[0, 0xFF, 0xC1, 0, 2, 0, 0, 0]);
        assert_eq!(jpeg_scan_shortfall(&junk), Some((1, 16)));
        // A second, small frame after the first does not lower the need.
        let mut two = jpeg(64, 64, &[0; 4]);
        two.splice(
            two.len() - 2..two.len() - 2,
            [
                0xFF, 0xC0, 0, 11, 8, 0, 8, 0, 8, 1, 1, 0x11, 0, 0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63,
                0, 0, 0,
            ],
        );
        assert_eq!(jpeg_scan_shortfall(&two), Some((6, 16)));
        // A thumbnail's frame, inside an APP segment, is passed over: the
        // main frame's need stands, and its full scan passes.
        let app = [
            0xFF, 0xE1, 0, 15, 0xFF, 0xC0, 0, 11, 8, 0, 8, 0, 8, 1, 1, 0x11, 0,
        ];
        let mut thumb = jpeg(64, 64, &[0; 4]);
        thumb.splice(2..2, app);
        assert_eq!(jpeg_scan_shortfall(&thumb), Some((4, 16)));
        let mut thumb = jpeg(64, 64, &[0; 16]);
        thumb.splice(2..2, app);
        assert_eq!(jpeg_scan_shortfall(&thumb), None);
        // Stray bytes between segments are skipped, as decoders do.
        let mut stray = jpeg(64, 64, &[0; 4]);
        stray.splice(2..2, [7, 7]);
        assert_eq!(jpeg_scan_shortfall(&stray), Some((4, 16)));
    }

    #[test]
    fn a_jpeg_without_end_of_image_after_its_last_scan_is_truncated() {
        let whole = [0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 1, 0xFF, 0x00, 2, 0xFF, 0xD9];
        assert!(!jpeg_is_truncated(&whole));
        // Trailing padding after the end-of-image marker is harmless.
        assert!(!jpeg_is_truncated(&[&whole[..], &[0, 0]].concat()));
        assert!(jpeg_is_truncated(&whole[..10]));
        // A thumbnail's end-of-image before the main scan does not count.
        let thumb = [0xFF, 0xD8, 0xFF, 0xD9, 0xFF, 0xDA, 0, 2, 1, 2];
        assert!(jpeg_is_truncated(&thumb));
    }
}
