//! SIIM-ACR Pneumothorax: `train-rle.csv` (`ImageId`, ` EncodedPixels` with a
//! leading space), one row per mask, `-1` for none; DICOMs under
//! `dicom-images-train/<study>/<series>/<ImageId>.dcm`.

use std::collections::HashMap;
use std::path::Path;

use super::{relative, walk};
use crate::csv_source::{Csv, find_file};
use crate::error::Result;
use crate::labels::{GroupLevel, LabelState, LabelTable, Record, Task};

/// Paper task: binary pneumothorax (any mask row), image-level 60/20/20 (the
/// DICOM PatientID is a per-image UUID, so no patient key exists).
pub fn load(root: &Path) -> Result<LabelTable> {
    let path = find_file(root, "train-rle", &[".csv", ".csv.gz"])
        .or_else(|_| find_file(root, "siim-pneumothorax-train-rle", &[".csv", ".csv.gz"]))
        .or_else(|_| find_file(root, "stage_2_train", &[".csv", ".csv.gz"]))?;
    let csv = Csv::read(&path)?;
    let (ci, ce) = (
        csv.col("ImageId")?,
        csv.col(" EncodedPixels")
            .or_else(|_| csv.col("EncodedPixels"))?,
    );
    let mut order: Vec<String> = Vec::new();
    let mut positive: HashMap<String, bool> = HashMap::new();
    for (i, r) in csv.rows.iter().enumerate() {
        let id = r[ci].trim().to_string();
        let enc = r[ce].trim();
        let is_mask = if enc == "-1" {
            false
        } else if !enc.is_empty() && enc.split_whitespace().all(|t| t.parse::<u64>().is_ok()) {
            true
        } else {
            return Err(csv.err(
                i,
                format!(
                    "EncodedPixels is neither -1 nor a run-length list: {:.40}",
                    enc
                ),
            ));
        };
        match positive.get_mut(&id) {
            Some(p) => {
                if *p != is_mask {
                    return Err(
                        csv.err(i, format!("image {id} listed both with -1 and with a mask"))
                    );
                }
            }
            None => {
                positive.insert(id.clone(), is_mask);
                order.push(id);
            }
        }
    }
    let train_dir = root.join("dicom-images-train");
    let mut files: HashMap<String, String> = HashMap::new();
    if train_dir.is_dir() {
        for f in walk(&train_dir, &["dcm"])? {
            if let Some(stem) = f.file_stem() {
                files.insert(stem.to_string_lossy().into_owned(), relative(root, &f));
            }
        }
    }
    let mut t = LabelTable::new(
        "siim",
        Task::Binary,
        vec!["Pneumothorax".into()],
        GroupLevel::Image,
    );
    t.sources.push(path);
    for id in order {
        let label = if positive[&id] {
            LabelState::Positive
        } else {
            LabelState::Negative
        };
        let source_path = files
            .remove(&id)
            .unwrap_or_else(|| format!("dicom-images-train/{id}.dcm"));
        t.records.push(Record {
            group: id.clone(),
            id,
            source_path,
            labels: vec![label],
            ..Default::default()
        });
    }
    t.notes.push(
        "image-level splits: SIIM has no patient key (DICOM PatientID is a per-image UUID)".into(),
    );
    t.notes
        .push("Pneumothorax = any EncodedPixels row other than -1 for the image".into());
    Ok(t)
}
