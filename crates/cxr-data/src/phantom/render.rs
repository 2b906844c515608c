//! Projection of the patient's chest onto the detector: attenuation summed
//! along the rays (line integrals through analytic shapes), frontal or lateral.
//!
//! Everything starts as soft tissue; aerated lung, pleural gas, trachea and
//! gastric bubble remove attenuation; bone, fluid, lesions and devices add it.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::View;
use super::anatomy::{Anatomy, Ellipsoid, Lung};
use super::devices::{Frame, draw_devices, stamp};
use super::findings::{AtelectasisKind, Findings, Lesion, Side};
use super::skeleton::bones;

/// Attenuation of aerated lung relative to soft tissue.
const MU_LUNG: f32 = 0.22;
/// Extra attenuation of cortical bone over soft tissue.
pub(crate) const MU_BONE: f32 = 1.6;

#[inline]
fn clamp01(v: f32) -> f32 {
    v.clamp(0.0, 1.0)
}

#[inline]
pub(crate) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = clamp01((x - e0) / (e1 - e0));
    t * t * (3.0 - 2.0 * t)
}

#[inline]
fn lattice(ix: i32, iy: i32, seed: u32) -> f32 {
    let mut h =
        (ix as u32).wrapping_mul(0x27D4_EB2D) ^ (iy as u32).wrapping_mul(0x1656_67B1) ^ seed;
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    (h & 0xFFFF) as f32 / 65535.0
}

#[inline]
fn value_noise(x: f32, y: f32, seed: u32) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (tx, ty) = (x - fx, y - fy);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let (ix, iy) = (fx as i32, fy as i32);
    let a = lattice(ix, iy, seed) + sx * (lattice(ix + 1, iy, seed) - lattice(ix, iy, seed));
    let b = lattice(ix, iy + 1, seed)
        + sx * (lattice(ix + 1, iy + 1, seed) - lattice(ix, iy + 1, seed));
    a + sy * (b - a)
}

/// Cheap deterministic texture in `[0, 1]` (two octaves of value noise with
/// a feature size of a few centimetres), fixed in patient coordinates.
#[inline]
fn mottle(x: f32, y: f32, s: f32) -> f32 {
    let seed = s.to_bits();
    0.65 * value_noise(x * 14.0, y * 14.0, seed)
        + 0.35 * value_noise(x * 31.0, y * 31.0, seed ^ 0x9E37)
}

/// Chord of a lung along the frontal ray at `(x, y)`; `sign` is -1 for the
/// right lung, +1 for the left (lateral direction).
#[inline]
fn lung_frontal(l: &Lung, sign: f32, x: f32, y: f32) -> f32 {
    let dy = (y - l.centre[1]) / l.radii[1];
    // The apex is narrower than the base.
    let taper = if dy < 0.0 {
        0.55 + 0.45 * (1.0 - dy * dy).max(0.0).sqrt()
    } else {
        1.0
    };
    let dx = (x - l.centre[0]) / (l.radii[0] * taper);
    let xx = if dx * sign > 0.0 {
        dx * dx
    } else {
        (dx * dx) * (dx * dx)
    };
    let yy = if dy < 0.0 {
        dy * dy
    } else {
        (dy * dy * dy).abs()
    };
    let q = 1.0 - xx - yy;
    if q > 0.0 {
        2.0 * l.radii[2] * q.sqrt()
    } else {
        0.0
    }
}

/// Chord of a lung along the lateral (left-right) ray at `(z, y)`.
#[inline]
fn lung_lateral(l: &Lung, z: f32, y: f32) -> f32 {
    let dz = (z - l.centre[2]) / l.radii[2];
    let dy = (y - l.centre[1]) / l.radii[1];
    let yy = if dy < 0.0 {
        dy * dy
    } else {
        (dy * dy * dy).abs()
    };
    let q = 1.0 - yy - dz * dz;
    if q > 0.0 {
        l.radii[0] * (q.sqrt() + q.sqrt().sqrt())
    } else {
        0.0
    }
}

/// Chord of an ellipsoid along the ray through 2-D point `(h, y)`; `h` is
/// `x` (frontal) or `z` (lateral).
#[inline]
fn ellipsoid_chord(e: &Ellipsoid, lateral: bool, h: f32, y: f32) -> f32 {
    let (hc, hr, dr) = if lateral {
        (e.centre[2], e.radii[2], e.radii[0])
    } else {
        (e.centre[0], e.radii[0], e.radii[2])
    };
    if hr <= 0.0 {
        return 0.0;
    }
    let a = (h - hc) / hr;
    let b = (y - e.centre[1]) / e.radii[1];
    let q = 1.0 - a * a - b * b;
    if q > 0.0 { 2.0 * dr * q.sqrt() } else { 0.0 }
}

