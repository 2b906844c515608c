//! CheXpert: `train.csv` / `valid.csv` inside `CheXpert-v1.0[-small]/`, paths
//! starting with that folder, patient and study ids taken from the path.

use std::path::Path;

use crate::csv_source::{Csv, find_file};
use crate::error::{DataError, Result};
use crate::labels::{
    Age, Collapse, GroupLevel, LabelPolicy, LabelState, LabelTable, Record, Task, normalise_sex,
    normalise_view, parse_age, rejected_ages_note,
};

/// The 14 CheXpert labels, in file order (shared with MIMIC-CXR and BRAX).
pub const LABELS: [&str; 14] = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
];

/// The manifest policy for CheXpert-labeller sources: uncertain (-1) is
/// unknown, blank (not mentioned) is negative.
pub fn chexpert_policy() -> LabelPolicy {
    LabelPolicy {
        uncertain: Collapse::Unknown,
        missing: Collapse::Negative,
    }
}

/// Pretraining corpus: 14 labels with all four states kept, all views,
/// patient-level 60/20/20 (`train.csv` and `valid.csv` pooled).
pub fn load(root: &Path) -> Result<LabelTable> {
    let mut t = LabelTable::new(
        "chexpert",
        Task::Multilabel,
        LABELS.map(String::from).to_vec(),
        GroupLevel::Patient,
    );
    t.policy = chexpert_policy();
    let (mut rejected_ages, mut odd_frontal) = (0, 0);
    for stem in ["train", "valid"] {
        let path = match find_file(root, stem, &[".csv", ".csv.gz"]) {
            Ok(p) => p,
            Err(_) if stem == "valid" => continue,
            Err(e) => return Err(e),
        };
        let csv = Csv::read(&path)?;
        let (cp, cfl, capa, csex, cage) = (
            csv.col("Path")?,
            csv.col("Frontal/Lateral")?,
            csv.col("AP/PA")?,
            csv.col("Sex")?,
            csv.col("Age")?,
        );
        let cols: Vec<usize> = LABELS.iter().map(|l| csv.col(l)).collect::<Result<_>>()?;
        for (i, r) in csv.rows.iter().enumerate() {
            let full = r[cp].trim();
            // Paths start with the dataset folder itself; the root is that folder.
            let rel = full
                .split_once('/')
                .map_or(full, |(_, rest)| rest)
                .to_string();
            let rel = csv.image_path(i, rel)?;
            let patient = rel
                .split('/')
                .find(|s| s.starts_with("patient"))
                .ok_or_else(|| {
                    DataError::row(
                        &path,
                        csv.lines[i],
                        format!("no patient folder in path {full:?}"),
                    )
                })?;
            let study = rel
                .split('/')
                .find(|s| s.starts_with("study"))
                .unwrap_or("");
            let mut labels = Vec::with_capacity(LABELS.len());
            for (&c, name) in cols.iter().zip(LABELS) {
                labels.push(LabelState::parse(&r[c]).ok_or_else(|| {
                    csv.err(i, format!("column {name:?}: unexpected value {:?}", &r[c]))
                })?);
            }
            // `AP/PA` is only filled for frontal images; a frontal image whose
            // `AP/PA` says LL or RL (17 in train.csv) contradicts itself: UNKNOWN.
            let view = if r[cfl].trim() == "Lateral" {
                "LATERAL".to_string()
            } else {
                let v = normalise_view(&r[capa]);
                if v == "PA" || v == "AP" {
                    v
                } else {
                    odd_frontal += 1;
                    "UNKNOWN".to_string()
                }
            };
            let age = parse_age(&r[cage]);
            rejected_ages += usize::from(age == Age::Rejected);
            t.records.push(Record {
                id: rel.clone(),
                group: patient.to_string(),
                study_id: Some(format!("{patient}/{study}")),
                source_path: rel,
                labels,
                view: Some(view),
                sex: normalise_sex(&r[csex]),
                age: age.years(),
                ..Default::default()
            });
        }
        t.sources.push(path);
    }
    t.notes.push("label policy: -1 (uncertain) -> unknown, blank (not mentioned) -> 0; raw states in labels-raw.csv".into());
    t.notes
        .push("all views kept; train.csv and valid.csv pooled, patient-level 60/20/20".into());
    t.notes.push(format!(
        "sex from `Sex` (Unknown -> unknown); view LATERAL from `Frontal/Lateral`, else `AP/PA`: \
         {odd_frontal} frontal images whose `AP/PA` is neither AP nor PA have view UNKNOWN; {}",
        rejected_ages_note("`Age`", rejected_ages)
    ));
    Ok(t)
}
