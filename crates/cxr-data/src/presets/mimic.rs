//! MIMIC-CXR-JPG: study-level `mimic-cxr-2.0.0-chexpert.csv` joined to images
//! through `mimic-cxr-2.0.0-metadata.csv`; images at
//! `files/p<2 digits>/p<subject>/s<study>/<dicom_id>.jpg`; reports, when present,
//! at `files/p<2>/p<subject>/s<study>.txt`.

use std::collections::HashMap;
use std::path::Path;

use super::chexpert::{LABELS, chexpert_policy};
use crate::csv_source::{Csv, find_file};
use crate::error::Result;
use crate::labels::{GroupLevel, LabelState, LabelTable, Record, Task, normalise_view};

/// Pretraining corpus: 14 CheXpert-labeller labels (four states kept), every
/// image of every labelled study, patient-level 60/20/20 on `subject_id`.
pub fn load(root: &Path) -> Result<LabelTable> {
    let lpath = find_file(root, "mimic-cxr-2.0.0-chexpert", &[".csv", ".csv.gz"])?;
    let mpath = find_file(root, "mimic-cxr-2.0.0-metadata", &[".csv", ".csv.gz"])?;
    let labels_csv = Csv::read(&lpath)?;
    let lst = labels_csv.col("study_id")?;
    let cols: Vec<usize> = LABELS
        .iter()
        .map(|l| labels_csv.col(l))
        .collect::<Result<_>>()?;
    let mut by_study: HashMap<String, Vec<LabelState>> = HashMap::new();
    for (i, r) in labels_csv.rows.iter().enumerate() {
        let mut v = Vec::with_capacity(LABELS.len());
        for (&c, name) in cols.iter().zip(LABELS) {
            v.push(LabelState::parse(&r[c]).ok_or_else(|| {
                labels_csv.err(i, format!("column {name:?}: unexpected value {:?}", &r[c]))
            })?);
        }
        if by_study.insert(r[lst].trim().to_string(), v).is_some() {
            return Err(labels_csv.err(i, format!("duplicate study_id {}", &r[lst])));
        }
    }
    let meta = Csv::read(&mpath)?;
    let (md, ms, mst, mv) = (
        meta.col("dicom_id")?,
        meta.col("subject_id")?,
        meta.col("study_id")?,
        meta.col("ViewPosition")?,
    );
    let mut t = LabelTable::new(
        "mimic",
        Task::Multilabel,
        LABELS.map(String::from).to_vec(),
        GroupLevel::Patient,
    );
    t.policy = chexpert_policy();
    t.sources = vec![lpath, mpath];
    let mut unlabeled = 0;
    for r in &meta.rows {
        let (dicom, subject, study) = (r[md].trim(), r[ms].trim(), r[mst].trim());
        let Some(labels) = by_study.get(study) else {
            unlabeled += 1;
            continue;
        };
        let prefix = format!("files/p{}/p{subject}", subject.get(..2).unwrap_or(subject));
        let report = std::fs::read_to_string(root.join(format!("{prefix}/s{study}.txt"))).ok();
        t.records.push(Record {
            id: dicom.to_string(),
            group: subject.to_string(),
            source_path: format!("{prefix}/s{study}/{dicom}.jpg"),
            labels: labels.clone(),
            study_id: Some(study.to_string()),
            view: Some(normalise_view(&r[mv])),
            report: report.map(|s| s.trim().to_string()),
            ..Default::default()
        });
    }
    t.notes.push(format!("labels are study-level, copied to each image of the study; {unlabeled} images without a labelled study left out"));
    t.notes.push("label policy: -1 (uncertain) -> unknown, blank -> 0; all views kept; official split file not used".into());
    Ok(t)
}
