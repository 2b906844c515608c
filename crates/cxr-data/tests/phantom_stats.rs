//! Each finding changes the image where it should, prevalences follow the
//! configuration, and reports agree with the labels (mostly: they are noisy
//! on purpose).

use cxr_data::phantom::findings::{
    Atelectasis, AtelectasisKind, Effusion, Lesion, Pneumothorax, Side, TipPosition,
};
use cxr_data::phantom::{
    Anatomy, Finding, Findings, Phantom, PhantomConfig, Prevalence, Site, View, render_image,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const N: usize = 96;

/// Mean difference (finding minus normal) in a box given as fractions of the side.
fn box_mean(d: &[f32], x0: f32, x1: f32, y0: f32, y1: f32) -> f32 {
    let (mut s, mut k) = (0.0, 0);
    for y in (y0 * N as f32) as usize..(y1 * N as f32) as usize {
        for x in (x0 * N as f32) as usize..(x1 * N as f32) as usize {
            s += d[y * N + x];
            k += 1;
        }
    }
    s / k as f32
}

/// Difference images averaged over several patients, PA at site 0.
fn diff(add: impl Fn(&mut Findings)) -> Vec<f32> {
    let site = Site::preset(0, 0);
    let mut acc = vec![0.0f32; N * N];
    let patients = 6;
    for p in 0..patients {
        let an = Anatomy::sample(&mut ChaCha8Rng::seed_from_u64(100 + p));
        let normal = Findings::normal(an.ctr);
        let mut with = normal.clone();
        add(&mut with);
        let a = render_image(&an, &normal, View::Pa, &site, N, 1, p);
        let b = render_image(&an, &with, View::Pa, &site, N, 1, p);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            acc[i] += (f32::from(*y) - f32::from(*x)) / patients as f32;
        }
    }
    acc
}

fn lesion(side: Side, position: [f32; 3], radius: f32, density: f32) -> Lesion {
    Lesion {
        side,
        position,
        radius,
        density,
        shape_seed: 3,
    }
}

// The patient's right lung is on the image's left.
const RIGHT: (f32, f32) = (0.15, 0.45);
const LEFT: (f32, f32) = (0.55, 0.85);

#[test]
fn effusion_brightens_the_lower_zone_on_its_side() {
    let d = diff(|f| {
        f.effusion = Some(Effusion {
            side: Side::Right,
            volume: 0.5,
        })
    });
    let lower = box_mean(&d, RIGHT.0, RIGHT.1, 0.55, 0.68);
    let upper = box_mean(&d, RIGHT.0, RIGHT.1, 0.2, 0.35);
    let other = box_mean(&d, LEFT.0, LEFT.1, 0.55, 0.68);
    assert!(lower > 15.0, "lower {lower}");
    assert!(upper.abs() < 3.0, "upper {upper}");
    assert!(other.abs() < 3.0, "other side {other}");
}

#[test]
fn pneumothorax_darkens_the_apical_periphery() {
    let d = diff(|f| {
        f.pneumothorax = Some(Pneumothorax {
            side: Side::Left,
            size: 0.3,
        })
    });
    let apex = box_mean(&d, 0.62, 0.85, 0.15, 0.3);
    let other = box_mean(&d, 0.15, 0.38, 0.15, 0.3);
    assert!(apex < -4.0, "apex {apex}");
    assert!(other.abs() < 2.0, "other side {other}");
}

#[test]
fn cardiomegaly_widens_the_heart_shadow() {
    let d = diff(|f| {
        f.ctr = 0.62;
        f.cardiomegaly = true;
    });
    let beside_heart = box_mean(&d, 0.55, 0.75, 0.45, 0.62);
    let apex = box_mean(&d, 0.55, 0.75, 0.15, 0.3);
    assert!(beside_heart > 8.0, "beside heart {beside_heart}");
    assert!(apex.abs() < 2.0, "apex {apex}");
}

