//! The phantom: a synthetic chest X-ray world with patients, sites and reports.
//!
//! A seeded generator of radiographs rendered from analytic anatomy (line
//! integrals of attenuation through body, lungs, heart, skeleton, then a
//! site-specific detector and display chain), with labelled findings,
//! several studies per patient, frontal and lateral views, and free-text
//! reports. Same configuration, same bytes, on any number of threads.
//!
//! ```no_run
//! use cxr_data::phantom::{Phantom, PhantomConfig};
//! let phantom = Phantom::new(PhantomConfig { patients: 20, ..PhantomConfig::default() })?;
//! phantom.write(std::path::Path::new("phantom-out"), false, &|_, _| {})?;
//! # Ok::<(), cxr_data::error::DataError>(())
//! ```

pub mod anatomy;
mod devices;
pub mod findings;
mod glyphs;
mod render;
pub mod reports;
pub mod sites;
mod skeleton;
mod write;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::DataError;

pub use anatomy::Anatomy;
pub use findings::{Chronic, Finding, Findings, NUM_FINDINGS, Prevalence, StudyContext};
pub use sites::Site;

/// Version of the phantom generator; bumped whenever output bytes change.
pub const VERSION: &str = "1.1.0";

/// The view (projection) of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum View {
    /// Posteroanterior, upright.
    Pa,
    /// Anteroposterior portable, supine.
    Ap,
    /// Left lateral, upright.
    Lateral,
}

impl View {
    /// `PA`, `AP` or `LATERAL`, as in `labels.csv`.
    pub fn name(self) -> &'static str {
        match self {
            View::Pa => "PA",
            View::Ap => "AP",
            View::Lateral => "LATERAL",
        }
    }
}

/// Everything that determines the output.
#[derive(Clone, Debug)]
pub struct PhantomConfig {
    /// Master seed.
    pub seed: u64,
    /// Number of patients.
    pub patients: usize,
    /// Image side in pixels.
    pub size: usize,
    /// Number of sites (patients are split among them).
    pub sites: usize,
    /// Preset index of the first site: the sites are `first_site ..
    /// first_site + sites`, so single-site worlds of different sites (a
    /// held-out site for distribution shift) can be drawn separately.
    pub first_site: usize,
    /// Per-study prevalence of each finding.
    pub prevalence: Prevalence,
    /// Co-occurrence strength in `[0, 1]` (0: independent findings).
    pub cooccurrence: f64,
    /// Most studies per patient.
    pub max_studies: u32,
}

impl Default for PhantomConfig {
    fn default() -> Self {
        PhantomConfig {
            seed: 0,
            patients: 100,
            size: 256,
            sites: 2,
            first_site: 0,
            prevalence: Prevalence::nih(),
            cooccurrence: 1.0,
            max_studies: 4,
        }
    }
}

