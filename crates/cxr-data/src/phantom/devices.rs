//! Thin structures drawn as tubes along polylines: vessels, Kerley lines,
//! support devices and ECG leads.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::anatomy::{Anatomy, uni};
use super::findings::{Findings, TipPosition};

/// Maps patient coordinates to pixels and back for one image.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    pub n: usize,
    /// Patient coordinates of pixel `(j, i)`: `x = a j + b i + c`, `y = d j + e i + f`.
    pub fwd: [f32; 6],
    /// Inverse of `fwd`.
    pub inv: [f32; 6],
    /// Pixel size in patient units.
    pub pixel: f32,
    /// Lateral projection: the horizontal patient coordinate is `-z`.
    pub lateral: bool,
}

impl Frame {
    pub fn new(n: usize, zoom: f32, tilt: f32, centre: [f32; 2], lateral: bool) -> Self {
        let s = 1.3 / zoom;
        let (sn, cs) = tilt.sin_cos();
        let k = 2.0 / n as f32;
        // u = k (j + 0.5) - 1 and v likewise; patient = s R [u, v] + centre.
        let (a, b) = (s * cs * k, -s * sn * k);
        let (d, e) = (s * sn * k, s * cs * k);
        let u0 = 0.5 * k - 1.0;
        let c = s * cs * u0 - s * sn * u0 + centre[0];
        let f = s * sn * u0 + s * cs * u0 + centre[1];
        let det = a * e - b * d;
        let inv = [
            e / det,
            -b / det,
            (b * f - e * c) / det,
            -d / det,
            a / det,
            (d * c - a * f) / det,
        ];
        Frame {
            n,
            fwd: [a, b, c, d, e, f],
            inv,
            pixel: s * k,
            lateral,
        }
    }

    #[inline]
    pub fn to_patient(self, j: f32, i: f32) -> [f32; 2] {
        let m = &self.fwd;
        [m[0] * j + m[1] * i + m[2], m[3] * j + m[4] * i + m[5]]
    }

    #[inline]
    pub fn to_pixel(self, p: [f32; 2]) -> [f32; 2] {
        let m = &self.inv;
        [
            m[0] * p[0] + m[1] * p[1] + m[2],
            m[3] * p[0] + m[4] * p[1] + m[5],
        ]
    }

    /// Projects a 3-D point onto this view's 2-D patient plane.
    #[inline]
    pub fn project(&self, p: [f32; 3]) -> [f32; 2] {
        if self.lateral {
            [-p[2], p[1]]
        } else {
            [p[0], p[1]]
        }
    }
}

/// Adds a tube (chord of a cylinder of `radius`) along segment `a`-`b`, scaled
/// by `density`. Sub-pixel tubes are widened with their integral conserved,
/// so thin lines stay visible without aliasing at small sizes. With `max`,
/// overlapping segments of one polyline do not double up at the joints.
pub(crate) fn stamp(
    buf: &mut [f32],
    fr: &Frame,
    a: [f32; 2],
    b: [f32; 2],
    radius: f32,
    density: f32,
    max: bool,
) {
    let r = radius.max(0.7 * fr.pixel);
    let dens = density * radius / r;
    let n = fr.n;
    let (pa, pb) = (fr.to_pixel(a), fr.to_pixel(b));
    let rp = r / fr.pixel + 1.0;
    let j0 = (pa[0].min(pb[0]) - rp).floor().max(0.0) as usize;
    let j1 = (pa[0].max(pb[0]) + rp).ceil().min(n as f32 - 1.0);
    let i0 = (pa[1].min(pb[1]) - rp).floor().max(0.0) as usize;
    let i1 = (pa[1].max(pb[1]) + rp).ceil().min(n as f32 - 1.0);
    if j1 < 0.0 || i1 < 0.0 {
        return;
    }
    let (j1, i1) = (j1 as usize, i1 as usize);
    let ab = [b[0] - a[0], b[1] - a[1]];
    let len2 = (ab[0] * ab[0] + ab[1] * ab[1]).max(1e-12);
    let r2 = r * r;
    for i in i0..=i1 {
        for j in j0..=j1 {
            let p = fr.to_patient(j as f32, i as f32);
            let ap = [p[0] - a[0], p[1] - a[1]];
            let t = ((ap[0] * ab[0] + ap[1] * ab[1]) / len2).clamp(0.0, 1.0);
            let dx = ap[0] - t * ab[0];
            let dy = ap[1] - t * ab[1];
            let d2 = dx * dx + dy * dy;
            if d2 < r2 {
                let v = dens * 2.0 * (r2 - d2).sqrt();
                let cell = &mut buf[i * n + j];
                if max {
                    *cell = cell.max(v);
                } else {
                    *cell += v;
                }
            }
        }
    }
}

/// Stamps a 3-D polyline.
pub(crate) fn polyline(buf: &mut [f32], fr: &Frame, pts: &[[f32; 3]], radius: f32, density: f32) {
    for w in pts.windows(2) {
        stamp(
            buf,
            fr,
            fr.project(w[0]),
            fr.project(w[1]),
            radius,
            density,
            true,
        );
    }
}

