//! Findings: what is wrong in one study, with laterality and severity, and how
//! often (prevalence and co-occurrence).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::anatomy::uni;

/// The labelled findings, in `labels.csv` column order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Finding {
    /// Lung volume loss (plate-like or lobar).
    Atelectasis,
    /// Cardiothoracic ratio above 0.5.
    Cardiomegaly,
    /// Airspace consolidation.
    Consolidation,
    /// Pulmonary edema, any grade from 1.
    Edema,
    /// Pleural effusion.
    Effusion,
    /// Lung mass (over 3 cm).
    Mass,
    /// Lung nodule (3 cm or less).
    Nodule,
    /// Pneumothorax.
    Pneumothorax,
    /// Any of endotracheal tube, nasogastric tube, central venous catheter.
    SupportDevices,
}

/// Number of labelled findings.
pub const NUM_FINDINGS: usize = 9;

impl Finding {
    /// All findings in column order.
    pub const ALL: [Finding; NUM_FINDINGS] = [
        Finding::Atelectasis,
        Finding::Cardiomegaly,
        Finding::Consolidation,
        Finding::Edema,
        Finding::Effusion,
        Finding::Mass,
        Finding::Nodule,
        Finding::Pneumothorax,
        Finding::SupportDevices,
    ];

    /// The column name (NIH ChestX-ray14 spelling; CheXpert's for devices).
    pub fn name(self) -> &'static str {
        match self {
            Finding::Atelectasis => "Atelectasis",
            Finding::Cardiomegaly => "Cardiomegaly",
            Finding::Consolidation => "Consolidation",
            Finding::Edema => "Edema",
            Finding::Effusion => "Effusion",
            Finding::Mass => "Mass",
            Finding::Nodule => "Nodule",
            Finding::Pneumothorax => "Pneumothorax",
            Finding::SupportDevices => "Support Devices",
        }
    }

    /// Parses a column name, case-insensitively; `_` and ` ` are interchangeable.
    pub fn from_name(name: &str) -> Option<Self> {
        let norm = |s: &str| s.to_ascii_lowercase().replace('_', " ");
        let wanted = norm(name.trim());
        Finding::ALL.into_iter().find(|f| norm(f.name()) == wanted)
    }
}

/// Per-study prevalence of each finding, indexed like [`Finding::ALL`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prevalence(pub [f64; NUM_FINDINGS]);

impl Prevalence {
    /// Roughly NIH ChestX-ray14 image-level frequencies; devices (absent from
    /// NIH) at 15 %.
    pub fn nih() -> Self {
        Prevalence([0.103, 0.025, 0.042, 0.021, 0.119, 0.052, 0.056, 0.047, 0.15])
    }

    /// Every finding at 0.2 (0.25 for devices): enough positives in small sets
    /// for tests, probing and the demo.
    pub fn balanced() -> Self {
        Prevalence([0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.25])
    }

    /// Prevalence of one finding.
    pub fn get(&self, f: Finding) -> f64 {
        self.0[f as usize]
    }

    /// Sets the prevalence of one finding.
    pub fn set(&mut self, f: Finding, p: f64) {
        self.0[f as usize] = p;
    }
}

/// Laterality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Side {
    /// Patient's right.
    Right,
    /// Patient's left.
    Left,
    /// Both sides.
    Bilateral,
}

impl Side {
    /// Lower-case word for reports and ground truth.
    pub fn word(self) -> &'static str {
        match self {
            Side::Right => "right",
            Side::Left => "left",
            Side::Bilateral => "bilateral",
        }
    }

    fn draw(rng: &mut ChaCha8Rng) -> Side {
        if rng.random_bool(0.5) {
            Side::Right
        } else {
            Side::Left
        }
    }

    /// Index of the lung (0 right, 1 left); bilateral maps to right.
    pub fn lung(self) -> usize {
        usize::from(self == Side::Left)
    }
}

/// A pleural effusion.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Effusion {
    /// Which hemithorax.
    pub side: Side,
    /// Volume in `[0, 1]`: fraction of lung height filled, rescaled.
    pub volume: f32,
}

