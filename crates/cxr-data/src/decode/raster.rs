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

#[cfg(test)]
mod tests {
    use super::jpeg_is_truncated;

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
