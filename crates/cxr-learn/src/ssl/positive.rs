//! Positive pairs of the image-only methods: another view of the same image
//! (MoCo-CXR), or another image of the same patient or study (MedAug's
//! patient-metadata sampler, docs/ssl-methods.md (MedAug)).

use std::collections::HashMap;
use std::sync::Arc;

use cxr_data::augment::rng_for;
use cxr_data::store::read::Store;
use rand::Rng;

use crate::error::Error;

/// How a query's positive image is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Positive {
    /// Another view of the same image (MoCo-CXR).
    SameImage,
    /// Any image of the same patient, the query included (MedAug).
    SamePatient,
    /// An image of the same patient and study (MedAug's best strategy).
    SameStudy,
}

/// Query -> positive rows, drawn uniformly from the query's group with a
/// stream keyed by `(seed, epoch, row)`.
#[derive(Debug)]
pub struct PositiveSampler {
    groups: HashMap<usize, Arc<Vec<usize>>>,
    seed: u64,
}

impl PositiveSampler {
    /// Groups the `train` rows of `store` by the rule.
    ///
    /// # Errors
    /// A study-level rule on a store without study ids, named.
    pub fn new(store: &Store, train: &[usize], rule: Positive, seed: u64) -> Result<Self, Error> {
        let key = |i: usize| -> Result<String, Error> {
            let r = &store.rows[i];
            Ok(match rule {
                Positive::SameImage => format!("{i}"),
                Positive::SamePatient => r.patient_id.clone(),
                Positive::SameStudy => {
                    let study = r.study_id.as_deref().ok_or_else(|| Error::NoStudyId {
                        row: i,
                        id: r.id.clone(),
                    })?;
                    format!("{}\u{1f}{study}", r.patient_id)
                }
            })
        };
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
        for &i in train {
            by_key.entry(key(i)?).or_default().push(i);
        }
        let mut groups = HashMap::new();
        for members in by_key.into_values() {
            let shared = Arc::new(members);
            for &i in shared.iter() {
                groups.insert(i, shared.clone());
            }
        }
        Ok(Self { groups, seed })
    }

    /// The positive of `query` in `epoch` for view 1 (the first positive).
    pub fn positive(&self, query: usize, epoch: u64) -> usize {
        self.positive_of_view(query, epoch, 1)
    }

    /// The positive of `query` in `epoch` for view `view >= 1`; the views
    /// draw independently, with replacement, from the query's group.
    pub fn positive_of_view(&self, query: usize, epoch: u64, view: usize) -> usize {
        let group = &self.groups[&query];
        if group.len() == 1 {
            return query;
        }
        let salt = 0x6d65_6461_7567 ^ ((view as u64 - 1) << 48);
        let mut rng = rng_for(self.seed ^ salt, (epoch << 32) | query as u64);
        group[rng.random_range(0..group.len())]
    }
}