/// A pneumothorax.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Pneumothorax {
    /// Which hemithorax (never bilateral).
    pub side: Side,
    /// Fractional collapse of the lung towards the hilum, `0.08..0.45`.
    pub size: f32,
}

/// A consolidation, nodule or mass: a blob in lung-normalised coordinates.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Lesion {
    /// Which lung.
    pub side: Side,
    /// Position in lung-normalised coordinates: `x` medial (-1) to lateral
    /// (+1), `y` apex (-1) to base (+1), `z` posterior (-1) to anterior (+1).
    pub position: [f32; 3],
    /// Radius in thorax units (about 15 cm).
    pub radius: f32,
    /// Density in `[0, 1]`: fraction of aerated lung replaced; low is subtle.
    pub density: f32,
    /// Lobulation (masses) or fissure cut-off (consolidation) seed.
    pub shape_seed: u32,
}

impl Lesion {
    /// Diameter in centimetres (one thorax unit is about 15 cm).
    pub fn diameter_cm(&self) -> f32 {
        self.radius * 2.0 * 15.0
    }

    /// Lung zone word.
    pub fn zone(&self) -> &'static str {
        if self.position[1] < -0.33 {
            "upper"
        } else if self.position[1] < 0.33 {
            "mid"
        } else {
            "lower"
        }
    }
}

/// Kind of atelectasis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AtelectasisKind {
    /// Thin plate-like (discoid) band in a lower zone.
    Plate,
    /// Lower-lobe collapse: a wedge at the base, elevated hemidiaphragm.
    Lobar,
}

/// An atelectasis.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Atelectasis {
    /// Which lung.
    pub side: Side,
    /// Plate-like or lobar.
    pub kind: AtelectasisKind,
    /// Severity in `[0, 1]`.
    pub severity: f32,
}

/// Tip position of a tube or line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TipPosition {
    /// Where it should be.
    Normal,
    /// Acceptable but worth a comment (e.g. ETT tip 1.5-3 cm above the carina).
    Borderline,
    /// Malpositioned (e.g. right mainstem intubation).
    Abnormal,
}

impl TipPosition {
    /// Lower-case word for ground truth.
    pub fn word(self) -> &'static str {
        match self {
            TipPosition::Normal => "normal",
            TipPosition::Borderline => "borderline",
            TipPosition::Abnormal => "abnormal",
        }
    }

    fn draw(rng: &mut ChaCha8Rng) -> Self {
        let u: f64 = rng.random();
        if u < 0.7 {
            TipPosition::Normal
        } else if u < 0.88 {
            TipPosition::Borderline
        } else {
            TipPosition::Abnormal
        }
    }
}

/// Findings that belong to the patient and persist across studies.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Chronic {
    /// Enlarged cardiothoracic ratio, if cardiomegaly.
    pub cardiomegaly_ctr: Option<f32>,
    /// A nodule.
    pub nodule: Option<Lesion>,
    /// A mass.
    pub mass: Option<Lesion>,
}

impl Chronic {
    /// Draws a patient's chronic findings.
    pub fn sample(rng: &mut ChaCha8Rng, prev: &Prevalence) -> Self {
        let cardiomegaly_ctr = rng
            .random_bool(prev.get(Finding::Cardiomegaly))
            .then(|| 0.5 + 0.17 * rng.random::<f32>().powf(1.3) + 0.01);
        let nodule = rng.random_bool(prev.get(Finding::Nodule)).then(|| {
            let l = lesion(rng, 0.05, 0.1);
            let mut l = upper_lobe(rng, l);
            l.density = uni(rng, 0.65, 1.0);
            l
        });
        let mass = rng.random_bool(prev.get(Finding::Mass)).then(|| {
            let l = lesion(rng, 0.12, 0.24);
            let mut l = upper_lobe(rng, l);
            l.density = uni(rng, 0.65, 1.0);
            l
        });
        Chronic {
            cardiomegaly_ctr,
            nodule,
            mass,
        }
    }
}

