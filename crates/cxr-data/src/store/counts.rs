//! The counts `dataset.json` records (images per split, positives per label
//! and split) checked against `manifest.csv` when a store is opened.
//!
//! Conversion writes both from the same rows, so a disagreement means the
//! store was damaged or edited; `info` printed the recorded counts as they
//! were, and every command trusted them beside a manifest that said
//! otherwise.

use std::path::Path;

use super::DatasetMeta;
use super::read::ManifestRow;
use crate::error::{DataError, Result};
use crate::labels::{Collapse, Split, Task};

fn disagree(path: &Path, what: String, recorded: usize, actual: usize) -> DataError {
    DataError::StoreCount {
        path: path.to_path_buf(),
        what,
        recorded,
        actual,
    }
}

/// Checks `meta`'s counts (read from `meta_path`) against `rows`.
///
/// # Errors
/// [`DataError::StoreCount`] naming the split (and label) and both counts;
/// [`DataError::Store`] for a count of a split that does not exist or a
/// positives list whose length is not the number of labels.
pub(super) fn check(meta_path: &Path, meta: &DatasetMeta, rows: &[ManifestRow]) -> Result<()> {
    let split_of = |name: &str| Split::ALL.into_iter().find(|s| s.as_str() == name);
    for name in meta.splits.keys().chain(meta.positives.keys()) {
        if split_of(name).is_none() {
            return Err(DataError::Store {
                path: meta_path.to_path_buf(),
                reason: format!(
                    "counts of an unknown split {name:?} (splits are train, val, test)"
                ),
            });
        }
    }
    for split in Split::ALL {
        let name = split.as_str();
        let in_split: Vec<&ManifestRow> = rows.iter().filter(|r| r.split == split).collect();
        let recorded = meta.splits.get(name).copied().unwrap_or(0);
        if recorded != in_split.len() {
            return Err(disagree(
                meta_path,
                format!("split {name:?}: images"),
                recorded,
                in_split.len(),
            ));
        }
        let Some(positives) = meta.positives.get(name) else {
            continue;
        };
        if positives.len() != meta.labels.len() {
            return Err(DataError::Store {
                path: meta_path.to_path_buf(),
                reason: format!(
                    "positives of split {name:?} has {} counts for {} labels",
                    positives.len(),
                    meta.labels.len()
                ),
            });
        }
        // Conversion counts positive label states; a policy that writes
        // uncertain or missing cells as 1 (U-ones) adds 1s to the manifest
        // beyond them, so there the manifest can only have more.
        let ones_beyond = meta.task != Task::Multiclass
            && (meta.label_policy.uncertain == Collapse::Positive
                || meta.label_policy.missing == Collapse::Positive);
        for (k, (&recorded, label)) in positives.iter().zip(&meta.labels).enumerate() {
            let actual = in_split
                .iter()
                .filter(|r| match meta.task {
                    Task::Multiclass => r.targets.first().copied().flatten() == Some(k as f32),
                    _ => r.targets.get(k).copied().flatten() == Some(1.0),
                })
                .count();
            let agrees = if ones_beyond {
                recorded <= actual
            } else {
                recorded == actual
            };
            if !agrees {
                return Err(disagree(
                    meta_path,
                    format!("split {name:?}, label {label:?}: positives"),
                    recorded,
                    actual,
                ));
            }
        }
    }
    Ok(())
}
