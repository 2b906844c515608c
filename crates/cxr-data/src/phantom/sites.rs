//! Sites: each hospital has its own equipment and habits (exposure curve,
//! noise, blur, scatter, edge enhancement, collimation, burned-in text,
//! photometric export), so that images from different sites differ in
//! distribution even for the same patients and findings.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::anatomy::uni;
use super::glyphs;

/// The acquisition habits of one site.
#[derive(Clone, Debug, Serialize)]
pub struct Site {
    /// Site identifier as written in `labels.csv` (`site0`, `site1`, ...).
    pub name: String,
    /// Fraction of studies acquired portable AP (supine) rather than PA.
    pub portable_fraction: f64,
    /// Probability that an upright (PA) study also has a lateral view.
    pub lateral_fraction: f64,
    /// Attenuation scale (beam energy): higher is more contrast.
    pub attenuation_scale: f32,
    /// Quantum noise standard deviation (relative, at 256 px).
    pub noise: f32,
    /// Detector blur, Gaussian sigma in pixels at 256 px.
    pub blur: f32,
    /// Scattered radiation, as a fraction of the unattenuated beam (no grid: high).
    pub scatter: f32,
    /// Display window on the log signal, `[low, high]`.
    pub window: [f32; 2],
    /// Gamma of the display curve.
    pub gamma: f32,
    /// Unsharp-mask strength of the vendor processing.
    pub edge_enhance: f32,
    /// Largest collimation margin, as a fraction of the image side.
    pub collimation: f32,
    /// Standard deviation of patient positioning jitter.
    pub positioning: f32,
    /// Text burned in at the top of the image.
    pub banner: String,
    /// Corner of the laterality marker: 0 top-left, 1 top-right.
    pub marker_corner: u8,
    /// Stored as MONOCHROME1: bright means *less* attenuation; readers must
    /// invert the PNG to get the usual radiograph.
    pub monochrome1: bool,
}

impl Site {
    /// The site presets: site 0 is an outpatient PA department with a sharp
    /// processed look, site 1 an intensive-care portable unit with noisy,
    /// flatter, MONOCHROME1 images; further sites are drawn from `seed`.
    pub fn preset(index: usize, seed: u64) -> Self {
        match index {
            0 => Site {
                name: "site0".into(),
                portable_fraction: 0.15,
                lateral_fraction: 0.45,
                attenuation_scale: 1.6,
                noise: 0.006,
                blur: 0.6,
                scatter: 0.012,
                window: [0.3, 2.75],
                gamma: 1.0,
                edge_enhance: 0.7,
                collimation: 0.04,
                positioning: 0.02,
                banner: "PA ERECT".into(),
                marker_corner: 0,
                monochrome1: false,
            },
            1 => Site {
                name: "site1".into(),
                portable_fraction: 0.7,
                lateral_fraction: 0.2,
                attenuation_scale: 1.35,
                noise: 0.014,
                blur: 1.1,
                scatter: 0.05,
                window: [0.25, 2.6],
                gamma: 1.25,
                edge_enhance: 0.0,
                collimation: 0.1,
                positioning: 0.05,
                banner: "PORTABLE".into(),
                marker_corner: 1,
                monochrome1: true,
            },
            k => {
                let mut rng = ChaCha8Rng::seed_from_u64(super::mix(seed, 0x517e, k as u64, 0));
                Site {
                    name: format!("site{k}"),
                    portable_fraction: f64::from(uni(&mut rng, 0.1, 0.7)),
                    lateral_fraction: f64::from(uni(&mut rng, 0.15, 0.5)),
                    attenuation_scale: uni(&mut rng, 1.3, 1.7),
                    noise: uni(&mut rng, 0.005, 0.016),
                    blur: uni(&mut rng, 0.5, 1.3),
                    scatter: uni(&mut rng, 0.01, 0.05),
                    window: [uni(&mut rng, 0.25, 0.4), uni(&mut rng, 2.5, 2.9)],
                    gamma: uni(&mut rng, 0.85, 1.3),
                    edge_enhance: uni(&mut rng, 0.0, 0.8),
                    collimation: uni(&mut rng, 0.02, 0.1),
                    positioning: uni(&mut rng, 0.02, 0.05),
                    banner: format!("SITE {k}"),
                    marker_corner: rng.random_range(0..2),
                    monochrome1: false,
                }
            }
        }
    }

    /// `"MONOCHROME1"` or `"MONOCHROME2"`.
    pub fn photometric(&self) -> &'static str {
        if self.monochrome1 {
            "MONOCHROME1"
        } else {
            "MONOCHROME2"
        }
    }
}

/// Per-image acquisition draws (positioning, exposure, collimation, text).
#[derive(Clone, Debug)]
pub(crate) struct Acquisition {
    pub shift: [f32; 2],
    pub tilt: f32,
    pub zoom: f32,
    pub exposure: f32,
    pub margins: [f32; 4],
    pub stamp: String,
}

impl Acquisition {
    pub fn sample(rng: &mut ChaCha8Rng, site: &Site, portable: bool) -> Self {
        let p = site.positioning * if portable { 1.6 } else { 1.0 };
        let c = site.collimation;
        let margins = [0; 4].map(|_| c * rng.random::<f32>().powi(2));
        Acquisition {
            shift: [uni(rng, -p, p), uni(rng, -p, p)],
            tilt: uni(rng, -p, p) * 1.5,
            zoom: 1.0 + uni(rng, -p, p),
            exposure: uni(rng, 0.85, 1.15),
            margins,
            stamp: format!(
                "{:02}:{:02}",
                rng.random_range(0..24u8),
                rng.random_range(0..60u8)
            ),
        }
    }
}