/// Smooths a polyline by inserting midpoints twice (Chaikin corner cutting).
fn smooth(pts: &[[f32; 3]]) -> Vec<[f32; 3]> {
    let mut cur = pts.to_vec();
    for _ in 0..2 {
        let mut out = vec![cur[0]];
        for w in cur.windows(2) {
            let q = [0, 1, 2].map(|k| 0.75 * w[0][k] + 0.25 * w[1][k]);
            let r = [0, 1, 2].map(|k| 0.25 * w[0][k] + 0.75 * w[1][k]);
            out.push(q);
            out.push(r);
        }
        out.push(*cur.last().unwrap_or(&cur[0]));
        cur = out;
    }
    cur
}

/// Draws the study's tubes, lines and ECG leads into `buf` (extra attenuation).
/// The geometry comes from `rng`, seeded per study, so frontal and lateral
/// views of one study show the same devices.
pub(crate) fn draw_devices(
    buf: &mut [f32],
    fr: &Frame,
    an: &Anatomy,
    f: &Findings,
    rng: &mut ChaCha8Rng,
) {
    let tx = an.trachea_x;
    let carina = an.carina_y;
    let dome_l = an.domes[1];
    if let Some(pos) = f.ett {
        let depth = match pos {
            TipPosition::Normal => uni(rng, 0.28, 0.45),
            TipPosition::Borderline => {
                if rng.random_bool(0.5) {
                    uni(rng, 0.08, 0.15)
                } else {
                    uni(rng, 0.5, 0.6)
                }
            }
            TipPosition::Abnormal => -1.0,
        };
        let mut pts = vec![[tx + 0.01, -1.7, 0.25], [tx, -1.15, 0.15]];
        if depth > 0.0 {
            pts.push([tx, carina - depth, 0.08]);
        } else {
            // Right mainstem intubation: the tip passes the carina.
            pts.push([tx, carina - 0.05, 0.08]);
            pts.push([an.hila[0][0] * 0.5, carina + 0.12, 0.05]);
        }
        let pts = smooth(&pts);
        polyline(buf, fr, &pts, 0.035, 0.6);
        let stripe: Vec<[f32; 3]> = pts.iter().map(|p| [p[0] + 0.02, p[1], p[2]]).collect();
        polyline(buf, fr, &stripe, 0.007, 30.0);
    }
    if let Some(pos) = f.ngt {
        let gej = [an.body_half_width * 0.18, dome_l + 0.03, -0.1];
        let mut pts = vec![
            [0.02, -1.7, 0.35],
            [0.0, -1.2, -0.15],
            [0.04, carina, -0.3],
            [0.07, dome_l - 0.2, -0.25],
        ];
        match pos {
            TipPosition::Normal => {
                pts.push(gej);
                pts.push([
                    an.body_half_width * 0.45,
                    dome_l + uni(rng, 0.15, 0.25),
                    0.0,
                ]);
            }
            TipPosition::Borderline => {
                pts.push([gej[0], gej[1] + 0.04, gej[2]]);
            }
            TipPosition::Abnormal => {
                // Into the right lower lobe bronchus instead of the oesophagus.
                pts.truncate(2);
                pts.push([tx, carina, 0.05]);
                pts.push([an.hila[0][0] * 0.8, an.domes[0] - 0.15, 0.0]);
            }
        }
        polyline(buf, fr, &smooth(&pts), 0.01, 18.0);
    }
    if let Some(pos) = f.cvc {
        let tip_y = match pos {
            TipPosition::Normal => carina + uni(rng, 0.08, 0.2),
            TipPosition::Borderline => carina - uni(rng, 0.12, 0.22),
            TipPosition::Abnormal => an.heart.centre[1] + uni(rng, 0.0, 0.1),
        };
        let pts = [
            [-0.32, -1.7, 0.1],
            [-0.24, -1.05, 0.05],
            [-0.12, -0.8, 0.05],
            [-0.08, carina - 0.2, 0.05],
            [-0.07, tip_y, 0.05],
        ];
        polyline(buf, fr, &smooth(&pts), 0.009, 18.0);
    }
    if f.ecg_leads {
        let k = rng.random_range(3..6);
        for _ in 0..k {
            let c = [
                uni(rng, -0.9, 0.9) * an.body_half_width,
                uni(rng, -1.0, 0.3),
                an.body_half_depth,
            ];
            // Electrode snap: a dense ring.
            let ring: Vec<[f32; 3]> = (0..=12)
                .map(|t| {
                    let a = t as f32 * std::f32::consts::TAU / 12.0;
                    [
                        c[0] + 0.03 * a.cos(),
                        c[1] + 0.03 * a.sin(),
                        c[2] + 0.03 * a.sin(),
                    ]
                })
                .collect();
            polyline(buf, fr, &ring, 0.008, 15.0);
            let end = [c[0] * 1.6 + uni(rng, -0.3, 0.3), -1.6, c[2]];
            let mid = [
                0.5 * (c[0] + end[0]) + uni(rng, -0.3, 0.3),
                0.5 * (c[1] + end[1]),
                c[2],
            ];
            polyline(buf, fr, &smooth(&[c, mid, end]), 0.005, 10.0);
        }
    }
}
