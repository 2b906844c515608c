//! Seeded, deterministic augmentation of single-channel 8-bit chest X-rays, for
//! finetuning and for two-view self-supervised pretraining.
//!
//! Geometry (random resized crop, rotation, horizontal flip, resize to the output
//! size) is folded into one affine map from output pixels to source coordinates
//! and done as a single bilinear resample: one pass, no intermediate images, and
//! only one interpolation blur however many geometric ops are on. Samples that
//! land outside the source replicate the nearest edge pixel rather than filling
//! with black, so rotated corners do not add a synthetic hard edge (and a
//! rotation cue) that real radiographs never have.
//!
//! Bilinear sampling reads four taps, so it aliases when shrinking by much more
//! than 2x: feed it images stored near the training resolution (the store's
//! preprocessing already resizes with an antialiased filter).
//!
//! Photometric ops follow torchvision `ColorJitter` for brightness then contrast
//! (a fixed order, unlike torchvision's random order, so one less random draw to
//! reason about), then an optional separable gaussian blur.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::DataError;

/// An augmentation configuration. All randomness comes from the RNG passed to
/// [`Augment::apply`], or from `(seed, key)` in [`Augment::batch`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Range of the crop's area as a fraction of the source area, for the random
    /// resized crop. `(1.0, 1.0)` disables cropping (the whole image is used).
    pub crop_scale: (f32, f32),
    /// Range of the crop's aspect ratio (width / height), sampled log-uniformly as in
    /// torchvision `RandomResizedCrop`.
    pub crop_ratio: (f32, f32),
    /// Maximal rotation in degrees; the angle is uniform in `[-r, r]`. Positive angles
    /// turn the image counter-clockwise as displayed (torchvision's convention).
    pub rotation_deg: f32,
    /// Brightness strength `b`: pixels are multiplied by a factor uniform in
    /// `[max(0, 1 - b), 1 + b]`.
    pub brightness: f32,
    /// Contrast strength `c`: the image is blended with its mean by a factor uniform in
    /// `[max(0, 1 - c), 1 + c]`.
    pub contrast: f32,
    /// Probability of a horizontal flip. Off in the presets because laterality matters
    /// on chest X-rays: a mirrored film shows dextrocardia and mislabelled sides.
    pub hflip: f32,
    /// Range of the gaussian blur's standard deviation, in output pixels.
    pub blur_sigma: (f32, f32),
    /// Probability of applying the gaussian blur.
    pub blur_p: f32,
    /// Output size as `(height, width)`.
    pub out_size: (usize, usize),
}

/// The random draws of one augmentation, separated from the RNG so they can be
/// logged, inspected in tests, or replayed with [`Augment::apply_params`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugParams {
    /// Crop window in source pixels as `(x0, y0, width, height)`; continuous, so
    /// sub-pixel positions are kept rather than rounded away.
    pub crop: (f32, f32, f32, f32),
    /// Rotation angle in degrees, positive counter-clockwise as displayed.
    pub angle_deg: f32,
    /// Whether the output is mirrored left-right.
    pub flip: bool,
    /// Brightness multiplier.
    pub brightness: f32,
    /// Contrast blend factor (1 leaves the image unchanged).
    pub contrast: f32,
    /// Gaussian blur standard deviation, when the blur fires.
    pub blur_sigma: Option<f32>,
}

