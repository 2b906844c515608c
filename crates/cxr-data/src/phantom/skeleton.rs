//! The skeleton: vertebrae, posterior and anterior ribs, clavicles (frontal);
//! vertebral bodies, posterior elements and sternum (lateral).

use super::anatomy::Anatomy;
use super::render::smoothstep;

/// Bone chord of the skeleton at `(h, y)` (multiply by the bone attenuation).
pub(crate) fn bones(
    an: &Anatomy,
    spine_x: f32,
    supine: bool,
    lateral: bool,
    h: f32,
    y: f32,
) -> f32 {
    let mut b = 0.0;
    // floor, not rem_euclid: fmod is a slow libm call in the per-pixel loop.
    let phase = (y - an.rib_top) / an.vertebra_period;
    let frac = phase - phase.floor();
    // Disc spaces between vertebral bodies are less dense.
    let body = 0.75 + 0.25 * smoothstep(0.0, 0.15, frac.min(1.0 - frac));
    if lateral {
        let zs = -an.body_half_depth + 0.3;
        let dz = (h - zs).abs();
        if dz < 0.14 && y > -1.4 {
            b += 0.12 * body * (1.0 - smoothstep(0.11, 0.14, dz));
        }
        let zp = zs - 0.22;
        if (h - zp).abs() < 0.06 && y > -1.4 {
            b += 0.06 * body;
        }
        let zst = an.body_half_depth - 0.08;
        if (h - zst).abs() < 0.025 && y > an.clavicle_y && y < an.heart.centre[1] {
            b += 0.08;
        }
        return b;
    }
    let dx = h - spine_x;
    let r = 0.12;
    if dx.abs() < r && y > -1.6 {
        b += 0.14 * body * (r * r - dx * dx).sqrt() / r;
        // Pedicles: paired cortical rings.
        let pd = dx.abs() - 0.08;
        let pv = (frac - 0.35) / 0.12;
        let ring = (pd * pd / (0.025 * 0.025) + pv * pv - 1.0).abs();
        if ring < 0.5 {
            b += 0.02;
        }
    }
    let sign = if h < spine_x { -1.0 } else { 1.0 };
    let thw = an.thorax_half_width * 1.04;
    let t = sign * (h - spine_x) / thw;
    let ht = an.rib_half_thickness * (0.8 + 0.5 * t.clamp(0.0, 1.0));
    let fade = 1.0 - smoothstep(0.98, 1.08, t);
    if t > 0.04 && fade > 0.0 {
        let g = -0.06 * t + 0.2 * t * t + 0.22 * t * t * t;
        let slope = (-0.06 + 0.4 * t + 0.66 * t * t) / thw;
        let kf = (y - an.rib_top - g) / an.rib_spacing;
        let k = (kf + 0.5).floor();
        if (0.0..11.0).contains(&k) {
            let d = (kf - k).abs() * an.rib_spacing / (1.0 + slope * slope).sqrt();
            b += 0.7 * fade * tube(d, ht);
        }
        if t > 0.3 {
            let u = 1.0 - t;
            let ga = 0.42 * u + 0.15 * u * u;
            let sp = an.rib_spacing * 1.05;
            let kf = (y - an.rib_top - 0.22 - ga) / sp;
            let k = (kf + 0.5).floor();
            if (0.0..7.0).contains(&k) {
                let d = (kf - k).abs() * sp / (1.0 + (0.42 / thw).powi(2)).sqrt();
                b += 0.45 * fade * smoothstep(0.3, 0.4, t) * tube(d, ht * 0.9);
            }
        }
    }
    // Clavicles: the sternal heads sit at the midline, not the spine, so a
    // rotated patient shows them off-centre.
    let tc = sign * h / thw;
    if tc > 0.06 && tc < 0.95 {
        let shift = if supine { -0.08 } else { 0.0 };
        let yc = an.clavicle_y + shift + an.clavicle_slope * tc - 0.24 * tc * (1.0 - tc);
        b += 1.4 * tube((y - yc).abs(), 0.035 + 0.015 * (1.0 - tc));
    }
    b
}

/// Cortical tube profile: bright edges, lighter marrow.
#[inline]
fn tube(d: f32, r: f32) -> f32 {
    if d >= r {
        return 0.0;
    }
    let outer = (r * r - d * d).sqrt();
    let ri = 0.65 * r;
    let inner = if d < ri {
        (ri * ri - d * d).sqrt()
    } else {
        0.0
    };
    2.0 * (outer - 0.75 * inner)
}
