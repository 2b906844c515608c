//! RANZCR CLiP: Kaggle `train.csv` (`StudyInstanceUID`, 11 catheter/line
//! columns, `PatientID`), images `train/<StudyInstanceUID>.jpg`.

use std::path::Path;

use crate::csv_source::Csv;
use crate::error::Result;
use crate::labels::{GroupLevel, LabelState, LabelTable, Record, Task};

/// The 11 label columns, in file order.
pub const LABELS: [&str; 11] = [
    "ETT - Abnormal",
    "ETT - Borderline",
    "ETT - Normal",
    "NGT - Abnormal",
    "NGT - Borderline",
    "NGT - Incompletely Imaged",
    "NGT - Normal",
    "CVC - Abnormal",
    "CVC - Borderline",
    "CVC - Normal",
    "Swan Ganz Catheter Present",
];

/// Paper task: the 11 binary columns (not mutually exclusive), patient-level
/// 60/20/20 on `PatientID` of the labelled training set (test labels were never released).
pub fn load(root: &Path) -> Result<LabelTable> {
    let path = root.join("train.csv");
    let csv = Csv::read(&path)?;
    let (cu, cp) = (csv.col("StudyInstanceUID")?, csv.col("PatientID")?);
    let cols: Vec<usize> = LABELS.iter().map(|l| csv.col(l)).collect::<Result<_>>()?;
    let mut t = LabelTable::new(
        "ranzcr",
        Task::Multilabel,
        LABELS.map(String::from).to_vec(),
        GroupLevel::Patient,
    );
    t.sources.push(path.clone());
    for (i, r) in csv.rows.iter().enumerate() {
        let mut labels = Vec::with_capacity(LABELS.len());
        for (&c, name) in cols.iter().zip(LABELS) {
            labels.push(match r[c].trim() {
                "1" => LabelState::Positive,
                "0" => LabelState::Negative,
                v => return Err(csv.err(i, format!("column {name:?}: expected 0 or 1, found {v:?}"))),
            });
        }
        let uid = r[cu].trim().to_string();
        t.records.push(Record {
            source_path: csv.image_path(i, format!("train/{uid}.jpg"))?,
            id: uid,
            group: r[cp].trim().to_string(),
            labels,
            ..Default::default()
        });
    }
    t.notes
        .push("labelled Kaggle training set only; patient-level 60/20/20 on PatientID".into());
    Ok(t)
}
