//! VinDr-CXR in both layouts: Kaggle (`train.csv` with one box row per finding
//! per reader, `train/<image_id>.dicom`) and PhysioNet
//! (`annotations/image_labels_{train,test}.csv`, one row per reader).

use std::collections::BTreeMap;
use std::path::Path;

use crate::csv_source::{Csv, find_file};
use crate::error::{DataError, Result};
use crate::labels::{GroupLevel, LabelState, LabelTable, Record, Split, Task};

/// The 14 local classes of the Kaggle release (class ids 0..13; 14 = No finding).
pub const KAGGLE_LABELS: [&str; 14] = [
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Consolidation",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Nodule/Mass",
    "Other lesion",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
];

/// The 18 PhysioNet image-level labels used as the paper's task (hypothesis:
/// the list one third-party loader uses; the paper's own list is unpublished).
pub const PHYSIONET_LABELS: [&str; 18] = [
    "Atelectasis",
    "Calcification",
    "Consolidation",
    "Emphysema",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Lung cavity",
    "Lung cyst",
    "Nodule/Mass",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "COPD",
    "Lung tumor",
    "Pneumonia",
    "Tuberculosis",
];

const RULE: &str = "reader aggregation: an image is positive for a label if ANY of its readers marked it (union, \
                    as torchxrayvision); reader ids kept out of the store";

/// Reads whichever layout is present under `root`.
pub fn load(root: &Path) -> Result<LabelTable> {
    let ann = root.join("annotations");
    if ann.is_dir() && find_file(&ann, "image_labels_train", &[".csv", ".csv.gz"]).is_ok() {
        physionet(&ann)
    } else {
        kaggle(root)
    }
}

fn kaggle(root: &Path) -> Result<LabelTable> {
    let path = find_file(root, "train", &[".csv", ".csv.gz"])
        .or_else(|_| find_file(root, "vinbigdata-train", &[".csv", ".csv.gz"]))?;
    let csv = Csv::read(&path)?;
    let (ci, cc, cr) = (
        csv.col("image_id")?,
        csv.col("class_id")?,
        csv.col("rad_id")?,
    );
    // image -> (readers seen, per-label reader sets)
    let mut images: BTreeMap<String, (Vec<String>, Vec<Vec<String>>)> = BTreeMap::new();
    let mut order = Vec::new();
    for (i, r) in csv.rows.iter().enumerate() {
        let id = r[ci].trim().to_string();
        csv.image_path(i, format!("train/{id}.dicom"))?;
        let class: usize = r[cc]
            .trim()
            .parse()
            .map_err(|_| csv.err(i, format!("class_id {:?} is not 0-14", &r[cc])))?;
        if class > 14 {
            return Err(csv.err(i, format!("class_id {class} is not 0-14")));
        }
        let reader = r[cr].trim().to_string();
        let entry = images.entry(id.clone()).or_insert_with(|| {
            order.push(id.clone());
            (Vec::new(), vec![Vec::new(); KAGGLE_LABELS.len()])
        });
        if !entry.0.contains(&reader) {
            entry.0.push(reader.clone());
        }
        if class < 14 && !entry.1[class].contains(&reader) {
            entry.1[class].push(reader);
        }
    }
    let mut t = LabelTable::new(
        "vindr",
        Task::Multilabel,
        KAGGLE_LABELS.map(String::from).to_vec(),
        GroupLevel::Image,
    );
    t.sources.push(path);
    for id in order {
        let (_, per_label) = &images[&id];
        let labels = per_label
            .iter()
            .map(|r| {
                if r.is_empty() {
                    LabelState::Negative
                } else {
                    LabelState::Positive
                }
            })
            .collect();
        t.records.push(Record {
            source_path: format!("train/{id}.dicom"),
            group: id.clone(),
            id,
            labels,
            ..Default::default()
        });
    }
    t.notes.push(RULE.into());
    t.notes.push("Kaggle layout: 14 local classes, test labels never released, so image-level 60/20/20 over the \
                  15,000 training images replaces the paper's official-test split"
        .into());
    Ok(t)
}

fn physionet(ann: &Path) -> Result<LabelTable> {
    let mut t = LabelTable::new(
        "vindr",
        Task::Multilabel,
        PHYSIONET_LABELS.map(String::from).to_vec(),
        GroupLevel::Image,
    );
    for (stem, split, dir) in [
        ("image_labels_train", Split::Train, "train"),
        ("image_labels_test", Split::Test, "test"),
    ] {
        let path = find_file(ann, stem, &[".csv", ".csv.gz"])?;
        let csv = Csv::read(&path)?;
        let ci = csv.col("image_id")?;
        let cols: Vec<usize> = PHYSIONET_LABELS
            .iter()
            .map(|l| csv.col(l))
            .collect::<Result<_>>()?;
        let mut images: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        let mut order = Vec::new();
        for (i, r) in csv.rows.iter().enumerate() {
            let id = r[ci].trim().to_string();
            csv.image_path(i, format!("{dir}/{id}.dicom"))?;
            let row = images.entry(id.clone()).or_insert_with(|| {
                order.push(id.clone());
                vec![false; PHYSIONET_LABELS.len()]
            });
            for (k, &c) in cols.iter().enumerate() {
                match r[c].trim() {
                    "1" | "1.0" => row[k] = true,
                    "0" | "0.0" => {}
                    v => {
                        return Err(csv.err(
                            i,
                            format!(
                                "column {:?}: expected 0 or 1, found {v:?}",
                                PHYSIONET_LABELS[k]
                            ),
                        ));
                    }
                }
            }
        }
        for id in order {
            let labels = images[&id]
                .iter()
                .map(|&p| {
                    if p {
                        LabelState::Positive
                    } else {
                        LabelState::Negative
                    }
                })
                .collect();
            t.records.push(Record {
                source_path: format!("{dir}/{id}.dicom"),
                group: id.clone(),
                id,
                labels,
                fixed_split: (split == Split::Test).then_some(Split::Test),
                ..Default::default()
            });
        }
        t.sources.push(path);
    }
    if !t.records.iter().any(|r| r.fixed_split == Some(Split::Test)) {
        return Err(DataError::layout(ann, "image_labels_test.csv has no rows"));
    }
    t.default_fractions = Some([2.0 / 3.0, 1.0 / 6.0, 1.0 / 6.0]);
    t.notes.push(RULE.into());
    t.notes.push("PhysioNet layout: official 3,000-image test kept (5-reader consensus); val carved from the 15,000 \
                  training images (paper: 66/16/16); image-level (no patient id)"
        .into());
    Ok(t)
}
