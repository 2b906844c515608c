//! What one bootstrap replicate draws: images, or patients with all their
//! images (the cluster bootstrap).
//!
//! Chest X-ray test sets hold several films per patient whose scores are
//! correlated; resampling images as if they were independent gives intervals
//! that are too narrow. A patient-level replicate draws as many patients as
//! the test set has, with replacement, and every image of a drawn patient
//! comes along (all its labels together), so the replicate keeps the
//! clustering of the data.
//!
//! Replicate `b` uses its own ChaCha8 stream (`seed`, stream `b`), so the
//! draws do not depend on the thread count. Image-level draws are exactly
//! those of [`crate::bootstrap::replicate_counts`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::StatsError;
use crate::bootstrap::replicate_counts;

/// The unit a bootstrap replicate resamples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Patients, each with all of its images.
    Patient,
    /// Images, as if independent (the paper's choice).
    Image,
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Patient => "patient",
            Self::Image => "image",
        })
    }
}

/// The unit asked for: `Auto` resamples patients whenever they are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resample {
    /// Patients when patient ids are known, else images.
    #[default]
    Auto,
    /// Patients; an error without patient ids.
    Patient,
    /// Images.
    Image,
}

impl std::str::FromStr for Resample {
    type Err = StatsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "patient" => Ok(Self::Patient),
            "image" => Ok(Self::Image),
            other => Err(StatsError::UnknownResample {
                value: other.to_owned(),
            }),
        }
    }
}

/// Draws replicate multiplicities of the images of one test set.
#[derive(Debug, Clone)]
pub struct Resampler {
    n_images: usize,
    /// Cluster index of every image, clusters numbered in order of first
    /// appearance; `None` for image-level resampling.
    cluster_of: Option<Vec<u32>>,
    n_clusters: usize,
}

impl Resampler {
    /// Image-level resampling of `n` images.
    pub fn images(n: usize) -> Self {
        Self {
            n_images: n,
            cluster_of: None,
            n_clusters: n,
        }
    }

    /// Patient-level resampling; `patients[i]` is image `i`'s patient.
    pub fn patients(patients: &[String]) -> Self {
        let mut index: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        let cluster_of: Vec<u32> = patients
            .iter()
            .map(|p| {
                let next = index.len() as u32;
                *index.entry(p.as_str()).or_insert(next)
            })
            .collect();
        Self {
            n_images: patients.len(),
            n_clusters: index.len(),
            cluster_of: Some(cluster_of),
        }
    }

    /// The resampler `request` gives for a test set of `n` images whose
    /// patients are `patients` (when known).
    ///
    /// # Errors
    /// [`StatsError::Config`] when patients are asked for but unknown.
    pub fn for_request(
        request: Resample,
        n: usize,
        patients: Option<&[String]>,
    ) -> Result<Self, StatsError> {
        match (request, patients) {
            (Resample::Image, _) | (Resample::Auto, None) => Ok(Self::images(n)),
            (Resample::Patient | Resample::Auto, Some(p)) => Ok(Self::patients(p)),
            (Resample::Patient, None) => Err(StatsError::Config(
                "resampling by patient needs patient ids: a patient_id column in the \
                 predictions file, or --data STORE to join them from the store's manifest \
                 (or --resample image)"
                    .into(),
            )),
        }
    }

    /// The unit resampled.
    pub fn unit(&self) -> Unit {
        if self.cluster_of.is_some() {
            Unit::Patient
        } else {
            Unit::Image
        }
    }

    /// Number of images.
    pub fn n_images(&self) -> usize {
        self.n_images
    }

    /// Number of independent units (patients, or images).
    pub fn n_clusters(&self) -> usize {
        self.n_clusters
    }

    /// Mean images per unit.
    pub fn mean_cluster_size(&self) -> f64 {
        if self.n_clusters == 0 {
            0.0
        } else {
            self.n_images as f64 / self.n_clusters as f64
        }
    }