/// One lesion resolved to patient coordinates.
struct Blob {
    side: usize,
    centre: [f32; 3],
    radius: f32,
    density: f32,
    lobes: [([f32; 3], f32); 3],
    fissure: Option<f32>,
}

fn resolve(les: &Lesion, an: &Anatomy, lobulated: bool) -> Blob {
    let s = les.side.lung();
    let l = &an.lungs[s];
    let sign = if s == 0 { -1.0 } else { 1.0 };
    let centre = [
        l.centre[0] + sign * les.position[0] * l.radii[0] * 0.7,
        (l.centre[1] + les.position[1] * l.radii[1] * 0.75).min(an.domes[s] - les.radius * 0.6),
        l.centre[2] + les.position[2] * l.radii[2] * 0.6,
    ];
    let mut lobes = [(centre, les.radius); 3];
    if lobulated {
        for (k, lobe) in lobes.iter_mut().enumerate() {
            let a = (les.shape_seed % 628) as f32 / 100.0 + k as f32 * 2.1;
            let off = les.radius * 0.45;
            *lobe = (
                [
                    centre[0] + off * a.cos(),
                    centre[1] + off * a.sin(),
                    centre[2],
                ],
                les.radius * (0.6 + 0.1 * k as f32),
            );
        }
    }
    // Right middle-lobe consolidation stops sharply at the minor fissure.
    let fissure = (s == 0 && les.shape_seed % 2 == 1 && les.zone() == "mid")
        .then_some(centre[1] - les.radius * 0.6);
    Blob {
        side: s,
        centre,
        radius: les.radius,
        density: les.density,
        lobes,
        fissure,
    }
}

/// Fully resolved geometry of one image.
struct Scene<'a> {
    an: &'a Anatomy,
    f: &'a Findings,
    lungs: [Lung; 2],
    collapsed: [Option<Lung>; 2],
    domes: [f32; 2],
    heart: Ellipsoid,
    supine: bool,
    spine_x: f32,
    consolidation: Option<Blob>,
    masses: Vec<Blob>,
}

impl<'a> Scene<'a> {
    fn new(an: &'a Anatomy, f: &'a Findings, view: View) -> Self {
        let supine = view == View::Ap;
        let mut domes = an.domes;
        let mut heart = an.heart;
        let rx = an.heart_rx_for(f.ctr);
        heart.centre[0] += (rx - heart.radii[0]) * 0.35;
        heart.radii[1] *= 1.0 + (f.ctr - an.ctr) * 0.6;
        heart.radii[0] = rx;
        if supine {
            // Supine portable films: poorer inspiration, magnified heart.
            domes = domes.map(|d| d - 0.06);
            heart.radii[0] *= 1.1;
            heart.radii[1] *= 1.08;
            heart.centre[1] -= 0.04;
        }
        if let Some(a) = f.atelectasis {
            let s = a.side.lung();
            let lobar = a.kind == AtelectasisKind::Lobar;
            domes[s] -= if lobar { 0.1 } else { 0.04 } * a.severity;
            if lobar {
                heart.centre[0] += if s == 0 { -0.04 } else { 0.04 } * a.severity;
            }
        }
        let lungs = an.lungs;
        let mut collapsed = [None, None];
        if let Some(p) = f.pneumothorax {
            let s = p.side.lung();
            let l = lungs[s];
            let k = 1.0 - p.size;
            let anchor = [an.hila[s][0], an.domes[s] - 0.1 * l.radii[1], l.centre[2]];
            collapsed[s] = Some(Lung {
                centre: [0, 1, 2].map(|i| anchor[i] + (l.centre[i] - anchor[i]) * k),
                radii: l.radii.map(|r| r * k),
            });
        }
        let mut masses = Vec::new();
        if let Some(n) = &f.nodule {
            masses.push(resolve(n, an, false));
        }
        if let Some(m) = &f.mass {
            masses.push(resolve(m, an, true));
        }
        Scene {
            an,
            f,
            lungs,
            collapsed,
            domes,
            heart,
            supine,
            spine_x: an.axial_rotation,
            consolidation: f.consolidation.as_ref().map(|c| resolve(c, an, false)),
            masses,
        }
    }

    /// Dome height for side `s` at horizontal coordinate `h` (x or z).
    #[inline]
    fn dome(&self, s: usize, h: f32, lateral: bool) -> f32 {
        let l = &self.lungs[s];
        if lateral {
            let t = (h + 0.05) / l.radii[2];
            self.domes[s] + self.an.dome_curvature * t * t + 0.08 * (-t).max(0.0)
        } else {
            let t = (h - l.centre[0]) / l.radii[0];
            self.domes[s] + self.an.dome_curvature * t * t
        }
    }

