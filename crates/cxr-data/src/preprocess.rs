//! From a decoded image to the store's square 8-bit image: intensity mapping
//! (windowing, min-max for 16-bit, MONOCHROME1 inversion), then a resize with
//! the selected policy through `fast_image_resize`.

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use serde::{Deserialize, Serialize};

use crate::decode::{DecodedImage, Intensity, Pixels, WindowFunction};
use crate::error::DataError;

/// How a non-square image becomes a square one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizePolicy {
    /// Stretch to the target size, ignoring aspect ratio (the original cxrlearn's behaviour).
    #[default]
    Squash,
    /// Fit inside the target keeping aspect ratio, padding with black.
    Letterbox,
    /// Crop the central square, then resize.
    CenterCrop,
}

impl std::str::FromStr for ResizePolicy {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s {
            "squash" => Ok(Self::Squash),
            "letterbox" => Ok(Self::Letterbox),
            "center-crop" => Ok(Self::CenterCrop),
            _ => Err(DataError::UnknownResizePolicy {
                value: s.to_owned(),
            }),
        }
    }
}

/// The preprocessing recorded in `dataset.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Resize policy.
    pub resize: ResizePolicy,
    /// Interpolation filter.
    pub interpolation: String,
    /// How samples wider than 8 bits become 8-bit.
    pub windowing: String,
    /// How inverted polarity is handled.
    pub inversion: String,
}

impl Preprocessing {
    /// The description of [`to_store_image`] with `policy`.
    pub fn new(resize: ResizePolicy) -> Self {
        Self {
            resize,
            interpolation: "catmull-rom bicubic, antialiased (fast_image_resize convolution)".into(),
            windowing: "8-bit sources unchanged; DICOM: modality rescale, then first VOI LUT, else first window \
                        centre/width, else per-image min-max; 16-bit PNG and JSRT raw: per-image min-max to 0..255"
                .into(),
            inversion: "DICOM MONOCHROME1 and JSRT raw inverted (255 - v) after windowing, so lungs are dark".into(),
        }
    }
}

/// Maps a decoded image to 8-bit display values (row-major, same size).
pub fn to_u8(img: DecodedImage) -> Vec<u8> {
    let mut out = match (img.pixels, &img.intensity) {
        (Pixels::U8(v), Intensity::Direct) => v,
        (Pixels::U8(v), i) => map(v.iter().map(|&x| x as f32), v.len(), i),
        (Pixels::U16(v), Intensity::MinMax) => minmax_u16(&v),
        (Pixels::U16(v), i) => map(v.iter().map(|&x| x as f32), v.len(), i),
        (Pixels::F32(v), i) => map(v.iter().copied(), v.len(), i),
    };
    if img.inverted {
        out.iter_mut().for_each(|x| *x = 255 - *x);
    }
    out
}

/// Min-max of integer samples through a lookup table: one table entry per
/// distinct value instead of float arithmetic per pixel (16-bit PNG, JSRT).
fn minmax_u16(v: &[u16]) -> Vec<u8> {
    let (lo, hi) = v
        .iter()
        .fold((u16::MAX, 0u16), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    if v.is_empty() || hi <= lo {
        return vec![0; v.len()];
    }
    let scale = 255.0 / (hi - lo) as f32;
    let lut: Vec<u8> = (0..=(hi - lo) as u32)
        .map(|d| (d as f32 * scale + 0.5) as u8)
        .collect();
    v.iter().map(|&x| lut[(x - lo) as usize]).collect()
}

fn map<I: Iterator<Item = f32> + Clone>(values: I, n: usize, intensity: &Intensity) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    match intensity {
        Intensity::Direct | Intensity::MinMax => {
            let (lo, hi) = values
                .clone()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), x| {
                    (lo.min(x), hi.max(x))
                });
            let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
            out.extend(values.map(|x| ((x - lo) * scale + 0.5) as u8));
        }
        Intensity::Window {
            center,
            width,
            function,
        } => {
            let (c, w) = (*center as f32, *width as f32);
            out.extend(values.map(|x| {
                let y = match function {
                    WindowFunction::Linear => {
                        let w1 = (w - 1.0).max(1.0);
                        (x - (c - 0.5)) / w1 + 0.5
                    }
                    WindowFunction::LinearExact => (x - c) / w + 0.5,
                    WindowFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
                };
                (y.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
            }));
        }
        Intensity::Lut { first, bits, table } => {
            let max = ((1u32 << (*bits).clamp(1, 16)) - 1) as f32;
            let last = table.len() as i64 - 1;
            out.extend(values.map(|x| {
                let i = (x.round() as i64 - *first as i64).clamp(0, last) as usize;
                ((table[i] as f32 / max).clamp(0.0, 1.0) * 255.0 + 0.5) as u8
            }));
        }
    }
    out
}

