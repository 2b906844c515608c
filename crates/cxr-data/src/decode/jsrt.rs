//! JSRT raw images: no header, 2048x2048, 12-bit values in big-endian 16-bit words.

use std::path::Path;

use super::{DecodeLimits, DecodedImage, Intensity, Pixels};
use crate::error::{DataError, Result};

/// Side of a JSRT image.
pub const SIDE: u32 = 2048;

/// Decodes a JSRT `.IMG`. The values are film-digitiser densities (high = dark
/// film = air), so the image is flagged inverted like DICOM `MONOCHROME1`.
/// The fixed size still answers to `limits`, so a `--max-pixels` below it
/// refuses JSRT images like any other.
pub fn decode(path: &Path, bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedImage> {
    limits.check(
        path,
        &format!("JSRT raw {SIDE} x {SIDE}"),
        u64::from(SIDE) * u64::from(SIDE),
    )?;
    let expected = (SIDE * SIDE * 2) as usize;
    if bytes.len() != expected {
        return Err(DataError::decode(
            path,
            format!(
                "JSRT raw image must be exactly {expected} bytes (2048x2048x16-bit), found {}",
                bytes.len()
            ),
        ));
    }
    let data: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) & 0x0FFF)
        .collect();
    Ok(DecodedImage {
        width: SIDE,
        height: SIDE,
        bits: 12,
        pixels: Pixels::U16(data),
        intensity: Intensity::MinMax,
        inverted: true,
        header: Default::default(),
        patient_id: None,
    })
}
