//! Patient anatomy: the latent shape of one patient's chest, fixed across all
//! of that patient's studies.
//!
//! Coordinates are in "thorax units" (about 15 cm): `x` runs to the patient's
//! left, `y` downwards (feet), `z` anteriorly. The origin is mid-chest.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// One tapered vessel or airway segment in 3-D.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Segment3 {
    /// Start point `[x, y, z]` (the hilar end).
    pub a: [f32; 3],
    /// End point `[x, y, z]` (the peripheral end).
    pub b: [f32; 3],
    /// Radius in thorax units.
    pub radius: f32,
}

/// A superellipsoid lung: rounder laterally and at the apex, flatter medially
/// and at the base, cut from below by the hemidiaphragm.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Lung {
    /// Centre `[x, y, z]`.
    pub centre: [f32; 3],
    /// Semi-axes `[x, y, z]`.
    pub radii: [f32; 3],
}

/// An ellipsoid (heart, breast, gastric bubble).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Ellipsoid {
    /// Centre `[x, y, z]`.
    pub centre: [f32; 3],
    /// Semi-axes `[x, y, z]`.
    pub radii: [f32; 3],
}

/// The latent anatomy of one patient.
#[derive(Clone, Debug, Serialize)]
pub struct Anatomy {
    /// Female patients get breast shadows over the lower zones.
    pub female: bool,
    /// Age in years (reports only).
    pub age: u32,
    /// Body half-width at lung level.
    pub body_half_width: f32,
    /// Body half-depth (antero-posterior).
    pub body_half_depth: f32,
    /// Extra soft tissue (habitus), scales the body attenuation.
    pub habitus: f32,
    /// Right lung, then left lung.
    pub lungs: [Lung; 2],
    /// Hemidiaphragm dome height (`y` of the dome top), right then left.
    pub domes: [f32; 2],
    /// Dome curvature (how much lower the costophrenic angles are).
    pub dome_curvature: f32,
    /// The heart with its normal (non-enlarged) size.
    pub heart: Ellipsoid,
    /// Normal cardiothoracic ratio of this patient.
    pub ctr: f32,
    /// Inner thoracic half-width used for the cardiothoracic ratio.
    pub thorax_half_width: f32,
    /// `y` of the carina.
    pub carina_y: f32,
    /// `x` of the trachea.
    pub trachea_x: f32,
    /// Axial rotation: shifts the spine against the sternum and clavicles.
    pub axial_rotation: f32,
    /// `y` of the first posterior rib at the spine.
    pub rib_top: f32,
    /// Vertical spacing of the posterior ribs.
    pub rib_spacing: f32,
    /// Rib half-thickness.
    pub rib_half_thickness: f32,
    /// `y` of the clavicle heads.
    pub clavicle_y: f32,
    /// Rise of the clavicles towards the shoulders.
    pub clavicle_slope: f32,
    /// Vertebral period (`y`).
    pub vertebra_period: f32,
    /// Breasts (zero radii for male patients).
    pub breasts: [Ellipsoid; 2],
    /// Gastric air bubble under the left hemidiaphragm.
    pub gastric_bubble: Ellipsoid,
    /// Hila `[x, y]`, right then left.
    pub hila: [[f32; 2]; 2],
    /// Pulmonary vessel tree.
    pub vessels: Vec<Segment3>,
    /// In-plane rotation (radians) of the patient on the detector.
    pub tilt: f32,
    /// Shift `[x, y]` of the patient in the field of view.
    pub shift: [f32; 2],
    /// Zoom (patient size relative to the field of view).
    pub zoom: f32,
}