#[test]
fn lesions_brighten_their_lung() {
    for (name, l) in [
        (
            "consolidation",
            lesion(Side::Right, [0.2, 0.3, 0.0], 0.24, 0.8),
        ),
        ("mass", lesion(Side::Left, [0.1, -0.2, 0.0], 0.17, 0.9)),
        ("nodule", lesion(Side::Right, [0.2, -0.2, 0.0], 0.07, 1.0)),
    ] {
        let d = diff(|f| match name {
            "consolidation" => f.consolidation = Some(l),
            "mass" => f.mass = Some(l),
            _ => f.nodule = Some(l),
        });
        let (own, other) = if l.side == Side::Right {
            (RIGHT, LEFT)
        } else {
            (LEFT, RIGHT)
        };
        let a = box_mean(&d, own.0, own.1, 0.2, 0.6);
        let b = box_mean(&d, other.0, other.1, 0.2, 0.6);
        assert!(a > 0.1 && a > 4.0 * b.abs(), "{name}: own {a} other {b}");
    }
}

#[test]
fn atelectasis_edema_and_devices_show() {
    let d = diff(|f| {
        f.atelectasis = Some(Atelectasis {
            side: Side::Left,
            kind: AtelectasisKind::Lobar,
            severity: 0.9,
        })
    });
    let own = box_mean(&d, LEFT.0, LEFT.1, 0.4, 0.65);
    let other = box_mean(&d, RIGHT.0, RIGHT.1, 0.4, 0.65);
    assert!(
        own > 4.0 && own > 4.0 * other.abs(),
        "atelectasis {own} vs {other}"
    );

    let d = diff(|f| f.edema_grade = 3);
    let r = box_mean(&d, RIGHT.0, RIGHT.1, 0.3, 0.55);
    let l = box_mean(&d, LEFT.0, LEFT.1, 0.3, 0.55);
    assert!(r > 5.0 && l > 5.0, "edema {r} {l}");

    let d = diff(|f| {
        f.ett = Some(TipPosition::Normal);
        f.cvc = Some(TipPosition::Normal);
    });
    // Averaged over patients whose tubes lie in slightly different places.
    let peak = d.iter().cloned().fold(0.0f32, f32::max);
    assert!(peak > 20.0, "devices peak {peak}");
}

#[test]
fn prevalences_follow_the_configuration() {
    for prev in [Prevalence::nih(), Prevalence::balanced()] {
        let ph = Phantom::new(PhantomConfig {
            patients: 3000,
            size: 64,
            prevalence: prev,
            ..PhantomConfig::default()
        })
        .unwrap();
        let studies: Vec<_> = ph.patients.iter().flat_map(|p| &p.studies).collect();
        for f in Finding::ALL {
            let k = studies
                .iter()
                .filter(|s| s.findings.labels()[f as usize])
                .count();
            let rate = k as f64 / studies.len() as f64;
            let want = prev.get(f);
            // Chronic findings are per patient, so their rate is noisier.
            let tol = 0.25 * want + 0.01;
            assert!((rate - want).abs() < tol, "{}: {rate} vs {want}", f.name());
        }
    }
}

#[test]
fn reports_mostly_agree_with_labels() {
    let ph = Phantom::new(PhantomConfig {
        patients: 800,
        size: 64,
        prevalence: Prevalence::balanced(),
        ..PhantomConfig::default()
    })
    .unwrap();
    let studies: Vec<_> = ph.patients.iter().flat_map(|p| &p.studies).collect();
    let words = [
        (Finding::Effusion, "effusion"),
        (Finding::Pneumothorax, "pneumothorax"),
        (Finding::Cardiomegaly, "cardiomegaly"),
        (Finding::Mass, " mass"),
    ];
    for (f, w) in words {
        let (mut tp, mut pos) = (0, 0);
        for s in &studies {
            let text = format!("{} {}", s.findings_text, s.impression).to_lowercase();
            let negated = text.contains(&format!("no {}", w.trim()))
                || text.contains(&format!("or {}", w.trim()))
                || text.contains(&format!("no pleural {}", w.trim()));
            let mentioned = text.contains(w) && !negated
                || (f == Finding::Cardiomegaly && text.contains("enlarge"));
            if s.findings.labels()[f as usize] {
                pos += 1;
                tp += usize::from(mentioned);
            }
        }
        let recall = tp as f64 / pos as f64;
        assert!(
            recall > 0.6 && recall < 1.0,
            "{}: recall {recall}",
            f.name()
        );
    }
    let all: String = studies.iter().map(|s| s.findings_text.as_str()).collect();
    for w in [
        "No pneumothorax",
        "left",
        "right",
        "Compared with the prior",
    ] {
        assert!(all.contains(w), "{w}");
    }
}