    /// Fraction of aerated lung on side `s` replaced by fluid or tissue.
    fn opacity(&self, s: usize, h: f32, y: f32, lateral: bool, px: f32) -> f32 {
        let l = &self.lungs[s];
        let sign = if s == 0 { -1.0 } else { 1.0 };
        let mut keep = 1.0f32;
        if let Some(e) = self.f.effusion
            && (e.side == Side::Bilateral || e.side.lung() == s)
        {
            let vol = if e.side == Side::Bilateral && s == 1 {
                e.volume * 0.8
            } else {
                e.volume
            };
            let height = (0.09 + 0.6 * vol) * l.radii[1];
            if self.supine {
                // Layering fluid: a veil that thickens towards the base.
                let t = clamp01((y - (l.centre[1] - l.radii[1])) / (1.8 * l.radii[1]));
                keep *= 1.0 - 0.6 * vol * t.powf(0.8);
                let base = self.dome(s, h, lateral) - 0.4 * height;
                keep *= 1.0 - 0.8 * smoothstep(base - 0.03, base + 0.03, y);
            } else {
                // Meniscus: higher laterally (frontal) or posteriorly (lateral).
                let t = if lateral {
                    clamp01(0.5 - 0.5 * (h - l.centre[2]) / l.radii[2])
                } else {
                    clamp01(0.5 + 0.5 * sign * (h - l.centre[0]) / l.radii[0])
                };
                let top = self.dome(s, h, lateral) - height * (0.5 + 0.7 * t * t);
                let w = 0.015 + 0.05 * vol;
                keep *= 1.0 - smoothstep(top - w, top + w, y);
            }
        }
        if let Some(c) = &self.consolidation
            && c.side == s
        {
            let ch = if lateral { c.centre[2] } else { c.centre[0] };
            let (dh, dy) = (h - ch, y - c.centre[1]);
            let d2 = (dh * dh + dy * dy) / (c.radius * c.radius);
            let mut v = c.density * (-d2 * d2 * 0.7).exp() * (0.65 + 0.5 * mottle(h, y, 1.3));
            if let Some(fy) = c.fissure {
                v *= smoothstep(fy - px, fy + px, y);
            }
            keep *= 1.0 - clamp01(v);
        }
        if let Some(a) = self.f.atelectasis
            && a.side.lung() == s
        {
            let v = match a.kind {
                AtelectasisKind::Plate => {
                    let hc = if lateral {
                        l.centre[2]
                    } else {
                        l.centre[0] + sign * 0.1 * l.radii[0]
                    };
                    let yc = self.dome(s, hc, lateral) - 0.22 * l.radii[1] + 0.08 * (h - hc);
                    let th = 0.018 + 0.02 * a.severity;
                    let along = ((h - hc) / (0.55 * l.radii[0])).abs();
                    let dy = (y - yc) / th.max(px);
                    (0.5 + 0.5 * a.severity)
                        * (-dy * dy).exp()
                        * (1.0 - smoothstep(0.7, 1.0, along))
                }
                AtelectasisKind::Lobar => {
                    // Collapsed lower lobe: a wedge from the hilum to the medial base.
                    let (hx, hy) = if lateral {
                        (0.0, self.an.hila[s][1])
                    } else {
                        (self.an.hila[s][0], self.an.hila[s][1])
                    };
                    let depth = y - hy;
                    let rel = if lateral { -(h - hx) } else { sign * (h - hx) };
                    let half = 0.12 + 0.35 * clamp01(depth / (self.domes[s] - hy + 1e-3));
                    let inside = smoothstep(0.0, 0.05, depth)
                        * (1.0 - smoothstep(half - 0.04, half + 0.04, rel.abs() + 0.5 * half))
                        * (1.0 - smoothstep(-0.15, 0.0, -rel - 0.1));
                    0.75 * a.severity * inside
                }
            };
            keep *= 1.0 - clamp01(v);
        }
        if self.f.edema_grade >= 2 {
            let hil = self.an.hila[s];
            let hh = if lateral { 0.0 } else { hil[0] };
            let d2 = ((h - hh).powi(2) + (y - hil[1]).powi(2)) / (0.45 * 0.45);
            let g = f32::from(self.f.edema_grade);
            let haze = if self.f.edema_grade == 3 {
                0.55 * (0.6 + 0.5 * mottle(h, y, 4.1))
            } else {
                0.15 * (g - 1.0)
            };
            keep *= 1.0 - clamp01(haze * (-d2).exp());
        }
        1.0 - keep
    }

