//! Decoding of every image format the public chest X-ray datasets ship, to one
//! single-channel image that keeps its true bit depth and the intensity
//! metadata (windowing, polarity) needed to map it to 8 bits later.

mod codestream;
pub mod dicom;
mod dicom_scan;
pub mod jsrt;
pub mod raster;

use std::path::Path;

use crate::error::{DataError, Result};
use crate::labels::Subgroups;

/// The most pixels (rows x columns x frames x samples) an image file may
/// declare before it is decoded: 2^27 = 134,217,728, a side of 11,585 px.
///
/// Digital radiography detectors are at most about 4,300 px a side (18 MP)
/// and film digitisers about 5,000 px (25 MP), so every published chest
/// X-ray fits with room to spare. The bound exists because decoding
/// allocates from what a file *declares*: a 9 KB DICOM or PNG can declare
/// 10^10 pixels. At the limit a 16-bit DICOM costs about 6 bytes a pixel
/// while it decodes (raw samples and their `f32` modality values), some
/// 800 MB per decoding thread, which a workstation holds.
/// `--max-pixels` changes it (`convert`, `predict`).
pub const MAX_PIXELS: u64 = 1 << 27;

/// Bounds on what decoding one file may allocate, checked against what the
/// file declares before anything of that size is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The most pixels an image may declare (see [`MAX_PIXELS`]).
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: MAX_PIXELS,
        }
    }
}

impl DecodeLimits {
    /// Refuses a limit no image can meet (`--max-pixels 0`).
    ///
    /// # Errors
    /// [`DataError::InvalidOption`] naming `--max-pixels`.
    pub fn validate(&self) -> Result<()> {
        if self.max_pixels == 0 {
            return Err(DataError::InvalidOption {
                flag: "--max-pixels",
                value: "0".into(),
                reason: format!(
                    "must be at least 1 pixel (the default, MAX_PIXELS, is {MAX_PIXELS})"
                ),
            });
        }
        Ok(())
    }

    /// Refuses an image of `pixels` pixels (`what` describes the
    /// dimensions) above the limit.
    pub(crate) fn check(&self, path: &Path, what: &str, pixels: u64) -> Result<()> {
        if pixels > self.max_pixels {
            return Err(DataError::TooManyPixels {
                path: path.to_owned(),
                what: what.to_owned(),
                pixels,
                limit: self.max_pixels,
            });
        }
        Ok(())
    }
}

/// Pixel samples of a decoded single-channel image, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// 8-bit samples (PNG 8-bit, JPEG).
    U8(Vec<u8>),
    /// Up to 16-bit unsigned samples (PNG 16-bit, JSRT raw).
    U16(Vec<u16>),
    /// Modality values after DICOM rescale slope/intercept (may be negative).
    F32(Vec<f32>),
}

impl Pixels {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::U16(v) => v.len(),
            Pixels::F32(v) => v.len(),
        }
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How the values of an image map to display intensities.
#[derive(Debug, Clone, PartialEq)]
pub enum Intensity {
    /// Values are already display values (8-bit sources).
    Direct,
    /// No windowing information: stretch the image's own min..max.
    MinMax,
    /// A DICOM window (centre/width) with its VOI LUT function.
    Window {
        /// Window centre.
        center: f64,
        /// Window width.
        width: f64,
        /// `LINEAR`, `LINEAR_EXACT` or `SIGMOID`.
        function: WindowFunction,
    },
    /// A DICOM VOI LUT table.
    Lut {
        /// Input value mapped to the first entry.
        first: i32,
        /// Bits of each table entry.
        bits: u8,
        /// The table.
        table: Vec<u16>,
    },
}

/// The DICOM VOI LUT functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowFunction {
    /// The default DICOM linear window.
    Linear,
    /// Linear without the half-unit offsets.
    LinearExact,
    /// Logistic curve.
    Sigmoid,
}

/// A decoded single-channel image.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImage {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Bits actually used by the samples (8, 10, 12, 16...).
    pub bits: u8,
    /// The samples.
    pub pixels: Pixels,
    /// How values map to display intensity.
    pub intensity: Intensity,
    /// True when low values are bright (DICOM `MONOCHROME1`, JSRT film densities):
    /// the 8-bit mapping inverts it so bones are bright and lungs dark.
    pub inverted: bool,
    /// Sex, age and view from the file's own header (DICOM PatientSex,
    /// PatientAge, ViewPosition); empty for formats without one. Conversion
    /// uses them where the label file has no value.
    pub header: Subgroups,
    /// The file's own PatientID (DICOM (0010,0020)); `None` for formats
    /// without one. `predict` writes it so its predictions support a
    /// patient-level bootstrap; conversion takes patients from the label file.
    pub patient_id: Option<String>,
}

/// The image container, recognised from the file's first bytes, then its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// DICOM (Part 10 file, or raw data set with a `.dcm`/`.dicom` extension).
    Dicom,
    /// JSRT headerless 2048x2048 12-bit big-endian raw.
    JsrtRaw,
}

impl Format {
    /// Sniffs the format of `bytes` (the head of the file) named `path`.
    pub fn detect(path: &Path, head: &[u8]) -> Option<Format> {
        if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Some(Format::Png);
        }
        if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return Some(Format::Jpeg);
        }
        if head.len() >= 132 && &head[128..132] == b"DICM" {
            return Some(Format::Dicom);
        }
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "dcm" | "dicom" => Some(Format::Dicom),
            "img" => Some(Format::JsrtRaw),
            _ => None,
        }
    }
}

/// Decodes any supported image file within the default [`DecodeLimits`].
pub fn decode_file(path: &Path) -> Result<DecodedImage> {
    decode_file_with(path, &DecodeLimits::default())
}

/// Decodes any supported image file within `limits`.
pub fn decode_file_with(path: &Path, limits: &DecodeLimits) -> Result<DecodedImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_bytes_with(path, &bytes, limits)
}

/// Decodes an image held in memory within the default [`DecodeLimits`];
/// `path` names it in errors and selects the format when the content has no
/// signature.
pub fn decode_bytes(path: &Path, bytes: &[u8]) -> Result<DecodedImage> {
    decode_bytes_with(path, bytes, &DecodeLimits::default())
}

/// [`decode_bytes`] within `limits`.
pub fn decode_bytes_with(path: &Path, bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedImage> {
    match Format::detect(path, bytes) {
        Some(Format::Png) | Some(Format::Jpeg) => raster::decode(path, bytes, limits),
        Some(Format::Dicom) => dicom::decode(path, bytes, limits),
        Some(Format::JsrtRaw) => jsrt::decode(path, bytes, limits),
        None => Err(DataError::decode(
            path,
            "unknown image format (expected PNG, JPEG, DICOM or JSRT .IMG)",
        )),
    }
}
