//! PNG (8- and 16-bit) and JPEG through the `image` crate.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageReader};

use super::{DecodedImage, Intensity, Pixels};
use crate::error::{DataError, Result};

/// Decodes a PNG or JPEG. Colour files are reduced to luminance: a few public
/// "grayscale" sets (Shenzhen, NIH, Pediatric) store some images as RGB/RGBA.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<DecodedImage> {
    let img = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::decode(path, e))?
        .decode()
        .map_err(|e| DataError::decode(path, e))?;
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