impl PhantomConfig {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`DataError::PhantomConfig`] naming the offending value.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: String| Err(DataError::PhantomConfig(m));
        if self.patients == 0 || self.patients > 1_000_000 {
            return bad(format!(
                "--patients must be 1..=1000000, got {}",
                self.patients
            ));
        }
        if !(32..=2048).contains(&self.size) {
            return bad(format!("--size must be 32..=2048, got {}", self.size));
        }
        if !(1..=16).contains(&self.sites) {
            return bad(format!("--sites must be 1..=16, got {}", self.sites));
        }
        if self.first_site > 15 {
            return bad(format!(
                "--first-site must be 0..=15, got {}",
                self.first_site
            ));
        }
        for f in Finding::ALL {
            let p = self.prevalence.get(f);
            if !(0.0..=1.0).contains(&p) {
                return bad(format!(
                    "prevalence of {} must be in [0, 1], got {p}",
                    f.name()
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.cooccurrence) {
            return bad(format!(
                "co-occurrence must be in [0, 1], got {}",
                self.cooccurrence
            ));
        }
        if !(1..=20).contains(&self.max_studies) {
            return bad(format!(
                "max studies must be 1..=20, got {}",
                self.max_studies
            ));
        }
        Ok(())
    }
}

/// One study: a visit with one or more views and a report.
#[derive(Clone, Debug)]
pub struct Study {
    /// `p0001_s01`.
    pub id: String,
    /// Portable AP (supine) rather than upright PA.
    pub portable: bool,
    /// Ground truth.
    pub findings: Findings,
    /// Views acquired.
    pub views: Vec<View>,
    /// Report FINDINGS section.
    pub findings_text: String,
    /// Report IMPRESSION section.
    pub impression: String,
    /// Seed of the study's device geometry, shared by its views.
    pub detail_seed: u64,
}

/// One patient.
#[derive(Clone, Debug)]
pub struct Patient {
    /// `p0001`.
    pub id: String,
    /// Index into [`Phantom::sites`].
    pub site: usize,
    /// Anatomy, fixed across studies.
    pub anatomy: Anatomy,
    /// Chronic findings, fixed across studies.
    pub chronic: Chronic,
    /// Studies in time order.
    pub studies: Vec<Study>,
}

/// One image to render.
#[derive(Clone, Debug)]
pub struct ImageRef {
    /// Patient index.
    pub patient: usize,
    /// Study index within the patient.
    pub study: usize,
    /// View.
    pub view: View,
    /// Path relative to the output directory (`images/p0001_s01_frontal.png`).
    pub path: String,
}

/// A planned phantom data set: every latent drawn, nothing rendered yet.
#[derive(Clone, Debug)]
pub struct Phantom {
    /// The configuration.
    pub config: PhantomConfig,
    /// The sites.
    pub sites: Vec<Site>,
    /// The patients.
    pub patients: Vec<Patient>,
    /// The images, in output order.
    pub images: Vec<ImageRef>,
}

/// Derives an independent stream seed from the master seed and indices
/// (SplitMix64 finaliser), so that every patient, study and image has its
/// own stream whatever the thread count.
pub fn mix(seed: u64, tag: u64, a: u64, b: u64) -> u64 {
    let mut z = seed
        ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ a.wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ b.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7);
    for _ in 0..2 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

fn plan_patient(cfg: &PhantomConfig, sites: &[Site], index: usize, width: usize) -> Patient {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(cfg.seed, 0xA11, index as u64, 0));
    let site = rng.random_range(0..sites.len());
    let anatomy = Anatomy::sample(&mut rng);
    let chronic = Chronic::sample(&mut rng, &cfg.prevalence);
    let mut nstudies = 1;
    while nstudies < cfg.max_studies && rng.random_bool(0.5) {
        nstudies += 1;
    }
    let id = format!("p{:0width$}", index + 1);
    let s = &sites[site];
    let mut studies: Vec<Study> = Vec::new();
    for k in 0..nstudies {
        let portable = rng.random_bool(s.portable_fraction);
        let ctx = StudyContext {
            portable,
            site_portable_fraction: s.portable_fraction,
        };
        let findings = Findings::sample(
            &mut rng,
            &cfg.prevalence,
            &chronic,
            anatomy.ctr,
            cfg.cooccurrence,
            ctx,
        );
        let mut views = vec![if portable { View::Ap } else { View::Pa }];
        if !portable && rng.random_bool(s.lateral_fraction) {
            views.push(View::Lateral);
        }
        let mut trng = ChaCha8Rng::seed_from_u64(mix(cfg.seed, 0x7E47, index as u64, u64::from(k)));
        let prior = studies.last().map(|p| &p.findings);
        let (findings_text, impression) = reports::write(&findings, prior, portable, &mut trng);
        studies.push(Study {
            id: format!("{id}_s{:02}", k + 1),
            portable,
            findings,
            views,
            findings_text,
            impression,
            detail_seed: mix(cfg.seed, 0xDE7, index as u64, u64::from(k)),
        });
    }
    Patient {
        id,
        site,
        anatomy,
        chronic,
        studies,
    }
}

impl Phantom {
    /// Validates `config` and draws every patient, study and report.
    ///
    /// # Errors
    /// [`DataError::PhantomConfig`].
    pub fn new(config: PhantomConfig) -> Result<Self, DataError> {
        config.validate()?;
        let first = config.first_site;
        let sites: Vec<Site> = (first..first + config.sites)
            .map(|k| Site::preset(k, config.seed))
            .collect();
        let width = config.patients.to_string().len().max(4);
        let patients: Vec<Patient> = (0..config.patients)
            .into_par_iter()
            .map(|i| plan_patient(&config, &sites, i, width))
            .collect();
        let mut images = Vec::new();
        for (pi, p) in patients.iter().enumerate() {
            for (si, s) in p.studies.iter().enumerate() {
                for &view in &s.views {
                    let kind = if view == View::Lateral {
                        "lateral"
                    } else {
                        "frontal"
                    };
                    images.push(ImageRef {
                        patient: pi,
                        study: si,
                        view,
                        path: format!("images/{}_{kind}.png", s.id),
                    });
                }
            }
        }
        Ok(Phantom {
            config,
            sites,
            patients,
            images,
        })
    }