    /// Extra tissue chord of nodules and masses on side `s`.
    fn lesion_chord(&self, s: usize, h: f32, y: f32, lateral: bool) -> f32 {
        let mut best = 0.0f32;
        for m in self.masses.iter().filter(|m| m.side == s) {
            for (c, r) in &m.lobes {
                let ch = if lateral { c[2] } else { c[0] };
                let d2 = (h - ch).powi(2) + (y - c[1]).powi(2);
                if d2 < r * r {
                    best = best.max(m.density * 2.0 * (r * r - d2).sqrt());
                }
            }
        }
        best
    }
}

/// Renders the attenuation map (line integrals, `n*n`, row-major) of one view.
pub(crate) fn attenuation(
    an: &Anatomy,
    f: &Findings,
    view: View,
    fr: &Frame,
    detail_seed: u64,
) -> Vec<f32> {
    let sc = Scene::new(an, f, view);
    let n = fr.n;
    let lateral = fr.lateral;
    let mut thin = vec![0.0f32; n * n];
    // Vessels: edema congests them, most visibly in the upper zones.
    let congest = 1.0 + 0.15 * f32::from(f.edema_grade);
    for v in &an.vessels {
        let upper = if v.b[1] < an.carina_y + 0.15 && f.edema_grade > 0 {
            1.35
        } else {
            1.0
        };
        let r = v.radius * congest * upper;
        stamp(
            &mut thin,
            fr,
            fr.project(v.a),
            fr.project(v.b),
            r,
            1.0 - MU_LUNG,
            true,
        );
    }
    if f.edema_grade >= 2 && !lateral {
        // Kerley B lines: short horizontal septal lines at the lateral bases.
        for (s, l) in an.lungs.iter().enumerate() {
            let sign = if s == 0 { -1.0 } else { 1.0 };
            for k in 0..6 {
                let y = sc.domes[s] - 0.04 - 0.05 * k as f32;
                let xo = l.centre[0] + sign * l.radii[0] * (0.95 - 0.03 * (k % 3) as f32);
                let xi = xo - sign * 0.08;
                stamp(&mut thin, fr, [xo, y], [xi, y], 0.005, 2.0, false);
            }
        }
    }
    let mut dev = vec![0.0f32; n * n];
    let mut rng = ChaCha8Rng::seed_from_u64(detail_seed);
    draw_devices(&mut dev, fr, an, f, &mut rng);

    let mut out = vec![0.0f32; n * n];
    let px = fr.pixel;
    let bw = an.body_half_width;
    let bd = an.body_half_depth;
    let ptx_line = f.pneumothorax.map(|p| p.side.lung());
    for i in 0..n {
        for j in 0..n {
            let [h, y] = fr.to_patient(j as f32, i as f32);
            // Lateral images show anterior on the left: z = -h.
            let hz = if lateral { -h } else { h };
            // Body outline: neck, shoulders, chest, upper abdomen.
            let sh = smoothstep(an.clavicle_y - 0.3, an.clavicle_y - 0.02, y);
            let (aw, ad) = if lateral {
                (bw * (0.35 + 0.7 * sh), bd * (0.6 + 0.4 * sh))
            } else {
                (
                    bw * (0.33 + 0.8 * sh - 0.1 * sh * smoothstep(-0.6, 0.6, y)),
                    bd * (0.6 + 0.4 * sh),
                )
            };
            let (w, d) = if lateral { (ad, aw) } else { (aw, ad) };
            let t = hz / w;
            let edge = 1.0 - t * t;
            let mut a = if edge > 0.0 {
                2.0 * d * edge.sqrt() * an.habitus
            } else {
                0.0
            };
            if a == 0.0 {
                out[i * n + j] = dev[i * n + j] * 0.2;
                continue;
            }
            for b in &an.breasts {
                a += 0.35 * ellipsoid_chord(b, lateral, hz, y);
            }
            let heart = ellipsoid_chord(&sc.heart, lateral, hz, y);
            let (hmax, hd_frac) = if lateral {
                (2.0 * sc.heart.radii[0], 0.6)
            } else {
                (2.0 * sc.heart.radii[2], 0.92)
            };
            let mut aerated = 0.0f32;
            let mut lungmask = 0.0f32;
            for s in 0..2 {
                let sign = if s == 0 { -1.0 } else { 1.0 };
                let cut = clamp01((sc.dome(s, hz, lateral) - y) / px + 0.5);
                if cut == 0.0 {
                    continue;
                }
                let chord = |l: &Lung| {
                    if lateral {
                        lung_lateral(l, hz, y)
                    } else {
                        lung_frontal(l, sign, hz, y)
                    }
                };
                let whole = chord(&sc.lungs[s]) * cut;
                if whole <= 0.0 {
                    continue;
                }
                // The heart pushes the lung aside: its silhouette border sits
                // close to the ellipsoid's outline.
                let keep = 1.0 - hd_frac * smoothstep(0.0, 0.3 * hmax, heart);
                let whole = whole * keep;
                let lung = match &sc.collapsed[s] {
                    Some(c) => (chord(c) * cut * keep).min(whole),
                    None => whole,
                };
                // Pleural gas: no lung tissue, hence darker and no markings.
                let gas = whole - lung;
                let lung_mu = if sc.collapsed[s].is_some() { 1.3 } else { 1.0 } * MU_LUNG;
                let opac = sc.opacity(s, hz, y, lateral, px);
                let texture = 0.94 + 0.06 * mottle(hz, y, 0.3);
                let aer = lung * (1.0 - opac) * texture;
                let lesion = sc.lesion_chord(s, hz, y, lateral).min(aer);
                a -= (1.0 - lung_mu) * (aer - lesion) + gas;
                aerated += aer - lesion;
                lungmask += clamp01(aer / 0.25);
                if ptx_line == Some(s)
                    && let Some(c) = &sc.collapsed[s]
                    && gas > 0.0
                {
                    // Visceral pleural line at the edge of the collapsed lung.
                    let inner = chord(c) * cut;
                    if inner > 0.0 && inner < 0.12 {
                        a += 0.05 * (1.0 - inner / 0.12);
                    }
                }
            }
            a += thin[i * n + j] * clamp01(lungmask);
            let _ = aerated;
            // Trachea and main bronchi: an air column over the spine.
            let tr_h = if lateral {
                0.1 - 0.1 * clamp01((y + 1.2) / (an.carina_y + 1.2))
            } else {
                an.trachea_x
            };
            if y < an.carina_y && y > -1.8 {
                let dt = hz - tr_h;
                let r = 0.06;
                if dt.abs() < r {
                    a -= 2.0
                        * (r * r - dt * dt).sqrt()
                        * (1.0 - smoothstep(an.carina_y - 0.1, an.carina_y, y));
                }
            }
            a -= ellipsoid_chord(&an.gastric_bubble, lateral, hz, y)
                * smoothstep(sc.domes[1] - 0.01, sc.domes[1] + 0.03, y);
            a += bones(an, sc.spine_x, sc.supine, lateral, hz, y) * MU_BONE;
            a += dev[i * n + j];
            // Lateral films are exposed harder; processing evens out the thicker body.
            out[i * n + j] = a.max(0.0) * if lateral { 0.78 } else { 1.0 };
        }
    }
    out
}