pub(crate) fn uni(rng: &mut ChaCha8Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

impl Anatomy {
    /// Draws one patient's anatomy.
    pub fn sample(rng: &mut ChaCha8Rng) -> Self {
        let female = rng.random_bool(0.45);
        let age = rng.random_range(18..=92);
        let size = uni(rng, 0.92, 1.08);
        let body_half_width = size * uni(rng, 0.95, 1.05) * if female { 0.96 } else { 1.0 };
        let body_half_depth = size * uni(rng, 0.62, 0.78);
        let habitus = uni(rng, 0.85, 1.25);
        let inspiration = uni(rng, -0.07, 0.07);
        let lung_height = uni(rng, 0.8, 0.9) * size;
        let lung_width = body_half_width * uni(rng, 0.38, 0.43);
        let cy = -0.12 + inspiration * 0.5;
        let az = body_half_depth * 0.62;
        let lungs = [
            Lung {
                centre: [-(body_half_width * 0.47), cy, -0.05],
                radii: [lung_width * 1.04, lung_height, az],
            },
            Lung {
                centre: [body_half_width * 0.48, cy - 0.01, -0.05],
                radii: [lung_width * 0.97, lung_height, az],
            },
        ];
        let dome_base = cy + lung_height * 0.78 + inspiration;
        // The right dome sits higher because of the liver.
        let domes = [
            dome_base - uni(rng, 0.02, 0.08),
            dome_base + uni(rng, -0.01, 0.03),
        ];
        let thorax_half_width = body_half_width * 0.9;
        let ctr = uni(rng, 0.38, 0.48);
        let heart_rx = ctr * thorax_half_width;
        let heart = Ellipsoid {
            centre: [
                heart_rx * uni(rng, 0.32, 0.45),
                domes[1] + uni(rng, -0.03, 0.03),
                0.15,
            ],
            radii: [heart_rx, uni(rng, 0.34, 0.4), body_half_depth * 0.5],
        };
        let carina_y = cy - lung_height * uni(rng, 0.22, 0.3);
        let trachea_x = uni(rng, -0.04, 0.0);
        let hila = [
            [-(body_half_width * 0.22), carina_y + 0.2],
            [body_half_width * 0.2, carina_y + 0.17],
        ];
        let breast_r = if female { uni(rng, 0.2, 0.34) } else { 0.0 };
        let breasts = [-1.0f32, 1.0].map(|s| Ellipsoid {
            centre: [s * body_half_width * 0.55, domes[0] + 0.02, body_half_depth],
            radii: [breast_r * 1.5, breast_r, breast_r * 0.7],
        });
        let gastric_bubble = Ellipsoid {
            centre: [body_half_width * uni(rng, 0.35, 0.5), domes[1] + 0.1, 0.0],
            radii: [uni(rng, 0.06, 0.14), uni(rng, 0.04, 0.07), 0.1],
        };
        let mut anatomy = Anatomy {
            female,
            age,
            body_half_width,
            body_half_depth,
            habitus,
            lungs,
            domes,
            dome_curvature: uni(rng, 0.08, 0.14),
            heart,
            ctr,
            thorax_half_width,
            carina_y,
            trachea_x,
            axial_rotation: uni(rng, -0.05, 0.05),
            rib_top: cy - lung_height * 0.92,
            rib_spacing: lung_height * uni(rng, 0.145, 0.165),
            rib_half_thickness: uni(rng, 0.024, 0.03),
            clavicle_y: cy - lung_height * uni(rng, 0.72, 0.82),
            clavicle_slope: uni(rng, -0.12, 0.02),
            vertebra_period: uni(rng, 0.14, 0.17),
            breasts,
            gastric_bubble,
            hila,
            vessels: Vec::new(),
            tilt: uni(rng, -5.0, 5.0).to_radians(),
            shift: [uni(rng, -0.06, 0.06), uni(rng, -0.05, 0.05)],
            zoom: uni(rng, 0.92, 1.06) / size.sqrt(),
        };
        anatomy.vessels = vessel_tree(&anatomy, rng);
        anatomy
    }

    /// Heart transverse semi-axis giving cardiothoracic ratio `ctr`.
    pub fn heart_rx_for(&self, ctr: f32) -> f32 {
        ctr * self.thorax_half_width
    }
}

fn vessel_tree(a: &Anatomy, rng: &mut ChaCha8Rng) -> Vec<Segment3> {
    let mut out = Vec::with_capacity(160);
    for (side, hilum) in a.hila.iter().enumerate() {
        let sign = if side == 0 { -1.0f32 } else { 1.0 };
        let lung = a.lungs[side];
        // Main branches fan out from the hilum: up, lateral, down.
        for k in 0..5 {
            let base = -1.35 + 0.62 * k as f32 + uni(rng, -0.15, 0.15);
            let dir = [
                sign * base.cos().abs().max(0.25),
                base.sin(),
                uni(rng, -0.4, 0.4),
            ];
            let len = lung.radii[1] * uni(rng, 0.22, 0.3);
            branch(
                &mut out,
                rng,
                [hilum[0], hilum[1], 0.0],
                dir,
                len,
                0.028,
                4,
                &lung,
            );
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn branch(
    out: &mut Vec<Segment3>,
    rng: &mut ChaCha8Rng,
    start: [f32; 3],
    dir: [f32; 3],
    len: f32,
    radius: f32,
    depth: u32,
    lung: &Lung,
) {
    let norm = (dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]).sqrt();
    let d = dir.map(|v| v / norm);
    let end = [
        start[0] + d[0] * len,
        start[1] + d[1] * len,
        start[2] + d[2] * len,
    ];
    // Vessels stop at the pleura: keep the end inside the lung envelope.
    let ex = (end[0] - lung.centre[0]) / lung.radii[0];
    let ey = (end[1] - lung.centre[1]) / lung.radii[1];
    if ex * ex + ey * ey > 0.95 {
        return;
    }
    out.push(Segment3 {
        a: start,
        b: end,
        radius,
    });
    if depth == 0 {
        return;
    }
    for _ in 0..2 {
        let turn = uni(rng, 0.25, 0.6) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let (s, c) = turn.sin_cos();
        let nd = [
            d[0] * c - d[1] * s,
            d[0] * s + d[1] * c,
            d[2] + uni(rng, -0.3, 0.3),
        ];
        let next_len = len * uni(rng, 0.68, 0.85);
        branch(out, rng, end, nd, next_len, radius * 0.72, depth - 1, lung);
    }
}