/// Lung cancers favour the upper lobes and the right lung: move most
/// nodules and masses there.
fn upper_lobe(rng: &mut ChaCha8Rng, mut l: Lesion) -> Lesion {
    if rng.random_bool(0.7) {
        l.position[0] = uni(rng, -0.1, 0.75);
        l.position[1] = uni(rng, -0.7, -0.15);
        l.side = if rng.random_bool(0.65) {
            Side::Right
        } else {
            Side::Left
        };
    }
    l
}

fn lesion(rng: &mut ChaCha8Rng, rmin: f32, rmax: f32) -> Lesion {
    // Rejection-sample a point well inside the unit disc so the lesion sits in the lung.
    let (x, y) = loop {
        let x = uni(rng, -0.8, 0.8);
        let y = uni(rng, -0.8, 0.65);
        if x * x + y * y < 0.64 {
            break (x, y);
        }
    };
    Lesion {
        side: Side::draw(rng),
        position: [x, y, uni(rng, -0.6, 0.6)],
        radius: uni(rng, rmin, rmax),
        density: 1.0,
        shape_seed: rng.random(),
    }
}

/// The ground truth of one study.
#[derive(Clone, Debug, Serialize)]
pub struct Findings {
    /// True cardiothoracic ratio (on a PA projection).
    pub ctr: f32,
    /// Cardiomegaly (ctr > 0.5).
    pub cardiomegaly: bool,
    /// Pleural effusion.
    pub effusion: Option<Effusion>,
    /// Pneumothorax.
    pub pneumothorax: Option<Pneumothorax>,
    /// Consolidation.
    pub consolidation: Option<Lesion>,
    /// Nodule.
    pub nodule: Option<Lesion>,
    /// Mass.
    pub mass: Option<Lesion>,
    /// Atelectasis.
    pub atelectasis: Option<Atelectasis>,
    /// Pulmonary edema grade: 0 none, 1 vascular congestion, 2 interstitial,
    /// 3 alveolar.
    pub edema_grade: u8,
    /// Endotracheal tube.
    pub ett: Option<TipPosition>,
    /// Nasogastric tube.
    pub ngt: Option<TipPosition>,
    /// Central venous catheter (right internal jugular).
    pub cvc: Option<TipPosition>,
    /// ECG leads: a distractor, not a label.
    pub ecg_leads: bool,
}

/// How a study is acquired, as far as findings depend on it.
#[derive(Clone, Copy, Debug)]
pub struct StudyContext {
    /// Portable AP (supine, often in intensive care).
    pub portable: bool,
    /// Fraction of portable studies at the site (to calibrate devices).
    pub site_portable_fraction: f64,
}

/// Conditional probability `p_ind` such that `P(driver)·q + (1 - P(driver)·q)·p_ind = p`.
fn calibrate(p: f64, p_driver: f64, q: f64) -> f64 {
    let pq = (p_driver * q).min(0.999);
    ((p - pq) / (1.0 - pq)).clamp(0.0, 1.0)
}