/// Uniform in `[lo, hi]`; unlike `random_range` it accepts `lo == hi`, which is how
/// a config switches a strength off.
fn uniform(rng: &mut impl Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

/// The RNG for one image: ChaCha8 seeded from `seed`, on stream `key`. Streams
/// are independent, so each image's draws depend only on `(seed, key)`, never on
/// which thread runs it or which other images share the batch.
///
/// Callers pass `key = (epoch << 32) | store_index` so every epoch sees fresh
/// augmentations and reruns see the same ones. For a second view of the same image
/// (two-view SSL) use a different `seed` (e.g. `seed + 1`) with the same keys.
pub fn rng_for(seed: u64, key: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(key);
    rng
}

impl Augment {
    /// Finetuning augmentations: crop area 70-100%, rotation up to 10 degrees,
    /// brightness and contrast 0.2, no flip, no blur.
    pub fn finetune(out_h: usize, out_w: usize) -> Self {
        Self {
            crop_scale: (0.7, 1.0),
            rotation_deg: 10.0,
            brightness: 0.2,
            contrast: 0.2,
            ..Self::none(out_h, out_w)
        }
    }

    /// Self-supervised (MoCo/SimCLR-style) augmentations: crop area 20-100%,
    /// rotation up to 10 degrees, brightness and contrast 0.4, gaussian blur with
    /// probability 0.5 and sigma 0.1-2.0, no flip.
    pub fn ssl(out_h: usize, out_w: usize) -> Self {
        Self {
            crop_scale: (0.2, 1.0),
            rotation_deg: 10.0,
            brightness: 0.4,
            contrast: 0.4,
            blur_p: 0.5,
            ..Self::none(out_h, out_w)
        }
    }

    /// No augmentation: the output is the input, resized bilinearly only when its
    /// size differs from `(out_h, out_w)`.
    pub fn none(out_h: usize, out_w: usize) -> Self {
        Self {
            crop_scale: (1.0, 1.0),
            crop_ratio: (3.0 / 4.0, 4.0 / 3.0),
            rotation_deg: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            hflip: 0.0,
            blur_sigma: (0.1, 2.0),
            blur_p: 0.0,
            out_size: (out_h, out_w),
        }
    }

    /// Checks the ranges, so a bad config read from a file fails before training
    /// rather than producing NaN coordinates mid-epoch: `0 < lo <= hi` for the
    /// pairs (with `crop_scale.1 <= 1` and `blur_sigma.1 <= 64`), rotation in
    /// `[0, 180]`, non-negative strengths, probabilities in `[0, 1]`, a non-empty
    /// output.
    ///
    /// # Errors
    /// [`DataError::InvalidAugmentation`] naming the first bad field.
    pub fn validate(&self) -> Result<(), DataError> {
        let pair = |(lo, hi): (f32, f32), max: f32| 0.0 < lo && lo <= hi && hi <= max;
        let prob = |p: f32| (0.0..=1.0).contains(&p);
        let strength = |s: f32| (0.0..=f32::MAX).contains(&s);
        let checks = [
            ("crop_scale", pair(self.crop_scale, 1.0)),
            ("crop_ratio", pair(self.crop_ratio, f32::MAX)),
            ("rotation_deg", (0.0..=180.0).contains(&self.rotation_deg)),
            ("brightness", strength(self.brightness)),
            ("contrast", strength(self.contrast)),
            ("hflip", prob(self.hflip)),
            ("blur_p", prob(self.blur_p)),
            ("blur_sigma", pair(self.blur_sigma, 64.0)),
            ("out_size", self.out_size.0 > 0 && self.out_size.1 > 0),
        ];
        match checks.iter().find(|(_, ok)| !ok) {
            Some((field, _)) => Err(DataError::InvalidAugmentation {
                field,
                config: format!("{self:?}"),
            }),
            None => Ok(()),
        }
    }

    /// Draws the random parameters for one `h` x `w` source image. Draws are only
    /// made for enabled ops, in the order crop, rotation, flip, brightness,
    /// contrast, blur.
    pub fn sample(&self, h: usize, w: usize, rng: &mut impl Rng) -> AugParams {
        let (wf, hf) = (w as f32, h as f32);
        let crop = if self.crop_scale.0 >= 1.0 {
            (0.0, 0.0, wf, hf)
        } else {
            self.sample_crop(hf, wf, rng)
        };
        let angle_deg = if self.rotation_deg > 0.0 {
            uniform(rng, -self.rotation_deg, self.rotation_deg)
        } else {
            0.0
        };
        let flip = self.hflip > 0.0 && rng.random::<f32>() < self.hflip;
        let mut jitter = |s: f32| {
            if s > 0.0 {
                uniform(rng, (1.0 - s).max(0.0), 1.0 + s)
            } else {
                1.0
            }
        };
        let brightness = jitter(self.brightness);
        let contrast = jitter(self.contrast);
        let blur_sigma = (self.blur_p > 0.0 && rng.random::<f32>() < self.blur_p)
            .then(|| uniform(rng, self.blur_sigma.0, self.blur_sigma.1));
        AugParams {
            crop,
            angle_deg,
            flip,
            brightness,
            contrast,
            blur_sigma,
        }
    }

    /// torchvision's `RandomResizedCrop.get_params`, kept continuous (no rounding of
    /// the window to whole pixels).
    fn sample_crop(&self, hf: f32, wf: f32, rng: &mut impl Rng) -> (f32, f32, f32, f32) {
        let area = hf * wf;
        let (lr0, lr1) = (self.crop_ratio.0.ln(), self.crop_ratio.1.ln());
        for _ in 0..10 {
            let target = area * uniform(rng, self.crop_scale.0, self.crop_scale.1);
            let ratio = uniform(rng, lr0, lr1).exp();
            let cw = (target * ratio).sqrt();
            let ch = (target / ratio).sqrt();
            if cw > 0.0 && cw <= wf && ch > 0.0 && ch <= hf {
                let x0 = uniform(rng, 0.0, wf - cw);
                let y0 = uniform(rng, 0.0, hf - ch);
                return (x0, y0, cw, ch);
            }
        }
        // Same fallback as torchvision: the largest centred window whose ratio is in range.
        let in_ratio = wf / hf;
        let (cw, ch) = if in_ratio < self.crop_ratio.0 {
            (wf, wf / self.crop_ratio.0)
        } else if in_ratio > self.crop_ratio.1 {
            (hf * self.crop_ratio.1, hf)
        } else {
            (wf, hf)
        };
        ((wf - cw) / 2.0, (hf - ch) / 2.0, cw, ch)
    }

    /// Augments one `h` x `w` row-major image `src` into `dst`
    /// (`out_size.0 * out_size.1` bytes), drawing parameters from `rng`.
    ///
    /// # Panics
    /// If `src.len() != h * w`, a source or output dimension is zero, or `dst` has
    /// the wrong length.
    pub fn apply(&self, src: &[u8], h: usize, w: usize, rng: &mut impl Rng, dst: &mut [u8]) {
        let params = self.sample(h, w, rng);
        self.apply_params(&params, src, h, w, dst);
    }

    /// Applies already drawn parameters; see [`Augment::apply`].
    ///
    /// # Panics
    /// As [`Augment::apply`].
    pub fn apply_params(&self, p: &AugParams, src: &[u8], h: usize, w: usize, dst: &mut [u8]) {
        let (oh, ow) = self.out_size;
        assert!(
            ![h, w, oh, ow].contains(&0),
            "augment: empty source or output size"
        );
        assert_eq!(src.len(), h * w, "augment: source is not {h}x{w}");
        assert_eq!(dst.len(), oh * ow, "augment: destination is not {oh}x{ow}");
        resample(p, src, h, w, oh, ow, dst);
        photometric(p.brightness, p.contrast, dst);
        if let Some(sigma) = p.blur_sigma {
            gaussian_blur(dst, oh, ow, sigma);
        }
    }

    /// Augments many same-sized images in parallel. Image `i` is `images[i]`
    /// (`h` x `w`), uses the RNG [`rng_for`]`(seed, keys[i])`, and is written to
    /// `out[i * n .. (i + 1) * n]` with `n = out_size.0 * out_size.1`. The result for
    /// each image depends only on `(seed, keys[i], images[i])`.
    ///
    /// # Panics
    /// If `keys` or `out` do not match `images` in length, or as [`Augment::apply`].
    pub fn batch(
        &self,
        images: &[&[u8]],
        h: usize,
        w: usize,
        seed: u64,
        keys: &[u64],
        out: &mut [u8],
    ) {
        let n = self.out_size.0 * self.out_size.1;
        assert_eq!(keys.len(), images.len(), "augment: one key per image");
        assert_eq!(
            out.len(),
            n * images.len(),
            "augment: output is not images x out_size"
        );
        out.par_chunks_mut(n.max(1))
            .zip(images.par_iter().zip(keys.par_iter()))
            .for_each(|(dst, (src, &key))| self.apply(src, h, w, &mut rng_for(seed, key), dst));
    }
}

/// The geometric part: an inverse affine map from output pixel to source
/// coordinates, bilinear with edge replication.
fn resample(p: &AugParams, src: &[u8], h: usize, w: usize, oh: usize, ow: usize, dst: &mut [u8]) {
    let (x0, y0, cw, ch) = p.crop;
    // The forward chain is crop -> resize -> flip -> rotate about the output centre,
    // so its inverse is: centred output coords -> unrotate -> unflip -> scale to the
    // crop -> shift to the crop centre. Composed in f64 so the identity case comes
    // out with exactly integer source coordinates (and so reproduces the input).
    let (s, c) = (p.angle_deg as f64).to_radians().sin_cos();
    let sign = if p.flip { -1.0 } else { 1.0 };
    let (kx, ky) = (cw as f64 / ow as f64, ch as f64 / oh as f64);
    // Source x = cx + kx * sign * (c*a - s*b), y = cy + ky * (s*a + c*b), with
    // a = ox + 0.5 - ow/2, b = oy + 0.5 - oh/2, and pixel centres at integers.
    let (m00, m01) = (kx * sign * c, -kx * sign * s);
    let (m10, m11) = (ky * s, ky * c);
    let (a0, b0) = (0.5 - ow as f64 / 2.0, 0.5 - oh as f64 / 2.0);
    let cx = x0 as f64 + cw as f64 / 2.0 - 0.5;
    let cy = y0 as f64 + ch as f64 / 2.0 - 0.5;
    let m02 = cx + m00 * a0 + m01 * b0;
    let m12 = cy + m10 * a0 + m11 * b0;
    // The inner loop runs in 16.16 fixed point: integer steps are exact and
    // deterministic, and avoid the float-to-int conversions (saturating, so
    // branchy) that made a float version about twice as slow. Weights get 8
    // bits, finer than OpenCV's 5-bit `remap`.
    let fixed = |v: f64| (v * 65536.0).round() as i64;
    let (xmax, ymax) = (((w - 1) as i64) << 16, ((h - 1) as i64) << 16);
    let (dx, dy) = (fixed(m00), fixed(m10));
    for (oy, row) in dst.chunks_exact_mut(ow).enumerate() {
        // Row starts come from the f64 map, so error does not build up down the image.
        let mut x = fixed(m01 * oy as f64 + m02);
        let mut y = fixed(m11 * oy as f64 + m12);
        for out in row.iter_mut() {
            let (xc, yc) = (x.clamp(0, xmax), y.clamp(0, ymax));
            let fx = (((xc & 0xFFFF) + 128) >> 8) as i32;
            let fy = (((yc & 0xFFFF) + 128) >> 8) as i32;
            let (xi, yi) = ((xc >> 16) as usize, (yc >> 16) as usize);
            // Inside the source with a right and lower neighbour (the unsigned compare
            // also rejects negatives), one slice check covers all four taps; only
            // samples near or past the edge pay for clamping.
            let [p00, p01, p10, p11] = if (x as u64) < xmax as u64 && (y as u64) < ymax as u64 {
                let q = &src[yi * w + xi..][..w + 2];
                [q[0], q[1], q[w], q[w + 1]]
            } else {
                let x1 = (xi + 1).min(w - 1);
                let (r0, r1) = (yi * w, (yi + 1).min(h - 1) * w);
                [src[r0 + xi], src[r0 + x1], src[r1 + xi], src[r1 + x1]]
            };
            (x, y) = (x + dx, y + dy);
            let lerp = |a: u8, b: u8, t: i32| ((a as i32) << 8) + t * (b as i32 - a as i32);
            let (top, bot) = (lerp(p00, p01, fx), lerp(p10, p11, fx));
            *out = (((top << 8) + fy * (bot - top) + (1 << 15)) >> 16) as u8;
        }
    }
}

/// Brightness then contrast, through a 256-entry table since the input is u8.
/// As in torchvision, brightness is clamped before the contrast mean is taken.
fn photometric(brightness: f32, contrast: f32, img: &mut [u8]) {
    if brightness == 1.0 && contrast == 1.0 {
        return;
    }
    let bright: [f32; 256] = std::array::from_fn(|i| (i as f32 * brightness).clamp(0.0, 255.0));
    let mean = if contrast == 1.0 || img.is_empty() {
        0.0
    } else {
        let mut hist = [0u64; 256];
        img.iter().for_each(|&v| hist[v as usize] += 1);
        let sum: f64 = hist
            .iter()
            .zip(&bright)
            .map(|(&n, &b)| n as f64 * b as f64)
            .sum();
        (sum / img.len() as f64) as f32
    };
    let lut: [u8; 256] = std::array::from_fn(|i| {
        let v = contrast * bright[i] + (1.0 - contrast) * mean;
        (v.clamp(0.0, 255.0) + 0.5) as u8
    });
    img.iter_mut().for_each(|v| *v = lut[*v as usize]);
}

/// Separable gaussian blur (radius 3 sigma, replicated edges): a vertical pass
/// into f32 and a horizontal pass back, each folding the symmetric taps pairwise
/// (half the multiplies) with contiguous inner loops so they vectorise. Allocates
/// per image, not per pixel.
fn gaussian_blur(img: &mut [u8], h: usize, w: usize, sigma: f32) {
    let r = ((3.0 * sigma).ceil() as usize).max(1);
    // Half kernel, k[t] for offsets +-t, normalised over the full window.
    let mut k: Vec<f32> = (0..=r)
        .map(|t| (-((t * t) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total = 2.0 * k.iter().sum::<f32>() - k[0];
    k.iter_mut().for_each(|v| *v /= total);

    let f: Vec<f32> = img.iter().map(|&v| v as f32).collect();
    let row = |y: usize| &f[y * w..(y + 1) * w];
    let mut tmp = vec![0.0f32; h * w];
    for (y, acc) in tmp.chunks_exact_mut(w).enumerate() {
        acc.iter_mut().zip(row(y)).for_each(|(a, &v)| *a = k[0] * v);
        for (t, &kt) in k.iter().enumerate().skip(1) {
            let (up, down) = (row(y.saturating_sub(t)), row((y + t).min(h - 1)));
            for ((a, &u), &d) in acc.iter_mut().zip(up).zip(down) {
                *a += kt * (u + d);
            }
        }
    }
    let mut padded = vec![0.0f32; w + 2 * r];
    let mut acc = vec![0.0f32; w];
    for (src, out) in tmp.chunks_exact(w).zip(img.chunks_exact_mut(w)) {
        padded[..r].fill(src[0]);
        padded[r..r + w].copy_from_slice(src);
        padded[r + w..].fill(src[w - 1]);
        acc.iter_mut().zip(src).for_each(|(a, &v)| *a = k[0] * v);
        for (t, &kt) in k.iter().enumerate().skip(1) {
            let (left, right) = (&padded[r - t..r - t + w], &padded[r + t..r + t + w]);
            for ((a, &l), &rt) in acc.iter_mut().zip(left).zip(right) {
                *a += kt * (l + rt);
            }
        }
        for (o, &a) in out.iter_mut().zip(&acc) {
            *o = (a.clamp(0.0, 255.0) + 0.5) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(h: usize, w: usize, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..h * w).map(|_| rng.random()).collect()
    }

    /// Parameters that change nothing, for tests to override one field at a time.
    fn identity(h: usize, w: usize) -> AugParams {
        let crop = (0.0, 0.0, w as f32, h as f32);
        let (angle_deg, flip, brightness, contrast) = (0.0, false, 1.0, 1.0);
        AugParams {
            crop,
            angle_deg,
            flip,
            brightness,
            contrast,
            blur_sigma: None,
        }
    }

    fn run(aug: &Augment, p: &AugParams, src: &[u8], h: usize, w: usize) -> Vec<u8> {
        let mut dst = vec![0; aug.out_size.0 * aug.out_size.1];
        aug.apply_params(p, src, h, w, &mut dst);
        dst
    }

    #[test]
    fn none_reproduces_input_exactly() {
        let src = noise(13, 17, 1);
        let mut dst = vec![0; 13 * 17];
        Augment::none(13, 17).apply(&src, 13, 17, &mut rng_for(0, 0), &mut dst);
        assert_eq!(dst, src);
        // A different size resizes; a constant stays constant.
        let small = run(
            &Augment::none(5, 7),
            &identity(13, 17),
            &[77; 13 * 17],
            13,
            17,
        );
        assert!(small.iter().all(|&v| v == 77));
    }

    #[test]
    fn same_seed_and_key_give_same_bytes() {
        let (src, aug) = (noise(32, 32, 2), Augment::ssl(24, 24));
        let go = |seed, key| {
            run(
                &aug,
                &aug.sample(32, 32, &mut rng_for(seed, key)),
                &src,
                32,
                32,
            )
        };
        assert_eq!(go(5, 9), go(5, 9));
        assert_ne!(go(5, 9), go(5, 10));
        assert_ne!(go(5, 9), go(6, 9));
    }

    #[test]
    fn batch_matches_apply_and_ignores_thread_count() {
        let (h, w, n, m) = (20, 20, 9, 256);
        let imgs: Vec<Vec<u8>> = (0..n).map(|i| noise(h, w, i as u64)).collect();
        let refs: Vec<&[u8]> = imgs.iter().map(|v| v.as_slice()).collect();
        let keys: Vec<u64> = (0..n as u64).map(|i| (3 << 32) | (i * 7)).collect();
        let aug = Augment::ssl(16, 16);
        let mut parallel = vec![0; n * m];
        aug.batch(&refs, h, w, 42, &keys, &mut parallel);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build();
        let mut serial = vec![0; n * m];
        pool.unwrap()
            .install(|| aug.batch(&refs, h, w, 42, &keys, &mut serial));
        assert_eq!(parallel, serial);
        for i in 0..n {
            let mut one = vec![0; m];
            aug.apply(refs[i], h, w, &mut rng_for(42, keys[i]), &mut one);
            assert_eq!(one, parallel[i * m..(i + 1) * m]);
        }
        // Batch composition does not matter: the last image alone gives the same bytes.
        let mut alone = vec![0; m];
        aug.batch(&refs[n - 1..], h, w, 42, &keys[n - 1..], &mut alone);
        assert_eq!(alone, parallel[(n - 1) * m..]);
    }

    #[test]
    fn max_rotation_moves_dot_where_trig_says() {
        let (n, c) = (41usize, 20.0f32);
        let mut src = vec![0u8; n * n];
        src[20 * n + 32] = 255; // 12 px right of centre
        let mut aug = Augment::none(n, n);
        aug.rotation_deg = 30.0;
        let mut p = identity(n, n);
        p.angle_deg = aug.rotation_deg;
        let dst = run(&aug, &p, &src, n, n);
        let (mut sx, mut sy, mut sw) = (0.0, 0.0, 0.0);
        for (i, &v) in dst.iter().enumerate() {
            sx += (i % n) as f32 * v as f32;
            sy += (i / n) as f32 * v as f32;
            sw += v as f32;
        }
        let a = 30f32.to_radians();
        // Counter-clockwise as displayed: y grows downwards, so the dot moves up.
        let (ex, ey) = (c + 12.0 * a.cos(), c - 12.0 * a.sin());
        assert!((sx / sw - ex).abs() <= 1.0, "x {} vs {ex}", sx / sw);
        assert!((sy / sw - ey).abs() <= 1.0, "y {} vs {ey}", sy / sw);
        for k in 0..200 {
            assert!(aug.sample(n, n, &mut rng_for(1, k)).angle_deg.abs() <= 30.0);
        }
    }

    #[test]
    fn brightness_and_contrast() {
        let aug = Augment::none(4, 4);
        let mut p = identity(4, 4);
        (p.brightness, p.contrast) = (1.5, 0.3);
        // Contrast blends with the mean, which on a constant image is the image itself.
        assert_eq!(run(&aug, &p, &[100; 16], 4, 4), [150; 16]);
        p.brightness = 3.0;
        assert_eq!(run(&aug, &p, &[100; 16], 4, 4), [255; 16]);
        let mut p = identity(1, 2);
        p.contrast = 0.5;
        assert_eq!(run(&Augment::none(1, 2), &p, &[100, 200], 1, 2), [125, 175]);
        let ft = Augment::finetune(4, 4);
        for k in 0..200 {
            let s = ft.sample(8, 8, &mut rng_for(2, k));
            assert!((0.8..=1.2).contains(&s.brightness) && (0.8..=1.2).contains(&s.contrast));
        }
    }

    #[test]
    fn hflip_mirrors_gradient() {
        let src: Vec<u8> = (0..6 * 16).map(|i| (i % 16) as u8 * 16).collect();
        let mut aug = Augment::none(6, 16);
        aug.hflip = 1.0;
        let mut dst = vec![0; 6 * 16];
        aug.apply(&src, 6, 16, &mut rng_for(0, 0), &mut dst);
        for (d, s) in dst.chunks(16).zip(src.chunks(16)) {
            assert!(d.iter().eq(s.iter().rev()));
        }
    }

    #[test]
    fn crop_covers_a_window_of_the_sampled_scale() {
        let n = 16;
        let gx: Vec<u8> = (0..n * n).map(|i| (i % n) as u8 * 16).collect();
        let gy: Vec<u8> = (0..n * n).map(|i| (i / n) as u8 * 16).collect();
        let mut aug = Augment::none(n, n);
        (aug.crop_scale, aug.crop_ratio) = ((0.25, 0.5), (1.0, 1.0));
        // With area fraction s and ratio 1 the window side is 16 sqrt(s), and the
        // output pixel centres span 15/16 of it; edge clamping can trim up to a
        // quarter pixel per side, and rounding 1/32.
        let lo = 8.0 * 15.0 / 16.0 - 0.6;
        let hi = 16.0 * 0.5f32.sqrt() * 15.0 / 16.0 + 0.1;
        for key in 0..50 {
            let p = aug.sample(n, n, &mut rng_for(3, key));
            let span = |img: &[u8]| {
                let dst = run(&aug, &p, img, n, n);
                (dst.iter().max().unwrap() - dst.iter().min().unwrap()) as f32 / 16.0
            };
            let (sx, sy) = (span(&gx), span(&gy));
            assert!(
                sx >= lo && sx <= hi,
                "key {key}: x span {sx} not in [{lo}, {hi}]"
            );
            assert!((sx - sy).abs() <= 0.6, "key {key}: spans {sx} vs {sy}");
        }
    }

    #[test]
    fn blur_keeps_constant_image_and_conserves_mass() {
        let mut aug = Augment::none(9, 11);
        (aug.blur_p, aug.blur_sigma) = (1.0, (2.0, 2.0));
        let mut dst = vec![0; 99];
        aug.apply(&[201; 99], 9, 11, &mut rng_for(0, 0), &mut dst);
        assert_eq!(dst, [201; 99]);
        let mut dot = vec![0u8; 31 * 31];
        dot[15 * 31 + 15] = 255;
        gaussian_blur(&mut dot, 31, 31, 1.0);
        let mass: i32 = dot.iter().map(|&v| v as i32).sum();
        assert!(dot[15 * 31 + 15] < 100 && (mass - 255).abs() < 20, "{mass}");
    }

    #[test]
    fn presets_validate() {
        for make in [Augment::none, Augment::finetune, Augment::ssl] {
            make(8, 8).validate().unwrap();
        }
        let mut bad = Augment::ssl(8, 8);
        bad.crop_scale = (0.5, 1.5);
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("crop_scale")
        );
    }

    /// Timing: `cargo test --release -p cxr-data --lib augment_speed -- --ignored --nocapture`.
    /// Reports the best of 20 rounds, since shared machines make the mean noisy.
    #[test]
    #[ignore]
    fn augment_speed() {
        let (src, mut dst) = (noise(256, 256, 4), vec![0; 224 * 224]);
        let mut geo = Augment::finetune(224, 224);
        (geo.brightness, geo.contrast) = (0.0, 0.0);
        let blur = Augment {
            blur_p: 1.0,
            ..Augment::ssl(224, 224)
        };
        let cases = [
            ("geometry only", geo),
            ("finetune", Augment::finetune(224, 224)),
            ("ssl, always blur", blur),
        ];
        for (name, aug) in cases {
            let best = (0..20u64)
                .map(|round| {
                    let t = std::time::Instant::now();
                    for k in 0..100 {
                        aug.apply(&src, 256, 256, &mut rng_for(round, k), &mut dst);
                    }
                    t.elapsed().as_secs_f64() * 1e6 / 100.0
                })
                .fold(f64::INFINITY, f64::min);
            println!("{name}: {best:.1} us per 256x256 -> 224x224 image (one thread)");
        }
    }
}