/// Pixels (`n*n`, row-major) where a consolidation, nodule or mass replaces
/// aerated lung in this view: inside the blob's radius (a consolidation
/// stops at its fissure), within the lung and above the dome. `None` when
/// the study has none of the three.
pub(crate) fn lesion_mask(an: &Anatomy, f: &Findings, view: View, fr: &Frame) -> Option<Vec<bool>> {
    let sc = Scene::new(an, f, view);
    if sc.consolidation.is_none() && sc.masses.is_empty() {
        return None;
    }
    let n = fr.n;
    let lateral = fr.lateral;
    let mut mask = vec![false; n * n];
    for i in 0..n {
        for j in 0..n {
            let [h, y] = fr.to_patient(j as f32, i as f32);
            let hz = if lateral { -h } else { h };
            mask[i * n + j] = (0..2).any(|s| {
                let sign = if s == 0 { -1.0 } else { 1.0 };
                let l = &sc.lungs[s];
                let chord = if lateral {
                    lung_lateral(l, hz, y)
                } else {
                    lung_frontal(l, sign, hz, y)
                };
                if chord <= 0.0 || y > sc.dome(s, hz, lateral) {
                    return false;
                }
                let consolidated = sc.consolidation.as_ref().is_some_and(|c| {
                    let ch = if lateral { c.centre[2] } else { c.centre[0] };
                    let d2 =
                        ((hz - ch).powi(2) + (y - c.centre[1]).powi(2)) / (c.radius * c.radius);
                    c.side == s && d2 < 1.0 && c.fissure.is_none_or(|fy| y > fy)
                });
                consolidated || sc.lesion_chord(s, hz, y, lateral) > 0.0
            });
        }
    }
    Some(mask)
}