    /// Renders one image: `size*size` 8-bit pixels, row-major, as stored
    /// (inverted for MONOCHROME1 sites).
    pub fn render(&self, img: &ImageRef) -> Vec<u8> {
        let p = &self.patients[img.patient];
        let s = &p.studies[img.study];
        let acq_seed = self.acq_seed(img);
        render_image(
            &p.anatomy,
            &s.findings,
            img.view,
            &self.sites[p.site],
            self.config.size,
            s.detail_seed,
            acq_seed,
        )
    }

    /// The lesion mask of one image (`size*size`, 255 inside, row-major,
    /// aligned with [`Phantom::render`]'s pixels): where a consolidation,
    /// nodule or mass replaces aerated lung, inside the collimated field.
    /// `None` when the study has none of them.
    pub fn lesion_mask(&self, img: &ImageRef) -> Option<Vec<u8>> {
        let p = &self.patients[img.patient];
        let s = &p.studies[img.study];
        let n = self.config.size;
        let (frame, acq, _) = acquire(
            &p.anatomy,
            img.view,
            &self.sites[p.site],
            n,
            self.acq_seed(img),
        );
        let inside = render::lesion_mask(&p.anatomy, &s.findings, img.view, &frame)?;
        let [ml, mr, mt, mb] = acq.margins.map(|m| (m * n as f32) as usize);
        Some(
            inside
                .iter()
                .enumerate()
                .map(|(k, &m)| {
                    let (y, x) = (k / n, k % n);
                    let exposed = x >= ml && x < n - mr && y >= mt && y < n - mb;
                    if m && exposed { 255 } else { 0 }
                })
                .collect(),
        )
    }

    fn acq_seed(&self, img: &ImageRef) -> u64 {
        mix(
            self.config.seed,
            0xAC9,
            img.patient as u64,
            (img.study as u64) << 4 | img.view as u64,
        )
    }

    /// Renders every image in parallel (in [`Phantom::images`] order).
    pub fn render_all(&self) -> Vec<Vec<u8>> {
        self.images.par_iter().map(|i| self.render(i)).collect()
    }

    /// The 0/1 labels of the study behind an image.
    pub fn labels(&self, img: &ImageRef) -> [bool; NUM_FINDINGS] {
        self.patients[img.patient].studies[img.study]
            .findings
            .labels()
    }

    /// Renders and writes the data set into `out` (see the module docs of
    /// `write` for the layout), calling `progress(done, total)` as images
    /// finish. The output appears atomically.
    ///
    /// # Errors
    /// When `out` is non-empty without `force`, or on I/O and encoding errors.
    pub fn write(
        &self,
        out: &std::path::Path,
        force: bool,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(), DataError> {
        write::write(self, out, force, progress)
    }
}

/// The acquisition of one view (positioning, exposure, collimation) and its
/// pixel frame; the generator continues from there to draw the noise.
fn acquire(
    anatomy: &Anatomy,
    view: View,
    site: &Site,
    size: usize,
    acq_seed: u64,
) -> (devices::Frame, sites::Acquisition, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(acq_seed);
    let portable = view == View::Ap;
    let acq = sites::Acquisition::sample(&mut rng, site, portable);
    let lateral = view == View::Lateral;
    let mag = if portable { 0.96 } else { 1.0 };
    let (tilt, cx) = if lateral {
        (acq.tilt * 0.5, acq.shift[0] - 0.05)
    } else {
        (anatomy.tilt + acq.tilt, anatomy.shift[0] + acq.shift[0])
    };
    let frame = devices::Frame::new(
        size,
        anatomy.zoom * acq.zoom * mag,
        tilt,
        [cx, 0.12 + anatomy.shift[1] + acq.shift[1]],
        lateral,
    );
    (frame, acq, rng)
}

/// Renders one image of `anatomy` with `findings` through `site`'s
/// acquisition chain. `detail_seed` fixes the study's device geometry,
/// `acq_seed` the positioning, exposure, collimation and noise.
pub fn render_image(
    anatomy: &Anatomy,
    findings: &Findings,
    view: View,
    site: &Site,
    size: usize,
    detail_seed: u64,
    acq_seed: u64,
) -> Vec<u8> {
    let (frame, acq, mut rng) = acquire(anatomy, view, site, size, acq_seed);
    let mut att = render::attenuation(anatomy, findings, view, &frame, detail_seed);
    let marker = match (view, site.marker_corner) {
        (View::Lateral, _) => 'L',
        (_, 0) => 'R',
        _ => 'L',
    };
    let text = match view {
        View::Pa => "PA",
        View::Ap => "AP SUPINE",
        View::Lateral => "LAT",
    };
    sites::develop(&mut att, size, site, &acq, marker, text, &mut rng)
}