impl Findings {
    /// Draws a study's findings. `cooccurrence` in `[0, 1]` scales how strongly
    /// the heart-failure cluster (cardiomegaly, edema, effusion) and
    /// effusion-atelectasis cluster co-occur; marginals stay at `prev`.
    pub fn sample(
        rng: &mut ChaCha8Rng,
        prev: &Prevalence,
        chronic: &Chronic,
        normal_ctr: f32,
        cooccurrence: f64,
        ctx: StudyContext,
    ) -> Self {
        let s = cooccurrence.clamp(0.0, 1.0);
        let p_card = prev.get(Finding::Cardiomegaly);
        let card = chronic.cardiomegaly_ctr.is_some();

        let q_edema = 0.5 * s;
        let edema = (card && rng.random_bool(q_edema))
            || rng.random_bool(calibrate(prev.get(Finding::Edema), p_card, q_edema));
        let p_edema = prev.get(Finding::Edema);
        let p_both = p_card * (q_edema + (1.0 - q_edema) * calibrate(p_edema, p_card, q_edema));
        let p_hf = (p_card + p_edema - p_both).clamp(0.0, 1.0);

        let q_eff = 0.35 * s;
        let effusion_present = ((card || edema) && rng.random_bool(q_eff))
            || rng.random_bool(calibrate(prev.get(Finding::Effusion), p_hf, q_eff));
        let q_atel = 0.3 * s;
        let atel_present = (effusion_present && rng.random_bool(q_atel))
            || rng.random_bool(calibrate(
                prev.get(Finding::Atelectasis),
                prev.get(Finding::Effusion),
                q_atel,
            ));

        let edema_grade = if edema {
            let u: f64 = rng.random();
            if u < 0.35 {
                1
            } else if u < 0.75 {
                2
            } else {
                3
            }
        } else {
            0
        };
        let effusion = effusion_present.then(|| {
            let u: f64 = rng.random();
            let side = if edema_grade > 0 || u < 0.2 {
                Side::Bilateral
            } else if u < 0.6 {
                Side::Right
            } else {
                Side::Left
            };
            Effusion {
                side,
                volume: 0.1 + 0.9 * rng.random::<f32>().powi(2),
            }
        });
        let pneumothorax = rng
            .random_bool(prev.get(Finding::Pneumothorax))
            .then(|| Pneumothorax {
                side: Side::draw(rng),
                size: 0.08 + 0.37 * rng.random::<f32>().powf(1.5),
            });
        let consolidation = rng.random_bool(prev.get(Finding::Consolidation)).then(|| {
            let mut l = lesion(rng, 0.14, 0.3);
            l.density = uni(rng, 0.35, 0.85);
            l
        });
        let atelectasis = atel_present.then(|| {
            let side = match effusion {
                Some(e) if e.side != Side::Bilateral && rng.random_bool(0.7) => e.side,
                _ => Side::draw(rng),
            };
            Atelectasis {
                side,
                kind: if rng.random_bool(0.6) {
                    AtelectasisKind::Plate
                } else {
                    AtelectasisKind::Lobar
                },
                severity: uni(rng, 0.35, 1.0),
            }
        });

        // Devices are far more common on portable films; split the marginal
        // so that each site still sees `prev` overall.
        let ratio = 6.0;
        let f = ctx.site_portable_fraction;
        let p_pa = prev.get(Finding::SupportDevices) / (f * ratio + 1.0 - f);
        let p_dev = if ctx.portable { p_pa * ratio } else { p_pa }.clamp(0.0, 0.95);
        let (mut ett, mut ngt, mut cvc) = (None, None, None);
        if rng.random_bool(p_dev) {
            let which = rng.random_range(1..8u8);
            if which & 1 != 0 {
                ett = Some(TipPosition::draw(rng));
            }
            if which & 2 != 0 {
                ngt = Some(TipPosition::draw(rng));
            }
            if which & 4 != 0 {
                cvc = Some(TipPosition::draw(rng));
            }
        }
        let ecg_leads = rng.random_bool(if ctx.portable { 0.7 } else { 0.08 });
        let ctr = chronic.cardiomegaly_ctr.unwrap_or(normal_ctr);
        Findings {
            ctr,
            cardiomegaly: card,
            effusion,
            pneumothorax,
            consolidation,
            nodule: chronic.nodule,
            mass: chronic.mass,
            atelectasis,
            edema_grade,
            ett,
            ngt,
            cvc,
            ecg_leads,
        }
    }

    /// The 0/1 labels in [`Finding::ALL`] order.
    pub fn labels(&self) -> [bool; NUM_FINDINGS] {
        [
            self.atelectasis.is_some(),
            self.cardiomegaly,
            self.consolidation.is_some(),
            self.edema_grade > 0,
            self.effusion.is_some(),
            self.mass.is_some(),
            self.nodule.is_some(),
            self.pneumothorax.is_some(),
            self.ett.is_some() || self.ngt.is_some() || self.cvc.is_some(),
        ]
    }

    /// A study with no finding at all (for contact sheets and tests).
    pub fn normal(ctr: f32) -> Self {
        Findings {
            ctr,
            cardiomegaly: false,
            effusion: None,
            pneumothorax: None,
            consolidation: None,
            nodule: None,
            mass: None,
            atelectasis: None,
            edema_grade: 0,
            ett: None,
            ngt: None,
            cvc: None,
            ecg_leads: false,
        }
    }
}
