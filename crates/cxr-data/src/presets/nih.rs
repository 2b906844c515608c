//! NIH ChestX-ray14: `Data_Entry_2017*.csv` with `|`-separated `Finding Labels`,
//! images in `images/` (the twelve tarballs unpack there).

use std::path::Path;

use crate::csv_source::{Csv, find_file};
use crate::error::Result;
use crate::labels::{
    Age, GroupLevel, LabelState, LabelTable, Record, Task, normalise_sex, normalise_view,
    parse_age, rejected_ages_note,
};

/// The 14 findings, in the paper's order.
pub const LABELS: [&str; 14] = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
];

/// Paper task: 14 binary labels, all views, patient-level 60/20/20 on `Patient ID`.
pub fn load(root: &Path) -> Result<LabelTable> {
    let path = find_file(root, "Data_Entry_2017", &[".csv", ".csv.gz"])?;
    let csv = Csv::read(&path)?;
    let (ci, cf, cp, cv, csex, cage) = (
        csv.col("Image Index")?,
        csv.col("Finding Labels")?,
        csv.col("Patient ID")?,
        csv.col("View Position")?,
        csv.col("Patient Gender")?,
        csv.col("Patient Age")?,
    );
    let mut t = LabelTable::new(
        "nih",
        Task::Multilabel,
        LABELS.map(String::from).to_vec(),
        GroupLevel::Patient,
    );
    t.sources.push(path.clone());
    t.notes.push("labels: exact names from `Finding Labels` split on '|'; absent = negative; 'No Finding' = all negative".into());
    t.notes.push("all views kept (PA and AP); official train_val/test lists not used (paper: patient-level 60/20/20)".into());
    let mut rejected_ages = 0;
    for (i, r) in csv.rows.iter().enumerate() {
        let mut labels = vec![LabelState::Negative; LABELS.len()];
        for item in r[cf].split('|').map(str::trim) {
            if item == "No Finding" {
                continue;
            }
            let k = LABELS
                .iter()
                .position(|l| *l == item)
                .ok_or_else(|| csv.err(i, format!("unknown finding {item:?}")))?;
            labels[k] = LabelState::Positive;
        }
        let id = r[ci].trim().to_string();
        let source_path = csv.image_path(i, format!("images/{id}"))?;
        let age = parse_age(&r[cage]);
        rejected_ages += usize::from(age == Age::Rejected);
        t.records.push(Record {
            source_path,
            id,
            group: r[cp].trim().to_string(),
            labels,
            view: Some(normalise_view(&r[cv])),
            sex: normalise_sex(&r[csex]),
            age: age.years(),
            ..Default::default()
        });
    }
    // The 2017 release lists a few impossible ages (e.g. 412); the v2020 file
    // corrected them. Either way they become unknown, counted here.
    t.notes.push(format!(
        "sex from `Patient Gender`, view from `View Position`; {}",
        rejected_ages_note("`Patient Age`", rejected_ages)
    ));
    Ok(t)
}