/// Separable Gaussian blur in place.
pub(crate) fn gaussian_blur(buf: &mut [f32], n: usize, sigma: f32) {
    if sigma < 0.3 {
        return;
    }
    let r = (sigma * 2.5).ceil() as usize;
    let mut k: Vec<f32> = (0..=2 * r)
        .map(|i| {
            let d = i as f32 - r as f32;
            (-d * d / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    let mut tmp = vec![0.0f32; n * n];
    for y in 0..n {
        let row = &buf[y * n..(y + 1) * n];
        for x in 0..n {
            let mut acc = 0.0;
            for (i, w) in k.iter().enumerate() {
                let xx = (x + i).saturating_sub(r).min(n - 1);
                acc += w * row[xx];
            }
            tmp[y * n + x] = acc;
        }
    }
    for y in 0..n {
        for x in 0..n {
            let mut acc = 0.0;
            for (i, w) in k.iter().enumerate() {
                let yy = (y + i).saturating_sub(r).min(n - 1);
                acc += w * tmp[yy * n + x];
            }
            buf[y * n + x] = acc;
        }
    }
}

/// Box blur of radius `r` via a summed-area table.
fn box_blur(src: &[f32], n: usize, r: usize) -> Vec<f32> {
    let w = n + 1;
    let mut sat = vec![0.0f64; w * w];
    for y in 0..n {
        let mut row = 0.0f64;
        for x in 0..n {
            row += f64::from(src[y * n + x]);
            sat[(y + 1) * w + x + 1] = sat[y * w + x + 1] + row;
        }
    }
    let mut out = vec![0.0f32; n * n];
    for y in 0..n {
        let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(n));
        for x in 0..n {
            let (x0, x1) = (x.saturating_sub(r), (x + r + 1).min(n));
            let s = sat[y1 * w + x1] - sat[y0 * w + x1] - sat[y1 * w + x0] + sat[y0 * w + x0];
            out[y * n + x] = (s / ((y1 - y0) * (x1 - x0)) as f64) as f32;
        }
    }
    out
}

/// Approximately standard normal draw from one `u32` (Irwin-Hall of four bytes):
/// cheap, and exact normality does not matter for detector noise.
#[inline]
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u: u32 = rng.random();
    let s = (u & 0xff) + ((u >> 8) & 0xff) + ((u >> 16) & 0xff) + (u >> 24);
    (s as f32 - 510.0) / 147.8
}

/// Turns an attenuation map (line integrals) into the stored 8-bit image:
/// detector blur, exponential attenuation with quantum noise and scatter, log
/// signal, display window and gamma, edge enhancement, collimation, burned-in
/// marker and text, then optional MONOCHROME1 inversion.
pub(crate) fn develop(
    att: &mut [f32],
    n: usize,
    site: &Site,
    acq: &Acquisition,
    marker: char,
    view_text: &str,
    rng: &mut ChaCha8Rng,
) -> Vec<u8> {
    let scale = n as f32 / 256.0;
    gaussian_blur(att, n, site.blur * scale);
    // Bigger pixels collect more photons: per-pixel noise falls with resolution.
    let sigma = site.noise * scale / acq.exposure.sqrt();
    let k = site.attenuation_scale;
    let [lo, hi] = site.window;
    // The display curve through a table: powf per pixel is a measurable cost.
    const STEPS: usize = 4096;
    let curve: Vec<f32> = (0..=STEPS)
        .map(|s| (s as f32 / STEPS as f32).powf(site.gamma))
        .collect();
    let mut v: Vec<f32> = att
        .iter()
        .map(|&a| {
            let i = (-k * a).exp();
            let i = i + sigma * i.sqrt() * normal(rng) + site.scatter;
            let l = -(i.max(1e-4)).ln();
            let t = ((l - lo) / (hi - lo)).clamp(0.0, 1.0) * STEPS as f32;
            curve[t as usize]
        })
        .collect();
    if site.edge_enhance > 0.0 {
        let r = (n / 24).max(1);
        let b = box_blur(&v, n, r);
        for (x, m) in v.iter_mut().zip(&b) {
            *x = (*x + site.edge_enhance * (*x - m)).clamp(0.0, 1.0);
        }
    }
    let nf = n as f32;
    let [ml, mr, mt, mb] = acq.margins.map(|m| (m * nf) as usize);
    for y in 0..n {
        for x in 0..n {
            if x < ml || x >= n - mr || y < mt || y >= n - mb {
                v[y * n + x] = 0.93;
            }
        }
    }
    let gs = (n / 128).max(1);
    let corner_x = |w: usize| {
        if site.marker_corner == 0 {
            ml + 3 * gs
        } else {
            n.saturating_sub(mr + 3 * gs + w)
        }
    };
    let ms = gs * 2;
    let mx = corner_x(5 * ms);
    glyphs::burn(&mut v, n, mx, mt + 3 * gs, ms, &marker.to_string());
    let text = format!("{} {}", site.banner, view_text);
    let tw = glyphs::width(&text, gs);
    let tx = if site.marker_corner == 0 {
        n.saturating_sub(mr + 3 * gs + tw)
    } else {
        ml + 3 * gs
    };
    glyphs::burn(&mut v, n, tx, mt + 3 * gs, gs, &text);
    let sw = glyphs::width(&acq.stamp, gs);
    glyphs::burn(
        &mut v,
        n,
        n.saturating_sub(mr + 3 * gs + sw),
        n.saturating_sub(mb + 10 * gs),
        gs,
        &acq.stamp,
    );
    v.iter()
        .map(|&x| {
            let q = (x * 255.0 + 0.5) as u8;
            if site.monochrome1 { 255 - q } else { q }
        })
        .collect()
}
