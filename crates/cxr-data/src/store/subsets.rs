//! Training subsets for label-efficiency curves: a fraction of the training
//! split's patients, drawn with a seed, nested (for one seed, the 1% subset
//! lies inside the 10% one), and written into the store as lists so they can
//! be published and reused by anyone comparing against the same subsets.
//!
//! Layout: `STORE/subsets/seed-S/fraction-F.csv` (columns `id,patient_id`,
//! the store's order) and `STORE/subsets/seed-S/subsets.json` (the rule, the
//! fractions, the patient and image counts). Rule: the training split's
//! patients, in order of first appearance in the manifest, are shuffled by a
//! Fisher-Yates pass driven by ChaCha8 seeded with `S`; fraction `F` keeps
//! the first `max(1, round(F * P))` of them with all their training images,
//! plus, for every label (class) with no positive image among those, the
//! first patient in the shuffled order who has one, so that every label can
//! be trained. Both parts grow with `F`, so the subsets are nested: a
//! patient added for a label at a small fraction is the first positive
//! patient of the order, and lies inside any larger prefix that has a
//! positive of that label.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::read::Store;
use crate::csv_source::{csv_error, open_bounded};
use crate::error::{DataError, Result};
use crate::labels::Split;

fn bad(path: &Path, reason: impl ToString) -> DataError {
    DataError::Layout {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The directory of seed `seed`'s lists.
pub fn subsets_dir(root: &Path, seed: u64) -> PathBuf {
    root.join("subsets").join(format!("seed-{seed}"))
}

/// The list of fraction `fraction` (`fraction-0.01.csv`: the shortest form
/// that reads back as the same number).
pub fn subset_path(root: &Path, fraction: f64, seed: u64) -> PathBuf {
    subsets_dir(root, seed).join(format!("fraction-{fraction}.csv"))
}

/// Refuses fractions outside (0, 1].
pub fn check_fraction(fraction: f64) -> Result<()> {
    if fraction > 0.0 && fraction <= 1.0 {
        Ok(())
    } else {
        Err(DataError::Config(format!(
            "training fraction {fraction} is not in (0, 1]"
        )))
    }
}

impl Store {
    /// Whether store row `i` is positive for label (class) `j`.
    fn positive(&self, i: usize, j: usize) -> bool {
        let t = &self.rows[i].targets;
        if self.meta.task == crate::labels::Task::Multiclass {
            t.first().copied().flatten() == Some(j as f32)
        } else {
            t.get(j).copied().flatten() == Some(1.0)
        }
    }

    /// The seeded patient order of `seed` and, per label, the first position
    /// in it of a patient with a positive training image.
    fn draw(&self, seed: u64) -> Draw<'_> {
        let train = self.split_indices(Split::Train);
        let mut seen = HashSet::new();
        let mut order: Vec<&str> = train
            .iter()
            .map(|&i| self.rows[i].patient_id.as_str())
            .filter(|p| seen.insert(*p))
            .collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let position: HashMap<&str, usize> =
            order.iter().enumerate().map(|(k, p)| (*p, k)).collect();
        let mut first_positive = vec![usize::MAX; self.meta.labels.len()];
        for &i in &train {
            let k = position[self.rows[i].patient_id.as_str()];
            for (j, first) in first_positive.iter_mut().enumerate() {
                if self.positive(i, j) {
                    *first = (*first).min(k);
                }
            }
        }
        Draw {
            train,
            order,
            first_positive,
        }
    }

    /// The store indices of training subset `fraction` under `seed`, computed
    /// by the rule above (what [`Store::write_train_subsets`] writes).
    ///
    /// # Errors
    /// For a fraction outside (0, 1].
    pub fn train_subset(&self, fraction: f64, seed: u64) -> Result<Vec<usize>> {
        check_fraction(fraction)?;
        Ok(self.draw(seed).subset(self, fraction).0)
    }

    /// Writes the lists of `fractions` under `seed` into the store at `root`
    /// (each file written to a temporary name, then renamed). Lists already
    /// there are checked against the rule and left alone.
    ///
    /// # Errors
    /// On I/O failure, a fraction outside (0, 1], or an existing list that
    /// differs from the rule's (someone else's subsets under this name).
    pub fn write_train_subsets(&self, root: &Path, fractions: &[f64], seed: u64) -> Result<()> {
        let dir = subsets_dir(root, seed);
        std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        let draw = self.draw(seed);
        let mut summary = Vec::new();
        for &f in fractions {
            check_fraction(f)?;
            let (indices, added) = draw.subset(self, f);
            let mut w = csv::Writer::from_writer(Vec::new());
            let csv_err = |e: csv::Error| bad(&dir, e);
            w.write_record(["id", "patient_id"]).map_err(csv_err)?;
            for &i in &indices {
                let r = &self.rows[i];
                w.write_record([r.id.as_str(), r.patient_id.as_str()])
                    .map_err(csv_err)?;
            }
            let bytes = w.into_inner().map_err(|e| bad(&dir, e))?;
            let path = subset_path(root, f, seed);
            match std::fs::read(&path) {
                Ok(existing) if existing == bytes => {}
                Ok(_) => {
                    return Err(bad(
                        &path,
                        "exists and differs from the subset this rule draws; remove it or use \
                         another --subset-seed",
                    ));
                }
                Err(_) => write_atomic(&path, &bytes)?,
            }
            let patients: HashSet<&str> = indices
                .iter()
                .map(|&i| self.rows[i].patient_id.as_str())
                .collect();
            summary.push(json!({
                "fraction": f,
                "patients_added_for_labels": added,
                "file": path.file_name().map(|n| n.to_string_lossy().into_owned()),
                "patients": patients.len(),
                "images": indices.len(),
            }));
        }
        // subsets.json describes every list of the seed, not only this
        // call's: keep the entries of other fractions written before.
        let meta_path = dir.join("subsets.json");
        if let Ok(text) = std::fs::read(&meta_path)
            && let Ok(old) = serde_json::from_slice::<serde_json::Value>(&text)
        {
            let ours = |e: &serde_json::Value| {
                e["fraction"]
                    .as_f64()
                    .is_some_and(|f| fractions.contains(&f))
            };
            summary.extend(
                old["subsets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| !ours(e))
                    .cloned(),
            );
        }
        summary.sort_by(|a, b| {
            let f = |e: &serde_json::Value| e["fraction"].as_f64().unwrap_or(f64::NAN);
            f(a).total_cmp(&f(b))
        });
        let meta = json!({
            "seed": seed,
            "rule": "training patients in manifest order, shuffled by ChaCha8 (rand's Fisher-Yates) \
                     seeded with `seed`; fraction F keeps the first max(1, round(F * patients)) \
                     with all their training images, plus, for each label without a positive \
                     among them, the first patient of the order who has one; for one seed the \
                     subsets are nested",
            "training_patients": draw.order.len(),
            "subsets": summary,
        });
        let text = serde_json::to_string_pretty(&meta).map_err(|e| bad(&dir, e))? + "\n";
        write_atomic(&meta_path, text.as_bytes())
    }

    /// Reads training subset `fraction` under `seed` from the store at
    /// `root`: the store indices of the listed ids. Fraction 1 needs no file.
    ///
    /// # Errors
    /// When the list is missing (naming the command that writes it), names
    /// an id the store does not have or one outside the training split, or
    /// gives an id a patient other than the store's.
    pub fn read_train_subset(&self, root: &Path, fraction: f64, seed: u64) -> Result<Vec<usize>> {
        check_fraction(fraction)?;
        if fraction == 1.0 {
            return Ok(self.split_indices(Split::Train));
        }
        let path = subset_path(root, fraction, seed);
        if !path.is_file() {
            return Err(bad(
                &path,
                format!(
                    "no such training subset; write it with `cxrlearn subsets --data {} \
                     --fractions {fraction} --seeds {seed}`",
                    root.display()
                ),
            ));
        }
        let by_id: HashMap<&str, usize> =
            self.rows.iter().map(|r| (r.id.as_str(), r.index)).collect();
        let mut reader = open_bounded(&path, b',')?;
        let headers = reader
            .headers()
            .map_err(|e| csv_error(&path, e, |e| bad(&path, e)))?
            .clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| bad(&path, format!("no column '{name}'")))
        };
        let (cid, cpatient) = (col("id")?, col("patient_id")?);
        let mut out = Vec::new();
        for (k, record) in reader.records().enumerate() {
            let record = record.map_err(|e| csv_error(&path, e, |e| bad(&path, e)))?;
            let row = k as u64 + 2;
            let id = record.get(cid).unwrap_or("");
            let i = *by_id.get(id).ok_or_else(|| {
                DataError::row(&path, row, format!("id '{id}' is not in the store"))
            })?;
            let r = &self.rows[i];
            if r.split != Split::Train {
                return Err(DataError::row(
                    &path,
                    row,
                    format!("id '{id}' is not in the training split"),
                ));
            }
            if record.get(cpatient) != Some(r.patient_id.as_str()) {
                return Err(DataError::row(
                    &path,
                    row,
                    format!(
                        "id '{id}' belongs to patient '{}' in the store",
                        r.patient_id
                    ),
                ));
            }
            out.push(i);
        }
        if out.is_empty() {
            return Err(bad(&path, "the subset lists no image"));
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

/// One seed's draw: the training rows, the shuffled patient order, and per
/// label the first order position of a patient with a positive.
struct Draw<'a> {
    train: Vec<usize>,
    order: Vec<&'a str>,
    first_positive: Vec<usize>,
}

impl Draw<'_> {
    /// Subset `fraction`: its store indices (store order) and the labels a
    /// patient was added for. A label lacks a positive in the prefix exactly
    /// when its first positive patient lies beyond it; that patient is added.
    fn subset(&self, store: &Store, fraction: f64) -> (Vec<usize>, Vec<String>) {
        let keep = ((fraction * self.order.len() as f64).round() as usize)
            .max(1)
            .min(self.order.len());
        let mut kept: HashSet<&str> = self.order[..keep].iter().copied().collect();
        let mut added = Vec::new();
        for (j, &first) in self.first_positive.iter().enumerate() {
            if first != usize::MAX && first >= keep {
                kept.insert(self.order[first]);
                added.push(store.meta.labels[j].clone());
            }
        }
        let indices = self
            .train
            .iter()
            .copied()
            .filter(|&i| kept.contains(store.rows[i].patient_id.as_str()))
            .collect();
        (indices, added)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::atomic::write_atomic(path, bytes).map_err(|e| DataError::io(path, e))
}