/// Resizes an 8-bit single-channel image to `size` x `size` under `policy`.
pub fn resize(
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    size: u32,
    policy: ResizePolicy,
) -> Vec<u8> {
    if width == size && height == size {
        return pixels;
    }
    let src = Image::from_vec_u8(width, height, pixels, PixelType::U8)
        .expect("buffer length matches dimensions");
    let alg = ResizeAlg::Convolution(FilterType::CatmullRom);
    let mut resizer = Resizer::new();
    match policy {
        ResizePolicy::Squash | ResizePolicy::CenterCrop => {
            let mut dst = Image::new(size, size, PixelType::U8);
            let mut options = ResizeOptions::new().resize_alg(alg);
            if policy == ResizePolicy::CenterCrop {
                options = options.fit_into_destination(Some((0.5, 0.5)));
            }
            resizer
                .resize(&src, &mut dst, &options)
                .expect("u8 to u8 resize cannot fail");
            dst.into_vec()
        }
        ResizePolicy::Letterbox => {
            let scale = f64::min(size as f64 / width as f64, size as f64 / height as f64);
            let w = ((width as f64 * scale).round() as u32).clamp(1, size);
            let h = ((height as f64 * scale).round() as u32).clamp(1, size);
            let mut fitted = Image::new(w, h, PixelType::U8);
            resizer
                .resize(&src, &mut fitted, &ResizeOptions::new().resize_alg(alg))
                .expect("u8 to u8 resize cannot fail");
            let fitted = fitted.into_vec();
            let mut out = vec![0u8; (size * size) as usize];
            let (x0, y0) = ((size - w) / 2, (size - h) / 2);
            for (r, row) in fitted.chunks_exact(w as usize).enumerate() {
                let start = ((y0 + r as u32) * size + x0) as usize;
                out[start..start + w as usize].copy_from_slice(row);
            }
            out
        }
    }
}

/// Decoded image -> square 8-bit store image.
pub fn to_store_image(img: DecodedImage, size: u32, policy: ResizePolicy) -> Vec<u8> {
    let (w, h) = (img.width, img.height);
    resize(to_u8(img), w, h, size, policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(
        pixels: Pixels,
        bits: u8,
        intensity: Intensity,
        inverted: bool,
        w: u32,
        h: u32,
    ) -> DecodedImage {
        DecodedImage {
            width: w,
            height: h,
            bits,
            pixels,
            intensity,
            inverted,
            header: Default::default(),
            patient_id: None,
        }
    }

    #[test]
    fn minmax_window_lut_and_inversion() {
        let u16img = img(
            Pixels::U16(vec![100, 600, 1100]),
            12,
            Intensity::MinMax,
            false,
            3,
            1,
        );
        assert_eq!(to_u8(u16img), vec![0, 128, 255]);
        let inv = img(
            Pixels::U16(vec![100, 600, 1100]),
            12,
            Intensity::MinMax,
            true,
            3,
            1,
        );
        assert_eq!(to_u8(inv), vec![255, 127, 0]);
        let win = Intensity::Window {
            center: 50.0,
            width: 101.0,
            function: WindowFunction::Linear,
        };
        let w = img(
            Pixels::F32(vec![-10.0, 0.0, 50.0, 100.0, 500.0]),
            12,
            win,
            false,
            5,
            1,
        );
        assert_eq!(to_u8(w), vec![0, 1, 129, 255, 255]);
        let lut = Intensity::Lut {
            first: 10,
            bits: 8,
            table: vec![0, 51, 255],
        };
        let l = img(
            Pixels::F32(vec![0.0, 11.0, 12.0, 99.0]),
            12,
            lut,
            false,
            4,
            1,
        );
        assert_eq!(to_u8(l), vec![0, 51, 255, 255]);
        let direct = img(Pixels::U8(vec![3, 200]), 8, Intensity::Direct, false, 2, 1);
        assert_eq!(to_u8(direct), vec![3, 200]);
    }

    #[test]
    fn resize_policies() {
        // A 40x20 image: left half 0, right half 200.
        let src: Vec<u8> = (0..20)
            .flat_map(|_| (0..40).map(|x| if x < 20 { 0 } else { 200 }))
            .collect();
        let squash = resize(src.clone(), 40, 20, 10, ResizePolicy::Squash);
        assert_eq!(squash.len(), 100);
        assert_eq!((squash[0], squash[9]), (0, 200));
        let letter = resize(src.clone(), 40, 20, 10, ResizePolicy::Letterbox);
        // Content is 10x5 centred vertically: rows 0-1 and 8-9 are padding (black).
        assert_eq!(letter[9], 0);
        assert_eq!(letter[3 * 10 + 9], 200);
        assert_eq!(letter[9 * 10 + 9], 0);
        let crop = resize(src, 40, 20, 10, ResizePolicy::CenterCrop);
        // Central 20x20 square spans x=10..30: half dark, half bright.
        assert_eq!((crop[0], crop[9]), (0, 200));
        let uniform = resize(vec![77; 64 * 48], 64, 48, 16, ResizePolicy::Squash);
        assert!(uniform.iter().all(|&v| v == 77));
    }
}