    /// Cluster index of every image (`None` for image-level resampling).
    pub fn cluster_of(&self) -> Option<&[u32]> {
        self.cluster_of.as_deref()
    }

    /// Image multiplicities of replicate `replicate` into `counts`;
    /// `scratch` holds the per-patient draws between calls.
    pub fn counts(&self, seed: u64, replicate: u64, counts: &mut Vec<u32>, scratch: &mut Vec<u32>) {
        let Some(cluster_of) = &self.cluster_of else {
            replicate_counts(seed, replicate, self.n_images, counts);
            return;
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(replicate);
        scratch.clear();
        scratch.resize(self.n_clusters, 0);
        let k = u32::try_from(self.n_clusters).expect("more than 2^32 patients");
        for _ in 0..self.n_clusters {
            scratch[rng.random_range(0..k) as usize] += 1;
        }
        counts.clear();
        counts.extend(cluster_of.iter().map(|&c| scratch[c as usize]));
    }
}

/// One number computed from a replicate's image multiplicities (`None`
/// when undefined in that replicate, e.g. an AUC without both classes).
pub type Statistic<'a> = Box<dyn Fn(&[u32]) -> Option<f64> + Send + Sync + 'a>;

/// Every statistic on every replicate, all statistics of a replicate on the
/// same draw: `values[s][b]` is statistic `s` on replicate `b`.
pub fn replicate_values(
    resampler: &Resampler,
    seed: u64,
    n_replicates: usize,
    statistics: &[Statistic<'_>],
) -> Vec<Vec<Option<f64>>> {
    let by_replicate: Vec<Vec<Option<f64>>> = (0..n_replicates)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new()),
            |(counts, scratch), b| {
                resampler.counts(seed, b as u64, counts, scratch);
                statistics.iter().map(|s| s(counts)).collect()
            },
        )
        .collect();
    (0..statistics.len())
        .map(|s| by_replicate.iter().map(|r| r[s]).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_draws_take_whole_patients() {
        let patients: Vec<String> = ["a", "a", "b", "c", "c", "c"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let r = Resampler::patients(&patients);
        assert_eq!(
            (r.unit(), r.n_clusters(), r.n_images()),
            (Unit::Patient, 3, 6)
        );
        assert!((r.mean_cluster_size() - 2.0).abs() < 1e-15);
        let (mut counts, mut scratch) = (Vec::new(), Vec::new());
        for b in 0..50 {
            r.counts(3, b, &mut counts, &mut scratch);
            // Images of one patient share its multiplicity; 3 patients drawn.
            assert_eq!(counts[0], counts[1]);
            assert!(counts[3] == counts[4] && counts[4] == counts[5]);
            assert_eq!(counts[0] + counts[2] + counts[3], 3);
        }
    }

    #[test]
    fn image_draws_are_the_classic_ones() {
        let r = Resampler::images(40);
        let (mut a, mut b, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        r.counts(9, 4, &mut a, &mut scratch);
        replicate_counts(9, 4, 40, &mut b);
        assert_eq!(a, b);
        assert_eq!(r.unit(), Unit::Image);
    }

    #[test]
    fn request_resolution() {
        let ids = vec!["p".to_owned(); 3];
        let auto = Resampler::for_request(Resample::Auto, 3, Some(&ids)).unwrap();
        assert_eq!(auto.unit(), Unit::Patient);
        let auto = Resampler::for_request(Resample::Auto, 3, None).unwrap();
        assert_eq!(auto.unit(), Unit::Image);
        let image = Resampler::for_request(Resample::Image, 3, Some(&ids)).unwrap();
        assert_eq!(image.unit(), Unit::Image);
        let e = Resampler::for_request(Resample::Patient, 3, None).unwrap_err();
        assert!(e.to_string().contains("needs patient ids"));
        assert_eq!("patient".parse(), Ok(Resample::Patient));
        assert!("images".parse::<Resample>().is_err());
    }
}
